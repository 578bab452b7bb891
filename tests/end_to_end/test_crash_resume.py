"""Crash and resume, the run lock and database faults: the real command, killed
right after each step of a site and started again, ends exactly where an uninterrupted run ends, with no second
CloudPanel site, Matomo site or certificate request."""

import fcntl
import os
import signal
import time

import pytest

from hosting_automator.services.cloudpanel_client import site_user_for
from tests.standins import Fault, clpctl_state, start_all
from tests.standins.faults import once
from tests.support.crash import DOMAINS, JOB_TIMEOUT, end_state, live, seeded
from tests.support.harness import (clpctl_processes, job_environment, read_log, run_job, start_job, wait_for,
                                   wait_for_orphans)
from tests.support.retries import fast_retry_policy

TARGET = "site2.example.test"  # a site in the middle: one done before it, one still to do after it


# -- helpers ---------------------------------------------------------------------------------------------------

class JobKiller:
    """SIGKILLs the job from inside a stand-in's callback (the job waits for that very answer)."""

    def __init__(self):
        self.pid = None
        self.kills = 0

    def kill(self):
        if self.pid is not None:
            os.kill(self.pid, signal.SIGKILL)
            self.kills += 1
            self.pid = None


def run_killed(standins, killer=None, overrides=None, fast_retries=False):
    process = start_job(standins, overrides=overrides, fast_retries=fast_retries)
    if killer is not None:
        killer.pid = process.pid
    process.communicate(timeout=JOB_TIMEOUT)
    wait_for_orphans(standins)
    return process.returncode


def is_request(request, method, path_end, **body_or_query):
    if request["method"] != method or not request["path"].endswith(path_end):
        return False
    text = request["body"] + " " + " ".join(f"{k}={v}" for k, values in request["query"].items() for v in values)
    return all(f"{key}={value}" in text or f'"{key}": "{value}"' in text for key, value in body_or_query.items())


def patch_of(site_id):
    """The write of the row's outcome (not the claim that comes before it)."""
    return lambda request: (request["method"] == "PATCH" and f"eq.{site_id}" in request["query"].get("id", [])
                            and '"status_hosting"' in request["body"])


def outcome_writes(standins):
    """The ids of the rows whose outcome the stand-in saw written, in order (claims left out)."""
    return [id_ for id_, body in standins.postgrest.patches if "status_hosting" in body]


def row_id(standins, domain):
    return next(row["id"] for row in standins.postgrest.rows() if row["domain"] == domain)


@pytest.fixture
def three_gateway(gateway_standins):
    return seeded(gateway_standins)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The end state of one run that nothing disturbs. Both transports reach the same state (the gateway's sites
    get the same derived site users, Matomo ids are compared as "the domain's one site"), so one run serves both."""
    standins = seeded(start_all(tmp_path_factory.mktemp("uninterrupted")))
    try:
        result = run_job(standins)
        assert result.returncode == 0, result.log
        return end_state(standins)
    finally:
        standins.stop()


def test_uninterrupted_run_sets_up_each_site_once_and_leaves_other_rows(uninterrupted):
    assert {domain: uninterrupted[domain] for domain in DOMAINS} == {domain: live(domain) for domain in DOMAINS}
    assert uninterrupted["dns-pending.example.test"]["status_hosting"] == "pending"
    assert uninterrupted["failed-before.example.test"]["error_message"] == "CloudPanel: earlier failure"
    assert uninterrupted["already-active.example.test"]["cloudpanel_sites"] == 0


# -- point 4: SIGKILL right after each step, then run again ---------------------------------------------------

def _kill_after_site_added(standins, killer):
    clpctl_state.write_control(standins.control_path, {TARGET: {"site:add:static": "kill-parent-after"}})


def _kill_after_certificate(standins, killer):
    clpctl_state.write_control(standins.control_path,
                               {TARGET: {"lets-encrypt:install:certificate": "kill-parent-after"}})


def _kill_after_matomo_site(standins, killer):
    def on_add_site(site_id):
        if standins.matomo.sites[site_id]["name"] == TARGET:
            killer.kill()

    standins.matomo.on_add_site = on_add_site


def _kill_after_row_written(standins, killer):
    def on_patch_applied(row):
        if row["domain"] == TARGET and row["status_hosting"] != "pending":  # the outcome, not the claim before it
            killer.kill()

    standins.postgrest.on_patch_applied = on_patch_applied


def _no_more_kills(standins):
    clpctl_state.write_control(standins.control_path, {})
    standins.matomo.on_add_site = None
    standins.postgrest.on_patch_applied = None


@pytest.mark.parametrize("arrange, target_row_after_kill, rerun_says", [
    pytest.param(_kill_after_site_added, "pending", "CloudPanel site exists already", id="site-added"),
    pytest.param(_kill_after_certificate, "pending", "a valid certificate is served already", id="certificate"),
    pytest.param(_kill_after_matomo_site, "pending", "Matomo site exists already", id="matomo-site"),
    pytest.param(_kill_after_row_written, "active", None, id="row-written"),
])
def test_job_killed_after_a_step_then_rerun_ends_as_an_uninterrupted_run(three, uninterrupted, arrange,
                                                                        target_row_after_kill, rerun_says):
    killer = JobKiller()
    arrange(three, killer)

    assert run_killed(three, killer) == -signal.SIGKILL
    after_kill = end_state(three)
    assert after_kill["site1.example.test"] == live("site1.example.test")
    assert after_kill[TARGET]["status_hosting"] == target_row_after_kill
    assert after_kill["site3.example.test"]["cloudpanel_sites"] == 0  # the kill came before the next site
    assert after_kill["site3.example.test"]["status_hosting"] == "pending"

    _no_more_kills(three)
    log_before = read_log(three)
    result = run_job(three)
    assert result.returncode == 0, result.log
    rerun_log = result.log[len(log_before):]
    assert "Run finished: " in rerun_log and "Another run is in progress" not in rerun_log  # no stale lock
    if rerun_says:
        assert f"[{TARGET}] " in rerun_log and rerun_says in rerun_log
    assert end_state(three) == uninterrupted


def _lost_answer(path):
    return once(Fault.after_drop(), lambda request: is_request(request, "POST", path, domainName=TARGET))


def _lost_answer_and_killed(killer, path):
    lost = _lost_answer(path)

    def fault(request):
        chosen = lost(request)
        if chosen is not None:
            killer.kill()
        return chosen

    return fault


GATEWAY_STEPS = [
    pytest.param("/api/site/add/static",
                 f"[{TARGET}] CloudPanel: gateway: add the static site: no whole answer came (Remote end closed "
                 "connection without response); it may still have been made, so it is not sent again this run; the "
                 "row stays pending and the next run tries again",
                 f"[{TARGET}] CloudPanel site exists already (site user {site_user_for(TARGET)})",  # the listing
                 id="site-added"),
    pytest.param("/api/letsencrypt/install-certificate",
                 f"[{TARGET}] SSL: gateway: install the certificate: no whole answer came (Remote end closed "
                 "connection without response); it may still have been made, so it is not sent again this run; the "
                 "row stays pending and the next run tries again",
                 f"[{TARGET}] SSL: a valid certificate is served already", id="certificate"),
]


@pytest.mark.parametrize("path, postponed, then", GATEWAY_STEPS)
def test_gateway_answer_lost_after_the_work_is_not_sent_again_and_the_next_run_converges(
        three_gateway, uninterrupted, path, postponed, then):
    three_gateway.gateway.fault = _lost_answer(path)

    first = run_job(three_gateway, fast_retries=True)

    assert first.returncode == 1, first.log
    assert postponed in first.log
    assert "trying again in" not in first.log
    assert sum(is_request(request, "POST", path, domainName=TARGET)
               for request in three_gateway.gateway.requests_log) == 1  # not sent again
    three_gateway.gateway.fault = None
    second = run_job(three_gateway)
    assert second.returncode == 0, second.log
    assert then in second.log
    assert end_state(three_gateway) == uninterrupted


@pytest.mark.parametrize("path, postponed, then", GATEWAY_STEPS)
def test_gateway_answer_lost_and_job_killed_then_rerun_does_not_duplicate(three_gateway, uninterrupted, path,
                                                                         postponed, then):
    killer = JobKiller()
    three_gateway.gateway.fault = _lost_answer_and_killed(killer, path)

    assert run_killed(three_gateway, killer, fast_retries=True) == -signal.SIGKILL
    assert killer.kills == 1
    three_gateway.gateway.fault = None
    result = run_job(three_gateway)

    assert result.returncode == 0, result.log
    assert postponed not in result.log and then in result.log
    assert end_state(three_gateway) == uninterrupted


# -- point 1: the run lock ------------------------------------------------------------------------------------

def test_second_run_while_the_lock_is_held_reads_nothing_and_exits_0(three):
    with open(three.env["LOCK_FILE"], "a+") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = run_job(three)

    assert result.returncode == 0, result.log
    assert "Another run is in progress" in result.log
    assert three.postgrest.request_count == 0 and three.matomo.request_count == 0
    assert clpctl_state.calls(three.db_path) == []
    assert {row["status_hosting"] for row in three.postgrest.rows() if row["domain"] in DOMAINS} == {"pending"}


def test_a_lock_held_longer_than_a_run_can_take_is_said_loudly_exit_1_and_a_fail_ping(three, httpserver):
    """A stuck run holds the lock: every later run would say "another run is in progress" and exit 0 for ever."""
    httpserver.expect_request("/ping/abc/fail", method="POST").respond_with_data("OK")
    lock_file = three.env["LOCK_FILE"]
    with open(lock_file, "a+") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("4242\n")
        held.flush()
        taken = time.time() - (60 + 21 + 5 + 1) * 60  # a minute past MAX_RUN_MINUTES and the longest site
        os.utime(lock_file, (taken, taken))
        result = run_job(three, overrides={"HEALTHCHECK_URL": httpserver.url_for("/ping/abc")})
        recent = run_job(three, overrides={"MAX_RUN_MINUTES": "120"})  # a limit it has not reached: usual

    assert result.returncode == 1
    assert f"ERROR Another run has held {lock_file} for 87 minutes, longer than a run can take (86 minutes" in (
        result.log)
    assert "see what process 4242 does" in result.log
    (ping, _), = httpserver.log
    assert ping.path == "/ping/abc/fail" and "longer than a run can take" in ping.get_data(as_text=True)
    assert three.postgrest.request_count == 0
    assert recent.returncode == 0 and "Another run is in progress" in recent.log


def test_second_run_while_a_run_works_exits_0_and_the_first_finishes_alone(three, uninterrupted, tmp_path):
    """Events, not time: the first run's clpctl holds its first site open until the second run has ended."""
    gate = tmp_path / "gate"
    clpctl_state.write_control(three.control_path, {"site1.example.test": {"site:add:static": f"gate:{gate}"}})
    first = start_job(three)
    try:
        wait_for(lambda: any(call["exit_code"] is None for call in clpctl_state.calls(three.db_path)),
                 what="the first run's clpctl to be running")
        requests_before = three.postgrest.request_count
        second = run_job(three)
        requests_after = three.postgrest.request_count
        gate.touch()
        first.communicate(timeout=JOB_TIMEOUT)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()

    assert second.returncode == 0
    assert second.log.count("Another run is in progress") == 1
    assert requests_after == requests_before  # the first run waits on clpctl; the second read nothing
    assert first.returncode == 0
    assert second.log.count("Run started") == 1
    assert end_state(three) == uninterrupted


def test_clpctl_orphaned_by_a_killed_run_keeps_the_lock_until_it_ends(three, uninterrupted, tmp_path):
    """Events, not time: the orphaned clpctl works on until the second run has ended, then the gate lets it end."""
    gate = tmp_path / "gate"
    clpctl_state.write_control(three.control_path, {"site1.example.test": {"site:add:static": f"gate:{gate}"}})
    first = start_job(three)
    wait_for(lambda: any(call["exit_code"] is None for call in clpctl_state.calls(three.db_path)),
             what="the first run's clpctl to be running")
    first.kill()
    first.communicate()
    assert clpctl_processes(three.db_path)  # the orphan works on

    second = run_job(three)  # started while the orphan still adds its site

    assert second.returncode == 0
    assert "Another run is in progress" in second.log
    assert [call["exit_code"] for call in clpctl_state.calls(three.db_path)] == [None]  # only the orphan's, running
    gate.touch()
    wait_for_orphans(three)
    clpctl_state.write_control(three.control_path, {})
    assert run_job(three).returncode == 0
    assert end_state(three) == uninterrupted


# -- point 8: database faults ---------------------------------------------------------------------------------

def test_row_changed_by_someone_else_during_the_run_is_left_untouched_with_a_warning(three):
    target_id = row_id(three, TARGET)

    def operator_takes_it(site_id):
        if three.matomo.sites[site_id]["name"] == TARGET:
            three.postgrest.update_row(target_id, status_hosting="failed", error_message="taken over by hand")

    three.matomo.on_add_site = operator_takes_it
    result = run_job(three)

    assert result.returncode == 0, result.log
    assert (f"WARNING [{TARGET}] Row {target_id} was changed by someone else during the run; left untouched"
            in result.log)
    row = three.postgrest.get(target_id)
    assert (row["status_hosting"], row["doc_root"], row["matomo_id"], row["error_message"]) == (
        "failed", None, None, "taken over by hand")
    assert outcome_writes(three) == [row_id(three, d) for d in ("site1.example.test",
                                                                                     "site3.example.test")]
    assert end_state(three)["site3.example.test"] == live("site3.example.test")


@pytest.fixture
def in_process(monkeypatch, sleeps):
    """Runs the real main() in this process with the retry waits recorded, not slept: for faults that exhaust
    every retry. Signal handlers are left alone (they belong to pytest here)."""
    from hosting_automator import main as main_module
    from tests.support.harness import SETTINGS

    monkeypatch.setattr(main_module, "RetryPolicy", lambda **kwargs: fast_retry_policy(sleeps, **kwargs))
    monkeypatch.setattr(main_module, "_stop_on_signals", lambda stop: None)

    def run(standins, *arguments, overrides=None):
        monkeypatch.chdir(standins.dir)
        environment = job_environment(standins, overrides)
        for key in SETTINGS:
            if key not in environment:
                monkeypatch.delenv(key, raising=False)
        for key, value in environment.items():
            monkeypatch.setenv(key, value)
        return main_module.main(list(arguments))

    return run


def _stalls_then_drops(site_id, seconds):
    """The database does not answer within HTTP_TIMEOUT, and the write never lands."""
    is_patch = patch_of(site_id)

    def fault(request):
        if is_patch(request):
            time.sleep(seconds)
            return Fault.drop()
        return None

    return fault


@pytest.mark.parametrize("fault, overrides", [
    pytest.param(lambda site_id: _stalls_then_drops(site_id, 0.6), {"HTTP_TIMEOUT": "0.3"}, id="timeout"),
    pytest.param(lambda site_id: (lambda request: Fault.drop() if patch_of(site_id)(request) else None), {},
                 id="dropped-connection"),
])
def test_final_write_failing_every_retry_leaves_row_pending_and_rerun_converges(three, uninterrupted, in_process,
                                                                                sleeps, fault, overrides):
    three.postgrest.fault = fault(row_id(three, TARGET))

    assert in_process(three, overrides=overrides) == 1

    log = read_log(three)
    retried = f"[{TARGET}] record the outcome of site {row_id(three, TARGET)} failed"
    assert log.count(retried) == 3  # 4 attempts, 3 waits
    assert f"[{TARGET}] Could not record the outcome (active)" in log
    assert sleeps == [0.75, 1.5, 3.0]
    state = end_state(three)
    assert state[TARGET]["status_hosting"] == "pending" and state[TARGET]["doc_root"] is None
    assert state["site3.example.test"] == live("site3.example.test")

    three.postgrest.fault = None
    assert in_process(three, overrides=overrides) == 0
    assert end_state(three) == uninterrupted


@pytest.mark.parametrize("fault", [
    pytest.param(lambda site_id: once(Fault.after_drop(), patch_of(site_id)), id="answer-lost"),
    pytest.param(lambda site_id: once(Fault.delay(0.6), patch_of(site_id)), id="answer-late"),
])
def test_final_write_landed_but_answer_lost_counts_as_written(three, uninterrupted, in_process, sleeps, fault):
    three.postgrest.fault = fault(row_id(three, TARGET))

    assert in_process(three, overrides={"HTTP_TIMEOUT": "0.3"}) == 0

    assert sleeps == [0.75]
    assert "Could not record" not in read_log(three)
    # the late write of the first attempt lands once the stand-in has finished it: conditional, it changes nothing
    wait_for(lambda: three.postgrest.in_flight == 0, what="the delayed write to land")
    assert end_state(three) == uninterrupted
    assert outcome_writes(three).count(row_id(three, TARGET)) == 1


def test_json_while_another_run_holds_the_lock_is_still_a_document(three):
    import json

    with open(three.env["LOCK_FILE"], "a+") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = run_job(three, "--json")
    document = json.loads(result.stdout)
    assert (result.returncode, document["exit_code"], document["sites"]) == (0, 0, [])
    assert document["summary"].startswith("Another run is in progress")


def test_signal_while_reading_waits_to_retry_ends_cleanly(three):
    three.postgrest.fault = lambda request: Fault.status(503, {"message": "down"}, headers={"Retry-After": "30"})
    process = start_job(three)
    wait_for(lambda: "read the pending sites failed" in read_log(three), what="the read to be retried")
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=JOB_TIMEOUT)
    log = read_log(three)
    assert process.returncode == 1
    assert "Traceback" not in log + stderr
    assert "ERROR Run interrupted: 0 active (0 without Matomo), 0 failed" in log
