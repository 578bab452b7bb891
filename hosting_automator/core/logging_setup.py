"""Logging set up once by main: console and a size-bounded file, each line with its site, secrets masked."""

import collections
import contextlib
import contextvars
import logging
import logging.handlers
import sys
import threading
from urllib.parse import quote, quote_plus

LOG_FORMAT = "%(asctime)s %(levelname)s %(site_prefix)s%(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
LOG_FILE_MAX_BYTES = 5 * 1024 * 1024
LOG_FILE_BACKUPS = 4  # with the current file, at most 25 MB on disk
RECENT_LINES = 50  # what the monitoring ping carries
MASK = "***"

_current_site = contextvars.ContextVar("current_site", default=None)


class SecretValues:
    """Every value that must never be shown: configured keys and tokens, and passwords generated during the run."""

    def __init__(self):
        self._lock = threading.Lock()
        self._variants = ()

    def add(self, value):
        if not value or len(value) < 4:  # masking very short strings would garble ordinary text
            return
        with self._lock:
            variants = set(self._variants) | {value, quote(value, safe=""), quote_plus(value)}
            self._variants = tuple(sorted(variants, key=len, reverse=True))

    def discard(self, value):
        """Forget a value that can no longer appear anywhere (a password once clpctl has answered): masking cost
        must not grow with every site of a long run."""
        with self._lock:
            gone = {value, quote(value, safe=""), quote_plus(value)}
            self._variants = tuple(variant for variant in self._variants if variant not in gone)

    def clear(self):
        with self._lock:
            self._variants = ()

    def mask(self, text):
        if not isinstance(text, str):
            return text
        for variant in self._variants:
            if variant in text:
                text = text.replace(variant, MASK)
        return text


secret_values = SecretValues()


class MaskSecretsFilter(logging.Filter):
    """Masks every secret in the finished message and traceback, before any handler formats the record."""

    def __init__(self, secrets=secret_values):
        super().__init__()
        self.secrets = secrets

    def filter(self, record):
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

    def filter(self, record):
        site = _current_site.get()
        record.site_prefix = f"[{site}] " if site else ""
        return True


@contextlib.contextmanager
def site_context(domain):
    """Every line logged inside (in this thread) carries `domain`."""
    token = _current_site.set(domain)
    try:
        yield
    finally:
        _current_site.reset(token)


class RecentLines(logging.Handler):
    """Keeps the last formatted lines of the run, for the monitoring ping."""

    def __init__(self, capacity=RECENT_LINES):
        super().__init__(logging.INFO)
        self.lines = collections.deque(maxlen=capacity)

    def emit(self, record):
        self.lines.append(self.format(record))


def configure_logging(log_file, console_level=logging.INFO, file_level=logging.INFO, console_stream=None):
    """Attach the console, file and recent-lines handlers to the root logger; return the recent-lines handler.

    Raises OSError when the log file cannot be opened.
    """
    formatter = logging.Formatter(LOG_FORMAT, DATE_FORMAT)
    file_handler = logging.handlers.RotatingFileHandler(
        log_file, maxBytes=LOG_FILE_MAX_BYTES, backupCount=LOG_FILE_BACKUPS, encoding="utf-8"
    )
    file_handler.setLevel(file_level)
    console_handler = logging.StreamHandler(console_stream or sys.stderr)
    console_handler.setLevel(console_level)
    recent = RecentLines()
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    for handler in (console_handler, file_handler, recent):
        handler.setFormatter(formatter)
        handler.addFilter(SitePrefixFilter())
        handler.addFilter(MaskSecretsFilter())
        root.addHandler(handler)
    root.setLevel(min(console_level, file_level, logging.INFO))
    for library in ("httpx", "httpcore", "urllib3", "hpack"):  # their request lines would repeat the clients' own
        logging.getLogger(library).setLevel(logging.WARNING)
    logging.captureWarnings(True)
    return recent
