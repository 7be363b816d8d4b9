"""Shared end-to-end fixture: a private Hermod installation in a temp dir.

    def test_x(hermod):                 # pytest fixture from conftest.py
        hermod.add_user("alice")        # users file line + Maildir under mail/
        hermod.conf(message_size_limit="1m")
        hermod.newaliases()
        hermod.start("lmtpd", "queued", "smtpd")
        with smtplib.SMTP("127.0.0.1", hermod.smtp_port) as s: ...
        msgs = hermod.maildir("alice")  # mailbox.Maildir

Layout under hermod.root (a fresh directory, mode 0755, so that daemons
that dropped to the unprivileged `hermod` account can reach it when the
tests run as root):
    etc/hermod.conf etc/aliases etc/users   spool/  run/  mail/  log/
Daemons run in the foreground (-f) with -c etc/hermod.conf; their stderr
goes to log/NAME.log. At teardown every daemon is stopped (SIGTERM, then
SIGKILL after a bounded wait) and each log is checked for sanitizer
reports: an AddressSanitizer or UBSan report fails the test.

Binaries come from $HERMOD_BIN (make check points it at the sanitizer
build), else bin/ at the top of the checkout.
"""

import mailbox
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("HERMOD_BIN", os.path.join(TOP, "bin"))
IS_ROOT = os.geteuid() == 0
START_TIMEOUT = 20.0        # sanitizer builds start slowly
STOP_TIMEOUT = 10.0

SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                   "runtime error:", "SUMMARY: UndefinedBehaviorSanitizer")


_ports_given = set()


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host="127.0.0.1"):
    """A TCP port that was free a moment ago on host. Taken below the
    kernel's ephemeral range, so that no outgoing connection (a client
    of this test, a daemon's) can take it before the daemon binds it,
    and never handed out twice in one run."""
    import random
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    top = min(_ephemeral_low(), 32768)
    for _ in range(200):
        port = random.randrange(max(1024, top - 12000), top)
        if port in _ports_given:
            continue
        with socket.socket(fam, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        _ports_given.add(port)
        return port
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def holds_bytes(path):
    """A spool file with something in it: queued keeps emptied queue files
    for reuse (in free/, and named ahead in queue/), and may rename one
    while a test looks."""
    try:
        return os.path.getsize(path) > 0
    except FileNotFoundError:
        return False


def wait_for(pred, timeout=10.0, interval=0.05, what="condition"):
    """Poll pred() until it returns a true value; bounded."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def can_connect(addr):
    """addr: a unix socket path, or (host, port)."""
    fam = socket.AF_UNIX if isinstance(addr, str) else (
        socket.AF_INET6 if ":" in addr[0] else socket.AF_INET)
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(1.0)
    try:
        s.connect(addr)
        return True
    except OSError:
        return False
    finally:
        s.close()


def service_user():
    """(uid, gid) the daemons run as: `hermod` when root, else ourselves."""
    if IS_ROOT:
        pw = pwd.getpwnam("hermod")
        return pw.pw_uid, pw.pw_gid
    return os.getuid(), os.getgid()


class Hermod:
    DAEMON_ORDER = ("lmtpd", "queued", "smtpd")

    def __init__(self):
        # HERMOD_ROOT_PARENT: where the instance's tree goes (bench/compare.py
        # puts it beside Postfix's)
        self.root = tempfile.mkdtemp(prefix="hermod-test-",
                                     dir=os.environ.get("HERMOD_ROOT_PARENT", "/tmp"))
        os.chmod(self.root, 0o755)
        for d in ("etc", "spool", "run", "mail", "log"):
            os.mkdir(os.path.join(self.root, d))
        self.uid, self.gid = service_user()
        for d in ("spool", "run", "mail"):
            os.chown(os.path.join(self.root, d), self.uid, self.gid)
        self.smtp_port = free_port()
        self.procs = {}
        self.users = []
        self.settings = {
            "myhostname": "mx.example.test",
            "mydestination": "$myhostname, localhost, example.test",
            "mynetworks": "127.0.0.0/8 [::1]/128",
            "smtp_listen": "127.0.0.1:%d" % self.smtp_port,
            "submission_listen": "",
            "smtps_listen": "",
            "queue_directory": self.path("spool"),
            "run_directory": self.path("run"),
            "alias_maps": self.path("etc/aliases"),
            "user_maps": self.path("etc/users"),
            "local_system_users": "no",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
            "log_level": "info",
            # smtpd's client name lookup (default yes) would ask the
            # machine's resolver about 127.0.0.2, ::1 ...: tests stay
            # hermetic with "unknown"; test_smtpd_peername.py turns it on
            # against FakeDNS.
            "smtpd_peername_lookup": "no",
        }
        for name, text in (("aliases", "postmaster: alice\n"), ("users", "")):
            with open(self.path("etc", name), "w") as f:
                f.write(text)
        self.write_conf()

    # -- files ------------------------------------------------------------
    def path(self, *parts):
        return os.path.join(self.root, *parts)

    @property
    def conf_path(self):
        return self.path("etc/hermod.conf")

    @property
    def submit_socket(self):
        return self.path("run/submit")

    @property
    def lmtp_socket(self):
        return self.path("run/lmtp")

    @property
    def control_socket(self):
        return self.path("run/control")

    def conf(self, **kv):
        """Set config keys (written at once; reload or restart to apply)."""
        self.settings.update({k: str(v) for k, v in kv.items()})
        self.write_conf()

    def write_conf(self):
        with open(self.conf_path, "w") as f:
            for k, v in self.settings.items():
                f.write("%s = %s\n" % (k, v))

    def write_aliases(self, text):
        with open(self.path("etc/aliases"), "w") as f:
            f.write(text)

    def add_user(self, name, mailbox=None, extra="", address=None):
        """Add a users-file line; mailbox defaults to mail/NAME/ (Maildir).
        The mailbox belongs to the service user (as root, `hermod`)."""
        if mailbox is None:
            mailbox = self.path("mail", name) + "/"
        line = "%s %s uid=%d gid=%d %s" % (address or name, mailbox,
                                          self.uid, self.gid, extra)
        self.users.append(line.rstrip())
        with open(self.path("etc/users"), "w") as f:
            f.write("\n".join(self.users) + "\n")
        return mailbox

    def maildir(self, name):
        return mailbox.Maildir(self.path("mail", name), factory=None, create=False)

    def messages(self, name):
        """The messages (bytes) in user `name`'s Maildir; [] while it does
        not exist yet."""
        if not os.path.isdir(self.path("mail", name, "new")):
            return []
        try:
            md = self.maildir(name)
            return [md.get_bytes(k) for k in md.keys()]
        except FileNotFoundError:   # lmtpd is creating tmp/new/cur just now
            return []

    def wait_messages(self, name, n, timeout=30):
        """Wait until `name`'s Maildir holds at least n messages."""
        return wait_for(lambda: (lambda m: m if len(m) >= n else None)(self.messages(name)),
                        timeout, what="%d message(s) for %s" % (n, name))

    def mbox(self, path):
        return mailbox.mbox(path, create=False)

    # -- programs ---------------------------------------------------------
    def bin(self, name):
        return os.path.join(BIN, name)

    def run(self, prog, *args, input=None, check=False, timeout=60, env=None):
        """Run a tool (hermod, newaliases, sendmail ...) with -c our config."""
        e = dict(os.environ, HERMOD_CONF=self.conf_path)
        if env:
            e.update(env)
        return subprocess.run([self.bin(prog)] + list(args), input=input,
                              capture_output=True, text=isinstance(input, str) or input is None,
                              timeout=timeout, check=check, env=e)

    def newaliases(self):
        r = self.run("newaliases", "-c", self.conf_path)
        assert r.returncode == 0, "newaliases failed: %s%s" % (r.stdout, r.stderr)
        return r

    def ready_addr(self, name):
        """What to connect to in order to know a daemon is up."""
        if name == "lmtpd":
            return self.lmtp_socket
        if name == "queued":
            return self.submit_socket
        if name == "smtpd":
            return ("127.0.0.1", self.smtp_port)
        return None

    def start(self, *names, args=()):
        """Start daemons (default: all three, in order) and wait until each
        accepts connections."""
        for name in names or self.DAEMON_ORDER:
            assert name not in self.procs or self.procs[name].poll() is not None, \
                "%s already running" % name
            log = open(self.path("log", name + ".log"), "ab")
            p = subprocess.Popen([self.bin(name), "-f", "-c", self.conf_path] + list(args),
                                 stdout=log, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
            log.close()
            self.procs[name] = p
            addr = self.ready_addr(name)

            def up():
                if p.poll() is not None:
                    raise RuntimeError("%s exited with %s:\n%s" % (name, p.returncode, self.log(name)))
                return addr is None or can_connect(addr)
            wait_for(up, START_TIMEOUT, what="%s to accept connections" % name)
        return self

    def stop(self, name, sig=signal.SIGTERM):
        p = self.procs.get(name)
        if p is None or p.poll() is not None:
            return None
        p.send_signal(sig)
        try:
            p.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(STOP_TIMEOUT)
        return p.returncode

    def kill(self, name):
        """kill -9, as a crash would."""
        return self.stop(name, signal.SIGKILL)

    def signal(self, name, sig):
        self.procs[name].send_signal(sig)

    def log(self, name):
        try:
            with open(self.path("log", name + ".log"), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def logs(self):
        return "".join(self.log(n) for n in self.procs)

    def sanitizer_reports(self):
        out = []
        for name in self.procs:
            text = self.log(name)
            if any(m in text for m in SANITIZER_MARKS):
                out.append("%s:\n%s" % (name, text[-4000:]))
        return out

    def close(self):
        for name in reversed(list(self.procs)):
            self.stop(name)
        reports = self.sanitizer_reports()
        if not reports and not os.environ.get("HERMOD_KEEP"):
            shutil.rmtree(self.root, ignore_errors=True)
        return reports
