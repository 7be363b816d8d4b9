/*
 * hermod.conf reader (see conf.h). A load parses the file into a fresh
 * state, expands every $name reference, checks each typed value against
 * the key table (conf_keys.h), and only then replaces the global state,
 * so a bad file never leaves a half-loaded configuration behind: a daemon
 * that gets SIGHUP with a broken file keeps running on the old settings.
 *
 * Expansion is done once per load, after the whole file is read, so a
 * reference sees the key's final value wherever it is set in the file
 * (Postfix's lookup-time semantics without expanding on every lookup).
 * A reference loop is an error that fails the load; an unknown $name
 * expands to nothing with a warning.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "buf.h"
#include "conf.h"
#include "conf_impl.h"
#include "log.h"
#include "xalloc.h"

#define CONF_DIAG_MAX	100	/* diagnostics per load, then one "more" line */
#define CONF_NEST_MAX	16	/* ${a?${b?...}} nesting */

const struct conf_def conf_defs[CONF_NKEYS] = {
#define CONF_KEY(id, type, def, min, max, help) { #id, type, def, min, max, help },
#include "conf_keys.h"
#undef CONF_KEY
};

struct conf_state {
	char *file;		/* file the values came from, or NULL */
	char *raw[CONF_NKEYS];	/* as written; NULL: the default */
	int line[CONF_NKEYS];	/* where raw was set: >0 file line, 0 conf_set */
	char *val[CONF_NKEYS];	/* expanded */
	long long num[CONF_NKEYS];
	char **list[CONF_NKEYS];	/* split val, built on first use */
};

/* Expansion marks, per key, during one load. */
enum { M_TODO, M_BUSY, M_DONE, M_FAILED };

/* One load in progress. */
struct load {
	struct conf_state *st;
	const char *file;	/* for diagnostics */
	FILE *err;
	int ndiag, errors;
	unsigned char mark[CONF_NKEYS];
};

static struct conf_state *cur;

/* --- diagnostics ------------------------------------------------------ */

static void __attribute__((format(printf, 4, 5)))
diag(struct load *ld, int is_error, int line, const char *fmt, ...)
{
	char msg[600], where[300] = "";
	va_list ap;

	if (is_error)
		ld->errors++;
	if (++ld->ndiag > CONF_DIAG_MAX) {
		if (ld->ndiag != CONF_DIAG_MAX + 1)
			return;
		line = -2;
		fmt = "too many problems, not reporting more";
	}
	if (line > 0)
		snprintf(where, sizeof(where), "%s:%d: ", ld->file, line);
	else if (line == -1)
		snprintf(where, sizeof(where), "built-in default: ");
	else if (line == -2)
		snprintf(where, sizeof(where), "%s: ", ld->file);
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (ld->err != NULL)
		fprintf(ld->err, "%s%s\n", where, msg);
	else if (is_error)
		log_crit("%s%s", where, msg);
	else
		log_warn("%s%s", where, msg);
}

/* A value as quoted in a message: short, one line, printable. */
static const char *
show(const char *v, char *out, size_t size)
{
	size_t i, n = strlen(v);

	for (i = 0; i < n && i + 4 < size; i++)
		out[i] = (unsigned char)v[i] < 0x20 || v[i] == 0x7f ? '?' : v[i];
	if (i < n && i >= 3)
		memcpy(out + i - 3, "...", 3);
	out[i] = '\0';
	return out;
}

/* Where key k got its value, as a diag() line argument. */
static int
key_line(const struct conf_state *st, int k)
{
	return st->raw[k] != NULL ? st->line[k] : -1;
}

/* --- the FQDN default ------------------------------------------------- */

/* The host's name, computed once: gethostname(), made fully qualified
 * through the resolver when it has no dot. Start-up time only. */
static const char *
host_fqdn(void)
{
	static char *fqdn;
	char host[256] = "";
	struct addrinfo hints = { .ai_flags = AI_CANONNAME }, *res = NULL;

	if (fqdn != NULL)
		return fqdn;
	if (gethostname(host, sizeof(host) - 1) < 0)
		host[0] = '\0';
	if (host[0] != '\0' && strchr(host, '.') == NULL &&
	    getaddrinfo(host, NULL, &hints, &res) == 0) {
		if (res->ai_canonname != NULL && strchr(res->ai_canonname, '.'))
			fqdn = xstrdup(res->ai_canonname);
		freeaddrinfo(res);
	}
	if (fqdn == NULL)
		fqdn = xstrdup(host[0] != '\0' ? host : "localhost.localdomain");
	return fqdn;
}

/* Keys whose empty table default means "computed at load time". */
static int
computed_default(int k)
{
	return (k == C_myhostname || k == C_mydomain) && conf_defs[k].def[0] == '\0';
}

/* The unexpanded value of k (mydomain's computed default is done in
 * expand_key, since it needs myhostname's expanded value). */
static const char *
raw_value(const struct conf_state *st, int k)
{
	if (st->raw[k] != NULL)
		return st->raw[k];
	if (k == C_myhostname && computed_default(k))
		return host_fqdn();
	return conf_defs[k].def;
}

/* --- state ------------------------------------------------------------ */

static void
state_free(struct conf_state *st)
{
	if (st == NULL)
		return;
	for (int k = 0; k < CONF_NKEYS; k++) {
		free(st->raw[k]);
		free(st->val[k]);
		if (st->list[k] != NULL)
			for (char **p = st->list[k]; *p != NULL; p++)
				free(*p);
		free(st->list[k]);
	}
	free(st->file);
	free(st);
}

/* A new state with the raw values of `from` (NULL: all defaults). */
static struct conf_state *
state_new(const struct conf_state *from, const char *file)
{
	struct conf_state *st = xcalloc(1, sizeof(*st));

	if (file != NULL)
		st->file = xstrdup(file);
	else if (from != NULL && from->file != NULL)
		st->file = xstrdup(from->file);
	for (int k = 0; from != NULL && k < CONF_NKEYS; k++) {
		if (from->raw[k] != NULL)
			st->raw[k] = xstrdup(from->raw[k]);
		st->line[k] = from->line[k];
	}
	return st;
}

/* --- names ------------------------------------------------------------ */

static int
is_name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '_';
}

static size_t
name_span(const char *s, size_t n)
{
	size_t i = 0;

	while (i < n && is_name_char(s[i]))
		i++;
	return i;
}

static int
lookup_n(const char *name, size_t n)
{
	for (int k = 0; k < CONF_NKEYS; k++)
		if (strncmp(conf_defs[k].name, name, n) == 0 &&
		    conf_defs[k].name[n] == '\0')
			return k;
	return -1;
}

int
conf_lookup_key(const char *name)
{
	return name != NULL ? lookup_n(name, strlen(name)) : -1;
}

/* --- expansion -------------------------------------------------------- */

static int expand_key(struct load *ld, int k);
static int expand_text(struct load *ld, int k, const char *s, size_t n,
    struct buf *out, int depth);

static int
bad_value(struct load *ld, int k, const char *v, const char *why)
{
	char sv[120];

	diag(ld, 1, key_line(ld->st, k), "bad value for %s: '%s' (%s)",
	    conf_defs[k].name, show(v, sv, sizeof(sv)), why);
	return -1;
}

/* The expanded value of the key named name[0..n) referenced from key k:
 * "" for an unknown name (with a warning), NULL after an error. */
static const char *
ref_value(struct load *ld, int k, const char *name, size_t n)
{
	int j = lookup_n(name, n);
	char why[160];

	if (j < 0) {
		diag(ld, 0, key_line(ld->st, k), "unknown parameter $%.*s in the value of %s",
		    (int)(n > 64 ? 64 : n), name, conf_defs[k].name);
		return "";
	}
	if (ld->mark[j] == M_BUSY) {
		snprintf(why, sizeof(why), "$%s refers back to itself", conf_defs[j].name);
		bad_value(ld, k, raw_value(ld->st, k), why);
		return NULL;
	}
	return expand_key(ld, j) < 0 ? NULL : ld->st->val[j];
}

/* The end of a ${name?text} text: the index of the matching '}' in
 * s[0..n), or n when there is none. */
static size_t
brace_end(const char *s, size_t n)
{
	int level = 1;

	for (size_t i = 0; i < n; i++) {
		if (s[i] == '{')
			level++;
		else if (s[i] == '}' && --level == 0)
			return i;
	}
	return n;
}

/* ${name}, ${name?text} (text when name is not empty), ${name:text}
 * (text when it is empty). s points after "${"; *used gets the length
 * consumed, including the closing brace. */
static int
expand_brace(struct load *ld, int k, const char *s, size_t n, size_t *used,
    struct buf *out, int depth)
{
	size_t nl = name_span(s, n), end;
	const char *v;

	if (nl == 0 || nl == n || (s[nl] != '}' && s[nl] != '?' && s[nl] != ':'))
		return bad_value(ld, k, raw_value(ld->st, k), "bad ${...} expression");
	if ((v = ref_value(ld, k, s, nl)) == NULL)
		return -1;
	if (s[nl] == '}') {
		*used = nl + 1;
		return buf_puts(out, v) < 0 ? -2 : 0;
	}
	end = nl + 1 + brace_end(s + nl + 1, n - nl - 1);
	if (end >= n)
		return bad_value(ld, k, raw_value(ld->st, k), "unterminated ${...}");
	*used = end + 1;
	if ((s[nl] == '?') == (v[0] != '\0')) {
		if (depth >= CONF_NEST_MAX)
			return bad_value(ld, k, raw_value(ld->st, k), "${...} nested too deeply");
		return expand_text(ld, k, s + nl + 1, end - nl - 1, out, depth + 1);
	}
	return 0;
}

/* Append s[0..n) to out with $ references expanded; -1 after a reported
 * error, -2 when out is full. */
static int
expand_text(struct load *ld, int k, const char *s, size_t n, struct buf *out,
    int depth)
{
	size_t i = 0, used = 0, nl;
	const char *v;
	int rc;

	while (i < n) {
		const char *d = memchr(s + i, '$', n - i);
		size_t lit = d != NULL ? (size_t)(d - s) - i : n - i;

		if (buf_append(out, s + i, lit) < 0)
			return -2;
		if ((i += lit) >= n)
			break;
		if (i + 1 < n && s[i + 1] == '{') {
			if ((rc = expand_brace(ld, k, s + i + 2, n - i - 2, &used, out, depth)) < 0)
				return rc;
			i += 2 + used;
		} else if ((nl = name_span(s + i + 1, n - i - 1)) > 0) {
			if ((v = ref_value(ld, k, s + i + 1, nl)) == NULL)
				return -1;
			if (buf_puts(out, v) < 0)
				return -2;
			i += 1 + nl;
		} else {	/* "$$" is one '$'; a '$' before anything else is itself */
			if (buf_putc(out, '$') < 0)
				return -2;
			i += i + 1 < n && s[i + 1] == '$' ? 2 : 1;
		}
	}
	return 0;
}

/* mydomain's computed default: myhostname less its first label. */
static int
derive_domain(struct load *ld, struct buf *out)
{
	const char *h, *dot;

	if (expand_key(ld, C_myhostname) < 0)
		return -1;
	h = ld->st->val[C_myhostname];
	dot = strchr(h, '.');
	return buf_puts(out, dot != NULL && dot[1] != '\0' ? dot + 1 : "localdomain") < 0 ? -2 : 0;
}

static int
expand_key(struct load *ld, int k)
{
	struct conf_state *st = ld->st;
	struct buf b;
	const char *raw;
	int rc;

	if (ld->mark[k] == M_DONE)
		return 0;
	if (ld->mark[k] == M_FAILED)
		return -1;
	ld->mark[k] = M_BUSY;
	buf_init(&b, CONF_LINE_MAX);
	raw = raw_value(st, k);
	if (k == C_mydomain && st->raw[k] == NULL && computed_default(k))
		rc = derive_domain(ld, &b);
	else
		rc = expand_text(ld, k, raw, strlen(raw), &b, 0);
	if (rc == -2)
		bad_value(ld, k, raw, "too long after $name expansion");
	if (rc < 0) {
		buf_free(&b);
		ld->mark[k] = M_FAILED;
		return -1;
	}
	st->val[k] = buf_release(&b);
	ld->mark[k] = M_DONE;
	return 0;
}

/* --- typed values (conf_value.c) -------------------------------------- */

static void
check_value(struct load *ld, int k)
{
	char range[120];
	const char *why = conf_value_check(k, ld->st->val[k], &ld->st->num[k],
	    range, sizeof(range));

	if (why != NULL)
		bad_value(ld, k, ld->st->val[k], why);
}

/* Expand and check every key; 0 when the state is good to use. */
static int
build(struct load *ld)
{
	for (int k = 0; k < CONF_NKEYS; k++)
		if (expand_key(ld, k) == 0)
			check_value(ld, k);
	return ld->errors ? -1 : 0;
}

/* --- the file syntax -------------------------------------------------- */

static int
is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

static void
trim(const char **s, size_t *n)
{
	while (*n > 0 && is_blank(**s))
		(*s)++, (*n)--;
	while (*n > 0 && is_blank((*s)[*n - 1]))
		(*n)--;
}

/* One logical line "name = value", starting at line `line`. */
static void
assign(struct load *ld, const char *text, size_t len, int line)
{
	const char *eq = memchr(text, '=', len), *name = text, *val;
	size_t nlen, vlen;
	char sv[120];
	int k;

	if (eq == NULL) {
		diag(ld, 1, line, "missing '=' in '%s'", show(text, sv, sizeof(sv)));
		return;
	}
	nlen = (size_t)(eq - text);
	trim(&name, &nlen);
	val = eq + 1;
	vlen = len - (size_t)(val - text);
	trim(&val, &vlen);
	if (nlen == 0 || name_span(name, nlen) != nlen) {
		snprintf(sv, sizeof(sv), "%.*s", (int)(nlen > 64 ? 64 : nlen), name);
		diag(ld, 1, line, "bad parameter name '%s'", show(sv, sv, sizeof(sv)));
		return;
	}
	if ((k = lookup_n(name, nlen)) < 0) {
		diag(ld, 0, line, "unknown parameter %.*s", (int)(nlen > 64 ? 64 : nlen), name);
		return;
	}
	if (ld->st->raw[k] != NULL)
		diag(ld, 0, line, "%s overrides the value at line %d", conf_defs[k].name,
		    ld->st->line[k]);
	free(ld->st->raw[k]);
	ld->st->raw[k] = xstrndup(val, vlen);
	ld->st->line[k] = line;
}

/* Split data into physical lines, join continuations into logical lines
 * and assign each. -1 at a structural error (NUL, over-long line). */
static int
parse(struct load *ld, const char *data, size_t len)
{
	struct buf logical;
	size_t pos = 0;
	int line = 0, start = 0, rc = 0;

	buf_init(&logical, CONF_LINE_MAX);
	while (pos < len && rc == 0) {
		const char *p = data + pos, *nl = memchr(p, '\n', len - pos), *s = p;
		size_t n = nl != NULL ? (size_t)(nl - p) : len - pos, m = n;

		pos += n + (nl != NULL);
		line++;
		if (n > CONF_LINE_MAX) {
			diag(ld, 1, line, "line too long (more than %d bytes)", CONF_LINE_MAX);
			rc = -1;
		} else if (memchr(p, '\0', n) != NULL) {
			diag(ld, 1, line, "NUL byte in line");
			rc = -1;
		} else if (trim(&s, &m), m == 0 || *s == '#') {
			continue;	/* blank and comment lines do not end a logical line */
		} else if (is_blank(*p)) {
			if (start == 0)
				diag(ld, 1, line, "continuation line with no parameter before it");
			else if (buf_putc(&logical, ' ') < 0 || buf_append(&logical, s, m) < 0) {
				diag(ld, 1, start, "line too long (more than %d bytes with its continuations)", CONF_LINE_MAX);
				rc = -1;
			}
		} else {
			if (start != 0)
				assign(ld, logical.data, logical.len, start);
			buf_reset(&logical);
			buf_append(&logical, s, m);	/* m <= CONF_LINE_MAX */
			start = line;
		}
	}
	if (rc == 0 && start != 0)
		assign(ld, logical.data, logical.len, start);
	buf_free(&logical);
	return rc;
}

/* --- loading ---------------------------------------------------------- */

/* Build the state in ld and make it current if it is good. */
static int
commit(struct load *ld, int parse_rc)
{
	/* build() even after syntax errors, to report every problem at once */
	if (parse_rc < 0 || build(ld) < 0) {
		state_free(ld->st);
		return -1;
	}
	state_free(cur);
	cur = ld->st;
	return 0;
}

int
conf_load_mem(const char *name, const char *data, size_t len, FILE *err)
{
	struct load ld = { .file = name != NULL ? name : "(memory)", .err = err };

	ld.st = state_new(NULL, name);
	if (len > CONF_FILE_MAX) {
		size_t lines = 1;

		for (const char *p = data; (p = memchr(p, '\n', data + CONF_FILE_MAX - p)) != NULL; p++)
			lines++;
		diag(&ld, 1, (int)lines, "file too large (more than %d bytes)", CONF_FILE_MAX);
		return commit(&ld, -1);
	}
	return commit(&ld, parse(&ld, data, len));
}

/* Read a whole file, up to one byte past the cap (so that the loader
 * can say where it went over). */
static int
read_file(int fd, struct buf *b)
{
	char chunk[16384];
	ssize_t n;

	while ((n = read(fd, chunk, sizeof(chunk))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (buf_append(b, chunk, (size_t)n) < 0) {
			/* fill up to max (one past the file cap) and stop:
			 * conf_load_mem reports the size */
			buf_append(b, chunk, b->max - b->len);
			break;
		}
	}
	return 0;
}

int
conf_load(const char *path, int missing_ok, FILE *err)
{
	struct load ld = { .file = path, .err = err };
	struct buf b;
	int fd, rc;

	if (path == NULL)
		return conf_load_mem(NULL, "", 0, err);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		if (errno == ENOENT && missing_ok)
			return conf_load_mem(NULL, "", 0, err);
		diag(&ld, 1, -2, "%s", strerror(errno));
		return -1;
	}
	buf_init(&b, (size_t)CONF_FILE_MAX + 1);
	if (read_file(fd, &b) < 0) {
		diag(&ld, 1, -2, "%s", strerror(errno));
		rc = -1;
	} else {
		rc = conf_load_mem(path, b.data != NULL ? b.data : "", b.len, err);
	}
	close(fd);
	buf_free(&b);
	return rc;
}

const char *
conf_path(const char *arg)
{
	const char *env;

	if (arg != NULL)
		return arg;
	if ((env = getenv("HERMOD_CONF")) != NULL && env[0] != '\0')
		return env;
	return SYSCONFDIR "/hermod.conf";
}

int
conf_set(const char *name, const char *value, FILE *err)
{
	struct load ld = { .file = "override", .err = err };
	int k = conf_lookup_key(name);
	size_t n = value != NULL ? strlen(value) : 0;

	if (k < 0) {
		diag(&ld, 1, 0, "unknown parameter %.64s", name != NULL ? name : "(null)");
		return -1;
	}
	if (n > CONF_LINE_MAX) {
		diag(&ld, 1, 0, "value of %s too long (more than %d bytes)", name, CONF_LINE_MAX);
		return -1;
	}
	ld.st = state_new(cur, NULL);
	trim(&value, &n);
	free(ld.st->raw[k]);
	ld.st->raw[k] = xstrndup(value != NULL ? value : "", n);
	ld.st->line[k] = 0;
	if (ld.st->file != NULL)
		ld.file = ld.st->file;
	return commit(&ld, 0);
}

/* --- accessors -------------------------------------------------------- */

/* Before any conf_load(), the accessors see the defaults. */
static struct conf_state *
state(void)
{
	if (cur == NULL && conf_load(NULL, 1, stderr) < 0)
		fatal("the built-in configuration defaults do not load");
	return cur;
}

const char *
conf_str(enum conf_key k)
{
	return state()->val[k];
}

long long
conf_num(enum conf_key k)
{
	return state()->num[k];
}

int
conf_bool(enum conf_key k)
{
	return state()->num[k] != 0;
}

int
conf_is_set(enum conf_key k)
{
	return state()->raw[k] != NULL;
}

static char **
split_list(const char *v)
{
	static const char sep[] = ", \t\r\n";
	size_t n = 0, i = 0;
	char **items;

	for (const char *p = v + strspn(v, sep); *p; p += strspn(p, sep)) {
		p += strcspn(p, sep);
		n++;
	}
	items = xcalloc(n + 1, sizeof(*items));
	for (const char *p = v + strspn(v, sep); *p; p += strspn(p, sep)) {
		size_t len = strcspn(p, sep);

		items[i++] = xstrndup(p, len);
		p += len;
	}
	return items;
}

char *const *
conf_list(enum conf_key k)
{
	struct conf_state *st = state();

	if (st->list[k] == NULL)
		st->list[k] = split_list(st->val[k]);
	return st->list[k];
}

int
conf_list_has(enum conf_key k, const char *item)
{
	for (char *const *p = conf_list(k); *p != NULL; p++)
		if (strcasecmp(*p, item) == 0)
			return 1;
	return 0;
}

/* --- printing --------------------------------------------------------- */

void
conf_print_key(FILE *out, enum conf_key k, int expand)
{
	const struct conf_state *st = state();
	const char *v = st->val[k];

	/* Unexpanded: as written, or the table's default; a computed
	 * default has no written form, so it shows its value. */
	if (!expand && st->raw[k] != NULL)
		v = st->raw[k];
	else if (!expand && !computed_default(k))
		v = conf_defs[k].def;
	fprintf(out, "%s =%s%s\n", conf_defs[k].name, v[0] != '\0' ? " " : "", v);
}

void
conf_print(FILE *out, int only_changed, int expand)
{
	for (int k = 0; k < CONF_NKEYS; k++)
		if (!only_changed || state()->raw[k] != NULL)
			conf_print_key(out, (enum conf_key)k, expand);
}

/* Text for man(7): backslashes escaped, no control characters. */
static void
man_text(FILE *out, const char *s)
{
	if (*s == '.' || *s == '\'')
		fputs("\\&", out);
	for (; *s; s++) {
		if (*s == '\\')
			fputs("\\e", out);
		else if ((unsigned char)*s >= 0x20)
			fputc(*s, out);
	}
}

void
conf_print_man(FILE *out)
{
	for (int k = 0; k < CONF_NKEYS; k++) {
		const struct conf_def *d = &conf_defs[k];
		const char *unit = conf_type_unit(d->type);

		fprintf(out, ".TP\n.B %s\n(%s; default: ", d->name, conf_type_name(d->type));
		if (computed_default(k))
			fputs("computed", out);
		else if (d->def[0] == '\0')
			fputs("empty", out);
		else
			man_text(out, d->def);
		if (unit != NULL)
			fprintf(out, "; %lld to %lld%s", d->min, d->max, unit);
		fputs(")\n.br\n", out);
		/* The table's help is a lower-case phrase; the page wants a sentence. */
		if (d->help[0] >= 'a' && d->help[0] <= 'z') {
			fputc(d->help[0] - 'a' + 'A', out);
			man_text(out, d->help + 1);
		} else {
			man_text(out, d->help);
		}
		fputs(".\n", out);
	}
}

/* A commented hermod.conf with every key at its default. */
void
conf_print_sample(FILE *out)
{
	for (int k = 0; k < CONF_NKEYS; k++) {
		const struct conf_def *d = &conf_defs[k];

		fprintf(out, "\n# %s\n#%s =%s%s\n", d->help, d->name,
		    d->def[0] != '\0' ? " " : "", d->def);
	}
}
