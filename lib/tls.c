/*
 * TLS contexts (see tls.h): the server context smtpd hands to each
 * STARTTLS or implicit-TLS session, its reload that keeps the old one on
 * failure, and a client context for outgoing sessions. Defaults follow
 * RFC 8996/9325: TLS 1.2 and 1.3 only, forward-secret AEAD ciphers.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "tls.h"

#define SESSION_CACHE_SIZE	10000	/* server-side cached sessions */
#define SESSION_TIMEOUT		3600	/* seconds a session can be resumed */

const char *
tls_error_text(char *out, size_t outsz)
{
	unsigned long e = ERR_get_error();

	if (e == 0)
		snprintf(out, outsz, "unknown OpenSSL error");
	else
		ERR_error_string_n(e, out, outsz);
	ERR_clear_error();
	return out;
}

/* Fill err with "what FILE: OpenSSL's reason"; always -1. */
static int
fail(char *err, size_t errsz, const char *what, const char *file)
{
	char ossl[256];

	snprintf(err, errsz, "%s%s%s: %s", what, file ? " " : "", file ? file : "",
	    tls_error_text(ossl, sizeof(ossl)));
	return -1;
}

static int exclusions(const char *p);

int
tls_min_version(const char *p)
{
	static const struct {
		const char *name;
		int version;
	} exact[] = {
		{ "", TLS1_2_VERSION }, { ">=TLSv1.2", TLS1_2_VERSION },
		{ "TLSv1.2", TLS1_2_VERSION }, { ">=TLSv1.3", TLS1_3_VERSION },
		{ "TLSv1.3", TLS1_3_VERSION },
	};

	if (p == NULL)
		return TLS1_2_VERSION;
	for (size_t i = 0; i < sizeof(exact) / sizeof(exact[0]); i++)
		if (strcasecmp(p, exact[i].name) == 0)
			return exact[i].version;
	return exclusions(p);
}

/* Postfix's exclusion list ("!SSLv2, !SSLv3, !TLSv1, !TLSv1.1"): we never
 * go below TLS 1.2, so TLSv1 and TLSv1.1 must be excluded; excluding
 * TLSv1.2 too leaves 1.3. */
static int
exclusions(const char *p)
{
	char copy[128], *save = NULL, *w;
	unsigned seen = 0;

	if (strlen(p) >= sizeof(copy))
		return -1;
	snprintf(copy, sizeof(copy), "%s", p);
	for (w = strtok_r(copy, ", :", &save); w; w = strtok_r(NULL, ", :", &save)) {
		if (strcmp(w, "!SSLv2") == 0 || strcmp(w, "!SSLv3") == 0)
			continue;
		if (strcmp(w, "!TLSv1") == 0)
			seen |= 1;
		else if (strcmp(w, "!TLSv1.1") == 0)
			seen |= 2;
		else if (strcmp(w, "!TLSv1.2") == 0)
			seen |= 4;
		else
			return -1;
	}
	if ((seen & 3) != 3)
		return -1;
	return strstr(p, "!TLSv1.2") != NULL ? TLS1_3_VERSION : TLS1_2_VERSION;
}

/* Can we read the file? A clear message before OpenSSL's terse one. */
static int
readable(const char *what, const char *file, char *err, size_t errsz)
{
	if (file == NULL || file[0] == '\0') {
		snprintf(err, errsz, "%s is not set", what);
		return -1;
	}
	if (access(file, R_OK) != 0) {
		snprintf(err, errsz, "cannot read %s %s: %s", what, file,
		    strerror(errno));
		return -1;
	}
	return 0;
}

static int
load_pair(SSL_CTX *ctx, const struct tls_server_conf *c, char *err,
    size_t errsz)
{
	if (readable("certificate file", c->cert_file, err, errsz) != 0 ||
	    readable("key file", c->key_file, err, errsz) != 0)
		return -1;
	ERR_clear_error();
	if (SSL_CTX_use_certificate_chain_file(ctx, c->cert_file) != 1)
		return fail(err, errsz, "bad certificate file", c->cert_file);
	if (SSL_CTX_use_PrivateKey_file(ctx, c->key_file, SSL_FILETYPE_PEM) != 1)
		return fail(err, errsz, ERR_GET_REASON(ERR_peek_last_error()) ==
		    X509_R_KEY_VALUES_MISMATCH ? "the key does not match the "
		    "certificate: key file" : "bad key file", c->key_file);
	if (SSL_CTX_check_private_key(ctx) != 1)
		return fail(err, errsz, "the key does not match the certificate in",
		    c->cert_file);
	return 0;
}

static int
set_params(SSL_CTX *ctx, const struct tls_server_conf *c, char *err,
    size_t errsz)
{
	static const unsigned char sid_ctx[] = "hermod-smtpd";
	int min = tls_min_version(c->protocols);
	const char *ciphers = c->ciphers && c->ciphers[0] ? c->ciphers :
	    TLS_DEFAULT_CIPHERS;

	if (min < 0) {
		snprintf(err, errsz, "unknown TLS protocols setting \"%.100s\" "
		    "(use >=TLSv1.2 or >=TLSv1.3)", c->protocols);
		return -1;
	}
	SSL_CTX_set_min_proto_version(ctx, min);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
	    SSL_OP_CIPHER_SERVER_PREFERENCE);
	/* idle sessions should cost almost nothing */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	if (SSL_CTX_set_cipher_list(ctx, ciphers) != 1)
		return fail(err, errsz, "bad cipher list", NULL);
	/* resumption: a server-side cache for session ids, and tickets
	 * (OpenSSL's default, keys made per context) */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
	SSL_CTX_sess_set_cache_size(ctx, SESSION_CACHE_SIZE);
	SSL_CTX_set_timeout(ctx, SESSION_TIMEOUT);
	SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
	return 0;
}

SSL_CTX *
tls_server_ctx(const struct tls_server_conf *c, char *err, size_t errsz)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (ctx == NULL) {
		fail(err, errsz, "cannot make a TLS context", NULL);
		return NULL;
	}
	if (set_params(ctx, c, err, errsz) != 0 || load_pair(ctx, c, err, errsz) != 0) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

int
tls_server_reload(SSL_CTX **ctx, const struct tls_server_conf *c, char *err,
    size_t errsz)
{
	SSL_CTX *n = tls_server_ctx(c, err, errsz);

	if (n == NULL)
		return -1;
	SSL_CTX_free(*ctx);	/* live SSLs hold their own reference */
	*ctx = n;
	return 0;
}

SSL_CTX *
tls_client_ctx(int verify, const char *ca_file, char *err, size_t errsz)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (ctx == NULL) {
		fail(err, errsz, "cannot make a TLS context", NULL);
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_verify(ctx, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
	if (verify && (ca_file && ca_file[0] ?
	    SSL_CTX_load_verify_locations(ctx, ca_file, NULL) :
	    SSL_CTX_set_default_verify_paths(ctx)) != 1) {
		fail(err, errsz, "cannot load CA certificates", ca_file);
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

static int
is_literal(const char *name)
{
	unsigned char tmp[16];

	return name[0] == '[' || inet_pton(AF_INET, name, tmp) == 1 ||
	    inet_pton(AF_INET6, name, tmp) == 1;
}

SSL *
tls_client_ssl(SSL_CTX *ctx, const char *servername)
{
	SSL *ssl = SSL_new(ctx);

	if (ssl == NULL || servername == NULL || servername[0] == '\0' ||
	    is_literal(servername))
		return ssl;
	if (SSL_set_tlsext_host_name(ssl, servername) != 1) {
		SSL_free(ssl);
		return NULL;
	}
	if (SSL_CTX_get_verify_mode(ctx) & SSL_VERIFY_PEER) {
		SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		if (SSL_set1_host(ssl, servername) != 1) {
			SSL_free(ssl);
			return NULL;
		}
	}
	return ssl;
}

const char *
tls_describe(SSL *ssl, char *out, size_t outsz)
{
	const SSL_CIPHER *c;
	int alg = 0, bits;

	out[0] = '\0';
	if (ssl == NULL || (c = SSL_get_current_cipher(ssl)) == NULL)
		return out;
	bits = SSL_CIPHER_get_bits(c, &alg);
	snprintf(out, outsz, "%s with cipher %s (%d/%d bits)", SSL_get_version(ssl),
	    SSL_CIPHER_get_name(c), bits, alg);
	return out;
}
