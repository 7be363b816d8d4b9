"""lmtpd under concurrency: many sessions into one mbox (nothing lost,
nothing interleaved) and into one Maildir (unique names)."""

import os
import threading

from test_lmtpd import SENDER, mbox_path, msg, start
from test_lmtpd_client import Client, mboxrd_unquote, stored


def run_clients(h, nclients, nmsgs, rcpt):
    errors = []

    def client(n):
        try:
            with Client(h.lmtp_socket, timeout=120) as c:
                for i in range(nmsgs):
                    body = (b"client %d message %d\r\nFrom a line to quote\r\n" % (n, i)
                            + b"filler " * 50 + b"\r\n")
                    _, dr = c.transaction(SENDER, [rcpt], msg("c%d m%d" % (n, i), body))
                    if dr[0][0] != 250:
                        errors.append((n, i, dr))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append((n, repr(e)))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(nclients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert not any(t.is_alive() for t in threads), "clients hung"
    assert errors == []


def expected(nclients, nmsgs, rcpt):
    out = {}
    for n in range(nclients):
        for i in range(nmsgs):
            body = (b"client %d message %d\r\nFrom a line to quote\r\n" % (n, i)
                    + b"filler " * 50 + b"\r\n")
            out["<c%d.m%d@example.org>" % (n, i)] = stored(SENDER, rcpt, msg("c%d m%d" % (n, i), body))
    return out


def test_20_clients_50_messages_one_mbox(hermod):
    path = mbox_path(hermod, "bob")
    start(hermod, users=[("bob", path, "")])
    run_clients(hermod, 20, 50, "bob@example.test")
    box = hermod.mbox(path)
    want = expected(20, 50, "bob@example.test")
    got = {}
    for k in box.keys():
        raw = mboxrd_unquote(box.get_bytes(k))
        mid = box[k]["Message-ID"]
        assert mid not in got, "duplicate %s" % mid
        got[mid] = raw
    assert len(got) == 1000
    assert got == want
    assert not os.path.exists(path + ".lock")


def test_maildir_names_unique_under_concurrency(hermod):
    start(hermod, users=[("alice", None, "")])
    run_clients(hermod, 10, 20, "alice@example.test")
    names = os.listdir(hermod.path("mail/alice/new"))
    assert len(names) == len(set(names)) == 200
    md = hermod.maildir("alice")
    got = sorted(md.get_bytes(k) for k in md.keys())
    assert got == sorted(expected(10, 20, "alice@example.test").values())
    assert os.listdir(hermod.path("mail/alice/tmp")) == []


def test_many_recipients_one_transaction(hermod):
    """More recipients than lmtpd_process_limit: they wait their turn,
    the replies still come one per recipient in RCPT order."""
    start(hermod, conf={"lmtpd_process_limit": 4}, users=[("alice", None, ""), ("bob", None, "")])
    rcpts = ["alice+%d@example.test" % i for i in range(150)] + ["nobody@example.test"] + \
        ["bob+%d@example.test" % i for i in range(50)]
    with Client(hermod.lmtp_socket, timeout=300) as c:
        rr, dr = c.transaction(SENDER, rcpts, msg("many"))
    assert [x[0] for x in rr] == [250] * 150 + [550] + [250] * 50
    assert len(dr) == 200 and all(x[0] == 250 for x in dr)
    assert [x[1].split()[1] for x in dr] == ["<%s>" % r for r in rcpts if r != "nobody@example.test"]
    assert len(os.listdir(hermod.path("mail/alice/new"))) == 150
    assert len(os.listdir(hermod.path("mail/bob/new"))) == 50


def test_slow_mailbox_does_not_stall_other_sessions(hermod):
    import fcntl
    import time
    path = mbox_path(hermod, "bob")
    start(hermod, conf={"mailbox_lock_timeout": "4s"},
          users=[("bob", path, ""), ("alice", None, "")])
    with open(path, "wb"):
        pass
    os.chown(path, hermod.uid, hermod.gid)
    result = {}
    with open(path, "r+b") as held:
        fcntl.lockf(held, fcntl.LOCK_EX)

        def slow():
            with Client(hermod.lmtp_socket) as c:
                result["bob"] = c.transaction(SENDER, ["bob@example.test"], msg("slow"))[1]
        t = threading.Thread(target=slow)
        t.start()
        time.sleep(0.3)
        t0 = time.monotonic()
        with Client(hermod.lmtp_socket) as c:
            for i in range(5):
                _, dr = c.transaction(SENDER, ["alice@example.test"], msg("fast %d" % i))
                assert dr[0][0] == 250
        fast = time.monotonic() - t0
        t.join(30)
    assert fast < 3, fast
    assert result["bob"][0][0] == 452
