"""Logging set up once by main: console and a size-bounded file, each line with its site, secrets masked."""

import collections
import contextlib
import contextvars
import logging
import logging.handlers
import os
import sys
import threading
from collections.abc import Iterator
from typing import TextIO

from hosting_automator.masking import SecretValues, secret_values

LOG_FORMAT = "%(asctime)s %(levelname)s %(site_prefix)s%(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
LOG_FILE_MAX_BYTES = 5 * 1024 * 1024
LOG_FILE_BACKUPS = 4  # with the current file, at most 25 MB on disk
RECENT_LINES = 50  # what the monitoring ping carries

_current_site = contextvars.ContextVar("current_site", default=None)


class MaskSecretsFilter(logging.Filter):
    """Masks every secret in the finished message and traceback, before any handler formats the record."""

    def __init__(self, secrets: SecretValues = secret_values) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "secrets_masked", False):  # every handler has this filter: mask once per record
            return True
        record.secrets_masked = True
        message = self.secrets.mask(record.getMessage())
        record.msg, record.args = message, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.secrets.mask(record.exc_text)
        return True


class SitePrefixFilter(logging.Filter):
    """Adds `[domain] ` to every line written inside a site's work."""

    def filter(self, record: logging.LogRecord) -> bool:
        site = _current_site.get()
        record.site_prefix = f"[{site}] " if site else ""
        return True


@contextlib.contextmanager
def site_context(domain: str | None) -> Iterator[None]:
    """Every line logged inside (in this thread) carries `domain`."""
    token = _current_site.set(domain)
    try:
        yield
    finally:
        _current_site.reset(token)


class RecentLines(logging.Handler):
    """Keeps the last formatted lines of the run, for the monitoring ping."""

    def __init__(self, capacity: int = RECENT_LINES) -> None:
        super().__init__(logging.INFO)
        self.lines = collections.deque(maxlen=capacity)

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


class LogFileHandler(logging.handlers.RotatingFileHandler):
    """The bounded log file. When it cannot be written (a full disk, a device that refuses writes, a directory
    gone), one message on stderr says so and the file is given up for the rest of the run: the run's work matters
    more than its log, and the console still gets every line. logging's own default would print a
    "--- Logging error ---" block with a traceback for every line."""

    def __init__(self, log_file: str, notice_stream: TextIO | None = None) -> None:
        # made readable by its owner only: it names domains and site users
        os.close(os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
        super().__init__(log_file, maxBytes=LOG_FILE_MAX_BYTES, backupCount=LOG_FILE_BACKUPS, encoding="utf-8")
        self.log_file = log_file  # as the operator wrote it, for the message
        self.notice_stream = notice_stream
        self.given_up = False

    def doRollover(self) -> None:  # noqa: N802 - logging's name
        super().doRollover()
        os.chmod(self.baseFilename, 0o600)  # the new file, as the first

    def emit(self, record: logging.LogRecord) -> None:
        if not self.given_up:  # FileHandler.emit would open the file again
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):  # a faulty log call, not the file: logging's usual report
            super().handleError(record)
            return
        if self.given_up:
            return
        self.given_up = True
        stream, self.stream = self.stream, None
        if stream is not None:
            try:
                stream.close()  # flushes what failed once more, then closes the file all the same
            except OSError:
                pass
        notice = self.notice_stream or sys.stderr
        notice.write(f"hosting-automator: LOG_FILE {self.log_file} cannot be written "
                     f"({error.strerror or error}); log lines go to the console only from now on\n")
        notice.flush()


def configure_logging(log_file: str | None, console_level: int = logging.INFO, file_level: int = logging.INFO,
                      console_stream: TextIO | None = None) -> RecentLines:
    """Attach the console, file and recent-lines handlers to the root logger; return the recent-lines handler.
    With `log_file` None there is no file handler (--check, which writes no file).

    Raises:
        OSError: when the log file cannot be opened.
    """
    formatter = logging.Formatter(LOG_FORMAT, DATE_FORMAT)
    handlers = []
    if log_file is not None:
        file_handler = LogFileHandler(log_file, console_stream)
        file_handler.setLevel(file_level)
        handlers.append(file_handler)
    console_handler = logging.StreamHandler(console_stream or sys.stderr)
    console_handler.setLevel(console_level)
    recent = RecentLines()
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    for handler in (console_handler, *handlers, recent):
        handler.setFormatter(formatter)
        handler.addFilter(SitePrefixFilter())
        handler.addFilter(MaskSecretsFilter())
        root.addHandler(handler)
    root.setLevel(min(console_level, file_level, logging.INFO))
    for library in ("httpx", "httpcore", "urllib3", "hpack"):  # their request lines would repeat the clients' own
        logging.getLogger(library).setLevel(logging.WARNING)
    logging.captureWarnings(True)
    return recent
