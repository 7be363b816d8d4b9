/*
 * Unit tests of lib/smtp_server: a real srv_session over a socketpair in
 * an event loop, driven by a small test command table (HELO, MAIL, RCPT,
 * DATA, BDAT, NOOP, QUIT, PAUSE, STARTTLS). The client side writes a
 * script (pipelined) and the transcript of replies is compared whole.
 */
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/ec.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "smtp_server.h"
#include "unit.h"

enum { ST_INIT, ST_HELO, ST_MAIL, ST_RCPT };

static struct {
	struct event_base *base;
	int fd;				/* client end */
	struct srv_session *s;
	struct buf data;		/* decoded message bytes */
	int closed, data_ends;
	enum srv_close_why why;
	struct event *resume_ev;
	size_t max_pending;		/* input buffered while paused */
	SSL_CTX *tls_ctx;		/* for STARTTLS, or NULL */
	int tls_done;			/* on_tls: 1 ok, -1 failed */
	int swallow;			/* lines on_line takes */
	unsigned data_flags;		/* srv_data_flags() seen in on_data */
} T;
static const struct srv_ops *T_ops;	/* start() with these, when set */

static void
c_helo(struct srv_session *s, char *arg)
{
	(void)arg;
	srv_set_state(s, ST_HELO);
	srv_reply(s, 250, NULL, "test");
}

static void
c_mail(struct srv_session *s, char *arg)
{
	char *path, *params;

	if (smtp_path_split(arg, "FROM:", 0, &path, &params) < 0) {
		srv_reply_id(s, RPL_SYNTAX);
		srv_error(s);
		return;
	}
	srv_set_state(s, ST_MAIL);
	srv_reply_id(s, RPL_OK);
}

static void
c_rcpt(struct srv_session *s, char *arg)
{
	(void)arg;
	srv_set_state(s, ST_RCPT);
	srv_reply_id(s, RPL_OK);
}

static void
c_data(struct srv_session *s, char *arg)
{
	(void)arg;
	srv_reply_id(s, RPL_DATA_GO);
	srv_data_start(s, 20);
}

static void
c_bdat(struct srv_session *s, char *arg)
{
	uint64_t size;
	int last, r = smtp_bdat_parse(arg, 20, &size, &last);

	if (r == -1) {
		srv_reply_id(s, RPL_SYNTAX);
		srv_error(s);
		return;
	}
	srv_bdat_start(s, size, (last ? SRV_BDAT_LAST : 0) |
	    (r == -2 ? SRV_BDAT_DISCARD : 0));
}

static void
c_noop(struct srv_session *s, char *arg)
{
	(void)arg;
	srv_reply_id(s, RPL_NOOP);
}

static void
c_quit(struct srv_session *s, char *arg)
{
	(void)arg;
	srv_reply_id(s, RPL_BYE);
	srv_close_after_flush(s);
}

static void
resume_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (srv_input_pending(T.s) > T.max_pending)
		T.max_pending = srv_input_pending(T.s);
	srv_reply(T.s, 250, "2.0.0", "resumed");
	srv_resume(T.s);
}

static void
c_pause(struct srv_session *s, char *arg)
{
	struct timeval tv = { 0, 200000 };

	(void)arg;
	srv_pause(s);
	evtimer_add(T.resume_ev, &tv);
}

/* A server context with a fresh self-signed P-256 certificate. */
static SSL_CTX *
tls_server_ctx(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	X509_NAME *name = X509_get_subject_name(x);

	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, key);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
	    (const unsigned char *)"test", -1, -1, 0);
	X509_set_issuer_name(x, name);
	X509_sign(x, key, EVP_sha256());
	SSL_CTX_use_certificate(ctx, x);
	SSL_CTX_use_PrivateKey(ctx, key);
	X509_free(x);
	EVP_PKEY_free(key);
	return ctx;
}

static void
c_starttls(struct srv_session *s, char *arg)
{
	SSL_CTX *ctx = T.tls_ctx ? T.tls_ctx : SSL_CTX_new(TLS_server_method());

	(void)arg;
	srv_reply_id(s, RPL_STARTTLS_GO);
	srv_starttls(s, SSL_new(ctx));
	if (ctx != T.tls_ctx)
		SSL_CTX_free(ctx);	/* the SSL holds its own reference */
}

static void
on_tls(struct srv_session *s, int ok)
{
	(void)s;
	T.tls_done = ok ? 1 : -1;
}

/* Stands in for AUTH: the next two lines belong to the exchange. */
static void
c_authx(struct srv_session *s, char *arg)
{
	(void)arg;
	T.swallow = 2;
	srv_reply(s, 334, NULL, "go");
}

static int
on_line(struct srv_session *s, char *line, size_t len)
{
	if (T.swallow == 0)
		return 0;
	T.swallow--;
	srv_reply(s, 334, NULL, "got %zu %s", len, line);
	return 1;
}

static const struct srv_cmd table[] = {
	{ "AUTHX", 0, SRV_ARG_NONE, c_authx },
	{ "HELO", 0, SRV_ARG_NEED, c_helo },
	{ "MAIL", SRV_STATE(ST_HELO), SRV_ARG_NEED, c_mail },
	{ "RCPT", SRV_STATE(ST_MAIL) | SRV_STATE(ST_RCPT), SRV_ARG_NEED, c_rcpt },
	{ "DATA", SRV_STATE(ST_RCPT), SRV_ARG_NONE, c_data },
	{ "BDAT", SRV_STATE(ST_RCPT), SRV_ARG_NEED, c_bdat },
	{ "NOOP", 0, SRV_ARG_ANY, c_noop },
	{ "QUIT", 0, SRV_ARG_NONE, c_quit },
	{ "PAUSE", 0, SRV_ARG_NONE, c_pause },
	{ "STARTTLS", 0, SRV_ARG_NONE, c_starttls },
	{ NULL, 0, 0, NULL },
};

static void
on_data(struct srv_session *s, const char *p, size_t n)
{
	T.data_flags |= srv_data_flags(s);
	buf_append(&T.data, p, n);
}

static void
on_data_end(struct srv_session *s, unsigned flags)
{
	T.data_ends++;
	if (flags & (SMTP_DATA_F_BARE_LF | SMTP_DATA_F_BARE_CR))
		srv_reply_id(s, RPL_DATA_BARE_LF);
	else if (flags & SMTP_DATA_F_TOO_BIG)
		srv_reply_id(s, RPL_MSG_TOO_BIG);
	else if (flags & SRV_END_BDAT)
		srv_reply(s, 250, "2.0.0", "chunk%s%s",
		    flags & SRV_END_LAST ? " last" : "",
		    flags & SRV_END_DISCARDED ? " discarded" : "");
	else
		srv_reply(s, 250, "2.0.0", "got %zu", T.data.len);
	if (!(flags & SRV_END_BDAT) || (flags & SRV_END_LAST))
		srv_set_state(s, ST_HELO);
}

static void
on_close(struct srv_session *s, enum srv_close_why why)
{
	(void)s;
	T.closed++;
	T.why = why;
	T.s = NULL;
	event_base_loopbreak(T.base);
}

static int
on_unknown(struct srv_session *s, char *verb, char *arg)
{
	(void)arg;
	if (strcmp(verb, "GET") != 0)
		return 0;
	srv_reply(s, 421, "4.7.0", "this is not HTTP");
	srv_close_after_flush(s);
	return 1;
}

static const struct srv_ops ops = {
	.on_data = on_data, .on_data_end = on_data_end, .on_close = on_close,
	.on_unknown = on_unknown, .on_tls = on_tls, .on_line = on_line,
};

/* Start a session with this table, limits and hooks. */
static void
start_with(const struct srv_cmd *t, const struct srv_limits *lim,
    const struct srv_ops *o)
{
	int sv[2];

	memset(&T, 0, sizeof(T));
	T.base = event_base_new();
	socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
	evutil_make_socket_nonblocking(sv[0]);
	evutil_make_socket_nonblocking(sv[1]);
	T.fd = sv[1];
	T.s = srv_session_new(bufferevent_socket_new(T.base, sv[0],
	    BEV_OPT_CLOSE_ON_FREE), t, lim, o, NULL);
	T.resume_ev = evtimer_new(T.base, resume_cb, NULL);
	buf_init(&T.data, 1 << 20);
}

static void
start(const struct srv_limits *lim)
{
	start_with(table, lim, T_ops ? T_ops : &ops);
}

static void
send_str(const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(T.fd, p, n);
		if (w < 0 && errno == EAGAIN) {
			event_base_loop(T.base, EVLOOP_NONBLOCK);
			continue;
		}
		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

/* Run the loop for at most ms milliseconds (or until the session ends). */
static void
run(int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	event_base_loopexit(T.base, &tv);
	event_base_dispatch(T.base);
}

/* Everything the server wrote so far. */
static void
transcript(struct buf *out)
{
	char tmp[4096];
	ssize_t n;

	buf_init(out, 1 << 20);
	while ((n = read(T.fd, tmp, sizeof(tmp))) > 0)
		buf_append(out, tmp, (size_t)n);
	if (out->data == NULL)
		buf_puts(out, "");
}

static void
stop(void)
{
	if (T.s != NULL) {
		srv_close(T.s);
		run(100);
	}
	/* on_close breaks the loop: let libevent's deferred callbacks run
	 * (they hold references that keep the bufferevent alive) */
	for (int i = 0; i < 3; i++)
		event_base_loop(T.base, EVLOOP_NONBLOCK);
	close(T.fd);
	event_free(T.resume_ev);
	event_base_free(T.base);
	buf_free(&T.data);
}

static const struct srv_limits deflim = { 0 };

/* One script, its whole transcript, and how the session ended. */
static void
script(const struct srv_limits *lim, const char *in, size_t inlen,
    int ms, const char *want, int closed, enum srv_close_why why)
{
	struct buf out;

	start(lim ? lim : &deflim);
	send_str(in, inlen ? inlen : strlen(in));
	run(ms);
	transcript(&out);
	CHECK_STR(out.data, want);
	CHECK_INT(T.closed, closed);
	if (closed)
		CHECK_INT(T.why, why);
	buf_free(&out);
	stop();
}

#define OK "250 2.0.0 Ok\r\n"
#define BYE "221 2.0.0 Bye\r\n"
#define GO "354 End data with <CR><LF>.<CR><LF>\r\n"

TEST(test_pipelined_transaction)
{
	script(NULL, "HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"
	    "..x\r\nline\r\n.\r\nQUIT\r\n", 0, 1000,
	    "250 test\r\n" OK OK GO "250 2.0.0 got 10\r\n" BYE, 1,
	    SRV_CLOSE_QUIT);
}

TEST(test_errors)
{
	static const char errs[] = "MAIL FROM:<a@b>\r\nFOO\r\n\x01\x02\r\n"
	    "QUIT now\r\nHELO\r\nA\0B\r\nQUIT\r\n";
	char big[3000];

	script(NULL, errs, sizeof(errs) - 1, 1000,
	    "503 5.5.1 Bad sequence of commands\r\n"
	    "500 5.5.2 Error: command not recognized\r\n"
	    "500 5.5.2 Error: command not recognized\r\n"
	    "501 5.5.4 Syntax error in parameters or arguments\r\n"
	    "501 5.5.4 Syntax error in parameters or arguments\r\n"
	    "500 5.5.2 Error: NUL byte in command\r\n" BYE, 1, SRV_CLOSE_QUIT);
	/* a line at the 2048 bound passes; one byte more is refused */
	memset(big, 'x', sizeof(big));
	memcpy(big, "NOOP ", 5);
	{
		struct buf in;
		buf_init(&in, 1 << 16);
		buf_append(&in, big, 2046);
		buf_puts(&in, "\r\n");
		buf_append(&in, big, 2047);
		buf_puts(&in, "\r\nQUIT\r\n");
		script(NULL, in.data, in.len, 1000,
		    OK "500 5.5.2 Error: line too long\r\n" BYE, 1,
		    SRV_CLOSE_QUIT);
		buf_free(&in);
	}
	/* the daemon's own answer to an unknown verb */
	script(NULL, "GET / HTTP/1.0\r\nNOOP\r\n", 0, 1000,
	    "421 4.7.0 this is not HTTP\r\n", 1, SRV_CLOSE_QUIT);
}

TEST(test_error_limit)
{
	struct srv_limits lim = { .hard_error_limit = 3 };

	script(&lim, "A\r\nB\r\nNOOP\r\nC\r\nNOOP\r\n", 0, 1000,
	    "500 5.5.2 Error: command not recognized\r\n"
	    "500 5.5.2 Error: command not recognized\r\n" OK
	    "500 5.5.2 Error: command not recognized\r\n"
	    "421 4.7.0 Error: too many errors, closing connection\r\n",
	    1, SRV_CLOSE_ERRORS);
}

/* While paused nothing is dispatched; resume goes on in order. */
TEST(test_pause_resume)
{
	script(NULL, "PAUSE\r\nNOOP\r\nQUIT\r\n", 0, 2000,
	    "250 2.0.0 resumed\r\n" OK BYE, 1, SRV_CLOSE_QUIT);
}

/* Paused input is capped by input_max: the socket is not read further. */
TEST(test_pause_input_cap)
{
	struct srv_limits lim = { .input_max = 8192 };
	char *flood = malloc(100000);
	struct buf out;

	memset(flood, 'N', 100000);
	start(&lim);
	send_str("PAUSE\r\n", 7);
	run(50);
	/* more than the socket buffer would take if we kept reading */
	for (int i = 0; i < 100000; i += 10)
		memcpy(flood + i, "NOOP     \n", 10);
	(void)!write(T.fd, flood, 100000);
	run(400);
	CHECK(T.max_pending > 0);
	CHECK(T.max_pending <= 8192);
	transcript(&out);
	CHECK(strncmp(out.data, "250 2.0.0 resumed\r\n", 19) == 0);
	buf_free(&out);
	free(flood);
	stop();
}

/* 100 pipelined commands with 4 per read event all get answered. */
TEST(test_pipeline_fairness)
{
	struct srv_limits lim = { .pipeline_max = 4 };
	struct buf in, want;

	buf_init(&in, 1 << 16);
	buf_init(&want, 1 << 16);
	for (int i = 0; i < 100; i++) {
		buf_puts(&in, "NOOP\r\n");
		buf_puts(&want, OK);
	}
	buf_puts(&in, "QUIT\r\n");
	buf_puts(&want, BYE);
	script(&lim, in.data, in.len, 2000, want.data, 1, SRV_CLOSE_QUIT);
	buf_free(&in);
	buf_free(&want);
}

TEST(test_data)
{
	const char *pre = "HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n";
	const char *pre_reply = "250 test\r\n" OK OK GO;
	char in[512], want[512];

	/* smuggling: the fake end and fake MAIL stay inside the message */
	snprintf(in, sizeof(in), "%sa\n.\nMAIL FROM:<evil@x>\r\n.\r\nQUIT\r\n",
	    pre);
	snprintf(want, sizeof(want), "%s550 5.5.2 Error: message contains "
	    "bare <LF> or <CR>\r\n" BYE, pre_reply);
	script(NULL, in, 0, 1000, want, 1, SRV_CLOSE_QUIT);
	/* too big (max 20): read to the end, then 552 */
	snprintf(in, sizeof(in), "%s0123456789\r\n0123456789\r\n.\r\nQUIT\r\n",
	    pre);
	snprintf(want, sizeof(want), "%s552 5.3.4 Error: message size exceeds "
	    "limit\r\n" BYE, pre_reply);
	script(NULL, in, 0, 1000, want, 1, SRV_CLOSE_QUIT);
	/* empty message */
	snprintf(in, sizeof(in), "%s.\r\nQUIT\r\n", pre);
	snprintf(want, sizeof(want), "%s250 2.0.0 got 0\r\n" BYE, pre_reply);
	script(NULL, in, 0, 1000, want, 1, SRV_CLOSE_QUIT);
	/* the peer leaves in the middle of the data: on_close, no data end */
	start(&deflim);
	send_str(pre, strlen(pre));
	send_str("abc\r\n", 5);
	run(100);
	shutdown(T.fd, SHUT_WR);
	run(1000);
	CHECK_INT(T.closed, 1);
	CHECK_INT(T.why, SRV_CLOSE_EOF);
	CHECK_INT(T.data_ends, 0);
	stop();
}

TEST(test_bdat)
{
	script(NULL, "HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n"
	    "BDAT 5\r\nab\r\ncBDAT 0\r\nBDAT 3 LAST\r\nxyzNOOP\r\n"
	    "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 25 LAST\r\n"
	    "0123456789012345678901234QUIT\r\n", 0, 1000,
	    "250 test\r\n" OK OK "250 2.0.0 chunk\r\n250 2.0.0 chunk\r\n"
	    "250 2.0.0 chunk last\r\n" OK OK OK
	    "250 2.0.0 chunk last discarded\r\n" BYE, 1, SRV_CLOSE_QUIT);
}

TEST(test_timeout)
{
	struct srv_limits lim = { .timeout_sec = 1 };

	script(&lim, "HELO x\r\n", 0, 3000,
	    "250 test\r\n421 4.4.2 Error: timeout exceeded, closing "
	    "connection\r\n", 1, SRV_CLOSE_TIMEOUT);
	/* a trickled partial line does not reset the deadline */
	start(&lim);
	for (int i = 0; i < 6; i++) {
		send_str("N", 1);
		run(300);
	}
	CHECK_INT(T.closed, 1);
	CHECK_INT(T.why, SRV_CLOSE_TIMEOUT);
	stop();
}

/* A peer that pipelines without reading: replies stay bounded. */
TEST(test_output_backpressure)
{
	struct srv_limits lim = { .output_max = 1024 };
	static char flood[60000];
	size_t sent = 0;
	ssize_t w;
	struct evbuffer *out;

	for (size_t i = 0; i + 6 <= sizeof(flood); i += 6)
		memcpy(flood + i, "NOOP\r\n", 6);
	start(&lim);
	/* fill the socket both ways: ~2 MB of commands, no reading */
	for (int round = 0; round < 40; round++) {
		while ((w = write(T.fd, flood, sizeof(flood))) > 0)
			sent += (size_t)w;
		run(20);
	}
	CHECK(sent > 0);
	CHECK_INT(T.closed, 0);
	out = bufferevent_get_output(srv_bev(T.s));
	CHECK(evbuffer_get_length(out) <= 1024 + 64);
	CHECK(srv_input_pending(T.s) <= 65536);
	stop();
}

/* A half-close after pipelined commands: all answered, then closed. */
TEST(test_half_close)
{
	struct buf out;

	start(&deflim);
	send_str("NOOP\r\nNOOP\r\nQUIT\r\n", 18);
	shutdown(T.fd, SHUT_WR);
	run(1000);
	transcript(&out);
	CHECK_STR(out.data, OK OK BYE);
	CHECK_INT(T.closed, 1);
	CHECK_INT(T.why, SRV_CLOSE_QUIT);
	buf_free(&out);
	stop();
	/* EOF while paused: the paused work finishes first */
	start(&deflim);
	send_str("PAUSE\r\nNOOP\r\n", 13);
	shutdown(T.fd, SHUT_WR);
	run(1000);
	transcript(&out);
	CHECK_STR(out.data, "250 2.0.0 resumed\r\n" OK);
	CHECK_INT(T.closed, 1);
	CHECK_INT(T.why, SRV_CLOSE_EOF);
	buf_free(&out);
	stop();
}

/* The command timeout does not run while the daemon holds the session. */
TEST(test_no_timeout_while_paused)
{
	struct srv_limits lim = { .timeout_sec = 1 };
	struct buf out;

	start(&lim);
	send_str("PAUSE\r\n", 7);
	run(100);
	evtimer_del(T.resume_ev);	/* hold it longer than the timeout */
	run(1500);
	CHECK_INT(T.closed, 0);
	srv_reply(T.s, 250, "2.0.0", "late");
	srv_resume(T.s);
	send_str("NOOP\r\n", 6);
	run(300);
	transcript(&out);
	CHECK_STR(out.data, "250 2.0.0 late\r\n" OK);
	CHECK_INT(T.closed, 0);
	buf_free(&out);
	stop();
}

/* STARTTLS: the pipelined RSET is discarded, never answered. */
TEST(test_starttls_discards_input)
{
	struct buf out;

	start(&deflim);
	send_str("STARTTLS\r\nNOOP\r\n", 16);
	run(300);
	transcript(&out);
	CHECK_STR(out.data, "220 2.0.0 Ready to start TLS\r\n");
	CHECK_INT(T.closed, 0);
	CHECK(T.s != NULL && srv_tls_active(T.s));
	CHECK(T.s != NULL && srv_input_pending(T.s) == 0);
	buf_free(&out);
	stop();
}

static void
tls_client_read(struct bufferevent *bev, void *arg)
{
	struct buf *got = arg;
	char tmp[512];
	size_t n;

	while ((n = bufferevent_read(bev, tmp, sizeof(tmp))) > 0)
		buf_append(got, tmp, n);
}

/* A real handshake after STARTTLS; the injected NOOP is never answered. */
TEST(test_starttls_handshake)
{
	SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
	SSL_CTX *sctx = tls_server_ctx();
	struct bufferevent *cbev;
	struct buf out, got;
	SSL *cssl;

	start(&deflim);
	T.tls_ctx = sctx;
	send_str("STARTTLS\r\nNOOP\r\n", 16);
	run(200);
	transcript(&out);
	CHECK_STR(out.data, "220 2.0.0 Ready to start TLS\r\n");
	buf_free(&out);
	buf_init(&got, 4096);
	cssl = SSL_new(cctx);
	cbev = bufferevent_openssl_socket_new(T.base, T.fd, cssl,
	    BUFFEREVENT_SSL_CONNECTING, 0);
	bufferevent_setcb(cbev, tls_client_read, NULL, NULL, &got);
	bufferevent_enable(cbev, EV_READ | EV_WRITE);
	bufferevent_write(cbev, "NOOP\r\nQUIT\r\n", 12);
	run(2000);
	run(100);	/* on_close broke the loop: let the client read on */
	CHECK_INT(T.tls_done, 1);
	CHECK_STR(got.data, OK BYE);
	CHECK_INT(T.closed, 1);
	CHECK_INT(T.why, SRV_CLOSE_QUIT);
	bufferevent_free(cbev);	/* without CLOSE_ON_FREE: SSL and fd are ours */
	SSL_free(cssl);
	buf_free(&got);
	stop();
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
}

/* Implicit TLS (smtps): the session runs on an accepting OpenSSL bev. */
TEST(test_implicit_tls)
{
	SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
	SSL_CTX *sctx = tls_server_ctx();
	struct bufferevent *cbev, *sbev;
	struct buf got;
	SSL *cssl = SSL_new(cctx);
	int sv[2];

	memset(&T, 0, sizeof(T));
	T.base = event_base_new();
	T.resume_ev = evtimer_new(T.base, resume_cb, NULL);
	buf_init(&T.data, 1024);
	socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
	evutil_make_socket_nonblocking(sv[0]);
	evutil_make_socket_nonblocking(sv[1]);
	T.fd = sv[1];
	sbev = bufferevent_openssl_socket_new(T.base, sv[0], SSL_new(sctx),
	    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	T.s = srv_session_new(sbev, table, &deflim, &ops, NULL);
	srv_reply(T.s, 220, NULL, "tls ready");
	buf_init(&got, 4096);
	cbev = bufferevent_openssl_socket_new(T.base, T.fd, cssl,
	    BUFFEREVENT_SSL_CONNECTING, 0);
	bufferevent_setcb(cbev, tls_client_read, NULL, NULL, &got);
	bufferevent_enable(cbev, EV_READ | EV_WRITE);
	bufferevent_write(cbev, "NOOP\r\nQUIT\r\n", 12);
	run(2000);
	run(100);	/* on_close broke the loop: let the client read on */
	CHECK_INT(T.tls_done, 1);
	CHECK_STR(got.data, "220 tls ready\r\n" OK BYE);
	CHECK_INT(T.closed, 1);
	bufferevent_free(cbev);
	SSL_free(cssl);
	buf_free(&got);
	stop();
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
}

/* Past the soft limit each error holds the session error_sleep_ms. */
TEST(test_error_sleep)
{
	struct srv_limits lim = { .soft_error_limit = 1,
	    .error_sleep_ms = 400 };
	const char *e = "500 5.5.2 Error: command not recognized\r\n";
	char want[256];
	struct buf out;

	/* at the bound (2 errors, soft limit 2): no sleep at all */
	lim.soft_error_limit = 2;
	snprintf(want, sizeof(want), "%s%s" OK BYE, e, e);
	script(&lim, "A\r\nB\r\nNOOP\r\nQUIT\r\n", 0, 300, want, 1,
	    SRV_CLOSE_QUIT);
	/* one past it: the second error sleeps, then the rest goes on */
	lim.soft_error_limit = 1;
	start(&lim);
	send_str("A\r\nB\r\nNOOP\r\nQUIT\r\n", 19);
	run(200);
	transcript(&out);
	snprintf(want, sizeof(want), "%s%s", e, e);
	CHECK_STR(out.data, want);
	CHECK_INT(T.closed, 0);
	buf_free(&out);
	run(1000);
	transcript(&out);
	CHECK_STR(out.data, OK BYE);
	CHECK_INT(T.closed, 1);
	buf_free(&out);
	stop();
	/* the peer half-closes during the sleep: the rest is still answered */
	start(&lim);
	send_str("A\r\nB\r\nNOOP\r\n", 12);
	shutdown(T.fd, SHUT_WR);
	run(1500);
	transcript(&out);
	snprintf(want, sizeof(want), "%s%s" OK, e, e);
	CHECK_STR(out.data, want);
	CHECK_INT(T.closed, 1);
	CHECK_INT(T.why, SRV_CLOSE_EOF);
	buf_free(&out);
	stop();
	/* the hard limit still ends it, sleeping or not */
	lim.hard_error_limit = 3;
	snprintf(want, sizeof(want), "%s%s%s421 4.7.0 mx.test Error: too many "
	    "errors\r\n", e, e, e);
	lim.hostname = "mx.test";
	script(&lim, "A\r\nB\r\nC\r\nD\r\n", 0, 2000, want, 1,
	    SRV_CLOSE_ERRORS);
}

/* The host name in the engine's own 421 texts. */
TEST(test_hostname_421)
{
	struct srv_limits lim = { .timeout_sec = 1, .hostname = "mx.test" };

	script(&lim, "NOOP\r\n", 0, 3000,
	    OK "421 4.4.2 mx.test Error: timeout exceeded\r\n", 1,
	    SRV_CLOSE_TIMEOUT);
}

/* Lingering close: half-closed after the last reply, input dropped,
 * closed at the peer's EOF or after linger_ms. */
TEST(test_linger)
{
	struct srv_limits lim = { .linger_ms = 600 };
	char tmp[64];
	struct buf out;

	start(&lim);
	send_str("QUIT\r\nNOOP\r\n", 12);
	run(200);
	transcript(&out);
	CHECK_STR(out.data, BYE);		/* and EOF: half-closed */
	CHECK(read(T.fd, tmp, sizeof(tmp)) == 0);
	CHECK_INT(T.closed, 0);
	send_str("more junk\r\n", 11);	/* dropped, never a reply */
	run(100);
	CHECK_INT(T.closed, 0);
	shutdown(T.fd, SHUT_WR);		/* the peer's EOF ends it */
	run(500);
	CHECK_INT(T.closed, 1);
	CHECK_INT(T.why, SRV_CLOSE_QUIT);
	buf_free(&out);
	stop();
	/* a peer that never closes: the deadline ends it, trickle or not */
	start(&lim);
	send_str("QUIT\r\n", 6);
	for (int i = 0; i < 4; i++) {
		run(200);
		if (T.s == NULL)
			break;
		send_str("x", 1);
	}
	CHECK_INT(T.closed, 1);
	CHECK_INT(T.why, SRV_CLOSE_QUIT);
	stop();
	/* the hard error limit's 421 also lingers */
	lim.hard_error_limit = 1;
	start(&lim);
	send_str("A\r\nB\r\n", 6);
	run(200);
	transcript(&out);
	CHECK_STR(out.data, "500 5.5.2 Error: command not recognized\r\n"
	    "421 4.7.0 Error: too many errors, closing connection\r\n");
	CHECK_INT(T.closed, 0);
	run(1000);
	CHECK_INT(T.closed, 1);
	CHECK_INT(T.why, SRV_CLOSE_ERRORS);
	buf_free(&out);
	stop();
}

/* Lines on_line takes are never commands, NULs and all; then back. */
TEST(test_on_line)
{
	static const char in[] = "AUTHX\r\nQUIT\r\nA\0B\r\nQUIT\r\n";

	script(NULL, in, sizeof(in) - 1, 1000, "334 go\r\n334 got 4 QUIT\r\n"
	    "334 got 3 A\r\n" BYE, 1, SRV_CLOSE_QUIT);
	CHECK_INT(T.swallow, 0);
}

/* A daemon's own texts for lines refused before dispatch; counted. */
static void
on_bad_line(struct srv_session *s, enum smtp_reply_id why)
{
	srv_reply(s, 500, "5.5.2", "mine %s", why == RPL_NUL ? "nul" :
	    why == RPL_LINE_TOO_LONG ? "long" : why == RPL_BARE_LF ? "lf" : "?");
}

TEST(test_on_bad_line)
{
	struct srv_ops o = ops;
	struct srv_limits lim = { .line_max = 20, .hard_error_limit = 4,
	    .flags = SRV_F_REJECT_BARE_LF };
	static const char in[] = "A\0B\r\nNOOP 01234567890123\r\n"
	    "NOOP 0123456789012\r\nNOOP\nNOOP\r\nNOOP\n";

	o.on_bad_line = on_bad_line;
	T_ops = &o;
	/* 18 bytes + CRLF are at the bound of 20 and pass; 19 + 2 do not */
	script(&lim, in, sizeof(in) - 1, 1000, "500 5.5.2 mine nul\r\n"
	    "500 5.5.2 mine long\r\n" OK "500 5.5.2 mine lf\r\n" OK
	    "500 5.5.2 mine lf\r\n"
	    "421 4.7.0 Error: too many errors, closing connection\r\n", 1,
	    SRV_CLOSE_ERRORS);
	T_ops = NULL;
}

/* A row's fn sees its own row; outside a fn there is none. */
static void
c_who(struct srv_session *s, char *arg)
{
	const struct srv_cmd *c = srv_command(s);

	(void)arg;
	srv_reply(s, 250, "2.0.0", "%s", c != NULL ? c->verb : "none");
}

static int
on_unknown_who(struct srv_session *s, char *verb, char *arg)
{
	(void)verb;
	(void)arg;
	srv_reply(s, 500, "5.5.2", "row %s", srv_command(s) ? "set" : "none");
	return 1;
}

TEST(test_command_row)
{
	static const struct srv_cmd who_table[] = {
		{ "WHO", 0, SRV_ARG_ANY, c_who },
		{ "WHOM", 0, SRV_ARG_ANY, c_who },
		{ "QUIT", 0, SRV_ARG_NONE, c_quit },
		{ NULL, 0, 0, NULL },
	};
	struct srv_ops o = ops;
	struct buf out;

	o.on_unknown = on_unknown_who;
	start_with(who_table, &deflim, &o);
	send_str("WHOM x\r\nWHO\r\nWHAT\r\nQUIT\r\n", 25);
	run(1000);
	CHECK_INT(T.closed, 1);
	transcript(&out);
	CHECK_STR(out.data, "250 2.0.0 WHOM\r\n250 2.0.0 WHO\r\n"
	    "500 5.5.2 row none\r\n" BYE);
	buf_free(&out);
	stop();
}

/* srv_data_flags: what the decoder saw so far, from on_data on; a new
 * DATA starts clean. */
TEST(test_data_flags)
{
	const char *pre = "HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n";
	char in[256];

	snprintf(in, sizeof(in), "%sa\nbc\r\n.\r\nQUIT\r\n", pre);
	script(NULL, in, 0, 1000, "250 test\r\n" OK OK GO "550 5.5.2 Error: "
	    "message contains bare <LF> or <CR>\r\n" BYE, 1, SRV_CLOSE_QUIT);
	CHECK_INT(T.data_flags & SMTP_DATA_F_BARE_LF, SMTP_DATA_F_BARE_LF);
	snprintf(in, sizeof(in), "%sabc\r\n.\r\nQUIT\r\n", pre);
	script(NULL, in, 0, 1000, "250 test\r\n" OK OK GO "250 2.0.0 got 5\r\n"
	    BYE, 1, SRV_CLOSE_QUIT);
	CHECK_INT(T.data_flags, 0);
}

/* The limits are borrowed, not copied: a change reaches a live session. */
TEST(test_limits_borrowed)
{
	struct srv_limits lim = { .hard_error_limit = 10 };
	struct buf out;

	start(&lim);
	send_str("A\r\n", 3);
	run(200);
	CHECK_INT(T.closed, 0);
	lim.hard_error_limit = 2;
	send_str("B\r\nNOOP\r\n", 9);
	run(1000);
	transcript(&out);
	CHECK_STR(out.data, "500 5.5.2 Error: command not recognized\r\n"
	    "500 5.5.2 Error: command not recognized\r\n"
	    "421 4.7.0 Error: too many errors, closing connection\r\n");
	CHECK_INT(T.closed, 1);
	CHECK_INT(T.why, SRV_CLOSE_ERRORS);
	buf_free(&out);
	stop();
}

int
main(void)
{
	signal(SIGPIPE, SIG_IGN);
	RUN(test_pipelined_transaction);
	RUN(test_errors);
	RUN(test_error_limit);
	RUN(test_pause_resume);
	RUN(test_pause_input_cap);
	RUN(test_pipeline_fairness);
	RUN(test_data);
	RUN(test_bdat);
	RUN(test_timeout);
	RUN(test_output_backpressure);
	RUN(test_half_close);
	RUN(test_no_timeout_while_paused);
	RUN(test_starttls_discards_input);
	RUN(test_starttls_handshake);
	RUN(test_implicit_tls);
	RUN(test_error_sleep);
	RUN(test_hostname_421);
	RUN(test_linger);
	RUN(test_on_line);
	RUN(test_on_bad_line);
	RUN(test_command_row);
	RUN(test_data_flags);
	RUN(test_limits_borrowed);
	return unit_done("smtp_server");
}
