"""Benchmark of the real command against local stand-ins, judged against a reference client built on the same
libraries (bench/reference.py) and run in the same scenarios, alternately with the job: wall time ratio, start ->
first Supabase request against the import of supabase and requests, peak resident memory at 10x the sites in
each transport, speed-up of --workers. See bench/README.md.

Run from the repository root:  .venv/bin/python bench/run.py [--quick] [--repeat N] [--scenario NAME ...] [--keep]
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # for the stand-ins and the tests' harness


RESULTS_DIR = REPO / "bench" / "results"

# Goals, all relative to figures measured in the same run.
GOAL_WALL_RATIO = 1.3          # wall(job) / wall(reference) at 1,000 sites, zero latency, one worker
GOAL_WALL_RATIO_SITES = 1000
GOAL_STARTUP_EXTRA_S = 0.3     # start -> first Supabase request, minus the time `python -c IMPORT_CHECK` takes
GOAL_MEMORY_RATIO = 1.15       # peak RSS at 10x the sites / peak RSS at 1x, per transport
GOAL_SPEEDUP = 6.0             # wall(--workers 1) / wall(--workers 8 + CLOUDPANEL_CONCURRENCY=8) at 100 ms a call
IMPORT_CHECK = "import supabase, requests"

CLIENTS = ("job", "reference")


class Scenario:
    def __init__(self, name, sites, latency, workers, concurrency=None, transport="gateway", memory_base=None):
        self.name, self.sites, self.latency, self.workers = name, sites, latency, workers
        self.concurrency = concurrency
        self.transport = transport  # "gateway" (the clpctl HTTP gateway) or "clpctl" (the fake clpctl executable)
        self.memory_base = memory_base  # the scenario whose peak RSS this one's is compared with

    def describe(self):
        text = f"{self.sites} sites, {self.transport}, {self.latency * 1000:g} ms/call, --workers {self.workers}"
        if self.concurrency:
            text += f", CLOUDPANEL_CONCURRENCY={self.concurrency}"
        return text


def scenarios(quick):
    small, medium, large = (10, 100, 1000) if quick else (10, 1000, 10000)
    latency_sites = 40 if quick else 200
    return [
        Scenario("small", small, 0.0, 1),
        Scenario("medium", medium, 0.0, 1),
        Scenario("large", large, 0.0, 1, memory_base="medium"),
        Scenario("small-clpctl", small, 0.0, 1, transport="clpctl"),
        Scenario("medium-clpctl", medium, 0.0, 1, transport="clpctl"),
        Scenario("large-clpctl", large, 0.0, 1, transport="clpctl", memory_base="medium-clpctl"),
        Scenario("latency-w1", latency_sites, 0.1, 1),
        Scenario("latency-w8", latency_sites, 0.1, 8, concurrency=8),
    ]


SCENARIO_GROUPS = {"latency": ("latency-w1", "latency-w8"),
                   "clpctl": ("small-clpctl", "medium-clpctl", "large-clpctl")}


# -- launching a client ----------------------------------------------------------------------------------------------
#
# Linux carries a process's peak RSS across exec(): a child's ru_maxrss is at least the RSS of the process that
# forked it. The benchmark process holds the stand-ins and every row (tens of MB), which would hide the client's own
# figure. So every client is started by this tiny launcher, a fresh `python -S` process of a few MB started before
# the stand-ins: it records time.time() just before Popen, then os.wait4(pid) for the exit status and rusage. When
# GNU time is installed the client runs under `/usr/bin/time -f %M -o FILE` (a small C parent: its figure is the
# client's own); otherwise the launcher's wait4 figure is used. Each client gets a process group of its own, so
# that a timeout or Ctrl-C reaches it through GNU time.
LAUNCHER = r"""
import json, os, resource, signal, subprocess, sys, time
signal.signal(signal.SIGINT, lambda *_: None)  # Ctrl-C is for the benchmark, which passes it on to the client
for line in sys.stdin:
    spec = json.loads(line)
    with open(spec["stdout"], "wb") as out, open(spec["stderr"], "wb") as err:
        t_start = time.time()
        proc = subprocess.Popen(spec["argv"], env=spec["env"], cwd=spec["cwd"], stdin=subprocess.DEVNULL,
                                stdout=out, stderr=err, start_new_session=True)
    sys.stdout.write(json.dumps({"pid": proc.pid, "t_start": t_start}) + "\n"); sys.stdout.flush()
    _, status, usage = os.wait4(proc.pid, 0)
    t_end = time.time()
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: keep Popen from waiting again
    sys.stdout.write(json.dumps({"t_end": t_end, "exit_code": proc.returncode, "maxrss_kb": usage.ru_maxrss,
                                 "cpu_user": usage.ru_utime, "cpu_system": usage.ru_stime,
                                 "launcher_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}) + "\n")
    sys.stdout.flush()
"""


def gnu_time():
    """/usr/bin/time when it is GNU time (it has -f and -o), else None."""
    path = "/usr/bin/time"
    if not os.access(path, os.X_OK):
        return None
    try:
        probe = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return path if "GNU" in probe.stdout + probe.stderr else None


class Launcher:
    def __init__(self):
        self.time = gnu_time()
        self.proc = subprocess.Popen([sys.executable, "-S", "-c", LAUNCHER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)

    def run(self, argv, env, cwd, stdout, stderr, timeout, on_interrupt=None):
        """Run argv to its end (killed after `timeout` s); the launcher's figures plus peak_rss_kb and timed_out."""
        rss_file = None
        if self.time:
            fd, rss_file = tempfile.mkstemp(prefix="peak-rss-", dir=cwd)
            os.close(fd)
            argv = [self.time, "-f", "%M", "-o", rss_file, *argv]
        self.proc.stdin.write(json.dumps({"argv": argv, "env": env, "cwd": cwd, "stdout": stdout,
                                          "stderr": stderr}) + "\n")
        self.proc.stdin.flush()
        started = json.loads(self._line())
        timed_out = []
        killer = threading.Timer(timeout, lambda: (timed_out.append(True), _kill_group(started["pid"])))
        killer.daemon = True
        killer.start()
        try:
            try:
                ended = json.loads(self._line())
            except KeyboardInterrupt:
                _kill_group(started["pid"], signal.SIGINT)  # let the client stop cleanly, then say what it did
                ended = json.loads(self._line())
                raise
        finally:
            killer.cancel()
        result = {**started, **ended, "timed_out": bool(timed_out), "peak_rss_source": "wait4",
                  "peak_rss_kb": ended["maxrss_kb"]}
        if rss_file:
            try:
                lines = Path(rss_file).read_text().split()
                result["peak_rss_kb"], result["peak_rss_source"] = int(lines[-1]), "GNU time"
            except (OSError, ValueError, IndexError):
                pass
            Path(rss_file).unlink(missing_ok=True)
        return result

    def _line(self):
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the launcher process died")
        return line

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


def _kill_group(pid, sig=signal.SIGKILL):
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def client_environment(standins, concurrency, who):
    """The environment the tests run the job in (the caller's without any setting of the job, then the stand-ins'
    settings, no cap on the sites), the same for the reference; the job always this checkout's."""
    from tests.support.harness import job_environment

    env = job_environment(standins, {"CLOUDPANEL_CONCURRENCY": concurrency})
    # the reference as a module of bench/ (its bytecode cached, as the job's is), nothing of the repository beside it
    env["PYTHONPATH"] = str(REPO / "bench") if who == "reference" else str(REPO)
    for name in ("NO_PROXY", "no_proxy"):  # a proxy set for the shell must not sit between a client and 127.0.0.1
        env[name] = ",".join(filter(None, [env.get(name), "127.0.0.1", "localhost"]))
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    # Installed with pip, modules are compiled once; run from a checkout with this set, every run would compile
    # them again (counted in "first req").
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def client_argv(who, workers):
    if who == "job":
        return [sys.executable, "-m", "hosting_automator.main", "-q", "--json", "--workers", str(workers)]
    return [sys.executable, "-m", "reference", "--workers", str(workers)]


# -- one run of one client in one scenario -----------------------------------------------------------------------------

def run_client(scenario, who, launcher, repetition, keep=False):
    # imported here, after the launcher started: it is forked from this process and should stay a few MB
    from tests.standins import clpctl_state, start_all
    from tests.support.harness import places_with_secrets, watched

    directory = tempfile.mkdtemp(prefix=f"bench-{scenario.name}-{who}-")
    t0 = time.perf_counter()
    standins = start_all(directory, sites=scenario.sites, latency=scenario.latency,
                         gateway=scenario.transport == "gateway")
    setup_seconds = time.perf_counter() - t0
    servers = standins.servers
    first = {}
    latency = standins.postgrest.latency
    kinds = collections.Counter()  # what each request was, without its values: the two clients' work compared
    kinds_lock = threading.Lock()  # the stand-ins serve requests on threads of their own

    def counting(server):
        def hook(request):
            """Notes what the request was, and when the first reached Supabase (a hook that gives no fault)."""
            if server is standins.postgrest and "t" not in first:
                first["t"] = time.time() - latency  # the stand-in sleeps its latency before calling the hook
            kind = request_kind(server.name, request)
            with kinds_lock:
                kinds[kind] += 1
            return None
        return hook

    for server in servers:
        server.record_requests = False  # thousands of sites: what they were is counted instead
        server.fault = counting(server)

    env = client_environment(standins, scenario.concurrency, who)
    import_s = None
    if who == "job":  # the start-up goal's yardstick, measured the same way just before the job's run
        measured = launcher.run([sys.executable, "-c", IMPORT_CHECK], env, directory,
                                os.path.join(directory, "import.stdout"), os.path.join(directory, "import.stderr"),
                                timeout=60)
        if measured["exit_code"] == 0:
            import_s = measured["t_end"] - measured["t_start"]

    stdout, stderr = os.path.join(directory, f"{who}.stdout"), os.path.join(directory, f"{who}.stderr")
    timeout = 300 + scenario.sites * (0.25 + 8 * scenario.latency)  # a generous guard against a hung client
    cpu_before, (busy_before, steal_before) = time.process_time(), _machine_cpu_seconds()
    ended = launcher.run(client_argv(who, scenario.workers), env, directory, stdout, stderr, timeout)
    standins_cpu = time.process_time() - cpu_before
    busy_after, steal_after = _machine_cpu_seconds()
    injected = sum(s.injected_latency_seconds for s in servers)
    requests = {s.name: s.request_count for s in servers}
    kinds.update(clpctl_command(call["argv"]) for call in clpctl_state.calls(standins.db_path))
    rows = standins.postgrest.rows()
    # the job is held to the tests' secret scan (its output, log file and rows); the reference is not
    leaks = places_with_secrets([(name, Path(path).read_text(errors="replace"))
                                 for name, path in (("stdout", stdout), ("stderr", stderr))]) if who == "job" else []
    watched.forget()
    standins.stop()

    wall = ended["t_end"] - ended["t_start"]
    result = {
        "scenario": scenario.name,
        "client": who,
        "repetition": repetition,
        "description": scenario.describe(),
        "transport": scenario.transport,
        "sites": scenario.sites,
        "latency_ms": scenario.latency * 1000,
        "workers": scenario.workers,
        "cloudpanel_concurrency": scenario.concurrency or 1,
        "exit_code": ended["exit_code"],
        "timed_out": ended["timed_out"],
        "wall_s": wall,
        "sites_per_s": scenario.sites / wall if wall > 0 else None,
        "injected_latency_s": injected,
        # the latency of concurrent sites overlaps, so wall - injected only means something with one worker
        "overhead_ms_per_site": (wall - injected) / scenario.sites * 1000 if scenario.workers == 1 else None,
        "first_request_s": first["t"] - ended["t_start"] if "t" in first else None,
        "import_s": import_s,
        "peak_rss_mb": ended["peak_rss_kb"] / 1024,
        "peak_rss_source": ended["peak_rss_source"],
        "launcher_rss_mb": ended["launcher_maxrss_kb"] / 1024,
        "cpu_s": ended["cpu_user"] + ended["cpu_system"],
        "standins_cpu_s": standins_cpu,
        "requests": requests,
        "request_kinds": dict(sorted(kinds.items())),
        "standins_setup_s": setup_seconds,
    }
    # CPU that other processes on the machine took meanwhile, and CPU the hypervisor gave to other guests of the
    # host (steal), as shares of all cores: figures are only comparable between runs when both stay near 0
    if busy_before is not None and busy_after is not None and wall > 0:
        others = busy_after - busy_before - result["cpu_s"] - standins_cpu
        result["other_cpu_share"] = max(0.0, others) / (wall * (os.cpu_count() or 1))
        result["steal_share"] = (steal_after - steal_before) / (wall * (os.cpu_count() or 1))
    else:
        result["other_cpu_share"] = result["steal_share"] = None
    result["cpu_ms_per_site"] = result["cpu_s"] / scenario.sites * 1000
    result["standins_cpu_ms_per_site"] = standins_cpu / scenario.sites * 1000
    result["failures"] = _check(scenario, who, rows, ended["exit_code"], stdout, stderr)
    result["failures"] += [f"a secret is shown in {where}" for where in leaks]
    if ended["timed_out"]:
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


def _check(scenario, who, rows, exit_code, stdout, stderr):
    """Every seeded site active, the three rows that were not eligible untouched, the client's summary agreeing."""
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
        if who == "job":  # --json: one entry per site
            outcomes = {}
            for site in report.get("sites", []):
                outcomes[site["outcome"]] = outcomes.get(site["outcome"], 0) + 1
        else:  # the reference's one line of counts
            outcomes = {k: report[k] for k in ("active", "failed") if report.get(k)}
        if outcomes != {"active": scenario.sites}:
            failures.append(f"outcomes on stdout {outcomes}, expected {{'active': {scenario.sites}}}")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        failures.append(f"stdout unreadable: {err.__class__.__name__}: {err}")
    try:
        with open(stderr, encoding="utf-8", errors="replace") as f:
            text = f.read().strip()
        if text:
            failures.append("stderr: " + " | ".join(text.splitlines()[-3:])[:300])
    except OSError:
        pass
    return failures


def request_kind(name, request):
    """A request as a short text, without what legitimately differs between two clients or two sites (values,
    headers other than Prefer, the order of keys): the method and path, PostgREST's filters with their operators,
    Matomo's API method, and the keys of a form or JSON body."""
    query, body = request["query"], request["body"] or ""
    if name == "postgrest":
        filters = sorted(f"{key}={value.partition('.')[0] if key not in ('select', 'order') else value}"
                         for key, values in query.items() for value in values)
        kind = f"{request['method']} {request['path']}?{'&'.join(filters)}"
        prefer = request["headers"].get("prefer")
        return kind + (f" Prefer: {prefer}" if prefer else "") + f" body={_keys(body)}"
    if name == "matomo":
        return f"{request['method']} {(query.get('method') or [''])[0]} form={sorted(parse_qs(body))}"
    return f"{name} {request['method']} {request['path']} body={_keys(body)}"


def _keys(body):
    try:
        payload = json.loads(body) if body else {}
    except ValueError:
        return "<not JSON>"
    return sorted(payload) if isinstance(payload, dict) else type(payload).__name__


def clpctl_command(argv):
    return f"clpctl {argv[0] if argv else ''} {sorted(a[2:].split('=', 1)[0] for a in argv[1:] if a.startswith('--'))}"


def request_warnings(results):
    """A few lines for each pair of runs whose clients made different requests: their ratio would compare clients
    that do different work."""
    lines = []
    for (name, repetition), pair in pairs(results).items():
        job, reference = pair.get("job"), pair.get("reference")
        if not job or not reference or job["request_kinds"] == reference["request_kinds"]:
            continue
        mine, theirs = collections.Counter(job["request_kinds"]), collections.Counter(reference["request_kinds"])
        lines.append(f"WARNING: {name} run {repetition + 1}: the job's requests differ from the reference's:")
        lines += [f"  only the job, {count} x: {kind}" for kind, count in (mine - theirs).most_common(3)]
        lines += [f"  only the reference, {count} x: {kind}" for kind, count in (theirs - mine).most_common(3)]
    return lines


# -- report ------------------------------------------------------------------------------------------------------

def _fmt(value, spec, unit=""):
    return "-" if value is None else f"{value:{spec}}{unit}"


def _pct(share):
    return None if share is None else share * 100


def pairs(results):
    """{(scenario, repetition): {"job": result, "reference": result}}"""
    paired = {}
    for r in results:
        paired.setdefault((r["scenario"], r["repetition"]), {})[r["client"]] = r
    return paired


def wall_ratio(pair):
    job, reference = pair.get("job"), pair.get("reference")
    if not job or not reference or reference["wall_s"] <= 0:
        return None
    return job["wall_s"] / reference["wall_s"]


def print_table(results):
    paired = pairs(results)
    print(f"{'scenario':<13} {'transport':<9} {'sites':>6} {'lat':>4} {'wk':>3} {'run':>3} {'client':<9} "
          f"{'wall':>8} {'ratio':>6} {'overhead':>9} {'CPU':>8} {'stand-ins':>10} {'first req':>9} {'import':>7} "
          f"{'peak RSS':>9} {'others':>6} {'steal':>6}  result")
    print(f"{'':<13} {'':<9} {'':>6} {'ms':>4} {'':>3} {'':>3} {'':<9} "
          f"{'s':>8} {'job/ref':>6} {'ms/site':>9} {'ms/site':>8} {'CPU ms/site':>10} {'s':>9} {'s':>7} "
          f"{'MB':>9} {'%':>6} {'%':>6}")
    for r in results:
        ratio = wall_ratio(paired[(r["scenario"], r["repetition"])]) if r["client"] == "job" else None
        print(f"{r['scenario']:<13} {r['transport']:<9} {r['sites']:>6} {r['latency_ms']:>4g} {r['workers']:>3} "
              f"{r['repetition'] + 1:>3} {r['client']:<9} {r['wall_s']:>8.2f} {_fmt(ratio, '.2f', 'x'):>6} "
              f"{_fmt(r['overhead_ms_per_site'], '.2f'):>9} {r['cpu_ms_per_site']:>8.2f} "
              f"{r['standins_cpu_ms_per_site']:>10.2f} {_fmt(r['first_request_s'], '.3f'):>9} "
              f"{_fmt(r['import_s'], '.3f'):>7} {r['peak_rss_mb']:>9.1f} {_fmt(_pct(r['other_cpu_share']), '.0f'):>6} "
              f"{_fmt(_pct(r.get('steal_share')), '.0f'):>6}  {'ok' if not r['failures'] else 'FAILED'}")
    for r in results:
        for failure in r["failures"]:
            print(f"  {r['scenario']} run {r['repetition'] + 1} {r['client']}: {failure}")
        if r.get("kept_dir"):
            print(f"  {r['scenario']} run {r['repetition'] + 1} {r['client']}: files kept in {r['kept_dir']}")


def _median(values):
    """The median; with an even count, the higher of the middle two (the verdict errs strict)."""
    values = sorted(values)
    return values[len(values) // 2]


def _median_run(runs, key):
    return sorted(runs, key=lambda r: r[key])[len(runs) // 2]


def _listed(values, spec, unit=""):
    return "" if len(values) <= 1 else (f"; median of {len(values)} runs: "
                                        + ", ".join(f"{v:{spec}}{unit}" for v in values))


def goal_checks(results):
    """The goals, each as (PASS|FAIL|SKIP, text). With --repeat, each is judged on the median (on a shared host the
    same run drifts by half within minutes), and every run's figure is listed."""
    by_scenario = {}
    for r in results:
        by_scenario.setdefault(r["scenario"], {}).setdefault(r["client"], []).append(r)
    paired = pairs(results)
    checks = []

    # 1. wall time against the reference, at 1,000 sites with zero latency and one worker, in each transport
    judged = [name for name, runs in by_scenario.items()
              if runs.get("job") and runs["job"][0]["sites"] == GOAL_WALL_RATIO_SITES
              and runs["job"][0]["latency_ms"] == 0 and runs["job"][0]["workers"] == 1]
    for name in judged:
        ratios = [wall_ratio(paired[(name, r["repetition"])]) for r in by_scenario[name]["job"]]
        if any(x is None for x in ratios):
            checks.append(("SKIP", f"wall time ratio ({name}): the reference did not run"))
            continue
        job = by_scenario[name]["job"][0]
        failed = any(r["failures"] for runs in by_scenario[name].values() for r in runs)
        value = _median(ratios)
        checks.append(("PASS" if value <= GOAL_WALL_RATIO and not failed else "FAIL",
                       f"wall time job / reference, {job['sites']} sites, {job['transport']}, zero latency: "
                       f"{value:.2f}x (goal <= {GOAL_WALL_RATIO:g}x{_listed(ratios, '.2f', 'x')})"
                       + (" -- a run FAILED" if failed else "")))
    if not judged:
        checks.append(("SKIP", f"wall time ratio: no zero-latency one-worker scenario of {GOAL_WALL_RATIO_SITES} "
                               "sites was run (medium, medium-clpctl; large, large-clpctl with --quick)"))

    # 2. start -> first Supabase request, against `python -c "import supabase, requests"` measured just before
    jobs = [r for r in results if r["client"] == "job"]
    if jobs:
        missing = sorted({r["scenario"] for r in jobs if r["first_request_s"] is None or r["import_s"] is None})
        if missing:
            checks.append(("FAIL", f"start -> first Supabase request: no request seen, or the import check "
                                   f"failed, in {', '.join(missing)}"))
        else:
            extra = [r["first_request_s"] - r["import_s"] for r in jobs]
            refs = [r["first_request_s"] for r in results if r["client"] == "reference" and r["first_request_s"]]
            value = _median(extra)
            checks.append(("PASS" if value <= GOAL_STARTUP_EXTRA_S else "FAIL",
                           f"start -> first Supabase request: job {_median([r['first_request_s'] for r in jobs]):.3f}"
                           f" s, `python -c \"{IMPORT_CHECK}\"` {_median([r['import_s'] for r in jobs]):.3f} s: "
                           f"{value:+.3f} s over the import, median of {len(extra)} job runs, worst "
                           f"{max(extra):+.3f} s (goal <= +{GOAL_STARTUP_EXTRA_S:g} s)"
                           + (f"; the reference's first request: {_median(refs):.3f} s" if refs else "")))

    # 3. flat memory: peak RSS at 10x the sites within 15% of 1x, per transport
    for name, runs in by_scenario.items():
        base_name = next((s.memory_base for s in scenarios(False) if s.name == name), None)
        if not base_name:
            continue
        large_runs, base_runs = runs.get("job"), by_scenario.get(base_name, {}).get("job")
        if not large_runs or not base_runs:
            checks.append(("SKIP", f"flat memory ({large_runs[0]['transport'] if large_runs else name}): needs "
                                   f"scenarios '{base_name}' and '{name}'"))
            continue
        large, base = _median_run(large_runs, "peak_rss_mb"), _median_run(base_runs, "peak_rss_mb")
        ratio = large["peak_rss_mb"] / base["peak_rss_mb"]
        all_done = not any(r["failures"] for r in large_runs)
        refs = {n: by_scenario.get(n, {}).get("reference") for n in (base_name, name)}
        ref_text = ""
        if refs[base_name] and refs[name]:
            ref_text = (f"; reference {_median_run(refs[name], 'peak_rss_mb')['peak_rss_mb']:.1f} MB vs "
                        f"{_median_run(refs[base_name], 'peak_rss_mb')['peak_rss_mb']:.1f} MB")
        checks.append(("PASS" if ratio <= GOAL_MEMORY_RATIO and all_done else "FAIL",
                       f"flat memory, {large['transport']}: {large['sites']} sites "
                       f"{'all' if all_done else 'NOT all'} processed, job peak RSS {large['peak_rss_mb']:.1f} MB "
                       f"vs {base['peak_rss_mb']:.1f} MB at {base['sites']} = {ratio:.3f}x "
                       f"(goal <= {GOAL_MEMORY_RATIO:g}x{_listed([r['peak_rss_mb'] for r in large_runs], '.1f')})"
                       + ref_text))
    if not any(s.name in by_scenario for s in scenarios(False) if s.memory_base):
        checks.append(("SKIP", "flat memory: needs 'medium' and 'large', or 'medium-clpctl' and 'large-clpctl'"))

    # 4. speed-up of --workers 8 at 100 ms a call
    serial_runs = by_scenario.get("latency-w1", {}).get("job")
    parallel_runs = by_scenario.get("latency-w8", {}).get("job")
    if serial_runs and parallel_runs:
        serial, parallel = _median_run(serial_runs, "wall_s"), _median_run(parallel_runs, "wall_s")
        speedup = serial["wall_s"] / parallel["wall_s"]
        ok = speedup >= GOAL_SPEEDUP and not any(r["failures"] for r in serial_runs + parallel_runs)
        ref_serial = by_scenario.get("latency-w1", {}).get("reference")
        ref_parallel = by_scenario.get("latency-w8", {}).get("reference")
        ref_text = ""
        if ref_serial and ref_parallel:
            ref_speedup = _median_run(ref_serial, "wall_s")["wall_s"] / _median_run(ref_parallel, "wall_s")["wall_s"]
            ref_text = f"; reference {ref_speedup:.2f}x"
        checks.append(("PASS" if ok else "FAIL",
                       f"speed-up at {parallel['sites']} sites, {parallel['latency_ms']:g} ms/call, --workers 8 + "
                       f"CLOUDPANEL_CONCURRENCY=8 vs --workers 1: {speedup:.2f}x "
                       f"({serial['wall_s']:.2f} s -> {parallel['wall_s']:.2f} s; goal >= {GOAL_SPEEDUP:g}x)"
                       + ref_text))
    else:
        checks.append(("SKIP", "speed-up: needs scenarios 'latency-w1' and 'latency-w8'"))
    return checks


def main(argv=None):
    all_names = [s.name for s in scenarios(False)]
    parser = argparse.ArgumentParser(prog="bench/run.py", description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--scenario", action="append", choices=all_names + sorted(SCENARIO_GROUPS), metavar="NAME",
                        help=f"run only this scenario (repeatable): {', '.join(all_names)}; 'latency' or 'clpctl' "
                             "for all of those; default all")
    parser.add_argument("--quick", action="store_true",
                        help="smaller sizes for a smoke run: 10, 100, 1000 sites and 40 sites at 100 ms")
    parser.add_argument("--keep", action="store_true", help="keep each run's directory (job log, stdout, stderr)")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="run each scenario N times, job and reference alternately; goals judged on the median")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    wanted = set()
    for name in args.scenario or all_names:
        wanted |= set(SCENARIO_GROUPS.get(name, (name,)))
    selected = [s for s in scenarios(args.quick) if s.name in wanted]

    started = datetime.datetime.now()
    launcher = Launcher()
    print(f"hosting-automator benchmark: {'quick' if args.quick else 'full'} run, {os.cpu_count()} CPUs, "
          f"Python {sys.version.split()[0]}, {started:%Y-%m-%d %H:%M:%S}; peak RSS from "
          f"{'GNU time' if launcher.time else 'the launcher (os.wait4)'}")
    for s in selected:
        print(f"  {s.name:<13} {s.describe()}")
    print(flush=True)

    results = []
    try:
        for s in selected:
            for repetition in range(args.repeat):
                # alternate which client goes first, so that a drift of the host weighs on both alike
                for who in (CLIENTS if repetition % 2 == 0 else CLIENTS[::-1]):
                    print(f"running {s.name} ({s.describe()}), run {repetition + 1}, {who} ...", flush=True)
                    result = run_client(s, who, launcher, repetition, keep=args.keep)
                    results.append(result)
                    print(f"  wall {result['wall_s']:.2f} s, exit {result['exit_code']}, "
                          f"{'ok' if not result['failures'] else 'FAILED'}", flush=True)
    finally:
        launcher.close()

    print()
    print_table(results)
    print()
    print("ratio = wall of the job / wall of the reference client run beside it (bench/reference.py, the same calls"
          "\n  on supabase-py and requests); overhead = (wall - latency the stand-ins injected) / sites, one worker"
          "\n  only; CPU = the client's user+system CPU (with clpctl, the fake clpctl processes' too); stand-ins CPU ="
          "\n  the benchmark process's CPU during the run; import = `python -c \"import supabase, requests\"` just"
          "\n  before the job's run; others % = CPU other processes took meanwhile, steal % = CPU the hypervisor"
          "\n  gave other guests (both share of all cores, near 0 for clean figures)")
    noisy = sorted({r["scenario"] for r in results
                    if (r["other_cpu_share"] or 0) + (r.get("steal_share") or 0) > 0.10})
    if noisy:
        print(f"WARNING: other processes or other guests of the host took more than 10% of the machine during "
              f"{', '.join(noisy)}: those figures are inflated; rerun when the machine is quiet")
    warnings = request_warnings(results)
    if warnings:
        print()
        print("\n".join(warnings))
    print()
    checks = goal_checks(results)
    for verdict, text in checks:
        print(f"{verdict}  {text}")

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{started:%Y%m%d-%H%M%S}{'-quick' if args.quick else ''}.json"
    path.write_text(json.dumps({
        "started": started.isoformat(timespec="seconds"), "quick": args.quick, "cpus": os.cpu_count(),
        "python": sys.version.split()[0], "repeat": args.repeat,
        "results": [{k: v for k, v in r.items() if not k.startswith("_")} for r in results],
        "request_warnings": warnings,
        "goals": [{"verdict": v, "check": t} for v, t in checks],
    }, indent=2) + "\n")
    print(f"\nresults written to {path.relative_to(REPO)}")
    return 1 if any(r["failures"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
