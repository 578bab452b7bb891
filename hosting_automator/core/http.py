"""The requests session every HTTP service shares: a timeout on every call, and failures sorted into
transient (worth retrying) and final, so the services only interpret bodies."""

import email.utils
import logging
import os
import time

logger = logging.getLogger(__name__)

DEFAULT_USER_AGENT = "hosting-automator"
TRANSIENT_STATUSES = {429, 502, 503, 504, 520}  # 520: Cloudflare's "the origin answered something odd"


def new_session(timeout, pool_size=1):
    """A requests session whose every request gets `timeout` unless the call sets its own.

    requests re-reads the environment (proxies, CA bundle, .netrc) on every request, which costs more than a
    request to a nearby service; the environment does not change during a run, so it is read once here: the CA
    bundle variables as requests would, the proxies once per host (no_proxy honoured), .netrc never.
    """
    import requests  # imported on first use: runs that never reach Matomo or a gateway do not pay for it
    from requests.adapters import HTTPAdapter
    from requests.utils import get_environ_proxies

    proxies_by_host = {}

    class _Session(requests.Session):
        def request(self, method, url, **kwargs):
            kwargs.setdefault("timeout", timeout)
            host = url.split("/", 3)[:3]
            key = "/".join(host)
            if key not in proxies_by_host:
                proxies_by_host[key] = get_environ_proxies(url)
            kwargs.setdefault("proxies", proxies_by_host[key])
            return super().request(method, url, **kwargs)

    session = _Session()
    session.trust_env = False
    session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    session.headers["User-Agent"] = DEFAULT_USER_AGENT
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(pool_size, 1))
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def send(session, method, url, *, error, what, **kwargs):
    """Send one request; return the response unless it failed transiently, which raises `error` (transient).

    The caller reads the body: what a 4xx or 500 means differs from one service to another.
    """
    import requests

    try:
        response = session.request(method, url, **kwargs)
    except requests.Timeout as err:
        timeout = kwargs.get("timeout")
        waited = f" within {timeout:g} s" if isinstance(timeout, (int, float)) else ""
        raise error(f"{what}: no answer{waited} (timeout)", transient=True) from err
    except requests.ConnectionError as err:
        raise error(f"{what}: cannot connect ({first_line(err)})", transient=True) from err
    except requests.RequestException as err:
        raise error(f"{what}: request failed ({first_line(err)})") from err
    logger.debug("%s %s: HTTP %d", method, url, response.status_code)
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
