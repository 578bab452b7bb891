"""DNS: which addresses a domain's A and AAAA records name, asked the way Let's Encrypt will ask before it
validates a certificate there."""

import ipaddress

import dns.exception
import dns.nameserver
import dns.resolver

from hosting_automator.errors import DnsError


class DnsClient:
    """Asks `resolvers` ((address, port) pairs), or the system's when there are none, with `timeout` seconds for
    each whole look-up."""

    def __init__(self, resolvers, timeout):
        self.resolver = dns.resolver.Resolver(configure=not resolvers)
        if resolvers:
            self.resolver.nameservers = [dns.nameserver.Do53Nameserver(address, port) for address, port in resolvers]
        self.resolver.timeout = self.resolver.lifetime = timeout
        self.resolver.cache = None  # each run asks afresh: a record that moved must be seen at once

    def addresses(self, domain):
        """The addresses the domain's A and AAAA records name; empty when the name does not exist or has none.

        Raises DnsError (transient) when no name server gave an answer: a timeout, SERVFAIL, or garbage."""
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
