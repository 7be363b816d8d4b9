/*
 * The message: DATA (dot-stuffed, ended only by CRLF.CRLF: decoded by
 * lib/smtp_server with lib/smtp_proto's decoder) and BDAT (RFC 3030
 * counted chunks, read by lib/smtp_server, checked here for bare line
 * ends) streamed to queued through handoff.c, after the Received: header.
 * Never held whole: less than 2 * SMTPD_DATA_CHUNK decoded bytes wait
 * here, and the session is paused while queued's socket is full.
 *
 * DATA gets its 354 at once, without waiting for queued's, when queued
 * has nothing else of this smtpd to answer and the connection to it has
 * served before: the client sends the message while queued opens its
 * file (a round trip saved per message, most of the DATA command's time
 * at one client). What comes meanwhile waits in tx->out, the session
 * paused once a chunk is there; the Received: header, which needs
 * queued's id, goes first when queued's 354 comes. A refusal from
 * queued then comes after the dot, as any failure to queue does. Under
 * load (other transactions waiting for queued) the 354 waits: queued's
 * 354 would come late, and the gain is nil when queued is busy anyway.
 * On a new connection (queued just started, or down) the 354 waits too,
 * so that a queued that is down costs the client no data.
 *
 * SMTP smuggling (2023): a bare LF or a bare CR anywhere in the data gets
 * the whole message refused (550 5.5.2, Postfix 3.9's
 * smtpd_forbid_bare_newline), so "LF.LF", "CR.CR", "LF.CRLF" and friends
 * can neither end the data nor split it into two messages: the data ends
 * at the real CRLF.CRLF only, and then the one message is refused. The
 * same holds for the size limit (552 5.3.4) and the loop guard
 * (hopcount_limit Received: headers, 554 5.4.6): once refused, queued's
 * half-written file is dropped at once and the rest is read and thrown
 * away.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conf.h"
#include "log.h"
#include "smtpd.h"
#include "smtpd_tls.h"
#include "xalloc.h"

static const char R_BARE_LF[] = "550 5.5.2 Error: bare <LF> received";
static const char R_BARE_CR[] = "550 5.5.2 Error: bare <CR> received";
static const char R_TOO_BIG[] = "552 5.3.4 Error: message file too big";
static const char R_LOOP[] = "554 5.4.6 Error: too many hops";

static void
reject(struct session *s, const char *why)
{
	struct txn *tx = s->tx;

	if (tx->reject != NULL)
		return;
	tx->reject = why;
	if (tx->phase != P_NONE)
		handoff_abort(s->ho);	/* queued drops the partial file now */
	tx->phase = P_NONE;
	buf_reset(&tx->out);
}

static void
start_handoff(struct session *s)
{
	struct txn *tx = s->tx;
	/* on the heap: smtpd_recipient_limit may be 100,000 (2.4 MB) */
	const char **rcpts = xcalloc((size_t)tx->nrcpt + 1, sizeof(*rcpts));
	struct cli_rcpt_params *rp = xcalloc((size_t)tx->nrcpt + 1, sizeof(*rp));
	struct handoff_msg m = {
		.sender = tx->sender,
		.mail = { .size = tx->size_param, .body_8bitmime = tx->body8,
		    .smtputf8 = tx->smtputf8, .ret = tx->ret[0] ? tx->ret : NULL,
		    .envid = tx->envid },
		.nrcpt = tx->nrcpt, .rcpts = rcpts, .rcpt_params = rp,
		.xforward = { .name = strcmp(s->name, "unknown") ? s->name : "",
		    .addr = s->addr, .port = s->port,
		    .proto = s->esmtp ? "ESMTP" : "SMTP", .helo = session_helo(s),
		    .source = "REMOTE" },
	};

	for (int i = 0; i < tx->nrcpt; i++) {
		rcpts[i] = tx->rcpts[i].addr;
		rp[i].notify = tx->rcpts[i].notify;
		rp[i].orcpt = tx->rcpts[i].orcpt;
	}
	if (s->ho == NULL)
		s->ho = handoff_new(s->base, &data_handoff_cb, s);
	buf_init(&tx->out, 2 * SMTPD_DATA_CHUNK);
	hopcount_init(&tx->hops);
	tx->ds = D_BOL;
	tx->started = 1;
	tx->phase = P_START;
	tx->early = handoff_start(s->ho, &m) == 1 && !tx->bdat;
	free(rcpts);		/* the client copied them */
	free(rp);
	if (!tx->early) {
		session_pause(s);
		return;
	}
	session_reply(s, "354 End data with <CR><LF>.<CR><LF>");
	srv_data_start(s->srv, 0);	/* the size is checked here */
}

void
data_begin(struct session *s)
{
	start_handoff(s);
}

/* BDAT n [LAST]: the octets are read whatever the state, so that none
 * of them is ever taken for a command; out of place, they are dropped
 * and the 503 comes after them. */
void
data_bdat(struct session *s, unsigned long long n, int last)
{
	unsigned st = session_st(s);
	const char *wrong = NULL;

	if (st == ST_GREET)
		wrong = "503 5.5.1 Error: send HELO/EHLO first";
	else if (!(st & (ST_RCPT | ST_BDAT)))
		wrong = st == ST_MAIL ? "503 5.5.1 Error: need RCPT command" :
		    "503 5.5.1 Error: need MAIL command";
	if (wrong != NULL) {
		s->skip_reply = wrong;	/* given by data_on_end */
		srv_bdat_start(s->srv, n, SRV_BDAT_DISCARD);
		return;
	}
	if (!(st & ST_BDAT)) {
		session_set_state(s, S_BDAT);
		s->tx->bdat = 1;
		s->tx->chunk_left = n;
		s->tx->chunk_last = last;
		start_handoff(s);	/* the chunk is read once queued is ready */
		return;
	}
	srv_bdat_start(s->srv, n, last ? SRV_BDAT_LAST : 0);
}

/* ---- decoding ------------------------------------------------------------- */

static inline void
emit(struct txn *tx, const char *p, size_t n)
{
	if (tx->reject == NULL && !tx->failed)
		buf_append(&tx->out, p, n);
}

/*
 * One BDAT byte: the octets are raw (no dot-stuffing), but a bare LF or
 * bare CR refuses the message as in DATA, so that what queued stores and
 * relays never holds a line end another server reads differently.
 */
static void
bdat_byte(struct session *s, struct txn *tx, char c)
{
	if (tx->ds == D_CR) {
		if (c == '\n') {
			emit(tx, "\r\n", 2);
			tx->ds = D_BOL;
			return;
		}
		reject(s, R_BARE_CR);
	}
	if (c == '\r') {
		tx->ds = D_CR;
		return;
	}
	if (c == '\n')
		reject(s, R_BARE_LF);
	else
		emit(tx, &c, 1);
	tx->ds = D_MID;
}

/* Hand the decoded bytes on; 1 if queued's socket is full (wait). */
static int
flush_out(struct session *s)
{
	struct txn *tx = s->tx;
	int r;

	if (tx->out.len == 0 || tx->reject != NULL || tx->failed)
		return 0;
	tx->msg_size += tx->out.len;
	hopcount_feed(&tx->hops, tx->out.data, tx->out.len);
	if (tx->msg_size > (unsigned long long)conf_num(C_message_size_limit)) {
		reject(s, R_TOO_BIG);
		return 0;
	}
	if (tx->hops.count > conf_num(C_hopcount_limit)) {
		reject(s, R_LOOP);
		return 0;
	}
	r = submit_write(s, tx->out.data, tx->out.len);	/* submit.c */
	buf_reset(&tx->out);
	return r == 1;
}

static void finish_message(struct session *s);

/* Decoded bytes into tx->out, handed on every SMTPD_DATA_CHUNK; reading
 * stops while queued's socket is full. */
static void
take(struct session *s, const char *p, size_t n, int bdat)
{
	struct txn *tx = s->tx;

	if (bdat)
		for (size_t i = 0; i < n; i++)
			bdat_byte(s, tx, p[i]);
	else
		emit(tx, p, n);
	if (tx->phase == P_START) {	/* early 354: keep it until queued's */
		if (tx->out.len >= SMTPD_DATA_CHUNK)
			session_pause(s);
		return;
	}
	if (tx->out.len >= SMTPD_DATA_CHUNK && flush_out(s) &&
	    !tx->waiting_drain) {
		tx->waiting_drain = 1;
		session_pause(s);
	}
}

/*
 * The engine's on_data: DATA bytes decoded by lib/smtp_proto (a bare LF
 * or CR refuses the message the moment the decoder has seen it, and
 * queued drops its partial file; when one piece holds both, the reply
 * names the LF), or BDAT octets, raw, checked here.
 */
void
data_on_data(struct srv_session *srv, const char *p, size_t n)
{
	struct session *s = srv_udata(srv);
	unsigned f = srv_data_flags(srv);
	int bdat;

	if (s->tx == NULL)
		return;		/* cannot happen */
	bdat = session_st(s) == ST_BDAT;
	if (!bdat && (f & SMTP_DATA_F_BARE_LF))
		reject(s, R_BARE_LF);
	else if (!bdat && (f & SMTP_DATA_F_BARE_CR))
		reject(s, R_BARE_CR);
	while (n > 0) {
		size_t k = n < SMTPD_DATA_CHUNK ? n : SMTPD_DATA_CHUNK;

		take(s, p, k, bdat);
		p += k;
		n -= k;
	}
}

static void
chunk_done(struct session *s, int last)
{
	struct txn *tx = s->tx;

	if (last) {
		if (tx->ds == D_CR)
			reject(s, R_BARE_CR);
		else if (tx->ds != D_BOL)	/* no CRLF at the end */
			emit(tx, "\r\n", 2);
		finish_message(s);
		return;
	}
	if (tx->reject != NULL || tx->failed) {
		session_reply(s, "%s", tx->reject ? tx->reject : tx->fail_line);
		return;
	}
	flush_out(s);
	if (tx->reject != NULL) {
		session_reply(s, "%s", tx->reject);
		return;
	}
	session_reply(s, "250 2.0.0 Ok: %llu bytes", tx->msg_size);
}

/* The engine's on_data_end: the final dot, or the end of a chunk. */
void
data_on_end(struct srv_session *srv, unsigned flags)
{
	struct session *s = srv_udata(srv);

	if (flags & SRV_END_DISCARDED) {	/* a BDAT out of place */
		session_error(s, "%s", s->skip_reply ? s->skip_reply :
		    "503 5.5.1 Error: need MAIL command");
		s->skip_reply = NULL;
		return;
	}
	if (s->tx == NULL)
		return;		/* cannot happen */
	if (flags & SRV_END_BDAT) {
		chunk_done(s, (flags & SRV_END_LAST) != 0);
		return;
	}
	if (flags & SMTP_DATA_F_BARE_LF)
		reject(s, R_BARE_LF);
	else if (flags & SMTP_DATA_F_BARE_CR)
		reject(s, R_BARE_CR);
	finish_message(s);
}

/* ---- the end of the message ------------------------------------------------ */

static void
end_transaction(struct session *s)
{
	txn_free(s);
	if (smtpd_stopping)
		session_close(s, "421 4.3.2 %s Service shutting down",
		    conf_str(C_myhostname));
	else
		session_resume(s);
}

static void
finish_message(struct session *s)
{
	struct txn *tx = s->tx;

	if (tx->reject != NULL || tx->failed) {
		const char *why = tx->reject ? tx->reject : tx->fail_line;

		if (tx->reject != NULL)
			session_log_reject(s, tx->bdat ? "BDAT" : "DATA", NULL, why);
		else
			log_info("NOQUEUE: not queued: %s from %s: %s",
			    tx->bdat ? "BDAT" : "DATA", session_client(s), why);
		session_reply(s, "%s", why);
		end_transaction(s);
		return;
	}
	if (tx->phase == P_START) {	/* early 354: on_ready ends it */
		tx->end_pending = 1;
		session_pause(s);
		return;
	}
	flush_out(s);
	if (tx->reject != NULL) {
		finish_message(s);
		return;
	}
	tx->phase = P_END;
	session_pause(s);
	submit_end(s);		/* a failure shows in handoff_end's result */
	if (handoff_end(s->ho) != 0)
		log_warn("queued submission: the end of the message was refused");
	/* the result() callback comes either way */
}

/* ---- handoff callbacks ----------------------------------------------------- */

/* queued's 354 after ours: the Received: header, then what the client
 * sent meanwhile, then the end if it came. */
static void
ready_early(struct session *s, const struct received_info *ri)
{
	struct txn *tx = s->tx;
	struct buf hdr;

	buf_init(&hdr, SMTPD_DATA_CHUNK);
	if (received_format(&hdr, ri) == 0 &&
	    handoff_write(s->ho, hdr.data, hdr.len) == 1)
		tx->waiting_drain = 1;
	buf_free(&hdr);
	if (tx->end_pending) {
		finish_message(s);	/* flushes tx->out first */
		return;
	}
	if (flush_out(s))
		tx->waiting_drain = 1;
	if (tx->reject != NULL)		/* the rest is read and dropped */
		tx->waiting_drain = 0;
	if (tx->waiting_drain)
		session_pause(s);	/* on_drain resumes */
	else
		session_resume(s);
}

static void
on_ready(void *arg, const char *qid)
{
	struct session *s = arg;
	struct txn *tx = s->tx;
	struct received_info ri = {
		.helo = session_helo(s), .client_name = s->name,
		.client_addr = session_addr_lit(s),
		.by = conf_str(C_myhostname), .proto = received_proto(s->esmtp,
		s->tls, s->auth_user != NULL, tx->smtputf8), .qid = qid,
		.rcpt = tx->nrcpt == 1 ? tx->rcpts[0].addr : NULL,
		.tls = session_tls_info(s), .when = time(NULL),
	};

	snprintf(tx->qid, sizeof(tx->qid), "%s", qid);
	tx->phase = P_DATA;
	if (tx->early) {
		ready_early(s, &ri);
		return;
	}
	if (received_format(&tx->out, &ri) == 0 &&
	    handoff_write(s->ho, tx->out.data, tx->out.len) == 1)
		tx->waiting_drain = 1;
	buf_reset(&tx->out);
	if (!tx->bdat) {
		session_reply(s, "354 End data with <CR><LF>.<CR><LF>");
		srv_data_start(s->srv, 0);	/* the size is checked here */
	} else
		srv_bdat_start(s->srv, tx->chunk_left, tx->chunk_last ?
		    SRV_BDAT_LAST : 0);
	if (!tx->waiting_drain)
		session_resume(s);
}

static void
on_drain(void *arg)
{
	struct session *s = arg;

	if (s->tx == NULL || !s->tx->waiting_drain)
		return;
	s->tx->waiting_drain = 0;
	if (s->tx->phase != P_START && s->tx->phase != P_END)
		session_resume(s);	/* else queued's answer resumes */
}

static void
log_queued(struct session *s, const struct handoff_result *r)
{
	struct txn *tx = s->tx;

	log_q(LOG_LVL_INFO, r->qid[0] ? r->qid : tx->qid[0] ? tx->qid : NULL,
	    "client=%s, from=<%s>, nrcpt=%d, size=%llu, proto=%s, helo=<%s>%s%s",
	    session_client(s), tx->sender, tx->nrcpt, tx->msg_size,
	    received_proto(s->esmtp, s->tls, s->auth_user != NULL, tx->smtputf8),
	    session_helo(s), s->auth_user ? ", sasl_username=" : "",
	    s->auth_user ? s->auth_user : "");
}

static void
on_result(void *arg, const struct handoff_result *r)
{
	struct session *s = arg;
	struct txn *tx = s->tx;
	enum tphase was = tx ? tx->phase : P_NONE;

	if (tx == NULL || was == P_NONE)
		return;
	tx->phase = P_NONE;
	if (r->code / 100 == 2 && was == P_END) {
		const char *qid = r->qid[0] ? r->qid : tx->qid;

		log_queued(s, r);
		/* a client that delivers is forgiven its errors (Postfix's
		 * smtpd_hard_error_limit: errors "without delivering mail"),
		 * or a list server's stale recipients end its session */
		srv_errors_forgive(s->srv);
		s->junk = 0;
		session_reply(s, "250 2.0.0 Ok: queued as %s", qid[0] ? qid : "(unknown)");
		end_transaction(s);
		return;
	}
	tx->failed = 1;
	snprintf(tx->fail_line, sizeof(tx->fail_line), "%d %s %.250s", r->code,
	    r->status, r->text);
	buf_reset(&tx->out);
	if (was == P_END || (was == P_START && !tx->bdat &&
	    (!tx->early || tx->end_pending))) {
		/* after the dot, or instead of the 354 */
		log_info("NOQUEUE: not queued: %s from %s: %s",
		    tx->bdat ? "BDAT" : "DATA", session_client(s), tx->fail_line);
		session_reply(s, "%s", tx->fail_line);
		end_transaction(s);
		return;
	}
	if (was == P_START && tx->early) {	/* the rest is read and dropped */
		session_resume(s);
		return;
	}
	if (was == P_START) {	/* BDAT: read and drop the chunk */
		srv_bdat_start(s->srv, tx->chunk_left, tx->chunk_last ?
		    SRV_BDAT_LAST : 0);
		session_resume(s);
	}
	/* P_DATA: the rest is read and dropped; the reply comes at the end */
	if (tx->waiting_drain) {
		tx->waiting_drain = 0;
		session_resume(s);
	}
}

const struct handoff_cb data_handoff_cb = {
	.ready = on_ready, .drain = on_drain, .result = on_result,
};
