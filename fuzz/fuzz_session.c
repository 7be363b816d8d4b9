/*
 * Fuzz target for smtpd's session state machine: the input is what a
 * client sends, fed through a socketpair into a real session on
 * lib/smtp_server (smtpd's session_io.c, smtp_session.c, smtp_data.c,
 * smtp_parse.c, policy.c, received.c, submit.c and the AUTH and STARTTLS
 * code are compiled in; with no certificate STARTTLS and AUTH are refused
 * as not offered) on a libevent loop; queued is replaced by a
 * deterministic no-op sink (below) whose behaviour the first input byte
 * picks: trusted client or not, queued refusing at the start or at the
 * end, flow control on every write. The loop runs until the session is
 * gone (EOF after the input) with a bound on turns, then what is left is
 * closed; nothing may crash, leak or hang.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../smtpd/policy.c"
#include "../smtpd/received.c"
#include "../smtpd/session_io.c"
#include "../smtpd/smtp_data.c"
#include "../smtpd/smtp_parse.c"
#include "../smtpd/smtp_session.c"
#include "../smtpd/smtpd_auth.c"
#include "../smtpd/smtpd_tls.c"
#include "../smtpd/submit.c"

int smtpd_stopping;

void
smtpd_all_gone(void)
{
}

/* ---- the fake queued ------------------------------------------------------ */

static unsigned fuzz_mode;	/* bit 1: refuse at start, 2: at end, 3: full */

enum { F_READY = 1, F_RESULT, F_DRAIN };

struct handoff {
	const struct handoff_cb *cb;
	void *arg;
	int busy, pending, refuse_now;
	struct event *ev;
};

static void
fake_fire(evutil_socket_t fd, short ev, void *arg)
{
	struct handoff *h = arg;
	struct handoff_result r = { 250, "2.0.0", "Ok", "0123456789ABCDEF" };
	int what = h->pending;

	(void)fd;
	(void)ev;
	h->pending = 0;
	if (what == F_READY) {
		h->cb->ready(h->arg, "0123456789ABCDEF");
	} else if (what == F_DRAIN) {
		h->cb->drain(h->arg);
	} else if (what == F_RESULT) {
		if (h->refuse_now) {
			r.code = 451;
			snprintf(r.status, sizeof(r.status), "4.3.0");
		}
		h->busy = 0;
		h->cb->result(h->arg, &r);
	}
}

static void
fake_later(struct handoff *h, int what)
{
	h->pending = what;
	event_active(h->ev, 0, 0);
}

struct handoff *
handoff_new(struct event_base *base, const struct handoff_cb *cb, void *arg)
{
	struct handoff *h = xcalloc(1, sizeof(*h));

	h->cb = cb;
	h->arg = arg;
	h->ev = event_new(base, -1, 0, fake_fire, h);
	return h;
}

int
handoff_start(struct handoff *h, const struct handoff_msg *m)
{
	(void)m;
	h->busy = 1;
	h->refuse_now = (fuzz_mode & 2) != 0;
	fake_later(h, h->refuse_now ? F_RESULT : F_READY);
	return 0;
}

int
handoff_write(struct handoff *h, const void *p, size_t n)
{
	(void)p;
	(void)n;
	if (!h->busy)
		return -1;
	if ((fuzz_mode & 8) && h->pending == 0) {
		fake_later(h, F_DRAIN);
		return 1;
	}
	return 0;
}

int
handoff_end(struct handoff *h)
{
	h->refuse_now = (fuzz_mode & 4) != 0;
	fake_later(h, F_RESULT);
	return 0;
}

void
handoff_abort(struct handoff *h)
{
	h->busy = 0;
	h->pending = 0;
	event_del(h->ev);
}

int
handoff_busy(const struct handoff *h)
{
	return h->busy;
}

void
handoff_free(struct handoff *h)
{
	if (h == NULL)
		return;
	event_free(h->ev);
	free(h);
}

/* ---- driver ---------------------------------------------------------------- */

static struct event_base *fuzz_base;

static void
fuzz_init(void)
{
	static const char cf[] =
	    "myhostname = fuzz.test\nmydestination = fuzz.test, localhost\n"
	    "mynetworks = 127.0.0.0/8\nalias_maps = /nonexistent/aliases\n"
	    "user_maps = /nonexistent/users\nlocal_system_users = no\n"
	    "smtpd_error_sleep_time = 0\nsmtpd_hard_error_limit = 50\n"
	    "message_size_limit = 20000\nsmtpd_recipient_limit = 20\n"
	    "hopcount_limit = 3\n";

	log_init("fuzz_session", 1, LOG_LVL_CRIT);
	if (conf_load_mem("fuzz", cf, sizeof(cf) - 1, stderr) != 0)
		abort();
	fuzz_base = event_base_new();
}

/* What smtpd sends must be replies: each line "DDD " or "DDD-" with a
 * code from 2xx to 5xx, ending in CRLF, and never longer than a reply can
 * be (RFC 5321 4.5.3.1.5: 512, our EHLO and 5xx texts stay well below). */
static char outline[1024];
static size_t outlen;

static void
check_output(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] != '\n') {
			if (outlen >= sizeof(outline) - 1)
				abort();	/* reply line too long */
			outline[outlen++] = p[i];
			continue;
		}
		if (outlen < 5 || outline[outlen - 1] != '\r' ||
		    outline[0] < '2' || outline[0] > '5' ||
		    outline[1] < '0' || outline[1] > '9' ||
		    outline[2] < '0' || outline[2] > '9' ||
		    (outline[3] != ' ' && outline[3] != '-'))
			abort();	/* not a reply line */
		outlen = 0;
	}
}

static void
drain_peer(int fd)
{
	char buf[65536];
	ssize_t n;

	while ((n = read(fd, buf, sizeof(buf))) > 0)
		check_output(buf, (size_t)n);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	size_t off = 1;
	int sv[2], turns;

	if (fuzz_base == NULL)
		fuzz_init();
	if (size < 1 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0)
		return 0;
	fuzz_mode = data[0];
	outlen = 0;
	sin.sin_addr.s_addr = htonl((fuzz_mode & 1) ? 0x7f000001 : 0xc0000201);
	session_new(fuzz_base, sv[0], (struct sockaddr *)&sin, sizeof(sin), LK_SMTP);
	if (size == 1)
		shutdown(sv[1], SHUT_WR);
	for (turns = 0; turns < 10000 && !TAILQ_EMPTY(&sessions); turns++) {
		if (off < size) {
			ssize_t n = write(sv[1], data + off, size - off);

			if (n > 0)
				off += (size_t)n;
			if (off == size)
				shutdown(sv[1], SHUT_WR);
		}
		event_base_loop(fuzz_base, EVLOOP_NONBLOCK);
		drain_peer(sv[1]);
	}
	while (!TAILQ_EMPTY(&sessions)) {	/* stuck waiting: bounded */
		struct session *s;

		TAILQ_FOREACH(s, &sessions, entry)
			srv_close(s->srv);	/* freed from the loop */
		event_base_loop(fuzz_base, EVLOOP_NONBLOCK);
	}
	close(sv[1]);
	return 0;
}
