/*
 * The password-check pool of pwcheck.h: PWCHECK_THREADS threads, started
 * at the first check, take jobs from a queue under one mutex, hash with
 * crypt_rn() into their own crypt_data, and hand the job back through a
 * done list and a byte on a pipe that the event loop watches. Only the
 * loop thread calls back, frees jobs and cancels, so a job's memory has
 * one owner at a time: the queue, a thread (running), or the done list.
 */
#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "log.h"
#include "pwcheck.h"
#include "xalloc.h"

enum job_state { J_QUEUED, J_RUNNING, J_DONE };

struct pwcheck {
	struct pwcheck *next;
	enum job_state state;
	int cancelled, ok;
	char *hash, *pass;
	pwcheck_cb cb;
	void *arg;
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t work;
	struct pwcheck *queue, **queue_tail, *done;
	int npending, started, wake[2];
	struct event *ev;
	struct event_base *base;
} pool = { .lock = PTHREAD_MUTEX_INITIALIZER, .work = PTHREAD_COND_INITIALIZER,
	   .wake = { -1, -1 } };

int
pwcheck_usable(const char *hash)
{
	/* libcrypt rates DES, MD5-crypt and the like "legacy": DES reads 8
	 * bytes of the password ("s3cret p" passed for "s3cret pass"), and
	 * they fall to a GPU in hours. SHA-256-crypt is rated so too, but it
	 * is SHA-512-crypt's design and as strong: kept. */
	if (hash[0] == '\0' || hash[0] == '!' || hash[0] == '*')
		return 0;
	return crypt_checksalt(hash) == CRYPT_SALT_OK ||
	    strncmp(hash, "$5$", 3) == 0;
}

/* A hash that can match: crypt_rn gives "*..." for a setting it cannot
 * use, and a locked "!..." hash never matches. */
static int
verify(const char *hash, const char *pass, struct crypt_data *cd)
{
	const char *h;
	size_t n = strlen(hash);

	if (!pwcheck_usable(hash))
		return 0;
	h = crypt_rn(pass, hash, cd, sizeof(*cd));
	return h != NULL && h[0] != '*' && strlen(h) == n &&
	    CRYPTO_memcmp(h, hash, n) == 0;
}

static void *
worker(void *unused)
{
	struct crypt_data *cd = xcalloc(1, sizeof(*cd));
	struct pwcheck *j;

	(void)unused;
	for (;;) {
		pthread_mutex_lock(&pool.lock);
		while (pool.queue == NULL)
			pthread_cond_wait(&pool.work, &pool.lock);
		j = pool.queue;
		if ((pool.queue = j->next) == NULL)
			pool.queue_tail = &pool.queue;
		j->state = J_RUNNING;
		pthread_mutex_unlock(&pool.lock);

		j->ok = verify(j->hash, j->pass, cd);
		OPENSSL_cleanse(cd, sizeof(*cd));

		pthread_mutex_lock(&pool.lock);
		j->state = J_DONE;
		j->next = pool.done;
		pool.done = j;
		pthread_mutex_unlock(&pool.lock);
		while (write(pool.wake[1], "", 1) < 0 && errno == EINTR)
			;	/* EAGAIN: a wake-up byte is already there */
	}
	return NULL;
}

static void
job_free(struct pwcheck *j)
{
	OPENSSL_cleanse(j->pass, strlen(j->pass));
	free(j->pass);
	free(j->hash);
	free(j);
	pool.npending--;
}

/* On the loop: call back for every finished job. */
static void
on_wake(evutil_socket_t fd, short ev, void *unused)
{
	char drain[64];
	struct pwcheck *done, *next;

	(void)ev;
	(void)unused;
	while (read(fd, drain, sizeof(drain)) > 0)
		;
	pthread_mutex_lock(&pool.lock);
	done = pool.done;
	pool.done = NULL;
	pthread_mutex_unlock(&pool.lock);
	for (; done != NULL; done = next) {
		next = done->next;
		if (!done->cancelled)
			done->cb(done->arg, done->ok);
		job_free(done);
	}
}

static int
pool_start(struct event_base *base)
{
	sigset_t all, old;
	pthread_t t;
	int i;

	if (pipe2(pool.wake, O_NONBLOCK | O_CLOEXEC) != 0)
		return -1;
	pool.ev = event_new(base, pool.wake[0], EV_READ | EV_PERSIST, on_wake, NULL);
	if (pool.ev == NULL || event_add(pool.ev, NULL) != 0)
		return -1;
	pool.base = base;
	pool.queue_tail = &pool.queue;
	/* Signals stay with the loop thread. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (i = 0; i < PWCHECK_THREADS; i++)
		if (pthread_create(&t, NULL, worker, NULL) != 0 ||
		    pthread_detach(t) != 0)
			break;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (i == 0)
		return -1;
	pool.started = 1;
	return 0;
}

struct pwcheck *
pwcheck_start(struct event_base *base, const char *hash, const char *pass,
    pwcheck_cb cb, void *arg)
{
	struct pwcheck *j;

	if (!pool.started && pool_start(base) != 0) {
		log_crit("password checks: cannot start the worker threads");
		return NULL;
	}
	if (base != pool.base)
		fatal("pwcheck: one event base per process");
	if (pool.npending >= PWCHECK_QUEUE_MAX)
		return NULL;
	j = xcalloc(1, sizeof(*j));
	j->hash = xstrdup(hash);
	j->pass = xstrdup(pass);
	j->cb = cb;
	j->arg = arg;
	pool.npending++;
	pthread_mutex_lock(&pool.lock);
	*pool.queue_tail = j;
	pool.queue_tail = &j->next;
	pthread_cond_signal(&pool.work);
	pthread_mutex_unlock(&pool.lock);
	return j;
}

void
pwcheck_cancel(struct pwcheck *c)
{
	struct pwcheck **pp;

	pthread_mutex_lock(&pool.lock);
	if (c->state != J_QUEUED) {
		c->cancelled = 1;	/* on_wake frees it */
		pthread_mutex_unlock(&pool.lock);
		return;
	}
	for (pp = &pool.queue; *pp != c; pp = &(*pp)->next)
		;
	if ((*pp = c->next) == NULL)
		pool.queue_tail = pp;
	pthread_mutex_unlock(&pool.lock);
	job_free(c);
}

int
pwcheck_pending(void)
{
	return pool.npending;
}
