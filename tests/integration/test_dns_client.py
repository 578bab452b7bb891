"""DnsClient against the DNS stand-in over real sockets: what a domain's A and AAAA records name, "not here" for a
name that does not exist or has no address, and every way a resolver can fail as a transient DnsError, within
the timeout."""

import ipaddress
import time

import pytest

from hosting_automator.errors import DnsError
from hosting_automator.services.dns_client import DnsClient
from tests.standins.dns import DnsFault, FakeDns


@pytest.fixture
def dns():
    with FakeDns() as server:
        yield server


def client_of(server, timeout=0.5):
    return DnsClient([(server.address, server.port)], timeout)


def test_addresses_are_the_a_and_aaaa_records_of_the_domain(dns):
    dns.set("shop.example", ["198.51.100.7", "2001:db8::7"])

    assert client_of(dns).addresses("shop.example") == {ipaddress.ip_address("198.51.100.7"),
                                                         ipaddress.ip_address("2001:db8::7")}
    assert sorted(rdtype for _, rdtype in dns.requests_log) == ["A", "AAAA"]


def test_addresses_of_a_name_that_does_not_exist_or_has_no_address_are_none(dns):
    dns.set("empty.example", [])

    assert client_of(dns).addresses("nowhere.example") == set()  # NXDOMAIN
    assert client_of(dns).addresses("empty.example") == set()  # NODATA


def test_each_run_asks_afresh_so_a_moved_record_is_seen_at_once(dns):
    dns.set("moving.example", ["198.51.100.1"])
    client = client_of(dns)
    assert client.addresses("moving.example") == {ipaddress.ip_address("198.51.100.1")}

    dns.set("moving.example", ["198.51.100.2"])

    assert client.addresses("moving.example") == {ipaddress.ip_address("198.51.100.2")}


@pytest.mark.parametrize("fault", [DnsFault.servfail(), DnsFault.drop(), DnsFault.garbage(), DnsFault.delay(2.0),
                                   DnsFault.truncated(cut=True)])
def test_a_resolver_that_fails_is_a_transient_dns_error_within_the_timeout(dns, fault):
    dns.set("broken.example", ["198.51.100.7"])
    dns.fault = lambda name, rdtype: fault

    started = time.monotonic()
    with pytest.raises(DnsError) as caught:
        client_of(dns, timeout=0.5).addresses("broken.example")

    assert caught.value.transient
    assert str(caught.value).startswith("DNS: ")
    assert "broken.example" in str(caught.value)
    assert time.monotonic() - started < 1.5  # never past the lifetime (twice: A, then AAAA at most)
