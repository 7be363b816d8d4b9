/*
 * The event-loop side of deliveries: sessions submit one request per
 * recipient; at most lmtpd_process_limit run at once (the rest wait in a
 * FIFO); each result comes back through the callback, never before
 * deliver_submit() returns. Nothing here touches a mailbox or blocks.
 */
#ifndef HERMOD_LMTPD_DELIVER_H
#define HERMOD_LMTPD_DELIVER_H

#include <event2/event.h>

#include "lmtpd.h"

typedef void (*deliver_cb)(void *arg, unsigned slot, enum dlv_status st, const char *detail);

/* Watch the delivery master's socket (from deliver_master_start(),
 * called while still privileged and before the listeners exist). */
void deliver_init(struct event_base *base, int master_sock);

/* Deliver the message in msgfd to rcpt. msgfd is borrowed: keep it open
 * until cb ran or deliver_cancel(arg) (one descriptor for any number of
 * recipients; the master gets its copy when the request is sent).
 * cb(arg, slot, ...) is called once with the outcome, unless
 * deliver_cancel(arg) comes first. */
void deliver_submit(int msgfd, const char *qid, const char *sender, const char *rcpt,
    deliver_cb cb, void *arg, unsigned slot);

/* Forget every request of `arg` (a session that went away). */
void deliver_cancel(void *arg);

/* Ask the master to re-read the configuration. */
void deliver_reload(void);

/* Requests queued or running. */
unsigned deliver_pending(void);

/* Close the master's socket: it finishes its children and exits. */
void deliver_shutdown(void);

#endif
