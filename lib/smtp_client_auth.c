/*
 * Session set-up of the SMTP/LMTP client between EHLO and ready():
 * STARTTLS (the TLS itself is the caller's, through cb.tls_wrap) and AUTH
 * PLAIN or LOGIN (RFC 4954) for a relayhost's credentials. See
 * smtp_client.h for the policy and the statuses of the failures.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "smtp_client_int.h"
#include "xalloc.h"

#define CRED_MAX 255	/* user name and password, each */

/* Is `mech` one of the space separated words in `list`? */
static int
has_word(const char *list, const char *mech)
{
	size_t n = strlen(mech);
	const char *p = list;

	while ((p = strcasestr(p, mech)) != NULL) {
		if ((p == list || p[-1] == ' ') && (p[n] == ' ' ||
		    p[n] == '\0'))
			return 1;
		p += n;
	}
	return 0;
}

/* base64 of n bytes, as a new string. */
static char *
b64(const void *in, size_t n)
{
	char *out = xmalloc(4 * ((n + 2) / 3) + 1);

	EVP_EncodeBlock((unsigned char *)out, in, (int)n);
	return out;
}

static void
send_auth(struct cli_conn *c, char *line)
{
	struct cmd *k = cli_cmd_new(C_AUTH, 0);

	k->line = line;
	cli_send_cmd(c, k);
	cli_arm(c);
}

/* PLAIN with its initial response in one line, else LOGIN's prompts. */
static void
auth_start(struct cli_conn *c)
{
	size_t ul = strlen(c->auth_user), pl = strlen(c->auth_pass);
	char plain[2 * CRED_MAX + 2], *enc;

	if (ul > CRED_MAX || pl > CRED_MAX) {
		cli_failx(c, "4.7.8", "AUTH credentials for %s too long",
		    c->peer);
	} else if (has_word(c->caps.auth, "PLAIN")) {
		plain[0] = '\0';
		memcpy(plain + 1, c->auth_user, ul);
		plain[ul + 1] = '\0';
		memcpy(plain + ul + 2, c->auth_pass, pl);
		enc = b64(plain, ul + pl + 2);
		explicit_bzero(plain, sizeof(plain));
		send_auth(c, xasprintf("AUTH PLAIN %s", enc));
		explicit_bzero(enc, strlen(enc));
		free(enc);
	} else if (has_word(c->caps.auth, "LOGIN")) {
		c->auth_step = 0;
		send_auth(c, xstrdup("AUTH LOGIN"));
	} else {
		cli_failx(c, "4.7.8", "%s offers no AUTH mechanism we have "
		    "(PLAIN, LOGIN): '%s'", c->peer, c->caps.auth);
	}
}

/* After each EHLO: TLS first if wanted, then AUTH, then ready. */
void
cli_session_next(struct cli_conn *c)
{
	int offered = (c->caps.flags & CLI_CAP_STARTTLS) != 0;

	if (!c->tls_on && !c->tls_skipped && c->s.tls != CLI_TLS_NONE) {
		if (offered && c->cb.tls_wrap != NULL) {
			cli_send_cmd(c, cli_cmd_new(C_STARTTLS, 0));
			cli_arm(c);
			return;
		}
		if (c->s.tls == CLI_TLS_MUST) {
			cli_failx(c, "4.7.5", "TLS is required but %s does "
			    "not offer STARTTLS", c->peer);
			return;
		}
	}
	if (c->auth_user != NULL && !c->auth_done) {
		if (c->caps.flags & CLI_CAP_AUTH)
			auth_start(c);
		else
			cli_failx(c, "4.7.8", "authentication is configured "
			    "but %s does not offer AUTH", c->peer);
		return;
	}
	cli_become_ready(c);
}

int
cli_on_starttls(struct cli_conn *c, struct cmd *k, const struct cli_reply *r)
{
	(void)k;
	if (r->code == 220) {
		cli_tls_start(c);
	} else if (c->s.tls == CLI_TLS_MUST) {
		cli_failx(c, "4.7.5", "%s refused STARTTLS: %d %s", c->peer,
		    r->code, r->text);
	} else {
		c->tls_skipped = 1;	/* "may": go on in plaintext */
		cli_session_next(c);
	}
	return 1;
}

/*
 * 235: in. 334 during LOGIN: the user name, then the password. Anything
 * else: refused; a 5xx becomes a 4xx (the credentials or the server's
 * set-up can be fixed; the mail should wait, not bounce).
 */
int
cli_on_auth(struct cli_conn *c, struct cmd *k, const struct cli_reply *r)
{
	struct cli_reply soft = *r;
	const char *next;

	(void)k;
	if (r->code == 235) {
		c->auth_done = 1;
		cli_become_ready(c);
	} else if (r->code == 334 && c->auth_step < 2) {
		next = c->auth_step++ == 0 ? c->auth_user : c->auth_pass;
		send_auth(c, b64(next, strlen(next)));
	} else {
		if (soft.code / 100 == 5)
			soft.code -= 100;
		if (soft.code / 100 != 4)
			soft.code = 454;
		snprintf(soft.status, sizeof(soft.status), "4.7.8");
		cli_close_with(c, &soft);
	}
	return 1;
}
