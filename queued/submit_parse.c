/*
 * Parsing for the submission session: the path of MAIL FROM / RCPT TO
 * (RFC 5321 4.1.2, with the source route of 4.1.1.3 accepted and
 * ignored), their ESMTP parameters (SIZE, BODY, SMTPUTF8, RET, ENVID, AUTH;
 * NOTIFY, ORCPT of RFC 3461; split by lib/smtp_proto's smtp_params_parse)
 * and XFORWARD attributes. Each rejection comes
 * with the reply to send, so the session only forwards it.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf.h"
#include "queued.h"
#include "smtp_proto.h"
#include "submit.h"
#include "xalloc.h"

#define PATH_MAX_LEN	256	/* RFC 5321 4.5.3.1.3 */
#define PARAM_MAX_LEN	500	/* one ESMTP parameter */

/*
 * "<path>" at s: the address (without brackets, source route dropped) in
 * out; *rest points past the '>'. NULL, or the reply for a bad path.
 */
const char *
parse_path(char *s, char *out, size_t outsz, char **rest)
{
	char *p = s, *start;
	int quoted = 0;
	size_t n;

	while (*p == ' ')
		p++;
	if (*p++ != '<')
		return "501 5.5.4 Syntax: the address must be in angle brackets";
	if (*p == '@') {		/* source route: @a,@b:user@domain */
		char *colon = strchr(p, ':');

		if (colon == NULL)
			return "501 5.1.3 Bad source route";
		p = colon + 1;
	}
	for (start = p; *p != '\0' && (quoted || *p != '>'); p++) {
		if (*p == '\\' && quoted && p[1] != '\0')
			p++;
		else if (*p == '"')
			quoted = !quoted;
		else if ((unsigned char)*p < 33 && !(quoted && *p == ' '))
			return "501 5.1.3 Bad character in the address";
	}
	if (*p != '>')
		return "501 5.1.3 Unterminated address";
	if ((n = (size_t)(p - start)) > PATH_MAX_LEN || n >= outsz)
		return "501 5.1.3 Address too long";
	memcpy(out, start, n);
	out[n] = '\0';
	*rest = p + 1;
	return NULL;
}

/*
 * " KEY=VALUE KEY2" (after the path: a space first, or nothing) split by
 * the shared smtp_params_parse, then fn(key, value-or-NULL) for each.
 */
static const char *
each_param(char *s, const char *(*fn)(struct submit_tx *, char *, char *),
    struct submit_tx *tx)
{
	struct smtp_params ps;
	const char *err;

	if (*s != '\0' && *s != ' ')
		return "501 5.5.4 Syntax error in parameters";
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
	else if (strcasecmp(key, "ENVID") == 0 && val != NULL && tx->envid == NULL &&
	    strlen(val) <= 100) {
		if ((tx->envid = xtext_decode(val, strlen(val))) == NULL)
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

		if (semi == NULL || semi == val || strlen(val) > PATH_MAX_LEN + 20 ||
		    (r->orcpt = xtext_decode(val, strlen(val))) == NULL)
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
