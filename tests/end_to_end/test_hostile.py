"""Hostile rows, settings and services, grouped by the rule each case holds the job to. Nearly every case
runs the real command against the stand-ins with a fault injected, and looks at what a hostile trial looks at: the
rows, the exit code, the log, and how many CloudPanel sites, certificate orders and Matomo sites exist afterwards.
Every run is also scanned for secrets (tests/support/harness.py); the cases about secrets assert it in place as well."""

import json
import os
import sqlite3
import subprocess
import threading
from pathlib import Path

import pytest

from hosting_automator.services.cloudpanel_client import document_root, site_user_for
from tests.standins import Fault
from tests.standins.clpctl_state import (add_site, calls, certificate_requests, read_sites, received_passwords,
                                         write_control)
from tests.standins.faults import once
from tests.support.harness import (add_pending, matomo_sites_by_name, no_traceback, places_of, run_job,
                                   secret_characters, secrets_of, standins_of, start_job, wait_for, watched)
from tests.support.settings import LONG_LABEL

DEEP_JSON = "[" * 100_000 + "]" * 100_000  # far deeper than Python's JSON reader recurses
FAST = {"HTTP_TIMEOUT": "0.5"}


# -- helpers -----------------------------------------------------------------------------------------------------

def matomo_method(request):
    return request["query"].get("method", [""])[0]


def matomo_calls(standins, method):
    return sum(matomo_method(r) == f"SitesManager.{method}" for r in standins.matomo.requests_log)


def gateway_posts(standins, route):
    return [r for r in standins.gateway.requests_log if r["method"] == "POST" and r["path"].endswith(route)]


ADD, CERTIFICATE = "/api/site/add/static", "/api/letsencrypt/install-certificate"


def to(route):
    """A fault predicate: the gateway request to `route`."""
    return lambda request: request["path"].endswith(route)


def to_matomo(method):
    return lambda request: matomo_method(request) == f"SitesManager.{method}"


def row(standins, row_id):
    return standins.postgrest.get(row_id)


def outcome(standins, row_id):
    found = row(standins, row_id)
    return found["status_hosting"], found["doc_root"], found["matomo_id"], found["error_message"]


def counts(standins, domain):
    """(CloudPanel sites, certificate orders, Matomo sites) of `domain`."""
    return (sum(site["domain_name"] == domain for site in read_sites(standins.db_path)),
            len(certificate_requests(standins.db_path, domain)), len(matomo_sites_by_name(standins).get(domain, [])))


def live_root(domain):
    return document_root(site_user_for(domain), domain)


def no_secret_in(standins, result, secrets):
    """The findings of the suite's own scan over this run, for the secrets given (name -> value)."""
    places = [("stdout", result.stdout), ("stderr", result.stderr), ("log", result.log)]
    places += [(f"row {r['id']}", r["error_message"] or "") for r in standins.postgrest.rows()]
    return secret_characters(places, secrets)


def html_page(text):
    """A proxy's or framework's error page, as a service in trouble sends it."""
    return f"<!DOCTYPE html><html><head><title>Error</title></head><body><h1>Error</h1><pre>{text}</pre></body></html>"


# == Rule 1: one site, one worker: duplicates under --workers ====================================================
# Rows for one site under other spellings (case, a trailing dot) are worked on by one worker; the others end
# failed, naming the row that owns the site, and nothing is created twice.

SPELLINGS = ("shop.example.test", "Shop.example.test", "shop.example.test.")


def duplicate_message(owner):
    return f"duplicate: row {owner} is the same site (shop.example.test) and is set up instead of this one"


@pytest.mark.parametrize("transport, option, overrides", [
    ("clpctl", ["--workers", "2"], {}),
    ("gateway", ["--workers", "2"], {}),
    ("clpctl", [], {"WORKERS": "3"}),
], ids=["clpctl-workers-2", "gateway-workers-2", "clpctl-WORKERS-3"])
def test_rows_of_one_site_under_other_spellings_create_it_once(request, transport, option, overrides):
    standins = standins_of(request, transport)
    ids = add_pending(standins, *SPELLINGS)

    result = run_job(standins, *option, overrides=overrides)

    assert result.returncode == 1
    assert counts(standins, "shop.example.test") == (1, 1, 1)
    assert outcome(standins, ids[0]) == ("active", live_root("shop.example.test"), 1, None)
    for duplicate in ids[1:]:
        assert outcome(standins, duplicate) == ("failed", None, None, duplicate_message(ids[0]))
    assert f"ERROR [shop.example.test] Row {ids[2]}: {duplicate_message(ids[0])}" in result.log


def test_parallel_cloudpanel_calls_still_add_one_site_for_four_spellings(standins):
    ids = add_pending(standins, *SPELLINGS, "SHOP.EXAMPLE.TEST")

    result = run_job(standins, "--workers", "4", overrides={"CLOUDPANEL_CONCURRENCY": "4"})

    assert [c["argv"][0] for c in calls(standins.db_path)].count("site:add:static") == 1
    assert result.returncode == 1
    assert counts(standins, "shop.example.test") == (1, 1, 1)
    assert [row(standins, i)["status_hosting"] for i in ids] == ["active", "failed", "failed", "failed"]


def test_a_dry_run_says_the_duplicates_would_fail_and_changes_nothing(standins):
    ids = add_pending(standins, *SPELLINGS)

    result = run_job(standins, "--dry-run", "--json", "--workers", "3")

    assert result.returncode == 0
    sites = json.loads(result.stdout)["sites"]
    assert [(s["id"], s["outcome"]) for s in sites] == [(ids[0], "would set up"), (ids[1], "would fail"),
                                                       (ids[2], "would fail")]
    assert sites[1]["error"] == duplicate_message(ids[0])
    assert [row(standins, i)["status_hosting"] for i in ids] == ["pending"] * 3
    assert counts(standins, "shop.example.test") == (0, 0, 0)


def test_a_failed_row_and_a_pending_row_of_one_site_with_retry_failed_create_it_once(standins):
    ids = add_pending(standins, {"domain": "shop.example.test", "status_hosting": "failed",
                                 "error_message": "SSL: an earlier failure"}, "SHOP.example.test.")

    result = run_job(standins, "--retry-failed", "--workers", "2")

    assert result.returncode == 1
    assert counts(standins, "shop.example.test") == (1, 1, 1)
    matomo_id = matomo_sites_by_name(standins)["shop.example.test"][0]
    assert outcome(standins, ids[0]) == ("active", live_root("shop.example.test"), matomo_id, None)
    assert outcome(standins, ids[1]) == ("failed", None, None, duplicate_message(ids[0]))


def test_a_row_for_a_site_an_earlier_run_set_up_under_another_row_fails_naming_that_row(standins):
    owner = add_pending(standins, "shop.example.test")[0]
    assert run_job(standins).returncode == 0
    later = add_pending(standins, "Shop.example.test.")[0]  # as a killed run would have left it

    result = run_job(standins)

    assert counts(standins, "shop.example.test") == (1, 1, 1)  # holds: nothing is created twice
    assert outcome(standins, later) == ("failed", None, None, duplicate_message(owner))
    assert result.returncode == 1


class FirstAddWaitsForSecondLookup:
    """A Matomo fault hook: the first addSite is held until a second look-up has been answered (or 5 s passed), so
    that a second row that is looked up while the first one's site is being added is seen doing so."""

    def __init__(self):
        self.lookups = 0
        self.adds = 0
        self.changed = threading.Condition()

    def __call__(self, request):
        with self.changed:
            if to_matomo("getSitesIdFromSiteUrl")(request):
                self.lookups += 1
                self.changed.notify_all()
            elif to_matomo("addSite")(request):
                self.adds += 1
                if self.adds == 1:
                    self.changed.wait_for(lambda: self.lookups >= 2, timeout=5)
        return None


def test_a_name_and_its_www_twin_under_workers_share_one_matomo_site(standins):
    ids = add_pending(standins, "twin.example.test", "www.twin.example.test")
    standins.matomo.fault = FirstAddWaitsForSecondLookup()

    result = run_job(standins, "--workers", "2")

    assert result.returncode == 0, result.log
    assert len(standins.matomo.sites) == 1
    assert row(standins, ids[0])["matomo_id"] == row(standins, ids[1])["matomo_id"] == 1


# == Rule 2: a create whose answer never came is not sent again in the same run ==================================
# A create that reached its service and got no answer (a timeout, a connection lost mid-answer, a proxy's 502/504)
# may still be taking effect where a look-up cannot see it yet: it is not sent again this run. The row stays as
# it is (or goes live without matomo_id), and a later run looks up first.

@pytest.mark.parametrize("fault, made", [
    (Fault.delay(1.0), 1), (Fault.later(504, 0.5, "Gateway Timeout"), 1), (Fault.status(502, "Bad Gateway"), 0),
], ids=["slower-than-HTTP_TIMEOUT", "proxy-504-while-matomo-works-on", "proxy-502"])
def test_matomo_add_site_without_an_answer_is_not_sent_again(standins, fault, made):
    ids = add_pending(standins, "slow.example.test")
    standins.matomo.fault = once(fault, to_matomo("addSite"))

    result = run_job(standins, overrides=FAST, fast_retries=True)

    assert matomo_calls(standins, "addSite") == 1
    assert result.returncode == 0, result.log
    wait_for(lambda: len(standins.matomo.sites) >= made, what="the slow add to end")
    assert len(standins.matomo.sites) == made
    assert outcome(standins, ids[0]) == ("active", live_root("slow.example.test"), None, None)
    assert "it may still have been made, so it is not sent again this run; the site goes live without tracking" \
        in result.log


@pytest.mark.parametrize("fault", [Fault.after_drop(), Fault.status(504, "Gateway Timeout")],
                         ids=["answer-lost", "proxy-504"])
def test_gateway_site_add_without_an_answer_is_not_sent_again_and_the_next_run_finishes_it(gateway_standins, fault):
    standins = gateway_standins
    ids = add_pending(standins, "lost.example.test", "other.example.test")
    standins.gateway.fault = once(fault, to(ADD))

    first = run_job(standins, fast_retries=True)

    assert [json.loads(r["body"])["domainName"] for r in gateway_posts(standins, ADD)] == [
        "lost.example.test", "other.example.test"]
    assert first.returncode == 1
    assert outcome(standins, ids[0]) == ("pending", None, None, None)
    assert "not sent again this run; the row stays pending and the next run tries again" in first.log
    assert row(standins, ids[1])["status_hosting"] == "active"  # the run went on

    second = run_job(standins)

    assert second.returncode == 0, second.log
    assert outcome(standins, ids[0]) == ("active", live_root("lost.example.test"), 2, None)
    assert counts(standins, "lost.example.test") == (1, 1, 1)


@pytest.mark.parametrize("fault", [Fault.after_drop(), Fault.later(502, 0.5, "Bad Gateway")],
                         ids=["answer-lost", "proxy-502-while-the-gateway-works-on"])
def test_gateway_certificate_order_without_an_answer_is_not_sent_again(gateway_standins, fault):
    standins = gateway_standins
    ids = add_pending(standins, "cert.example.test")
    standins.gateway.fault = once(fault, to(CERTIFICATE))
    standins.tls.fault = lambda request: Fault.drop()  # the served certificate cannot be seen this run

    first = run_job(standins, fast_retries=True)

    assert len(gateway_posts(standins, CERTIFICATE)) == 1
    wait_for(lambda: certificate_requests(standins.db_path), what="the order to be worked on")
    assert len(certificate_requests(standins.db_path)) == 1
    assert first.returncode == 1
    assert outcome(standins, ids[0])[0] == "pending"
    assert counts(standins, "cert.example.test")[2] == 0  # nothing after the certificate step ran

    standins.tls.fault = None
    second = run_job(standins)

    assert second.returncode == 0, second.log
    assert outcome(standins, ids[0]) == ("active", live_root("cert.example.test"), 1, None)
    assert len(certificate_requests(standins.db_path)) == 1  # the rerun saw it served


def test_gateway_refusing_a_create_with_503_is_tried_again_at_once(gateway_standins):
    """The other side of the rule: a refusal (429, 503) says nothing was done, so it is retried in the run."""
    standins = gateway_standins
    ids = add_pending(standins, "refused.example.test")
    standins.gateway.fault = once(Fault.status(503, {"success": False, "error": "Service Unavailable"}), to(ADD))

    result = run_job(standins, fast_retries=True)

    assert result.returncode == 0, result.log
    assert len(gateway_posts(standins, ADD)) == 2
    assert outcome(standins, ids[0]) == ("active", live_root("refused.example.test"), 1, None)


# == Rule 3: every text from a service is masked before anything else is done with it ==========================
# Not only JSON bodies: an HTML error page that echoes the request (and so the generated password) is masked before
# it is cut to an excerpt; and a generated password stays masked for the whole run, not only for its own step.

def echo_request(status):
    """A gateway whose add answers `status` with an HTML page echoing the fields it received, password first."""
    def hook(request):
        if request["path"].endswith(ADD):
            fields = json.loads(request["body"])
            shown = "\n".join(f"{name}: {value}" for name, value in reversed(fields.items()))
            return Fault.status(status, html_page(shown), {"Content-Type": "text/html"})
        return None
    return hook


@pytest.mark.parametrize("status", [500, 400])
def test_gateway_error_page_echoing_the_request_never_shows_the_password(gateway_standins, status):
    standins = gateway_standins
    ids = add_pending(standins, "echo.example.test")
    standins.gateway.fault = echo_request(status)

    result = run_job(standins, "--json")

    password = standins.gateway.received_passwords.pop()
    assert len(password) == 32
    assert no_secret_in(standins, result, {"the site password": password}) == []
    state, doc_root, _, error = outcome(standins, ids[0])
    assert (state, doc_root) == ("failed", None)
    assert error.startswith(f"CloudPanel: gateway: add the static site: HTTP {status} with a body that is not JSON: ")
    assert "siteUserPassword: *** siteUser: echo-example-test-" in error  # only the secret goes
    assert json.loads(result.stdout)["sites"][0]["error"] == error


def test_a_password_echoed_by_the_certificate_step_stays_masked(gateway_standins):
    """The real gateway logs every clpctl command line; an error that carries its log tail repeats the add's
    password a step later."""
    standins = gateway_standins
    ids = add_pending(standins, "later.example.test")

    def hook(request):
        if request["path"].endswith(CERTIFICATE):
            password = next(iter(standins.gateway.received_passwords))
            return Fault.status(500, {"success": False, "error": "Failed to install certificate",
                                      "details": f"earlier: clpctl site:add:static --domainName=later.example.test "
                                                 f"--siteUserPassword='{password}'\nDomain could not be validated"})
        return None

    standins.gateway.fault = hook
    result = run_job(standins, "--json")

    password = next(iter(standins.gateway.received_passwords))
    assert no_secret_in(standins, result, {"the site password": password}) == []
    assert row(standins, ids[0])["error_message"] == (
        "SSL: gateway: install the certificate: HTTP 500: earlier: clpctl site:add:static "
        "--domainName=later.example.test --siteUserPassword='***' Domain could not be validated")


def test_a_password_echoed_while_a_later_site_is_worked_on_stays_masked(gateway_standins):
    standins = gateway_standins
    ids = add_pending(standins, "first.example.test", "second.example.test")
    log_tail = []  # the gateway's own log: every clpctl command line, password included

    def hook(request):
        if request["path"].endswith(ADD):
            fields = json.loads(request["body"])
            if fields["domainName"] == "second.example.test":
                return Fault.status(500, {"success": False, "error": "Failed to add static site",
                                          "details": "\n".join(log_tail) + "\nsiteUser: This value is not valid."})
            log_tail.append(f"clpctl site:add:static --domainName={fields['domainName']} --siteUser="
                            f"{fields['siteUser']} --siteUserPassword='{fields['siteUserPassword']}'")
        return None

    standins.gateway.fault = hook
    result = run_job(standins, "--json")

    findings = no_secret_in(standins, result, secrets_of(watched.runs))
    watched.forget()  # this case checks for itself
    assert row(standins, ids[1])["status_hosting"] == "failed"
    assert findings == []


@pytest.mark.parametrize("transport", ["clpctl", "gateway"])
def test_a_password_echoed_by_matomo_after_the_site_step_stays_masked(request, transport):
    standins = standins_of(request, transport)
    ids = add_pending(standins, "matomo-echo.example.test")
    received = standins.gateway.received_passwords if standins.gateway is not None else None

    def hook(request):
        if to_matomo("getSitesIdFromSiteUrl")(request):
            password = next(iter(received)) if received is not None else received_passwords(standins.db_path)[0]
            return Fault.status(200, {"result": "error", "message": f"Site user password {password} is weak"})
        return None

    standins.matomo.fault = hook
    result = run_job(standins, "--json")

    secrets = secrets_of(watched.runs)
    assert any("generated site password" in name for name in secrets)
    assert no_secret_in(standins, result, secrets) == []
    assert row(standins, ids[0])["status_hosting"] == "active"
    assert "Matomo: SitesManager.getSitesIdFromSiteUrl: Site user password *** is weak; the site goes live " \
           "without tracking" in result.log


# == Rule 4: a secret is never cut in half: mask first, then cut ================================================
# An echo of a key or token that an excerpt would cut is masked whole before the cut; a line of .env that cannot
# be read is named by its number and variable, never by its value.

MATOMO_TOKEN = "9c1f4e7a2b8d6f03a5e1c7b9d2f4a608"  # 32 characters, as Matomo makes them
# a service_role JWT of 219 characters, as Supabase makes them
SUPABASE_KEY = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJzdXBhYmFzZSIsInJvbGUiOiJzZXJ2aWNlX3JvbGUiLCJpYXQiOjE3"
                "MzAwMDAwMDAsImV4cCI6MjA0NTU3NjAwMCwicmVmIjoiYWJjZGVmZ2hpamtsbW5vcHFyc3QifQ.Zk3o9Q2mP7tV1xY5bC9dF2hJ8kL"
                "4nR6sW0aE3gU1iOq")


def token_echo(kind):
    """A Matomo answer echoing MATOMO_TOKEN where an excerpt of the usual length (120 characters of a page or of an
    unexpected answer, 300 of an error message) ends 17 characters into it: cut first and masked after, those 17
    would survive."""
    def placed(limit, prefix):  # filler so that the token starts 17 characters before the cut
        return "r" * (limit - 17 - prefix)
    if kind == "html-page-403":  # shown as "Error Error Forbidden: rrr… token <token> …" once tags are gone
        return Fault.status(403, html_page(f"Forbidden: {placed(120, 30)} token {MATOMO_TOKEN} was refused"),
                            {"Content-Type": "text/html"})
    if kind == "json-error-200":
        return Fault.status(200, {"result": "error", "message": f"Unable to authenticate: {placed(300, 36)} "
                                                                f"token_auth={MATOMO_TOKEN}"})
    return Fault.status(403, {"error": f"token refused: {placed(120, 26)}{MATOMO_TOKEN}"})  # shown as {'error': …}


@pytest.mark.parametrize("kind", ["html-page-403", "json-error-200", "json-403"])
def test_matomo_echoing_its_token_where_an_excerpt_ends_shows_none_of_it(standins, kind):
    standins.matomo.token = MATOMO_TOKEN
    ids = add_pending(standins, "token.example.test")
    standins.matomo.fault = lambda request: token_echo(kind)

    result = run_job(standins, "--json", overrides={"MATOMO_API_TOKEN": MATOMO_TOKEN})

    assert no_secret_in(standins, result, {"MATOMO_API_TOKEN": MATOMO_TOKEN}) == []
    assert result.returncode == 0, result.log
    assert row(standins, ids[0])["status_hosting"] == "active"
    assert "WARNING [token.example.test] Matomo: SitesManager.getSitesIdFromSiteUrl: " in result.log


def test_supabase_error_page_echoing_a_long_key_is_masked_whole(standins):
    assert len(SUPABASE_KEY) == 219
    standins.postgrest.service_key = SUPABASE_KEY
    ids = add_pending(standins, "key.example.test")
    standins.postgrest.fault = lambda request: Fault.status(
        401, html_page(f"Invalid API key: apikey {SUPABASE_KEY} was refused"), {"Content-Type": "text/html"})

    result = run_job(standins, "--json", overrides={"SUPABASE_SERVICE_KEY": SUPABASE_KEY})

    assert result.returncode == 1
    assert no_secret_in(standins, result, {"SUPABASE_SERVICE_KEY": SUPABASE_KEY}) == []
    assert "set SUPABASE_SERVICE_KEY" in result.log
    assert row(standins, ids[0])["status_hosting"] == "pending"


def test_check_never_shows_part_of_a_token_an_error_page_echoes(standins):
    standins.matomo.token = MATOMO_TOKEN
    standins.matomo.fault = lambda request: token_echo("html-page-403")

    result = run_job(standins, "--check", overrides={"MATOMO_API_TOKEN": MATOMO_TOKEN})

    assert no_secret_in(standins, result, {"MATOMO_API_TOKEN": MATOMO_TOKEN}) == []
    assert result.returncode == 1
    assert "FAIL  Matomo: UsersManager.hasSuperUserAccess: HTTP 403" in result.stdout


def test_clpctl_echoing_its_arguments_after_a_long_message_never_shows_part_of_the_password(standins):
    """clpctl's own output is masked before it is cut, so no piece of the password survives the cut."""
    ids = add_pending(standins, "args.example.test")
    write_control(standins.control_path, {"args.example.test": {"site:add:static": "fail-echo:" + "w" * 270}})

    result = run_job(standins, "--json")

    assert result.returncode == 1
    assert no_secret_in(standins, result, {"the site password": received_passwords(standins.db_path)[0]}) == []
    assert row(standins, ids[0])["error_message"].startswith("CloudPanel: clpctl site:add:static failed: www")


@pytest.mark.parametrize("line", ["sb_secret_Zq81vTtoken9xK2 pasted without a name",
                                  "MATOMO_API_TOKEN 9c1f4e7a2b8d6f03a5e1c7b9d2f4a608"],
                         ids=["a-key-without-a-name", "a-space-for-the-equals-sign"])
def test_a_line_of_env_that_cannot_be_read_is_named_never_quoted(standins, line):
    env_file = Path(standins.dir) / "prod.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in standins.env.items() if k != "SSL_CERT_FILE")
                        + line + "\n")
    env_file.chmod(0o600)

    result = run_job(standins, "--env-file", str(env_file),
                     overrides={key: None for key in standins.env if key != "SSL_CERT_FILE"})

    assert result.returncode == 2
    number = len(env_file.read_text().splitlines())
    assert f"{env_file} line {number} cannot be read" in result.stderr
    value = line.split()[1] if line.startswith("MATOMO") else line.split()[0]
    assert secret_characters([("stderr", result.stderr), ("stdout", result.stdout)], {"the value": value}) == []
    no_traceback(result)


# == Rule 5: bounded, validated settings; no wait that grows with a setting ======================================
# A count or a wait beyond what can help is refused (exit 2) before anything is read or locked: 10^12 workers
# once did both sites' work and then never ended, holding the lock.

@pytest.mark.parametrize("arguments, overrides, named", [
    (["--workers", "1000000000000"], {}, "argument --workers: must be a whole number from 1 to 64"),
    ([], {"WORKERS": "1000000000000"}, "WORKERS must be a whole number from 1 to 64"),
    (["--workers", "65"], {}, "argument --workers: must be a whole number from 1 to 64"),
    ([], {"CLOUDPANEL_CONCURRENCY": "1000000000000"}, "CLOUDPANEL_CONCURRENCY must be a whole number from 1 to 64"),
    ([], {"HTTP_TIMEOUT": "601"}, "HTTP_TIMEOUT must be a positive number of seconds up to 600"),
    ([], {"MAX_SITES_PER_RUN": "10001"}, "MAX_SITES_PER_RUN must be a whole number from 0 to 10000"),
], ids=["--workers-10^12", "WORKERS-10^12", "--workers-65", "CLOUDPANEL_CONCURRENCY-10^12", "HTTP_TIMEOUT-601",
        "MAX_SITES_PER_RUN-10001"])
def test_a_count_or_wait_beyond_what_can_help_is_refused_before_anything_happens(standins, arguments, overrides,
                                                                                 named):
    ids = add_pending(standins, "one.example.test", "two.example.test")
    overrides = {**overrides, "MAX_SITES_PER_RUN": overrides.get("MAX_SITES_PER_RUN", "0")}

    result = run_job(standins, *arguments, overrides=overrides, timeout=30)

    assert result.returncode == 2
    assert named in result.stderr
    assert standins.postgrest.request_count == 0
    assert [row(standins, i)["status_hosting"] for i in ids] == ["pending", "pending"]
    assert not Path(standins.env["LOCK_FILE"]).exists()
    no_traceback(result)


# == Rule 6: no traceback: every setting validated to a range that works, every answer's parsing failure is that
# service's error, a log file that cannot be written is one message ==============================================

def unreadable(path):
    """Make `path` unreadable for the job; the command prefix the job must then run under. Root reads any file, so
    as root the file goes to another user and the job runs in a user namespace, where root has no power over it."""
    path.chmod(0)
    if not os.access(path, os.R_OK):
        return ()
    os.chown(path, 65534, 65534)
    prefix = ("unshare", "--user", "--map-root-user")
    probe = subprocess.run([*prefix, "cat", str(path)], capture_output=True, text=True)
    if "Permission denied" not in probe.stderr:
        pytest.skip("no way to make a file unreadable for root here (user namespaces unavailable)")
    return prefix


@pytest.mark.parametrize("kind", ["permission denied", "not UTF-8"])
def test_a_dot_env_that_cannot_be_read_is_one_message_and_exit_2(standins, kind):
    env_file = Path(standins.dir) / ".env"
    env_file.write_bytes(b"MATOMO_API_TOKEN=tok\xff\xfesecret\n")
    prefix, reason = (), "it is not UTF-8 text"
    if kind == "permission denied":
        env_file.write_text("MATOMO_API_TOKEN=tok-in-dot-env\n")
        prefix, reason = unreadable(env_file), "Permission denied"

    result = run_job(standins, prefix=prefix)

    assert result.returncode == 2
    assert f"  - .env cannot be read: {reason}" in result.stderr
    no_traceback(result)


@pytest.mark.parametrize("value", ["1e10"])
def test_an_http_timeout_that_would_overflow_is_refused(standins, value):
    add_pending(standins, "one.example.test")

    result = run_job(standins, overrides={"HTTP_TIMEOUT": value}, timeout=30)

    assert result.returncode == 2
    assert f"HTTP_TIMEOUT must be a positive number of seconds up to 600 (e.g. 30 or 0.5), got '{value}'" \
        in result.stderr
    no_traceback(result)


@pytest.mark.parametrize("name", ["SUPABASE_URL", "MATOMO_API_URL", "CLOUDPANEL_API_URL", "HEALTHCHECK_URL",
                                  "CLOUDPANEL_HTTPS_ADDRESS"])
def test_a_host_name_with_a_64_character_label_is_refused_naming_the_setting(gateway_standins, name):
    standins = gateway_standins
    add_pending(standins, "one.example.test")
    value = f"{LONG_LABEL}.example:443" if name == "CLOUDPANEL_HTTPS_ADDRESS" else f"http://{LONG_LABEL}.example/"

    result = run_job(standins, overrides={name: value}, timeout=60)

    assert result.returncode == 2
    assert f"  - {name} has a host name that cannot be used (label 'aaaaaaaaaaaaaaaaaaaa…' is 64 characters long" \
        in result.stderr
    assert standins.postgrest.request_count == 0
    no_traceback(result)


def test_supabase_port_out_of_range_is_refused(standins):
    result = run_job(standins, overrides={"SUPABASE_URL": "http://127.0.0.1:99999"}, timeout=60)
    assert result.returncode == 2
    assert "SUPABASE_URL has a port that cannot be used" in result.stderr
    no_traceback(result)


def test_matomo_answering_json_nested_too_deep_is_a_warning_and_the_site_goes_live(standins):
    ids = add_pending(standins, "deep.example.test")
    standins.matomo.fault = lambda request: Fault.status(200, DEEP_JSON, {"Content-Type": "application/json"})

    result = run_job(standins)

    assert result.returncode == 0, result.log
    assert outcome(standins, ids[0]) == ("active", live_root("deep.example.test"), None, None)
    assert "WARNING [deep.example.test] Matomo: SitesManager.getSitesIdFromSiteUrl: HTTP 200 with a body that is " \
           "not JSON" in result.log
    no_traceback(result)


def test_supabase_answering_json_nested_too_deep_to_the_read_aborts_with_a_message(standins):
    ids = add_pending(standins, "deep.example.test")
    standins.postgrest.fault = lambda request: Fault.status(200, DEEP_JSON, {"Content-Type": "application/json"})

    result = run_job(standins, fast_retries=True)

    assert result.returncode == 1
    assert "Run aborted: 0 active (0 without Matomo), 0 failed; cannot read the pending sites: read the pending " \
           "sites: Supabase answered JSON that cannot be read" in result.log
    assert row(standins, ids[0])["status_hosting"] == "pending"
    no_traceback(result)


def test_supabase_answering_json_nested_too_deep_to_a_write_leaves_the_row_for_the_next_run(standins):
    ids = add_pending(standins, "deep.example.test")
    standins.postgrest.fault = lambda request: (  # the write of the outcome, not a claim of the row
        Fault.status(200, DEEP_JSON, {"Content-Type": "application/json"})
        if request["method"] == "PATCH" and '"status_hosting"' in request["body"] else None)

    result = run_job(standins, fast_retries=True)

    assert result.returncode == 1
    assert "[deep.example.test] Could not record the outcome (active)" in result.log
    assert row(standins, ids[0])["status_hosting"] == "pending"
    no_traceback(result)


def test_gateway_answering_json_nested_too_deep_fails_the_site_with_a_message(gateway_standins):
    standins = gateway_standins
    ids = add_pending(standins, "deep.example.test")
    standins.gateway.fault = lambda request: (Fault.status(200, DEEP_JSON, {"Content-Type": "application/json"})
                                              if request["path"].endswith(ADD) else None)

    result = run_job(standins)

    assert result.returncode == 1
    state, _, _, error = outcome(standins, ids[0])
    assert state == "failed"
    assert error.startswith("CloudPanel: gateway: add the static site: HTTP 200 with a body that is not JSON: ")
    no_traceback(result)


def test_a_log_file_on_a_full_disk_is_one_message_and_the_run_does_its_work(standins):
    ids = add_pending(standins, "full.example.test")
    process = start_job(standins, overrides={"LOG_FILE": "/dev/full"})  # run_job would read /dev/full afterwards
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0
    assert stderr.count("LOG_FILE /dev/full cannot be written (No space left on device)") == 1
    assert "Logging error" not in stderr and "Traceback" not in stderr
    assert row(standins, ids[0])["status_hosting"] == "active"


# == Rule 7: a guessed value is never stored ====================================================================
# A site that exists already is this job's when its derived site user exists too (clpctl's validation names both);
# one made by hand under another user fails the row with a message saying what to set, since its document root
# cannot be read through the gateway.

def test_gateway_a_site_made_by_hand_under_another_user_fails_saying_what_to_set(gateway_standins):
    standins = gateway_standins
    # a gateway without its site listing (the real one has it, and the site's doc_root is then read from it)
    standins.gateway.fault = lambda request: (Fault.status(404, {"error": "Endpoint not found"})
                                              if request["path"] == "/lists/api/sites" else None)
    add_site(standins.db_path, "byhand.example.test", "handmade")
    ids = add_pending(standins, "byhand.example.test")

    result = run_job(standins)

    assert result.returncode == 1
    state, doc_root, matomo_id, error = outcome(standins, ids[0])
    assert (state, doc_root, matomo_id) == ("failed", None, None)
    assert error.startswith("CloudPanel: byhand.example.test exists in CloudPanel under a site user this job did "
                            "not make, and its document root cannot be read in the gateway's site listing (GET "
                            "/lists/api/sites): write the row's doc_root (/home/<site user>/htdocs/byhand.example.test)")
    assert gateway_posts(standins, CERTIFICATE) == [] and standins.matomo.sites == {}


def test_gateway_a_site_made_by_hand_goes_live_with_the_doc_root_its_listing_names(gateway_standins):
    standins = gateway_standins
    add_site(standins.db_path, "byhand.example.test", "handmade")
    ids = add_pending(standins, "byhand.example.test")

    result = run_job(standins)

    assert result.returncode == 0, result.log
    assert outcome(standins, ids[0])[:2] == ("active", "/home/handmade/htdocs/byhand.example.test")
    assert gateway_posts(standins, ADD) == []


def test_clpctl_without_cloudpanels_database_a_site_made_by_hand_fails_saying_what_to_set(standins):
    add_site(standins.db_path, "byhand.example.test", "handmade")
    ids = add_pending(standins, "byhand.example.test")

    result = run_job(standins, overrides={"CLOUDPANEL_DB_PATH": Path(standins.dir) / "not-the-db.sq3"})

    assert result.returncode == 1
    state, doc_root, _, error = outcome(standins, ids[0])
    assert (state, doc_root) == ("failed", None)
    assert "exists in CloudPanel under a site user this job did not make" in error
    assert certificate_requests(standins.db_path) == [] and standins.matomo.sites == {}


def test_gateway_a_site_this_job_made_before_a_crash_resumes_with_its_true_doc_root(gateway_standins):
    """Through the gateway no site user can be read: the site is known as this job's by its derived site user,
    which clpctl says exists too, and its true document root is written, never a guess."""
    standins = gateway_standins
    add_site(standins.db_path, "crashed.example.test", site_user_for("crashed.example.test"))
    ids = add_pending(standins, "crashed.example.test")

    result = run_job(standins)

    assert result.returncode == 0, result.log
    assert outcome(standins, ids[0]) == ("active", live_root("crashed.example.test"), 1, None)
    assert counts(standins, "crashed.example.test") == (1, 1, 1)


# == Rule 8: the smaller ones ===================================================================================

@pytest.mark.parametrize("character", ["\x1b", "\x07", "\x7f", "\x00"], ids=["ESC", "BEL", "DEL", "NUL"])
def test_control_characters_in_a_domain_are_shown_escaped_everywhere(standins, character):
    ids = add_pending(standins, f"shop{character}x.example.test")

    result = run_job(standins, "--json")

    assert result.returncode == 1
    error = row(standins, ids[0])["error_message"]
    escaped = repr(f"shop{character}x")
    assert error == f"invalid domain: label {escaped} may hold only letters, digits and hyphens"
    for text in (result.log, result.stdout, result.stderr, error, json.loads(result.stdout)["sites"][0]["error"]):
        assert character not in text
    assert escaped in result.log


def test_cloudpanels_database_locked_for_a_while_is_waited_out_not_a_failure(standins):
    ids = add_pending(standins, "locked.example.test")
    holder = sqlite3.connect(standins.db_path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")  # CloudPanel writing it for longer than the job's 10 s
    released = threading.Event()

    def release():
        holder.execute("ROLLBACK")
        released.set()

    process = start_job(standins, fast_retries=True)
    try:
        try:
            wait_for(lambda: "stayed locked" in Path(standins.env["LOG_FILE"]).read_text(errors="replace")
                     if Path(standins.env["LOG_FILE"]).exists() else False, timeout=20, what="a locked read")
        finally:
            release()
        process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        holder.close()

    log = Path(standins.env["LOG_FILE"]).read_text()
    assert "run as root" not in log
    assert "[locked.example.test] CloudPanel failed (CloudPanel's database " in log and "stayed locked" in log
    assert process.returncode == 0, log
    assert outcome(standins, ids[0]) == ("active", live_root("locked.example.test"), 1, None)


def test_check_creates_neither_the_log_file_nor_the_lock_file(standins, tmp_path):
    directory = tmp_path / "job"
    directory.mkdir()

    result = run_job(standins, "--check", overrides={"LOG_FILE": directory / "run.log",
                                                     "LOCK_FILE": directory / "run.lock"})

    assert result.returncode == 0, result.stdout
    assert list(directory.iterdir()) == []


def test_check_fails_when_this_machine_cannot_verify_the_certificate_a_live_site_serves(standins, tmp_path):
    import trustme

    add_pending(standins, "live.example.test")
    assert run_job(standins).returncode == 0
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))

    result = run_job(standins, "--check", overrides={"SSL_CERT_FILE": other_ca})

    assert result.returncode == 1
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAIL  HTTPS")]
    assert len(failed) == 1 and "live.example.test" in failed[0] and "SSL_CERT_FILE" in failed[0]


@pytest.mark.parametrize("arguments, overrides, summary", [
    (["--json"], {"SUPABASE_SERVICE_KEY": None}, "Configuration problems:\n  - SUPABASE_SERVICE_KEY is not set"),
    (["--json", "--limit", "x"], {}, "argument --limit: must be a whole number of at least 1, got 'x'"),
    (["--json"], {"WORKERS": "0"}, "Configuration problems:\n  - WORKERS must be a whole number from 1 to 64"),
    (["--json"], {"LOG_FILE": "no-such-dir/run.log"}, "LOG_FILE no-such-dir/run.log cannot be written (No such file "
                                                      "or directory)"),
    (["--json"], {"LOCK_FILE": "no-such-dir/run.lock"}, "LOCK_FILE no-such-dir/run.lock cannot be opened (No such "
                                                        "file or directory)"),
], ids=["missing-setting", "usage-error", "setting-out-of-range", "log-file-in-a-missing-directory",
        "lock-file-in-a-missing-directory"])
def test_json_writes_its_document_also_when_the_run_stops_with_exit_2(standins, arguments, overrides, summary):
    ids = add_pending(standins, "one.example.test")

    result = run_job(standins, *arguments, overrides=overrides)

    assert result.returncode == 2
    document = json.loads(result.stdout)
    assert document["exit_code"] == 2 and document["sites"] == []
    assert document["summary"].startswith(summary)
    assert row(standins, ids[0])["status_hosting"] == "pending"
    no_traceback(result)


def test_a_name_and_its_www_twin_share_one_matomo_site(standins):
    """One Matomo site tracks a name and its www. twin (its URLs name both)."""
    ids = add_pending(standins, "pair.example.test", "www.pair.example.test")

    result = run_job(standins)

    assert result.returncode == 0, result.log
    assert len(standins.matomo.sites) == 1
    assert row(standins, ids[0])["matomo_id"] == row(standins, ids[1])["matomo_id"] == 1


# == The gateway: what the real cloudpanel-api does that the stand-ins did not ==================================
# Success needs clpctl's own success line; calls that run clpctl wait a little longer than the gateway's own limit;
# a setting every row would meet (token, base URL) stops the run at the first answer; a service that asks for a
# wait beyond the cap is not asked again this run.

@pytest.mark.parametrize("command, says, doc_root, error, orders", [
    ("site:add:static", "siteUser: This value is not valid.", None,
     # the gateway answers that line as {"siteUser": "This value is not valid."}
     "CloudPanel: gateway: add the static site: clpctl reported no success: siteUser: This value is not valid.", 0),
    ("lets-encrypt:install:certificate", "Domain could not be validated", live_root("exit0.example.test"),
     "SSL: gateway: install the certificate: clpctl reported no success: Domain could not be validated; and the "
     "certificate served does not verify (Hostname mismatch, certificate is not valid for 'exit0.example.test'.)", 1),
], ids=["site-orders-no-certificate", "certificate"])
def test_gateway_success_without_clpctls_success_line_fails_the_site(gateway_standins, command, says, doc_root, error,
                                                                      orders):
    standins = gateway_standins
    ids = add_pending(standins, "exit0.example.test")
    write_control(standins.control_path, {"exit0.example.test": {command: f"error-exit0:{says}"}})

    result = run_job(standins)

    assert result.returncode == 1
    assert outcome(standins, ids[0]) == ("failed", doc_root, None, error)
    assert len(gateway_posts(standins, CERTIFICATE)) == orders and standins.matomo.sites == {}


@pytest.mark.parametrize("route", [ADD, CERTIFICATE], ids=["site", "certificate"])
def test_gateway_call_slower_than_http_timeout_is_waited_for_not_abandoned(gateway_standins, route):
    """The gateway answers once clpctl is done: a call slower than HTTP_TIMEOUT is waited for, up to the gateway's
    own limit, not abandoned while clpctl still works."""
    standins = gateway_standins
    ids = add_pending(standins, "slow.example.test")
    standins.gateway.fault = once(Fault.delay(1.5), to(route))

    result = run_job(standins, overrides=FAST, fast_retries=True)

    assert result.returncode == 0, result.log
    assert len(gateway_posts(standins, route)) == 1
    assert "no answer within" not in result.log
    assert outcome(standins, ids[0]) == ("active", live_root("slow.example.test"), 1, None)


@pytest.mark.parametrize("how", ["wrong-token", "403-page"])
def test_gateway_refusing_the_token_stops_the_run_at_the_first_answer_rows_untouched(gateway_standins, how):
    standins = gateway_standins
    ids = add_pending(standins, "a.example.test", "b.example.test", "c.example.test")
    overrides = {}
    if how == "wrong-token":
        overrides["CLOUDPANEL_API_TOKEN"] = "not-the-gateway-key-0000"
    else:
        standins.gateway.fault = lambda request: Fault.status(403, html_page("Forbidden"),
                                                              {"Content-Type": "text/html"})

    result = run_job(standins, overrides=overrides)

    assert result.returncode == 1
    assert len(gateway_posts(standins, ADD)) == 1
    assert [row(standins, i)["status_hosting"] for i in ids] == ["pending"] * 3
    assert result.log.count("the gateway refused CLOUDPANEL_API_TOKEN") == 2  # the error, and the summary line
    assert "Run aborted: " in result.log and "set it to the gateway's API key" in result.log


def test_gateway_url_ending_in_api_as_the_gateways_readme_writes_it_works(gateway_standins):
    standins = gateway_standins
    ids = add_pending(standins, "api.example.test")

    result = run_job(standins, overrides={"CLOUDPANEL_API_URL": standins.gateway.url + "/api"})

    assert result.returncode == 0, result.log
    assert outcome(standins, ids[0]) == ("active", live_root("api.example.test"), 1, None)


def test_gateway_url_without_its_routes_stops_the_run_naming_the_setting(gateway_standins):
    standins = gateway_standins
    ids = add_pending(standins, "a.example.test", "b.example.test")

    result = run_job(standins, overrides={"CLOUDPANEL_API_URL": standins.gateway.url + "/v2"})

    assert result.returncode == 1
    assert [row(standins, i)["status_hosting"] for i in ids] == ["pending", "pending"]
    # the listing's 404 says only that this gateway has none; the add's says the address is wrong
    assert [(r["method"], r["path"]) for r in standins.gateway.requests_log] == [
        ("GET", "/v2/lists/api/sites"), ("POST", "/v2/api/site/add/static")]
    assert "/v2/api/site/add/static is not a gateway route here (HTTP 404: Endpoint not found): set " \
           "CLOUDPANEL_API_URL to the gateway's base URL" in result.log


@pytest.mark.parametrize("status", [301, 302])
def test_gateway_url_that_redirects_stops_the_run_at_the_first_answer_and_sends_nothing_to_the_other_host(
        gateway_standins, status):
    standins = gateway_standins
    ids = add_pending(standins, "a.example.test", "b.example.test", "c.example.test")
    elsewhere = standins.matomo  # any other server: it must hear nothing, and no key
    standins.gateway.fault = lambda request: Fault.status(status, "", {"Location": elsewhere.url + request["path"]})
    elsewhere.clear_log()

    result = run_job(standins)

    assert result.returncode == 1
    assert [row(standins, i)["status_hosting"] for i in ids] == ["pending"] * 3
    assert len(standins.gateway.requests_log) == 1
    assert [r for r in elsewhere.requests_log if "x-api-key" in r["headers"] or r["path"].startswith("/lists")] == []
    assert (f"HTTP {status}, a redirect to {elsewhere.url}/lists/api/sites: set CLOUDPANEL_API_URL to the address it "
            "points to") in result.log
    assert "Run aborted: " in result.log


def test_check_names_the_setting_when_the_gateway_url_has_no_routes(gateway_standins):
    standins = gateway_standins

    result = run_job(standins, "--check", overrides={"CLOUDPANEL_API_URL": standins.gateway.url + "/v2"})

    assert result.returncode == 1
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAIL  CloudPanel")]
    assert len(failed) == 1 and "set CLOUDPANEL_API_URL" in failed[0], failed


def test_check_shows_the_gateways_own_details_when_its_read_only_probe_fails(gateway_standins):
    standins = gateway_standins
    standins.gateway.fault = lambda request: (
        Fault.status(500, {"success": False, "error": "Failed to list users",
                           "details": "sudo: clpctl: command not found"})
        if request["path"] == "/api/user/list" else None)

    result = run_job(standins, "--check")

    assert result.returncode == 1
    assert "FAIL  CloudPanel: gateway answered HTTP 500 to a read-only request: sudo: clpctl: command not found" \
        in result.stdout


def test_gateway_asking_for_a_wait_beyond_the_cap_is_not_asked_again_this_run(gateway_standins):
    standins = gateway_standins
    ids = add_pending(standins, "a.example.test", "b.example.test", "c.example.test", "bad..example.test")
    standins.gateway.fault = lambda request: Fault.status(
        429, {"success": False, "error": "Too many requests, please try again later.", "retryAfter": 900})

    result = run_job(standins, fast_retries=True, timeout=60)

    assert result.returncode == 1
    assert len(standins.gateway.requests_log) == 1
    assert [row(standins, i)["status_hosting"] for i in ids] == ["pending"] * 3 + ["failed"]  # the rest goes on
    assert result.log.count("CloudPanel asked to wait 900 s") == 1


def test_matomo_asking_for_a_wait_beyond_the_cap_is_not_asked_again_and_sites_go_live(standins):
    ids = add_pending(standins, "a.example.test", "b.example.test")
    standins.matomo.fault = lambda request: Fault.status(429, "Too Many Requests", {"Retry-After": "900"})

    result = run_job(standins, fast_retries=True, timeout=60)

    assert result.returncode == 0, result.log
    assert len(standins.matomo.requests_log) == 1
    assert [outcome(standins, i)[:3] for i in ids] == [("active", live_root(d), None) for d in (
        "a.example.test", "b.example.test")]
    assert result.log.count("Matomo asked to wait 900 s") == 1


# == The secret scan itself ======================================================================================
# tests/support/harness.py scans every run of the job in every test (tests/conftest.py); here a secret is planted
# where a leak would land, to show that the scan finds it.

def test_the_secret_scan_finds_a_planted_fragment_of_a_key_in_the_log_file(standins):
    add_pending(standins, "scan.example.test")
    run_job(standins)
    log = Path(standins.env["LOG_FILE"])
    clean = log.read_text()
    log.write_text(clean + f"oops {standins.postgrest.service_key[3:11]} oops\n")

    with pytest.raises(AssertionError, match=r"log file .*(SUPABASE_SERVICE_KEY|Supabase key)"):
        watched.check()

    log.write_text(clean)
    watched.check()


def test_the_secret_scan_finds_a_fragment_of_a_site_password_in_a_row(gateway_standins):
    standins = gateway_standins
    ids = add_pending(standins, "scan.example.test")
    run_job(standins)
    password = next(iter(standins.gateway.received_passwords))
    standins.postgrest.update_row(ids[0], error_message=f"CloudPanel: {password[10:18]}")

    with pytest.raises(AssertionError, match=r"error_message of row .*a generated site password"):
        watched.check()

    standins.postgrest.update_row(ids[0], error_message=f"CloudPanel: {password[10:17]}")  # 7 are not a secret
    watched.check()


def test_the_secret_scan_reads_what_a_started_job_printed_and_a_token_it_was_given(standins):
    process = start_job(standins, "--check", overrides={"MATOMO_API_TOKEN": "given-token-5f2c9e81"})
    process.communicate(timeout=60)
    process.captured = (process.captured[0] + "…c9e81 and 5f2c9e81…", process.captured[1])

    found = secret_characters(places_of(watched.runs), secrets_of(watched.runs))

    assert len(found) == 1 and found[0].startswith("stdout of run 1: MATOMO_API_TOKEN 'given-token-5f2c9e81'")
    watched.forget()


def test_the_secret_scan_covers_every_password_the_fake_clpctl_received(standins):
    add_pending(standins, "one.example.test", "two.example.test")
    run_job(standins)
    names = [name for name in secrets_of(watched.runs) if "generated site password" in name]
    assert len(names) == 2
