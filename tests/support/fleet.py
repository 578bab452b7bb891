"""A fleet of CloudPanel servers sharing one sites table, for tests/end_to_end/test_fleet.py.

Each server has its own fake clpctl (a wrapper script with its own SQLite CloudPanel database), its own HTTPS
stand-in reading that database (the served-certificate probe), its own lock and log file, SERVER_NAME and
SERVER_ADDRESSES. The servers share one PostgREST stand-in (the sites table), one Matomo stand-in and one DNS
stand-in. The addresses are documentation addresses: they are only compared, as text, with DNS answers.

A `Server` has the attributes tests/support/harness.py's start_job/run_job and its secret scan expect of a `standins`
object (`env`, `dir`, `postgrest`, `matomo`, `gateway`, `db_path`), so every run of the real command made here is
scanned for secrets like any other.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import trustme

from hosting_automator.services.cloudpanel_client import document_root, site_user_for
from tests.support.harness import kill_group, matomo_sites_by_name, start_job, wait_for_orphans
from tests.standins import clpctl_state
from tests.standins.__main__ import write_clpctl_wrapper
from tests.standins.dns import FakeDns
from tests.standins.matomo import FakeMatomo
from tests.standins.postgrest import FakePostgrest
from tests.standins.tls import FakeHttpsServer

ADDRESSES = {"web-1": "198.51.100.1", "web-2": "198.51.100.2", "web-3": "198.51.100.3"}
NOWHERE = "203.0.113.99"  # an address of no server of the fleet
JOB_TIMEOUT = 120  # seconds one run of one server may take before the test fails


class Server:
    """One CloudPanel server of the fleet: what the harness calls `standins`, for this server's runs."""

    gateway = None  # local clpctl, never the HTTP gateway

    def __init__(self, name, address, directory, postgrest, matomo, dns, ca, ca_file, http_timeout):
        self.name, self.address = name, address
        self.dir = str(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.postgrest, self.matomo, self.dns = postgrest, matomo, dns
        self.db_path = str(directory / "clpctl.sq3")
        self.control_path = str(directory / "clpctl-control.json")
        self.clpctl_path = str(directory / "clpctl")
        clpctl_state.ensure_db(self.db_path)
        write_clpctl_wrapper(self.clpctl_path, self.db_path, self.control_path)
        self.tls = FakeHttpsServer(ca, self.db_path).start()
        self.env = {
            "SUPABASE_URL": postgrest.url,
            "SUPABASE_SERVICE_KEY": postgrest.service_key,
            "MATOMO_API_URL": matomo.url + "/",
            "MATOMO_API_TOKEN": matomo.token,
            "CLOUDPANEL_CLPCTL": self.clpctl_path,
            "CLOUDPANEL_DB_PATH": self.db_path,
            "CLOUDPANEL_HTTPS_ADDRESS": self.tls.address,
            "LOG_FILE": str(directory / "hosting_automator.log"),
            "LOCK_FILE": str(directory / "run.lock"),
            "SERVER_NAME": name,
            "SERVER_ADDRESSES": address,
            "DNS_RESOLVERS": dns.resolvers_setting,
            "HTTP_TIMEOUT": str(http_timeout),
            "SSL_CERT_FILE": ca_file,  # OpenSSL's: the certificate probe trusts the stand-in CA
        }
        # SERVER_NAME, SERVER_ADDRESSES and DNS_RESOLVERS: the machine's values never reach the job
        # (tests/support/harness.py's SETTINGS); self.env sets this server's.

    def stop(self):
        self.tls.stop()

    # -- what this server's CloudPanel holds -------------------------------------------------------------------
    def sites(self):
        """domain -> number of CloudPanel sites of that name on this server."""
        return collections.Counter(site["domain_name"] for site in clpctl_state.read_sites(self.db_path))

    def certificate_orders(self):
        """domain -> number of certificate orders for it on this server."""
        return collections.Counter(r["domain_name"] for r in clpctl_state.certificate_requests(self.db_path))

    def clpctl_domains(self):
        """Every domain a clpctl call of this server named (any command)."""
        named = set()
        for call in clpctl_state.calls(self.db_path):
            for argument in call["argv"]:
                if isinstance(argument, str) and argument.startswith("--domainName="):
                    named.add(argument.split("=", 1)[1])
        return named

    def log(self):
        path = Path(self.env["LOG_FILE"])
        files = sorted(path.parent.glob(path.name + ".*"), reverse=True) + [path]
        return "".join(f.read_text(errors="replace") for f in files if f.exists())


@dataclass
class Run:
    """One run of one server in a round."""

    server: Server
    process: subprocess.Popen
    stdout: str = ""
    stderr: str = ""
    killed: str | None = None  # why the test SIGKILLed it, when it did
    seconds: float = 0.0

    @property
    def returncode(self):
        return self.process.returncode


@dataclass
class Round:
    runs: list
    seconds: float
    kills: list = field(default_factory=list)

    @property
    def exit_codes(self):
        return {run.server.name: run.returncode for run in self.runs}


class Fleet:
    """Three servers (by default) and the shared stand-ins; a context manager that stops everything."""

    def __init__(self, directory, names=tuple(ADDRESSES), http_timeout=5):
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.dir = directory
        self.ca = trustme.CA()
        self.ca_file = str(directory / "ca.pem")
        self.ca.cert_pem.write_to_path(self.ca_file)
        self._started = []
        try:
            self.postgrest = self._start(FakePostgrest())
            self.matomo = self._start(FakeMatomo())
            self.dns = self._start(FakeDns())
            self.servers = []
            for name in names:
                server = Server(name, ADDRESSES[name], directory / name, self.postgrest, self.matomo, self.dns,
                                self.ca, self.ca_file, http_timeout)
                self._started.append(server)
                self.servers.append(server)
        except BaseException:
            self.stop()
            raise
        self.by_name = {server.name: server for server in self.servers}
        self.kill_after_write = 0.0  # chance that a PATCH that landed kills the job that sent it, before it hears
        self.kill_rng = None         # a seeded random.Random, for kill_after_write
        self._running = {}           # server name -> its Run, during a round
        self._running_lock = threading.Lock()
        self.postgrest.on_patch_applied = self._written

    def _start(self, standin):
        standin.start()
        self._started.append(standin)
        return standin

    def stop(self):
        for standin in reversed(self._started):
            standin.stop()
        self._started = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def quiet(self):
        """Stop recording requests (long runs): counts go on."""
        for standin in (self.postgrest, self.matomo, self.dns, *(s.tls for s in self.servers)):
            standin.record_requests = False

    # -- the table and DNS ---------------------------------------------------------------------------------------
    def add(self, domain, address, **columns):
        """A pending row whose status_dns is active, and DNS for its domain (`address` None: no record, NXDOMAIN);
        its id."""
        if address is not None:
            self.dns.set(domain, address)
        return self.postgrest.insert({"domain": domain, "status_dns": "active", "status_hosting": "pending",
                                      **columns})["id"]

    # -- runs ----------------------------------------------------------------------------------------------------
    def start(self, server, *arguments, overrides=None):
        return start_job(server, *arguments, overrides=overrides, fast_retries=True, start_new_session=True)

    def round(self, *arguments, servers=None, overrides=None, kills=(), timeout=JOB_TIMEOUT):
        """Start every server's run at once (as cron on each machine would, at the same minute) and wait for all.

        `servers`: the names of the servers whose cron runs this round (default all). `kills`: (server name,
        seconds after the start) pairs, to SIGKILL that server's job then (the job only: its clpctl child runs on,
        as after a crash); the round then waits for such orphans like the next cron run, minutes later, would. A
        run still alive after `timeout` seconds is killed and the round fails."""
        servers = [self.by_name[name] for name in servers] if servers else self.servers
        started = time.monotonic()
        runs = [Run(server, self.start(server, *arguments, overrides=overrides)) for server in servers]
        with self._running_lock:
            self._running = {run.server.name: run for run in runs}
        killers = []
        for name, after in kills:
            run = next(run for run in runs if run.server.name == name)
            timer = threading.Timer(after, _kill, args=(run, f"by the timer after {after:.2f} s"))
            timer.start()
            killers.append(timer)
        waiters = [threading.Thread(target=_wait, args=(run, timeout, started), daemon=True) for run in runs]
        for waiter in waiters:
            waiter.start()
        for waiter in waiters:
            waiter.join(timeout + 30)
        for timer in killers:
            timer.cancel()
        with self._running_lock:
            self._running = {}
        hung = [run.server.name for run in runs if run.process.poll() is None or run.killed == "timeout"]
        for run in runs:
            if run.process.poll() is None:
                kill_group(run.process)
        wait_for_orphans(*self.servers)  # as the next cron run, minutes later, would
        if hung:
            raise AssertionError(f"runs of {hung} did not finish within {timeout} s")
        return Round(runs, time.monotonic() - started, [run for run in runs if run.killed])

    def _written(self, row):
        """The PostgREST stand-in's callback after a PATCH changed `row`, before it answers. Only the server a row
        is assigned to writes it (a claim assigns it first), so `hosting_server` names the writer."""
        with self._running_lock:
            if not self.kill_after_write or self.kill_rng.random() >= self.kill_after_write:
                return
            run = self._running.get(row.get("hosting_server"))
        if run is not None:
            _kill(run, f"after a write to row {row.get('id')} landed")

    # -- the state, for "nothing changes" and the checks ---------------------------------------------------------
    def snapshot(self):
        rows = tuple((row["id"], row["status_hosting"], row["hosting_server"], row["error_message"],
                      row["doc_root"], row["matomo_id"]) for row in self.postgrest.rows())
        clpctl = tuple((server.name, tuple(sorted(server.sites().items())),
                        tuple(sorted(server.certificate_orders().items()))) for server in self.servers)
        with self.matomo.lock:
            matomo = len(self.matomo.sites)
        return rows, clpctl, matomo

    def matomo_sites_by_name(self):
        return matomo_sites_by_name(self)

    def problems(self, expected_server, unpointed=()):
        """Everything that differs from the end state a fleet must reach: `expected_server` maps each pointed
        domain to the server its DNS names; `unpointed` domains must still be pending and unassigned, nowhere."""
        rows = {row["domain"]: row for row in self.postgrest.rows()}
        sites = {server.name: server.sites() for server in self.servers}
        orders = {server.name: server.certificate_orders() for server in self.servers}
        matomo = self.matomo_sites_by_name()
        found = []
        for domain, owner in expected_server.items():
            row = rows[domain]
            wanted = ("active", owner, document_root(site_user_for(domain), domain), None)
            got = (row["status_hosting"], row["hosting_server"], row["doc_root"], row["error_message"])
            if got != wanted:
                found.append(f"{domain}: row {got}, wanted {wanted}")
            for name in sites:
                want = int(name == owner)
                if sites[name][domain] != want:
                    found.append(f"{domain}: {sites[name][domain]} CloudPanel sites on {name}, wanted {want}")
                if orders[name][domain] != want:
                    found.append(f"{domain}: {orders[name][domain]} certificate orders on {name}, wanted {want}")
            if matomo.get(domain, []) != [row["matomo_id"]]:
                found.append(f"{domain}: Matomo sites {matomo.get(domain, [])}, row's matomo_id {row['matomo_id']}")
        for domain in unpointed:
            row = rows[domain]
            got = (row["status_hosting"], row["hosting_server"], row["error_message"], row["doc_root"],
                   row["matomo_id"])
            if got != ("pending", None, None, None, None):
                found.append(f"{domain} (unpointed): row {got}, wanted pending, unassigned, untouched")
            for name in sites:
                if sites[name][domain] or orders[name][domain]:
                    found.append(f"{domain} (unpointed): {sites[name][domain]} sites and {orders[name][domain]} "
                                 f"certificate orders on {name}")
            if domain in matomo:
                found.append(f"{domain} (unpointed): Matomo sites {matomo[domain]}")
        return found

    def figures(self, expected_server):
        """Counts for the soak's printout."""
        sites = {server.name: server.sites() for server in self.servers}
        orders = {server.name: server.certificate_orders() for server in self.servers}
        matomo = self.matomo_sites_by_name()
        duplicates = (sum(n - 1 for per in sites.values() for n in per.values() if n > 1)
                      + sum(n - 1 for per in orders.values() for n in per.values() if n > 1)
                      + sum(len(ids) - 1 for ids in matomo.values() if len(ids) > 1))
        wrong_sites = sum(n for name, per in sites.items() for domain, n in per.items()
                          if expected_server.get(domain) != name)
        wrong_orders = sum(n for name, per in orders.items() for domain, n in per.items()
                           if expected_server.get(domain) != name)
        rows = {row["domain"]: row for row in self.postgrest.rows()}
        lost = sum(1 for domain, owner in expected_server.items()
                   if rows.get(domain, {}).get("status_hosting") != "active"
                   or rows[domain].get("hosting_server") != owner)
        return {"sites per server": {name: sum(per.values()) for name, per in sites.items()},
                "duplicates": duplicates, "wrong-server sites": wrong_sites, "wrong-server orders": wrong_orders,
                "lost rows": lost}


def _wait(run, timeout, started):
    try:
        run.stdout, run.stderr = run.process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        run.killed = "timeout"
        kill_group(run.process)
    run.seconds = time.monotonic() - started


def _kill(run, why):
    """SIGKILL the job itself (not its process group): its clpctl child runs on in its own session."""
    if run.process.poll() is None:
        try:
            os.kill(run.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        run.killed = why
