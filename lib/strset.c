/*
 * Case-blind string set (see strset.h).
 */
#include <ctype.h>
#include <stdlib.h>
#include <strings.h>

#include "strset.h"
#include "xalloc.h"

uint64_t
hash_lower(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *s; s++)
		h = (h ^ (unsigned char)tolower((unsigned char)*s)) * 1099511628211ULL;
	return h;
}

static void grow(struct strset *set);

int
strset_add(struct strset *set, const char *s)
{
	size_t i;

	if (set->n * 2 >= set->cap)
		grow(set);
	for (i = hash_lower(s) & (set->cap - 1); set->slot[i] != NULL;
	    i = (i + 1) & (set->cap - 1))
		if (strcasecmp(set->slot[i], s) == 0)
			return 0;
	set->slot[i] = xstrdup(s);
	set->n++;
	return 1;
}

static void
grow(struct strset *set)
{
	struct strset bigger = { NULL, set->cap ? set->cap * 2 : 64, 0 };

	bigger.slot = xcalloc(bigger.cap, sizeof(char *));
	for (size_t i = 0; i < set->cap; i++)
		if (set->slot[i] != NULL) {
			strset_add(&bigger, set->slot[i]);
			free(set->slot[i]);
		}
	free(set->slot);
	*set = bigger;
}

void
strset_free(struct strset *set)
{
	for (size_t i = 0; i < set->cap; i++)
		free(set->slot[i]);
	free(set->slot);
	set->slot = NULL;
	set->cap = set->n = 0;
}
