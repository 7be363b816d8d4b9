/*
 * Growable byte buffers with an explicit cap. Growth is geometric, never
 * past `max`; an append that would pass the cap fails (-1) and leaves the
 * buffer as it was, so a peer cannot make us allocate what it likes.
 * The buffer owns `data`; buf_free() releases it. `data` is always
 * NUL-terminated (the NUL is not counted in len) so text can be used as a
 * C string.
 */
#ifndef HERMOD_BUF_H
#define HERMOD_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
	char *data;
	size_t len;
	size_t cap;
	size_t max;	/* hard cap on len */
};

void buf_init(struct buf *b, size_t max);
void buf_free(struct buf *b);
void buf_reset(struct buf *b);		/* len = 0, keeps memory */
int buf_append(struct buf *b, const void *p, size_t n);
int buf_puts(struct buf *b, const char *s);
int buf_putc(struct buf *b, char c);
int buf_printf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int buf_vprintf(struct buf *b, const char *fmt, va_list ap);
/* Hand the data over to the caller (who frees it); the buffer is emptied. */
char *buf_release(struct buf *b);

#endif
