"""Socket helpers for the tests of HTTP clients."""

import socket


def closed_port():
    """A port on 127.0.0.1 that nothing listens on (bound once to find a free one, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
