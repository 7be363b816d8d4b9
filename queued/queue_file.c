/*
 * Queue files (hermod-queue(5)): one file per message, written by the
 * submission session straight into its final place queue/X/ID and made
 * durable there by the group commit (commit.c). Layout:
 *
 *   HERMOD-QUEUE 2            magic and version
 *   size: 000000000001234     fixed width, filled in when DATA ends
 *   id: ID                    `key: value` envelope lines (below)
 *   ...
 *   rcpt: <a@b> notify=FAILURE orcpt=rfc822;a@b
 *   leaf: 0 local <a@b>
 *   <blank line>
 *   the message, exactly `size` bytes, CRLF lines as received
 *   e 1A2B3C4D                the seal: CRC-32C of everything from the
 *                             line after `size:` to the end of the message
 *   the state log: one record per line, appended, never rewritten
 *
 * Why a seal instead of writing in incoming/ and renaming once durable:
 * the rename needed a second flush (the data, then the new directory
 * entry), so a lone message cost two flushes before its 250. Now the file
 * is in place from its first byte and one syncfs() covers both its data
 * and its directory entry. A crash before that flush can leave a file in
 * queue/ whose pages reached the disk in any order; none of those was
 * acknowledged, and recovery tells them apart from whole files by the
 * seal: the size line must hold digits, a seal must stand right after
 * `size` bytes of message, and its CRC must match. A file that fails is
 * incomplete and removed (queue_read.c). Version 1 files (renamed into
 * queue/ only once durable, no seal) are still read.
 *
 * Addresses are xtext (RFC 3461) inside the angle brackets, so a queue
 * file has no spaces or control characters where a parser splits fields.
 * A torn last log record (no newline) is ignored: it was never made
 * durable, so nobody was told about it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "queued.h"
#include "xalloc.h"

#define QF_FLUSH_AT	(64 * 1024)

int spool_fd = -1;

static const char *const kind_names[] = { "local", "remote", "error" };

/* ---- xtext ---------------------------------------------------------- */

void
xtext_encode(struct buf *b, const char *s)
{
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c < 33 || c > 126 || c == '+' || c == '=' || c == '<' || c == '>')
			buf_printf(b, "+%02X", c);
		else
			buf_putc(b, (char)c);
	}
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

char *
xtext_decode(const char *s, size_t n)
{
	char *out = xmalloc(n + 1), *o = out;

	for (size_t i = 0; i < n; i++) {
		if (s[i] == '+') {
			int h, l;

			if (i + 2 >= n)
				goto bad;
			if ((h = hexval(s[i + 1])) < 0 || (l = hexval(s[i + 2])) < 0 ||
			    (h == 0 && l == 0))
				goto bad;
			*o++ = (char)(h * 16 + l);
			i += 2;
		} else if ((unsigned char)s[i] < 33 || (unsigned char)s[i] > 126 ||
		    s[i] == '=')
			goto bad;
		else
			*o++ = s[i];
	}
	*o = '\0';
	return out;
bad:
	free(out);
	return NULL;
}

/* ---- messages in memory ---------------------------------------------- */

struct msg *
msg_new(void)
{
	struct msg *m = xcalloc(1, sizeof(*m));

	m->heap_idx = (size_t)-1;
	m->fd = -1;
	return m;
}

void
msg_free(struct msg *m)
{
	if (m == NULL)
		return;
	for (int i = 0; i < m->nrcpt; i++) {
		free(m->rcpts[i].addr);
		free(m->rcpts[i].orcpt);
	}
	for (int i = 0; i < m->nleaf; i++) {
		free(m->leaves[i].addr);
		free(m->leaves[i].reason);
		free(m->leaves[i].relay);
	}
	free(m->rcpts);
	free(m->leaves);
	free(m->path);
	free(m->sender);
	free(m->envid);
	free(m->auth);
	free(m->client);
	free(m);
}

/* ---- writer ------------------------------------------------------------ */

static void
put_addr(struct buf *b, const char *key, const char *addr)
{
	buf_printf(b, "%s: <", key);
	xtext_encode(b, addr);
	buf_puts(b, ">");
}

static void
put_notify(struct buf *b, unsigned notify)
{
	static const char *const names[] = { "NEVER", "SUCCESS", "FAILURE", "DELAY" };
	const char *sep = " notify=";

	for (int i = 0; i < 4; i++)
		if (notify & (1u << i)) {
			buf_printf(b, "%s%s", sep, names[i]);
			sep = ",";
		}
}

/* Text that goes on one header line: control characters become '?'. */
static void
put_text(struct buf *b, const char *s)
{
	for (; *s != '\0'; s++)
		buf_putc(b, (unsigned char)*s < 32 || *s == 127 ? '?' : *s);
}

static void
put_header(struct qf_writer *w, const struct qf_env *env,
    const struct env_rcpt *rcpts, int nrcpt, const struct leaf *leaves, int nleaf)
{
	struct buf *b = &w->out;

	buf_printf(b, "%ssize: ", QF_MAGIC);
	w->size_field = (off_t)b->len;
	for (int i = 0; i < QF_SIZE_DIGITS; i++)
		buf_putc(b, '-');	/* not digits: "not finished" */
	buf_printf(b, "\nid: %s\narrival: %.6f\n", w->id, env->arrival);
	put_addr(b, "sender", env->sender);
	buf_putc(b, '\n');
	if (env->envid != NULL) {
		buf_puts(b, "envid: ");
		xtext_encode(b, env->envid);
		buf_putc(b, '\n');
	}
	if (env->auth != NULL) {
		buf_puts(b, "auth: ");
		xtext_encode(b, env->auth);
		buf_putc(b, '\n');
	}
	if (env->client != NULL) {
		buf_puts(b, "client: ");
		put_text(b, env->client);
		buf_putc(b, '\n');
	}
	if (env->body8)
		buf_puts(b, "body: 8BITMIME\n");
	if (env->smtputf8)
		buf_puts(b, "smtputf8: yes\n");
	if (env->ret_hdrs)
		buf_puts(b, "ret: HDRS\n");
	if (env->flags != 0)
		buf_printf(b, "flags:%s%s\n", env->flags & MSGF_DSN ? " dsn" : "",
		    env->flags & MSGF_DOUBLE ? " double" : "");
	for (int i = 0; i < nrcpt; i++) {
		put_addr(b, "rcpt", rcpts[i].addr);
		put_notify(b, rcpts[i].notify);
		if (rcpts[i].orcpt != NULL) {
			buf_puts(b, " orcpt=");
			xtext_encode(b, rcpts[i].orcpt);
		}
		buf_putc(b, '\n');
	}
	for (int i = 0; i < nleaf; i++) {
		buf_printf(b, "leaf: %d %s <", leaves[i].parent, kind_names[leaves[i].kind]);
		xtext_encode(b, leaves[i].addr);
		buf_putc(b, '>');
		if (leaves[i].kind == LEAF_ERROR) {
			buf_printf(b, " %s ", leaves[i].dsn);
			put_text(b, leaves[i].reason != NULL ? leaves[i].reason : "");
		}
		buf_putc(b, '\n');
	}
	buf_putc(b, '\n');
	w->data_off = (off_t)b->len;
}

/* ---- CRC-32C (Castagnoli), for the seal ------------------------------------ */

static uint32_t crc_table[256];

static void
crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
		crc_table[i] = c;
	}
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
/* The SSE 4.2 instruction: a 5 KB message in about a microsecond. */
__attribute__((target("sse4.2"))) static uint32_t
crc_hw(uint32_t c, const unsigned char *p, size_t n)
{
	uint64_t c64 = c;

	for (; n >= 8; n -= 8, p += 8) {
		uint64_t v;

		memcpy(&v, p, 8);
		c64 = __builtin_ia32_crc32di(c64, v);
	}
	c = (uint32_t)c64;
	for (; n > 0; n--)
		c = __builtin_ia32_crc32qi(c, *p++);
	return c;
}
#define HAVE_CRC_HW 1
#endif

/* Feed n bytes into a running CRC (start with 0). Called from the loop
 * only: the table is filled at the first call. */
uint32_t
qf_crc32c(uint32_t crc, const void *data, size_t n)
{
	static int hw = -1;
	const unsigned char *p = data;
	uint32_t c = ~crc;

	if (hw < 0) {
		crc_init();
#ifdef HAVE_CRC_HW
		hw = __builtin_cpu_supports("sse4.2") != 0;
#else
		hw = 0;
#endif
	}
#ifdef HAVE_CRC_HW
	if (hw)
		return ~crc_hw(c, p, n);
#endif
	for (; n > 0; n--)
		c = crc_table[(c ^ *p++) & 0xFF] ^ (c >> 8);
	return ~c;
}

/* Write out the pending bytes; the seal's CRC takes in everything from
 * QF_CRC_FROM on. */
static void
qf_flush(struct qf_writer *w)
{
	size_t off = 0;

	if (w->written + (off_t)w->out.len > QF_CRC_FROM) {
		size_t skip = w->written >= QF_CRC_FROM ? 0 : (size_t)(QF_CRC_FROM - w->written);

		w->crc = qf_crc32c(w->crc, w->out.data + skip, w->out.len - skip);
	}
	w->written += (off_t)w->out.len;

	while (w->err == 0 && off < w->out.len) {
		ssize_t n = write(w->fd, w->out.data + off, w->out.len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			w->err = n < 0 ? errno : EIO;
		else
			off += (size_t)n;
	}
	buf_reset(&w->out);
}

/* An emptied queue file at path, opened: a regular file of ours with
 * one name and nothing in it. -1 otherwise. */
static int
open_empty(const char *path)
{
	struct stat st;
	int fd;

	if ((fd = openat(spool_fd, path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		return -1;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 0 &&
	    st.st_nlink == 1 && st.st_uid == geteuid())
		return fd;
	close(fd);
	return -1;
}

/* The file named ahead whose id was given out at MAIL (env->named), or
 * one taken now when no id was given: 1 when w writes into it. One that
 * is not as it should be is left alone (recovery looks at it). */
static int
take_named(struct qf_writer *w, const struct qf_env *env)
{
	if (env->named && env->qid != NULL && qid_valid(env->qid))
		memcpy(w->id, env->qid, QID_LEN + 1);
	else if (env->qid != NULL || !spool_named(w->id))
		return 0;
	w->path = xasprintf("queue/%c/%s", qid_hash(w->id), w->id);
	if ((w->fd = open_empty(w->path)) >= 0)
		return w->named = 1;
	free(w->path);
	w->path = NULL;
	return 0;
}

/* A new file: under the id given out at MAIL, unless it is taken. Not
 * one of the pool's (remove.c), which wait for MAIL: a message that
 * finds none ready adds one, so the pool grows to what the rate needs. */
static int
create_file(struct qf_writer *w, const struct qf_env *env)
{
	for (int tries = 0; ; tries++) {
		if (tries == 0 && env->qid != NULL && qid_valid(env->qid))
			memcpy(w->id, env->qid, QID_LEN + 1);
		else
			qid_new(w->id);
		free(w->path);
		w->path = xasprintf("queue/%c/%s", qid_hash(w->id), w->id);
		w->fd = openat(spool_fd, w->path,
		    O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (w->fd >= 0)
			return 0;
		if (errno != EEXIST || tries > 100) {
			int err = errno;

			log_warn("cannot create queue file %s: %s", w->path, strerror(err));
			return err;
		}
	}
}

int
qf_begin(struct qf_writer *w, const struct qf_env *env,
    const struct env_rcpt *rcpts, int nrcpt, const struct leaf *leaves, int nleaf)
{
	int err;

	memset(w, 0, sizeof(*w));
	w->fd = -1;
	buf_init(&w->out, (size_t)QF_HEADER_MAX + 2 * QF_FLUSH_AT);
	if (!take_named(w, env) && (err = create_file(w, env)) != 0) {
		qf_writer_free(w);
		return err;
	}
	put_header(w, env, rcpts, nrcpt, leaves, nleaf);
	if (w->out.len >= QF_HEADER_MAX) {
		qf_abort(w);
		return E2BIG;
	}
	return 0;
}

void
qf_write(struct qf_writer *w, const void *p, size_t n)
{
	const char *s = p;

	w->size += (off_t)n;
	while (n > 0 && w->err == 0) {
		size_t room = QF_FLUSH_AT * 2 - w->out.len, k = n < room ? n : room;

		buf_append(&w->out, s, k);
		s += k;
		n -= k;
		if (w->out.len >= QF_FLUSH_AT)
			qf_flush(w);
	}
}

/* The rest of the message, the seal after it, then the size in the
 * header: the file is whole once all of it is on the disk, which is the
 * group commit's business. */
int
qf_finish(struct qf_writer *w)
{
	char digits[QF_SIZE_DIGITS + 1], seal[QF_SEAL_LEN + 1];

	qf_flush(w);
	if (w->err != 0)
		return w->err;
	snprintf(seal, sizeof(seal), "e %08X\n", (unsigned)w->crc);
	if (pwrite(w->fd, seal, QF_SEAL_LEN, w->written) != QF_SEAL_LEN) {
		w->err = errno != 0 ? errno : EIO;
		return w->err;
	}
	w->end = w->written + QF_SEAL_LEN;
	snprintf(digits, sizeof(digits), "%0*lld", QF_SIZE_DIGITS, (long long)w->size);
	if (pwrite(w->fd, digits, QF_SIZE_DIGITS, w->size_field) != QF_SIZE_DIGITS)
		w->err = errno != 0 ? errno : EIO;
	return w->err;
}

void
qf_abort(struct qf_writer *w)
{
	char *path = w->path != NULL && w->fd >= 0 ? xstrdup(w->path) : NULL;

	qf_writer_free(w);	/* closed first: the last close frees the blocks */
	if (path != NULL)
		remove_later(path);	/* remove.c: the unlink waits for the disk */
	free(path);
}

void
qf_writer_free(struct qf_writer *w)
{
	if (w->fd >= 0)
		close(w->fd);
	w->fd = -1;
	free(w->path);
	w->path = NULL;
	buf_free(&w->out);
}

/* ---- state log --------------------------------------------------------- */

static int
append_record(struct msg *m, int fd, const char *rec, size_t len)
{
	ssize_t n = pwrite(fd, rec, len, m->end);

	if (n != (ssize_t)len) {
		int err = n < 0 ? errno : ENOSPC;

		log_qwarn(m->id, "cannot record state in %s: %s", m->path, strerror(err));
		return err;
	}
	m->end += (off_t)len;
	return 0;
}

/* `r LEAF CODE DSN TIME RELAY TEXT`: the leaf's result (s sent, f failed,
 * d deferred); `n LEAF`: its DSN is queued or none is needed. */
int
qf_log_leaf(struct msg *m, int fd, int i, char code)
{
	struct leaf *l = &m->leaves[i];
	struct buf b;
	int err;

	/* A deferral needs no record (it only feeds `list` after a restart):
	 * past QF_LOG_DEFER_MAX they stop, so a message retried for days
	 * cannot grow its log past what the reader accepts. */
	if (code == 'd' && m->end - (m->data_off + m->size) > QF_LOG_DEFER_MAX)
		return 0;
	buf_init(&b, REASON_MAX + ADDR_MAX + 128);
	if (code == 'n')
		buf_printf(&b, "n %d\n", i);
	else {
		buf_printf(&b, "r %d %c %s %lld ", i, code, l->dsn[0] ? l->dsn : "-",
		    (long long)l->last_try);
		put_text(&b, l->relay != NULL && l->relay[0] != '\0' ? l->relay : "-");
		buf_putc(&b, ' ');
		put_text(&b, l->reason != NULL ? l->reason : "");
		buf_putc(&b, '\n');
	}
	err = append_record(m, fd, b.data, b.len);
	buf_free(&b);
	return err;
}

/* Message records: "w" (delay warning sent), "h 1" / "h 0" (hold). */
int
qf_log_msg(struct msg *m, int fd, const char *rec)
{
	char line[64];
	int n = snprintf(line, sizeof(line), "%s\n", rec);

	return append_record(m, fd, line, (size_t)n);
}

/* Open a queue file without updating its access time (which would dirty
 * the inode and make the next group commit write it back): O_NOATIME is
 * refused (EPERM) for files we do not own, then we open without it. */
int
qf_open(int dirfd, const char *path, int flags)
{
	int fd = openat(dirfd, path, flags | O_NOATIME | O_CLOEXEC | O_NOFOLLOW);

	if (fd < 0 && errno == EPERM)
		fd = openat(dirfd, path, flags | O_CLOEXEC | O_NOFOLLOW);
	return fd;
}

int
spool_open(const char *dir)
{
	static const char *const subdirs[] = { "incoming", "queue", "corrupt", "free" };
	char sub[16];
	int fd;

	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return -1;
	for (size_t i = 0; i < sizeof(subdirs) / sizeof(subdirs[0]); i++)
		if (mkdirat(fd, subdirs[i], 0700) < 0 && errno != EEXIST)
			goto fail;
	for (int i = 0; i < QUEUE_HASH_DIRS; i++) {
		snprintf(sub, sizeof(sub), "queue/%X", i);
		if (mkdirat(fd, sub, 0700) < 0 && errno != EEXIST)
			goto fail;
	}
	return fd;
fail:
	close(fd);
	return -1;
}
