/*
 * LMTP sessions (lmtp_session.c): one per accepted connection, on
 * bufferevents of the daemon's loop. The session list is owned here.
 */
#ifndef HERMOD_LMTPD_SESSION_H
#define HERMOD_LMTPD_SESSION_H

#include <event2/event.h>

#include "lmtp_txn.h"

/* Take over an accepted, non-blocking fd. */
void lmtp_session_new(struct event_base *base, evutil_socket_t fd);
/* Sessions waiting for delivery results (SIGTERM waits for them). */
unsigned lmtp_sessions_delivering(void);
/* Sessions with a transaction open whose deliveries are not yet asked
 * for (MAIL given, the message not yet ended): the deliveries likely to
 * follow soon. */
unsigned lmtp_sessions_in_transaction(void);
/* Sessions with replies not yet written to their socket. */
unsigned lmtp_sessions_unflushed(void);
/* At exit: drop every session. */
void lmtp_sessions_close_all(void);

#endif
