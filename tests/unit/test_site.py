"""The outcome of each step, row by row, with in-memory services: what each step's outcome does to the row."""

import ipaddress
import logging
import threading

import pytest

from hosting_automator.errors import (
    CertificateError,
    CloudPanelError,
    DnsError,
    MatomoError,
    SupabaseError,
    SupabaseSetupError,
)
from hosting_automator.run import Run, RunOptions
from hosting_automator.report import RunOutcomes
from hosting_automator.services.cloudpanel_client import StaticSite, document_root, site_user_for


class MemorySupabase:
    def __init__(self, rows):
        self.rows = {row["id"]: dict(row) for row in rows}
        self.updates = []
        self.fail_update = None
        self.fail_fetch_after = None
        self.fetched_statuses = None

    def fetch_pending_hosting_sites(self, statuses=("pending",)):
        self.fetched_statuses = statuses
        for count, row_id in enumerate(sorted(self.rows)):
            if self.fail_fetch_after is not None and count >= self.fail_fetch_after:
                raise self.fail_fetch_after_error
            row = self.rows[row_id]
            if row["status_dns"] == "active" and row["status_hosting"] in statuses and \
                    row.get("hosting_server") in (None, self.server_name):
                yield {key: row.get(key) for key in ("id", "domain", "status_hosting", "hosting_server",
                                                      "error_message")}

    server_name = None
    claims_lost_to = None  # another server's name: every claim loses to it

    def claim(self, site_id, read_status="pending", *, dry_run=False, **still):
        row = self.rows[site_id]
        if dry_run:
            return True
        if self.claims_lost_to:
            row["hosting_server"] = self.claims_lost_to
        if row.get("hosting_server") is not None or row["status_hosting"] != read_status:
            return False
        row["hosting_server"] = self.server_name
        return True

    def note(self, site_id, error_message, read_status="pending", dry_run=False):
        if dry_run:
            return True
        self.updates.append(site_id)
        self.rows[site_id]["error_message"] = error_message
        return True

    def holder(self, site_id):
        return self.rows[site_id].get("hosting_server"), self.rows[site_id].get("hosting_machine")

    def other_rows_of_site(self, domain, site_id):
        return [{"id": row["id"], "hosting_server": row.get("hosting_server"), "status_hosting": row["status_hosting"]}
                for row in self.rows.values()
                if row["domain"].lower().rstrip(".") == domain and row["id"] != site_id
                and row["status_hosting"] in ("pending", "active")]

    def fetch_active_without_matomo(self):
        for row_id in sorted(self.rows):
            row = self.rows[row_id]
            if row["status_hosting"] == "active" and row["matomo_id"] is None:
                yield dict(row)

    def record_matomo_id(self, site_id, matomo_id, dry_run=False):
        if dry_run:
            return True
        self.updates.append(site_id)
        self.rows[site_id]["matomo_id"] = matomo_id
        return True

    def update_site_hosting_status(self, site_id, status, doc_root=None, matomo_id=None, error_message=None,
                                   read_status="pending", dry_run=False):
        if dry_run:
            return True
        self.updates.append(site_id)
        if self.fail_update:
            raise self.fail_update
        row = self.rows[site_id]
        if row["status_hosting"] != read_status:
            return False
        row.update(status_hosting=status, doc_root=doc_root, matomo_id=matomo_id, error_message=error_message)
        return True


class MemoryCloudPanel:
    def __init__(self):
        self.sites = {}
        self.certificates = []
        self.certificate_calls = []
        self.fail_site = {}
        self.fail_certificate = {}

    def existing_site_user(self, domain):
        return self.sites.get(domain)

    def create_static_site(self, domain, dry_run=False):
        if domain in self.fail_site:
            raise CloudPanelError(self.fail_site[domain])
        if domain in self.sites:
            return StaticSite(document_root(self.sites[domain], domain), created=False)
        if dry_run:  # the site user the real client would derive
            return StaticSite(document_root(site_user_for(domain), domain), created=True)
        self.sites[domain] = "user-" + domain.split(".")[0]
        return StaticSite(document_root(self.sites[domain], domain), created=True)

    def provision_ssl(self, domain, new_site=False, dry_run=False):
        self.certificate_calls.append((domain, new_site))
        if domain in self.fail_certificate:
            raise CertificateError(self.fail_certificate[domain])
        if not new_site and domain in self.served:
            return False
        if not dry_run:
            self.certificates.append(domain)
        return True


class MemoryMatomo:
    def __init__(self):
        self.sites = {}
        self.fail = {}

    def find_site(self, domain):
        return self.sites.get(domain)

    def create_tracking_site(self, domain, dry_run=False):
        if domain in self.fail:
            raise MatomoError(self.fail[domain])
        if dry_run:
            return self.sites.get(domain)
        return self.sites.setdefault(domain, len(self.sites) + 1)


class MemoryServices:
    def __init__(self, rows, retry):
        self.supabase = MemorySupabase(rows)
        self.cloudpanel = MemoryCloudPanel()
        self.matomo = MemoryMatomo()
        self.retry = retry
        self.served = self.cloudpanel.served = set()  # names whose certificate the server serves already
        self.server_name = None  # one server: no claims
        self.machine = None  # no machine identity: two machines under one name are not looked for
        self.server_addresses = ()
        self.dns = None


def row(site_id, domain, status_dns="active", status_hosting="pending"):
    return {"id": site_id, "domain": domain, "status_dns": status_dns, "status_hosting": status_hosting,
            "doc_root": None, "matomo_id": None, "error_message": None}


@pytest.fixture(autouse=True)
def _info_logged(caplog):
    caplog.set_level(logging.INFO)


@pytest.fixture
def services(retry):
    return MemoryServices([row(1, "good.example")], retry)


def run(services, **options):
    this_run = Run(services, RunOptions(**options))
    return this_run, list(this_run.run())


def test_every_step_succeeds_row_becomes_active_with_doc_root_and_matomo_id(services):
    _, outcomes = run(services)
    assert services.supabase.rows[1] | {} == row(1, "good.example") | {
        "status_hosting": "active", "doc_root": "/home/user-good/htdocs/good.example", "matomo_id": 1}
    assert [o.outcome for o in outcomes] == ["active"]
    assert services.cloudpanel.certificates == ["good.example"]


def test_invalid_domain_fails_the_row_and_calls_no_service(retry):
    services = MemoryServices([row(1, "example.com; rm -rf /")], retry)
    _, outcomes = run(services)
    assert services.supabase.rows[1]["status_hosting"] == "failed"
    assert services.supabase.rows[1]["error_message"] == (
        "invalid domain: domain contains characters not allowed in a host name (;): 'example.com; rm -rf /'")
    assert services.cloudpanel.sites == {} and services.matomo.sites == {}
    assert outcomes[0].is_failure


def test_cloudpanel_failure_fails_the_row_with_its_reason_and_goes_on(retry, caplog):
    services = MemoryServices([row(1, "bad.example"), row(2, "good.example")], retry)
    services.cloudpanel.fail_site["bad.example"] = "clpctl site:add:static failed: domainName: This value is not valid."
    run(services)
    assert services.supabase.rows[1]["status_hosting"] == "failed"
    assert services.supabase.rows[1]["error_message"] == (
        "CloudPanel: clpctl site:add:static failed: domainName: This value is not valid.")
    assert services.supabase.rows[1]["doc_root"] is None
    assert services.supabase.rows[2]["status_hosting"] == "active"
    assert [r.levelname for r in caplog.records if "CloudPanel:" in r.getMessage()] == ["ERROR"]


def test_certificate_failure_fails_the_row_keeps_doc_root_and_logs_critical(services, caplog):
    services.cloudpanel.fail_certificate["good.example"] = "clpctl failed: good.example: Domain could not be validated"
    run(services)
    assert services.supabase.rows[1]["status_hosting"] == "failed"
    assert services.supabase.rows[1]["doc_root"] == "/home/user-good/htdocs/good.example"
    assert services.supabase.rows[1]["error_message"] == "SSL: clpctl failed: good.example: Domain could not be validated"
    assert services.matomo.sites == {}
    assert [r.levelname for r in caplog.records if r.getMessage().startswith("SSL: clpctl")] == ["CRITICAL"]


def test_certificate_step_is_told_whether_the_site_was_created_by_this_run(retry):
    """A site made a moment ago cannot serve a certificate yet: the CloudPanel client skips its look for it."""
    services = MemoryServices([row(1, "new.example"), row(2, "old.example")], retry)
    services.cloudpanel.sites["old.example"] = "user-old"  # a rerun: made before

    run(services)

    assert services.cloudpanel.certificate_calls == [("new.example", True), ("old.example", False)]


def test_matomo_failure_is_a_warning_and_the_site_still_goes_live(services, caplog):
    services.matomo.fail["good.example"] = "SitesManager.addSite: HTTP 500"
    _, outcomes = run(services)
    assert services.supabase.rows[1]["status_hosting"] == "active"
    assert services.supabase.rows[1]["matomo_id"] is None
    assert services.supabase.rows[1]["error_message"] is None
    assert outcomes[0].warning == "Matomo: SitesManager.addSite: HTTP 500"
    assert not outcomes[0].is_failure
    assert [r.levelname for r in caplog.records if "goes live without tracking" in r.getMessage()] == ["WARNING"]


def test_final_write_failing_leaves_the_row_as_read_and_counts_as_failure(services, caplog):
    services.supabase.fail_update = SupabaseError("record the outcome of site 1: HTTP 500")
    _, outcomes = run(services)
    assert services.supabase.rows[1]["status_hosting"] == "pending"
    assert outcomes[0].outcome == "not recorded" and outcomes[0].is_failure
    assert "the row stays pending and the next run converges" in caplog.text


def test_row_changed_meanwhile_is_left_alone_with_a_warning(services, caplog):
    original = services.cloudpanel.create_static_site

    def someone_else_takes_it(domain, dry_run=False):
        services.supabase.rows[1]["status_hosting"] = "active"
        return original(domain, dry_run)

    services.cloudpanel.create_static_site = someone_else_takes_it
    _, outcomes = run(services)
    assert services.supabase.rows[1]["doc_root"] is None
    assert outcomes[0].outcome == "changed meanwhile" and not outcomes[0].is_failure
    assert "Row 1 was changed by someone else during the run; left untouched" in caplog.text


def test_reading_the_pending_sites_failing_aborts_the_run(services):
    services.supabase.fail_fetch_after = 0
    services.supabase.fail_fetch_after_error = SupabaseError("read the pending sites: cannot reach Supabase")
    this_run, outcomes = run(services)
    assert outcomes == []
    assert this_run.aborted == "cannot read the pending sites: read the pending sites: cannot reach Supabase"


def test_setup_error_while_writing_aborts_the_run_before_the_next_site(retry):
    services = MemoryServices([row(1, "a.example"), row(2, "b.example"), row(3, "c.example")], retry)
    services.supabase.fail_update = SupabaseSetupError("a column is missing")
    this_run, outcomes = run(services)
    assert this_run.aborted == "a column is missing"
    assert services.supabase.updates == [1]
    assert "b.example" not in services.cloudpanel.sites


def test_ineligible_rows_are_not_touched(retry):
    services = MemoryServices([row(1, "dns.example", status_dns="pending"), row(2, "done.example", status_hosting="active"),
                               row(3, "failed.example", status_hosting="failed"), row(4, "new.example")], retry)
    run(services)
    assert services.supabase.updates == [4]


def test_retry_failed_takes_failed_rows_and_writes_conditionally_on_failed(retry):
    services = MemoryServices([row(3, "failed.example", status_hosting="failed")], retry)
    run(services, retry_failed=True)
    assert services.supabase.fetched_statuses == ("pending", "failed")
    assert services.supabase.rows[3]["status_hosting"] == "active"


def test_domain_option_selects_by_normalised_name(retry):
    services = MemoryServices([row(1, "a.example"), row(2, "B.Example."), row(3, "c.example")], retry)
    _, outcomes = run(services, domains=("b.example", "C.EXAMPLE"))
    assert [o.domain for o in outcomes] == ["b.example", "c.example"]
    assert services.supabase.rows[1]["status_hosting"] == "pending"


def test_limit_caps_the_sites_taken(retry):
    services = MemoryServices([row(n, f"s{n}.example") for n in range(1, 6)], retry)
    _, outcomes = run(services, limit=2)
    assert [o.site_id for o in outcomes] == [1, 2]
    assert [services.supabase.rows[n]["status_hosting"] for n in range(1, 6)] == ["active"] * 2 + ["pending"] * 3


def test_dry_run_writes_nothing_and_says_what_it_would_do(retry, caplog):
    services = MemoryServices([row(1, "new.example"), row(2, "old.example")], retry)
    services.cloudpanel.sites["old.example"] = "olduser"
    services.served.add("old.example")
    services.matomo.sites["old.example"] = 9
    _, outcomes = run(services, dry_run=True)
    assert services.supabase.updates == [] and services.cloudpanel.certificates == []
    assert services.cloudpanel.sites == {"old.example": "olduser"} and services.matomo.sites == {"old.example": 9}
    assert outcomes[0].doc_root.startswith("/home/new-example-") and outcomes[0].doc_root.endswith("/htdocs/new.example")
    assert outcomes[0].warning == ("would create CloudPanel site user " + outcomes[0].doc_root.split("/")[2]
                                   + "; would request a certificate; would create a Matomo site")
    assert outcomes[1].warning == ("CloudPanel site exists (site user olduser); certificate served already, "
                                   "no request; Matomo site 9 exists")
    assert "(dry run: nothing changed)" in caplog.text


def test_dry_run_plans_one_matomo_site_for_a_name_and_its_www_twin_as_a_run_makes_one(retry):
    """A run makes one Matomo site naming both URLs, and the twin set up second finds it; a dry run makes none,
    so its plan says which site the twin would get."""
    services = MemoryServices([row(1, "twin.example"), row(2, "www.twin.example"), row(3, "other.example")], retry)

    _, outcomes = run(services, dry_run=True)

    assert [outcome.warning.split("; ")[-1] for outcome in outcomes] == [
        "would create a Matomo site", "would use the Matomo site twin.example would get", "would create a Matomo site"]
    assert services.matomo.sites == {}


def test_dry_run_of_a_twin_whose_matomo_step_failed_plans_no_site_for_the_other_twin(retry):
    """A run whose first twin fails in Matomo makes no site for it: the second twin's run creates one."""
    services = MemoryServices([row(1, "twin.example"), row(2, "www.twin.example")], retry)
    services.matomo.fail["twin.example"] = "HTTP 500"

    _, outcomes = run(services, dry_run=True)

    assert [outcome.warning.split("; ")[-1] for outcome in outcomes] == ["Matomo: HTTP 500",
                                                                         "would create a Matomo site"]


def test_stop_requested_mid_site_abandons_it_without_writing(retry):
    services = MemoryServices([row(1, "a.example"), row(2, "b.example")], retry)
    stop = threading.Event()
    original = services.cloudpanel.create_static_site

    def signal_arrives(domain, dry_run=False):
        stop.set()
        return original(domain, dry_run)

    services.cloudpanel.create_static_site = signal_arrives
    outcomes = list(Run(services, RunOptions(), stop).run())
    assert [o.outcome for o in outcomes] == ["interrupted"]
    assert services.supabase.updates == []
    assert "b.example" not in services.cloudpanel.sites


def test_unexpected_error_in_one_site_does_not_stop_the_others(retry, caplog):
    services = MemoryServices([row(1, "a.example"), row(2, "b.example")], retry)
    original = services.cloudpanel.create_static_site
    services.cloudpanel.create_static_site = lambda d, dry_run: 1 / 0 if d == "a.example" else original(d, dry_run)
    _, outcomes = run(services)
    assert outcomes[0].outcome == "not recorded" and outcomes[0].error == "internal error: ZeroDivisionError: division by zero"
    assert services.supabase.rows[2]["status_hosting"] == "active"


def test_workers_give_the_same_outcomes_as_one_worker(retry):
    rows = [row(n, f"s{n}.example") for n in range(1, 41)] + [row(41, "bad..example")]
    one = MemoryServices(rows, retry)
    many = MemoryServices(rows, retry)
    for services in (one, many):
        services.cloudpanel.fail_site["s7.example"] = "boom"
        services.matomo.fail["s9.example"] = "down"
    _, first = run(one)
    _, second = run(many, workers=8)
    assert [(o.site_id, o.outcome, o.matomo_id is None) for o in first] == [
        (o.site_id, o.outcome, o.matomo_id is None) for o in second]
    assert {k: (v["status_hosting"], v["doc_root"], v["error_message"]) for k, v in one.supabase.rows.items()} == {
        k: (v["status_hosting"], v["doc_root"], v["error_message"]) for k, v in many.supabase.rows.items()}


def test_service_unreachable_after_every_retry_leaves_the_row_pending_for_the_next_run(retry, caplog):
    services = MemoryServices([row(1, "a.example"), row(2, "b.example")], retry)
    services.cloudpanel.create_static_site = lambda d, dry_run: (_ for _ in ()).throw(
        CloudPanelError("gateway: add the static site: cannot connect (refused)", transient=True))
    this_run, outcomes = run(services)
    assert [services.supabase.rows[n]["status_hosting"] for n in (1, 2)] == ["pending", "pending"]
    assert services.supabase.updates == []
    assert [(o.outcome, o.is_failure) for o in outcomes] == [("postponed", True)] * 2
    assert "CloudPanel: gateway: add the static site: cannot connect (refused); the row stays pending and the next " \
           "run tries again" in caplog.text


def test_certificate_service_unreachable_leaves_the_row_pending_with_the_site_kept(services):
    services.cloudpanel.provision_ssl = lambda d, new_site, dry_run: (_ for _ in ()).throw(
        CertificateError("gateway: install the certificate: HTTP 503", transient=True))
    _, outcomes = run(services)
    assert services.supabase.rows[1]["status_hosting"] == "pending"
    assert outcomes[0].outcome == "postponed" and outcomes[0].doc_root.endswith("/htdocs/good.example")


def test_an_outcome_that_cannot_be_kept_loses_that_line_only_and_never_hangs_the_run(retry, monkeypatch):
    services = MemoryServices([row(1, "a.example"), row(2, "b.example"), row(3, "c.example")], retry)
    real_add = RunOutcomes.add

    def add(self, position, outcome):
        if position == 0:
            raise OSError(28, "No space left on device")
        return real_add(self, position, outcome)

    monkeypatch.setattr(RunOutcomes, "add", add)
    finished = []
    runner = threading.Thread(target=lambda: finished.append(list(Run(services, RunOptions()).run())),
                              daemon=True)
    runner.start()
    runner.join(10)

    assert finished, "the run waited for ever for the slot of the outcome that failed"
    assert [o.domain for o in finished[0]] == ["b.example", "c.example"]
    assert {services.supabase.rows[i]["status_hosting"] for i in (1, 2, 3)} == {"active"}


@pytest.mark.parametrize("workers", [1, 3])
def test_rows_for_one_site_under_any_spelling_set_it_up_once_and_the_others_name_the_owner(retry, workers):
    services = MemoryServices([row(1, "shop.example"), row(2, "Shop.Example"), row(3, "shop.example."),
                               row(4, "other.example")], retry)

    _, outcomes = run(services, workers=workers)

    assert sorted(services.cloudpanel.certificate_calls) == [("other.example", True), ("shop.example", True)]
    assert sorted(services.matomo.sites) == ["other.example", "shop.example"]
    assert [(o.site_id, o.outcome) for o in outcomes] == [(1, "active"), (2, "failed"), (3, "failed"), (4, "active")]
    for duplicate in (2, 3):
        assert services.supabase.rows[duplicate]["status_hosting"] == "failed"
        assert services.supabase.rows[duplicate]["error_message"] == (
            "duplicate: row 1 is the same site (shop.example) and is set up instead of this one")


@pytest.mark.parametrize("transient, outcome", [(True, "postponed"), (False, "would fail")])
def test_a_dry_run_meeting_a_cloudpanel_failure_says_what_the_run_would_do_with_the_row(retry, transient, outcome):
    """The dry run goes through the run's steps: a service it cannot reach leaves the row pending, a refusal fails
    it, as the run would."""
    services = MemoryServices([row(1, "a.example")], retry)
    services.cloudpanel.create_static_site = lambda domain, dry_run: (_ for _ in ()).throw(
        CloudPanelError("gateway: add the static site: HTTP 503", transient=transient))

    _, outcomes = run(services, dry_run=True)

    assert (outcomes[0].outcome, outcomes[0].error) == (outcome, "CloudPanel: gateway: add the static site: HTTP 503")
    assert services.supabase.updates == [] and services.supabase.rows[1]["status_hosting"] == "pending"


def test_duplicate_row_in_a_dry_run_is_reported_and_written_nowhere(retry):
    services = MemoryServices([row(1, "shop.example"), row(2, "SHOP.example")], retry)

    _, outcomes = run(services, dry_run=True)

    assert [(o.outcome, o.error) for o in outcomes][1] == (
        "would fail", "duplicate: row 1 is the same site (shop.example) and is set up instead of this one")
    assert services.supabase.updates == []


# --- several servers: claims and DNS ---------------------------------------------------------------------------

class MemoryDns:
    def __init__(self, records):
        self.records = records  # domain -> list of addresses; an exception to raise
        self.asked = []

    def addresses(self, domain):
        self.asked.append(domain)
        answer = self.records.get(domain, [])
        if isinstance(answer, Exception):
            raise answer
        return {ipaddress.ip_address(address) for address in answer}


def fleet_member(rows, retry, name="web-1", addresses=("198.51.100.7",), records=None):
    services = MemoryServices(rows, retry)
    services.server_name = services.supabase.server_name = name
    services.server_addresses = tuple(ipaddress.ip_address(address) for address in addresses)
    services.dns = MemoryDns(records or {}) if addresses else None
    return services


def test_unassigned_row_whose_dns_names_this_server_is_claimed_then_built(retry):
    services = fleet_member([row(1, "here.example")], retry, records={"here.example": ["198.51.100.7"]})

    _, outcomes = run(services)

    assert services.supabase.rows[1]["hosting_server"] == "web-1"
    assert services.supabase.rows[1]["status_hosting"] == "active"
    assert [o.outcome for o in outcomes] == ["active"]


@pytest.mark.parametrize("records, shown", [
    ({"there.example": ["203.0.113.9"]}, "203.0.113.9"),
    ({}, "no address"),  # NXDOMAIN, or no A/AAAA record: not here
])
def test_unassigned_row_whose_dns_names_another_address_is_left_unassigned_and_untouched(retry, records, shown):
    services = fleet_member([row(1, "there.example")], retry, records=records)

    this_run, outcomes = run(services)

    assert services.supabase.rows[1] == row(1, "there.example")  # not claimed, not written
    assert services.cloudpanel.sites == {} and services.cloudpanel.certificate_calls == []
    assert [(o.outcome, o.warning) for o in outcomes] == [
        ("left to other servers", f"DNS points elsewhere: there.example resolves to {shown}, not this server "
                                  "(198.51.100.7)")]
    assert not any(o.is_failure for o in outcomes)


def test_row_assigned_here_whose_dns_moved_away_waits_with_the_reason_in_the_row_and_no_certificate(retry):
    services = fleet_member([row(1, "moved.example") | {"hosting_server": "web-1"}], retry,
                            records={"moved.example": ["203.0.113.9", "2001:db8::9"]})

    _, outcomes = run(services)

    assert services.supabase.rows[1]["status_hosting"] == "pending"
    assert services.supabase.rows[1]["error_message"] == (
        "waiting for DNS: moved.example resolves to 203.0.113.9, 2001:db8::9, not this server (198.51.100.7)")
    assert services.cloudpanel.certificate_calls == []
    assert [o.outcome for o in outcomes] == ["waiting for DNS"]


def test_waiting_note_is_cleared_when_the_site_goes_live(retry):
    waiting = "waiting for DNS: back.example resolves to 203.0.113.9, not this server (198.51.100.7)"
    services = fleet_member([row(1, "back.example") | {"hosting_server": "web-1", "error_message": waiting}], retry,
                            records={"back.example": ["198.51.100.7"]})

    run(services)

    assert (services.supabase.rows[1]["status_hosting"], services.supabase.rows[1]["error_message"]) == (
        "active", None)


def test_claim_lost_to_another_server_leaves_the_row_to_it_quietly(retry, caplog):
    services = fleet_member([row(1, "race.example")], retry, records={"race.example": ["198.51.100.7"]})
    services.supabase.claims_lost_to = "web-2"

    _, outcomes = run(services)

    assert services.cloudpanel.sites == {} and services.supabase.updates == []
    assert [(o.outcome, o.warning) for o in outcomes] == [("left to other servers", "assigned to web-2")]
    assert any(r.getMessage() == "Claimed by web-2 first; left to it" and r.levelname == "INFO"
               for r in caplog.records)


def test_dns_that_does_not_answer_leaves_the_row_as_read_for_the_next_run(retry):
    services = fleet_member([row(1, "slow.example")], retry,
                            records={"slow.example": DnsError("DNS: no answer for slow.example A within 30 s",
                                                              transient=True)})

    _, outcomes = run(services)

    assert services.supabase.rows[1] == row(1, "slow.example")
    assert [(o.outcome, o.error) for o in outcomes] == [("postponed", "DNS: no answer for slow.example A within 30 s")]


def test_without_server_addresses_a_row_is_claimed_and_built_without_asking_dns(retry):
    services = fleet_member([row(1, "any.example")], retry, addresses=())

    run(services)

    assert services.supabase.rows[1]["hosting_server"] == "web-1"
    assert services.supabase.rows[1]["status_hosting"] == "active"


def test_invalid_domain_is_claimed_before_its_row_is_failed(retry):
    services = fleet_member([row(1, "bad..example")], retry)

    run(services)

    assert (services.supabase.rows[1]["hosting_server"], services.supabase.rows[1]["status_hosting"]) == (
        "web-1", "failed")


# --- a dry run is the run, with each side effect skipped where it is made -------------------------------------

READ_ONLY = {("supabase", "fetch_pending_hosting_sites"), ("supabase", "other_rows_of_site"),
             ("supabase", "holder"), ("supabase", "fetch_active_without_matomo"), ("dns", "addresses")}


class Recorded:
    """A service whose every method call is noted in `calls` as (service, method, the dry_run it was given)."""

    def __init__(self, name, service, calls):
        self._name, self._service, self._calls = name, service, calls

    def __getattr__(self, attribute):
        value = getattr(self._service, attribute)
        if not callable(value):
            return value

        def call(*args, **kwargs):
            self._calls.append((self._name, attribute, kwargs.get("dry_run")))
            return value(*args, **kwargs)
        return call


def every_kind_of_row(retry):
    """One row for each path through the steps: built from nothing, found built, waiting for DNS, duplicate,
    invalid, unassigned to claim, and a live site without Matomo for the backfill."""
    rows = [row(1, "new.example"), row(2, "old.example"), row(3, "moved.example"), row(4, "NEW.example."),
            row(5, "bad domain"), row(6, "live.example", status_hosting="active")]
    for assigned in (2, 3, 6):
        rows[assigned - 1]["hosting_server"] = "web-1"
    services = fleet_member(rows, retry, records={"new.example": ["198.51.100.7"], "old.example": ["198.51.100.7"],
                                                  "moved.example": ["203.0.113.9"], "live.example": ["198.51.100.7"]})
    services.cloudpanel.sites["old.example"] = "olduser"
    services.served.add("old.example")
    services.matomo.sites["old.example"] = 9
    calls = []
    for name in ("supabase", "cloudpanel", "matomo", "dns"):
        setattr(services, name, Recorded(name, getattr(services, name), calls))
    return services, calls


def changes(calls):
    """The calls that may change something, in order (not the dry run's flag)."""
    return [call[:2] for call in calls if call[:2] not in READ_ONLY]


def state(services):
    return (repr(services.supabase.rows), repr(services.cloudpanel.sites), services.cloudpanel.certificates,
            repr(services.matomo.sites))


def test_a_dry_run_takes_every_step_the_run_takes_and_each_change_is_told_it_is_one(retry):
    """A step added to the run is in the dry run too, since both go through the same code; the dry run is safe as
    long as every call that may change something is told it is a dry run."""
    real, real_calls = every_kind_of_row(retry)
    _, real_outcomes = run(real, matomo_backfill=5)
    assert [o.outcome for o in real_outcomes] == ["active", "active", "waiting for DNS", "failed", "failed",
                                                  "Matomo added later"]
    assert real.supabase.rows[6]["matomo_id"] == real.matomo.sites["live.example"]
    dry, dry_calls = every_kind_of_row(retry)
    before = state(dry)

    _, outcomes = run(dry, dry_run=True, matomo_backfill=5)

    assert changes(dry_calls) == changes(real_calls)  # it may ask more: what a site would become
    assert {call[:2] for call in real_calls} >= {("supabase", "claim"), ("supabase", "note"),
                                                 ("cloudpanel", "create_static_site"), ("cloudpanel", "provision_ssl"),
                                                 ("matomo", "create_tracking_site"),
                                                 ("supabase", "update_site_hosting_status"),
                                                 ("supabase", "record_matomo_id")}
    told = [call for call in dry_calls if call[:2] not in READ_ONLY]
    assert told and all(given is True for _, _, given in told), told
    assert state(dry) == before
    assert [o.outcome for o in outcomes] == ["would set up", "would set up", "waiting for DNS", "would fail",
                                             "would fail", "would add Matomo"]


def test_past_max_run_minutes_no_new_site_starts_and_the_rest_wait_for_the_next_run(retry, caplog, monkeypatch):
    services = MemoryServices([row(1, "first.example"), row(2, "second.example"), row(3, "third.example")], retry)
    # a minute goes by while the first site is worked on (one worker: the others wait their turn)
    monkeypatch.setattr("hosting_automator.run.time.monotonic",
                        lambda: 61.0 if services.supabase.updates else 0.0)

    _, outcomes = run(services, max_run_seconds=60)

    assert [o.domain for o in outcomes] == ["first.example"]
    assert [services.supabase.rows[i]["status_hosting"] for i in (1, 2, 3)] == ["active", "pending", "pending"]
    said = [m for m in caplog.messages if "MAX_RUN_MINUTES" in m]
    assert said == ["This run has worked for MAX_RUN_MINUTES (1): no new site starts, the rest wait for the next run"]
