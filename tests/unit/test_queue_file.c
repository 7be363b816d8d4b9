/*
 * queued's queue files (hermod-queue(5)): write with the writer, read back
 * with the reader; ids; xtext; every way a file can be bad (magic, missing
 * or malformed envelope lines, truncation, bad state records, bounds) and
 * the torn last record that must be ignored; the reuse of finished files
 * (remove.c) and its wait for a flush. queued's sources are not in
 * libhermod.a, so the files under test are compiled in here.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../queued/queue_file.c"
#include "../../queued/queue_id.c"
#include "../../queued/queue_read.c"
#include "../../queued/remove.c"
#include "unit.h"

static char spool[64];

/* commit.c is not compiled in: the tests set its counters by hand. */
struct commit_stats commit_stats;

static void
put_file(const char *path, const char *text)
{
	int fd = openat(spool_fd, path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	CHECK(fd >= 0);
	CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
	close(fd);
}

/* qf_read of a file holding text: 0 or -1, message freed. */
static int
read_text(const char *text, char *err, size_t errsz)
{
	struct msg *m;
	int rc;

	put_file("queue/0/X", text);
	rc = qf_read(spool_fd, "queue/0/X", &m, err, errsz);
	msg_free(m);
	return rc;
}

TEST(test_ids)
{
	char a[QID_LEN + 1], b[QID_LEN + 1];

	qid_new(a);
	qid_new(b);
	CHECK(qid_valid(a) && qid_valid(b));
	CHECK(strcmp(a, b) < 0);	/* time-ordered, then by sequence */
	CHECK(!qid_valid("6B0B38357A3F100"));	/* one short */
	CHECK(!qid_valid("6B0B38357A3F10000"));	/* one long */
	CHECK(!qid_valid("6b0b38357a3f1000"));	/* lower case */
	CHECK(!qid_valid("../../etc/passwd"));
	CHECK(qid_hash(a) == a[QID_LEN - 1]);
}

TEST(test_xtext)
{
	struct buf b;
	char *d;

	buf_init(&b, 1024);
	xtext_encode(&b, "a b+c=<d>\x01");
	CHECK_STR(b.data, "a+20b+2Bc+3D+3Cd+3E+01");
	d = xtext_decode(b.data, b.len);
	CHECK_STR(d, "a b+c=<d>\x01");
	free(d);
	CHECK(xtext_decode("a+2", 3) == NULL);		/* cut hex */
	CHECK(xtext_decode("a+zz", 4) == NULL);		/* not hex */
	CHECK(xtext_decode("a b", 3) == NULL);		/* raw space */
	CHECK(xtext_decode("a+00", 4) == NULL);		/* NUL */
	buf_free(&b);
}

TEST(test_round_trip)
{
	struct env_rcpt r[2] = {
		{ .addr = "staff@example.test", .orcpt = "rfc822;Staff@example.test",
		  .notify = NOTIFY_SUCCESS | NOTIFY_FAILURE },
		{ .addr = "x y\"@example.test" },
	};
	struct leaf l[3] = {
		{ .parent = 0, .kind = LEAF_LOCAL, .addr = "alice@example.test" },
		{ .parent = 0, .kind = LEAF_REMOTE, .addr = "carol@far.example" },
		{ .parent = 1, .kind = LEAF_ERROR, .addr = "|/bin/cat", .dsn = "5.3.0",
		  .reason = "not enabled" },
	};
	struct qf_env env = { .sender = "", .envid = "e 1", .client = "name=a\nb",
	    .body8 = 1, .ret_hdrs = 1, .flags = MSGF_DSN, .arrival = 1700000000.5 };
	struct qf_writer w;
	struct msg *m;
	char err[256];
	int fd;

	CHECK_INT(qf_begin(&w, &env, r, 2, l, 3), 0);
	qf_write(&w, "Subject: x\r\n\r\n.body\r\n", 21);
	CHECK_INT(qf_finish(&w), 0);
	CHECK_INT(qf_read(spool_fd, w.path, &m, err, sizeof(err)), 0);
	CHECK_STR(m->id, w.id);
	CHECK_STR(m->sender, "");
	CHECK_STR(m->envid, "e 1");
	CHECK_STR(m->client, "name=a?b");
	CHECK(m->body8 && m->ret_hdrs && !m->smtputf8 && m->flags == MSGF_DSN);
	CHECK_INT(m->size, 21);
	CHECK_INT(m->nrcpt, 2);
	CHECK_STR(m->rcpts[0].orcpt, "rfc822;Staff@example.test");
	CHECK_INT(m->rcpts[0].notify, NOTIFY_SUCCESS | NOTIFY_FAILURE);
	CHECK_STR(m->rcpts[1].addr, "x y\"@example.test");
	CHECK_INT(m->nleaf, 3);
	CHECK_INT(m->leaves[1].kind, LEAF_REMOTE);
	CHECK_STR(m->leaves[2].dsn, "5.3.0");
	CHECK_STR(m->leaves[2].reason, "not enabled");
	/* state records, and a torn last one */
	fd = openat(spool_fd, w.path, O_RDWR);
	m->leaves[0].last_try = 1700000001;
	snprintf(m->leaves[0].dsn, sizeof(m->leaves[0].dsn), "2.0.0");
	m->leaves[0].reason = xstrdup("250 2.0.0 ok");
	m->leaves[0].relay = xstrdup("lmtpd");
	CHECK_INT(qf_log_leaf(m, fd, 0, 's'), 0);
	CHECK_INT(qf_log_leaf(m, fd, 0, 'n'), 0);
	CHECK_INT(qf_log_msg(m, fd, "h 1"), 0);
	CHECK(pwrite(fd, "r 1 f 5.0.0", 11, lseek(fd, 0, SEEK_END)) == 11);
	close(fd);
	msg_free(m);
	CHECK_INT(qf_read(spool_fd, w.path, &m, err, sizeof(err)), 0);
	CHECK_INT(m->leaves[0].state, LS_SENT);
	CHECK(m->leaves[0].notified);
	CHECK_STR(m->leaves[0].relay, "lmtpd");
	CHECK_STR(m->leaves[0].reason, "250 2.0.0 ok");
	CHECK_INT(m->leaves[1].state, LS_PENDING);	/* the torn record */
	CHECK(m->hold);
	/* after the seal; the torn record not counted */
	CHECK_INT(m->end, m->data_off + m->size + QF_SEAL_LEN + 42 + 4 + 4);
	msg_free(m);
	qf_writer_free(&w);
}

#define GOOD_HEAD "HERMOD-QUEUE 1\nid: 6B0B38357A3F1000\narrival: 1700000000.0\n" \
	"size: 000000000000004\nsender: <a@b>\nrcpt: <c@d>\nleaf: 0 local <c@d>\n\n"

TEST(test_bad_files)
{
	static const struct {
		const char *text;
		int rc;
	} cases[] = {
		{ GOOD_HEAD "x\r\n\n", 0 },
		{ GOOD_HEAD "x\r\n\nr 0 s 2.0.0 1 - ok\n", 0 },
		{ GOOD_HEAD "x\r\n\nz\n", -1 },			/* unknown record */
		{ GOOD_HEAD "x\r\n\nr 9 s 2.0.0 1 - ok\n", -1 },	/* no leaf 9 */
		{ GOOD_HEAD "x\r\n\nr 0 q 2.0.0 1 - ok\n", -1 },	/* bad code */
		{ GOOD_HEAD "x\r", -1 },				/* truncated */
		{ "HERMOD-QUEUE 2\n", QF_INCOMPLETE },
		{ "HERMOD-QUEUE 3\n", -1 },
		{ "", QF_INCOMPLETE },
		{ "HERMOD-QU", QF_INCOMPLETE },
		{ "\0\0\0\0", QF_INCOMPLETE },	/* text stops at the NUL: empty */
		{ "HERMOD-QUX", -1 },
		{ "HERMOD-QUEUE 1\nid: 6B0B38357A3F1000\n", -1 },	/* no end */
		{ "HERMOD-QUEUE 1\nid: 6B0B38357A3F1000\narrival: 1.0\nsize: 0\n"
		  "sender: <a@b>\n\n", -1 },				/* no rcpt */
		{ "HERMOD-QUEUE 1\nid: nope\n\n", -1 },
		{ "HERMOD-QUEUE 1\nid: 6B0B38357A3F1000\narrival: 1.0\nsize: 0\n"
		  "sender: <a@b>\nrcpt: <c@d>\nleaf: 1 local <c@d>\n\n", -1 },	/* parent */
		{ "HERMOD-QUEUE 1\nid: 6B0B38357A3F1000\narrival: 1.0\nsize: 0\n"
		  "sender: <a@b>\nrcpt: <c@d>\nleaf: 0 pipe <c@d>\n\n", -1 },	/* kind */
		{ "HERMOD-QUEUE 1\nid: 6B0B38357A3F1000\narrival: 1.0\nsize: 0\n"
		  "sender: <a+zz@b>\nrcpt: <c@d>\nleaf: 0 local <c@d>\n\n", -1 },	/* xtext */
		{ "HERMOD-QUEUE 1\nid: 6B0B38357A3F1000\narrival: 1.0\nsize: 0\n"
		  "sender: <a@b>\nrcpt: <c@d> notify=SOMETIMES\nleaf: 0 local <c@d>\n\n", -1 },
		{ "HERMOD-QUEUE 1\nid: 6B0B38357A3F1000\narrival: 1.0\nsize: 0\n"
		  "future: yes\nsender: <a@b>\nrcpt: <c@d>\nleaf: 0 local <c@d>\n\n", 0 },
		{ "HERMOD-QUEUE 1\nid: 6B0B38357A3F1000\narrival: 1.0\nsize: -5\n"
		  "sender: <a@b>\nrcpt: <c@d>\nleaf: 0 local <c@d>\n\n", -1 },
		{ "HERMOD-QUEUE 1\ngarbage line\n\n", -1 },
	};
	char err[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = read_text(cases[i].text, err, sizeof(err));

		if (rc != cases[i].rc)
			fprintf(stderr, "case %zu: rc %d (%s)\n", i, rc, err);
		CHECK_INT(rc, cases[i].rc);
	}
}

/* Version 2: a file written by the writer is whole; cut anywhere, with its
 * size line not yet written, or with one byte changed, it is incomplete. */
TEST(test_seal)
{
	struct env_rcpt r = { .addr = "c@d" };
	struct leaf l = { .parent = 0, .kind = LEAF_LOCAL, .addr = "c@d" };
	struct qf_env env = { .sender = "a@b", .arrival = 1700000000.5 };
	struct qf_writer w;
	struct msg *m;
	char err[256], body[3000], *whole;
	off_t len;
	int fd;

	memset(body, 'x', sizeof(body));
	CHECK_INT(qf_begin(&w, &env, &r, 1, &l, 1), 0);
	qf_write(&w, body, sizeof(body));
	CHECK_INT(qf_finish(&w), 0);
	CHECK_INT(qf_read(spool_fd, w.path, &m, err, sizeof(err)), 0);
	CHECK_INT(m->end, w.end);
	msg_free(m);
	len = w.end;
	whole = xmalloc((size_t)len);
	fd = openat(spool_fd, w.path, O_RDWR);
	CHECK(pread(fd, whole, (size_t)len, 0) == len);
	for (off_t cut = 0; cut < len; cut += 97) {	/* torn anywhere */
		CHECK_INT(ftruncate(fd, cut), 0);
		CHECK_INT(qf_read(spool_fd, w.path, &m, err, sizeof(err)), QF_INCOMPLETE);
	}
	CHECK(pwrite(fd, whole, (size_t)len, 0) == len);
	CHECK(pwrite(fd, "---------------", 15, w.size_field) == 15);	/* no size yet */
	CHECK_INT(qf_read(spool_fd, w.path, &m, err, sizeof(err)), QF_INCOMPLETE);
	CHECK(pwrite(fd, whole, (size_t)len, 0) == len);
	CHECK(pwrite(fd, "\0", 1, w.data_off + 1500) == 1);	/* a page never written */
	CHECK_INT(qf_read(spool_fd, w.path, &m, err, sizeof(err)), QF_INCOMPLETE);
	CHECK(pwrite(fd, whole, (size_t)len, 0) == len);
	CHECK(pwrite(fd, "r 0 s 2.0.0 1 - ok\n", 19, len) == 19);	/* records after it */
	CHECK_INT(qf_read(spool_fd, w.path, &m, err, sizeof(err)), 0);
	CHECK_INT(m->leaves[0].state, LS_SENT);
	msg_free(m);
	close(fd);
	free(whole);
	unlinkat(spool_fd, w.path, 0);
	qf_writer_free(&w);
}

/* An address at ADDR_MAX and one past it. */
TEST(test_address_bound)
{
	char text[2048], addr[ADDR_MAX + 2], err[256];

	memset(addr, 'a', sizeof(addr));
	addr[ADDR_MAX] = '\0';
	snprintf(text, sizeof(text), "HERMOD-QUEUE 1\nid: 6B0B38357A3F1000\narrival: 1.0\n"
	    "size: 0\nsender: <%s>\nrcpt: <c@d>\nleaf: 0 local <c@d>\n\n", addr);
	CHECK_INT(read_text(text, err, sizeof(err)), 0);
	addr[ADDR_MAX] = 'a';
	addr[ADDR_MAX + 1] = '\0';
	snprintf(text, sizeof(text), "HERMOD-QUEUE 1\nid: 6B0B38357A3F1000\narrival: 1.0\n"
	    "size: 0\nsender: <%s>\nrcpt: <c@d>\nleaf: 0 local <c@d>\n\n", addr);
	CHECK_INT(read_text(text, err, sizeof(err)), -1);
}

/* A NUL byte in the envelope (found by the fuzzer: it cut the copy short). */
TEST(test_nul_in_envelope)
{
	static const char text[] = "HERMOD-QUEUE 1\nid: 6B0\0B38357A3F1000\narrival: 1.0\n\n";
	struct msg *m;
	char err[256];

	put_file("queue/0/X", "");
	int fd = openat(spool_fd, "queue/0/X", O_WRONLY | O_TRUNC);
	CHECK(write(fd, text, sizeof(text) - 1) == (ssize_t)sizeof(text) - 1);
	close(fd);
	CHECK_INT(qf_read(spool_fd, "queue/0/X", &m, err, sizeof(err)), -1);
	CHECK_STR(err, "NUL byte in the envelope");
}

/* The remove thread has emptied a file and named it ahead: its new
 * path (remove.c's own list, read under its lock) into path. */
static int
wait_emptied(char *path, size_t cap)
{
	for (int i = 0; i < 500; i++) {
		pthread_mutex_lock(&mu);
		if (emptied.head != NULL)
			snprintf(path, cap, "%s", emptied.head->path);
		pthread_mutex_unlock(&mu);
		if (path[0] != '\0')
			return 0;
		usleep(10000);
	}
	return -1;
}

/* Write a one-line message as qid (NULL: one of qf_begin's choosing),
 * into the file named ahead as qid when named; its path into path. */
static void
write_as(struct qf_writer *w, const char *qid, int named, const char *text, char *path,
    size_t cap)
{
	struct env_rcpt r = { .addr = "c@d" };
	struct leaf l = { .parent = 0, .kind = LEAF_LOCAL, .addr = "c@d" };
	struct qf_env env = { .qid = qid, .named = named, .sender = "a@b",
	    .arrival = 1700000000.0 };

	CHECK_INT(qf_begin(w, &env, &r, 1, &l, 1), 0);
	qf_write(w, text, strlen(text));
	CHECK_INT(qf_finish(w), 0);
	snprintf(path, cap, "%s", w->path);
	qf_writer_free(w);
}

/* A finished file is emptied and named ahead under a new id; a message
 * that got a fresh id does not take it (the pool's are for MAIL): it
 * gets a new file, and the pool grows when that one is done. */
TEST(test_reuse)
{
	struct qf_writer w;
	struct stat st, now;
	char path[64], named[64] = "";

	remove_init();
	write_as(&w, NULL, 0, "Subject: a longer first message\r\n\r\nxxxxxxxxxxxxxxxx\r\n",
	    path, sizeof(path));
	CHECK_INT(fstatat(spool_fd, path, &st, 0), 0);
	remove_later(path);
	CHECK_INT(wait_emptied(named, sizeof(named)), 0);
	CHECK(strcmp(named, path) != 0 && strncmp(named, "queue/", 6) == 0);
	CHECK(fstatat(spool_fd, path, &now, 0) < 0 && errno == ENOENT);
	CHECK_INT(fstatat(spool_fd, named, &now, 0), 0);
	CHECK(now.st_ino == st.st_ino && now.st_size == 0);
	write_as(&w, "6B0B0000000000C1", 0, "Subject: b\r\n\r\ny\r\n", path, sizeof(path));
	CHECK_STR(path, "queue/1/6B0B0000000000C1");
	CHECK_INT(fstatat(spool_fd, path, &now, 0), 0);
	CHECK(now.st_ino != st.st_ino);
	CHECK_INT(fstatat(spool_fd, named, &now, 0), 0);
	CHECK(now.st_ino == st.st_ino && now.st_size == 0);
	remove_shutdown();	/* the lists go; the file stays where it is */
}

/* A file named ahead is given out at MAIL only once a syncfs that began
 * after its renaming has completed: a message written into it adds no
 * directory entry. */
TEST(test_named)
{
	struct qf_writer w;
	struct stat st, now;
	struct msg *m;
	char path[64], named[64] = "", err[256], id[QID_LEN + 1], id2[QID_LEN + 1];

	remove_init();
	write_as(&w, NULL, 0, "Subject: d\r\n\r\nxxxxxxxx\r\n", path, sizeof(path));
	CHECK_INT(fstatat(spool_fd, path, &st, 0), 0);
	remove_later(path);
	CHECK_INT(wait_emptied(named, sizeof(named)), 0);
	commit_stats.syncfs = 7;	/* running while it was emptied */
	commit_stats.syncfs_done = 6;
	CHECK_INT(spool_named(id), 0);
	commit_stats.syncfs_done = 7;
	CHECK_INT(spool_named(id), 0);
	commit_stats.syncfs = commit_stats.syncfs_done = 8;
	CHECK_INT(spool_named(id), 1);
	snprintf(path, sizeof(path), "queue/%c/%s", qid_hash(id), id);
	CHECK_STR(path, named);
	CHECK_INT(fstatat(spool_fd, named, &now, 0), 0);
	CHECK(now.st_ino == st.st_ino && now.st_size == 0);
	CHECK_INT(spool_named(id2), 0);	/* the only one is taken */
	/* the message goes into it: the same name, the same inode */
	write_as(&w, id, 1, "Subject: e\r\n\r\ny\r\n", path, sizeof(path));
	CHECK_STR(path, named);
	CHECK_INT(qf_read(spool_fd, path, &m, err, sizeof(err)), 0);
	CHECK_STR(m->id, id);
	msg_free(m);
	CHECK_INT(fstatat(spool_fd, path, &now, 0), 0);
	CHECK(now.st_ino == st.st_ino);
	/* finished, it comes out again under another id; given out and not
	 * used, it is named again */
	remove_later(path);
	named[0] = '\0';
	CHECK_INT(wait_emptied(named, sizeof(named)), 0);
	commit_stats.syncfs = 9;
	CHECK_INT(spool_named(id2), 0);
	commit_stats.syncfs_done = commit_stats.syncfs = 10;
	CHECK_INT(spool_named(id2), 1);
	CHECK(strcmp(id, id2) != 0);
	spool_named_release(id2);
	named[0] = '\0';
	CHECK_INT(wait_emptied(named, sizeof(named)), 0);
	snprintf(path, sizeof(path), "queue/%c/%s", qid_hash(id2), id2);
	CHECK(fstatat(spool_fd, path, &now, 0) < 0 && errno == ENOENT);
	CHECK(strcmp(named, path) != 0);
	/* one that is not empty any more is not written into: the message
	 * gets another file and id */
	commit_stats.syncfs = 11;
	CHECK_INT(spool_named(id), 0);
	commit_stats.syncfs_done = commit_stats.syncfs = 12;
	CHECK_INT(spool_named(id), 1);
	snprintf(named, sizeof(named), "queue/%c/%s", qid_hash(id), id);
	int fd = openat(spool_fd, named, O_WRONLY | O_APPEND);
	CHECK(write(fd, "x", 1) == 1);
	close(fd);
	write_as(&w, id, 1, "Subject: f\r\n\r\nz\r\n", path, sizeof(path));
	CHECK(strcmp(path, named) != 0);
	CHECK_INT(fstatat(spool_fd, named, &now, 0), 0);
	CHECK_INT(now.st_size, 1);	/* left alone */
	remove_shutdown();
}

int
main(void)
{
	char cmd[128];

	snprintf(spool, sizeof(spool), "/tmp/test_queue_file.XXXXXX");
	if (mkdtemp(spool) == NULL || (spool_fd = spool_open(spool)) < 0)
		return 1;
	RUN(test_ids);
	RUN(test_xtext);
	RUN(test_round_trip);
	RUN(test_bad_files);
	RUN(test_seal);
	RUN(test_address_bound);
	RUN(test_nul_in_envelope);
	RUN(test_reuse);
	RUN(test_named);
	snprintf(cmd, sizeof(cmd), "%s %s", getenv("KEEP") ? "echo" : "rm -rf", spool);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", spool);
	return unit_done("queue_file");
}
