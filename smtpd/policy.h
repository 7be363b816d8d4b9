/*
 * smtpd's policy: who may relay, which recipients are accepted at RCPT,
 * and the connection limits (overall and per client address). Each check
 * answers with the whole reply line ("554 5.7.1 <a@b>: Relay access
 * denied") so the session sends it and logs it as it is.
 */
#ifndef HERMOD_SMTPD_POLICY_H
#define HERMOD_SMTPD_POLICY_H

#include <stddef.h>
#include <netinet/in.h>
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
 * Who a client is for the limits: its address cut to
 * smtpd_client_ipv4_prefix_length / smtpd_client_ipv6_prefix_length bits
 * (Postfix's anvil does the same), and as text for logs and the AUTH
 * failure counts ("192.0.2.1", "2001:db8::/84"; "local" for a unix
 * socket). Computed once per session: a reload that changes the lengths
 * must not lose track of sessions counted before it.
 */
struct policy_key {
	int len;			/* 4, 16, or 0 (unix socket) */
	int bits;			/* the prefix length used */
	unsigned char b[16];		/* the address, bits past the prefix 0 */
	char text[INET6_ADDRSTRLEN + 8];
};
void policy_client_key(const struct sockaddr *sa, struct policy_key *k);

/*
 * Connection accounting. policy_conn_open: 0 and the client is counted,
 * or -1 with a 421 4.7.0 reply line (overall smtpd_max_connections, or
 * smtpd_client_connection_count_limit from one client key; 0 = no limit;
 * trusted clients are exempt from the per-client limit, as in Postfix's
 * smtpd_client_event_limit_exceptions). policy_conn_close undoes an open
 * that returned 0.
 */
int policy_conn_open(const struct policy_key *k, int trusted, char *reply,
    size_t replysz);
void policy_conn_close(const struct policy_key *k);
/* Sessions counted now (total, and from k's client key). */
int policy_conn_total(void);
int policy_conn_from(const struct policy_key *k);

#endif
