"""How long a run takes, and how much memory, when a service drips its answer or answers 1.5 GB; and how soon SIGTERM
or SIGHUP ends a run stuck on a dripping service. The real command against the stand-ins, one service at a time.

    .venv/bin/python bench/hostile.py [--timeout 3] [--huge 1500000000] [--only Matomo]

Goals: a dripping service ends the run within 2 x HTTP_TIMEOUT of its request (the gateway's calls that wait on
clpctl have their own, longer, limit: its site listing is dripped here, which has HTTP_TIMEOUT); a signal ends it
within that deadline plus 5 s; a 1.5 GB answer leaves the run's peak memory (GNU time's %M) within 20 % of an
ordinary run's.
"""

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.standins import start_all  # noqa: E402
from tests.standins.faults import Fault  # noqa: E402

SERVICES = ("Supabase", "Matomo", "gateway", "monitoring ping")


def standin_of(standins, service):
    return {"Supabase": standins.postgrest, "Matomo": standins.matomo, "gateway": standins.gateway,
            "monitoring ping": standins.matomo}[service]


def only_for(service, fault):
    """The fault for the service's own requests: the pings go to a path of the Matomo stand-in of their own."""
    if service == "monitoring ping":
        return lambda request: fault if request["path"].startswith("/ping") else None
    if service == "Matomo":
        return lambda request: fault if request["path"].endswith("index.php") else None
    if service == "gateway":  # a request that has HTTP_TIMEOUT (the add and the certificate wait on clpctl)
        return lambda request: fault if request["path"] == "/lists/api/sites" else None
    return lambda request: fault


def environment(standins, timeout):
    environ = {key: value for key, value in os.environ.items() if not key.startswith(("SUPABASE_", "MATOMO_",
                                                                                       "CLOUDPANEL_"))}
    environ.update(standins.env, PYTHONPATH=str(REPO), HTTP_TIMEOUT=str(timeout), MAX_SITES_PER_RUN="0",
                   HEALTHCHECK_URL=standins.matomo.url + "/ping/bench")
    return environ


def run(standins, timeout, signum=None, signal_after=None):
    """One run under GNU time: (seconds, peak RSS in kB, exit code). With `signum`, the seconds from the signal to
    the end."""
    with tempfile.NamedTemporaryFile("r") as figures:
        started = time.monotonic()
        process = subprocess.Popen(["/usr/bin/time", "-f", "%M", "-o", figures.name, sys.executable, "-m",
                                    "hosting_automator.main", "-q"], cwd=standins.dir,
                                   env=environment(standins, timeout), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        if signum is not None:
            time.sleep(signal_after)  # the run is stuck on the dripping answer by then
            signalled = time.monotonic()
            for child in _children(process.pid):
                os.kill(child, signum)
            process.wait(timeout=600)
            took = time.monotonic() - signalled
        else:
            process.wait(timeout=600)
            took = time.monotonic() - started
        peak = int(Path(figures.name).read_text().split()[-1] or 0)
    return took, peak, process.returncode


def _children(pid):
    """The job under /usr/bin/time."""
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(child) for child in found] or [pid]


def fresh(directory, name, sites=3):
    standins = start_all(Path(directory) / name, gateway=True)
    for index in range(sites):
        standins.postgrest.insert({"domain": f"{name.lower().replace(' ', '-')}-{index}.example.test",
                                   "status_dns": "active", "status_hosting": "pending"})
    return standins


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=3.0, help="HTTP_TIMEOUT of the runs (default 3)")
    parser.add_argument("--huge", type=int, default=1_500_000_000, help="bytes of the huge answer (default 1.5 GB)")
    parser.add_argument("--only", action="append", choices=SERVICES, help="one service (repeatable)")
    args = parser.parse_args()
    services = args.only or SERVICES
    with tempfile.TemporaryDirectory() as directory:
        baseline = fresh(directory, "ordinary")
        try:
            base_seconds, base_peak, base_code = run(baseline, args.timeout)
        finally:
            baseline.stop()
        print(f"ordinary run: {base_seconds:.1f} s, peak {base_peak / 1024:.1f} MB, exit {base_code}")
        print(f"{'service':<16} {'timed out':>9} {'drip: run':>10} {'SIGTERM':>8} {'SIGHUP':>8} "
              f"{'1.5 GB: peak':>13} {'ratio':>6}")
        for service in services:
            row = [service]
            for signum in (None, signal.SIGTERM, signal.SIGHUP):
                standins = fresh(directory, f"{service}-drip-{signum}")
                standin_of(standins, service).fault = only_for(service, Fault.drip(seconds=1.0, size=10_000))
                try:
                    took, _, _ = run(standins, args.timeout, signum, signal_after=args.timeout / 2 + 1)
                finally:
                    standins.stop()
                if signum is None:  # each request that met the deadline says so in the log
                    timed_out = (Path(standins.env["LOG_FILE"]).read_text().count(f"within {args.timeout:g} s")
                                 if Path(standins.env["LOG_FILE"]).exists() else 0)
                    row.append(f"{timed_out} x")
                row.append(f"{took:.1f} s")
            standins = fresh(directory, f"{service}-huge")
            standin_of(standins, service).fault = only_for(service, Fault.huge(args.huge, declared=False))
            try:
                _, peak, _ = run(standins, args.timeout)
            finally:
                standins.stop()
            row += [f"{peak / 1024:.1f} MB", f"{peak / base_peak:.2f}"]
            print(f"{row[0]:<16} {row[1]:>15} {row[2]:>10} {row[3]:>8} {row[4]:>8} {row[5]:>13} {row[6]:>6}",
                  flush=True)
    print(f"goals: a signal ends the run < {args.timeout + 5:g} s; peak ratio <= 1.20. Each dripped request ends at "
          f"its deadline ({args.timeout:g} s, 'timed out' counts them); the run goes on (retries, the next sites), "
          f"so a drip run lasts about that many deadlines and their back-off")


if __name__ == "__main__":
    main()
