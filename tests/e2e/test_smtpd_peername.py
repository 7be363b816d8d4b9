"""smtpd's client name (smtpd_peername_lookup, as Postfix): before the
greeting the PTR of the client's address, then the A/AAAA of that name;
the name is used (connect/disconnect log lines, Received:, XFORWARD NAME
to queued) only when it resolves back to the client's address, else
"unknown". Clients bind to 127.0.0.x addresses that /etc/hosts does not
name, so the answers come from FakeDNS (dnsfix.py). Also: a name server
that refuses or never answers (the greeting still comes, bounded), clients
that vanish while their lookup runs (under the sanitizer build: no report),
lookups turned off, smtps, and the default resolver (/etc/hosts for
127.0.0.1)."""

import glob
import os
import signal
import socket
import ssl
import struct
import threading
import time

import pytest

from dnsfix import FakeDNS, free_udp_port
from hermod import wait_for
from test_smtpd import ALICE, Client, send_ok, start

DNS_TRIES_SEC = 2 * 5       # the resolver's tries x timeout (lib/dns.c)


@pytest.fixture
def dns():
    d = FakeDNS()
    yield d
    d.close()


def ptr(addr):
    return ".".join(reversed(addr.split("."))) + ".in-addr.arpa"


def named(dns, addr, name, a=None):
    dns.add(ptr(addr), "PTR", name + ".")
    dns.add(name, "A", a or addr)


def lookup_on(hermod, dns_spec, **conf):
    start(hermod, smtpd_peername_lookup="yes", dns_servers=dns_spec, **conf)


def deliver_from(hermod, source, helo="client.test"):
    with Client(hermod.smtp_port, source=source) as c:
        assert c.greeting[0] == 220
        assert c.cmd("EHLO " + helo)[0] == 250
        send_ok(c)
        c.cmd("QUIT")


def received_of(hermod, n):
    msg = hermod.wait_messages("alice", n)[-1]
    return [line for line in msg.split(b"\n") if line.startswith(b"Received: ")][0]


def test_confirmed_name(hermod, dns):
    named(dns, "127.0.0.5", "Client.Example.TEST")
    lookup_on(hermod, dns.spec)
    deliver_from(hermod, "127.0.0.5", helo="helo.test")
    assert received_of(hermod, 1) == \
        b"Received: from helo.test (client.example.test [127.0.0.5])"
    log = hermod.log("smtpd")
    assert "connect from client.example.test[127.0.0.5]" in log
    assert "client=client.example.test[127.0.0.5]," in log
    wait_for(lambda: "disconnect from client.example.test[127.0.0.5]" in hermod.log("smtpd"),
             10, what="the disconnect line")
    assert dns.queries.get((ptr("127.0.0.5"), "PTR")) == 1
    assert dns.queries.get(("client.example.test", "A")) == 1


def test_xforward_name_reaches_queued(hermod, dns):
    """lmtpd is not running: the message stays in the spool, whose file
    records the XFORWARD attributes queued got."""
    named(dns, "127.0.0.5", "client.example.test")
    hermod.add_user("alice")
    hermod.conf(smtpd_peername_lookup="yes", dns_servers=dns.spec,
                smtpd_error_sleep_time="0")
    hermod.newaliases()
    hermod.start("queued", "smtpd")
    with Client(hermod.smtp_port, source="127.0.0.5") as c:
        c.cmd("EHLO x")
        send_ok(c)

    def recorded():
        for f in glob.glob(hermod.path("spool", "**", "*"), recursive=True):
            if os.path.isfile(f):
                with open(f, "rb") as fh:
                    if b"name=client.example.test addr=127.0.0.5" in fh.read():
                        return True
        return False
    wait_for(recorded, 10, what="the queue file with the client's name")


def test_ptr_without_matching_address(hermod, dns):
    named(dns, "127.0.0.6", "liar.example.test", a="127.0.0.99")
    dns.add(ptr("127.0.0.7"), "PTR", "noaddr.example.test.")   # no A at all
    lookup_on(hermod, dns.spec)
    deliver_from(hermod, "127.0.0.6")
    deliver_from(hermod, "127.0.0.7")
    for m in hermod.wait_messages("alice", 2):
        assert b"(unknown [127.0.0." in m
    log = hermod.log("smtpd")
    assert "hostname liar.example.test does not resolve to address 127.0.0.6" in log
    assert "connect from unknown[127.0.0.6]" in log
    assert "connect from unknown[127.0.0.7]" in log


def test_bad_ptr_names_are_unknown(hermod, dns):
    dns.add(ptr("127.0.0.8"), "PTR", "127.0.0.8.")         # an address
    dns.add("127.0.0.8", "A", "127.0.0.8")
    dns.servfail.add(ptr("127.0.0.9"))
    lookup_on(hermod, dns.spec)
    for addr in ("127.0.0.8", "127.0.0.9", "127.0.0.10"):  # .10: NXDOMAIN
        with Client(hermod.smtp_port, source=addr) as c:
            assert c.greeting[0] == 220
            c.cmd("QUIT")
        wait_for(lambda: "connect from unknown[%s]" % addr in hermod.log("smtpd"), 10,
                 what="unknown " + addr)


def test_refusing_name_server(hermod):
    """Nothing listens at the server's port: refused at once, unknown."""
    lookup_on(hermod, "127.0.0.1:%d" % free_udp_port())
    t = time.monotonic()
    with Client(hermod.smtp_port, source="127.0.0.5", timeout=DNS_TRIES_SEC + 20) as c:
        assert c.greeting[0] == 220
        c.cmd("QUIT")
    assert time.monotonic() - t < DNS_TRIES_SEC + 15
    assert "connect from unknown[127.0.0.5]" in hermod.log("smtpd")


class Silent:
    """A name server that reads queries and never answers."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.spec = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.queries = 0
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                self.sock.recv(2048)
                self.queries += 1
            except OSError:
                pass

    def close(self):
        self.stop = True
        self.thread.join(5)
        self.sock.close()


def rst_close(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_silent_name_server_and_vanishing_clients(hermod):
    """The lookup times out (the resolver's tries): the greeting still
    comes, as unknown. Clients that reset or close while their lookup is
    pending are freed (the query cancelled) with no sanitizer report, and
    smtpd keeps serving."""
    silent = Silent()
    try:
        lookup_on(hermod, silent.spec)
        socks = []
        for i in range(60):
            s = socket.create_connection(("127.0.0.1", hermod.smtp_port), timeout=10,
                                         source_address=("127.0.0.%d" % (20 + i % 5), 0))
            if i % 2:
                rst_close(s)
            else:
                s.close()
        t = time.monotonic()
        with Client(hermod.smtp_port, source="127.0.0.5", timeout=DNS_TRIES_SEC + 20) as c:
            took = time.monotonic() - t
            assert c.greeting[0] == 220
            assert c.cmd("EHLO x")[0] == 250
            send_ok(c)
        assert took < DNS_TRIES_SEC + 15, took
        assert silent.queries > 0
        assert b"(unknown [127.0.0.5])" in hermod.wait_messages("alice", 1)[0]
        # The sessions that closed politely end when their lookup does.
        wait_for(lambda: hermod.log("smtpd").count("disconnect from") >= 61,
                 DNS_TRIES_SEC + 20, what="every session to end")
        # The 30 that reset the connection went during their lookup.
        assert hermod.log("smtpd").count("lost connection after CONNECT from unknown[127.0.0.2") >= 30
        for s in socks:
            s.close()
    finally:
        silent.close()


def test_vanishing_clients_fast_server(hermod, dns):
    """Clients that connect and go at once while FakeDNS answers: lookups
    pending, answered, cancelled in every order."""
    for i in range(5):
        named(dns, "127.0.0.%d" % (30 + i), "c%d.example.test" % i)
    lookup_on(hermod, dns.spec)
    for i in range(200):
        s = socket.create_connection(("127.0.0.1", hermod.smtp_port), timeout=10,
                                     source_address=("127.0.0.%d" % (30 + i % 5), 0))
        if i % 3 == 0:
            rst_close(s)
        elif i % 3 == 1:
            s.close()
        else:
            s.sendall(b"EHLO early\r\nQUIT\r\n")     # before the greeting
            s.close()
    wait_for(lambda: hermod.log("smtpd").count("disconnect from") >= 200, 60,
             what="every session to end")
    deliver_from(hermod, "127.0.0.30")
    assert b"(c0.example.test [127.0.0.30])" in received_of(hermod, 1)
    assert hermod.procs["smtpd"].poll() is None


def test_early_talker_waits_for_the_greeting(hermod, dns):
    """Commands sent before the greeting are read after it: the greeting
    comes first."""
    named(dns, "127.0.0.5", "client.example.test")
    lookup_on(hermod, dns.spec)
    s = socket.create_connection(("127.0.0.1", hermod.smtp_port), timeout=10,
                                 source_address=("127.0.0.5", 0))
    s.sendall(b"NOOP\r\n")
    data = b""
    while data.count(b"\r\n") < 2:
        chunk = s.recv(4096)
        assert chunk, data
        data += chunk
    s.close()
    assert data.startswith(b"220 "), data
    assert data.split(b"\r\n")[1].startswith(b"250 "), data


def test_lookup_off(hermod, dns):
    named(dns, "127.0.0.5", "client.example.test")
    start(hermod, smtpd_peername_lookup="no", dns_servers=dns.spec)
    deliver_from(hermod, "127.0.0.5")
    assert b"(unknown [127.0.0.5])" in received_of(hermod, 1)
    assert "connect from unknown[127.0.0.5]" in hermod.log("smtpd")
    assert not dns.queries


def test_smtps_greets_after_lookup_and_handshake(hermod, dns):
    from test_tls_auth import make_cert
    from hermod import free_port
    named(dns, "127.0.0.5", "client.example.test")
    cert, key = make_cert(hermod, "cert", "mx.example.test")
    port = free_port()
    lookup_on(hermod, dns.spec, tls_cert_file=cert, tls_key_file=key,
              smtps_listen="127.0.0.1:%d" % port)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", port), timeout=10,
                                   source_address=("127.0.0.5", 0))
    with ctx.wrap_socket(raw) as s:
        assert s.recv(4096).startswith(b"220 ")
        s.sendall(b"QUIT\r\n")
        assert s.recv(4096).startswith(b"221 ")
    assert "connect from client.example.test[127.0.0.5]" in hermod.log("smtpd")


def test_default_resolver_names_localhost_from_hosts(hermod):
    """No dns_servers: /etc/hosts answers for 127.0.0.1 (PTR and A)
    without a name server, so the greeting comes at once."""
    with open("/etc/hosts") as f:
        first = [ln.split() for ln in f if ln.split() and ln.split()[0] == "127.0.0.1"]
    if not first:
        pytest.skip("/etc/hosts does not name 127.0.0.1")
    name = first[0][1].lower()
    start(hermod, smtpd_peername_lookup="yes")
    t = time.monotonic()
    with Client(hermod.smtp_port) as c:
        assert c.greeting[0] == 220
        c.cmd("QUIT")
    assert time.monotonic() - t < 3
    wait_for(lambda: "connect from %s[127.0.0.1]" % name in hermod.log("smtpd"), 10,
             what="the name from /etc/hosts")


def test_ipv6_client_confirmed_by_aaaa(hermod, dns):
    """::1: the PTR under ip6.arpa (32 nibbles), then AAAA."""
    try:
        socket.socket(socket.AF_INET6, socket.SOCK_STREAM).bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    with open("/etc/hosts") as f:
        if any(ln.split()[:1] == ["::1"] for ln in f):
            pytest.skip("/etc/hosts names ::1")
    dns.add("1." + "0." * 31 + "ip6.arpa", "PTR", "v6.example.test.")
    dns.add("v6.example.test", "AAAA", "::1")
    port = hermod.smtp_port
    lookup_on(hermod, dns.spec, smtp_listen="127.0.0.1:%d [::1]:%d" % (port, port))
    with Client(port, host="::1") as c:
        assert c.greeting[0] == 220
        assert c.cmd("EHLO v6")[0] == 250
        send_ok(c)
    assert b"Received: from v6 (v6.example.test [IPv6:::1])" in received_of(hermod, 1)
    assert "connect from v6.example.test[::1]" in hermod.log("smtpd")


def greet_and_quit(hermod, source, timeout=60):
    with Client(hermod.smtp_port, source=source, timeout=timeout) as c:
        assert c.greeting[0] == 220
        c.cmd("QUIT")


@pytest.mark.parametrize("before", ["refusing", "bad"])
def test_sighup_takes_new_name_servers(hermod, dns, before):
    """The first client is unknown: its lookup went to a server that
    refuses, or the resolver did not start (a bad list). dns_servers
    mended and SIGHUP: the next client's name comes from the new server
    (a running resolver takes it; one that did not start starts)."""
    named(dns, "127.0.0.11", "eleven.example.test")
    lookup_on(hermod, "127.0.0.1:%d" % free_udp_port() if before == "refusing"
              else "not-an-address")
    greet_and_quit(hermod, "127.0.0.11", DNS_TRIES_SEC + 20)
    assert "connect from unknown[127.0.0.11]" in hermod.log("smtpd")
    assert ("the DNS resolver did not start" in hermod.log("smtpd")) == (before == "bad")
    hermod.conf(dns_servers=dns.spec)
    hermod.signal("smtpd", signal.SIGHUP)
    wait_for(lambda: "configuration reloaded" in hermod.log("smtpd"), 10)
    greet_and_quit(hermod, "127.0.0.11")
    assert "connect from eleven.example.test[127.0.0.11]" in hermod.log("smtpd")
    assert dns.queries.get((ptr("127.0.0.11"), "PTR")) == 1


def test_sighup_during_a_lookup_waits_for_it(hermod, dns):
    """A reload while a lookup runs (at a server that never answers)
    takes effect when that lookup ends: its client is unknown after the
    resolver's tries, the next client gets its name from the new
    server."""
    silent = Silent()
    try:
        named(dns, "127.0.0.12", "twelve.example.test")
        lookup_on(hermod, silent.spec)
        s = socket.create_connection(("127.0.0.1", hermod.smtp_port), timeout=DNS_TRIES_SEC + 20,
                                     source_address=("127.0.0.12", 0))
        wait_for(lambda: silent.queries > 0, 10, what="the lookup at the silent server")
        hermod.conf(dns_servers=dns.spec)
        hermod.signal("smtpd", signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in hermod.log("smtpd"), 10)
        assert s.makefile("rb").readline().startswith(b"220 ")
        s.close()
        assert "connect from unknown[127.0.0.12]" in hermod.log("smtpd")
        greet_and_quit(hermod, "127.0.0.12")
        assert "connect from twelve.example.test[127.0.0.12]" in hermod.log("smtpd")
    finally:
        silent.close()
