"""A DNS server fixture for the end-to-end tests: dnslib's DNSServer on
127.0.0.1 at a free UDP port, answering from a small zone the test sets
(and may change while it runs). Point Hermod at it with
`dns_servers = 127.0.0.1:PORT`.

    dns = FakeDNS()
    dns.add("example.org", "MX", "10 mx1.example.org.")
    dns.add("mx1.example.org", "A", "127.0.0.2")
    dns.servfail.add("broken.example")     # SERVFAIL for every type
    ...
    dns.close()

A name that was never added is NXDOMAIN; a name that exists without
records of the asked type gets an empty NOERROR answer (NODATA). Queries
are counted in dns.queries[(name, type)] (cache tests).
"""

import socket
import threading

from dnslib import QTYPE, RCODE, RR
from dnslib.server import BaseResolver, DNSLogger, DNSServer


def free_udp_port(host="127.0.0.1"):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class _Resolver(BaseResolver):
    def __init__(self, fix):
        self.fix = fix

    def resolve(self, request, handler):
        reply = request.reply()
        q = request.q
        name = str(q.qname).rstrip(".").lower()
        qtype = QTYPE[q.qtype]
        with self.fix.lock:
            self.fix.queries[(name, qtype)] = self.fix.queries.get((name, qtype), 0) + 1
            if name in self.fix.servfail:
                reply.header.rcode = RCODE.SERVFAIL
                return reply
            if name not in self.fix.zone:
                reply.header.rcode = RCODE.NXDOMAIN
                return reply
            for rtype, text, ttl in self.fix.zone[name]:
                if rtype == qtype:
                    reply.add_answer(*RR.fromZone("%s. %d IN %s %s" % (name, ttl, rtype, text)))
        return reply


class FakeDNS:
    def __init__(self, host="127.0.0.1"):
        self.zone = {}          # name -> [(type, rdata text, ttl)]
        self.servfail = set()
        self.queries = {}
        self.lock = threading.Lock()
        self.host = host
        self.port = free_udp_port(host)
        self.server = DNSServer(_Resolver(self), port=self.port, address=host,
                                logger=DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data"))
        self.server.start_thread()

    @property
    def spec(self):
        """The value for hermod.conf's dns_servers."""
        return "%s:%d" % (self.host, self.port)

    def add(self, name, rtype, text, ttl=60):
        with self.lock:
            self.zone.setdefault(name.rstrip(".").lower(), []).append((rtype, text, ttl))

    def exists(self, name):
        """The name exists (NODATA for every type not added)."""
        with self.lock:
            self.zone.setdefault(name.rstrip(".").lower(), [])

    def close(self):
        self.server.stop()
