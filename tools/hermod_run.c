/*
 * hermod start / stop / reload / status: the supervisor.
 *
 * `hermod start` runs lmtpd, queued and smtpd in that order (each one
 * waits for the one it hands mail to), each as a child in the foreground
 * (-f) so that the supervisor sees it exit. A daemon that dies is logged
 * and restarted with a growing backoff (1 s doubling to 60 s, back to 1 s
 * once it has run for a minute). SIGTERM stops the daemons in reverse
 * order and waits for them; SIGHUP is passed on to each (reload). Without
 * -f the supervisor detaches and everything logs to syslog.
 *
 * The supervisor's pid is in run_directory/hermod.pid; stop, reload and
 * status find it there.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "hermod.h"
#include "log.h"
#include "xalloc.h"

#define BACKOFF_MAX 60
#define STABLE_AFTER 60
#define STOP_WAIT 30

static struct child {
	const char *name;
	pid_t pid;
	time_t started;
	int backoff;		/* seconds before the next restart */
	time_t restart_at;	/* 0: not waiting */
} children[] = {
	{ "lmtpd", 0, 0, 1, 0 },
	{ "queued", 0, 0, 1, 0 },
	{ "smtpd", 0, 0, 1, 0 },
};
#define NCHILDREN (sizeof(children) / sizeof(children[0]))

static volatile sig_atomic_t got_term, got_hup, got_chld;
static char bindir[4096];
static const char *conf_file;
static int foreground;

static void
on_signal(int sig)
{
	if (sig == SIGTERM || sig == SIGINT)
		got_term = 1;
	else if (sig == SIGHUP)
		got_hup = 1;
	else if (sig == SIGCHLD)
		got_chld = 1;
}

/* Alive and not a zombie (an exited supervisor stays a zombie until its
 * own parent, e.g. a test harness, reaps it). */
static int
alive(pid_t pid)
{
	char path[64], buf[256], *p;
	FILE *f;
	int zombie = 0;

	if (kill(pid, 0) < 0)
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((f = fopen(path, "r")) == NULL)
		return 0;
	if (fgets(buf, sizeof(buf), f) && (p = strrchr(buf, ')')) != NULL)
		zombie = p[1] == ' ' && p[2] == 'Z';
	fclose(f);
	return !zombie;
}

static char *
pidfile_path(const char *name)
{
	return xasprintf("%s/%s.pid", conf_str(C_run_directory), name);
}

static pid_t
pidfile_read(const char *name)
{
	char *path = pidfile_path(name), line[32];
	FILE *f = fopen(path, "r");
	long pid = 0;

	free(path);
	if (f == NULL)
		return 0;
	if (fgets(line, sizeof(line), f))
		pid = strtol(line, NULL, 10);
	fclose(f);
	if (pid <= 0 || !alive((pid_t)pid))
		return 0;
	return (pid_t)pid;
}

static void
spawn(struct child *c)
{
	char *prog = xasprintf("%s/%s", bindir, c->name);
	pid_t pid = fork();

	if (pid < 0) {
		log_warn("supervisor: fork for %s: %s", c->name, strerror(errno));
		c->restart_at = time(NULL) + c->backoff;
		free(prog);
		return;
	}
	if (pid == 0) {
		char *argv[] = { (char *)c->name, "-f", "-c", (char *)conf_file, NULL };
		sigset_t none;

		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		/* -f keeps it our child; the log still goes to syslog when we
		 * detached (see log_init) */
		if (!foreground)
			setenv("HERMOD_LOG_SYSLOG", "1", 1);
		execv(prog, argv);
		fprintf(stderr, "hermod: cannot run %s: %s\n", prog, strerror(errno));
		_exit(127);
	}
	c->pid = pid;
	c->started = time(NULL);
	c->restart_at = 0;
	log_info("supervisor: started %s, pid %d", c->name, (int)pid);
	free(prog);
}

/* A child ended: log it and schedule its restart with backoff. */
static void
reap(void)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (size_t i = 0; i < NCHILDREN; i++) {
			struct child *c = &children[i];

			if (c->pid != pid)
				continue;
			c->pid = 0;
			if (got_term)
				break;
			if (time(NULL) - c->started >= STABLE_AFTER)
				c->backoff = 1;
			if (WIFSIGNALED(status))
				log_warn("supervisor: %s (pid %d) killed by signal %d; "
				    "restarting in %ds", c->name, (int)pid,
				    WTERMSIG(status), c->backoff);
			else
				log_warn("supervisor: %s (pid %d) exited with status %d; "
				    "restarting in %ds", c->name, (int)pid,
				    WEXITSTATUS(status), c->backoff);
			c->restart_at = time(NULL) + c->backoff;
			c->backoff = c->backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : c->backoff * 2;
		}
	}
}

static void
signal_all(int sig)
{
	for (size_t i = 0; i < NCHILDREN; i++)
		if (children[i].pid > 0)
			kill(children[i].pid, sig);
}

/* Stop in reverse order: smtpd first, so nothing new comes in. */
static void
stop_all(void)
{
	for (size_t i = NCHILDREN; i-- > 0;) {
		struct child *c = &children[i];
		time_t deadline = time(NULL) + STOP_WAIT;
		int status;

		if (c->pid <= 0)
			continue;
		kill(c->pid, SIGTERM);
		while (waitpid(c->pid, &status, WNOHANG) == 0) {
			if (time(NULL) >= deadline) {
				log_warn("supervisor: %s did not stop in %ds; killing it",
				    c->name, STOP_WAIT);
				kill(c->pid, SIGKILL);
				waitpid(c->pid, &status, 0);
				break;
			}
			usleep(50000);
		}
		log_info("supervisor: stopped %s", c->name);
		c->pid = 0;
	}
}

static int
write_pidfile(void)
{
	char *path = pidfile_path("hermod");
	FILE *f;

	mkdir(conf_str(C_run_directory), 0755);
	if ((f = fopen(path, "w")) == NULL) {
		fprintf(stderr, "hermod: cannot write %s: %s\n", path, strerror(errno));
		free(path);
		return -1;
	}
	fprintf(f, "%d\n", (int)getpid());
	fclose(f);
	free(path);
	return 0;
}

static void
supervise(void)
{
	sigset_t block, old;

	sigemptyset(&block);
	sigaddset(&block, SIGCHLD);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGHUP);
	sigprocmask(SIG_BLOCK, &block, &old);
	for (size_t i = 0; i < NCHILDREN; i++) {
		spawn(&children[i]);
		usleep(200000);	/* let it bind before the next one needs it */
	}
	while (!got_term) {
		struct timespec ts = { 1, 0 };

		/* wake on a signal, or once a second for pending restarts */
		sigprocmask(SIG_SETMASK, &old, NULL);
		nanosleep(&ts, NULL);
		sigprocmask(SIG_BLOCK, &block, NULL);
		if (got_chld) {
			got_chld = 0;
			reap();
		}
		if (got_hup) {
			got_hup = 0;
			log_info("supervisor: reload");
			signal_all(SIGHUP);
		}
		for (size_t i = 0; i < NCHILDREN && !got_term; i++)
			if (children[i].pid == 0 && children[i].restart_at &&
			    time(NULL) >= children[i].restart_at)
				spawn(&children[i]);
	}
	log_info("supervisor: stopping");
	stop_all();
}

static void
find_bindir(void)
{
	char self[sizeof(bindir)];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

	if (n < 0)
		fatal_sys("readlink /proc/self/exe");
	self[n] = '\0';
	snprintf(bindir, sizeof(bindir), "%s", dirname(self));
}

int
cmd_start(int argc, char **argv)
{
	struct sigaction sa = { .sa_handler = on_signal };
	int ch;

	while ((ch = getopt(argc, argv, "f")) != -1) {
		if (ch != 'f') {
			fprintf(stderr, "usage: hermod start [-f]\n");
			return 2;
		}
		foreground = 1;
	}
	if (pidfile_read("hermod")) {
		fprintf(stderr, "hermod: already running (pid %d)\n", (int)pidfile_read("hermod"));
		return 1;
	}
	conf_file = xstrdup(conf_path(hermod_conf_arg));
	find_bindir();
	if (!foreground) {
		if (daemon(0, 0) < 0)
			fatal_sys("daemon");
		log_init("hermod", 0, LOG_LVL_INFO);
	}
	if (write_pidfile() < 0)
		return 1;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGCHLD, &sa, NULL);
	supervise();
	char *path = pidfile_path("hermod");
	unlink(path);
	free(path);
	return 0;
}

/* Send sig to the supervisor; with wait, until it is gone. */
static int
signal_supervisor(int sig, int wait)
{
	pid_t pid = pidfile_read("hermod");

	if (pid == 0) {
		fprintf(stderr, "hermod: not running (no live pid in %s/hermod.pid)\n",
		    conf_str(C_run_directory));
		return 1;
	}
	if (kill(pid, sig) < 0) {
		fprintf(stderr, "hermod: kill %d: %s\n", (int)pid, strerror(errno));
		return 1;
	}
	for (int i = 0; wait && i < (STOP_WAIT + 5) * 10 && alive(pid); i++)
		usleep(100000);
	if (wait && alive(pid)) {
		fprintf(stderr, "hermod: pid %d still running\n", (int)pid);
		return 1;
	}
	return 0;
}

int
cmd_stop(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	return signal_supervisor(SIGTERM, 1);
}

int
cmd_reload(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	return signal_supervisor(SIGHUP, 0);
}

/* Seconds since a process started, from /proc. */
static long
uptime_of(pid_t pid)
{
	char path[64];
	struct stat st;

	snprintf(path, sizeof(path), "/proc/%d", (int)pid);
	if (stat(path, &st) < 0)
		return -1;
	return (long)(time(NULL) - st.st_mtime);
}

int
cmd_status(int argc, char **argv)
{
	static const char *names[] = { "hermod", "lmtpd", "queued", "smtpd" };
	static const enum conf_key listeners[] = { C_smtp_listen, C_submission_listen,
	    C_smtps_listen, C_lmtp_listen };
	int down = 0;

	(void)argc;
	(void)argv;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		pid_t pid = pidfile_read(names[i]);

		if (pid)
			printf("%-8s running  pid %-7d up %lds\n", names[i], (int)pid,
			    uptime_of(pid));
		else {
			printf("%-8s stopped\n", names[i]);
			down = 1;
		}
	}
	for (size_t i = 0; i < sizeof(listeners) / sizeof(listeners[0]); i++) {
		char *const *l = conf_list(listeners[i]);

		printf("%-18s", conf_defs[listeners[i]].name);
		for (; l && *l; l++)
			printf(" %s", *l);
		printf("\n");
	}
	printf("queue              %ld messages\n", queue_count());
	return down;
}
