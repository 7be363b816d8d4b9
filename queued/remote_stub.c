/*
 * The remote transport's place holder until the SMTP client of issue 7
 * lands: every remote leaf stays queued, deferred with a clear reason, and
 * is listed by `hermod queue`; nothing is dropped. The real transport
 * replaces this file: define `struct transport remote_transport` with
 * kind LEAF_REMOTE, a concurrency limit and a start() that reports each
 * leaf with sched_leaf_result() and then calls sched_attempt_done().
 */
#include "queued.h"

static void
remote_start(struct transport *t, struct msg *m, const int *idx, int n)
{
	for (int i = 0; i < n; i++)
		sched_leaf_result(m, idx[i], 451, "4.3.2", NULL,
		    "deferred: remote delivery not yet available");
	sched_attempt_done(t, m);
}

struct transport remote_transport = {
	.name = "remote", .kind = LEAF_REMOTE, .limit = 100, .start = remote_start,
};
