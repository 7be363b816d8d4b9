/*
 * smtpd: the ESMTP server. Start-up (options, configuration, binding the
 * listeners as root, then dropping privileges), one libevent loop for
 * every session, SIGHUP (configuration read again: new values apply to
 * new sessions and commands) and SIGTERM (stop accepting, end idle
 * sessions with 421, let running transactions finish, then exit).
 *
 * Listeners: smtp_listen (port 25), submission_listen (587: STARTTLS,
 * then AUTH before MAIL) and smtps_listen (465: implicit TLS, RFC 8314);
 * the last two only with a certificate (smtpd_tls.c), else the log says
 * they are not opened. SIGHUP also reloads the certificate and the name
 * servers.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "conf.h"
#include "daemon.h"
#include "event.h"
#include "log.h"
#include "policy.h"
#include "smtpd.h"
#include "smtpd_tls.h"
#include "xalloc.h"

#define SMTPD_LISTENERS_MAX	64
#define STOP_GRACE_SEC		60	/* longest wait for transactions at stop */

int smtpd_stopping;

static struct event_base *base;
static struct listener *listeners[SMTPD_LISTENERS_MAX];
static int nlisteners;
static struct event *stop_timer;

struct bound {
	int fd;
	enum listen_kind kind;
	char *spec;
};

static void
on_accept(evutil_socket_t fd, struct sockaddr *sa, socklen_t len, void *arg)
{
	const struct bound *b = arg;

	if (smtpd_stopping) {
		close(fd);
		return;
	}
	session_new(base, fd, sa, len, b->kind);
}

/* Bind every spec of one list (as root, before the privilege drop). */
static int
bind_list(enum conf_key k, enum listen_kind kind, struct bound *out, int n)
{
	char *const *list = conf_list(k);
	char err[256];

	for (; list != NULL && *list != NULL; list++) {
		if (n >= SMTPD_LISTENERS_MAX) {
			log_crit("too many listeners (at most %d)", SMTPD_LISTENERS_MAX);
			exit(1);
		}
		out[n].fd = listener_bind(*list, 1024, 0, err, sizeof(err));
		if (out[n].fd < 0) {
			log_crit("cannot listen on %s: %s", *list, err);
			exit(1);
		}
		out[n].kind = kind;
		out[n].spec = xstrdup(*list);
		n++;
	}
	return n;
}

static int
bind_all(struct bound *b)
{
	int n = bind_list(C_smtp_listen, LK_SMTP, b, 0);
	char *const *sub = conf_list(C_submission_listen);
	char *const *tls = conf_list(C_smtps_listen);

	/* Submission means TLS and AUTH: without a certificate there is
	 * nothing a client could safely do there. */
	if (!smtpd_tls_available()) {
		if ((sub && *sub) || (tls && *tls))
			log_warn("submission_listen and smtps_listen need a "
			    "certificate (tls_cert_file, tls_key_file): not opened");
		return n;
	}
	n = bind_list(C_submission_listen, LK_SUBMISSION, b, n);
	return bind_list(C_smtps_listen, LK_SMTPS, b, n);
}

static void
stop_now(evutil_socket_t fd, short ev, void *arg)
{
	(void)fd;
	(void)ev;
	(void)arg;
	log_info("stopping with %d session(s) still open", policy_conn_total());
	event_base_loopexit(base, NULL);
}

void
smtpd_all_gone(void)
{
	event_base_loopexit(base, NULL);
}

static void
on_term(void *arg)
{
	struct session *s, *next;
	struct timeval tv = { STOP_GRACE_SEC, 0 };

	(void)arg;
	if (smtpd_stopping)
		return;
	smtpd_stopping = 1;
	log_info("stopping: no new sessions");
	for (int i = 0; i < nlisteners; i++)
		listener_free(listeners[i]);
	nlisteners = 0;
	for (s = TAILQ_FIRST(&sessions); s != NULL; s = next) {
		next = TAILQ_NEXT(s, entry);
		session_shutdown(s);
	}
	if (TAILQ_EMPTY(&sessions)) {
		event_base_loopexit(base, NULL);
		return;
	}
	stop_timer = evtimer_new(base, stop_now, NULL);
	evtimer_add(stop_timer, &tv);
}

static void
on_hup(void *arg)
{
	(void)arg;
	if (daemon_reload_config() == 0) {
		log_info("configuration reloaded");
		session_lookup_reload();	/* new name servers */
	}
	smtpd_tls_reload();	/* new sessions only; a failure keeps the old */
}

/* Thousands of sessions need thousands of descriptors. */
static void
raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			log_warn("cannot raise the descriptor limit: %s", strerror(errno));
	}
}

static int stdio_mode;

static int
extra_option(int ch, const char *arg, void *unused)
{
	(void)arg;
	(void)unused;
	if (ch != 's')
		return -1;
	stdio_mode = 1;
	return 0;
}

int
main(int argc, char **argv)
{
	struct daemon_opts opts = { .extra_optstring = "s",
	    .extra_option = extra_option, .extra_usage = "[-s]" };
	static struct bound bound[SMTPD_LISTENERS_MAX];
	char err[256];
	int n;

	daemon_init(argc, argv, "smtpd", &opts);
	if (stdio_mode) {	/* sendmail -bs: no listeners, the caller's rights */
		if ((base = event_base_new()) == NULL)
			fatal("event_base_new");
		return smtpd_stdio(base);
	}
	raise_nofile();
	if (smtpd_tls_init() != 0)	/* before the privilege drop: the key */
		exit(1);
	n = bind_all(bound);
	if (n == 0)
		log_warn("no listeners: smtp_listen is empty");
	daemon_detach();
	if (daemon_pidfile("smtpd") != 0)
		exit(1);
	daemon_drop_privileges();
	if ((base = event_base_new()) == NULL)
		fatal("event_base_new");
	for (int i = 0; i < n; i++) {
		listeners[nlisteners] = listener_from_fd(base, bound[i].fd,
		    bound[i].spec, on_accept, &bound[i], err, sizeof(err));
		if (listeners[nlisteners] == NULL) {
			log_crit("cannot listen on %s: %s", bound[i].spec, err);
			exit(1);
		}
		nlisteners++;
	}
	session_lookup_allow();	/* the resolver starts at the first client */
	daemon_signals(base, on_term, on_hup, NULL);
	log_info("started (%d listener%s)", n, n == 1 ? "" : "s");
	event_base_dispatch(base);
	log_info("stopped");
	daemon_pidfile_remove();
	return 0;
}
