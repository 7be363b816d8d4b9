/*
 * The server session framework (see smtp_server.h): reads command lines
 * and DATA/BDAT off a bufferevent, dispatches through the daemon's table,
 * and owns the generic protocol errors, timeouts, pipelining fairness,
 * flow control and the STARTTLS switch-over. smtpd, queued's submission
 * server and lmtpd each drive their sessions through it.
 *
 * All input processing runs in process(), which only the event loop calls
 * (read/write/event callbacks and the "kick" event). Daemon calls that
 * change what should happen next (resume, data start, close) never
 * process input or free the session themselves: they set a flag and
 * activate the kick event, so a command function can call anything.
 *
 * Replies on a plain socket go out by a direct write from the "flush"
 * event, at the end of the loop pass that made them (a pipelined group in
 * one write), not through the bufferevent's write event: that cost two
 * epoll_ctl calls and one more loop pass per reply (strace: 13 % of the
 * system calls of a message relayed smtpd -> queued -> lmtpd, gone with
 * this; bench/RESULTS.md). Only when the socket
 * is full does the bufferevent write the rest (EV_WRITE enabled until the
 * output drains). TLS and socketless (smtpd -bs) sessions always write
 * through the bufferevent.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/ssl.h>

#include "event.h"
#include "log.h"
#include "smtp_server.h"
#include "xalloc.h"

#define SRV_PIPELINE_DEF	32
#define SRV_ERRORS_DEF		20	/* Postfix's smtpd_hard_error_limit */
#define SRV_TIMEOUT_DEF		300	/* Postfix's smtpd_timeout */
#define SRV_IO_MAX_DEF		65536
#define SRV_LINE_HARD_MAX	16384	/* line_max is capped here (stack) */
#define SRV_DATA_PIECE		16384	/* DATA decoded per step */
#define SRV_CLOSE_GRACE		10	/* seconds to flush a last reply */

enum srv_mode { M_CMD, M_DATA, M_BDAT };

struct srv_session {
	struct bufferevent *bev;
	const struct srv_cmd *table;
	const struct srv_ops *ops;
	void *udata;
	const struct srv_limits *lim;	/* borrowed: LIM() fills defaults */
	struct event *timer;		/* command timeout, error sleep, close
					   grace, then linger */
	struct event *kick;		/* process() or finish from the loop;
					   made at its first use (idle
					   sessions never need it) */
	struct event *flush;		/* the direct write; made at first use */
	const struct srv_cmd *cur;	/* the row being dispatched */
	struct smtp_line_reader lr;
	struct smtp_data_dec dec;
	uint64_t bdat_left;
	unsigned bdat_flags;
	enum srv_mode mode;
	unsigned state, errors, line_flags;
	enum srv_close_why why;		/* for closing / dead */
	struct timeval close_by;	/* closing: give up flushing then */
	/* the DATA or BDAT request's deadline (min_data_rate), in monotonic
	 * µs: its start, the bytes it brought, the time we kept it paused */
	int64_t req_start, req_paused, paused_at;
	uint64_t req_bytes;
	unsigned paused:1, busy:1, dead:1, closing:1, eof:1, want_write:1,
	    need_input:1, tls:1, sleeping:1, lingering:1, flush_pending:1;
};

static void process(struct srv_session *s);
static void setup_bev(struct srv_session *s);

/* A bound, or its default when the daemon left it 0 (the limits are
 * borrowed, not copied: an idle session stays small). */
#define LIM(s, f, def)	((s)->lim->f ? (s)->lim->f : (def))

static size_t
line_max(const struct srv_session *s)
{
	size_t n = LIM(s, line_max, SMTP_CMD_LINE_MAX);

	return n < SRV_LINE_HARD_MAX ? n : SRV_LINE_HARD_MAX;
}

static size_t
input_max(const struct srv_session *s)
{
	size_t n = LIM(s, input_max, SRV_IO_MAX_DEF);

	return n < 2 * line_max(s) ? 2 * line_max(s) : n;	/* a line fits */
}

static unsigned
timeout_sec(const struct srv_session *s)
{
	return LIM(s, timeout_sec, SRV_TIMEOUT_DEF);
}

/* ---------------- life cycle ---------------- */

static void
finish(struct srv_session *s)
{
	s->ops->on_close(s, s->why);
	event_free(s->timer);
	if (s->kick != NULL)
		event_free(s->kick);
	if (s->flush != NULL)
		event_free(s->flush);
	bufferevent_free(s->bev);
	free(s);
}

static void kick_cb(evutil_socket_t fd, short what, void *arg);

/* Make the kick event active (it is made the first time). */
static void
kick(struct srv_session *s)
{
	if (s->kick == NULL && (s->kick = event_new(bufferevent_get_base(s->bev),
	    -1, 0, kick_cb, s)) == NULL)
		fatal("srv_session: out of memory");
	event_active(s->kick, EV_TIMEOUT, 0);
}

/* Run process() (or finish) from the loop, never from the caller. */
static void
poke(struct srv_session *s)
{
	if (!s->busy)
		kick(s);
}

static void
kick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct srv_session *s = arg;

	(void)fd;
	(void)what;
	if (s->dead)
		finish(s);
	else
		process(s);
}

static void
arm_timer(struct srv_session *s, unsigned sec)
{
	struct timeval tv = { (time_t)sec, 0 };

	evtimer_add(s->timer, &tv);
}

static void
arm_timer_ms(struct srv_session *s, unsigned ms)
{
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };

	evtimer_add(s->timer, &tv);
}

/* Is a DATA or BDAT request running under a deadline? */
static int
in_request(const struct srv_session *s)
{
	return s->req_start != 0 && (s->mode == M_DATA || s->mode == M_BDAT);
}

static void
request_begin(struct srv_session *s)
{
	s->req_start = s->lim->min_data_rate ? mono_us() : 0;
	s->req_paused = 0;
	s->paused_at = s->paused && s->req_start ? s->req_start : 0;
	s->req_bytes = 0;
}

/* Waiting for the client: the per-read timeout, or less when the
 * request's deadline comes first (then the timer's 421 is at once). */
static void
arm_wait(struct srv_session *s)
{
	uint64_t rate = s->lim->min_data_rate;
	int64_t left;

	if (!in_request(s)) {
		arm_timer(s, timeout_sec(s));
		return;
	}
	/* bytes / rate seconds, in µs, without overflowing for any count */
	left = s->req_start + (int64_t)timeout_sec(s) * 1000000 + s->req_paused +
	    (int64_t)(s->req_bytes / rate * 1000000 + s->req_bytes % rate * 1000000 / rate) -
	    mono_us();
	if (left > (int64_t)timeout_sec(s) * 1000000)
		left = (int64_t)timeout_sec(s) * 1000000;
	arm_timer_ms(s, left > 0 ? (unsigned)(left / 1000) : 0);
}

/* Mark dead; the session is finished from the loop (on_close, free). */
static void
kill_session(struct srv_session *s, enum srv_close_why why)
{
	if (s->dead)
		return;
	s->dead = 1;
	s->why = why;
	bufferevent_disable(s->bev, EV_READ | EV_WRITE);
	evtimer_del(s->timer);
	poke(s);
}

/*
 * Bytes not yet handed to the kernel: ours, plus those a TLS filter has
 * already encrypted into the socket bufferevent below it.
 */
static size_t
out_pending(const struct srv_session *s)
{
	struct bufferevent *under = bufferevent_get_underlying(s->bev);
	size_t n = evbuffer_get_length(bufferevent_get_output(s->bev));

	if (under != NULL)
		n += evbuffer_get_length(bufferevent_get_output(under));
	return n;
}

/* A plain socket: replies are written directly (see the top). */
static int
direct(const struct srv_session *s)
{
	return !srv_tls_active(s) && bufferevent_getfd(s->bev) >= 0;
}

/* Write what the replies left in the output now; what the socket does
 * not take is the bufferevent's to write. */
static void
out_flush(struct srv_session *s)
{
	if (s->dead || !direct(s))
		return;
	if (bev_write_now(s->bev) < 0)
		kill_session(s, SRV_CLOSE_ERROR);	/* the peer is gone */
}

static void write_cb(struct bufferevent *bev, void *arg);

static void
flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct srv_session *s = arg;

	(void)fd;
	(void)what;
	s->flush_pending = 0;
	out_flush(s);
	if (!s->dead && out_pending(s) == 0)
		write_cb(s->bev, s);	/* what the bufferevent would call */
}

/* A reply was added to the output. */
static void
out_added(struct srv_session *s)
{
	if (s->flush_pending || !direct(s))
		return;
	if (s->flush == NULL && (s->flush = event_new(bufferevent_get_base(s->bev),
	    -1, 0, flush_cb, s)) == NULL)
		fatal("srv_session: out of memory");
	s->flush_pending = 1;
	event_active(s->flush, EV_TIMEOUT, 0);
}

/*
 * The last reply is written. Closing a socket with unread input makes the
 * kernel send a reset, which can destroy that reply before the peer reads
 * it (a 421 after a flood of pipelined junk). So, when configured:
 * half-close, drop what still comes, close on the peer's EOF or after
 * linger_ms (a deadline: a trickle cannot extend it). Under TLS no
 * half-close (that would skip close_notify handling); just drain.
 */
static void
written_out(struct srv_session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);

	if (s->lim->linger_ms == 0 || s->eof || s->why == SRV_CLOSE_ERROR) {
		kill_session(s, s->why);
		return;
	}
	s->lingering = 1;
	if (!srv_tls_active(s) && bufferevent_getfd(s->bev) >= 0)
		shutdown(bufferevent_getfd(s->bev), SHUT_WR);
	evbuffer_drain(in, evbuffer_get_length(in));
	arm_timer_ms(s, s->lim->linger_ms);
	bufferevent_enable(s->bev, EV_READ);
}

/* While closing: done when all is written, else look again shortly. */
static void
close_check(struct srv_session *s)
{
	struct timeval tv = { 0, 50000 };

	if (out_pending(s) == 0) {
		written_out(s);
		return;
	}
	if (event_base_gettimeofday_cached(bufferevent_get_base(s->bev),
	    &tv) < 0 || evutil_timercmp(&tv, &s->close_by, >=)) {
		kill_session(s, s->why);	/* the peer does not read */
		return;
	}
	tv.tv_sec = 0;
	tv.tv_usec = 50000;
	evtimer_add(s->timer, &tv);
}

/* Stop reading; close once the output is written (or the grace ends). */
static void
begin_close(struct srv_session *s, enum srv_close_why why)
{
	struct timeval now, grace = { SRV_CLOSE_GRACE, 0 };

	if (s->dead || s->closing)
		return;
	s->closing = 1;
	s->sleeping = 0;
	s->why = why;
	bufferevent_disable(s->bev, EV_READ);
	out_flush(s);
	if (s->dead)
		return;
	/* Under TLS nothing goes out after the peer's EOF (close_notify or
	 * not: the filter stops writing), so a reply still waiting would
	 * only hold the session for the grace. */
	if (out_pending(s) == 0 || (s->eof && srv_tls_active(s))) {
		written_out(s);
		return;
	}
	if (grace.tv_sec > (time_t)timeout_sec(s))
		grace.tv_sec = (time_t)timeout_sec(s);
	event_base_gettimeofday_cached(bufferevent_get_base(s->bev), &now);
	evutil_timeradd(&now, &grace, &s->close_by);
	bufferevent_enable(s->bev, EV_WRITE);
	arm_timer(s, (unsigned)grace.tv_sec);
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct srv_session *s = arg;

	(void)fd;
	(void)what;
	if (s->dead)
		return;
	if (s->lingering) {
		kill_session(s, s->why);
		return;
	}
	if (s->closing) {	/* still flushing, or the peer does not read */
		close_check(s);
		return;
	}
	if (s->sleeping) {	/* the error sleep is over */
		s->sleeping = 0;
		if (!s->paused)
			arm_wait(s);
		poke(s);
		return;
	}
	if (s->lim->hostname != NULL)
		srv_reply(s, 421, "4.4.2", "%s Error: timeout exceeded",
		    s->lim->hostname);
	else
		srv_reply_id(s, RPL_TIMEOUT);
	begin_close(s, SRV_CLOSE_TIMEOUT);
}

/* ---------------- bufferevent callbacks ---------------- */

static void
read_cb(struct bufferevent *bev, void *arg)
{
	struct srv_session *s = arg;

	if (s->lingering) {
		evbuffer_drain(bufferevent_get_input(bev),
		    evbuffer_get_length(bufferevent_get_input(bev)));
		return;
	}
	process(s);
}

static void
write_cb(struct bufferevent *bev, void *arg)
{
	struct srv_session *s = arg;

	if (s->dead)
		return;
	if (direct(s) && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		bufferevent_disable(bev, EV_WRITE);	/* the next reply writes itself */
	if (s->closing) {
		close_check(s);
		return;
	}
	if (s->want_write) {
		s->want_write = 0;
		process(s);
	}
}

static void
event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct srv_session *s = arg;

	(void)bev;
	if (s->dead)
		return;
	if (s->lingering) {	/* EOF or reset: the peer is gone */
		kill_session(s, s->why);
		return;
	}
	if (what & BEV_EVENT_CONNECTED) {	/* TLS handshake done */
		s->tls = 1;
		if (s->ops->on_tls != NULL)
			s->ops->on_tls(s, 1);
		return;
	}
	if (what & BEV_EVENT_ERROR) {
		if (!s->tls && srv_tls_active(s) && s->ops->on_tls != NULL)
			s->ops->on_tls(s, 0);
		kill_session(s, SRV_CLOSE_ERROR);
		return;
	}
	if (what & BEV_EVENT_EOF) {
		s->eof = 1;
		if (s->closing)
			kill_session(s, s->why);
		else
			process(s);
	}
}

static void
setup_bev(struct srv_session *s)
{
	struct bufferevent *under = bufferevent_get_underlying(s->bev);

	bufferevent_setcb(s->bev, read_cb, write_cb, event_cb, s);
	bufferevent_setwatermark(s->bev, EV_READ, 0, input_max(s));
	bufferevent_setwatermark(s->bev, EV_WRITE, 0, 0);
	/* A TLS filter encrypts our replies into the socket bufferevent
	 * below it at once: without a cap there, a peer that pipelines
	 * and never reads grew that buffer without bound, ours staying
	 * empty under output_max. With it the filter keeps the rest in
	 * ours, where process() sees it and stops reading commands. */
	if (under != NULL)
		bufferevent_setwatermark(under, EV_WRITE, 0,
		    LIM(s, output_max, SRV_IO_MAX_DEF));
	bufferevent_enable(s->bev, direct(s) ? EV_READ : EV_READ | EV_WRITE);
}

struct srv_session *
srv_session_new(struct bufferevent *bev, const struct srv_cmd *table,
    const struct srv_limits *lim, const struct srv_ops *ops, void *udata)
{
	struct srv_session *s = xcalloc(1, sizeof(*s));
	struct event_base *base = bufferevent_get_base(bev);

	s->bev = bev;
	s->table = table;
	s->ops = ops;
	s->udata = udata;
	s->lim = lim;
	smtp_line_init(&s->lr, line_max(s));
	if ((s->timer = evtimer_new(base, timer_cb, s)) == NULL)
		fatal("srv_session_new: out of memory");
	setup_bev(s);
	arm_timer(s, timeout_sec(s));
	return s;
}

/* ---------------- accessors ---------------- */

void *srv_udata(const struct srv_session *s) { return s->udata; }
void srv_set_udata(struct srv_session *s, void *u) { s->udata = u; }
struct bufferevent *srv_bev(const struct srv_session *s) { return s->bev; }
unsigned srv_state(const struct srv_session *s) { return s->state; }
unsigned srv_line_flags(const struct srv_session *s) { return s->line_flags; }
unsigned srv_errors(const struct srv_session *s) { return s->errors; }
const struct srv_cmd *srv_command(const struct srv_session *s) { return s->cur; }
unsigned srv_data_flags(const struct srv_session *s) { return s->dec.flags; }
int srv_paused(const struct srv_session *s) { return s->paused; }

void
srv_set_state(struct srv_session *s, unsigned state)
{
	if (state > 31)
		fatal("srv_set_state: state %u out of range", state);
	s->state = state;
}

size_t
srv_input_pending(const struct srv_session *s)
{
	return evbuffer_get_length(bufferevent_get_input(s->bev));
}

int
srv_tls_active(const struct srv_session *s)
{
	return bufferevent_openssl_get_ssl(s->bev) != NULL;
}

/* ---------------- replies and errors ---------------- */

void
srv_vreply(struct srv_session *s, int code, const char *esc, const char *fmt,
    va_list ap)
{
	if (s->dead)
		return;
	smtp_reply_vfmt(bufferevent_get_output(s->bev), code, esc, fmt, ap);
	out_added(s);
}

void
srv_reply(struct srv_session *s, int code, const char *esc, const char *fmt,
    ...)
{
	va_list ap;

	va_start(ap, fmt);
	srv_vreply(s, code, esc, fmt, ap);
	va_end(ap);
}

void
srv_reply_line(struct srv_session *s, const char *line)
{
	char esc[SMTP_ESC_MAX + 1];
	const char *text;
	int code;

	if (smtp_reply_split(line, &code, esc, &text) < 0)
		srv_reply(s, 451, "4.3.0", "Error: %s", line);
	else
		srv_reply(s, code, esc[0] ? esc : NULL, "%s", text);
}

void
srv_reply_id(struct srv_session *s, enum smtp_reply_id id)
{
	if (s->dead)
		return;
	smtp_reply_id(bufferevent_get_output(s->bev), id);
	out_added(s);
}

int
srv_error(struct srv_session *s)
{
	if (s->dead || s->closing)
		return 1;
	if (++s->errors < LIM(s, hard_error_limit, SRV_ERRORS_DEF)) {
		if (s->lim->error_sleep_ms > 0 && s->lim->soft_error_limit > 0 &&
		    s->errors > s->lim->soft_error_limit) {
			/* no command until the timer says so (tarpit) */
			s->sleeping = 1;
			arm_timer_ms(s, s->lim->error_sleep_ms);
		}
		return 0;
	}
	if (s->lim->hostname != NULL)
		srv_reply(s, 421, "4.7.0", "%s Error: too many errors",
		    s->lim->hostname);
	else
		srv_reply_id(s, RPL_TOO_MANY_ERRORS);
	begin_close(s, SRV_CLOSE_ERRORS);
	return 1;
}

void
srv_errors_forgive(struct srv_session *s)
{
	s->errors = 0;
}

/* ---------------- control from the daemon ---------------- */

void
srv_pause(struct srv_session *s)
{
	if (!s->paused && in_request(s))
		s->paused_at = mono_us();	/* our wait is not the client's */
	s->paused = 1;
	if (!s->closing && !s->sleeping)
		evtimer_del(s->timer);
}

void
srv_resume(struct srv_session *s)
{
	if (!s->paused || s->dead)
		return;
	s->paused = 0;
	if (s->paused_at != 0) {
		s->req_paused += mono_us() - s->paused_at;
		s->paused_at = 0;
	}
	if (!s->closing && !s->sleeping)
		arm_wait(s);
	poke(s);
}

void
srv_close_after_flush(struct srv_session *s)
{
	begin_close(s, SRV_CLOSE_QUIT);
}

void
srv_close(struct srv_session *s)
{
	kill_session(s, SRV_CLOSE_LOCAL);
}

void
srv_data_start(struct srv_session *s, uint64_t max_size)
{
	unsigned mode = s->lim->flags & SRV_F_DATA_NORMALIZE ?
	    SMTP_DATA_NORMALIZE : 0;

	smtp_data_dec_init(&s->dec, mode, max_size);
	s->mode = M_DATA;
	request_begin(s);
	poke(s);
}

void
srv_bdat_start(struct srv_session *s, uint64_t size, unsigned flags)
{
	s->bdat_left = size;
	s->bdat_flags = flags;
	s->mode = M_BDAT;
	request_begin(s);
	poke(s);
}

int
srv_starttls(struct srv_session *s, SSL *ssl)
{
	struct bufferevent *nbev;

	/* Pipelined plaintext after STARTTLS is never executed. */
	evbuffer_drain(bufferevent_get_input(s->bev), srv_input_pending(s));
	/* The 220 goes out in plaintext first; from now on the TLS filter
	 * writes through this bufferevent the usual way. */
	out_flush(s);
	if (s->dead) {
		SSL_free(ssl);
		return -1;
	}
	bufferevent_enable(s->bev, EV_WRITE);
	nbev = bufferevent_openssl_filter_new(bufferevent_get_base(s->bev),
	    s->bev, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	if (nbev == NULL) {
		SSL_free(ssl);
		kill_session(s, SRV_CLOSE_ERROR);
		return -1;
	}
	/* Many clients drop TCP without close_notify: an EOF, not an error. */
	bufferevent_openssl_set_allow_dirty_shutdown(nbev, 1);
	s->bev = nbev;
	s->tls = 0;		/* until the handshake reports */
	s->mode = M_CMD;
	smtp_line_init(&s->lr, line_max(s));
	setup_bev(s);
	return 0;
}

/* ---------------- input processing ---------------- */

static const struct srv_cmd *
cmd_lookup(const struct srv_cmd *t, const char *verb)
{
	for (; t->verb != NULL; t++)
		if (strcasecmp(t->verb, verb) == 0)
			return t;
	return NULL;
}

static void
unknown(struct srv_session *s, char *verb, char *arg)
{
	if (s->ops->on_unknown == NULL || !s->ops->on_unknown(s, verb, arg))
		srv_reply_id(s, RPL_UNKNOWN_CMD);
	srv_error(s);
}

static void
dispatch(struct srv_session *s, char *line)
{
	const struct srv_cmd *c;
	char *verb, *arg;

	if (smtp_cmd_split(line, &verb, &arg) < 0) {
		unknown(s, line, line + strlen(line));
		return;
	}
	if ((c = cmd_lookup(s->table, verb)) == NULL) {
		unknown(s, verb, arg);
		return;
	}
	if (c->states != 0 && !(c->states & SRV_STATE(s->state))) {
		if (s->ops->on_bad_state != NULL)
			s->ops->on_bad_state(s, c);
		else
			srv_reply_id(s, RPL_BAD_SEQUENCE);
		srv_error(s);
		return;
	}
	if (((c->args & SRV_ARG_NONE) && *arg != '\0') ||
	    ((c->args & SRV_ARG_NEED) && *arg == '\0')) {
		srv_reply_id(s, RPL_SYNTAX);
		srv_error(s);
		return;
	}
	s->cur = c;
	c->fn(s, arg);
	s->cur = NULL;
}

/* A line refused before dispatch: the daemon's text or the table's. */
static void
bad_line(struct srv_session *s, enum smtp_reply_id why)
{
	if (s->ops->on_bad_line != NULL)
		s->ops->on_bad_line(s, why);
	else
		srv_reply_id(s, why);
	srv_error(s);
}

/* One command line; 1 when something was done, 0 when input is short. */
static int
step_cmd(struct srv_session *s)
{
	char line[SRV_LINE_HARD_MAX];
	size_t len;
	unsigned f;

	switch (smtp_line_read(&s->lr, bufferevent_get_input(s->bev), line,
	    &len, &f)) {
	case SMTP_LINE_MORE:
		return 0;
	case SMTP_LINE_TOO_LONG:
		bad_line(s, RPL_LINE_TOO_LONG);
		return 1;
	case SMTP_LINE_OK:
		break;
	}
	s->line_flags = f;
	if (s->ops->on_line != NULL && s->ops->on_line(s, line, len))
		return 1;
	if (f & SMTP_LINE_F_NUL)
		bad_line(s, RPL_NUL);
	else if ((f & SMTP_LINE_F_BARE_LF) &&
	    (s->lim->flags & SRV_F_REJECT_BARE_LF))
		bad_line(s, RPL_BARE_LF);
	else
		dispatch(s, line);
	return 1;
}

static void
data_sink(void *arg, const char *p, size_t n)
{
	struct srv_session *s = arg;

	if (!s->dead && s->ops->on_data != NULL)
		s->ops->on_data(s, p, n);
}

static int
step_data(struct srv_session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	size_t before = evbuffer_get_length(in);

	int done = smtp_data_dec_evbuffer(&s->dec, in, SRV_DATA_PIECE, data_sink, s);

	s->req_bytes += before - evbuffer_get_length(in);
	if (!done) {
		s->need_input = evbuffer_get_length(in) == before;
		return !s->need_input;
	}
	s->mode = M_CMD;
	if (!s->dead)
		s->ops->on_data_end(s, s->dec.flags);
	return 1;
}

static int
step_bdat(struct srv_session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	unsigned flags = SRV_END_BDAT;
	size_t took = 0;

	if (s->bdat_left > 0)
		took = smtp_bdat_take(&s->bdat_left, in,
		    s->bdat_flags & SRV_BDAT_DISCARD ? NULL : data_sink, s);
	s->req_bytes += took;
	if (s->bdat_left > 0) {
		s->need_input = took == 0;
		return took > 0;
	}
	if (s->bdat_flags & SRV_BDAT_LAST)
		flags |= SRV_END_LAST;
	if (s->bdat_flags & SRV_BDAT_DISCARD)
		flags |= SRV_END_DISCARDED;
	s->mode = M_CMD;
	if (!s->dead)
		s->ops->on_data_end(s, flags);
	return 1;
}

/* One step in the current mode; 1 when progress was made. */
static int
step(struct srv_session *s, unsigned *ncmd)
{
	switch (s->mode) {
	case M_DATA:
		return step_data(s);
	case M_BDAT:
		return step_bdat(s);
	default:
		break;
	}
	if (*ncmd >= LIM(s, pipeline_max, SRV_PIPELINE_DEF) && srv_input_pending(s) > 0) {
		kick(s);	/* fairness: yield */
		return 0;
	}
	if (!step_cmd(s)) {
		s->need_input = 1;
		return 0;
	}
	(*ncmd)++;
	return 1;
}

static void
process(struct srv_session *s)
{
	unsigned ncmd = 0;
	int progress = 0;

	if (s->dead || s->busy)
		return;
	s->busy = 1;
	s->need_input = 0;
	while (!s->dead && !s->paused && !s->closing && !s->sleeping) {
		if (evbuffer_get_length(bufferevent_get_output(s->bev)) >
		    LIM(s, output_max, SRV_IO_MAX_DEF)) {
			s->want_write = 1;	/* the peer does not read */
			break;
		}
		if (!step(s, &ncmd))
			break;
		progress = 1;
	}
	s->busy = 0;
	if (s->dead) {
		finish(s);
		return;
	}
	if (s->eof && s->need_input && !s->paused && !s->closing)
		begin_close(s, SRV_CLOSE_EOF);
	else if (progress && !s->paused && !s->closing && !s->sleeping)
		arm_wait(s);
}
