/*
 * From a finished queue file to a scheduled message: the in-memory copy of
 * what was written (so nothing is read back), the group commit, then the
 * scheduler. Used by the submission session and by bounce.c (a DSN is
 * queued exactly like any other message).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "queued.h"
#include "xalloc.h"

struct inject {
	struct qf_writer w;
	struct msg *m;
	struct commit_req creq;
	void (*done)(void *arg, int err, const char *qid);
	void *arg;
};

static char *
dup_or_null(const char *s)
{
	return s != NULL ? xstrdup(s) : NULL;
}

struct msg *
msg_build(const struct qf_writer *w, const struct qf_env *env,
    const struct env_rcpt *rcpts, int nrcpt, const struct leaf *leaves, int nleaf)
{
	struct msg *m = msg_new();

	memcpy(m->id, w->id, sizeof(m->id));
	m->path = xstrdup(w->path);
	m->arrival = env->arrival;
	m->data_off = w->data_off;
	m->size = w->size;
	m->end = w->end;		/* after the seal */
	m->sender = xstrdup(env->sender);
	m->envid = dup_or_null(env->envid);
	m->auth = dup_or_null(env->auth);
	m->client = dup_or_null(env->client);
	m->body8 = env->body8;
	m->smtputf8 = env->smtputf8;
	m->ret_hdrs = env->ret_hdrs;
	m->flags = env->flags;
	m->rcpts = xcalloc((size_t)nrcpt, sizeof(*m->rcpts));
	for (m->nrcpt = 0; m->nrcpt < nrcpt; m->nrcpt++) {
		m->rcpts[m->nrcpt].addr = xstrdup(rcpts[m->nrcpt].addr);
		m->rcpts[m->nrcpt].orcpt = dup_or_null(rcpts[m->nrcpt].orcpt);
		m->rcpts[m->nrcpt].notify = rcpts[m->nrcpt].notify;
	}
	m->leaves = xcalloc((size_t)nleaf, sizeof(*m->leaves));
	for (m->nleaf = 0; m->nleaf < nleaf; m->nleaf++) {
		struct leaf *l = &m->leaves[m->nleaf];

		*l = leaves[m->nleaf];
		l->addr = xstrdup(l->addr);
		l->reason = dup_or_null(l->reason);
		l->relay = NULL;
		l->busy = l->notified = 0;
		l->state = LS_PENDING;
	}
	return m;
}

static void
committed(void *arg, int err)
{
	struct inject *in = arg;
	struct msg *m = in->m;

	if (err != 0) {
		unlinkat(spool_fd, in->w.path, 0);
		log_qwarn(m->id, "not queued: %s", strerror(err));
		in->done(in->arg, err, m->id);
		msg_free(m);
	} else {
		log_qinfo(m->id, "from=<%s>, size=%lld, nrcpt=%d (queue active)",
		    m->sender, (long long)m->size, m->nrcpt);
		in->done(in->arg, 0, m->id);
		sched_add(m);
	}
	qf_writer_free(&in->w);
	free(in);
}

void
queue_commit(struct qf_writer *w, struct msg *m,
    void (*done)(void *arg, int err, const char *qid), void *arg)
{
	struct inject *in = xcalloc(1, sizeof(*in));

	in->w = *w;		/* the writer moves in here */
	memset(w, 0, sizeof(*w));
	w->fd = -1;
	in->m = m;
	in->done = done;
	in->arg = arg;
	in->creq.fd = in->w.fd;
	in->creq.new_entry = !in->w.named;
	in->creq.done = committed;
	in->creq.arg = in;
	commit_request(&in->creq);
}

int
queue_new_message(const struct qf_env *env, const struct env_rcpt *rcpts,
    int nrcpt, const struct leaf *leaves, int nleaf, const char *text, size_t len,
    void (*done)(void *arg, int err, const char *qid), void *arg)
{
	struct qf_writer w;
	struct msg *m;
	int err;

	if ((err = qf_begin(&w, env, rcpts, nrcpt, leaves, nleaf)) != 0)
		return err;
	qf_write(&w, text, len);
	if ((err = qf_finish(&w)) != 0) {
		qf_abort(&w);
		return err;
	}
	m = msg_build(&w, env, rcpts, nrcpt, leaves, nleaf);
	queue_commit(&w, m, done, arg);
	return 0;
}
