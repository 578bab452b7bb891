"""Stand-in of the clpctl HTTP gateway (cloudpanel-api), backed by the same SQLite file and logic as fake_clpctl."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time

from . import fake_clpctl
from ._http import HTTPStandin, json_response

ROUTES = {
    "/api/site/add/static": ("site:add:static", ("domainName", "siteUser", "siteUserPassword"),
                             ("domainName", "siteUser", "siteUserPassword"), "Failed to add static site"),
    "/api/letsencrypt/install-certificate": ("lets-encrypt:install:certificate", ("domainName",),
                                             ("domainName", "subjectAlternativeName"), "Failed to install certificate"),
}


class FakeGateway(HTTPStandin):
    """HTTP gateway stand-in. Control behaviours apply (control_path); "hang" sleeps `hang_seconds` then does the
    work; "kill-parent-after" does the work then drops the connection without answering."""

    name = "gateway"

    def __init__(self, db_path, api_key="test-gateway-key", control_path=None):
        super().__init__()
        self.db_path = str(db_path)
        self.api_key = api_key
        self.control_path = str(control_path) if control_path else None
        self.hang_seconds = 5.0
        self.received_passwords = set()  # every siteUserPassword in a request body, faults or not (the secret scan)
        self._local = threading.local()  # per handler thread: (connection, (st_dev, st_ino) of the file)
        fake_clpctl.connect(self.db_path).close()

    def _hang(self):
        time.sleep(self.hang_seconds)

    @staticmethod
    def _file_id(path):
        try:
            st = os.stat(path)
        except OSError:
            return None
        return st.st_dev, st.st_ino

    def _drop_connection(self):
        db, self._local.db = getattr(self._local, "db", None), None
        if db is not None:
            try:
                db[0].close()
            except sqlite3.Error:
                pass

    def _run_clpctl(self, argv):
        """fake_clpctl.run_detailed() on this thread's kept connection (opening one per call, and reading the
        schema again, cost more than the command). A new connection when the file was replaced or removed, or
        after a command failed half-way, so each call sees what a fresh connection would."""
        file_id = self._file_id(self.db_path)
        db = getattr(self._local, "db", None)
        if db is not None and (file_id is None or db[1] != file_id):
            self._drop_connection()
            db = None
        if db is None:
            conn = fake_clpctl.connect(self.db_path)
            # the rollback journal in memory, not a file made and removed by every command (half of a command's
            # cost); this stand-in never dies in the middle of a transaction that a test would then read
            conn.execute("PRAGMA journal_mode=MEMORY")
            db = self._local.db = (conn, self._file_id(self.db_path))
        conn, done = db[0], False
        try:
            result = fake_clpctl.run_on(conn, argv, self.control_path, hang=self._hang)
            done = True
            return result
        finally:
            if not done or conn.in_transaction:
                self._drop_connection()

    def _serve(self, handler, request):
        """Notes the request's site password before any fault or the work: the secret scan must know it."""
        try:
            body = json.loads(request["body"] or "{}")
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("siteUserPassword"), str) and body["siteUserPassword"]:
            with self.lock:
                self.received_passwords.add(body["siteUserPassword"])
        super()._serve(handler, request)

    def handle(self, request):
        method, path = request["method"], request["path"].rstrip("/") or "/"
        if method == "GET" and path == "/health":
            return json_response(200, {"status": "OK"})
        if not path.startswith("/api/"):  # the key is asked for under /api only, as cloudpanel-api mounts it
            return json_response(404, {"success": False, "error": "Endpoint not found"})
        if request["headers"].get("x-api-key") != self.api_key:
            return json_response(401, {"success": False, "error": "Unauthorized"})
        if method == "GET" and path == "/api/user/list":
            return json_response(200, {"success": True, "data": []})
        route = ROUTES.get(path)
        if route is None or method != "POST":
            return json_response(404, {"success": False, "error": "Endpoint not found"})
        command, required, allowed, failure = route
        try:
            body = json.loads(request["body"] or "{}")
        except ValueError:
            return json_response(400, {"success": False, "error": "Invalid JSON"})
        if not isinstance(body, dict):
            body = {}
        details = [{"msg": f"{name} is required", "param": name}
                   for name in required if not isinstance(body.get(name), str) or not body.get(name)]
        if details:
            return json_response(400, {"success": False, "error": "Validation Error", "details": details})
        argv = [command] + [f"--{name}={body[name]}" for name in allowed
                            if isinstance(body.get(name), str) and body.get(name)]
        result = self._run_clpctl(argv)
        if result.exit_code == 0:
            response = json_response(200, {"success": True, "message": result.output,
                                           "data": {"output": result.output}})
        else:
            response = json_response(500, {"success": False, "error": failure, "details": result.output})
        response.after_drop = result.kill_parent
        return response
