/*
 * newaliases: compile the aliases file (alias_maps) and the users file
 * (user_maps) into FILE.db beside each, atomically (map_compile: a
 * temporary file, fsync, rename, fsync of the directory). Every error is
 * listed as file:line; a table with errors is not installed, the old one
 * stays. The daemons notice the new files by themselves (map.h).
 *
 *     newaliases [-c CONF] [-v]
 */
#include <glob.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "aliases.h"
#include "buf.h"
#include "conf.h"
#include "local_user.h"
#include "log.h"
#include "map.h"
#include "users.h"
#include "xalloc.h"

typedef int (*compile_fn)(const char *, const char *, FILE *, unsigned long *);

static const struct table {
	enum conf_key key;
	const char *what;
	compile_fn compile;
} tables[] = {
	{ C_alias_maps, "aliases", aliases_compile },
	{ C_user_maps, "users", users_compile },
};

static void
usage(void)
{
	fprintf(stderr, "usage: newaliases [-c CONF] [-v]\n");
	exit(2);
}

#define STALE_TMP_AGE 3600	/* a temporary table this old is a crash's */

/* Remove what a newaliases that crashed left behind (FILE.db.tmpXXXXXX);
 * a young one may be another newaliases at work, so it stays. */
static void
remove_stale(const char *db)
{
	char *pat = xasprintf("%s.tmp??????", db);
	struct stat st;
	glob_t g;

	if (glob(pat, 0, NULL, &g) == 0) {
		for (size_t i = 0; i < g.gl_pathc; i++)
			if (lstat(g.gl_pathv[i], &st) == 0 && S_ISREG(st.st_mode) &&
			    st.st_mtime < time(NULL) - STALE_TMP_AGE &&
			    unlink(g.gl_pathv[i]) == 0)
				fprintf(stderr, "newaliases: removed stale %s\n",
				    g.gl_pathv[i]);
		globfree(&g);
	}
	free(pat);
}

/* As root, warn when the daemons' account cannot read the new table: they
 * would defer every lookup. Supplementary groups are not considered. */
static void
check_readable(const char *db)
{
	struct passwd *pw;
	struct stat st;

	if (geteuid() != 0 || (pw = getpwnam(conf_str(C_user))) == NULL ||
	    stat(db, &st) < 0)
		return;
	if ((st.st_mode & S_IROTH) || (st.st_uid == pw->pw_uid &&
	    (st.st_mode & S_IRUSR)) || (st.st_gid == pw->pw_gid &&
	    (st.st_mode & S_IRGRP)))
		return;
	fprintf(stderr, "newaliases: warning: %s is not readable by user %s "
	    "(the daemons would defer mail): make its text file readable by "
	    "that user or group\n", db, pw->pw_name);
}

/* Is there an entry for `key` in the new aliases table? 1 yes, 0 no,
 * -1 cannot tell. */
static int
has_alias(const char *key)
{
	const char *src = conf_str(C_alias_maps);
	struct map *m;
	struct buf val;
	char err[256], *db;
	int rc;

	if (*src == '\0')
		return 0;
	db = xasprintf("%s.db", src);
	m = map_open(db, err, sizeof(err));
	free(db);
	if (m == NULL)
		return -1;
	buf_init(&val, MAP_VALUE_MAX);
	rc = map_lookup(m, key, &val);
	buf_free(&val);
	map_close(m);
	return rc == MAP_FOUND ? 1 : rc == MAP_NOTFOUND ? 0 : -1;
}

/* Deliveries never run with root's rights, so mail for the root account
 * (and for postmaster, abuse ... where the aliases send them to root)
 * would wait in the queue until it expires, days later. Say so now. */
static void
check_root(void)
{
	struct local_user lu;

	if (has_alias("root") != 0 || local_user_find("root", NULL, &lu) != LU_FOUND ||
	    lu.uid != 0)
		return;
	fprintf(stderr, "newaliases: warning: no alias for root: mail to root "
	    "(and to the names the aliases send to root) is never delivered "
	    "with root's rights and would wait in the queue until it expires; "
	    "add a line such as \"root: alice\" to %s\n", conf_str(C_alias_maps));
}

static int
build(const struct table *t, int verbose)
{
	const char *src = conf_str(t->key);
	char *db;
	unsigned long n = 0;
	int errors;

	if (*src == '\0')
		return 0;	/* no such table configured */
	db = xasprintf("%s.db", src);
	remove_stale(db);
	errors = t->compile(src, db, stderr, &n);
	if (!errors)
		check_readable(db);
	if (errors)
		fprintf(stderr, "newaliases: %s: %d error%s, %s not changed\n",
		    src, errors, errors == 1 ? "" : "s", db);
	else if (verbose)
		printf("newaliases: %s: %lu %s entr%s\n", db, n, t->what,
		    n == 1 ? "y" : "ies");
	free(db);
	return errors;
}

int
main(int argc, char **argv)
{
	const char *cfile = NULL;
	int ch, verbose = 0, errors = 0;

	log_init("newaliases", 1, LOG_LVL_WARN);
	while ((ch = getopt(argc, argv, "c:v")) != -1) {
		switch (ch) {
		case 'c':
			cfile = optarg;
			break;
		case 'v':
			verbose = 1;
			break;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();
	if (conf_load(conf_path(cfile), cfile == NULL, stderr) < 0)
		return 1;
	for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++)
		errors += build(&tables[i], verbose);
	if (!errors)
		check_root();
	return errors ? 1 : 0;
}
