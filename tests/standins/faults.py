"""Fault injection shared by every stand-in: `standin.fault = callable(request_dict) -> None | Fault`."""

from __future__ import annotations

import json
import threading


class Fault:
    """What a stand-in should do instead of (or around) its normal work for one request.

    kinds:
      status      answer `status` with `body` (str, bytes or JSON-able object) and `headers`, do no work
      drop        close the socket without answering, before doing the work
      after_drop  do the work, then close the socket without answering
      delay       sleep `seconds`, then do the work normally
      later       answer `status` with `body` at once, and do the work `seconds` later, in the background (a proxy
                  that gave up waiting while the service behind it goes on)
      drip        answer 200 one byte every `seconds`, the head at once (`head=False`) or dripped too; the body
                  `body`, or a JSON list padded to `size` bytes; no work is done. It ends when the client closes
                  the connection or the stand-in stops
      huge        answer 200 with `size` bytes of a JSON list, made as they are sent (never held in memory), with
                  a Content-Length (`declared=True`) or chunked; no work is done
    """

    __slots__ = ("kind", "status_code", "body", "headers", "seconds", "size", "head", "declared")

    def __init__(self, kind, status_code=None, body=None, headers=None, seconds=0.0, size=0, head=False,
                 declared=True):
        self.kind = kind
        self.status_code = status_code
        self.body = body
        self.headers = dict(headers or {})
        self.seconds = float(seconds)
        self.size = int(size)
        self.head = head
        self.declared = declared

    @classmethod
    def status(cls, code, body="", headers=None):
        return cls("status", status_code=int(code), body=body, headers=headers)

    @classmethod
    def drop(cls):
        return cls("drop")

    @classmethod
    def after_drop(cls):
        return cls("after_drop")

    @classmethod
    def delay(cls, seconds):
        return cls("delay", seconds=seconds)

    @classmethod
    def later(cls, code, seconds, body="", headers=None):
        return cls("later", status_code=int(code), body=body, headers=headers, seconds=seconds)

    @classmethod
    def drip(cls, seconds=1.0, size=1_000_000, head=False, body=None):
        return cls("drip", status_code=200, body=body, seconds=seconds, size=size, head=head)

    @classmethod
    def huge(cls, size, declared=True):
        return cls("huge", status_code=200, size=size, declared=declared)

    def body_bytes(self):
        """The body of a `status` fault as bytes, and the content type it implies."""
        body = self.body
        if body is None:
            return b"", "text/plain; charset=utf-8"
        if isinstance(body, bytes):
            return body, "application/octet-stream"
        if isinstance(body, str):
            return body.encode("utf-8"), "text/plain; charset=utf-8"
        return json.dumps(body).encode("utf-8"), "application/json; charset=utf-8"

    def __repr__(self):
        if self.kind == "status":
            return f"Fault.status({self.status_code}, {self.body!r})"
        if self.kind == "later":
            return f"Fault.later({self.status_code}, {self.seconds})"
        if self.kind == "delay":
            return f"Fault.delay({self.seconds})"
        if self.kind == "drip":
            return f"Fault.drip({self.seconds}, head={self.head})"
        if self.kind == "huge":
            return f"Fault.huge({self.size}, declared={self.declared})"
        return f"Fault.{self.kind}()"


def once(fault, predicate=None):
    """A fault hook that injects `fault` on the first request (or DNS query) matching `predicate`, then never
    again."""
    return times(1, fault, predicate)


def times(n, fault, predicate=None):
    """A fault hook that injects `fault` on the first `n` requests matching `predicate`: an HTTP stand-in's hook
    gets the request, the DNS stand-in's the name and the record type; `predicate` gets the same."""
    state = {"left": int(n)}
    lock = threading.Lock()

    def hook(*asked):
        if predicate is not None and not predicate(*asked):
            return None
        with lock:
            if state["left"] <= 0:
                return None
            state["left"] -= 1
        return fault

    return hook
