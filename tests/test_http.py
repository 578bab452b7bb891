"""The shared HTTP client over real sockets: the exact bytes it sends, connections kept alive and dropped when the
server closed them, a timeout on every call, failures sorted into transient and final, the CA bundle and the proxy
taken from the environment, and no redirect followed."""

import http.client
import io
import re
import socket
import ssl
import threading

import pytest
import trustme
from pytest_httpserver import HTTPServer

from hosting_automator.core.http import _Answer, _parse_plain_headers, new_session, send
from hosting_automator.errors import MatomoError
from tests.sockets import closed_port

PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy",
                   "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(autouse=True)
def no_proxy_from_the_machine(monkeypatch):
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


class RawServer:
    """Accepts connections on 127.0.0.1 and records each request as it arrived; answers every request with
    `answer` on the same connection (kept open unless the answer closes it), or never answers when it is None."""

    def __init__(self, answer=None):
        self.answer = answer
        self.received = []
        self.connections = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.connections.append(connection)
            threading.Thread(target=self._talk, args=(connection,), daemon=True).start()

    def _talk(self, connection):
        pending = b""
        try:
            while True:
                while b"\r\n\r\n" not in pending:
                    chunk = connection.recv(65536)
                    if not chunk:
                        return
                    pending += chunk
                head, _, pending = pending.partition(b"\r\n\r\n")
                length = int(re.search(rb"\r\ncontent-length: *(\d+)", head, re.I)[1]) if b"ength:" in head else 0
                while len(pending) < length:
                    pending += connection.recv(65536)
                self.received.append(head + b"\r\n\r\n" + pending[:length])
                pending = pending[length:]
                if self.answer is None:
                    continue
                connection.sendall(self.answer)
                if b"Connection: close" in self.answer:
                    connection.close()
                    return
        except OSError:
            return

    def drop_connections(self):
        for connection in self.connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)  # close() alone sends nothing while _talk waits in recv
            except OSError:
                pass
            connection.close()

    def close(self):
        self.listener.close()
        self.drop_connections()


@pytest.fixture
def raw_server():
    servers = []

    def start(answer=None):
        servers.append(RawServer(answer))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def test_form_and_json_bodies_and_headers_are_sent_exactly(httpserver):
    httpserver.expect_request("/index.php").respond_with_json({})
    url = httpserver.url_for("/index.php")
    with new_session(timeout=5) as session:
        session.post(url, params={"module": "API", "method": "A.b"},
                     data={"siteName": "bücher.example", "urls[0]": "https://x.example/?a=1&b", "currency": None})
        session.post(url, json={"domainName": "x.example", "n": 1}, headers={"X-API-Key": "k"})

    (form, _), (as_json, _) = httpserver.log
    assert form.full_path == "/index.php?module=API&method=A.b"
    assert form.get_data() == b"siteName=b%C3%BCcher.example&urls%5B0%5D=https%3A%2F%2Fx.example%2F%3Fa%3D1%26b"
    assert form.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert form.headers["Content-Length"] == str(len(form.get_data()))
    assert form.headers["User-Agent"] == "hosting-automator"
    assert form.headers["Accept-Encoding"] == "identity"  # answers are never compressed
    assert as_json.get_data() == b'{"domainName": "x.example", "n": 1}'
    assert as_json.headers["Content-Type"] == "application/json" and as_json.headers["X-API-Key"] == "k"


def test_credentials_in_the_url_become_basic_auth_and_netrc_is_never_read(httpserver, monkeypatch, tmp_path):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine localhost login netrc-user password netrc-pass\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    httpserver.expect_request("/index.php").respond_with_json({})
    with new_session(timeout=5) as session:
        session.post(httpserver.url_for("/index.php"), data={"a": "b"})
        session.post(httpserver.url_for("/index.php").replace("://", "://ops:s3cret@"), data={"a": "b"})

    (plain, _), (with_credentials, _) = httpserver.log
    assert "Authorization" not in plain.headers
    assert with_credentials.headers["Authorization"] == "Basic b3BzOnMzY3JldA=="  # ops:s3cret


def test_one_connection_is_kept_alive_and_one_the_server_closed_is_replaced(raw_server):
    server = raw_server(answer=b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}")
    url = f"http://127.0.0.1:{server.port}/x"
    with new_session(timeout=5) as session:
        answers = [session.get(url).json(), session.post(url, data={"a": "b"}).json()]
        server.drop_connections()  # as a server does with an idle connection: the next call opens a new one
        answers.append(session.get(url).json())

    assert answers == [{}, {}, {}]
    assert len(server.received) == 3
    assert len(server.connections) == 2  # the first two requests shared one connection


def test_a_chunked_answer_is_read_whole_and_its_connection_kept(raw_server):
    server = raw_server(answer=b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
                               b"5\r\n{\"a\":\r\n3\r\n [1\r\n2\r\n]}\r\n0\r\n\r\n")
    url = f"http://127.0.0.1:{server.port}/x"
    with new_session(timeout=5) as session:
        answers = [session.get(url).json(), session.get(url).json()]
    assert answers == [{"a": [1]}, {"a": [1]}]
    assert len(server.connections) == 1


def test_a_redirect_is_not_followed_but_reported_with_where_it_points(httpserver):
    httpserver.expect_request("/index.php").respond_with_data(
        "", status=301, headers={"Location": "https://stats.example.org/index.php"})

    with pytest.raises(MatomoError) as caught:
        send(new_session(timeout=5), "POST", httpserver.url_for("/index.php"), data={"token_auth": "t"},
             error=MatomoError, what="SitesManager.addSite")

    assert str(caught.value) == ("SitesManager.addSite: HTTP 301, a redirect to https://stats.example.org/index.php: "
                                 "set the address it points to")
    assert not caught.value.transient
    assert len(httpserver.log) == 1  # the token was not sent on to the other address


def test_an_address_that_is_not_http_is_a_final_error_naming_it_without_its_credentials():
    with pytest.raises(MatomoError) as caught:
        send(new_session(timeout=5), "POST", "ftp://ops:s3cret@stats.example.org/", error=MatomoError, what="Matomo")
    assert str(caught.value) == "Matomo: 'ftp://…@stats.example.org/' is not an http:// or https:// address"
    assert not caught.value.transient


def test_a_server_that_never_answers_is_a_transient_timeout_naming_the_wait(raw_server):
    server = raw_server(answer=None)
    with pytest.raises(MatomoError) as caught:
        send(new_session(timeout=30), "POST", f"http://127.0.0.1:{server.port}/index.php", data={"a": "b"},
             timeout=0.2, error=MatomoError, what="SitesManager.addSite")
    assert str(caught.value) == "SitesManager.addSite: no answer within 0.2 s (timeout)"
    assert caught.value.transient


def test_nothing_listening_is_a_transient_cannot_connect():
    with pytest.raises(MatomoError) as caught:
        send(new_session(timeout=5), "GET", f"http://127.0.0.1:{closed_port()}/", error=MatomoError, what="Matomo")
    assert str(caught.value).startswith("Matomo: cannot connect (")
    assert "refused" in str(caught.value)
    assert caught.value.transient


def test_an_answer_that_is_not_http_is_a_transient_error_saying_so(raw_server):
    server = raw_server(answer=b"SSH-2.0-OpenSSH_9.2\r\n")
    with pytest.raises(MatomoError) as caught:
        send(new_session(timeout=5), "GET", f"http://127.0.0.1:{server.port}/", error=MatomoError, what="Matomo")
    assert str(caught.value).startswith("Matomo: the answer was cut short or malformed (")
    assert caught.value.transient


def test_http_goes_through_the_proxy_of_the_environment_read_once_and_no_proxy_is_honoured(raw_server, monkeypatch):
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
    proxy, other_proxy, direct = raw_server(answer), raw_server(answer), raw_server(answer)
    monkeypatch.setenv("http_proxy", f"http://ops:pw@127.0.0.1:{proxy.port}")
    monkeypatch.setenv("no_proxy", "localhost")
    session = new_session(timeout=5)

    session.get("http://stats.example.org/index.php?a=1")
    session.get("http://bücher.example/")
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{other_proxy.port}")  # read once per address
    session.get("http://stats.example.org/index.php?a=1")
    session.get(f"http://localhost:{direct.port}/health")

    assert [request.split(b"\r\n")[0] for request in proxy.received] == [
        b"GET http://stats.example.org/index.php?a=1 HTTP/1.1", b"GET http://xn--bcher-kva.example/ HTTP/1.1",
        b"GET http://stats.example.org/index.php?a=1 HTTP/1.1"]
    assert all(b"\r\nProxy-Authorization: Basic b3BzOnB3\r\n" in request for request in proxy.received)
    assert [request.split(b"\r\nHost: ")[1].split(b"\r\n")[0] for request in proxy.received] == [
        b"stats.example.org", b"xn--bcher-kva.example", b"stats.example.org"]
    assert other_proxy.received == []
    assert direct.received[0].startswith(b"GET /health HTTP/1.1\r\n")


def test_a_network_in_no_proxy_covers_its_addresses_and_an_ipv6_literal_is_bracketed_for_the_proxy(raw_server,
                                                                                                   monkeypatch):
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
    proxy, direct = raw_server(answer), raw_server(answer)
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy.port}")
    monkeypatch.setenv("no_proxy", "example.org, 127.0.0.0/8")
    session = new_session(timeout=5)

    session.get(f"http://127.0.0.1:{direct.port}/health")
    session.get("http://[fd00::7]:8080/x")

    assert direct.received[0].startswith(b"GET /health HTTP/1.1\r\n")
    assert proxy.received[0].startswith(b"GET http://[fd00::7]:8080/x HTTP/1.1\r\n")


def test_https_goes_through_the_proxy_as_a_tunnel(raw_server, monkeypatch):
    proxy = raw_server(answer=b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
    monkeypatch.setenv("https_proxy", f"http://ops:pw@127.0.0.1:{proxy.port}")

    with pytest.raises(MatomoError) as caught:
        send(new_session(timeout=5), "POST", "https://stats.example.org/index.php", data={"token_auth": "t"},
             error=MatomoError, what="Matomo")

    request = proxy.received[0]
    assert request.startswith(b"CONNECT stats.example.org:443 HTTP/1.0\r\n")
    assert b"\r\nProxy-Authorization: Basic b3BzOnB3\r\n" in request
    assert b"token_auth" not in request  # the body only ever goes inside the tunnel
    assert "cannot connect (Tunnel connection failed: 403 Forbidden)" in str(caught.value)


def test_a_proxy_that_is_not_http_is_a_final_error_naming_it(monkeypatch):
    monkeypatch.setenv("https_proxy", "socks5://ops:pw@127.0.0.1:1080")
    with pytest.raises(MatomoError) as caught:
        send(new_session(timeout=5), "GET", "https://stats.example.org/", error=MatomoError, what="Matomo")
    assert str(caught.value) == ("Matomo: the proxy 'socks5://…@127.0.0.1:1080' from the environment is not an "
                                 "http:// proxy, the only kind this client can use")
    assert not caught.value.transient


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
def test_tls_is_verified_against_the_ca_bundle_the_environment_names(https_server, variable, monkeypatch, tmp_path):
    server, ca = https_server
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv(variable, str(tmp_path / "ca.pem"))
    assert new_session(timeout=5).get(server.url_for("/")).json() == {"ok": True}


def test_tls_is_verified_by_default_and_an_unknown_ca_is_refused(https_server, monkeypatch):
    server, _ = https_server
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(MatomoError) as caught:
        send(new_session(timeout=5), "GET", server.url_for("/"), error=MatomoError, what="Matomo")
    assert "certificate verify failed" in str(caught.value)


def test_a_ca_bundle_that_cannot_be_loaded_is_a_final_error_naming_the_setting(https_server, monkeypatch, tmp_path):
    server, _ = https_server
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "missing.pem"))
    with pytest.raises(MatomoError) as caught:
        send(new_session(timeout=5), "GET", server.url_for("/"), error=MatomoError, what="Matomo")
    assert str(caught.value) == (f"Matomo: the CA bundle {tmp_path / 'missing.pem'} (SSL_CERT_FILE) cannot be loaded: "
                                 "No such file or directory")
    assert not caught.value.transient


PLAIN_HEADER_BLOCKS = [
    b"Content-Type: application/json; charset=utf-8\r\nContent-Length: 2\r\n\r\n",
    b"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\nX-Empty:\r\nX-Spaces:   padded   \r\n\r\n",
    b"x-lower: v\nMixed-Case: V\n\n",
    b"Latin: caf\xe9\r\n\r\n",
    b"Colon:in:value: a:b\r\n\r\n",
    b"Tab:\tvalue\twith tab\r\n\r\n",
    b"\r\n",
]
OTHER_HEADER_BLOCKS = [  # left to the email parser
    b"Folded: first\r\n second\r\nNext: n\r\n\r\n",
    b"No colon here\r\nContent-Length: 0\r\n\r\n",
    b"Name With Space: v\r\n\r\n",
    b"CR-Inside: a\rb\r\nNEL-Inside: a\x85b\r\nFF-Inside: a\x0cb\r\n\r\n",
]


@pytest.mark.parametrize("block", PLAIN_HEADER_BLOCKS + OTHER_HEADER_BLOCKS)
def test_answer_headers_are_read_exactly_as_the_standard_library_reads_them(block):
    ours_fp, theirs_fp = io.BytesIO(block + b"body"), io.BytesIO(block + b"body")
    ours, theirs = _parse_plain_headers(ours_fp), http.client.parse_headers(theirs_fp)

    assert ours.items() == theirs.items()
    names = ("content-length", "CONTENT-TYPE", "set-cookie", "x-spaces", "folded", "next", "latin", "colon")
    assert [ours.get(name) for name in names] == [theirs.get(name) for name in names]
    assert ours.get_all("set-cookie") == theirs.get_all("set-cookie")
    assert ours.get_content_charset() == theirs.get_content_charset()
    assert ours_fp.read() == theirs_fp.read() == b"body"


@pytest.mark.parametrize("block", PLAIN_HEADER_BLOCKS)
def test_plain_answer_headers_never_reach_the_email_parser(block, monkeypatch):
    monkeypatch.setattr("email.parser.Parser", None)  # calling it would fail
    assert _parse_plain_headers(io.BytesIO(block)) is not None


def test_answers_are_read_with_that_parser_on_this_python():
    assert _Answer.begin.__globals__["parse_headers"] is _parse_plain_headers
    assert _Answer.begin.__code__ is http.client.HTTPResponse.begin.__code__  # the library's own code
