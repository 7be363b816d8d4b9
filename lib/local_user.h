/*
 * Who is a local recipient, and where is the mailbox: used by smtpd (RCPT
 * checks), lmtpd (delivery) and hermod lookup. One answer for all three.
 *
 * local_user_find(): strip the address extension (recipient_delimiter,
 * "alice+lists" -> "alice"), then try, in order,
 *   1. users.db `local@domain`,
 *   2. users.db bare `local` when domain is in mydestination (or absent),
 *   3. when local_system_users = yes, getpwnam(local) (lower-cased first
 *      if the exact name does not exist): home + "/" + home_mailbox, a
 *      Maildir when home_mailbox ends in "/"; an empty home_mailbox means
 *      the mbox mail_spool_directory/USER (Postfix's way).
 * "postmaster" that is found nowhere resolves as "root" (RFC 5321 4.5.1:
 * postmaster must always be deliverable).
 * A users.db error is LU_TEMPFAIL (answer 4xx), never "unknown user".
 *
 * The users map is process-global: opened on first use from
 * conf_str(C_user_maps) + ".db", reopened when that file is replaced or
 * when the configured path changes. Call local_user_close() in a child
 * after fork() if the parent had it open (each process its own handle).
 */
#ifndef HERMOD_LOCAL_USER_H
#define HERMOD_LOCAL_USER_H

#include <sys/types.h>

#include "map.h"
#include "users.h"

enum local_user_status {
	LU_TEMPFAIL = MAP_TEMPFAIL,
	LU_FOUND = MAP_FOUND,
	LU_NOTFOUND = MAP_NOTFOUND,
};

enum local_user_source {
	LU_SRC_USERS,	/* users table */
	LU_SRC_SYSTEM,	/* system account (getpwnam) */
};

#define LU_PATH_MAX	4096
#define LU_NAME_MAX	256

struct local_user {
	char mailbox[LU_PATH_MAX];	/* absolute; Maildir ends in "/" */
	int is_maildir;
	uid_t uid;			/* (uid_t)-1: table gave none */
	gid_t gid;			/* (gid_t)-1: table gave none */
	unsigned long long quota;	/* bytes, 0 = none */
	char password[USERS_PASSWORD_MAX + 1];	/* crypt hash or "" */
	enum local_user_source source;
	char key[LU_NAME_MAX * 2];	/* users.db key or account that matched */
	char account[LU_NAME_MAX];	/* system account name, or "" */
	char local[LU_NAME_MAX];	/* the local part, extension removed */
};

/*
 * addr_or_local: "local@domain", or a bare local part with `domain`
 * giving the domain (NULL or "": a bare local part for any local domain).
 * When addr_or_local has an "@", `domain` is ignored. The domain must be
 * local (mydestination) for the bare-local and system-account steps; a
 * `local@domain` key in users.db works for any domain listed there.
 * out is filled on LU_FOUND only.
 */
int local_user_find(const char *addr_or_local, const char *domain,
    struct local_user *out);

/* Is `domain` one of mydestination (case-insensitive, a trailing dot
 * ignored), or an address literal naming one of this host's interface
 * addresses? "" and NULL count as local. */
int local_domain(const char *domain);

/* Strip the extension: copy `local` into out (outsz) without the part
 * from the first recipient_delimiter character on (not when the
 * delimiter is the first character). 0, or -1 when it does not fit. */
int local_strip_extension(const char *local, char *out, size_t outsz);

/* Close the process-global users map (after fork, at reload, at exit). */
void local_user_close(void);
/* Tests: use this map instead of the configured one (NULL: back to conf).
 * The caller keeps ownership. */
void local_user_set_map(struct map *m);

#endif
