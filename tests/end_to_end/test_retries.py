"""What is tried again and what is not. A create that reached its service and got no answer (a timeout, a
connection lost mid-answer, a proxy's 502/504) may still be taking effect where a look-up cannot see it yet: it
is not sent again this run, and a later run looks up first. A refused create (503) is tried again at once; a
service asking for a wait beyond the cap is not asked again this run."""

import json

import pytest

from tests.standins import Fault
from tests.standins.clpctl_state import certificate_requests
from tests.standins.faults import once
from tests.support.harness import add_pending, run_job, wait_for
from tests.support.standin_views import (ADD, CERTIFICATE, FAST, counts, gateway_posts, live_root, matomo_calls,
                                         outcome, row, to, to_matomo)


@pytest.mark.parametrize("fault, made", [
    (Fault.delay(1.0), 1), (Fault.later(504, 0.5, "Gateway Timeout"), 1), (Fault.status(502, "Bad Gateway"), 0),
], ids=["slower-than-HTTP_TIMEOUT", "proxy-504-while-matomo-works-on", "proxy-502"])
def test_matomo_add_site_without_an_answer_is_not_sent_again(standins, fault, made):
    ids = add_pending(standins, "slow.example.test")
    standins.matomo.fault = once(fault, to_matomo("addSite"))

    result = run_job(standins, overrides=FAST, fast_retries=True)

    assert matomo_calls(standins, "addSite") == 1
    assert result.returncode == 0, result.log
    wait_for(lambda: len(standins.matomo.sites) >= made, what="the slow add to end")
    assert len(standins.matomo.sites) == made
    assert outcome(standins, ids[0]) == ("active", live_root("slow.example.test"), None, None)
    assert "it may still have been made, so it is not sent again this run; the site goes live without tracking" \
        in result.log


@pytest.mark.parametrize("fault", [Fault.after_drop(), Fault.status(504, "Gateway Timeout")],
                         ids=["answer-lost", "proxy-504"])
def test_gateway_site_add_without_an_answer_is_not_sent_again_and_the_next_run_finishes_it(gateway_standins, fault):
    standins = gateway_standins
    ids = add_pending(standins, "lost.example.test", "other.example.test")
    standins.gateway.fault = once(fault, to(ADD))

    first = run_job(standins, fast_retries=True)

    assert [json.loads(r["body"])["domainName"] for r in gateway_posts(standins, ADD)] == [
        "lost.example.test", "other.example.test"]
    assert first.returncode == 1
    assert outcome(standins, ids[0]) == ("pending", None, None, None)
    assert "not sent again this run; the row stays pending and the next run tries again" in first.log
    assert row(standins, ids[1])["status_hosting"] == "active"  # the run went on

    second = run_job(standins)

    assert second.returncode == 0, second.log
    assert outcome(standins, ids[0]) == ("active", live_root("lost.example.test"), 2, None)
    assert counts(standins, "lost.example.test") == (1, 1, 1)


@pytest.mark.parametrize("fault", [Fault.after_drop(), Fault.later(502, 0.5, "Bad Gateway")],
                         ids=["answer-lost", "proxy-502-while-the-gateway-works-on"])
def test_gateway_certificate_order_without_an_answer_is_not_sent_again(gateway_standins, fault):
    standins = gateway_standins
    ids = add_pending(standins, "cert.example.test")
    standins.gateway.fault = once(fault, to(CERTIFICATE))
    standins.tls.fault = lambda request: Fault.drop()  # the served certificate cannot be seen this run

    first = run_job(standins, fast_retries=True)

    assert len(gateway_posts(standins, CERTIFICATE)) == 1
    wait_for(lambda: certificate_requests(standins.db_path), what="the order to be worked on")
    assert len(certificate_requests(standins.db_path)) == 1
    assert first.returncode == 1
    assert outcome(standins, ids[0])[0] == "pending"
    assert counts(standins, "cert.example.test")[2] == 0  # nothing after the certificate step ran

    standins.tls.fault = None
    second = run_job(standins)

    assert second.returncode == 0, second.log
    assert outcome(standins, ids[0]) == ("active", live_root("cert.example.test"), 1, None)
    assert len(certificate_requests(standins.db_path)) == 1  # the rerun saw it served


def test_gateway_refusing_a_create_with_503_is_tried_again_at_once(gateway_standins):
    """The other side of the rule: a refusal (429, 503) says nothing was done, so it is retried in the run."""
    standins = gateway_standins
    ids = add_pending(standins, "refused.example.test")
    standins.gateway.fault = once(Fault.status(503, {"success": False, "error": "Service Unavailable"}), to(ADD))

    result = run_job(standins, fast_retries=True)

    assert result.returncode == 0, result.log
    assert len(gateway_posts(standins, ADD)) == 2
    assert outcome(standins, ids[0]) == ("active", live_root("refused.example.test"), 1, None)


def test_gateway_asking_for_a_wait_beyond_the_cap_is_not_asked_again_this_run(gateway_standins):
    standins = gateway_standins
    ids = add_pending(standins, "a.example.test", "b.example.test", "c.example.test", "bad..example.test")
    standins.gateway.fault = lambda request: Fault.status(
        429, {"success": False, "error": "Too many requests, please try again later.", "retryAfter": 900})

    result = run_job(standins, fast_retries=True, timeout=60)

    assert result.returncode == 1
    assert len(standins.gateway.requests_log) == 1
    assert [row(standins, i)["status_hosting"] for i in ids] == ["pending"] * 3 + ["failed"]  # the rest goes on
    assert result.log.count("CloudPanel asked to wait 900 s") == 1


def test_matomo_asking_for_a_wait_beyond_the_cap_is_not_asked_again_and_sites_go_live(standins):
    ids = add_pending(standins, "a.example.test", "b.example.test")
    standins.matomo.fault = lambda request: Fault.status(429, "Too Many Requests", {"Retry-After": "900"})

    result = run_job(standins, fast_retries=True, timeout=60)

    assert result.returncode == 0, result.log
    assert len(standins.matomo.requests_log) == 1
    assert [outcome(standins, i)[:3] for i in ids] == [("active", live_root(d), None) for d in (
        "a.example.test", "b.example.test")]
    assert result.log.count("Matomo asked to wait 900 s") == 1
