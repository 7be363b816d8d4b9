/*
 * Unit tests for lib/event.c: listen specs (good and bad), TCP v4/v6 and
 * unix listeners with the connect helper, stale and live unix sockets,
 * peer credentials, connect failures and timeouts, and accept paused on
 * EMFILE then resumed by its timer. Every loop run is bounded by a timer.
 */
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "event.h"
#include "log.h"
#include "unit.h"

static char tmpdir[] = "/tmp/test_event.XXXXXX";

struct result {
	int accepted;
	int accepted_fd;
	int family;
	int connected;
	int error;
	struct bufferevent *bev;
	struct event_base *base;
};

static void
on_accept(evutil_socket_t fd, struct sockaddr *sa, socklen_t len, void *arg)
{
	struct result *r = arg;

	(void)len;
	r->accepted++;
	r->family = sa->sa_family;
	if (r->accepted_fd != -1)
		close(r->accepted_fd);
	r->accepted_fd = fd;
	if (r->connected)
		event_base_loopexit(r->base, NULL);
}

static void
on_connect(struct bufferevent *bev, int error, void *arg)
{
	struct result *r = arg;

	r->connected = 1;
	r->error = error;
	r->bev = bev;
	if (r->accepted || error)
		event_base_loopexit(r->base, NULL);
}

static void
run_bounded(struct event_base *base, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
}

static void
result_init(struct result *r, struct event_base *base)
{
	memset(r, 0, sizeof(*r));
	r->accepted_fd = -1;
	r->base = base;
}

static void
result_free(struct result *r)
{
	if (r->bev != NULL)
		bufferevent_free(r->bev);
	if (r->accepted_fd != -1)
		close(r->accepted_fd);
}

static socklen_t
local_addr(int fd, struct sockaddr_storage *ss)
{
	socklen_t len = sizeof(*ss);

	getsockname(fd, (struct sockaddr *)ss, &len);
	return len;
}

TEST(test_specs)
{
	static const struct { const char *spec; int ok; } t[] = {
		{ "127.0.0.1:0", 1 },
		{ "[::1]:0", 1 },
		{ "*:0", 1 },
		{ "localhost:0", 1 },
		{ "127.0.0.1:65535", 1 },	/* bound; may be taken */
		{ "127.0.0.1:65536", 0 },
		{ "127.0.0.1:", 0 },
		{ "127.0.0.1", 0 },
		{ ":25", 0 },
		{ "::1:25", 0 },		/* v6 needs brackets */
		{ "[::1]25", 0 },
		{ "[::1:25", 0 },
		{ "127.0.0.1:2x", 0 },
		{ "127.0.0.1:-1", 0 },
		{ "127.0.0.1:000000025", 0 },	/* six digits or more */
		{ "unix:relative/path", 0 },
		{ "unix:", 0 },
		{ "300.1.1.1:25", 0 },
		{ "", 0 },
	};
	char err[256];
	size_t i;
	int fd;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		err[0] = '\0';
		fd = listener_bind(t[i].spec, 0, 0600, err, sizeof(err));
		if (t[i].ok && fd == -1 && strstr(err, "in use") == NULL &&
		    strcmp(t[i].spec, "127.0.0.1:65535") != 0)
			fprintf(stderr, "spec %s: %s\n", t[i].spec, err);
		if (!t[i].ok) {
			CHECK(fd == -1);
			CHECK(err[0] != '\0');
		} else if (strcmp(t[i].spec, "127.0.0.1:65535") != 0) {
			CHECK(fd >= 0);
		}
		if (fd >= 0)
			close(fd);
	}
}

TEST(test_tcp)
{
	static const char *specs[] = { "127.0.0.1:0", "[::1]:0" };
	struct event_base *base = event_base_new();
	struct sockaddr_storage ss;
	struct result r;
	struct listener *l;
	socklen_t len;
	char err[256];
	size_t i;

	for (i = 0; i < 2; i++) {
		result_init(&r, base);
		l = listener_open(base, specs[i], 0, 0, on_accept, &r, err,
		    sizeof(err));
		CHECK(l != NULL);
		if (l == NULL)
			continue;
		CHECK_STR(listener_name(l), specs[i]);
		len = local_addr(listener_fd(l), &ss);
		CHECK(ev_connect_sa(base, (struct sockaddr *)&ss, len, 5,
		    on_connect, &r) != NULL);
		run_bounded(base, 3000);
		CHECK_INT(r.accepted, 1);
		CHECK_INT(r.connected, 1);
		CHECK_INT(r.error, 0);
		CHECK(r.bev != NULL);
		CHECK(r.bev != NULL && (fcntl(bufferevent_getfd(r.bev),
		    F_GETFD) & FD_CLOEXEC));
		CHECK((fcntl(r.accepted_fd, F_GETFD) & FD_CLOEXEC) &&
		    (fcntl(r.accepted_fd, F_GETFL) & O_NONBLOCK));
		CHECK_INT(r.family, i == 0 ? AF_INET : AF_INET6);
		result_free(&r);
		listener_free(l);
	}
	event_base_free(base);
}

TEST(test_unix)
{
	struct event_base *base = event_base_new();
	char path[256], spec[300], err[256];
	struct result r;
	struct listener *l;
	struct stat st;
	uid_t uid;
	gid_t gid;
	pid_t pid;

	snprintf(path, sizeof(path), "%s/sock", tmpdir);
	snprintf(spec, sizeof(spec), "unix:%s", path);
	/* A stale socket (nobody listening) is replaced. */
	int fd = listener_bind(spec, 0, 0600, err, sizeof(err));
	CHECK(fd >= 0);
	close(fd);
	result_init(&r, base);
	l = listener_open(base, spec, 0, 0660, on_accept, &r, err,
	    sizeof(err));
	CHECK(l != NULL);
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0660);
	CHECK(ev_connect_unix(base, path, 5, on_connect, &r) != NULL);
	run_bounded(base, 3000);
	CHECK_INT(r.accepted, 1);
	CHECK_INT(r.error, 0);
	CHECK_INT(r.family, AF_UNIX);
	CHECK(peer_cred(r.accepted_fd, &uid, &gid, &pid) == 0);
	CHECK_INT(uid, getuid());
	CHECK_INT(gid, getgid());
	CHECK_INT(pid, getpid());
	CHECK(peer_cred(-1, &uid, NULL, NULL) == -1);
	/* A live socket is not stolen. */
	CHECK(listener_bind(spec, 0, 0600, err, sizeof(err)) == -1);
	CHECK(strstr(err, "in use") != NULL);
	result_free(&r);
	listener_free(l);
	CHECK(stat(path, &st) == -1);	/* unlinked by listener_free */
	/* Not a socket: refused, file untouched. */
	close(open(path, O_CREAT | O_WRONLY, 0600));
	CHECK(listener_bind(spec, 0, 0600, err, sizeof(err)) == -1);
	CHECK(stat(path, &st) == 0 && S_ISREG(st.st_mode));
	unlink(path);
	event_base_free(base);
}

TEST(test_connect_errors)
{
	struct event_base *base = event_base_new();
	struct sockaddr_storage ss;
	struct result r;
	socklen_t len;
	char err[256], path[300];
	int fd;

	/* Refused: a port that was bound and closed again. */
	fd = listener_bind("127.0.0.1:0", 0, 0, err, sizeof(err));
	len = local_addr(fd, &ss);
	close(fd);
	result_init(&r, base);
	CHECK(ev_connect_sa(base, (struct sockaddr *)&ss, len, 5, on_connect,
	    &r) != NULL);
	CHECK_INT(r.connected, 0);	/* never from inside the call */
	run_bounded(base, 3000);
	CHECK_INT(r.connected, 1);
	CHECK_INT(r.error, ECONNREFUSED);
	CHECK(r.bev == NULL);
	/* A missing unix socket. */
	snprintf(path, sizeof(path), "%s/nosuch", tmpdir);
	result_init(&r, base);
	CHECK(ev_connect_unix(base, path, 5, on_connect, &r) != NULL);
	CHECK_INT(r.connected, 0);
	run_bounded(base, 3000);
	CHECK_INT(r.connected, 1);
	CHECK_INT(r.error, ENOENT);
	/* A path one past the sun_path bound. */
	memset(path, 'a', sizeof(((struct sockaddr_un *)0)->sun_path));
	path[sizeof(((struct sockaddr_un *)0)->sun_path)] = '\0';
	CHECK(ev_connect_unix(base, path, 5, on_connect, &r) == NULL);
	/* Cancelled before it finished: the callback never runs. */
	result_init(&r, base);
	ev_connect_cancel(ev_connect_unix(base, "/nonexistent/x", 5,
	    on_connect, &r));
	run_bounded(base, 200);
	CHECK_INT(r.connected, 0);
	event_base_free(base);
}

/* A listener that never accepts and whose queue is full drops SYNs: the
 * connect must end with ETIMEDOUT after its timeout. */
TEST(test_connect_timeout)
{
	struct event_base *base = event_base_new();
	struct sockaddr_storage ss;
	struct result r;
	socklen_t len;
	char err[256];
	int lfd, fds[8], i;

	lfd = listener_bind("127.0.0.1:0", 1, 0, err, sizeof(err));
	len = local_addr(lfd, &ss);
	for (i = 0; i < 8; i++) {
		fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		connect(fds[i], (struct sockaddr *)&ss, len);
	}
	usleep(100000);
	result_init(&r, base);
	ev_connect_sa(base, (struct sockaddr *)&ss, len, 1, on_connect, &r);
	run_bounded(base, 4000);
	CHECK_INT(r.connected, 1);
	CHECK_INT(r.error, ETIMEDOUT);
	for (i = 0; i < 8; i++)
		close(fds[i]);
	close(lfd);
	event_base_free(base);
}

static void
restore_limit(evutil_socket_t fd, short what, void *arg)
{
	struct rlimit *rl = arg;

	(void)fd;
	(void)what;
	setrlimit(RLIMIT_NOFILE, rl);
}

/* Out of descriptors: accept pauses (no spinning), resumes after 1 s. */
TEST(test_emfile_pause)
{
	struct event_base *base = event_base_new();
	struct sockaddr_storage ss;
	struct rlimit old, low;
	struct timeval restore = { 0, 300000 };
	struct event *ev;
	struct result r;
	struct listener *l;
	socklen_t len;
	char err[256];
	int cfd, probe;

	result_init(&r, base);
	l = listener_open(base, "127.0.0.1:0", 0, 0, on_accept, &r, err,
	    sizeof(err));
	len = local_addr(listener_fd(l), &ss);
	cfd = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(connect(cfd, (struct sockaddr *)&ss, len) == 0);
	getrlimit(RLIMIT_NOFILE, &old);
	probe = dup(0);		/* the lowest free fd */
	close(probe);
	low = old;
	low.rlim_cur = (rlim_t)probe;
	ev = evtimer_new(base, restore_limit, &old);
	evtimer_add(ev, &restore);
	setrlimit(RLIMIT_NOFILE, &low);
	r.connected = 1;	/* on_accept ends the loop */
	run_bounded(base, 700);
	CHECK_INT(r.accepted, 0);	/* paused, not yet resumed */
	run_bounded(base, 2000);
	CHECK_INT(r.accepted, 1);
	setrlimit(RLIMIT_NOFILE, &old);
	close(cfd);
	r.connected = 0;
	result_free(&r);
	event_free(ev);
	listener_free(l);
	event_base_free(base);
}

int
main(void)
{
	log_init("test_event", 1, LOG_LVL_WARN);
	if (mkdtemp(tmpdir) == NULL)
		return 1;
	RUN(test_specs);
	RUN(test_tcp);
	RUN(test_unix);
	RUN(test_connect_errors);
	RUN(test_connect_timeout);
	RUN(test_emfile_pause);
	rmdir(tmpdir);
	return unit_done("test_event");
}
