"""The handles the contract cases use: one shape for a stand-in and for the real service, so that each case sends
the same requests to either and asserts the same answers (tests/conformance/test_contract.py)."""

from __future__ import annotations

import contextlib
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import requests

from tests.standins import clpctl_state

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
WRONG_TOKEN = "0123456789abcdef0123456789abcdef"


@dataclass
class Answer:
    status: int
    body: Any  # parsed JSON, else the text
    headers: Any
    text: str

    @property
    def pair(self):
        return self.status, self.body


def _answer(response):
    try:
        body = response.json()
    except ValueError:
        body = response.text
    return Answer(response.status_code, body, response.headers, response.text)


@dataclass
class MatomoHandle:
    kind: str  # "standin" or "real"
    url: str  # .../index.php
    token: str  # a super user's
    view_token: str  # view access to site 1 ("First site", https://first.example) only
    secure_token: str  # a super user's, refused in the query string
    database_down: Callable[[], Any]  # a context manager
    failed_logins: Callable[[], int]  # those that count now towards its brute force block
    unblock: Callable[[], None]  # forgets the failed logins this test made
    http: requests.Session = field(default_factory=requests.Session)

    def call(self, method, token=None, where="body", fmt="JSON", **params):
        """One API call: the token (default the super user's; "" anonymous) in the POST body or the query."""
        query = {"module": "API", "method": method, "format": fmt}
        data = dict(params)
        token = self.token if token is None else token
        (query if where == "query" else data)["token_auth"] = token
        return _answer(self.http.post(self.url, params=query, data=data, timeout=30))

    def add(self, *urls, **params):
        """addSite with these URLs (name: the first): the new id."""
        answer = self.call("SitesManager.addSite", siteName=urls[0],
                           **{f"urls[{index}]": url for index, url in enumerate(urls)}, **params)
        assert answer.status == 200 and isinstance(answer.body, dict) and isinstance(answer.body.get("value"), int), \
            answer.pair
        return answer.body["value"]

    def lookup(self, url, token=None):
        return self.call("SitesManager.getSitesIdFromSiteUrl", token=token, url=url)


@dataclass
class GatewayHandle:
    kind: str
    url: str
    key: str
    db_path: str
    control: Callable[[dict], None]
    standin: Any = None  # the FakeGateway, for the stand-in
    http: requests.Session = field(default_factory=requests.Session)

    @property
    def kill_limit(self):
        """Seconds the gateway gives clpctl: node's exec timeout (120 s), or the stand-in's clpctl_limit."""
        return self.standin.clpctl_limit if self.standin is not None else 120.0

    def shorten_kill_limit(self, seconds):
        if self.standin is not None:
            self.standin.clpctl_limit = seconds

    def request(self, method, path, key=True, **kwargs):
        headers = dict(kwargs.pop("headers", {}))
        if key is True:
            headers["X-API-Key"] = self.key
        elif key:
            headers["X-API-Key"] = key
        kwargs.setdefault("timeout", 300)
        return _answer(self.http.request(method, self.url + path, headers=headers, allow_redirects=False, **kwargs))

    def add_site(self, domain, user, password="pw-secret-123", **kwargs):
        return self.request("POST", "/api/site/add/static",
                            json={"domainName": domain, "siteUser": user, "siteUserPassword": password}, **kwargs)

    def certificate(self, domain):
        return self.request("POST", "/api/letsencrypt/install-certificate", json={"domainName": domain})

    def site(self, domain):
        return clpctl_state.site(self.db_path, domain)

    def wait_for_site(self, domain, seconds):
        deadline = time.monotonic() + seconds
        while self.site(domain) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.site(domain)


def stamped(body):
    """The body with its timestamp (checked to be an ISO one, as new Date().toISOString() makes) as "<timestamp>"."""
    if isinstance(body, dict) and "timestamp" in body:
        assert TIMESTAMP.match(str(body["timestamp"])), body
        return {**body, "timestamp": "<timestamp>"}
    return body


def new_token():
    return secrets.token_hex(16)


@contextlib.contextmanager
def flag(obj, name, value=True):
    """obj.<name> = value for the block (the stand-in's switches)."""
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)
