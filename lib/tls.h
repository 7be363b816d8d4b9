/*
 * TLS contexts on OpenSSL 3, shared by smtpd (server side: STARTTLS and
 * implicit TLS) and whoever needs a client context (queued's remote
 * transport). The bufferevent plumbing stays with the caller
 * (bufferevent_openssl_filter_new / _socket_new with an SSL from here).
 *
 * Ownership: every SSL_CTX returned is the caller's (SSL_CTX_free). An
 * SSL made from a context holds its own reference, so a reload can free
 * the old context while live sessions keep using it until they end.
 */
#ifndef HERMOD_TLS_H
#define HERMOD_TLS_H

#include <stddef.h>

#include <openssl/ssl.h>

#define TLS_ERR_MAX		512	/* the error texts below fit in this */
#define TLS_DESCRIBE_MAX	160	/* tls_describe's text */

/* Cipher list for TLS 1.2 (TLS 1.3 suites are OpenSSL's defaults): only
 * forward-secret AEAD suites. */
#define TLS_DEFAULT_CIPHERS \
	"ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!eNULL"

struct tls_server_conf {
	const char *cert_file;	/* PEM: the certificate, then its chain */
	const char *key_file;	/* PEM private key */
	const char *protocols;	/* ">=TLSv1.2" (NULL/"": that), ">=TLSv1.3" */
	const char *ciphers;	/* OpenSSL list for TLS <= 1.2 (NULL/"": default) */
};

/*
 * A server context: certificate chain and key checked against each
 * other, minimum version from protocols, no compression, no
 * renegotiation, server cipher preference, session cache and tickets,
 * SSL_MODE_RELEASE_BUFFERS. NULL with a one-line reason in err (naming
 * the file) when a file is missing or unreadable, the key does not match
 * the certificate, or a setting is invalid.
 */
SSL_CTX *tls_server_ctx(const struct tls_server_conf *c, char *err,
    size_t errsz);

/*
 * Reload: build a new context from c; on success free *ctx and put the
 * new one there (0). On failure *ctx is left alone (-1, reason in err):
 * the old certificate stays in use.
 */
int tls_server_reload(SSL_CTX **ctx, const struct tls_server_conf *c,
    char *err, size_t errsz);

/*
 * A client context: TLS 1.2 or later, RELEASE_BUFFERS. verify = 0: no
 * certificate check (opportunistic TLS). verify = 1: the chain must
 * verify against ca_file (NULL/"": the system's default store).
 */
SSL_CTX *tls_client_ctx(int verify, const char *ca_file, char *err,
    size_t errsz);

/* A client SSL for one connection: SNI set to servername (unless NULL,
 * empty or an address literal); with a verifying context the peer's name
 * must match servername too. NULL on failure. */
SSL *tls_client_ssl(SSL_CTX *ctx, const char *servername);

/* Parse a protocols value into a minimum version (TLS1_2_VERSION ...);
 * -1 if not understood. Accepts ">=TLSv1.2", "TLSv1.2", ">=TLSv1.3",
 * "TLSv1.3" and Postfix's "!SSLv2, !SSLv3, !TLSv1, !TLSv1.1" form. */
int tls_min_version(const char *protocols);

/* "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)", as
 * Postfix writes it in Received:; "" when ssl is NULL. Returns out. */
const char *tls_describe(SSL *ssl, char *out, size_t outsz);

/* The OpenSSL error queue's first entry, as text (the queue is emptied). */
const char *tls_error_text(char *out, size_t outsz);

#endif
