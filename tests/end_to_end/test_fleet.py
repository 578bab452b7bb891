"""The fleet, simulated: three job processes standing for three CloudPanel servers web-1, web-2
and web-3, each with its own clpctl stand-in, CloudPanel database, HTTPS endpoint, lock and log file, SERVER_NAME
and SERVER_ADDRESSES; one PostgREST stand-in (the shared sites table), one Matomo stand-in and one DNS stand-in
that says which server each domain lives on. The servers run at the same time, again and again as cron would,
and are SIGKILLed at random. See tests/support/fleet.py.

`pytest -m soak -s -k fleet` runs the soak variant (300 domains) and prints its figures."""

import collections
import hashlib
import os
import random
import re
import time
from pathlib import Path

import pytest

from hosting_automator.core.config import machine_identity

from tests.support.fleet import ADDRESSES, NOWHERE, Fleet
from tests.support.harness import run_job
from tests.standins import clpctl_state
from tests.standins.dns import DnsFault

NAMES = tuple(ADDRESSES)
WORKERS = ("--workers", "4")
SEED = 20261212


def _no_traceback(fleet, rounds):
    """No run printed or logged a traceback."""
    found = [f"{run.server.name}: {run.stderr[-800:]}" for rnd in rounds for run in rnd.runs
             if "Traceback" in run.stderr or "Traceback" in run.stdout]
    found += [server.name + " log" for server in fleet.servers if "Traceback" in server.log()]
    return found


def _exit_codes_ok(rounds):
    """The rounds in which a run did not end 0 without being killed (-9): a crash is the only fault injected, and
    a run after a crash finds what exists and finishes it (README), so no run of these tests has cause to fail."""
    return [(index, rnd.exit_codes) for index, rnd in enumerate(rounds, 1)
            if any(run.returncode != 0 and not (run.returncode == -9 and run.killed) for run in rnd.runs)]


def _spread(rng, count, prefix):
    """`count` domains, each mapped to a server (as evenly as possible, in a shuffled order)."""
    servers = [NAMES[i % len(NAMES)] for i in range(count)]
    rng.shuffle(servers)
    return {f"{prefix}{i}.fleet.test": server for i, server in enumerate(servers, 1)}


def _converge(fleet, rng, max_rounds, killing_rounds, kill_chance, kill_window, write_kill_chance):
    """Rounds of all three servers at once until a round without kills changes nothing; the rounds.

    In each of the first `killing_rounds` rounds, with `kill_chance`, one random server's job is SIGKILLed by a
    timer `kill_window` seconds after the start (the first round always: it is the one with work in it), and
    every write that lands may kill its writer before it hears back (`write_kill_chance`)."""
    rounds = []
    previous = fleet.snapshot()
    for index in range(max_rounds):
        killing = index < killing_rounds
        fleet.kill_after_write = write_kill_chance if killing else 0.0
        kills = []
        if killing and (index == 0 or rng.random() < kill_chance):
            kills.append((rng.choice(NAMES), rng.uniform(*kill_window)))
        rounds.append(fleet.round(*WORKERS, kills=kills))
        state = fleet.snapshot()
        if not rounds[-1].kills and state == previous:
            return rounds
        previous = state
    pytest.fail(f"the fleet did not settle in {max_rounds} rounds; exit codes "
                f"{[rnd.exit_codes for rnd in rounds]}")


def _says_elsewhere(log, domain, found, here):
    """The log has a line of this site saying DNS names `found`, not this server (`here`)."""
    return re.search(rf"\[{re.escape(domain)}\] .*{re.escape(domain)} resolves to {re.escape(found)}, not this "
                     rf"server \({re.escape(here)}\)", log) is not None


def _kills(rounds):
    return [f"{run.server.name} {run.killed}" for rnd in rounds for run in rnd.kills]


# -- scenario 1: the fleet converges, each site on the server its DNS names ------------------------------------

def test_fleet_builds_each_site_once_on_the_server_its_dns_names_through_concurrent_runs_and_kills(tmp_path):
    rng = random.Random(SEED)
    with Fleet(tmp_path) as fleet:
        fleet.kill_rng = random.Random(SEED + 1)
        expected = _spread(rng, 60, "site")
        unpointed = [f"nowhere{i}.fleet.test" for i in range(1, 6)]
        for domain, server in expected.items():
            fleet.add(domain, ADDRESSES[server])
        for domain in unpointed:
            fleet.add(domain, NOWHERE)
        started = time.monotonic()
        rounds = _converge(fleet, rng, max_rounds=14, killing_rounds=5, kill_chance=0.8, kill_window=(0.6, 2.0),
                           write_kill_chance=0.008)
        elapsed = time.monotonic() - started

        print(f"\nfleet: {len(rounds)} rounds in {elapsed:.1f} s; kills {_kills(rounds)}; exit codes "
              f"{[rnd.exit_codes for rnd in rounds]}; sites per server {fleet.figures(expected)['sites per server']}")
        assert fleet.problems(expected, unpointed) == []
        assert _kills(rounds), "no run was killed: the test did not test crashes"
        assert _exit_codes_ok(rounds) == []
        assert set(rounds[-1].exit_codes.values()) == {0}, rounds[-1].exit_codes
        assert _no_traceback(fleet, rounds) == []
        for server in fleet.servers:  # and no clpctl call of a server named a domain DNS gives to another
            assert {d for d in server.clpctl_domains() if expected.get(d) != server.name} == set(), server.name
        # the unpointed rows were read by every server, and left alone by each
        for server in fleet.servers:
            for domain in unpointed:
                assert _says_elsewhere(server.log(), domain, NOWHERE, server.address), (server.name, domain)
        assert elapsed < 90, f"{len(rounds)} rounds took {elapsed:.0f} s"


# -- scenario 2: DNS moves before any server claimed the row ------------------------------------------------

def test_fleet_a_record_moved_before_any_claim_is_built_by_the_new_server_and_never_touched_by_the_old(tmp_path):
    with Fleet(tmp_path) as fleet:
        moved = "moved.fleet.test"
        row_id = fleet.add(moved, ADDRESSES["web-1"])
        others = {"stay2.fleet.test": "web-2", "stay3.fleet.test": "web-3"}
        for domain, server in others.items():
            fleet.add(domain, ADDRESSES[server])

        # web-1 is down (its cron has not come yet); the others see that DNS names web-1 and leave the row
        first = fleet.round(*WORKERS, servers=("web-2", "web-3"))
        assert set(first.exit_codes.values()) == {0}
        row = fleet.postgrest.get(row_id)
        assert (row["status_hosting"], row["hosting_server"], row["error_message"]) == ("pending", None, None)

        fleet.dns.set(moved, ADDRESSES["web-2"])  # the record moves before web-1 claimed it
        # web-1's cron comes first: it sees DNS name web-2 and leaves the row; then all three at once, twice
        alone = fleet.round(*WORKERS, servers=("web-1",))
        row = fleet.postgrest.get(row_id)
        assert (row["status_hosting"], row["hosting_server"], row["error_message"]) == ("pending", None, None)
        rounds = [first, alone] + [fleet.round(*WORKERS) for _ in range(2)]

        assert fleet.problems({moved: "web-2", **others}) == []
        web1 = fleet.by_name["web-1"]
        assert moved not in web1.clpctl_domains()  # no site, no certificate order, no call at all
        assert not any(body.get("hosting_server") == "web-1" for rid, body in fleet.postgrest.patches
                       if rid == row_id), fleet.postgrest.patches
        assert _says_elsewhere(web1.log(), moved, ADDRESSES["web-2"], ADDRESSES["web-1"]), web1.log()
        assert all(set(rnd.exit_codes.values()) == {0} for rnd in rounds), [rnd.exit_codes for rnd in rounds]
        assert _no_traceback(fleet, rounds) == []


# -- scenario 3: a row assigned here whose DNS points elsewhere waits for DNS -------------------------------

def test_fleet_a_row_assigned_to_web1_whose_dns_names_web2_waits_and_is_built_when_dns_comes_back(tmp_path):
    with Fleet(tmp_path) as fleet:
        domain = "waiting.fleet.test"
        row_id = fleet.add(domain, ADDRESSES["web-2"], hosting_server="web-1")
        note = f"waiting for DNS: {domain} resolves to 198.51.100.2, not this server (198.51.100.1)"

        rounds = [fleet.round(*WORKERS) for _ in range(2)]  # twice: the note is written once, then left as it is
        row = fleet.postgrest.get(row_id)
        assert (row["status_hosting"], row["hosting_server"], row["error_message"], row["doc_root"],
                row["matomo_id"]) == ("pending", "web-1", note, None, None)
        assert [body for rid, body in fleet.postgrest.patches if rid == row_id] == [{"error_message": note}]
        for server in fleet.servers:  # no site and no certificate order anywhere, no clpctl call naming it
            assert domain not in server.clpctl_domains(), server.name
            assert server.sites()[domain] == server.certificate_orders()[domain] == 0, server.name
        assert fleet.matomo_sites_by_name().get(domain) is None
        for name in ("web-2", "web-3"):  # not their row: they never even read it
            assert domain not in fleet.by_name[name].log(), name
        row_patches = [r for r in fleet.postgrest.requests_log
                       if r["method"] == "PATCH" and r["query"].get("id") == [f"eq.{row_id}"]]
        assert row_patches and all(r["query"].get("hosting_server") == ["eq.web-1"] for r in row_patches)
        assert all(set(rnd.exit_codes.values()) == {0} for rnd in rounds), [rnd.exit_codes for rnd in rounds]

        fleet.dns.set(domain, ADDRESSES["web-1"])  # DNS names web-1 again
        rounds.append(fleet.round(*WORKERS))
        assert fleet.problems({domain: "web-1"}) == []  # active, on web-1, error_message cleared
        assert set(rounds[-1].exit_codes.values()) == {0}
        for name in ("web-2", "web-3"):
            assert domain not in fleet.by_name[name].log(), name
        assert _no_traceback(fleet, rounds) == []


# -- the claim: several servers may build a site, exactly one does ------------------------------------------

@pytest.mark.parametrize("addresses", ["dns names all three", "SERVER_ADDRESSES unset"])
def test_fleet_rows_every_server_may_take_are_built_once_by_the_server_that_claimed_them(tmp_path, addresses):
    with Fleet(tmp_path) as fleet:
        domains = [f"contested{i}.fleet.test" for i in range(1, 31)]
        for domain in domains:
            fleet.add(domain, list(ADDRESSES.values()))
        overrides = {"SERVER_ADDRESSES": None} if addresses == "SERVER_ADDRESSES unset" else None
        rounds = [fleet.round(*WORKERS, overrides=overrides) for _ in range(2)]

        rows = {row["domain"]: row for row in fleet.postgrest.rows()}
        owners = {domain: rows[domain]["hosting_server"] for domain in domains}
        lost_races = sum(server.log().count("first; left to it") for server in fleet.servers)
        print(f"\nfleet ({addresses}): owners {collections.Counter(owners.values())}, claims lost {lost_races}")
        assert set(owners.values()) <= set(NAMES)
        assert fleet.problems(owners) == []  # active, on the claimer only, one order, one Matomo site
        for server in fleet.servers:
            assert {d for d in server.clpctl_domains() if owners[d] != server.name} == set(), server.name
        assert all(set(rnd.exit_codes.values()) == {0} for rnd in rounds), [rnd.exit_codes for rnd in rounds]
        assert _no_traceback(fleet, rounds) == []


# -- two rows of one site -------------------------------------------------------------------------------------

def test_fleet_two_rows_of_one_site_claimed_by_two_servers_are_built_once_without_server_addresses(tmp_path):
    with Fleet(tmp_path) as fleet:
        overrides = {"SERVER_ADDRESSES": None}  # "behave as a single server does today, with the claim"
        first = fleet.add("twin.fleet.test", ADDRESSES["web-2"], hosting_server="web-1")  # claimed, then a crash
        second = fleet.add("Twin.Fleet.Test.", ADDRESSES["web-2"])
        rounds = [fleet.round(*WORKERS, servers=("web-2",), overrides=overrides),
                  fleet.round(*WORKERS, servers=("web-1",), overrides=overrides)]
        assert _no_traceback(fleet, rounds) == []
        rows = [fleet.postgrest.get(first), fleet.postgrest.get(second)]
        sites = {server.name: server.sites()["twin.fleet.test"] for server in fleet.servers}
        orders = {server.name: server.certificate_orders()["twin.fleet.test"] for server in fleet.servers}
        assert sum(sites.values()) == 1 and sum(orders.values()) == 1, (sites, orders)
        assert [row["status_hosting"] for row in rows].count("active") == 1, rows


@pytest.mark.parametrize("spelling", ["xn--bcher-kva.fleet.test", "BÜCHER.fleet.test.", "Xn--Bcher-Kva.Fleet.Test"])
def test_fleet_one_site_under_two_spellings_on_two_servers_is_built_once(tmp_path, spelling):
    """Comparing two rows' domains, in one run or across servers, is on the normalised name: case, final dot,
    Unicode and punycode."""
    with Fleet(tmp_path) as fleet:
        overrides = {"SERVER_ADDRESSES": None}
        held = fleet.add("bücher.fleet.test", ADDRESSES["web-1"], hosting_server="web-1")  # claimed, then a crash
        other = fleet.add(spelling, ADDRESSES["web-2"])
        rounds = [fleet.round(*WORKERS, servers=("web-2",), overrides=overrides)]
        assert _no_traceback(fleet, rounds) == []
        built = {server.name: server.sites().get("xn--bcher-kva.fleet.test", 0) for server in fleet.servers}
        assert built == {name: 0 for name in built}
        assert fleet.postgrest.get(other)["hosting_server"] is None  # left to web-1, which holds the site
        assert fleet.postgrest.get(held)["status_hosting"] == "pending"
        assert f"Row {held} of the same site is assigned to web-1; this row is left to it" in fleet.servers[1].log()


# -- two machines under one SERVER_NAME (cloned from one image) ------------------------------------------------

def as_machine(tmp_path, name):
    """A prefix that runs the job on a machine of its own: a mount namespace whose /etc/machine-id is another."""
    machine_id = tmp_path / f"machine-id-{name}"
    machine_id.write_text(hashlib.md5(name.encode()).hexdigest() + "\n")
    return ("unshare", "--mount", "--propagation", "private", "sh", "-c",
            f'mount --bind {machine_id} /etc/machine-id && exec "$0" "$@"'), str(machine_id)


needs_root = pytest.mark.skipif(os.geteuid() != 0 or not Path("/etc/machine-id").is_file(),
                                reason="another machine's /etc/machine-id is bind-mounted: needs root and the file")


@needs_root
def test_fleet_a_second_machine_under_the_same_server_name_is_refused_and_builds_nothing(tmp_path):
    with Fleet(tmp_path, names=("web-1",)) as fleet:
        (server,) = fleet.servers
        first, first_id = as_machine(tmp_path, "first")
        second, _ = as_machine(tmp_path, "second")
        held = fleet.add("held.fleet.test", None, hosting_server="web-1", hosting_machine=machine_identity(first_id))
        free = fleet.add("free.fleet.test", None)
        overrides = {"SERVER_ADDRESSES": None}

        clone = run_job(server, *WORKERS, overrides=overrides, prefix=second, timeout=60)

        assert clone.returncode == 1
        assert ("SERVER_NAME web-1 is used by two machines: row %d was claimed under it by machine %s, and this is "
                "machine %s" % (held, machine_identity(first_id), machine_identity(tmp_path / "machine-id-second"))
                in clone.log)
        assert "give each server its own SERVER_NAME" in clone.log
        assert server.sites() == {}
        assert fleet.postgrest.get(held)["status_hosting"] == "pending"

        original = run_job(server, *WORKERS, overrides=overrides, prefix=first, timeout=60)

        assert original.returncode == 0, original.log
        assert fleet.postgrest.get(held)["status_hosting"] == "active"
        assert fleet.postgrest.get(free)["hosting_machine"] == machine_identity(first_id)


@needs_root
def test_fleet_a_row_assigned_by_hand_is_taken_by_the_machine_that_first_works_on_it(tmp_path):
    with Fleet(tmp_path, names=("web-1",)) as fleet:
        (server,) = fleet.servers
        first, first_id = as_machine(tmp_path, "first")
        by_hand = fleet.add("hand.fleet.test", None, hosting_server="web-1")  # no machine yet

        result = run_job(server, *WORKERS, overrides={"SERVER_ADDRESSES": None}, prefix=first, timeout=60)

        assert result.returncode == 0, result.log
        row = fleet.postgrest.get(by_hand)
        assert (row["status_hosting"], row["hosting_machine"]) == ("active", machine_identity(first_id))


# -- SERVER_NAME with dots: the filter matches the name exactly ------------------------------------------------

def test_fleet_a_dotted_server_name_reads_its_own_rows_and_not_those_of_a_longer_or_shorter_name(tmp_path):
    with Fleet(tmp_path, names=("web-1", "web-2")) as fleet:
        mine = fleet.add("mine.fleet.test", ADDRESSES["web-1"], hosting_server="web-1.eu.example.net")
        longer = fleet.add("longer.fleet.test", ADDRESSES["web-1"], hosting_server="web-1.eu.example.net.x")
        shorter = fleet.add("shorter.fleet.test", ADDRESSES["web-1"], hosting_server="web-1.eu")
        fleet.round(*WORKERS, servers=("web-1",), overrides={"SERVER_NAME": "web-1.eu.example.net"})
        row = fleet.postgrest.get(mine)
        assert (row["status_hosting"], row["error_message"]) == ("active", None)
        assert fleet.by_name["web-1"].sites()["mine.fleet.test"] == 1
        for row_id in (longer, shorter):
            row = fleet.postgrest.get(row_id)
            assert (row["status_hosting"], row["error_message"]) == ("pending", None)
        assert fleet.by_name["web-1"].clpctl_domains() == {"mine.fleet.test"}
        assert fleet.postgrest.get(mine)["hosting_server"] == "web-1.eu.example.net"


# -- hostile DNS ------------------------------------------------------------------------------------------------

HOSTILE = {
    "garbage": DnsFault.garbage(),
    "truncated": DnsFault.truncated(),       # every time: UDP truncated, then TCP cut in half
    "cut": DnsFault.truncated(cut=True),     # the UDP answer cut in half
    "servfail": DnsFault.servfail(),
    "refused": DnsFault.status("REFUSED"),
    "slow": DnsFault.delay(30),              # far beyond the resolver's lifetime (HTTP_TIMEOUT)
    "silent": DnsFault.drop(),
}
HTTP_TIMEOUT = 1


def test_fleet_hostile_dns_answers_never_hang_a_run_and_leave_the_rows_as_read(tmp_path):
    with Fleet(tmp_path, http_timeout=HTTP_TIMEOUT) as fleet:
        hostile = {}
        for kind in HOSTILE:
            for i in (1, 2):
                domain = f"{kind}{i}.hostile.test"
                hostile[domain] = fleet.add(domain, ADDRESSES["web-1"])
        # a row already web-1's, with a note: a transient DNS failure changes nothing in it
        noted = "noted.hostile.test"
        note = f"waiting for DNS: {noted} resolves to 198.51.100.2, not this server (198.51.100.1)"
        hostile[noted] = fleet.add(noted, ADDRESSES["web-1"], hosting_server="web-1", error_message=note)
        healthy = _spread(random.Random(SEED), 9, "healthy")
        for domain, server in healthy.items():
            fleet.add(domain, ADDRESSES[server])

        def fault(name, rdtype):
            kind = re.sub(r"\d+\.hostile\.test$", "", name)
            if name == noted:
                return DnsFault.servfail()
            return HOSTILE.get(kind) if name.endswith(".hostile.test") else None

        fleet.dns.fault = fault
        before = {row["id"]: row for row in fleet.postgrest.rows() if row["id"] in hostile.values()}
        rounds = []
        for _ in range(2):
            started = time.monotonic()
            rounds.append(fleet.round("--workers", "2", timeout=60))
            elapsed = time.monotonic() - started
            # 8 hostile names make the resolver wait its whole lifetime (garbage, cut, slow, silent), two rows at a
            # time; the others fail at once. Even one after the other they end well before the 30 s a slow answer
            # takes: no run waits for an answer past HTTP_TIMEOUT, or asks again and again.
            slowest = max(run.seconds for run in rounds[-1].runs)
            print(f"\nhostile DNS round: {elapsed:.1f} s, runs {[round(run.seconds, 1) for run in rounds[-1].runs]}")
            assert slowest < 8 * HTTP_TIMEOUT + 10, f"a run took {slowest:.1f} s"
            assert elapsed < 8 * HTTP_TIMEOUT + 12, f"the round took {elapsed:.1f} s"

        after = {row["id"]: row for row in fleet.postgrest.rows() if row["id"] in hostile.values()}
        assert after == before  # left as read: not claimed, no note, nothing
        for server in fleet.servers:
            assert not set(hostile) & server.clpctl_domains(), server.name
        assert not set(hostile) & set(fleet.matomo_sites_by_name())
        assert fleet.problems(healthy) == []
        asked = {name for name, _ in fleet.dns.requests_log}
        assert set(hostile) <= asked  # every fault was met
        # README: a service still unreachable leaves the row pending and the run exits 1
        assert all(set(rnd.exit_codes.values()) == {1} for rnd in rounds), [rnd.exit_codes for rnd in rounds]
        for server in fleet.servers:
            log = server.log()
            for domain in hostile:
                if domain != noted or server.name == "web-1":
                    assert re.search(rf"\[{re.escape(domain)}\] .*DNS", log), (server.name, domain)
        assert _no_traceback(fleet, rounds) == []

        fleet.dns.fault = None  # DNS heals: web-1 builds them all, the note goes
        rounds.append(fleet.round(*WORKERS))
        assert fleet.problems({**healthy, **{domain: "web-1" for domain in hostile}}) == []
        assert set(rounds[-1].exit_codes.values()) == {0}


# -- SERVER_NAME that could break a PostgREST filter -----------------------------------------------------------

BAD_NAMES = ["web-1,hosting_server.is.null", "web,1", "web(1)", "web-1)", "(web-1", "web'1", 'web"1', "web 1",
             "web\t1", "web-1\\", "*", "web:1", "-web-1", "wéb-1"]


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_fleet_a_server_name_that_could_break_a_postgrest_filter_is_refused_before_any_request(tmp_path, name):
    with Fleet(tmp_path, names=("web-1",)) as fleet:
        server = fleet.by_name["web-1"]
        row_id = fleet.add("refused.fleet.test", ADDRESSES["web-1"])
        result = run_job(server, *WORKERS, overrides={"SERVER_NAME": name}, timeout=60)
        assert result.returncode == 2, (result.stdout, result.stderr)
        assert "SERVER_NAME" in result.stderr
        assert "Traceback" not in result.stderr + result.stdout
        assert fleet.postgrest.request_count == 0
        assert fleet.matomo.request_count == fleet.dns.request_count == server.tls.request_count == 0
        assert clpctl_state.calls(server.db_path) == []
        assert fleet.postgrest.get(row_id)["hosting_server"] is None


@pytest.mark.parametrize("arguments", [("--check",), ("--dry-run",), ("--json",)])
def test_fleet_a_bad_server_name_is_refused_by_check_dry_run_and_json_too(tmp_path, arguments):
    with Fleet(tmp_path, names=("web-1",)) as fleet:
        server = fleet.by_name["web-1"]
        fleet.add("refused.fleet.test", ADDRESSES["web-1"])
        result = run_job(server, *arguments, overrides={"SERVER_NAME": "web-1,hosting_server.is.null"}, timeout=60)
        assert result.returncode == 2, (result.stdout, result.stderr)
        assert "SERVER_NAME" in result.stderr + result.stdout
        assert fleet.postgrest.request_count == fleet.matomo.request_count == fleet.dns.request_count == 0


# -- the soak --------------------------------------------------------------------------------------------------

SOAK_POINTED, SOAK_UNPOINTED, SOAK_WAITING = 300, 10, 6
SOAK_WAVES = 10             # the pointed rows arrive in this many waves, one before each of the first rounds
SOAK_DOWN = {3: "web-3", 7: "web-2"}  # round -> the server whose cron does not run then (its rows wait, then move)
SOAK_MOVES = 10             # unclaimed rows of the server that was down, moved in DNS to another server
SOAK_DNS_BACK = 9           # before this round, the waiting rows' DNS names web-1 again
SOAK_KILLING_ROUNDS = 14
SOAK_MAX_ROUNDS = 40


@pytest.mark.soak
def test_fleet_soak_300_domains_three_servers_random_kills(tmp_path):
    """300 pointed domains arriving in waves, 10 unpointed; servers whose cron misses a round, after which DNS moves
    some of their unclaimed domains to another server; 6 rows assigned to web-1 whose DNS names web-2 until round
    SOAK_DNS_BACK; SIGKILLs by timer (up to two a round) and right after a write landed, in the first rounds."""
    rng = random.Random(SEED + 7)
    with Fleet(tmp_path) as fleet:
        fleet.quiet()
        fleet.kill_rng = random.Random(SEED + 8)
        waiting = [f"waiting{i}.fleet.test" for i in range(1, SOAK_WAITING + 1)]
        expected = _spread(rng, SOAK_POINTED - SOAK_WAITING, "soak")
        domains = list(expected)
        first_owner = dict(expected)
        waves = {index: domains[index::SOAK_WAVES] for index in range(SOAK_WAVES)}
        unpointed = [f"nowhere{i}.fleet.test" for i in range(1, SOAK_UNPOINTED + 1)]
        for domain in unpointed:
            fleet.add(domain, NOWHERE)
        for domain in waiting:
            fleet.add(domain, ADDRESSES["web-2"], hosting_server="web-1")
            expected[domain] = "web-1"
        moved = {}  # domain -> the server DNS named before the move (it must never touch the row)
        ids = {}
        active_in = {}
        scripted = max(SOAK_WAVES, SOAK_DNS_BACK, SOAK_KILLING_ROUNDS, *(index + 1 for index in SOAK_DOWN))

        started = time.monotonic()
        rounds = []
        previous = None
        for index in range(SOAK_MAX_ROUNDS):
            for domain in waves.get(index, ()):
                ids[domain] = fleet.add(domain, ADDRESSES[expected[domain]])
            if index - 1 in SOAK_DOWN:  # that server missed its cron: DNS moves some of its unclaimed rows
                was_down = SOAK_DOWN[index - 1]
                unclaimed = sorted(row["domain"] for row in fleet.postgrest.rows()
                                   if row["hosting_server"] is None and expected.get(row["domain"]) == was_down)
                for domain in rng.sample(unclaimed, min(SOAK_MOVES, len(unclaimed))):
                    expected[domain] = rng.choice([name for name in NAMES if name != was_down])
                    moved[domain] = was_down
                    fleet.dns.set(domain, ADDRESSES[expected[domain]])
            rows = {row["domain"]: row for row in fleet.postgrest.rows()}
            if index == SOAK_DNS_BACK:
                notes = [rows[domain]["error_message"] for domain in waiting]
                assert notes == [f"waiting for DNS: {domain} resolves to 198.51.100.2, not this server "
                                 f"(198.51.100.1)" for domain in waiting]
                for domain in waiting:
                    fleet.dns.set(domain, ADDRESSES["web-1"])
            if index < SOAK_DNS_BACK:
                assert all(rows[domain]["status_hosting"] == "pending" and rows[domain]["hosting_server"] == "web-1"
                           for domain in waiting)

            running = [name for name in NAMES if SOAK_DOWN.get(index) != name]
            kills = []
            if index < SOAK_KILLING_ROUNDS:
                fleet.kill_after_write = 0.006
                for name in rng.sample(running, 2):
                    if rng.random() < 0.5:
                        kills.append((name, rng.uniform(0.5, 2.5)))
            else:
                fleet.kill_after_write = 0.0
            rounds.append(fleet.round(*WORKERS, servers=running, kills=kills, timeout=150))
            for row in fleet.postgrest.rows():
                if row["status_hosting"] == "active":
                    active_in.setdefault(row["domain"], index + 1)
            state = fleet.snapshot()
            if index >= scripted and not rounds[-1].kills and len(running) == 3 and state == previous:
                break
            previous = state
        else:
            pytest.fail(f"the fleet did not settle in {SOAK_MAX_ROUNDS} rounds: {[r.exit_codes for r in rounds]}")
        elapsed = time.monotonic() - started

        figures = fleet.figures(expected)
        kills = _kills(rounds)
        by_timer = sum(1 for kill in kills if "by the timer" in kill)
        touched_after_move = sorted(domain for domain, old in moved.items()
                                    if domain in fleet.by_name[old].clpctl_domains()
                                    or any(body.get("hosting_server") == old
                                           for rid, body in fleet.postgrest.patches if rid == ids[domain]))
        print(f"\nfleet soak: {len(expected)} pointed ({SOAK_WAITING} waiting for DNS until round {SOAK_DNS_BACK}, "
              f"{len(moved)} moved in DNS before any claim) + {len(unpointed)} unpointed domains, 3 servers; "
              f"{len(rounds)} rounds in {elapsed:.0f} s (round times {[round(r.seconds, 1) for r in rounds]})")
        print(f"fleet soak: kills {len(kills)} ({by_timer} by a timer, {len(kills) - by_timer} right after a "
              f"write landed); exit codes per round {[sorted(r.exit_codes.values()) for r in rounds]}")
        print(f"fleet soak: sites per server {figures['sites per server']}; every pointed row active after round "
              f"{max(active_in.get(domain, 0) for domain in expected)}")
        print(f"fleet soak: duplicates found {figures['duplicates']}; wrong-server sites "
              f"{figures['wrong-server sites']}, orders {figures['wrong-server orders']}; lost rows "
              f"{figures['lost rows']}; moved rows touched by their old server {len(touched_after_move)}")

        assert fleet.problems(expected, unpointed) == []
        assert (figures["duplicates"], figures["wrong-server sites"], figures["wrong-server orders"],
                figures["lost rows"]) == (0, 0, 0, 0)
        assert touched_after_move == []
        # at least the rows that arrived while their server was down were moved (more when kills left some behind)
        assert len(moved) >= sum(min(SOAK_MOVES, sum(1 for domain in waves[index] if first_owner[domain] == name))
                                 for index, name in SOAK_DOWN.items())
        assert kills
        assert _exit_codes_ok(rounds) == []
        assert set(rounds[-1].exit_codes.values()) == {0}
        assert _no_traceback(fleet, rounds) == []
        assert elapsed < 240
