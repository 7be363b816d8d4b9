/*
 * Unit tests of the DATA decoder and encoder of lib/smtp_proto: a table
 * of dot-stuffing, empty-message, size-limit and SMTP-smuggling cases;
 * every split of every case gives the same result; exhaustively over all
 * strings of CR, LF, '.' and 'a' up to 7 bytes, the end is found exactly
 * at the first CRLF.CRLF and decode(encode(x)) is x normalized.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "smtp_proto.h"
#include "unit.h"

static void
collect(void *arg, const char *p, size_t n)
{
	struct buf *b = arg;

	buf_append(b, p, n);
}

static char *
wire_str(struct evbuffer *eb)
{
	size_t n = evbuffer_get_length(eb);
	char *s = malloc(n + 1);

	evbuffer_remove(eb, s, n);
	s[n] = '\0';
	return s;
}

/* ---------------- DATA decoder and encoder ---------------- */

struct dec_result {
	struct buf out;
	unsigned flags;
	size_t consumed;
	int done;
};

/* Decode `in` cut at the given points (sorted, ncuts of them). */
static void
dec_run(const char *in, size_t len, unsigned mode, uint64_t max,
    const size_t *cuts, int ncuts, struct dec_result *r)
{
	struct smtp_data_dec d;
	size_t start = 0;

	smtp_data_dec_init(&d, mode, max);
	buf_init(&r->out, 1 << 20);
	r->consumed = 0;
	r->done = 0;
	for (int c = 0; c <= ncuts && !r->done; c++) {
		size_t end = c < ncuts ? cuts[c] : len;
		r->consumed += smtp_data_dec_feed(&d, in + start, end - start,
		    collect, &r->out, &r->done);
		start = end;
	}
	r->flags = d.flags;
}

/* memcmp that accepts the NULL data of an empty buf. */
static int
mem_eq(const void *a, const void *b, size_t n)
{
	return n == 0 || memcmp(a, b, n) == 0;
}

static int
dec_same(const struct dec_result *a, const struct dec_result *b)
{
	return a->out.len == b->out.len &&
	    mem_eq(a->out.data, b->out.data, a->out.len) &&
	    a->flags == b->flags && a->consumed == b->consumed &&
	    a->done == b->done;
}

/* Every 1-, 2- and (for short inputs) byte-by-byte split gives the same. */
static int
dec_split_invariant(const char *in, size_t len, unsigned mode, uint64_t max)
{
	struct dec_result whole, part;
	size_t cuts[64];
	int ok = 1;

	dec_run(in, len, mode, max, NULL, 0, &whole);
	for (size_t i = 0; i <= len && ok; i++) {
		for (size_t j = i; j <= len && ok; j++) {
			cuts[0] = i;
			cuts[1] = j;
			dec_run(in, len, mode, max, cuts, 2, &part);
			ok = dec_same(&whole, &part);
			buf_free(&part.out);
		}
	}
	if (len < 64) {
		for (size_t i = 0; i < len; i++)
			cuts[i] = i;
		dec_run(in, len, mode, max, cuts, (int)len, &part);
		ok = ok && dec_same(&whole, &part);
		buf_free(&part.out);
	}
	buf_free(&whole.out);
	return ok;
}

TEST(test_data_decoder)
{
#define F_LF SMTP_DATA_F_BARE_LF
#define F_CR SMTP_DATA_F_BARE_CR
	static const struct {
		const char *in;
		size_t len;		/* 0: strlen */
		unsigned mode;
		uint64_t max;
		const char *out;
		unsigned flags;
		int done;
		size_t left;		/* unconsumed bytes */
	} t[] = {
		{ ".\r\n", 0, 0, 0, "", 0, 1, 0 },
		{ ".\r\nQUIT\r\n", 0, 0, 0, "", 0, 1, 6 },
		{ "a\r\n.\r\n", 0, 0, 0, "a\r\n", 0, 1, 0 },
		{ "a\r\n..b\r\n.\r\nQUIT\r\n", 0, 0, 0, "a\r\n.b\r\n", 0, 1, 6 },
		{ "..\r\n.\r\n", 0, 0, 0, ".\r\n", 0, 1, 0 },
		{ "\r\n.\r\n", 0, 0, 0, "\r\n", 0, 1, 0 },
		{ "a\r\n. \r\n.\r\n", 0, 0, 0, "a\r\n \r\n", 0, 1, 0 },
		{ "a\r\n.", 0, 0, 0, "a\r\n", 0, 0, 0 },
		{ "a\r\n.\r", 0, 0, 0, "a\r\n", 0, 0, 0 },
		/* SMTP smuggling: none of these ends the data */
		{ "a\n.\nMAIL", 0, 0, 0, "a\n.\nMAIL", F_LF, 0, 0 },
		{ "a\r.\rMAIL", 0, 0, 0, "a\r.\rMAIL", F_CR, 0, 0 },
		{ "a\n.\r\nMAIL", 0, 0, 0, "a\n.\r\nMAIL", F_LF, 0, 0 },
		{ "a\r\n.\nMAIL", 0, 0, 0, "a\r\n\nMAIL", F_LF, 0, 0 },
		{ "a\r.\r\nMAIL", 0, 0, 0, "a\r.\r\nMAIL", F_CR, 0, 0 },
		{ "a\r\n.\rMAIL", 0, 0, 0, "a\r\n\rMAIL", F_CR, 0, 0 },
		{ "a\r\r\n.\r\n", 0, 0, 0, "a\r\r\n", F_CR, 1, 0 },
		{ "a\n\r\n.\r\n", 0, 0, 0, "a\n\r\n", F_LF, 1, 0 },
		{ "\n.\n", 0, 0, 0, "\n.\n", F_LF, 0, 0 },
		/* normalize: bare LF -> CRLF, still flagged, end unchanged */
		{ "a\nb\r\n.\r\n", 0, SMTP_DATA_NORMALIZE, 0, "a\r\nb\r\n",
		    F_LF, 1, 0 },
		{ "a\n.\n", 0, SMTP_DATA_NORMALIZE, 0, "a\r\n.\r\n", F_LF, 0,
		    0 },
		{ "a\0b\r\n.\r\n", 8, 0, 0, "a\0b\r\n", SMTP_DATA_F_NUL, 1, 0 },
		/* size: 5 bytes with max 5 pass; max 4 cuts and flags */
		{ "abc\r\n.\r\n", 0, 0, 5, "abc\r\n", 0, 1, 0 },
		{ "abc\r\n.\r\n", 0, 0, 4, "abc\r", SMTP_DATA_F_TOO_BIG, 1, 0 },
	};
	struct dec_result r;

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		size_t len = t[i].len ? t[i].len : strlen(t[i].in);
		size_t olen = t[i].len ? t[i].len - 3 : strlen(t[i].out);
		dec_run(t[i].in, len, t[i].mode, t[i].max, NULL, 0, &r);
		CHECK_INT(r.out.len, olen);
		CHECK(mem_eq(r.out.data, t[i].out, olen));
		CHECK_INT(r.flags, t[i].flags);
		CHECK_INT(r.done, t[i].done);
		CHECK_INT(len - r.consumed, t[i].left);
		if (r.flags != t[i].flags || r.done != t[i].done)
			fprintf(stderr, "case %zu\n", i);
		buf_free(&r.out);
		CHECK(dec_split_invariant(t[i].in, len, t[i].mode, t[i].max));
	}
#undef F_LF
#undef F_CR
}

/* All strings over {CR, LF, '.', 'a'} up to `maxlen`, as base-4 numbers. */
static size_t
gen_string(unsigned long k, size_t len, char *s)
{
	static const char alpha[4] = { '\r', '\n', '.', 'a' };

	for (size_t i = 0; i < len; i++, k /= 4)
		s[i] = alpha[k % 4];
	return len;
}

/* Where "\r\n.\r\n" first ends in CRLF+s (the real end), or 0. */
static size_t
true_end(const char *s, size_t len)
{
	char t[32];

	memcpy(t, "\r\n", 2);
	memcpy(t + 2, s, len);
	for (size_t i = 0; i + 5 <= len + 2; i++)
		if (memcmp(t + i, "\r\n.\r\n", 5) == 0)
			return i + 5 - 2;
	return 0;
}

/* Exhaustive: the end is exactly at the first CRLF.CRLF; splits agree. */
TEST(test_data_exhaustive)
{
	char s[16];
	struct dec_result r;
	int bad = 0;

	for (size_t len = 0; len <= 7 && bad < 5; len++) {
		unsigned long count = 1ul << (2 * len);
		for (unsigned long k = 0; k < count && bad < 5; k++) {
			gen_string(k, len, s);
			size_t end = true_end(s, len);
			dec_run(s, len, 0, 0, NULL, 0, &r);
			if (r.done != (end != 0) || (end && r.consumed != end) ||
			    !dec_split_invariant(s, len, k & 1 ?
			    SMTP_DATA_NORMALIZE : 0, k % 3)) {
				fprintf(stderr, "exhaustive: len %zu k %lu\n",
				    len, k);
				bad++;
			}
			buf_free(&r.out);
		}
	}
	CHECK_INT(bad, 0);
}

/* The reference normalisation: bare CR or LF -> CRLF, last line ended. */
static void
normalize(const char *s, size_t len, struct buf *b)
{
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\r' && i + 1 < len && s[i + 1] == '\n')
			i++;
		if (s[i] == '\r' || s[i] == '\n')
			buf_append(b, "\r\n", 2);
		else
			buf_putc(b, s[i]);
	}
	if (b->len > 0 && (b->len < 2 || memcmp(b->data + b->len - 2, "\r\n", 2)))
		buf_append(b, "\r\n", 2);
}

/* Encode with cuts everywhere, then decode: norm(x), no flags, exact end. */
static int
roundtrip(const char *s, size_t len, size_t cut)
{
	struct evbuffer *eb = evbuffer_new();
	struct smtp_data_enc e;
	struct dec_result r;
	struct buf want;
	char wire[128];
	size_t wlen;
	int ok;

	smtp_data_enc_init(&e);
	smtp_data_enc_feed(&e, s, cut, eb);
	smtp_data_enc_feed(&e, s + cut, len - cut, eb);
	smtp_data_enc_finish(&e, eb);
	wlen = evbuffer_get_length(eb);
	evbuffer_remove(eb, wire, sizeof(wire));
	evbuffer_free(eb);
	buf_init(&want, 1024);
	normalize(s, len, &want);
	dec_run(wire, wlen, 0, 0, NULL, 0, &r);
	ok = r.done && r.consumed == wlen && r.flags == 0 &&
	    r.out.len == want.len && mem_eq(r.out.data, want.data, want.len)
	    && e.size == wlen;
	buf_free(&want);
	buf_free(&r.out);
	return ok;
}

TEST(test_data_encoder)
{
	static const struct {
		const char *in, *wire;
	} t[] = {
		{ "", ".\r\n" },
		{ "a\r\n", "a\r\n.\r\n" },
		{ "a", "a\r\n.\r\n" },
		{ ".\r\n", "..\r\n.\r\n" },
		{ "a\r\n.b\r\n..\r\n", "a\r\n..b\r\n...\r\n.\r\n" },
		{ "a\n.\n", "a\r\n..\r\n.\r\n" },
		{ "a\r.\r", "a\r\n..\r\n.\r\n" },
		{ "a\r", "a\r\n.\r\n" },
	};
	char s[16];
	int bad = 0;

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct evbuffer *eb = evbuffer_new();
		struct smtp_data_enc e;
		char *w;

		smtp_data_enc_init(&e);
		CHECK_INT(smtp_data_enc_feed(&e, t[i].in, strlen(t[i].in), eb), 0);
		CHECK_INT(smtp_data_enc_finish(&e, eb), 0);
		w = wire_str(eb);
		CHECK_STR(w, t[i].wire);
		free(w);
		evbuffer_free(eb);
	}
	for (size_t len = 0; len <= 7 && bad < 5; len++) {
		unsigned long count = 1ul << (2 * len);
		for (unsigned long k = 0; k < count && bad < 5; k++) {
			gen_string(k, len, s);
			for (size_t cut = 0; cut <= len; cut++) {
				if (!roundtrip(s, len, cut)) {
					fprintf(stderr, "roundtrip: len %zu "
					    "k %lu cut %zu\n", len, k, cut);
					bad++;
					break;
				}
			}
		}
	}
	CHECK_INT(bad, 0);
}

/* The evbuffer variant stops at the end and honours its limit. */
TEST(test_data_evbuffer)
{
	struct evbuffer *in = evbuffer_new();
	struct smtp_data_dec d;
	struct buf out;

	buf_init(&out, 1024);
	smtp_data_dec_init(&d, 0, 0);
	evbuffer_add(in, "ab\r\n.\r\nQUIT\r\n", 13);
	CHECK_INT(smtp_data_dec_evbuffer(&d, in, 3, collect, &out), 0);
	CHECK_INT(evbuffer_get_length(in), 10);
	CHECK_INT(smtp_data_dec_evbuffer(&d, in, 0, collect, &out), 1);
	CHECK_INT(evbuffer_get_length(in), 6);
	CHECK_STR(out.data, "ab\r\n");
	CHECK_INT(d.wire, 7);
	CHECK_INT(d.size, 4);
	CHECK_INT(smtp_data_dec_evbuffer(&d, in, 0, collect, &out), 1);
	CHECK_INT(evbuffer_get_length(in), 6);
	buf_free(&out);
	evbuffer_free(in);
}

int
main(void)
{
	RUN(test_data_decoder);
	RUN(test_data_exhaustive);
	RUN(test_data_encoder);
	RUN(test_data_evbuffer);
	return unit_done("smtp_proto_data");
}
