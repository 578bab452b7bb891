"""supabase-py's httpx client carried over the same http.client connections as every other service: httpx still
builds each request and reads each answer, but its own transport (httpcore, h11) cost as much CPU again per
request (bench/)."""

import httpx

from hosting_automator.core.http import failure_kind


class SessionTransport(httpx.BaseTransport):
    """An httpx transport sending through an HttpSession; network failures become the httpx exceptions httpx's
    own transport raises, so the client above reads them as it always did."""

    def __init__(self, session):
        self.session = session

    def handle_request(self, request):
        url = request.url
        timeout = request.extensions.get("timeout", {}).get("read", self.session.timeout)
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in request.headers.raw}
        try:
            status, reason, answer_headers, content = self.session.exchange(
                url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80),
                url.raw_path.decode("ascii"), request.method, request.read() or None, headers, timeout)
        except Exception as err:
            kind = failure_kind(err)
            if kind == "timeout":
                raise httpx.ReadTimeout(str(err) or "timed out", request=request) from err
            if kind == "connect":
                raise httpx.ConnectError(str(err), request=request) from err
            if kind == "protocol":
                raise httpx.RemoteProtocolError(str(err), request=request) from err
            raise
        return httpx.Response(status, headers=answer_headers.items(), stream=httpx.ByteStream(content),
                              extensions={"reason_phrase": reason.encode("latin-1", errors="replace")})

    def close(self):
        self.session.close()
