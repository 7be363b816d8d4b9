/*
 * Event-loop helpers: listeners on evconnlistener (with accept paused on
 * descriptor exhaustion), unix peer credentials, and a connect helper that
 * reports once through a callback. See event.h.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <netdb.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/listener.h>

#include "event.h"
#include "log.h"
#include "xalloc.h"

struct listener {
	struct evconnlistener *lev;
	struct event *resume;		/* 1 s timer after EMFILE */
	listener_accept_cb cb;
	void *arg;
	char *name;
	char *unix_path;		/* unlinked on free, if we bound it */
};

static void
seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* ---- binding ---- */

/*
 * A unix socket file left by a dead process is removed; one that still
 * answers is somebody's live socket and is left alone.
 */
static int
unix_clear_stale(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sun;
	struct stat st;
	int fd, r;

	if (lstat(path, &st) == -1)
		return errno == ENOENT ? 0 : (seterr(err, errlen, "%s: %s",
		    path, strerror(errno)), -1);
	if (!S_ISSOCK(st.st_mode)) {
		seterr(err, errlen, "%s: exists and is not a socket", path);
		return -1;
	}
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, path, strlen(path));
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1) {
		seterr(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	r = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
	close(fd);
	if (r == 0) {
		seterr(err, errlen, "%s: in use by a running process", path);
		return -1;
	}
	if (unlink(path) == -1 && errno != ENOENT) {
		seterr(err, errlen, "unlink %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

static int
bind_unix(const char *path, int backlog, mode_t mode, char *err,
    size_t errlen)
{
	struct sockaddr_un sun;
	mode_t old;
	int fd, r;

	if (*path != '/' || strlen(path) >= sizeof(sun.sun_path)) {
		seterr(err, errlen, "unix:%s: need an absolute path shorter "
		    "than %zu bytes", path, sizeof(sun.sun_path));
		return -1;
	}
	if (unix_clear_stale(path, err, errlen) == -1)
		return -1;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, path, strlen(path));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		seterr(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	/* Never let the socket exist with wider rights than asked for. */
	old = umask(~mode & 0777);
	r = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	umask(old);
	if (r == -1 || chmod(path, mode) == -1 || listen(fd, backlog) == -1) {
		seterr(err, errlen, "unix:%s: %s", path, strerror(errno));
		if (r == 0)
			unlink(path);
		close(fd);
		return -1;
	}
	return fd;
}

/*
 * Split HOST:PORT, [V6]:PORT or *:PORT into host (NULL for *) and port.
 * host is written into hbuf. Listener specs are parsed only here; the
 * other host:port forms (relayhost, dns_servers) have rules of their own
 * (MX suppression, default ports) and live with their users.
 */
static int
split_hostport(const char *spec, char *hbuf, size_t hlen, const char **host,
    const char **port)
{
	const char *colon, *end;
	size_t n;

	if (*spec == '[') {
		if ((end = strchr(spec, ']')) == NULL || end[1] != ':')
			return -1;
		spec++;
		colon = end + 1;
		n = (size_t)(end - spec);
	} else {
		if ((colon = strrchr(spec, ':')) == NULL)
			return -1;
		n = (size_t)(colon - spec);
		if (memchr(spec, ':', n) != NULL)
			return -1;	/* bare IPv6 needs brackets */
	}
	if (n == 0 || n >= hlen || colon[1] == '\0' ||
	    strspn(colon + 1, "0123456789") != strlen(colon + 1) ||
	    strlen(colon + 1) > 5 || atoi(colon + 1) > 65535)
		return -1;
	memcpy(hbuf, spec, n);
	hbuf[n] = '\0';
	*host = strcmp(hbuf, "*") == 0 ? NULL : hbuf;
	*port = colon + 1;
	return 0;
}

static int
bind_inet(const struct addrinfo *ai, int backlog, const char *spec,
    char *err, size_t errlen)
{
	int fd, on = 1;

	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, ai->ai_protocol);
	if (fd == -1) {
		seterr(err, errlen, "%s: socket: %s", spec, strerror(errno));
		return -1;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) == -1 ||
	    (ai->ai_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6,
	    IPV6_V6ONLY, &on, sizeof(on)) == -1) ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) == -1 ||
	    listen(fd, backlog) == -1) {
		seterr(err, errlen, "%s: %s", spec, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

int
listener_bind(const char *spec, int backlog, mode_t unix_mode, char *err,
    size_t errlen)
{
	struct addrinfo hints, *res;
	const char *host, *port;
	char hbuf[256];
	int fd, r;

	if (backlog <= 0)
		backlog = LISTEN_BACKLOG_DEFAULT;
	if (strncmp(spec, "unix:", 5) == 0)
		return bind_unix(spec + 5, backlog, unix_mode, err, errlen);
	if (split_hostport(spec, hbuf, sizeof(hbuf), &host, &port) == -1) {
		seterr(err, errlen, "%s: not HOST:PORT, [IPV6]:PORT, *:PORT "
		    "or unix:/PATH", spec);
		return -1;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = host == NULL ? AF_INET : AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	/* Start-up only: a host name here is resolved once, blocking. */
	if ((r = getaddrinfo(host, port, &hints, &res)) != 0) {
		seterr(err, errlen, "%s: %s", spec, gai_strerror(r));
		return -1;
	}
	fd = bind_inet(res, backlog, spec, err, errlen);
	freeaddrinfo(res);
	return fd;
}

/* ---- watching ---- */

static void
listener_accept(struct evconnlistener *lev, evutil_socket_t fd,
    struct sockaddr *sa, int len, void *arg)
{
	struct listener *l = arg;

	(void)lev;
	l->cb(fd, sa, (socklen_t)len, l->arg);
}

static void
listener_resume(evutil_socket_t fd, short what, void *arg)
{
	struct listener *l = arg;

	(void)fd;
	(void)what;
	log_info("listener %s: accepting again", l->name);
	evconnlistener_enable(l->lev);
}

/*
 * Out of descriptors (or any other accept failure libevent does not retry
 * itself): a listening socket stays readable, so keep accepting and we
 * spin. Pause for a second instead.
 */
static void
listener_error(struct evconnlistener *lev, void *arg)
{
	struct listener *l = arg;
	struct timeval one = { 1, 0 };
	int e = EVUTIL_SOCKET_ERROR();

	(void)lev;
	log_warn("listener %s: accept: %s; pausing 1s", l->name, strerror(e));
	evconnlistener_disable(l->lev);
	evtimer_add(l->resume, &one);
}

struct listener *
listener_from_fd(struct event_base *base, evutil_socket_t fd,
    const char *name, listener_accept_cb cb, void *arg, char *err,
    size_t errlen)
{
	struct listener *l;

	if (evutil_make_socket_nonblocking(fd) == -1 ||
	    evutil_make_socket_closeonexec(fd) == -1) {
		seterr(err, errlen, "%s: %s", name, strerror(errno));
		return NULL;
	}
	l = xcalloc(1, sizeof(*l));
	l->cb = cb;
	l->arg = arg;
	l->name = xstrdup(name);
	l->resume = evtimer_new(base, listener_resume, l);
	/* backlog 0: the socket already listens; do not call listen(). */
	l->lev = evconnlistener_new(base, listener_accept, l,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
	if (l->resume == NULL || l->lev == NULL)
		fatal("listener %s: out of memory", name);
	evconnlistener_set_error_cb(l->lev, listener_error);
	return l;
}

struct listener *
listener_open(struct event_base *base, const char *spec, int backlog,
    mode_t unix_mode, listener_accept_cb cb, void *arg, char *err,
    size_t errlen)
{
	struct listener *l;
	int fd;

	if ((fd = listener_bind(spec, backlog, unix_mode, err, errlen)) == -1)
		return NULL;
	l = listener_from_fd(base, fd, spec, cb, arg, err, errlen);
	if (l == NULL) {
		close(fd);
		if (strncmp(spec, "unix:", 5) == 0)
			unlink(spec + 5);
		return NULL;
	}
	if (strncmp(spec, "unix:", 5) == 0)
		l->unix_path = xstrdup(spec + 5);
	return l;
}

void
listener_disable(struct listener *l)
{
	evtimer_del(l->resume);
	evconnlistener_disable(l->lev);
}

void
listener_enable(struct listener *l)
{
	evconnlistener_enable(l->lev);
}

evutil_socket_t
listener_fd(const struct listener *l)
{
	return evconnlistener_get_fd(l->lev);
}

const char *
listener_name(const struct listener *l)
{
	return l->name;
}

void
listener_free(struct listener *l)
{
	if (l == NULL)
		return;
	evconnlistener_free(l->lev);
	event_free(l->resume);
	if (l->unix_path != NULL)
		unlink(l->unix_path);
	free(l->unix_path);
	free(l->name);
	free(l);
}

int
peer_cred(int fd, uid_t *uid, gid_t *gid, pid_t *pid)
{
	struct ucred uc;
	socklen_t len = sizeof(uc);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) == -1)
		return -1;
	if (uid != NULL)
		*uid = uc.uid;
	if (gid != NULL)
		*gid = uc.gid;
	if (pid != NULL)
		*pid = uc.pid;
	return 0;
}

/* ---- connecting ---- */

struct ev_connect {
	struct bufferevent *bev;
	struct event *fail;	/* reports an immediate failure from the loop */
	int error;
	ev_connect_cb cb;
	void *arg;
};

static void
connect_finish(struct ev_connect *c, int error)
{
	struct bufferevent *bev = c->bev;
	ev_connect_cb cb = c->cb;
	void *arg = c->arg;

	event_free(c->fail);
	free(c);
	if (error != 0) {
		bufferevent_free(bev);
		bev = NULL;
	} else {
		bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
		bufferevent_set_timeouts(bev, NULL, NULL);
	}
	cb(bev, error, arg);
}

static void
connect_event(struct bufferevent *bev, short what, void *arg)
{
	struct ev_connect *c = arg;
	int e = EVUTIL_SOCKET_ERROR();

	(void)bev;
	if (what & BEV_EVENT_CONNECTED)
		connect_finish(c, 0);
	else if (what & BEV_EVENT_TIMEOUT)
		connect_finish(c, ETIMEDOUT);
	else
		connect_finish(c, e != 0 ? e : ECONNREFUSED);
}

static void
connect_failed(evutil_socket_t fd, short what, void *arg)
{
	struct ev_connect *c = arg;

	(void)fd;
	(void)what;
	connect_finish(c, c->error);
}

struct ev_connect *
ev_connect_sa(struct event_base *base, const struct sockaddr *sa,
    socklen_t salen, int timeout_sec, ev_connect_cb cb, void *arg)
{
	struct ev_connect *c = xcalloc(1, sizeof(*c));
	struct timeval tv = { timeout_sec, 0 };

	c->cb = cb;
	c->arg = arg;
	int fd;

	c->fail = evtimer_new(base, connect_failed, c);
	/* Our own socket: libevent's would not be close-on-exec, and
	 * lmtpd and queued fork children. */
	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	c->error = fd == -1 ? errno : 0;
	c->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->fail == NULL || c->bev == NULL)
		fatal("ev_connect: out of memory");
	bufferevent_setcb(c->bev, NULL, NULL, connect_event, c);
	if (timeout_sec > 0)
		bufferevent_set_timeouts(c->bev, NULL, &tv);
	if (fd == -1 || bufferevent_socket_connect(c->bev,
	    (struct sockaddr *)sa, (int)salen) == -1) {
		if (c->error == 0)
			c->error = errno != 0 ? errno : ECONNREFUSED;
		bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
		event_active(c->fail, EV_TIMEOUT, 0);
	}
	return c;
}

struct ev_connect *
ev_connect_unix(struct event_base *base, const char *path, int timeout_sec,
    ev_connect_cb cb, void *arg)
{
	struct sockaddr_un sun;

	memset(&sun, 0, sizeof(sun));
	if (strlen(path) >= sizeof(sun.sun_path)) {
		errno = ENAMETOOLONG;
		return NULL;
	}
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, path, strlen(path));
	return ev_connect_sa(base, (struct sockaddr *)&sun, sizeof(sun),
	    timeout_sec, cb, arg);
}

void
ev_connect_cancel(struct ev_connect *c)
{
	if (c == NULL)
		return;
	event_free(c->fail);
	bufferevent_free(c->bev);
	free(c);
}

int
bev_write_now(struct bufferevent *bev)
{
	struct evbuffer *out = bufferevent_get_output(bev);
	int n;

	if (evbuffer_get_length(out) == 0)
		return 0;
	/* a socket bufferevent keeps its output's start frozen against
	 * drains by others: write as its own write callback does */
	evbuffer_unfreeze(out, 1);
	errno = 0;
	n = evbuffer_write(out, bufferevent_getfd(bev));
	evbuffer_freeze(out, 1);
	if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
		return -1;
	if (evbuffer_get_length(out) > 0)
		bufferevent_enable(bev, EV_WRITE);
	return 0;
}

int64_t
mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}
