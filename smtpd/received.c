/*
 * The Received: header (RFC 5321 section 4.4, with-protocol names of
 * RFC 3848 and RFC 6531) and the hop counter behind the loop guard.
 * smtpd writes the header first into the data it streams to queued, so
 * both pieces work on bounded, untrusted input without holding the
 * message.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "received.h"

#define HELO_SHOWN_MAX	255	/* RFC 5321 4.5.3.1.2: a domain */
#define RCPT_SHOWN_MAX	512	/* longer than any valid path */

/* Copy untrusted text for a header clause: printable ASCII only (UTF-8
 * too when allowed), no characters that end a comment or a clause. */
static void
clean_copy(char *out, size_t outsz, const char *in, size_t max, int utf8)
{
	size_t i, n = 0;

	for (i = 0; in[i] != '\0' && i < max && n + 1 < outsz; i++) {
		unsigned char c = (unsigned char)in[i];
		int ok = (c > 0x20 && c < 0x7f && strchr("()\\;<>\"", c) == NULL) ||
		    (utf8 && c >= 0x80);

		out[n++] = ok ? (char)c : '?';
	}
	out[n] = '\0';
}

static int
format_date(char *out, size_t outsz, time_t when)
{
	struct tm tm;

	if (localtime_r(&when, &tm) == NULL)
		return -1;
	return strftime(out, outsz, "%a, %d %b %Y %H:%M:%S %z (%Z)", &tm) == 0 ?
	    -1 : 0;
}

int
received_format(struct buf *out, const struct received_info *ri)
{
	char helo[HELO_SHOWN_MAX + 1], rcpt[RCPT_SHOWN_MAX + 1], date[64];
	int utf8 = ri->proto != NULL && strncmp(ri->proto, "UTF8", 4) == 0;
	size_t start = out->len;
	int r = 0;

	clean_copy(helo, sizeof(helo), ri->helo ? ri->helo : "", HELO_SHOWN_MAX, 0);
	clean_copy(rcpt, sizeof(rcpt), ri->rcpt ? ri->rcpt : "", RCPT_SHOWN_MAX, utf8);
	if (format_date(date, sizeof(date), ri->when) != 0)
		snprintf(date, sizeof(date), "Thu, 01 Jan 1970 00:00:00 +0000");
	r |= buf_printf(out, "Received: from %s (%s [%s])", helo[0] ? helo : "unknown",
	    ri->client_name && ri->client_name[0] ? ri->client_name : "unknown",
	    ri->client_addr ? ri->client_addr : "unknown");
	if (ri->tls != NULL && ri->tls[0] != '\0')
		r |= buf_printf(out, "\r\n\t(using %.200s)", ri->tls);
	r |= buf_printf(out, "\r\n\tby %s (Hermod) with %s", ri->by ? ri->by : "localhost",
	    ri->proto ? ri->proto : "SMTP");
	if (ri->qid != NULL && ri->qid[0] != '\0')
		r |= buf_printf(out, " id %.64s", ri->qid);
	if (rcpt[0] != '\0')
		r |= buf_printf(out, "\r\n\tfor <%s>; %s\r\n", rcpt, date);
	else
		r |= buf_printf(out, ";\r\n\t%s\r\n", date);
	if (r != 0 || out->len - start > RECEIVED_MAX) {
		out->len = start;
		if (out->data != NULL)
			out->data[start] = '\0';
		return -1;
	}
	return 0;
}

const char *
received_proto(int esmtp, int tls, int auth, int smtputf8)
{
	static const char *const names[2][4] = {
		{ "ESMTP", "ESMTPS", "ESMTPA", "ESMTPSA" },
		{ "UTF8SMTP", "UTF8SMTPS", "UTF8SMTPA", "UTF8SMTPSA" },
	};

	if (!esmtp)
		return "SMTP";
	return names[smtputf8 ? 1 : 0][(tls ? 1 : 0) + (auth ? 2 : 0)];
}

void
hopcount_init(struct hopcount *h)
{
	memset(h, 0, sizeof(*h));
	h->in_header = 1;
	h->matching = 1;
}

/* One byte of the header section. */
static void
hop_byte(struct hopcount *h, char c)
{
	static const char want[] = "received:";

	if (c == '\n') {
		if (h->line_pos == 0 || (h->line_pos == 1 && h->empty_line))
			h->in_header = 0;
		h->line_pos = 0;
		h->matching = 1;
		h->empty_line = 0;
		return;
	}
	if (h->line_pos == 0)
		h->empty_line = c == '\r';
	else
		h->empty_line = 0;
	if (h->matching && h->line_pos < (int)sizeof(want) - 1) {
		if ((c | 0x20) != want[h->line_pos] && c != want[h->line_pos])
			h->matching = 0;
		else if (h->line_pos == (int)sizeof(want) - 2)
			h->count++;
	}
	if (h->line_pos < 1000)
		h->line_pos++;
}

void
hopcount_feed(struct hopcount *h, const char *p, size_t n)
{
	for (size_t i = 0; i < n && h->in_header; i++)
		hop_byte(h, p[i]);
}
