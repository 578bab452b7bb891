"""The real services of the conformance tier: Matomo 5.0.2 and the cloudpanel-api gateway, started on 127.0.0.1 by
tests/conformance/real-services.sh. Where they are not running, the whole tier is skipped with one line saying
why; with CONFORMANCE_REQUIRED=1 (CI) that is a failure instead."""

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.conformance.real_db import forget_failed_logins, last_failed_login

DEFAULT_ENV = "/tmp/hosting-automator-real/real.env"
START = "bash tests/conformance/real-services.sh start"


@dataclass(frozen=True)
class RealServices:
    matomo_dir: str
    matomo_url: str
    matomo_token: str
    matomo_view_token: str
    matomo_secure_token: str
    gateway_url: str
    gateway_token: str
    limited_gateway_url: str
    limited_gateway_token: str
    clpctl_db: str
    clpctl_control: str
    clpctl_home: str


def _read_env(path):
    values = {}
    for line in Path(path).read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep:
            values[name.strip()] = value.strip()
    return values


def _unavailable():
    """Why the real services cannot be used, or None when they answer."""
    path = os.environ.get("REAL_SERVICES_ENV") or DEFAULT_ENV
    if not Path(path).is_file():
        return None, f"real services not started ({path} missing): start them with `{START}`"
    values = _read_env(path)
    try:
        real = RealServices(**{field: values[f"REAL_{field.upper()}"] for field in RealServices.__dataclass_fields__})
    except KeyError as err:
        return None, f"{path} lacks {err.args[0]}: start the real services again with `{START}`"
    for what, url in (("Matomo", real.matomo_url + "/index.php"), ("gateway", real.gateway_url + "/health"),
                      ("limited gateway", real.limited_gateway_url + "/health")):
        try:
            requests.get(url, timeout=5)
        except requests.RequestException as err:
            return None, f"the real {what} at {url} does not answer ({err.__class__.__name__}): `{START}`"
    return real, None


_REAL, _WHY_NOT = _unavailable()


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    mine = [item for item in items if here in Path(str(item.fspath)).parents]
    for item in mine:
        item.add_marker(pytest.mark.conformance)
    if _WHY_NOT is None or not mine:
        return
    if os.environ.get("CONFORMANCE_REQUIRED") == "1":
        raise pytest.UsageError(f"conformance tier required (CONFORMANCE_REQUIRED=1) but {_WHY_NOT}")
    skip = pytest.mark.skip(reason=f"conformance: {_WHY_NOT}")
    for item in mine:
        item.add_marker(skip)


def pytest_report_header(config):
    return f"conformance tier: {'real services at ' + _REAL.matomo_url + ', ' + _REAL.gateway_url if _REAL else _WHY_NOT}"


@pytest.fixture(scope="session")
def real():
    return _REAL


@pytest.fixture(autouse=True)
def _no_failed_logins_left():
    """Matomo blocks 127.0.0.1 after 20 failed logins (a wrong token is one) in an hour, for every test at once:
    those a test made are forgotten after it, as Matomo's own "unblock IP" does."""
    if _REAL is None:
        yield
        return
    before = last_failed_login(_REAL)
    yield
    forget_failed_logins(_REAL, before)


@pytest.fixture
def unique():
    """A label no other test (or earlier run against the same real services) used: names are never reused."""
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture
def clpctl_control(real):
    """The fake clpctl behind the real gateway re-reads this file at every call; emptied after the test."""
    path = Path(real.clpctl_control)

    def write(control):
        path.write_text(json.dumps(control))

    yield write
    path.write_text("")


def matomo_api(real, method, token=None, **params):
    """One call of the real Matomo's API, as a person would make it (the token in the POST body)."""
    response = requests.post(real.matomo_url + "/index.php", params={"module": "API", "method": method,
                                                                      "format": "JSON"},
                             data={**params, "token_auth": real.matomo_token if token is None else token}, timeout=30)
    return response
