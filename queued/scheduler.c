/*
 * The schedule: every queued message lives in memory, indexed by id (a
 * red-black tree, for the control socket) and, unless held or being
 * worked on, in a binary min-heap ordered by its next attempt. One
 * libevent timer is armed for the heap's top, so choosing the next
 * delivery costs O(log n) whatever the queue holds, and nothing ever
 * rescans the spool. A due message is split by transport (local leaves,
 * remote leaves); each part starts at once if the transport is under its
 * concurrency limit, or waits in that transport's FIFO. When the last part
 * is done, attempt.c records the results, sends DSNs and reschedules.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <event2/event.h>

#include "conf.h"
#include "log.h"
#include "queued.h"
#include "sched_int.h"
#include "xalloc.h"

struct sched_stats sched_stats;

static int msg_cmp(struct msg *a, struct msg *b) { return strcmp(a->id, b->id); }
RB_HEAD(msg_tree, msg);
RB_GENERATE(msg_tree, msg, by_id, msg_cmp)
static struct msg_tree all_msgs = RB_INITIALIZER(&all_msgs);
static size_t nmsgs;

static struct msg **heap;
static size_t heap_len, heap_cap;
static struct event *timer_ev;

/* Transports by leaf kind; LEAF_ERROR leaves never go to a transport. */
static struct transport *const transports[NTRANSPORT] = {
	&local_transport, &remote_transport,
};

/* Each transport's waiting messages (a message is in at most one wait
 * list per transport: m->waiting bit). */
static struct waitq {
	struct msg **v;
	size_t head, len, cap;
} waitq[NTRANSPORT];

double
now_f(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (double)tv.tv_sec + tv.tv_usec / 1e6;
}

/* ---- heap ------------------------------------------------------------- */

static void
heap_set(size_t i, struct msg *m)
{
	heap[i] = m;
	m->heap_idx = i;
}

static void
heap_up(size_t i)
{
	struct msg *m = heap[i];

	while (i > 0 && heap[(i - 1) / 2]->next_try > m->next_try) {
		heap_set(i, heap[(i - 1) / 2]);
		i = (i - 1) / 2;
	}
	heap_set(i, m);
}

static void
heap_down(size_t i)
{
	struct msg *m = heap[i];

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= heap_len)
			break;
		if (c + 1 < heap_len && heap[c + 1]->next_try < heap[c]->next_try)
			c++;
		if (heap[c]->next_try >= m->next_try)
			break;
		heap_set(i, heap[c]);
		i = c;
	}
	heap_set(i, m);
}

static void
heap_remove(struct msg *m)
{
	size_t i = m->heap_idx;

	if (i == SIZE_MAX)
		return;
	m->heap_idx = SIZE_MAX;
	if (--heap_len == i)
		return;
	struct msg *x = heap[heap_len];
	heap_set(i, x);
	heap_down(i);
	heap_up(x->heap_idx);
}

static void
arm_timer(void)
{
	struct timeval tv = { 0, 0 };
	time_t now = time(NULL);

	if (heap_len == 0) {
		evtimer_del(timer_ev);
		return;
	}
	if (heap[0]->next_try > now)
		tv.tv_sec = heap[0]->next_try - now;
	evtimer_add(timer_ev, &tv);
}

void
sched_unput(struct msg *m)
{
	heap_remove(m);
}

static double
mono_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e9 + t.tv_nsec;
}

/* Put m on the schedule for m->next_try. */
void
sched_put(struct msg *m)
{
	double t0 = mono_ns();

	if (m->hold || m->pending_delete)
		return;
	if (m->heap_idx == SIZE_MAX) {
		if (heap_len == heap_cap) {
			heap_cap = heap_cap ? heap_cap * 2 : 1024;
			heap = xrealloc(heap, heap_cap * sizeof(*heap));
		}
		heap_set(heap_len++, m);
	}
	heap_down(m->heap_idx);
	heap_up(m->heap_idx);
	if (m->heap_idx == 0)
		arm_timer();
	sched_stats.sched_ns_total += mono_ns() - t0;
	sched_stats.sched_ops++;
}

/* ---- transports and their waiting lists --------------------------------- */

static void
waitq_push(int t, struct msg *m)
{
	struct waitq *q = &waitq[t];

	if (q->len == q->cap) {
		size_t ncap = q->cap ? q->cap * 2 : 256;
		struct msg **v = xmalloc(ncap * sizeof(*v));

		for (size_t i = 0; i < q->len; i++)
			v[i] = q->v[(q->head + i) % q->cap];
		free(q->v);
		q->v = v;
		q->cap = ncap;
		q->head = 0;
	}
	q->v[(q->head + q->len++) % q->cap] = m;
	m->waiting |= 1u << t;
}

static struct msg *
waitq_pop(int t)
{
	struct waitq *q = &waitq[t];
	struct msg *m;

	if (q->len == 0)
		return NULL;
	m = q->v[q->head];
	q->head = (q->head + 1) % q->cap;
	q->len--;
	m->waiting &= ~(1u << t);
	return m;
}

/*
 * Messages a destination put off (remote.c: more jobs waiting for it than
 * its share of the transport), oldest first. Each comes back as soon as
 * a destination has room again, instead of a second later: a burst to
 * one relayhost otherwise stalled a second per group (bench/RESULTS.md).
 */
static TAILQ_HEAD(, msg) parked = TAILQ_HEAD_INITIALIZER(parked);

void
sched_park(struct msg *m)
{
	if (!m->parked) {
		TAILQ_INSERT_TAIL(&parked, m, park_link);
		m->parked = 1;
		sched_stats.postponed++;
	}
}

static void
unpark(struct msg *m)
{
	if (m->parked) {
		TAILQ_REMOVE(&parked, m, park_link);
		m->parked = 0;
	}
}

void
sched_unpark_one(void)
{
	struct msg *m = TAILQ_FIRST(&parked);

	if (m != NULL) {
		unpark(m);
		sched_stats.unparked++;
		sched_flush(m);
	}
}

/* Start transport t on m's pending leaves of its kind (it has room). */
static void
start_part(int t, struct msg *m)
{
	struct transport *tr = transports[t];
	int n = 0, *idx;

	idx = xmalloc((size_t)m->nleaf * sizeof(*idx));
	for (int i = 0; i < m->nleaf; i++)
		if (m->leaves[i].state == LS_PENDING && (int)m->leaves[i].kind == t &&
		    !m->leaves[i].busy) {
			m->leaves[i].busy = 1;
			idx[n++] = i;
		}
	if (n > 0) {
		tr->busy++;
		sched_stats.attempts++;
		tr->start(tr, m, idx, n);
	} else
		attempt_part_done(m);
	free(idx);
}

/* Which transports m's pending leaves need (bits). */
static unsigned
needs(const struct msg *m)
{
	unsigned need = 0;

	for (int i = 0; i < m->nleaf; i++)
		if (m->leaves[i].state == LS_PENDING && m->leaves[i].kind != LEAF_ERROR)
			need |= 1u << m->leaves[i].kind;
	return need;
}

/*
 * A due message. While a transport it needs is at its limit the message
 * waits in that transport's FIFO without having begun (no file open: a
 * flush of 100,000 messages must not hold 100,000 descriptors). Then the
 * parts are counted first, so that a part finishing at once does not end
 * the attempt before the others started.
 */
static void
start_attempt(struct msg *m)
{
	unsigned need = needs(m);

	unpark(m);
	if (m->pending_delete) {
		msg_remove(m, "removed (deleted by the operator)");
		return;
	}
	if (m->hold || queued_stopping)	/* stopping: left for the next start */
		return;
	for (int t = 0; t < NTRANSPORT; t++)
		if ((need & (1u << t)) && transports[t]->busy >= transports[t]->limit) {
			waitq_push(t, m);
			return;
		}
	if (attempt_begin(m) < 0)
		return;
	need = needs(m);	/* expiry may have settled some */
	m->attempts_out = 1;	/* held by us until every part started */
	for (int t = 0; t < NTRANSPORT; t++)
		if (need & (1u << t)) {
			m->attempts_out++;
			start_part(t, m);
		}
	attempt_part_done(m);
}

void
sched_attempt_done(struct transport *tr, struct msg *m)
{
	int t;
	struct msg *next;

	for (t = 0; t < NTRANSPORT && transports[t] != tr; t++)
		;
	tr->busy--;
	attempt_part_done(m);
	while (t < NTRANSPORT && tr->busy < tr->limit && (next = waitq_pop(t)) != NULL)
		start_attempt(next);
}

/* The timer: take every due message off the heap (a bounded batch per
 * turn, so submissions still get the loop) and start it. */
static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
	time_t now = time(NULL);
	int batch = 0;

	(void)fd, (void)what, (void)arg;
	while (heap_len > 0 && heap[0]->next_try <= now && batch++ < 1000) {
		struct msg *m = heap[0];
		double t0 = mono_ns();

		heap_remove(m);
		sched_stats.sched_ns_total += mono_ns() - t0;
		sched_stats.sched_ops++;
		sched_stats.scheduled++;
		start_attempt(m);
	}
	arm_timer();
}

/* ---- the message set ---------------------------------------------------- */

void
sched_add(struct msg *m)
{
	RB_INSERT(msg_tree, &all_msgs, m);
	nmsgs++;
	if (msg_finished(m)) {
		msg_remove(m, "removed");
		return;
	}
	if (m->next_try == 0)
		m->next_try = time(NULL);
	sched_put(m);
}

/* Forget m (its file is gone or moved); frees it. */
void
sched_forget(struct msg *m)
{
	unpark(m);
	heap_remove(m);
	RB_REMOVE(msg_tree, &all_msgs, m);
	nmsgs--;
	msg_free(m);
	arm_timer();
}

struct msg *
sched_find(const char *id)
{
	struct msg key;

	snprintf(key.id, sizeof(key.id), "%s", id);
	return RB_FIND(msg_tree, &all_msgs, &key);
}

void
sched_foreach(void (*fn)(struct msg *m, void *arg), void *arg)
{
	struct msg *m, *next;

	RB_FOREACH_SAFE(m, msg_tree, &all_msgs, next)
		fn(m, arg);
}

size_t
sched_count(void)
{
	return nmsgs;
}

int
sched_idle(void)
{
	for (int t = 0; t < NTRANSPORT; t++)
		if (transports[t]->busy > 0)
			return 0;
	return attempt_in_flight() == 0;
}

/* flush: retry now (held messages stay held). */
void
sched_flush(struct msg *m)
{
	if (m != NULL) {
		if (m->heap_idx != SIZE_MAX) {
			m->next_try = time(NULL);
			sched_put(m);
		}
		return;
	}
	for (size_t i = 0; i < heap_len; i++)
		heap[i]->next_try = time(NULL);
	arm_timer();
}

void
sched_reconfigure(void)
{
	local_transport.limit = (int)conf_num(C_lmtp_destination_concurrency_limit);
}

void
sched_init(struct event_base *base)
{
	timer_ev = evtimer_new(base, on_timer, NULL);
	sched_reconfigure();
}
