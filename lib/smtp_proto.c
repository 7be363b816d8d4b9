/*
 * Protocol engine, the line level: the bounded line reader over an
 * evbuffer, command verb/argument splitting, MAIL/RCPT argument splitting,
 * ESMTP parameters, xtext and BDAT. Pure functions and small state structs
 * (see smtp_proto.h); the reply table lives in smtp_reply.c and DATA in
 * smtp_proto_data.c.
 */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "smtp_proto.h"

void
smtp_line_init(struct smtp_line_reader *lr, size_t max)
{
	lr->max = max < 3 ? 3 : max;
	lr->discarding = 0;
}

/* Position of the first LF among the first `lim` bytes, or -1. */
static long
find_lf(struct evbuffer *in, size_t lim)
{
	struct evbuffer_ptr end, p;

	if (lim == 0)
		return -1;
	if (evbuffer_ptr_set(in, &end, lim, EVBUFFER_PTR_SET) < 0)
		return -1;
	p = evbuffer_search_range(in, "\n", 1, NULL, &end);
	return p.pos;
}

/* Discard up to and including the next LF; 1 when it was found. */
static int
discard_line(struct evbuffer *in)
{
	size_t len = evbuffer_get_length(in);
	long lf = find_lf(in, len);

	if (lf < 0) {
		evbuffer_drain(in, len);
		return 0;
	}
	evbuffer_drain(in, (size_t)lf + 1);
	return 1;
}

/* Flags of a line of len bytes (CR already stripped when there was one). */
static unsigned
line_flags(const char *line, size_t len)
{
	unsigned f = 0;
	const char *cr;

	if (memchr(line, '\0', len) != NULL)
		f |= SMTP_LINE_F_NUL;
	if ((cr = memchr(line, '\r', len)) != NULL)
		f |= SMTP_LINE_F_BARE_CR;
	return f;
}

enum smtp_line_res
smtp_line_read(struct smtp_line_reader *lr, struct evbuffer *in, char *line,
    size_t *lenp, unsigned *flagsp)
{
	size_t len, avail;
	long lf;
	unsigned f = 0;

	if (lr->discarding) {
		if (!discard_line(in))
			return SMTP_LINE_MORE;
		lr->discarding = 0;
	}
	avail = evbuffer_get_length(in);
	lf = find_lf(in, avail < lr->max ? avail : lr->max);
	if (lf < 0) {
		if (avail < lr->max)
			return SMTP_LINE_MORE;
		/* max bytes and no LF: the line is too long whatever follows. */
		lr->discarding = 1;
		if (discard_line(in))
			lr->discarding = 0;
		return SMTP_LINE_TOO_LONG;
	}
	len = (size_t)lf;
	evbuffer_remove(in, line, len);
	evbuffer_drain(in, 1);
	if (len > 0 && line[len - 1] == '\r')
		len--;
	else
		f |= SMTP_LINE_F_BARE_LF;
	line[len] = '\0';
	f |= line_flags(line, len);
	*lenp = len;
	*flagsp = f;
	return SMTP_LINE_OK;
}

int
smtp_cmd_split(char *line, char **verbp, char **argp)
{
	char *p = line, *arg, *end;
	size_t n = 0;

	for (; *p != '\0' && *p != ' '; p++, n++) {
		if (!isalnum((unsigned char)*p) || n >= SMTP_VERB_MAX)
			return -1;
		*p = (char)toupper((unsigned char)*p);
	}
	if (n == 0)
		return -1;
	arg = p;
	if (*p == ' ')
		*arg++ = '\0';
	while (*arg == ' ')
		arg++;
	end = arg + strlen(arg);
	while (end > arg && end[-1] == ' ')
		*--end = '\0';
	*verbp = line;
	*argp = arg;
	return 0;
}

/*
 * End of a bracketed path starting at p ('<'): the matching '>' outside
 * quoted strings and backslash pairs, or NULL.
 */
static char *
path_end(char *p)
{
	int quoted = 0;

	for (p++; *p != '\0'; p++) {
		if (*p == '\\') {
			if (p[1] == '\0')
				return NULL;
			p++;
		} else if (*p == '"') {
			quoted = !quoted;
		} else if (*p == '>' && !quoted) {
			return p;
		}
	}
	return NULL;
}

int
smtp_path_split(char *arg, const char *prefix, int lenient, char **pathp,
    char **paramsp)
{
	size_t plen = strlen(prefix);
	char *p, *end;

	if (strncasecmp(arg, prefix, plen) != 0)
		return -2;
	p = arg + plen;
	while (*p == ' ')
		p++;
	if (*p == '<') {
		if ((end = path_end(p)) == NULL)
			return -1;
		end++;
	} else {
		if (!lenient || *p == '\0')
			return -1;
		end = p + strcspn(p, " ");
	}
	if (*end != '\0' && *end != ' ')
		return -1;
	*pathp = p;
	if (*end == ' ') {
		*end++ = '\0';
		while (*end == ' ')
			end++;
	}
	*paramsp = end;
	return 0;
}

static int
param_key_ok(const char *k)
{
	if (!isalnum((unsigned char)*k))
		return 0;
	for (k++; *k != '\0'; k++)
		if (!isalnum((unsigned char)*k) && *k != '-')
			return 0;
	return 1;
}

static int
param_value_ok(const char *v, unsigned flags)
{
	const unsigned char *u = (const unsigned char *)v;

	if (*u == '\0')
		return 0;
	for (; *u != '\0'; u++) {
		if (*u >= 0x80 && (flags & SMTP_PARAM_F_UTF8))
			continue;
		if (*u < 33 || *u > 126 || *u == '=')
			return 0;
	}
	return 1;
}

/* Check one "KEY[=VALUE]" word and add it to out. */
static enum smtp_param_err
param_add(char *word, unsigned flags, struct smtp_params *out)
{
	char *eq = strchr(word, '=');
	struct smtp_param *np;

	if (eq != NULL)
		*eq++ = '\0';
	if (!param_key_ok(word) || (eq != NULL && !param_value_ok(eq, flags)))
		return SMTP_PARAM_SYNTAX;
	if (smtp_param_get(out, word) != NULL)
		return SMTP_PARAM_DUPLICATE;
	if (out->n >= SMTP_PARAMS_MAX)
		return SMTP_PARAM_TOO_MANY;
	np = &out->p[out->n++];
	np->key = word;
	np->value = eq;
	return SMTP_PARAM_OK;
}

enum smtp_param_err
smtp_params_parse(char *s, unsigned flags, struct smtp_params *out)
{
	enum smtp_param_err e;
	char *word;

	out->n = 0;
	for (;;) {
		while (*s == ' ')
			s++;
		if (*s == '\0')
			return SMTP_PARAM_OK;
		word = s;
		s += strcspn(s, " ");
		if (*s == ' ')
			*s++ = '\0';
		if ((e = param_add(word, flags, out)) != SMTP_PARAM_OK)
			return e;
	}
}

const struct smtp_param *
smtp_param_get(const struct smtp_params *ps, const char *key)
{
	for (unsigned i = 0; i < ps->n; i++)
		if (strcasecmp(ps->p[i].key, key) == 0)
			return &ps->p[i];
	return NULL;
}

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static int
xchar_ok(unsigned char c)
{
	return c >= 33 && c <= 126 && c != '+' && c != '=';
}

long
smtp_xtext_decode(const char *in, char *out, size_t outsz)
{
	const unsigned char *u = (const unsigned char *)in;
	size_t n = 0;
	int hi, lo, c;

	if (outsz == 0)
		return -1;
	while (*u != '\0') {
		if (*u == '+') {
			if ((hi = hexval(u[1])) < 0 || (lo = hexval(u[2])) < 0)
				return -1;
			c = hi * 16 + lo;
			u += 3;
			if (c == 0)
				return -1;
		} else if (xchar_ok(*u)) {
			c = *u++;
		} else {
			return -1;
		}
		if (n + 1 >= outsz)
			return -1;
		out[n++] = (char)c;
	}
	out[n] = '\0';
	return (long)n;
}

int
smtp_xtext_valid(const char *in)
{
	const unsigned char *u = (const unsigned char *)in;

	while (*u != '\0') {
		if (*u == '+') {
			if (hexval(u[1]) < 0 || hexval(u[2]) < 0 ||
			    (u[1] == '0' && u[2] == '0'))
				return 0;
			u += 3;
		} else if (xchar_ok(*u)) {
			u++;
		} else {
			return 0;
		}
	}
	return 1;
}

int
smtp_dsn_text_ok(const char *s, int utf8)
{
	for (const unsigned char *u = (const unsigned char *)s; *u != '\0'; u++)
		if (*u < 0x20 || *u == 0x7f || (*u >= 0x80 && !utf8))
			return 0;
	return 1;
}

int
smtp_xtext_encode(struct buf *out, const char *in, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *u = (const unsigned char *)in;
	char esc[3] = { '+', 0, 0 };

	for (size_t i = 0; i < n; i++) {
		if (xchar_ok(u[i])) {
			if (buf_putc(out, (char)u[i]) < 0)
				return -1;
			continue;
		}
		esc[1] = hex[u[i] >> 4];
		esc[2] = hex[u[i] & 15];
		if (buf_append(out, esc, 3) < 0)
			return -1;
	}
	return 0;
}

int
smtp_bdat_parse(const char *arg, uint64_t max, uint64_t *sizep, int *lastp)
{
	const char *p = arg;
	uint64_t v = 0;
	int digits = 0, over = 0;

	if (max > SMTP_BDAT_MAX)
		max = SMTP_BDAT_MAX;
	for (; isdigit((unsigned char)*p); p++) {
		if (++digits > 20)
			return -1;
		if (v > SMTP_BDAT_MAX)
			over = 1;	/* keep scanning the syntax; no overflow */
		else
			v = v * 10 + (uint64_t)(*p - '0');
	}
	if (digits == 0)
		return -1;
	*lastp = 0;
	if (*p == ' ') {
		while (*p == ' ')
			p++;
		if (strncasecmp(p, "LAST", 4) != 0)
			return -1;
		for (p += 4; *p == ' '; p++)
			;
		*lastp = 1;
	}
	if (*p != '\0')
		return -1;
	*sizep = v;
	return over || v > max ? -2 : 0;
}

size_t
smtp_bdat_take(uint64_t *leftp, struct evbuffer *in, smtp_data_sink sink,
    void *arg)
{
	struct evbuffer_iovec v[8];
	size_t want, got = 0;
	int n;

	want = evbuffer_get_length(in);
	if ((uint64_t)want > *leftp)
		want = (size_t)*leftp;
	if (sink != NULL && want > 0) {
		n = evbuffer_peek(in, (ev_ssize_t)want, NULL, v, 8);
		if (n > 8)
			n = 8;	/* more chains than that: the rest next time */
		for (int i = 0; i < n && got < want; i++) {
			size_t k = v[i].iov_len < want - got ?
			    v[i].iov_len : want - got;
			sink(arg, v[i].iov_base, k);
			got += k;
		}
		want = got;
	}
	evbuffer_drain(in, want);
	*leftp -= want;
	return want;
}
