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
	s->tls_handshake = 0;
	srv_close(s->srv);
}

/* The handshake has its own deadline (smtpd_starttls_timeout). */
static void
handshake_begin(struct session *s)
{
	struct timeval tv = { conf_num(C_smtpd_starttls_timeout), 0 };

	if (s->tls_timer == NULL &&
	    (s->tls_timer = evtimer_new(s->base, on_handshake_timeout, s)) == NULL)
		fatal("smtpd: cannot set up a timer");
	evtimer_add(s->tls_timer, &tv);
	s->tls_handshake = 1;
}

struct bufferevent *
session_tls_bev(struct session *s, evutil_socket_t fd)
{
	struct bufferevent *under, *bev;
	SSL *ssl = server_ctx != NULL ? SSL_new(server_ctx) : NULL;

	/* A filter over a socket bufferevent, as after STARTTLS (a greeting
	 * written on an OpenSSL socket bufferevent right at the handshake's
	 * end was seen lost to a client that closes at once). */
	if (ssl == NULL ||
	    (under = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE)) == NULL) {
		SSL_free(ssl);
		evutil_closesocket(fd);
		return NULL;
	}
	bev = bufferevent_openssl_filter_new(s->base, under, ssl,
	    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		SSL_free(ssl);
		bufferevent_free(under);	/* closes fd */
		return NULL;
	}
	/* Many clients drop TCP without close_notify: an EOF, not an error. */
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	handshake_begin(s);
	return bev;
}

/* The engine's on_tls: the handshake is done (ok) or failed. */
void
session_on_tls(struct srv_session *srv, int ok)
{
	struct session *s = srv_udata(srv);
	char why[256];

	if (!s->tls_handshake)
		return;
	s->tls_handshake = 0;
	evtimer_del(s->tls_timer);
	if (!ok) {
		unsigned long e = bufferevent_get_openssl_error(srv_bev(srv));

		if (e != 0)
			ERR_error_string_n(e, why, sizeof(why));
		log_info("TLS handshake failed with %s: %s", session_client(s),
		    e ? why : "connection error");
		return;		/* the engine closes the session */
	}
	s->tls = 1;
	log_info("TLS established with %s: %s", session_client(s),
	    session_tls_info(s));
	/* implicit TLS: the greeting comes now, or when the client's name
	 * lookup is over (session_connected) */
	if (s->kind == LK_SMTPS && s->lookup == NULL &&
	    session_st(s) == ST_GREET && !s->esmtp)
		session_greet(s);
}

void
session_tls_closed(struct session *s)
{
	if (s->tls_handshake)
		log_info("TLS handshake failed with %s: connection closed",
		    session_client(s));
	if (s->tls_timer != NULL)
		event_free(s->tls_timer);
	s->tls_timer = NULL;
}

/* ---- STARTTLS ---------------------------------------------------------------- */

static const char *
starttls_refusal(const struct session *s, const char *arg)
{
	if (s->tls)
		return "503 5.5.1 Error: TLS already active";
	if (server_ctx == NULL)
		return "502 5.5.1 Error: command not implemented";
	if (session_st(s) == ST_GREET)
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
	const char *no = starttls_refusal(s, arg);
	size_t stray;
	SSL *ssl;

	if (no != NULL) {
		session_error(s, "%s", no);
		return;
	}
	/* Anything pipelined after STARTTLS is plaintext an attacker may
	 * have injected: the engine drops it, never executed (RFC 3207 5,
	 * CVE-2011-0411). */
	if ((stray = srv_input_pending(s->srv)) > 0)
		log_warn("discarding %zu byte(s) pipelined after STARTTLS from %s",
		    stray, session_client(s));
	session_reply(s, "220 2.0.0 Ready to start TLS");
	/* the session starts over: RFC 3207 4.2 */
	txn_free(s);
	free(s->helo);
	s->helo = NULL;
	s->esmtp = 0;
	session_set_state(s, S_GREET);
	auth_reset(s);
	if ((ssl = SSL_new(server_ctx)) == NULL ||
	    srv_starttls(s->srv, ssl) != 0) {	/* srv_starttls owns ssl */
		log_warn("TLS: cannot set up a session for %s", session_client(s));
		session_close(s, NULL);
		return;
	}
	handshake_begin(s);
}

const char *
session_tls_info(struct session *s)
{
	static char buf[TLS_DESCRIBE_MAX];

	if (!s->tls)
		return NULL;
	return tls_describe(bufferevent_openssl_get_ssl(srv_bev(s->srv)), buf,
	    sizeof(buf));
}
