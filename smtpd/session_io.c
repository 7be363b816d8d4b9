/*
 * The session's input and output: command lines read from the bufferevent
 * one after the other (pipelining, RFC 2920) while the session is not
 * waiting for queued, replies written, the idle timeout (smtpd_timeout),
 * the error counter (soft limit: each further error slows the session by
 * smtpd_error_sleep_time; hard limit: 421 and the end), and a polite
 * close once the last reply is out. Bounds: a command line of
 * SMTPD_LINE_MAX, SMTPD_INPUT_MAX read ahead, SMTPD_OUTPUT_MAX of replies
 * the client has not read (then we stop reading until it does).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "conf.h"
#include "log.h"
#include "policy.h"
#include "smtpd.h"
#include "smtpd_tls.h"
#include "xalloc.h"

#define LINGER_SEC	2	/* input drained after the last reply */

struct session_list sessions = TAILQ_HEAD_INITIALIZER(sessions);

static void session_input(struct session *s);

const char *
session_client(const struct session *s)
{
	static char buf[2][300];
	static int which;

	which ^= 1;
	snprintf(buf[which], sizeof(buf[which]), "%s[%s]", s->name, s->addr);
	return buf[which];
}

static void
vreply(struct session *s, const char *fmt, va_list ap)
{
	struct evbuffer *out = bufferevent_get_output(s->bev), *one;

	/* A TLS filter encrypts each addition at once: one addition per
	 * reply makes one TLS record of it, not two. */
	if (s->tls && (one = evbuffer_new()) != NULL) {
		evbuffer_add_vprintf(one, fmt, ap);
		evbuffer_add(one, "\r\n", 2);
		evbuffer_add_buffer(out, one);
		evbuffer_free(one);
		return;
	}
	evbuffer_add_vprintf(out, fmt, ap);
	evbuffer_add(out, "\r\n", 2);
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
session_close(struct session *s, const char *fmt, ...)
{
	va_list ap;

	if (s->mode == IN_CLOSING)
		return;
	if (fmt != NULL) {
		va_start(ap, fmt);
		vreply(s, fmt, ap);
		va_end(ap);
	}
	s->mode = IN_CLOSING;
	bufferevent_disable(s->bev, EV_READ);
	if (s->ho != NULL)
		handoff_abort(s->ho);	/* an unfinished message is dropped */
	if (evbuffer_get_length(bufferevent_get_output(s->bev)) == 0)
		session_linger(s);
	/* else the write callback does once the reply is out */
}

/*
 * The last reply is out. Closing a socket that still has unread input
 * makes the kernel send a reset, and the reset can destroy our last
 * replies before the client reads them (a 421 after a flood of pipelined
 * junk would never arrive). So: half-close, read and throw away what
 * still comes for a moment, then free.
 */
void
session_linger(struct session *s)
{
	struct timeval tv = { LINGER_SEC, 0 };

	if (s->lingering)
		return;
	/* Under TLS the reply is already encrypted into the socket
	 * bufferevent below the filter: freeing now would lose it, so a TLS
	 * session always lingers. */
	if (s->in_input && !s->tls && !s->tls_handshake) {
		s->free_me = 1;		/* session_input frees it */
		return;
	}
	s->lingering = 1;
	/* Under TLS the last reply may still sit encrypted in the socket
	 * bufferevent below the filter: no half-close, the linger time or
	 * the client's close ends the session. */
	if (!s->tls && !s->tls_handshake)
		shutdown(bufferevent_getfd(s->bev), SHUT_WR);
	evbuffer_drain(bufferevent_get_input(s->bev),
	    evbuffer_get_length(bufferevent_get_input(s->bev)));
	/* a deadline, not a read timeout: a trickle cannot extend it */
	bufferevent_set_timeouts(s->bev, NULL, NULL);
	event_del(s->sleep_ev);
	s->sleeping = 0;
	event_add(s->sleep_ev, &tv);
	bufferevent_enable(s->bev, EV_READ);
}

void
session_error(struct session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vreply(s, fmt, ap);
	va_end(ap);
	s->errors++;
	if (s->errors >= conf_num(C_smtpd_hard_error_limit)) {
		log_info("too many errors from %s", session_client(s));
		session_close(s, "421 4.7.0 %s Error: too many errors",
		    conf_str(C_myhostname));
		return;
	}
	if (s->errors > conf_num(C_smtpd_soft_error_limit) &&
	    conf_num(C_smtpd_error_sleep_time) > 0 && s->mode == IN_CMD) {
		struct timeval tv = { conf_num(C_smtpd_error_sleep_time), 0 };

		s->sleeping = 1;
		bufferevent_disable(s->bev, EV_READ);
		event_add(s->sleep_ev, &tv);
	}
}

void
session_pause(struct session *s)
{
	s->mode = IN_WAIT;
	bufferevent_disable(s->bev, EV_READ);
}

/* Run the input loop again from the event loop, not from inside a
 * callback that the input loop itself may have called. */
void
session_kick(struct session *s)
{
	struct timeval tv = { 0, 0 };

	if (!s->sleeping)
		event_add(s->sleep_ev, &tv);
}

void
session_resume(struct session *s, enum input_mode m)
{
	s->mode = m;
	if (s->sleeping)
		return;
	if (!s->out_full)
		bufferevent_enable(s->bev, EV_READ);
	session_kick(s);	/* pipelined input may be waiting */
}

static const char *const cmd_names[CMD_NIDS] = {
	"helo", "ehlo", "mail", "rcpt", "data", "bdat", "rset", "noop", "quit",
	"vrfy", "expn", "help", "starttls", "auth", "unknown",
};

void
session_free(struct session *s)
{
	char counts[400];
	size_t n = 0;
	unsigned total = 0;

	if (s->in_input) {
		s->free_me = 1;
		bufferevent_disable(s->bev, EV_READ | EV_WRITE);
		return;
	}
	counts[0] = '\0';
	for (int i = 0; i < CMD_NIDS; i++) {
		total += s->counts[i];
		if (s->counts[i] && n < sizeof(counts))
			n += (size_t)snprintf(counts + n, sizeof(counts) - n,
			    " %s=%u", cmd_names[i], s->counts[i]);
	}
	log_info("disconnect from %s%s commands=%u", session_client(s), counts,
	    total);
	TAILQ_REMOVE(&sessions, s, entry);
	if (s->counted)
		policy_conn_close((struct sockaddr *)&s->sa);
	txn_free(s);
	handoff_free(s->ho);
	auth_free(s);
	session_tls_free(s);
	event_free(s->sleep_ev);
	bufferevent_free(s->bev);
	free(s->auth_user);
	free(s);
	if (smtpd_stopping && TAILQ_EMPTY(&sessions))
		smtpd_all_gone();
}

/* ---- input ---------------------------------------------------------------- */

/*
 * One command line from the input (lib/smtp_proto's reader: the bound
 * counts the CRLF, a bare LF ends a line, an over-long line is refused
 * once and drained up to its LF); 1 if one was handled, 0 if more input
 * is needed.
 */
static int
read_command(struct session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	char line[SMTPD_LINE_MAX + 2];
	size_t len;
	unsigned flags;

	switch (smtp_line_read(&s->lr, in, line, &len, &flags)) {
	case SMTP_LINE_TOO_LONG:
		session_error(s, "500 5.5.2 Error: line too long");
		return 1;
	case SMTP_LINE_MORE:
		/* A deadline per command line, not per read: a client that
		 * trickles a byte now and then (slowloris) still times out. */
		if (evbuffer_get_length(in) > 0 && s->line_start == 0)
			s->line_start = time(NULL);
		else if (s->line_start != 0 &&
		    time(NULL) - s->line_start > conf_num(C_smtpd_timeout)) {
			log_info("timeout after slow command from %s", session_client(s));
			session_close(s, "421 4.4.2 %s Error: timeout exceeded",
			    conf_str(C_myhostname));
		}
		return 0;
	case SMTP_LINE_OK:
		break;
	}
	s->line_start = 0;
	session_command(s, line, len);
	return 1;
}

/* The client went away: what it left half-done is dropped (a message
 * without its final dot is never queued). */
static void
session_lost(struct session *s)
{
	if (s->tx != NULL && s->tx->started)
		log_info("lost connection after DATA from %s", session_client(s));
	if (s->in_input)
		s->free_me = 1;
	else
		session_free(s);
}

static void
session_input(struct session *s)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	int ncmd = 0, stalled = 0;

	s->in_input++;
	while (!s->free_me && !s->sleeping) {
		if (s->mode == IN_CMD && ++ncmd > SMTPD_CMDS_PER_TURN) {
			session_kick(s);	/* fair to the other sessions */
			break;
		}
		if (s->mode == IN_CMD) {
			if (evbuffer_get_length(out) > SMTPD_OUTPUT_MAX) {
				/* a pipelining client that does not read */
				s->out_full = 1;
				bufferevent_disable(s->bev, EV_READ);
				break;
			}
			if (!read_command(s)) {
				stalled = 1;
				break;
			}
		} else if (s->mode == IN_DATA || s->mode == IN_CHUNK) {
			enum input_mode before = s->mode;

			data_input(s);
			if (s->mode == before) {
				stalled = 1;
				break;
			}
		} else
			break;
	}
	s->in_input--;
	if (stalled && s->peer_eof && !s->free_me) {
		session_lost(s);	/* all it sent before the FIN is done */
		return;			/* s may be gone */
	}
	if (s->free_me && s->in_input == 0)
		session_free(s);
}

static void
on_read(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;

	if (s->lingering) {
		evbuffer_drain(bufferevent_get_input(bev),
		    evbuffer_get_length(bufferevent_get_input(bev)));
		return;
	}
	session_input(s);
}

static void
on_write(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;

	(void)bev;
	if (s->mode == IN_CLOSING) {
		session_linger(s);
		return;
	}
	if (s->out_full) {
		s->out_full = 0;
		if (s->mode == IN_CMD && !s->sleeping) {
			bufferevent_enable(s->bev, EV_READ);
			session_kick(s);
		}
	}
}

static void
on_event(struct bufferevent *bev, short what, void *arg)
{
	struct session *s = arg;

	(void)bev;
	if (session_tls_event(s, what))	/* TLS handshake done or failed */
		return;
	if (s->lingering) {		/* EOF, error or the linger time */
		session_free(s);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		log_info("timeout after %s from %s",
		    s->mode == IN_DATA || s->mode == IN_CHUNK ? "DATA" : "command",
		    session_client(s));
		if (s->mode == IN_CLOSING) {
			session_free(s);
			return;
		}
		session_close(s, "421 4.4.2 %s Error: timeout exceeded",
		    conf_str(C_myhostname));
		return;
	}
	/* A client may pipeline its commands and half-close at once
	 * (sendmail -bs < script): finish what it sent first, as a server
	 * that reads until EOF does. */
	if ((what & BEV_EVENT_EOF) && (s->mode == IN_WAIT || s->sleeping ||
	    s->out_full || evbuffer_get_length(bufferevent_get_input(s->bev)) > 0)) {
		s->peer_eof = 1;
		return;
	}
	session_lost(s);
}

static void
on_sleep(evutil_socket_t fd, short ev, void *arg)
{
	struct session *s = arg;

	(void)fd;
	(void)ev;
	if (s->lingering) {
		session_free(s);
		return;
	}
	s->sleeping = 0;
	if ((s->mode == IN_CMD || s->mode == IN_DATA || s->mode == IN_CHUNK) &&
	    !s->out_full)
		bufferevent_enable(s->bev, EV_READ);
	session_input(s);
}

/* ---- a new client ---------------------------------------------------------- */

void
session_set_bev(struct session *s, struct bufferevent *bev)
{
	struct timeval tv = { conf_num(C_smtpd_timeout), 0 };

	if (bev == NULL)
		fatal("smtpd: cannot set up a session");
	s->bev = bev;
	/* a new bev (STARTTLS) starts with a new line: nothing carried over */
	smtp_line_init(&s->lr, SMTPD_LINE_MAX + 1);	/* 2047 + CRLF, as before */
	bufferevent_setcb(s->bev, on_read, on_write, on_event, s);
	bufferevent_setwatermark(s->bev, EV_READ, 0, SMTPD_INPUT_MAX);
	bufferevent_set_timeouts(s->bev, &tv, &tv);
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
	snprintf(s->addr_lit, sizeof(s->addr_lit), "%s%s",
	    strchr(s->addr, ':') ? "IPv6:" : "", s->addr);
	snprintf(s->port, sizeof(s->port), "%u", port);
}

struct session *
session_new(struct event_base *base, evutil_socket_t fd,
    const struct sockaddr *sa, socklen_t salen, enum listen_kind kind)
{
	struct session *s = xcalloc(1, sizeof(*s));
	char why[POLICY_REPLY_MAX];

	s->base = base;
	s->kind = kind;
	if ((size_t)salen > sizeof(s->sa))
		salen = sizeof(s->sa);
	memcpy(&s->sa, sa, (size_t)salen);
	format_addr(s, sa);
	s->name = "unknown";
	s->trusted = policy_trusted(sa);
	s->state = ST_GREET;
	s->mode = IN_CMD;
	s->sleep_ev = evtimer_new(base, on_sleep, s);
	if (s->sleep_ev == NULL)
		fatal("smtpd: cannot set up a session");
	session_set_bev(s, bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE));
	TAILQ_INSERT_TAIL(&sessions, s, entry);
	log_info("connect from %s", session_client(s));
	if (policy_conn_open(sa, s->trusted, why, sizeof(why)) != 0) {
		log_warn("refused %s: %s", session_client(s), why);
		session_close(s, "%s", why);
		return NULL;
	}
	s->counted = 1;
	if (kind == LK_SMTPS)		/* RFC 8314: TLS first, then the 220 */
		return session_tls_accept(s) == 0 ? s : NULL;
	bufferevent_enable(s->bev, EV_READ);
	session_greet(s);
	return s;
}

/* SIGTERM: a session between transactions ends now; one inside a
 * transaction ends after it (smtp_session.c checks smtpd_stopping). */
void
session_shutdown(struct session *s)
{
	if (s->mode == IN_CMD && s->tx == NULL)
		session_close(s, "421 4.3.2 %s Service shutting down",
		    conf_str(C_myhostname));
}
