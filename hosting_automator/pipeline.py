"""The run itself: each pending site through its steps, one site's failure never touching another site's work."""

import concurrent.futures
import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hosting_automator.core.logging_setup import site_context
from hosting_automator.domains import normalise_domain
from hosting_automator.errors import (
    CertificateError,
    CloudPanelError,
    DnsError,
    InvalidDomainError,
    MatomoError,
    RunInterrupted,
    ServerNameClash,
    ServiceError,
    SetupError,
    SupabaseError,
)
from hosting_automator.report import (ACTIVE, FAILED, LEFT_TO_OTHERS, MATOMO_ADDED_LATER, NOT_RECORDED, POSTPONED,
                                      WAITING_FOR_DNS, RunOutcomes, SiteOutcome)

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


class Pipeline:
    """Walks the pending sites. `services` gives .supabase, .cloudpanel, .matomo, .dns, and this server's
    .server_name and .server_addresses (None and empty on a single server)."""

    def __init__(self, services: "Services", options: RunOptions,
                 stop_event: threading.Event | None = None) -> None:
        self.services = services
        self.options = options
        self.stop_event = stop_event or threading.Event()
        self.aborted = None  # the reason, when the run had to stop early
        self.matomo_failed = False  # Matomo failed for a site of this run: no backfill this run
        self._ends = None if options.max_run_seconds is None else time.monotonic() + options.max_run_seconds
        self._said_out_of_time = threading.Event()
        self._pair_locks = {}
        self._pair_locks_guard = threading.Lock()

    # -- the run ---------------------------------------------------------------------------------------------

    def run(self) -> RunOutcomes:
        """Process every selected pending site, then the Matomo backfill; return the outcomes in the order the
        sites were read. No exception of the project's own leaves: a failure that stops the run is in `aborted`."""
        statuses = ("pending", FAILED) if self.options.retry_failed else ("pending",)
        rows = self._selected(self.services.supabase.fetch_pending_hosting_sites(statuses))
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
                    read.add(row.get("id"))
                    name = _normalised_or_none(row.get("domain"))
                    owner = owners.setdefault(name, row.get("id")) if name else row.get("id")
                    work = self._process_row if owner == row.get("id") else self._leave_to_owner
                    pool.submit(work, row, name, owner).add_done_callback(
                        lambda future, position=position: collect(future, position))
            except ServerNameClash as err:  # found in a page of rows, before any of it was worked on
                self.aborted = str(err)
                logger.error("%s", self.aborted)
            except SupabaseError as err:
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
        if self.matomo_failed:
            logger.warning("Matomo failed for a site of this run: the live sites without a Matomo site wait for the "
                           "next run")
            return
        position = len(outcomes)
        try:
            rows = (row for row in self.services.supabase.fetch_active_without_matomo() if row.get("id") not in read)
            for row in self._selected(rows, self.options.matomo_backfill, "live sites without Matomo"):
                if self._no_new_site():
                    return
                outcome = self._backfill_row(row)
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

    def _backfill_row(self, row):
        """One live row without analytics: claimed when unassigned, its Matomo site looked up or made, its id
        written. A dry run goes through the same steps, each skipping its own side effect."""
        dry_run = self.options.dry_run
        try:
            domain = normalise_domain(row.get("domain"))
        except InvalidDomainError:
            return None  # a live row with a name that cannot be served: not this job's to repair
        with site_context(domain):
            if row.get("hosting_server") is None and self.services.server_name is not None:
                if not self.services.supabase.claim(row["id"], "active", matomo_id=None, dry_run=dry_run):
                    return None  # another server repairs it
            elif self.services.server_name is not None:
                self._take_over(row, "active")
            matomo_id = self.services.matomo.create_tracking_site(domain, dry_run=dry_run)
            if not self.services.supabase.record_matomo_id(row["id"], matomo_id, dry_run=dry_run):
                logger.warning("Row %s was changed by someone else; its Matomo site %d is not recorded", row["id"],
                               matomo_id)
                return SiteOutcome(row.get("id"), domain, "changed meanwhile", matomo_id=matomo_id)
            if dry_run:
                plan = self._matomo_plan(domain, matomo_id, "Matomo site {} exists, would write its id")
                logger.info("Live without Matomo: %s (dry run: nothing changed)", plan)
                return SiteOutcome(row.get("id"), domain, "would add Matomo", matomo_id=matomo_id, warning=plan)
            logger.info("Matomo site %d added to the live site", matomo_id)
            return SiteOutcome(row.get("id"), domain, MATOMO_ADDED_LATER, matomo_id=matomo_id)

    def _selected(self, rows, limit=None, what="sites"):
        """Apply --domain and a cap (by default the run's) while the rows stream past."""
        wanted = {_normalised_or_raw(name) for name in self.options.domains}
        limit = self.options.limit if limit is None else limit
        taken = 0
        for row in rows:
            if limit is not None and taken >= limit:
                logger.info("Reached the limit of %d %s for this run; the rest wait for the next run", limit, what)
                return
            if wanted and _normalised_or_raw(row.get("domain")) not in wanted:
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
        with site_context(domain):
            not_ours = self._not_this_servers(row, domain)
            if not_ours is not None:
                return not_ours
            return self._fail_as_duplicate(row, domain, owner)

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
        key = domain[4:] if domain.startswith("www.") else domain
        with self._pair_locks_guard:
            return self._pair_locks.setdefault(key, threading.Lock())

    def _process_row_in_turn(self, row):
        try:
            return self.process_site(row)
        except RunInterrupted:
            with site_context(_shown_domain(row)):
                logger.warning("Stopped before finishing this site: its row stays %s for the next run",
                               row.get("status_hosting"))
            return SiteOutcome(row.get("id"), _shown_domain(row), "interrupted")
        except SetupError as err:
            self.aborted = str(err)
            logger.error("%s", err)
            return SiteOutcome(row.get("id"), _shown_domain(row), NOT_RECORDED, error=str(err))
        except Exception as err:  # a bug must not take the other sites down with it
            logger.exception("Unexpected error for %s", _shown_domain(row))
            return SiteOutcome(row.get("id"), _shown_domain(row), NOT_RECORDED,
                               error=f"internal error: {err.__class__.__name__}: {err}")

    # -- one site, step by step ----------------------------------------------------------------------------

    def process_site(self, row: dict) -> SiteOutcome:
        """The steps of one site, in order: validate, DNS, claim, CloudPanel site, certificate, Matomo, record.
        A dry run goes through the same steps: each side effect is skipped where it is made, and says so.

        Raises:
            RunInterrupted: a signal asked the run to stop between two steps.
            SetupError: a setting every site would meet is wrong; the run stops.
        """
        dry_run = self.options.dry_run
        try:
            domain = normalise_domain(row.get("domain"))
        except InvalidDomainError as err:
            logger.error("Site %s: invalid domain: %s", row.get("id"), err)
            return (self._not_claimed(row, _shown_domain(row))
                    or self._record(row, _shown_domain(row), FAILED, error=f"invalid domain: {err}"))
        with site_context(domain):
            not_ours = self._not_this_servers(row, domain)
            if not_ours is not None:
                return not_ours
            logger.info("Setting up hosting")
            try:
                site = self.services.cloudpanel.create_static_site(domain, dry_run=dry_run)
            except SetupError:
                raise
            except CloudPanelError as err:
                if err.transient:
                    self._stop_point()  # stopping: the step's failure may be the signal's doing
                    return self._postpone(row, domain, f"CloudPanel: {err}")
                logger.error("CloudPanel: %s", err)
                return self._record(row, domain, FAILED, error=f"CloudPanel: {err}")
            self._stop_point()
            try:
                certificate_requested = self.services.cloudpanel.provision_ssl(domain, new_site=site.created,
                                                                               dry_run=dry_run)
            except SetupError:
                raise
            except (CertificateError, CloudPanelError) as err:
                if err.transient:
                    self._stop_point()
                    return self._postpone(row, domain, f"SSL: {err}", site.doc_root)
                logger.critical("SSL: %s", err)
                return self._record(row, domain, FAILED, doc_root=site.doc_root, error=f"SSL: {err}")
            self._stop_point()
            warning = None
            try:
                matomo_id = self.services.matomo.create_tracking_site(domain, dry_run=dry_run)
            except MatomoError as err:
                self.matomo_failed = True
                warning = f"Matomo: {err}"
                logger.warning("%s; the site goes live without tracking", warning)
                matomo_id = None
            self._stop_point()
            plan = None
            if dry_run:
                plan = _plan(row, self.services.server_name, site, certificate_requested,
                             self._matomo_plan(domain, matomo_id, "Matomo site {} exists"), warning)
            return self._record(row, domain, ACTIVE, doc_root=site.doc_root, matomo_id=matomo_id, warning=warning,
                                plan=plan)

    def _not_this_servers(self, row, domain):
        """None when this server is to build the site: DNS names it (when SERVER_ADDRESSES is set) and the row is
        claimed for it. Otherwise the outcome of leaving the row: unassigned for the server DNS names, waiting
        for DNS (a row assigned here), or claimed by another server first."""
        try:
            elsewhere = self._dns_elsewhere(domain)
        except DnsError as err:  # no answer says nothing about where the site lives
            return self._postpone(row, domain, str(err))
        if elsewhere is None:
            return self._not_claimed(row, domain)
        if row.get("hosting_server") is None:
            left = f"DNS points elsewhere: {elsewhere}"
            logger.info("%s; left unassigned for the server it names", left)
            return SiteOutcome(row.get("id"), domain, LEFT_TO_OTHERS, warning=left)
        waiting = f"waiting for DNS: {elsewhere}"
        logger.info("%s; the row stays %s", waiting, row.get("status_hosting"))
        if row.get("error_message") != waiting:
            try:
                self.services.supabase.note(row["id"], waiting, read_status=row.get("status_hosting") or "pending",
                                            dry_run=self.options.dry_run)
            except SetupError:
                raise
            except ServiceError as err:
                logger.error("Could not note why the row waits: %s", err)
        return SiteOutcome(row.get("id"), domain, WAITING_FOR_DNS, warning=waiting)

    def _dns_elsewhere(self, domain):
        """Where DNS says the site lives when that is not here ("example.com resolves to …, not this server (…)"),
        or None when it names this server or SERVER_ADDRESSES is unset."""
        here = self.services.server_addresses
        if not here:
            return None
        found = self.services.dns.addresses(domain)
        if found & set(here):
            return None
        shown = ", ".join(str(address) for address in sorted(found, key=lambda a: (a.version, a))) or "no address"
        return f"{domain} resolves to {shown}, not this server ({', '.join(str(address) for address in here)})"

    def _not_claimed(self, row, domain):
        """None when the row is this server's to work on (it was, or the claim now won); else the outcome of
        leaving it: another server holds the site (this row or another of the same site), or another row of the
        site went live already and this one is failed naming it."""
        name = self.services.server_name
        if name is None:
            return None
        read_status = row.get("status_hosting") or "pending"
        try:
            others = self.services.supabase.other_rows_of_site(domain, row["id"]) if _is_host_name(domain) else []
            elsewhere = next((other for other in others if other.get("hosting_server") not in (None, name)), None)
            if elsewhere is not None:
                logger.info("Row %s of the same site is assigned to %s; this row is left to it", elsewhere.get("id"),
                            elsewhere.get("hosting_server"))
                return SiteOutcome(row.get("id"), domain, LEFT_TO_OTHERS,
                                   warning=f"row {elsewhere.get('id')} of the same site is assigned to "
                                           f"{elsewhere.get('hosting_server')}")
            if row.get("hosting_server") is None:
                if not self.services.supabase.claim(row["id"], read_status, dry_run=self.options.dry_run):
                    owner, machine = self.services.supabase.holder(row["id"])
                    if owner == name:  # won under this server's own name: by another machine cloned under it?
                        self._same_machine(row["id"], machine)
                    logger.info("Claimed by %s first; left to it", owner or "another server")
                    return SiteOutcome(row.get("id"), domain, LEFT_TO_OTHERS,
                                       warning=f"assigned to {owner}" if owner else None)
            else:
                self._take_over(row, read_status)
        except SetupError:
            raise
        except ServiceError as err:
            return self._postpone(row, domain, f"could not claim the row: {err}")
        live = next((other for other in others if other.get("status_hosting") == ACTIVE), None)
        return None if live is None else self._fail_as_duplicate(row, domain, live.get("id"))

    def _take_over(self, row, read_status):
        """A row assigned to this server's name: this machine's, or taken for it when no machine holds it yet
        (assigned by hand, or claimed before machines were recorded).

        Raises:
            ServerNameClash: another machine holds it under this server's name.
        """
        machine = self.services.machine
        if machine is None or row.get("hosting_machine") == machine:
            return
        held = row.get("hosting_machine")
        if held is None:
            if self.services.supabase.take_over(row["id"], read_status, dry_run=self.options.dry_run):
                return
            held = self.services.supabase.holder(row["id"])[1]
        self._same_machine(row["id"], held)

    def _same_machine(self, row_id, held):
        """Raises ServerNameClash when `held`, the machine that claimed row `row_id` under this server's name, is
        another machine."""
        machine, name = self.services.machine, self.services.server_name
        if machine is None or held in (None, machine):
            return
        raise ServerNameClash(name, row_id, held, machine)

    def _fail_as_duplicate(self, row, domain, owner):
        """A row for a site another row set up, in this run or an earlier one: failed, naming that row."""
        reason = f"duplicate: row {owner} is the same site ({domain}) and is set up instead of this one"
        logger.error("Row %s: %s", row.get("id"), reason)
        return self._record(row, domain, FAILED, error=reason)

    def _matomo_plan(self, domain, matomo_id, found):
        """A dry run's Matomo step as the report shows it: the site found, or the one a run would make for this
        name or for its www./apex twin read earlier in the run (one site serves both)."""
        if matomo_id:
            return found.format(matomo_id)
        planned = self.services.matomo.planned_site_of(domain)
        return "would create a Matomo site" if planned in (None, domain) else \
            f"would use the Matomo site {planned} would get"

    def _postpone(self, row, domain, reason, doc_root=None):
        """A service still unreachable after every retry says nothing about the site: leave the row as read, so
        the next run (not only --retry-failed) takes it again."""
        logger.error("%s; the row stays %s and the next run tries again", reason, row.get("status_hosting"))
        return SiteOutcome(row.get("id"), domain, POSTPONED, doc_root, error=reason)

    def _stop_point(self):
        if self.stop_event.is_set():
            raise RunInterrupted()

    def _record(self, row, domain, status, doc_root=None, matomo_id=None, error=None, warning=None, plan=None):
        """Write the outcome with a conditional update; a failed write leaves the row as read, for the next run.
        In a dry run the outcome says what would be, and `plan` what each step found or would do."""
        dry_run = self.options.dry_run
        try:
            written = self.services.supabase.update_site_hosting_status(
                row["id"], status, doc_root=doc_root, matomo_id=matomo_id, error_message=error,
                read_status=row.get("status_hosting") or "pending", dry_run=dry_run)
        except SetupError:
            raise
        except ServiceError as err:
            logger.error("Could not record the outcome (%s): %s; the row stays %s and the next run converges",
                         status, err, row.get("status_hosting"))
            return SiteOutcome(row["id"], domain, NOT_RECORDED, doc_root, matomo_id,
                               error=f"{status}, but not recorded: {err}")
        if not written:
            logger.warning("Row %s was changed by someone else during the run; left untouched", row["id"])
            return SiteOutcome(row["id"], domain, "changed meanwhile", doc_root, matomo_id, error, warning)
        if dry_run and status == ACTIVE:
            logger.info("Would set up %s: %s (dry run: nothing changed)", doc_root, plan)
            return SiteOutcome(row["id"], domain, "would set up", doc_root, matomo_id, warning=plan)
        if dry_run:
            return SiteOutcome(row["id"], domain, "would fail", doc_root, matomo_id, error)
        if status == ACTIVE:
            logger.info("Site is live: %s%s", doc_root, f", Matomo idSite {matomo_id}" if matomo_id else ", no Matomo")
        return SiteOutcome(row["id"], domain, status, doc_root, matomo_id, error, warning)


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


def _plan(row, server_name, site, certificate_requested, matomo, matomo_warning):
    """What a dry run found at each step of a site it would set up, as the report shows it."""
    plan = ["would claim the row"] if row.get("hosting_server") is None and server_name else []
    if not site.created:
        plan.append(f"CloudPanel site exists (site user {site.site_user})")
    elif site.looked_up:
        plan.append(f"would create CloudPanel site user {site.site_user}")
    else:
        plan.append(f"would create CloudPanel site user {site.site_user} unless the site exists already")
    plan.append("would request a certificate" if certificate_requested else "certificate served already, no request")
    plan.append(matomo_warning or matomo)
    return "; ".join(plan)


def _is_host_name(text):
    """A normalised domain (not the escaped text of a row that failed validation)."""
    return isinstance(text, str) and bool(text) and all(c.isalnum() or c in ".-" for c in text)


def _normalised_or_none(value):
    try:
        return normalise_domain(value)
    except InvalidDomainError:
        return None


def _normalised_or_raw(value):
    try:
        return normalise_domain(value)
    except InvalidDomainError:
        return value


def _shown_domain(row):
    value = row.get("domain")
    if isinstance(value, str) and value.strip() and value.strip().isprintable():
        return value.strip()
    return repr(value)
