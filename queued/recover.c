/*
 * Start-up recovery of the spool, in two steps so that queued serves new
 * mail at once even with a large queue:
 *
 *   scan   before the submission socket opens: incoming/ (left by versions
 *          that wrote there until the commit; never acknowledged) is
 *          emptied, and the names in queue/X/ are listed. Listing 100,000
 *          names takes a few tens of milliseconds; reading the files took
 *          seconds, during which nothing new was delivered;
 *   read   then, from the event loop, the listed files are read and
 *          scheduled in slices of at most RECOVER_SLICE_FILES files or
 *          RECOVER_SLICE_MS, one slice per turn of the loop (a timer of
 *          zero: the loop polls its sockets between two slices), so a new
 *          submission waits for one slice at most.
 *
 * Files written after the scan are new submissions, never in the list. A
 * file whose seal is missing or wrong was cut short by a crash before its
 * commit, so never acknowledged: it is removed with a log line. One that
 * is whole but does not parse is moved to corrupt/ with a log line saying
 * why, never deleted. An empty file, and a finished message found under
 * another id than its own, are emptied files of remove.c's pool, and go
 * back to it. A message that was tried before is retried
 * minimal_backoff_time after its last attempt, so a restart does not send
 * a burst of retries for a large deferred queue. Expiry, delay warnings
 * and bounces are decided when a message is attempted, as before, so a
 * message read late in the recovery is treated exactly as one read early.
 * Until the last slice, the control socket's list shows the messages read
 * so far (and show, hold, delete find only those).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "conf.h"
#include "log.h"
#include "queued.h"
#include "sched_int.h"
#include "xalloc.h"

#define RECOVER_SLICE_FILES	1000
#define RECOVER_SLICE_MS	10

struct recover_count {
	unsigned long ok, corrupt, unfinished;
};

static struct {
	char (*ids)[QID_LEN + 1];	/* listed by the scan, read in order */
	size_t n, cap, next;
	struct recover_count count;
	struct timespec t0;
	struct event *ev;
} rec;

static double
since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (t.tv_sec - t0->tv_sec) + (t.tv_nsec - t0->tv_nsec) / 1e9;
}

static void
clean_incoming(struct recover_count *c)
{
	int fd = openat(spool_fd, "incoming", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *e;

	if (d == NULL)
		fatal_sys("open incoming/");
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		if (unlinkat(fd, e->d_name, 0) == 0)
			c->unfinished++;
		else
			log_warn("cannot remove incoming/%s: %s", e->d_name, strerror(errno));
	}
	closedir(d);
}

/* Files in free/, where versions before the pool was named ahead kept
 * the emptied ones (remove.c), go through the emptying again: a crash
 * can have kept a rename there and lost the truncation before it. After
 * the scan: the remove thread names them in queue/ under new ids, which
 * must not be in the list (a transaction may own one before its name
 * comes up). */
static void
reuse_free(void)
{
	int fd = openat(spool_fd, "free", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *e;
	char path[8 + 256];

	if (d == NULL)
		fatal_sys("open free/");
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		if (qid_valid(e->d_name)) {
			snprintf(path, sizeof(path), "free/%s", e->d_name);
			remove_later(path);
		} else if (unlinkat(fd, e->d_name, 0) < 0)
			log_warn("cannot remove free/%s: %s", e->d_name, strerror(errno));
	}
	closedir(d);
}

/* corrupt/NAME, or NAME.1, NAME.2 ... when that is taken: a file set
 * aside is never replaced by the next one of the same name. */
static void
move_corrupt(const char *path, const char *name, const char *why)
{
	char dst[64 + 256];
	int i, rc = -1;

	for (i = 0; i < 100; i++) {
		snprintf(dst, sizeof(dst), i ? "corrupt/%s.%d" : "corrupt/%s", name, i);
		if ((rc = renameat2(spool_fd, path, spool_fd, dst, RENAME_NOREPLACE)) == 0 ||
		    errno != EEXIST)
			break;
	}
	if (rc < 0)
		log_crit("%s: corrupt queue file (%s) and cannot move it to corrupt/: %s",
		    name, why, strerror(errno));
	else
		log_crit("%s: corrupt queue file moved to corrupt/%s%s: %s", name,
		    i ? " as " : "", i ? dst + 8 : "", why);
}

/* A file its submission never finished (a crash before its commit). */
static void
remove_incomplete(const char *path, const char *name, const char *why)
{
	if (unlinkat(spool_fd, path, 0) < 0)
		log_crit("%s: %s, and cannot remove it: %s", name, why, strerror(errno));
	else
		log_qwarn(name, "%s: removed", why);
}

static time_t
retry_time(struct msg *m, time_t now)
{
	time_t last = 0;

	for (int i = 0; i < m->nleaf; i++)
		if (m->leaves[i].last_try > last)
			last = m->leaves[i].last_try;
	if (last == 0)
		return now;
	last += conf_num(C_minimal_backoff_time);
	return last > now ? last : now;
}

/* ---- scan ------------------------------------------------------------- */

static void
list_id(const char *id)
{
	if (rec.n == rec.cap) {
		rec.cap = rec.cap ? rec.cap * 2 : 1024;
		rec.ids = xrealloc(rec.ids, rec.cap * sizeof(*rec.ids));
	}
	memcpy(rec.ids[rec.n++], id, QID_LEN + 1);
}

/*
 * A queue file in another hash directory than its id's (moved by hand,
 * a restored backup) was looked for in its own and never found: it
 * stayed undelivered, and a second file of that id there was read
 * twice. It goes to its place, unless a file already has that id.
 */
static void
misplaced(const char *path, const char *id, int x)
{
	char dst[64 + 256];
	int h = id[QID_LEN - 1] <= '9' ? id[QID_LEN - 1] - '0' : id[QID_LEN - 1] - 'A' + 10;

	snprintf(dst, sizeof(dst), "queue/%c/%s", qid_hash(id), id);
	if (renameat2(spool_fd, path, spool_fd, dst, RENAME_NOREPLACE) < 0) {
		move_corrupt(path, id, errno == EEXIST ? "in another hash directory, "
		    "and its own holds a file of that id" : "in another hash directory");
		rec.count.corrupt++;
		return;
	}
	log_qwarn(id, "queue file found in queue/%X/, moved to %s", x, dst);
	if (h < x)
		list_id(id);	/* that directory was scanned already */
}

static void
scan_dir(int x)
{
	char dir[16], path[64 + 256];
	int fd;
	DIR *d;
	struct dirent *e;

	snprintf(dir, sizeof(dir), "queue/%X", x);
	if ((fd = openat(spool_fd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
	    (d = fdopendir(fd)) == NULL)
		fatal_sys("open %s", dir);
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (!qid_valid(e->d_name)) {
			move_corrupt(path, e->d_name, "not a queue id");
			rec.count.corrupt++;
		} else if (qid_hash(e->d_name) != dir[6])
			misplaced(path, e->d_name, x);
		else
			list_id(e->d_name);
	}
	closedir(d);
}

/* ---- read ------------------------------------------------------------- */

/* An empty queue file holds nothing: an emptied file named ahead for a
 * message (remove.c), or one a crash caught before its first write. */
static int
is_empty(const char *path)
{
	struct stat st;

	return fstatat(spool_fd, path, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    S_ISREG(st.st_mode) && st.st_size == 0;
}

static void
recover_one(const char *id, time_t now)
{
	char path[64], err[256];
	struct msg *m;
	int rc;

	snprintf(path, sizeof(path), "queue/%c/%s", qid_hash(id), id);
	if (is_empty(path)) {	/* named ahead, or never begun: the pool's */
		remove_later(path);
		return;
	}
	rc = qf_read(spool_fd, path, &m, err, sizeof(err));
	if (rc == -2) {
		log_crit("%s: cannot read %s (%s): left in place, read again at "
		    "the next start", id, path, err);
		return;
	}
	if (rc == QF_INCOMPLETE) {
		remove_incomplete(path, id, err);
		rec.count.unfinished++;
		return;
	}
	if (rc == 0 && strcmp(m->id, id) == 0) {
		m->next_try = retry_time(m, now);
		sched_add(m);
		rec.count.ok++;
		return;
	}
	if (rc == 0 && msg_finished(m)) {
		/* A reused file whose emptying a crash lost, after its rename
		 * to a new id (remove.c): a finished message, nothing to do. */
		log_qinfo(id, "finished message %s found in an emptied file: emptied again",
		    m->id);
		msg_free(m);
		remove_later(path);
		return;
	}
	if (rc == 0) {
		snprintf(err, sizeof(err), "id %s in the file", m->id);
		msg_free(m);
	}
	move_corrupt(path, id, err);
	rec.count.corrupt++;
}

static void
recover_done(void)
{
	if (rec.next < rec.n)	/* stopping: the rest is read at the next start */
		log_info("spool recovery stopped: %zu of %zu queue files read",
		    rec.next, rec.n);
	else
		log_info("spool recovered: %lu messages, %lu corrupt moved aside, "
		    "%lu unfinished removed, %.3fs", rec.count.ok, rec.count.corrupt,
		    rec.count.unfinished, since(&rec.t0));
	free(rec.ids);
	rec.ids = NULL;
	rec.n = rec.cap = rec.next = 0;
	if (rec.ev != NULL)
		event_free(rec.ev);
	rec.ev = NULL;
}

/* One slice; the next one after the loop has polled its sockets. */
static void
recover_slice(evutil_socket_t fd, short what, void *arg)
{
	struct timeval zero = { 0, 0 };
	struct timespec t0;
	time_t now = time(NULL);
	int done = 0;

	(void)fd, (void)what, (void)arg;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (rec.next < rec.n && done++ < RECOVER_SLICE_FILES &&
	    since(&t0) * 1000 < RECOVER_SLICE_MS)
		recover_one(rec.ids[rec.next++], now);
	if (rec.next < rec.n && !queued_stopping)
		evtimer_add(rec.ev, &zero);
	else
		recover_done();
}

void
recover_spool(struct event_base *base)
{
	struct timeval zero = { 0, 0 };

	clock_gettime(CLOCK_MONOTONIC, &rec.t0);
	clean_incoming(&rec.count);
	for (int x = 0; x < QUEUE_HASH_DIRS; x++)
		scan_dir(x);
	reuse_free();
	log_info("spool scanned: %zu queue files to read, %.3fs", rec.n, since(&rec.t0));
	if (rec.n == 0) {
		recover_done();
		return;
	}
	rec.ev = evtimer_new(base, recover_slice, NULL);
	evtimer_add(rec.ev, &zero);
}

int
recover_pending(void)
{
	return rec.ev != NULL;
}
