"""The hermod command end to end: the supervisor (start -f, status, a
killed daemon coming back, stop) and the queue commands over queued's
control socket (queue, show, hold, release, delete, flush) on deferred
mail, with lmtpd down so that mail stays in the queue."""

import os
import re
import signal
import smtplib
import subprocess
import time

from hermod import can_connect, wait_for

QID = re.compile(r"^([0-9A-F]{10,})[*! ]", re.M)


def submit(h, n=1, rcpt="alice@example.test"):
    with smtplib.LMTP(h.submit_socket) as s:
        for i in range(n):
            s.sendmail("sender@example.org", [rcpt],
                       "Subject: held %d\r\n\r\nbody %d\r\n" % (i, i))


def queue_ids(h):
    r = h.run("hermod", "queue")
    assert r.returncode == 0, r.stderr
    return QID.findall(r.stdout), r.stdout


def start_deferred(h, n=2):
    """queued running, lmtpd not: mail is deferred."""
    h.add_user("alice")
    h.newaliases()
    h.start("queued")
    submit(h, n)
    ids = wait_for(lambda: (lambda q: q[0] if len(q[0]) == n else None)(queue_ids(h)),
                   20, what="%d messages in the queue" % n)
    return ids


def test_queue_listing_and_show(hermod):
    ids = start_deferred(hermod)
    out = queue_ids(hermod)[1]
    assert "sender@example.org" in out
    assert "alice@example.test" in out
    assert re.search(r"-- \d+ Kbytes in 2 Requests\.", out)
    r = hermod.run("hermod", "show", ids[0])
    assert r.returncode == 0, r.stderr
    assert "Subject: held" in r.stdout
    r = hermod.run("hermod", "show", "NOSUCHID")
    assert r.returncode != 0
    assert "no such message" in r.stderr


def test_hold_release_delete(hermod):
    ids = start_deferred(hermod)
    assert hermod.run("hermod", "hold", ids[0]).returncode == 0
    out = queue_ids(hermod)[1]
    assert re.search(r"^%s!" % ids[0], out, re.M)
    assert hermod.run("hermod", "release", ids[0]).returncode == 0
    assert not re.search(r"^%s!" % ids[0], queue_ids(hermod)[1], re.M)
    assert hermod.run("hermod", "delete", ids[1]).returncode == 0
    assert queue_ids(hermod)[0] == [ids[0]]
    assert hermod.run("hermod", "delete", "NOSUCHID").returncode != 0


def test_flush_delivers_after_lmtpd_returns(hermod):
    hermod.conf(minimal_backoff_time="1h", maximal_backoff_time="2h")
    start_deferred(hermod, 1)
    hermod.start("lmtpd")
    assert hermod.run("hermod", "flush").returncode == 0
    hermod.wait_messages("alice", 1, 20)
    wait_for(lambda: not queue_ids(hermod)[0], 10, what="empty queue")
    assert "Mail queue is empty" in queue_ids(hermod)[1]


def test_mailq_is_hermod_queue(hermod):
    start_deferred(hermod, 1)
    r = hermod.run("mailq")
    assert r.returncode == 0, r.stderr
    assert "alice@example.test" in r.stdout


def test_supervisor_restarts_killed_daemon_and_stops(hermod):
    hermod.add_user("alice")
    hermod.newaliases()
    log = open(hermod.path("log", "supervisor.log"), "ab")
    sup = subprocess.Popen([hermod.bin("hermod"), "-c", hermod.conf_path, "start", "-f"],
                           stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    try:
        wait_for(lambda: can_connect(("127.0.0.1", hermod.smtp_port)), 30, what="smtpd up")
        r = hermod.run("hermod", "status")
        assert r.returncode == 0, r.stdout + r.stderr
        pids = dict(re.findall(r"^(\w+)\s+running\s+pid (\d+)", r.stdout, re.M))
        assert set(pids) >= {"hermod", "lmtpd", "queued", "smtpd"}
        os.kill(int(pids["queued"]), signal.SIGKILL)

        def back():
            st = hermod.run("hermod", "status").stdout
            m = re.search(r"^queued\s+running\s+pid (\d+)", st, re.M)
            return m and m.group(1) != pids["queued"]
        wait_for(back, 30, what="queued restarted by the supervisor")
        with open(hermod.path("log", "supervisor.log")) as f:
            assert "killed by signal 9" in f.read()
        wait_for(lambda: can_connect(hermod.submit_socket), 20, what="queued back")
        submit(hermod, 1)
        hermod.wait_messages("alice", 1, 20)
        assert hermod.run("hermod", "stop").returncode == 0
        assert sup.wait(30) == 0
        assert not can_connect(("127.0.0.1", hermod.smtp_port))
    finally:
        if sup.poll() is None:
            sup.send_signal(signal.SIGTERM)
            try:
                sup.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(sup.pid, signal.SIGKILL)
