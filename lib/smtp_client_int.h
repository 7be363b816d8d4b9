/*
 * Internals shared by the two halves of the SMTP/LMTP client:
 * smtp_client.c (connection life cycle, callbacks, the caller's API) and
 * smtp_client_cmd.c (reading replies, formatting and pipelining commands,
 * the reply handlers, the message body). Not for other modules.
 */
#ifndef HERMOD_SMTP_CLIENT_INT_H
#define HERMOD_SMTP_CLIENT_INT_H

#include <sys/types.h>
#include <bsd/sys/queue.h>

#include "buf.h"
#include "smtp_client.h"
#include "smtp_proto.h"

#define HIWAT		(256 * 1024)	/* output: stop reading the file */
#define LOWAT		(64 * 1024)	/* output: resume */
#define FILE_CHUNK	(64 * 1024)

enum ctype { C_EHLO, C_HELO, C_XFORWARD, C_MAIL, C_RCPT, C_DATA, C_DOT,
    C_RSET, C_QUIT, C_STARTTLS, C_AUTH, C_NTYPES };
enum cstate { S_CONNECTING, S_GREETING, S_HELO, S_TLS, S_READY, S_DATA,
    S_QUIT, S_CLOSED };

struct cmd {
	TAILQ_ENTRY(cmd) entry;
	enum ctype type;
	int idx;		/* RCPT: recipient index */
	char *line;		/* MAIL: the sender */
	int stale;		/* its transaction was reset: reply ignored */
	void *ctx;		/* params, freed with the command */
};
TAILQ_HEAD(cmdq, cmd);

struct rcpt {
	char *addr;
	struct cli_rcpt_params p;	/* owned copies */
	int state;		/* 0 waiting, 1 accepted, 2 rejected */
	int final_done;
};

struct cli_conn {
	struct event_base *base;
	struct bufferevent *bev;
	struct ev_connect *connecting;
	struct cli_settings s;
	struct cli_callbacks cb;
	void *arg;
	char *peer;
	char *helo_name;
	char *auth_user, *auth_pass;
	int tls_on, tls_skipped, auth_done, auth_step;
	enum cstate state;
	struct cli_caps caps;
	struct cmdq pending, inflight;
	int ninflight;
	int busy, freed;	/* callbacks running; cli_free() asked */
	/* the reply being read (lib/smtp_proto's reader and bounds), and
	 * the same reply as the callbacks see it */
	struct smtp_reply_reader rr;
	struct smtp_reply rep;
	struct cli_reply cur;
	/* the transaction */
	int txn;		/* a transaction is open */
	int need_rset;
	int quitting;		/* QUIT queued: no new transaction */
	int data_dropped;	/* DATA not sent: nothing to send it for */
	struct cli_reply mail_fail;	/* MAIL/XFORWARD refused */
	char *mail_fail_text;
	struct rcpt *rcpts;
	int nrcpt, naccepted, next_final;
	int srv_accepted;	/* RCPTs the server said 2xx to */
	enum { D_NONE, D_FD, D_PUSH } dmode;
	int data_fd;
	off_t data_off, data_left;
	int want_drain;
	struct smtp_data_enc enc;	/* dot-stuffing, CRLF line ends */
	const char *doing;	/* "sending RCPT TO", for failure texts */
	struct event *deadline;	/* the whole wait for one reply */
	/* a plain socket: what is queued goes out by a direct write at the
	 * end of the loop pass (see watch() in smtp_client.c) */
	struct event *flush;
	struct evbuffer_cb_entry *out_cb;
	int direct, flush_pending;
	const void *deadline_key;	/* what it waits for (cli_arm) */
};

/* smtp_client.c */
void cli_give_rcpt(struct cli_conn *c, int idx, const struct cli_reply *r);
void cli_give_final(struct cli_conn *c, int idx, const struct cli_reply *r);
void cli_txn_end(struct cli_conn *c);
void cli_close_with(struct cli_conn *c, const struct cli_reply *r);
void cli_fail(struct cli_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void cli_failx(struct cli_conn *c, const char *status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void cli_tls_start(struct cli_conn *c);
void cli_become_ready(struct cli_conn *c);

/* smtp_client_auth.c */
void cli_session_next(struct cli_conn *c);
int cli_on_starttls(struct cli_conn *c, struct cmd *k,
    const struct cli_reply *r);
int cli_on_auth(struct cli_conn *c, struct cmd *k, const struct cli_reply *r);
void cli_reply_local(struct cli_reply *r, int code, const char *status,
    const char *text);

/* smtp_client_cmd.c */
int cli_read_reply(struct cli_conn *c);
void cli_reply_reset(struct cli_conn *c);
struct cmd *cli_cmd_new(enum ctype type, int idx);
void cli_cmd_free(struct cmd *k);
void cli_send_cmd(struct cli_conn *c, struct cmd *k);
void cli_queue(struct cli_conn *c, enum ctype type, int at_head);
void cli_pump(struct cli_conn *c);
void cli_arm(struct cli_conn *c);
void cli_dispatch(struct cli_conn *c);
void cli_data_finish(struct cli_conn *c);
void cli_data_from_file(struct cli_conn *c);

#endif
