"""The rules a host name must pass: a row's `domain` before any service hears of it (RFC 1035 lengths, IDNA
2008), and a service's host in the settings."""

import ipaddress
import re

import idna

from hosting_automator.errors import InvalidDomainError

MAX_NAME_LENGTH = 253  # RFC 1035: 255 octets on the wire, less the length byte and the root label
MAX_LABEL_LENGTH = 63
CLOUDPANEL_MAX_DOMAIN_LENGTH = 128  # CloudPanel's own limit on domainName

_LDH_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")
# An ASCII host label of a service as resolvers take it: underscores included, since internal names (a Docker
# service such as supabase_kong) carry them although IDNA 2008 does not allow them.
_SERVICE_HOST_LABEL = re.compile(r"^[A-Za-z0-9_-]+$")
# Characters that a shell, a URL or a template could give meaning to; named in the message.
_FORBIDDEN_CHARACTERS = set(";|&$`()<>\\'\"!{}[]?#%@=+,^~")


def normalise_domain(raw: object) -> str:
    """Return the ASCII host name to serve for a row's `domain`.

    Raises:
        InvalidDomainError: when the value cannot be served as a host name; the message says why.
    """
    if raw is None:
        raise InvalidDomainError("domain is empty (NULL)")
    if not isinstance(raw, str):
        raise InvalidDomainError(f"domain must be text, got {type(raw).__name__} {raw!r}")
    name = raw.strip().lower()
    if not name:
        raise InvalidDomainError("domain is empty")
    if "://" in name:
        raise InvalidDomainError(f"domain must be a bare host name, not a URL: {_shown(raw)}")
    forbidden = sorted(set(name) & _FORBIDDEN_CHARACTERS)
    if forbidden:
        listed = " ".join(forbidden)
        raise InvalidDomainError(f"domain contains characters not allowed in a host name ({listed}): {_shown(raw)}")
    if any(character.isspace() for character in name):
        raise InvalidDomainError(f"domain contains whitespace: {_shown(raw)}")
    if "/" in name:
        raise InvalidDomainError(f"domain must not contain a path: {_shown(raw)}")
    if ":" in name:
        raise InvalidDomainError(f"domain must not contain a port: {_shown(raw)}")
    if "*" in name:
        raise InvalidDomainError(f"wildcard domains are not supported: {_shown(raw)}")
    if name.endswith("."):
        name = name[:-1]
    if not name.isascii():
        name = _to_ascii(name, raw)
        _check_standard_spelling(name, raw)
    _check_ascii_name(name, raw)
    return name


def normalised_or_none(raw: object) -> str | None:
    """The host name of `raw`, or None when it cannot be served: for comparing rows, never for serving one."""
    try:
        return normalise_domain(raw)
    except InvalidDomainError:
        return None


def _check_standard_spelling(ascii_name, raw):
    """A Unicode name must be written as its standard spelling (the one its ASCII form decodes to, in any letter
    case): another row, on this server or another, is found by either spelling, and a name written with
    full-width letters, ligatures, ideographic full stops, soft hyphens, zero-width characters or decomposed
    accents would not be, and its site would be built twice."""
    try:
        standard = idna.decode(ascii_name)
    except (idna.IDNAError, UnicodeError) as err:
        raise InvalidDomainError(f"not a valid internationalised domain name ({err}): {_shown(raw)}") from err
    written = raw.strip().lower().rstrip(".")
    if written != standard:
        raise InvalidDomainError(f"domain is not written in its standard form: {_shown(raw)}; write it as "
                                 f"{standard} (or {ascii_name})")


def apex_of(domain: str) -> str:
    """The name a www. name is the twin of; any other name is its own."""
    return domain[4:] if domain.startswith("www.") else domain


def twin_of(domain: str) -> str:
    """A name's www. twin, or a www. name's apex: one certificate and one Matomo site serve both."""
    return apex_of(domain) if domain.startswith("www.") else f"www.{domain}"


def spellings(domain: str) -> list[str]:
    """A normalised name's spellings: the ASCII one, then its Unicode one when it has one. Where a service keeps
    names as they were written (the table, Matomo), one site may stand under either."""
    try:
        unicode = idna.decode(domain)
    except (idna.IDNAError, UnicodeError):
        return [domain]
    return [domain] if unicode == domain else [domain, unicode]


def _to_ascii(name, raw):
    try:
        return idna.encode(name, uts46=True).decode("ascii")
    except idna.IDNAError as err:
        raise InvalidDomainError(f"not a valid internationalised domain name ({err}): {_shown(raw)}") from err


def _check_ascii_name(name, raw):
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidDomainError(f"domain is {len(name)} characters long, more than the {MAX_NAME_LENGTH} allowed")
    labels = name.split(".")
    if len(labels) < 2:
        raise InvalidDomainError(f"domain needs at least two labels, like example.com: {_shown(raw)}")
    for label in labels:
        if not label:
            raise InvalidDomainError(f"domain has an empty label (two dots in a row, or a leading dot): {_shown(raw)}")
        if len(label) > MAX_LABEL_LENGTH:
            raise InvalidDomainError(
                f"label {_shown(label[:20])[:-1]}…' is {len(label)} characters long, more than the {MAX_LABEL_LENGTH} allowed"
            )
        if label.startswith("-") or label.endswith("-"):
            raise InvalidDomainError(f"label {_shown(label)} must not start or end with a hyphen")
        if not _LDH_LABEL.match(label):
            raise InvalidDomainError(f"label {_shown(label)} may hold only letters, digits and hyphens")
        if label.startswith("xn--"):
            _check_punycode(label)
    if labels[-1].isdigit():
        raise InvalidDomainError(f"an IP address is not a domain name: {_shown(raw)}")
    if len(name) > CLOUDPANEL_MAX_DOMAIN_LENGTH:
        raise InvalidDomainError(
            f"domain is {len(name)} characters long; CloudPanel accepts at most {CLOUDPANEL_MAX_DOMAIN_LENGTH}"
        )


def _check_punycode(label):
    try:
        idna.decode(label)
    except (idna.IDNAError, UnicodeError) as err:
        raise InvalidDomainError(f"label {_shown(label)} is not valid punycode ({err})") from err


def service_host_problem(host: str) -> str | None:
    """Why `host` (of a service's URL or address) cannot be used to reach it, or None when it can: an IP address,
    or a name whose labels have 1 to 63 characters and 253 in all, underscores allowed. Any other name fails only
    deep in the HTTP client or the resolver, as a UnicodeError traceback, so it is refused here."""
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
    if len(name) > MAX_NAME_LENGTH:
        return f"it is {len(name)} characters long, more than the {MAX_NAME_LENGTH} allowed"
    for label in name.split("."):
        if not label:
            return "an empty label: two dots in a row, or a leading dot"
        if len(label) > MAX_LABEL_LENGTH:
            return (f"label '{label[:20]}…' is {len(label)} characters long, more than the "
                    f"{MAX_LABEL_LENGTH} allowed")
        if not _SERVICE_HOST_LABEL.match(label):
            return f"label {label!r} may hold only letters, digits, hyphens and underscores"
    return None


def _shown(raw):
    """The raw value as it can safely appear in one log line (newlines and control characters escaped)."""
    text = repr(raw)
    return text if len(text) <= 80 else text[:77] + "…'"
