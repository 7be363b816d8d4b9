"""End-to-end tests of the tables (issue 3): newaliases builds aliases.db
and users.db, `hermod lookup` explains where mail goes, errors are listed
with file:line and leave the old table in place, a rebuild never makes a
concurrent lookup fail, and `hermod passwd` prints usable hashes.

Only bin/newaliases and bin/hermod are needed (no daemons)."""

import os
import subprocess
import threading
import time

import pytest


def setup_tables(h, aliases, users=()):
    h.conf(mydestination="example.test, localhost", local_system_users="no")
    h.write_aliases(aliases)
    for u in users:
        h.add_user(*u) if isinstance(u, tuple) else h.add_user(u)
    return h.newaliases()


def lookup(h, addr):
    r = h.run("hermod", "-c", h.conf_path, "lookup", addr)
    return r.returncode, r.stdout


ALIASES = """\
# test aliases
postmaster: alice
sales: alice,
    bob@example.test, carol@remote.example
  "|/usr/bin/ticket --queue sales"
"Team Lead": bob
archive: /var/log/archive
members: :include:%(inc)s
self: self, alice
loop1: loop2
loop2: loop1
"""


def write(path, text, mode=None):
    with open(path, "w") as f:
        f.write(text)
    if mode is not None:
        os.chmod(path, mode)


def test_newaliases_builds_both_tables(hermod):
    inc = hermod.path("etc/members.inc")
    write(inc, "# list members\nalice\nbob, dave@remote.example\n")
    r = setup_tables(hermod, ALIASES % {"inc": inc}, ["alice", ("bob", hermod.path("mail/bob.mbox"))])
    assert r.returncode == 0
    assert os.path.getsize(hermod.path("etc/aliases.db")) > 0
    assert os.path.getsize(hermod.path("etc/users.db")) > 0
    assert not [f for f in os.listdir(hermod.path("etc")) if ".tmp" in f]
    r = hermod.run("newaliases", "-c", hermod.conf_path, "-v")
    assert "aliases.db: 8 aliases entries" in r.stdout
    assert "users.db: 2 users entries" in r.stdout


def test_lookup_outputs(hermod):
    inc = hermod.path("etc/members.inc")
    write(inc, "# list members\nalice\nbob, dave@remote.example\n")
    bob_mbox = hermod.path("mail/bob.mbox")
    setup_tables(hermod, ALIASES % {"inc": inc}, ["alice", ("bob", bob_mbox)])
    alice_md = hermod.path("mail/alice") + "/"

    rc, out = lookup(hermod, "alice@example.test")
    assert rc == 0
    assert out == ("alice@example.test: local mailbox %s (Maildir), owner %s "
                   "uid=%d gid=%d, from the users table (alice)\n"
                   % (alice_md, owner(hermod.uid), hermod.uid, hermod.gid))

    rc, out = lookup(hermod, "Sales@Example.TEST")
    lines = out.splitlines()
    assert lines[0] == "Sales@Example.TEST: alias"
    assert lines[1].startswith("  alice@Example.TEST: local mailbox %s (Maildir)" % alice_md)
    assert lines[2].startswith("  bob@example.test: local mailbox %s (mbox)" % bob_mbox)
    assert lines[3] == "  carol@remote.example: remote: would be delivered by MX lookup"
    assert lines[4] == ("  /usr/bin/ticket --queue sales: command: rejected: "
                        "550 5.3.0 delivery to commands/files is not enabled")
    assert rc == 1      # the command target would be refused

    rc, out = lookup(hermod, "members@example.test")
    assert rc == 0
    assert "  %s: :include: file" % inc in out
    assert "    dave@remote.example: remote" in out

    rc, out = lookup(hermod, "team lead@example.test")
    assert rc == 0 and "bob@example.test: local mailbox" in out

    rc, out = lookup(hermod, "nobody@example.test")
    assert rc == 1
    assert out == "nobody@example.test: rejected: 550 5.1.1 unknown user\n"

    rc, out = lookup(hermod, "alice+lists@example.test")
    assert rc == 0 and "(alice)" in out

    rc, out = lookup(hermod, "loop1@example.test")
    assert rc == 1 and "550 5.4.6 alias loop" in out

    rc, out = lookup(hermod, "self@example.test")
    assert "  self@example.test: rejected: 550 5.1.1" in out  # self-reference = the mailbox

    rc, out = lookup(hermod, "someone@remote.example")
    assert rc == 0
    assert out == "someone@remote.example: remote: would be delivered by MX lookup\n"
    hermod.conf(relayhost="[smarthost.example]:2525")
    rc, out = lookup(hermod, "someone@remote.example")
    assert "relayhost [smarthost.example]:2525" in out

    rc, out = lookup(hermod, "PostMaster@example.test")
    assert rc == 0 and "alice@example.test: local mailbox" in out


def owner(uid):
    import pwd
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return "?"


def test_errors_listed_and_old_table_kept(hermod):
    setup_tables(hermod, "old: alice\n", ["alice"])
    db = hermod.path("etc/aliases.db")
    before = open(db, "rb").read()
    with open(hermod.path("etc/aliases"), "wb") as f:
        f.write(b"good: alice\n"
                b"no colon here\n"
                b"bin\x00ary: x\n"
                b"long: " + b"x" * 70000 + b"\n"
                b"e:\n"
                b"new: alice\n")
    r = hermod.run("newaliases", "-c", hermod.conf_path)
    assert r.returncode != 0
    err = r.stderr
    src = hermod.path("etc/aliases")
    assert "%s:2: missing ':'" % src in err
    assert "%s:3: NUL byte in line" % src in err
    assert "%s:4: line longer than" % src in err
    assert "%s:5: no targets" % src in err
    assert "4 errors" in err
    assert open(db, "rb").read() == before
    assert not [f for f in os.listdir(hermod.path("etc")) if ".tmp" in f]
    assert lookup(hermod, "old@example.test")[0] == 0
    assert "alias" not in lookup(hermod, "new@example.test")[1]


def test_users_errors_and_missing_file(hermod):
    setup_tables(hermod, "a: b\n")
    write(hermod.path("etc/users"), "alice relative/path\nbob /m/bob uid=no-such-user-x\n"
                                    "carol /m/carol quota=lots\n")
    r = hermod.run("newaliases", "-c", hermod.conf_path)
    assert r.returncode != 0
    src = hermod.path("etc/users")
    assert "%s:1: MAILBOX must be an absolute path" % src in r.stderr
    assert "%s:2: uid=no-such-user-x: no such user" % src in r.stderr
    assert "%s:3: bad quota" % src in r.stderr
    os.unlink(hermod.path("etc/aliases"))
    r = hermod.run("newaliases", "-c", hermod.conf_path)
    assert r.returncode != 0
    assert "cannot open" in r.stderr


def test_duplicate_names_first_wins(hermod):
    r = setup_tables(hermod, "dup: alice\nother: bob\nDUP: bob\n", ["alice", "bob"])
    assert r.returncode == 0
    src = hermod.path("etc/aliases")
    assert ('%s:3: warning: duplicate entry "dup" (first at line 1' % src) in r.stderr
    rc, out = lookup(hermod, "dup@example.test")
    assert "alice@example.test: local mailbox" in out
    assert "bob@example.test" not in out


def test_newaliases_warns_when_mail_for_root_cannot_be_delivered(hermod):
    # root is a system account (uid 0): no delivery runs with its rights,
    # so without an alias its mail would wait in the queue until it expires
    hermod.conf(local_system_users="yes")
    hermod.add_user("alice")
    for aliases, warned in (("postmaster: root\n", True),
                            ("postmaster: root\nroot: alice\n", False)):
        hermod.write_aliases(aliases)
        r = hermod.newaliases()
        assert ("warning: no alias for root" in r.stderr) == warned, r.stderr
    # nor when the users table gives root a mailbox of its own
    hermod.write_aliases("postmaster: root\n")
    hermod.add_user("root")
    assert "no alias for root" not in hermod.newaliases().stderr
    # nor when system accounts are not recipients (root is then refused
    # at RCPT, not left in the queue)
    hermod.conf(local_system_users="no")
    with open(hermod.path("etc/users"), "w") as f:
        f.write("")
    assert "no alias for root" not in hermod.newaliases().stderr


def test_db_mode_follows_source(hermod):
    setup_tables(hermod, "a: b\n", ["alice"])
    os.chmod(hermod.path("etc/users"), 0o640)
    hermod.newaliases()
    assert os.stat(hermod.path("etc/users.db")).st_mode & 0o777 == 0o640


def test_rebuild_while_looking_up(hermod):
    """Readers never see a missing or half-written table during rebuilds,
    and see the new entries afterwards."""
    setup_tables(hermod, "stable: alice\n", ["alice"])
    failures, count = [], [0]
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            rc, out = lookup(hermod, "stable@example.test")
            count[0] += 1
            if rc != 0 or "alice@example.test: local mailbox" not in out:
                failures.append((rc, out))

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for i in range(15):
            body = "stable: alice\n" + "".join("n%d: alice\n" % j for j in range(i * 500))
            hermod.write_aliases(body + "new%d: alice\n" % i)
            hermod.newaliases()
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not failures, failures[:3]
    assert count[0] > 10
    rc, out = lookup(hermod, "new14@example.test")
    assert rc == 0 and "new14@example.test: alias" in out


def test_passwd_hashes(hermod):
    r = hermod.run("hermod", "passwd", input="s3cret\n")
    assert r.returncode == 0
    h = r.stdout.strip()
    assert h.startswith("$y$") or h.startswith("$6$")
    r = hermod.run("hermod", "passwd", "-m", "sha512", input="s3cret\n")
    h6 = r.stdout.strip()
    assert r.returncode == 0 and h6.startswith("$6$")
    try:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import crypt
    except ImportError:
        crypt = None
    if crypt is not None:
        assert crypt.crypt("s3cret", h6) == h6
        assert crypt.crypt("wrong", h6) != h6
    assert hermod.run("hermod", "passwd", input="").returncode != 0
    assert hermod.run("hermod", "passwd", "-m", "md5", input="x\n").returncode == 2
    # the hash works in the users file
    hermod.conf(mydestination="example.test")
    write(hermod.path("etc/users"), "alice %s password=%s\n" % (hermod.path("mail/alice/"), h6))
    hermod.newaliases()


def test_lookup_tempfail_and_system_accounts(hermod):
    setup_tables(hermod, "a: alice\n", ["alice"])
    os.unlink(hermod.path("etc/aliases.db"))    # the text is there: run newaliases
    rc, out = lookup(hermod, "a@example.test")
    assert rc == 75
    assert out == "a@example.test: deferred: 451 4.3.0 aliases table unavailable\n"
    hermod.newaliases()
    os.unlink(hermod.path("etc/users.db"))
    rc, out = lookup(hermod, "a@example.test")
    assert rc == 75 and "alice@example.test: deferred: 451 4.3.0 users table unavailable" in out
    hermod.newaliases()
    # system accounts, with Postfix's mail_spool_directory for an empty home_mailbox
    import pwd
    me = pwd.getpwuid(os.getuid())
    hermod.conf(local_system_users="yes", home_mailbox="", mail_spool_directory="/var/mail")
    rc, out = lookup(hermod, "%s@example.test" % me.pw_name)
    assert rc == 0
    assert out == ("%s@example.test: local mailbox /var/mail/%s (mbox), owner %s uid=%d gid=%d, "
                   "from the system account %s\n" % (me.pw_name, me.pw_name, me.pw_name,
                                                     me.pw_uid, me.pw_gid, me.pw_name))
    hermod.conf(home_mailbox="Maildir/")
    rc, out = lookup(hermod, "%s+tag@example.test" % me.pw_name)
    assert rc == 0 and "local mailbox %s/Maildir/ (Maildir)" % me.pw_dir.rstrip("/") in out


def passwd_on_tty(hermod, first, second):
    """Run hermod passwd with a terminal on stdin/stderr; returns
    (exit status, stdout, what the terminal showed)."""
    import pty
    import select
    master, slave = pty.openpty()
    e = dict(os.environ, HERMOD_CONF=hermod.conf_path)
    p = subprocess.Popen([hermod.bin("hermod"), "passwd"], stdin=slave, stderr=slave,
                         stdout=subprocess.PIPE, env=e)
    os.close(slave)
    shown = b""

    def wait_for_prompt(word):
        nonlocal shown
        deadline = time.monotonic() + 10
        while word not in shown and time.monotonic() < deadline:
            r, _, _ = select.select([master], [], [], 0.2)
            if r:
                try:
                    shown += os.read(master, 1024)
                except OSError:
                    break
    wait_for_prompt(b"Password: ")
    os.write(master, first.encode() + b"\n")
    wait_for_prompt(b"Again: ")
    os.write(master, second.encode() + b"\n")
    out, _ = p.communicate(timeout=30)
    wait_for_prompt(b"\n\n")
    os.close(master)
    return p.returncode, out.decode(), shown


def test_passwd_on_a_terminal(hermod):
    rc, out, shown = passwd_on_tty(hermod, "tty-secret", "tty-secret")
    assert rc == 0 and out.startswith("$")
    assert b"Password: " in shown and b"Again: " in shown
    assert b"tty-secret" not in shown           # no echo
    rc, out, shown = passwd_on_tty(hermod, "one", "two")
    assert rc == 1 and out == ""
    assert b"differ" in shown
