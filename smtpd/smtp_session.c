/*
 * The SMTP session's state machine (RFC 5321 with PIPELINING, SIZE,
 * 8BITMIME, ENHANCEDSTATUSCODES, SMTPUTF8, DSN and CHUNKING): one table
 * row per command with the states it may run in and what to say when it
 * may not, then its handler. Every reply carries an enhanced status code.
 * Policy (relay, recipients) is in policy.c, the message itself in
 * smtp_data.c. STARTTLS and AUTH (issue 8) get their rows here; until
 * then they are not offered.
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
	    proto_name(s), s->helo);
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
	if (s->state & (ST_MAIL | ST_RCPT | ST_BDAT))
		s->state = ST_READY;
}

void
session_greet(struct session *s)
{
	session_reply(s, "220 %s", conf_str(C_smtpd_banner));
}

/* ---- commands ------------------------------------------------------------- */

static int
valid_helo(const char *arg)
{
	size_t n = strlen(arg);

	if (n == 0 || n > SMTPD_HELO_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)arg[i] <= 0x20 || (unsigned char)arg[i] >= 0x7f)
			return 0;
	return 1;
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
	const char *kws[sizeof(ehlo_keywords) / sizeof(ehlo_keywords[0])];
	struct buf b;
	size_t n = 0;

	for (size_t i = 0; i < sizeof(ehlo_keywords) / sizeof(ehlo_keywords[0]); i++)
		if (ehlo_keywords[i].offer == NULL || ehlo_keywords[i].offer(s))
			kws[n++] = ehlo_keywords[i].kw;
	buf_init(&b, 4096);
	buf_printf(&b, "250%c%s", n ? '-' : ' ', conf_str(C_myhostname));
	for (size_t i = 0; i < n; i++) {
		buf_printf(&b, "\r\n250%c%s", i + 1 < n ? '-' : ' ', kws[i]);
		if (strcmp(kws[i], "SIZE") == 0)
			buf_printf(&b, " %lld", conf_num(C_message_size_limit));
	}
	session_reply(s, "%s", b.data);
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
	snprintf(s->helo, sizeof(s->helo), "%s", arg);
	s->esmtp = esmtp;
	s->state = ST_READY;
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
	s->state = ST_MAIL;
	session_reply(s, "250 2.1.0 Ok");
}

static const char *
add_rcpt(struct session *s, const char *path, struct rcpt *r)
{
	static char why[POLICY_REPLY_MAX];
	struct txn *tx = s->tx;

	if (tx->nrcpt >= conf_num(C_smtpd_recipient_limit))
		return "452 4.5.3 Error: too many recipients";
	if (addr_has_8bit(path) && !tx->smtputf8)
		return "553 5.6.7 Error: non-ASCII recipient address needs SMTPUTF8";
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
		s->state = ST_RCPT;
		session_reply(s, "250 2.1.5 Ok");
		return;
	}
	free(r.notify);
	free(r.orcpt);
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
	unsigned long long n = 0;
	int digits = 0, last = 0;
	char *p = arg;

	for (; isdigit((unsigned char)*p) && digits < 19; p++, digits++)
		n = n * 10 + (unsigned)(*p - '0');
	while (*p == ' ')
		p++;
	if (strcasecmp(p, "LAST") == 0)
		last = 1, p += 4;
	if (digits == 0 || digits >= 19 || *p != '\0') {
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
	session_reply(s, "214-2.0.0 Commands: HELO EHLO MAIL RCPT DATA BDAT RSET\r\n"
	    "214 2.0.0 NOOP QUIT VRFY HELP");
}

static const struct command {
	const char *name;
	enum cmd_id id;
	unsigned states;	/* where it may run */
	const char *wrong;	/* the 503 reply elsewhere */
	void (*fn)(struct session *, char *);
} commands[] = {
	{ "EHLO", CMD_EHLO, ST_ANY & ~ST_BDAT, "503 5.5.1 Error: BDAT in progress", cmd_ehlo },
	{ "HELO", CMD_HELO, ST_ANY & ~ST_BDAT, "503 5.5.1 Error: BDAT in progress", cmd_helo },
	{ "MAIL", CMD_MAIL, ST_READY, NULL, cmd_mail },
	{ "RCPT", CMD_RCPT, ST_MAIL | ST_RCPT, NULL, cmd_rcpt },
	{ "DATA", CMD_DATA, ST_RCPT, NULL, cmd_data },
	{ "BDAT", CMD_BDAT, ST_ANY, NULL, cmd_bdat },
	{ "RSET", CMD_RSET, ST_ANY, NULL, cmd_rset },
	{ "NOOP", CMD_NOOP, ST_ANY, NULL, cmd_noop },
	{ "QUIT", CMD_QUIT, ST_ANY, NULL, cmd_quit },
	{ "VRFY", CMD_VRFY, ST_ANY, NULL, cmd_vrfy },
	{ "EXPN", CMD_EXPN, ST_ANY, NULL, cmd_expn },
	{ "HELP", CMD_HELP, ST_ANY, NULL, cmd_help },
	{ "STARTTLS", CMD_STARTTLS, ST_ANY, NULL, cmd_starttls },	/* smtpd_tls.c */
	{ "AUTH", CMD_AUTH, ST_ANY, NULL, cmd_auth },		/* smtpd_auth.c */
};

/* The 503 for a command out of place, by what is missing. */
static const char *
wrong_state(const struct session *s, const struct command *c)
{
	if (c->wrong != NULL)
		return c->wrong;
	if (s->state & ST_BDAT)
		return "503 5.5.1 Error: BDAT in progress";
	if (s->state == ST_GREET)
		return "503 5.5.1 Error: send HELO/EHLO first";
	if (c->id == CMD_MAIL)
		return "503 5.5.1 Error: nested MAIL command";
	if (c->id == CMD_RCPT)
		return "503 5.5.1 Error: need MAIL command";
	return s->state == ST_MAIL ? "503 5.5.1 Error: need RCPT command" :
	    "503 5.5.1 Error: need MAIL command";
}

/* An HTTP request (or header) sent to port 25, as from a web page that
 * makes a browser talk to us: nothing else it sends should be answered
 * (cross-protocol attacks), so the session ends, as Postfix does. */
static int
non_smtp(const char *line, size_t n)
{
	static const char *const verbs[] = { "GET", "POST", "PUT", "HEAD",
	    "CONNECT", "OPTIONS", "DELETE" };

	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
		if (strlen(verbs[i]) == n && strncmp(line, verbs[i], n) == 0)
			return 1;
	return n > 0 && line[n - 1] == ':';	/* "Host:", "User-Agent:" */
}

void
session_command(struct session *s, char *line, size_t len)
{
	size_t n = strcspn(line, " ");
	char *arg = line[n] ? line + n + 1 : line + n;

	if (auth_continue(s, line, len))	/* a line of an AUTH exchange */
		return;
	if (strlen(line) != len) {	/* a NUL byte */
		s->counts[CMD_UNKNOWN]++;
		session_error(s, "500 5.5.2 Error: bad syntax");
		return;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		const struct command *c = &commands[i];

		if (strlen(c->name) != n || strncasecmp(line, c->name, n) != 0)
			continue;
		s->counts[c->id]++;
		if (!(c->states & s->state)) {
			session_error(s, "%s", wrong_state(s, c));
			return;
		}
		c->fn(s, arg);
		/* SIGTERM: a session leaves as soon as it holds no message. */
		if (smtpd_stopping && s->tx == NULL && s->mode == IN_CMD)
			session_close(s, "421 4.3.2 %s Service shutting down",
			    conf_str(C_myhostname));
		return;
	}
	s->counts[CMD_UNKNOWN]++;
	if (non_smtp(line, n)) {
		log_warn("non-SMTP command from %s: %.100s", session_client(s), line);
		session_close(s, "421 4.7.0 %s Error: not an SMTP client",
		    conf_str(C_myhostname));
		return;
	}
	session_error(s, "500 5.5.2 Error: command not recognized");
}
