/*
 * Start-up recovery of the spool. incoming/ holds only files that were
 * never acknowledged (a file leaves it by the group commit's rename, and
 * the 250 comes after): they are removed. Every file in queue/X/ is read
 * back and scheduled; one that does not parse is moved to corrupt/ with a
 * log line saying why, never deleted. A message that was tried before is
 * retried minimal_backoff_time after its last attempt, so a restart does
 * not send a burst of retries for a large deferred queue.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "log.h"
#include "queued.h"

struct recover_count {
	unsigned long ok, corrupt, unfinished;
};

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

static void
move_corrupt(const char *path, const char *name, const char *why)
{
	char dst[64 + 256];

	snprintf(dst, sizeof(dst), "corrupt/%s", name);
	if (renameat(spool_fd, path, spool_fd, dst) < 0)
		log_crit("%s: corrupt queue file (%s) and cannot move it to corrupt/: %s",
		    name, why, strerror(errno));
	else
		log_crit("%s: corrupt queue file moved to corrupt/: %s", name, why);
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

static void
recover_dir(int x, struct recover_count *c, time_t now)
{
	char dir[16], path[64 + 256], err[256];
	int fd, rc;
	DIR *d;
	struct dirent *e;
	struct msg *m;

	snprintf(dir, sizeof(dir), "queue/%X", x);
	if ((fd = openat(spool_fd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
	    (d = fdopendir(fd)) == NULL)
		fatal_sys("open %s", dir);
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (!qid_valid(e->d_name))
			snprintf(err, sizeof(err), "not a queue id");
		else if ((rc = qf_read(spool_fd, path, &m, err, sizeof(err))) == -2) {
			log_crit("%s: cannot read %s (%s): left in place, read again at "
			    "the next start", e->d_name, path, err);
			continue;
		} else if (rc == QF_INCOMPLETE) {
			remove_incomplete(path, e->d_name, err);
			c->unfinished++;
			continue;
		} else if (rc == 0) {
			if (strcmp(m->id, e->d_name) == 0) {
				m->next_try = retry_time(m, now);
				sched_add(m);
				c->ok++;
				continue;
			}
			snprintf(err, sizeof(err), "id %s in the file", m->id);
			msg_free(m);
		}
		move_corrupt(path, e->d_name, err);
		c->corrupt++;
	}
	closedir(d);
}

void
recover_spool(void)
{
	struct recover_count c = { 0 };
	struct timespec t0, t1;
	time_t now = time(NULL);

	clock_gettime(CLOCK_MONOTONIC, &t0);
	clean_incoming(&c);
	for (int x = 0; x < QUEUE_HASH_DIRS; x++)
		recover_dir(x, &c, now);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	log_info("spool recovered: %lu messages, %lu corrupt moved aside, "
	    "%lu unfinished removed, %.3fs", c.ok, c.corrupt, c.unfinished,
	    (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
}
