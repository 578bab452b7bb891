"""One site, one worker: rows for one site under other spellings, a www. twin, or a site an earlier run set up
under another row. The site is created once; the other rows end failed naming the row that owns it."""

import json
import threading

import pytest

from tests.standins.clpctl_state import calls
from tests.support.harness import add_pending, matomo_sites_by_name, run_job, standins_of
from tests.support.standin_views import counts, live_root, outcome, row, to_matomo


SPELLINGS = ("shop.example.test", "Shop.example.test", "shop.example.test.")


def duplicate_message(owner):
    return f"duplicate: row {owner} is the same site (shop.example.test) and is set up instead of this one"


@pytest.mark.parametrize("transport, option, overrides", [
    ("clpctl", ["--workers", "2"], {}),
    ("gateway", ["--workers", "2"], {}),
    ("clpctl", [], {"WORKERS": "3"}),
], ids=["clpctl-workers-2", "gateway-workers-2", "clpctl-WORKERS-3"])
def test_rows_of_one_site_under_other_spellings_create_it_once(request, transport, option, overrides):
    standins = standins_of(request, transport)
    ids = add_pending(standins, *SPELLINGS)

    result = run_job(standins, *option, overrides=overrides)

    assert result.returncode == 1
    assert counts(standins, "shop.example.test") == (1, 1, 1)
    assert outcome(standins, ids[0]) == ("active", live_root("shop.example.test"), 1, None)
    for duplicate in ids[1:]:
        assert outcome(standins, duplicate) == ("failed", None, None, duplicate_message(ids[0]))
    assert f"ERROR [shop.example.test] Row {ids[2]}: {duplicate_message(ids[0])}" in result.log


def test_parallel_cloudpanel_calls_still_add_one_site_for_four_spellings(standins):
    ids = add_pending(standins, *SPELLINGS, "SHOP.EXAMPLE.TEST")

    result = run_job(standins, "--workers", "4", overrides={"CLOUDPANEL_CONCURRENCY": "4"})

    assert [c["argv"][0] for c in calls(standins.db_path)].count("site:add:static") == 1
    assert result.returncode == 1
    assert counts(standins, "shop.example.test") == (1, 1, 1)
    assert [row(standins, i)["status_hosting"] for i in ids] == ["active", "failed", "failed", "failed"]


def test_a_dry_run_says_the_duplicates_would_fail_and_changes_nothing(standins):
    ids = add_pending(standins, *SPELLINGS)

    result = run_job(standins, "--dry-run", "--json", "--workers", "3")

    assert result.returncode == 0
    sites = json.loads(result.stdout)["sites"]
    assert [(s["id"], s["outcome"]) for s in sites] == [(ids[0], "would set up"), (ids[1], "would fail"),
                                                       (ids[2], "would fail")]
    assert sites[1]["error"] == duplicate_message(ids[0])
    assert [row(standins, i)["status_hosting"] for i in ids] == ["pending"] * 3
    assert counts(standins, "shop.example.test") == (0, 0, 0)


def test_a_failed_row_and_a_pending_row_of_one_site_with_retry_failed_create_it_once(standins):
    ids = add_pending(standins, {"domain": "shop.example.test", "status_hosting": "failed",
                                 "error_message": "SSL: an earlier failure"}, "SHOP.example.test.")

    result = run_job(standins, "--retry-failed", "--workers", "2")

    assert result.returncode == 1
    assert counts(standins, "shop.example.test") == (1, 1, 1)
    matomo_id = matomo_sites_by_name(standins)["shop.example.test"][0]
    assert outcome(standins, ids[0]) == ("active", live_root("shop.example.test"), matomo_id, None)
    assert outcome(standins, ids[1]) == ("failed", None, None, duplicate_message(ids[0]))


def test_a_row_for_a_site_an_earlier_run_set_up_under_another_row_fails_naming_that_row(standins):
    owner = add_pending(standins, "shop.example.test")[0]
    assert run_job(standins).returncode == 0
    later = add_pending(standins, "Shop.example.test.")[0]  # as a killed run would have left it

    result = run_job(standins)

    assert counts(standins, "shop.example.test") == (1, 1, 1)  # holds: nothing is created twice
    assert outcome(standins, later) == ("failed", None, None, duplicate_message(owner))
    assert result.returncode == 1


class FirstAddWaitsForSecondLookup:
    """A Matomo fault hook: the first addSite is held until a second look-up has been answered (or 5 s passed), so
    that a second row that is looked up while the first one's site is being added is seen doing so."""

    def __init__(self):
        self.lookups = 0
        self.adds = 0
        self.changed = threading.Condition()

    def __call__(self, request):
        with self.changed:
            if to_matomo("getSitesIdFromSiteUrl")(request):
                self.lookups += 1
                self.changed.notify_all()
            elif to_matomo("addSite")(request):
                self.adds += 1
                if self.adds == 1:
                    self.changed.wait_for(lambda: self.lookups >= 2, timeout=5)
        return None


def test_a_name_and_its_www_twin_under_workers_share_one_matomo_site(standins):
    ids = add_pending(standins, "twin.example.test", "www.twin.example.test")
    standins.matomo.fault = FirstAddWaitsForSecondLookup()

    result = run_job(standins, "--workers", "2")

    assert result.returncode == 0, result.log
    assert len(standins.matomo.sites) == 1
    assert row(standins, ids[0])["matomo_id"] == row(standins, ids[1])["matomo_id"] == 1


def test_a_name_and_its_www_twin_share_one_matomo_site(standins):
    """One Matomo site tracks a name and its www. twin (its URLs name both)."""
    ids = add_pending(standins, "pair.example.test", "www.pair.example.test")

    result = run_job(standins)

    assert result.returncode == 0, result.log
    assert len(standins.matomo.sites) == 1
    assert row(standins, ids[0])["matomo_id"] == row(standins, ids[1])["matomo_id"] == 1
