/*
 * Unit tests for lib/addr: the RFC 5321 path parser, table-driven. Good
 * and bad paths, each bound of 4.5.3.1 and one past it, UTF-8 with and
 * without SMTPUTF8, address literals, source routes, quoted local parts,
 * the null path, the lenient mode of our own programs, the relay tricks
 * (they parse as what they are: the policy decides), the reply table.
 */
#include <stdio.h>
#include <string.h>

#include "../../lib/addr.h"
#include "unit.h"

#define NUL	ADDR_F_NULL_OK
#define U8	ADDR_F_UTF8
#define BARE	ADDR_F_BARE_OK
#define LEN	ADDR_F_LENIENT

static char *
rep(char c, int n)
{
	static char b[4][600];
	static int w;

	w = (w + 1) % 4;
	memset(b[w], c, (size_t)n);
	b[w][n] = '\0';
	return b[w];
}

static const struct {
	const char *in;
	unsigned flags;
	enum addr_err err;
	const char *mailbox;	/* on ADDR_OK */
	const char *local, *domain;
} paths[] = {
	{ "<a@b.test>", 0, ADDR_OK, "a@b.test", "a", "b.test" },
	{ "   <a@b.test>", 0, ADDR_OK, "a@b.test", "a", "b.test" },
	{ "<A.B@Example.TEST>", 0, ADDR_OK, "A.B@Example.TEST", "A.B", "Example.TEST" },
	{ "<>", NUL, ADDR_OK, "", "", "" },
	{ " <>", NUL, ADDR_OK, "", "", "" },
	{ "<>", 0, ADDR_E_NULL, NULL, NULL, NULL },
	{ "<", NUL, ADDR_E_SYNTAX, NULL, NULL, NULL },
	{ "", NUL, ADDR_E_SYNTAX, NULL, NULL, NULL },
	{ "a@b.test", 0, ADDR_E_SYNTAX, NULL, NULL, NULL },
	{ "<a@b.test", 0, ADDR_E_SYNTAX, NULL, NULL, NULL },
	{ "<a@b.test>x", 0, ADDR_E_PARAMS, NULL, NULL, NULL },
	{ "<a@b.test> >", 0, ADDR_OK, "a@b.test", "a", "b.test" },	/* ">" is a param */
	{ "<<a@b.test>>", 0, ADDR_E_SYNTAX, NULL, NULL, NULL },
	/* dot-string */
	{ "<a..b@c.test>", 0, ADDR_E_SYNTAX, NULL, NULL, NULL },
	{ "<.a@c.test>", 0, ADDR_E_SYNTAX, NULL, NULL, NULL },
	{ "<a.@c.test>", 0, ADDR_E_SYNTAX, NULL, NULL, NULL },
	{ "<a b@c.test>", 0, ADDR_E_SYNTAX, NULL, NULL, NULL },
	{ "<a@b@c.test>", 0, ADDR_E_SYNTAX, NULL, NULL, NULL },
	{ "<a(b)@c.test>", 0, ADDR_E_SYNTAX, NULL, NULL, NULL },
	{ "<a\x01@c.test>", 0, ADDR_E_SYNTAX, NULL, NULL, NULL },
	{ "<a\x7f@c.test>", 0, ADDR_E_SYNTAX, NULL, NULL, NULL },
	{ "<a\r\n@c.test>", 0, ADDR_E_SYNTAX, NULL, NULL, NULL },
	{ "<a\t@c.test>", 0, ADDR_E_SYNTAX, NULL, NULL, NULL },
	{ "<a@c.test\0>", 0, ADDR_E_SYNTAX, NULL, NULL, NULL },	/* a NUL ends it */
	{ "<\"a\0\"@c.test>", 0, ADDR_E_SYNTAX, NULL, NULL, NULL },
	{ "<a@c.test>\r\n", 0, ADDR_E_PARAMS, NULL, NULL, NULL },
	{ "<!#$&'*+-/=?^_`{|}~@c.test>", 0, ADDR_OK, "!#$&'*+-/=?^_`{|}~@c.test", NULL, NULL },
	/* quoted local parts */
	{ "<\"a b\"@c.test>", 0, ADDR_OK, "\"a b\"@c.test", "\"a b\"", "c.test" },
	{ "<\"a\\\"b\"@c.test>", 0, ADDR_OK, "\"a\\\"b\"@c.test", "\"a\\\"b\"", NULL },
	{ "<\"a\\\\\"@c.test>", 0, ADDR_OK, "\"a\\\\\"@c.test", NULL, NULL },
	{ "<\"a>b\"@c.test>", 0, ADDR_OK, "\"a>b\"@c.test", NULL, NULL },
	{ "<\"\"@c.test>", 0, ADDR_OK, "\"\"@c.test", NULL, NULL },
	{ "<\"a\\\x01\"@c.test>", 0, ADDR_E_SYNTAX, NULL, NULL, NULL },
	{ "<\"a\x01\"@c.test>", 0, ADDR_E_SYNTAX, NULL, NULL, NULL },
	{ "<\"a\r\"@c.test>", 0, ADDR_E_SYNTAX, NULL, NULL, NULL },
	{ "<\"a\\\"@c.test>", 0, ADDR_E_SYNTAX, NULL, NULL, NULL },
	{ "<\"a@c.test>", 0, ADDR_E_SYNTAX, NULL, NULL, NULL },
	{ "<\"a\"b@c.test>", 0, ADDR_E_SYNTAX, NULL, NULL, NULL },
	/* domains */
	{ "<a@>", 0, ADDR_E_DOMAIN, NULL, NULL, NULL },
	{ "<a@-c.test>", 0, ADDR_E_DOMAIN, NULL, NULL, NULL },
	{ "<a@c-.test>", 0, ADDR_E_DOMAIN, NULL, NULL, NULL },
	{ "<a@c..test>", 0, ADDR_E_DOMAIN, NULL, NULL, NULL },
	{ "<a@c.test.>", 0, ADDR_E_DOMAIN, NULL, NULL, NULL },
	{ "<a@.c.test>", 0, ADDR_E_DOMAIN, NULL, NULL, NULL },
	{ "<a@c_d.test>", 0, ADDR_E_SYNTAX, NULL, NULL, NULL },
	{ "<a@c_d.test>", LEN, ADDR_OK, "a@c_d.test", NULL, "c_d.test" },
	{ "<a@x-1.c.test>", 0, ADDR_OK, "a@x-1.c.test", NULL, "x-1.c.test" },
	{ "<a@localhost>", 0, ADDR_OK, "a@localhost", NULL, "localhost" },
	/* address literals */
	{ "<a@[192.0.2.1]>", 0, ADDR_OK, "a@[192.0.2.1]", "a", "[192.0.2.1]" },
	{ "<a@[IPv6:2001:db8::1]>", 0, ADDR_OK, "a@[IPv6:2001:db8::1]", NULL, "[IPv6:2001:db8::1]" },
	{ "<a@[ipv6:::1]>", 0, ADDR_OK, "a@[ipv6:::1]", NULL, NULL },
	{ "<a@[IPv6:::ffff:192.0.2.1]>", 0, ADDR_OK, NULL, NULL, NULL },
	{ "<a@[]>", 0, ADDR_E_LITERAL, NULL, NULL, NULL },
	{ "<a@[1.2.3.4>", 0, ADDR_E_LITERAL, NULL, NULL, NULL },
	{ "<a@[1.2.3]>", 0, ADDR_E_LITERAL, NULL, NULL, NULL },
	{ "<a@[1.2.3.256]>", 0, ADDR_E_LITERAL, NULL, NULL, NULL },
	{ "<a@[1.2.3.4.5]>", 0, ADDR_E_LITERAL, NULL, NULL, NULL },
	{ "<a@[ 1.2.3.4]>", 0, ADDR_E_LITERAL, NULL, NULL, NULL },
	{ "<a@[IPv6:2001:db8::1::2]>", 0, ADDR_E_LITERAL, NULL, NULL, NULL },
	{ "<a@[IPv6:]>", 0, ADDR_E_LITERAL, NULL, NULL, NULL },
	{ "<a@[2001:db8::1]>", 0, ADDR_E_LITERAL, NULL, NULL, NULL },
	{ "<a@[x-tag:stuff]>", 0, ADDR_E_LITERAL, NULL, NULL, NULL },
	{ "<a@[1.2.3.4]x>", 0, ADDR_E_SYNTAX, NULL, NULL, NULL },
	{ "<a@[[1.2.3.4]]>", 0, ADDR_E_LITERAL, NULL, NULL, NULL },
	/* source routes: accepted and dropped */
	{ "<@r.test:a@b.test>", 0, ADDR_OK, "a@b.test", "a", "b.test" },
	{ "<@r.test,@[192.0.2.1]:a@b.test>", 0, ADDR_OK, "a@b.test", NULL, NULL },
	{ "<@r.test:>", 0, ADDR_E_SYNTAX, NULL, NULL, NULL },
	{ "<@r.test:>", NUL, ADDR_E_SYNTAX, NULL, NULL, NULL },
	{ "<@r.test>", 0, ADDR_E_ROUTE, NULL, NULL, NULL },
	{ "<@r.test,a@b.test>", 0, ADDR_E_ROUTE, NULL, NULL, NULL },
	{ "<@r.test,:a@b.test>", 0, ADDR_E_ROUTE, NULL, NULL, NULL },
	{ "<@:a@b.test>", 0, ADDR_E_ROUTE, NULL, NULL, NULL },
	{ "<@c.test>", 0, ADDR_E_ROUTE, NULL, NULL, NULL },
	/* bare mailboxes */
	{ "<postmaster>", BARE, ADDR_OK, "postmaster", "postmaster", "" },
	{ "<Postmaster>", 0, ADDR_E_NO_DOMAIN, NULL, NULL, NULL },
	{ "<root>", LEN, ADDR_OK, "root", "root", "" },
	{ "<\"a b\">", BARE, ADDR_OK, "\"a b\"", NULL, "" },
	/* lenient: dots anywhere, still no specials or controls */
	{ "<first..last@c.test>", LEN, ADDR_OK, "first..last@c.test", NULL, NULL },
	{ "<.x.@c.test>", LEN, ADDR_OK, ".x.@c.test", NULL, NULL },
	{ "<a b@c.test>", LEN, ADDR_E_SYNTAX, NULL, NULL, NULL },
	{ "<a\x01@c.test>", LEN, ADDR_E_SYNTAX, NULL, NULL, NULL },
	{ "<a,b@c.test>", LEN, ADDR_E_SYNTAX, NULL, NULL, NULL },
	{ "<a@c..test>", LEN, ADDR_E_DOMAIN, NULL, NULL, NULL },
	/* UTF-8 (RFC 6531) */
	{ "<j\xc3\xb6rg@b\xc3\xbc" "cher.test>", U8, ADDR_OK, "j\xc3\xb6rg@b\xc3\xbc" "cher.test", NULL, NULL },
	{ "<j\xc3\xb6rg@b.test>", 0, ADDR_E_8BIT, NULL, NULL, NULL },
	{ "<a@b\xc3\xbc.test>", 0, ADDR_E_8BIT, NULL, NULL, NULL },
	{ "<\"j\xc3\xb6 rg\"@b.test>", U8, ADDR_OK, "\"j\xc3\xb6 rg\"@b.test", NULL, NULL },
	{ "<j\xc3@b.test>", U8, ADDR_E_UTF8, NULL, NULL, NULL },
	{ "<a\xff@b.test>", U8, ADDR_E_UTF8, NULL, NULL, NULL },
	{ "<a\xc0\xaf@b.test>", U8, ADDR_E_UTF8, NULL, NULL, NULL },	/* overlong */
	{ "<a\xed\xa0\x80@b.test>", U8, ADDR_E_UTF8, NULL, NULL, NULL },	/* surrogate */
	{ "<a\xf4\x90\x80\x80@b.test>", U8, ADDR_E_UTF8, NULL, NULL, NULL },
	{ "<a\xf0\x9f\x98\x80@b.test>", U8, ADDR_OK, NULL, NULL, NULL },
	{ "<a@[192.0.2.\xc3\xbc]>", U8, ADDR_E_LITERAL, NULL, NULL, NULL },
	/* relay tricks parse as what they are; the policy judges the domain */
	{ "<user%elsewhere.test@example.test>", 0, ADDR_OK, NULL, "user%elsewhere.test", "example.test" },
	{ "<elsewhere.test!user@example.test>", 0, ADDR_OK, NULL, "elsewhere.test!user", "example.test" },
	{ "<\"user@elsewhere.test\"@example.test>", 0, ADDR_OK, NULL, "\"user@elsewhere.test\"", "example.test" },
	{ "<@example.test:user@elsewhere.test>", 0, ADDR_OK, "user@elsewhere.test", NULL, "elsewhere.test" },
	{ "<user@elsewhere.test@example.test>", 0, ADDR_E_SYNTAX, NULL, NULL, NULL },
};

TEST(table)
{
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		struct addr a;
		const char *rest = NULL;
		enum addr_err e = addr_parse(paths[i].in, paths[i].flags, &a, &rest);

		if (e != paths[i].err)
			fprintf(stderr, "case %zu: %s\n", i, paths[i].in);
		CHECK_INT(e, paths[i].err);
		if (e != ADDR_OK || paths[i].err != ADDR_OK)
			continue;
		if (paths[i].mailbox)
			CHECK_STR(a.mailbox, paths[i].mailbox);
		if (paths[i].local)
			CHECK_STR(a.local, paths[i].local);
		if (paths[i].domain)
			CHECK_STR(a.domain, paths[i].domain);
		CHECK(rest != NULL);
	}
}

TEST(kinds_and_rest)
{
	struct addr a;
	const char *rest;

	CHECK_INT(addr_parse("<a@b.test>  SIZE=5 BODY=8BITMIME", 0, &a, &rest), ADDR_OK);
	CHECK_STR(rest, "SIZE=5 BODY=8BITMIME");
	CHECK_INT(a.kind, 0);
	CHECK_INT(addr_parse("<>", NUL, &a, &rest), ADDR_OK);
	CHECK_STR(rest, "");
	CHECK_INT(a.kind, ADDR_K_NULL);
	CHECK_INT(addr_parse("<@r.test:\"x y\"@[192.0.2.1]> X", 0, &a, &rest), ADDR_OK);
	CHECK_INT(a.kind, ADDR_K_ROUTE | ADDR_K_QUOTED | ADDR_K_LITERAL);
	CHECK_STR(rest, "X");
	CHECK_INT(addr_parse("<\xc3\xa9@b.test>", U8, &a, NULL), ADDR_OK);
	CHECK_INT(a.kind, ADDR_K_8BIT);
}

/* A quoted local part that needs no quotes is rewritten without them. */
TEST(unquote)
{
	static const struct {
		const char *in;
		unsigned flags;
		const char *mailbox, *local;
		unsigned quoted;
	} t[] = {
		{ "<\"alice\"@b.test>", 0, "alice@b.test", "alice", 0 },
		{ "<\"al\\ice\"@b.test>", 0, "alice@b.test", "alice", 0 },
		{ "<\"a.b\"@b.test>", 0, "a.b@b.test", "a.b", 0 },
		{ "<\"Post\"master>", 0, NULL, NULL, 0 },	/* not a quoted-string local part */
		{ "<\"postmaster\">", BARE, "postmaster", "postmaster", 0 },
		{ "<\"a b\"@b.test>", 0, "\"a b\"@b.test", "\"a b\"", ADDR_K_QUOTED },
		{ "<\"x@y.test\"@b.test>", 0, "\"x@y.test\"@b.test", NULL, ADDR_K_QUOTED },
		{ "<\"\"@b.test>", 0, "\"\"@b.test", "\"\"", ADDR_K_QUOTED },
		{ "<\"a..b\"@b.test>", 0, "\"a..b\"@b.test", NULL, ADDR_K_QUOTED },
		{ "<\".a\"@b.test>", 0, "\".a\"@b.test", NULL, ADDR_K_QUOTED },
		{ "<\"a.\"@b.test>", 0, "\"a.\"@b.test", NULL, ADDR_K_QUOTED },
		{ "<\"a\\\"b\"@b.test>", 0, "\"a\\\"b\"@b.test", NULL, ADDR_K_QUOTED },
		{ "<\"j\xc3\xb6rg\"@b.test>", U8, "j\xc3\xb6rg@b.test", "j\xc3\xb6rg", 0 },
	};
	struct addr a;

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		enum addr_err e = addr_parse(t[i].in, t[i].flags, &a, NULL);

		if (t[i].mailbox == NULL) {
			CHECK(e != ADDR_OK);
			continue;
		}
		CHECK_INT(e, ADDR_OK);
		CHECK_STR(a.mailbox, t[i].mailbox);
		if (t[i].local != NULL)
			CHECK_STR(a.local, t[i].local);
		CHECK_INT(a.kind & ADDR_K_QUOTED, t[i].quoted);
	}
}

TEST(bounds)
{
	char in[800];
	struct addr a;

	/* local part: 64, not 65; quotes do not count, escapes do */
	snprintf(in, sizeof(in), "<%s@b.test>", rep('a', 64));
	CHECK_INT(addr_parse(in, 0, &a, NULL), ADDR_OK);
	snprintf(in, sizeof(in), "<%s@b.test>", rep('a', 65));
	CHECK_INT(addr_parse(in, 0, &a, NULL), ADDR_E_TOO_LONG);
	snprintf(in, sizeof(in), "<\"%s\"@b.test>", rep('a', 64));
	CHECK_INT(addr_parse(in, 0, &a, NULL), ADDR_OK);
	snprintf(in, sizeof(in), "<\"%s\"@b.test>", rep('a', 65));
	CHECK_INT(addr_parse(in, 0, &a, NULL), ADDR_E_TOO_LONG);
	snprintf(in, sizeof(in), "<\"%s\\a\"@b.test>", rep('a', 62));
	CHECK_INT(addr_parse(in, 0, &a, NULL), ADDR_OK);
	snprintf(in, sizeof(in), "<\"%s\\a\"@b.test>", rep('a', 63));
	CHECK_INT(addr_parse(in, 0, &a, NULL), ADDR_E_TOO_LONG);
	/* label: 63, not 64 */
	snprintf(in, sizeof(in), "<a@%s.test>", rep('b', 63));
	CHECK_INT(addr_parse(in, 0, &a, NULL), ADDR_OK);
	snprintf(in, sizeof(in), "<a@%s.test>", rep('b', 64));
	CHECK_INT(addr_parse(in, 0, &a, NULL), ADDR_E_DOMAIN);
	/* domain: 254 with "a@" is the whole path; 256 is past both */
	snprintf(in, sizeof(in), "<a@%s.%s.%s.%s>", rep('b', 63), rep('c', 63),
	    rep('d', 63), rep('e', 62));
	CHECK_INT(addr_parse(in, 0, &a, NULL), ADDR_OK);
	CHECK_INT(strlen(a.domain), 254);
	snprintf(in, sizeof(in), "<a@%s.%s.%s.%s.f>", rep('b', 63), rep('c', 63),
	    rep('d', 63), rep('e', 62));
	CHECK_INT(addr_parse(in, 0, &a, NULL), ADDR_E_TOO_LONG);
	/* whole mailbox: 256, not 257 */
	snprintf(in, sizeof(in), "<%s@%s.%s.%s>", rep('a', 64), rep('b', 63),
	    rep('c', 63), rep('d', 63));
	CHECK_INT(addr_parse(in, 0, &a, NULL), ADDR_OK);
	CHECK_INT(strlen(a.mailbox), 256);
	CHECK_INT(strlen(a.local), 64);
	snprintf(in, sizeof(in), "<%s@%s.%s.%s.d>", rep('a', 64), rep('b', 63),
	    rep('c', 63), rep('d', 62));
	CHECK_INT(addr_parse(in, 0, &a, NULL), ADDR_E_TOO_LONG);
	/* a giant route */
	snprintf(in, sizeof(in), "<@%s.%s.%s.%s,@x.test:a@b.test>", rep('b', 63),
	    rep('c', 63), rep('d', 63), rep('e', 63));
	CHECK_INT(addr_parse(in, 0, &a, NULL), ADDR_E_ROUTE);
}

TEST(literal_bounds)
{
	char in[800];
	struct addr a;

	/* a literal is a domain: 255 at most, brackets included */
	snprintf(in, sizeof(in), "<a@[IPv6:%s1]>", rep('0', 240));
	CHECK_INT(addr_parse(in, 0, &a, NULL), ADDR_E_LITERAL);	/* inet_pton: no */
	snprintf(in, sizeof(in), "<a@[IPv6:%s1]>", rep('0', 260));
	CHECK_INT(addr_parse(in, 0, &a, NULL), ADDR_E_TOO_LONG);
}

TEST(replies)
{
	CHECK_STR(addr_reply(ADDR_E_SYNTAX, 1), "501 5.1.7 Bad sender address syntax");
	CHECK_STR(addr_reply(ADDR_E_TOO_LONG, 0), "501 5.1.3 Bad recipient address syntax");
	CHECK_STR(addr_reply(ADDR_E_8BIT, 1),
	    "553 5.6.7 Error: non-ASCII sender address needs SMTPUTF8");
	CHECK_STR(addr_reply(ADDR_E_8BIT, 0),
	    "553 5.6.7 Error: non-ASCII recipient address needs SMTPUTF8");
	CHECK(addr_reply(ADDR_OK, 0) == NULL);
	for (int e = ADDR_E_SYNTAX; e < ADDR_E__COUNT; e++) {
		CHECK(addr_reply((enum addr_err)e, 0) != NULL);
		CHECK(addr_reply((enum addr_err)e, 1) != NULL);
		CHECK(strcmp(addr_err_str((enum addr_err)e), "?") != 0);
	}
	CHECK_STR(addr_reply(ADDR_E__COUNT, 1), "501 5.1.7 Bad sender address syntax");
	CHECK_STR(addr_err_str(ADDR_E__COUNT), "?");
}

TEST(utf8_helpers)
{
	CHECK(!addr_has_8bit("plain@ascii.test"));
	CHECK(addr_has_8bit("j\xc3\xb6rg"));
	CHECK(addr_utf8_ok(""));
	CHECK(addr_utf8_ok("j\xc3\xb6rg"));
	CHECK(!addr_utf8_ok("\xc3"));
	CHECK(!addr_utf8_ok("\xc1\x81"));
	CHECK(!addr_utf8_ok("\xe0\x80\x80"));
	CHECK(!addr_utf8_ok("\xf5\x80\x80\x80"));
}

TEST(parse_mailbox)
{
	char out[9];
	const char *rest = NULL;

	CHECK_INT(addr_parse_mailbox("<a@b.test> X", 0, out, sizeof(out), &rest), ADDR_OK);
	CHECK_STR(out, "a@b.test");	/* 8 + NUL: fits exactly */
	CHECK_STR(rest, "X");
	CHECK_INT(addr_parse_mailbox("<ab@b.test>", 0, out, sizeof(out), &rest),
	    ADDR_E_TOO_LONG);
	CHECK_INT(addr_parse_mailbox("<>", NUL, out, 1, &rest), ADDR_OK);
	CHECK_STR(out, "");
	CHECK_INT(addr_parse_mailbox("<>", NUL, out, 0, &rest), ADDR_E_TOO_LONG);
	CHECK_INT(addr_parse_mailbox("<a@b", 0, out, sizeof(out), &rest), ADDR_E_SYNTAX);
}

/* Every accepted mailbox parses again, to itself. */
TEST(reparse)
{
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		struct addr a, b;
		char in[ADDR_PATH_MAX + 3];

		if (addr_parse(paths[i].in, paths[i].flags, &a, NULL) != ADDR_OK)
			continue;
		snprintf(in, sizeof(in), "<%s>", a.mailbox);
		CHECK_INT(addr_parse(in, paths[i].flags, &b, NULL), ADDR_OK);
		CHECK_STR(b.mailbox, a.mailbox);
	}
}

int
main(void)
{
	RUN(table);
	RUN(kinds_and_rest);
	RUN(unquote);
	RUN(bounds);
	RUN(literal_bounds);
	RUN(replies);
	RUN(utf8_helpers);
	RUN(parse_mailbox);
	RUN(reparse);
	return unit_done("test_addr");
}
