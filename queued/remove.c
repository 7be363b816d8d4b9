/*
 * Finished queue files, and files whose submission was abandoned
 * (qf_abort), are emptied and kept for reuse on a thread of its own: the
 * next message is written into one (spool_reuse) rather than into a new
 * file.
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
 * The thread truncates the file to nothing, then renames it to free/ID.
 * It is handed out only after a syncfs() (the group commit's) that
 * started after the truncation has completed: then the emptiness is on
 * the disk too, so no crash can show a new message's pages followed by
 * the old file's tail (its state log would be read as the new one's). A
 * file is renamed into its new name queue/X/ID and written from its first
 * byte, so recovery treats it exactly as a new file: until the group
 * commit that precedes the 250 it can be empty or torn, and is removed
 * as unfinished. free/ holds at most REUSE_MAX files; past that they are
 * unlinked. Its files at start go through the same emptying.
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon.h"
#include "log.h"
#include "queued.h"
#include "xalloc.h"

#define REMOVE_MAX	10000
#define REUSE_MAX	1000	/* emptied files kept in free/ */

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
static struct rm_list emptied = { NULL, &emptied.head };	/* under mu: free/ */
static int count, quit;				/* under mu */
static int nfree;				/* under mu: in free/ */
static struct rm_list reusable = { NULL, &reusable.head };	/* the loop's */
static pthread_t remover;
static int have_remover;

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

/* Empty the file at path and move it to free/ (it may be there already);
 * 0, or -1 when it is not kept (then it is still at path). */
static int
empty_one(const char *path, char *dst, size_t cap)
{
	const char *name = strrchr(path, '/');
	struct stat st;
	int fd, rc;

	name = name != NULL ? name + 1 : path;
	if (strlen(name) != QID_LEN || snprintf(dst, cap, "free/%s", name) >= (int)cap)
		return -1;
	if ((fd = openat(spool_fd, path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		return -1;
	/* Only a file of ours with no other name goes on to hold mail: one
	 * an admin put in the spool as another user, or linked elsewhere,
	 * is unlinked. */
	rc = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() &&
	    st.st_nlink == 1 ? ftruncate(fd, 0) : -1;
	close(fd);
	if (rc < 0 || (strcmp(path, dst) != 0 &&
	    renameat2(spool_fd, path, spool_fd, dst, RENAME_NOREPLACE) < 0))
		return -1;
	return 0;
}

/* Keep the file for reuse while free/ has room, else unlink it. */
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
		memcpy(e->path, dst, strlen(dst) + 1);	/* never longer than path */
		pthread_mutex_lock(&mu);
		list_put(&emptied, e);
		pthread_mutex_unlock(&mu);
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
	e = xmalloc(sizeof(*e) + (n < 32 ? 32 : n));	/* room for free/ID */
	memcpy(e->path, path, n);
	list_put(&todo, e);
	count++;
	pthread_cond_signal(&cv);
	pthread_mutex_unlock(&mu);
}

int
spool_reuse(char *path, size_t cap)
{
	struct rm_entry *e;

	/* Files emptied since the last call: usable once a syncfs that
	 * starts after now has completed. */
	pthread_mutex_lock(&mu);
	while ((e = list_get(&emptied)) != NULL) {
		e->ready_at = commit_stats.syncfs + 1;
		list_put(&reusable, e);
	}
	pthread_mutex_unlock(&mu);
	if ((e = reusable.head) == NULL || e->ready_at > commit_stats.syncfs_done)
		return 0;
	list_get(&reusable);
	pthread_mutex_lock(&mu);
	nfree--;
	pthread_mutex_unlock(&mu);
	snprintf(path, cap, "%s", e->path);
	free(e);
	return 1;
}

void
remove_init(void)
{
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
	for (struct rm_list *l = &emptied; l != NULL; l = l == &emptied ? &reusable : NULL)
		for (struct rm_entry *e; (e = list_get(l)) != NULL; )
			free(e);	/* the files stay in free/ for the next start */
}
