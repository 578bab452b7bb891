"""--check: every setting and service looked at read-only, one line each, exit 0 only when all pass."""

import json
import os
import socket
from collections.abc import Callable

from hosting_automator.core.config import Settings, env_file_readable_by_others
from hosting_automator.masking import secret_values
from hosting_automator.core.retry import RetryPolicy
from hosting_automator.errors import ConfigurationError, HostingAutomatorError, ServerNameClash
from hosting_automator.services import Services, longest_run_seconds

# What a --check looks at after the settings, in order; each named by the line it prints.
CHECK_NAMES = ("Supabase", "servers", "Matomo backfill", "CloudPanel", "Matomo", "HTTPS", "log file", "run time",
               "lock file")


def run_checks(settings: Settings, services: Services | None = None, out: Callable[[str], object] = print,
               as_json: bool = False) -> int:
    """Every check, each reported as a PASS or FAIL line (with `as_json`, one JSON document); 0 when all pass."""
    try:
        services = services or Services(settings, RetryPolicy(attempts=1))
    except HostingAutomatorError as err:  # a client refused its settings, the environment's proxy, or DNS
        return _reported([("clients", False, str(err))], out, as_json)
    mode = "clpctl HTTP gateway" if settings.uses_gateway else f"clpctl at {settings.cloudpanel_clpctl}"
    results = [("settings", True, f"all present and well-formed (CloudPanel through {mode}, "
                                  f"table {settings.sites_table})")]
    checks = zip(CHECK_NAMES, (
        lambda: _supabase(services, settings),
        lambda: _servers(services, settings),
        lambda: _without_matomo(services, settings),
        services.cloudpanel.check,
        services.matomo.check,
        lambda: _https_endpoint(settings, services),
        lambda: _writable(settings.log_file, "LOG_FILE"),
        lambda: _run_time(settings),
        lambda: _writable(settings.lock_file, "LOCK_FILE"),
    ))
    try:
        for name, check in checks:
            try:
                results.append((name, True, check()))
            except HostingAutomatorError as err:
                results.append((name, False, str(err)))
    finally:
        services.close()
    if settings.env_file:
        if env_file_readable_by_others(settings.env_file):
            results.append((".env", False, f"{settings.env_file} is readable by other users: chmod 600 it"))
        else:
            results.append((".env", True, f"{settings.env_file} is readable by its owner only"))
    return _reported(results, out, as_json)


def report_unusable_settings(err: ConfigurationError, out: Callable[[str], object] = print,
                             as_json: bool = False) -> int:
    """Settings that cannot be used: their line is the FAIL, every other check is not run (each needs them), and
    the exit code is 2, as for a run."""
    results = [("settings", False, "; ".join(err.problems))]
    results += [(name, None, "not checked (the settings are not usable)") for name in CHECK_NAMES]
    return _reported(results, out, as_json, exit_code=2)


def _reported(results, out, as_json, exit_code=None):
    """Each result is (name, passed, detail), passed None for a check not run. stdout passes no logging filter:
    masked here (a service may echo a key)."""
    failed = sum(passed is False for _, passed, _ in results)
    passed_count = sum(passed is True for _, passed, _ in results)
    if exit_code is None:
        exit_code = 1 if failed else 0
    if as_json:
        out(json.dumps({"checks": [{"name": name, "passed": passed, "detail": secret_values.mask(detail)}
                                   for name, passed, detail in results],
                        "passed": passed_count, "failed": failed, "exit_code": exit_code}))
        return exit_code
    for name, passed, detail in results:
        word = {True: "PASS", False: "FAIL", None: "----"}[passed]
        out(secret_values.mask(f"{word}  {name}: {detail}"))
    not_checked = len(results) - passed_count - failed
    out(f"{passed_count} passed, {failed} failed" + (f", {not_checked} not checked" if not_checked else ""))
    return exit_code


def _supabase(services, settings):
    services.supabase.check_table()
    services.supabase.check_writable()
    return (f"{settings.supabase_url} reachable, key accepted and may update rows, table {settings.sites_table} has "
            "every column")


def _servers(services, settings):
    """Which pending rows this server would take: its own and the unassigned ones, never another server's."""
    other = services.supabase.other_machine()
    if other is not None:
        raise ServerNameClash(settings.server_name, *other, services.machine)
    counts = services.supabase.pending_by_server()
    here, unassigned = counts.pop(settings.server_name, 0), counts.pop(None, 0)
    where = (f"SERVER_ADDRESSES {', '.join(str(address) for address in settings.server_addresses)} (a row is taken "
             "only when its domain's DNS names one)" if settings.server_addresses
             else "SERVER_ADDRESSES unset (DNS is not asked)")
    machine = f"machine {services.machine}" if services.machine else "no /etc/machine-id, so a second machine under " \
        "this name could not be told apart"
    return (f"SERVER_NAME {settings.server_name} ({machine}), {where}; pending rows: {here} assigned here, "
            f"{unassigned} unassigned, {sum(counts.values())} assigned to other servers")


def _without_matomo(services, settings):
    """Live sites that went live while Matomo failed: the runs give them their Matomo site, a few at a time."""
    missing = sum(1 for _ in services.supabase.fetch_active_without_matomo())
    if not settings.matomo_backfill_per_run:
        return f"{missing} live sites lack a Matomo site; MATOMO_BACKFILL_PER_RUN is 0, so no run adds them"
    return (f"{missing} live sites lack a Matomo site; each run adds up to {settings.matomo_backfill_per_run} "
            "(MATOMO_BACKFILL_PER_RUN)")


def _https_endpoint(settings, services):
    """Without it, or without a trust store that verifies what it serves, the job cannot see a certificate already
    served, and would order every one anew (Let's Encrypt allows five a week for one set of names)."""
    address = f"{settings.cloudpanel_https_host}:{settings.cloudpanel_https_port}"
    try:
        socket.create_connection((settings.cloudpanel_https_host, settings.cloudpanel_https_port),
                                 timeout=settings.http_timeout).close()
    except OSError as err:
        raise HostingAutomatorError(f"CLOUDPANEL_HTTPS_ADDRESS {address} cannot be reached ({err}); the job could "
                                    "not see certificates already served and would request new ones") from err
    try:
        domain = services.supabase.latest_active_domain()
    except HostingAutomatorError:  # the Supabase line says why
        domain = None
    if domain is None:
        return f"{address} accepts connections (no live site yet whose certificate could be verified)"
    served = services.served_certificate(domain)
    if served.untrusted:
        raise HostingAutomatorError(
            f"{address} serves {domain} a certificate this machine does not trust: {served.reason}; the job would "
            "order a new certificate for every site it sees again: set SSL_CERT_FILE to a CA bundle that verifies "
            "it, or leave it unset for the system's")
    if not served.valid:  # trusted, but for other names (or expiring): the site has none of its own yet
        return f"{address} accepts connections; {domain} has no valid certificate of its own yet, so a run orders " \
               f"one ({served.reason})"
    return f"{address} accepts connections; for {domain}: {served.reason}"


def _run_time(settings):
    longest = longest_run_seconds(settings) / 60
    return (f"a run starts no site after MAX_RUN_MINUTES ({settings.max_run_minutes}) and ends within "
            f"{longest:.0f} minutes: give systemd's RuntimeMaxSec and cron's timeout at least that")


def _writable(path, setting):
    """Whether the run could write `path`, found without creating it: --check is read-only, and a lock file that
    a --check as root created would be one a later run under another user could not open."""
    if os.path.isdir(path):
        raise HostingAutomatorError(f"{setting} {path} cannot be written (it is a directory)")
    if os.path.exists(path):
        if not os.access(path, os.W_OK):
            raise HostingAutomatorError(f"{setting} {path} cannot be written (no write permission)")
        return f"{path} is writable"
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise HostingAutomatorError(f"{setting} {path} cannot be created (its directory {directory} does not exist)")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise HostingAutomatorError(f"{setting} {path} cannot be created (no write permission in {directory})")
    return f"{path} would be created (its directory {directory} is writable)"
