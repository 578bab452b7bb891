"""What a run did: each site's outcome as it comes, the summary line, the console table, and the same as JSON."""

import enum
import json
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from hosting_automator.masking import secret_values


class Outcome(enum.StrEnum):
    """What happened to one row, as the report, the summary and the JSON name it: a str, written and compared
    as its words."""

    ACTIVE = "active"  # these two are also what the row's status_hosting is set to
    FAILED = "failed"
    POSTPONED = "postponed"  # a service unreachable: the row stays as read, for the next run
    NOT_RECORDED = "not recorded"  # the outcome could not be written: the row stays as read
    CHANGED_MEANWHILE = "changed meanwhile"  # someone else changed the row: left untouched
    INTERRUPTED = "interrupted"
    LEFT_TO_OTHERS = "left to other servers"  # not failures: another run's or DNS's
    WAITING_FOR_DNS = "waiting for DNS"
    MATOMO_ADDED_LATER = "Matomo added later"  # a live site given the Matomo site it went live without
    WOULD_SET_UP = "would set up"  # the dry run's
    WOULD_FAIL = "would fail"
    WOULD_ADD_MATOMO = "would add Matomo"


COLUMNS = ("domain", "outcome", "doc_root", "matomo_id", "error or note")


@dataclass(slots=True)
class SiteOutcome:
    """What happened to one row. `outcome` is what the report shows."""

    site_id: object
    domain: str
    outcome: Outcome
    doc_root: str | None = None
    matomo_id: int | None = None
    error: str | None = None
    warning: str | None = None

    @property
    def is_failure(self) -> bool:
        return self.outcome in (Outcome.FAILED, Outcome.NOT_RECORDED, Outcome.POSTPONED)


class RunOutcomes:
    """Every site's outcome, given back in the order the sites were read although workers finish in any order.
    What the summary needs is counted as the outcomes come."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # workers add from their own threads
        self._by_position = []  # None where a site has not finished, or was never started
        self.counts = Counter()
        self.active_without_matomo = 0
        self.any_failure = False

    def add(self, position: int, outcome: SiteOutcome | None) -> None:
        """The outcome of the site read at `position` (0, 1, …); None for a site that was never started."""
        with self._lock:
            missing = position + 1 - len(self._by_position)
            if missing > 0:
                self._by_position.extend([None] * missing)
            if outcome is None:
                return
            self._by_position[position] = outcome
            self.counts[outcome.outcome] += 1
            if outcome.outcome == Outcome.ACTIVE and outcome.matomo_id is None:
                self.active_without_matomo += 1
            if outcome.is_failure:
                self.any_failure = True

    def __len__(self):
        return sum(self.counts.values())

    def __iter__(self):
        """The outcomes in the order the sites were read; each iteration starts again from the first."""
        with self._lock:  # a copy, so a worker still adding cannot change the list under the reader
            kept = [outcome for outcome in self._by_position if outcome is not None]
        return iter(kept)


def summary_line(outcomes: RunOutcomes, aborted: str | None = None, interrupted: bool = False,
                 dry_run: bool = False, domains: tuple[str, ...] = ()) -> str:
    """The run's one line; with nothing to do, it says so (for --domain: naming the domains without a row)."""
    counts = outcomes.counts
    if not aborted and not interrupted and not sum(counts.values()):
        nothing = (f"no pending row for {', '.join(domains)}" if domains else "no pending sites")
        return f"Run finished: {nothing}" + (" (dry run: nothing changed)" if dry_run else "")
    failed, unrecorded = counts[Outcome.FAILED], counts[Outcome.NOT_RECORDED]
    postponed, changed = counts[Outcome.POSTPONED], counts[Outcome.CHANGED_MEANWHILE]
    parts = [f"{counts[Outcome.ACTIVE]} active ({outcomes.active_without_matomo} without Matomo)", f"{failed} failed"]
    if postponed:
        parts.append(f"{postponed} left pending (service unreachable)")
    if unrecorded:
        parts.append(f"{unrecorded} not recorded")
    if changed:
        parts.append(f"{changed} changed by someone else")
    if dry_run:  # a dry run goes through the same steps: a service it cannot reach leaves a row as a run would
        parts = [f"{counts[Outcome.WOULD_SET_UP] + counts[Outcome.WOULD_FAIL]} would be processed"
                 + (f" ({counts[Outcome.WOULD_FAIL]} would fail)" if counts[Outcome.WOULD_FAIL] else "")]
        if postponed:
            parts.append(f"{postponed} left pending (service unreachable)")
        if counts[Outcome.WOULD_ADD_MATOMO]:
            parts.append(f"{counts[Outcome.WOULD_ADD_MATOMO]} live sites would get their Matomo site")
    for outcome in (Outcome.LEFT_TO_OTHERS, Outcome.WAITING_FOR_DNS):
        if counts[outcome]:
            parts.append(f"{counts[outcome]} {outcome}")
    if counts[Outcome.MATOMO_ADDED_LATER]:
        parts.append(f"{Outcome.MATOMO_ADDED_LATER}: {counts[Outcome.MATOMO_ADDED_LATER]}")
    line = "Run finished: " + ", ".join(parts)
    if interrupted:
        line = "Run interrupted: " + ", ".join(parts) + "; the sites not finished stay as they were"
    if aborted:
        line = "Run aborted: " + ", ".join(parts) + f"; {aborted}"
    return line + (" (dry run: nothing changed)" if dry_run else "")


def table_lines(outcomes: Iterable[SiteOutcome], failures_only: bool = False) -> list[str]:
    """A plain-text table, one site a line, '-' for an empty cell; the last column holds the error or warning.
    No lines at all when no site is shown."""
    rows = [(_cell(o.domain), _cell(o.outcome), _cell(o.doc_root), _cell(o.matomo_id), _note(o.error or o.warning))
            for o in outcomes if o.is_failure or o.outcome == Outcome.WOULD_FAIL or not failures_only]
    if not rows:
        return []
    rows.insert(0, COLUMNS)
    widths = [max(len(row[column]) for row in rows) for column in range(len(COLUMNS) - 1)]
    return [_table_line(row, widths) for row in rows]


def _table_line(cells, widths):
    return "  ".join([cell.ljust(width) for cell, width in zip(cells, widths)] + [cells[-1]]).rstrip()


def json_document(outcomes: RunOutcomes, summary: str, exit_code: int, dry_run: bool = False) -> str:
    """The run as one JSON document, on one line.

    Secrets are masked in each value before it is encoded: JSON escapes quotes and backslashes, and an escaped
    secret would no longer be recognised in the finished text."""
    sites = [{key: secret_values.mask(value) for key, value in {
        "id": o.site_id, "domain": o.domain, "outcome": o.outcome, "doc_root": o.doc_root, "matomo_id": o.matomo_id,
        "error": o.error, "warning": o.warning}.items()} for o in outcomes]
    return json.dumps({"summary": secret_values.mask(summary), "exit_code": exit_code, "dry_run": dry_run,
                       "counts": dict(sorted(outcomes.counts.items())), "sites": sites}, default=str) + "\n"


def _cell(value):
    """Masked before any width is measured, so the columns stay aligned."""
    return "-" if value is None else secret_values.mask(str(value))


def _note(text):
    """Masked before a long note is cut: half a secret would no longer be recognised."""
    if not text:
        return "-"
    text = secret_values.mask(text)
    return text if len(text) <= 160 else text[:157] + "…"
