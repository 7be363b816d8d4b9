"""Attacks on smtpd's TLS, AUTH and submission listeners (the CVE classes
of other MTAs: weak protocol/cipher offers, renegotiation, handshakes that
never finish, AUTH edge cases, sender spoofing by authenticated users,
password hashes that must never match). What test_tls_auth.py covers is
not repeated here."""

import base64
import socket
import ssl
import subprocess
import time

from hermod import wait_for
from test_smtpd import Client
from test_tls_auth import PASSWORD, b64, ctx, start


def tls_client(hermod, port=None):
    """A Client over implicit TLS (smtps_listen), EHLO sent."""
    raw = socket.create_connection(("127.0.0.1", port or hermod.smtps_port), timeout=10)
    c = Client.__new__(Client)
    c.sock = ctx().wrap_socket(raw, server_hostname="mx.example.test")
    c.buf = b""
    c.greeting = c.reply()
    assert c.cmd("EHLO c")[0] == 250
    return c


def login(c, user="alice", pw=PASSWORD):
    return c.cmd("AUTH PLAIN " + b64("\0%s\0%s" % (user, pw)))


def test_auth_edge_responses(hermod):
    start(hermod, smtpd_auth_failure_limit=100)
    c = tls_client(hermod)
    assert c.cmd("AUTH PLAIN =") == (501, "5.5.2 Error: malformed PLAIN response")
    assert c.cmd("AUTH plain") == (334, "")
    assert c.cmd("") [0] == 501
    assert c.cmd("AUTH CRAM-MD5")[0] == 504
    assert c.cmd("AUTH DIGEST-MD5 xyz") == (504, "5.5.4 Error: unsupported authentication mechanism")
    assert c.cmd("AUTH")[0] in (501, 504)
    assert c.cmd("AUTH PLAIN " + b64("\0alice\0" + PASSWORD)[:-1])[0] == 501   # bad padding
    # LOGIN with an empty name, an empty password
    assert c.cmd("AUTH LOGIN") == (334, "VXNlcm5hbWU6")
    assert c.cmd("=")[0] in (501, 535)
    assert c.cmd("AUTH LOGIN " + b64("alice")) == (334, "UGFzc3dvcmQ6")
    assert c.cmd("=")[0] in (501, 535)
    # names with CR/LF, 8-bit bytes
    assert login(c, "alice\r\nMAIL FROM:<x>")[0] == 535
    assert c.cmd("AUTH PLAIN " + base64.b64encode(b"\0al\xffice\0" + PASSWORD.encode()).decode())[0] == 535
    assert c.cmd("MAIL FROM:<alice@example.test>") == (530, "5.7.0 Authentication required")
    assert login(c)[0] == 235
    c.close()
    assert hermod.sanitizer_reports() == []


def test_legacy_hashes_never_authenticate(hermod):
    """DES (which reads 8 bytes of the password), MD5-crypt and unusable
    hashes never authenticate; SHA-256-crypt still does."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt
    start(hermod, smtpd_auth_failure_limit=100)
    hashes = {"md5": crypt.crypt(PASSWORD, "$1$abcdefgh$"),
              "des": crypt.crypt(PASSWORD, "ab"),
              "bsdi": crypt.crypt(PASSWORD, "_J9..salt"),
              "sha256": crypt.crypt(PASSWORD, "$5$saltsaltsalt$"),
              "star": "*", "bang": "!", "starx": "*" + crypt.crypt(PASSWORD, "$5$s$")}
    assert hashes["md5"].startswith("$1$") and len(hashes["des"]) == 13
    for user, h in hashes.items():
        hermod.add_user(user, extra="password=" + h)
    hermod.newaliases()
    got = {}
    for user, pw in (("md5", PASSWORD), ("des", PASSWORD), ("des", PASSWORD[:8]),
                     ("bsdi", PASSWORD), ("star", "*"), ("bang", "!"),
                     ("starx", PASSWORD), ("sha256", PASSWORD)):
        c = tls_client(hermod)
        got[(user, pw)] = login(c, user, pw)[0]
        c.close()
    want = {k: 235 if k[0] == "sha256" else 535 for k in got}
    assert got == want
    assert hermod.sanitizer_reports() == []


def test_sender_spoofing_by_authenticated_user(hermod):
    start(hermod, smtpd_auth_failure_limit=100)
    hermod.write_aliases("postmaster: bob\nbobalias: bob\n")
    hermod.newaliases()
    c = tls_client(hermod)
    assert login(c)[0] == 235
    res = {}
    for sender in ("BOB@example.test", "bob+x@example.test", '"bob"@example.test',
                   "<@evil.test:bob@example.test>", "bob@example.test.",
                   "bobalias@example.test", "postmaster@example.test",
                   "alice@remote.test", "alice@evil.test", "bob", "alice@[127.0.0.1]",
                   '"alice@evil"@example.test', "alice%evil.test@example.test",
                   "alice@example.test", "ALICE+x@EXAMPLE.test", "", "alice@localhost"):
        arg = sender if sender.startswith("<") else "<%s>" % sender
        r = c.cmd("MAIL FROM:" + arg)
        res[sender] = r
        if r[0] == 250:
            c.cmd("RSET")
    print(res)
    bad = {k: v for k, v in res.items()
           if v[0] == 250 and k not in ("alice@example.test", "ALICE+x@EXAMPLE.test", "",
                                        "alice@localhost")}
    assert bad == {}


def test_parallel_correct_logins_from_one_address(hermod):
    """A web application or an office behind one NAT address logs in from
    several sessions at once with the right password: none of them is
    told "too many failed authentications" (each check is counted as a
    failure while it runs, so that parallel guesses stay within
    smtpd_auth_failure_limit: the surplus waits, it is not refused)."""
    import threading
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt
    start(hermod, smtpd_auth_failure_limit=3)
    slow = crypt.crypt(PASSWORD, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << 10))
    hermod.add_user("app", extra="password=" + slow)
    hermod.newaliases()
    n = 8
    clients = [tls_client(hermod) for _ in range(n)]
    go = threading.Barrier(n)
    codes = []

    def auth(c):
        go.wait(30)
        codes.append(login(c, "app")[0])

    threads = [threading.Thread(target=auth, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for c in clients:
        c.close()
    assert codes == [235] * n
    assert hermod.sanitizer_reports() == []
