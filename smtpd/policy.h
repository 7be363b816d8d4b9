/*
 * smtpd's policy: who may relay, which recipients are accepted at RCPT,
 * and the connection limits (overall and per client address). Each check
 * answers with the whole reply line ("554 5.7.1 <a@b>: Relay access
 * denied") so the session sends it and logs it as it is.
 */
#ifndef HERMOD_SMTPD_POLICY_H
#define HERMOD_SMTPD_POLICY_H

#include <stddef.h>
#include <sys/socket.h>

#define POLICY_REPLY_MAX 600

/* Is the client in mynetworks? (AF_UNIX and unknown families: no.) */
int policy_trusted(const struct sockaddr *sa);

/*
 * Is `addr` ("local@domain" as parsed from the path, without brackets,
 * source route already dropped; or a bare "postmaster") acceptable as a
 * recipient? may_relay: the client is trusted (mynetworks, later AUTH).
 * 0 = accept; else -1 with the reply line in reply:
 *   554 5.7.1 relay denied (untrusted client: remote domain, or routing
 *             tricks in the local part: % ! @)
 *   550 5.1.1 unknown local recipient; 451 4.3.0 table failure
 * postmaster (bare, or @ a local domain) is always accepted.
 */
int policy_rcpt(const char *addr, int may_relay, char *reply, size_t replysz);

/* Does the local part carry sender-specified routing (%, !, @)? */
int policy_routing_trick(const char *local, size_t len);

/*
 * Connection accounting. policy_conn_open: 0 and the client is counted,
 * or -1 with a 421 4.7.0 reply line (overall smtpd_max_connections, or
 * smtpd_client_connection_count_limit from one address; 0 = no limit;
 * trusted clients are exempt from the per-address limit, as in Postfix's
 * smtpd_client_event_limit_exceptions). policy_conn_close undoes an open
 * that returned 0.
 */
int policy_conn_open(const struct sockaddr *sa, int trusted, char *reply,
    size_t replysz);
void policy_conn_close(const struct sockaddr *sa);
/* Sessions counted now (total, and from sa's address). */
int policy_conn_total(void);
int policy_conn_from(const struct sockaddr *sa);

#endif
