"""DNS blocklists (smtpd_dnsbl_sites, as Postfix's reject_rbl_client):
the client's reversed address is looked up under each zone before the
greeting; a client listed (an A record, or the one given after '=') gets
554 5.7.1 at RCPT with Postfix's text, unless it is in mynetworks. A zone
that fails lists no one. The answers come from FakeDNS (dnsfix.py); the
clients bind to 127.0.0.x addresses, and mynetworks is narrowed so that
they are not trusted."""

import pytest

from dnsfix import FakeDNS
from test_smtpd import ALICE, Client, send_ok, start


@pytest.fixture
def dns():
    d = FakeDNS()
    yield d
    d.close()


def listed(dns, addr, zone, value="127.0.0.2"):
    dns.add(".".join(reversed(addr.split("."))) + "." + zone, "A", value)


def rcpt_from(hermod, source):
    with Client(hermod.smtp_port, source=source) as c:
        assert c.greeting[0] == 220
        assert c.cmd("EHLO client.test")[0] == 250
        assert c.cmd("MAIL FROM:<bob@remote.test>")[0] == 250
        reply = c.cmd("RCPT TO:<%s>" % ALICE)
        c.cmd("QUIT")
    return reply


def test_listed_client_refused_at_rcpt(hermod, dns):
    listed(dns, "127.0.0.20", "bl.example")
    listed(dns, "127.0.0.21", "other.example")
    start(hermod, dns_servers=dns.spec, mynetworks="10.0.0.0/8",
          smtpd_dnsbl_sites="bl.example, other.example")
    code, text = rcpt_from(hermod, "127.0.0.20")
    assert code == 554, text
    assert text == "5.7.1 Service unavailable; Client host [127.0.0.20] blocked using bl.example"
    assert rcpt_from(hermod, "127.0.0.21")[1].endswith("blocked using other.example")
    with Client(hermod.smtp_port, source="127.0.0.22") as c:      # not listed
        c.cmd("EHLO client.test")
        send_ok(c)
    assert len(hermod.wait_messages("alice", 1)) == 1
    log = hermod.log("smtpd")
    assert "reject: RCPT from unknown[127.0.0.20]: 554 5.7.1 Service unavailable" in log
    assert dns.queries.get(("20.0.0.127.bl.example", "A")) == 1


def test_value_filter_and_trusted_clients(hermod, dns):
    listed(dns, "127.0.0.23", "bl.example", value="127.0.0.10")
    listed(dns, "127.0.0.24", "bl.example", value="127.0.0.4")
    listed(dns, "127.0.0.25", "bl.example")
    start(hermod, dns_servers=dns.spec, mynetworks="127.0.0.25/32",
          smtpd_dnsbl_sites="bl.example=127.0.0.4")
    assert rcpt_from(hermod, "127.0.0.23")[0] == 250       # another value
    assert rcpt_from(hermod, "127.0.0.24")[0] == 554
    assert rcpt_from(hermod, "127.0.0.25")[0] == 250       # mynetworks: not asked
    assert ("25.0.0.127.bl.example", "A") not in dns.queries


def test_failing_zone_lists_no_one(hermod, dns):
    dns.servfail.add("27.0.0.127.bad.example")
    listed(dns, "127.0.0.26", "bl.example")
    start(hermod, dns_servers=dns.spec, mynetworks="10.0.0.0/8",
          smtpd_dnsbl_sites="bad.example bl.example")
    assert rcpt_from(hermod, "127.0.0.27")[0] == 250
    assert rcpt_from(hermod, "127.0.0.26")[0] == 554
    assert "dnsbl bad.example: lookup for 127.0.0.27" in hermod.log("smtpd")


def test_authenticated_client_not_refused(hermod, dns):
    """Listed, but logged in (a user on a dynamic address): the mail goes."""
    import smtplib
    from test_tls_auth import PASSWORD, ctx, start as tls_start
    listed(dns, "127.0.0.1", "bl.example")
    tls_start(hermod, dns_servers=dns.spec, mynetworks="10.0.0.0/8",
              smtpd_dnsbl_sites="bl.example")
    with smtplib.SMTP("127.0.0.1", hermod.smtp_port, timeout=10) as s:
        s.starttls(context=ctx())
        s.ehlo("c")
        assert s.docmd("MAIL", "FROM:<x@remote.test>")[0] == 250
        code, text = s.docmd("RCPT", "TO:<%s>" % ALICE)
        assert code == 554 and b"blocked using bl.example" in text
        assert s.docmd("RSET")[0] == 250
        s.login("bob", PASSWORD)
        assert s.docmd("MAIL", "FROM:<bob@example.test>")[0] == 250
        assert s.docmd("RCPT", "TO:<%s>" % ALICE)[0] == 250
    asked = dns.queries.get(("1.0.0.127.bl.example", "A"))
    with smtplib.SMTP("127.0.0.1", hermod.sub_port, timeout=10) as s:    # not asked there
        assert s.ehlo("c")[0] == 250
    assert asked and dns.queries.get(("1.0.0.127.bl.example", "A")) == asked


def test_with_the_client_name_lookup(hermod, dns):
    """Both before the greeting: the name is confirmed and the client is
    listed; the reject line names it."""
    from test_smtpd_peername import named
    named(dns, "127.0.0.28", "spammer.example.test")
    listed(dns, "127.0.0.28", "bl.example")
    start(hermod, dns_servers=dns.spec, mynetworks="10.0.0.0/8",
          smtpd_peername_lookup="yes", smtpd_dnsbl_sites="bl.example")
    assert rcpt_from(hermod, "127.0.0.28")[0] == 554
    log = hermod.log("smtpd")
    assert "connect from spammer.example.test[127.0.0.28]" in log
    assert "reject: RCPT from spammer.example.test[127.0.0.28]: 554 5.7.1" in log
