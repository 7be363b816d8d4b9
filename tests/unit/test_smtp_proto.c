/*
 * Unit tests of lib/smtp_proto (line reader, command/path/parameter
 * splitting, xtext, BDAT) and lib/smtp_reply (table, writer, reader).
 * The DATA decoder/encoder tests are in test_smtp_proto_data.c.
 * Table-driven, bad inputs and both sides of every bound included.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "smtp_proto.h"
#include "unit.h"

/* ---------------- line reader ---------------- */

/*
 * Read every line out of `in` fed in pieces of `piece` bytes; the trace is
 * "OK:<line>:<flags>;" per line (NUL shown as '@'), "LONG;" per too-long.
 */
static void
line_trace(const char *in, size_t inlen, size_t max, size_t piece,
    char *trace, size_t tsz)
{
	struct evbuffer *eb = evbuffer_new();
	struct smtp_line_reader lr;
	char line[4096];
	size_t len, off = 0, tl = 0;
	unsigned flags;
	enum smtp_line_res r;

	smtp_line_init(&lr, max);
	trace[0] = '\0';
	while (off < inlen) {
		size_t k = inlen - off < piece ? inlen - off : piece;
		evbuffer_add(eb, in + off, k);
		off += k;
		while ((r = smtp_line_read(&lr, eb, line, &len, &flags)) !=
		    SMTP_LINE_MORE) {
			if (r == SMTP_LINE_TOO_LONG) {
				tl += snprintf(trace + tl, tsz - tl, "LONG;");
				continue;
			}
			for (size_t i = 0; i < len; i++)
				if (line[i] == '\0')
					line[i] = '@';
			tl += snprintf(trace + tl, tsz - tl, "OK:%s:%u;", line,
			    flags);
		}
	}
	evbuffer_free(eb);
}

TEST(test_line_reader)
{
	static const struct {
		const char *in;
		size_t len;	/* 0: strlen */
		size_t max;
		const char *want;
	} t[] = {
		{ "HELO x\r\n", 0, 2048, "OK:HELO x:0;" },
		{ "HELO x\r\nQUIT\r\n", 0, 2048, "OK:HELO x:0;OK:QUIT:0;" },
		{ "HELO x\n", 0, 2048, "OK:HELO x:1;" },
		{ "\r\n", 0, 2048, "OK::0;" },
		{ "\n", 0, 2048, "OK::1;" },
		{ "A\0B\r\n", 5, 2048, "OK:A@B:2;" },
		{ "A\rB\r\n", 0, 2048, "OK:A\rB:4;" },
		{ "A\r\r\n", 0, 2048, "OK:A\r:4;" },
		{ "partial", 0, 2048, "" },
		/* max 10: 8 chars + CRLF is the bound, 9 chars is past it */
		{ "12345678\r\nQ\r\n", 0, 10, "OK:12345678:0;OK:Q:0;" },
		{ "123456789\r\nQ\r\n", 0, 10, "LONG;OK:Q:0;" },
		{ "123456789\nQ\r\n", 0, 10, "OK:123456789:1;OK:Q:0;" },
		{ "1234567890\nQ\r\n", 0, 10, "LONG;OK:Q:0;" },
		{ "1234567890123456789012345\r\nQ\r\n", 0, 10, "LONG;OK:Q:0;" },
	};
	char trace[512];

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		size_t len = t[i].len ? t[i].len : strlen(t[i].in);
		for (size_t piece = 1; piece <= len; piece++) {
			line_trace(t[i].in, len, t[i].max, piece, trace,
			    sizeof(trace));
			CHECK_STR(trace, t[i].want);
		}
	}
}

/* A 100 KB line is drained in pieces and reported once. */
TEST(test_line_giant)
{
	size_t n = 100000;
	char *in = malloc(n + 16), trace[256];

	memset(in, 'x', n);
	memcpy(in + n, "\r\nQUIT\r\n", 8);
	line_trace(in, n + 8, SMTP_CMD_LINE_MAX, 777, trace, sizeof(trace));
	CHECK_STR(trace, "LONG;OK:QUIT:0;");
	free(in);
}

/* ---------------- commands, paths, parameters ---------------- */

TEST(test_cmd_split)
{
	static const struct {
		const char *in, *verb, *arg;	/* verb NULL: -1 expected */
	} t[] = {
		{ "helo x.example", "HELO", "x.example" },
		{ "QUIT", "QUIT", "" },
		{ "QUIT   ", "QUIT", "" },
		{ "mail  FROM:<a@b>  ", "MAIL", "FROM:<a@b>" },
		{ "STARTTLS", "STARTTLS", "" },
		{ "ABCDEFGHIJKLMNOP x", "ABCDEFGHIJKLMNOP", "x" },	/* 16 */
		{ "ABCDEFGHIJKLMNOPQ x", NULL, NULL },		/* 17 */
		{ "", NULL, NULL },
		{ " HELO", NULL, NULL },
		{ "HE:LO", NULL, NULL },
		{ "GET / HTTP/1.0", "GET", "/ HTTP/1.0" },
		{ "\xc3\xa9HLO", NULL, NULL },
	};
	char line[128], *verb, *arg;

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		snprintf(line, sizeof(line), "%s", t[i].in);
		int r = smtp_cmd_split(line, &verb, &arg);
		if (t[i].verb == NULL) {
			CHECK_INT(r, -1);
			continue;
		}
		CHECK_INT(r, 0);
		CHECK_STR(verb, t[i].verb);
		CHECK_STR(arg, t[i].arg);
	}
}

TEST(test_path_split)
{
	static const struct {
		const char *in, *prefix;
		int lenient;
		const char *path, *params;	/* NULL: an error expected */
		int err;
	} t[] = {
		{ "FROM:<a@b>", "FROM:", 0, "<a@b>", "", 0 },
		{ "from:<>", "FROM:", 0, "<>", "", 0 },
		{ "FROM: <a@b> SIZE=10 BODY=8BITMIME", "FROM:", 0, "<a@b>",
		    "SIZE=10 BODY=8BITMIME", 0 },
		{ "TO:<\"x>y\"@b> NOTIFY=NEVER", "TO:", 0, "<\"x>y\"@b>",
		    "NOTIFY=NEVER", 0 },
		{ "TO:<a\\>b@c>", "TO:", 0, "<a\\>b@c>", "", 0 },
		{ "TO:<@r1,@r2:a@b>", "TO:", 0, "<@r1,@r2:a@b>", "", 0 },
		{ "TO:a@b", "TO:", 0, NULL, NULL, 0 },
		{ "TO:a@b SIZE=1", "TO:", 1, "a@b", "SIZE=1", 0 },
		{ "TO:", "TO:", 1, NULL, NULL, 0 },
		{ "TO:<a@b", "TO:", 0, NULL, NULL, 0 },
		{ "TO:<a@b>x", "TO:", 0, NULL, NULL, 0 },
		{ "TO:<\"a@b>", "TO:", 0, NULL, NULL, 0 },
		{ "FROM:<a@b>", "TO:", 0, NULL, NULL, -2 },
		{ "TO <a@b>", "TO:", 0, NULL, NULL, -2 },
	};
	char line[128], *path, *params;

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		snprintf(line, sizeof(line), "%s", t[i].in);
		int r = smtp_path_split(line, t[i].prefix, t[i].lenient, &path,
		    &params);
		if (t[i].path == NULL) {
			CHECK_INT(r, t[i].err ? t[i].err : -1);
			continue;
		}
		CHECK_INT(r, 0);
		CHECK_STR(path, t[i].path);
		CHECK_STR(params, t[i].params);
	}
}

TEST(test_params)
{
	static const struct {
		const char *in;
		unsigned flags;
		enum smtp_param_err want;
		unsigned n;
	} t[] = {
		{ "", 0, SMTP_PARAM_OK, 0 },
		{ "SIZE=100", 0, SMTP_PARAM_OK, 1 },
		{ "SIZE=100  BODY=8BITMIME SMTPUTF8", 0, SMTP_PARAM_OK, 3 },
		{ "X-FOO-1=a!b~", 0, SMTP_PARAM_OK, 1 },
		{ "-X=1", 0, SMTP_PARAM_SYNTAX, 0 },
		{ "SIZE=", 0, SMTP_PARAM_SYNTAX, 0 },
		{ "SIZE==1", 0, SMTP_PARAM_SYNTAX, 0 },
		{ "SI_ZE=1", 0, SMTP_PARAM_SYNTAX, 0 },
		{ "ORCPT=a\x7f", 0, SMTP_PARAM_SYNTAX, 0 },
		{ "ORCPT=\xc3\xa9", 0, SMTP_PARAM_SYNTAX, 0 },
		{ "ORCPT=\xc3\xa9", SMTP_PARAM_F_UTF8, SMTP_PARAM_OK, 1 },
		{ "SIZE=1 size=2", 0, SMTP_PARAM_DUPLICATE, 1 },
		/* 16 is the bound, 17 is past it */
		{ "A B C D E F G H I J K L M N O P", 0, SMTP_PARAM_OK, 16 },
		{ "A B C D E F G H I J K L M N O P Q", 0, SMTP_PARAM_TOO_MANY,
		    16 },
	};
	char line[128];
	struct smtp_params ps;

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		snprintf(line, sizeof(line), "%s", t[i].in);
		CHECK_INT(smtp_params_parse(line, t[i].flags, &ps), t[i].want);
		CHECK_INT(ps.n, t[i].n);
	}
	snprintf(line, sizeof(line), "size=100 SMTPUTF8 BODY=7BIT");
	CHECK_INT(smtp_params_parse(line, 0, &ps), SMTP_PARAM_OK);
	CHECK(smtp_param_get(&ps, "SIZE") != NULL);
	CHECK_STR(smtp_param_get(&ps, "SIZE")->value, "100");
	CHECK(smtp_param_get(&ps, "SMTPUTF8") != NULL);
	CHECK(smtp_param_get(&ps, "SMTPUTF8")->value == NULL);
	CHECK(smtp_param_get(&ps, "ENVID") == NULL);
}

TEST(test_xtext)
{
	static const struct {
		const char *in, *out;	/* out NULL: bad */
	} t[] = {
		{ "", "" },
		{ "abc", "abc" },
		{ "rfc822;a+2Bb@c", "rfc822;a+b@c" },
		{ "a+3Db", "a=b" },
		{ "a+3db", "a=b" },		/* lower case accepted */
		{ "+20+7E", " ~" },
		{ "a+", NULL },
		{ "a+2", NULL },
		{ "a+G0", NULL },
		{ "a+00", NULL },
		{ "a=b", NULL },
		{ "a b", NULL },
		{ "\x01", NULL },
	};
	char out[64];
	struct buf b;

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		long r = smtp_xtext_decode(t[i].in, out, sizeof(out));
		CHECK_INT(smtp_xtext_valid(t[i].in), t[i].out != NULL);
		if (t[i].out == NULL) {
			CHECK_INT(r, -1);
			continue;
		}
		CHECK_INT(r, (long)strlen(t[i].out));
		CHECK_STR(out, t[i].out);
	}
	/* output bound: 3 bytes + NUL fit in 4, not in 3 */
	CHECK_INT(smtp_xtext_decode("abc", out, 4), 3);
	CHECK_INT(smtp_xtext_decode("abc", out, 3), -1);
	/* encode: every byte 1..255 survives a round trip */
	buf_init(&b, 4096);
	for (int c = 1; c < 256; c++) {
		char one = (char)c;
		CHECK_INT(smtp_xtext_encode(&b, &one, 1), 0);
	}
	CHECK(smtp_xtext_valid(b.data));
	CHECK_INT(smtp_xtext_decode(b.data, out, sizeof(out)), -1); /* too big */
	{
		char big[300];
		CHECK_INT(smtp_xtext_decode(b.data, big, sizeof(big)), 255);
		for (int c = 1; c < 256; c++)
			CHECK_INT((unsigned char)big[c - 1], c);
	}
	/* what a decoded ENVID / ORCPT may hold: printable text and space;
	 * 8-bit only for UTF-8 mail; never a control byte */
	CHECK_INT(smtp_dsn_text_ok("rfc822;a b@c.test ~", 0), 1);
	CHECK_INT(smtp_dsn_text_ok("", 0), 1);
	CHECK_INT(smtp_dsn_text_ok("a\rb", 1), 0);
	CHECK_INT(smtp_dsn_text_ok("a\x07", 1), 0);
	CHECK_INT(smtp_dsn_text_ok("a\x1f", 1), 0);
	CHECK_INT(smtp_dsn_text_ok("a\x7f", 1), 0);
	CHECK_INT(smtp_dsn_text_ok("caf\xc3\xa9", 0), 0);
	CHECK_INT(smtp_dsn_text_ok("caf\xc3\xa9", 1), 1);
	buf_reset(&b);
	CHECK_INT(smtp_xtext_encode(&b, "a+b=c d", 7), 0);
	CHECK_STR(b.data, "a+2Bb+3Dc+20d");
	buf_free(&b);
	buf_init(&b, 4);	/* the cap is honoured */
	CHECK_INT(smtp_xtext_encode(&b, "a=b", 3), -1);
	buf_free(&b);
}

TEST(test_bdat_parse)
{
	static const struct {
		const char *in;
		uint64_t max;
		int want;
		uint64_t size;
		int last;
	} t[] = {
		{ "0", 100, 0, 0, 0 },
		{ "100", 100, 0, 100, 0 },
		{ "101", 100, -2, 101, 0 },
		{ "100 LAST", 100, 0, 100, 1 },
		{ "5 last", 100, 0, 5, 1 },
		{ "5  LAST  ", 100, 0, 5, 1 },
		{ "5 LASTX", 100, -1, 0, 0 },
		{ "5 FIRST", 100, -1, 0, 0 },
		{ "-5", 100, -1, 0, 0 },
		{ "+5", 100, -1, 0, 0 },
		{ "", 100, -1, 0, 0 },
		{ "LAST", 100, -1, 0, 0 },
		{ "5x", 100, -1, 0, 0 },
		{ "99999999999999999999", UINT64_MAX, -2, 0, 0 },	/* 20 */
		{ "999999999999999999999", UINT64_MAX, -1, 0, 0 },	/* 21 */
		{ "1099511627776", UINT64_MAX, 0, (uint64_t)1 << 40, 0 },
		{ "1099511627777", UINT64_MAX, -2, 0, 0 },
	};
	uint64_t size;
	int last;

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		size = 0;
		last = 0;
		int r = smtp_bdat_parse(t[i].in, t[i].max, &size, &last);
		CHECK_INT(r, t[i].want);
		if (r == 0) {
			CHECK_INT(size, t[i].size);
			CHECK_INT(last, t[i].last);
		}
	}
}

static void
collect(void *arg, const char *p, size_t n)
{
	struct buf *b = arg;

	buf_append(b, p, n);
}

TEST(test_bdat_take)
{
	struct evbuffer *in = evbuffer_new();
	struct buf got;
	uint64_t left = 10;

	buf_init(&got, 1024);
	evbuffer_add(in, "abcd", 4);
	CHECK_INT(smtp_bdat_take(&left, in, collect, &got), 4);
	CHECK_INT(left, 6);
	evbuffer_add(in, "efghijQUIT\r\n", 12);
	CHECK_INT(smtp_bdat_take(&left, in, collect, &got), 6);
	CHECK_INT(left, 0);
	CHECK_STR(got.data, "abcdefghij");
	CHECK_INT(evbuffer_get_length(in), 6);
	left = 3;
	CHECK_INT(smtp_bdat_take(&left, in, NULL, NULL), 3);
	CHECK_INT(evbuffer_get_length(in), 3);
	buf_free(&got);
	evbuffer_free(in);
}

/* ---------------- replies ---------------- */

static char *
reply_str(struct evbuffer *eb)
{
	size_t n = evbuffer_get_length(eb);
	char *s = malloc(n + 1);

	evbuffer_remove(eb, s, n);
	s[n] = '\0';
	return s;
}

TEST(test_reply_fmt)
{
	struct evbuffer *eb = evbuffer_new();
	char *s, big[2000];

	smtp_reply_fmt(eb, 250, "2.0.0", "Ok: queued as %s", "ABC");
	s = reply_str(eb);
	CHECK_STR(s, "250 2.0.0 Ok: queued as ABC\r\n");
	free(s);
	smtp_reply_fmt(eb, 220, NULL, "mx ESMTP");
	s = reply_str(eb);
	CHECK_STR(s, "220 mx ESMTP\r\n");
	free(s);
	smtp_reply_fmt(eb, 250, NULL, "mx\nPIPELINING\nSIZE 10\n");
	s = reply_str(eb);
	CHECK_STR(s, "250-mx\r\n250-PIPELINING\r\n250 SIZE 10\r\n");
	free(s);
	/* a peer's CR or control bytes never reach the wire */
	smtp_reply_fmt(eb, 550, "5.1.1", "<%s>: unknown\nsee docs", "a\rb\x01\xff");
	s = reply_str(eb);
	CHECK_STR(s, "550-5.1.1 <a?b?" "?>: unknown\r\n550 5.1.1 see docs\r\n");
	free(s);
	/* an LF in an argument makes one more line, each still prefixed */
	smtp_reply_fmt(eb, 451, "4.3.0", "%s", "x\r\n250 2.0.0 fake");
	s = reply_str(eb);
	CHECK_STR(s, "451-4.3.0 x?\r\n451 4.3.0 250 2.0.0 fake\r\n");
	free(s);
	smtp_reply_id(eb, RPL_TOO_MANY_ERRORS);
	s = reply_str(eb);
	CHECK_STR(s, "421 4.7.0 Error: too many errors, closing connection\r\n");
	free(s);
	/* a long text is cut at 512 bytes with its CRLF */
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	smtp_reply_fmt(eb, 250, "2.0.0", "%s", big);
	s = reply_str(eb);
	CHECK_INT(strlen(s), SMTP_REPLY_LINE_MAX);
	CHECK(strncmp(s + SMTP_REPLY_LINE_MAX - 2, "\r\n", 2) == 0);
	free(s);
	/* at most 100 lines */
	for (int i = 0; i < 300; i++)
		big[i] = i % 2 ? '\n' : 'a';
	big[300] = '\0';
	smtp_reply_fmt(eb, 250, NULL, "%s", big);
	s = reply_str(eb);
	{
		int lines = 0;
		for (char *p = s; *p; p++)
			lines += *p == '\n';
		CHECK_INT(lines, SMTP_REPLY_LINES_MAX);
		CHECK(strstr(s, "\r\n250 a\r\n") != NULL);
	}
	free(s);
	/* every id has a row whose class matches its code */
	for (int id = 0; id < RPL__COUNT; id++) {
		const struct smtp_reply_def *d = smtp_reply_def(id);
		CHECK(d->code >= 200 && d->code < 600);
		CHECK(d->esc == NULL || d->esc[0] - '0' == d->code / 100);
	}
	evbuffer_free(eb);
}

TEST(test_reply_parse)
{
	static const struct {
		const char *in;
		enum smtp_rr_res res;
		enum smtp_rr_err err;
		int code;
		const char *esc, *text;
		unsigned nlines;
	} t[] = {
		{ "250 2.0.0 Ok\r\n", SMTP_RR_DONE, 0, 250, "2.0.0", "Ok", 1 },
		{ "220 mx ESMTP\r\n", SMTP_RR_DONE, 0, 220, "", "mx ESMTP", 1 },
		{ "250\r\n", SMTP_RR_DONE, 0, 250, "", "", 1 },
		{ "250 ok\n", SMTP_RR_DONE, 0, 250, "", "ok", 1 },
		{ "250-mx\r\n250-PIPELINING\r\n250 SIZE 1\r\n", SMTP_RR_DONE,
		    0, 250, "", "mx\nPIPELINING\nSIZE 1", 3 },
		{ "550-5.1.1 a\r\n550 5.1.1 b\r\n", SMTP_RR_DONE, 0, 550,
		    "5.1.1", "a\nb", 2 },
		{ "550 4.1.1 wrong class\r\n", SMTP_RR_DONE, 0, 550, "",
		    "4.1.1 wrong class", 1 },
		{ "250 2.1234.0 x\r\n", SMTP_RR_DONE, 0, 250, "",
		    "2.1234.0 x", 1 },
		{ "250-a\r\n", SMTP_RR_MORE, 0, 0, NULL, NULL, 0 },
		{ "25", SMTP_RR_MORE, 0, 0, NULL, NULL, 0 },
		{ "25\r\n", SMTP_RR_ERROR, SMTP_RR_E_SYNTAX, 0, NULL, NULL, 0 },
		{ "hello\r\n", SMTP_RR_ERROR, SMTP_RR_E_SYNTAX, 0, NULL, NULL, 0 },
		{ "650 x\r\n", SMTP_RR_ERROR, SMTP_RR_E_SYNTAX, 0, NULL, NULL, 0 },
		{ "260 x\r\n", SMTP_RR_ERROR, SMTP_RR_E_SYNTAX, 0, NULL, NULL, 0 },
		{ "250x\r\n", SMTP_RR_ERROR, SMTP_RR_E_SYNTAX, 0, NULL, NULL, 0 },
		{ "250-a\r\n251 b\r\n", SMTP_RR_ERROR, SMTP_RR_E_CODE_MISMATCH,
		    0, NULL, NULL, 0 },
		{ "250 a\0b\r\n", SMTP_RR_ERROR, SMTP_RR_E_NUL, 0, NULL, NULL,
		    0 },
	};
	struct smtp_reply r;
	enum smtp_rr_err err;

	smtp_reply_init(&r);
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		size_t len = strlen(t[i].in);
		if (t[i].err == SMTP_RR_E_NUL)
			len = 9;
		CHECK_INT(smtp_reply_parse(t[i].in, len, &r, &err), t[i].res);
		CHECK_INT(err, t[i].err);
		if (t[i].res != SMTP_RR_DONE)
			continue;
		CHECK_INT(r.code, t[i].code);
		CHECK_STR(r.esc, t[i].esc);
		CHECK_STR(r.text.data, t[i].text);
		CHECK_INT(r.nlines, t[i].nlines);
	}
	smtp_reply_free(&r);
}

/* Bounds: 100 lines pass, 101 do not; a 2048-byte line passes, 2049 not. */
/* A daemon's own reply lines split for srv_reply: code, esc, text. */
TEST(test_reply_split)
{
	static const struct {
		const char *line;
		int ok, code;
		const char *esc, *text;
	} t[] = {
		{ "550 5.1.1 <a@b>: User unknown", 0, 550, "5.1.1", "<a@b>: User unknown" },
		{ "250 2.0.0 Ok", 0, 250, "2.0.0", "Ok" },
		{ "250 2.0.0", 0, 250, "2.0.0", "" },
		{ "354 End data with <CR><LF>.<CR><LF>", 0, 354, "", "End data with <CR><LF>.<CR><LF>" },
		{ "250 Ok", 0, 250, "", "Ok" },
		{ "221", 0, 221, "", "" },
		{ "451 4.3.0 Error: x", 0, 451, "4.3.0", "Error: x" },
		{ "250 5.1.1 wrong class", 0, 250, "", "5.1.1 wrong class" },
		{ "250 2.1234.0 too long", 0, 250, "", "2.1234.0 too long" },
		{ "250 2.0.0x glued", 0, 250, "", "2.0.0x glued" },
		{ "599 5.999.999 bounds", 0, 599, "5.999.999", "bounds" },
		{ "199 x", -1, 0, NULL, NULL },
		{ "600 x", -1, 0, NULL, NULL },
		{ "25 x", -1, 0, NULL, NULL },
		{ "2500 x", -1, 0, NULL, NULL },
		{ "25a x", -1, 0, NULL, NULL },
		{ "", -1, 0, NULL, NULL },
		{ "Error: no code", -1, 0, NULL, NULL },
	};
	char esc[SMTP_ESC_MAX + 1];
	const char *text;
	int code;

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		int r = smtp_reply_split(t[i].line, &code, esc, &text);

		CHECK_INT(r, t[i].ok);
		if (r < 0)
			continue;
		CHECK_INT(code, t[i].code);
		CHECK_STR(esc, t[i].esc);
		CHECK_STR(text, t[i].text);
	}
}

TEST(test_reply_bounds)
{
	struct buf in;
	struct smtp_reply r;
	enum smtp_rr_err err;
	char line[4000];

	smtp_reply_init(&r);
	for (int n = 100; n <= 101; n++) {
		buf_init(&in, 1 << 20);
		for (int i = 1; i < n; i++)
			buf_puts(&in, "250-x\r\n");
		buf_puts(&in, "250 y\r\n");
		CHECK_INT(smtp_reply_parse(in.data, in.len, &r, &err),
		    n == 100 ? SMTP_RR_DONE : SMTP_RR_ERROR);
		CHECK_INT(err, n == 100 ? SMTP_RR_E_NONE : SMTP_RR_E_TOO_MANY);
		buf_free(&in);
	}
	for (size_t n = SMTP_REPLY_LINE_READ_MAX; n <= SMTP_REPLY_LINE_READ_MAX + 1;
	    n++) {
		memset(line, 'x', n - 2);
		memcpy(line, "250 ", 4);
		memcpy(line + n - 2, "\r\n", 2);
		CHECK_INT(smtp_reply_parse(line, n, &r, &err),
		    n == SMTP_REPLY_LINE_READ_MAX ? SMTP_RR_DONE : SMTP_RR_ERROR);
	}
	/* two replies in one buffer, fed a byte at a time */
	{
		const char *two = "250-a\r\n250 2.0.0 b\r\n354 go\r\n";
		struct evbuffer *eb = evbuffer_new();
		struct smtp_reply_reader rr;
		int done = 0;

		smtp_reply_reader_init(&rr);
		for (const char *p = two; *p; p++) {
			evbuffer_add(eb, p, 1);
			if (smtp_reply_read(&rr, eb, &r) == SMTP_RR_DONE) {
				done++;
				CHECK_INT(r.code, done == 1 ? 250 : 354);
			}
		}
		CHECK_INT(done, 2);
		CHECK_STR(r.text.data, "go");
		evbuffer_free(eb);
	}
	smtp_reply_free(&r);
}

int
main(void)
{
	RUN(test_line_reader);
	RUN(test_line_giant);
	RUN(test_cmd_split);
	RUN(test_path_split);
	RUN(test_params);
	RUN(test_xtext);
	RUN(test_bdat_parse);
	RUN(test_bdat_take);
	RUN(test_reply_fmt);
	RUN(test_reply_parse);
	RUN(test_reply_split);
	RUN(test_reply_bounds);
	return unit_done("smtp_proto");
}
