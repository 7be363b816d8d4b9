/*
 * Group commit: what the submission sessions and the state log want made
 * durable during one turn of the event loop is made durable together, by
 * one pass that queued's main loop runs after every turn, before it sleeps
 * again (Redis's beforeSleep). Not an event of the lowest priority: libevent
 * runs those only when nothing else is active, so under a steady load the
 * commit, and every reply waiting for it, would starve.
 *
 *   1. the data: one file alone is fsync'ed; two or more share one
 *      syncfs() of the spool's file system. Why not fsync each file: on
 *      ext4 and XFS every fsync of a freshly written file is its own
 *      journal commit and its own cache flush, so N files cost N flushes
 *      and "group" commit would group nothing. syncfs() writes back every
 *      dirty inode of the file system and flushes once (Linux >= 5.8
 *      reports writeback errors through it);
 *   2. new messages are renamed from incoming/ into queue/X/ (only after
 *      their data is stable, so a file in queue/ is always whole);
 *   3. the directory entries: one queue/X directory touched is fsync'ed,
 *      several share one more syncfs() (the renames are all in the same
 *      journal transaction: one commit makes them all durable);
 *   4. every waiter is told (the 250s go out from there).
 * A crash before step 3 leaves the message unacknowledged: in incoming/
 * (removed at start-up) or, rarely, renamed but never acknowledged (it is
 * delivered: the submitter may send it again, a duplicate, never a loss).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "queued.h"

struct commit_stats commit_stats;

static TAILQ_HEAD(commit_list, commit_req) pending = TAILQ_HEAD_INITIALIZER(pending);
static int dir_fds[QUEUE_HASH_DIRS];

static int
hexdigit(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c - 'A' + 10;
}

static int
flush_data(struct commit_list *batch, int n)
{
	struct commit_req *r = TAILQ_FIRST(batch);

	commit_stats.fsyncs++;
	if (n == 1)
		return fsync(r->fd) < 0 ? errno : 0;
	commit_stats.syncfs++;
	return syncfs(spool_fd) < 0 ? errno : 0;
}

/* Rename each new message into place; returns the dirs touched (bits). */
static unsigned
rename_all(struct commit_list *batch, int *errs, int n)
{
	struct commit_req *r;
	unsigned touched = 0;
	int i = 0;

	TAILQ_FOREACH(r, batch, link) {
		if (i < n && errs[i] == 0 && r->tmp_path != NULL) {
			if (renameat(spool_fd, r->tmp_path, spool_fd, r->final_path) < 0) {
				errs[i] = errno;
				log_warn("rename %s: %s", r->tmp_path, strerror(errno));
			} else
				touched |= 1u << hexdigit(r->final_path[6]);
		}
		i++;
	}
	return touched;
}

static int
sync_dirs(unsigned touched, int *dir_err)
{
	int any = 0;

	if (touched & (touched - 1)) {	/* two or more: one syncfs for all */
		int err = syncfs(spool_fd) < 0 ? errno : 0;

		commit_stats.fsyncs++;
		commit_stats.syncfs++;
		for (int d = 0; d < QUEUE_HASH_DIRS; d++)
			dir_err[d] = err;
		if (err != 0)
			log_crit("syncfs (queue directories): %s", strerror(err));
		return err != 0;
	}
	for (int d = 0; d < QUEUE_HASH_DIRS; d++) {
		dir_err[d] = 0;
		if (!(touched & (1u << d)))
			continue;
		commit_stats.fsyncs++;
		commit_stats.dir_fsyncs++;
		if (fsync(dir_fds[d]) < 0) {
			dir_err[d] = errno;
			any = 1;
			log_crit("fsync queue/%X: %s", d, strerror(errno));
		}
	}
	return any;
}

void
commit_run(void)
{
	struct commit_list batch = TAILQ_HEAD_INITIALIZER(batch);
	struct commit_req *r;
	int n = 0, i, err, dir_err[QUEUE_HASH_DIRS];

	TAILQ_CONCAT(&batch, &pending, link);
	TAILQ_FOREACH(r, &batch, link)
		n++;
	if (n == 0)
		return;
	int errs[n];
	if ((err = flush_data(&batch, n)) != 0)
		log_crit("group commit: %s", strerror(err));
	for (i = 0; i < n; i++)
		errs[i] = err;
	sync_dirs(rename_all(&batch, errs, n), dir_err);
	commit_stats.passes++;
	commit_stats.files += (unsigned long long)n;
	log_debug("group commit: %d files, %llu fsyncs so far", n, commit_stats.fsyncs);
	i = 0;
	while ((r = TAILQ_FIRST(&batch)) != NULL) {
		TAILQ_REMOVE(&batch, r, link);
		err = errs[i++];
		if (err == 0 && r->tmp_path != NULL)
			err = dir_err[hexdigit(r->final_path[6])];
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
	char dir[16];

	for (int d = 0; d < QUEUE_HASH_DIRS; d++) {
		snprintf(dir, sizeof(dir), "queue/%X", d);
		if ((dir_fds[d] = openat(spool_fd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
			fatal_sys("open %s", dir);
	}
}
