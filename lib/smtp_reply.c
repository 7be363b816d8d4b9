/*
 * Protocol engine, replies: the one table of reply ids (code, enhanced
 * status code, text), so a rejection reads the same in smtpd, queued and
 * lmtpd (OpenSMTPD's esc.c idea); the reply writer with its multi-line
 * form and sanitising; and the client side's bounded reply reader. See
 * smtp_proto.h.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "log.h"
#include "smtp_proto.h"

/* Indexed by enum smtp_reply_id; the order must follow the enum. */
static const struct smtp_reply_def reply_table[RPL__COUNT] = {
	[RPL_OK] =		{ 250, "2.0.0", "Ok" },
	[RPL_DATA_GO] =		{ 354, NULL, "End data with <CR><LF>.<CR><LF>" },
	[RPL_BYE] =		{ 221, "2.0.0", "Bye" },
	[RPL_NOOP] =		{ 250, "2.0.0", "Ok" },
	[RPL_RSET] =		{ 250, "2.0.0", "Ok" },
	[RPL_VRFY] =		{ 252, "2.0.0",
	    "Cannot VRFY user, but will accept message and attempt delivery" },
	[RPL_STARTTLS_GO] =	{ 220, "2.0.0", "Ready to start TLS" },
	[RPL_BAD_SEQUENCE] =	{ 503, "5.5.1", "Bad sequence of commands" },
	[RPL_NEED_MAIL] =	{ 503, "5.5.1", "Error: need MAIL command" },
	[RPL_NEED_RCPT] =	{ 503, "5.5.1", "Error: need RCPT command" },
	[RPL_NESTED_MAIL] =	{ 503, "5.5.1", "Error: nested MAIL command" },
	[RPL_NEED_HELO] =	{ 503, "5.5.1", "Error: send HELO/EHLO first" },
	[RPL_SYNTAX] =		{ 501, "5.5.4", "Syntax error in parameters or arguments" },
	[RPL_SYNTAX_CMD] =	{ 500, "5.5.2", "Syntax error, command unrecognized" },
	[RPL_UNKNOWN_CMD] =	{ 500, "5.5.2", "Error: command not recognized" },
	[RPL_LINE_TOO_LONG] =	{ 500, "5.5.2", "Error: line too long" },
	[RPL_NUL] =		{ 500, "5.5.2", "Error: NUL byte in command" },
	[RPL_BARE_LF] =		{ 500, "5.5.2", "Error: bare <LF> received" },
	[RPL_DATA_BARE_LF] =	{ 550, "5.5.2",
	    "Error: message contains bare <LF> or <CR>" },
	[RPL_NOT_IMPL] =	{ 502, "5.5.1", "Error: command not implemented" },
	[RPL_EXPN_DISABLED] =	{ 502, "5.5.1", "Error: EXPN is disabled" },
	[RPL_PARAM_NOT_OFFERED] = { 555, "5.5.4", "Error: parameter not recognized" },
	[RPL_BAD_SENDER_SYNTAX] = { 501, "5.1.7", "Bad sender address syntax" },
	[RPL_BAD_RCPT_SYNTAX] =	{ 501, "5.1.3", "Bad recipient address syntax" },
	[RPL_TOO_MANY_RCPTS] =	{ 452, "4.5.3", "Error: too many recipients" },
	[RPL_MSG_TOO_BIG] =	{ 552, "5.3.4", "Error: message size exceeds limit" },
	[RPL_MSG_TOO_BIG_TEMP] = { 452, "4.3.4",
	    "Error: message size exceeds available space" },
	[RPL_NO_VALID_RCPTS] =	{ 554, "5.5.1", "Error: no valid recipients" },
	[RPL_TEMP_FAIL] =	{ 451, "4.3.0", "Error: local error, try again later" },
	[RPL_NO_SPACE] =	{ 452, "4.3.1", "Error: insufficient system storage" },
	[RPL_SHUTDOWN] =	{ 421, "4.3.2", "Service shutting down, closing connection" },
	[RPL_TIMEOUT] =		{ 421, "4.4.2", "Error: timeout exceeded, closing connection" },
	[RPL_TOO_MANY_ERRORS] =	{ 421, "4.7.0", "Error: too many errors, closing connection" },
	[RPL_USER_UNKNOWN] =	{ 550, "5.1.1", "User unknown" },
	[RPL_RELAY_DENIED] =	{ 554, "5.7.1", "Relay access denied" },
	[RPL_LOOP] =		{ 554, "5.4.6", "Too many hops, mail loop" },
	[RPL_AUTH_REQUIRED] =	{ 530, "5.7.0", "Authentication required" },
	[RPL_TLS_REQUIRED] =	{ 530, "5.7.0", "Must issue a STARTTLS command first" },
};

const struct smtp_reply_def *
smtp_reply_def(enum smtp_reply_id id)
{
	if ((unsigned)id >= RPL__COUNT || reply_table[id].code == 0)
		fatal("smtp_reply_def: bad reply id %d", (int)id);
	return &reply_table[id];
}

/* One reply line: "CODE[-| ][ESC ]text\r\n", cut and sanitised. */
static void
reply_line(struct evbuffer *out, int code, char sep, const char *esc,
    const char *text, size_t n)
{
	char line[SMTP_REPLY_LINE_MAX + 1];
	int len;

	len = snprintf(line, sizeof(line), "%d%c%s%s", code, sep,
	    esc ? esc : "", esc && n > 0 ? " " : "");
	if (len < 0 || (size_t)len > SMTP_REPLY_LINE_MAX - 2)
		len = SMTP_REPLY_LINE_MAX - 2;	/* absurd esc: cut */
	for (size_t i = 0; i < n && len < SMTP_REPLY_LINE_MAX - 2; i++) {
		unsigned char c = (unsigned char)text[i];
		line[len++] = (c == '\t' || (c >= 32 && c < 127)) ? (char)c : '?';
	}
	line[len++] = '\r';
	line[len++] = '\n';
	evbuffer_add(out, line, (size_t)len);
}

static void
reply_text(struct evbuffer *out, int code, const char *esc, const char *t)
{
	size_t tlen = strlen(t), n;
	unsigned lines = 0;
	const char *nl;

	if (tlen > 0 && t[tlen - 1] == '\n')
		tlen--;		/* a trailing newline adds no empty line */
	for (;;) {
		nl = memchr(t, '\n', tlen);
		n = nl ? (size_t)(nl - t) : tlen;
		if (nl == NULL || ++lines >= SMTP_REPLY_LINES_MAX) {
			reply_line(out, code, ' ', esc, t, n);
			return;
		}
		reply_line(out, code, '-', esc, t, n);
		tlen -= n + 1;
		t = nl + 1;
	}
}

void
smtp_reply_vfmt(struct evbuffer *out, int code, const char *esc,
    const char *fmt, va_list ap)
{
	char small[1024], *text = small;
	va_list cp;
	int n;

	if (code < 200 || code > 599)
		fatal("smtp_reply: bad reply code %d", code);
	va_copy(cp, ap);
	n = vsnprintf(small, sizeof(small), fmt, cp);
	va_end(cp);
	if (n < 0)
		fatal("smtp_reply: bad format");
	if ((size_t)n >= sizeof(small) && vasprintf(&text, fmt, ap) < 0)
		fatal("smtp_reply: out of memory");
	reply_text(out, code, esc, text);
	if (text != small)
		free(text);
}

void
smtp_reply_fmt(struct evbuffer *out, int code, const char *esc,
    const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	smtp_reply_vfmt(out, code, esc, fmt, ap);
	va_end(ap);
}

void
smtp_reply_id(struct evbuffer *out, enum smtp_reply_id id)
{
	const struct smtp_reply_def *d = smtp_reply_def(id);

	smtp_reply_fmt(out, d->code, d->esc, "%s", d->text);
}

/* ---------------- client side: the reply reader ---------------- */

void
smtp_reply_init(struct smtp_reply *r)
{
	memset(r, 0, sizeof(*r));
	buf_init(&r->text, SMTP_REPLY_TEXT_MAX);
}

void
smtp_reply_free(struct smtp_reply *r)
{
	buf_free(&r->text);
}

void
smtp_reply_reader_init(struct smtp_reply_reader *rr)
{
	smtp_line_init(&rr->lr, SMTP_REPLY_LINE_READ_MAX);
	rr->err = SMTP_RR_E_NONE;
	rr->in_reply = 0;
}

/* Digits 1-3 at *pp, advancing; 0 when there are none or too many. */
static int
esc_digits(const char **pp)
{
	int n = 0;

	while (isdigit((unsigned char)**pp) && n < 4) {
		(*pp)++;
		n++;
	}
	return n >= 1 && n <= 3;
}

/* Length of an enhanced status code of class `cls` opening t, or 0. */
static size_t
esc_len(const char *t, char cls)
{
	const char *p = t;

	if (*p++ != cls || *p++ != '.' || !esc_digits(&p) || *p++ != '.' ||
	    !esc_digits(&p))
		return 0;
	if (*p != ' ' && *p != '\0')
		return 0;
	return (size_t)(p - t);
}

int
smtp_reply_split(const char *line, int *code, char esc[SMTP_ESC_MAX + 1],
    const char **text)
{
	const char *t = line + 3;
	size_t n;

	if (line[0] < '2' || line[0] > '5' || !isdigit((unsigned char)line[1]) ||
	    !isdigit((unsigned char)line[2]) || (*t != ' ' && *t != '\0'))
		return -1;
	*code = atoi(line);
	t += *t == ' ';
	esc[0] = '\0';
	if ((n = esc_len(t, line[0])) > 0 && n <= SMTP_ESC_MAX) {
		memcpy(esc, t, n);
		esc[n] = '\0';
		t += n + (t[n] == ' ');
	}
	*text = t;
	return 0;
}

/* Append one line's text, cut at the text cap rather than failing. */
static void
text_add(struct smtp_reply *r, const char *t, size_t n)
{
	size_t room;

	if (r->nlines > 1)
		buf_putc(&r->text, '\n');
	room = r->text.max > r->text.len ? r->text.max - r->text.len : 0;
	buf_append(&r->text, t, n < room ? n : room);
}

/* Take one reply line; returns 1 when it was the last, 0 more, -1 bad. */
static int
reply_take_line(struct smtp_reply_reader *rr, struct smtp_reply *r,
    const char *line, size_t len)
{
	const char *t;
	size_t el;
	int code;

	if (len < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' ||
	    line[1] > '5' || !isdigit((unsigned char)line[2]) ||
	    (len > 3 && line[3] != ' ' && line[3] != '-'))
		return rr->err = SMTP_RR_E_SYNTAX, -1;
	code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	if (rr->in_reply == 0) {
		r->code = code;
		r->esc[0] = '\0';
		r->nlines = 0;
		buf_reset(&r->text);
	} else if (code != r->code) {
		return rr->err = SMTP_RR_E_CODE_MISMATCH, -1;
	}
	if (++r->nlines > SMTP_REPLY_LINES_MAX)
		return rr->err = SMTP_RR_E_TOO_MANY, -1;
	rr->in_reply = 1;
	t = len > 3 ? line + 4 : "";
	if (r->nlines == 1 && (el = esc_len(t, line[0])) > 0) {
		memcpy(r->esc, t, el);
		r->esc[el] = '\0';
	}
	if (r->esc[0] != '\0' && (el = esc_len(t, line[0])) > 0 &&
	    strncmp(t, r->esc, el) == 0 && r->esc[el] == '\0')
		t += t[el] == ' ' ? el + 1 : el;
	text_add(r, t, strlen(t));
	if (len > 3 && line[3] == '-')
		return 0;
	rr->in_reply = 0;
	return 1;
}

enum smtp_rr_res
smtp_reply_read(struct smtp_reply_reader *rr, struct evbuffer *in,
    struct smtp_reply *r)
{
	char line[SMTP_REPLY_LINE_READ_MAX];
	size_t len;
	unsigned flags;
	int last;

	if (rr->err != SMTP_RR_E_NONE)
		return SMTP_RR_ERROR;
	for (;;) {
		switch (smtp_line_read(&rr->lr, in, line, &len, &flags)) {
		case SMTP_LINE_MORE:
			return SMTP_RR_MORE;
		case SMTP_LINE_TOO_LONG:
			rr->err = SMTP_RR_E_TOO_LONG;
			return SMTP_RR_ERROR;
		case SMTP_LINE_OK:
			break;
		}
		if (flags & SMTP_LINE_F_NUL) {
			rr->err = SMTP_RR_E_NUL;
			return SMTP_RR_ERROR;
		}
		if ((last = reply_take_line(rr, r, line, len)) < 0)
			return SMTP_RR_ERROR;
		if (last)
			return SMTP_RR_DONE;
	}
}

enum smtp_rr_res
smtp_reply_parse(const char *p, size_t n, struct smtp_reply *r,
    enum smtp_rr_err *errp)
{
	struct smtp_reply_reader rr;
	struct evbuffer *in = evbuffer_new();
	enum smtp_rr_res res;

	if (in == NULL)
		fatal("smtp_reply_parse: out of memory");
	smtp_reply_reader_init(&rr);
	evbuffer_add(in, p, n);
	res = smtp_reply_read(&rr, in, r);
	evbuffer_free(in);
	if (errp != NULL)
		*errp = rr.err;
	return res;
}
