/*
 * Argument syntax of MAIL FROM and RCPT TO for the LMTP session: the
 * <path> (RFC 5321 4.1.2, quoted local parts, an old source route
 * dropped) and the ESMTP parameters after it (split by the shared
 * smtp_params_parse of lib/smtp_proto). Bounded: a path longer than 256
 * octets (RFC 5321 4.5.3.1.3) is refused.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lmtp_parse.h"
#include "smtp_proto.h"

/* Printable ASCII or UTF-8 (SMTPUTF8); no controls, no space outside
 * quotes. */
static int
path_char_ok(unsigned char c, int quoted)
{
	if (c < 0x20 || c == 0x7f)
		return 0;
	return quoted || c != ' ';
}

int
lmtp_parse_path(char *s, const char *prefix, char *out, size_t outsz,
    char **rest)
{
	size_t plen = strlen(prefix);
	int quoted = 0;
	size_t o = 0;

	if (strncasecmp(s, prefix, plen) != 0)
		return -1;
	s += plen;
	while (*s == ' ')
		s++;
	if (*s++ != '<')
		return -1;
	if (*s == '@') {	/* <@a,@b:user@dom>: keep only user@dom */
		char *colon = strchr(s, ':');
		if (colon == NULL)
			return -1;
		s = colon + 1;
	}
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		if (!quoted && c == '>')
			break;
		if (!path_char_ok(c, quoted))
			return -1;
		if (c == '\\' && quoted && s[1] != '\0') {
			if (o + 2 >= outsz || o + 2 > LMTP_PATH_MAX)
				return -1;
			out[o++] = *s++;
		} else if (c == '"') {
			quoted = !quoted;
		}
		if (o + 1 >= outsz || o + 1 > LMTP_PATH_MAX)
			return -1;
		out[o++] = *s;
	}
	if (*s != '>')
		return -1;
	out[o] = '\0';
	s++;
	if (*s != '\0' && *s != ' ')
		return -1;
	while (*s == ' ')
		s++;
	*rest = s;
	return 0;
}

/* 1 when v is 1 to 19 digits (SIZE=), its value in *n. */
static int
size_value(const char *v, unsigned long long *n)
{
	size_t len = v != NULL ? strspn(v, "0123456789") : 0;

	if (len == 0 || len > 19 || v[len] != '\0')
		return 0;
	*n = strtoull(v, NULL, 10);
	return 1;
}

int
lmtp_parse_mail_params(char *s, unsigned long long *size)
{
	struct smtp_params ps;

	*size = 0;
	if (smtp_params_parse(s, SMTP_PARAM_F_UTF8, &ps) != SMTP_PARAM_OK)
		return -1;
	for (unsigned i = 0; i < ps.n; i++) {
		const char *k = ps.p[i].key, *v = ps.p[i].value;

		if (strcasecmp(k, "SIZE") == 0) {
			if (!size_value(v, size))
				return -1;
		} else if (strcasecmp(k, "BODY") == 0) {
			if (v == NULL || (strcasecmp(v, "8BITMIME") != 0 &&
			    strcasecmp(v, "7BIT") != 0))
				return -1;
		} else if (strcasecmp(k, "SMTPUTF8") != 0 || v != NULL) {
			return -2;
		}
	}
	return 0;
}

int
lmtp_parse_rcpt_params(char *s)
{
	struct smtp_params ps;

	if (smtp_params_parse(s, SMTP_PARAM_F_UTF8, &ps) != SMTP_PARAM_OK)
		return -1;
	/* DSN parameters are accepted and have nothing to do here: lmtpd
	 * is the final delivery, success notices are queued's business. */
	for (unsigned i = 0; i < ps.n; i++)
		if (strcasecmp(ps.p[i].key, "NOTIFY") != 0 &&
		    strcasecmp(ps.p[i].key, "ORCPT") != 0)
			return -2;
	return 0;
}
