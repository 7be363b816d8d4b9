/*
 * The submission session's transaction, shared by submit.c (the LMTP
 * state machine) and submit_parse.c (paths, parameters, XFORWARD).
 * Everything here belongs to the session and is freed by tx_reset().
 */
#ifndef HERMOD_SUBMIT_H
#define HERMOD_SUBMIT_H

#include "buf.h"
#include "queued.h"

struct submit_tx {
	int has_mail;
	char qid[QID_LEN + 1];	/* given out in the MAIL reply */
	int named;		/* qid names an emptied file, ours until DATA */
	double arrival;		/* set at DATA */
	char sender[ADDR_MAX];
	int body8, smtputf8, ret_hdrs;
	char *envid, *auth;
	struct buf xforward;	/* "name=... addr=..." for logs and DSNs */
	struct env_rcpt cur;	/* the RCPT being parsed */
	struct env_rcpt *rcpts;
	int nrcpt;
	struct leaf_list leaves;
};

/* Each returns NULL, or the whole reply line to send. */
/* The parameter lists are split in place. is_mail: the reverse-path
 * (the null path allowed, the sender's 5.1.7 replies). */
const char *parse_path(char *s, int is_mail, char *out, size_t outsz,
    char **rest);
const char *parse_mail_params(struct submit_tx *tx, char *s);
const char *parse_rcpt_params(struct submit_tx *tx, char *s);
const char *parse_xforward(struct submit_tx *tx, char *s);

#endif
