"""The real command against stand-ins of all three services: rows, exit codes, logs, and no secret anywhere."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hosting_automator.services.cloudpanel_client import site_user_for
from tests.support.harness import add_pending, job_environment, read_log, run_job, start_job
from tests.standins.clpctl_state import certificate_requests, read_sites, write_control
from tests.standins.faults import Fault

ACME_FAILURE = ("certfail.example.test: Domain could not be validated, error message: error type: "
                "urn:ietf:params:acme:error:connection, error detail: 203.0.113.9: Connection refused")


def matomo_error_for(domain, message):
    """A Matomo that answers {"result": "error"} with HTTP 200 to every call about `domain`."""
    def hook(request):
        if domain in request["body"]:
            return Fault.status(200, {"result": "error", "message": message})
        return None
    return hook


@pytest.fixture
def five_sites(standins):
    ids = add_pending(standins, {"domain": "ok.example.test"}, {"domain": "cpfail.example.test"},
                   {"domain": "certfail.example.test"}, {"domain": "matomofail.example.test"},
                   {"domain": "bad domain.example.test"})
    ineligible = add_pending(standins, {"domain": "dns.example.test", "status_dns": "pending"},
                          {"domain": "done.example.test", "status_hosting": "active", "doc_root": "/x", "matomo_id": 3},
                          {"domain": "old.example.test", "status_hosting": "failed", "error_message": "SSL: old"})
    write_control(standins.control_path, {
        "cpfail.example.test": {"site:add:static": "fail:domainName: This value is not valid."},
        "certfail.example.test": {"lets-encrypt:install:certificate": "fail:" + ACME_FAILURE},
    })
    standins.matomo.fault = matomo_error_for("matomofail", "An unexpected website was found in the request: &quot;x&quot;")
    return dict(zip(("ok", "cpfail", "certfail", "matomofail", "malformed"), ids)), ineligible


def outcome_columns(row):
    return {key: row[key] for key in ("status_hosting", "doc_root", "matomo_id", "error_message")}


def test_run_over_five_sites_leaves_each_row_as_section_3_says(standins, five_sites):
    ids, ineligible = five_sites
    before = {row_id: standins.postgrest.get(row_id) for row_id in ineligible}

    result = run_job(standins)

    assert result.returncode == 1
    rows = {name: outcome_columns(standins.postgrest.get(row_id)) for name, row_id in ids.items()}
    ok_root = f"/home/{site_user_for('ok.example.test')}/htdocs/ok.example.test"
    assert rows["ok"] == {"status_hosting": "active", "doc_root": ok_root, "matomo_id": 1, "error_message": None}
    assert rows["cpfail"] == {"status_hosting": "failed", "doc_root": None, "matomo_id": None, "error_message":
                              "CloudPanel: clpctl site:add:static failed: domainName: This value is not valid."}
    assert rows["certfail"] == {
        "status_hosting": "failed",
        "doc_root": f"/home/{site_user_for('certfail.example.test')}/htdocs/certfail.example.test",
        "matomo_id": None,
        "error_message": "SSL: clpctl lets-encrypt:install:certificate failed: " + ACME_FAILURE}
    assert rows["matomofail"] == {
        "status_hosting": "active",
        "doc_root": f"/home/{site_user_for('matomofail.example.test')}/htdocs/matomofail.example.test",
        "matomo_id": None, "error_message": None}
    assert rows["malformed"] == {"status_hosting": "failed", "doc_root": None, "matomo_id": None,
                                 "error_message": "invalid domain: domain contains whitespace: 'bad domain.example.test'"}
    assert {row_id: standins.postgrest.get(row_id) for row_id in ineligible} == before
    assert sorted(site["domain_name"] for site in read_sites(standins.db_path)) == [
        "certfail.example.test", "matomofail.example.test", "ok.example.test"]

    log = result.log
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d INFO \[ok\.example\.test\] Site is live: " + re.escape(ok_root)
                     + r", Matomo idSite 1$", log, re.M)
    assert "ERROR [cpfail.example.test] CloudPanel: clpctl site:add:static failed" in log
    assert "CRITICAL [certfail.example.test] SSL: clpctl lets-encrypt:install:certificate failed" in log
    assert ('WARNING [matomofail.example.test] Matomo: SitesManager.getSitesIdFromSiteUrl: An unexpected website '
            'was found in the request: "x"; the site goes live without tracking') in log
    assert f"ERROR Site {ids['malformed']}: invalid domain: domain contains whitespace: 'bad domain.example.test'" in log
    assert log.rstrip().splitlines()[-1].endswith("ERROR Run finished: 2 active (1 without Matomo), 3 failed")
    assert "Traceback" not in log + result.stderr
    # the same outcome in the table on stdout
    table = result.stdout.splitlines()
    assert table[0].split() == ["domain", "outcome", "doc_root", "matomo_id", "error", "or", "note"]
    assert [line.split()[:2] for line in table[1:]] == [
        ["ok.example.test", "active"], ["cpfail.example.test", "failed"], ["certfail.example.test", "failed"],
        ["matomofail.example.test", "active"], ["bad", "domain.example.test"]]


def test_rerun_of_a_site_put_back_to_pending_converges_without_duplicates(standins, five_sites):
    ids, _ = five_sites
    run_job(standins)
    first = outcome_columns(standins.postgrest.get(ids["ok"]))
    standins.postgrest.update_row(ids["ok"], status_hosting="pending", doc_root=None, matomo_id=None)

    result = run_job(standins)

    assert result.returncode == 0  # the failed sites are not taken again without --retry-failed
    assert outcome_columns(standins.postgrest.get(ids["ok"])) == first
    assert [s["domain_name"] for s in read_sites(standins.db_path)].count("ok.example.test") == 1
    assert [site["name"] for site in standins.matomo.sites.values()].count("ok.example.test") == 1
    assert len(certificate_requests(standins.db_path, "ok.example.test")) == 1
    assert "[ok.example.test] CloudPanel site exists already" in result.log
    assert "[ok.example.test] SSL: a valid certificate is served already (90 days left); not requesting another" in result.log
    assert "[ok.example.test] Matomo site exists already (idSite 1)" in result.log


def test_retry_failed_takes_failed_sites_again(standins, five_sites):
    ids, ineligible = five_sites
    run_job(standins)
    write_control(standins.control_path, {})
    standins.matomo.fault = None

    result = run_job(standins, "--retry-failed")

    assert result.returncode == 1  # the malformed domain fails again
    assert standins.postgrest.get(ids["cpfail"])["status_hosting"] == "active"
    assert standins.postgrest.get(ids["certfail"])["status_hosting"] == "active"
    assert standins.postgrest.get(ineligible[2])["status_hosting"] == "active"  # failed before this test began
    assert standins.postgrest.get(ids["malformed"])["status_hosting"] == "failed"
    # the site that went live without Matomo gets its Matomo site once Matomo is back, and only one
    matomo_sites = [site_id for site_id, site in standins.matomo.sites.items() if site["name"] == "matomofail.example.test"]
    assert standins.postgrest.get(ids["matomofail"])["matomo_id"] == matomo_sites[0] and len(matomo_sites) == 1
    assert "[matomofail.example.test] Matomo site " in result.log and "added to the live site" in result.log


def test_gateway_transport_runs_the_same_steps(gateway_standins):
    ids = add_pending(gateway_standins, {"domain": "gw.example.test"}, {"domain": "www.gw2.example.test"})
    result = run_job(gateway_standins)
    assert result.returncode == 0, result.log
    row = gateway_standins.postgrest.get(ids[1])
    assert row["status_hosting"] == "active"
    assert row["doc_root"] == f"/home/{site_user_for('www.gw2.example.test')}/htdocs/www.gw2.example.test"
    added = [r for r in gateway_standins.gateway.requests_log if r["path"] == "/api/site/add/static"]
    assert [json.loads(r["body"])["domainName"] for r in added] == ["gw.example.test", "www.gw2.example.test"]
    assert {r["headers"]["x-api-key"] for r in added} == {gateway_standins.gateway.api_key}
    assert gateway_standins.matomo.sites[2]["urls"] == ["https://www.gw2.example.test", "https://gw2.example.test"]


def test_no_secret_reaches_the_log_the_console_a_row_or_a_url(gateway_standins):
    standins = gateway_standins
    secrets = {"SUPABASE_SERVICE_KEY": "sb_secret_E2E-supa-7f3a91", "MATOMO_API_TOKEN": "matomo-E2E-token-91bc44",
               "CLOUDPANEL_API_TOKEN": "gateway-E2E-token-5d2e08"}
    standins.postgrest.service_key = secrets["SUPABASE_SERVICE_KEY"]
    standins.matomo.token = secrets["MATOMO_API_TOKEN"]
    standins.gateway.api_key = secrets["CLOUDPANEL_API_TOKEN"]
    add_pending(standins, {"domain": "one.example.test"}, {"domain": "echo.example.test"},
             {"domain": "tokenecho.example.test"})

    def gateway_echoes_the_password(request):
        if "echo.example.test" in request["body"] and "tokenecho" not in request["body"]:
            password = json.loads(request["body"])["siteUserPassword"]
            return Fault.status(500, {"success": False, "error": "Failed to add static site",
                                      "details": f"siteUserPassword: {password} is not accepted."})
        return None

    standins.gateway.fault = gateway_echoes_the_password
    standins.matomo.fault = matomo_error_for(
        "tokenecho", f"Unable to authenticate with the provided token {secrets['MATOMO_API_TOKEN']}.")

    result = run_job(standins, "--json", overrides=secrets)

    passwords = [json.loads(r["body"])["siteUserPassword"] for r in standins.gateway.requests_log
                 if r["path"] == "/api/site/add/static"]
    assert len(passwords) == 3 and all(len(p) >= 24 for p in passwords)
    rows = json.dumps(standins.postgrest.rows())
    urls = [r["path"] + json.dumps(r["query"]) for s in standins.servers if hasattr(s, "requests_log")
            for r in s.requests_log]
    for secret in [*secrets.values(), *passwords]:
        assert secret not in result.log
        assert secret not in result.stdout and secret not in result.stderr
        assert secret not in rows
        assert not any(secret in url for url in urls)
    echo = [row for row in standins.postgrest.rows() if row["domain"] == "echo.example.test"][0]
    assert echo["error_message"] == ("CloudPanel: gateway: add the static site: HTTP 500: "
                                     "siteUserPassword: *** is not accepted.")
    assert "Unable to authenticate with the provided token ***. (check MATOMO_API_TOKEN)" in result.log


def test_json_option_writes_the_outcome_for_other_tools(standins, five_sites):
    result = run_job(standins, "--json")
    document = json.loads(result.stdout)
    assert document["exit_code"] == 1 == result.returncode
    assert document["summary"] == "Run finished: 2 active (1 without Matomo), 3 failed"
    assert [(s["domain"], s["outcome"], s["matomo_id"]) for s in document["sites"]] == [
        ("ok.example.test", "active", 1), ("cpfail.example.test", "failed", None),
        ("certfail.example.test", "failed", None), ("matomofail.example.test", "active", None),
        ("bad domain.example.test", "failed", None)]
    assert document["sites"][3]["warning"].startswith("Matomo: SitesManager.getSitesIdFromSiteUrl: An unexpected")


def test_quiet_prints_nothing_when_all_is_well_and_only_failures_otherwise(standins):
    add_pending(standins, {"domain": "quiet.example.test"})
    result = run_job(standins, "-q")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert "Site is live" in result.log  # the file keeps INFO

    add_pending(standins, {"domain": "loud.example.test"}, {"domain": "bad..example.test"})
    result = run_job(standins, "-q")
    assert result.returncode == 1
    assert [line.split()[:2] for line in result.stdout.splitlines()] == [["domain", "outcome"],
                                                                        ["bad..example.test", "failed"]]
    assert "ERROR Run finished: 1 active (0 without Matomo), 1 failed" in result.stderr
    assert "loud.example.test" not in result.stdout + result.stderr


def test_dry_run_reports_the_plan_and_writes_nothing_anywhere(standins):
    ids = add_pending(standins, {"domain": "new.example.test"}, {"domain": "Old.Example.Test."})
    run_job(standins, "--domain", "old.example.test")  # old is set up for real first
    standins.postgrest.update_row(ids[1], status_hosting="pending")
    for server in (standins.postgrest, standins.matomo):
        server.clear_log()
    sites_before, matomo_before = read_sites(standins.db_path), dict(standins.matomo.sites)

    result = run_job(standins, "--dry-run")

    assert result.returncode == 0
    # reads only: the pending rows, each one's look for other rows of its site, the live sites without Matomo
    assert [r["method"] for r in standins.postgrest.requests_log] == ["GET"] * 4
    assert all("addSite" not in r["query"].get("method", [""])[0] for r in standins.matomo.requests_log)
    assert read_sites(standins.db_path) == sites_before and standins.matomo.sites == matomo_before
    assert len(certificate_requests(standins.db_path)) == 1
    assert standins.postgrest.get(ids[0])["status_hosting"] == "pending"
    new_user = site_user_for("new.example.test")
    assert (f"[new.example.test] Would set up /home/{new_user}/htdocs/new.example.test: would claim the row; would "
            "create CloudPanel "
            f"site user {new_user}; would request a certificate; would create a Matomo site (dry run: nothing changed)"
            ) in result.log
    assert ("[old.example.test] Would set up /home/" + site_user_for("old.example.test") + "/htdocs/old.example.test: "
            "CloudPanel site exists (site user " + site_user_for("old.example.test") + "); certificate served already, "
            "no request; Matomo site 1 exists (dry run: nothing changed)") in result.log
    assert "Run finished: 2 would be processed (dry run: nothing changed)" in result.log
    assert "would set up" in result.stdout


def test_limit_and_max_sites_per_run_cap_the_run(standins):
    ids = add_pending(standins, *({"domain": f"s{n}.example.test"} for n in range(5)))
    run_job(standins, "--limit", "2")
    assert [standins.postgrest.get(i)["status_hosting"] for i in ids] == ["active"] * 2 + ["pending"] * 3
    result = run_job(standins, overrides={"MAX_SITES_PER_RUN": "1"})
    assert [standins.postgrest.get(i)["status_hosting"] for i in ids] == ["active"] * 3 + ["pending"] * 2
    assert "Reached the limit of 1 sites for this run" in result.log


def test_reading_fails_with_a_wrong_key_aborts_with_one_clear_message(standins):
    add_pending(standins, {"domain": "x.example.test"})
    result = run_job(standins, overrides={"SUPABASE_SERVICE_KEY": "wrong-key-0000"})
    assert result.returncode == 1
    assert ("Run aborted: 0 active (0 without Matomo), 0 failed; cannot read the pending sites: read the pending "
            "sites: Supabase refused the key (HTTP 401: Invalid API key); set SUPABASE_SERVICE_KEY") in result.log
    assert "Traceback" not in result.log + result.stderr


def test_missing_column_aborts_the_run_naming_the_migration(standins):
    add_pending(standins, {"domain": "a.example.test"}, {"domain": "b.example.test"})
    standins.postgrest.columns.remove("doc_root")  # written, never read: the first write finds it missing
    result = run_job(standins)
    assert result.returncode == 1
    assert "a column is missing (HTTP 400 PGRST204" in result.log
    assert "apply the files of supabase/migrations/, in order" in result.log
    assert [s["domain_name"] for s in read_sites(standins.db_path)] == ["a.example.test"]  # b was not started


def test_env_file_readable_by_others_is_warned_about(standins):
    env_file = os.path.join(standins.dir, "prod.env")
    with open(env_file, "w") as handle:
        handle.write("".join(f"{key}={value}\n" for key, value in standins.env.items()))
    os.chmod(env_file, 0o644)
    overrides = {key: None for key in standins.env}
    result = run_job(standins, "--env-file", env_file, overrides=overrides)
    assert f"WARNING {env_file} holds secrets and other users can read it: chmod 600 {env_file}" in result.log
    os.chmod(env_file, 0o600)
    result = run_job(standins, "--env-file", env_file, overrides=overrides)
    assert "other users can read it" not in result.log.split("Run finished")[-1]


def test_verbose_shows_each_command_and_request_on_the_console_but_not_in_the_file(standins):
    add_pending(standins, {"domain": "verbose.example.test"})
    result = run_job(standins, "-v")
    user = site_user_for("verbose.example.test")
    assert (f"DEBUG [verbose.example.test] Running {standins.clpctl_path} site:add:static "
            f"--domainName=verbose.example.test --siteUser={user} --siteUserPassword=***") in result.stderr
    assert "DEBUG [verbose.example.test] POST " + standins.matomo.url in result.stderr
    assert "DEBUG read the pending sites: a page of 1 after id None" in result.stderr
    assert " DEBUG " not in result.log  # the file keeps INFO and up


def test_a_log_file_that_cannot_be_written_is_one_message_and_the_run_still_does_its_work(standins):
    ids = add_pending(standins, {"domain": "full.example.test"}, {"domain": "bad..example.test"})
    # not run_job: it reads the log file afterwards, and /dev/full reads as endless zeros
    process = start_job(standins, overrides={"LOG_FILE": "/dev/full"})
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 1  # the run's own outcome: one site failed
    assert stderr.count("hosting-automator: LOG_FILE /dev/full cannot be written (No space left on device); "
                        "log lines go to the console only from now on\n") == 1
    assert "Logging error" not in stderr and "Traceback" not in stderr
    assert "ERROR Run finished: 1 active (0 without Matomo), 1 failed" in stderr
    assert [standins.postgrest.get(i)["status_hosting"] for i in ids] == ["active", "failed"]


@pytest.mark.parametrize("transport", ["clpctl", "gateway"])
def test_duplicate_rows_with_many_workers_create_one_site_one_certificate_one_matomo_site(tmp_path, transport):
    from tests.standins import start_all

    standins = start_all(tmp_path / "standins", gateway=transport == "gateway")
    try:
        ids = [standins.postgrest.insert({"domain": name, "status_dns": "active", "status_hosting": "pending"})["id"]
               for name in ("shop.example.test", "Shop.example.test", "shop.example.test.")]

        result = run_job(standins, "--workers", "3", overrides={"CLOUDPANEL_CONCURRENCY": "4"})

        assert result.returncode == 1  # the duplicates fail, naming the row that owns the site
        assert [site["domain_name"] for site in read_sites(standins.db_path)] == ["shop.example.test"]
        assert len(certificate_requests(standins.db_path, "shop.example.test")) == 1
        assert [site["name"] for site in standins.matomo.sites.values()] == ["shop.example.test"]
        rows = [standins.postgrest.get(row_id) for row_id in ids]
        assert rows[0]["status_hosting"] == "active"
        for duplicate in rows[1:]:
            assert (duplicate["status_hosting"], duplicate["error_message"]) == (
                "failed", f"duplicate: row {ids[0]} is the same site (shop.example.test) and is set up instead of "
                          "this one")
    finally:
        standins.stop()


# --- what the operator's terminal and pipes meet ------------------------------------------------------------------

def test_a_stdout_that_cannot_be_written_after_a_good_run_changes_nothing_but_a_line_in_the_log(standins):
    """A closed pipe (`… | head -0`): no traceback, the run's own exit code, the log says why nothing was shown."""
    add_pending(standins, "piped.example.test")
    process = start_job(standins, "--json")
    process.stdout.close()  # the reader went away before the job wrote its report
    _, stderr = process.communicate(timeout=120)

    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr
    assert "ERROR The report could not be written to stdout (Broken pipe)" in read_log(standins)
    assert standins.postgrest.rows()[-1]["status_hosting"] == "active"


def test_under_quiet_an_env_file_others_can_read_is_still_said_on_stderr(standins):
    env_file = Path(standins.dir) / "open.env"
    env_file.write_text("".join(f"{name}={value}\n" for name, value in standins.env.items()))
    env_file.chmod(0o644)

    result = run_job(standins, "-q", "--env-file", str(env_file))

    assert result.returncode == 0
    assert result.stdout == ""
    assert f"hosting-automator: {env_file} holds secrets and other users can read it: chmod 600 {env_file}" in (
        result.stderr)


@pytest.mark.parametrize("arguments", [(), ("--check",)], ids=["run", "check"])
def test_a_closed_or_full_stdout_costs_a_log_line_not_a_traceback(standins, arguments):
    add_pending(standins, "closed.example.test")
    environ = job_environment(standins)
    for stdout in ("closed", "/dev/full"):
        with open(os.devnull if stdout == "closed" else stdout, "w") as target:
            process = subprocess.run(
                [sys.executable, "-m", "hosting_automator.main", *arguments], cwd=standins.dir, env=environ,
                stdout=target if stdout != "closed" else None, stderr=subprocess.PIPE, text=True, timeout=120,
                **({"preexec_fn": lambda: os.close(1)} if stdout == "closed" else {}))
        assert "Traceback" not in process.stderr, process.stderr
        assert "The report could not be written to stdout" in process.stderr
        assert process.returncode in (0, 1)  # the run's own (--check's CloudPanel line fails when not root)


def test_a_run_with_nothing_to_do_says_so(standins):
    plain = run_job(standins)
    named = run_job(standins, "--domain", "nowhere.example.test")

    assert (plain.returncode, named.returncode) == (0, 0)
    assert "INFO Run finished: no pending sites" in plain.log
    assert "INFO Run finished: no pending row for nowhere.example.test" in named.log
