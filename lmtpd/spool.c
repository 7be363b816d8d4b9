/*
 * The session's copy of one message while DATA/BDAT arrives, CRLF turned
 * into LF on the way in (mailboxes hold LF; a bare CR stays as it is).
 * The delivery workers read it through the descriptor passed to them.
 *
 * A message starts in memory (memfd): no inode is allocated and freed on
 * the mail file system per message (perf: ext4's inode allocator spent
 * 40 % of lmtpd's CPU skipping the inodes of recently deleted spool
 * files). One that grows past SPOOL_MEM_MAX moves to an unlinked file
 * (O_TMPFILE) in lmtpd's private directory, so memory stays bounded per
 * session. Once complete the memfd is sealed, and the file reopened
 * read-only: a worker (running as a mailbox owner) cannot change what the
 * other recipients receive.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "spool.h"
#include "xalloc.h"

#define SPOOL_MEM_MAX	(1024 * 1024)

static int
disk_open(const char *dir)
{
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

	if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
		/* no O_TMPFILE on this file system: mkstemp and unlink */
		char path[4096];
		snprintf(path, sizeof(path), "%s/msg.XXXXXX", dir);
		fd = mkostemp(path, O_CLOEXEC);
		if (fd >= 0)
			unlink(path);
	}
	return fd;
}

int
spool_open(struct spool *s, const char *dir)
{
	memset(s, 0, sizeof(*s));
	s->fd = memfd_create("lmtpd-msg", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (s->fd >= 0)
		s->mem = 1;
	else
		s->fd = disk_open(dir);
	if (s->fd < 0)
		return -1;
	s->dir = xstrdup(dir);
	return 0;
}

/* Copy what the memfd holds into a file on disk and go on there. */
static int
spool_to_disk(struct spool *s)
{
	char chunk[65536];
	off_t off = 0;
	int fd = disk_open(s->dir);

	if (fd < 0)
		return errno;
	while (off < s->written) {
		ssize_t r = pread(s->fd, chunk, sizeof(chunk), off);
		if (r < 0 && errno == EINTR)
			continue;
		errno = 0;
		if (r <= 0 || write(fd, chunk, (size_t)r) != r) {
			int e = errno ? errno : EIO;	/* EOF or a short write: EIO */
			close(fd);
			return e;
		}
		off += r;
	}
	close(s->fd);
	s->fd = fd;
	s->mem = 0;
	return 0;
}

static void
spool_flush(struct spool *s)
{
	size_t off = 0;

	if (s->err == 0 && s->mem && s->written + (off_t)s->n > SPOOL_MEM_MAX)
		s->err = spool_to_disk(s);
	while (s->err == 0 && off < s->n) {
		ssize_t r = pwrite(s->fd, s->buf + off, s->n - off, s->written);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			s->err = r < 0 ? errno : EIO;
		else {
			off += (size_t)r;
			s->written += r;
		}
	}
	s->n = 0;
}

static void
spool_put(struct spool *s, char c)
{
	if (s->n == sizeof(s->buf))
		spool_flush(s);
	s->buf[s->n++] = c;
	s->size++;
	s->last = c;
}

void
spool_write(struct spool *s, const char *p, size_t len)
{
	for (size_t i = 0; i < len && s->err == 0; i++) {
		char c = p[i];
		if (s->cr) {
			s->cr = 0;
			if (c != '\n')
				spool_put(s, '\r');
		}
		if (c == '\r')
			s->cr = 1;
		else
			spool_put(s, c);
	}
}

/* A spool file on disk cannot be sealed as the memfd is: the workers
 * get a read-only descriptor of it instead (a new open file description
 * through /proc), so that here too a worker running as one mailbox owner
 * cannot change what the other recipients receive. Without /proc the
 * read-write one stays. */
static void
reopen_read_only(struct spool *s)
{
	char path[64];
	int fd;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", s->fd);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return;
	close(s->fd);
	s->fd = fd;
}

int
spool_finish(struct spool *s)
{
	if (s->cr) {
		spool_put(s, '\r');
		s->cr = 0;
	}
	/* a message without a final line end still ends its last line */
	if (s->size > 0 && s->last != '\n')
		spool_put(s, '\n');
	spool_flush(s);
	if (s->err == 0 && s->mem &&
	    fcntl(s->fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW |
		  F_SEAL_SHRINK | F_SEAL_SEAL) < 0)
		s->err = errno;
	if (s->err == 0 && !s->mem)
		reopen_read_only(s);
	return s->err == 0 ? 0 : -1;
}

void
spool_close(struct spool *s)
{
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	free(s->dir);
	s->dir = NULL;
}
