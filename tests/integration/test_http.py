"""core/http over real sockets on 127.0.0.1: nothing listening, a peer that closes or is not HTTP, a server that
never answers, the proxy the environment names, and TLS verified against the CA bundle the environment names.
Statuses and exceptions through `responses`: tests/unit/test_http.py."""

import socket
import ssl
import threading

import pytest
import trustme
from pytest_httpserver import HTTPServer

from hosting_automator.core.http import Session
from tests.support.sending import failure, sent
from tests.support.sockets import closed_port

pytestmark = pytest.mark.usefixtures("no_proxy_or_ca_bundle_from_the_machine")


# --- failures on the way -----------------------------------------------------------------------------------------

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
