"""Settings from the environment and a .env file, checked all at once so one message names every problem."""

import io
import logging
import os
import re
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from dotenv import dotenv_values

from hosting_automator.errors import ConfigurationError

DEFAULT_HTTP_TIMEOUT = 30.0
DEFAULT_CLOUDPANEL_DB_PATH = "/home/clp/htdocs/app/data/db.sq3"
DEFAULT_HTTPS_ADDRESS = "127.0.0.1:443"
# Let's Encrypt allows 300 new orders per account per 3 hours. A run every 15 minutes is 12 runs in 3 hours;
# 20 sites a run is at most 240 orders, leaving room for retried and manual orders.
DEFAULT_MAX_SITES_PER_RUN = 20

_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
# The name of a .env line's variable, shown only when the line plainly starts with one; never anything after "=".
_ENV_LINE_NAME = re.compile(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=")
_LINE_NUMBER = re.compile(r"\bline (\d+)")


@dataclass(frozen=True)
class Settings:
    supabase_url: str
    supabase_service_key: str = field(repr=False)
    matomo_api_url: str
    matomo_api_token: str = field(repr=False)
    cloudpanel_api_url: str | None = None
    cloudpanel_api_token: str | None = field(default=None, repr=False)
    cloudpanel_clpctl: str = "clpctl"
    cloudpanel_db_path: str = DEFAULT_CLOUDPANEL_DB_PATH
    sites_table: str = "sites"
    log_file: str = "hosting_automator.log"
    lock_file: str = ""
    http_timeout: float = DEFAULT_HTTP_TIMEOUT
    matomo_site_timezone: str | None = None
    matomo_site_currency: str | None = None
    healthcheck_url: str | None = None
    cloudpanel_https_host: str = "127.0.0.1"
    cloudpanel_https_port: int = 443
    max_sites_per_run: int = DEFAULT_MAX_SITES_PER_RUN
    workers: int = 1
    cloudpanel_concurrency: int = 1
    env_file: str | None = None  # the .env file that was read, if any

    @property
    def secrets(self):
        """Every configured value that must never be shown: the keys and tokens, and a password written into a URL."""
        urls = (self.supabase_url, self.matomo_api_url, self.cloudpanel_api_url, self.healthcheck_url)
        passwords = [urlsplit(url).password for url in urls if url]
        return [value for value in (self.supabase_service_key, self.matomo_api_token, self.cloudpanel_api_token,
                                    *passwords) if value]

    @property
    def uses_gateway(self):
        return self.cloudpanel_api_url is not None


def default_lock_file():
    """/run/lock when we may write there (root on a server), else the temporary directory."""
    run_lock = Path("/run/lock")
    if run_lock.is_dir() and os.access(run_lock, os.W_OK):
        return str(run_lock / "hosting-automator.lock")
    return str(Path(tempfile.gettempdir()) / f"hosting-automator-{os.getuid()}.lock")


def load_settings(env_file=None, environ=None):
    """Read settings: `env_file` (or ./.env when present) first, the real environment winning over it."""
    environ = os.environ if environ is None else environ
    problems = []
    values = {}
    used_env_file = None
    if env_file is not None:
        if os.path.exists(env_file):
            used_env_file = str(env_file)
        else:
            problems.append(f"--env-file {env_file}: no such file")
    elif os.path.exists(".env"):
        used_env_file = ".env"
    if used_env_file:
        values.update(_read_env_file(used_env_file, problems))
    values.update({key: value for key, value in environ.items() if value != ""})
    reader = _Reader(values, problems)

    supabase_url = reader.url("SUPABASE_URL", required=True)
    if supabase_url and "/rest/v1" in urlsplit(supabase_url).path:
        problems.append(f"SUPABASE_URL must be the project's URL (like https://abcd.supabase.co), without the "
                        f"/rest/v1 of its API, got {supabase_url!r}")
    supabase_key = reader.text("SUPABASE_SERVICE_KEY", required=True)
    matomo_url = reader.url("MATOMO_API_URL", required=True)
    matomo_token = reader.text("MATOMO_API_TOKEN", required=True)
    gateway_url = reader.url("CLOUDPANEL_API_URL")
    gateway_token = reader.text("CLOUDPANEL_API_TOKEN")
    if bool(values.get("CLOUDPANEL_API_URL")) != bool(gateway_token):
        problems.append(
            "CLOUDPANEL_API_URL and CLOUDPANEL_API_TOKEN must be set together "
            "(both to use a clpctl HTTP gateway, neither to run clpctl on this server)"
        )
    table = reader.text("SITES_TABLE") or "sites"
    if not _TABLE_NAME.match(table):
        problems.append(f"SITES_TABLE must be a plain table name (letters, digits, _), got {table!r}")
    currency = reader.text("MATOMO_SITE_CURRENCY")
    if currency and not _CURRENCY.match(currency):
        problems.append(f"MATOMO_SITE_CURRENCY must be a three-letter ISO 4217 code like EUR, got {currency!r}")
    https_host, https_port = reader.address("CLOUDPANEL_HTTPS_ADDRESS", DEFAULT_HTTPS_ADDRESS)

    settings = dict(
        supabase_url=(supabase_url or "").rstrip("/"),
        supabase_service_key=supabase_key or "",
        matomo_api_url=matomo_api_endpoint(matomo_url) if matomo_url else "",
        matomo_api_token=matomo_token or "",
        cloudpanel_api_url=gateway_url.rstrip("/") if gateway_url else None,
        cloudpanel_api_token=gateway_token,
        cloudpanel_clpctl=reader.text("CLOUDPANEL_CLPCTL") or "clpctl",
        cloudpanel_db_path=reader.text("CLOUDPANEL_DB_PATH") or DEFAULT_CLOUDPANEL_DB_PATH,
        sites_table=table,
        log_file=reader.text("LOG_FILE") or "hosting_automator.log",
        lock_file=reader.text("LOCK_FILE") or default_lock_file(),
        http_timeout=reader.number("HTTP_TIMEOUT", DEFAULT_HTTP_TIMEOUT),
        matomo_site_timezone=reader.text("MATOMO_SITE_TIMEZONE"),
        matomo_site_currency=currency,
        healthcheck_url=(reader.url("HEALTHCHECK_URL") or "").rstrip("/") or None,
        cloudpanel_https_host=https_host,
        cloudpanel_https_port=https_port,
        max_sites_per_run=reader.integer("MAX_SITES_PER_RUN", DEFAULT_MAX_SITES_PER_RUN, minimum=0),
        workers=reader.integer("WORKERS", 1, minimum=1),
        cloudpanel_concurrency=reader.integer("CLOUDPANEL_CONCURRENCY", 1, minimum=1),
        env_file=used_env_file,
    )
    if problems:
        raise ConfigurationError(problems)
    return Settings(**settings)


def _read_env_file(path, problems):
    """The file's settings. A file that cannot be read, or a line python-dotenv cannot parse, is a problem in the
    one configuration message rather than a traceback or a setting silently dropped; no problem ever quotes a
    value, since a value may be a key."""
    try:
        with open(path, encoding="utf-8") as stream:
            text = stream.read()
    except UnicodeDecodeError:
        problems.append(f"{path} cannot be read: it is not UTF-8 text")
        return {}
    except OSError as err:
        problems.append(f"{path} cannot be read: {err.strerror or err}")
        return {}
    dotenv_logger = logging.getLogger("dotenv.main")
    unparsed = _Collect()
    saved_level, saved_propagate = dotenv_logger.level, dotenv_logger.propagate
    dotenv_logger.addHandler(unparsed)
    dotenv_logger.setLevel(logging.WARNING)
    dotenv_logger.propagate = False  # its warnings become problems below, not console lines
    try:
        values = dotenv_values(stream=io.StringIO(text))
    finally:
        dotenv_logger.removeHandler(unparsed)
        dotenv_logger.setLevel(saved_level)
        dotenv_logger.propagate = saved_propagate
    lines = text.split("\n")
    for message in unparsed.messages:
        found = _LINE_NUMBER.search(message)
        if not found:
            problems.append(f"{path}: {message}")
            continue
        number = int(found[1])
        name = _ENV_LINE_NAME.match(lines[number - 1]) if number <= len(lines) else None
        problems.append(f"{path} line {number} cannot be read" + (f" (variable {name[1]})" if name else ""))
    return {key: value for key, value in values.items() if value is not None}


class _Collect(logging.Handler):
    """Holds python-dotenv's warnings, which are the only word it gives of a line it skipped."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def matomo_api_endpoint(url):
    """Matomo's API lives at index.php; operators paste the base URL with or without it."""
    url = url.rstrip("/")
    return url if url.endswith("index.php") else url + "/index.php"


def env_file_readable_by_others(path):
    """True when the .env holding the keys can be read by users other than its owner."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return bool(mode & (stat.S_IRGRP | stat.S_IROTH))


class _Reader:
    """Reads one setting at a time, noting every problem instead of stopping at the first."""

    def __init__(self, values, problems):
        self.values = values
        self.problems = problems

    def text(self, name, required=False):
        value = (self.values.get(name) or "").strip()
        if not value:
            if required:
                self.problems.append(f"{name} is not set")
            return None
        return value

    def url(self, name, required=False):
        value = self.text(name, required)
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            self.problems.append(f"{name} must be an http:// or https:// URL, got {value!r}")
            return None
        return value

    def number(self, name, default):
        value = self.text(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            number = None
        if number is None or not number > 0 or number == float("inf"):
            self.problems.append(f"{name} must be a positive number of seconds (e.g. 30 or 0.5), got {value!r}")
            return default
        return number

    def integer(self, name, default, minimum):
        value = self.text(name)
        if value is None:
            return default
        if not (value.isascii() and value.isdigit()) or int(value) < minimum:
            self.problems.append(f"{name} must be a whole number of at least {minimum}, got {value!r}")
            return default
        return int(value)

    def address(self, name, default):
        value = self.text(name) or default
        host, _, port = value.rpartition(":")
        host = host.strip("[]")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            self.problems.append(f"{name} must be host:port, like 127.0.0.1:443, got {value!r}")
            return "127.0.0.1", 443
        return host, int(port)
