/*
 * lib/tls: server contexts from certificates made at test time with the
 * openssl command (a chain file, a mismatched key, missing files), the
 * reload that keeps the old context, protocol settings, and real
 * handshakes over a BIO pair (TLS 1.1 refused, 1.2/1.3 accepted, SNI).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "tls.h"
#include "unit.h"

static char dir[] = "/tmp/hermod-tls-XXXXXX";
static char cert_a[300], key_a[300], cert_b[300], key_b[300], chain[300];

static int
sh(const char *fmt, const char *d)
{
	char cmd[2048];

	snprintf(cmd, sizeof(cmd), fmt, d, d, d, d, d, d, d, d);
	return system(cmd);
}

/* Two self-signed P-256 certificates (a, b) and a leaf signed by a's key
 * with a in the chain file. */
static int
make_certs(void)
{
	const char *gen = "cd %s && "
	    "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
	    "-days 2 -subj /CN=a.test -keyout a.key -out a.pem 2>/dev/null && "
	    "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
	    "-days 2 -subj /CN=b.test -keyout b.key -out b.pem 2>/dev/null && "
	    "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
	    "-subj /CN=leaf.test -keyout leaf.key -out leaf.csr 2>/dev/null && "
	    "openssl x509 -req -in leaf.csr -CA a.pem -CAkey a.key -CAcreateserial "
	    "-days 2 -out leaf.pem 2>/dev/null && cat leaf.pem a.pem > chain.pem";

	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(cert_a, sizeof(cert_a), "%s/a.pem", dir);
	snprintf(key_a, sizeof(key_a), "%s/a.key", dir);
	snprintf(cert_b, sizeof(cert_b), "%s/b.pem", dir);
	snprintf(key_b, sizeof(key_b), "%s/b.key", dir);
	snprintf(chain, sizeof(chain), "%s/chain.pem", dir);
	return sh(gen, dir);
}

TEST(test_min_version)
{
	static const struct {
		const char *in;
		int want;
	} t[] = {
		{ NULL, TLS1_2_VERSION }, { "", TLS1_2_VERSION },
		{ ">=TLSv1.2", TLS1_2_VERSION }, { ">=tlsv1.3", TLS1_3_VERSION },
		{ "TLSv1.3", TLS1_3_VERSION },
		{ "!SSLv2, !SSLv3, !TLSv1, !TLSv1.1", TLS1_2_VERSION },
		{ "!SSLv2:!SSLv3:!TLSv1:!TLSv1.1:!TLSv1.2", TLS1_3_VERSION },
		{ "!SSLv2, !SSLv3, !TLSv1", -1 },	/* would allow 1.1 */
		{ ">=TLSv1", -1 }, { ">=TLSv1.1", -1 }, { "SSLv3", -1 },
		{ "junk", -1 },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		CHECK_INT(tls_min_version(t[i].in), t[i].want);
}

TEST(test_server_ctx_errors)
{
	struct tls_server_conf c = { cert_a, key_a, NULL, NULL };
	char err[TLS_ERR_MAX], missing[320];
	SSL_CTX *ctx;

	ctx = tls_server_ctx(&c, err, sizeof(err));
	CHECK(ctx != NULL);
	SSL_CTX_free(ctx);
	c.key_file = key_b;		/* mismatched */
	CHECK(tls_server_ctx(&c, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "does not match") != NULL);
	snprintf(missing, sizeof(missing), "%s/nothere.pem", dir);
	c.key_file = key_a;
	c.cert_file = missing;
	CHECK(tls_server_ctx(&c, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "nothere.pem") != NULL);
	c.cert_file = "";
	CHECK(tls_server_ctx(&c, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "not set") != NULL);
	c.cert_file = key_a;		/* a key is no certificate */
	CHECK(tls_server_ctx(&c, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "bad certificate file") != NULL);
	c.cert_file = cert_a;
	c.protocols = ">=TLSv1";
	CHECK(tls_server_ctx(&c, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "protocols") != NULL);
	c.protocols = NULL;
	c.ciphers = "NOSUCHCIPHER";
	CHECK(tls_server_ctx(&c, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "cipher") != NULL);
}

/* Run a handshake between client and server over a BIO pair; 1 if both
 * sides finished. */
static int
handshake(SSL *cli, SSL *srv)
{
	BIO *b1, *b2;
	int cdone = 0, sdone = 0;

	if (BIO_new_bio_pair(&b1, 0, &b2, 0) != 1)
		return 0;
	SSL_set_bio(cli, b1, b1);
	SSL_set_bio(srv, b2, b2);
	SSL_set_connect_state(cli);
	SSL_set_accept_state(srv);
	for (int i = 0; i < 50 && !(cdone && sdone); i++) {
		int rc = SSL_do_handshake(cli), rs = SSL_do_handshake(srv);

		cdone = rc == 1;
		sdone = rs == 1;
		if ((rc <= 0 && SSL_get_error(cli, rc) == SSL_ERROR_SSL) ||
		    (rs <= 0 && SSL_get_error(srv, rs) == SSL_ERROR_SSL))
			break;
	}
	ERR_clear_error();
	return cdone && sdone;
}

static int
try_version(SSL_CTX *sctx, int max_version, int verify, const char *ca,
    const char *name, char *desc, size_t descsz)
{
	char err[TLS_ERR_MAX];
	SSL_CTX *cctx = tls_client_ctx(verify, ca, err, sizeof(err));
	SSL *cli, *srv;
	int ok;

	if (cctx == NULL)
		return -1;
	if (max_version)
		SSL_CTX_set_max_proto_version(cctx, max_version);
	if (max_version && max_version < TLS1_2_VERSION) {
		SSL_CTX_set_min_proto_version(cctx, max_version);
		SSL_CTX_set_security_level(cctx, 0);
	}
	cli = tls_client_ssl(cctx, name);
	srv = SSL_new(sctx);
	ok = handshake(cli, srv);
	if (desc != NULL)
		tls_describe(srv, desc, descsz);
	SSL_free(cli);
	SSL_free(srv);
	SSL_CTX_free(cctx);
	return ok;
}

TEST(test_handshakes)
{
	struct tls_server_conf c = { chain, NULL, NULL, NULL };
	char err[TLS_ERR_MAX], key[320], desc[TLS_DESCRIBE_MAX];
	SSL_CTX *sctx;

	snprintf(key, sizeof(key), "%s/leaf.key", dir);
	c.key_file = key;
	sctx = tls_server_ctx(&c, err, sizeof(err));
	CHECK(sctx != NULL);
	if (sctx == NULL) {
		fprintf(stderr, "%s\n", err);
		return;
	}
	CHECK_INT(try_version(sctx, 0, 0, NULL, "leaf.test", desc, sizeof(desc)), 1);
	CHECK(strncmp(desc, "TLSv1.3 with cipher ", 20) == 0);
	CHECK_INT(try_version(sctx, TLS1_2_VERSION, 0, NULL, NULL, desc, sizeof(desc)), 1);
	CHECK(strncmp(desc, "TLSv1.2 with cipher ECDHE", 25) == 0);
	CHECK_INT(try_version(sctx, TLS1_1_VERSION, 0, NULL, NULL, NULL, 0), 0);
	/* verification: the chain's root as CA, right and wrong names */
	CHECK_INT(try_version(sctx, 0, 1, cert_a, "leaf.test", NULL, 0), 1);
	CHECK_INT(try_version(sctx, 0, 1, cert_a, "other.test", NULL, 0), 0);
	CHECK_INT(try_version(sctx, 0, 1, cert_b, "leaf.test", NULL, 0), 0);
	SSL_CTX_free(sctx);
	CHECK_STR(tls_describe(NULL, desc, sizeof(desc)), "");
}

TEST(test_reload)
{
	struct tls_server_conf c = { cert_a, key_a, NULL, NULL };
	char err[TLS_ERR_MAX];
	SSL_CTX *ctx = tls_server_ctx(&c, err, sizeof(err)), *old = ctx;
	SSL *live;

	CHECK(ctx != NULL);
	live = SSL_new(ctx);		/* a session made before the reload */
	c.key_file = key_b;		/* mismatch: the old one stays */
	CHECK_INT(tls_server_reload(&ctx, &c, err, sizeof(err)), -1);
	CHECK(ctx == old);
	c.cert_file = cert_b;
	CHECK_INT(tls_server_reload(&ctx, &c, err, sizeof(err)), 0);
	CHECK(ctx != old);
	/* the live session still has its (old) context and certificate */
	CHECK(SSL_get_SSL_CTX(live) == old);
	CHECK(SSL_get_certificate(live) != NULL);
	SSL_free(live);
	SSL_CTX_free(ctx);
}

TEST(test_client_ssl)
{
	char err[TLS_ERR_MAX];
	SSL_CTX *cctx = tls_client_ctx(0, NULL, err, sizeof(err));
	SSL *s;

	CHECK(cctx != NULL);
	s = tls_client_ssl(cctx, "mx.example.test");
	CHECK_STR(SSL_get_servername(s, TLSEXT_NAMETYPE_host_name), "mx.example.test");
	SSL_free(s);
	s = tls_client_ssl(cctx, "192.0.2.1");	/* no SNI for an address */
	CHECK(SSL_get_servername(s, TLSEXT_NAMETYPE_host_name) == NULL);
	SSL_free(s);
	s = tls_client_ssl(cctx, NULL);
	CHECK(s != NULL);
	SSL_free(s);
	SSL_CTX_free(cctx);
	CHECK(tls_client_ctx(1, "/nonexistent/ca.pem", err, sizeof(err)) == NULL);
	CHECK(strstr(err, "CA") != NULL);
}

int
main(void)
{
	char cmd[400];

	if (make_certs() != 0) {
		fprintf(stderr, "cannot make test certificates with openssl\n");
		return 1;
	}
	RUN(test_min_version);
	RUN(test_server_ctx_errors);
	RUN(test_handshakes);
	RUN(test_reload);
	RUN(test_client_ssl);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
	return unit_done("tls");
}
