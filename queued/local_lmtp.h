/*
 * Between local.c (jobs, the connection pool) and local_lmtp.c (the LMTP
 * client state machine on one connection to lmtpd).
 */
#ifndef HERMOD_LOCAL_LMTP_H
#define HERMOD_LOCAL_LMTP_H

#include <event2/event.h>

#include "queued.h"

#include <bsd/sys/queue.h>

#include "buf.h"

struct ljob;
struct lconn;
struct ev_connect;
struct bufferevent;

enum lstage {
	L_CONNECT, L_GREET, L_LHLO, L_READY, L_MAIL, L_RCPT, L_DATA, L_BODY,
	L_DOT, L_RSET, L_IDLE,
};

typedef void (*lconn_cb)(struct lconn *c, int err, void *arg);

/* One connection to lmtpd. */
struct lconn {
	struct bufferevent *bev;
	struct ev_connect *connecting;
	enum lstage stage;
	int broken;		/* never reuse */
	lconn_cb cb;		/* connect + LHLO done */
	void *cb_arg;
	struct ljob *job;	/* busy: the job using it */
	/* reply being read */
	struct buf text;
	int lines;
	/* transaction */
	int mail_code;		/* reply to MAIL, 0 if not seen */
	char mail_reply[256];
	int rcpt_i, accepted, dot_i;
	off_t send_off;
	int bol;
	TAILQ_ENTRY(lconn) link;
};

/* One message's local leaves on one connection. */
struct ljob {
	struct transport *t;
	struct msg *m;
	int *idx;		/* leaf indexes */
	char *st;		/* per idx: 0 open, 1 accepted by RCPT, 2 reported */
	int n;
	int first, count;	/* the current transaction's batch */
	int reported;		/* leaves before this index are all reported */
	char relay[32];
	struct lconn *c;
};

/* local_lmtp.c */
void lconn_open(struct event_base *base, const char *path, int timeout,
    lconn_cb cb, void *arg);
void lconn_take(struct lconn *c);		/* idle -> busy */
void lconn_idle(struct lconn *c, int secs);	/* busy -> idle */
int lconn_reusable(const struct lconn *c);
void lconn_free(struct lconn *c);
void lmtp_transaction(struct ljob *j);		/* the batch first..first+count */

/* local.c */
void ljob_conn_failed(struct ljob *j, const char *why);
void ljob_tx_done(struct ljob *j);
void lconn_release(struct lconn *c);
void lconn_idle_gone(struct lconn *c);
void ljob_report(struct ljob *j, int k, int code, const char *dsn, const char *text);

#endif
