/*
 * Unit tests for lib/pwcheck: verdicts for each hash kind libcrypt makes
 * and for unusable hashes, callbacks only from the loop, cancellation of
 * queued and running checks, the queue bound, and that the loop goes on
 * (a timer fires) while a slow hash is being computed.
 */
#include <crypt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pwcheck.h"
#include "unit.h"

static struct event_base *base;
static int calls, results[PWCHECK_QUEUE_MAX + 1];

static void
on_result(void *arg, int ok)
{
	results[(long)arg] = ok;
	calls++;
}

static const char *
make_hash(const char *prefix, unsigned long cost, const char *pass)
{
	static char out[8][CRYPT_OUTPUT_SIZE];
	static int next;
	char setting[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data cd;
	char *o = out[next++ % 8];

	if (crypt_gensalt_rn(prefix, cost, NULL, 0, setting, sizeof(setting)) == NULL)
		return NULL;
	memset(&cd, 0, sizeof(cd));
	strcpy(o, crypt_rn(pass, setting, &cd, sizeof(cd)));
	return o;
}

/* Run the loop until no check is pending (bounded). */
static void
drain(void)
{
	time_t end = time(NULL) + 30;

	while (pwcheck_pending() > 0 && time(NULL) < end)
		event_base_loop(base, EVLOOP_ONCE);
}

TEST(test_verdicts)
{
	static const struct { const char *prefix; unsigned long cost; } kinds[] = {
		{ "$6$", 1000 }, { "$2b$", 4 }, { "$y$", 0 }, { NULL, 0 },
	};
	const char *bad[] = { "", "*", "!", "*0", "$6$" };
	long n = 0;

	memset(results, -1, sizeof(results));
	calls = 0;
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		const char *h = make_hash(kinds[i].prefix, kinds[i].cost, "pw");
		char locked[CRYPT_OUTPUT_SIZE + 1];

		if (h == NULL)		/* not in this libcrypt */
			continue;
		CHECK(pwcheck_start(base, h, "pw", on_result, (void *)n++) != NULL);
		CHECK(pwcheck_start(base, h, "pW", on_result, (void *)n++) != NULL);
		snprintf(locked, sizeof(locked), "!%s", h);
		CHECK(pwcheck_start(base, locked, "pw", on_result, (void *)n++) != NULL);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(pwcheck_start(base, bad[i], "", on_result, (void *)n++) != NULL);
	CHECK_INT(calls, 0);		/* never from inside the start */
	drain();
	CHECK_INT(calls, n);
	for (long i = 0; i < n; i++)
		CHECK_INT(results[i], i < n - 5 && i % 3 == 0);
}

TEST(test_cancel_and_bound)
{
	const char *slow = make_hash("$2b$", 8, "pw");	/* ~10 ms each */
	struct pwcheck *c[PWCHECK_QUEUE_MAX];
	long i;

	CHECK(slow != NULL);
	memset(results, -1, sizeof(results));
	calls = 0;
	for (i = 0; i < PWCHECK_QUEUE_MAX; i++)
		CHECK((c[i] = pwcheck_start(base, slow, "pw", on_result,
		    (void *)i)) != NULL);
	CHECK(pwcheck_start(base, slow, "pw", on_result, (void *)i) == NULL);
	pwcheck_cancel(c[0]);			/* likely running */
	pwcheck_cancel(c[PWCHECK_QUEUE_MAX - 1]);	/* surely queued */
	/* the queued one is gone at once; the first maybe still running */
	CHECK(pwcheck_pending() >= PWCHECK_QUEUE_MAX - 2 &&
	    pwcheck_pending() <= PWCHECK_QUEUE_MAX - 1);
	drain();
	CHECK_INT(pwcheck_pending(), 0);
	CHECK_INT(calls, PWCHECK_QUEUE_MAX - 2);
	CHECK_INT(results[0], -1);
	CHECK_INT(results[PWCHECK_QUEUE_MAX - 1], -1);
	CHECK_INT(results[1], 1);
}

static int ticks;

static void
on_tick(evutil_socket_t fd, short ev, void *arg)
{
	(void)fd;
	(void)ev;
	(void)arg;
	ticks++;
}

TEST(test_loop_not_blocked)
{
	const char *slow = make_hash("$2b$", 12, "pw");	/* ~200 ms */
	struct timeval tv = { 0, 1000 };
	struct event *t = event_new(base, -1, EV_PERSIST, on_tick, NULL);

	ticks = 0;
	calls = 0;
	event_add(t, &tv);
	CHECK(pwcheck_start(base, slow, "pw", on_result, (void *)0) != NULL);
	drain();
	event_free(t);
	CHECK_INT(calls, 1);
	CHECK(ticks >= 10);	/* the 1 ms timer kept firing meanwhile */
}

int
main(void)
{
	base = event_base_new();
	RUN(test_verdicts);
	RUN(test_cancel_and_bound);
	RUN(test_loop_not_blocked);
	event_base_free(base);
	return unit_done("pwcheck");
}
