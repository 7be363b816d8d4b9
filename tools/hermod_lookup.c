/*
 * hermod lookup ADDRESS: where mail for an address goes, in one command.
 * Prints the alias expansion tree (alias_expand), then for each final
 * local recipient its mailbox, type, owner and where that came from
 * (local_user_find); remote targets are marked remote; anything that
 * would be refused says why, with the reply a daemon would give.
 * Exit status: 0 every destination deliverable, 1 something would be
 * rejected, 75 a table could not be read (mail would be deferred).
 */
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alias_expand.h"
#include "conf.h"
#include "hermod.h"
#include "local_user.h"
#include "xalloc.h"

enum verdict { OK, REJECT, DEFER };

static const char *
owner_name(uid_t uid)
{
	struct passwd *pw = uid == (uid_t)-1 ? NULL : getpwuid(uid);

	return pw ? pw->pw_name : "?";
}

static enum verdict
show_local(const char *addr)
{
	struct local_user lu;
	int rc = local_user_find(addr, NULL, &lu);

	if (rc == LU_TEMPFAIL) {
		printf("deferred: 451 4.3.0 users table unavailable\n");
		return DEFER;
	}
	if (rc == LU_NOTFOUND) {
		printf("rejected: 550 5.1.1 unknown user\n");
		return REJECT;
	}
	printf("local mailbox %s (%s), ", lu.mailbox,
	    lu.is_maildir ? "Maildir" : "mbox");
	if (lu.uid == (uid_t)-1)
		printf("owner: the delivery agent's own user");
	else
		printf("owner %s uid=%lu gid=%ld", owner_name(lu.uid),
		    (unsigned long)lu.uid,
		    lu.gid == (gid_t)-1 ? -1L : (long)lu.gid);
	if (lu.quota)
		printf(", quota %llu bytes", lu.quota);
	if (lu.source == LU_SRC_USERS)
		printf(", from the users table (%s)\n", lu.key);
	else
		printf(", from the system account %s\n", lu.account);
	return OK;
}

static enum verdict
show_node(const struct alias_node *n)
{
	const char *relay = conf_str(C_relayhost);

	printf("%*s%s: ", 2 * n->depth, "", n->text);
	switch (n->kind) {
	case ALIAS_EXPANDED:
		printf("alias\n");
		return OK;
	case ALIAS_INCLUDE:
		printf(":include: file\n");
		return OK;
	case ALIAS_LOCAL:
		return show_local(n->text);
	case ALIAS_REMOTE:
		if (*relay)
			printf("remote: would be delivered by relayhost %s\n", relay);
		else
			printf("remote: would be delivered by MX lookup\n");
		return OK;
	case ALIAS_PIPE:
	case ALIAS_FILE:
		printf("%s: rejected: 550 5.3.0 delivery to commands/files is "
		    "not enabled\n", n->kind == ALIAS_PIPE ? "command" : "file");
		return REJECT;
	case ALIAS_ERROR:
		printf("%s: %s %s %s\n", n->status[0] == '4' ? "deferred" :
		    "rejected", n->status[0] == '4' ? "451" : "550", n->status,
		    n->reason);
		return n->status[0] == '4' ? DEFER : REJECT;
	}
	return REJECT;
}

int
cmd_lookup(int argc, char **argv)
{
	struct alias_result r = { 0 };
	enum verdict worst = OK, v;
	const char *addr;
	char *copy = NULL;
	size_t n;
	int status = 0;

	if (argc != 2) {
		fprintf(stderr, "usage: hermod lookup ADDRESS\n");
		return 2;
	}
	addr = argv[1];
	n = strlen(addr);
	if (n >= 2 && addr[0] == '<' && addr[n - 1] == '>')	/* as in SMTP */
		addr = copy = xstrndup(addr + 1, n - 2);
	if (*addr == '\0') {
		fprintf(stderr, "hermod lookup: empty address\n");
		free(copy);
		return 2;
	}
	if (alias_expand(addr, &r) == MAP_TEMPFAIL) {
		printf("%s: deferred: 451 4.3.0 aliases table unavailable\n",
		    addr);
		free(copy);
		alias_result_free(&r);
		return 75;
	}
	for (size_t i = 0; i < r.n; i++) {
		v = show_node(&r.v[i]);
		if (v > worst)
			worst = v;
	}
	if (worst == DEFER)
		status = 75;
	else if (worst == REJECT)
		status = 1;
	alias_result_free(&r);
	free(copy);
	fflush(stdout);
	return status;
}
