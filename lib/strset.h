/*
 * A set of strings compared without regard to case (addresses, alias
 * names: what was seen already), and the case-blind hash it uses, for
 * other tables keyed the same way. Open addressing, grown at half full,
 * so adding and finding stay constant time however many entries a
 * hostile list brings.
 */
#ifndef HERMOD_STRSET_H
#define HERMOD_STRSET_H

#include <stddef.h>
#include <stdint.h>

struct strset {
	char **slot;
	size_t cap, n;
};

uint64_t hash_lower(const char *s);	/* FNV-1a of the lower-cased bytes */
int strset_add(struct strset *set, const char *s);	/* 1 added, 0 there */
void strset_free(struct strset *set);

#endif
