/*
 * The delivery master: forked by lmtpd before it drops privileges, it
 * keeps them (root in production) and never parses network bytes. It
 * reads fixed-size requests (plus the spooled message's descriptor) from
 * the event-loop process over a SOCK_SEQPACKET socket, forks one child
 * per delivery and reaps them; the child looks the recipient up itself
 * (so a compromised session process cannot name an arbitrary uid or
 * path), becomes the mailbox owner, writes, and sends its result as one
 * datagram. A child that dies or overruns lmtpd_delivery_timeout gets a
 * 4.3.0 result from the master instead.
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

#define MASTER_MAX_CHILDREN 256

struct child {
	pid_t pid;
	uint32_t id;
	time_t start;
};

static struct child children[MASTER_MAX_CHILDREN];
static int nchildren;

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

enum dlv_status
deliver_one(const struct dlv_req *r, int msgfd, struct dlv_detail *d)
{
	struct local_user lu;
	struct dlv_target t;
	struct stat st;

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
	t.path = lu.mailbox;
	t.maildir = lu.is_maildir;
	t.quota = (long long)lu.quota;
	if (owner_of(&lu, &t.uid, &t.gid) < 0 || (geteuid() == 0 && t.uid == 0)) {
		dlv_detailf(d, "refusing to deliver with root's or unknown rights");
		return DLV_UNSAFE;
	}
	local_user_close();
	if (geteuid() == 0 && !t.maildir)
		mbox_precreate(t.path, t.uid, t.gid);
	if (geteuid() == 0 && priv_become(t.uid, t.gid) < 0) {
		dlv_detailf(d, "cannot become uid %u: %s", (unsigned)t.uid, strerror(errno));
		return DLV_TEMP;
	}
	if (fstat(msgfd, &st) < 0) {
		dlv_detailf(d, "spooled message: %s", strerror(errno));
		return DLV_TEMP;
	}
	struct dlv_msg m = { msgfd, st.st_size, r->sender, r->rcpt, r->qid };
	int loop = msg_delivered_to(&m);
	if (loop != 0) {
		dlv_detailf(d, loop > 0 ? "mail forwarding loop for %s" :
		    "cannot read spooled message", r->rcpt);
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

static void
child_main(int sock, const struct dlv_req *r, int msgfd)
{
	struct dlv_detail d = { "" };
	enum dlv_status st;

	prctl(PR_SET_NAME, "lmtpd-deliver", 0, 0, 0);
	signal(SIGTERM, SIG_IGN);	/* a delivery finishes, bounded by its timeout */
	signal(SIGHUP, SIG_IGN);
	st = deliver_one(r, msgfd, &d);
	send_result(sock, r->id, st, d.text);
	_exit(0);
}

/* Receive one datagram with an optional descriptor. 0 at EOF. */
static ssize_t
recv_req(int sock, struct dlv_req *r, int *fd)
{
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { r, sizeof(*r) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	ssize_t n;

	*fd = -1;
	while ((n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR)
		;
	struct cmsghdr *c = n > 0 ? CMSG_FIRSTHDR(&mh) : NULL;
	if (c != NULL && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
		memcpy(fd, CMSG_DATA(c), sizeof(int));
	return n;
}

static void
spawn(int sock, int sfd, const struct dlv_req *r, int msgfd)
{
	if (r->type == DLV_REQ_RELOAD) {
		daemon_reload_config();
		return;
	}
	pid_t pid = fork();
	if (pid == 0) {
		close(sfd);
		child_main(sock, r, msgfd);
	}
	if (pid < 0) {
		send_result(sock, r->id, DLV_TEMP, "cannot fork a delivery process");
		return;
	}
	children[nchildren++] = (struct child){ pid, r->id, time(NULL) };
}

/* Reap children; one whose exit was not clean never sent its result. */
static void
reap(int sock)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (int i = 0; i < nchildren; i++) {
			if (children[i].pid != pid)
				continue;
			if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
				send_result(sock, children[i].id, DLV_TEMP,
				    WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL ?
				    "delivery timed out" : "delivery process failed");
			children[i] = children[--nchildren];
			break;
		}
	}
}

static void
kill_overdue(void)
{
	time_t now = time(NULL);

	for (int i = 0; i < nchildren; i++) {
		if (now - children[i].start > conf_num(C_lmtpd_delivery_timeout))
			kill(children[i].pid, SIGKILL);
	}
}

static void
master_loop(int sock)
{
	sigset_t mask;
	int eof = 0;

	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0)
		fatal_sys("signalfd");
	while (!eof || nchildren > 0) {
		struct pollfd p[2] = { { sfd, POLLIN, 0 },
			{ (!eof && nchildren < MASTER_MAX_CHILDREN) ? sock : -1, POLLIN, 0 } };
		if (poll(p, 2, 1000) < 0 && errno != EINTR)
			fatal_sys("poll");
		if (p[0].revents) {
			struct signalfd_siginfo si;
			while (read(sfd, &si, sizeof(si)) > 0)
				;
		}
		reap(sock);
		kill_overdue();
		if (p[1].revents) {
			struct dlv_req r;
			int fd;
			ssize_t n = recv_req(sock, &r, &fd);
			if (n <= 0)
				eof = n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
			else if (n == (ssize_t)sizeof(r))
				spawn(sock, sfd, &r, fd);
			if (fd >= 0)
				close(fd);
		}
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
		master_loop(sv[1]);
	}
	close(sv[1]);
	return sv[0];
}
