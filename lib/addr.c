/*
 * RFC 5321 Path parser (see addr.h): scanners that measure each piece of
 * "<[route:]local@domain>" without copying, the bounds checked on those
 * lengths, then one copy into struct addr. UTF-8 bytes are scanned like
 * letters and judged once at the end (well-formed? allowed?), so a
 * broken or unwanted 8-bit address gets its own reply, not a vague one.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "addr.h"

/* The rejection table: one row per error, sender then recipient wording. */
static const struct {
	const char *name;
	const char *mail;
	const char *rcpt;
} replies[ADDR_E__COUNT] = {
#define SYN(n)	{ n, "501 5.1.7 Bad sender address syntax", \
		    "501 5.1.3 Bad recipient address syntax" }
	[ADDR_OK] = { "ok", NULL, NULL },
	[ADDR_E_SYNTAX] = SYN("syntax"),
	[ADDR_E_ROUTE] = SYN("bad source route"),
	[ADDR_E_DOMAIN] = SYN("bad domain"),
	[ADDR_E_LITERAL] = SYN("bad address literal"),
	[ADDR_E_TOO_LONG] = SYN("too long"),
	[ADDR_E_NULL] = SYN("null path"),
	[ADDR_E_NO_DOMAIN] = SYN("no domain"),
	[ADDR_E_UTF8] = SYN("bad UTF-8"),
	[ADDR_E_8BIT] = { "8-bit without SMTPUTF8",
	    "553 5.6.7 Error: non-ASCII sender address needs SMTPUTF8",
	    "553 5.6.7 Error: non-ASCII recipient address needs SMTPUTF8" },
	[ADDR_E_PARAMS] = SYN("junk after the path"),
#undef SYN
};

const char *
addr_reply(enum addr_err err, int sender)
{
	if ((unsigned)err >= ADDR_E__COUNT)
		err = ADDR_E_SYNTAX;
	return sender ? replies[err].mail : replies[err].rcpt;
}

const char *
addr_err_str(enum addr_err err)
{
	return (unsigned)err < ADDR_E__COUNT ? replies[err].name : "?";
}

/* atext of RFC 5322 3.2.3; 8-bit bytes pass here and are judged later. */
static int
atext(unsigned char c)
{
	return isalnum(c) || (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c)) ||
	    c >= 0x80;
}

/* Dot-string: atoms separated by single dots (lenient: any dots, not
 * only dots). Returns its length, 0 if malformed. */
static size_t
dot_string(const char *p, unsigned flags)
{
	size_t n = 0;

	for (;;) {
		size_t a = n;

		while (atext((unsigned char)p[n]))
			n++;
		if (n == a && !(flags & ADDR_F_LENIENT))
			return 0;
		if (p[n] != '.')
			return n;
		n++;
	}
}

/* Quoted-string with its quotes: qtextSMTP and quoted-pairSMTP (4.1.2),
 * 8-bit as for atext. 0 if malformed. */
static size_t
quoted_string(const char *p)
{
	size_t n = 1;

	for (;;) {
		unsigned char c = (unsigned char)p[n];

		if (c == '"')
			return n + 1;
		if (c == '\\' && p[n + 1] >= 0x20 && p[n + 1] <= 0x7e)
			n += 2;
		else if ((c >= 0x20 && c <= 0x7e && c != '\\') || c >= 0x80)
			n++;
		else
			return 0;
	}
}

/* One label: let-dig [ldh-str] (lenient: '_' too). Its length, 0 if bad. */
static size_t
label(const char *p, unsigned flags)
{
	size_t n = 0;
	int ascii = 1;

	for (;; n++) {
		unsigned char c = (unsigned char)p[n];

		if (c >= 0x80)
			ascii = 0;
		else if (!isalnum(c) && c != '-' &&
		    !(c == '_' && (flags & ADDR_F_LENIENT)))
			break;
	}
	if (n == 0 || p[0] == '-' || p[n - 1] == '-')
		return 0;
	if (ascii && n > ADDR_LABEL_MAX)	/* U-labels: their A-label counts */
		return 0;
	return n;
}

/* The inside of "[...]" (n bytes at p): an IPv4 dotted quad, or "IPv6:"
 * then what inet_pton takes. General-address-literals (4.1.3: a tag
 * registered with IANA) are refused: there are none we could route. */
static int
literal_ok(const char *p, size_t n)
{
	char tmp[ADDR_DOMAIN_MAX + 1];
	unsigned char bin[16];

	if (n == 0 || n > ADDR_DOMAIN_MAX)
		return 0;
	memcpy(tmp, p, n);
	tmp[n] = '\0';
	if (n > 5 && strncasecmp(tmp, "IPv6:", 5) == 0)
		return inet_pton(AF_INET6, tmp + 5, bin) == 1;
	return inet_pton(AF_INET, tmp, bin) == 1;
}

/* Domain or address literal at p: its length, or 0 with *err set. */
static size_t
domain(const char *p, unsigned flags, enum addr_err *err)
{
	size_t n = 0, l;

	if (p[0] == '[') {
		l = strcspn(p + 1, "[]\\ \"");
		if (p[1 + l] != ']' || l + 2 > ADDR_DOMAIN_MAX ||
		    !literal_ok(p + 1, l)) {
			*err = l + 2 > ADDR_DOMAIN_MAX ? ADDR_E_TOO_LONG :
			    ADDR_E_LITERAL;
			return 0;
		}
		return l + 2;
	}
	for (;;) {
		if ((l = label(p + n, flags)) == 0) {
			*err = ADDR_E_DOMAIN;
			return 0;
		}
		n += l;
		if (p[n] != '.')
			break;
		n++;
	}
	if (n > ADDR_DOMAIN_MAX) {
		*err = ADDR_E_TOO_LONG;
		return 0;
	}
	return n;
}

/* Skip "@a.example,@b.example:" (4.1.1.3: accepted, ignored). NULL if
 * malformed or longer than a path may be. */
static const char *
skip_route(const char *p, unsigned flags)
{
	const char *start = p;
	enum addr_err e;

	while (*p == '@') {
		size_t n = domain(p + 1, flags, &e);

		if (n == 0)
			return NULL;
		p += 1 + n;
		if ((size_t)(p - start) > ADDR_PATH_MAX)
			return NULL;
		if (*p == ':')
			return p + 1;
		if (*p++ != ',')
			return NULL;
	}
	return p == start ? p : NULL;	/* "@a," then no '@' */
}

int
addr_has_8bit(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s >= 0x80)
			return 1;
	return 0;
}

/* Length of the UTF-8 sequence led by c (0: not a lead byte). */
static int
utf8_len(unsigned char c)
{
	return c < 0x80 ? 1 : c < 0xc2 ? 0 : c < 0xe0 ? 2 : c < 0xf0 ? 3 :
	    c < 0xf5 ? 4 : 0;
}

int
addr_utf8_ok(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	while (*p != '\0') {
		int len = utf8_len(*p);

		if (len == 0)
			return 0;
		for (int i = 1; i < len; i++)
			if ((p[i] & 0xc0) != 0x80)
				return 0;
		if ((*p == 0xe0 && p[1] < 0xa0) ||	/* overlong */
		    (*p == 0xed && p[1] >= 0xa0) ||	/* surrogate */
		    (*p == 0xf0 && p[1] < 0x90) ||	/* overlong */
		    (*p == 0xf4 && p[1] >= 0x90))	/* past U+10FFFF */
			return 0;
		p += len;
	}
	return 1;
}

/* The local part at p: its length on the wire, or 0 with *err set. */
static size_t
local_part(const char *p, unsigned flags, unsigned *kind, enum addr_err *err)
{
	size_t n;

	if (*p == '"') {
		*kind |= ADDR_K_QUOTED;
		n = quoted_string(p);
	} else {
		n = dot_string(p, flags);
	}
	if (n == 0)
		*err = ADDR_E_SYNTAX;
	else if (n - (*p == '"' ? 2 : 0) > ADDR_LOCAL_MAX) {
		*err = ADDR_E_TOO_LONG;
		n = 0;
	}
	return n;
}

/* Copy the pieces found by the scanners; then judge the 8-bit bytes. */
static enum addr_err
fill(struct addr *out, const char *start, size_t local, size_t dom,
    unsigned flags)
{
	size_t len = local + (dom ? 1 + dom : 0);

	if (len > ADDR_PATH_MAX)
		return ADDR_E_TOO_LONG;
	memcpy(out->mailbox, start, len);
	out->mailbox[len] = '\0';
	memcpy(out->local, start, local);
	out->local[local] = '\0';
	memcpy(out->domain, start + local + (dom ? 1 : 0), dom);
	out->domain[dom] = '\0';
	if (dom && out->domain[0] == '[')
		out->kind |= ADDR_K_LITERAL;
	if (addr_has_8bit(out->mailbox)) {
		out->kind |= ADDR_K_8BIT;
		if (!addr_utf8_ok(out->mailbox))
			return ADDR_E_UTF8;
		if (!(flags & ADDR_F_UTF8))
			return ADDR_E_8BIT;
	}
	return ADDR_OK;
}

/*
 * A quoted local part that needs no quotes ("alice", "al\ice") is the
 * same mailbox as its dot-string (RFC 5321 4.1.2: a sender should not
 * quote what needs none, and hosts must treat both alike): rewrite it
 * in that form, so lookups and the queue see one spelling, as Postfix's
 * internal form does. Quotes that matter ("a b", "x@y", "") stay.
 */
static void
unquote(struct addr *out)
{
	char inner[ADDR_PATH_MAX + 1];
	const char *q = out->local + 1;
	size_t n = 0;

	while (*q != '"') {
		if (*q == '\\')
			q++;
		inner[n++] = *q++;
	}
	inner[n] = '\0';
	if (n == 0 || dot_string(inner, 0) != n)
		return;
	/* shorter than the quoted form, so it fits where that did */
	memcpy(out->local, inner, n + 1);
	memcpy(out->mailbox, inner, n);
	if (out->domain[0] != '\0') {
		out->mailbox[n++] = '@';
		memcpy(out->mailbox + n, out->domain, strlen(out->domain) + 1);
	} else {
		out->mailbox[n] = '\0';
	}
	out->kind &= ~ADDR_K_QUOTED;
}

/* The mailbox after '<' and the route: local part, '@', domain, '>'. */
static enum addr_err
mailbox(const char **pp, unsigned flags, struct addr *out)
{
	const char *p = *pp;
	enum addr_err err = ADDR_OK;
	size_t local, dom = 0;

	if ((local = local_part(p, flags, &out->kind, &err)) == 0)
		return err;
	if (p[local] == '@') {
		if ((dom = domain(p + local + 1, flags, &err)) == 0)
			return err;
	} else if (!(flags & (ADDR_F_BARE_OK | ADDR_F_LENIENT))) {
		return p[local] == '>' ? ADDR_E_NO_DOMAIN : ADDR_E_SYNTAX;
	}
	if (p[local + (dom ? 1 + dom : 0)] != '>')
		return ADDR_E_SYNTAX;
	if ((err = fill(out, p, local, dom, flags)) != ADDR_OK)
		return err;
	if (out->kind & ADDR_K_QUOTED)
		unquote(out);
	*pp = p + local + (dom ? 1 + dom : 0) + 1;
	return ADDR_OK;
}

enum addr_err
addr_parse(const char *s, unsigned flags, struct addr *out,
    const char **rest)
{
	const char *p = s + strspn(s, " ");
	enum addr_err err;

	memset(out, 0, sizeof(*out));
	if (*p++ != '<')
		return ADDR_E_SYNTAX;
	if (*p == '>') {
		if (!(flags & ADDR_F_NULL_OK))
			return ADDR_E_NULL;
		out->kind = ADDR_K_NULL;
		p++;
	} else {
		if (*p == '@')
			out->kind |= ADDR_K_ROUTE;
		if ((p = skip_route(p, flags)) == NULL)
			return ADDR_E_ROUTE;
		if ((err = mailbox(&p, flags, out)) != ADDR_OK)
			return err;
	}
	if (*p != '\0' && *p != ' ')
		return ADDR_E_PARAMS;
	if (rest != NULL)
		*rest = p + strspn(p, " ");
	return ADDR_OK;
}

enum addr_err
addr_parse_mailbox(const char *s, unsigned flags, char *out, size_t outsz,
    const char **rest)
{
	struct addr a;
	enum addr_err err = addr_parse(s, flags, &a, rest);
	size_t n;

	if (err != ADDR_OK)
		return err;
	if ((n = strlen(a.mailbox)) >= outsz)
		return ADDR_E_TOO_LONG;
	memcpy(out, a.mailbox, n + 1);
	return ADDR_OK;
}
