/*
 * The submission server: LMTP (RFC 2033) on $run_directory/submit, for
 * smtpd and sendmail. One table row per command; the DATA decoder writes
 * straight into the queue file (queue_file.c); after the final dot the
 * session pauses (reads disabled) until the group commit has the file and
 * its directory entry on stable storage, then sends one reply per accepted
 * recipient and goes on with what the client pipelined meanwhile.
 *
 * Bounds: command lines CMD_LINE_MAX; recipients smtpd_recipient_limit;
 * message_size_limit (SIZE at MAIL, and counted during DATA: the rest is
 * read and thrown away, then 552 5.3.4); a data line without CRLF is
 * written in pieces, so no line length can exhaust memory. Only CRLF.CRLF
 * ends the data: a bare LF or CR never does (SMTP smuggling).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "conf.h"
#include "event.h"
#include "log.h"
#include "queued.h"
#include "submit.h"
#include "xalloc.h"

#define CMD_LINE_MAX	4096
#define DATA_CHUNK	(64 * 1024)
#define SESSION_IDLE	300	/* seconds */

enum sstate { S_CMD, S_DATA, S_WAIT };

struct session {
	struct bufferevent *bev;
	enum sstate state;
	int lhlo, closing;
	struct submit_tx tx;
	struct qf_writer w;
	int at_bol, too_big;
	uid_t uid;
	LIST_ENTRY(session) link;
};

static LIST_HEAD(, session) sessions = LIST_HEAD_INITIALIZER(sessions);
static struct listener *submit_listener;
static int stopping;

static void session_input(struct session *s);

static void
reply(struct session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
reply(struct session *s, const char *fmt, ...)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	va_list ap;

	va_start(ap, fmt);
	evbuffer_add_vprintf(out, fmt, ap);
	va_end(ap);
	evbuffer_add(out, "\r\n", 2);
}

static void
tx_reset(struct submit_tx *tx)
{
	for (int i = 0; i < tx->nrcpt; i++) {
		free(tx->rcpts[i].addr);
		free(tx->rcpts[i].orcpt);
	}
	for (int i = 0; i < tx->nleaf; i++) {
		free(tx->leaves[i].addr);
		free(tx->leaves[i].reason);
	}
	free(tx->rcpts);
	free(tx->leaves);
	free(tx->envid);
	free(tx->auth);
	free(tx->cur.orcpt);
	buf_free(&tx->xforward);
	memset(tx, 0, sizeof(*tx));
	buf_init(&tx->xforward, 1024);
}

static void
session_free(struct session *s)
{
	LIST_REMOVE(s, link);
	if (s->state == S_DATA)
		qf_abort(&s->w);
	tx_reset(&s->tx);
	buf_free(&s->tx.xforward);
	bufferevent_free(s->bev);
	free(s);
}

/* ---- commands ------------------------------------------------------------ */

static void
cmd_lhlo(struct session *s, const char *arg)
{
	if (arg[0] == '\0') {
		reply(s, "501 5.5.4 Syntax: LHLO hostname");
		return;
	}
	tx_reset(&s->tx);
	s->lhlo = 1;
	reply(s, "250-%s\r\n250-PIPELINING\r\n250-SIZE %lld\r\n250-8BITMIME\r\n"
	    "250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n250-DSN\r\n"
	    "250 XFORWARD NAME ADDR PORT PROTO HELO IDENT", queued_hostname(),
	    conf_num(C_message_size_limit));
}

static void
cmd_mail(struct session *s, const char *arg)
{
	const char *err, *rest;

	if (s->tx.has_mail) {
		reply(s, "503 5.5.1 Error: nested MAIL command");
		return;
	}
	if (strncasecmp(arg, "FROM:", 5) != 0) {
		reply(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
		return;
	}
	if ((err = parse_path(arg + 5, s->tx.sender, sizeof(s->tx.sender), &rest)) != NULL ||
	    (err = parse_mail_params(&s->tx, rest)) != NULL) {
		free(s->tx.envid);
		free(s->tx.auth);
		s->tx.envid = s->tx.auth = NULL;
		s->tx.body8 = s->tx.smtputf8 = s->tx.ret_hdrs = 0;
		reply(s, "%s", err);
		return;
	}
	s->tx.has_mail = 1;
	qid_new(s->tx.qid);	/* smtpd puts it in Received: and its logs */
	reply(s, "250 2.1.0 Ok, queue id %s", s->tx.qid);
}

static const char *
add_rcpt(struct session *s, const char *addr)
{
	static char why[300];
	struct submit_tx *tx = &s->tx;
	char msg[256];

	if (tx->nrcpt >= conf_num(C_smtpd_recipient_limit))
		return "452 4.5.3 Error: too many recipients";
	if (addr[0] == '\0')
		return "501 5.1.3 Empty recipient address";
	int n0 = tx->nleaf;

	if (route_rcpt(addr, tx->nrcpt, &tx->leaves, &tx->nleaf, msg, sizeof(msg)) != 0) {
		snprintf(why, sizeof(why), "451 %s", msg);
		return why;
	}
	if (tx->nleaf > RCPT_MAX) {	/* the queue file's bound (hermod-queue(5)) */
		for (int i = n0; i < tx->nleaf; i++) {
			free(tx->leaves[i].addr);
			free(tx->leaves[i].reason);
		}
		tx->nleaf = n0;
		return "452 4.5.3 Error: too many recipients after alias expansion";
	}
	tx->rcpts = xrealloc(tx->rcpts, (size_t)(tx->nrcpt + 1) * sizeof(*tx->rcpts));
	tx->cur.addr = xstrdup(addr);
	tx->rcpts[tx->nrcpt++] = tx->cur;
	memset(&tx->cur, 0, sizeof(tx->cur));
	return NULL;
}

static void
cmd_rcpt(struct session *s, const char *arg)
{
	char addr[ADDR_MAX];
	const char *err, *rest;

	if (!s->tx.has_mail) {
		reply(s, "503 5.5.1 Error: need MAIL command");
		return;
	}
	if (strncasecmp(arg, "TO:", 3) != 0) {
		reply(s, "501 5.5.4 Syntax: RCPT TO:<address>");
		return;
	}
	if ((err = parse_path(arg + 3, addr, sizeof(addr), &rest)) == NULL &&
	    (err = parse_rcpt_params(&s->tx, rest)) == NULL &&
	    (err = add_rcpt(s, addr)) == NULL) {
		reply(s, "250 2.1.5 Ok");
		return;
	}
	free(s->tx.cur.orcpt);
	memset(&s->tx.cur, 0, sizeof(s->tx.cur));
	reply(s, "%s", err);
}

static void
cmd_data(struct session *s, const char *arg)
{
	struct submit_tx *tx = &s->tx;
	struct qf_env env = { .qid = tx->qid, .sender = tx->sender, .envid = tx->envid,
	    .auth = tx->auth, .client = tx->xforward.len ? tx->xforward.data : NULL,
	    .body8 = tx->body8, .smtputf8 = tx->smtputf8, .ret_hdrs = tx->ret_hdrs };
	int err;

	(void)arg;
	if (!tx->has_mail || tx->nrcpt == 0) {
		reply(s, "503 5.5.1 Error: need %s command", tx->has_mail ? "RCPT" : "MAIL");
		return;
	}
	struct timeval tv;

	gettimeofday(&tv, NULL);
	env.arrival = tx->arrival = (double)tv.tv_sec + tv.tv_usec / 1e6;
	if (tx->xforward.len == 0 && s->uid != (uid_t)-1) {	/* a local submitter */
		buf_printf(&tx->xforward, "uid=%ld", (long)s->uid);
		env.client = tx->xforward.data;
	}
	if ((err = qf_begin(&s->w, &env, tx->rcpts, tx->nrcpt, tx->leaves, tx->nleaf)) != 0) {
		reply(s, err == ENOSPC || err == EDQUOT ?
		    "452 4.3.1 Insufficient system storage" :
		    "451 4.3.0 Local error: cannot create the queue file");
		return;
	}
	s->tx.cur.addr = NULL;
	s->state = S_DATA;
	s->at_bol = 1;
	s->too_big = 0;
	reply(s, "354 End data with <CR><LF>.<CR><LF>");
}

static void
cmd_rset(struct session *s, const char *arg)
{
	(void)arg;
	tx_reset(&s->tx);
	reply(s, "250 2.0.0 Ok");
}

static void
cmd_noop(struct session *s, const char *arg)
{
	(void)arg;
	reply(s, "250 2.0.0 Ok");
}

static void
cmd_quit(struct session *s, const char *arg)
{
	(void)arg;
	reply(s, "221 2.0.0 Bye");
	s->closing = 1;
}

static void
cmd_xforward(struct session *s, const char *arg)
{
	const char *err;
	char *line = xasprintf(" %s", arg);

	if (s->uid != 0 && s->uid != geteuid())	/* smtpd, root: not local users */
		reply(s, "550 5.7.0 Error: XFORWARD not permitted");
	else if (s->tx.has_mail)
		reply(s, "503 5.5.1 Error: XFORWARD inside a transaction");
	else if ((err = parse_xforward(&s->tx, line)) != NULL)
		reply(s, "%s", err);
	else
		reply(s, "250 2.0.0 Ok");
	free(line);
}

static void
cmd_helo(struct session *s, const char *arg)
{
	(void)arg;
	reply(s, "500 5.5.1 Error: this is LMTP, say LHLO");
}

static const struct {
	const char *name;
	void (*fn)(struct session *, const char *);
	int needs_lhlo;
} commands[] = {
	{ "LHLO", cmd_lhlo, 0 }, { "MAIL", cmd_mail, 1 }, { "RCPT", cmd_rcpt, 1 },
	{ "DATA", cmd_data, 1 }, { "RSET", cmd_rset, 0 }, { "NOOP", cmd_noop, 0 },
	{ "QUIT", cmd_quit, 0 }, { "XFORWARD", cmd_xforward, 1 },
	{ "HELO", cmd_helo, 0 }, { "EHLO", cmd_helo, 0 },
};

static void
command(struct session *s, char *line)
{
	size_t n = strcspn(line, " ");
	const char *arg = line[n] ? line + n + 1 : "";

	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strlen(commands[i].name) == n && strncasecmp(line, commands[i].name, n) == 0) {
			if (commands[i].needs_lhlo && !s->lhlo)
				reply(s, "503 5.5.1 Error: send LHLO first");
			else
				commands[i].fn(s, arg);
			return;
		}
	reply(s, "502 5.5.2 Error: command not recognized");
}

/* ---- after the final dot ------------------------------------------------- */

static void
committed(void *arg, int err, const char *qid)
{
	struct session *s = arg;

	for (int i = 0; i < s->tx.nrcpt; i++)
		if (err == 0)
			reply(s, "250 2.0.0 %s queued", qid);
		else
			reply(s, err == ENOSPC || err == EDQUOT ?
			    "452 4.3.1 Insufficient system storage" :
			    "451 4.3.0 Local error: message not queued");
	tx_reset(&s->tx);
	s->state = S_CMD;
	if (s->closing || stopping) {
		session_free(s);
		return;
	}
	bufferevent_enable(s->bev, EV_READ);
	session_input(s);
}

static void
end_of_data(struct session *s)
{
	struct submit_tx *tx = &s->tx;
	struct qf_env env = { .qid = tx->qid, .sender = tx->sender, .envid = tx->envid,
	    .auth = tx->auth, .client = tx->xforward.len ? tx->xforward.data : NULL,
	    .body8 = tx->body8, .smtputf8 = tx->smtputf8, .ret_hdrs = tx->ret_hdrs };
	int err = qf_finish(&s->w);
	const char *why = NULL;

	if (s->too_big)
		why = "552 5.3.4 Message size exceeds fixed limit";
	else if (err == ENOSPC || err == EDQUOT)
		why = "452 4.3.1 Insufficient system storage";
	else if (err != 0)
		why = "451 4.3.0 Local error: cannot write the queue file";
	if (why != NULL) {
		if (err != 0)
			log_warn("queue file %s: %s", s->w.tmp_path, strerror(err));
		qf_abort(&s->w);
		for (int i = 0; i < tx->nrcpt; i++)
			reply(s, "%s", why);
		tx_reset(tx);
		s->state = S_CMD;
		return;
	}
	env.arrival = tx->arrival;
	s->state = S_WAIT;
	bufferevent_disable(s->bev, EV_READ);
	/* the envelope as written: msg_build copies it */
	struct msg *m = msg_build(&s->w, &env, tx->rcpts, tx->nrcpt, tx->leaves, tx->nleaf);
	queue_commit(&s->w, m, committed, s);
}

/* ---- DATA decoding --------------------------------------------------------- */

static void
data_bytes(struct session *s, const char *p, size_t n)
{
	if (s->too_big)
		return;
	if (s->w.size + (off_t)n > conf_num(C_message_size_limit)) {
		s->too_big = 1;
		return;
	}
	qf_write(&s->w, p, n);
}

/* One line (without its CRLF); returns 1 at the final dot. */
static int
data_line(struct session *s, const char *line, size_t len)
{
	if (s->at_bol && len == 1 && line[0] == '.')
		return 1;
	if (s->at_bol && len > 0 && line[0] == '.') {
		line++;
		len--;
	}
	data_bytes(s, line, len);
	data_bytes(s, "\r\n", 2);
	s->at_bol = 1;
	return 0;
}

/* Returns 1 when the data ended, 0 when more input is needed. */
static int
data_input(struct session *s, struct evbuffer *in)
{
	char chunk[DATA_CHUNK];

	for (;;) {
		size_t eol = 0, len = evbuffer_get_length(in);
		struct evbuffer_ptr p = evbuffer_search_eol(in, NULL, &eol,
		    EVBUFFER_EOL_CRLF_STRICT);

		if (p.pos < 0 || (size_t)p.pos > sizeof(chunk)) {
			/* no CRLF yet: a long line goes out in pieces; keep a
			 * trailing CR, it may start the CRLF */
			if (len <= sizeof(chunk) / 2)
				return 0;
			size_t n = evbuffer_remove(in, chunk, p.pos < 0 ?
			    len - 1 < sizeof(chunk) / 2 ? len - 1 : sizeof(chunk) / 2 :
			    sizeof(chunk) / 2);
			const char *q = chunk;

			if (s->at_bol && q[0] == '.') {
				q++;
				n--;
			}
			data_bytes(s, q, n);
			s->at_bol = 0;
			continue;
		}
		evbuffer_remove(in, chunk, (size_t)p.pos);
		evbuffer_drain(in, 2);
		if (data_line(s, chunk, (size_t)p.pos)) {
			end_of_data(s);
			return 1;
		}
	}
}

/* ---- the session ------------------------------------------------------------- */

static void
session_input(struct session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	char *line;
	size_t len;

	while (!s->closing && s->state != S_WAIT) {
		if (s->state == S_DATA) {
			if (!data_input(s, in))
				break;
			continue;
		}
		if ((line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF)) == NULL) {
			if (evbuffer_get_length(in) > CMD_LINE_MAX) {
				reply(s, "500 5.5.2 Error: line too long");
				s->closing = 1;
			}
			break;
		}
		if (len > CMD_LINE_MAX || memchr(line, '\0', len) != NULL)
			reply(s, "500 5.5.2 Error: bad command line");
		else
			command(s, line);
		free(line);
	}
	if (s->closing && s->state != S_WAIT) {
		bufferevent_disable(s->bev, EV_READ);
		if (evbuffer_get_length(bufferevent_get_output(s->bev)) == 0)
			session_free(s);
	}
}

static void
on_read(struct bufferevent *bev, void *arg)
{
	(void)bev;
	session_input(arg);
}

static void
on_write(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;

	(void)bev;
	if (s->closing && s->state != S_WAIT)
		session_free(s);
}

static void
on_event(struct bufferevent *bev, short what, void *arg)
{
	struct session *s = arg;

	(void)bev;
	if (what & BEV_EVENT_TIMEOUT)
		log_info("submit: session timed out");
	if (s->state == S_WAIT) {	/* freed when the commit answers */
		s->closing = 1;
		bufferevent_disable(s->bev, EV_READ | EV_WRITE);
		return;
	}
	session_free(s);
}

static void
on_accept(evutil_socket_t fd, struct sockaddr *sa, socklen_t len, void *arg)
{
	struct session *s;
	struct timeval idle = { SESSION_IDLE, 0 };

	(void)sa, (void)len, (void)arg;
	s = xcalloc(1, sizeof(*s));
	s->w.fd = -1;
	buf_init(&s->tx.xforward, 1024);
	if (peer_cred(fd, &s->uid, NULL, NULL) < 0)
		s->uid = (uid_t)-1;
	s->bev = bufferevent_socket_new(queued_base, fd, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(s->bev, on_read, on_write, on_event, s);
	bufferevent_set_timeouts(s->bev, &idle, &idle);
	LIST_INSERT_HEAD(&sessions, s, link);
	reply(s, "220 %s LMTP Hermod queued", queued_hostname());
	bufferevent_enable(s->bev, EV_READ);
}

int
submit_init(struct event_base *base, int fd)
{
	char err[256];

	submit_listener = listener_from_fd(base, fd, "submit", on_accept, NULL,
	    err, sizeof(err));
	if (submit_listener == NULL)
		log_crit("submit socket: %s", err);
	return submit_listener != NULL ? 0 : -1;
}

int
submit_busy(void)
{
	struct session *s;
	int n = 0;

	LIST_FOREACH(s, &sessions, link)
		n += s->state != S_CMD;
	return n;
}

void
submit_stop(void)
{
	struct session *s, *next;

	stopping = 1;
	if (submit_listener != NULL)
		listener_disable(submit_listener);
	for (s = LIST_FIRST(&sessions); s != NULL; s = next) {
		next = LIST_NEXT(s, link);
		if (s->state == S_CMD) {
			reply(s, "421 4.3.2 Service shutting down");
			s->closing = 1;
			bufferevent_disable(s->bev, EV_READ);
		}
	}
}
