/*
 * Password checks off the event loop. A libcrypt hash is made to be slow
 * (bcrypt at its default cost takes about 200 ms here, yescrypt tens of
 * ms): run on the loop it would stall every other session, and a client
 * repeating AUTH could stall smtpd at will. So the hashing runs on a few
 * worker threads and the verdict comes back as a callback on the loop.
 *
 * The threads touch nothing but the job (its copies of the password and
 * the hash, freed and wiped by the pool). Pending jobs are bounded: past
 * PWCHECK_QUEUE_MAX, pwcheck_start() refuses and the caller answers with
 * a temporary failure rather than queueing without end.
 */
#ifndef HERMOD_PWCHECK_H
#define HERMOD_PWCHECK_H

#include <event2/event.h>

#define PWCHECK_THREADS		2
#define PWCHECK_QUEUE_MAX	64

struct pwcheck;

/* ok: 1 the password matches the hash, 0 it does not (or the hash is
 * unusable: see pwcheck_usable()). */
typedef void (*pwcheck_cb)(void *arg, int ok);

/* Can hash match any password: not empty, locked ("!...", "*"), or of a
 * method libcrypt rates legacy (DES, MD5-crypt...; SHA-256-crypt is
 * kept). An unusable hash never matches. */
int pwcheck_usable(const char *hash);

/* Check pass against hash (a crypt(3) string). NULL when the queue is
 * full or a thread cannot be started; else a handle, valid until the
 * callback has been called or pwcheck_cancel(). The callback never comes
 * from inside this call. */
struct pwcheck *pwcheck_start(struct event_base *base, const char *hash,
    const char *pass, pwcheck_cb cb, void *arg);

/* The caller is going away: the callback will not be called. */
void pwcheck_cancel(struct pwcheck *c);

/* Jobs queued or running (tests, stats). */
int pwcheck_pending(void);

#endif
