/*
 * Finished queue files, and files whose submission was abandoned
 * (qf_abort), are emptied and kept for reuse on a thread of its own: a
 * later message is written into one (spool_named) rather than into a
 * new file.
 *
 * Why not in the loop: freeing a file's blocks on a file system mounted
 * with "discard" (ext4 without a journal, as on this project's benchmark
 * VM) issues the discard and waits for it inside unlink(2) or
 * ftruncate(2): 0.3 to 0.6 ms per 5 KB queue file, measured. In the loop
 * that was a pause of every session for every message delivered.
 *
 * Why reuse rather than unlink: on ext4 without a journal a freed inode
 * is not handed out again for 60 s (360 s while its inode table block is
 * dirty), and every file creation in its block group first steps over
 * each such inode, a buffer lookup apiece (the kernel's find_inode_bit
 * and recently_deleted). At 1,000 messages a second the spool's groups
 * filled with them: perf showed queued's loop spending up to a third of
 * its time there, growing from one run to the next. A reused file
 * allocates and frees no inode.
 *
 * The thread truncates the file to nothing, then renames it under a new
 * queue id, queue/X/ID: the file is named ahead of the message that
 * will use it. Once a syncfs() that started after the rename has
 * completed (the group commit's, or one made for the pool alone when
 * no message made one for a while: commit.c), the new name and the
 * emptiness are both durable. Then the file is given out at MAIL
 * (spool_named), its id as the transaction's. The message written into
 * it adds no directory entry, so a lone commit of it is one fsync of
 * the file, which writes its inode (size and blocks) with its data:
 * not a syncfs, which also writes back every other change on the file
 * system and was most of a lone message's time to its 250. The file is
 * written from its first byte, so recovery treats it as a new file:
 * until the commit that precedes the 250 it can be empty or torn, and
 * is removed as unfinished. A message that finds no file ready at MAIL
 * gets a new file (and a syncfs), which joins the pool when it is done:
 * so the pool grows to what the rate and the time between two syncfs
 * need, up to REUSE_MAX; past that files are unlinked.
 *
 * An id carries the time its file was named, not the time of arrival.
 * A transaction that ends without DATA sends its file back here, to be
 * named again: an id is never given to two transactions. At start, an
 * empty file in queue/ (named ahead, or a message a crash caught before
 * its first write) goes back to the pool quietly, as do the files in
 * free/ (where the pool was kept before files were named ahead). A
 * crash can keep a rename and lose the truncation before it: recovery
 * then finds a finished message under another id than its own, and
 * empties it (recover.c).
 *
 * Nothing depends on this being done at once. A finished message is
 * forgotten by the scheduler, and an abandoned file was never known to
 * it; either's descriptor is closed before its name is handed over. If
 * queued dies before the thread got to a file, a finished file is still
 * whole with its final states, and the next start hands it back here
 * without delivering it (scheduler.c's sched_add); an abandoned one has
 * no seal and is removed as unfinished. At a clean stop
 * remove_shutdown() lets the thread finish the list first. The list is
 * bounded: past REMOVE_MAX names waiting (a disk far slower than the
 * deliveries), the loop unlinks itself.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon.h"
#include "log.h"
#include "queued.h"
#include "xalloc.h"

#define REMOVE_MAX	10000
#define REUSE_MAX	1000	/* emptied files kept, named ahead */
#define POOL_LOW	32	/* fewer ready: the pool asks for a syncfs */

struct rm_entry {
	struct rm_entry *next;
	unsigned long long ready_at;	/* commit_stats.syncfs_done needed */
	char path[];
};

struct rm_list {
	struct rm_entry *head, **tail;
};

static void
list_put(struct rm_list *l, struct rm_entry *e)
{
	e->next = NULL;
	*l->tail = e;
	l->tail = &e->next;
}

static struct rm_entry *
list_get(struct rm_list *l)
{
	struct rm_entry *e = l->head;

	if (e != NULL && (l->head = e->next) == NULL)
		l->tail = &l->head;
	return e;
}

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static struct rm_list todo = { NULL, &todo.head };	/* under mu */
static struct rm_list emptied = { NULL, &emptied.head };	/* under mu */
static int count, quit;				/* under mu */
static int nfree;				/* under mu: emptied and named */
static struct rm_list named = { NULL, &named.head };	/* the loop's */
static unsigned long long last_ready_at;	/* the loop's: the last listed's */
static pthread_t remover;
static int have_remover;

static int wake_fd = -1;	/* eventfd: the thread listed emptied files */

static int failed, failed_errno;			/* under mu */
static char failed_path[64];				/* under mu: the last */

/* No log line from the thread (log.c is the loop's): a failure is
 * counted, and the loop's next remove_later() reports it. The file is
 * left to the next start's recovery. */
static void
failed_one(const char *path, int err)
{
	pthread_mutex_lock(&mu);
	failed++;
	failed_errno = err;
	snprintf(failed_path, sizeof(failed_path), "%s", path);
	pthread_mutex_unlock(&mu);
}

static void
unlink_one(const char *path)
{
	if (unlinkat(spool_fd, path, 0) < 0 && errno != ENOENT)
		failed_one(path, errno);
}

/* Empty the file at path and name it queue/X/ID under a new id (into
 * dst); 0, or -1 when it is not kept (then it is still at path). */
static int
empty_one(const char *path, char *dst, size_t cap)
{
	const char *name = strrchr(path, '/');
	char id[QID_LEN + 1];
	struct stat st;
	int fd, rc;

	name = name != NULL ? name + 1 : path;
	if (strlen(name) != QID_LEN)
		return -1;
	if ((fd = openat(spool_fd, path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		return -1;
	/* Only a file of ours with no other name goes on to hold mail: one
	 * an admin put in the spool as another user, or linked elsewhere,
	 * is unlinked. */
	rc = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() &&
	    st.st_nlink == 1 ? ftruncate(fd, 0) : -1;
	close(fd);
	qid_new(id);
	snprintf(dst, cap, "queue/%c/%s", qid_hash(id), id);
	if (rc < 0 || renameat2(spool_fd, path, spool_fd, dst, RENAME_NOREPLACE) < 0)
		return -1;
	return 0;
}

/* Keep the file for reuse while the pool has room, else unlink it. */
static void
retire_one(struct rm_entry *e)
{
	char dst[32];
	int room;

	pthread_mutex_lock(&mu);
	if ((room = nfree < REUSE_MAX))
		nfree++;
	pthread_mutex_unlock(&mu);
	if (room && empty_one(e->path, dst, sizeof(dst)) == 0) {
		uint64_t one = 1;

		memcpy(e->path, dst, strlen(dst) + 1);	/* room for 32 */
		pthread_mutex_lock(&mu);
		int first = emptied.head == NULL;

		list_put(&emptied, e);
		pthread_mutex_unlock(&mu);
		/* a full counter (EAGAIN) is a wake-up pending anyway */
		while (first && write(wake_fd, &one, sizeof(one)) < 0 && errno == EINTR)
			;
		return;
	}
	if (room) {
		pthread_mutex_lock(&mu);
		nfree--;
		pthread_mutex_unlock(&mu);
	}
	unlink_one(e->path);
	free(e);
}

static void *
remove_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&mu);
	for (;;) {
		while (todo.head == NULL && !quit)
			pthread_cond_wait(&cv, &mu);
		if (todo.head == NULL)
			break;	/* quit, and the list is done */
		struct rm_entry *e = list_get(&todo);

		count--;
		pthread_mutex_unlock(&mu);
		retire_one(e);
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
	e = xmalloc(sizeof(*e) + (n < 32 ? 32 : n));	/* room for queue/X/ID */
	memcpy(e->path, path, n);
	list_put(&todo, e);
	count++;
	pthread_cond_signal(&cv);
	pthread_mutex_unlock(&mu);
}

/* Files emptied since the last call: their names and emptiness are
 * durable once a syncfs that starts after now has completed. */
static void
collect(void)
{
	struct rm_entry *e;

	pthread_mutex_lock(&mu);
	while ((e = list_get(&emptied)) != NULL) {
		e->ready_at = last_ready_at = commit_stats.syncfs + 1;
		list_put(&named, e);
	}
	pthread_mutex_unlock(&mu);
}

int
spool_named(char id[QID_LEN + 1])
{
	struct rm_entry *e;

	collect();
	if (named.head == NULL || named.head->ready_at > commit_stats.syncfs_done)
		return 0;
	e = list_get(&named);	/* the oldest */
	pthread_mutex_lock(&mu);
	nfree--;
	pthread_mutex_unlock(&mu);
	memcpy(id, e->path + 8, QID_LEN + 1);	/* queue/X/ID */
	free(e);
	return 1;
}

int
remove_wake_fd(void)
{
	return wake_fd;
}

int
spool_gated(void)
{
	const struct rm_entry *e;
	int ready = 0;

	collect();
	if (last_ready_at <= commit_stats.syncfs_done)
		return 0;
	for (e = named.head; e != NULL && ready < POOL_LOW &&
	    e->ready_at <= commit_stats.syncfs_done; e = e->next)
		ready++;
	return ready < POOL_LOW;
}

void
spool_named_release(const char *id)
{
	char path[32];

	snprintf(path, sizeof(path), "queue/%c/%s", qid_hash(id), id);
	remove_later(path);	/* empty already: named again */
}

void
remove_init(void)
{
	quit = 0;		/* after a remove_shutdown() (the unit test) */
	if (wake_fd < 0 && (wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0)
		fatal_sys("eventfd");
	daemon_thread_start(&remover, remove_main, NULL);	/* takes no signal */
	have_remover = 1;
}

/* At exit: the names still listed are emptied (or removed), then the
 * thread ends. */
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
	struct rm_list *lists[] = { &emptied, &named };

	for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++)
		for (struct rm_entry *e; (e = list_get(lists[i])) != NULL; )
			free(e);	/* the files stay for the next start */
}
