/*
 * Recursive alias expansion for queued's routing and hermod lookup: one
 * recipient in, the tree of aliases, include files and final destinations
 * out. Bounded in depth and size; duplicates and loops are cut. See
 * alias_expand.h for the rules.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/param.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alias_expand.h"
#include "aliases.h"
#include "conf.h"
#include "local_user.h"
#include "log.h"
#include "strset.h"
#include "xalloc.h"

static struct map *aliases_map, *aliases_override;
static int closer_registered;

void
alias_expand_set_map(struct map *m)
{
	aliases_override = m;
}

void
alias_expand_close(void)
{
	map_close(aliases_map);
	aliases_map = NULL;
}

static struct map *
aliases(void)
{
	char err[512], *path;

	if (aliases_override != NULL)
		return aliases_override;
	path = xasprintf("%s.db", conf_str(C_alias_maps));
	if (aliases_map != NULL && strcmp(map_path(aliases_map), path) != 0)
		alias_expand_close();
	if (aliases_map == NULL && !closer_registered) {
		atexit(alias_expand_close);	/* leak checkers see a tidy exit */
		closer_registered = 1;
	}
	if (aliases_map == NULL && (aliases_map = map_open(path, err,
	    sizeof(err))) == NULL)
		log_warn("aliases table: %s", err);
	free(path);
	return aliases_map;
}

/* ---- the result ---- */

void
alias_result_free(struct alias_result *r)
{
	for (size_t i = 0; i < r->n; i++) {
		free(r->v[i].text);
		free(r->v[i].reason);
	}
	free(r->v);
	memset(r, 0, sizeof(*r));
}

/* Whose rights an :include: file is read with (READER_ANY: only what
 * every user may read). queued reads as the mail system's account, which
 * can read what the users must not (the users table with its password
 * hashes, the spool, TLS keys): a list file a user controls, or a
 * symlink a user put where the aliases file names a list, would
 * otherwise turn such a file's lines into recipients that bounces and
 * deliveries show. So, as Postfix does: a top-level include is read with
 * the rights of the aliases table's owner (any user's when that is
 * root), a nested one with those of the include file that names it
 * (when a user owns that file). Checked on the file's owner and mode
 * (group rights are not granted). */
#define READER_ANY ((uid_t)-1)

struct ctx {
	struct map *m;
	struct alias_result *out;
	struct strset leaves, expanded;
	struct buf val;
	int tempfail, full, loops;
	uid_t reader;
	size_t inc_bytes;	/* read from include files so far */
};

static int
add_node(struct ctx *c, enum alias_kind kind, const char *text, int parent,
    int depth)
{
	struct alias_result *r = c->out;
	struct alias_node *n;

	if (r->n == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 8;
		r->v = xrealloc(r->v, r->cap * sizeof(*r->v));
	}
	n = &r->v[r->n];
	memset(n, 0, sizeof(*n));
	n->kind = kind;
	n->text = xstrdup(text);
	n->parent = parent;
	n->depth = depth;
	return (int)r->n++;
}

static void
add_error(struct ctx *c, const char *text, int parent, int depth,
    const char *status, const char *reason)
{
	int i = add_node(c, ALIAS_ERROR, text, parent, depth);

	snprintf(c->out->v[i].status, sizeof(c->out->v[i].status), "%s", status);
	c->out->v[i].reason = xstrdup(reason);
}

/* A leaf, once per destination (kind and text, case-insensitive). */
static void
add_leaf(struct ctx *c, enum alias_kind kind, const char *text, int parent,
    int depth)
{
	char *k = xasprintf("%d:%s", (int)kind, text);

	if (strset_add(&c->leaves, k))
		add_node(c, kind, text, parent, depth);
	free(k);
}

/* Room for another node? The first time there is not, say so once. */
static int
room(struct ctx *c, int parent, int depth)
{
	if (c->out->n < ALIAS_NODES_MAX)
		return 1;
	if (!c->full)
		add_error(c, "(expansion stopped)", parent, depth, "5.3.0",
		    "alias expansion has too many recipients");
	c->full = 1;
	return 0;
}

/* ---- lookups ---- */

/* Try local@domain, then local. *key gets the name that matched. */
static int
lookup2(struct ctx *c, const char *local, const char *domain, char **key)
{
	char *k;
	int rc = MAP_NOTFOUND;

	if (domain != NULL && *domain) {
		k = xasprintf("%s@%s", local, domain);
		rc = map_lookup(c->m, k, &c->val);
		if (rc != MAP_NOTFOUND) {
			*key = k;
			return rc;
		}
		free(k);
	}
	rc = map_lookup(c->m, local, &c->val);
	if (rc == MAP_FOUND)
		*key = xstrdup(local);
	return rc;
}

/* The alias for local@domain, with and without the extension, and the
 * postmaster fallback to root. */
static int
lookup_alias(struct ctx *c, const char *local, const char *domain,
    char **key)
{
	char base[LU_NAME_MAX] = "";
	int rc;

	*key = NULL;
	if (c->m == NULL)
		return MAP_TEMPFAIL;
	if ((rc = lookup2(c, local, domain, key)) != MAP_NOTFOUND)
		return rc;
	if (local_strip_extension(local, base, sizeof(base)) == 0 &&
	    strcmp(base, local) != 0 &&
	    (rc = lookup2(c, base, domain, key)) != MAP_NOTFOUND)
		return rc;
	if (strcasecmp(local, "postmaster") == 0 ||
	    strcasecmp(base, "postmaster") == 0)
		return lookup2(c, "root", domain, key);
	return MAP_NOTFOUND;
}

/* Split addr into local part and domain (borrowed pointers into copy). */
static void
split(char *copy, char **local, char **domain)
{
	char *at = strrchr(copy, '@');

	*local = copy;
	*domain = NULL;
	if (at != NULL) {
		*at = '\0';
		*domain = at + 1;
	}
}

static void expand_value(struct ctx *c, const char *val, size_t len,
    int parent, int depth, const char *key, const char *domain);

static void
expand_addr(struct ctx *c, const char *addr, int parent, int depth)
{
	char *copy = xstrdup(addr), *local, *domain, *key = NULL, *val;
	size_t vlen;
	int rc, node;

	split(copy, &local, &domain);
	if (!local_domain(domain)) {
		add_leaf(c, ALIAS_REMOTE, addr, parent, depth);
		goto out;
	}
	rc = lookup_alias(c, local, domain, &key);
	if (rc == MAP_TEMPFAIL) {
		c->tempfail = 1;
		goto out;
	}
	if (rc == MAP_NOTFOUND) {
		add_leaf(c, ALIAS_LOCAL, addr, parent, depth);
		goto out;
	}
	if (!strset_add(&c->expanded, key)) {
		c->loops++;	/* met before: a loop or a second path */
		goto out;
	}
	if (!room(c, parent, depth))
		goto out;
	node = add_node(c, ALIAS_EXPANDED, addr, parent, depth);
	vlen = c->val.len;
	val = xmalloc(vlen + 1);
	memcpy(val, c->val.data, vlen + 1);	/* c->val is reused below */
	expand_value(c, val, vlen, node, depth + 1, key, domain);
	free(val);
out:
	free(key);
	free(copy);
}

/* ---- :include: files ---- */

static int
readable_by(const struct stat *st, uid_t reader)
{
	if (reader != READER_ANY && st->st_uid == reader)
		return (st->st_mode & S_IRUSR) != 0;
	return (st->st_mode & S_IROTH) != 0;
}

/* The reader of a top-level include: the aliases table's owner. */
static uid_t
top_reader(struct map *m)
{
	struct stat st;

	if (m == NULL || stat(map_path(m), &st) < 0 || st.st_uid == 0)
		return READER_ANY;
	return st.st_uid;
}

/* The reader of what the include file (owner `owner`) names: a user who
 * owns the file gives his rights; root or our own account keep the
 * reader as it was. */
static uid_t
next_reader(uid_t reader, uid_t owner)
{
	return owner == 0 || owner == geteuid() ? reader : owner;
}

static int
read_include(const char *path, uid_t reader, struct buf *text, uid_t *owner,
    const char **status, const char **why)
{
	struct stat st;
	int fd, rc = -1;
	ssize_t n;
	char chunk[8192];

	*status = "4.3.0";
	if ((fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)) < 0) {
		*why = strerror(errno);
		return -1;
	}
	*status = "5.3.0";
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		*why = "not a regular file";
	else if (st.st_mode & S_IWOTH)
		*why = "include file is world-writable";
	else if (!readable_by(&st, reader)) {
		*status = "4.3.0";	/* as an open() refused: fixable */
		*why = reader == READER_ANY ? "not readable by every user (see aliases(5))" :
		    "not readable by the owner of the list that names it (see aliases(5))";
	} else if (st.st_size > ALIAS_INCLUDE_MAX)
		*why = "include file too large";
	else
		rc = 0;
	/* no more than the file's size: a /proc or /sys file says 0 or 4096
	 * whatever it holds (/proc/self/maps, anyone may read, would show
	 * queued's memory layout as recipients) */
	while (rc == 0 && text->len < (size_t)st.st_size &&
	    (n = read(fd, chunk, MIN(sizeof(chunk), (size_t)st.st_size - text->len))) != 0) {
		if (n < 0 || buf_append(text, chunk, (size_t)n) < 0 ||
		    memchr(chunk, '\0', (size_t)n) != NULL) {
			*why = n < 0 ? strerror(errno) : "include file unreadable "
			    "(too large or NUL bytes)";
			rc = -1;
		}
	}
	*owner = rc == 0 ? st.st_uid : 0;
	close(fd);
	return rc;
}

/* Comment lines blanked out, then the same target syntax as aliases.
 * An include file with no targets at all is an empty list, not an error. */
static int
include_targets(struct buf *text, struct buf *val, char *err, size_t errlen)
{
	char *p, *end, *nl;
	int any = 0;

	buf_append(text, "", 0);	/* data is not NULL, even when empty */
	end = text->data + text->len;
	for (p = text->data; p < end; p = nl + 1) {
		if ((nl = memchr(p, '\n', (size_t)(end - p))) == NULL)
			nl = end;
		if (p[strspn(p, " \t\r")] == '#')
			memset(p, ' ', (size_t)(nl - p));
		else if (p + strspn(p, " \t\r,") < nl)
			any = 1;
	}
	if (!any)
		return 0;
	return aliases_parse_targets(text->data, text->len, val, err, errlen);
}

/* Room to read another include file? Each is bounded, but a list of
 * thousands of includes (or of symlinks to one big file) would cost
 * seconds of queued's event loop per recipient: the whole expansion
 * reads at most ALIAS_INCLUDE_TOTAL_MAX. Said once, as room() does. */
static int
include_budget(struct ctx *c, const char *path, int parent, int depth)
{
	if (c->inc_bytes <= ALIAS_INCLUDE_TOTAL_MAX)
		return 1;
	if (c->inc_bytes != SIZE_MAX)
		add_error(c, path, parent, depth, "5.3.0",
		    "alias expansion reads too much from include files");
	c->inc_bytes = SIZE_MAX;
	return 0;
}

static void
expand_include(struct ctx *c, const char *path, int parent, int depth,
    const char *key, const char *domain)
{
	struct buf text, val;
	const char *status = "5.3.0", *why = "?";
	char err[256], *reason, *inc = xasprintf(":include:%s", path);
	uid_t owner = 0, reader = c->reader;
	int node, rc;

	if (!strset_add(&c->expanded, inc)) {
		c->loops++;
		free(inc);
		return;
	}
	free(inc);
	if (!include_budget(c, path, parent, depth))
		return;
	buf_init(&text, ALIAS_INCLUDE_MAX);
	buf_init(&val, MAP_VALUE_MAX);
	rc = read_include(path, reader, &text, &owner, &status, &why);
	c->inc_bytes += text.len;
	if (rc == 0 && include_targets(&text, &val, err, sizeof(err)) < 0) {
		why = err;	/* status stays 5.3.0: the file is wrong */
		rc = -1;
	}
	if (rc < 0) {
		reason = xasprintf("cannot use include file %s: %s", path, why);
		add_error(c, path, parent, depth, status ? status : "5.3.0",
		    reason);
		free(reason);
	} else {
		node = add_node(c, ALIAS_INCLUDE, path, parent, depth);
		c->reader = next_reader(reader, owner);
		expand_value(c, val.data, val.len, node, depth + 1, key, domain);
		c->reader = reader;
	}
	buf_free(&text);
	buf_free(&val);
}

/* ---- targets ---- */

/* Does target t (a bare name or address) name the alias `key` itself? */
static int
names_self(const char *t, const char *key, const char *domain)
{
	size_t n = strlen(key);

	if (strcasecmp(t, key) == 0)
		return 1;
	/* key "alice" and target "alice@this-domain" */
	return strncasecmp(t, key, n) == 0 && t[n] == '@' && domain != NULL &&
	    strcasecmp(t + n + 1, domain) == 0;
}

static void
expand_target(struct ctx *c, const char *t, int parent, int depth,
    const char *key, const char *domain)
{
	const char *arg;
	char *addr;

	if (depth > ALIAS_DEPTH_MAX) {
		add_error(c, t, parent, depth, "5.4.6",
		    "alias nesting too deep (a loop?)");
		return;
	}
	switch (aliases_target_kind(t, &arg)) {
	case ALIAS_T_INCLUDE:
		expand_include(c, arg, parent, depth, key, domain);
		return;
	case ALIAS_T_PIPE:
		add_leaf(c, ALIAS_PIPE, arg, parent, depth);
		return;
	case ALIAS_T_FILE:
		add_leaf(c, ALIAS_FILE, arg, parent, depth);
		return;
	case ALIAS_T_ADDRESS:
		break;
	}
	if (strchr(t, '@') == NULL && domain != NULL && *domain)
		addr = xasprintf("%s@%s", t, domain);
	else
		addr = xstrdup(t);
	if (names_self(t, key, domain))
		add_leaf(c, ALIAS_LOCAL, addr, parent, depth);
	else
		expand_addr(c, addr, parent, depth);
	free(addr);
}

static void
expand_value(struct ctx *c, const char *val, size_t len, int parent,
    int depth, const char *key, const char *domain)
{
	const char *t;
	size_t off = 0;

	while (!c->tempfail && room(c, parent, depth) &&
	    (t = aliases_value_next(val, len, &off)) != NULL)
		expand_target(c, t, parent, depth, key, domain);
}

int
alias_expand(const char *addr, struct alias_result *out)
{
	struct ctx c;
	size_t leaves = 0;
	int rc;

	alias_result_free(out);
	memset(&c, 0, sizeof(c));
	c.m = aliases();
	c.reader = top_reader(c.m);
	c.out = out;
	buf_init(&c.val, MAP_VALUE_MAX);
	expand_addr(&c, addr, -1, 0);
	for (size_t i = 0; i < out->n; i++)
		leaves += out->v[i].kind < ALIAS_EXPANDED;
	if (!c.tempfail && leaves == 0)
		add_error(&c, addr, out->n ? 0 : -1, 1, "5.4.6",
		    "alias loop or empty list: the expansion has no recipients");
	rc = c.tempfail ? MAP_TEMPFAIL :
	    out->n && out->v[0].kind == ALIAS_EXPANDED ? MAP_FOUND : MAP_NOTFOUND;
	buf_free(&c.val);
	strset_free(&c.leaves);
	strset_free(&c.expanded);
	return rc;
}

int
alias_exists(const char *addr)
{
	struct ctx c;
	char *copy = xstrdup(addr), *local, *domain, *key = NULL;
	int rc;

	memset(&c, 0, sizeof(c));
	c.m = aliases();
	buf_init(&c.val, MAP_VALUE_MAX);
	split(copy, &local, &domain);
	rc = local_domain(domain) ? lookup_alias(&c, local, domain, &key) :
	    MAP_NOTFOUND;
	if (rc == MAP_NOTFOUND && local_domain(domain) &&
	    strcasecmp(local, "postmaster") == 0)
		rc = MAP_FOUND;		/* RFC 5321 4.5.1: always accepted */
	free(key);
	free(copy);
	buf_free(&c.val);
	return rc;
}

int
local_rcpt_exists(const char *addr)
{
	struct local_user lu;
	int rc = alias_exists(addr);

	if (rc != MAP_NOTFOUND)
		return rc;
	return local_user_find(addr, NULL, &lu);
}
