"""What a run did: each site's outcome as it comes, the closing summary line, the table on the console, and the
same as JSON."""

import json
import os
import threading
from collections import Counter
from dataclasses import dataclass, fields

from hosting_automator.core.logging_setup import secret_values

ACTIVE, FAILED = "active", "failed"
POSTPONED, NOT_RECORDED = "postponed", "not recorded"
COLUMNS = ("domain", "outcome", "doc_root", "matomo_id", "error or note")


@dataclass(slots=True)
class SiteOutcome:
    """What happened to one row. `outcome` is what the report shows."""

    site_id: object
    domain: str
    outcome: str  # active | failed | postponed | not recorded | changed meanwhile | interrupted | would … (dry run)
    doc_root: str | None = None
    matomo_id: int | None = None
    error: str | None = None
    warning: str | None = None

    @property
    def is_failure(self):
        return self.outcome in (FAILED, NOT_RECORDED, POSTPONED)


FIELDS = tuple(field.name for field in fields(SiteOutcome))


class RunOutcomes:
    """Every site's outcome in the order the sites were read, kept in an unnamed temporary file instead of memory:
    a run of ten thousand sites ends with the memory it started with. What the summary needs is counted as the
    outcomes come. Workers finish out of order, so an outcome waits (one per worker slot at most) until every
    site read before it is in; None stands for a site that was never started."""

    def __init__(self):
        self._file = None  # made by the first outcome: nothing to import or create before the first request
        self._lock = threading.Lock()
        self._waiting = {}
        self._next_position = 0
        self.counts = Counter()
        self.active_without_matomo = 0
        self.any_failure = False

    def add(self, position, outcome):
        with self._lock:
            self._waiting[position] = outcome
            while self._next_position in self._waiting:
                ready = self._waiting.pop(self._next_position)
                self._next_position += 1
                if ready is not None:
                    self._write(ready)

    def _write(self, outcome):
        self.counts[outcome.outcome] += 1
        self.active_without_matomo += outcome.outcome == ACTIVE and outcome.matomo_id is None
        self.any_failure = self.any_failure or outcome.is_failure
        line = json.dumps([getattr(outcome, name) for name in FIELDS], ensure_ascii=False, default=str)
        if self._file is None:
            import tempfile

            self._file = tempfile.TemporaryFile("w+", encoding="utf-8")
        self._file.write(secret_values.mask(line) + "\n")

    def __len__(self):
        return sum(self.counts.values())

    def __iter__(self):
        """The outcomes in the order read; each iteration reads the file afresh from its start."""
        if self._file is None:
            return
        with self._lock:
            self._file.flush()
        fd, offset, pending = self._file.fileno(), 0, b""
        while True:
            block = os.pread(fd, 1 << 16, offset)
            if not block:
                return
            offset += len(block)
            *lines, pending = (pending + block).split(b"\n")
            for line in lines:
                yield SiteOutcome(*json.loads(line))

    def close(self):
        if self._file is not None:
            self._file.close()


def summary_line(outcomes, aborted=None, interrupted=False, dry_run=False):
    counts = outcomes.counts
    failed, unrecorded = counts[FAILED], counts[NOT_RECORDED]
    postponed, changed = counts[POSTPONED], counts["changed meanwhile"]
    parts = [f"{counts[ACTIVE]} active ({outcomes.active_without_matomo} without Matomo)", f"{failed} failed"]
    if postponed:
        parts.append(f"{postponed} left pending (service unreachable)")
    if unrecorded:
        parts.append(f"{unrecorded} not recorded")
    if changed:
        parts.append(f"{changed} changed by someone else")
    if dry_run:
        parts = [f"{len(outcomes)} would be processed"]
    line = "Run finished: " + ", ".join(parts)
    if interrupted:
        line = "Run interrupted: " + ", ".join(parts) + "; the sites not finished stay as they were"
    if aborted:
        line = "Run aborted: " + ", ".join(parts) + f"; {aborted}"
    return line + (" (dry run: nothing changed)" if dry_run else "")


def table_lines(outcomes, failures_only=False):
    """A plain-text table, one site a line, '-' for an empty cell; the last column holds the error or warning.
    Two passes, the first for the column widths, so no run's table is ever held whole; nothing without a site."""
    def rows():
        for o in outcomes:
            if o.is_failure or not failures_only:
                yield o.domain, o.outcome, _cell(o.doc_root), _cell(o.matomo_id), _note(o.error or o.warning)

    widths = [len(name) for name in COLUMNS[:-1]]
    shown = 0
    for row in rows():
        shown += 1
        widths = [max(width, len(cell)) for width, cell in zip(widths, row)]
    if not shown:
        return
    yield _table_line(COLUMNS, widths)
    for cells in rows():
        yield _table_line(cells, widths)


def _table_line(cells, widths):
    return "  ".join([cell.ljust(width) for cell, width in zip(cells, widths)] + [cells[-1]]).rstrip()


def json_chunks(outcomes, summary, exit_code, dry_run=False):
    """The run as one JSON document, yielded a site at a time: ten thousand sites never sit in memory as text."""
    head = json.dumps({"summary": summary, "exit_code": exit_code, "dry_run": dry_run})
    yield head[:-1] + ', "sites": ['
    for index, o in enumerate(outcomes):
        site = {"id": o.site_id, "domain": o.domain, "outcome": o.outcome, "doc_root": o.doc_root,
                "matomo_id": o.matomo_id, "error": o.error, "warning": o.warning}
        yield ("," if index else "") + "\n  " + json.dumps(site, default=str)
    yield "\n]}\n"


def _cell(value):
    return "-" if value is None else str(value)


def _note(text):
    if not text:
        return "-"
    return text if len(text) <= 160 else text[:157] + "…"
