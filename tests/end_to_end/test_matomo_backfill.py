"""A site that went live without analytics gets its Matomo site on a later run: the real command against the
stand-ins, with Matomo down, back, slow, and another server at work on the same table."""

import threading

from tests.support.harness import run_job, start_job
from tests.standins.faults import Fault

DOWN = Fault.status(503, "<html>Matomo is down</html>", {"Content-Type": "text/html"})


def live_without_matomo(standins, *domains, server=None):
    """Rows as a run leaves them when Matomo failed: active, doc_root set, matomo_id null."""
    return [standins.postgrest.insert({"domain": domain, "status_dns": "active", "status_hosting": "active",
                                       "doc_root": f"/home/u/htdocs/{domain}", "hosting_server": server})["id"]
            for domain in domains]


def matomo_sites_named(standins, domain):
    return [site_id for site_id, site in standins.matomo.sites.items() if site["name"] == domain]


def matomo_calls(standins):
    return [request["query"].get("method", [""])[0] for request in standins.matomo.requests_log]


def test_matomo_down_then_back_the_site_gets_exactly_one_matomo_site_and_its_id(standins):
    standins.postgrest.insert({"domain": "late.example.test", "status_dns": "active", "status_hosting": "pending"})
    standins.matomo.fault = lambda request: DOWN

    first = run_job(standins, fast_retries=True)
    row = standins.postgrest.rows()[-1]
    assert (first.returncode, row["status_hosting"], row["matomo_id"]) == (0, "active", None)

    standins.matomo.fault = None
    second = run_job(standins)

    row = standins.postgrest.rows()[-1]
    assert second.returncode == 0
    assert row["matomo_id"] == matomo_sites_named(standins, "late.example.test")[0]
    assert len(matomo_sites_named(standins, "late.example.test")) == 1
    assert (row["status_hosting"], row["doc_root"], row["error_message"]) == (
        "active", first_doc_root(first, "late.example.test"), None)
    assert "Run finished: 0 active (0 without Matomo), 0 failed, Matomo added later: 1" in second.log


def first_doc_root(result, domain):
    line = next(line for line in result.log.splitlines() if f"[{domain}] Site is live: " in line)
    return line.split("Site is live: ")[1].split(",")[0]


def test_matomo_failing_every_run_costs_one_attempt_a_run_and_never_touches_the_row(standins):
    ids = live_without_matomo(standins, *(f"s{n}.example.test" for n in range(5)))
    before = [standins.postgrest.get(row_id) for row_id in ids]
    standins.matomo.fault = lambda request: DOWN

    for _ in range(20):
        result = run_job(standins, fast_retries=True)
        assert result.returncode == 0
        assert result.stderr.count("WARNING Adding missing Matomo sites stopped for this run") == 1  # this run

    lookups = [call for call in matomo_calls(standins) if call == "SitesManager.getSitesIdFromSiteUrl"]
    assert len(lookups) == 20 * 4  # one row a run, its 4 attempts (503 is worth retrying), then the run stops
    assert "SitesManager.addSite" not in matomo_calls(standins)
    # an unassigned row is claimed before Matomo is asked (two servers never both add its site); nothing else moves
    unchanged = ("domain", "status_dns", "status_hosting", "doc_root", "matomo_id", "error_message")
    assert [{key: standins.postgrest.get(row_id)[key] for key in unchanged} for row_id in ids] == [
        {key: row[key] for key in unchanged} for row in before]


def test_nothing_to_backfill_costs_one_query_and_no_matomo_call(standins):
    before = standins.postgrest.request_count

    result = run_job(standins)

    assert result.returncode == 0
    assert standins.postgrest.request_count - before == 2  # the pending rows, the live rows without Matomo
    assert standins.matomo.requests_log == []


def test_backfill_is_capped_per_run_and_off_at_zero(standins):
    ids = live_without_matomo(standins, *(f"c{n}.example.test" for n in range(5)))

    run_job(standins, overrides={"MATOMO_BACKFILL_PER_RUN": "0"})
    assert [standins.postgrest.get(row_id)["matomo_id"] for row_id in ids] == [None] * 5
    run_job(standins, overrides={"MATOMO_BACKFILL_PER_RUN": "2"})
    assert [standins.postgrest.get(row_id)["matomo_id"] is not None for row_id in ids] == [True] * 2 + [False] * 3
    run_job(standins, "--limit", "1")
    assert [standins.postgrest.get(row_id)["matomo_id"] is not None for row_id in ids] == [True] * 3 + [False] * 2


def test_domain_option_applies_to_the_backfill(standins):
    ids = live_without_matomo(standins, "a.example.test", "b.example.test")

    run_job(standins, "--domain", "B.example.test.")

    assert [standins.postgrest.get(row_id)["matomo_id"] is not None for row_id in ids] == [False, True]


def test_dry_run_lists_the_rows_it_would_give_a_matomo_site_and_changes_nothing(standins):
    live_without_matomo(standins, "dry.example.test")

    result = run_job(standins, "--dry-run")

    assert "[dry.example.test] Live without Matomo: would create a Matomo site (dry run: nothing changed)" in result.log
    assert "1 live sites would get their Matomo site" in result.log
    assert standins.matomo.sites == {}
    assert {request["method"] for request in standins.postgrest.requests_log} == {"GET"}


def test_row_changed_by_someone_else_before_the_write_is_left_alone(standins):
    row_id, = live_without_matomo(standins, "taken.example.test")

    def set_by_hand_meanwhile(request):
        if "addSite" in request["query"].get("method", [""])[0]:
            standins.postgrest.update_row(row_id, matomo_id=777)
        return None

    standins.matomo.fault = set_by_hand_meanwhile
    result = run_job(standins)

    assert standins.postgrest.get(row_id)["matomo_id"] == 777
    assert "Row %d was changed by someone else; its Matomo site" % row_id in result.log


def test_two_servers_at_once_add_one_matomo_site_for_an_unassigned_row(standins):
    row_id, = live_without_matomo(standins, "shared.example.test")
    standins.matomo.latency = 0.2  # both servers are inside the look-up at the same moment
    barrier = threading.Barrier(2)

    def run_as(name, results):
        barrier.wait()
        process = start_job(standins, overrides={"SERVER_NAME": name, "LOCK_FILE": f"{standins.dir}/{name}.lock"})
        results.append(process.wait(timeout=60))

    results = []
    threads = [threading.Thread(target=run_as, args=(name, results)) for name in ("web-1", "web-2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results == [0, 0]
    assert len(matomo_sites_named(standins, "shared.example.test")) == 1
    row = standins.postgrest.get(row_id)
    assert row["matomo_id"] == matomo_sites_named(standins, "shared.example.test")[0]
    assert row["hosting_server"] in ("web-1", "web-2")
