/*
 * Argument syntax of MAIL FROM and RCPT TO for the LMTP session: the
 * <path> (RFC 5321 4.1.2, quoted local parts, an old source route
 * dropped) and the ESMTP parameters after it. Bounded: a path longer
 * than 256 octets (RFC 5321 4.5.3.1.3) is refused.
 */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "lmtp_parse.h"

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
lmtp_parse_path(const char *s, const char *prefix, char *out, size_t outsz,
    const char **rest)
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
		const char *colon = strchr(s, ':');
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

/* Next "KEY[=VALUE]" word of a parameter list. */
static int
next_param(const char **s, char *key, size_t keysz, const char **val, size_t *vlen)
{
	const char *p = *s, *end, *eq;

	while (*p == ' ')
		p++;
	if (*p == '\0')
		return 0;
	end = strchr(p, ' ');
	if (end == NULL)
		end = p + strlen(p);
	eq = memchr(p, '=', (size_t)(end - p));
	size_t klen = (size_t)((eq ? eq : end) - p);
	if (klen == 0 || klen >= keysz)
		return -1;
	memcpy(key, p, klen);
	key[klen] = '\0';
	*val = eq ? eq + 1 : NULL;
	*vlen = eq ? (size_t)(end - eq - 1) : 0;
	*s = end;
	return 1;
}

int
lmtp_parse_mail_params(const char *s, unsigned long long *size)
{
	char key[32];
	const char *val;
	size_t vlen;
	int r;

	*size = 0;
	while ((r = next_param(&s, key, sizeof(key), &val, &vlen)) > 0) {
		if (strcasecmp(key, "SIZE") == 0) {
			if (val == NULL || vlen == 0 || vlen > 19)
				return -1;
			unsigned long long n = 0;
			for (size_t i = 0; i < vlen; i++) {
				if (!isdigit((unsigned char)val[i]))
					return -1;
				n = n * 10 + (unsigned)(val[i] - '0');
			}
			*size = n;
		} else if (strcasecmp(key, "BODY") == 0) {
			if (val == NULL || (strncasecmp(val, "8BITMIME", vlen) != 0 &&
			    strncasecmp(val, "7BIT", vlen) != 0))
				return -1;
		} else if (strcasecmp(key, "SMTPUTF8") != 0 || val != NULL) {
			return -2;
		}
	}
	return r;
}

int
lmtp_parse_rcpt_params(const char *s)
{
	char key[32];
	const char *val;
	size_t vlen;
	int r;

	/* DSN parameters are accepted and have nothing to do here: lmtpd
	 * is the final delivery, success notices are queued's business. */
	while ((r = next_param(&s, key, sizeof(key), &val, &vlen)) > 0) {
		if (strcasecmp(key, "NOTIFY") != 0 && strcasecmp(key, "ORCPT") != 0)
			return -2;
	}
	return r;
}
