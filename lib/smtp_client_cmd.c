/*
 * The protocol half of the SMTP/LMTP client (see smtp_client.h and
 * smtp_client_int.h): reading replies, formatting commands and sending
 * them (pipelined when offered), the reply handlers (a table by command)
 * and the message body.
 */
#include <sys/socket.h>
#include <netdb.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bsd/sys/queue.h>
#include <event2/buffer.h>

#include "buf.h"
#include "conf.h"
#include "event.h"
#include "log.h"
#include "smtp_client.h"
#include "smtp_client_int.h"
#include "xalloc.h"

/* ---- reading replies ---- */

void
cli_reply_reset(struct cli_conn *c)
{
	memset(&c->cur, 0, sizeof(c->cur));
}

/*
 * One whole reply from the input through lib/smtp_proto's reply reader
 * (its line and line-count bounds; the text cut at max_reply_bytes). 1:
 * c->cur filled (its text lives until the next reply is read); 0: need
 * more input; -1: garbage (not "ddd", "ddd text" or "ddd-text", codes
 * that differ between lines, a NUL, over a bound).
 */
int
cli_read_reply(struct cli_conn *c)
{
	struct cli_reply *r = &c->cur;

	switch (smtp_reply_read(&c->rr, bufferevent_get_input(c->bev), &c->rep)) {
	case SMTP_RR_MORE:
		return 0;
	case SMTP_RR_ERROR:
		return -1;
	case SMTP_RR_DONE:
		break;
	}
	r->code = c->rep.code;
	snprintf(r->status, sizeof(r->status), "%s", c->rep.esc);
	r->text = c->rep.text.data != NULL ? c->rep.text.data : "";
	r->local = 0;
	return 1;
}

/* ---- formatting commands ---- */

/* xtext (RFC 3461 4) through lib/smtp_proto's encoder; the cap fits
 * every byte escaped, so it cannot fail. */
static void
put_xtext(struct evbuffer *out, const char *s)
{
	size_t n = strlen(s);
	struct buf b;

	buf_init(&b, 3 * n + 1);
	smtp_xtext_encode(&b, s, n);
	if (b.len > 0)
		evbuffer_add(out, b.data, b.len);
	buf_free(&b);
}

static int
has_cap(const struct cli_conn *c, unsigned cap)
{
	return (c->caps.flags & cap) != 0;
}

static void
put_mail(struct cli_conn *c, struct evbuffer *out, struct cmd *k)
{
	const struct cli_mail_params *p = k->ctx;

	evbuffer_add_printf(out, "MAIL FROM:<%s>", k->line);
	if (p->size > 0 && has_cap(c, CLI_CAP_SIZE))
		evbuffer_add_printf(out, " SIZE=%llu", p->size);
	if (p->body_8bitmime && has_cap(c, CLI_CAP_8BITMIME))
		evbuffer_add_printf(out, " BODY=8BITMIME");
	if (p->smtputf8 && has_cap(c, CLI_CAP_SMTPUTF8))
		evbuffer_add_printf(out, " SMTPUTF8");
	if (p->ret != NULL && has_cap(c, CLI_CAP_DSN))
		evbuffer_add_printf(out, " RET=%s", p->ret);
	if (p->envid != NULL && has_cap(c, CLI_CAP_DSN)) {
		evbuffer_add_printf(out, " ENVID=");
		put_xtext(out, p->envid);
	}
}

static void
put_rcpt(struct cli_conn *c, struct evbuffer *out, struct cmd *k)
{
	const struct rcpt *rc = &c->rcpts[k->idx];

	evbuffer_add_printf(out, "RCPT TO:<%s>", rc->addr);
	if (rc->p.notify != NULL && has_cap(c, CLI_CAP_DSN))
		evbuffer_add_printf(out, " NOTIFY=%s", rc->p.notify);
	if (rc->p.orcpt != NULL && has_cap(c, CLI_CAP_DSN)) {
		evbuffer_add_printf(out, " ORCPT=");
		put_xtext(out, rc->p.orcpt);
	}
}

/* Only the attributes the server named; "" means [UNAVAILABLE]. */
static void
put_xforward(struct cli_conn *c, struct evbuffer *out, struct cmd *k)
{
	const char **v = k->ctx;
	static const char *names[] = { "NAME", "ADDR", "PORT", "PROTO",
	    "HELO", "IDENT", "SOURCE" };
	size_t i;

	evbuffer_add_printf(out, "XFORWARD");
	for (i = 0; i < 7; i++) {
		if (v[i] == NULL || strcasestr(c->caps.xforward, names[i]) ==
		    NULL)
			continue;
		evbuffer_add_printf(out, " %s=", names[i]);
		if (*v[i] == '\0')
			evbuffer_add_printf(out, "[UNAVAILABLE]");
		else
			put_xtext(out, v[i]);
	}
}

static void
put_cmd(struct cli_conn *c, struct cmd *k)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);

	switch (k->type) {
	case C_EHLO: evbuffer_add_printf(out, "%s %s", c->s.lmtp ? "LHLO" :
	    "EHLO", c->helo_name); break;
	case C_HELO: evbuffer_add_printf(out, "HELO %s", c->helo_name); break;
	case C_XFORWARD: put_xforward(c, out, k); break;
	case C_MAIL: put_mail(c, out, k); break;
	case C_RCPT: put_rcpt(c, out, k); break;
	case C_DATA: evbuffer_add_printf(out, "DATA"); break;
	case C_DOT: evbuffer_add_printf(out, "."); break;
	case C_RSET: evbuffer_add_printf(out, "RSET"); break;
	case C_QUIT: evbuffer_add_printf(out, "QUIT"); break;
	case C_STARTTLS: evbuffer_add_printf(out, "STARTTLS"); break;
	case C_AUTH: evbuffer_add_printf(out, "%s", k->line); break;
	default: fatal("smtp client: bad command %d", k->type);
	}
	evbuffer_add(out, "\r\n", 2);
}

/* ---- sending and waiting ---- */

static const struct {
	const char *doing;	/* for failure texts */
	size_t timeout;		/* offset in cli_settings */
} ctab[C_NTYPES] = {
	[C_EHLO] = { "waiting for the EHLO reply",
	    offsetof(struct cli_settings, helo_timeout) },
	[C_HELO] = { "waiting for the HELO reply",
	    offsetof(struct cli_settings, helo_timeout) },
	[C_XFORWARD] = { "waiting for the XFORWARD reply",
	    offsetof(struct cli_settings, mail_timeout) },
	[C_MAIL] = { "waiting for the MAIL FROM reply",
	    offsetof(struct cli_settings, mail_timeout) },
	[C_RCPT] = { "waiting for the RCPT TO reply",
	    offsetof(struct cli_settings, rcpt_timeout) },
	[C_DATA] = { "waiting for the DATA reply",
	    offsetof(struct cli_settings, data_timeout) },
	[C_DOT] = { "waiting for the reply after end of data",
	    offsetof(struct cli_settings, dot_timeout) },
	[C_RSET] = { "waiting for the RSET reply",
	    offsetof(struct cli_settings, mail_timeout) },
	[C_QUIT] = { "waiting for the QUIT reply",
	    offsetof(struct cli_settings, quit_timeout) },
	[C_STARTTLS] = { "waiting for the STARTTLS reply",
	    offsetof(struct cli_settings, helo_timeout) },
	[C_AUTH] = { "in the AUTH exchange",
	    offsetof(struct cli_settings, helo_timeout) },
};

static void
set_timeouts(struct cli_conn *c, int read_s, int write_s)
{
	struct timeval r = { read_s, 0 }, w = { write_s, 0 };

	bufferevent_set_timeouts(c->bev, read_s > 0 ? &r : NULL,
	    write_s > 0 ? &w : NULL);
}

/*
 * The read timeout notices only silence: a peer that trickles a byte
 * now and then could hold one reply (SMTP_REPLY_LINES_MAX lines of
 * SMTP_REPLY_LINE_READ_MAX) for days, and the message with it. So the
 * same time also bounds the whole wait for each reply (Postfix's
 * smtp_per_record_deadline = yes): armed when a new wait starts, `key` naming
 * what is awaited (a command, the greeting, the TLS handshake; NULL:
 * nothing). cli_dispatch() clears the key: each reply has its own.
 */
static void
set_deadline(struct cli_conn *c, const void *key, int secs)
{
	struct timeval tv = { secs, 0 };

	if (key == c->deadline_key)
		return;
	c->deadline_key = key;
	if (key == NULL || secs <= 0)
		evtimer_del(c->deadline);
	else
		evtimer_add(c->deadline, &tv);
}

/* The read timeout follows the oldest command waiting for its reply. */
void
cli_arm(struct cli_conn *c)
{
	struct cmd *k = TAILQ_FIRST(&c->inflight);
	int t;

	if (c->bev == NULL || c->state == S_CLOSED)
		return;
	if (c->state == S_TLS) {
		c->doing = "in the TLS handshake";
		set_timeouts(c, c->s.helo_timeout, c->s.helo_timeout);
		set_deadline(c, &c->tls_on, c->s.helo_timeout);
	} else if (c->state == S_DATA) {
		c->doing = "sending the message";
		set_timeouts(c, 0, c->s.data_xfer_timeout);
		set_deadline(c, NULL, 0);
	} else if (k != NULL) {
		c->doing = ctab[k->type].doing;
		t = *(const int *)((const char *)&c->s + ctab[k->type].timeout);
		set_timeouts(c, t, c->s.data_xfer_timeout);
		set_deadline(c, k, t);
	} else if (c->state == S_GREETING) {
		c->doing = "waiting for the greeting";
		set_timeouts(c, c->s.greeting_timeout, 0);
		set_deadline(c, &c->rr, c->s.greeting_timeout);
	} else {
		c->doing = "idle";
		set_timeouts(c, 0, 0);
		set_deadline(c, NULL, 0);
	}
}

/* DATA was dropped: the transaction ends once its replies are in. */
static void
maybe_txn_end(struct cli_conn *c)
{
	if (c->txn && c->data_dropped && c->ninflight == 0 && !c->freed) {
		c->data_dropped = 0;
		cli_txn_end(c);
	}
}

struct cmd *
cli_cmd_new(enum ctype type, int idx)
{
	struct cmd *k = xcalloc(1, sizeof(*k));

	k->type = type;
	k->idx = idx;
	return k;
}

void
cli_cmd_free(struct cmd *k)
{
	if (k->type == C_XFORWARD && k->ctx != NULL) {
		const char **v = k->ctx;
		for (int i = 0; i < 7; i++)
			free((char *)v[i]);
	} else if (k->type == C_AUTH && k->line != NULL) {
		explicit_bzero(k->line, strlen(k->line));	/* secrets */
	} else if (k->type == C_MAIL && k->ctx != NULL) {
		const struct cli_mail_params *p = k->ctx;
		free((char *)p->ret);
		free((char *)p->envid);
	}
	free(k->ctx);
	free(k->line);
	free(k);
}

void
cli_send_cmd(struct cli_conn *c, struct cmd *k)
{
	put_cmd(c, k);
	TAILQ_INSERT_TAIL(&c->inflight, k, entry);
	c->ninflight++;
	if (k->type == C_QUIT)
		c->state = S_QUIT;
}

/* The dot went out with the data: wait for its reply (or replies). */
static void
send_dot(struct cli_conn *c)
{
	struct cmd *k = cli_cmd_new(C_DOT, 0);

	TAILQ_INSERT_TAIL(&c->inflight, k, entry);
	c->ninflight++;
}

void
cli_queue(struct cli_conn *c, enum ctype type, int at_head)
{
	struct cmd *k = cli_cmd_new(type, 0);

	if (at_head)
		TAILQ_INSERT_HEAD(&c->pending, k, entry);
	else
		TAILQ_INSERT_TAIL(&c->pending, k, entry);
}

/*
 * A command that need not go out: XFORWARD the server did not offer; MAIL
 * after a refused XFORWARD; RCPT or DATA after a refused MAIL; DATA with
 * no recipient accepted (known only without pipelining, where every RCPT
 * reply is in).
 */
static int
skip_cmd(struct cli_conn *c, struct cmd *k)
{
	if (k->type == C_XFORWARD && !has_cap(c, CLI_CAP_XFORWARD))
		return 1;
	if (k->type == C_MAIL && c->mail_fail.code != 0)
		return 1;		/* XFORWARD was refused */
	if (k->type == C_RCPT && c->mail_fail.code != 0) {
		cli_give_rcpt(c, k->idx, &c->mail_fail);
		return 1;
	}
	if (k->type == C_DATA && (c->mail_fail.code != 0 ||
	    (c->ninflight == 0 && c->naccepted == 0))) {
		c->data_dropped = 1;
		return 1;
	}
	return 0;
}

/* Send what may go now: everything queued with PIPELINING (DATA and
 * QUIT close a group), one command at a time without. */
void
cli_pump(struct cli_conn *c)
{
	int pipelining = has_cap(c, CLI_CAP_PIPELINING);
	struct cmd *k, *last;

	while (c->state == S_READY && !c->freed &&
	    (k = TAILQ_FIRST(&c->pending)) != NULL) {
		last = c->ninflight > 0 ? TAILQ_LAST(&c->inflight, cmdq) :
		    NULL;
		if (last != NULL && (!pipelining || c->ninflight >=
		    c->s.max_pipeline || last->type == C_DATA ||
		    last->type == C_DOT || last->type == C_QUIT))
			break;
		TAILQ_REMOVE(&c->pending, k, entry);
		if (skip_cmd(c, k)) {
			cli_cmd_free(k);
			maybe_txn_end(c);
			continue;
		}
		cli_send_cmd(c, k);
	}
	cli_arm(c);
}

/* ---- the message ---- */

/*
 * Line ends become CRLF (a bare LF or a bare CR too, so that no byte
 * sequence in the message can look like the end of data to a lenient
 * server: the SMTP-smuggling lesson), and a dot opening a line is doubled.
 */
void
cli_data_finish(struct cli_conn *c)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);

	smtp_data_enc_finish(&c->enc, out);
	c->state = S_READY;
	c->dmode = D_NONE;
	send_dot(c);
	cli_arm(c);
}

/* Feed the file to the output until the high watermark. */
void
cli_data_from_file(struct cli_conn *c)
{
	char chunk[FILE_CHUNK];
	struct evbuffer *out = bufferevent_get_output(c->bev);
	ssize_t n;

	while (c->state == S_DATA && c->data_left > 0 &&
	    evbuffer_get_length(out) < HIWAT) {
		n = pread(c->data_fd, chunk, c->data_left < FILE_CHUNK ?
		    (size_t)c->data_left : FILE_CHUNK, c->data_off);
		if (n <= 0) {
			/* Never end a message we could not read whole. */
			cli_fail(c, "local error reading the message: %s",
			    n == 0 ? "file shorter than expected" :
			    strerror(errno));
			return;
		}
		smtp_data_enc_feed(&c->enc, chunk, (size_t)n,
		    bufferevent_get_output(c->bev));
		c->data_off += n;
		c->data_left -= n;
	}
	if (c->state == S_DATA && c->data_left == 0)
		cli_data_finish(c);
}

static void
data_begin(struct cli_conn *c)
{
	c->state = S_DATA;
	smtp_data_enc_init(&c->enc);
	cli_arm(c);
	if (c->dmode == D_FD)
		cli_data_from_file(c);
	else if (c->cb.data_start != NULL)
		c->cb.data_start(c, c->arg);
}

/* ---- replies, by the command they answer ---- */

static void
caps_parse(struct cli_conn *c, const char *text)
{
	static const struct { const char *kw; unsigned flag; } kws[] = {
		{ "PIPELINING", CLI_CAP_PIPELINING },
		{ "SIZE", CLI_CAP_SIZE }, { "8BITMIME", CLI_CAP_8BITMIME },
		{ "DSN", CLI_CAP_DSN }, { "SMTPUTF8", CLI_CAP_SMTPUTF8 },
		{ "STARTTLS", CLI_CAP_STARTTLS }, { "AUTH", CLI_CAP_AUTH },
		{ "XFORWARD", CLI_CAP_XFORWARD },
		{ "CHUNKING", CLI_CAP_CHUNKING },
		{ "ENHANCEDSTATUSCODES", CLI_CAP_ENHANCEDSTATUSCODES },
	};
	const char *line = strchr(text, '\n'), *arg;
	size_t i, kwlen;

	memset(&c->caps, 0, sizeof(c->caps));
	c->caps.esmtp = 1;
	while (line != NULL) {		/* the first line is the greeting */
		line++;
		kwlen = strcspn(line, " =\n");
		arg = line + kwlen + (line[kwlen] == ' ' || line[kwlen] == '=');
		for (i = 0; i < sizeof(kws) / sizeof(kws[0]); i++) {
			if (strlen(kws[i].kw) != kwlen ||
			    strncasecmp(line, kws[i].kw, kwlen) != 0)
				continue;
			c->caps.flags |= kws[i].flag;
			/* a bare SIZE is no fixed limit (RFC 1870); strtoull
			 * alone would skip the "\n" and read the next
			 * keyword's digits ("8BITMIME": 8 bytes) */
			if (kws[i].flag == CLI_CAP_SIZE)
				c->caps.size = isdigit((unsigned char)*arg) ?
				    strtoull(arg, NULL, 10) : 0;
			else if (kws[i].flag == CLI_CAP_AUTH)
				snprintf(c->caps.auth, sizeof(c->caps.auth),
				    "%.*s", (int)strcspn(arg, "\n"), arg);
			else if (kws[i].flag == CLI_CAP_XFORWARD)
				snprintf(c->caps.xforward,
				    sizeof(c->caps.xforward), "%.*s",
				    (int)strcspn(arg, "\n"), arg);
		}
		line = strchr(line, '\n');
	}
}

void
cli_become_ready(struct cli_conn *c)
{
	c->state = S_READY;
	if (c->cb.ready != NULL)
		c->cb.ready(c, &c->caps, c->arg);
}

/* Each returns 1 when the command is answered (0: more replies due). */
static int
on_ehlo(struct cli_conn *c, struct cmd *k, const struct cli_reply *r)
{
	if (r->code / 100 == 2) {
		if (k->type == C_EHLO)
			caps_parse(c, r->text);
		else
			memset(&c->caps, 0, sizeof(c->caps));
		snprintf(c->caps.name, sizeof(c->caps.name), "%.*s",
		    (int)strcspn(r->text, " \r\n"), r->text);
		cli_session_next(c);
	} else if (k->type == C_EHLO && !c->s.lmtp && r->code / 100 == 5) {
		cli_send_cmd(c, cli_cmd_new(C_HELO, 0));	/* RFC 5321 §3.2 */
	} else {
		cli_close_with(c, r);
	}
	return 1;
}

static void
keep_mail_failure(struct cli_conn *c, const struct cli_reply *r)
{
	if (r->code / 100 == 2 || c->mail_fail.code != 0)
		return;
	c->mail_fail = *r;
	c->mail_fail_text = xstrdup(r->text);
	c->mail_fail.text = c->mail_fail_text;
}

static int
on_mail(struct cli_conn *c, struct cmd *k, const struct cli_reply *r)
{
	if (k->type == C_MAIL) {
		if (r->code / 100 == 2)
			c->need_rset = 1;
		if (c->cb.mail != NULL)
			c->cb.mail(c, r, c->arg);
	}
	keep_mail_failure(c, r);
	return 1;
}

static int
on_rcpt(struct cli_conn *c, struct cmd *k, const struct cli_reply *r)
{
	if (r->code / 100 == 2)
		c->srv_accepted++;	/* the server's view, whatever ours */
	cli_give_rcpt(c, k->idx, c->mail_fail.code != 0 ? &c->mail_fail : r);
	return 1;
}

static int
on_data(struct cli_conn *c, struct cmd *k, const struct cli_reply *r)
{
	struct cli_reply nothing;
	int i;

	(void)k;
	if (r->code == 354 && c->naccepted > 0 && c->mail_fail.code == 0) {
		data_begin(c);
		return 1;
	}
	if (r->code == 354) {
		/*
		 * 354 with nothing we want to send. If the server took no
		 * recipient, an empty message ends it (RFC 2920 §3.1): SMTP
		 * then answers once. But if it took some (our XFORWARD or
		 * MAIL failed after all) an empty message would be
		 * delivered, and LMTP's count of replies is the server's:
		 * drop the connection instead, which abandons the data.
		 */
		c->data_dropped = 1;
		if (!c->s.lmtp && c->srv_accepted == 0) {
			evbuffer_add(bufferevent_get_output(c->bev), ".\r\n",
			    3);
			send_dot(c);
			return 1;
		}
		cli_fail(c, "%s accepted DATA for a transaction we abandoned",
		    c->peer);
		return 1;
	}
	if (r->code / 100 != 4 && r->code / 100 != 5) {
		/*
		 * 2xx or another 3xx: no message went, so this is no
		 * delivery (a 250 given as final reply would lose it), and
		 * the server's state is unknown (a desynchronised reply
		 * stream, or one waiting for data): close, which defers.
		 */
		cli_failx(c, "4.5.0", "%s answered DATA with %d instead of 354",
		    c->peer, r->code);
		return 1;
	}
	cli_reply_local(&nothing, r->code, r->status, r->text);
	nothing.local = 0;
	for (i = 0; i < c->nrcpt && !c->freed; i++)
		cli_give_final(c, i, c->mail_fail.code ? &c->mail_fail : &nothing);
	c->data_dropped = 1;
	return 1;
}

/* SMTP: one reply for all; LMTP: one per accepted recipient, in order. */
static int
on_dot(struct cli_conn *c, struct cmd *k, const struct cli_reply *r)
{
	(void)k;
	c->need_rset = 0;
	if (c->data_dropped || !c->txn)
		return 1;
	if (!c->s.lmtp) {
		for (int i = 0; i < c->nrcpt && !c->freed; i++)
			cli_give_final(c, i, r);
	} else {
		while (c->next_final < c->nrcpt &&
		    c->rcpts[c->next_final].state != 1)
			c->next_final++;
		if (c->next_final < c->nrcpt)
			cli_give_final(c, c->next_final++, r);
		while (c->next_final < c->nrcpt &&
		    c->rcpts[c->next_final].state != 1)
			c->next_final++;
		if (c->next_final < c->nrcpt)
			return 0;
	}
	if (!c->freed)
		cli_txn_end(c);
	return 1;
}

static int
on_rset(struct cli_conn *c, struct cmd *k, const struct cli_reply *r)
{
	if (k->type == C_QUIT || r->code / 100 != 2)
		cli_close_with(c, r);
	return 1;
}

static int (*const handlers[C_NTYPES])(struct cli_conn *, struct cmd *,
    const struct cli_reply *) = {
	[C_EHLO] = on_ehlo, [C_HELO] = on_ehlo, [C_XFORWARD] = on_mail,
	[C_MAIL] = on_mail, [C_RCPT] = on_rcpt, [C_DATA] = on_data,
	[C_DOT] = on_dot, [C_RSET] = on_rset, [C_QUIT] = on_rset,
	[C_STARTTLS] = cli_on_starttls, [C_AUTH] = cli_on_auth,
};

/* ---- matching a reply to its command ---- */

static void
on_greeting(struct cli_conn *c, const struct cli_reply *r)
{
	if (r->code / 100 != 2) {
		cli_close_with(c, r);
		return;
	}
	c->state = S_HELO;
	cli_send_cmd(c, cli_cmd_new(C_EHLO, 0));
}

/* A reply while the message is going out: the server gave up on it. */
static void
on_early_reply(struct cli_conn *c, const struct cli_reply *r)
{
	struct cli_reply copy = *r;

	if (copy.code / 100 == 2 || copy.code == 354)
		copy.code = 451;
	cli_close_with(c, &copy);
}

void
cli_dispatch(struct cli_conn *c)
{
	struct cmd *k = TAILQ_FIRST(&c->inflight);

	c->deadline_key = NULL;		/* the next wait gets its own time */
	if (c->state == S_GREETING) {
		on_greeting(c, &c->cur);
	} else if (c->state == S_DATA) {
		on_early_reply(c, &c->cur);
	} else if (k == NULL) {
		cli_fail(c, "unexpected reply from %s: %d %s", c->peer, c->cur.code,
		    c->cur.text);
	} else {
		/* Out of the list first: the handler's callbacks may queue
		 * the next commands. LMTP's dot stays for its next reply. */
		TAILQ_REMOVE(&c->inflight, k, entry);
		c->ninflight--;
		if (k->stale || handlers[k->type](c, k, &c->cur) || c->freed) {
			cli_cmd_free(k);
		} else {
			TAILQ_INSERT_HEAD(&c->inflight, k, entry);
			c->ninflight++;
		}
		if (!c->freed)
			maybe_txn_end(c);
	}
}
