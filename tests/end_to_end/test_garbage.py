"""Answers that cannot be read (JSON nested far deeper than Python's reader recurses) and a log file on a full
disk: each is that service's error or one message, never a traceback, and no other site's work is lost."""

from tests.standins import Fault
from tests.support.harness import add_pending, no_traceback, run_job, start_job
from tests.support.standin_views import ADD, DEEP_JSON, live_root, outcome, row


def test_matomo_answering_json_nested_too_deep_is_a_warning_and_the_site_goes_live(standins):
    ids = add_pending(standins, "deep.example.test")
    standins.matomo.fault = lambda request: Fault.status(200, DEEP_JSON, {"Content-Type": "application/json"})

    result = run_job(standins)

    assert result.returncode == 0, result.log
    assert outcome(standins, ids[0]) == ("active", live_root("deep.example.test"), None, None)
    assert "WARNING [deep.example.test] Matomo: SitesManager.getSitesIdFromSiteUrl: HTTP 200 with a body that is " \
           "not JSON" in result.log
    no_traceback(result)


def test_supabase_answering_json_nested_too_deep_to_the_read_aborts_with_a_message(standins):
    ids = add_pending(standins, "deep.example.test")
    standins.postgrest.fault = lambda request: Fault.status(200, DEEP_JSON, {"Content-Type": "application/json"})

    result = run_job(standins, fast_retries=True)

    assert result.returncode == 1
    assert "Run aborted: 0 active (0 without Matomo), 0 failed; cannot read the pending sites: read the pending " \
           "sites: Supabase answered JSON that cannot be read" in result.log
    assert row(standins, ids[0])["status_hosting"] == "pending"
    no_traceback(result)


def test_supabase_answering_json_nested_too_deep_to_a_write_leaves_the_row_for_the_next_run(standins):
    ids = add_pending(standins, "deep.example.test")
    standins.postgrest.fault = lambda request: (  # the write of the outcome, not a claim of the row
        Fault.status(200, DEEP_JSON, {"Content-Type": "application/json"})
        if request["method"] == "PATCH" and '"status_hosting"' in request["body"] else None)

    result = run_job(standins, fast_retries=True)

    assert result.returncode == 1
    assert "[deep.example.test] Could not record the outcome (active)" in result.log
    assert row(standins, ids[0])["status_hosting"] == "pending"
    no_traceback(result)


def test_gateway_answering_json_nested_too_deep_fails_the_site_with_a_message(gateway_standins):
    standins = gateway_standins
    ids = add_pending(standins, "deep.example.test")
    standins.gateway.fault = lambda request: (Fault.status(200, DEEP_JSON, {"Content-Type": "application/json"})
                                              if request["path"].endswith(ADD) else None)

    result = run_job(standins)

    assert result.returncode == 1
    state, _, _, error = outcome(standins, ids[0])
    assert state == "failed"
    assert error.startswith("CloudPanel: gateway: add the static site: HTTP 200 with a body that is not JSON: ")
    no_traceback(result)


def test_a_log_file_on_a_full_disk_is_one_message_and_the_run_does_its_work(standins):
    ids = add_pending(standins, "full.example.test")
    process = start_job(standins, overrides={"LOG_FILE": "/dev/full"})  # run_job would read /dev/full afterwards
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0
    assert stderr.count("LOG_FILE /dev/full cannot be written (No space left on device)") == 1
    assert "Logging error" not in stderr and "Traceback" not in stderr
    assert row(standins, ids[0])["status_hosting"] == "active"
