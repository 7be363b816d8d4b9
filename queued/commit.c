/*
 * Group commit: what the submission sessions and the state log want made
 * durable is made durable together, by one flush on a thread of its own,
 * pipelined with the event loop (the classic pipelined group commit):
 *
 *   - after every turn of the loop (Redis's beforeSleep), commit_run()
 *     hands what was asked for during the turn to the sync thread as one
 *     batch, unless a batch is being flushed already; then the requests
 *     wait for the next hand-over, and share its flush;
 *   - the sync thread makes one flush and signals an eventfd; the loop
 *     tells every waiter of the batch (the 250s go out from there) and
 *     hands over what gathered meanwhile;
 *   - while a flush runs (0.3 ms to several on a busy disk) the loop goes
 *     on: it reads the next messages, writes their files, delivers, and
 *     answers the control socket. Before, the flush ran in the loop and
 *     every session of queued waited for it.
 * The thread only ever sees the batch's flush parameters (a descriptor or
 * the spool, copied under the mutex); the requests themselves stay on the
 * loop's side, and a request's descriptor stays open until its done()
 * has been called, so there is nothing else to share. No libevent call,
 * no log line and no signal on the thread.
 *
 * One flush per batch, whatever it holds:
 *   - a new queue file is written in its final place, queue/X/ID, sealed
 *     (hermod-queue(5)); its data and its new directory entry are made
 *     durable by one syncfs() of the spool's file system. Linux documents
 *     syncfs(2) as sync(2) for one file system: every pending change to
 *     file data and to file system metadata (directory entries included)
 *     is written, and since Linux 5.8 a writeback error is reported. A
 *     batch of several files shares that one call: on ext4 and XFS an
 *     fsync of each fresh file would be a journal commit and a cache
 *     flush of its own, so "group" commit would group nothing;
 *   - a batch of one file with no new directory entry fsyncs that file,
 *     which POSIX covers alone: one old file's state records, or a new
 *     message written into a file named ahead (remove.c), whose name and
 *     emptiness an earlier syncfs made durable. That is most lone
 *     messages, and an fsync of one file does not write back the rest
 *     of the file system as a syncfs does;
 *   - a batch of none is a syncfs for the reuse pool (commit_run).
 * The earlier design wrote in incoming/ and renamed into queue/ after the
 * data flush, so the rename needed a second flush: two per lone message.
 * A crash before the flush now leaves a file in queue/ that was never
 * acknowledged, possibly with only some of its pages on the disk:
 * recovery finds its seal missing or wrong and removes it.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "daemon.h"
#include "log.h"
#include "queued.h"

#define MAINT_MS	50	/* a syncfs for the reuse pool, at most this often */

struct commit_stats commit_stats;

static TAILQ_HEAD(commit_list, commit_req) pending = TAILQ_HEAD_INITIALIZER(pending);

/* The loop's side: the batch being flushed (loop only). */
static struct commit_list inflight = TAILQ_HEAD_INITIALIZER(inflight);
static int busy;			/* a batch is with the thread */
static unsigned long long busy_syncfs;	/* its syncfs's number, or 0 (an fsync) */
static int done_fd = -1;		/* eventfd: the thread's "done" */
static struct timespec last_syncfs;	/* when the last one was handed over */
static struct event *pool_ev, *pool_timer;	/* the reuse pool's wake-ups */
static struct event *done_ev;

/* Shared with the thread, under mu. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static struct {
	int ready;		/* a job to do */
	int fd;			/* fsync this, or -1: syncfs(spool_fd) */
	int err;		/* the flush's result */
	int quit;
} job;
static pthread_t syncer;
static int have_syncer;

static void *
sync_main(void *arg)
{
	uint64_t one = 1;

	(void)arg;
	pthread_mutex_lock(&mu);
	for (;;) {
		while (!job.ready && !job.quit)
			pthread_cond_wait(&cv, &mu);
		if (!job.ready)
			break;
		int fd = job.fd;

		pthread_mutex_unlock(&mu);
		int err = (fd >= 0 ? fsync(fd) : syncfs(spool_fd)) < 0 ? errno : 0;

		pthread_mutex_lock(&mu);
		job.err = err;
		job.ready = 0;
		while (write(done_fd, &one, sizeof(one)) < 0 && errno == EINTR)
			;
	}
	pthread_mutex_unlock(&mu);
	return NULL;
}

/* Hand the waiting requests to the thread as one batch. */
static void
hand_over(void)
{
	struct commit_req *r;
	int n = 0, fd;

	TAILQ_CONCAT(&inflight, &pending, link);
	TAILQ_FOREACH(r, &inflight, link)
		n++;
	r = TAILQ_FIRST(&inflight);
	fd = n == 1 && !r->new_entry ? r->fd : -1;
	commit_stats.passes++;
	commit_stats.files += (unsigned long long)n;
	commit_stats.fsyncs++;
	if (fd < 0)
		commit_stats.syncfs++;
	if (n == 0)
		commit_stats.pool_syncfs++;
	busy_syncfs = fd < 0 ? commit_stats.syncfs : 0;
	if (fd < 0)
		clock_gettime(CLOCK_MONOTONIC, &last_syncfs);
	busy = 1;
	pthread_mutex_lock(&mu);
	job.fd = fd;
	job.ready = 1;
	pthread_cond_signal(&cv);
	pthread_mutex_unlock(&mu);
}

/* The thread is done: tell the batch's waiters, hand over the next. */
static void
on_done(evutil_socket_t fd, short what, void *arg)
{
	struct commit_req *r;
	uint64_t v;
	int err, n = 0;

	(void)what, (void)arg;
	if (read(fd, &v, sizeof(v)) < 0 || !busy)
		return;
	pthread_mutex_lock(&mu);
	err = job.ready ? -1 : job.err;
	pthread_mutex_unlock(&mu);
	if (err < 0)		/* not ours yet (cannot happen: one job at a time) */
		return;
	busy = 0;
	if (err != 0)
		log_crit("group commit: %s", strerror(err));
	else if (busy_syncfs != 0)
		commit_stats.syncfs_done = busy_syncfs;	/* remove.c's reuse waits for it */
	while ((r = TAILQ_FIRST(&inflight)) != NULL) {
		TAILQ_REMOVE(&inflight, r, link);
		n++;
		r->done(r->arg, err);	/* may free r, may ask for more */
	}
	log_debug("group commit: %d files, %llu flushes so far", n, commit_stats.fsyncs);
	commit_run();
}

static long
ms_since(const struct timespec *t)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - t->tv_sec) * 1000 + (now.tv_nsec - t->tv_nsec) / 1000000;
}

/* Lone messages in files named ahead are committed by an fsync each, so
 * when messages come one at a time no syncfs may run for a long while,
 * and the files they leave wait for one to be reused (remove.c): when
 * few are ready, the commit makes one, with no waiter, at most every
 * MAINT_MS. The remove thread's wake-up and a timer bring the loop here
 * when it is idle. */
void
commit_run(void)
{
	long ms;

	if (busy)
		return;
	if (!TAILQ_EMPTY(&pending)) {
		hand_over();
		return;
	}
	/* not on every turn: the armed timer brings the loop back */
	if (evtimer_pending(pool_timer, NULL) || !spool_gated())
		return;
	if ((ms = ms_since(&last_syncfs)) >= MAINT_MS)
		hand_over();
	else {
		struct timeval tv = { 0, (MAINT_MS - ms) * 1000 };

		evtimer_add(pool_timer, &tv);
	}
}

/* Only a wake-up: commit_run() follows the loop's turn. */
static void
on_pool(evutil_socket_t fd, short what, void *arg)
{
	uint64_t v;

	(void)arg;
	if ((what & EV_READ) && read(fd, &v, sizeof(v)) < 0)
		return;		/* EAGAIN: read already */
}

void
commit_request(struct commit_req *r)
{
	TAILQ_INSERT_TAIL(&pending, r, link);
}

int
commit_pending(void)
{
	return busy || !TAILQ_EMPTY(&pending);
}

void
commit_init(struct event_base *base)
{
	if ((done_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0)
		fatal_sys("eventfd");
	if ((done_ev = event_new(base, done_fd, EV_READ | EV_PERSIST, on_done, NULL)) == NULL ||
	    event_add(done_ev, NULL) < 0)
		fatal("commit: event_new");
	if ((pool_ev = event_new(base, remove_wake_fd(), EV_READ | EV_PERSIST, on_pool,
	    NULL)) == NULL || event_add(pool_ev, NULL) < 0 ||
	    (pool_timer = evtimer_new(base, on_pool, NULL)) == NULL)
		fatal("commit: event_new");
	daemon_thread_start(&syncer, sync_main, NULL);	/* takes no signal */
	have_syncer = 1;
}

/* At exit, after the last commit: the thread ends and is joined. */
void
commit_shutdown(void)
{
	if (!have_syncer)
		return;
	pthread_mutex_lock(&mu);
	job.quit = 1;
	pthread_cond_signal(&cv);
	pthread_mutex_unlock(&mu);
	pthread_join(syncer, NULL);
	have_syncer = 0;
	event_free(done_ev);
	event_free(pool_ev);
	event_free(pool_timer);
	close(done_fd);
}
