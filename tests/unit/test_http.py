"""core/http without a socket: the shared requests session (a timeout on every call, no redirect followed) and
`send`, which sorts what requests raises or answers into transient and final errors, through `responses`. What only
a socket shows (a peer that is not HTTP, a proxy, TLS, the CA bundle): tests/integration/test_http.py."""

import json

import pytest
import requests
import responses

from hosting_automator.core.http import Session
from tests.support.sending import URL, failure, sent

pytestmark = pytest.mark.usefixtures("no_proxy_or_ca_bundle_from_the_machine")


@pytest.fixture
def mocked():
    """Answers what the test registered, the first that matches, as often as asked (not tests/unit/conftest.py's,
    which answers each once, in order)."""
    with responses.RequestsMock() as mock:
        yield mock


# --- what is sent ------------------------------------------------------------------------------------------------

def test_send_form_body_is_encoded_without_none_values_and_json_body_with_its_type(mocked):
    mocked.post(URL, json={"value": 1})
    mocked.post("https://gateway.example/api/site/add/static", json={"success": True})
    session = Session(timeout=5)

    sent(session, params={"module": "API", "method": "SitesManager.addSite"},
         data={"siteName": "example.com", "urls[0]": "https://example.com", "timezone": None, "token_auth": "t0k"})
    sent(session, url="https://gateway.example/api/site/add/static", json={"domainName": "example.com"},
         headers={"X-API-Key": "k3y"})

    form, gateway = (call.request for call in mocked.calls)
    assert form.url == URL + "?module=API&method=SitesManager.addSite"
    assert form.body == "siteName=example.com&urls%5B0%5D=https%3A%2F%2Fexample.com&token_auth=t0k"
    assert form.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert form.headers["User-Agent"] == "hosting-automator"
    assert json.loads(gateway.body) == {"domainName": "example.com"}
    assert gateway.headers["Content-Type"] == "application/json"
    assert gateway.headers["X-API-Key"] == "k3y"


def test_session_every_call_gets_the_run_timeout_unless_it_sets_its_own(mocked):
    mocked.post(URL, json={})
    session = Session(timeout=0.5)

    sent(session)
    sent(session, timeout=600)

    assert [call.request.req_kwargs["timeout"] for call in mocked.calls] == [0.5, 600]


def test_send_redirect_is_not_followed_but_reported_with_where_it_points(mocked):
    mocked.post(URL, status=302, headers={"Location": "https://matomo.example.org/index.php"})

    error = failure(Session(timeout=5), data={"token_auth": "t0k"})

    assert str(error) == ("Matomo: HTTP 302, a redirect to https://matomo.example.org/index.php: set the address it "
                          "points to")
    assert not error.transient
    assert len(mocked.calls) == 1  # the token went to the address configured, and nowhere else


# --- statuses ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("status", [429, 502, 503, 504, 520])
def test_send_transient_status_raises_transient_error_with_the_retry_after_header(mocked, status):
    mocked.post(URL, status=status, headers={"Retry-After": "7"})

    error = failure(Session(timeout=5))

    assert str(error).startswith(f"Matomo: HTTP {status}")
    assert error.transient and error.retry_after == 7.0


@pytest.mark.parametrize("status", [200, 400, 401, 404, 500])
def test_send_other_status_is_returned_for_the_service_to_read(mocked, status):
    mocked.post(URL, status=status, json={"result": "error"})
    assert sent(Session(timeout=5)).status_code == status


def test_send_retry_after_reader_of_the_caller_is_used(mocked):
    mocked.post(URL, status=429, json={"retryAfter": 900})

    error = failure(Session(timeout=5), retry_after=lambda response: float(response.json()["retryAfter"]))

    assert error.retry_after == 900.0


# --- failures on the way -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("raised, message", [
    (requests.ConnectTimeout(), "Matomo: cannot connect within 5 s (timeout)"),
    (requests.ReadTimeout(), "Matomo: no answer within 5 s (timeout)"),
    (requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead(3 bytes read)"),
     "Matomo: no whole answer came (Connection broken: IncompleteRead(3 bytes read))"),
])
def test_send_failure_on_the_way_is_transient_and_says_what_happened(mocked, raised, message):
    mocked.post(URL, body=raised)

    error = failure(Session(timeout=5))

    assert str(error) == message
    assert error.transient


@pytest.mark.parametrize("url, shown", [
    ("ftp://ops:s3cret@stats.example.org/", "Matomo: the request cannot be sent (No connection adapters were found "
                                            "for 'ftp://…@stats.example.org/')"),
    (f"http://{'a' * 64}.example/", "Matomo: the address cannot be used ("),
])
def test_send_address_that_cannot_be_used_is_a_final_error_without_credentials(url, shown):
    error = failure(Session(timeout=5), url=url)
    assert str(error).startswith(shown)
    assert "s3cret" not in str(error)
    assert not error.transient


def test_send_proxy_that_is_not_http_is_a_final_error(monkeypatch):
    monkeypatch.setenv("https_proxy", "socks5://ops:s3cret@127.0.0.1:1080")
    error = failure(Session(timeout=5))
    assert str(error) == "Matomo: the request cannot be sent (Missing dependencies for SOCKS support.)"
    assert not error.transient
