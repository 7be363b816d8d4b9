/*
 * The removal of finished queue files, and of files whose submission was
 * abandoned (qf_abort), on a thread of its own.
 *
 * Why not in the loop: unlinking a file frees its blocks, and on a file
 * system mounted with "discard" (ext4 without a journal, as on this
 * project's benchmark VM) the discard is issued and waited for inside
 * unlink(2): 0.3 to 0.6 ms per 5 KB queue file, measured. In the loop
 * that was a pause of every session for every message delivered: a
 * 250 waited behind the removal of the message before it.
 *
 * Nothing depends on the removal being done at once. A finished message
 * is forgotten by the scheduler, and an abandoned file was never known to
 * it; either's descriptor is closed before its name is handed over, so
 * the blocks are freed here, not by a later close in the loop. Names are
 * never reused. If queued dies before the thread got to a file, a
 * finished file is still whole with its final states, and the next start
 * removes it without delivering it (scheduler.c's sched_add); an
 * abandoned one has no seal and is removed as unfinished. At a clean
 * stop remove_shutdown() lets the thread finish the list first. The list
 * is bounded: past REMOVE_MAX names waiting (a disk far slower than the
 * deliveries), the loop unlinks itself.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"
#include "log.h"
#include "queued.h"
#include "xalloc.h"

#define REMOVE_MAX	10000

struct rm_entry {
	struct rm_entry *next;
	char path[];
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static struct rm_entry *head, **tail = &head;	/* under mu */
static int count, quit;				/* under mu */
static pthread_t remover;
static int have_remover;

static int failed, failed_errno;			/* under mu */
static char failed_path[64];				/* under mu: the last */

/* No log line from the thread (log.c is the loop's): a failure is
 * counted, and the loop's next remove_later() reports it. The file is
 * left to the next start's recovery. */
static void
unlink_one(const char *path)
{
	if (unlinkat(spool_fd, path, 0) < 0 && errno != ENOENT) {
		pthread_mutex_lock(&mu);
		failed++;
		failed_errno = errno;
		snprintf(failed_path, sizeof(failed_path), "%s", path);
		pthread_mutex_unlock(&mu);
	}
}

static void *
remove_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&mu);
	for (;;) {
		while (head == NULL && !quit)
			pthread_cond_wait(&cv, &mu);
		if (head == NULL)
			break;	/* quit, and the list is done */
		struct rm_entry *e = head;

		if ((head = e->next) == NULL)
			tail = &head;
		count--;
		pthread_mutex_unlock(&mu);
		unlink_one(e->path);
		free(e);
		pthread_mutex_lock(&mu);
	}
	pthread_mutex_unlock(&mu);
	return NULL;
}

void
remove_later(const char *path)
{
	size_t n = strlen(path) + 1;
	struct rm_entry *e;

	if (!have_remover) {
		unlink_one(path);
		return;
	}
	pthread_mutex_lock(&mu);
	if (failed > 0) {
		log_warn("cannot remove %d queue file(s), the last %s: %s; left for "
		    "the next start", failed, failed_path, strerror(failed_errno));
		failed = 0;
	}
	if (count >= REMOVE_MAX) {
		pthread_mutex_unlock(&mu);
		unlink_one(path);
		return;
	}
	e = xmalloc(sizeof(*e) + n);
	memcpy(e->path, path, n);
	e->next = NULL;
	*tail = e;
	tail = &e->next;
	count++;
	pthread_cond_signal(&cv);
	pthread_mutex_unlock(&mu);
}

void
remove_init(void)
{
	daemon_thread_start(&remover, remove_main, NULL);	/* takes no signal */
	have_remover = 1;
}

/* At exit: the names still listed are removed, then the thread ends. */
void
remove_shutdown(void)
{
	if (!have_remover)
		return;
	pthread_mutex_lock(&mu);
	quit = 1;
	pthread_cond_signal(&cv);
	pthread_mutex_unlock(&mu);
	pthread_join(remover, NULL);
	have_remover = 0;
}
