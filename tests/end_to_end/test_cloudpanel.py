"""CloudPanel as it really is: a site made by hand under another user, a site this job made before a crash,
CloudPanel's database locked for a while, and what the real clpctl gateway does that the stand-ins once did not
(success needs clpctl's own success line, slow calls, a refused token, a base URL without routes or that
redirects)."""

import sqlite3
import threading
from pathlib import Path

import pytest

from hosting_automator.services.cloudpanel_client import site_user_for
from tests.standins import Fault
from tests.standins.clpctl_state import add_site, certificate_requests, write_control
from tests.standins.faults import once
from tests.support.harness import add_pending, run_job, start_job, wait_for
from tests.support.standin_views import (ADD, CERTIFICATE, FAST, counts, gateway_posts, html_page, live_root, outcome,
                                         row, to)


def test_gateway_a_site_made_by_hand_under_another_user_fails_saying_what_to_set(gateway_standins):
    standins = gateway_standins
    # a gateway without its site listing (the real one has it, and the site's doc_root is then read from it)
    standins.gateway.fault = lambda request: (Fault.status(404, {"error": "Endpoint not found"})
                                              if request["path"] == "/lists/api/sites" else None)
    add_site(standins.db_path, "byhand.example.test", "handmade")
    ids = add_pending(standins, "byhand.example.test")

    result = run_job(standins)

    assert result.returncode == 1
    state, doc_root, matomo_id, error = outcome(standins, ids[0])
    assert (state, doc_root, matomo_id) == ("failed", None, None)
    assert error.startswith("CloudPanel: byhand.example.test exists in CloudPanel under a site user this job did "
                            "not make, and its document root cannot be read in the gateway's site listing (GET "
                            "/lists/api/sites): write the row's doc_root (/home/<site user>/htdocs/byhand.example.test)")
    assert gateway_posts(standins, CERTIFICATE) == [] and standins.matomo.sites == {}


def test_gateway_a_site_made_by_hand_goes_live_with_the_doc_root_its_listing_names(gateway_standins):
    standins = gateway_standins
    add_site(standins.db_path, "byhand.example.test", "handmade")
    ids = add_pending(standins, "byhand.example.test")

    result = run_job(standins)

    assert result.returncode == 0, result.log
    assert outcome(standins, ids[0])[:2] == ("active", "/home/handmade/htdocs/byhand.example.test")
    assert gateway_posts(standins, ADD) == []


def test_clpctl_without_cloudpanels_database_a_site_made_by_hand_fails_saying_what_to_set(standins):
    add_site(standins.db_path, "byhand.example.test", "handmade")
    ids = add_pending(standins, "byhand.example.test")

    result = run_job(standins, overrides={"CLOUDPANEL_DB_PATH": Path(standins.dir) / "not-the-db.sq3"})

    assert result.returncode == 1
    state, doc_root, _, error = outcome(standins, ids[0])
    assert (state, doc_root) == ("failed", None)
    assert "exists in CloudPanel under a site user this job did not make" in error
    assert certificate_requests(standins.db_path) == [] and standins.matomo.sites == {}


def test_gateway_a_site_this_job_made_before_a_crash_resumes_with_its_true_doc_root(gateway_standins):
    """Through the gateway no site user can be read: the site is known as this job's by its derived site user,
    which clpctl says exists too, and its true document root is written, never a guess."""
    standins = gateway_standins
    add_site(standins.db_path, "crashed.example.test", site_user_for("crashed.example.test"))
    ids = add_pending(standins, "crashed.example.test")

    result = run_job(standins)

    assert result.returncode == 0, result.log
    assert outcome(standins, ids[0]) == ("active", live_root("crashed.example.test"), 1, None)
    assert counts(standins, "crashed.example.test") == (1, 1, 1)


def test_cloudpanels_database_locked_for_a_while_is_waited_out_not_a_failure(standins):
    ids = add_pending(standins, "locked.example.test")
    holder = sqlite3.connect(standins.db_path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")  # CloudPanel writing it for longer than the job's 10 s
    released = threading.Event()

    def release():
        holder.execute("ROLLBACK")
        released.set()

    process = start_job(standins, fast_retries=True)
    try:
        try:
            wait_for(lambda: "stayed locked" in Path(standins.env["LOG_FILE"]).read_text(errors="replace")
                     if Path(standins.env["LOG_FILE"]).exists() else False, timeout=20, what="a locked read")
        finally:
            release()
        process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        holder.close()

    log = Path(standins.env["LOG_FILE"]).read_text()
    assert "run as root" not in log
    assert "[locked.example.test] CloudPanel failed (CloudPanel's database " in log and "stayed locked" in log
    assert process.returncode == 0, log
    assert outcome(standins, ids[0]) == ("active", live_root("locked.example.test"), 1, None)


@pytest.mark.parametrize("command, says, doc_root, error, orders", [
    ("site:add:static", "siteUser: This value is not valid.", None,
     # the gateway answers that line as {"siteUser": "This value is not valid."}
     "CloudPanel: gateway: add the static site: clpctl reported no success: siteUser: This value is not valid.", 0),
    ("lets-encrypt:install:certificate", "Domain could not be validated", live_root("exit0.example.test"),
     "SSL: gateway: install the certificate: clpctl reported no success: Domain could not be validated; and the "
     "certificate served does not verify (Hostname mismatch, certificate is not valid for 'exit0.example.test'.)", 1),
], ids=["site-orders-no-certificate", "certificate"])
def test_gateway_success_without_clpctls_success_line_fails_the_site(gateway_standins, command, says, doc_root, error,
                                                                      orders):
    standins = gateway_standins
    ids = add_pending(standins, "exit0.example.test")
    write_control(standins.control_path, {"exit0.example.test": {command: f"error-exit0:{says}"}})

    result = run_job(standins)

    assert result.returncode == 1
    assert outcome(standins, ids[0]) == ("failed", doc_root, None, error)
    assert len(gateway_posts(standins, CERTIFICATE)) == orders and standins.matomo.sites == {}


@pytest.mark.parametrize("route", [ADD, CERTIFICATE], ids=["site", "certificate"])
def test_gateway_call_slower_than_http_timeout_is_waited_for_not_abandoned(gateway_standins, route):
    """The gateway answers once clpctl is done: a call slower than HTTP_TIMEOUT is waited for, up to the gateway's
    own limit, not abandoned while clpctl still works."""
    standins = gateway_standins
    ids = add_pending(standins, "slow.example.test")
    standins.gateway.fault = once(Fault.delay(1.5), to(route))

    result = run_job(standins, overrides=FAST, fast_retries=True)

    assert result.returncode == 0, result.log
    assert len(gateway_posts(standins, route)) == 1
    assert "no answer within" not in result.log
    assert outcome(standins, ids[0]) == ("active", live_root("slow.example.test"), 1, None)


@pytest.mark.parametrize("how", ["wrong-token", "403-page"])
def test_gateway_refusing_the_token_stops_the_run_at_the_first_answer_rows_untouched(gateway_standins, how):
    standins = gateway_standins
    ids = add_pending(standins, "a.example.test", "b.example.test", "c.example.test")
    overrides = {}
    if how == "wrong-token":
        overrides["CLOUDPANEL_API_TOKEN"] = "not-the-gateway-key-0000"
    else:
        standins.gateway.fault = lambda request: Fault.status(403, html_page("Forbidden"),
                                                              {"Content-Type": "text/html"})

    result = run_job(standins, overrides=overrides)

    assert result.returncode == 1
    assert len(gateway_posts(standins, ADD)) == 1
    assert [row(standins, i)["status_hosting"] for i in ids] == ["pending"] * 3
    assert result.log.count("the gateway refused CLOUDPANEL_API_TOKEN") == 2  # the error, and the summary line
    assert "Run aborted: " in result.log and "set it to the gateway's API key" in result.log


def test_gateway_url_ending_in_api_as_the_gateways_readme_writes_it_works(gateway_standins):
    standins = gateway_standins
    ids = add_pending(standins, "api.example.test")

    result = run_job(standins, overrides={"CLOUDPANEL_API_URL": standins.gateway.url + "/api"})

    assert result.returncode == 0, result.log
    assert outcome(standins, ids[0]) == ("active", live_root("api.example.test"), 1, None)


def test_gateway_url_without_its_routes_stops_the_run_naming_the_setting(gateway_standins):
    standins = gateway_standins
    ids = add_pending(standins, "a.example.test", "b.example.test")

    result = run_job(standins, overrides={"CLOUDPANEL_API_URL": standins.gateway.url + "/v2"})

    assert result.returncode == 1
    assert [row(standins, i)["status_hosting"] for i in ids] == ["pending", "pending"]
    # the listing's 404 says only that this gateway has none; the add's says the address is wrong
    assert [(r["method"], r["path"]) for r in standins.gateway.requests_log] == [
        ("GET", "/v2/lists/api/sites"), ("POST", "/v2/api/site/add/static")]
    assert "/v2/api/site/add/static is not a gateway route here (HTTP 404: Endpoint not found): set " \
           "CLOUDPANEL_API_URL to the gateway's base URL" in result.log


@pytest.mark.parametrize("status", [301, 302])
def test_gateway_url_that_redirects_stops_the_run_at_the_first_answer_and_sends_nothing_to_the_other_host(
        gateway_standins, status):
    standins = gateway_standins
    ids = add_pending(standins, "a.example.test", "b.example.test", "c.example.test")
    elsewhere = standins.matomo  # any other server: it must hear nothing, and no key
    standins.gateway.fault = lambda request: Fault.status(status, "", {"Location": elsewhere.url + request["path"]})
    elsewhere.clear_log()

    result = run_job(standins)

    assert result.returncode == 1
    assert [row(standins, i)["status_hosting"] for i in ids] == ["pending"] * 3
    assert len(standins.gateway.requests_log) == 1
    assert [r for r in elsewhere.requests_log if "x-api-key" in r["headers"] or r["path"].startswith("/lists")] == []
    assert (f"HTTP {status}, a redirect to {elsewhere.url}/lists/api/sites: set CLOUDPANEL_API_URL to the address it "
            "points to") in result.log
    assert "Run aborted: " in result.log
