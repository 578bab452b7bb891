"""healthcheck.ping and the Monitoring context manager, answered by `responses` in front of the real requests
session (core.http.Session): which URL each state pings, what body it carries, how long it waits, that a failing
monitor only ever warns, and that the run's end is always reported, a bug included, with secrets masked."""

import logging
from types import SimpleNamespace

import pytest
import requests

from hosting_automator.core.http import Session
from hosting_automator.masking import MASK, secret_values
from hosting_automator.services.healthcheck import BODY_MAX_BYTES, PING_TIMEOUT, Monitoring, ping

URL = "https://hc-ping.example/5f1b3c9e-0d2a-4e7b-9a61-2c8d4f0e7b13"


@pytest.fixture
def session():
    with Session(timeout=30) as session:  # the run's HTTP_TIMEOUT; a ping waits PING_TIMEOUT only
        yield session


def recent(*lines):
    """What Monitoring reads the last log lines from: anything with a `.lines` list."""
    return SimpleNamespace(lines=list(lines))


def pinged(mocked):
    """(URL, body) of every ping sent, in order; an empty body is sent as none at all (Content-Length: 0)."""
    return [(call.request.url, call.request.body or b"") for call in mocked.calls]


def warnings_of(caplog):
    return [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]


# --- ping ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("state, suffix", [("start", "/start"), ("success", ""), ("fail", "/fail")])
def test_ping_state_posts_to_its_url_with_body_and_short_timeout(mocked, session, state, suffix):
    mocked.post(URL + suffix, body="OK")

    ping(session, URL, state, body="3 active, 1 failed\nlast lines…")

    (call,) = mocked.calls
    assert call.request.method == "POST"
    assert call.request.url == URL + suffix
    assert call.request.body == "3 active, 1 failed\nlast lines…".encode("utf-8")
    assert call.request.req_kwargs["timeout"] == PING_TIMEOUT == 10


def test_ping_body_longer_than_limit_is_cut_to_100_kb(mocked, session):
    mocked.post(URL + "/fail", body="OK")

    ping(session, URL, "fail", body="x" * (BODY_MAX_BYTES + 5000))

    assert mocked.calls[0].request.body == b"x" * BODY_MAX_BYTES
    assert BODY_MAX_BYTES == 100_000


@pytest.mark.parametrize("failure, name", [
    (requests.exceptions.ConnectionError(f"HTTPSConnectionPool(host='hc-ping.example', port=443): Max retries "
                                         f"exceeded with url: {URL[len('https://hc-ping.example'):]}/start "
                                         "(Caused by NewConnectionError('[Errno 111] Connection refused'))"),
     "ConnectionError"),
    (requests.exceptions.ReadTimeout("Read timed out. (read timeout=10)"), "ReadTimeout"),
])
def test_ping_network_failure_only_logs_a_warning_without_the_url(mocked, session, caplog, failure, name):
    mocked.post(URL + "/start", body=failure)

    ping(session, URL, "start")

    # the exception's class only: the URL's path is the check's key
    assert warnings_of(caplog) == [f"Monitoring ping (start) failed: {name}"]
    assert [record.levelno for record in caplog.records] == [logging.WARNING]


def test_ping_http_500_only_logs_a_warning(mocked, session, caplog):
    mocked.post(URL + "/fail", body="oops", status=500)

    ping(session, URL, "fail", body="summary")

    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "Monitoring ping (fail) answered HTTP 500")]


def test_ping_redirect_is_not_followed_and_warns(mocked, session, caplog):
    mocked.post(URL, status=302, headers={"Location": "https://elsewhere.example/"})

    ping(session, URL, "success", body="summary")

    assert len(mocked.calls) == 1
    assert warnings_of(caplog) == ["Monitoring ping (success) answered HTTP 302"]


def test_ping_dry_run_sends_nothing_and_says_so(mocked, session, caplog):
    caplog.set_level(logging.INFO)

    ping(session, URL, "start", dry_run=True)

    assert len(mocked.calls) == 0
    assert "Would ping start (dry run: nothing changed)" in caplog.messages


def test_ping_without_url_sends_nothing(mocked, session, caplog):
    ping(session, "", "success", body="x")
    ping(session, None, "fail", body="x")

    assert len(mocked.calls) == 0 and caplog.records == []


# --- Monitoring around a run -------------------------------------------------------------------------------------

def test_monitoring_enter_pings_start_with_an_empty_body(mocked, session):
    mocked.post(URL + "/start")
    mocked.post(URL)

    with Monitoring(session, URL, recent()) as monitoring:
        assert pinged(mocked) == [(URL + "/start", b"")]
        monitoring.finish("Run finished: nothing to do", True)


def test_monitoring_finish_succeeded_pings_success_url_with_summary_and_recent_lines(mocked, session):
    mocked.post(URL + "/start")
    mocked.post(URL)
    lines = recent("2026-01-31 03:00:01 INFO [a.example] Site is live", "2026-01-31 03:00:02 INFO Run finished")

    with Monitoring(session, URL, lines) as monitoring:
        lines.lines.append("2026-01-31 03:00:03 INFO a line written after finish() is sent too")
        monitoring.finish("Run finished: 1 active", True)

    assert pinged(mocked) == [
        (URL + "/start", b""),
        (URL, b"Run finished: 1 active\n\n2026-01-31 03:00:01 INFO [a.example] Site is live\n"
              b"2026-01-31 03:00:02 INFO Run finished\n"
              b"2026-01-31 03:00:03 INFO a line written after finish() is sent too")]
    assert all(call.request.req_kwargs["timeout"] == PING_TIMEOUT for call in mocked.calls)


def test_monitoring_finish_failed_pings_fail_with_summary(mocked, session):
    mocked.post(URL + "/start")
    mocked.post(URL + "/fail")

    with Monitoring(session, URL, recent("ERROR [b.example] CloudPanel: refused")) as monitoring:
        monitoring.finish("Run finished: 0 active, 1 failed", False)

    assert pinged(mocked)[-1] == (URL + "/fail",
                                  b"Run finished: 0 active, 1 failed\n\nERROR [b.example] CloudPanel: refused")


def test_monitoring_exception_in_block_pings_fail_naming_it_and_propagates(mocked, session):
    mocked.post(URL + "/start")
    mocked.post(URL + "/fail")

    with pytest.raises(KeyError, match="doc_root"):
        with Monitoring(session, URL, recent("INFO Run started")):
            raise KeyError("doc_root")

    url, body = pinged(mocked)[-1]
    assert url == URL + "/fail"
    assert body == b"Run stopped on an unexpected error: KeyError: 'doc_root'\n\nINFO Run started"


def test_monitoring_exception_after_finish_succeeded_still_pings_fail(mocked, session):
    mocked.post(URL + "/start")
    mocked.post(URL + "/fail")

    with pytest.raises(RuntimeError):
        with Monitoring(session, URL, recent()) as monitoring:
            monitoring.finish("Run finished: 1 active", True)
            raise RuntimeError("report could not be written")

    assert pinged(mocked)[-1][0] == URL + "/fail"
    assert b"RuntimeError: report could not be written" in pinged(mocked)[-1][1]


def test_monitoring_without_finish_pings_fail_saying_no_summary(mocked, session):
    mocked.post(URL + "/start")
    mocked.post(URL + "/fail")

    with Monitoring(session, URL, recent()):
        pass

    assert pinged(mocked)[-1] == (URL + "/fail", b"Run ended without a summary\n\n")


def test_monitoring_secret_in_summary_and_lines_is_masked_in_the_body(mocked, session):
    key = "sb_secret_Zq8vN3kLm2Xw9Rt4"
    secret_values.add(key)
    mocked.post(URL + "/start")
    mocked.post(URL + "/fail")

    with Monitoring(session, URL, recent(f"ERROR Supabase refused the key {key}")) as monitoring:
        monitoring.finish(f"Run aborted: SUPABASE_SERVICE_KEY {key} was refused", False)

    body = pinged(mocked)[-1][1].decode("utf-8")
    assert key not in body
    assert body == (f"Run aborted: SUPABASE_SERVICE_KEY {MASK} was refused\n\n"
                    f"ERROR Supabase refused the key {MASK}")


def test_monitoring_secret_in_an_escaping_exception_is_masked_in_the_body(mocked, session):
    password = "Xk3dP9qLm2Vb7Nw4Zt8Rf6Hy1Jc5Gs0A"
    secret_values.add(password)
    mocked.post(URL + "/start")
    mocked.post(URL + "/fail")

    with pytest.raises(ValueError):
        with Monitoring(session, URL, recent()):
            raise ValueError(f"--siteUserPassword={password}")

    body = pinged(mocked)[-1][1].decode("utf-8")
    assert password not in body and f"--siteUserPassword={MASK}" in body


def test_monitoring_failing_monitor_only_warns_and_never_hides_the_runs_exception(mocked, session, caplog):
    mocked.post(URL + "/start", status=503)
    mocked.post(URL + "/fail", body=requests.exceptions.ConnectionError("[Errno 111] Connection refused"))

    with pytest.raises(ZeroDivisionError):
        with Monitoring(session, URL, recent()):
            1 / 0

    assert warnings_of(caplog) == ["Monitoring ping (start) answered HTTP 503",
                                   "Monitoring ping (fail) failed: ConnectionError"]


def test_monitoring_failing_monitor_does_not_stop_the_run(mocked, session, caplog):
    mocked.post(URL + "/start", body=requests.exceptions.ConnectTimeout("timed out"))
    mocked.post(URL, body=requests.exceptions.ConnectTimeout("timed out"))
    ran = []

    with Monitoring(session, URL, recent()) as monitoring:
        ran.append("the run")
        monitoring.finish("Run finished: 1 active", True)

    assert ran == ["the run"]
    assert warnings_of(caplog) == ["Monitoring ping (start) failed: ConnectTimeout",
                                   "Monitoring ping (success) failed: ConnectTimeout"]


def test_monitoring_dry_run_sends_nothing_and_says_what_it_would_ping(mocked, session, caplog):
    caplog.set_level(logging.INFO)

    with Monitoring(session, URL, recent("INFO Would create a.example"), dry_run=True) as monitoring:
        monitoring.finish("Dry run: 1 site would be done", True)

    assert len(mocked.calls) == 0
    assert caplog.messages == ["Would ping start (dry run: nothing changed)",
                               "Would ping success (dry run: nothing changed)"]


def test_monitoring_without_url_sends_nothing_and_lets_exceptions_through(mocked, session, caplog):
    with pytest.raises(KeyError):
        with Monitoring(session, None, recent()):
            raise KeyError("x")

    assert len(mocked.calls) == 0 and caplog.records == []
