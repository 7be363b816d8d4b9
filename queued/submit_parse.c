/*
 * Parsing for the submission session: the path of MAIL FROM / RCPT TO
 * (lib/addr's RFC 5321 parser in its lenient mode), their ESMTP
 * parameters (SIZE, BODY, SMTPUTF8, RET, ENVID, AUTH; NOTIFY, ORCPT of
 * RFC 3461; split by lib/smtp_proto's smtp_params_parse) and XFORWARD
 * attributes. Each rejection comes with the reply to send, so the session
 * only forwards it.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "addr.h"
#include "conf.h"
#include "queued.h"
#include "smtp_proto.h"
#include "submit.h"
#include "xalloc.h"

#define PATH_MAX_LEN	ADDR_PATH_MAX
#define PARAM_MAX_LEN	500	/* one ESMTP parameter */
#define ENVID_MAX_LEN	100	/* RFC 3461 4.4, as sent (xtext) */
#define ORCPT_MAX_LEN	500	/* RFC 3461 4.2, as sent (xtext), as smtpd takes it */

/*
 * "<path>" at s through lib/addr, leniently: these envelopes come from
 * smtpd (which parsed them strictly) and from sendmail, whose -f and
 * recipients may be bare local names ("root"). UTF-8 is allowed (the
 * client already checked SMTPUTF8), but must be well-formed. The address
 * (without brackets, source route dropped) goes to out; *rest points past
 * the '>' and its spaces. NULL, or the reply for a bad path.
 */
const char *
parse_path(char *s, int is_mail, char *out, size_t outsz, char **rest)
{
	unsigned flags = ADDR_F_LENIENT | ADDR_F_UTF8 |
	    (is_mail ? ADDR_F_NULL_OK : 0);
	const char *r;
	enum addr_err e = addr_parse_mailbox(s, flags, out, outsz, &r);

	if (e != ADDR_OK)
		return addr_reply(e, is_mail);
	*rest = s + (r - s);	/* addr_parse reads s, never writes it */
	return NULL;
}

/*
 * "KEY=VALUE KEY2" (after the path, which addr_parse checked ends in a
 * space or the line's end) split by the shared smtp_params_parse, then
 * fn(key, value-or-NULL) for each.
 */
static const char *
each_param(char *s, const char *(*fn)(struct submit_tx *, char *, char *),
    struct submit_tx *tx)
{
	struct smtp_params ps;
	const char *err;

	switch (smtp_params_parse(s, SMTP_PARAM_F_UTF8, &ps)) {
	case SMTP_PARAM_OK:
		break;
	case SMTP_PARAM_DUPLICATE:
		return "501 5.5.4 Duplicate parameter";
	default:
		return "501 5.5.4 Syntax error in parameters";
	}
	for (unsigned i = 0; i < ps.n; i++) {
		if (ps.p[i].value != NULL && strlen(ps.p[i].value) > PARAM_MAX_LEN)
			return "501 5.5.4 Parameter too long";
		if ((err = fn(tx, ps.p[i].key, ps.p[i].value)) != NULL)
			return err;
	}
	return NULL;
}

static int
xtext_ok(const char *v)
{
	char *d = xtext_decode(v, strlen(v));

	free(d);
	return d != NULL;
}

static const char *
mail_param(struct submit_tx *tx, char *key, char *val)
{
	if (strcasecmp(key, "SIZE") == 0) {
		char *e;
		unsigned long long n = val ? strtoull(val, &e, 10) : 0;

		if (val == NULL || *e != '\0' || e == val)
			return "501 5.5.4 Bad SIZE";
		if (n > (unsigned long long)conf_num(C_message_size_limit))
			return "552 5.3.4 Message size exceeds fixed limit";
	} else if (strcasecmp(key, "BODY") == 0) {
		if (val != NULL && strcasecmp(val, "8BITMIME") == 0)
			tx->body8 = 1;
		else if (val == NULL || strcasecmp(val, "7BIT") != 0)
			return "555 5.5.4 Unsupported BODY type";
	} else if (strcasecmp(key, "SMTPUTF8") == 0 && val == NULL)
		tx->smtputf8 = 1;
	else if (strcasecmp(key, "RET") == 0 && val != NULL &&
	    (strcasecmp(val, "HDRS") == 0 || strcasecmp(val, "FULL") == 0))
		tx->ret_hdrs = strcasecmp(val, "HDRS") == 0;
	else if (strcasecmp(key, "ENVID") == 0 && val != NULL && tx->envid == NULL) {
		if (strlen(val) > ENVID_MAX_LEN ||
		    (tx->envid = xtext_decode(val, strlen(val))) == NULL ||
		    !smtp_dsn_text_ok(tx->envid, 0))
			return "501 5.5.4 Bad ENVID";
	} else if (strcasecmp(key, "AUTH") == 0 && val != NULL && tx->auth == NULL) {
		if (!xtext_ok(val))
			return "501 5.5.4 Bad AUTH";
		tx->auth = xstrdup(val);
	} else
		return "555 5.5.4 Unsupported MAIL parameter";
	return NULL;
}

const char *
parse_mail_params(struct submit_tx *tx, char *s)
{
	return each_param(s, mail_param, tx);
}

static const char *
rcpt_param(struct submit_tx *tx, char *key, char *val)
{
	struct env_rcpt *r = &tx->cur;

	if (strcasecmp(key, "NOTIFY") == 0 && val != NULL && r->notify == 0) {
		static const char *const names[] = { "NEVER", "SUCCESS", "FAILURE", "DELAY" };

		for (char *w = strtok(val, ","); w != NULL; w = strtok(NULL, ",")) {
			unsigned i;

			for (i = 0; i < 4 && strcasecmp(w, names[i]) != 0; i++)
				;
			if (i == 4)
				return "501 5.5.4 Bad NOTIFY";
			r->notify |= 1u << i;
		}
		if ((r->notify & NOTIFY_NEVER) && r->notify != NOTIFY_NEVER)
			return "501 5.5.4 NOTIFY=NEVER cannot be combined";
	} else if (strcasecmp(key, "ORCPT") == 0 && val != NULL && r->orcpt == NULL) {
		char *semi = strchr(val, ';');

		if (semi == NULL || semi == val || strlen(val) > ORCPT_MAX_LEN ||
		    (r->orcpt = xtext_decode(val, strlen(val))) == NULL ||
		    !smtp_dsn_text_ok(r->orcpt, 1))
			return "501 5.5.4 Bad ORCPT";
	} else
		return "555 5.5.4 Unsupported RCPT parameter";
	return NULL;
}

const char *
parse_rcpt_params(struct submit_tx *tx, char *s)
{
	return each_param(s, rcpt_param, tx);
}

static const char *
xforward_attr(struct submit_tx *tx, char *key, char *val)
{
	static const char *const known[] = {
		"NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT", "SOURCE",
	};
	char *dec;
	size_t i;

	for (i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (strcasecmp(key, known[i]) == 0)
			break;
	if (i == sizeof(known) / sizeof(known[0]) || val == NULL)
		return "501 5.5.4 Bad XFORWARD attribute";
	if ((dec = xtext_decode(val, strlen(val))) == NULL)
		return "501 5.5.4 Bad XFORWARD value";
	for (char *p = key; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	if (tx->xforward.len + strlen(dec) + strlen(key) + 2 < 1024)
		buf_printf(&tx->xforward, "%s%s=%s", tx->xforward.len ? " " : "", key, dec);
	free(dec);
	return NULL;
}

const char *
parse_xforward(struct submit_tx *tx, char *s)
{
	return each_param(s, xforward_attr, tx);
}
