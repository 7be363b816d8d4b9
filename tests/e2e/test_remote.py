"""Remote delivery end to end: queued routes mail for other domains by MX
(a dnslib server fixture, dnsfix.py) and delivers it over SMTP to aiosmtpd
sinks on 127.0.0.2, 127.0.0.3 ... (sinkfix.py). Messages are submitted on
queued's submission socket (LMTP), so smtpd is not involved; bounces come
back to the sender's Maildir and are parsed with the email package."""

import email
import email.policy
import re
import signal
import smtplib
import time

import pytest

from dnsfix import FakeDNS, free_udp_port
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


def test_implicit_mx_and_address_literal(env):
    """No MX: the domain's own A record; user@[127.0.0.3] goes straight
    there."""
    env.dns.add("plain.example", "A", "127.0.0.2")
    s2, s3 = env.sink("127.0.0.2"), env.sink("127.0.0.3")
    env.h.start("lmtpd", "queued")
    submit(env.h, ["x@plain.example"])
    submit(env.h, ["y@[127.0.0.3]"])
    assert s2.wait(1)[0].rcpts == ["x@plain.example"]
    assert s3.wait(1)[0].rcpts == ["y@[127.0.0.3]"]


def test_null_mx_nxdomain_bounce_at_once(env):
    env.dns.add("nomail.example", "MX", "0 .")
    env.h.start("lmtpd", "queued")
    submit(env.h, ["a@nomail.example", "b@nosuch.example"])
    m, recs = dsn_of(env.h)
    st = {r["final-recipient"].split(";")[1].strip(): r for r in recs}
    assert st["a@nomail.example"]["status"] == "5.1.10"
    assert st["b@nosuch.example"]["status"] == "5.1.2"
    assert "Final-Recipient" in m.as_string()


def test_servfail_defers(env):
    env.dns.servfail.add("broken.example")
    env.h.start("lmtpd", "queued")
    submit(env.h, ["a@broken.example"])
    log = wait_for(lambda: (lambda l: l if "status=deferred" in l else None)(env.h.log("queued")))
    assert re.search(r"to=<a@broken\.example>.*dsn=4\.4\.3, status=deferred", log), log
    assert env.h.messages("sender") == []


def test_4xx_then_success_and_5xx_bounce(env):
    """A recipient refused 451 once is retried and delivered; one refused
    550 bounces with the server's reply as Diagnostic-Code and Remote-MTA."""
    env.mx("c.example", (10, "127.0.0.2"))
    s = env.sink("127.0.0.2", rcpt=lambda a, n: (
        "451 4.3.0 try later" if a == "later@c.example" and n == 1 else
        "550 5.1.1 <no@c.example>: no such user" if a == "no@c.example" else None))
    env.h.start("lmtpd", "queued")
    submit(env.h, ["later@c.example", "no@c.example", "ok@c.example"])
    m, recs = dsn_of(env.h)
    assert len(recs) == 1
    r = recs[0]
    assert r["final-recipient"] == "rfc822; no@c.example"
    assert r["status"] == "5.1.1" and r["action"] == "failed"
    assert r["diagnostic-code"] == "smtp; 550 5.1.1 <no@c.example>: no such user"
    assert "mx1.c.example" in r["remote-mta"]
    msgs = s.wait(2, timeout=30)
    assert [x.rcpts for x in msgs] == [["ok@c.example"], ["later@c.example"]]


def test_loop_to_ourselves(env):
    """The best MX is this host: bounce 5.4.6, no connection."""
    env.dns.add("loop.example", "MX", "10 mx.example.test.")
    env.dns.add("loop.example", "MX", "20 backup.loop.example.")
    env.dns.add("backup.loop.example", "A", "127.0.0.2")
    s2 = env.sink("127.0.0.2")
    env.h.start("lmtpd", "queued")
    submit(env.h, ["a@loop.example"])
    _, recs = dsn_of(env.h)
    assert recs[0]["status"] == "5.4.6"
    assert "loops back to myself" in recs[0]["diagnostic-code"]
    assert s2.msgs == [] and s2.seen == {}


def test_hanging_destination_does_not_block_others(env):
    """One domain's only MX accepts and never answers: mail for another
    domain still flows, and the hung one is deferred after the greeting
    timeout."""
    env.mx("hang.example", (10, "127.0.0.4"))
    env.mx("fine.example", (10, "127.0.0.2"))
    hang = Hang("127.0.0.4", env.port)
    s2 = env.sink("127.0.0.2")
    env.h.conf(default_process_limit=3, default_destination_concurrency_limit=2)
    try:
        env.h.start("lmtpd", "queued")
        for i in range(6):
            submit(env.h, ["u%d@hang.example" % i])
        t0 = time.monotonic()
        for i in range(5):
            submit(env.h, ["v%d@fine.example" % i])
        s2.wait(5, timeout=10)
        assert time.monotonic() - t0 < 3.0     # before the 3 s greeting timeout
        log = wait_for(lambda: (lambda l: l if "to=<u0@hang.example>" in l else None)(
            env.h.log("queued")), 15)
        assert re.search(r"to=<u0@hang\.example>.*status=deferred", log), log
    finally:
        hang.close()


def test_relayhost(env):
    """relayhost [127.0.0.3]:port: everything goes there, no MX lookup."""
    s3 = env.sink("127.0.0.3")
    env.h.conf(relayhost="[127.0.0.3]:%d" % env.port)
    env.h.start("lmtpd", "queued")
    submit(env.h, ["a@anywhere.example", "b@elsewhere.example"])
    # one transaction: both recipients share the relayhost destination
    assert sorted(s3.wait(1)[0].rcpts) == ["a@anywhere.example", "b@elsewhere.example"]
    assert ("anywhere.example", "MX") not in env.dns.queries


def test_relayhost_on_our_address_but_another_port(env):
    """A relayhost (a content filter, a smarthost tunnel) on an address we
    listen on, at another port, is another program: mail goes there. The
    same address and port as our listener is a loop (5.4.6)."""
    s2 = env.sink("127.0.0.2")
    env.h.conf(smtp_listen="127.0.0.2:%d" % (env.port + 1),
               relayhost="[127.0.0.2]:%d" % env.port)
    env.h.start("lmtpd", "queued")
    submit(env.h, ["a@filter.example"])
    assert s2.wait(1)[0].rcpts == ["a@filter.example"]
    env.h.stop("queued")
    env.h.conf(smtp_listen="127.0.0.2:%d" % env.port)
    env.h.start("queued")
    submit(env.h, ["b@filter.example"])
    _, recs = dsn_of(env.h)
    assert recs[0]["status"] == "5.4.6", recs
    assert "loops back to myself" in recs[0]["diagnostic-code"]
    assert len(s2.msgs) == 1


def test_server_greeting_with_our_name_is_a_loop(env):
    """An exchanger that answers EHLO with our own myhostname is us under
    an address we did not know (NAT, a forwarded port): the next one is
    tried; when every exchanger is us, the mail bounces 5.4.6 at once."""
    env.mx("half.example", (10, "127.0.0.2"), (20, "127.0.0.3"))
    env.mx("all.example", (10, "127.0.0.4"))
    me2 = env.sink("127.0.0.2", name="MX.example.test")
    ok3 = env.sink("127.0.0.3")
    me4 = env.sink("127.0.0.4", name="mx.example.test")
    env.h.start("lmtpd", "queued")
    submit(env.h, ["a@half.example"])
    assert ok3.wait(1)[0].rcpts == ["a@half.example"]
    submit(env.h, ["b@all.example"])
    _, recs = dsn_of(env.h)
    assert recs[0]["status"] == "5.4.6", recs
    assert "loops back to myself" in recs[0]["diagnostic-code"]
    assert me2.msgs == [] and me4.msgs == [] and me2.seen == {} and me4.seen == {}
    assert "greeted me with my own hostname" in env.h.log("queued")


def test_size_and_smtputf8_refused_before_sending(env):
    """A server's SIZE limit below the message: 5.3.4; SMTPUTF8 needed
    but not offered: 5.6.7."""
    env.mx("small.example", (10, "127.0.0.2"))
    env.mx("ascii.example", (10, "127.0.0.3"))
    s2 = env.sink("127.0.0.2", size=1000)
    s3 = env.sink("127.0.0.3", smtputf8=False)
    env.h.start("lmtpd", "queued")
    submit(env.h, ["a@small.example"], body=b"Subject: small\r\n\r\nfits\r\n")
    submit(env.h, ["a@small.example"], body=b"Subject: big\r\n\r\n" + (b"x" * 70 + b"\r\n") * 40)
    submit(env.h, ["b@ascii.example"], mail_opts=["SMTPUTF8"])
    m1, r1 = dsn_of(env.h, 1)
    m2, r2 = dsn_of(env.h, 2)
    st = sorted([r1[0]["status"], r2[0]["status"]])
    assert st == ["5.3.4", "5.6.7"], (r1, r2)
    assert len(s2.wait(1)) == 1 and s3.msgs == []


def test_dsn_parameters_and_relayed_notice(env):
    """SIZE goes out (offered). To a server without DSN the RFC 3461
    parameters are left out, and NOTIFY=SUCCESS gets a "relayed" DSN from
    us; to a server with DSN they go on and the success report is its
    job, not ours."""
    env.mx("d.example", (10, "127.0.0.2"))
    env.mx("e.example", (10, "127.0.0.3"))
    s2 = env.sink("127.0.0.2")
    s3 = env.sink("127.0.0.3", dsn=True)
    env.h.start("lmtpd", "queued")
    opts = dict(mail_opts=["RET=HDRS", "ENVID=abc123"],
                rcpt_opts=["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;orig@d.example"])
    submit(env.h, ["a@d.example"], **opts)
    m = s2.wait(1)[0]
    assert any(o.startswith("SIZE=") for o in m.mail_options), m.mail_options
    assert not any("RET=" in o or "ENVID=" in o for o in m.mail_options), m.mail_options
    assert not any("NOTIFY=" in o for o in m.rcpt_options), m.rcpt_options
    _, recs = dsn_of(env.h)
    assert recs[0]["action"] == "relayed" and recs[0]["status"].startswith("2."), recs
    submit(env.h, ["b@e.example"], **opts)
    m = s3.wait(1)[0]
    assert "RET=HDRS" in m.mail_options and "ENVID=ABC123" in m.mail_options, m.mail_options  # aiosmtpd upper-cases
    assert "NOTIFY=SUCCESS,FAILURE" in m.rcpt_options, m.rcpt_options
    assert any(o.startswith("ORCPT=") for o in m.rcpt_options), m.rcpt_options
    wait_for(lambda: "to=<b@e.example>" in env.h.log("queued"))
    time.sleep(1.0)
    assert len(env.h.messages("sender")) == 1     # no success DSN of ours


def test_starttls_opportunistic_and_required(env):
    """STARTTLS is used when offered (level may, the default); a policy
    of encrypt defers mail to a server that does not offer it."""
    env.mx("tls.example", (10, "127.0.0.2"))
    env.mx("plain.example", (10, "127.0.0.3"))
    s2 = env.sink("127.0.0.2", tls=True)
    s3 = env.sink("127.0.0.3")
    pol = env.h.path("etc", "tls_policy")
    with open(pol, "w") as f:
        f.write("# per-destination TLS\nplain.example encrypt\n")
    env.h.conf(smtp_tls_policy_maps=pol)
    env.h.start("lmtpd", "queued")
    submit(env.h, ["a@tls.example"])
    assert s2.wait(1)[0].tls
    log = wait_for(lambda: (lambda l: l if "TLS connection established" in l else None)(
        env.h.log("queued")))
    assert re.search(r"TLS connection established to mx1\.tls\.example\[127\.0\.0\.2\]:\d+: "
                     r"TLSv1\.[23] with cipher \S+", log), log
    submit(env.h, ["b@plain.example"])
    log = wait_for(lambda: (lambda l: l if "to=<b@plain.example>" in l else None)(
        env.h.log("queued")))
    assert re.search(r"to=<b@plain\.example>.*dsn=4\.7\.5, status=deferred", log), log
    assert s3.msgs == []


def test_relayhost_with_auth_over_tls(env):
    """relayhost with credentials from smtp_sasl_password_maps: STARTTLS,
    then AUTH, then the mail."""
    s3 = env.sink("127.0.0.3", auth={"joe": "s3cret"})
    relay = "[127.0.0.3]:%d" % env.port
    pw = env.h.path("etc", "sasl_passwd")
    with open(pw, "w") as f:
        f.write("%s joe:s3cret\n" % relay)
    env.h.conf(relayhost=relay, smtp_sasl_password_maps=pw)
    env.h.start("lmtpd", "queued")
    submit(env.h, ["a@far.example"])
    m = s3.wait(1)[0]
    assert m.tls and m.login == "joe"
    assert m.rcpts == ["a@far.example"]


def test_connection_reused_for_the_next_message(env):
    env.mx("r.example", (10, "127.0.0.2"))
    s2 = env.sink("127.0.0.2")
    env.h.conf(smtp_connection_cache_time_limit="5s", smtp_tls_security_level="none")
    env.h.start("lmtpd", "queued")
    for i in range(3):
        submit(env.h, ["u%d@r.example" % i])
        s2.wait(i + 1)
    assert s2.ehlos == 1


def test_garbage_greeting_falls_back_junk_reply_defers(env):
    """An exchanger that is not an SMTP server: the next one is used. One
    whose EHLO reply is 2,000 lines: deferred, no crash."""
    from sinkfix import Scripted
    env.mx("g.example", (10, "127.0.0.4"), (20, "127.0.0.2"))
    env.mx("j.example", (10, "127.0.0.5"))
    bad = Scripted("127.0.0.4", env.port, ["garbage"])
    junk = Scripted("127.0.0.5", env.port, ["junk_reply"])
    s2 = env.sink("127.0.0.2")
    try:
        env.h.start("lmtpd", "queued")
        submit(env.h, ["a@g.example"])
        assert s2.wait(1)[0].rcpts == ["a@g.example"]
        submit(env.h, ["b@j.example"])
        log = wait_for(lambda: (lambda l: l if "to=<b@j.example>" in l else None)(
            env.h.log("queued")))
        assert re.search(r"to=<b@j\.example>.*dsn=4\.\d\.\d+, status=deferred", log), log
    finally:
        bad.close()
        junk.close()


def test_lost_after_the_dot_is_retried(env):
    """No reply after the final dot: the message is not taken as delivered
    and goes again at the next attempt."""
    from sinkfix import Scripted
    env.mx("l.example", (10, "127.0.0.4"))
    srv = Scripted("127.0.0.4", env.port, ["drop_after_dot", "ok"])
    try:
        env.h.start("lmtpd", "queued")
        submit(env.h, ["a@l.example"])
        wait_for(lambda: srv.delivered == 1, 20, what="second attempt")
        log = env.h.log("queued")
        assert re.search(r"to=<a@l\.example>.*status=deferred", log), log
        assert re.search(r"to=<a@l\.example>.*status=sent \(250 2\.0\.0 stored\)", log), log
    finally:
        srv.close()


def test_equal_preferences_spread(env):
    """Two exchangers at the same preference both get mail."""
    env.mx("s.example", (10, "127.0.0.2"), (10, "127.0.0.3"))
    s2, s3 = env.sink("127.0.0.2"), env.sink("127.0.0.3")
    env.h.conf(smtp_connection_cache_time_limit="0s")
    env.h.start("lmtpd", "queued")
    for i in range(16):
        submit(env.h, ["u%d@s.example" % i])
    wait_for(lambda: len(s2.msgs) + len(s3.msgs) == 16, 30, what="16 messages")
    assert s2.msgs and s3.msgs, (len(s2.msgs), len(s3.msgs))


def test_ipv6_exchanger(env):
    """An exchanger with only an AAAA record is reached over IPv6."""
    import socket
    try:
        with socket.socket(socket.AF_INET6) as t:
            t.bind(("::1", env.port))
    except OSError:
        pytest.skip("no IPv6 loopback")
    env.dns.add("six.example", "MX", "10 mx.six.example.")
    env.dns.add("mx.six.example", "AAAA", "::1")
    s = env.sink("::1")
    env.h.start("lmtpd", "queued")
    submit(env.h, ["a@six.example"])
    assert s.wait(1)[0].rcpts == ["a@six.example"]
    wait_for(lambda: re.search(r"relay=mx\.six\.example\[::1\]:%d, .*status=sent" % env.port,
                               env.h.log("queued")), 10, what="the log line")


def test_busy_greeting_falls_back_and_helo_only_server(env):
    """A 421 greeting moves on to the next exchanger; a server that
    refuses EHLO gets HELO and no ESMTP parameters."""
    from sinkfix import Scripted
    env.mx("b.example", (10, "127.0.0.4"), (20, "127.0.0.5"))
    busy = Scripted("127.0.0.4", env.port, ["busy"])
    old = Scripted("127.0.0.5", env.port, ["no_ehlo"])
    try:
        env.h.start("lmtpd", "queued")
        submit(env.h, ["a@b.example"])
        wait_for(lambda: old.delivered == 1, 20, what="delivery over HELO")
        log = wait_for(lambda: (lambda l: l if "status=sent" in l else None)(env.h.log("queued")))
        assert "421 4.3.2 too busy" in log or "too busy" in log, log
        assert re.search(r"to=<a@b\.example>, relay=mx2\.b\.example\[127\.0\.0\.5\]", log), log
    finally:
        busy.close()
        old.close()


def test_tls_verify_level(env):
    """verify: the certificate must chain to smtp_tls_ca_file and name the
    exchanger; a name mismatch defers (4.7.5)."""
    from sinkfix import test_cert
    env.dns.add("good.example", "MX", "10 sink.test.")
    env.dns.add("sink.test", "A", "127.0.0.2")
    env.mx("bad.example", (10, "127.0.0.3"))
    s2 = env.sink("127.0.0.2", tls=True)
    s3 = env.sink("127.0.0.3", tls=True)
    pol = env.h.path("etc", "tls_policy")
    with open(pol, "w") as f:
        f.write("good.example verify\nbad.example verify\n")
    env.h.conf(smtp_tls_policy_maps=pol, smtp_tls_ca_file=test_cert()[0])
    env.h.start("lmtpd", "queued")
    submit(env.h, ["a@good.example"])
    assert s2.wait(1)[0].tls
    submit(env.h, ["b@bad.example"])
    log = wait_for(lambda: (lambda l: l if "to=<b@bad.example>" in l else None)(
        env.h.log("queued")))
    assert re.search(r"to=<b@bad\.example>.*dsn=4\.7\.5, status=deferred", log), log
    assert s3.msgs == []


def test_failed_handshake_under_may_retries_in_plaintext(env):
    from sinkfix import Scripted
    env.mx("t.example", (10, "127.0.0.4"))
    srv = Scripted("127.0.0.4", env.port, ["bad_tls", "ok"])
    try:
        env.h.start("lmtpd", "queued")
        submit(env.h, ["a@t.example"])
        wait_for(lambda: srv.delivered == 1, 20, what="plaintext delivery")
        assert srv.n == 2
        # the junk arrives with the 220 or after it: either is a TLS failure
        assert re.search(r"TLS with .* failed|sent data after its STARTTLS reply",
                         env.h.log("queued")), env.h.log("queued")
    finally:
        srv.close()


@pytest.mark.parametrize("listen", ["explicit", "wildcard"])
def test_mx_at_our_own_address_is_a_loop(env, listen):
    """An exchanger whose address is one we listen on (smtp_listen, or any
    interface address for a wildcard listener) is never connected to."""
    host = "0.0.0.0" if listen == "wildcard" else "127.0.0.1"
    env.h.conf(smtp_listen="%s:%d" % (host, env.port))     # smtp_port: the MX's port
    env.mx("me.example", (10, "127.0.0.1"))
    env.h.start("lmtpd", "queued")
    submit(env.h, ["a@me.example"])
    _, recs = dsn_of(env.h)
    assert recs[0]["status"] == "5.4.6", recs


def test_relayhost_burst_not_deferred(env):
    """A burst to one relayhost larger than a destination's waiting share
    (a quarter of the 500 slots) is held back for a second, not deferred:
    with a five-minute backoff every message still arrives at once."""
    import threading
    s3 = env.sink("127.0.0.3")
    env.h.conf(relayhost="[127.0.0.3]:%d" % env.port, minimal_backoff_time="300s",
               maximal_backoff_time="600s", default_destination_concurrency_limit="2")
    env.h.start("lmtpd", "queued")
    n = 400

    def burst(k):
        for i in range(n // 8):
            submit(env.h, ["r%d-%d@anywhere.example" % (k, i)])
    ts = [threading.Thread(target=burst, args=(k,)) for k in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert len(s3.wait(n, timeout=90)) >= n
    assert "status=deferred" not in env.h.log("queued")


def test_burst_to_one_relayhost_comes_back_on_room(env):
    """More messages for one destination than a quarter of the remote
    transport (125) are put off without a try; each comes back as soon as
    a waiting job of the destination goes to a session, not a second
    later, and every one is delivered once."""
    import threading
    from test_queued import stats
    # the relay holds its first message until all 170 are queued (however
    # fast this machine's disk makes the submissions), then goes slowly
    gate = threading.Event()
    s3 = env.sink("127.0.0.3", data=lambda m: gate.wait(60) and time.sleep(0.01))
    env.h.conf(relayhost="[127.0.0.3]:%d" % env.port,
               default_destination_concurrency_limit="1")
    env.h.start("lmtpd", "queued")
    s = smtplib.LMTP(env.h.submit_socket)
    s.ehlo()
    for i in range(170):
        assert s.sendmail(SENDER, ["r%d@burst.example" % i], b"Subject: %d\r\n\r\nx\r\n" % i) == {}
    s.quit()
    gate.set()
    msgs = s3.wait(170, timeout=120)
    assert sorted(m.rcpts[0] for m in msgs) == sorted("r%d@burst.example" % i for i in range(170))
    st = stats(env.h)
    assert int(st["postponed"]) > 0 and int(st["unparked"]) > 0, st
    assert int(st["delivered"]) == 170


def test_sighup_starts_a_resolver_that_did_not_start(env):
    """A bad dns_servers: the resolver does not start and remote mail is
    deferred; the list mended and SIGHUP, then a flush: delivered."""
    sink = env.sink("127.0.0.2")
    env.mx("mended.example", (10, "127.0.0.2"))
    env.h.conf(dns_servers="not-an-address")
    env.h.start("lmtpd", "queued")
    submit(env.h, ["a@mended.example"])
    wait_for(lambda: "status=deferred" in env.h.log("queued"), 30, what="the deferral")
    env.h.conf(dns_servers=env.dns.spec)
    env.h.signal("queued", signal.SIGHUP)
    wait_for(lambda: "DNS resolver started" in env.h.log("queued"), 10)
    assert env.h.run("hermod", "flush").returncode == 0
    assert len(sink.wait(1)) == 1


def test_sighup_takes_new_name_servers(env):
    """queued's resolver asks a server that refuses: deferred. dns_servers
    changed and SIGHUP, then a flush: the MX comes from the new server and
    the message is delivered."""
    sink = env.sink("127.0.0.2")
    env.mx("moved.example", (10, "127.0.0.2"))
    env.h.conf(dns_servers="127.0.0.1:%d" % free_udp_port())
    env.h.start("lmtpd", "queued")
    submit(env.h, ["a@moved.example"])
    wait_for(lambda: "status=deferred" in env.h.log("queued"), 30, what="the deferral")
    assert sink.msgs == []
    env.h.conf(dns_servers=env.dns.spec)
    env.h.signal("queued", signal.SIGHUP)
    wait_for(lambda: "configuration and tables reloaded" in env.h.log("queued"), 10)
    assert env.h.run("hermod", "flush").returncode == 0
    assert len(sink.wait(1)) == 1
    assert re.search(r"to=<a@moved\.example>.*status=sent", env.h.log("queued"))


def test_sighup_does_not_wait_for_a_hanging_lookup(env):
    """queued's name server never answers, so a lookup hangs there; the
    new dns_servers and SIGHUP (several, back to back) take effect for the
    next lookup at once instead of after the hanging one. The hanging
    lookup ends at the old server (a deferral), and a flush then delivers
    its message too."""
    import socket
    black = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    black.bind(("127.0.0.1", 0))        # reads nothing, answers nothing
    try:
        sink = env.sink("127.0.0.2")
        env.mx("hang.example", (10, "127.0.0.2"))
        env.mx("next.example", (10, "127.0.0.2"))
        env.h.conf(dns_servers="127.0.0.1:%d" % black.getsockname()[1])
        env.h.start("lmtpd", "queued")
        submit(env.h, ["a@hang.example"])
        time.sleep(0.5)                 # its MX lookup is at the black hole
        env.h.conf(dns_servers=env.dns.spec)
        for _ in range(5):
            env.h.signal("queued", signal.SIGHUP)
            time.sleep(0.05)
        wait_for(lambda: env.h.log("queued").count("configuration and tables reloaded") >= 1,
                 10)
        t0 = time.monotonic()
        submit(env.h, ["b@next.example"])
        got = sink.wait(1, timeout=20)
        assert got[0].rcpts == ["b@next.example"]
        assert time.monotonic() - t0 < 4, "the new lookup waited for the old one"
        wait_for(lambda: re.search(r"to=<a@hang\.example>.*status=deferred",
                                   env.h.log("queued")), 60, what="the hanging lookup's end")
        assert env.h.run("hermod", "flush").returncode == 0
        assert sorted(m.rcpts[0] for m in sink.wait(2, timeout=20)) == [
            "a@hang.example", "b@next.example"]
        assert env.h.procs["queued"].poll() is None
    finally:
        black.close()


def test_mx_address_limit(env):
    """smtp_mx_address_limit (5, as Postfix): a destination whose first
    five exchangers refuse is deferred without trying a sixth, so that
    silent exchangers cost a bounded number of timeouts; with the limit
    raised (SIGHUP) and a flush the sixth gets the mail."""
    hosts = ["127.0.0.%d" % i for i in range(2, 8)]
    env.mx("many.example", *[(10 * (i + 1), a) for i, a in enumerate(hosts)])
    sink = env.sink(hosts[-1])
    env.h.start("lmtpd", "queued")
    submit(env.h, ["a@many.example"])
    wait_for(lambda: "status=deferred" in env.h.log("queued"), 30, what="the deferral")
    assert sink.msgs == []
    env.h.conf(smtp_mx_address_limit="0")
    env.h.signal("queued", signal.SIGHUP)
    wait_for(lambda: "configuration and tables reloaded" in env.h.log("queued"), 10)
    assert env.h.run("hermod", "flush").returncode == 0
    assert len(sink.wait(1)) == 1
    assert re.search(r"to=<a@many\.example>, relay=mx6\.many\.example\[127\.0\.0\.7\]", env.h.log("queued"))
