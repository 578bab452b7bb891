"""RunOutcomes gives every site's outcome back in the order the sites were read, whatever order the workers
finish in, and the summary, the table and the JSON show them with every secret masked."""

import json
import threading

import pytest

from hosting_automator.masking import secret_values
from hosting_automator.report import Outcome, RunOutcomes, SiteOutcome, json_document, summary_line, table_lines

ACTIVE_A = SiteOutcome(1, "a.example", Outcome.ACTIVE, "/home/a/htdocs/a.example", 7)
FAILED_B = SiteOutcome(2, "b.example", Outcome.FAILED, error="CloudPanel: domainName: This value is not valid.")
ACTIVE_C = SiteOutcome("c3", "c.example", Outcome.ACTIVE, "/home/c/htdocs/c.example", None, warning="Matomo: down")


@pytest.fixture
def outcomes():
    return RunOutcomes()


def test_outcomes_finished_out_of_order_are_read_back_in_the_order_read_and_never_started_ones_left_out(outcomes):
    outcomes.add(2, ACTIVE_C)
    outcomes.add(1, None)  # queued, never started: the run was stopping
    outcomes.add(3, FAILED_B)
    outcomes.add(0, ACTIVE_A)

    assert list(outcomes) == [ACTIVE_A, ACTIVE_C, FAILED_B]
    assert list(outcomes) == [ACTIVE_A, ACTIVE_C, FAILED_B]  # every reading starts from the first
    assert len(outcomes) == 3 and outcomes.any_failure
    assert summary_line(outcomes) == "Run finished: 2 active (1 without Matomo), 1 failed"


def test_a_slow_first_site_comes_first_though_thousands_finish_after_it(outcomes):
    for position in range(1, 10_000):
        outcomes.add(position, SiteOutcome(position, f"site{position}.example", "active", f"/home/s{position}", 1))
    outcomes.add(0, SiteOutcome(0, "slow.example", "failed", error="SSL: timeout"))

    read = list(outcomes)
    assert [o.domain for o in read[:2]] == ["slow.example", "site1.example"] and len(read) == 10_000
    assert read[-1] == SiteOutcome(9999, "site9999.example", "active", "/home/s9999", 1)


def test_outcomes_added_from_many_threads_at_once_all_come_back_in_order(outcomes):
    def finish(first):
        for position in range(first, 4000, 8):
            outcomes.add(position, SiteOutcome(position, f"s{position}.example", "active", "/d", position))

    threads = [threading.Thread(target=finish, args=(first,)) for first in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [o.site_id for o in outcomes] == list(range(4000))
    assert outcomes.counts["active"] == 4000


def test_secrets_even_with_quotes_or_cut_short_never_reach_the_table_or_the_json(outcomes):
    secret_values.add("tok-3f9a7c2e1b")  # conftest clears the secrets after every test
    secret_values.add('pa"ss\\word9')
    long_error = "Matomo: " + "x" * 145 + " tok-3f9a7c2e1b"  # the token straddles where a long note is cut
    outcomes.add(0, SiteOutcome(1, "a.example", "failed", error='bad token tok-3f9a7c2e1b or pa"ss\\word9'))
    outcomes.add(1, SiteOutcome(2, "b.example", "failed", error=long_error))

    table = "\n".join(table_lines(outcomes))
    document = json_document(outcomes, "Run finished: tok-3f9a7c2e1b", 1)
    for text in (table, document):
        assert "tok-" not in text and "word9" not in text
    assert [site["error"] for site in json.loads(document)["sites"]] == [
        "bad token *** or ***", "Matomo: " + "x" * 145 + " ***"]
    assert json.loads(document)["summary"] == "Run finished: ***"
    assert table.splitlines()[1].endswith("bad token *** or ***")
    assert table.splitlines()[2].endswith("x ***")  # masked whole, then short enough to be shown uncut


def test_outcomes_are_kept_as_given_and_masked_only_where_shown(outcomes):
    secret_values.add("tok-3f9a7c2e1b")
    odd = SiteOutcome(1, "a.example", "failed", error="Matomo: \udcff bad token tok-3f9a7c2e1b")
    outcomes.add(0, odd)
    assert list(outcomes) == [odd]
    assert "\\udcff bad token ***" in json_document(outcomes, "Run finished", 1)


def test_table_lines_align_columns_and_quiet_shows_only_failures(outcomes):
    for position, outcome in enumerate([ACTIVE_A, FAILED_B, ACTIVE_C]):
        outcomes.add(position, outcome)

    assert list(table_lines(outcomes)) == [
        "domain     outcome  doc_root                  matomo_id  error or note",
        "a.example  active   /home/a/htdocs/a.example  7          -",
        "b.example  failed   -                         -          CloudPanel: domainName: This value is not valid.",
        "c.example  active   /home/c/htdocs/c.example  -          Matomo: down",
    ]
    assert list(table_lines(outcomes, failures_only=True)) == [
        "domain     outcome  doc_root  matomo_id  error or note",
        "b.example  failed   -         -          CloudPanel: domainName: This value is not valid.",
    ]


def test_no_table_at_all_when_no_site_is_shown(outcomes):
    outcomes.add(0, ACTIVE_A)
    assert list(table_lines(outcomes, failures_only=True)) == []
    assert list(table_lines([])) == []


def test_json_reads_the_outcomes_back_with_their_ids_as_they_were(outcomes):
    for position, outcome in enumerate([ACTIVE_A, ACTIVE_C]):
        outcomes.add(position, outcome)
    document = json.loads(json_document(outcomes, "Run finished", 0))
    assert [(site["id"], site["matomo_id"], site["warning"]) for site in document["sites"]] == [
        (1, 7, None), ("c3", None, "Matomo: down")]


def test_dry_run_summary_counts_what_would_be_done_and_the_rows_a_service_left_pending(outcomes):
    for position, outcome in enumerate(("would set up", "would fail", "postponed", "would add Matomo")):
        outcomes.add(position, SiteOutcome(position, f"s{position}.example", outcome))

    assert summary_line(outcomes, dry_run=True) == (
        "Run finished: 2 would be processed (1 would fail), 1 left pending (service unreachable), 1 live sites would "
        "get their Matomo site (dry run: nothing changed)")
    assert outcomes.any_failure  # exit 1: a dry run that cannot reach a service says so, as a run would
    assert [line.split()[:2] for line in table_lines(outcomes, failures_only=True)] == [  # -q: what would go wrong
        ["domain", "outcome"], ["s1.example", "would"], ["s2.example", "postponed"]]


@pytest.mark.parametrize("domains, dry_run, line", [
    ((), False, "Run finished: no pending sites"),
    (("a.example", "b.example"), False, "Run finished: no pending row for a.example, b.example"),
    ((), True, "Run finished: no pending sites (dry run: nothing changed)"),
])
def test_a_run_with_nothing_to_do_says_so(domains, dry_run, line):
    assert summary_line(RunOutcomes(), dry_run=dry_run, domains=domains) == line
    assert summary_line(RunOutcomes(), aborted="cannot read").startswith("Run aborted: 0 active")


def test_the_json_names_each_outcome_and_its_count_by_the_word_the_table_shows(outcomes):
    for position, outcome in enumerate([ACTIVE_A, FAILED_B, ACTIVE_C]):
        outcomes.add(position, outcome)
    outcomes.add(3, SiteOutcome(4, "d.example", Outcome.LEFT_TO_OTHERS, warning="assigned to web-2"))

    document = json.loads(json_document(outcomes, "Run finished", 1))

    assert [site["outcome"] for site in document["sites"]] == ["active", "failed", "active", "left to other servers"]
    assert document["counts"] == {"active": 2, "failed": 1, "left to other servers": 1}
    assert [line.split("  ")[1] for line in table_lines(outcomes)[1:]] == ["active", "failed", "active",
                                                                            "left to other servers"]
