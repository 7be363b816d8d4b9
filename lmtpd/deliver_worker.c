/*
 * A delivery worker: one process of one mailbox owner, forked and kept by
 * the delivery master (deliver_master.c), serving the batches of
 * deliveries the master resolved. A batch is read whole; its Maildir
 * deliveries are written and made durable together (maildir.c: two
 * flushes for the batch, not two per delivery); an mbox delivery (the
 * master sends each alone) keeps mbox.c's lock, fsync and cut-back. Only
 * then does a result go back for each delivery, so nobody hears 250
 * before their mail is on disk, and a failure of one delivery is that
 * delivery's alone.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon.h"
#include "lmtpd.h"
#include "log.h"

int (*dlv_abandoned)(void);

static int worker_sock = -1;

/* One batch, whole; static: a worker does one at a time. */
static struct dlv_wjob jobs[DLV_BATCH_MAX];
static int fds[DLV_BATCH_MAX];
static struct dlv_res results[DLV_BATCH_MAX];
static struct md_item md[DLV_BATCH_MAX];

/* The master closed our socket (it does when lmtpd's session process is
 * gone). */
static int
master_gone(void)
{
	char b;

	return recv(worker_sock, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

/* The jobs of one batch, sent in a row: their number, 0 at EOF, -1 for
 * anything malformed (the worker then leaves and the master answers
 * 4.3.0 for the batch). */
static int
read_batch(void)
{
	int n = 0, count = 1;

	while (n < count) {
		ssize_t r = fd_recv(worker_sock, &jobs[n], sizeof(jobs[n]), &fds[n], 0);
		struct dlv_wjob *j = &jobs[n];

		if (r == 0 && n == 0)
			return 0;
		if (r != (ssize_t)sizeof(*j) || j->index != (uint32_t)n || j->count == 0 ||
		    j->count > DLV_BATCH_MAX || (n > 0 && j->count != (uint32_t)count))
			return -1;
		count = (int)j->count;
		j->path[sizeof(j->path) - 1] = '\0';
		j->req.qid[sizeof(j->req.qid) - 1] = '\0';
		j->req.sender[sizeof(j->req.sender) - 1] = '\0';
		j->req.rcpt[sizeof(j->req.rcpt) - 1] = '\0';
		n++;
	}
	return n;
}

/* What every delivery checks first: the message is there, no loop. */
static enum dlv_status
prepare(int i, struct dlv_msg *m, struct dlv_target *t, struct dlv_detail *d)
{
	const struct dlv_wjob *j = &jobs[i];
	struct stat st;
	int loop;

	*t = (struct dlv_target){ j->path, j->maildir, geteuid(), getegid(), j->quota };
	if (fds[i] < 0 || fstat(fds[i], &st) < 0) {
		dlv_detailf(d, "spooled message: %s", fds[i] < 0 ?
		    "not passed" : strerror(errno));
		return DLV_TEMP;
	}
	*m = (struct dlv_msg){ fds[i], st.st_size, j->req.sender, j->req.rcpt, j->req.qid };
	if ((loop = msg_delivered_to(m)) != 0) {
		dlv_detailf(d, loop > 0 ? "mail forwarding loop for %s" :
		    "cannot read spooled message", j->req.rcpt);
		return loop > 0 ? DLV_LOOP : DLV_TEMP;
	}
	return DLV_OK;
}

static void
set_result(int i, enum dlv_status st, const struct dlv_detail *d)
{
	memset(&results[i], 0, sizeof(results[i]));
	results[i].id = (uint32_t)i;
	results[i].status = (int32_t)st;
	snprintf(results[i].detail, sizeof(results[i].detail), "%s", d->text);
}

static void
run_batch(int n)
{
	int map[DLV_BATCH_MAX], nmd = 0;

	for (int i = 0; i < n; i++) {
		struct dlv_msg m;
		struct dlv_target t;
		struct dlv_detail d = { "" };
		enum dlv_status st = prepare(i, &m, &t, &d);

		if (st == DLV_OK && t.maildir) {
			md[nmd] = (struct md_item){ .m = m, .t = t, .st = DLV_OK };
			map[nmd++] = i;
			continue;
		}
		if (st == DLV_OK)
			st = mbox_deliver(&m, &t, &d);
		set_result(i, st, &d);
	}
	maildir_deliver_batch(md, nmd);
	for (int k = 0; k < nmd; k++)
		set_result(map[k], md[k].st, &md[k].d);
	for (int i = 0; i < n; i++)
		while (send(worker_sock, &results[i], sizeof(results[i]), MSG_NOSIGNAL) < 0 &&
		    errno == EINTR)
			;
}

void
deliver_worker_main(int sock, uid_t uid, gid_t gid)
{
	int n;

	prctl(PR_SET_NAME, "lmtpd-deliver", 0, 0, 0);
	signal(SIGTERM, SIG_IGN);	/* a batch finishes, bounded by its timeout */
	signal(SIGHUP, SIG_IGN);
	worker_sock = sock;
	dlv_abandoned = master_gone;
	if (geteuid() == 0 && priv_become(uid, gid) < 0) {
		log_crit("delivery worker: cannot become uid %u: %s",
		    (unsigned)uid, strerror(errno));
		_exit(1);
	}
	while ((n = read_batch()) > 0) {
		run_batch(n);
		for (int i = 0; i < n; i++)
			if (fds[i] >= 0)
				close(fds[i]);
	}
	_exit(n < 0);
}
