"""What a run did: each site's outcome as it comes, the closing summary line, the table on the console, and the
same as JSON."""

import json
import logging
import os
import threading
from array import array
from collections import Counter
from dataclasses import dataclass, fields

from hosting_automator.core.logging_setup import secret_values

logger = logging.getLogger(__name__)

ACTIVE, FAILED = "active", "failed"
POSTPONED, NOT_RECORDED = "postponed", "not recorded"
COLUMNS = ("domain", "outcome", "doc_root", "matomo_id", "error or note")
NOT_STARTED = -1


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
    """Every site's outcome, kept in an unnamed temporary file instead of memory, and read back in the order the
    sites were read. Workers finish in any order: each line is appended as its site finishes, and only where it
    lies is remembered (16 bytes a site, where a SiteOutcome took some 400). What the summary needs is counted as
    the outcomes come. Should the file become unwritable (a full disk), the rest are kept in memory."""

    def __init__(self):
        self._file = None  # made by the first outcome: nothing to import or create before the first request
        self._size = 0
        self._lock = threading.Lock()
        self._offsets = array("q")  # by position read: where the site's line starts, or NOT_STARTED
        self._lengths = array("l")
        self._in_memory = None  # position -> SiteOutcome, once the file has failed
        self.counts = Counter()
        self.active_without_matomo = 0
        self.any_failure = False

    def add(self, position, outcome):
        """The outcome of the site read at `position` (0, 1, …); None for a site that was never started."""
        with self._lock:
            missing = position + 1 - len(self._offsets)
            if missing > 0:
                self._offsets.extend([NOT_STARTED] * missing)
                self._lengths.extend([0] * missing)
            if outcome is None:
                return
            self.counts[outcome.outcome] += 1
            self.active_without_matomo += outcome.outcome == ACTIVE and outcome.matomo_id is None
            self.any_failure = self.any_failure or outcome.is_failure
            # masked before encoding (an escaped secret would no longer match); ASCII, so no text can fail to encode
            line = json.dumps([secret_values.mask(getattr(outcome, name)) for name in FIELDS], default=str) + "\n"
            if self._in_memory is None and self._append(line.encode("ascii")):
                self._offsets[position], self._lengths[position] = self._size - len(line), len(line)
            else:
                self._in_memory = self._in_memory or {}
                self._in_memory[position] = outcome

    def _append(self, data):
        try:
            if self._file is None:
                import tempfile

                self._file = tempfile.TemporaryFile(buffering=0)
            if self._file.write(data) != len(data):
                raise OSError("short write")
        except OSError as err:
            logger.warning("The run's outcomes cannot be kept in a temporary file (%s); keeping the rest in memory",
                           err)
            if self._file is not None:
                os.ftruncate(self._file.fileno(), self._size)
            return False
        self._size += len(data)
        return True

    def __len__(self):
        return sum(self.counts.values())

    def __iter__(self):
        """The outcomes in the order the sites were read; each iteration starts again from the first."""
        for position in range(len(self._offsets)):
            offset = self._offsets[position]
            if offset != NOT_STARTED:
                yield SiteOutcome(*json.loads(os.pread(self._file.fileno(), self._lengths[position], offset)))
            elif self._in_memory and position in self._in_memory:
                yield self._in_memory[position]

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
