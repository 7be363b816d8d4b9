/*
 * sendmail(1): the local submission program. sendmail.c parses the
 * sendmail-compatible options and talks LMTP to queued's submission
 * socket; sendmail_msg.c reads and prepares the message.
 */
#ifndef HERMOD_SENDMAIL_H
#define HERMOD_SENDMAIL_H

#include <stdio.h>

#include "buf.h"

#define SENDMAIL_HEADER_MAX (1024 * 1024)	/* whole header block */
#define SENDMAIL_RCPT_MAX 10000

struct submission {
	char *sender;		/* envelope sender, "" for <> */
	char *fullname;		/* -F */
	const char *myhostname;
	char **rcpts;
	int nrcpts;
	int extract;		/* -t */
	int ignore_dots;	/* -i / -oi */
	int verbose;		/* -v */
	const char *notify;	/* -N */
	const char *ret;	/* -R */
	const char *envid;	/* -V */
	const char *body;	/* -B 8BITMIME / 7BIT */
	/* message state */
	struct buf headers;
	char *pending;		/* first body line read with the headers */
	size_t pending_len;
	int blank_seen;
	int eof_dot;		/* a lone "." ended the input */
};

void submission_add_rcpt(struct submission *sub, const char *addr);
/* An address list ("a@b, Name <c@d>"), as in To: or on the command line:
 * each address through submission_add_rcpt. */
void submission_add_list(struct submission *sub, const char *list);
int message_read_headers(struct submission *sub, FILE *in);
int message_send_body(struct submission *sub, FILE *in, FILE *out);

#endif
