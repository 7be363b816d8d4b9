/*
 * The remote transport: SMTP to other domains' exchangers (or to the
 * relayhost) on the shared client (lib/smtp_client.h), routed by
 * remote_route.c. One start() from the scheduler is split into jobs, one
 * per destination (domain, address literal, or the relayhost); each
 * destination has a FIFO of jobs and runs at most
 * default_destination_concurrency_limit sessions, and all destinations
 * together at most default_process_limit, so one slow or dead destination
 * holds only its own share while the others go on (destinations waiting
 * for a free session are served in turn). A session routes, then tries
 * the addresses in order: a refused or timed-out connection, or a
 * greeting or EHLO that fails, moves on to the next one. Recipients go in
 * transactions of at most smtp_destination_recipient_limit, and each one's
 * reply becomes its state: 2xx sent, 4xx deferred, 5xx bounced with the
 * server's reply in the DSN. A session whose job is done takes the next
 * job of its destination, or waits smtp_connection_cache_time_limit for
 * one (connection reuse). Only the reply after the final dot counts as
 * delivered: a lost connection before it defers (RFC 5321 §6.1).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/event.h>

#include "conf.h"
#include "log.h"
#include "queued.h"
#include "remote_int.h"
#include "smtp_client.h"
#include "xalloc.h"

#define DEST_DEAD_FAILS	3	/* failed sessions in a row: a dead destination */

struct dest;

/* One start() call: done when its last job is. */
struct rmsg {
	struct transport *t;
	struct msg *m;
	int jobs;
};

/* One message's recipients for one destination. */
struct rjob {
	struct rmsg *rm;
	struct dest *d;
	int *idx;		/* leaf indexes */
	char *st;		/* per idx: 0 open, 1 accepted at RCPT, 2 reported */
	int n, first, count;	/* the current transaction: first..first+count */
	int *cmap, ncmap;	/* the client's recipient index -> idx slot */
	int dsn_offered;	/* the server takes NOTIFY: success DSNs are its job */
	TAILQ_ENTRY(rjob) link;
};

struct rsess {
	struct dest *d;
	struct rjob *job;
	struct cli_conn *cli;
	struct route_query *rq;
	struct route *route;
	int hop, ready;
	char relay[DNS_NAME_MAX + 80];		/* host[addr]:port */
	int fcode;				/* the last connection failure */
	char fdsn[16], ftext[REASON_MAX];
	struct event *idle_ev;
	int pooled;				/* in its dest's idle list and `idle` */
	int tls_level, plain;			/* plain: "may" fell back */
	int loop_now, loops;			/* hops that greeted with our name */
	char *user, *pass;			/* SASL, or NULL */
	TAILQ_ENTRY(rsess) link;		/* the destination's idle list */
	TAILQ_ENTRY(rsess) glink;		/* every idle session, oldest first */
};

struct dest {
	char *name;
	TAILQ_HEAD(, rjob) wait;
	TAILQ_HEAD(, rsess) idle;
	int nwait, nsess, starved;
	int fails;			/* sessions in a row that reached no server */
	RB_ENTRY(dest) node;
	TAILQ_ENTRY(dest) slink;	/* in `starved`: waits for a session slot */
};

static int dest_cmp(struct dest *a, struct dest *b) { return strcmp(a->name, b->name); }
RB_HEAD(dest_tree, dest);
RB_GENERATE(dest_tree, dest, node, dest_cmp)
static struct dest_tree dests = RB_INITIALIZER(&dests);
static TAILQ_HEAD(, dest) starved = TAILQ_HEAD_INITIALIZER(starved);
static TAILQ_HEAD(, rsess) idle = TAILQ_HEAD_INITIALIZER(idle);
static int nsess, stopping;

static void dest_kick(struct dest *d);
static void sess_next_job(struct rsess *s);
static void send_job(struct rsess *s);
static const struct cli_callbacks callbacks;

struct transport remote_transport = {
	.name = "remote", .kind = LEAF_REMOTE, .limit = 500, .start = NULL,
};

/* ---- results ------------------------------------------------------------------ */

/*
 * A peer's text made fit for one log line and the DSN (whose report
 * fields are US-ASCII, RFC 3464 §2.1.1): line breaks and tabs become
 * spaces, other control and 8-bit bytes '?' (Postfix's printable()).
 */
static void
printable(char *s)
{
	for (unsigned char *p = (unsigned char *)s; *p != '\0'; p++)
		if (*p == '\n' || *p == '\r' || *p == '\t')
			*p = ' ';
		else if (*p < 32 || *p > 126)
			*p = '?';
}

static void
report(struct rjob *j, int k, int code, const char *dsn, const char *relay,
    const char *text)
{
	char def[16], clean[REASON_MAX];

	if (j->st[k] == 2)
		return;
	j->st[k] = 2;
	if (dsn == NULL || dsn[0] == '\0') {
		snprintf(def, sizeof(def), "%d.0.0", code / 100 % 10);
		dsn = def;
	}
	snprintf(clean, sizeof(clean), "%s", text != NULL ? text : "");
	printable(clean);
	sched_leaf_result(j->rm->m, j->idx[k], code, dsn, relay, clean);
	/* RFC 3461 §4.2: NOTIFY went on to a DSN server, which reports the
	 * success itself; without DSN, bounce.c sends our "relayed" notice */
	if (code / 100 == 2 && j->dsn_offered)
		j->rm->m->leaves[j->idx[k]].notified = 1;
}

/* A reply as "550 5.1.1 text" on one line (log and Diagnostic-Code). */
static void
report_reply(struct rjob *j, int k, const struct cli_reply *r, const char *relay)
{
	char text[REASON_MAX];

	snprintf(text, sizeof(text), "%d %s%s%s", r->code, r->status,
	    r->status[0] ? " " : "", r->text != NULL ? r->text : "");
	report(j, k, r->code, r->status, relay, text);
}

static void
fail_rest(struct rjob *j, int code, const char *dsn, const char *relay,
    const char *text)
{
	for (int k = 0; k < j->n; k++)
		report(j, k, code, dsn, relay, text);
}

static void
rmsg_done(struct rmsg *rm)
{
	if (--rm->jobs > 0)
		return;
	sched_attempt_done(rm->t, rm->m);
	free(rm);
}

static void
dest_gc(struct dest *d)
{
	if (d->nwait > 0 || d->nsess > 0 || d->starved)
		return;
	RB_REMOVE(dest_tree, &dests, d);
	free(d->name);
	free(d);
}

static void
job_end(struct rjob *j)
{
	struct rmsg *rm = j->rm;

	free(j->idx);
	free(j->st);
	free(j->cmap);
	free(j);
	rmsg_done(rm);
}

/* j leaves d's wait list: room for a message the destination put off. */
static void
wait_take(struct dest *d, struct rjob *j)
{
	TAILQ_REMOVE(&d->wait, j, link);
	d->nwait--;
	sched_unpark_one();
}

/* Every job waiting for d gets the same answer (a routing failure, or a
 * destination that no address of answered). */
static void
dest_fail_waiting(struct dest *d, int code, const char *dsn, const char *text)
{
	struct rjob *j;

	while ((j = TAILQ_FIRST(&d->wait)) != NULL) {
		wait_take(d, j);
		fail_rest(j, code, dsn, NULL, text);
		job_end(j);
	}
}

/* ---- sessions ----------------------------------------------------------------- */

static void
settings_fill(struct cli_settings *s, const char *peer)
{
	cli_settings_default(s);
	s->connect_timeout = (int)conf_num(C_smtp_connect_timeout);
	s->greeting_timeout = s->helo_timeout = (int)conf_num(C_smtp_helo_timeout);
	s->mail_timeout = (int)conf_num(C_smtp_mail_timeout);
	s->rcpt_timeout = (int)conf_num(C_smtp_rcpt_timeout);
	s->data_timeout = (int)conf_num(C_smtp_data_init_timeout);
	s->data_xfer_timeout = (int)conf_num(C_smtp_data_xfer_timeout);
	s->dot_timeout = (int)conf_num(C_smtp_data_done_timeout);
	s->quit_timeout = (int)conf_num(C_smtp_quit_timeout);
	s->peer_name = peer;
}

static void
pool_del(struct rsess *s)
{
	if (!s->pooled)
		return;
	TAILQ_REMOVE(&s->d->idle, s, link);
	TAILQ_REMOVE(&idle, s, glink);
	s->pooled = 0;
	evtimer_del(s->idle_ev);
}

static void
sess_free(struct rsess *s)
{
	struct dest *d = s->d;
	struct dest *w;

	pool_del(s);
	if (s->idle_ev != NULL)
		event_free(s->idle_ev);
	if (s->cli != NULL)
		cli_free(s->cli);
	route_cancel(s->rq);
	free(s->route);
	free(s->user);
	free(s->pass);
	free(s);
	d->nsess--;
	nsess--;
	dest_kick(d);
	dest_gc(d);
	/* a slot is free: the destination that waited longest for one */
	if ((w = TAILQ_FIRST(&starved)) != NULL) {
		TAILQ_REMOVE(&starved, w, slink);
		w->starved = 0;
		dest_kick(w);
		dest_gc(w);
	}
}

static void
try_hop(struct rsess *s)
{
	struct cli_settings cs;
	const struct rhop *h;

	if (s->hop >= s->route->n) {	/* every address failed: defer */
		struct rjob *j = s->job;

		s->job = NULL;
		if (s->loops == s->route->n)	/* each one is us: bounce */
			fail_rest(j, 554, "5.4.6", NULL, s->ftext);
		else
			fail_rest(j, s->fcode / 100 == 4 ? s->fcode : 451,
			    s->fcode / 100 == 4 ? s->fdsn : "4.4.1", NULL,
			    s->ftext);
		job_end(j);
		/* the destination looks dead: no other session, or several
		 * failed in a row; its waiting mail is deferred, not tried
		 * session after session */
		if (++s->d->fails >= DEST_DEAD_FAILS || s->d->nsess == 1)
			dest_fail_waiting(s->d, 451, "4.4.1", s->ftext);
		sess_free(s);
		return;
	}
	h = &s->route->v[s->hop];
	rhop_name(h, s->relay, sizeof(s->relay));
	settings_fill(&cs, s->relay);
	cs.tls = s->plain || s->tls_level == TLS_NONE ? CLI_TLS_NONE :
	    s->tls_level == TLS_MAY ? CLI_TLS_MAY : CLI_TLS_MUST;
	cs.auth_user = s->user;
	cs.auth_pass = s->pass;
	s->ready = 0;
	s->cli = cli_connect_sa(queued_base, (const struct sockaddr *)&h->ss,
	    h->ss.ss_family == AF_INET ? sizeof(struct sockaddr_in) :
	    sizeof(struct sockaddr_in6), &cs, &callbacks, s);
}

static void
route_done(const struct route *r, void *arg)
{
	struct rsess *s = arg;
	struct rjob *j = s->job;

	s->rq = NULL;
	if (r->n == 0) {	/* the to= lines say why */
		s->job = NULL;
		fail_rest(j, r->code, r->dsn, NULL, r->text);
		job_end(j);
		dest_fail_waiting(s->d, r->code, r->dsn, r->text);
		sess_free(s);
		return;
	}
	s->route = xmalloc(sizeof(*s->route));
	*s->route = *r;
	s->hop = 0;
	snprintf(s->ftext, sizeof(s->ftext), "no address answered");
	try_hop(s);
}

static void
sess_new(struct dest *d, struct rjob *j)
{
	struct rsess *s = xcalloc(1, sizeof(*s));
	char user[256], pass[256];

	s->d = d;
	s->job = j;
	s->tls_level = remote_tls_level(d->name);
	if (remote_sasl_lookup(d->name, user, sizeof(user), pass, sizeof(pass))) {
		s->user = xstrdup(user);
		s->pass = xstrdup(pass);
		if (s->tls_level < TLS_ENCRYPT)	/* no password in the clear */
			s->tls_level = TLS_ENCRYPT;
	}
	d->nsess++;
	nsess++;
	s->rq = route_resolve(d->name, conf_str(C_relayhost)[0] != '\0', route_done, s);
}

static void
idle_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct rsess *s = arg;

	(void)fd, (void)what;
	pool_del(s);
	cli_quit(s->cli);	/* closed() frees it */
}

/* The job is over and the connection is usable: the next job of this
 * destination, a short wait for one, or QUIT. */
static void
sess_next_job(struct rsess *s)
{
	struct dest *d = s->d;
	struct timeval tv = { conf_num(C_smtp_connection_cache_time_limit), 0 };

	if ((s->job = TAILQ_FIRST(&d->wait)) != NULL) {
		wait_take(d, s->job);
		send_job(s);
		return;
	}
	if (stopping || tv.tv_sec == 0 || TAILQ_FIRST(&starved) != NULL) {
		cli_quit(s->cli);
		return;
	}
	if (s->idle_ev == NULL)
		s->idle_ev = evtimer_new(queued_base, idle_timeout, s);
	TAILQ_INSERT_TAIL(&d->idle, s, link);
	TAILQ_INSERT_TAIL(&idle, s, glink);
	s->pooled = 1;
	evtimer_add(s->idle_ev, &tv);
}

/* ---- transactions ------------------------------------------------------------- */

static void
notify_str(unsigned bits, char *out, size_t outsz)
{
	static const struct { unsigned bit; const char *name; } tab[] = {
		{ NOTIFY_SUCCESS, "SUCCESS" }, { NOTIFY_FAILURE, "FAILURE" },
		{ NOTIFY_DELAY, "DELAY" },
	};

	out[0] = '\0';
	if (bits & NOTIFY_NEVER) {
		snprintf(out, outsz, "NEVER");
		return;
	}
	for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
		if (bits & tab[i].bit)
			snprintf(out + strlen(out), outsz - strlen(out), "%s%s",
			    out[0] ? "," : "", tab[i].name);
}

/* Our client refused the MAIL line (a sender or ENVID that cannot go on
 * a command line, let in by the submission): no transaction opened and
 * no done() will come, so the job ends here, failed for good. */
static void
mail_refused(struct rsess *s)
{
	struct rjob *j = s->job;

	fail_rest(j, 550, "5.5.4", NULL, "sender or its MAIL parameters not "
	    "usable in an SMTP command");
	s->job = NULL;
	job_end(j);
	sess_next_job(s);
}

static void
send_batch(struct rsess *s)
{
	struct rjob *j = s->job;
	struct msg *m = j->rm->m;
	struct cli_mail_params mp = { .size = (unsigned long long)m->size,
	    .body_8bitmime = m->body8, .smtputf8 = m->smtputf8,
	    .ret = m->ret_hdrs ? "HDRS" : NULL, .envid = m->envid };
	int limit = (int)conf_num(C_smtp_destination_recipient_limit);

	j->first += j->count;
	j->count = j->n - j->first < limit ? j->n - j->first : limit;
	j->ncmap = 0;
	if (cli_mail(s->cli, m->sender, &mp) != 0) {
		mail_refused(s);
		return;
	}
	for (int i = 0; i < j->count; i++) {
		const struct leaf *l = &m->leaves[j->idx[j->first + i]];
		const struct env_rcpt *er = &m->rcpts[l->parent];
		char notify[40];

		notify_str(er->notify, notify, sizeof(notify));
		/* One the client will not put on a command line is not in
		 * the transaction: its index must not go to the next one's
		 * reply (which made an unsent recipient "sent"). */
		if (cli_rcpt(s->cli, l->addr, &(struct cli_rcpt_params){
		    .notify = notify[0] ? notify : NULL, .orcpt = er->orcpt }) < 0)
			report(j, j->first + i, 550, "5.1.3", NULL, "recipient "
			    "or its DSN parameters not usable in an SMTP command");
		else
			j->cmap[j->ncmap++] = j->first + i;
	}
	cli_data_fd(s->cli, m->fd, m->data_off, m->size);
}

/* What the server offers decides first whether this message can go. */
static void
send_job(struct rsess *s)
{
	const struct cli_caps *caps = cli_caps(s->cli);
	struct rjob *j = s->job;
	struct msg *m = j->rm->m;
	char text[REASON_MAX];

	j->first = j->count = 0;
	j->dsn_offered = (caps->flags & CLI_CAP_DSN) != 0;
	if (caps->size > 0 && (unsigned long long)m->size > caps->size) {
		snprintf(text, sizeof(text), "message size %lld exceeds size limit "
		    "%llu of server %s", (long long)m->size, caps->size, s->relay);
		fail_rest(j, 552, "5.3.4", s->relay, text);
	} else if (m->smtputf8 && !(caps->flags & CLI_CAP_SMTPUTF8)) {
		snprintf(text, sizeof(text), "SMTPUTF8 is required, but was not "
		    "offered by host %s", s->relay);
		fail_rest(j, 550, "5.6.7", s->relay, text);
	} else {
		send_batch(s);
		return;
	}
	s->job = NULL;
	job_end(j);
	sess_next_job(s);
}

static void
on_ready(struct cli_conn *cli, const struct cli_caps *caps, void *arg)
{
	struct rsess *s = arg;

	/*
	 * A server that names itself as we do is us, reached through an
	 * address we did not know as ours (NAT, a forwarded port): a loop.
	 * The next address is tried; when every one is us, the mail bounces.
	 */
	if (strcasecmp(caps->name, conf_str(C_myhostname)) == 0) {
		s->loop_now = 1;
		cli_quit(cli);
		return;
	}
	s->ready = 1;
	s->d->fails = 0;
	if (cli_tls_bev(cli) != NULL && s->job != NULL) {
		char desc[160];

		remote_tls_describe(cli_tls_bev(cli), desc, sizeof(desc));
		log_qinfo(s->job->rm->m->id, "TLS connection established to %s: %s "
		    "(level %s)", s->relay, desc, tls_level_name(s->tls_level));
	}
	if (s->job != NULL)
		send_job(s);
}

static void
on_rcpt(struct cli_conn *cli, int idx, const struct cli_reply *r, void *arg)
{
	struct rsess *s = arg;
	struct rjob *j = s->job;

	(void)cli;
	if (j == NULL || idx < 0 || idx >= j->ncmap)
		return;
	if (r->code / 100 == 2)
		j->st[j->cmap[idx]] = 1;
	else
		report_reply(j, j->cmap[idx], r, s->relay);
}

static void
on_final(struct cli_conn *cli, int idx, const struct cli_reply *r, void *arg)
{
	struct rsess *s = arg;
	struct rjob *j = s->job;

	(void)cli;
	if (j == NULL || idx < 0 || idx >= j->ncmap)
		return;
	/* SMTP has one reply after the dot: it holds for every accepted rcpt */
	for (int k = j->first; k < j->first + j->count; k++)
		if (j->st[k] == 1)
			report_reply(j, k, r, s->relay);
}

static void
on_done(struct cli_conn *cli, void *arg)
{
	struct rsess *s = arg;
	struct rjob *j = s->job;
	char text[REASON_MAX];

	if (j == NULL)
		return;
	if (j->first + j->count < j->n && cli_idle(cli)) {
		send_batch(s);
		return;
	}
	snprintf(text, sizeof(text), "lost connection with %s", s->relay);
	fail_rest(j, 421, "4.4.2", s->relay, text);	/* only if it went away */
	s->job = NULL;
	job_end(j);
	if (cli_idle(cli))
		sess_next_job(s);
}

/* The connection ended. Before the session was ready (connect refused or
 * timed out, a greeting or EHLO refused) the next address is tried. */
static void
on_closed(struct cli_conn *cli, const struct cli_reply *r, void *arg)
{
	struct rsess *s = arg;
	struct rjob *j = s->job;

	(void)cli;
	cli_free(s->cli);
	s->cli = NULL;
	if (j != NULL && !s->ready && s->loop_now) {
		s->loop_now = 0;
		s->loops++;
		s->fcode = 451;		/* another address may still be right */
		snprintf(s->fdsn, sizeof(s->fdsn), "4.4.6");
		snprintf(s->ftext, sizeof(s->ftext), "mail for %s loops back to "
		    "myself (%s greeted me with my own hostname)", s->d->name,
		    s->relay);
		log_qwarn(j->rm->m->id, "%s", s->ftext);
		s->plain = 0;
		s->hop++;
		try_hop(s);
		return;
	}
	if (j != NULL && !s->ready) {
		s->fcode = r->code;
		snprintf(s->fdsn, sizeof(s->fdsn), "%s", r->status[0] ? r->status : "4.4.1");
		snprintf(s->ftext, sizeof(s->ftext), "%s%s%s", r->local ? "" : s->relay,
		    r->local ? "" : " said: ", r->text != NULL ? r->text : "");
		printable(s->ftext);
		log_qinfo(j->rm->m->id, "%s: %s", s->relay, s->ftext);
		if (strcmp(r->status, "4.7.5") == 0 && s->tls_level == TLS_MAY && !s->plain)
			s->plain = 1;	/* "may": the same host again, in plaintext */
		else {
			s->plain = 0;
			s->hop++;
		}
		try_hop(s);
		return;
	}
	if (j != NULL) {	/* lost between two transactions */
		char text[REASON_MAX];

		snprintf(text, sizeof(text), "lost connection with %s: %s", s->relay,
		    r->text != NULL ? r->text : "");
		fail_rest(j, 421, "4.4.2", s->relay, text);
		s->job = NULL;
		job_end(j);
	}
	sess_free(s);
}

static struct bufferevent *
on_tls_wrap(struct cli_conn *cli, struct bufferevent *plain, void *arg)
{
	struct rsess *s = arg;

	(void)cli;
	return remote_tls_wrap(plain, s->route->v[s->hop].host, s->tls_level);
}

static const struct cli_callbacks callbacks = {
	.ready = on_ready, .rcpt = on_rcpt, .final = on_final, .done = on_done,
	.closed = on_closed, .tls_wrap = on_tls_wrap,
};

/* ---- destinations and the transport ------------------------------------------ */

static struct dest *
dest_get(const char *name)
{
	struct dest key = { .name = (char *)name }, *d;

	if ((d = RB_FIND(dest_tree, &dests, &key)) != NULL)
		return d;
	d = xcalloc(1, sizeof(*d));
	d->name = xstrdup(name);
	TAILQ_INIT(&d->wait);
	TAILQ_INIT(&d->idle);
	RB_INSERT(dest_tree, &dests, d);
	return d;
}

/* Start what d may start now: idle sessions first, then new ones. */
static void
dest_kick(struct dest *d)
{
	int dlimit = (int)conf_num(C_default_destination_concurrency_limit);
	int glimit = (int)conf_num(C_default_process_limit);
	struct rsess *s;
	struct rjob *j;

	while ((j = TAILQ_FIRST(&d->wait)) != NULL) {
		if ((s = TAILQ_FIRST(&d->idle)) != NULL) {
			pool_del(s);
			wait_take(d, j);
			s->job = j;
			send_job(s);
			continue;
		}
		if (d->nsess >= dlimit)
			return;
		if (nsess >= glimit) {
			if (!d->starved) {
				TAILQ_INSERT_TAIL(&starved, d, slink);
				d->starved = 1;
			}
			/* an idle session elsewhere gives its slot up */
			if ((s = TAILQ_FIRST(&idle)) != NULL) {
				pool_del(s);
				cli_quit(s->cli);
			}
			return;
		}
		wait_take(d, j);
		sess_new(d, j);
	}
}

static struct rjob *
job_for(struct rmsg *rm, struct rjob **jobs, int *njobs, const char *dname, int n)
{
	struct dest *d = dest_get(dname);
	struct rjob *j;

	for (int i = 0; i < *njobs; i++)
		if (jobs[i]->d == d)
			return jobs[i];
	j = xcalloc(1, sizeof(*j));
	j->rm = rm;
	j->d = d;
	j->idx = xmalloc((size_t)n * sizeof(*j->idx));
	j->st = xcalloc((size_t)n, 1);
	j->cmap = xcalloc((size_t)n, sizeof(*j->cmap));
	jobs[(*njobs)++] = j;
	return j;
}

/* Queue j on its destination, unless the destination already has more
 * waiting than its share of the transport (a stuck destination must not
 * hold every message slot of the scheduler). */
static void
job_queue(struct rjob *j)
{
	struct dest *d = j->d;

	if (d->nwait >= remote_transport.limit / 4) {
		/* Not a failure (a burst to one relayhost is normal): the
		 * message comes back in a second, no try counted. */
		for (int k = 0; k < j->n; k++)
			if (j->st[k] == 0) {
				j->st[k] = 2;
				sched_leaf_postpone(j->rm->m, j->idx[k]);
			}
		job_end(j);
		return;
	}
	TAILQ_INSERT_TAIL(&d->wait, j, link);
	d->nwait++;
}

static void
remote_start(struct transport *t, struct msg *m, const int *idx, int n)
{
	struct rmsg *rm = xcalloc(1, sizeof(*rm));
	struct rjob **jobs = xcalloc((size_t)n, sizeof(*jobs));
	struct dest **ds = xcalloc((size_t)n, sizeof(*ds));
	int njobs = 0;

	rm->t = t;
	rm->m = m;
	rm->jobs = 1;		/* held until every job is queued */
	for (int i = 0; i < n; i++) {
		char *dn = remote_dest_of(m->leaves[idx[i]].addr);
		struct rjob *j;

		if (dn == NULL) {
			sched_leaf_result(m, idx[i], 550, "5.1.3", NULL,
			    "bad address syntax: no domain");
			continue;
		}
		j = job_for(rm, jobs, &njobs, dn, n);
		free(dn);
		j->idx[j->n++] = idx[i];
	}
	rm->jobs += njobs;
	for (int i = 0; i < njobs; i++) {
		ds[i] = jobs[i]->d;
		job_queue(jobs[i]);	/* may end the job at once */
	}
	for (int i = 0; i < njobs; i++) {
		dest_kick(ds[i]);
		dest_gc(ds[i]);
	}
	free(ds);
	free(jobs);
	rmsg_done(rm);
}

void
remote_init(struct event_base *base)
{
	char *const *servers = conf_list(C_dns_servers);

	(void)base;
	remote_transport.start = remote_start;
	remote_tls_init();
	if (dns_init(base, servers != NULL && servers[0] != NULL ? servers : NULL) < 0)
		log_warn("remote delivery: DNS resolver did not start; lookups fail");
}

void
remote_shutdown(void)
{
	struct dest *d;
	struct rsess *s;

	stopping = 1;
	RB_FOREACH(d, dest_tree, &dests)
		while ((s = TAILQ_FIRST(&d->idle)) != NULL) {
			pool_del(s);
			cli_quit(s->cli);
		}
}
