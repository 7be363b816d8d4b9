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
#include "strset.h"
#include "xalloc.h"

#define NOT_ENABLED "delivery to commands/files is not enabled"

/*
 * The leaves routed so far for one message, and an index of their
 * addresses: a recipient that is already a leaf (a second alias naming
 * it, a second RCPT of a list) is dropped. A linear scan per new leaf
 * made that quadratic: 100 RCPTs of a 9,000-member list kept queued
 * busy for half a minute. Index slots hold a leaf's index + 1; 0 is
 * empty, SLOT_GONE a leaf taken back (the probe goes on past it).
 */
#define SLOT_GONE	(-1)

/* The slot holding addr (want 0) or leaf want - 1; else the empty slot
 * where the probe ended. */
static size_t
slot_of(const struct leaf_list *l, const char *addr, int want)
{
	size_t i = hash_lower(addr) & (l->cap - 1);

	for (; l->slot[i] != 0; i = (i + 1) & (l->cap - 1))
		if (want != 0 ? l->slot[i] == want : l->slot[i] > 0 &&
		    strcasecmp(l->v[l->slot[i] - 1].addr, addr) == 0)
			break;
	return i;
}

/* Room for one more slot: once half is used, rebuilt from the leaves
 * (which drops taken-back slots) at four times their number. */
static void
index_room(struct leaf_list *l)
{
	size_t live = 1;

	if ((l->used + 1) * 2 <= l->cap)
		return;
	for (int i = 0; i < l->n; i++)
		live += l->v[i].kind != LEAF_ERROR;
	free(l->slot);
	for (l->cap = 64; l->cap < live * 4; l->cap *= 2)
		;
	l->slot = xcalloc(l->cap, sizeof(*l->slot));
	l->used = 0;
	for (int i = 0; i < l->n; i++)
		if (l->v[i].kind != LEAF_ERROR) {
			l->slot[slot_of(l, l->v[i].addr, 0)] = i + 1;
			l->used++;
		}
}

static void
add_leaf(struct leaf_list *l, int parent, enum leaf_kind kind,
    const char *addr, const char *dsn, const char *reason)
{
	struct leaf *x;
	size_t at = 0;

	if (kind != LEAF_ERROR) {
		index_room(l);
		at = slot_of(l, addr, 0);
		if (l->slot[at] != 0)
			return;		/* one copy per message, as Postfix does */
	}
	if (l->n == l->room) {
		l->room = l->room ? l->room * 2 : 16;
		l->v = xrealloc(l->v, (size_t)l->room * sizeof(*l->v));
	}
	x = &l->v[l->n++];
	memset(x, 0, sizeof(*x));
	x->parent = parent;
	x->kind = kind;
	x->addr = xstrdup(addr);
	x->state = LS_PENDING;
	if (dsn != NULL) {
		snprintf(x->dsn, sizeof(x->dsn), "%s", dsn);
		x->reason = xstrdup(reason);
	}
	if (kind != LEAF_ERROR) {
		l->slot[at] = l->n;
		l->used++;
	}
}

void
leaves_truncate(struct leaf_list *l, int n)
{
	while (l->n > n) {
		struct leaf *x = &l->v[--l->n];

		if (x->kind != LEAF_ERROR)
			l->slot[slot_of(l, x->addr, l->n + 1)] = SLOT_GONE;
		free(x->addr);
		free(x->reason);
	}
}

void
leaves_free(struct leaf_list *l)
{
	leaves_truncate(l, 0);
	free(l->v);
	free(l->slot);
	memset(l, 0, sizeof(*l));
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
take_leaves(struct alias_result *r, int parent, struct leaf_list *l,
    char *why, size_t whysz)
{
	for (size_t i = 0; i < r->n; i++) {
		struct alias_node *a = &r->v[i];
		char *q;

		switch (a->kind) {
		case ALIAS_LOCAL:
		case ALIAS_REMOTE:
			q = qualify(a->text);
			add_leaf(l, parent, a->kind == ALIAS_LOCAL ? LEAF_LOCAL :
			    LEAF_REMOTE, q, NULL, NULL);
			free(q);
			break;
		case ALIAS_PIPE:
		case ALIAS_FILE:
			add_leaf(l, parent, LEAF_ERROR, a->text, "5.3.0", NOT_ENABLED);
			break;
		case ALIAS_ERROR:
			if (a->status[0] != '5') {
				snprintf(why, whysz, "%s %s", a->status[0] ? a->status : "4.3.0",
				    a->reason ? a->reason : "temporary alias failure");
				return 1;
			}
			add_leaf(l, parent, LEAF_ERROR, a->text, a->status,
			    a->reason ? a->reason : "alias error");
			break;
		default:
			break;
		}
	}
	return 0;
}

int
route_rcpt(const char *addr, int parent, struct leaf_list *l,
    char *why, size_t whysz)
{
	struct alias_result r = { 0 };
	char *q = qualify(addr);
	int rc, n0 = l->n;

	rc = alias_expand(q, &r);
	if (rc == MAP_TEMPFAIL) {
		snprintf(why, whysz, "4.3.0 aliases table unavailable, try again later");
		rc = 1;
	} else
		rc = take_leaves(&r, parent, l, why, whysz);
	l->nodes += r.n;
	if (rc != 0)		/* take back what this recipient added */
		leaves_truncate(l, n0);
	alias_result_free(&r);
	free(q);
	return rc;
}
