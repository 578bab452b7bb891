"""Local stand-ins of the external services (Supabase/PostgREST, Matomo, clpctl, the clpctl HTTP gateway,
the HTTPS endpoint that serves certificates, a DNS resolver), for end-to-end tests, the soak test and the benchmark.

Standard library only (plus trustme for the TLS stand-in and dnspython for the DNS one). See README.md in this folder.
"""

from .faults import Fault


def start_all(*args, **kwargs):
    """See __main__.start_all; imported lazily so `python -m tests.standins` does not import it twice."""
    from .__main__ import start_all as start

    return start(*args, **kwargs)


__all__ = ["Fault", "start_all"]
