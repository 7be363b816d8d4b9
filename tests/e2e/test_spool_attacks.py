"""Attacks on queued's spool and what reads it: the control socket
(pipelined listings never read, over-long lines, ids with path
characters, hold/release/flush/delete during a delivery), the `hermod`
command's output (message text posing as envelope records, escape
sequences), queue files recovery does not expect (in another hash
directory, a FIFO, a symlink, stray names, size lines near 2^63, state
records for leaves a file lacks, a torn record, a file removed under
queued) and the maildrop (kept files past a pass, a directory, a second
transaction after the dot, envelope lines past the bound, files cut or
grown during pickup)."""

import glob
import os
import socket
import subprocess
import time

from hermod import holds_bytes, wait_for
from test_queued import FakeLmtpd, control, listing, lmtp_submit, prepare
from test_queued_durable import sealed


def seed(h, qids, body=b"Subject: seeded\r\n\r\nx\r\n", where=None):
    """Whole queue files written straight into the spool (queued down)."""
    for qid in qids:
        d = h.path("spool", "queue", where or qid[-1])
        os.makedirs(d, exist_ok=True)
        p = os.path.join(d, qid)
        with open(p, "wb") as f:
            f.write(sealed(qid, body))
        os.chown(p, h.uid, h.gid)
    for root, dirs, files in os.walk(h.path("spool")):    # as root: for `hermod`
        for x in [root] + [os.path.join(root, f) for f in files]:
            os.chown(x, h.uid, h.gid, follow_symlinks=False)


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_pipelined_listings_without_reading_stay_bounded(hermod):
    """2,000 `list` commands in one write, never read: queued builds the
    answers only as fast as the client reads them, and serves others."""
    prepare(hermod)
    seed(hermod, ["6C0C0000%08X" % i for i in range(600)])
    hermod.start("queued")          # no lmtpd: everything stays deferred
    wait_for(lambda: "spool recovered: 600 messages" in hermod.log("queued"), 60,
             what="recovery")
    pid = hermod.procs["queued"].pid
    before = rss_kb(pid)
    s = socket.socket(socket.AF_UNIX)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(hermod.control_socket)
    s.sendall(b"list\n" * 2000)     # about 60 KB per listing: 120 MB in all
    time.sleep(3)
    grown = rss_kb(pid) - before
    assert grown < 40 * 1024, "queued grew by %d kB" % grown
    out = control(hermod, "stats")  # another client is served meanwhile
    assert "messages 600" in out
    got = b""                       # and the first client gets its answers
    s.settimeout(30)
    while got.count(b"\n.\n") < 5:
        got += s.recv(65536)
    assert got.startswith(b"+OK 600 messages\n")
    s.close()
    assert hermod.procs["queued"].poll() is None


def raw_submit(h, sender, body):
    """One message on the submit socket, bytes as given; its queue id."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(h.submit_socket)
    f = s.makefile("rwb")
    f.readline()
    f.write(b"LHLO t\r\nMAIL FROM:<" + sender + b"> SMTPUTF8\r\n"
            b"RCPT TO:<alice@example.test>\r\nDATA\r\n")
    f.flush()
    lines = [f.readline() for _ in range(11)]   # LHLO (8 lines), MAIL, RCPT, 354
    assert lines[-1].startswith(b"354"), lines[-3:]
    f.write(body + b".\r\n")
    f.flush()
    r = f.readline()
    s.close()
    assert r.startswith(b"250"), r
    return r.split()[2].decode()


def on_tty(h, *args):
    """A hermod command with its output on a terminal: what it printed."""
    master, slave = os.openpty()
    p = subprocess.Popen([h.bin("hermod")] + list(args), stdout=slave, stderr=slave,
                         env=dict(os.environ, HERMOD_CONF=h.conf_path))
    os.close(slave)
    out = b""
    while True:
        try:
            x = os.read(master, 65536)
        except OSError:         # EIO: the other side closed
            break
        if not x:
            break
        out += x
    os.close(master)
    assert p.wait(30) == 0, out
    return out.decode("utf-8", "replace")


def test_show_output_cannot_be_forged_or_escape(hermod):
    """`hermod show` takes record lines only before the blank line: a
    message line shaped like a record printed a forged envelope, and one
    longer than the tool's line buffer followed by a lone dot cut the
    message short. On a terminal, escape sequences in the message (C0 and
    the C1 CSI in UTF-8) are made harmless; into a pipe the text is as
    it was sent."""
    prepare(hermod)
    hermod.start("queued")
    forged = b"R\tvictim@example.test\tsent\t2.0.0\tdelivered\r\n"
    escapes = b"\x1b]0;owned\x07\x1b[2J\xc2\x9b2J caf\xc3\xa9\r\n"
    body = (b"Subject: forged\r\n\r\n" + forged + b"x" * 70000 + b"\r\n..\r\n" +
            escapes + b"after the long line\r\n")
    qid = raw_submit(hermod, b"sender@example.test", body)
    show = hermod.run("hermod", "show", qid)
    assert show.returncode == 0, show.stderr
    out = show.stdout
    assert "Recipient: <victim@example.test>" not in out
    assert "\nR\tvictim@example.test\tsent" in out       # shown as message text
    assert "after the long line" in out and "\n.\n" in out
    assert "\x1b]0;owned" in out                           # a pipe: as sent
    assert "Recipient: <alice@example.test> pending" in out
    tty = on_tty(hermod, "show", qid)
    assert "Recipient: <victim@example.test>" not in tty
    assert "after the long line" in tty
    assert "\x1b" not in tty and "\x07" not in tty and "\u009b" not in tty
    assert "?]0;owned??[2J?2J caf\u00e9" in tty


def test_mailq_and_show_fields_made_harmless(hermod):
    """Addresses with control bytes cannot come in on the sockets (lib/addr
    refuses them), but a queue file from elsewhere (an older version, a
    restored spool) can hold any: mailq and show print them harmless."""
    prepare(hermod)
    qid = "6C0D000000000001"
    env = ("id: %s\narrival: %d.000000\nsender: <+1B]0;owned+07+C2+9B2J+7F@example.test>\n"
           "rcpt: <+1B[2Jbob@example.test>\nleaf: 0 local <+1B[2Jbob@example.test>\n\n"
           % (qid, int(time.time()))).encode()
    p = hermod.path("spool", "queue", qid[-1], qid)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "wb") as f:
        f.write(sealed(qid, b"Subject: x\r\n\r\ny\r\n", env))
    seed(hermod, [])
    hermod.start("queued")
    wait_for(lambda: qid in listing(hermod), 30, what="the seeded message")
    for args in (("queue",), ("show", qid)):
        r = hermod.run("hermod", *args)
        assert r.returncode == 0, r.stderr
        for bad in ("\x1b", "\x07", "\x7f", "\u009b"):
            assert bad not in r.stdout, (args, r.stdout)
        assert "?]0;owned??2J?@example.test" in r.stdout, r.stdout
        assert "?[2Jbob@example.test" in r.stdout, r.stdout


def test_recovery_of_files_out_of_place(hermod):
    """What recovery finds where it does not expect it: a message in
    another hash directory than its id's was looked for in its own and
    never delivered (and, with a copy there, read twice); a FIFO named
    like a queue id blocked the start-up for ever; a symlink stayed in
    place, 'read again at the next start', at every start; two stray
    files of one name in two directories left one in corrupt/."""
    prepare(hermod)
    moved, twice = "6C0E00000000000A", "6C0E00000000000B"
    seed(hermod, [moved, twice], where="3")
    seed(hermod, [twice])
    fifo, link = "6C0E00000000000C", "6C0E00000000000D"
    for d in "CD12":
        os.makedirs(hermod.path("spool", "queue", d), exist_ok=True)
    os.mkfifo(hermod.path("spool", "queue", "C", fifo))
    os.symlink("/etc/passwd", hermod.path("spool", "queue", "D", link))
    for d in ("1", "2"):
        with open(hermod.path("spool", "queue", d, "stray"), "w") as f:
            f.write("stray in %s\n" % d)
    seed(hermod, [])
    hermod.start("queued")
    wait_for(lambda: "spool recovered" in hermod.log("queued"), 30, what="recovery")
    lst = listing(hermod)
    assert moved in lst and twice in lst, lst
    assert os.path.exists(hermod.path("spool", "queue", "A", moved))
    corrupt = sorted(os.listdir(hermod.path("spool", "corrupt")))
    assert corrupt == sorted([twice, fifo, link, "stray", "stray.1"]), corrupt
    texts = set()
    for n in ("stray", "stray.1"):
        with open(hermod.path("spool", "corrupt", n)) as f:
            texts.add(f.read())
    assert texts == {"stray in 1\n", "stray in 2\n"}
    log = hermod.log("queued")
    assert "%s: queue file found in queue/3/, moved to queue/A/%s" % (moved, moved) in log
    assert "cannot read" not in log
    # each message once, and queued keeps working

    fake = FakeLmtpd(hermod.lmtp_socket)
    try:
        control(hermod, "flush")
        wait_for(lambda: not listing(hermod), 30, what="delivery")
        assert len(fake.msgs) == 2, fake.msgs
    finally:
        fake.close()
    assert hermod.procs["queued"].poll() is None


def maildrop_file(rcpt, subject="dropped"):
    return (b"MAIL FROM:<root@example.test>\r\nRCPT TO:<%s>\r\nDATA\r\n"
            b"Subject: %s\r\n\r\nbody\r\n.\r\n" % (rcpt.encode(), subject.encode()))


def put_drop(h, name, data):
    d = h.path("spool", "maildrop")
    with open(os.path.join(d, "t" + name), "wb") as f:
        f.write(data)
    os.rename(os.path.join(d, "t" + name), os.path.join(d, "m" + name))


def test_kept_files_past_a_pass_do_not_loop(hermod):
    """More maildrop files refused for now than a pass holds (1,000):
    each full pass started the next at once on the same files, a busy
    loop trying each again and again. Kept files now wait for the next
    minute's scan, and the files past them are taken meanwhile."""
    hermod.add_user("alice")
    prepare(hermod)
    hermod.start("queued")
    os.unlink(hermod.path("etc/aliases.db"))        # 451 4.3.0 at a local RCPT
    hermod.stop("queued")
    for i in range(1100):
        put_drop(hermod, "%05d" % i, maildrop_file("alice@example.test"))
    put_drop(hermod, "zremote", maildrop_file("bob@elsewhere.test", "remote"))
    hermod.start("queued")

    def kept():
        return hermod.log("queued").count("kept for a later try")
    wait_for(lambda: kept() >= 1100, 120, what="one try of each file")
    wait_for(lambda: "maildrop file mzremote" in hermod.log("queued"), 30,
             what="the file past the kept ones")
    time.sleep(5)
    assert kept() <= 1110, kept()
    log = hermod.log("queued")
    assert "mzremote kept" not in log and "mzremote removed" not in log
    assert len(os.listdir(hermod.path("spool", "maildrop"))) == 1100
    assert hermod.procs["queued"].poll() is None


def test_directory_in_the_maildrop_is_removed(hermod):
    """Any local user can make a directory in the maildrop; one named like
    a file (m...) was refused at every pass and never removed."""
    prepare(hermod)
    d = hermod.path("spool", "maildrop")
    hermod.start("queued")
    os.mkdir(os.path.join(d, "mdir"))
    put_drop(hermod, "after", maildrop_file("alice@example.test"))
    wait_for(lambda: os.listdir(d) == [], 20, what="the maildrop emptied")
    assert "maildrop file mdir removed: not a regular file" in hermod.log("queued")
    assert "cannot remove" not in hermod.log("queued")


def test_size_lines_past_the_file_do_not_crash_recovery(hermod):
    """A size line near 2^63 (a version 1 file, or a second size line in a
    sealed version 2 file) overflowed the offset arithmetic of recovery
    (undefined behaviour: the sanitizer build died at every start). Each
    is corrupt, moved aside; a good file beside them is delivered."""
    prepare(hermod)
    now = int(time.time())
    v1 = ("HERMOD-QUEUE 1\nid: 6C0F000000000001\narrival: %d.0\nsize: 9223372036854775807\n"
          "sender: <a@example.test>\nrcpt: <alice@example.test>\n"
          "leaf: 0 local <alice@example.test>\n\nSubject: v1\r\n\r\nx\r\n" % now).encode()
    env2 = ("id: 6C0F000000000002\narrival: %d.0\nsize: 9223372036854775000\n"
            "sender: <a@example.test>\nrcpt: <alice@example.test>\n"
            "leaf: 0 local <alice@example.test>\n\n" % now).encode()
    for qid, data in (("6C0F000000000001", v1),
                      ("6C0F000000000002", sealed("6C0F000000000002", b"x\r\n", env2))):
        p = hermod.path("spool", "queue", qid[-1], qid)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)
    seed(hermod, ["6C0F000000000003"])
    hermod.start("queued")
    wait_for(lambda: "spool recovered" in hermod.log("queued"), 30, what="recovery")
    assert sorted(os.listdir(hermod.path("spool", "corrupt"))) == \
        ["6C0F000000000001", "6C0F000000000002"]
    assert list(listing(hermod)) == ["6C0F000000000003"]
    assert hermod.procs["queued"].poll() is None


class Gate(dict):
    """FakeLmtpd's after-DATA replies, one at a time as the test gives them."""

    def __init__(self):
        super().__init__()
        import queue
        self.q = queue.Queue()

    def get(self, addr, default=None):
        return self.q.get(timeout=60)

    def __bool__(self):         # FakeLmtpd takes `dot or {}`
        return True


def test_operator_actions_during_a_delivery(hermod):
    """hold, release, flush and delete while lmtpd has the message and has
    not answered yet: no second attempt alongside, a hold taken during
    the attempt holds its deferral, a delete during it removes the
    message whatever the answer, and nothing is delivered twice."""
    prepare(hermod)
    gate = Gate()
    fake = FakeLmtpd(hermod.lmtp_socket, dot=gate)
    try:
        hermod.start("queued")

        def submit(subject):
            _, after = lmtp_submit(hermod, ["alice@example.test"],
                                   b"Subject: %s\r\n\r\nx\r\n" % subject)
            return after[0][1].split()[1].decode()

        def attempts(n):
            wait_for(lambda: len(fake.msgs) >= n, 30, what="attempt %d" % n)
        one = submit(b"one")
        attempts(1)
        assert listing(hermod)[one][0] == "active"
        out = control(hermod, "hold " + one, "flush", "flush " + one, "release " + one,
                      "flush ALL", "hold " + one)
        assert out.count("+OK") == 6, out
        gate.q.put("451 4.2.0 later")
        wait_for(lambda: listing(hermod)[one][0] == "hold", 10, what="held")
        time.sleep(3)                   # backoff is 1 s: it would be retried
        assert len(fake.msgs) == 1
        assert control(hermod, "release " + one).startswith("+OK 1")
        attempts(2)
        gate.q.put("250 2.0.0 ok")
        wait_for(lambda: one not in listing(hermod), 10, what="delivered")
        for reply in ("250 2.0.0 ok", "451 4.2.0 later"):
            n = len(fake.msgs)
            qid = submit(reply[:3].encode())
            attempts(n + 1)
            assert control(hermod, "delete " + qid, "delete " + qid).count("+OK 1") == 2
            gate.q.put(reply)
            wait_for(lambda: qid not in listing(hermod), 10, what="deleted")
            assert "%s: removed (deleted by the operator)" % qid in hermod.log("queued")
        time.sleep(3)
        assert len(fake.msgs) == 4, [d[:30] for _, d in fake.msgs]
        wait_for(lambda: not [p for p in glob.glob(hermod.path("spool", "queue", "*", "*"))
                              if holds_bytes(p)], 10, what="the spool emptied")
        assert hermod.procs["queued"].poll() is None
    finally:
        fake.close()


def test_maildrop_file_cannot_carry_a_second_transaction(hermod):
    """The submission session ends the data at the first CRLF.CRLF and
    reads what follows as commands: a file with more after its message's
    dot queued a second message of its own making (its MAIL parameters,
    and an XFORWARD where the owner may send one) without a pickup line.
    Such a file is refused as a whole; a file ending at its dot goes."""
    hermod.add_user("alice")
    prepare(hermod)
    hermod.start("lmtpd", "queued")
    smuggled = (b"MAIL FROM:<a@example.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n"
                b"Subject: one\r\n\r\nx\r\n.\r\n"
                b"XFORWARD ADDR=192.0.2.1 NAME=spoofed.example\r\n"
                b"MAIL FROM:<b@example.test> AUTH=<admin@example.test>\r\n"
                b"RCPT TO:<alice@example.test>\r\nDATA\r\nSubject: two\r\n\r\ny\r\n.\r\n")
    put_drop(hermod, "smuggle", smuggled)
    put_drop(hermod, "empty", b"MAIL FROM:<a@example.test>\r\n"
             b"RCPT TO:<alice@example.test>\r\nDATA\r\n.\r\n")
    put_drop(hermod, "good", maildrop_file("alice@example.test", "good"))
    got = hermod.wait_messages("alice", 2)
    wait_for(lambda: os.listdir(hermod.path("spool", "maildrop")) == [], 20,
             what="the maildrop emptied")
    time.sleep(1)
    got = hermod.messages("alice")
    assert len(got) == 2 and any(b"Subject: good" in m for m in got), got
    assert not any(b"Subject: one" in m or b"Subject: two" in m for m in got)
    assert ("maildrop file msmuggle removed: not a maildrop file (more after the "
            "message's final dot)") in hermod.log("queued")


def test_show_prints_the_message_exactly(hermod):
    """`show` sends the message a line at a time (it went byte by byte: a
    50 MB message held queued's loop for seconds), dot-stuffed; the tool
    prints it back as it was, lines with dots, a line longer than a read
    chunk and a CRLF cut by a chunk's end included."""
    prepare(hermod)
    hermod.start("queued")
    head = b"Subject: exact\r\n\r\n"
    lines = [b"a" * (65535 - len(head)), b".leading", b"..two", b".", b"",
             b"b" * 200000, b"end"]
    body = head + b"\r\n".join(lines) + b"\r\n"
    assert body[65535:65537] == b"\r\n"
    qid = raw_submit(hermod, b"sender@example.test",
                     b"\r\n".join(b"." + ln if ln.startswith(b".") else ln
                                  for ln in body.split(b"\r\n")))
    r = subprocess.run([hermod.bin("hermod"), "show", qid], capture_output=True,
                       env=dict(os.environ, HERMOD_CONF=hermod.conf_path), timeout=60)
    assert r.returncode == 0, r.stderr
    text = r.stdout.split(b"\n\n", 1)[1]
    assert text == body.replace(b"\r\n", b"\n"), text[-200:]


def test_bad_state_records_and_torn_last_record(hermod):
    """State records naming a leaf the file does not have (past the end,
    negative) make the file corrupt, moved aside; a torn last record (no
    newline: never made durable) is ignored and the next record written
    over it reads back."""
    prepare(hermod)
    body = b"Subject: s\r\n\r\nx\r\n"
    bad = {"6C10000000000001": b"r 1 s 2.0.0 1700000000 lmtpd 250 ok\n",
           "6C10000000000002": b"n 7\n",
           "6C10000000000003": b"r -1 f 5.0.0 1700000000 - no\n",
           "6C10000000000004": b"x what\n"}
    torn = "6C10000000000005"
    for qid, rec in list(bad.items()) + [(torn, b"r 0 s 2.0.0 1700000000 lmtpd 250 ha")]:
        p = hermod.path("spool", "queue", qid[-1], qid)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(sealed(qid, body) + rec)
    seed(hermod, [])
    hermod.start("queued")
    wait_for(lambda: "spool recovered" in hermod.log("queued"), 30, what="recovery")
    assert sorted(os.listdir(hermod.path("spool", "corrupt"))) == sorted(bad)
    assert list(listing(hermod)) == [torn]          # the torn success is not one
    assert control(hermod, "hold " + torn).startswith("+OK 1")
    hermod.stop("queued")
    hermod.start("queued")
    wait_for(lambda: hermod.log("queued").count("spool recovered") == 2, 30,
             what="second recovery")
    assert listing(hermod)[torn][0] == "hold"
    with open(hermod.path("spool", "queue", torn[-1], torn), "rb") as f:
        assert b"lmtpd 250 ha" not in f.read()        # written over


def test_file_removed_under_queued_and_ids_with_paths(hermod):
    """A queue file an admin removed while queued holds the message: the
    next attempt logs it with its id and forgets it, nothing crashes. Ids
    with path characters find nothing."""
    prepare(hermod)
    qid = "6C11000000000001"
    seed(hermod, [qid])
    hermod.start("queued")
    wait_for(lambda: qid in listing(hermod), 30, what="the seeded message")
    os.unlink(hermod.path("spool", "queue", qid[-1], qid))
    control(hermod, "flush " + qid)         # or the next retry finds it gone
    wait_for(lambda: qid not in listing(hermod), 10, what="forgotten")
    assert "%s: queue file queue/%s/%s vanished" % (qid, qid[-1], qid) in hermod.log("queued")
    for cmd in ("show", "hold", "release", "delete", "flush"):
        for arg in ("../../etc/passwd", "/etc/passwd", "1/" + qid, qid + "/..", "%00"):
            assert control(hermod, "%s %s" % (cmd, arg)).startswith("-ERR no such message")
    assert hermod.procs["queued"].poll() is None


def test_control_line_too_long_gets_an_answer(hermod):
    """A control line past its bound (1024 bytes) ended the connection
    without a word; it now gets -ERR, then the close. At the bound the
    command is read (and refused as unknown)."""
    prepare(hermod)
    hermod.start("queued")
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(hermod.control_socket)
    s.sendall(b"x" * 1024 + b"\n")
    assert s.recv(4096).startswith(b"-ERR unknown command")
    s.sendall(b"show " + b"A" * 3000)
    out = b""
    while True:
        x = s.recv(4096)
        if not x:
            break
        out += x
    s.close()
    assert out == b"-ERR command line too long (1024 bytes at most)\n", out
    assert control(hermod, "stats").startswith("+OK")


def test_maildrop_envelope_lines_past_the_bound(hermod):
    """A MAIL line past the submission's command bound (4096) refuses the
    file for good; a RCPT line past it refuses that recipient only, the
    message goes to the others, as on the socket."""
    hermod.add_user("alice")
    prepare(hermod)
    hermod.start("lmtpd", "queued")
    put_drop(hermod, "longmail", b"MAIL FROM:<a@example.test> " + b"X" * 5000 +
             b"\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nSubject: m\r\n\r\ny\r\n.\r\n")
    put_drop(hermod, "longrcpt", b"MAIL FROM:<a@example.test>\r\nRCPT TO:<" + b"a" * 5000 +
             b"@example.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n"
             b"Subject: r\r\n\r\ny\r\n.\r\n")
    got = hermod.wait_messages("alice", 1)
    wait_for(lambda: os.listdir(hermod.path("spool", "maildrop")) == [], 20,
             what="the maildrop emptied")
    time.sleep(1)
    got = hermod.messages("alice")
    assert len(got) == 1 and b"Subject: r" in got[0]
    log = hermod.log("queued")
    assert "maildrop file mlongmail removed: 500 5.5.2" in log
    assert "maildrop file mlongrcpt: recipients refused: 500 5.5.2" in log


def test_maildrop_file_cut_or_grown_during_pickup(hermod):
    """Files whose owner cuts them short or appends to them while pickup
    plays them: queued stays up, nothing cut short is delivered, a good
    file after them goes. (The first drop once pickup is idle also made
    the sanitizer build die: qsort of an empty kept list.)"""
    hermod.add_user("alice")
    prepare(hermod)
    hermod.start("lmtpd", "queued")
    time.sleep(1)                   # the start-up pass is over: pickup idle
    body = b"Subject: big\r\n\r\n" + (b"y" * 998 + b"\r\n") * 20000
    whole = (b"MAIL FROM:<a@example.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n" +
             body + b".\r\n")
    for i, delay in enumerate((0.005, 0.02, 0.05, 0.1)):
        for how in ("cut", "grow"):
            name = "%s%d" % (how, i)
            put_drop(hermod, name, whole)
            time.sleep(delay)
            try:
                if how == "cut":
                    os.truncate(hermod.path("spool", "maildrop", "m" + name), 5000)
                else:
                    with open(hermod.path("spool", "maildrop", "m" + name), "ab") as f:
                        f.write(b"MAIL FROM:<x@example.test>\r\n" * 1000)
            except FileNotFoundError:
                pass                # taken already
    put_drop(hermod, "good", maildrop_file("alice@example.test", "good"))
    wait_for(lambda: any(b"Subject: good" in m for m in hermod.messages("alice")), 60,
             what="the good file")
    for m in hermod.messages("alice"):
        assert b"Subject: good" in m or m.endswith(body.replace(b"\r\n", b"\n")), len(m)
    assert hermod.procs["queued"].poll() is None
