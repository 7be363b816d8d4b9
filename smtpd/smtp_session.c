/*
 * The SMTP session's state machine (RFC 5321 with PIPELINING, SIZE,
 * 8BITMIME, ENHANCEDSTATUSCODES, SMTPUTF8, DSN and CHUNKING): one table
 * row per command with the states it may run in and what to say when it
 * may not (checked by lib/smtp_server, which dispatches), then its
 * handler; the 503 texts by what is missing, the answers to unknown and
 * non-SMTP input. Every reply carries an enhanced status code. Policy
 * (relay, recipients) is in policy.c, the message itself in smtp_data.c,
 * STARTTLS in smtpd_tls.c, AUTH in smtpd_auth.c.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf.h"
#include "log.h"
#include "policy.h"
#include "smtpd.h"
#include "smtpd_tls.h"
#include "xalloc.h"

static const char *
proto_name(const struct session *s)
{
	return received_proto(s->esmtp, s->tls, s->auth_user != NULL,
	    s->tx != NULL && s->tx->smtputf8);
}

/* "NOQUEUE: reject: RCPT from name[addr]: 554 5.7.1 ...; from=<> to=<>
 * proto=ESMTP helo=<x>", Postfix's shape, so log tools read it. */
void
session_log_reject(struct session *s, const char *cmd, const char *rcpt,
    const char *reply)
{
	log_q(LOG_LVL_INFO, s->tx && s->tx->qid[0] ? s->tx->qid : NULL,
	    "reject: %s from %s: %s; from=<%s>%s%s%s proto=%s helo=<%s>", cmd,
	    session_client(s), reply, s->tx ? s->tx->sender : "",
	    rcpt ? " to=<" : "", rcpt ? rcpt : "", rcpt ? ">" : "",
	    proto_name(s), session_helo(s));
}

void
txn_free(struct session *s)
{
	struct txn *tx = s->tx;

	if (tx == NULL)
		return;
	if (s->ho != NULL && tx->started)
		handoff_abort(s->ho);
	for (int i = 0; i < tx->nrcpt; i++) {
		free(tx->rcpts[i].addr);
		free(tx->rcpts[i].notify);
		free(tx->rcpts[i].orcpt);
	}
	free(tx->rcpts);
	free(tx->envid);
	buf_free(&tx->out);
	free(tx);
	s->tx = NULL;
	if (session_st(s) & (ST_MAIL | ST_RCPT | ST_BDAT))
		session_set_state(s, S_READY);
}

void
session_greet(struct session *s)
{
	srv_reply(s->srv, 220, NULL, "%s", conf_str(C_smtpd_banner));
}

/* ---- commands ------------------------------------------------------------- */

/* One word of printable ASCII, or of well-formed UTF-8: we offer SMTPUTF8
 * and a host named in UTF-8 says so (Postfix takes it too). do_helo keeps
 * its 8-bit bytes as '?', so logs, headers and the queue stay ASCII. */
static int
valid_helo(const char *arg)
{
	size_t n = strlen(arg);

	if (n == 0 || n > SMTPD_HELO_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)arg[i] <= 0x20 || (unsigned char)arg[i] == 0x7f)
			return 0;
	return addr_utf8_ok(arg);
}

/* STARTTLS: a certificate is loaded and we are not in TLS yet. */
static int
offer_starttls(const struct session *s)
{
	return !s->tls && smtpd_tls_available();
}

static int
offer_auth(const struct session *s)
{
	return auth_offered(s);		/* smtpd_auth.c */
}

/* The EHLO keywords, in the order they are listed; SIZE gets the limit. */
static const struct {
	const char *kw;
	int (*offer)(const struct session *);
} ehlo_keywords[] = {
	{ "PIPELINING", NULL }, { "SIZE", NULL }, { "ENHANCEDSTATUSCODES", NULL },
	{ "8BITMIME", NULL }, { "DSN", NULL }, { "SMTPUTF8", NULL },
	{ "CHUNKING", NULL }, { "STARTTLS", offer_starttls },
	{ "AUTH PLAIN LOGIN", offer_auth },
};

static void
ehlo_reply(struct session *s)
{
	struct buf b;

	buf_init(&b, 4096);
	buf_puts(&b, conf_str(C_myhostname));
	for (size_t i = 0; i < sizeof(ehlo_keywords) / sizeof(ehlo_keywords[0]); i++) {
		if (ehlo_keywords[i].offer != NULL && !ehlo_keywords[i].offer(s))
			continue;
		buf_printf(&b, "\n%s", ehlo_keywords[i].kw);
		if (strcmp(ehlo_keywords[i].kw, "SIZE") == 0)
			buf_printf(&b, " %lld", conf_num(C_message_size_limit));
	}
	srv_reply(s->srv, 250, NULL, "%s", b.data);	/* one line each */
	buf_free(&b);
}

static void
do_helo(struct session *s, char *arg, int esmtp)
{
	if (!valid_helo(arg)) {
		session_error(s, "501 5.5.4 Syntax: %s hostname", esmtp ? "EHLO" : "HELO");
		return;
	}
	txn_free(s);		/* RFC 5321 4.1.4: like RSET */
	free(s->helo);
	s->helo = xstrdup(arg);
	for (char *p = s->helo; *p != '\0'; p++)
		if ((unsigned char)*p >= 0x80)
			*p = '?';
	s->esmtp = esmtp;
	session_set_state(s, S_READY);
	if (esmtp)
		ehlo_reply(s);
	else
		session_reply(s, "250 %s", conf_str(C_myhostname));
}

static void
cmd_helo(struct session *s, char *arg)
{
	do_helo(s, arg, 0);
}

static void
cmd_ehlo(struct session *s, char *arg)
{
	do_helo(s, arg, 1);
}

static void
cmd_mail(struct session *s, char *arg)
{
	char path[SMTPD_PATH_MAX + 1];
	const char *err, *rest;

	if (s->kind != LK_SMTP && s->auth_user == NULL) {	/* RFC 6409 */
		session_error(s, "530 5.7.0 Authentication required");
		return;
	}
	if (strncasecmp(arg, "FROM:", 5) != 0) {
		session_error(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
		return;
	}
	if ((err = parse_path(arg + 5, 1, 1, path, sizeof(path), &rest)) != NULL) {
		session_error(s, "%s", err);
		return;
	}
	if ((err = auth_sender_check(s, path)) != NULL) {	/* smtpd_auth.c */
		session_log_reject(s, "MAIL", NULL, err);
		session_error(s, "%s", err);
		return;
	}
	s->tx = xcalloc(1, sizeof(*s->tx));
	snprintf(s->tx->sender, sizeof(s->tx->sender), "%s", path);
	if ((err = parse_mail_params(s, rest)) == NULL && addr_has_8bit(path) &&
	    !s->tx->smtputf8)
		err = "553 5.6.7 Error: non-ASCII sender address needs SMTPUTF8";
	if (err != NULL) {
		if (err[0] == '5' && err[1] == '5' && err[2] == '2')
			session_log_reject(s, "MAIL", NULL, err);
		txn_free(s);
		session_error(s, "%s", err);
		return;
	}
	session_set_state(s, S_MAIL);
	session_reply(s, "250 2.1.0 Ok");
}

static const char R_TOO_MANY_RCPTS[] = "452 4.5.3 Error: too many recipients";

static const char *
add_rcpt(struct session *s, const char *path, struct rcpt *r)
{
	static char why[POLICY_REPLY_MAX];
	struct txn *tx = s->tx;

	if (tx->nrcpt >= conf_num(C_smtpd_recipient_limit))
		return R_TOO_MANY_RCPTS;
	if (addr_has_8bit(path) && !tx->smtputf8)
		return "553 5.6.7 Error: non-ASCII recipient address needs SMTPUTF8";
	if (s->dnsbl != NULL && !s->trusted && s->auth_user == NULL) {
		/* Postfix's reject_rbl_client text */
		snprintf(why, sizeof(why), "554 5.7.1 Service unavailable; Client host [%s] "
		    "blocked using %s", s->addr, s->dnsbl);
		return why;
	}
	if (policy_rcpt(path, s->trusted || s->auth_user != NULL, why, sizeof(why)) != 0)
		return why;
	if (tx->nrcpt == tx->cap) {
		tx->cap = tx->cap ? tx->cap * 2 : 4;
		tx->rcpts = xrealloc(tx->rcpts, (size_t)tx->cap * sizeof(*tx->rcpts));
	}
	r->addr = xstrdup(path);
	tx->rcpts[tx->nrcpt++] = *r;
	memset(r, 0, sizeof(*r));
	return NULL;
}

static void
cmd_rcpt(struct session *s, char *arg)
{
	char path[SMTPD_PATH_MAX + 1];
	struct rcpt r = { 0 };
	const char *err, *rest;

	if (strncasecmp(arg, "TO:", 3) != 0) {
		session_error(s, "501 5.5.4 Syntax: RCPT TO:<address>");
		return;
	}
	if ((err = parse_path(arg + 3, 0, 1, path, sizeof(path), &rest)) == NULL &&
	    (err = parse_rcpt_params(s, rest, &r)) == NULL &&
	    (err = add_rcpt(s, path, &r)) == NULL) {
		session_set_state(s, S_RCPT);
		session_reply(s, "250 2.1.5 Ok");
		return;
	}
	free(r.notify);
	free(r.orcpt);
	/* The recipient limit is no client error: a pipelining client that
	 * sent more gets 452 for the rest and sends them again later. As
	 * errors they would end the session before its DATA, every time. */
	if (err == R_TOO_MANY_RCPTS && ++s->tx->overshoot <= SMTPD_RCPT_OVERSHOOT) {
		session_reply(s, "%s", err);
		return;
	}
	if (err[0] != '5' || err[1] != '0')	/* policy, not syntax */
		session_log_reject(s, "RCPT", path, err);
	session_error(s, "%s", err);
}

static void
cmd_data(struct session *s, char *arg)
{
	if (arg[0] != '\0') {
		session_error(s, "501 5.5.4 Syntax: DATA");
		return;
	}
	data_begin(s);
}

static void
cmd_bdat(struct session *s, char *arg)
{
	uint64_t n;
	int last;

	if (smtp_bdat_parse(arg, SMTP_BDAT_MAX, &n, &last) != 0) {
		/* The chunk's length is unknown: its octets cannot be told
		 * from commands any more. End the session. */
		session_close(s, "501 5.5.4 Syntax: BDAT count [LAST]");
		return;
	}
	data_bdat(s, n, last);
}

static void
cmd_rset(struct session *s, char *arg)
{
	if (arg[0] != '\0') {
		session_error(s, "501 5.5.4 Syntax: RSET");
		return;
	}
	txn_free(s);
	session_reply(s, "250 2.0.0 Ok");
}

static void
cmd_noop(struct session *s, char *arg)
{
	(void)arg;		/* RFC 5321 4.1.1.9: a parameter is allowed */
	session_reply(s, "250 2.0.0 Ok");
}

static void
cmd_quit(struct session *s, char *arg)
{
	(void)arg;
	session_close(s, "221 2.0.0 Bye");
}

static void
cmd_vrfy(struct session *s, char *arg)
{
	if (arg[0] == '\0') {
		session_error(s, "501 5.5.4 Syntax: VRFY address");
		return;
	}
	/* RFC 5321 3.5.3: never confirm nor deny (no user enumeration). */
	session_reply(s, "252 2.0.0 Cannot VRFY user, but will accept message "
	    "and attempt delivery");
}

static void
cmd_expn(struct session *s, char *arg)
{
	(void)arg;
	session_error(s, "502 5.5.1 Error: EXPN command disabled");
}

static void
cmd_help(struct session *s, char *arg)
{
	(void)arg;
	srv_reply(s->srv, 214, "2.0.0", "Commands: HELO EHLO MAIL RCPT DATA BDAT "
	    "RSET\nNOOP QUIT VRFY HELP");
}

/*
 * The engine's table: every row runs run(), which counts the command,
 * calls its act[] entry (same index: enum cmd_id) and ends the session
 * after it when smtpd is stopping. The engine checks the states.
 */
static void run(struct srv_session *srv, char *arg);

#define ROW(id, verb, states)	[id] = { verb, states, SRV_ARG_ANY, run }
const struct srv_cmd smtpd_commands[CMD_UNKNOWN + 1] = {
	ROW(CMD_EHLO, "EHLO", ST_ANY & ~ST_BDAT),
	ROW(CMD_HELO, "HELO", ST_ANY & ~ST_BDAT),
	ROW(CMD_MAIL, "MAIL", ST_READY),
	ROW(CMD_RCPT, "RCPT", ST_MAIL | ST_RCPT),
	ROW(CMD_DATA, "DATA", ST_RCPT),
	ROW(CMD_BDAT, "BDAT", 0),	/* its octets are read in any state */
	ROW(CMD_RSET, "RSET", 0),
	ROW(CMD_NOOP, "NOOP", 0),
	ROW(CMD_QUIT, "QUIT", 0),
	ROW(CMD_VRFY, "VRFY", 0),
	ROW(CMD_EXPN, "EXPN", 0),
	ROW(CMD_HELP, "HELP", 0),
	ROW(CMD_STARTTLS, "STARTTLS", 0),
	ROW(CMD_AUTH, "AUTH", 0),
	[CMD_UNKNOWN] = { NULL, 0, 0, NULL },
};

static const struct {
	void (*fn)(struct session *, char *);
	const char *wrong;	/* the 503 reply out of place, if fixed */
	int junk;		/* counts against smtpd_junk_command_limit */
} act[CMD_UNKNOWN] = {
	[CMD_EHLO] = { cmd_ehlo, "503 5.5.1 Error: BDAT in progress", 1 },
	[CMD_HELO] = { cmd_helo, "503 5.5.1 Error: BDAT in progress", 1 },
	[CMD_MAIL] = { cmd_mail, NULL, 0 }, [CMD_RCPT] = { cmd_rcpt, NULL, 0 },
	[CMD_DATA] = { cmd_data, NULL, 0 }, [CMD_BDAT] = { cmd_bdat, NULL, 0 },
	[CMD_RSET] = { cmd_rset, NULL, 1 }, [CMD_NOOP] = { cmd_noop, NULL, 1 },
	[CMD_QUIT] = { cmd_quit, NULL, 0 }, [CMD_VRFY] = { cmd_vrfy, NULL, 1 },
	[CMD_EXPN] = { cmd_expn, NULL, 0 }, [CMD_HELP] = { cmd_help, NULL, 0 },
	[CMD_STARTTLS] = { cmd_starttls, NULL, 0 },	/* smtpd_tls.c */
	[CMD_AUTH] = { cmd_auth, NULL, 0 },		/* smtpd_auth.c */
};

static void
run(struct srv_session *srv, char *arg)
{
	struct session *s = srv_udata(srv);
	size_t id = (size_t)(srv_command(srv) - smtpd_commands);

	s->counts[id]++;
	act[id].fn(s, arg);
	/* Postfix's smtpd_junk_command_limit: commands that deliver
	 * nothing (a NOOP every few minutes held a session for ever) count
	 * as errors past the limit, until a message is queued. */
	if (act[id].junk && !s->closing &&
	    ++s->junk > (unsigned)conf_num(C_smtpd_junk_command_limit))
		srv_error(srv);
	/* SIGTERM: a session leaves as soon as it holds no message. */
	if (smtpd_stopping && s->tx == NULL && !srv_paused(srv) &&
	    !s->tls_handshake)
		session_close(s, "421 4.3.2 %s Service shutting down",
		    conf_str(C_myhostname));
}

/* The 503 for a command out of place, by what is missing. */
void
session_on_bad_state(struct srv_session *srv, const struct srv_cmd *c)
{
	struct session *s = srv_udata(srv);
	size_t id = (size_t)(c - smtpd_commands);
	unsigned st = session_st(s);
	const char *r;

	s->counts[id]++;
	if (act[id].wrong != NULL)
		r = act[id].wrong;
	else if (st & ST_BDAT)
		r = "503 5.5.1 Error: BDAT in progress";
	else if (st == ST_GREET)
		r = "503 5.5.1 Error: send HELO/EHLO first";
	else if (id == CMD_MAIL)
		r = "503 5.5.1 Error: nested MAIL command";
	else if (id == CMD_RCPT)
		r = "503 5.5.1 Error: need MAIL command";
	else
		r = st == ST_MAIL ? "503 5.5.1 Error: need RCPT command" :
		    "503 5.5.1 Error: need MAIL command";
	session_reply(s, "%s", r);	/* the engine counts the error */
}

/* An HTTP request (or header) sent to port 25, as from a web page that
 * makes a browser talk to us: nothing else it sends should be answered
 * (cross-protocol attacks), so the session ends, as Postfix does. */
static int
non_smtp(const char *verb)
{
	static const char *const verbs[] = { "GET", "POST", "PUT", "HEAD",
	    "CONNECT", "OPTIONS", "DELETE" };
	size_t n = strcspn(verb, " ");	/* not a word: the whole line */

	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
		if (strlen(verbs[i]) == n && strncmp(verb, verbs[i], n) == 0)
			return 1;
	return n > 0 && verb[n - 1] == ':';	/* "Host:", "User-Agent:" */
}

int
session_on_unknown(struct srv_session *srv, char *verb, char *arg)
{
	struct session *s = srv_udata(srv);

	s->counts[CMD_UNKNOWN]++;
	if (non_smtp(verb)) {
		log_warn("non-SMTP command from %s: %.100s%s%.100s",
		    session_client(s), verb, *arg ? " " : "", arg);
		session_close(s, "421 4.7.0 %s Error: not an SMTP client",
		    conf_str(C_myhostname));
		return 1;
	}
	session_reply(s, "500 5.5.2 Error: command not recognized");
	return 1;
}

/* A line of an AUTH exchange is never a command (RFC 4954 4). */
int
session_on_line(struct srv_session *srv, char *line, size_t len)
{
	return auth_continue(srv_udata(srv), line, len);
}

/* A line refused before dispatch: a NUL byte counts as an unknown
 * command and gets Postfix's text; a too-long line the table's, or
 * AUTH's inside an exchange (it ends the exchange). */
void
session_on_bad_line(struct srv_session *srv, enum smtp_reply_id why)
{
	struct session *s = srv_udata(srv);

	if (why == RPL_LINE_TOO_LONG && auth_line_too_long(s))
		return;
	if (why != RPL_NUL) {
		srv_reply_id(srv, why);
		return;
	}
	s->counts[CMD_UNKNOWN]++;
	session_reply(s, "500 5.5.2 Error: bad syntax");
}
