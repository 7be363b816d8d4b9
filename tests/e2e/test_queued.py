"""queued end to end: submission over LMTP on the submit socket, delivery
to lmtpd (the real one, or a scripted LMTP server standing in for it when a
test needs chosen per-recipient replies), retries, DSNs parsed with the
email package, aliases, NOTIFY, the control socket, bad input."""

import email
import email.policy
import os
import re
import smtplib
import socket
import threading
import time

import pytest

from hermod import BIN, wait_for

SENDER = "sender@example.test"


class FakeLmtpd(threading.Thread):
    """An LMTP server on a unix socket with scripted replies.
    replies: address -> reply line for RCPT, or a callable(addr, n) -> line
    for the n-th RCPT of that address; dot: address -> reply after DATA."""

    def __init__(self, path, rcpt=None, dot=None):
        super().__init__(daemon=True)
        self.path, self.rcpt, self.dot = path, rcpt or {}, dot or {}
        self.msgs = []          # (recipients, bytes)
        self.seen = {}
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(path)
        os.chmod(path, 0o666)   # queued runs as `hermod` when we are root
        self.sock.listen(64)
        self.start()

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.session, args=(c,), daemon=True).start()

    def rcpt_reply(self, a):
        with self.lock:
            n = self.seen[a] = self.seen.get(a, 0) + 1
        r = self.rcpt.get(a, "250 2.1.5 ok")
        return r(a, n) if callable(r) else r

    def session(self, c):
        f = c.makefile("rwb")

        def w(x):
            f.write(x.encode() + b"\r\n")
            f.flush()
        try:
            w("220 fake lmtpd")
            rcpts = []
            while True:
                line = f.readline()
                if not line:
                    return
                line = line.decode().rstrip("\r\n")
                verb = line[:4].upper()
                if verb == "LHLO":
                    w("250-fake\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES")
                elif verb == "MAIL":
                    rcpts = []
                    w("250 2.1.0 ok")
                elif verb == "RCPT":
                    a = line[line.index("<") + 1:line.rindex(">")]
                    r = self.rcpt_reply(a)
                    if r.startswith("2"):
                        rcpts.append(a)
                    w(r)
                elif verb == "DATA":
                    if not rcpts:
                        w("503 5.5.1 no valid recipients")
                        continue
                    w("354 go ahead")
                    data = b""
                    while True:
                        x = f.readline()
                        if x in (b".\r\n", b""):
                            break
                        data += x[1:] if x.startswith(b"..") else x
                    with self.lock:
                        self.msgs.append((list(rcpts), data))
                    for a in rcpts:
                        w(self.dot.get(a, "250 2.0.0 <%s> delivered" % a))
                elif verb == "RSET":
                    w("250 2.0.0 ok")
                elif verb == "QUIT":
                    w("221 2.0.0 bye")
                    return
                else:
                    w("500 5.5.2 what")
        except (OSError, ValueError):
            return

    def to(self, addr):
        with self.lock:
            return [d for r, d in self.msgs if addr in r]


def lmtp_submit(h, rcpts, body, sender=SENDER, mail_opts=(), rcpt_opts=(), xforward=None):
    """One LMTP transaction on the submit socket; returns (rcpt replies,
    per-recipient replies after DATA)."""
    s = smtplib.LMTP(h.submit_socket)
    try:
        code, _ = s.ehlo_or_helo_if_needed() or (250, b"")
        if xforward:
            assert s.docmd("XFORWARD", xforward)[0] == 250
        code, msg = s.mail(sender, list(mail_opts))
        assert code == 250, msg
        rr = [s.rcpt(r, list(rcpt_opts)) for r in rcpts]
        ok = [r for r, (c, _) in zip(rcpts, rr) if c == 250]
        after = []
        if ok:
            code, msg = s.docmd("DATA")
            assert code == 354, msg
            data = body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            data = b"\r\n".join(b"." + ln if ln.startswith(b".") else ln
                                for ln in data.split(b"\r\n"))
            if not data.endswith(b"\r\n"):
                data += b"\r\n"
            s.send(data + b".\r\n")
            after = [s.getreply() for _ in ok]
        s.quit()
        return rr, after
    finally:
        s.close()


def control(h, *cmds):
    """Send control commands; return the whole answer text."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(h.control_socket)
    s.sendall(("".join(c + "\n" for c in cmds) + "quit\n").encode())
    out = b""
    while True:
        x = s.recv(65536)
        if not x:
            break
        out += x
    s.close()
    return out.decode()


def listing(h):
    """{id: (status, [(rcpt, state, dsn, reason)])} from `list`."""
    out, cur = {}, None
    for line in control(h, "list").splitlines():
        f = line.split("\t")
        if f[0] == "M":
            cur = out[f[1]] = (f[4], [])
        elif f[0] == "R":
            cur[1].append(tuple(f[1:5]))
    return out


def stats(h):
    return dict(ln.split(" ", 1) for ln in control(h, "stats").splitlines()
                if " " in ln and not ln.startswith("+"))


def prepare(h, aliases="postmaster: alice\n", **conf):
    h.write_aliases(aliases)
    h.conf(**conf)
    h.newaliases()


def report(msg_bytes):
    """Parse a DSN: (message, [per-recipient field dicts], per-message dict,
    the returned part)."""
    m = email.message_from_bytes(msg_bytes, policy=email.policy.compat32)
    assert m.get_content_type() == "multipart/report"
    assert m.get_param("report-type") == "delivery-status"
    parts = m.get_payload()
    ds = [p for p in parts if p.get_content_type() == "message/delivery-status"][0]
    blocks = ds.get_payload()
    per_msg = dict(blocks[0].items())
    per_rcpt = [dict(b.items()) for b in blocks[1:]]
    return m, per_rcpt, per_msg, parts[2]


# ---- tests ------------------------------------------------------------------

@pytest.mark.skipif(not os.path.exists(os.path.join(BIN, "lmtpd")), reason="no lmtpd")
def test_delivery_into_maildirs_via_real_lmtpd(hermod):
    hermod.add_user("alice")
    hermod.add_user("bob")
    prepare(hermod)
    hermod.start("lmtpd", "queued")
    rr, after = lmtp_submit(hermod, ["alice@example.test", "bob@example.test"],
                            b"Subject: real\r\n\r\nbody line\r\n.leading dot\r\n")
    assert [c for c, _ in rr] == [250, 250]
    assert [c for c, _ in after] == [250, 250]
    qid = after[0][1].split()[1].decode()
    for user in ("alice", "bob"):
        new = hermod.path("mail", user, "new")
        wait_for(lambda: os.path.isdir(new) and len(os.listdir(new)) == 1, 20,
                 what="delivery to " + user)
        body = list(hermod.maildir(user).values())[0].as_bytes()
        assert b"Subject: real" in body and b"\n.leading dot" in body
    wait_for(lambda: "%s: removed" % qid in hermod.log("queued"), 10, what="removal")
    assert "status=sent" in hermod.log("queued")


def test_reply_after_fsync_and_per_recipient_results(hermod):
    prepare(hermod)
    fake = FakeLmtpd(hermod.lmtp_socket,
                     rcpt={"bob@example.test": "550 5.1.1 <bob@example.test> unknown user"})
    try:
        hermod.start("queued")
        rr, after = lmtp_submit(hermod, ["alice@example.test", "bob@example.test"],
                                b"Subject: t1\r\n\r\nhello\r\n",
                                rcpt_opts=["NOTIFY=FAILURE"])
        assert [c for c, _ in after] == [250, 250]
        assert b"queued" in after[0][1]
        st = stats(hermod)
        assert int(st["fsyncs"]) >= 1 and int(st["commit_files"]) >= 1
        wait_for(lambda: fake.to("alice@example.test"), 10, what="alice delivery")
        wait_for(lambda: fake.to(SENDER), 10, what="bounce to the sender")
        m, rcpts, per_msg, orig = report(fake.to(SENDER)[0])
        assert m["From"].startswith("MAILER-DAEMON@mx.example.test")
        assert per_msg["Reporting-MTA"] == "dns; mx.example.test"
        assert "Arrival-Date" in per_msg
        assert len(rcpts) == 1
        r = rcpts[0]
        assert r["Final-Recipient"] == "rfc822; bob@example.test"
        assert r["Action"] == "failed" and r["Status"] == "5.1.1"
        assert r["Diagnostic-Code"].startswith("smtp; 550 5.1.1")
        assert "Last-Attempt-Date" in r
        # small message, no RET: returned whole
        assert orig.get_content_type() == "message/rfc822"
        assert orig.get_payload()[0]["Subject"] == "t1"
        log = hermod.log("queued")
        assert "to=<bob@example.test>" in log and "status=bounced" in log
        assert "from=<%s>, size=" % SENDER in log
    finally:
        fake.close()


def test_ret_hdrs_envid_orcpt(hermod):
    prepare(hermod)
    fake = FakeLmtpd(hermod.lmtp_socket,
                     rcpt={"bob@example.test": "554 5.7.1 no thanks"})
    try:
        hermod.start("queued")
        lmtp_submit(hermod, ["bob@example.test"],
                    b"Subject: hdrs\r\nX-Test: 1\r\n\r\nsecret body\r\n",
                    mail_opts=["RET=HDRS", "ENVID=env+2B1"],
                    rcpt_opts=["ORCPT=rfc822;Bob+40example.test"])
        wait_for(lambda: fake.to(SENDER), 10, what="bounce")
        m, rcpts, per_msg, orig = report(fake.to(SENDER)[0])
        assert per_msg["Original-Envelope-Id"] == "env+1"
        assert rcpts[0]["Original-Recipient"] == "rfc822; Bob@example.test"
        assert orig.get_content_type() == "text/rfc822-headers"
        text = orig.get_payload() if isinstance(orig.get_payload(), str) else str(orig.get_payload()[0])
        assert "X-Test: 1" in text and "secret body" not in text
    finally:
        fake.close()


def test_lmtpd_down_then_up_is_retried_never_bounced(hermod):
    prepare(hermod)
    hermod.start("queued")
    _, after = lmtp_submit(hermod, ["alice@example.test"], b"Subject: later\r\n\r\nx\r\n")
    qid = after[0][1].split()[1].decode()
    wait_for(lambda: "status=deferred" in hermod.log("queued"), 10, what="deferral")
    lst = listing(hermod)
    assert qid in lst and lst[qid][1][0][1] == "pending"
    assert "connect to lmtpd" in lst[qid][1][0][3]
    fake = FakeLmtpd(hermod.lmtp_socket)
    try:
        wait_for(lambda: fake.to("alice@example.test"), 15, what="delivery after lmtpd is up")
        wait_for(lambda: qid not in listing(hermod), 10, what="queue empty")
        assert not fake.to(SENDER)
        assert "status=bounced" not in hermod.log("queued")
    finally:
        fake.close()


def test_4xx_then_success(hermod):
    prepare(hermod)
    fake = FakeLmtpd(hermod.lmtp_socket, rcpt={
        "alice@example.test": lambda a, n: "452 4.2.2 mailbox full" if n == 1 else "250 2.1.5 ok"})
    try:
        hermod.start("queued")
        lmtp_submit(hermod, ["alice@example.test"], b"Subject: 4xx\r\n\r\nx\r\n")
        wait_for(lambda: fake.to("alice@example.test"), 15, what="retry success")
        # the fake keeps the message before it answers: the log line follows
        wait_for(lambda: "dsn=2.0.0, status=sent" in hermod.log("queued"), 15, what="sent")
        log = hermod.log("queued")
        assert "dsn=4.2.2, status=deferred (452 4.2.2 mailbox full)" in log
    finally:
        fake.close()


def test_delay_warning_then_expiry(hermod):
    prepare(hermod, delay_warning_time="1s", maximal_queue_lifetime="4s")
    fake = FakeLmtpd(hermod.lmtp_socket,
                     rcpt={"slow@example.test": "451 4.3.0 try later"})
    try:
        hermod.start("queued")
        lmtp_submit(hermod, ["slow@example.test"], b"Subject: slow\r\n\r\nx\r\n")
        wait_for(lambda: len(fake.to(SENDER)) >= 2, 25, what="delay DSN and bounce")
        kinds = [report(d)[1][0]["Action"] for d in fake.to(SENDER)]
        assert kinds == ["delayed", "failed"], kinds
        _, rcpts, _, orig = report(fake.to(SENDER)[0])
        assert rcpts[0]["Status"] == "4.3.0" and "Will-Retry-Until" in rcpts[0]
        assert orig.get_content_type() == "text/rfc822-headers"
        _, rcpts, _, _ = report(fake.to(SENDER)[1])
        assert "expired" in rcpts[0]["Diagnostic-Code"]
        assert "status=expired, returned to sender" in hermod.log("queued")
    finally:
        fake.close()


def test_notify_never_and_success(hermod):
    prepare(hermod)
    fake = FakeLmtpd(hermod.lmtp_socket,
                     rcpt={"bob@example.test": "550 5.1.1 unknown"})
    try:
        hermod.start("queued")
        lmtp_submit(hermod, ["bob@example.test"], b"Subject: n\r\n\r\nx\r\n",
                    rcpt_opts=["NOTIFY=NEVER"])
        lmtp_submit(hermod, ["alice@example.test"], b"Subject: s\r\n\r\nx\r\n",
                    rcpt_opts=["NOTIFY=SUCCESS"])
        wait_for(lambda: fake.to(SENDER), 10, what="success DSN")
        time.sleep(1.5)
        dsns = fake.to(SENDER)
        assert len(dsns) == 1
        m, rcpts, _, _ = report(dsns[0])
        assert rcpts[0]["Action"] == "delivered" and rcpts[0]["Final-Recipient"] == "rfc822; alice@example.test"
    finally:
        fake.close()


def test_aliases_lists_chains_include_loops_pipe(hermod):
    inc = hermod.path("etc", "team.inc")
    with open(inc, "w") as f:
        f.write("# team\ncarol\ndave@example.test\n")
    os.chmod(inc, 0o644)
    prepare(hermod, aliases=(
        "staff: alice, chain1\nchain1: chain2\nchain2: bob\n"
        "team: :include:%s\nloop1: loop2\nloop2: loop1\n"
        "prog: \"|/bin/cat\"\nremote: someone@far.example\n" % inc))
    # no name server answers: the remote target stays deferred
    hermod.conf(dns_servers="127.0.0.1:9")
    fake = FakeLmtpd(hermod.lmtp_socket)
    try:
        hermod.start("queued")
        _, after = lmtp_submit(hermod, ["staff@example.test", "team@example.test",
                                        "postmaster@example.test", "loop1@example.test",
                                        "prog@example.test", "remote@example.test"],
                               b"Subject: aliases\r\n\r\nx\r\n")
        assert [c for c, _ in after] == [250] * 6
        qid = after[0][1].split()[1].decode()
        for a in ("alice", "bob", "carol", "dave"):
            wait_for(lambda: fake.to(a + "@example.test"), 10, what=a)
        # alice is reached twice (staff, postmaster): delivered once
        assert len(fake.to("alice@example.test")) == 1
        wait_for(lambda: fake.to(SENDER), 10, what="bounce for loop and pipe")
        _, rcpts, _, _ = report(fake.to(SENDER)[0])
        st = {r["Final-Recipient"].split("; ")[1]: r for r in rcpts}
        assert st["/bin/cat"]["Status"] == "5.3.0"
        assert "commands/files is not enabled" in st["/bin/cat"]["Diagnostic-Code"]
        assert any(r["Status"] == "5.4.6" for r in rcpts)
        # the remote target stays queued, listed, deferred
        lst = listing(hermod)
        assert qid in lst
        assert lst[qid][1] and any(r[0] == "someone@far.example" and r[1] == "pending" and
                                   "lookup failed" in r[3]
                                   for r in lst[qid][1])
    finally:
        fake.close()


def test_control_hold_release_delete_flush_show(hermod):
    prepare(hermod)
    hermod.start("queued")
    _, a1 = lmtp_submit(hermod, ["alice@example.test"], b"Subject: one\r\n\r\nbody one\r\n")
    _, a2 = lmtp_submit(hermod, ["bob@example.test"], b"Subject: two\r\n\r\nbody two\r\n")
    q1, q2 = a1[0][1].split()[1].decode(), a2[0][1].split()[1].decode()
    assert control(hermod, "hold " + q1).startswith("+OK 1")
    assert listing(hermod)[q1][0] == "hold"
    show = control(hermod, "show " + q2)
    assert show.startswith("+OK " + q2) and "body two" in show
    assert control(hermod, "show 0000000000000000").startswith("-ERR")
    assert control(hermod, "bogus").startswith("-ERR")
    assert control(hermod, "delete " + q2).startswith("+OK 1")
    wait_for(lambda: q2 not in listing(hermod), 5, what="delete")
    assert "%s: removed (deleted by the operator)" % q2 in hermod.log("queued")
    fake = FakeLmtpd(hermod.lmtp_socket)
    try:
        assert control(hermod, "flush").startswith("+OK")
        time.sleep(1.0)
        assert not fake.to("alice@example.test")     # still held
        assert control(hermod, "release ALL").startswith("+OK 1")
        wait_for(lambda: fake.to("alice@example.test"), 10, what="delivery after release")
        assert not fake.to("bob@example.test")
    finally:
        fake.close()


def test_bad_input_and_limits(hermod):
    prepare(hermod, message_size_limit="2k")
    hermod.start("queued")
    s = smtplib.LMTP(hermod.submit_socket)
    try:
        assert s.docmd("MAIL FROM:<a@b>")[0] == 503          # before LHLO
        s.ehlo_or_helo_if_needed()
        assert 250 == s.docmd("NOOP")[0]
        assert s.docmd("HELO x")[0] == 500
        assert s.docmd("RCPT TO:<x@example.test>")[0] == 503
        assert s.docmd("MAIL FROM:<a@b> SIZE=999999")[0] == 552
        assert s.docmd("MAIL FROM:a@b")[0] == 501
        assert s.docmd("MAIL FROM:<a@b> FOO=1")[0] == 555
        assert s.docmd("MAIL FROM:<a@b> BODY=8BITMIME SMTPUTF8")[0] == 250
        assert s.docmd("RCPT TO:<x@example.test> NOTIFY=NEVER,SUCCESS")[0] == 501
        assert s.docmd("RCPT TO:<" + "x" * 300 + "@example.test>")[0] == 501
        assert s.docmd("RCPT TO:<x@example.test>")[0] == 250
        assert s.docmd("DATA")[0] == 354
        s.send(b"Subject: big\r\n\r\n" + (b"y" * 100 + b"\r\n") * 40 + b".\r\n")
        assert s.getreply()[0] == 552
        assert s.docmd("X" * 5000)[0] == 500
    finally:
        s.close()
    # still alive
    assert control(hermod, "stats").startswith("+OK")


def test_submit_line_bound_and_error_limit(hermod):
    """The submission session (lib/smtp_server): a 4096-octet command line
    passes, one more is answered 500 and dropped, and the 20th error ends
    the session with 421 4.7.0."""
    prepare(hermod)
    hermod.start("queued")
    s = smtplib.LMTP(hermod.submit_socket)
    try:
        s.ehlo_or_helo_if_needed()
        assert s.docmd("NOOP " + "x" * 4091)[0] == 250
        assert s.docmd("NOOP " + "x" * 4092)[0] == 500
        assert s.docmd("NOOP")[0] == 250
        for _ in range(18):
            assert s.docmd("FROB")[0] == 500
        assert s.docmd("FROB")[0] == 500
        code, text = s.getreply()
        assert code == 421 and text.startswith(b"4.7.0")
    finally:
        s.close()


def test_bounce_of_a_bounce_goes_to_postmaster_once_then_dropped(hermod):
    prepare(hermod, aliases="postmaster: pm\n")
    fake = FakeLmtpd(hermod.lmtp_socket, rcpt={
        "bob@example.test": "550 5.1.1 unknown",
        "pm@mx.example.test": "550 5.2.1 postmaster mailbox disabled"})
    try:
        hermod.start("queued")
        lmtp_submit(hermod, ["bob@example.test"], b"Subject: a bounce\r\n\r\nx\r\n", sender="")
        wait_for(lambda: "undeliverable postmaster notification discarded" in hermod.log("queued"),
                 15, what="double bounce dropped")
        assert fake.seen.get("pm@mx.example.test") == 1
        wait_for(lambda: not listing(hermod), 10, what="queue empty")
        assert "postmaster notification:" in hermod.log("queued")
    finally:
        fake.close()


def test_sighup_rereads_aliases(hermod):
    prepare(hermod, aliases="postmaster: alice\nlist: alice\n")
    fake = FakeLmtpd(hermod.lmtp_socket)
    try:
        hermod.start("queued")
        lmtp_submit(hermod, ["list@example.test"], b"Subject: one\r\n\r\nx\r\n")
        wait_for(lambda: fake.to("alice@example.test"), 10, what="first")
        hermod.write_aliases("postmaster: alice\nlist: bob\n")
        hermod.newaliases()
        hermod.signal("queued", 1)      # SIGHUP
        wait_for(lambda: "reloaded" in hermod.log("queued"), 10, what="reload")
        lmtp_submit(hermod, ["list@example.test"], b"Subject: two\r\n\r\nx\r\n")
        wait_for(lambda: fake.to("bob@example.test"), 10, what="second, via the new alias")
    finally:
        fake.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_control_socket_refuses_other_users(hermod):
    import subprocess
    prepare(hermod)
    hermod.start("queued")
    code = ("import socket; s = socket.socket(socket.AF_UNIX); s.connect(%r); "
            "print(s.recv(100).decode())" % hermod.control_socket)
    r = subprocess.run(["/usr/bin/python3", "-c", code], user="nobody", group="nogroup",
                       capture_output=True, text=True, timeout=20)
    assert r.stdout.startswith("-ERR permission denied"), r.stdout + r.stderr
    assert control(hermod, "list").startswith("+OK")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount a small tmpfs")
def test_full_disk_answers_452_and_loses_nothing(hermod):
    import subprocess
    prepare(hermod)
    spool = hermod.path("spool")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", spool]).returncode:
        pytest.skip("cannot mount a tmpfs")
    fake = None
    try:
        os.chown(spool, hermod.uid, hermod.gid)
        hermod.start("queued")
        small = b"Subject: small\r\n\r\nx\r\n"
        _, a1 = lmtp_submit(hermod, ["alice@example.test"], small)
        assert a1[0][0] == 250
        big = b"Subject: big\r\n\r\n" + (b"z" * 998 + b"\r\n") * 400
        _, a2 = lmtp_submit(hermod, ["alice@example.test", "bob@example.test"], big)
        assert [c for c, _ in a2] == [452, 452] and b"4.3.1" in a2[0][1]
        _, a3 = lmtp_submit(hermod, ["bob@example.test"], small)
        assert a3[0][0] == 250
        q1, q3 = (a[0][1].split()[1].decode() for a in (a1, a3))
        assert set(listing(hermod)) == {q1, q3}
        assert not os.listdir(os.path.join(spool, "incoming"))
        fake = FakeLmtpd(hermod.lmtp_socket)
        wait_for(lambda: fake.to("alice@example.test") and fake.to("bob@example.test"), 15,
                 what="both small messages delivered")
    finally:
        hermod.stop("queued")
        if fake:
            fake.close()
        subprocess.run(["umount", spool])


def test_message_size_limit_at_and_past_the_bound(hermod):
    prepare(hermod, message_size_limit="2k")
    hermod.start("queued")

    def body(n):        # exactly n bytes as stored (CRLF lines)
        head = b"Subject: b\r\n\r\n"
        fill = n - len(head) - 2
        return head + b"y" * fill + b"\r\n"
    _, a = lmtp_submit(hermod, ["alice@example.test"], body(2048), mail_opts=["SIZE=2048"])
    assert a[0][0] == 250
    _, a = lmtp_submit(hermod, ["alice@example.test"], body(2049))
    assert a[0][0] == 552 and b"5.3.4" in a[0][1]
    s = smtplib.LMTP(hermod.submit_socket)
    try:
        s.ehlo_or_helo_if_needed()
        assert s.docmd("MAIL FROM:<a@b> SIZE=2049")[0] == 552
    finally:
        s.close()
    assert len(listing(hermod)) == 1


def test_queue_id_at_mail_and_xforward_recorded(hermod):
    prepare(hermod)
    hermod.start("queued")
    s = smtplib.LMTP(hermod.submit_socket)
    try:
        s.ehlo_or_helo_if_needed()
        assert "XFORWARD NAME ADDR PORT PROTO HELO IDENT" in s.ehlo_resp.decode()
        assert s.docmd("XFORWARD", "NAME=client.example ADDR=192.0.2.7 PORT=4321 "
                       "PROTO=ESMTP HELO=helo+2Eexample IDENT=abc")[0] == 250
        assert s.docmd("XFORWARD", "BOGUS=1")[0] == 501
        code, text = s.docmd("MAIL FROM:<a@example.test>")
        assert code == 250
        qid = re.search(r"queue id ([0-9A-F]{16})$", text.decode()).group(1)
        assert s.docmd("RCPT TO:<alice@example.test>")[0] == 250
        assert s.docmd("DATA")[0] == 354
        s.send(b"Subject: xf\r\n\r\nx\r\n.\r\n")
        code, text = s.getreply()
        assert code == 250 and text.decode() == "2.0.0 %s queued" % qid
    finally:
        s.close()
    with open(hermod.path("spool", "queue", qid[-1], qid)) as f:
        head = f.read().split("\n\n")[0]
    assert ("client: name=client.example addr=192.0.2.7 port=4321 proto=ESMTP "
            "helo=helo.example ident=abc") in head
    assert "%s: from=<a@example.test>" % qid in hermod.log("queued")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_xforward_refused_to_other_local_users(hermod):
    import subprocess
    prepare(hermod)
    hermod.start("queued")
    code = ("import smtplib; s = smtplib.LMTP(%r); s.ehlo_or_helo_if_needed(); "
            "print(s.docmd('XFORWARD', 'ADDR=192.0.2.1')[0]); "
            "print(s.mail('nobody@example.test')[1].decode())" % hermod.submit_socket)
    r = subprocess.run(["/usr/bin/python3", "-c", code], user="nobody", group="nogroup",
                       capture_output=True, text=True, timeout=20)
    lines = r.stdout.split("\n")
    assert lines[0] == "550", r.stdout + r.stderr
    assert "queue id" in lines[1]


@pytest.mark.skipif(not all(os.path.exists(os.path.join(BIN, p)) for p in ("lmtpd", "smtpd")),
                    reason="needs lmtpd and smtpd")
def test_through_smtpd_one_queue_id_end_to_end(hermod):
    hermod.add_user("alice")
    prepare(hermod)
    hermod.start("lmtpd", "queued", "smtpd")
    with smtplib.SMTP("127.0.0.1", hermod.smtp_port) as s:
        assert s.sendmail("bob@example.org", ["alice@example.test"],
                          "Subject: via smtpd\r\n\r\nhello\r\n") == {}
    new = hermod.path("mail", "alice", "new")
    wait_for(lambda: os.path.isdir(new) and os.listdir(new), 20, what="delivery")
    with open(os.path.join(new, os.listdir(new)[0])) as f:
        text = f.read()
    qid = re.search(r"with ESMTP id ([0-9A-F]{16})", text).group(1)
    wait_for(lambda: "%s: removed" % qid in hermod.log("queued"), 10, what="removal")
    assert "%s: to=<alice@example.test>" % qid in hermod.log("queued")
    assert qid in hermod.log("smtpd")
