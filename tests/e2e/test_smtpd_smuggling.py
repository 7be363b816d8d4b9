"""SMTP smuggling (2023) and other bad bytes in DATA: whatever sequence
hides inside the data (bare LF, bare CR, LF.LF, CR.CR, LF.CRLF ...), the
data ends only at CRLF.CRLF, the one message is refused as a whole
(550 5.5.2), no command hidden in it is ever executed, and nothing gets
split into two messages or queued at all."""

import time

import pytest

from test_smtpd import ALICE, Client, send_ok, start

SMUGGLED = (b"MAIL FROM:<evil@remote.test>\r\nRCPT TO:<alice@example.test>\r\n"
            b"DATA\r\nSubject: smuggled\r\n\r\nowned\r\n")

SEQUENCES = [
    b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r\n.\r", b"\r.\r\n", b"\n.\r",
    b"\r\n\x00.\r\n", b"\n", b"\r", b"\r\r\n", b"\n\r\n.\n",
]


@pytest.fixture
def smtp(hermod):
    start(hermod)
    return hermod


@pytest.mark.parametrize("seq", SEQUENCES, ids=[repr(s) for s in SEQUENCES])
def test_smuggling_sequence(smtp, seq):
    with Client(smtp.smtp_port) as c:
        c.cmd("EHLO x")
        c.cmd("MAIL FROM:<bob@remote.test>")
        c.cmd("RCPT TO:<%s>" % ALICE)
        assert c.cmd("DATA")[0] == 354
        c.send(b"Subject: first\r\n\r\nhello" + seq + SMUGGLED + b"\r\n.\r\n")
        code, text = c.reply()
        if b"\x00" in seq and seq.count(b"\n") == seq.count(b"\r\n") and b"\r" not in seq.replace(b"\r\n", b""):
            # a NUL in a CRLF line is no smuggling: one message, delivered
            assert code == 250
            expect = 1
        else:
            assert (code, text[:5]) == (550, "5.5.2"), (seq, code, text)
            expect = 0
        # nothing hidden in the data was taken for a command
        assert c.cmd("NOOP") == (250, "2.0.0 Ok")
        assert c.cmd("QUIT")[0] == 221
    time.sleep(0.5)
    msgs = smtp.messages("alice")
    assert len(msgs) == expect
    assert all(b"owned" not in m.split(b"\n\n", 1)[0] for m in msgs)
    if expect == 0:
        assert "reject: DATA from unknown[127.0.0.1]: 550 5.5.2" in smtp.log("smtpd")


def test_bare_lf_in_bdat_refused(smtp):
    with Client(smtp.smtp_port) as c:
        c.cmd("EHLO x")
        c.cmd("MAIL FROM:<bob@remote.test>")
        c.cmd("RCPT TO:<%s>" % ALICE)
        body = b"Subject: b\r\n\r\nbare\nlf\r\n"
        c.send(b"BDAT %d LAST\r\n" % len(body) + body)
        code, text = c.reply()
        assert (code, text[:5]) == (550, "5.5.2")
        send_ok(c)
    assert len(smtp.wait_messages("alice", 1)) == 1


def test_dot_stuffing_round_trip(smtp):
    with Client(smtp.smtp_port) as c:
        c.cmd("EHLO x")
        send_ok(c, body=b"Subject: dots\r\n\r\n..\r\n...x\r\n. \r\nend\r\n")
    msg = smtp.wait_messages("alice", 1)[0]
    assert msg.split(b"\n\n", 1)[1] == b".\n..x\n \nend\n"


def test_binary_junk_and_long_lines_in_data(smtp):
    with Client(smtp.smtp_port) as c:
        c.cmd("EHLO x")
        junk = bytes(b for b in range(256) if b not in (10, 13))
        send_ok(c, body=b"Subject: junk\r\n\r\n" + junk * 40 + b"\r\n" + b"y" * 200000 + b"\r\n")
    msg = smtp.wait_messages("alice", 1)[0]
    assert b"y" * 200000 in msg


def test_loop_guard(hermod):
    start(hermod, hopcount_limit=5)
    with Client(hermod.smtp_port) as c:
        c.cmd("EHLO x")
        c.cmd("MAIL FROM:<bob@remote.test>")
        c.cmd("RCPT TO:<%s>" % ALICE)
        assert c.cmd("DATA")[0] == 354
        hops = b"".join(b"Received: from h%d by h%d; Thu, 1 Jan 2026 00:00:00 +0000\r\n" % (i, i)
                        for i in range(6))
        c.send(hops + b"Subject: loop\r\n\r\nx\r\n.\r\n")
        assert c.reply()[:1] == (554,)
        # five are fine (ours makes six when it arrives at the next hop)
        c.cmd("MAIL FROM:<bob@remote.test>")
        c.cmd("RCPT TO:<%s>" % ALICE)
        assert c.cmd("DATA")[0] == 354
        c.send(hops.split(b"\r\n", 1)[1] + b"Subject: ok\r\n\r\nbody has\r\nReceived: not a header\r\n.\r\n")
        assert c.reply()[0] == 250
    assert len(hermod.wait_messages("alice", 1)) == 1
