"""smtpd under the attacks other MTAs' CVE batteries try (Exim's 21Nails,
Postfix, OpenSMTPD, Sendmail) and the odd things real clients do: the
recipient limit under pipelining, parameter and address parsing at and
past the bounds, BDAT out of place and cut short, NUL bytes and lines at
the line limit, XCLIENT/XFORWARD from the outside, AUTH and STARTTLS out
of order. Each test checks the replies (with their enhanced status
codes), that accepted mail arrives whole and refused or broken mail does
not arrive at all; the fixture fails a test on any sanitizer report in
the daemons' logs."""

import os
import socket
import time

from hermod import wait_for
from test_smtpd import ALICE, Client, start


def ehlo(port):
    c = Client(port)
    assert c.cmd("EHLO client.test")[0] == 250
    return c


def spool_files(hermod):
    """Queue files left in the spool (none once all is delivered)."""
    out = []
    for root, _, files in os.walk(hermod.path("spool")):
        out += [os.path.join(root, f) for f in files if not f.startswith(".")]
    return out


def test_recipients_past_the_limit_do_not_end_the_session(hermod):
    # A pipelining client sends all its recipients, then DATA (RFC 2920);
    # the surplus gets 452 4.5.3, to be sent again in another transaction
    # (RFC 5321 4.5.3.1.10). Counted as errors they hit the hard error
    # limit (20) and the session ended with 421 before the DATA, at every
    # retry: the message never went anywhere.
    start(hermod, smtpd_recipient_limit=3)
    with ehlo(hermod.smtp_port) as c:
        n = 30
        c.send("MAIL FROM:<bob@remote.test>\r\n" +
               "RCPT TO:<%s>\r\n" % ALICE * n + "DATA\r\n")
        assert c.reply()[0] == 250
        replies = [c.reply() for _ in range(n)]
        assert [r[0] for r in replies] == [250] * 3 + [452] * (n - 3)
        assert all(r[1].startswith("4.5.3 ") for r in replies[3:])
        assert c.reply()[0] == 354
        c.send(b"Subject: many\r\n\r\nall of them\r\n.\r\n")
        assert c.reply()[0] == 250
        assert c.cmd("QUIT")[0] == 221
    msgs = hermod.wait_messages("alice", 1)
    assert b"all of them" in msgs[0]


def plaintext_auth(hermod, **conf):
    from test_tls_auth import PASSWORD, password_hash
    hermod.add_user("bob", extra="password=" + password_hash(hermod, PASSWORD))
    start(hermod, smtpd_tls_auth_only="no", **conf)
    return PASSWORD


def test_too_long_auth_response_ends_the_exchange(hermod):
    # RFC 4954 4: a response too long for the buffer fails the AUTH with
    # 500 5.5.6. The engine's line limit used to answer it as a command
    # line (500 5.5.2) and leave the exchange open: the client's next
    # command was then read as a base64 response.
    plaintext_auth(hermod)
    with ehlo(hermod.smtp_port) as c:
        assert c.cmd("AUTH PLAIN") == (334, "")
        code, text = c.cmd("A" * 5000)
        assert (code, text[:5]) == (500, "5.5.6")
        assert c.cmd("NOOP") == (250, "2.0.0 Ok")
        assert c.cmd("AUTH LOGIN") == (334, "VXNlcm5hbWU6")
        code, text = c.cmd("QUFB" * 1000)
        assert (code, text[:5]) == (500, "5.5.6")
        assert c.cmd("MAIL FROM:<bob@remote.test>")[0] == 250


def test_auth_plain_with_more_nul_bytes_is_malformed(hermod):
    # RFC 4616 2: authzid NUL authcid NUL passwd, passwd without NUL. A
    # third NUL cut the password there, so "password NUL anything" was a
    # valid login; LOGIN already refused a password holding a NUL.
    import base64
    password = plaintext_auth(hermod, smtpd_auth_failure_limit=20)
    with ehlo(hermod.smtp_port) as c:
        for bad in ("\0bob\0%s\0junk" % password, "\0bob\0%s\0" % password):
            resp = base64.b64encode(bad.encode()).decode()
            code, text = c.cmd("AUTH PLAIN " + resp)
            assert (code, text[:5]) == (501, "5.5.2"), bad
        resp = base64.b64encode(("\0bob\0" + password).encode()).decode()
        assert c.cmd("AUTH PLAIN " + resp)[0] == 235


def test_tls_client_that_never_reads_is_not_read_either(hermod):
    # Under TLS the filter encrypted every reply into the socket's own
    # buffer at once, so smtpd's check on unsent replies (output_max) saw
    # nothing: a client pipelining NOOPs without reading made smtpd read
    # on and hold all the replies, its memory growing without bound (one
    # client could take the daemon down). Now reading stops, the client's
    # writes block, and the session goes on once the client reads.
    import select
    import ssl
    from test_tls_auth import ctx, make_cert
    cert, key = make_cert(hermod, "cert", "mx.example.test")
    start(hermod, tls_cert_file=cert, tls_key_file=key)
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    raw.settimeout(10)
    raw.connect(("127.0.0.1", hermod.smtp_port))
    c = Client.__new__(Client)
    c.sock, c.buf = raw, b""
    assert c.reply()[0] == 220
    assert c.cmd("EHLO x")[0] == 250
    assert c.cmd("STARTTLS")[0] == 220
    tls = ctx().wrap_socket(raw, server_hostname="mx.example.test")
    tls.setblocking(False)
    piece = b"NOOP\r\n" * 10000
    pending, sent, cap = piece, 0, 64 * 1024 * 1024
    while sent < cap:
        try:
            n = tls.send(pending)           # a retry passes the same buffer
            sent += n
            pending = pending[n:] or piece
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
            if not select.select([], [tls], [], 3)[1]:
                break               # smtpd stopped reading: as it should
            time.sleep(0.01)
    assert sent < cap, "smtpd read %d bytes from a client that reads nothing" % sent
    # the client reads now: every NOOP is answered, then QUIT
    todo = pending + b"QUIT\r\n"        # what the last send tried, first
    nops = (sent + len(pending)) // 6
    got = bytearray()
    deadline = time.monotonic() + 180
    while not got.endswith(b"221 2.0.0 Bye\r\n") and time.monotonic() < deadline:
        select.select([tls], [tls] if todo else [], [], 1)
        try:
            if todo:
                todo = todo[tls.send(todo):]
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
            pass
        try:
            while True:
                chunk = tls.recv(1 << 20)
                if not chunk:
                    break
                got += chunk
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
            pass
    tls.close()
    assert got.endswith(b"221 2.0.0 Bye\r\n"), got[-200:]
    assert got.count(b"250 2.0.0 Ok\r\n") == nops
    print("sent", sent)
