"""lmtpd's group commit (deliver_master.c, deliver_worker.c, maildir.c):
deliveries waiting for one mailbox owner go to one worker as a batch whose
data and links are made durable with two shared flushes. Every message
still lands exactly once, byte for byte; one failure in a batch fails
that recipient only; a worker killed with a batch gives 4.3.0 to each of
its deliveries and nothing half done stays; lmtpd_maildir_one_flush and
lmtpd_delivery_batch_limit = 1 deliver the same."""

import os
import re
import signal
import threading
import time

import pytest

from hermod import wait_for
from test_lmtpd import SENDER, msg, start
from test_lmtpd_client import Client, stored, stuff
from test_lmtpd_workers import workers

USERS = ["u%d" % i for i in range(8)]


def run_load(h, nclients, nmsgs):
    """nclients sessions, each nmsgs transactions to 1 or 3 recipients of
    one owner; returns {user: {message-id: stored bytes}} expected."""
    want = {u: {} for u in USERS}
    errors = []
    lock = threading.Lock()

    def client(n):
        try:
            with Client(h.lmtp_socket, timeout=120) as c:
                for i in range(nmsgs):
                    k = (n * nmsgs + i)
                    rcpts = [USERS[(k + j) % len(USERS)] for j in range(1 + 2 * (i % 2))]
                    addrs = ["%s@example.test" % u for u in rcpts]
                    subject = "c%d m%d" % (n, i)
                    m = msg(subject, b"client %d message %d\r\n" % (n, i) + b"x" * 3000 + b"\r\n")
                    _, dr = c.transaction(SENDER, addrs, m)
                    if any(code != 250 for code, _ in dr):
                        errors.append((n, i, dr))
                    with lock:
                        for u, a in zip(rcpts, addrs):
                            want[u]["<c%d.m%d@example.org>" % (n, i)] = stored(SENDER, a, m)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append((n, repr(e)))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(nclients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert not any(t.is_alive() for t in threads), "clients hung"
    assert errors == []
    return want


def landed(h, user):
    md = h.maildir(user)
    got = {}
    for k in md.keys():
        raw = md.get_bytes(k)
        mid = md[k]["Message-ID"]
        assert mid not in got, "duplicate %s for %s" % (mid, user)
        got[mid] = raw
    return got


def shared_commits(h):
    return [int(n) for n in re.findall(r"delivered to maildir, (\d+) in one commit", h.log("lmtpd"))]


@pytest.mark.parametrize("conf", [
    {},
    {"lmtpd_maildir_one_flush": "yes"},
    {"lmtpd_delivery_batch_limit": "1"},
], ids=["batch", "one_flush", "unbatched"])
def test_concurrent_deliveries_to_one_owner_all_land(hermod, conf):
    start(hermod, conf=conf, users=[(u, None, "") for u in USERS])
    want = run_load(hermod, 16, 12)
    for u in USERS:
        assert landed(hermod, u) == want[u], u
        assert os.listdir(hermod.path("mail", u, "tmp")) == []
    shared = shared_commits(hermod)
    if conf.get("lmtpd_delivery_batch_limit") == "1":
        assert shared == []
    else:
        # 16 sessions into one owner: deliveries wait for the running
        # batch and go out together
        assert shared and max(shared) <= 32


def test_many_recipients_one_commit(hermod):
    start(hermod, users=[(u, None, "") for u in USERS])
    m = msg("wide", b"to everyone\r\n")
    rcpts = ["%s@example.test" % u for u in USERS] * 1
    with Client(hermod.lmtp_socket) as c:
        _, dr = c.transaction(SENDER, rcpts, m)
    assert [code for code, _ in dr] == [250] * len(USERS)
    for u in USERS:
        assert list(landed(hermod, u).values()) == [stored(SENDER, "%s@example.test" % u, m)]


def test_one_failure_in_a_batch_fails_only_that_recipient(hermod):
    names = ["ok1", "full", "ok2", "unwritable", "symlinked", "ok3"]
    start(hermod, users=[(n, None, "quota=100" if n == "full" else "") for n in names])
    # make each Maildir first, then break two of them
    with Client(hermod.lmtp_socket) as c:
        _, dr = c.transaction(SENDER, ["%s@example.test" % n for n in names if n != "full"],
                              msg("first"))
    assert [code for code, _ in dr] == [250] * 5
    os.chmod(hermod.path("mail", "unwritable", "tmp"), 0o500)
    new = hermod.path("mail", "symlinked", "new")
    os.rename(new, new + ".real")
    os.symlink(new + ".real", new)
    m = msg("second", b"y" * 500 + b"\r\n")
    with Client(hermod.lmtp_socket) as c:
        _, dr = c.transaction(SENDER, ["%s@example.test" % n for n in names], m)
    got = dict(zip(names, dr))
    for n in ("ok1", "ok2", "ok3"):
        assert got[n][0] == 250, got[n]
        assert stored(SENDER, "%s@example.test" % n, m) in landed(hermod, n).values()
    assert got["full"][0] == 552 and "5.2.2" in got["full"][1]
    assert got["unwritable"][0] == 451 and "4.3.0" in got["unwritable"][1]
    assert got["symlinked"][0] == 451 and "4.3.0" in got["symlinked"][1]
    os.chmod(hermod.path("mail", "unwritable", "tmp"), 0o700)
    assert len(landed(hermod, "unwritable")) == 1
    assert len(os.listdir(new + ".real")) == 1
    assert os.listdir(hermod.path("mail", "unwritable", "tmp")) == []


def test_quota_counts_the_batch_itself(hermod):
    m = msg("q", b"z" * 1000 + b"\r\n")
    size = len(stored(SENDER, "q@example.test", m))
    # room for two copies, not three
    start(hermod, users=[("q", None, "quota=%d" % (2 * size + size // 2))])
    with Client(hermod.lmtp_socket) as c:
        _, dr = c.transaction(SENDER, ["q@example.test"] * 3, m)
    codes = [code for code, _ in dr]
    assert sorted(codes) == [250, 250, 552], dr
    assert len(hermod.messages("q")) == 2


def stop_worker_then_send(h, rcpts, subject):
    """A worker of the owner is made and stopped; a transaction to rcpts
    then goes to it as one batch. Returns (client, pid)."""
    with Client(h.lmtp_socket) as c:
        assert c.transaction(SENDER, [rcpts[0]], msg("warm " + subject))[1][0][0] == 250
    (pid,) = workers(h)
    os.kill(pid, signal.SIGSTOP)
    c = Client(h.lmtp_socket, timeout=60)
    assert c.cmd("MAIL FROM:<%s>" % SENDER)[0] == 250
    for r in rcpts:
        assert c.cmd("RCPT TO:<%s>" % r)[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(msg(subject) + b"\r\n.\r\n")
    return c, pid


def check_outcome(h, rcpts, dr, why):
    """What was at the stopped worker got 4.3.0 (the first delivery at
    least, sent alone or with others); what waited behind it went to a
    new worker and landed; each recipient holds exactly its 250s."""
    codes = [code for code, _ in dr]
    assert codes[0] == 451 and set(codes) <= {250, 451}, dr
    assert all(why in t for code, t in dr if code == 451), dr
    for i, (r, code) in enumerate(zip(rcpts, codes)):
        u = r.split("@")[0]
        assert len(h.messages(u)) == (i == 0) + (code == 250), (u, dr)
        tmp = h.path("mail", u, "tmp")
        assert not os.path.isdir(tmp) or os.listdir(tmp) == []


def test_worker_killed_with_a_batch_gives_430_to_each(hermod):
    start(hermod, users=[(u, None, "") for u in USERS[:5]])
    rcpts = ["%s@example.test" % u for u in USERS[:5]]
    c, pid = stop_worker_then_send(hermod, rcpts, "killed")
    try:
        time.sleep(1)      # the batch is at the stopped worker
        os.kill(pid, signal.SIGKILL)
        dr = [c.reply() for _ in rcpts]
    finally:
        c.close()
    check_outcome(hermod, rcpts, dr, "delivery process failed")
    # a new worker takes the next batch
    with Client(hermod.lmtp_socket) as c:
        _, dr = c.transaction(SENDER, rcpts, msg("after"))
    assert [code for code, _ in dr] == [250] * 5
    wait_for(lambda: pid not in workers(hermod), 10, what="the killed worker to be gone")


def test_overdue_batch_is_killed_with_430_for_each(hermod):
    start(hermod, conf={"lmtpd_delivery_timeout": "2s"},
          users=[(u, None, "") for u in USERS[:3]])
    rcpts = ["%s@example.test" % u for u in USERS[:3]]
    c, pid = stop_worker_then_send(hermod, rcpts, "overdue")
    try:
        t0 = time.monotonic()
        dr = [c.reply() for _ in rcpts]
        took = time.monotonic() - t0
    finally:
        c.close()
    check_outcome(hermod, rcpts, dr, "timed out")
    assert 1 <= took < 30
    with Client(hermod.lmtp_socket) as c:
        _, dr = c.transaction(SENDER, rcpts, msg("next"))
    assert [code for code, _ in dr] == [250] * 3


def open_data(h, subject):
    """A session to u0 with its message sent but for the final dot."""
    c = Client(h.lmtp_socket, timeout=30)
    assert c.cmd("MAIL FROM:<%s>" % SENDER)[0] == 250
    assert c.cmd("RCPT TO:<u0@example.test>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(stuff(msg(subject, b"w" * 4000 + b"\r\n")))
    return c


def test_deliveries_ending_together_make_one_batch(hermod):
    """Four sessions end their messages to one owner one right after the
    other, as queued hands over the messages of one commit. The first
    delivery waits for the others the session process expects, and all
    four share one commit (before, the first went out alone and the rest
    as a second batch: four flushes instead of two)."""
    start(hermod, users=[("u0", None, "")])
    with Client(hermod.lmtp_socket) as c:       # the Maildir and its worker
        assert c.transaction(SENDER, ["u0@example.test"], msg("warm"))[1][0][0] == 250
    clients = [open_data(hermod, "together %d" % i) for i in range(4)]
    try:
        time.sleep(0.3)         # every body read; only the dots are left
        for c in clients:       # apart, as queued's writes come
            c.send(b".\r\n")
            time.sleep(0.0005)
        replies = [c.reply() for c in clients]
    finally:
        for c in clients:
            c.close()
    assert [code for code, _ in replies] == [250] * 4, replies
    assert shared_commits(hermod) == [4] * 4
    assert len(hermod.messages("u0")) == 5


def test_an_open_transaction_holds_a_delivery_only_briefly(hermod):
    """A transaction left open (a client that stops after RCPT) makes the
    session process expect one more delivery; the delivery that waits for
    it starts after the hold (milliseconds), and every later one too."""
    start(hermod, users=[("u0", None, "")])
    idle = Client(hermod.lmtp_socket, timeout=30)
    try:
        assert idle.cmd("MAIL FROM:<%s>" % SENDER)[0] == 250
        assert idle.cmd("RCPT TO:<u0@example.test>")[0] == 250
        with Client(hermod.lmtp_socket, timeout=10) as c:
            for i in range(3):
                assert c.transaction(SENDER, ["u0@example.test"],
                                     msg("past the idle one %d" % i))[1][0][0] == 250
    finally:
        idle.close()
    assert len(hermod.messages("u0")) == 3
