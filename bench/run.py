"""Benchmark of the real command against local stand-ins (issue 5): wall time, sites/s, the job's own overhead per
site, start → first Supabase request, peak resident memory, speed-up of --workers. See bench/README.md.

Run from the repository root:  .venv/bin/python bench/run.py [--quick] [--scenario NAME ...] [--keep]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # for tests.standins

RESULTS_DIR = REPO / "bench" / "results"

# Every setting of the job (DESIGN.md section 4): none of them may leak in from the caller's environment.
JOB_SETTINGS = (
    "SUPABASE_URL", "SUPABASE_SERVICE_KEY", "MATOMO_API_URL", "MATOMO_API_TOKEN", "CLOUDPANEL_API_URL",
    "CLOUDPANEL_API_TOKEN", "CLOUDPANEL_CLPCTL", "CLOUDPANEL_DB_PATH", "SITES_TABLE", "LOG_FILE", "LOCK_FILE",
    "HTTP_TIMEOUT", "MATOMO_SITE_TIMEZONE", "MATOMO_SITE_CURRENCY", "HEALTHCHECK_URL", "CLOUDPANEL_HTTPS_ADDRESS",
    "MAX_SITES_PER_RUN", "WORKERS", "CLOUDPANEL_CONCURRENCY", "SSL_CERT_FILE",
)

# Goals of issue 5.
GOAL_OVERHEAD_MS = 5.0
GOAL_FIRST_REQUEST_S = 0.5
GOAL_MEMORY_RATIO = 1.15
GOAL_SPEEDUP = 6.0

RECORD_REQUESTS_UP_TO = 100  # above this many sites the stand-ins keep no request log (memory, time)


class Scenario:
    def __init__(self, name, sites, latency, workers, concurrency=None, role=""):
        self.name, self.sites, self.latency, self.workers = name, sites, latency, workers
        self.concurrency = concurrency
        self.role = role

    def describe(self):
        text = f"{self.sites} sites, {self.latency * 1000:g} ms/call, --workers {self.workers}"
        if self.concurrency:
            text += f", CLOUDPANEL_CONCURRENCY={self.concurrency}"
        return text


def scenarios(quick):
    small, medium, large = (10, 100, 1000) if quick else (10, 1000, 10000)
    latency_sites = 40 if quick else 200
    return [
        Scenario("small", small, 0.0, 1),
        Scenario("medium", medium, 0.0, 1),
        Scenario("large", large, 0.0, 1),
        Scenario("latency-w1", latency_sites, 0.1, 1),
        Scenario("latency-w8", latency_sites, 0.1, 8, concurrency=8),
    ]


# -- launching the job -----------------------------------------------------------------------------------------------
#
# Linux carries a process's peak RSS across exec(): a child's ru_maxrss is at least the RSS of the process that
# forked (or vforked) it. The benchmark process holds the stand-ins and every row (tens of MB), which would hide
# the job's own figure. So the job is started by this tiny launcher, itself a fresh `python -S` process of a few
# MB: it records time.time() just before Popen, then os.wait4(pid) for the child's exit status and rusage.
LAUNCHER = r"""
import json, os, resource, signal, subprocess, sys, time
signal.signal(signal.SIGINT, lambda *_: None)  # Ctrl-C is for the job (same process group) and the benchmark
for line in sys.stdin:
    spec = json.loads(line)
    with open(spec["stdout"], "wb") as out, open(spec["stderr"], "wb") as err:
        t_start = time.time()
        proc = subprocess.Popen(spec["argv"], env=spec["env"], cwd=spec["cwd"], stdin=subprocess.DEVNULL,
                                stdout=out, stderr=err)
    sys.stdout.write(json.dumps({"pid": proc.pid, "t_start": t_start}) + "\n"); sys.stdout.flush()
    _, status, usage = os.wait4(proc.pid, 0)
    t_end = time.time()
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: keep Popen from waiting again
    sys.stdout.write(json.dumps({"t_end": t_end, "exit_code": proc.returncode, "maxrss_kb": usage.ru_maxrss,
                                 "cpu_user": usage.ru_utime, "cpu_system": usage.ru_stime,
                                 "launcher_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}) + "\n")
    sys.stdout.flush()
"""


class Launcher:
    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-S", "-c", LAUNCHER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)

    def start(self, argv, env, cwd, stdout, stderr):
        self.proc.stdin.write(json.dumps({"argv": argv, "env": env, "cwd": cwd, "stdout": stdout,
                                          "stderr": stderr}) + "\n")
        self.proc.stdin.flush()
        return json.loads(self._line())

    def finished(self):
        return json.loads(self._line())

    def _line(self):
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the launcher process died")
        return line

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


def job_environment(standins, concurrency):
    env = {k: v for k, v in os.environ.items() if k not in JOB_SETTINGS}
    env.update(standins.env)
    env["MAX_SITES_PER_RUN"] = "0"  # no cap
    if concurrency:
        env["CLOUDPANEL_CONCURRENCY"] = str(concurrency)
    env["PYTHONPATH"] = str(REPO)
    for name in ("NO_PROXY", "no_proxy"):  # a proxy set for the shell must not sit between the job and 127.0.0.1
        env[name] = ",".join(filter(None, [env.get(name), "127.0.0.1", "localhost"]))
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    # Installed with pip, the job's modules are compiled once; run from a checkout with this set, every run would
    # compile them again (some 30 ms, counted in "first req").
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


# -- one scenario ------------------------------------------------------------------------------------------------------

def run_scenario(scenario, launcher, keep=False):
    from tests.standins import start_all

    directory = tempfile.mkdtemp(prefix=f"bench-{scenario.name}-")
    t0 = time.perf_counter()
    # gateway=True: CloudPanel through the clpctl HTTP gateway stand-in. Without it every CloudPanel call runs
    # the fake clpctl as a subprocess (~30 ms of Python start-up each), which would measure the fake, not the job.
    standins = start_all(directory, sites=scenario.sites, latency=scenario.latency, gateway=True)
    setup_seconds = time.perf_counter() - t0
    servers = standins.servers
    if scenario.sites > RECORD_REQUESTS_UP_TO:
        for server in servers:
            server.record_requests = False

    first = {}
    latency = standins.postgrest.latency

    def first_request(_request):  # a fault hook that only notes the time of the first request
        if "t" not in first:
            first["t"] = time.time() - latency  # the stand-in sleeps its latency before calling the hook
        return None

    standins.postgrest.fault = first_request

    argv = [sys.executable, "-m", "hosting_automator.main", "-q", "--json", "--workers", str(scenario.workers)]
    stdout, stderr = os.path.join(directory, "job.stdout"), os.path.join(directory, "job.stderr")
    env = job_environment(standins, scenario.concurrency)
    timeout = 300 + scenario.sites * (0.25 + 8 * scenario.latency)  # a generous guard against a hung job
    cpu_before, (busy_before, steal_before) = time.process_time(), _machine_cpu_seconds()
    started = launcher.start(argv, env, directory, stdout, stderr)
    timed_out = []
    killer = threading.Timer(timeout, lambda: (timed_out.append(True), _kill(started["pid"])))
    killer.daemon = True
    killer.start()
    try:
        try:
            ended = launcher.finished()
        except KeyboardInterrupt:
            _kill(started["pid"], signal.SIGINT)  # let the job stop cleanly, then report what it did
            ended = launcher.finished()
            raise
    finally:
        killer.cancel()
    standins_cpu = time.process_time() - cpu_before
    busy_after, steal_after = _machine_cpu_seconds()
    injected = sum(s.injected_latency_seconds for s in servers)
    requests = {s.name: s.request_count for s in servers}
    rows = standins.postgrest.rows()
    standins.stop()

    wall = ended["t_end"] - started["t_start"]
    result = {
        "scenario": scenario.name,
        "description": scenario.describe(),
        "sites": scenario.sites,
        "latency_ms": scenario.latency * 1000,
        "workers": scenario.workers,
        "cloudpanel_concurrency": scenario.concurrency or 1,
        "exit_code": ended["exit_code"],
        "timed_out": bool(timed_out),
        "wall_s": wall,
        "sites_per_s": scenario.sites / wall if wall > 0 else None,
        "injected_latency_s": injected,
        # the latency of concurrent sites overlaps, so wall - injected only means something with one worker
        "overhead_ms_per_site": (wall - injected) / scenario.sites * 1000 if scenario.workers == 1 else None,
        "first_request_s": first["t"] - started["t_start"] if "t" in first else None,
        "peak_rss_mb": ended["maxrss_kb"] / 1024,
        "launcher_rss_mb": ended["launcher_maxrss_kb"] / 1024,
        "job_cpu_s": ended["cpu_user"] + ended["cpu_system"],
        "standins_cpu_s": standins_cpu,
        "requests": requests,
        "standins_setup_s": setup_seconds,
    }
    # CPU that other processes on the machine took meanwhile, and CPU the hypervisor gave to other guests of the
    # host (steal), as shares of all cores: figures are only comparable between runs when both stay near 0
    if busy_before is not None and busy_after is not None and wall > 0:
        others = busy_after - busy_before - result["job_cpu_s"] - standins_cpu
        result["other_cpu_share"] = max(0.0, others) / (wall * (os.cpu_count() or 1))
        result["steal_share"] = (steal_after - steal_before) / (wall * (os.cpu_count() or 1))
    else:
        result["other_cpu_share"] = result["steal_share"] = None
    result["job_cpu_ms_per_site"] = result["job_cpu_s"] / scenario.sites * 1000
    result["standins_cpu_ms_per_site"] = standins_cpu / scenario.sites * 1000
    result["failures"] = _check(scenario, rows, ended["exit_code"], stdout, stderr)
    if timed_out:
        result["failures"].insert(0, f"killed after {timeout:.0f} s")
    if result["failures"] or keep:
        result["kept_dir"] = directory
    else:
        shutil.rmtree(directory, ignore_errors=True)
    return result


def _machine_cpu_seconds():
    """(busy, steal): CPU seconds the whole machine spent busy since boot (every core, steal left out), and those
    the hypervisor ran other guests instead of this one (steal), from /proc/stat; (None, None) elsewhere."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None, None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    steal = fields[7] if len(fields) > 7 else 0
    busy = sum(fields[:7]) - idle  # user nice system idle iowait irq softirq (guest is inside user)
    return busy / os.sysconf("SC_CLK_TCK"), steal / os.sysconf("SC_CLK_TCK")


def _kill(pid, sig=signal.SIGKILL):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _check(scenario, rows, exit_code, stdout, stderr):
    """Every seeded site active, the three rows that were not eligible untouched, the JSON summary agreeing."""
    failures = []
    def is_seeded(row):
        return row["domain"].startswith("site") and row["domain"].endswith(".example.test")

    seeded = [r for r in rows if is_seeded(r)]
    not_active = [r for r in seeded if r.get("status_hosting") != "active"]
    if len(seeded) != scenario.sites:
        failures.append(f"{len(seeded)} seeded rows found, expected {scenario.sites}")
    if not_active:
        sample = ", ".join(f"{r['domain']}={r.get('status_hosting')} ({r.get('error_message')})"
                           for r in not_active[:3])
        failures.append(f"{len(not_active)} of {len(seeded)} rows not active, e.g. {sample}")
    others = {r["domain"]: r.get("status_hosting") for r in rows if not is_seeded(r)}
    expected = {"dns-pending.example.test": "pending", "already-active.example.test": "active",
                "failed-before.example.test": "failed"}
    if others != expected:
        failures.append(f"rows that were not eligible changed: {others}")
    if exit_code != 0:
        failures.append(f"exit code {exit_code}")
    try:
        with open(stdout, encoding="utf-8") as f:
            report = json.load(f)
        outcomes = {}
        for site in report.get("sites", []):
            outcomes[site["outcome"]] = outcomes.get(site["outcome"], 0) + 1
        if outcomes != {"active": scenario.sites}:
            failures.append(f"--json outcomes {outcomes}, expected {{'active': {scenario.sites}}}")
    except (OSError, ValueError) as err:
        failures.append(f"--json output unreadable: {err}")
    try:
        with open(stderr, encoding="utf-8", errors="replace") as f:
            text = f.read().strip()
        if text:
            failures.append("stderr: " + " | ".join(text.splitlines()[-3:])[:300])
    except OSError:
        pass
    return failures


# -- report --------------------------------------------------------------------------------------------------------------

def _fmt(value, spec, unit=""):
    return "-" if value is None else f"{value:{spec}}{unit}"


def print_table(results):
    header = (f"{'scenario':<11} {'sites':>6} {'lat':>6} {'wk':>3} {'wall':>8} {'sites/s':>8} {'overhead':>10} "
              f"{'first req':>9} {'peak RSS':>9} {'job CPU':>10} {'stand-ins':>10} {'machine':>8} {'host':>7}  result")
    print(header)
    print(f"{'':<11} {'':>6} {'ms':>6} {'':>3} {'s':>8} {'':>8} {'ms/site':>10} {'s':>9} {'MB':>9} "
          f"{'ms/site':>10} {'CPU ms/site':>10} {'others %':>8} {'steal %':>7}")
    for r in results:
        print(f"{r['scenario']:<11} {r['sites']:>6} {r['latency_ms']:>6g} {r['workers']:>3} {r['wall_s']:>8.2f} "
              f"{r['sites_per_s']:>8.1f} {_fmt(r['overhead_ms_per_site'], '.2f'):>10} "
              f"{_fmt(r['first_request_s'], '.3f'):>9} {r['peak_rss_mb']:>9.1f} {r['job_cpu_ms_per_site']:>10.2f} "
              f"{r['standins_cpu_ms_per_site']:>10.2f} "
              f"{_fmt(None if r['other_cpu_share'] is None else r['other_cpu_share'] * 100, '.0f'):>8} "
              f"{_fmt(None if r.get('steal_share') is None else r['steal_share'] * 100, '.0f'):>7}  "
              f"{'ok' if not r['failures'] else 'FAILED'}")
    for r in results:
        for failure in r["failures"]:
            print(f"  {r['scenario']}: {failure}")
        if r.get("kept_dir"):
            print(f"  {r['scenario']}: files kept in {r['kept_dir']}")


def _median_run(runs, key):
    """The run with the median `key` (with an even count, the higher of the middle two: the verdict errs strict)."""
    return sorted(runs, key=lambda r: r[key])[len(runs) // 2]


def _runs_text(runs, key, spec):
    return "" if len(runs) == 1 else f", median of {len(runs)} runs: " + ", ".join(f"{r[key]:{spec}}" for r in runs)


def goal_checks(results):
    """The goals of issue 5, each as (PASS|FAIL|SKIP, text). With --repeat, each goal is judged on the median run
    (on a shared host the same run drifts by half within minutes), and every run's figure is shown."""
    runs_of = {}
    for r in results:
        runs_of.setdefault(r["scenario"], []).append(r)
    checks = []
    medium_runs, large_runs = runs_of.get("medium"), runs_of.get("large")
    medium = medium_runs and _median_run(medium_runs, "overhead_ms_per_site")
    if medium:
        value = medium["overhead_ms_per_site"]
        failed = any(r["failures"] for r in medium_runs)
        checks.append(("PASS" if value <= GOAL_OVERHEAD_MS and not failed else "FAIL",
                       f"overhead per site at {medium['sites']} sites, zero latency: {value:.2f} ms "
                       f"(goal <= {GOAL_OVERHEAD_MS:g} ms{_runs_text(medium_runs, 'overhead_ms_per_site', '.2f')})"))
    else:
        checks.append(("SKIP", "overhead per site: scenario 'medium' not run"))
    firsts = [(r["first_request_s"], r["scenario"]) for r in results]
    if firsts:
        missing = [name for value, name in firsts if value is None]
        if missing:
            checks.append(("FAIL", f"start -> first Supabase request: no request seen in {', '.join(missing)}"))
        else:
            worst, name = max(firsts)
            checks.append(("PASS" if worst <= GOAL_FIRST_REQUEST_S else "FAIL",
                           f"start -> first Supabase request: worst {worst:.3f} s ({name}), "
                           f"median {sorted(v for v, _ in firsts)[len(firsts) // 2]:.3f} s "
                           f"(goal <= {GOAL_FIRST_REQUEST_S:g} s)"))
    large = large_runs and _median_run(large_runs, "peak_rss_mb")
    medium = medium_runs and _median_run(medium_runs, "peak_rss_mb")
    if large and medium:
        ratio = large["peak_rss_mb"] / medium["peak_rss_mb"]
        ok = not any(r["failures"] for r in large_runs) and ratio <= GOAL_MEMORY_RATIO
        checks.append(("PASS" if ok else "FAIL",
                       f"{large['sites']} sites: {'all' if not large['failures'] else 'NOT all'} processed, "
                       f"peak RSS {large['peak_rss_mb']:.1f} MB vs {medium['peak_rss_mb']:.1f} MB at "
                       f"{medium['sites']} = {ratio:.3f}x (goal <= {GOAL_MEMORY_RATIO:g}x)"))
    else:
        checks.append(("SKIP", "flat memory: needs scenarios 'medium' and 'large'"))
    serial_runs, parallel_runs = runs_of.get("latency-w1"), runs_of.get("latency-w8")
    if serial_runs and parallel_runs:
        serial, parallel = _median_run(serial_runs, "wall_s"), _median_run(parallel_runs, "wall_s")
        speedup = serial["wall_s"] / parallel["wall_s"]
        ok = speedup >= GOAL_SPEEDUP and not any(r["failures"] for r in serial_runs + parallel_runs)
        checks.append(("PASS" if ok else "FAIL",
                       f"speed-up at {parallel['sites']} sites, {parallel['latency_ms']:g} ms/call, --workers 8 + "
                       f"CLOUDPANEL_CONCURRENCY=8 vs --workers 1: {speedup:.2f}x "
                       f"({serial['wall_s']:.2f} s -> {parallel['wall_s']:.2f} s; goal >= {GOAL_SPEEDUP:g}x)"))
    else:
        checks.append(("SKIP", "speed-up: needs scenarios 'latency-w1' and 'latency-w8'"))
    return checks


def main(argv=None):
    all_names = [s.name for s in scenarios(False)]
    parser = argparse.ArgumentParser(prog="bench/run.py", description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--scenario", action="append", choices=all_names + ["latency"], metavar="NAME",
                        help=f"run only this scenario (repeatable): {', '.join(all_names)}, or 'latency' for both "
                             "latency ones; default all")
    parser.add_argument("--quick", action="store_true",
                        help="smaller sizes for a smoke run: 10, 100, 1000 sites and 40 sites at 100 ms")
    parser.add_argument("--keep", action="store_true", help="keep each scenario's directory (job log, stdout)")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="run each scenario N times; the goals are judged on the median run (default 1)")
    args = parser.parse_args(argv)

    wanted = set(args.scenario or all_names)
    if "latency" in wanted:
        wanted |= {"latency-w1", "latency-w8"}
    selected = [s for s in scenarios(args.quick) if s.name in wanted]

    started = datetime.datetime.now()
    print(f"hosting-automator benchmark: {'quick' if args.quick else 'full'} run, {os.cpu_count()} CPUs, "
          f"Python {sys.version.split()[0]}, {started:%Y-%m-%d %H:%M:%S}")
    for s in selected:
        print(f"  {s.name:<11} {s.describe()}")
    print(flush=True)

    launcher = Launcher()
    results = []
    try:
        for s in [s for s in selected for _ in range(max(args.repeat, 1))]:
            print(f"running {s.name}: {s.describe()} ...", flush=True)
            result = run_scenario(s, launcher, keep=args.keep)
            results.append(result)
            print(f"  wall {result['wall_s']:.2f} s, exit {result['exit_code']}, "
                  f"{'ok' if not result['failures'] else 'FAILED'}", flush=True)
    finally:
        launcher.close()

    print()
    print_table(results)
    print()
    print("overhead = (wall - latency the stand-ins injected) / sites, one worker only (with more, latency overlaps);"
          "\njob CPU = the job's user+system CPU; stand-ins CPU = the benchmark process's CPU during the run;"
          "\nmachine others % = CPU other processes took meanwhile, share of all cores (near 0 for clean figures);"
          "\nhost steal % = CPU the hypervisor gave other guests of the host instead (near 0 for clean figures)")
    noisy = [r["scenario"] for r in results if (r["other_cpu_share"] or 0) + (r.get("steal_share") or 0) > 0.10]
    if noisy:
        print(f"WARNING: other processes or other guests of the host took more than 10% of the machine during "
              f"{', '.join(noisy)}: those figures are inflated; rerun when the machine is quiet")
    print()
    checks = goal_checks(results)
    for verdict, text in checks:
        print(f"{verdict}  {text}")

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{started:%Y%m%d-%H%M%S}{'-quick' if args.quick else ''}.json"
    path.write_text(json.dumps({
        "started": started.isoformat(timespec="seconds"), "quick": args.quick, "cpus": os.cpu_count(),
        "python": sys.version.split()[0], "results": results,
        "goals": [{"verdict": v, "check": t} for v, t in checks],
    }, indent=2) + "\n")
    print(f"\nresults written to {path.relative_to(REPO)}")
    failed = any(r["failures"] for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
