/*
 * The LMTP client on one connection to lmtpd: greeting, LHLO, then
 * transactions (MAIL + RCPTs + DATA pipelined, the message dot-stuffed from
 * the queue file, one reply per accepted recipient). Replies are read line
 * by line (bounded: REPLY_LINE_MAX per line, REPLY_LINES_MAX lines) and
 * handed to the handler of the stage the connection is in: one table.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "conf.h"
#include "event.h"
#include "log.h"
#include "queued.h"
#include "local_lmtp.h"
#include "xalloc.h"

#define REPLY_LINE_MAX	2048
#define REPLY_LINES_MAX	100
#define LMTP_TIMEOUT	300
#define SEND_CHUNK	(256 * 1024)

/* Set when a handler gave the connection away (freed, or handed back to
 * the pool or the next job): the reader must not touch it again. */
static int c_gone;

static void
send_line(struct lconn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
send_line(struct lconn *c, const char *fmt, ...)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	va_list ap;

	va_start(ap, fmt);
	evbuffer_add_vprintf(out, fmt, ap);
	va_end(ap);
	evbuffer_add(out, "\r\n", 2);
}

/* "250 2.1.5 text" -> the enhanced code, when there is one. */
static void
reply_dsn(const char *text, char *dsn, size_t n)
{
	const char *p = text + 4;
	size_t len = strspn(p, "0123456789.");

	dsn[0] = '\0';
	if (strlen(text) > 4 && len >= 5 && len < n && p[0] == text[0] && p[1] == '.')
		snprintf(dsn, n, "%.*s", (int)len, p);
}

static void
conn_error(struct lconn *c, const char *why)
{
	c_gone = 1;
	c->broken = 1;
	if (c->job != NULL)
		ljob_conn_failed(c->job, why);
	else if (c->stage == L_IDLE)
		lconn_idle_gone(c);
	else {			/* during the handshake */
		lconn_cb cb = c->cb;
		void *arg = c->cb_arg;

		log_warn("lmtpd: %s", why);
		lconn_free(c);
		cb(NULL, EPROTO, arg);
	}
}

/* ---- the body -------------------------------------------------------------- */

static void
push_body(struct lconn *c)
{
	struct ljob *j = c->job;
	struct evbuffer *out = bufferevent_get_output(c->bev);
	off_t end = j->m->data_off + j->m->size;
	char chunk[65536];

	while (evbuffer_get_length(out) < SEND_CHUNK && c->send_off < end) {
		size_t want = (size_t)(end - c->send_off) < sizeof(chunk) ?
		    (size_t)(end - c->send_off) : sizeof(chunk);
		ssize_t n = pread(j->m->fd, chunk, want, c->send_off);
		size_t start = 0;

		if (n <= 0) {
			conn_error(c, "cannot read the queue file");
			return;
		}
		for (size_t i = 0; i < (size_t)n; i++) {
			if (c->bol && chunk[i] == '.') {
				evbuffer_add(out, chunk + start, i - start);
				evbuffer_add(out, ".", 1);
				start = i;
			}
			c->bol = chunk[i] == '\n';
		}
		evbuffer_add(out, chunk + start, (size_t)n - start);
		c->send_off += n;
	}
	if (c->send_off >= end) {
		if (!c->bol)
			evbuffer_add(out, "\r\n", 2);
		evbuffer_add(out, ".\r\n", 3);
		c->stage = L_DOT;
		c->dot_i = 0;
	}
}

/* ---- reply handlers, one per stage ----------------------------------------- */

static void
tx_finish(struct lconn *c)
{
	struct ljob *j = c->job;

	c_gone = 1;
	c->stage = L_READY;
	c->job = NULL;
	ljob_tx_done(j);
}

/* The next accepted recipient at or after batch position *i. */
static int
next_accepted(struct ljob *j, int *i)
{
	while (*i < j->count && j->st[j->first + *i] != 1)
		(*i)++;
	return *i < j->count;
}

static void
on_greet(struct lconn *c, int code, const char *text)
{
	if (code != 220) {
		conn_error(c, text);
		return;
	}
	send_line(c, "LHLO %s", queued_hostname());
	c->stage = L_LHLO;
}

static void
on_lhlo(struct lconn *c, int code, const char *text)
{
	lconn_cb cb = c->cb;

	if (code != 250) {
		conn_error(c, text);
		return;
	}
	c->stage = L_READY;
	cb(c, 0, c->cb_arg);
}

static void
on_mail(struct lconn *c, int code, const char *text)
{
	c->mail_code = code;
	snprintf(c->mail_reply, sizeof(c->mail_reply), "%s", text);
	c->stage = L_RCPT;
	c->rcpt_i = 0;
}

static void
on_rcpt(struct lconn *c, int code, const char *text)
{
	struct ljob *j = c->job;
	int k = j->first + c->rcpt_i++;
	char dsn[8];

	if (c->mail_code / 100 != 2) {
		reply_dsn(c->mail_reply, dsn, sizeof(dsn));
		ljob_report(j, k, c->mail_code, dsn, c->mail_reply);
	} else if (code / 100 == 2) {
		j->st[k] = 1;
		c->accepted++;
	} else {
		reply_dsn(text, dsn, sizeof(dsn));
		ljob_report(j, k, code, dsn, text);
	}
	if (c->rcpt_i == j->count)
		c->stage = L_DATA;
}

static void
on_data(struct lconn *c, int code, const char *text)
{
	struct ljob *j = c->job;
	char dsn[8];

	if (code == 354 && c->accepted > 0) {
		c->stage = L_BODY;
		c->send_off = j->m->data_off;
		c->bol = 1;
		push_body(c);
		return;
	}
	reply_dsn(text, dsn, sizeof(dsn));
	for (int i = 0; next_accepted(j, &i); i++)
		ljob_report(j, j->first + i, code == 354 ? 451 : code, dsn, text);
	if (code == 354) {		/* cannot happen: no accepted recipient */
		conn_error(c, "DATA accepted without recipients");
		return;
	}
	send_line(c, "RSET");
	c->stage = L_RSET;
}

static void
on_dot(struct lconn *c, int code, const char *text)
{
	struct ljob *j = c->job;
	char dsn[8];

	if (!next_accepted(j, &c->dot_i)) {
		conn_error(c, "more replies than recipients");
		return;
	}
	reply_dsn(text, dsn, sizeof(dsn));
	ljob_report(j, j->first + c->dot_i++, code, dsn, text);
	if (!next_accepted(j, &c->dot_i))
		tx_finish(c);
}

static void
on_rset(struct lconn *c, int code, const char *text)
{
	(void)text;
	if (code != 250)
		c->broken = 1;
	tx_finish(c);
}

static void
on_unexpected(struct lconn *c, int code, const char *text)
{
	(void)code;
	conn_error(c, text);
}

static void (*const handlers[])(struct lconn *, int, const char *) = {
	[L_CONNECT] = on_unexpected, [L_GREET] = on_greet, [L_LHLO] = on_lhlo,
	[L_READY] = on_unexpected, [L_MAIL] = on_mail, [L_RCPT] = on_rcpt,
	[L_DATA] = on_data, [L_BODY] = on_unexpected, [L_DOT] = on_dot,
	[L_RSET] = on_rset, [L_IDLE] = on_unexpected,
};

/* ---- reading replies -------------------------------------------------------- */

/* One line; returns -1 when the connection was given up. */
static int
reply_line(struct lconn *c, const char *line, size_t len)
{
	int code;

	if (len < 3 || len > REPLY_LINE_MAX || line[0] < '2' || line[0] > '5' ||
	    line[1] < '0' || line[1] > '9' || line[2] < '0' || line[2] > '9' ||
	    (len > 3 && line[3] != ' ' && line[3] != '-') || ++c->lines > REPLY_LINES_MAX) {
		conn_error(c, "malformed reply from lmtpd");
		return -1;
	}
	if (c->text.len == 0)
		buf_append(&c->text, line, len);
	if (len > 3 && line[3] == '-')
		return 0;
	code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	c->lines = 0;
	char *text = buf_release(&c->text);
	buf_init(&c->text, REPLY_LINE_MAX + 1);
	c_gone = 0;
	handlers[c->stage](c, code, text);
	free(text);
	return c_gone ? -1 : 0;
}

static void
on_read(struct bufferevent *bev, void *arg)
{
	struct lconn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	char *line;
	size_t len;

	while ((line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF)) != NULL) {
		int rc = reply_line(c, line, len);

		free(line);
		if (rc < 0)
			return;		/* c may be gone */
	}
	if (line == NULL && evbuffer_get_length(in) > REPLY_LINE_MAX)
		conn_error(c, "reply line too long");
}

static void
on_write(struct bufferevent *bev, void *arg)
{
	struct lconn *c = arg;

	(void)bev;
	if (c->stage == L_BODY)
		push_body(c);	/* may free c: nothing after this */
}

static void
on_event(struct bufferevent *bev, short what, void *arg)
{
	struct lconn *c = arg;

	(void)bev;
	conn_error(c, what & BEV_EVENT_TIMEOUT ? "timeout" :
	    what & BEV_EVENT_EOF ? "connection closed" : "connection error");
}

static void
on_connect(struct bufferevent *bev, int err, void *arg)
{
	struct lconn *c = arg;
	struct timeval tv = { LMTP_TIMEOUT, 0 };

	c->connecting = NULL;
	if (bev == NULL) {
		lconn_cb cb = c->cb;
		void *cb_arg = c->cb_arg;

		lconn_free(c);
		cb(NULL, err, cb_arg);
		return;
	}
	c->bev = bev;
	c->stage = L_GREET;
	bufferevent_setcb(bev, on_read, on_write, on_event, c);
	bufferevent_setwatermark(bev, EV_WRITE, SEND_CHUNK / 2, 0);
	bufferevent_set_timeouts(bev, &tv, &tv);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
}

/* ---- the interface -------------------------------------------------------------- */

void
lconn_open(struct event_base *base, const char *path, int timeout, lconn_cb cb, void *arg)
{
	struct lconn *c = xcalloc(1, sizeof(*c));

	c->cb = cb;
	c->cb_arg = arg;
	c->stage = L_CONNECT;
	buf_init(&c->text, REPLY_LINE_MAX + 1);
	if ((c->connecting = ev_connect_unix(base, path, timeout, on_connect, c)) == NULL) {
		log_warn("lmtpd socket path too long: %s", path);
		c->connecting = NULL;
		/* report from the loop, as ev_connect would */
		lconn_free(c);
		cb(NULL, ENAMETOOLONG, arg);
	}
}

void
lmtp_transaction(struct ljob *j)
{
	struct lconn *c = j->c;
	struct msg *m = j->m;

	c->job = j;
	c->mail_code = 0;
	c->accepted = 0;
	c->stage = L_MAIL;
	send_line(c, "MAIL FROM:<%s>%s%s", m->sender, m->body8 ? " BODY=8BITMIME" : "",
	    m->smtputf8 ? " SMTPUTF8" : "");
	for (int i = 0; i < j->count; i++)
		send_line(c, "RCPT TO:<%s>", m->leaves[j->idx[j->first + i]].addr);
	send_line(c, "DATA");
}

void
lconn_take(struct lconn *c)
{
	struct timeval tv = { LMTP_TIMEOUT, 0 };

	c->stage = L_READY;
	bufferevent_set_timeouts(c->bev, &tv, &tv);
}

void
lconn_idle(struct lconn *c, int secs)
{
	struct timeval tv = { secs, 0 };

	c->stage = L_IDLE;
	bufferevent_set_timeouts(c->bev, &tv, NULL);
}

int
lconn_reusable(const struct lconn *c)
{
	return !c->broken && c->bev != NULL;
}

void
lconn_free(struct lconn *c)
{
	if (c == NULL)
		return;
	if (c->connecting != NULL)
		ev_connect_cancel(c->connecting);
	if (c->bev != NULL)
		bufferevent_free(c->bev);
	buf_free(&c->text);
	free(c);
}
