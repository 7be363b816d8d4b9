/*
 * The LMTP session (RFC 2033): greeting, LHLO, XFORWARD, MAIL, RCPT, DATA
 * and one reply per accepted recipient after the dot, in RCPT order.
 * Commands go through one table (name, states allowed, handler);
 * pipelined commands are taken from the input buffer one after the
 * other. During DATA the bytes are dot-unstuffed and streamed into the
 * transaction's spool (lmtp_txn.c); while the deliveries run the session
 * stops reading, and picks up the pipelined input when the replies are
 * out. Every input has a bound; nothing a client sends ends lmtpd.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <bsd/sys/queue.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "conf.h"
#include "lmtp_parse.h"
#include "lmtp_session.h"
#include "log.h"
#include "xalloc.h"

#define LINE_MAX_LMTP 2048	/* command line, RFC 5321 4.5.3.1.4 allows 512 + extensions */
#define IDLE_TIMEOUT 300	/* seconds without a command, RFC 5321 4.5.3.2.7 */
#define MAX_ERRORS 20		/* bad commands before we hang up */
#define OUT_MAX (64 * 1024)	/* replies queued before we stop reading */
#define MAX_SESSIONS 1000	/* at once; beyond, 421 at connect */

enum state {
	S_GREETED = 1 << 0,	/* before LHLO */
	S_READY = 1 << 1,	/* after LHLO, no transaction */
	S_MAIL = 1 << 2,	/* MAIL given */
	S_RCPT = 1 << 3,	/* at least one recipient accepted */
	S_DATA = 1 << 4,	/* reading the message */
	S_DELIVER = 1 << 5,	/* waiting for the delivery results */
	S_QUIT = 1 << 6,
	S_BDAT = 1 << 7,	/* between BDAT chunks (RFC 3030) */
	S_CHUNK = 1 << 8,	/* reading a BDAT chunk's octets */
};

struct session {
	TAILQ_ENTRY(session) entry;
	struct bufferevent *bev;
	enum state state;
	int errors;
	char qid[DLV_QID_MAX];	/* from XFORWARD IDENT, for the next MAIL */
	struct lmtp_txn *txn;
	/* DATA */
	int at_bol;
	unsigned long long received;
	int toobig;
	/* BDAT */
	unsigned long long chunk_left;	/* octets of this chunk still to read */
	int chunk_last;
	int chunk_discard;		/* read and drop: BDAT out of place */
	int out_blocked;		/* reading paused: the client does not read */
	enum state chunk_back;		/* state after a dropped chunk */
};

static TAILQ_HEAD(, session) sessions = TAILQ_HEAD_INITIALIZER(sessions);
static unsigned nsessions;

static void session_input(struct session *s);

static void __attribute__((format(printf, 4, 5)))
reply(struct session *s, int code, const char *esc, const char *fmt, ...)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	va_list ap;

	evbuffer_add_printf(out, "%d %s ", code, esc);
	va_start(ap, fmt);
	evbuffer_add_vprintf(out, fmt, ap);
	va_end(ap);
	evbuffer_add(out, "\r\n", 2);
}

static void
session_free(struct session *s)
{
	TAILQ_REMOVE(&sessions, s, entry);
	nsessions--;
	lmtp_txn_free(s->txn);
	bufferevent_free(s->bev);
	free(s);
}

static void
txn_reset(struct session *s)
{
	lmtp_txn_free(s->txn);
	s->txn = NULL;
	s->state = S_READY;
}

/* ---- commands --------------------------------------------------------- */

static void
cmd_lhlo(struct session *s, const char *arg)
{
	if (*arg == '\0') {
		reply(s, 501, "5.5.4", "Syntax: LHLO hostname");
		return;
	}
	txn_reset(s);
	struct evbuffer *out = bufferevent_get_output(s->bev);
	evbuffer_add_printf(out, "250-%s\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n"
	    "250-8BITMIME\r\n250-CHUNKING\r\n250-SIZE %lld\r\n250-SMTPUTF8\r\n"
	    "250 XFORWARD NAME ADDR PROTO HELO IDENT SOURCE PORT\r\n",
	    conf_str(C_myhostname), conf_num(C_message_size_limit));
}

static void
cmd_helo(struct session *s, const char *arg)
{
	(void)arg;
	reply(s, 500, "5.5.1", "This is LMTP: use LHLO");
}

/* Keep IDENT (the client's queue id) when it is a plain token. */
static void
cmd_xforward(struct session *s, const char *arg)
{
	const char *p = strcasestr(arg, "IDENT=");

	if (*arg == '\0') {
		reply(s, 501, "5.5.4", "Syntax: XFORWARD attribute=value...");
		return;
	}
	if (p != NULL && (p == arg || p[-1] == ' ')) {
		size_t n = strspn(p + 6, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-_");
		if (n > 0 && n < sizeof(s->qid))
			snprintf(s->qid, sizeof(s->qid), "%.*s", (int)n, p + 6);
	}
	reply(s, 250, "2.0.0", "Ok");
}

static void
cmd_mail(struct session *s, const char *arg)
{
	char path[LMTP_PATH_MAX + 1];
	const char *params;
	unsigned long long size;
	int r;

	if (lmtp_parse_path(arg, "FROM:", path, sizeof(path), &params) < 0) {
		reply(s, 501, "5.1.7", "Bad sender address syntax");
		return;
	}
	if ((r = lmtp_parse_mail_params(params, &size)) < 0) {
		reply(s, r == -2 ? 555 : 501, "5.5.4", "Bad or unsupported MAIL parameter");
		return;
	}
	if (size > (unsigned long long)conf_num(C_message_size_limit)) {
		reply(s, 552, "5.3.4", "Message size exceeds fixed limit");
		return;
	}
	s->txn = lmtp_txn_new(path, s->qid);
	s->qid[0] = '\0';
	s->state = S_MAIL;
	reply(s, 250, "2.1.0", "Ok");
}

static void
cmd_rcpt(struct session *s, const char *arg)
{
	char path[LMTP_PATH_MAX + 1];
	const char *params;
	int r;

	if (lmtp_parse_path(arg, "TO:", path, sizeof(path), &params) < 0 || path[0] == '\0') {
		reply(s, 501, "5.1.3", "Bad recipient address syntax");
		return;
	}
	if ((r = lmtp_parse_rcpt_params(params)) < 0) {
		reply(s, r == -2 ? 555 : 501, "5.5.4", "Bad or unsupported RCPT parameter");
		return;
	}
	if (s->txn->nrcpts >= (unsigned)conf_num(C_smtpd_recipient_limit)) {
		reply(s, 452, "4.5.3", "Too many recipients");
		return;
	}
	enum dlv_status st = lmtp_txn_rcpt(s->txn, path);
	if (st != DLV_OK) {
		const struct lmtp_reply *rep = dlv_reply(st);
		log_q(LOG_LVL_INFO, s->txn->qid, "reject: RCPT <%s>: %d %s %s", path, rep->code,
		    rep->esc, rep->text);
		reply(s, rep->code, rep->esc, "<%s>: %s", path, rep->text);
		return;
	}
	s->state = S_RCPT;
	reply(s, 250, "2.1.5", "Ok");
}

static void
cmd_data(struct session *s, const char *arg)
{
	if (*arg != '\0') {
		reply(s, 501, "5.5.4", "Syntax: DATA");
		return;
	}
	if (lmtp_txn_data_begin(s->txn) < 0) {
		reply(s, 451, "4.3.0", "Cannot spool the message, try again later");
		return;
	}
	s->state = S_DATA;
	s->at_bol = 1;
	s->received = 0;
	s->toobig = 0;
	/* no enhanced code on 354, as RFC 2034's examples and Postfix */
	evbuffer_add_printf(bufferevent_get_output(s->bev),
	    "354 End data with <CR><LF>.<CR><LF>\r\n");
}

/* BDAT <size> [LAST]. The octets follow whatever we answer, so a chunk
 * out of place is read and dropped before its 503; a size we cannot
 * parse leaves us unable to find the next command: hang up. */
static void
cmd_bdat(struct session *s, const char *arg)
{
	char *end;
	size_t n = strspn(arg, "0123456789");

	if (n == 0 || n > 19 || (arg[n] != '\0' && strcasecmp(arg + n, " LAST") != 0)) {
		reply(s, 501, "5.5.4", "Syntax: BDAT size [LAST], closing");
		s->state = S_QUIT;
		return;
	}
	s->chunk_left = strtoull(arg, &end, 10);
	s->chunk_last = arg[n] != '\0';
	s->chunk_discard = !(s->state & (S_RCPT | S_BDAT));
	s->chunk_back = s->state;
	if (!s->chunk_discard && s->state == S_RCPT) {
		if (lmtp_txn_data_begin(s->txn) < 0) {
			s->chunk_discard = 1;	/* 451 after the octets */
			s->chunk_back = S_QUIT;
		}
		s->received = 0;
		s->toobig = 0;
	}
	s->state = S_CHUNK;
}

static void
cmd_rset(struct session *s, const char *arg)
{
	(void)arg;
	txn_reset(s);
	reply(s, 250, "2.0.0", "Ok");
}

static void
cmd_noop(struct session *s, const char *arg)
{
	(void)arg;
	reply(s, 250, "2.0.0", "Ok");
}

static void
cmd_vrfy(struct session *s, const char *arg)
{
	(void)arg;
	reply(s, 252, "2.5.2", "Send some mail, I'll try my best");
}

static void
cmd_quit(struct session *s, const char *arg)
{
	(void)arg;
	reply(s, 221, "2.0.0", "Bye");
	s->state = S_QUIT;
}

static const struct command {
	const char *name;
	unsigned states;	/* where it is allowed */
	void (*act)(struct session *, const char *);
	int code;		/* reply when out of sequence */
	const char *esc, *why;
} commands[] = {
	{ "LHLO", S_GREETED | S_READY | S_MAIL | S_RCPT | S_BDAT, cmd_lhlo, 0, NULL, NULL },
	{ "HELO", ~0u, cmd_helo, 0, NULL, NULL },
	{ "EHLO", ~0u, cmd_helo, 0, NULL, NULL },
	{ "XFORWARD", S_READY, cmd_xforward, 503, "5.5.1", "XFORWARD only before MAIL" },
	{ "MAIL", S_READY, cmd_mail, 503, "5.5.1", "Send LHLO first, one MAIL per transaction" },
	{ "RCPT", S_MAIL | S_RCPT, cmd_rcpt, 503, "5.5.1", "Need MAIL first" },
	{ "DATA", S_RCPT, cmd_data, 503, "5.5.1", "No valid recipients" },
	{ "BDAT", S_GREETED | S_READY | S_MAIL | S_RCPT | S_BDAT, cmd_bdat, 0, NULL, NULL },
	{ "RSET", ~0u, cmd_rset, 0, NULL, NULL },
	{ "NOOP", ~0u, cmd_noop, 0, NULL, NULL },
	{ "VRFY", ~0u, cmd_vrfy, 0, NULL, NULL },
	{ "QUIT", ~0u, cmd_quit, 0, NULL, NULL },
};

static void
dispatch(struct session *s, char *line)
{
	size_t n = strcspn(line, " ");
	const char *arg = line + n;

	while (*arg == ' ')
		arg++;
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		const struct command *c = &commands[i];
		if (strlen(c->name) != n || strncasecmp(line, c->name, n) != 0)
			continue;
		if (!(c->states & s->state)) {
			s->errors++;
			if (s->state == S_GREETED)
				reply(s, 503, "5.5.1", "Send LHLO first");
			else
				reply(s, c->code, c->esc, "%s", c->why);
			return;
		}
		c->act(s, arg);
		return;
	}
	s->errors++;
	reply(s, 500, "5.5.2", "Command not recognized");
}

/* ---- DATA ------------------------------------------------------------- */

static void
data_put(struct session *s, struct evbuffer *in, size_t n)
{
	char tmp[16384];

	while (n > 0) {
		size_t k = n < sizeof(tmp) ? n : sizeof(tmp);
		evbuffer_remove(in, tmp, k);
		n -= k;
		s->received += k;
		if (s->received > (unsigned long long)conf_num(C_message_size_limit))
			s->toobig = 1;
		if (!s->toobig)
			spool_write(s->txn->spool, tmp, k);
	}
}

/* Every result is in: the replies, in RCPT order. */
static void
deliveries_reply(struct session *s)
{
	for (unsigned i = 0; i < s->txn->nrcpts; i++) {
		const struct lmtp_rcpt *r = &s->txn->rcpts[i];
		const struct lmtp_reply *rep = dlv_reply(r->st);
		reply(s, rep->code, rep->esc, "<%s> %s%s%s", r->addr, rep->text,
		    r->st == DLV_OK ? "" : ": ", r->st == DLV_OK ? "" : r->detail);
	}
	txn_reset(s);
}

static void
deliveries_done(void *arg)
{
	struct session *s = arg;

	deliveries_reply(s);
	s->out_blocked = 0;
	bufferevent_enable(s->bev, EV_READ);
	session_input(s);
}

/* The final dot: the CRLF before it belongs to the message. */
static void
data_end(struct session *s)
{
	s->state = S_DELIVER;
	bufferevent_disable(s->bev, EV_READ);
	if (lmtp_txn_deliver(s->txn, s->toobig, deliveries_done, s) != 0) {
		deliveries_reply(s);	/* settled at once: go on reading */
		bufferevent_enable(s->bev, EV_READ);
	}
}

/* Consume message bytes. 1 when the end was seen, 0 to wait for more. */
static int
data_input(struct session *s, struct evbuffer *in)
{
	for (;;) {
		size_t len = evbuffer_get_length(in);
		if (len == 0)
			return 0;
		if (s->at_bol) {
			unsigned char p[3];
			size_t k = len < 3 ? len : 3;
			evbuffer_copyout(in, p, k);
			if (p[0] == '.') {
				if (k < 3 && (k < 2 || p[1] == '\r'))
					return 0;	/* ".", ".\r": not decided yet */
				if (p[1] == '\r' && p[2] == '\n') {
					evbuffer_drain(in, 3);
					return 1;
				}
				evbuffer_drain(in, 1);	/* dot-unstuffing */
				s->at_bol = 0;
				continue;
			}
		}
		size_t eol_len = 0;
		struct evbuffer_ptr e = evbuffer_search_eol(in, NULL, &eol_len,
		    EVBUFFER_EOL_CRLF_STRICT);
		if (e.pos >= 0) {
			data_put(s, in, (size_t)e.pos + eol_len);
			s->at_bol = 1;
			continue;
		}
		/* no line end yet: pass all but a last CR that may start one */
		struct evbuffer_ptr lp;
		unsigned char last;
		len = evbuffer_get_length(in);
		evbuffer_ptr_set(in, &lp, len - 1, EVBUFFER_PTR_SET);
		evbuffer_copyout_from(in, &lp, &last, 1);
		size_t n = last == '\r' ? len - 1 : len;
		if (n == 0)
			return 0;
		data_put(s, in, n);
		s->at_bol = 0;
	}
}

/* Octets of a BDAT chunk. 1 when the chunk is complete. */
static int
chunk_input(struct session *s, struct evbuffer *in)
{
	size_t len = evbuffer_get_length(in);
	size_t n = s->chunk_left < len ? (size_t)s->chunk_left : len;

	if (s->chunk_discard)
		evbuffer_drain(in, n);
	else
		data_put(s, in, n);
	s->chunk_left -= n;
	return s->chunk_left == 0;
}

static void
chunk_end(struct session *s)
{
	if (s->chunk_discard) {
		if (s->chunk_back == S_QUIT) {
			reply(s, 451, "4.3.0", "Cannot spool the message, try again later");
			txn_reset(s);
		} else {
			reply(s, 503, "5.5.1", "BDAT out of sequence or no valid recipients");
			s->state = s->chunk_back;
		}
		return;
	}
	if (s->chunk_last) {
		data_end(s);
		return;
	}
	reply(s, 250, "2.0.0", "%llu octets received", s->received);
	s->state = S_BDAT;
}

/* ---- input ------------------------------------------------------------ */

static void
session_input(struct session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);

	while (s->state != S_QUIT && s->state != S_DELIVER) {
		/* a client that pipelines without reading our replies
		 * waits until they are gone */
		if (evbuffer_get_length(bufferevent_get_output(s->bev)) > OUT_MAX) {
			bufferevent_disable(s->bev, EV_READ);
			s->out_blocked = 1;
			return;
		}
		if (s->state == S_CHUNK) {
			if (!chunk_input(s, in))
				return;
			chunk_end(s);
			continue;
		}
		if (s->state == S_DATA) {
			if (!data_input(s, in))
				return;
			data_end(s);
			continue;
		}
		size_t n;
		char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF);
		if (line == NULL) {
			if (evbuffer_get_length(in) > LINE_MAX_LMTP) {
				reply(s, 500, "5.5.2", "Line too long");
				s->state = S_QUIT;
			}
			return;
		}
		if (n > LINE_MAX_LMTP || memchr(line, '\0', n) != NULL)
			reply(s, 500, "5.5.2", n > LINE_MAX_LMTP ? "Line too long" : "NUL in command");
		else
			dispatch(s, line);
		free(line);
		if (s->errors > MAX_ERRORS) {
			reply(s, 421, "4.7.0", "Too many errors");
			s->state = S_QUIT;
		}
	}
}

static void
on_read(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;

	(void)bev;
	session_input(s);
	if (s->state == S_QUIT)
		bufferevent_disable(s->bev, EV_READ);
}

static void
on_write(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;

	(void)bev;
	if (s->state == S_QUIT) {
		session_free(s);
		return;
	}
	if (s->out_blocked && s->state != S_DELIVER) {
		s->out_blocked = 0;
		bufferevent_enable(s->bev, EV_READ);
		session_input(s);
	}
}

static void
on_event(struct bufferevent *bev, short what, void *arg)
{
	struct session *s = arg;

	(void)bev;
	if ((what & BEV_EVENT_TIMEOUT) && s->state != S_DELIVER) {
		reply(s, 421, "4.4.2", "Timeout");
		s->state = S_QUIT;
		return;
	}
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		if (s->state == S_DATA || s->state == S_DELIVER)
			log_info("lost connection during %s",
			    s->state == S_DATA ? "DATA" : "delivery");
		session_free(s);
	}
}

void
lmtp_session_new(struct event_base *base, evutil_socket_t fd)
{
	struct session *s = xcalloc(1, sizeof(*s));
	struct timeval idle = { IDLE_TIMEOUT, 0 };

	if (nsessions >= MAX_SESSIONS) {
		static const char busy[] = "421 4.3.2 Too many sessions, try again later\r\n";
		if (write(fd, busy, sizeof(busy) - 1) < 0) { /* best effort */ }
		evutil_closesocket(fd);
		free(s);
		return;
	}
	s->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (s->bev == NULL) {
		evutil_closesocket(fd);
		free(s);
		return;
	}
	nsessions++;
	s->state = S_GREETED;
	TAILQ_INSERT_TAIL(&sessions, s, entry);
	bufferevent_setcb(s->bev, on_read, on_write, on_event, s);
	bufferevent_set_timeouts(s->bev, &idle, &idle);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	/* no enhanced code in the greeting: nothing is negotiated yet */
	evbuffer_add_printf(bufferevent_get_output(s->bev), "220 %s LMTP Hermod lmtpd ready\r\n",
	    conf_str(C_myhostname));
}

unsigned
lmtp_sessions_delivering(void)
{
	struct session *s;
	unsigned n = 0;

	TAILQ_FOREACH(s, &sessions, entry) {
		if (s->state == S_DELIVER)
			n++;
	}
	return n;
}

void
lmtp_sessions_close_all(void)
{
	struct session *s;

	while ((s = TAILQ_FIRST(&sessions)) != NULL)
		session_free(s);
}
