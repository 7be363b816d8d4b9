/*
 * Fuzz target for the client's reply reader in lib/smtp_proto: the input
 * is what a server sends, read in pieces (size from the first byte) and
 * in one piece; both reads must give the same replies and the same error.
 * Each reply keeps its bounds (code 200-599, at most 100 lines, text cap),
 * and written back with smtp_reply_fmt it reads back with the same code.
 */
#include <stdint.h>
#include <string.h>

#include <event2/buffer.h>

#include "smtp_proto.h"

#define MUST(c) do { if (!(c)) __builtin_trap(); } while (0)
#define TRACE_MAX 256

struct trace {
	int code[TRACE_MAX];
	unsigned nlines[TRACE_MAX];
	size_t textlen[TRACE_MAX];
	size_t n;
	enum smtp_rr_err err;
};

static void
check_reply(const struct smtp_reply *r)
{
	struct evbuffer *eb = evbuffer_new();
	struct smtp_reply_reader rr;
	struct smtp_reply back;

	MUST(r->code >= 200 && r->code <= 599);
	MUST(r->nlines >= 1 && r->nlines <= SMTP_REPLY_LINES_MAX);
	MUST(r->text.len <= SMTP_REPLY_TEXT_MAX);
	MUST(r->esc[0] == '\0' || r->esc[0] - '0' == r->code / 100);
	smtp_reply_fmt(eb, r->code, r->esc[0] ? r->esc : NULL, "%s",
	    r->text.data ? r->text.data : "");
	smtp_reply_init(&back);
	smtp_reply_reader_init(&rr);
	MUST(smtp_reply_read(&rr, eb, &back) == SMTP_RR_DONE);
	MUST(back.code == r->code && strcmp(back.esc, r->esc) == 0);
	smtp_reply_free(&back);
	evbuffer_free(eb);
}

static void
read_all(const uint8_t *p, size_t n, size_t piece, struct trace *t, int check)
{
	struct evbuffer *eb = evbuffer_new();
	struct smtp_reply_reader rr;
	struct smtp_reply r;
	size_t off = 0;
	enum smtp_rr_res res = SMTP_RR_MORE;

	memset(t, 0, sizeof(*t));
	smtp_reply_init(&r);
	smtp_reply_reader_init(&rr);
	while (off < n && res != SMTP_RR_ERROR) {
		size_t k = n - off < piece ? n - off : piece;
		evbuffer_add(eb, p + off, k);
		off += k;
		while ((res = smtp_reply_read(&rr, eb, &r)) == SMTP_RR_DONE) {
			if (check)
				check_reply(&r);
			if (t->n < TRACE_MAX) {
				t->code[t->n] = r.code;
				t->nlines[t->n] = r.nlines;
				t->textlen[t->n] = r.text.len;
			}
			t->n++;
		}
	}
	t->err = rr.err;
	smtp_reply_free(&r);
	evbuffer_free(eb);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct trace a, b;

	if (size < 1)
		return 0;
	read_all(data + 1, size - 1, size, &a, 1);
	read_all(data + 1, size - 1, data[0] % 32 + 1, &b, 0);
	MUST(a.n == b.n && a.err == b.err);
	MUST(memcmp(&a, &b, sizeof(a)) == 0);
	return 0;
}
