/*
 * The aliases table (alias_maps, aliases(5)): the text syntax, and its
 * compilation into FILE.db by newaliases. Expansion is alias_expand.h.
 *
 * Syntax: `name: target, target, ...`; `#` comment lines; a line that
 * starts with white space continues the one before. The name may be
 * quoted ("name with space": ...) and may be `local@domain` (that domain
 * only; it must be in mydestination) or a bare local part (every local
 * domain). Targets: a local name,
 * `user@domain`, `:include:/path`, `"|command"` (or |command), `/file`;
 * a target with commas or spaces is quoted. Names are case-insensitive.
 * A name given twice: the FIRST entry wins, the later one is a warning
 * naming both lines (Postfix's postalias does the same).
 *
 * Stored value: the normalized targets, each followed by one NUL byte
 * ("bob\0carol@example.org\0|/usr/bin/x\0"): quotes removed, surrounding
 * white space trimmed. Key: the name, lower-cased, without a NUL.
 */
#ifndef HERMOD_ALIASES_H
#define HERMOD_ALIASES_H

#include <stddef.h>
#include <stdio.h>

#include "buf.h"

#define ALIAS_TARGET_MAX	1024	/* bytes in one target */

enum alias_target_kind {
	ALIAS_T_ADDRESS,	/* local name or user@domain */
	ALIAS_T_INCLUDE,	/* :include:/path (the path follows) */
	ALIAS_T_PIPE,		/* |command */
	ALIAS_T_FILE,		/* /path */
};

/*
 * Parse one logical line `name: targets`. On success (0) name holds the
 * lower-cased key and value the stored form. -1: err says what is wrong.
 */
int aliases_parse_entry(const char *line, size_t len, struct buf *name,
    struct buf *value, char *err, size_t errlen);

/*
 * Parse a target list (the right side of an entry, or the text of an
 * :include: file, where newlines separate too) into the stored form
 * appended to value. 0, or -1 with err. An empty list is an error.
 */
int aliases_parse_targets(const char *list, size_t len, struct buf *value,
    char *err, size_t errlen);

/* Classify a stored target; *arg points at the path for an include. */
enum alias_target_kind aliases_target_kind(const char *t, const char **arg);

/* Walk a stored value: returns the next target (NUL-terminated, inside
 * val) and advances *off, or NULL at the end. */
const char *aliases_value_next(const char *val, size_t len, size_t *off);

/*
 * newaliases: compile text file `src` into `dbpath` atomically. Every
 * error goes to diag as "src:line: text"; warnings as "src:line: warning:
 * text". Returns the number of errors: 0 means the new table is in
 * place, otherwise the old one was left alone. *nentries (may be NULL)
 * gets the entry count.
 */
int aliases_compile(const char *src, const char *dbpath, FILE *diag,
    unsigned long *nentries);

#endif
