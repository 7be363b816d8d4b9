"""smtpd's limits: connections overall and per client address or prefix
(421 4.7.0), the idle timeout (421 4.4.2), the deadline of a DATA or BDAT
request (smtpd_min_data_rate), the error counter (soft limit slows, hard
limit ends the session), the recipient limit (452 4.5.3), a pipelining
client that never reads, and 2,000 idle sessions held open while another
client is still served promptly."""

import resource
import socket
import time

import pytest

from test_smtpd import ALICE, Client, send_ok, start


def test_per_address_connection_limit(hermod):
    start(hermod, mynetworks="127.0.0.1/32", smtpd_client_connection_count_limit=3)
    held = [Client(hermod.smtp_port, source="127.0.0.2") for _ in range(3)]
    try:
        assert all(c.greeting[0] == 220 for c in held)
        with Client(hermod.smtp_port, source="127.0.0.2") as c:
            assert c.greeting[0] == 421 and c.greeting[1].startswith("4.7.0")
            assert c.closed()
        # another address and trusted clients are not affected
        with Client(hermod.smtp_port, source="127.0.0.3") as c:
            assert c.greeting[0] == 220
        with Client(hermod.smtp_port) as c:
            assert c.greeting[0] == 220
        held.pop().close()
        time.sleep(0.3)
        with Client(hermod.smtp_port, source="127.0.0.2") as c:
            assert c.greeting[0] == 220
    finally:
        for c in held:
            c.close()


def test_connection_limit_counts_a_prefix_as_one_client(hermod):
    """smtpd_client_ipv4_prefix_length (and its IPv6 twin, default 84 as
    in Postfix): clients in one prefix share the per-client limits, so a
    host holding many addresses gets no more connections than one."""
    start(hermod, mynetworks="127.0.0.1/32", smtpd_client_connection_count_limit=2,
          smtpd_client_ipv4_prefix_length=30)
    held = [Client(hermod.smtp_port, source="127.0.1.4"),
            Client(hermod.smtp_port, source="127.0.1.5")]
    try:
        assert all(c.greeting[0] == 220 for c in held)
        with Client(hermod.smtp_port, source="127.0.1.7") as c:   # same /30
            assert c.greeting[0] == 421 and c.greeting[1].startswith("4.7.0")
        with Client(hermod.smtp_port, source="127.0.1.8") as c:   # the next /30
            assert c.greeting[0] == 220
    finally:
        for c in held:
            c.close()


def test_overall_connection_limit(hermod):
    start(hermod, smtpd_max_connections=5)
    held = [Client(hermod.smtp_port) for _ in range(5)]
    try:
        with Client(hermod.smtp_port) as c:
            assert c.greeting[0] == 421 and c.greeting[1].startswith("4.7.0")
    finally:
        for c in held:
            c.close()
    time.sleep(0.3)
    with Client(hermod.smtp_port) as c:
        assert c.greeting[0] == 220


def test_idle_timeout(hermod):
    start(hermod, smtpd_timeout="2s")
    with Client(hermod.smtp_port) as c:
        c.cmd("EHLO x")
        t0 = time.monotonic()
        c.sock.settimeout(10)
        code, text = c.reply()
        assert (code, text[:5]) == (421, "4.4.2")
        assert 1.5 < time.monotonic() - t0 < 6
        assert c.closed()


def test_timeout_in_data(hermod):
    start(hermod, smtpd_timeout="2s")
    with Client(hermod.smtp_port) as c:
        c.cmd("EHLO x")
        c.cmd("MAIL FROM:<bob@remote.test>")
        c.cmd("RCPT TO:<%s>" % ALICE)
        assert c.cmd("DATA")[0] == 354
        c.send(b"Subject: slow\r\n\r\nand then noth")
        c.sock.settimeout(10)
        assert c.reply()[0] == 421
    time.sleep(0.5)
    assert hermod.messages("alice") == []


def test_hard_error_limit(hermod):
    start(hermod, smtpd_hard_error_limit=5)
    with Client(hermod.smtp_port) as c:
        for _ in range(4):
            assert c.cmd("FROB")[0] == 500
        c.send(b"FROB\r\n")
        assert c.reply()[0] == 500
        code, text = c.reply()
        assert (code, text[:5]) == (421, "4.7.0")
        assert c.closed()


def test_soft_error_limit_slows_down(hermod):
    start(hermod, smtpd_soft_error_limit=2, smtpd_error_sleep_time="1s")
    with Client(hermod.smtp_port) as c:
        for _ in range(2):
            c.cmd("FROB")
        t0 = time.monotonic()
        c.cmd("FROB")           # the third error: the session sleeps after it
        c.cmd("NOOP")
        assert time.monotonic() - t0 >= 0.9


def test_recipient_limit(hermod):
    start(hermod, smtpd_recipient_limit=3)
    with Client(hermod.smtp_port) as c:
        c.cmd("EHLO x")
        c.cmd("MAIL FROM:<bob@remote.test>")
        for _ in range(3):
            assert c.cmd("RCPT TO:<%s>" % ALICE)[0] == 250
        code, text = c.cmd("RCPT TO:<%s>" % ALICE)
        assert (code, text[:5]) == (452, "4.5.3")
        assert c.cmd("DATA")[0] == 354
        c.send(b"Subject: three\r\n\r\nx\r\n.\r\n")
        assert c.reply()[0] == 250


def test_pipelining_flood_without_reading(hermod):
    start(hermod, smtpd_junk_command_limit=1000000)   # 50,000 NOOPs
    with Client(hermod.smtp_port) as c:
        c.cmd("EHLO x")
        n = 50000
        c.sock.settimeout(30)
        sender = __import__("threading").Thread(target=lambda: c.send(b"NOOP\r\n" * n))
        sender.start()
        time.sleep(1)           # smtpd stops reading once replies pile up
        got = 0
        while got < n:
            assert c.reply()[0] == 250
            got += 1
        sender.join(30)
        assert c.cmd("QUIT")[0] == 221
    # and the daemon serves others
    with Client(hermod.smtp_port) as c:
        c.cmd("EHLO x")
        send_ok(c)


def test_2000_idle_sessions_and_one_served(hermod):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 4200:
        pytest.skip("RLIMIT_NOFILE hard limit %d too low" % hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 4200), hard))
    start(hermod)
    held = []
    try:
        for i in range(2000):
            s = socket.create_connection(("127.0.0.1", hermod.smtp_port), timeout=10)
            held.append(s)
        # every one of them got its greeting
        for s in held:
            assert s.recv(512).startswith(b"220 ")
        t0 = time.monotonic()
        with Client(hermod.smtp_port) as c:
            c.cmd("EHLO x")
            send_ok(c)
        assert time.monotonic() - t0 < 2.0
        hermod.wait_messages("alice", 1)
    finally:
        for s in held:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def trickle(c, data, every=0.4):
    """A byte every `every` seconds until smtpd answers (or data ends)."""
    import select
    for ch in data:
        if select.select([c.sock], [], [], every)[0]:
            return
        c.send(bytes([ch]))


@pytest.mark.parametrize("how", ["DATA", "BDAT"])
def test_trickled_message_meets_the_request_deadline(hermod, how):
    # a byte every 0.4 s: never a 2 s wait, but 2.5 bytes a second where
    # 100 are due; the request ends 2 s (+ 10 ms a byte) after it began
    start(hermod, smtpd_timeout="2s", smtpd_min_data_rate="100")
    body = b"Subject: slow\r\n\r\n" + b"x" * 41 + b"\r\n"
    with Client(hermod.smtp_port) as c:
        c.cmd("EHLO x")
        c.cmd("MAIL FROM:<bob@remote.test>")
        c.cmd("RCPT TO:<%s>" % ALICE)
        if how == "DATA":
            assert c.cmd("DATA")[0] == 354
        else:
            c.send(b"BDAT %d LAST\r\n" % len(body))
        t0 = time.monotonic()
        trickle(c, body)
        c.sock.settimeout(10)
        code, text = c.reply()
        assert (code, text[:5]) == (421, "4.4.2")
        assert 1.5 < time.monotonic() - t0 < 5
    time.sleep(0.5)
    assert hermod.messages("alice") == []


def test_data_at_twice_the_minimum_rate_outlives_the_timeout(hermod):
    # 200 bytes a second for 4 s: twice smtpd_timeout, each 50 bytes
    # bringing 0.5 s more than the 0.25 s they took
    start(hermod, smtpd_timeout="2s", smtpd_min_data_rate="100")
    with Client(hermod.smtp_port) as c:
        c.cmd("EHLO x")
        c.cmd("MAIL FROM:<bob@remote.test>")
        c.cmd("RCPT TO:<%s>" % ALICE)
        assert c.cmd("DATA")[0] == 354
        t0 = time.monotonic()
        c.send(b"Subject: steady\r\n\r\n")
        for _ in range(16):
            time.sleep(0.25)
            c.send(b"y" * 48 + b"\r\n")
        c.send(b".\r\n")
        code, text = c.reply()
        assert code == 250, text
        assert time.monotonic() - t0 > 3.5
    msgs = hermod.wait_messages("alice", 1)
    assert msgs[0].count(b"y" * 48) == 16


def test_slowloris_command_line(hermod):
    import select
    start(hermod, smtpd_timeout="2s")
    with Client(hermod.smtp_port) as c:
        c.cmd("EHLO x")
        t0 = time.monotonic()
        # a byte every 0.4 s, never a whole line, until smtpd answers
        for ch in b"NOOP" * 20:
            if select.select([c.sock], [], [], 0.4)[0]:
                break
            c.send(bytes([ch]))
        c.sock.settimeout(10)
        code, text = c.reply()
        assert (code, text[:5]) == (421, "4.4.2")
        assert time.monotonic() - t0 < 6
        # and the session is gone soon, trickle or not
        t1 = time.monotonic()
        try:
            while time.monotonic() - t1 < 8:
                c.send(b"x")
                time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert time.monotonic() - t1 < 5


def test_binary_junk_commands(hermod):
    import random
    start(hermod)
    rnd = random.Random(6)
    for _ in range(5):
        junk = bytes(rnd.randrange(256) for _ in range(20000))
        with Client(hermod.smtp_port) as c:
            c.sock.settimeout(10)
            try:
                c.send(junk + b"\r\nQUIT\r\n")
                codes = []
                while True:
                    codes.append(c.reply()[0])
            except (EOFError, ConnectionResetError):
                pass
            # only replies came back, and the session ended (QUIT or 421)
            assert codes and all(200 <= x < 600 for x in codes)
            assert codes[-1] in (221, 421)
    with Client(hermod.smtp_port) as c:
        c.cmd("EHLO x")
        send_ok(c)
