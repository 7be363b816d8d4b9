"""Remote delivery against hostile or broken peers (the OpenSMTPD
CVE-2020-8794 class and its kin): exchangers whose replies are out of
order, malformed or laden with bytes meant for the bounce, and routing
edge cases. Whatever the peer does, every recipient must end delivered,
deferred or bounced with a clean DSN, and queued must not crash (the
sanitizer build's reports fail the test at teardown).

The peer here is a tiny scripted SMTP server (`Peer`): a function per
command verb returns the raw bytes to send, so a test can send what no
real server library would."""

import email
import email.policy
import re
import socket
import threading
import time

import pytest

from dnsfix import FakeDNS
from hermod import wait_for
from sinkfix import Sink, shared_port
from test_remote import SENDER, submit

HOSTS = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]


class Peer(threading.Thread):
    """A scripted SMTP server. `replies` maps an upper-case verb (EHLO,
    MAIL, RCPT, DATA, DOT, QUIT, RSET, GREETING) to bytes or to a function
    of (peer, line) returning bytes (None: close the connection). Missing
    verbs get a plain 250 (DATA: 354; DOT: 250). Every command line and
    message is recorded in .lines and .messages."""

    DEFAULTS = {
        "GREETING": b"220 peer ESMTP\r\n",
        "EHLO": b"250-peer\r\n250 PIPELINING\r\n",
        "DATA": b"354 go ahead\r\n",
        "DOT": b"250 2.0.0 stored\r\n",
        "QUIT": b"221 2.0.0 bye\r\n",
    }

    def __init__(self, host, port, replies):
        super().__init__(daemon=True)
        self.replies = dict(self.DEFAULTS, **replies)
        self.lines, self.messages, self.conns = [], [], 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(16)
        self.start()

    def answer(self, verb, line):
        r = self.replies.get(verb, b"250 2.0.0 ok\r\n")
        return r(self, line) if callable(r) else r

    def run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns += 1
            threading.Thread(target=self.session, args=(c,), daemon=True).start()

    def send(self, c, data):
        if data is None:
            raise EOFError
        c.sendall(data)

    def session(self, c):
        c.settimeout(60)
        f = c.makefile("rb")
        try:
            self.send(c, self.answer("GREETING", b""))
            for line in f:
                self.lines.append(line)
                verb = line[:4].upper().decode("ascii", "replace")
                if verb == "DATA":
                    r = self.answer("DATA", line)
                    self.send(c, r)
                    if not r.startswith(b"354"):
                        continue
                    body = []
                    for dl in f:
                        if dl == b".\r\n":
                            break
                        body.append(dl)
                    else:
                        return      # no dot: no message
                    self.messages.append(b"".join(body))
                    self.send(c, self.answer("DOT", b"."))
                elif verb == "QUIT":
                    self.send(c, self.answer("QUIT", line))
                    return
                else:
                    self.send(c, self.answer(verb, line))
        except (OSError, EOFError):
            pass
        finally:
            f.close()
            c.close()

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


@pytest.fixture
def env(hermod):
    dns = FakeDNS()
    port = shared_port(HOSTS)
    hermod.add_user("sender")
    hermod.conf(dns_servers=dns.spec, smtp_port=port, smtp_connect_timeout="3s",
                smtp_helo_timeout="5s", smtp_connection_cache_time_limit="1s")
    hermod.newaliases()
    peers = []

    class Env:
        pass
    e = Env()
    e.h, e.dns, e.port = hermod, dns, port

    def peer(host, **replies):
        p = Peer(host, port, replies)
        peers.append(p)
        return p
    e.peer = peer

    def sink(host, **kw):
        s = Sink(host, port, **kw)
        peers.append(s)
        return s
    e.sink = sink

    def mx(domain, addr):
        dns.add(domain, "MX", "10 mx.%s." % domain)
        dns.add("mx." + domain, "A", addr)
    e.mx = mx
    try:
        yield e
    finally:
        hermod.close()
        for p in peers:
            p.close()
        dns.close()


def result_of(h, rcpt, timeout=30):
    """The first status= log line of rcpt: (dsn, status, text)."""
    pat = re.compile(r"to=<%s>.*dsn=([0-9.]+), status=(\w+) \((.*)\)" % re.escape(rcpt))

    def find():
        m = pat.search(h.log("queued"))
        return m.groups() if m else None
    return wait_for(find, timeout, what="a result for " + rcpt)


def results_of(h, rcpt):
    pat = re.compile(r"to=<%s>.*dsn=([0-9.]+), status=(\w+)" % re.escape(rcpt))
    return pat.findall(h.log("queued"))


def bounce_of(h, n=1, timeout=30):
    raw = h.wait_messages("sender", n, timeout)[n - 1]
    return raw, email.message_from_bytes(raw, policy=email.policy.default)


# ---- replies out of step with the commands ------------------------------------


def test_250_to_data_is_not_a_delivery(env):
    """A server that answers DATA with 250 instead of 354 never got the
    message: deferred (a protocol error), never logged as sent; the next
    attempt, to a sane server, delivers it."""
    state = {"n": 0}

    def data(peer, line):
        state["n"] += 1
        return b"250 2.0.0 ok, whatever\r\n" if state["n"] == 1 else b"354 go\r\n"
    env.mx("d.example", "127.0.0.2")
    p = env.peer("127.0.0.2", DATA=data)
    env.h.start("lmtpd", "queued")
    submit(env.h, ["a@d.example"])
    dsn, status, text = result_of(env.h, "a@d.example")
    assert status == "deferred" and dsn.startswith("4."), (dsn, status, text)
    wait_for(lambda: len(p.messages) == 1, 30, what="second attempt")
    wait_for(lambda: ("sent", ) in [(s,) for _, s in results_of(env.h, "a@d.example")],
             10, what="sent")
    assert [s for _, s in results_of(env.h, "a@d.example")] == ["deferred", "sent"]


def test_replies_ahead_of_commands_desync(env):
    """A server that sends two extra 250 lines with its greeting: without
    PIPELINING each reply is taken for the next command, so DATA's answer
    is really a RCPT's 250. The message must not count as delivered."""
    env.mx("s.example", "127.0.0.2")
    p = env.peer("127.0.0.2", GREETING=b"220 peer\r\n250 2.0.0 early\r\n250 2.0.0 early\r\n",
                 EHLO=b"250 peer\r\n")
    env.h.start("lmtpd", "queued")
    submit(env.h, ["a@s.example"])
    dsn, status, text = result_of(env.h, "a@s.example")
    assert status == "deferred" and dsn.startswith("4."), (dsn, status, text)
    assert p.messages == []
