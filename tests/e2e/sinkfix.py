"""SMTP sink fixtures for the end-to-end tests of remote delivery.

Sink: an aiosmtpd server on a loopback address (127.0.0.2, 127.0.0.3 ...)
at a port shared by every sink of a test (Hermod's smtp_port is one
number). It records each transaction (sender, recipients, MAIL options,
the data) and answers RCPT and the end of DATA from scripts:

    port = shared_port(["127.0.0.2", "127.0.0.3"])
    s = Sink("127.0.0.2", port, rcpt={"bad@x.example": "550 5.1.1 no such user"})
    s.wait(1); s.msgs[0].rcpts; s.close()

rcpt: address -> reply, or a callable(address, n) -> reply or None (n: how
many times that address was seen, from 1); data: a callable(msg) -> reply
or None. None means the normal 250.

dsn=True offers DSN (RFC 3461) and takes its parameters (recorded in
Msg.mail_options / rcpt_options). tls=True offers STARTTLS with a throw-away self-signed certificate (each
Msg says whether it came over TLS); auth={"user": "password"} offers AUTH
PLAIN/LOGIN after TLS and requires it (Msg.login: who logged in).

Hang: accepts connections and never says a word (a dead destination).
"""

import os
import socket
import ssl
import subprocess
import tempfile
import threading
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult

_CERT = None


def test_cert():
    """(cert, key) paths of a self-signed certificate for sink.test, made
    once per test run."""
    global _CERT
    if _CERT is None:
        d = tempfile.mkdtemp(prefix="hermod-sink-cert-")
        os.chmod(d, 0o755)      # the daemons (user hermod under root) read cert.pem
        cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                        "-subj", "/CN=sink.test", "-days", "2", "-keyout", key,
                        "-out", cert], check=True, capture_output=True, timeout=60)
        os.chmod(cert, 0o644)
        _CERT = (cert, key)
    return _CERT


def shared_port(hosts):
    """A TCP port free on every host of the list."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind((hosts[0], 0))
            port = s.getsockname()[1]
        ok = True
        for h in hosts[1:]:
            with socket.socket() as t:
                try:
                    t.bind((h, port))
                except OSError:
                    ok = False
                    break
        if ok:
            return port
    raise RuntimeError("no shared free port")


class DsnSMTP(SMTP):
    """aiosmtpd's server, taking the RFC 3461 parameters too."""

    def _getparams(self, params):
        r = super()._getparams(params)
        if r is not None:
            for k in ("RET", "ENVID", "NOTIFY", "ORCPT"):
                r.pop(k, None)
        return r


class DsnController(Controller):
    def factory(self):
        return DsnSMTP(self.handler, **self.SMTP_kwargs)


class Msg:
    def __init__(self, env, session=None):
        self.tls = session is not None and session.ssl is not None
        self.login = None
        if session is not None and session.authenticated:
            self.login = session.auth_data.login.decode()
        self.sender = env.mail_from
        self.rcpts = list(env.rcpt_tos)
        self.mail_options = list(env.mail_options)
        self.rcpt_options = list(env.rcpt_options)
        self.data = env.content if isinstance(env.content, bytes) else env.content.encode()


class _Handler:
    def __init__(self, sink):
        self.sink = sink

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        with self.sink.lock:
            self.sink.ehlos += 1
        if self.sink.dsn:
            responses.insert(len(responses) - 1, "250-DSN")
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        s = self.sink
        with s.lock:
            n = s.seen[address] = s.seen.get(address, 0) + 1
        r = s.rcpt.get(address) if isinstance(s.rcpt, dict) else s.rcpt(address, n)
        if callable(r):
            r = r(address, n)
        if r:
            return r
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        m = Msg(envelope, session)
        r = self.sink.data(m) if self.sink.data else None
        if r:
            return r
        with self.sink.lock:
            self.sink.msgs.append(m)
        return "250 2.0.0 Ok: queued as SINK%d" % len(self.sink.msgs)


class Sink:
    def __init__(self, host, port, rcpt=None, data=None, size=None, smtputf8=True,
                 ident="sink", tls=False, auth=None, dsn=False, name="sink.test"):
        self.host, self.port = host, port
        self.rcpt, self.data, self.dsn = rcpt or {}, data, dsn
        self.msgs, self.seen = [], {}
        self.ehlos = 0          # one per session (two with STARTTLS)
        self.lock = threading.Lock()
        kw = dict(enable_SMTPUTF8=smtputf8, ident=ident)
        if size is not None:
            kw["data_size_limit"] = size
        if tls or auth:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*test_cert())
            kw["tls_context"] = ctx
        if auth:
            def check(server, session, envelope, mechanism, data):
                ok = auth.get(data.login.decode()) == data.password.decode()
                return AuthResult(success=ok, auth_data=data)
            kw.update(authenticator=check, auth_required=True, auth_require_tls=True)
        self.ctl = (DsnController if dsn else Controller)(_Handler(self), hostname=host, port=port,
                              ready_timeout=10, server_hostname=name, **kw)
        self.ctl.start()

    def wait(self, n, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.msgs) >= n:
                    return list(self.msgs)
            time.sleep(0.05)
        raise TimeoutError("sink %s: %d of %d messages" % (self.host, len(self.msgs), n))

    def close(self):
        self.ctl.stop()


class Hang(threading.Thread):
    """Listens, accepts and never answers (nor reads)."""

    def __init__(self, host, port):
        super().__init__(daemon=True)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(64)
        self.conns = []
        self.start()

    def run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        for c in self.conns:
            c.close()


class Scripted(threading.Thread):
    """A bare-bones SMTP server with one misbehaviour per connection, for
    faults aiosmtpd cannot produce. script: list of behaviours, one per
    connection in turn (the last repeats): "ok" (a normal session),
    "garbage" (a non-SMTP greeting), "drop_after_dot" (closes instead of
    answering the final dot), "junk_reply" (a 2,000-line reply to EHLO), "busy" (a 421 greeting),
    "no_ehlo" (502 to EHLO: an old server that knows only HELO),
    "bad_tls" (offers STARTTLS, says 220, then sends junk, no handshake).
    Delivered messages (after "ok" dots) are counted in .delivered."""

    def __init__(self, host, port, script):
        super().__init__(daemon=True)
        self.script, self.n, self.delivered = list(script), 0, 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(16)
        self.start()

    def run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            how = self.script[min(self.n, len(self.script) - 1)]
            self.n += 1
            threading.Thread(target=self.session, args=(c, how), daemon=True).start()

    def session(self, c, how):
        c.settimeout(20)
        f = c.makefile("rb")
        try:
            if how == "garbage":
                c.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")
                return
            if how == "busy":
                c.sendall(b"421 4.3.2 too busy, try later\r\n")
                return
            c.sendall(b"220 scripted ESMTP\r\n")
            for line in f:
                verb = line[:4].upper()
                if verb == b"EHLO" and how == "no_ehlo":
                    c.sendall(b"502 5.5.1 command not implemented\r\n")
                elif verb == b"EHLO":
                    if how == "junk_reply":
                        c.sendall(b"250-" + b"x" * 200 + b"\r\n" * 1 + (b"250-junk\r\n" * 2000))
                        c.sendall(b"250 end\r\n")
                    elif how == "bad_tls":
                        c.sendall(b"250-scripted\r\n250-STARTTLS\r\n250 PIPELINING\r\n")
                    else:
                        c.sendall(b"250-scripted\r\n250 PIPELINING\r\n")
                elif verb == b"STAR" and how == "bad_tls":
                    c.sendall(b"220 2.0.0 go ahead\r\n")
                    c.sendall(b"this is not a TLS handshake\r\n" * 10)
                    return
                elif verb == b"MAIL" and how == "no_ehlo" and b"SIZE=" in line.upper():
                    c.sendall(b"501 5.5.4 no parameters without EHLO\r\n")
                elif verb == b"DATA":
                    c.sendall(b"354 go\r\n")
                    for dl in f:
                        if dl == b".\r\n":
                            break
                    if how == "drop_after_dot":
                        return
                    self.delivered += 1
                    c.sendall(b"250 2.0.0 stored\r\n")
                elif verb == b"QUIT":
                    c.sendall(b"221 bye\r\n")
                    return
                else:
                    c.sendall(b"250 2.0.0 ok\r\n")
        except OSError:
            pass
        finally:
            f.close()
            c.close()

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


SMTP  # re-exported for tests that subclass the server
