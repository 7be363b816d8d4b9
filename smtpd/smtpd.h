/*
 * smtpd's internal interface: the session (one per client connection, all
 * on one libevent loop), shared by smtpd.c (listeners, signals),
 * session_io.c (the session's life on lib/smtp_server, which does the
 * reading, pipelining, timeouts and error counting; replies),
 * smtp_session.c (the command table and state machine), smtp_data.c
 * (DATA and BDAT streamed to queued) and smtp_parse.c (paths and ESMTP
 * parameters).
 *
 * Memory: an idle session is this struct, lib/smtp_server's session and
 * its bufferevent, and the client's name when it has one (the lookup's
 * state only while it runs, before the greeting); the
 * transaction (struct txn) exists from MAIL to its end, the queued
 * connection (handoff) from the first message to the end of the session.
 */
#ifndef HERMOD_SMTPD_H
#define HERMOD_SMTPD_H

#include <netinet/in.h>
#include <stddef.h>
#include <sys/socket.h>
#include <time.h>

#include <bsd/sys/queue.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "addr.h"
#include "buf.h"
#include "handoff.h"
#include "policy.h"
#include "received.h"
#include "smtp_proto.h"
#include "smtp_server.h"
#include "submit.h"

/* Bounds (RFC 5321 4.5.3.1): command line 512 plus room for the ESMTP
 * parameters we offer; path 256 (local part 64, domain 255: lib/addr.h). */
#define SMTPD_LINE_MAX		2048
#define SMTPD_PATH_MAX		ADDR_PATH_MAX
#define SMTPD_HELO_MAX		255
#define SMTPD_ENVID_MAX		100	/* RFC 3461 4.4 */
#define SMTPD_ORCPT_MAX		500	/* RFC 3461 4.2 */
#define SMTPD_INPUT_MAX		(64 * 1024)	/* read buffer high mark */
#define SMTPD_OUTPUT_MAX	(256 * 1024)	/* unread replies: stop reading */
#define SMTPD_DATA_CHUNK	(16 * 1024)	/* data handed to queued at once */
#define SMTPD_CMDS_PER_TURN	100	/* pipelined commands per loop turn */
/* RCPTs past smtpd_recipient_limit answered 452 without counting as errors
 * (Postfix's smtpd_recipient_overshoot_limit): RFC 5321 4.5.3.1.10 lets a
 * pipelining client send them all and resend the refused ones later. */
#define SMTPD_RCPT_OVERSHOOT	1000

enum listen_kind { LK_SMTP, LK_SUBMISSION, LK_SMTPS };

/* Session states (lib/smtp_server's srv_state()); a command row lists
 * where it may run as ST_* bits. */
enum smtp_state { S_GREET, S_READY, S_MAIL, S_RCPT, S_BDAT };
#define ST_GREET	SRV_STATE(S_GREET)	/* before HELO/EHLO */
#define ST_READY	SRV_STATE(S_READY)	/* after HELO/EHLO, no transaction */
#define ST_MAIL		SRV_STATE(S_MAIL)	/* MAIL accepted */
#define ST_RCPT		SRV_STATE(S_RCPT)	/* at least one RCPT accepted */
#define ST_BDAT		SRV_STATE(S_BDAT)	/* BDAT chunks under way */
#define ST_ANY		0x1fu

/* Commands counted for the disconnect log line. */
enum cmd_id {
	CMD_HELO, CMD_EHLO, CMD_MAIL, CMD_RCPT, CMD_DATA, CMD_BDAT, CMD_RSET,
	CMD_NOOP, CMD_QUIT, CMD_VRFY, CMD_EXPN, CMD_HELP, CMD_STARTTLS,
	CMD_AUTH, CMD_UNKNOWN, CMD_NIDS
};	/* CMD_UNKNOWN ends the real commands: the table's rows are indexed
	   by these ids */

struct rcpt {
	char *addr;
	char *notify;		/* NULL or "SUCCESS,FAILURE" ... */
	char *orcpt;		/* NULL or decoded "rfc822;a@b" */
};

/* BDAT line-end checker states (smtp_data.c); DATA uses lib/smtp_proto's
 * decoder. */
enum dstate { D_BOL, D_MID, D_CR };

/* Where the message stands with queued. */
enum tphase { P_NONE, P_START, P_DATA, P_END };

struct txn {
	char sender[SMTPD_PATH_MAX + 1];
	unsigned long long size_param;	/* SIZE=, 0 if none */
	int body8, smtputf8;
	char ret[8];			/* "", "FULL", "HDRS" */
	char *envid;			/* decoded */
	struct rcpt *rcpts;
	int nrcpt, cap;
	unsigned overshoot;		/* RCPTs refused for the limit */
	/* the message */
	int bdat;			/* BDAT transaction */
	int started;			/* handed to queued */
	enum tphase phase;
	int failed;			/* queued refused: result kept */
	char fail_line[320];		/* queued's refusal, as our reply */
	enum dstate ds;			/* BDAT */
	unsigned long long msg_size;	/* bytes after decoding */
	uint64_t chunk_left;		/* first BDAT: its size, until queued is ready */
	int chunk_last;
	const char *reject;		/* the message is refused: reply */
	struct hopcount hops;
	struct hdrfix fix;		/* submission: Message-ID:, Date: */
	struct buf out;			/* decoded bytes not yet handed on */
	char qid[HANDOFF_QID_MAX + 1];
	int waiting_drain;
	int early;			/* 354 sent before queued's (DATA) */
	int end_pending;		/* early: the dot came before queued's 354 */
};

struct session {
	TAILQ_ENTRY(session) entry;
	struct event_base *base;
	struct srv_session *srv;		/* lib/smtp_server: the I/O */
	enum listen_kind kind;
	union {				/* the client's address */
		struct sockaddr sa;
		struct sockaddr_in in;
		struct sockaddr_in6 in6;
	} sa;
	char addr[INET6_ADDRSTRLEN + 8];	/* "192.0.2.1", "2001:db8::1" */
	struct policy_key ckey;			/* who it is for the limits */
	char port[8];
	const char *name;			/* confirmed name, or "unknown" */
	struct lookup *lookup;			/* name, DNSBLs: before the greeting */
	char *dnsbl;				/* the zone that lists the client */
	unsigned name_owned:1;			/* name is ours to free */
	unsigned trusted:1;			/* mynetworks */
	unsigned counted:1;			/* in the connection limits */
	unsigned esmtp:1;
	unsigned tls:1;				/* TLS is up */
	unsigned tls_handshake:1;		/* TLS being set up */
	unsigned closing:1;			/* last reply given */

	char *helo;			/* NULL before HELO/EHLO: session_helo() */
	char *auth_user;
	struct event *tls_timer;	/* handshake deadline (smtpd_tls.c) */
	struct auth_state *auth;	/* AUTH exchange (smtpd_auth.c) */

	const char *skip_reply;		/* a refused BDAT: its reply at the end */
	unsigned counts[CMD_NIDS];
	unsigned junk;			/* NOOP, VRFY, RSET, HELO, EHLO since
					   the last message queued */

	struct txn *tx;
	struct handoff *ho;
};

#define DNSBL_SITES_MAX	8	/* smtpd_dnsbl_sites asked per client */

TAILQ_HEAD(session_list, session);
extern struct session_list sessions;
extern int smtpd_stopping;

/* smtpd.c */
void smtpd_all_gone(void);	/* the last session ended while stopping */
/* smtpd -s: one session on stdin/stdout (smtpd_stdio.c); exit status */
int smtpd_stdio(struct event_base *base);

/* session_io.c */
struct session *session_new(struct event_base *base, evutil_socket_t fd,
    const struct sockaddr *sa, socklen_t salen, enum listen_kind kind);
/* The client's name is known: connect line and greeting (session_io.c,
 * after the lookup started by session_new). */
void session_connected(struct session *s);
/* Client name lookups (smtpd_peername_lookup) may run: smtpd.c, not in
 * smtpd -s. */
void session_lookup_allow(void);
/* SIGHUP: a running resolver takes the new dns_servers (dns_reload); one
 * that failed to start is tried again at the next lookup. */
void session_lookup_reload(void);
/* A reply given as one line "DDD x.y.z text" (or "DDD text"); it goes out
 * through lib/smtp_server (buffered, written by the loop). */
void session_reply(struct session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* An error reply: counted; past the soft limit the session sleeps, past
 * the hard limit it ends with 421. */
void session_error(struct session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Send the reply (if any), then close once it is out. */
void session_close(struct session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void session_pause(struct session *s);	/* no command nor data is read */
void session_resume(struct session *s);
/* "name[addr]" for log lines (static buffer per call site is fine). */
const char *session_client(const struct session *s);
/* The HELO/EHLO name, "" before one. */
const char *session_helo(const struct session *s);
/* The address as Received: shows it: "192.0.2.1", "IPv6:2001:db8::1" (a
 * static buffer, valid until the next call). */
const char *session_addr_lit(const struct session *s);
/* The session's client stops at its next command (SIGTERM). */
void session_shutdown(struct session *s);
/* The session's state as an ST_* bit; set it by enum smtp_state. */
unsigned session_st(const struct session *s);
void session_set_state(struct session *s, enum smtp_state st);

/* smtp_session.c: the command table and the engine's hooks for commands */
extern const struct srv_cmd smtpd_commands[];
int session_on_line(struct srv_session *srv, char *line, size_t len);
int session_on_unknown(struct srv_session *srv, char *verb, char *arg);
void session_on_bad_state(struct srv_session *srv, const struct srv_cmd *c);
void session_on_bad_line(struct srv_session *srv, enum smtp_reply_id why);
void session_greet(struct session *s);
void txn_free(struct session *s);
void session_log_reject(struct session *s, const char *cmd, const char *rcpt,
    const char *reply);

/* smtp_data.c: DATA and BDAT (the engine's on_data, on_data_end) */
void data_begin(struct session *s);		/* after DATA */
void data_bdat(struct session *s, unsigned long long n, int last);
void data_on_data(struct srv_session *srv, const char *p, size_t n);
void data_on_end(struct srv_session *srv, unsigned flags);
extern const struct handoff_cb data_handoff_cb;

/* smtp_parse.c: each returns NULL or the reply line to send (addr_has_8bit
 * and the path replies come from lib/addr.h). */
const char *parse_path(const char *s, int is_mail, int utf8_ok, char *out,
    size_t outsz, const char **rest);
const char *parse_mail_params(struct session *s, const char *p);
const char *parse_rcpt_params(struct session *s, const char *p,
    struct rcpt *r);

#endif
