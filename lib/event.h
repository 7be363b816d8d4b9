/*
 * Event-loop helpers shared by smtpd, queued and lmtpd: listeners (TCP over
 * IPv4/IPv6 and unix sockets) on libevent's evconnlistener, unix-socket
 * peer credentials, and a non-blocking connect with a timeout that hands
 * back a bufferevent.
 *
 * Timers and signals: use libevent directly (evtimer_new, evsignal_new);
 * daemon.h has the common SIGTERM/SIGHUP/SIGPIPE set-up.
 *
 * Listen specs (conf smtp_listen, lmtp_listen, ...):
 *   HOST:PORT       IPv4 literal or host name resolved once at start-up
 *   [IPV6]:PORT     IPv6 literal (the socket gets IPV6_V6ONLY)
 *   *:PORT          every IPv4 address (0.0.0.0)
 *   unix:/path      a unix stream socket; a stale socket file is unlinked
 *                   first, the new one gets `unix_mode` (e.g. 0666)
 *
 * Privileged ports: bind as root with listener_bind() before dropping
 * privileges, then wrap the fd with listener_from_fd() once the event base
 * exists (the same call takes an fd a supervisor passed down).
 */
#ifndef HERMOD_EVENT_H
#define HERMOD_EVENT_H

#include <sys/types.h>
#include <sys/socket.h>

#include <stdint.h>

#include <event2/event.h>
#include <event2/bufferevent.h>

#define LISTEN_BACKLOG_DEFAULT 128

/*
 * Called for each accepted connection. The fd is non-blocking and
 * close-on-exec, and belongs to the callback from then on. `sa` (len bytes)
 * is the peer address; for unix sockets its family is AF_UNIX.
 */
typedef void (*listener_accept_cb)(evutil_socket_t fd, struct sockaddr *sa,
    socklen_t len, void *arg);

struct listener;

/*
 * Create, bind and listen on the socket a spec names; no event base needed
 * (root binds before dropping privileges). Returns the fd (non-blocking,
 * close-on-exec, SO_REUSEADDR) or -1 with a message in err.
 * unix_mode is applied to unix:/path sockets only.
 */
int listener_bind(const char *spec, int backlog, mode_t unix_mode,
    char *err, size_t errlen);

/*
 * Watch an already listening fd. `name` (copied) is used in log lines,
 * typically the spec. The listener owns the fd from then on (closed by
 * listener_free). Returns NULL with a message in err on failure (the fd is
 * then left open for the caller).
 * When accept fails with EMFILE/ENFILE (out of descriptors) accepting is
 * paused with a log line and resumed by a 1 s timer.
 */
struct listener *listener_from_fd(struct event_base *base, evutil_socket_t fd,
    const char *name, listener_accept_cb cb, void *arg,
    char *err, size_t errlen);

/* listener_bind() + listener_from_fd(). A unix socket opened this way is
 * unlinked again by listener_free(). */
struct listener *listener_open(struct event_base *base, const char *spec,
    int backlog, mode_t unix_mode, listener_accept_cb cb, void *arg,
    char *err, size_t errlen);

/* Stop / resume accepting (SIGTERM: stop taking new sessions). */
void listener_disable(struct listener *l);
void listener_enable(struct listener *l);
evutil_socket_t listener_fd(const struct listener *l);
const char *listener_name(const struct listener *l);
/* Close the socket (and unlink a unix socket listener_open created). */
void listener_free(struct listener *l);

/*
 * Peer credentials of a connected unix stream socket (SO_PEERCRED). Any of
 * the out pointers may be NULL. 0, or -1 with errno set.
 */
int peer_cred(int fd, uid_t *uid, gid_t *gid, pid_t *pid);

/*
 * Non-blocking connect. On completion cb is called exactly once:
 *   success: bev != NULL, error == 0; the bufferevent (BEV_OPT_CLOSE_ON_FREE,
 *            no callbacks, no timeouts, disabled) now belongs to the callee;
 *   failure: bev == NULL, error is an errno value (ETIMEDOUT on timeout,
 *            ECONNREFUSED, ENOENT for a missing unix socket, ...).
 * The callback always comes from the event loop, never from inside the
 * ev_connect_*() call (even for an immediate failure), so the caller can
 * store the handle first. NULL is returned only for bad arguments (a
 * unix path too long).
 * The handle is valid until the callback has run; ev_connect_cancel()
 * before that frees everything and the callback never runs.
 * timeout_sec <= 0 means no timeout.
 */
typedef void (*ev_connect_cb)(struct bufferevent *bev, int error, void *arg);
struct ev_connect;

struct ev_connect *ev_connect_sa(struct event_base *base,
    const struct sockaddr *sa, socklen_t salen, int timeout_sec,
    ev_connect_cb cb, void *arg);
struct ev_connect *ev_connect_unix(struct event_base *base, const char *path,
    int timeout_sec, ev_connect_cb cb, void *arg);
void ev_connect_cancel(struct ev_connect *c);

/*
 * Write what a plain socket bufferevent's output holds straight to its
 * socket, now, instead of through its write event (two epoll_ctl calls
 * and one more loop pass per write). What the socket does not take is
 * left to the bufferevent: EV_WRITE is enabled for it. -1 with errno
 * when the peer is gone, else 0.
 */
int bev_write_now(struct bufferevent *bev);

/* CLOCK_MONOTONIC in microseconds: deadlines and holds that a step of
 * the wall clock must not move. */
int64_t mono_us(void);

#endif
