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
 * for good (deliver_worker.c), and then serves that owner's deliveries
 * over its own socket until it has been idle for lmtpd_worker_max_idle
 * or has made lmtpd_worker_max_use deliveries. A fork per delivery cost
 * about 8 ms of CPU (the copy of the address space, page faults, lazy
 * symbol binding again in every child), more than the rest of the
 * delivery together.
 *
 * Group commit: a worker takes a batch, not one delivery. An mbox
 * delivery starts alone, in an idle or new worker of its owner (several
 * may run for one owner: a locked mbox must not hold the others), one
 * at a time per mbox file (two would only wait for each other's lock).
 * One running past MBOX_STUCK_US is waiting for a lock someone holds:
 * the others for that file are answered 452 4.2.1 at once instead of
 * waiting here, where they count against lmtpd_process_limit, so that
 * a user holding his mbox locked while mail for him keeps coming cannot
 * make everybody else's delivery wait. Maildir deliveries run one batch at a time per owner (virtual
 * users usually share one uid): what arrives for the owner while its
 * batch runs waits here and goes out as the next batch, up to
 * lmtpd_delivery_batch_limit, whose data and links the worker makes
 * durable with two flushes in all. The number of deliveries at the
 * master is bounded by lmtpd_process_limit (deliver.c), at most
 * MASTER_MAX_WORKERS, so a worker per batch always fits: an idle worker
 * of another owner is retired to make room.
 *
 * A worker that dies or overruns lmtpd_delivery_timeout (killed) gives a
 * 4.3.0 result for each delivery of its batch not yet answered, and its
 * slot is free again. When lmtpd's session process dies, the master
 * leaves (what waits here is never started) and the workers abandon what
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

#include <bsd/sys/queue.h>

#include "conf.h"
#include "daemon.h"
#include "event.h"
#include "local_user.h"
#include "lmtpd.h"
#include "log.h"

#define MASTER_MAX_WORKERS	256
#define MBOX_STUCK_US	3000000	/* an append takes milliseconds; a lock wait,
				 * up to mailbox_lock_timeout (10 s) */

struct worker {
	pid_t pid;
	int sock;		/* the master's end; -1: a free slot */
	uid_t uid;
	gid_t gid;
	int busy, killed, retire;
	int maildir;		/* busy with a Maildir batch */
	uint64_t mbox;		/* busy with an mbox delivery: its path's hash */
	int64_t started;	/* ... since then (mono_us()) */
	int n, left;		/* deliveries in the batch; not yet answered */
	uint32_t answered;	/* bit i: the batch's delivery i is answered */
	uint32_t ids[DLV_BATCH_MAX];	/* the requests of the batch */
	time_t since;		/* busy: started; idle: last result */
	unsigned jobs;
};

static struct worker workers[MASTER_MAX_WORKERS];
static int session_sock = -1, sig_fd = -1;

/* Resolved deliveries waiting for a worker, in arrival order. */
struct pend {
	TAILQ_ENTRY(pend) entry;
	struct dlv_wjob j;
	int fd;			/* the spooled message */
	uid_t uid;
	gid_t gid;
};
static TAILQ_HEAD(, pend) pending = TAILQ_HEAD_INITIALIZER(pending);

/* The batch start_batch() is starting: out of `pending` already, its
 * messages' descriptors are the master's until sent. */
static struct pend **starting;
static int nstarting;

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
resolve(const struct dlv_req *r, struct dlv_wjob *j, uid_t *uid, gid_t *gid,
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
		/* Nothing of the master's stays: not the users table (it
		 * holds every password hash), not the other sockets, not the
		 * messages waiting for other owners. */
		close(sv[0]);
		local_user_close();
		for (int i = 0; i < MASTER_MAX_WORKERS; i++)
			if (workers[i].sock >= 0)
				close(workers[i].sock);
		struct pend *p;
		TAILQ_FOREACH(p, &pending, entry)
			close(p->fd);
		/* nor the master's copies of this batch's messages: the
		 * worker gets its own with the jobs, and a copy left here
		 * would keep each (up to message_size_limit, in the run
		 * directory) until the worker exits */
		for (int i = 0; i < nstarting; i++)
			close(starting[i]->fd);
		close(session_sock);
		close(sig_fd);
		deliver_worker_main(sv[1], uid, gid);
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

/*
 * Maildir batches running for this owner. One at a time per owner: what
 * arrives for the owner meanwhile waits and becomes the next batch, so
 * the deliveries that come together share their two flushes (with a
 * worker each, every delivery paid both). Its cost: an owner's long
 * batch (a huge message) delays that owner's next Maildir deliveries,
 * not other owners' and not mbox deliveries.
 */
#define OWNER_BATCHES 1	/* 2 measured no faster (bench/RESULTS.md) */
static int
maildir_busy(uid_t uid, gid_t gid)
{
	int n = 0;

	for (int i = 0; i < MASTER_MAX_WORKERS; i++) {
		const struct worker *w = &workers[i];
		if (w->sock >= 0 && w->busy && w->maildir && w->uid == uid && w->gid == gid)
			n++;
	}
	return n >= OWNER_BATCHES;
}


static uint64_t
path_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h | 1;	/* never 0, which means no mbox */
}

/* For an mbox delivery waiting here: 0 when its file is free, 1 while a
 * delivery to it runs, 2 when that one has run so long that it must be
 * waiting for the lock. */
static int
mbox_busy(const struct pend *p)
{
	uint64_t h = path_hash(p->j.path);

	for (int i = 0; i < MASTER_MAX_WORKERS; i++) {
		const struct worker *w = &workers[i];
		if (w->sock >= 0 && w->busy && w->mbox == h)
			return mono_us() - w->started >= MBOX_STUCK_US ? 2 : 1;
	}
	return 0;
}

static void
pend_free(struct pend *p)
{
	if (p->fd >= 0)
		close(p->fd);
	free(p);
}

/* Send b[0..n) to one worker as a batch; each gets an answer, now (when
 * that fails) or from the worker. The pends are freed. */
static void
start_batch(struct pend **b, int n)
{
	starting = b;
	nstarting = n;
	struct worker *w = worker_for(b[0]->uid, b[0]->gid);
	const char *fail = w == NULL ? "cannot start a delivery process" : NULL;

	nstarting = 0;

	for (int i = 0; i < n && fail == NULL; i++) {
		b[i]->j.index = (uint32_t)i;
		b[i]->j.count = (uint32_t)n;
		if (fd_send(w->sock, &b[i]->j, sizeof(b[i]->j), b[i]->fd, 0) < 0) {
			fail = "cannot reach the delivery process";
			worker_close(w);
		}
	}
	if (fail == NULL) {
		w->busy = 1;
		w->killed = 0;
		w->maildir = b[0]->j.maildir;
		w->mbox = w->maildir ? 0 : path_hash(b[0]->j.path);
		w->started = mono_us();
		w->n = w->left = n;
		w->answered = 0;
		w->since = time(NULL);
	}
	for (int i = 0; i < n; i++) {
		if (fail != NULL)
			send_result(session_sock, b[i]->j.req.id, DLV_TEMP, fail);
		else
			w->ids[i] = b[i]->j.req.id;
		pend_free(b[i]);
	}
}

/* The batch that starts with p: an mbox delivery alone; a Maildir one
 * with the owner's other waiting Maildir deliveries, in arrival order, up
 * to lmtpd_delivery_batch_limit. */
static void
take_batch(struct pend *p)
{
	struct pend *b[DLV_BATCH_MAX], *q, *next;
	int n = 0, limit = (int)conf_num(C_lmtpd_delivery_batch_limit);

	if (limit > DLV_BATCH_MAX)
		limit = DLV_BATCH_MAX;
	for (q = p; q != NULL && n < (p->j.maildir ? limit : 1); q = next) {
		next = TAILQ_NEXT(q, entry);
		if (q == p || (q->j.maildir && q->uid == p->uid && q->gid == p->gid)) {
			TAILQ_REMOVE(&pending, q, entry);
			b[n++] = q;
		}
	}
	start_batch(b, n);
}

/*
 * Gathering. queued hands the messages of one commit over on as many LMTP
 * connections at once, so their requests reach the master one by one,
 * tens of microseconds apart. Started at once, the first went out alone
 * and the rest as a second batch: two batches and four flushes where one
 * batch and two flushes do (at 100 clients lmtpd made four flushes for
 * each of queued's). So each request carries the session process's
 * count of deliveries likely to follow (deliver.c), and while it is not
 * zero, Maildir batches wait for them, at most BATCH_HOLD_US after the
 * first request that waits. A lone delivery says 0 and starts at once;
 * so does the last of a burst.
 */
#define BATCH_HOLD_US	10000	/* at 100 clients, messages per flush call: 2000 gave
				 * 4.4-5.0, 5000 4.4-5.5, 10000 5.2-6.2, and no change
				 * in throughput at 10 or 100 clients (bench/RESULTS.md) */
static int64_t hold_until;	/* monotonic microseconds; 0: not holding */

/* A delivery request came with its hint. */
static void
hold_update(uint32_t more)
{
	if (more == 0)
		hold_until = 0;
	else if (hold_until == 0)
		hold_until = mono_us() + BATCH_HOLD_US;
}

/* 1 while Maildir batches wait for more requests. */
static int
holding(void)
{
	if (hold_until != 0 && mono_us() >= hold_until)
		hold_until = 0;
	return hold_until != 0;
}

/* May p start now? An mbox delivery whose file is stuck behind a lock
 * is answered here (and freed): 0 then. */
static int
can_start(struct pend *p, int hold)
{
	if (p->j.maildir)
		return !hold && !maildir_busy(p->uid, p->gid);
	switch (mbox_busy(p)) {
	case 0:
		return 1;
	case 2:
		send_result(session_sock, p->j.req.id, DLV_LOCKED,
		    "mailbox locked: another delivery to it waits for the lock");
		TAILQ_REMOVE(&pending, p, entry);
		pend_free(p);
		return 0;
	default:
		return 0;
	}
}

/* Start every delivery that can start: mbox ones when no other runs for
 * their file, Maildir ones when their owner has no batch running and no
 * more are expected. */
static void
schedule(void)
{
	struct pend *p, *next;
	int hold = holding();

	for (;;) {
		TAILQ_FOREACH_SAFE(p, &pending, entry, next) {
			if (can_start(p, hold))
				break;
		}
		if (p == NULL)
			return;
		take_batch(p);
	}
}

/* A request resolved: it waits for schedule(). */
static void
enqueue(const struct dlv_req *r, int msgfd)
{
	struct dlv_detail d = { "" };
	struct pend *p = calloc(1, sizeof(*p));
	enum dlv_status st;

	if (p == NULL) {
		send_result(session_sock, r->id, DLV_TEMP, "out of memory");
		return;
	}
	if ((st = resolve(r, &p->j, &p->uid, &p->gid, &d)) != DLV_OK) {
		send_result(session_sock, r->id, st, d.text);
		free(p);
		return;
	}
	p->fd = dup(msgfd);
	TAILQ_INSERT_TAIL(&pending, p, entry);
}

/* The worker is done with its batch. */
static void
worker_idle(struct worker *w)
{
	w->busy = 0;
	w->since = time(NULL);
	w->jobs += (unsigned)w->n;
	if (w->jobs >= (unsigned)conf_num(C_lmtpd_worker_max_use) || w->retire)
		worker_close(w);
}

/* Pass one result on, as the request's: the worker has no say in whose.
 * Returns 0 for a result that is not one of its batch's. */
static int
relay(struct worker *w, struct dlv_res *res)
{
	uint32_t i = res->id;

	if (!w->busy || i >= (uint32_t)w->n || (w->answered & (1u << i)))
		return 0;
	w->answered |= 1u << i;
	res->id = w->ids[i];
	res->detail[sizeof(res->detail) - 1] = '\0';
	while (send(session_sock, res, sizeof(*res), MSG_NOSIGNAL) < 0 && errno == EINTR)
		;
	if (--w->left == 0)
		worker_idle(w);
	return 1;
}

/* A worker's socket is readable: results, or it is gone (every delivery
 * of its batch not yet answered gets 4.3.0). */
static void
worker_input(struct worker *w)
{
	struct dlv_res res;
	ssize_t n;

	for (;;) {
		n = recv(w->sock, &res, sizeof(res), MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n != (ssize_t)sizeof(res) || !relay(w, &res))
			break;
		if (w->sock < 0)
			return;		/* retired after its batch */
	}
	for (int i = 0; w->busy && i < w->n; i++)
		if (!(w->answered & (1u << i)))
			send_result(session_sock, w->ids[i], DLV_TEMP, w->killed ?
			    "delivery timed out" : "delivery process failed");
	w->busy = 0;
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

/* Everything the session process has sent (a bounded number per turn),
 * so that deliveries arriving together can go out as one batch. */
static void
session_input(int *eof)
{
	for (int k = 0; k < 256 && !*eof; k++) {
		struct dlv_req r;
		int fd;
		ssize_t n = fd_recv(session_sock, &r, sizeof(r), &fd, MSG_DONTWAIT);

		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0)
			*eof = 1;
		else if (n == (ssize_t)sizeof(r) && r.type == DLV_REQ_RELOAD) {
			daemon_reload_config();
			workers_retire();
		} else if (n == (ssize_t)sizeof(r)) {
			r.sender[sizeof(r.sender) - 1] = r.rcpt[sizeof(r.rcpt) - 1] = '\0';
			r.qid[sizeof(r.qid) - 1] = '\0';
			if (fd < 0)
				send_result(session_sock, r.id, DLV_TEMP, "spooled message not passed");
			else
				enqueue(&r, fd);
			hold_update(r.more);
		}
		if (fd >= 0)
			close(fd);
	}
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
	 * their sockets closed, abandon what they have not committed; what
	 * still waits here is never started. */
	while (!eof) {
		p[0] = (struct pollfd){ sig_fd, POLLIN, 0 };
		p[1] = (struct pollfd){ session_sock, POLLIN, 0 };
		/* only live workers: the kernel walks every entry (perf:
		 * a full table cost a few % of lmtpd's CPU per delivery) */
		int n = 0;
		for (int i = 0; i < MASTER_MAX_WORKERS; i++)
			if (workers[i].sock >= 0) {
				idx[n] = i;
				p[2 + n++] = (struct pollfd){ workers[i].sock, POLLIN, 0 };
			}
		/* a second, or what is left of a hold */
		struct timespec ts = { 1, 0 };
		if (holding()) {
			int64_t left = hold_until - mono_us();
			ts = (struct timespec){ 0, (long)(left > 0 ? left : 0) * 1000 };
		}
		if (ppoll(p, 2 + (nfds_t)n, &ts, NULL) < 0 && errno != EINTR)
			fatal_sys("ppoll");
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
			eof = 1;
		else if (p[1].revents)
			session_input(&eof);
		if (!eof)
			schedule();
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
