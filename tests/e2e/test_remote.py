"""Remote delivery end to end: queued routes mail for other domains by MX
(a dnslib server fixture, dnsfix.py) and delivers it over SMTP to aiosmtpd
sinks on 127.0.0.2, 127.0.0.3 ... (sinkfix.py). Messages are submitted on
queued's submission socket (LMTP), so smtpd is not involved; bounces come
back to the sender's Maildir and are parsed with the email package."""

import email
import email.policy
import re
import smtplib
import time

import pytest

from dnsfix import FakeDNS
from hermod import wait_for
from sinkfix import Hang, Sink, shared_port

SENDER = "sender@example.test"
HOSTS = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]


@pytest.fixture
def env(hermod):
    dns = FakeDNS()
    port = shared_port(HOSTS)
    hermod.add_user("sender")
    hermod.conf(dns_servers=dns.spec, smtp_port=port, smtp_connect_timeout="3s",
                smtp_helo_timeout="3s", smtp_connection_cache_time_limit="1s")
    hermod.newaliases()
    sinks = []

    class Env:
        pass
    e = Env()
    e.h, e.dns, e.port = hermod, dns, port

    def sink(host, **kw):
        s = Sink(host, port, **kw)
        sinks.append(s)
        return s
    e.sink = sink

    def mx(domain, *pairs):
        """mx("a.example", (10, "127.0.0.2"), (20, "127.0.0.3"))"""
        for i, (pref, addr) in enumerate(pairs):
            name = "mx%d.%s" % (i + 1, domain)
            dns.add(domain, "MX", "%d %s." % (pref, name))
            dns.add(name, "A", addr)
    e.mx = mx
    try:
        yield e
    finally:
        hermod.close()
        for s in sinks:
            s.close()
        dns.close()


def submit(h, rcpts, body=b"Subject: test\r\n\r\nhello\r\n", sender=SENDER,
           mail_opts=(), rcpt_opts=()):
    """One LMTP transaction on queued's submission socket; every recipient
    must be accepted."""
    s = smtplib.LMTP(h.submit_socket)
    try:
        s.ehlo()
        code, msg = s.mail(sender, list(mail_opts))
        assert code == 250, msg
        for r in rcpts:
            code, msg = s.rcpt(r, list(rcpt_opts))
            assert code == 250, (r, msg)
        code, msg = s.docmd("DATA")
        assert code == 354, msg
        lines = body.split(b"\r\n")
        s.send(b"\r\n".join(b"." + ln if ln.startswith(b".") else ln for ln in lines)
               + (b"" if body.endswith(b"\r\n") else b"\r\n") + b".\r\n")
        for r in rcpts:
            code, msg = s.getreply()
            assert code == 250, (r, msg)
    finally:
        s.close()


def dsn_of(h, n=1, timeout=30):
    """The n-th bounce in the sender's Maildir: (message, [per-recipient
    header dicts])."""
    msgs = h.wait_messages("sender", n, timeout)
    m = email.message_from_bytes(msgs[n - 1], policy=email.policy.default)
    status = [p for p in m.walk() if p.get_content_type() == "message/delivery-status"]
    assert status, m.as_string()
    text = status[0].as_string()
    blocks = [b for b in re.split(r"\r?\n\r?\n", text.split("\n\n", 1)[1]) if "Final-Recipient" in b]
    recs = []
    for b in blocks:
        d = {}
        for line in re.sub(r"\r?\n[ \t]+", " ", b).splitlines():
            if ":" in line:
                k, v = line.split(":", 1)
                d[k.strip().lower()] = v.strip()
        recs.append(d)
    return m, recs


def test_mx_preference_and_fallback(env):
    """The best MX is down: the next one gets the mail; the log line has
    Postfix's shape."""
    env.mx("a.example", (10, "127.0.0.2"), (20, "127.0.0.3"))
    s3 = env.sink("127.0.0.3")
    env.h.start("lmtpd", "queued")
    submit(env.h, ["bob@a.example", "carol@a.example"])
    msgs = s3.wait(1)
    assert sorted(msgs[0].rcpts) == ["bob@a.example", "carol@a.example"]
    assert b"hello" in msgs[0].data
    log = wait_for(lambda: (lambda l: l if l.count("status=sent") >= 2 else None)(env.h.log("queued")))
    assert re.search(r"to=<bob@a\.example>, relay=mx2\.a\.example\[127\.0\.0\.3\]:%d, "
                     r"delay=[0-9.e+-]+, delays=[0-9.e+/-]+, dsn=2\.0\.0, status=sent \(250 " % env.port, log), log
    assert len(msgs) == 1
