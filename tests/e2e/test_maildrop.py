"""The maildrop: sendmail while queued is down leaves the message in
$queue_directory/maildrop, and queued's pickup plays it into a submission
session as the file's owner when it runs (at start, on an inotify event,
every minute). Files that are not ours (garbage, a symlink, a hard link,
a FIFO) are removed without harm; a temporary refusal keeps the file for
a later pass."""

import email
import os
import stat
import time

from hermod import wait_for

BODY = "Subject: while down\n\nkept in the maildrop\n"


def start(hermod, daemons=("lmtpd", "queued")):
    hermod.add_user("alice")
    hermod.add_user("bob")
    hermod.write_aliases("postmaster: alice\n")
    hermod.newaliases()
    hermod.start(*daemons)


def maildrop(hermod):
    return hermod.path("spool", "maildrop")


def drop_files(hermod):
    return sorted(os.listdir(maildrop(hermod)))


def drop(hermod, name, data):
    """A file as sendmail writes it: t-name first, then renamed."""
    d = maildrop(hermod)
    with open(os.path.join(d, "t" + name), "wb") as f:
        f.write(data)
    os.rename(os.path.join(d, "t" + name), os.path.join(d, "m" + name))


def lmtp_file(rcpts, body=b"Subject: dropped\r\n\r\nby hand\r\n", sender="root@example.test"):
    env = b"MAIL FROM:<%s>\r\n" % sender.encode()
    env += b"".join(b"RCPT TO:<%s>\r\n" % r.encode() for r in rcpts)
    return env + b"DATA\r\n" + body + b".\r\n"


def test_sendmail_while_queued_down(hermod):
    start(hermod)
    mode = os.stat(maildrop(hermod)).st_mode
    assert stat.S_IMODE(mode) == 0o1733
    assert os.stat(hermod.path("spool")).st_mode & 0o011 == 0o011
    hermod.stop("queued")
    r = hermod.run("sendmail", "-v", "-t", input="To: alice@example.test\nBcc: bob@example.test\n" + BODY)
    assert r.returncode == 0, r.stderr
    assert "waits in" in r.stderr
    files = drop_files(hermod)
    assert len(files) == 1 and files[0].startswith("m"), files
    time.sleep(0.5)
    assert hermod.messages("alice") == []
    hermod.start("queued")
    for user in ("alice", "bob"):
        m = email.message_from_bytes(hermod.wait_messages(user, 1)[0])
        assert m["Subject"] == "while down" and m["Bcc"] is None
        assert m.get_payload() == "kept in the maildrop\n"
    assert wait_for(lambda: drop_files(hermod) == [], 10)
    assert "pickup: uid=%d, maildrop file %s" % (os.getuid(), files[0]) in hermod.log("queued")


def test_dropped_file_taken_while_running(hermod):
    start(hermod)
    drop(hermod, "0123abcd", lmtp_file(["alice@example.test"]))
    m = email.message_from_bytes(hermod.wait_messages("alice", 1)[0])
    assert m["Subject"] == "dropped"
    assert m["Return-Path"] == "<root@example.test>"
    assert wait_for(lambda: drop_files(hermod) == [], 10)


def test_files_not_ours_are_removed(hermod):
    start(hermod)
    d = maildrop(hermod)
    other = hermod.path("elsewhere")
    with open(other, "wb") as f:
        f.write(lmtp_file(["alice@example.test"], b"Subject: linked\r\n\r\nx\r\n"))
    drop(hermod, "garbage", b"GET / HTTP/1.0\r\n\r\n")
    drop(hermod, "noenvelope", b"MAIL FROM:<a@b>\r\nDATA\r\nx\r\n.\r\n")
    drop(hermod, "nodata", b"MAIL FROM:<a@b>\r\nRCPT TO:<alice@example.test>\r\n")
    os.symlink(other, os.path.join(d, "msymlink"))
    os.link(other, os.path.join(d, "mhardlink"))
    os.mkfifo(os.path.join(d, "mfifo"))
    unreadable = os.path.join(d, "munreadable")
    with open(unreadable, "wb") as f:
        f.write(lmtp_file(["alice@example.test"], b"Subject: unreadable\r\n\r\nz\r\n"))
    os.chmod(unreadable, 0)
    drop(hermod, "good", lmtp_file(["alice@example.test"], b"Subject: good\r\n\r\ny\r\n"))
    m = email.message_from_bytes(hermod.wait_messages("alice", 1)[0])
    assert m["Subject"] == "good"
    assert wait_for(lambda: drop_files(hermod) == [], 10), drop_files(hermod)
    assert os.path.exists(other)        # only the link in the maildrop went
    log = hermod.log("queued")
    assert "maildrop file mgarbage removed: not a maildrop file" in log
    assert "maildrop file mnodata removed: not a maildrop file (no final dot)" in log
    assert "maildrop file mnoenvelope removed: not a maildrop file (MAIL, RCPT" in log
    assert "maildrop file mhardlink removed: not a regular file with one link" in log
    assert "maildrop file mfifo removed: not a regular file with one link" in log
    assert "maildrop file msymlink removed: cannot open" in log
    assert "maildrop file munreadable removed: cannot open: Permission denied" in log
    time.sleep(0.5)
    assert len(hermod.messages("alice")) == 1
    assert hermod.procs["queued"].poll() is None


def test_temporary_refusal_keeps_the_file(hermod):
    start(hermod)
    os.unlink(hermod.path("etc/aliases.db"))      # 451 4.3.0 at RCPT
    drop(hermod, "later", lmtp_file(["alice@example.test", "bob@example.test"]))
    assert wait_for(lambda: "maildrop file mlater kept for a later try" in hermod.log("queued"), 10)
    assert drop_files(hermod) == ["mlater"]
    assert hermod.messages("alice") == [] and hermod.messages("bob") == []
    hermod.newaliases()
    hermod.stop("queued")                 # the next pass: at start
    hermod.start("queued")
    for user in ("alice", "bob"):
        assert len(hermod.wait_messages(user, 1)) == 1
    assert wait_for(lambda: drop_files(hermod) == [], 10)


def test_refused_for_good_is_removed(hermod):
    start(hermod)
    drop(hermod, "badrcpt", lmtp_file(["<<bad>>"]))
    assert wait_for(lambda: "maildrop file mbadrcpt removed" in hermod.log("queued"), 10)
    assert drop_files(hermod) == []


def test_stale_unfinished_file_removed(hermod):
    start(hermod, daemons=("lmtpd",))
    t = os.path.join(hermod.path("spool"), "maildrop", "tstale")
    os.makedirs(os.path.dirname(t), exist_ok=True)
    with open(t, "wb") as f:
        f.write(b"MAIL FROM:<a@b>\r\n")
    old = time.time() - 2 * 86400
    os.utime(t, (old, old))
    with open(t + "fresh", "wb") as f:
        f.write(b"MAIL FROM:<a@b>\r\n")
    hermod.start("queued")
    assert wait_for(lambda: drop_files(hermod) == ["tstalefresh"], 10), drop_files(hermod)


def test_sendmail_too_big_for_the_maildrop(hermod):
    hermod.conf(message_size_limit="2000")
    start(hermod)
    hermod.stop("queued")
    r = hermod.run("sendmail", "alice@example.test", input="Subject: big\n\n" + "x" * 70 * 40 + "\n")
    assert r.returncode == 65 and "message too big" in r.stderr, r.stderr
    assert drop_files(hermod) == []
    r = hermod.run("sendmail", "alice@example.test", input="Subject: small\n\nok\n")
    assert r.returncode == 0, r.stderr
    assert len(drop_files(hermod)) == 1


def test_recipient_bounds(hermod):
    """Past smtpd_recipient_limit the rest are refused and the message
    goes to the first ones, as on the socket; a file whose errors reach
    the hard error limit is dropped, not tried forever."""
    hermod.conf(smtpd_recipient_limit="3")
    start(hermod)
    hermod.write_aliases("postmaster: alice\na1: alice\na2: bob\na3: bob\n")
    hermod.newaliases()
    many = ["alice@example.test", "a1@example.test", "a2@example.test", "bob@example.test"]
    drop(hermod, "toomany", lmtp_file(many))
    drop(hermod, "errors", lmtp_file(["<<bad%d>>" % i for i in range(30)]))
    assert wait_for(lambda: drop_files(hermod) == [], 10), drop_files(hermod)
    assert len(hermod.wait_messages("alice", 1)) == 1
    assert len(hermod.wait_messages("bob", 1)) == 1       # through a2
    log = hermod.log("queued")
    assert "maildrop file mtoomany: recipients refused: 452 4.5.3" in log
    assert "maildrop file merrors removed" in log
    hermod.stop("queued")
    r = hermod.run("sendmail", *many, input="Subject: x\n\ny\n")
    assert r.returncode == 65 and "too many recipients" in r.stderr, r.stderr
    assert drop_files(hermod) == []


def test_control_characters_refused(hermod):
    """A value that could end a command line and add one of its own (the
    same bytes go to the socket or into the maildrop file) is refused."""
    start(hermod)
    hermod.stop("queued")
    for args in (["a@example.test\r\nRCPT TO:<bob@example.test>"],
                 ["-N", "NEVER\r\nRCPT TO:<bob@example.test>", "alice@example.test"]):
        r = hermod.run("sendmail", *args, input="Subject: x\n\ny\n")
        assert r.returncode == 65 and "control character" in r.stderr, r.stderr
    assert drop_files(hermod) == []


def test_random_files_do_no_harm(hermod):
    """200 files of mutated maildrop content (fixed seed): every one is
    taken or removed, queued stays up, and a good file still goes."""
    import random
    rnd = random.Random(1729)
    start(hermod)
    base = lmtp_file(["alice@example.test", "bob@example.test"], b"Subject: r\r\n\r\n.x\r\n")
    for i in range(200):
        b = bytearray(base)
        for _ in range(rnd.randint(1, 8)):
            op, pos = rnd.randint(0, 2), rnd.randrange(len(b) + 1)
            if op == 0 and pos < len(b):
                b[pos] = rnd.randrange(256)
            elif op == 1:
                b[pos:pos] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 40)))
            elif pos < len(b):
                del b[pos:pos + rnd.randint(1, 20)]
        drop(hermod, "r%03d" % i, bytes(b))
    drop(hermod, "zgood", lmtp_file(["alice@example.test"], b"Subject: still good\r\n\r\nz\r\n"))
    assert wait_for(lambda: drop_files(hermod) == [], 60), drop_files(hermod)[:10]
    assert hermod.procs["queued"].poll() is None
    subjects = [email.message_from_bytes(m)["Subject"] for m in hermod.wait_messages("alice", 1)]
    assert wait_for(lambda: "still good" in [email.message_from_bytes(m)["Subject"]
                                             for m in hermod.messages("alice")], 30), subjects


def test_file_past_the_bound_removed(hermod):
    """More than twice message_size_limit plus the 2 MB envelope bound: not
    read at all, removed."""
    hermod.conf(message_size_limit="10000")
    start(hermod)
    big = lmtp_file(["alice@example.test"], b"Subject: big\r\n\r\n" +
                    (b"y" * 998 + b"\r\n") * 2200)                 # about 2.2 MB
    drop(hermod, "huge", big)
    drop(hermod, "small", lmtp_file(["alice@example.test"]))
    assert wait_for(lambda: drop_files(hermod) == [], 10), drop_files(hermod)
    assert "maildrop file mhuge removed: too big (" in hermod.log("queued")
    assert len(hermod.wait_messages("alice", 1)) == 1
