#!/usr/bin/python3
"""Hermod and Postfix side by side on the same machine and the same load
(issue 10, `make bench`). Not a test: prints a Markdown section for
bench/RESULTS.md.

Both get: loopback listeners on their own ports, spools on the same file
system (both trees under /var/tmp/hermod-bench, each in block groups of
its own: see spread_dirs), the same ten system accounts hb0..hb9
with Maildir delivery (Postfix: local(8), home_mailbox = Maildir/;
Hermod: lmtpd, users table), fsync on (both defaults), no DNS, relaying
to one smtp-sink on 127.0.0.2. Postfix runs as a private instance from
its own config directory (`postfix -c DIR`): /etc/postfix is never read
or touched. The load generator is Postfix's smtp-source for both.

Measured, each scenario alternating Postfix and Hermod for ROUNDS rounds
(median and range); before each run the last run's mailboxes are moved
aside (clear_maildirs) and the file system synced (settle):
  a. local delivery: msgs/s from the first connection until the last
     message is in Maildir/new (5 KB, 1 and 10 recipients, 1/10/100
     clients); the client-side acceptance rate; CPU ms per message of all
     daemon processes (and their reaped children);
  b. relay to smtp-sink, 100 clients: until the queue is empty;
  c. total RSS of the daemons idle and with 1,000 / 10,000 idle sessions;
  d. latency from the final dot to the 250 (p50, p99) at 1 and 100
     clients;
  e. the disk's rate of 4 KB write + fsync, and messages per flush;
  f. last: both relay to a dead port (connection refused, next try in an
     hour), the queue is filled through SMTP with 10,000 (--full: also
     100,000) deferred messages, and (a) at 100 clients, 1 recipient is
     run again with them sitting there; then each side is restarted and
     the time from the start command until a new message is in
     Maildir/new is taken (start-up recovery).

Usage: /usr/bin/python3 bench/compare.py [--quick] [--full] [--rounds N]
       [--scale F] [--deferred N,...]
Needs root (Postfix's master, system accounts, delivery as the owner).
"""

import argparse
import itertools
import os
import pwd
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests", "e2e"))
from hermod import Hermod, holds_bytes  # noqa: E402
from test_queued import stats  # noqa: E402

W = "/var/tmp/hermod-bench"
TRASH = os.path.join(W, "trash")        # emptied mailboxes (clear_maildirs)
_trash_seq = itertools.count()
PF_PORT, H_PORT, SINK_PORT = 2625, 2725, 2825
DEAD_RELAY = "[127.0.0.3]:2925"         # (f): nothing listens there
USERS = ["hb%d" % i for i in range(10)]
DOMAIN = "bench.test"


def sh(*args, check=True, **kw):
    return subprocess.run(list(args), check=check, capture_output=True, text=True, **kw)


# ---- set-up -----------------------------------------------------------------

def install_postfix():
    for tool, pkg in (("strace", "strace"), ("perf", "linux-perf")):
        if not shutil.which(tool):          # (e) counts flush calls with them
            sh("apt-get", "install", "-y", "-q", pkg,
               env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"), timeout=900)
    if shutil.which("smtp-source") and os.path.exists("/usr/sbin/postfix"):
        return
    # No system instance: "No configuration", and nothing started.
    sh("sh", "-c", "echo 'postfix postfix/main_mailer_type select No configuration'"
       " | debconf-set-selections")
    had = os.path.exists("/usr/sbin/policy-rc.d")
    if not had:
        with open("/usr/sbin/policy-rc.d", "w") as f:
            f.write("#!/bin/sh\nexit 101\n")
        os.chmod("/usr/sbin/policy-rc.d", 0o755)
    try:
        sh("apt-get", "install", "-y", "-q", "postfix",
           env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"), timeout=900)
    finally:
        if not had:
            os.unlink("/usr/sbin/policy-rc.d")


def spread_dirs(path):
    """Make path (a directory) a top of hierarchies for ext4's Orlov
    allocator (chattr +T), as / and /home are: its subdirectories go to
    block groups of their own rather than next to it. Without it the whole
    bench tree lay in one or two of the 8,192-inode block groups, so each
    system's file creations there stepped over the other's recently
    removed queue files (see clear_maildirs), a cost no real host has:
    there /var/spool and /home are far apart. A file system without the
    flag (not ext4) ignores it."""
    os.makedirs(path, exist_ok=True)
    try:
        subprocess.run(["chattr", "+T", path], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)
    except OSError:             # no chattr (e2fsprogs): no ext4 to tune either
        pass


def make_users():
    spread_dirs(os.path.join(W, "home"))
    for u in USERS:
        home = os.path.join(W, "home", u)
        try:
            pwd.getpwnam(u)
        except KeyError:
            sh("useradd", "--system", "--home-dir", home, "--shell", "/usr/sbin/nologin", u)
        pw = pwd.getpwnam(u)
        os.makedirs(home, exist_ok=True)
        os.chown(home, pw.pw_uid, pw.pw_gid)
        os.chmod(home, 0o755)


def remove_users():
    for u in USERS:
        sh("userdel", u, check=False)


def rcpt_names():
    """smtp-source -r N names its recipients "Nu", ..., "2u", "u" (seen
    on the wire); one recipient is "u". Ten recipients, ten users."""
    return [("u", USERS[0])] + [("%du" % i, USERS[i - 1]) for i in range(2, 11)]


class Postfix:
    name = "Postfix"

    def __init__(self):
        self.etc = os.path.join(W, "pf", "etc")
        self.spool = os.path.join(W, "pf", "spool")
        os.makedirs(self.etc, exist_ok=True)
        os.makedirs(self.spool, exist_ok=True)
        os.makedirs(os.path.join(W, "pf", "data"), exist_ok=True)
        sh("chown", "postfix", os.path.join(W, "pf", "data"))
        main = """compatibility_level = 3.6
queue_directory = {spool}
data_directory = {w}/pf/data
mail_owner = postfix
setgid_group = postdrop
myhostname = pf.bench.local
mydomain = bench.local
myorigin = $myhostname
mydestination = {dom}, $myhostname, localhost
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps = hash:{etc}/aliases
alias_database = hash:{etc}/aliases
home_mailbox = Maildir/
biff = no
smtp_dns_support_level = disabled
relayhost = [127.0.0.2]:{sink}
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
maillog_file = {w}/pf/maillog
""".format(spool=self.spool, w=W, etc=self.etc, dom=DOMAIN, sink=SINK_PORT)
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write(main)
        out = []
        with open("/etc/postfix/master.cf") as f:
            for line in f:
                cols = line.split()
                if line[0] not in "# \t" and len(cols) >= 8:
                    if cols[0] == "smtp" and cols[1] == "inet":
                        cols[0] = "127.0.0.1:%d" % PF_PORT
                    cols[4] = "n"       # no chroot: the spool is elsewhere
                    line = " ".join(cols[:8]) + (" " + " ".join(cols[8:]) if cols[8:] else "") + "\n"
                out.append(line)
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.writelines(out)
        with open(os.path.join(self.etc, "aliases"), "w") as f:
            f.write("postmaster: root\n")
            for a, u in rcpt_names():
                f.write("%s: %s\n" % (a, u))
        sh("postalias", "-c", self.etc, os.path.join(self.etc, "aliases"))
        self.port = PF_PORT

    def start(self):
        sh("postfix", "-c", self.etc, "start", timeout=60)
        wait_port(self.port)

    def stop(self):
        sh("postfix", "-c", self.etc, "stop", check=False, timeout=60)
        end = time.time() + 30
        while time.time() < end and self.pids():
            time.sleep(0.2)

    def pids(self):
        try:
            with open(os.path.join(self.spool, "pid", "master.pid")) as f:
                pid = int(f.read().split()[0])
            os.kill(pid, 0)
        except (OSError, ValueError):
            return []
        return tree([pid])

    def maildir(self, user):
        return os.path.join(W, "home", user, "Maildir")

    def dead_relay(self):
        """(f): remote mail goes nowhere and waits an hour to be tried again."""
        sh("postconf", "-c", self.etc, "-e", "relayhost=" + DEAD_RELAY,
           "minimal_backoff_time=3600s", "maximal_backoff_time=4000s")
        sh("postfix", "-c", self.etc, "reload", timeout=60)
        time.sleep(2)

    def deferred(self):
        n = 0
        for _, _, files in os.walk(os.path.join(self.spool, "deferred")):
            n += len(files)
        return n

    def queue_files(self):
        n = 0
        for d in ("incoming", "active", "deferred", "maildrop"):
            for _, _, files in os.walk(os.path.join(self.spool, d)):
                n += len(files)
        return n


class HermodSide:
    name = "Hermod"

    def __init__(self):
        self.h = Hermod()
        self.h.conf(smtp_listen="127.0.0.1:%d" % H_PORT, mydestination=DOMAIN,
                    myhostname="h.bench.local", relayhost="[127.0.0.2]:%d" % SINK_PORT,
                    smtpd_max_connections="20000", log_level="warning",
                    # Postfix's defaults (the fixture's are for tests)
                    minimal_backoff_time="300s", maximal_backoff_time="4000s")
        # HERMOD_BENCH_CONF="key=value ...": a variant measured beside the
        # default (e.g. lmtpd_maildir_one_flush=yes); printed in the header
        extra = os.environ.get("HERMOD_BENCH_CONF", "").split()
        if extra:
            self.h.conf(**dict(kv.split("=", 1) for kv in extra))
        lines = []
        for a, u in rcpt_names():
            pw = pwd.getpwnam(u)
            lines.append("%s@%s %s/ uid=%d gid=%d" % (a, DOMAIN, self.maildir(u),
                                                       pw.pw_uid, pw.pw_gid))
        self.h.users = lines
        with open(self.h.path("etc/users"), "w") as f:
            f.write("\n".join(lines) + "\n")
        self.h.newaliases()
        self.port = H_PORT
        self.h.smtp_port = H_PORT

    def start(self):
        self.h.start()

    def stop(self):
        for n in reversed(self.h.DAEMON_ORDER):
            self.h.stop(n)

    def pids(self):
        return tree([p.pid for p in self.h.procs.values() if p.poll() is None])

    def maildir(self, user):
        return os.path.join(W, "home", user, "HMaildir")

    def dead_relay(self):
        self.stop()
        self.h.conf(relayhost=DEAD_RELAY, minimal_backoff_time="3600s",
                    maximal_backoff_time="4000s")
        self.start()

    def deferred(self):
        """Deferrals since queued started (it is not restarted while the
        queue fills, and nothing is tried twice within the hour)."""
        return int(stats(self.h)["deferred"])

    def queue_files(self):
        """Messages' files: the empty ones in queue/ are emptied files
        queued keeps named ahead for reuse."""
        n = 0
        for d in ("incoming", "queue"):
            for root, _, files in os.walk(self.h.path("spool", d)):
                n += sum(holds_bytes(os.path.join(root, f)) for f in files)
        return n

    def close(self):
        self.h.close()


# ---- measuring ----------------------------------------------------------------

def ports_free():
    """Refuse to start when something already listens on a port of ours
    (a Hermod or Postfix left over from an interrupted run): wait_port()
    would take it for the system under test, and every figure would be
    that stranger's."""
    for host, port in (("127.0.0.1", PF_PORT), ("127.0.0.1", H_PORT), ("127.0.0.2", SINK_PORT)):
        try:
            socket.create_connection((host, port), 1).close()
        except OSError:
            continue
        sys.exit("compare.py: something already listens on %s:%d; stop it first "
                 "(ss -ltnp 'sport = :%d')" % (host, port, port))


def wait_port(port, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("nothing listens on %d" % port)


def tree(roots):
    """roots and all their descendants."""
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                kids.setdefault(ppid, []).append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    out, todo = [], list(roots)
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu_seconds(pids):
    t = 0
    for p in pids:
        try:
            with open("/proc/%d/stat" % p) as f:
                v = f.read().rsplit(")", 1)[1].split()
            t += sum(int(x) for x in v[11:15])      # utime stime cutime cstime
        except (OSError, IndexError):
            pass
    return t / os.sysconf("SC_CLK_TCK")


def rss_mb(pids, field="Rss:"):
    """Sum of Rss (pages shared between processes counted in each) or
    Pss (shared pages divided among their users) over pids, in MB."""
    kb = 0
    for p in pids:
        try:
            with open("/proc/%d/smaps_rollup" % p) as f:
                for line in f:
                    if line.startswith(field):
                        kb += int(line.split()[1])
        except OSError:
            pass
    return kb / 1024


def delivered(side):
    n = 0
    for u in USERS:
        try:
            n += len(os.listdir(os.path.join(side.maildir(u), "new")))
        except FileNotFoundError:
            pass
    return n


def clear_maildirs(side):
    """Empty the mailboxes for the next run by moving them aside, not by
    deleting them: the trash goes at the end. On ext4 without a journal
    (the benchmark VM's root) a freed inode is not reused for 60 s, or
    360 s while its inode table block is dirty, and every file creation
    in its block group first steps over each such inode, one buffer
    lookup apiece (find_inode_bit and recently_deleted in the kernel's
    ialloc.c). Deleting 20,000 delivered messages between two runs made
    the next runs of both systems pay for it, by an amount that depended
    on the seconds since: the 30-50 % drift of earlier sessions. Each
    system's own queue file removals stay in the measure."""
    for u in USERS:
        d = side.maildir(u)
        if os.path.lexists(d):
            os.makedirs(TRASH, exist_ok=True)
            os.rename(d, os.path.join(TRASH, "%s-%s-%d-%d" % (side.name, u, os.getpid(),
                                                        next(_trash_seq))))


def settle():
    """Write back what the last run left dirty before the next starts.
    Both spools share one file system, and a syncfs(2) (Hermod's group
    commit) writes back every dirty page and inode on it, while an
    fsync(2) (Postfix's) writes back its own file. Without this, Hermod's
    first commits after a Postfix run wrote out Postfix's leftover
    metadata (its removed queue files, its Maildir entries) as well."""
    os.sync()


def smtp_source(port, msgs, clients, rcpts, domain=DOMAIN):
    args = ["smtp-source", "-s", str(clients), "-m", str(msgs), "-l", "5120",
            "-f", "sender@client.test", "-t", "u@" + domain, "-M", "client.test"]
    if rcpts > 1:
        args += ["-r", str(rcpts)]
    sh(*args, "127.0.0.1:%d" % port, timeout=1800)


def run_local(side, msgs, clients, rcpts):
    clear_maildirs(side)
    settle()
    want = msgs * rcpts
    pids = side.pids()
    c0, t0 = cpu_seconds(pids), time.time()
    smtp_source(side.port, msgs, clients, rcpts)
    t_acc = time.time() - t0
    end = time.time() + 600
    while delivered(side) < want and time.time() < end:
        time.sleep(0.02)
    t_all = time.time() - t0
    got = delivered(side)
    cpu = cpu_seconds(side.pids()) - c0
    return {"rate": msgs / t_all, "accept": msgs / t_acc, "cpu_ms": cpu * 1000 / msgs,
            "lost": want - got}


def run_relay(side, msgs, clients):
    pids = side.pids()
    c0, t0 = cpu_seconds(pids), time.time()
    smtp_source(side.port, msgs, clients, 1, domain="relay.test")
    end = time.time() + 600
    while side.queue_files() > 0 and time.time() < end:
        time.sleep(0.02)
    t_all = time.time() - t0
    return {"rate": msgs / t_all, "cpu_ms": (cpu_seconds(side.pids()) - c0) * 1000 / msgs}


def fill_deferred(side, n, total):
    """n more messages to the dead relay; wait until `total` have been
    tried once and deferred."""
    smtp_source(side.port, n, 100, 1, domain="relay.test")
    end = time.time() + 1800
    while side.deferred() < total and time.time() < end:
        time.sleep(0.5)
    return side.deferred()


def recovery(side):
    """Stop, then time from the start command until the listener is up
    and until a new message is in Maildir/new."""
    side.stop()
    clear_maildirs(side)
    t0 = time.time()
    side.start()
    up = time.time() - t0
    smtp_source(side.port, 1, 1, 1)
    end = time.time() + 1800
    while delivered(side) < 1 and time.time() < end:
        time.sleep(0.02)
    return {"up": up, "first": time.time() - t0}


def growth(sides, sizes, msgs, rounds, record):
    for s in sides:
        s.dead_relay()
    filled = 0
    for n in [0] + sizes:
        for s in sides:
            if n > filled:
                got = fill_deferred(s, n - filled, n)
                record(("fq", n), s, got)
        filled = n
        time.sleep(5)
        for _ in range(rounds):
            for s in sides:
                record(("f", n), s, run_local(s, msgs, 100, 1))
    if sizes:
        for s in sides:
            record("frec", s, recovery(s))


def latency(side, clients, per_client):
    """Time from the final dot to the 250, over one session per client."""
    body = b"Subject: latency\r\n\r\n" + (b"x" * 78 + b"\r\n") * 64 + b".\r\n"
    out, lock = [], threading.Lock()

    def client():
        s = socket.create_connection(("127.0.0.1", side.port), 30)
        # the dot goes out at once (no Nagle wait for the body's ACK)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        f = s.makefile("rb")

        def reply():
            while True:
                line = f.readline()
                if not line or line[3:4] != b"-":
                    return line

        reply()
        s.sendall(b"EHLO client.test\r\n")
        reply()
        mine = []
        for _ in range(per_client):
            s.sendall(b"MAIL FROM:<s@client.test>\r\n")
            reply()
            s.sendall(b"RCPT TO:<u@%s>\r\n" % DOMAIN.encode())
            reply()
            s.sendall(b"DATA\r\n")
            reply()
            s.sendall(body[:-3])
            t = time.perf_counter()
            s.sendall(body[-3:])
            r = reply()
            mine.append(time.perf_counter() - t)
            assert r.startswith(b"250"), r
        s.sendall(b"QUIT\r\n")
        s.close()
        with lock:
            out.extend(mine)

    ts = [threading.Thread(target=client) for _ in range(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(600)
    out.sort()
    return {"p50": out[len(out) // 2] * 1000, "p99": out[int(len(out) * 0.99)] * 1000}


def idle_rss(side, sessions):
    socks = []
    try:
        for _ in range(sessions):
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", side.port))
            except BlockingIOError:
                pass
            socks.append(s)
        time.sleep(2)
        for s in socks:
            try:
                s.send(b"EHLO idle.test\r\n")
            except OSError:
                pass
        time.sleep(3)
        served = 0
        for s in socks:
            try:
                if s.recv(4096).startswith(b"220"):
                    served += 1
            except OSError:
                pass
        pids = side.pids()
        return {"rss": rss_mb(pids), "pss": rss_mb(pids, "Pss:"), "served": served}
    finally:
        for s in socks:
            s.close()
        time.sleep(2)


def fsync_rate(seconds=3):
    path = os.path.join(W, "fsync.test")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    n, end, block = 0, time.time() + seconds, b"x" * 4096
    while time.time() < end:
        os.write(fd, block)
        os.fsync(fd)
        n += 1
    os.close(fd)
    os.unlink(path)
    return n / seconds


FLUSH_CALLS = ("fsync", "fdatasync", "syncfs")


def perf_works():
    """perf can count system call tracepoints here (root, tracefs)."""
    if not shutil.which("perf"):
        return False
    r = subprocess.run(["perf", "stat", "-x,", "-e", "syscalls:sys_enter_fsync", "true"],
                       capture_output=True, text=True)
    return r.returncode == 0


def flushes(side, msgs):
    """fsync, fdatasync and syncfs calls of the daemons and their children
    for `msgs` messages at 100 clients, and the tool that counted them.
    perf counts the calls' tracepoints without slowing anyone down.
    strace, where perf cannot, stops every traced process at each of its
    system calls: Hermod ran about 7 times slower under it, so the
    batches it counted were those of another load."""
    out = os.path.join(W, "flushes.%s" % side.name)
    tool = "perf" if perf_works() else "strace"
    for _ in range(5):
        # a process that exits between pids() and the attach (an lmtpd
        # worker retiring, a Postfix smtpd) makes the tool give up: again
        pids = ",".join(str(p) for p in side.pids())
        if tool == "perf":
            cmd = ["perf", "stat", "-x,", "-o", out, "-p", pids, "-e",
                   ",".join("syscalls:sys_enter_" + c for c in FLUSH_CALLS)]
        else:
            cmd = ["strace", "-c", "-f", "-o", out, "-e",
                   "trace=" + ",".join(FLUSH_CALLS), "-p", pids]
        st = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)
        if st.poll() is None:
            break
    else:
        raise RuntimeError("%s cannot attach to %s's daemons" % (tool, side.name))
    run_local(side, msgs, 100, 1)
    st.send_signal(2)
    st.wait(60)
    calls = 0
    with open(out) as f:
        for line in f:
            if tool == "perf":
                v = line.split(",")     # count,unit,event,...
                if len(v) > 2 and v[0].strip().isdigit():
                    calls += int(v[0])
            else:
                v = line.split()        # % time, seconds, usecs/call, calls
                if v and v[-1] in FLUSH_CALLS:
                    calls += int(v[3])
    return calls, tool


def spool_fs():
    """"ext4 with a journal", "ext4 without a journal", or the type: which
    ordering the file system gives decides what a flush must cover."""
    st = os.stat(W)
    best = ("", "")
    with open("/proc/mounts") as f:
        for line in f:
            v = line.split()
            if len(v) > 2 and W.startswith(v[1]) and len(v[1]) >= len(best[1]):
                best = (v[2], v[1])
    fstype = best[0] or "unknown"
    if fstype != "ext4":
        return fstype
    dev = "%d:%d" % (os.major(st.st_dev), os.minor(st.st_dev))
    try:
        names = os.listdir("/proc/fs/jbd2")
    except OSError:
        names = []
    for n in names:
        try:
            with open("/sys/dev/block/%s/uevent" % dev) as f:
                devname = [l.split("=", 1)[1].strip() for l in f if l.startswith("DEVNAME=")]
        except OSError:
            devname = []
        if devname and n.startswith(devname[0] + "-"):
            return "ext4 with a journal"
    return "ext4 without a journal"


def dev_flush_count():
    """Flush requests the block device under W has completed (field 16 of
    /sys/block/DEV/stat, Linux >= 5.5): what reaches the disk, after the
    journal (if any) and the block layer have merged concurrent
    fsync/syncfs calls. None when the kernel or the device does not say."""
    st = os.stat(W)
    d = "/sys/dev/block/%d:%d" % (os.major(st.st_dev), os.minor(st.st_dev))
    for path in (d + "/stat", d + "/../stat"):
        try:
            with open(path) as f:
                v = f.read().split()
        except OSError:
            continue
        if len(v) >= 16:
            return int(v[15])
    return None


def device_flushes(side, msgs, clients):
    """Device flush requests while `msgs` messages are delivered end to
    end (no strace: the timing is the real one). Everything else on the
    machine counts too, so it is an upper bound."""
    before = dev_flush_count()
    if before is None:
        return None
    run_local(side, msgs, clients, 1)
    time.sleep(0.5)         # the last state records and unlinks
    return dev_flush_count() - before


# ---- report -------------------------------------------------------------------

def hermod_rev():
    """The commit measured: $HERMOD_REV when the binaries were built
    elsewhere ($HERMOD_BIN), else this checkout's HEAD (+ if it is dirty)."""
    extra = os.environ.get("HERMOD_BENCH_CONF", "")
    extra = " (with %s)" % extra if extra else ""
    if os.environ.get("HERMOD_REV"):
        return os.environ["HERMOD_REV"] + extra
    rev = sh("git", "-C", TOP, "rev-parse", "--short", "HEAD").stdout.strip()
    dirty = sh("git", "-C", TOP, "status", "--porcelain", "--untracked-files=no").stdout.strip()
    return rev + (" + uncommitted edits" if dirty else "") + extra


def med(xs):
    return statistics.median(xs)


def fmt(xs, nd=0):
    f = "%%.%df" % nd
    if len(xs) == 1:
        return f % xs[0]
    return (f + " (" + f + "–" + f + ")") % (med(xs), min(xs), max(xs))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--scale", type=float, default=None,
                    help="message counts relative to the full run (1.0)")
    ap.add_argument("--full", action="store_true",
                    help="(f) with 100,000 deferred messages too")
    ap.add_argument("--only-growth", action="store_true",
                    help="only (f), the longest part, as a run of its own")
    ap.add_argument("--deferred", default=None,
                    help="(f): comma-separated queue sizes (default 10000; "
                    "--full 10000,100000; --quick 2000)")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("compare.py: run as root (Postfix's master, system accounts)")
    # Ctrl-C or a kill still stops both systems (the finally below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("compare.py: terminated"))
    rounds = a.rounds or (1 if a.quick else 3)
    if a.deferred is not None:
        sizes = [int(x) for x in a.deferred.split(",") if x]
    else:
        sizes = [2000] if a.quick else [10000, 100000] if a.full else [10000]
    scale = a.scale or (0.2 if a.quick else 1.0)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    want = 30000 if hard == resource.RLIM_INFINITY else min(30000, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    ports_free()
    install_postfix()
    shutil.rmtree(W, ignore_errors=True)
    spread_dirs(W)
    os.chmod(W, 0o755)
    os.environ["HERMOD_ROOT_PARENT"] = W     # Hermod's tree beside Postfix's
    make_users()
    sink = subprocess.Popen(["smtp-sink", "-u", "postfix", "127.0.0.2:%d" % SINK_PORT, "1000"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sides = ()
    try:
        sides = (Postfix(), HermodSide())
        for s in sides:
            s.start()
        time.sleep(1)
        res = {}

        def record(key, side, r):
            res.setdefault(key, {}).setdefault(side.name, []).append(r)

        if a.only_growth:
            growth(sides, sizes, int(2000 * scale), rounds, record)
            report_growth(res, sizes, int(2000 * scale), rounds)
            return
        idle = {s.name: (rss_mb(s.pids()), rss_mb(s.pids(), "Pss:")) for s in sides}
        for rcpts in (1, 10):
            for clients in (1, 10, 100):
                msgs = int((400 if clients == 1 else 2000) * scale / (2 if rcpts == 10 else 1))
                for _ in range(rounds):
                    for s in sides:
                        record(("a", rcpts, clients), s, run_local(s, msgs, clients, rcpts))
        for _ in range(rounds):
            for s in sides:
                record("b", s, run_relay(s, int(2000 * scale), 100))
        for clients, per in ((1, int(300 * scale)), (100, max(3, int(10 * scale)))):
            for _ in range(rounds):
                for s in sides:
                    record(("d", clients), s, latency(s, clients, per))
        for n in (1000, 10000):
            for s in sides:
                record(("c", n), s, idle_session_safe(s, n))
        disk = [fsync_rate() for _ in range(rounds)]
        nflush = {s.name: [] for s in sides}
        for _ in range(rounds):
            for s in sides:
                nflush[s.name].append(flushes(s, int(2000 * scale)))
        for clients, n in ((1, int(300 * scale)), (100, int(2000 * scale))):
            for _ in range(rounds):
                for s in sides:
                    record(("e", clients), s, {"n": n, "flushes": device_flushes(s, n, clients)})
        growth(sides, sizes, int(2000 * scale), rounds, record)
        report(res, idle, disk, nflush, int(2000 * scale), rounds)
        report_growth(res, sizes, int(2000 * scale), rounds)
    finally:
        for s in sides:
            try:
                s.stop()
            except Exception as e:       # keep stopping the rest
                print("stop %s: %s" % (s.name, e), file=sys.stderr)
        for s in sides:
            if hasattr(s, "close"):
                s.close()
        sink.terminate()
        sink.wait(30)
        remove_users()
        shutil.rmtree(W, ignore_errors=True)


def idle_session_safe(side, n):
    try:
        return idle_rss(side, n)
    except OSError as e:
        return {"rss": float("nan"), "pss": float("nan"), "served": 0, "error": str(e)}


def report(res, idle, disk, nflush, fmsgs, rounds):
    pv = sh("postconf", "-d", "-h", "mail_version").stdout.strip()
    rev = hermod_rev()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    print("\n## Side by side with Postfix\n")
    print("`make bench` (bench/compare.py), %s; %d cores, %.0f GiB, kernel %s; "
          "Postfix %s, Hermod %s; %d round(s), alternating, median (range)." %
          (time.strftime("%Y-%m-%d"), os.cpu_count(), mem, os.uname().release, pv, rev, rounds))
    print("\n### a. Local delivery, 5 KB messages, Maildir, fsync on\n")
    print("| rcpts | clients | Postfix msg/s | Hermod msg/s | ratio | accepted/s P / H "
          "| CPU ms/msg P / H | CPU ratio |")
    print("|---:|---:|---:|---:|---:|---|---|---:|")
    for key in sorted(k for k in res if k[0] == "a"):
        p, h = res[key]["Postfix"], res[key]["Hermod"]
        pr, hr = [x["rate"] for x in p], [x["rate"] for x in h]
        pc, hc = [x["cpu_ms"] for x in p], [x["cpu_ms"] for x in h]
        lost = sum(x["lost"] for x in p + h)
        print("| %d | %d | %s | %s | %.2f | %s / %s | %s / %s | %.2f |%s" % (
            key[1], key[2], fmt(pr), fmt(hr), med(hr) / med(pr),
            fmt([x["accept"] for x in p]), fmt([x["accept"] for x in h]),
            fmt(pc, 2), fmt(hc, 2), med(hc) / med(pc),
            " (%d not delivered in time)" % lost if lost else ""))
    print("\n### b. Relay to smtp-sink, 100 clients\n")
    p, h = res["b"]["Postfix"], res["b"]["Hermod"]
    print("| | Postfix | Hermod | ratio |\n|---|---:|---:|---:|")
    print("| msg/s | %s | %s | %.2f |" % (fmt([x["rate"] for x in p]), fmt([x["rate"] for x in h]),
                                         med([x["rate"] for x in h]) / med([x["rate"] for x in p])))
    print("| CPU ms/msg | %s | %s | %.2f |" % (
        fmt([x["cpu_ms"] for x in p], 2), fmt([x["cpu_ms"] for x in h], 2),
        med([x["cpu_ms"] for x in h]) / med([x["cpu_ms"] for x in p])))
    print("\n### c. Memory of all daemon processes (sum of RSS; sum of PSS, shared pages divided)\n")
    print("| sessions | Postfix RSS MB | Hermod RSS MB | Postfix PSS MB | Hermod PSS MB "
          "| sessions served P / H |\n|---:|---:|---:|---:|---:|---|")
    print("| 0 (idle) | %.1f | %.1f | %.1f | %.1f | |" % (idle["Postfix"] + idle["Hermod"]))
    for n in (1000, 10000):
        p, h = res[("c", n)]["Postfix"][0], res[("c", n)]["Hermod"][0]
        print("| %d | %.1f | %.1f | %.1f | %.1f | %d / %d |" % (
            n, p["rss"], h["rss"], p["pss"], h["pss"], p["served"], h["served"]))
    print("\n### d. Latency from the final dot to the 250 (ms)\n")
    print("| clients | Postfix p50 | Hermod p50 | p50 ratio | Postfix p99 | Hermod p99 |")
    print("|---:|---:|---:|---:|---:|---:|")
    for c in (1, 100):
        p, h = res[("d", c)]["Postfix"], res[("d", c)]["Hermod"]
        print("| %d | %s | %s | %.2f | %s | %s |" % (
            c, fmt([x["p50"] for x in p], 1), fmt([x["p50"] for x in h], 1),
            med([x["p50"] for x in h]) / med([x["p50"] for x in p]),
            fmt([x["p99"] for x in p], 1), fmt([x["p99"] for x in h], 1)))
    print("\n### e. The disk\n")
    print("4 KB write + fsync, one writer, on the spools' file system (%s): %s per second."
          % (spool_fs(), fmt(disk)))
    per = {k: [fmsgs / max(1, n) for n, _ in v] for k, v in nflush.items()}
    print("Flush calls (fsync, fdatasync, syncfs) for %d messages at 100 clients, "
          "all daemons, counted by %s: Postfix %s calls (%s msgs per flush), "
          "Hermod %s calls (%s msgs per flush)." % (
              fmsgs, nflush["Hermod"][0][1],
              fmt([n for n, _ in nflush["Postfix"]], 0), fmt(per["Postfix"], 2),
              fmt([n for n, _ in nflush["Hermod"]], 0), fmt(per["Hermod"], 2)))
    for c in (1, 100):
        runs = res.get(("e", c), {})
        if not runs or any(x["flushes"] is None for v in runs.values() for x in v):
            continue
        per = {k: [x["n"] / max(1, x["flushes"]) for x in v] for k, v in runs.items()}
        print("Device flush requests (block layer, concurrent calls merged), "
              "%d client(s), %d messages: Postfix %s, Hermod %s messages per "
              "device flush." % (c, runs["Hermod"][0]["n"], fmt(per["Postfix"], 2),
                                 fmt(per["Hermod"], 2)))


def report_growth(res, sizes, msgs, rounds):
    print("\n### f. Local delivery with deferred messages in the queue\n")
    print("Postfix %s, Hermod %s, %s, %d round(s), alternating, median (range)." % (
        sh("postconf", "-d", "-h", "mail_version").stdout.strip(),
        hermod_rev(),
        time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), rounds))
    print("\n%d messages, 100 clients, 1 recipient; remote mail goes to a dead relay "
          "(next try in an hour); the queue filled through SMTP beforehand.\n" % msgs)
    print("| deferred | Postfix msg/s | Hermod msg/s | ratio | P / H vs own empty queue "
          "| CPU ms/msg P / H |\n|---:|---:|---:|---:|---|---|")
    base = {}
    for n in [0] + sizes:
        p, h = res[("f", n)]["Postfix"], res[("f", n)]["Hermod"]
        pr, hr = [x["rate"] for x in p], [x["rate"] for x in h]
        base.setdefault("P", med(pr))
        base.setdefault("H", med(hr))
        q = ""
        if n:
            q = " (queued: %d / %d)" % (res[("fq", n)]["Postfix"][0], res[("fq", n)]["Hermod"][0])
        lost = sum(x["lost"] for x in p + h)
        print("| %d%s | %s | %s | %.2f | %+.0f %% / %+.0f %% | %s / %s |%s" % (
            n, q, fmt(pr), fmt(hr), med(hr) / med(pr),
            100 * (med(pr) / base["P"] - 1), 100 * (med(hr) / base["H"] - 1),
            fmt([x["cpu_ms"] for x in p], 2), fmt([x["cpu_ms"] for x in h], 2),
            " (%d not delivered in time)" % lost if lost else ""))
    if sizes:
        p, h = res["frec"]["Postfix"][0], res["frec"]["Hermod"][0]
        print("\nRestart with %d deferred messages: listening after %.2f s (Postfix) / "
              "%.2f s (Hermod); first new message in Maildir/new after %.2f s / %.2f s." % (
                  sizes[-1], p["up"], h["up"], p["first"], h["first"]))


if __name__ == "__main__":
    main()
