/*
 * queued: start-up, the event loop and signals. The order matters: as
 * root the sockets are bound and the spool created before the privilege
 * drop; the spool is scanned before the submission socket takes its
 * first message, and read back in slices while new mail flows
 * (recover.c); SIGTERM stops the listeners and starts no new delivery,
 * lets every submission that is writing or waiting for its group commit
 * finish, and every local delivery in flight (lmtpd answers in
 * milliseconds; its result not heard would be a duplicate after the
 * restart), then exits. A remote delivery still in flight is tried again
 * after the restart.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "alias_expand.h"
#include "conf.h"
#include "daemon.h"
#include "dns.h"
#include "event.h"
#include "local_user.h"
#include "log.h"
#include "queued.h"
#include "xalloc.h"

#define STOP_WAIT_MAX	30	/* seconds SIGTERM waits for writes and local deliveries */

struct event_base *queued_base;
int queued_stopping;

static struct event *stop_ev;
static int stop_ticks, queued_exit;

const char *
queued_hostname(void)
{
	return conf_str(C_myhostname);
}

/*
 * The maildrop (pickup.c): mode 1733, so that sendmail run by any user
 * can leave a file there while queued is down, but not list the others
 * nor remove them. Users reach it through the spool, which is therefore
 * searchable (o+x), not readable.
 */
static void
make_maildrop(const char *dir, uid_t uid, gid_t gid)
{
	char *md = xasprintf("%s/maildrop", dir);
	struct stat st;

	if (mkdir(md, 01733) < 0 && errno != EEXIST)
		fatal_sys("mkdir %s", md);
	if (lstat(md, &st) < 0 || !S_ISDIR(st.st_mode))
		fatal("%s: not a directory", md);
	if ((st.st_uid != uid && chown(md, uid, gid) < 0) ||
	    ((st.st_mode & 07777) != 01733 && chmod(md, 01733) < 0))
		fatal_sys("%s: cannot make it mode 1733, owner uid %u", md, (unsigned)uid);
	if (stat(dir, &st) == 0 && (st.st_mode & 0011) != 0011 &&
	    chmod(dir, (st.st_mode & 07777) | 0011) < 0)
		fatal_sys("chmod %s", dir);
	free(md);
}

/* As root: the spool exists and belongs to the daemon's user. */
static void
make_spool(void)
{
	const char *dir = conf_str(C_queue_directory);
	uid_t uid;
	gid_t gid;

	if (mkdir(dir, 0711) < 0 && errno != EEXIST)
		fatal_sys("mkdir %s", dir);
	if (geteuid() == 0 && daemon_user(&uid, &gid) == 0) {
		struct stat st;

		if (stat(dir, &st) == 0 && st.st_uid != uid && chown(dir, uid, gid) < 0)
			fatal_sys("chown %s", dir);
		make_maildrop(dir, uid, gid);
	} else
		make_maildrop(dir, geteuid(), getegid());
}

static int
bind_socket(const char *name)
{
	char spec[4200], err[256];
	int fd;

	snprintf(spec, sizeof(spec), "unix:%s/%s", conf_str(C_run_directory), name);
	if ((fd = listener_bind(spec, 512, 0666, err, sizeof(err))) < 0)
		fatal("%s", err);
	return fd;
}

static void
stop_tick(evutil_socket_t fd, short what, void *arg)
{
	struct timeval tv = { 0, 100000 };

	(void)fd, (void)what, (void)arg;
	if ((submit_busy() == 0 && !commit_pending() && local_transport.busy == 0 &&
	    !pickup_busy()) ||
	    ++stop_ticks > STOP_WAIT_MAX * 10) {
		log_info("stopping: %zu messages queued", sched_count());
		queued_exit = 1;
		return;
	}
	evtimer_add(stop_ev, &tv);
}

static void
on_term(void *arg)
{
	(void)arg;
	if (queued_stopping)
		return;
	queued_stopping = 1;
	log_info("SIGTERM: no new submissions; finishing writes in progress");
	submit_stop();
	pickup_stop();
	control_stop();
	local_shutdown();
	remote_shutdown();
	stop_ev = evtimer_new(queued_base, stop_tick, NULL);
	stop_tick(-1, 0, NULL);
}

static void
on_hup(void *arg)
{
	(void)arg;
	if (daemon_reload_config() < 0)
		return;
	alias_expand_close();
	local_user_close();
	dns_reload(conf_list(C_dns_servers));	/* and resolv.conf read again */
	sched_reconfigure();
	log_info("configuration and tables reloaded");
}

int
main(int argc, char **argv)
{
	struct daemon_opts opts = { 0 };
	int submit_fd, control_fd;

	daemon_init(argc, argv, "queued", &opts);
	make_spool();
	submit_fd = bind_socket("submit");
	control_fd = bind_socket("control");
	daemon_detach();
	if (daemon_pidfile("queued") < 0)
		exit(1);
	daemon_drop_privileges();
	if ((spool_fd = spool_open(conf_str(C_queue_directory))) < 0)
		fatal_sys("spool %s", conf_str(C_queue_directory));
	if ((queued_base = event_base_new()) == NULL ||
	    event_base_priority_init(queued_base, QUEUED_PRIORITIES) < 0)
		fatal("event_base_new");
	remove_init();
	commit_init(queued_base);	/* watches remove_wake_fd() */
	sched_init(queued_base);
	local_init(queued_base);
	remote_init(queued_base);
	recover_spool(queued_base);
	if (submit_init(queued_base, submit_fd) < 0 ||
	    control_init(queued_base, control_fd) < 0)
		fatal("cannot listen");
	pickup_init(queued_base);
	daemon_signals(queued_base, on_term, on_hup, NULL);
	log_info("started: spool %s, %zu messages queued",
	    conf_str(C_queue_directory), sched_count());
	/* The loop; after each turn what waits for the group commit goes to
	 * the sync thread (commit.c), whose "done" wakes the loop again. */
	while (!queued_exit) {
		if (event_base_loop(queued_base, EVLOOP_ONCE) < 0)
			fatal("event_base_loop");
		commit_run();
	}
	commit_shutdown();
	remove_shutdown();
	daemon_signals_free();
	daemon_pidfile_remove();
	return 0;
}
