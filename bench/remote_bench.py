#!/usr/bin/python3
"""Remote delivery benchmark (not a test): prints a Markdown section for
bench/RESULTS.md.

queued relays N messages, one recipient each, to D destination domains
whose MX records (the dnslib fixture, tests/e2e/dnsfix.py) all point at
one SMTP sink: aiosmtpd's discarding Sink handler in its own process on
127.0.0.2 (Postfix's smtp-sink is not installed here, so the side-by-side
run with Postfix is still to do). Messages are submitted by 8 concurrent
LMTP clients on queued's submit socket; the clock runs from the first
submission until queued has logged every remote delivery.

  1. all destinations answer;
  2. destination 0 accepts connections and never speaks (its messages
     wait for smtp_helo_timeout): the time until the other D-1 have all
     their mail.

Usage: /usr/bin/python3 bench/remote_bench.py [MESSAGES [DOMAINS]]
Binaries from $HERMOD_BIN or bin/.
"""

import os
import smtplib
import subprocess
import sys
import threading
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests", "e2e"))

from dnsfix import FakeDNS  # noqa: E402
from hermod import Hermod, can_connect, wait_for  # noqa: E402
from sinkfix import Hang, shared_port  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
D = int(sys.argv[2]) if len(sys.argv) > 2 else 100
BODY = b"Subject: bench\r\n\r\n" + (b"x" * 70 + b"\r\n") * 28   # 2 KB
SUBMITTERS = 8


def submit_all(h, n, ndom):
    def worker(k):
        with smtplib.LMTP(h.submit_socket) as c:
            c.ehlo()
            for i in range(k, n, SUBMITTERS):
                c.mail("bench@example.test")
                c.rcpt("u%d@d%d.example" % (i, i % ndom))
                code, msg = c.data(BODY)
                assert code == 250, msg
    ts = [threading.Thread(target=worker, args=(k,)) for k in range(SUBMITTERS)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def run(hang):
    h = Hermod()
    dns = FakeDNS()
    port = shared_port(["127.0.0.2", "127.0.0.4"])
    sink = subprocess.Popen([sys.executable, "-m", "aiosmtpd", "-n", "-c",
                             "aiosmtpd.handlers.Sink", "-l", "127.0.0.2:%d" % port],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    hung = Hang("127.0.0.4", port) if hang else None
    try:
        wait_for(lambda: can_connect(("127.0.0.2", port)), 10, what="sink")
        for d in range(D):
            dns.add("d%d.example" % d, "MX", "10 mx.d%d.example." % d)
            dns.add("mx.d%d.example" % d, "A", "127.0.0.4" if hang and d == 0 else "127.0.0.2")
        h.conf(dns_servers=dns.spec, smtp_port=port, smtp_tls_security_level="none",
               smtp_helo_timeout="300s", log_level="info")
        h.start("queued")
        want = N - (len(range(0, N, D)) if hang else 0)
        t0 = time.monotonic()
        submit_all(h, N, D)
        t1 = time.monotonic()
        wait_for(lambda: h.log("queued").count("status=sent") >= want, 600, interval=0.25,
                 what="%d deliveries" % want)
        t2 = time.monotonic()
        return t1 - t0, t2 - t0, want
    finally:
        h.close()
        if hung:
            hung.close()
        sink.terminate()
        sink.wait(10)
        dns.close()


def main():
    print("\n## Remote delivery (queued -> SMTP sink), %d messages, %d domains\n" % (N, D))
    print("| run | submitted in | all delivered after | delivered | msgs/s |")
    print("|---|---|---|---|---|")
    for name, hang in (("all destinations up", False),
                       ("destination 0 hangs", True)):
        sub, done, n = run(hang)
        print("| %s | %.1f s | %.1f s | %d | %.0f |" % (name, sub, done, n, n / done))


if __name__ == "__main__":
    main()
