/*
 * Argument syntax of MAIL FROM and RCPT TO for the LMTP session: the
 * <path> through lib/addr's RFC 5321 parser, leniently (queued is our
 * only client: bare local names such as "root" come through it), and the
 * ESMTP parameters after it (split by the shared smtp_params_parse of
 * lib/smtp_proto). Bounded as lib/addr is (path 256 octets, RFC 5321
 * 4.5.3.1.3).
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "addr.h"
#include "lmtp_parse.h"
#include "smtp_proto.h"

int
lmtp_parse_path(char *s, const char *prefix, char *out, size_t outsz,
    char **rest)
{
	size_t plen = strlen(prefix);
	unsigned flags = ADDR_F_LENIENT | ADDR_F_UTF8;
	const char *r;

	if (strncasecmp(s, prefix, plen) != 0)
		return -1;
	if (strcasecmp(prefix, "FROM:") == 0)
		flags |= ADDR_F_NULL_OK;
	if (addr_parse_mailbox(s + plen, flags, out, outsz, &r) != ADDR_OK)
		return -1;
	*rest = s + (r - s);	/* addr_parse reads s, never writes it */
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
