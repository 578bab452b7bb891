"""The one place that makes retries fast in the tests.

In the test's own process: `RecordedSleeps` is a sleep that records every wait and never waits, and
`fast_retry_policy(sleeps, **overrides)` the real RetryPolicy with it injected and the jitter fixed at its midpoint
(the `sleeps` and `retry` fixtures of tests/conftest.py; a test that needs other attempts or another budget passes
them as overrides).

For the command as a subprocess: `python -m tests.support.retries [options]`, or this file run by its path with the
job on PYTHONPATH, runs the real command with every retry wait cut 100-fold. tests/support/harness.py's
`start_job(..., fast_retries=True)` runs it by its path: with HOSTING_AUTOMATOR_JOB_PATH naming another checkout,
that checkout's own `tests` package comes first on PYTHONPATH and would hide this one's."""

import sys
from pathlib import Path

from hosting_automator.core.retry import RetryPolicy

SCRIPT = str(Path(__file__).resolve())  # what start_job runs instead of `-m hosting_automator.main`
CUT = 100  # the command's waits are this many times shorter


class RecordedSleeps(list):
    """An injected sleep: remembers every wait, never waits."""

    def __call__(self, seconds):
        self.append(seconds)

    def clock(self):
        """A clock that moves only by the waits recorded: what a policy with a budget sees."""
        return sum(self)


def fast_retry_policy(sleeps, **overrides):
    """The real retry policy, waiting through `sleeps` and with the jitter at its midpoint, unless overridden."""
    return RetryPolicy(**{"jitter": lambda: 0.5, **overrides, "sleep": sleeps})


def _main():
    from hosting_automator import main as command

    real_sleep = command._sleep_unless_stopped

    def short_sleep(stop, seconds):
        real_sleep(stop, seconds / CUT)

    command._sleep_unless_stopped = short_sleep
    return command.main()


if __name__ == "__main__":
    if sys.path and sys.path[0] == str(Path(SCRIPT).parent):
        del sys.path[0]  # run by its path: the helpers beside it are no top-level modules of the job's
    sys.exit(_main())
