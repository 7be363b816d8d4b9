/*
 * The hand-over of one SMTP transaction to queued: an LMTP client
 * (lib/smtp_client.h) on queued's submission socket $run_directory/submit,
 * XFORWARD with the client's identity, MAIL/RCPT with their ESMTP and DSN
 * parameters, then the message pushed as the SMTP client sends it.
 * One connection per smtpd session, opened at its first message (or taken
 * from a pool of idle connections that ended sessions left) and kept for
 * the next ones; idle sessions hold none.
 *
 * Flow, per transaction:
 *   handoff_start()     -> ready(qid) once queued answered DATA with 354
 *                          (qid: queued's id when its MAIL reply named
 *                          one, else "")
 *   handoff_write()...  -> drain() after a write returned 1
 *   handoff_end()       -> result(): 250 once queued has the message on
 *                          stable storage, with queued's queue id
 * result() also comes, instead of ready(), when queued is unreachable or
 * refuses (its own 4xx/5xx; a connection problem is 451 4.3.0), and when
 * the connection breaks during the data. Nothing is queued without
 * handoff_end(): handoff_abort() (client gone, message rejected) drops the
 * connection, and queued throws the partial file away.
 * No callback comes from inside a handoff_*() call.
 */
#ifndef HERMOD_SMTPD_HANDOFF_H
#define HERMOD_SMTPD_HANDOFF_H

#include <stddef.h>

#include <event2/event.h>

#include "smtp_client.h"

#define HANDOFF_QID_MAX	32

struct handoff_msg {
	const char *sender;
	struct cli_mail_params mail;
	int nrcpt;
	const char *const *rcpts;
	const struct cli_rcpt_params *rcpt_params;	/* nrcpt of them */
	struct cli_xforward xforward;
};

struct handoff_result {
	int code;		/* 250, 451, 552 ... */
	char status[16];	/* "2.0.0" */
	char text[256];		/* queued's text or ours */
	char qid[HANDOFF_QID_MAX + 1];
};

struct handoff_cb {
	void (*ready)(void *arg, const char *qid);
	void (*drain)(void *arg);
	void (*result)(void *arg, const struct handoff_result *r);
};

struct handoff;

/* A handle for one smtpd session; no connection yet. */
struct handoff *handoff_new(struct event_base *base,
    const struct handoff_cb *cb, void *arg);
/* Begin a transaction (connecting first when needed). Everything in msg
 * is copied. 1 when it runs on a connection that queued has served
 * before and no other transaction of this process waits for queued
 * (ready() is then all but certain, and soon), 0 otherwise or when it
 * failed at once (result() follows), -1 if one is already running
 * (caller bug). */
int handoff_start(struct handoff *h, const struct handoff_msg *msg);
/* Message bytes, CRLF lines, not dot-stuffed. 0 go on, 1 wait for
 * drain(), -1 the transaction failed (result() follows). */
int handoff_write(struct handoff *h, const void *p, size_t n);
int handoff_end(struct handoff *h);
/* Forget the running transaction; nothing of it gets queued. */
void handoff_abort(struct handoff *h);
/* Is a transaction running (started, result not yet given)? */
int handoff_busy(const struct handoff *h);
/* End of the session: QUIT when idle, else drop. */
void handoff_free(struct handoff *h);

#endif
