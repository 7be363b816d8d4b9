/*
 * Internal to lib/dns*.c (not for callers: they use dns.h). The query
 * record and the few resolver pieces shared by dns.c (DNS queries, the
 * cache, the libevent plumbing) and dns_host.c (host-style lookups
 * through c-ares's hostent functions: /etc/hosts, then DNS).
 */
#ifndef HERMOD_DNS_INT_H
#define HERMOD_DNS_INT_H

#include <ares.h>
#include <bsd/sys/queue.h>

#include "dns.h"

enum qstate { Q_SUBMITTING, Q_INFLIGHT, Q_DEFERRED };

/* A lookup's outcome, before it is shaped into the caller's reply. */
struct answer {
	enum dns_status status;
	const char *why;
	unsigned int ttl;
	int n;
	void *data;		/* n dns_mx, n sockaddr_storage, or one
				 * name of DNS_NAME_MAX + 1 bytes (PTR) */
};

struct dns_query {
	TAILQ_ENTRY(dns_query) entry;
	enum qstate state;
	int cancelled;
	int on_old;		/* running on the channel a reload replaced */
	int type;		/* ns_t_mx, ns_t_a, ns_t_aaaa, ns_t_ptr */
	dns_mx_cb mx_cb;
	dns_addr_cb addr_cb;
	dns_name_cb name_cb;
	void *arg;
	struct event *defer;	/* answers that came too early, and bad names */
	int status;		/* stashed ares status for Q_DEFERRED */
	unsigned char *abuf;
	int alen;
	char *name;		/* normalised: the cache key (NULL for
				 * host-style lookups: not cached) */
	int cached;		/* answered from the cache: `hit` */
	struct answer *hit;	/* a finished answer waiting for the loop */
};

/* dns.c */
enum dns_status dns_map_status(int ares, const char **why);
/* A query record on the resolver's list, its deferral event made. */
struct dns_query *dns_query_new(int type, void *arg);
/* c-ares still holds q and will call back: drop it (cancelled, or
 * ARES_EDESTRUCTION at dns_free). */
void dns_query_drop(struct dns_query *q);
/* Hand a finished answer (owned: `a` and its data) to the caller: from
 * the loop if we are still inside the dns_query_*() call, else now;
 * q is freed afterwards. */
void dns_query_finish(struct dns_query *q, struct answer *a);
/* The channel, for dns_host.c's requests (NULL when dns_init failed);
 * re-arm the timer after one. */
ares_channel dns_channel(void);
void dns_rearm(void);

#endif
