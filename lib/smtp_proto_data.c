/*
 * Protocol engine, the message body: the server's streaming DATA decoder
 * (dot-unstuffing, end of data only at CRLF.CRLF, bare LF/CR flagged
 * against SMTP smuggling) and the client's DATA encoder (dot-stuffing,
 * line ends made CRLF, the final dot). Both are byte-level state machines
 * whose whole state is in their struct, so chunk boundaries never matter.
 * See smtp_proto.h.
 */
#include <string.h>

#include <event2/buffer.h>

#include "smtp_proto.h"

/* Decoder states. BOL is "just after a CRLF" (or the start of the data). */
enum { D_BOL, D_TEXT, D_CR, D_DOT, D_DOT_CR, D_DONE };

/* Encoder states. */
enum { E_BOL, E_TEXT, E_CR };

#define STAGE_SIZE 4096

/* Output staging, so the sink sees runs rather than single bytes. */
struct stage {
	char b[STAGE_SIZE];
	size_t n;
	smtp_data_sink sink;
	void *arg;
};

static void
stage_flush(struct stage *o)
{
	if (o->n > 0 && o->sink != NULL)
		o->sink(o->arg, o->b, o->n);
	o->n = 0;
}

static void
stage_add(struct stage *o, const char *p, size_t n)
{
	if (o->n + n > sizeof(o->b)) {
		stage_flush(o);
		if (n >= sizeof(o->b)) {
			if (o->sink != NULL)
				o->sink(o->arg, p, n);
			return;
		}
	}
	memcpy(o->b + o->n, p, n);
	o->n += n;
}

/* ---------------- decoder ---------------- */

void
smtp_data_dec_init(struct smtp_data_dec *d, unsigned mode, uint64_t max)
{
	memset(d, 0, sizeof(*d));
	d->state = D_BOL;
	d->mode = mode;
	d->max = max;
}

/*
 * Decoded bytes out, counted; past max nothing more goes out. The cut is
 * at an exact byte count, so what the sink sees never depends on how the
 * input was split.
 */
static void
dec_put(struct smtp_data_dec *d, struct stage *o, const char *p, size_t n)
{
	uint64_t room;

	if (!(d->flags & SMTP_DATA_F_TOO_BIG)) {
		room = d->max == 0 ? n : d->max - d->size;
		if (room < n) {
			d->flags |= SMTP_DATA_F_TOO_BIG;
			n = (size_t)room;	/* output what still fits */
		}
		stage_add(o, p, n);
		d->size += n;
		return;
	}
	d->size += n;
}

/* One byte in the middle of a line. */
static void
dec_text_byte(struct smtp_data_dec *d, struct stage *o, char c)
{
	d->state = D_TEXT;
	if (c == '\r') {
		d->state = D_CR;
	} else if (c == '\n') {
		d->flags |= SMTP_DATA_F_BARE_LF;
		if (d->mode & SMTP_DATA_NORMALIZE)
			dec_put(d, o, "\r\n", 2);
		else
			dec_put(d, o, "\n", 1);
	} else {
		if (c == '\0')
			d->flags |= SMTP_DATA_F_NUL;
		dec_put(d, o, &c, 1);
	}
}

static void
dec_step(struct smtp_data_dec *d, struct stage *o, char c)
{
	switch (d->state) {
	case D_BOL:
		if (c == '.')
			d->state = D_DOT;
		else
			dec_text_byte(d, o, c);
		break;
	case D_CR:
		if (c == '\n') {
			dec_put(d, o, "\r\n", 2);
			d->state = D_BOL;
			break;
		}
		d->flags |= SMTP_DATA_F_BARE_CR;
		dec_put(d, o, "\r", 1);
		dec_text_byte(d, o, c);
		break;
	case D_DOT:		/* the leading dot is dropped (4.5.2) */
		if (c == '\r')
			d->state = D_DOT_CR;
		else
			dec_text_byte(d, o, c);
		break;
	case D_DOT_CR:
		if (c == '\n') {
			d->state = D_DONE;
			break;
		}
		d->state = D_CR;	/* ".<CR>x": a dotted line, bare CR */
		dec_step(d, o, c);
		break;
	default:		/* D_TEXT */
		dec_text_byte(d, o, c);
		break;
	}
}

/* Length of the run of plain bytes (no CR, LF, NUL) at p. */
static size_t
plain_run(const char *p, size_t n)
{
	size_t i = 0;

	while (i < n && p[i] != '\r' && p[i] != '\n' && p[i] != '\0')
		i++;
	return i;
}

size_t
smtp_data_dec_feed(struct smtp_data_dec *d, const char *p, size_t n,
    smtp_data_sink sink, void *arg, int *donep)
{
	struct stage o;
	size_t i = 0, run;

	o.n = 0;
	o.sink = sink;
	o.arg = arg;
	while (i < n && d->state != D_DONE) {
		if (d->state == D_TEXT && (run = plain_run(p + i, n - i)) > 0) {
			dec_put(d, &o, p + i, run);
			i += run;
			continue;
		}
		dec_step(d, &o, p[i++]);
	}
	stage_flush(&o);
	d->wire += i;
	*donep = d->state == D_DONE;
	return i;
}

int
smtp_data_dec_evbuffer(struct smtp_data_dec *d, struct evbuffer *in,
    size_t limit, smtp_data_sink sink, void *arg)
{
	struct evbuffer_iovec v;
	size_t want, total = 0, k, used;
	int done = d->state == D_DONE;

	want = evbuffer_get_length(in);
	if (limit != 0 && want > limit)
		want = limit;
	while (!done && total < want) {
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		k = v.iov_len < want - total ? v.iov_len : want - total;
		used = smtp_data_dec_feed(d, v.iov_base, k, sink, arg, &done);
		evbuffer_drain(in, used);
		total += used;
	}
	return done;
}

/* ---------------- encoder ---------------- */

struct enc_out {
	struct evbuffer *out;
	int err;
	uint64_t n;
};

static void
enc_sink(void *arg, const char *p, size_t n)
{
	struct enc_out *eo = arg;

	if (evbuffer_add(eo->out, p, n) < 0)
		eo->err = -1;
	eo->n += n;
}

void
smtp_data_enc_init(struct smtp_data_enc *e)
{
	e->state = E_BOL;
	e->size = 0;
}

static void
enc_step(struct smtp_data_enc *e, struct stage *o, char c)
{
	switch (e->state) {
	case E_CR:		/* CRLF, or a bare CR made a line end */
		stage_add(o, "\r\n", 2);
		e->state = E_BOL;
		if (c == '\n')
			return;
		enc_step(e, o, c);
		return;
	case E_BOL:
		if (c == '.') {
			stage_add(o, "..", 2);
			e->state = E_TEXT;
			return;
		}
		/* FALLTHROUGH */
	default:
		if (c == '\r') {
			e->state = E_CR;
		} else if (c == '\n') {
			stage_add(o, "\r\n", 2);	/* bare LF */
			e->state = E_BOL;
		} else {
			stage_add(o, &c, 1);
			e->state = E_TEXT;
		}
		return;
	}
}

/* Length of the run of bytes other than CR and LF at p. */
static size_t
text_run(const char *p, size_t n)
{
	const char *cr = memchr(p, '\r', n), *lf = memchr(p, '\n', n);
	const char *end = p + n;

	if (cr != NULL && cr < end)
		end = cr;
	if (lf != NULL && lf < end)
		end = lf;
	return (size_t)(end - p);
}

int
smtp_data_enc_feed(struct smtp_data_enc *e, const char *p, size_t n,
    struct evbuffer *out)
{
	struct enc_out eo = { out, 0, 0 };
	struct stage o;
	size_t i = 0, run;

	o.n = 0;
	o.sink = enc_sink;
	o.arg = &eo;
	while (i < n) {
		if (e->state == E_TEXT && (run = text_run(p + i, n - i)) > 0) {
			stage_add(&o, p + i, run);
			i += run;
			continue;
		}
		enc_step(e, &o, p[i++]);
	}
	stage_flush(&o);
	e->size += eo.n;
	return eo.err;
}

int
smtp_data_enc_finish(struct smtp_data_enc *e, struct evbuffer *out)
{
	struct enc_out eo = { out, 0, 0 };
	struct stage o;

	o.n = 0;
	o.sink = enc_sink;
	o.arg = &eo;
	if (e->state != E_BOL)
		stage_add(&o, "\r\n", 2);
	stage_add(&o, ".\r\n", 3);
	stage_flush(&o);
	e->state = E_BOL;
	e->size += eo.n;
	return eo.err;
}
