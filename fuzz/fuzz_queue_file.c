/*
 * Fuzz target for queued's readers of outside bytes: the queue file reader
 * (the input is a whole queue file, read back with qf_read as start-up
 * recovery does) and, on the same input taken as one command line, the
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
#include "../queued/submit_parse.c"

static char dir[64];

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
	rmdir(dir);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct msg *m;
	char err[256];
	int fd;

	if (spool_fd < 0) {
		snprintf(dir, sizeof(dir), "/tmp/fuzz_queue_file.XXXXXX");
		if (mkdtemp(dir) == NULL || (spool_fd = spool_open(dir)) < 0)
			abort();
		atexit(cleanup);
	}
	fd = openat(spool_fd, "queue/0/F", O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, data, size) != (ssize_t)size)
		abort();
	close(fd);
	if (qf_read(spool_fd, "queue/0/F", &m, err, sizeof(err)) == 0)
		msg_free(m);
	parse_line(data, size);
	return 0;
}
