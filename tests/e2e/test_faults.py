"""Fault injection end to end (issue 10, part 2): the whole chain
(SMTP clients -> smtpd -> queued -> lmtpd -> Maildir) under faults, with
the outcome read back from the Maildirs, the replies and the DSNs.

- kill -9 of smtpd, queued or lmtpd at random moments under a steady load
  of concurrent SMTP clients (one, two, alias-expanded and remote
  recipients), each daemon restarted: every message whose 250 a client
  saw is delivered to every recipient (zero losses), duplicates are
  counted and printed, no bounce, nothing left in the spool. A seeded RNG
  (the seed is printed; HERMOD_FAULT_SEED replays it). bench/faults.sh
  runs the long version through HERMOD_FAULT_SECONDS, _ROUNDS, _CLIENTS,
  _PACE (seconds between a client's messages), _VICTIMS (a comma list).
- the spool's filesystem full (a small tmpfs; needs root): 452 4.3.1 at
  DATA (no inode) or after the dot (no room), nothing accepted before is
  lost (even across a queued crash on the full spool), normal service
  once space returns; and the same under concurrent load.
- lmtpd down for a while: mail deferred with a reason, then delivered by
  `hermod flush` or by the retry timer.
- a remote MX down: deferred, then delivered once it is up; or bounced at
  the end of maximal_queue_lifetime with an RFC 3464 report.
- bounces under kill -9 of queued: every message refused by the remote
  server (550) comes back to its sender.

The daemons run straight from the fixture (not under `hermod start`
supervision): the test itself restarts what it killed, at once.
"""

import collections
import errno
import os
import random
import re
import smtplib
import subprocess
import threading
import time

import pytest

from hermod import IS_ROOT, holds_bytes, wait_for
from test_queued import report
from test_remote import env  # noqa: F401 (the fixture: DNS + sinks)

ID_RE = re.compile(rb"^X-Fault-Id: (\S+)", re.M | re.I)
SENDER = "sender@example.test"


def install(h, users=("alice",), **conf):
    for u in users:
        h.add_user(u)
    h.write_aliases("postmaster: alice\nteam: bob, carol\n")
    h.conf(**conf)
    h.newaliases()


def body(fid, size=400):
    """A message of about size bytes of body in 78-octet lines."""
    line = "x" * 76 + "\r\n"
    return ("From: <%s>\r\nTo: <alice@example.test>\r\nSubject: fault %s\r\n"
            "X-Fault-Id: %s\r\n\r\n%s" % (SENDER, fid, fid, line * max(1, size // len(line))))


def delivered_ids(h, user="alice", others=None):
    """Counter of X-Fault-Id values in user's Maildir (new/ and cur/);
    the names of messages without one are added to others (a list)."""
    c = collections.Counter()
    for sub in ("new", "cur"):
        d = h.path("mail", user, sub)
        if not os.path.isdir(d):
            continue
        for name in os.listdir(d):
            try:
                with open(os.path.join(d, name), "rb") as f:
                    m = ID_RE.search(f.read(8192))
            except FileNotFoundError:
                continue
            if m:
                c[m.group(1).decode()] += 1
            elif others is not None:
                others.append(name)
    return c


def spool_files(h):
    """Every regular file left under the spool's message directories,
    but the emptied ones queued keeps named ahead for reuse."""
    out = []
    for sub in ("incoming", "queue", "corrupt"):
        for root, _, files in os.walk(h.path("spool", sub)):
            out += [os.path.join(root, f) for f in files]
    queue = h.path("spool", "queue") + os.sep
    return [p for p in out if not p.startswith(queue) or holds_bytes(p)]


def queue_text(h):
    r = h.run("hermod", "queue", timeout=30)
    return r.stdout + r.stderr


def queue_empty(h):
    return "Mail queue is empty" in queue_text(h)


def smtp_send(h, fid, rcpt="alice@example.test", size=400, timeout=30):
    """One message over a fresh SMTP session: (stage, code, text) of the
    reply that ended the transaction, stage being "RCPT", "DATA" (instead
    of the 354) or "dot" (after the final dot)."""
    with smtplib.SMTP("127.0.0.1", h.smtp_port, timeout=timeout) as s:
        s.ehlo("client.example")
        code, text = s.mail(SENDER)
        assert code == 250, (code, text)
        code, text = s.rcpt(rcpt)
        if code != 250:
            return "RCPT", code, text.decode(errors="replace")
        code, text = s.docmd("DATA")
        if code != 354:
            return "DATA", code, text.decode(errors="replace")
        s.send(body(fid, size).encode() + b".\r\n")
        code, text = s.getreply()
        return "dot", code, text.decode(errors="replace")


def sent(h, fid, **kw):
    """smtp_send, which must end in a 250."""
    stage, code, text = smtp_send(h, fid, **kw)
    assert (stage, code) == ("dot", 250), (fid, stage, code, text)


# ---- 1. kill -9 under load ---------------------------------------------------

# The recipients of the n-th message of a client, in turn: one mailbox;
# two in one transaction; an alias of two (queued expands it); a local
# one and a remote one (an SMTP sink, "remote" below). Several recipients
# per message make queued record partial deliveries.
RCPTS = (["alice@example.test"], ["alice@example.test", "bob@example.test"],
         ["team@example.test"], ["carol@example.test", "dave@remote.example"])
MAILBOXES = (("alice",), ("alice", "bob"), ("bob", "carol"), ("carol", "remote"))


def mailboxes_of(fid):
    """fid is TAG-CLIENT-SEQ.KIND, KIND the index in RCPTS."""
    return MAILBOXES[int(fid.rsplit(".", 1)[1])]


class Load:
    """n client threads, each a stream of messages over one SMTP session
    at a time (a new one after any failure). A message counts as acked
    only when its 250 after the final dot was seen."""

    def __init__(self, h, n, tag="m", pace=0.0, rcpts=RCPTS, size=400):
        self.h, self.tag, self.pace, self.rcpts, self.size = h, tag, pace, rcpts, size
        self.acked, self.tried = [], 0
        self.refused = collections.Counter()    # reply code or exception name
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.client, args=(i,), daemon=True)
                        for i in range(n)]
        for t in self.threads:
            t.start()

    def count(self):
        with self.lock:
            return len(self.acked)

    def note(self, what):
        with self.lock:
            self.refused[what] += 1

    def client(self, i):
        seq = 0
        while not self.stop.is_set():
            try:
                s = smtplib.SMTP("127.0.0.1", self.h.smtp_port, timeout=30)
            except (OSError, smtplib.SMTPException) as e:
                self.note(type(e).__name__)
                time.sleep(0.1)
                continue
            try:
                while not self.stop.is_set():
                    kind = seq % len(self.rcpts)
                    fid = "%s-%d-%d.%d" % (self.tag, i, seq, kind)
                    seq += 1
                    with self.lock:
                        self.tried += 1
                    try:
                        s.sendmail(SENDER, self.rcpts[kind], body(fid, self.size))
                    except (smtplib.SMTPDataError, smtplib.SMTPRecipientsRefused,
                            smtplib.SMTPSenderRefused) as e:
                        self.note(getattr(e, "smtp_code", None) or
                                  min(c for c, _ in e.recipients.values()))
                        s.rset()
                        time.sleep(0.05)    # queued down: no busy loop
                        continue
                    with self.lock:
                        self.acked.append(fid)
                    if self.pace:
                        time.sleep(self.pace)
            except (OSError, smtplib.SMTPException) as e:
                self.note(type(e).__name__)
                time.sleep(0.05)
            finally:
                try:
                    s.close()
                except OSError:
                    pass

    def finish(self, timeout=60):
        self.stop.set()
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.1, deadline - time.monotonic()))
        assert not any(t.is_alive() for t in self.threads), "client threads stuck"


def fault_params():
    e = os.environ
    seed = int(e.get("HERMOD_FAULT_SEED") or random.SystemRandom().randrange(1 << 30))
    return dict(seed=seed, rounds=int(e.get("HERMOD_FAULT_ROUNDS", "9")),
                seconds=float(e.get("HERMOD_FAULT_SECONDS", "0")),
                clients=int(e.get("HERMOD_FAULT_CLIENTS", "4")),
                pace=float(e.get("HERMOD_FAULT_PACE", "0.04")),
                victims=e.get("HERMOD_FAULT_VICTIMS", "smtpd,queued,lmtpd").split(","))


def test_kill9_under_load_loses_nothing(env):  # noqa: F811
    """kill -9 of each daemon in turn under load, each restarted at once:
    service comes back every time, and after the drain every recipient
    of every message acknowledged with a 250 has it; no bounce, no 5xx to
    a client, the queue and the spool empty, every daemon alive."""
    hermod = env.h
    p = fault_params()
    rng = random.Random(p["seed"])
    print("\nfault seed %d (HERMOD_FAULT_SEED=%d replays it), %d rounds, %gs, %d clients"
          % (p["seed"], p["seed"], p["rounds"], p["seconds"], p["clients"]))
    install(hermod, users=("alice", "bob", "carol"))
    env.mx("remote.example", (10, "127.0.0.2"))
    sink = env.sink("127.0.0.2")
    hermod.start("lmtpd", "queued", "smtpd")
    load = Load(hermod, p["clients"], pace=p["pace"])
    t0 = time.monotonic()
    kills = collections.Counter()
    # each daemon killed at least once in the short run; at random after
    victims = p["victims"] * max(1, p["rounds"] // len(p["victims"]))
    rng.shuffle(victims)
    try:
        try:
            wait_for(lambda: load.count() >= 20, 60, what="the load to flow")
        except TimeoutError:
            raise AssertionError("no load: refusals %s\n%s" % (dict(load.refused),
                                                                 hermod.logs()[-3000:]))
        n = 0
        while n < p["rounds"] or time.monotonic() - t0 < p["seconds"]:
            victim = victims[n] if n < len(victims) else rng.choice(p["victims"])
            time.sleep(rng.uniform(0.1, 1.0))
            before = load.count()
            hermod.kill(victim)
            kills[victim] += 1
            print("%s kill -9 %s" % (time.strftime("%H:%M:%S", time.gmtime()) +
                                     ("%.3f" % (time.time() % 1))[1:], victim))
            time.sleep(rng.uniform(0.0, 0.5))
            hermod.start(victim)
            # service is back: acknowledgements flow again after each restart
            wait_for(lambda: load.count() >= before + 5, 60,
                     what="acks after restarting %s (round %d)" % (victim, n))
            n += 1
    finally:
        load.finish()
    acked = list(load.acked)
    t_load = time.monotonic() - t0
    assert hermod.run("hermod", "flush").returncode == 0
    # drain: the queue empty (bounded; longer runs leave more to deliver),
    # then the Maildir read once
    try:
        wait_for(lambda: queue_empty(hermod), max(90, len(acked) / 20), interval=0.5,
                 what="the queue to drain")
    except TimeoutError:
        pass                    # reported in detail below
    bounces = []
    got = {u: delivered_ids(hermod, u, bounces) for u in ("alice", "bob", "carol")}
    got["remote"] = collections.Counter()
    for m in list(sink.msgs):
        f = ID_RE.search(m.data.replace(b"\r\n", b"\n"))
        if f:
            got["remote"][f.group(1).decode()] += len(m.rcpts)
    lost = sorted("%s to %s" % (f, u) for f in acked for u in mailboxes_of(f) if f not in got[u])
    dups = sum(c - 1 for g in got.values() for c in g.values() if c > 1)
    ackset = set(acked)
    extra = len({f for g in got.values() for f in g} - ackset)
    got = {f for g in got.values() for f in g}
    # one line, key=value, for bench/faults.sh
    print("faults: seed=%d kills=%s load_s=%.1f drain_s=%.1f tried=%d acked=%d "
          "delivered=%d lost=%d duplicates=%d unacked_delivered=%d refusals=%s"
          % (p["seed"], ",".join("%s:%d" % kv for kv in sorted(kills.items())), t_load,
             time.monotonic() - t0 - t_load, load.tried, len(acked), len(got), len(lost),
             dups, extra, ",".join("%s:%d" % kv for kv in sorted(load.refused.items(),
                                                                 key=str))))
    assert not lost, "seed %d: %d acknowledged messages lost, e.g. %s\nqueue:\n%s" % (
        p["seed"], len(lost), lost[:10], queue_text(hermod))
    assert queue_empty(hermod), queue_text(hermod)
    assert not bounces, "bounces or notices to postmaster: %s" % bounces
    assert not [c for c in load.refused if isinstance(c, int) and c >= 500], load.refused
    try:
        wait_for(lambda: not spool_files(hermod), 10, what="an empty spool")
    except TimeoutError:
        pass
    assert not spool_files(hermod), "stuck in the spool: %s" % spool_files(hermod)
    for name in hermod.DAEMON_ORDER:
        assert hermod.procs[name].poll() is None, "%s died:\n%s" % (name, hermod.log(name)[-3000:])


# ---- 2. the spool's filesystem full ------------------------------------------

def fill(path):
    """Write path until the filesystem says ENOSPC (64 KiB, then 4 KiB
    blocks); returns the bytes written."""
    n = 0
    with open(path, "wb") as f:
        for chunk in (b"\0" * 65536, b"\0" * 4096):
            while True:
                try:
                    f.write(chunk)
                    f.flush()
                    n += len(chunk)
                except OSError as e:
                    assert e.errno == errno.ENOSPC, e
                    break
        try:
            f.close()
        except OSError:
            pass
    return n


def mount_spool(h, opts="size=4m,nr_inodes=400"):
    """A small tmpfs as the spool, or the test is skipped."""
    if not IS_ROOT:
        pytest.skip("mounting a small tmpfs as the spool needs root")
    spool = h.path("spool")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts + ",mode=0755", "tmpfs", spool],
                       capture_output=True, text=True)
    if r.returncode:
        pytest.skip("cannot mount a tmpfs on the spool: %s" % r.stderr.strip())
    os.chown(spool, h.uid, h.gid)
    return spool


def unmount_spool(h):
    for name in reversed(h.DAEMON_ORDER):
        h.stop(name)
    if subprocess.run(["umount", h.path("spool")]).returncode:
        subprocess.run(["umount", "-l", h.path("spool")])     # never left mounted


def test_spool_full_452_then_recovers(hermod):
    spool = mount_spool(hermod)
    filler = os.path.join(spool, "filler")
    try:
        install(hermod)
        hermod.start("lmtpd", "queued", "smtpd")
        for i in range(3):
            sent(hermod, "before-%d" % i)
        wait_for(lambda: len(delivered_ids(hermod)) == 3, 30, what="3 deliveries")
        # mail waiting in the queue (lmtpd down) when the disk fills
        hermod.stop("lmtpd")
        held = ["held-%d" % i for i in range(5)]
        for fid in held:
            sent(hermod, fid, size=20000)
        # no inode left: the queue file cannot even be created; 452 4.3.1
        # instead of the 354, or after the dot when smtpd gave its 354
        # early (on a connection to queued that served before)
        inodes = os.path.join(spool, "inodes")
        os.mkdir(inodes)
        for i in range(1000):
            try:
                open(os.path.join(inodes, str(i)), "w").close()
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
                break
        else:
            assert False, "nr_inodes=400 not in effect"
        stage, code, text = smtp_send(hermod, "noinode")
        assert stage in ("DATA", "dot") and code == 452 and text.startswith("4.3.1 "), \
            (stage, code, text)
        subprocess.run(["rm", "-rf", inodes], check=True)
        full = fill(filler)
        stages = collections.Counter()
        for i in range(3):
            stage, code, text = smtp_send(hermod, "full-%d" % i, size=20000)
            assert stage in ("DATA", "dot") and code == 452 and text.startswith("4.3.1 "), \
                (stage, code, text)
            stages[stage] += 1
        assert "Insufficient system storage" in text
        # room for the start of a message, not for all of it: 452 after the
        # dot, and the partial file's space comes back at once
        os.truncate(filler, full - 256 * 1024)
        stage, code, text = smtp_send(hermod, "big", size=1024 * 1024)
        assert (stage, code) == ("dot", 452) and text.startswith("4.3.1 "), (stage, code, text)
        assert not os.listdir(os.path.join(spool, "incoming"))
        sent(hermod, "small")
        print("\nspool filled with %d bytes; 452 4.3.1 at %s" % (full, dict(stages)))
        # full again, and queued crashes: it starts again on the full
        # spool; lmtpd returns: deliveries need no room in the spool
        fill(filler + "2")
        hermod.kill("queued")
        hermod.start("queued")
        assert queue_entries(hermod)[0] == len(held) + 1, queue_text(hermod)
        hermod.start("lmtpd")
        assert hermod.run("hermod", "flush").returncode == 0
        wait_for(lambda: set(delivered_ids(hermod)) >= set(held) | {"small"}, 30,
                 what="queued mail delivered with the spool full")
        # space again: normal service
        os.unlink(filler)
        os.unlink(filler + "2")
        for i in range(3):
            sent(hermod, "after-%d" % i)
        want = {"before-0", "before-1", "before-2", "small", "after-0", "after-1",
                "after-2"} | set(held)
        wait_for(lambda: set(delivered_ids(hermod)) >= want and queue_empty(hermod), 60,
                 what="every accepted message delivered")
        got = delivered_ids(hermod)
        assert set(got) == want, got
        assert not {k: v for k, v in got.items() if v > 1}, got
        assert not spool_files(hermod), spool_files(hermod)
        for name in hermod.DAEMON_ORDER:
            assert hermod.procs[name].poll() is None, hermod.log(name)[-3000:]
    finally:
        unmount_spool(hermod)


def test_spool_fills_under_load(hermod):
    """Concurrent clients while the spool fills up, hovers at full (each
    delivery frees a little room, the next message takes it) and empties
    again: 452 4.3.1 meanwhile, never a 250 for a message not kept, and
    every acknowledged message delivered."""
    spool = mount_spool(hermod, "size=3m")
    filler = os.path.join(spool, "filler")
    try:
        install(hermod, users=("alice", "bob", "carol"))
        hermod.start("lmtpd", "queued", "smtpd")
        load = Load(hermod, 4, tag="full", pace=0.01, rcpts=RCPTS[:3], size=30000)
        try:
            wait_for(lambda: load.count() >= 10, 60, what="the load to flow")
            # full for 2 s: what deliveries free is taken again at once
            fillers, end = [], time.monotonic() + 2.0
            while time.monotonic() < end:
                fillers.append(filler + str(len(fillers)))
                fill(fillers[-1])
                time.sleep(0.05)
            wait_for(lambda: load.refused[452] >= 5, 30, what="452s")
            for f in fillers:
                os.unlink(f)
            n = load.count()
            wait_for(lambda: load.count() >= n + 20, 30, what="acks once there is room")
        finally:
            load.finish()
        wait_for(lambda: queue_empty(hermod), 60, what="the queue to drain")
        got = {u: delivered_ids(hermod, u) for u in ("alice", "bob", "carol")}
        lost = sorted("%s to %s" % (f, u) for f in load.acked for u in mailboxes_of(f)
                      if f not in got[u])
        dups = sum(c - 1 for g in got.values() for c in g.values() if c > 1)
        print("\nspool filling under load: %d tried, %d acked, %d lost, %d duplicates; "
              "refusals %s" % (load.tried, len(load.acked), len(lost), dups, dict(load.refused)))
        assert not lost, lost[:20]
        assert set(load.refused) <= {452}, load.refused
        assert not spool_files(hermod), spool_files(hermod)
        for name in hermod.DAEMON_ORDER:
            assert hermod.procs[name].poll() is None, hermod.log(name)[-3000:]
    finally:
        unmount_spool(hermod)


# ---- 3. lmtpd down for a while -----------------------------------------------

def queue_entries(h):
    """(number of messages, the listing) from `hermod queue`."""
    out = queue_text(h)
    m = re.search(r"in (\d+) Requests?\.", out)
    return (int(m.group(1)) if m else 0), out


@pytest.mark.parametrize("how", ["flush", "timer"])
def test_lmtpd_down_deferred_then_delivered(hermod, how):
    """lmtpd stopped: mail is accepted and deferred with the reason shown
    by mailq; once lmtpd is back, `hermod flush` (retry times far away) or
    the retry timer (1-2 s) delivers all of it, nothing bounces."""
    slow = dict(minimal_backoff_time="1h", maximal_backoff_time="2h") if how == "flush" else {}
    install(hermod, **slow)
    hermod.start("lmtpd", "queued", "smtpd")
    sent(hermod, "first")
    hermod.wait_messages("alice", 1, 30)
    hermod.stop("lmtpd")
    ids = ["down-%d" % i for i in range(5)]
    for fid in ids:
        sent(hermod, fid)

    def deferred():
        n, out = queue_entries(hermod)
        return out if n == 5 and out.count("connect to lmtpd") == 5 else None
    out = wait_for(deferred, 30, interval=0.2, what="5 deferred messages in mailq")
    assert out.count("alice@example.test") == 5, out
    assert re.search(r"dsn=4\.\d\.\d+, status=deferred \(.*connect to lmtpd",
                     hermod.log("queued")), hermod.log("queued")[-2000:]
    hermod.start("lmtpd")
    if how == "flush":
        time.sleep(1.5)         # the next retry is an hour away: nothing moves
        assert set(delivered_ids(hermod)) == {"first"}
        assert queue_entries(hermod)[0] == 5
        r = hermod.run("hermod", "flush")
        assert r.returncode == 0, r.stdout + r.stderr
    wait_for(lambda: set(delivered_ids(hermod)) >= set(ids) and queue_empty(hermod), 30,
             interval=0.2, what="the deferred mail delivered")
    got = delivered_ids(hermod)
    assert set(got) == set(ids) | {"first"} and max(got.values()) == 1, got
    assert len(hermod.messages("alice")) == 6      # no bounce to postmaster either
    assert "status=bounced" not in hermod.log("queued")
    assert not spool_files(hermod), spool_files(hermod)


# ---- 4. a remote MX down -----------------------------------------------------

def test_remote_mx_down_then_up(env):  # noqa: F811 (env: the fixture)
    """The only MX refuses connections: deferred with the reason; the
    exchanger comes up, `hermod flush` delivers."""
    h = env.h
    env.mx("down.example", (10, "127.0.0.2"))
    h.conf(minimal_backoff_time="1h", maximal_backoff_time="2h")
    h.start("lmtpd", "queued", "smtpd")
    sent(h, "remote-1", rcpt="bob@down.example")

    def deferred():
        out = queue_text(h)
        return out if "bob@down.example" in out and "Connection refused" in out else None
    out = wait_for(deferred, 30, interval=0.2, what="the deferral in mailq")
    assert re.search(r"\(.*127\.0\.0\.2\].*Connection refused\)", out), out
    assert re.search(r"to=<bob@down\.example>.*dsn=4\.4\.1, status=deferred",
                     h.log("queued")), h.log("queued")[-2000:]
    sink = env.sink("127.0.0.2")
    assert h.run("hermod", "flush").returncode == 0
    m = sink.wait(1, timeout=30)[0]
    assert m.rcpts == ["bob@down.example"] and m.sender == SENDER
    assert b"X-Fault-Id: remote-1" in m.data
    wait_for(lambda: queue_empty(h), 20, what="an empty queue")
    assert re.search(r"to=<bob@down\.example>, relay=mx1\.down\.example\[127\.0\.0\.2\]:\d+, "
                     r".*status=sent", h.log("queued")), h.log("queued")[-2000:]
    assert h.messages("sender") == []       # no delay notice, no bounce
    assert len(sink.msgs) == 1


def test_remote_mx_down_expires_with_a_bounce(env):  # noqa: F811
    """The MX stays down past maximal_queue_lifetime (3 s): the message is
    returned with an RFC 3464 report: Action failed, the Status of the last
    temporary failure (4.4.1: RFC 3463's persistent transient failure that
    caused abandonment), a Diagnostic-Code saying it expired."""
    h = env.h
    env.mx("down.example", (10, "127.0.0.2"))
    h.conf(maximal_queue_lifetime="3s", delay_warning_time="0")
    h.start("lmtpd", "queued", "smtpd")
    t0 = time.time()
    sent(h, "expire-1", rcpt="bob@down.example")
    raw = h.wait_messages("sender", 1, 40)[0]
    assert time.time() - t0 >= 2.0      # 3 s, counted in whole seconds
    m, rcpts, per_msg, orig = report(raw)
    assert m["Return-Path"] == "<>"
    assert m["To"] and SENDER in m["To"]
    assert per_msg["Reporting-MTA"] == "dns; mx.example.test", per_msg
    assert "Arrival-Date" in per_msg
    assert len(rcpts) == 1
    r = rcpts[0]
    assert r["Final-Recipient"] == "rfc822; bob@down.example", r
    assert r["Action"] == "failed", r
    assert r["Status"] == "4.4.1", r
    assert "expired" in r["Diagnostic-Code"] and "Connection refused" in r["Diagnostic-Code"], r
    assert "Last-Attempt-Date" in r and "Will-Retry-Until" not in r, r
    assert "X-Fault-Id: expire-1" in orig.as_string()
    wait_for(lambda: queue_empty(h), 20, what="an empty queue")
    assert "status=expired, returned to sender" in h.log("queued")
    assert len(h.messages("sender")) == 1


# ---- 5. bounces under kill -9 ------------------------------------------------

def test_kill9_loses_no_bounce(env):  # noqa: F811
    """Every message to a recipient the remote server refuses (550) comes
    back to its sender, while queued is killed again and again: a bounce
    is a message of its own, made before the original is forgotten."""
    h = env.h
    p = fault_params()
    rng = random.Random(p["seed"] + 1)
    install(h)
    env.mx("remote.example", (10, "127.0.0.2"))
    env.sink("127.0.0.2", rcpt={"no@remote.example": "550 5.1.1 <no@remote.example>: no such user"})
    h.start("lmtpd", "queued", "smtpd")
    load = Load(h, 3, tag="bnc", pace=p["pace"], rcpts=(["no@remote.example"],))
    try:
        wait_for(lambda: load.count() >= 10, 60, what="the load to flow")
        for n in range(max(3, p["rounds"] // 2)):
            time.sleep(rng.uniform(0.1, 0.8))
            before = load.count()
            h.kill("queued")
            time.sleep(rng.uniform(0.0, 0.3))
            h.start("queued")
            wait_for(lambda: load.count() >= before + 3, 60, what="acks after restart %d" % n)
    finally:
        load.finish()
    wait_for(lambda: queue_empty(h), 90, interval=0.5, what="the queue to drain")
    bounced = collections.Counter()
    for raw in h.messages("sender"):
        m = ID_RE.search(raw.replace(b"\r\n", b"\n"))
        assert m, raw[:2000]
        bounced[m.group(1).decode()] += 1
    lost = sorted(set(load.acked) - set(bounced))
    dups = sum(c - 1 for c in bounced.values() if c > 1)
    print("\nbounces: %d acked, %d bounced, %d bounces lost, %d duplicate bounces"
          % (len(load.acked), len(bounced), len(lost), dups))
    assert not lost, "no bounce for %d messages, e.g. %s" % (len(lost), lost[:10])
    assert not spool_files(h), spool_files(h)
