/*
 * Maps: read-only key -> value tables in Berkeley DB hash files (the
 * aliases.db and users.db that newaliases builds), plus the atomic writer
 * newaliases uses and the bounded line reader both table parsers share.
 *
 * Readers (smtpd, queued, lmtpd, hermod lookup) keep a struct map open for
 * their lifetime. Every lookup answers found / not found / temporary
 * failure: a database error is MAP_TEMPFAIL (the caller answers 4xx),
 * never "not found" (Postfix's DICT_ERR_RETRY). A map notices when its
 * file was replaced (rename by newaliases: inode, device or mtime changed;
 * one stat() before each lookup) and reopens it; the old handle stays in
 * use until the new one opened, so no lookup fails during a rebuild.
 * A map handle belongs to one process: open it after fork(), not before.
 * Files are opened DB_RDONLY, DB_HASH, without an environment; several
 * processes may read the same file at once (the writer never changes a
 * published file in place, it renames a complete new one over it).
 *
 * A missing .db file is an empty table when its text source (the path
 * without ".db") is missing too; when the source exists but the .db does
 * not, lookups are MAP_TEMPFAIL ("run newaliases") rather than rejecting
 * every recipient.
 *
 * Keys are stored lower-cased, without a trailing NUL; map_lookup()
 * lower-cases the key it is given. Value formats are the tables' own
 * (aliases.h, users.h).
 */
#ifndef HERMOD_MAP_H
#define HERMOD_MAP_H

#include <stddef.h>
#include <stdio.h>

#include "buf.h"

enum map_result {
	MAP_TEMPFAIL = -1,	/* database error: try again later (4xx) */
	MAP_FOUND = 0,
	MAP_NOTFOUND = 1,
};

/* Bounds shared by the table parsers and the maps. */
#define MAP_KEY_MAX	1024		/* bytes in a key */
#define MAP_VALUE_MAX	(1024 * 1024)	/* bytes in a value */
#define MAP_LINE_MAX	(64 * 1024)	/* one physical line of a text table */
#define MAP_ERRORS_MAX	1000		/* diagnostics listed per file */

struct map;

/*
 * Open `dbpath` (e.g. "/etc/hermod/aliases.db") read-only. NULL on a
 * broken file, with a message in err (errlen bytes). A missing file is
 * not an error (see above). The caller frees with map_close().
 */
struct map *map_open(const char *dbpath, char *err, size_t errlen);
void map_close(struct map *m);
const char *map_path(const struct map *m);

/*
 * Look `key` up (lower-cased first). MAP_FOUND: value holds the stored
 * bytes (NUL-terminated by buf). value is reset first. MAP_TEMPFAIL also
 * when the value does not fit value's cap.
 */
int map_lookup(struct map *m, const char *key, struct buf *value);

/* Visit every entry; fn returns non-zero to stop (that value is
 * returned). MAP_TEMPFAIL on a database error. Key and value are only
 * valid during the call. */
int map_iterate(struct map *m, int (*fn)(const char *key, size_t klen,
    const char *val, size_t vlen, void *arg), void *arg);

/*
 * The writer (newaliases): builds DBPATH.tmpXXXXXX, and map_commit()
 * syncs it, fsyncs it, gives it the mode (and, as root, the owner) of
 * `mode_from` (the text source; NULL: 0644), renames it over DBPATH and
 * fsyncs the directory. map_abort() removes the temporary file; either
 * one frees the writer. The old table stays in place until the rename.
 */
struct map_writer;
struct map_writer *map_create(const char *dbpath, char *err, size_t errlen);
/* 0 stored; MAP_PUT_EXISTS when the key exists already (the first value
 * is kept); MAP_TEMPFAIL on a database error. Keys are stored as given. */
#define MAP_PUT_EXISTS 1
int map_put(struct map_writer *w, const char *key, size_t klen,
    const void *val, size_t vlen);
int map_commit(struct map_writer *w, const char *mode_from, char *err,
    size_t errlen);
void map_abort(struct map_writer *w);

/*
 * Text tables: logical lines, `#` comment lines, blank lines ignored, a
 * line starting with white space continues the one before. A physical
 * line over MAP_LINE_MAX, a logical line over MAP_VALUE_MAX, or one with a
 * NUL byte is reported (file:line) and skipped.
 */
struct map_src {
	FILE *fp;
	const char *path;
	unsigned long lineno;	/* line number of the current logical line */
	unsigned long next_lineno;
	int nerrors;		/* errors reported so far */
	FILE *diag;		/* where errors go ("path:line: text\n") */
	struct buf line;	/* the current logical line, NUL-terminated */
	struct buf pending;	/* physical line read ahead */
	int have_pending;
	int pending_bad;
};

/* 0, or -1 with an error reported (missing, unreadable, not a file). */
int map_src_open(struct map_src *s, const char *path, FILE *diag);
/* 1: a logical line in s->line; 0: end of file; -1: read error (reported). */
int map_src_next(struct map_src *s);
/* Report "path:lineno: text" on diag and count it. */
void map_src_error(struct map_src *s, unsigned long lineno, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void map_src_warn(struct map_src *s, unsigned long lineno, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void map_src_close(struct map_src *s);

/*
 * Compile text table `src` into `dbpath` with `parse` turning each logical
 * line into key and value (0), or an error message (-1). Every error is
 * listed on diag as "src:line: text"; a duplicate key is a warning naming
 * both lines, the first one wins. Returns the number of errors: 0 means the
 * new table was renamed into place, otherwise the old one is untouched.
 */
typedef int (*map_parse_fn)(const char *line, size_t len, struct buf *key,
    struct buf *value, char *err, size_t errlen);
int map_compile(const char *src, const char *dbpath, FILE *diag,
    map_parse_fn parse, unsigned long *nentries);

#endif
