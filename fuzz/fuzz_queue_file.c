/*
 * Fuzz target for queued's readers of outside bytes: the queue file reader
 * (the input is a whole queue file, read back with qf_read as start-up
 * recovery does: once as given, and once more, for a version 2 file, with
 * its seal recomputed so the mutations also reach the envelope and state
 * log parsers behind the CRC) and, on the same input taken as one command line, the
 * submission session's MAIL/RCPT path and parameter parsers and XFORWARD.
 * queued's sources are not in libhermod.a, so they are compiled in here.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "../queued/queue_file.c"
#include "../queued/queue_id.c"
#include "../queued/queue_read.c"
#include "../queued/remove.c"
#include "../queued/submit_parse.c"

static char dir[64];

/* commit.c is not compiled in: no group commit runs here, so remove.c
 * never hands out an emptied file. */
struct commit_stats commit_stats;

static void
parse_line(const uint8_t *data, size_t size)
{
	struct submit_tx tx = { 0 };
	char *line = malloc(size + 1), addr[ADDR_MAX];
	char *rest;

	memcpy(line, data, size);
	line[size] = '\0';
	buf_init(&tx.xforward, 1024);
	if (parse_path(line, (int)(size & 1), addr, sizeof(addr), &rest) == NULL) {
		(void)parse_mail_params(&tx, rest);
		(void)parse_rcpt_params(&tx, rest);
	}
	(void)parse_xforward(&tx, line);
	free(tx.envid);
	free(tx.auth);
	free(tx.cur.orcpt);
	buf_free(&tx.xforward);
	free(line);
}

/* The scratch spool goes away with the process. */
static void
cleanup(void)
{
	char sub[16];

	unlinkat(spool_fd, "queue/0/F", 0);
	for (int i = 0; i < QUEUE_HASH_DIRS; i++) {
		snprintf(sub, sizeof(sub), "queue/%X", i);
		unlinkat(spool_fd, sub, AT_REMOVEDIR);
	}
	unlinkat(spool_fd, "queue", AT_REMOVEDIR);
	unlinkat(spool_fd, "incoming", AT_REMOVEDIR);
	unlinkat(spool_fd, "corrupt", AT_REMOVEDIR);
	unlinkat(spool_fd, "free", AT_REMOVEDIR);
	rmdir(dir);
}

static void
read_back(const uint8_t *data, size_t size)
{
	struct msg *m;
	char err[256];
	int fd = openat(spool_fd, "queue/0/F", O_WRONLY | O_CREAT | O_TRUNC, 0600);

	if (fd < 0 || write(fd, data, size) != (ssize_t)size)
		abort();
	close(fd);
	if (qf_read(spool_fd, "queue/0/F", &m, err, sizeof(err)) == 0)
		msg_free(m);
}

/* A copy of a version 2 file with the seal it would need, or NULL. */
static uint8_t *
resealed(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data + strlen(QF_MAGIC);
	const uint8_t *blank;
	unsigned long long n = 0;
	size_t end;
	uint8_t *copy;
	char seal[QF_SEAL_LEN + 1];

	if (size < (size_t)QF_CRC_FROM || memcmp(data, QF_MAGIC, strlen(QF_MAGIC)) != 0 ||
	    (blank = memmem(data, size, "\n\n", 2)) == NULL)
		return NULL;
	for (int i = 6; i < 6 + QF_SIZE_DIGITS; i++)
		n = n * 10 + (unsigned)(p[i] >= '0' && p[i] <= '9' ? p[i] - '0' : 0);
	end = (size_t)(blank - data) + 2;
	if (end < (size_t)QF_CRC_FROM || n > size || end + n + QF_SEAL_LEN > size)
		return NULL;
	end += n;
	copy = malloc(size);
	memcpy(copy, data, size);
	snprintf(seal, sizeof(seal), "e %08X\n",
	    (unsigned)qf_crc32c(0, copy + QF_CRC_FROM, end - (size_t)QF_CRC_FROM));
	memcpy(copy + end, seal, QF_SEAL_LEN);
	return copy;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *copy;

	if (spool_fd < 0) {
		snprintf(dir, sizeof(dir), "/tmp/fuzz_queue_file.XXXXXX");
		if (mkdtemp(dir) == NULL || (spool_fd = spool_open(dir)) < 0)
			abort();
		atexit(cleanup);
	}
	read_back(data, size);
	if ((copy = resealed(data, size)) != NULL) {
		read_back(copy, size);
		free(copy);
	}
	parse_line(data, size);
	return 0;
}
