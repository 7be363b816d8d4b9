/*
 * Unit tests for lib/conf.c: the hermod.conf syntax, every value type at
 * and past its bounds, $name expansion, the size limits, diagnostics with
 * file:line, and that a failed load keeps the previous configuration.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "unit.h"

static char diag[8192];

/* Load text as the file "t.conf"; diagnostics end up in diag. */
static int
load(const char *text, size_t len)
{
	char *out = NULL;
	size_t n = 0;
	FILE *err = open_memstream(&out, &n);
	int rc = conf_load_mem("t.conf", text, len, err);

	fclose(err);
	snprintf(diag, sizeof(diag), "%s", out != NULL ? out : "");
	free(out);
	return rc;
}

static int
loads(const char *text)
{
	return load(text, strlen(text));
}

static void
reset(void)
{
	CHECK_INT(conf_load(NULL, 1, stderr), 0);
}

/* Write text to a fresh temp file; the caller unlinks it. */
static char *
temp_file(const char *text, size_t len)
{
	char *path = strdup("/tmp/test_conf.XXXXXX");
	int fd = mkstemp(path);

	CHECK(fd >= 0);
	CHECK_INT(write(fd, text, len), (long long)len);
	close(fd);
	return path;
}

TEST(test_defaults)
{
	reset();
	CHECK(conf_str(C_myhostname)[0] != '\0');
	CHECK(conf_str(C_mydomain)[0] != '\0');
	CHECK(conf_list_has(C_mydestination, conf_str(C_myhostname)));
	CHECK(conf_list_has(C_mydestination, "LOCALHOST"));
	CHECK_INT(conf_num(C_message_size_limit), 52428800);
	CHECK_INT(conf_num(C_maximal_queue_lifetime), 5 * 86400);
	CHECK_INT(conf_num(C_delay_warning_time), 4 * 3600);
	CHECK_INT(conf_bool(C_local_system_users), 1);
	CHECK_STR(conf_str(C_queue_directory), "/var/spool/hermod");
	CHECK_STR(conf_str(C_relayhost), "");
	CHECK(conf_list(C_lmtp_listen)[0] == NULL);
	CHECK(!conf_is_set(C_relayhost));
	for (int k = 0; k < CONF_NKEYS; k++)
		CHECK_INT(conf_lookup_key(conf_defs[k].name), k);
	CHECK_INT(conf_lookup_key("nosuch"), -1);
	CHECK_INT(conf_lookup_key("myhostnam"), -1);
	CHECK_INT(conf_lookup_key("myhostnamex"), -1);
	CHECK_INT(conf_lookup_key(NULL), -1);
}

/* Typed values: each at its bounds and one past. */
static const struct {
	const char *key, *value;
	int ok;
	long long num;
} typed[] = {
	{ "smtp_port", "1", 1, 1 },
	{ "smtp_port", "0", 0, 0 },
	{ "smtp_port", "65535", 1, 65535 },
	{ "smtp_port", "65536", 0, 0 },
	{ "smtp_port", "-1", 0, 0 },
	{ "smtp_port", "25x", 0, 0 },
	{ "smtp_port", "1k", 0, 0 },
	{ "smtp_port", "abc", 0, 0 },
	{ "smtp_port", "", 0, 0 },
	{ "smtp_port", "-", 0, 0 },
	{ "smtp_port", "99999999999999999999", 0, 0 },
	{ "smtpd_recipient_limit", "100000", 1, 100000 },
	{ "smtpd_recipient_limit", "100001", 0, 0 },
	{ "message_size_limit", "1024", 1, 1024 },
	{ "message_size_limit", "1023", 0, 0 },
	{ "message_size_limit", "1k", 1, 1024 },
	{ "message_size_limit", "1K", 1, 1024 },
	{ "message_size_limit", "10m", 1, 10485760 },
	{ "message_size_limit", "10M", 1, 10485760 },
	{ "message_size_limit", "3g", 1, 3221225472LL },
	{ "message_size_limit", "4294967295", 1, 4294967295LL },
	{ "message_size_limit", "4294967296", 0, 0 },
	{ "message_size_limit", "4g", 0, 0 },
	{ "message_size_limit", "1kb", 0, 0 },
	{ "message_size_limit", "k", 0, 0 },
	{ "message_size_limit", "10t", 0, 0 },
	{ "message_size_limit", "9223372036854775807k", 0, 0 },
	{ "maximal_queue_lifetime", "0", 1, 0 },
	{ "maximal_queue_lifetime", "10", 1, 10 },
	{ "maximal_queue_lifetime", "10s", 1, 10 },
	{ "maximal_queue_lifetime", "10S", 1, 10 },
	{ "maximal_queue_lifetime", "3m", 1, 180 },
	{ "maximal_queue_lifetime", "2h", 1, 7200 },
	{ "maximal_queue_lifetime", "5d", 1, 432000 },
	{ "maximal_queue_lifetime", "1w", 1, 604800 },
	{ "maximal_queue_lifetime", "365d", 1, 365LL * 86400 },
	{ "maximal_queue_lifetime", "31536001", 0, 0 },
	{ "maximal_queue_lifetime", "366d", 0, 0 },
	{ "maximal_queue_lifetime", "1y", 0, 0 },
	{ "maximal_queue_lifetime", "-1s", 0, 0 },
	{ "maximal_queue_lifetime", "5 d", 0, 0 },
	{ "maximal_queue_lifetime", "5dd", 0, 0 },
	{ "mailbox_lock_timeout", "3600", 1, 3600 },
	{ "mailbox_lock_timeout", "3601", 0, 0 },
	{ "minimal_backoff_time", "1", 1, 1 },
	{ "minimal_backoff_time", "0", 0, 0 },
	{ "local_system_users", "yes", 1, 1 },
	{ "local_system_users", "YES", 1, 1 },
	{ "local_system_users", "True", 1, 1 },
	{ "local_system_users", "1", 1, 1 },
	{ "local_system_users", "no", 1, 0 },
	{ "local_system_users", "false", 1, 0 },
	{ "local_system_users", "0", 1, 0 },
	{ "local_system_users", "maybe", 0, 0 },
	{ "local_system_users", "2", 0, 0 },
	{ "local_system_users", "", 0, 0 },
	{ "log_level", "debug", 1, 0 },
	{ "log_level", "loud", 0, 0 },
};

TEST(test_typed)
{
	char text[256], want[300];

	for (size_t i = 0; i < sizeof(typed) / sizeof(typed[0]); i++) {
		int rc, k = conf_lookup_key(typed[i].key);

		reset();
		snprintf(text, sizeof(text), "# a comment\n%s = %s\n", typed[i].key, typed[i].value);
		rc = loads(text);
		if (rc != (typed[i].ok ? 0 : -1))
			fprintf(stderr, "row %zu: %s = '%s'\n", i, typed[i].key, typed[i].value);
		CHECK_INT(rc, typed[i].ok ? 0 : -1);
		if (typed[i].ok) {
			CHECK_STR(diag, "");
			if (conf_defs[k].type != CONF_STR)
				CHECK_INT(conf_num(k), typed[i].num);
		} else {
			snprintf(want, sizeof(want), "t.conf:2: bad value for %s: '%s' (",
			    typed[i].key, typed[i].value);
			CHECK(strstr(diag, want) != NULL);
			CHECK(!conf_is_set(k));	/* the defaults stayed */
		}
	}
}

/* Syntax: what a key ends up as, and the diagnostics. */
static const struct {
	const char *text;
	int rc;
	const char *key, *value;	/* key NULL: no value check */
	const char *diag;		/* expected substring; "" = none at all */
	size_t len;			/* 0: strlen(text) */
} syntax[] = {
	{ "relayhost = a\n", 0, "relayhost", "a", "", 0 },
	{ "relayhost=a", 0, "relayhost", "a", "", 0 },
	{ "  \t\n# x\n\nrelayhost \t=\t a b \t\r\n", 0, "relayhost", "a b", "", 0 },
	{ "relayhost =\n", 0, "relayhost", "", "", 0 },
	{ "relayhost = a=b\n", 0, "relayhost", "a=b", "", 0 },
	{ "relayhost = a # not a comment\n", 0, "relayhost", "a # not a comment", "", 0 },
	{ "   # indented comment\nrelayhost = a\n", 0, "relayhost", "a", "", 0 },
	{ "mynetworks = a,\n  b\n\tc\n", 0, "mynetworks", "a, b c", "", 0 },
	{ "relayhost = a\n# between\n\n  b\nuser = u\n", 0, "relayhost", "a b", "", 0 },
	{ "relayhost =\n  b\n", 0, "relayhost", "b", "", 0 },
	{ "relayhost = a\nrelayhost = b\n", 0, "relayhost", "b",
	  "t.conf:2: relayhost overrides the value at line 1", 0 },
	{ "nosuch = 1\n", 0, NULL, NULL, "t.conf:1: unknown parameter nosuch\n", 0 },
	{ "\n\n# x\nnosuch = 1\n  more\nrelayhost = r\n", 0, "relayhost", "r",
	  "t.conf:4: unknown parameter nosuch\n", 0 },
	{ " relayhost = a\n", -1, NULL, NULL, "t.conf:1: continuation line with no parameter", 0 },
	{ "relayhost\n", -1, NULL, NULL, "t.conf:1: missing '=' in 'relayhost'", 0 },
	{ "user = u\nrelay host = a\n", -1, NULL, NULL, "t.conf:2: bad parameter name 'relay host'", 0 },
	{ "= a\n", -1, NULL, NULL, "t.conf:1: bad parameter name ''", 0 },
	{ "relay-host = a\n", -1, NULL, NULL, "t.conf:1: bad parameter name 'relay-host'", 0 },
	{ "RELAYHOST = a\n", 0, NULL, NULL, "unknown parameter RELAYHOST", 0 },
	{ "relayhost = a\0b\n", -1, NULL, NULL, "t.conf:1: NUL byte", 16 },
	{ "\0", -1, NULL, NULL, "t.conf:1: NUL byte", 1 },
	{ "# \0\n", -1, NULL, NULL, "t.conf:1: NUL byte", 4 },
	{ "smtp_port = 1\nsmtp_port = 0\n", -1, NULL, NULL,
	  "t.conf:2: bad value for smtp_port: '0' (out of range 1 to 65535)", 0 },
	{ "smtp_port = 1\n  0\n", -1, NULL, NULL, "t.conf:1: bad value for smtp_port: '1 0' (not a number)", 0 },
	{ "", 0, "relayhost", "", "", 0 },
};

TEST(test_syntax)
{
	for (size_t i = 0; i < sizeof(syntax) / sizeof(syntax[0]); i++) {
		const char *t = syntax[i].text;
		size_t len = syntax[i].len != 0 ? syntax[i].len : strlen(t);

		reset();
		CHECK_INT(load(t, len), syntax[i].rc);
		if (syntax[i].key != NULL)
			CHECK_STR(conf_str(conf_lookup_key(syntax[i].key)), syntax[i].value);
		if (syntax[i].diag[0] == '\0')
			CHECK_STR(diag, "");
		else if (strstr(diag, syntax[i].diag) == NULL) {
			fprintf(stderr, "row %zu: got '%s', want '%s'\n", i, diag, syntax[i].diag);
			CHECK(0);
		}
	}
}

/* $ expansion: the value of key after loading text. */
static const struct {
	const char *text, *key, *value;	/* value NULL: the load fails */
	const char *diag;
} expand[] = {
	{ "myhostname = h.example.com\n", "mydomain", "example.com", "" },
	{ "myhostname = h.example.com\n", "mydestination", "h.example.com, localhost", "" },
	{ "myhostname = h\n", "mydomain", "localdomain", "" },
	{ "myhostname = h.\n", "mydomain", "localdomain", "" },
	{ "myhostname = h.example.com\nmydomain = other.org\n", "mydomain", "other.org", "" },
	{ "relayhost = [$mydomain]\nmyhostname = mx.example.com\n", "relayhost", "[example.com]", "" },
	{ "relayhost = ${user}x\nuser = bob\n", "relayhost", "bobx", "" },
	{ "tls_cert_file = /c\ntls_key_file = ${tls_cert_file}.key\nrelayhost = $tls_key_file\n",
	  "relayhost", "/c.key", "" },
	{ "relayhost = a$$b\n", "relayhost", "a$b", "" },
	{ "relayhost = $$user\n", "relayhost", "$user", "" },
	{ "relayhost = a$\n", "relayhost", "a$", "" },
	{ "relayhost = a$-b $ c\n", "relayhost", "a$-b $ c", "" },
	{ "user = u\nrelayhost = ${user?set}|${user:unset}\n", "relayhost", "set|", "" },
	{ "user =\nrelayhost = ${user?set}|${user:unset}\n", "relayhost", "|unset", "" },
	{ "user = u\nrelayhost = ${user?{$user}}\n", "relayhost", "{u}", "" },
	{ "user = u\nrelayhost = ${user?${user?${user:no}yes}}\n", "relayhost", "yes", "" },
	{ "relayhost = x${nosuch}y$nosuch\n", "relayhost", "xy",
	  "t.conf:1: unknown parameter $nosuch in the value of relayhost" },
	{ "relayhost = $relayhost\n", "relayhost", NULL,
	  "t.conf:1: bad value for relayhost: '$relayhost' ($relayhost refers back to itself)" },
	{ "relayhost = $user\nuser = ${tls_key_file}\ntls_key_file = x$relayhost\n", "relayhost", NULL,
	  "refers back to itself" },
	{ "relayhost = ${}\n", "relayhost", NULL, "t.conf:1: bad value for relayhost: '${}' (bad ${...} expression)" },
	{ "relayhost = ${user\n", "relayhost", NULL, "bad ${...} expression" },
	{ "relayhost = ${user!x}\n", "relayhost", NULL, "bad ${...} expression" },
	{ "relayhost = ${user?abc\n", "relayhost", NULL, "unterminated ${...}" },
	{ "relayhost = 2525\nsmtp_port = $relayhost\n", "smtp_port", "2525", "" },
	{ "relayhost = x\nsmtp_port = $relayhost\n", "smtp_port", NULL,
	  "t.conf:2: bad value for smtp_port: 'x' (not a number)" },
	{ "relayhost = 5\ndelay_warning_time = ${relayhost}h\n", "delay_warning_time", "5h", "" },
};

TEST(test_expand)
{
	for (size_t i = 0; i < sizeof(expand) / sizeof(expand[0]); i++) {
		int rc, k = conf_lookup_key(expand[i].key);

		reset();
		rc = loads(expand[i].text);
		CHECK_INT(rc, expand[i].value != NULL ? 0 : -1);
		if (expand[i].value != NULL)
			CHECK_STR(conf_str(k), expand[i].value);
		if (expand[i].diag[0] == '\0')
			CHECK_STR(diag, "");
		else if (strstr(diag, expand[i].diag) == NULL) {
			fprintf(stderr, "row %zu: got '%s', want '%s'\n", i, diag, expand[i].diag);
			CHECK(0);
		}
	}
}

/* ${a?${a?...}} nested to depth n. */
static char *
nested(int n)
{
	char *s = malloc(20 * (size_t)n + 64), *p = s;

	p += sprintf(p, "user = u\nrelayhost = ");
	for (int i = 0; i < n; i++)
		p += sprintf(p, "${user?");
	*p++ = 'x';
	for (int i = 0; i < n; i++)
		*p++ = '}';
	strcpy(p, "\n");
	return s;
}

TEST(test_expand_bounds)
{
	char *t;

	reset();
	t = nested(16);
	CHECK_INT(loads(t), 0);
	CHECK_STR(conf_str(C_relayhost), "x");
	free(t);
	t = nested(17);
	CHECK_INT(loads(t), -1);
	CHECK(strstr(diag, "nested too deeply") != NULL);
	free(t);

	/* A value that grows past CONF_LINE_MAX through expansion. */
	size_t n = CONF_LINE_MAX / 2 + 1;
	char *big = malloc(n + 200);
	sprintf(big, "user = %0*d\nrelayhost = $user$user\n", (int)n, 0);
	CHECK_INT(loads(big), -1);
	CHECK(strstr(diag, "t.conf:2: bad value for relayhost: '$user$user' (too long after") != NULL);
	sprintf(big, "user = %0*d\nrelayhost = $user$user\n", (int)n - 1, 0);
	CHECK_INT(loads(big), 0);
	CHECK_INT(strlen(conf_str(C_relayhost)), CONF_LINE_MAX);
	free(big);
}

TEST(test_lists)
{
	char *const *l, *const *again;

	reset();
	CHECK_INT(loads("mynetworks = a, b  c,,d ,\n\te\n"), 0);
	l = conf_list(C_mynetworks);
	CHECK_STR(l[0], "a");
	CHECK_STR(l[1], "b");
	CHECK_STR(l[2], "c");
	CHECK_STR(l[3], "d");
	CHECK_STR(l[4], "e");
	CHECK(l[5] == NULL);
	again = conf_list(C_mynetworks);
	CHECK(l == again);	/* cached until the next load */
	CHECK(conf_list_has(C_mynetworks, "D"));
	CHECK(!conf_list_has(C_mynetworks, "f"));
	CHECK_INT(loads("mynetworks = ,  ,\n"), 0);
	CHECK(conf_list(C_mynetworks)[0] == NULL);
	CHECK_INT(loads("mydestination = $myhostname,x\nmyhostname = m.example\n"), 0);
	CHECK_STR(conf_list(C_mydestination)[0], "m.example");
	CHECK_STR(conf_list(C_mydestination)[1], "x");
}

TEST(test_line_bounds)
{
	size_t n = CONF_LINE_MAX + 64;
	char *t = malloc(n + 64);

	/* A line of exactly CONF_LINE_MAX bytes is fine, one more is not. */
	reset();
	snprintf(t, n, "user = u\nrelayhost = %0*d\n", CONF_LINE_MAX - 12, 0);
	CHECK_INT(loads(t), 0);
	CHECK_INT(strlen(conf_str(C_relayhost)), CONF_LINE_MAX - 12);
	snprintf(t, n, "user = u\nrelayhost = %0*d\n", CONF_LINE_MAX - 11, 0);
	CHECK_INT(loads(t), -1);
	CHECK(strstr(diag, "t.conf:2: line too long") != NULL);
	CHECK_STR(conf_str(C_user), "u");	/* kept from the good load */
	/* The same on the last line with no newline. */
	snprintf(t, n, "relayhost = %0*d", CONF_LINE_MAX - 11, 0);
	CHECK_INT(loads(t), -1);
	/* Continuations joined past the bound. */
	snprintf(t, n, "relayhost = %0*d\n  %0*d\n", CONF_LINE_MAX / 2, 0, CONF_LINE_MAX / 2, 0);
	CHECK_INT(loads(t), -1);
	CHECK(strstr(diag, "t.conf:1: line too long") != NULL);
	snprintf(t, n, "relayhost = %0*d\n  %0*d\n", CONF_LINE_MAX / 2 - 12, 0, CONF_LINE_MAX / 2 - 1, 0);
	CHECK_INT(loads(t), 0);
	free(t);
}

TEST(test_file_bounds)
{
	char *t = malloc((size_t)CONF_FILE_MAX + 2), *path;

	/* Comment lines of 64 bytes: exactly at the cap loads, one more fails. */
	for (size_t i = 0; i < (size_t)CONF_FILE_MAX + 1; i++)
		t[i] = i % 64 == 63 ? '\n' : (i % 64 == 0 ? '#' : 'x');
	reset();
	CHECK_INT(load(t, CONF_FILE_MAX), 0);
	CHECK_INT(load(t, (size_t)CONF_FILE_MAX + 1), -1);
	CHECK(strstr(diag, "t.conf:65537: file too large") != NULL);
	path = temp_file(t, CONF_FILE_MAX);
	CHECK_INT(conf_load(path, 0, NULL), 0);
	unlink(path);
	free(path);
	path = temp_file(t, (size_t)CONF_FILE_MAX + 1);
	CHECK_INT(conf_load(path, 0, fopen("/dev/null", "w")), -1);
	unlink(path);
	free(path);
	free(t);
}

TEST(test_files)
{
	const char *text = "relayhost = [r]\nnosuch = 1\n";
	char *path = temp_file(text, strlen(text)), want[300], *out = NULL;
	size_t n = 0;
	FILE *err = open_memstream(&out, &n);

	reset();
	CHECK_INT(conf_load(path, 0, err), 0);
	fflush(err);
	snprintf(want, sizeof(want), "%s:2: unknown parameter nosuch\n", path);
	CHECK_STR(out, want);
	CHECK_STR(conf_str(C_relayhost), "[r]");
	CHECK(conf_is_set(C_relayhost));

	/* Missing: fine with missing_ok (defaults), an error without. */
	unlink(path);
	CHECK_INT(conf_load(path, 0, err), -1);
	fflush(err);
	CHECK(strstr(out, "No such file or directory") != NULL);
	CHECK_STR(conf_str(C_relayhost), "[r]");
	CHECK_INT(conf_load(path, 1, err), 0);
	CHECK_STR(conf_str(C_relayhost), "");
	/* A directory is not a config file. */
	CHECK_INT(conf_load("/tmp", 1, err), -1);
	fclose(err);
	free(out);
	free(path);
}

TEST(test_failed_load_keeps)
{
	const char *before;

	reset();
	CHECK_INT(loads("relayhost = keep\nmessage_size_limit = 2m\n"), 0);
	before = conf_str(C_relayhost);
	CHECK_INT(loads("relayhost = other\nmessage_size_limit = 2x\n"), -1);
	CHECK(conf_str(C_relayhost) == before);	/* same state, same pointer */
	CHECK_STR(conf_str(C_relayhost), "keep");
	CHECK_INT(conf_num(C_message_size_limit), 2 * 1024 * 1024);
	CHECK_INT(loads("relayhost = $relayhost\n"), -1);
	CHECK_STR(conf_str(C_relayhost), "keep");
}

TEST(test_set)
{
	FILE *null = fopen("/dev/null", "w");

	reset();
	CHECK_INT(conf_set("myhostname", " mx.example.net ", null), 0);
	CHECK_STR(conf_str(C_myhostname), "mx.example.net");
	CHECK_STR(conf_str(C_mydomain), "example.net");
	CHECK(conf_list_has(C_mydestination, "mx.example.net"));
	CHECK_INT(conf_set("smtp_port", "2525", null), 0);
	CHECK_INT(conf_num(C_smtp_port), 2525);
	CHECK_INT(conf_set("smtp_port", "0", null), -1);
	CHECK_INT(conf_num(C_smtp_port), 2525);
	CHECK_INT(conf_set("nosuch", "1", null), -1);
	CHECK_INT(conf_set("relayhost", "$relayhost", null), -1);
	CHECK_INT(conf_set("relayhost", NULL, null), 0);
	CHECK_STR(conf_str(C_relayhost), "");
	fclose(null);
}

TEST(test_path)
{
	unsetenv("HERMOD_CONF");
	CHECK_STR(conf_path("/x.conf"), "/x.conf");
	CHECK_STR(conf_path(NULL), SYSCONFDIR "/hermod.conf");
	setenv("HERMOD_CONF", "/env.conf", 1);
	CHECK_STR(conf_path(NULL), "/env.conf");
	CHECK_STR(conf_path("/x.conf"), "/x.conf");
	setenv("HERMOD_CONF", "", 1);
	CHECK_STR(conf_path(NULL), SYSCONFDIR "/hermod.conf");
	unsetenv("HERMOD_CONF");
}

static char *
printed(int mode, int a, int b)
{
	char *out = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&out, &n);

	if (mode == 0)
		conf_print(f, a, b);
	else if (mode == 1)
		conf_print_man(f);
	else
		conf_print_sample(f);
	fclose(f);
	return out;
}

TEST(test_print)
{
	char *s, want[200];

	reset();
	CHECK_INT(loads("myhostname = a.example\nrelayhost = [$mydomain]\n"), 0);
	s = printed(0, 1, 0);
	CHECK_STR(s, "myhostname = a.example\nrelayhost = [$mydomain]\n");
	free(s);
	s = printed(0, 1, 1);
	CHECK_STR(s, "myhostname = a.example\nrelayhost = [example]\n");
	free(s);
	s = printed(0, 0, 0);
	CHECK(strstr(s, "\nmydestination = $myhostname, localhost\n") != NULL);
	CHECK(strstr(s, "\nmydomain = example\n") != NULL);
	CHECK(strstr(s, "\nlmtp_listen =\n") != NULL);
	free(s);
	s = printed(0, 0, 1);
	CHECK(strstr(s, "\nmydestination = a.example, localhost\n") != NULL);
	free(s);
	s = printed(1, 0, 0);
	for (int k = 0; k < CONF_NKEYS; k++) {
		snprintf(want, sizeof(want), ".TP\n.B %s\n(", conf_defs[k].name);
		CHECK(strstr(s, want) != NULL);
	}
	CHECK(strstr(s, "(size; default: 52428800; 1024 to 4294967295 bytes)") != NULL);
	free(s);
	/* The sample loads cleanly, commented out and uncommented. */
	s = printed(2, 0, 0);
	CHECK_INT(loads(s), 0);
	CHECK_STR(diag, "");
	for (int k = 0; k < CONF_NKEYS; k++) {
		char *p;

		snprintf(want, sizeof(want), "\n#%s =", conf_defs[k].name);
		CHECK((p = strstr(s, want)) != NULL);
		if (p != NULL)
			memmove(p + 1, p + 2, strlen(p + 2) + 1);
	}
	CHECK_INT(loads(s), 0);
	CHECK_STR(diag, "");
	for (int k = 0; k < CONF_NKEYS; k++)
		CHECK(conf_is_set(k));
	CHECK_INT(conf_num(C_message_size_limit), 52428800);
	free(s);
}

TEST(test_parse_public)
{
	long long v;
	int b;

	CHECK_INT(conf_parse_time("2m", &v), 0);
	CHECK_INT(v, 120);
	CHECK_INT(conf_parse_time("2x", &v), -1);
	CHECK_INT(conf_parse_size("2k", &v), 0);
	CHECK_INT(v, 2048);
	CHECK_INT(conf_parse_size("", &v), -1);
	CHECK_INT(conf_parse_bool("No", &b), 0);
	CHECK_INT(b, 0);
	CHECK_INT(conf_parse_bool("nope", &b), -1);
}

int
main(void)
{
	RUN(test_defaults);
	RUN(test_typed);
	RUN(test_syntax);
	RUN(test_expand);
	RUN(test_expand_bounds);
	RUN(test_lists);
	RUN(test_line_bounds);
	RUN(test_file_bounds);
	RUN(test_files);
	RUN(test_failed_load_keeps);
	RUN(test_set);
	RUN(test_path);
	RUN(test_print);
	RUN(test_parse_public);
	return unit_done("conf");
}
