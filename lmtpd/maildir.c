/*
 * Maildir delivery (https://cr.yp.to/proto/maildir.html, with Dovecot's
 * name fields): write tmp/NAME, fsync it, link it into new/NAME,S=SIZE,
 * drop the tmp name, fsync new/ — only then is it delivered. Runs in the
 * delivery child as the mailbox owner. A missing Maildir is made 0700;
 * tmp/new/cur must be real directories owned by the owner (a symlinked
 * new/ is a configuration error we defer on rather than follow).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "lmtpd.h"

#define NAME_LEN 256

struct maildir {
	int root, tmp, new, cur;
};

static void
maildir_close(struct maildir *md)
{
	int *fds[] = { &md->root, &md->tmp, &md->new, &md->cur };

	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++) {
		if (*fds[i] >= 0)
			close(*fds[i]);
		*fds[i] = -1;
	}
}

static enum dlv_status
maildir_open(struct maildir *md, const struct dlv_target *t, struct dlv_detail *d)
{
	struct stat st;

	md->root = md->tmp = md->new = md->cur = -1;
	if ((md->root = safe_opendir(t->path, 1)) < 0) {
		dlv_detailf(d, "cannot open maildir %s: %s", t->path, strerror(errno));
		return dlv_errno_status(errno);
	}
	if (fstat(md->root, &st) < 0 || st.st_uid != geteuid()) {
		dlv_detailf(d, "maildir %s is not owned by uid %u", t->path, (unsigned)geteuid());
		return DLV_UNSAFE;
	}
	const char *names[] = { "tmp", "new", "cur" };
	int *fds[] = { &md->tmp, &md->new, &md->cur };
	for (int i = 0; i < 3; i++) {
		if ((*fds[i] = safe_subdir(md->root, names[i], 1)) < 0) {
			int e = errno;
			dlv_detailf(d, "maildir %s/%s: %s", t->path, names[i],
			    e == ELOOP ? "is a symlink" : e == EPERM ? "not owned by the recipient" :
			    strerror(e));
			return dlv_errno_status(e);
		}
	}
	return DLV_OK;
}

/* Sum of the message sizes in one directory: ",S=" from the name when
 * present (no stat), else the file's size. */
static long long
dir_usage(int dirfd)
{
	int fd = dup(dirfd);
	DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;
	long long sum = 0;

	if (dir == NULL) {
		if (fd >= 0)
			close(fd);
		return 0;
	}
	rewinddir(dir);
	while ((de = readdir(dir)) != NULL) {
		const char *s = strstr(de->d_name, ",S=");
		struct stat st;
		if (de->d_name[0] == '.')
			continue;
		if (s != NULL)
			sum += strtoll(s + 3, NULL, 10);
		else if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0)
			sum += st.st_size;
	}
	closedir(dir);
	return sum;
}

/* The host part of a unique name: '/' and ':' are escaped as the
 * specification asks. */
static void
host_part(char *out, size_t outsz)
{
	char host[128];
	size_t o = 0;

	if (gethostname(host, sizeof(host)) < 0)
		strcpy(host, "localhost");
	host[sizeof(host) - 1] = '\0';
	for (const char *p = host; *p && o + 5 < outsz; p++) {
		if (*p == '/' || *p == ':')
			o += (size_t)snprintf(out + o, outsz - o, "\\%03o", (unsigned char)*p);
		else
			out[o++] = *p;
	}
	out[o] = '\0';
}

static void
unique_name(char *out, size_t outsz)
{
	static unsigned long counter;
	struct timeval tv;
	char host[128];

	gettimeofday(&tv, NULL);
	host_part(host, sizeof(host));
	snprintf(out, outsz, "%lld.M%06ldP%ldQ%lu.%s", (long long)tv.tv_sec,
	    (long)tv.tv_usec, (long)getpid(), ++counter, host);
}

static int
fsync_retry(int fd)
{
	while (fsync(fd) < 0) {
		if (errno != EINTR)
			return errno;
	}
	return 0;
}

/* Write the message to tmp/name; the file is fsync'ed and closed. */
static int
write_tmp(struct maildir *md, const struct dlv_msg *m, char *name, size_t namesz,
    off_t *size)
{
	int fd = -1, err;

	for (int tries = 0; tries < 10 && fd < 0; tries++) {
		unique_name(name, namesz);
		fd = openat(md->tmp, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		    0600);
		if (fd < 0 && errno != EEXIST)
			return errno;
	}
	if (fd < 0)
		return EEXIST;
	err = msg_write(fd, m, 0, size);
	if (err == 0)
		err = fsync_retry(fd);
	if (close(fd) < 0 && err == 0)
		err = errno;
	if (err != 0)
		unlinkat(md->tmp, name, 0);
	return err;
}

enum dlv_status
maildir_deliver(const struct dlv_msg *m, const struct dlv_target *t, struct dlv_detail *d)
{
	struct maildir md;
	char name[NAME_LEN], final[NAME_LEN + 32];
	off_t size = 0;
	enum dlv_status st;
	int err;

	if ((st = maildir_open(&md, t, d)) != DLV_OK)
		goto out;
	long long need = (long long)m->size + (long long)msg_prefix_len(m);
	if (t->quota > 0 && dir_usage(md.new) + dir_usage(md.cur) + need > t->quota) {
		dlv_detailf(d, "mailbox full (quota %lld bytes)", t->quota);
		st = DLV_QUOTA;
		goto out;
	}
	if ((err = write_tmp(&md, m, name, sizeof(name), &size)) != 0) {
		dlv_detailf(d, "cannot write maildir %s: %s", t->path, strerror(err));
		st = dlv_errno_status(err);
		goto out;
	}
	if (dlv_abandoned != NULL && dlv_abandoned()) {
		unlinkat(md.tmp, name, 0);
		dlv_detailf(d, "abandoned: lmtpd's session process is gone");
		st = DLV_TEMP;
		goto out;
	}
	snprintf(final, sizeof(final), "%s,S=%lld", name, (long long)size);
	err = linkat(md.tmp, name, md.new, final, 0) < 0 ? errno : 0;
	unlinkat(md.tmp, name, 0);
	if (err == 0 && (err = fsync_retry(md.new)) != 0)
		unlinkat(md.new, final, 0);
	if (err != 0) {
		dlv_detailf(d, "cannot move into %s/new: %s", t->path, strerror(err));
		st = dlv_errno_status(err);
		goto out;
	}
	dlv_detailf(d, "delivered to maildir");
	st = DLV_OK;
out:
	maildir_close(&md);
	return st;
}
