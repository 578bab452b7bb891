"""The real command with every retry wait cut 100-fold: fault tests inject the sleep instead of sleeping
through real back-offs. Run as `python -m tests.fast_retries [options]`."""

import sys

from hosting_automator import main as command

_real_sleep = command._sleep_unless_stopped


def _short_sleep(stop, seconds):
    _real_sleep(stop, seconds / 100)


command._sleep_unless_stopped = _short_sleep

if __name__ == "__main__":
    sys.exit(command.main())
