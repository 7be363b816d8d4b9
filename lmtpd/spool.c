/*
 * The session's copy of one message while DATA/BDAT arrives: an unlinked
 * file (O_TMPFILE) in lmtpd's private directory, CRLF turned into LF on
 * the way in (mailboxes hold LF; a bare CR stays as it is). The
 * delivery children read it through the descriptor passed to them.
 * Writes go to a tmpfs-backed run directory in the usual layout, so the
 * event loop does not wait for a disk.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "spool.h"

int
spool_open(struct spool *s, const char *dir)
{
	memset(s, 0, sizeof(*s));
	s->fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (s->fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
		/* no O_TMPFILE on this file system: mkstemp and unlink */
		char path[4096];
		snprintf(path, sizeof(path), "%s/msg.XXXXXX", dir);
		s->fd = mkostemp(path, O_CLOEXEC);
		if (s->fd >= 0)
			unlink(path);
	}
	s->n = 0;
	return s->fd < 0 ? -1 : 0;
}

static void
spool_flush(struct spool *s)
{
	size_t off = 0;

	while (s->err == 0 && off < s->n) {
		ssize_t r = write(s->fd, s->buf + off, s->n - off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			s->err = r < 0 ? errno : EIO;
		else
			off += (size_t)r;
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
	return s->err == 0 ? 0 : -1;
}

void
spool_close(struct spool *s)
{
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
}
