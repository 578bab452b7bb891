"""A DNS stand-in: a resolver on 127.0.0.1 (UDP, and TCP on the same port) that answers A and AAAA queries from a
table of names, with the faults a real resolver shows (SERVFAIL, silence, garbage, truncation, slowness).

    with FakeDns({"example.com": ["203.0.113.9", "2001:db8::9"]}) as fake:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers, resolver.port = [fake.address], fake.port
        fake.set("www.example.com", ["198.51.100.7"])
        fake.fault = once(DnsFault.servfail())  # once() from tests/standins/faults.py

Answers: a name in `records` gets its addresses of the asked type (IPv4 -> A, IPv6 -> AAAA); a name in `records`
without an address of that type (or asked for any other type) gets NOERROR with an empty answer (NODATA); a name
not in `records` gets NXDOMAIN. No SOA is added to negative answers. Names are compared case-insensitively and
without the final dot.

Built on dnspython (dns.message.from_wire / make_response, dns.rrset). See README.md in this folder.
"""

from __future__ import annotations

import ipaddress
import os
import random
import socketserver
import struct
import threading
import time
from collections.abc import MutableMapping

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from ._servers import POLL_INTERVAL, ConnectionServer, StandinServer, Startable


_TCP_IDLE_SECONDS = 5.0           # a TCP connection with no next query for this long is closed
_TCP_QUERIES_PER_CONNECTION = 1000  # bound on the queries one TCP connection may send


def _normal_name(name) -> str:
    """`Example.COM.` -> `example.com`: how names are keyed, logged and handed to the fault hook."""
    if not isinstance(name, dns.name.Name):
        name = dns.name.from_text(str(name))
    return name.to_text(omit_final_dot=True).lower()


class DnsFault:
    """What the stand-in does instead of (or before) answering one query.

    kinds:
      rcode      answer with this response code and empty sections: `servfail()`, `status(rcode)`
      drop       send nothing (UDP) or close the connection without answering (TCP): the client times out
      garbage    send bytes that are no DNS message (`data`, or a header-sized blob that cannot parse)
      truncated  UDP: the answer with the TC bit set and its sections emptied (a resolver then asks again over
                 TCP, where the hook is called again); TCP, or `cut=True` on either: the real answer cut in half
      delay      sleep `seconds` (cut short by stop()), then answer normally
    """

    __slots__ = ("kind", "rcode", "data", "cut", "seconds")

    def __init__(self, kind, rcode=None, data=None, cut=False, seconds=0.0):
        self.kind, self.rcode, self.data, self.cut, self.seconds = kind, rcode, data, cut, float(seconds)

    @classmethod
    def servfail(cls):
        return cls("rcode", rcode=dns.rcode.SERVFAIL)

    @classmethod
    def status(cls, rcode):
        """Any response code, e.g. `DnsFault.status(dns.rcode.REFUSED)` or `DnsFault.status("REFUSED")`."""
        if isinstance(rcode, str):
            rcode = dns.rcode.from_text(rcode)
        return cls("rcode", rcode=dns.rcode.Rcode.make(rcode))

    @classmethod
    def drop(cls):
        return cls("drop")

    @classmethod
    def garbage(cls, data=None):
        return cls("garbage", data=data)

    @classmethod
    def truncated(cls, cut=False):
        return cls("truncated", cut=cut)

    @classmethod
    def delay(cls, seconds):
        return cls("delay", seconds=seconds)

    def __repr__(self):
        if self.kind == "rcode":
            return f"DnsFault.status({dns.rcode.to_text(self.rcode)!r})"
        if self.kind == "delay":
            return f"DnsFault.delay({self.seconds})"
        if self.kind == "truncated":
            return f"DnsFault.truncated(cut={self.cut})"
        return f"DnsFault.{self.kind}()"


class DnsRecords(MutableMapping):
    """name -> list of addresses, thread-safe. Names are normalised (case, final dot); addresses are checked and
    kept in their canonical text form. A single address may be given as a string."""

    def __init__(self, lock, initial=None):
        self._lock = lock
        self._data = {}
        for name, addresses in (initial or {}).items():
            self[name] = addresses

    @staticmethod
    def _addresses(addresses):
        if isinstance(addresses, (str, ipaddress.IPv4Address, ipaddress.IPv6Address)):
            addresses = [addresses]
        return tuple(str(ipaddress.ip_address(str(a))) for a in addresses)

    def __getitem__(self, name):
        with self._lock:
            return list(self._data[_normal_name(name)])

    def __setitem__(self, name, addresses):
        clean = self._addresses(addresses)
        with self._lock:
            self._data[_normal_name(name)] = clean

    def __delitem__(self, name):
        with self._lock:
            del self._data[_normal_name(name)]

    def __iter__(self):
        with self._lock:
            return iter(list(self._data))

    def __len__(self):
        with self._lock:
            return len(self._data)

    def lookup(self, name):
        """The addresses of an already normalised name, or None when the name is unknown (one lock, no copy)."""
        with self._lock:
            return self._data.get(name)

    def __repr__(self):
        with self._lock:
            return f"DnsRecords({ {k: list(v) for k, v in self._data.items()} !r})"


class _Cut:
    """The answer's wire form, to be sent cut in half."""

    __slots__ = ("wire",)

    def __init__(self, wire):
        self.wire = wire


class _UdpHandler(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        out = self.server.owner._respond(data, "udp")
        if out is None:
            return
        if isinstance(out, _Cut):
            out = out.wire[: len(out.wire) // 2]
        try:
            sock.sendto(out, self.client_address)
        except OSError:  # stopped meanwhile
            pass


def _recv_exactly(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


class _TcpHandler(socketserver.BaseRequestHandler):
    def handle(self):
        sock = self.request
        sock.settimeout(_TCP_IDLE_SECONDS)
        try:
            for _ in range(_TCP_QUERIES_PER_CONNECTION):
                head = _recv_exactly(sock, 2)
                if head is None:
                    return
                wire = _recv_exactly(sock, struct.unpack("!H", head)[0])
                if wire is None:
                    return
                out = self.server.owner._respond(wire, "tcp")
                if out is None:
                    return  # drop: close without answering
                if isinstance(out, _Cut):  # promise the whole answer, send half of it, close
                    sock.sendall(struct.pack("!H", len(out.wire)) + out.wire[: len(out.wire) // 2])
                    return
                sock.sendall(struct.pack("!H", len(out)) + out)
        except OSError:  # the client went away, the idle timeout, or stop()
            return


class _UdpServer(StandinServer, socketserver.ThreadingUDPServer):
    daemon_threads = True
    block_on_close = False
    max_packet_size = 65535


class _TcpServer(ConnectionServer, socketserver.ThreadingTCPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 64


class FakeDns(Startable):
    """A resolver on 127.0.0.1 answering from `records`; see the module's docstring.

    Common to the stand-ins: `fault = callable(name, rdtype) -> None | DnsFault` (name normalised, rdtype as text,
    e.g. "AAAA"), `latency` (seconds before every answer), `injected_latency_seconds`, `requests_log` (a list of
    (name, rdtype) for every query that parsed, over either transport; `record_requests = False` stops it),
    `request_count` (every message received, parsed or not), `tcp_request_count`, `start()` / `stop()` (start
    again reuses the port), context manager.
    """

    name = "dns"
    address = "127.0.0.1"

    def __init__(self, records=None, ttl=60, tcp=True):
        self.lock = threading.RLock()
        self.records = DnsRecords(self.lock, records)
        self.ttl = int(ttl)
        self.tcp = tcp
        self.fault = None
        self.latency = 0.0
        self.injected_latency_seconds = 0.0
        self.requests_log = []
        self.record_requests = True
        self.request_count = 0
        self.tcp_request_count = 0
        self._port = 0
        self._servers = []
        self._threads = []
        self._stopping = threading.Event()

    # -- records ----------------------------------------------------------------------------------------------------
    def set(self, name, addresses):
        """Give `name` these addresses (IPv4 and/or IPv6; an empty list makes every A/AAAA answer NODATA)."""
        self.records[name] = addresses

    def remove(self, name):
        """Forget `name`: it is NXDOMAIN from now on. No error when it was unknown."""
        self.records.pop(name, None)

    # -- life cycle -------------------------------------------------------------------------------------------------
    @property
    def resolvers_setting(self):
        """`127.0.0.1:PORT`, the form of an entry of the job's DNS_RESOLVERS setting."""
        return f"{self.address}:{self._port}"

    def start(self):
        if self._servers:
            return self
        self._stopping.clear()
        for _ in range(20):  # UDP picks the port; TCP must get the same number, which another socket may hold
            udp = _UdpServer((self.address, self._port), _UdpHandler, self)
            if not self.tcp:
                servers = [udp]
                break
            try:
                servers = [udp, _TcpServer((self.address, udp.server_address[1]), _TcpHandler, self)]
                break
            except OSError:
                udp.server_close()
                if self._port:
                    raise
        else:
            raise OSError("no port free for both UDP and TCP on 127.0.0.1")
        self._port = servers[0].server_address[1]
        self._servers = servers
        for server in servers:
            kind = "udp" if isinstance(server, _UdpServer) else "tcp"
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": POLL_INTERVAL},
                                      name=f"dns-{kind}-{self._port}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self):
        """Stop answering (delayed answers included) and cut open TCP connections; start() again reuses the port."""
        servers, self._servers = self._servers, []
        self._stopping.set()
        for server in servers:
            server.shutdown()
            if isinstance(server, _TcpServer):
                server.cut_connections()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []

    def clear_log(self):
        with self.lock:
            self.requests_log.clear()

    # -- answering ----------------------------------------------------------------------------------------------------
    def _sleep(self, seconds):
        if seconds and seconds > 0:
            started = time.monotonic()
            self._stopping.wait(seconds)
            with self.lock:
                self.injected_latency_seconds += time.monotonic() - started

    def _respond(self, wire, transport):
        """The bytes to send for one query message, a _Cut, or None for no answer at all."""
        with self.lock:
            self.request_count += 1
            if transport == "tcp":
                self.tcp_request_count += 1
        try:
            query = dns.message.from_wire(wire)
        except Exception:  # noqa: BLE001 - whatever dnspython refuses: FORMERR when the id can be read, else nothing
            if len(wire) < 2:
                return None
            return wire[:2] + struct.pack("!HHHHH", 0x8000 | dns.rcode.FORMERR, 0, 0, 0, 0)
        if not query.question or query.flags & dns.flags.QR:
            response = dns.message.make_response(query, recursion_available=True)
            response.set_rcode(dns.rcode.FORMERR)
            return response.to_wire()
        question = query.question[0]
        name, rdtype = _normal_name(question.name), dns.rdatatype.to_text(question.rdtype)
        with self.lock:
            if self.record_requests:
                self.requests_log.append((name, rdtype))
        self._sleep(self.latency)
        hook = self.fault
        fault = hook(name, rdtype) if hook is not None else None
        if isinstance(fault, DnsFault):
            if fault.kind == "drop":
                return None
            if fault.kind == "garbage":
                return self._garbage(fault, wire)
            if fault.kind == "rcode":
                response = dns.message.make_response(query, recursion_available=True)
                response.set_rcode(fault.rcode)
                return response.to_wire()
            if fault.kind == "delay":
                self._sleep(fault.seconds)
                if self._stopping.is_set():
                    return None
        response = self._answer(query, question, name)
        if isinstance(fault, DnsFault) and fault.kind == "truncated":
            if transport == "udp" and not fault.cut:
                return self._truncated(query)
            return _Cut(response.to_wire())
        max_size = 65535
        if transport == "udp":
            max_size = query.payload if query.edns >= 0 else 512
        try:
            return response.to_wire(max_size=max_size)
        except dns.exception.TooBig:  # a real server truncates what does not fit a datagram
            return self._truncated(query)

    def _answer(self, query, question, name):
        response = dns.message.make_response(query, recursion_available=True)
        if query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
            return response
        if question.rdclass != dns.rdataclass.IN:
            response.set_rcode(dns.rcode.REFUSED)
            return response
        addresses = self.records.lookup(name)
        if addresses is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
            return response
        version = {dns.rdatatype.A: 4, dns.rdatatype.AAAA: 6}.get(question.rdtype)
        matching = [a for a in addresses if version and ipaddress.ip_address(a).version == version]
        if matching:  # else NOERROR with an empty answer: NODATA
            response.answer.append(dns.rrset.from_text_list(question.name, self.ttl, dns.rdataclass.IN,
                                                            question.rdtype, matching))
        return response

    @staticmethod
    def _truncated(query):
        response = dns.message.make_response(query, recursion_available=True)
        response.flags |= dns.flags.TC
        return response.to_wire()

    @staticmethod
    def _garbage(fault, wire):
        if fault.data is not None:
            return bytes(fault.data)
        # The query's id and a response's flags (so a client cannot discard it as someone else's answer), then a
        # header claiming 65535 questions and a few random bytes: it never parses.
        return wire[:2] + b"\x81\x80\xff\xff\x00\x00\x00\x00\x00\x00" + os.urandom(random.randint(4, 24))
