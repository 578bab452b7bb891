"""Healthchecks.io-style pings around a run (start, then success or fail); a ping that fails only warns."""

import logging

import requests

from hosting_automator.core.logging_setup import RecentLines
from hosting_automator.masking import secret_values

logger = logging.getLogger(__name__)

PING_TIMEOUT = 10  # seconds at most (HTTP_TIMEOUT when shorter); a slow monitor must not hold up the run
BODY_MAX_BYTES = 100_000  # Healthchecks.io keeps the first 100 kB


def ping(session: requests.Session, url: str | None, state: str, body: str = "", dry_run: bool = False) -> None:
    """state: "start", "success" or "fail". The body carries the summary and the last log lines. A ping that fails
    only warns: monitoring must never hide or cause a failure."""
    if not url:
        return
    if dry_run:
        logger.info("Would ping %s (dry run: nothing changed)", state)
        return
    target = url if state == "success" else f"{url}/{state}"
    try:
        response = session.post(target, data=body.encode("utf-8")[:BODY_MAX_BYTES],
                                timeout=min(PING_TIMEOUT, getattr(session, "timeout", PING_TIMEOUT)))
        if response.status_code >= 300:  # redirects are not followed
            logger.warning("Monitoring ping (%s) answered HTTP %d", state, response.status_code)
    except Exception as err:  # any failure of the monitor is only a warning
        # the class only: an error's message may carry the URL, whose path is the check's secret key
        logger.warning("Monitoring ping (%s) failed: %s", state, err.__class__.__name__)


class Monitoring:
    """Pings /start on entry and, on exit, success or /fail: /fail also when the run ends on an exception (a bug,
    a signal), so the check never waits out its grace period for a run that is already over."""

    def __init__(self, session: requests.Session, url: str | None, recent_lines: RecentLines,
                 dry_run: bool = False) -> None:
        self.session = session
        self.url = url
        self.recent_lines = recent_lines  # a logging handler keeping the run's last lines
        self.dry_run = dry_run
        self._finished = None

    def finish(self, summary: str, succeeded: bool) -> None:
        """What the exit ping says: the run's summary line, and whether it succeeded."""
        self._finished = (summary, succeeded)

    def __enter__(self):
        ping(self.session, self.url, "start", dry_run=self.dry_run)
        return self

    def __exit__(self, exc_type, exc, traceback):
        if exc_type is not None:
            summary, succeeded = f"Run stopped on an unexpected error: {exc_type.__name__}: {exc}", False
        elif self._finished is None:
            summary, succeeded = "Run ended without a summary", False
        else:
            summary, succeeded = self._finished
        body = secret_values.mask(summary + "\n\n" + "\n".join(self.recent_lines.lines))
        ping(self.session, self.url, "success" if succeeded else "fail", body, self.dry_run)
        return False
