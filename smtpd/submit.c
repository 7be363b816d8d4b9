/*
 * Submission fix-ups (see submit.h): Message-ID: and Date: added to a
 * message submitted without them (RFC 6409 8.2 and 8.3), at the end of
 * its header section, found while the decoded bytes stream to queued.
 * Port-25 mail is relayed as it came.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "conf.h"
#include "smtpd.h"
#include "submit.h"

#define ADDED_MAX	600	/* the two headers we may add */

static void
line_end(struct hdrfix *h)
{
	if (strncmp(h->name, "message-id:", 11) == 0)
		h->has_mid = 1;
	else if (strncmp(h->name, "date:", 5) == 0)
		h->has_date = 1;
	h->line_pos = 0;
	memset(h->name, 0, sizeof(h->name));
}

long
hdrfix_scan(struct hdrfix *h, const char *p, size_t n)
{
	for (size_t i = 0; i < n && !h->done; i++) {
		char c = p[i];

		/* A line that starts with CR is the empty line (a CR not
		 * followed by LF gets the message refused anyway). */
		if (h->line_pos == 0 && (c == '\r' || c == '\n')) {
			h->done = 1;
			return (long)i;
		}
		if (c == '\n') {
			line_end(h);
			continue;
		}
		if (h->line_pos < (int)sizeof(h->name) - 1)
			h->name[h->line_pos] = (char)tolower((unsigned char)c);
		if (h->line_pos < 1000)
			h->line_pos++;
	}
	return -1;
}

static size_t
missing_headers(struct session *s, char *out, size_t outsz)
{
	struct hdrfix *h = &s->tx->fix;
	time_t now = time(NULL);
	struct tm tm;
	size_t n = 0;

	if (!h->has_mid) {
		char stamp[32];

		strftime(stamp, sizeof(stamp), "%Y%m%d%H%M%S", gmtime_r(&now, &tm));
		n += (size_t)snprintf(out + n, outsz - n, "Message-ID: <%s.%s@%.200s>\r\n",
		    stamp, s->tx->qid[0] ? s->tx->qid : "0", conf_str(C_myhostname));
	}
	if (!h->has_date && n < outsz) {
		char date[64];

		strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z",
		    localtime_r(&now, &tm));
		n += (size_t)snprintf(out + n, outsz - n, "Date: %s\r\n", date);
	}
	return n < outsz ? n : outsz - 1;
}

/* Combine two handoff_write results: failure wins, then "wait". */
static int
worst(int a, int b)
{
	return a < 0 || b < 0 ? -1 : (a || b);
}

int
submit_write(struct session *s, const char *p, size_t n)
{
	char add[ADDED_MAX];
	long end;
	int r;

	if (s->kind == LK_SMTP || s->tx->fix.done)
		return handoff_write(s->ho, p, n);
	if ((end = hdrfix_scan(&s->tx->fix, p, n)) < 0)
		return handoff_write(s->ho, p, n);
	r = end > 0 ? handoff_write(s->ho, p, (size_t)end) : 0;
	if (r >= 0)
		r = worst(r, handoff_write(s->ho, add, missing_headers(s, add, sizeof(add))));
	if (r >= 0)
		r = worst(r, handoff_write(s->ho, p + end, n - (size_t)end));
	return r;
}

int
submit_end(struct session *s)
{
	char add[ADDED_MAX];

	if (s->kind == LK_SMTP || s->tx->fix.done)
		return 0;
	s->tx->fix.done = 1;
	return handoff_write(s->ho, add, missing_headers(s, add, sizeof(add)));
}
