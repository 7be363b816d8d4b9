/*
 * TLS and AUTH settings of remote delivery (remote.c): the level for a
 * destination (smtp_tls_security_level, overridden per destination by the
 * smtp_tls_policy_maps text file), the OpenSSL client contexts behind the
 * SMTP client's STARTTLS (TLS 1.2 or later, SNI; "verify" checks the
 * chain against smtp_tls_ca_file and the exchanger's name), and SASL
 * credentials from the smtp_sasl_password_maps text file. The text files
 * are small and read when a session starts, so an edit needs no reload.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <event2/bufferevent_ssl.h>

#include "conf.h"
#include "log.h"
#include "queued.h"
#include "remote_int.h"

#define MAP_LINE_MAX	1024	/* a longer line in a map file is skipped */
#define MAP_LINES_MAX	100000	/* lines read per lookup */

static SSL_CTX *ctx_may, *ctx_verify;

static const char *const level_names[] = {
	[TLS_NONE] = "none", [TLS_MAY] = "may", [TLS_ENCRYPT] = "encrypt",
	[TLS_VERIFY] = "verify",
};

static int
level_parse(const char *s)
{
	for (int i = 0; i < (int)(sizeof(level_names) / sizeof(level_names[0])); i++)
		if (strcasecmp(s, level_names[i]) == 0)
			return i;
	return -1;
}

const char *
tls_level_name(int level)
{
	return level >= 0 && level <= TLS_VERIFY ? level_names[level] : "?";
}

/*
 * The value of `key` in a "KEY VALUE" text file (# comments); 1 found,
 * 0 not, -1 the file cannot be read. Keys compare case-insensitively.
 */
static int
map_lookup(const char *path, const char *key, char *val, size_t valsz)
{
	char line[MAP_LINE_MAX + 2];
	FILE *f;
	int found = 0;

	if ((f = fopen(path, "re")) == NULL)
		return -1;
	for (int n = 0; !found && n < MAP_LINES_MAX && fgets(line, sizeof(line), f); n++) {
		char *k, *v, *save;

		if (strchr(line, '\n') == NULL && !feof(f))
			continue;	/* too long: the rest comes as another line */
		if ((k = strtok_r(line, " \t\r\n", &save)) == NULL || k[0] == '#')
			continue;
		if ((v = strtok_r(NULL, " \t\r\n", &save)) == NULL || strcasecmp(k, key) != 0)
			continue;
		snprintf(val, valsz, "%s", v);
		found = 1;
	}
	fclose(f);
	return found;
}

int
remote_tls_level(const char *dest)
{
	const char *maps = conf_str(C_smtp_tls_policy_maps);
	char v[64];
	int level = level_parse(conf_str(C_smtp_tls_security_level));

	if (level < 0) {
		log_warn("smtp_tls_security_level: unknown level %s, using may",
		    conf_str(C_smtp_tls_security_level));
		level = TLS_MAY;
	}
	if (maps[0] != '\0') {
		int r = map_lookup(maps, dest, v, sizeof(v));

		if (r < 0)
			log_warn("smtp_tls_policy_maps %s: cannot read", maps);
		else if (r > 0 && level_parse(v) >= 0)
			level = level_parse(v);
		else if (r > 0)
			log_warn("smtp_tls_policy_maps: %s: unknown level %s", dest, v);
	}
	return level;
}

int
remote_sasl_lookup(const char *dest, char *user, size_t usersz, char *pass,
    size_t passsz)
{
	const char *maps = conf_str(C_smtp_sasl_password_maps);
	char v[MAP_LINE_MAX + 2], *colon;

	if (maps[0] == '\0' || map_lookup(maps, dest, v, sizeof(v)) <= 0)
		return 0;
	if ((colon = strchr(v, ':')) == NULL) {
		log_warn("smtp_sasl_password_maps: %s: not USER:PASSWORD", dest);
		return 0;
	}
	*colon = '\0';
	snprintf(user, usersz, "%s", v);
	snprintf(pass, passsz, "%s", colon + 1);
	return 1;
}

static SSL_CTX *
ctx_new(int verify)
{
	SSL_CTX *c = SSL_CTX_new(TLS_client_method());
	const char *ca = conf_str(C_smtp_tls_ca_file);

	if (c == NULL)
		return NULL;
	SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
	SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_verify(c, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
	if (verify && (ca[0] != '\0' ? SSL_CTX_load_verify_locations(c, ca, NULL) :
	    SSL_CTX_set_default_verify_paths(c)) != 1)
		log_warn("smtp_tls_ca_file %s: cannot load; verify will fail",
		    ca[0] != '\0' ? ca : "(default)");
	return c;
}

void
remote_tls_init(void)
{
	if ((ctx_may = ctx_new(0)) == NULL || (ctx_verify = ctx_new(1)) == NULL)
		log_warn("remote delivery: OpenSSL context failed; no TLS");
}

/* The client's tls_wrap: a TLS filter over the plain connection. */
struct bufferevent *
remote_tls_wrap(struct bufferevent *plain, const char *host, int level)
{
	SSL_CTX *c = level == TLS_VERIFY ? ctx_verify : ctx_may;
	const char *ip;
	struct in6_addr a6;
	struct bufferevent *bev;
	SSL *ssl;

	if (c == NULL || (ssl = SSL_new(c)) == NULL)
		return NULL;
	/*
	 * SNI and the name checked: the exchanger's name. An address (a
	 * literal, a bracketed relayhost) has no SNI, and under verify the
	 * certificate must name that address: unchecked, any certificate
	 * from a trusted CA would pass for it.
	 */
	ip = strncasecmp(host, "IPv6:", 5) == 0 ? host + 5 : host;
	if (inet_pton(AF_INET, ip, &a6) != 1 && inet_pton(AF_INET6, ip, &a6) != 1) {
		SSL_set_tlsext_host_name(ssl, host);
		if (level == TLS_VERIFY)
			SSL_set1_host(ssl, host);
	} else if (level == TLS_VERIFY &&
	    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), ip) != 1) {
		SSL_free(ssl);
		return NULL;
	}
	bev = bufferevent_openssl_filter_new(queued_base, plain, ssl,
	    BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (bev == NULL)
		SSL_free(ssl);
	return bev;
}

/* "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384" for the log. */
void
remote_tls_describe(struct bufferevent *bev, char *out, size_t outsz)
{
	SSL *ssl = bev != NULL ? bufferevent_openssl_get_ssl(bev) : NULL;

	if (ssl == NULL) {
		snprintf(out, outsz, "no TLS");
		return;
	}
	snprintf(out, outsz, "%s with cipher %s", SSL_get_version(ssl),
	    SSL_get_cipher_name(ssl));
}
