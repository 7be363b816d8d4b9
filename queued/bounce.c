/*
 * Delivery status notifications (RFC 3464): failures, delay warnings and
 * success reports, written as a multipart/report message and queued like
 * any other message, from the null sender <>.
 *
 * What comes back: a failure DSN returns the whole message (RET=FULL or no
 * RET) when it is at most bounce_size_limit bytes, else, or with RET=HDRS,
 * only its headers (text/rfc822-headers), as Postfix does. Delay and
 * success reports always carry the headers only.
 * Who gets it: the envelope sender. A message from <> (someone's bounce,
 * or one of ours) that fails is reported once to postmaster, marked
 * "double"; a double that fails again is dropped with a log line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "log.h"
#include "queued.h"
#include "xalloc.h"

#define BOUNCE_MAX	(64 * 1024 * 1024)

static const struct {
	const char *subject, *action, *intro;
} kinds[] = {
	[DSN_FAILED] = { "Undelivered Mail Returned to Sender", "failed",
	    "I'm sorry to have to inform you that your message could not\r\n"
	    "be delivered to one or more recipients. It's attached below." },
	[DSN_DELAYED] = { "Delayed Mail (still being retried)", "delayed",
	    "This is a warning only: your message could not be delivered yet\r\n"
	    "to one or more recipients. It will be retried until it is %s old;\r\n"
	    "you do not need to send it again." },
	[DSN_SUCCESS] = { "Successful Mail Delivery Report", "delivered",
	    "Your message was delivered to the recipients listed below, as you\r\n"
	    "asked (NOTIFY=SUCCESS)." },
};

static void
rfc5322_date(char *out, size_t n, time_t t)
{
	struct tm tm;

	localtime_r(&t, &tm);
	strftime(out, n, "%a, %d %b %Y %H:%M:%S %z", &tm);
}

/*
 * A value from outside (ORCPT and ENVID, xtext that may decode to a line
 * break; a reply text) as printable US-ASCII on one line (RFC 3464
 * §2.1.1), the rest '?': no value can add a field or a MIME part.
 */
static void
put_value(struct buf *b, const char *s, size_t n)
{
	for (size_t i = 0; i < n && s[i] != '\0'; i++)
		buf_putc(b, s[i] >= 32 && s[i] < 127 ? s[i] : '?');
}

static void
human_part(struct buf *b, struct msg *m, enum dsn_kind kind, const char *which)
{
	char life[32];

	snprintf(life, sizeof(life), "%llds", conf_num(C_maximal_queue_lifetime));
	buf_printf(b, "This is the mail system at host %s.\r\n\r\n", queued_hostname());
	buf_printf(b, kinds[kind].intro, life);
	buf_puts(b, "\r\n\r\nFor further assistance, please send mail to postmaster.\r\n\r\n");
	for (int i = 0; i < m->nleaf; i++)
		if (which[i]) {
			buf_printf(b, "<%s>: ", m->leaves[i].addr);
			put_value(b, m->leaves[i].reason ? m->leaves[i].reason : "",
			    REASON_MAX);
			buf_puts(b, "\r\n");
		}
}

static void
rcpt_fields(struct buf *b, struct msg *m, enum dsn_kind kind, int i)
{
	struct leaf *l = &m->leaves[i];
	const char *orcpt = m->rcpts[l->parent].orcpt, *semi;
	char date[64];

	buf_printf(b, "\r\nFinal-Recipient: rfc822; %s\r\n", l->addr);
	if (orcpt != NULL && (semi = strchr(orcpt, ';')) != NULL) {
		buf_puts(b, "Original-Recipient: ");
		put_value(b, orcpt, (size_t)(semi - orcpt));
		buf_puts(b, "; ");
		put_value(b, semi + 1, ADDR_MAX);
		buf_puts(b, "\r\n");
	}
	/* a remote success reported by us: the next hop had no DSN (RFC 3461 §4.2) */
	buf_printf(b, "Action: %s\r\nStatus: %s\r\n", kind == DSN_SUCCESS &&
	    l->kind == LEAF_REMOTE ? "relayed" : kinds[kind].action,
	    l->dsn[0] ? l->dsn : kind == DSN_DELAYED ? "4.0.0" : "5.0.0");
	if (l->relay != NULL)	/* the name only: "host[addr]:port" -> "host" */
		buf_printf(b, "Remote-MTA: dns; %.*s\r\n",
		    (int)strcspn(l->relay, "["), l->relay);
	if (l->reason != NULL && l->reason[0] != '\0') {
		buf_printf(b, "Diagnostic-Code: %s; ", strspn(l->reason, "0123456789")
		    == 3 && l->reason[0] >= '2' && l->reason[0] <= '5' &&
		    l->reason[3] == ' ' ? "smtp" : "x-unix");
		put_value(b, l->reason, REASON_MAX);
		buf_puts(b, "\r\n");
	}
	if (l->last_try > 0) {
		rfc5322_date(date, sizeof(date), l->last_try);
		buf_printf(b, "Last-Attempt-Date: %s\r\n", date);
	}
	if (kind == DSN_DELAYED) {
		rfc5322_date(date, sizeof(date),
		    (time_t)m->arrival + conf_num(C_maximal_queue_lifetime));
		buf_printf(b, "Will-Retry-Until: %s\r\n", date);
	}
}

static void
status_part(struct buf *b, struct msg *m, enum dsn_kind kind, const char *which)
{
	char date[64];

	rfc5322_date(date, sizeof(date), (time_t)m->arrival);
	buf_printf(b, "Reporting-MTA: dns; %s\r\nX-Hermod-Queue-ID: %s\r\n",
	    queued_hostname(), m->id);
	if (m->envid != NULL) {
		buf_puts(b, "Original-Envelope-Id: ");
		put_value(b, m->envid, ADDR_MAX);
		buf_puts(b, "\r\n");
	}
	buf_printf(b, "X-Hermod-Sender: rfc822; %s\r\nArrival-Date: %s\r\n",
	    m->sender, date);
	for (int i = 0; i < m->nleaf; i++)
		if (which[i])
			rcpt_fields(b, m, kind, i);
}

/* The original: whole or headers only. 0, or -1 on a read error. */
static int
original_part(struct buf *b, struct msg *m, int full, int msgfd)
{
	size_t want = full ? (size_t)m->size : (size_t)(m->size < 256 * 1024 ? m->size : 256 * 1024);
	char *data = xmalloc(want + 1), *end;
	ssize_t n = pread(msgfd, data, want, m->data_off);

	if (n != (ssize_t)want) {
		free(data);
		return -1;
	}
	data[want] = '\0';
	if (!full) {	/* up to and including the blank line */
		if ((end = memmem(data, want, "\r\n\r\n", 4)) != NULL)
			want = (size_t)(end - data) + 2;
		buf_append(b, data, want);
		if (want < 2 || memcmp(data + want - 2, "\r\n", 2) != 0)
			buf_puts(b, "\r\n");
	} else
		buf_append(b, data, want);
	free(data);
	return 0;
}

int
bounce_build(struct buf *b, struct msg *m, enum dsn_kind kind, const char *which,
    int msgfd, const char *seed)
{
	/* whole only if it fits the DSN's buffer too: past BOUNCE_MAX it
	 * was dropped, and the part claimed a message it did not carry */
	int full = kind == DSN_FAILED && !m->ret_hdrs &&
	    m->size <= conf_num(C_bounce_size_limit) && m->size <= BOUNCE_MAX / 2;
	char date[64];

	rfc5322_date(date, sizeof(date), time(NULL));
	buf_printf(b, "Date: %s\r\nFrom: MAILER-DAEMON@%s (Mail Delivery System)\r\n"
	    "To: <%s>\r\nSubject: %s\r\nMessage-ID: <%s.%s@%s>\r\n"
	    "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
	    "Content-Type: multipart/report; report-type=delivery-status;\r\n"
	    "\tboundary=\"%s/%s\"\r\nContent-Transfer-Encoding: %s\r\n\r\n"
	    "This is a MIME-encapsulated message.\r\n\r\n",
	    date, queued_hostname(), m->sender[0] ? m->sender : "postmaster",
	    kinds[kind].subject, m->id, seed, queued_hostname(), m->id, seed,
	    m->body8 || m->smtputf8 ? "8bit" : "7bit");
	buf_printf(b, "--%s/%s\r\nContent-Description: Notification\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n\r\n", m->id, seed);
	human_part(b, m, kind, which);
	buf_printf(b, "\r\n--%s/%s\r\nContent-Description: Delivery report\r\n"
	    "Content-Type: message/delivery-status\r\n\r\n", m->id, seed);
	status_part(b, m, kind, which);
	buf_printf(b, "\r\n--%s/%s\r\nContent-Description: %s\r\nContent-Type: %s\r\n\r\n",
	    m->id, seed, full ? "Undelivered Message" : "Message Headers",
	    full ? "message/rfc822" : "text/rfc822-headers");
	if (original_part(b, m, full, msgfd) < 0)
		return -1;
	buf_printf(b, "\r\n--%s/%s--\r\n", m->id, seed);
	return 0;
}

/* Who gets the DSN: 0 with *to set, or 1 when none goes anywhere. */
static int
dsn_recipient(struct msg *m, enum dsn_kind kind, const char **to, unsigned *flags)
{
	*flags = MSGF_DSN;
	if (m->sender[0] != '\0') {
		*to = m->sender;
		return 0;
	}
	if (kind != DSN_FAILED)
		return 1;
	if (m->flags & MSGF_DOUBLE) {
		log_qwarn(m->id, "undeliverable postmaster notification discarded");
		return 1;
	}
	*to = "postmaster";
	*flags |= MSGF_DOUBLE;
	return 0;
}

struct bounce_ctx {
	struct msg *m;
	void (*done)(void *arg, int err);
	void *arg;
};

static void
bounce_queued(void *arg, int err, const char *qid)
{
	struct bounce_ctx *c = arg;

	if (err == 0)
		log_qinfo(c->m->id, "%s notification: %s",
		    c->m->sender[0] ? "sender delivery status" : "postmaster", qid);
	c->done(c->arg, err);
	free(c);
}

/* Route the DSN's recipient and queue the text. */
static int
queue_dsn(struct msg *m, const char *to, unsigned flags, struct buf *text,
    void (*done)(void *arg, int err), void *arg)
{
	struct env_rcpt r = { .addr = (char *)to };	/* failures: see dsn_recipient */
	struct qf_env env = { .sender = "", .flags = flags, .arrival = 0,
	    .body8 = m->body8, .smtputf8 = m->smtputf8 };
	struct leaf_list leaves = { 0 };
	struct bounce_ctx *c;
	char why[256];
	int rc;

	if (route_rcpt(to, 0, &leaves, why, sizeof(why)) != 0 || leaves.n == 0) {
		log_qwarn(m->id, "cannot route the notification to <%s>: %s", to, why);
		leaves_free(&leaves);
		return -1;
	}
	{
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		env.arrival = (double)ts.tv_sec + ts.tv_nsec / 1e9;
	}
	c = xcalloc(1, sizeof(*c));
	c->m = m;
	c->done = done;
	c->arg = arg;
	rc = queue_new_message(&env, &r, 1, leaves.v, leaves.n, text->data, text->len,
	    bounce_queued, c);
	leaves_free(&leaves);
	if (rc != 0) {
		free(c);
		return -1;
	}
	return 0;
}

int
bounce_send(struct msg *m, enum dsn_kind kind, const char *which,
    void (*done)(void *arg, int err), void *arg)
{
	const char *to;
	unsigned flags;
	struct buf text;
	char seed[32];
	int rc = -1;

	if (dsn_recipient(m, kind, &to, &flags) != 0)
		return 1;
	snprintf(seed, sizeof(seed), "%lld.%d", (long long)time(NULL), (int)kind);
	buf_init(&text, BOUNCE_MAX);
	if (bounce_build(&text, m, kind, which, m->fd, seed) == 0)
		rc = queue_dsn(m, to, flags, &text, done, arg);
	else
		log_qwarn(m->id, "cannot read the message for its notification");
	buf_free(&text);
	return rc;
}
