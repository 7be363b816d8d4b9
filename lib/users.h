/*
 * The users table (user_maps, hermod-users(5)): one mailbox per line,
 *
 *     ADDRESS MAILBOX [uid=N|user] [gid=N|group] [password=HASH] [quota=SIZE]
 *
 * ADDRESS is local@domain or a bare local part (any local domain); MAILBOX
 * is an absolute path, a Maildir when it ends in "/", else an mbox file.
 * User and group names are resolved to numbers when newaliases compiles
 * the table. SIZE takes k m g suffixes. A bad line is an error with its
 * file:line; a duplicate ADDRESS is a warning, the first line wins.
 *
 * Stored record (the value in users.db, key = ADDRESS lower-cased):
 * five fields, each followed by one NUL byte, in this order:
 *     mailbox \0 uid \0 gid \0 password \0 quota \0
 * uid, gid: decimal, empty when not given; quota: decimal bytes, empty or
 * 0 for none; password: the crypt(3) hash or empty.
 */
#ifndef HERMOD_USERS_H
#define HERMOD_USERS_H

#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#include "buf.h"

#define USERS_MAILBOX_MAX	1024	/* bytes in a mailbox path */
#define USERS_PASSWORD_MAX	256	/* bytes in a password hash */

struct users_record {
	char mailbox[USERS_MAILBOX_MAX + 1];
	int is_maildir;			/* mailbox ends in '/' */
	uid_t uid;			/* (uid_t)-1: not given */
	gid_t gid;			/* (gid_t)-1: not given */
	char password[USERS_PASSWORD_MAX + 1];	/* "" when none */
	unsigned long long quota;	/* bytes, 0 = none */
};

/*
 * Parse one logical line. 0: key (lower-cased ADDRESS) and rec filled;
 * -1: err says what is wrong. User and group names are looked up with
 * getpwnam/getgrnam.
 */
int users_parse_line(const char *line, size_t len, struct buf *key,
    struct users_record *rec, char *err, size_t errlen);

/* The stored form of rec, appended to out. 0 or -1 (out's cap). */
int users_record_format(const struct users_record *rec, struct buf *out);

/* Decode a stored value. 0, or -1 when it is malformed. */
int users_record_parse(const char *val, size_t len, struct users_record *out);

/* Compile like aliases_compile() (aliases.h): errors listed, 0 = done. */
int users_compile(const char *src, const char *dbpath, FILE *diag,
    unsigned long *nentries);

#endif
