"""Stand-in of the clpctl HTTP gateway (cloudpanel-api 2.0.0, Node/Express), backed by the same SQLite file and logic
as fake_clpctl, answering as the real one does (tests/conformance/test_contract.py runs the same cases against
both): its routes, key check, rate limit, Joi validation, the command line it builds and runs through /bin/sh, its
parsing of clpctl's output and errors, its 120 s kill, its site listing."""

from __future__ import annotations

import json
import math
import os
import queue
import re
import shlex
import sqlite3
import threading
import time
from urllib.parse import parse_qs

from . import fake_clpctl
from ._gateway_node import (JsTypeError, iso_now, iso_of, joi_error, json_body_error, parse_cli_output,
                            parse_error_message, parse_table_to_json)
from ._http import HTTPStandin, Response

# path -> (clpctl command, Joi schema, the parameters in the order the service builds them, success, failure)
ROUTES = {
    "/api/site/add/static": ("site:add:static", "addStaticSite", ("domainName", "siteUser", "siteUserPassword"),
                             "Static site added successfully", "Failed to add static site"),
    "/api/letsencrypt/install-certificate": ("lets-encrypt:install:certificate", "installLetsEncryptCertificate",
                                             ("domainName", "subjectAlternativeName"),
                                             "Let's Encrypt certificate installed successfully",
                                             "Failed to install Let's Encrypt certificate"),
}
QUOTED = ("siteUserPassword", "databaseUserPassword", "vhostTemplate")  # buildArgs wraps these in single quotes
MISSING_KEY = "Unauthorized - Missing API key. Please provide X-API-Key header or apiKey query parameter."
WRONG_KEY = "Unauthorized - Invalid API key"
NOT_FOUND = {"error": "Endpoint not found"}
HIDDEN_USERS = ("mysql", "setup", "clp", "lost+found", "micronode", "mikronode", ".git")  # MinimalSites skips them
SH_UNTERMINATED = "/bin/sh: 1: Syntax error: Unterminated quoted string\n"


def _json(status, obj, headers=None):
    """res.json(): JSON.stringify, compact, UTF-8 as is."""
    h = {"Content-Type": "application/json; charset=utf-8", **(headers or {})}
    return Response(status, json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8"), h)


def _route(path):
    """Express's matching: case-insensitive, a trailing slash allowed, repeated slashes as one."""
    path = re.sub("/+", "/", path)
    return (path.rstrip("/") or "/").lower()


class _Run:
    """One clpctl run on a worker thread: the handler waits for it up to the gateway's limit."""

    __slots__ = ("done", "result", "error")

    def __init__(self):
        self.done, self.result, self.error = threading.Event(), None, None


class FakeGateway(HTTPStandin):
    """HTTP gateway stand-in. Control behaviours apply (control_path) as the fake clpctl's do behind the real
    gateway: clpctl runs on a worker thread, and one that takes longer than `clpctl_limit` seconds (120, node's exec
    timeout) is answered with the gateway's HTTP 500 "Command failed: <command line>" at that moment while its work
    goes on to its end ("slow:<s>" sleeps s, "hang" `hang_seconds`); "kill-parent-after" does the work and kills
    the shell, which the gateway answers with a 500 carrying clpctl's output. `rate_limit` (None: off) requests
    under /api/ per `rate_window` seconds, counted before the key is checked, as express-rate-limit does."""

    name = "gateway"

    def __init__(self, db_path, api_key="test-gateway-key", control_path=None):
        super().__init__()
        self.db_path = str(db_path)
        self.api_key = api_key
        self.control_path = str(control_path) if control_path else None
        self.hang_seconds = 600.0  # the fake clpctl's own hang: `sleep 600`, then the work
        self.clpctl_limit = 120.0
        self.rate_limit = None
        self.rate_window = 900.0
        self.received_passwords = set()  # every siteUserPassword in a request body, faults or not (the secret scan)
        self._hits = 0
        self._window_ends = 0.0
        self._local = threading.local()  # per worker thread: (connection, (st_dev, st_ino) of the file)
        self._tasks = queue.SimpleQueue()
        self._idle = 0
        self._workers_lock = threading.Lock()
        fake_clpctl.connect(self.db_path).close()

    # -- clpctl, as the gateway runs it -------------------------------------------------------------------------
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
        """fake_clpctl.run_on() on this worker thread's kept connection (opening one per call, and reading the
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
            result = fake_clpctl.run_on(conn, argv, self.control_path, hang=lambda: time.sleep(self.hang_seconds),
                                        slow=time.sleep)
            done = True
            return result
        finally:
            if not done or conn.in_transaction:
                self._drop_connection()

    def _worker(self):
        while True:
            task = self._tasks.get()
            if task is None:  # stop(): an idle worker ends
                self._drop_connection()
                return
            run, argv = task
            try:
                run.result = self._run_clpctl(argv)
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting handler, which makes it loud
                run.error = exc
            run.done.set()
            with self._workers_lock:
                self._idle += 1

    def _submit(self, argv):
        run = _Run()
        with self._workers_lock:
            if self._idle:
                self._idle -= 1
            else:
                threading.Thread(target=self._worker, name=f"gateway-clpctl-{self.port}", daemon=True).start()
        self._tasks.put((run, argv))
        return run

    def _exec(self, command, params):
        """CloudPanelService.executeCommand: `clpctl <command> <args>` through /bin/sh -c, node's 120 s timeout.
        (exit code or None when killed, stdout, stderr, the command line)."""
        args = []
        for name, value in params:
            args.append(f"--{name}='{value}'" if name in QUOTED else f"--{name}={value}")
        line = f"clpctl {command} {' '.join(args)}"
        try:
            # dash's reading of the line: quotes and backslashes; $, `, ;, |, & and globs are taken as they are
            words = shlex.split(line)
        except ValueError:
            return 2, "", SH_UNTERMINATED, line
        run = self._submit(words[1:])
        if not run.done.wait(self.clpctl_limit):
            return None, "", "", line  # node killed the shell; clpctl goes on and does its work later
        if run.error is not None:
            raise run.error
        result = run.result
        stdout = result.output + "\n" if result.output else ""
        if result.kill_parent:  # clpctl killed the shell it ran under: node sees the shell die of SIGKILL
            return None, stdout, "", line
        return result.exit_code, stdout, "", line

    def stop(self):
        """Also ends the idle clpctl workers (a busy one ends its run first, then waits for the next start())."""
        super().stop()
        with self._workers_lock:
            idle, self._idle = self._idle, 0
        for _ in range(idle):
            self._tasks.put(None)

    # -- HTTP -----------------------------------------------------------------------------------------------------
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

    def _work_later(self, request):
        super()._work_later({**request, "later": True})

    def _rate_limited(self):
        """express-rate-limit 7 (MemoryStore, draft-6 headers): (headers, answer-or-None) for one more request."""
        if self.rate_limit is None:
            return {}, None
        with self.lock:
            now = time.time()
            if self._window_ends <= now:
                self._hits, self._window_ends = 0, now + self.rate_window
            self._hits += 1
            hits, left = self._hits, self._window_ends - now
        limit = int(self.rate_limit)
        headers = {"RateLimit-Policy": f"{limit};w={math.ceil(self.rate_window)}", "RateLimit-Limit": str(limit),
                   "RateLimit-Remaining": str(max(limit - hits, 0))}
        reset = max(0, math.ceil(left))
        if reset:
            headers["RateLimit-Reset"] = str(reset)
        if hits <= limit:
            return headers, None
        headers["Retry-After"] = str(reset)
        return headers, _json(429, {"success": False, "error": "Too many requests",
                                    "retryAfter": math.ceil(self.rate_window)}, headers)

    @staticmethod
    def _body(request):
        """express.json() (strict) and express.urlencoded(): (body, error answer or None)."""
        ctype = request["headers"].get("content-type", "").split(";")[0].strip().lower()
        raw = request["body"]
        if ctype == "application/json":
            message = json_body_error(raw)
            if message is not None:
                return None, _json(400, {"success": False, "error": message})
            return (json.loads(raw) if raw else {}), None
        if ctype == "application/x-www-form-urlencoded":
            return {k: v[-1] for k, v in parse_qs(raw, keep_blank_values=True).items()}, None
        return {}, None

    def handle(self, request):
        method, path = request["method"], _route(request["path"])
        if method in ("GET", "HEAD") and path == "/health":  # registered before every middleware
            return _json(200, {"status": "OK", "timestamp": iso_now(), "service": "CloudPanel API Node.js",
                               "version": "1.0.1"})
        headers = {}
        api = path == "/api" or path.startswith("/api/")
        if api and not request.get("later"):
            headers, refused = self._rate_limited()
            if refused is not None:
                return refused
        body, refused = self._body(request)
        if refused is not None:
            refused.headers.update(headers)
            return refused
        if api:
            key = request["headers"].get("x-api-key") or request["query"].get("apiKey", [""])[-1]
            if not key:
                return _json(401, {"success": False, "error": MISSING_KEY}, headers)
            if key != self.api_key:
                return _json(401, {"success": False, "error": WRONG_KEY}, headers)
            return self._api(method, path, body, headers)
        if method in ("GET", "HEAD") and path == "/lists/api/sites":
            return _json(200, self._listing())
        if path == "/sites" or path.startswith("/sites/") or (method == "GET" and path == "/"):
            # web pages: a session is needed, and the key is not one
            return Response(302, b"Found. Redirecting to /auth/login",
                            {"Location": "/auth/login", "Content-Type": "text/plain; charset=utf-8"})
        return _json(404, NOT_FOUND)

    def _api(self, method, path, body, headers):
        if method == "GET" and path == "/api/user/list":
            code, stdout, stderr, line = self._exec("user:list", [])
            if code == 0:
                try:
                    users = parse_table_to_json(self._parsed(stdout, stderr, line))
                except JsTypeError as err:
                    return self._failure("Failed to list users", str(err), headers)
                return self._success("Users retrieved successfully", users, headers)
            return self._failure("Failed to list users", self._details(code, stdout, stderr, line), headers)
        route = ROUTES.get(path)
        if route is None or method != "POST":
            return _json(404, NOT_FOUND, headers)
        command, schema, names, success, failure = route
        problem = joi_error(schema, body)
        if problem is not None:
            return _json(400, {"error": "Validation Error", "details": [problem]}, headers)
        params = [(name, body[name]) for name in names if body.get(name)]
        code, stdout, stderr, line = self._exec(command, params)
        if code == 0:
            return self._success(success, self._parsed(stdout, stderr, line), headers)
        return self._failure(failure, self._details(code, stdout, stderr, line), headers)

    @staticmethod
    def _parsed(stdout, stderr, line):
        """What executeCommand resolves with at exit 0: the parsed stdout, or for an empty stdout its own result."""
        if stdout:
            return parse_cli_output(stdout)
        return {"success": True, "output": "Command completed successfully", "stderr": stderr, "command": line,
                "exitCode": 0}

    @staticmethod
    def _details(code, stdout, stderr, line):
        """parseErrorMessage(stdout + stderr, error.message): node's message names the command line, and the
        password with it."""
        return parse_error_message(stdout + stderr, f"Command failed: {line}\n{stderr}")

    @staticmethod
    def _success(message, data, headers):
        answer = {"success": True, "message": message, "timestamp": iso_now()}
        if data is not None:
            answer["data"] = data
        return _json(200, answer, headers)

    @staticmethod
    def _failure(message, details, headers):
        return _json(500, {"success": False, "error": message, "timestamp": iso_now(), "details": details}, headers)

    def _listing(self):
        """GET /lists/api/sites: every site's /home/<user>/htdocs/<domain>, newest first (MinimalSites, which reads
        the folders; here the sites of the SQLite file)."""
        sites = [row for row in _sites(self.db_path)
                 if row["user"] not in HIDDEN_USERS and not row["user"].startswith(".")
                 and not row["domain_name"].startswith(".")]
        sites.sort(key=lambda row: (row["created_at"], row["id"]), reverse=True)
        return [{"domain": row["domain_name"], "user": row["user"],
                 "path": f"/home/{row['user']}/htdocs/{row['domain_name']}", "created": iso_of(row["created_at"]),
                 "modified": iso_of(row["created_at"])} for row in sites]


def _sites(db_path):
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=60)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in conn.execute("SELECT id, domain_name, user, created_at FROM site")]
    finally:
        conn.close()
