#!/usr/bin/python3
"""smtpd benchmark (not a test): prints a Markdown section for
bench/RESULTS.md.

  1. memory: smtpd's resident size with 0 and with N (default 10,000)
     concurrent idle sessions (each greeted and past EHLO), and the
     per-session cost;
  2. sessions per second: clients that connect, read the greeting, send
     EHLO and QUIT, at 1, 10 and 100 concurrent clients;
  3. messages per second accepted (250 after DATA, i.e. on queued's disk):
     one connection per client, transactions back to back (MAIL, RCPT,
     DATA with a 2 KB message), at 1, 10 and 100 concurrent clients.
     lmtpd is not running, so queued only stores (its group commit and
     the disk's fsync rate bound this figure).

A Python asyncio load generator stands in for Postfix's smtp-source until
the benchmarks issue adds Postfix side by side. Binaries from $HERMOD_BIN
or bin/.

Usage: /usr/bin/python3 bench/smtpd_bench.py [SECONDS_PER_RUN] [IDLE_SESSIONS]
"""

import asyncio
import os
import resource
import socket
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests", "e2e"))

from hermod import Hermod  # noqa: E402

DURATION = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
IDLE = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
BODY = b"Subject: bench\r\n\r\n" + (b"x" * 78 + b"\r\n") * 25


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def raise_nofile(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n if hard == resource.RLIM_INFINITY else min(n, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def idle_memory(h, n):
    pid = h.procs["smtpd"].pid
    before = rss_kb(pid)
    socks = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", h.smtp_port), timeout=30)
        socks.append(s)
    for s in socks:
        s.recv(512)
        s.sendall(b"EHLO idle.example\r\n")
    for s in socks:
        got = b""
        while not got.endswith(b"CHUNKING\r\n"):
            got += s.recv(4096)
    time.sleep(1)
    after = rss_kb(pid)
    for s in socks:
        s.close()
    return before, after


async def reply(r):
    while True:
        line = await r.readline()
        if not line or line[3:4] != b"-":
            return line


async def session_loop(port, deadline, counts):
    while time.monotonic() < deadline:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        await reply(r)
        w.write(b"EHLO bench\r\n")
        await reply(r)
        w.write(b"QUIT\r\n")
        await reply(r)
        w.close()
        await w.wait_closed()
        counts[0] += 1


async def message_loop(port, deadline, counts):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    await reply(r)
    w.write(b"EHLO bench\r\n")
    await reply(r)
    while time.monotonic() < deadline:
        w.write(b"MAIL FROM:<bench@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
        a, b, c = await reply(r), await reply(r), await reply(r)
        if not c.startswith(b"354"):
            raise RuntimeError("no 354: %r %r %r" % (a, b, c))
        w.write(BODY + b".\r\n")
        line = await reply(r)
        if not line.startswith(b"250"):
            raise RuntimeError("not accepted: %r" % line)
        counts[0] += 1
    w.write(b"QUIT\r\n")
    await reply(r)
    w.close()


async def run(fn, port, clients, seconds):
    counts = [0]
    deadline = time.monotonic() + seconds
    t0 = time.monotonic()
    await asyncio.gather(*(fn(port, deadline, counts) for _ in range(clients)))
    return counts[0] / (time.monotonic() - t0)


def main():
    have = raise_nofile(IDLE + 1000)
    idle = min(IDLE, have - 200)
    h = Hermod()
    try:
        h.add_user("alice")
        h.conf(smtpd_max_connections=idle + 1000)
        h.newaliases()
        h.start("queued", "smtpd")
        before, after = idle_memory(h, idle)
        rows = [("smtpd RSS, no session", "%.1f MB" % (before / 1024)),
                ("smtpd RSS, %d idle sessions (after EHLO)" % idle, "%.1f MB" % (after / 1024)),
                ("per idle session", "%.2f KB" % ((after - before) / idle))]
        for n in (1, 10, 100):
            rate = asyncio.run(run(session_loop, h.smtp_port, n, DURATION))
            rows.append(("sessions/s (connect, EHLO, QUIT), %d client%s" % (n, "s" if n > 1 else ""),
                         "%.0f" % rate))
        for n in (1, 10, 100):
            rate = asyncio.run(run(message_loop, h.smtp_port, n, DURATION))
            rows.append(("messages/s accepted (2 KB, on queued's disk), %d client%s"
                         % (n, "s" if n > 1 else ""), "%.0f" % rate))
        print("| measure | figure |\n|---|---|")
        for k, v in rows:
            print("| %s | %s |" % (k, v))
        print("\nsmtpd peak RSS: %.1f MB" % (rss_kb(h.procs["smtpd"].pid) / 1024))
    finally:
        h.close()


if __name__ == "__main__":
    main()
