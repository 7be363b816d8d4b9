/*
 * One delivery attempt of one message, from the scheduler taking it off the
 * heap to its next place on the heap (or its removal):
 *
 *   begin    open the file for state records; recipients past
 *            maximal_queue_lifetime and alias error leaves fail now
 *   parts    each transport reports every leaf (sched_leaf_result: a
 *            Postfix-shaped log line and a state record), then its part
 *   commit   the state records are made durable (group commit) before
 *            anything else happens to the message: a crash later can only
 *            repeat a delivery, never lose a result
 *   DSNs     failures, then successes (NOTIFY=SUCCESS), then one delay
 *            warning, each queued durably as a message of its own before
 *            the leaves are marked notified
 *   end      every leaf final and notified: unlink ("removed"); else back
 *            on the heap after an exponential backoff, never later than
 *            the delay warning or the expiry
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "log.h"
#include "queued.h"
#include "sched_int.h"
#include "xalloc.h"

static int in_flight;

int
attempt_in_flight(void)
{
	return in_flight;
}

static int
allows(const struct msg *m, const struct leaf *l, enum dsn_kind kind)
{
	unsigned n = m->rcpts[l->parent].notify;

	if (n & NOTIFY_NEVER)
		return 0;
	if (kind == DSN_SUCCESS)
		return (n & NOTIFY_SUCCESS) != 0;
	if (kind == DSN_FAILED)
		return n == 0 || (n & NOTIFY_FAILURE);
	return n == 0 || (n & NOTIFY_DELAY);
}

/* Does leaf i still owe its sender a DSN of this kind? */
static int
needs_dsn(const struct msg *m, int i, enum dsn_kind kind)
{
	const struct leaf *l = &m->leaves[i];

	if (kind == DSN_DELAYED)
		return l->state == LS_PENDING && allows(m, l, kind);
	if (l->notified || !allows(m, l, kind))
		return 0;
	return l->state == (kind == DSN_FAILED ? LS_FAILED : LS_SENT);
}

int
msg_finished(struct msg *m)
{
	for (int i = 0; i < m->nleaf; i++)
		if (m->leaves[i].state == LS_PENDING || needs_dsn(m, i, DSN_FAILED) ||
		    needs_dsn(m, i, DSN_SUCCESS))
			return 0;
	return 1;
}

void
msg_remove(struct msg *m, const char *why)
{
	remove_later(m->path);	/* remove.c: unlink(2) can wait for the disk */
	log_qinfo(m->id, "%s", why);
	sched_forget(m);
}

/* ---- results ------------------------------------------------------------- */

static void
log_result(struct msg *m, int i, const char *status)
{
	struct leaf *l = &m->leaves[i];
	const char *orig = m->rcpts[l->parent].addr;
	double now = now_f(), start = m->attempt_start > 0 ? m->attempt_start : now;

	log_qinfo(m->id, "to=<%s>%s%s%s, relay=%s, delay=%.2g, delays=0/%.2g/0/%.2g, "
	    "dsn=%s, status=%s (%s)", l->addr,
	    strcasecmp(orig, l->addr) != 0 ? ", orig_to=<" : "",
	    strcasecmp(orig, l->addr) != 0 ? orig : "",
	    strcasecmp(orig, l->addr) != 0 ? ">" : "",
	    l->relay != NULL ? l->relay : "none", now - m->arrival,
	    start - m->arrival, now - start, l->dsn, status,
	    l->reason != NULL ? l->reason : "");
}

static void
leaf_set(struct msg *m, int i, enum leaf_state st, const char *dsn,
    const char *relay, const char *text, const char *status)
{
	struct leaf *l = &m->leaves[i];

	l->busy = 0;
	l->state = st;
	l->last_try = time(NULL);
	if (dsn != l->dsn)
		snprintf(l->dsn, sizeof(l->dsn), "%s", dsn);
	if (relay != l->relay) {
		free(l->relay);
		l->relay = relay != NULL ? xstrdup(relay) : NULL;
	}
	if (text != l->reason) {
		free(l->reason);
		l->reason = xstrndup(text != NULL ? text : "", REASON_MAX);
	}
	log_result(m, i, status);
	if (st != LS_PENDING)
		m->final_changed = 1;
	if (m->fd >= 0)
		qf_log_leaf(m, m->fd, i, st == LS_SENT ? 's' : st == LS_FAILED ? 'f' : 'd');
}

/* A well-formed enhanced status code of the right class, or a default. */
static const char *
pick_dsn(int code, const char *dsn)
{
	static const char *const defaults[] = { "2.0.0", "4.0.0", "5.0.0" };
	int cls = code / 100 == 2 ? 0 : code / 100 == 5 ? 2 : 1;

	if (dsn != NULL && strlen(dsn) >= 5 && strlen(dsn) <= 7 && dsn[0] == "245"[cls] &&
	    dsn[1] == '.' && strspn(dsn + 2, "0123456789.") == strlen(dsn + 2))
		return dsn;
	return defaults[cls];
}

void
sched_leaf_result(struct msg *m, int i, int code, const char *dsn,
    const char *relay, const char *text)
{
	dsn = pick_dsn(code, dsn);
	if (code / 100 == 2) {
		sched_stats.delivered++;
		leaf_set(m, i, LS_SENT, dsn, relay, text, "sent");
	} else if (code / 100 == 5) {
		sched_stats.bounced++;
		leaf_set(m, i, LS_FAILED, dsn, relay, text, "bounced");
	} else {
		sched_stats.deferred++;
		leaf_set(m, i, LS_PENDING, dsn, relay, text, "deferred");
	}
}

void
sched_leaf_postpone(struct msg *m, int i)
{
	m->leaves[i].busy = 0;
	m->postponed = 1;
}

/* ---- begin --------------------------------------------------------------- */

static void
expire(struct msg *m, time_t now)
{
	for (int i = 0; i < m->nleaf; i++) {
		struct leaf *l = &m->leaves[i];
		char *why;

		if (l->state != LS_PENDING || l->kind == LEAF_ERROR)
			continue;
		why = xasprintf("message expired after %llds in the queue%s%s",
		    (long long)(now - (time_t)m->arrival), l->reason ? ": " : "",
		    l->reason ? l->reason : "");
		leaf_set(m, i, LS_FAILED, l->dsn[0] == '4' ? l->dsn : "4.4.7", l->relay,
		    why, "expired, returned to sender");
		free(why);
	}
}

int
attempt_begin(struct msg *m)
{
	time_t now = time(NULL);

	if ((m->fd = qf_open(spool_fd, m->path, O_RDWR)) < 0) {
		if (errno == ENOENT) {
			log_qwarn(m->id, "queue file %s vanished", m->path);
			sched_forget(m);
		} else {
			log_qwarn(m->id, "cannot open %s: %s", m->path, strerror(errno));
			m->next_try = now + conf_num(C_minimal_backoff_time);
			sched_put(m);
		}
		return -1;
	}
	in_flight++;
	m->attempt_start = now_f();
	for (int i = 0; i < m->nleaf; i++)
		if (m->leaves[i].kind == LEAF_ERROR && m->leaves[i].state == LS_PENDING)
			leaf_set(m, i, LS_FAILED, m->leaves[i].dsn, NULL,
			    m->leaves[i].reason, "bounced");
	if (now - (time_t)m->arrival >= conf_num(C_maximal_queue_lifetime))
		expire(m, now);
	return 0;
}

/* ---- end ----------------------------------------------------------------- */

static time_t
next_attempt(struct msg *m, time_t now)
{
	long long min = conf_num(C_minimal_backoff_time), max = conf_num(C_maximal_backoff_time);
	long long d = min, warn = conf_num(C_delay_warning_time);
	time_t t, expiry = (time_t)m->arrival + conf_num(C_maximal_queue_lifetime);

	for (int i = 1; i < m->tries && d < max; i++)
		d *= 2;
	t = now + (d < max ? d : max);
	if (expiry > now && expiry < t)
		t = expiry;
	if (!m->warned && warn > 0 && (time_t)m->arrival + warn > now &&
	    (time_t)m->arrival + warn < t)
		t = (time_t)m->arrival + warn;
	return t;
}

static void
attempt_end(struct msg *m)
{
	time_t now = time(NULL);

	close(m->fd);
	m->fd = -1;
	in_flight--;
	if (m->pending_delete) {
		msg_remove(m, "removed (deleted by the operator)");
		return;
	}
	if (msg_finished(m)) {
		msg_remove(m, "removed");
		return;
	}
	if (m->postponed) {	/* not a try: back when there is room */
		m->postponed = 0;
		m->next_try = now + 1;
		sched_put(m);
		sched_park(m);
		return;
	}
	m->tries++;
	m->next_try = next_attempt(m, now);
	sched_put(m);
}

struct dsn_ctx {
	struct msg *m;
	enum dsn_kind kind;
	char which[];
};

static void dsn_next(struct msg *m);

static void
dsn_sent(void *arg, int err)
{
	struct dsn_ctx *c = arg;
	struct msg *m = c->m;

	if (err != 0) {
		log_qwarn(m->id, "cannot queue the delivery status notification: %s; "
		    "will try again", strerror(err));
		m->dsn_step = 3;
	} else {
		for (int i = 0; i < m->nleaf; i++)
			if (c->which[i] && c->kind != DSN_DELAYED) {
				m->leaves[i].notified = 1;
				qf_log_leaf(m, m->fd, i, 'n');
			}
		if (c->kind == DSN_DELAYED) {
			m->warned = 1;
			qf_log_msg(m, m->fd, "w");
		}
		m->dsn_step++;
	}
	free(c);
	dsn_next(m);
}

/* Failures, then successes, then the delay warning. */
static void
dsn_next(struct msg *m)
{
	static const enum dsn_kind order[] = { DSN_FAILED, DSN_SUCCESS, DSN_DELAYED };
	long long warn = conf_num(C_delay_warning_time);

	for (; m->dsn_step < 3; m->dsn_step++) {
		enum dsn_kind kind = order[m->dsn_step];
		struct dsn_ctx *c;
		int any = 0, rc;

		if (kind == DSN_DELAYED && (m->warned || warn == 0 ||
		    time(NULL) - (time_t)m->arrival < warn))
			continue;
		c = xcalloc(1, sizeof(*c) + (size_t)m->nleaf);
		c->m = m;
		c->kind = kind;
		for (int i = 0; i < m->nleaf; i++)
			any |= c->which[i] = (char)needs_dsn(m, i, kind);
		if (any && (rc = bounce_send(m, kind, c->which, dsn_sent, c)) == 0)
			return;		/* dsn_sent() continues */
		if (any && rc > 0) {	/* nothing to send (null sender): done */
			dsn_sent(c, 0);
			return;
		}
		free(c);
		if (any)		/* could not even start: later */
			break;
	}
	attempt_end(m);
}

static void
state_durable(void *arg, int err)
{
	struct msg *m = arg;

	if (err != 0)
		log_qwarn(m->id, "state records may not be durable: %s", strerror(err));
	m->dsn_step = 0;
	dsn_next(m);
}

/* A transport finished its part; the last one ends the attempt. */
void
attempt_part_done(struct msg *m)
{
	if (--m->attempts_out > 0)
		return;
	/* Nothing to make durable: only deferrals; or every leaf is final and
	 * no DSN is owed, so the next step unlinks the file. A crash before
	 * that unlink reaches the disk delivers the message again, just as a
	 * crash a moment earlier, during the delivery, would: a duplicate,
	 * never a loss. That saves one flush per message delivered at once. */
	if (!m->final_changed || msg_finished(m)) {
		m->final_changed = 0;
		state_durable(m, 0);
		return;
	}
	m->final_changed = 0;
	m->creq.fd = m->fd;
	m->creq.new_entry = 0;
	m->creq.done = state_durable;
	m->creq.arg = m;
	commit_request(&m->creq);
}

/* ---- operator actions (control.c) ------------------------------------------ */

int
sched_hold(struct msg *m, int on)
{
	int fd = m->fd;

	if (m->hold == on)
		return 0;
	m->hold = on;
	if (fd < 0)
		fd = openat(spool_fd, m->path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 || qf_log_msg(m, fd, on ? "h 1" : "h 0") != 0)
		log_qwarn(m->id, "hold state not recorded in the queue file");
	if (fd >= 0 && fd != m->fd)
		close(fd);
	log_qinfo(m->id, on ? "on hold (by the operator)" : "released from hold");
	if (on)
		sched_unput(m);
	else if (m->fd < 0 && m->attempts_out == 0 && !m->waiting) {
		m->next_try = time(NULL);
		sched_put(m);
	}
	return 0;
}

void
sched_delete(struct msg *m)
{
	sched_unput(m);
	if (m->fd >= 0 || m->attempts_out > 0 || m->waiting)
		m->pending_delete = 1;	/* removed when the attempt or the wait ends */
	else
		msg_remove(m, "removed (deleted by the operator)");
}
