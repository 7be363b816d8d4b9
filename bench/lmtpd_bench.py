#!/usr/bin/python3
"""lmtpd benchmark (not a test): Maildir deliveries per second with 1 and
10 concurrent LMTP sessions, next to the disk's fsync rate; the time of
an mbox append into a 1 GB mbox next to an empty one.

    /usr/bin/python3 bench/lmtpd_bench.py [--seconds 5] [--gb 1]

Uses the e2e fixture (tests/e2e/hermod.py) for a private installation
under /tmp and the binaries in $HERMOD_BIN or bin/. Prints a Markdown
table for bench/RESULTS.md.
"""

import argparse
import os
import sys
import threading
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests", "e2e"))

from hermod import Hermod  # noqa: E402
from test_lmtpd_client import Client  # noqa: E402

MSG = (b"From: bench@example.org\r\nSubject: bench\r\n\r\n" + b"body line\r\n" * 40)


def fsync_rate(directory, seconds):
    """Create, write 4 KiB, fsync file, rename, fsync directory: the
    minimum work of one Maildir delivery, per second."""
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    n, t0 = 0, time.monotonic()
    while time.monotonic() - t0 < seconds:
        p = os.path.join(directory, "f%d" % n)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, b"x" * 4096)
        os.fsync(fd)
        os.close(fd)
        os.rename(p, p + ".done")
        os.fsync(dfd)
        n += 1
    os.close(dfd)
    for f in os.listdir(directory):
        os.unlink(os.path.join(directory, f))
    return n / (time.monotonic() - t0)


def lmtpd_cpu(h):
    """CPU seconds of lmtpd, its master and workers so far: utime+stime
    of each live process in lmtpd's tree plus cutime+cstime (the workers
    already reaped)."""
    top = h.procs["lmtpd"].pid
    parent, times = {}, {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            f = open("/proc/%s/stat" % d).read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(d)] = int(f[1])
        times[int(d)] = sum(int(x) for x in f[11:15])
    total = 0
    for pid, t in times.items():
        p = pid
        while p > 1 and p != top:
            p = parent.get(p, 0)
        if p == top:
            total += t
    return total / os.sysconf("SC_CLK_TCK")


def deliveries_per_second(h, sessions, seconds, rcpt):
    """(deliveries per second, lmtpd CPU ms per delivery)"""
    cpu0 = lmtpd_cpu(h)
    counts = [0] * sessions
    stop = time.monotonic() + seconds
    errors = []

    def worker(i):
        try:
            with Client(h.lmtp_socket, timeout=60) as c:
                while time.monotonic() < stop:
                    _, dr = c.transaction("bench@example.org", [rcpt], MSG)
                    if dr[0][0] != 250:
                        errors.append(dr)
                        return
                    counts[i] += 1
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        bad = [l for l in h.log("lmtpd").splitlines() if "status=sent" not in l][-10:]
        raise RuntimeError("%s\n%s" % (errors[:3], "\n".join(bad)))
    n = sum(counts)
    return n / (time.monotonic() - t0), (lmtpd_cpu(h) - cpu0) * 1000 / max(n, 1)


def fill(path, size):
    """An mbox of `size` bytes of real messages."""
    block = b"".join(b"From bench@example.org Thu Jan  1 00:00:00 2026\n" +
                     MSG.replace(b"\r\n", b"\n") + b"\n" for _ in range(1000))
    with open(path, "wb") as f:
        written = 0
        while written < size:
            f.write(block)
            written += len(block)
        f.flush()
        os.fsync(f.fileno())


def append_ms(h, rcpt, n=50):
    with Client(h.lmtp_socket, timeout=60) as c:
        t0 = time.monotonic()
        for _ in range(n):
            _, dr = c.transaction("bench@example.org", [rcpt], MSG)
            assert dr[0][0] == 250, dr
        return (time.monotonic() - t0) / n * 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--gb", type=float, default=1)
    ap.add_argument("--tmpfs", action="store_true",
                    help="Maildir on /dev/shm too: fsync is free, what is left is lmtpd's own cost")
    a = ap.parse_args()
    h = Hermod()
    shm = None
    try:
        h.add_user("alice")
        if a.tmpfs:
            import tempfile
            shm = tempfile.mkdtemp(prefix="hermod-bench-", dir="/dev/shm")
            os.chmod(shm, 0o755)
            os.chown(shm, h.uid, h.gid)
            h.add_user("shm", mailbox=shm + "/Maildir/")
        h.add_user("empty", mailbox=h.path("mail/empty.mbox"))
        h.add_user("big", mailbox=h.path("mail/big.mbox"))
        h.newaliases()
        scratch = h.path("mail/fsync")
        os.mkdir(scratch)
        rate = fsync_rate(scratch, a.seconds)
        h.start("lmtpd")
        one = deliveries_per_second(h, 1, a.seconds, "alice@example.test")
        ten = deliveries_per_second(h, 10, a.seconds, "alice@example.test")
        fill(h.path("mail/big.mbox"), int(a.gb * (1 << 30)))
        os.chown(h.path("mail/big.mbox"), h.uid, h.gid)
        empty_ms = append_ms(h, "empty@example.test")
        big_ms = append_ms(h, "big@example.test")
        if a.tmpfs:
            shm1 = deliveries_per_second(h, 1, a.seconds, "shm@example.test")
            shm10 = deliveries_per_second(h, 10, a.seconds, "shm@example.test")
        print("| measure | result |")
        print("|---|---|")
        print("| disk: create+write 4 KiB+fsync+rename+fsync dir, per second | %.0f |" % rate)
        print("| Maildir deliveries/s, 1 LMTP session | %.0f |" % one[0])
        print("| Maildir deliveries/s, 10 LMTP sessions | %.0f |" % ten[0])
        print("| lmtpd CPU ms per delivery, 1 / 10 sessions | %.2f / %.2f |" % (one[1], ten[1]))
        print("| mbox append, empty mbox (ms per message) | %.2f |" % empty_ms)
        print("| mbox append, %.1f GB mbox (ms per message) | %.2f |" % (a.gb, big_ms))
        if a.tmpfs:
            print("| Maildir on tmpfs (no disk), 1 session, deliveries/s | %.0f |" % shm1[0])
            print("| Maildir on tmpfs (no disk), 10 sessions, deliveries/s | %.0f |" % shm10[0])
            print("| lmtpd CPU ms per delivery on tmpfs, 1 / 10 sessions | %.2f / %.2f |"
                  % (shm1[1], shm10[1]))
    finally:
        h.close()
        if shm:
            import shutil
            shutil.rmtree(shm, ignore_errors=True)


if __name__ == "__main__":
    main()
