"""What the CloudPanel client's tests share, over either transport: the gateway's key, and a stand-in for
`served_certificate(domain)` with its three answers (see the `served` fixture of tests/conftest.py)."""

from hosting_automator.services.served_certificate import ServedCertificate

GATEWAY_TOKEN = "gw-token-7f3a9c1e5b2d8f4a"

NOT_SERVED = ServedCertificate(False, "no certificate could be read from 127.0.0.1:443 ([Errno 111] Connection "
                                      "refused)")
EXPIRING = ServedCertificate(False, "the certificate served expires in 5 days", 5.0)
VALID = ServedCertificate(True, "a valid certificate is served already (80 days left)", 80.0)


class FakeServedCertificate:
    """Stands in for `served_certificate(domain)`: gives its answers in turn (the last one from then on) and
    records every look."""

    def __init__(self, *answers):
        self.answers = list(answers) or [NOT_SERVED]
        self.looks = []

    def __call__(self, domain):
        self.looks.append(domain)
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
