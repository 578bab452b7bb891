"""--dry-run attacked: every kind of row, both CloudPanel transports, hostile services, DNS deciding, a real run at
the same time. A dry run goes through the steps of a real run and must change nothing anywhere, and what it says
it would do must be what the real run then does."""

import copy
import json
import os

import pytest

from hosting_automator.core.config import machine_identity
from hosting_automator.services.cloudpanel_client import site_user_for
from tests.standins.clpctl_state import add_certificate_request, add_site, calls, certificate_requests, read_sites
from tests.standins.dns import DnsFault, FakeDns
from tests.standins.faults import Fault, once, times
from tests.support.harness import (add_pending, matomo_sites_by_name, no_traceback, run_job, standins_of, start_job,
                                   wait_for)

HERE, ELSEWHERE = "198.51.100.7", "203.0.113.9"


# -- helpers -----------------------------------------------------------------------------------------------------

def everything(standins):
    """What a dry run must leave as it found it: every column of every row, CloudPanel's sites, certificate
    requests and clpctl calls, Matomo's sites."""
    return {"rows": copy.deepcopy(standins.postgrest.rows()), "sites": read_sites(standins.db_path),
            "certificates": certificate_requests(standins.db_path), "clpctl calls": calls(standins.db_path),
            "matomo": copy.deepcopy(dict(standins.matomo.sites))}


def clear_logs(standins):
    for server in standins.servers:
        if hasattr(server, "clear_log"):
            server.clear_log()


def assert_nothing_changed(standins, before):
    assert everything(standins) == before
    assert {r["method"] for r in standins.postgrest.requests_log} <= {"GET"}  # no claim, note or outcome written
    assert [r for r in standins.matomo.requests_log
            if r["query"].get("method", [""])[0] == "SitesManager.addSite"] == []
    if standins.gateway is not None:
        # a dry run reads the gateway's site listing, as a run does, and sends it nothing that changes anything
        assert [(r["method"], r["path"]) for r in standins.gateway.requests_log
                if (r["method"], r["path"]) != ("GET", "/lists/api/sites")] == []


def json_document(result):
    return json.loads(result.stdout)


def plans(document):
    """domain -> the plans of its rows (a dry run's `warning`), in the order the rows were read."""
    found = {}
    for site in document["sites"]:
        found.setdefault(site["domain"], []).append(site["warning"] or "")
    return found


def build_for_real(standins, domain):
    """A site set up by a real run, then its row set back to pending (as an operator re-running it would)."""
    row_id = add_pending(standins, domain)[0]
    assert run_job(standins, "--domain", domain).returncode == 0
    standins.postgrest.update_row(row_id, status_hosting="pending")
    return row_id


# -- 1. every kind of row, both transports: nothing changes anywhere ---------------------------------------------

@pytest.mark.parametrize("transport, options", [("clpctl", ("--workers", "8", "--json")),
                                                ("gateway", ("--workers", "8", "--json")),
                                                ("clpctl", ("--limit", "3", "--json")), ("gateway", ("-q", "--json"))],
                         ids=["clpctl-workers-8", "gateway-workers-8", "clpctl-limit-3", "gateway-quiet"])
def test_dry_run_changes_nothing_for_every_kind_of_row(request, transport, options, httpserver):
    standins = standins_of(request, transport)
    built = "built.example.test"
    add_site(standins.db_path, built, site_user_for(built))
    add_certificate_request(standins.db_path, built)
    standins.matomo.add_site(built, [f"https://{built}"])
    add_pending(standins, "fresh.example.test", built, "Shop.Example.Test.", "shop.example.test", "twin.example.test",
                "www.twin.example.test", "bad domain", {"domain": None}, "https://url.example.test/x",
                {"domain": "retry.example.test", "status_hosting": "failed", "error_message": "SSL: earlier",
                 "doc_root": "/home/r/htdocs/retry.example.test"},
                {"domain": "theirs.example.test", "hosting_server": "web-9"},
                {"domain": "mine.example.test", "hosting_server": "web-1"})
    for domain in ("live.example.test", "live2.example.test"):
        standins.postgrest.insert({"domain": domain, "status_dns": "active", "status_hosting": "active",
                                   "doc_root": f"/home/u/htdocs/{domain}"})
    clear_logs(standins)
    before = everything(standins)

    result = run_job(standins, "--dry-run", "--retry-failed", *options,
                     overrides={"SERVER_NAME": "web-1", "MATOMO_BACKFILL_PER_RUN": "1",
                                "HEALTHCHECK_URL": httpserver.url_for("/ping/abc")})

    assert_nothing_changed(standins, before)
    assert httpserver.log == []  # the monitor is not pinged
    assert "Would ping start (dry run: nothing changed)" in result.log
    assert not os.path.exists(standins.env["LOCK_FILE"])  # a dry run takes no lock, and creates no lock file
    no_traceback(result)
    document = json_document(result)
    assert document["dry_run"] is True and document["exit_code"] == result.returncode == 0
    outcomes = {site["outcome"] for site in document["sites"]}
    assert outcomes <= {"would set up", "would fail", "would add Matomo"}, document
    assert "theirs.example.test" not in plans(document)  # another server's row is not even read
    if "--limit" in options:
        assert [site["outcome"] for site in document["sites"]] == ["would set up"] * 3 + ["would add Matomo"]
    else:
        assert len(document["sites"]) == 13  # 11 pending or failed rows of web-1 or nobody, 1 of 2 live rows
        assert document["counts"] == {"would add Matomo": 1, "would fail": 4, "would set up": 8}
        assert document["summary"] == ("Run finished: 12 would be processed (4 would fail), 1 live sites would get "
                                       "their Matomo site (dry run: nothing changed)")
    # every change a step would make said so, and nothing was said to have been done
    assert "Claimed for" not in result.log and "Site is live" not in result.log
    assert " created (" not in result.log and "certificate installed" not in result.log


# -- 2. what a dry run says it would do is what the real run then does -----------------------------------------

@pytest.mark.parametrize("setup", ["clpctl", "gateway", "clpctl without CloudPanel's database"])
def test_dry_run_of_a_site_already_built_promises_no_certificate_the_real_run_does_not_order(request, setup):
    """A valid certificate served already: a real run orders none (Let's Encrypt allows five a week per set of
    names); the dry run must not say it would order one, even where CloudPanel cannot say whether the site
    exists: it looks at the served certificate."""
    standins = standins_of(request, "gateway" if setup == "gateway" else "clpctl")
    overrides = ({"CLOUDPANEL_DB_PATH": standins.dir + "/not-cloudpanels.sq3"} if "without" in setup else None)
    build_for_real(standins, "built.example.test")
    requests_before = certificate_requests(standins.db_path)

    dry = run_job(standins, "--dry-run", "--json", overrides=overrides)
    real = run_job(standins, overrides=overrides)

    assert (dry.returncode, real.returncode) == (0, 0)
    assert certificate_requests(standins.db_path) == requests_before  # the real run ordered nothing
    assert "SSL: a valid certificate is served already" in real.log
    plan = plans(json_document(dry))["built.example.test"][0]
    assert "would request a certificate" not in plan, plan
    assert "certificate served already, no request" in plan, plan


@pytest.mark.parametrize("rows", ["pending", "live without Matomo"])
def test_dry_run_promises_as_many_matomo_sites_as_the_real_run_creates_for_a_name_and_its_www_twin(standins, rows):
    """README: one Matomo site serves a name and its www. twin; the second row gets the first one's id."""
    for domain in ("twin.example.test", "www.twin.example.test"):
        if rows == "pending":
            add_pending(standins, domain)
        else:
            standins.postgrest.insert({"domain": domain, "status_dns": "active", "status_hosting": "active",
                                       "doc_root": f"/home/u/htdocs/{domain}"})

    dry = run_job(standins, "--dry-run", "--json")
    promised = sum(plan.count("would create a Matomo site") for each in plans(json_document(dry)).values()
                   for plan in each)
    assert standins.matomo.sites == {}
    real = run_job(standins)

    assert (dry.returncode, real.returncode) == (0, 0)
    created = sum(len(ids) for ids in matomo_sites_by_name(standins).values())
    assert created == 1
    assert promised == created, f"the dry run promised {promised} Matomo sites, the real run created {created}"


# -- 3. DNS decides: no claim, no note ---------------------------------------------------------------------------

def test_dry_run_with_dns_deciding_claims_nothing_notes_nothing_and_says_so(standins):
    with FakeDns({"here.example.test": HERE, "away.example.test": ELSEWHERE, "waits.example.test": ELSEWHERE,
                  "moved.example.test": ELSEWHERE, "flaky.example.test": HERE}) as dns_server:
        dns_server.fault = lambda name, rdtype: DnsFault.servfail() if name == "flaky.example.test" else None
        ids = add_pending(standins, "here.example.test", "away.example.test",
                          {"domain": "waits.example.test", "hosting_server": "web-1"},
                          {"domain": "moved.example.test", "hosting_server": "web-1",
                           "error_message": f"waiting for DNS: moved.example.test resolves to {ELSEWHERE}, not this "
                                            f"server ({HERE})"},
                          "flaky.example.test", {"domain": "other.example.test", "hosting_server": "web-2"})
        clear_logs(standins)
        before = everything(standins)

        result = run_job(standins, "--dry-run", fast_retries=True, overrides={
            "SERVER_NAME": "web-1", "SERVER_ADDRESSES": HERE, "DNS_RESOLVERS": dns_server.resolvers_setting,
            "HTTP_TIMEOUT": "2"})

    assert_nothing_changed(standins, before)
    no_traceback(result)
    assert result.returncode == 1  # DNS unreachable for one row: left pending, as a run would
    # away: unassigned, DNS names another server; waits and moved: this server's, DNS elsewhere; other: web-2's,
    # not even read
    assert ("Run finished: 1 would be processed, 1 left pending (service unreachable), 1 left to other servers, "
            "2 waiting for DNS (dry run: nothing changed)") in result.log, result.log
    note = f"waiting for DNS: waits.example.test resolves to {ELSEWHERE}, not this server ({HERE})"
    assert (f"[waits.example.test] Would note why site {ids[2]} waits: error_message={note} "
            "(dry run: nothing changed)") in result.log
    assert f"Would note why site {ids[3]}" not in result.log  # its note is already the right one
    assert (f"[here.example.test] Would claim site {ids[0]} for web-1: hosting_server=web-1, hosting_machine="
            f"{machine_identity()} (dry run") in result.log
    assert "[away.example.test] DNS points elsewhere" in result.log
    assert "other.example.test" not in result.log


# -- 4. hostile services -----------------------------------------------------------------------------------------

def _matomo_echo(standins):
    return lambda request: Fault.status(200, {"result": "error", "message": "token_auth=" + standins.matomo.token
                                              + " is not valid for " + request["body"]})


def _supabase_echo_500(standins):
    return lambda request: Fault.status(500, {"code": "XX000", "message": "bad key " + standins.postgrest.service_key})


FAULTS = {
    # name: (which stand-in, the hook (standins -> hook), exit code, text the log must hold)
    "matomo 429 Retry-After then fine": (
        "matomo", lambda s: once(Fault.status(429, "slow down", {"Retry-After": "2"})), 0,
        "Would set up /home/"),
    "matomo echoes the token and the request": (
        "matomo", _matomo_echo, 0, "the site goes live without tracking"),
    "matomo answers garbage": (
        "matomo", lambda s: lambda r: Fault.status(200, "<html>{{{not json", {"Content-Type": "text/html"}), 0,
        "with a body that is not JSON"),
    "matomo loses every answer": (
        "matomo", lambda s: lambda r: Fault.after_drop(), 0, "the site goes live without tracking"),
    "supabase 500 echoing the key on every request": (
        "postgrest", _supabase_echo_500, 1, "Run aborted: 0 would be processed"),
    "supabase 503 on the look for other rows": (
        "postgrest", lambda s: lambda r: Fault.status(503, "busy", {"Retry-After": "1"})
        if "ilike" in str(r["query"]) else None, 1, "1 left pending (service unreachable)"),
    "supabase loses the first answers": (
        "postgrest", lambda s: times(2, Fault.after_drop()), 0, "Run finished: 1 would be processed"),
    "https endpoint down": (
        "tls", None, 0, "SSL: would request a Let's Encrypt certificate ("),
}


@pytest.mark.parametrize("transport, fault", [("clpctl", fault) for fault in FAULTS]
                         + [("gateway", "matomo echoes the token and the request")],
                         ids=[f"clpctl-{fault}" for fault in FAULTS] + ["gateway-matomo echoes the token and the request"])
def test_dry_run_against_a_hostile_service_changes_nothing_and_leaks_nothing(request, transport, fault):
    standins = standins_of(request, transport)
    where, hook, exit_code, expected = FAULTS[fault]
    # a site CloudPanel holds under its derived user, no certificate served: every step has work to describe
    add_site(standins.db_path, "hostile.example.test", site_user_for("hostile.example.test"))
    add_pending(standins, "hostile.example.test")
    if transport == "gateway":
        standins.gateway.fault = lambda r: Fault.status(500, {"success": False, "error": standins.gateway.api_key})
    clear_logs(standins)
    before = everything(standins)
    if where == "tls":
        standins.tls.stop()
    else:
        getattr(standins, where).fault = hook(standins)

    result = run_job(standins, "--dry-run", fast_retries=True, overrides={"SERVER_NAME": "web-1",
                                                                          "HTTP_TIMEOUT": "2"})

    standins.postgrest.fault = standins.matomo.fault = None
    assert_nothing_changed(standins, before)
    no_traceback(result)
    assert result.returncode == exit_code, result.log
    assert expected in result.log, result.log
    assert result.log.rstrip().endswith("(dry run: nothing changed)"), result.log[-400:]


# -- 5. beside a real run ----------------------------------------------------------------------------------------

def test_dry_runs_beside_a_real_run_change_nothing_and_do_not_disturb_it(standins):
    domains = [f"busy{n}.example.test" for n in range(4)]
    ids = add_pending(standins, *domains)
    real = start_job(standins, overrides={"FAKE_CLPCTL_LATENCY_MS": "400"})
    try:
        wait_for(lambda: read_sites(standins.db_path), 30, "the real run's first site")
        calls_before = len(calls(standins.db_path))
        dry_runs = [run_job(standins, "--dry-run", "--workers", "4", "--json",
                            overrides={"LOG_FILE": f"{standins.dir}/dry{n}.log"}) for n in range(2)]
    finally:
        stdout, stderr = real.communicate(timeout=60)

    assert real.returncode == 0, stderr
    for dry in dry_runs:
        assert dry.returncode == 0
        no_traceback(dry)
        assert "Another run is in progress" not in dry.log
        assert json_document(dry)["dry_run"] is True
    assert "Another run is in progress" not in stderr
    # exactly what a real run alone makes: one site, one certificate and one Matomo site each
    assert sorted(s["domain_name"] for s in read_sites(standins.db_path)) == domains
    assert len(certificate_requests(standins.db_path)) == 4
    assert {name: len(site_ids) for name, site_ids in matomo_sites_by_name(standins).items()} == dict.fromkeys(
        domains, 1)
    assert calls_before <= len(calls(standins.db_path)) == 8  # the dry runs ran no clpctl
    assert [standins.postgrest.get(i)["status_hosting"] for i in ids] == ["active"] * 4
    assert all(standins.postgrest.get(i)["matomo_id"] for i in ids)
