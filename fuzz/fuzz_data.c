/*
 * Fuzz target for the DATA decoder and encoder of lib/smtp_proto. The
 * first two bytes choose the mode (normalize or not) and a size limit,
 * the rest is what a client sends after 354. Checked: the decoder gives
 * the same output, flags and end whatever the chunking (random pieces
 * from a generator seeded by the input); the end is found exactly at the
 * first CRLF.CRLF (the data start counting as after a CRLF) and nowhere
 * else; and for the encoder, decode(encode(x)) ends exactly at the end of
 * the wire form, with no bare CR or LF flagged, giving x normalized (bare
 * CR/LF -> CRLF, the last line ended).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "smtp_proto.h"

#define MUST(c) do { if (!(c)) __builtin_trap(); } while (0)

struct res {
	struct buf out;
	unsigned flags;
	size_t consumed;
	int done;
};

static void
collect(void *arg, const char *p, size_t n)
{
	MUST(n > 0);
	MUST(buf_append(arg, p, n) == 0);
}

static void
decode(const uint8_t *p, size_t n, unsigned mode, uint64_t max,
    uint32_t seed, struct res *r)
{
	struct smtp_data_dec d;
	size_t off = 0, k;

	smtp_data_dec_init(&d, mode, max);
	buf_init(&r->out, 1 << 22);
	r->done = 0;
	while (off < n && !r->done) {
		k = n - off;
		if (seed != 0) {	/* xorshift: a random piece size */
			seed ^= seed << 13;
			seed ^= seed >> 17;
			seed ^= seed << 5;
			k = seed % 9 + 1 < k ? seed % 9 + 1 : k;
		}
		off += smtp_data_dec_feed(&d, (const char *)p + off, k, collect,
		    &r->out, &r->done);
	}
	r->consumed = off;
	r->flags = d.flags;
	MUST(d.wire == off);
	MUST(max == 0 || r->out.len <= max);
}

/* Offset just past the first CRLF.CRLF of CRLF+p, or 0. */
static size_t
true_end(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] != '.' || i + 2 >= n + 0 || p[i + 1] != '\r' ||
		    p[i + 2] != '\n')
			continue;
		if (i == 0 || (i >= 2 && p[i - 2] == '\r' && p[i - 1] == '\n'))
			return i + 3;
	}
	return 0;
}

static void
normalize(const uint8_t *s, size_t n, struct buf *b)
{
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\r' && i + 1 < n && s[i + 1] == '\n')
			i++;
		if (s[i] == '\r' || s[i] == '\n')
			buf_append(b, "\r\n", 2);
		else
			buf_putc(b, (char)s[i]);
	}
	if (b->len > 0 && (b->len < 2 || memcmp(b->data + b->len - 2, "\r\n", 2)))
		buf_append(b, "\r\n", 2);
}

static void
roundtrip(const uint8_t *p, size_t n, size_t cut)
{
	struct evbuffer *eb = evbuffer_new();
	struct smtp_data_enc e;
	struct buf want;
	struct res r;
	unsigned char *wire;
	size_t wlen;

	smtp_data_enc_init(&e);
	MUST(smtp_data_enc_feed(&e, (const char *)p, cut, eb) == 0);
	MUST(smtp_data_enc_feed(&e, (const char *)p + cut, n - cut, eb) == 0);
	MUST(smtp_data_enc_finish(&e, eb) == 0);
	wlen = evbuffer_get_length(eb);
	MUST(e.size == wlen);
	wire = evbuffer_pullup(eb, -1);
	decode(wire, wlen, 0, 0, 0, &r);
	buf_init(&want, 1 << 22);
	normalize(p, n, &want);
	MUST(r.done && r.consumed == wlen && (r.flags & ~SMTP_DATA_F_NUL) == 0);
	MUST(r.out.len == want.len);
	MUST(want.len == 0 || memcmp(r.out.data, want.data, want.len) == 0);
	buf_free(&want);
	buf_free(&r.out);
	evbuffer_free(eb);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct res a, b;
	unsigned mode;
	uint64_t max;
	size_t end;

	if (size < 2 || size > 65536)
		return 0;
	mode = data[0] & 1 ? SMTP_DATA_NORMALIZE : 0;
	max = data[1] < 128 ? 0 : (uint64_t)(data[1] - 128);
	data += 2;
	size -= 2;
	decode(data, size, mode, max, 0, &a);
	decode(data, size, mode, max, (uint32_t)size * 2654435761u | 1, &b);
	MUST(a.done == b.done && a.consumed == b.consumed &&
	    a.flags == b.flags && a.out.len == b.out.len);
	MUST(a.out.len == 0 || memcmp(a.out.data, b.out.data, a.out.len) == 0);
	end = true_end(data, size);
	MUST(a.done == (end != 0));
	MUST(!a.done || a.consumed == end);
	buf_free(&a.out);
	buf_free(&b.out);
	roundtrip(data, size, size / 3);
	return 0;
}
