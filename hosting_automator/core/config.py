"""Settings from the environment and a .env file, checked all at once so one message names every problem."""

import base64
import hmac
import io
import ipaddress
import json
import logging
import os
import re
import socket
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import idna
from dotenv import dotenv_values

from hosting_automator.errors import ConfigurationError

DEFAULT_HTTP_TIMEOUT = 30.0
DEFAULT_CLOUDPANEL_DB_PATH = "/home/clp/htdocs/app/data/db.sq3"
DEFAULT_HTTPS_ADDRESS = "127.0.0.1:443"
# Let's Encrypt allows 300 new orders per account per 3 hours. A run every 15 minutes is 12 runs in 3 hours;
# 20 sites a run is at most 240 orders, leaving room for retried and manual orders.
DEFAULT_MAX_SITES_PER_RUN = 20
DEFAULT_MAX_RUN_MINUTES = 60  # no site starts later than this into a run; the next run takes the rest
DEFAULT_MATOMO_BACKFILL_PER_RUN = 20  # live sites given their missing Matomo site per run; 0 turns it off
# Ranges that work. A run takes 20 sites by default and every site waits on clpctl, so no more than 64 workers or
# CloudPanel calls at once can help; a larger count only costs threads and connections (10^12 of them hung the run).
MAX_WORKERS = 64
MAX_CLOUDPANEL_CONCURRENCY = 64
# No service needs 10 minutes to answer a request; a huge value (1e10) overflows the socket's own timeout.
MAX_HTTP_TIMEOUT = 600
MAX_SITES_PER_RUN_LIMIT = 10000
MAX_HOST_NAME_LENGTH = 253  # RFC 1035: 255 octets on the wire, less the length byte and the root label
MAX_HOST_LABEL_LENGTH = 63

_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
# A server's name goes into PostgREST filters (`or=(hosting_server.eq.NAME,…)`): a comma, parenthesis, quote or
# space would change the filter, so only these characters are taken.
_SERVER_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,62})$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_HEADER_VALUE = re.compile(r"^[\x21-\x7e]+$")
# The name of a .env line's variable, shown only when the line plainly starts with one; never anything after "=".
_ENV_LINE_NAME = re.compile(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=")
_LINE_NUMBER = re.compile(r"\bline (\d+)")
# An ASCII host label as resolvers take it: underscores included, since internal names (a Docker service such as
# supabase_kong) carry them although IDNA 2008 does not allow them.
_ASCII_HOST_LABEL = re.compile(r"^[A-Za-z0-9_-]+$")


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
    max_run_minutes: int = DEFAULT_MAX_RUN_MINUTES
    workers: int = 1
    cloudpanel_concurrency: int = 1
    matomo_backfill_per_run: int = DEFAULT_MATOMO_BACKFILL_PER_RUN
    server_name: str = "localhost"
    server_addresses: tuple = ()  # ipaddress objects; empty: DNS is not asked where a site lives
    dns_resolvers: tuple = ()  # (address, port) pairs; empty: the system's resolvers
    env_file: str | None = None  # the .env file that was read, if any

    @property
    def secrets(self) -> list[str]:
        """Every configured value that must never be shown: the keys and tokens, and a password written into a URL."""
        urls = (self.supabase_url, self.matomo_api_url, self.cloudpanel_api_url, self.healthcheck_url)
        passwords = [urlsplit(url).password for url in urls if url]
        return [value for value in (self.supabase_service_key, self.matomo_api_token, self.cloudpanel_api_token,
                                    *passwords) if value]

    @property
    def uses_gateway(self) -> bool:
        return self.cloudpanel_api_url is not None


def default_lock_file() -> str:
    """/run/lock when we may write there (root on a server), else the temporary directory."""
    run_lock = Path("/run/lock")
    if run_lock.is_dir() and os.access(run_lock, os.W_OK):
        return str(run_lock / "hosting-automator.lock")
    return str(Path(tempfile.gettempdir()) / f"hosting-automator-{os.getuid()}.lock")


def load_settings(env_file: str | os.PathLike[str] | None = None,
                  environ: Mapping[str, str] | None = None) -> Settings:
    """Read settings: `env_file` (or ./.env when present) first, the real environment winning over it.

    Raises:
        ConfigurationError: when a setting is missing, malformed or out of range, or the .env file cannot be read
            or parsed; one error names every problem found.
    """
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
    # .env.example's placeholders, copied and not yet edited, are settings not made
    placeholders = [name for name, example in EXAMPLE_PLACEHOLDERS.items() if values.get(name) == example]
    for name in placeholders:
        del values[name]
    reader = _Reader(values, problems)

    supabase_url = reader.url("SUPABASE_URL", required=True)
    if supabase_url and "/rest/v1" in urlsplit(supabase_url).path:
        problems.append(f"SUPABASE_URL must be the project's URL (like https://abcd.supabase.co), without the "
                        f"/rest/v1 of its API, got {without_credentials(supabase_url)!r}")
    supabase_key = reader.text("SUPABASE_SERVICE_KEY", required=True)
    for name in ("SUPABASE_SERVICE_KEY", "CLOUDPANEL_API_TOKEN"):  # they go into HTTP headers
        if values.get(name) and not _HEADER_VALUE.match(values[name]):
            problems.append(f"{name} must be printable ASCII without spaces (a key copied with other characters?)")
    if supabase_key and limited_key(supabase_key):
        problems.append(f"SUPABASE_SERVICE_KEY is {limited_key(supabase_key)}, which row-level security limits: a run "
                        "would see none of the rows it must build, or could not write them; set it to the "
                        "project's secret key (sb_secret_…) or its service_role key (Project Settings → API Keys)")
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
        http_timeout=reader.seconds("HTTP_TIMEOUT", DEFAULT_HTTP_TIMEOUT, MAX_HTTP_TIMEOUT),
        matomo_site_timezone=reader.text("MATOMO_SITE_TIMEZONE"),
        matomo_site_currency=currency,
        healthcheck_url=(reader.url("HEALTHCHECK_URL") or "").rstrip("/") or None,
        cloudpanel_https_host=https_host,
        cloudpanel_https_port=https_port,
        max_sites_per_run=reader.integer("MAX_SITES_PER_RUN", DEFAULT_MAX_SITES_PER_RUN, 0, MAX_SITES_PER_RUN_LIMIT),
        max_run_minutes=reader.integer("MAX_RUN_MINUTES", DEFAULT_MAX_RUN_MINUTES, 1, 24 * 60),
        workers=reader.integer("WORKERS", 1, 1, MAX_WORKERS),
        cloudpanel_concurrency=reader.integer("CLOUDPANEL_CONCURRENCY", 1, 1, MAX_CLOUDPANEL_CONCURRENCY),
        matomo_backfill_per_run=reader.integer("MATOMO_BACKFILL_PER_RUN", DEFAULT_MATOMO_BACKFILL_PER_RUN, 0,
                                               MAX_SITES_PER_RUN_LIMIT),
        server_name=reader.server_name("SERVER_NAME"),
        server_addresses=reader.addresses("SERVER_ADDRESSES"),
        dns_resolvers=reader.resolvers("DNS_RESOLVERS"),
        env_file=used_env_file,
    )
    problems = [f"{problem} (it still holds .env.example's placeholder)"
                if any(problem == f"{name} is not set" for name in placeholders) else problem for problem in problems]
    if problems:
        raise ConfigurationError(problems)
    return Settings(**settings)


MACHINE_ID_FILES = ("/etc/machine-id", "/var/lib/dbus/machine-id")
REQUIRED_SETTINGS = ("SUPABASE_URL", "SUPABASE_SERVICE_KEY", "MATOMO_API_URL", "MATOMO_API_TOKEN")
EXAMPLE_PLACEHOLDERS = {"SUPABASE_URL": "https://your-project.supabase.co",
                        "MATOMO_API_URL": "https://matomo.example.com"}


def machine_identity(path: str | os.PathLike[str] | None = None) -> str | None:
    """This machine as the table records it beside SERVER_NAME: 16 hex digits of an HMAC of its machine-id (which
    systemd says not to show outside the machine), or None where it has none. Two machines under one name are told
    apart by it."""
    for candidate in [path] if path else MACHINE_ID_FILES:
        try:
            machine_id = Path(candidate).read_text(encoding="ascii", errors="replace").strip()
        except OSError:
            continue
        if machine_id:
            return hmac.new(machine_id.encode(), b"hosting-automator", "sha256").hexdigest()[:16]
    return None


def limited_key(key: str) -> str | None:
    """What kind of key `key` is when row-level security limits it (a publishable key, a JWT of a role other than
    service_role), else None. Never the key itself: that is a secret."""
    if key.startswith("sb_publishable_"):
        return "a publishable key (sb_publishable_…)"
    parts = key.split(".")
    if len(parts) != 3:
        return None  # a secret key (sb_secret_…) or a format this job does not know: Supabase decides
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(claims, dict):
        return None
    role = claims.get("role")
    if role == "service_role":
        return None
    if not isinstance(role, str) or not role:
        return "a key without a role (PostgREST takes it as anon)"  # no role, null, a list, …
    shown = role if role.isidentifier() and len(role) <= 40 else "another role"
    return f"a key of the role {shown!r}, not service_role"


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

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def matomo_api_endpoint(url: str) -> str:
    """Matomo's API lives at index.php; operators paste the base URL with or without it."""
    url = url.rstrip("/")
    return url if url.endswith("index.php") else url + "/index.php"


def whole_number(text: str, minimum: int, maximum: int) -> int | None:
    """`text` as a whole number from `minimum` to `maximum`, or None. Only ASCII digits count (int() takes "²" and
    "٣"), and a string of digits too long for the range is refused before int() could choke on it."""
    if not (text.isascii() and text.isdigit()) or len(text.lstrip("0")) > len(str(maximum)):
        return None
    number = int(text)
    return number if minimum <= number <= maximum else None


def _shortened(value, limit=40):
    """A refused number as the message quotes it: thousands of digits would bury the message."""
    shown = repr(value)
    return shown if len(shown) <= limit else f"{shown[:limit - 2]}…' ({len(value)} characters)"


def without_credentials(url: str) -> str:
    """`url` as it may appear in a message: a `user:password@` written into it becomes `***@`. Nothing is masked
    yet when the settings are refused, and everything up to the last "@" goes, since a password pasted unescaped
    may hold "/" or "@" itself."""
    scheme, separator, rest = url.partition("//")
    if not separator or "@" not in rest:
        return url
    return f"{scheme}//***@{rest.rpartition('@')[2]}"


def host_problem(host: str) -> str | None:
    """Why `host` cannot be used to reach a service, or None when it can: an IP address, or a name whose labels
    have 1 to 63 characters and 253 in all. Any other name fails only deep in the HTTP client or the resolver, as
    a UnicodeError traceback, so it is refused here."""
    if ":" in host:  # only an IPv6 address holds colons; a zone comes percent-encoded in a URL
        try:
            ipaddress.ip_address(host.replace("%25", "%", 1))
        except ValueError:
            return "not a valid IPv6 address"
        return None
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    name = host[:-1] if host.endswith(".") else host
    if not name:
        return "it is empty"
    if not name.isascii():
        # how requests and httpx turn it into the name they look up
        try:
            name = idna.encode(name, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError) as err:
            return f"not a valid internationalised name: {err}"
    if len(name) > MAX_HOST_NAME_LENGTH:
        return f"it is {len(name)} characters long, more than the {MAX_HOST_NAME_LENGTH} allowed"
    for label in name.split("."):
        if not label:
            return "an empty label: two dots in a row, or a leading dot"
        if len(label) > MAX_HOST_LABEL_LENGTH:
            return (f"label '{label[:20]}…' is {len(label)} characters long, more than the "
                    f"{MAX_HOST_LABEL_LENGTH} allowed")
        if not _ASCII_HOST_LABEL.match(label):
            return f"label {label!r} may hold only letters, digits, hyphens and underscores"
    return None


def env_file_readable_by_others(path: str | os.PathLike[str]) -> bool:
    """True when the .env holding the keys can be read by users other than its owner."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return bool(mode & (stat.S_IRGRP | stat.S_IROTH))


class _Reader:
    """Reads one setting at a time, noting every problem instead of stopping at the first."""

    def __init__(self, values: Mapping[str, str], problems: list[str]) -> None:
        self.values = values
        self.problems = problems

    def text(self, name: str, required: bool = False) -> str | None:
        value = (self.values.get(name) or "").strip()
        if not value:
            if required:
                self.problems.append(f"{name} is not set")
            return None
        return value

    def url(self, name: str, required: bool = False) -> str | None:
        value = self.text(name, required)
        if value is None:
            return None
        shown = without_credentials(value)
        try:
            parts = urlsplit(value)
        except ValueError:  # an unclosed "[" around an IPv6 address
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            self.problems.append(f"{name} must be an http:// or https:// URL, got {shown!r}")
            return None
        problem = host_problem(parts.hostname)
        if problem:
            self.problems.append(f"{name} has a host name that cannot be used ({problem}), got {shown!r}")
            return None
        try:
            port = parts.port
        except ValueError:
            port = 0
        if port == 0:
            self.problems.append(f"{name} has a port that cannot be used (a whole number from 1 to 65535), "
                                 f"got {shown!r}")
            return None
        return value

    def seconds(self, name: str, default: float, maximum: float) -> float:
        value = self.text(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            number = None
        if number is None or not 0 < number <= maximum:  # NaN fails the comparison too
            self.problems.append(f"{name} must be a positive number of seconds up to {maximum} (e.g. 30 or 0.5), "
                                 f"got {_shortened(value)}")
            return default
        return number

    def integer(self, name: str, default: int, minimum: int, maximum: int) -> int:
        value = self.text(name)
        if value is None:
            return default
        number = whole_number(value, minimum, maximum)
        if number is None:
            self.problems.append(f"{name} must be a whole number from {minimum} to {maximum}, got {_shortened(value)}")
            return default
        return number

    def address(self, name: str, default: str) -> tuple[str, int]:
        value = self.text(name) or default
        host, _, port = value.rpartition(":")
        host = host.strip("[]")
        if not host or whole_number(port, 1, 65535) is None:
            self.problems.append(f"{name} must be host:port, like 127.0.0.1:443, got {value!r}")
            return "127.0.0.1", 443
        problem = host_problem(host)
        if problem:
            self.problems.append(f"{name} has a host name that cannot be used ({problem}), got {value!r}")
            return "127.0.0.1", 443
        return host, int(port)

    def server_name(self, name: str) -> str:
        value = self.text(name)
        shown = f"got {_shortened(value)}" if value else f"the host's name {socket.gethostname()!r} is not one"
        value = value or socket.gethostname()
        if not _SERVER_NAME.match(value):
            self.problems.append(f"{name} must be letters, digits, dots and dashes (at most 63, starting with a letter "
                                 f"or digit), {shown}")
            return "localhost"
        return value

    def addresses(self, name: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]:
        """Comma-separated IPv4 and IPv6 addresses, as DNS would answer them."""
        value = self.text(name)
        if value is None:
            return ()
        found = []
        for item in value.split(","):
            try:
                found.append(ipaddress.ip_address(item.strip()))
            except ValueError:
                self.problems.append(f"{name} must be IPv4 or IPv6 addresses separated by commas, got "
                                     f"{_shortened(item.strip())}")
                return ()
        return tuple(found)

    def resolvers(self, name: str) -> tuple[tuple[str, int], ...]:
        """Comma-separated `ip` or `ip:port` (`[ipv6]:port`)."""
        value = self.text(name)
        if value is None:
            return ()
        found = []
        for item in (item.strip() for item in value.split(",")):
            host, port = item, "53"
            if item.startswith("["):
                host, closed, rest = item[1:].partition("]")
                port = "" if not closed else rest[1:] if rest.startswith(":") else "53" if not rest else ""
            elif item.count(":") == 1:
                host, port = item.split(":")
            try:
                address = ipaddress.ip_address(host)
            except ValueError:
                address = None
            if address is None or whole_number(port, 1, 65535) is None:
                self.problems.append(f"{name} must be name servers as ip or ip:port separated by commas, like "
                                     f"1.1.1.1,[2606:4700:4700::1111]:53, got {_shortened(item)}")
                return ()
            found.append((str(address), int(port)))
        return tuple(found)
