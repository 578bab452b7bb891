"""Shared HTTP machinery of the stand-ins: threaded HTTP/1.1 keep-alive server on 127.0.0.1, request log,
fault injection, configurable latency, start/stop/context manager."""

from __future__ import annotations

import email.parser
import http.client
import json
import re
import socket
import sys
import threading
import time
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote_plus, urlsplit

from .faults import Fault


class Response:
    __slots__ = ("status", "headers", "body", "after_drop")

    def __init__(self, status, body=b"", headers=None, after_drop=False):
        self.status = int(status)
        self.body = body if isinstance(body, bytes) else str(body).encode("utf-8")
        self.headers = dict(headers or {})
        self.after_drop = after_drop  # a stand-in may ask to close the socket instead of answering


def parse_query(text):
    """urllib.parse.parse_qs(text, keep_blank_values=True), at a fraction of its cost: most pairs need no decoding."""
    result = {}
    for pair in text.split("&"):
        if not pair:
            continue
        name, _, value = pair.partition("=")
        if "%" in pair or "+" in pair:
            name, value = unquote_plus(name, errors="replace"), unquote_plus(value, errors="replace")
        result.setdefault(name, []).append(value)
    return result


def json_response(status, obj, headers=None):
    h = {"Content-Type": "application/json; charset=utf-8"}
    if headers:
        h.update(headers)
    return Response(status, json.dumps(obj).encode("utf-8"), h)


# Header lines the email parser would read as plainly `name: value`: a name of the characters its headerRE accepts
# (printable ASCII but ":", no space), a colon, blanks it strips, the value, the line end; then the blank line.
_PLAIN_HEADER_LINE = r"([!-9;-~]+):[ \t]*([^\r\n]*)\r?\n"
_PLAIN_HEADER_BLOCK = re.compile(f"(?:{_PLAIN_HEADER_LINE})*(?:\r?\n)?")
_PLAIN_HEADER_LINES = re.compile(_PLAIN_HEADER_LINE)


class _Headers:
    """Request headers parsed without the email package (it costs ~80 us a request), with the part of
    email.message.Message's interface that is used here; same values as Message: get() = first value of a name
    (case-insensitive), items() = every (name, value) as sent. `by_lower_name`: lower-cased name -> last value."""

    __slots__ = ("_items", "_first", "by_lower_name")

    def __init__(self, items):
        self._items = items
        first, last = {}, {}
        for name, value in items:
            key = name.lower()
            if key not in first:
                first[key] = value
            last[key] = value
        self._first = first
        self.by_lower_name = last

    def get(self, name, failobj=None):
        return self._first.get(name.lower(), failobj)

    def get_all(self, name, failobj=None):
        key = name.lower()
        values = [v for k, v in self._items if k.lower() == key]
        return values or failobj

    def __getitem__(self, name):
        return self.get(name)

    def __contains__(self, name):
        return name.lower() in self._first

    def __len__(self):
        return len(self._items)

    def __iter__(self):
        return iter([k for k, _ in self._items])

    def keys(self):
        return [k for k, _ in self._items]

    def values(self):
        return [v for _, v in self._items]

    def items(self):
        return list(self._items)


def _parse_headers(lines):
    """Header lines (bytes, as http.client._read_headers returns them) -> _Headers, or the email parser's Message
    (what http.client.parse_headers gives) when a line is anything but a plain `name: value`."""
    text = b"".join(lines).decode("iso-8859-1")
    if _PLAIN_HEADER_BLOCK.fullmatch(text) is None:  # folded, malformed, bare CR...: the email parser decides
        return email.parser.Parser(_class=http.client.HTTPMessage).parsestr(text)
    return _Headers(_PLAIN_HEADER_LINES.findall(text))  # one pass over the block, not a match per line


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256
    allow_reuse_address = True

    def __init__(self, addr, handler, owner):
        self.owner = owner
        self.open_sockets = set()
        self.sockets_lock = threading.Lock()
        super().__init__(addr, handler)

    def process_request(self, request, client_address):
        with self.sockets_lock:
            self.open_sockets.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self.sockets_lock:
            self.open_sockets.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request, client_address):
        # Clients closing keep-alive connections (or a stop()) are normal here; stay quiet about them.
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, OSError)):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "standin"
    sys_version = ""

    def setup(self):
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def log_message(self, format, *args):  # noqa: A002 - signature of the base class
        pass

    def parse_request(self):
        """BaseHTTPRequestHandler.parse_request of Python 3.11, with a cheaper header parser (_parse_headers)."""
        self.command = None  # set in case of error on the first line
        self.request_version = version = self.default_request_version
        self.close_connection = True
        requestline = str(self.raw_requestline, "iso-8859-1")
        requestline = requestline.rstrip("\r\n")
        self.requestline = requestline
        words = requestline.split()
        if len(words) == 0:
            return False

        if len(words) >= 3:  # Enough to determine protocol version
            version = words[-1]
            try:
                if not version.startswith("HTTP/"):
                    raise ValueError
                base_version_number = version.split("/", 1)[1]
                version_number = base_version_number.split(".")
                if len(version_number) != 2:
                    raise ValueError
                if any(not component.isdigit() for component in version_number):
                    raise ValueError("non digit in http version")
                if any(len(component) > 10 for component in version_number):
                    raise ValueError("unreasonable length http version")
                version_number = int(version_number[0]), int(version_number[1])
            except (ValueError, IndexError):
                self.send_error(HTTPStatus.BAD_REQUEST, "Bad request version (%r)" % version)
                return False
            if version_number >= (1, 1) and self.protocol_version >= "HTTP/1.1":
                self.close_connection = False
            if version_number >= (2, 0):
                self.send_error(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED,
                                "Invalid HTTP version (%s)" % base_version_number)
                return False
            self.request_version = version

        if not 2 <= len(words) <= 3:
            self.send_error(HTTPStatus.BAD_REQUEST, "Bad request syntax (%r)" % requestline)
            return False
        command, path = words[:2]
        if len(words) == 2:
            self.close_connection = True
            if command != "GET":
                self.send_error(HTTPStatus.BAD_REQUEST, "Bad HTTP/0.9 request type (%r)" % command)
                return False
        self.command, self.path = command, path
        if self.path.startswith("//"):
            self.path = "/" + self.path.lstrip("/")  # Reduce to a single /

        try:
            self.headers = _parse_headers(http.client._read_headers(self.rfile))
        except http.client.LineTooLong as err:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Line too long", str(err))
            return False
        except http.client.HTTPException as err:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Too many headers", str(err))
            return False

        conntype = self.headers.get("Connection", "")
        if conntype.lower() == "close":
            self.close_connection = True
        elif conntype.lower() == "keep-alive" and self.protocol_version >= "HTTP/1.1":
            self.close_connection = False
        expect = self.headers.get("Expect", "")
        if (expect.lower() == "100-continue" and self.protocol_version >= "HTTP/1.1"
                and self.request_version >= "HTTP/1.1"):
            if not self.handle_expect_100():
                return False
        return True

    def _read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            chunks = []
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self):
        raw = self._read_body()
        headers = self.headers
        parts = urlsplit(self.path)
        request = {
            "method": self.command,
            "path": parts.path,
            "query": parse_query(parts.query),
            "headers": (headers.by_lower_name if isinstance(headers, _Headers)
                        else {k.lower(): v for k, v in headers.items()}),
            "body": raw.decode("utf-8", "replace"),
        }
        self.server.owner._serve(self, request)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = _dispatch

    def write_response(self, response):
        reason = self.responses.get(response.status, ("",))[0]
        lines = [f"HTTP/1.1 {response.status} {reason}"]
        headers = dict(response.headers)
        headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        headers["Content-Length"] = str(len(response.body))
        if self.close_connection:
            headers["Connection"] = "close"
        for k, v in headers.items():
            lines.append(f"{k}: {v}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head if self.command == "HEAD" else head + response.body)

    def drop(self):
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class HTTPStandin:
    """Base class: subclasses implement `handle(request) -> Response`."""

    name = "standin"

    def __init__(self):
        self.lock = threading.RLock()
        self.requests_log = []
        self.record_requests = True  # the benchmark may turn this off to save memory
        self.fault = None
        self.latency = 0.0
        self.injected_latency_seconds = 0.0
        self.request_count = 0
        self._server = None
        self._thread = None
        self._port = 0

    # -- life cycle ---------------------------------------------------------------------------------------------
    def start(self):
        if self._server is not None:
            return self
        self._server = _Server(("127.0.0.1", self._port), _Handler, self)
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
            name=f"{self.name}-{self._port}", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Stop listening and cut every open connection (keep-alive ones included). start() again reuses the port."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        with server.sockets_lock:
            socks = list(server.open_sockets)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def port(self):
        return self._port

    @property
    def url(self):
        return f"http://127.0.0.1:{self._port}"

    def clear_log(self):
        with self.lock:
            self.requests_log.clear()

    # -- request flow -------------------------------------------------------------------------------------------
    def _sleep(self, seconds):
        if seconds and seconds > 0:
            time.sleep(seconds)
            with self.lock:
                self.injected_latency_seconds += seconds

    def _serve(self, handler, request):
        with self.lock:
            self.request_count += 1
            if self.record_requests:
                self.requests_log.append(request)
        self._sleep(self.latency)
        fault = None
        hook = self.fault
        if hook is not None:
            fault = hook(request)
        if isinstance(fault, Fault):
            if fault.kind == "drop":
                handler.drop()
                return
            if fault.kind == "status":
                body, ctype = fault.body_bytes()
                headers = {"Content-Type": ctype}
                headers.update(fault.headers)
                handler.write_response(Response(fault.status_code, body, headers))
                return
            if fault.kind == "delay":
                self._sleep(fault.seconds)
        try:
            response = self.handle(request)
        except Exception as exc:  # a bug in the stand-in: make it loud, not silent
            traceback.print_exc()
            response = json_response(500, {"error": f"stand-in {self.name} crashed: {exc!r}"})
        if (isinstance(fault, Fault) and fault.kind == "after_drop") or response.after_drop:
            handler.drop()
            return
        handler.write_response(response)

    def handle(self, request):  # pragma: no cover - overridden
        raise NotImplementedError
