/*
 * lmtpd: LMTP delivery into Maildir and mbox (start-up, event loop,
 * signals). See lmtpd(8).
 *
 * Processes: this one runs the event loop and the LMTP sessions
 * (lmtp_session.c) and, started as root, drops to conf `user` after
 * binding; the delivery master (deliver_master.c), forked first, keeps
 * the start-up privileges to fork each delivery as the mailbox owner.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "daemon.h"
#include "deliver.h"
#include "event.h"
#include "lmtp_session.h"
#include "log.h"
#include "xalloc.h"

#define MAX_LISTENERS 16

struct lmtpd {
	struct event_base *base;
	struct listener *listeners[MAX_LISTENERS];
	int nlisteners;
	int fds[MAX_LISTENERS];
	char *names[MAX_LISTENERS];
	int nfds;
	struct event *drain_timer;
	int stopping;
	time_t drained_at;	/* stopping: deliveries all reported then */
};

static void
bind_one(struct lmtpd *d, const char *spec, mode_t mode, uid_t uid, gid_t gid)
{
	char err[256];
	int fd;

	if (d->nfds == MAX_LISTENERS)
		fatal("lmtpd: more than %d listeners", MAX_LISTENERS);
	if ((fd = listener_bind(spec, LISTEN_BACKLOG_DEFAULT, mode, err, sizeof(err))) < 0)
		fatal("lmtpd: %s: %s", spec, err);
	/* queued runs as `user`: it must reach our socket once we are root */
	if (strncmp(spec, "unix:", 5) == 0 && geteuid() == 0 &&
	    chown(spec + 5, uid, gid) < 0)
		fatal_sys("lmtpd: chown %s", spec + 5);
	d->fds[d->nfds] = fd;
	d->names[d->nfds++] = xstrdup(spec);
}

static void
bind_all(struct lmtpd *d)
{
	uid_t uid;
	gid_t gid;

	if (daemon_user(&uid, &gid) < 0)
		fatal("lmtpd: no such user %s", conf_str(C_user));
	char *own = xasprintf("unix:%s/lmtp", conf_str(C_run_directory));
	bind_one(d, own, 0660, uid, gid);
	free(own);
	for (char *const *l = conf_list(C_lmtp_listen); *l != NULL; l++)
		bind_one(d, *l, 0666, uid, gid);
}

/* The private directory of the sessions' spooled messages. */
static void
make_tmpdir(void)
{
	uid_t uid;
	gid_t gid;
	char *dir = lmtp_tmpdir();

	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		fatal_sys("lmtpd: mkdir %s", dir);
	if (geteuid() == 0 && daemon_user(&uid, &gid) == 0 && chown(dir, uid, gid) < 0)
		fatal_sys("lmtpd: chown %s", dir);
	free(dir);
}

static void
on_accept(evutil_socket_t fd, struct sockaddr *sa, socklen_t len, void *arg)
{
	struct lmtpd *d = arg;

	(void)sa;
	(void)len;
	lmtp_session_new(d->base, fd);
}

static void
listen_all(struct lmtpd *d)
{
	char err[256];

	for (int i = 0; i < d->nfds; i++) {
		struct listener *l = listener_from_fd(d->base, d->fds[i], d->names[i],
		    on_accept, d, err, sizeof(err));
		if (l == NULL)
			fatal("lmtpd: %s: %s", d->names[i], err);
		d->listeners[d->nlisteners++] = l;
	}
}

#define DRAIN_FLUSH_GRACE	10	/* seconds for the last replies to go out */

/* After SIGTERM: exit once the deliveries in progress have reported and
 * their replies are written (a client that does not read gets
 * DRAIN_FLUSH_GRACE seconds). */
static void
on_drain(evutil_socket_t fd, short what, void *arg)
{
	struct lmtpd *d = arg;
	struct timeval tv = { 0, 100000 };

	(void)fd;
	(void)what;
	if (deliver_pending() > 0 || lmtp_sessions_delivering() > 0)
		d->drained_at = 0;
	else if (d->drained_at == 0)
		d->drained_at = time(NULL);
	if (d->drained_at == 0 || (lmtp_sessions_unflushed() > 0 &&
	    time(NULL) - d->drained_at < DRAIN_FLUSH_GRACE)) {
		evtimer_add(d->drain_timer, &tv);
		return;
	}
	event_base_loopexit(d->base, NULL);
}

static void
on_term(void *arg)
{
	struct lmtpd *d = arg;

	if (d->stopping)
		return;
	d->stopping = 1;
	log_info("stopping: %u deliveries in progress", deliver_pending());
	for (int i = 0; i < d->nlisteners; i++)
		listener_disable(d->listeners[i]);
	d->drain_timer = evtimer_new(d->base, on_drain, d);
	on_drain(-1, 0, d);
}

static void
on_hup(void *arg)
{
	(void)arg;
	if (daemon_reload_config() == 0) {
		deliver_reload();
		log_info("configuration reloaded");
	}
}

int
main(int argc, char **argv)
{
	struct daemon_opts opts;
	struct lmtpd d;

	memset(&opts, 0, sizeof(opts));
	memset(&d, 0, sizeof(d));
	daemon_init(argc, argv, "lmtpd", &opts);
	daemon_detach();
	/* first, so that neither listeners nor the pid file reach the
	 * delivery processes */
	int msock = deliver_master_start();
	if (daemon_pidfile("lmtpd") < 0)
		exit(1);
	make_tmpdir();
	bind_all(&d);
	int as_root = geteuid() == 0;
	daemon_drop_privileges();
	if ((d.base = event_base_new()) == NULL)
		fatal("lmtpd: event_base_new failed");
	deliver_init(d.base, msock);
	listen_all(&d);
	daemon_signals(d.base, on_term, on_hup, &d);
	log_info("started: %d listeners, deliveries by %s", d.nlisteners,
	    as_root ? "mailbox owner" : "this user");
	event_base_dispatch(d.base);
	for (int i = 0; i < d.nlisteners; i++)
		listener_free(d.listeners[i]);
	for (int i = 0; i < d.nfds; i++)
		free(d.names[i]);
	lmtp_sessions_close_all();
	deliver_shutdown();
	if (d.drain_timer != NULL)
		event_free(d.drain_timer);
	daemon_signals_free();
	event_base_free(d.base);
	daemon_pidfile_remove();
	log_info("stopped");
	return 0;
}
