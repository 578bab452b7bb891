"""healthcheck.ping against `responses`: which URL each state pings, what body it carries, and that a failing
monitor only ever warns."""

import logging

import pytest
import requests
import responses

from hosting_automator.core.http import new_session
from hosting_automator.services.healthcheck import BODY_MAX_BYTES, PING_TIMEOUT, ping

URL = "https://hc-ping.test/5f1b3c9e-0d2a-4e7b-9a61-2c8d4f0e7b13"


@pytest.fixture
def session():
    with new_session(timeout=30) as session:
        yield session


@pytest.mark.parametrize("state, target", [("start", URL + "/start"), ("success", URL), ("fail", URL + "/fail")])
@responses.activate
def test_ping_state_posts_to_its_url_with_body_and_short_timeout(session, state, target):
    responses.post(target, body="OK")

    ping(session, URL, state, body="3 active, 1 failed\nlast lines…")

    call, = responses.calls
    assert call.request.url == target
    assert call.request.body == "3 active, 1 failed\nlast lines…".encode("utf-8")
    assert call.request.req_kwargs["timeout"] == PING_TIMEOUT


@responses.activate
def test_ping_body_longer_than_limit_is_cut_to_100_kb(session):
    responses.post(URL + "/fail", body="OK")

    ping(session, URL, "fail", body="x" * (BODY_MAX_BYTES + 5000))

    assert len(responses.calls[0].request.body) == BODY_MAX_BYTES == 100_000


@responses.activate
def test_ping_connection_error_only_logs_a_warning(session, caplog):
    responses.post(URL + "/start", body=requests.ConnectionError(f"Max retries exceeded with url: {URL}/start"))

    ping(session, URL, "start")

    warning, = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert warning.getMessage() == "Monitoring ping (start) failed: ConnectionError"  # the URL is the check's key


@responses.activate
def test_ping_http_500_only_logs_a_warning(session, caplog):
    responses.post(URL + "/fail", status=500, body="oops")

    ping(session, URL, "fail", body="summary")

    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "Monitoring ping (fail) answered HTTP 500")]


@responses.activate
def test_ping_dry_run_sends_nothing_and_says_so(session, caplog):
    caplog.set_level(logging.INFO)

    ping(session, URL, "start", dry_run=True)

    assert len(responses.calls) == 0
    assert "Would ping start (dry run: nothing changed)" in caplog.messages


@responses.activate
def test_ping_without_url_sends_nothing(session, caplog):
    ping(session, "", "success", body="x")
    ping(session, None, "fail", body="x")

    assert len(responses.calls) == 0 and caplog.records == []
