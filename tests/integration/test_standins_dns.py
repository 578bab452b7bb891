"""The DNS stand-in (tests/standins/dns.py), asked by dnspython's own resolver, as the job asks it: every kind of
answer and every fault behaves as documented, within short lifetimes (no test waits more than about half a
second)."""

import socket
import threading
import time

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver
import pytest

from tests.standins.dns import DnsFault, FakeDns
from tests.standins.faults import once, times

LIFETIME = 0.3  # seconds a resolve may take in these tests before dnspython gives up


@pytest.fixture
def fake():
    with FakeDns({"example.test": ["203.0.113.9", "2001:db8::9"], "v4only.test": ["198.51.100.7"],
                  "noaddress.test": []}) as started:
        yield started


def resolver_for(fake, lifetime=LIFETIME):
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [fake.address]
    resolver.port = fake.port
    resolver.lifetime = resolver.timeout = lifetime
    resolver.cache = None
    return resolver


def addresses(answer):
    return sorted(rdata.address for rdata in answer)


def query_udp(fake, name="example.test", rdtype="A"):
    """One raw UDP exchange (no retries, no TCP fallback): the response exactly as the stand-in sent it."""
    return dns.query.udp(dns.message.make_query(name, rdtype), fake.address, port=fake.port, timeout=LIFETIME,
                         raise_on_truncation=False)


def timed(call):
    started = time.monotonic()
    try:
        return call(), time.monotonic() - started
    except Exception as exc:  # noqa: BLE001 - handed back to the test
        return exc, time.monotonic() - started


# -- answers ---------------------------------------------------------------------------------------------------------

def test_a_and_aaaa_answers_come_from_the_records(fake):
    resolver = resolver_for(fake)

    a = resolver.resolve("example.test", "A")
    aaaa = resolver.resolve("example.test", "AAAA")

    assert addresses(a) == ["203.0.113.9"] and a.rrset.ttl == 60
    assert addresses(aaaa) == ["2001:db8::9"]
    # names are case-insensitive, the final dot optional; the log keeps them normalised, with the type as text
    assert addresses(resolver.resolve("Example.TEST.", "A")) == ["203.0.113.9"]
    assert fake.requests_log == [("example.test", "A"), ("example.test", "AAAA"), ("example.test", "A")]
    assert (fake.request_count, fake.tcp_request_count) == (3, 0)
    assert fake.resolvers_setting == f"127.0.0.1:{fake.port}"


def test_a_name_not_in_the_records_is_nxdomain(fake):
    with pytest.raises(dns.resolver.NXDOMAIN):
        resolver_for(fake).resolve("unknown.test", "A")
    assert query_udp(fake, "unknown.test").rcode() == dns.rcode.NXDOMAIN


@pytest.mark.parametrize("name, rdtype", [("v4only.test", "AAAA"), ("noaddress.test", "A"), ("example.test", "MX")])
def test_a_known_name_without_an_address_of_the_type_is_nodata(fake, name, rdtype):
    with pytest.raises(dns.resolver.NoAnswer):
        resolver_for(fake).resolve(name, rdtype)
    response = query_udp(fake, name, rdtype)
    assert (response.rcode(), response.answer) == (dns.rcode.NOERROR, [])


def test_records_change_at_once_and_are_checked(fake):
    resolver = resolver_for(fake)
    fake.set("moved.test", ["192.0.2.1", "192.0.2.2"])
    assert addresses(resolver.resolve("moved.test", "A")) == ["192.0.2.1", "192.0.2.2"]
    fake.records["MOVED.test."] = "192.0.2.3"  # the mapping interface; one address may be a string
    assert fake.records["moved.test"] == ["192.0.2.3"]
    assert addresses(resolver.resolve("moved.test", "A")) == ["192.0.2.3"]
    fake.remove("moved.test")
    fake.remove("never-there.test")  # no error
    assert "moved.test" not in fake.records
    with pytest.raises(dns.resolver.NXDOMAIN):
        resolver.resolve("moved.test", "A")
    with pytest.raises(ValueError):
        fake.set("bad.test", ["203.0.113.300"])
    assert "bad.test" not in fake.records


def test_many_addresses_overflow_a_datagram_and_come_over_tcp(fake):
    many = [f"10.0.{i // 250}.{i % 250 + 1}" for i in range(60)]  # 60 A records: more than 512 bytes
    fake.set("big.test", many)

    assert query_udp(fake, "big.test").flags & dns.flags.TC
    assert addresses(resolver_for(fake).resolve("big.test", "A")) == sorted(many)
    assert fake.tcp_request_count == 1


def test_answers_over_tcp(fake):
    assert addresses(resolver_for(fake).resolve("example.test", "AAAA", tcp=True)) == ["2001:db8::9"]
    assert (fake.request_count, fake.tcp_request_count) == (1, 1)


def test_queries_while_records_change_see_one_state_or_the_other(fake):
    states = (["192.0.2.1"], ["192.0.2.2", "2001:db8::2"])
    seen, errors, stop = set(), [], threading.Event()

    def flip():
        for i in range(200):
            fake.set("flip.test", states[i % 2])
        stop.set()

    def ask():
        resolver = resolver_for(fake, lifetime=1.0)
        while not stop.is_set():
            try:
                seen.add(tuple(addresses(resolver.resolve("flip.test", "A"))))
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
                return

    fake.set("flip.test", states[0])
    askers = [threading.Thread(target=ask) for _ in range(3)]
    for t in askers:
        t.start()
    flip()
    for t in askers:
        t.join(timeout=5)
    assert not errors
    assert seen <= {("192.0.2.1",), ("192.0.2.2",)} and seen


# -- faults ----------------------------------------------------------------------------------------------------------

def test_servfail_fails_the_resolve_at_once_and_once_means_once(fake):
    fake.fault = once(DnsFault.servfail(), lambda name, rdtype: rdtype == "A")
    resolver = resolver_for(fake)

    outcome, elapsed = timed(lambda: resolver.resolve("example.test", "A"))

    assert isinstance(outcome, dns.resolver.NoNameservers), outcome  # dnspython drops a SERVFAILing server
    assert "SERVFAIL" in str(outcome)
    assert elapsed < LIFETIME
    assert addresses(resolver.resolve("example.test", "A")) == ["203.0.113.9"]
    assert fake.requests_log == [("example.test", "A")] * 2


def test_any_response_code(fake):
    fake.fault = lambda name, rdtype: DnsFault.status("REFUSED")
    assert query_udp(fake).rcode() == dns.rcode.REFUSED
    with pytest.raises(dns.resolver.NoNameservers):
        resolver_for(fake).resolve("example.test", "A")


def test_drop_leaves_the_client_to_its_timeout(fake):
    fake.fault = lambda name, rdtype: DnsFault.drop()

    outcome, elapsed = timed(lambda: resolver_for(fake).resolve("example.test", "A"))

    assert isinstance(outcome, dns.resolver.LifetimeTimeout), outcome
    assert LIFETIME * 0.9 <= elapsed < LIFETIME + 0.5
    assert fake.request_count >= 1


def test_drop_over_tcp_closes_without_answering(fake):
    fake.fault = lambda name, rdtype: DnsFault.drop()
    outcome, elapsed = timed(lambda: resolver_for(fake).resolve("example.test", "A", tcp=True))
    assert isinstance(outcome, dns.resolver.NoNameservers) and "EOF" in str(outcome), outcome
    assert elapsed < LIFETIME


def test_garbage_is_no_dns_message(fake):
    fake.fault = lambda name, rdtype: DnsFault.garbage()
    query = dns.message.make_query("example.test", "A")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(LIFETIME)
        sock.sendto(query.to_wire(), (fake.address, fake.port))
        wire, _ = sock.recvfrom(65535)
    assert wire[:2] == query.to_wire()[:2]  # it carries the query's id ...
    with pytest.raises(dns.exception.FormError):  # ... and does not parse
        dns.message.from_wire(wire)

    # Over UDP dnspython ignores a datagram it cannot parse and waits on: the resolve ends as a timeout.
    outcome, elapsed = timed(lambda: resolver_for(fake).resolve("example.test", "A"))
    assert isinstance(outcome, dns.resolver.LifetimeTimeout), outcome
    assert elapsed < LIFETIME + 0.5
    # Over TCP it is a malformed answer: the server is given up at once.
    outcome, elapsed = timed(lambda: resolver_for(fake).resolve("example.test", "A", tcp=True))
    assert isinstance(outcome, dns.resolver.NoNameservers), outcome
    assert elapsed < LIFETIME


def test_garbage_can_be_given(fake):
    fake.fault = lambda name, rdtype: DnsFault.garbage(b"\x00\x01")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(LIFETIME)
        sock.sendto(dns.message.make_query("example.test", "A").to_wire(), (fake.address, fake.port))
        assert sock.recvfrom(65535)[0] == b"\x00\x01"


def test_truncated_once_sets_tc_and_the_resolver_gets_the_answer_over_tcp(fake):
    fake.fault = once(DnsFault.truncated())

    answer = resolver_for(fake).resolve("example.test", "A")

    assert addresses(answer) == ["203.0.113.9"]
    assert fake.requests_log == [("example.test", "A")] * 2
    assert (fake.request_count, fake.tcp_request_count) == (2, 1)


def test_truncated_every_time_is_tc_over_udp_and_a_cut_answer_over_tcp(fake):
    fake.fault = lambda name, rdtype: DnsFault.truncated()
    response = query_udp(fake)
    assert response.flags & dns.flags.TC and response.answer == []

    outcome, elapsed = timed(lambda: resolver_for(fake).resolve("example.test", "A"))

    assert isinstance(outcome, dns.resolver.NoNameservers), outcome  # the TCP answer ended early (EOF)
    assert elapsed < LIFETIME
    assert fake.tcp_request_count == 1


def test_truncated_cut_over_udp_is_an_answer_cut_short(fake):
    fake.fault = lambda name, rdtype: DnsFault.truncated(cut=True)
    outcome, elapsed = timed(lambda: resolver_for(fake).resolve("example.test", "A"))
    assert isinstance(outcome, dns.resolver.LifetimeTimeout), outcome  # dnspython ignores what does not parse
    assert elapsed < LIFETIME + 0.5


def test_delay_then_answer(fake):
    fake.fault = once(DnsFault.delay(0.15))
    answer, elapsed = timed(lambda: resolver_for(fake, lifetime=1.0).resolve("example.test", "A"))
    assert addresses(answer) == ["203.0.113.9"]
    assert 0.15 <= elapsed < 0.6
    assert fake.injected_latency_seconds >= 0.14


def test_delay_beyond_the_lifetime_is_a_timeout(fake):
    fake.fault = times(10, DnsFault.delay(0.5))
    outcome, elapsed = timed(lambda: resolver_for(fake, lifetime=0.2).resolve("example.test", "A"))
    assert isinstance(outcome, dns.resolver.LifetimeTimeout), outcome
    assert elapsed < 0.5


def test_latency_delays_every_answer(fake):
    fake.latency = 0.05
    _, elapsed = timed(lambda: resolver_for(fake).resolve("example.test", "A"))
    assert elapsed >= 0.05


def test_stop_is_an_outage_and_start_again_answers_on_the_same_port(fake):
    port = fake.port
    fake.stop()
    outcome, _ = timed(lambda: resolver_for(fake, lifetime=0.2).resolve("example.test", "A"))
    assert isinstance(outcome, (dns.resolver.LifetimeTimeout, dns.resolver.NoNameservers)), outcome

    fake.start()

    assert fake.port == port
    assert addresses(resolver_for(fake).resolve("example.test", "A")) == ["203.0.113.9"]
    assert addresses(resolver_for(fake).resolve("example.test", "A", tcp=True)) == ["203.0.113.9"]


def test_stop_ends_a_pending_delay_without_answering():
    fake = FakeDns({"example.test": ["203.0.113.9"]}).start()
    fake.fault = lambda name, rdtype: DnsFault.delay(30)
    worker = threading.Thread(target=lambda: timed(lambda: resolver_for(fake, lifetime=0.2).resolve("example.test")))
    worker.start()
    worker.join(timeout=2)
    started = time.monotonic()
    fake.stop()
    assert time.monotonic() - started < 1.0
    assert fake.injected_latency_seconds < 5
