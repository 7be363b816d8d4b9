"""TLS, AUTH and submission in smtpd (issue 8), against real smtpd, queued
and lmtpd daemons with a certificate made here with openssl: STARTTLS on
25 and 587, implicit TLS on 465, AUTH PLAIN/LOGIN against the users
table's password hashes, relay only after AUTH, the STARTTLS injection
(CVE-2011-0411), old TLS versions refused, certificate reload under a
live session, handshake garbage and stalls, AUTH failures in a loop."""

import base64
import os
import signal
import smtplib
import socket
import ssl
import subprocess
import time

import pytest

from hermod import free_port, wait_for
from test_smtpd import ALICE, Client

PASSWORD = "s3cret pass"


def make_cert(hermod, name, cn):
    cert, key = hermod.path("etc", name + ".pem"), hermod.path("etc", name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj",
                    "/CN=" + cn, "-keyout", key, "-out", cert],
                   check=True, capture_output=True, timeout=60)
    os.chmod(key, 0o644)    # the daemons may run as `hermod`
    return cert, key


def password_hash(hermod, pw):
    r = hermod.run("hermod", "passwd", input=pw + "\n")
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def start(hermod, **conf):
    cert, key = make_cert(hermod, "cert", "mx.example.test")
    hermod.sub_port, hermod.smtps_port = free_port(), free_port()
    h = password_hash(hermod, PASSWORD)
    hermod.add_user("alice", extra="password=" + h)
    hermod.add_user("bob", extra="password=" + h)
    settings = dict(tls_cert_file=cert, tls_key_file=key,
                    submission_listen="127.0.0.1:%d" % hermod.sub_port,
                    smtps_listen="127.0.0.1:%d" % hermod.smtps_port,
                    smtpd_error_sleep_time="0", smtpd_starttls_timeout="3s")
    settings.update(conf)
    hermod.conf(**settings)
    hermod.newaliases()
    hermod.start()


def ctx():
    c = ssl.create_default_context()
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    return c


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def peer_cn(sock):
    der = sock.getpeercert(binary_form=True)
    r = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-subject"],
                       input=der, capture_output=True, timeout=10)
    return r.stdout.decode()


def test_starttls_and_auth_on_25(hermod):
    start(hermod)
    with smtplib.SMTP("127.0.0.1", hermod.smtp_port, timeout=10) as s:
        s.ehlo("client.test")
        assert s.has_extn("starttls")
        assert not s.has_extn("auth")                 # not in clear
        assert s.docmd("AUTH", "PLAIN " + b64("\0alice\0" + PASSWORD))[0] == 530
        # relay without AUTH: refused (127.0.0.1 is not in mynetworks here)
        s.starttls(context=ctx())
        s.ehlo("client.test")
        assert not s.has_extn("starttls")
        assert "PLAIN" in s.esmtp_features["auth"]
        assert s.docmd("STARTTLS") == (503, b"5.5.1 Error: TLS already active")
        s.login("alice", PASSWORD)
        assert s.docmd("AUTH", "PLAIN " + b64("\0alice\0" + PASSWORD))[0] == 503
        s.sendmail(ALICE, [ALICE], b"Subject: tls\r\n\r\nover TLS\r\n")
    msg = hermod.wait_messages("alice", 1)[0]
    assert b"with ESMTPSA" in msg
    assert b"(using TLSv1.3 with cipher" in msg
    wait_for(lambda: "sasl_username=alice" in hermod.log("smtpd"), 5,
             what="sasl_username in the log")


def test_wrong_password_and_mechanisms(hermod):
    start(hermod, smtpd_auth_failure_limit=10)
    with smtplib.SMTP("127.0.0.1", hermod.sub_port, timeout=10) as s:
        s.ehlo("c")
        assert not s.has_extn("auth")
        assert s.docmd("AUTH", "PLAIN " + b64("\0alice\0" + PASSWORD)) == \
            (530, b"5.7.0 Must issue a STARTTLS command first")
        assert s.docmd("MAIL", "FROM:<alice@example.test>") == \
            (530, b"5.7.0 Authentication required")
        s.starttls(context=ctx())
        assert s.docmd("AUTH", "PLAIN") == (503, b"5.5.1 Error: send EHLO first")
        s.ehlo("c")
        t0 = time.monotonic()
        with pytest.raises(smtplib.SMTPAuthenticationError) as e:
            s.login("alice", "wrong")
        assert e.value.smtp_code == 535
        assert time.monotonic() - t0 >= 0.9           # failures are delayed
        # an unknown login: the same answer, after the same pause
        assert s.docmd("AUTH", "PLAIN " + b64("\0nobody\0" + PASSWORD))[0] == 535
        # authzid must be the login itself
        assert s.docmd("AUTH", "PLAIN " + b64("bob\0alice\0" + PASSWORD))[0] == 535
        assert s.docmd("AUTH", "CRAM-MD5")[0] == 504
        assert s.docmd("AUTH", "PLAIN") == (334, b"")
        assert s.docmd("*") == (501, b"5.0.0 Authentication aborted")
        assert s.docmd("AUTH", "PLAIN") == (334, b"")
        assert s.docmd("not base64!") == (501, b"5.5.2 Error: invalid base64 data")
        assert s.docmd("AUTH", "PLAIN " + "QUFB" * 400)[0] == 500   # too long
        assert s.docmd("AUTH", "LOGIN") == (334, b"VXNlcm5hbWU6")
        assert s.docmd(b64("alice")) == (334, b"UGFzc3dvcmQ6")
        assert s.docmd(b64(PASSWORD))[0] == 235
        assert s.docmd("AUTH", "LOGIN")[0] == 503      # AUTH twice
        # the envelope sender must be alice's
        assert s.docmd("MAIL", "FROM:<bob@example.test>")[0] == 553
        assert s.docmd("MAIL", "FROM:<alice@example.test> AUTH=<>")[0] == 250
        assert s.docmd("RCPT", "TO:<someone@remote.test>")[0] == 250   # relay
        assert s.docmd("RSET")[0] == 250
        assert s.docmd("MAIL", "FROM:<alice+lists@localhost>")[0] == 250


def test_relay_only_after_auth(hermod):
    start(hermod, mynetworks="192.0.2.0/24")
    with smtplib.SMTP("127.0.0.1", hermod.smtp_port, timeout=10) as s:
        s.starttls(context=ctx())
        s.ehlo("c")
        assert s.docmd("MAIL", "FROM:<x@remote.test>")[0] == 250
        assert s.docmd("RCPT", "TO:<y@remote.test>")[0] == 554
        assert s.docmd("RSET")[0] == 250
        s.login("bob", PASSWORD)
        assert s.docmd("MAIL", "FROM:<bob@example.test>")[0] == 250
        assert s.docmd("RCPT", "TO:<y@remote.test>")[0] == 250


def test_smtps_and_swaks(hermod):
    start(hermod)
    with smtplib.SMTP_SSL("127.0.0.1", hermod.smtps_port, timeout=10, context=ctx()) as s:
        s.ehlo("c")
        assert not s.has_extn("starttls")
        s.login("alice", PASSWORD)
        s.sendmail("alice@example.test", [ALICE], b"Subject: smtps\r\n\r\nimplicit\r\n")
    for port, flag in ((hermod.sub_port, "--tls"), (hermod.smtps_port, "--tlsc")):
        r = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % port, flag,
                            "--auth", "PLAIN", "--auth-user", "alice",
                            "--auth-password", PASSWORD, "--from", "alice@example.test",
                            "--to", ALICE, "--timeout", "10"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
    msgs = hermod.wait_messages("alice", 3)
    assert any(b"Subject: smtps" in m for m in msgs)


def test_starttls_injection(hermod):
    start(hermod)
    with Client(hermod.smtp_port) as c:
        assert c.cmd("EHLO c")[0] == 250
        c.send(b"STARTTLS\r\nRSET\r\n")
        assert c.reply() == (220, "2.0.0 Ready to start TLS")
        tls = ctx().wrap_socket(c.sock, server_hostname="mx.example.test")
        tls.settimeout(2)
        # the injected RSET gets no reply: the first reply is to our EHLO
        tls.sendall(b"EHLO c\r\n")
        data = b""
        while not data.endswith(b"\r\n") or b"250 " not in data:
            chunk = tls.recv(4096)
            assert chunk
            data += chunk
        assert data.startswith(b"250-mx.example.test"), data
        assert b"2.0.0 Ok" not in data
        tls.sendall(b"NOOP\r\n")
        data = b""
        while not data.endswith(b"\r\n"):
            chunk = tls.recv(4096)
            assert chunk
            data += chunk
        assert data == b"250 2.0.0 Ok\r\n"
        tls.close()
    assert "discarding 6 byte(s) pipelined after STARTTLS" in hermod.log("smtpd")


def test_old_tls_refused(hermod):
    start(hermod)
    r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % hermod.smtps_port,
                        "-tls1_1"], input="", capture_output=True, text=True, timeout=30)
    assert "Cipher is (NONE)" in r.stdout or r.returncode != 0
    assert "TLSv1.1" not in r.stdout.split("New, ")[-1][:40]
    r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % hermod.smtps_port,
                        "-tls1_2"], input="QUIT\n", capture_output=True, text=True, timeout=30)
    assert "New, TLSv1.2, Cipher is ECDHE" in r.stdout, r.stdout
    assert "220 mx.example.test" in r.stdout


def test_certificate_reload(hermod):
    start(hermod)
    live = smtplib.SMTP_SSL("127.0.0.1", hermod.smtps_port, timeout=10, context=ctx())
    live.ehlo("c")
    assert "CN = mx.example.test" in peer_cn(live.sock)
    cert2, key2 = make_cert(hermod, "cert2", "new.example.test")
    # a broken pair first: the old certificate stays
    hermod.conf(tls_cert_file=cert2, tls_key_file=hermod.path("etc/cert.key"))
    hermod.signal("smtpd", signal.SIGHUP)
    wait_for(lambda: "keeping the previous certificate" in hermod.log("smtpd"), 10,
             what="the failed reload")
    with smtplib.SMTP_SSL("127.0.0.1", hermod.smtps_port, timeout=10, context=ctx()) as s:
        assert "CN = mx.example.test" in peer_cn(s.sock)
    hermod.conf(tls_key_file=key2)
    hermod.signal("smtpd", signal.SIGHUP)
    wait_for(lambda: "certificate %s loaded" % cert2 in hermod.log("smtpd"), 10,
             what="the reload")
    with smtplib.SMTP_SSL("127.0.0.1", hermod.smtps_port, timeout=10, context=ctx()) as s:
        assert "CN = new.example.test" in peer_cn(s.sock)
    # the live session goes on with its old context
    live.login("alice", PASSWORD)
    live.sendmail("alice@example.test", [ALICE], b"Subject: live\r\n\r\nstill here\r\n")
    live.quit()
    hermod.wait_messages("alice", 1)


def test_handshake_garbage_and_stall(hermod):
    start(hermod)
    with socket.create_connection(("127.0.0.1", hermod.smtps_port), timeout=10) as g:
        g.sendall(b"EHLO not-tls\r\n" * 10)
        try:
            data = g.recv(4096)
        except ConnectionResetError:
            data = b""
        assert b"250" not in data
    stalled = socket.create_connection(("127.0.0.1", hermod.smtps_port), timeout=10)
    t0 = time.monotonic()
    try:
        assert stalled.recv(1) == b""     # dropped after smtpd_starttls_timeout
    except ConnectionResetError:
        pass
    assert 2 <= time.monotonic() - t0 < 8
    stalled.close()
    with Client(hermod.smtp_port) as c:      # STARTTLS then nothing
        assert c.cmd("EHLO c")[0] == 250
        assert c.cmd("STARTTLS")[0] == 220
        assert c.closed(timeout=8)
    log = hermod.log("smtpd")
    assert "TLS handshake failed" in log and "timeout during TLS handshake" in log
    with smtplib.SMTP_SSL("127.0.0.1", hermod.smtps_port, timeout=10, context=ctx()) as s:
        assert s.noop()[0] == 250            # others go on


def test_auth_failures_421(hermod):
    start(hermod, smtpd_auth_failure_limit=3)
    with smtplib.SMTP("127.0.0.1", hermod.sub_port, timeout=10) as s:
        s.starttls(context=ctx())
        s.ehlo("c")
        codes = []
        for _ in range(3):
            codes.append(s.docmd("AUTH", "PLAIN " + b64("\0alice\0nope"))[0])
            if codes[-1] == 421:
                break
        assert codes == [535, 535, 421]
    # the count is per address: a new session is refused at AUTH at once
    with smtplib.SMTP_SSL("127.0.0.1", hermod.smtps_port, timeout=10, context=ctx()) as s:
        s.ehlo("c")
        assert s.docmd("AUTH", "PLAIN " + b64("\0alice\0" + PASSWORD))[0] == 421


def test_submission_adds_message_id_and_date(hermod):
    start(hermod)
    with smtplib.SMTP("127.0.0.1", hermod.sub_port, timeout=10) as s:
        s.starttls(context=ctx())
        s.login("alice", PASSWORD)
        s.sendmail("alice@example.test", [ALICE], b"Subject: bare\r\n\r\nbody\r\n")
        s.sendmail("alice@example.test", [ALICE],
                   b"Subject: whole\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
                   b"Message-ID: <keep@client.test>\r\n\r\nbody\r\n")
        s.sendmail("alice@example.test", [ALICE], b"Subject: no body\r\n")
    with smtplib.SMTP("127.0.0.1", hermod.smtp_port, timeout=10) as s:
        s.sendmail("x@remote.test", [ALICE], b"Subject: port25\r\n\r\nbody\r\n")
    msgs = {}
    for m in hermod.wait_messages("alice", 4):
        subj = [ln for ln in m.split(b"\n") if ln.startswith(b"Subject:")][0].strip()
        msgs[subj] = m
    bare = msgs[b"Subject: bare"]
    head, body = bare.split(b"\n\n", 1) if b"\r\n\r\n" not in bare else bare.split(b"\r\n\r\n", 1)
    assert b"Message-ID: <" in head and b"@mx.example.test>" in head
    assert b"\nDate: " in head
    assert body.strip() == b"body"
    whole = msgs[b"Subject: whole"]
    assert whole.count(b"Message-ID:") == 1 and b"<keep@client.test>" in whole
    assert whole.count(b"Date:") == 1
    nobody = msgs[b"Subject: no body"]
    assert b"Message-ID: <" in nobody and b"\nDate: " in nobody
    assert b"Message-ID" not in msgs[b"Subject: port25"]


def test_password_hash_kinds(hermod):
    """AUTH checks SHA-512-crypt, bcrypt and yescrypt hashes (whatever
    libcrypt makes for `hermod passwd`) and refuses a locked one."""
    start(hermod)
    sha512 = subprocess.run(["openssl", "passwd", "-6", PASSWORD], capture_output=True,
                            text=True, check=True, timeout=30).stdout.strip()
    assert sha512.startswith("$6$")
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt
    bcrypt = crypt.crypt(PASSWORD, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << 5))
    assert bcrypt.startswith("$2")
    hermod.add_user("carol", extra="password=" + sha512)
    hermod.add_user("dave", extra="password=" + bcrypt)
    hermod.add_user("erin", extra="password=!" + sha512)        # locked
    hermod.newaliases()
    for user, ok in (("alice", True), ("carol", True), ("dave", True), ("erin", False)):
        with smtplib.SMTP_SSL("127.0.0.1", hermod.smtps_port, timeout=10, context=ctx()) as s:
            s.ehlo("c")
            code = s.docmd("AUTH", "PLAIN " + b64("\0%s\0%s" % (user, PASSWORD)))[0]
            assert code == (235 if ok else 535), user


def test_mismatched_key_at_start(hermod):
    """A key that does not belong to the certificate stops smtpd at start
    with an error naming the files."""
    cert, _ = make_cert(hermod, "cert", "mx.example.test")
    _, key2 = make_cert(hermod, "other", "other.example.test")
    hermod.conf(tls_cert_file=cert, tls_key_file=key2)
    with pytest.raises(RuntimeError) as e:
        hermod.start("smtpd")
    assert "smtpd exited" in str(e.value)
    log = hermod.log("smtpd")
    assert "TLS" in log and (cert in log or key2 in log), log


def test_slow_hash_does_not_stall_others(hermod):
    """A costly bcrypt hash (~1 s) is computed off the event loop: another
    session is served meanwhile, and the login still succeeds."""
    import threading
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt
    start(hermod)
    slow = crypt.crypt(PASSWORD, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << 14))
    hermod.add_user("slow", extra="password=" + slow)
    hermod.newaliases()
    result = {}

    def login():
        with smtplib.SMTP_SSL("127.0.0.1", hermod.smtps_port, timeout=30,
                              context=ctx()) as s:
            s.ehlo("c")
            t0 = time.monotonic()
            result["code"] = s.docmd("AUTH", "PLAIN " + b64("\0slow\0" + PASSWORD))[0]
            result["took"] = time.monotonic() - t0

    with Client(hermod.smtp_port) as other:
        assert other.cmd("EHLO other")[0] == 250
        t = threading.Thread(target=login)
        t.start()
        time.sleep(0.3)                     # the hash is being computed now
        t0 = time.monotonic()
        assert other.cmd("NOOP")[0] == 250
        noop = time.monotonic() - t0
        t.join(60)
    assert result["code"] == 235
    assert noop < result["took"] / 2, (noop, result)
