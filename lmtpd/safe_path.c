/*
 * Walking to a mailbox without trusting the file system: each component
 * is opened with openat(O_NOFOLLOW) relative to the one before, so a
 * symlink planted by a user anywhere on the way cannot redirect a
 * delivery. Runs in the delivery child, already as the mailbox owner.
 * Only root-owned symlinks (which no mail user can plant) are followed,
 * so that /home -> /data/home style system layouts keep working.
 *
 * The walk costs two system calls per component (an open and a close):
 * 13 for a Maildir five levels down, on every delivery. So a path is
 * first opened whole by openat2(RESOLVE_NO_SYMLINKS), which the kernel
 * resolves refusing every symlink on the way: when that succeeds no
 * symlink was involved and the walk could only have reached the same
 * directory. Any failure (a symlink, a missing directory, a kernel
 * before 5.6) leaves the answer to the walk.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "lmtpd.h"

#define WALK_MAX_LINKS 8

/* Follow the root-owned symlink `name` in dirfd: rewrite `work` as the
 * link's target followed by `rest`; *fdp restarts at / for an absolute
 * target. -1 with errno for an untrusted or bad link. */
static int
follow_link(int *fdp, const char *name, const char *rest, char *work, size_t worksz)
{
	struct stat st;
	char target[PATH_MAX];
	ssize_t n;

	if (fstatat(*fdp, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -1;
	if (!S_ISLNK(st.st_mode)) {
		errno = ENOTDIR;
		return -1;
	}
	if (st.st_uid != 0) {
		errno = ELOOP;
		return -1;
	}
	n = readlinkat(*fdp, name, target, sizeof(target) - 1);
	if (n <= 0)
		return -1;
	target[n] = '\0';
	char tmp[PATH_MAX * 2];
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s/%s", target, rest) >= sizeof(tmp) ||
	    strlen(tmp) >= worksz) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(work, tmp);
	if (target[0] == '/') {
		int root = open("/", O_DIRECTORY | O_RDONLY | O_CLOEXEC);
		if (root < 0)
			return -1;
		close(*fdp);
		*fdp = root;
	}
	return 0;
}

/* One step: open `name` under dirfd as a directory, making it if asked. */
static int
open_step(int dirfd, const char *name, int create)
{
	int fd = openat(dirfd, name, O_DIRECTORY | O_NOFOLLOW | O_RDONLY | O_CLOEXEC);

	if (fd < 0 && errno == ENOENT && create) {
		if (mkdirat(dirfd, name, 0700) < 0 && errno != EEXIST)
			return -1;
		fd = openat(dirfd, name, O_DIRECTORY | O_NOFOLLOW | O_RDONLY | O_CLOEXEC);
	}
	return fd;
}

/* The whole path at once when no symlink is on it, else -1. */
static int
open_no_symlinks(const char *path)
{
	struct open_how how = {
		.flags = O_DIRECTORY | O_RDONLY | O_CLOEXEC,
		.resolve = RESOLVE_NO_SYMLINKS,
	};

	return (int)syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof(how));
}

int
safe_opendir(const char *path, int create)
{
	char work[PATH_MAX * 2];
	int links = 0, fd;

	if (path[0] != '/' || strlen(path) >= sizeof(work)) {
		errno = EINVAL;
		return -1;
	}
	if ((fd = open_no_symlinks(path)) >= 0)
		return fd;
	strcpy(work, path);
	if ((fd = open("/", O_DIRECTORY | O_RDONLY | O_CLOEXEC)) < 0)
		return -1;
	char *p = work;
	for (;;) {
		while (*p == '/')
			p++;
		if (*p == '\0')
			return fd;
		char *slash = strchr(p, '/');
		char *rest = slash ? slash + 1 : p + strlen(p);
		if (slash)
			*slash = '\0';
		int nfd = open_step(fd, p, create);
		if (nfd >= 0) {
			close(fd);
			fd = nfd;
			p = rest;
			continue;
		}
		if ((errno != ELOOP && errno != ENOTDIR) || ++links > WALK_MAX_LINKS)
			goto fail;
		char name[NAME_MAX + 1];
		char restcopy[PATH_MAX * 2];
		size_t nlen = strlen(p), rlen = strlen(rest);
		if (nlen > NAME_MAX || rlen >= sizeof(restcopy)) {
			errno = ENAMETOOLONG;
			goto fail;
		}
		memcpy(name, p, nlen + 1);
		memcpy(restcopy, rest, rlen + 1);
		if (follow_link(&fd, name, restcopy, work, sizeof(work)) < 0)
			goto fail;
		p = work;
	}
fail:;
	int e = errno;
	close(fd);
	errno = e;
	return -1;
}

int
safe_subdir(int dirfd, const char *name, int create)
{
	struct stat st;
	int fd = open_step(dirfd, name, create);

	if (fd < 0) {
		/* O_DIRECTORY|O_NOFOLLOW says ENOTDIR for a symlink: name it */
		if ((errno == ENOTDIR || errno == ELOOP) &&
		    fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
			errno = ELOOP;
		return -1;
	}
	if (fstat(fd, &st) < 0 || st.st_uid != geteuid()) {
		close(fd);
		errno = EPERM;
		return -1;
	}
	return fd;
}

int
safe_subdir_check(int dirfd, const char *name, int create)
{
	struct stat st;
	int fd;

	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		if (errno != ENOENT || !create || (fd = safe_subdir(dirfd, name, 1)) < 0)
			return -1;
		close(fd);
		return 0;
	}
	if (S_ISLNK(st.st_mode))
		errno = ELOOP;
	else if (!S_ISDIR(st.st_mode))
		errno = ENOTDIR;
	else if (st.st_uid != geteuid())
		errno = EPERM;
	else
		return 0;
	return -1;
}
