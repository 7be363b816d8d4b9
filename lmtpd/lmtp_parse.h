/*
 * MAIL FROM / RCPT TO argument syntax for lmtp_session.c (lmtp_parse.c).
 */
#ifndef HERMOD_LMTPD_PARSE_H
#define HERMOD_LMTPD_PARSE_H

#include <stddef.h>

#include "addr.h"

#define LMTP_PATH_MAX ADDR_PATH_MAX	/* RFC 5321 4.5.3.1.3 */

/* s starts with `prefix` ("FROM:", "TO:"), then <path> (lib/addr,
 * lenient; "<>" only after "FROM:"). The address (without <>, route
 * dropped) goes to out; *rest points at the parameters. 0, or -1 for bad
 * syntax or a path too long. */
int lmtp_parse_path(char *s, const char *prefix, char *out, size_t outsz,
    char **rest);

/* MAIL parameters: SIZE=n (into *size, 0 if absent), BODY=7BIT|8BITMIME,
 * SMTPUTF8. 0, -1 bad syntax, -2 unknown parameter. s is split in place. */
int lmtp_parse_mail_params(char *s, unsigned long long *size);

/* RCPT parameters: NOTIFY=, ORCPT=. 0, -1 bad syntax, -2 unknown. */
int lmtp_parse_rcpt_params(char *s);

#endif
