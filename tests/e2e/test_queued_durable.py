"""queued's one-flush commit (hermod-queue(5), "The seal" and
"Durability"): a queue file is written in its final place and sealed, so
recovery must tell a whole file from one a crash cut short. Incomplete
files (never acknowledged) are removed, whole ones delivered, a whole file
that does not parse still goes to corrupt/; a submission killed in the
middle of its DATA leaves nothing behind; and each message costs one
flush, counted by queued's own `stats`."""

import os
import socket
import time

from hermod import holds_bytes, wait_for
from test_queued import FakeLmtpd, control, listing, lmtp_submit, prepare, stats


def _crc32c_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


CRC_TABLE = _crc32c_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = CRC_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


MAGIC = b"HERMOD-QUEUE 2\n"


def sealed(qid, body, envelope=None):
    """A whole version 2 queue file: magic, size line, envelope, message,
    seal (the CRC of everything after the size line up to the seal)."""
    env = envelope or ("id: %s\narrival: %d.000000\nsender: <sender@example.test>\n"
                       "rcpt: <alice@example.test>\nleaf: 0 local <alice@example.test>\n\n"
                       % (qid, int(time.time()))).encode()
    rest = env + body
    return MAGIC + b"size: %015d\n" % len(body) + rest + b"e %08X\n" % crc32c(rest)


def put(h, qid, data):
    p = h.path("spool", "queue", qid[-1], qid)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "wb") as f:
        f.write(data)
    for root, dirs, files in os.walk(h.path("spool")):   # as root: for `hermod`
        os.chown(root, h.uid, h.gid)
        for x in files:
            os.chown(os.path.join(root, x), h.uid, h.gid)
    return p


def test_incomplete_removed_whole_delivered(hermod):
    prepare(hermod)
    body = b"Subject: whole\r\n\r\n" + b"x" * 9000 + b"\r\n"
    good = sealed("6B0B0000000000A0", body)
    size_at = len(MAGIC) + len("size: ")
    cases = {
        "6B0B0000000000A2": good[:10],                           # cut inside the magic
        "6B0B0000000000A3": good[:size_at] + b"-" * 15 + good[size_at + 15:],  # no size yet
        "6B0B0000000000A4": good[:len(good) // 2],               # cut in the message
        "6B0B0000000000A5": good[:-12] + b"\n",                  # no seal
        "6B0B0000000000A6": good[:2000] + b"\0" * 4096 + good[6096:],  # a page never written
        "6B0B0000000000A7": b"\0" * 4096 + good[4096:],          # the first page never written
    }
    put(hermod, "6B0B0000000000A0", good)
    # empty: created and nothing written, or an emptied file named ahead
    # (remove.c); it goes back to the pool under a new id, nothing logged
    empty = "6B0B0000000000A1"
    empty_ino = os.stat(put(hermod, empty, b"")).st_ino
    for qid, data in cases.items():
        put(hermod, qid, data.replace(b"6B0B0000000000A0", qid.encode()))
    # whole (the seal matches) but its envelope does not parse: corrupt, kept
    bad_env = b"id: 6B0B0000000000B1\narrival: 1.0\nsender: <a@b>\nrcpt: <c@d>\nleaf: 7 local <c@d>\n\n"
    put(hermod, "6B0B0000000000B1", sealed("6B0B0000000000B1", b"x\r\n", bad_env))
    fake = FakeLmtpd(hermod.lmtp_socket)
    try:
        hermod.start("queued")
        wait_for(lambda: "spool recovered" in hermod.log("queued"), 30, what="recovery")
        wait_for(lambda: fake.to("alice@example.test"), 30, what="the whole message")
        assert len(fake.msgs) == 1 and fake.msgs[0][1] == body
        log = hermod.log("queued")
        for qid in cases:
            assert "%s: incomplete (" % qid in log, qid
            assert not os.path.exists(hermod.path("spool", "queue", qid[-1], qid)), qid
        wait_for(lambda: empty_ino in pool(hermod).values(), 30,
                 what="the empty file back in the pool")
        assert empty not in pool(hermod) and empty not in log
        assert os.listdir(hermod.path("spool", "corrupt")) == ["6B0B0000000000B1"]
        wait_for(lambda: not listing(hermod), 30, what="queue empty")
    finally:
        fake.close()


def test_kill9_in_the_middle_of_data_leaves_nothing(hermod):
    """The file of a submission cut short by a crash sits in queue/ from
    its first byte; it was never acknowledged and the restart removes it."""
    prepare(hermod)
    fake = FakeLmtpd(hermod.lmtp_socket)
    try:
        hermod.start("queued")
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(10)
        s.connect(hermod.submit_socket)
        f = s.makefile("rwb")
        f.readline()
        f.write(b"LHLO t\r\nMAIL FROM:<sender@example.test>\r\n"
                b"RCPT TO:<alice@example.test>\r\nDATA\r\n")
        f.flush()
        for _ in range(6):      # LHLO (3 lines), MAIL, RCPT, 354
            f.readline()
        f.write(b"Subject: cut\r\n\r\n" + b"y" * 200000 + b"\r\n")   # no final dot
        f.flush()

        def files():    # empty ones are emptied files named ahead: no mail
            return [n for d in range(16)
                    for n in os.listdir(hermod.path("spool", "queue", "%X" % d))
                    if holds_bytes(hermod.path("spool", "queue", "%X" % d, n))]
        wait_for(lambda: files(), 10, what="the file being written")
        qid = files()[0]
        hermod.kill("queued")
        s.close()
        hermod.start("queued")
        wait_for(lambda: hermod.log("queued").count("spool recovered") >= 2, 30,
                 what="recovery")
        assert "%s: incomplete (" % qid in hermod.log("queued")
        assert not files()
        # and the queue works: a new message goes through
        _, after = lmtp_submit(hermod, ["alice@example.test"], b"Subject: next\r\n\r\nz\r\n")
        assert after[0][0] == 250
        wait_for(lambda: fake.to("alice@example.test"), 30, what="delivery")
        assert all(b"Subject: cut" not in d for _, d in fake.msgs)
    finally:
        fake.close()


def one_at_a_time(hermod, fake, n, between=None):
    """n messages from one submitter, each acknowledged before the next
    is sent; what queued's flush counters grew by."""
    before = stats(hermod)
    for i in range(n):
        _, after = lmtp_submit(hermod, ["alice@example.test"], b"Subject: %d\r\n\r\nx\r\n" % i)
        assert after[0][0] == 250
        if between is not None:
            between(i)
    wait_for(lambda: len(fake.msgs) == n and not listing(hermod), 30, what="deliveries")
    now = stats(hermod)
    return {k: int(now[k]) - int(before[k]) for k in ("fsyncs", "syncfs", "pool_syncfs")}


def test_one_flush_per_message(hermod):
    """One submitter, one message at a time, each delivered at once: one
    flush for the submission (data and directory entry together) and none
    for the delivery's state records (the file is removed right after).
    The syncfs calls made for the reuse pool alone are counted apart."""
    prepare(hermod)
    fake = FakeLmtpd(hermod.lmtp_socket)
    try:
        hermod.start("queued")
        n = 20
        d = one_at_a_time(hermod, fake, n)
        print("%d messages: %s" % (n, d))
        assert d["fsyncs"] - d["pool_syncfs"] <= n
    finally:
        fake.close()


def test_sync_thread_under_concurrent_submitters_loses_nothing(hermod):
    """40 submitters at once: the loop keeps taking messages while the sync
    thread flushes the previous batch; every acknowledged message is
    delivered exactly once, and batches are shared (fewer flushes than
    messages)."""
    import threading
    prepare(hermod)
    fake = FakeLmtpd(hermod.lmtp_socket)
    acked, errors = [], []
    try:
        hermod.start("queued")
        before = stats(hermod)

        def submitter(t):
            for i in range(15):
                mid = b"<c%d-%d@test>" % (t, i)
                try:
                    _, after = lmtp_submit(hermod, ["alice@example.test"],
                                           b"Message-Id: " + mid + b"\r\n\r\nx\r\n")
                except Exception as e:      # noqa: BLE001 (reported below)
                    errors.append(repr(e))
                    continue
                if after and after[0][0] == 250:
                    acked.append(mid)
        threads = [threading.Thread(target=submitter, args=(t,)) for t in range(40)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors[:3]
        assert len(acked) == 600
        wait_for(lambda: len(fake.msgs) >= 600 and not listing(hermod), 60, what="deliveries")
        got = sorted(d.split(b"\r\n")[0][len(b"Message-Id: "):] for _, d in fake.msgs)
        assert got == sorted(acked)             # none lost, none twice
        after = stats(hermod)
        flushes = int(after["fsyncs"]) - int(before["fsyncs"])
        passes = int(after["commit_passes"]) - int(before["commit_passes"])
        print("600 messages from 40 submitters: %d flushes, %d batches" % (flushes, passes))
        assert flushes < 600
    finally:
        fake.close()


# ---- reuse of finished queue files (queued/remove.c) -----------------------

def queue_files(h, empty):
    """{id: inode} of the files in queue/X/, the empty ones or the others."""
    out = {}
    for x in range(16):
        d = h.path("spool", "queue", "%X" % x)
        for name in os.listdir(d):
            try:
                st = os.stat(os.path.join(d, name))
            except FileNotFoundError:   # renamed meanwhile
                continue
            if (st.st_size == 0) == empty:
                out[name] = st.st_ino
    return out


def pool(h):
    """The reuse pool: emptied files named ahead in queue/ (remove.c)."""
    return queue_files(h, True)


def queue_inodes(h):
    """The messages' files."""
    return queue_files(h, False)


def test_finished_file_is_emptied_and_reused(hermod):
    """A delivered message's file is emptied and named ahead under a new
    id; the next message is given that id at MAIL and written into it
    (same inode, no new file), and what comes out is the new message's
    bytes only, though the old one was longer."""
    prepare(hermod)
    accept = {"on": True}
    fake = FakeLmtpd(hermod.lmtp_socket, rcpt={"alice@example.test": lambda a, n:
                                               "250 2.1.5 ok" if accept["on"] else
                                               "451 4.3.0 not now"})
    try:
        hermod.start("queued")
        old = b"Subject: long\r\n\r\n" + b"o" * 20000 + b"\r\n"
        _, after = lmtp_submit(hermod, ["alice@example.test"], old)
        old_id = after[0][1].split()[1].decode()
        wait_for(lambda: fake.to("alice@example.test"), 10, what="first delivery")
        wait_for(lambda: pool(hermod), 10, what="the file emptied and named ahead")
        (name, ino), = pool(hermod).items()
        assert name != old_id and not queue_inodes(hermod)
        # Given out once a syncfs that began after its renaming has
        # completed: with no message to make one, the pool's own, within
        # 50 ms. Deferred from now on, so the messages stay to be seen.
        wait_for(lambda: int(stats(hermod)["pool_syncfs"]) > 0, 10, what="the pool's syncfs")
        accept["on"] = False
        ids = []
        for i in range(2):
            _, after = lmtp_submit(hermod, ["alice@example.test"],
                                   b"Subject: new %d\r\n\r\nshort\r\n" % i)
            assert after[0][0] == 250
            ids.append(after[0][1].split()[1].decode())
        wait_for(lambda: "status=deferred" in hermod.log("queued"), 10, what="deferral")
        inodes = queue_inodes(hermod)
        assert sorted(inodes) == sorted(ids)
        assert ids[0] == name and inodes[name] == ino, "the first message is not in the reused file"
        accept["on"] = True
        assert control(hermod, "flush").startswith("+OK")
        wait_for(lambda: len(fake.to("alice@example.test")) == 3, 20, what="the queued two")
        got = sorted(d for _, d in fake.msgs[1:])
        for i, d in enumerate(got):
            assert d == b"Subject: new %d\r\n\r\nshort\r\n" % i, d[-200:]
    finally:
        fake.close()


def test_lone_message_in_a_file_named_ahead_is_one_fsync(hermod):
    """A message given a file named ahead at MAIL adds no directory entry:
    alone in its pass, it is committed by an fsync of its file, not by a
    syncfs of the whole file system. Messages one at a time: each but the
    first finds its predecessor's file ready."""
    prepare(hermod)
    fake = FakeLmtpd(hermod.lmtp_socket)
    try:
        hermod.start("queued")
        n = 8

        def settle(i):
            wait_for(lambda: len(fake.msgs) == i + 1, 10, what="delivery")
            wait_for(lambda: pool(hermod), 10, what="the file back in the pool")
            time.sleep(0.2)     # the pool's syncfs comes within 50 ms
        d = one_at_a_time(hermod, fake, n, settle)
        lone_fsyncs = d["fsyncs"] - d["syncfs"]
        print(d)
        assert lone_fsyncs >= n - 2, d
        assert d["syncfs"] - d["pool_syncfs"] <= 2, d
        assert [m for _, m in fake.msgs] == [b"Subject: %d\r\n\r\nx\r\n" % i for i in range(n)]
    finally:
        fake.close()


def test_transaction_without_data_gives_its_file_back(hermod):
    """The id given at MAIL names a file of the pool; a transaction reset
    before DATA sends it back, named again under a new id: no id is ever
    given to two transactions."""
    prepare(hermod)
    fake = FakeLmtpd(hermod.lmtp_socket)
    try:
        hermod.start("queued")
        lmtp_submit(hermod, ["alice@example.test"], b"Subject: first\r\n\r\nx\r\n")
        wait_for(lambda: fake.msgs and pool(hermod), 10, what="the file in the pool")
        wait_for(lambda: int(stats(hermod)["pool_syncfs"]) > 0, 10, what="the pool's syncfs")
        (name, ino), = pool(hermod).items()
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(10)
        s.connect(hermod.submit_socket)
        f = s.makefile("rwb")
        f.readline()
        f.write(b"LHLO t\r\nMAIL FROM:<sender@example.test>\r\n")
        f.flush()
        while not f.readline().startswith(b"250 "):    # LHLO's last line
            pass
        given = f.readline().split()[-1].decode()
        assert given == name
        f.write(b"RSET\r\nQUIT\r\n")
        f.flush()
        assert f.readline().startswith(b"250")
        s.close()
        wait_for(lambda: ino in pool(hermod).values() and name not in pool(hermod), 10,
                 what="the file named again")
        _, after = lmtp_submit(hermod, ["alice@example.test"], b"Subject: second\r\n\r\ny\r\n")
        assert after[0][1].split()[1].decode() != name
        wait_for(lambda: len(fake.msgs) == 2, 10, what="delivery")
        assert "Subject: second" in fake.msgs[1][1].decode()
    finally:
        fake.close()


def test_finished_message_under_another_id_is_emptied(hermod):
    """A crash can keep the renaming of an emptied file and lose its
    truncation: at start a finished message sits under another id than
    its own. It is emptied into the pool, never delivered; an unfinished
    one under another id still goes to corrupt/."""
    prepare(hermod)
    done = sealed("6B0B0000000000D0", b"Subject: done\r\n\r\nx\r\n") + \
        b"r 0 s 2.0.0 %d - delivered\n" % int(time.time())
    ino = os.stat(put(hermod, "6B0B0000000000D1", done)).st_ino
    put(hermod, "6B0B0000000000D3", sealed("6B0B0000000000D2", b"Subject: not done\r\n\r\ny\r\n"))
    fake = FakeLmtpd(hermod.lmtp_socket)
    try:
        hermod.start("queued")
        wait_for(lambda: "spool recovered" in hermod.log("queued"), 30, what="recovery")
        wait_for(lambda: ino in pool(hermod).values(), 10, what="the finished file emptied")
        log = hermod.log("queued")
        assert "6B0B0000000000D1: finished message 6B0B0000000000D0 found" in log
        assert os.listdir(hermod.path("spool", "corrupt")) == ["6B0B0000000000D3"]
        time.sleep(0.5)
        assert not fake.msgs
    finally:
        fake.close()


def test_free_files_at_start_are_emptied_never_delivered(hermod):
    """free/ at start (where earlier versions kept emptied files; a crash
    can keep a rename there and lose the truncation before it): every
    file is emptied again and named ahead in queue/, none is read as a
    message, and at most 1,000 are kept."""
    prepare(hermod)
    os.makedirs(hermod.path("spool", "free"), exist_ok=True)
    whole = sealed("6B0B0000000000F0", b"Subject: in free\r\n\r\nx\r\n")
    names = ["6B0B%012X" % i for i in range(1005)]
    for n in names:
        with open(hermod.path("spool", "free", n), "wb") as f:
            f.write(whole.replace(b"6B0B0000000000F0", n.encode()))
    with open(hermod.path("spool", "free", "junk"), "wb") as f:
        f.write(b"not a queue id")
    # a name in free/ for a file that has another (here in corrupt/):
    # unlinked from free/, never emptied
    os.makedirs(hermod.path("spool", "corrupt"), exist_ok=True)
    with open(hermod.path("spool", "corrupt", "keep"), "wb") as f:
        f.write(b"kept as it is")
    linked = hermod.path("spool", "free", "6B0B00000000FFFF")
    os.link(hermod.path("spool", "corrupt", "keep"), linked)
    put(hermod, "6B0B0000000000A0", sealed("6B0B0000000000A0", b"Subject: real\r\n\r\ny\r\n"))
    fake = FakeLmtpd(hermod.lmtp_socket)
    try:
        hermod.start("queued")
        wait_for(lambda: fake.msgs, 10, what="the queued message")
        wait_for(lambda: not os.listdir(hermod.path("spool", "free")) and
                 len(pool(hermod)) == 1000, 20, what="free/ emptied into a pool of 1,000")
        time.sleep(0.5)
        assert [d for _, d in fake.msgs] == [b"Subject: real\r\n\r\ny\r\n"]
        assert not set(names) & set(pool(hermod)), "named again under new ids"
        assert not queue_inodes(hermod)
        with open(hermod.path("spool", "corrupt", "keep"), "rb") as f:
            assert f.read() == b"kept as it is"
    finally:
        fake.close()
