/*
 * The delivery side of an LMTP transaction (lmtp_txn.h): recipient
 * lookups at RCPT, the spool, one delivery per recipient through
 * deliver.c, the results gathered in RCPT order, the reply table and the
 * log lines. Independent of the protocol engine in lmtp_session.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "deliver.h"
#include "local_user.h"
#include "lmtp_txn.h"
#include "log.h"
#include "xalloc.h"

/* One reply per outcome, so the same refusal reads the same everywhere. */
static const struct lmtp_reply replies[DLV_NSTATUS] = {
	[DLV_OK] = { 250, "2.0.0", "Ok" },
	[DLV_NOUSER] = { 550, "5.1.1", "User unknown" },
	[DLV_TEMPLOOKUP] = { 451, "4.3.0", "Temporary lookup failure" },
	[DLV_LOOP] = { 554, "5.4.6", "Mail forwarding loop" },
	[DLV_QUOTA] = { 552, "5.2.2", "Mailbox full" },
	[DLV_TOOBIG] = { 552, "5.3.4", "Message too big" },
	[DLV_NOSPACE] = { 452, "4.3.1", "Insufficient system storage" },
	[DLV_LOCKED] = { 452, "4.2.1", "Mailbox locked, try again later" },
	[DLV_UNSAFE] = { 451, "4.3.0", "Mailbox unsafe, delivery deferred" },
	[DLV_TEMP] = { 451, "4.3.0", "Temporary local failure" },
};

const struct lmtp_reply *
dlv_reply(enum dlv_status st)
{
	return &replies[st < DLV_NSTATUS ? st : DLV_TEMP];
}

char *
lmtp_tmpdir(void)
{
	return xasprintf("%s/lmtpd.tmp", conf_str(C_run_directory));
}

static void
local_qid(char *out, size_t outsz)
{
	static unsigned counter;
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	snprintf(out, outsz, "L%llX%05lX%04X", (unsigned long long)ts.tv_sec,
	    (unsigned long)(ts.tv_nsec / 1000) & 0xfffff, ++counter & 0xffff);
}

struct lmtp_txn *
lmtp_txn_new(const char *sender, const char *qid)
{
	struct lmtp_txn *t = xcalloc(1, sizeof(*t));

	t->sender = xstrdup(sender);
	if (qid != NULL && *qid != '\0')
		snprintf(t->qid, sizeof(t->qid), "%s", qid);
	else
		local_qid(t->qid, sizeof(t->qid));
	clock_gettime(CLOCK_MONOTONIC, &t->start);
	return t;
}

void
lmtp_txn_free(struct lmtp_txn *t)
{
	if (t == NULL)
		return;
	deliver_cancel(t);
	for (unsigned i = 0; i < t->nrcpts; i++)
		free(t->rcpts[i].addr);
	free(t->rcpts);
	if (t->spool != NULL) {
		spool_close(t->spool);
		free(t->spool);
	}
	free(t->sender);
	free(t);
}

enum dlv_status
lmtp_txn_rcpt(struct lmtp_txn *t, const char *addr)
{
	struct local_user lu;

	switch (local_user_find(addr, NULL, &lu)) {
	case LU_FOUND:
		break;
	case LU_NOTFOUND:
		return DLV_NOUSER;
	default:
		return DLV_TEMPLOOKUP;
	}
	if (t->nrcpts == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 4;
		t->rcpts = xrealloc(t->rcpts, t->cap * sizeof(*t->rcpts));
	}
	memset(&t->rcpts[t->nrcpts], 0, sizeof(t->rcpts[0]));
	t->rcpts[t->nrcpts++].addr = xstrdup(addr);
	return DLV_OK;
}

int
lmtp_txn_data_begin(struct lmtp_txn *t)
{
	char *dir = lmtp_tmpdir();
	int rc;

	t->spool = xmalloc(sizeof(*t->spool));
	rc = spool_open(t->spool, dir);
	if (rc < 0) {
		int e = errno;
		log_qwarn(t->qid, "cannot create a spool file in %s: %s", dir, strerror(e));
		free(t->spool);
		t->spool = NULL;
		errno = e;
	}
	free(dir);
	return rc;
}

static void
on_result(void *arg, unsigned slot, enum dlv_status st, const char *detail)
{
	struct lmtp_txn *t = arg;
	struct lmtp_rcpt *r = &t->rcpts[slot];

	r->st = st;
	r->done = 1;
	snprintf(r->detail, sizeof(r->detail), "%s", detail);
	lmtp_txn_log(t, slot);
	if (--t->pending == 0 && t->done != NULL)
		t->done(t->arg);
}

static void
settle_all(struct lmtp_txn *t, enum dlv_status st, const char *detail)
{
	for (unsigned i = 0; i < t->nrcpts; i++) {
		t->rcpts[i].st = st;
		t->rcpts[i].done = 1;
		snprintf(t->rcpts[i].detail, sizeof(t->rcpts[i].detail), "%s", detail);
		lmtp_txn_log(t, i);
	}
}

int
lmtp_txn_deliver(struct lmtp_txn *t, int toobig, void (*done)(void *), void *arg)
{
	if (toobig) {
		settle_all(t, DLV_TOOBIG, "larger than message_size_limit");
		return 1;
	}
	if (t->spool == NULL || spool_finish(t->spool) < 0) {
		settle_all(t, t->spool != NULL && t->spool->err == ENOSPC ? DLV_NOSPACE : DLV_TEMP,
		    "cannot spool the message");
		return 1;
	}
	log_qinfo(t->qid, "from=<%s>, size=%lld, nrcpt=%u", t->sender,
	    (long long)t->spool->size, t->nrcpts);
	t->done = done;
	t->arg = arg;
	t->pending = t->nrcpts;
	for (unsigned i = 0; i < t->nrcpts; i++)
		deliver_submit(t->spool->fd, t->qid, t->sender, t->rcpts[i].addr, on_result, t, i);
	return t->nrcpts == 0;
}

void
lmtp_txn_log(const struct lmtp_txn *t, unsigned i)
{
	const struct lmtp_rcpt *r = &t->rcpts[i];
	const struct lmtp_reply *rep = dlv_reply(r->st);
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	double delay = (double)(now.tv_sec - t->start.tv_sec) +
	    (double)(now.tv_nsec - t->start.tv_nsec) / 1e9;
	log_q(rep->code < 400 ? LOG_LVL_INFO : LOG_LVL_WARN, t->qid,
	    "to=<%s>, relay=lmtpd, delay=%.2f, dsn=%s, status=%s (%s)", r->addr,
	    delay, rep->esc, rep->code < 400 ? "sent" : rep->code < 500 ? "deferred" : "bounced",
	    r->detail[0] ? r->detail : rep->text);
}
