"""Shared fixtures: no test leaks secrets, logging handlers or settings into the next, and no run of the job leaks a
secret at all (tests/harness.py's scan, after every test)."""

import logging
import socket
import threading

import pytest

from hosting_automator.core.logging_setup import secret_values
from hosting_automator.core.retry import RetryPolicy
from tests.harness import watched


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


class RecordedSleeps(list):
    """An injected sleep: remembers every wait, never waits."""

    def __call__(self, seconds):
        self.append(seconds)


@pytest.fixture
def sleeps():
    return RecordedSleeps()


@pytest.fixture
def retry(sleeps):
    """The real retry policy with the sleep injected and the jitter fixed at its midpoint."""
    return RetryPolicy(sleep=sleeps, jitter=lambda: 0.5)


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


@pytest.fixture
def socket_timeouts(monkeypatch):
    """Every timeout the test's own thread sets on a socket: the wait the HTTP client gives the server."""
    seen, real, test_thread = [], socket.socket.settimeout, threading.get_ident()

    def recording(sock, value):
        if threading.get_ident() == test_thread:
            seen.append(value)
        return real(sock, value)

    monkeypatch.setattr(socket.socket, "settimeout", recording)
    return seen
