#!/usr/bin/python3
"""queued benchmark (not a test): prints a Markdown section for
bench/RESULTS.md.

  1. the disk's own rate on the spool's file system: one 2 KiB file
     written, fsync'ed, renamed and its directory fsync'ed, in a loop (what
     one unbatched submission costs);
  2. submissions per second over the LMTP submit socket with 1, 10 and 100
     concurrent submitters (asyncio, one connection each, one message per
     transaction), with queued's own fsync count (control `stats`); no lmtpd,
     so nothing else writes;
  3. the cost of scheduling one delivery with 1,000 and with 100,000
     deferred messages in the queue (control `stats` sched_ns_avg: heap
     insertion plus removal per attempt), and the submit-to-delivery
     latency through a minimal LMTP sink;
  4. start-up recovery time of 100,000 queued messages.

Usage: /usr/bin/python3 bench/queued_bench.py [SECONDS_PER_RUN]
Binaries from $HERMOD_BIN or bin/.
"""

import asyncio
import os
import re
import socket
import sys
import threading
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests", "e2e"))

from hermod import Hermod, wait_for  # noqa: E402
from test_queued import control, stats  # noqa: E402
from test_queued_recovery import write_spool  # noqa: E402

DURATION = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
BODY = b"Subject: bench\r\n\r\n" + b"x" * 2000 + b"\r\n"


def disk_rate(d, seconds):
    data = b"x" * 2048
    sub = os.path.join(d, "q")
    os.makedirs(sub, exist_ok=True)
    dfd = os.open(sub, os.O_RDONLY | os.O_DIRECTORY)
    n, t0 = 0, time.monotonic()
    while time.monotonic() - t0 < seconds:
        tmp = os.path.join(d, "t%d" % n)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        os.rename(tmp, os.path.join(sub, "m%d" % n))
        os.fsync(dfd)
        n += 1
    el = time.monotonic() - t0
    os.close(dfd)
    for f in os.listdir(sub):
        os.unlink(os.path.join(sub, f))
    return n / el


async def lmtp_client(path, deadline, counts):
    r, w = await asyncio.open_unix_connection(path)

    async def reply():
        while True:
            line = await r.readline()
            if not line or line[3:4] != b"-":
                return line
    await reply()
    w.write(b"LHLO bench\r\n")
    await reply()
    data = BODY + b".\r\n"
    while time.monotonic() < deadline:
        w.write(b"MAIL FROM:<bench@example.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
        await reply(), await reply(), await reply()
        w.write(data)
        line = await reply()
        if line.startswith(b"250"):
            counts[0] += 1
    w.write(b"QUIT\r\n")
    await w.drain()
    w.close()


def submissions(h, conc, seconds):
    before = stats(h)
    counts = [0]

    async def run():
        deadline = time.monotonic() + seconds
        await asyncio.gather(*(lmtp_client(h.submit_socket, deadline, counts)
                               for _ in range(conc)))
    t0 = time.monotonic()
    asyncio.run(run())
    el = time.monotonic() - t0
    after = stats(h)
    d = {k: int(after[k]) - int(before[k]) for k in ("fsyncs", "commit_passes", "syncfs")}
    return counts[0] / el, counts[0], d


class Sink(threading.Thread):
    """Minimal LMTP sink standing in for lmtpd: counts deliveries."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.n = 0
        self.s = socket.socket(socket.AF_UNIX)
        self.s.bind(path)
        os.chmod(path, 0o666)
        self.s.listen(64)
        self.start()

    def run(self):
        while True:
            try:
                c, _ = self.s.accept()
            except OSError:
                return
            threading.Thread(target=self.session, args=(c,), daemon=True).start()

    def session(self, c):
        f = c.makefile("rwb")
        f.write(b"220 sink\r\n")
        f.flush()
        nr = 0
        for line in f:
            v = line[:4].upper()
            if v == b"LHLO":
                f.write(b"250-sink\r\n250 PIPELINING\r\n")
            elif v == b"MAIL":
                nr = 0
                f.write(b"250 ok\r\n")
            elif v == b"RCPT":
                nr += 1
                f.write(b"250 ok\r\n")
            elif v == b"DATA":
                f.write(b"354 go\r\n")
                f.flush()
                for x in f:
                    if x == b".\r\n":
                        break
                f.write(b"250 2.0.0 ok\r\n" * nr)
                self.n += nr
            elif v == b"QUIT":
                f.write(b"221 bye\r\n")
                f.flush()
                return
            else:
                f.write(b"250 ok\r\n")
            f.flush()


def deferred_spool(h, n):
    """n messages already tried once (deferred an hour ago): not due."""
    write_spool(h, n)
    rec = "r 0 d 4.4.1 %d - lmtpd was down\n" % int(time.time())
    for d in range(16):
        sub = h.path("spool", "queue", "%X" % d)
        for f in os.listdir(sub):
            with open(os.path.join(sub, f), "a") as fp:
                fp.write(rec)


def scheduling(n_deferred, n_new=300):
    h = Hermod()
    try:
        h.write_aliases("postmaster: alice\n")
        h.conf(minimal_backoff_time="1h", maximal_backoff_time="2h")
        h.newaliases()
        if n_deferred:
            deferred_spool(h, n_deferred)
        sink = Sink(h.lmtp_socket)
        h.start("queued")
        wait_for(lambda: "spool recovered" in h.log("queued"), 120, what="recovery")
        m = re.search(r"spool recovered: (\d+) messages.*, ([\d.]+)s", h.log("queued"))
        os.sync()       # the spool we wrote: not part of the measure
        s0 = stats(h)
        t0 = time.monotonic()

        async def run():
            deadline = time.monotonic() + 3600
            await asyncio.gather(*(one(i) for i in range(10)))

        async def one(i):
            r, w = await asyncio.open_unix_connection(h.submit_socket)
            await r.readline()
            w.write(b"LHLO b\r\n")
            while (await r.readline())[3:4] == b"-":
                pass
            for _ in range(n_new // 10):
                w.write(b"MAIL FROM:<b@example.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
                for _ in range(3):
                    await r.readline()
                w.write(BODY + b".\r\n")
                await r.readline()
            w.close()
        asyncio.run(run())
        wait_for(lambda: sink.n >= n_new, 120, what="deliveries")
        el = time.monotonic() - t0
        s1 = stats(h)
        ops = int(s1["sched_ops"]) - int(s0["sched_ops"])
        ns = float(s1["sched_ns_total"]) - float(s0["sched_ns_total"])
        return {"queue": int(s1["messages"]), "sched_ns": ns / ops if ops else 0,
                "ops": ops, "deliver_per_s": n_new / el,
                "recovery": (m.group(1), m.group(2)) if m else None}
    finally:
        h.close()


def main():
    print("## queued\n")
    h = Hermod()
    try:
        rate = disk_rate(h.path("spool"), DURATION)
        fs = os.popen("df -T %s | tail -1" % h.path("spool")).read().split()
        print("Spool file system: %s (%s). Disk alone: %.0f unbatched commits/s "
              "(write 2 KiB, fsync, rename, fsync dir).\n" % (fs[1] if len(fs) > 1 else "?",
                                                               fs[-1] if fs else "?", rate))
        h.write_aliases("postmaster: alice\n")
        h.conf(minimal_backoff_time="1h", maximal_backoff_time="2h")
        h.newaliases()
        h.start("queued")
        print("| submitters | msgs/s | msgs | fsync calls | group commits | msgs per fsync | x disk |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for conc in (1, 10, 100):
            mps, n, d = submissions(h, conc, DURATION)
            print("| %d | %.0f | %d | %d | %d | %.1f | %.1f |" % (
                conc, mps, n, d["fsyncs"], d["commit_passes"],
                n / d["fsyncs"] if d["fsyncs"] else 0, mps / rate))
    finally:
        h.close()
    print("\nScheduling (300 new messages through a minimal LMTP sink, 10 submitters):\n")
    print("| deferred in queue | ns per heap operation (put or take) | deliveries/s |")
    print("|---:|---:|---:|")
    rec = None
    for n in (1000, 100000):
        r = scheduling(n)
        print("| %d | %.0f | %.0f |" % (n, r["sched_ns"], r["deliver_per_s"]))
        rec = r["recovery"]
    if rec:
        print("\nStart-up recovery of %s queued messages: %s s." % rec)


if __name__ == "__main__":
    main()
