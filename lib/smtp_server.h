/*
 * The server session framework shared by smtpd (SMTP), queued (LMTP
 * submission) and lmtpd (LMTP): a session on a libevent bufferevent that
 * reads command lines within the bounds of lib/smtp_proto.h, dispatches
 * them through the daemon's command table (a row per verb: the states it
 * is allowed in, the function that acts), and does the generic parts
 * itself: unknown verbs (500 5.5.2), wrong state (503 5.5.1), too-long
 * lines and NUL bytes (500 5.5.2), the error counter (421 4.7.0 past the
 * hard limit), the per-command timeout (421 4.4.2), pipelining (replies
 * buffered and written together, at most N commands per read event, then
 * back to the loop for fairness), flow control (pause while the daemon
 * waits on its back end; at most input_max unprocessed bytes are buffered,
 * then reading stops), the DATA decoder and BDAT chunks, and the STARTTLS
 * switch-over (buffered plaintext input discarded, CVE-2011-0411).
 *
 * The daemon owns the protocol decisions: it sends the greeting, answers
 * each command it dispatches, chooses states, and calls srv_data_start()
 * after its 354. The framework never replies on its own except for the
 * generic errors above.
 *
 * Lifetimes: the command table, limits and ops are borrowed (not copied)
 * and must outlive every session using them; a change to the limits
 * reaches the live sessions. The session owns its bufferevent
 * (freed at close). on_close() is called exactly once per session, always
 * from the event loop or after the daemon's current callback has returned
 * (never from inside srv_close() itself); the session memory is freed
 * right after on_close() returns, so the daemon drops its pointer there.
 *
 * Memory: an idle session holds the struct (a few words of line-reader
 * and decoder state, a pointer to the limits), one timer event and the
 * bufferevent with empty buffers; the event that runs deferred work is
 * made at its first use; the command line is read into a stack buffer.
 *
 * Users, each with its decisions in its own files and the mechanics here:
 * - smtpd (smtpd/session_io.c, smtp_session.c, smtp_data.c, smtpd_tls.c,
 *   smtpd_auth.c): its rows all run one fn that finds its row with
 *   srv_command() (per-command counters, the SIGTERM check after each
 *   command) and 503 texts by what is missing through on_bad_state;
 *   replies given as "DDD x.y.z text" lines split into srv_reply();
 *   on_unknown ends non-SMTP (HTTP) input with 421; on_bad_line gives a
 *   NUL line Postfix's text; on_line takes the lines of an AUTH exchange;
 *   DATA through srv_data_start() with on_data refusing the message at
 *   the first bare LF/CR the decoder reports (srv_data_flags(): queued
 *   drops the partial file at once) and BDAT through srv_bdat_start(),
 *   its octets checked for bare line ends in on_data, a chunk out of
 *   place read with SRV_BDAT_DISCARD before its 503; srv_pause() while
 *   queued (the handoff) is busy or full, srv_resume() on its answer or
 *   drain; STARTTLS through srv_starttls() (the pipelined plaintext is
 *   dropped, CVE-2011-0411), smtps as an OpenSSL filter bufferevent given
 *   to srv_session_new(), the handshake deadline smtpd's own timer;
 *   soft/hard error limits, error sleep, linger and the hostname in the
 *   421 texts from its config. `smtpd -s` runs the same session on one
 *   end of a socketpair bridged to stdin/stdout.
 * - lmtpd (lmtpd/lmtp_session.c) and queued's submission server
 *   (queued/submit.c): LMTP, states as an enum, per-row 503 texts, own
 *   replies from a string table, pause while the back end works.
 */
#ifndef HERMOD_SMTP_SERVER_H
#define HERMOD_SMTP_SERVER_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/bufferevent.h>
#include <event2/event.h>

#include "smtp_proto.h"

struct srv_session;
typedef struct ssl_st SSL;

/* Why a session ended (for on_close and the daemon's log line). */
enum srv_close_why {
	SRV_CLOSE_EOF,		/* the peer closed */
	SRV_CLOSE_ERROR,	/* read/write error, TLS failure */
	SRV_CLOSE_TIMEOUT,	/* idle/command timeout, 421 4.4.2 sent */
	SRV_CLOSE_ERRORS,	/* hard error limit, 421 4.7.0 sent */
	SRV_CLOSE_QUIT,		/* srv_close_after_flush() completed */
	SRV_CLOSE_LOCAL,	/* srv_close() by the daemon */
};

/* Argument rules of a command, checked before fn (501 5.5.4 otherwise). */
#define SRV_ARG_ANY	0x00
#define SRV_ARG_NONE	0x01	/* "QUIT", "DATA", "RSET": no argument */
#define SRV_ARG_NEED	0x02	/* "MAIL", "RCPT", "EHLO": one is needed */

/*
 * One row per verb; the table ends with a row whose verb is NULL.
 * states: bitmask of SRV_STATE(n) values the command is allowed in;
 * 0 means any state. fn gets the argument (spaces trimmed, "" when none,
 * writable, valid during the call only).
 */
struct srv_cmd {
	const char *verb;	/* upper case */
	unsigned states;
	unsigned args;		/* SRV_ARG_* */
	void (*fn)(struct srv_session *s, char *arg);
};
#define SRV_STATE(n)	(1u << (n))	/* daemon states are 0..31 */

/* Bounds of a session; 0 in a field means the default in brackets.
 * Borrowed by each session (see Lifetimes above). */
struct srv_limits {
	size_t line_max;		/* command line incl. CRLF [SMTP_CMD_LINE_MAX] */
	unsigned pipeline_max;		/* commands per read event [32] */
	unsigned hard_error_limit;	/* errors before 421 4.7.0 [20, Postfix] */
	unsigned timeout_sec;		/* per command / idle [300, smtpd_timeout] */
	size_t input_max;		/* unprocessed input buffered [65536] */
	size_t output_max;		/* unsent replies before we stop reading
					   commands [65536] */
	unsigned flags;			/* SRV_F_* */
	/* Soft error limit (Postfix's smtpd_soft_error_limit and
	 * smtpd_error_sleep_time): each error past the first soft_error_limit
	 * stops command processing for error_sleep_ms [0: never]. */
	unsigned soft_error_limit;
	unsigned error_sleep_ms;
	/* Lingering close: once the last reply of a closing session is
	 * written, half-close (not under TLS), read and drop the input for at
	 * most linger_ms, then close, so that unread input does not make the
	 * kernel send a reset that destroys the last 421 [0: close at once]. */
	unsigned linger_ms;
	/* Put into the engine's own 421 texts ("421 4.4.2 <host> Error:
	 * timeout exceeded"), as Postfix does [NULL: no name]. Borrowed. */
	const char *hostname;
	/* A deadline for each DATA and BDAT request, as Postfix's
	 * smtpd_per_request_deadline with smtpd_min_data_rate: timeout_sec
	 * from its start, plus one second for every min_data_rate message
	 * bytes received, plus the time the daemon kept the session paused.
	 * A client that trickles its message slower than that gets the 421
	 * 4.4.2 of a timeout however often a byte comes; the per-read
	 * timeout_sec still holds too [0: per-read timeout only]. */
	unsigned min_data_rate;
};
/* Reject command lines ended by a bare LF (500 5.5.2) instead of taking
 * them (Postfix's smtpd_forbid_bare_newline = reject applied to commands). */
#define SRV_F_REJECT_BARE_LF	0x01
/* DATA in normalize mode (bare LF -> CRLF), for trusted LMTP input. */
#define SRV_F_DATA_NORMALIZE	0x02

/* Flags of on_data_end(), on top of SMTP_DATA_F_* from the decoder. */
#define SRV_END_BDAT		0x100	/* end of a BDAT chunk, not of DATA */
#define SRV_END_LAST		0x200	/* that chunk was BDAT ... LAST */
#define SRV_END_DISCARDED	0x400	/* srv_bdat_start(..., SRV_BDAT_DISCARD) */

struct srv_ops {
	/* Decoded message bytes (DATA) or raw chunk bytes (BDAT). */
	void (*on_data)(struct srv_session *s, const char *p, size_t n);
	/*
	 * End of the DATA (after the final dot) or of one BDAT chunk. flags:
	 * SMTP_DATA_F_BARE_LF/BARE_CR/NUL (reject: RPL_DATA_BARE_LF),
	 * SMTP_DATA_F_TOO_BIG (reject: RPL_MSG_TOO_BIG), SRV_END_*. The
	 * session is back in command mode; the daemon replies now or calls
	 * srv_pause() and replies later.
	 */
	void (*on_data_end)(struct srv_session *s, unsigned flags);
	/* Exactly once; the session is freed when it returns. */
	void (*on_close)(struct srv_session *s, enum srv_close_why why);
	/*
	 * Optional. A verb not in the table (or not a word): return 1 when
	 * the daemon answered it (e.g. smtpd ends an HTTP request with 421),
	 * 0 for the standard 500 5.5.2. The error is counted either way.
	 */
	int (*on_unknown)(struct srv_session *s, char *verb, char *arg);
	/* Optional. A known verb in the wrong state: the daemon's own 503
	 * text ("need MAIL command"); the default is RPL_BAD_SEQUENCE. */
	void (*on_bad_state)(struct srv_session *s, const struct srv_cmd *cmd);
	/* Optional. The TLS handshake (after srv_starttls(), or of an
	 * implicit-TLS bufferevent) finished (ok = 1) or failed (0; the
	 * session is then closed with SRV_CLOSE_ERROR after this). */
	void (*on_tls)(struct srv_session *s, int ok);
	/*
	 * Optional. Every complete command line (no CRLF; len counts NULs,
	 * which it may hold) before the engine looks at it: return 1 when
	 * the daemon took it (a line of an AUTH exchange, RFC 4954 4, which
	 * must never be read as a command), 0 for the normal checks and the
	 * table. Not counted as an error either way.
	 */
	int (*on_line)(struct srv_session *s, char *line, size_t len);
	/*
	 * Optional. A line refused before dispatch, why being RPL_LINE_TOO_LONG,
	 * RPL_NUL or RPL_BARE_LF (with SRV_F_REJECT_BARE_LF): the daemon's own
	 * reply text; the default is that table reply. Counted either way.
	 */
	void (*on_bad_line)(struct srv_session *s, enum smtp_reply_id why);
};

/*
 * A session on `bev` (a socket bufferevent, or an OpenSSL one for
 * implicit TLS), made with BEV_OPT_CLOSE_ON_FREE so that the session's
 * end closes the socket; the session takes ownership of bev, sets its
 * callbacks and watermarks, and starts reading. The state starts at 0.
 * The daemon sends the greeting. Never fails (fatal on no memory).
 */
struct srv_session *srv_session_new(struct bufferevent *bev,
    const struct srv_cmd *table, const struct srv_limits *lim,
    const struct srv_ops *ops, void *udata);

void *srv_udata(const struct srv_session *s);
void srv_set_udata(struct srv_session *s, void *udata);
struct bufferevent *srv_bev(const struct srv_session *s);
unsigned srv_state(const struct srv_session *s);
void srv_set_state(struct srv_session *s, unsigned state);	/* 0..31 */
/* Flags (SMTP_LINE_F_*) of the command line being dispatched. */
unsigned srv_line_flags(const struct srv_session *s);
/* Errors counted so far. */
unsigned srv_errors(const struct srv_session *s);
/* The table row whose fn is running (NULL outside a command fn), for a
 * daemon whose rows share one fn (counting, a check after each command). */
const struct srv_cmd *srv_command(const struct srv_session *s);
/* SMTP_DATA_F_* seen so far in the DATA being decoded (or last decoded):
 * lets on_data refuse a message at its first bare LF instead of at the end. */
unsigned srv_data_flags(const struct srv_session *s);

/* Replies, buffered (pipelining) and written by the loop. */
void srv_reply(struct srv_session *s, int code, const char *esc,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void srv_vreply(struct srv_session *s, int code, const char *esc,
    const char *fmt, va_list ap);
void srv_reply_id(struct srv_session *s, enum smtp_reply_id id);
/* A whole "DDD[ x.y.z] text" line (smtp_reply_split); one that is not a
 * reply line (a broken text from elsewhere) goes out as 451 4.3.0. */
void srv_reply_line(struct srv_session *s, const char *line);

/*
 * Count a protocol error (the framework counts its own: unknown verb,
 * wrong state, bad argument form, long line, NUL). Reaching the hard
 * limit appends 421 4.7.0 and closes after the flush (SRV_CLOSE_ERRORS).
 * Returns 1 when the session is ending, else 0.
 */
int srv_error(struct srv_session *s);
/* Forget the errors counted so far: smtpd calls it once a message is
 * queued, as Postfix forgives a client that delivers mail. */
void srv_errors_forgive(struct srv_session *s);

/*
 * DATA: after the daemon's 354, the input is decoded (dot-stuffing, end
 * at CRLF.CRLF only) and handed to on_data, at most max_size bytes
 * (0: no limit; past it SMTP_DATA_F_TOO_BIG, reading goes on to the end);
 * then on_data_end. Called from a command fn, it applies to the bytes
 * that follow that command (pipelined ones included).
 */
void srv_data_start(struct srv_session *s, uint64_t max_size);

/*
 * BDAT: the next `size` bytes are chunk data: on_data gets them raw (or
 * they are dropped with SRV_BDAT_DISCARD, for a chunk the daemon refused
 * but must still read), then on_data_end(SRV_END_BDAT [| SRV_END_LAST]).
 * size 0 gives on_data_end at once (on the next loop turn).
 */
#define SRV_BDAT_LAST		0x01
#define SRV_BDAT_DISCARD	0x02
void srv_bdat_start(struct srv_session *s, uint64_t size, unsigned flags);

/*
 * Flow control: while paused no command is dispatched and no DATA is
 * decoded (a pause from on_data takes effect after the current piece of
 * at most 16 KiB input); input stays buffered up to input_max, then the
 * socket is not read. The command timeout does not run while paused.
 * srv_resume() goes on with buffered pipelined input from the loop.
 */
void srv_pause(struct srv_session *s);
void srv_resume(struct srv_session *s);
int srv_paused(const struct srv_session *s);

/* Stop reading; close once every reply is written (after 221 or 421). */
void srv_close_after_flush(struct srv_session *s);
/* Close now (unsent replies are dropped); on_close(SRV_CLOSE_LOCAL) follows. */
void srv_close(struct srv_session *s);

/* Bytes received and not processed yet (STARTTLS requires 0). */
size_t srv_input_pending(const struct srv_session *s);

/*
 * STARTTLS (RFC 3207), after the daemon's 220 reply: any buffered input
 * is discarded (never executed: CVE-2011-0411), the bufferevent is wrapped
 * in a bufferevent_openssl filter accepting on `ssl` (which it owns from
 * now on), and on_tls() reports the handshake. The daemon resets its
 * protocol state itself (RFC 3207 4.2). Returns 0, -1 if the filter cannot
 * be made (the session is then closed).
 */
int srv_starttls(struct srv_session *s, SSL *ssl);
/* 1 once the session runs over TLS (implicit or after STARTTLS). */
int srv_tls_active(const struct srv_session *s);

#endif
