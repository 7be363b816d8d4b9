"""smtpd's protocol matrix (RFC 5321 and the ESMTP extensions it offers),
driven with smtplib and raw sockets against real smtpd, queued and lmtpd
daemons: replies and enhanced codes for every state and syntax error,
pipelining, BDAT, SIZE, SMTPUTF8, DSN parameters, and messages that end
in alice's Maildir with smtpd's Received: header.

Other test_smtpd_*.py files import Client, start and send_ok from here."""

import os
import re
import signal
import smtplib
import socket
import time

from hermod import wait_for

ALICE = "alice@example.test"
QID = re.compile(rb"queued as ([0-9A-F]{16})")


class Client:
    """A raw SMTP client: exact bytes out, replies (code, text) in."""

    def __init__(self, port, host="127.0.0.1", source=None, timeout=10):
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.buf = b""
        self.greeting = self.reply()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed; have %r" % self.buf)
            self.buf += chunk
        ln, self.buf = self.buf.split(b"\n", 1)
        assert ln.endswith(b"\r"), "reply line without CRLF: %r" % ln
        return ln[:-1]

    def reply(self):
        """(code, text) with the lines' texts joined by newlines."""
        texts = []
        while True:
            ln = self.line()
            code, sep, text = int(ln[:3]), ln[3:4], ln[4:]
            texts.append(text.decode("utf-8", "replace"))
            if sep != b"-":
                return code, "\n".join(texts)

    def cmd(self, line):
        self.send(line + "\r\n" if isinstance(line, str) else line + b"\r\n")
        return self.reply()

    def closed(self, timeout=5):
        """True when the server has closed the connection (EOF)."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b"" and not self.buf
        except ConnectionResetError:
            return True


def start(hermod, users=("alice",), **conf):
    conf.setdefault("smtpd_error_sleep_time", "0")    # tests go fast
    for u in users:
        hermod.add_user(u)
    if conf:
        hermod.conf(**conf)
    hermod.newaliases()
    hermod.start()


def send_ok(c, body=b"Subject: t\r\n\r\nhello\r\n", rcpts=(ALICE,), sender="bob@remote.test"):
    assert c.cmd("MAIL FROM:<%s>" % sender)[0] == 250
    for r in rcpts:
        assert c.cmd("RCPT TO:<%s>" % r)[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(body + b".\r\n")
    code, text = c.reply()
    assert code == 250, text
    return text


def test_greeting_ehlo_helo(hermod):
    start(hermod, smtpd_banner="$myhostname ESMTP test banner")
    with Client(hermod.smtp_port) as c:
        assert c.greeting == (220, "mx.example.test ESMTP test banner")
        code, text = c.cmd("EHLO client.example")
        assert code == 250
        lines = text.split("\n")
        assert lines[0] == "mx.example.test"
        for kw in ("PIPELINING", "SIZE 52428800", "8BITMIME", "ENHANCEDSTATUSCODES",
                   "SMTPUTF8", "DSN", "CHUNKING"):
            assert kw in lines
        assert "STARTTLS" not in lines          # no tls_cert_file
        assert c.cmd("HELO client.example") == (250, "mx.example.test")
        assert c.cmd("EHLO")[0] == 501
        assert c.cmd("HELO")[0] == 501
        assert c.cmd("QUIT") == (221, "2.0.0 Bye")
        assert c.closed()


def test_sequence_errors(hermod):
    start(hermod)
    with Client(hermod.smtp_port) as c:
        assert c.cmd("MAIL FROM:<a@b.test>") == (503, "5.5.1 Error: send HELO/EHLO first")
        assert c.cmd("RCPT TO:<%s>" % ALICE)[0] == 503
        assert c.cmd("DATA")[0] == 503
        assert c.cmd("EHLO x")[0] == 250
        assert c.cmd("RCPT TO:<%s>" % ALICE) == (503, "5.5.1 Error: need MAIL command")
        assert c.cmd("DATA") == (503, "5.5.1 Error: need MAIL command")
        assert c.cmd("MAIL FROM:<a@b.test>")[0] == 250
        assert c.cmd("MAIL FROM:<a@b.test>") == (503, "5.5.1 Error: nested MAIL command")
        assert c.cmd("DATA") == (503, "5.5.1 Error: need RCPT command")
        assert c.cmd("RCPT TO:<nobody@example.test>")[0] == 550
        assert c.cmd("DATA")[0] == 503           # no recipient accepted
        assert c.cmd("RSET") == (250, "2.0.0 Ok")
        assert c.cmd("RCPT TO:<%s>" % ALICE)[0] == 503


def test_syntax_errors(hermod):
    start(hermod, smtpd_hard_error_limit=100)
    with Client(hermod.smtp_port) as c:
        c.cmd("EHLO x")
        assert c.cmd("FROB") == (500, "5.5.2 Error: command not recognized")
        assert c.cmd("MAIL TO:<a@b.test>") == (501, "5.5.4 Syntax: MAIL FROM:<address>")
        assert c.cmd("MAIL FROM:a@b.test")[0] == 501
        for bad in ("<a@b@c.test>", "<a..b@c.test>", "<.a@c.test>", "<a@-c.test>",
                    "<a@c..test>", "<a@>", "<@c.test>", "<a b@c.test>", "<a@c.test",
                    "<\"a@c.test>", "<a@[1.2.3.4>", "<%s@c.test>" % ("x" * 65),
                    "<a@%s.test>" % ("x" * 300)):
            code, text = c.cmd("MAIL FROM:" + bad)
            assert (code, text[:5]) == (501, "5.1.7"), bad
        assert c.cmd("MAIL FROM:<a@b.test> FROB=1") == (555, "5.5.4 Unsupported option")
        assert c.cmd("MAIL FROM:<a@b.test> BODY=BINARYMIME")[0] == 555
        assert c.cmd("MAIL FROM:<a@b.test> SIZE=abc")[0] == 501
        assert c.cmd("MAIL FROM:<a@b.test> RET=SOME")[0] == 501
        assert c.cmd("MAIL FROM:<a@b.test> ENVID=a\x7fb")[0] == 501
        assert c.cmd("MAIL FROM:<>")[0] == 250               # null sender
        assert c.cmd("RCPT TO:<>")[:1] == (501,)
        assert c.cmd("RCPT TO:<%s> NOTIFY=NEVER,SUCCESS" % ALICE)[0] == 501
        assert c.cmd("RCPT TO:<%s> NOTIFY=SOMETIMES" % ALICE)[0] == 501
        assert c.cmd("RCPT TO:<%s> ORCPT=nosemicolon" % ALICE)[0] == 501
        assert c.cmd("RCPT TO:<%s> FOO" % ALICE)[0] == 555
        assert c.cmd("DATA extra")[0] in (501, 503)
        assert c.cmd("RSET extra")[0] == 501
        c.send(b"NOOP\x00junk\r\n")
        assert c.reply() == (500, "5.5.2 Error: bad syntax")
        c.send(b"NOOP " + b"x" * 5000 + b"\r\n")
        assert c.reply() == (500, "5.5.2 Error: line too long")
        assert c.cmd("NOOP") == (250, "2.0.0 Ok")        # still in step


def test_helo_session_refuses_esmtp_parameters(hermod):
    start(hermod)
    with Client(hermod.smtp_port) as c:
        c.cmd("HELO x")
        assert c.cmd("MAIL FROM:<a@b.test> SIZE=10")[0] == 555
        assert c.cmd("MAIL FROM:<a@b.test>")[0] == 250


def test_vrfy_expn_help_noop(hermod):
    start(hermod)
    with Client(hermod.smtp_port) as c:
        c.cmd("EHLO x")
        assert c.cmd("VRFY alice")[0] == 252
        assert c.cmd("VRFY nobody")[0] == 252     # never tells who exists
        assert c.cmd("VRFY")[0] == 501
        assert c.cmd("EXPN staff")[0] == 502
        code, text = c.cmd("HELP")
        assert code == 214 and text.startswith("2.0.0")
        assert c.cmd("NOOP anything")[0] == 250


def test_every_reply_has_an_enhanced_code(hermod):
    start(hermod)
    with Client(hermod.smtp_port) as c:
        replies = [c.cmd(x) for x in ("MAIL FROM:<a@b.test>", "EHLO x", "FROB", "VRFY a",
                                      "EXPN a", "MAIL FROM:<a@b.test>", "RCPT TO:<x@remote.test>",
                                      "RCPT TO:<nobody@example.test>", "DATA x", "RSET", "NOOP",
                                      "STARTTLS", "AUTH PLAIN")]
        for code, text in replies:
            if code != 250 or "\n" not in text:    # EHLO's keywords have none
                assert re.match(r"[245]\.\d{1,3}\.\d{1,3} ", text), (code, text)


def test_message_delivered_with_received_header(hermod):
    start(hermod)
    with smtplib.SMTP("127.0.0.1", hermod.smtp_port, timeout=10) as s:
        s.ehlo("client.example")
        s.mail("bob@remote.test")
        s.rcpt(ALICE)
        code, text = s.data(b"Subject: hello\r\n\r\nline one\r\n.leading dot\r\n")
        assert code == 250
        qid = QID.search(text).group(1).decode()
    msg = hermod.wait_messages("alice", 1)[0]
    head, body = msg.split(b"\n\n", 1)
    received = re.search(rb"Received: from client\.example \(unknown \[127\.0\.0\.1\]\)\n"
                         rb"\tby mx\.example\.test \(Hermod\) with ESMTP id ([0-9A-F]{16})\n"
                         rb"\tfor <alice@example\.test>; \w{3}, \d\d \w{3} \d{4} ", head)
    assert received, head
    assert received.group(1).decode() == qid
    assert body == b"line one\n.leading dot\n"
    assert ("%s: client=unknown[127.0.0.1], from=<bob@remote.test>, nrcpt=1" % qid) in hermod.log("smtpd")


def test_helo_in_utf8(hermod):
    """A client named in UTF-8 (we offer SMTPUTF8; Postfix takes it too)
    is greeted; its name reaches logs and the Received: header with the
    8-bit bytes as '?'. Bytes that are not UTF-8 are a syntax error."""
    start(hermod)
    with Client(hermod.smtp_port) as c:
        assert c.cmd(b"EHLO m\xc3\xbcller-pc\xff")[0] == 501
        assert c.cmd(b"EHLO m\xc3\xbcller-pc")[0] == 250
        send_ok(c)
    msg = hermod.wait_messages("alice", 1)[0]
    assert b"Received: from m??ller-pc (unknown [127.0.0.1])" in msg, msg
    assert "helo=<m??ller-pc>" in hermod.log("smtpd")


def test_two_recipients_no_for_clause(hermod):
    start(hermod, users=("alice", "carol"))
    with Client(hermod.smtp_port) as c:
        c.cmd("EHLO x")
        send_ok(c, rcpts=(ALICE, "carol@example.test"))
    for u in ("alice", "carol"):
        msg = hermod.wait_messages(u, 1)[0]
        assert b"with ESMTP id " in msg
        assert b"\tfor <" not in msg.split(b"\n\n")[0]


def test_pipelined_transactions(hermod):
    start(hermod)
    with Client(hermod.smtp_port) as c:
        c.cmd("EHLO x")
        one = ("MAIL FROM:<bob@remote.test>\r\nRCPT TO:<%s>\r\nRCPT TO:<nobody@example.test>\r\n"
               "DATA\r\n" % ALICE)
        c.send(one)
        assert [c.reply()[0] for _ in range(4)] == [250, 250, 550, 354]
        # the message, a second transaction and QUIT in one write
        c.send("Subject: one\r\n\r\n1\r\n.\r\n" + one.replace("RCPT TO:<nobody@example.test>\r\n", ""))
        assert c.reply()[0] == 250
        assert [c.reply()[0] for _ in range(3)] == [250, 250, 354]
        c.send("Subject: two\r\n\r\n2\r\n.\r\nQUIT\r\n")
        assert c.reply()[0] == 250
        assert c.reply()[0] == 221
    msgs = hermod.wait_messages("alice", 2)
    assert sorted(m.split(b"\n\n", 1)[1] for m in msgs) == [b"1\n", b"2\n"]


def test_bdat(hermod):
    start(hermod)
    with Client(hermod.smtp_port) as c:
        c.cmd("EHLO x")
        # BDAT out of place: its octets are read, never taken for commands
        c.send(b"BDAT 12\r\nRSET\r\nQUIT\r\n")
        assert c.reply()[0] == 503
        assert c.cmd("NOOP")[0] == 250
        assert c.cmd("MAIL FROM:<bob@remote.test>")[0] == 250
        assert c.cmd("BDAT 0 LAST")[0] == 503     # no recipient yet
        c.send(b"BDAT 4\r\nabcd")
        assert c.reply()[0] == 503
        assert c.cmd("RCPT TO:<%s>" % ALICE)[0] == 250
        part1 = b"Subject: chunks\r\n\r\n.first line\r\n"
        c.send(b"BDAT %d\r\n" % len(part1) + part1)
        assert c.reply()[0] == 250
        assert c.cmd("DATA")[0] == 503           # BDAT in progress
        part2 = b"second line\r\n"
        c.send(b"BDAT %d LAST\r\n" % len(part2) + part2)
        code, text = c.reply()
        assert code == 250 and QID.search(text.encode())
        # BDAT 0 LAST: an empty last chunk
        assert c.cmd("MAIL FROM:<bob@remote.test>")[0] == 250
        assert c.cmd("RCPT TO:<%s>" % ALICE)[0] == 250
        c.send(b"BDAT 14\r\nSubject: z\r\n\r\nBDAT 0 LAST\r\n")
        assert c.reply()[0] == 250
        assert c.reply()[0] == 250
        assert c.cmd("BDAT x")[0] == 501         # length unknown: session ends
        assert c.closed()
    msgs = hermod.wait_messages("alice", 2)
    bodies = sorted(m.split(b"\n\n", 1)[1] for m in msgs)
    assert b".first line\nsecond line\n" in bodies


def test_size_limit(hermod):
    start(hermod, message_size_limit="2k")
    with Client(hermod.smtp_port) as c:
        code, text = c.cmd("EHLO x")
        assert "SIZE 2048" in text.split("\n")
        assert c.cmd("MAIL FROM:<bob@remote.test> SIZE=2049") == \
            (552, "5.3.4 Message size exceeds fixed limit")
        assert c.cmd("MAIL FROM:<bob@remote.test> SIZE=100")[0] == 250
        assert c.cmd("RCPT TO:<%s>" % ALICE)[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(b"Subject: big\r\n\r\n" + (b"x" * 70 + b"\r\n") * 40 + b".\r\n")
        code, text = c.reply()
        assert (code, text[:5]) == (552, "5.3.4")
        send_ok(c, body=b"Subject: small\r\n\r\nsmall\r\n")
    msgs = hermod.wait_messages("alice", 1)
    time.sleep(0.5)
    assert len(hermod.messages("alice")) == 1 and b"small" in msgs[0]


def test_smtputf8(hermod):
    start(hermod)
    with Client(hermod.smtp_port) as c:
        c.cmd("EHLO x")
        assert c.cmd("MAIL FROM:<j\u00f6rg@b\u00fccher.test>".encode())[0] == 553
        assert c.cmd("MAIL FROM:<j\u00f6rg@b\u00fccher.test> SMTPUTF8 BODY=8BITMIME".encode())[0] == 250
        assert c.cmd("RCPT TO:<%s>" % ALICE)[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send("Subject: gr\u00fc\u00dfe\r\n\r\nh\u00e9llo\r\n.\r\n".encode())
        assert c.reply()[0] == 250
        assert c.cmd(b"MAIL FROM:<a\xff@b.test> SMTPUTF8")[0] == 501   # not UTF-8
    msg = hermod.wait_messages("alice", 1)[0]
    assert "with UTF8SMTP id".encode() in msg
    assert "h\u00e9llo".encode() in msg


def test_dsn_parameters_accepted(hermod):
    start(hermod)
    with Client(hermod.smtp_port) as c:
        c.cmd("EHLO x")
        assert c.cmd("MAIL FROM:<bob@remote.test> RET=HDRS ENVID=abc+2Bdef")[0] == 250
        assert c.cmd("RCPT TO:<%s> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;alice+40example.test" % ALICE)[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(b"Subject: dsn\r\n\r\nx\r\n.\r\n")
        assert c.reply()[0] == 250
    hermod.wait_messages("alice", 1)


def test_postmaster_always_accepted(hermod):
    start(hermod)
    with Client(hermod.smtp_port) as c:
        c.cmd("EHLO x")
        c.cmd("MAIL FROM:<bob@remote.test>")
        assert c.cmd("RCPT TO:<Postmaster>")[0] == 250
        assert c.cmd("RCPT TO:<postmaster@example.test>")[0] == 250
        assert c.cmd("RCPT TO:<root>")[0] == 501


def test_queued_down_gives_451(hermod):
    start(hermod)
    hermod.stop("queued")
    with Client(hermod.smtp_port) as c:
        c.cmd("EHLO x")
        assert c.cmd("MAIL FROM:<bob@remote.test>")[0] == 250
        assert c.cmd("RCPT TO:<%s>" % ALICE)[0] == 250
        code, text = c.cmd("DATA")
        assert (code, text[:5]) == (451, "4.3.0")
        assert c.cmd("NOOP")[0] == 250
    hermod.start("queued")
    with Client(hermod.smtp_port) as c:
        c.cmd("EHLO x")
        send_ok(c)
    hermod.wait_messages("alice", 1)


def test_disconnect_mid_data_queues_nothing(hermod):
    start(hermod)
    c = Client(hermod.smtp_port)
    c.cmd("EHLO x")
    c.cmd("MAIL FROM:<bob@remote.test>")
    c.cmd("RCPT TO:<%s>" % ALICE)
    assert c.cmd("DATA")[0] == 354
    c.send(b"Subject: half\r\n\r\n" + b"y" * 100000)
    time.sleep(0.3)
    c.close()
    wait_for(lambda: "disconnect from" in hermod.log("smtpd").split("lost connection")[-1], 10)
    time.sleep(1)
    assert hermod.messages("alice") == []
    r = hermod.run("hermod", "queue")
    assert "bob@remote.test" not in r.stdout
    assert os.listdir(hermod.path("spool", "incoming")) == [] if os.path.isdir(
        hermod.path("spool", "incoming")) else True


def test_sigterm_ends_idle_sessions(hermod):
    start(hermod)
    c = Client(hermod.smtp_port)
    c.cmd("EHLO x")
    hermod.signal("smtpd", signal.SIGTERM)
    code, text = c.reply()
    assert (code, text[:5]) == (421, "4.3.2")
    assert hermod.procs["smtpd"].wait(10) == 0
    c.close()


def test_http_request_ends_the_session(hermod):
    start(hermod)
    with Client(hermod.smtp_port) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: mx.example.test\r\nMAIL FROM:<a@b.test>\r\n\r\n")
        code, text = c.reply()
        assert (code, text[:5]) == (421, "4.7.0")
        assert c.closed()           # nothing after the request got a reply
    assert "non-SMTP command from unknown[127.0.0.1]" in hermod.log("smtpd")


def test_ehlo_resets_the_transaction_and_helo_is_smtp(hermod):
    start(hermod)
    with Client(hermod.smtp_port) as c:
        c.cmd("EHLO x")
        c.cmd("MAIL FROM:<bob@remote.test>")
        c.cmd("RCPT TO:<%s>" % ALICE)
        assert c.cmd("HELO again.example")[0] == 250
        assert c.cmd("DATA")[0] == 503
        send_ok(c)
    msg = hermod.wait_messages("alice", 1)[0]
    assert b"Received: from again.example (unknown [127.0.0.1])\n\tby mx.example.test (Hermod) with SMTP id " in msg


def test_ipv6_listener(hermod):
    import socket as so
    try:
        with so.socket(so.AF_INET6) as t:
            t.bind(("::1", 0))
            port = t.getsockname()[1]
    except OSError:
        import pytest
        pytest.skip("no IPv6 loopback")
    start(hermod, smtp_listen="127.0.0.1:%d [::1]:%d" % (hermod.smtp_port, port))
    with Client(port, host="::1") as c:
        assert c.greeting[0] == 220
        c.cmd("EHLO v6")
        c.cmd("MAIL FROM:<bob@remote.test>")
        assert c.cmd("RCPT TO:<x@elsewhere.test>")[0] == 250    # [::1]/128 trusted
        c.cmd("RSET")
        send_ok(c)
    msg = hermod.wait_messages("alice", 1)[0]
    assert b"Received: from v6 (unknown [IPv6:::1])" in msg


def test_sighup_reloads(hermod):
    start(hermod)
    with Client(hermod.smtp_port) as old:
        hermod.conf(smtpd_banner="$myhostname ESMTP reloaded")
        hermod.signal("smtpd", signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in hermod.log("smtpd"), 10)
        with Client(hermod.smtp_port) as c:
            assert c.greeting == (220, "mx.example.test ESMTP reloaded")
        assert old.cmd("NOOP")[0] == 250       # sessions live on


def test_sigterm_lets_a_transaction_finish(hermod):
    start(hermod)
    c = Client(hermod.smtp_port)
    c.cmd("EHLO x")
    assert c.cmd("MAIL FROM:<bob@remote.test>")[0] == 250
    hermod.signal("smtpd", signal.SIGTERM)
    time.sleep(0.5)
    assert hermod.procs["smtpd"].poll() is None       # still serving this one
    assert c.cmd("RCPT TO:<%s>" % ALICE)[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(b"Subject: last\r\n\r\nlast one\r\n.\r\n")
    assert c.reply()[0] == 250
    code, text = c.reply()
    assert (code, text[:5]) == (421, "4.3.2")
    assert hermod.procs["smtpd"].wait(10) == 0
    c.close()
    hermod.wait_messages("alice", 1)


def test_swaks(hermod):
    import shutil
    import subprocess
    import pytest
    if not shutil.which("swaks"):
        pytest.skip("swaks not installed")
    start(hermod)
    for extra in ([], ["--pipeline"], ["--protocol", "SMTP"]):
        r = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % hermod.smtp_port,
                            "--from", "bob@remote.test", "--to", ALICE,
                            "--helo", "swaks.example", "--header", "Subject: swaks",
                            "--body", "via swaks"] + extra,
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "250 2.0.0 Ok: queued as" in r.stdout
    msgs = hermod.wait_messages("alice", 3)
    assert all(b"via swaks" in m for m in msgs)
    r = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % hermod.smtp_port,
                        "--from", "bob@remote.test", "--to", "nobody@example.test"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "550 5.1.1" in r.stdout


def test_queued_dies_mid_data(hermod):
    start(hermod)
    with Client(hermod.smtp_port) as c:
        c.cmd("EHLO x")
        c.cmd("MAIL FROM:<bob@remote.test>")
        c.cmd("RCPT TO:<%s>" % ALICE)
        assert c.cmd("DATA")[0] == 354
        c.send(b"Subject: half\r\n\r\n" + b"z" * 50000 + b"\r\n")
        time.sleep(0.3)
        hermod.kill("queued")
        c.send(b"rest\r\n.\r\n")
        code, text = c.reply()
        assert (code, text[:5]) == (451, "4.3.0")
        assert c.cmd("NOOP")[0] == 250
    hermod.start("queued")
    time.sleep(1)
    assert hermod.messages("alice") == []


def test_early_354_holds_the_data_until_queued_answers(hermod):
    """On a connection to queued that served before (kept in smtpd's
    pool), DATA gets its 354 without waiting for queued: with queued
    stopped (SIGSTOP) the 354 still comes, the message (larger than what
    smtpd holds, so the session pauses) waits, and once queued runs
    again it is queued whole, the Received: header first."""
    start(hermod)
    with Client(hermod.smtp_port) as c:        # warms the pool
        c.cmd("EHLO x")
        send_ok(c)
    hermod.wait_messages("alice", 1)
    body = b"Subject: early\r\n\r\n" + b"".join(b"%06d " % i + b"w" * 70 + b"\r\n"
                                                 for i in range(4000))
    hermod.signal("queued", signal.SIGSTOP)
    try:
        with Client(hermod.smtp_port, timeout=20) as c:
            c.cmd("EHLO x")
            assert c.cmd("MAIL FROM:<bob@remote.test>")[0] == 250
            assert c.cmd("RCPT TO:<%s>" % ALICE)[0] == 250
            assert c.cmd("DATA")[0] == 354        # queued cannot have answered
            c.sock.settimeout(0.5)
            c.sock.setblocking(False)
            sent = 0
            deadline = time.time() + 3
            while sent < len(body) and time.time() < deadline:
                try:
                    sent += c.sock.send(body[sent:sent + 65536])
                except BlockingIOError:
                    time.sleep(0.05)
            c.sock.setblocking(True)
            c.sock.settimeout(20)
            hermod.signal("queued", signal.SIGCONT)
            c.send(body[sent:] + b".\r\n")
            code, text = c.reply()
            assert code == 250, text
            qid = QID.search(text.encode()).group(1).decode()
    finally:
        hermod.signal("queued", signal.SIGCONT)
    msg = hermod.wait_messages("alice", 2)
    got = [m for m in msg if b"Subject: early" in m][0]
    head, text = got.split(b"\n\n", 1)
    first = head.index(b"Received: ")
    assert head[first:].startswith(b"Received: from x (unknown [127.0.0.1])"), head
    assert first < head.index(b"Subject: early")
    assert (b"with ESMTP id %s\n" % qid.encode()) in head
    assert text == body.split(b"\r\n\r\n", 1)[1].replace(b"\r\n", b"\n")


def test_no_early_354_while_another_transaction_waits_for_queued(hermod):
    """The 354 goes early only when queued has nothing else of this smtpd
    to answer: with one message waiting for a stopped queued, a second
    session's DATA waits for queued's 354, and both are queued once it
    runs again."""
    start(hermod)
    warm = [Client(hermod.smtp_port), Client(hermod.smtp_port)]
    for c in warm:              # at once: two connections to queued, pooled
        c.cmd("EHLO x")
        send_ok(c)
    for c in warm:
        c.close()
    hermod.wait_messages("alice", 2)
    time.sleep(0.3)             # smtpd has seen both sessions end
    hermod.signal("queued", signal.SIGSTOP)
    a = Client(hermod.smtp_port, timeout=20)
    b = Client(hermod.smtp_port, timeout=20)
    try:
        for c in (a, b):
            c.cmd("EHLO x")
            assert c.cmd("MAIL FROM:<bob@remote.test>")[0] == 250
            assert c.cmd("RCPT TO:<%s>" % ALICE)[0] == 250
        assert a.cmd("DATA")[0] == 354              # queued idle: early
        a.send(b"Subject: first\r\n\r\none\r\n.\r\n")
        b.send(b"DATA\r\n")
        b.sock.settimeout(1.0)
        try:
            got = b.sock.recv(100)
        except socket.timeout:
            got = b""
        assert got == b"", got                      # waits for queued's 354
        b.sock.settimeout(20)
        hermod.signal("queued", signal.SIGCONT)
        assert a.reply()[0] == 250
        assert b.reply()[0] == 354
        b.send(b"Subject: second\r\n\r\ntwo\r\n.\r\n")
        assert b.reply()[0] == 250
    finally:
        hermod.signal("queued", signal.SIGCONT)
        a.close()
        b.close()
    msgs = hermod.wait_messages("alice", 4)
    assert sum(b"Subject: first" in m for m in msgs) == 1
    assert sum(b"Subject: second" in m for m in msgs) == 1
