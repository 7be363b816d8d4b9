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


def lmtp_submit(h, rcpts, body=b"Subject: t\r\n\r\nhi\r\n", sender=SENDER, mail_opts=()):
    """Like test_remote.submit, with options per recipient: rcpts is a
    list of (address, [options])."""
    import smtplib
    s = smtplib.LMTP(h.submit_socket)
    try:
        s.ehlo()
        assert s.mail(sender, list(mail_opts))[0] == 250
        for r, opts in rcpts:
            code, msg = s.rcpt(r, list(opts))
            assert code == 250, (r, msg)
        assert s.docmd("DATA")[0] == 354
        s.send(body + b".\r\n")
        for _ in rcpts:
            assert s.getreply()[0] == 250
    finally:
        s.close()


# ---- what the client refuses to send must not shift the others' results ----------


def test_long_orcpt_keeps_recipients_apart(env):
    """An ORCPT queued accepts (RFC 3461 allows 500 characters) but that
    the client once refused to put on the line: the recipient silently
    dropped out of the transaction, the replies of the next ones were
    taken for it, and it was logged as sent while never sent."""
    env.mx("o.example", "127.0.0.2")
    p = env.peer("127.0.0.2", EHLO=b"250-peer\r\n250-DSN\r\n250 PIPELINING\r\n",
                 RCPT=lambda peer, line: b"550 5.1.1 no such user\r\n"
                 if b"<c@o.example>" in line else b"250 2.1.5 ok\r\n")
    env.h.start("lmtpd", "queued")
    orcpt = "ORCPT=rfc822;" + "x" * 230 + "@o.example"
    lmtp_submit(env.h, [("a@o.example", []), ("b@o.example", [orcpt]),
                        ("c@o.example", [])])
    for r in ("a", "b", "c"):
        result_of(env.h, r + "@o.example")
    rcpt_lines = [ln for ln in p.lines if ln.upper().startswith(b"RCPT")]
    assert any(b"<b@o.example>" in ln for ln in rcpt_lines), rcpt_lines
    assert results_of(env.h, "b@o.example")[0][1] == "sent"
    assert results_of(env.h, "c@o.example")[0] == ("5.1.1", "bounced")


# ---- the peer's words in our bounce ---------------------------------------------


def test_hostile_reply_text_stays_inside_the_dsn_field(env):
    """A refusal whose text carries 8-bit bytes, terminal escapes, a
    header line and a MIME boundary on its continuation lines: the DSN
    has exactly its three parts, its report fields are printable ASCII
    (RFC 3464 §2.1.1), and the text is there with the bad bytes replaced."""
    reply = (b"550-5.1.1 first line\r\n"
             b"550-5.1.1 Content-Type: text/html\r\n"
             b"550-5.1.1 --boundary--\r\n"
             b"550 5.1.1 caf\xc3\xa9 \xff\x1b[31mred\x07 end\r\n")
    env.mx("h.example", "127.0.0.2")
    env.peer("127.0.0.2", RCPT=reply)
    env.h.start("lmtpd", "queued")
    submit(env.h, ["x@h.example"])
    raw, m = bounce_of(env.h)
    parts = [p.get_content_type() for p in m.iter_parts()]
    assert parts == ["text/plain", "message/delivery-status", "message/rfc822"], parts
    status = raw[raw.index(b"Content-Type: message/delivery-status"):]
    status = status[:status.index(b"\n--")]
    bad = [b for b in status if not (32 <= b < 127 or b in (13, 10))]
    assert bad == [], status
    text = raw[:raw.index(b"Content-Type: message/delivery-status")]
    assert b"\x1b" not in text and b"\xff" not in text and b"\x07" not in text
    diag = re.search(rb"Diagnostic-Code: smtp; (.*?)\r?\n", status).group(1)
    assert diag.startswith(b"550 5.1.1 first line Content-Type: text/html --boundary-- caf"), diag
    assert diag.endswith(b"red? end"), diag


# ---- routing ------------------------------------------------------------------


def test_domain_longer_than_dns_allows_is_not_cut(env):
    """A recipient domain of 254 characters (the address parser allows
    255, DNS only 253): it bounces 5.1.2; it was once cut to 253 and the
    mail went to the exchanger of that other domain."""
    labels = ["a" * 63, "b" * 63, "c" * 63]
    long_dom = ".".join(labels + ["m" * 61 + "z"])
    cut_dom = long_dom[:253]
    assert len(long_dom) == 254 and cut_dom == ".".join(labels + ["m" * 61])
    env.dns.add(cut_dom, "MX", "10 mx.cut.example.")
    env.dns.add("mx.cut.example", "A", "127.0.0.2")
    s = env.sink("127.0.0.2")
    env.h.start("lmtpd", "queued")
    submit(env.h, ["u@" + long_dom])
    dsn, status, text = result_of(env.h, "u@" + long_dom)
    assert (dsn, status) == ("5.1.2", "bounced"), (dsn, status, text)
    assert s.msgs == []
