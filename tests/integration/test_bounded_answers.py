"""Every client against a service that drips its answer or answers a huge body, over a real socket: each request
ends within its deadline, whatever arrives, and memory stays flat (the answer is refused before it is all read)."""

import importlib
import socket
import threading
import time
import tracemalloc

import pytest

from hosting_automator.core.http import MAX_ANSWER_BYTES, Session
from hosting_automator.errors import CloudPanelError, MatomoError, SupabaseError
from hosting_automator.services import healthcheck
from hosting_automator.services.cloudpanel_client import GatewayClient
from hosting_automator.services.matomo_client import MatomoClient
from hosting_automator.services.served_certificate import ServedCertificate, served_certificate
from hosting_automator.services.supabase_client import SupabaseClient
from tests.standins.gateway import FakeGateway
from tests.standins.matomo import FakeMatomo
from tests.standins.postgrest import FakePostgrest
from tests.standins.faults import Fault
from tests.support.cloudpanel import FakeServedCertificate
from tests.support.retries import fast_retry_policy

TIMEOUT = 0.5
HUGE = 1_500_000_000  # 1.5 GB: made by the stand-in as it sends, refused by the client long before


@pytest.fixture
def one_attempt(sleeps):
    return fast_retry_policy(sleeps, attempts=1)


@pytest.fixture
def session():
    with Session(timeout=TIMEOUT) as session:
        yield session


def matomo_call(standin, session, retry):
    MatomoClient(standin.url + "/index.php", standin.token, session, retry).find_site("example.test")


def gateway_call(standin, session, retry):
    GatewayClient(standin.url, standin.api_key, session, retry=retry,
                  served_certificate=FakeServedCertificate()).existing_site_user("example.test")


def supabase_call(standin, session, retry):
    client = SupabaseClient(standin.url, standin.service_key, "sites", TIMEOUT, retry)
    try:
        list(client.fetch_pending_hosting_sites())
    finally:
        client.close()


SERVICES = {
    "Matomo": (lambda tmp: FakeMatomo(), matomo_call, MatomoError),
    "gateway": (lambda tmp: FakeGateway(tmp / "clpctl.sq3"), gateway_call, CloudPanelError),
    "Supabase": (lambda tmp: FakePostgrest(), supabase_call, SupabaseError),
}


@pytest.fixture(params=sorted(SERVICES))
def service(request, tmp_path):
    make, call, error = SERVICES[request.param]
    with make(tmp_path) as standin:
        yield standin, call, error


@pytest.mark.parametrize("head", [False, True], ids=["body-dripped", "head-dripped"])
def test_a_dripping_answer_ends_the_request_within_its_deadline(service, session, one_attempt, head):
    standin, call, error = service
    standin.fault = lambda request: Fault.drip(seconds=0.1, head=head)  # each read well inside the timeout

    started = time.monotonic()
    with pytest.raises(error) as caught:
        call(standin, session, one_attempt)
    took = time.monotonic() - started

    assert took < 2 * TIMEOUT, f"{took:.2f} s"
    assert f"no answer within {TIMEOUT:g} s (timeout)" in str(caught.value)
    assert caught.value.transient


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_huge_answer_is_refused_with_its_size_and_memory_stays_flat(service, session, one_attempt, declared):
    standin, call, error = service
    standin.fault = lambda request: Fault.huge(HUGE, declared=declared)

    tracemalloc.start()
    try:
        with pytest.raises(error) as caught:
            call(standin, session, one_attempt)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < 3 * MAX_ANSWER_BYTES, f"{peak:,} bytes"
    shown = f"{HUGE:,} bytes" if declared else f"more than {MAX_ANSWER_BYTES:,} bytes"
    assert f"the answer is {shown}, more than the {MAX_ANSWER_BYTES:,} any real answer takes" in str(caught.value)
    assert not caught.value.transient


def test_a_monitoring_ping_that_drips_only_warns_within_its_deadline(caplog, monkeypatch):
    monkeypatch.setattr(healthcheck, "PING_TIMEOUT", TIMEOUT)
    with FakeMatomo() as monitor, Session(timeout=30) as session:
        monitor.fault = lambda request: Fault.drip(seconds=0.1)
        started = time.monotonic()
        healthcheck.ping(session, monitor.url + "/ping/abc", "start")
        took = time.monotonic() - started

    assert took < 2 * TIMEOUT
    assert caplog.messages == ["Monitoring ping (start) failed: DeadlineExceeded"]


def test_a_tls_endpoint_that_drips_its_handshake_ends_the_certificate_look_within_its_deadline():
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def drip():
        connection, _ = listener.accept()
        with connection:
            while not stop.wait(0.1):  # a TLS record header that never completes, one byte at a time
                try:
                    connection.sendall(b"\x16")
                except OSError:
                    return

    threading.Thread(target=drip, daemon=True).start()
    started = time.monotonic()
    try:
        served = served_certificate("example.test", "127.0.0.1", listener.getsockname()[1], TIMEOUT)
    finally:
        stop.set()
        listener.close()
    took = time.monotonic() - started

    assert took < 2 * TIMEOUT
    assert not served.valid and served.reason.endswith(f"(no answer within {TIMEOUT:g} s (timeout))")



def test_a_tls_endpoint_that_goes_silent_is_the_same_timeout_whichever_limit_ends_it(monkeypatch):
    """A silent endpoint meets the socket's own timeout (ssl's "handshake operation timed out") and the whole
    look's deadline at about the same moment: the reason is the same whichever comes first."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    module = importlib.import_module("hosting_automator.services.served_certificate")
    monkeypatch.setattr(module, "within", lambda seconds, call: call())  # the socket's own timeout alone
    try:
        served = served_certificate("example.test", "127.0.0.1", port, TIMEOUT)
    finally:
        listener.close()

    assert served == ServedCertificate(False, f"no certificate could be read from 127.0.0.1:{port} (no answer "
                                              f"within {TIMEOUT:g} s (timeout))")
