/*
 * Between scheduler.c (the heap, the timer, the transports' wait lists)
 * and attempt.c (what happens around one delivery attempt: expiry,
 * results, the durable state log, DSNs, removal, backoff).
 */
#ifndef HERMOD_SCHED_INT_H
#define HERMOD_SCHED_INT_H

#include "queued.h"

#define NTRANSPORT 2	/* indexed by leaf kind: LEAF_LOCAL, LEAF_REMOTE */

double now_f(void);
void sched_put(struct msg *m);
void sched_unput(struct msg *m);	/* off the heap (held, deleted, in an attempt) */
void sched_forget(struct msg *m);
void sched_park(struct msg *m);	/* put off: back at sched_unpark_one() */

int attempt_begin(struct msg *m);
void attempt_part_done(struct msg *m);
int attempt_in_flight(void);
int msg_finished(struct msg *m);
void msg_remove(struct msg *m, const char *why);

#endif
