"""How long a run takes, and how much memory, when a service drips its answer or answers 1.5 GB; and how soon SIGTERM
or SIGHUP ends a run stuck on a dripping service. The real command against the stand-ins, one service at a time.

    .venv/bin/python bench/hostile.py [--timeout 3] [--huge 1500000000] [--only Matomo]

Goals: a dripping service ends the run within 2 x HTTP_TIMEOUT of its request (the gateway's calls that wait on
clpctl have their own, longer, limit: its site listing is dripped here, which has HTTP_TIMEOUT); a signal ends it
within that deadline plus 5 s; a 1.5 GB answer leaves the run's peak memory (GNU time's %M) within 20 % of an
ordinary run's. Each run is the tests' (tests/support/harness.py: the same clean environment, the same secret
scan); a secret shown anywhere makes the exit code 1.
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
from tests.support.harness import add_pending, places_with_secrets, read_log, start_job, watched  # noqa: E402

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


def run(standins, timeout, signum=None, signal_after=None):
    """One run of the job as the tests run it, under GNU time: (seconds, peak RSS in kB, exit code, places where a
    secret showed). With `signum`, the seconds from the signal to the end."""
    with tempfile.NamedTemporaryFile("r") as figures:
        started = time.monotonic()
        process = start_job(standins, "-q", prefix=["/usr/bin/time", "-f", "%M", "-o", figures.name],
                            overrides={"HTTP_TIMEOUT": timeout, "HEALTHCHECK_URL": standins.matomo.url + "/ping/bench"})
        if signum is not None:
            time.sleep(signal_after)  # the run is stuck on the dripping answer by then
            signalled = time.monotonic()
            for child in _children(process.pid):
                os.kill(child, signum)
            process.communicate(timeout=600)
            took = time.monotonic() - signalled
        else:
            process.communicate(timeout=600)
            took = time.monotonic() - started
        peak = int(Path(figures.name).read_text().split()[-1] or 0)
    leaks = places_with_secrets()
    watched.forget()
    return took, peak, process.returncode, leaks


def _children(pid):
    """The job under /usr/bin/time."""
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(child) for child in found] or [pid]


def measure(directory, name, timeout, service=None, fault=None, signum=None):
    """A run of three pending sites against fresh stand-ins, `fault` on `service`'s requests: run()'s figures, and
    how many requests the log says met their deadline."""
    standins = start_all(Path(directory) / name, gateway=True)
    # the same names in every run (each has stand-ins of its own), none with a piece of a stand-in's key in it
    add_pending(standins, *(f"site{index}.example.test" for index in range(3)))
    if service:
        standin_of(standins, service).fault = only_for(service, fault)
    try:
        took, peak, code, leaks = run(standins, timeout, signum, signal_after=timeout / 2 + 1)
    finally:
        standins.stop()
    timed_out = read_log(standins).count(f"within {timeout:g} s")
    return took, peak, code, leaks, timed_out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=3.0, help="HTTP_TIMEOUT of the runs (default 3)")
    parser.add_argument("--huge", type=int, default=1_500_000_000, help="bytes of the huge answer (default 1.5 GB)")
    parser.add_argument("--only", action="append", choices=SERVICES, help="one service (repeatable)")
    args = parser.parse_args()
    leaks = []
    with tempfile.TemporaryDirectory() as directory:
        base_seconds, base_peak, base_code, shown, _ = measure(directory, "ordinary", args.timeout)
        leaks += shown
        print(f"ordinary run: {base_seconds:.1f} s, peak {base_peak / 1024:.1f} MB, exit {base_code}")
        print(f"{'service':<16} {'timed out':>9} {'drip: run':>10} {'SIGTERM':>8} {'SIGHUP':>8} "
              f"{'1.5 GB: peak':>13} {'ratio':>6}")
        for service in args.only or SERVICES:
            drip = Fault.drip(seconds=1.0, size=10_000)
            took, _, _, shown, timed_out = measure(directory, f"{service}-drip", args.timeout, service, drip)
            on_signal = [measure(directory, f"{service}-{signum.name}", args.timeout, service, drip, signum)
                         for signum in (signal.SIGTERM, signal.SIGHUP)]
            _, peak, _, shown_huge, _ = measure(directory, f"{service}-huge", args.timeout, service,
                                                Fault.huge(args.huge, declared=False))
            leaks += shown + shown_huge + [where for figures in on_signal for where in figures[3]]
            print(f"{service:<16} {timed_out:>7} x {took:>8.1f} s {on_signal[0][0]:>6.1f} s {on_signal[1][0]:>6.1f} s "
                  f"{peak / 1024:>10.1f} MB {peak / base_peak:>6.2f}", flush=True)
    print(f"goals: a signal ends the run < {args.timeout + 5:g} s; peak ratio <= 1.20. Each dripped request ends at "
          f"its deadline ({args.timeout:g} s, 'timed out' counts them); the run goes on (retries, the next sites), "
          f"so a drip run lasts about that many deadlines and their back-off")
    for where in leaks:
        print(f"FAILED: a secret is shown in {where}")
    return 1 if leaks else 0


if __name__ == "__main__":
    sys.exit(main())
