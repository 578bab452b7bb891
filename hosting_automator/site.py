"""What happens to one site: its steps in order (validate, DNS, claim, CloudPanel site, certificate, Matomo,
record), and the Matomo backfill of one live row. The run over every site is in run.py."""

import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hosting_automator.core.logging_setup import site_context
from hosting_automator.domains import normalise_domain, twin_of
from hosting_automator.errors import (
    CertificateError,
    CloudPanelError,
    DnsError,
    InvalidDomainError,
    MatomoError,
    RunInterrupted,
    ServerNameClash,
    ServiceError,
)
from hosting_automator.report import Outcome, SiteOutcome

if TYPE_CHECKING:
    from hosting_automator.services import Services

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Row:
    """A row of the sites table as the steps read it, built once from the table's dict. `domain` is as written,
    perhaps not text at all; `status_hosting` is what a conditional write expects to find there."""

    id: object
    domain: object
    status_hosting: str = "pending"
    hosting_server: str | None = None
    hosting_machine: str | None = None
    error_message: str | None = None

    @classmethod
    def of(cls, table_row: dict) -> "Row":
        return cls(table_row.get("id"), table_row.get("domain"), table_row.get("status_hosting") or "pending",
                   table_row.get("hosting_server"), table_row.get("hosting_machine"), table_row.get("error_message"))

    @property
    def shown_domain(self) -> str:
        """The domain as a log line or the report may show it, valid or not."""
        if isinstance(self.domain, str) and self.domain.strip() and self.domain.strip().isprintable():
            return self.domain.strip()
        return repr(self.domain)


class SiteSteps:
    """The steps of one site against `services` (.supabase, .cloudpanel, .matomo, .dns, and this server's
    .server_name, .server_addresses and .machine: None and empty on a single server). A dry run goes through the
    same steps: each side effect is skipped where it is made, and says so."""

    def __init__(self, services: "Services", dry_run: bool, stop_event: threading.Event) -> None:
        self.services = services
        self.dry_run = dry_run
        self.stop_event = stop_event
        self.matomo_failed = False  # Matomo failed for a site of this run: no backfill this run
        # a dry run's Matomo sites, not made: name -> the name whose site would track it (itself or its www. twin)
        self._planned_matomo_sites = {}
        self._planned_lock = threading.Lock()

    def set_up(self, row: Row) -> SiteOutcome:
        """One pending row, step by step.

        Raises:
            RunInterrupted: a signal asked the run to stop between two steps.
            SetupError: a setting every site would meet is wrong; the run stops.
        """
        try:
            domain = normalise_domain(row.domain)
        except InvalidDomainError as err:
            logger.error("Site %s: invalid domain: %s", row.id, err)
            return (self._not_claimed(row, row.shown_domain)
                    or self._record(row, row.shown_domain, Outcome.FAILED, error=f"invalid domain: {err}"))
        with site_context(domain):
            not_ours = self._not_this_servers(row, domain)
            if not_ours is not None:
                return not_ours
            logger.info("Setting up hosting")
            try:
                site = self.services.cloudpanel.create_static_site(domain, dry_run=self.dry_run)
            except CloudPanelError as err:
                return self._step_failed(row, domain, "CloudPanel", err, logging.ERROR)
            self._stop_point()
            try:
                certificate_requested = self.services.cloudpanel.provision_ssl(domain, new_site=site.created,
                                                                               dry_run=self.dry_run)
            except (CertificateError, CloudPanelError) as err:
                return self._step_failed(row, domain, "SSL", err, logging.CRITICAL, site.doc_root)
            self._stop_point()
            matomo_id, warning = self._tracking_site(domain)
            self._stop_point()
            plan = _plan(row, self.services.server_name, site, certificate_requested,
                         warning or self._matomo_plan(domain, matomo_id, "Matomo site {} exists")) \
                if self.dry_run else None
            return self._record(row, domain, Outcome.ACTIVE, doc_root=site.doc_root, matomo_id=matomo_id,
                                warning=warning, plan=plan)

    def leave_to_owner(self, row: Row, domain: str | None, owner: object) -> SiteOutcome:
        """A second row for a site another row of this run owns: nothing is created twice, and the row says why."""
        with site_context(domain):
            not_ours = self._not_this_servers(row, domain)
            if not_ours is not None:
                return not_ours
            return self._fail_as_duplicate(row, domain, owner)

    def backfill(self, row: Row) -> SiteOutcome | None:
        """One live row without analytics: claimed when unassigned, its Matomo site looked up or made, its id
        written."""
        try:
            domain = normalise_domain(row.domain)
        except InvalidDomainError:
            return None  # a live row with a name that cannot be served: not this job's to repair
        with site_context(domain):
            if row.hosting_server is None and self.services.server_name is not None:
                if not self.services.supabase.claim(row.id, "active", matomo_id=None, dry_run=self.dry_run):
                    return None  # another server repairs it
            elif self.services.server_name is not None:
                _take_over(self.services, row, "active", self.dry_run)
            matomo_id = self.services.matomo.create_tracking_site(domain, dry_run=self.dry_run)
            if not self.services.supabase.record_matomo_id(row.id, matomo_id, dry_run=self.dry_run):
                logger.warning("Row %s was changed by someone else; its Matomo site %d is not recorded", row.id,
                               matomo_id)
                return SiteOutcome(row.id, domain, Outcome.CHANGED_MEANWHILE, matomo_id=matomo_id)
            if self.dry_run:
                plan = self._matomo_plan(domain, matomo_id, "Matomo site {} exists, would write its id")
                logger.info("Live without Matomo: %s (dry run: nothing changed)", plan)
                return SiteOutcome(row.id, domain, Outcome.WOULD_ADD_MATOMO, matomo_id=matomo_id, warning=plan)
            logger.info("Matomo site %d added to the live site", matomo_id)
            return SiteOutcome(row.id, domain, Outcome.MATOMO_ADDED_LATER, matomo_id=matomo_id)

    # -- the steps' parts ----------------------------------------------------------------------------------

    def _step_failed(self, row, domain, step, err, level, doc_root=None):
        """A step's error as the row's outcome. Transient (a service still unreachable after every retry): it says
        nothing about the site, the row stays as read for the next run. Anything else fails the site."""
        reason = f"{step}: {err}"
        if err.transient:
            self._stop_point()  # stopping: the step's failure may be the signal's doing
            return _postponed(row, domain, reason, doc_root)
        logger.log(level, "%s", reason)
        return self._record(row, domain, Outcome.FAILED, doc_root=doc_root, error=reason)

    def _tracking_site(self, domain):
        """(Matomo id, warning): a Matomo failure is only a warning, the site goes live without tracking."""
        try:
            return self.services.matomo.create_tracking_site(domain, dry_run=self.dry_run), None
        except MatomoError as err:
            self.matomo_failed = True
            warning = f"Matomo: {err}"
            logger.warning("%s; the site goes live without tracking", warning)
            return None, warning

    def _not_this_servers(self, row, domain):
        """None when this server is to build the site: DNS names it (when SERVER_ADDRESSES is set) and the row is
        claimed for it. Otherwise the outcome of leaving the row: unassigned for the server DNS names, waiting
        for DNS (a row assigned here), or claimed by another server first."""
        try:
            elsewhere = _dns_elsewhere(self.services, domain)
        except DnsError as err:  # no answer says nothing about where the site lives
            return _postponed(row, domain, str(err))
        if elsewhere is None:
            return self._not_claimed(row, domain)
        if row.hosting_server is None:
            left = f"DNS points elsewhere: {elsewhere}"
            logger.info("%s; left unassigned for the server it names", left)
            return SiteOutcome(row.id, domain, Outcome.LEFT_TO_OTHERS, warning=left)
        waiting = f"waiting for DNS: {elsewhere}"
        logger.info("%s; the row stays %s", waiting, row.status_hosting)
        if row.error_message != waiting:
            try:
                self.services.supabase.note(row.id, waiting, read_status=row.status_hosting,
                                            dry_run=self.dry_run)
            except ServiceError as err:
                logger.error("Could not note why the row waits: %s", err)
        return SiteOutcome(row.id, domain, Outcome.WAITING_FOR_DNS, warning=waiting)

    def _not_claimed(self, row, domain):
        """None when the row is this server's to work on (it was, or the claim now won); else the outcome of
        leaving it: another server holds the site (this row or another of the same site), or another row of the
        site went live already and this one is failed naming it."""
        name = self.services.server_name
        if name is None:
            return None
        read_status = row.status_hosting
        try:
            others = [Row.of(other) for other in self.services.supabase.other_rows_of_site(domain, row.id)] \
                if _is_host_name(domain) else []
            elsewhere = next((other for other in others if other.hosting_server not in (None, name)), None)
            if elsewhere is not None:
                logger.info("Row %s of the same site is assigned to %s; this row is left to it", elsewhere.id,
                            elsewhere.hosting_server)
                return SiteOutcome(row.id, domain, Outcome.LEFT_TO_OTHERS,
                                   warning=f"row {elsewhere.id} of the same site is assigned to "
                                           f"{elsewhere.hosting_server}")
            if row.hosting_server is None:
                if not self.services.supabase.claim(row.id, read_status, dry_run=self.dry_run):
                    owner, machine = self.services.supabase.holder(row.id)
                    if owner == name:  # won under this server's own name: by another machine cloned under it?
                        _same_machine(self.services, row.id, machine)
                    logger.info("Claimed by %s first; left to it", owner or "another server")
                    return SiteOutcome(row.id, domain, Outcome.LEFT_TO_OTHERS,
                                       warning=f"assigned to {owner}" if owner else None)
            else:
                _take_over(self.services, row, read_status, self.dry_run)
        except ServiceError as err:
            return _postponed(row, domain, f"could not claim the row: {err}")
        live = next((other for other in others if other.status_hosting == "active"), None)
        return None if live is None else self._fail_as_duplicate(row, domain, live.id)

    def _fail_as_duplicate(self, row, domain, owner):
        """A row for a site another row set up, in this run or an earlier one: failed, naming that row."""
        reason = f"duplicate: row {owner} is the same site ({domain}) and is set up instead of this one"
        logger.error("Row %s: %s", row.id, reason)
        return self._record(row, domain, Outcome.FAILED, error=reason)

    def _matomo_plan(self, domain, matomo_id, found):
        """A dry run's Matomo step as the report shows it: the site found, or the one a run would make for this
        name or for its www./apex twin set up earlier in the run (a run makes one site for both, naming both)."""
        if matomo_id:
            return found.format(matomo_id)
        with self._planned_lock:
            planned = self._planned_matomo_sites.setdefault(domain, domain)
            self._planned_matomo_sites.setdefault(twin_of(domain), planned)
        return "would create a Matomo site" if planned == domain else f"would use the Matomo site {planned} would get"

    def _stop_point(self):
        if self.stop_event.is_set():
            raise RunInterrupted()

    def _record(self, row, domain, status, doc_root=None, matomo_id=None, error=None, warning=None, plan=None):
        """Write the outcome with a conditional update; a failed write leaves the row as read, for the next run.
        In a dry run the outcome says what would be, and `plan` what each step found or would do."""
        try:
            written = self.services.supabase.update_site_hosting_status(
                row.id, status, doc_root=doc_root, matomo_id=matomo_id, error_message=error,
                read_status=row.status_hosting, dry_run=self.dry_run)
        except ServiceError as err:
            logger.error("Could not record the outcome (%s): %s; the row stays %s and the next run converges",
                         status, err, row.status_hosting)
            return SiteOutcome(row.id, domain, Outcome.NOT_RECORDED, doc_root, matomo_id,
                               error=f"{status}, but not recorded: {err}")
        if not written:
            logger.warning("Row %s was changed by someone else during the run; left untouched", row.id)
            return SiteOutcome(row.id, domain, Outcome.CHANGED_MEANWHILE, doc_root, matomo_id, error, warning)
        return _recorded(SiteOutcome(row.id, domain, status, doc_root, matomo_id, error, warning), self.dry_run,
                         plan)


def _recorded(outcome, dry_run, plan):
    """The outcome of a row whose write landed (in a dry run: would have), said in the log."""
    if dry_run and outcome.outcome == Outcome.ACTIVE:
        logger.info("Would set up %s: %s (dry run: nothing changed)", outcome.doc_root, plan)
        return SiteOutcome(outcome.site_id, outcome.domain, Outcome.WOULD_SET_UP, outcome.doc_root, outcome.matomo_id,
                           warning=plan)
    if dry_run:
        return SiteOutcome(outcome.site_id, outcome.domain, Outcome.WOULD_FAIL, outcome.doc_root, outcome.matomo_id,
                           outcome.error)
    if outcome.outcome == Outcome.ACTIVE:
        logger.info("Site is live: %s%s", outcome.doc_root,
                    f", Matomo idSite {outcome.matomo_id}" if outcome.matomo_id else ", no Matomo")
    return outcome


def interrupted(row: Row) -> SiteOutcome:
    """A row a signal stopped between two steps: left as it was read."""
    with site_context(row.shown_domain):
        logger.warning("Stopped before finishing this site: its row stays %s for the next run",
                       row.status_hosting)
    return SiteOutcome(row.id, row.shown_domain, Outcome.INTERRUPTED)


def _postponed(row, domain, reason, doc_root=None):
    """A service still unreachable after every retry says nothing about the site: leave the row as read, so
    the next run (not only --retry-failed) takes it again."""
    logger.error("%s; the row stays %s and the next run tries again", reason, row.status_hosting)
    return SiteOutcome(row.id, domain, Outcome.POSTPONED, doc_root, error=reason)


def _dns_elsewhere(services, domain):
    """Where DNS says the site lives when that is not here ("example.com resolves to …, not this server (…)"),
    or None when it names this server or SERVER_ADDRESSES is unset."""
    here = services.server_addresses
    if not here:
        return None
    found = services.dns.addresses(domain)
    if found & set(here):
        return None
    shown = ", ".join(str(address) for address in sorted(found, key=lambda a: (a.version, a))) or "no address"
    return f"{domain} resolves to {shown}, not this server ({', '.join(str(address) for address in here)})"


def _take_over(services, row, read_status, dry_run):
    """A row assigned to this server's name: this machine's, or taken for it when no machine holds it yet
    (assigned by hand, or claimed before machines were recorded).

    Raises:
        ServerNameClash: another machine holds it under this server's name.
    """
    machine = services.machine
    if machine is None or row.hosting_machine == machine:
        return
    held = row.hosting_machine
    if held is None:
        if services.supabase.take_over(row.id, read_status, dry_run=dry_run):
            return
        held = services.supabase.holder(row.id)[1]
    _same_machine(services, row.id, held)


def _same_machine(services, row_id, held):
    """Raises ServerNameClash when `held`, the machine that claimed row `row_id` under this server's name, is
    another machine."""
    machine, name = services.machine, services.server_name
    if machine is None or held in (None, machine):
        return
    raise ServerNameClash(name, row_id, held, machine)


def _plan(row, server_name, site, certificate_requested, matomo):
    """What a dry run found at each step of a site it would set up, as the report shows it."""
    plan = ["would claim the row"] if row.hosting_server is None and server_name else []
    if not site.created:
        plan.append(f"CloudPanel site exists (site user {site.site_user})")
    elif site.looked_up:
        plan.append(f"would create CloudPanel site user {site.site_user}")
    else:
        plan.append(f"would create CloudPanel site user {site.site_user} unless the site exists already")
    plan.append("would request a certificate" if certificate_requested else "certificate served already, no request")
    plan.append(matomo)
    return "; ".join(plan)


def _is_host_name(text):
    """A normalised domain (not the escaped text of a row that failed validation)."""
    return isinstance(text, str) and bool(text) and all(c.isalnum() or c in ".-" for c in text)
