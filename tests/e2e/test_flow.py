"""Mail flows end to end: SMTP client -> smtpd -> queued -> lmtpd -> Maildir,
and sendmail -> queued -> lmtpd, read back with Python's mailbox module."""

import email
import smtplib
import socket
import subprocess
import time

from hermod import wait_for

BODY = ("Subject: flow test\r\nFrom: sender@example.org\r\nTo: alice@example.test\r\n"
        "\r\nfirst line\r\n.leading dot\r\nFrom the start\r\nlast line\r\n")


def messages(h, user, n, timeout=30):
    return h.wait_messages(user, n, timeout)


def start_system(h, users=("alice", "bob"), daemons=()):
    for u in users:
        h.add_user(u)
    h.write_aliases("postmaster: alice\nteam: alice, bob\n")
    h.newaliases()
    h.start(*daemons)


def test_smtp_to_maildir(hermod):
    start_system(hermod)
    with smtplib.SMTP("127.0.0.1", hermod.smtp_port, timeout=30) as s:
        s.ehlo("client.example.org")
        resp = s.sendmail("sender@example.org", ["alice@example.test"], BODY)
        assert resp == {}
    raw = messages(hermod, "alice", 1)[0]
    msg = email.message_from_bytes(raw)
    assert msg["Return-Path"] == "<sender@example.org>"
    assert msg["Delivered-To"] == "alice@example.test"
    assert "from client.example.org" in msg["Received"]
    assert "by mx.example.test" in msg["Received"]
    body = raw.split(b"\n\n", 1)[1]
    assert body == b"first line\n.leading dot\nFrom the start\nlast line\n"


def test_quoted_local_part_is_the_same_mailbox(hermod):
    """RFC 5321 4.1.2: "alice" and alice are one mailbox. A client outside
    mynetworks is accepted for "alice"@ and "team"@ (an alias) and the
    mail lands as for the plain form; quotes that matter still make
    another address ("alice bob"@ is unknown)."""
    hermod.conf(mynetworks="192.0.2.0/24")
    start_system(hermod)
    with smtplib.SMTP("127.0.0.1", hermod.smtp_port, timeout=30) as s:
        s.ehlo("client.example.org")
        s.mail("<sender@example.org>")
        assert s.rcpt('<"alice"@example.test>')[0] == 250
        code, text = s.rcpt('<"alice bob"@example.test>')
        assert code == 550 and b"5.1.1" in text
        assert s.data(BODY)[0] == 250
        raw = messages(hermod, "alice", 1)[0]
        assert email.message_from_bytes(raw)["Delivered-To"] == "alice@example.test"
        s.mail("<sender@example.org>")
        assert s.rcpt('<"te\\am"@example.test>')[0] == 250
        assert s.data(BODY)[0] == 250
    assert len(messages(hermod, "alice", 2)) == 2
    assert len(messages(hermod, "bob", 1)) == 1


def test_sendmail_flags_as_programs_write_them(hermod):
    """Clustered flags ("-ti" is -t -i, as scripts write it) and the
    sendmail options programs pass that mean nothing here (cron's -B and
    -oem, -Am, -h, -U) are accepted; an unknown letter is a usage error."""
    start_system(hermod, daemons=("lmtpd", "queued"))
    msg = "To: alice@example.test\nSubject: clustered\n\nline\n.\nafter the dot\n"
    for args in (["-ti"], ["-it", "-oem"], ["-Am", "-h", "5", "-U", "-i", "-t"],
                 ["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "alice@example.test"]):
        r = hermod.run("sendmail", *args, input=msg)
        assert r.returncode == 0, (args, r.stderr)
    got = messages(hermod, "alice", 4)
    assert len(got) == 4
    for raw in got:
        assert raw.split(b"\n\n", 1)[1] == b"line\n.\nafter the dot\n"
    r = hermod.run("sendmail", "-tZ", input=msg)
    assert r.returncode == 64 and "usage" in r.stderr


def test_alias_list_through_smtp(hermod):
    start_system(hermod)
    with smtplib.SMTP("127.0.0.1", hermod.smtp_port, timeout=30) as s:
        s.sendmail("sender@example.org", ["team@example.test"], BODY)
    assert len(messages(hermod, "alice", 1)) == 1
    assert len(messages(hermod, "bob", 1)) == 1


def test_sendmail_t_removes_bcc(hermod):
    start_system(hermod, daemons=("lmtpd", "queued"))
    msg = ("To: alice@example.test\nBcc: bob@example.test\nSubject: via sendmail\n\n"
           "hello\n.\nnot the end with -i\n")
    r = hermod.run("sendmail", "-t", "-i", input=msg)
    assert r.returncode == 0, r.stderr
    for user in ("alice", "bob"):
        raw = messages(hermod, user, 1)[0]
        m = email.message_from_bytes(raw)
        assert m["Bcc"] is None
        assert m["Subject"] == "via sendmail"
        assert m["Message-ID"] and m["Date"] and m["From"]
        assert raw.endswith(b"hello\n.\nnot the end with -i\n")


def test_sendmail_dot_ends_message_without_i(hermod):
    start_system(hermod, daemons=("lmtpd", "queued"))
    r = hermod.run("sendmail", "alice@example.test",
                   input="Subject: dot\n\nbefore\n.\nafter\n")
    assert r.returncode == 0, r.stderr
    raw = messages(hermod, "alice", 1)[0]
    assert raw.endswith(b"before\n")


def test_sendmail_exits_75_without_queued_and_maildrop(hermod):
    """queued never ran here, so there is no maildrop either (the
    maildrop itself: test_maildrop.py)."""
    start_system(hermod, daemons=("lmtpd",))
    r = hermod.run("sendmail", "alice@example.test", input="Subject: x\n\nbody\n")
    assert r.returncode == 75
    assert "not sent" in r.stderr


def test_many_concurrent_smtp_clients(hermod):
    start_system(hermod, users=("alice",))
    procs = [subprocess.Popen(
        ["swaks", "--server", "127.0.0.1:%d" % hermod.smtp_port, "--silent", "2",
         "--from", "s%d@example.org" % i, "--to", "alice@example.test",
         "--header", "Subject: swaks %d" % i])
        for i in range(20)]
    deadline = time.monotonic() + 60
    for p in procs:
        assert p.wait(max(1, deadline - time.monotonic())) == 0
    msgs = messages(hermod, "alice", 20, timeout=60)
    subjects = sorted(email.message_from_bytes(m)["Subject"] for m in msgs)
    assert subjects == sorted("swaks %d" % i for i in range(20))


def has_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_address_literal_of_this_host_is_local(hermod):
    """RFC 5321 4.1.3 and 4.5.1: a client may name this host by one of its
    addresses, and postmaster must answer there. As in Postfix, a literal
    holding one of this host's interface addresses is a local domain for a
    client that may not relay; another address is still relaying."""
    hermod.conf(mynetworks="192.0.2.0/24")
    start_system(hermod)
    with smtplib.SMTP("127.0.0.1", hermod.smtp_port, timeout=30) as s:
        s.ehlo("client.example.org")
        s.mail("<sender@example.org>")
        assert s.rcpt("<postmaster@[127.0.0.1]>")[0] == 250
        assert s.rcpt("<bob@[127.0.0.1]>")[0] == 250
        code, text = s.rcpt("<nobody-here@[127.0.0.1]>")
        assert code == 550 and b"5.1.1" in text
        code, text = s.rcpt("<alice@[192.0.2.7]>")
        assert code == 554 and b"5.7.1" in text
        want = {"alice@[127.0.0.1]"}
        if has_ipv6_loopback():
            assert s.rcpt("<postmaster@[IPv6:::1]>")[0] == 250
            want.add("alice@[IPv6:::1]")
        code, text = s.rcpt("<alice@[IPv6:2001:db8::1]>")
        assert code == 554 and b"5.7.1" in text
        assert s.data(BODY)[0] == 250
    got = messages(hermod, "alice", len(want))
    assert {email.message_from_bytes(raw)["Delivered-To"] for raw in got} == want
    raw = messages(hermod, "bob", 1)[0]
    assert email.message_from_bytes(raw)["Delivered-To"] == "bob@[127.0.0.1]"
