"""served_certificate against a local TLS server that picks its certificate by SNI (FakeHttpsServer), with
certificates made by trustme and the system trust store pointed at a test CA through SSL_CERT_FILE."""

import socket
from datetime import datetime, timedelta, timezone

import pytest
import trustme

from hosting_automator.services.served_certificate import MIN_DAYS_LEFT, served_certificate
from tests.standins.tls import FakeHttpsServer

DAY = 86400


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture
def trusted(ca, tmp_path, monkeypatch):
    """The system trust store, as ssl.create_default_context sees it, holds the test CA."""
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    monkeypatch.setenv("SSL_CERT_FILE", str(path))
    return ca


@pytest.fixture(scope="module")
def shared_server(ca):
    with FakeHttpsServer(ca) as server:
        yield server


@pytest.fixture
def server(shared_server):
    """One server for the module (stopping one takes a fifth of a second); each test starts from a clean slate."""
    with shared_server.lock:
        shared_server.certificates.clear()
        shared_server.handshakes.clear()
    shared_server.fault = None
    yield shared_server
    shared_server.fault = None


def serve(server, domain, days):
    """Serve a certificate for `domain` (and its twin) that expires `days` from now; return that moment."""
    not_after = (datetime.now(timezone.utc) + timedelta(days=days)).replace(microsecond=0)
    server.certificates[domain] = not_after
    return not_after.timestamp()


def check(server, domain, now=None):
    return served_certificate(domain, "127.0.0.1", server.port, timeout=2, now=now)


@pytest.mark.parametrize("days, valid, reason", [
    (60, True, "a valid certificate is served already (60 days left)"),
    (10, False, "the certificate served expires in 10 days"),
], ids=["valid-for-60-days", "expiring-in-10-days"])
def test_served_certificate_valid_for_60_days_is_valid_expiring_in_10_days_is_not(trusted, server, days, valid,
                                                                                  reason):
    serve(server, "example.com", days)

    result = check(server, "example.com")

    assert result.valid is valid
    assert result.reason == reason
    assert days - 0.1 < result.days_left <= days
    assert server.handshakes == ["example.com"]  # the domain went out as SNI


def test_served_certificate_for_the_twin_name_is_valid_for_www(trusted, server):
    serve(server, "example.com", 60)

    assert check(server, "www.example.com").valid is True


def test_served_certificate_at_exactly_min_days_left_is_valid_one_second_later_not(trusted, server):
    expires = serve(server, "example.com", 90)

    on_the_day = check(server, "example.com", now=expires - MIN_DAYS_LEFT * DAY)
    one_second_later = check(server, "example.com", now=expires - MIN_DAYS_LEFT * DAY + 1)

    assert (on_the_day.valid, on_the_day.days_left) == (True, MIN_DAYS_LEFT)
    assert one_second_later.valid is False
    assert one_second_later.reason == "the certificate served expires in 14 days"


def test_served_certificate_now_in_the_future_sees_fewer_days_left(trusted, server):
    expires = serve(server, "example.com", 60)

    result = check(server, "example.com", now=expires - 3 * DAY)

    assert (result.valid, result.days_left) == (False, 3)
    assert result.reason == "the certificate served expires in 3 days"


def test_served_certificate_from_untrusted_ca_does_not_verify(trusted):
    with FakeHttpsServer(trustme.CA()) as other:
        serve(other, "example.com", 60)
        result = check(other, "example.com")

    assert result.valid is False
    assert result.reason.startswith("the certificate served does not verify (")
    assert "unable to get local issuer certificate" in result.reason
    assert result.days_left is None
    assert result.untrusted is True  # the trust store is what --check should blame


def test_served_certificate_for_another_domain_does_not_verify(trusted, server):
    serve(server, "other.example", 60)

    result = check(server, "example.com")

    assert result.valid is False
    assert server.handshakes == ["example.com"]
    assert result.reason == ("the certificate served does not verify (Hostname mismatch, certificate is not valid "
                             "for 'example.com'.)")
    assert result.untrusted is False  # trusted, only for other names: the site needs its certificate


def test_served_certificate_already_expired_does_not_verify(trusted, server):
    serve(server, "example.com", -1)

    result = check(server, "example.com")

    assert result.valid is False
    assert result.reason == "the certificate served does not verify (certificate has expired)"


def test_served_certificate_nothing_listening_is_not_valid():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    result = served_certificate("example.com", "127.0.0.1", port, timeout=2)

    assert result.valid is False
    assert result.reason.startswith(f"no certificate could be read from 127.0.0.1:{port} (")
    assert "Connection refused" in result.reason


def test_served_certificate_server_closing_before_handshake_is_not_valid(trusted, server):
    from tests.standins.faults import Fault

    serve(server, "example.com", 60)
    server.fault = lambda request: Fault.drop()

    result = check(server, "example.com")

    assert result.valid is False
    assert result.reason.startswith(f"no certificate could be read from 127.0.0.1:{server.port} (")

