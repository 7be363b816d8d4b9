/*
 * Group commit: what the submission sessions and the state log want made
 * durable during one turn of the event loop is made durable together, by
 * one pass that queued's main loop runs after every turn, before it sleeps
 * again (Redis's beforeSleep). Not an event of the lowest priority: libevent
 * runs those only when nothing else is active, so under a steady load the
 * commit, and every reply waiting for it, would starve.
 *
 * One flush per pass, whatever it holds:
 *   - a new queue file is written in its final place, queue/X/ID, sealed
 *     (hermod-queue(5)); its data and its new directory entry are made
 *     durable by one syncfs() of the spool's file system. Linux documents
 *     syncfs(2) as sync(2) for one file system: every pending change to
 *     file data and to file system metadata (directory entries included)
 *     is written, and since Linux 5.8 a writeback error is reported. A
 *     pass with several files shares that one call: on ext4 and XFS an
 *     fsync of each fresh file would be a journal commit and a cache
 *     flush of its own, so "group" commit would group nothing;
 *   - a pass with nothing but one old file's state records (no new
 *     directory entry) fsyncs that file, which POSIX covers alone;
 *   - then every waiter is told (the 250s go out from there).
 * The earlier design wrote in incoming/ and renamed into queue/ after the
 * data flush, so the rename needed a second flush: two per lone message.
 * A crash before the flush now leaves a file in queue/ that was never
 * acknowledged, possibly with only some of its pages on the disk:
 * recovery finds its seal missing or wrong and removes it.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "queued.h"

struct commit_stats commit_stats;

static TAILQ_HEAD(commit_list, commit_req) pending = TAILQ_HEAD_INITIALIZER(pending);

/* The one flush of a pass: 0 or an errno. */
static int
flush_batch(struct commit_list *batch, int n)
{
	struct commit_req *r = TAILQ_FIRST(batch);

	commit_stats.fsyncs++;
	if (n == 1 && !r->new_entry)
		return fsync(r->fd) < 0 ? errno : 0;
	commit_stats.syncfs++;
	return syncfs(spool_fd) < 0 ? errno : 0;
}

void
commit_run(void)
{
	struct commit_list batch = TAILQ_HEAD_INITIALIZER(batch);
	struct commit_req *r;
	int n = 0, err;

	TAILQ_CONCAT(&batch, &pending, link);
	TAILQ_FOREACH(r, &batch, link)
		n++;
	if (n == 0)
		return;
	if ((err = flush_batch(&batch, n)) != 0)
		log_crit("group commit: %s", strerror(err));
	commit_stats.passes++;
	commit_stats.files += (unsigned long long)n;
	log_debug("group commit: %d files, %llu flushes so far", n, commit_stats.fsyncs);
	while ((r = TAILQ_FIRST(&batch)) != NULL) {
		TAILQ_REMOVE(&batch, r, link);
		r->done(r->arg, err);	/* may free r */
	}
}

void
commit_request(struct commit_req *r)
{
	TAILQ_INSERT_TAIL(&pending, r, link);
}

int
commit_pending(void)
{
	return !TAILQ_EMPTY(&pending);
}

void
commit_init(void)
{
}
