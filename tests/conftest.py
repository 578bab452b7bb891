"""Shared fixtures: no test leaks secrets, logging handlers or settings into the next, and no run of the job leaks a
secret at all (tests/support/harness.py's scan, after every test). Also the fixtures more than one directory uses:
fast retries, the stand-ins, and the CloudPanel client's served certificate and generated passwords."""

import logging
import socket
import threading

import pytest

from hosting_automator.masking import secret_values
from tests.support.cloudpanel import FakeServedCertificate
from tests.support.harness import watched
from tests.support.retries import RecordedSleeps, fast_retry_policy


@pytest.fixture(autouse=True)
def _isolated(monkeypatch):
    watched.forget()
    secret_values.clear()
    for name in ("SUPABASE_URL", "SUPABASE_SERVICE_KEY", "MATOMO_API_URL", "MATOMO_API_TOKEN", "CLOUDPANEL_API_URL",
                 "CLOUDPANEL_API_TOKEN", "HEALTHCHECK_URL", "LOG_FILE", "LOCK_FILE"):
        monkeypatch.delenv(name, raising=False)
    yield
    secret_values.clear()
    root = logging.getLogger()
    for handler in list(root.handlers):
        if not isinstance(handler, type(logging.lastResort)) and "pytest" not in type(handler).__module__:
            root.removeHandler(handler)
            handler.close()
    watched.check()  # every run of the job this test made: no secret in its output, log file or rows


# -- retries: recorded, never waited (tests/support/retries.py) ------------------------------------------------

@pytest.fixture
def sleeps():
    return RecordedSleeps()


@pytest.fixture
def retry(sleeps):
    """The real retry policy with the sleep injected and the jitter fixed at its midpoint."""
    return fast_retry_policy(sleeps)


# -- the stand-ins -----------------------------------------------------------------------------------------------

@pytest.fixture
def standins(tmp_path):
    """Every service stood in for on 127.0.0.1, clpctl included (a fake executable with a SQLite state)."""
    from tests.standins import start_all

    started = start_all(tmp_path / "standins")
    yield started
    started.stop()


@pytest.fixture
def gateway_standins(tmp_path):
    """The same, with a clpctl HTTP gateway instead of local clpctl."""
    from tests.standins import start_all

    started = start_all(tmp_path / "standins", gateway=True)
    yield started
    started.stop()


# -- HTTP --------------------------------------------------------------------------------------------------------

HTTP_ENVIRONMENT = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                    "NO_PROXY", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR")


@pytest.fixture
def no_proxy_or_ca_bundle_from_the_machine(monkeypatch):
    """requests reads proxies and CA bundles from the environment: the machine's must not reach the test."""
    for name in HTTP_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def socket_timeouts(monkeypatch):
    """Every timeout the test's own thread, or a request it makes (core.http.within), sets on a socket: the wait
    the HTTP client gives the server."""
    seen, real, test_thread = [], socket.socket.settimeout, threading.get_ident()

    def recording(sock, value):
        if threading.get_ident() == test_thread or threading.current_thread().name == "request":
            seen.append(value)
        return real(sock, value)

    monkeypatch.setattr(socket.socket, "settimeout", recording)
    return seen


# -- the CloudPanel client (both transports) -------------------------------------------------------------------

@pytest.fixture
def served():
    """What the server serves, as the client sees it: no certificate yet unless a test says otherwise."""
    return FakeServedCertificate()


@pytest.fixture
def passwords(monkeypatch):
    """Every password the CloudPanel client generates, by wrapping the real generator."""
    from hosting_automator.services import cloudpanel_client

    made = []
    real = cloudpanel_client.new_password

    def recording():
        made.append(real())
        return made[-1]

    monkeypatch.setattr(cloudpanel_client, "new_password", recording)
    return made
