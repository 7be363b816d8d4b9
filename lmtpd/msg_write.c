/*
 * The message as it goes into a mailbox, shared by maildir.c and mbox.c:
 * Return-Path: and Delivered-To: in front, then the spooled bytes as
 * they are (LF line ends, NULs and long lines kept), with mboxrd quoting
 * of ^>*From lines for mbox. The spool is read with pread so that
 * several delivery children can share one descriptor. Also the
 * Delivered-To: loop check.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "lmtpd.h"

#define CHUNK 65536
#define HEADER_SCAN_MAX (1024 * 1024)	/* a header block past this is not mail */

struct wbuf {
	int fd;
	int err;
	size_t n;
	off_t total;
	char data[CHUNK];
};

static void
wb_flush(struct wbuf *w)
{
	size_t off = 0;

	while (w->err == 0 && off < w->n) {
		ssize_t r = write(w->fd, w->data + off, w->n - off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			w->err = r < 0 ? errno : EIO;
		else
			off += (size_t)r;
	}
	w->n = 0;
}

static void
wb_put(struct wbuf *w, const void *p, size_t len)
{
	const char *s = p;

	while (len > 0 && w->err == 0) {
		size_t k = sizeof(w->data) - w->n;
		if (k > len)
			k = len;
		memcpy(w->data + w->n, s, k);
		w->n += k;
		w->total += (off_t)k;
		s += k;
		len -= k;
		if (w->n == sizeof(w->data))
			wb_flush(w);
	}
}

static void
wb_repeat(struct wbuf *w, char c, size_t count)
{
	while (count-- > 0)
		wb_put(w, &c, 1);
}

static void
write_prefix(struct wbuf *w, const struct dlv_msg *m)
{
	char line[DLV_ADDR_MAX * 2 + 64];
	int n = snprintf(line, sizeof(line), "Return-Path: <%s>\nDelivered-To: %s\n",
	    m->sender, m->rcpt);

	wb_put(w, line, (size_t)n);
}

size_t
msg_prefix_len(const struct dlv_msg *m)
{
	return strlen("Return-Path: <>\nDelivered-To: \n") + strlen(m->sender) +
	    strlen(m->rcpt);
}

/*
 * mboxrd quoting over a stream: at each line start we count '>' and
 * match "From " without buffering (a line of a million '>' costs a
 * counter), then emit either the quoted form or what we held back.
 */
struct quoter {
	int at_bol;	/* next byte starts a line */
	size_t gts;	/* '>' seen at this line start */
	size_t from;	/* bytes of "From " matched after them */
};

static void
quote_release(struct wbuf *w, struct quoter *q, int quoted)
{
	if (quoted)
		wb_put(w, ">", 1);
	wb_repeat(w, '>', q->gts);
	wb_put(w, "From ", q->from);
	q->at_bol = 0;
	q->gts = q->from = 0;
}

static void
quote_chunk(struct wbuf *w, struct quoter *q, const char *p, size_t len)
{
	const char *end = p + len;

	while (p < end) {
		if (!q->at_bol) {
			const char *nl = memchr(p, '\n', (size_t)(end - p));
			const char *stop = nl ? nl + 1 : end;
			wb_put(w, p, (size_t)(stop - p));
			q->at_bol = nl != NULL;
			p = stop;
			continue;
		}
		char c = *p++;
		if (c == '>' && q->from == 0) {
			q->gts++;
		} else if (c == "From "[q->from]) {
			if (++q->from == 5)
				quote_release(w, q, 1);
		} else {
			quote_release(w, q, 0);
			wb_put(w, &c, 1);
			q->at_bol = c == '\n';
		}
	}
}

int
msg_write(int outfd, const struct dlv_msg *m, int mboxrd, off_t *written)
{
	struct wbuf *w = malloc(sizeof(*w));
	struct quoter q = { 1, 0, 0 };
	char *chunk = malloc(CHUNK);
	off_t off = 0;
	int err = 0;

	if (w == NULL || chunk == NULL) {
		err = ENOMEM;
		goto done;
	}
	w->fd = outfd;
	w->err = 0;
	w->n = 0;
	w->total = 0;
	write_prefix(w, m);
	while (w->err == 0 && off < m->size) {
		ssize_t r = pread(m->fd, chunk, CHUNK, off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			err = r < 0 ? errno : EIO;
			break;
		}
		if (mboxrd)
			quote_chunk(w, &q, chunk, (size_t)r);
		else
			wb_put(w, chunk, (size_t)r);
		off += r;
	}
	if (mboxrd && q.gts + q.from > 0)
		quote_release(w, &q, 0);
	wb_flush(w);
	if (err == 0)
		err = w->err;
	*written = w->total;
done:
	free(w);
	free(chunk);
	return err;
}

/* Does the header value `v` (len n) name addr? Comparison ignores case,
 * surrounding white space and angle brackets. */
static int
value_is(const char *v, size_t n, const char *addr)
{
	while (n > 0 && (isspace((unsigned char)*v) || *v == '<'))
		v++, n--;
	while (n > 0 && (isspace((unsigned char)v[n - 1]) || v[n - 1] == '>'))
		n--;
	return n == strlen(addr) && strncasecmp(v, addr, n) == 0;
}

int
msg_delivered_to(const struct dlv_msg *m)
{
	size_t want = m->size < HEADER_SCAN_MAX ? (size_t)m->size : HEADER_SCAN_MAX;
	char *h = malloc(want + 1);
	size_t got = 0;
	int found = 0;

	if (h == NULL)
		return -1;
	while (got < want) {
		ssize_t r = pread(m->fd, h + got, want - got, (off_t)got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			free(h);
			return -1;
		}
		got += (size_t)r;
	}
	h[got] = '\0';
	for (char *line = h; line < h + got && *line != '\n';) {
		char *nl = memchr(line, '\n', (size_t)(h + got - line));
		size_t len = nl ? (size_t)(nl - line) : (size_t)(h + got - line);
		if (len > 13 && strncasecmp(line, "Delivered-To:", 13) == 0 &&
		    value_is(line + 13, len - 13, m->rcpt)) {
			found = 1;
			break;
		}
		if (nl == NULL)
			break;
		line = nl + 1;
	}
	free(h);
	return found;
}

void
dlv_detailf(struct dlv_detail *d, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(d->text, sizeof(d->text), fmt, ap);
	va_end(ap);
}

enum dlv_status
dlv_errno_status(int err)
{
	switch (err) {
	case ENOSPC:
	case EDQUOT:
		return DLV_NOSPACE;
	case ELOOP:
	case EPERM:
	case EMLINK:
	case ENOTDIR:
		return DLV_UNSAFE;
	default:
		return DLV_TEMP;
	}
}
