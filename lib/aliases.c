/*
 * The aliases(5) text syntax: parsing one entry or a target list into the
 * stored form (NUL-terminated targets), and compiling the file into
 * aliases.db through map_compile(). See aliases.h.
 */
#include <ctype.h>
#include <string.h>

#include "aliases.h"
#include "map.h"

#define SEPARATOR(c) ((c) == ',' || (c) == ' ' || (c) == '\t' || \
	(c) == '\n' || (c) == '\r')

static int
fail(char *err, size_t errlen, const char *msg)
{
	snprintf(err, errlen, "%s", msg);
	return -1;
}

/* Control characters never belong in a name or target. */
static int
has_ctl(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
			return 1;
	return 0;
}

/* Scan a quoted string starting at p[0] == '"'; returns the length through
 * the closing quote, or 0 when it is not closed. A backslash quotes the
 * next character. */
static size_t
quoted_len(const char *p, size_t n)
{
	for (size_t i = 1; i < n; i++) {
		if (p[i] == '\\' && i + 1 < n)
			i++;
		else if (p[i] == '"')
			return i + 1;
	}
	return 0;
}

/* Copy the inside of a quoted string, undoing backslash escapes. */
static int
unquote(struct buf *out, const char *p, size_t qlen)
{
	for (size_t i = 1; i + 1 < qlen; i++) {
		if (p[i] == '\\')
			i++;
		if (buf_putc(out, p[i]) < 0)
			return -1;
	}
	return 0;
}

static int
check_target(const char *t, size_t n, char *err, size_t errlen)
{
	const char *at;

	if (n > ALIAS_TARGET_MAX)
		return fail(err, errlen, "target too long");
	if (has_ctl(t, n))
		return fail(err, errlen, "control character in target");
	if (n >= 9 && strncasecmp(t, ":include:", 9) == 0) {
		if (n == 9 || t[9] != '/')
			return fail(err, errlen,
			    ":include: needs an absolute path");
		return 0;
	}
	if (t[0] == '|')
		return n > 1 ? 0 : fail(err, errlen, "empty command after |");
	if (t[0] == '/')
		return 0;
	if (t[0] == ':')
		return fail(err, errlen, "unknown :keyword: target");
	at = memrchr(t, '@', n);
	if (at != NULL && (at == t || at == t + n - 1))
		return fail(err, errlen, "bad address: empty local part or domain");
	return 0;
}

/* One token: a quoted string alone loses its quotes ("|cmd arg");
 * otherwise quotes inside stay ("john doe"@example.org). */
static int
take_token(const char *p, size_t n, size_t *used, struct buf *value,
    char *err, size_t errlen)
{
	size_t i = 0, q, start = value->len;

	while (i < n && !SEPARATOR(p[i])) {
		if (p[i] == '"') {
			if ((q = quoted_len(p + i, n - i)) == 0)
				return fail(err, errlen, "unterminated quote");
			i += q;
		} else {
			i++;
		}
	}
	*used = i;
	if (p[0] == '"' && quoted_len(p, n) == i) {
		if (i == 2)
			return fail(err, errlen, "empty quoted target");
		if (unquote(value, p, i) < 0)
			return fail(err, errlen, "entry too long");
	} else if (buf_append(value, p, i) < 0) {
		return fail(err, errlen, "entry too long");
	}
	if (check_target(value->data + start, value->len - start, err,
	    errlen) < 0)
		return -1;
	return buf_putc(value, '\0') < 0 ? fail(err, errlen, "entry too long") : 0;
}

int
aliases_parse_targets(const char *list, size_t len, struct buf *value,
    char *err, size_t errlen)
{
	size_t i = 0, used;
	int n = 0;

	while (i < len) {
		if (SEPARATOR(list[i])) {
			i++;
			continue;
		}
		if (take_token(list + i, len - i, &used, value, err, errlen) < 0)
			return -1;
		i += used;
		n++;
	}
	return n ? 0 : fail(err, errlen, "no targets");
}

/* The name: quoted, or everything up to ':' without white space. */
static int
parse_name(const char *line, size_t len, size_t *used, struct buf *name,
    char *err, size_t errlen)
{
	size_t i, q;

	if (line[0] == '"') {
		if ((q = quoted_len(line, len)) == 0)
			return fail(err, errlen, "unterminated quote in name");
		if (unquote(name, line, q) < 0)
			return fail(err, errlen, "name too long");
		i = q;
	} else {
		for (i = 0; i < len && line[i] != ':' && !isspace((unsigned char)line[i]); i++)
			;
		if (buf_append(name, line, i) < 0)
			return fail(err, errlen, "name too long");
	}
	if (name->len == 0)
		return fail(err, errlen, "empty name");
	if (has_ctl(name->data, name->len))
		return fail(err, errlen, "control character in name");
	for (size_t j = 0; j < name->len; j++)
		name->data[j] = (char)tolower((unsigned char)name->data[j]);
	while (i < len && (line[i] == ' ' || line[i] == '\t'))
		i++;
	if (i >= len || line[i] != ':')
		return fail(err, errlen, "missing ':' after the name "
		    "(quote a name with white space)");
	*used = i + 1;
	return 0;
}

int
aliases_parse_entry(const char *line, size_t len, struct buf *name,
    struct buf *value, char *err, size_t errlen)
{
	size_t used;

	buf_reset(name);
	buf_reset(value);
	if (len == 0)
		return fail(err, errlen, "empty line");
	if (parse_name(line, len, &used, name, err, errlen) < 0)
		return -1;
	if (name->len > MAP_KEY_MAX)
		return fail(err, errlen, "name too long");
	return aliases_parse_targets(line + used, len - used, value, err, errlen);
}

enum alias_target_kind
aliases_target_kind(const char *t, const char **arg)
{
	*arg = t;
	if (strncasecmp(t, ":include:", 9) == 0) {
		*arg = t + 9;
		return ALIAS_T_INCLUDE;
	}
	if (t[0] == '|') {
		*arg = t + 1;
		return ALIAS_T_PIPE;
	}
	if (t[0] == '/')
		return ALIAS_T_FILE;
	return ALIAS_T_ADDRESS;
}

const char *
aliases_value_next(const char *val, size_t len, size_t *off)
{
	const char *t, *end;

	if (*off >= len)
		return NULL;
	t = val + *off;
	if ((end = memchr(t, '\0', len - *off)) == NULL)
		return NULL;	/* malformed: no terminator */
	*off = (size_t)(end - val) + 1;
	return t;
}

int
aliases_compile(const char *src, const char *dbpath, FILE *diag,
    unsigned long *nentries)
{
	return map_compile(src, dbpath, diag, aliases_parse_entry, nentries);
}
