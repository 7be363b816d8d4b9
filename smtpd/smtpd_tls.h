/*
 * smtpd's TLS (issue 8) and AUTH entry points, called from the session
 * (session_io.c, smtp_session.c, smtp_data.c) and start-up (smtpd.c).
 * TLS: smtpd_tls.c; AUTH and the sender-ownership check: smtpd_auth.c.
 */
#ifndef HERMOD_SMTPD_TLS_H
#define HERMOD_SMTPD_TLS_H

#include <stddef.h>

#include <event2/bufferevent.h>

struct session;
struct srv_session;

/* Start-up: the server context from tls_cert_file/tls_key_file. 0 (also
 * when no certificate is configured), -1 with the reason logged. */
int smtpd_tls_init(void);
/* SIGHUP: a new context for new sessions; on failure the old one stays. */
void smtpd_tls_reload(void);
int smtpd_tls_available(void);		/* a certificate is loaded */

/* The STARTTLS command (RFC 3207). */
void cmd_starttls(struct session *s, char *arg);
/* Implicit TLS (smtps): an OpenSSL bufferevent accepting on fd (owned
 * from then on: closed on failure), the handshake deadline armed; NULL if
 * none can be made.
 * The greeting follows the handshake. */
struct bufferevent *session_tls_bev(struct session *s, evutil_socket_t fd);
/* lib/smtp_server's on_tls: the handshake is done (ok = 1) or failed. */
void session_on_tls(struct srv_session *srv, int ok);
/* The session ends: a handshake still running is logged, timer freed. */
void session_tls_closed(struct session *s);
/* "TLSv1.3 with cipher ..." for Received:, NULL without TLS. */
const char *session_tls_info(struct session *s);

/* smtpd_auth.c */
int auth_offered(const struct session *s);
void cmd_auth(struct session *s, char *arg);
/* An AUTH exchange waits for the client's next line: 1 and it was taken. */
int auth_continue(struct session *s, const char *line, size_t len);
/* A line past the engine's limit came during an exchange: it fails with
 * 500 5.5.6 (1), or there is none (0). */
int auth_line_too_long(struct session *s);
/* MAIL FROM by an authenticated client: NULL, or the 553 reply. */
const char *auth_sender_check(struct session *s, const char *sender);
void auth_reset(struct session *s);	/* after STARTTLS: forget AUTH */
void auth_free(struct session *s);

#endif
