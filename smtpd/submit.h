/*
 * Submission fix-ups (RFC 6409 8.2, 8.3): a message that comes in on
 * submission_listen or smtps_listen without Message-ID: or Date: gets
 * them, added at the end of its header section. The scanner sees the
 * decoded message as it streams past (any chunking), so nothing is held.
 */
#ifndef HERMOD_SMTPD_SUBMIT_H
#define HERMOD_SMTPD_SUBMIT_H

#include <stddef.h>

struct session;

/* Per transaction; all zero at the start (txn is calloc'ed). */
struct hdrfix {
	int done;		/* header section over, headers added */
	int line_pos;		/* bytes of this line seen so far, capped */
	int cr_only;		/* this line so far is a lone CR */
	char name[12];		/* the line's first bytes, lower-cased */
	int has_mid, has_date;
};

/* Where the header section ends in p[0..n): the offset of the empty
 * line's first byte; -1 if not in these bytes. Notes Message-ID: and
 * Date: on the way. */
long hdrfix_scan(struct hdrfix *h, const char *p, size_t n);

/* The message bytes to queued (smtp_data.c's flush): on a submission
 * listener the missing headers go in at the end of the header section.
 * Returns as handoff_write(). */
int submit_write(struct session *s, const char *p, size_t n);
/* The message ends (before handoff_end): headers still missing (a
 * message that is all header) are added now. As handoff_write(). */
int submit_end(struct session *s);

#endif
