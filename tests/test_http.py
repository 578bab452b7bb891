"""core/http: the shared requests session (a timeout on every call, no redirect followed, the CA bundle and proxy
from the environment) and `send`, which sorts what requests raises or answers into transient and final errors.
Statuses and exceptions through `responses`; what only a socket shows (a peer that is not HTTP, a proxy, TLS)
over real sockets on 127.0.0.1."""

import json
import socket
import ssl
import threading

import pytest
import requests
import responses
import trustme
from pytest_httpserver import HTTPServer

from hosting_automator.core.http import Session, retry_after_seconds, send
from hosting_automator.errors import MatomoError
from tests.sockets import closed_port

URL = "https://stats.example.org/index.php"
ENVIRONMENT_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                         "ALL_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE",
                         "SSL_CERT_DIR")


@pytest.fixture(autouse=True)
def nothing_from_the_machine(monkeypatch):
    for name in ENVIRONMENT_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def mocked():
    with responses.RequestsMock() as mock:
        yield mock


def sent(session, method="POST", url=URL, **kwargs):
    return send(session, method, url, error=MatomoError, what="Matomo", **kwargs)


def failure(session, method="POST", url=URL, **kwargs):
    with pytest.raises(MatomoError) as caught:
        sent(session, method, url, **kwargs)
    return caught.value


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


def test_retry_after_seconds_reads_numbers_and_http_dates_and_ignores_garbage():
    assert retry_after_seconds("12") == 12.0
    assert retry_after_seconds("-3") == 0.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:30 GMT", now=1445412480) == 30.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


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


def test_send_nothing_listening_is_a_transient_cannot_connect():
    error = failure(Session(timeout=5), url=f"http://127.0.0.1:{closed_port()}/index.php")
    assert str(error) == "Matomo: cannot connect ([Errno 111] Connection refused)"
    assert error.transient


@pytest.fixture
def one_answer_server():
    """A server on 127.0.0.1 that reads one request and answers it with the given bytes, then closes."""
    listeners = []

    def start(answer):
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)

        def serve():
            connection, _ = listener.accept()
            with connection:
                connection.recv(65536)
                connection.sendall(answer)

        threading.Thread(target=serve, daemon=True).start()
        return f"http://127.0.0.1:{listener.getsockname()[1]}/index.php"

    yield start
    for listener in listeners:
        listener.close()


@pytest.mark.parametrize("answer, reason", [
    (b"", "Remote end closed connection without response"),
    (b"SSH-2.0-OpenSSH_9.2\r\n", "SSH-2.0-OpenSSH_9.2"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}", "IncompleteRead"),
])
def test_send_peer_that_closes_or_is_not_http_is_a_transient_error_saying_no_whole_answer(one_answer_server, answer,
                                                                                           reason):
    error = failure(Session(timeout=5), url=one_answer_server(answer))
    assert str(error).startswith("Matomo: no whole answer came (")
    assert reason in str(error)
    assert error.transient


def test_send_server_that_never_answers_times_out_after_the_session_timeout():
    with socket.create_server(("127.0.0.1", 0)) as listener:  # the kernel accepts; nobody answers
        error = failure(Session(timeout=0.2), url=f"http://127.0.0.1:{listener.getsockname()[1]}/")
    assert str(error) == "Matomo: no answer within 0.2 s (timeout)"
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


# --- the environment: proxies and CA bundles, as requests reads them ------------------------------------------

def test_session_http_goes_through_the_environment_proxy_and_no_proxy_networks_go_direct(monkeypatch,
                                                                                        one_answer_server):
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
    received = []
    proxy = socket.create_server(("127.0.0.1", 0))

    def serve_proxy():
        connection, _ = proxy.accept()
        with connection:
            received.append(connection.recv(65536))
            connection.sendall(ok)

    threading.Thread(target=serve_proxy, daemon=True).start()
    monkeypatch.setenv("http_proxy", f"http://ops:pw@127.0.0.1:{proxy.getsockname()[1]}")
    monkeypatch.setenv("no_proxy", "127.0.0.0/8")
    session = Session(timeout=5)

    try:
        assert sent(session, url="http://stats.example.org/index.php?a=1").status_code == 200
        assert sent(session, url=one_answer_server(ok)).status_code == 200  # 127.0.0.1: direct, not the proxy
    finally:
        proxy.close()

    request, = received
    assert request.startswith(b"POST http://stats.example.org/index.php?a=1 HTTP/1.1\r\n")
    assert b"\r\nProxy-Authorization: Basic b3BzOnB3\r\n" in request


@pytest.fixture(scope="module")
def https_server():
    ca = trustme.CA()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("localhost").configure_cert(context)
    server = HTTPServer(host="localhost", port=0, ssl_context=context)
    server.start()
    server.expect_request("/").respond_with_json({"ok": True})
    yield server, ca
    server.stop()


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"])
def test_session_tls_is_verified_against_the_ca_bundle_the_environment_names(https_server, variable, monkeypatch,
                                                                             tmp_path):
    server, ca = https_server
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv(variable, str(tmp_path / "ca.pem"))
    assert Session(timeout=5).get(server.url_for("/")).json() == {"ok": True}


def test_send_tls_with_an_unknown_ca_is_refused(https_server):
    server, _ = https_server
    error = failure(Session(timeout=5), method="GET", url=server.url_for("/"))
    assert str(error).startswith("Matomo: TLS failed (")
    assert "certificate verify failed" in str(error)


def test_send_ca_bundle_that_cannot_be_loaded_is_a_final_error_naming_the_variables(https_server, monkeypatch,
                                                                                    tmp_path):
    server, _ = https_server
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "missing.pem"))
    error = failure(Session(timeout=5), method="GET", url=server.url_for("/"))
    assert str(error).startswith("Matomo: the CA bundle cannot be used (")
    assert str(tmp_path / "missing.pem") in str(error)
    assert str(error).endswith("check REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE or SSL_CERT_FILE")
    assert not error.transient
