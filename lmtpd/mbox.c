/*
 * mbox delivery: append one message, mboxrd-quoted, to a Unix mailbox
 * file under an fcntl lock and a dotlock (the two conventions MUAs use),
 * then fsync; any failure truncates the file back to its old size, so no
 * half message remains. Runs in the delivery child as the mailbox owner.
 * Appending never reads the file (only its last byte), so a 1 GB mbox
 * costs what an empty one does.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "lmtpd.h"

static volatile sig_atomic_t lock_alarm;

static void
on_alarm(int sig)
{
	(void)sig;
	lock_alarm = 1;
}

static double
now_sec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* F_SETLKW bounded by a timer: the kernel queues us behind other
 * writers instead of letting us poll. */
static int
fcntl_lock(int fd, double wait)
{
	struct sigaction sa = { .sa_handler = on_alarm };	/* no SA_RESTART */
	struct itimerval it = { { 0, 0 }, { (time_t)wait, (suseconds_t)((wait - (time_t)wait) * 1e6) } };
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	int rc;

	if (wait <= 0)
		return fcntl(fd, F_SETLK, &fl) < 0 ? EAGAIN : 0;
	if (it.it_value.tv_sec == 0 && it.it_value.tv_usec == 0)
		it.it_value.tv_usec = 1;
	lock_alarm = 0;
	sigaction(SIGALRM, &sa, NULL);
	setitimer(ITIMER_REAL, &it, NULL);
	while ((rc = fcntl(fd, F_SETLKW, &fl)) < 0 && errno == EINTR && !lock_alarm)
		;
	int e = errno;
	memset(&it, 0, sizeof(it));
	setitimer(ITIMER_REAL, &it, NULL);
	return rc == 0 ? 0 : (e == EINTR ? EAGAIN : e);
}

/* Take NAME.lock in dirfd by exclusive create, removing a lock older
 * than stale_lock_time. 0: taken; 1: no right to make one (spool
 * directories without write access: fcntl alone protects us); EAGAIN
 * when the wait ran out. */
static int
dotlock(int dirfd, const char *lock, double deadline)
{
	useconds_t pause = 10000;

	for (;;) {
		int fd = openat(dirfd, lock, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		    0600);
		if (fd >= 0) {
			char pid[32];
			int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
			if (write(fd, pid, (size_t)n) < 0) { /* content is a courtesy */ }
			close(fd);
			return 0;
		}
		if (errno == EACCES || errno == EROFS || errno == EPERM)
			return 1;
		if (errno != EEXIST)
			return errno;
		struct stat st;
		if (fstatat(dirfd, lock, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    time(NULL) - st.st_mtime > conf_num(C_stale_lock_time)) {
			/* one we cannot remove (a spool directory we may not
			 * write, a directory in its place) stays: locked, as
			 * Postfix says, not a loop until the delivery timeout */
			if (unlinkat(dirfd, lock, 0) < 0 && errno != ENOENT)
				return EAGAIN;
			continue;
		}
		if (now_sec() >= deadline)
			return EAGAIN;
		usleep(pause);
		if (pause < 200000)
			pause *= 2;
	}
}

static int
write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t r = write(fd, p, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? errno : EIO;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

static int
last_byte_is_nl(int fd, off_t size)
{
	char c = '\n';

	if (size > 0 && pread(fd, &c, 1, size - 1) != 1)
		return 0;
	return c == '\n';
}

/* The append itself, file locked and at `size` bytes. */
static int
append(int fd, off_t size, const struct dlv_msg *m)
{
	char from[DLV_ADDR_MAX + 64];
	time_t now = time(NULL);
	struct tm tm;
	char date[64];
	off_t written;
	int err;

	localtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a %b %e %H:%M:%S %Y", &tm);
	/* asctime's layout: "Thu Nov  4 18:22:48 1986" */
	int n = snprintf(from, sizeof(from), "%sFrom %s %s\n",
	    last_byte_is_nl(fd, size) ? "" : "\n",
	    m->sender[0] ? m->sender : "MAILER-DAEMON", date);
	if ((err = write_all(fd, from, (size_t)n)) != 0)
		return err;
	if ((err = msg_write(fd, m, 1, &written)) != 0)
		return err;
	int ends_nl = m->size > 0 ? last_byte_is_nl(m->fd, m->size) : 1;
	if ((err = write_all(fd, "\n\n" + ends_nl, ends_nl ? 1 : 2)) != 0)
		return err;
	while (fsync(fd) < 0) {
		if (errno != EINTR)
			return errno;
	}
	return 0;
}

static enum dlv_status
open_mbox(const struct dlv_target *t, int *dirfd, int *fd, char *base, size_t basesz,
    struct dlv_detail *d)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(t->path, '/');
	struct stat st;

	if (slash == NULL || slash[1] == '\0' || (size_t)(slash - t->path) >= sizeof(dir) ||
	    strlen(slash + 1) + 6 > basesz) {
		dlv_detailf(d, "bad mailbox path %s", t->path);
		return DLV_TEMP;
	}
	memcpy(dir, t->path, (size_t)(slash - t->path));
	dir[slash - t->path] = '\0';
	snprintf(base, basesz, "%s", slash + 1);
	if ((*dirfd = safe_opendir(dir[0] ? dir : "/", 1)) < 0 ||
	    (*fd = openat(*dirfd, base, O_RDWR | O_APPEND | O_CREAT | O_NOFOLLOW |
	    O_NONBLOCK | O_CLOEXEC, 0600)) < 0) {
		dlv_detailf(d, "cannot open mailbox %s: %s", t->path, strerror(errno));
		return dlv_errno_status(errno);
	}
	if (fstat(*fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1 ||
	    st.st_uid != geteuid()) {
		dlv_detailf(d, "mailbox %s is unsafe (not a regular file with one link owned by uid %u)",
		    t->path, (unsigned)geteuid());
		return DLV_UNSAFE;
	}
	fcntl(*fd, F_SETFL, O_APPEND);
	return DLV_OK;
}

/*
 * As root, before the switch to the owner: make a missing mbox file so
 * that users of a spool directory they cannot write (/var/mail, 2775
 * root:mail) still get mail, as Postfix's local does. O_EXCL|O_NOFOLLOW
 * on a descriptor of the walked directory: nothing existing is touched.
 */
void
mbox_precreate(const char *path, uid_t uid, gid_t gid)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	int dirfd, fd;

	if (slash == NULL || slash[1] == '\0' || (size_t)(slash - path) >= sizeof(dir))
		return;
	memcpy(dir, path, (size_t)(slash - path));
	dir[slash - path] = '\0';
	if ((dirfd = safe_opendir(dir[0] ? dir : "/", 0)) < 0)
		return;
	fd = openat(dirfd, slash + 1, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd >= 0) {
		if (fchown(fd, uid, gid) < 0)
			unlinkat(dirfd, slash + 1, 0);
		close(fd);
	}
	close(dirfd);
}

enum dlv_status
mbox_deliver(const struct dlv_msg *m, const struct dlv_target *t, struct dlv_detail *d)
{
	int dirfd = -1, fd = -1, dot = -1, err;
	char base[NAME_MAX + 1], lock[NAME_MAX + 8];
	enum dlv_status st;
	struct stat sb;

	if ((st = open_mbox(t, &dirfd, &fd, base, sizeof(base), d)) != DLV_OK)
		goto out;
	snprintf(lock, sizeof(lock), "%s.lock", base);
	double wait = (double)conf_num(C_mailbox_lock_timeout);
	double deadline = now_sec() + wait;
	if (fcntl_lock(fd, wait) != 0 || (dot = dotlock(dirfd, lock, deadline)) > 1) {
		dlv_detailf(d, "mailbox %s is locked", t->path);
		st = DLV_LOCKED;
		goto out;
	}
	if (fstat(fd, &sb) < 0) {
		st = DLV_TEMP;
		goto out;
	}
	long long need = (long long)m->size + (long long)msg_prefix_len(m) + DLV_ADDR_MAX + 64;
	if (t->quota > 0 && (long long)sb.st_size + need > t->quota) {
		dlv_detailf(d, "mailbox full (quota %lld bytes)", t->quota);
		st = DLV_QUOTA;
		goto out;
	}
	if ((err = append(fd, sb.st_size, m)) != 0 ||
	    (dlv_abandoned != NULL && dlv_abandoned() && (err = ECANCELED))) {
		/* leave no half message (nor an abandoned one) behind */
		if (ftruncate(fd, sb.st_size) == 0)
			fsync(fd);
		dlv_detailf(d, "cannot write mailbox %s: %s", t->path, strerror(err));
		st = dlv_errno_status(err);
		goto out;
	}
	dlv_detailf(d, "delivered to mailbox");
	st = DLV_OK;
out:
	if (dot == 0)
		unlinkat(dirfd, lock, 0);
	if (fd >= 0)
		close(fd);
	if (dirfd >= 0)
		close(dirfd);
	return st;
}
