/*
 * pickup: the mail sendmail(1) leaves in $queue_directory/maildrop while
 * queued is not running (Postfix's maildrop). The directory is mode 1733:
 * any local user can create a file there, nobody but queued can list it,
 * and nobody can remove another's file. A file holds exactly the LMTP
 * commands sendmail would have sent on the submission socket: MAIL, the
 * RCPTs, DATA, then the dot-stuffed message and its final dot
 * (hermod-queue(5)).
 *
 * queued plays a file into a submission session of its own (submit.c,
 * over a socketpair) as the file's owner. st_uid is the kernel's word for
 * who wrote the file, so a file cannot claim another user; every check,
 * bound and the group commit are those of the submission socket, and
 * nothing here parses an address. Only the envelope is sent first: the
 * message goes only after DATA's 354 with every recipient accepted, so a
 * temporary refusal of one recipient queues nothing and the file waits
 * for the next pass. Recipients refused for good (a bad address, more
 * than smtpd_recipient_limit) are logged and the message goes to the
 * others, as on the socket. The session ends after that one message, so
 * bytes after its final dot are never read as commands, even from a file
 * its owner rewrites while it is sent. A file is removed once its
 * message is queued (a crash between the commit and the unlink picks it
 * up twice) or refused for good (logged).
 *
 * Passes: at start, on an inotify event, and every PICKUP_SCAN_SEC; one
 * file at a time, at most PICKUP_PASS_MAX per pass. A file kept for a
 * later try is tried again at the next PICKUP_SCAN_SEC scan only, not
 * by the passes in between: with more kept files than a pass holds
 * (a temporary refusal of all, aliases.db missing), each pass that
 * ended full started the next one at once and tried the same files
 * again, a busy loop, while the files past them waited for ever.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "conf.h"
#include "log.h"
#include "queued.h"
#include "smtp_proto.h"
#include "xalloc.h"

#define PICKUP_SCAN_SEC		60	/* a pass without a wake-up */
#define PICKUP_PASS_MAX		1000	/* files per pass */
#define PICKUP_ENVELOPE_MAX	(2 * 1024 * 1024)	/* MAIL .. DATA */
#define PICKUP_STALE_SEC	86400	/* an unfinished t* file is abandoned */
#define PICKUP_KEPT_MAX		100000	/* kept names remembered between scans */
#define PICKUP_TIMEOUT_SEC	60	/* one file, start to end (a file cut
					   short meanwhile stalls the pickup no longer) */

enum phase { P_ENVELOPE, P_BODY };
enum outcome { O_GO_ON, O_QUEUED, O_KEEP, O_REFUSED, O_GONE };

struct job {
	char name[NAME_MAX + 1];
	int fd;			/* -1 once the evbuffer owns it */
	int is_dir;		/* removed with AT_REMOVEDIR */
	uid_t uid;
	off_t size, body_off;
	char *kinds;		/* per envelope command: 'M', 'R', 'D' */
	int ncmd;
	struct bufferevent *bev;	/* our end of the socketpair */
	enum phase phase;
	int got, want;		/* replies read / expected in this phase */
	int rcpt_ok, temp, perm;
	char why[256];		/* the first refusal */
	char qid[QID_LEN + 1];
	struct event *deadline;
	struct smtp_reply_reader rr;
	struct smtp_reply reply;
};

static struct event_base *pbase;
static int drop_fd = -1, ino_fd = -1, stopped;
static struct event *ino_ev, *scan_ev, *next_ev;
static struct job *cur;
static char **pass;		/* names of this pass */
static int npass, ipass;
static int again;		/* AGAIN_*: a pass was asked for meanwhile */
static char **kept;		/* names kept since the last scan, sorted at each pass */
static size_t nkept;

enum { AGAIN = 1, AGAIN_SCAN = 2 };

static void pass_start(int scan);

static void
kept_add(const char *name)
{
	if (nkept >= PICKUP_KEPT_MAX)
		return;		/* tried again at each pass, as before */
	kept = xrealloc(kept, (nkept + 1) * sizeof(*kept));
	kept[nkept++] = xstrdup(name);
}

static void
kept_clear(void)
{
	for (size_t i = 0; i < nkept; i++)
		free(kept[i]);
	free(kept);
	kept = NULL;
	nkept = 0;
}

static int
name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int
kept_has(const char *name)
{
	return nkept > 0 && bsearch(&name, kept, nkept, sizeof(*kept), name_cmp) != NULL;
}

/* ---- one file ------------------------------------------------------------ */

static void
job_free(struct job *j)
{
	if (j->bev != NULL)
		bufferevent_free(j->bev);
	if (j->fd >= 0)
		close(j->fd);
	if (j->deadline != NULL)
		event_free(j->deadline);
	free(j->kinds);
	smtp_reply_free(&j->reply);
	free(j);
}

static void
job_end(struct job *j, enum outcome o)
{
	if (o == O_QUEUED && j->perm > 0)	/* as sendmail would have said */
		log_qwarn(j->qid, "pickup: uid=%u, maildrop file %s: recipients refused: %s",
		    (unsigned)j->uid, j->name, j->why);
	else if (o == O_QUEUED)
		log_qinfo(j->qid, "pickup: uid=%u, maildrop file %s", (unsigned)j->uid, j->name);
	else if (o == O_GONE)
		;		/* removed by its owner meanwhile */
	else if (o == O_KEEP)
		log_info("pickup: uid=%u, maildrop file %s kept for a later try: %s",
		    (unsigned)j->uid, j->name, j->why[0] ? j->why : "connection lost");
	else
		log_warn("pickup: uid=%u, maildrop file %s removed: %s", (unsigned)j->uid,
		    j->name, j->why[0] ? j->why : "refused");
	if (o == O_KEEP)
		kept_add(j->name);
	if ((o == O_QUEUED || o == O_REFUSED) &&
	    unlinkat(drop_fd, j->name, j->is_dir ? AT_REMOVEDIR : 0) < 0 && errno != ENOENT)
		log_warn("pickup: cannot remove maildrop file %s: %s", j->name, strerror(errno));
	job_free(j);
	cur = NULL;
	event_active(next_ev, EV_TIMEOUT, 0);	/* the next file, from the loop */
}

/* A refusal. "Too many recipients" (452 4.5.3) would come back at every
 * try of the same file: for us it is final. */
static void
note(struct job *j, int code, const char *text)
{
	if (code >= 400 && j->why[0] == '\0')
		snprintf(j->why, sizeof(j->why), "%d %s", code, text);
	if (code >= 500 || (code == 452 && strncmp(text, "4.5.3", 5) == 0))
		j->perm++;
	else if (code >= 400)
		j->temp++;
}

/* One reply of the envelope: the greeting, LHLO's, then the file's
 * commands in order. */
static void
envelope_reply(struct job *j, int code, const char *text)
{
	int i = j->got++;
	char k = i >= 2 ? j->kinds[i - 2] : 'H';

	if (i >= 2 + j->ncmd) {		/* not a reply we asked for */
		note(j, code, text);
		job_end(j, j->perm > 0 ? O_REFUSED : O_KEEP);
		return;
	}

	if ((i == 0 && code != 220) || (i == 1 && code != 250)) {
		note(j, code >= 500 ? 451 : code, text);	/* ours to retry */
		return;
	}
	if (k == 'R' && code / 100 == 2)
		j->rcpt_ok++;
	else if (k != 'D' && k != 'H')
		note(j, code, text);
	if (k != 'D')
		return;
	if (code == 354 && j->temp == 0 && j->rcpt_ok > 0) {
		/* the message, straight from the file (sendfile) */
		if (evbuffer_add_file(bufferevent_get_output(j->bev), j->fd, j->body_off,
		    j->size - j->body_off) < 0) {
			note(j, 451, "cannot read the maildrop file");
			job_end(j, O_KEEP);
			return;
		}
		j->fd = -1;
		j->phase = P_BODY;
		j->got = 0;
		j->want = j->rcpt_ok;
		return;
	}
	/* Nothing goes in. After a 354 the end of the connection aborts
	 * the message in the submission session. */
	if (code != 354)
		note(j, code, text);
	job_end(j, j->temp > 0 ? O_KEEP : O_REFUSED);
}

/* One final reply per accepted recipient, all alike (one queue file). */
static void
body_reply(struct job *j, int code, const char *text)
{
	j->got++;
	if (code / 100 == 2 && j->qid[0] == '\0') {
		/* "2.0.0 QUEUEID queued" */
		const char *p = strchr(text, ' ');
		size_t n = p != NULL ? strspn(p + 1, "0123456789ABCDEFabcdef") : 0;

		if (n > 0 && n <= QID_LEN)
			snprintf(j->qid, sizeof(j->qid), "%.*s", (int)n, p + 1);
	} else if (code / 100 != 2)
		note(j, code, text);
	if (j->got < j->want)
		return;
	job_end(j, j->qid[0] != '\0' ? O_QUEUED : j->temp > 0 ? O_KEEP : O_REFUSED);
}

/* The submission session's replies, through the shared reader (bounded
 * lines and lines per reply); each as "x.y.z text", its first line. */
static void
on_read(struct bufferevent *bev, void *arg)
{
	struct job *j = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	char text[256];

	for (;;) {
		switch (smtp_reply_read(&j->rr, in, &j->reply)) {
		case SMTP_RR_MORE:
			return;
		case SMTP_RR_ERROR:
			note(j, 451, "bad reply from the submission session");
			job_end(j, O_KEEP);
			return;
		case SMTP_RR_DONE:
			break;
		}
		snprintf(text, sizeof(text), "%s%s%.*s", j->reply.esc,
		    j->reply.esc[0] ? " " : "", (int)strcspn(j->reply.text.data ?
		    j->reply.text.data : "", "\n"), j->reply.text.data ? j->reply.text.data : "");
		if (j->phase == P_ENVELOPE)
			envelope_reply(j, j->reply.code, text);
		else
			body_reply(j, j->reply.code, text);
		if (cur != j)
			return;		/* ended */
	}
}

static void
on_event(struct bufferevent *bev, short what, void *arg)
{
	struct job *j = arg;

	(void)bev;
	(void)what;
	/* The session ended before its replies: queued stopping (kept), or
	 * the file's errors reached the hard error limit (dropped: the same
	 * file would do it again). */
	job_end(j, j->perm > 0 ? O_REFUSED : O_KEEP);
}

static void
on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct job *j = arg;

	(void)fd;
	(void)what;
	note(j, 451, "timed out");
	job_end(j, O_KEEP);
}

/* The envelope: CRLF lines MAIL, RCPT..., DATA. Returns its length, or
 * 0 when the file is not one of ours (why set). */
static size_t
parse_envelope(struct job *j, const char *p, size_t len)
{
	size_t off = 0;

	j->kinds = xmalloc(len / 6 + 1);
	while (off < len) {
		const char *eol = memchr(p + off, '\n', len - off);
		size_t n = eol ? (size_t)(eol - (p + off)) : 0;
		char k;

		if (eol == NULL || n < 5 || p[off + n - 1] != '\r')
			break;
		if (n == 5 && strncasecmp(p + off, "DATA", 4) == 0)
			k = 'D';
		else if (n > 10 && strncasecmp(p + off, "MAIL FROM:", 10) == 0)
			k = 'M';
		else if (n > 8 && strncasecmp(p + off, "RCPT TO:", 8) == 0)
			k = 'R';
		else
			break;
		if ((j->ncmd == 0) != (k == 'M') || (k == 'D' && j->kinds[j->ncmd - 1] != 'R'))
			break;
		j->kinds[j->ncmd++] = k;
		off += n + 1;
		if (k == 'D')
			return off;
	}
	snprintf(j->why, sizeof(j->why), "not a maildrop file (MAIL, RCPT..., DATA expected)");
	return 0;
}

/*
 * The message must end at the file's final dot and nowhere before: the
 * submission session ends the data at the first CRLF.CRLF and reads what
 * follows as commands, so a file went on with a second transaction of
 * its own (its MAIL parameters, an XFORWARD), queued without a pickup
 * line. Scans from the DATA line's CRLF; 1 when the first end is the
 * last five bytes, 0 when not, -1 on a read error.
 */
static int
one_message(struct job *j)
{
	size_t room = 64 * 1024, keep = 0;
	char *buf = xmalloc(room + 4);
	off_t off = j->body_off - 2;
	int rc = 0;

	while (off < j->size) {
		size_t want = (size_t)(j->size - off) < room ? (size_t)(j->size - off) : room;
		ssize_t r = pread(j->fd, buf + keep, want, off);
		char *hit;

		if (r <= 0) {
			rc = -1;
			break;
		}
		if ((hit = memmem(buf, keep + (size_t)r, "\r\n.\r\n", 5)) != NULL) {
			rc = off - (off_t)keep + (hit - buf) == j->size - 5;
			break;
		}
		memmove(buf, buf + keep + (size_t)r - 4, 4);	/* r >= 5 overall */
		keep = 4;
		off += r;
	}
	free(buf);
	return rc;
}

/* Open and check the file; O_GO_ON, else the outcome. */
static enum outcome
job_open(struct job *j)
{
	struct stat st;
	char *head, tail[5];
	size_t n, env;
	ssize_t r;

	if (fstatat(drop_fd, j->name, &st, AT_SYMLINK_NOFOLLOW) == 0)
		j->uid = st.st_uid;	/* for the log, whatever it is */
	j->fd = openat(drop_fd, j->name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (j->fd < 0) {
		int e = errno;

		if (e == ENOENT)
			return O_GONE;
		snprintf(j->why, sizeof(j->why), "cannot open: %s", strerror(e));
		/* out of descriptors or memory: ours, for later; anything else
		 * (a symlink, a socket, a file we may not read) is the file's */
		return e == EMFILE || e == ENFILE || e == ENOMEM || e == EINTR ?
		    O_KEEP : O_REFUSED;
	}
	if (fstat(j->fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1) {
		/* a hard link would lend us another user's file; a directory
		 * (any user may make one here) goes too, if it is empty */
		j->is_dir = S_ISDIR(st.st_mode);
		snprintf(j->why, sizeof(j->why), "not a regular file with one link");
		return O_REFUSED;
	}
	j->uid = st.st_uid;
	j->size = st.st_size;
	if (st.st_size > PICKUP_ENVELOPE_MAX + 2 * conf_num(C_message_size_limit)) {
		snprintf(j->why, sizeof(j->why), "too big (%lld bytes)", (long long)st.st_size);
		return O_REFUSED;
	}
	if (st.st_size < 5 || pread(j->fd, tail, 5, st.st_size - 5) != 5 ||
	    memcmp(tail, "\r\n.\r\n", 5) != 0) {
		snprintf(j->why, sizeof(j->why), "not a maildrop file (no final dot)");
		return O_REFUSED;
	}
	n = st.st_size < PICKUP_ENVELOPE_MAX ? (size_t)st.st_size : PICKUP_ENVELOPE_MAX;
	head = xmalloc(n + 1);
	r = pread(j->fd, head, n, 0);
	env = r == (ssize_t)n ? parse_envelope(j, head, n) : 0;
	if (r != (ssize_t)n)
		snprintf(j->why, sizeof(j->why), "cannot read: %s", r < 0 ? strerror(errno) : "short");
	j->body_off = (off_t)env;
	if (env == 0) {
		free(head);
		return r == (ssize_t)n ? O_REFUSED : O_KEEP;
	}
	if ((r = one_message(j)) != 1) {
		free(head);
		snprintf(j->why, sizeof(j->why), r < 0 ? "cannot read: %s" :
		    "not a maildrop file (more after the message's final dot)",
		    strerror(errno));
		return r < 0 ? O_KEEP : O_REFUSED;
	}
	/* the envelope goes out now, the message after DATA's 354 */
	evbuffer_add_printf(bufferevent_get_output(j->bev), "LHLO %s\r\n", queued_hostname());
	evbuffer_add(bufferevent_get_output(j->bev), head, env);
	free(head);
	return O_GO_ON;
}

static void
job_start(const char *name)
{
	struct job *j = xcalloc(1, sizeof(*j));
	struct timeval tv = { PICKUP_TIMEOUT_SEC, 0 };
	enum outcome o;
	int sv[2];

	snprintf(j->name, sizeof(j->name), "%s", name);
	j->fd = -1;
	smtp_reply_reader_init(&j->rr);
	smtp_reply_init(&j->reply);
	cur = j;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0) {
		snprintf(j->why, sizeof(j->why), "socketpair: %s", strerror(errno));
		job_end(j, O_KEEP);
		return;
	}
	j->bev = bufferevent_socket_new(pbase, sv[1], BEV_OPT_CLOSE_ON_FREE);
	if (j->bev == NULL) {
		close(sv[0]);
		close(sv[1]);
		job_end(j, O_KEEP);
		return;
	}
	if ((o = job_open(j)) != O_GO_ON) {
		close(sv[0]);
		job_end(j, o);
		return;
	}
	j->want = 2 + j->ncmd;
	bufferevent_setcb(j->bev, on_read, NULL, on_event, j);
	bufferevent_enable(j->bev, EV_READ | EV_WRITE);
	j->deadline = evtimer_new(pbase, on_deadline, j);
	evtimer_add(j->deadline, &tv);
	if (submit_session_start(sv[0], j->uid, 1) < 0) {
		note(j, 451, "cannot start a submission session");
		job_end(j, O_KEEP);
	}
}

/* ---- passes over the directory ------------------------------------------ */

static void
pass_free(void)
{
	for (int i = 0; i < npass; i++)
		free(pass[i]);
	free(pass);
	pass = NULL;
	npass = ipass = 0;
}

/* A t* file (sendmail writing) or a stray name left a day is removed. */
static void
sweep(const char *name, time_t now)
{
	struct stat st;

	if (fstatat(drop_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    now - st.st_mtime > PICKUP_STALE_SEC) {
		log_info("pickup: removing stale maildrop file %s (uid %u)", name,
		    (unsigned)st.st_uid);
		unlinkat(drop_fd, name, S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0);
	}
}

static void
next_file(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what, (void)arg;
	if (cur != NULL)
		return;
	if (stopped || queued_stopping) {
		pass_free();
		return;
	}
	if (ipass < npass) {
		job_start(pass[ipass++]);
		return;
	}
	pass_free();
	if (again) {
		int scan = again & AGAIN_SCAN;

		again = 0;
		pass_start(scan);
	}
}

/* scan: a PICKUP_SCAN_SEC scan (or the first), which tries kept files
 * again; other passes leave them be. */
static void
pass_start(int scan)
{
	int fd;
	DIR *d;
	struct dirent *de;
	time_t now = time(NULL);

	if (cur != NULL || pass != NULL) {
		again |= AGAIN | (scan ? AGAIN_SCAN : 0);	/* after this pass */
		return;
	}
	if ((fd = dup(drop_fd)) < 0 || (d = fdopendir(fd)) == NULL) {
		if (fd >= 0)
			close(fd);
		log_warn("pickup: cannot read the maildrop directory: %s", strerror(errno));
		return;
	}
	if (scan)
		kept_clear();
	else if (nkept > 0)
		qsort(kept, nkept, sizeof(*kept), name_cmp);
	rewinddir(d);
	pass = xcalloc(PICKUP_PASS_MAX, sizeof(*pass));
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == 'm' && kept_has(de->d_name))
			;	/* until the next scan */
		else if (de->d_name[0] == 'm' && npass < PICKUP_PASS_MAX)
			pass[npass++] = xstrdup(de->d_name);
		else if (de->d_name[0] == 'm')
			again |= AGAIN;	/* more than a pass holds */
		else if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			sweep(de->d_name, now);
	}
	closedir(d);
	event_active(next_ev, EV_TIMEOUT, 0);
}

static void
on_inotify(evutil_socket_t fd, short what, void *arg)
{
	char buf[4096];

	(void)what, (void)arg;
	while (read(fd, buf, sizeof(buf)) > 0)
		;
	pass_start(0);
}

static void
on_scan(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what, (void)arg;
	pass_start(1);
}

void
pickup_init(struct event_base *base)
{
	struct timeval tv = { PICKUP_SCAN_SEC, 0 };
	char *path = xasprintf("%s/maildrop", conf_str(C_queue_directory));

	pbase = base;
	drop_fd = openat(spool_fd, "maildrop", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (drop_fd < 0) {
		log_warn("pickup: %s: %s; mail sent while queued is down is not taken",
		    path, strerror(errno));
		free(path);
		return;
	}
	next_ev = event_new(base, -1, 0, next_file, NULL);
	scan_ev = event_new(base, -1, EV_PERSIST, on_scan, NULL);
	if (next_ev == NULL || scan_ev == NULL)
		fatal("pickup: out of memory");
	evtimer_add(scan_ev, &tv);
	/* A wake-up when sendmail renames a file into place; the timer
	 * stays for what inotify misses (an overflow). */
	ino_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (ino_fd >= 0 && inotify_add_watch(ino_fd, path, IN_MOVED_TO | IN_CLOSE_WRITE) >= 0) {
		ino_ev = event_new(base, ino_fd, EV_READ | EV_PERSIST, on_inotify, NULL);
		if (ino_ev == NULL)
			fatal("pickup: out of memory");
		event_add(ino_ev, NULL);
	} else if (ino_fd >= 0) {
		close(ino_fd);
		ino_fd = -1;
	}
	free(path);
	pass_start(1);
}

void
pickup_stop(void)
{
	stopped = 1;
	kept_clear();
	if (ino_ev != NULL)
		event_del(ino_ev);
	if (scan_ev != NULL)
		event_del(scan_ev);
}

int
pickup_busy(void)
{
	return cur != NULL;
}
