"""Stopping politely: on SIGTERM, SIGINT or SIGHUP the real command starts no new site, lets the
current step end (or abandons a back-off) without writing a half-done row, says so, exits 1, and a rerun finishes
everything with no duplicates."""

import os
import signal
import time

import pytest

from tests.standins import Fault, clpctl_state
from tests.standins.clpctl_state import write_control
from tests.support.crash import DOMAINS, JOB_TIMEOUT, end_state, live
from tests.support.harness import read_log, run_job, start_job, wait_for, wait_for_orphans

FIRST, *REST = DOMAINS


def _send(process, signum):
    if signum in (signal.SIGINT, signal.SIGHUP):  # Ctrl-C, or the ssh session closing: the whole process group
        os.killpg(process.pid, signum)
    else:  # systemd or kill(1): the job's own process
        os.kill(process.pid, signum)


def _sighup_as_a_login_session_gives_it():
    """The job's SIGHUP as an ssh session gives it (the default), whatever the tests were started with: under
    nohup every child would inherit SIGHUP ignored, and the job rightly leaves an ignored SIGHUP ignored."""
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def _untouched(state, domain):
    return state[domain] == {"status_hosting": "pending", "doc_root": None, "error_message": None,
                             "matomo_id": None, "cloudpanel_sites": 0, "matomo_sites": 0, "certificate_requests": 0}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=["SIGTERM", "SIGINT", "SIGHUP"])
def test_signal_during_a_step_lets_it_end_starts_nothing_new_and_exits_1(three, signum, tmp_path):
    """Events, not time: clpctl holds the first site's step open until the job has taken the signal."""
    gate = tmp_path / "gate"
    write_control(three.control_path, {FIRST: {"site:add:static": f"gate:{gate}"}})
    process = start_job(three, start_new_session=True, preexec_fn=_sighup_as_a_login_session_gives_it)
    try:
        wait_for(lambda: any(call["exit_code"] is None for call in clpctl_state.calls(three.db_path)),
                 what="the first site's clpctl to be running")
        _send(process, signum)
        wait_for(lambda: f"Received {signal.Signals(signum).name}" in read_log(three), what="the job to take the signal")
        gate.touch()
        process.communicate(timeout=JOB_TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    wait_for_orphans(three)

    assert process.returncode == 1
    log = read_log(three)
    name = signal.Signals(signum).name
    assert f"WARNING Received {name}: starting no new site" in log
    assert f"WARNING [{FIRST}] Stopped before finishing this site: its row stays pending for the next run" in log
    assert ("ERROR Run interrupted: 0 active (0 without Matomo), 0 failed; the sites not finished stay as they were"
            in log)
    state = end_state(three)
    # The step in progress (clpctl in its own session, untouched by the signal) ended; nothing after it ran,
    # and the row was not written half-done.
    assert state[FIRST] == {"status_hosting": "pending", "doc_root": None, "error_message": None, "matomo_id": None,
                            "cloudpanel_sites": 1, "matomo_sites": 0, "certificate_requests": 0}
    assert all(_untouched(state, domain) for domain in REST)
    assert all(f"[{domain}]" not in log for domain in REST)
    assert [body for _, body in three.postgrest.patches if "status_hosting" in body] == []  # claims only

    rerun = run_job(three)

    assert rerun.returncode == 0, rerun.log
    assert f"[{FIRST}] CloudPanel site exists already" in rerun.log
    assert {domain: end_state(three)[domain] for domain in DOMAINS} == {domain: live(domain) for domain in DOMAINS}


def test_sigterm_during_a_retry_wait_ends_the_wait_at_once_and_rerun_requests_no_second_certificate(three):
    # Matomo asks for a 30 s pause: the job must not sit it out once told to stop.
    three.matomo.fault = lambda request: Fault.status(503, "busy", {"Retry-After": "30"})
    process = start_job(three)
    try:
        wait_for(lambda: f"[{FIRST}] Matomo failed" in read_log(three), what="the first retry wait")
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=JOB_TIMEOUT)
        stopped_after = time.monotonic() - signalled
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert process.returncode == 1
    assert stopped_after < 10  # far less than the 30 s wait
    log = read_log(three)
    assert "trying again in 30.0 s (attempt 2 of 4)" in log
    assert "Received SIGTERM" in log and "Run interrupted:" in log
    state = end_state(three)
    assert state[FIRST] == {"status_hosting": "pending", "doc_root": None, "error_message": None, "matomo_id": None,
                            "cloudpanel_sites": 1, "matomo_sites": 0, "certificate_requests": 1}
    assert all(_untouched(state, domain) for domain in REST)

    three.matomo.fault = None
    rerun = run_job(three)

    assert rerun.returncode == 0, rerun.log
    assert f"[{FIRST}] SSL: a valid certificate is served already" in rerun.log
    assert {domain: end_state(three)[domain] for domain in DOMAINS} == {domain: live(domain) for domain in DOMAINS}


def test_sighup_ignored_by_the_parent_as_under_nohup_stays_ignored_and_the_run_finishes(three, tmp_path):
    gate = tmp_path / "gate"
    write_control(three.control_path, {FIRST: {"site:add:static": f"gate:{gate}"}})
    process = start_job(three, start_new_session=True,
                        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    try:
        wait_for(lambda: any(call["exit_code"] is None for call in clpctl_state.calls(three.db_path)),
                 what="the first site's clpctl to be running")
        os.killpg(process.pid, signal.SIGHUP)
        gate.touch()
        process.communicate(timeout=JOB_TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert process.returncode == 0
    assert "Received SIGHUP" not in read_log(three)
    assert {domain: end_state(three)[domain] for domain in DOMAINS} == {domain: live(domain) for domain in DOMAINS}
