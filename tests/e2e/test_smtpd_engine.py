"""smtpd on lib/smtp_server (the protocol engine it shares with queued and
lmtpd): the paths the move touched, end to end. Big messages through
DATA and BDAT arrive byte for byte (the session is paused while queued's
socket is full and resumed on its drain), a bare LF refuses the message
before its end and the session goes on, pipelined commands after a
message keep their order, a NUL line and an over-long line get their
replies and count as errors."""

import hashlib
import os

from hermod import wait_for
from test_smtpd import ALICE, QID, Client, start


def body_of(n):
    """n bytes of CRLF lines, some starting with a dot."""
    line = b".%s\r\n" % (b"x" * 70)
    return (line * (n // len(line) + 1))[:n - n % len(line)]


def delivered_body(hermod, count):
    msgs = hermod.wait_messages("alice", count)
    return [m.split(b"\n\n", 1)[1] for m in msgs]


def test_big_data_and_bdat_arrive_whole(hermod):
    start(hermod, message_size_limit="20m")
    big = body_of(4 * 1024 * 1024)
    stuffed = big.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    with Client(hermod.smtp_port, timeout=60) as c:
        c.cmd("EHLO x")
        assert c.cmd("MAIL FROM:<bob@remote.test>")[0] == 250
        assert c.cmd("RCPT TO:<%s>" % ALICE)[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(b"Subject: big\r\n\r\n" + stuffed + b".\r\n")
        code, text = c.reply()
        assert code == 250 and QID.search(text.encode()), text
        assert c.cmd("MAIL FROM:<bob@remote.test>")[0] == 250
        assert c.cmd("RCPT TO:<%s>" % ALICE)[0] == 250
        msg = b"Subject: chunks\r\n\r\n" + big
        third = len(msg) // 3
        for i, part in enumerate((msg[:third], msg[third:2 * third], msg[2 * third:])):
            last = b" LAST" if i == 2 else b""
            c.send(b"BDAT %d%s\r\n" % (len(part), last) + part)
            code, text = c.reply()
            assert code == 250, text
        assert QID.search(text.encode())
        assert c.cmd("QUIT")[0] == 221
    want = hashlib.sha256(big.replace(b"\r\n", b"\n")).hexdigest()
    got = [hashlib.sha256(b).hexdigest() for b in delivered_body(hermod, 2)]
    assert got == [want, want]


def test_bare_lf_refused_and_session_goes_on(hermod):
    start(hermod)
    with Client(hermod.smtp_port) as c:
        c.cmd("EHLO x")
        assert c.cmd("MAIL FROM:<bob@remote.test>")[0] == 250
        assert c.cmd("RCPT TO:<%s>" % ALICE)[0] == 250
        assert c.cmd("DATA")[0] == 354
        # the bare LF comes early; much follows before the real end
        c.send(b"Subject: x\r\n\r\na\nb\r\n" + body_of(200000) + b".\r\n")
        assert c.reply() == (550, "5.5.2 Error: bare <LF> received")
        # pipelined: a whole transaction after the refused one, in order
        c.send(b"MAIL FROM:<bob@remote.test>\r\nRCPT TO:<%s>\r\nDATA\r\n" % ALICE.encode())
        assert c.reply()[0] == 250
        assert c.reply()[0] == 250
        assert c.reply()[0] == 354
        c.send(b"Subject: ok\r\n\r\nfine\r\n.\r\nNOOP\r\n")
        assert c.reply()[0] == 250
        assert c.reply()[0] == 250
    bodies = delivered_body(hermod, 1)
    assert bodies == [b"fine\n"]


def test_nul_and_long_lines_count_as_errors(hermod):
    start(hermod, smtpd_hard_error_limit="3")
    with Client(hermod.smtp_port) as c:
        c.cmd("EHLO x")
        assert c.cmd(b"NO\0OP") == (500, "5.5.2 Error: bad syntax")
        assert c.cmd("NOOP " + "y" * 3000) == (500, "5.5.2 Error: line too long")
        assert c.cmd("NOOP")[0] == 250
        assert c.cmd("FROB") == (500, "5.5.2 Error: command not recognized")
        assert c.reply()[0] == 421
        assert c.closed()
    # the session's end (after its lingering close) counts them as unknown
    wait_for(lambda: "unknown=2 commands=" in hermod.log("smtpd"), 10,
             what="the disconnect line")


def submit_sockets(hermod):
    """smtpd's connections to queued's submission socket: the unix
    sockets among its descriptors (it has no other unix peers here)."""
    pid = hermod.procs["smtpd"].pid
    n = 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if target.startswith("socket:"):
            inode = target[8:-1]
            with open("/proc/net/unix") as f:
                n += any(ln.split()[6] == inode and len(ln.split()) < 8
                         for ln in f.readlines()[1:])
    return n


def one_message(hermod, subject):
    with Client(hermod.smtp_port) as c:
        c.cmd("EHLO x")
        assert c.cmd("MAIL FROM:<bob@remote.test>")[0] == 250
        assert c.cmd("RCPT TO:<%s>" % ALICE)[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(b"Subject: %s\r\n\r\nbody\r\n.\r\n" % subject)
        code, text = c.reply()
        assert c.cmd("QUIT")[0] == 221
    return code, text


def test_queued_connection_kept_for_the_next_session(hermod):
    """A session that ended leaves its idle connection to queued for the
    next session (one message per connection is what most MTAs send);
    one that queued closed meanwhile is dropped, not used."""
    start(hermod)
    base = submit_sockets(hermod)
    assert one_message(hermod, b"one")[0] == 250
    assert wait_for(lambda: submit_sockets(hermod) == base + 1, 10)
    assert one_message(hermod, b"two")[0] == 250
    assert wait_for(lambda: submit_sockets(hermod) == base + 1, 10)
    hermod.stop("queued")
    assert wait_for(lambda: submit_sockets(hermod) == base, 10)
    hermod.start("queued")
    assert one_message(hermod, b"three")[0] == 250
    subjects = [m.split(b"Subject: ", 1)[1].split(b"\n")[0]
                for m in hermod.wait_messages("alice", 3)]
    assert sorted(subjects) == [b"one", b"three", b"two"]
