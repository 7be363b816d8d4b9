/*
 * The submission server: LMTP (RFC 2033) on $run_directory/submit, for
 * smtpd and sendmail. The protocol mechanics (bounded command lines, the
 * command table with its states, errors, the idle timeout, pipelining,
 * output back-pressure, the DATA decoder that only CRLF.CRLF ends) are
 * lib/smtp_server's; this file holds queued's decisions. The decoded data
 * goes straight into the queue file (queue_file.c); after the final dot
 * the session pauses until the group commit has the file and its
 * directory entry on stable storage, then sends one reply per accepted
 * recipient and goes on with what the client pipelined meanwhile.
 *
 * Bounds: command lines CMD_LINE_MAX; recipients smtpd_recipient_limit;
 * message_size_limit (SIZE at MAIL, and counted during DATA: the rest is
 * read and thrown away, then 552 5.3.4); the decoder streams, so no data
 * line length can exhaust memory.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/event.h>

#include "conf.h"
#include "event.h"
#include "log.h"
#include "queued.h"
#include "smtp_server.h"
#include "submit.h"
#include "xalloc.h"

#define CMD_LINE_MAX	4096	/* without CRLF */
#define SESSION_IDLE	300	/* seconds */

/* Session states (srv_state()); the engine checks them per command. */
enum sstate {
	S_INIT,		/* before LHLO */
	S_CMD,		/* after LHLO */
	S_DATA,		/* writing the queue file */
	S_WAIT,		/* paused: waiting for the group commit */
};

struct session {
	struct srv_session *srv;	/* NULL once closed (see on_close) */
	struct submit_tx tx;
	struct qf_writer w;
	int too_big;
	int one_txn;		/* pickup's: ends after its first message */
	uid_t uid;
	LIST_ENTRY(session) link;
};

static LIST_HEAD(, session) sessions = LIST_HEAD_INITIALIZER(sessions);
static struct listener *submit_listener;
static int stopping;

/* A whole reply line "DDD x.y.z text" as submit_parse.c returns them. */
static void
reply(struct session *s, const char *line)
{
	srv_reply_line(s->srv, line);
}

static void
tx_reset(struct submit_tx *tx)
{
	if (tx->named)		/* no DATA: the file goes back, its id is not reused */
		spool_named_release(tx->qid);
	for (int i = 0; i < tx->nrcpt; i++) {
		free(tx->rcpts[i].addr);
		free(tx->rcpts[i].orcpt);
	}
	free(tx->rcpts);
	leaves_free(&tx->leaves);
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
	tx_reset(&s->tx);
	buf_free(&s->tx.xforward);
	free(s);
}

/* ---- commands ------------------------------------------------------------ */

static void
cmd_lhlo(struct srv_session *srv, char *arg)
{
	struct session *s = srv_udata(srv);

	if (arg[0] == '\0') {
		reply(s, "501 5.5.4 Syntax: LHLO hostname");
		return;
	}
	tx_reset(&s->tx);
	srv_set_state(srv, S_CMD);
	srv_reply(srv, 250, NULL, "%s\nPIPELINING\nSIZE %lld\n8BITMIME\n"
	    "ENHANCEDSTATUSCODES\nSMTPUTF8\nDSN\n"
	    "XFORWARD NAME ADDR PORT PROTO HELO IDENT", queued_hostname(),
	    conf_num(C_message_size_limit));
}

static void
cmd_mail(struct srv_session *srv, char *arg)
{
	struct session *s = srv_udata(srv);
	const char *err;
	char *rest;

	if (s->tx.has_mail) {
		reply(s, "503 5.5.1 Error: nested MAIL command");
		return;
	}
	if (strncasecmp(arg, "FROM:", 5) != 0) {
		reply(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
		return;
	}
	if ((err = parse_path(arg + 5, 1, s->tx.sender, sizeof(s->tx.sender), &rest)) != NULL ||
	    (err = parse_mail_params(&s->tx, rest)) != NULL) {
		free(s->tx.envid);
		free(s->tx.auth);
		s->tx.envid = s->tx.auth = NULL;
		s->tx.body8 = s->tx.smtputf8 = s->tx.ret_hdrs = 0;
		reply(s, err);
		return;
	}
	s->tx.has_mail = 1;
	/* smtpd puts the id in Received: and its logs. A file named ahead
	 * makes a lone commit one fsync (remove.c). */
	if (!(s->tx.named = spool_named(s->tx.qid)))
		qid_new(s->tx.qid);
	srv_reply(srv, 250, "2.1.0", "Ok, queue id %s", s->tx.qid);
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
	/* Each RCPT of a big list expands it again (list+1, list+2, ...),
	 * its leaves all duplicates: bounded per message, or 1000 RCPTs of
	 * a 9,000-member list kept the loop busy for seconds. The client
	 * sends the rest in another transaction. */
	if (tx->leaves.nodes >= ROUTE_NODES_MAX)
		return "452 4.5.3 Error: too many recipients after alias expansion";
	int n0 = tx->leaves.n;

	if (route_rcpt(addr, tx->nrcpt, &tx->leaves, msg, sizeof(msg)) != 0) {
		snprintf(why, sizeof(why), "451 %s", msg);
		return why;
	}
	if (tx->leaves.n > RCPT_MAX) {	/* the queue file's bound (hermod-queue(5)) */
		leaves_truncate(&tx->leaves, n0);
		return "452 4.5.3 Error: too many recipients after alias expansion";
	}
	tx->rcpts = xrealloc(tx->rcpts, (size_t)(tx->nrcpt + 1) * sizeof(*tx->rcpts));
	tx->cur.addr = xstrdup(addr);
	tx->rcpts[tx->nrcpt++] = tx->cur;
	memset(&tx->cur, 0, sizeof(tx->cur));
	return NULL;
}

static void
cmd_rcpt(struct srv_session *srv, char *arg)
{
	struct session *s = srv_udata(srv);
	char addr[ADDR_MAX];
	const char *err;
	char *rest;

	if (!s->tx.has_mail) {
		reply(s, "503 5.5.1 Error: need MAIL command");
		return;
	}
	if (strncasecmp(arg, "TO:", 3) != 0) {
		reply(s, "501 5.5.4 Syntax: RCPT TO:<address>");
		return;
	}
	if ((err = parse_path(arg + 3, 0, addr, sizeof(addr), &rest)) == NULL &&
	    (err = parse_rcpt_params(&s->tx, rest)) == NULL &&
	    (err = add_rcpt(s, addr)) == NULL) {
		reply(s, "250 2.1.5 Ok");
		return;
	}
	free(s->tx.cur.orcpt);
	memset(&s->tx.cur, 0, sizeof(s->tx.cur));
	reply(s, err);
}

static void
cmd_data(struct srv_session *srv, char *arg)
{
	struct session *s = srv_udata(srv);
	struct submit_tx *tx = &s->tx;
	struct qf_env env = { .qid = tx->qid, .named = tx->named, .sender = tx->sender,
	    .envid = tx->envid, .auth = tx->auth,
	    .client = tx->xforward.len ? tx->xforward.data : NULL,
	    .body8 = tx->body8, .smtputf8 = tx->smtputf8, .ret_hdrs = tx->ret_hdrs };
	struct timeval tv;
	int err;

	(void)arg;
	if (!tx->has_mail || tx->nrcpt == 0) {
		srv_reply(srv, 503, "5.5.1", "Error: need %s command",
		    tx->has_mail ? "RCPT" : "MAIL");
		return;
	}
	gettimeofday(&tv, NULL);
	env.arrival = tx->arrival = (double)tv.tv_sec + tv.tv_usec / 1e6;
	if (tx->xforward.len == 0 && s->uid != (uid_t)-1) {	/* a local submitter */
		buf_printf(&tx->xforward, "uid=%ld", (long)s->uid);
		env.client = tx->xforward.data;
	}
	err = qf_begin(&s->w, &env, tx->rcpts, tx->nrcpt, tx->leaves.v, tx->leaves.n);
	tx->named = 0;		/* the writer's now, or left for recovery */
	if (err != 0) {
		reply(s, err == ENOSPC || err == EDQUOT ?
		    "452 4.3.1 Insufficient system storage" :
		    "451 4.3.0 Local error: cannot create the queue file");
		return;
	}
	s->tx.cur.addr = NULL;
	srv_set_state(srv, S_DATA);
	s->too_big = 0;
	srv_reply_id(srv, RPL_DATA_GO);
	srv_data_start(srv, 0);		/* the size is counted in on_data */
}

static void
cmd_rset(struct srv_session *srv, char *arg)
{
	(void)arg;
	tx_reset(&((struct session *)srv_udata(srv))->tx);
	srv_reply(srv, 250, "2.0.0", "Ok");
}

static void
cmd_noop(struct srv_session *srv, char *arg)
{
	(void)arg;
	srv_reply(srv, 250, "2.0.0", "Ok");
}

static void
cmd_quit(struct srv_session *srv, char *arg)
{
	(void)arg;
	srv_reply(srv, 221, "2.0.0", "Bye");
	srv_close_after_flush(srv);
}

static void
cmd_xforward(struct srv_session *srv, char *arg)
{
	struct session *s = srv_udata(srv);
	const char *err;
	char *line = xasprintf(" %s", arg);

	if (s->uid != 0 && s->uid != geteuid())	/* smtpd, root: not local users */
		reply(s, "550 5.7.0 Error: XFORWARD not permitted");
	else if (s->tx.has_mail)
		reply(s, "503 5.5.1 Error: XFORWARD inside a transaction");
	else if ((err = parse_xforward(&s->tx, line)) != NULL)
		reply(s, err);
	else
		reply(s, "250 2.0.0 Ok");
	free(line);
}

static void
cmd_helo(struct srv_session *srv, char *arg)
{
	(void)arg;
	srv_reply(srv, 500, "5.5.1", "Error: this is LMTP, say LHLO");
}

#define LHLO_DONE	SRV_STATE(S_CMD)

static const struct srv_cmd commands[] = {
	{ "LHLO", 0, SRV_ARG_ANY, cmd_lhlo },
	{ "MAIL", LHLO_DONE, SRV_ARG_ANY, cmd_mail },
	{ "RCPT", LHLO_DONE, SRV_ARG_ANY, cmd_rcpt },
	{ "DATA", LHLO_DONE, SRV_ARG_ANY, cmd_data },
	{ "RSET", 0, SRV_ARG_ANY, cmd_rset },
	{ "NOOP", 0, SRV_ARG_ANY, cmd_noop },
	{ "QUIT", 0, SRV_ARG_ANY, cmd_quit },
	{ "XFORWARD", LHLO_DONE, SRV_ARG_ANY, cmd_xforward },
	{ "HELO", 0, SRV_ARG_ANY, cmd_helo },
	{ "EHLO", 0, SRV_ARG_ANY, cmd_helo },
	{ NULL, 0, 0, NULL },
};

/* The only state a command can be refused in is S_INIT. */
static void
on_bad_state(struct srv_session *srv, const struct srv_cmd *cmd)
{
	(void)cmd;
	srv_reply(srv, 503, "5.5.1", "Error: send LHLO first");
}

/* ---- DATA and the commit ------------------------------------------------- */

static void
on_data(struct srv_session *srv, const char *p, size_t n)
{
	struct session *s = srv_udata(srv);

	if (s->too_big)
		return;
	if (s->w.size + (off_t)n > conf_num(C_message_size_limit)) {
		s->too_big = 1;
		return;
	}
	qf_write(&s->w, p, n);
}

static void
committed(void *arg, int err, const char *qid)
{
	struct session *s = arg;

	if (s->srv == NULL) {		/* the client left meanwhile */
		session_free(s);
		return;
	}
	for (int i = 0; i < s->tx.nrcpt; i++)
		if (err == 0)
			srv_reply(s->srv, 250, "2.0.0", "%s queued", qid);
		else
			reply(s, err == ENOSPC || err == EDQUOT ?
			    "452 4.3.1 Insufficient system storage" :
			    "451 4.3.0 Local error: message not queued");
	tx_reset(&s->tx);
	srv_set_state(s->srv, S_CMD);
	/* A maildrop file holds one message. Its owner may rewrite it while
	 * pickup sends it, after pickup checked it ended at its first final
	 * dot: what follows that dot now is never read as commands. */
	if (stopping || s->one_txn)
		srv_close_after_flush(s->srv);
	srv_resume(s->srv);
}

/* After the final dot: refuse, or pause until the group commit answers. */
static void
on_data_end(struct srv_session *srv, unsigned flags)
{
	struct session *s = srv_udata(srv);
	struct submit_tx *tx = &s->tx;
	struct qf_env env = { .qid = tx->qid, .sender = tx->sender, .envid = tx->envid,
	    .auth = tx->auth, .client = tx->xforward.len ? tx->xforward.data : NULL,
	    .body8 = tx->body8, .smtputf8 = tx->smtputf8, .ret_hdrs = tx->ret_hdrs };
	int err = qf_finish(&s->w);
	const char *why = NULL;

	(void)flags;		/* bare LF/CR are stored as they came */
	if (s->too_big)
		why = "552 5.3.4 Message size exceeds fixed limit";
	else if (err == ENOSPC || err == EDQUOT)
		why = "452 4.3.1 Insufficient system storage";
	else if (err != 0)
		why = "451 4.3.0 Local error: cannot write the queue file";
	if (why != NULL) {
		if (err != 0)
			log_warn("queue file %s: %s", s->w.path, strerror(err));
		qf_abort(&s->w);
		for (int i = 0; i < tx->nrcpt; i++)
			reply(s, why);
		tx_reset(tx);
		srv_set_state(srv, S_CMD);
		return;
	}
	env.arrival = tx->arrival;
	srv_set_state(srv, S_WAIT);
	srv_pause(srv);
	/* the envelope as written: msg_build copies it */
	struct msg *m = msg_build(&s->w, &env, tx->rcpts, tx->nrcpt, tx->leaves.v, tx->leaves.n);
	queue_commit(&s->w, m, committed, s);
}

/* The session struct outlives the engine's while a commit is pending. */
static void
on_close(struct srv_session *srv, enum srv_close_why why)
{
	struct session *s = srv_udata(srv);
	unsigned st = srv_state(srv);

	if (why == SRV_CLOSE_TIMEOUT)
		log_info("submit: session timed out");
	if (st == S_DATA)
		qf_abort(&s->w);
	s->srv = NULL;
	if (st != S_WAIT)
		session_free(s);
}

static const struct srv_ops ops = {
	.on_data = on_data,
	.on_data_end = on_data_end,
	.on_close = on_close,
	.on_bad_state = on_bad_state,
};

/* ---- the listener -------------------------------------------------------- */

static const struct srv_limits limits = {
	.line_max = CMD_LINE_MAX + 2,
	.timeout_sec = SESSION_IDLE,
};

int
submit_session_start(int fd, uid_t uid, int one_txn)
{
	struct bufferevent *bev;
	struct session *s;

	bev = bufferevent_socket_new(queued_base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		evutil_closesocket(fd);
		return -1;
	}
	s = xcalloc(1, sizeof(*s));
	s->w.fd = -1;
	buf_init(&s->tx.xforward, 1024);
	s->uid = uid;
	s->one_txn = one_txn;
	LIST_INSERT_HEAD(&sessions, s, link);
	s->srv = srv_session_new(bev, commands, &limits, &ops, s);
	srv_reply(s->srv, 220, NULL, "%s LMTP Hermod queued", queued_hostname());
	return 0;
}

static void
on_accept(evutil_socket_t fd, struct sockaddr *sa, socklen_t len, void *arg)
{
	uid_t uid;

	(void)sa, (void)len, (void)arg;
	if (peer_cred(fd, &uid, NULL, NULL) < 0)
		uid = (uid_t)-1;
	submit_session_start(fd, uid, 0);
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
		n += s->srv == NULL || srv_state(s->srv) >= S_DATA;
	return n;
}

void
submit_stop(void)
{
	struct session *s;

	stopping = 1;
	if (submit_listener != NULL)
		listener_disable(submit_listener);
	LIST_FOREACH(s, &sessions, link) {
		if (s->srv != NULL && srv_state(s->srv) < S_DATA) {
			srv_reply_id(s->srv, RPL_SHUTDOWN);
			srv_close_after_flush(s->srv);
		}
	}
}
