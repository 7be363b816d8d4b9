/*
 * Routing, done once per recipient at RCPT time (before the message is
 * queued, so the queue file holds the final destinations and a retry
 * never expands an alias twice): aliases (lib/alias_expand) turn an
 * address in a local domain into leaves; a local leaf goes to lmtpd, an
 * address in another domain to the remote transport, `|command` and
 * `/file` targets and alias errors become error leaves that bounce at the
 * first attempt. A temporary failure (aliases.db unreadable, an :include:
 * file that cannot be read now) refuses the recipient with 451 4.3.0 so
 * that the submitter tries again; nothing is queued half-expanded.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "alias_expand.h"
#include "conf.h"
#include "local_user.h"
#include "log.h"
#include "queued.h"
#include "xalloc.h"

#define NOT_ENABLED "delivery to commands/files is not enabled"

static int
have_leaf(struct leaf *v, int n, const char *addr)
{
	for (int i = 0; i < n; i++)
		if (v[i].kind != LEAF_ERROR && strcasecmp(v[i].addr, addr) == 0)
			return 1;
	return 0;
}

static void
add_leaf(struct leaf **v, int *n, int parent, enum leaf_kind kind,
    const char *addr, const char *dsn, const char *reason)
{
	struct leaf *l;

	if (kind != LEAF_ERROR && have_leaf(*v, *n, addr))
		return;		/* one copy per message, as Postfix does */
	*v = xrealloc(*v, (size_t)(*n + 1) * sizeof(**v));
	l = &(*v)[(*n)++];
	memset(l, 0, sizeof(*l));
	l->parent = parent;
	l->kind = kind;
	l->addr = xstrdup(addr);
	l->state = LS_PENDING;
	if (dsn != NULL) {
		snprintf(l->dsn, sizeof(l->dsn), "%s", dsn);
		l->reason = xstrdup(reason);
	}
}

/* A bare local part is qualified with myhostname (so lmtpd and DSNs see a
 * whole address). */
static char *
qualify(const char *addr)
{
	if (strchr(addr, '@') != NULL)
		return xstrdup(addr);
	return xasprintf("%s@%s", addr, queued_hostname());
}

/* The leaves of one alias_expand() result. 0, or 1 when a leaf is a
 * temporary error (why set). */
static int
take_leaves(struct alias_result *r, int parent, struct leaf **v, int *n,
    char *why, size_t whysz)
{
	for (size_t i = 0; i < r->n; i++) {
		struct alias_node *a = &r->v[i];
		char *q;

		switch (a->kind) {
		case ALIAS_LOCAL:
		case ALIAS_REMOTE:
			q = qualify(a->text);
			add_leaf(v, n, parent, a->kind == ALIAS_LOCAL ? LEAF_LOCAL :
			    LEAF_REMOTE, q, NULL, NULL);
			free(q);
			break;
		case ALIAS_PIPE:
		case ALIAS_FILE:
			add_leaf(v, n, parent, LEAF_ERROR, a->text, "5.3.0", NOT_ENABLED);
			break;
		case ALIAS_ERROR:
			if (a->status[0] != '5') {
				snprintf(why, whysz, "%s %s", a->status[0] ? a->status : "4.3.0",
				    a->reason ? a->reason : "temporary alias failure");
				return 1;
			}
			add_leaf(v, n, parent, LEAF_ERROR, a->text, a->status,
			    a->reason ? a->reason : "alias error");
			break;
		default:
			break;
		}
	}
	return 0;
}

int
route_rcpt(const char *addr, int parent, struct leaf **v, int *n,
    char *why, size_t whysz)
{
	struct alias_result r = { 0 };
	char *q = qualify(addr);
	int rc, n0 = *n;

	rc = alias_expand(q, &r);
	if (rc == MAP_TEMPFAIL) {
		snprintf(why, whysz, "4.3.0 aliases table unavailable, try again later");
		rc = 1;
	} else
		rc = take_leaves(&r, parent, v, n, why, whysz);
	if (rc != 0) {		/* take back what this recipient added */
		for (int i = n0; i < *n; i++) {
			free((*v)[i].addr);
			free((*v)[i].reason);
		}
		*n = n0;
	}
	alias_result_free(&r);
	free(q);
	return rc;
}
