/*
 * The SMTP/LMTP client (see smtp_client.h). Commands wait in `pending`
 * until they may go out (after EHLO; all together with PIPELINING, one by
 * one without), then in `inflight` until their reply comes; each reply is
 * matched to the oldest command in flight and handled by its type's row
 * in the reply table (smtp_client_cmd.c). The message goes out through
 * the DATA encoder, read from a file or pushed by the caller; STARTTLS and
 * AUTH are in smtp_client_auth.c.
 */
#include <sys/socket.h>
#include <netdb.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <errno.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bsd/sys/queue.h>
#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>

#include "buf.h"
#include "conf.h"
#include "event.h"
#include "log.h"
#include "smtp_client.h"
#include "smtp_client_int.h"
#include "xalloc.h"

/* ---- settings ---- */

void
cli_settings_default(struct cli_settings *s)
{
	memset(s, 0, sizeof(*s));
	s->connect_timeout = 30;
	s->greeting_timeout = 300;
	s->helo_timeout = 300;
	s->mail_timeout = 300;
	s->rcpt_timeout = 300;
	s->data_timeout = 120;
	s->data_xfer_timeout = 180;
	s->dot_timeout = 600;
	s->quit_timeout = 300;
	s->max_reply_bytes = 8192;
	s->max_pipeline = 100;
}

/* ---- life cycle and reentrancy ---- */

static void txn_clear(struct cli_conn *c);

static void
release(struct cli_conn *c)
{
	struct cmd *k;

	if (c->connecting != NULL)
		ev_connect_cancel(c->connecting);
	if (c->out_cb != NULL)
		evbuffer_remove_cb_entry(bufferevent_get_output(c->bev), c->out_cb);
	if (c->bev != NULL)
		bufferevent_free(c->bev);
	if (c->flush != NULL)
		event_free(c->flush);
	event_free(c->deadline);
	while ((k = TAILQ_FIRST(&c->pending)) != NULL) {
		TAILQ_REMOVE(&c->pending, k, entry);
		cli_cmd_free(k);
	}
	while ((k = TAILQ_FIRST(&c->inflight)) != NULL) {
		TAILQ_REMOVE(&c->inflight, k, entry);
		cli_cmd_free(k);
	}
	txn_clear(c);
	smtp_reply_free(&c->rep);
	free(c->peer);
	free(c->helo_name);
	free(c->auth_user);
	if (c->auth_pass != NULL)
		explicit_bzero(c->auth_pass, strlen(c->auth_pass));
	free(c->auth_pass);
	free(c);
}

/* Every entry from the loop is bracketed so that cli_free() inside a
 * callback only marks the connection; the last one out frees it. */
static void
enter(struct cli_conn *c)
{
	c->busy++;
}

static int
leave(struct cli_conn *c)
{
	if (--c->busy == 0 && c->freed) {
		release(c);
		return -1;
	}
	return 0;
}

void
cli_free(struct cli_conn *c)
{
	if (c == NULL)
		return;
	c->freed = 1;
	c->state = S_CLOSED;
	if (c->busy == 0)
		release(c);
}

/* ---- replies handed to the caller ---- */

void
cli_reply_local(struct cli_reply *r, int code, const char *status,
    const char *text)
{
	r->code = code;
	snprintf(r->status, sizeof(r->status), "%s", status);
	r->text = text;
	r->local = 1;
}

void
cli_give_rcpt(struct cli_conn *c, int idx, const struct cli_reply *r)
{
	struct rcpt *rc = &c->rcpts[idx];

	if (rc->state != 0 || c->freed)
		return;
	rc->state = r->code / 100 == 2 ? 1 : 2;
	if (rc->state == 1)
		c->naccepted++;
	if (c->cb.rcpt != NULL)
		c->cb.rcpt(c, idx, r, c->arg);
}

void
cli_give_final(struct cli_conn *c, int idx, const struct cli_reply *r)
{
	struct rcpt *rc = &c->rcpts[idx];

	if (rc->state != 1 || rc->final_done || c->freed)
		return;
	rc->final_done = 1;
	if (c->cb.final != NULL)
		c->cb.final(c, idx, r, c->arg);
}

/* The transaction is over: tidy up and tell the caller. */
/* Forget the transaction (its recipients, its failure) without a word. */
static void
txn_clear(struct cli_conn *c)
{
	int i;

	for (i = 0; i < c->nrcpt; i++) {
		free(c->rcpts[i].addr);
		free((char *)c->rcpts[i].p.notify);
		free((char *)c->rcpts[i].p.orcpt);
	}
	free(c->rcpts);
	c->rcpts = NULL;
	c->nrcpt = c->naccepted = c->next_final = c->srv_accepted = 0;
	free(c->mail_fail_text);
	c->mail_fail_text = NULL;
	c->mail_fail.code = 0;
	c->dmode = D_NONE;
	c->txn = 0;
	c->data_dropped = 0;
}

void
cli_txn_end(struct cli_conn *c)
{
	txn_clear(c);
	/* A transaction the server still holds open is reset before the
	 * next MAIL the caller may queue from done(). */
	if (c->need_rset && c->state != S_CLOSED) {
		cli_queue(c, C_RSET, 1);
		c->need_rset = 0;
	}
	if (c->cb.done != NULL && !c->freed)
		c->cb.done(c, c->arg);
}

/* Whatever the transaction still owes the caller, `r` stands in. */
static void
txn_abort(struct cli_conn *c, const struct cli_reply *r)
{
	int i;

	if (!c->txn)
		return;
	for (i = 0; i < c->nrcpt && !c->freed; i++)
		cli_give_rcpt(c, i, r);
	for (i = 0; i < c->nrcpt && !c->freed; i++)
		cli_give_final(c, i, r);
	cli_txn_end(c);
}

/* The end of the connection: the transaction first, then closed(). */
void
cli_close_with(struct cli_conn *c, const struct cli_reply *r)
{
	if (c->state == S_CLOSED)
		return;
	c->state = S_CLOSED;
	if (c->bev != NULL)
		bufferevent_disable(c->bev, EV_READ | EV_WRITE);
	evtimer_del(c->deadline);
	txn_abort(c, r);
	if (c->cb.closed != NULL && !c->freed)
		c->cb.closed(c, r, c->arg);
}

static void
vfail(struct cli_conn *c, const char *status, const char *fmt, va_list ap)
{
	struct cli_reply r;
	char text[512];

	vsnprintf(text, sizeof(text), fmt, ap);
	cli_reply_local(&r, 421, status, text);
	cli_close_with(c, &r);
}

void
cli_fail(struct cli_conn *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfail(c, "4.4.2", fmt, ap);
	va_end(ap);
}

void
cli_failx(struct cli_conn *c, const char *status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfail(c, status, fmt, ap);
	va_end(ap);
}

/* ---- the connection ---- */

/* "192.0.2.1:25" or "[2001:db8::1]:25" for failure texts. */
static void
sockaddr_text(const struct sockaddr *sa, char *out, size_t len)
{
	char host[INET6_ADDRSTRLEN], port[8];

	if (getnameinfo(sa, sa->sa_family == AF_INET6 ?
	    sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in), host,
	    sizeof(host), port, sizeof(port),
	    NI_NUMERICHOST | NI_NUMERICSERV) != 0)
		snprintf(out, len, "?");
	else
		snprintf(out, len, sa->sa_family == AF_INET6 ? "[%s]:%s" :
		    "%s:%s", host, port);
}

static void
on_read(struct bufferevent *bev, void *arg)
{
	struct cli_conn *c = arg;
	int r;

	(void)bev;
	enter(c);
	while (c->state != S_CLOSED && !c->freed) {
		if ((r = cli_read_reply(c)) == 0)
			break;
		if (r == -1) {
			cli_fail(c, "malformed or over-long reply from %s while %s",
			    c->peer, c->doing);
			break;
		}
		cli_dispatch(c);
		if (!c->freed)
			cli_reply_reset(c);
	}
	if (!c->freed) {
		cli_pump(c);
		cli_arm(c);
	}
	leave(c);
}

static void
on_write(struct bufferevent *bev, void *arg)
{
	struct cli_conn *c = arg;

	enter(c);
	if (c->direct && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		bufferevent_disable(bev, EV_WRITE);	/* the next write is direct */
	if (c->state == S_DATA && c->dmode == D_FD) {
		cli_data_from_file(c);
	} else if (c->state == S_DATA && c->want_drain) {
		c->want_drain = 0;
		if (c->cb.drain != NULL)
			c->cb.drain(c, c->arg);
	}
	leave(c);
}

/* The reason OpenSSL gives for a failed handshake, if any. */
static const char *
tls_error(struct bufferevent *bev, char *buf, size_t len)
{
	unsigned long e = bufferevent_get_openssl_error(bev);

	if (e == 0)
		return "handshake failed";
	ERR_error_string_n(e, buf, len);
	return buf;
}

static void
on_event(struct bufferevent *bev, short what, void *arg)
{
	struct cli_conn *c = arg;
	char err[160];

	enter(c);
	if ((what & BEV_EVENT_CONNECTED) && c->state == S_TLS) {
		c->tls_on = 1;		/* handshake done: EHLO again */
		c->state = S_HELO;
		cli_send_cmd(c, cli_cmd_new(C_EHLO, 0));
		cli_arm(c);
	} else if (c->state == S_TLS && (what & (BEV_EVENT_ERROR |
	    BEV_EVENT_EOF))) {
		cli_failx(c, "4.7.5", "TLS with %s failed: %s", c->peer,
		    tls_error(bev, err, sizeof(err)));
	} else if (what & BEV_EVENT_TIMEOUT) {
		cli_fail(c, "timeout with %s while %s", c->peer, c->doing);
	} else if (what & BEV_EVENT_EOF) {
		cli_fail(c, "lost connection with %s while %s", c->peer,
		    c->doing);
	} else if (what & BEV_EVENT_ERROR) {
		cli_fail(c, "connection with %s failed while %s: %s", c->peer,
		    c->doing, strerror(EVUTIL_SOCKET_ERROR()));
	}
	leave(c);
}

/* A reply took longer than its timeout in all (see cli_arm). */
static void
on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct cli_conn *c = arg;

	(void)fd, (void)what;
	enter(c);
	cli_fail(c, "timeout with %s while %s", c->peer, c->doing);
	leave(c);
}

static void on_write(struct bufferevent *bev, void *arg);

/*
 * On a plain socket, commands and the message go out by a direct write
 * from the "flush" event at the end of the loop pass that queued them (a
 * pipelined group in one write), as lib/smtp_server.c does for replies:
 * through the bufferevent's write event each write cost two epoll_ctl
 * calls and one more loop pass, on the path from the final dot to the
 * 250 (smtpd -> queued) and to the delivery (queued -> lmtpd). Only
 * what the socket does not take is left to the bufferevent (EV_WRITE on
 * until the output drains). A TLS connection writes through its
 * bufferevent.
 */
static void
out_flush(struct cli_conn *c)
{
	if (c->direct && c->state != S_CLOSED && bev_write_now(c->bev) < 0)
		cli_fail(c, "write to %s while %s: %s", c->peer, c->doing, strerror(errno));
}

static void
flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct cli_conn *c = arg;

	(void)fd, (void)what;
	c->flush_pending = 0;
	enter(c);
	out_flush(c);
	if (c->state != S_CLOSED && !c->freed &&
	    evbuffer_get_length(bufferevent_get_output(c->bev)) <= LOWAT)
		on_write(c->bev, c);	/* what the bufferevent would call */
	leave(c);
}

static void
out_added(struct evbuffer *out, const struct evbuffer_cb_info *info, void *arg)
{
	struct cli_conn *c = arg;

	(void)out;
	if (info->n_added == 0 || c->flush_pending)
		return;
	c->flush_pending = 1;
	event_active(c->flush, EV_TIMEOUT, 0);
}

static void
watch(struct cli_conn *c, struct bufferevent *bev)
{
	if (c->out_cb != NULL) {	/* the plain socket goes under TLS */
		evbuffer_remove_cb_entry(bufferevent_get_output(c->bev), c->out_cb);
		c->out_cb = NULL;
	}
	c->bev = bev;
	c->direct = bufferevent_get_underlying(bev) == NULL && bufferevent_getfd(bev) >= 0;
	bufferevent_setcb(bev, on_read, on_write, on_event, c);
	bufferevent_setwatermark(bev, EV_WRITE, LOWAT, 0);
	if (!c->direct) {
		bufferevent_enable(bev, EV_READ | EV_WRITE);
		return;
	}
	if (c->flush == NULL && (c->flush = event_new(c->base, -1, 0, flush_cb, c)) == NULL)
		fatal("smtp client: out of memory");
	c->out_cb = evbuffer_add_cb(bufferevent_get_output(bev), out_added, c);
	bufferevent_disable(bev, EV_WRITE);
	bufferevent_enable(bev, EV_READ);
	if (evbuffer_get_length(bufferevent_get_output(bev)) > 0)
		out_added(NULL, &(struct evbuffer_cb_info){ .n_added = 1 }, c);
}

/*
 * The server said 220 to STARTTLS. Anything already read past that reply
 * was sent in plaintext before TLS and could be an injected command:
 * refuse it (RFC 3207 §4.2, the 2011 STARTTLS command-injection lesson).
 */
void
cli_tls_start(struct cli_conn *c)
{
	struct bufferevent *tls;

	if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0) {
		cli_failx(c, "4.7.5", "%s sent data after its STARTTLS reply",
		    c->peer);
		return;
	}
	if ((tls = c->cb.tls_wrap(c, c->bev, c->arg)) == NULL) {
		cli_failx(c, "4.7.5", "TLS set-up for %s failed", c->peer);
		return;
	}
	watch(c, tls);
	c->state = S_TLS;
	cli_arm(c);
}

static void
attach(struct cli_conn *c, struct bufferevent *bev)
{
	watch(c, bev);
	c->state = S_GREETING;
	cli_arm(c);
}

static void
on_connected(struct bufferevent *bev, int error, void *arg)
{
	struct cli_conn *c = arg;

	enter(c);
	c->connecting = NULL;
	if (error != 0)		/* RFC 3463 X.4.1 "no answer from host", as Postfix */
		cli_failx(c, "4.4.1", "connect to %s: %s", c->peer, error == ETIMEDOUT ?
		    "timed out" : strerror(error));
	else
		attach(c, bev);
	leave(c);
}

static struct cli_conn *
conn_new(struct event_base *base, const struct cli_settings *s,
    const struct cli_callbacks *cb, void *arg, const char *peer)
{
	struct cli_conn *c = xcalloc(1, sizeof(*c));

	c->base = base;
	c->s = *s;
	c->cb = *cb;
	c->arg = arg;
	c->peer = xstrdup(s->peer_name != NULL ? s->peer_name : peer);
	c->helo_name = xstrdup(s->helo_name != NULL ? s->helo_name :
	    conf_str(C_myhostname));
	if (s->auth_user != NULL) {
		c->auth_user = xstrdup(s->auth_user);
		c->auth_pass = xstrdup(s->auth_pass ? s->auth_pass : "");
	}
	/* Borrowed: not kept. */
	c->s.helo_name = c->s.peer_name = NULL;
	c->s.auth_user = c->s.auth_pass = NULL;
	c->state = S_CONNECTING;
	if ((c->deadline = evtimer_new(base, on_deadline, c)) == NULL)
		fatal("smtp client: out of memory");
	c->data_fd = -1;
	c->doing = "connecting";
	TAILQ_INIT(&c->pending);
	TAILQ_INIT(&c->inflight);
	smtp_reply_reader_init(&c->rr);
	smtp_reply_init(&c->rep);
	c->rep.text.max = s->max_reply_bytes;
	return c;
}

struct cli_conn *
cli_connect_sa(struct event_base *base, const struct sockaddr *sa,
    socklen_t salen, const struct cli_settings *s,
    const struct cli_callbacks *cb, void *arg)
{
	char host[INET6_ADDRSTRLEN + 16] = "?";
	struct cli_conn *c;

	sockaddr_text(sa, host, sizeof(host));
	c = conn_new(base, s, cb, arg, host);
	c->connecting = ev_connect_sa(base, sa, salen, s->connect_timeout,
	    on_connected, c);
	return c;
}

struct cli_conn *
cli_connect_unix(struct event_base *base, const char *path,
    const struct cli_settings *s, const struct cli_callbacks *cb, void *arg)
{
	struct cli_conn *c = conn_new(base, s, cb, arg, path);

	c->connecting = ev_connect_unix(base, path, s->connect_timeout,
	    on_connected, c);
	if (c->connecting == NULL) {
		release(c);
		return NULL;
	}
	return c;
}

struct cli_conn *
cli_attach(struct event_base *base, struct bufferevent *bev,
    const struct cli_settings *s, const struct cli_callbacks *cb, void *arg)
{
	struct cli_conn *c = conn_new(base, s, cb, arg, "peer");

	attach(c, bev);
	return c;
}

/* ---- the transaction, from the caller ---- */

/* Addresses and values go into command lines: no line breaks, bounded
 * (RFC 5321 §4.5.3.1: path 256, command line 512 with parameters). */
static int
bad_value(const char *s, size_t max)
{
	return s != NULL && (strlen(s) > max || strpbrk(s, "\r\n") != NULL);
}

static int
queue_cmd(struct cli_conn *c, struct cmd *k)
{
	TAILQ_INSERT_TAIL(&c->pending, k, entry);
	enter(c);
	cli_pump(c);
	return leave(c) == -1 ? -1 : 0;
}

static int
may_start(const struct cli_conn *c)
{
	return !c->freed && !c->txn && !c->quitting && c->state != S_CLOSED &&
	    c->state != S_DATA;
}

int
cli_xforward(struct cli_conn *c, const struct cli_xforward *xf)
{
	const char *in[7] = { xf->name, xf->addr, xf->port, xf->proto,
	    xf->helo, xf->ident, xf->source };
	char **v;
	struct cmd *k;
	int i;

	if (!may_start(c))
		return -1;
	v = xcalloc(7, sizeof(*v));
	for (i = 0; i < 7; i++)		/* bounded: one line of 512 */
		v[i] = in[i] == NULL ? NULL : xstrndup(in[i], 60);
	k = cli_cmd_new(C_XFORWARD, 0);
	k->ctx = v;
	return queue_cmd(c, k);
}

int
cli_mail(struct cli_conn *c, const char *sender,
    const struct cli_mail_params *p)
{
	struct cli_mail_params *copy;
	struct cmd *k;

	if (!may_start(c) || bad_value(sender, 256) ||
	    (p != NULL && (bad_value(p->ret, 4) || bad_value(p->envid, 100))))
		return -1;
	copy = xcalloc(1, sizeof(*copy));
	if (p != NULL) {
		*copy = *p;
		copy->ret = p->ret ? xstrdup(p->ret) : NULL;
		copy->envid = p->envid ? xstrdup(p->envid) : NULL;
	}
	k = cli_cmd_new(C_MAIL, 0);
	k->line = xstrdup(sender);
	k->ctx = copy;
	c->txn = 1;
	return queue_cmd(c, k);
}

int
cli_rcpt(struct cli_conn *c, const char *rcpt,
    const struct cli_rcpt_params *p)
{
	struct rcpt *rc;
	int idx = c->nrcpt;

	/* ORCPT: RFC 3461 §5 lets NOTIFY and ORCPT add 500 characters */
	if (c->freed || !c->txn || c->dmode != D_NONE || bad_value(rcpt, 256)
	    || (p != NULL && (bad_value(p->notify, 40) ||
	    bad_value(p->orcpt, 500))))
		return -1;
	c->rcpts = xrealloc(c->rcpts, (size_t)(idx + 1) * sizeof(*rc));
	rc = &c->rcpts[idx];
	memset(rc, 0, sizeof(*rc));
	rc->addr = xstrdup(rcpt);
	if (p != NULL && p->notify != NULL)
		rc->p.notify = xstrdup(p->notify);
	if (p != NULL && p->orcpt != NULL)
		rc->p.orcpt = xstrdup(p->orcpt);
	c->nrcpt++;
	return queue_cmd(c, cli_cmd_new(C_RCPT, idx)) == -1 ? -1 : idx;
}

int
cli_data_fd(struct cli_conn *c, int fd, off_t off, off_t len)
{
	if (c->freed || !c->txn || c->dmode != D_NONE || fd < 0 || len < 0)
		return -1;
	c->dmode = D_FD;
	c->data_fd = fd;
	c->data_off = off;
	c->data_left = len;
	return queue_cmd(c, cli_cmd_new(C_DATA, 0));
}

int
cli_data_push(struct cli_conn *c)
{
	if (c->freed || !c->txn || c->dmode != D_NONE)
		return -1;
	c->dmode = D_PUSH;
	return queue_cmd(c, cli_cmd_new(C_DATA, 0));
}

int
cli_data_write(struct cli_conn *c, const void *p, size_t n)
{
	if (c->freed || c->state != S_DATA || c->dmode != D_PUSH)
		return -1;
	smtp_data_enc_feed(&c->enc, p, n, bufferevent_get_output(c->bev));
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) < HIWAT)
		return 0;
	c->want_drain = 1;
	return 1;
}

int
cli_data_end(struct cli_conn *c)
{
	if (c->freed || c->state != S_DATA || c->dmode != D_PUSH)
		return -1;
	cli_data_finish(c);
	return 0;
}

/* Drop the open transaction: nothing more is reported about it. Refused
 * (-1) while the message is going out or its end is unanswered. */
int
cli_rset(struct cli_conn *c)
{
	struct cmd *k, *next;

	if (c->freed || !c->txn || c->state != S_READY)
		return -1;
	TAILQ_FOREACH(k, &c->inflight, entry)
		if (k->type == C_DATA || k->type == C_DOT)
			return -1;
	TAILQ_FOREACH(k, &c->inflight, entry)
		k->stale = 1;
	for (k = TAILQ_FIRST(&c->pending); k != NULL; k = next) {
		next = TAILQ_NEXT(k, entry);
		if (k->type != C_RSET && k->type != C_QUIT) {
			TAILQ_REMOVE(&c->pending, k, entry);
			cli_cmd_free(k);
		}
	}
	txn_clear(c);
	c->need_rset = 0;
	cli_queue(c, C_RSET, 0);
	enter(c);
	cli_pump(c);
	return leave(c);
}

int
cli_idle(const struct cli_conn *c)
{
	return !c->freed && c->state == S_READY && !c->txn && !c->quitting;
}

void
cli_set_callbacks(struct cli_conn *c, const struct cli_callbacks *cb, void *arg)
{
	c->cb = *cb;
	c->arg = arg;
}

const struct cli_caps *
cli_caps(const struct cli_conn *c)
{
	return &c->caps;
}

const char *
cli_peer(const struct cli_conn *c)
{
	return c->peer;
}

struct bufferevent *
cli_tls_bev(const struct cli_conn *c)
{
	return c->tls_on ? c->bev : NULL;
}

void
cli_quit(struct cli_conn *c)
{
	struct cli_reply r;

	if (c->freed || c->state == S_CLOSED || c->quitting)
		return;
	enter(c);
	if (c->state == S_READY && !c->txn) {
		c->quitting = 1;
		cli_queue(c, C_QUIT, 0);
		cli_pump(c);
	} else {
		cli_reply_local(&r, 421, "4.4.2", "connection closed by us");
		cli_close_with(c, &r);
	}
	leave(c);
}
