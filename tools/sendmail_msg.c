/*
 * sendmail(1): reading the message from standard input and preparing it
 * for submission. Lines end in CRLF on the way out; with -t the To, Cc and
 * Bcc headers give recipients and Bcc is removed; From:, Date: and
 * Message-ID: are added when missing, as Postfix's cleanup does for local
 * submissions. The header block is held in memory (bounded), the body is
 * read line by line.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "sendmail.h"
#include "xalloc.h"

/* Is line the start of header `name`? */
static int
header_is(const char *line, const char *name)
{
	size_t n = strlen(name);

	return strncasecmp(line, name, n) == 0 && line[n] == ':';
}

/* Strip RFC 5322 comments "(...)" (nested) from s in place. */
static void
strip_comments(char *s)
{
	char *w = s;
	int depth = 0, quoted = 0;

	for (char *r = s; *r; r++) {
		if (*r == '\\' && r[1] && (quoted || depth)) {
			if (!depth) {
				*w++ = *r++;
				*w++ = *r;
			} else
				r++;
			continue;
		}
		if (!depth && *r == '"')
			quoted = !quoted;
		if (!quoted && *r == '(') {
			depth++;
			continue;
		}
		if (!quoted && depth && *r == ')') {
			depth--;
			continue;
		}
		if (!depth)
			*w++ = *r;
	}
	*w = '\0';
}

static char *
trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

/* One element of an address list: "Name <a@b>", "a@b", "group: a, b;". */
static void
add_list_item(struct submission *sub, char *item)
{
	char *lt, *gt, *colon;

	strip_comments(item);
	item = trim(item);
	/* group syntax: drop "display-name:" and a trailing ';' */
	if ((colon = strchr(item, ':')) != NULL && strchr(item, '<') == NULL &&
	    strchr(item, '"') == NULL)
		item = trim(colon + 1);
	if (*item && item[strlen(item) - 1] == ';')
		item[strlen(item) - 1] = '\0';
	item = trim(item);
	if ((lt = strrchr(item, '<')) != NULL && (gt = strchr(lt, '>')) != NULL) {
		*gt = '\0';
		item = lt + 1;
	}
	item = trim(item);
	if (*item)
		submission_add_rcpt(sub, item);
}

/* Split an address list on commas outside quotes, angle brackets and
 * comments. */
void
submission_add_list(struct submission *sub, const char *value)
{
	char *copy = xstrdup(value), *start = copy;
	int quoted = 0, angle = 0, paren = 0;

	for (char *p = copy;; p++) {
		if (*p == '\\' && p[1]) {
			p++;
			continue;
		}
		if (*p == '"' && !paren)
			quoted = !quoted;
		else if (!quoted && *p == '(')
			paren++;
		else if (!quoted && *p == ')' && paren)
			paren--;
		else if (!quoted && !paren && *p == '<')
			angle = 1;
		else if (!quoted && !paren && *p == '>')
			angle = 0;
		if (*p == '\0' || (*p == ',' && !quoted && !angle && !paren)) {
			int end = *p == '\0';

			*p = '\0';
			add_list_item(sub, start);
			if (end)
				break;
			start = p + 1;
		}
	}
	free(copy);
}

/* A complete header (with its continuation lines joined by "\n"). */
static void
take_header(struct submission *sub, struct buf *hdr, int *seen)
{
	const char *h = hdr->data;
	int drop = 0;

	if (hdr->len == 0)
		return;
	if (header_is(h, "From"))
		seen[0] = 1;
	else if (header_is(h, "Date"))
		seen[1] = 1;
	else if (header_is(h, "Message-ID"))
		seen[2] = 1;
	if (sub->extract) {
		if (header_is(h, "To") || header_is(h, "Cc"))
			submission_add_list(sub, strchr(h, ':') + 1);
		else if (header_is(h, "Bcc")) {
			submission_add_list(sub, strchr(h, ':') + 1);
			drop = 1;	/* Bcc never reaches the recipients */
		}
	}
	if (!drop) {
		/* it goes out in DATA as it is: a leading dot doubled (a
		 * continuation line starts with white space) */
		if (h[0] == '.')
			buf_putc(&sub->headers, '.');
		/* continuation lines were joined with '\n': restore CRLF; a NUL
		 * is kept, as in the body */
		for (size_t i = 0; i < hdr->len; i++) {
			if (h[i] == '\n')
				buf_append(&sub->headers, "\r\n", 2);
			else
				buf_putc(&sub->headers, h[i]);
		}
		buf_append(&sub->headers, "\r\n", 2);
	}
	buf_reset(hdr);
}

/* From: "Full Name" <sender>: the -F name is a phrase; quoted when it
 * has a character that would make it something else ("Doe, John" is
 * two addresses unquoted). */
static void
from_with_name(struct submission *sub)
{
	const char *n = sub->fullname;

	if (n[strcspn(n, "()<>[]:;@\\,.\"")] == '\0') {
		buf_printf(&sub->headers, "From: %s <%s>\r\n", n, sub->sender);
		return;
	}
	buf_puts(&sub->headers, "From: \"");
	for (; *n; n++) {
		if (*n == '"' || *n == '\\')
			buf_putc(&sub->headers, '\\');
		buf_putc(&sub->headers, *n);
	}
	buf_printf(&sub->headers, "\" <%s>\r\n", sub->sender);
}

static void
add_missing_headers(struct submission *sub, const int *seen)
{
	char date[64];
	time_t now = time(NULL);
	struct tm tm;

	localtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
	if (!seen[0]) {
		if (sub->fullname)
			from_with_name(sub);
		else
			buf_printf(&sub->headers, "From: %s\r\n", sub->sender);
	}
	if (!seen[1])
		buf_printf(&sub->headers, "Date: %s\r\n", date);
	if (!seen[2])
		buf_printf(&sub->headers, "Message-ID: <%lld.%ld@%s>\r\n",
		    (long long)now, (long)getpid(), sub->myhostname);
}

/* Read one line (without its LF; a CR before it is dropped too). */
static ssize_t
read_line(FILE *in, char **line, size_t *cap)
{
	ssize_t n = getline(line, cap, in);

	if (n <= 0)
		return -1;
	if ((*line)[n - 1] == '\n')
		(*line)[--n] = '\0';
	if (n > 0 && (*line)[n - 1] == '\r')
		(*line)[--n] = '\0';
	return n;
}

/*
 * Read the header block from `in`. Returns the first body line in
 * *pending (or NULL at EOF / end of the header block without a body).
 */
int
message_read_headers(struct submission *sub, FILE *in)
{
	struct buf hdr;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int seen[3] = { 0, 0, 0 };

	buf_init(&hdr, SENDMAIL_HEADER_MAX);
	buf_init(&sub->headers, SENDMAIL_HEADER_MAX);
	for (int first = 1; (n = read_line(in, &line, &cap)) >= 0; first = 0) {
		/* a leading mbox "From " line (git format-patch, a message
		 * saved from a mailbox) is not a header: dropped, as Postfix
		 * and sendmail do, so the headers after it are headers */
		if (first && strncmp(line, "From ", 5) == 0)
			continue;
		if (!sub->ignore_dots && strcmp(line, ".") == 0) {
			sub->eof_dot = 1;
			break;
		}
		if (hdr.len && (line[0] == ' ' || line[0] == '\t')) {
			if (buf_putc(&hdr, '\n') < 0 || buf_append(&hdr, line, n) < 0)
				goto toolong;
			continue;
		}
		take_header(sub, &hdr, seen);
		if (n == 0 || strchr(line, ':') == NULL ||
		    strcspn(line, ": \t") != strcspn(line, ":")) {
			/* blank line, or not a header: the body starts here */
			sub->pending = n == 0 ? NULL : memcpy(xmalloc((size_t)n), line, (size_t)n);
			sub->pending_len = (size_t)n;	/* NULs are kept */
			sub->blank_seen = n == 0;
			break;
		}
		if (buf_append(&hdr, line, n) < 0)
			goto toolong;
	}
	take_header(sub, &hdr, seen);
	add_missing_headers(sub, seen);
	buf_free(&hdr);
	free(line);
	return 0;
toolong:
	buf_free(&hdr);
	free(line);
	fprintf(stderr, "sendmail: message header too large (over %d bytes)\n",
	    SENDMAIL_HEADER_MAX);
	return -1;
}

/* Write `line` + CRLF to the LMTP connection, dot-stuffed. */
static int
put_line(FILE *out, const char *line, size_t n)
{
	if (line[0] == '.' && fputc('.', out) == EOF)
		return -1;
	if (fwrite(line, 1, n, out) != n || fputs("\r\n", out) == EOF)
		return -1;
	return 0;
}

int
message_send_body(struct submission *sub, FILE *in, FILE *out)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int rc = 0;

	if (fwrite(sub->headers.data, 1, sub->headers.len, out) != sub->headers.len ||
	    fputs("\r\n", out) == EOF)
		return -1;
	if (sub->pending) {
		rc = put_line(out, sub->pending, sub->pending_len);
		free(sub->pending);
		sub->pending = NULL;
	}
	while (rc == 0 && !sub->eof_dot && (n = read_line(in, &line, &cap)) >= 0) {
		if (!sub->ignore_dots && strcmp(line, ".") == 0)
			break;
		rc = put_line(out, line, (size_t)n);
	}
	free(line);
	if (rc == 0 && fputs(".\r\n", out) == EOF)
		rc = -1;
	return rc;
}
