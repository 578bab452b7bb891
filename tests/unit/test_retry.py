"""The retry policy: transient failures only, exponential back-off with jitter, Retry-After capped, a budget."""

import pytest

from hosting_automator.core.http import retry_after_seconds
from hosting_automator.errors import CertificateError, CloudPanelError, MatomoError
from tests.support.retries import fast_retry_policy


class Flaky:
    def __init__(self, failures, result="done"):
        self.failures = list(failures)
        self.calls = 0
        self.result = result

    def __call__(self):
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return self.result


def test_transient_failures_are_retried_with_growing_waits(retry, sleeps):
    operation = Flaky([MatomoError("503", transient=True)] * 3)
    assert retry.call(operation, "Matomo") == "done"
    assert operation.calls == 4
    assert sleeps == [0.75, 1.5, 3.0]  # base 1 s doubling, jitter fixed at the midpoint of [half, full]
    assert retry.retries == 3


def test_final_failures_are_not_retried(retry, sleeps):
    operation = Flaky([MatomoError("401 token refused")])
    with pytest.raises(MatomoError, match="401 token refused"):
        retry.call(operation, "Matomo")
    assert operation.calls == 1 and sleeps == []


def test_attempts_are_bounded(retry, sleeps):
    operation = Flaky([MatomoError(f"timeout {n}", transient=True) for n in range(10)])
    with pytest.raises(MatomoError, match="timeout 3"):
        retry.call(operation, "Matomo")
    assert operation.calls == 4 and len(sleeps) == 3


def test_retry_after_up_to_the_cap_is_waited(retry, sleeps):
    operation = Flaky([MatomoError("429", transient=True, retry_after=7),
                       MatomoError("429", transient=True, retry_after=60)])
    retry.call(operation, "Matomo")
    assert sleeps == [7.0, 60.0]


def test_retry_after_beyond_the_cap_pauses_that_service_for_the_run_with_one_warning(retry, sleeps, caplog):
    limited = Flaky([CloudPanelError("gateway: add the static site: HTTP 429 Too Many Requests", transient=True,
                                     retry_after=900)])

    with pytest.raises(CloudPanelError):
        retry.call(limited, "CloudPanel", service="gateway")
    later = Flaky([])
    with pytest.raises(CloudPanelError) as caught:
        retry.call(later, "SSL", service="gateway")
    assert retry.call(Flaky([]), "Matomo", service="Matomo") == "done"  # other services go on

    assert sleeps == [] and later.calls == 0  # not waited for, not asked again
    assert str(caught.value) == "SSL: not asked: gateway asked this run to wait 900 s, longer than the 60 s it waits"
    assert caught.value.transient  # the row stays as read, for the next run
    warnings = [record for record in caplog.records if record.levelname == "WARNING"]
    assert len(warnings) == 1 and "gateway asked to wait 900 s" in warnings[0].getMessage()


def test_a_paused_service_fails_each_later_call_with_the_class_that_call_handles(retry):
    """A 429 on the certificate call pauses CloudPanel: the next site's CloudPanel step must get a CloudPanelError,
    which it handles, not the CertificateError that paused the service."""
    with pytest.raises(CertificateError):
        retry.call(Flaky([CertificateError("HTTP 429", transient=True, retry_after=900)]), "SSL", service="CloudPanel",
                   error=CertificateError)

    with pytest.raises(CloudPanelError) as site_step:
        retry.call(Flaky([]), "CloudPanel", service="CloudPanel", error=CloudPanelError)
    with pytest.raises(CertificateError) as certificate_step:
        retry.call(Flaky([]), "SSL", service="CloudPanel", error=CertificateError)

    assert type(site_step.value) is CloudPanelError and site_step.value.transient
    assert type(certificate_step.value) is CertificateError and certificate_step.value.transient


def test_budget_stops_retrying_when_the_next_wait_would_exceed_it(sleeps):
    policy = fast_retry_policy(sleeps, attempts=10, budget=10, clock=sleeps.clock, jitter=lambda: 1.0)
    operation = Flaky([MatomoError("503", transient=True)] * 10)
    with pytest.raises(MatomoError):
        policy.call(operation, "Matomo")
    assert sleeps == [1.0, 2.0, 4.0]  # the next wait, 8 s, would end past the 10 s budget
    assert operation.calls == 4


def test_jitter_spreads_waits_between_half_and_full_backoff(sleeps):
    low = fast_retry_policy(sleeps, jitter=lambda: 0.0).delay(3)
    high = fast_retry_policy(sleeps, jitter=lambda: 1.0).delay(3)
    assert (low, high) == (2.0, 4.0)


@pytest.mark.parametrize("header, expected", [("5", 5.0), (" 7 ", 7.0), ("0.5", None), ("-3", None), (None, None),
                                              ("soon", None), ("9" * 5000, None), (2.5, 2.5), (-1, 0.0),
                                              ("Wed, 25 Nov 2026 10:00:30 GMT", 30.0),
                                              ("Wed, 25 Nov 2026 09:00:00 GMT", 0.0)])
def test_retry_after_seconds_reads_whole_seconds_http_dates_and_json_numbers(header, expected, monkeypatch):
    monkeypatch.setattr("time.time", lambda: 1795600800.0)  # 2026-11-25 10:00:00 UTC
    assert retry_after_seconds(header) == expected
