/*
 * Fuzz target for the server session framework (lib/smtp_server): the
 * input is what a client sends, written through a socketpair into a real
 * session on a libevent loop, with a tiny command table of its own (the
 * daemons' tables are fuzzed by fuzz_session and the e2e tests). The first
 * byte picks the framework's options: small limits (line, pipelining,
 * errors, output), a pause after every command, a pause inside the data,
 * bare LF rejected, DATA normalize mode. Checked: everything sent back is
 * well-formed reply lines; a BDAT chunk delivers exactly its size; DATA
 * never hands out more than its limit; on_data_end comes once per
 * srv_data_start/srv_bdat_start; on_close exactly once; nothing leaks,
 * crashes or hangs.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/event.h>

#include "log.h"
#include "smtp_server.h"

#define DATA_MAX	5000

enum { ST_INIT, ST_HELO, ST_MAIL };

static struct event_base *base;
static struct event *resume_ev;
static struct srv_session *cur;
static unsigned mode;			/* the first input byte */
static int closed, in_data;		/* in_data: 1 DATA, 2 BDAT */
static uint64_t got, want;		/* bytes of this DATA / chunk */

/* ---- the tiny daemon ------------------------------------------------------ */

static void
maybe_pause(struct srv_session *s)
{
	if (mode & 0x02) {
		srv_pause(s);
		event_active(resume_ev, 0, 0);
	}
}

static void
cmd_helo(struct srv_session *s, char *arg)
{
	(void)arg;
	srv_set_state(s, ST_HELO);
	srv_reply(s, 250, NULL, "fuzz.test\nPIPELINING\nCHUNKING\n8BITMIME");
	maybe_pause(s);
}

static void
cmd_mail(struct srv_session *s, char *arg)
{
	char *path, *params;
	struct smtp_params ps;

	if (smtp_path_split(arg, "FROM:", 0, &path, &params) != 0 ||
	    smtp_params_parse(params, 0, &ps) != SMTP_PARAM_OK) {
		srv_reply_id(s, RPL_SYNTAX);
		return;
	}
	srv_set_state(s, ST_MAIL);
	srv_reply(s, 250, "2.1.0", "Ok %s", path);
	maybe_pause(s);
}

static void
cmd_data(struct srv_session *s, char *arg)
{
	(void)arg;
	srv_reply_id(s, RPL_DATA_GO);
	in_data = 1;
	got = 0;
	srv_data_start(s, DATA_MAX);
}

static void
cmd_bdat(struct srv_session *s, char *arg)
{
	uint64_t size;
	int last;
	unsigned flags = 0;

	if (smtp_bdat_parse(arg, 100000, &size, &last) != 0) {
		srv_reply_id(s, RPL_SYNTAX);
		srv_close_after_flush(s);
		return;
	}
	if (srv_state(s) != ST_MAIL)
		flags |= SRV_BDAT_DISCARD;
	if (last)
		flags |= SRV_BDAT_LAST;
	in_data = 2;
	got = 0;
	want = size;
	srv_bdat_start(s, size, flags);
}

static void
cmd_ok(struct srv_session *s, char *arg)
{
	(void)arg;
	srv_reply_id(s, RPL_OK);
	maybe_pause(s);
}

static void
cmd_quit(struct srv_session *s, char *arg)
{
	(void)arg;
	srv_reply_id(s, RPL_BYE);
	srv_close_after_flush(s);
}

static const struct srv_cmd table[] = {
	{ "HELO", 0, SRV_ARG_NEED, cmd_helo },
	{ "MAIL", SRV_STATE(ST_HELO), SRV_ARG_NEED, cmd_mail },
	{ "DATA", SRV_STATE(ST_MAIL), SRV_ARG_NONE, cmd_data },
	{ "BDAT", 0, SRV_ARG_NEED, cmd_bdat },
	{ "NOOP", 0, SRV_ARG_ANY, cmd_ok },
	{ "RSET", 0, SRV_ARG_NONE, cmd_ok },
	{ "QUIT", 0, SRV_ARG_NONE, cmd_quit },
	{ NULL, 0, 0, NULL },
};

static void
on_data(struct srv_session *s, const char *p, size_t n)
{
	(void)p;
	if (in_data == 0 || n == 0)
		abort();	/* data outside DATA/BDAT, or an empty piece */
	got += n;
	if ((in_data == 1 && got > DATA_MAX) || (in_data == 2 && got > want))
		abort();
	if ((mode & 0x04) && !srv_paused(s)) {
		srv_pause(s);
		event_active(resume_ev, 0, 0);
	}
}

static void
on_data_end(struct srv_session *s, unsigned flags)
{
	if (in_data == 0 || (in_data == 2) != ((flags & SRV_END_BDAT) != 0))
		abort();	/* an end without a start, or of the wrong kind */
	if (in_data == 2 && !(flags & SRV_END_DISCARDED) && got != want)
		abort();	/* a chunk is exactly its size */
	if (in_data == 2 && (flags & SRV_END_DISCARDED) && got != 0)
		abort();
	in_data = 0;
	if (flags & SMTP_DATA_F_TOO_BIG)
		srv_reply_id(s, RPL_MSG_TOO_BIG);
	else
		srv_reply(s, 250, "2.0.0", "%llu octets", (unsigned long long)got);
	srv_set_state(s, ST_HELO);
	maybe_pause(s);
}

static void
on_close(struct srv_session *s, enum srv_close_why why)
{
	(void)s;
	(void)why;
	if (closed++)
		abort();
	cur = NULL;
}

static const struct srv_ops ops = {
	.on_data = on_data,
	.on_data_end = on_data_end,
	.on_close = on_close,
};

static void
resume_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (cur != NULL)
		srv_resume(cur);
}

/* ---- the client side ------------------------------------------------------ */

/* Each line "DDD[ -]...\r\n", code 2xx-5xx, at most 512 bytes. */
static char outline[SMTP_REPLY_LINE_MAX + 1];
static size_t outlen;

static void
check_output(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (outlen >= sizeof(outline))
			abort();	/* reply line too long */
		outline[outlen++] = p[i];
		if (p[i] != '\n')
			continue;
		if (outlen < 6 || outline[outlen - 2] != '\r' ||
		    outline[0] < '2' || outline[0] > '5' ||
		    outline[1] < '0' || outline[1] > '9' ||
		    outline[2] < '0' || outline[2] > '9' ||
		    (outline[3] != ' ' && outline[3] != '-'))
			abort();	/* not a reply line */
		for (size_t j = 0; j < outlen - 2; j++)
			if (outline[j] == '\r' || outline[j] == '\0')
				abort();
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
	struct srv_limits lim = { 0 };
	struct bufferevent *bev;
	size_t off = 1;
	int sv[2];

	if (base == NULL) {
		log_init("fuzz_smtp_server", 1, LOG_LVL_CRIT);
		base = event_base_new();
		resume_ev = event_new(base, -1, 0, resume_cb, NULL);
	}
	if (size < 1 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0)
		return 0;
	mode = data[0];
	if (mode & 0x01) {		/* small bounds */
		lim.line_max = 64;
		lim.pipeline_max = 2;
		lim.hard_error_limit = 3;
		lim.output_max = 256;
		lim.input_max = 256;
	}
	if (mode & 0x08)
		lim.flags |= SRV_F_REJECT_BARE_LF;
	if (mode & 0x10)
		lim.flags |= SRV_F_DATA_NORMALIZE;
	closed = in_data = 0;
	outlen = 0;
	bev = bufferevent_socket_new(base, sv[0], BEV_OPT_CLOSE_ON_FREE);
	cur = srv_session_new(bev, table, &lim, &ops, NULL);
	srv_reply(cur, 220, NULL, "fuzz.test ready");
	if (size == 1)
		shutdown(sv[1], SHUT_WR);
	for (int turns = 0; turns < 20000 && !closed; turns++) {
		if (off < size) {
			ssize_t n = write(sv[1], data + off, size - off);

			if (n > 0)
				off += (size_t)n;
			if (off == size)
				shutdown(sv[1], SHUT_WR);
		}
		event_base_loop(base, EVLOOP_NONBLOCK);
		drain_peer(sv[1]);
	}
	if (!closed) {			/* bounded: end it ourselves */
		srv_close(cur);
		event_base_loop(base, EVLOOP_NONBLOCK);
	}
	if (!closed)
		abort();		/* srv_close must finish from the loop */
	event_del(resume_ev);
	close(sv[1]);
	return 0;
}
