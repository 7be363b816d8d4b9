/*
 * Unit tests for lib/daemon.c: option parsing (good, bad, -o overrides,
 * extra letters), config errors ending with the right exit status, the
 * run directory, the locked pid file, signals on the loop, and
 * priv_become (as an ordinary user: same ids succeed, others fail; as
 * root: a child really becomes nobody and cannot get root back).
 * Cases that exit() run in a forked child.
 */
#include <sys/stat.h>
#include <sys/wait.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include "conf.h"
#include "daemon.h"
#include "log.h"
#include "unit.h"

static char tmpdir[] = "/tmp/test_daemon.XXXXXX";
static char conffile[300];

static int seen_x;

static int
extra(int ch, const char *arg, void *a)
{
	(void)a;
	if (ch != 'x' || strcmp(arg, "bad") == 0)
		return -1;
	seen_x = 1;
	return 0;
}

/* Run daemon_init on argv in a child; return its exit status (or 0 when
 * it returned, 100 + optind). */
static int
init_in_child(char **argv)
{
	struct daemon_opts o = { .extra_optstring = "x:",
	    .extra_option = extra };
	int argc = 0, st;
	pid_t pid;

	while (argv[argc] != NULL)
		argc++;
	if ((pid = fork()) == 0) {
		int fd = open("/dev/null", O_WRONLY);
		dup2(fd, 2);
		optind = 1;
		_exit(100 + daemon_init(argc, argv, "test", &o));
	}
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

TEST(test_options)
{
	char rundir[300], o_run[320];
	static char bad_conf[300];

	snprintf(rundir, sizeof(rundir), "%s/run", tmpdir);
	snprintf(o_run, sizeof(o_run), "run_directory=%s", rundir);
	snprintf(bad_conf, sizeof(bad_conf), "%s/nosuch.conf", tmpdir);
	{
		char *argv[] = { "t", "-f", "-c", conffile, "-o", o_run,
		    "-d", "-x", "ok", "arg", NULL };
		CHECK_INT(init_in_child(argv), 100 + 9);
	}
	{
		char *argv[] = { "t", "-q", NULL };	/* unknown letter */
		CHECK_INT(init_in_child(argv), 64);
	}
	{
		char *argv[] = { "t", "-x", "bad", NULL };
		CHECK_INT(init_in_child(argv), 64);
	}
	{
		char *argv[] = { "t", "-c", NULL };	/* missing argument */
		CHECK_INT(init_in_child(argv), 64);
	}
	{
		char *argv[] = { "t", "-c", bad_conf, NULL };
		CHECK_INT(init_in_child(argv), 78);	/* -c file missing */
	}
	{
		char *argv[] = { "t", "-c", conffile, "-o", "novalue", NULL };
		CHECK_INT(init_in_child(argv), 78);
	}
	{
		char *argv[] = { "t", "-c", conffile, "-o", "=x", NULL };
		CHECK_INT(init_in_child(argv), 78);
	}
	{
		char *argv[] = { "t", "-c", conffile, "-o",
		    "smtp_port=70000", NULL };
		CHECK_INT(init_in_child(argv), 78);	/* past the bound */
	}
}

TEST(test_init_in_process)
{
	struct daemon_opts o = { .extra_optstring = "x:",
	    .extra_option = extra };
	char rundir[300], o_run[320], pidpath[340], buf[32];
	char *argv[] = { "t", "-f", "-c", conffile, "-o", o_run, "-x", "1",
	    NULL };
	struct stat st;
	int fd, n;

	snprintf(rundir, sizeof(rundir), "%s/run", tmpdir);
	snprintf(o_run, sizeof(o_run), "run_directory=%s", rundir);
	optind = 1;
	CHECK_INT(daemon_init(8, argv, "test_daemon", &o), 8);
	CHECK_INT(o.foreground, 1);
	CHECK(seen_x);
	CHECK_STR(conf_str(C_run_directory), rundir);
	CHECK_STR(conf_str(C_myhostname), "test.example");
	CHECK(stat(rundir, &st) == 0 && S_ISDIR(st.st_mode));
	daemon_detach();	/* -f: a no-op, we are still here */
	CHECK_INT(daemon_pidfile("unit"), 0);
	snprintf(pidpath, sizeof(pidpath), "%s/unit.pid", rundir);
	fd = open(pidpath, O_RDONLY);
	n = (int)read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	CHECK_INT(atol(buf), getpid());
	CHECK_INT(daemon_pidfile("unit"), -1);	/* locked: running */
	daemon_pidfile_remove();
	CHECK(stat(pidpath, &st) == -1);
	/* Reload keeps the -o override over the file. */
	CHECK_INT(daemon_reload_config(), 0);
	CHECK_STR(conf_str(C_run_directory), rundir);
	rmdir(rundir);
}

static int terms, hups;
static void on_term(void *a) { (void)a; terms++; }
static void on_hup(void *a) { (void)a; hups++; }

TEST(test_signals)
{
	struct event_base *base = event_base_new();
	struct timeval tv = { 0, 200000 };

	daemon_signals(base, on_term, on_hup, NULL);
	kill(getpid(), SIGHUP);
	kill(getpid(), SIGTERM);
	kill(getpid(), SIGPIPE);	/* ignored, not fatal */
	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
	CHECK_INT(terms, 1);
	CHECK_INT(hups, 1);
	daemon_signals_free();
	event_base_free(base);
}

TEST(test_priv_become)
{
	int st;
	pid_t pid;

	if (geteuid() != 0) {
		if ((pid = fork()) == 0)
			_exit(priv_become(getuid(), getgid()) == 0 ? 0 : 1);
		waitpid(pid, &st, 0);
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
		if ((pid = fork()) == 0)
			_exit(priv_become(0, 0) == -1 ? 0 : 1);
		waitpid(pid, &st, 0);
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
		return;
	}
	/* Root: become 65534 for good. */
	if ((pid = fork()) == 0) {
		gid_t groups[4];
		if (priv_become(65534, 65534) == -1)
			_exit(1);
		if (getuid() != 65534 || geteuid() != 65534 ||
		    getegid() != 65534)
			_exit(2);
		if (getgroups(4, groups) != 1 || groups[0] != 65534)
			_exit(3);
		if (setuid(0) != -1)
			_exit(4);
		_exit(0);
	}
	waitpid(pid, &st, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

int
main(void)
{
	FILE *f;

	log_init("test_daemon", 1, LOG_LVL_WARN);
	if (mkdtemp(tmpdir) == NULL)
		return 1;
	snprintf(conffile, sizeof(conffile), "%s/hermod.conf", tmpdir);
	if ((f = fopen(conffile, "w")) == NULL)
		return 1;
	fprintf(f, "myhostname = test.example\nlog_level = warning\n"
	    "user = nobody\n");
	fclose(f);
	RUN(test_options);
	RUN(test_init_in_process);
	RUN(test_signals);
	RUN(test_priv_become);
	unlink(conffile);
	rmdir(tmpdir);
	return unit_done("test_daemon");
}
