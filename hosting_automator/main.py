"""The command: options, settings, logging, the lock, the run, the summary and the exit code."""

import argparse
import contextlib
import errno
import functools
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any, NoReturn

from hosting_automator import __version__, report
from hosting_automator.check import report_unusable_settings, run_checks
from hosting_automator.core.config import (MAX_WORKERS, REQUIRED_SETTINGS, Settings, env_file_readable_by_others,
                                          load_settings, whole_number)
from hosting_automator.core.lock import RunLock
from hosting_automator.core.logging_setup import RecentLines, configure_logging
from hosting_automator.masking import secret_values
from hosting_automator.core.retry import RetryPolicy
from hosting_automator.errors import ConfigurationError, HostingAutomatorError, RunInterrupted
from hosting_automator.run import Run, RunOptions
from hosting_automator.core.http import Session
from hosting_automator.services import Services, longest_run_seconds
from hosting_automator.services.healthcheck import Monitoring, ping

logger = logging.getLogger("hosting_automator")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
HELP_EPILOG = """\
settings:
  environment variables, or the .env file in the working directory (--env-file names another); the real
  environment wins. .env.example lists every one: cp .env.example .env, then fill it in.

exit codes:
  0  the run finished and no site failed (nothing to do, Matomo warnings, another run holding the lock)
  1  a site failed or could not be recorded, or the run stopped early (a signal, a service every site needs)
  2  a setting or an option is wrong
"""


class _Parser(argparse.ArgumentParser):
    """argparse ends the process on a usage error by itself (exit 2); a tool that asked for --json still gets its
    document first. Whether it asked is read from the raw arguments, since none were parsed."""

    def __init__(self, argv: Sequence[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.raw_arguments = list(argv)

    def error(self, message: str) -> NoReturn:
        if _named(self.raw_arguments, "--json", 3):
            _write_json(report.RunOutcomes(), message, EXIT_USAGE, _named(self.raw_arguments, "--dry-run", 4))
        super().error(message)


def _named(argv, option, shortest):
    """Whether `option` is among `argv`, as argparse would take it: whole, or cut to a prefix of at least
    `shortest` characters."""
    for token in argv:
        if token == "--":
            break
        name = token.split("=", 1)[0]
        if len(name) >= shortest and option.startswith(name):
            return True
    return False


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = _Parser(
        sys.argv[1:] if argv is None else argv,
        prog="hosting-automator",
        description="Turn sites whose DNS is ready into live CloudPanel sites on HTTPS with Matomo tracking.",
        epilog=HELP_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--dry-run", action="store_true", help="print what would be done; change nothing anywhere")
    parser.add_argument("--domain", action="append", default=[], metavar="D",
                        help="process only this domain (repeatable)")
    parser.add_argument("--limit", type=_positive_int, metavar="N", help="process at most N sites this run")
    parser.add_argument("--retry-failed", action="store_true", help="also take sites whose hosting failed")
    parser.add_argument("--check", action="store_true", help="check settings and reach every service, read-only")
    parser.add_argument("--env-file", metavar="PATH", help="read this file instead of ./.env")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="store_true", help="more console output")
    verbosity.add_argument("-q", "--quiet", action="store_true", help="print nothing when all is well")
    parser.add_argument("--json", action="store_true", help="write the run's outcome as JSON on stdout")
    parser.add_argument("--workers", type=_worker_count, metavar="N",
                        help=f"process up to N sites at once (1 to {MAX_WORKERS})")
    arguments = parser.parse_args(argv)
    if arguments.check:
        meaningless = [option for option, given in (
            ("--dry-run", arguments.dry_run), ("--domain", arguments.domain), ("--limit", arguments.limit),
            ("--retry-failed", arguments.retry_failed), ("--workers", arguments.workers)) if given]
        if meaningless:
            parser.error(f"--check looks at the settings and the services and processes no site: "
                         f"{', '.join(meaningless)} means nothing with it")
    return arguments


def _positive_int(text):
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return int(text)


def _worker_count(text):
    number = whole_number(text, 1, MAX_WORKERS)
    if number is None:
        shown = repr(text) if len(text) <= 40 else f"{text[:37]!r}… ({len(text)} characters)"
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {MAX_WORKERS}, got {shown}")
    return number


class _Ended(Exception):
    """The command ends before (or instead of) a run: its summary and exit code, reported where main ends.
    `reported`: --check has written its own lines already."""

    def __init__(self, summary: str, exit_code: int, reported: bool = False) -> None:
        super().__init__(summary)
        self.summary, self.exit_code, self.reported = summary, exit_code, reported


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    outcomes = report.RunOutcomes()
    try:
        settings = _settings(arguments)
        recent_lines = _logging(arguments, settings)
        if arguments.check:
            summary, exit_code = None, _check(settings, arguments)
        else:
            outcomes, summary, exit_code = run(settings, arguments, recent_lines)
    except _Ended as ended:
        summary, exit_code = None if ended.reported else ended.summary, ended.exit_code
    except Exception as err:  # a bug: say so in the log, still exit as cron expects
        logger.exception("The run stopped on an unexpected error")
        summary, exit_code = f"Run aborted: unexpected error {err.__class__.__name__}: {err}", EXIT_FAILED
    if summary is not None:  # None: --check wrote its own lines
        _report(arguments, outcomes, summary, exit_code)
    return exit_code


def _settings(arguments):
    """The settings, or the command ends with every problem named (on stderr; --check also gives its lines)."""
    try:
        settings = load_settings(arguments.env_file)
    except ConfigurationError as err:
        print(f"hosting-automator: {err}", file=sys.stderr)
        if any(problem.startswith(tuple(f"{name} is not set" for name in REQUIRED_SETTINGS)) for problem in err.problems):
            print("Settings come from the environment or from .env in the working directory (--env-file PATH names "
                  "another file): start from the example with cp .env.example .env, then fill it in.",
                  file=sys.stderr)
        if not arguments.check:
            raise _Ended(str(err), EXIT_USAGE) from err
        lines = []  # --check's promised PASS/FAIL lines all the same, on stdout
        report_unusable_settings(err, out=lines.append, as_json=arguments.json)
        _write_stdout("".join(f"{line}\n" for line in lines))
        raise _Ended(str(err), EXIT_USAGE, reported=True) from err
    for secret in settings.secrets:
        secret_values.add(secret)
    return settings


def _logging(arguments, settings):
    """Logging configured, once; the lines a monitoring ping carries. --check is read-only: it looks at whether
    the log file could be written, and creates none."""
    console_level = logging.DEBUG if arguments.verbose else logging.ERROR if arguments.quiet else logging.INFO
    try:
        recent_lines = configure_logging(None if arguments.check else settings.log_file, console_level)
    except OSError as err:
        summary = f"LOG_FILE {settings.log_file} cannot be written ({err.strerror})"
        print(f"hosting-automator: {summary}", file=sys.stderr)
        raise _Ended(summary, EXIT_USAGE) from err
    if settings.env_file and env_file_readable_by_others(settings.env_file):
        warning = f"{settings.env_file} holds secrets and other users can read it: chmod 600 {settings.env_file}"
        logger.warning("%s", warning)
        if arguments.quiet:  # -q hides what is well, and this is not
            print(f"hosting-automator: {warning}", file=sys.stderr)
    return recent_lines


def _check(settings, arguments):
    lines = []
    exit_code = run_checks(settings, out=lines.append, as_json=arguments.json)
    _write_stdout("".join(f"{line}\n" for line in lines))
    return exit_code


def run(settings: Settings, arguments: argparse.Namespace,
        recent_lines: RecentLines) -> tuple[report.RunOutcomes, str, int]:
    """The run under the lock: (outcomes, summary, exit code)."""
    dry_run = arguments.dry_run
    stop = threading.Event()
    _stop_on_signals(stop)
    lock = RunLock(settings.lock_file)
    if not dry_run:  # a dry run changes nothing, so it may look while a run works
        try:
            locked = lock.acquire()
        except OSError as err:
            summary = f"LOCK_FILE {settings.lock_file} cannot be opened ({err.strerror})"
            logger.error("%s", summary)
            raise _Ended(summary, EXIT_USAGE) from err
        if not locked:
            _locked_out(settings, lock, recent_lines)
    options = _run_options(settings, arguments)
    retry = RetryPolicy(sleep=functools.partial(_sleep_unless_stopped, stop))
    with lock:
        try:
            services = Services(settings, retry, options.workers, lock.fileno())
        except HostingAutomatorError as err:  # a client refused its settings, a CA bundle or a proxy variable
            logger.error("Run aborted: %s", err)
            raise _Ended(f"Run aborted: {err}", EXIT_USAGE) from err
        try:
            with Monitoring(services.http, settings.healthcheck_url, recent_lines, dry_run) as monitoring:
                logger.info("Run started%s", " (dry run: nothing will be changed)" if dry_run else "")
                this_run = Run(services, options, stop)
                outcomes = this_run.run()
                exit_code, summary = _finish(arguments, retry, this_run.aborted, outcomes, stop.is_set())
                monitoring.finish(summary, exit_code == EXIT_OK)
        finally:
            services.close()
    return outcomes, summary, exit_code


def _run_options(settings, arguments):
    limits = [n for n in (arguments.limit, settings.max_sites_per_run or None) if n]
    backfill = min(settings.matomo_backfill_per_run, arguments.limit or settings.matomo_backfill_per_run)
    return RunOptions(dry_run=arguments.dry_run, domains=tuple(arguments.domain),
                      limit=min(limits) if limits else None, retry_failed=arguments.retry_failed,
                      workers=arguments.workers or settings.workers, matomo_backfill=backfill,
                      max_run_seconds=settings.max_run_minutes * 60)


def _locked_out(settings, lock, recent_lines):
    """Another run holds the lock. Usual while it works (exit 0); but held longer than a run can take, that run
    is stuck, and every run after it would do nothing without a word: said loudly, exit 1, a /fail ping."""
    held = lock.held_for()
    longest = longest_run_seconds(settings)
    if held is None or held <= longest:
        summary = f"Another run is in progress ({settings.lock_file} is locked); this one does nothing"
        logger.info("%s", summary)
        raise _Ended(summary, EXIT_OK)
    holder = lock.holder()
    who = f"process {holder}" if holder else f"the process `fuser {settings.lock_file}` names"
    summary = (f"Another run has held {settings.lock_file} for {held / 60:.0f} minutes, longer than a run can take "
               f"({longest / 60:.0f} minutes: MAX_RUN_MINUTES and the longest a site's steps may take); it is stuck: "
               f"see what {who} does (and the log file), and stop it; no run does anything until then")
    logger.error("%s", summary)
    with Session(settings.http_timeout) as http:
        ping(http, settings.healthcheck_url, "fail", summary + "\n\n" + "\n".join(recent_lines.lines))
    raise _Ended(summary, EXIT_FAILED)


def _finish(arguments, retry, aborted, outcomes, interrupted):
    """The run's exit code and summary line, logged."""
    exit_code = EXIT_FAILED if outcomes.any_failure or aborted or interrupted else EXIT_OK
    summary = report.summary_line(outcomes, aborted, interrupted, arguments.dry_run, tuple(arguments.domain))
    if retry.retries:
        logger.info("Transient failures retried: %d", retry.retries)
    logger.log(logging.INFO if exit_code == EXIT_OK else logging.ERROR, "%s", summary)
    return exit_code, summary


def _report(arguments, outcomes, summary, exit_code):
    """What the run did, on stdout: JSON with --json (always a document, even when nothing ran), else the table
    (failures only with -q). stdout does not pass through the logging filters: masked here. A stdout that cannot
    be written (a closed pipe, a full disk) changes nothing of the run: the log says so, the exit code stays."""
    if arguments.json:
        _write_json(outcomes, summary, exit_code, arguments.dry_run)
    else:
        _write_stdout("".join(secret_values.mask(line) + "\n"
                              for line in report.table_lines(outcomes, failures_only=arguments.quiet)))


def _write_stdout(text):
    """The report on stdout. One that cannot be written (closed, a full disk, a reader gone) changes nothing of
    the run or its exit code: the log says so."""
    try:
        if sys.stdout is None:  # started with stdout closed
            raise OSError(errno.EBADF, "stdout is closed")
        sys.stdout.write(text)
        sys.stdout.flush()
    except OSError as err:
        logger.error("The report could not be written to stdout (%s); the rows and this log say what the run did",
                     err.strerror or err.__class__.__name__)
        if sys.stdout is not None:  # what stays buffered would fail again as Python flushes stdout on its way out
            with contextlib.suppress(OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _write_json(outcomes, summary, exit_code, dry_run):
    _write_stdout(secret_values.mask(report.json_document(outcomes, summary, exit_code, dry_run)))


def _sleep_unless_stopped(stop, seconds):
    """The retry back-off: a signal ends the wait, and the site, at once."""
    if stop.wait(seconds):
        raise RunInterrupted()


def _stop_on_signals(stop):
    def on_signal(signum, _frame):
        if not stop.is_set():
            logger.warning("Received %s: starting no new site; the site in progress stops after its current step",
                           signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # an ssh session that closes during a manual run: end as on SIGTERM, with the summary and the pings; under
    # nohup, which ignores it, it stays ignored
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        signal.signal(signal.SIGHUP, on_signal)


def console_script() -> NoReturn:
    sys.exit(main())


if __name__ == "__main__":
    sys.exit(main())
