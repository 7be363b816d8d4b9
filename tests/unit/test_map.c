/*
 * Unit tests for lib/map.c: the Berkeley DB writer and reader (round
 * trips, missing files, reopen after a rebuild, 10,000 entries) and the
 * bounded line reader of the text tables (continuations, comments, long
 * lines, NUL bytes, CRLF).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "map.h"
#include "unit.h"
#include "xalloc.h"

static char dir[] = "/tmp/test_map.XXXXXX";

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

static int
build(const char *dbpath, const char *const *kv)
{
	char err[256];
	struct map_writer *w = map_create(dbpath, err, sizeof(err));

	if (w == NULL)
		return -1;
	for (; kv[0] != NULL; kv += 2)
		if (map_put(w, kv[0], strlen(kv[0]), kv[1], strlen(kv[1]) + 1) != 0) {
			map_abort(w);
			return -1;
		}
	return map_commit(w, NULL, err, sizeof(err));
}

TEST(round_trip)
{
	static const char *const kv[] = { "alice", "one", "bob@example.org",
	    "two", NULL };
	char *db = tpath("rt.db"), err[256];
	struct buf v;
	struct map *m;

	CHECK_INT(build(db, kv), 0);
	m = map_open(db, err, sizeof(err));
	CHECK(m != NULL);
	buf_init(&v, 1024);
	CHECK_INT(map_lookup(m, "alice", &v), MAP_FOUND);
	CHECK_STR(v.data, "one");
	CHECK_INT(map_lookup(m, "ALICE", &v), MAP_FOUND);	/* lower-cased */
	CHECK_INT(map_lookup(m, "Bob@Example.ORG", &v), MAP_FOUND);
	CHECK_STR(v.data, "two");
	CHECK_INT(map_lookup(m, "carol", &v), MAP_NOTFOUND);
	CHECK_INT(map_lookup(m, "", &v), MAP_NOTFOUND);
	buf_free(&v);
	map_close(m);
	free(db);
}

TEST(key_bounds)
{
	char *db = tpath("kb.db"), err[256], key[MAP_KEY_MAX + 2];
	struct buf v;
	struct map *m;
	const char *kv[] = { key, "x", NULL };

	memset(key, 'k', MAP_KEY_MAX);
	key[MAP_KEY_MAX] = '\0';
	CHECK_INT(build(db, kv), 0);
	m = map_open(db, err, sizeof(err));
	buf_init(&v, 16);
	CHECK_INT(map_lookup(m, key, &v), MAP_FOUND);	/* at the bound */
	key[MAP_KEY_MAX] = 'k';
	key[MAP_KEY_MAX + 1] = '\0';
	CHECK_INT(map_lookup(m, key, &v), MAP_NOTFOUND);	/* one past */
	buf_free(&v);
	map_close(m);
	free(db);
}

TEST(value_over_cap_is_tempfail)
{
	static const char *const kv[] = { "big", "0123456789abcdef", NULL };
	char *db = tpath("vc.db"), err[256];
	struct buf v;
	struct map *m;

	CHECK_INT(build(db, kv), 0);
	m = map_open(db, err, sizeof(err));
	buf_init(&v, 8);
	CHECK_INT(map_lookup(m, "big", &v), MAP_TEMPFAIL);
	buf_free(&v);
	map_close(m);
	free(db);
}

TEST(missing_db)
{
	char *db = tpath("none.db"), *src = tpath("none"), err[256];
	struct buf v;
	struct map *m = map_open(db, err, sizeof(err));

	buf_init(&v, 16);
	CHECK(m != NULL);
	CHECK_INT(map_lookup(m, "x", &v), MAP_NOTFOUND);	/* no source */
	write_file(src, "x: y\n", 5);
	CHECK_INT(map_lookup(m, "x", &v), MAP_TEMPFAIL);	/* run newaliases */
	map_close(m);
	buf_free(&v);
	free(db);
	free(src);
}

TEST(broken_db_is_error)
{
	char *db = tpath("junk.db"), err[256];

	write_file(db, "this is not a database at all, not at all", 41);
	CHECK(map_open(db, err, sizeof(err)) == NULL);
	free(db);
}

TEST(reopen_after_rebuild)
{
	static const char *const kv1[] = { "a", "1", NULL };
	static const char *const kv2[] = { "a", "2", "b", "3", NULL };
	char *db = tpath("re.db"), err[256];
	struct buf v;
	struct map *m;

	CHECK_INT(build(db, kv1), 0);
	m = map_open(db, err, sizeof(err));
	buf_init(&v, 16);
	CHECK_INT(map_lookup(m, "b", &v), MAP_NOTFOUND);
	CHECK_INT(build(db, kv2), 0);
	/* seen at the very next lookup: no wait */
	CHECK_INT(map_lookup(m, "b", &v), MAP_FOUND);
	CHECK_STR(v.data, "3");
	CHECK_INT(map_lookup(m, "a", &v), MAP_FOUND);
	CHECK_STR(v.data, "2");
	buf_free(&v);
	map_close(m);
	free(db);
}

/* A reader process keeps one map open and looks up in a loop while this
 * process rebuilds the table ten times: no lookup of the stable key may
 * fail, and the reader must see the last table's new key. */
static int
reader(const char *db)
{
	char err[256];
	struct map *m = map_open(db, err, sizeof(err));
	struct buf v;
	time_t end = time(NULL) + 10;
	int bad = m == NULL;

	buf_init(&v, 64);
	while (m != NULL && time(NULL) < end) {
		if (map_lookup(m, "stable", &v) != MAP_FOUND)
			bad++;
		if (map_lookup(m, "final", &v) == MAP_FOUND)
			break;
	}
	buf_free(&v);
	map_close(m);
	return bad || time(NULL) >= end;
}

TEST(rebuild_while_reading)
{
	static const char *const kv[] = { "stable", "1", NULL };
	static const char *const last[] = { "stable", "1", "final", "2", NULL };
	char *db = tpath("rw.db"), err[256], key[32];
	struct map_writer *w;
	int status = -1;
	pid_t pid;

	CHECK_INT(build(db, kv), 0);
	if ((pid = fork()) == 0)
		_exit(reader(db));
	for (int round = 0; round < 10; round++) {
		w = map_create(db, err, sizeof(err));
		map_put(w, "stable", 6, "1", 2);
		for (int i = 0; i < 2000 * round; i++) {
			snprintf(key, sizeof(key), "k%d", i);
			map_put(w, key, strlen(key), "x", 2);
		}
		CHECK_INT(map_commit(w, NULL, err, sizeof(err)), 0);
		usleep(50000);
	}
	CHECK_INT(build(db, last), 0);
	CHECK_INT(waitpid(pid, &status, 0), pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	free(db);
}

static int
count_cb(const char *k, size_t kl, const char *v, size_t vl, void *arg)
{
	(void)k, (void)kl, (void)v, (void)vl;
	(*(int *)arg)++;
	return 0;
}

TEST(ten_thousand)
{
	char *db = tpath("10k.db"), err[256], key[32], val[32];
	struct map_writer *w = map_create(db, err, sizeof(err));
	struct buf v;
	struct map *m;
	int n = 0, ok = 1;

	CHECK(w != NULL);
	for (int i = 0; i < 10000; i++) {
		snprintf(key, sizeof(key), "user%d", i);
		snprintf(val, sizeof(val), "v%d", i);
		ok &= map_put(w, key, strlen(key), val, strlen(val) + 1) == 0;
	}
	CHECK(ok);
	CHECK_INT(map_put(w, "user7", 5, "dup", 4), MAP_PUT_EXISTS);	/* first wins */
	CHECK_INT(map_commit(w, NULL, err, sizeof(err)), 0);
	m = map_open(db, err, sizeof(err));
	buf_init(&v, 64);
	CHECK_INT(map_lookup(m, "user9999", &v), MAP_FOUND);
	CHECK_STR(v.data, "v9999");
	CHECK_INT(map_lookup(m, "user7", &v), MAP_FOUND);
	CHECK_STR(v.data, "v7");
	CHECK_INT(map_iterate(m, count_cb, &n), 0);
	CHECK_INT(n, 10000);
	buf_free(&v);
	map_close(m);
	free(db);
}

/* ---- the line reader ---- */

struct want {
	unsigned long line;
	const char *text;
};

static void
check_lines(const char *data, size_t len, const struct want *w, int nerr)
{
	char *src = tpath("lines");
	struct map_src s;
	FILE *diag = fopen("/dev/null", "w");
	int i = 0;

	write_file(src, data, len);
	CHECK_INT(map_src_open(&s, src, diag), 0);
	while (map_src_next(&s) == 1) {
		CHECK(w[i].text != NULL);
		if (w[i].text == NULL)
			break;
		CHECK_INT(s.lineno, w[i].line);
		CHECK_STR(s.line.data, w[i].text);
		i++;
	}
	CHECK(w[i].text == NULL);
	CHECK_INT(s.nerrors, nerr);
	map_src_close(&s);
	fclose(diag);
	free(src);
}

TEST(lines_basic)
{
	static const char data[] =
	    "# comment\n"
	    "a: b\n"
	    "\n"
	    "c: d,\n"
	    "  e,\n"
	    "# inside\n"
	    "\tf\n"
	    "   \n"
	    "g: h\r\n"
	    "last: x";	/* no final newline */
	static const struct want w[] = { { 2, "a: b" },
	    { 4, "c: d,   e, \tf" }, { 9, "g: h" }, { 10, "last: x" },
	    { 0, NULL } };

	check_lines(data, sizeof(data) - 1, w, 0);
}

TEST(lines_errors)
{
	static const char data[] = " orphan\nok: 1\nbad\0nul: 2\n  cont\nok2: 3\n";
	static const struct want w[] = { { 2, "ok: 1" }, { 5, "ok2: 3" },
	    { 0, NULL } };

	/* the orphan continuation and the NUL line (with its continuation)
	 * are reported and skipped */
	check_lines(data, sizeof(data) - 1, w, 2);
}

TEST(lines_leading_blank_and_nul_only)
{
	static const char data[] = "\n\n\0\0\n=\0\nz: 1\n";
	static const struct want w[] = { { 5, "z: 1" }, { 0, NULL } };

	check_lines(data, sizeof(data) - 1, w, 2);	/* found by the fuzzer */
}

TEST(lines_long)
{
	size_t n = MAP_LINE_MAX + 10;
	char *data = xmalloc(2 * n + 64);
	size_t len;
	static const struct want w1[] = { { 2, "after: 1" }, { 0, NULL } };

	/* one past the bound: error, skipped */
	memset(data, 'x', MAP_LINE_MAX + 1);
	len = MAP_LINE_MAX + 1;
	memcpy(data + len, "\nafter: 1\n", 10);
	check_lines(data, len + 10, w1, 1);
	/* at the bound: fine */
	memset(data, 'y', MAP_LINE_MAX);
	memcpy(data + MAP_LINE_MAX, "\n", 1);
	{
		char *src = tpath("lines2");
		struct map_src s;

		write_file(src, data, MAP_LINE_MAX + 1);
		CHECK_INT(map_src_open(&s, src, NULL), 0);
		CHECK_INT(map_src_next(&s), 1);
		CHECK_INT(s.line.len, MAP_LINE_MAX);
		CHECK_INT(s.nerrors, 0);
		map_src_close(&s);
		free(src);
	}
	free(data);
}

TEST(src_not_regular_or_missing)
{
	struct map_src s;
	char *missing = tpath("nope");

	CHECK_INT(map_src_open(&s, missing, NULL), -1);
	CHECK_INT(map_src_open(&s, "/tmp", NULL), -1);
	free(missing);
}

int
main(void)
{
	if (mkdtemp(dir) == NULL)
		return 1;
	RUN(round_trip);
	RUN(key_bounds);
	RUN(value_over_cap_is_tempfail);
	RUN(missing_db);
	RUN(broken_db_is_error);
	RUN(reopen_after_rebuild);
	RUN(ten_thousand);
	RUN(rebuild_while_reading);
	RUN(lines_basic);
	RUN(lines_errors);
	RUN(lines_leading_blank_and_nul_only);
	RUN(lines_long);
	RUN(src_not_regular_or_missing);
	{
		char *cmd = xasprintf("rm -rf %s", dir);

		if (system(cmd) != 0)
			fprintf(stderr, "cleanup failed\n");
		free(cmd);
	}
	return unit_done("test_map");
}
