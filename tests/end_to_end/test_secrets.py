"""Secrets never shown: every text from a service is masked before anything else is done with it (an error page
echoing the request, a password echoed by a later step), a secret is masked whole before an excerpt cuts it, a
line of .env that cannot be read is named and never quoted; and the suite's own secret scan finds what it
must. Every run in every test is scanned too (tests/support/harness.py)."""

import json
from pathlib import Path

import pytest

from tests.standins import Fault
from tests.standins.clpctl_state import received_passwords, write_control
from tests.support.harness import (add_pending, no_traceback, places_of, run_job, secret_characters, secrets_of,
                                   standins_of, start_job, watched)
from tests.support.standin_views import ADD, CERTIFICATE, html_page, no_secret_in, outcome, row, to_matomo


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
