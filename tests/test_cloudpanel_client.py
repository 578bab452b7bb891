"""The CloudPanel client: the derived site user, the local clpctl transport against the fake clpctl executable
(its SQLite state, its control-file behaviours), what both transports share (each operation tried again as a whole,
looking first: the site up before adding it, the served certificate before ordering one), and the clpctl HTTP
gateway transport against recorded answers given by `responses` in front of the real requests session
(core.http.Session), then over a real socket against the FakeGateway stand-in."""

import hashlib
import json
import logging
import os
import re
import stat
import string
import sys
import threading
import time
from pathlib import Path

import pytest
from http.client import RemoteDisconnected

import requests
import responses
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError
from responses.registries import OrderedRegistry

from hosting_automator.core.http import Session
from hosting_automator.core.logging_setup import MASK, secret_values
from hosting_automator.errors import CertificateError, CloudPanelError, CloudPanelSetupError, ServiceError
from hosting_automator.services import cloudpanel_client
from hosting_automator.services.cloudpanel_client import (CERTIFICATE_COMMAND_TIMEOUT, PASSWORD_LENGTH, ClpctlClient,
                                                          GatewayClient, StaticSite, document_root, new_password,
                                                          site_user_for)
from hosting_automator.services.served_certificate import ServedCertificate
from tests.standins import clpctl_state
from tests.standins.gateway import FakeGateway

FAKE_CLPCTL = str(Path(__file__).parent / "standins" / "fake_clpctl.py")
SITE_USER_RULE = re.compile(r"^[a-z][-a-z0-9_]+$")
GATEWAY_TOKEN = "gw-token-7f3a9c1e5b2d8f4a"


NOT_SERVED = ServedCertificate(False, "no certificate could be read from 127.0.0.1:443 ([Errno 111] Connection "
                                       "refused)")
EXPIRING = ServedCertificate(False, "the certificate served expires in 5 days", 5.0)
VALID = ServedCertificate(True, "a valid certificate is served already (80 days left)", 80.0)


class FakeServedCertificate:
    """Stands in for `served_certificate(domain)`: gives its answers in turn (the last one from then on) and
    records every look."""

    def __init__(self, *answers):
        self.answers = list(answers) or [NOT_SERVED]
        self.looks = []

    def __call__(self, domain):
        self.looks.append(domain)
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


@pytest.fixture
def served():
    """What the server serves, as the client sees it: no certificate yet unless a test says otherwise."""
    return FakeServedCertificate()


@pytest.fixture
def clpctl_client(retry, served):
    """ClpctlClient(...) with the test's retry policy (sleeps recorded) and served-certificate stand-in."""
    def make(clpctl=FAKE_CLPCTL, db_path=None, **kwargs):
        return ClpctlClient(clpctl, db_path, retry=retry, served_certificate=served, **kwargs)

    return make


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


# --- local clpctl against the fake executable -----------------------------------------------------------------

@pytest.fixture
def fake_db(tmp_path, monkeypatch):
    db = tmp_path / "clp" / "db.sq3"
    db.parent.mkdir()
    monkeypatch.setenv("FAKE_CLPCTL_DB", str(db))
    monkeypatch.delenv("FAKE_CLPCTL_CONTROL", raising=False)
    monkeypatch.delenv("FAKE_CLPCTL_LATENCY_MS", raising=False)
    return str(db)


@pytest.fixture
def control(tmp_path, monkeypatch):
    path = str(tmp_path / "control.json")
    monkeypatch.setenv("FAKE_CLPCTL_CONTROL", path)

    def set_behaviour(domain, command, behaviour):
        clpctl_state.write_control(path, {domain: {command: behaviour}})

    return set_behaviour


@pytest.fixture
def passwords(monkeypatch):
    """Every password the client generates, by wrapping the real generator."""
    made = []
    real = cloudpanel_client.new_password

    def recording():
        made.append(real())
        return made[-1]

    monkeypatch.setattr(cloudpanel_client, "new_password", recording)
    return made


@pytest.fixture
def started(monkeypatch):
    """Every process the clpctl client starts (Popen objects, with their argument lists)."""
    processes = []
    real = ClpctlClient._start

    def recording(self, command):
        processes.append(real(self, command))
        return processes[-1]

    monkeypatch.setattr(ClpctlClient, "_start", recording)
    return processes


def test_create_static_site_new_domain_adds_site_with_derived_user(clpctl_client, fake_db, caplog):
    caplog.set_level(logging.INFO)
    client = clpctl_client(clpctl=FAKE_CLPCTL, db_path=fake_db)

    site = client.create_static_site("example.com")

    user = site_user_for("example.com")
    assert site == StaticSite(f"/home/{user}/htdocs/example.com", created=True)
    row = clpctl_state.site(fake_db, "example.com")
    assert row["user"] == user and row["type"] == "static"
    assert f"CloudPanel site created (site user {user})" in caplog.messages


def test_create_static_site_second_time_reads_db_and_adds_nothing(clpctl_client, fake_db, caplog):
    caplog.set_level(logging.INFO)
    client = clpctl_client(clpctl=FAKE_CLPCTL, db_path=fake_db)
    first = client.create_static_site("example.com")

    second = client.create_static_site("example.com")

    assert second == first._replace(created=False)
    assert len(clpctl_state.read_sites(fake_db)) == 1
    assert [call["argv"][0] for call in clpctl_state.calls(fake_db)] == ["site:add:static"]
    assert f"CloudPanel site exists already (site user {site_user_for('example.com')})" in caplog.messages


def test_create_static_site_existing_with_other_user_returns_that_users_doc_root(clpctl_client, fake_db):
    clpctl_state.add_site(fake_db, "example.com", "handmade")

    site = clpctl_client(clpctl=FAKE_CLPCTL, db_path=fake_db).create_static_site("example.com")

    assert site == StaticSite("/home/handmade/htdocs/example.com", created=False)
    assert clpctl_state.calls(fake_db) == []


def test_create_static_site_db_unreadable_site_made_by_this_job_is_known_by_its_site_user(clpctl_client, fake_db,
                                                                                         tmp_path, caplog):
    caplog.set_level(logging.INFO)
    user = site_user_for("example.com")
    clpctl_state.add_site(fake_db, "example.com", user)
    client = clpctl_client(clpctl=FAKE_CLPCTL, db_path=str(tmp_path / "no-such-db.sq3"))

    site = client.create_static_site("example.com")

    assert site == StaticSite(f"/home/{user}/htdocs/example.com", created=False)
    assert len(clpctl_state.read_sites(fake_db)) == 1
    assert [call["exit_code"] for call in clpctl_state.calls(fake_db)] == [1]  # clpctl: both values exist already
    assert f"CloudPanel site exists already, made by this job (its site user {user} exists too)" in caplog.messages


def test_create_static_site_db_unreadable_site_made_by_hand_fails_saying_what_to_set(clpctl_client, fake_db,
                                                                                    tmp_path):
    clpctl_state.add_site(fake_db, "example.com", "handmade")
    client = clpctl_client(clpctl=FAKE_CLPCTL, db_path=str(tmp_path / "no-such-db.sq3"))

    with pytest.raises(CloudPanelError) as caught:
        client.create_static_site("example.com")

    assert str(caught.value) == (
        "example.com exists in CloudPanel under a site user this job did not make, and its document root cannot be "
        "read in CloudPanel's database (CLOUDPANEL_DB_PATH, read as root): write the row's doc_root "
        "(/home/<site user>/htdocs/example.com) and set status_hosting to active by hand, or delete the site in "
        "CloudPanel and set the row to pending")
    assert not caught.value.transient


def test_create_static_site_derived_user_taken_by_other_site_names_the_stale_user(clpctl_client, fake_db):
    user = site_user_for("example.com")
    clpctl_state.add_site(fake_db, "other.example", user)

    with pytest.raises(CloudPanelError) as caught:
        clpctl_client(clpctl=FAKE_CLPCTL, db_path=fake_db).create_static_site("example.com")

    assert str(caught.value).startswith(f"site user {user} exists already but not for example.com")


def test_create_static_site_fail_behaviour_puts_clpctl_message_in_error_and_is_not_retried(clpctl_client, fake_db,
                                                                                          control, sleeps):
    control("example.com", "site:add:static", "fail:domainName: This value is not valid.")

    with pytest.raises(CloudPanelError) as caught:
        clpctl_client(clpctl=FAKE_CLPCTL, db_path=fake_db).create_static_site("example.com")

    assert str(caught.value) == "clpctl site:add:static failed: domainName: This value is not valid."
    assert caught.value.transient is False
    assert clpctl_state.read_sites(fake_db) == []
    assert len(clpctl_state.calls(fake_db)) == 1 and sleeps == []


def test_create_static_site_silent_exit_1_says_it_printed_nothing(clpctl_client, fake_db, control):
    control("example.com", "site:add:static", "silent-exit1")

    with pytest.raises(CloudPanelError) as caught:
        clpctl_client(clpctl=FAKE_CLPCTL, db_path=fake_db).create_static_site("example.com")

    assert str(caught.value) == "clpctl site:add:static failed: it printed nothing and exited with code 1"


def test_create_static_site_error_with_exit_0_counts_as_failure(clpctl_client, fake_db, control):
    control("*", "site:add:static", "error-exit0:An error occurred while creating the site user.")

    with pytest.raises(CloudPanelError) as caught:
        clpctl_client(clpctl=FAKE_CLPCTL, db_path=fake_db).create_static_site("example.com")

    assert str(caught.value) == ("clpctl site:add:static reported no success: "
                                 "An error occurred while creating the site user.")


def _group_members(pgid):
    """Live (non-zombie) processes of process group `pgid`, as (pid, command name)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                text = fh.read()
        except OSError:
            continue
        name = text[text.index("(") + 1:text.rindex(")")]
        state, _ppid, group = text[text.rindex(")") + 2:].split()[:3]
        if int(group) == pgid and state != "Z":
            members.append((int(entry), name))
    return members


@pytest.mark.parametrize("command, timeout_name, error", [
    ("site:add:static", "SITE_COMMAND_TIMEOUT", CloudPanelError),
    ("lets-encrypt:install:certificate", "CERTIFICATE_COMMAND_TIMEOUT", CertificateError),
])
def test_clpctl_hang_is_stopped_at_timeout_with_its_children(clpctl_client, fake_db, control, started, monkeypatch,
                                                             command, timeout_name, error):
    monkeypatch.setattr(cloudpanel_client, timeout_name, 3)  # long enough for the fake to start on a busy machine
    clpctl_state.add_site(fake_db, "example.org", "someone")  # the certificate needs an existing site
    control("*", command, "hang")
    client = clpctl_client(clpctl=FAKE_CLPCTL, db_path=str(Path(fake_db).with_name("absent.sq3")))
    caught = []

    def work():
        try:
            if command == "site:add:static":
                client.create_static_site("example.org2.com")
            else:
                client.provision_ssl("example.org")
        except ServiceError as err:
            caught.append(err)

    worker = threading.Thread(target=work)
    worker.start()
    deadline = time.monotonic() + 8
    seen_sleep = False
    while time.monotonic() < deadline and not seen_sleep and worker.is_alive():
        seen_sleep = bool(started) and any(name == "sleep" for _, name in _group_members(started[0].pid))
        time.sleep(0.02)
    worker.join(15)

    assert seen_sleep, "the fake's `sleep 600` child never appeared: the test would prove nothing"
    assert not worker.is_alive()
    assert len(caught) == 1 and type(caught[0]) is error
    assert str(caught[0]) == f"clpctl {command} did not finish within 3 s and was stopped"
    gone_by = time.monotonic() + 2  # SIGKILL was sent to the whole group; the kernel takes a moment to finish it
    while _group_members(started[0].pid) and time.monotonic() < gone_by:
        time.sleep(0.02)
    assert _group_members(started[0].pid) == []
    assert started[0].returncode is not None


def test_provision_ssl_success_records_one_certificate_request(clpctl_client, fake_db, served, caplog):
    caplog.set_level(logging.INFO)
    client = clpctl_client(clpctl=FAKE_CLPCTL, db_path=fake_db)
    client.create_static_site("example.com")

    client.provision_ssl("example.com")

    assert served.looks == ["example.com"]
    assert [row["domain_name"] for row in clpctl_state.certificate_requests(fake_db)] == ["example.com"]
    assert clpctl_state.calls(fake_db)[-1]["argv"] == ["lets-encrypt:install:certificate",
                                                       "--domainName=example.com"]
    assert "Let's Encrypt certificate installed" in caplog.messages


def test_provision_ssl_domain_not_validated_raises_certificate_error_with_acme_detail(clpctl_client, fake_db,
                                                                                      control):
    clpctl_state.add_site(fake_db, "example.com", "someone")
    message = ("example.com: Domain could not be validated, error message: error type: "
               "urn:ietf:params:acme:error:connection, error detail: 203.0.113.9: Fetching "
               "http://example.com/.well-known/acme-challenge/x: Connection refused")
    control("example.com", "lets-encrypt:install:certificate", f"fail:{message}")

    with pytest.raises(CertificateError) as caught:
        clpctl_client(clpctl=FAKE_CLPCTL, db_path=fake_db).provision_ssl("example.com")

    assert str(caught.value) == f"clpctl lets-encrypt:install:certificate failed: {message}"
    assert caught.value.transient is False
    assert clpctl_state.certificate_requests(fake_db) == []


def test_provision_ssl_for_missing_site_raises_certificate_error(clpctl_client, fake_db):
    with pytest.raises(CertificateError, match=r'failed: Site "nosite.example" does not exist\.$'):
        clpctl_client(clpctl=FAKE_CLPCTL, db_path=fake_db).provision_ssl("nosite.example")


def test_clpctl_without_shebang_exec_format_error_falls_back_to_bin_bash(clpctl_client, fake_db, tmp_path, started):
    wrapper = tmp_path / "clpctl"
    wrapper.write_text("# no shebang, like /usr/bin/clpctl before v2.5.0\n"
                       f'exec "{sys.executable}" "{FAKE_CLPCTL}" "$@"\n')
    wrapper.chmod(0o755)

    site = clpctl_client(clpctl=str(wrapper), db_path=fake_db).create_static_site("example.com")

    assert site == StaticSite(f"/home/{site_user_for('example.com')}/htdocs/example.com", created=True)
    assert clpctl_state.site(fake_db, "example.com") is not None
    assert [process.args[:2] for process in started] == [["/bin/bash", str(wrapper)]]


def test_clpctl_not_found_names_cloudpanel_clpctl(clpctl_client, tmp_path):
    with pytest.raises(CloudPanelError) as caught:
        clpctl_client(clpctl=str(tmp_path / "nowhere" / "clpctl")).create_static_site("example.com")

    assert str(caught.value) == (f"clpctl not found ({tmp_path / 'nowhere' / 'clpctl'}): is this a CloudPanel "
                                 "server? Set CLOUDPANEL_CLPCTL to its path")


def test_clpctl_not_executable_says_it_cannot_run_it(clpctl_client, tmp_path):
    clpctl = tmp_path / "clpctl"
    clpctl.write_text("#!/bin/bash\nexit 0\n")
    clpctl.chmod(stat.S_IRUSR)
    if os.access(clpctl, os.X_OK):
        pytest.skip("this user may execute anything")

    with pytest.raises(CloudPanelError, match=r"^cannot run .*clpctl: Permission denied$"):
        clpctl_client(clpctl=str(clpctl)).create_static_site("example.com")


def test_create_static_site_password_is_32_letters_and_digits_masked_and_redacted(clpctl_client, fake_db, passwords,
                                                                                  caplog):
    caplog.set_level(logging.DEBUG)

    clpctl_client(clpctl=FAKE_CLPCTL, db_path=fake_db).create_static_site("example.com")

    password, = passwords
    assert len(password) == PASSWORD_LENGTH == 32
    assert set(password) <= set(string.ascii_letters + string.digits)
    # masked for the rest of the run: a service may still echo it in a later message
    assert secret_values.mask(f"pw={password}") == f"pw={MASK}"
    call, = clpctl_state.calls(fake_db)
    assert "--siteUserPassword=<redacted>" in call["argv"]
    assert password not in call["argv_json"]
    assert all(password not in record.getMessage() for record in caplog.records)


def test_create_static_site_clpctl_echoing_its_arguments_never_puts_password_in_error(clpctl_client, fake_db,
                                                                                      tmp_path, passwords, caplog):
    caplog.set_level(logging.DEBUG)
    clpctl = tmp_path / "clpctl"
    clpctl.write_text('#!/bin/bash\necho "Unexpected error while running: $*"\nexit 1\n')
    clpctl.chmod(0o755)

    with pytest.raises(CloudPanelError) as caught:
        clpctl_client(clpctl=str(clpctl), db_path=fake_db).create_static_site("example.com")

    password, = passwords
    assert str(caught.value) == ("clpctl site:add:static failed: Unexpected error while running: site:add:static "
                                 f"--domainName=example.com --siteUser={site_user_for('example.com')} "
                                 f"--siteUserPassword={MASK}")
    assert password not in str(caught.value)
    assert all(password not in record.getMessage() for record in caplog.records)


def test_two_created_sites_get_different_passwords(clpctl_client, fake_db, passwords):
    client = clpctl_client(clpctl=FAKE_CLPCTL, db_path=fake_db)
    client.create_static_site("one.example.com")
    client.create_static_site("two.example.com")

    assert len(passwords) == 2 and passwords[0] != passwords[1]


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


def test_clpctl_check_not_root_says_site_commands_need_root(clpctl_client, fake_db, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)

    with pytest.raises(CloudPanelError) as caught:
        clpctl_client(clpctl=FAKE_CLPCTL).check()

    assert str(caught.value) == ("CloudPanel 2.5.0 (fake) found, but this job runs as uid 1000, and clpctl's site "
                                 "and certificate commands exist only for root")


def test_clpctl_check_as_root_reports_the_version(clpctl_client, fake_db, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)

    assert clpctl_client(clpctl=FAKE_CLPCTL).check() == "CloudPanel 2.5.0 (fake), run as root"


# --- the served certificate before any order (what both transports share) ------------------------------------

def test_provision_ssl_valid_served_certificate_orders_none(clpctl_client, fake_db, served,
                                                                             caplog):
    caplog.set_level(logging.INFO)
    clpctl_state.add_site(fake_db, "example.com", "someone")
    served.answers = [VALID]

    clpctl_client(db_path=fake_db).provision_ssl("example.com")

    assert served.looks == ["example.com"]
    assert clpctl_state.calls(fake_db) == [] and clpctl_state.certificate_requests(fake_db) == []
    assert "SSL: a valid certificate is served already (80 days left); not requesting another" in caplog.messages


def test_provision_ssl_expiring_served_certificate_orders_one_saying_why(clpctl_client, fake_db, served, caplog):
    caplog.set_level(logging.INFO)
    clpctl_state.add_site(fake_db, "example.com", "someone")
    served.answers = [EXPIRING]

    clpctl_client(db_path=fake_db).provision_ssl("example.com")

    assert served.looks == ["example.com"]
    assert len(clpctl_state.certificate_requests(fake_db, "example.com")) == 1
    assert ("SSL: requesting a Let's Encrypt certificate (the certificate served expires in 5 days)"
            in caplog.messages)


def test_provision_ssl_new_site_orders_without_looking_at_what_is_served(clpctl_client, fake_db, served, caplog):
    caplog.set_level(logging.INFO)
    clpctl_state.add_site(fake_db, "example.com", "someone")
    served.answers = [VALID]  # what a look would find: a site made a moment ago serves another name's certificate

    clpctl_client(db_path=fake_db).provision_ssl("example.com", new_site=True)

    assert served.looks == []
    assert len(clpctl_state.certificate_requests(fake_db, "example.com")) == 1
    assert "SSL: requesting a Let's Encrypt certificate (the site was just created)" in caplog.messages


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
def mocked():
    """Every request the session sends is answered by what the test registered, in that order, and every
    registered answer must have been asked for."""
    with responses.RequestsMock(assert_all_requests_are_fired=True, registry=OrderedRegistry) as mock:
        yield mock


@pytest.fixture
def gateway_session():
    with Session(timeout=SESSION_TIMEOUT) as session:
        yield session


@pytest.fixture
def gateway(gateway_session, retry, served):
    return GatewayClient(GATEWAY_URL, GATEWAY_TOKEN, gateway_session, retry=retry, served_certificate=served)


def sent_json(call):
    return json.loads(call.request.body)


def refused():
    """What requests raises when nothing listens at the gateway's address (built as urllib3 builds it)."""
    return requests.exceptions.ConnectionError(MaxRetryError(None, ADD_PATH, NewConnectionError(
        None, "Failed to establish a new connection: [Errno 111] Connection refused")))


def test_gateway_create_static_site_posts_exact_json_with_api_key(mocked, gateway, passwords):
    mocked.post(ADD_URL, json=SITE_ADDED_ANSWER)

    site = gateway.create_static_site("example.com")

    user = site_user_for("example.com")
    assert site == StaticSite(f"/home/{user}/htdocs/example.com", created=True)
    (call,) = mocked.calls
    assert call.request.method == "POST"
    assert sent_json(call) == {"domainName": "example.com", "siteUser": user, "siteUserPassword": passwords[0]}
    assert call.request.headers["X-API-Key"] == GATEWAY_TOKEN
    assert call.request.headers["Content-Type"] == "application/json"
    assert call.request.req_kwargs["timeout"] == 130  # the gateway's own 120 s limit on clpctl, and a margin
    assert secret_values.mask(passwords[0]) == MASK  # and for the rest of the run


def test_gateway_create_static_site_made_by_hand_is_never_given_a_guessed_doc_root(mocked, gateway):
    mocked.post(ADD_URL, status=500, json={"success": False, "error": "Failed to add static site",
                                           "details": "domainName: This value already exists.\n"})

    with pytest.raises(CloudPanelError) as caught:
        gateway.create_static_site("example.com")

    assert "exists in CloudPanel under a site user this job did not make, and its document root cannot be read " \
           "through the gateway: write the row's doc_root" in str(caught.value)
    assert len(mocked.calls) == 1


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
    assert len(mocked.calls) == 1 and sleeps == []


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

    password = sent_json(mocked.calls[0])["siteUserPassword"]
    assert str(caught.value) == ("gateway: add the static site: HTTP 500: Command failed: clpctl site:add:static "
                                 f"--domainName=example.com --siteUser={site_user_for('example.com')} "
                                 f"--siteUserPassword='{MASK}'")
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
    assert caught.value.transient is False and sleeps == []


@pytest.mark.parametrize("base", [GATEWAY_URL + "/api", GATEWAY_URL + "/api/"])
def test_gateway_base_url_given_with_api_as_its_readme_does_is_used_without_it(mocked, gateway_session, retry, served,
                                                                              base):
    mocked.post(ADD_URL, json=SITE_ADDED_ANSWER)
    client = GatewayClient(base, GATEWAY_TOKEN, gateway_session, retry=retry, served_certificate=served)

    client.create_static_site("example.com")

    assert mocked.calls[0].request.url == ADD_URL


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
    assert len(mocked.calls) == 2


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
    assert len(mocked.calls) == 4 and sleeps == [0.75, 1.5, 3.0]


def test_gateway_provision_ssl_waits_certificate_minutes_and_posts_domain(mocked, gateway, served):
    mocked.post(CERT_URL, json=CERTIFICATE_ANSWER)

    gateway.provision_ssl("example.com")

    (call,) = mocked.calls
    assert sent_json(call) == {"domainName": "example.com"}
    assert call.request.headers["X-API-Key"] == GATEWAY_TOKEN
    assert call.request.req_kwargs["timeout"] == 130  # not 600: the gateway gives up on clpctl after 120 s
    assert served.looks == ["example.com"]


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
        looks.append(len(mocked.calls))
        return found_from if found_from and len(looks) > 1 else None

    client.existing_site_user = existing_site_user
    return looks


def test_create_static_site_503_on_add_looks_up_again_before_adding_again(mocked, gateway, sleeps, passwords):
    mocked.post(ADD_URL, status=503, body="<html>Service Unavailable</html>", content_type="text/html")
    mocked.post(ADD_URL, json=SITE_ADDED_ANSWER)
    looks = record_looks(gateway, mocked)

    site = gateway.create_static_site("example.com")

    assert site.created is True
    assert looks == [0, 1]  # before the first add, and again before the second
    assert len(mocked.calls) == 2 and sleeps == [0.75]
    # a new password per attempt, each masked for the rest of the run
    assert [sent_json(call)["siteUserPassword"] for call in mocked.calls] == passwords and len(set(passwords)) == 2
    assert all(secret_values.mask(password) == MASK for password in passwords)


def test_create_static_site_add_timed_out_is_not_sent_again_this_run(mocked, gateway, sleeps):
    """The gateway may still be adding it, and cannot be asked: the next run tries, and "already exists" counts."""
    mocked.post(ADD_URL, body=requests.exceptions.ReadTimeout("Read timed out. (read timeout=7)"))

    with pytest.raises(CloudPanelError) as caught:
        gateway.create_static_site("example.com")

    assert str(caught.value) == ("gateway: add the static site: no answer within 130 s (timeout); it may still have "
                                 "been made, so it is not sent again this run")
    assert caught.value.transient and caught.value.may_have_acted
    assert len(mocked.calls) == 1 and sleeps == []


@pytest.mark.parametrize("status", [502, 504, 520])
def test_gateway_create_static_site_proxy_saying_the_gateway_failed_is_not_sent_again(mocked, gateway, sleeps, status):
    mocked.post(ADD_URL, status=status, body="<html>Gateway Time-out</html>", content_type="text/html")

    with pytest.raises(CloudPanelError) as caught:
        gateway.create_static_site("example.com")

    assert caught.value.transient and caught.value.may_have_acted
    assert len(mocked.calls) == 1 and sleeps == []


def test_gateway_create_static_site_made_by_this_job_before_counts_as_made_with_its_true_doc_root(mocked, gateway,
                                                                                                 sleeps, caplog):
    caplog.set_level(logging.INFO)
    mocked.post(ADD_URL, status=500, json={"success": False, "error": "Failed to add static site",
                                           "details": "domainName: This value already exists.\n"
                                                      "siteUser: This value already exists.\n"})

    site = gateway.create_static_site("example.com")

    user = site_user_for("example.com")
    assert site == StaticSite(document_root(user, "example.com"), created=False)
    assert len(mocked.calls) == 1 and sleeps == []
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
    assert len(mocked.calls) == 1 and sleeps == []


def test_provision_ssl_new_site_connection_lost_mid_order_is_not_sent_again_this_run(mocked, gateway, served, sleeps):
    mocked.post(CERT_URL, body=requests.exceptions.ConnectionError(
        ProtocolError("Connection aborted.", RemoteDisconnected("Remote end closed connection without response"))))

    with pytest.raises(CertificateError) as caught:
        gateway.provision_ssl("example.com", new_site=True)

    assert caught.value.may_have_acted
    assert served.looks == [] and len(mocked.calls) == 1 and sleeps == []


def test_provision_ssl_refused_with_503_looks_again_and_orders_again(mocked, gateway, served, sleeps):
    mocked.post(CERT_URL, status=503, body="<html>503 Service Unavailable</html>", content_type="text/html")
    mocked.post(CERT_URL, json=CERTIFICATE_ANSWER)

    gateway.provision_ssl("example.com")

    assert served.looks == ["example.com", "example.com"]
    assert len(mocked.calls) == 2 and sleeps == [0.75]


def test_provision_ssl_unreachable_every_attempt_raises_transient_after_four_looks_and_orders(mocked, gateway,
                                                                                            served, sleeps):
    for _ in range(4):
        mocked.post(CERT_URL, status=503, body="", content_type="text/html")

    with pytest.raises(CertificateError) as caught:
        gateway.provision_ssl("example.com")

    assert caught.value.transient is True
    assert str(caught.value) == "gateway: install the certificate: HTTP 503 Service Unavailable"
    assert served.looks == ["example.com"] * 4
    assert len(mocked.calls) == 4 and sleeps == [0.75, 1.5, 3.0]


# --- the gateway over the wire, against the FakeGateway stand-in -------------------------------------------------

@pytest.fixture
def fake_gateway(tmp_path):
    with FakeGateway(tmp_path / "gateway.sq3", api_key=GATEWAY_TOKEN) as server:
        yield server


@pytest.fixture
def session():
    with Session(timeout=5) as session:
        yield session


def test_gateway_check_against_fake_gateway_reports_key_accepted(fake_gateway, session, retry, served):
    answer = GatewayClient(fake_gateway.url, GATEWAY_TOKEN, session, retry=retry, served_certificate=served).check()

    assert answer == f"gateway {fake_gateway.url} reachable, key accepted"
    assert [(r["method"], r["path"]) for r in fake_gateway.requests_log] == [("GET", "/health"),
                                                                             ("GET", "/api/user/list")]
    assert fake_gateway.requests_log[1]["headers"]["x-api-key"] == GATEWAY_TOKEN


def test_gateway_check_against_fake_gateway_wrong_key_names_cloudpanel_api_token(fake_gateway, session, retry,
                                                                                 served):
    client = GatewayClient(fake_gateway.url, "wrong-key-0000", session, retry=retry, served_certificate=served)

    with pytest.raises(CloudPanelError) as caught:
        client.check()

    assert str(caught.value) == ("gateway: list users (read-only): the gateway refused CLOUDPANEL_API_TOKEN (HTTP "
                                 "401): set it to the gateway's API key")


def test_gateway_create_and_certificate_against_fake_gateway_leave_one_site_and_one_request(fake_gateway, session,
                                                                                            retry, served):
    client = GatewayClient(fake_gateway.url, GATEWAY_TOKEN, session, retry=retry, served_certificate=served)

    first = client.create_static_site("example.com")
    second = client.create_static_site("example.com")
    client.provision_ssl("example.com", new_site=first.created)

    doc_root = f"/home/{site_user_for('example.com')}/htdocs/example.com"
    assert (first, second) == (StaticSite(doc_root, created=True), StaticSite(doc_root, created=False))
    assert [row["domain_name"] for row in clpctl_state.read_sites(fake_gateway.db_path)] == ["example.com"]
    assert len(clpctl_state.certificate_requests(fake_gateway.db_path, "example.com")) == 1


def test_clpctl_killed_by_a_signal_is_transient_and_not_sent_again(clpctl_client, fake_db, tmp_path):
    """A Ctrl-C can reach clpctl in the moment it starts: that says nothing about the site."""
    killed = tmp_path / "killed-clpctl"
    killed.write_text("#!/bin/sh\nkill -INT $$\n")
    killed.chmod(0o755)

    with pytest.raises(CloudPanelError) as caught:
        clpctl_client(clpctl=str(killed), db_path=fake_db).create_static_site("example.com")

    assert str(caught.value) == "clpctl site:add:static was stopped by SIGINT before it finished"
    assert caught.value.transient and caught.value.may_have_acted
