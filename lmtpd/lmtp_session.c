/*
 * The LMTP session (RFC 2033): greeting, LHLO, XFORWARD, MAIL, RCPT, DATA
 * and one reply per accepted recipient after the dot, in RCPT order.
 * The protocol mechanics (line reading and its bounds, the command table
 * with its states, the error limit, the idle timeout, pipelining, output
 * back-pressure, DATA dot-unstuffing that only CRLF.CRLF ends, BDAT
 * chunks) are lib/smtp_server's; this file holds lmtpd's decisions:
 * what each command does, the replies, and the deliveries (lmtp_txn.c),
 * during which the session is paused and picks up the pipelined input
 * when the replies are out. Nothing a client sends ends lmtpd.
 */
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
#include "smtp_server.h"
#include "xalloc.h"

#define LINE_MAX_LMTP 2048	/* command line without CRLF (RFC 5321 4.5.3.1.4
				   allows 512 + extensions) */
#define IDLE_TIMEOUT 300	/* seconds without a command, RFC 5321 4.5.3.2.7 */
#define MAX_ERRORS 20		/* bad commands tolerated; the next gets 421 */
#define OUT_MAX (64 * 1024)	/* replies queued before we stop reading */
#define MAX_SESSIONS 1000	/* at once; beyond, 421 at connect */

/* Session states (srv_state()); the engine checks them per command. */
enum state {
	S_GREETED,	/* before LHLO */
	S_READY,	/* after LHLO, no transaction */
	S_MAIL,		/* MAIL given */
	S_RCPT,		/* at least one recipient accepted */
	S_DATA,		/* reading the message */
	S_DELIVER,	/* paused: waiting for the delivery results */
	S_BDAT,		/* between BDAT chunks (RFC 3030) */
	S_CHUNK,	/* reading a BDAT chunk's octets */
};
#define ST(x)	SRV_STATE(S_##x)

struct session {
	TAILQ_ENTRY(session) entry;
	struct srv_session *srv;
	char qid[DLV_QID_MAX];	/* from XFORWARD IDENT, for the next MAIL */
	struct lmtp_txn *txn;
	unsigned long long received;	/* message octets so far */
	int toobig;
	enum state chunk_back;	/* state after a dropped chunk */
	int chunk_fail;		/* dropped because the spool failed: 451 */
};

static TAILQ_HEAD(, session) sessions = TAILQ_HEAD_INITIALIZER(sessions);
static unsigned nsessions;
static struct event_base *session_base;

#define reply(s, ...)	srv_reply((s)->srv, __VA_ARGS__)

static void
set_state(struct session *s, enum state st)
{
	srv_set_state(s->srv, st);
}

static void
txn_reset(struct session *s)
{
	lmtp_txn_free(s->txn);
	s->txn = NULL;
	set_state(s, S_READY);
}

/* ---- commands --------------------------------------------------------- */

static void
cmd_lhlo(struct srv_session *srv, char *arg)
{
	struct session *s = srv_udata(srv);

	if (*arg == '\0') {
		reply(s, 501, "5.5.4", "Syntax: LHLO hostname");
		return;
	}
	txn_reset(s);
	/* no enhanced codes in the LHLO reply (RFC 2034 examples) */
	reply(s, 250, NULL, "%s\nPIPELINING\nENHANCEDSTATUSCODES\n8BITMIME\n"
	    "CHUNKING\nSIZE %lld\nSMTPUTF8\n"
	    "XFORWARD NAME ADDR PROTO HELO IDENT SOURCE PORT",
	    conf_str(C_myhostname), conf_num(C_message_size_limit));
}

static void
cmd_helo(struct srv_session *srv, char *arg)
{
	(void)arg;
	srv_reply(srv, 500, "5.5.1", "This is LMTP: use LHLO");
}

/* Keep IDENT (the client's queue id) when it is a plain token. */
static void
cmd_xforward(struct srv_session *srv, char *arg)
{
	struct session *s = srv_udata(srv);
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
cmd_mail(struct srv_session *srv, char *arg)
{
	struct session *s = srv_udata(srv);
	char path[LMTP_PATH_MAX + 1];
	char *params;
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
	set_state(s, S_MAIL);
	reply(s, 250, "2.1.0", "Ok");
}

static void
cmd_rcpt(struct srv_session *srv, char *arg)
{
	struct session *s = srv_udata(srv);
	char path[LMTP_PATH_MAX + 1];
	char *params;
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
	set_state(s, S_RCPT);
	reply(s, 250, "2.1.5", "Ok");
}

static void
data_begin(struct session *s)
{
	s->received = 0;
	s->toobig = 0;
}

static void
cmd_data(struct srv_session *srv, char *arg)
{
	struct session *s = srv_udata(srv);

	if (*arg != '\0') {
		reply(s, 501, "5.5.4", "Syntax: DATA");
		return;
	}
	if (lmtp_txn_data_begin(s->txn) < 0) {
		reply(s, 451, "4.3.0", "Cannot spool the message, try again later");
		return;
	}
	set_state(s, S_DATA);
	data_begin(s);
	/* no enhanced code on 354, as RFC 2034's examples and Postfix */
	srv_reply_id(srv, RPL_DATA_GO);
	srv_data_start(srv, 0);		/* size counted in on_data */
}

/* BDAT <size> [LAST]. The octets follow whatever we answer, so a chunk
 * out of place is read and dropped before its 503; a size we cannot
 * parse leaves us unable to find the next command: hang up. */
static void
cmd_bdat(struct srv_session *srv, char *arg)
{
	struct session *s = srv_udata(srv);
	uint64_t size;
	int last;
	unsigned st = srv_state(srv), flags;

	if (smtp_bdat_parse(arg, SMTP_BDAT_MAX, &size, &last) < 0) {
		reply(s, 501, "5.5.4", "Syntax: BDAT size [LAST], closing");
		srv_close_after_flush(srv);
		return;
	}
	flags = last ? SRV_BDAT_LAST : 0;
	s->chunk_back = st;
	s->chunk_fail = 0;
	if (st != S_RCPT && st != S_BDAT) {
		flags |= SRV_BDAT_DISCARD;
	} else if (st == S_RCPT) {
		if (lmtp_txn_data_begin(s->txn) < 0) {
			flags |= SRV_BDAT_DISCARD;	/* 451 after the octets */
			s->chunk_fail = 1;
		}
		data_begin(s);
	}
	set_state(s, S_CHUNK);
	srv_bdat_start(srv, size, flags);
}

static void
cmd_rset(struct srv_session *srv, char *arg)
{
	(void)arg;
	txn_reset(srv_udata(srv));
	srv_reply(srv, 250, "2.0.0", "Ok");
}

static void
cmd_noop(struct srv_session *srv, char *arg)
{
	(void)arg;
	srv_reply(srv, 250, "2.0.0", "Ok");
}

static void
cmd_vrfy(struct srv_session *srv, char *arg)
{
	(void)arg;
	srv_reply(srv, 252, "2.5.2", "Send some mail, I'll try my best");
}

static void
cmd_quit(struct srv_session *srv, char *arg)
{
	(void)arg;
	srv_reply(srv, 221, "2.0.0", "Bye");
	srv_close_after_flush(srv);
}

#define BEFORE_DATA	(ST(GREETED) | ST(READY) | ST(MAIL) | ST(RCPT) | ST(BDAT))

/* Out of sequence: the text names what is missing (why[], by row). */
static const struct srv_cmd commands[] = {
	{ "LHLO", BEFORE_DATA, SRV_ARG_ANY, cmd_lhlo },
	{ "HELO", 0, SRV_ARG_ANY, cmd_helo },
	{ "EHLO", 0, SRV_ARG_ANY, cmd_helo },
	{ "XFORWARD", ST(READY), SRV_ARG_ANY, cmd_xforward },
	{ "MAIL", ST(READY), SRV_ARG_ANY, cmd_mail },
	{ "RCPT", ST(MAIL) | ST(RCPT), SRV_ARG_ANY, cmd_rcpt },
	{ "DATA", ST(RCPT), SRV_ARG_ANY, cmd_data },
	{ "BDAT", BEFORE_DATA, SRV_ARG_ANY, cmd_bdat },
	{ "RSET", 0, SRV_ARG_ANY, cmd_rset },
	{ "NOOP", 0, SRV_ARG_ANY, cmd_noop },
	{ "VRFY", 0, SRV_ARG_ANY, cmd_vrfy },
	{ "QUIT", 0, SRV_ARG_ANY, cmd_quit },
	{ NULL, 0, 0, NULL },
};

static const char *const why[] = {
	[3] = "XFORWARD only before MAIL",
	[4] = "Send LHLO first, one MAIL per transaction",
	[5] = "Need MAIL first",
	[6] = "No valid recipients",
};

static void
on_bad_state(struct srv_session *srv, const struct srv_cmd *cmd)
{
	size_t i = (size_t)(cmd - commands);

	if (srv_state(srv) == S_GREETED)
		srv_reply(srv, 503, "5.5.1", "Send LHLO first");
	else if (i < sizeof(why) / sizeof(why[0]) && why[i] != NULL)
		srv_reply(srv, 503, "5.5.1", "%s", why[i]);
	else
		srv_reply_id(srv, RPL_BAD_SEQUENCE);
}

static int
on_unknown(struct srv_session *srv, char *verb, char *arg)
{
	(void)verb;
	(void)arg;
	srv_reply(srv, 500, "5.5.2", "Command not recognized");
	return 1;
}

/* ---- DATA, BDAT and the deliveries ------------------------------------ */

/* Message octets (dot-unstuffed DATA or raw chunk bytes) into the spool. */
static void
on_data(struct srv_session *srv, const char *p, size_t n)
{
	struct session *s = srv_udata(srv);

	s->received += n;
	if (s->received > (unsigned long long)conf_num(C_message_size_limit))
		s->toobig = 1;
	if (!s->toobig)
		spool_write(s->txn->spool, p, n);
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
	srv_resume(s->srv);
}

/* The final dot or the last chunk: deliver, paused until all report. */
static void
message_end(struct session *s)
{
	set_state(s, S_DELIVER);
	if (lmtp_txn_deliver(s->txn, s->toobig, deliveries_done, s) != 0)
		deliveries_reply(s);	/* settled at once: go on reading */
	else
		srv_pause(s->srv);
}

static void
chunk_end(struct session *s, unsigned flags)
{
	if (flags & SRV_END_DISCARDED) {
		if (s->chunk_fail) {
			reply(s, 451, "4.3.0", "Cannot spool the message, try again later");
			txn_reset(s);
		} else {
			reply(s, 503, "5.5.1", "BDAT out of sequence or no valid recipients");
			set_state(s, s->chunk_back);
		}
		return;
	}
	if (flags & SRV_END_LAST) {
		message_end(s);
		return;
	}
	reply(s, 250, "2.0.0", "%llu octets received", s->received);
	set_state(s, S_BDAT);
}

static void
on_data_end(struct srv_session *srv, unsigned flags)
{
	struct session *s = srv_udata(srv);

	/* bare LF/CR are kept as they are (the spool stores LF lines) */
	if (flags & SRV_END_BDAT)
		chunk_end(s, flags);
	else
		message_end(s);
}

static void
on_close(struct srv_session *srv, enum srv_close_why w)
{
	struct session *s = srv_udata(srv);
	unsigned st = srv_state(srv);

	if ((w == SRV_CLOSE_EOF || w == SRV_CLOSE_ERROR) &&
	    (st == S_DATA || st == S_CHUNK || st == S_DELIVER))
		log_info("lost connection during %s", st == S_DELIVER ?
		    "delivery" : "DATA");
	TAILQ_REMOVE(&sessions, s, entry);
	nsessions--;
	lmtp_txn_free(s->txn);
	free(s);
}

static const struct srv_ops ops = {
	.on_data = on_data,
	.on_data_end = on_data_end,
	.on_close = on_close,
	.on_unknown = on_unknown,
	.on_bad_state = on_bad_state,
};

/* ---- sessions --------------------------------------------------------- */

static const struct srv_limits limits = {
	.line_max = LINE_MAX_LMTP + 2,
	.hard_error_limit = MAX_ERRORS + 1,
	.timeout_sec = IDLE_TIMEOUT,
	.output_max = OUT_MAX,
};

void
lmtp_session_new(struct event_base *base, evutil_socket_t fd)
{
	struct bufferevent *bev;
	struct session *s;

	if (nsessions >= MAX_SESSIONS) {
		static const char busy[] = "421 4.3.2 Too many sessions, try again later\r\n";
		if (write(fd, busy, sizeof(busy) - 1) < 0) { /* best effort */ }
		evutil_closesocket(fd);
		return;
	}
	bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		evutil_closesocket(fd);
		return;
	}
	session_base = base;
	s = xcalloc(1, sizeof(*s));
	s->srv = srv_session_new(bev, commands, &limits, &ops, s);
	nsessions++;
	TAILQ_INSERT_TAIL(&sessions, s, entry);
	/* no enhanced code in the greeting: nothing is negotiated yet */
	reply(s, 220, NULL, "%s LMTP Hermod lmtpd ready", conf_str(C_myhostname));
}

unsigned
lmtp_sessions_delivering(void)
{
	struct session *s;
	unsigned n = 0;

	TAILQ_FOREACH(s, &sessions, entry) {
		if (srv_state(s->srv) == S_DELIVER)
			n++;
	}
	return n;
}

unsigned
lmtp_sessions_in_transaction(void)
{
	struct session *s;
	unsigned n = 0;

	TAILQ_FOREACH(s, &sessions, entry) {
		unsigned st = srv_state(s->srv);
		n += st == S_MAIL || st == S_RCPT || st == S_DATA || st == S_BDAT || st == S_CHUNK;
	}
	return n;
}

unsigned
lmtp_sessions_unflushed(void)
{
	struct session *s;
	unsigned n = 0;

	TAILQ_FOREACH(s, &sessions, entry)
		n += evbuffer_get_length(bufferevent_get_output(srv_bev(s->srv))) > 0;
	return n;
}

void
lmtp_sessions_close_all(void)
{
	struct session *s;

	TAILQ_FOREACH(s, &sessions, entry)
		srv_close(s->srv);
	/* the engine frees closed sessions from the loop: one turn */
	if (session_base != NULL && !TAILQ_EMPTY(&sessions))
		event_base_loop(session_base, EVLOOP_NONBLOCK);
}
