"""RunOutcomes keeps every site's outcome on disk in the order the sites were read, whatever order the workers
finish in, and the summary, the table and the JSON read them back exactly."""

import json

import pytest

from hosting_automator.core.logging_setup import secret_values
from hosting_automator.report import RunOutcomes, SiteOutcome, json_chunks, summary_line, table_lines

ACTIVE_A = SiteOutcome(1, "a.example", "active", "/home/a/htdocs/a.example", 7)
FAILED_B = SiteOutcome(2, "b.example", "failed", error="CloudPanel: domainName: This value is not valid.")
ACTIVE_C = SiteOutcome("c3", "c.example", "active", "/home/c/htdocs/c.example", None, warning="Matomo: down")


@pytest.fixture
def outcomes():
    recorded = RunOutcomes()
    yield recorded
    recorded.close()


def test_outcomes_finished_out_of_order_are_read_back_in_the_order_read_and_never_started_ones_left_out(outcomes):
    outcomes.add(2, ACTIVE_C)
    outcomes.add(1, None)  # queued, never started: the run was stopping
    assert list(outcomes) == []  # c waits until everything read before it is in
    outcomes.add(3, FAILED_B)
    outcomes.add(0, ACTIVE_A)

    assert list(outcomes) == [ACTIVE_A, ACTIVE_C, FAILED_B]
    assert list(outcomes) == [ACTIVE_A, ACTIVE_C, FAILED_B]  # every reading starts from the first
    assert len(outcomes) == 3 and outcomes.any_failure
    assert summary_line(outcomes) == "Run finished: 2 active (1 without Matomo), 1 failed"


def test_ten_thousand_outcomes_are_kept_on_disk_not_in_memory(outcomes):
    for position in range(10_000):
        outcomes.add(position, SiteOutcome(position, f"site{position}.example", "active", f"/home/s{position}", 1))
    assert not outcomes._waiting
    assert sum(1 for _ in outcomes) == 10_000
    assert [o.domain for o in outcomes][-1] == "site9999.example"


@pytest.fixture
def token():
    secret_values.add("tok-3f9a7c2e1b")
    yield "tok-3f9a7c2e1b"
    secret_values.discard("tok-3f9a7c2e1b")


def test_a_secret_in_an_outcome_never_reaches_the_file(outcomes, token):
    outcomes.add(0, SiteOutcome(1, "a.example", "failed", error="Matomo: bad token tok-3f9a7c2e1b"))

    outcomes._file.seek(0)
    on_disk = outcomes._file.read()
    assert "tok-3f9a7c2e1b" not in on_disk and "***" in on_disk
    assert [o.error for o in outcomes] == ["Matomo: bad token ***"]


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
    document = json.loads("".join(json_chunks(outcomes, "Run finished", 0)))
    assert [(site["id"], site["matomo_id"], site["warning"]) for site in document["sites"]] == [
        (1, 7, None), ("c3", None, "Matomo: down")]
