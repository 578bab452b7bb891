"""The run over every pending site: rows read a little ahead of the workers, one worker per site, the rows of
one site kept to one worker, a name and its www. twin one after the other, then the Matomo backfill. What happens
to one site is in site.py."""

import concurrent.futures
import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hosting_automator.domains import apex_of, normalised_or_none
from hosting_automator.errors import (MatomoError, RunInterrupted, ServerNameClash, SetupError, SupabaseError,
                                      SupabaseSetupError)
from hosting_automator.report import Outcome, RunOutcomes, SiteOutcome
from hosting_automator.site import Row, SiteSteps, interrupted

if TYPE_CHECKING:
    from hosting_automator.services import Services

logger = logging.getLogger(__name__)


@dataclass
class RunOptions:
    dry_run: bool = False
    domains: tuple[str, ...] = ()
    limit: int | None = None
    retry_failed: bool = False
    workers: int = 1
    matomo_backfill: int = 0  # live sites without a Matomo site given one after the pending rows; 0: none
    max_run_seconds: float | None = None  # no site starts later into the run; the next run takes the rest


class Run:
    """One run over the pending sites; `aborted` says why it stopped early, when it had to."""

    def __init__(self, services: "Services", options: RunOptions,
                 stop_event: threading.Event | None = None) -> None:
        self.services = services
        self.options = options
        self.stop_event = stop_event or threading.Event()
        self.aborted = None  # the reason, when the run had to stop early
        self.site_steps = SiteSteps(services, options.dry_run, self.stop_event)
        self._ends = None if options.max_run_seconds is None else time.monotonic() + options.max_run_seconds
        self._said_out_of_time = threading.Event()
        self._pair_locks = {}
        self._pair_locks_guard = threading.Lock()

    # -- the run ---------------------------------------------------------------------------------------------

    def run(self) -> RunOutcomes:
        """Process every selected pending site, then the Matomo backfill; return the outcomes in the order the
        sites were read. No exception of the project's own leaves: a failure that stops the run is in `aborted`."""
        statuses = ("pending", "failed") if self.options.retry_failed else ("pending",)
        rows = self._selected(map(Row.of, self.services.supabase.fetch_pending_hosting_sites(statuses)))
        workers = max(1, self.options.workers)
        read_ahead = workers * 2  # rows are read only a little ahead of the work: memory stays flat
        slots = threading.BoundedSemaphore(read_ahead)
        outcomes = RunOutcomes()  # futures are dropped as soon as they are done
        owners = {}  # normalised domain -> id of the first row read for it: one site, one worker, one row
        read = set()  # ids of the rows this run took: a Matomo site they lack is the next run's to add

        def collect(future, position):
            try:
                outcomes.add(position, future.result())
            finally:
                slots.release()  # whatever happens, or the run would wait for this slot for ever

        with concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="site") as pool:
            try:
                for position, row in enumerate(rows):
                    if not _take_slot(slots, self._no_new_site):
                        break
                    read.add(row.id)
                    name = normalised_or_none(row.domain)
                    owner = owners.setdefault(name, row.id) if name else row.id
                    work = self._process_row if owner == row.id else self._leave_to_owner
                    pool.submit(work, row, name, owner).add_done_callback(
                        lambda future, position=position: collect(future, position))
            except ServerNameClash as err:  # found in a page of rows, before any of it was worked on
                self.aborted = str(err)
                logger.error("%s", self.aborted)
            except (SupabaseError, SupabaseSetupError) as err:
                self.aborted = f"cannot read the pending sites: {err}"
                logger.error("%s", self.aborted)
            except RunInterrupted:
                pass  # a signal ended a retry's wait while reading: no site is started, the summary says why
            _wait_for_every_slot(slots, read_ahead)
        self._backfill_matomo(outcomes, read)
        return outcomes

    def _backfill_matomo(self, outcomes, read):
        """After the pending rows: live sites that went live without analytics (Matomo was down) get their Matomo
        site, looked up first, at most `matomo_backfill` a run. A Matomo failure ends it for this run with one
        WARNING; nothing here changes the run's exit code."""
        if not self.options.matomo_backfill or self._no_new_site():
            return
        if self.site_steps.matomo_failed:
            logger.warning("Matomo failed for a site of this run: the live sites without a Matomo site wait for the "
                           "next run")
            return
        position = len(outcomes)
        try:
            live = map(Row.of, self.services.supabase.fetch_active_without_matomo())
            rows = (row for row in live if row.id not in read)
            for row in self._selected(rows, self.options.matomo_backfill, "live sites without Matomo"):
                if self._no_new_site():
                    return
                outcome = self.site_steps.backfill(row)
                outcomes.add(position, outcome)
                position += 1
        except RunInterrupted:
            return  # a signal ended a retry's wait: the summary says the run was interrupted
        except SetupError as err:  # the key cannot write, say: the run says so as it would for a pending row
            self.aborted = str(err)
            logger.error("%s", err)
        except (MatomoError, SupabaseError) as err:
            logger.warning("Adding missing Matomo sites stopped for this run: %s", err)
        except Exception:  # a bug here must not cost the run its summary
            logger.exception("Adding missing Matomo sites stopped on an unexpected error")

    def _selected(self, rows, limit=None, what="sites"):
        """Apply --domain and a cap (by default the run's) while the rows stream past."""
        wanted = {(normalised_or_none(name) or name) for name in self.options.domains}
        limit = self.options.limit if limit is None else limit
        taken = 0
        for row in rows:
            if limit is not None and taken >= limit:
                logger.info("Reached the limit of %d %s for this run; the rest wait for the next run", limit, what)
                return
            if wanted and (normalised_or_none(row.domain) or row.domain) not in wanted:
                continue
            taken += 1
            yield row

    def _no_new_site(self):
        """A signal, a setting every site would meet, or MAX_RUN_MINUTES reached: no site starts now."""
        if self.stop_event.is_set() or self.aborted is not None:
            return True
        if self._ends is None or time.monotonic() < self._ends:
            return False
        if not self._said_out_of_time.is_set():
            self._said_out_of_time.set()
            logger.info("This run has worked for MAX_RUN_MINUTES (%d): no new site starts, the rest wait for the "
                        "next run", round(self.options.max_run_seconds / 60))
        return True

    def _leave_to_owner(self, row, domain, owner):
        """A second row for a site another row of this run owns: nothing is created twice, and the row says why."""
        if self._no_new_site():
            return None
        return self.site_steps.leave_to_owner(row, domain, owner)

    def _process_row(self, row, domain=None, _owner=None):
        if self._no_new_site():
            return None  # queued but not started: it stays as it is for the next run
        with self._pair_lock(domain):
            return self._process_row_in_turn(row)

    def _pair_lock(self, domain):
        """A name and its www. twin share a certificate and a Matomo site: their rows are worked on one after the
        other, so the second finds what the first made instead of making it again."""
        if domain is None:
            return contextlib.nullcontext()
        with self._pair_locks_guard:
            return self._pair_locks.setdefault(apex_of(domain), threading.Lock())

    def _process_row_in_turn(self, row):
        try:
            return self.site_steps.set_up(row)
        except RunInterrupted:
            return interrupted(row)
        except SetupError as err:
            self.aborted = str(err)
            logger.error("%s", err)
            return SiteOutcome(row.id, row.shown_domain, Outcome.NOT_RECORDED, error=str(err))
        except Exception as err:  # a bug must not take the other sites down with it
            logger.exception("Unexpected error for %s", row.shown_domain)
            return SiteOutcome(row.id, row.shown_domain, Outcome.NOT_RECORDED,
                               error=f"internal error: {err.__class__.__name__}: {err}")


def _take_slot(slots, stopping):
    """Wait for a free read-ahead slot; False when `stopping()` says no new site may start. Short waits let
    signals in."""
    while not slots.acquire(timeout=0.2):
        if stopping():
            return False
    if stopping():
        slots.release()
        return False
    return True


def _wait_for_every_slot(slots, capacity):
    """Return once every site handed to the workers is done: each holds a slot until it is."""
    for _ in range(capacity):
        slots.acquire()
    for _ in range(capacity):
        slots.release()
