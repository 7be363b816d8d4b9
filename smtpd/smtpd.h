/*
 * smtpd's internal interface: the session (one per client connection, all
 * on one libevent loop), shared by smtpd.c (listeners, signals),
 * session_io.c (reading, replies, timeouts, error counting),
 * smtp_session.c (the command table and state machine), smtp_data.c
 * (DATA and BDAT streamed to queued) and smtp_parse.c (paths and ESMTP
 * parameters).
 *
 * Memory: an idle session is this struct and its bufferevent; the
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
#include "received.h"
#include "smtp_proto.h"
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

enum listen_kind { LK_SMTP, LK_SUBMISSION, LK_SMTPS };

/* Session states, as bits so that a command row lists where it may run. */
enum {
	ST_GREET = 1 << 0,	/* before HELO/EHLO */
	ST_READY = 1 << 1,	/* after HELO/EHLO, no transaction */
	ST_MAIL = 1 << 2,	/* MAIL accepted */
	ST_RCPT = 1 << 3,	/* at least one RCPT accepted */
	ST_BDAT = 1 << 4,	/* BDAT chunks under way */
	ST_ANY = 0x1f,
};

/* What the input is being read as. */
enum input_mode {
	IN_CMD,		/* command lines */
	IN_DATA,	/* DATA until CRLF.CRLF */
	IN_CHUNK,	/* BDAT octets */
	IN_WAIT,	/* waiting for queued: not reading */
	IN_CLOSING,	/* last reply going out, then close */
};

/* Commands counted for the disconnect log line. */
enum cmd_id {
	CMD_HELO, CMD_EHLO, CMD_MAIL, CMD_RCPT, CMD_DATA, CMD_BDAT, CMD_RSET,
	CMD_NOOP, CMD_QUIT, CMD_VRFY, CMD_EXPN, CMD_HELP, CMD_STARTTLS,
	CMD_AUTH, CMD_UNKNOWN, CMD_NIDS
};

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
	/* the message */
	int bdat;			/* BDAT transaction */
	int started;			/* handed to queued */
	enum tphase phase;
	int failed;			/* queued refused: result kept */
	char fail_line[320];		/* queued's refusal, as our reply */
	enum dstate ds;			/* BDAT */
	struct smtp_data_dec dec;	/* DATA */
	unsigned long long msg_size;	/* bytes after decoding */
	uint64_t chunk_left;		/* BDAT octets still to read */
	int chunk_last;
	const char *reject;		/* the message is refused: reply */
	struct hopcount hops;
	struct hdrfix fix;		/* submission: Message-ID:, Date: */
	struct buf out;			/* decoded bytes not yet handed on */
	char qid[HANDOFF_QID_MAX + 1];
	int waiting_drain;
};

struct session {
	TAILQ_ENTRY(session) entry;
	struct event_base *base;
	struct bufferevent *bev;
	enum listen_kind kind;
	struct sockaddr_storage sa;
	char addr[INET6_ADDRSTRLEN + 8];	/* "192.0.2.1", "2001:db8::1" */
	char addr_lit[INET6_ADDRSTRLEN + 16];	/* "IPv6:2001:db8::1" */
	char port[8];
	const char *name;			/* reverse name: "unknown" */
	int trusted;				/* mynetworks */
	int counted;				/* in the connection limits */

	unsigned state;			/* ST_* */
	enum input_mode mode;
	int esmtp;
	char helo[SMTPD_HELO_MAX + 1];
	/* issue 8 slots in here: TLS on the connection, AUTH user */
	int tls;
	char *auth_user;
	int tls_handshake;		/* TLS being set up: input waits */
	struct event *tls_timer;	/* handshake deadline (smtpd_tls.c) */
	struct auth_state *auth;	/* AUTH exchange (smtpd_auth.c) */

	int errors;
	struct smtp_line_reader lr;	/* command lines (lib/smtp_proto) */
	time_t line_start;		/* first byte of an unfinished line */
	uint64_t skip_left;		/* BDAT octets read and dropped */
	const char *skip_reply;		/* ... then this reply */
	int out_full;			/* stopped reading: replies unread */
	int lingering;			/* last reply out: draining input */
	int in_input;			/* inside the input loop */
	int free_me;			/* free when the loop unwinds */
	int peer_eof;			/* client half-closed: finish its input */
	struct event *sleep_ev;		/* error sleep, deferred input */
	int sleeping;
	unsigned counts[CMD_NIDS];
	unsigned nmsg;

	struct txn *tx;
	struct handoff *ho;
};

TAILQ_HEAD(session_list, session);
extern struct session_list sessions;
extern int smtpd_stopping;

/* smtpd.c */
void smtpd_all_gone(void);	/* the last session ended while stopping */
/* smtpd -s: one session on stdin/stdout (smtpd_stdio.c); exit status */
int smtpd_stdio(struct event_base *base);

/*
 * Issue 8 (TLS, AUTH) slots in like this: STARTTLS (a row in
 * smtp_session.c's table, offered by offer_starttls()) checks that the
 * input buffer is empty (else everything pipelined after it is thrown
 * away), replies 220, wraps s->bev in bufferevent_openssl_filter_new() and
 * hands the result to session_set_bev(); then txn_free(), s->helo[0] = 0,
 * s->state = ST_GREET and s->tls = 1 (the session starts over). smtps
 * listeners (LK_SMTPS) do the same wrapping in session_new before the
 * greeting. AUTH sets s->auth_user; relay permission, the Received:
 * protocol name (ESMTPA/ESMTPSA) and the log lines already follow it, and
 * MAIL on a submission listener already requires it (530 5.7.0).
 */

/* session_io.c */
/* Take over a (new) bufferevent: callbacks, watermarks, timeouts. */
void session_set_bev(struct session *s, struct bufferevent *bev);
struct session *session_new(struct event_base *base, evutil_socket_t fd,
    const struct sockaddr *sa, socklen_t salen, enum listen_kind kind);
void session_reply(struct session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* An error reply: counted; past the soft limit the session sleeps, past
 * the hard limit it ends with 421. */
void session_error(struct session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Send the reply (if any), then close once it is out. */
void session_close(struct session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Half-close once the last reply is out, drain input briefly, free. */
void session_linger(struct session *s);
void session_pause(struct session *s);		/* stop reading (IN_WAIT) */
void session_resume(struct session *s, enum input_mode m);
void session_free(struct session *s);
/* "name[addr]" for log lines (static buffer per call site is fine). */
const char *session_client(const struct session *s);
/* The session's client stops at its next command (SIGTERM). */
void session_shutdown(struct session *s);
void session_kick(struct session *s);	/* process input after a pause */

/* smtp_session.c */
void session_command(struct session *s, char *line, size_t len);
void session_greet(struct session *s);
void txn_free(struct session *s);
void session_log_reject(struct session *s, const char *cmd, const char *rcpt,
    const char *reply);

/* smtp_data.c */
void data_begin(struct session *s);		/* after DATA or first BDAT */
void data_input(struct session *s);		/* IN_DATA / IN_CHUNK input */
void data_bdat(struct session *s, unsigned long long n, int last);
extern const struct handoff_cb data_handoff_cb;

/* smtp_parse.c: each returns NULL or the reply line to send (addr_has_8bit
 * and the path replies come from lib/addr.h). */
const char *parse_path(const char *s, int is_mail, int utf8_ok, char *out,
    size_t outsz, const char **rest);
const char *parse_mail_params(struct session *s, const char *p);
const char *parse_rcpt_params(struct session *s, const char *p,
    struct rcpt *r);

#endif
