"""queued crash and start-up recovery: kill -9 under a load of concurrent
submissions (every acknowledged message delivered, duplicates counted,
zero losses), a spool of 10,000 messages recovered in bounded time, a
corrupt queue file moved aside, SIGTERM keeping the queue."""

import os
import re
import smtplib
import threading
import time

from hermod import wait_for
from test_queued import FakeLmtpd, control, listing, lmtp_submit, prepare

RECOVERY_10K_MAX = 30.0     # seconds, generous for sanitizer builds


def submitter(h, n, tag, acked, stop):
    """Submit up to n messages, recording the Message-Id of each one that
    got its 250 after DATA."""
    for i in range(n):
        if stop.is_set():
            return
        mid = "<%s-%d@test>" % (tag, i)
        try:
            _, after = lmtp_submit(h, ["alice@example.test"],
                                   b"Message-Id: " + mid.encode() + b"\r\nSubject: load\r\n\r\nx\r\n")
        except (OSError, smtplib.SMTPException, AssertionError):
            continue            # queued died under us: not acknowledged
        if after and after[0][0] == 250:
            acked.append(mid)


def test_kill9_under_load_loses_nothing(hermod):
    prepare(hermod)
    fake = FakeLmtpd(hermod.lmtp_socket)
    try:
        hermod.start("queued")
        acked, stop = [], threading.Event()
        threads = [threading.Thread(target=submitter, args=(hermod, 200, "t%d" % t, acked, stop))
                   for t in range(8)]
        for t in threads:
            t.start()
        wait_for(lambda: len(acked) >= 100, 30, what="some submissions")
        hermod.kill("queued")
        stop.set()
        for t in threads:
            t.join(30)
        n_acked = len(acked)
        hermod.start("queued")
        wait_for(lambda: not listing(hermod), 60, what="queue drained after restart")
        got = {}
        for rcpts, data in fake.msgs:
            m = re.search(rb"Message-Id: (<[^>]*>)", data)
            if m:
                got[m.group(1).decode()] = got.get(m.group(1).decode(), 0) + 1
        lost = [m for m in acked if m not in got]
        dups = sum(c - 1 for c in got.values() if c > 1)
        print("acknowledged %d, delivered %d distinct, %d duplicates" % (n_acked, len(got), dups))
        assert not lost, "lost %d acknowledged messages" % len(lost)
        assert "spool recovered" in hermod.log("queued")
    finally:
        fake.close()


QF = ("HERMOD-QUEUE 1\nid: {id}\narrival: {t}.000000\nsize: {size:015d}\n"
      "sender: <sender@example.test>\nrcpt: <alice@example.test>\n"
      "leaf: 0 local <alice@example.test>\n\n{body}")


def write_spool(h, n, nrcpt=1, deferred=False):
    """n queue files written straight into the spool (the format of
    hermod-queue(5)), as a previous run would have left them, each to
    alice and nrcpt - 1 others; deferred: each recipient tried before, so
    none is due for an hour or so."""
    t = int(time.time())
    body = "Subject: recovered\r\n\r\nx\r\n"
    more = "".join("rcpt: <r%d@example.test>\n" % i for i in range(1, nrcpt))
    more += "".join("leaf: %d local <r%d@example.test>\n" % (i, i) for i in range(1, nrcpt))
    log = "".join("r %d d 4.4.1 %d - lmtpd was down\n" % (i, t) for i in range(nrcpt)) \
        if deferred else ""
    head = QF.replace("\n\n{body}", "\n" + more + "\n{body}")
    for d in range(16):
        os.makedirs(h.path("spool", "queue", "%X" % d), exist_ok=True)
    for i in range(n):
        qid = "%08X%05X%03X" % (t, i // 4096, i % 4096)
        with open(h.path("spool", "queue", qid[-1], qid), "w") as f:
            f.write(head.format(id=qid, t=t, size=len(body), body=body) + log)
    uid, gid = h.uid, h.gid
    for root, dirs, files in os.walk(h.path("spool")):
        for x in dirs + files:
            os.chown(os.path.join(root, x), uid, gid)


def test_recovery_of_10000_messages(hermod):
    prepare(hermod, minimal_backoff_time="1h", maximal_backoff_time="2h")
    write_spool(hermod, 10000)
    # leftovers of an unfinished submission: never acknowledged
    os.makedirs(hermod.path("spool", "incoming"), exist_ok=True)
    with open(hermod.path("spool", "incoming", "6B0B0000000000A1"), "w") as f:
        f.write("HERMOD-QUEUE 1\nid: 6B0B0000000000A1\n")
    for p in ("incoming", "incoming/6B0B0000000000A1"):
        os.chown(hermod.path("spool", p), hermod.uid, hermod.gid)
    t0 = time.monotonic()
    hermod.start("queued")      # the sockets are bound before the recovery
    pat = (r"spool recovered: (\d+) messages, (\d+) corrupt moved aside, "
           r"(\d+) unfinished removed, ([\d.]+)s")
    wait_for(lambda: re.search(pat, hermod.log("queued")), RECOVERY_10K_MAX, what="recovery")
    elapsed = time.monotonic() - t0
    m = re.search(pat, hermod.log("queued"))
    assert m.group(1) == "10000" and m.group(2) == "0" and m.group(3) == "1"
    print("recovered 10,000 messages in %ss (start-up %.2fs)" % (m.group(4), elapsed))
    assert float(m.group(4)) < RECOVERY_10K_MAX
    assert not os.listdir(hermod.path("spool", "incoming"))
    assert len(listing(hermod)) == 10000


def test_corrupt_file_moved_aside(hermod):
    prepare(hermod)
    write_spool(hermod, 2)
    bad = "6B0B00000000B00B"
    with open(hermod.path("spool", "queue", "B", bad), "w") as f:
        f.write("HERMOD-QUEUE 1\nid: 6B0B00000000B00B\nsize: 000000000009999\ngarbage\n\n")
    trunc = "6B0B00000000C00C"
    body = "Subject: cut\r\n\r\n"
    with open(hermod.path("spool", "queue", "C", trunc), "w") as f:
        f.write(QF.format(id=trunc, t=int(time.time()), size=1000, body=body))
    for p in (("B", bad), ("C", trunc)):
        os.chown(hermod.path("spool", "queue", *p), hermod.uid, hermod.gid)
    fake = FakeLmtpd(hermod.lmtp_socket)
    try:
        hermod.start("queued")
        wait_for(lambda: len(fake.to("alice@example.test")) == 2, 10, what="good messages")
        assert sorted(os.listdir(hermod.path("spool", "corrupt"))) == [bad, trunc]
        log = hermod.log("queued")
        assert "%s: corrupt queue file moved to corrupt/" % bad in log
        assert "%s: corrupt queue file moved to corrupt/: truncated" % trunc in log
        assert control(hermod, "stats").startswith("+OK")
    finally:
        fake.close()


def test_sigterm_keeps_the_queue_and_restart_delivers(hermod):
    prepare(hermod)
    hermod.start("queued")
    _, after = lmtp_submit(hermod, ["alice@example.test"], b"Subject: keep\r\n\r\nx\r\n")
    qid = after[0][1].split()[1].decode()
    assert hermod.stop("queued") == 0
    assert "stopping: 1 messages queued" in hermod.log("queued")
    fake = FakeLmtpd(hermod.lmtp_socket)
    try:
        hermod.start("queued")
        wait_for(lambda: fake.to("alice@example.test"), 10, what="delivery after restart")
        wait_for(lambda: "%s: removed" % qid in hermod.log("queued"), 10, what="removal")
    finally:
        fake.close()


def test_finished_file_left_behind_is_removed_not_delivered(hermod):
    """queued unlinks finished files on a thread of its own, after their
    last state record: if it dies in between, the file is whole and says
    every recipient is done. The next start removes it, delivers nothing."""
    prepare(hermod)
    hermod.start("queued")          # no lmtpd: the message waits
    _, after = lmtp_submit(hermod, ["alice@example.test"], b"Subject: done\r\n\r\nx\r\n")
    qid = after[0][1].split()[1].decode()
    wait_for(lambda: "%s: to=<alice@example.test>" % qid in hermod.log("queued"), 20,
             what="the deferral")
    assert hermod.stop("queued") == 0
    path = hermod.path("spool", "queue", qid[-1], qid)
    with open(path, "ab") as f:     # what the delivery would have recorded
        f.write(b"r 0 s 2.0.0 %d lmtpd 250+202.0.0+20ok\n" % int(time.time()))
    fake = FakeLmtpd(hermod.lmtp_socket)
    try:
        hermod.start("queued")
        wait_for(lambda: "%s: removed" % qid in hermod.log("queued"), 20, what="removal")
        assert hermod.stop("queued") == 0
        assert not os.path.exists(path)
        assert fake.to("alice@example.test") == []
    finally:
        fake.close()


def test_a_failed_removal_is_logged_and_left_for_the_next_start(hermod):
    """The removal thread cannot log; a file it could not unlink is
    reported by the loop at its next removal, and stays for recovery."""
    prepare(hermod)
    hermod.start("queued")          # no lmtpd yet: the message waits
    _, after = lmtp_submit(hermod, ["alice@example.test"], b"Subject: stuck\r\n\r\nx\r\n")
    qid = after[0][1].split()[1].decode()
    qdir = hermod.path("spool", "queue", qid[-1])
    wait_for(lambda: "%s: to=<alice@example.test>" % qid in hermod.log("queued"), 20,
             what="the deferral")
    fake = FakeLmtpd(hermod.lmtp_socket)
    mode = os.stat(qdir).st_mode & 0o7777
    try:
        os.chmod(qdir, 0o555)       # the unlink fails (EACCES), as on a broken disk
        assert control(hermod, "flush").startswith("+OK")
        wait_for(lambda: "%s: removed" % qid in hermod.log("queued"), 20, what="removal")
        time.sleep(0.2)             # the thread's attempt
        os.chmod(qdir, mode)
        _, after = lmtp_submit(hermod, ["alice@example.test"], b"Subject: next\r\n\r\nx\r\n")
        assert after[0][0] == 250
        warning = "cannot remove 1 queue file(s), the last queue/%s/%s: Permission denied; " \
            "left for the next start" % (qid[-1], qid)
        wait_for(lambda: warning in hermod.log("queued"), 20, what="the warning")
        assert os.path.exists(os.path.join(qdir, qid))
        assert len(fake.to("alice@example.test")) == 2
    finally:
        os.chmod(qdir, mode)
        fake.close()


def test_many_due_messages_wait_without_holding_files(hermod):
    """3,000 recovered messages due at once, more than the process may
    open files (queued runs with its descriptor limit lowered to 512): they
    wait for the transport's limit before their files are opened, and all
    are delivered."""
    prepare(hermod)
    write_spool(hermod, 3000)
    fake = FakeLmtpd(hermod.lmtp_socket)
    try:
        import subprocess
        from hermod import BIN
        log = open(hermod.path("log", "queued.log"), "ab")
        p = subprocess.Popen(["/bin/sh", "-c", "ulimit -n 512 && exec %s -f -c %s" % (
            os.path.join(BIN, "queued"), hermod.conf_path)], stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        log.close()
        hermod.procs["queued"] = p
        wait_for(lambda: len(fake.msgs) >= 3000, 120, what="3,000 deliveries")
        wait_for(lambda: not listing(hermod), 30, what="queue empty")
        assert "Too many open files" not in hermod.log("queued")
    finally:
        fake.close()


def test_new_mail_flows_while_a_big_queue_is_read(hermod):
    """20,000 deferred messages of 30 recipients on disk: queued lists
    them, then reads them in slices from its loop, so a message submitted
    right after the start is acknowledged and delivered while the recovery
    is still going on; every old message is still recovered. (With one
    recipient each a fast machine had read them all, in 0.4 s, before the
    client's message came in.)"""
    n = 20000
    prepare(hermod, minimal_backoff_time="1h", maximal_backoff_time="2h")
    write_spool(hermod, n, nrcpt=30, deferred=True)
    # on disk, as after a restart: else the new message's group commit
    # (a syncfs) would first write out the 20,000 files made just now
    os.sync()
    fake = FakeLmtpd(hermod.lmtp_socket)
    try:
        t0 = time.monotonic()
        hermod.start("queued")
        _, after = lmtp_submit(hermod, ["alice@example.test"], b"Subject: new\r\n\r\nx\r\n")
        assert after[0][0] == 250
        qid = after[0][1].split()[1].decode()
        wait_for(lambda: fake.to("alice@example.test"), 20, what="the new message")
        took = time.monotonic() - t0
        wait_for(lambda: "spool recovered" in hermod.log("queued"), 60, what="recovery")
        log = hermod.log("queued")
        print("new message delivered %.2fs after the start; %s" % (
            took, re.search(r"spool recovered.*", log).group(0)))
        assert re.search(r"spool recovered: %d messages, 0 corrupt" % n, log)
        # delivered before the recovery ended, not after it
        assert log.index("%s: to=<alice@example.test>" % qid) < log.index("spool recovered")
        wait_for(lambda: len(listing(hermod)) == n, 30, what="all listed")
        assert len(fake.msgs) == 1
    finally:
        fake.close()
