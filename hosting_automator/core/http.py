"""The HTTP connection pool every requests-based service shares: a timeout on every call, and failures sorted into
transient (worth retrying) and final, so the services only interpret bodies."""

import email.utils
import functools
import json
import logging
import os
import time
from urllib.parse import urlencode

logger = logging.getLogger(__name__)

DEFAULT_USER_AGENT = "hosting-automator"
TRANSIENT_STATUSES = {429, 502, 503, 504, 520}  # 520: Cloudflare's "the origin answered something odd"


class HttpSession:
    """requests' connection pool (its HTTPAdapter) without requests.Session's per-request work.

    Session.request merges session settings, cookies, hooks and the environment into every call, and encodes URL
    and body through generic code: 0.6 to 1 ms of CPU a request, more than a service on the same machine takes to
    answer (bench/). Everything it merges is fixed for a run, so it is settled here once:
    - the CA bundle from REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE, as requests reads them;
    - proxies once per scheme and host, from the environment (no_proxy honoured); .netrc never;
    - each base URL prepared once by requests itself (IDNA host, quoting, credentials in the URL as Basic auth).
    No cookies are kept between calls, and redirects are not followed: a redirected POST loses its body (and
    Matomo's token with it), so a redirect is reported for the setting to be fixed (see `send`).
    """

    def __init__(self, timeout, pool_size=1):
        from requests.adapters import HTTPAdapter
        from requests.utils import default_headers

        self.timeout = timeout
        self.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        self.headers = default_headers()
        self.headers["User-Agent"] = DEFAULT_USER_AGENT
        self.adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(pool_size, 1))
        self._proxies_by_origin = {}

    def request(self, method, url, *, params=None, data=None, json=None, headers=None, timeout=None):
        """Send one request and read its whole body (which hands the connection back to the pool).

        `data`: a dict (form-encoded, None values left out, as requests does) or bytes; `json`: any JSON value.
        """
        from requests import PreparedRequest

        prepared = PreparedRequest()
        prepared.method = method
        prepared.url, authorization = _prepared_url(url, tuple(params.items()) if params else ())
        prepared.headers = self.headers.copy()
        if authorization:
            prepared.headers["Authorization"] = authorization
        if headers:
            prepared.headers.update(headers)
        prepared.body = _body(prepared.headers, data, json)
        response = self.adapter.send(prepared, timeout=self.timeout if timeout is None else timeout,
                                     verify=self.verify, proxies=self._proxies(url))
        response.content  # noqa: B018 - reading the body releases the connection to the pool
        return response

    def get(self, url, **kwargs):
        return self.request("GET", url, **kwargs)

    def post(self, url, **kwargs):
        return self.request("POST", url, **kwargs)

    def close(self):
        self.adapter.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def _proxies(self, url):
        origin = "/".join(url.split("/", 3)[:3])
        proxies = self._proxies_by_origin.get(origin)
        if proxies is None:
            from requests.utils import get_environ_proxies

            proxies = self._proxies_by_origin[origin] = get_environ_proxies(url)
        return proxies


def new_session(timeout, pool_size=1):
    """The run's HTTP session: every request gets `timeout` unless the call sets its own."""
    return HttpSession(timeout, pool_size)


@functools.lru_cache(maxsize=64)
def _prepared_url(url, params):
    """The URL with its query as requests prepares it, and the Basic auth header of credentials in the URL.

    Cached: the services call a handful of fixed URLs (Matomo's varies only by API method)."""
    from requests import PreparedRequest
    from requests.exceptions import InvalidSchema

    if not url.lower().startswith(("http://", "https://")):
        raise InvalidSchema(f"no connection adapters were found for {url!r}")
    template = PreparedRequest()
    template.prepare(method="GET", url=url, params=list(params))
    return template.url, template.headers.get("Authorization")


def _body(headers, data, json_value):
    if data is not None:
        if isinstance(data, bytes):
            body = data
        else:
            body = urlencode([(key, value) for key, value in data.items() if value is not None]).encode("ascii")
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
    elif json_value is not None:
        body = json.dumps(json_value, allow_nan=False).encode("utf-8")
        headers.setdefault("Content-Type", "application/json")
    else:
        return None
    headers["Content-Length"] = str(len(body))
    return body


def send(session, method, url, *, error, what, **kwargs):
    """Send one request; return the response unless it failed transiently, which raises `error` (transient).

    The caller reads the body: what a 4xx or 500 means differs from one service to another.
    """
    import requests

    try:
        response = session.request(method, url, **kwargs)
    except requests.Timeout as err:
        timeout = kwargs.get("timeout", getattr(session, "timeout", None))
        waited = f" within {timeout:g} s" if isinstance(timeout, (int, float)) else ""
        raise error(f"{what}: no answer{waited} (timeout)", transient=True) from err
    except requests.ConnectionError as err:
        raise error(f"{what}: cannot connect ({first_line(err)})", transient=True) from err
    except requests.RequestException as err:
        raise error(f"{what}: request failed ({first_line(err)})") from err
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
