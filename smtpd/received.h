/*
 * The Received: header smtpd prepends (RFC 5321 section 4.4) and the loop
 * guard that counts the Received: headers a message already carries
 * (hopcount_limit, 554 5.4.6).
 */
#ifndef HERMOD_SMTPD_RECEIVED_H
#define HERMOD_SMTPD_RECEIVED_H

#include <stddef.h>
#include <time.h>

#include "buf.h"

/* Longest Received: header we write (all folded lines together). */
#define RECEIVED_MAX	2048

/* Everything borrowed; NULL or "" leaves a clause out. */
struct received_info {
	const char *helo;	/* the client's HELO/EHLO argument */
	const char *client_name;/* reverse name or "unknown" */
	const char *client_addr;/* "192.0.2.1", "IPv6:2001:db8::1" */
	const char *by;		/* myhostname */
	const char *proto;	/* "ESMTP", "ESMTPSA", "UTF8SMTPS", ... */
	const char *qid;	/* queue id, when known */
	const char *rcpt;	/* the recipient when there is exactly one */
	const char *tls;	/* "TLSv1.3 with cipher X (256/256 bits)" */
	time_t when;
};

/*
 * Append the header, folded, lines ending in CRLF, to out (whose cap must
 * allow RECEIVED_MAX more bytes). Untrusted texts (helo, rcpt) are copied
 * with anything outside printable ASCII and the characters that would end
 * a comment or a clause replaced by '?', and cut at a bound. 0 or -1
 * (buffer cap).
 */
int received_format(struct buf *out, const struct received_info *ri);

/*
 * The with-protocol name (RFC 3848, RFC 6531): esmtp 0 = "SMTP"; with
 * TLS "S", with AUTH "A"; SMTPUTF8 transactions use "UTF8SMTP..".
 */
const char *received_proto(int esmtp, int tls, int auth, int smtputf8);

/*
 * Hop counter: fed the message's bytes as they stream past (any chunking),
 * it counts the header lines that start with "Received:" until the end of
 * the header section (the first empty line).
 */
struct hopcount {
	int count;
	int in_header;		/* still in the header section */
	int line_pos;		/* bytes of this line seen so far, capped */
	int matching;		/* this line still matches "received:" */
	int empty_line;		/* the line so far is only a CR */
};

void hopcount_init(struct hopcount *h);
void hopcount_feed(struct hopcount *h, const char *p, size_t n);

#endif
