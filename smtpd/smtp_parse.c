/*
 * MAIL FROM / RCPT TO arguments: the RFC 5321 4.1.2 Path (source route
 * accepted and dropped as 4.1.1.3 says, dot-string or quoted local part,
 * domain or address literal, UTF-8 for SMTPUTF8 per RFC 6531) and the
 * ESMTP parameters we offer: SIZE (RFC 1870), BODY (RFC 6152), SMTPUTF8,
 * RET/ENVID/NOTIFY/ORCPT (RFC 3461, xtext decoded). A parameter we did not
 * offer is 555 5.5.4. Bounds of RFC 5321 4.5.3.1 are checked before
 * anything is copied.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf.h"
#include "smtpd.h"
#include "xalloc.h"

static const char E_MAIL[] = "501 5.1.7 Bad sender address syntax";
static const char E_RCPT[] = "501 5.1.3 Bad recipient address syntax";

static int
atext(unsigned char c, int utf8)
{
	return isalnum(c) || strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL ||
	    (utf8 && c >= 0x80);
}

/* Dot-string: atoms separated by single dots. Returns its length. */
static size_t
dot_string(const char *p, int utf8)
{
	size_t n = 0;

	for (;;) {
		size_t a = n;

		while (p[n] != '\0' && atext((unsigned char)p[n], utf8))
			n++;
		if (n == a)
			return 0;	/* empty atom */
		if (p[n] != '.')
			return n;
		n++;
	}
}

/* Quoted-string, including the quotes; 0 if malformed. */
static size_t
quoted_string(const char *p, int utf8)
{
	size_t n = 1;

	for (;;) {
		unsigned char c = (unsigned char)p[n];

		if (c == '"')
			return n + 1;
		if (c == '\\' && p[n + 1] >= 0x20 && p[n + 1] <= 0x7e)
			n += 2;
		else if ((c >= 0x20 && c <= 0x7e) || (utf8 && c >= 0x80))
			n++;
		else
			return 0;
	}
}

/* Domain (letters, digits, hyphens, dots; U-labels under SMTPUTF8) or an
 * address literal "[...]". Returns its length, 0 if malformed. */
static size_t
domain(const char *p, int utf8)
{
	size_t n = 0;

	if (p[0] == '[') {
		while (p[n] != '\0' && p[n] != ']' && n < SMTPD_DOMAIN_MAX) {
			if (p[n] == '[' && n > 0)
				return 0;
			if ((unsigned char)p[n] <= 0x20 || (unsigned char)p[n] >= 0x7f || p[n] == '\\')
				return 0;
			n++;
		}
		return p[n] == ']' && n > 1 ? n + 1 : 0;
	}
	for (;;) {
		size_t a = n;

		while (isalnum((unsigned char)p[n]) || p[n] == '-' ||
		    (utf8 && (unsigned char)p[n] >= 0x80))
			n++;
		if (n == a || p[a] == '-' || p[n - 1] == '-')
			return 0;
		if (p[n] != '.')
			return n;
		n++;
	}
}

/* A well-formed UTF-8 string (no overlongs, no surrogates)? */
static int
utf8_ok(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	while (*p) {
		int len = *p < 0x80 ? 1 : (*p & 0xe0) == 0xc0 ? 2 :
		    (*p & 0xf0) == 0xe0 ? 3 : (*p & 0xf8) == 0xf0 ? 4 : 0;

		if (len == 0 || (len == 2 && *p < 0xc2) || (len == 4 && *p > 0xf4))
			return 0;
		for (int i = 1; i < len; i++)
			if ((p[i] & 0xc0) != 0x80)
				return 0;
		if ((len == 3 && *p == 0xe0 && p[1] < 0xa0) ||
		    (len == 3 && *p == 0xed && p[1] >= 0xa0) ||
		    (len == 4 && *p == 0xf0 && p[1] < 0x90) ||
		    (len == 4 && *p == 0xf4 && p[1] >= 0x90))
			return 0;
		p += len;
	}
	return 1;
}

int
addr_has_8bit(const char *a)
{
	for (; *a; a++)
		if ((unsigned char)*a >= 0x80)
			return 1;
	return 0;
}

/* Skip "@a.example,@b.example:" (RFC 5321 4.1.1.3: accepted, ignored). */
static const char *
skip_route(const char *p, int utf8)
{
	while (*p == '@') {
		size_t n = domain(p + 1, utf8);

		if (n == 0)
			return NULL;
		p += 1 + n;
		if (*p == ',')
			p++;
		else if (*p == ':')
			return p + 1;
		else
			return NULL;
	}
	return p;
}

const char *
parse_path(const char *s, int is_mail, int utf8, char *out, size_t outsz,
    const char **rest)
{
	const char *err = is_mail ? E_MAIL : E_RCPT;
	const char *p = s, *start;
	size_t local, dom = 0;

	while (*p == ' ')	/* "MAIL FROM: <a@b>" as many clients send */
		p++;
	if (*p++ != '<')
		return err;
	start = p = skip_route(p, utf8);
	if (p == NULL)
		return err;
	if (*p == '>' && is_mail && p == s + strspn(s, " ") + 1) {
		out[0] = '\0';	/* the null reverse-path */
		p++;
		goto params;
	}
	local = *p == '"' ? quoted_string(p, utf8) : dot_string(p, utf8);
	if (local == 0 || local - (*p == '"' ? 2 : 0) > SMTPD_LOCAL_MAX)
		return err;
	p += local;
	if (*p == '@') {
		if ((dom = domain(p + 1, utf8)) == 0 || dom > SMTPD_DOMAIN_MAX)
			return err;
		p += 1 + dom;
	} else if (is_mail)
		return err;	/* only RCPT TO:<Postmaster> goes bare */
	if (*p != '>' || (size_t)(p - start) > SMTPD_PATH_MAX ||
	    (size_t)(p - start) >= outsz)
		return err;
	memcpy(out, start, (size_t)(p - start));
	out[p - start] = '\0';
	if (!utf8_ok(out))
		return err;
	p++;
params:
	if (*p != '\0' && *p != ' ')
		return err;
	while (*p == ' ')
		p++;
	*rest = p;
	return NULL;
}

/* xtext (RFC 3461 4): "+XX" hex escapes, printable ASCII otherwise, no
 * '=' or '+' literally. NULL if malformed. */
static char *
xtext_decode(const char *s, size_t max)
{
	size_t n = strlen(s), o = 0;
	char *out;

	if (n > max * 3)
		return NULL;
	out = xmalloc(n + 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '+' && isxdigit((unsigned char)s[i + 1]) &&
		    isxdigit((unsigned char)s[i + 2])) {
			char hex[3] = { s[i + 1], s[i + 2], 0 };

			out[o++] = (char)strtol(hex, NULL, 16);
			i += 2;
		} else if (c > 0x20 && c < 0x7f && c != '+' && c != '=') {
			out[o++] = (char)c;
		} else {
			free(out);
			return NULL;
		}
	}
	out[o] = '\0';
	if (o > max || strlen(out) != o || strpbrk(out, "\r\n") != NULL) {
		free(out);
		return NULL;
	}
	return out;
}

/* Split "KEY=VALUE KEY2 ..." in place; calls fn for each. */
typedef const char *(*param_fn)(struct session *, char *key, char *val, void *);

static const char *
each_param(struct session *s, const char *params, param_fn fn, void *arg)
{
	char copy[SMTPD_LINE_MAX + 1];
	char *save = NULL, *w;

	if (*params != '\0' && !s->esmtp)	/* RFC 1869: EHLO first */
		return "555 5.5.4 Error: parameters need EHLO";
	snprintf(copy, sizeof(copy), "%s", params);
	for (w = strtok_r(copy, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
		char *eq = strchr(w, '=');
		const char *err;

		if (eq != NULL)
			*eq++ = '\0';
		if (w[0] == '\0' || (eq != NULL && *eq == '\0'))
			return "501 5.5.4 Error: bad parameter syntax";
		if ((err = fn(s, w, eq, arg)) != NULL)
			return err;
	}
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
		    xtext_decode(val, SMTPD_PATH_MAX);

		if (who == NULL && strcmp(val, "<>") != 0)
			return "501 5.5.4 Error: bad AUTH parameter";
		free(who);
	} else if (strcasecmp(key, "ENVID") == 0 && val != NULL && !tx->envid) {
		if ((tx->envid = xtext_decode(val, SMTPD_ENVID_MAX)) == NULL)
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

		r->orcpt = xtext_decode(val, SMTPD_ORCPT_MAX);
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
