"""Runs the real command (`python -m hosting_automator.main`) as a subprocess against the stand-ins, and checks
every such run for secrets: no 8 characters in a row of a key, a token or a generated site password may reach
the log file, stdout, stderr (--json included) or a row's error_message."""

import collections
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from hosting_automator.core.config import SETTING_NAMES
from tests.support import retries

REPO = Path(__file__).resolve().parents[2]  # tests/support/harness.py -> the checkout
# The checkout whose job the tests run: this one, unless HOSTING_AUTOMATOR_JOB_PATH names another (a `git worktree`
# of an older commit, to see which tests fail there); the tests and stand-ins always come from this checkout.
JOB_PATH = os.environ.get("HOSTING_AUTOMATOR_JOB_PATH") or str(REPO)
SETTINGS = SETTING_NAMES  # none of them may leak in from the environment the tests run in
SECRET_SETTINGS = ("SUPABASE_SERVICE_KEY", "MATOMO_API_TOKEN", "CLOUDPANEL_API_TOKEN")
PIECE = 8  # characters in a row of a secret that count as the secret


@dataclass
class JobResult:
    returncode: int
    stdout: str
    stderr: str
    log: str


def job_environment(standins, overrides=None):
    """The machine's environment without any of our settings, then the stand-ins' settings, then `overrides`
    (a value of None removes the setting). Every run prepared here is watched for secrets (see `watched`)."""
    environ = {key: value for key, value in os.environ.items() if key not in SETTINGS}
    environ.update(standins.env)
    environ["MAX_SITES_PER_RUN"] = "0"
    environ["PYTHONPATH"] = job_pythonpath()
    for key, value in (overrides or {}).items():
        if value is None:
            environ.pop(key, None)
        else:
            environ[key] = str(value)
    watched.runs.append(WatchedRun(standins, environ))
    return environ


def job_pythonpath():
    """PYTHONPATH for a run of the job: JOB_PATH's hosting_automator, and this checkout's tests (the stand-ins,
    tests.support.retries)."""
    return JOB_PATH if JOB_PATH == str(REPO) else os.pathsep.join((JOB_PATH, str(REPO)))


class JobProcess(subprocess.Popen):
    """The job's process; keeps what communicate() read, for the secret scan."""

    def communicate(self, input=None, timeout=None):  # noqa: A002 - Popen's own signature
        stdout, stderr = super().communicate(input, timeout)
        self.captured = (stdout or "", stderr or "")
        return stdout, stderr


def start_job(standins, *arguments, overrides=None, fast_retries=False, prefix=(), **popen):
    """fast_retries: run through tests/support/retries.py, which cuts every retry wait 100-fold. prefix: a command
    that runs the job (e.g. `unshare --user --map-root-user`)."""
    job = [retries.SCRIPT] if fast_retries else ["-m", "hosting_automator.main"]
    environ = job_environment(standins, overrides)
    process = JobProcess([*prefix, sys.executable, *job, *arguments], cwd=standins.dir, env=environ,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    process.captured = ("", "")
    watched.runs[-1].process = process
    return process


def run_job(standins, *arguments, overrides=None, timeout=120, fast_retries=False, prefix=()):
    """Run the job to its end (killed, and the test failed, after `timeout` seconds); the run is then scanned for
    secrets at once, and again when the test ends."""
    process = start_job(standins, *arguments, overrides=overrides, fast_retries=fast_retries, prefix=prefix,
                        start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(process)
        raise AssertionError(f"the job did not finish within {timeout} s") from None
    result = JobResult(process.returncode, stdout, stderr, read_log(standins))
    watched.check()
    return result


def kill_group(process):
    """SIGKILL a job started in a session of its own, with everything it started, and read what it left."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        process.communicate(timeout=10)  # JobProcess keeps what it read, for the secret scan
    except (subprocess.TimeoutExpired, ValueError):  # a grandchild still holds the pipe, or it was read already
        pass


def wait_for(predicate, timeout=30.0, what="a condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def wait_for_orphans(*standins, timeout=30.0):
    """A killed job's clpctl child runs on in its own session; the next cron run comes minutes later. Wait for it
    like the next run would, so a test measures the job, not a race between two clpctl processes. Each of
    `standins` is anything with a `.db_path` (None: the gateway's, no local clpctl)."""
    db_paths = [each.db_path for each in standins if each.db_path]
    if db_paths:
        wait_for(lambda: not clpctl_processes(*db_paths), timeout, "orphaned clpctl processes to finish")


def read_log(standins):
    path = Path(standins.env["LOG_FILE"])
    return path.read_text() if path.exists() else ""


def standins_of(request, transport):
    """The `standins` or `gateway_standins` fixture, for a test parametrized over the transport."""
    return request.getfixturevalue("gateway_standins" if transport == "gateway" else "standins")


def add_pending(standins, *rows):
    """Insert pending rows whose DNS is ready; each a domain (any value) or a dict of columns. Their ids."""
    return [standins.postgrest.insert({"status_dns": "active", "status_hosting": "pending",
                                       **(row if isinstance(row, dict) else {"domain": row})})["id"]
            for row in rows]


# -- the secret scan ---------------------------------------------------------------------------------------------

@dataclass
class WatchedRun:
    standins: object
    environ: dict
    process: JobProcess = None


class SecretLeak(AssertionError):
    """Characters of a secret reached what the job shows or stores."""


class _Watched:
    """Every run of the job in the current test. tests/conftest.py empties it before each test and checks it after
    each one, so no test can forget the scan; run_job checks at once too."""

    def __init__(self):
        self.runs = []

    def forget(self):
        self.runs = []

    def check(self):
        """Raise SecretLeak when a secret shows in any run's output, log file or in any row's error_message."""
        runs, self.runs = self.runs, []
        findings = secret_characters(places_of(runs), secrets_of(runs))
        if findings:
            raise SecretLeak("secret characters found:\n" + "\n".join(findings))
        self.runs = runs


watched = _Watched()


def places_with_secrets(extra_places=()):
    """Where characters of a secret show in the runs watched so far and in `extra_places` ((where, text) pairs),
    each place named once and no secret quoted: for the benchmarks, whose output is kept."""
    runs = watched.runs
    findings = secret_characters(places_of(runs) + list(extra_places), secrets_of(runs))
    return sorted({finding.split(": ", 1)[0] for finding in findings})


def secrets_of(runs):
    """name -> value of every secret the watched runs knew: the settings they were given, the stand-ins' own keys,
    and every site password the fake clpctl or gateway received."""
    from tests.standins import clpctl_state

    secrets = {}
    for run in runs:
        standins = run.standins
        for name in SECRET_SETTINGS:
            if run.environ.get(name):
                secrets[f"{name} {run.environ[name]!r}"] = run.environ[name]
        keys = {"Supabase key": standins.postgrest.service_key, "Matomo token": standins.matomo.token}
        if standins.gateway is not None:
            keys["gateway key"] = standins.gateway.api_key
            passwords = set(standins.gateway.received_passwords)
        else:
            passwords = set()
        passwords.update(clpctl_state.received_passwords(standins.db_path))
        for name, value in keys.items():
            secrets[f"the stand-in's {name} {value!r}"] = value
        for password in passwords:
            secrets[f"a generated site password {password[:3]}…"] = password
    return secrets


def places_of(runs):
    """(where, text) of everything the runs showed or stored."""
    places = []
    log_files = set()
    for index, run in enumerate(runs, 1):
        if run.process is not None:
            stdout, stderr = run.process.captured
            places += [(f"stdout of run {index}", stdout), (f"stderr of run {index}", stderr)]
        directory = Path(run.standins.dir)
        for name in (run.environ.get("LOG_FILE"), run.standins.env.get("LOG_FILE"), "hosting_automator.log"):
            if name:
                path = directory / name
                log_files.update(p for p in [path, *path.parent.glob(path.name + ".*")] if p.is_file())
    for path in sorted(log_files):
        places.append((f"log file {path}", path.read_text(errors="replace")))
    seen = set()
    for run in runs:
        if id(run.standins.postgrest) in seen:
            continue
        seen.add(id(run.standins.postgrest))
        for row in run.standins.postgrest.rows():
            if isinstance(row.get("error_message"), str):
                places.append((f"error_message of row {row.get('id')}", row["error_message"]))
    return places


def secret_characters(places, secrets):
    """One line for every place where PIECE characters in a row of a secret show."""
    pieces = {}
    for name, value in secrets.items():
        for start in range(len(value) - PIECE + 1):
            pieces.setdefault(value[start:start + PIECE], name)
    if not pieces:
        return []
    alphabet = "".join(sorted({character for piece in pieces for character in piece}))
    # a piece lies inside a run of the secrets' own characters: only those runs are looked into
    runs = re.compile(f"[{re.escape(alphabet)}]{{{PIECE},}}")
    findings = []
    for where, text in places:
        for found in runs.finditer(text):
            run = found.group(0)
            hit = next((start for start in range(len(run) - PIECE + 1) if run[start:start + PIECE] in pieces), None)
            if hit is not None:
                piece = run[hit:hit + PIECE]
                at = found.start() + hit
                findings.append(f"{where}: {pieces[piece]}: {text[max(0, at - 60):at + 60]!r}")
                break
    return findings


def matomo_sites_by_name(standins):
    """The Matomo stand-in's site ids, by site name (`standins` is anything with a `.matomo`)."""
    with standins.matomo.lock:
        sites = dict(standins.matomo.sites)
    by_name = collections.defaultdict(list)
    for site_id, site in sorted(sites.items()):
        by_name[site["name"]].append(site_id)
    return dict(by_name)


def clpctl_processes(*db_paths):
    """Pids of fake clpctl processes still working on one of `db_paths` (a killed job's children run on)."""
    markers = {f"FAKE_CLPCTL_DB={path}".encode() for path in db_paths}
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                environ = set(fh.read().split(b"\0"))
        except OSError:
            continue
        if markers & environ:
            pids.append(int(entry))
    return pids


def no_traceback(result):
    """A run's output and log hold no traceback, and logging itself never failed."""
    assert "Traceback" not in result.stdout + result.stderr + result.log
    assert "Logging error" not in result.stderr
