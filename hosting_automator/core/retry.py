"""The one retry policy: bounded attempts, jittered back-off, a time budget per call, Retry-After up to a cap."""

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from hosting_automator.errors import ServiceError

logger = logging.getLogger(__name__)

ATTEMPTS = 4
BASE_DELAY = 1.0
MAX_DELAY = 20.0
RETRY_AFTER_CAP = 60.0
BUDGET = 120.0  # seconds per call, attempts and waits together

_T = TypeVar("_T")


@dataclass(eq=False)
class RetryPolicy:
    """Runs an operation again while it fails transiently.

    An operation that creates something must look up first whether an earlier attempt already took effect:
    pass the whole "look up, then create" as the operation, so every attempt looks again.
    `sleep` and `clock` are injected so tests never wait; main passes a sleep that wakes up on SIGTERM.
    """

    attempts: int = ATTEMPTS
    base_delay: float = BASE_DELAY
    max_delay: float = MAX_DELAY
    budget: float = BUDGET
    retry_after_cap: float = RETRY_AFTER_CAP
    sleep: Callable[[float], object] = time.sleep
    clock: Callable[[], float] = time.monotonic
    jitter: Callable[[], float] = random.random
    retries: int = field(default=0, init=False)  # how many times any call was tried again, for the run's figures
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _paused: dict = field(default_factory=dict, init=False, repr=False)  # service -> the error its calls fail with

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        backoff = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        delay = backoff / 2 + self.jitter() * backoff / 2
        if retry_after is not None:
            delay = max(delay, min(float(retry_after), self.retry_after_cap))
        return delay

    def call(self, operation: Callable[[], _T], what: str, service: str | None = None,
             error: type[ServiceError] | None = None) -> _T:
        """Return operation(); try again on a transient ServiceError while attempts and budget last.

        `service` names whom the operation asks (default: `what`). A service that asks for a wait longer than
        retry_after_cap is not asked again this run: its later calls fail at once, transient, with the class
        `error` the caller handles (default: that of the error that paused the service; a certificate call and a
        site call of one service raise different classes), so their rows stay as they are for the next run, and
        the rest of the run goes on. Any other error of the operation is let out at once, untouched.

        Raises:
            ServiceError: the operation's own, when it is final, may have acted, or is still transient after the
                last attempt, past the budget, or asking for a wait longer than retry_after_cap; or, of the same
                class and transient, at once when that service was paused earlier in this run.
            RunInterrupted: when the injected `sleep` raises it during a back-off (main's does on SIGTERM or
                SIGINT).
        """
        service = service or what
        paused = self._paused.get(service)
        if paused is not None:
            raise (error or paused.__class__)(f"{what}: not asked: {paused}", transient=True)
        started = self.clock()
        attempt = 1
        while True:
            try:
                return operation()
            except ServiceError as err:
                delay = self._wait_before_trying_again(err, attempt, started, service)
                if delay is None:
                    raise
                logger.warning("%s failed (%s); trying again in %.1f s (attempt %d of %d)",
                               what, err, delay, attempt + 1, self.attempts)
                with self._lock:
                    self.retries += 1
                self.sleep(delay)
                attempt += 1

    def _wait_before_trying_again(self, err, attempt, started, service):
        """Seconds to wait before the failed operation is tried again, or None when it is not."""
        if not err.transient or err.may_have_acted or attempt >= self.attempts:
            return None
        if err.retry_after is not None and err.retry_after > self.retry_after_cap:
            self._pause(service, err)
            return None
        delay = self.delay(attempt, err.retry_after)
        return None if self.clock() - started + delay > self.budget else delay

    def _pause(self, service, err):
        with self._lock:
            if service in self._paused:
                return
            self._paused[service] = err.__class__(
                f"{service} asked this run to wait {err.retry_after:.0f} s, longer than the {self.retry_after_cap:.0f} "
                "s it waits")
        logger.warning("%s asked to wait %.0f s (%s), longer than the %.0f s a run waits: it is not asked again "
                       "this run, and the rows that need it stay as they are for the next run", service,
                       err.retry_after, err, self.retry_after_cap)
