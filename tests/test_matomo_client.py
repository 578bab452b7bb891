"""The Matomo client against the recorded shapes of Matomo 5.2 served by a local HTTP server (pytest-httpserver),
and once against the FakeMatomo stand-in: module/method/format in the query string, the token only in the form
body, errors read from the body whatever the status, and a create that looks up again before every attempt. Real
sockets, so these hold for whichever HTTP client core/http.py is built on."""

import socket
from http import HTTPStatus
from urllib.parse import parse_qs, parse_qsl, urlsplit

import pytest

from hosting_automator.core.http import new_session
from hosting_automator.errors import MatomoError
from hosting_automator.services.matomo_client import MatomoClient, site_urls
from tests.standins.matomo import SUPERUSER_MESSAGE, TOKEN_MESSAGE, FakeMatomo

PATH = "/index.php"
TOKEN = "matomo-token-4f9e2a7c1b8d3e6f"
LOOKUP = "SitesManager.getSitesIdFromSiteUrl"
ADD = "SitesManager.addSite"


@pytest.fixture
def api(httpserver):
    yield httpserver.url_for(PATH)
    httpserver.check()


@pytest.fixture
def session():
    with new_session(timeout=5) as session:
        yield session


@pytest.fixture
def matomo(api, session, retry):
    return MatomoClient(api, TOKEN, session, retry)


def query(method):
    return {"module": "API", "method": method, "format": "JSON"}


def script(httpserver, *answers):
    """Answers Matomo calls in order: each entry is (expected method, status, body text)."""
    for method, status, body in answers:
        httpserver.expect_ordered_request(PATH, method="POST", query_string=query(method)).respond_with_data(
            body, status, content_type="application/json")


def status_line(status):
    return f"{status} {HTTPStatus(status).phrase}"


def form_of(request):
    return parse_qsl(request.get_data().decode("ascii"), keep_blank_values=True)  # form bodies are ASCII bytes


def requests_seen(httpserver):
    return [request for request, _ in httpserver.log]


def methods_called(httpserver):
    return [request.args["method"] for request in requests_seen(httpserver)]


@pytest.fixture
def silent_server():
    """A port that accepts connections (the kernel does) but never answers."""
    with socket.create_server(("127.0.0.1", 0), backlog=16) as listener:
        yield listener


def calls_waiting(listener):
    """(HTTP method, Matomo method) of every request sent to `listener`, in order, one per connection."""
    listener.setblocking(False)
    calls = []
    while True:
        try:
            connection, _ = listener.accept()
        except BlockingIOError:
            return calls
        with connection, connection.makefile("rb") as stream:
            connection.settimeout(1)
            verb, target, _ = stream.readline().decode("ascii").split()
            calls.append((verb, dict(parse_qsl(urlsplit(target).query))["method"]))


# --- find, then add ----------------------------------------------------------------------------------------------

def test_create_tracking_site_absent_looks_up_then_adds_with_token_only_in_body(httpserver, matomo):
    script(httpserver, (LOOKUP, 200, "[]"), (ADD, 200, '{"value": 7}'))

    assert matomo.create_tracking_site("example.com") == 7

    lookup, add = requests_seen(httpserver)
    for request in (lookup, add):
        assert request.method == "POST"
        assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
        assert "token_auth" not in request.query_string.decode()
        assert TOKEN not in request.url
    assert parse_qs(lookup.query_string.decode()) == {"module": ["API"], "method": [LOOKUP], "format": ["JSON"]}
    assert parse_qs(add.query_string.decode()) == {"module": ["API"], "method": [ADD], "format": ["JSON"]}
    assert form_of(lookup) == [("url", "https://example.com"), ("token_auth", TOKEN)]
    assert form_of(add) == [("siteName", "example.com"), ("urls[0]", "https://example.com"),
                            ("urls[1]", "https://www.example.com"), ("token_auth", TOKEN)]


def test_create_tracking_site_www_domain_adds_apex_twin_second(httpserver, matomo):
    script(httpserver, (LOOKUP, 200, "[]"), (ADD, 200, '{"value": 8}'))

    matomo.create_tracking_site("www.example.com")

    add = dict(form_of(requests_seen(httpserver)[1]))
    assert (add["urls[0]"], add["urls[1]"]) == ("https://www.example.com", "https://example.com")
    assert add["siteName"] == "www.example.com"


def test_site_urls_main_url_first_then_twin():
    assert site_urls("shop.example.com") == ["https://shop.example.com", "https://www.shop.example.com"]
    assert site_urls("www.example.com") == ["https://www.example.com", "https://example.com"]


def test_create_tracking_site_configured_timezone_and_currency_are_sent(httpserver, api, session, retry):
    script(httpserver, (LOOKUP, 200, "[]"), (ADD, 200, '{"value": 3}'))
    client = MatomoClient(api, TOKEN, session, retry, timezone="Europe/Berlin", currency="EUR")

    client.create_tracking_site("example.com")

    add = dict(form_of(requests_seen(httpserver)[1]))
    assert (add["timezone"], add["currency"]) == ("Europe/Berlin", "EUR")


@pytest.mark.parametrize("answer, expected", [('[{"idsite": "5"}]', 5), ('[{"idsite": 12}, {"idsite": 13}]', 12)])
def test_create_tracking_site_existing_site_returns_its_id_without_adding(httpserver, matomo, answer, expected):
    script(httpserver, (LOOKUP, 200, answer))

    assert matomo.create_tracking_site("example.com") == expected
    assert methods_called(httpserver) == [LOOKUP]


# --- errors --------------------------------------------------------------------------------------------------------

def test_create_tracking_site_error_result_with_http_200_decodes_entities(httpserver, matomo, sleeps):
    script(httpserver, (LOOKUP, 200, "[]"),
           (ADD, 200, '{"result": "error", "message": "The url &quot;https://x&quot; is not a valid URL &amp; '
                      'was refused."}'))

    with pytest.raises(MatomoError) as caught:
        matomo.create_tracking_site("example.com")

    assert str(caught.value) == 'SitesManager.addSite: The url "https://x" is not a valid URL & was refused.'
    assert caught.value.transient is False and sleeps == []


def test_create_tracking_site_token_refused_names_matomo_api_token_and_is_not_retried(httpserver, matomo, sleeps):
    script(httpserver, (LOOKUP, 401, '{"result": "error", "message": "%s"}' % TOKEN_MESSAGE))

    with pytest.raises(MatomoError) as caught:
        matomo.create_tracking_site("example.com")

    assert str(caught.value) == f"{LOOKUP}: {TOKEN_MESSAGE} (check MATOMO_API_TOKEN)"
    assert TOKEN not in str(caught.value)
    assert len(httpserver.log) == 1 and sleeps == []


def test_create_tracking_site_not_superuser_says_token_must_be_a_super_users(httpserver, matomo):
    script(httpserver, (LOOKUP, 200, "[]"),
           (ADD, 401, '{"result": "error", "message": "You can&#039;t access this resource as it requires a '
                      '&#039;superuser&#039; access."}'))

    with pytest.raises(MatomoError) as caught:
        matomo.create_tracking_site("example.com")

    assert str(caught.value) == f"{ADD}: {SUPERUSER_MESSAGE} (MATOMO_API_TOKEN must belong to a super user)"


@pytest.mark.parametrize("status, body, shown", [
    (200, "<!DOCTYPE html><html><head><title>Matomo</title></head><body>Sign in</body></html>", "'Matomo Sign in'"),
    (200, '[{"idsite": "5"', "'[{\"idsite\": \"5\"'"),
    (200, "", "an empty body"),
    (502, "<html><body><h1>502 Bad Gateway</h1></body></html>", None),
])
def test_find_site_body_that_is_not_json_raises_matomo_error(httpserver, matomo, status, body, shown):
    httpserver.expect_request(PATH, method="POST").respond_with_data(body, status_line(status),
                                                                     content_type="text/html")

    with pytest.raises(MatomoError) as caught:
        matomo.find_site("example.com")

    if shown is None:  # a proxy's 502 page: transient, the retry policy handles it
        assert str(caught.value) == f"{LOOKUP}: HTTP 502 Bad Gateway" and caught.value.transient is True
    else:
        assert str(caught.value) == f"{LOOKUP}: HTTP {status} with a body that is not JSON: {shown}"
        assert caught.value.transient is False


def test_find_site_answer_that_is_not_a_list_raises_matomo_error(httpserver, matomo):
    script(httpserver, (LOOKUP, 200, '{"value": 5}'))

    with pytest.raises(MatomoError, match=r"getSitesIdFromSiteUrl answered .* where a list was expected"):
        matomo.find_site("example.com")


@pytest.mark.parametrize("answer, shown", [('{"value": "abc"}', "'abc'"), ('{"value": null}', "None"),
                                           ('{"ok": true}', "None"), ('{"value": true}', "True"),
                                           ('{"value": 5.9}', "5.9"), ('{"value": "-3"}', "'-3'")])
def test_create_tracking_site_add_answer_without_numeric_id_raises_not_a_number(httpserver, matomo, answer, shown):
    script(httpserver, (LOOKUP, 200, "[]"), (ADD, 200, answer))

    with pytest.raises(MatomoError) as caught:
        matomo.create_tracking_site("example.com")

    assert str(caught.value) == f"addSite answered idSite {shown}, which is not a number"


def test_create_tracking_site_add_answer_zero_is_not_a_site(httpserver, matomo):
    script(httpserver, (LOOKUP, 200, "[]"), (ADD, 200, '{"value": 0}'))

    with pytest.raises(MatomoError, match="^addSite answered idSite 0, which is not a site$"):
        matomo.create_tracking_site("example.com")


def test_create_tracking_site_503_on_add_looks_up_again_before_adding_again(httpserver, matomo, sleeps):
    script(httpserver, (LOOKUP, 200, "[]"), (ADD, 503, "<html>Service Unavailable</html>"),
           (LOOKUP, 200, "[]"), (ADD, 200, '{"value": 9}'))

    assert matomo.create_tracking_site("example.com") == 9
    assert methods_called(httpserver) == [LOOKUP, ADD, LOOKUP, ADD]
    assert sleeps == [0.75]


def test_create_tracking_site_503_after_add_took_effect_finds_it_and_adds_no_duplicate(httpserver, matomo, sleeps):
    script(httpserver, (LOOKUP, 200, "[]"), (ADD, 503, ""), (LOOKUP, 200, '[{"idsite": "9"}]'))

    assert matomo.create_tracking_site("example.com") == 9
    assert methods_called(httpserver) == [LOOKUP, ADD, LOOKUP]
    assert sleeps == [0.75]


def test_create_tracking_site_429_waits_retry_after_header(httpserver, matomo, sleeps):
    httpserver.expect_ordered_request(PATH, method="POST").respond_with_data("", 429, headers={"Retry-After": "12"})
    httpserver.expect_ordered_request(PATH, method="POST").respond_with_data("[]", content_type="application/json")
    httpserver.expect_ordered_request(PATH, method="POST").respond_with_json({"value": 4})

    assert matomo.create_tracking_site("example.com") == 4
    assert sleeps == [12.0]


def test_create_tracking_site_timeouts_every_time_give_up_after_four_attempts(silent_server, retry, sleeps):
    port = silent_server.getsockname()[1]
    with new_session(timeout=0.2) as session:
        matomo = MatomoClient(f"http://127.0.0.1:{port}{PATH}", TOKEN, session, retry)
        with pytest.raises(MatomoError) as caught:
            matomo.create_tracking_site("example.com")

    assert caught.value.transient is True
    assert str(caught.value).startswith(f"{LOOKUP}: no answer")
    assert calls_waiting(silent_server) == [("POST", LOOKUP)] * 4
    assert sleeps == [0.75, 1.5, 3.0]


# --- check -------------------------------------------------------------------------------------------------------

def test_check_token_without_super_user_access_says_so(httpserver, matomo):
    script(httpserver, ("UsersManager.hasSuperUserAccess", 200, '{"value": false}'))

    with pytest.raises(MatomoError) as caught:
        matomo.check()

    assert str(caught.value).startswith("the token works but its user is not a super user, and addSite needs one")
    assert "MATOMO_API_TOKEN" in str(caught.value)


def test_check_super_user_reports_version(httpserver, api, matomo):
    script(httpserver, ("UsersManager.hasSuperUserAccess", 200, '{"value": true}'),
           ("API.getMatomoVersion", 200, '{"value": "5.2.0"}'))

    assert matomo.check() == f"Matomo 5.2.0 at {api}, token of a super user"


# --- over the wire, against the FakeMatomo stand-in ------------------------------------------------------------

@pytest.fixture
def fake_matomo():
    with FakeMatomo(token=TOKEN) as server:
        yield server


def test_create_tracking_site_against_fake_matomo_creates_one_site_and_finds_it_again(fake_matomo, session, retry):
    client = MatomoClient(fake_matomo.url + "/index.php", TOKEN, session, retry, timezone="UTC", currency="EUR")

    first = client.create_tracking_site("www.example.com")
    second = client.create_tracking_site("www.example.com")

    assert first == second
    assert fake_matomo.sites == {first: {"name": "www.example.com", "timezone": "UTC", "currency": "EUR",
                                         "urls": ["https://www.example.com", "https://example.com"]}}
    assert all("token_auth" not in request["query"] for request in fake_matomo.requests_log)
    assert client.check() == f"Matomo 5.2.0 at {fake_matomo.url}/index.php, token of a super user"


def test_create_tracking_site_against_fake_matomo_without_super_user_raises_hint(session, retry):
    with FakeMatomo(token=TOKEN, superuser=False) as server:
        client = MatomoClient(server.url + "/index.php", TOKEN, session, retry)
        with pytest.raises(MatomoError) as caught:
            client.create_tracking_site("example.com")

    assert str(caught.value) == f"{ADD}: {SUPERUSER_MESSAGE} (MATOMO_API_TOKEN must belong to a super user)"
