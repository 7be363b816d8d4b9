/*
 * Fuzz target for lmtpd's own parsers: the MAIL FROM / RCPT TO argument
 * syntax (lmtpd/lmtp_parse.c) and the mboxrd writer (lmtpd/msg_write.c),
 * whose output, unquoted, must give back exactly what went in. lmtpd is
 * a program, not part of libhermod.a, so its two files are compiled in.
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../lmtpd/lmtp_parse.c"
#include "../lmtpd/msg_write.c"

static void
fuzz_paths(const uint8_t *data, size_t size)
{
	char line[4096], out[LMTP_PATH_MAX + 1];
	char *rest;
	unsigned long long sz;
	size_t n = size < sizeof(line) - 1 ? size : sizeof(line) - 1;

	memcpy(line, data, n);
	line[n] = '\0';
	if (lmtp_parse_path(line, "FROM:", out, sizeof(out), &rest) == 0) {
		assert(strlen(out) <= LMTP_PATH_MAX);
		(void)lmtp_parse_mail_params(rest, &sz);
	}
	if (lmtp_parse_path(line, "TO:", out, sizeof(out), &rest) == 0)
		(void)lmtp_parse_rcpt_params(rest);
}

/* Undo mboxrd quoting: one '>' off every line matching ^>+From . */
static size_t
unquote(char *p, size_t n)
{
	size_t o = 0;

	for (size_t i = 0; i < n;) {
		size_t j = i;
		while (j < n && p[j] == '>')
			j++;
		int quoted = j > i && n - j >= 5 && memcmp(p + j, "From ", 5) == 0;
		if (quoted)
			i++;
		while (i < n) {
			char c = p[i++];
			p[o++] = c;
			if (c == '\n')
				break;
		}
	}
	return o;
}

static void
fuzz_mboxrd(const uint8_t *data, size_t size)
{
	int in = memfd_create("in", 0), out = memfd_create("out", 0);
	off_t written;

	if (in < 0 || out < 0 || write(in, data, size) != (ssize_t)size)
		abort();
	struct dlv_msg m = { in, (off_t)size, "s@example.org", "r@example.org", "Q" };
	assert(msg_write(out, &m, 1, &written) == 0);
	char *buf = malloc((size_t)written + 1);
	assert(pread(out, buf, (size_t)written, 0) == written);
	size_t n = unquote(buf, (size_t)written);
	size_t pre = msg_prefix_len(&m);
	assert(n == pre + size);
	assert(memcmp(buf + pre, data, size) == 0);
	free(buf);
	close(in);
	close(out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	if (data[0] & 1)
		fuzz_paths(data + 1, size - 1);
	else
		fuzz_mboxrd(data + 1, size - 1);
	return 0;
}
