/*
 * Allocation wrappers that abort on failure. The x prefix means "this
 * cannot fail": use them for invariants and small bookkeeping, never for
 * sizes a peer chooses (check the bound first, see buf.h).
 */
#ifndef HERMOD_XALLOC_H
#define HERMOD_XALLOC_H

#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
