/*
 * The local transport: LMTP to lmtpd at $run_directory/lmtp, on the shared
 * SMTP/LMTP client (lib/smtp_client.h). One job is one message's local
 * leaves, sent in transactions of at most lmtp_destination_recipient_limit
 * recipients (MAIL, the RCPTs and DATA pipelined, the message straight
 * from the queue file); each recipient's reply becomes its state (2xx
 * delivered, 4xx later, 5xx bounce). Connections are kept for the next job
 * (at most the transport's limit, closed after LMTP_IDLE seconds unused).
 * lmtpd down, a timeout or a lost connection: the client stands in a 4xx
 * for every open recipient, so they are retried, never bounced.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "conf.h"
#include "log.h"
#include "queued.h"
#include "smtp_client.h"
#include "xalloc.h"

#define LMTP_IDLE	10	/* seconds a spare connection is kept */

struct ljob;

struct lconn {
	struct cli_conn *cli;
	struct ljob *job;	/* busy: the job using it; idle: NULL */
	struct event *idle_ev;
	int pooled;
	TAILQ_ENTRY(lconn) link;
};

struct ljob {
	struct transport *t;
	struct msg *m;
	int *idx;		/* leaf indexes */
	char *st;		/* per idx: 0 open, 1 accepted at RCPT, 2 reported */
	int n, first, count;	/* the current transaction: first..first+count */
	struct lconn *c;
};

static struct event_base *lbase;
static TAILQ_HEAD(, lconn) idle = TAILQ_HEAD_INITIALIZER(idle);
static int nidle, stopping;
static struct cli_settings settings;

struct transport local_transport = {
	.name = "local", .kind = LEAF_LOCAL, .limit = 20, .start = NULL,
};

/* ---- results ------------------------------------------------------------------ */

/* "550 5.1.1 text" for the log line and the DSN's Diagnostic-Code. */
static void
report(struct ljob *j, int k, const struct cli_reply *r)
{
	char text[REASON_MAX];

	if (j->st[k] == 2)
		return;
	j->st[k] = 2;
	snprintf(text, sizeof(text), "%d %s%s%s", r->code, r->status,
	    r->status[0] ? " " : "", r->text != NULL ? r->text : "");
	for (char *p = text; *p != '\0'; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	sched_leaf_result(j->m, j->idx[k], r->code, r->status, "lmtpd", text);
}

static void
fail_rest(struct ljob *j, const struct cli_reply *r)
{
	for (int k = 0; k < j->n; k++)
		report(j, k, r);
}

static void
job_end(struct ljob *j)
{
	struct transport *t = j->t;
	struct msg *m = j->m;

	if (j->c != NULL)
		j->c->job = NULL;
	free(j->idx);
	free(j->st);
	free(j);
	sched_attempt_done(t, m);
}

/* ---- the pool ------------------------------------------------------------------ */

static void
conn_free(struct lconn *c)
{
	if (c->pooled) {
		TAILQ_REMOVE(&idle, c, link);
		nidle--;
	}
	if (c->idle_ev != NULL)
		event_free(c->idle_ev);
	if (c->cli != NULL)
		cli_free(c->cli);
	free(c);
}

static void
idle_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct lconn *c = arg;

	(void)fd, (void)what;
	TAILQ_REMOVE(&idle, c, link);
	nidle--;
	c->pooled = 0;
	cli_quit(c->cli);	/* closed() frees it */
}

static void
conn_release(struct lconn *c)
{
	struct timeval tv = { LMTP_IDLE, 0 };

	c->job = NULL;
	if (stopping || nidle >= local_transport.limit || !cli_idle(c->cli)) {
		cli_quit(c->cli);
		return;
	}
	if (c->idle_ev == NULL)
		c->idle_ev = evtimer_new(lbase, idle_timeout, c);
	TAILQ_INSERT_TAIL(&idle, c, link);
	nidle++;
	c->pooled = 1;
	evtimer_add(c->idle_ev, &tv);
}

/* ---- transactions ------------------------------------------------------------- */

static void
send_batch(struct ljob *j)
{
	struct msg *m = j->m;
	struct cli_mail_params mp = { .body_8bitmime = m->body8, .smtputf8 = m->smtputf8 };
	int limit = (int)conf_num(C_lmtp_destination_recipient_limit);

	j->first += j->count;
	j->count = j->n - j->first < limit ? j->n - j->first : limit;
	/* lmtpd logs under our queue id, so grep QID follows the message */
	cli_xforward(j->c->cli, &(struct cli_xforward){ .ident = m->id });
	cli_mail(j->c->cli, m->sender, &mp);
	for (int i = 0; i < j->count; i++)
		cli_rcpt(j->c->cli, m->leaves[j->idx[j->first + i]].addr, NULL);
	cli_data_fd(j->c->cli, m->fd, m->data_off, m->size);
}

static void
on_ready(struct cli_conn *cli, const struct cli_caps *caps, void *arg)
{
	struct lconn *c = arg;

	(void)cli, (void)caps;
	if (c->job != NULL)
		send_batch(c->job);
}

static void
on_rcpt(struct cli_conn *cli, int idx, const struct cli_reply *r, void *arg)
{
	struct lconn *c = arg;
	struct ljob *j = c->job;

	(void)cli;
	if (j == NULL || idx < 0 || idx >= j->count)
		return;
	if (r->code / 100 == 2)
		j->st[j->first + idx] = 1;
	else
		report(j, j->first + idx, r);
}

static void
on_final(struct cli_conn *cli, int idx, const struct cli_reply *r, void *arg)
{
	struct lconn *c = arg;

	(void)cli;
	if (c->job != NULL && idx >= 0 && idx < c->job->count)
		report(c->job, c->job->first + idx, r);
}

static void
on_done(struct cli_conn *cli, void *arg)
{
	struct lconn *c = arg;
	struct ljob *j = c->job;
	struct cli_reply lost = { .code = 421, .status = "4.4.2",
	    .text = "lost connection with lmtpd", .local = 1 };

	if (j == NULL)
		return;
	if (j->first + j->count < j->n && cli_idle(cli)) {
		send_batch(j);
		return;
	}
	fail_rest(j, &lost);	/* only if the connection went away */
	job_end(j);
	if (cli_idle(cli))
		conn_release(c);
}

static void
on_closed(struct cli_conn *cli, const struct cli_reply *r, void *arg)
{
	struct lconn *c = arg;
	struct ljob *j = c->job;

	(void)cli;
	if (j != NULL) {	/* never connected, or lost between transactions */
		if (r->local && r->code / 100 == 4 && j->first == 0 && j->count == 0)
			log_qinfo(j->m->id, "lmtpd at %s/lmtp: %s", conf_str(C_run_directory),
			    r->text);
		fail_rest(j, r->code / 100 == 5 ? &(struct cli_reply){ .code = 451,
		    .status = "4.3.0", .text = r->text } : r);
		job_end(j);
	}
	conn_free(c);
}

static const struct cli_callbacks callbacks = {
	.ready = on_ready, .rcpt = on_rcpt, .final = on_final, .done = on_done,
	.closed = on_closed,
};

static void
local_start(struct transport *t, struct msg *m, const int *idx, int n)
{
	struct ljob *j = xcalloc(1, sizeof(*j));
	struct lconn *c;
	char *path;

	j->t = t;
	j->m = m;
	j->n = n;
	j->idx = xmalloc((size_t)n * sizeof(*j->idx));
	memcpy(j->idx, idx, (size_t)n * sizeof(*idx));
	j->st = xcalloc((size_t)n, 1);
	if ((c = TAILQ_FIRST(&idle)) != NULL) {
		TAILQ_REMOVE(&idle, c, link);
		nidle--;
		c->pooled = 0;
		evtimer_del(c->idle_ev);
		c->job = j;
		j->c = c;
		send_batch(j);
		return;
	}
	c = xcalloc(1, sizeof(*c));
	c->job = j;
	j->c = c;
	path = xasprintf("%s/lmtp", conf_str(C_run_directory));
	c->cli = cli_connect_unix(lbase, path, &settings, &callbacks, c);
	free(path);
	if (c->cli == NULL) {	/* a run_directory too long for a socket path */
		struct cli_reply r = { .code = 451, .status = "4.3.5",
		    .text = "lmtpd socket path too long", .local = 1 };

		fail_rest(j, &r);
		j->c = NULL;
		job_end(j);
		free(c);
	}
}

void
local_init(struct event_base *base)
{
	lbase = base;
	cli_settings_default(&settings);
	settings.lmtp = 1;
	settings.peer_name = "lmtpd";
	local_transport.start = local_start;
	local_transport.limit = (int)conf_num(C_lmtp_destination_concurrency_limit);
}

void
local_shutdown(void)
{
	struct lconn *c;

	stopping = 1;
	while ((c = TAILQ_FIRST(&idle)) != NULL) {
		TAILQ_REMOVE(&idle, c, link);
		nidle--;
		c->pooled = 0;
		cli_quit(c->cli);
	}
}
