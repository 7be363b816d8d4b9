/*
 * The control socket ($run_directory/control) for `hermod` and mailq: a
 * line protocol, one command per line, every answer starting with "+OK"
 * or "-ERR" and, for commands that list things, data lines ended by a
 * line holding a single "." (queued(8) documents it). Only root and the
 * account queued runs as (uid or gid, checked with SO_PEERCRED) may use
 * it; the socket itself is mode 0666 so others get a clear refusal.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "event.h"
#include "log.h"
#include "queued.h"
#include "sched_int.h"

#define CONTROL_LINE_MAX	1024
#define CONTROL_IDLE		300	/* seconds */
#define CONTROL_OUT_HIGH	(1024 * 1024)	/* answers unread: run no more */

static struct listener *control_listener;

static const char *const state_names[] = { "pending", "sent", "failed" };

/* Tabs and line ends would break the fields. */
static void
put_field(struct evbuffer *out, const char *s)
{
	for (; s != NULL && *s != '\0'; s++)
		evbuffer_add(out, (unsigned char)*s < 32 ? "?" : s, 1);
}

static const char *
msg_status(const struct msg *m)
{
	if (m->hold)
		return "hold";
	if (m->fd >= 0 || m->attempts_out > 0 || m->waiting)
		return "active";
	return m->tries > 0 ? "deferred" : "queued";
}

static void
list_one(struct msg *m, void *arg)
{
	struct evbuffer *out = arg;

	evbuffer_add_printf(out, "M\t%s\t%lld\t%lld\t%s\t", m->id, (long long)m->size,
	    (long long)m->arrival, msg_status(m));
	put_field(out, m->sender);
	evbuffer_add(out, "\n", 1);
	for (int i = 0; i < m->nleaf; i++) {
		struct leaf *l = &m->leaves[i];

		evbuffer_add(out, "R\t", 2);
		put_field(out, l->addr);
		evbuffer_add_printf(out, "\t%s\t%s\t", state_names[l->state],
		    l->dsn[0] ? l->dsn : "-");
		put_field(out, l->reason);
		evbuffer_add(out, "\n", 1);
	}
}

static void
cmd_list(struct evbuffer *out, const char *arg)
{
	(void)arg;
	evbuffer_add_printf(out, "+OK %zu messages\n", sched_count());
	sched_foreach(list_one, out);
	evbuffer_add(out, ".\n", 2);
}

/* One chunk of the message as LF lines, dot-stuffed, a line at a time
 * (byte by byte, a 50 MB message held the loop for seconds); *bol: the
 * chunk starts a line. */
static void
add_lines(struct evbuffer *out, const char *p, size_t n, int *bol)
{
	size_t i = 0;

	while (i < n) {
		const char *nl = memchr(p + i, '\n', n - i);
		size_t end = nl != NULL ? (size_t)(nl - p) : n, seg = end;

		if (*bol && p[i] == '.')
			evbuffer_add(out, ".", 1);
		if (nl != NULL && end > i && p[end - 1] == '\r')
			seg--;
		evbuffer_add(out, p + i, seg - i);
		if (nl != NULL)
			evbuffer_add(out, "\n", 1);
		*bol = nl != NULL;
		i = nl != NULL ? end + 1 : n;
	}
}

/* The message text, LF line ends, dot-stuffed for the "." terminator. */
static int
add_message(struct evbuffer *out, struct msg *m)
{
	int fd = qf_open(spool_fd, m->path, O_RDONLY | O_NONBLOCK);
	off_t off = m->data_off, end = m->data_off + m->size;
	char chunk[65536];
	int bol = 1;

	if (fd < 0)
		return -1;
	while (off < end) {
		ssize_t n = pread(fd, chunk, (size_t)(end - off) < sizeof(chunk) ?
		    (size_t)(end - off) : sizeof(chunk), off);

		if (n <= 0)
			break;
		if (n > 1 && chunk[n - 1] == '\r' && off + n < end)
			n--;	/* a CRLF across two chunks: the CR goes with the next */
		add_lines(out, chunk, (size_t)n, &bol);
		off += n;
	}
	close(fd);
	if (!bol)
		evbuffer_add(out, "\n", 1);
	return 0;
}

static void
cmd_show(struct evbuffer *out, const char *arg)
{
	struct msg *m = sched_find(arg);

	if (m == NULL) {
		evbuffer_add_printf(out, "-ERR no such message: %s\n", arg);
		return;
	}
	evbuffer_add_printf(out, "+OK %s\n", m->id);
	list_one(m, out);
	evbuffer_add(out, "\n", 1);
	add_message(out, m);
	evbuffer_add(out, ".\n", 2);
}

struct each_ctx {
	int (*fn)(struct msg *m);
	int n;
};

static void
each_one(struct msg *m, void *arg)
{
	struct each_ctx *c = arg;

	c->n += c->fn(m);
}

/* ID or ALL (or nothing, where allowed) -> fn on each; +OK N or -ERR. */
static void
for_ids(struct evbuffer *out, const char *arg, int (*fn)(struct msg *m), int empty_all)
{
	struct each_ctx c = { fn, 0 };
	struct msg *m;

	if (strcasecmp(arg, "ALL") == 0 || (empty_all && arg[0] == '\0'))
		sched_foreach(each_one, &c);
	else if ((m = sched_find(arg)) != NULL)
		c.n = fn(m);
	else {
		evbuffer_add_printf(out, "-ERR no such message: %s\n", arg[0] ? arg : "(none)");
		return;
	}
	evbuffer_add_printf(out, "+OK %d messages\n", c.n);
}

static int do_hold(struct msg *m) { return !m->hold && sched_hold(m, 1) == 0; }
static int do_release(struct msg *m) { return m->hold && sched_hold(m, 0) == 0; }
static int do_delete(struct msg *m) { sched_delete(m); return 1; }
static int do_flush(struct msg *m) { sched_flush(m); return 1; }

static void cmd_hold(struct evbuffer *o, const char *a) { for_ids(o, a, do_hold, 0); }
static void cmd_release(struct evbuffer *o, const char *a) { for_ids(o, a, do_release, 0); }
static void cmd_delete(struct evbuffer *o, const char *a) { for_ids(o, a, do_delete, 0); }

static void
cmd_flush(struct evbuffer *out, const char *arg)
{
	if (arg[0] == '\0' || strcasecmp(arg, "ALL") == 0) {
		sched_flush(NULL);
		evbuffer_add_printf(out, "+OK %zu messages\n", sched_count());
	} else
		for_ids(out, arg, do_flush, 0);
}

static void
cmd_stats(struct evbuffer *out, const char *arg)
{
	(void)arg;
	evbuffer_add_printf(out, "+OK\nmessages %zu\ncommit_passes %llu\ncommit_files %llu\n"
	    "fsyncs %llu\nsyncfs %llu\npool_syncfs %llu\ndir_fsyncs %llu\nattempts %llu\n"
	    "delivered %llu\n"
	    "bounced %llu\ndeferred %llu\npostponed %llu\nunparked %llu\nsched_ops %llu\n"
	    "sched_ns_total %.0f\nsched_ns_avg %.0f\n.\n",
	    sched_count(), commit_stats.passes, commit_stats.files, commit_stats.fsyncs,
	    commit_stats.syncfs, commit_stats.pool_syncfs, commit_stats.dir_fsyncs,
	    sched_stats.attempts,
	    sched_stats.delivered, sched_stats.bounced, sched_stats.deferred,
	    sched_stats.postponed, sched_stats.unparked, sched_stats.sched_ops, sched_stats.sched_ns_total, sched_stats.sched_ops ?
	    sched_stats.sched_ns_total / (double)sched_stats.sched_ops : 0.0);
}

static const struct {
	const char *name;
	void (*fn)(struct evbuffer *out, const char *arg);
	int needs_arg;
} commands[] = {
	{ "list", cmd_list, 0 }, { "show", cmd_show, 1 }, { "hold", cmd_hold, 1 },
	{ "release", cmd_release, 1 }, { "delete", cmd_delete, 1 },
	{ "flush", cmd_flush, 0 }, { "stats", cmd_stats, 0 },
};

static void
run_command(struct evbuffer *out, char *line)
{
	char *arg = line + strcspn(line, " ");

	if (*arg != '\0')
		*arg++ = '\0';
	arg += strspn(arg, " ");
	arg[strcspn(arg, " ")] = '\0';
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcasecmp(line, commands[i].name) == 0) {
			if (commands[i].needs_arg && arg[0] == '\0')
				evbuffer_add_printf(out, "-ERR %s needs an id or ALL\n", line);
			else
				commands[i].fn(out, arg);
			return;
		}
	evbuffer_add_printf(out, "-ERR unknown command (list, show ID, hold ID|ALL, "
	    "release ID|ALL, delete ID|ALL, flush [ID], stats, quit)\n");
}

static void
on_written(struct bufferevent *bev, void *arg)
{
	(void)arg;
	bufferevent_free(bev);
}

static void on_read(struct bufferevent *bev, void *arg);
static void on_event(struct bufferevent *bev, short what, void *arg);

/* The answers so far went out (below the low-water mark): go on with
 * the commands the client pipelined meanwhile. */
static void
on_drained(struct bufferevent *bev, void *arg)
{
	bufferevent_enable(bev, EV_READ);
	on_read(bev, arg);
}

/*
 * One command per line. A client may pipeline many, but the answers are
 * built in memory: past CONTROL_OUT_HIGH bytes not yet read by the client
 * (a listing of a big queue, a shown message), nothing more is run until
 * it has read them down, so "list" sent a thousand times without reading
 * costs one listing, not a thousand (the idle timeout ends a client that
 * never reads).
 */
static void
on_read(struct bufferevent *bev, void *arg)
{
	struct evbuffer *in = bufferevent_get_input(bev), *out = bufferevent_get_output(bev);
	char *line;
	size_t len;

	(void)arg;
	while (evbuffer_get_length(out) < CONTROL_OUT_HIGH &&
	    (line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF)) != NULL) {
		int quit = strcasecmp(line, "quit") == 0;

		if (!quit)
			run_command(out, line);
		free(line);
		if (quit) {
			bufferevent_disable(bev, EV_READ);
			bufferevent_setcb(bev, NULL, on_written, NULL, NULL);
			if (evbuffer_get_length(out) == 0)
				bufferevent_free(bev);
			return;
		}
	}
	if (evbuffer_get_length(out) >= CONTROL_OUT_HIGH) {
		bufferevent_disable(bev, EV_READ);	/* on_drained() resumes */
		bufferevent_setcb(bev, on_read, on_drained, on_event, NULL);
		return;
	}
	bufferevent_setcb(bev, on_read, NULL, on_event, NULL);
	if (evbuffer_get_length(in) > CONTROL_LINE_MAX) {
		/* no such command is that long: say so, then close */
		evbuffer_add_printf(out, "-ERR command line too long (%d bytes at most)\n",
		    CONTROL_LINE_MAX);
		bufferevent_disable(bev, EV_READ);
		bufferevent_setcb(bev, NULL, on_written, on_event, NULL);
	}
}

static void
on_event(struct bufferevent *bev, short what, void *arg)
{
	(void)what, (void)arg;
	bufferevent_free(bev);
}

static void
on_accept(evutil_socket_t fd, struct sockaddr *sa, socklen_t len, void *arg)
{
	struct bufferevent *bev;
	struct timeval idle = { CONTROL_IDLE, 0 };
	uid_t uid;
	gid_t gid;

	(void)sa, (void)len, (void)arg;
	if (peer_cred(fd, &uid, &gid, NULL) < 0 ||
	    (uid != 0 && uid != geteuid() && gid != getegid())) {
		static const char no[] = "-ERR permission denied\n";

		if (write(fd, no, sizeof(no) - 1) < 0)
			log_debug("control: %s", strerror(errno));
		log_warn("control: refused uid %ld", (long)uid);
		close(fd);
		return;
	}
	bev = bufferevent_socket_new(queued_base, fd, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_priority_set(bev, 0);
	bufferevent_setcb(bev, on_read, NULL, on_event, NULL);
	bufferevent_set_timeouts(bev, &idle, &idle);
	bufferevent_enable(bev, EV_READ);
}

int
control_init(struct event_base *base, int fd)
{
	char err[256];

	control_listener = listener_from_fd(base, fd, "control", on_accept, NULL,
	    err, sizeof(err));
	if (control_listener == NULL)
		log_crit("control socket: %s", err);
	return control_listener != NULL ? 0 : -1;
}

void
control_stop(void)
{
	if (control_listener != NULL)
		listener_disable(control_listener);
}
