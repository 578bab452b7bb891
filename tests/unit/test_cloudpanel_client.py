"""The CloudPanel client without a process or a socket: the derived site user and document root, the generated
passwords, and the clpctl HTTP gateway transport against recorded answers given by `responses` in front of the
real requests session (core.http.Session), each operation tried again as a whole, looking first (the site before
adding it, the served certificate before ordering one). Both transports over a real process and socket:
tests/integration/test_cloudpanel_transports.py."""

import hashlib
import json
import logging
import re
import string
from http.client import RemoteDisconnected

import pytest
import requests
import responses
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

from hosting_automator.core.http import Session
from hosting_automator.masking import MASK, secret_values
from hosting_automator.errors import CertificateError, CloudPanelError, CloudPanelSetupError, ServiceError
from hosting_automator.services.cloudpanel_client import (ClpctlClient, GatewayClient, StaticSite, document_root,
                                                          new_password, site_user_for)
from tests.standins import clpctl_state
from tests.support.cloudpanel import EXPIRING, GATEWAY_TOKEN, NOT_SERVED, VALID

SITE_USER_RULE = re.compile(r"^[a-z][-a-z0-9_]+$")


# --- the site user and the document root -----------------------------------------------------------------------

def test_site_user_for_example_com_is_readable_prefix_plus_sha256_digits():
    digest = hashlib.sha256(b"example.com").hexdigest()[:12]
    assert site_user_for("example.com") == f"example-com-{digest}"


@pytest.mark.parametrize("domain", [
    "a.io", "1password.com", "123.example.org", "www.example.com", "xn--r8jz45g.jp", "xn--bcher-kva.example",
    "my-very-long-subdomain-name.with-many-labels.example.co.uk", "a" * 63 + "." + "b" * 60 + ".com",
    "-.--.com", "0-0.9",
])
def test_site_user_for_any_domain_matches_cloudpanel_rule(domain):
    user = site_user_for(domain)
    assert SITE_USER_RULE.match(user), user
    assert 3 <= len(user) <= 32
    assert site_user_for(domain) == user


def test_site_user_for_domain_starting_with_a_digit_starts_with_a_letter():
    assert site_user_for("1password.com").startswith("s1password-com-")


def test_site_user_for_20000_generated_domains_gives_20000_valid_distinct_users():
    domains = set()
    for n in range(5000):
        domains.add(f"site{n}.example.com")
        domains.add(f"{n}shop.example.net")  # starts with a digit
        domains.add(f"xn--{n:x}bcher-kva.example")  # IDNA
        domains.add(f"an-extremely-long-shared-prefix-that-goes-on.{n}.example.org")  # same first 19 characters
    assert len(domains) == 20000
    users = {site_user_for(domain) for domain in domains}
    assert len(users) == 20000
    assert all(SITE_USER_RULE.match(user) and 3 <= len(user) <= 32 for user in users)


def test_document_root_is_home_user_htdocs_domain():
    assert document_root("example-com-0123456789ab", "example.com") == (
        "/home/example-com-0123456789ab/htdocs/example.com")


# --- the generated site password --------------------------------------------------------------------------------

def test_new_password_is_32_letters_and_digits_masked_whole_and_in_part():
    password = new_password()

    assert len(password) == 32 and set(password) <= set(string.ascii_letters + string.digits)
    assert secret_values.mask(f"--siteUserPassword={password}") == f"--siteUserPassword={MASK}"
    assert secret_values.mask(f"echoed: {password[5:15]}…") == f"echoed: {MASK}…"


def test_new_password_many_are_distinct_and_use_every_letter_and_digit():
    made = [new_password() for _ in range(200)]

    assert len(set(made)) == 200
    # 6400 characters: each of the 62 is missing with a chance of about e**-103
    assert set("".join(made)) == set(string.ascii_letters + string.digits)


# --- the clpctl HTTP gateway, answered by `responses` -----------------------------------------------------------

GATEWAY_URL = "http://cloudpanel-gateway.example:3000"
ADD_PATH = "/api/site/add/static"
CERT_PATH = "/api/letsencrypt/install-certificate"
ADD_URL = GATEWAY_URL + ADD_PATH
CERT_URL = GATEWAY_URL + CERT_PATH
SESSION_TIMEOUT = 7
# the gateway's `data` is clpctl's output: a string, or its "key: value" lines parsed into an object
SITE_ADDED_ANSWER = {"success": True, "message": "Static site added", "data": "Site example.com has been added."}
CERTIFICATE_ANSWER = {"success": True, "message": "Certificate installed",
                      "data": {"output": "Certificate installation was successful."}}


@pytest.fixture
def gateway_session():
    with Session(timeout=SESSION_TIMEOUT) as session:
        yield session


LIST_URL = GATEWAY_URL + "/lists/api/sites"


class Listing:
    """The gateway's site listing (GET /lists/api/sites): the sites a test puts in `sites`, as the gateway lists
    /home/<user>/htdocs/<domain>; `status` 404 for a gateway without it; `asked` counts the look-ups."""

    def __init__(self):
        self.sites = []
        self.status = 200
        self.asked = 0

    def add(self, domain, user):
        self.sites.append({"domain": domain, "user": user, "path": f"/home/{user}/htdocs/{domain}"})

    def __call__(self, request):
        self.asked += 1
        if self.status != 200:
            return self.status, {}, json.dumps({"success": False, "error": "Endpoint not found"})
        return 200, {}, json.dumps(self.sites)


@pytest.fixture
def mocked():
    """Answers each URL's registered answers in turn (the last one from then on); every one must be asked for, but
    the listing, which a gateway client asks whenever it looks a site up."""
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


@pytest.fixture
def listing(mocked):
    listing = Listing()
    mocked.add_callback(responses.GET, LIST_URL, callback=listing, content_type="application/json")
    yield listing
    mocked.remove(responses.GET, LIST_URL)


@pytest.fixture
def gateway(gateway_session, retry, served, listing):
    return GatewayClient(GATEWAY_URL, GATEWAY_TOKEN, gateway_session, retry=retry, served_certificate=served)


def sent_json(call):
    return json.loads(call.request.body)


def posted(mocked):
    """The requests that were not look-ups in the site listing."""
    return [call for call in mocked.calls if call.request.url != LIST_URL]


def refused():
    """What requests raises when nothing listens at the gateway's address (built as urllib3 builds it)."""
    return requests.exceptions.ConnectionError(MaxRetryError(None, ADD_PATH, NewConnectionError(
        None, "Failed to establish a new connection: [Errno 111] Connection refused")))


def test_gateway_create_static_site_posts_exact_json_with_api_key(mocked, gateway, passwords):
    mocked.post(ADD_URL, json=SITE_ADDED_ANSWER)

    site = gateway.create_static_site("example.com")

    user = site_user_for("example.com")
    assert site == StaticSite(f"/home/{user}/htdocs/example.com", created=True)
    (call,) = posted(mocked)
    assert call.request.method == "POST"
    assert sent_json(call) == {"domainName": "example.com", "siteUser": user, "siteUserPassword": passwords[0]}
    assert call.request.headers["X-API-Key"] == GATEWAY_TOKEN
    assert call.request.headers["Content-Type"] == "application/json"
    assert call.request.req_kwargs["timeout"] == 130  # the gateway's own 120 s limit on clpctl, and a margin
    assert secret_values.mask(passwords[0]) == MASK  # and for the rest of the run


def test_gateway_create_static_site_made_by_hand_is_never_given_a_guessed_doc_root(mocked, gateway, listing):
    listing.status = 404  # a gateway without the site listing
    mocked.post(ADD_URL, status=500, json={"success": False, "error": "Failed to add static site",
                                           "details": "domainName: This value already exists.\n"})

    with pytest.raises(CloudPanelError) as caught:
        gateway.create_static_site("example.com")

    assert "exists in CloudPanel under a site user this job did not make, and its document root cannot be read " \
           "in the gateway's site listing (GET /lists/api/sites): write the row's doc_root" in str(caught.value)
    assert len(posted(mocked)) == 1


@pytest.mark.parametrize("details, reason", [({"code": 1, "out": "boom"}, '{"code": 1, "out": "boom"}'), (5, "5")])
def test_gateway_details_of_another_shape_are_shown_not_a_crash(mocked, gateway, details, reason):
    mocked.post(ADD_URL, status=500, json={"success": False, "error": "Failed to add static site",
                                           "details": details})

    with pytest.raises(CloudPanelError) as caught:
        gateway.create_static_site("example.com")

    assert str(caught.value) == f"gateway: add the static site: HTTP 500: {reason}"


def test_gateway_create_static_site_500_without_details_says_failed_to_add(mocked, gateway, sleeps):
    mocked.post(ADD_URL, status=500, json={"success": False, "error": "Failed to add static site"})

    with pytest.raises(CloudPanelError) as caught:
        gateway.create_static_site("example.com")

    assert str(caught.value) == "gateway: add the static site: HTTP 500: Failed to add static site"
    assert caught.value.transient is False
    assert len(posted(mocked)) == 1 and sleeps == []


def test_gateway_create_static_site_400_validation_details_are_listed(mocked, gateway):
    mocked.post(ADD_URL, status=400, json={"success": False, "error": "Validation Error", "details": [
        {"type": "field", "value": "x", "msg": "Invalid domain name", "path": "domainName", "location": "body"},
        {"type": "field", "msg": "siteUser must be 3-32 characters", "path": "siteUser", "location": "body"}]})

    with pytest.raises(CloudPanelError) as caught:
        gateway.create_static_site("example.com")

    assert str(caught.value) == ("gateway: add the static site: HTTP 400: Invalid domain name; "
                                 "siteUser must be 3-32 characters")
    assert caught.value.transient is False


def test_gateway_create_static_site_400_joi_details_strings_are_listed(mocked, gateway):
    """cloudpanel-api's validate() answers Joi messages as plain strings, without a "success" key."""
    mocked.post(ADD_URL, status=400, json={
        "error": "Validation Error", "details": ['"siteUserPassword" length must be at least 6 characters long']})

    with pytest.raises(CloudPanelError) as caught:
        gateway.create_static_site("example.com")

    assert str(caught.value) == ('gateway: add the static site: HTTP 400: "siteUserPassword" length must be at '
                                 "least 6 characters long")


def test_gateway_500_details_echoing_the_command_line_never_show_the_password(mocked, gateway, caplog):
    """When clpctl prints nothing, cloudpanel-api answers its exec error: the whole command line, password too."""
    caplog.set_level(logging.DEBUG)

    def echo_command(request):
        command = ("Command failed: clpctl site:add:static --domainName={domainName} --siteUser={siteUser} "
                   "--siteUserPassword='{siteUserPassword}'\n").format(**json.loads(request.body))
        return 500, {}, json.dumps({"success": False, "error": "Failed to add static site", "details": command})

    mocked.add_callback(responses.POST, ADD_URL, callback=echo_command, content_type="application/json")

    with pytest.raises(CloudPanelError) as caught:
        gateway.create_static_site("example.com")

    password = sent_json(posted(mocked)[0])["siteUserPassword"]
    assert str(caught.value) == ("gateway: add the static site: HTTP 500, clpctl printed nothing: the gateway answers "
                                 "so when it stops a clpctl that ran 120 s, and clpctl may still finish; the row is "
                                 "left for the next run, which looks first")
    assert caught.value.transient and caught.value.may_have_acted  # the outcome is not known: not sent again
    assert password not in str(caught.value)
    assert all(password not in record.getMessage() for record in caplog.records)


def test_gateway_error_field_echoing_the_password_is_masked(mocked, gateway, passwords, caplog):
    caplog.set_level(logging.DEBUG)

    def echo(request):
        password = json.loads(request.body)["siteUserPassword"]
        return 500, {}, json.dumps({"success": False, "error": f"bad password {password}"})

    mocked.add_callback(responses.POST, ADD_URL, callback=echo, content_type="application/json")

    with pytest.raises(CloudPanelError) as caught:
        gateway.create_static_site("example.com")

    (password,) = passwords
    assert str(caught.value) == f"gateway: add the static site: HTTP 500: bad password {MASK}"
    assert all(password not in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("body, content_type", [
    (json.dumps({"success": False, "error": "Unauthorized"}), "application/json"),
    ("<html><body>401 Authorization Required</body></html>", "text/html"),
])
def test_gateway_create_static_site_401_names_cloudpanel_api_token(mocked, gateway, sleeps, body, content_type):
    mocked.post(ADD_URL, status=401, body=body, content_type=content_type)

    with pytest.raises(CloudPanelSetupError) as caught:  # the run stops: every row would meet it
        gateway.create_static_site("example.com")

    assert str(caught.value) == ("gateway: add the static site: the gateway refused CLOUDPANEL_API_TOKEN (HTTP 401): "
                                 "set it to the gateway's API key")
    assert GATEWAY_TOKEN not in str(caught.value)
    assert sleeps == []  # not retried


@pytest.mark.parametrize("base", [GATEWAY_URL + "/api", GATEWAY_URL + "/api/"])
def test_gateway_base_url_given_with_api_as_its_readme_does_is_used_without_it(mocked, gateway_session, retry, served,
                                                                              listing, base):
    mocked.post(ADD_URL, json=SITE_ADDED_ANSWER)
    client = GatewayClient(base, GATEWAY_TOKEN, gateway_session, retry=retry, served_certificate=served)

    client.create_static_site("example.com")

    assert posted(mocked)[0].request.url == ADD_URL


def test_gateway_endpoint_not_found_stops_the_run_naming_cloudpanel_api_url(mocked, gateway, sleeps):
    mocked.post(ADD_URL, status=404, json={"success": False, "error": "Endpoint not found"})

    with pytest.raises(CloudPanelSetupError) as caught:
        gateway.create_static_site("example.com")

    assert str(caught.value) == ("gateway: add the static site: /api/site/add/static is not a gateway route here "
                                 "(HTTP 404: Endpoint not found): set CLOUDPANEL_API_URL to the gateway's base URL, "
                                 "like https://panel.example.com:3000")
    assert sleeps == []


@pytest.mark.parametrize("data", ["", "Error: domainName: This value is not valid.", {"error": "no"}, None])
def test_gateway_success_without_clpctls_success_line_is_a_failure(mocked, gateway, data):
    """The gateway says success whenever clpctl exits 0, and clpctl exits 0 after some errors."""
    mocked.post(ADD_URL, json={"success": True, "message": "Static site added", "data": data})

    with pytest.raises(CloudPanelError) as caught:
        gateway.create_static_site("example.com")

    assert str(caught.value).startswith("gateway: add the static site: clpctl reported no success: ")


def test_gateway_create_static_site_429_waits_the_json_retry_after_then_adds(mocked, gateway, sleeps):
    mocked.post(ADD_URL, status=429, json={"success": False, "error": "Too many requests", "retryAfter": 42})
    mocked.post(ADD_URL, json=SITE_ADDED_ANSWER)

    site = gateway.create_static_site("example.com")

    assert site.created is True
    assert sleeps == [42.0]
    assert len(posted(mocked)) == 2


def test_gateway_create_static_site_429_every_time_raises_transient_with_json_retry_after(mocked, gateway, sleeps):
    for _ in range(4):
        mocked.post(ADD_URL, status=429, json={"success": False, "error": "Too many requests", "retryAfter": 42})

    with pytest.raises(ServiceError) as caught:
        gateway.create_static_site("example.com")

    assert isinstance(caught.value, CloudPanelError)
    assert caught.value.transient is True
    assert caught.value.retry_after == 42
    assert str(caught.value) == "gateway: add the static site: HTTP 429 Too Many Requests"
    assert sleeps == [42.0, 42.0, 42.0]


def test_gateway_create_static_site_html_200_says_not_json(mocked, gateway):
    mocked.post(ADD_URL, body="<html><head><title>Welcome</title></head><body>It works!</body></html>",
                content_type="text/html")

    with pytest.raises(CloudPanelError) as caught:
        gateway.create_static_site("example.com")

    assert str(caught.value) == ("gateway: add the static site: HTTP 200 with a body that is not JSON: "
                                 "'Welcome It works!'")
    assert caught.value.transient is False


def test_gateway_create_static_site_connection_refused_is_transient_and_tried_four_times(mocked, gateway, sleeps):
    for _ in range(4):
        mocked.post(ADD_URL, body=refused())

    with pytest.raises(CloudPanelError) as caught:
        gateway.create_static_site("example.com")

    assert caught.value.transient is True
    assert str(caught.value).startswith("gateway: add the static site: cannot connect (")
    assert "Connection refused" in str(caught.value)
    assert len(posted(mocked)) == 4 and sleeps == [0.75, 1.5, 3.0]


def test_gateway_provision_ssl_waits_certificate_minutes_and_posts_domain(mocked, gateway, served):
    mocked.post(CERT_URL, json=CERTIFICATE_ANSWER)

    gateway.provision_ssl("example.com")

    (call,) = posted(mocked)
    assert sent_json(call) == {"domainName": "example.com"}
    assert call.request.headers["X-API-Key"] == GATEWAY_TOKEN
    assert call.request.req_kwargs["timeout"] == 130  # not 600: the gateway gives up on clpctl after 120 s
    assert served.looks == ["example.com", "example.com"]  # before the order, and after it to see it served


def test_gateway_provision_ssl_failure_raises_certificate_error_with_clpctl_output(mocked, gateway, sleeps):
    mocked.post(CERT_URL, status=500, json={
        "success": False, "error": "Failed to install certificate",
        "details": "example.com: Domain could not be validated, error message: error type: "
                   "urn:ietf:params:acme:error:dns, error detail: DNS problem: NXDOMAIN"})

    with pytest.raises(CertificateError) as caught:
        gateway.provision_ssl("example.com")

    assert str(caught.value) == ("gateway: install the certificate: HTTP 500: example.com: Domain could not be "
                                 "validated, error message: error type: urn:ietf:params:acme:error:dns, error "
                                 "detail: DNS problem: NXDOMAIN")
    assert caught.value.transient is False and sleeps == []


# --- each operation tried again as a whole, looking first (over the gateway: its failures can be transient) ---

def record_looks(client, mocked, found_from=None):
    """Replace the client's site look-up with one that records how many requests had gone out at each look, and
    finds the site (as `found_from`'s site user) from the second look on when `found_from` is given."""
    looks = []

    def existing_site_user(domain):
        looks.append(len(posted(mocked)))
        return found_from if found_from and len(looks) > 1 else None

    client.existing_site_user = existing_site_user
    return looks


def test_create_static_site_503_on_add_looks_up_again_before_adding_again(mocked, gateway, sleeps, passwords):
    mocked.post(ADD_URL, status=503, body="<html>Service Unavailable</html>", content_type="text/html")
    mocked.post(ADD_URL, json=SITE_ADDED_ANSWER)
    looks = record_looks(gateway, mocked)

    site = gateway.create_static_site("example.com")

    assert site.created is True
    assert looks == [0, 1, 2]  # before the first add, again before the second, and to see it made
    assert len(posted(mocked)) == 2 and sleeps == [0.75]
    # a new password per attempt, each masked for the rest of the run
    assert [sent_json(call)["siteUserPassword"] for call in posted(mocked)] == passwords and len(set(passwords)) == 2
    assert all(secret_values.mask(password) == MASK for password in passwords)


def test_create_static_site_add_timed_out_is_not_sent_again_this_run(mocked, gateway, sleeps):
    """The gateway may still be adding it, and cannot be asked: the next run tries, and "already exists" counts."""
    mocked.post(ADD_URL, body=requests.exceptions.ReadTimeout("Read timed out. (read timeout=7)"))

    with pytest.raises(CloudPanelError) as caught:
        gateway.create_static_site("example.com")

    assert str(caught.value) == ("gateway: add the static site: no answer within 130 s (timeout); it may still have "
                                 "been made, so it is not sent again this run")
    assert caught.value.transient and caught.value.may_have_acted
    assert len(posted(mocked)) == 1 and sleeps == []


@pytest.mark.parametrize("status", [502, 504, 520])
def test_gateway_create_static_site_proxy_saying_the_gateway_failed_is_not_sent_again(mocked, gateway, sleeps, status):
    mocked.post(ADD_URL, status=status, body="<html>Gateway Time-out</html>", content_type="text/html")

    with pytest.raises(CloudPanelError) as caught:
        gateway.create_static_site("example.com")

    assert caught.value.transient and caught.value.may_have_acted
    assert len(posted(mocked)) == 1 and sleeps == []


def test_gateway_create_static_site_made_by_this_job_before_counts_as_made_with_its_true_doc_root(mocked, gateway,
                                                                                                 sleeps, caplog):
    caplog.set_level(logging.INFO)
    mocked.post(ADD_URL, status=500, json={"success": False, "error": "Failed to add static site",
                                           "details": "domainName: This value already exists.\n"
                                                      "siteUser: This value already exists.\n"})

    site = gateway.create_static_site("example.com")

    user = site_user_for("example.com")
    assert site == StaticSite(document_root(user, "example.com"), created=False)
    assert len(posted(mocked)) == 1 and sleeps == []
    assert f"CloudPanel site exists already, made by this job (its site user {user} exists too)" in caplog.messages


def test_provision_ssl_order_timed_out_is_not_sent_again_this_run(mocked, gateway, served, sleeps):
    """Let's Encrypt may still be validating: a second order now could be a second certificate. The next run looks
    at what is served first."""
    served.answers = [NOT_SERVED]
    mocked.post(CERT_URL, body=requests.exceptions.ReadTimeout("Read timed out. (read timeout=600)"))

    with pytest.raises(CertificateError) as caught:
        gateway.provision_ssl("example.com")

    assert caught.value.transient and caught.value.may_have_acted
    assert served.looks == ["example.com"]
    assert len(posted(mocked)) == 1 and sleeps == []


def test_provision_ssl_new_site_connection_lost_mid_order_is_not_sent_again_this_run(mocked, gateway, served, sleeps):
    mocked.post(CERT_URL, body=requests.exceptions.ConnectionError(
        ProtocolError("Connection aborted.", RemoteDisconnected("Remote end closed connection without response"))))

    with pytest.raises(CertificateError) as caught:
        gateway.provision_ssl("example.com", new_site=True)

    assert caught.value.may_have_acted
    assert served.looks == [] and len(posted(mocked)) == 1 and sleeps == []


def test_provision_ssl_refused_with_503_looks_again_and_orders_again(mocked, gateway, served, sleeps):
    mocked.post(CERT_URL, status=503, body="<html>503 Service Unavailable</html>", content_type="text/html")
    mocked.post(CERT_URL, json=CERTIFICATE_ANSWER)

    gateway.provision_ssl("example.com")

    assert served.looks == ["example.com"] * 3  # before each order, and after the second to see it served
    assert len(posted(mocked)) == 2 and sleeps == [0.75]


def test_provision_ssl_unreachable_every_attempt_raises_transient_after_four_looks_and_orders(mocked, gateway,
                                                                                            served, sleeps):
    for _ in range(4):
        mocked.post(CERT_URL, status=503, body="", content_type="text/html")

    with pytest.raises(CertificateError) as caught:
        gateway.provision_ssl("example.com")

    assert caught.value.transient is True
    assert str(caught.value) == "gateway: install the certificate: HTTP 503 Service Unavailable"
    assert served.looks == ["example.com"] * 4
    assert len(posted(mocked)) == 4 and sleeps == [0.75, 1.5, 3.0]


# --- dry run: looked up as in a run, nothing made ----------------------------------------------------------------

def test_gateway_dry_run_says_it_cannot_look_the_site_up_looks_at_the_certificate_and_sends_nothing(mocked, gateway,
                                                                                                    served, caplog,
                                                                                                    listing):
    """A gateway without the site listing cannot say whether a site exists: the certificate served is looked at
    all the same, so that a site built already is not promised a certificate the run would not order."""
    caplog.set_level(logging.INFO)
    listing.status = 404
    served.answers = [VALID]

    site = gateway.create_static_site("example.com", dry_run=True)
    requested = gateway.provision_ssl("example.com", new_site=site.created, dry_run=True)

    user = site_user_for("example.com")
    assert (site, site.site_user, requested) == (
        StaticSite(document_root(user, "example.com"), created=True, looked_up=False), user, False)
    assert len(posted(mocked)) == 0 and served.looks == ["example.com"]
    assert caplog.messages == [
        "The gateway lists no sites (GET /lists/api/sites answered HTTP 404: Endpoint not found): a site that exists "
        "cannot be looked up, and clpctl's words decide what happened",
        f"Would create CloudPanel site user {user} unless the site exists already: sites cannot be looked up "
        "in the gateway's site listing (GET /lists/api/sites) (dry run: nothing changed)",
        "SSL: a valid certificate is served already (80 days left); not requesting another"]


@pytest.mark.parametrize("answer, requested", [(VALID, False), (EXPIRING, True)])
def test_dry_run_certificate_of_an_existing_site_looks_at_what_is_served_and_orders_nothing(mocked, gateway, served,
                                                                                           answer, requested):
    served.answers = [answer]

    assert gateway.provision_ssl("example.com", dry_run=True) is requested

    assert served.looks == ["example.com"] and len(posted(mocked)) == 0


def test_clpctl_dry_run_reads_cloudpanels_database_and_runs_no_clpctl(tmp_path, retry, served, caplog):
    """No process may start in a unit test: a clpctl run here would fail it."""
    caplog.set_level(logging.INFO)
    db = str(tmp_path / "db.sq3")
    clpctl_state.ensure_db(db)
    clpctl_state.add_site(db, "old.example", "olduser")
    client = ClpctlClient("/nonexistent/clpctl", db, retry=retry, served_certificate=served)

    new = client.create_static_site("new.example", dry_run=True)
    old = client.create_static_site("old.example", dry_run=True)

    assert new == StaticSite(document_root(site_user_for("new.example"), "new.example"), created=True)
    assert old == StaticSite("/home/olduser/htdocs/old.example", created=False)
    assert clpctl_state.calls(db) == []
    assert f"Would create CloudPanel site user {site_user_for('new.example')} (dry run: nothing changed)" \
        in caplog.messages


# --- the gateway's site listing, and success judged by what is there -----------------------------------------

def test_gateway_site_made_by_hand_is_found_in_its_listing_with_its_true_doc_root_nothing_sent(mocked, gateway,
                                                                                              listing):
    listing.add("example.com", "hand-made")

    site = gateway.create_static_site("example.com")

    assert site == StaticSite("/home/hand-made/htdocs/example.com", created=False)
    assert posted(mocked) == [] and listing.asked == 1


# what the gateway answers for an empty output: its own result object, the command line (and password) in it
EMPTY_OUTPUT = {"success": True, "output": "Command completed successfully", "stderr": "", "exitCode": 0,
                "command": "clpctl site:add:static --domainName=example.com --siteUser=u --siteUserPassword='pw'"}


@pytest.mark.parametrize("data", [{"Domain": "example.com", "Site User": "x"}, EMPTY_OUTPUT, ["Site added.", "Done."]])
def test_gateway_site_success_in_any_words_counts_once_the_listing_shows_it(mocked, gateway, listing, data):
    """The gateway keeps only "Key: value" lines when there are any, and says "Command completed successfully" for
    an empty output: what the listing shows decides, with the site user it names."""
    def added(request):
        listing.add("example.com", json.loads(request.body)["siteUser"])
        return 200, {}, json.dumps({"success": True, "message": "Static site added successfully", "data": data})

    mocked.add_callback(responses.POST, ADD_URL, callback=added, content_type="application/json")

    site = gateway.create_static_site("example.com")

    assert site == StaticSite(document_root(site_user_for("example.com"), "example.com"), created=True)
    assert listing.asked == 2  # before the add, and after it


def test_gateway_site_success_the_listing_does_not_show_fails_without_clpctls_words(mocked, gateway, listing):
    mocked.post(ADD_URL, json={"success": True, "message": "Static site added successfully",
                               "data": {"Error": "siteUser: This value is not valid."}})

    with pytest.raises(CloudPanelError) as caught:
        gateway.create_static_site("example.com")

    assert str(caught.value) == ("gateway: add the static site: clpctl reported no success: Error: siteUser: This "
                                 "value is not valid.")


@pytest.mark.parametrize("answers, data, installed", [
    ((NOT_SERVED, VALID), {"Domain": "example.com"}, True),  # served now: installed, whatever it printed
    ((NOT_SERVED, NOT_SERVED), "Certificate installation was successful.", True),  # not served yet: its words
    ((NOT_SERVED, NOT_SERVED), {"Domain": "example.com"}, False),  # neither
])
def test_gateway_certificate_is_judged_by_what_is_served_then_by_clpctls_words(mocked, gateway, served, answers, data,
                                                                               installed):
    served.answers = list(answers)
    mocked.post(CERT_URL, json={"success": True, "message": "Let's Encrypt certificate installed successfully",
                                "data": data})

    if installed:
        assert gateway.provision_ssl("example.com") is True
    else:
        with pytest.raises(CertificateError) as caught:
            gateway.provision_ssl("example.com")
        assert str(caught.value) == ("gateway: install the certificate: clpctl reported no success: Domain: "
                                     f"example.com; and {NOT_SERVED.reason}")
    assert served.looks == ["example.com", "example.com"]


def test_gateway_certificate_command_stopped_at_the_gateways_limit_is_left_for_the_next_run(mocked, gateway, served,
                                                                                             sleeps):
    mocked.post(CERT_URL, status=500, json={
        "success": False, "error": "Failed to install Let's Encrypt certificate",
        "details": "Command failed: clpctl lets-encrypt:install:certificate --domainName=example.com\n"})

    with pytest.raises(CertificateError) as caught:
        gateway.provision_ssl("example.com")

    assert caught.value.transient and caught.value.may_have_acted
    assert len(posted(mocked)) == 1 and sleeps == []


@pytest.mark.parametrize("status, body", [(500, {"success": False, "error": "Failed to retrieve sites list"}),
                                          (200, {"not": "a list"})])
def test_gateway_listing_that_fails_is_said_once_and_clpctls_words_decide(mocked, gateway, listing, caplog, status,
                                                                          body):
    mocked.replace(responses.GET, LIST_URL, status=status, json=body)
    mocked.post(ADD_URL, json=SITE_ADDED_ANSWER)
    mocked.post(ADD_URL, json={"success": True, "message": "Static site added successfully",
                               "data": "Site other.example has been added."})

    gateway.create_static_site("example.com")
    gateway.create_static_site("other.example")

    asked = [call for call in mocked.calls if call.request.url == LIST_URL]
    assert len(asked) == 1 and not gateway.sees_sites
    assert sum("The gateway lists no sites" in message for message in caplog.messages) == 1


def test_gateway_429_waits_what_its_retry_after_header_says_not_the_whole_window_in_its_body(mocked, gateway,
                                                                                            sleeps):
    mocked.post(ADD_URL, status=429, headers={"Retry-After": "12"},
                json={"success": False, "error": "Too many requests", "retryAfter": 900})
    mocked.post(ADD_URL, json=SITE_ADDED_ANSWER)

    gateway.create_static_site("example.com")

    assert sleeps == [12.0]


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_gateway_redirect_stops_the_run_naming_the_setting_and_is_not_followed(mocked, gateway, sleeps, status):
    mocked.post(ADD_URL, status=status, headers={"Location": "https://other-host.example/api/site/add/static"})

    with pytest.raises(CloudPanelSetupError) as caught:
        gateway.create_static_site("example.com")

    assert str(caught.value) == (f"gateway: add the static site: HTTP {status}, a redirect to https://other-host."
                                 "example/api/site/add/static: set CLOUDPANEL_API_URL to the address it points to")
    assert len(posted(mocked)) == 1 and sleeps == []  # the key went to the configured address only
