/*
 * The session's life on lib/smtp_server (the protocol engine shared with
 * queued and lmtpd): a client connection becomes an srv_session with
 * smtpd's command table (smtp_session.c), its DATA/BDAT hooks
 * (smtp_data.c) and TLS hook (smtpd_tls.c). The engine reads command
 * lines (pipelining, RFC 2920), keeps the bounds (SMTPD_LINE_MAX,
 * SMTPD_INPUT_MAX read ahead, SMTPD_OUTPUT_MAX of replies the client has
 * not read), the command timeout (smtpd_timeout), the error counter (soft
 * limit: each further error waits smtpd_error_sleep_time; hard limit: 421)
 * and the lingering close. Here: the session struct, smtpd's replies
 * (given as "DDD x.y.z text" lines) and the log line at the end.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "log.h"
#include "policy.h"
#include "smtpd.h"
#include "smtpd_tls.h"
#include "xalloc.h"

#define LINGER_MS	2000	/* input drained after the last reply */

struct session_list sessions = TAILQ_HEAD_INITIALIZER(sessions);

/* The engine borrows these: one copy, refreshed for each new session
 * (after SIGHUP the old config strings are gone; this array stays). */
static char hostname[256];
static struct srv_limits limits;

const char *
session_client(const struct session *s)
{
	static char buf[2][300];
	static int which;

	which ^= 1;
	snprintf(buf[which], sizeof(buf[which]), "%s[%s]", s->name, s->addr);
	return buf[which];
}

const char *
session_helo(const struct session *s)
{
	return s->helo != NULL ? s->helo : "";
}

const char *
session_addr_lit(const struct session *s)
{
	static char buf[INET6_ADDRSTRLEN + 16];

	snprintf(buf, sizeof(buf), "%s%s", strchr(s->addr, ':') ? "IPv6:" : "",
	    s->addr);
	return buf;
}

unsigned
session_st(const struct session *s)
{
	return SRV_STATE(srv_state(s->srv));
}

void
session_set_state(struct session *s, enum smtp_state st)
{
	srv_set_state(s->srv, st);
}

/* "2.1.5" at p, followed by a space or the end: its length (RFC 3463),
 * else 0. */
static size_t
esc_len(const char *p)
{
	size_t n = 1;

	if (p[0] != '2' && p[0] != '4' && p[0] != '5')
		return 0;
	for (int part = 0; part < 2; part++) {
		size_t d = 0;

		if (p[n++] != '.')
			return 0;
		for (; isdigit((unsigned char)p[n]) && d < 3; n++)
			d++;
		if (d == 0)
			return 0;
	}
	return p[n] == ' ' || p[n] == '\0' ? n : 0;
}

/* One "DDD[ x.y.z] text" line into the engine's reply writer. A code
 * that is not 2xx..5xx (a broken text from elsewhere) becomes 451. */
static void
vreply(struct session *s, const char *fmt, va_list ap)
{
	char line[1024], esc[16];
	const char *text = line + 4;
	int code;
	size_t n;

	vsnprintf(line, sizeof(line), fmt, ap);
	code = atoi(line);
	if (code < 200 || code > 599 || !isdigit((unsigned char)line[2]) ||
	    (line[3] != ' ' && line[3] != '\0')) {
		srv_reply(s->srv, 451, "4.3.0", "Error: %s", line);
		return;
	}
	if (line[3] == '\0')
		text = line + 3;
	if ((n = esc_len(text)) > 0 && n < sizeof(esc)) {
		memcpy(esc, text, n);
		esc[n] = '\0';
		text += n + (text[n] == ' ');
		srv_reply(s->srv, code, esc, "%s", text);
		return;
	}
	srv_reply(s->srv, code, NULL, "%s", text);
}

void
session_reply(struct session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vreply(s, fmt, ap);
	va_end(ap);
}

void
session_error(struct session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vreply(s, fmt, ap);
	va_end(ap);
	srv_error(s->srv);
}

void
session_close(struct session *s, const char *fmt, ...)
{
	va_list ap;

	if (s->closing)
		return;
	if (fmt != NULL) {
		va_start(ap, fmt);
		vreply(s, fmt, ap);
		va_end(ap);
	}
	s->closing = 1;
	if (s->ho != NULL)
		handoff_abort(s->ho);	/* an unfinished message is dropped */
	srv_close_after_flush(s->srv);
}

void
session_pause(struct session *s)
{
	srv_pause(s->srv);
}

void
session_resume(struct session *s)
{
	srv_resume(s->srv);
}

static const char *const cmd_names[CMD_NIDS] = {
	"helo", "ehlo", "mail", "rcpt", "data", "bdat", "rset", "noop", "quit",
	"vrfy", "expn", "help", "starttls", "auth", "unknown",
};

static void
log_end(struct session *s, enum srv_close_why why)
{
	char counts[400];
	size_t n = 0;
	unsigned total = 0;

	if (why == SRV_CLOSE_TIMEOUT)
		log_info("timeout after %s from %s", s->tx != NULL &&
		    s->tx->phase == P_DATA ? "DATA" : "command",
		    session_client(s));
	else if (why == SRV_CLOSE_ERRORS)
		log_info("too many errors from %s", session_client(s));
	else if ((why == SRV_CLOSE_EOF || why == SRV_CLOSE_ERROR) &&
	    s->tx != NULL && s->tx->started)
		log_info("lost connection after DATA from %s", session_client(s));
	counts[0] = '\0';
	for (int i = 0; i < CMD_NIDS; i++) {
		total += s->counts[i];
		if (s->counts[i] && n < sizeof(counts))
			n += (size_t)snprintf(counts + n, sizeof(counts) - n,
			    " %s=%u", cmd_names[i], s->counts[i]);
	}
	log_info("disconnect from %s%s commands=%u", session_client(s), counts,
	    total);
}

/* The engine's on_close: exactly once, the srv_session goes right after. */
static void
on_close(struct srv_session *srv, enum srv_close_why why)
{
	struct session *s = srv_udata(srv);

	session_tls_closed(s);
	log_end(s, why);
	TAILQ_REMOVE(&sessions, s, entry);
	if (s->counted)
		policy_conn_close(&s->sa.sa);
	txn_free(s);
	handoff_free(s->ho);
	auth_free(s);
	free(s->helo);
	free(s->auth_user);
	free(s);
	if (smtpd_stopping && TAILQ_EMPTY(&sessions))
		smtpd_all_gone();
}

static const struct srv_ops ops = {
	.on_data = data_on_data,
	.on_data_end = data_on_end,
	.on_close = on_close,
	.on_unknown = session_on_unknown,
	.on_bad_state = session_on_bad_state,
	.on_tls = session_on_tls,
	.on_line = session_on_line,
	.on_bad_line = session_on_bad_line,
};

/* ---- a new client ---------------------------------------------------------- */

static const struct srv_limits *
session_limits(void)
{
	snprintf(hostname, sizeof(hostname), "%s", conf_str(C_myhostname));
	limits = (struct srv_limits){
		.line_max = SMTPD_LINE_MAX + 1,	/* 2047 + CRLF, as before */
		.pipeline_max = SMTPD_CMDS_PER_TURN,
		.hard_error_limit = (unsigned)conf_num(C_smtpd_hard_error_limit),
		.timeout_sec = (unsigned)conf_num(C_smtpd_timeout),
		.input_max = SMTPD_INPUT_MAX,
		.output_max = SMTPD_OUTPUT_MAX,
		.soft_error_limit = (unsigned)conf_num(C_smtpd_soft_error_limit),
		.error_sleep_ms = (unsigned)conf_num(C_smtpd_error_sleep_time) * 1000,
		.linger_ms = LINGER_MS,
		.hostname = hostname,
	};
	return &limits;
}

static void
format_addr(struct session *s, const struct sockaddr *sa)
{
	const void *a = NULL;
	unsigned port = 0;

	if (sa->sa_family == AF_INET) {
		a = &((const struct sockaddr_in *)sa)->sin_addr;
		port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		port = ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
	}
	if (a == NULL || inet_ntop(sa->sa_family, a, s->addr, sizeof(s->addr)) == NULL)
		snprintf(s->addr, sizeof(s->addr), "unknown");
	if (sa->sa_family == AF_INET6 && strncmp(s->addr, "::ffff:", 7) == 0 &&
	    strchr(s->addr + 7, '.') != NULL)
		memmove(s->addr, s->addr + 7, strlen(s->addr + 7) + 1);
	snprintf(s->port, sizeof(s->port), "%u", port);
}

/* The socket's bufferevent: plain, or TLS accepting for smtps (RFC 8314:
 * TLS first, the 220 after the handshake). */
static struct bufferevent *
session_bev(struct session *s, evutil_socket_t fd, int tls)
{
	struct bufferevent *bev;

	if (tls) {
		bev = session_tls_bev(s, fd);	/* smtpd_tls.c */
		if (bev != NULL)
			return bev;
		log_warn("TLS: cannot set up a session for %s", session_client(s));
		return NULL;
	}
	if ((bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE)) == NULL)
		fatal("smtpd: cannot set up a session");
	return bev;
}

struct session *
session_new(struct event_base *base, evutil_socket_t fd,
    const struct sockaddr *sa, socklen_t salen, enum listen_kind kind)
{
	struct session *s = xcalloc(1, sizeof(*s));
	struct bufferevent *bev;
	char why[POLICY_REPLY_MAX];
	int refused;

	s->base = base;
	s->kind = kind;
	if ((size_t)salen > sizeof(s->sa))
		salen = sizeof(s->sa);
	memcpy(&s->sa, sa, (size_t)salen);
	format_addr(s, sa);
	s->name = "unknown";
	s->trusted = policy_trusted(sa);
	log_info("connect from %s", session_client(s));
	refused = policy_conn_open(sa, s->trusted, why, sizeof(why)) != 0;
	/* a refusal goes out in plaintext, even on smtps */
	if ((bev = session_bev(s, fd, kind == LK_SMTPS && !refused)) == NULL) {
		if (!refused)
			policy_conn_close(sa);
		free(s);
		return NULL;
	}
	s->counted = !refused;
	s->srv = srv_session_new(bev, smtpd_commands, session_limits(), &ops, s);
	TAILQ_INSERT_TAIL(&sessions, s, entry);
	if (refused) {
		log_warn("refused %s: %s", session_client(s), why);
		session_close(s, "%s", why);
		return NULL;
	}
	if (kind != LK_SMTPS)
		session_greet(s);
	return s;
}

/* SIGTERM: a session between transactions ends now; one inside a
 * transaction ends after it (smtp_session.c checks smtpd_stopping). */
void
session_shutdown(struct session *s)
{
	if (s->tx == NULL && !srv_paused(s->srv) && !s->tls_handshake)
		session_close(s, "421 4.3.2 %s Service shutting down",
		    conf_str(C_myhostname));
}
