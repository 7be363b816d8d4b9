/*
 * The SMTP/LMTP client, one engine for both (Postfix's smtp/lmtp habit):
 * queued uses it for LMTP to lmtpd and SMTP to remote exchangers, smtpd
 * for LMTP to queued's submission socket (with XFORWARD). It runs on a
 * bufferevent in the caller's event loop and holds the client side of the
 * protocol: the bounded reply reader and the DATA encoder (no shared
 * lib/smtp_proto appeared; if one does, the two can move onto it).
 *
 * Use: connect (or attach a connected bufferevent), then queue commands
 * right away: cli_xforward, cli_mail, cli_rcpt..., cli_data_fd or
 * cli_data_push. The client waits for the greeting and EHLO/LHLO first,
 * then sends; with PIPELINING offered it sends XFORWARD, MAIL, the RCPTs
 * and DATA in one write (RFC 2920), otherwise one command per reply.
 * Parameters the server did not offer are left out (SIZE, BODY, SMTPUTF8,
 * RET/ENVID/NOTIFY/ORCPT need DSN, XFORWARD attributes it did not name);
 * check cli_caps() when a missing extension must fail the message instead.
 *
 * Results, in order, for one transaction:
 *   mail(reply)                  the MAIL reply (optional callback)
 *   rcpt(idx, reply)             once per recipient: its RCPT reply, or the
 *                                MAIL failure / connection loss standing in
 *   data_start()                 push mode only: 354 came, write the data
 *   final(idx, reply)            once per recipient accepted at RCPT: its
 *                                LMTP reply after the dot, SMTP's single
 *                                reply after the dot, a DATA rejection, or
 *                                the connection loss standing in
 *   done()                       the transaction is over; another may follow
 *                                (no RSET needed) if cli_idle()
 * closed(reply) comes last of all, once, whenever the connection ends (a
 * connect failure, a rejected greeting or EHLO, a timeout, the peer going
 * away, after cli_quit); its reply is synthesized (4.4.x) for local
 * failures, or is the server's own (greeting 554, 421, ...).
 * A failure that the client synthesizes is always a 4xx: the caller
 * retries, never bounces, on a connection problem. Its status tells the
 * kind: 4.4.2 connection (lost, timeout, garbage), 4.7.5 TLS (offer
 * missing under CLI_TLS_MUST, handshake failed: under "may" a caller can
 * retry in plaintext), 4.7.8 AUTH (refused or not offered; a server's
 * 5xx refusal is turned into a 4xx, as Postfix's soft bounce does).
 *
 * Session set-up after the greeting: EHLO (LHLO), then STARTTLS when
 * s.tls asks for it and the server offers it (EHLO again), then AUTH when
 * s.auth_user is set, then ready().
 *
 * Ownership: strings passed in are copied. The replies handed to callbacks
 * are borrowed for the duration of the callback. cli_free() may be called
 * from inside any callback (the connection is then torn down when the
 * callback returns, with no further callbacks). The process must ignore
 * SIGPIPE (daemon_init does): a peer that goes away is seen as EPIPE.
 */
#ifndef HERMOD_SMTP_CLIENT_H
#define HERMOD_SMTP_CLIENT_H

#include <sys/types.h>
#include <sys/socket.h>

#include <event2/event.h>
#include <event2/bufferevent.h>

/* Bounds first. Times are seconds; defaults are Postfix's. A reply's
 * time bounds the whole wait for it (a trickle does not extend it);
 * data_xfer_timeout is a stall, the message may take longer. */
struct cli_settings {
	int connect_timeout;	/* 30:  TCP/unix connect */
	int greeting_timeout;	/* 300: the 220 banner */
	int helo_timeout;	/* 300: EHLO/LHLO/HELO reply */
	int mail_timeout;	/* 300: MAIL (and XFORWARD, RSET) reply */
	int rcpt_timeout;	/* 300: each RCPT reply */
	int data_timeout;	/* 120: the DATA reply (354) */
	int data_xfer_timeout;	/* 180: no progress writing the message */
	int dot_timeout;	/* 600: the reply(s) after the final dot */
	int quit_timeout;	/* 300: QUIT reply */
	size_t max_reply_bytes;	/* 8192: the text kept of one reply (the
				 * rest is cut); lines are bounded by
				 * SMTP_REPLY_LINES_MAX */
	int max_pipeline;	/* 100: commands in flight when pipelining */
	int lmtp;		/* LHLO, one final reply per accepted rcpt */
	int tls;		/* CLI_TLS_*: STARTTLS (needs cb.tls_wrap) */
	const char *auth_user;	/* AUTH PLAIN or LOGIN after EHLO (and after
				 * TLS when on); copied; NULL: no AUTH */
	const char *auth_pass;
	const char *helo_name;	/* borrowed; default: conf myhostname */
	const char *peer_name;	/* borrowed; for texts ("host[addr]") */
};

enum { CLI_TLS_NONE, CLI_TLS_MAY, CLI_TLS_MUST };

/* Fill in the defaults above (lmtp 0, helo_name from conf myhostname). */
void cli_settings_default(struct cli_settings *s);

/* A reply from the server or one made up for a local failure. */
struct cli_reply {
	int code;		/* 250, 452, ... */
	char status[16];	/* enhanced status "4.2.2", or "" */
	const char *text;	/* the lines' texts (without code and
				 * status), joined with "\n" */
	int local;		/* 1: synthesized here (timeout, lost ...) */
};

enum {
	CLI_CAP_PIPELINING = 1 << 0,
	CLI_CAP_SIZE = 1 << 1,
	CLI_CAP_8BITMIME = 1 << 2,
	CLI_CAP_DSN = 1 << 3,
	CLI_CAP_SMTPUTF8 = 1 << 4,
	CLI_CAP_STARTTLS = 1 << 5,
	CLI_CAP_AUTH = 1 << 6,
	CLI_CAP_XFORWARD = 1 << 7,
	CLI_CAP_CHUNKING = 1 << 8,
	CLI_CAP_ENHANCEDSTATUSCODES = 1 << 9,
};

struct cli_caps {
	int esmtp;		/* EHLO/LHLO worked (0: HELO fallback) */
	unsigned flags;		/* CLI_CAP_* */
	unsigned long long size;/* SIZE limit; 0: none given */
	char auth[128];		/* AUTH mechanisms, space separated */
	char xforward[128];	/* XFORWARD attribute names offered */
	char name[256];		/* the server's name: the first word of its
				 * EHLO/HELO reply (loop detection) */
};

struct cli_conn;

struct cli_callbacks {
	void (*ready)(struct cli_conn *, const struct cli_caps *, void *);
	void (*mail)(struct cli_conn *, const struct cli_reply *, void *);
	void (*rcpt)(struct cli_conn *, int idx, const struct cli_reply *,
	    void *);
	void (*data_start)(struct cli_conn *, void *);
	void (*drain)(struct cli_conn *, void *);	/* push flow control */
	void (*final)(struct cli_conn *, int idx, const struct cli_reply *,
	    void *);
	void (*done)(struct cli_conn *, void *);
	void (*closed)(struct cli_conn *, const struct cli_reply *, void *);
	/*
	 * STARTTLS: after the server's 220, wrap the plain bufferevent in a
	 * TLS one in connecting state (bufferevent_openssl_filter_new with
	 * BEV_OPT_CLOSE_ON_FREE: it then owns `plain`); NULL on failure.
	 * The client waits for the handshake, then sends EHLO again.
	 */
	struct bufferevent *(*tls_wrap)(struct cli_conn *,
	    struct bufferevent *plain, void *);
};

/* MAIL FROM parameters; zero/NULL fields are not sent. */
struct cli_mail_params {
	unsigned long long size;	/* SIZE= (if offered) */
	int body_8bitmime;		/* BODY=8BITMIME (if offered) */
	int smtputf8;			/* SMTPUTF8 (if offered) */
	const char *ret;		/* RET=FULL|HDRS (if DSN) */
	const char *envid;		/* ENVID=, decoded: xtext-encoded here */
};

/* RCPT TO parameters (sent if DSN is offered). */
struct cli_rcpt_params {
	const char *notify;		/* "SUCCESS,FAILURE", "NEVER", ... */
	const char *orcpt;		/* "rfc822;user@example.org", decoded */
};

/* XFORWARD attributes (Postfix); NULL fields are not sent, "" is sent as
 * [UNAVAILABLE]. Only the attributes the server named are sent. */
struct cli_xforward {
	const char *name, *addr, *port, *proto, *helo, *ident, *source;
};

/*
 * Connect and start the session. Never NULL for a valid path/address:
 * failures arrive as closed() from the event loop.
 */
struct cli_conn *cli_connect_sa(struct event_base *base,
    const struct sockaddr *sa, socklen_t salen, const struct cli_settings *s,
    const struct cli_callbacks *cb, void *arg);
struct cli_conn *cli_connect_unix(struct event_base *base, const char *path,
    const struct cli_settings *s, const struct cli_callbacks *cb, void *arg);
/* Take over a connected bufferevent (tests, or a TLS one later). */
struct cli_conn *cli_attach(struct event_base *base, struct bufferevent *bev,
    const struct cli_settings *s, const struct cli_callbacks *cb, void *arg);

/* The transaction. 0, or -1 when called out of order (caller bug). */
int cli_xforward(struct cli_conn *c, const struct cli_xforward *xf);
int cli_mail(struct cli_conn *c, const char *sender,
    const struct cli_mail_params *p);
/* Returns the recipient's index (0, 1, ...) used in rcpt()/final(). */
int cli_rcpt(struct cli_conn *c, const char *rcpt,
    const struct cli_rcpt_params *p);
/* The message from a file: `len` bytes at `off`, with CRLF or LF line
 * ends, not dot-stuffed. The fd must stay open until done(). */
int cli_data_fd(struct cli_conn *c, int fd, off_t off, off_t len);
/* The message pushed by the caller after data_start(). */
int cli_data_push(struct cli_conn *c);
/* Message bytes (CRLF or LF line ends, not dot-stuffed). Returns 1 when
 * the output is above its high watermark: stop until drain(). 0: go on.
 * -1: not in the data phase (e.g. the server went away: wait for the
 * final()/closed() callbacks). */
int cli_data_write(struct cli_conn *c, const void *p, size_t n);
int cli_data_end(struct cli_conn *c);

/* Abandon the open transaction before its data (smtpd's client sent
 * RSET or left): no more callbacks about it, RSET goes to the server.
 * -1 once DATA has gone out: cli_free() the connection then. */
int cli_rset(struct cli_conn *c);

/* Between transactions. */
int cli_idle(const struct cli_conn *c);		/* ready for cli_mail */
const struct cli_caps *cli_caps(const struct cli_conn *c);
const char *cli_peer(const struct cli_conn *c);
/* The bufferevent under TLS after STARTTLS (for its SSL: version and
 * cipher in log lines), else NULL. */
struct bufferevent *cli_tls_bev(const struct cli_conn *c);
/* Polite end: QUIT, wait for its reply (or quit_timeout), then closed().
 * Before the session is ready or with a transaction open: closes at once
 * (closed() with a local 421). */
void cli_quit(struct cli_conn *c);
/* Immediate end: close, no more callbacks. */
void cli_free(struct cli_conn *c);
/* Hand an idle connection to another owner: its callbacks and arg from
 * now on (a pool of kept connections). */
void cli_set_callbacks(struct cli_conn *c, const struct cli_callbacks *cb, void *arg);

#endif
