"""Shared HTTP machinery of the stand-ins: threaded HTTP/1.1 keep-alive server on 127.0.0.1, request log,
fault injection, configurable latency, start/stop/context manager."""

from __future__ import annotations

import json
import socket
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from ._servers import POLL_INTERVAL, ConnectionServer, Startable
from .faults import Fault


class Response:
    __slots__ = ("status", "headers", "body", "after_drop")

    def __init__(self, status, body=b"", headers=None, after_drop=False):
        self.status = int(status)
        self.body = body if isinstance(body, bytes) else str(body).encode("utf-8")
        self.headers = dict(headers or {})
        self.after_drop = after_drop  # a stand-in may ask to close the socket instead of answering


def json_response(status, obj, headers=None):
    h = {"Content-Type": "application/json; charset=utf-8"}
    if headers:
        h.update(headers)
    return Response(status, json.dumps(obj).encode("utf-8"), h)


class _Server(ConnectionServer, ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256
    allow_reuse_address = True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "standin"
    sys_version = ""

    def setup(self):
        super().setup()
        # The head and the body go out in two writes: with Nagle's algorithm the body would wait for the client
        # to acknowledge the head, which a client delays.
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def log_message(self, format, *args):  # noqa: A002 - signature of the base class
        pass

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
        parts = urlsplit(self.path)
        request = {
            "method": self.command,
            "path": parts.path,
            "query": parse_qs(parts.query, keep_blank_values=True),
            "headers": {name.lower(): value for name, value in self.headers.items()},
            "body": raw.decode("utf-8", "replace"),
        }
        self.server.owner._serve(self, request)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = _dispatch

    def write_response(self, response):
        self.send_response(response.status)
        headers = {"Content-Type": "text/plain; charset=utf-8", **response.headers}
        headers["Content-Length"] = str(len(response.body))
        if self.close_connection:
            headers["Connection"] = "close"
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def drip(self, fault):
        """Fault.drip: the answer one byte every fault.seconds, until it is all sent or the connection is cut."""
        body = fault.body if isinstance(fault.body, bytes) else b"[" + b" " * max(fault.size - 2, 0) + b"]"
        head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n").encode("ascii")
        at_once, dripped = (b"", head + body) if fault.head else (head, body)
        self.close_connection = True
        try:
            self.wfile.write(at_once)
            self.wfile.flush()
            for index in range(len(dripped)):
                time.sleep(fault.seconds)
                self.wfile.write(dripped[index:index + 1])
                self.wfile.flush()
        except OSError:  # the client gave up, or the stand-in stopped
            pass

    def huge(self, fault):
        """Fault.huge: fault.size bytes of a JSON list, made as they go out."""
        self.close_connection = True
        framing = f"Content-Length: {fault.size}" if fault.declared else "Transfer-Encoding: chunked"
        piece = b" " * 65536
        try:
            self.wfile.write(f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{framing}\r\n"
                             "Connection: close\r\n\r\n".encode("ascii"))
            left = fault.size
            first = True
            while left > 0:
                chunk = (b"[" + piece[1:]) if first else piece
                chunk = chunk[:left]
                first = False
                self.wfile.write(chunk if fault.declared else b"%x\r\n%s\r\n" % (len(chunk), chunk))
                left -= len(chunk)
            if not fault.declared:
                self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:  # the client refused it and closed
            pass

    def drop(self):
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class HTTPStandin(Startable):
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
        self.in_flight = 0            # requests being served now: a test waits for 0, not for a guessed time
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
            target=self._server.serve_forever, kwargs={"poll_interval": POLL_INTERVAL},
            name=f"{self.name}-{self._port}", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Stop listening and cut every open connection (keep-alive ones included). start() again reuses the port."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.cut_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

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
            self.in_flight += 1
            if self.record_requests:
                self.requests_log.append(request)
        try:
            self._serve_one(handler, request)
        finally:
            with self.lock:
                self.in_flight -= 1

    def _serve_one(self, handler, request):
        self._sleep(self.latency)
        fault = None
        hook = self.fault
        if hook is not None:
            fault = hook(request)
        if isinstance(fault, Fault):
            if fault.kind == "drop":
                handler.drop()
                return
            if fault.kind in ("status", "later"):
                body, ctype = fault.body_bytes()
                headers = {"Content-Type": ctype}
                headers.update(fault.headers)
                handler.write_response(Response(fault.status_code, body, headers))
                if fault.kind == "later":
                    worker = threading.Timer(fault.seconds, self._work_later, args=(request,))
                    worker.daemon = True
                    worker.start()
                return
            if fault.kind == "delay":
                self._sleep(fault.seconds)
            if fault.kind == "drip":
                handler.drip(fault)
                return
            if fault.kind == "huge":
                handler.huge(fault)
                return
        try:
            response = self.handle(request)
        except Exception as exc:  # a bug in the stand-in: make it loud, not silent
            traceback.print_exc()
            response = json_response(500, {"error": f"stand-in {self.name} crashed: {exc!r}"})
        if (isinstance(fault, Fault) and fault.kind == "after_drop") or response.after_drop:
            handler.drop()
            return
        handler.write_response(response)

    def _work_later(self, request):
        """Fault.later: the work of a request that was answered already."""
        try:
            self.handle(request)
        except Exception:  # a bug in the stand-in: make it loud, not silent
            traceback.print_exc()

    def handle(self, request):  # pragma: no cover - overridden
        raise NotImplementedError
