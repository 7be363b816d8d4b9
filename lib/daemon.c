/*
 * The common start-up of the daemons: options, configuration, logging,
 * run directory, pid file, detach, signals and privilege changes.
 * Everything that fails here fails at start-up, before any peer is heard,
 * so fatal() is the right answer (a broken environment). See daemon.h.
 */
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "daemon.h"
#include "log.h"
#include "xalloc.h"

#define EX_USAGE_ 64
#define EX_CONFIG_ 78
#define MAX_OVERRIDES 64

static struct {
	const char *progname;
	char *conf_path;
	int debug;
	int foreground;
	char *overrides[MAX_OVERRIDES];	/* "name=value" from -o */
	int noverrides;
	int pid_fd;
	char *pid_path;
	struct event *sigs[4];
} d = { .pid_fd = -1 };

static void
usage(const struct daemon_opts *o)
{
	fprintf(stderr, "usage: %s [-df] [-c file] [-o name=value]%s%s\n",
	    d.progname, o->extra_usage ? " " : "",
	    o->extra_usage ? o->extra_usage : "");
	exit(EX_USAGE_);
}

static int
apply_override(const char *nv, FILE *err)
{
	const char *eq = strchr(nv, '=');
	char *name;
	int r;

	if (eq == NULL || eq == nv) {
		if (err != NULL)
			fprintf(err, "-o %s: expected name=value\n", nv);
		return -1;
	}
	name = xstrndup(nv, (size_t)(eq - nv));
	r = conf_set(name, eq + 1, err);
	free(name);
	return r;
}

/* Config file, -o overrides, log level: start-up and SIGHUP alike. */
static int
load_config(FILE *err, int missing_ok)
{
	enum log_level lvl;
	int i;

	if (conf_load(d.conf_path, missing_ok, err) == -1)
		return -1;
	for (i = 0; i < d.noverrides; i++)
		if (apply_override(d.overrides[i], err) == -1)
			return -1;
	if (log_level_parse(conf_str(C_log_level), &lvl) == -1) {
		if (err != NULL)
			fprintf(err, "log_level: bad value '%s'\n",
			    conf_str(C_log_level));
		lvl = LOG_LVL_INFO;
	}
	log_set_level(d.debug ? LOG_LVL_DEBUG : lvl);
	return 0;
}

static void
parse_options(int argc, char **argv, struct daemon_opts *o)
{
	char optstring[64];
	int ch;

	snprintf(optstring, sizeof(optstring), "c:dfo:%s",
	    o->extra_optstring ? o->extra_optstring : "");
	while ((ch = getopt(argc, argv, optstring)) != -1) {
		switch (ch) {
		case 'c': o->conf_file = optarg; break;
		case 'd': o->debug++; break;
		case 'f': o->foreground = 1; break;
		case 'o':
			if (d.noverrides == MAX_OVERRIDES)
				usage(o);
			d.overrides[d.noverrides++] = xstrdup(optarg);
			break;
		default:
			if (ch == '?' || o->extra_option == NULL ||
			    o->extra_option(ch, optarg, o->extra_arg) == -1)
				usage(o);
		}
	}
}

static void
make_run_directory(void)
{
	const char *dir = conf_str(C_run_directory);
	uid_t uid;
	gid_t gid;

	if (mkdir(dir, 0755) == -1) {
		if (errno != EEXIST)
			fatal_sys("mkdir %s", dir);
		return;
	}
	if (geteuid() == 0 && daemon_user(&uid, &gid) == 0 &&
	    chown(dir, uid, gid) == -1)
		fatal_sys("chown %s", dir);
}

int
daemon_init(int argc, char **argv, const char *progname,
    struct daemon_opts *o)
{
	int missing_ok;

	d.progname = progname;
	parse_options(argc, argv, o);
	d.debug = o->debug;
	d.foreground = o->foreground;
	missing_ok = o->conf_file == NULL && getenv("HERMOD_CONF") == NULL;
	d.conf_path = xstrdup(conf_path(o->conf_file));
	log_init(progname, o->foreground, o->debug ? LOG_LVL_DEBUG :
	    LOG_LVL_INFO);
	if (load_config(stderr, missing_ok) == -1) {
		fprintf(stderr, "%s: configuration error in %s\n", progname,
		    d.conf_path);
		exit(EX_CONFIG_);
	}
	signal(SIGPIPE, SIG_IGN);
	make_run_directory();
	return optind;
}

int
daemon_reload_config(void)
{
	if (load_config(NULL, 0) == -1) {
		log_warn("reload of %s failed; keeping the old configuration",
		    d.conf_path);
		return -1;
	}
	log_info("configuration reloaded from %s", d.conf_path);
	return 0;
}

void
daemon_detach(void)
{
	pid_t pid;
	int fd;

	if (d.foreground)
		return;
	if ((pid = fork()) == -1)
		fatal_sys("fork");
	if (pid != 0)
		_exit(0);
	if (setsid() == -1)
		fatal_sys("setsid");
	/* Second fork: never a session leader, never regains a tty. */
	if ((pid = fork()) == -1)
		fatal_sys("fork");
	if (pid != 0)
		_exit(0);
	if (chdir("/") == -1)
		fatal_sys("chdir /");
	if ((fd = open("/dev/null", O_RDWR)) == -1)
		fatal_sys("/dev/null");
	dup2(fd, 0);
	dup2(fd, 1);
	dup2(fd, 2);
	if (fd > 2)
		close(fd);
}

int
daemon_pidfile(const char *name)
{
	char line[32];
	int fd, n;

	free(d.pid_path);
	d.pid_path = xasprintf("%s/%s.pid", conf_str(C_run_directory), name);
	fd = open(d.pid_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd == -1) {
		log_crit("%s: %s", d.pid_path, strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) == -1) {
		log_crit("%s: locked: %s already running", d.pid_path, name);
		close(fd);
		return -1;
	}
	n = snprintf(line, sizeof(line), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) == -1 || write(fd, line, (size_t)n) != n) {
		log_crit("%s: %s", d.pid_path, strerror(errno));
		close(fd);
		return -1;
	}
	d.pid_fd = fd;
	return 0;
}

void
daemon_pidfile_remove(void)
{
	if (d.pid_fd == -1)
		return;
	unlink(d.pid_path);	/* may fail after the drop: harmless */
	close(d.pid_fd);
	d.pid_fd = -1;
}

int
daemon_user(uid_t *uid, gid_t *gid)
{
	struct passwd *pw;
	const char *name = conf_str(C_user);

	if (geteuid() != 0) {
		*uid = geteuid();
		*gid = getegid();
		return 0;
	}
	/* Start-up only: a blocking passwd lookup is acceptable here. */
	if ((pw = getpwnam(name)) == NULL) {
		log_crit("user %s: no such account", name);
		return -1;
	}
	*uid = pw->pw_uid;
	*gid = pw->pw_gid;
	return 0;
}

/* setgroups, setresgid, setresuid, in that order, then check the drop
 * took and that root cannot come back. */
static int
become(uid_t uid, gid_t gid)
{
	uid_t ru, eu, su;
	gid_t rg, eg, sg;

	if (geteuid() == 0 && setgroups(1, &gid) == -1)
		return -1;
	if (setresgid(gid, gid, gid) == -1 || setresuid(uid, uid, uid) == -1)
		return -1;
	if (getresuid(&ru, &eu, &su) == -1 || getresgid(&rg, &eg, &sg) == -1)
		return -1;
	if (ru != uid || eu != uid || su != uid || rg != gid || eg != gid ||
	    sg != gid) {
		errno = EPERM;
		return -1;
	}
	if (uid != 0 && setuid(0) != -1) {
		errno = EPERM;	/* root came back: the drop did not take */
		return -1;
	}
	return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
}

void
daemon_drop_privileges(void)
{
	uid_t uid;
	gid_t gid;

	if (geteuid() != 0)
		return;
	if (daemon_user(&uid, &gid) == -1)
		fatal("cannot drop privileges: user %s unknown",
		    conf_str(C_user));
	if (uid == 0)
		fatal("user %s is root; refusing to run as root",
		    conf_str(C_user));
	if (become(uid, gid) == -1)
		fatal_sys("cannot drop privileges to %s", conf_str(C_user));
	log_debug("running as %s (uid %ld gid %ld)", conf_str(C_user),
	    (long)uid, (long)gid);
}

int
priv_become(uid_t uid, gid_t gid)
{
	return become(uid, gid);
}

struct sig_cb {
	void (*fn)(void *);
	void *arg;
};

static struct sig_cb sig_term, sig_hup;

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct sig_cb *s = arg;

	(void)sig;
	(void)what;
	if (s->fn != NULL)
		s->fn(s->arg);
}

void
daemon_signals(struct event_base *base, void (*on_term)(void *),
    void (*on_hup)(void *), void *arg)
{
	static const int sigs[] = { SIGTERM, SIGINT, SIGHUP };
	size_t i;

	signal(SIGPIPE, SIG_IGN);
	sig_term = (struct sig_cb){ on_term, arg };
	sig_hup = (struct sig_cb){ on_hup, arg };
	daemon_signals_free();
	for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		d.sigs[i] = evsignal_new(base, sigs[i], on_signal,
		    sigs[i] == SIGHUP ? &sig_hup : &sig_term);
		if (d.sigs[i] == NULL || evsignal_add(d.sigs[i], NULL) == -1)
			fatal("cannot watch signal %d", sigs[i]);
	}
}

void
daemon_signals_free(void)
{
	size_t i;

	for (i = 0; i < sizeof(d.sigs) / sizeof(d.sigs[0]); i++) {
		if (d.sigs[i] != NULL)
			event_free(d.sigs[i]);
		d.sigs[i] = NULL;
	}
}

void
daemon_thread_start(pthread_t *t, void *(*fn)(void *), void *arg)
{
	sigset_t all, old;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	errno = pthread_create(t, NULL, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (errno != 0)
		fatal_sys("pthread_create");
}
