"""healthcheck.ping against a local HTTP server (pytest-httpserver): which URL each state pings, what body it
carries, how long it waits, and that a failing monitor only ever warns. Real sockets, so these hold for whichever
HTTP client core/http.py is built on."""

import logging
import re

import pytest

from hosting_automator.core.http import new_session
from hosting_automator.services.healthcheck import BODY_MAX_BYTES, PING_TIMEOUT, ping
from tests.sockets import closed_port

CHECK = "/5f1b3c9e-0d2a-4e7b-9a61-2c8d4f0e7b13"


@pytest.fixture
def url(httpserver):
    yield httpserver.url_for(CHECK)
    httpserver.check()


@pytest.fixture(autouse=True)
def _server_access_log_left_out(caplog):
    """The local server logs each request it serves; only what ping logs is under test."""
    caplog.set_level(logging.WARNING, logger="werkzeug")


@pytest.fixture
def session():
    with new_session(timeout=30) as session:
        yield session


@pytest.mark.parametrize("state, suffix", [("start", "/start"), ("success", ""), ("fail", "/fail")])
def test_ping_state_posts_to_its_url_with_body_and_short_timeout(httpserver, url, session, socket_timeouts, state,
                                                                  suffix):
    httpserver.expect_request(CHECK + suffix, method="POST").respond_with_data("OK")

    ping(session, url, state, body="3 active, 1 failed\nlast lines…")

    (request, _), = httpserver.log
    assert request.url == url + suffix
    assert request.get_data() == "3 active, 1 failed\nlast lines…".encode("utf-8")
    assert socket_timeouts[-1] == PING_TIMEOUT


def test_ping_body_longer_than_limit_is_cut_to_100_kb(httpserver, url, session):
    httpserver.expect_request(CHECK + "/fail", method="POST").respond_with_data("OK")

    ping(session, url, "fail", body="x" * (BODY_MAX_BYTES + 5000))

    assert len(httpserver.log[0][0].get_data()) == BODY_MAX_BYTES == 100_000


def test_ping_connection_error_only_logs_a_warning(session, caplog):
    ping(session, f"http://127.0.0.1:{closed_port()}{CHECK}", "start")

    warning, = [record for record in caplog.records if record.levelno == logging.WARNING]
    # the exception's class only, whichever HTTP library raised it: the URL is the check's key
    assert re.fullmatch(r"Monitoring ping \(start\) failed: \w+Error", warning.getMessage())


def test_ping_http_500_only_logs_a_warning(httpserver, url, session, caplog):
    httpserver.expect_request(CHECK + "/fail", method="POST").respond_with_data("oops", 500)

    ping(session, url, "fail", body="summary")

    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "Monitoring ping (fail) answered HTTP 500")]


def test_ping_dry_run_sends_nothing_and_says_so(httpserver, url, session, caplog):
    caplog.set_level(logging.INFO)

    ping(session, url, "start", dry_run=True)

    assert len(httpserver.log) == 0
    assert "Would ping start (dry run: nothing changed)" in caplog.messages


def test_ping_without_url_sends_nothing(httpserver, session, caplog):
    ping(session, "", "success", body="x")
    ping(session, None, "fail", body="x")

    assert len(httpserver.log) == 0 and caplog.records == []
