/*
 * MAIL FROM / RCPT TO arguments for smtpd: the path through lib/addr (the
 * shared RFC 5321 parser: its bounds, its replies) and the ESMTP
 * parameters we offer, split by lib/smtp_proto's smtp_params_parse: SIZE
 * (RFC 1870), BODY (RFC 6152), SMTPUTF8, AUTH (RFC 4954), RET/ENVID/
 * NOTIFY/ORCPT (RFC 3461, xtext decoded by lib/smtp_proto). A parameter we
 * did not offer is 555 5.5.4.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "addr.h"
#include "conf.h"
#include "smtp_proto.h"
#include "smtpd.h"
#include "xalloc.h"

/*
 * "<path>" at s (after "FROM:" / "TO:"): the mailbox, without brackets
 * and route, into out; *rest at the parameters. A MAIL may give the null
 * path, a RCPT a bare local part (RFC 5321 4.5.1's "<Postmaster>"; the
 * policy decides what else a bare one may be). NULL, or the reply line.
 */
const char *
parse_path(const char *s, int is_mail, int utf8, char *out, size_t outsz,
    const char **rest)
{
	unsigned flags = (is_mail ? ADDR_F_NULL_OK : ADDR_F_BARE_OK) |
	    (utf8 ? ADDR_F_UTF8 : 0);
	enum addr_err e = addr_parse_mailbox(s, flags, out, outsz, rest);

	return e == ADDR_OK ? NULL : addr_reply(e, is_mail);
}

/* xtext (RFC 3461 4) decoded by lib/smtp_proto into a new string of at
 * most max bytes; control bytes are refused too (RFC 3461: printable
 * text; they would reach the queue file's lines and the DSN's fields),
 * and 8-bit ones unless utf8. NULL if malformed. */
static char *
xtext_decode(const char *s, size_t max, int utf8)
{
	size_t n = strlen(s) < max ? strlen(s) : max;
	char *out = xmalloc(n + 1);

	if (smtp_xtext_decode(s, out, n + 1) < 0 || !smtp_dsn_text_ok(out, utf8)) {
		free(out);
		return NULL;
	}
	return out;
}

/* "KEY=VALUE KEY2 ..." split by lib/smtp_proto's smtp_params_parse (on
 * a copy: the path's rest is const), then fn for each. */
typedef const char *(*param_fn)(struct session *, char *key, char *val, void *);

static const char *
each_param(struct session *s, const char *params, param_fn fn, void *arg)
{
	static const char *const why[] = {
		[SMTP_PARAM_SYNTAX] = "501 5.5.4 Error: bad parameter syntax",
		[SMTP_PARAM_TOO_MANY] = "501 5.5.4 Error: too many parameters",
		[SMTP_PARAM_DUPLICATE] = "501 5.5.4 Error: duplicate parameter",
	};
	char copy[SMTPD_LINE_MAX + 1];
	struct smtp_params ps;
	enum smtp_param_err pe;
	const char *err;

	if (*params != '\0' && !s->esmtp)	/* RFC 1869: EHLO first */
		return "555 5.5.4 Error: parameters need EHLO";
	if (strlen(params) >= sizeof(copy))
		return why[SMTP_PARAM_SYNTAX];
	memcpy(copy, params, strlen(params) + 1);
	if ((pe = smtp_params_parse(copy, 0, &ps)) != SMTP_PARAM_OK)
		return why[pe];
	for (unsigned i = 0; i < ps.n; i++)
		if ((err = fn(s, ps.p[i].key, ps.p[i].value, arg)) != NULL)
			return err;
	return NULL;
}

static const char *
mail_param(struct session *s, char *key, char *val, void *arg)
{
	struct txn *tx = s->tx;

	(void)arg;
	if (strcasecmp(key, "SIZE") == 0 && val != NULL) {
		char *end;
		unsigned long long n = strtoull(val, &end, 10);

		if (*end != '\0' || !isdigit((unsigned char)val[0]) || strlen(val) > 19)
			return "501 5.5.4 Error: bad SIZE parameter";
		if (n > (unsigned long long)conf_num(C_message_size_limit))
			return "552 5.3.4 Message size exceeds fixed limit";
		tx->size_param = n;
	} else if (strcasecmp(key, "BODY") == 0 && val != NULL) {
		if (strcasecmp(val, "8BITMIME") == 0)
			tx->body8 = 1;
		else if (strcasecmp(val, "7BIT") != 0)
			return "555 5.5.4 Unsupported option: BODY";
	} else if (strcasecmp(key, "SMTPUTF8") == 0 && val == NULL) {
		tx->smtputf8 = 1;
	} else if (strcasecmp(key, "RET") == 0 && val != NULL && !tx->ret[0]) {
		if (strcasecmp(val, "FULL") != 0 && strcasecmp(val, "HDRS") != 0)
			return "501 5.5.4 Error: bad RET parameter";
		snprintf(tx->ret, sizeof(tx->ret), "%s", val);
		for (char *p = tx->ret; *p; p++)
			*p = (char)toupper((unsigned char)*p);
	} else if (strcasecmp(key, "AUTH") == 0 && val != NULL) {
		/* RFC 4954 5: AUTH=<> or an xtext mailbox. We accept it and,
		 * as the RFC allows, do not pass it on. */
		char *who = strcmp(val, "<>") == 0 ? NULL :
		    xtext_decode(val, SMTPD_PATH_MAX, 1);

		if (who == NULL && strcmp(val, "<>") != 0)
			return "501 5.5.4 Error: bad AUTH parameter";
		free(who);
	} else if (strcasecmp(key, "ENVID") == 0 && val != NULL && !tx->envid) {
		/* the bound is on the value as sent (RFC 3461 4.4), as
		 * queued checks it */
		if (strlen(val) > SMTPD_ENVID_MAX ||
		    (tx->envid = xtext_decode(val, SMTPD_ENVID_MAX, 0)) == NULL)
			return "501 5.5.4 Error: bad ENVID parameter";
	} else {
		return "555 5.5.4 Unsupported option";
	}
	return NULL;
}

const char *
parse_mail_params(struct session *s, const char *p)
{
	return each_param(s, p, mail_param, NULL);
}

static const char *
rcpt_param(struct session *s, char *key, char *val, void *arg)
{
	static const char *const kinds[] = { "NEVER", "SUCCESS", "FAILURE", "DELAY" };
	struct rcpt *r = arg;

	(void)s;
	if (strcasecmp(key, "NOTIFY") == 0 && val != NULL && r->notify == NULL) {
		unsigned seen = 0;
		char copy[64], *save = NULL;

		if (strlen(val) >= sizeof(copy))
			return "501 5.5.4 Error: bad NOTIFY parameter";
		snprintf(copy, sizeof(copy), "%s", val);
		for (char *w = strtok_r(copy, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
			unsigned i;

			for (i = 0; i < 4 && strcasecmp(w, kinds[i]) != 0; i++)
				;
			if (i == 4 || (seen & (1u << i)))
				return "501 5.5.4 Error: bad NOTIFY parameter";
			seen |= 1u << i;
		}
		if (seen == 0 || ((seen & 1) && seen != 1))
			return "501 5.5.4 Error: bad NOTIFY parameter";
		r->notify = xstrdup(val);
		for (char *p = r->notify; *p; p++)
			*p = (char)toupper((unsigned char)*p);
	} else if (strcasecmp(key, "ORCPT") == 0 && val != NULL && r->orcpt == NULL) {
		char *semi;

		r->orcpt = strlen(val) > SMTPD_ORCPT_MAX ? NULL :
		    xtext_decode(val, SMTPD_ORCPT_MAX, 1);
		if (r->orcpt == NULL || (semi = strchr(r->orcpt, ';')) == NULL ||
		    semi == r->orcpt || semi[1] == '\0')
			return "501 5.5.4 Error: bad ORCPT parameter";
	} else {
		return "555 5.5.4 Unsupported option";
	}
	return NULL;
}

const char *
parse_rcpt_params(struct session *s, const char *p, struct rcpt *r)
{
	return each_param(s, p, rcpt_param, r);
}
