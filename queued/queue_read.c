/*
 * Reading queue files back (start-up recovery): first the seal of a
 * version 2 file (queue_file.c says why there is one), then the envelope
 * block through one table of `key: value` handlers, then the state log
 * after the message. A file whose seal is missing or wrong is incomplete:
 * written by a submission that crashed before its group commit, so never
 * acknowledged, and the caller removes it. A whole file that does not
 * parse is corrupt: the caller moves it to corrupt/ and says why, it never
 * deletes it.
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

#define QF_READ_FIRST	(64 * 1024)
#define QF_CRC_CHUNK	(64 * 1024)

/* "<xtext>" -> decoded address; *end past the '>'. NULL if malformed. */
static char *
parse_addr(const char *s, const char **end)
{
	const char *close;
	char *a;

	if (*s != '<' || (close = strchr(s, '>')) == NULL || close - s - 1 > ADDR_MAX)
		return NULL;
	if ((a = xtext_decode(s + 1, (size_t)(close - s - 1))) != NULL)
		*end = close + 1;
	return a;
}

static int
parse_notify(const char *v, size_t n, unsigned *out)
{
	static const char *const names[] = { "NEVER", "SUCCESS", "FAILURE", "DELAY" };

	*out = 0;
	while (n > 0) {
		size_t w = 0, i;

		while (w < n && v[w] != ',')
			w++;
		for (i = 0; i < 4; i++)
			if (strlen(names[i]) == w && strncasecmp(v, names[i], w) == 0)
				break;
		if (i == 4)
			return -1;
		*out |= 1u << i;
		v += w;
		n -= w;
		if (n > 0) {
			v++;
			n--;
		}
	}
	return 0;
}

static int
h_id(struct msg *m, const char *v)
{
	if (!qid_valid(v))
		return -1;
	memcpy(m->id, v, QID_LEN + 1);
	return 0;
}

static int
h_arrival(struct msg *m, const char *v)
{
	char *e;

	m->arrival = strtod(v, &e);
	return *e == '\0' && m->arrival > 0 ? 0 : -1;
}

/* One size line (parse_header starts at -1): a second one, unsealed in
 * a version 2 file, would say another size than the sealed one. */
static int
h_size(struct msg *m, const char *v)
{
	char *e;
	long long n = strtoll(v, &e, 10);

	if (*e != '\0' || n < 0 || e == v || m->size >= 0)
		return -1;
	m->size = n;
	return 0;
}

static int
h_sender(struct msg *m, const char *v)
{
	const char *end;

	free(m->sender);
	m->sender = parse_addr(v, &end);
	return m->sender != NULL && *end == '\0' ? 0 : -1;
}

static int
h_envid(struct msg *m, const char *v)
{
	free(m->envid);
	return (m->envid = xtext_decode(v, strlen(v))) != NULL ? 0 : -1;
}

static int
h_auth(struct msg *m, const char *v)
{
	free(m->auth);
	return (m->auth = xtext_decode(v, strlen(v))) != NULL ? 0 : -1;
}

static int
h_client(struct msg *m, const char *v)
{
	free(m->client);
	m->client = xstrdup(v);
	return 0;
}

static int
h_body(struct msg *m, const char *v)
{
	m->body8 = strcasecmp(v, "8BITMIME") == 0;
	return m->body8 || strcasecmp(v, "7BIT") == 0 ? 0 : -1;
}

static int
h_smtputf8(struct msg *m, const char *v)
{
	m->smtputf8 = strcmp(v, "yes") == 0;
	return 0;
}

static int
h_ret(struct msg *m, const char *v)
{
	m->ret_hdrs = strcasecmp(v, "HDRS") == 0;
	return m->ret_hdrs || strcasecmp(v, "FULL") == 0 ? 0 : -1;
}

static int
h_flags(struct msg *m, const char *v)
{
	m->flags = (strstr(v, "dsn") ? MSGF_DSN : 0) | (strstr(v, "double") ? MSGF_DOUBLE : 0);
	return 0;
}

static int
h_rcpt(struct msg *m, const char *v)
{
	struct env_rcpt r = { 0 };
	const char *p;

	if (m->nrcpt >= RCPT_MAX || (r.addr = parse_addr(v, &p)) == NULL)
		return -1;
	while (*p == ' ') {
		const char *w = ++p;
		size_t n = strcspn(w, " ");

		if (strncmp(w, "notify=", 7) == 0 && parse_notify(w + 7, n - 7, &r.notify) == 0)
			;
		else if (strncmp(w, "orcpt=", 6) == 0 && r.orcpt == NULL &&
		    (r.orcpt = xtext_decode(w + 6, n - 6)) != NULL)
			;
		else {
			free(r.addr);
			free(r.orcpt);
			return -1;
		}
		p = w + n;
	}
	m->rcpts = xrealloc(m->rcpts, (size_t)(m->nrcpt + 1) * sizeof(*m->rcpts));
	m->rcpts[m->nrcpt++] = r;
	return *p == '\0' ? 0 : -1;
}

static int
h_leaf(struct msg *m, const char *v)
{
	static const char *const kinds[] = { "local", "remote", "error" };
	struct leaf l = { .state = LS_PENDING };
	char kind[8], *e;
	const char *p;
	int k;

	l.parent = (int)strtol(v, &e, 10);
	if (e == v || *e != ' ' || l.parent < 0 || l.parent >= m->nrcpt ||
	    m->nleaf >= RCPT_MAX || sscanf(e + 1, "%7s", kind) != 1)
		return -1;
	for (k = 0; k < 3 && strcmp(kind, kinds[k]) != 0; k++)
		;
	p = e + 1 + strlen(kind);
	if (k == 3 || *p++ != ' ' || (l.addr = parse_addr(p, &p)) == NULL)
		return -1;
	l.kind = (enum leaf_kind)k;
	if (l.kind == LEAF_ERROR) {
		if (*p != ' ' || sscanf(p + 1, "%7s", l.dsn) != 1) {
			free(l.addr);
			return -1;
		}
		p += 1 + strlen(l.dsn);
		l.reason = xstrdup(*p == ' ' ? p + 1 : "");
	} else if (*p != '\0') {
		free(l.addr);
		return -1;
	}
	m->leaves = xrealloc(m->leaves, (size_t)(m->nleaf + 1) * sizeof(*m->leaves));
	m->leaves[m->nleaf++] = l;
	return 0;
}

static const struct {
	const char *key;
	int (*fn)(struct msg *, const char *);
} header_keys[] = {
	{ "id", h_id }, { "arrival", h_arrival }, { "size", h_size },
	{ "sender", h_sender }, { "envid", h_envid }, { "auth", h_auth },
	{ "client", h_client }, { "body", h_body }, { "smtputf8", h_smtputf8 },
	{ "ret", h_ret }, { "flags", h_flags }, { "rcpt", h_rcpt }, { "leaf", h_leaf },
};

/* One "key: value" line (NUL-terminated, no newline). */
static int
header_line(struct msg *m, char *line, char *err, size_t errsz)
{
	char *colon = strchr(line, ':');

	if (colon == NULL || colon[1] != ' ') {
		snprintf(err, errsz, "malformed envelope line");
		return -1;
	}
	*colon = '\0';
	for (size_t i = 0; i < sizeof(header_keys) / sizeof(header_keys[0]); i++)
		if (strcmp(line, header_keys[i].key) == 0) {
			if (header_keys[i].fn(m, colon + 2) == 0)
				return 0;
			snprintf(err, errsz, "bad %s: line", line);
			return -1;
		}
	return 0;	/* unknown keys: later versions may add some */
}

/* Parse the envelope block; data holds at least through the blank line.
 * Returns 0 and sets m->data_off, or -1. */
static int
parse_header(const char *data, size_t len, struct msg *m, char *err, size_t errsz)
{
	const char *end = memmem(data, len, "\n\n", 2);
	char *copy, *line, *next;
	int rc = 0;

	if (len < strlen(QF_MAGIC) || (memcmp(data, QF_MAGIC, strlen(QF_MAGIC)) != 0 &&
	    memcmp(data, QF_MAGIC_V1, strlen(QF_MAGIC_V1)) != 0)) {
		snprintf(err, errsz, "not a queue file (bad magic)");
		return -1;
	}
	if (end == NULL) {
		snprintf(err, errsz, "envelope block not terminated");
		return -1;
	}
	if (memchr(data, '\0', (size_t)(end - data)) != NULL) {
		snprintf(err, errsz, "NUL byte in the envelope");
		return -1;
	}
	m->size = -1;
	copy = xstrndup(data + strlen(QF_MAGIC), (size_t)(end - data) - strlen(QF_MAGIC) + 1);
	for (line = copy; rc == 0 && *line != '\0'; line = next) {
		next = strchr(line, '\n');
		*next++ = '\0';
		rc = header_line(m, line, err, errsz);
	}
	free(copy);
	m->data_off = end - data + 2;
	if (rc == 0 && (m->id[0] == '\0' || m->sender == NULL || m->size < 0 ||
	    m->nrcpt == 0 || m->nleaf == 0 || m->arrival <= 0)) {
		snprintf(err, errsz, "envelope incomplete");
		rc = -1;
	}
	return rc;
}

static int
log_leaf_result(struct msg *m, const char *line)
{
	int i, n = 0;
	char code, dsn[8], relay[256];
	long long t;

	if (sscanf(line, "r %d %c %7s %lld %255s %n", &i, &code, dsn, &t, relay, &n) < 5 ||
	    n == 0 || i < 0 || i >= m->nleaf || strchr("sfd", code) == NULL)
		return -1;
	struct leaf *l = &m->leaves[i];
	l->state = code == 's' ? LS_SENT : code == 'f' ? LS_FAILED : LS_PENDING;
	snprintf(l->dsn, sizeof(l->dsn), "%s", strcmp(dsn, "-") == 0 ? "" : dsn);
	l->last_try = (time_t)t;
	free(l->relay);
	free(l->reason);
	l->relay = strcmp(relay, "-") == 0 ? NULL : xstrdup(relay);
	l->reason = xstrdup(line + n);
	if (code == 'd')
		m->tries++;
	return 0;
}

static int
log_line(struct msg *m, const char *line)
{
	int i;

	switch (line[0]) {
	case 'r':
		return log_leaf_result(m, line);
	case 'n':
		if (sscanf(line, "n %d", &i) != 1 || i < 0 || i >= m->nleaf)
			return -1;
		m->leaves[i].notified = 1;
		return 0;
	case 'w':
		m->warned = 1;
		return 0;
	case 'h':
		m->hold = strcmp(line, "h 1") == 0;
		return 0;
	default:
		return -1;
	}
}

/* The state log; a last line without its newline is ignored (torn). */
static int
parse_log(char *data, size_t len, off_t log_off, struct msg *m, char *err, size_t errsz)
{
	char *p = data, *end = data + len, *nl;

	while (p < end && (nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
		*nl = '\0';
		if (log_line(m, p) < 0) {
			snprintf(err, errsz, "bad state record at log offset %zu",
			    (size_t)(p - data));
			return -1;
		}
		p = nl + 1;
	}
	m->end = log_off + (off_t)(p - data);
	return 0;
}

int
qf_parse(const char *data, size_t len, off_t file_size, struct msg *m,
    char *err, size_t errsz)
{
	if (parse_header(data, len, m, err, errsz) < 0)
		return -1;
	/* size first: near 2^63 the sum would overflow */
	if (m->size > file_size || m->data_off + m->size > file_size) {
		snprintf(err, errsz, "truncated: message of %lld bytes, file of %lld",
		    (long long)m->size, (long long)file_size);
		return -1;
	}
	m->end = file_size;
	return 0;
}

static ssize_t
read_at(int fd, char *p, size_t n, off_t off)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r = pread(fd, p + got, n - got, off + (off_t)got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -1 : (ssize_t)got;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

/* Header: first block, then grow until the blank line is in (bounded). */
static char *
read_header(int fd, off_t fsize, size_t *len)
{
	size_t want = QF_READ_FIRST;
	char *data = NULL;
	ssize_t n;

	for (;;) {
		if ((off_t)want > fsize)
			want = (size_t)fsize;
		data = xrealloc(data, want + 1);
		if ((n = read_at(fd, data, want, 0)) < 0) {
			free(data);
			return NULL;
		}
		*len = (size_t)n;
		if (memmem(data, *len, "\n\n", 2) != NULL || (off_t)want >= fsize ||
		    want >= QF_HEADER_MAX)
			return data;
		want *= 4;
	}
}

static int
incomplete(char *err, size_t errsz, const char *why)
{
	snprintf(err, errsz, "incomplete (%s): never acknowledged", why);
	return QF_INCOMPLETE;
}

/* The CRC of [from, to): what of it is in data[0..len), then read. */
static int
crc_range(int fd, const char *data, size_t len, off_t from, off_t to, uint32_t *crc)
{
	char *chunk;

	*crc = 0;
	if (from < (off_t)len) {
		size_t upto = to < (off_t)len ? (size_t)to : len;

		*crc = qf_crc32c(0, data + from, upto - (size_t)from);
		from = (off_t)upto;
	}
	if (from >= to)
		return 0;
	chunk = xmalloc(QF_CRC_CHUNK);
	while (from < to) {
		size_t want = to - from < QF_CRC_CHUNK ? (size_t)(to - from) : QF_CRC_CHUNK;

		if (read_at(fd, chunk, want, from) != (ssize_t)want) {
			free(chunk);
			return -1;
		}
		*crc = qf_crc32c(*crc, chunk, want);
		from += (off_t)want;
	}
	free(chunk);
	return 0;
}

/* A version 2 file is whole when its size line holds digits, a seal
 * stands right after that many bytes of message, and the seal's CRC is
 * the file's. 0, QF_INCOMPLETE, or -2 (I/O error). */
static int
check_seal(int fd, const char *data, size_t len, off_t fsize, char *err, size_t errsz)
{
	const char *p = data + strlen(QF_MAGIC), *blank;
	char seal[QF_SEAL_LEN], want[QF_SEAL_LEN + 1];
	off_t size = 0, msg_end;
	uint32_t crc;

	if (len < (size_t)QF_CRC_FROM || memcmp(p, "size: ", 6) != 0 ||
	    p[6 + QF_SIZE_DIGITS] != '\n')
		return incomplete(err, errsz, "no size");
	for (int i = 6; i < 6 + QF_SIZE_DIGITS; i++) {
		if (p[i] < '0' || p[i] > '9')
			return incomplete(err, errsz, "no size");
		size = size * 10 + (p[i] - '0');
	}
	if ((blank = memmem(data, len, "\n\n", 2)) == NULL ||
	    blank - data + 2 < QF_CRC_FROM)
		return incomplete(err, errsz, "envelope not whole");
	msg_end = blank - data + 2 + size;
	if (msg_end + QF_SEAL_LEN > fsize)
		return incomplete(err, errsz, "shorter than its size");
	if (crc_range(fd, data, len, QF_CRC_FROM, msg_end, &crc) < 0 ||
	    read_at(fd, seal, QF_SEAL_LEN, msg_end) != QF_SEAL_LEN) {
		snprintf(err, errsz, "read: %s", strerror(errno));
		return -2;
	}
	snprintf(want, sizeof(want), "e %08X\n", (unsigned)crc);
	if (memcmp(seal, want, QF_SEAL_LEN) != 0)
		return incomplete(err, errsz, "seal missing or wrong");
	return 0;
}

int
qf_read(int dirfd, const char *path, struct msg **out, char *err, size_t errsz)
{
	struct msg *m = msg_new();
	struct stat st;
	char *data = NULL, *log = NULL;
	size_t len, loglen;
	off_t log_off;
	int fd, rc = -1, v2;

	*out = NULL;
	/* O_NONBLOCK: a FIFO in the spool would block the open for ever */
	if ((fd = qf_open(dirfd, path, O_RDONLY | O_NONBLOCK)) < 0 || fstat(fd, &st) < 0) {
		int e = errno;

		snprintf(err, errsz, "cannot open: %s", strerror(e));
		rc = e == ELOOP ? -1 : -2;	/* a symlink is no queue file */
		goto done;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errsz, "not a regular file");
		goto done;
	}
	if ((data = read_header(fd, st.st_size, &len)) == NULL) {
		snprintf(err, errsz, "read: %s", strerror(errno));
		rc = -2;
		goto done;
	}
	/* Empty, cut inside the magic, or a first page that never reached
	 * the disk: a version 2 file torn by a crash (version 1 files were
	 * only renamed into queue/ once whole). */
	if (len == 0 || data[0] == '\0' ||
	    (len < strlen(QF_MAGIC) && memcmp(data, QF_MAGIC, len) == 0)) {
		rc = incomplete(err, errsz, "no envelope");
		goto done;
	}
	v2 = len >= strlen(QF_MAGIC) && memcmp(data, QF_MAGIC, strlen(QF_MAGIC)) == 0;
	if (v2 && (rc = check_seal(fd, data, len, st.st_size, err, errsz)) != 0)
		goto done;
	rc = -1;
	if (qf_parse(data, len, st.st_size, m, err, errsz) < 0)
		goto done;
	log_off = m->data_off + m->size + (v2 ? QF_SEAL_LEN : 0);
	if (log_off > st.st_size) {
		snprintf(err, errsz, "seal past the end of the file");
		goto done;
	}
	loglen = (size_t)(st.st_size - log_off);
	if (loglen > QF_LOG_MAX) {
		snprintf(err, errsz, "state log too large");
		goto done;
	}
	log = xmalloc(loglen + 1);
	if (read_at(fd, log, loglen, log_off) != (ssize_t)loglen) {
		snprintf(err, errsz, "read: %s", strerror(errno));
		rc = -2;
		goto done;
	}
	if (parse_log(log, loglen, log_off, m, err, errsz) < 0)
		goto done;
	m->path = xstrdup(path);
	*out = m;
	m = NULL;
	rc = 0;
done:
	if (fd >= 0)
		close(fd);
	free(data);
	free(log);
	msg_free(m);
	return rc;
}
