"""Attacks on smtpd's TLS, AUTH and submission listeners (the CVE classes
of other MTAs: weak protocol/cipher offers, renegotiation, handshakes that
never finish, AUTH edge cases, sender spoofing by authenticated users,
password hashes that must never match). What test_tls_auth.py covers is
not repeated here."""

import base64
import os
import socket
import ssl
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
                   "alice@remote.test", "alice@evil.test", "bob", "alice@[192.0.2.1]",
                   '"alice@evil"@example.test', "alice%evil.test@example.test",
                   "alice@example.test", "ALICE+x@EXAMPLE.test", "", "alice@localhost",
                   "alice@[127.0.0.1]"):
        arg = sender if sender.startswith("<") else "<%s>" % sender
        r = c.cmd("MAIL FROM:" + arg)
        res[sender] = r
        if r[0] == 250:
            c.cmd("RSET")
    print(res)
    bad = {k: v for k, v in res.items()
           if v[0] == 250 and k not in ("alice@example.test", "ALICE+x@EXAMPLE.test", "",
                                        "alice@localhost", "alice@[127.0.0.1]")}
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


def test_pipelined_commands_after_a_failed_auth(hermod):
    """A client pipelining MAIL after an AUTH that fails gets the 535
    first (after the pause), then 530 to MAIL: nothing runs as the user."""
    start(hermod, smtpd_auth_failure_limit=100)
    c = tls_client(hermod, hermod.smtps_port)
    c.send("AUTH PLAIN %s\r\nMAIL FROM:<alice@example.test>\r\nRCPT TO:<x@remote.test>\r\n"
           "NOOP\r\n" % b64("\0alice\0wrong"))
    assert c.reply()[0] == 535
    assert c.reply() == (530, "5.7.0 Authentication required")
    assert c.reply()[0] == 503
    assert c.reply()[0] == 250
    # and with the right password the pipelined MAIL runs as the user
    c.send("AUTH PLAIN %s\r\nMAIL FROM:<alice@example.test>\r\nRCPT TO:<x@remote.test>\r\n"
           % b64("\0alice\0" + PASSWORD))
    assert [c.reply()[0] for _ in range(3)] == [235, 250, 250]
    c.close()


def client_hello(name="mx.example.test"):
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    o = ctx().wrap_bio(inc, out, server_hostname=name)
    try:
        o.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def smtpd_sockets(hermod):
    fd, n = "/proc/%d/fd" % hermod.procs["smtpd"].pid, 0
    for f in os.listdir(fd):
        try:
            n += os.readlink(os.path.join(fd, f)).startswith("socket:")
        except FileNotFoundError:
            pass        # closed meanwhile
    return n


def test_odd_sni_and_stalled_handshakes(hermod):
    """SNI ending in a backslash and a NUL (Exim CVE-2019-15846), a very
    long SNI, and 200 handshakes cut short then silent: each session and
    its descriptor are freed after smtpd_starttls_timeout, others are
    served meanwhile."""
    start(hermod)
    hello = client_hello("mx.example.test")
    odd = hello.replace(b"mx.example.test", b"mx.example.te\\\0")
    assert len(odd) == len(hello) and odd != hello
    for h in (odd, client_hello("x" * 60 + "." + "y" * 60 + "." + "z" * 60)):
        with socket.create_connection(("127.0.0.1", hermod.smtps_port), timeout=10) as g:
            g.sendall(h)
            try:
                while g.recv(4096):
                    pass
            except (ConnectionResetError, socket.timeout):
                pass
    base = smtpd_sockets(hermod)        # the listeners
    stalled = []
    for i in range(200):
        s = socket.create_connection(("127.0.0.1", hermod.smtps_port), timeout=10)
        s.sendall(hello[:1 + i % (len(hello) - 1)] if i % 4 else hello)
        stalled.append(s)
    wait_for(lambda: smtpd_sockets(hermod) >= base + 150, 10, what="the sessions")
    c = tls_client(hermod)
    assert login(c)[0] == 235
    c.close()
    wait_for(lambda: smtpd_sockets(hermod) == base, 30, what="every stalled session freed")
    for s in stalled:
        s.close()
    assert hermod.procs["smtpd"].poll() is None
    assert hermod.sanitizer_reports() == []


def close_notify(c):
    """Send a close_notify, keep TCP open: the raw socket."""
    raw = socket.socket(fileno=os.dup(c.sock.fileno()))
    try:
        c.sock.unwrap()
    except (ssl.SSLError, OSError):
        pass        # it went out; the replies before it spoil the wait for the peer's
    return raw


def closed_within(raw, limit):
    t0 = time.monotonic()
    raw.settimeout(limit)
    try:
        while raw.recv(4096):
            pass
    except ConnectionResetError:
        pass
    return time.monotonic() - t0 < limit


def test_close_notify_mid_command_and_after_the_dot(hermod):
    """A close_notify in the middle of a command or of DATA ends the
    session at once (no wait for smtpd_timeout) and queues nothing; one
    right after a pipelined message's final dot, before the replies are
    read, loses nothing and delivers once."""
    start(hermod)
    for cut in (b"MAIL FROM:<alice@exa", b"Subject: cut\r\n\r\nhalf a mess"):
        c = tls_client(hermod)
        assert login(c)[0] == 235
        if cut.startswith(b"Subject"):
            assert c.cmd("MAIL FROM:<alice@example.test>")[0] == 250
            assert c.cmd("RCPT TO:<alice@example.test>")[0] == 250
            assert c.cmd("DATA")[0] == 354
        c.send(cut)
        raw = close_notify(c)
        assert closed_within(raw, 10), cut
        c.close()
    c = tls_client(hermod)
    assert login(c)[0] == 235
    c.send(b"MAIL FROM:<alice@example.test>\r\nRCPT TO:<alice@example.test>\r\n"
           b"DATA\r\nSubject: whole\r\n\r\nall of it\r\n.\r\n")
    raw = close_notify(c)
    # replies still unsent when the close_notify came cannot go out any
    # more: the session ends at once, not after the 10 s grace for a
    # last reply
    assert closed_within(raw, 5)
    raw.close()
    c.close()
    hermod.wait_messages("alice", 1)
    time.sleep(1)
    msgs = hermod.messages("alice")
    assert len(msgs) == 1 and b"Subject: whole" in msgs[0], msgs
    assert hermod.sanitizer_reports() == []
