/*
 * The users table (hermod-users(5)): parsing a line into a record, the
 * record's stored form in users.db, and compiling the file. See users.h.
 */
#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>

#include "map.h"
#include "users.h"

#define ID_MAX 0x7fffffffLL	/* uid_t/gid_t values we accept */
#define QUOTA_MAX (1ULL << 50)	/* a petabyte: anything more is a typo */

static int
fail(char *err, size_t errlen, const char *fmt, const char *arg)
{
	snprintf(err, errlen, fmt, arg);
	return -1;
}

/* Next white-space separated word: *p advanced, word in [*w, *w + *wl). */
static int
next_word(const char **p, const char *end, const char **w, size_t *wl)
{
	while (*p < end && isspace((unsigned char)**p))
		(*p)++;
	*w = *p;
	while (*p < end && !isspace((unsigned char)**p))
		(*p)++;
	*wl = (size_t)(*p - *w);
	return *wl > 0;
}

static int
parse_num(const char *s, long long max, long long *out)
{
	char *end;

	if (!isdigit((unsigned char)s[0]))
		return -1;
	errno = 0;
	*out = strtoll(s, &end, 10);
	return errno || *end || *out > max ? -1 : 0;
}

static int
parse_quota(const char *s, unsigned long long *out)
{
	static const struct { char c; unsigned shift; } units[] = {
		{ 'k', 10 }, { 'm', 20 }, { 'g', 30 }, { 't', 40 },
	};
	unsigned long long v;
	char *end;

	if (!isdigit((unsigned char)s[0]))
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || v > QUOTA_MAX)
		return -1;
	for (size_t i = 0; *end && i < sizeof(units) / sizeof(units[0]); i++) {
		if (tolower((unsigned char)*end) == units[i].c) {
			if (v > (QUOTA_MAX >> units[i].shift))
				return -1;
			v <<= units[i].shift;
			end++;
			break;
		}
	}
	*out = v;
	return *end ? -1 : 0;
}

/* uid=N|user: a user name also gives the user's group unless gid= is
 * given (on the same line, before or after). */
static int
opt_uid(const char *v, struct users_record *r, int *gid_from_user, char *err,
    size_t errlen)
{
	struct passwd *pw;
	long long n;

	if (parse_num(v, ID_MAX, &n) == 0) {
		r->uid = (uid_t)n;
		return 0;
	}
	if ((pw = getpwnam(v)) == NULL)
		return fail(err, errlen, "uid=%s: no such user", v);
	r->uid = pw->pw_uid;
	if (r->gid == (gid_t)-1) {
		r->gid = pw->pw_gid;
		*gid_from_user = 1;
	}
	return 0;
}

static int
opt_gid(const char *v, struct users_record *r, char *err, size_t errlen)
{
	struct group *gr;
	long long n;

	if (parse_num(v, ID_MAX, &n) == 0) {
		r->gid = (gid_t)n;
		return 0;
	}
	if ((gr = getgrnam(v)) == NULL)
		return fail(err, errlen, "gid=%s: no such group", v);
	r->gid = gr->gr_gid;
	return 0;
}

static int
parse_option(const char *w, size_t wl, struct users_record *r, unsigned *seen,
    int *gid_from_user, char *err, size_t errlen)
{
	static const char *const names[] = { "uid", "gid", "password", "quota" };
	char opt[USERS_PASSWORD_MAX + 16];
	const char *eq, *v;
	size_t i;

	if (wl >= sizeof(opt))
		return fail(err, errlen, "option too long%s", "");
	memcpy(opt, w, wl);
	opt[wl] = '\0';
	if ((eq = strchr(opt, '=')) == NULL || eq[1] == '\0')
		return fail(err, errlen, "expected name=value, got \"%s\"", opt);
	v = eq + 1;
	for (i = 0; i < 4; i++)
		if ((size_t)(eq - opt) == strlen(names[i]) &&
		    strncasecmp(opt, names[i], strlen(names[i])) == 0)
			break;
	if (i == 4)
		return fail(err, errlen, "unknown option \"%s\"", opt);
	if (*seen & (1u << i))
		return fail(err, errlen, "%s= given twice", names[i]);
	*seen |= 1u << i;
	switch (i) {
	case 0:
		return opt_uid(v, r, gid_from_user, err, errlen);
	case 1:
		if (*gid_from_user)
			r->gid = (gid_t)-1;
		return opt_gid(v, r, err, errlen);
	case 2:
		if (strlen(v) > USERS_PASSWORD_MAX)
			return fail(err, errlen, "password hash too long%s", "");
		memcpy(r->password, v, strlen(v) + 1);
		return 0;
	default:
		if (parse_quota(v, &r->quota) < 0)
			return fail(err, errlen, "bad quota \"%s\" (bytes, "
			    "or a number with k m g t)", v);
		return 0;
	}
}

static int
parse_address(const char *w, size_t wl, struct buf *key, char *err,
    size_t errlen)
{
	const char *at;

	if (wl > MAP_KEY_MAX)
		return fail(err, errlen, "address too long%s", "");
	for (size_t i = 0; i < wl; i++)
		if ((unsigned char)w[i] < 0x21 || w[i] == 0x7f)
			return fail(err, errlen, "control character in address%s", "");
	at = memrchr(w, '@', wl);
	if (at != NULL && (at == w || at == w + wl - 1))
		return fail(err, errlen, "bad address: empty local part or domain%s", "");
	for (size_t i = 0; i < wl; i++)
		if (buf_putc(key, (char)tolower((unsigned char)w[i])) < 0)
			return fail(err, errlen, "address too long%s", "");
	return 0;
}

static int
parse_mailbox(const char *w, size_t wl, struct users_record *r, char *err,
    size_t errlen)
{
	if (wl == 0)
		return fail(err, errlen, "missing MAILBOX after the address%s", "");
	if (w[0] != '/')
		return fail(err, errlen, "MAILBOX must be an absolute path%s", "");
	if (wl > USERS_MAILBOX_MAX)
		return fail(err, errlen, "MAILBOX path too long%s", "");
	for (size_t i = 0; i < wl; i++)
		if ((unsigned char)w[i] < 0x20 || w[i] == 0x7f)
			return fail(err, errlen, "control character in MAILBOX%s", "");
	memcpy(r->mailbox, w, wl);
	r->mailbox[wl] = '\0';
	r->is_maildir = w[wl - 1] == '/';
	return 0;
}

int
users_parse_line(const char *line, size_t len, struct buf *key,
    struct users_record *rec, char *err, size_t errlen)
{
	const char *p = line, *end = line + len, *w;
	unsigned seen = 0;
	int gid_from_user = 0;
	size_t wl;

	buf_reset(key);
	memset(rec, 0, sizeof(*rec));
	rec->uid = (uid_t)-1;
	rec->gid = (gid_t)-1;
	if (memchr(line, '\0', len) != NULL)
		return fail(err, errlen, "NUL byte in line%s", "");
	if (!next_word(&p, end, &w, &wl))
		return fail(err, errlen, "empty line%s", "");
	if (parse_address(w, wl, key, err, errlen) < 0)
		return -1;
	next_word(&p, end, &w, &wl);
	if (parse_mailbox(w, wl, rec, err, errlen) < 0)
		return -1;
	while (next_word(&p, end, &w, &wl))
		if (parse_option(w, wl, rec, &seen, &gid_from_user, err,
		    errlen) < 0)
			return -1;
	return 0;
}

int
users_record_format(const struct users_record *r, struct buf *out)
{
	char uid[24] = "", gid[24] = "", quota[24] = "";

	if (r->uid != (uid_t)-1)
		snprintf(uid, sizeof(uid), "%lu", (unsigned long)r->uid);
	if (r->gid != (gid_t)-1)
		snprintf(gid, sizeof(gid), "%lu", (unsigned long)r->gid);
	if (r->quota)
		snprintf(quota, sizeof(quota), "%llu", r->quota);
	if (buf_append(out, r->mailbox, strlen(r->mailbox) + 1) < 0 ||
	    buf_append(out, uid, strlen(uid) + 1) < 0 ||
	    buf_append(out, gid, strlen(gid) + 1) < 0 ||
	    buf_append(out, r->password, strlen(r->password) + 1) < 0 ||
	    buf_append(out, quota, strlen(quota) + 1) < 0)
		return -1;
	return 0;
}

/* Field i of a stored record: NULL when missing or too long. */
static const char *
field(const char *val, size_t len, size_t *off, size_t max)
{
	const char *f = val + *off, *nul;

	if (*off >= len || (nul = memchr(f, '\0', len - *off)) == NULL ||
	    (size_t)(nul - f) > max)
		return NULL;
	*off += (size_t)(nul - f) + 1;
	return f;
}

int
users_record_parse(const char *val, size_t len, struct users_record *out)
{
	const char *mb, *uid, *gid, *pw, *q;
	size_t off = 0;
	long long n;

	memset(out, 0, sizeof(*out));
	if ((mb = field(val, len, &off, USERS_MAILBOX_MAX)) == NULL ||
	    (uid = field(val, len, &off, 20)) == NULL ||
	    (gid = field(val, len, &off, 20)) == NULL ||
	    (pw = field(val, len, &off, USERS_PASSWORD_MAX)) == NULL ||
	    (q = field(val, len, &off, 20)) == NULL || mb[0] != '/')
		return -1;
	strcpy(out->mailbox, mb);
	out->is_maildir = mb[strlen(mb) - 1] == '/';
	out->uid = (uid_t)-1;
	out->gid = (gid_t)-1;
	if (*uid && parse_num(uid, ID_MAX, &n) < 0)
		return -1;
	if (*uid)
		out->uid = (uid_t)n;
	if (*gid && parse_num(gid, ID_MAX, &n) < 0)
		return -1;
	if (*gid)
		out->gid = (gid_t)n;
	strcpy(out->password, pw);
	if (*q && parse_quota(q, &out->quota) < 0)
		return -1;
	return 0;
}

static int
users_parse_kv(const char *line, size_t len, struct buf *key,
    struct buf *value, char *err, size_t errlen)
{
	struct users_record r;

	if (users_parse_line(line, len, key, &r, err, errlen) < 0)
		return -1;
	if (users_record_format(&r, value) < 0)
		return fail(err, errlen, "entry too long%s", "");
	return 0;
}

int
users_compile(const char *src, const char *dbpath, FILE *diag,
    unsigned long *nentries)
{
	return map_compile(src, dbpath, diag, users_parse_kv, nentries);
}
