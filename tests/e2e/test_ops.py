"""Running Hermod: sendmail's flags, make install, and the make run smoke
test (issue 9)."""

import email
import glob
import os
import shutil
import signal
import smtplib
import subprocess
import tempfile
import time

import pytest

from hermod import BIN, IS_ROOT, TOP, can_connect, holds_bytes, wait_for


def start(h, daemons=("lmtpd", "queued")):
    h.add_user("alice")
    h.add_user("bob")
    h.write_aliases("postmaster: alice\nteam: alice, bob\n")
    h.newaliases()
    h.start(*daemons)


def queue_file(h):
    """The text of the only queue file (lmtpd is down, so it stays)."""
    files = wait_for(lambda: [p for p in glob.glob(h.path("spool", "queue", "*", "*"))
                              if holds_bytes(p)], 10, what="a queue file")
    assert len(files) == 1
    with open(files[0], "rb") as f:
        return f.read().decode("utf-8", "replace")


def test_sendmail_dsn_options_reach_the_queue(hermod):
    start(hermod, daemons=("queued",))
    r = hermod.run("sendmail", "-N", "SUCCESS,FAILURE", "-R", "HDRS", "-V", "env-42",
                   "-oem", "-odb", "-oi", "alice@example.test", input="Subject: dsn\n\nbody\n")
    assert r.returncode == 0, r.stderr
    q = queue_file(hermod)
    assert "envid: env-42" in q
    assert "ret: HDRS" in q
    assert "notify=SUCCESS,FAILURE" in q


def test_sendmail_sender_and_full_name(hermod):
    start(hermod)
    r = hermod.run("sendmail", "-f", "boss@example.org", "-F", "The Boss",
                   "alice@example.test", input="Subject: from\n\nbody\n")
    assert r.returncode == 0, r.stderr
    m = email.message_from_bytes(hermod.wait_messages("alice", 1)[0])
    if IS_ROOT:     # trusted: -f is the envelope sender
        assert m["Return-Path"] == "<boss@example.org>"
        assert m["From"] == "The Boss <boss@example.org>"
    else:           # untrusted: the invoking user, whatever -f said
        assert m["Return-Path"] != "<boss@example.org>"
        assert m["From"].startswith("The Boss <")


def test_sendmail_bare_name_gets_myhostname_and_alias_expands(hermod):
    start(hermod)
    hermod.write_aliases("postmaster: alice\nteam: alice, bob\n")
    r = hermod.run("sendmail", "-v", "team@example.test", input="Subject: team\n\nbody\n")
    assert r.returncode == 0, r.stderr
    hermod.wait_messages("alice", 1)
    hermod.wait_messages("bob", 1)
    r = hermod.run("sendmail", "alice", input="Subject: bare\n\nbody\n")
    assert r.returncode == 0, r.stderr
    hermod.wait_messages("alice", 2)


def test_sendmail_no_recipient_is_a_usage_error(hermod):
    start(hermod)
    r = hermod.run("sendmail", input="Subject: nobody\n\nbody\n")
    assert r.returncode == 64
    assert "no recipients" in r.stderr
    r = hermod.run("sendmail", "-t", input="Subject: nobody\n\nbody\n")
    assert r.returncode == 64


def test_sendmail_modes_bp_bi_q(hermod):
    start(hermod, daemons=("queued",))
    r = hermod.run("sendmail", "alice@example.test", input="Subject: held\n\nbody\n")
    assert r.returncode == 0, r.stderr
    r = hermod.run("sendmail", "-bp")
    assert r.returncode == 0 and "alice@example.test" in r.stdout
    hermod.write_aliases("postmaster: alice\nnewname: bob\n")
    r = hermod.run("sendmail", "-bi")
    assert r.returncode == 0, r.stderr
    assert "newname" in hermod.run("hermod", "lookup", "newname@example.test").stdout
    hermod.start("lmtpd")
    assert hermod.run("sendmail", "-q").returncode == 0
    hermod.wait_messages("alice", 1)


def test_sendmail_bs_speaks_smtp(hermod):
    start(hermod)
    if not os.path.exists(hermod.bin("smtpd")):
        pytest.skip("no smtpd")
    p = subprocess.run([hermod.bin("sendmail"), "-bs"], input=(
        "EHLO localhost\r\nMAIL FROM:<local@example.test>\r\nRCPT TO:<alice@example.test>\r\n"
        "DATA\r\nSubject: bs\r\n\r\nvia -bs\r\n.\r\nQUIT\r\n"),
        capture_output=True, text=True, timeout=60,
        env=dict(os.environ, HERMOD_CONF=hermod.conf_path))
    assert p.stdout.startswith("220 "), p.stdout + p.stderr
    assert "\n221 " in p.stdout
    m = email.message_from_bytes(hermod.wait_messages("alice", 1)[0])
    assert m["Subject"] == "bs"


def test_make_install_into_destdir():
    dest = tempfile.mkdtemp(prefix="hermod-install-")
    try:
        os.makedirs(os.path.join(dest, "etc/hermod"))
        with open(os.path.join(dest, "etc/hermod/hermod.conf"), "w") as f:
            f.write("# mine\n")
        r = subprocess.run(["make", "-s", "install", "DESTDIR=" + dest, "PREFIX=/usr"],
                           cwd=TOP, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout + r.stderr
        for f in ("usr/sbin/smtpd", "usr/sbin/queued", "usr/sbin/lmtpd", "usr/sbin/hermod",
                  "usr/sbin/newaliases", "usr/bin/sendmail", "usr/bin/mailq",
                  "usr/share/man/man8/hermod.8", "usr/share/man/man5/hermod.conf.5",
                  "usr/share/man/man1/sendmail.1", "usr/share/man/man1/mailq.1",
                  "etc/hermod/aliases", "etc/hermod/users"):
            assert os.path.exists(os.path.join(dest, f)), f
        with open(os.path.join(dest, "usr/lib/systemd/system/hermod.service")) as f:
            unit = f.read()
        assert "ExecStart=/usr/sbin/hermod -c /etc/hermod/hermod.conf start -f\n" in unit
        assert "@" not in unit
        with open(os.path.join(dest, "etc/hermod/hermod.conf")) as f:
            assert f.read() == "# mine\n"       # an existing config is kept
    finally:
        shutil.rmtree(dest, ignore_errors=True)


def test_make_run_smoke():
    """tools/run.sh (what make run runs) in a scratch directory: it starts,
    a message sent with swaks lands in run/mail/alice, Ctrl-C stops all."""
    if any(can_connect(("127.0.0.1", p)) for p in (2525, 2587, 2465)):
        pytest.skip("a port of make run (2525/2587/2465) is in use here")
    work = tempfile.mkdtemp(prefix="hermod-run-")
    os.chmod(work, 0o755)
    p = subprocess.Popen(["sh", os.path.join(TOP, "tools/run.sh")], cwd=work,
                         env=dict(os.environ, HERMOD_BIN=BIN), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: can_connect(("127.0.0.1", 2525)), 30, what="make run's smtpd")
        r = subprocess.run(["swaks", "--server", "127.0.0.1:2525", "--from", "you@example.org",
                            "--to", "alice@localhost", "--silent", "2"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        wait_for(lambda: glob.glob(os.path.join(work, "run/mail/alice/new/*")), 30,
                 what="the message in run/mail/alice/new")
        time.sleep(2)       # the banner comes once all three have started
        os.killpg(p.pid, signal.SIGINT)
        out = p.communicate(timeout=30)[0].decode(errors="replace")
        assert "swaks --server 127.0.0.1:2525" in out
        time.sleep(0.2)
        assert not can_connect(("127.0.0.1", 2525))
        left = subprocess.run(["pgrep", "-f", work], capture_output=True, text=True).stdout
        assert left.strip() == "", "processes left running: " + left
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)
        shutil.rmtree(work, ignore_errors=True)
