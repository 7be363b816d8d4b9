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

from hermod import holds_bytes, wait_for
from test_smtpd import ALICE, Client, send_ok, start


def ehlo(port):
    c = Client(port)
    assert c.cmd("EHLO client.test")[0] == 250
    return c


def spool_files(hermod):
    """Queue files left in the spool (none once all is delivered); the
    emptied ones kept for reuse (in free/, or named ahead in queue/) hold
    no mail."""
    out = []
    for root, _, files in os.walk(hermod.path("spool")):
        out += [os.path.join(root, f) for f in files if not f.startswith(".")]
    return [p for p in out if holds_bytes(p)]


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
    # NOOPs by the million: past smtpd_junk_command_limit they would end
    # the session, which is not what this test is about
    start(hermod, tls_cert_file=cert, tls_key_file=key, smtpd_junk_command_limit=1000000)
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


def test_parameters_at_and_past_their_bounds(hermod):
    start(hermod, smtpd_hard_error_limit=100)
    with ehlo(hermod.smtp_port) as c:
        mail = "MAIL FROM:<bob@remote.test> "
        for params, want in (
                ("SIZE=99999999999999999999", "501 5.5.4"),     # past 64 bits
                ("SIZE=", "501 5.5.4"), ("SIZE=1 size=2", "501 5.5.4"),
                ("SIZE=52428801", "552 5.3.4"), ("BODY=garbage", "555 5.5.4"),
                ("ENVID=" + "e" * 101, "501 5.5.4"), ("ENVID=a+ZZ", "501 5.5.4"),
                ("ENVID=a+0D+0Ab", "501 5.5.4"), ("ENVID=a+00", "501 5.5.4"),
                ("AUTH=a+Z", "501 5.5.4"), ("RET=FULL RET=HDRS", "501 5.5.4"),
                (" ".join("P%d=1" % i for i in range(40)), "501 5.5.4")):
            code, text = c.cmd(mail + params)
            assert "%d %s" % (code, text[:5]) == want, params
        # at the bounds: accepted; AUTH= from a client that did not
        # authenticate is taken and dropped (RFC 4954 5)
        assert c.cmd(mail + "SIZE=52428800 ENVID=" + "e" * 100 +
                     " AUTH=alice@example.test")[0] == 250
        rcpt = "RCPT TO:<%s> " % ALICE
        for params, want in (
                ("NOTIFY=", "501 5.5.4"), ("NOTIFY=NEVER,DELAY", "501 5.5.4"),
                ("NOTIFY=SUCCESS,SUCCESS", "501 5.5.4"), ("ORCPT=rfc822;", "501 5.5.4"),
                ("ORCPT=rfc822;" + "o" * 500, "501 5.5.4"), ("ORCPT=rfc822;a+0Ab", "501 5.5.4"),
                ("NOTIFY=FAILURE NOTIFY=DELAY", "501 5.5.4")):
            code, text = c.cmd(rcpt + params)
            assert "%d %s" % (code, text[:5]) == want, params
        assert c.cmd(rcpt + "NOTIFY=SUCCESS,DELAY ORCPT=rfc822;" + "o" * 480)[0] == 250


def test_addresses(hermod):
    start(hermod, smtpd_hard_error_limit=100)
    with ehlo(hermod.smtp_port) as c:
        assert c.cmd('MAIL FROM:<"a b>c\\"d"@remote.test>')[0] == 250
        for rcpt, want in (
                ("<@a.test,@b.test:alice@example.test>", 250),  # route dropped
                ('<"alice"@example.test>', 250), ("<alice@[127.0.0.1]>", 250),
                ("<alice@[IPv6:::1]>", 250), ("<postmaster>", 250),
                ("<alice@[300.1.1.1]>", 501), ("<alice@[tag:x]>", 501),
                ("<alice@[IPv6:::1%eth0]>", 501), ("<al\\ice@example.test>", 501),
                ("<@a.test:>", 501), ("<>", 501), ("<%s@example.test>" % ("a" * 65), 501),
                ("<alice@%sexample.test>" % ("a" * 64 + "."), 501),
                ("<alice@example.test>>", 501), ("alice@example.test", 501),
                (b"<\xe9@example.test>", 501),            # not UTF-8
                (b"<\xc3\xa9@example.test>", 553)):       # UTF-8, no SMTPUTF8
            code, text = c.cmd(b"RCPT TO:" + (rcpt if isinstance(rcpt, bytes)
                                              else rcpt.encode()))
            assert code == want, (rcpt, code, text)
            if code >= 500:
                assert text[:5] in ("5.1.3", "5.6.7"), (rcpt, text)
        assert c.cmd("DATA")[0] == 354
        c.send(b"Subject: addresses\r\n\r\nx\r\n.\r\n")
        assert c.reply()[0] == 250
    msgs = hermod.wait_messages("alice", 1)
    assert msgs[0].startswith(b'Return-Path: <"a b>c\\"d"@remote.test>')


def test_xclient_and_xforward_refused(hermod):
    # Postfix's XCLIENT/XFORWARD let a trusted proxy set the client's
    # identity; smtpd offers neither (queued takes XFORWARD from smtpd only)
    start(hermod, mynetworks="192.0.2.0/24")
    with ehlo(hermod.smtp_port) as c:
        for cmd in ("XCLIENT ADDR=192.0.2.1 NAME=trusted.example",
                    "XFORWARD ADDR=192.0.2.1 NAME=trusted.example"):
            code, text = c.cmd(cmd)
            assert (code, text[:5]) == (500, "5.5.2")
        assert c.cmd("MAIL FROM:<bob@remote.test>")[0] == 250
        assert c.cmd("RCPT TO:<someone@remote.test>")[0] == 554


def test_bdat_reset_cut_short_tiny_and_too_big(hermod):
    # Exim's CVE-2017-16943/16944 class: chunk bookkeeping across RSET,
    # a vanished client, many tiny chunks and a chunk past the size limit
    start(hermod, message_size_limit="4k")
    mail = "MAIL FROM:<bob@remote.test>\r\nRCPT TO:<%s>\r\n" % ALICE
    with ehlo(hermod.smtp_port) as c:
        c.send(mail + "BDAT 9\r\nSubject: ")
        assert [c.reply()[0] for _ in range(3)] == [250, 250, 250]
        assert c.cmd("RSET") == (250, "2.0.0 Ok")      # the message is dropped
        c.send(mail + "BDAT 6000 LAST\r\n")
        c.send(b"z" * 5998 + b"\r\n")                   # read whole, then refused
        assert [c.reply()[0] for _ in range(2)] == [250, 250]
        code, text = c.reply()
        assert (code, text[:5]) == (552, "5.3.4")
        c.send(mail + "BDAT 17\r\nSubject: tiny\r\n\r\n" + "BDAT 1\r\nx" * 300 +
               "BDAT 2 LAST\r\n\r\n")
        replies = [c.reply()[0] for _ in range(2 + 1 + 300 + 1)]
        assert replies == [250] * 304
        c.send(mail + "BDAT 100 LAST\r\nSubject: never whole\r\n")
        assert [c.reply()[0] for _ in range(2)] == [250, 250]
    msgs = hermod.wait_messages("alice", 1)
    time.sleep(1)
    msgs = hermod.messages("alice")
    assert len(msgs) == 1
    assert msgs[0].endswith(b"Subject: tiny\n\n" + b"x" * 300 + b"\n")
    wait_for(lambda: spool_files(hermod) == [], 10, what="an empty spool")


def test_starttls_and_auth_out_of_order(hermod):
    from test_tls_auth import ctx, make_cert
    cert, key = make_cert(hermod, "cert", "mx.example.test")
    start(hermod, tls_cert_file=cert, tls_key_file=key, smtpd_hard_error_limit=100)
    with Client(hermod.smtp_port) as c:
        assert c.cmd("AUTH PLAIN")[0] == 503                 # before EHLO
        assert c.cmd("STARTTLS") == (503, "5.5.1 Error: send EHLO first")
        assert c.cmd("EHLO x")[0] == 250
        assert c.cmd("AUTH PLAIN") == (530, "5.7.0 Must issue a STARTTLS command first")
        assert c.cmd("STARTTLS now")[0] == 501
        assert c.cmd("MAIL FROM:<bob@remote.test>")[0] == 250
        assert c.cmd("STARTTLS") == (503, "5.5.1 Error: MAIL transaction in progress")
        assert c.cmd("RSET")[0] == 250
        assert c.cmd("STARTTLS")[0] == 220
        tls = ctx().wrap_socket(c.sock, server_hostname="mx.example.test")
        c.sock = tls
        assert c.cmd("MAIL FROM:<bob@remote.test>")[0] == 503   # EHLO again first
        assert c.cmd("EHLO x")[0] == 250
        assert c.cmd("STARTTLS") == (503, "5.5.1 Error: TLS already active")
        assert c.cmd("AUTH PLAIN") == (334, "")
        assert c.cmd("*") == (501, "5.0.0 Authentication aborted")
        assert c.cmd("NOOP")[0] == 250


def test_starttls_after_auth_forgets_the_login(hermod):
    # RFC 3207 4.2: after the handshake the client knows nothing it was
    # told before it; nor does the server keep a login made in clear
    import base64
    from test_tls_auth import ctx, make_cert
    cert, key = make_cert(hermod, "cert", "mx.example.test")
    password = plaintext_auth(hermod, tls_cert_file=cert, tls_key_file=key,
                              mynetworks="192.0.2.0/24")
    with ehlo(hermod.smtp_port) as c:
        resp = base64.b64encode(("\0bob\0" + password).encode()).decode()
        assert c.cmd("AUTH PLAIN " + resp)[0] == 235
        assert c.cmd("STARTTLS")[0] == 220
        c.sock = ctx().wrap_socket(c.sock, server_hostname="mx.example.test")
        code, text = c.cmd("EHLO x")
        assert code == 250 and "AUTH PLAIN LOGIN" in text.split("\n")
        assert c.cmd("MAIL FROM:<bob@example.test>")[0] == 250
        assert c.cmd("RCPT TO:<someone@remote.test>")[0] == 554   # no relay


def test_a_delivered_message_forgives_earlier_errors(hermod):
    # Postfix forgives a client's errors once a message was received
    # (smtpd_hard_error_limit counts errors "without delivering mail"): a
    # list server sending message after message, each with a few stale
    # recipients, was cut off with 421 in the middle of its queue.
    start(hermod, smtpd_hard_error_limit=5)
    with ehlo(hermod.smtp_port) as c:
        for i in range(4):
            assert c.cmd("MAIL FROM:<list@remote.test>")[0] == 250
            for j in range(3):
                assert c.cmd("RCPT TO:<gone%d@example.test>" % j)[0] == 550
            assert c.cmd("RCPT TO:<%s>" % ALICE)[0] == 250
            assert c.cmd("DATA")[0] == 354
            c.send(b"Subject: issue %d\r\n\r\nx\r\n.\r\n" % i)
            assert c.reply()[0] == 250
        # without a message in between they add up as before
        for _ in range(4):
            assert c.cmd("FROB")[0] == 500
        assert c.cmd("FROB")[0] == 500
        assert c.reply()[0] == 421
    assert len(hermod.wait_messages("alice", 4)) == 4


def test_command_lines_at_the_bound_and_odd_line_ends(hermod):
    # SMTPD_LINE_MAX: 2047 characters and the CRLF; one more is too long,
    # and the rest of that line is never read as a command
    start(hermod, smtpd_hard_error_limit=100)
    with ehlo(hermod.smtp_port) as c:
        assert c.cmd("NOOP " + "x" * 2042) == (250, "2.0.0 Ok")
        assert c.cmd("NOOP " + "x" * 2043) == (500, "5.5.2 Error: line too long")
        c.send(b"NOOP " + b"y" * 100000 + b" QUIT\r\nNOOP\r\n")
        assert c.reply() == (500, "5.5.2 Error: line too long")
        assert c.reply() == (250, "2.0.0 Ok")
        assert c.cmd(b"") == (500, "5.5.2 Error: command not recognized")
        c.send(b"\n")                                   # a bare LF: an empty line
        assert c.reply()[0] == 500
        c.send(b"\r" * 5000 + b"\r\n")                 # CRs only: too long
        assert c.reply() == (500, "5.5.2 Error: line too long")
        c.send(b"NOOP\r")                              # a CR, then the rest
        time.sleep(0.3)
        c.send(b"\r\n")
        assert c.reply()[0] == 500
        c.send(b"NOOP\n")                              # bare LF ends a command
        assert c.reply() == (250, "2.0.0 Ok")


def test_concurrent_auth_guesses_stay_within_the_failure_limit(hermod):
    # A failure was counted only when its hash check ended, and the limit
    # looked at only when AUTH began: sessions guessing side by side (up
    # to smtpd_client_connection_count_limit of them) all had their
    # passwords checked, past smtpd_auth_failure_limit.
    import base64
    import threading
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt
    slow = crypt.crypt("right", crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << 12))
    hermod.add_user("bob", extra="password=" + slow)
    start(hermod, smtpd_tls_auth_only="no", smtpd_auth_failure_limit=3)
    n = 8
    clients = [ehlo(hermod.smtp_port) for _ in range(n)]
    go = threading.Barrier(n)
    codes = []

    def guess(c, i):
        resp = base64.b64encode(("\0bob\0wrong%d" % i).encode()).decode()
        go.wait(30)
        codes.append(c.cmd("AUTH PLAIN " + resp)[0])

    threads = [threading.Thread(target=guess, args=(c, i)) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for c in clients:
        c.close()
    assert len(codes) == n and set(codes) <= {535, 421}, codes
    checked = hermod.log("smtpd").count("SASL PLAIN authentication failed")
    assert checked <= 3, (checked, codes)
    # and the address is refused now, before any check
    with ehlo(hermod.smtp_port) as c:
        resp = base64.b64encode(b"\0bob\0right").decode()
        code, text = c.cmd("AUTH PLAIN " + resp)
        assert (code, text[:5]) == (421, "4.7.0")


def test_dsn_parameters_bounded_as_sent_and_printable(hermod):
    """RFC 3461: ENVID (100) and ORCPT (500) are bounded as sent, in
    xtext, by smtpd as by queued behind it, and decode to printable text.
    An ENVID of 120 characters that decoded to 40 got 250 at MAIL, then
    555 at DATA from queued; an ORCPT of 300 got 250 at RCPT, then 501
    at DATA; a control byte other than CR/LF went into the queue file
    and the DSN."""
    start(hermod, users=("alice", "bob"), smtpd_hard_error_limit=100)
    with ehlo(hermod.smtp_port) as c:
        mail = "MAIL FROM:<bob@remote.test> "
        for params in ("ENVID=" + "+2B" * 40, "ENVID=a+07b", "ENVID=a+7Fb", "ENVID=a+C3+A9"):
            code, text = c.cmd(mail + params)
            assert (code, text[:5]) == (501, "5.5.4"), params
        assert c.cmd(mail + "ENVID=" + "+2B" * 33)[0] == 250        # 99 as sent
        rcpt = "RCPT TO:<%s> " % ALICE
        for params in ("ORCPT=rfc822;a+01b", "ORCPT=rfc822;a+1Bb",
                       "ORCPT=rfc822;" + "+2B" * 167):               # 514 as sent
            code, text = c.cmd(rcpt + params)
            assert (code, text[:5]) == (501, "5.5.4"), params
        orcpt = "rfc822;" + "x" * 300 + "@example.test"
        assert c.cmd(rcpt + "ORCPT=" + orcpt)[0] == 250
        # 8-bit: an ORCPT of SMTPUTF8 mail may hold UTF-8 (RFC 6533)
        assert c.cmd(rcpt.replace(ALICE, "bob@example.test") + "ORCPT=utf-8;b+C3+A9@example.test")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(b"Subject: dsn\r\n\r\nhello\r\n.\r\n")
        code, text = c.reply()
        assert code == 250, text       # queued took what smtpd took
    # the submission socket (sendmail, pickup) holds the same line
    import smtplib
    s = smtplib.LMTP(hermod.submit_socket)
    try:
        s.ehlo_or_helo_if_needed()
        assert s.docmd("MAIL FROM:<bob@remote.test> ENVID=a+07b")[0] == 501
        assert s.docmd("MAIL FROM:<bob@remote.test> ENVID=" + "+2B" * 40)[0] == 501
        assert s.docmd("MAIL FROM:<bob@remote.test> ENVID=" + "+2B" * 33)[0] == 250
        assert s.docmd("RCPT TO:<%s> ORCPT=rfc822;a+1Bb" % ALICE)[0] == 501
        assert s.docmd("RCPT TO:<%s> ORCPT=rfc822;%s@example.test" % (ALICE, "x" * 300))[0] == 250
    finally:
        s.close()


def test_junk_commands_past_the_limit_count_as_errors(hermod):
    """Postfix's smtpd_junk_command_limit: NOOP, VRFY, RSET, HELO and
    EHLO past the limit each count as an error, so a client cannot hold a
    session for ever with a NOOP every few minutes; a queued message
    starts the count again."""
    start(hermod, smtpd_junk_command_limit=5, smtpd_hard_error_limit=3)
    with ehlo(hermod.smtp_port) as c:                     # EHLO: 1
        for verb in ("NOOP", "VRFY alice", "RSET", "EHLO x"):   # 2..5
            assert c.cmd(verb)[0] in (250, 252), verb
        send_ok(c)                                        # counts start again
        for _ in range(5):
            assert c.cmd("NOOP")[0] == 250
        assert c.cmd("NOOP")[0] == 250                    # error 1
        assert c.cmd("NOOP")[0] == 250                    # error 2
        c.send(b"NOOP\r\n")                               # error 3: the end
        assert c.reply()[0] == 250
        code, text = c.reply()
        assert (code, text[:5]) == (421, "4.7.0"), text
    hermod.wait_messages("alice", 1)


def test_bdat_size_glued_to_last_is_a_syntax_error(hermod):
    """RFC 3030: "BDAT" SP size [SP "LAST"]. "BDAT 3LAST" was taken as a
    last chunk of 3; now, like any BDAT whose size cannot be read, it ends
    the session (501 5.5.4), and nothing is queued. smtpd parses BDAT
    with lmtpd's parser (lib/smtp_proto)."""
    start(hermod)
    with ehlo(hermod.smtp_port) as c:
        assert c.cmd("MAIL FROM:<bob@remote.test>")[0] == 250
        assert c.cmd("RCPT TO:<%s>" % ALICE)[0] == 250
        c.send(b"BDAT 3LAST\r\nhi\n")
        code, text = c.reply()
        assert (code, text[:5]) == (501, "5.5.4"), text
        assert c.sock.recv(100) == b""                  # the session ended
    with ehlo(hermod.smtp_port) as c:
        for arg in ("4 LAST", "4  last "):
            assert c.cmd("MAIL FROM:<bob@remote.test>")[0] == 250
            assert c.cmd("RCPT TO:<%s>" % ALICE)[0] == 250
            c.send(("BDAT %s\r\nhi\r\n" % arg).encode())
            assert c.reply()[0] == 250, arg
    for arg in ("+4 LAST", "4 LASTX", "1099511627777 LAST", "LAST"):
        with ehlo(hermod.smtp_port) as c:
            assert c.cmd("MAIL FROM:<bob@remote.test>")[0] == 250
            c.send(("BDAT %s\r\n" % arg).encode())
            assert c.reply()[0] == 501, arg
            assert c.sock.recv(100) == b"", arg
    hermod.wait_messages("alice", 2)
