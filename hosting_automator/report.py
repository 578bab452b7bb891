"""What a run did: the closing summary line, the table on the console, and the same as JSON."""

import json

COLUMNS = ("domain", "outcome", "doc_root", "matomo_id", "error or note")


def summary_line(outcomes, aborted=None, interrupted=False, dry_run=False):
    active = [o for o in outcomes if o.outcome == "active"]
    without_matomo = sum(1 for o in active if o.matomo_id is None)
    failed = sum(1 for o in outcomes if o.outcome == "failed")
    unrecorded = sum(1 for o in outcomes if o.outcome == "not recorded")
    postponed = sum(1 for o in outcomes if o.outcome == "postponed")
    changed = sum(1 for o in outcomes if o.outcome == "changed meanwhile")
    parts = [f"{len(active)} active ({without_matomo} without Matomo)", f"{failed} failed"]
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


def as_table(outcomes):
    """A plain-text table, one site a line, '-' for an empty cell; the last column holds the error or warning."""
    rows = [COLUMNS] + [(o.domain, o.outcome, _cell(o.doc_root), _cell(o.matomo_id), _note(o.error or o.warning))
                        for o in outcomes]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS) - 1)]
    return "\n".join("  ".join([row[i].ljust(widths[i]) for i in range(len(COLUMNS) - 1)] + [row[-1]]).rstrip()
                     for row in rows)


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
