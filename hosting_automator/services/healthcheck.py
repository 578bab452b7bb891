"""Healthchecks.io-style monitoring: ping /start, then the URL on success or /fail, with the summary and the
last log lines as the body. A ping that fails only warns: monitoring must never hide or cause a failure."""

import logging

logger = logging.getLogger(__name__)

PING_TIMEOUT = 10  # seconds; a slow monitor must not hold up the run
BODY_MAX_BYTES = 100_000  # Healthchecks.io keeps the first 100 kB


def ping(session, url, state, body="", dry_run=False):
    """state: "start", "success" or "fail"."""
    if not url:
        return
    if dry_run:
        logger.info("Would ping %s (dry run: nothing changed)", state)
        return
    target = url if state == "success" else f"{url}/{state}"
    try:
        response = session.post(target, data=body.encode("utf-8")[:BODY_MAX_BYTES], timeout=PING_TIMEOUT)
        if response.status_code >= 300:  # redirects are not followed
            logger.warning("Monitoring ping (%s) answered HTTP %d", state, response.status_code)
    except Exception as err:  # any failure of the monitor is only a warning
        # the class only: an error's message may carry the URL, whose path is the check's secret key
        logger.warning("Monitoring ping (%s) failed: %s", state, err.__class__.__name__)
