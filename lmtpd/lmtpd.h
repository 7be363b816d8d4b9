/*
 * lmtpd internals shared by its files.
 *
 * Flow: lmtp_session.c speaks LMTP and spools each message (CRLF turned
 * into LF) into an unlinked temp file; deliver.c (event-loop side) hands
 * one request per recipient, with the temp file's descriptor, to the
 * delivery master (deliver_master.c), a small process that keeps the
 * privileges lmtpd was started with and never reads network bytes. The
 * master looks the recipient up again and passes the delivery to a kept
 * worker process running as the mailbox owner, which writes with
 * maildir.c or mbox.c (directories walked with safe_path.c) and sends its
 * result back.
 */
#ifndef HERMOD_LMTPD_H
#define HERMOD_LMTPD_H

#include <stdint.h>
#include <sys/types.h>

/* Per-recipient outcome of one delivery; mapped to a reply by
 * dlv_reply() (one table, lmtp_session.c). */
enum dlv_status {
	DLV_OK,
	DLV_NOUSER,	/* 550 5.1.1: unknown at RCPT */
	DLV_TEMPLOOKUP,	/* 451 4.3.0: users table unavailable */
	DLV_LOOP,	/* 554 5.4.6: Delivered-To: already names it */
	DLV_QUOTA,	/* 552 5.2.2 */
	DLV_TOOBIG,	/* 552 5.3.4 */
	DLV_NOSPACE,	/* 452 4.3.1: ENOSPC/EDQUOT, nothing left behind */
	DLV_LOCKED,	/* 452 4.2.1: mbox stayed locked */
	DLV_UNSAFE,	/* 451 4.3.0: symlink, foreign owner, not a file */
	DLV_TEMP,	/* 451 4.3.0: any other local failure */
	DLV_NSTATUS
};

#define DLV_DETAIL_MAX 200
#define DLV_ADDR_MAX 520	/* an RFC 5321 path is at most 256 octets */
#define DLV_QID_MAX 64

/* One message to write: everything borrowed from the caller. */
struct dlv_msg {
	int fd;			/* spooled message, LF line ends; read with pread */
	off_t size;
	const char *sender;	/* "" for the null sender */
	const char *rcpt;	/* as given in RCPT TO (Delivered-To:) */
	const char *qid;
};

/* Where and as whom. */
struct dlv_target {
	const char *path;	/* absolute; a Maildir when maildir */
	int maildir;
	uid_t uid;
	gid_t gid;
	long long quota;	/* bytes, 0 = none */
};

/* Result text for the log and the reply ("delivered to maildir", or why
 * not). */
struct dlv_detail {
	char text[DLV_DETAIL_MAX];
};

void dlv_detailf(struct dlv_detail *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
enum dlv_status dlv_errno_status(int err);

#define DLV_BATCH_MAX 32	/* lmtpd_delivery_batch_limit's upper bound */
#define DLV_NAME_MAX 256

/* One Maildir delivery of a batch (maildir.c). The caller fills m, t and
 * st (DLV_OK: deliver it; anything else: already failed, left alone);
 * maildir_deliver_batch() sets st and d. */
struct md_item {
	struct dlv_msg m;
	struct dlv_target t;
	enum dlv_status st;
	struct dlv_detail d;
	/* maildir.c's own */
	int box, fd, staged, linked;
	off_t size;
	char name[DLV_NAME_MAX];
};

/* maildir.c / mbox.c: run in the delivery worker, as the owner.
 * maildir_deliver_batch() writes every item's tmp/ file, makes them
 * durable together, links each into new/, makes the links durable
 * together, and only then reports DLV_OK: two flushes for the batch
 * (one with lmtpd_maildir_one_flush), however many items. */
void maildir_deliver_batch(struct md_item *items, int n);
enum dlv_status mbox_deliver(const struct dlv_msg *m, const struct dlv_target *t,
    struct dlv_detail *d);
/* As root, before becoming the owner: create a missing mbox file owned
 * by uid/gid (spool directories the owner cannot write). */
void mbox_precreate(const char *path, uid_t uid, gid_t gid);

/* 1 when the delivery running is no longer wanted: lmtpd's session
 * process is gone (a crash), so its result would never reach queued, which
 * will deliver again. Checked just before the commit point (the link
 * into new/, keeping an mbox append), so a crash costs no duplicate. Set
 * by the delivery worker; NULL: always wanted. */
extern int (*dlv_abandoned)(void);

/* msg_write.c: the message as stored, with Return-Path: and
 * Delivered-To: in front; `mboxrd` quotes ^>*From lines. Returns 0 or an
 * errno; *written gets the bytes written. */
int msg_write(int outfd, const struct dlv_msg *m, int mboxrd, off_t *written);
/* Bytes msg_write() adds in front of the message. */
size_t msg_prefix_len(const struct dlv_msg *m);
/* 1 if a Delivered-To: header names m->rcpt (a loop), 0 if not, -1 on a
 * read error. */
int msg_delivered_to(const struct dlv_msg *m);

/* safe_path.c: open directory `path` (absolute) one component at a time
 * with O_NOFOLLOW. A symlink is followed only when root owns it (system
 * links such as /home -> /data/home); any other symlink fails with
 * ELOOP. With `create`, missing directories are made, mode 0700. Returns
 * a descriptor or -1 with errno set. */
int safe_opendir(const char *path, int create);
/* Open (or with `create` make) subdirectory `name` of dirfd: no symlink,
 * a directory owned by the effective uid; -1 with errno (ELOOP for a
 * symlink, EPERM for a foreign owner). */
int safe_subdir(int dirfd, const char *name, int create);
/* safe_subdir's checks without keeping it open: 0 or -1 with errno. */
int safe_subdir_check(int dirfd, const char *name, int create);

/* deliver_master.c, deliver_worker.c */
struct dlv_req {
	uint32_t type;		/* DLV_REQ_DELIVER, DLV_REQ_RELOAD */
	uint32_t id;
	char qid[DLV_QID_MAX];
	char sender[DLV_ADDR_MAX];
	char rcpt[DLV_ADDR_MAX];
	uint32_t more;		/* deliveries the session process expects soon */
};
#define DLV_REQ_DELIVER 1
#define DLV_REQ_RELOAD 2

struct dlv_res {
	uint32_t id;
	int32_t status;		/* enum dlv_status */
	char detail[DLV_DETAIL_MAX];
};

/* Master -> worker: one delivery the master resolved. A batch is
 * `count` of these sent in a row (index 0..count-1, each with its
 * message's descriptor); the worker answers with one dlv_res per
 * delivery, its id the index. */
#define DLV_PATH_MAX 4096	/* = LU_PATH_MAX */
struct dlv_wjob {
	struct dlv_req req;
	char path[DLV_PATH_MAX];
	int32_t maildir;
	uint32_t index, count;
	int64_t quota;
};

/* A worker's life: become uid/gid, serve batches from `sock` until it
 * closes. Never returns. */
void deliver_worker_main(int sock, uid_t uid, gid_t gid) __attribute__((noreturn));

/* Fork the master; returns the event-loop side of its socket
 * (SOCK_SEQPACKET). On DLV_REQ_RELOAD the master re-reads the
 * configuration as daemon_reload_config() does. */
int deliver_master_start(void);

/* fd_pass.c: one datagram of `size` bytes with an optional descriptor
 * (-1: none); flags such as MSG_DONTWAIT. fd_send: 0 or -1 (errno);
 * fd_recv: bytes, 0 at EOF, -1 (errno), *fd the descriptor received or
 * -1. */
int fd_send(int sock, const void *p, size_t size, int fd, int flags);
ssize_t fd_recv(int sock, void *p, size_t size, int *fd, int flags);

#endif
