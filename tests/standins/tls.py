"""TLS stand-in of CloudPanel's HTTPS endpoint: serves, by SNI, the certificate the fake clpctl "installed"."""

from __future__ import annotations

import os
import socket
import sqlite3
import ssl
import threading
import time
import traceback
from datetime import datetime, timedelta, timezone

from ._servers import POLL_INTERVAL, Startable
from .faults import Fault

LETS_ENCRYPT_LIFETIME = timedelta(days=90)
DEFAULT_NAME = "default.invalid"


def twin(name):
    """www.example.com <-> example.com"""
    return name[4:] if name.startswith("www.") else "www." + name


def _parse_time(text):
    dt = datetime.fromisoformat(text)
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


class FakeHttpsServer(Startable):
    """TLS server on 127.0.0.1:0 that only completes a handshake and closes.

    The leaf for an SNI name comes from `certificates` (domain -> not_after datetime, set by tests) or from the
    fake clpctl db (latest certificate_request of the name or its www./apex twin, not_after = requested_at + 90
    days); it is issued by `ca` for [name, twin]. Otherwise a leaf for "default.invalid" is served.
    """

    name = "tls"

    def __init__(self, ca, db_path=None):
        self.ca = ca
        self.db_path = str(db_path) if db_path else None
        self.certificates = {}
        self.handshakes = []          # SNI names seen (None when the client sent none)
        self.requests_log = []        # {method: "TLS", path: sni, query: {}, headers: {}, body: ""}
        self.record_requests = True   # False: requests_log stays as it is (long benchmarks), like the HTTP ones
        self.fault = None             # drop/after_drop/delay honoured; status, later -> drop
        self.latency = 0.0
        self.injected_latency_seconds = 0.0
        self.request_count = 0
        self.lock = threading.RLock()
        self._contexts = {}
        self._sock = None
        self._thread = None
        self._port = 0
        self._stopping = threading.Event()
        self._local = threading.local()
        self._db_lock = threading.Lock()
        self._db = None               # (read-only connection, (st_dev, st_ino) of the file it opened)
        self._base = self._make_base_context()

    # -- life cycle -----------------------------------------------------------------------------------------
    def start(self):
        if self._sock is not None:
            return self
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self._port))
        sock.listen(256)
        sock.settimeout(POLL_INTERVAL)  # the accept loop looks this often whether stop() was asked
        self._port = sock.getsockname()[1]
        self._sock = sock
        self._stopping.clear()
        self._thread = threading.Thread(target=self._accept_loop, name=f"tls-{self._port}", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        sock, self._sock = self._sock, None
        if sock is None:
            return
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        sock.close()
        with self._db_lock:
            self._close_db()

    @property
    def address(self):
        return f"127.0.0.1:{self._port}"

    @property
    def url(self):
        return f"https://127.0.0.1:{self._port}"

    # -- certificates -----------------------------------------------------------------------------------------
    def _make_base_context(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ca.issue_cert(DEFAULT_NAME).configure_cert(ctx)
        ctx.sni_callback = self._sni
        return ctx

    def _leaf_context(self, name, not_after):
        key = (name, not_after)
        with self.lock:
            ctx = self._contexts.get(key)
        if ctx is not None:
            return ctx
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        if name == DEFAULT_NAME:
            leaf = self.ca.issue_cert(DEFAULT_NAME)
        else:
            now = datetime.now(timezone.utc)
            not_before = min(not_after - LETS_ENCRYPT_LIFETIME, now - timedelta(hours=1))
            leaf = self.ca.issue_cert(name, twin(name), not_before=not_before, not_after=not_after)
        leaf.configure_cert(ctx)
        with self.lock:
            self._contexts.setdefault(key, ctx)
            return self._contexts[key]

    def not_after_for(self, name):
        """The not_after of the certificate served for `name`, or None (default leaf)."""
        names = (name, twin(name))
        with self.lock:
            for n in names:
                if n in self.certificates:
                    value = self.certificates[n]
                    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        if self.db_path:
            row = self._latest_request(names)
            if row and row[0]:
                return _parse_time(row[0]) + LETS_ENCRYPT_LIFETIME
        return None

    def _latest_request(self, names):
        """(MAX(requested_at),) over the certificate requests of `names`, or None when the db cannot be read.

        One read-only connection is kept and reused while the file is the same (device, inode); autocommit and
        fully stepped statements, so every query sees the latest committed requests, as a new connection would.
        """
        with self._db_lock:
            try:
                st = os.stat(self.db_path)
            except OSError:
                self._close_db()
                return None
            ident = (st.st_dev, st.st_ino)
            if self._db is not None and self._db[1] != ident:
                self._close_db()
            try:
                if self._db is None:
                    conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=30,
                                           isolation_level=None, check_same_thread=False)
                    self._db = (conn, ident)
                rows = self._db[0].execute(
                    "SELECT MAX(requested_at) FROM certificate_request WHERE domain_name IN (?, ?)", names).fetchall()
            except sqlite3.Error:
                self._close_db()  # e.g. no table yet: open a fresh connection next time
                return None
            return rows[0] if rows else None

    def _close_db(self):
        db, self._db = self._db, None
        if db is not None:
            try:
                db[0].close()
            except sqlite3.Error:
                pass

    def _sni(self, sslobj, server_name, _ctx):
        name = server_name.lower().rstrip(".") if server_name else None
        with self.lock:
            self.handshakes.append(name)
        request = getattr(self._local, "request", None)
        if request is not None:
            request["path"] = name or ""
        try:
            not_after = self.not_after_for(name) if name else None
            sslobj.context = self._leaf_context(name, not_after) if not_after else self._leaf_context(DEFAULT_NAME, None)
        except Exception:  # never let a stand-in bug look like a TLS alert silently
            traceback.print_exc()
            return ssl.ALERT_DESCRIPTION_INTERNAL_ERROR
        return None

    # -- connections --------------------------------------------------------------------------------------------
    def _accept_loop(self):
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn):
        conn.settimeout(10)
        request = {"method": "TLS", "path": "", "query": {}, "headers": {}, "body": ""}
        with self.lock:
            self.request_count += 1
            if self.record_requests:
                self.requests_log.append(request)
        try:
            if self.latency:
                time.sleep(self.latency)
                with self.lock:
                    self.injected_latency_seconds += self.latency
            fault = self.fault(request) if self.fault is not None else None
            if isinstance(fault, Fault):
                if fault.kind in ("drop", "status", "later"):
                    return
                if fault.kind == "delay":
                    time.sleep(fault.seconds)
                    with self.lock:
                        self.injected_latency_seconds += fault.seconds
            self._local.request = request
            try:
                tls = self._base.wrap_socket(conn, server_side=True)
            except (ssl.SSLError, OSError):
                return
            finally:
                self._local.request = None
            if isinstance(fault, Fault) and fault.kind == "after_drop":
                tls.close()
                return
            try:
                tls.settimeout(0.5)
                tls.unwrap()
            except (ssl.SSLError, OSError):
                pass
            tls.close()
        finally:
            try:
                conn.close()
            except OSError:
                pass
