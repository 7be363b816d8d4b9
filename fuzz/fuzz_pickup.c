/*
 * Fuzz target for queued's pickup (queued/pickup.c): the input is a
 * maildrop file, which any local user writes. Its envelope is split into
 * MAIL / RCPT / DATA commands here before anything is sent; the commands
 * themselves are then the submission session's to parse (fuzz_queue_file,
 * fuzz_smtp_server). pickup.c is compiled in; the queued functions it
 * calls are stubs that are never reached from parse_envelope().
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../queued/pickup.c"

int spool_fd = -1;
int queued_stopping;
const char *queued_hostname(void) { return "fuzz.example"; }
int submit_session_start(int fd, uid_t uid, int one_txn) { (void)fd; (void)uid; (void)one_txn; return -1; }

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct job j;
	char *p = malloc(size + 1);
	size_t env;

	memcpy(p, data, size);
	memset(&j, 0, sizeof(j));
	env = parse_envelope(&j, p, size);
	/* what it promises: a prefix that is whole CRLF lines, MAIL first,
	 * DATA last, at least one RCPT between */
	if (env > 0 && (env > size || j.ncmd < 3 || j.kinds[0] != 'M' ||
	    j.kinds[j.ncmd - 1] != 'D' || p[env - 1] != '\n' || p[env - 2] != '\r'))
		abort();
	free(j.kinds);
	free(p);
	return 0;
}
