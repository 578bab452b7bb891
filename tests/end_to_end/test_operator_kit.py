"""--check and the monitoring ping, as an operator meets them: the real command against stand-ins."""

import json
import os

from hosting_automator.core.config import machine_identity
from tests.support.harness import run_job
from tests.support.sockets import closed_port
from tests.standins.faults import Fault


def check_lines(result):
    return {line.split(":", 1)[0]: line for line in result.stdout.splitlines() if line[:4] in ("PASS", "FAIL")}


def test_check_against_working_services_passes_every_line(standins):
    result = run_job(standins, "--check")
    lines = check_lines(result)
    assert set(lines) == {"PASS  settings", "PASS  Supabase", "PASS  servers", "PASS  Matomo backfill",
                          "PASS  Matomo", "PASS  HTTPS", "PASS  log file", "PASS  run time", "PASS  lock file",
                          "PASS  CloudPanel" if os.geteuid() == 0 else "FAIL  CloudPanel"}
    assert "table sites has every column" in lines["PASS  Supabase"]
    assert "Matomo 5.0.2" in lines["PASS  Matomo"] and "super user" in lines["PASS  Matomo"]
    assert result.returncode == (0 if os.geteuid() == 0 else 1)
    assert result.stdout.splitlines()[-1] == ("10 passed, 0 failed" if os.geteuid() == 0 else "9 passed, 1 failed")
    assert lines["PASS  run time"] == ("PASS  run time: a run starts no site after MAX_RUN_MINUTES (60) and ends "
                                       "within 86 minutes: give systemd's RuntimeMaxSec and cron's timeout at least "
                                       "that")
    # read-only: nothing was written anywhere; the one update can match no row
    assert [(r["method"], r["query"]) for r in standins.postgrest.requests_log if r["method"] != "GET"] == [
        ("PATCH", {"id": ["is.null"]})]
    assert standins.matomo.sites == {}


def test_check_json_is_one_document_with_every_line(standins):
    result = run_job(standins, "--check", "--json")

    document = json.loads(result.stdout)
    lines = {check["name"]: check for check in document["checks"]}
    assert lines["Supabase"]["passed"] and "may update rows" in lines["Supabase"]["detail"]
    assert document["failed"] == sum(not check["passed"] for check in document["checks"])
    assert document["exit_code"] == result.returncode == (1 if document["failed"] else 0)


def test_check_says_when_the_key_may_read_but_not_update(standins):
    standins.postgrest.fault = lambda request: (Fault.status(403, {"code": "42501", "details": None, "hint": None,
                                                                    "message": "permission denied for table sites"})
                                                if request["method"] == "PATCH" else None)
    result = run_job(standins, "--check")

    assert result.returncode == 1
    assert "42501: permission denied for table sites); set SUPABASE_SERVICE_KEY" in check_lines(result)["FAIL  Supabase"]


def test_check_creates_neither_the_log_file_nor_the_lock_file(standins, tmp_path):
    log_file, lock_file = tmp_path / "job" / "run.log", tmp_path / "job" / "run.lock"
    log_file.parent.mkdir()
    result = run_job(standins, "--check", overrides={"LOG_FILE": log_file, "LOCK_FILE": lock_file})
    lines = check_lines(result)
    assert lines["PASS  log file"] == (f"PASS  log file: {log_file} would be created (its directory "
                                       f"{log_file.parent} is writable)")
    assert lines["PASS  lock file"] == (f"PASS  lock file: {lock_file} would be created (its directory "
                                        f"{lock_file.parent} is writable)")
    assert list(log_file.parent.iterdir()) == []
    assert "PASS  settings" in lines and "Traceback" not in result.stderr


def test_check_names_the_fix_for_each_broken_service(standins):
    standins.postgrest.columns.remove("matomo_id")
    standins.matomo.superuser = False
    port = closed_port()
    result = run_job(standins, "--check", overrides={"LOCK_FILE": "/nonexistent-dir/run.lock",
                                                      "CLOUDPANEL_HTTPS_ADDRESS": f"127.0.0.1:{port}"})
    lines = check_lines(result)
    assert result.returncode == 1
    assert "apply the files of supabase/migrations/, in order" in lines["FAIL  Supabase"]
    assert "not a super user" in lines["FAIL  Matomo"] and "MATOMO_API_TOKEN" in lines["FAIL  Matomo"]
    assert lines["FAIL  HTTPS"].startswith(f"FAIL  HTTPS: CLOUDPANEL_HTTPS_ADDRESS 127.0.0.1:{port} cannot be reached (")
    assert lines["FAIL  lock file"] == ("FAIL  lock file: LOCK_FILE /nonexistent-dir/run.lock cannot be created "
                                        "(its directory /nonexistent-dir does not exist)")


def test_check_wrong_key_and_token_name_the_settings(standins):
    result = run_job(standins, "--check", overrides={"SUPABASE_SERVICE_KEY": "wrong-supabase-key",
                                                      "MATOMO_API_TOKEN": "wrong-matomo-token"})
    lines = check_lines(result)
    assert "Supabase refused the key (HTTP 401: Invalid API key); set SUPABASE_SERVICE_KEY" in lines["FAIL  Supabase"]
    assert "Unable to authenticate" in lines["FAIL  Matomo"] and "(check MATOMO_API_TOKEN)" in lines["FAIL  Matomo"]
    assert "wrong-supabase-key" not in result.stdout + result.stderr + result.log


def test_check_never_prints_a_key_a_service_echoes(standins):
    token = standins.matomo.token
    standins.matomo.fault = lambda request: Fault.status(200, {"result": "error", "message": f"token {token} expired"})
    result = run_job(standins, "--check", overrides={"MATOMO_API_TOKEN": token})
    assert check_lines(result)["FAIL  Matomo"] == "FAIL  Matomo: UsersManager.hasSuperUserAccess: token *** expired"
    assert token not in result.stdout + result.stderr + result.log


def test_check_gateway_reachable_and_key_refused(gateway_standins):
    result = run_job(gateway_standins, "--check")
    assert "gateway " + gateway_standins.gateway.url + " reachable, key accepted" in check_lines(result)["PASS  CloudPanel"]
    result = run_job(gateway_standins, "--check", overrides={"CLOUDPANEL_API_TOKEN": "not-the-key"})
    assert "refused CLOUDPANEL_API_TOKEN (HTTP 401)" in check_lines(result)["FAIL  CloudPanel"]


def test_check_clpctl_missing_says_where_it_looked(standins):
    result = run_job(standins, "--check", overrides={"CLOUDPANEL_CLPCTL": "/nowhere/clpctl"})
    assert check_lines(result)["FAIL  CloudPanel"] == (
        "FAIL  CloudPanel: clpctl not found (/nowhere/clpctl): is this a CloudPanel server? "
        "Set CLOUDPANEL_CLPCTL to its path")


def expect_pings(httpserver, *paths):
    """The monitor (httpserver) answers OK to a POST to each of `paths`; the HEALTHCHECK_URL those pings are of."""
    for path in paths:
        httpserver.expect_request(path, method="POST").respond_with_data("OK")
    return httpserver.url_for("/ping/abc")


def run_pinged(standins, httpserver, domain, end):
    """A run over one pending row `domain`, monitored; the monitor expects /start, then `end`."""
    standins.postgrest.insert({"domain": domain, "status_dns": "active", "status_hosting": "pending"})
    return run_job(standins, overrides={"HEALTHCHECK_URL": expect_pings(httpserver, "/ping/abc/start", end)})


def test_healthcheck_pinged_at_start_and_on_success_with_the_summary(standins, httpserver):
    result = run_pinged(standins, httpserver, "ping.example.test", "/ping/abc")
    assert result.returncode == 0
    paths = [request.path for request, _ in httpserver.log]
    assert paths == ["/ping/abc/start", "/ping/abc"]
    body = httpserver.log[1][0].get_data(as_text=True)
    assert body.startswith("Run finished: 1 active (0 without Matomo), 0 failed\n\n")
    assert "[ping.example.test] Site is live" in body


def test_healthcheck_fail_ping_on_failure_and_a_dead_monitor_only_warns(standins, httpserver):
    result = run_pinged(standins, httpserver, "bad..example.test", "/ping/abc/fail")
    assert result.returncode == 1
    assert [request.path for request, _ in httpserver.log] == ["/ping/abc/start", "/ping/abc/fail"]
    assert "invalid domain" in httpserver.log[1][0].get_data(as_text=True)

    standins.postgrest.insert({"domain": "fine.example.test", "status_dns": "active", "status_hosting": "pending"})
    result = run_job(standins, overrides={"HEALTHCHECK_URL": f"http://127.0.0.1:{closed_port()}/ping/dead"})
    assert result.returncode == 0
    assert "WARNING Monitoring ping (start) failed" in result.log
    assert "WARNING Monitoring ping (success) failed" in result.log


def test_healthcheck_fail_ping_when_the_run_stops_on_a_bug(standins, httpserver, monkeypatch, capsys):
    """A bug after /start must still end the check with /fail, or it waits out its grace period."""
    from hosting_automator import main as command
    from hosting_automator.run import Run

    def bug(self):
        raise ZeroDivisionError("a bug in the run")

    url = expect_pings(httpserver, "/ping/abc/start", "/ping/abc/fail")
    for name, value in standins.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HEALTHCHECK_URL", url)
    monkeypatch.chdir(standins.dir)
    monkeypatch.setattr(Run, "run", bug)

    assert command.main([]) == 1

    assert [request.path for request, _ in httpserver.log] == ["/ping/abc/start", "/ping/abc/fail"]
    assert httpserver.log[1][0].get_data(as_text=True).startswith(
        "Run stopped on an unexpected error: ZeroDivisionError: a bug in the run\n\n")
    assert "ERROR The run stopped on an unexpected error" in capsys.readouterr().err


def test_ca_bundle_that_cannot_be_loaded_stops_the_run_with_exit_2_naming_the_variable(standins):
    before = standins.postgrest.request_count
    result = run_job(standins, "--json", overrides={"SSL_CERT_FILE": "/nonexistent/ca.pem"})
    assert result.returncode == 2
    assert "Run aborted: Supabase: the client cannot be set up ([Errno 2] No such file or directory); check " \
           "SUPABASE_URL, SSL_CERT_FILE or SSL_CERT_DIR" in result.log
    assert '"exit_code": 2' in result.stdout
    assert standins.postgrest.request_count == before
    assert "Traceback" not in result.stderr


def test_check_fails_when_this_machine_does_not_trust_the_certificate_a_live_site_serves(standins, tmp_path):
    """Otherwise every rerun would order a certificate anew for a site that already has one."""
    import trustme

    run_job(standins)  # nothing pending; make one live site whose certificate is served
    standins.postgrest.insert({"domain": "live.example.test", "status_dns": "active", "status_hosting": "pending"})
    assert run_job(standins).returncode == 0
    trusted = check_lines(run_job(standins, "--check"))
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))

    distrusted = check_lines(run_job(standins, "--check", overrides={"SSL_CERT_FILE": str(other_ca)}))

    assert "for live.example.test: a valid certificate is served already" in trusted["PASS  HTTPS"]
    assert distrusted["FAIL  HTTPS"].startswith(
        f"FAIL  HTTPS: {standins.env['CLOUDPANEL_HTTPS_ADDRESS']} serves live.example.test a certificate this machine "
        "does not trust: the certificate served does not verify (")
    assert "set SSL_CERT_FILE to a CA bundle that verifies it" in distrusted["FAIL  HTTPS"]


def test_check_names_this_server_and_counts_the_pending_rows_by_who_builds_them(standins):
    for domain, server in (("mine.example.test", "web-1"), ("free.example.test", None),
                           ("free2.example.test", None), ("theirs.example.test", "web-2")):
        standins.postgrest.insert({"domain": domain, "status_dns": "active", "status_hosting": "pending",
                                   "hosting_server": server})

    result = run_job(standins, "--check", overrides={"SERVER_NAME": "web-1", "SERVER_ADDRESSES": "198.51.100.7"})

    assert check_lines(result)["PASS  servers"] == (
        f"PASS  servers: SERVER_NAME web-1 (machine {machine_identity()}), SERVER_ADDRESSES 198.51.100.7 (a row is "
        "taken only when its domain's DNS "
        "names one); pending rows: 1 assigned here, 2 unassigned, 1 assigned to other servers")
    assert {(r["method"], str(r["query"].get("id"))) for r in standins.postgrest.requests_log
            if r["method"] != "GET"} == {("PATCH", "['is.null']")}  # the one update, which can match no row


def test_check_says_plainly_that_a_live_site_without_its_own_certificate_gets_one(standins):
    """The demo's live row has no certificate of its own: a PASS must not read as a failure."""
    standins.postgrest.insert({"domain": "live.example.test", "status_dns": "active", "status_hosting": "active",
                               "doc_root": "/home/x/htdocs/live.example.test", "matomo_id": 1})
    result = run_job(standins, "--check")

    assert check_lines(result)["PASS  HTTPS"].startswith(
        f"PASS  HTTPS: {standins.tls.address} accepts connections; live.example.test has no valid certificate of its "
        "own yet, so a run orders one (the certificate served does not verify (Hostname mismatch")
