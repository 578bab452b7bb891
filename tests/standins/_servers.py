"""What the stand-ins' servers share, whatever they speak (HTTP, DNS, TLS)."""

from __future__ import annotations

import socket
import sys
import threading

# How often a server's loop looks whether stop() was asked: stop() waits up to this long, and every test that uses
# the stand-ins stops several of them (at 0.1 to 0.2 s, stopping them was some 40 s of the whole suite).
POLL_INTERVAL = 0.01


class Startable:
    """A stand-in's life cycle as a context manager: start() on entering, stop() on leaving; `port` once started
    (start() again after a stop() reuses it)."""

    _port = 0

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def port(self):
        return self._port


class StandinServer:
    """A socketserver mixin: the server of `owner`, the stand-in its handlers work for; a client that goes away, or
    a stop(), is normal for a stand-in, so no traceback for it."""

    def __init__(self, address, handler, owner):
        self.owner = owner
        super().__init__(address, handler)

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class ConnectionServer(StandinServer):
    """The same, for connections (TCP): remembers every open one, so that stop() can cut them, kept-alive ones
    included (`cut_connections()`)."""

    def __init__(self, address, handler, owner):
        self.open_sockets = set()
        self.sockets_lock = threading.Lock()
        super().__init__(address, handler, owner)

    def process_request(self, request, client_address):
        with self.sockets_lock:
            self.open_sockets.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self.sockets_lock:
            self.open_sockets.discard(request)
        super().shutdown_request(request)

    def cut_connections(self):
        with self.sockets_lock:
            open_sockets = list(self.open_sockets)
        for sock in open_sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
