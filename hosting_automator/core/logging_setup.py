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
from typing import TextIO, TypeVar
from urllib.parse import quote, quote_plus

LOG_FORMAT = "%(asctime)s %(levelname)s %(site_prefix)s%(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
LOG_FILE_MAX_BYTES = 5 * 1024 * 1024
LOG_FILE_BACKUPS = 4  # with the current file, at most 25 MB on disk
RECENT_LINES = 50  # what the monitoring ping carries
MASK = "***"
PIECE = 8  # characters in a row of a secret that count as the secret
# Passwords a run keeps masked: every one of any run of up to this many sites (a run takes 20 by default), the
# latest ones of a longer run, so that masking costs the same at the 10,000th site as at the first.
GENERATED_KEPT = 1000

_current_site = contextvars.ContextVar("current_site", default=None)
_T = TypeVar("_T")


class SecretValues:
    """Every value that must never be shown: configured keys and tokens, and the passwords the run generated
    (see `add_generated`), for the whole run.

    Any PIECE characters in a row of a value count as the value itself, so a secret that a service echoed cut
    short, or that an excerpt cut in half, is masked too."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held = collections.Counter()  # variant -> how many secrets hold it
        self._pieces = collections.Counter()  # every PIECE characters in a row of a variant
        self._variants = ()  # longest first, so a secret is masked whole before any shorter one inside it
        self._generated = collections.deque()

    @staticmethod
    def _forms(value):
        return {value, quote(value, safe=""), quote_plus(value)}

    def add(self, value: str | None) -> None:
        if not value or len(value) < 4:  # masking very short strings would garble ordinary text
            return
        with self._lock:
            for variant in self._forms(value):
                self._held[variant] += 1
                self._pieces.update({variant[start:start + PIECE] for start in range(len(variant) - PIECE + 1)})
            self._variants = tuple(sorted(self._held, key=len, reverse=True))

    def discard(self, value: str) -> None:
        with self._lock:
            for variant in self._forms(value):
                if not self._held[variant]:
                    continue
                _release(self._held, [variant])
                _release(self._pieces, {variant[start:start + PIECE] for start in range(len(variant) - PIECE + 1)})
            self._variants = tuple(sorted(self._held, key=len, reverse=True))

    def add_generated(self, value: str) -> None:
        """A password this run made: masked for the rest of the run, like the keys, but only the latest
        GENERATED_KEPT of them, so that a run of ten thousand sites neither grows nor slows its masking."""
        self.add(value)
        with self._lock:
            self._generated.append(value)
            evicted = self._generated.popleft() if len(self._generated) > GENERATED_KEPT else None
        if evicted is not None:
            self.discard(evicted)

    def clear(self) -> None:
        with self._lock:
            self._held.clear()
            self._pieces.clear()
            self._variants = ()
            self._generated.clear()

    @property
    def longest(self) -> int:
        return len(self._variants[0]) if self._variants else 0

    def mask(self, text: _T) -> _T:
        """`text` with every secret, and every piece of one, replaced by ***; anything but a string as it is."""
        if not isinstance(text, str) or not self._variants:
            return text
        for variant in self._variants:
            if variant in text:
                text = text.replace(variant, MASK)
        pieces = self._pieces
        hidden = [False] * len(text)
        for start in range(len(text) - PIECE + 1):
            if text[start:start + PIECE] in pieces:
                hidden[start:start + PIECE] = [True] * PIECE
        if not any(hidden):
            return text
        shown, previous = [], False
        for character, secret in zip(text, hidden):
            if not secret:
                shown.append(character)
            elif not previous:
                shown.append(MASK)
            previous = secret
        return "".join(shown)

    def excerpt(self, text: str, limit: int) -> str:
        """At most `limit` characters of `text` on one line, masked before they are cut (a secret cut in half would
        no longer be recognised); "…" marks the cut."""
        text = " ".join(self.mask(text[:limit + self.longest + PIECE]).split())
        return text if len(text) <= limit else text[:limit - 1] + "…"


def _release(counts, keys):
    """One holder less for each key; a key no secret holds any more is dropped."""
    for key in keys:
        counts[key] -= 1
        if counts[key] <= 0:
            del counts[key]


secret_values = SecretValues()


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
