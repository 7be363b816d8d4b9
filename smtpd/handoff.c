/*
 * smtpd -> queued: each transaction goes over LMTP to queued's submission
 * socket with XFORWARD (see handoff.h for the flow). queued answers one
 * reply per recipient after the dot, all the same since the message is
 * one queue file; the SMTP client gets 250 only when every accepted
 * recipient got a 2xx, else the first failure. A recipient that smtpd
 * accepted but queued refused ends the transaction before any data
 * (451 4.3.0 unless queued's own reply says more): a partial acceptance
 * would lose mail the client believes delivered.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conf.h"
#include "handoff.h"
#include "log.h"
#include "xalloc.h"

enum hstate { H_IDLE, H_WAIT, H_DATA, H_DOT, H_DONE };

/* An idle connection older than this is not reused: queued ends idle
 * submission sessions after 300 s, and a transaction must not race
 * that close. */
#define REUSE_MAX_IDLE	60

struct handoff {
	struct event_base *base;
	const struct handoff_cb *cb;
	void *arg;
	struct cli_conn *c;
	enum hstate state;
	int failed;			/* a failure is recorded in res */
	struct handoff_result res;
	char mail_qid[HANDOFF_QID_MAX + 1];
	struct event *later;		/* result() from the loop */
	time_t idle_since;		/* the last transaction's end */
};

/* Transactions of this process that queued has not finished. */
static int in_flight;

static void
set_state(struct handoff *h, enum hstate st)
{
	in_flight += (st != H_IDLE) - (h->state != H_IDLE);
	h->state = st;
}

static void
set_result(struct handoff *h, int code, const char *status, const char *text)
{
	if (h->failed)
		return;		/* the first failure is the one to tell */
	h->res.code = code;
	snprintf(h->res.status, sizeof(h->res.status), "%s", status);
	snprintf(h->res.text, sizeof(h->res.text), "%s", text);
	if (code / 100 != 2)
		h->failed = 1;
}

/* A local failure (connection) is 451 4.3.0 whatever the client said:
 * the SMTP client retries later. */
static void
set_reply(struct handoff *h, const struct cli_reply *r)
{
	char text[256];
	const char *nl;

	if (r->local || r->code < 400 || r->code > 599) {
		log_warn("queued submission: %d %s %s", r->code, r->status,
		    r->text ? r->text : "");
		set_result(h, 451, "4.3.0", "Error: mail queue unavailable, try again later");
		return;
	}
	nl = r->text ? strchr(r->text, '\n') : NULL;
	snprintf(text, sizeof(text), "%.*s", nl ? (int)(nl - r->text) : 255,
	    r->text ? r->text : "");
	set_result(h, r->code, r->status[0] ? r->status :
	    (r->code / 100 == 4 ? "4.3.0" : "5.3.0"), text);
}

/* The first word of text if it looks like a queue id (upper-case hex or
 * letters and digits, 8..32 long); "queue id X" anywhere wins. */
static void
find_qid(const char *text, char *out)
{
	const char *p = text ? strstr(text, "queue id ") : NULL;
	size_t n;

	p = p ? p + 9 : text;
	out[0] = '\0';
	if (p == NULL)
		return;
	for (n = 0; isalnum((unsigned char)p[n]) && n <= HANDOFF_QID_MAX; n++)
		;
	if (n >= 8 && n <= HANDOFF_QID_MAX && (p[n] == '\0' || isspace((unsigned char)p[n]) || p[n] == ','))
		snprintf(out, HANDOFF_QID_MAX + 1, "%.*s", (int)n, p);
}

static void
fire_result(evutil_socket_t fd, short ev, void *arg)
{
	struct handoff *h = arg;
	struct handoff_result r = h->res;

	(void)fd;
	(void)ev;
	set_state(h, H_IDLE);
	h->failed = 0;
	h->idle_since = time(NULL);
	memset(&h->res, 0, sizeof(h->res));
	h->cb->result(h->arg, &r);
}

static void
finish(struct handoff *h)
{
	if (h->state == H_DONE || h->state == H_IDLE)
		return;
	set_state(h, H_DONE);
	if (!h->failed && h->res.code == 0)
		set_result(h, 451, "4.3.0", "Error: queue file write error");
	event_active(h->later, 0, 0);
}

/* ---- smtp_client callbacks ------------------------------------------------ */

static void
on_mail(struct cli_conn *c, const struct cli_reply *r, void *arg)
{
	struct handoff *h = arg;

	(void)c;
	if (r->code / 100 == 2)
		find_qid(r->text, h->mail_qid);
	else
		set_reply(h, r);
}

static void
on_rcpt(struct cli_conn *c, int idx, const struct cli_reply *r, void *arg)
{
	(void)c;
	(void)idx;
	if (r->code / 100 != 2)
		set_reply(arg, r);
}

static void
on_data_start(struct cli_conn *c, void *arg)
{
	struct handoff *h = arg;

	if (h->failed) {	/* a recipient was refused: nothing goes in */
		cli_free(c);
		h->c = NULL;
		finish(h);
		return;
	}
	set_state(h, H_DATA);
	h->cb->ready(h->arg, h->mail_qid);
}

static void
on_drain(struct cli_conn *c, void *arg)
{
	struct handoff *h = arg;

	(void)c;
	if (h->state == H_DATA && h->cb->drain != NULL)
		h->cb->drain(h->arg);
}

static void
on_final(struct cli_conn *c, int idx, const struct cli_reply *r, void *arg)
{
	struct handoff *h = arg;

	(void)c;
	(void)idx;
	if (r->code / 100 != 2) {
		set_reply(h, r);
		return;
	}
	if (h->res.code == 0) {
		set_result(h, r->code, r->status[0] ? r->status : "2.0.0", "Ok");
		find_qid(r->text, h->res.qid);
	}
}

static void
on_done(struct cli_conn *c, void *arg)
{
	(void)c;
	finish(arg);
}

static void
on_closed(struct cli_conn *c, const struct cli_reply *r, void *arg)
{
	struct handoff *h = arg;

	if (h->state != H_IDLE && h->state != H_DONE) {
		set_reply(h, r);
		finish(h);
	}
	cli_free(c);
	if (h->c == c)
		h->c = NULL;
}

static const struct cli_callbacks callbacks = {
	.mail = on_mail, .rcpt = on_rcpt, .data_start = on_data_start,
	.drain = on_drain, .final = on_final, .done = on_done,
	.closed = on_closed,
};

/* ---- the interface -------------------------------------------------------- */

struct handoff *
handoff_new(struct event_base *base, const struct handoff_cb *cb, void *arg)
{
	struct handoff *h = xcalloc(1, sizeof(*h));

	h->base = base;
	h->cb = cb;
	h->arg = arg;
	h->later = event_new(base, -1, 0, fire_result, h);
	if (h->later == NULL)
		fatal("event_new");
	return h;
}

/*
 * Idle connections kept from sessions that ended, for the next ones. Most
 * MTAs send one message per connection, and each message then cost smtpd
 * and queued a connect, a greeting and LHLO on the submission socket.
 * Bounded; the newest is taken first; an entry goes when queued closes it
 * or it idled past REUSE_MAX_IDLE.
 */
#define POOL_MAX 32
static struct parked {
	struct cli_conn *c;
	time_t since;
} pool[POOL_MAX];
static int npool;

static void
pool_remove(int i)
{
	memmove(&pool[i], &pool[i + 1], (size_t)(npool - i - 1) * sizeof(pool[0]));
	npool--;
}

static void
pool_closed(struct cli_conn *c, const struct cli_reply *r, void *arg)
{
	(void)r;
	(void)arg;
	for (int i = 0; i < npool; i++)
		if (pool[i].c == c) {
			pool_remove(i);
			break;
		}
	cli_free(c);
}

static const struct cli_callbacks pool_callbacks = { .closed = pool_closed };

static void
pool_put(struct cli_conn *c, time_t since)
{
	if (npool == POOL_MAX) {
		cli_free(pool[0].c);
		pool_remove(0);
	}
	cli_set_callbacks(c, &pool_callbacks, NULL);
	pool[npool++] = (struct parked){ c, since };
}

static struct cli_conn *
pool_take(struct handoff *h)
{
	time_t now = time(NULL);

	while (npool > 0) {
		struct parked p = pool[--npool];
		if (cli_idle(p.c) && now - p.since <= REUSE_MAX_IDLE) {
			cli_set_callbacks(p.c, &callbacks, h);
			return p.c;
		}
		cli_free(p.c);
	}
	return NULL;
}

static struct cli_conn *
connect_queued(struct handoff *h)
{
	struct cli_settings s;
	char *path = xasprintf("%s/submit", conf_str(C_run_directory));
	struct cli_conn *c;

	cli_settings_default(&s);
	s.lmtp = 1;
	s.connect_timeout = 10;
	s.data_xfer_timeout = (int)conf_num(C_smtpd_timeout) + 60;
	s.peer_name = "queued";
	c = cli_connect_unix(h->base, path, &s, &callbacks, h);
	free(path);
	return c;
}

int
handoff_start(struct handoff *h, const struct handoff_msg *m)
{
	int ok = 0, early = 0;

	if (h->state != H_IDLE)
		return -1;
	set_state(h, H_WAIT);
	h->failed = 0;
	h->mail_qid[0] = '\0';
	memset(&h->res, 0, sizeof(h->res));
	if (h->c != NULL && (!cli_idle(h->c) ||	/* busy or old: start afresh */
	    time(NULL) - h->idle_since > REUSE_MAX_IDLE)) {
		cli_free(h->c);
		h->c = NULL;
	}
	if (h->c == NULL)
		h->c = pool_take(h);
	/* early: queued took a transaction on this connection already, and
	 * has no other one of this process to answer: it is idle, the 354
	 * can go at once (see smtp_data.c) */
	if (h->c != NULL)
		early = in_flight == 1;
	else if ((h->c = connect_queued(h)) == NULL)
		ok = -1;
	if (ok == 0 && (cli_xforward(h->c, &m->xforward) != 0 ||
	    cli_mail(h->c, m->sender, &m->mail) != 0))
		ok = -1;
	for (int i = 0; ok == 0 && i < m->nrcpt; i++)
		if (cli_rcpt(h->c, m->rcpts[i], &m->rcpt_params[i]) < 0)
			ok = -1;
	if (ok == 0 && cli_data_push(h->c) != 0)
		ok = -1;
	if (ok != 0) {
		log_warn("queued submission: cannot start a transaction");
		if (h->c != NULL)
			cli_free(h->c);
		h->c = NULL;
		finish(h);
		return 0;
	}
	return early;
}

int
handoff_write(struct handoff *h, const void *p, size_t n)
{
	int r;

	if (h->state != H_DATA || h->c == NULL)
		return -1;
	r = cli_data_write(h->c, p, n);
	return r < 0 ? -1 : r;
}

int
handoff_end(struct handoff *h)
{
	if (h->state != H_DATA || h->c == NULL || cli_data_end(h->c) != 0)
		return -1;
	set_state(h, H_DOT);
	return 0;
}

void
handoff_abort(struct handoff *h)
{
	if (h->state == H_IDLE)
		return;
	if (h->c != NULL)
		cli_free(h->c);
	h->c = NULL;
	event_del(h->later);
	set_state(h, H_IDLE);
	h->failed = 0;
}

int
handoff_busy(const struct handoff *h)
{
	return h->state != H_IDLE;
}

void
handoff_free(struct handoff *h)
{
	if (h == NULL)
		return;
	/* An idle connection goes to the pool. No QUIT for the others: its
	 * reply would come after h is gone; queued takes the end of the
	 * connection as the abandonment of an unfinished message. */
	if (h->c != NULL && h->state == H_IDLE && cli_idle(h->c) &&
	    time(NULL) - h->idle_since <= REUSE_MAX_IDLE)
		pool_put(h->c, h->idle_since);
	else if (h->c != NULL)
		cli_free(h->c);
	set_state(h, H_IDLE);
	event_free(h->later);
	free(h);
}
