/*
 * The one RFC 5321 Path / Mailbox parser, shared by smtpd (MAIL FROM and
 * RCPT TO from the network), queued's submission and lmtpd (LMTP from our
 * own programs). It reads "<path>" (4.1.2): a dot-string or quoted-string
 * local part, a domain or an address literal (IPv4 dotted quad, IPv6 via
 * "IPv6:"), the null path "<>" when the caller allows it, a source route
 * "@a,@b:" accepted and dropped (4.1.1.3), UTF-8 (RFC 6531) only when the
 * caller allows it. The bounds of 4.5.3.1 (local part 64, domain 255,
 * path 256) are checked while scanning, before anything is copied.
 *
 * A quoted local part that needs no quotes ("alice", "al\\ice") is
 * given in its plain form (RFC 5321 4.1.2 makes them the same mailbox),
 * so lookups, aliases and the queue see one spelling.
 *
 * Every rejection has its reply line (addr_reply()), the same wherever
 * the address came from. Lookups need no normalised copy: map_lookup()
 * (lib/map.h) lower-cases its keys and local_user/alias_expand compare
 * with strcasecmp, so the mailbox keeps the case it was sent in (the local
 * part's case matters for delivery elsewhere, RFC 5321 2.4).
 *
 * Nothing here allocates or keeps state; struct addr is filled in place.
 */
#ifndef HERMOD_ADDR_H
#define HERMOD_ADDR_H

#include <stddef.h>

/* RFC 5321 4.5.3.1.1-3 */
#define ADDR_LOCAL_MAX	64	/* local part; a quoted one without its quotes */
#define ADDR_DOMAIN_MAX	255	/* domain or address literal, brackets included */
#define ADDR_PATH_MAX	256	/* the mailbox "local@domain" (route dropped) */
#define ADDR_LABEL_MAX	63	/* one ASCII domain label (RFC 1035 2.3.4) */

/* Flags for addr_parse(). */
#define ADDR_F_NULL_OK	0x01	/* "<>" accepted: MAIL's reverse-path */
#define ADDR_F_UTF8	0x02	/* UTF-8 local part and domain (SMTPUTF8) */
#define ADDR_F_BARE_OK	0x04	/* a mailbox without "@domain" ("<Postmaster>") */
/*
 * Our own programs' envelopes (queued's submission from sendmail, lmtpd
 * fed by queued): a bare mailbox ("root"), empty atoms in the local part
 * ("first..last", ".x") and '_' in domain labels are accepted, as Postfix
 * does with strict_rfc821_envelopes = no. Every other rule stays: no
 * control character, no unquoted space or special, the same bounds.
 */
#define ADDR_F_LENIENT	0x08

/* What addr_parse() found (struct addr's kind bits). */
#define ADDR_K_NULL	0x01	/* the null path "<>" */
#define ADDR_K_QUOTED	0x02	/* quoted-string local part */
#define ADDR_K_LITERAL	0x04	/* domain is an address literal "[...]" */
#define ADDR_K_ROUTE	0x08	/* a source route was given (and dropped) */
#define ADDR_K_8BIT	0x10	/* bytes >= 0x80 (needs SMTPUTF8) */

struct addr {
	/* "local@domain" as sent, route dropped; "" for the null path */
	char mailbox[ADDR_PATH_MAX + 1];
	/*
	 * the local part as sent, except that quotes around one that needs
	 * none are dropped ("alice" -> alice, as in mailbox); quotes and
	 * backslashes that matter are kept
	 */
	char local[ADDR_PATH_MAX + 1];
	/* the domain or "[literal]"; "" for a bare mailbox or "<>" */
	char domain[ADDR_DOMAIN_MAX + 1];
	unsigned kind;		/* ADDR_K_* */
};

enum addr_err {
	ADDR_OK = 0,
	ADDR_E_SYNTAX,		/* no angle brackets, bad character, bad atom */
	ADDR_E_ROUTE,		/* a malformed source route */
	ADDR_E_DOMAIN,		/* malformed domain */
	ADDR_E_LITERAL,		/* bad address literal (or a general one) */
	ADDR_E_TOO_LONG,	/* a 4.5.3.1 bound passed */
	ADDR_E_NULL,		/* "<>" where a mailbox is needed */
	ADDR_E_NO_DOMAIN,	/* a bare mailbox without ADDR_F_BARE_OK */
	ADDR_E_UTF8,		/* not well-formed UTF-8 */
	ADDR_E_8BIT,		/* 8-bit without ADDR_F_UTF8 (553 5.6.7) */
	ADDR_E_PARAMS,		/* after '>' neither the end nor a space */
	ADDR_E__COUNT
};

/*
 * Parse "<path>" at s (spaces before the '<' are skipped: "MAIL FROM:
 * <a@b>" is common). On ADDR_OK `out` is filled and *rest (when not NULL)
 * points at the ESMTP parameters after the '>' and its spaces ("" when
 * none). s is not written to. On an error `out` is undefined.
 */
enum addr_err addr_parse(const char *s, unsigned flags, struct addr *out,
    const char **rest);

/*
 * The same, for callers that keep only the mailbox: it is copied into out
 * (outsz bytes, "" for "<>"); one that does not fit is ADDR_E_TOO_LONG.
 */
enum addr_err addr_parse_mailbox(const char *s, unsigned flags, char *out,
    size_t outsz, const char **rest);

/*
 * The reply line for err ("501 5.1.7 Bad sender address syntax"): the
 * sender's (MAIL, 5.1.7) or the recipient's (RCPT, 5.1.3) wording. A
 * static string; ADDR_OK gives NULL.
 */
const char *addr_reply(enum addr_err err, int sender);
/* A short lower-case name for err, for logs and tests ("too long"). */
const char *addr_err_str(enum addr_err err);

/* 1 when s has a byte >= 0x80 (the address needs SMTPUTF8). */
int addr_has_8bit(const char *s);
/* 1 when s is well-formed UTF-8 (no overlong forms, no surrogates). */
int addr_utf8_ok(const char *s);

#endif
