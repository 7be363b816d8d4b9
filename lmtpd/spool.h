/*
 * One message being received by an LMTP session (spool.c): a memfd, or
 * past 1 MiB an unlinked temp file, holding the data with LF line ends. The session owns the
 * struct and the descriptor; spool_close() releases it.
 */
#ifndef HERMOD_LMTPD_SPOOL_H
#define HERMOD_LMTPD_SPOOL_H

#include <stddef.h>
#include <sys/types.h>

struct spool {
	int fd;
	int mem;	/* fd is a memfd (moved to a file past 1 MiB) */
	char *dir;	/* where a file goes */
	off_t written;	/* bytes in fd */
	int err;	/* first write error (errno), 0 if none */
	int cr;		/* a CR is held back: is an LF next? */
	char last;	/* last byte stored */
	off_t size;	/* bytes stored */
	size_t n;	/* bytes in buf */
	char buf[16384];
};

/* Open a memfd (or an unlinked file in dir). -1 with errno on failure. */
int spool_open(struct spool *s, const char *dir);
/* Append message bytes (CRLF becomes LF); errors are kept in s->err. */
void spool_write(struct spool *s, const char *p, size_t len);
/* Flush; a last line without a line end gets one. 0, or -1 (s->err). */
int spool_finish(struct spool *s);
void spool_close(struct spool *s);

#endif
