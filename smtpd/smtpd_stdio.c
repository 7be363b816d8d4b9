/*
 * smtpd -s: one SMTP session on standard input and output, for
 * `sendmail -bs` (the local user's SMTP conversation, as Postfix's
 * sendmail -bs runs its smtpd). The session is the ordinary one, on one end
 * of a socketpair; two bufferevents carry bytes between stdin/stdout and
 * the other end. The client counts as local (127.0.0.1, so mynetworks),
 * and the process keeps the invoking user's rights: queued, seeing a
 * submitter that is neither root nor the mail system, records that user
 * and ignores the XFORWARD identity.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "log.h"
#include "smtpd.h"

static struct bufferevent *from_client;	/* stdin, then stdout */
static struct bufferevent *to_session;	/* our end of the socketpair */
static int stdout_fd = STDOUT_FILENO;

/* stdin -> session */
static void
client_read(struct bufferevent *bev, void *arg)
{
	(void)arg;
	bufferevent_write_buffer(to_session, bufferevent_get_input(bev));
}

static int client_done;

/* The client is done talking and all it said reached the session: let
 * the session see EOF. */
static void
session_drained(struct bufferevent *bev, void *arg)
{
	(void)arg;
	if (client_done && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		shutdown(bufferevent_getfd(bev), SHUT_WR);
}

static void
client_event(struct bufferevent *bev, short what, void *arg)
{
	(void)arg;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		bufferevent_disable(bev, EV_READ);
		client_done = 1;
		session_drained(to_session, NULL);
	}
}

/* session -> stdout, written through (stdout may be a pipe or a file) */
static void
session_read(struct bufferevent *bev, void *arg)
{
	struct evbuffer *in = bufferevent_get_input(bev);

	(void)arg;
	while (evbuffer_get_length(in) > 0)
		if (evbuffer_write(in, stdout_fd) < 0)
			break;
}

static void
session_event(struct bufferevent *bev, short what, void *arg)
{
	(void)arg;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		session_read(bev, NULL);
		event_base_loopexit(bufferevent_get_base(bev), NULL);
	}
}

int
smtpd_stdio(struct event_base *base)
{
	struct sockaddr_in local = { .sin_family = AF_INET,
	    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		log_crit("socketpair: %s", strerror(errno));
		return 1;
	}
	evutil_make_socket_nonblocking(sv[0]);
	evutil_make_socket_nonblocking(sv[1]);
	to_session = bufferevent_socket_new(base, sv[1], BEV_OPT_CLOSE_ON_FREE);
	from_client = bufferevent_socket_new(base, STDIN_FILENO, 0);
	if (to_session == NULL || from_client == NULL)
		fatal("smtpd -s: bufferevent_socket_new");
	bufferevent_setcb(from_client, client_read, NULL, client_event, NULL);
	bufferevent_setcb(to_session, session_read, session_drained, session_event, NULL);
	bufferevent_enable(from_client, EV_READ);
	bufferevent_enable(to_session, EV_READ);
	if (session_new(base, sv[0], (struct sockaddr *)&local, sizeof(local),
	    LK_SMTP) == NULL)
		return 1;
	event_base_dispatch(base);
	bufferevent_free(from_client);
	bufferevent_free(to_session);
	return 0;
}
