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

from dnsfix import FakeDNS, _Resolver
from hermod import wait_for
from sinkfix import Sink, shared_port
from test_remote import SENDER, submit

HOSTS = ["127.0.0.%d" % i for i in range(2, 12)]


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
        self.closing = False
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
        if self.closing:
            self.closing = False
            raise EOFError

    def conn_close(self, data):
        """From a reply function: send data, then close."""
        self.closing = True
        return data

    def session(self, c):
        self.cur = c            # for reply functions that write themselves
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
    wait_for(lambda: "sent" in [s for _, s in results_of(env.h, "a@d.example")],
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


# ---- malformed replies -------------------------------------------------------------

LF = {k: v.replace(b"\r\n", b"\n") for k, v in Peer.DEFAULTS.items()}
LF.update(MAIL=b"250 2.1.0 ok\n", RCPT=b"250 2.1.5 ok\n")

MALFORMED = [
    # (name, replies, the results allowed)
    ("codes differ between lines", {"EHLO": b"250-peer\r\n354 PIPELINING\r\n"}, {"deferred"}),
    ("line past the reader's limit", {"MAIL": b"250 " + b"x" * 5000 + b"\r\n"}, {"deferred"}),
    ("NUL in a reply", {"RCPT": b"250 2.1.5 o\x00k\r\n"}, {"deferred"}),
    ("code not digits", {"MAIL": b"2a0 ok\r\n"}, {"deferred"}),
    ("code out of range", {"RCPT": b"650 6.0.0 what\r\n"}, {"deferred"}),
    ("no CRLF, then close", {"MAIL": lambda p, ln: p.conn_close(b"250 ok")}, {"deferred"}),
    ("close after 354", {"DATA": lambda p, ln: p.conn_close(b"354 go\r\n")}, {"deferred"}),
    ("3xx other than 354 to DATA", {"DATA": b"334 what\r\n"}, {"deferred"}),
    ("bare code, no text", {"MAIL": b"250\r\n", "RCPT": b"250\r\n"}, {"sent"}),
    ("bare LF line ends", LF, {"sent", "deferred"}),
]


def test_malformed_replies_defer_never_crash(env):
    """One message to ten domains, each exchanger broken in its own way:
    each recipient gets its own clean result, none is lost, none is sent
    on a garbled exchange."""
    rcpts = []
    for i, (name, replies, allowed) in enumerate(MALFORMED):
        dom = "bad%d.example" % i
        env.mx(dom, HOSTS[i])
        env.peer(HOSTS[i], **replies)
        rcpts.append("u@" + dom)
    env.h.start("lmtpd", "queued")
    submit(env.h, rcpts)
    for (name, _, allowed), r in zip(MALFORMED, rcpts):
        dsn, status, text = result_of(env.h, r)
        assert status in allowed, (name, dsn, status, text)
        assert dsn[0] == {"sent": "2", "deferred": "4"}[status], (name, dsn)


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


# ---- EHLO keywords ------------------------------------------------------------------


@pytest.mark.parametrize("size,result", [
    (b"SIZE", "sent"),                          # no fixed limit (RFC 1870)
    (b"SIZE 999999999999999999999999999999", "sent"),    # absurd: no limit
    (b"SIZE 10", "bounced"),                    # smaller than the message
])
def test_size_keyword_forms(env, size, result):
    """SIZE without a number means no fixed limit; it was read from the
    next keyword's digits ("8BITMIME": 8 bytes) and every message bounced
    5.3.4. An absurd number is no limit; a small one bounces 5.3.4."""
    env.mx("z.example", "127.0.0.2")
    p = env.peer("127.0.0.2", EHLO=b"250-peer\r\n250-" + size +
                 b"\r\n250-8BITMIME\r\n250 PIPELINING\r\n")
    env.h.start("lmtpd", "queued")
    submit(env.h, ["a@z.example"])
    dsn, status, text = result_of(env.h, "a@z.example")
    assert status == result, (dsn, status, text)
    if result == "bounced":
        assert dsn == "5.3.4" and p.messages == []
    else:
        assert len(p.messages) == 1


# ---- per-recipient outcomes across transactions ------------------------------------


def test_mixed_refusals_across_recipient_batches(env):
    """Five recipients in transactions of two (smtp_destination_recipient_limit):
    a 452 in the first is retried later, a 552 in the second bounces, the
    rest are delivered; the DSN names only the bounced one."""
    env.h.conf(smtp_destination_recipient_limit=2)
    seen = {"r2": 0}

    def rcpt(peer, line):
        if b"<r2@" in line:
            seen["r2"] += 1
            if seen["r2"] == 1:
                return b"452 4.5.3 too many recipients\r\n"
        if b"<r4@" in line:
            return b"552 5.2.2 mailbox full\r\n"
        return b"250 2.1.5 ok\r\n"
    env.mx("b.example", "127.0.0.2")
    p = env.peer("127.0.0.2", RCPT=rcpt)
    env.h.start("lmtpd", "queued")
    rcpts = ["r%d@b.example" % i for i in range(1, 6)]
    submit(env.h, rcpts)
    raw, m = bounce_of(env.h)
    assert b"Final-Recipient: rfc822; r4@b.example" in raw
    assert raw.count(b"Final-Recipient:") == 1
    wait_for(lambda: len(p.messages) == 4, 30, what="four transactions")
    for r in rcpts:
        wait_for(lambda: results_of(env.h, r) and results_of(env.h, r)[-1][1] != "deferred",
                 30, what="a final result for " + r)
    assert [s for _, s in results_of(env.h, "r2@b.example")] == ["deferred", "sent"]
    assert results_of(env.h, "r4@b.example") == [("5.2.2", "bounced")]
    for r in ("r1", "r3", "r5"):
        assert results_of(env.h, r + "@b.example") == [("2.0.0", "sent")]
    mails = [ln for ln in p.lines if ln.upper().startswith(b"MAIL")]
    assert len(mails) == 4, mails


def test_no_reply_after_the_dot_times_out_and_defers(env):
    """The dot is never answered: after smtp_data_done_timeout the
    recipient is deferred (not sent, not bounced) and the next attempt
    delivers it."""
    env.h.conf(smtp_data_done_timeout="3s")
    state = {"n": 0}

    def dot(peer, line):
        state["n"] += 1
        if state["n"] == 1:
            time.sleep(8)       # longer than the timeout; then the next one
        return b"250 2.0.0 stored\r\n"
    env.mx("t.example", "127.0.0.2")
    env.peer("127.0.0.2", DOT=dot)
    env.h.start("lmtpd", "queued")
    t0 = time.time()
    submit(env.h, ["a@t.example"])
    dsn, status, text = result_of(env.h, "a@t.example", timeout=30)
    assert (status, dsn) == ("deferred", "4.4.2"), text
    assert "after end of data" in text, text
    assert time.time() - t0 < 8
    wait_for(lambda: "sent" in [s for _, s in results_of(env.h, "a@t.example")], 40,
             what="the retry")


def test_trickled_reply_is_bounded_by_its_timeout(env):
    """An exchanger that trickles its greeting a byte at a time, never
    silent long enough for an idle timeout: smtp_helo_timeout bounds the
    whole wait for the reply, as its description says, and the mail is
    deferred instead of held for as long as the peer likes."""
    env.h.conf(smtp_helo_timeout="3s")
    stop = threading.Event()

    def greeting(peer, line):
        for b in b"220-" + b"x" * 1000:
            if stop.wait(0.25):
                return None
            peer.cur.sendall(bytes([b]))
        return b"\r\n220 done\r\n"
    env.mx("w.example", "127.0.0.2")
    env.peer("127.0.0.2", GREETING=greeting)
    try:
        env.h.start("lmtpd", "queued")
        t0 = time.time()
        submit(env.h, ["a@w.example"])
        dsn, status, text = result_of(env.h, "a@w.example", timeout=40)
        assert (status, dsn[0]) == ("deferred", "4"), text
        assert "timeout" in text and "greeting" in text, text
        assert time.time() - t0 < 15
    finally:
        stop.set()


# ---- a broken resolver ------------------------------------------------------------


class BadDNS(threading.Thread):
    """A UDP name server that answers every query badly: "silent" (never),
    "garbage" (our id and question, then a record running off the
    packet), "truncated" (TC set, no answer: c-ares tries TCP, which
    nobody serves)."""

    def __init__(self, mode):
        super().__init__(daemon=True)
        self.mode, self.queries = mode, 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.spec = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.start()

    def run(self):
        while True:
            try:
                q, addr = self.sock.recvfrom(4096)
            except OSError:
                return
            self.queries += 1
            if self.mode == "silent" or len(q) < 12:
                continue
            flags = b"\x83\x80" if self.mode == "truncated" else b"\x81\x80"
            an = b"\x00\x00" if self.mode == "truncated" else b"\x00\x01"
            end = q.index(b"\x00", 12) + 5      # the question, no EDNS
            r = q[:2] + flags + b"\x00\x01" + an + b"\x00\x00\x00\x00" + q[12:end]
            if self.mode == "garbage":
                r += b"\xc0\x0c\x00\x0f\x00\x01\x00\x00\x00\x3c\x00\xff\x00"
            self.sock.sendto(r, addr)

    def close(self):
        self.sock.close()


@pytest.mark.parametrize("mode", ["silent", "garbage", "truncated"])
def test_broken_resolver_defers_in_bounded_time(env, mode):
    """No answer, a garbled one, or a truncated one with no TCP to go to:
    the recipient is deferred with 4.4.3 within c-ares's timeouts (5 s,
    2 tries), never bounced, and queued keeps running."""
    bad = BadDNS(mode)
    try:
        env.h.conf(dns_servers=bad.spec)
        env.h.start("lmtpd", "queued")
        t0 = time.time()
        submit(env.h, ["a@x.example"])
        dsn, status, text = result_of(env.h, "a@x.example", timeout=60)
        assert (status, dsn) == ("deferred", "4.4.3"), text
        assert time.time() - t0 < 45
        assert bad.queries > 0
        # still alive: local mail goes on
        submit(env.h, ["sender@example.test"])
        env.h.wait_messages("sender", 1, 30)
    finally:
        bad.close()


def test_orcpt_and_envid_line_breaks_do_not_reach_the_dsn(env):
    """ORCPT and ENVID are xtext: "+0D+0A" decodes to a line break, which
    written raw into the report would add fields or MIME parts to the
    bounce. The submission socket refuses such values (501 5.5.4, RFC
    3461: printable text), and what it takes stays one line each in the
    report (bounce.c writes them as printable ASCII whatever the queue
    file holds)."""
    import smtplib
    env.mx("n.example", "127.0.0.2")
    env.peer("127.0.0.2", RCPT=b"550 5.1.1 no such user\r\n")
    env.h.start("lmtpd", "queued")
    inject = "+0D+0AX-Injected:+20yes+0D+0A+0D+0A--x--+0D+0A"
    s = smtplib.LMTP(env.h.submit_socket)
    try:
        s.ehlo()
        assert s.docmd("MAIL FROM:<%s> ENVID=env%s" % (SENDER, inject))[0] == 501
        assert s.docmd("MAIL FROM:<%s>" % SENDER)[0] == 250
        assert s.docmd("RCPT TO:<a@n.example> ORCPT=rfc822;a%s@n.example" % inject)[0] == 501
    finally:
        s.close()
    spaced = "+20X-Injected:+20yes+20--x--+20"
    lmtp_submit(env.h, [("a@n.example", ["ORCPT=rfc822;a" + spaced + "@n.example"])],
                mail_opts=["ENVID=env" + spaced])
    raw, m = bounce_of(env.h)
    assert b"\nX-Injected:" not in raw, raw
    assert b"\n--x--" not in raw, raw
    parts = [p.get_content_type() for p in m.iter_parts()]
    assert parts == ["text/plain", "message/delivery-status", "message/rfc822"], parts
    assert re.search(rb"Original-Recipient: rfc822; a.*@n\.example\r?\n", raw), raw
    assert re.search(rb"Original-Envelope-Id: env X-Injected: yes --x-- \r?\n", raw), raw


# ---- STARTTLS ------------------------------------------------------------------------


@pytest.mark.parametrize("level", ["may", "encrypt"])
def test_peer_drops_after_starttls_220(env, level):
    """The server says 220 to STARTTLS and hangs up. Under "may" the same
    host is tried again in plaintext and gets the mail; under "encrypt"
    nothing goes in the clear: deferred 4.7.5."""
    pol = env.h.path("etc", "tls_policy")
    with open(pol, "w") as f:
        f.write("d.example %s\n" % level)
    env.h.conf(smtp_tls_policy_maps=pol)
    env.mx("d.example", "127.0.0.2")
    p = env.peer("127.0.0.2", EHLO=b"250-peer\r\n250-STARTTLS\r\n250 PIPELINING\r\n",
                 STAR=lambda peer, line: peer.conn_close(b"220 2.0.0 go ahead\r\n"))
    env.h.start("lmtpd", "queued")
    submit(env.h, ["a@d.example"])
    dsn, status, text = result_of(env.h, "a@d.example")
    mails = [ln for ln in p.lines if ln.upper().startswith(b"MAIL")]
    if level == "may":
        assert (dsn, status) == ("2.0.0", "sent"), text
        assert len(p.messages) == 1 and p.conns == 2
    else:
        assert (dsn, status) == ("4.7.5", "deferred"), text
        assert mails == [] and p.messages == []



def test_verify_checks_an_address_literal_too(env):
    """Level verify for mail to an address literal: the certificate must
    name that IP address. One that chains to the CA but names another
    host (here sink.test) is refused: deferred 4.7.5, nothing sent;
    unchecked, any certificate from the CA passed for any address. One
    naming the address (subjectAltName IP) is taken."""
    import os
    import subprocess
    import sinkfix
    d = env.h.path("etc")
    ipcert, ipkey, ca = (os.path.join(d, n) for n in ("ip.pem", "ipkey.pem", "ca.pem"))
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-subj", "/CN=ip.test", "-addext", "subjectAltName=IP:127.0.0.3",
                    "-days", "2", "-keyout", ipkey, "-out", ipcert],
                   check=True, capture_output=True, timeout=60)
    with open(ca, "wb") as f:
        for c in (sinkfix.test_cert()[0], ipcert):
            with open(c, "rb") as g:
                f.write(g.read())
    os.chmod(ca, 0o644)
    s = env.sink("127.0.0.2", tls=True)
    saved, sinkfix._CERT = sinkfix._CERT, (ipcert, ipkey)
    try:
        s3 = env.sink("127.0.0.3", tls=True)
    finally:
        sinkfix._CERT = saved
    env.h.conf(smtp_tls_security_level="verify", smtp_tls_ca_file=ca)
    env.h.start("lmtpd", "queued")
    submit(env.h, ["a@[127.0.0.2]"])
    dsn, status, text = result_of(env.h, "a@[127.0.0.2]")
    assert (dsn, status) == ("4.7.5", "deferred"), text
    assert s.msgs == []
    submit(env.h, ["b@[127.0.0.3]"])
    assert s3.wait(1)[0].tls


# ---- the bounce's own bounds ------------------------------------------------------------


def test_bounce_of_a_message_past_the_dsn_buffer_returns_headers(env):
    """bounce_size_limit set above what a notification can hold (64 MB):
    the original comes back as headers only instead of being dropped
    from a DSN that still claimed to carry it."""
    env.h.conf(message_size_limit="100m", bounce_size_limit="100m")
    env.dns.add("nullmx.example", "MX", "0 .")
    env.h.start("lmtpd", "queued")
    body = b"Subject: huge\r\n\r\n" + (b"z" * 998 + b"\r\n") * 68000
    submit(env.h, ["a@nullmx.example"], body=body)
    raw, m = bounce_of(env.h, timeout=90)
    parts = [p.get_content_type() for p in m.iter_parts()]
    assert parts == ["text/plain", "message/delivery-status", "text/rfc822-headers"], parts
    assert b"Subject: huge" in raw and len(raw) < 1024 * 1024


def test_same_address_under_many_mx_names_is_tried_once(env):
    """Ten MX names that all resolve to one address (a dead or hostile
    host): one session tries it once, not ten times (each try may cost
    smtp_helo_timeout)."""
    for i in range(10):
        env.dns.add("m.example", "MX", "%d mx%d.m.example." % (10 + i, i))
        env.dns.add("mx%d.m.example" % i, "A", "127.0.0.2")
    p = env.peer("127.0.0.2", GREETING=b"421 4.3.2 busy\r\n")
    env.h.conf(minimal_backoff_time="60s", maximal_backoff_time="60s")
    env.h.start("lmtpd", "queued")
    submit(env.h, ["a@m.example"])
    dsn, status, text = result_of(env.h, "a@m.example")
    assert status == "deferred", text
    time.sleep(0.5)
    assert p.conns == 1


class _CnameResolver(_Resolver):
    """dnsfix's zone, plus CNAMEs followed the way a recursive server
    answers: the chain (at most 8 links, so a loop ends), then the
    records of the asked type at its end."""

    def resolve(self, request, handler):
        from dnslib import RR
        name = str(request.q.qname).rstrip(".").lower()
        chain = []
        while name in self.fix.cnames and len(chain) < 8:
            target = self.fix.cnames[name]
            chain.append(RR.fromZone("%s. 60 IN CNAME %s." % (name, target))[0])
            name = target
        request.q.qname = name
        reply = super().resolve(request, handler)
        for rr in reversed(chain):
            reply.rr.insert(0, rr)
        reply.q.qname = chain[0].rname if chain else reply.q.qname
        reply.header.rcode = 0 if chain and len(chain) == 8 else reply.header.rcode
        return reply


def test_cname_chains_and_loops(env):
    """An MX host that is a CNAME, and a domain that is a CNAME of
    another with MX records: both delivered. A CNAME loop: no delivery,
    a bounded answer (bounced or deferred), queued unharmed."""
    env.dns.cnames = {"alias.example": "real.example",
                      "mxalias.c1.example": "mx.c1.example",
                      "loop1.example": "loop2.example", "loop2.example": "loop1.example"}
    env.dns.server.server.resolver = _CnameResolver(env.dns)
    env.dns.add("c1.example", "MX", "10 mxalias.c1.example.")
    env.dns.add("mx.c1.example", "A", "127.0.0.2")
    env.dns.add("real.example", "MX", "10 mx.real.example.")
    env.dns.add("mx.real.example", "A", "127.0.0.2")
    s = env.sink("127.0.0.2")
    env.h.start("lmtpd", "queued")
    submit(env.h, ["a@c1.example", "b@alias.example", "c@loop1.example"])
    assert result_of(env.h, "a@c1.example")[1] == "sent"
    assert result_of(env.h, "b@alias.example")[1] == "sent"
    dsn, status, text = result_of(env.h, "c@loop1.example")
    assert status in ("bounced", "deferred"), text
    assert sorted(r for m in s.msgs for r in m.rcpts) == ["a@c1.example", "b@alias.example"]


def test_envid_the_client_cannot_send_does_not_stall_the_message(env):
    """An ENVID whose xtext decodes to a line break cannot go on a MAIL
    line. The client refused such a MAIL in silence and the message
    waited for ever; now the recipient bounces 5.5.4 and the attempt ends
    (remote.c). Such a value can no longer come in (the submission socket
    refuses it, 501 5.5.4), only from a queue file written before; what
    comes in goes on the MAIL line as it came."""
    import smtplib
    env.mx("e.example", "127.0.0.2")
    p = env.peer("127.0.0.2", EHLO=b"250-peer\r\n250 DSN\r\n")
    env.h.start("lmtpd", "queued")
    s = smtplib.LMTP(env.h.submit_socket)
    try:
        s.ehlo()
        assert s.docmd("MAIL FROM:<%s> ENVID=a+0D+0Ab" % SENDER)[0] == 501
    finally:
        s.close()
    lmtp_submit(env.h, [("a@e.example", [])], mail_opts=["ENVID=a+2Bb"])
    dsn, status, text = result_of(env.h, "a@e.example")
    assert (dsn, status) == ("2.0.0", "sent"), text
    mails = [ln for ln in p.lines if ln.upper().startswith(b"MAIL")]
    assert mails and b"ENVID=a+2Bb" in mails[0], mails
