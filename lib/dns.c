/*
 * c-ares on the libevent loop: the sock-state callback keeps one libevent
 * event per c-ares socket, and one timer follows ares_timeout(). Answers
 * are parsed with c-ares's own parsers and handed over as flat replies
 * (dns.h). Nothing here blocks. dns_host.c's host-style lookups use the
 * same query records and plumbing (dns_int.h).
 *
 * A reload (new name servers, resolv.conf read again) makes a new channel
 * at once and sends new lookups there; the old channel keeps the lookups
 * it has until they end, then it is destroyed. c-ares 1.18 cannot change
 * a busy channel's servers, and waiting for a moment with no lookup at
 * all would wait for ever on a busy server.
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/nameser.h>
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ares.h>
#include <bsd/sys/queue.h>
#ifndef __unused	/* libbsd's tree.h marks its static functions so */
#define __unused __attribute__((__unused__))
#endif
#include <bsd/sys/tree.h>

#include "dns.h"
#include "dns_int.h"
#include "log.h"
#include "xalloc.h"

struct sockw {
	LIST_ENTRY(sockw) entry;
	ares_socket_t fd;
	unsigned gen;		/* whose socket: the channel's generation */
	struct event *ev;
};

static struct {
	struct event_base *base;
	ares_channel ch;
	unsigned gen;		/* ch's generation */
	ares_channel old;	/* the channel before a reload, draining */
	unsigned old_gen;
	int has_old;
	int old_nq;		/* its lookups still running */
	struct event *retire_ev;	/* destroys it from the loop */
	int up;
	struct event *timer;
	LIST_HEAD(, sockw) socks;
	TAILQ_HEAD(, dns_query) queries;
	int timeout_ms, tries;
	int reload;		/* a new channel wanted (dns_reload), when the
				 * one before is gone */
	char **servers;		/* its servers (a copy); NULL: resolv.conf */
} R = { .timeout_ms = 5000, .tries = 2 };

static const struct {
	int ares;
	enum dns_status st;
	const char *why;
} status_map[] = {
	{ ARES_ENODATA, DNS_NODATA, "no records of that type" },
	{ ARES_ENOTFOUND, DNS_NXDOMAIN, "no such domain" },
	{ ARES_ESERVFAIL, DNS_TEMPFAIL, "name server failure" },
	{ ARES_ETIMEOUT, DNS_TEMPFAIL, "name server timeout" },
	{ ARES_EREFUSED, DNS_TEMPFAIL, "query refused" },
	{ ARES_ENOTIMP, DNS_TEMPFAIL, "query not implemented by the server" },
	{ ARES_EFORMERR, DNS_TEMPFAIL, "server says the query is malformed" },
	{ ARES_ECONNREFUSED, DNS_TEMPFAIL, "no name server reachable" },
	{ ARES_ENOMEM, DNS_TEMPFAIL, "out of memory" },
	{ ARES_EBADRESP, DNS_MALFORMED, "malformed answer" },
	{ ARES_EBADNAME, DNS_MALFORMED, "not a valid domain name" },
	{ ARES_ENOTINITIALIZED, DNS_TEMPFAIL, "the resolver did not start" },
};

static const char *status_names[] = {
	[DNS_OK] = "ok", [DNS_NXDOMAIN] = "NXDOMAIN", [DNS_NODATA] = "NODATA",
	[DNS_NULLMX] = "null MX", [DNS_TEMPFAIL] = "temporary failure",
	[DNS_MALFORMED] = "malformed",
};

const char *
dns_status_str(enum dns_status s)
{
	if ((unsigned)s < sizeof(status_names) / sizeof(status_names[0]))
		return status_names[s];
	return "?";
}

enum dns_status
dns_map_status(int ares, const char **why)
{
	size_t i;

	for (i = 0; i < sizeof(status_map) / sizeof(status_map[0]); i++)
		if (status_map[i].ares == ares) {
			*why = status_map[i].why;
			return status_map[i].st;
		}
	*why = ares_strerror(ares);
	return DNS_TEMPFAIL;
}

int
dns_valid_hostname(const char *name)
{
	size_t len = strlen(name), label = 0, i;

	if (len > 0 && name[len - 1] == '.')
		len--;
	if (len == 0 || len > DNS_NAME_MAX)
		return 0;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];

		if (c == '.') {
			if (label == 0)
				return 0;
			label = 0;
		} else if (isalnum(c) || c == '-' || c == '_') {
			if (++label > 63)
				return 0;
		} else {
			return 0;
		}
	}
	return label > 0;
}

/* ---- the event plumbing ---- */

static void
arm_timer(void)
{
	struct timeval tv, tv_old, *t, *t_old = NULL;

	if (!R.up)
		return;
	t = ares_timeout(R.ch, NULL, &tv);
	if (R.has_old)
		t_old = ares_timeout(R.old, NULL, &tv_old);
	if (t == NULL || (t_old != NULL && timercmp(t_old, t, <)))
		t = t_old;
	if (t != NULL)
		evtimer_add(R.timer, t);
	else
		evtimer_del(R.timer);
}

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (R.has_old)
		ares_process_fd(R.old, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	ares_process_fd(R.ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	arm_timer();
}

static void
on_sock(evutil_socket_t fd, short what, void *arg)
{
	struct sockw *w = arg;		/* may be freed inside ares_process_fd */
	ares_channel ch = w->gen == R.gen ? R.ch :
	    R.has_old && w->gen == R.old_gen ? R.old : NULL;

	if (ch != NULL)
		ares_process_fd(ch, (what & EV_READ) ? fd : ARES_SOCKET_BAD,
		    (what & EV_WRITE) ? fd : ARES_SOCKET_BAD);
	arm_timer();
}

/* c-ares tells us which of its sockets to watch, and for what. */
static void
sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
	struct sockw *w;
	unsigned gen = (unsigned)(uintptr_t)data;
	short what = EV_PERSIST | (readable ? EV_READ : 0) |
	    (writable ? EV_WRITE : 0);

	LIST_FOREACH(w, &R.socks, entry)
		if (w->fd == fd && w->gen == gen)
			break;
	if (w != NULL) {
		event_free(w->ev);
		if (!readable && !writable) {
			LIST_REMOVE(w, entry);
			free(w);
			return;
		}
	} else if (!readable && !writable) {
		return;
	} else {
		w = xcalloc(1, sizeof(*w));
		w->fd = fd;
		w->gen = gen;
		LIST_INSERT_HEAD(&R.socks, w, entry);
	}
	if ((w->ev = event_new(R.base, fd, what, on_sock, w)) == NULL ||
	    event_add(w->ev, NULL) == -1)
		fatal("dns: cannot watch a resolver socket");
}

static int
set_servers(ares_channel ch, char *const *servers)
{
	char csv[2048];
	size_t len = 0;
	int r;

	if (servers == NULL || servers[0] == NULL)
		return 0;
	for (; *servers != NULL; servers++) {
		r = snprintf(csv + len, sizeof(csv) - len, "%s%s",
		    len ? "," : "", *servers);
		if (r < 0 || (size_t)r >= sizeof(csv) - len) {
			log_crit("dns_servers: list too long");
			return -1;
		}
		len += (size_t)r;
	}
	if ((r = ares_set_servers_ports_csv(ch, csv)) != ARES_SUCCESS) {
		log_crit("dns_servers: '%s': %s", csv, ares_strerror(r));
		return -1;
	}
	return 0;
}

void
dns_set_timeouts(int timeout_ms, int tries)
{
	R.timeout_ms = timeout_ms > 0 ? timeout_ms : 5000;
	R.tries = tries > 0 ? tries : 2;
}

/* A channel with our options and `servers` (NULL: resolv.conf), and its
 * generation, which tells its sockets from another channel's. */
static int
channel_new(ares_channel *ch, unsigned *gen, char *const *servers)
{
	static unsigned last_gen;
	struct ares_options o;
	int r;

	memset(&o, 0, sizeof(o));
	*gen = ++last_gen;
	o.sock_state_cb = sock_state;
	o.sock_state_cb_data = (void *)(uintptr_t)*gen;
	o.timeout = R.timeout_ms;
	o.tries = R.tries;
	/* EDNS0: big MX sets fit in one UDP answer instead of a TCP retry
	 * (c-ares retries without EDNS if a server answers FORMERR). */
	o.flags = ARES_FLAG_EDNS;
	o.ednspsz = 1232;
	r = ares_init_options(ch, &o, ARES_OPT_SOCK_STATE_CB |
	    ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_FLAGS |
	    ARES_OPT_EDNSPSZ);
	if (r != ARES_SUCCESS) {
		log_crit("c-ares: %s", ares_strerror(r));
		return -1;
	}
	if (set_servers(*ch, servers) == -1) {
		ares_destroy(*ch);
		return -1;
	}
	return 0;
}

static void on_retire(evutil_socket_t fd, short what, void *arg);

int
dns_init(struct event_base *base, char *const *servers)
{
	int r;

	if (R.up)
		fatal("dns_init called twice");
	if (R.base == NULL) {	/* the first call; a later one keeps its lookups */
		LIST_INIT(&R.socks);
		TAILQ_INIT(&R.queries);
	}
	R.base = base;		/* dns_reload tries again with it */
	if ((r = ares_library_init(ARES_LIB_INIT_ALL)) != ARES_SUCCESS) {
		log_crit("c-ares: %s", ares_strerror(r));
		return -1;
	}
	if (channel_new(&R.ch, &R.gen, servers) == -1) {
		ares_library_cleanup();
		return -1;
	}
	R.timer = evtimer_new(base, on_timer, NULL);
	R.retire_ev = evtimer_new(base, on_retire, NULL);
	R.up = 1;
	return 0;
}

static void
servers_free(void)
{
	for (char **p = R.servers; p != NULL && *p != NULL; p++)
		free(*p);
	free(R.servers);
	R.servers = NULL;
}

/* The channel replaced, unless the one replaced before still drains:
 * then this waits for it (on_retire). The running lookups stay with the
 * old channel, which is destroyed from the loop once they have ended
 * (here we may be inside one of its callbacks). */
static void
reload_now(void)
{
	ares_channel ch;
	unsigned gen;
	struct dns_query *q;

	if (!R.reload || R.has_old)
		return;
	R.reload = 0;
	if (channel_new(&ch, &gen, R.servers) == -1)
		log_warn("DNS: keeping the resolver settings from before the reload");
	else {
		R.old = R.ch;
		R.old_gen = R.gen;
		R.has_old = 1;
		R.old_nq = 0;
		R.ch = ch;
		R.gen = gen;
		TAILQ_FOREACH(q, &R.queries, entry)
			if (q->state == Q_INFLIGHT) {
				q->on_old = 1;
				R.old_nq++;
			}
		if (R.old_nq == 0)
			event_active(R.retire_ev, EV_TIMEOUT, 0);
		arm_timer();
	}
	servers_free();
	dns_cache_flush();
}

/* The old channel's last lookup has ended: destroy it (its sockets' watchers
 * go through sock_state), then a reload that waited for it. */
static void
on_retire(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (!R.has_old || R.old_nq > 0)
		return;
	R.has_old = 0;
	ares_destroy(R.old);
	reload_now();
	arm_timer();
}

void
dns_reload(char *const *servers)
{
	size_t n = 0;

	dns_cache_flush();
	if (!R.up) {		/* it did not start: maybe it does now */
		if (R.base != NULL && dns_init(R.base, servers) == 0)
			log_info("DNS resolver started");
		return;
	}
	servers_free();
	while (servers != NULL && servers[n] != NULL)
		n++;
	if (n > 0) {
		R.servers = xcalloc(n + 1, sizeof(*R.servers));
		for (size_t i = 0; i < n; i++)
			R.servers[i] = xstrdup(servers[i]);
	}
	R.reload = 1;
	reload_now();
}

static void
query_free(struct dns_query *q)
{
	TAILQ_REMOVE(&R.queries, q, entry);
	/* the old channel's last lookup gone: it is destroyed from the loop
	 * (here we may be inside its own callback) */
	if (q->on_old && --R.old_nq == 0 && R.has_old)
		event_active(R.retire_ev, EV_TIMEOUT, 0);
	event_free(q->defer);
	free(q->abuf);
	free(q->name);
	if (q->hit != NULL)
		free(q->hit->data);
	free(q->hit);
	free(q);
}

void
dns_free(void)
{
	struct dns_query *q;
	struct sockw *w;

	if (!R.up)
		return;
	R.up = 0;
	R.reload = 0;
	/* Running lookups come back with ARES_EDESTRUCTION and are freed
	 * without their callbacks; deferred ones are freed here. */
	ares_destroy(R.ch);
	if (R.has_old) {
		R.has_old = 0;
		ares_destroy(R.old);
	}
	while ((q = TAILQ_FIRST(&R.queries)) != NULL)
		query_free(q);
	while ((w = LIST_FIRST(&R.socks)) != NULL) {
		LIST_REMOVE(w, entry);
		event_free(w->ev);
		free(w);
	}
	event_free(R.timer);
	event_free(R.retire_ev);
	servers_free();
	dns_cache_flush();
	ares_library_cleanup();
}

/* ---- answers ---- */

static unsigned int
rd32(const unsigned char *p)
{
	return (unsigned)p[0] << 24 | (unsigned)p[1] << 16 |
	    (unsigned)p[2] << 8 | p[3];
}

/* Skip one (possibly compressed) name; -1 if it runs off the packet. */
static int
skip_name(const unsigned char *abuf, int alen, const unsigned char **p)
{
	char *s;
	long len;

	if (ares_expand_name(*p, abuf, alen, &s, &len) != ARES_SUCCESS)
		return -1;
	ares_free_string(s);
	*p += len;
	return 0;
}

/*
 * The smallest TTL of the answer section (CNAMEs included): how long the
 * whole answer may be cached. A TTL with the top bit set counts as 0
 * (RFC 2181 §8).
 */
static unsigned int
answer_min_ttl(const unsigned char *abuf, int alen)
{
	const unsigned char *p = abuf + 12, *end = abuf + alen;
	unsigned int qd, an, ttl, min = 0xffffffffu;

	if (alen < 12)
		return 0;
	qd = (unsigned)abuf[4] << 8 | abuf[5];
	an = (unsigned)abuf[6] << 8 | abuf[7];
	for (; qd > 0; qd--)
		if (skip_name(abuf, alen, &p) == -1 || (p += 4) > end)
			return 0;
	for (; an > 0; an--) {
		if (skip_name(abuf, alen, &p) == -1 || p + 10 > end)
			return 0;
		ttl = rd32(p + 4);
		if (ttl & 0x80000000u)
			ttl = 0;
		if (ttl < min)
			min = ttl;
		p += 10 + ((unsigned)p[8] << 8 | p[9]);
		if (p > end)
			return 0;
	}
	return min == 0xffffffffu ? 0 : min;
}

static int
mx_cmp(const void *a, const void *b)
{
	const struct dns_mx *x = a, *y = b;

	return (int)x->pref - (int)y->pref;
}

/* Copy the usable exchangers; count null and bad ones on the way. */
static int
mx_collect(struct ares_mx_reply *list, struct dns_mx **out, int *nnull,
    int *nbad)
{
	struct ares_mx_reply *m;
	struct dns_mx *mx;
	size_t len;
	int n = 0, cap = 0, i;

	for (m = list; m != NULL; m = m->next)
		cap++;
	mx = xcalloc((size_t)cap + 1, sizeof(*mx));
	for (m = list; m != NULL; m = m->next) {
		len = strlen(m->host);
		if (len == 0 || strcmp(m->host, ".") == 0) {
			(*nnull)++;
			continue;
		}
		if (!dns_valid_hostname(m->host)) {
			(*nbad)++;
			continue;
		}
		if (m->host[len - 1] == '.')
			len--;
		mx[n].pref = m->priority;
		for (i = 0; i < (int)len; i++)
			mx[n].host[i] = (char)tolower((unsigned char)m->host[i]);
		mx[n].host[len] = '\0';
		n++;
	}
	/* Stable: equal preferences keep the server's order. */
	for (i = 1; i < n; i++) {
		struct dns_mx t = mx[i];
		int j = i - 1;

		for (; j >= 0 && mx_cmp(&mx[j], &t) > 0; j--)
			mx[j + 1] = mx[j];
		mx[j + 1] = t;
	}
	*out = mx;
	return n;
}


/*
 * A small cache of good answers (records and null MX), each kept for its
 * TTL (at most a day), so that a burst of mail to one domain costs one
 * lookup. Failures are not cached: the next attempt asks again.
 */
struct cent {
	RB_ENTRY(cent) node;
	int type;
	char name[DNS_NAME_MAX + 1];	/* lower case, no trailing dot */
	time_t expires;			/* monotonic seconds */
	struct answer a;		/* data owned */
};

static int
cent_cmp(struct cent *x, struct cent *y)
{
	return x->type != y->type ? x->type - y->type :
	    strcmp(x->name, y->name);
}

RB_HEAD(ctree, cent);
RB_GENERATE_STATIC(ctree, cent, node, cent_cmp)
static struct ctree cache = RB_INITIALIZER(&cache);
static int cache_n, cache_max = DNS_CACHE_MAX;

static time_t
mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

static size_t
elsize(int type)
{
	return type == ns_t_mx ? sizeof(struct dns_mx) :
	    sizeof(struct sockaddr_storage);
}

static void
cache_drop(struct cent *e)
{
	RB_REMOVE(ctree, &cache, e);
	cache_n--;
	free(e->a.data);
	free(e);
}

static void
cache_expire(time_t now)
{
	struct cent *e, *next;

	RB_FOREACH_SAFE(e, ctree, &cache, next)
		if (e->expires <= now)
			cache_drop(e);
}

void
dns_cache_flush(void)
{
	cache_expire((time_t)1 << 62);
}

void
dns_set_cache_size(int entries)
{
	cache_max = entries < 0 ? 0 : entries;
	dns_cache_flush();
}

static void
cache_put(int type, const char *name, const struct answer *a)
{
	struct cent *e, key;
	time_t now = mono_now();

	if (cache_max == 0 || a->ttl == 0 || name == NULL ||
	    (a->status != DNS_OK && a->status != DNS_NULLMX))
		return;
	key.type = type;
	snprintf(key.name, sizeof(key.name), "%s", name);
	if ((e = RB_FIND(ctree, &cache, &key)) != NULL)
		cache_drop(e);
	if (cache_n >= cache_max)
		cache_expire(now);
	if (cache_n >= cache_max)
		return;		/* full of live answers: skip, do not evict */
	e = xcalloc(1, sizeof(*e));
	*e = key;
	e->a = *a;
	e->a.why = "ok (cached)";
	e->a.data = NULL;
	e->expires = now + (a->ttl > 86400 ? 86400 : a->ttl);
	if (a->n > 0) {
		e->a.data = xcalloc((size_t)a->n, elsize(type));
		memcpy(e->a.data, a->data, (size_t)a->n * elsize(type));
	}
	RB_INSERT(ctree, &cache, e);
	cache_n++;
}

/* A fresh cached answer copied into `out` (data to be freed), with the
 * TTL that is left. */
static int
cache_get(int type, const char *name, struct answer *out)
{
	struct cent *e, key;
	time_t now = mono_now();

	key.type = type;
	snprintf(key.name, sizeof(key.name), "%s", name);
	if ((e = RB_FIND(ctree, &cache, &key)) == NULL)
		return 0;
	if (e->expires <= now) {
		cache_drop(e);
		return 0;
	}
	*out = e->a;
	out->data = NULL;
	out->ttl = (unsigned)(e->expires - now);
	if (e->a.n > 0) {
		out->data = xcalloc((size_t)e->a.n, elsize(type));
		memcpy(out->data, e->a.data, (size_t)e->a.n * elsize(type));
	}
	return 1;
}

static void
parse_mx(int status, const unsigned char *abuf, int alen, struct answer *a)
{
	struct ares_mx_reply *list = NULL;
	struct dns_mx *mx = NULL;
	int nnull = 0, nbad = 0, pr;

	if (status != ARES_SUCCESS) {
		a->status = dns_map_status(status, &a->why);
		return;
	}
	if ((pr = ares_parse_mx_reply(abuf, alen, &list)) != ARES_SUCCESS) {
		a->status = dns_map_status(pr == ARES_ENODATA ? pr : ARES_EBADRESP,
		    &a->why);
		return;
	}
	a->n = mx_collect(list, &mx, &nnull, &nbad);
	ares_free_data(list);
	a->n = a->n > DNS_MAX_MX ? DNS_MAX_MX : a->n;
	a->data = mx;
	a->ttl = answer_min_ttl(abuf, alen);
	if (a->n == 0 && nnull > 0) {
		a->status = DNS_NULLMX;
		a->why = "the domain accepts no mail (null MX)";
	} else if (a->n == 0) {
		a->status = DNS_MALFORMED;
		a->why = "no valid exchanger names in the MX answer";
		a->ttl = 0;
	}
}

/* Fill sockaddrs from c-ares's parsed A or AAAA records. */
static int
addr_parse(int type, const unsigned char *abuf, int alen,
    struct sockaddr_storage *ss, int *n)
{
	struct ares_addrttl a4[DNS_MAX_ADDRS];
	struct ares_addr6ttl a6[DNS_MAX_ADDRS];
	int r, i;

	*n = DNS_MAX_ADDRS;
	r = type == ns_t_a ?
	    ares_parse_a_reply(abuf, alen, NULL, a4, n) :
	    ares_parse_aaaa_reply(abuf, alen, NULL, a6, n);
	if (r != ARES_SUCCESS)
		return r;
	for (i = 0; i < *n; i++) {
		memset(&ss[i], 0, sizeof(ss[i]));
		if (type == ns_t_a) {
			struct sockaddr_in *sin = (struct sockaddr_in *)&ss[i];
			sin->sin_family = AF_INET;
			sin->sin_addr = a4[i].ipaddr;
		} else {
			struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss[i];
			s6->sin6_family = AF_INET6;
			memcpy(&s6->sin6_addr, &a6[i].ip6addr, 16);
		}
	}
	return *n > 0 ? ARES_SUCCESS : ARES_ENODATA;
}

static void
parse_addr(int type, int status, const unsigned char *abuf, int alen,
    struct answer *a)
{
	int pr;

	if (status != ARES_SUCCESS) {
		a->status = dns_map_status(status, &a->why);
		return;
	}
	a->data = xcalloc(DNS_MAX_ADDRS, sizeof(struct sockaddr_storage));
	if ((pr = addr_parse(type, abuf, alen, a->data, &a->n)) !=
	    ARES_SUCCESS) {
		a->n = 0;
		a->status = dns_map_status(pr == ARES_ENODATA ? pr : ARES_EBADRESP,
		    &a->why);
		return;
	}
	a->ttl = answer_min_ttl(abuf, alen);
}

static void
give(struct dns_query *q, const struct answer *a)
{
	if (q->type == ns_t_mx) {
		struct dns_mx_reply r = { a->status, a->why, a->ttl, a->n,
		    a->data };
		q->mx_cb(&r, q->arg);
	} else if (q->type == ns_t_ptr) {
		struct dns_name_reply r = { a->status, a->why,
		    a->status == DNS_OK ? a->data : NULL };
		q->name_cb(&r, q->arg);
	} else {
		struct dns_addr_reply r = { a->status, a->why, a->ttl, a->n,
		    a->data };
		q->addr_cb(&r, q->arg);
	}
}

static void
deliver(struct dns_query *q, int status, const unsigned char *abuf,
    int alen)
{
	struct answer a = { .status = DNS_OK, .why = "ok" };

	if (q->type == ns_t_mx)
		parse_mx(status, abuf, alen, &a);
	else
		parse_addr(q->type, status, abuf, alen, &a);
	if (a.status != DNS_OK && a.status != DNS_NULLMX)
		a.ttl = 0;
	if (a.status != DNS_OK)
		a.n = 0;
	cache_put(q->type, q->name, &a);
	give(q, &a);
	free(a.data);
}

static void
on_deferred(evutil_socket_t fd, short what, void *arg)
{
	struct dns_query *q = arg;

	(void)fd;
	(void)what;
	if (q->hit != NULL)
		give(q, q->hit);
	else
		deliver(q, q->status, q->abuf, q->alen);
	query_free(q);
}

static void
ares_done(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct dns_query *q = arg;

	(void)timeouts;
	if (status == ARES_EDESTRUCTION || q->cancelled) {
		query_free(q);
		return;
	}
	if (q->state == Q_SUBMITTING) {
		/* Answered from inside ares_query(): report from the loop. */
		q->state = Q_DEFERRED;
		q->status = status;
		if (abuf != NULL && alen > 0) {
			q->abuf = xmalloc((size_t)alen);
			memcpy(q->abuf, abuf, (size_t)alen);
			q->alen = alen;
		}
		event_active(q->defer, EV_TIMEOUT, 0);
		return;
	}
	deliver(q, status, abuf, alen);
	query_free(q);
}

struct dns_query *
dns_query_new(int type, void *arg)
{
	struct dns_query *q;

	if (R.base == NULL)
		fatal("dns query before dns_init");
	reload_now();		/* none running: a waiting reload first */
	q = xcalloc(1, sizeof(*q));
	q->type = type;
	q->arg = arg;
	if ((q->defer = evtimer_new(R.base, on_deferred, q)) == NULL)
		fatal("dns: out of memory");
	TAILQ_INSERT_TAIL(&R.queries, q, entry);
	return q;
}

void
dns_query_drop(struct dns_query *q)
{
	query_free(q);
}

void
dns_query_finish(struct dns_query *q, struct answer *a)
{
	q->hit = a;
	if (q->state == Q_SUBMITTING) {
		/* Answered from inside the c-ares call (/etc/hosts, a bad
		 * address): report from the loop. */
		q->state = Q_DEFERRED;
		event_active(q->defer, EV_TIMEOUT, 0);
		return;
	}
	give(q, a);
	query_free(q);
}

ares_channel
dns_channel(void)
{
	return R.up ? R.ch : NULL;
}

void
dns_rearm(void)
{
	arm_timer();
}

static char *
normalise(const char *name)
{
	char *n = xstrdup(name), *p;
	size_t len = strlen(n);

	if (len > 0 && n[len - 1] == '.')
		n[len - 1] = '\0';
	for (p = n; *p != '\0'; p++)
		*p = (char)tolower((unsigned char)*p);
	return n;
}

static struct dns_query *
submit(const char *name, int type, dns_mx_cb mcb, dns_addr_cb acb,
    void *arg)
{
	struct dns_query *q;

	q = dns_query_new(type, arg);
	q->mx_cb = mcb;
	q->addr_cb = acb;
	if (!dns_valid_hostname(name)) {
		q->state = Q_DEFERRED;
		q->status = ARES_EBADNAME;
		event_active(q->defer, EV_TIMEOUT, 0);
		return q;
	}
	q->name = normalise(name);
	q->hit = xcalloc(1, sizeof(*q->hit));
	if (cache_get(type, q->name, q->hit)) {
		q->state = Q_DEFERRED;
		event_active(q->defer, EV_TIMEOUT, 0);
		return q;
	}
	free(q->hit);
	q->hit = NULL;
	if (!R.up) {		/* dns_init failed: a temporary failure */
		q->state = Q_DEFERRED;
		q->status = ARES_ENOTINITIALIZED;
		event_active(q->defer, EV_TIMEOUT, 0);
		return q;
	}
	q->state = Q_SUBMITTING;
	ares_query(R.ch, name, ns_c_in, type, ares_done, q);
	if (q->state == Q_SUBMITTING)
		q->state = Q_INFLIGHT;
	arm_timer();
	return q;
}

struct dns_query *
dns_query_mx(const char *name, dns_mx_cb cb, void *arg)
{
	return submit(name, ns_t_mx, cb, NULL, arg);
}

struct dns_query *
dns_query_addr(const char *name, int family, dns_addr_cb cb, void *arg)
{
	if (family != AF_INET && family != AF_INET6)
		fatal("dns_query_addr: bad family %d", family);
	return submit(name, family == AF_INET ? ns_t_a : ns_t_aaaa, NULL, cb,
	    arg);
}

void
dns_cancel(struct dns_query *q)
{
	if (q == NULL)
		return;
	if (q->state == Q_DEFERRED)
		query_free(q);
	else
		q->cancelled = 1;	/* freed when c-ares lets go of it */
}
