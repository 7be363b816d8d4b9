/*
 * The pure pieces of the SMTP/LMTP protocol engine, shared by the server
 * side (lib/smtp_server, smtpd, queued's submission, lmtpd) and the client
 * side (lib/smtp_client): bounds, the line reader, command and ESMTP
 * parameter parsing, xtext, the reply table and writer, the client's reply
 * reader, the DATA decoder (server) and encoder (client), BDAT parsing.
 * Nothing here does I/O or keeps global state: input comes from a libevent
 * evbuffer or a byte range, output goes to an evbuffer or a callback, so
 * every piece is unit-tested and fuzzed on its own.
 *
 * Symbols are prefixed smtp_ (functions, types) and SMTP_ / RPL_ (constants).
 * Implemented in smtp_proto.c (lines, commands, parameters, xtext, BDAT),
 * smtp_reply.c (reply table, writer, reader) and smtp_proto_data.c (DATA).
 */
#ifndef HERMOD_SMTP_PROTO_H
#define HERMOD_SMTP_PROTO_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

struct evbuffer;

/* Where decoded DATA/BDAT bytes go; p is valid during the call only. */
typedef void (*smtp_data_sink)(void *arg, const char *p, size_t n);

/* ------------------------------------------------------------------ */
/* Bounds, all in one place (RFC 5321 4.5.3.1 unless said otherwise).  */

/*
 * Command line, CRLF included. RFC 5321 4.5.3.1.4 says 512 octets, but
 * every ESMTP extension that adds parameters may raise it (RFC 1869 by 40
 * per parameter, RFC 3461's ORCPT/ENVID by up to 500 more, RFC 4954 AUTH
 * initial responses by 12288): like Postfix's line_length_limit we accept
 * 2048 and answer 500 5.5.2 past it.
 */
#define SMTP_CMD_LINE_RFC	512
#define SMTP_CMD_LINE_MAX	2048
/* Reply line we write, CRLF included (4.5.3.1.5). */
#define SMTP_REPLY_LINE_MAX	512
/* Reply line we accept from a peer: lenient, as Postfix's client is. */
#define SMTP_REPLY_LINE_READ_MAX 2048
/* Lines in one multi-line reply we accept (and write at most). */
#define SMTP_REPLY_LINES_MAX	100
/* Text of one reply we keep (joined lines); the rest is cut, not an error. */
#define SMTP_REPLY_TEXT_MAX	16384
/* ESMTP parameters on one MAIL/RCPT (RFC 5321 4.1.2 sets no number). */
#define SMTP_PARAMS_MAX		16
/* Command verbs are short words (longest standard one: STARTTLS, XFORWARD). */
#define SMTP_VERB_MAX		16
/* Enhanced status code "c.sss.ddd" (RFC 3463 2: 1-3 digits each). */
#define SMTP_ESC_MAX		12
/*
 * DATA text lines (4.5.3.1.6 says 1000) are NOT limited by the decoder: it
 * streams and the message size limit bounds the whole; lmtpd/queued decide
 * what to do with long lines.
 */
/* BDAT chunk size we parse at most (RFC 3030 sets no bound): 2^40. */
#define SMTP_BDAT_MAX		((uint64_t)1 << 40)

/* ------------------------------------------------------------------ */
/* Line reader (commands on the server, replies on the client).        */

enum smtp_line_res {
	SMTP_LINE_OK,		/* a line was copied out */
	SMTP_LINE_MORE,		/* no complete line yet: wait for more bytes */
	SMTP_LINE_TOO_LONG,	/* no LF within the limit: reply 500 5.5.2 */
};

/* Flags describing the line returned with SMTP_LINE_OK. */
#define SMTP_LINE_F_BARE_LF	0x01	/* ended by LF without CR */
#define SMTP_LINE_F_NUL		0x02	/* contained a NUL byte */
#define SMTP_LINE_F_BARE_CR	0x04	/* contained a CR not followed by LF */

/*
 * State kept between calls: after SMTP_LINE_TOO_LONG the reader discards
 * everything up to and including the next LF, a piece at a time, so a
 * giant line is drained without ever being buffered. One per connection;
 * it holds no memory.
 */
struct smtp_line_reader {
	size_t max;		/* line limit, LF (and CR) included */
	int discarding;
};

void smtp_line_init(struct smtp_line_reader *lr, size_t max);

/*
 * Take one line out of `in`. The line limit counts the CRLF, so a line of
 * max-2 characters plus CRLF is accepted and one more is SMTP_LINE_TOO_LONG
 * (reported once, as soon as max bytes without LF are buffered; the rest of
 * that line is then discarded silently). With SMTP_LINE_OK the line,
 * without its CRLF (or bare LF), is copied NUL-terminated into `line`,
 * which must hold lr->max bytes; *lenp is its length (it may contain NULs:
 * see *flagsp). A bare LF ends a command line like CRLF does (Postfix
 * accepts it too) but is flagged, so a strict policy can reject it.
 */
enum smtp_line_res smtp_line_read(struct smtp_line_reader *lr,
    struct evbuffer *in, char *line, size_t *lenp, unsigned *flagsp);

/* ------------------------------------------------------------------ */
/* Commands and ESMTP parameters. All parse in place (they write NULs   */
/* into the caller's line) and return pointers into it.                 */

/*
 * Split "VERB[ SP arg]": the verb is upper-cased in place; *argp points at
 * the argument with surrounding spaces removed ("" when none). Returns 0,
 * or -1 when the verb is empty, longer than SMTP_VERB_MAX or not made of
 * letters and digits (the caller answers 500 5.5.2, as for an unknown one).
 */
int smtp_cmd_split(char *line, char **verbp, char **argp);

/*
 * Split a MAIL/RCPT argument: `prefix` is "FROM:" or "TO:" (matched
 * case-insensitively; spaces after the colon are tolerated, as Postfix
 * does). *pathp gets the path with its angle brackets ("<a@b>", "<>");
 * a '>' inside a quoted string or after a backslash does not end it.
 * *paramsp gets the rest ("" when none) for smtp_params_parse(). A path
 * without angle brackets is accepted up to the first space only when
 * `lenient` is set (Postfix's strict_rfc821_envelopes = no). Returns 0,
 * -1 on a syntax error in the path or after it (501 5.5.4), -2 when the
 * prefix is missing (501 5.5.2).
 */
int smtp_path_split(char *arg, const char *prefix, int lenient,
    char **pathp, char **paramsp);

struct smtp_param {
	char *key;	/* as sent; compare with strcasecmp */
	char *value;	/* NULL when the parameter has no "=value" */
};

struct smtp_params {
	unsigned n;
	struct smtp_param p[SMTP_PARAMS_MAX];
};

enum smtp_param_err {
	SMTP_PARAM_OK = 0,
	SMTP_PARAM_SYNTAX,	/* 501 5.5.4 */
	SMTP_PARAM_TOO_MANY,	/* 501 5.5.4: more than SMTP_PARAMS_MAX */
	SMTP_PARAM_DUPLICATE,	/* 501 5.5.4: the same keyword twice */
};

/* Allow UTF-8 (bytes >= 0x80) in values: SMTPUTF8 (RFC 6531 3.3). */
#define SMTP_PARAM_F_UTF8	0x01

/*
 * Parse "KEY[=VALUE] KEY[=VALUE] ..." (RFC 5321 4.1.2): KEY is a letter or
 * digit then letters, digits and '-'; VALUE is one or more of ASCII 33-126
 * except '='. Runs of spaces separate parameters. On error `out` holds
 * what was parsed before the bad one.
 */
enum smtp_param_err smtp_params_parse(char *s, unsigned flags,
    struct smtp_params *out);

/* The parameter named key (case-insensitive), or NULL. */
const struct smtp_param *smtp_param_get(const struct smtp_params *ps,
    const char *key);

/*
 * xtext (RFC 3461 4): ASCII 33-126 except '+' and '=', and "+XX" for any
 * other byte (hex; upper case is what the RFC says, lower case accepted).
 * Decoding "+00" is refused (values become C strings). Decode writes a
 * NUL-terminated string of at most outsz-1 bytes and returns its length,
 * or -1 on bad xtext or when it does not fit.
 */
long smtp_xtext_decode(const char *in, char *out, size_t outsz);
/* 1 when `in` is well-formed xtext, else 0. */
int smtp_xtext_valid(const char *in);
/* 1 when a decoded ENVID or ORCPT holds what RFC 3461 4.2/4.4 allow:
 * printable US-ASCII and the space (and, with utf8, bytes of UTF-8 for an
 * ORCPT of SMTPUTF8 mail); no control byte, which would reach the queue
 * file's lines and the DSN's fields. */
int smtp_dsn_text_ok(const char *s, int utf8);
/* Append the xtext form of n bytes to `out`; -1 when its cap is reached. */
int smtp_xtext_encode(struct buf *out, const char *in, size_t n);

/*
 * "BDAT <size> [LAST]" argument (RFC 3030 2): size is 1 to 20 digits, no
 * sign, at most `max` (and never more than SMTP_BDAT_MAX); "LAST" is
 * case-insensitive. Returns 0, -1 on a syntax error (501 5.5.4), -2 when
 * the size is above max (552 5.3.4; the chunk must still be read).
 */
int smtp_bdat_parse(const char *arg, uint64_t max, uint64_t *sizep,
    int *lastp);

/*
 * Take BDAT chunk bytes: hands min(*leftp, what is buffered) bytes of `in`
 * to sink (NULL: discard them, for a refused chunk that must still be
 * read), drains them and lowers *leftp. Returns the number taken; the
 * chunk is complete when *leftp reaches 0. The bytes are raw (no
 * dot-stuffing in BDAT).
 */
size_t smtp_bdat_take(uint64_t *leftp, struct evbuffer *in,
    smtp_data_sink sink, void *arg);

/* ------------------------------------------------------------------ */
/* Replies: one table, so the same rejection reads the same everywhere. */

enum smtp_reply_id {
	RPL_OK,			/* 250 2.0.0 Ok */
	RPL_DATA_GO,		/* 354 End data with <CR><LF>.<CR><LF> */
	RPL_BYE,		/* 221 2.0.0 Bye */
	RPL_NOOP,		/* 250 2.0.0 Ok */
	RPL_RSET,		/* 250 2.0.0 Ok */
	RPL_VRFY,		/* 252 2.0.0 Cannot VRFY user ... */
	RPL_STARTTLS_GO,	/* 220 2.0.0 Ready to start TLS */
	RPL_BAD_SEQUENCE,	/* 503 5.5.1 Bad sequence of commands */
	RPL_NEED_MAIL,		/* 503 5.5.1 Need MAIL command */
	RPL_NEED_RCPT,		/* 503 5.5.1 Need RCPT command */
	RPL_NESTED_MAIL,	/* 503 5.5.1 Nested MAIL command */
	RPL_NEED_HELO,		/* 503 5.5.1 Send HELO/EHLO first */
	RPL_SYNTAX,		/* 501 5.5.4 Syntax error in parameters */
	RPL_SYNTAX_CMD,		/* 500 5.5.2 Syntax error, command unrecognized */
	RPL_UNKNOWN_CMD,	/* 500 5.5.2 Command unrecognized */
	RPL_LINE_TOO_LONG,	/* 500 5.5.2 Line too long */
	RPL_NUL,		/* 500 5.5.2 NUL byte in command */
	RPL_BARE_LF,		/* 500 5.5.2 Bare <LF> received */
	RPL_DATA_BARE_LF,	/* 550 5.5.2 Message contains bare <LF> or <CR> */
	RPL_NOT_IMPL,		/* 502 5.5.1 Command not implemented */
	RPL_EXPN_DISABLED,	/* 502 5.5.1 EXPN disabled */
	RPL_PARAM_NOT_OFFERED,	/* 555 5.5.4 Parameter not recognized */
	RPL_BAD_SENDER_SYNTAX,	/* 501 5.1.7 Bad sender address syntax */
	RPL_BAD_RCPT_SYNTAX,	/* 501 5.1.3 Bad recipient address syntax */
	RPL_TOO_MANY_RCPTS,	/* 452 4.5.3 Too many recipients */
	RPL_MSG_TOO_BIG,	/* 552 5.3.4 Message size exceeds limit */
	RPL_MSG_TOO_BIG_TEMP,	/* 452 4.3.4 Message size exceeds fixed limit */
	RPL_NO_VALID_RCPTS,	/* 554 5.5.1 No valid recipients */
	RPL_TEMP_FAIL,		/* 451 4.3.0 Local error, try again later */
	RPL_NO_SPACE,		/* 452 4.3.1 Insufficient system storage */
	RPL_SHUTDOWN,		/* 421 4.3.2 Service shutting down */
	RPL_TIMEOUT,		/* 421 4.4.2 Timeout, closing connection */
	RPL_TOO_MANY_ERRORS,	/* 421 4.7.0 Too many errors */
	RPL_USER_UNKNOWN,	/* 550 5.1.1 User unknown */
	RPL_RELAY_DENIED,	/* 554 5.7.1 Relay access denied */
	RPL_LOOP,		/* 554 5.4.6 Too many hops */
	RPL_AUTH_REQUIRED,	/* 530 5.7.0 Authentication required */
	RPL_TLS_REQUIRED,	/* 530 5.7.0 Must issue a STARTTLS command first */
	RPL__COUNT
};

struct smtp_reply_def {
	int code;		/* 2xx..5xx */
	const char *esc;	/* enhanced status code, "2.0.0" */
	const char *text;
};

/* The table row for id (never NULL: fatal() on an id out of range). */
const struct smtp_reply_def *smtp_reply_def(enum smtp_reply_id id);

/*
 * Write a reply to `out`: "CODE ESC text\r\n", or without the enhanced
 * code when esc is NULL (the greeting, EHLO lines, LMTP before LHLO...).
 * A text with '\n' in it becomes a multi-line reply ("CODE-ESC line" ...
 * "CODE ESC last"); at most SMTP_REPLY_LINES_MAX lines, each cut to
 * SMTP_REPLY_LINE_MAX with its CRLF. Every byte that is not printable
 * ASCII becomes '?', so text from a peer cannot end a line or inject one.
 * A code outside 200-599 is an internal bug (fatal).
 */
void smtp_reply_fmt(struct evbuffer *out, int code, const char *esc,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void smtp_reply_vfmt(struct evbuffer *out, int code, const char *esc,
    const char *fmt, va_list ap);
/* The table's reply for id. */
void smtp_reply_id(struct evbuffer *out, enum smtp_reply_id id);

/*
 * Split one reply line a daemon made itself ("550 5.1.1 User unknown",
 * "250 Ok", "354") into its code, enhanced status code ("" when there is
 * none; one counts only with the code's class, RFC 2034) and text, for
 * srv_reply(). 0 on success, -1 unless the line opens with a 2xx..5xx
 * code followed by a space or its end. *text points into line.
 */
int smtp_reply_split(const char *line, int *code, char esc[SMTP_ESC_MAX + 1],
    const char **text);

/*
 * Client-side reply reader: collects one (multi-line) reply out of an
 * evbuffer over as many calls as it takes. Each line must be "DDD" (first
 * digit 2-5, second 0-5) followed by '-' (more lines), SP or the line's
 * end (last line); the code must be the same on every line; at most
 * SMTP_REPLY_LINES_MAX lines of SMTP_REPLY_LINE_READ_MAX bytes. An
 * enhanced status code (RFC 2034: "c.sss.ddd" whose class is the code's
 * first digit) on the first line is extracted, and stripped from each line
 * that repeats it. A bare LF ends a line here (lenient).
 */
enum smtp_rr_res {
	SMTP_RR_DONE,		/* *out holds a complete reply */
	SMTP_RR_MORE,		/* need more bytes */
	SMTP_RR_ERROR,		/* garbage: drop the connection */
};

enum smtp_rr_err {
	SMTP_RR_E_NONE,
	SMTP_RR_E_SYNTAX,	/* not "DDD[ -]..." or a bad code */
	SMTP_RR_E_CODE_MISMATCH,/* the code changed between lines */
	SMTP_RR_E_TOO_LONG,	/* a line past SMTP_REPLY_LINE_READ_MAX */
	SMTP_RR_E_TOO_MANY,	/* more than SMTP_REPLY_LINES_MAX lines */
	SMTP_RR_E_NUL,		/* a NUL byte */
};

struct smtp_reply {
	int code;			/* 200..599 */
	char esc[SMTP_ESC_MAX + 1];	/* "" when the reply has none */
	unsigned nlines;
	struct buf text;	/* lines joined by '\n', codes removed;
				   capped at SMTP_REPLY_TEXT_MAX (cut) */
};

struct smtp_reply_reader {
	struct smtp_line_reader lr;
	enum smtp_rr_err err;	/* why SMTP_RR_ERROR */
	int in_reply;		/* lines of the current reply seen */
};

/* Init/free a reply (free releases the text buffer). */
void smtp_reply_init(struct smtp_reply *r);
void smtp_reply_free(struct smtp_reply *r);
void smtp_reply_reader_init(struct smtp_reply_reader *rr);
/*
 * Read on: the reply being collected lives in *r (reset at the start of
 * each new reply, so pass the same one until SMTP_RR_DONE). After
 * SMTP_RR_ERROR the connection is unusable; rr->err says why.
 */
enum smtp_rr_res smtp_reply_read(struct smtp_reply_reader *rr,
    struct evbuffer *in, struct smtp_reply *r);
/* Parse one whole reply held in memory ("250-a\r\n250 b\r\n"): tests, fuzzing. */
enum smtp_rr_res smtp_reply_parse(const char *p, size_t n,
    struct smtp_reply *r, enum smtp_rr_err *errp);

/* ------------------------------------------------------------------ */
/* DATA decoder (server side).                                          */

/*
 * A streaming state machine fed arbitrary chunks of what follows the 354:
 * it removes the dot-stuffing (RFC 5321 4.5.2), finds the end ONLY at
 * CRLF "." CRLF (the start of the data counts as just after a CRLF, so a
 * first line "." ends an empty message) and hands out the message with
 * its CRLF line ends, without the final ".\r\n". Any split of the input
 * gives the same output and flags: all pending state (a CR, a leading
 * dot) lives in the struct, not in the chunk.
 *
 * SMTP smuggling (2023): LF.LF, CR.CR, LF.CRLF, CRLF.LF, CR.LF... never end
 * the data. Bare LF and bare CR are flagged; the session then rejects the
 * whole message after the real end (RPL_DATA_BARE_LF, Postfix's
 * smtpd_forbid_bare_newline = reject). A line start for dot-unstuffing
 * and the end is only after a CRLF; after a bare LF a leading dot stays.
 *
 * SMTP_DATA_NORMALIZE (trusted input: queued's submission from sendmail,
 * lmtpd): a bare LF is written out as CRLF (still flagged); the end still
 * needs CRLF.CRLF. Bare CRs are kept as they are (and flagged).
 */
#define SMTP_DATA_NORMALIZE	0x01	/* mode: bare LF -> CRLF */

#define SMTP_DATA_F_BARE_LF	0x01	/* an LF without CR before it */
#define SMTP_DATA_F_BARE_CR	0x02	/* a CR without LF after it */
#define SMTP_DATA_F_NUL		0x04	/* a NUL byte */
#define SMTP_DATA_F_TOO_BIG	0x08	/* output passed max: stopped handing
					   bytes out, kept reading to the end */


struct smtp_data_dec {
	int state;
	unsigned mode;
	unsigned flags;		/* SMTP_DATA_F_*, accumulated */
	uint64_t size;		/* decoded bytes (counted past max too) */
	uint64_t max;		/* 0: no limit */
	uint64_t wire;		/* raw bytes consumed */
};

void smtp_data_dec_init(struct smtp_data_dec *d, unsigned mode,
    uint64_t max);
/*
 * Consume up to n bytes; decoded bytes go to sink (not past max). Returns
 * the number of bytes consumed: all n unless the end was found, in which
 * case *donep is set and the bytes after the final ".\r\n" (pipelined
 * commands) are left unconsumed.
 */
size_t smtp_data_dec_feed(struct smtp_data_dec *d, const char *p, size_t n,
    smtp_data_sink sink, void *arg, int *donep);
/*
 * The same over an evbuffer: consumes (drains) what it decodes, at most
 * `limit` bytes (0: all there is). Returns 1 at the end of data, else 0.
 */
int smtp_data_dec_evbuffer(struct smtp_data_dec *d, struct evbuffer *in,
    size_t limit, smtp_data_sink sink, void *arg);

/* ------------------------------------------------------------------ */
/* DATA encoder (client side).                                          */

/*
 * From the message as stored (CRLF lines, perhaps some bare LF or CR) to
 * the wire: a bare LF or bare CR becomes CRLF (so no peer can read a
 * smuggled end in what we send), a line starting with '.' gets one more,
 * and finish() ends the last line with CRLF if needed, then ".\r\n". The
 * decoder gives back the normalized message: dec(enc(x)) == norm(x).
 */
struct smtp_data_enc {
	int state;
	uint64_t size;		/* wire bytes written */
};

void smtp_data_enc_init(struct smtp_data_enc *e);
/* Both return 0, or -1 when the evbuffer cannot grow (ENOMEM). */
int smtp_data_enc_feed(struct smtp_data_enc *e, const char *p, size_t n,
    struct evbuffer *out);
int smtp_data_enc_finish(struct smtp_data_enc *e, struct evbuffer *out);

#endif
