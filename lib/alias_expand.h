/*
 * Recursive alias expansion (queued's routing, hermod lookup): turn one
 * recipient into the list of final destinations, keeping the tree so
 * `hermod lookup` can show how each was reached.
 *
 * For an address in a local domain (mydestination, or a bare local part)
 * the aliases map is asked for `local@domain`, then the bare `local`, then
 * (when the local part has an extension, see local_user.h) the same two
 * without the extension. Each target is expanded again:
 *   - a bare name becomes name@DOMAIN, DOMAIN being the domain of the
 *     address that was expanded (a bare address stays bare);
 *   - `user@domain` in a local domain is expanded again, others are
 *     ALIAS_REMOTE leaves;
 *   - `:include:/path` is read now: a regular file, at most
 *     ALIAS_INCLUDE_MAX bytes, not world-writable, targets separated by
 *     commas or newlines, `#` comment lines; readable by whose rights
 *     apply (by its owner or by all: the aliases table's owner, any user
 *     when root owns it, for a top-level one; the user who owns the
 *     include file that names it for a nested one), else 4.3.0;
 *   - `|command` and `/file` are ALIAS_PIPE / ALIAS_FILE leaves (their
 *     delivery is not enabled: queued bounces them with 5.3.0).
 * An alias that names itself ("alice: alice, archive") delivers to the
 * mailbox (a local leaf), as in sendmail and Postfix. A destination
 * reached twice is kept once (case-insensitive); an alias or include file
 * reached twice (a second path, or a loop back up the tree) is expanded
 * once, so a loop ends by itself; an expansion left with no destination at
 * all (a: b, b: a; or an empty :include: file) is one ALIAS_ERROR leaf 5.4.6
 * "alias loop or empty list". `owner-NAME`
 * aliases expand like any other; they do not change the envelope sender
 * (Postfix's owner- convention is not implemented).
 * Aliases apply to local domains only: an address in another domain is an
 * ALIAS_REMOTE leaf without any lookup.
 * More than ALIAS_DEPTH_MAX levels: 5.4.6; more than ALIAS_NODES_MAX
 * nodes: 5.3.0 error leaf and expansion stops; include files read past
 * ALIAS_INCLUDE_TOTAL_MAX bytes in all: 5.3.0 error leaf, no further
 * include file is read.
 * Postmaster: "postmaster" with no alias of its own expands as the alias
 * "root" when there is one, else it is the local leaf postmaster@DOMAIN
 * (local_user_find() resolves an otherwise unknown postmaster as root).
 *
 * The aliases map is process-global, opened on first use from
 * conf_str(C_alias_maps) + ".db" and reopened when the file is replaced
 * (see map.h).
 */
#ifndef HERMOD_ALIAS_EXPAND_H
#define HERMOD_ALIAS_EXPAND_H

#include <stddef.h>

#include "map.h"

#define ALIAS_DEPTH_MAX		20
#define ALIAS_NODES_MAX		10000
#define ALIAS_INCLUDE_MAX	(1024 * 1024)
#define ALIAS_INCLUDE_TOTAL_MAX	(8 * ALIAS_INCLUDE_MAX)	/* one expansion */

enum alias_kind {
	ALIAS_LOCAL,	/* leaf: a local recipient (local_user_find() it) */
	ALIAS_REMOTE,	/* leaf: an address in a non-local domain */
	ALIAS_PIPE,	/* leaf: "|command" (text without the "|") */
	ALIAS_FILE,	/* leaf: "/path" */
	ALIAS_ERROR,	/* leaf: cannot be delivered: status + reason */
	ALIAS_EXPANDED,	/* inner node: an alias that was expanded */
	ALIAS_INCLUDE,	/* inner node: an :include: file that was read */
};

struct alias_node {
	enum alias_kind kind;
	char *text;		/* address (as written), command or path */
	int parent;		/* index of the node it came from, -1: top */
	int depth;		/* 0 for the top */
	char status[8];		/* ALIAS_ERROR: "5.4.6", "4.3.0"...; else "" */
	char *reason;		/* ALIAS_ERROR: human text; else NULL */
};

/*
 * The result: nodes in expansion order (a parent before its children).
 * Leaves are the kinds ALIAS_LOCAL..ALIAS_ERROR; inner nodes are there
 * for display. Owned by the struct: alias_result_free() frees all.
 */
struct alias_result {
	struct alias_node *v;
	size_t n, cap;
};

/*
 * Expand `addr` ("local@domain" or a bare local part). The result is
 * reset first.
 *   MAP_FOUND     an alias was found and expanded (leaves in out)
 *   MAP_NOTFOUND  no alias: out holds one leaf, the address itself
 *                 (ALIAS_LOCAL, or ALIAS_REMOTE for a non-local domain)
 *   MAP_TEMPFAIL  the aliases map failed: defer the recipient (4.3.0)
 * An :include: that cannot be read gives an ALIAS_ERROR leaf with a 4.x.x
 * status (retry later), not MAP_TEMPFAIL.
 */
int alias_expand(const char *addr, struct alias_result *out);
void alias_result_free(struct alias_result *r);

/* Is there an alias for addr (the first steps of alias_expand only)?
 * For smtpd's RCPT check. MAP_FOUND / MAP_NOTFOUND / MAP_TEMPFAIL. */
int alias_exists(const char *addr);

/*
 * smtpd's RCPT check in one call: an alias (alias_exists), else a mailbox
 * (local_user_find), else MAP_NOTFOUND (reply 550 5.1.1). MAP_TEMPFAIL when
 * either table failed (reply 451 4.3.0). The same answer hermod lookup and
 * lmtpd give, so a recipient smtpd accepts is one lmtpd delivers to.
 */
int local_rcpt_exists(const char *addr);

/* Close the process-global map; tests: use this map instead (NULL: back
 * to the configured one; the caller keeps ownership). */
void alias_expand_close(void);
void alias_expand_set_map(struct map *m);

#endif
