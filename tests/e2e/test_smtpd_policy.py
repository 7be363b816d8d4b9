"""smtpd's relay policy, tried from a client outside mynetworks (bound to
127.0.0.2 while mynetworks is 127.0.0.1/32): remote recipients and every
classic trick to make a local address relay are 554 5.7.1; local
recipients are looked up at RCPT; postmaster is always accepted; the
trusted client may relay."""

import pytest

from test_smtpd import ALICE, Client, send_ok, start

OUTSIDE = "127.0.0.2"
DENIED = (554, "5.7.1")

TRICKS = [
    "user@elsewhere.test",                      # plain relay
    "user%elsewhere.test@example.test",         # percent hack
    "elsewhere.test!user@example.test",         # bang path
    "\"user@elsewhere.test\"@example.test",     # quoted @
    "\"user%elsewhere.test\"@example.test",
    "@example.test:user@elsewhere.test",        # source route (dropped)
    "@mx.example.test,@example.test:user@elsewhere.test",
    "user@[192.0.2.1]",                         # address literal
    "user@elsewhere.test.example",
    "alice@example.test.elsewhere.test",
    "user@EXAMPLE.TEST.evil",
]


def outside(hermod):
    c = Client(hermod.smtp_port, source=OUTSIDE)
    assert c.cmd("EHLO outside.example")[0] == 250
    assert c.cmd("MAIL FROM:<bob@remote.test>")[0] == 250
    return c


@pytest.fixture
def policy(hermod):
    start(hermod, mynetworks="127.0.0.1/32", smtpd_hard_error_limit=100)
    return hermod


def test_relay_tricks_denied(policy):
    with outside(policy) as c:
        for rcpt in TRICKS:
            code, text = c.cmd("RCPT TO:<%s>" % rcpt)
            assert (code, text[:5]) == DENIED, rcpt
            assert "Relay access denied" in text
        assert c.cmd("RCPT TO:<user@elsewhere.test@example.test>")[0] == 501
        assert c.cmd("DATA")[0] == 503
    log = policy.log("smtpd")
    assert ("NOQUEUE: reject: RCPT from unknown[127.0.0.2]: 554 5.7.1 "
            "<user%elsewhere.test@example.test>: Relay access denied; "
            "from=<bob@remote.test> to=<user%elsewhere.test@example.test> "
            "proto=ESMTP helo=<outside.example>") in log


def test_local_recipients_checked_at_rcpt(policy):
    policy.write_aliases("postmaster: alice\nsales: alice\n")
    policy.newaliases()
    with outside(policy) as c:
        assert c.cmd("RCPT TO:<%s>" % ALICE)[0] == 250
        assert c.cmd("RCPT TO:<ALICE@Example.TEST>")[0] == 250
        assert c.cmd("RCPT TO:<sales@example.test>")[0] == 250
        assert c.cmd("RCPT TO:<alice@localhost>")[0] == 250
        code, text = c.cmd("RCPT TO:<nobody@example.test>")
        assert (code, text[:5]) == (550, "5.1.1")
        assert c.cmd("RCPT TO:<postmaster@example.test>")[0] == 250
        assert c.cmd("RCPT TO:<Postmaster>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(b"Subject: in\r\n\r\nfrom outside\r\n.\r\n")
        assert c.reply()[0] == 250
    policy.wait_messages("alice", 1)


def test_trusted_client_may_relay(policy):
    with Client(policy.smtp_port) as c:      # 127.0.0.1
        c.cmd("EHLO inside")
        assert c.cmd("MAIL FROM:<alice@example.test>")[0] == 250
        assert c.cmd("RCPT TO:<user@elsewhere.test>")[0] == 250
        assert c.cmd("RCPT TO:<nobody@example.test>")[0] == 550   # still looked up
        assert c.cmd("RSET")[0] == 250


def test_ipv4_mapped_and_cidr(hermod):
    start(hermod, mynetworks="127.0.0.0/31, [::1]/128")
    with Client(hermod.smtp_port, source="127.0.0.1") as c:
        c.cmd("EHLO a")
        c.cmd("MAIL FROM:<a@b.test>")
        assert c.cmd("RCPT TO:<x@elsewhere.test>")[0] == 250
    with Client(hermod.smtp_port, source="127.0.0.2") as c:
        c.cmd("EHLO a")
        c.cmd("MAIL FROM:<a@b.test>")
        assert c.cmd("RCPT TO:<x@elsewhere.test>")[0] == 554


def test_table_failure_is_tempfail(policy):
    import os
    os.unlink(policy.path("etc/users.db"))      # "run newaliases": TEMPFAIL
    with outside(policy) as c:
        code, text = c.cmd("RCPT TO:<%s>" % ALICE)
        assert (code, text[:5]) == (451, "4.3.0")
