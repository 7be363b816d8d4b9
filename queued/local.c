/*
 * The local transport: an LMTP client to lmtpd at $run_directory/lmtp.
 * One job is one message's local leaves, sent in transactions of at most
 * lmtp_destination_recipient_limit recipients: MAIL, the RCPTs and DATA
 * pipelined in one write (RFC 2033 requires PIPELINING), the message
 * dot-stuffed straight from the queue file, then one reply per accepted
 * recipient mapped to its state (2xx delivered, 4xx later, 5xx bounce).
 * Connections are kept for the next job (at most the transport's limit,
 * closed after LMTP_IDLE seconds unused). lmtpd down, a timeout or a lost
 * connection defers every recipient still open: never a bounce.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "conf.h"
#include "event.h"
#include "log.h"
#include "queued.h"
#include "xalloc.h"
#include "local_lmtp.h"

#define LMTP_IDLE	10	/* seconds a spare connection is kept */
#define LMTP_TIMEOUT	300	/* per reply, and for the final dot's replies */
#define LMTP_CONNECT	30
#define SEND_CHUNK	(256 * 1024)

static struct event_base *lbase;
static TAILQ_HEAD(, lconn) idle = TAILQ_HEAD_INITIALIZER(idle);
static int nidle, stopping;

struct transport local_transport = {
	.name = "local", .kind = LEAF_LOCAL, .limit = 20, .start = NULL,
};

static char *
socket_path(void)
{
	return xasprintf("%s/lmtp", conf_str(C_run_directory));
}

/* ---- jobs ------------------------------------------------------------------ */

static void job_next(struct ljob *j);

/* Every leaf of the job not yet reported gets this result. */
static void
job_fail_rest(struct ljob *j, int code, const char *dsn, const char *text)
{
	for (int k = j->reported; k < j->n; k++)
		if (j->st[k] != 2)
			ljob_report(j, k, code, dsn, text);
	j->reported = j->n;
}

void
ljob_report(struct ljob *j, int k, int code, const char *dsn, const char *text)
{
	j->st[k] = 2;
	sched_leaf_result(j->m, j->idx[k], code, dsn, j->relay, text);
}

static void
job_end(struct ljob *j)
{
	struct transport *t = j->t;
	struct msg *m = j->m;

	free(j->idx);
	free(j->st);
	free(j);
	sched_attempt_done(t, m);
}

/* The connection broke or timed out: defer what is left, drop it. */
void
ljob_conn_failed(struct ljob *j, const char *why)
{
	char text[300];

	snprintf(text, sizeof(text), "lost connection with lmtpd: %s", why);
	job_fail_rest(j, 451, "4.4.2", text);
	lconn_free(j->c);
	j->c = NULL;
	job_end(j);
}

/* A transaction is over: the next batch, or the connection back to the pool. */
void
ljob_tx_done(struct ljob *j)
{
	j->reported = j->first + j->count;
	if (j->reported < j->n) {
		job_next(j);
		return;
	}
	lconn_release(j->c);
	j->c = NULL;
	job_end(j);
}

static void
job_next(struct ljob *j)
{
	int limit = (int)conf_num(C_lmtp_destination_recipient_limit);

	j->first = j->reported;
	j->count = j->n - j->first < limit ? j->n - j->first : limit;
	lmtp_transaction(j);
}

static void
connected(struct lconn *c, int err, void *arg)
{
	struct ljob *j = arg;
	char text[300];

	if (err != 0) {
		char *path = socket_path();

		snprintf(text, sizeof(text), "connect to lmtpd at %s: %s", path, strerror(err));
		free(path);
		log_qinfo(j->m->id, "%s", text);
		job_fail_rest(j, 451, "4.4.1", text);
		job_end(j);
		return;
	}
	j->c = c;
	job_next(j);
}

static void
local_start(struct transport *t, struct msg *m, const int *idx, int n)
{
	struct ljob *j = xcalloc(1, sizeof(*j));
	struct lconn *c;

	j->t = t;
	j->m = m;
	j->n = n;
	j->idx = xmalloc((size_t)n * sizeof(*j->idx));
	memcpy(j->idx, idx, (size_t)n * sizeof(*idx));
	j->st = xcalloc((size_t)n, 1);
	snprintf(j->relay, sizeof(j->relay), "lmtpd");
	if ((c = TAILQ_FIRST(&idle)) != NULL) {
		TAILQ_REMOVE(&idle, c, link);
		nidle--;
		lconn_take(c);
		j->c = c;
		job_next(j);
		return;
	}
	char *path = socket_path();
	lconn_open(lbase, path, LMTP_CONNECT, connected, j);
	free(path);
}

/* ---- the pool ------------------------------------------------------------------ */

void
lconn_release(struct lconn *c)
{
	if (stopping || nidle >= local_transport.limit || !lconn_reusable(c)) {
		lconn_free(c);
		return;
	}
	TAILQ_INSERT_TAIL(&idle, c, link);
	nidle++;
	lconn_idle(c, LMTP_IDLE);
}

/* An idle connection closed or timed out. */
void
lconn_idle_gone(struct lconn *c)
{
	TAILQ_REMOVE(&idle, c, link);
	nidle--;
	lconn_free(c);
}

void
local_init(struct event_base *base)
{
	lbase = base;
	local_transport.start = local_start;
	local_transport.limit = (int)conf_num(C_lmtp_destination_concurrency_limit);
}

void
local_shutdown(void)
{
	struct lconn *c;

	stopping = 1;
	while ((c = TAILQ_FIRST(&idle)) != NULL)
		lconn_idle_gone(c);
}
