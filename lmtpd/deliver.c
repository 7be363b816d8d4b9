/*
 * Event-loop side of the delivery master (deliver.h): a FIFO of
 * requests, at most lmtpd_process_limit outstanding at the master, the
 * results matched back to their sessions by id. The socket to the master
 * is SOCK_SEQPACKET, so every request and every result is one datagram.
 *
 * Requests go out at the end of the loop's turn, not one by one as they
 * are submitted, and each carries a hint: how many more deliveries are
 * likely to follow it soon (the requests sent after it in this turn and
 * the transactions open in other sessions). The master waits for those,
 * briefly, so that deliveries arriving together make one batch
 * (deliver_master.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <bsd/sys/queue.h>

#include "conf.h"
#include "deliver.h"
#include "lmtp_session.h"
#include "log.h"
#include "xalloc.h"

struct job {
	TAILQ_ENTRY(job) entry;
	struct dlv_req req;
	int fd;		/* borrowed from the session until the job is sent */
	deliver_cb cb;
	void *arg;
	unsigned slot;
};
TAILQ_HEAD(jobq, job);

static struct jobq waiting = TAILQ_HEAD_INITIALIZER(waiting);
static struct jobq running = TAILQ_HEAD_INITIALIZER(running);
static unsigned nwaiting, nrunning;
static int msock = -1;
static uint32_t next_id;
static struct event *ev_read, *ev_write, *ev_pump;

static void
job_free(struct job *j)
{
	free(j);
}

static int
send_req(const struct dlv_req *r, int fd)
{
	return fd_send(msock, r, sizeof(*r), fd, MSG_DONTWAIT);
}

/* Start what the limit allows; wait for writability when the socket is
 * full. */
static void
pump(void)
{
	struct job *j;
	unsigned limit = (unsigned)conf_num(C_lmtpd_process_limit);
	unsigned open = lmtp_sessions_in_transaction();

	while ((j = TAILQ_FIRST(&waiting)) != NULL && nrunning < limit) {
		/* at most what the limit lets through after this one */
		unsigned more = nwaiting - 1 + open, room = limit - nrunning - 1;
		j->req.more = more < room ? more : room;
		if (send_req(&j->req, j->fd) < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				fatal_sys("lmtpd: delivery master socket");
			event_add(ev_write, NULL);
			return;
		}
		j->fd = -1;	/* the master has its own copy now */
		TAILQ_REMOVE(&waiting, j, entry);
		nwaiting--;
		TAILQ_INSERT_TAIL(&running, j, entry);
		nrunning++;
	}
}

static void
on_result(const struct dlv_res *res)
{
	struct job *j;

	TAILQ_FOREACH(j, &running, entry) {
		if (j->req.id == res->id)
			break;
	}
	if (j == NULL) {
		log_warn("delivery result for unknown request %u", res->id);
		return;
	}
	TAILQ_REMOVE(&running, j, entry);
	nrunning--;
	enum dlv_status st = res->status >= 0 && res->status < DLV_NSTATUS ?
	    (enum dlv_status)res->status : DLV_TEMP;
	char detail[DLV_DETAIL_MAX];
	snprintf(detail, sizeof(detail), "%.*s", (int)sizeof(res->detail) - 1, res->detail);
	if (j->cb != NULL)
		j->cb(j->arg, j->slot, st, detail);
	job_free(j);
}

static void
on_readable(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	(void)arg;
	for (int i = 0; i < 64; i++) {
		struct dlv_res res;
		ssize_t n = recv(fd, &res, sizeof(res), MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			break;
		if (n <= 0)
			fatal("lmtpd: the delivery master went away");
		if (n == (ssize_t)sizeof(res))
			on_result(&res);
	}
	pump();
}

/* on_writable, and ev_pump (activated by deliver_submit) */
static void
on_writable(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	pump();
}

void
deliver_init(struct event_base *base, int master_sock)
{
	msock = master_sock;
	evutil_make_socket_nonblocking(msock);
	ev_read = event_new(base, msock, EV_READ | EV_PERSIST, on_readable, NULL);
	ev_write = event_new(base, msock, EV_WRITE, on_writable, NULL);
	ev_pump = event_new(base, -1, 0, on_writable, NULL);
	event_add(ev_read, NULL);
}

void
deliver_submit(int msgfd, const char *qid, const char *sender, const char *rcpt,
    deliver_cb cb, void *arg, unsigned slot)
{
	struct job *j = xcalloc(1, sizeof(*j));

	j->req.type = DLV_REQ_DELIVER;
	j->req.id = ++next_id;
	snprintf(j->req.qid, sizeof(j->req.qid), "%s", qid);
	snprintf(j->req.sender, sizeof(j->req.sender), "%s", sender);
	snprintf(j->req.rcpt, sizeof(j->req.rcpt), "%s", rcpt);
	j->fd = msgfd;
	j->cb = cb;
	j->arg = arg;
	j->slot = slot;
	TAILQ_INSERT_TAIL(&waiting, j, entry);
	nwaiting++;
	event_active(ev_pump, 0, 0);	/* again while active: a no-op */
}

void
deliver_cancel(void *arg)
{
	struct job *j, *tmp;

	TAILQ_FOREACH_SAFE(j, &waiting, entry, tmp) {
		if (j->arg == arg) {
			TAILQ_REMOVE(&waiting, j, entry);
			nwaiting--;
			job_free(j);
		}
	}
	TAILQ_FOREACH(j, &running, entry) {
		if (j->arg == arg)
			j->cb = NULL;
	}
}

void
deliver_reload(void)
{
	struct dlv_req r;

	memset(&r, 0, sizeof(r));
	r.type = DLV_REQ_RELOAD;
	if (send_req(&r, -1) < 0)
		log_warn("cannot pass the reload to the delivery master");
}

unsigned
deliver_pending(void)
{
	return nwaiting + nrunning;
}

void
deliver_shutdown(void)
{
	if (ev_read != NULL) {
		event_free(ev_read);
		event_free(ev_write);
		event_free(ev_pump);
		ev_read = ev_write = ev_pump = NULL;
	}
	if (msock >= 0)
		close(msock);
	msock = -1;
}
