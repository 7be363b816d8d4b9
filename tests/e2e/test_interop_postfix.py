"""Interoperation with a real peer: Postfix (Debian's postfix package),
run privately from a config directory under the test's root, never the
system instance (/etc/postfix is only read, for master.cf's services).

    Postfix lmtp client  -> Hermod lmtpd (TCP listener, lmtp_listen)
    Postfix smtp client  -> Hermod smtpd (STARTTLS required by Postfix)
    Hermod smtp client   -> Postfix smtpd (relayhost, STARTTLS required)

Each flow is checked at its far end: the bytes in the Maildir, the
per-recipient results in Postfix's log (LMTP's one reply per recipient,
a 550 5.1.1 turned into Postfix's bounce), the TLS in the Received line.

Needs root (Postfix's master runs as root) and the postfix package;
skipped otherwise, with the reason. `make bench` installs Postfix; on a
machine without it, `apt-get install postfix` with "No configuration".
"""

import email
import os
import shutil
import smtplib
import subprocess

import pytest

from hermod import IS_ROOT, free_port, wait_for, can_connect

POSTFIX = "/usr/sbin/postfix"

pytestmark = pytest.mark.skipif(
    not IS_ROOT or not os.path.exists(POSTFIX) or not os.path.exists("/etc/postfix/master.cf"),
    reason="needs root and Debian's postfix package (a private instance is run)")

BODY = ("Subject: interop\r\nFrom: sender@pf.test\r\nTo: someone\r\n"
        "Message-ID: <interop@pf.test>\r\n\r\n"
        "first line\r\n.leading dot\r\nFrom the start\r\n" + "x" * 900 + "\r\nlast\r\n")
BODY_READ = ("first line\n.leading dot\nFrom the start\n" + "x" * 900 + "\nlast\n").encode()


def make_cert(root, name, cn):
    cert, key = os.path.join(root, name + ".pem"), os.path.join(root, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                    "/CN=" + cn, "-keyout", key, "-out", cert],
                   check=True, capture_output=True, timeout=60)
    os.chmod(key, 0o644)        # read by the unprivileged daemons of both
    return cert, key


class Postfix:
    """A private Postfix: its own main.cf/master.cf, spool and log."""

    def __init__(self, root, hermod):
        self.dir = os.path.join(root, "pf")
        self.etc = os.path.join(self.dir, "etc")
        self.spool = os.path.join(self.dir, "spool")
        self.logfile = os.path.join(self.dir, "maillog")
        for d in (self.etc, self.spool, os.path.join(self.dir, "data")):
            os.makedirs(d)
        shutil.chown(os.path.join(self.dir, "data"), "postfix")
        self.port = free_port()
        cert, key = make_cert(self.etc, "pf", "pf.test")
        with open(os.path.join(self.etc, "transport"), "w") as f:
            f.write("lmtp.test lmtp:inet:127.0.0.1:%d\n" % hermod.lmtp_port)
            f.write("example.test smtp:[127.0.0.1]:%d\n" % hermod.smtp_port)
            f.write("far.test lmtp:inet:127.0.0.1:%d\n" % hermod.lmtp_port)
        main = {
            "compatibility_level": "3.6",
            "queue_directory": self.spool,
            "data_directory": os.path.join(self.dir, "data"),
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": "pf.test",
            "mydomain": "pf.test",
            "mydestination": "pf.test",
            "local_transport": "discard:",     # bounces to sender@pf.test end here
            "relay_domains": "lmtp.test, example.test, far.test",
            "transport_maps": "texthash:" + os.path.join(self.etc, "transport"),
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "alias_maps": "",
            "alias_database": "",
            "smtp_dns_support_level": "disabled",
            "smtp_tls_security_level": "encrypt",
            "smtp_tls_loglevel": "1",
            "smtpd_tls_cert_file": cert,
            "smtpd_tls_key_file": key,
            "smtpd_tls_security_level": "may",
            "smtpd_tls_received_header": "yes",
            "maillog_file": self.logfile,
            "maillog_file_prefixes": self.dir,   # default: /var, /dev/stdout
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
            "queue_run_delay": "1s",
        }
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.writelines("%s = %s\n" % kv for kv in main.items())
        out = []
        with open("/etc/postfix/master.cf") as f:
            for line in f:
                cols = line.split()
                if line[0] not in "# \t" and len(cols) >= 8:
                    if cols[0] == "smtp" and cols[1] == "inet":
                        cols[0] = "127.0.0.1:%d" % self.port
                    cols[4] = "n"       # no chroot: the spool is elsewhere
                    line = " ".join(cols) + "\n"
                out.append(line)
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.writelines(out)

    def start(self):
        r = subprocess.run([POSTFIX, "-c", self.etc, "start"], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, "postfix start: " + r.stderr + self.log()
        wait_for(lambda: can_connect(("127.0.0.1", self.port)), 30, what="postfix smtpd")

    def stop(self):
        subprocess.run([POSTFIX, "-c", self.etc, "stop"], capture_output=True, timeout=60)
        pidfile = os.path.join(self.spool, "pid", "master.pid")

        def gone():
            try:
                with open(pidfile) as f:
                    os.kill(int(f.read().split()[0]), 0)
                return False
            except (OSError, ValueError):
                return True
        try:
            wait_for(gone, 30, what="postfix master to exit")
        except Exception:
            subprocess.run([POSTFIX, "-c", self.etc, "abort"], capture_output=True, timeout=60)

    def log(self):
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def status_of(self, rcpt, timeout=60):
        """Postfix's final word on rcpt: the log line's status= text."""
        def find():
            for line in self.log().splitlines():
                if "to=<%s>" % rcpt in line and ("status=sent" in line or
                                                 "status=bounced" in line):
                    return line
            return None
        try:
            wait_for(lambda: find() is not None, timeout, what="postfix result for " + rcpt)
        except Exception as e:
            raise AssertionError("%s\n--- Postfix's log:\n%s" % (e, self.log()[-3000:]))
        return find()


@pytest.fixture
def both(hermod):
    cert, key = make_cert(hermod.path("etc"), "hermod", "mx.example.test")
    hermod.lmtp_port = free_port()
    hermod.conf(mydestination="$myhostname, localhost, example.test, lmtp.test",
                lmtp_listen="127.0.0.1:%d" % hermod.lmtp_port,
                tls_cert_file=cert, tls_key_file=key)
    for u in ("alice", "bob"):
        hermod.add_user(u)
    hermod.add_user("carol", address="carol@far.test")
    hermod.newaliases()
    pf = Postfix(hermod.root, hermod)
    hermod.conf(relayhost="[127.0.0.1]:%d" % pf.port, smtp_tls_security_level="encrypt")
    hermod.start("lmtpd", "queued", "smtpd")
    pf.start()
    try:
        yield hermod, pf
    finally:
        pf.stop()


def send(port, sender, rcpts):
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as s:
        s.ehlo("client.pf.test")
        refused = s.sendmail(sender, rcpts, BODY)
    return refused


def body_of(raw):
    return raw.split(b"\n\n", 1)[1]


def test_postfix_lmtp_into_hermod_lmtpd(both):
    """Postfix's lmtp client, one transaction with three recipients: LMTP
    answers each after DATA; the unknown one becomes Postfix's bounce."""
    h, pf = both
    send(pf.port, "sender@pf.test", ["alice@lmtp.test", "nosuch@lmtp.test", "bob@lmtp.test"])
    for user in ("alice", "bob"):
        line = pf.status_of("%s@lmtp.test" % user)
        assert "status=sent" in line and "250 2." in line, line
        raw = h.wait_messages(user, 1)[0]
        m = email.message_from_bytes(raw)
        assert m["Return-Path"] == "<sender@pf.test>"
        assert m["Delivered-To"] == "%s@lmtp.test" % user
        assert m["Message-ID"] == "<interop@pf.test>"
        assert body_of(raw) == BODY_READ
    line = pf.status_of("nosuch@lmtp.test")
    assert "status=bounced" in line and "550 5.1.1" in line, line


def test_postfix_smtp_into_hermod_smtpd_over_starttls(both):
    """Postfix's smtp client with smtp_tls_security_level = encrypt: it
    must get STARTTLS from smtpd; the unknown recipient is refused at RCPT
    (550 5.1.1) and bounced by Postfix, alice's copy lands."""
    h, pf = both
    send(pf.port, "sender@pf.test", ["alice@example.test", "nosuch@example.test"])
    line = pf.status_of("alice@example.test")
    assert "status=sent" in line and "250 2.0.0" in line, line
    assert "TLS connection established" in pf.log()
    raw = h.wait_messages("alice", 1)[0]
    m = email.message_from_bytes(raw)
    hermod_received = m.get_all("Received")[0]
    assert "ESMTPS" in hermod_received and "TLSv1." in hermod_received, hermod_received
    assert body_of(raw) == BODY_READ
    line = pf.status_of("nosuch@example.test")
    assert "status=bounced" in line and "550 5.1.1" in line, line


def test_hermod_smtp_client_into_postfix_smtpd_over_starttls(both):
    """Hermod's remote delivery to Postfix as relayhost, TLS required:
    Postfix takes it over STARTTLS and hands it on by LMTP to carol."""
    h, pf = both
    refused = send(h.smtp_port, "alice@example.test", ["carol@far.test"])
    assert refused == {}
    try:
        line = pf.status_of("carol@far.test")
    except AssertionError as e:
        raise AssertionError("%s\n--- queued's log:\n%s" % (e, h.log("queued")[-3000:]))
    assert "status=sent" in line, line
    raw = h.wait_messages("carol", 1)[0]
    m = email.message_from_bytes(raw)
    assert m["Return-Path"] == "<alice@example.test>"
    pf_received = m.get_all("Received")[0]
    assert "pf.test" in pf_received and "ESMTPS" in pf_received, pf_received
    assert body_of(raw) == BODY_READ
    wait_for(lambda: "carol@far.test" in h.log("queued") and "TLS" in h.log("queued"), 30,
             what="queued's delivery line")
