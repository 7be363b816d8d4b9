/*
 * The delivery master: forked by lmtpd before it drops privileges, it
 * keeps them (root in production) and never parses network bytes. It
 * reads fixed-size requests (plus the spooled message's descriptor) from
 * the event-loop process over a SOCK_SEQPACKET socket, looks the
 * recipient up itself (so a compromised session process cannot name an
 * arbitrary uid or path), and hands the delivery to a worker running as
 * the mailbox owner.
 *
 * Workers are kept: one is forked for an owner (uid, gid), drops to it
 * for good, and then serves that owner's deliveries one at a time over
 * its own socket until it has been idle for lmtpd_worker_max_idle or has
 * made lmtpd_worker_max_use deliveries. Several may run for one owner (virtual users usually share
 * one uid). A fork per delivery cost about 8 ms of CPU (the copy of the
 * address space, page faults, lazy symbol binding again in every child),
 * more than the rest of the delivery together. The number of deliveries
 * at the master is bounded by lmtpd_process_limit (deliver.c), at most
 * MASTER_MAX_WORKERS, so a busy worker per request always fits: an idle
 * worker of another owner is retired to make room.
 *
 * A worker that dies or overruns lmtpd_delivery_timeout (killed) gives a
 * 4.3.0 result for its delivery, and its slot is free again. When lmtpd's
 * session process dies, the master leaves and the workers abandon what
 * they have not committed (dlv_abandoned): queued delivers it again, so
 * the crash costs no duplicate.
 */
#include <errno.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "daemon.h"
#include "local_user.h"
#include "lmtpd.h"
#include "log.h"

#define MASTER_MAX_WORKERS	256

/* Master -> worker: one delivery, decided by the master. */
struct wjob {
	struct dlv_req req;
	char path[LU_PATH_MAX];
	int32_t maildir;
	int64_t quota;
};

struct worker {
	pid_t pid;
	int sock;		/* the master's end; -1: a free slot */
	uid_t uid;
	gid_t gid;
	int busy, killed, retire;
	uint32_t id;		/* the request being delivered */
	time_t since;		/* busy: started; idle: last result */
	unsigned jobs;
};

static struct worker workers[MASTER_MAX_WORKERS];
static int session_sock = -1, sig_fd = -1;
static int worker_sock = -1;	/* in a worker: its end */

int (*dlv_abandoned)(void);

/* In a worker: the master closed our socket (it does when lmtpd's
 * session process is gone). */
static int
master_gone(void)
{
	char b;

	return recv(worker_sock, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

/* Whose rights a delivery takes: the table's uid/gid, else (as root)
 * the unprivileged service account, like Postfix's default_privs. */
static int
owner_of(const struct local_user *lu, uid_t *uid, gid_t *gid)
{
	if (geteuid() != 0) {
		*uid = geteuid();
		*gid = getegid();
		return 0;
	}
	*uid = lu->uid;
	*gid = lu->gid;
	if (lu->uid == (uid_t)-1) {
		struct passwd *pw = getpwnam(conf_str(C_user));
		if (pw == NULL)
			return -1;
		*uid = pw->pw_uid;
		*gid = pw->pw_gid;
	}
	if (*gid == (gid_t)-1) {
		struct passwd *pw = getpwuid(*uid);
		if (pw == NULL)
			return -1;
		*gid = pw->pw_gid;
	}
	return 0;
}

/* In the master: whose mailbox, where, with whose rights; a missing mbox
 * created while still root. */
static enum dlv_status
resolve(const struct dlv_req *r, struct wjob *j, uid_t *uid, gid_t *gid,
    struct dlv_detail *d)
{
	struct local_user lu;

	switch (local_user_find(r->rcpt, NULL, &lu)) {
	case LU_FOUND:
		break;
	case LU_NOTFOUND:
		/* It was found at RCPT a moment ago: a table being replaced
		 * is likelier than a user removed, and a bounce cannot be
		 * taken back. Defer; the retry's RCPT gives 550 if it stays. */
		dlv_detailf(d, "recipient no longer in the users table");
		return DLV_TEMPLOOKUP;
	default:
		dlv_detailf(d, "users table lookup failed");
		return DLV_TEMPLOOKUP;
	}
	if (owner_of(&lu, uid, gid) < 0 || (geteuid() == 0 && *uid == 0)) {
		dlv_detailf(d, "refusing to deliver with root's or unknown rights");
		return DLV_UNSAFE;
	}
	j->req = *r;
	snprintf(j->path, sizeof(j->path), "%s", lu.mailbox);
	j->maildir = lu.is_maildir;
	j->quota = (int64_t)lu.quota;
	if (geteuid() == 0 && !j->maildir)
		mbox_precreate(j->path, *uid, *gid);
	return DLV_OK;
}

/* In a worker, with the owner's rights: write the message. */
static enum dlv_status
deliver_job(const struct wjob *j, int msgfd, struct dlv_detail *d)
{
	struct dlv_target t = { j->path, j->maildir, geteuid(), getegid(),
				j->quota };
	struct stat st;
	int loop;

	if (msgfd < 0 || fstat(msgfd, &st) < 0) {
		dlv_detailf(d, "spooled message: %s", msgfd < 0 ?
		    "not passed" : strerror(errno));
		return DLV_TEMP;
	}
	struct dlv_msg m = { msgfd, st.st_size, j->req.sender, j->req.rcpt,
			     j->req.qid };
	if ((loop = msg_delivered_to(&m)) != 0) {
		dlv_detailf(d, loop > 0 ? "mail forwarding loop for %s" :
		    "cannot read spooled message", j->req.rcpt);
		return loop > 0 ? DLV_LOOP : DLV_TEMP;
	}
	return t.maildir ? maildir_deliver(&m, &t, d) : mbox_deliver(&m, &t, d);
}

static void
send_result(int sock, uint32_t id, enum dlv_status st, const char *detail)
{
	struct dlv_res res;

	memset(&res, 0, sizeof(res));
	res.id = id;
	res.status = (int32_t)st;
	snprintf(res.detail, sizeof(res.detail), "%s", detail);
	while (send(sock, &res, sizeof(res), MSG_NOSIGNAL) < 0 && errno == EINTR)
		;
}

/* ---- a worker ---------------------------------------------------------------- */

static void
worker_main(int sock, uid_t uid, gid_t gid)
{
	struct wjob j;
	int fd;
	ssize_t n;

	prctl(PR_SET_NAME, "lmtpd-deliver", 0, 0, 0);
	signal(SIGTERM, SIG_IGN);	/* a delivery finishes, bounded by its timeout */
	signal(SIGHUP, SIG_IGN);
	/* Nothing of the master's stays: not the users table (it holds
	 * every password hash), not the other sockets. */
	local_user_close();
	for (int i = 0; i < MASTER_MAX_WORKERS; i++)
		if (workers[i].sock >= 0)
			close(workers[i].sock);
	close(session_sock);
	close(sig_fd);
	worker_sock = sock;
	dlv_abandoned = master_gone;
	if (geteuid() == 0 && priv_become(uid, gid) < 0) {
		log_crit("delivery worker: cannot become uid %u: %s",
		    (unsigned)uid, strerror(errno));
		_exit(1);
	}
	while ((n = fd_recv(sock, &j, sizeof(j), &fd)) > 0) {
		struct dlv_detail d = { "" };
		enum dlv_status st = DLV_TEMP;

		if (n != (ssize_t)sizeof(j))
			dlv_detailf(&d, "malformed request");
		else {
			j.path[sizeof(j.path) - 1] = '\0';
			st = deliver_job(&j, fd, &d);
		}
		if (fd >= 0)
			close(fd);
		send_result(sock, j.req.id, st, d.text);
	}
	_exit(0);
}

/* ---- the master's pool --------------------------------------------------------- */

static void
worker_close(struct worker *w)
{
	close(w->sock);
	w->sock = -1;		/* it reads EOF and exits; reaped by SIGCHLD */
}

static struct worker *
worker_spawn(struct worker *w, uid_t uid, gid_t gid)
{
	int sv[2];
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return NULL;
	if ((pid = fork()) < 0) {
		close(sv[0]);
		close(sv[1]);
		return NULL;
	}
	if (pid == 0) {
		close(sv[0]);
		worker_main(sv[1], uid, gid);
	}
	close(sv[1]);
	*w = (struct worker){ .pid = pid, .sock = sv[0], .uid = uid, .gid = gid,
			      .since = time(NULL) };
	return w;
}

/* An idle worker of this owner, else a new one in a free slot (or in
 * the slot of an idle worker of another owner). */
static struct worker *
worker_for(uid_t uid, gid_t gid)
{
	struct worker *free_slot = NULL, *other = NULL;

	for (int i = 0; i < MASTER_MAX_WORKERS; i++) {
		struct worker *w = &workers[i];

		if (w->sock < 0) {
			if (free_slot == NULL)
				free_slot = w;
		} else if (!w->busy && !w->retire) {
			if (w->uid == uid && w->gid == gid)
				return w;
			if (other == NULL || w->since < other->since)
				other = w;
		}
	}
	if (free_slot == NULL && other != NULL) {
		worker_close(other);
		free_slot = other;
	}
	return free_slot != NULL ? worker_spawn(free_slot, uid, gid) : NULL;
}

static void
dispatch(const struct dlv_req *r, int msgfd)
{
	struct dlv_detail d = { "" };
	struct wjob j;
	struct worker *w;
	uid_t uid;
	gid_t gid;
	enum dlv_status st;

	memset(&j, 0, sizeof(j));
	if ((st = resolve(r, &j, &uid, &gid, &d)) != DLV_OK) {
		send_result(session_sock, r->id, st, d.text);
		return;
	}
	if ((w = worker_for(uid, gid)) == NULL) {
		send_result(session_sock, r->id, DLV_TEMP,
		    "cannot start a delivery process");
		return;
	}
	if (fd_send(w->sock, &j, sizeof(j), msgfd, 0) < 0) {
		send_result(session_sock, r->id, DLV_TEMP,
		    "cannot reach the delivery process");
		worker_close(w);
		return;
	}
	w->busy = 1;
	w->killed = 0;
	w->id = r->id;
	w->since = time(NULL);
}

/* A worker's socket is readable: its result, or it is gone. */
static void
worker_input(struct worker *w)
{
	struct dlv_res res;
	ssize_t n;

	while ((n = recv(w->sock, &res, sizeof(res), 0)) < 0 && errno == EINTR)
		;
	if (n == (ssize_t)sizeof(res) && w->busy) {
		res.id = w->id;		/* the worker has no say in whose */
		res.detail[sizeof(res.detail) - 1] = '\0';
		while (send(session_sock, &res, sizeof(res), MSG_NOSIGNAL) < 0 &&
		    errno == EINTR)
			;
		w->busy = 0;
		w->since = time(NULL);
		if (++w->jobs >= (unsigned)conf_num(C_lmtpd_worker_max_use) || w->retire)
			worker_close(w);
		return;
	}
	if (w->busy)
		send_result(session_sock, w->id, DLV_TEMP, w->killed ?
		    "delivery timed out" : "delivery process failed");
	worker_close(w);
}

/* Kill the overdue, let the long idle go. */
static void
worker_timers(void)
{
	time_t now = time(NULL);

	for (int i = 0; i < MASTER_MAX_WORKERS; i++) {
		struct worker *w = &workers[i];

		if (w->sock < 0)
			continue;
		if (w->busy && !w->killed &&
		    now - w->since > conf_num(C_lmtpd_delivery_timeout)) {
			kill(w->pid, SIGKILL);
			w->killed = 1;
		} else if (!w->busy && now - w->since >= conf_num(C_lmtpd_worker_max_idle))
			worker_close(w);
	}
}

/* After a reload the workers start over with the new settings. */
static void
workers_retire(void)
{
	for (int i = 0; i < MASTER_MAX_WORKERS; i++) {
		if (workers[i].sock < 0)
			continue;
		if (workers[i].busy)
			workers[i].retire = 1;
		else
			worker_close(&workers[i]);
	}
}

static void
session_input(int *eof)
{
	struct dlv_req r;
	int fd;
	ssize_t n = fd_recv(session_sock, &r, sizeof(r), &fd);

	if (n <= 0)
		*eof = n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
	else if (n == (ssize_t)sizeof(r) && r.type == DLV_REQ_RELOAD) {
		daemon_reload_config();
		workers_retire();
	} else if (n == (ssize_t)sizeof(r)) {
		r.sender[sizeof(r.sender) - 1] = r.rcpt[sizeof(r.rcpt) - 1] = '\0';
		r.qid[sizeof(r.qid) - 1] = '\0';
		dispatch(&r, fd);
	}
	if (fd >= 0)
		close(fd);
}

static void
master_loop(void)
{
	struct pollfd p[2 + MASTER_MAX_WORKERS];
	int idx[MASTER_MAX_WORKERS];	/* p[2 + k] is workers[idx[k]] */
	sigset_t mask;
	int eof = 0;

	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	if ((sig_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK)) < 0)
		fatal_sys("signalfd");
	for (int i = 0; i < MASTER_MAX_WORKERS; i++)
		workers[i].sock = -1;
	/* At the session's EOF the master leaves at once: lmtpd waits for
	 * its deliveries before it closes the socket when it stops, so an
	 * EOF with deliveries running is a crash, and the workers, seeing
	 * their sockets closed, abandon what they have not committed. */
	while (!eof) {
		p[0] = (struct pollfd){ sig_fd, POLLIN, 0 };
		p[1] = (struct pollfd){ eof ? -1 : session_sock, POLLIN, 0 };
		/* only live workers: the kernel walks every entry (perf:
		 * a full table cost a few % of lmtpd's CPU per delivery) */
		int n = 0;
		for (int i = 0; i < MASTER_MAX_WORKERS; i++)
			if (workers[i].sock >= 0) {
				idx[n] = i;
				p[2 + n++] = (struct pollfd){ workers[i].sock, POLLIN, 0 };
			}
		if (poll(p, 2 + (nfds_t)n, 1000) < 0 && errno != EINTR)
			fatal_sys("poll");
		if (p[0].revents) {
			struct signalfd_siginfo si;
			while (read(sig_fd, &si, sizeof(si)) > 0)
				;
			while (waitpid(-1, NULL, WNOHANG) > 0)
				;	/* results come by the sockets */
		}
		for (int k = 0; k < n; k++)
			if (workers[idx[k]].sock >= 0 && p[2 + k].revents)
				worker_input(&workers[idx[k]]);
		if (p[1].revents & (POLLHUP | POLLERR))
			eof = 1;	/* requests still queued from a dead
					 * session process are not started */
		else if (p[1].revents)
			session_input(&eof);
		worker_timers();
	}
	_exit(0);
}

int
deliver_master_start(void)
{
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		fatal_sys("socketpair");
	pid_t pid = fork();
	if (pid < 0)
		fatal_sys("fork");
	if (pid == 0) {
		close(sv[0]);
		signal(SIGTERM, SIG_IGN);	/* we end when lmtpd closes the socket */
		signal(SIGHUP, SIG_IGN);
		signal(SIGPIPE, SIG_IGN);
		prctl(PR_SET_NAME, "lmtpd-master", 0, 0, 0);	/* for ps -o comm */
		session_sock = sv[1];
		master_loop();
	}
	close(sv[1]);
	return sv[0];
}
