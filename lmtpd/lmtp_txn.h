/*
 * One LMTP transaction's delivery side (lmtp_txn.c), apart from the
 * protocol engine: recipients checked at RCPT, the spooled message, the
 * per-recipient deliveries and their results collected in RCPT order,
 * the replies (one table) and the Postfix-shaped log lines.
 * The session owns the txn; lmtp_txn_free() cancels what still runs.
 */
#ifndef HERMOD_LMTPD_TXN_H
#define HERMOD_LMTPD_TXN_H

#include <time.h>

#include "lmtpd.h"
#include "spool.h"

struct lmtp_rcpt {
	char *addr;		/* as given, without <> */
	enum dlv_status st;
	int done;
	char detail[DLV_DETAIL_MAX];
};

struct lmtp_txn {
	char qid[DLV_QID_MAX];
	char *sender;		/* "" for <> */
	struct lmtp_rcpt *rcpts;
	unsigned nrcpts, cap;
	struct spool *spool;	/* NULL until DATA */
	unsigned pending;	/* deliveries not yet reported */
	struct timespec start;	/* MAIL FROM, for delay= */
	void (*done)(void *arg);	/* all results in */
	void *arg;
};

/* A reply: code, enhanced status code and text. */
struct lmtp_reply {
	int code;
	const char *esc;
	const char *text;
};
const struct lmtp_reply *dlv_reply(enum dlv_status st);

/* The private spool directory (caller frees). */
char *lmtp_tmpdir(void);

/* qid: from XFORWARD IDENT, else NULL for a local one. */
struct lmtp_txn *lmtp_txn_new(const char *sender, const char *qid);
void lmtp_txn_free(struct lmtp_txn *t);

/* RCPT: look the address up. DLV_OK (added), DLV_NOUSER, DLV_TEMPLOOKUP. */
enum dlv_status lmtp_txn_rcpt(struct lmtp_txn *t, const char *addr);

/* Start spooling. -1 (errno) when the temp file cannot be made. */
int lmtp_txn_data_begin(struct lmtp_txn *t);

/* The message is complete: deliver to every recipient. 0: done(arg)
 * will be called from the event loop when all have reported; 1: every
 * result is already in (`toobig` settles all with 552 5.3.4, a spool
 * failure with 4.3.x) and done is not called. */
int lmtp_txn_deliver(struct lmtp_txn *t, int toobig, void (*done)(void *), void *arg);

/* Log the outcome of recipient i (after done). */
void lmtp_txn_log(const struct lmtp_txn *t, unsigned i);

#endif
