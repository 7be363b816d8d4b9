/*
 * The common start-up of smtpd, queued and lmtpd: options, configuration,
 * logging, run directory, pid file, detaching, signals and the privilege
 * drop.
 *
 * Typical order in a daemon's main():
 *
 *   daemon_init(argc, argv, "queued", &opts);  options, config, log
 *   fd = listener_bind(...);                   as root: privileged ports
 *   daemon_detach();                           unless opts.foreground
 *   daemon_pidfile("queued");                  after detach (pid changes)
 *   daemon_drop_privileges();                  root -> conf `user`
 *   base = event_base_new();                   after the fork
 *   listener_from_fd(base, fd, ...);
 *   daemon_signals(base, on_term, on_hup, arg);
 *   event_base_dispatch(base);
 *
 * lmtpd does not drop privileges as a whole: it stays root and each
 * delivery child calls priv_become(owner uid, gid) before touching a
 * mailbox. Everything fatal here is start-up only (broken environment).
 */
#ifndef HERMOD_DAEMON_H
#define HERMOD_DAEMON_H

#include <pthread.h>
#include <sys/types.h>

#include <event2/event.h>

struct daemon_opts {
	/* Filled in by daemon_init from the command line. */
	const char *conf_file;	/* -c FILE (NULL: $HERMOD_CONF or default) */
	int foreground;		/* -f: stay attached, log to stderr */
	int debug;		/* -d (repeatable): log at debug level */

	/* Optional, set by the caller before daemon_init: more getopt
	 * letters (e.g. "x:") and a handler for them, returning -1 for a
	 * usage error. */
	const char *extra_optstring;
	int (*extra_option)(int ch, const char *optarg, void *arg);
	void *extra_arg;
	const char *extra_usage;	/* appended to the usage line */
};

/*
 * Parse `-c FILE -f -o name=value -d` (plus the caller's extra letters),
 * load the configuration (missing default file = defaults, missing -c file
 * = error), apply -o overrides, start logging (conf log_level, -d forces
 * debug; stderr when -f), ignore SIGPIPE, and create run_directory if
 * missing (owned by conf `user` when root). Exits with status 64 on a
 * usage error and 78 on a configuration error. Returns optind: the index
 * of the first non-option argument.
 */
int daemon_init(int argc, char **argv, const char *progname,
    struct daemon_opts *opts);

/* SIGHUP: read the same file again and re-apply the -o overrides and the
 * log level. 0, or -1 (logged; the old configuration stays). */
int daemon_reload_config(void);

/* Fork into the background (double fork, setsid, chdir /, stdio to
 * /dev/null) unless -f was given. */
void daemon_detach(void);

/*
 * Write run_directory/NAME.pid, locked (flock) for the life of the
 * process: a second instance gets -1 with a log line ("already running").
 * Removed by daemon_pidfile_remove() (call at clean exit).
 */
int daemon_pidfile(const char *name);
void daemon_pidfile_remove(void);

/*
 * The uid/gid the daemon runs as: conf `user` when started as root, the
 * current ids otherwise. -1 (logged) if the user does not exist.
 * Use it to chown what root creates for the daemon (spool, sockets).
 */
int daemon_user(uid_t *uid, gid_t *gid);

/*
 * When root: become conf `user` (setgroups to its gid, setresgid,
 * setresuid), verify that root cannot be regained, set
 * PR_SET_NO_NEW_PRIVS. When not root: nothing. fatal() on failure.
 */
void daemon_drop_privileges(void);

/*
 * In a forked child (lmtpd delivery): become uid/gid for good with only
 * `gid` as group (setgroups, setresgid, setresuid), verify, set
 * PR_SET_NO_NEW_PRIVS. 0, or -1 with errno (the child should exit).
 * If the process is not root and already is uid/gid, this succeeds.
 */
int priv_become(uid_t uid, gid_t gid);

/*
 * Standard signals on the base: SIGTERM and SIGINT call on_term, SIGHUP
 * calls on_hup (either may be NULL to ignore the signal), SIGPIPE is
 * ignored. The events live until the base is freed (daemon_signals_free).
 */
void daemon_signals(struct event_base *base, void (*on_term)(void *),
    void (*on_hup)(void *), void *arg);
void daemon_signals_free(void);

/*
 * A helper thread that takes no signal (the loop's handlers stay the only
 * ones): started with every signal blocked. fatal() when it cannot start.
 */
void daemon_thread_start(pthread_t *t, void *(*fn)(void *), void *arg);

#endif
