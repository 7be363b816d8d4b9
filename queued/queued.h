/*
 * queued internals shared by its files.
 *
 * Flow: submit.c speaks LMTP on $run_directory/submit and writes each
 * message with queue_file.c into queue/X/ (sealed, hermod-queue(5));
 * commit.c makes it durable (group commit); then the 250s go out and
 * the message is handed to scheduler.c. The scheduler keeps every queued
 * message in memory (a heap ordered by next attempt), starts attempts on
 * the transports (local.c: LMTP to lmtpd; the remote transport of another
 * issue plugs into the same struct transport), records each recipient's
 * result in the queue file's state log (durable before the next attempt),
 * and asks bounce.c for DSNs. control.c answers the control socket.
 *
 * Ownership: the scheduler owns every struct msg (msg_free()); transports
 * borrow a message for the length of one attempt and report through
 * sched_attempt_done().
 */
#ifndef HERMOD_QUEUED_H
#define HERMOD_QUEUED_H

#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include <bsd/sys/queue.h>
#include <bsd/sys/tree.h>

#include "buf.h"

struct event_base;

#define QID_LEN		16	/* 8 hex seconds, 5 hex microseconds, 3 hex sequence */
#define QUEUE_HASH_DIRS	16	/* queue/0 .. queue/F: the id's last hex digit */
#define ADDR_MAX	512	/* an RFC 5321 path is at most 256 octets; room for xtext */
#define REASON_MAX	400	/* last reply text kept per recipient */
#define QF_HEADER_MAX	(4 * 1024 * 1024)	/* envelope block of a queue file */
#define QF_LOG_MAX	(64 * 1024 * 1024)	/* state log after the message */
#define QF_LOG_DEFER_MAX (1024 * 1024)	/* past this, deferrals are not logged */
#define RCPT_MAX	100000	/* recipients (and alias leaves) per message */
#define ROUTE_NODES_MAX	100000	/* alias expansion nodes per message (route.c) */
#define QUEUED_PRIORITIES 2	/* event priorities: 0 control socket, 1 the rest */

/* RFC 3461 NOTIFY bits; 0 = not given (default: FAILURE and DELAY). */
enum {
	NOTIFY_NEVER = 1, NOTIFY_SUCCESS = 2, NOTIFY_FAILURE = 4, NOTIFY_DELAY = 8,
};

/* Message flags (the queue file's `flags:` line). */
enum {
	MSGF_DSN = 1,		/* a DSN we generated: never bounced itself */
	MSGF_DOUBLE = 2,	/* a DSN about a DSN, to postmaster: dropped if it fails */
};

enum leaf_kind { LEAF_LOCAL, LEAF_REMOTE, LEAF_ERROR };
enum leaf_state { LS_PENDING, LS_SENT, LS_FAILED };

/* One envelope recipient, as the submitter gave it. */
struct env_rcpt {
	char *addr;		/* without <> */
	char *orcpt;		/* ORCPT value, "rfc822;addr" (decoded), or NULL */
	unsigned notify;	/* NOTIFY_* bits, 0: default */
};

/* One final destination: an envelope recipient after alias expansion. */
struct leaf {
	int parent;		/* index into msg->rcpts */
	enum leaf_kind kind;
	char *addr;		/* without <> */
	enum leaf_state state;
	int notified;		/* its DSN is queued (or none was needed) */
	int busy;		/* in an attempt now */
	char dsn[8];		/* last status, "2.0.0" */
	char *reason;		/* last reply or reason text */
	char *relay;		/* where it went, or NULL */
	time_t last_try;
};

/* commit.c: group commit. */
struct commit_req {
	int fd;			/* the file to make durable */
	int new_entry;		/* its directory entry is new too */
	void (*done)(void *arg, int err);	/* err: 0 or errno */
	void *arg;
	TAILQ_ENTRY(commit_req) link;
};
struct msg {
	char id[QID_LEN + 1];
	char *path;		/* spool-relative: queue/X/ID */
	double arrival;		/* seconds since the epoch */
	off_t data_off;		/* where the message starts */
	off_t size;		/* message bytes (CRLF lines, as on the wire) */
	off_t end;		/* end of the file (state log appends go here) */
	char *sender;		/* "" for <> */
	char *envid;		/* ENVID (decoded) or NULL */
	char *auth;		/* AUTH= parameter as given, or NULL */
	char *client;		/* XFORWARD summary for logs and DSNs, or NULL */
	int body8, smtputf8;
	int ret_hdrs;		/* RET=HDRS */
	unsigned flags;		/* MSGF_* */
	struct env_rcpt *rcpts;
	int nrcpt;
	struct leaf *leaves;
	int nleaf;
	/* scheduling */
	int hold, warned, tries;
	int postponed;		/* a leaf was put off (no result): retry soon */
	int parked;		/* in the scheduler's list of put-off messages */
	TAILQ_ENTRY(msg) park_link;
	int attempts_out;	/* transports still working on it */
	time_t next_try;
	size_t heap_idx;	/* position in the schedule, or SIZE_MAX */
	int pending_delete;
	unsigned waiting;	/* bit per transport: in its wait list */
	int fd;			/* open for state records during an attempt, or -1 */
	double attempt_start;
	int dsn_step;		/* attempt.c: which DSN kind is next */
	int final_changed;	/* a leaf became final in this attempt */
	struct commit_req creq;	/* state records of the attempt */
	RB_ENTRY(msg) by_id;
};

/* queue_id.c */
void qid_new(char out[QID_LEN + 1]);
int qid_valid(const char *s);
char qid_hash(const char *qid);	/* the hashed subdirectory's name */

/* queue_file.c: the on-disk format (hermod-queue(5)). */
#define QF_MAGIC	"HERMOD-QUEUE 2\n"
#define QF_MAGIC_V1	"HERMOD-QUEUE 1\n"	/* read, never written */
#define QF_SIZE_DIGITS	15
/* The seal's CRC covers the file from the line after "size: N" (the
 * second line) to the end of the message; the seal is "e XXXXXXXX\n". */
#define QF_CRC_FROM	((off_t)(sizeof(QF_MAGIC) - 1 + 6 + QF_SIZE_DIGITS + 1))
#define QF_SEAL_LEN	11
struct qf_writer {
	int fd;
	char id[QID_LEN + 1];
	char *path;		/* queue/X/ID, spool-relative: written in place */
	off_t size_field;	/* where the fixed-width size goes */
	off_t data_off;
	off_t size;
	off_t written;		/* bytes handed to write() so far */
	off_t end;		/* after qf_finish: the end of the seal */
	int named;		/* written into a file named ahead: no new entry */
	uint32_t crc;		/* running CRC-32C from QF_CRC_FROM */
	int err;		/* first errno seen (ENOSPC...) */
	struct buf out;		/* pending bytes, written in large blocks */
};
struct qf_env {
	const char *qid;	/* the id to use (given out at MAIL), or NULL */
	int named;		/* qid names an emptied file (spool_named) */
	const char *sender, *envid, *auth, *client;
	int body8, smtputf8, ret_hdrs;
	unsigned flags;
	double arrival;
};
int qf_begin(struct qf_writer *w, const struct qf_env *env,
    const struct env_rcpt *rcpts, int nrcpt, const struct leaf *leaves, int nleaf);
void qf_write(struct qf_writer *w, const void *p, size_t n);
int qf_finish(struct qf_writer *w);	/* flush, seal, size; 0 or errno */
void qf_abort(struct qf_writer *w);	/* remove the unfinished file */
uint32_t qf_crc32c(uint32_t crc, const void *p, size_t n);
void qf_writer_free(struct qf_writer *w);

/* Read a queue file: 0; -1 when corrupt; -2 when it cannot be read now
 * (open or I/O error: not the file's fault); QF_INCOMPLETE when its seal
 * is missing or wrong (a crash before its commit: never acknowledged).
 * Why in err. */
#define QF_INCOMPLETE	(-3)
int qf_read(int dirfd, const char *path, struct msg **out, char *err, size_t errsz);
int qf_parse(const char *data, size_t len, off_t file_size, struct msg *m,
    char *err, size_t errsz);
/* State log records: appended with one write; made durable by commit.c. */
int qf_log_leaf(struct msg *m, int fd, int leaf, char code);
int qf_log_msg(struct msg *m, int fd, const char *rec);
struct msg *msg_new(void);
void msg_free(struct msg *m);
int qf_open(int dirfd, const char *path, int flags);	/* no atime, no symlinks */
int spool_open(const char *dir);	/* chdir-free: returns the spool dirfd */
extern int spool_fd;

/* xtext (RFC 3461) for addresses in queue files. */
void xtext_encode(struct buf *b, const char *s);
char *xtext_decode(const char *s, size_t n);	/* NULL on bad xtext */

/* commit.c: the group commit, flushed on a thread of its own. */
void commit_init(struct event_base *base);	/* starts the sync thread */
void commit_request(struct commit_req *r);	/* done() called from the loop */
void commit_run(void);		/* after each turn: hand the batch over */
int commit_pending(void);	/* requests waiting or being flushed */
void commit_shutdown(void);	/* joins the sync thread */
struct commit_stats {
	unsigned long long passes, files, fsyncs, syncfs, dir_fsyncs;
	unsigned long long pool_syncfs;	/* of syncfs: for the reuse pool alone */
	unsigned long long syncfs_done;	/* the last syncfs completed (its number) */
};
extern struct commit_stats commit_stats;

/* remove.c: finished queue files emptied for reuse (or unlinked) on a
 * thread of its own. */
void remove_init(void);
void remove_later(const char *path);	/* relative to spool_fd */
/* An emptied file named ahead whose name and emptiness are durable: its
 * id into id, 1; 0 when there is none. The caller owns the file: it is
 * written by qf_begin (qf_env.named), or sent back by
 * spool_named_release(). */
int spool_named(char id[QID_LEN + 1]);
void spool_named_release(const char *id);
/* Emptied files wait for a syncfs, and few are ready (for the group
 * commit, which then makes one when no message does). */
int spool_gated(void);
void remove_shutdown(void);	/* what is listed goes, then the join */
/* Readable when the thread has emptied files for the loop to collect
 * (spool_gated); after remove_init(). */
int remove_wake_fd(void);

/* scheduler.c */
struct transport {
	const char *name;
	enum leaf_kind kind;
	int busy, limit;	/* attempts running now, at most */
	/* Start delivering leaves[idx[0..n-1]] of m; report each leaf with
	 * sched_leaf_result() (code 2xx/4xx/5xx, enhanced status, relay, the
	 * reply text for logs and DSNs), then call sched_attempt_done(t, m)
	 * once. Until then m and m->fd are valid: the message is m->size
	 * bytes at m->data_off (CRLF lines, not dot-stuffed), read with
	 * pread(); m->sender, m->body8, m->smtputf8, m->envid, m->ret_hdrs
	 * and m->rcpts[leaf->parent] (NOTIFY, ORCPT) are the envelope. At
	 * most `limit` attempts run at once: the scheduler queues the rest. */
	void (*start)(struct transport *t, struct msg *m, const int *idx, int n);
};
void sched_init(struct event_base *base);
void sched_add(struct msg *m);		/* a new or recovered message */
void sched_leaf_result(struct msg *m, int leaf, int code, const char *dsn,
    const char *relay, const char *text);
/* Leaf not attempted after all (its destination has too much waiting):
 * no result, no log line, no state record; the message comes back
 * without counting a try, at the latest in a second, as soon as a
 * destination calls sched_unpark_one() (one of its waiting jobs went to
 * a session). */
void sched_leaf_postpone(struct msg *m, int leaf);
void sched_unpark_one(void);
void sched_attempt_done(struct transport *t, struct msg *m);
struct msg *sched_find(const char *id);
void sched_flush(struct msg *m);	/* NULL: all */
int sched_hold(struct msg *m, int on);
void sched_delete(struct msg *m);
void sched_foreach(void (*fn)(struct msg *m, void *arg), void *arg);
size_t sched_count(void);
void sched_reconfigure(void);
int sched_idle(void);			/* nothing in flight (shutdown) */
struct sched_stats {
	unsigned long long scheduled, attempts, delivered, bounced, deferred;
	unsigned long long postponed, unparked;	/* put off; back on room */
	double sched_ns_total;		/* time spent choosing work */
	unsigned long long sched_ops;
};
extern struct sched_stats sched_stats;

/* local.c: the LMTP client to lmtpd. */
extern struct transport local_transport;
void local_init(struct event_base *base);
void local_shutdown(void);

/* remote.c: SMTP to other domains' exchangers or the relayhost. */
extern struct transport remote_transport;
void remote_init(struct event_base *base);	/* also starts lib/dns */
void remote_shutdown(void);

/* route.c: a message's leaves while its recipients are routed */
struct leaf_list {
	struct leaf *v;
	int n, room;
	int *slot;		/* index of the addresses (route.c) */
	size_t cap, used;
	size_t nodes;		/* alias expansion nodes so far */
};
int route_rcpt(const char *addr, int rcpt_idx, struct leaf_list *l,
    char *why, size_t whysz);
void leaves_truncate(struct leaf_list *l, int n);	/* frees leaves n.. */
void leaves_free(struct leaf_list *l);

/* bounce.c */
enum dsn_kind { DSN_FAILED, DSN_DELAYED, DSN_SUCCESS };
/* Queue a DSN for the leaves marked in `which` (n == m->nleaf). Calls
 * done(arg, err) once it is durable. 0 if started, 1 if nothing to send,
 * -1 on error. */
int bounce_send(struct msg *m, enum dsn_kind kind, const char *which,
    void (*done)(void *arg, int err), void *arg);
/* Build the DSN text (exposed for tests). */
int bounce_build(struct buf *out, struct msg *m, enum dsn_kind kind,
    const char *which, int msgfd, const char *boundary_seed);

/* submit.c: the LMTP submission server on a bound unix socket. */
int submit_init(struct event_base *base, int fd);
void submit_stop(void);		/* stop accepting; idle sessions end */
int submit_busy(void);		/* sessions writing or waiting for a commit */
/* A session on a connected socket, as local user uid (the socket's
 * peer, or a maildrop file's owner); fd is the session's. one_txn: it
 * ends after its first message is queued (pickup's). 0 or -1. */
int submit_session_start(int fd, uid_t uid, int one_txn);

/* pickup.c: the maildrop that sendmail(1) uses while queued is down. */
void pickup_init(struct event_base *base);
void pickup_stop(void);
int pickup_busy(void);		/* a file being submitted */

/* control.c: the control socket (queued(8) documents its protocol). */
int control_init(struct event_base *base, int fd);
void control_stop(void);

/* recover.c: lists the spool now, reads it from the loop in slices. */
void recover_spool(struct event_base *base);
int recover_pending(void);	/* files listed but not read yet */

/* queued.c */
extern struct event_base *queued_base;
extern int queued_stopping;
const char *queued_hostname(void);
/* inject.c: after qf_finish(), make the file durable (group commit), then
 * schedule m; done() gets 0 or an errno (then the file is gone and m
 * freed). Takes over the writer's contents and m. */
struct msg *msg_build(const struct qf_writer *w, const struct qf_env *env,
    const struct env_rcpt *rcpts, int nrcpt, const struct leaf *leaves, int nleaf);
void queue_commit(struct qf_writer *w, struct msg *m,
    void (*done)(void *arg, int err, const char *qid), void *arg);
/* A whole message from memory (DSNs): 0 or an errno. */
int queue_new_message(const struct qf_env *env, const struct env_rcpt *rcpts,
    int nrcpt, const struct leaf *leaves, int nleaf, const char *text, size_t len,
    void (*done)(void *arg, int err, const char *qid), void *arg);

#endif
