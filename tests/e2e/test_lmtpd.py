"""lmtpd on its own: LMTP in over the unix socket, Maildir and mbox read
back with Python's mailbox module and compared byte for byte."""

import os
import smtplib
import subprocess

import pytest

from hermod import IS_ROOT
from test_lmtpd_client import Client, mboxrd_unquote, stored

SENDER = "sender@example.org"


def msg(subject, body=b"hello\r\n", extra=b""):
    return (b"From: sender@example.org\r\nSubject: " + subject.encode() +
            b"\r\nMessage-ID: <" + subject.replace(" ", ".").encode() +
            b"@example.org>\r\n" + extra + b"\r\n" + body)


def start(h, conf=None, users=()):
    """users: (name, mailbox-or-None, extra) tuples."""
    for name, mbox, extra in users:
        h.add_user(name, mailbox=mbox, extra=extra)
    if conf:
        h.conf(**conf)
    h.newaliases()
    h.start("lmtpd")


def mbox_path(h, name):
    return h.path("mail", name + ".mbox")


def maildir_files(h, name):
    md = h.maildir(name)
    return [md.get_bytes(k) for k in md.keys()]


def test_maildir_byte_for_byte_smtplib(hermod):
    start(hermod, users=[("alice", None, "")])
    body = (b"line one\r\n.dot line\r\n" + b"x" * 3000 + b"\r\n"
            b"nul\x00byte\r\n8bit \xc3\xa9t\xc3\xa9\r\nbare\rcr\r\n")
    m = msg("smtplib", body)
    with smtplib.LMTP(hermod.lmtp_socket, timeout=30) as s:
        code, caps = s.ehlo("client.example.test")
        assert code == 250
        for ext in (b"PIPELINING", b"ENHANCEDSTATUSCODES", b"8BITMIME", b"SIZE",
                    b"SMTPUTF8"):
            assert ext in caps
        assert s.sendmail(SENDER, ["alice@example.test"], m) == {}
    got = maildir_files(hermod, "alice")
    assert got == [stored(SENDER, "alice@example.test", m)]
    names = os.listdir(hermod.path("mail/alice/new"))
    assert len(names) == 1 and ",S=%d" % len(got[0]) in names[0]
    assert "relay=lmtpd" in hermod.log("lmtpd") and "status=sent" in hermod.log("lmtpd")


def test_maildir_created_0700(hermod):
    start(hermod, users=[("alice", None, "")])
    with Client(hermod.lmtp_socket) as c:
        _, dr = c.transaction(SENDER, ["alice@example.test"], msg("mode"))
    assert dr[0][0] == 250 and dr[0][1].startswith("2.0.0")
    for sub in ("", "tmp", "new", "cur"):
        st = os.stat(hermod.path("mail/alice", sub))
        assert st.st_mode & 0o777 == 0o700
    assert os.listdir(hermod.path("mail/alice/tmp")) == []


def test_swaks_mbox_and_from_quoting(hermod):
    path = mbox_path(hermod, "bob")
    start(hermod, users=[("bob", path, "")])
    body = (b"From the start\r\n>From quoted once\r\n>>From twice\r\nFromage\r\n"
            b" From indented\r\nlast\r\n")
    m = msg("quoting", body)
    r = subprocess.run(["swaks", "--protocol", "LMTP", "--socket", hermod.lmtp_socket,
                        "--from", SENDER, "--to", "bob@example.test",
                        "--data", "-"], input=m[:-2], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
    raw = open(path, "rb").read()
    assert raw.startswith(b"From sender@example.org ")
    assert b"\n>From the start\n>>From quoted once\n>>>From twice\nFromage\n From indented\n" in raw
    assert raw.endswith(b"last\n\n")
    box = hermod.mbox(path)
    keys = box.keys()
    assert len(keys) == 1
    # swaks ends the data with its own CRLF (we left ours out above)
    assert mboxrd_unquote(box.get_bytes(keys[0])) == stored(SENDER, "bob@example.test", m)


def test_mbox_null_sender_and_append(hermod):
    path = mbox_path(hermod, "bob")
    start(hermod, users=[("bob", path, "")])
    with Client(hermod.lmtp_socket) as c:
        for i in range(3):
            _, dr = c.transaction("" if i == 0 else SENDER, ["bob@example.test"],
                                  msg("append %d" % i))
            assert dr[0][0] == 250, dr
    raw = open(path, "rb").read()
    assert raw.startswith(b"From MAILER-DAEMON ")
    box = hermod.mbox(path)
    assert len(box) == 3
    got = sorted(box.get_bytes(k) for k in box.keys())
    want = sorted([stored("", "bob@example.test", msg("append 0"))] +
                  [stored(SENDER, "bob@example.test", msg("append %d" % i)) for i in (1, 2)])
    assert got == want


def test_mixed_recipients_one_transaction(hermod):
    start(hermod, users=[("alice", None, ""), ("carol", None, "quota=100"),
                         ("bob", mbox_path(hermod, "bob"), "")])
    big = msg("quota", b"y" * 500 + b"\r\n")
    with Client(hermod.lmtp_socket) as c:
        rr, dr = c.transaction(SENDER, ["alice@example.test", "nobody@example.test",
                                        "carol@example.test", "bob+tag@example.test"], big)
    assert [x[0] for x in rr] == [250, 550, 250, 250]
    assert rr[1][1].startswith("5.1.1")
    assert [x[0] for x in dr] == [250, 552, 250]
    assert dr[1][1].startswith("5.2.2")
    assert maildir_files(hermod, "alice") == [stored(SENDER, "alice@example.test", big)]
    assert not os.path.exists(hermod.path("mail/carol/new")) or \
        os.listdir(hermod.path("mail/carol/new")) == []
    box = hermod.mbox(mbox_path(hermod, "bob"))
    assert [box.get_bytes(k) for k in box.keys()] == \
        [stored(SENDER, "bob+tag@example.test", big)]
    log = hermod.log("lmtpd")
    assert "to=<alice@example.test>, relay=lmtpd" in log
    assert "dsn=5.2.2" in log


def test_delivered_to_loop(hermod):
    start(hermod, users=[("alice", None, ""), ("bob", None, "")])
    m = msg("loop", extra=b"Delivered-To: ALICE@example.test\r\n")
    with Client(hermod.lmtp_socket) as c:
        _, dr = c.transaction(SENDER, ["alice@example.test", "bob@example.test"], m)
    assert dr[0][0] == 554 and dr[0][1].startswith("5.4.6")
    assert dr[1][0] == 250
    assert len(maildir_files(hermod, "bob")) == 1


def test_xforward_ident_in_log(hermod):
    start(hermod, users=[("alice", None, "")])
    with Client(hermod.lmtp_socket) as c:
        assert "XFORWARD" in c.ehlo
        assert c.cmd("XFORWARD IDENT=4AbCdEfG12")[0] == 250
        _, dr = c.transaction(SENDER, ["alice@example.test"], msg("qid"))
        assert dr[0][0] == 250
    assert "4AbCdEfG12: to=<alice@example.test>, relay=lmtpd" in hermod.log("lmtpd")


def test_message_size_limit(hermod):
    start(hermod, conf={"message_size_limit": 2048}, users=[("alice", None, "")])
    with Client(hermod.lmtp_socket) as c:
        code, text = c.cmd("MAIL FROM:<%s> SIZE=5000" % SENDER)
        assert code == 552 and text.startswith("5.3.4")
        _, dr = c.transaction(SENDER, ["alice@example.test"], msg("big", b"z" * 4000 + b"\r\n"))
        assert dr[0][0] == 552 and dr[0][1].startswith("5.3.4")
        _, dr = c.transaction(SENDER, ["alice@example.test"], msg("small"))
        assert dr[0][0] == 250
    assert len(maildir_files(hermod, "alice")) == 1


def test_pipelined_transaction(hermod):
    start(hermod, users=[("alice", None, ""), ("bob", None, "")])
    with Client(hermod.lmtp_socket) as c:
        m = msg("pipelined")
        c.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<alice@example.test>\r\n"
               b"RCPT TO:<bob@example.test>\r\nDATA\r\n")
        assert [c.reply()[0] for _ in range(4)] == [250, 250, 250, 354]
        c.send(m + b".\r\n")
        assert [c.reply()[0] for _ in range(2)] == [250, 250]
    assert len(maildir_files(hermod, "alice")) == 1
    assert len(maildir_files(hermod, "bob")) == 1


@pytest.mark.skipif(not IS_ROOT, reason="needs root to create a throwaway user")
def test_root_delivers_as_owner(hermod):
    name = "hmdlt%d" % (os.getpid() % 100000)
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                    "/usr/sbin/nologin", name], check=True, capture_output=True)
    try:
        import pwd
        pw = pwd.getpwnam(name)
        home = hermod.path("home-" + name)
        os.mkdir(home, 0o755)
        os.chown(home, pw.pw_uid, pw.pw_gid)
        box = home + "/Maildir/"
        hermod.users.append("%s %s uid=%d gid=%d" % (name, box, pw.pw_uid, pw.pw_gid))
        with open(hermod.path("etc/users"), "w") as f:
            f.write("\n".join(hermod.users) + "\n")
        start(hermod)
        with Client(hermod.lmtp_socket) as c:
            _, dr = c.transaction(SENDER, [name + "@example.test"], msg("owner"))
        assert dr[0][0] == 250, dr
        new = os.path.join(box, "new")
        files = os.listdir(new)
        assert len(files) == 1
        for p in (box, new, os.path.join(new, files[0])):
            st = os.stat(p)
            assert (st.st_uid, st.st_gid) == (pw.pw_uid, pw.pw_gid), p
    finally:
        subprocess.run(["userdel", name], capture_output=True)


def _throwaway_user(home):
    name = "hmdls%d" % (os.getpid() % 100000)
    subprocess.run(["useradd", "--no-create-home", "--home-dir", home, "--shell",
                    "/usr/sbin/nologin", name], check=True, capture_output=True)
    import pwd
    return name, pwd.getpwnam(name)


@pytest.mark.skipif(not IS_ROOT, reason="needs root to create a throwaway system account")
def test_root_system_account_maildir_and_spool_mbox(hermod):
    home = hermod.path("home-sys")
    name, pw = _throwaway_user(home)
    try:
        os.mkdir(home, 0o755)
        os.chown(home, pw.pw_uid, pw.pw_gid)
        start(hermod, conf={"local_system_users": "yes", "home_mailbox": "Maildir/"})
        with Client(hermod.lmtp_socket) as c:
            _, dr = c.transaction(SENDER, [name + "+ext@example.test"], msg("system"))
        assert dr[0][0] == 250, dr
        new = os.path.join(home, "Maildir", "new")
        files = os.listdir(new)
        assert len(files) == 1
        st = os.stat(os.path.join(new, files[0]))
        assert (st.st_uid, st.st_gid) == (pw.pw_uid, pw.pw_gid)
        # mbox in a spool directory the user cannot write (like /var/mail)
        spool = hermod.path("varmail")
        os.mkdir(spool)
        os.chmod(spool, 0o2775)
        hermod.conf(home_mailbox="", mail_spool_directory=spool)
        hermod.signal("lmtpd", __import__("signal").SIGHUP)
        box = os.path.join(spool, name)

        def delivered():
            with Client(hermod.lmtp_socket) as c:
                _, dr = c.transaction(SENDER, [name + "@example.test"], msg("spool"))
            return dr[0][0] == 250 and os.path.exists(box)
        from hermod import wait_for
        wait_for(delivered, 10, what="delivery into the spool mbox after SIGHUP")
        st = os.stat(box)
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (pw.pw_uid, pw.pw_gid, 0o600)
        assert len(hermod.mbox(box)) >= 1
        assert not os.path.exists(box + ".lock")
    finally:
        subprocess.run(["userdel", name], capture_output=True)


def test_mbox_quota(hermod):
    path = mbox_path(hermod, "bob")
    start(hermod, users=[("bob", path, "quota=2k")])
    with Client(hermod.lmtp_socket) as c:
        _, dr = c.transaction(SENDER, ["bob@example.test"], msg("small"))
        assert dr[0][0] == 250, dr
        before = open(path, "rb").read()
        _, dr = c.transaction(SENDER, ["bob@example.test"], msg("big", b"q" * 3000 + b"\r\n"))
        assert dr[0][0] == 552 and dr[0][1].startswith("5.2.2"), dr
    assert open(path, "rb").read() == before
