"""DNS: the addresses a domain's A and AAAA records name, asked as Let's Encrypt asks before it validates there."""

import ipaddress
from collections.abc import Sequence

import dns.exception
import dns.nameserver
import dns.resolver

from hosting_automator.errors import DnsError, DnsSetupError


class DnsClient:
    """Asks `resolvers` ((address, port) pairs), or the system's when there are none, with `timeout` seconds for
    each whole look-up."""

    def __init__(self, resolvers: Sequence[tuple[str, int]], timeout: float) -> None:
        """Raises:
            DnsSetupError: no resolvers were given and the system has none configured.
        """
        try:
            self.resolver = dns.resolver.Resolver(configure=not resolvers)
        except dns.exception.DNSException as err:  # no /etc/resolv.conf, or one without a nameserver line
            raise DnsSetupError(f"DNS: this machine has no name server configured ({err}): set DNS_RESOLVERS, "
                                "like DNS_RESOLVERS=1.1.1.1,8.8.8.8") from err
        if resolvers:
            self.resolver.nameservers = [dns.nameserver.Do53Nameserver(address, port) for address, port in resolvers]
        self.resolver.timeout = self.resolver.lifetime = timeout
        self.resolver.cache = None  # each run asks afresh: a record that moved must be seen at once

    def addresses(self, domain: str) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        """The addresses the domain's A and AAAA records name; empty when the name does not exist or has none.

        Raises:
            DnsError: transient, when no name server gave an answer: a timeout, SERVFAIL, or garbage.
        """
        found = set()
        for record_type in ("A", "AAAA"):
            try:
                answer = self.resolver.resolve(domain, record_type, search=False, raise_on_no_answer=False)
            except dns.resolver.NXDOMAIN:
                return set()
            except dns.resolver.LifetimeTimeout as err:
                raise DnsError(f"DNS: no answer for {domain} {record_type} within {self.resolver.lifetime:g} s",
                               transient=True) from err
            except dns.exception.DNSException as err:  # SERVFAIL, refused, or an answer that cannot be read
                raise DnsError(f"DNS: {domain} {record_type} could not be resolved ({err})", transient=True) from err
            found.update(ipaddress.ip_address(record.address) for record in answer.rrset or ())
        return found
