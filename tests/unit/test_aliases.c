/*
 * Unit tests for lib/aliases.c and lib/alias_expand.c: every syntax form
 * parsed and round-tripped through aliases.db, errors with file:line,
 * duplicates, and expansion (lists, chains, self-reference, loops,
 * :include: and its refusals, postmaster, extensions, bounds).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alias_expand.h"
#include "aliases.h"
#include "conf.h"
#include "local_user.h"
#include "map.h"
#include "unit.h"
#include "xalloc.h"

static char dir[] = "/tmp/test_aliases.XXXXXX";

static char *
tpath(const char *name)
{
	return xasprintf("%s/%s", dir, name);
}

static void
write_file(const char *path, const char *data, size_t len)
{
	FILE *fp = fopen(path, "w");

	if (fp == NULL) {
		perror(path);
		exit(1);
	}
	fwrite(data, 1, len, fp);
	fclose(fp);
}

/* The stored value with each NUL shown as '|'. */
static const char *
show(const struct buf *v)
{
	static char out[4096];
	size_t n = v->len < sizeof(out) - 1 ? v->len : sizeof(out) - 1;

	for (size_t i = 0; i < n; i++)
		out[i] = v->data[i] ? v->data[i] : '|';
	out[n] = '\0';
	return out;
}

static const struct {
	const char *line;
	const char *name;	/* NULL: an error */
	const char *value;	/* or the error text */
} parse_cases[] = {
	{ "alice: bob", "alice", "bob|" },
	{ "Alice : Bob, carol@Example.org", "alice", "Bob|carol@Example.org|" },
	{ "list: a,b ,  c", "list", "a|b|c|" },
	{ "list: a b\tc", "list", "a|b|c|" },
	{ "x: a,   d,   e", "x", "a|d|e|" },	/* joined continuation */
	{ "\"name with space\": a", "name with space", "a|" },
	{ "\"Q\\\"uote\": a", "q\"uote", "a|" },
	{ "dom@Example.COM: a", "dom@example.com", "a|" },
	{ "inc: :include:/etc/list", "inc", ":include:/etc/list|" },
	{ "p: \"|/usr/bin/prog arg, two\"", "p", "|/usr/bin/prog arg, two|" },
	{ "p: |/bin/true", "p", "|/bin/true|" },
	{ "f: /var/log/file", "f", "/var/log/file|" },
	{ "f: \"/path with space\"", "f", "/path with space|" },
	{ "q: \"john doe\"@example.org", "q", "\"john doe\"@example.org|" },
	{ "t: a,", "t", "a|" },
	{ "no colon here", NULL, "missing ':'" },
	{ "name with space: a", NULL, "missing ':'" },
	{ ": a", NULL, "empty name" },
	{ "e:", NULL, "no targets" },
	{ "e: , ,", NULL, "no targets" },
	{ "u: \"open", NULL, "unterminated quote" },
	{ "\"open: a", NULL, "unterminated quote in name" },
	{ "i: :include:", NULL, ":include: needs an absolute path" },
	{ "i: :include:rel/path", NULL, ":include: needs an absolute path" },
	{ "k: :other:x", NULL, "unknown :keyword: target" },
	{ "b: |", NULL, "empty command" },
	{ "b: @example.org", NULL, "bad address" },
	{ "b: user@", NULL, "bad address" },
	{ "b: \"\"", NULL, "empty quoted target" },
	{ "c: a\x01" "b", NULL, "control character in target" },
	{ "\"c\x02\": a", NULL, "control character in name" },
};

TEST(parse_table)
{
	struct buf name, value;
	char err[256];

	buf_init(&name, MAP_KEY_MAX + 16);
	buf_init(&value, MAP_VALUE_MAX);
	for (size_t i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
		const char *l = parse_cases[i].line;
		int rc = aliases_parse_entry(l, strlen(l), &name, &value, err,
		    sizeof(err));

		if (parse_cases[i].name == NULL) {
			CHECK_INT(rc, -1);
			if (strstr(err, parse_cases[i].value) == NULL)
				fprintf(stderr, "case %zu: error \"%s\"\n", i, err);
			CHECK(strstr(err, parse_cases[i].value) != NULL);
			continue;
		}
		CHECK_INT(rc, 0);
		CHECK_STR(name.data, parse_cases[i].name);
		CHECK_STR(show(&value), parse_cases[i].value);
	}
	buf_free(&name);
	buf_free(&value);
}

TEST(target_bounds)
{
	char line[ALIAS_TARGET_MAX + 16], err[256];
	struct buf name, value;

	buf_init(&name, MAP_KEY_MAX + 16);
	buf_init(&value, MAP_VALUE_MAX);
	memcpy(line, "a: ", 3);
	memset(line + 3, 't', ALIAS_TARGET_MAX);
	line[3 + ALIAS_TARGET_MAX] = '\0';
	CHECK_INT(aliases_parse_entry(line, strlen(line), &name, &value, err,
	    sizeof(err)), 0);
	line[3 + ALIAS_TARGET_MAX] = 't';
	line[4 + ALIAS_TARGET_MAX] = '\0';
	CHECK_INT(aliases_parse_entry(line, strlen(line), &name, &value, err,
	    sizeof(err)), -1);
	buf_free(&name);
	buf_free(&value);
}

/* Compile text, return the errors; diagnostics land in *diag_out. */
static int
compile(const char *text, size_t len, char **diag_out)
{
	char *src = tpath("aliases"), *db = tpath("aliases.db");
	char *diag = NULL;
	size_t dlen = 0;
	FILE *d = open_memstream(&diag, &dlen);
	int rc;

	write_file(src, text, len);
	rc = aliases_compile(src, db, d, NULL);
	fclose(d);
	if (diag_out)
		*diag_out = diag;
	else
		free(diag);
	free(src);
	free(db);
	return rc;
}

static const char *
lookup(const char *key)
{
	static struct buf v;
	char *db = tpath("aliases.db"), err[256];
	struct map *m = map_open(db, err, sizeof(err));
	const char *r = NULL;

	if (v.max == 0)
		buf_init(&v, MAP_VALUE_MAX);
	if (m != NULL && map_lookup(m, key, &v) == MAP_FOUND)
		r = show(&v);
	map_close(m);
	free(db);
	return r;
}

TEST(round_trip_file)
{
	static const char text[] =
	    "# the aliases\n"
	    "postmaster: root\n"
	    "sales: alice,\n"
	    "   bob@example.org,\n"
	    "\t\"|/usr/bin/ticket --queue sales\"\n"
	    "\"Team Lead\": carol\n"
	    "files: /var/log/x, :include:/etc/hermod/list\r\n"
	    "Dup: first\n"
	    "dup: second\n";
	char *diag;

	CHECK_INT(compile(text, sizeof(text) - 1, &diag), 0);
	CHECK_STR(lookup("postmaster"), "root|");
	CHECK_STR(lookup("SALES"), "alice|bob@example.org||/usr/bin/ticket --queue sales|");
	CHECK(lookup("sales") != NULL && lookup("sales")[0] == 'a');
	CHECK_STR(lookup("team lead"), "carol|");
	CHECK_STR(lookup("files"), "/var/log/x|:include:/etc/hermod/list|");
	CHECK_STR(lookup("dup"), "first|");	/* the first entry wins */
	CHECK(strstr(diag, ":9: warning: duplicate entry \"dup\" (first at line 8") != NULL);
	free(diag);
}

TEST(errors_keep_old_table)
{
	static const char good[] = "a: b\n";
	static const char bad[] =
	    "ok: x\n"
	    "broken line\n"
	    "bin\0ary: y\n"
	    "e:\n"
	    "  \n"
	    "new: z\n";
	char *diag;

	CHECK_INT(compile(good, sizeof(good) - 1, NULL), 0);
	CHECK_INT(compile(bad, sizeof(bad) - 1, &diag), 3);
	CHECK(strstr(diag, "/aliases:2: missing ':'") != NULL);
	CHECK(strstr(diag, "/aliases:3: NUL byte in line") != NULL);
	CHECK(strstr(diag, "/aliases:4: no targets") != NULL);
	CHECK_STR(lookup("a"), "b|");		/* old table kept */
	CHECK(lookup("new") == NULL);
	free(diag);
}

TEST(missing_and_unreadable_source)
{
	char *src = tpath("nonexistent"), *db = tpath("nonexistent.db");
	char *diag = NULL;
	size_t dlen = 0;
	FILE *d = open_memstream(&diag, &dlen);

	CHECK(aliases_compile(src, db, d, NULL) > 0);
	CHECK(aliases_compile(dir, db, d, NULL) > 0);	/* a directory */
	if (geteuid() != 0) {	/* root reads anything */
		char *unreadable = tpath("unreadable");

		write_file(unreadable, "a: b\n", 5);
		chmod(unreadable, 0);
		CHECK(aliases_compile(unreadable, db, d, NULL) > 0);
		free(unreadable);
	}
	fclose(d);
	if (geteuid() != 0)
		CHECK(strstr(diag, "unreadable: cannot open: Permission denied") != NULL);
	CHECK(strstr(diag, "cannot open") != NULL);
	CHECK(strstr(diag, "not a regular file") != NULL);
	CHECK(access(db, F_OK) < 0);
	free(diag);
	free(src);
	free(db);
}

TEST(binary_junk)
{
	unsigned char junk[20000];
	unsigned seed = 12345;
	char *diag;

	for (size_t i = 0; i < sizeof(junk); i++) {
		seed = seed * 1103515245 + 12345;
		junk[i] = (unsigned char)(seed >> 16);
	}
	CHECK(compile((char *)junk, sizeof(junk), &diag) > 0);
	free(diag);
}

/* ---- expansion ---- */

/* The result as "K:text K:text ...", K one of L R P F E X I. */
static const char *
render(const struct alias_result *r)
{
	static char out[8192];
	static const char kinds[] = "LRPFEXI";
	size_t o = 0;

	out[0] = '\0';
	for (size_t i = 0; i < r->n && o < sizeof(out) - 1; i++)
		o += (size_t)snprintf(out + o, sizeof(out) - o, "%s%c:%s%s%s",
		    i ? " " : "", kinds[r->v[i].kind], r->v[i].text,
		    r->v[i].kind == ALIAS_ERROR ? "=" : "",
		    r->v[i].kind == ALIAS_ERROR ? r->v[i].status : "");
	return out;
}

static void
setup_expand(const char *text)
{
	char *src = tpath("aliases");

	conf_set("mydestination", "example.com, localhost", stderr);
	conf_set("alias_maps", src, stderr);
	conf_set("recipient_delimiter", "+", stderr);
	CHECK_INT(compile(text, strlen(text), NULL), 0);
	alias_expand_close();
	free(src);
}

static struct alias_result last;	/* of the latest expand() */

static const char *
expand(const char *addr, int want_rc)
{
	int rc = alias_expand(addr, &last);

	CHECK_INT(rc, want_rc);
	return render(&last);
}

TEST(expand_basic)
{
	char *inc = tpath("list.inc"), *loopinc = tpath("loop.inc");
	char *text = xasprintf(
	    "sales: alice, Bob@Example.com, carol@remote.org, \"|/bin/x\", /tmp/f\n"
	    "chain1: chain2\n"
	    "chain2: chain3@example.com\n"
	    "chain3: dave\n"
	    "self: self, erin\n"
	    "loop1: loop2\n"
	    "loop2: loop1\n"
	    "part1: part2, frank\n"
	    "part2: part1, gina\n"
	    "dups: alice, ALICE, alice@example.com, sales\n"
	    "list: :include:%s\n"
	    "incloop: :include:%s\n"
	    "root: admin\n"
	    "spec@example.com: special\n"
	    "alice+lists: listbox\n",
	    inc, loopinc);
	char *inctext = xasprintf("# members\nalice, bob\n\ncarol@remote.org\n");
	char *lt = xasprintf(":include:%s, henry\n", loopinc);

	write_file(inc, inctext, strlen(inctext));
	write_file(loopinc, lt, strlen(lt));
	setup_expand(text);
	CHECK_STR(expand("sales@example.com", MAP_FOUND),
	    "X:sales@example.com L:alice@example.com L:Bob@Example.com "
	    "R:carol@remote.org P:/bin/x F:/tmp/f");
	CHECK_STR(expand("Chain1@example.com", MAP_FOUND),
	    "X:Chain1@example.com X:chain2@example.com X:chain3@example.com "
	    "L:dave@example.com");
	CHECK_STR(expand("self@example.com", MAP_FOUND),
	    "X:self@example.com L:self@example.com L:erin@example.com");
	CHECK_STR(expand("loop1@example.com", MAP_FOUND),
	    "X:loop1@example.com X:loop2@example.com E:loop1@example.com=5.4.6");
	CHECK_STR(expand("part1@example.com", MAP_FOUND),
	    "X:part1@example.com X:part2@example.com L:gina@example.com "
	    "L:frank@example.com");
	CHECK_STR(expand("dups@example.com", MAP_FOUND),
	    "X:dups@example.com L:alice@example.com X:sales@example.com "
	    "L:Bob@Example.com R:carol@remote.org P:/bin/x F:/tmp/f");
	CHECK(strstr(expand("list@example.com", MAP_FOUND),
	    "I:/tmp/test_aliases.") != NULL);
	CHECK(strstr(expand("list@example.com", MAP_FOUND),
	    "L:alice@example.com L:bob@example.com R:carol@remote.org") != NULL);
	CHECK(strstr(expand("incloop@example.com", MAP_FOUND),
	    "L:henry@example.com") != NULL);
	CHECK_STR(expand("nobody@example.com", MAP_NOTFOUND), "L:nobody@example.com");
	CHECK_STR(expand("sales@remote.org", MAP_NOTFOUND), "R:sales@remote.org");
	CHECK_STR(expand("sales", MAP_FOUND),
	    "X:sales L:alice L:Bob@Example.com R:carol@remote.org P:/bin/x F:/tmp/f");
	/* postmaster without its own alias: root's */
	CHECK_STR(expand("PostMaster@example.com", MAP_FOUND),
	    "X:PostMaster@example.com L:admin@example.com");
	CHECK_STR(expand("spec@example.com", MAP_FOUND),
	    "X:spec@example.com L:special@example.com");
	CHECK_STR(expand("spec@localhost", MAP_NOTFOUND), "L:spec@localhost");
	/* extensions: the full name first, then without the extension */
	CHECK_STR(expand("alice+lists@example.com", MAP_FOUND),
	    "X:alice+lists@example.com L:listbox@example.com");
	CHECK_STR(expand("sales+x@example.com", MAP_FOUND),
	    "X:sales+x@example.com L:alice@example.com L:Bob@Example.com "
	    "R:carol@remote.org P:/bin/x F:/tmp/f");
	{
		char longaddr[LU_NAME_MAX * 2 + 32];

		memset(longaddr, 'x', LU_NAME_MAX * 2);
		strcpy(longaddr + LU_NAME_MAX * 2, "@example.com");
		CHECK_INT(alias_expand(longaddr, &last), MAP_NOTFOUND);
		CHECK_INT(alias_exists(longaddr), MAP_NOTFOUND);
		CHECK_INT(alias_expand("@example.com", &last), MAP_NOTFOUND);
	}
	CHECK_INT(alias_exists("sales@example.com"), MAP_FOUND);
	CHECK_INT(alias_exists("sales@remote.org"), MAP_NOTFOUND);
	CHECK_INT(alias_exists("nobody@example.com"), MAP_NOTFOUND);
	CHECK_INT(alias_exists("postmaster@localhost"), MAP_FOUND);
	{
		char *nousers = tpath("nousers");	/* no table at all */

		conf_set("user_maps", nousers, stderr);
		conf_set("local_system_users", "no", stderr);
		CHECK_INT(local_rcpt_exists("sales@example.com"), MAP_FOUND);
		CHECK_INT(local_rcpt_exists("nobody@example.com"), MAP_NOTFOUND);
		CHECK_INT(local_rcpt_exists("postmaster@example.com"), MAP_FOUND);
		write_file(nousers, "x /m/x\n", 7);	/* now "run newaliases" */
		CHECK_INT(local_rcpt_exists("nobody@example.com"), MAP_TEMPFAIL);
		conf_set("local_system_users", "yes", stderr);
		free(nousers);
	}
	free(text);
	free(inctext);
	free(lt);
	free(inc);
	free(loopinc);
}

TEST(expand_include_refusals)
{
	char *ww = tpath("ww.inc"), *missing = tpath("missing.inc");
	char *empty = tpath("empty.inc"), *bad = tpath("bad.inc");
	char *text = xasprintf("ww: :include:%s\nmiss: :include:%s\n"
	    "dir: :include:%s\nempty: :include:%s\nbadinc: :include:%s\n"
	    "ok: a\n", ww, missing, dir, empty, bad);
	const char *r;

	write_file(ww, "alice\n", 6);
	chmod(ww, 0666);
	write_file(empty, "# nobody yet\n\n", 14);
	write_file(bad, "alice, \"unterminated\n", 21);
	setup_expand(text);
	r = expand("ww@example.com", MAP_FOUND);
	CHECK(strstr(r, "=5.3.0") != NULL);
	r = expand("miss@example.com", MAP_FOUND);
	CHECK(strstr(r, "=4.3.0") != NULL);
	r = expand("dir@example.com", MAP_FOUND);
	CHECK(strstr(r, "=5.3.0") != NULL);
	r = expand("empty@example.com", MAP_FOUND);
	CHECK(strstr(r, "E:empty@example.com=5.4.6") != NULL);
	r = expand("badinc@example.com", MAP_FOUND);
	CHECK(strstr(r, "=5.3.0") != NULL);
	free(text);
	free(ww);
	free(missing);
	free(empty);
	free(bad);
}

TEST(expand_bounds)
{
	struct buf t;
	char *r;

	/* a chain ALIAS_DEPTH_MAX long works, one longer does not */
	buf_init(&t, 1 << 20);
	for (int i = 0; i < ALIAS_DEPTH_MAX + 5; i++)
		buf_printf(&t, "c%d: c%d\n", i, i + 1);
	/* a list with more than ALIAS_NODES_MAX members */
	buf_puts(&t, "big: m0");
	for (int i = 1; i < ALIAS_NODES_MAX + 10; i++)
		buf_printf(&t, ",m%d", i);
	buf_puts(&t, "\n");
	setup_expand(t.data);
	r = xstrdup(expand("c5@example.com", MAP_FOUND));
	CHECK(strstr(r, "L:c25@example.com") != NULL);
	CHECK(strstr(r, "E:") == NULL);
	free(r);
	r = xstrdup(expand("c0@example.com", MAP_FOUND));
	CHECK(strstr(r, "=5.4.6") != NULL);
	free(r);
	expand("big@example.com", MAP_FOUND);
	CHECK_INT(last.n, ALIAS_NODES_MAX + 1);
	CHECK_INT(last.v[last.n - 1].kind, ALIAS_ERROR);
	CHECK_STR(last.v[last.n - 1].status, "5.3.0");
	buf_free(&t);
}

TEST(expand_tempfail)
{
	char *db = tpath("aliases.db");

	setup_expand("a: b\n");
	unlink(db);		/* the source is still there: run newaliases */
	alias_expand_close();
	expand("a@example.com", MAP_TEMPFAIL);
	CHECK_STR(expand("x@remote.org", MAP_NOTFOUND), "R:x@remote.org");
	free(db);
}

static void
run_expand_tests(void)
{
	conf_load(NULL, 1, stderr);
	RUN(expand_basic);
	RUN(expand_include_refusals);
	RUN(expand_bounds);
	RUN(expand_tempfail);
	alias_result_free(&last);
	alias_expand_close();
}

int
main(void)
{
	if (mkdtemp(dir) == NULL)
		return 1;
	RUN(parse_table);
	RUN(target_bounds);
	RUN(round_trip_file);
	RUN(errors_keep_old_table);
	RUN(missing_and_unreadable_source);
	RUN(binary_junk);
	run_expand_tests();
	{
		char *cmd = xasprintf("rm -rf %s", dir);

		if (system(cmd) != 0)
			fprintf(stderr, "cleanup failed\n");
		free(cmd);
	}
	return unit_done("test_aliases");
}
