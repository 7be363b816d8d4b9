/*
 * Unit tests for the SMTP/LMTP client against a scripted server on the
 * other end of a socketpair, in the same event loop. The script is a list
 * of (expected command prefix, reply) steps; the server records what it
 * received, how many commands came in one read (pipelining), and the
 * message lines between DATA and the dot. Every run is bounded.
 */
#include <sys/socket.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "buf.h"
#include "conf.h"
#include "log.h"
#include "smtp_client.h"
#include "smtp_proto.h"
#include "unit.h"

#define HANG "<hang>"		/* no reply, keep the connection */
#define CLOSE "<close>"		/* close the connection instead */

struct step {
	const char *expect;	/* prefix of the command line */
	const char *reply;	/* CRLF-separated lines, without the last */
};

static struct event_base *base;

/* ---- the scripted server ---- */

static struct server {
	struct bufferevent *bev;
	const struct step *script;
	int next;
	int in_data;
	int closing;
	int max_batch;
	int mismatches;
	struct buf transcript;	/* commands received, "\n"-separated */
	struct buf data;	/* message lines as on the wire */
} srv;

static void srv_event(struct bufferevent *bev, short what, void *arg);

static void
srv_close_when_sent(struct bufferevent *bev, void *arg)
{
	(void)arg;
	bufferevent_free(bev);
	srv.bev = NULL;
}

static void
srv_reply(const char *reply)
{
	struct evbuffer *out = bufferevent_get_output(srv.bev);

	if (strcmp(reply, HANG) == 0)
		return;
	if (strcmp(reply, CLOSE) == 0) {
		/* What was said before goes out first, then the close. */
		if (evbuffer_get_length(out) == 0) {
			bufferevent_free(srv.bev);
			srv.bev = NULL;
		} else {
			srv.closing = 1;
			bufferevent_disable(srv.bev, EV_READ);
			bufferevent_setcb(srv.bev, NULL, srv_close_when_sent,
			    srv_event, NULL);
		}
		return;
	}
	evbuffer_add_printf(out, "%s\r\n", reply);
}

/* ---- TLS for both ends: a throw-away self-signed certificate ---- */

static SSL_CTX *srv_ctx, *cli_ctx;
static int tls_wraps;

static void
tls_setup(void)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	X509_NAME *name = X509_get_subject_name(x);

	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), -60);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
	    (const unsigned char *)"server.test", -1, -1, 0);
	X509_set_issuer_name(x, name);
	X509_set_pubkey(x, key);
	X509_sign(x, key, EVP_sha256());
	srv_ctx = SSL_CTX_new(TLS_server_method());
	SSL_CTX_use_certificate(srv_ctx, x);
	SSL_CTX_use_PrivateKey(srv_ctx, key);
	cli_ctx = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_min_proto_version(cli_ctx, TLS1_2_VERSION);
	X509_free(x);
	EVP_PKEY_free(key);
}

static struct bufferevent *
tls_wrap(struct cli_conn *c, struct bufferevent *plain, void *arg)
{
	(void)c;
	(void)arg;
	tls_wraps++;
	return bufferevent_openssl_filter_new(base, plain, SSL_new(cli_ctx),
	    BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
}

static void srv_read(struct bufferevent *bev, void *arg);

static void
srv_starttls(void)
{
	srv.bev = bufferevent_openssl_filter_new(base, srv.bev,
	    SSL_new(srv_ctx), BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(srv.bev, srv_read, NULL, srv_event, NULL);
	bufferevent_enable(srv.bev, EV_READ | EV_WRITE);
}

static void
srv_next_reply(const char *line)
{
	const struct step *st = &srv.script[srv.next];

	if (st->expect == NULL) {
		srv.mismatches++;
		fprintf(stderr, "server: no step for '%s'\n", line);
		return;
	}
	srv.next++;
	if (strncmp(line, st->expect, strlen(st->expect)) != 0) {
		srv.mismatches++;
		fprintf(stderr, "server: got '%s', expected '%s'\n", line,
		    st->expect);
	}
	srv_reply(st->reply);
	if (srv.bev != NULL && strcmp(line, "STARTTLS") == 0 &&
	    strncmp(st->reply, "220", 3) == 0)
		srv_starttls();
	if (srv.bev != NULL && !srv.closing && strcmp(line, "DATA") == 0 &&
	    strncmp(st->reply, "354", 3) == 0)
		srv.in_data = 1;
}

static void
srv_read(struct bufferevent *bev, void *arg)
{
	char *line;
	size_t n;
	int batch = 0;

	(void)arg;
	while (srv.bev == bev && !srv.closing && (line = evbuffer_readln(
	    bufferevent_get_input(bev), &n, EVBUFFER_EOL_CRLF_STRICT)) != NULL) {
		if (srv.in_data) {
			if (strcmp(line, ".") == 0) {
				srv.in_data = 0;
				srv_next_reply(".");
			} else {
				buf_puts(&srv.data, line);
				buf_putc(&srv.data, '\n');
			}
		} else {
			batch++;
			buf_puts(&srv.transcript, line);
			buf_putc(&srv.transcript, '\n');
			srv_next_reply(line);
		}
		free(line);
	}
	if (batch > srv.max_batch)
		srv.max_batch = batch;
}

static void
srv_event(struct bufferevent *bev, short what, void *arg)
{
	(void)arg;
	if (what & BEV_EVENT_CONNECTED)
		return;		/* TLS handshake done */
	bufferevent_free(bev);
	srv.bev = NULL;
}

/* ---- what the client reported ---- */

static struct rec {
	int ready, esmtp;
	unsigned caps;
	unsigned long long size;
	int mail_code;
	int rcpt[8], final[8];
	char rcpt_status[8][16];
	char rcpt_text[8][128];
	int dones, closed, closed_code, closed_local;
	char closed_text[256];
	int data_starts;
	const char *push;	/* push mode: the message to write */
	size_t push_big, pushed;/* push mode: this many generated bytes */
	int drains;
	int rset_on_rcpt;
	int again;		/* start a second transaction from done() */
	int first_rcpt0;	/* rcpt[0] of the first one */
	int quit_on_ready;
	int tls;
} rec;

static struct cli_conn *conn;

static void
on_ready(struct cli_conn *c, const struct cli_caps *caps, void *a)
{
	(void)c;
	(void)a;
	rec.ready++;
	rec.esmtp = caps->esmtp;
	rec.caps = caps->flags;
	rec.size = caps->size;
	rec.tls = cli_tls_bev(c) != NULL;
	if (rec.quit_on_ready)
		cli_quit(c);
}

static void
on_mail(struct cli_conn *c, const struct cli_reply *r, void *a)
{
	(void)c;
	(void)a;
	rec.mail_code = r->code;
}

static void
on_rcpt(struct cli_conn *c, int idx, const struct cli_reply *r, void *a)
{
	(void)c;
	(void)a;
	if (idx < 0 || idx >= 8)
		return;
	CHECK_INT(rec.rcpt[idx], 0);	/* once each */
	rec.rcpt[idx] = r->code;
	if (rec.rset_on_rcpt) {
		CHECK_INT(cli_rset(c), 0);
		CHECK_INT(cli_rcpt(c, "late@x", NULL), -1);
		cli_quit(c);
	}
	snprintf(rec.rcpt_status[idx], 16, "%s", r->status);
	snprintf(rec.rcpt_text[idx], 128, "%s", r->text);
}

static void
on_final(struct cli_conn *c, int idx, const struct cli_reply *r, void *a)
{
	(void)c;
	(void)a;
	if (idx < 0 || idx >= 8)
		return;
	CHECK_INT(rec.final[idx], 0);
	rec.final[idx] = r->code;
}

/* Write 64 KiB chunks until told to wait; drain() resumes. */
static void
push_more(struct cli_conn *c)
{
	static char chunk[65536];
	size_t n;
	int r = 0;

	memset(chunk, 'x', sizeof(chunk));
	for (n = 99; n < sizeof(chunk); n += 100)
		chunk[n] = '\n';
	while (r == 0 && rec.pushed < rec.push_big) {
		n = rec.push_big - rec.pushed;
		n = n < sizeof(chunk) ? n : sizeof(chunk);
		r = cli_data_write(c, chunk, n);
		rec.pushed += n;
	}
	if (r == 0)
		CHECK_INT(cli_data_end(c), 0);
}

static void
on_drain(struct cli_conn *c, void *a)
{
	(void)a;
	rec.drains++;
	push_more(c);
}

static void
on_data_start(struct cli_conn *c, void *a)
{
	(void)a;
	rec.data_starts++;
	if (rec.push_big > 0) {
		push_more(c);
	} else if (rec.push != NULL) {
		size_t n = strlen(rec.push), half = n / 2;
		CHECK(cli_data_write(c, rec.push, half) == 0);
		CHECK(cli_data_write(c, rec.push + half, n - half) == 0);
		CHECK_INT(cli_data_end(c), 0);
	}
}

static void
on_done(struct cli_conn *c, void *a)
{
	(void)a;
	rec.dones++;
	if (rec.again-- > 0) {
		rec.first_rcpt0 = rec.rcpt[0];
		memset(rec.rcpt, 0, sizeof(rec.rcpt));
		memset(rec.final, 0, sizeof(rec.final));
		CHECK(cli_idle(c));
		CHECK_INT(cli_mail(c, "second@example.org", NULL), 0);
		CHECK_INT(cli_rcpt(c, "r2@example.org", NULL), 0);
		rec.push = "second\n";
		CHECK_INT(cli_data_push(c), 0);
		return;
	}
	if (cli_idle(c))
		cli_quit(c);
}

static void
on_closed(struct cli_conn *c, const struct cli_reply *r, void *a)
{
	(void)a;
	rec.closed++;
	rec.closed_code = r->code;
	rec.closed_local = r->local;
	snprintf(rec.closed_text, sizeof(rec.closed_text), "%s", r->text);
	cli_free(c);
	conn = NULL;
	event_base_loopbreak(base);
}

static struct bufferevent *tls_wrap(struct cli_conn *,
    struct bufferevent *, void *);

static const struct cli_callbacks cbs = {
	.ready = on_ready, .mail = on_mail, .rcpt = on_rcpt,
	.data_start = on_data_start, .drain = on_drain, .final = on_final,
	.done = on_done, .closed = on_closed, .tls_wrap = tls_wrap,
};

/* Start a server with `script` and a client with `s`; the client greets
 * first. Returns the client. */
static struct cli_conn *
start(const struct step *script, const char *greeting,
    const struct cli_settings *s)
{
	int sv[2];
	struct bufferevent *cb;

	memset(&rec, 0, sizeof(rec));
	buf_free(&srv.transcript);
	buf_free(&srv.data);
	memset(&srv, 0, sizeof(srv));
	buf_init(&srv.transcript, 1 << 16);
	buf_init(&srv.data, 1 << 23);
	srv.script = script;
	socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv);
	srv.bev = bufferevent_socket_new(base, sv[1], BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(srv.bev, srv_read, NULL, srv_event, NULL);
	bufferevent_enable(srv.bev, EV_READ | EV_WRITE);
	srv_reply(greeting);
	cb = bufferevent_socket_new(base, sv[0], BEV_OPT_CLOSE_ON_FREE);
	conn = cli_attach(base, cb, s, &cbs, NULL);
	return conn;
}

/* Run until the client is closed, at most `secs`. */
static void
run(int secs)
{
	struct timeval tv = { secs, 0 };

	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
	if (conn != NULL) {
		fprintf(stderr, "client still open after %d s\n", secs);
		cli_free(conn);
		conn = NULL;
		CHECK(0);
	}
	if (srv.bev != NULL) {
		bufferevent_free(srv.bev);
		srv.bev = NULL;
	}
}

static struct cli_settings
settings(int lmtp)
{
	struct cli_settings s;

	cli_settings_default(&s);
	s.lmtp = lmtp;
	s.helo_name = "client.test";
	s.peer_name = "server.test";
	return s;
}

static char tmpdir[] = "/tmp/test_smtp_client.XXXXXX";

static int
message_file(const char *text)
{
	char path[300];
	int fd;

	snprintf(path, sizeof(path), "%s/msg", tmpdir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	unlink(path);
	if (write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		return -1;
	return fd;
}

/* ---- the tests ---- */

static const char *msg_in =
    "Subject: t\n\n.leading dot\n..two dots\nbare\rcr\nmid . dot\r\n"
    ".\r\nend without newline";
static const char *msg_wire =
    "Subject: t\n\n..leading dot\n...two dots\nbare\ncr\nmid . dot\n"
    "..\nend without newline\n";

/* LMTP, pipelined, XFORWARD and DSN offered, mixed per-recipient
 * replies, the message from a file at an offset, dot-stuffed. */
TEST(test_lmtp_mixed)
{
	static const struct step script[] = {
		{ "LHLO client.test", "250-server.test\r\n250-PIPELINING\r\n"
		    "250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n"
		    "250 XFORWARD NAME ADDR PROTO HELO" },
		{ "XFORWARD NAME=mail.example ADDR=192.0.2.1 PROTO=ESMTP "
		    "HELO=[UNAVAILABLE]", "250 2.0.0 Ok" },
		{ "MAIL FROM:<s@example.org> BODY=8BITMIME ENVID=id+2B1",
		    "250 2.1.0 Ok" },
		{ "RCPT TO:<a@x> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a@x",
		    "250 2.1.5 Ok" },
		{ "RCPT TO:<b@x>", "452 4.2.2 b full" },
		{ "RCPT TO:<c@x>", "250 2.1.5 Ok" },
		{ "RCPT TO:<d@x>", "550-5.1.1 no such\r\n550 5.1.1 user d" },
		{ "DATA", "354 go" },
		{ ".", "250 2.0.0 a delivered\r\n452 4.2.2 c over quota" },
		{ "QUIT", "221 2.0.0 bye" },
		{ NULL, NULL },
	};
	struct cli_settings s = settings(1);
	struct cli_xforward xf = { .name = "mail.example",
	    .addr = "192.0.2.1", .port = "25", .proto = "ESMTP", .helo = "" };
	struct cli_mail_params mp = { .size = 123, .body_8bitmime = 1,
	    .smtputf8 = 1, .envid = "id+1" };
	struct cli_rcpt_params rp = { "SUCCESS,FAILURE", "rfc822;a@x" };
	struct cli_conn *c = start(script, "220 server.test LMTP", &s);
	char file[512];
	int fd;

	snprintf(file, sizeof(file), "0123456789%s", msg_in);
	fd = message_file(file);
	CHECK_INT(cli_xforward(c, &xf), 0);
	CHECK_INT(cli_mail(c, "s@example.org", &mp), 0);
	CHECK_INT(cli_rcpt(c, "a@x", &rp), 0);
	CHECK_INT(cli_rcpt(c, "b@x", NULL), 1);
	CHECK_INT(cli_rcpt(c, "c@x", NULL), 2);
	CHECK_INT(cli_rcpt(c, "d@x", NULL), 3);
	CHECK_INT(cli_data_fd(c, fd, 10, (off_t)strlen(msg_in)), 0);
	run(5);
	close(fd);
	CHECK_INT(srv.mismatches, 0);
	CHECK_INT(rec.ready, 1);
	CHECK(rec.caps & CLI_CAP_PIPELINING);
	CHECK(rec.caps & CLI_CAP_XFORWARD);
	CHECK(srv.max_batch >= 7);		/* pipelined */
	CHECK_INT(rec.mail_code, 250);
	CHECK_INT(rec.rcpt[0], 250);
	CHECK_INT(rec.rcpt[1], 452);
	CHECK_STR(rec.rcpt_status[1], "4.2.2");
	CHECK_INT(rec.rcpt[2], 250);
	CHECK_INT(rec.rcpt[3], 550);
	CHECK_STR(rec.rcpt_status[3], "5.1.1");
	CHECK_STR(rec.rcpt_text[3], "no such\nuser d");
	CHECK_INT(rec.final[0], 250);
	CHECK_INT(rec.final[1], 0);
	CHECK_INT(rec.final[2], 452);
	CHECK_INT(rec.final[3], 0);
	CHECK_INT(rec.dones, 1);
	CHECK_INT(rec.closed, 1);
	CHECK_INT(rec.closed_code, 221);
	CHECK_STR(srv.data.data, msg_wire);
}

/* SMTP without PIPELINING: one command per reply; SIZE offered and sent;
 * DSN not offered so NOTIFY is left out; the message pushed. */
TEST(test_smtp_no_pipelining)
{
	static const struct step script[] = {
		{ "EHLO client.test", "250-server.test\r\n250 SIZE 1000" },
		{ "MAIL FROM:<s@example.org> SIZE=123", "250 ok" },
		{ "RCPT TO:<a@x>", "250 ok" },
		{ "RCPT TO:<b@x>", "550 no" },
		{ "DATA", "354 go" },
		{ ".", "250 queued" },
		{ "QUIT", "221 bye" },
		{ NULL, NULL },
	};
	struct cli_settings s = settings(0);
	struct cli_mail_params mp = { .size = 123, .body_8bitmime = 1 };
	struct cli_rcpt_params rp = { "NEVER", NULL };
	struct cli_conn *c = start(script, "220 server.test ESMTP", &s);

	rec.push = msg_in;
	CHECK_INT(cli_mail(c, "s@example.org", &mp), 0);
	CHECK_INT(cli_rcpt(c, "a@x", &rp), 0);
	CHECK_INT(cli_rcpt(c, "b@x", NULL), 1);
	CHECK_INT(cli_data_push(c), 0);
	run(5);
	CHECK_INT(srv.mismatches, 0);
	CHECK_INT(srv.max_batch, 1);
	CHECK(strstr(srv.transcript.data, "MAIL FROM:<s@example.org> "
	    "SIZE=123\n") != NULL);
	CHECK(strstr(srv.transcript.data, "NOTIFY") == NULL);
	CHECK_INT(rec.size, 1000);
	CHECK(!(rec.caps & CLI_CAP_PIPELINING));
	CHECK_INT(rec.rcpt[0], 250);
	CHECK_INT(rec.rcpt[1], 550);
	CHECK_INT(rec.final[0], 250);
	CHECK_INT(rec.final[1], 0);
	CHECK_INT(rec.data_starts, 1);
	CHECK_STR(srv.data.data, msg_wire);
	CHECK_INT(rec.closed_code, 221);
}

/* EHLO refused: HELO; then a second transaction on the same connection
 * with no RSET in between (the first ended cleanly). */
TEST(test_helo_fallback_and_reuse)
{
	static const struct step script[] = {
		{ "EHLO client.test", "502 5.5.1 what" },
		{ "HELO client.test", "250 hi" },
		{ "MAIL FROM:<s@x>", "250" },
		{ "RCPT TO:<a@x>", "250" },
		{ "DATA", "354" },
		{ ".", "250 ok" },
		{ "MAIL FROM:<second@example.org>", "250" },
		{ "RCPT TO:<r2@example.org>", "250" },
		{ "DATA", "354" },
		{ ".", "250 ok" },
		{ "QUIT", "221" },
		{ NULL, NULL },
	};
	struct cli_settings s = settings(0);
	struct cli_conn *c = start(script, "220 server.test", &s);
	int fd = message_file("first\n");

	rec.again = 1;
	cli_mail(c, "s@x", NULL);
	cli_rcpt(c, "a@x", NULL);
	cli_data_fd(c, fd, 0, 6);
	run(5);
	close(fd);
	CHECK_INT(srv.mismatches, 0);
	CHECK_INT(rec.esmtp, 0);
	CHECK_INT(rec.dones, 2);
	CHECK(strstr(srv.transcript.data, "RSET") == NULL);
	CHECK_STR(srv.data.data, "first\nsecond\n");
}

/* Every recipient refused: no DATA (without pipelining), and RSET before
 * the next transaction; with pipelining DATA is refused by the server. */
TEST(test_all_rcpts_refused)
{
	static const struct step plain[] = {
		{ "EHLO", "250 server.test" },
		{ "MAIL FROM:<s@x>", "250 ok" },
		{ "RCPT TO:<a@x>", "550 5.1.1 no" },
		{ "RSET", "250 ok" },
		{ "MAIL FROM:<second@example.org>", "250" },
		{ "RCPT TO:<r2@example.org>", "250" },
		{ "DATA", "354" },
		{ ".", "250 ok" },
		{ "QUIT", "221" },
		{ NULL, NULL },
	};
	static const struct step piped[] = {
		{ "EHLO", "250-server.test\r\n250 PIPELINING" },
		{ "MAIL FROM:<s@x>", "250 ok" },
		{ "RCPT TO:<a@x>", "550 5.1.1 no" },
		{ "DATA", "554 5.5.1 no valid recipients" },
		{ "RSET", "250 ok" },
		{ "QUIT", "221" },
		{ NULL, NULL },
	};
	struct cli_settings s = settings(0);
	struct cli_conn *c = start(plain, "220 x", &s);

	rec.again = 1;
	cli_mail(c, "s@x", NULL);
	cli_rcpt(c, "a@x", NULL);
	cli_data_push(c);
	run(5);
	CHECK_INT(srv.mismatches, 0);
	CHECK_INT(rec.first_rcpt0, 550);
	CHECK_INT(rec.rcpt[0], 250);
	CHECK_INT(rec.dones, 2);
	CHECK_INT(rec.data_starts, 1);	/* only the second */
	CHECK_STR(srv.data.data, "second\n");

	c = start(piped, "220 x", &s);
	cli_mail(c, "s@x", NULL);
	cli_rcpt(c, "a@x", NULL);
	cli_data_push(c);
	run(5);
	CHECK_INT(srv.mismatches, 0);
	CHECK_INT(rec.rcpt[0], 550);
	CHECK_INT(rec.final[0], 0);
	CHECK_INT(rec.data_starts, 0);
	CHECK_INT(rec.dones, 1);
	CHECK_INT(rec.closed_code, 221);

	/* A server that says 354 anyway gets an empty message: SMTP waits
	 * for its one reply; LMTP ends the session. */
	static const struct step smtp354[] = {
		{ "EHLO", "250-server.test\r\n250 PIPELINING" },
		{ "MAIL FROM:<s@x>", "250 ok" },
		{ "RCPT TO:<a@x>", "550 5.1.1 no" },
		{ "DATA", "354 go" }, { ".", "554 no recipients" },
		{ "QUIT", "221" }, { NULL, NULL },
	};
	static const struct step lmtp354[] = {
		{ "LHLO", "250-server.test\r\n250 PIPELINING" },
		{ "MAIL FROM:<s@x>", "250 ok" },
		{ "RCPT TO:<a@x>", "550 5.1.1 no" },
		{ "DATA", "354 go" }, { NULL, NULL },
	};
	for (int lmtp = 0; lmtp < 2; lmtp++) {
		s = settings(lmtp);
		c = start(lmtp ? lmtp354 : smtp354, "220 x", &s);
		cli_mail(c, "s@x", NULL);
		cli_rcpt(c, "a@x", NULL);
		cli_data_push(c);
		run(5);
		CHECK_INT(srv.mismatches, 0);
		CHECK_INT(rec.rcpt[0], 550);
		CHECK_INT(rec.data_starts, 0);
		CHECK_INT(rec.dones, 1);
		CHECK_INT(srv.data.len, 0);
		CHECK_INT(rec.closed_code, lmtp ? 421 : 221);
	}

	/* XFORWARD refused, the rest accepted: no empty message may go in
	 * (no dot), the connection is dropped. */
	static const struct step xf_refused[] = {
		{ "EHLO", "250-server.test\r\n250-PIPELINING\r\n"
		    "250 XFORWARD NAME" },
		{ "XFORWARD NAME=n", "550 5.7.1 not for you" },
		{ "MAIL FROM:<s@x>", "250 ok" }, { "RCPT TO:<a@x>", "250 ok" },
		{ "DATA", "354 go" }, { NULL, NULL },
	};
	struct cli_xforward xf = { .name = "n" };

	s = settings(0);
	c = start(xf_refused, "220 x", &s);
	cli_xforward(c, &xf);
	cli_mail(c, "s@x", NULL);
	cli_rcpt(c, "a@x", NULL);
	cli_data_push(c);
	run(5);
	CHECK_INT(srv.mismatches, 0);
	CHECK_INT(rec.rcpt[0], 550);
	CHECK_INT(rec.data_starts, 0);
	CHECK_INT(rec.dones, 1);
	CHECK_INT(rec.closed_code, 421);
}

/* MAIL refused while pipelining: every recipient gets MAIL's reply. */
TEST(test_mail_refused)
{
	static const struct step script[] = {
		{ "EHLO", "250-server.test\r\n250 PIPELINING" },
		{ "MAIL FROM:<s@x>", "550 5.7.1 go away" },
		{ "RCPT TO:<a@x>", "503 5.5.1 need MAIL" },
		{ "RCPT TO:<b@x>", "503 5.5.1 need MAIL" },
		{ "DATA", "503 5.5.1 need RCPT" },
		{ "QUIT", "221" },
		{ NULL, NULL },
	};
	struct cli_settings s = settings(0);
	struct cli_conn *c = start(script, "220 x", &s);

	cli_mail(c, "s@x", NULL);
	cli_rcpt(c, "a@x", NULL);
	cli_rcpt(c, "b@x", NULL);
	cli_data_push(c);
	run(5);
	CHECK_INT(srv.mismatches, 0);
	CHECK_INT(rec.mail_code, 550);
	CHECK_INT(rec.rcpt[0], 550);
	CHECK_INT(rec.rcpt[1], 550);
	CHECK_STR(rec.rcpt_text[1], "go away");
	CHECK_INT(rec.dones, 1);
	CHECK(strstr(srv.transcript.data, "RSET") == NULL);
}

/* No reply to MAIL within mail_timeout: a local 4xx for every recipient
 * and for the connection. */
TEST(test_timeout)
{
	static const struct step script[] = {
		{ "EHLO", "250 server.test" },
		{ "MAIL FROM:<s@x>", HANG },
		{ NULL, NULL },
	};
	struct cli_settings s = settings(0);
	struct cli_conn *c;

	s.mail_timeout = 1;
	c = start(script, "220 x", &s);
	cli_mail(c, "s@x", NULL);
	cli_rcpt(c, "a@x", NULL);
	cli_data_push(c);
	run(5);
	CHECK_INT(rec.rcpt[0], 421);
	CHECK_INT(rec.dones, 1);
	CHECK_INT(rec.closed, 1);
	CHECK_INT(rec.closed_local, 1);
	CHECK(strstr(rec.closed_text, "timeout") != NULL);
	CHECK(strstr(rec.closed_text, "MAIL FROM") != NULL);
}

/* The server goes away after DATA's 354, and after the dot: the accepted
 * recipients get a local 4xx (retry; a duplicate is possible). */
TEST(test_server_closes)
{
	static const struct step at_data[] = {
		{ "EHLO", "250-server.test\r\n250 PIPELINING" },
		{ "MAIL", "250 ok" },
		{ "RCPT", "250 ok" },
		{ "DATA", CLOSE },
		{ NULL, NULL },
	};
	static const struct step at_dot[] = {
		{ "EHLO", "250 server.test" },
		{ "MAIL", "250 ok" },
		{ "RCPT", "250 ok" },
		{ "DATA", "354 go" },
		{ ".", CLOSE },
		{ NULL, NULL },
	};
	const struct step *scripts[] = { at_data, at_dot };
	struct cli_settings s = settings(0);
	struct cli_conn *c;
	int i;

	for (i = 0; i < 2; i++) {
		c = start(scripts[i], "220 x", &s);
		rec.push = "hello\n";
		cli_mail(c, "s@x", NULL);
		cli_rcpt(c, "a@x", NULL);
		cli_data_push(c);
		run(5);
		if (rec.rcpt[0] != 250)
			fprintf(stderr, "case %d: %s\n", i, rec.closed_text);
		CHECK_INT(rec.rcpt[0], 250);
		CHECK_INT(rec.final[0], 421);
		CHECK_INT(rec.dones, 1);
		CHECK_INT(rec.closed_local, 1);
		CHECK(strstr(rec.closed_text, "lost connection") != NULL);
	}
}

/* Greeting refused, garbage replies, the reply-line bound. */
TEST(test_bad_servers)
{
	static const struct step ehlo_garbage[] = {
		{ "EHLO", "hello there" }, { NULL, NULL } };
	static const struct step ehlo_mixed[] = {
		{ "EHLO", "250-a\r\n251 b" }, { NULL, NULL } };
	static const struct step ehlo_600[] = {
		{ "EHLO", "600 what" }, { NULL, NULL } };
	static struct step ehlo_lines[] = {
		{ "EHLO", NULL }, { "QUIT", "221" }, { NULL, NULL } };
	const struct step *garbage[] = { ehlo_garbage, ehlo_mixed, ehlo_600 };
	struct cli_settings s = settings(0);
	struct buf b;
	size_t i;

	start(ehlo_garbage, "554 5.7.1 not you", &s);
	run(5);
	CHECK_INT(rec.ready, 0);
	CHECK_INT(rec.closed_code, 554);
	CHECK_INT(rec.closed_local, 0);
	for (i = 0; i < 3; i++) {
		start(garbage[i], "220 x", &s);
		run(5);
		CHECK_INT(rec.ready, 0);
		CHECK_INT(rec.closed_code, 421);
		CHECK(strstr(rec.closed_text, "malformed") != NULL);
	}
	/* SMTP_REPLY_LINES_MAX lines at the bound, then one past it. */
	for (i = 0; i < 2; i++) {
		buf_init(&b, 1 << 16);
		for (int n = 1; n < SMTP_REPLY_LINES_MAX + (int)i; n++)
			buf_printf(&b, "250-line%d\r\n", n);
		buf_printf(&b, "250 last");
		ehlo_lines[0].reply = b.data;
		start(ehlo_lines, "220 x", &s);
		rec.quit_on_ready = 1;
		run(5);
		CHECK_INT(rec.ready, i == 0);
		CHECK_INT(rec.closed_code, i == 0 ? 221 : 421);
		buf_free(&b);
	}
	/* More text than max_reply_bytes (8192) is cut, not an error: 9
	 * and 10 lines of 1000 both work. */
	for (i = 0; i < 2; i++) {
		char text[1001];
		memset(text, 'a', 1000);
		text[1000] = '\0';
		buf_init(&b, 1 << 16);
		for (int n = 0; n < 9 + (int)i; n++)
			buf_printf(&b, "250%c%s%s", n == 8 + (int)i ? ' ' : '-',
			    n == 0 ? "" : text, n == 8 + (int)i ? "" : "\r\n");
		ehlo_lines[0].reply = b.data;
		start(ehlo_lines, "220 x", &s);
		rec.quit_on_ready = 1;
		run(5);
		CHECK_INT(rec.ready, 1);
		buf_free(&b);
	}
}

TEST(test_connect_and_args)
{
	struct cli_settings s = settings(1);
	struct cli_conn *c;
	char path[300];

	memset(&rec, 0, sizeof(rec));
	snprintf(path, sizeof(path), "%s/nosuch.sock", tmpdir);
	conn = cli_connect_unix(base, path, &s, &cbs, NULL);
	CHECK(conn != NULL);
	run(5);
	CHECK_INT(rec.closed, 1);
	CHECK_INT(rec.closed_code, 421);
	CHECK(rec.closed_local);
	CHECK(strstr(rec.closed_text, "connect to") != NULL);
	/* Out-of-order and bad arguments are refused, not sent. */
	static const struct step script[] = {
		{ "LHLO", "250 x" }, { "QUIT", "221" }, { NULL, NULL } };
	c = start(script, "220 x", &s);
	CHECK_INT(cli_rcpt(c, "a@x", NULL), -1);	/* before MAIL */
	CHECK_INT(cli_data_push(c), -1);
	CHECK_INT(cli_mail(c, "a@x\r\nRSET", NULL), -1);
	CHECK_INT(cli_data_write(c, "x", 1), -1);
	CHECK_INT(cli_data_end(c), -1);
	rec.quit_on_ready = 1;
	run(5);
	CHECK_INT(srv.mismatches, 0);
	CHECK_INT(rec.closed_code, 221);
}

/* Bigger than the output's high watermark: from a file (refilled from
 * the write callback) and pushed (drain() flow control). */
TEST(test_big_messages)
{
	static const struct step script[] = {
		{ "EHLO", "250-server.test\r\n250 PIPELINING" },
		{ "MAIL", "250 ok" }, { "RCPT", "250 ok" }, { "DATA", "354" },
		{ ".", "250 ok" }, { "QUIT", "221" }, { NULL, NULL },
	};
	struct cli_settings s = settings(0);
	struct buf in, want;
	struct cli_conn *c;
	int fd, i;

	buf_init(&in, 1 << 23);
	buf_init(&want, 1 << 23);
	for (i = 0; in.len < 3 * 1024 * 1024; i++) {
		buf_printf(&in, "%sline %d of a big message\r\n",
		    i % 97 == 0 ? "." : "", i);
		buf_printf(&want, "%sline %d of a big message\n",
		    i % 97 == 0 ? ".." : "", i);
	}
	fd = message_file(in.data);
	c = start(script, "220 x", &s);
	cli_mail(c, "s@x", NULL);
	cli_rcpt(c, "a@x", NULL);
	cli_data_fd(c, fd, 0, (off_t)in.len);
	run(20);
	close(fd);
	CHECK_INT(rec.final[0], 250);
	CHECK_INT(srv.data.len, want.len);
	CHECK(srv.data.data != NULL && strcmp(srv.data.data, want.data) == 0);

	c = start(script, "220 x", &s);
	rec.push_big = 2 * 1024 * 1024 + 17;
	cli_mail(c, "s@x", NULL);
	cli_rcpt(c, "a@x", NULL);
	cli_data_push(c);
	run(20);
	CHECK_INT(rec.final[0], 250);
	CHECK(rec.drains >= 1);
	CHECK_INT(rec.pushed, rec.push_big);
	/* 99 x + LF per line, and the last partial line gets its CRLF. */
	CHECK_INT(srv.data.len, rec.push_big + (rec.push_big % 100 ? 1 : 0));
	buf_free(&in);
	buf_free(&want);
}

/* cli_rset abandons a transaction before DATA: RSET goes out, the
 * connection stays usable, nothing more is reported about it. */
TEST(test_rset)
{
	static const struct step script[] = {
		{ "EHLO", "250-server.test\r\n250 PIPELINING" },
		{ "MAIL", "250 ok" }, { "RCPT TO:<a@x>", "250 ok" },
		{ "RSET", "250 ok" }, { "QUIT", "221" }, { NULL, NULL },
	};
	struct cli_settings s = settings(0);
	struct cli_conn *c = start(script, "220 x", &s);

	rec.rset_on_rcpt = 1;
	cli_mail(c, "s@x", NULL);
	cli_rcpt(c, "a@x", NULL);
	run(5);
	CHECK_INT(srv.mismatches, 0);
	CHECK_INT(rec.rcpt[0], 250);
	CHECK_INT(rec.dones, 0);
	CHECK_INT(rec.closed_code, 221);
}

/* STARTTLS then AUTH PLAIN (its initial response), then mail. */
TEST(test_starttls_auth_plain)
{
	static const struct step script[] = {
		{ "EHLO client.test", "250-server.test\r\n250 STARTTLS" },
		{ "STARTTLS", "220 2.0.0 go ahead" },
		{ "EHLO client.test", "250-server.test\r\n250-PIPELINING\r\n"
		    "250 AUTH LOGIN PLAIN" },
		{ "AUTH PLAIN AGFsaWNlAHNlY3JldA==", "235 2.7.0 ok" },
		{ "MAIL FROM:<s@x>", "250 ok" }, { "RCPT", "250 ok" },
		{ "DATA", "354" }, { ".", "250 ok" }, { "QUIT", "221" },
		{ NULL, NULL },
	};
	struct cli_settings s = settings(0);
	struct cli_conn *c;

	s.tls = CLI_TLS_MUST;
	s.auth_user = "alice";
	s.auth_pass = "secret";
	tls_wraps = 0;
	c = start(script, "220 x", &s);
	rec.push = "over TLS\n";
	cli_mail(c, "s@x", NULL);
	cli_rcpt(c, "a@x", NULL);
	cli_data_push(c);
	run(10);
	CHECK_INT(srv.mismatches, 0);
	CHECK_INT(tls_wraps, 1);
	CHECK_INT(rec.ready, 1);
	CHECK_INT(rec.tls, 1);
	CHECK(rec.caps & CLI_CAP_PIPELINING);	/* the second EHLO's */
	CHECK_INT(rec.final[0], 250);
	CHECK_STR(srv.data.data, "over TLS\n");
	CHECK_INT(rec.closed_code, 221);
}

/* AUTH LOGIN's prompts; a refused AUTH is a 4xx; TLS policies. */
TEST(test_auth_and_tls_policies)
{
	static const struct step login[] = {
		{ "EHLO", "250-server.test\r\n250 AUTH LOGIN" },
		{ "AUTH LOGIN", "334 VXNlcm5hbWU6" },
		{ "YWxpY2U=", "334 UGFzc3dvcmQ6" },
		{ "c2VjcmV0", "235 ok" }, { "QUIT", "221" }, { NULL, NULL },
	};
	static const struct step refused[] = {
		{ "EHLO", "250-server.test\r\n250 AUTH PLAIN" },
		{ "AUTH PLAIN", "535 5.7.8 bad credentials" }, { NULL, NULL },
	};
	static const struct step no_tls[] = {
		{ "EHLO", "250 server.test" }, { "QUIT", "221" },
		{ NULL, NULL },
	};
	static const struct step tls_refused[] = {
		{ "EHLO", "250-server.test\r\n250 STARTTLS" },
		{ "STARTTLS", "454 4.7.0 not now" }, { "QUIT", "221" },
		{ NULL, NULL },
	};
	static const struct step injected[] = {
		{ "EHLO", "250-server.test\r\n250 STARTTLS" },
		{ "STARTTLS", "220 go\r\n250 injected" }, { NULL, NULL },
	};
	struct cli_settings s = settings(0);

	s.auth_user = "alice";
	s.auth_pass = "secret";
	start(login, "220 x", &s);
	rec.quit_on_ready = 1;
	run(5);
	CHECK_INT(srv.mismatches, 0);
	CHECK_INT(rec.ready, 1);
	CHECK_INT(rec.closed_code, 221);
	start(refused, "220 x", &s);
	run(5);
	CHECK_INT(rec.ready, 0);
	CHECK_INT(rec.closed_code, 435);
	CHECK_STR(rec.closed_text, "bad credentials");
	start(no_tls, "220 x", &s);	/* AUTH configured, not offered */
	run(5);
	CHECK_INT(rec.ready, 0);
	CHECK_INT(rec.closed_code, 421);
	s.auth_user = NULL;
	s.tls = CLI_TLS_MUST;
	start(no_tls, "220 x", &s);
	run(5);
	CHECK_INT(rec.ready, 0);
	CHECK(strstr(rec.closed_text, "STARTTLS") != NULL);
	s.tls = CLI_TLS_MAY;
	start(no_tls, "220 x", &s);
	rec.quit_on_ready = 1;
	run(5);
	CHECK_INT(rec.ready, 1);
	CHECK_INT(rec.tls, 0);
	start(tls_refused, "220 x", &s);	/* may: plaintext */
	rec.quit_on_ready = 1;
	run(5);
	CHECK_INT(srv.mismatches, 0);
	CHECK_INT(rec.ready, 1);
	CHECK_INT(rec.tls, 0);
	start(injected, "220 x", &s);
	run(5);
	CHECK_INT(rec.ready, 0);
	CHECK(strstr(rec.closed_text, "after its STARTTLS") != NULL);
}

int
main(void)
{
	log_init("test_smtp_client", 1, LOG_LVL_WARN);
	signal(SIGPIPE, SIG_IGN);	/* as daemon_init does */
	if (mkdtemp(tmpdir) == NULL)
		return 1;
	base = event_base_new();
	RUN(test_lmtp_mixed);
	RUN(test_smtp_no_pipelining);
	RUN(test_helo_fallback_and_reuse);
	RUN(test_all_rcpts_refused);
	RUN(test_mail_refused);
	RUN(test_timeout);
	RUN(test_server_closes);
	RUN(test_bad_servers);
	RUN(test_connect_and_args);
	RUN(test_big_messages);
	RUN(test_rset);
	tls_setup();
	RUN(test_starttls_auth_plain);
	RUN(test_auth_and_tls_policies);
	SSL_CTX_free(srv_ctx);
	SSL_CTX_free(cli_ctx);
	buf_free(&srv.transcript);
	buf_free(&srv.data);
	event_base_free(base);
	rmdir(tmpdir);
	return unit_done("test_smtp_client");
}
