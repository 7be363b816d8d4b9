"""A small raw LMTP client for the lmtpd tests (no tests in this file).

smtplib.LMTP reads only one reply after DATA; LMTP sends one per
recipient, so the tests that need them use this client. Every read has
a timeout.
"""

import socket


class LMTPError(Exception):
    pass


class Client:
    def __init__(self, path, timeout=60.0, lhlo="client.example.test"):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.file = self.sock.makefile("rb")
        self.greeting = self.reply()
        self.ehlo = None
        if lhlo:
            code, text = self.cmd("LHLO " + lhlo)
            if code != 250:
                raise LMTPError("LHLO: %d %s" % (code, text))
            self.ehlo = text

    def close(self):
        try:
            self.sock.sendall(b"QUIT\r\n")
            self.reply()
        except OSError:
            pass
        self.file.close()
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def reply(self):
        """(code, text) of one possibly multi-line reply."""
        lines = []
        while True:
            line = self.file.readline()
            if not line:
                raise EOFError("connection closed")
            line = line.rstrip(b"\r\n")
            lines.append(line)
            if line[3:4] != b"-":
                break
        return int(lines[0][:3]), "\n".join(l[4:].decode("utf-8", "replace") for l in lines)

    def send(self, data):
        self.sock.sendall(data)

    def cmd(self, line):
        self.send(line.encode() + b"\r\n")
        return self.reply()

    def data(self, msg, nreplies):
        """Send msg (bytes, CRLF line ends), return the per-recipient
        replies (or the single 354-stage failure)."""
        code, text = self.cmd("DATA")
        if code != 354:
            return [(code, text)]
        self.send(stuff(msg) + b".\r\n")
        return [self.reply() for _ in range(nreplies)]

    def transaction(self, sender, rcpts, msg):
        """One whole transaction: ([rcpt replies], [data replies])."""
        code, text = self.cmd("MAIL FROM:<%s>" % sender)
        if code != 250:
            raise LMTPError("MAIL: %d %s" % (code, text))
        rr = [self.cmd("RCPT TO:<%s>" % r) for r in rcpts]
        ok = sum(1 for c, _ in rr if c == 250)
        if ok == 0:
            self.cmd("RSET")
            return rr, []
        return rr, self.data(msg, ok)


def stuff(msg):
    """Dot-stuff a message and make sure it ends with CRLF."""
    if not msg.endswith(b"\r\n"):
        msg += b"\r\n"
    lines = msg.split(b"\r\n")
    out = [b"." + l if l.startswith(b".") else l for l in lines[:-1]]
    return b"\r\n".join(out) + b"\r\n"


def stored(sender, rcpt, msg):
    """What lmtpd writes for msg (CRLF wire form): two headers in front,
    LF line ends."""
    if not msg.endswith(b"\r\n"):
        msg += b"\r\n"
    return (b"Return-Path: <%s>\nDelivered-To: %s\n" % (sender.encode(), rcpt.encode())
            + msg.replace(b"\r\n", b"\n"))


def mboxrd_unquote(data):
    """Undo mboxrd quoting of one message's bytes."""
    out = []
    for line in data.split(b"\n"):
        s = line.lstrip(b">")
        if s.startswith(b"From ") and len(line) > len(s):
            line = line[1:]
        out.append(line)
    return b"\n".join(out)
