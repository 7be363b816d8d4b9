/*
 * Maps on Berkeley DB 5 hash files: the read side every daemon uses for
 * aliases.db and users.db (with reopen-on-replace), the atomic writer of
 * newaliases, and the bounded line reader of the text tables. See map.h.
 */
#include <ctype.h>
#include <db.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "map.h"
#include "xalloc.h"

struct map {
	char *path;		/* the .db file */
	char *srcpath;		/* its text source: path less ".db" */
	DB *db;			/* NULL: the file is missing */
	dev_t dev;
	ino_t ino;
	struct timespec mtime;
	int warned_missing;	/* said "run newaliases" already */
	ino_t bad_ino;		/* a replacement that failed to open */
	dev_t bad_dev;
	time_t bad_mtime;
};

static int
same_file(const struct map *m, const struct stat *st)
{
	return m->dev == st->st_dev && m->ino == st->st_ino &&
	    m->mtime.tv_sec == st->st_mtim.tv_sec &&
	    m->mtime.tv_nsec == st->st_mtim.tv_nsec;
}

/* Berkeley DB's own detail about an error; our caller reports the error
 * itself, so this stays at debug level instead of going to stderr. */
static void
db_errcall(const DB_ENV *env, const char *prefix, const char *msg)
{
	(void)env;
	(void)prefix;
	log_debug("berkeley db: %s", msg);
}

/* Open path read-only; on success *dbp and *st describe what was opened
 * (fstat of the handle's own descriptor, so a rename between the two
 * cannot confuse us). 0, or errno-ish code with err filled. */
static int
db_open_ro(const char *path, DB **dbp, struct stat *st, char *err, size_t errlen)
{
	DB *db;
	int rc, fd;

	if ((rc = db_create(&db, NULL, 0)) != 0) {
		snprintf(err, errlen, "%s: db_create: %s", path, db_strerror(rc));
		return rc;
	}
	db->set_errcall(db, db_errcall);
	rc = db->open(db, NULL, path, NULL, DB_HASH, DB_RDONLY, 0);
	if (rc == 0 && (rc = db->fd(db, &fd)) == 0 && fstat(fd, st) < 0)
		rc = errno;
	if (rc != 0) {
		snprintf(err, errlen, "%s: %s", path, db_strerror(rc));
		db->close(db, 0);
		return rc;
	}
	*dbp = db;
	return 0;
}

static void
map_adopt(struct map *m, DB *db, const struct stat *st)
{
	if (m->db != NULL)
		m->db->close(m->db, 0);
	m->db = db;
	m->dev = st->st_dev;
	m->ino = st->st_ino;
	m->mtime = st->st_mtim;
}

struct map *
map_open(const char *dbpath, char *err, size_t errlen)
{
	struct map *m = xcalloc(1, sizeof(*m));
	size_t n = strlen(dbpath);
	struct stat st;
	DB *db;
	int rc;

	m->path = xstrdup(dbpath);
	if (n > 3 && strcmp(dbpath + n - 3, ".db") == 0)
		m->srcpath = xstrndup(dbpath, n - 3);
	else
		m->srcpath = xstrdup(dbpath);
	rc = db_open_ro(dbpath, &db, &st, err, errlen);
	if (rc == ENOENT)
		return m;	/* empty or "run newaliases", see map_lookup */
	if (rc != 0) {
		map_close(m);
		return NULL;
	}
	map_adopt(m, db, &st);
	return m;
}

void
map_close(struct map *m)
{
	if (m == NULL)
		return;
	if (m->db != NULL)
		m->db->close(m->db, 0);
	free(m->path);
	free(m->srcpath);
	free(m);
}

const char *
map_path(const struct map *m)
{
	return m->path;
}

/* Before each lookup: has the file been replaced? A stat() costs well
 * under a microsecond, and checking every time means a lookup right after
 * newaliases already sees the new table (no window for tests or admins to
 * trip over). Reopen it, keeping the old handle when the new one does not
 * open; a file that failed to open is not retried until it changes. */
static void
map_check(struct map *m)
{
	char err[512];
	struct stat st;
	DB *db;

	if (stat(m->path, &st) < 0 || (m->db != NULL && same_file(m, &st)))
		return;
	if (st.st_ino == m->bad_ino && st.st_dev == m->bad_dev &&
	    st.st_mtim.tv_sec == m->bad_mtime)
		return;
	if (db_open_ro(m->path, &db, &st, err, sizeof(err)) != 0) {
		log_warn("map %s: reopen failed, still using the old table: %s",
		    m->path, err);
		m->bad_ino = st.st_ino;
		m->bad_dev = st.st_dev;
		m->bad_mtime = st.st_mtim.tv_sec;
		return;
	}
	log_debug("map %s: reopened (file replaced)", m->path);
	map_adopt(m, db, &st);
}

/* No .db: an empty table, unless its text source exists (then the admin
 * has not run newaliases yet and rejecting everyone would be wrong). */
static int
map_missing(struct map *m)
{
	if (access(m->srcpath, F_OK) == 0) {
		if (!m->warned_missing)	/* once, not once per lookup */
			log_warn("map %s: missing while %s exists: run "
			    "newaliases", m->path, m->srcpath);
		m->warned_missing = 1;
		return MAP_TEMPFAIL;
	}
	return MAP_NOTFOUND;
}

static size_t
lower_copy(char *dst, const char *src, size_t n)
{
	for (size_t i = 0; i < n; i++)
		dst[i] = (char)tolower((unsigned char)src[i]);
	return n;
}

int
map_lookup(struct map *m, const char *key, struct buf *value)
{
	char kbuf[MAP_KEY_MAX];
	size_t klen = strlen(key);
	DBT k, d;
	int rc;

	buf_reset(value);
	map_check(m);
	if (m->db == NULL)
		return map_missing(m);
	if (klen == 0 || klen > MAP_KEY_MAX)
		return MAP_NOTFOUND;	/* no stored key looks like that */
	memset(&k, 0, sizeof(k));
	memset(&d, 0, sizeof(d));
	k.data = kbuf;
	k.size = (u_int32_t)lower_copy(kbuf, key, klen);
	rc = m->db->get(m->db, NULL, &k, &d, 0);
	if (rc == DB_NOTFOUND)
		return MAP_NOTFOUND;
	if (rc != 0) {
		log_warn("map %s: lookup failed: %s", m->path, db_strerror(rc));
		return MAP_TEMPFAIL;
	}
	if (buf_append(value, d.data, d.size) < 0) {
		log_warn("map %s: value for %s too large", m->path, key);
		return MAP_TEMPFAIL;
	}
	return MAP_FOUND;
}

int
map_iterate(struct map *m, int (*fn)(const char *, size_t, const char *,
    size_t, void *), void *arg)
{
	DBC *c;
	DBT k, d;
	int rc, stop = 0;

	map_check(m);
	if (m->db == NULL)
		return map_missing(m) == MAP_TEMPFAIL ? MAP_TEMPFAIL : 0;
	if (m->db->cursor(m->db, NULL, &c, 0) != 0)
		return MAP_TEMPFAIL;
	memset(&k, 0, sizeof(k));
	memset(&d, 0, sizeof(d));
	while (!stop && (rc = c->get(c, &k, &d, DB_NEXT)) == 0)
		stop = fn(k.data, k.size, d.data, d.size, arg);
	c->close(c);
	if (stop)
		return stop;
	return rc == DB_NOTFOUND ? 0 : MAP_TEMPFAIL;
}

/* ---- the writer ---- */

struct map_writer {
	DB *db;
	char *path;
	char *tmp;
};

struct map_writer *
map_create(const char *dbpath, char *err, size_t errlen)
{
	struct map_writer *w = xcalloc(1, sizeof(*w));
	int fd, rc;

	w->path = xstrdup(dbpath);
	w->tmp = xasprintf("%s.tmpXXXXXX", dbpath);
	if ((fd = mkstemp(w->tmp)) < 0) {
		snprintf(err, errlen, "%s: %s", w->tmp, strerror(errno));
		goto fail;
	}
	close(fd);
	if ((rc = db_create(&w->db, NULL, 0)) != 0) {
		snprintf(err, errlen, "db_create: %s", db_strerror(rc));
		goto fail_unlink;
	}
	w->db->set_errcall(w->db, db_errcall);
	/* A big cache keeps a million-entry build off the disk until sync. */
	w->db->set_cachesize(w->db, 0, 128 * 1024 * 1024, 1);
	w->db->set_pagesize(w->db, 8192);
	rc = w->db->open(w->db, NULL, w->tmp, NULL, DB_HASH,
	    DB_CREATE | DB_TRUNCATE, 0600);
	if (rc != 0) {
		snprintf(err, errlen, "%s: %s", w->tmp, db_strerror(rc));
		w->db->close(w->db, 0);
		w->db = NULL;
		goto fail_unlink;
	}
	return w;
fail_unlink:
	unlink(w->tmp);
fail:
	free(w->tmp);
	free(w->path);
	free(w);
	return NULL;
}

int
map_put(struct map_writer *w, const char *key, size_t klen, const void *val,
    size_t vlen)
{
	DBT k, d;
	int rc;

	memset(&k, 0, sizeof(k));
	memset(&d, 0, sizeof(d));
	k.data = (void *)key;
	k.size = (u_int32_t)klen;
	d.data = (void *)val;
	d.size = (u_int32_t)vlen;
	rc = w->db->put(w->db, NULL, &k, &d, DB_NOOVERWRITE);
	if (rc == DB_KEYEXIST)
		return MAP_PUT_EXISTS;
	if (rc != 0) {
		log_warn("%s: put: %s", w->tmp, db_strerror(rc));
		return MAP_TEMPFAIL;
	}
	return 0;
}

static void
writer_free(struct map_writer *w)
{
	free(w->tmp);
	free(w->path);
	free(w);
}

void
map_abort(struct map_writer *w)
{
	if (w == NULL)
		return;
	if (w->db != NULL)
		w->db->close(w->db, DB_NOSYNC);
	unlink(w->tmp);
	writer_free(w);
}

/* The new file gets the text source's mode (and owner, as root), so a
 * users.db with password hashes is as private as the users file. */
static int
copy_mode(int fd, const char *from)
{
	struct stat st;

	if (from == NULL || stat(from, &st) < 0)
		return fchmod(fd, 0644);
	if (geteuid() == 0 && fchown(fd, st.st_uid, st.st_gid) < 0)
		return -1;
	return fchmod(fd, st.st_mode & 0666);
}

static int
fsync_dir_of(const char *path)
{
	char *copy = xstrdup(path);
	int fd, rc = -1;

	if ((fd = open(dirname(copy), O_RDONLY | O_DIRECTORY)) >= 0) {
		rc = fsync(fd);
		close(fd);
	}
	free(copy);
	return rc;
}

int
map_commit(struct map_writer *w, const char *mode_from, char *err,
    size_t errlen)
{
	int rc, fd;

	rc = w->db->close(w->db, 0);	/* writes everything out */
	w->db = NULL;
	if (rc != 0) {
		snprintf(err, errlen, "%s: %s", w->tmp, db_strerror(rc));
		goto fail;
	}
	if ((fd = open(w->tmp, O_RDONLY)) < 0)
		goto fail_errno;
	if (copy_mode(fd, mode_from) < 0 || fsync(fd) < 0) {
		close(fd);
		goto fail_errno;
	}
	close(fd);
	if (rename(w->tmp, w->path) < 0)
		goto fail_errno;
	if (fsync_dir_of(w->path) < 0) {
		snprintf(err, errlen, "%s: fsync directory: %s", w->path,
		    strerror(errno));
		writer_free(w);
		return -1;	/* in place, but not known durable */
	}
	writer_free(w);
	return 0;
fail_errno:
	snprintf(err, errlen, "%s: %s", w->tmp, strerror(errno));
fail:
	map_abort(w);
	return -1;
}

/* ---- text tables: the bounded line reader ---- */

static void
src_vreport(struct map_src *s, unsigned long lineno, const char *what,
    const char *fmt, va_list ap)
{
	if (s->diag == NULL)
		return;
	if (lineno)
		fprintf(s->diag, "%s:%lu: %s", s->path, lineno, what);
	else
		fprintf(s->diag, "%s: %s", s->path, what);
	vfprintf(s->diag, fmt, ap);
	fputc('\n', s->diag);
}

void
map_src_error(struct map_src *s, unsigned long lineno, const char *fmt, ...)
{
	va_list ap;

	s->nerrors++;
	if (s->nerrors > MAP_ERRORS_MAX)
		return;
	va_start(ap, fmt);
	if (s->nerrors == MAP_ERRORS_MAX)
		src_vreport(s, lineno, "too many errors, the rest not listed: ",
		    fmt, ap);
	else
		src_vreport(s, lineno, "", fmt, ap);
	va_end(ap);
}

void
map_src_warn(struct map_src *s, unsigned long lineno, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	src_vreport(s, lineno, "warning: ", fmt, ap);
	va_end(ap);
}

int
map_src_open(struct map_src *s, const char *path, FILE *diag)
{
	struct stat st;

	memset(s, 0, sizeof(*s));
	s->path = path;
	s->diag = diag;
	s->next_lineno = 1;
	buf_init(&s->line, MAP_VALUE_MAX);
	buf_init(&s->pending, MAP_LINE_MAX);
	if ((s->fp = fopen(path, "r")) == NULL) {
		map_src_error(s, 0, "cannot open: %s", strerror(errno));
		return -1;
	}
	if (fstat(fileno(s->fp), &st) < 0 || !S_ISREG(st.st_mode)) {
		map_src_error(s, 0, "not a regular file");
		map_src_close(s);
		return -1;
	}
	return 0;
}

void
map_src_close(struct map_src *s)
{
	if (s->fp != NULL)
		fclose(s->fp);
	s->fp = NULL;
	buf_free(&s->line);
	buf_free(&s->pending);
}

/* Read one physical line into s->pending. 1: a line; 0: EOF; -1: error.
 * Problems are reported here; s->pending_bad marks the line as unusable. */
static int
read_phys(struct map_src *s)
{
	unsigned long lineno = s->next_lineno;
	int c, got = 0, nul = 0, toolong = 0;

	buf_reset(&s->pending);
	buf_append(&s->pending, "", 0);	/* data is never NULL below */
	while ((c = getc_unlocked(s->fp)) != EOF) {
		got = 1;
		if (c == '\n')
			break;
		if (c == '\0')
			nul = 1;
		else if (!toolong && buf_putc(&s->pending, (char)c) < 0)
			toolong = 1;
	}
	if (ferror(s->fp)) {
		map_src_error(s, lineno, "read error: %s", strerror(errno));
		return -1;
	}
	if (!got)
		return 0;
	s->next_lineno++;
	if (s->pending.len && s->pending.data[s->pending.len - 1] == '\r')
		s->pending.data[--s->pending.len] = '\0';
	s->pending_bad = nul || toolong;
	if (toolong)
		map_src_error(s, lineno, "line longer than %d bytes", MAP_LINE_MAX);
	else if (nul)
		map_src_error(s, lineno, "NUL byte in line");
	return 1;
}

static int
is_blank_or_comment(const char *p)
{
	p += strspn(p, " \t\r\f\v");
	return *p == '\0' || *p == '#';
}

/* Take the pending physical line into s->line (start or continue). */
static void
take_pending(struct map_src *s, int *bad, unsigned long lineno)
{
	if (s->line.len == 0 && !*bad)
		s->lineno = lineno;
	if (s->pending_bad) {
		*bad = 1;
	} else if (!*bad && ((s->line.len && buf_putc(&s->line, ' ') < 0) ||
	    buf_append(&s->line, s->pending.data, s->pending.len) < 0)) {
		map_src_error(s, s->lineno, "entry longer than %d bytes",
		    MAP_VALUE_MAX);
		*bad = 1;
	}
	s->have_pending = 0;
}

int
map_src_next(struct map_src *s)
{
	int bad = 0, started = 0, rc, cont;
	unsigned long lineno;

	buf_reset(&s->line);
	buf_append(&s->line, "", 0);	/* data is never NULL for the caller */
	for (;;) {
		if (!s->have_pending) {
			if ((rc = read_phys(s)) <= 0)
				return started && !bad ? 1 : rc;
			s->have_pending = 1;
		}
		lineno = s->next_lineno - 1;
		if (!s->pending_bad && is_blank_or_comment(s->pending.data)) {
			s->have_pending = 0;
			continue;
		}
		cont = s->pending.data[0] == ' ' || s->pending.data[0] == '\t';
		if (cont && !started) {
			if (!s->pending_bad)
				map_src_error(s, lineno,
				    "continuation line without an entry before it");
			s->have_pending = 0;
			continue;
		}
		if (!cont && started) {
			if (!bad)
				return 1;	/* the new entry stays pending */
			buf_reset(&s->line);
			bad = 0;
		}
		started = 1;
		take_pending(s, &bad, lineno);
	}
}

/* ---- compiling a text table ---- */

#define DUPS_MAX 10000	/* duplicates whose first line we look for */

struct dup {
	char *key;
	unsigned long line, first;
};

static int
dup_cmp_key(const void *a, const void *b)
{
	return strcmp(((const struct dup *)a)->key, ((const struct dup *)b)->key);
}

static int
dup_cmp_line(const void *a, const void *b)
{
	const struct dup *x = a, *y = b;

	return (x->line > y->line) - (x->line < y->line);
}

/* The first pass only learns that a key repeats; a second read of the
 * source (only when there were duplicates) finds where it first was, so a
 * million-entry build keeps no per-key memory. */
static void
dups_find_first(const char *src, map_parse_fn parse, struct dup *d, size_t n)
{
	struct map_src s;
	struct buf k, v;
	char err[256];

	qsort(d, n, sizeof(*d), dup_cmp_key);
	if (map_src_open(&s, src, NULL) < 0)
		return;
	buf_init(&k, MAP_KEY_MAX);
	buf_init(&v, MAP_VALUE_MAX);
	while (map_src_next(&s) == 1) {
		struct dup probe, *hit;

		buf_reset(&k);
		buf_reset(&v);
		if (parse(s.line.data, s.line.len, &k, &v, err, sizeof(err)) < 0)
			continue;
		probe.key = k.data;
		if ((hit = bsearch(&probe, d, n, sizeof(*d), dup_cmp_key)) == NULL)
			continue;
		while (hit > d && strcmp(hit[-1].key, k.data) == 0)
			hit--;
		for (; hit < d + n && strcmp(hit->key, k.data) == 0; hit++)
			if (hit->first == 0)
				hit->first = s.lineno;
	}
	buf_free(&k);
	buf_free(&v);
	map_src_close(&s);
}

static void
dups_report(const char *src, map_parse_fn parse, struct dup *d, size_t n,
    unsigned long total, FILE *diag)
{
	if (n == 0 || diag == NULL)
		goto out;
	dups_find_first(src, parse, d, n);
	qsort(d, n, sizeof(*d), dup_cmp_line);
	for (size_t i = 0; i < n; i++)
		fprintf(diag, "%s:%lu: warning: duplicate entry \"%s\" (first "
		    "at line %lu, which is used; this one is ignored)\n",
		    src, d[i].line, d[i].key, d[i].first);
	if (total > n)
		fprintf(diag, "%s: warning: %lu more duplicate entries\n", src,
		    total - n);
out:
	for (size_t i = 0; i < n; i++)
		free(d[i].key);
	free(d);
}

struct compile {
	struct map_writer *w;
	struct map_src s;
	struct buf k, v;
	struct dup *dups;
	size_t ndups;
	unsigned long count, totaldups;
};

/* Parse and store the current logical line. -1 stops the build. */
static int
compile_line(struct compile *c, map_parse_fn parse)
{
	char err[512];
	int rc;

	buf_reset(&c->k);
	buf_reset(&c->v);
	if (parse(c->s.line.data, c->s.line.len, &c->k, &c->v, err,
	    sizeof(err)) < 0) {
		map_src_error(&c->s, c->s.lineno, "%s", err);
		return 0;
	}
	rc = map_put(c->w, c->k.data, c->k.len, c->v.data, c->v.len);
	if (rc == 0) {
		c->count++;
	} else if (rc != MAP_PUT_EXISTS) {
		map_src_error(&c->s, c->s.lineno, "cannot store the entry");
		return -1;
	} else if (c->totaldups++ < DUPS_MAX) {
		c->dups = xrealloc(c->dups, (c->ndups + 1) * sizeof(*c->dups));
		c->dups[c->ndups].key = xstrdup(c->k.data);
		c->dups[c->ndups].line = c->s.lineno;
		c->dups[c->ndups++].first = 0;
	}
	return 0;
}

int
map_compile(const char *src, const char *dbpath, FILE *diag,
    map_parse_fn parse, unsigned long *nentries)
{
	struct compile c;
	char err[512];
	int errors;

	memset(&c, 0, sizeof(c));
	if (map_src_open(&c.s, src, diag) < 0)
		return c.s.nerrors ? c.s.nerrors : 1;
	buf_init(&c.k, MAP_KEY_MAX);
	buf_init(&c.v, MAP_VALUE_MAX);
	if ((c.w = map_create(dbpath, err, sizeof(err))) == NULL)
		map_src_error(&c.s, 0, "%s", err);
	while (c.w != NULL && map_src_next(&c.s) == 1)
		if (compile_line(&c, parse) < 0)
			break;
	if (c.w != NULL && c.s.nerrors == 0) {
		if (map_commit(c.w, src, err, sizeof(err)) < 0)
			map_src_error(&c.s, 0, "%s", err);
	} else if (c.w != NULL) {
		map_abort(c.w);
	}
	errors = c.s.nerrors;
	buf_free(&c.k);
	buf_free(&c.v);
	map_src_close(&c.s);
	dups_report(src, parse, c.dups, c.ndups, c.totaldups, diag);
	if (nentries != NULL)
		*nentries = c.count;
	return errors;
}
