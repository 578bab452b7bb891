"""The Matomo client against the recorded shapes of Matomo 5.2, answered by `responses` in front of the real
requests session (core.http.Session): module/method/format in the query string, the token only in the form body,
errors read from the body whatever the status, the network's failures sorted into transient ones, redirects
reported and not followed, and a create that looks up again before every attempt. Over a real socket against the
FakeMatomo stand-in: tests/integration/test_matomo_client.py."""

import json
import logging
from http.client import RemoteDisconnected
from urllib.parse import parse_qs, parse_qsl, urlsplit

import pytest
import requests
from responses import matchers
from urllib3.exceptions import ProtocolError

from hosting_automator.core.http import Session
from hosting_automator.errors import MatomoError
from hosting_automator.services.matomo_client import MatomoClient, site_urls
from tests.standins.matomo import SUPERUSER_MESSAGE, TOKEN_MESSAGE

API = "https://matomo.example/index.php"
TOKEN = "matomo-token-4f9e2a7c1b8d3e6f"
LOOKUP = "SitesManager.getSitesIdFromSiteUrl"
URLS = "SitesManager.getSiteUrlsFromId"
ADD = "SitesManager.addSite"
EXAMPLE_URLS = '["https://example.com", "https://www.example.com"]'  # getSiteUrlsFromId of example.com's site
TIMEOUT = 5


@pytest.fixture
def session():
    with Session(timeout=TIMEOUT) as session:
        yield session


@pytest.fixture
def matomo(session, retry):
    return MatomoClient(API, TOKEN, session, retry)


def query(method):
    return {"module": "API", "method": method, "format": "JSON"}


def script(mocked, *answers):
    """Answers Matomo calls in order: each entry is (expected method, status, body: text or an exception)."""
    for method, status, body in answers:
        mocked.post(API, body=body, status=status, content_type="application/json",
                    match=[matchers.query_param_matcher(query(method))])


def query_of(request):
    return parse_qs(urlsplit(request.url).query)


def form_of(request):
    body = request.body.decode("ascii") if isinstance(request.body, bytes) else request.body
    return parse_qsl(body, keep_blank_values=True)  # form bodies are ASCII


def methods_called(mocked):
    return [query_of(call.request)["method"][0] for call in mocked.calls]


def dropped_connection():
    """What requests raises when the server closes the connection before answering."""
    return requests.exceptions.ConnectionError(
        ProtocolError("Connection aborted.", RemoteDisconnected("Remote end closed connection without response")))


# --- find, then add ----------------------------------------------------------------------------------------------

def test_create_tracking_site_absent_looks_up_then_adds_with_token_only_in_body(mocked, matomo):
    script(mocked, (LOOKUP, 200, "[]"), (ADD, 200, '{"value": 7}'))

    assert matomo.create_tracking_site("example.com") == 7

    lookup, add = (call.request for call in mocked.calls)
    for request in (lookup, add):
        assert request.method == "POST"
        assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
        assert request.headers["User-Agent"] == "hosting-automator"
        assert "token_auth" not in urlsplit(request.url).query
        assert TOKEN not in request.url
        assert request.req_kwargs["timeout"] == TIMEOUT
    assert query_of(lookup) == {"module": ["API"], "method": [LOOKUP], "format": ["JSON"]}
    assert query_of(add) == {"module": ["API"], "method": [ADD], "format": ["JSON"]}
    assert form_of(lookup) == [("url", "https://example.com"), ("token_auth", TOKEN)]
    assert form_of(add) == [("siteName", "example.com"), ("urls[0]", "https://example.com"),
                            ("urls[1]", "https://www.example.com"), ("token_auth", TOKEN)]


@pytest.mark.parametrize("found, expected", [((), None), (((URLS, 200, EXAMPLE_URLS),), 7)])
def test_dry_run_looks_the_site_up_and_adds_none(mocked, matomo, caplog, found, expected):
    caplog.set_level(logging.INFO)
    script(mocked, (LOOKUP, 200, '[{"idsite": 7}]' if found else "[]"), *found)

    assert matomo.create_tracking_site("example.com", dry_run=True) == expected

    assert methods_called(mocked) == [LOOKUP] + [URLS] * len(found)
    assert caplog.messages == (["No Matomo site for it yet (dry run: nothing changed)"] if expected is None
                               else ["Matomo site exists already (idSite 7)"])


def test_create_tracking_site_www_domain_adds_apex_twin_second(mocked, matomo):
    script(mocked, (LOOKUP, 200, "[]"), (ADD, 200, '{"value": 8}'))

    matomo.create_tracking_site("www.example.com")

    add = dict(form_of(mocked.calls[1].request))
    assert (add["urls[0]"], add["urls[1]"]) == ("https://www.example.com", "https://example.com")
    assert add["siteName"] == "www.example.com"


def test_site_urls_main_url_first_then_twin():
    assert site_urls("shop.example.com") == ["https://shop.example.com", "https://www.shop.example.com"]
    assert site_urls("www.example.com") == ["https://www.example.com", "https://example.com"]


def test_create_tracking_site_configured_timezone_and_currency_are_sent(mocked, session, retry):
    script(mocked, (LOOKUP, 200, "[]"), (ADD, 200, '{"value": 3}'))
    client = MatomoClient(API, TOKEN, session, retry, timezone="Europe/Berlin", currency="EUR")

    client.create_tracking_site("example.com")

    add = dict(form_of(mocked.calls[1].request))
    assert (add["timezone"], add["currency"]) == ("Europe/Berlin", "EUR")


@pytest.mark.parametrize("answer, expected", [('[{"idsite": "5"}]', 5), ('[{"idsite": 12}, {"idsite": 13}]', 12)])
def test_create_tracking_site_existing_site_returns_its_id_without_adding(mocked, matomo, answer, expected):
    script(mocked, (LOOKUP, 200, answer), (URLS, 200, EXAMPLE_URLS))

    assert matomo.create_tracking_site("example.com") == expected
    assert methods_called(mocked) == [LOOKUP, URLS]


# --- errors --------------------------------------------------------------------------------------------------------

def test_create_tracking_site_error_result_with_http_200_decodes_entities(mocked, matomo, sleeps):
    script(mocked, (LOOKUP, 200, "[]"),
           (ADD, 200, '{"result": "error", "message": "The url &quot;https://x&quot; is not a valid URL &amp; '
                      'was refused."}'))

    with pytest.raises(MatomoError) as caught:
        matomo.create_tracking_site("example.com")

    assert str(caught.value) == 'SitesManager.addSite: The url "https://x" is not a valid URL & was refused.'
    assert caught.value.transient is False and sleeps == []


def test_create_tracking_site_token_refused_names_matomo_api_token_and_is_not_retried(mocked, matomo, sleeps):
    script(mocked, (LOOKUP, 401, '{"result": "error", "message": "%s"}' % TOKEN_MESSAGE))

    with pytest.raises(MatomoError) as caught:
        matomo.create_tracking_site("example.com")

    assert str(caught.value) == f"{LOOKUP}: {TOKEN_MESSAGE} (check MATOMO_API_TOKEN)"
    assert TOKEN not in str(caught.value)
    assert len(mocked.calls) == 1 and sleeps == []


def test_create_tracking_site_not_superuser_says_token_must_be_a_super_users_once_and_adds_no_more(mocked, matomo,
                                                                                                    caplog):
    script(mocked, (LOOKUP, 200, "[]"),
           (ADD, 401, '{"result": "error", "message": "You can&#039;t access this resource as it requires a '
                      '&#039;superuser&#039; access."}'), (LOOKUP, 200, "[]"))

    with pytest.raises(MatomoError) as first:
        matomo.create_tracking_site("example.com")
    with pytest.raises(MatomoError) as second:
        matomo.create_tracking_site("other.example")

    assert str(first.value) == "Matomo refuses to create sites for MATOMO_API_TOKEN: it must belong to a super user"
    assert str(second.value).startswith("not asked: Matomo refuses to create sites for MATOMO_API_TOKEN")
    (error,) = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert f"{ADD}: {SUPERUSER_MESSAGE} (MATOMO_API_TOKEN must belong to a super user)" in error


@pytest.mark.parametrize("message", [
    "Unable to authenticate with the provided token. It is either invalid or expired.",
    "Too many failed logins. Please wait and try logging in again later.",
])
def test_a_refused_token_is_said_once_and_matomo_is_not_asked_again_this_run(mocked, matomo, caplog, message):
    """Each refused token is a failed login to Matomo, which blocks the address after 20 in an hour."""
    script(mocked, (LOOKUP, 401, json.dumps({"result": "error", "message": message})))

    with pytest.raises(MatomoError) as first:
        matomo.create_tracking_site("example.com")
    with pytest.raises(MatomoError) as later:
        matomo.create_tracking_site("other.example")
    with pytest.raises(MatomoError):
        matomo.check()

    assert message.split(".")[0] in str(first.value)
    assert str(later.value) == (f"{LOOKUP}: not asked: Matomo refuses MATOMO_API_TOKEN (refused earlier in this "
                                "run)")
    assert len(mocked.calls) == 1
    errors = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert len(errors) == 1 and "after 20 in an hour Matomo blocks this address" in errors[0]


@pytest.mark.parametrize("status, body, shown", [
    (200, "<!DOCTYPE html><html><head><title>Matomo</title></head><body>Sign in</body></html>", "'Matomo Sign in'"),
    (200, '[{"idsite": "5"', "'[{\"idsite\": \"5\"'"),
    (200, "", "an empty body"),
    (500, "<html><body><h1>Internal Server Error</h1></body></html>", "'Internal Server Error'"),
    (502, "<html><body><h1>502 Bad Gateway</h1></body></html>", None),
])
def test_find_site_body_that_is_not_json_raises_matomo_error(mocked, matomo, status, body, shown):
    mocked.post(API, body=body, status=status, content_type="text/html")

    with pytest.raises(MatomoError) as caught:
        matomo.find_site("example.com")

    if shown is None:  # a proxy's 502 page: transient, the retry policy handles it
        assert str(caught.value) == f"{LOOKUP}: HTTP 502 Bad Gateway" and caught.value.transient is True
    else:
        assert str(caught.value) == f"{LOOKUP}: HTTP {status} with a body that is not JSON: {shown}"
        assert caught.value.transient is False


def test_find_site_json_with_http_500_raises_status_and_answer(mocked, matomo):
    script(mocked, (LOOKUP, 500, '{"message": "database gone"}'))

    with pytest.raises(MatomoError) as caught:
        matomo.find_site("example.com")

    assert str(caught.value) == f"{LOOKUP}: HTTP 500: {{'message': 'database gone'}}"
    assert caught.value.transient is False


def test_find_site_answer_that_is_not_a_list_raises_matomo_error(mocked, matomo):
    script(mocked, (LOOKUP, 200, '{"value": 5}'))

    with pytest.raises(MatomoError, match=r"getSitesIdFromSiteUrl answered .* where a list was expected"):
        matomo.find_site("example.com")


@pytest.mark.parametrize("answer, shown", [('{"value": "abc"}', "'abc'"), ('{"value": null}', "None"),
                                           ('{"ok": true}', "None"), ('{"value": true}', "True"),
                                           ('{"value": 5.9}', "5.9"), ('{"value": "-3"}', "'-3'")])
def test_create_tracking_site_add_answer_without_numeric_id_raises_not_a_number(mocked, matomo, answer, shown):
    script(mocked, (LOOKUP, 200, "[]"), (ADD, 200, answer))

    with pytest.raises(MatomoError) as caught:
        matomo.create_tracking_site("example.com")

    assert str(caught.value) == f"addSite answered idSite {shown}, which is not a number"


def test_find_site_lookup_answer_without_numeric_id_raises_not_a_number(mocked, matomo):
    script(mocked, (LOOKUP, 200, '[{"idsite": "five"}]'))

    with pytest.raises(MatomoError, match=r"^getSitesIdFromSiteUrl answered idSite 'five', which is not a number$"):
        matomo.find_site("example.com")


def test_create_tracking_site_add_answer_zero_is_not_a_site(mocked, matomo):
    script(mocked, (LOOKUP, 200, "[]"), (ADD, 200, '{"value": 0}'))

    with pytest.raises(MatomoError, match="^addSite answered idSite 0, which is not a site$"):
        matomo.create_tracking_site("example.com")


# --- transient failures: retried, looking up again ------------------------------------------------------------

def test_create_tracking_site_503_on_add_looks_up_again_before_adding_again(mocked, matomo, sleeps):
    script(mocked, (LOOKUP, 200, "[]"), (ADD, 503, "<html>Service Unavailable</html>"),
           (LOOKUP, 200, "[]"), (ADD, 200, '{"value": 9}'))

    assert matomo.create_tracking_site("example.com") == 9
    assert methods_called(mocked) == [LOOKUP, ADD, LOOKUP, ADD]
    assert sleeps == [0.75]


def test_create_tracking_site_503_after_add_took_effect_finds_it_and_adds_no_duplicate(mocked, matomo, sleeps):
    script(mocked, (LOOKUP, 200, "[]"), (ADD, 503, ""), (LOOKUP, 200, '[{"idsite": "9"}]'), (URLS, 200, EXAMPLE_URLS))

    assert matomo.create_tracking_site("example.com") == 9
    assert methods_called(mocked) == [LOOKUP, ADD, LOOKUP, URLS]
    assert sleeps == [0.75]


def test_create_tracking_site_connection_dropped_on_add_is_not_sent_again_this_run(mocked, matomo, sleeps):
    """Matomo may have added the site: a look-up right now may not see it, and a second add would double it."""
    script(mocked, (LOOKUP, 200, "[]"), (ADD, 200, dropped_connection()))

    with pytest.raises(MatomoError) as caught:
        matomo.create_tracking_site("example.com")

    assert str(caught.value) == ("SitesManager.addSite: no whole answer came (Remote end closed connection without "
                                 "response); it may still have been made, so it is not sent again this run")
    assert methods_called(mocked) == [LOOKUP, ADD]
    assert sleeps == []


def test_create_tracking_site_add_slower_than_the_timeout_is_not_sent_again_this_run(mocked, matomo, sleeps):
    script(mocked, (LOOKUP, 200, "[]"), (ADD, 200, requests.exceptions.ReadTimeout("Read timed out.")))

    with pytest.raises(MatomoError) as caught:
        matomo.create_tracking_site("example.com")

    assert caught.value.may_have_acted
    assert methods_called(mocked) == [LOOKUP, ADD] and sleeps == []


def test_find_site_connection_dropped_raises_transient_error_naming_it(mocked, matomo):
    script(mocked, (LOOKUP, 200, dropped_connection()))

    with pytest.raises(MatomoError) as caught:
        matomo.find_site("example.com")

    assert caught.value.transient is True
    assert str(caught.value).startswith(f"{LOOKUP}: ")
    assert "Remote end closed connection without response" in str(caught.value)
    assert TOKEN not in str(caught.value)


def test_create_tracking_site_429_waits_retry_after_header(mocked, matomo, sleeps):
    mocked.post(API, body="", status=429, headers={"Retry-After": "12"},
                match=[matchers.query_param_matcher(query(LOOKUP))])
    script(mocked, (LOOKUP, 200, "[]"), (ADD, 200, '{"value": 4}'))

    assert matomo.create_tracking_site("example.com") == 4
    assert methods_called(mocked) == [LOOKUP, LOOKUP, ADD]
    assert sleeps == [12.0]


@pytest.mark.parametrize("timeout", [requests.exceptions.ReadTimeout, requests.exceptions.ConnectTimeout])
def test_create_tracking_site_timeouts_every_time_give_up_after_four_attempts(mocked, matomo, sleeps, timeout):
    script(mocked, *[(LOOKUP, 200, timeout("timed out")) for _ in range(4)])

    with pytest.raises(MatomoError) as caught:
        matomo.create_tracking_site("example.com")

    assert caught.value.transient is True
    # the wording (connecting or waiting for the answer) is core.http's; the method and the wait are Matomo's
    assert str(caught.value).startswith(f"{LOOKUP}: ")
    assert str(caught.value).endswith(f" within {TIMEOUT} s (timeout)")
    assert [call.request.method for call in mocked.calls] == ["POST"] * 4
    assert methods_called(mocked) == [LOOKUP] * 4
    assert sleeps == [0.75, 1.5, 3.0]


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_find_site_redirect_is_reported_with_its_target_and_not_followed(mocked, session, retry, sleeps, status):
    plain = "http://matomo.example/index.php"
    mocked.post(plain, status=status, headers={"Location": API})
    matomo = MatomoClient(plain, TOKEN, session, retry)

    with pytest.raises(MatomoError) as caught:
        matomo.create_tracking_site("example.com")

    assert str(caught.value) == (f"{LOOKUP}: HTTP {status}, a redirect to {API}: set MATOMO_API_URL to the address "
                                 "it points to")
    assert caught.value.transient is False and sleeps == []
    (call,) = mocked.calls  # the token went out once, to the configured address, and nowhere else
    assert call.request.url.startswith(plain + "?")
    assert dict(form_of(call.request))["token_auth"] == TOKEN
    assert TOKEN not in str(caught.value)


# --- check -------------------------------------------------------------------------------------------------------

def test_check_token_without_super_user_access_says_so(mocked, matomo):
    script(mocked, ("UsersManager.hasSuperUserAccess", 200, '{"value": false}'))

    with pytest.raises(MatomoError) as caught:
        matomo.check()

    assert str(caught.value).startswith("the token works but its user is not a super user, and addSite needs one")
    assert "MATOMO_API_TOKEN" in str(caught.value)


def test_check_super_user_reports_version(mocked, matomo):
    script(mocked, ("UsersManager.hasSuperUserAccess", 200, '{"value": true}'),
           ("API.getMatomoVersion", 200, '{"value": "5.2.0"}'))

    assert matomo.check() == f"Matomo 5.2.0 at {API}, token of a super user"
    assert all(dict(form_of(call.request)) == {"token_auth": TOKEN} for call in mocked.calls)


# --- a look-up's answer confirmed by the site's own URLs -----------------------------------------------------------

@pytest.mark.parametrize("urls_of, expected", [
    # Matomo drops every "www." of the URL it looks up: awww.example's look-up answers aexample's site
    ({3: ["https://aexample.test", "https://www.aexample.test"]}, None),
    # the site whose main URL is this name wins over one that has it as an alias, whatever Matomo's order
    ({3: ["https://other.test", "https://awww.example.test"], 4: ["https://awww.example.test"]}, 4),
    # then one whose main URL is the www. twin, then an alias; any scheme, case, port or path
    ({3: ["https://x.test", "http://AWWW.example.test:8080/"], 4: ["http://www.awww.example.test/shop"]}, 4),
    ({3: ["https://x.test", "https://awww.example.test"]}, 3),
])
def test_find_site_takes_only_an_id_whose_own_urls_name_the_domain_main_url_first(mocked, matomo, urls_of, expected):
    script(mocked, (LOOKUP, 200, json.dumps([{"idsite": site_id} for site_id in urls_of])),
           *[(URLS, 200, json.dumps(urls)) for urls in urls_of.values()])

    assert matomo.find_site("awww.example.test") == expected

    lookups = [dict(form_of(call.request)) for call in mocked.calls]
    assert [(each.get("url"), each.get("idSite")) for each in lookups] == (
        [("https://awww.example.test", None)] + [(None, str(site_id)) for site_id in urls_of])


def test_a_look_up_answering_another_names_site_makes_a_site_of_its_own(mocked, matomo):
    script(mocked, (LOOKUP, 200, '[{"idsite": 3}]'), (URLS, 200, '["https://aexample.test"]'),
           (ADD, 200, '{"value": 8}'))

    assert matomo.create_tracking_site("awww.example.test") == 8
    assert methods_called(mocked) == [LOOKUP, URLS, ADD]


def test_an_internationalised_name_is_looked_up_in_both_spellings_and_created_in_punycode(mocked, matomo):
    """Matomo stores a URL as given: a site made by hand as https://münchen.example is found only so."""
    script(mocked, (LOOKUP, 200, "[]"), (LOOKUP, 200, '[{"idsite": 6}]'), (URLS, 200, '["https://münchen.example"]'))

    assert matomo.create_tracking_site("xn--mnchen-3ya.example") == 6
    assert [dict(form_of(call.request)).get("url") for call in mocked.calls[:2]] == [
        "https://xn--mnchen-3ya.example", "https://münchen.example"]

    mocked.reset()
    script(mocked, (LOOKUP, 200, "[]"), (LOOKUP, 200, "[]"), (ADD, 200, '{"value": 9}'))
    assert matomo.create_tracking_site("xn--mnchen-3ya.example") == 9
    add = dict(form_of(mocked.calls[2].request))
    assert (add["siteName"], add["urls[0]"], add["urls[1]"]) == (
        "xn--mnchen-3ya.example", "https://xn--mnchen-3ya.example", "https://www.xn--mnchen-3ya.example")


# --- the site settings: checked read-only, a refusal said once ----------------------------------------------------

TIMEZONES = '{"Europe": {"Europe/Berlin": "Germany"}, "UTC": {"UTC": "UTC", "UTC+5.5": "UTC+5:30"}}'
CURRENCIES = '{"EUR": "Euro (\u20ac)", "USD": "US Dollar ($)"}'
CHECK = [("UsersManager.hasSuperUserAccess", 200, '{"value": true}'), ("API.getMatomoVersion", 200, '{"value": "5.0.2"}')]


@pytest.mark.parametrize("timezone, currency, expected", [
    ("Europe/Berlin", "EUR", "MATOMO_SITE_TIMEZONE=Europe/Berlin and MATOMO_SITE_CURRENCY=EUR accepted"),
    ("UTC+5.5", None, "MATOMO_SITE_TIMEZONE=UTC+5.5 accepted"),
    ("US/Eastern", "EUR", "MATOMO_SITE_TIMEZONE=US/Eastern is not a value Matomo accepts"),
    ("UTC", "XYZ", "MATOMO_SITE_CURRENCY=XYZ is not a value Matomo accepts"),
])
def test_check_validates_timezone_and_currency_against_matomos_own_lists(mocked, session, retry, timezone, currency,
                                                                         expected):
    lists = [("SitesManager.getTimezonesList", 200, TIMEZONES)] + (
        [("SitesManager.getCurrencyList", 200, CURRENCIES)] if currency and timezone != "US/Eastern" else [])
    script(mocked, *CHECK, *lists)
    client = MatomoClient(API, TOKEN, session, retry, timezone=timezone, currency=currency)

    if "not a value" in expected:
        with pytest.raises(MatomoError, match=expected.replace(".", r"\.").replace("+", r"\+")):
            client.check()
    else:
        assert client.check().endswith(f"token of a super user; {expected}")
    assert ADD not in methods_called(mocked)


def test_a_refused_timezone_is_said_once_and_not_sent_again_this_run(mocked, session, retry, caplog):
    refused = '{"result": "error", "message": "The timezone &quot;Mars\\/Olympus&quot; is not valid. Please enter a valid timezone."}'
    script(mocked, (LOOKUP, 200, "[]"), (ADD, 200, refused), (LOOKUP, 200, "[]"), (LOOKUP, 200, "[]"))
    client = MatomoClient(API, TOKEN, session, retry, timezone="Mars/Olympus")

    with pytest.raises(MatomoError) as first:
        client.create_tracking_site("a.example")
    with pytest.raises(MatomoError) as second:
        client.create_tracking_site("b.example")
    with pytest.raises(MatomoError):
        client.create_tracking_site("c.example")

    assert methods_called(mocked) == [LOOKUP, ADD, LOOKUP, LOOKUP]  # an existing site is still found and used
    assert str(first.value) == "Matomo refuses MATOMO_SITE_TIMEZONE=Mars/Olympus"  # Matomo's words: in the ERROR
    assert str(second.value) == "not asked: Matomo refuses MATOMO_SITE_TIMEZONE=Mars/Olympus (refused earlier in this run)"
    errors = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert len(errors) == 1 and "MATOMO_SITE_TIMEZONE=Mars/Olympus" in errors[0] and "getTimezonesList" in errors[0]
    assert 'The timezone "Mars/Olympus" is not valid' in errors[0]


# --- which of Matomo's HTTP 500 answers pass --------------------------------------------------------------------

@pytest.mark.parametrize("message, transient", [
    ("SQLSTATE[HY000] [2002] Connection refused", True),
    ("SQLSTATE[HY000] [2002] No such file or directory", True),
    ("SQLSTATE[HY000] [2006] MySQL server has gone away", True),
    ("SQLSTATE[HY000] [1040] Too many connections", True),
    ("SQLSTATE[40001]: Serialization failure: 1213 Deadlock found", True),
    ("SQLSTATE[08S01]: Communication link failure", True),
    ("SQLSTATE[42S02]: Base table or view not found: 1146 Table 'matomo.matomo_site' doesn't exist", False),
    ("SQLSTATE[HY000] [1045] Access denied for user 'matomo'@'localhost'", False),
    ("Allowed memory size of 134217728 bytes exhausted", False),
])
def test_a_500_for_a_database_that_cannot_be_reached_is_tried_again_others_are_not(mocked, matomo, sleeps, message,
                                                                                   transient):
    body = json.dumps({"result": "error", "message": message})
    script(mocked, (LOOKUP, 500, body), *([(LOOKUP, 200, "[]"), (ADD, 200, '{"value": 4}')] if transient else []))

    if transient:
        assert matomo.create_tracking_site("example.com") == 4
        assert len(sleeps) == 1
    else:
        with pytest.raises(MatomoError) as caught:
            matomo.create_tracking_site("example.com")
        assert not caught.value.transient and message.split(":")[0] in str(caught.value)
        assert sleeps == []
