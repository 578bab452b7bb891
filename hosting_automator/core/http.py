"""The HTTP client every service shares, on the standard library's http.client: keep-alive connections per
origin, a timeout on every call, and failures sorted into transient (worth retrying) and final, so the
services only interpret bodies."""

import base64
import email.parser
import email.utils
import functools
import http.client
import json
import logging
import os
import re
import select
import threading
import time
import types
from urllib.parse import quote, unquote, urlencode, urlsplit

logger = logging.getLogger(__name__)

DEFAULT_USER_AGENT = "hosting-automator"
TRANSIENT_STATUSES = {429, 502, 503, 504, 520}  # 520: Cloudflare's "the origin answered something odd"
REDIRECT_STATUSES = {301, 302, 303, 307, 308}
DEFAULT_PORTS = {"http": 80, "https": 443}
CA_BUNDLE_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR")  # first set wins


class UnusableSetting(ValueError):
    """A URL, proxy or CA bundle this client cannot use: a setting to fix, which no retry would change."""


class Response:
    """What a service reads of an answer; the whole body is read before the connection goes back to the pool."""

    __slots__ = ("status_code", "reason", "headers", "content")

    def __init__(self, status_code, reason, headers, content):
        self.status_code = status_code
        self.reason = reason
        self.headers = headers  # http.client's HTTPMessage: get() ignores case
        self.content = content

    @property
    def text(self):
        try:
            return self.content.decode(self.headers.get_content_charset() or "utf-8", errors="replace")
        except LookupError:  # a charset Python does not know
            return self.content.decode("utf-8", errors="replace")

    def json(self):
        """The body as JSON; ValueError when it is not."""
        return json.loads(self.content)

    @property
    def is_redirect(self):
        return self.status_code in REDIRECT_STATUSES and self.headers.get("Location") is not None


class _Origin:
    """Where a connection to scheme://host:port goes: straight there, or through the proxy the environment names."""

    __slots__ = ("scheme", "host", "port", "proxy_host", "proxy_port", "proxy_authorization")

    def __init__(self, scheme, host, port, proxy=None):
        self.scheme, self.host, self.port = scheme, host, port
        self.proxy_host = self.proxy_port = self.proxy_authorization = None
        if proxy:
            parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
            if parts.scheme != "http" or not parts.hostname:
                raise UnusableSetting(f"the proxy {_without_credentials(proxy)!r} from the environment is not an "
                                      "http:// proxy, the only kind this client can use")
            self.proxy_host, self.proxy_port = parts.hostname, parts.port or 80
            if parts.username is not None:
                self.proxy_authorization = _basic_auth(parts.username, parts.password)

    @property
    def via_plain_proxy(self):
        """An http:// origin through a proxy: the request line carries the absolute URL."""
        return self.proxy_host is not None and self.scheme == "http"


# A header line the email parser reads as plainly `name: value`: a name of the characters its headerRE accepts
# (printable ASCII but ":"), a colon, blanks it strips, then a value holding none of the characters
# str.splitlines breaks lines at (the parser splits with it), and the line's end.
_PLAIN_HEADER_LINE = re.compile(r"([!-9;-~]+):[ \t]*([^\r\n\x0b\x0c\x1c-\x1e\x85]*)\r?\n\Z")


def _parse_plain_headers(fp, _class=http.client.HTTPMessage):
    """http.client.parse_headers, building the same HTTPMessage without the email parser when every line is a
    plain `name: value` (what services send): 5 us instead of 50 an answer, a tenth of a request's cost. Any other
    line (folded, no colon) goes to the email parser, as before."""
    lines = http.client._read_headers(fp)
    message = _class()
    for line in lines:
        if line in (b"\r\n", b"\n"):  # the blank line that ends them, which _read_headers keeps
            continue
        plain = _PLAIN_HEADER_LINE.match(line.decode("iso-8859-1"))
        if plain is None:
            return email.parser.Parser(_class=_class).parsestr(b"".join(lines).decode("iso-8859-1"))
        message.set_raw(plain.group(1), plain.group(2))
    return message


def _begin_with_plain_headers():
    """HTTPResponse.begin itself, run with the parser above in place of http.client's parse_headers: the
    standard library's code, none of it copied, and nothing in http.client changed for anyone else. Where a
    Python's begin does not look parse_headers up, it is left as it is."""
    begin = http.client.HTTPResponse.begin
    if "parse_headers" not in begin.__code__.co_names or not hasattr(http.client, "_read_headers"):
        return begin
    return types.FunctionType(begin.__code__, {**vars(http.client), "parse_headers": _parse_plain_headers},
                              begin.__name__, begin.__defaults__, begin.__closure__)


class _Answer(http.client.HTTPResponse):
    begin = _begin_with_plain_headers()


class _Connection(http.client.HTTPConnection):
    response_class = _Answer


class _TlsConnection(http.client.HTTPSConnection):
    response_class = _Answer


class HttpSession:
    """Connections kept alive per origin for the whole run, shared by the threads of `--workers`.

    Settled once, not per request: the CA bundle (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE, SSL_CERT_FILE or
    SSL_CERT_DIR, else certifi's, as requests and httpx do), the proxy of each origin (https_proxy, http_proxy,
    no_proxy), and each URL's parsing (IDNA host, quoting, credentials in the URL sent as Basic auth). requests
    did this work on every call and cost 2 to 3 times the CPU of http.client (bench/). Cookies are not kept and
    redirects are not followed: a redirected POST loses its body, and Matomo's token with it, so `send` reports
    the redirect for the setting to be fixed.
    """

    def __init__(self, timeout, pool_size=1):
        self.timeout = timeout
        self.pool_size = max(pool_size, 1)  # idle connections kept per origin; a busier moment opens more
        self.headers = {"User-Agent": DEFAULT_USER_AGENT, "Accept": "*/*"}
        self._idle = {}
        self._origins = {}
        self._lock = threading.Lock()
        self._ssl_context = None

    def request(self, method, url, *, params=None, data=None, json=None, headers=None, timeout=None):
        """Send one request and read its whole answer.

        `params`: added to the query string; `data`: a dict (form-encoded, None values left out) or bytes;
        `json`: any JSON value. Raises UnusableSetting, TimeoutError, OSError (ConnectionError and ssl.SSLError
        among them) or http.client.HTTPException; `send` sorts them.
        """
        target = _target(url)
        path = target.path
        if params:  # a dict or (name, value) pairs
            path = f"{path}{'&' if '?' in path else '?'}{urlencode(params)}"
        headers = {**self.headers, **(headers or {})}
        if target.authorization:  # credentials in the URL; a header the caller passes wins
            headers.setdefault("Authorization", target.authorization)
        body = _body(headers, data, json)
        origin = self._origin(target.scheme, target.host, target.port)
        connection = self._idle_connection(origin) or self._new_connection(origin)
        timeout = self.timeout if timeout is None else timeout
        if connection.sock is None:
            connection.timeout = timeout
        else:
            connection.sock.settimeout(timeout)
        if origin.via_plain_proxy:
            shown_host = f"[{target.host}]" if ":" in target.host else target.host
            path = f"http://{shown_host}{'' if target.port == 80 else f':{target.port}'}{path}"
            if origin.proxy_authorization:
                headers["Proxy-Authorization"] = origin.proxy_authorization
        try:
            connection.request(method, path, body=body, headers=headers)
            answer = connection.getresponse()
            content = answer.read()
        except BaseException:
            connection.close()
            raise
        if answer.will_close:
            connection.close()
        else:
            self._keep(origin, connection)
        return Response(answer.status, answer.reason, answer.headers, content)

    def get(self, url, **kwargs):
        return self.request("GET", url, **kwargs)

    def post(self, url, **kwargs):
        return self.request("POST", url, **kwargs)

    def close(self):
        with self._lock:
            connections = [connection for idle in self._idle.values() for connection in idle]
            self._idle.clear()
        for connection in connections:
            connection.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def _origin(self, scheme, host, port):
        key = (scheme, host, port)
        origin = self._origins.get(key)
        if origin is None:
            with self._lock:  # one _Origin per key: idle connections are filed under it
                origin = self._origins.get(key)
                if origin is None:
                    origin = self._origins[key] = _Origin(scheme, host, port, _environment_proxy(scheme, host))
        return origin

    def _idle_connection(self, origin):
        """A kept-alive connection the server has not closed meanwhile (a closed one reads as readable)."""
        with self._lock:
            idle = self._idle.get(origin)
            while idle:
                connection = idle.pop()
                if connection.sock is not None and not _readable(connection.sock):
                    return connection
                connection.close()
        return None

    def _keep(self, origin, connection):
        with self._lock:
            idle = self._idle.setdefault(origin, [])
            if len(idle) < self.pool_size:
                idle.append(connection)
                return
        connection.close()

    def _new_connection(self, origin):
        host, port = origin.proxy_host or origin.host, origin.proxy_port or origin.port
        if origin.scheme == "http":
            return _Connection(host, port)
        connection = _TlsConnection(host, port, context=self._tls_context())
        if origin.proxy_host:
            tunnel_headers = {"Proxy-Authorization": origin.proxy_authorization} if origin.proxy_authorization else None
            connection.set_tunnel(origin.host, origin.port, headers=tunnel_headers)
        return connection

    def _tls_context(self):
        with self._lock:
            if self._ssl_context is None:
                import ssl

                variable = next((name for name in CA_BUNDLE_VARIABLES if os.environ.get(name)), None)
                if variable:
                    bundle = os.environ[variable]
                else:
                    import certifi

                    bundle, variable = certifi.where(), "certifi's bundle"
                try:
                    if os.path.isdir(bundle):
                        self._ssl_context = ssl.create_default_context(capath=bundle)
                    else:
                        self._ssl_context = ssl.create_default_context(cafile=bundle)
                except (OSError, ssl.SSLError) as err:
                    raise UnusableSetting(f"the CA bundle {bundle} ({variable}) cannot be loaded: "
                                          f"{err.strerror or err}") from None
            return self._ssl_context


def _readable(sock):
    """True when an idle connection has something to read: the server closed it (or sent what nobody asked for).
    poll, not select: select fails on descriptors above 1023."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


def new_session(timeout, pool_size=1):
    """The run's HTTP session: every request gets `timeout` unless the call sets its own."""
    return HttpSession(timeout, pool_size)


class _Target:
    __slots__ = ("scheme", "host", "port", "path", "authorization")

    def __init__(self, scheme, host, port, path, authorization):
        self.scheme, self.host, self.port, self.path, self.authorization = scheme, host, port, path, authorization


@functools.lru_cache(maxsize=32)
def _target(url):
    """Where a URL goes and what its request line says. Cached: the services call a handful of fixed URLs, and
    what varies (Matomo's method, Supabase's filters) comes as params."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as err:
        raise UnusableSetting(f"{_without_credentials(url)!r} is not a valid address ({err})") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise UnusableSetting(f"{_without_credentials(url)!r} is not an http:// or https:// address")
    if not parts.hostname:
        raise UnusableSetting(f"{_without_credentials(url)!r} names no host")
    host = _ascii_host(parts.hostname)
    path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=~")
    query = quote(parts.query, safe="/%:@!$&'()*+,;=~?")
    authorization = _basic_auth(parts.username, parts.password) if parts.username is not None else None
    return _Target(scheme, host, port or DEFAULT_PORTS[scheme], f"{path}?{query}" if query else path, authorization)


def _ascii_host(host):
    """A host name as DNS knows it (IDNA 2008 with UTS #46 mapping, as requests did); IPv6 literals as they are."""
    if host.isascii():
        return host
    import idna

    try:
        return idna.encode(host, uts46=True).decode("ascii")
    except idna.IDNAError as err:
        raise UnusableSetting(f"the host {host!r} is not a valid international name ({err})") from None


def _basic_auth(username, password):
    pair = f"{unquote(username)}:{unquote(password or '')}".encode("latin-1", errors="replace")
    return "Basic " + base64.b64encode(pair).decode("ascii")


def _without_credentials(url):
    parts = urlsplit(url) if "://" in url else None
    if parts is None or "@" not in parts.netloc:
        return url
    return parts._replace(netloc="…@" + parts.netloc.rsplit("@", 1)[1]).geturl()


def _environment_proxy(scheme, host):
    """The proxy for scheme://host from the environment (https_proxy, http_proxy, all_proxy, no_proxy), or None.
    no_proxy as curl and requests read it: names, domain suffixes, addresses, and networks (10.0.0.0/8)."""
    from urllib.request import getproxies, proxy_bypass

    proxies = getproxies()
    proxy = proxies.get(scheme) or proxies.get("all")
    if not proxy or proxy_bypass(host) or _in_no_proxy_network(host):
        return None
    return proxy


def _in_no_proxy_network(host):
    """urllib's proxy_bypass matches names only; a network in no_proxy covers the addresses in it."""
    import ipaddress

    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    for entry in (os.environ.get("no_proxy") or os.environ.get("NO_PROXY") or "").split(","):
        if "/" in entry:
            try:
                if address in ipaddress.ip_network(entry.strip(), strict=False):
                    return True
            except ValueError:
                continue
    return False


def _body(headers, data, json_value):
    if data is not None:
        if isinstance(data, bytes):
            return data
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        return urlencode([(key, value) for key, value in data.items() if value is not None]).encode("ascii")
    if json_value is not None:
        headers.setdefault("Content-Type", "application/json")
        return json.dumps(json_value, allow_nan=False).encode("utf-8")
    return None


def send(session, method, url, *, error, what, **kwargs):
    """Send one request; return the response unless it failed transiently, which raises `error` (transient).

    The caller reads the body: what a 4xx or 500 means differs from one service to another.
    """
    timeout = kwargs.get("timeout") or session.timeout
    try:
        response = session.request(method, url, **kwargs)
    except UnusableSetting as err:
        raise error(f"{what}: {err}") from err
    except Exception as err:
        failure = network_failure(err, timeout)
        if failure is None:
            raise
        raise error(f"{what}: {failure}", transient=True) from err
    logger.debug("%s %s: HTTP %d", method, url, response.status_code)
    if response.is_redirect:  # not followed (see HttpSession): the setting names an address that moved
        raise error(f"{what}: HTTP {response.status_code}, a redirect to {response.headers['Location']}: "
                    "set the address it points to")
    if response.status_code in TRANSIENT_STATUSES:
        raise error(
            f"{what}: HTTP {response.status_code} {response.reason or ''}".rstrip(),
            transient=True,
            retry_after=retry_after_seconds(response.headers.get("Retry-After") or _json_retry_after(response)),
        )
    return response


def network_failure(err, timeout):
    """What went wrong on the way, for a request that raised `err`; None when `err` is not the network's (a bug).
    Every such failure is transient: the next attempt may find the service back."""
    if isinstance(err, TimeoutError):
        return f"no answer within {timeout:g} s (timeout)"
    if isinstance(err, OSError):  # refused, reset, DNS, TLS, closed on us (RemoteDisconnected is one too)
        return f"cannot connect ({first_line(err)})"
    if isinstance(err, http.client.HTTPException):
        # transient too, though the request may have been acted on: every create is preceded, on each attempt, by
        # a look-up (CloudPanel's database, Matomo by URL, the served certificate, the row re-read), so a resend
        # doubles nothing. A new call that creates must keep to that rule.
        return f"the answer was cut short or malformed ({first_line(err)})"
    return None


def _json_retry_after(response):
    """The clpctl gateway says how long to wait in its JSON body (`retryAfter`), not in a header."""
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("retryAfter") if isinstance(body, dict) else None


def retry_after_seconds(value, now=None):
    """Seconds from a Retry-After header (a number or an HTTP date), or None."""
    if not value:
        return None
    value = str(value).strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


def first_line(err):
    """The first line of an exception's message, or its class when it has none."""
    text = str(err).strip().splitlines()
    return text[0][:200] if text else err.__class__.__name__


def body_excerpt(response, limit=120):
    """A short, single-line view of a body we could not understand, for the error message."""
    import re

    text = re.sub(r"<[^>]+>", " ", response.text or "")
    text = " ".join(text.split())
    if not text:
        return "an empty body"
    return repr(text[:limit] + ("…" if len(text) > limit else ""))
