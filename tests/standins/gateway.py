"""Stand-in of the clpctl HTTP gateway (cloudpanel-api), backed by the same SQLite file and logic as fake_clpctl."""

from __future__ import annotations

import json
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
        fake_clpctl.connect(self.db_path).close()

    def _hang(self):
        time.sleep(self.hang_seconds)

    def handle(self, request):
        method, path = request["method"], request["path"].rstrip("/") or "/"
        if method == "GET" and path == "/health":
            return json_response(200, {"status": "OK"})
        if request["headers"].get("x-api-key") != self.api_key:
            return json_response(401, {"success": False, "error": "Unauthorized"})
        if method == "GET" and path == "/api/user/list":
            return json_response(200, {"success": True, "data": []})
        route = ROUTES.get(path)
        if route is None or method != "POST":
            return json_response(404, {"success": False, "error": "Not Found"})
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
        result = fake_clpctl.run_detailed(argv, self.db_path, self.control_path, hang=self._hang)
        if result.exit_code == 0:
            response = json_response(200, {"success": True, "message": result.output,
                                           "data": {"output": result.output}})
        else:
            response = json_response(500, {"success": False, "error": failure, "details": result.output})
        response.after_drop = result.kill_parent
        return response
