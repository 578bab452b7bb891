"""Settings from the environment and a .env file, declared once in a model and checked all at once, so that one
message names every problem."""

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
from pathlib import Path
from typing import Annotated, Optional
from urllib.parse import urlsplit

from dotenv import dotenv_values
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, ValidationError

from hosting_automator.domains import service_host_problem
from hosting_automator.errors import ConfigurationError

DEFAULT_HTTP_TIMEOUT = 30.0
# Let's Encrypt allows 300 new orders per account per 3 hours. A run every 15 minutes is 12 runs in 3 hours;
# 20 sites a run is at most 240 orders, leaving room for retried and manual orders.
DEFAULT_MAX_SITES_PER_RUN = 20
# Ranges that work. A run takes 20 sites by default and every site waits on clpctl, so no more than 64 workers or
# CloudPanel calls at once can help; a larger count only costs threads and connections (10^12 of them hung the run).
MAX_WORKERS = 64
MAX_CLOUDPANEL_CONCURRENCY = 64
# No service needs 10 minutes to answer a request; a huge value (1e10) overflows the socket's own timeout.
MAX_HTTP_TIMEOUT = 600
MAX_SITES_PER_RUN_LIMIT = 10000

_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
# A server's name goes into PostgREST filters (`or=(hosting_server.eq.NAME,…)`): a comma, parenthesis, quote or
# space would change the filter, so only these characters are taken.
_SERVER_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,62})$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_HEADER_VALUE = re.compile(r"^[\x21-\x7e]+$")
# The name of a .env line's variable, shown only when the line plainly starts with one; never anything after "=".
_ENV_LINE_NAME = re.compile(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=")
_LINE_NUMBER = re.compile(r"\bline (\d+)")


def without_credentials(url: str) -> str:
    """`url` as it may appear in a message: a `user:password@` written into it becomes `***@`. Nothing is masked
    yet when the settings are refused, and everything up to the last "@" goes, since a password pasted unescaped
    may hold "/" or "@" itself."""
    scheme, separator, rest = url.partition("//")
    if not separator or "@" not in rest:
        return url
    return f"{scheme}//***@{rest.rpartition('@')[2]}"


def whole_number(text: str, minimum: int, maximum: int) -> int | None:
    """`text` as a whole number from `minimum` to `maximum`, or None. Only ASCII digits count (int() takes "²" and
    "٣"), and a string of digits too long for the range is refused before int() could choke on it."""
    if not (text.isascii() and text.isdigit()) or len(text.lstrip("0")) > len(str(maximum)):
        return None
    number = int(text)
    return number if minimum <= number <= maximum else None


def matomo_api_endpoint(url: str) -> str:
    """Matomo's API lives at index.php; operators paste the base URL with or without it."""
    url = url.rstrip("/")
    return url if url.endswith("index.php") else url + "/index.php"


def _shortened(value, limit=40):
    """A refused value as the message quotes it: thousands of digits would bury the message."""
    shown = repr(value)
    return shown if len(shown) <= limit else f"{shown[:limit - 2]}…' ({len(value)} characters)"


def _usable_host(host: str, shown: str) -> None:
    problem = service_host_problem(host)
    if problem:
        raise ValueError(f"has a host name that cannot be used ({problem}), got {shown!r}")


# Each check below gets a setting's text, stripped and never empty (an empty setting is a setting not made; only
# SERVER_NAME's check also gets "", for its default), and raises ValueError with what follows the setting's name in
# the message. None quotes a key or a token.


def _url(value: str) -> str:
    shown = without_credentials(value)
    try:
        parts = urlsplit(value)
    except ValueError:  # an unclosed "[" around an IPv6 address
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http:// or https:// URL, got {shown!r}")
    _usable_host(parts.hostname, shown)
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError(f"has a port that cannot be used (a whole number from 1 to 65535), got {shown!r}")
    return value


def _project_url(url: str) -> str:
    if "/rest/v1" in urlsplit(url).path:
        raise ValueError(f"must be the project's URL (like https://abcd.supabase.co), without the /rest/v1 of its "
                         f"API, got {without_credentials(url)!r}")
    return url.rstrip("/")


def _header_value(key: str) -> str:
    if not _HEADER_VALUE.match(key):
        raise ValueError("must be printable ASCII without spaces (a key copied with other characters?)")
    return key


def _unlimited_key(key: SecretStr) -> SecretStr:
    kind = limited_key(key.get_secret_value())
    if kind:
        raise ValueError(f"is {kind}, which row-level security limits: a run would see none of the rows it must "
                         "build, or could not write them; set it to the project's secret key (sb_secret_…) or its "
                         "service_role key (Project Settings → API Keys)")
    return key


def _matching(pattern: re.Pattern, rule: str):
    def check(value: str) -> str:
        if not pattern.match(value):
            raise ValueError(f"{rule}, got {value!r}")
        return value
    return AfterValidator(check)


def _server_name(value: str) -> str:
    """The name given, or (when none is) the host's own, which must pass the same rule."""
    shown = f"got {_shortened(value)}" if value else f"the host's name {socket.gethostname()!r} is not one"
    value = value or socket.gethostname()
    if not _SERVER_NAME.match(value):
        raise ValueError(f"must be letters, digits, dots and dashes (at most 63, starting with a letter or digit), "
                         f"{shown}")
    return value


def _seconds(text: str) -> float:
    try:
        number = float(text)
    except ValueError:
        number = None
    if number is None or not 0 < number <= MAX_HTTP_TIMEOUT:  # NaN fails the comparison too
        raise ValueError(f"must be a positive number of seconds up to {MAX_HTTP_TIMEOUT} (e.g. 30 or 0.5), "
                         f"got {_shortened(text)}")
    return number


def _count(minimum: int, maximum: int):
    """A whole number from `minimum` to `maximum`, as a type."""
    def check(text: str) -> int:
        number = whole_number(text, minimum, maximum)
        if number is None:
            raise ValueError(f"must be a whole number from {minimum} to {maximum}, got {_shortened(text)}")
        return number
    return Annotated[int, BeforeValidator(check)]


def _host_and_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    if not host or whole_number(port, 1, 65535) is None:
        raise ValueError(f"must be host:port, like 127.0.0.1:443, got {text!r}")
    _usable_host(host, text)
    return host, int(port)


def _addresses(text: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]:
    """Comma-separated IPv4 and IPv6 addresses, as DNS would answer them."""
    found = []
    for item in (item.strip() for item in text.split(",")):
        try:
            found.append(ipaddress.ip_address(item))
        except ValueError:
            raise ValueError(f"must be IPv4 or IPv6 addresses separated by commas, got {_shortened(item)}") from None
    return tuple(found)


def _resolvers(text: str) -> tuple[tuple[str, int], ...]:
    """Comma-separated `ip` or `ip:port` (`[ipv6]:port`)."""
    found = []
    for item in (item.strip() for item in text.split(",")):
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
            raise ValueError(f"must be name servers as ip or ip:port separated by commas, like "
                             f"1.1.1.1,[2606:4700:4700::1111]:53, got {_shortened(item)}")
        found.append((str(address), int(port)))
    return tuple(found)


def default_lock_file() -> str:
    """/run/lock when we may write there (root on a server), else the temporary directory."""
    run_lock = Path("/run/lock")
    if run_lock.is_dir() and os.access(run_lock, os.W_OK):
        return str(run_lock / "hosting-automator.lock")
    return str(Path(tempfile.gettempdir()) / f"hosting-automator-{os.getuid()}.lock")


_ServiceUrl = Annotated[str, AfterValidator(_url), AfterValidator(lambda url: url.rstrip("/"))]


class Settings(BaseModel):
    """Each setting once: its variable (the alias), its type and range, and its default when it may be left out.
    README's table of settings and .env.example name exactly these variables. The fields are in the order the
    configuration message names their problems."""

    model_config = ConfigDict(frozen=True, hide_input_in_errors=True, extra="ignore")

    supabase_url: Annotated[str, AfterValidator(_url), AfterValidator(_project_url)] = Field(alias="SUPABASE_URL")
    supabase_service_key: Annotated[SecretStr, BeforeValidator(_header_value), AfterValidator(_unlimited_key)] = (
        Field(alias="SUPABASE_SERVICE_KEY"))
    matomo_api_url: Annotated[str, AfterValidator(_url), AfterValidator(matomo_api_endpoint)] = (
        Field(alias="MATOMO_API_URL"))
    matomo_api_token: SecretStr = Field(alias="MATOMO_API_TOKEN")
    cloudpanel_api_url: Optional[_ServiceUrl] = Field(None, alias="CLOUDPANEL_API_URL")
    cloudpanel_api_token: Optional[Annotated[SecretStr, BeforeValidator(_header_value)]] = (
        Field(None, alias="CLOUDPANEL_API_TOKEN"))
    sites_table: Annotated[str, _matching(_TABLE_NAME, "must be a plain table name (letters, digits, _)")] = (
        Field("sites", alias="SITES_TABLE"))
    matomo_site_currency: Optional[Annotated[str, _matching(_CURRENCY, "must be a three-letter ISO 4217 code like "
                                                                       "EUR")]] = (
        Field(None, alias="MATOMO_SITE_CURRENCY"))
    cloudpanel_https_address: Annotated[tuple[str, int], BeforeValidator(_host_and_port)] = (
        Field(("127.0.0.1", 443), alias="CLOUDPANEL_HTTPS_ADDRESS"))
    cloudpanel_clpctl: str = Field("clpctl", alias="CLOUDPANEL_CLPCTL")
    cloudpanel_db_path: str = Field("/home/clp/htdocs/app/data/db.sq3", alias="CLOUDPANEL_DB_PATH")
    log_file: str = Field("hosting_automator.log", alias="LOG_FILE")
    lock_file: str = Field(default_factory=default_lock_file, alias="LOCK_FILE")
    http_timeout: Annotated[float, BeforeValidator(_seconds)] = Field(DEFAULT_HTTP_TIMEOUT, alias="HTTP_TIMEOUT")
    matomo_site_timezone: Optional[str] = Field(None, alias="MATOMO_SITE_TIMEZONE")
    healthcheck_url: Optional[_ServiceUrl] = Field(None, alias="HEALTHCHECK_URL")
    max_sites_per_run: _count(0, MAX_SITES_PER_RUN_LIMIT) = Field(DEFAULT_MAX_SITES_PER_RUN, alias="MAX_SITES_PER_RUN")
    # no site starts later than this into a run; the next run takes the rest
    max_run_minutes: _count(1, 24 * 60) = Field(60, alias="MAX_RUN_MINUTES")
    workers: _count(1, MAX_WORKERS) = Field(1, alias="WORKERS")
    cloudpanel_concurrency: _count(1, MAX_CLOUDPANEL_CONCURRENCY) = Field(1, alias="CLOUDPANEL_CONCURRENCY")
    # live sites given their missing Matomo site per run; 0 turns it off
    matomo_backfill_per_run: _count(0, MAX_SITES_PER_RUN_LIMIT) = Field(20, alias="MATOMO_BACKFILL_PER_RUN")
    server_name: Annotated[str, AfterValidator(_server_name)] = (
        Field("", alias="SERVER_NAME", validate_default=True))
    # empty: DNS is not asked where a site lives
    server_addresses: Annotated[tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...],
                                BeforeValidator(_addresses)] = Field((), alias="SERVER_ADDRESSES")
    # empty: the system's resolvers
    dns_resolvers: Annotated[tuple[tuple[str, int], ...], BeforeValidator(_resolvers)] = (
        Field((), alias="DNS_RESOLVERS"))
    env_file: Optional[str] = Field(None, exclude=True)  # the .env file that was read, if any; not a setting

    @property
    def cloudpanel_https_host(self) -> str:
        return self.cloudpanel_https_address[0]

    @property
    def cloudpanel_https_port(self) -> int:
        return self.cloudpanel_https_address[1]

    @property
    def secrets(self) -> list[str]:
        """Every configured value that must never be shown: the keys and tokens, and a password written into a URL."""
        keys = (self.supabase_service_key, self.matomo_api_token, self.cloudpanel_api_token)
        urls = (self.supabase_url, self.matomo_api_url, self.cloudpanel_api_url, self.healthcheck_url)
        passwords = [urlsplit(url).password for url in urls if url]
        return [value for value in (*(key.get_secret_value() for key in keys if key), *passwords) if value]

    @property
    def uses_gateway(self) -> bool:
        return self.cloudpanel_api_url is not None


SETTING_NAMES = tuple(field.alias for field in Settings.model_fields.values() if field.alias)  # env_file is none
REQUIRED_SETTINGS = tuple(field.alias for field in Settings.model_fields.values() if field.is_required())
EXAMPLE_PLACEHOLDERS = {"SUPABASE_URL": "https://your-project.supabase.co",
                        "MATOMO_API_URL": "https://matomo.example.com"}


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
    values.update({key: value for key, value in environ.items() if value != ""})  # an empty one hides nothing
    values = {key: value.strip() for key, value in values.items() if value.strip()}
    # .env.example's placeholders, copied and not yet edited, are settings not made
    placeholders = [name for name, example in EXAMPLE_PLACEHOLDERS.items() if values.get(name) == example]
    for name in placeholders:
        del values[name]
    settings = None
    try:
        settings = Settings.model_validate({**values, "env_file": used_env_file})
    except ValidationError as err:
        problems += [_problem(error, placeholders) for error in err.errors()]
    if bool(values.get("CLOUDPANEL_API_URL")) != bool(values.get("CLOUDPANEL_API_TOKEN")):
        problems.append("CLOUDPANEL_API_URL and CLOUDPANEL_API_TOKEN must be set together "
                        "(both to use a clpctl HTTP gateway, neither to run clpctl on this server)")
    if problems:
        raise ConfigurationError(problems)
    return settings


def _problem(error, placeholders) -> str:
    """One of pydantic's errors as the configuration message says it: the variable, then what is wrong."""
    name = error["loc"][0]
    if name in Settings.model_fields:  # a default's error is named by its field
        name = Settings.model_fields[name].alias
    if error["type"] == "missing":
        return f"{name} is not set" + (" (it still holds .env.example's placeholder)" if name in placeholders else "")
    if error["type"] == "value_error":
        return f"{name} {error['ctx']['error']}"
    return f"{name}: {error['msg']}"  # pydantic's own words; with hide_input_in_errors they never quote the value


MACHINE_ID_FILES = ("/etc/machine-id", "/var/lib/dbus/machine-id")


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


def env_file_readable_by_others(path: str | os.PathLike[str]) -> bool:
    """True when the .env holding the keys can be read by users other than its owner."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return bool(mode & (stat.S_IRGRP | stat.S_IROTH))
