"""lmtpd's protocol edges and its life cycle: bad commands, sequence
errors, long lines, extra listeners (TCP and unix), SIGHUP reload and a
SIGTERM that lets the delivery in progress finish."""

import fcntl
import os
import signal
import smtplib
import threading
import time

from hermod import can_connect, free_port, wait_for
from test_lmtpd import SENDER, maildir_files, mbox_path, msg, start
from test_lmtpd_client import Client, stored


def test_bad_commands_and_sequence(hermod):
    start(hermod, users=[("alice", None, "")])
    with Client(hermod.lmtp_socket, lhlo=None) as c:
        assert c.greeting[0] == 220
        assert c.cmd("MAIL FROM:<a@b>")[0] == 503
        assert c.cmd("EHLO x")[0] == 500
        assert c.cmd("HELO x")[0] == 500
        assert c.cmd("LHLO")[0] == 501
        assert c.cmd("LHLO client")[0] == 250
        assert c.cmd("RCPT TO:<alice@example.test>")[0] == 503
        assert c.cmd("DATA")[0] == 503
        assert c.cmd("FROB")[0] == 500
        c.send(b"NOOP\x00x\r\n")
        assert c.reply()[0] == 500
        assert c.cmd("MAIL FROM:bad")[0] == 501
        assert c.cmd("MAIL FROM:<a@b> FROB=1")[0] == 555
        assert c.cmd("MAIL FROM:<%s> BODY=8BITMIME SMTPUTF8" % ("x" * 300))[0] == 501
        assert c.cmd("MAIL FROM:<a@b> BODY=8BITMIME SMTPUTF8")[0] == 250
        assert c.cmd("MAIL FROM:<a@b>")[0] == 503
        assert c.cmd("RCPT TO:<>")[0] == 501
        assert c.cmd("RCPT TO:<nobody@example.test>")[0] == 550
        assert c.cmd("DATA")[0] == 503          # no valid recipient
        assert c.cmd("RCPT TO:<alice@example.test> NOTIFY=NEVER")[0] == 250
        assert c.cmd("RSET")[0] == 250
        assert c.cmd("DATA")[0] == 503
        assert c.cmd("VRFY alice")[0] == 252
    assert not os.path.exists(hermod.path("mail/alice"))   # nothing delivered


def test_long_command_line_closes(hermod):
    start(hermod, users=[("alice", None, "")])
    with Client(hermod.lmtp_socket) as c:
        c.send(b"NOOP " + b"x" * 100000)
        code, _ = c.reply()
        assert code == 500
    # the daemon is still there
    with Client(hermod.lmtp_socket) as c:
        assert c.cmd("NOOP")[0] == 250


def test_long_line_drained_and_error_limit(hermod):
    """A line one byte past the bound is answered 500 and thrown away (never
    executed, the session goes on); the 21st error ends the session with
    421 (lib/smtp_server's counter)."""
    start(hermod, users=[("alice", None, "")])
    with Client(hermod.lmtp_socket) as c:
        assert c.cmd("NOOP " + "x" * 2043)[0] == 250     # 2048 + CRLF: the bound
        c.send(b"RSET " + b"x" * 2044 + b"\r\n")        # one past
        assert c.reply()[0] == 500
        assert c.cmd("NOOP")[0] == 250
        for _ in range(19):
            assert c.cmd("FROB")[0] == 500
        assert c.cmd("DATA")[0] == 503                   # error 21
        code, text = c.reply()
        assert code == 421 and text.startswith("4.7.0")
        assert c.file.readline() == b""


def test_missing_final_newline_and_bare_lf(hermod):
    start(hermod, users=[("alice", None, "")])
    with Client(hermod.lmtp_socket) as c:
        assert c.cmd("MAIL FROM:<%s>" % SENDER)[0] == 250
        assert c.cmd("RCPT TO:<alice@example.test>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        # a bare LF and a "." after a bare LF do not end the data
        c.send(b"Subject: lf\r\n\r\nbare\n.\nstill data\r\n.\r\n")
        code, _ = c.reply()
        assert code == 250
    got = maildir_files(hermod, "alice")
    assert got == [b"Return-Path: <sender@example.org>\nDelivered-To: alice@example.test\n"
                   b"Subject: lf\n\nbare\n.\nstill data\n"]


def test_extra_listeners(hermod):
    port = free_port()
    other = hermod.path("run/other-lmtp")
    start(hermod, conf={"lmtp_listen": "127.0.0.1:%d, unix:%s" % (port, other)},
          users=[("alice", None, "")])
    wait_for(lambda: can_connect(("127.0.0.1", port)), 10, what="TCP listener")
    with smtplib.LMTP("127.0.0.1", port, timeout=30) as s:
        assert s.sendmail(SENDER, ["alice@example.test"], msg("tcp")) == {}
    with smtplib.LMTP(other, timeout=30) as s:
        assert s.sendmail(SENDER, ["alice@example.test"], msg("unix")) == {}
    assert len(maildir_files(hermod, "alice")) == 2


def test_sighup_reloads(hermod):
    start(hermod, users=[("alice", None, "")])
    with Client(hermod.lmtp_socket) as c:
        assert "SIZE 52428800" in c.ehlo
    hermod.conf(message_size_limit="4096")
    hermod.signal("lmtpd", signal.SIGHUP)

    def reloaded():
        with Client(hermod.lmtp_socket) as c:
            return "SIZE 4096" in c.ehlo
    wait_for(reloaded, 10, what="new SIZE after SIGHUP")


def test_sigterm_lets_delivery_finish(hermod):
    path = mbox_path(hermod, "bob")
    start(hermod, conf={"mailbox_lock_timeout": "20s"}, users=[("bob", path, "")])
    with open(path, "wb"):
        pass
    os.chown(path, hermod.uid, hermod.gid)
    result = {}
    with open(path, "r+b") as held:
        fcntl.lockf(held, fcntl.LOCK_EX)

        def client():
            with Client(hermod.lmtp_socket) as c:
                result["dr"] = c.transaction(SENDER, ["bob@example.test"], msg("term"))[1]
        t = threading.Thread(target=client)
        t.start()
        wait_for(lambda: "nrcpt=1" in hermod.log("lmtpd"), 10, what="delivery started")
        hermod.signal("lmtpd", signal.SIGTERM)
        wait_for(lambda: not can_connect(hermod.lmtp_socket), 10, what="listener closed")
        time.sleep(0.3)
        assert hermod.procs["lmtpd"].poll() is None   # still delivering
        fcntl.lockf(held, fcntl.LOCK_UN)
    t.join(30)
    assert result["dr"][0][0] == 250, result
    assert hermod.procs["lmtpd"].wait(10) == 0
    box = hermod.mbox(path)
    assert [box.get_bytes(k) for k in box.keys()] == [stored(SENDER, "bob@example.test", msg("term"))]


def test_bdat_chunks_and_missing_final_crlf(hermod):
    start(hermod, users=[("alice", None, ""), ("bob", mbox_path(hermod, "bob"), "")])
    with Client(hermod.lmtp_socket) as c:
        assert "CHUNKING" in c.ehlo
        # a chunk out of place is read and dropped, then 503
        c.send(b"BDAT 5\r\nhello")
        assert c.reply()[0] == 503
        assert c.cmd("MAIL FROM:<%s>" % SENDER)[0] == 250
        assert c.cmd("RCPT TO:<alice@example.test>")[0] == 250
        assert c.cmd("RCPT TO:<bob@example.test>")[0] == 250
        part1 = b"Subject: bdat\r\n\r\nline one\r\n.dot stays\r\nFrom here\r"
        part2 = b"\nno final line end"
        c.send(b"BDAT %d\r\n" % len(part1) + part1)
        assert c.reply()[0] == 250
        assert c.cmd("DATA")[0] == 503
        c.send(b"BDAT %d LAST\r\n" % len(part2) + part2)
        assert [c.reply()[0] for _ in range(2)] == [250, 250]
        # pipelined: a whole transaction with BDAT 0 LAST closing it
        c.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<alice@example.test>\r\n"
               b"BDAT 11\r\nSubject: \r\nBDAT 0 LAST\r\nNOOP\r\n")
        assert [c.reply()[0] for _ in range(5)] == [250, 250, 250, 250, 250]
    want = (b"Return-Path: <sender@example.org>\nDelivered-To: alice@example.test\n"
            b"Subject: bdat\n\nline one\n.dot stays\nFrom here\nno final line end\n")
    got = sorted(maildir_files(hermod, "alice"), key=len)
    assert got[1] == want
    assert got[0] == b"Return-Path: <a@example.org>\nDelivered-To: alice@example.test\nSubject: \n"
    raw = open(mbox_path(hermod, "bob"), "rb").read()
    assert raw.endswith(b"\n>From here\nno final line end\n\n")


def test_bdat_bad_size_closes(hermod):
    start(hermod, users=[("alice", None, "")])
    with Client(hermod.lmtp_socket) as c:
        assert c.cmd("BDAT x")[0] == 501
        try:
            line = c.file.readline()
        except OSError:
            line = b""
        assert line == b""


def test_pipelining_past_the_final_dot(hermod):
    start(hermod, users=[("alice", None, ""), ("bob", None, "")])
    with Client(hermod.lmtp_socket) as c:
        c.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<alice@example.test>\r\n"
               b"RCPT TO:<bob@example.test>\r\nDATA\r\n")
        assert [c.reply()[0] for _ in range(4)] == [250, 250, 250, 354]
        # the message, then a whole second transaction, in one write
        c.send(b"Subject: one\r\n\r\n..dot\r\n.\r\n"
               b"MAIL FROM:<b@example.org>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
               b"Subject: two\r\n\r\nbody\r\n.\r\nQUIT\r\n")
        codes = [c.reply()[0] for _ in range(7)]
        assert codes == [250, 250, 250, 250, 354, 250, 221]
    assert maildir_files(hermod, "alice") == [
        b"Return-Path: <a@example.org>\nDelivered-To: alice@example.test\nSubject: one\n\n.dot\n"]
    assert len(maildir_files(hermod, "bob")) == 2


def test_pipelined_flood_without_reading(hermod):
    """20,000 pipelined commands sent while the replies are not read:
    lmtpd stops reading instead of queueing replies without bound, and
    every command still gets its reply."""
    start(hermod, users=[("alice", None, "")])
    n = 20000
    with Client(hermod.lmtp_socket) as c:
        t = threading.Thread(target=c.send, args=(b"NOOP\r\n" * n,))
        t.start()
        time.sleep(1)
        codes = [c.reply()[0] for _ in range(n)]
        t.join(30)
        assert codes == [250] * n
        assert c.cmd("NOOP")[0] == 250
