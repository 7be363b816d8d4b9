/*
 * Unit tests for lib/users.c and lib/local_user.c: the users line syntax
 * (every option, bad lines), the stored record round trip, compiling a
 * file with errors, and recipient resolution (users table by address and
 * bare local part, extensions, system accounts, postmaster, tempfail).
 */
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "local_user.h"
#include "map.h"
#include "unit.h"
#include "users.h"
#include "xalloc.h"

static char dir[] = "/tmp/test_users.XXXXXX";

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

static const struct {
	const char *line;
	const char *key;	/* NULL: error */
	const char *mailbox;	/* or the error text */
	int maildir;
	long uid, gid;		/* -1: not given */
	const char *password;
	unsigned long long quota;
} cases[] = {
	{ "alice@Example.com /var/mail/alice/", "alice@example.com",
	    "/var/mail/alice/", 1, -1, -1, "", 0 },
	{ "bob /var/mail/bob uid=1001 gid=1002", "bob", "/var/mail/bob", 0,
	    1001, 1002, "", 0 },
	{ "c /m/c/ password=$6$salt$hash quota=10M", "c", "/m/c/", 1, -1, -1,
	    "$6$salt$hash", 10485760ULL },
	{ "d /m/d quota=123", "d", "/m/d", 0, -1, -1, "", 123 },
	{ "e /m/e quota=2g UID=5", "e", "/m/e", 0, 5, -1, "", 2147483648ULL },
	{ "f\t/m/f\t gid=0", "f", "/m/f", 0, -1, 0, "", 0 },
	{ "r /m/r uid=root", "r", "/m/r", 0, 0, 0, "", 0 },	/* user's group */
	{ "r2 /m/r gid=7 uid=root", "r2", "/m/r", 0, 0, 7, "", 0 },
	{ "r3 /m/r uid=root gid=8", "r3", "/m/r", 0, 0, 8, "", 0 },
	{ "g /m/g uid=2147483647", "g", "/m/g", 0, 2147483647L, -1, "", 0 },
	{ "g /m/g uid=2147483648", NULL, "no such user", 0, 0, 0, NULL, 0 },
	{ "nobox", NULL, "missing MAILBOX", 0, 0, 0, NULL, 0 },
	{ "x relative/path", NULL, "absolute path", 0, 0, 0, NULL, 0 },
	{ "x /m/x uid=nosuchuser-hermod", NULL, "no such user", 0, 0, 0, NULL, 0 },
	{ "x /m/x gid=nosuchgroup-hermod", NULL, "no such group", 0, 0, 0, NULL, 0 },
	{ "x /m/x quota=12q", NULL, "bad quota", 0, 0, 0, NULL, 0 },
	{ "x /m/x quota=99999999999999999999", NULL, "bad quota", 0, 0, 0, NULL, 0 },
	{ "x /m/x uid=1 uid=2", NULL, "given twice", 0, 0, 0, NULL, 0 },
	{ "x /m/x color=red", NULL, "unknown option", 0, 0, 0, NULL, 0 },
	{ "x /m/x novalue", NULL, "expected name=value", 0, 0, 0, NULL, 0 },
	{ "x /m/x uid=", NULL, "expected name=value", 0, 0, 0, NULL, 0 },
	{ "@example.com /m/x", NULL, "bad address", 0, 0, 0, NULL, 0 },
	{ "x@ /m/x", NULL, "bad address", 0, 0, 0, NULL, 0 },
	{ "x /m/\x01x", NULL, "control character", 0, 0, 0, NULL, 0 },
};

TEST(parse_table)
{
	struct users_record r, back;
	struct buf key, val;
	char err[256];

	buf_init(&key, MAP_KEY_MAX + 16);
	buf_init(&val, MAP_VALUE_MAX);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *l = cases[i].line;
		int rc = users_parse_line(l, strlen(l), &key, &r, err, sizeof(err));

		if (cases[i].key == NULL) {
			CHECK_INT(rc, -1);
			if (strstr(err, cases[i].mailbox) == NULL)
				fprintf(stderr, "case %zu: \"%s\"\n", i, err);
			CHECK(strstr(err, cases[i].mailbox) != NULL);
			continue;
		}
		if (rc != 0)
			fprintf(stderr, "case %zu: \"%s\"\n", i, err);
		CHECK_INT(rc, 0);
		CHECK_STR(key.data, cases[i].key);
		CHECK_STR(r.mailbox, cases[i].mailbox);
		CHECK_INT(r.is_maildir, cases[i].maildir);
		CHECK_INT(r.uid == (uid_t)-1 ? -1 : (long)r.uid, cases[i].uid);
		CHECK_INT(r.gid == (gid_t)-1 ? -1 : (long)r.gid, cases[i].gid);
		CHECK_STR(r.password, cases[i].password);
		CHECK_INT(r.quota, cases[i].quota);
		/* the stored form decodes to the same record */
		buf_reset(&val);
		CHECK_INT(users_record_format(&r, &val), 0);
		CHECK_INT(users_record_parse(val.data, val.len, &back), 0);
		CHECK(memcmp(&r, &back, sizeof(r)) == 0);
	}
	buf_free(&key);
	buf_free(&val);
}

TEST(record_parse_bad)
{
	struct users_record r;
	static const struct { const char *v; size_t n; } bad[] = {
		{ "", 0 },
		{ "/m\0", 3 },				/* fields missing */
		{ "/m\0" "1\0" "2\0" "pw\0" "5", 11 },	/* no final NUL */
		{ "rel\0\0\0\0\0", 8 },			/* not absolute */
		{ "/m\0x\0\0\0\0", 8 },			/* bad uid */
		{ "/m\0\0\0\0" "9q\0", 9 },		/* bad quota */
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK_INT(users_record_parse(bad[i].v, bad[i].n, &r), -1);
	CHECK_INT(users_record_parse("/m\0\0\0\0\0", 7, &r), 0);
}

TEST(mailbox_bound)
{
	char line[USERS_MAILBOX_MAX + 32], err[256];
	struct users_record r;
	struct buf key;

	buf_init(&key, MAP_KEY_MAX + 16);
	memcpy(line, "a /", 3);
	memset(line + 3, 'm', USERS_MAILBOX_MAX - 1);
	line[2 + USERS_MAILBOX_MAX] = '\0';
	CHECK_INT(users_parse_line(line, strlen(line), &key, &r, err,
	    sizeof(err)), 0);
	line[2 + USERS_MAILBOX_MAX] = 'm';
	line[3 + USERS_MAILBOX_MAX] = '\0';
	CHECK_INT(users_parse_line(line, strlen(line), &key, &r, err,
	    sizeof(err)), -1);
	buf_free(&key);
}

static int
compile(const char *text, char **diag_out)
{
	char *src = tpath("users"), *db = tpath("users.db"), *diag = NULL;
	size_t dlen = 0;
	FILE *d = open_memstream(&diag, &dlen);
	int rc;

	write_file(src, text, strlen(text));
	rc = users_compile(src, db, d, NULL);
	fclose(d);
	if (diag_out)
		*diag_out = diag;
	else
		free(diag);
	free(src);
	free(db);
	return rc;
}

TEST(compile_errors)
{
	char *diag;

	CHECK_INT(compile("a /m/a\nb relative\nc /m/c quota=x\n"
	    "d /m/d\n  uid=12\n", &diag), 2);
	CHECK(strstr(diag, "/users:2: MAILBOX must be an absolute path") != NULL);
	CHECK(strstr(diag, "/users:3: bad quota") != NULL);
	free(diag);
}

/* ---- local_user_find ---- */

static int
find(const char *addr, struct local_user *lu)
{
	return local_user_find(addr, NULL, lu);
}

TEST(find_users_table)
{
	struct local_user lu;

	conf_set("user_maps", dir, stderr);	/* replaced below */
	{
		char *src = tpath("users");

		conf_set("user_maps", src, stderr);
		free(src);
	}
	conf_set("mydestination", "example.com, localhost", stderr);
	conf_set("recipient_delimiter", "+-", stderr);
	conf_set("local_system_users", "yes", stderr);
	conf_set("home_mailbox", "Maildir/", stderr);
	CHECK_INT(compile("alice@example.com /m/alice/ uid=10 gid=20 "
	    "password=$y$h quota=1k\n"
	    "bob /m/bob\n"
	    "carol@other.org /m/carol/\n", NULL), 0);
	local_user_close();
	CHECK_INT(find("alice@example.com", &lu), LU_FOUND);
	CHECK_STR(lu.mailbox, "/m/alice/");
	CHECK_INT(lu.is_maildir, 1);
	CHECK_INT(lu.uid, 10);
	CHECK_INT(lu.gid, 20);
	CHECK_INT(lu.quota, 1024);
	CHECK_STR(lu.password, "$y$h");
	CHECK_INT(lu.source, LU_SRC_USERS);
	CHECK_STR(lu.key, "alice@example.com");
	CHECK_INT(find("ALICE+news@Example.COM", &lu), LU_FOUND);
	CHECK_STR(lu.local, "ALICE");
	CHECK_INT(find("alice-x@example.com", &lu), LU_FOUND);
	CHECK_INT(find("alice@localhost", &lu), LU_NOTFOUND - (getpwnam("alice") != NULL));
	CHECK_INT(find("bob@localhost", &lu), LU_FOUND);
	CHECK_STR(lu.mailbox, "/m/bob");
	CHECK_INT(lu.is_maildir, 0);
	CHECK_INT(lu.uid, (uid_t)-1);
	CHECK_INT(local_user_find("bob", "example.com.", &lu), LU_FOUND);
	CHECK_INT(find("bob", &lu), LU_FOUND);
	CHECK_INT(find("bob@remote.org", &lu), LU_NOTFOUND);	/* not local */
	CHECK_INT(find("carol@other.org", &lu), LU_FOUND);	/* own key */
	CHECK_INT(find("nosuchuser-hermod@example.com", &lu), LU_NOTFOUND);
	CHECK_INT(find("@example.com", &lu), LU_NOTFOUND);
}

TEST(find_system_accounts)
{
	struct local_user lu;
	struct passwd *pw = getpwuid(0);

	if (pw == NULL)
		return;
	CHECK_INT(find("root@example.com", &lu), LU_FOUND);
	CHECK_INT(lu.source, LU_SRC_SYSTEM);
	CHECK_INT(lu.uid, 0);
	CHECK_STR(lu.account, "root");
	CHECK(strstr(lu.mailbox, "/Maildir/") != NULL);
	CHECK_INT(lu.is_maildir, 1);
	CHECK_INT(find("ROOT@example.com", &lu), LU_FOUND);	/* lower-cased */
	/* postmaster found nowhere resolves as root */
	CHECK_INT(find("postmaster@example.com", &lu), LU_FOUND);
	CHECK_STR(lu.account, "root");
	CHECK_INT(find("postmaster@remote.org", &lu), LU_NOTFOUND);
	conf_set("home_mailbox", "", stderr);
	conf_set("mail_spool_directory", "/var/spool/mail", stderr);
	CHECK_INT(find("root", &lu), LU_FOUND);
	CHECK_STR(lu.mailbox, "/var/spool/mail/root");
	CHECK_INT(lu.is_maildir, 0);
	conf_set("local_system_users", "no", stderr);
	CHECK_INT(find("root", &lu), LU_NOTFOUND);
	conf_set("local_system_users", "yes", stderr);
	conf_set("home_mailbox", "Maildir/", stderr);
}

TEST(find_tempfail)
{
	struct local_user lu;
	char *db = tpath("users.db");

	unlink(db);	/* source still there: "run newaliases" */
	local_user_close();
	CHECK_INT(find("bob@example.com", &lu), LU_TEMPFAIL);
	CHECK_INT(find("root@example.com", &lu), LU_TEMPFAIL);
	local_user_close();
	free(db);
}

TEST(strip_extension)
{
	char out[8];

	conf_set("recipient_delimiter", "+", stderr);
	CHECK_INT(local_strip_extension("a+b", out, sizeof(out)), 0);
	CHECK_STR(out, "a");
	CHECK_INT(local_strip_extension("+ab", out, sizeof(out)), 0);
	CHECK_STR(out, "+ab");
	CHECK_INT(local_strip_extension("1234567", out, sizeof(out)), 0);
	CHECK_INT(local_strip_extension("12345678", out, sizeof(out)), -1);
	conf_set("recipient_delimiter", "", stderr);
	CHECK_INT(local_strip_extension("a+b", out, sizeof(out)), 0);
	CHECK_STR(out, "a+b");
}

int
main(void)
{
	if (mkdtemp(dir) == NULL)
		return 1;
	conf_load(NULL, 1, stderr);
	RUN(parse_table);
	RUN(record_parse_bad);
	RUN(mailbox_bound);
	RUN(compile_errors);
	RUN(find_users_table);
	RUN(find_system_accounts);
	RUN(find_tempfail);
	RUN(strip_extension);
	{
		char *cmd = xasprintf("rm -rf %s", dir);

		if (system(cmd) != 0)
			fprintf(stderr, "cleanup failed\n");
		free(cmd);
	}
	return unit_done("test_users");
}
