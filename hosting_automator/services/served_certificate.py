"""The certificate served for a name now: Let's Encrypt allows five a week, so a valid one is never ordered again."""

import logging
import socket
import ssl
import time
from dataclasses import dataclass

from hosting_automator.core.http import DeadlineExceeded, within

logger = logging.getLogger(__name__)

MIN_DAYS_LEFT = 14
HOSTNAME_MISMATCH = 62  # OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH: a trusted certificate, for other names


@dataclass(frozen=True)
class ServedCertificate:
    valid: bool
    reason: str
    days_left: float | None = None
    untrusted: bool = False  # what was served does not chain to this machine's trust store


def trust_store() -> ssl.SSLContext:
    """The system trust store, loaded once per run (loading it costs tens of milliseconds)."""
    return ssl.create_default_context()


def served_certificate(domain: str, host: str, port: int, timeout: float, now: float | None = None,
                       context: ssl.SSLContext | None = None) -> ServedCertificate:
    """Connect to host:port with `domain` as SNI; valid when it verifies against the system trust store for that
    name and stays valid for MIN_DAYS_LEFT days more."""
    context = context or trust_store()

    def handshake():
        with socket.create_connection((host, port), timeout=timeout) as raw:
            with context.wrap_socket(raw, server_hostname=domain) as tls:
                return tls.getpeercert()

    try:
        certificate = within(timeout, handshake)  # a handshake that drips meets no per-read timeout
    except (DeadlineExceeded, TimeoutError):  # the whole look took too long, or one read of it did: one message
        return ServedCertificate(False, f"no certificate could be read from {host}:{port} (no answer within "
                                        f"{timeout:g} s (timeout))")
    except ssl.SSLCertVerificationError as err:
        return ServedCertificate(False, f"the certificate served does not verify ({err.verify_message})",
                                 untrusted=err.verify_code != HOSTNAME_MISMATCH)
    except (ssl.SSLError, OSError) as err:
        return ServedCertificate(False, f"no certificate could be read from {host}:{port} ({err})")
    expires = ssl.cert_time_to_seconds(certificate["notAfter"])
    days_left = (expires - (time.time() if now is None else now)) / 86400
    if days_left < MIN_DAYS_LEFT:
        return ServedCertificate(False, f"the certificate served expires in {days_left:.0f} days", days_left)
    return ServedCertificate(True, f"a valid certificate is served already ({days_left:.0f} days left)", days_left)
