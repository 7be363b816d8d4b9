/*
 * smtpd's TLS: the server context (lib/tls.h) made at start from
 * tls_cert_file/tls_key_file and replaced at SIGHUP (sessions already in
 * TLS keep the context they started with), STARTTLS (RFC 3207) and
 * implicit TLS on smtps_listen (RFC 8314), both as a
 * bufferevent_openssl filter over the session's socket bufferevent.
 *
 * STARTTLS and pipelining (CVE-2011-0411): whatever the client sent after
 * the STARTTLS line, before the handshake, is thrown away and never
 * executed; after the handshake the session starts over (EHLO again, no
 * transaction, no AUTH). The handshake has its own deadline
 * (smtpd_starttls_timeout).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "conf.h"
#include "log.h"
#include "smtpd.h"
#include "smtpd_tls.h"
#include "tls.h"

static SSL_CTX *server_ctx;

static void
server_conf(struct tls_server_conf *c)
{
	c->cert_file = conf_str(C_tls_cert_file);
	c->key_file = conf_str(C_tls_key_file);
	c->protocols = conf_str(C_smtpd_tls_protocols);
	c->ciphers = conf_str(C_tls_high_cipherlist);
}

int
smtpd_tls_init(void)
{
	struct tls_server_conf c;
	char err[TLS_ERR_MAX];

	server_conf(&c);
	if (c.cert_file[0] == '\0' && c.key_file[0] == '\0')
		return 0;
	if ((server_ctx = tls_server_ctx(&c, err, sizeof(err))) == NULL) {
		log_crit("TLS: %s", err);
		return -1;
	}
	return 0;
}

void
smtpd_tls_reload(void)
{
	struct tls_server_conf c;
	char err[TLS_ERR_MAX];

	server_conf(&c);
	if (c.cert_file[0] == '\0' && c.key_file[0] == '\0') {
		if (server_ctx != NULL)
			log_warn("TLS: tls_cert_file is now empty; keeping the "
			    "certificate loaded before");
		return;
	}
	if (tls_server_reload(&server_ctx, &c, err, sizeof(err)) != 0)
		log_crit("TLS: %s; keeping the previous certificate", err);
	else
		log_info("TLS: certificate %s loaded", c.cert_file);
}

int
smtpd_tls_available(void)
{
	return server_ctx != NULL;
}

/* ---- the handshake ---------------------------------------------------------- */

static void
on_handshake_timeout(evutil_socket_t fd, short ev, void *arg)
{
	struct session *s = arg;

	(void)fd;
	(void)ev;
	log_info("timeout during TLS handshake from %s", session_client(s));
	session_free(s);
}

/* Wrap the session's socket bufferevent; the session waits (IN_WAIT)
 * until session_tls_event sees the handshake end. */
static int
tls_wrap(struct session *s)
{
	struct timeval tv = { conf_num(C_smtpd_starttls_timeout), 0 };
	struct bufferevent *nbev;
	SSL *ssl = SSL_new(server_ctx);

	if (ssl == NULL)
		return -1;
	nbev = bufferevent_openssl_filter_new(s->base, s->bev, ssl,
	    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	if (nbev == NULL) {
		SSL_free(ssl);
		return -1;
	}
	/* Many clients drop TCP without close_notify: an EOF, not an error. */
	bufferevent_openssl_set_allow_dirty_shutdown(nbev, 1);
	session_set_bev(s, nbev);
	bufferevent_set_timeouts(nbev, NULL, NULL);	/* our deadline instead */
	if (s->tls_timer == NULL &&
	    (s->tls_timer = evtimer_new(s->base, on_handshake_timeout, s)) == NULL)
		fatal("smtpd: cannot set up a timer");
	evtimer_add(s->tls_timer, &tv);
	s->tls_handshake = 1;
	s->mode = IN_WAIT;
	bufferevent_enable(nbev, EV_READ);
	return 0;
}

int
session_tls_event(struct session *s, short what)
{
	struct timeval tv = { conf_num(C_smtpd_timeout), 0 };
	char why[256];

	if (!s->tls_handshake)
		return 0;
	if (!(what & BEV_EVENT_CONNECTED)) {
		unsigned long e = bufferevent_get_openssl_error(s->bev);

		if (e != 0)
			ERR_error_string_n(e, why, sizeof(why));
		log_info("TLS handshake failed with %s: %s", session_client(s),
		    e ? why : (what & BEV_EVENT_EOF) ? "connection closed" :
		    "connection error");
		session_free(s);
		return 1;
	}
	s->tls_handshake = 0;
	s->tls = 1;
	evtimer_del(s->tls_timer);
	bufferevent_set_timeouts(s->bev, &tv, &tv);
	log_info("TLS established with %s: %s", session_client(s),
	    session_tls_info(s));
	if (s->kind == LK_SMTPS && s->state == ST_GREET && !s->esmtp)
		session_greet(s);	/* implicit TLS: the greeting comes now */
	session_resume(s, IN_CMD);
	return 1;
}

int
session_tls_accept(struct session *s)
{
	if (server_ctx == NULL || tls_wrap(s) != 0) {
		log_warn("TLS: cannot set up a session for %s", session_client(s));
		session_free(s);
		return -1;
	}
	return 0;
}

/* ---- STARTTLS ---------------------------------------------------------------- */

static const char *
starttls_refusal(const struct session *s, const char *arg)
{
	if (s->tls)
		return "503 5.5.1 Error: TLS already active";
	if (server_ctx == NULL)
		return "502 5.5.1 Error: command not implemented";
	if (s->state == ST_GREET)
		return "503 5.5.1 Error: send EHLO first";
	if (s->tx != NULL)
		return "503 5.5.1 Error: MAIL transaction in progress";
	if (arg[0] != '\0')
		return "501 5.5.4 Syntax: STARTTLS";
	return NULL;
}

void
cmd_starttls(struct session *s, char *arg)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	const char *no = starttls_refusal(s, arg);
	size_t stray;

	if (no != NULL) {
		session_error(s, "%s", no);
		return;
	}
	/* Anything pipelined after STARTTLS is plaintext an attacker may
	 * have injected: dropped, never executed (RFC 3207 5, CVE-2011-0411). */
	if ((stray = evbuffer_get_length(in)) > 0) {
		log_warn("discarding %zu byte(s) pipelined after STARTTLS from %s",
		    stray, session_client(s));
		evbuffer_drain(in, stray);
	}
	session_reply(s, "220 2.0.0 Ready to start TLS");
	/* the session starts over: RFC 3207 4.2 */
	txn_free(s);
	s->helo[0] = '\0';
	s->esmtp = 0;
	s->state = ST_GREET;
	s->line_start = 0;
	auth_reset(s);
	if (tls_wrap(s) != 0) {
		log_warn("TLS: cannot set up a session for %s", session_client(s));
		session_close(s, NULL);
	}
}

const char *
session_tls_info(struct session *s)
{
	static char buf[TLS_DESCRIBE_MAX];

	if (!s->tls)
		return NULL;
	return tls_describe(bufferevent_openssl_get_ssl(s->bev), buf, sizeof(buf));
}

void
session_tls_free(struct session *s)
{
	if (s->tls_timer != NULL)
		event_free(s->tls_timer);
	s->tls_timer = NULL;
}
