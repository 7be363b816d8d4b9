/*
 * Fuzz target for the command side of lib/smtp_proto: the line reader
 * (fed in pieces whose size the first input byte chooses, and checked
 * against a one-piece read: the same lines and flags whatever the split),
 * verb splitting, MAIL/RCPT argument splitting, ESMTP parameters, xtext
 * (decode/valid agree, encode then decode gives the bytes back), BDAT
 * arguments, and the reply writer on the line's text (what it writes must
 * read back as one well-formed reply).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "smtp_proto.h"

#define MUST(c) do { if (!(c)) __builtin_trap(); } while (0)

static void
check_xtext(const char *v)
{
	char out[SMTP_CMD_LINE_MAX], back[SMTP_CMD_LINE_MAX];
	long n = smtp_xtext_decode(v, out, sizeof(out));
	struct buf b;

	MUST((n >= 0) == smtp_xtext_valid(v));
	if (n < 0)
		return;
	buf_init(&b, 4 * SMTP_CMD_LINE_MAX);
	MUST(smtp_xtext_encode(&b, out, (size_t)n) == 0);
	MUST(smtp_xtext_decode(b.data ? b.data : "", back, sizeof(back)) == n);
	MUST(memcmp(out, back, (size_t)n) == 0);
	buf_free(&b);
}

static void
check_params(char *s)
{
	struct smtp_params ps;

	for (unsigned flags = 0; flags <= SMTP_PARAM_F_UTF8; flags++) {
		char copy[SMTP_CMD_LINE_MAX];
		snprintf(copy, sizeof(copy), "%s", s);
		(void)smtp_params_parse(copy, flags, &ps);
		MUST(ps.n <= SMTP_PARAMS_MAX);
		for (unsigned i = 0; i < ps.n; i++) {
			MUST(smtp_param_get(&ps, ps.p[i].key) != NULL);
			if (ps.p[i].value != NULL)
				check_xtext(ps.p[i].value);
		}
	}
}

static void
check_reply_writer(const char *text)
{
	struct evbuffer *eb = evbuffer_new();
	struct smtp_reply_reader rr;
	struct smtp_reply r;

	smtp_reply_fmt(eb, 550, "5.1.1", "%s", text);
	smtp_reply_init(&r);
	smtp_reply_reader_init(&rr);
	MUST(smtp_reply_read(&rr, eb, &r) == SMTP_RR_DONE);
	MUST(r.code == 550 && strcmp(r.esc, "5.1.1") == 0);
	MUST(evbuffer_get_length(eb) == 0);
	smtp_reply_free(&r);
	evbuffer_free(eb);
}

static void
check_line(char *line, size_t len, unsigned flags)
{
	char *verb, *arg, *path, *params;
	uint64_t size;
	int last;

	MUST(len < SMTP_CMD_LINE_MAX && line[len] == '\0');
	MUST(memchr(line, '\n', len) == NULL);
	MUST((memchr(line, '\r', len) != NULL) == !!(flags & SMTP_LINE_F_BARE_CR));
	if (flags & SMTP_LINE_F_NUL)
		return;
	check_reply_writer(line);
	if (smtp_cmd_split(line, &verb, &arg) < 0)
		return;
	MUST(strlen(verb) <= SMTP_VERB_MAX);
	if (strcmp(verb, "BDAT") == 0)
		(void)smtp_bdat_parse(arg, 1000000, &size, &last);
	if (smtp_path_split(arg, strcmp(verb, "MAIL") == 0 ? "FROM:" : "TO:",
	    len & 1, &path, &params) == 0)
		check_params(params);
	else
		check_params(arg);
}

/* Read all lines of data[0..size) in pieces; a compact trace of results. */
static size_t
read_all(const uint8_t *data, size_t size, size_t piece, size_t max,
    uint32_t *trace, size_t tmax, int check)
{
	struct evbuffer *eb = evbuffer_new();
	struct smtp_line_reader lr;
	char line[SMTP_CMD_LINE_MAX];
	size_t off = 0, nt = 0, len;
	unsigned flags;
	enum smtp_line_res r;

	smtp_line_init(&lr, max);
	while (off < size) {
		size_t k = size - off < piece ? size - off : piece;
		evbuffer_add(eb, data + off, k);
		off += k;
		while ((r = smtp_line_read(&lr, eb, line, &len, &flags)) !=
		    SMTP_LINE_MORE) {
			uint32_t t = r == SMTP_LINE_OK ? (uint32_t)len << 4 | flags : 1u << 31;
			if (nt < tmax)
				trace[nt] = t;
			nt++;
			if (r == SMTP_LINE_OK && check)
				check_line(line, len, flags);
		}
	}
	MUST(evbuffer_get_length(eb) < max);
	evbuffer_free(eb);
	return nt;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint32_t t1[4096], t2[4096];
	size_t piece, max, n1, n2;

	if (size < 2)
		return 0;
	piece = data[0] % 64 + 1;
	max = data[1] & 1 ? SMTP_CMD_LINE_MAX : (size_t)(data[1] >> 1) + 3;
	n1 = read_all(data + 2, size - 2, size, max, t1, 4096, 1);
	n2 = read_all(data + 2, size - 2, piece, max, t2, 4096, 0);
	MUST(n1 == n2);
	MUST(memcmp(t1, t2, (n1 < 4096 ? n1 : 4096) * sizeof(t1[0])) == 0);
	return 0;
}
