"""lmtpd's kept delivery workers (deliver_master.c): one process per
mailbox owner serves many deliveries, goes after lmtpd_worker_max_idle or
lmtpd_worker_max_use, is replaced when it dies, and one overrunning
lmtpd_delivery_timeout is killed with a 4.3.0 result while the next
delivery works. As root, two owners in one transaction each get their
own worker and their own file ownership."""

import fcntl
import os
import signal
import subprocess
import time

import pytest

from hermod import wait_for
from test_lmtpd import SENDER, mbox_path, msg, start
from test_lmtpd_client import Client

IS_ROOT = os.geteuid() == 0


def workers(hermod):
    """pids of lmtpd-deliver processes under this test's lmtpd."""
    lmtpd = hermod.procs["lmtpd"].pid
    out = subprocess.run(["ps", "-eo", "pid=,ppid=,comm="], capture_output=True,
                         text=True, timeout=10).stdout.split("\n")
    procs = [ln.split() for ln in out if ln.strip()]
    masters = {int(p[0]) for p in procs if p[2] == "lmtpd-master" and int(p[1]) == lmtpd}
    return sorted(int(p[0]) for p in procs if p[2] == "lmtpd-deliver" and int(p[1]) in masters)


def deliver(hermod, rcpts, subject):
    with Client(hermod.lmtp_socket) as c:
        return c.transaction(SENDER, rcpts, msg(subject))[1]


def test_worker_kept_renewed_and_idle_exit(hermod):
    start(hermod, conf={"lmtpd_worker_max_idle": "2s", "lmtpd_worker_max_use": "3"},
          users=[("alice", None, "")])
    seen = []
    for i in range(3):
        assert deliver(hermod, ["alice@example.test"], "kept %d" % i)[0][0] == 250
        seen.append(workers(hermod))
    assert len(seen[0]) == 1 and seen[0] == seen[1]      # the same process
    # after max_use deliveries it goes; the next delivery gets a new one
    wait_for(lambda: not workers(hermod), 10, what="the worker to go after max_use")
    assert deliver(hermod, ["alice@example.test"], "renewed")[0][0] == 250
    fresh = workers(hermod)
    assert len(fresh) == 1 and fresh != seen[0]
    t0 = time.monotonic()
    wait_for(lambda: not workers(hermod), 10, what="the idle worker to exit")
    assert time.monotonic() - t0 >= 1
    assert len(hermod.messages("alice")) == 4


def test_killed_worker_is_replaced(hermod):
    start(hermod, users=[("alice", None, "")])
    assert deliver(hermod, ["alice@example.test"], "one")[0][0] == 250
    (pid,) = workers(hermod)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: pid not in workers(hermod), 10, what="the killed worker to be gone")
    assert deliver(hermod, ["alice@example.test"], "two")[0][0] == 250
    assert len(hermod.messages("alice")) == 2


def test_overdue_delivery_killed_then_next_works(hermod):
    path = mbox_path(hermod, "bob")
    start(hermod, conf={"lmtpd_delivery_timeout": "2s", "mailbox_lock_timeout": "60s"},
          users=[("bob", path, ""), ("alice", None, "")])
    with open(path, "wb"):
        pass
    os.chown(path, hermod.uid, hermod.gid)
    with open(path, "r+b") as held:
        fcntl.lockf(held, fcntl.LOCK_EX)     # bob's delivery waits for the lock
        t0 = time.monotonic()
        dr = deliver(hermod, ["bob@example.test"], "stuck")
        took = time.monotonic() - t0
        # another worker serves alice meanwhile (the owner is the same)
        assert deliver(hermod, ["alice@example.test"], "meanwhile")[0][0] == 250
    assert dr[0][0] == 451 and "4.3.0" in dr[0][1] and "timed out" in dr[0][1], dr
    assert 1.5 <= took < 15, took
    assert deliver(hermod, ["bob@example.test"], "after")[0][0] == 250
    assert [m["Subject"] for m in hermod.mbox(path)] == ["after"]


@pytest.mark.skipif(not IS_ROOT, reason="needs root to create a second mailbox owner")
def test_two_owners_one_transaction(hermod):
    import pwd
    name = "hmdlw%d" % (os.getpid() % 100000)
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                    "/usr/sbin/nologin", name], check=True, capture_output=True)
    try:
        pw = pwd.getpwnam(name)
        home = hermod.path("home-" + name)
        os.mkdir(home, 0o755)
        os.chown(home, pw.pw_uid, pw.pw_gid)
        box = home + "/Maildir/"
        hermod.add_user("alice")
        hermod.users.append("%s %s uid=%d gid=%d" % (name, box, pw.pw_uid, pw.pw_gid))
        with open(hermod.path("etc/users"), "w") as f:
            f.write("\n".join(hermod.users) + "\n")
        start(hermod)
        for i in range(3):
            dr = deliver(hermod, ["alice@example.test", name + "@example.test"], "two %d" % i)
            assert [d[0] for d in dr] == [250, 250], dr
        assert len(workers(hermod)) == 2          # one per owner, kept
        for d, owner in ((hermod.path("mail", "alice", "new"), (hermod.uid, hermod.gid)),
                         (os.path.join(box, "new"), (pw.pw_uid, pw.pw_gid))):
            files = os.listdir(d)
            assert len(files) == 3
            for f in files:
                st = os.stat(os.path.join(d, f))
                assert (st.st_uid, st.st_gid) == owner, (d, f)
    finally:
        subprocess.run(["userdel", name], capture_output=True)


def test_session_crash_abandons_uncommitted(hermod):
    """kill -9 of lmtpd's session process right after the final dot: the
    deliveries it handed out are abandoned before their commit (queued
    will send them again), so hardly any lands after the kill; before,
    every one in flight (up to lmtpd_process_limit) did."""
    from test_lmtpd_client import stuff
    n = 40
    for i in range(n):
        hermod.add_user("u%d" % i)
    start(hermod, conf={"lmtpd_process_limit": "20"})
    body = (b"y" * 998 + b"\r\n") * 400            # ~400 KB: writes take a while
    c = Client(hermod.lmtp_socket)
    assert c.cmd("MAIL FROM:<%s>" % SENDER)[0] == 250
    for i in range(n):
        assert c.cmd("RCPT TO:<u%d@example.test>" % i)[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(stuff(msg("crash", body)) + b".\r\n")
    time.sleep(0.02)
    hermod.kill("lmtpd")

    def count():
        return sum(len(hermod.messages("u%d" % i)) for i in range(n))
    at_kill = count()
    time.sleep(2)
    after = count()
    c.close()
    assert after - at_kill <= 3, (at_kill, after)
    assert after < n
    for i in range(n):                      # nothing half-written is left
        tmp = hermod.path("mail", "u%d" % i, "tmp")
        assert not os.path.isdir(tmp) or os.listdir(tmp) == [], tmp


def test_spool_past_memory_bound_moves_to_disk(hermod):
    """A message starts in a memfd and moves to a file past 1 MiB: a
    3 MiB one and a small one after it both arrive byte for byte."""
    import mailbox
    from test_lmtpd_client import stored
    start(hermod, conf={"message_size_limit": str(8 << 20)},
          users=[("alice", None, ""), ("bob", mbox_path(hermod, "bob"), "")])
    big = msg("big", b"".join(b"%06d " % i + b"b" * 990 + b"\r\n" for i in range(3000)))
    small = msg("small")
    with Client(hermod.lmtp_socket) as c:
        for m in (big, small):
            _, dr = c.transaction(SENDER, ["alice@example.test", "bob@example.test"], m)
            assert [r[0] for r in dr] == [250, 250], dr
    md = hermod.maildir("alice")
    got = sorted((md.get_bytes(k) for k in md.keys()), key=len)
    assert got == [stored(SENDER, "alice@example.test", small),
                   stored(SENDER, "alice@example.test", big)]
    mb = mailbox.mbox(mbox_path(hermod, "bob"))
    assert [mb.get_bytes(k) for k in mb.keys()] == [
        stored(SENDER, "bob@example.test", big), stored(SENDER, "bob@example.test", small)]
