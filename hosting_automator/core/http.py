"""The requests session the gateway, Matomo and pings share; the one place failures are sorted transient or final."""

import contextvars
import logging
import os
import re
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import requests
import urllib3
from requests.adapters import HTTPAdapter

from hosting_automator.core.config import without_credentials
from hosting_automator.masking import secret_values
from hosting_automator.errors import ServiceError, SetupError

logger = logging.getLogger(__name__)

USER_AGENT = "hosting-automator"
TRANSIENT_STATUSES = {429, 502, 503, 504, 520}  # 520: Cloudflare's "the origin answered something odd"
REFUSED_STATUSES = {429, 503}  # the service turned the request away: nothing was done
UNANSWERED_CREATE = "; it may still have been made, so it is not sent again this run"
_ERRNO = re.compile(r"\[Errno [^\]]+\][^'\")]*")
# No answer of a service comes near this (a page of 1,000 rows is well under a megabyte); a larger one is refused
# before it is read whole, so that memory stays flat whatever a service sends.
MAX_ANSWER_BYTES = 4 * 1024 * 1024
_T = TypeVar("_T")


class DeadlineExceeded(requests.Timeout):
    """The whole exchange (connect, send, every byte of the answer) took longer than its deadline. A timeout of
    requests or httpx bounds each read, not the exchange: a service that drips its answer never meets one."""


class AnswerTooLarge(requests.RequestException):
    """A service answered more than MAX_ANSWER_BYTES."""


def within(seconds: float, call: Callable[[], _T]) -> _T:
    """call(), which makes one request, or DeadlineExceeded once `seconds` have passed. It runs in a thread of its
    own (a daemon: a request that never ends does not hold up the end of the run), in this thread's context, so
    its log lines keep the site they are about."""
    outcome = {}
    finished = threading.Event()
    context = contextvars.copy_context()

    def run():
        try:
            outcome["value"] = context.run(call)
        except BaseException as err:  # noqa: BLE001 - handed to the caller as it is
            outcome["error"] = err
        finally:
            finished.set()

    threading.Thread(target=run, name="request", daemon=True).start()
    if not finished.wait(seconds):
        raise DeadlineExceeded(f"no answer within {seconds:g} s (timeout)")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def too_large(length: int | None, what: str = "") -> str:
    """The message for an answer past MAX_ANSWER_BYTES."""
    size = f"{length:,} bytes" if length is not None else f"more than {MAX_ANSWER_BYTES:,} bytes"
    return f"{what}the answer is {size}, more than the {MAX_ANSWER_BYTES:,} any real answer takes"


def declared_length(headers: Any) -> int | None:
    """The Content-Length a service declared, or None."""
    value = str(headers.get("Content-Length") or "").strip()
    return int(value) if value.isdigit() else None


class _BoundedBody:
    """urllib3's response body, read through requests as usual, refused past MAX_ANSWER_BYTES."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self._read = 0

    def stream(self, amount: int, decode_content: bool | None = None):
        for chunk in self._raw.stream(amount, decode_content=decode_content):
            self._read += len(chunk)
            if self._read > MAX_ANSWER_BYTES:
                raise AnswerTooLarge(too_large(None))
            yield chunk

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


class Session(requests.Session):
    """A requests.Session whose every call has the run's timeout and follows no redirect.

    A redirected POST loses its body, and Matomo's token with it: `send` reports the redirect instead, so the
    setting gets fixed. Proxies (https_proxy, no_proxy, …) and the CA bundle (REQUESTS_CA_BUNDLE,
    CURL_CA_BUNDLE) come from the environment as requests reads them; SSL_CERT_FILE or SSL_CERT_DIR is used when
    neither is set, so one variable serves this session, Supabase's httpx and the served-certificate check alike.
    """

    def __init__(self, timeout: float, pool_size: int = 1) -> None:
        super().__init__()
        self.timeout = timeout
        self.headers["User-Agent"] = USER_AGENT
        self.verify = os.environ.get("SSL_CERT_FILE") or os.environ.get("SSL_CERT_DIR") or True
        adapter = HTTPAdapter(pool_maxsize=max(pool_size, 1))  # one kept-alive connection per worker thread
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    def request(self, method: str | bytes, url: str | bytes, **kwargs: Any) -> requests.Response:
        """The answer, read whole within the timeout (a deadline for the whole exchange, not only for each read)
        and refused past MAX_ANSWER_BYTES.

        Raises:
            DeadlineExceeded: the answer was not all there within the timeout.
            AnswerTooLarge: it was larger than MAX_ANSWER_BYTES.
            requests.RequestException: as requests raises it.
        """
        kwargs.setdefault("timeout", self.timeout)
        kwargs.setdefault("allow_redirects", False)
        return within(kwargs["timeout"], lambda: self._read_whole(method, url, **kwargs))

    def _read_whole(self, method, url, **kwargs):
        response = super().request(method, url, stream=True, **kwargs)
        length = declared_length(response.headers)
        if length is not None and length > MAX_ANSWER_BYTES:
            response.close()
            raise AnswerTooLarge(too_large(length))
        response.raw = _BoundedBody(response.raw)
        try:
            response.content  # noqa: B018 - read now, inside the deadline
        except AnswerTooLarge:
            response.close()
            raise
        return response


def header_retry_after(response: requests.Response) -> float | None:
    """The wait a service asks for in its Retry-After header, in seconds, or None."""
    return retry_after_seconds(response.headers.get("Retry-After"))


def send(session: Session, method: str, url: str, *, error: type[ServiceError], what: str,
         retry_after: Callable[[requests.Response], float | None] = header_retry_after, creates: bool = False,
         setting: str | None = None, setup_error: type[SetupError] | None = None,
         **kwargs: Any) -> requests.Response:
    """One request through `session`; the response, unless it failed on the way or with a transient status.

    The caller reads the body: what a 4xx or 500 means differs between services.

    `creates`: the request makes something. When it reached the service and no answer (or a proxy's "the service
    failed") came back, the service may still be making it, and a look-up cannot see it yet: the error says so
    and is not tried again this run (`may_have_acted`); only a request that provably never arrived, or was
    refused (429, 503), is.

    A redirect is a setting to fix (`setting`, the one that holds the address), and is never followed: a
    redirected POST loses its body, and a credential would go to another host. It raises `setup_error` where
    the service has one that stops the run (every request would meet the same redirect).

    Raises:
        ServiceError: of the caller's class `error`; transient for the network and for TRANSIENT_STATUSES, with
            the wait `retry_after(response)` reads; final for a URL, proxy or CA bundle that cannot be used; of
            the class `setup_error` (default `error`) for a redirect.
    """
    response = _request(session, method, url, error, what, creates, kwargs)
    logger.debug("%s %s: HTTP %d", method, response.url, response.status_code)
    if response.is_redirect:
        target = without_credentials(secret_values.excerpt(response.headers["Location"], 200))
        fix = f"set {setting} to the address it points to" if setting else "set the address it points to"
        raise (setup_error or error)(f"{what}: HTTP {response.status_code}, a redirect to {target}: {fix}")
    if response.status_code in TRANSIENT_STATUSES:
        acted = creates and response.status_code not in REFUSED_STATUSES
        raise error(f"{what}: HTTP {response.status_code} {response.reason or ''}".rstrip()
                    + (UNANSWERED_CREATE if acted else ""), transient=True, retry_after=retry_after(response),
                    may_have_acted=acted)
    return response


def _request(session, method, url, error, what, creates, kwargs):
    """The response, or requests' failure on the way as `error`."""
    try:
        return session.request(method, url, **kwargs)
    except requests.RequestException as err:
        acted = creates and is_transient(err) and reached_service(err)
        raise error(f"{what}: {network_failure(err, kwargs.get('timeout') or session.timeout)}"
                    + (UNANSWERED_CREATE if acted else ""), transient=is_transient(err), may_have_acted=acted) from err
    except ValueError as err:  # urllib3 refusing a host name before any request (a label over 63 characters, …)
        raise error(f"{what}: the address cannot be used ({_without_credentials(first_line(err))})") from err
    except OSError as err:  # requests' own check of the CA bundle path, before any connection
        raise error(f"{what}: the CA bundle cannot be used ({err}); check REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE or "
                    "SSL_CERT_FILE") from err


def reached_service(err: requests.RequestException) -> bool:
    """Whether a failed request may have reached the service: not when the connection, its TLS or the proxy's
    tunnel was never made."""
    if isinstance(err, (requests.ConnectTimeout, requests.exceptions.SSLError, requests.exceptions.ProxyError)):
        return False
    reason = err.args[0] if err.args else None
    return not isinstance(getattr(reason, "reason", None), urllib3.exceptions.NewConnectionError)


def is_transient(err: requests.RequestException) -> bool:
    """Whether the next attempt may succeed: the network's failures may pass, a malformed URL or an unusable
    proxy or bundle will not."""
    return isinstance(err, (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                            requests.exceptions.ContentDecodingError)) and not isinstance(
        err, (requests.exceptions.InvalidURL, requests.exceptions.InvalidProxyURL))


def network_failure(err: requests.RequestException, timeout: float) -> str:
    """What went wrong on the way, in words an operator can act on, without a URL's credentials."""
    if isinstance(err, (DeadlineExceeded, AnswerTooLarge)):
        return str(err)
    if isinstance(err, requests.ConnectTimeout):
        return f"cannot connect within {timeout:g} s (timeout)"
    if isinstance(err, requests.Timeout):
        return f"no answer within {timeout:g} s (timeout)"
    if isinstance(err, requests.exceptions.SSLError):
        return f"TLS failed ({_innermost(err)})"
    if isinstance(err, requests.exceptions.ProxyError):
        return f"the proxy from the environment failed ({_innermost(err)})"
    if isinstance(err, requests.ConnectionError):
        errno_text = _ERRNO.search(str(err))  # refused, unreachable, reset: "[Errno 111] Connection refused"
        if errno_text:
            return f"cannot connect ({errno_text.group(0).strip()})"
        return f"no whole answer came ({_innermost(err)})"  # closed on us, or what came was not HTTP
    if isinstance(err, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)):
        return f"no whole answer came ({_innermost(err)})"
    return f"the request cannot be sent ({_without_credentials(first_line(err))})"


def _innermost(err):
    """The message of the failure behind urllib3's wrappers ("Remote end closed connection without response")."""
    reason = err
    while True:
        inner = getattr(reason, "reason", None)
        if not isinstance(inner, Exception) and reason.args and isinstance(reason.args[-1], Exception):
            inner = reason.args[-1]
        if not isinstance(inner, Exception):
            return _without_credentials(first_line(reason))
        reason = inner


def _without_credentials(text):
    return re.sub(r"//[^/@\s]+@", "//…@", text)


def retry_after_seconds(value: str | float | None) -> float | None:
    """Seconds from a Retry-After value, or None when there is none or it cannot be read. A number (from a JSON
    body) as it is; text as RFC 9110 has it (whole seconds, or an HTTP date), read by urllib3."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return max(0.0, float(value))
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return float(_RETRY_AFTER_READER.parse_retry_after(value))
    except (urllib3.exceptions.InvalidHeader, ValueError, OverflowError):  # ValueError: a number too long for int
        return None


_RETRY_AFTER_READER = urllib3.util.Retry()  # only its reading of Retry-After is used; retries are core/retry's


def first_line(err: BaseException) -> str:
    """The first line of an exception's message, or its class when it has none."""
    text = str(err).strip().splitlines()
    return secret_values.excerpt(text[0], 200) if text else err.__class__.__name__


def body_excerpt(response: requests.Response, limit: int = 120) -> str:
    """A short, single-line view of a body we could not understand, for the error message; secrets masked first."""
    text = secret_values.excerpt(re.sub(r"<[^>]+>", " ", response.text or ""), limit)
    return repr(text) if text else "an empty body"
