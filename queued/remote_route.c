/*
 * Remote routing: turns a destination into the ordered list of addresses
 * a session tries (remote.c). A domain gets an MX lookup on lib/dns
 * (c-ares, answers cached within their TTL), then A and AAAA of each
 * exchanger, all in parallel; equal preferences are shuffled so that load
 * spreads. No MX: the domain's own addresses (implicit MX, RFC 5321
 * §5.1). Null MX (RFC 7505): 5.1.10 at once; NXDOMAIN: 5.1.2; SERVFAIL or
 * a timeout: 4.4.3, retried later. An MX list naming this host
 * (myhostname) is cut at our own preference, and addresses we listen on
 * are dropped: mail that would come back to us bounces 5.4.6 instead of
 * looping. Address literals and a bracketed relayhost skip the MX lookup.
 * Within one exchanger IPv4 addresses come first, then IPv6: a host
 * without IPv6 connectivity then loses no time on unreachable addresses.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <bsd/stdlib.h>
#include <event2/event.h>

#include "conf.h"
#include "log.h"
#include "queued.h"
#include "remote_int.h"
#include "xalloc.h"

#define ADDRS_PER_FAMILY 4	/* addresses kept per exchanger and family */

struct route_query;

/* One A or AAAA lookup of one exchanger (the callback's argument). */
struct rlook {
	struct route_query *q;
	struct dns_query *dq;		/* in flight, or NULL */
	enum dns_status st;
	int n;
	struct sockaddr_storage a[ADDRS_PER_FAMILY];
};

struct rhost {
	char name[DNS_NAME_MAX + 1];
	struct rlook l[2];		/* A, AAAA */
};

struct route_query {
	char name[DNS_NAME_MAX + 1];
	int port, relay;
	int implicit;			/* no MX: the name's own addresses */
	int loop;			/* the MX list led back to us */
	struct dns_query *mxq;
	struct rhost h[ROUTE_MAX_HOSTS];
	int nhost, pending;
	struct event *ev;		/* literal or failure: answer from the loop */
	void (*cb)(const struct route *, void *);
	void *arg;
	struct route r;
};

static void addr_done(const struct dns_addr_reply *r, void *arg);

/* ---- small helpers ----------------------------------------------------------- */

void
rhop_name(const struct rhop *h, char *out, size_t outsz)
{
	char a[INET6_ADDRSTRLEN] = "?";
	int port = 0;

	if (h->ss.ss_family == AF_INET) {
		const struct sockaddr_in *s = (const void *)&h->ss;

		inet_ntop(AF_INET, &s->sin_addr, a, sizeof(a));
		port = ntohs(s->sin_port);
	} else if (h->ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const void *)&h->ss;

		inet_ntop(AF_INET6, &s->sin6_addr, a, sizeof(a));
		port = ntohs(s->sin6_port);
	}
	snprintf(out, outsz, "%s[%s]:%d", h->host, a, port);
}

static void
set_port(struct sockaddr_storage *ss, int port)
{
	if (ss->ss_family == AF_INET)
		((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
	else
		((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
}

/* "192.0.2.1" or "IPv6:2001:db8::1" (the inside of an address literal). */
static int
parse_ip(const char *s, struct sockaddr_storage *ss)
{
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (strncasecmp(s, "IPv6:", 5) == 0) {
		s6->sin6_family = AF_INET6;
		return inet_pton(AF_INET6, s + 5, &s6->sin6_addr) == 1 ? 0 : -1;
	}
	s4->sin_family = AF_INET;
	if (inet_pton(AF_INET, s, &s4->sin_addr) == 1)
		return 0;
	s6->sin6_family = AF_INET6;	/* a relayhost may name a bare IPv6 */
	return inet_pton(AF_INET6, s, &s6->sin6_addr) == 1 ? 0 : -1;
}

char *
remote_dest_of(const char *addr)
{
	const char *at = strrchr(addr, '@');
	const char *relay = conf_str(C_relayhost);
	char *d;

	if (relay != NULL && relay[0] != '\0')
		return xstrdup(relay);
	if (at == NULL || at[1] == '\0' || strlen(at + 1) > DNS_NAME_MAX + 8)
		return NULL;
	d = xstrdup(at + 1);
	if (d[0] != '[')
		for (char *p = d; *p != '\0'; p++)
			*p = (char)tolower((unsigned char)*p);
	return d;
}

static int
same_ip(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return 0;
	if (a->ss_family == AF_INET)
		return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
		    ((const struct sockaddr_in *)b)->sin_addr.s_addr;
	return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
	    &((const struct sockaddr_in6 *)b)->sin6_addr, 16) == 0;
}

#define SELF_MAX	64	/* interface addresses remembered */
#define SELF_TTL	60	/* seconds before they are read again */

/* This host's interface addresses, read at most once a minute (a
 * getifaddrs() per address tried would cost a netlink dump each). */
static int
if_addrs(struct sockaddr_storage **out)
{
	static struct sockaddr_storage v[SELF_MAX];
	static int n;
	static time_t at;
	struct ifaddrs *ifa, *i;

	*out = v;
	if (at != 0 && time(NULL) - at < SELF_TTL)
		return n;
	at = time(NULL);
	n = 0;
	if (getifaddrs(&ifa) < 0)
		return 0;
	for (i = ifa; i != NULL && n < SELF_MAX; i = i->ifa_next)
		if (i->ifa_addr != NULL && (i->ifa_addr->sa_family == AF_INET ||
		    i->ifa_addr->sa_family == AF_INET6)) {
			memset(&v[n], 0, sizeof(v[n]));
			memcpy(&v[n++], i->ifa_addr, i->ifa_addr->sa_family == AF_INET ?
			    sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
		}
	freeifaddrs(ifa);
	return n;
}

static int
port_of(const struct sockaddr_storage *ss)
{
	return ntohs(ss->ss_family == AF_INET ?
	    ((const struct sockaddr_in *)ss)->sin_port :
	    ((const struct sockaddr_in6 *)ss)->sin6_port);
}

/*
 * Does ss belong to this host's SMTP listeners (smtp_listen; a wildcard
 * listener means every interface address)? Connecting there loops. The
 * port counts: a relayhost or content filter on another port of this
 * host ([127.0.0.1]:10025) is another program, not us.
 */
static int
is_self_addr(const struct sockaddr_storage *ss)
{
	char *const *l = conf_list(C_smtp_listen);
	struct sockaddr_storage o, *ifv;
	int wild = 0, n;

	for (; l != NULL && *l != NULL; l++) {
		char host[256];
		const char *p = *l, *e, *colon;

		if (*p == '[' && (e = strchr(p, ']')) != NULL) {
			snprintf(host, sizeof(host), "%.*s", (int)(e - p - 1), p + 1);
			colon = strchr(e, ':');
		} else {
			snprintf(host, sizeof(host), "%.*s", (int)strcspn(p, ":"), p);
			colon = strchr(p, ':');
		}
		if (colon == NULL || atoi(colon + 1) != port_of(ss))
			continue;
		if (strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0 || host[0] == '\0')
			wild = 1;
		else if (parse_ip(host, &o) == 0 && same_ip(&o, ss))
			return 1;
	}
	if (!wild)
		return 0;
	n = if_addrs(&ifv);
	for (int i = 0; i < n; i++)
		if (same_ip(&ifv[i], ss))
			return 1;
	return 0;
}

/* ---- the answer --------------------------------------------------------------- */

static void
fail(struct route_query *q, int code, const char *dsn, const char *fmt, const char *a)
{
	q->r.n = 0;
	q->r.code = code;
	snprintf(q->r.dsn, sizeof(q->r.dsn), "%s", dsn);
	snprintf(q->r.text, sizeof(q->r.text), fmt, a);
}

static void
finish(struct route_query *q)
{
	void (*cb)(const struct route *, void *) = q->cb;
	void *arg = q->arg;
	struct route r = q->r;

	route_cancel(q);
	cb(&r, arg);
}

/* smtp_mx_address_limit, as in Postfix: each address that does not
 * answer costs smtp_connect_timeout or smtp_helo_timeout, so a
 * destination with many silent ones would hold a delivery for hours. */
static int
addr_limit(void)
{
	long long n = conf_num(C_smtp_mx_address_limit);

	return n > 0 && n < ROUTE_MAX_ADDRS ? (int)n : ROUTE_MAX_ADDRS;
}

static void
add_hop(struct route_query *q, const char *host, const struct sockaddr_storage *ss)
{
	struct rhop *h;

	if (q->r.n >= addr_limit())
		return;
	/* an address listed again (under another MX name, or twice) is
	 * not worth a second try: a dead one would cost its timeout again */
	for (int i = 0; i < q->r.n; i++)
		if (same_ip(&q->r.v[i].ss, ss))
			return;
	h = &q->r.v[q->r.n];
	snprintf(h->host, sizeof(h->host), "%s", host);
	h->ss = *ss;
	set_port(&h->ss, q->port);
	if (is_self_addr(&h->ss)) {
		q->loop = 1;
		return;
	}
	q->r.n++;
}

/* All lookups are in: addresses in exchanger order, or why there are none. */
static void
assemble(struct route_query *q)
{
	int temp = 0, nx = 0;

	for (int i = 0; i < q->nhost; i++) {
		struct rhost *h = &q->h[i];

		for (int f = 0; f < 2; f++) {
			for (int k = 0; k < h->l[f].n; k++)
				add_hop(q, h->name, &h->l[f].a[k]);
			temp |= h->l[f].st == DNS_TEMPFAIL || h->l[f].st == DNS_MALFORMED;
		}
		nx += h->l[0].st == DNS_NXDOMAIN && h->l[1].st == DNS_NXDOMAIN;
	}
	if (q->r.n > 0)
		;
	else if (q->loop)
		fail(q, 554, "5.4.6", "mail for %s loops back to myself", q->name);
	else if (temp || q->relay)
		fail(q, 451, "4.4.3", "Host or domain name lookup failed for %s: "
		    "temporary failure, try again later", q->name);
	else if (q->implicit && nx == q->nhost)
		fail(q, 550, "5.1.2", "Host or domain name not found. Name service "
		    "error for name=%s type=A: Host not found", q->name);
	else
		fail(q, 550, "5.4.4", "Host or domain name not found: no address "
		    "for the mail exchangers of %s", q->name);
	finish(q);
}

static void
addr_done(const struct dns_addr_reply *r, void *arg)
{
	struct rlook *l = arg;
	struct route_query *q = l->q;

	l->dq = NULL;
	l->st = r->status;
	for (int k = 0; r->status == DNS_OK && k < r->n && k < ADDRS_PER_FAMILY; k++)
		l->a[l->n++] = r->addrs[k];
	if (--q->pending == 0)
		assemble(q);
}

static void
lookup_hosts(struct route_query *q)
{
	static const int fam[2] = { AF_INET, AF_INET6 };

	q->pending = 2 * q->nhost;	/* counted first; answers never come inline */
	for (int i = 0; i < q->nhost; i++)
		for (int f = 0; f < 2; f++) {
			q->h[i].l[f].q = q;
			q->h[i].l[f].dq = dns_query_addr(q->h[i].name, fam[f],
			    addr_done, &q->h[i].l[f]);
		}
}

/* Equal preferences in random order (Fisher-Yates within each run). */
static void
shuffle_equal(struct dns_mx *v, int n)
{
	for (int a = 0, b; a < n; a = b) {
		for (b = a + 1; b < n && v[b].pref == v[a].pref; b++)
			;
		for (int i = b - 1; i > a; i--) {
			int j = a + (int)arc4random_uniform((uint32_t)(i - a + 1));
			struct dns_mx t = v[i];

			v[i] = v[j];
			v[j] = t;
		}
	}
}

/* Keep the exchangers better than this host's own entry (RFC 5321 §5.1). */
static int
cut_self(struct dns_mx *v, int n)
{
	const char *me = queued_hostname();

	for (int i = 0; i < n; i++)
		if (me != NULL && strcasecmp(v[i].host, me) == 0) {
			int k = 0;

			while (k < n && v[k].pref < v[i].pref)
				k++;
			return k;
		}
	return n;
}

static void
mx_done(const struct dns_mx_reply *r, void *arg)
{
	struct route_query *q = arg;
	struct dns_mx v[DNS_MAX_MX];
	int n;

	q->mxq = NULL;
	switch (r->status) {
	case DNS_OK:
		break;
	case DNS_NODATA:
		q->implicit = 1;
		snprintf(q->h[0].name, sizeof(q->h[0].name), "%s", q->name);
		q->nhost = 1;
		lookup_hosts(q);
		return;
	case DNS_NXDOMAIN:
		fail(q, q->relay ? 451 : 550, q->relay ? "4.4.3" : "5.1.2",
		    "Host or domain name not found. Name service error for "
		    "name=%s type=MX: Host not found", q->name);
		finish(q);
		return;
	case DNS_NULLMX:
		fail(q, 556, "5.1.10", "Domain %s does not accept mail (null MX)", q->name);
		finish(q);
		return;
	default:
		fail(q, 451, "4.4.3", "Host or domain name lookup failed for %s: "
		    "temporary failure (MX), try again later", q->name);
		finish(q);
		return;
	}
	n = r->n < DNS_MAX_MX ? r->n : DNS_MAX_MX;
	memcpy(v, r->mx, (size_t)n * sizeof(*v));
	shuffle_equal(v, n);
	if ((n = cut_self(v, n)) == 0) {
		fail(q, 554, "5.4.6", "mail for %s loops back to myself", q->name);
		finish(q);
		return;
	}
	q->nhost = n < ROUTE_MAX_HOSTS ? n : ROUTE_MAX_HOSTS;
	for (int i = 0; i < q->nhost; i++)
		snprintf(q->h[i].name, sizeof(q->h[i].name), "%s", v[i].host);
	lookup_hosts(q);
}

static void
answer_now(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	finish(arg);
}

/* relayhost: "[host]:port", "host:port", "[host]", "host"; brackets: no MX. */
static int
parse_relay(struct route_query *q, const char *spec, int *mx)
{
	const char *p = spec, *e;
	size_t len;

	*mx = *p != '[';
	if (*p == '[') {
		if ((e = strchr(p, ']')) == NULL)
			return -1;
		len = (size_t)(e - p - 1);
		p++;
		e++;
	} else {
		len = strcspn(p, ":");
		e = p + len;
	}
	if (len == 0 || len > DNS_NAME_MAX)
		return -1;
	memcpy(q->name, p, len);
	q->name[len] = '\0';
	if (*e == ':') {
		char *end;
		long port = strtol(e + 1, &end, 10);

		if (*end != '\0' || port < 1 || port > 65535)
			return -1;
		q->port = (int)port;
	} else if (*e != '\0')
		return -1;
	return 0;
}

/* An address literal or a bracketed relayhost IP: one hop, no DNS. */
static int
literal(struct route_query *q)
{
	struct sockaddr_storage ss;

	if (parse_ip(q->name, &ss) < 0)
		return 0;
	add_hop(q, q->name, &ss);
	if (q->r.n == 0)
		fail(q, 554, "5.4.6", "mail for [%s] loops back to myself", q->name);
	return 1;
}

static void
answer_later(struct route_query *q)
{
	struct timeval tv = { 0, 0 };

	q->ev = evtimer_new(queued_base, answer_now, q);
	evtimer_add(q->ev, &tv);
}

struct route_query *
route_resolve(const char *dest, int relay,
    void (*cb)(const struct route *r, void *arg), void *arg)
{
	struct route_query *q = xcalloc(1, sizeof(*q));
	int mx = 1;

	q->cb = cb;
	q->arg = arg;
	q->relay = relay;
	q->port = (int)conf_num(C_smtp_port);
	if (relay ? parse_relay(q, dest, &mx) < 0 : strlen(dest) > DNS_NAME_MAX + 8) {
		fail(q, 451, "4.3.5", "bad relayhost or destination %s", dest);
		answer_later(q);
		return q;
	}
	if (!relay) {
		size_t len = strlen(dest);

		mx = dest[0] != '[';
		if (!mx && (len < 3 || dest[len - 1] != ']' || len - 2 > DNS_NAME_MAX)) {
			fail(q, 550, "5.1.2", "bad address literal %s", dest);
			answer_later(q);
			return q;
		}
		/* Addresses allow 255, DNS 253: cut, it would name another domain */
		if (mx && len - (len > 0 && dest[len - 1] == '.') > DNS_NAME_MAX) {
			fail(q, 550, "5.1.2", "bad domain name %s: longer than DNS allows",
			    dest);
			answer_later(q);
			return q;
		}
		snprintf(q->name, sizeof(q->name), "%.*s", (int)(mx ? len : len - 2),
		    mx ? dest : dest + 1);
	}
	if (!mx && literal(q)) {
		answer_later(q);
		return q;
	}
	if (!mx && !relay) {
		fail(q, 550, "5.1.2", "bad address literal [%s]", q->name);
		answer_later(q);
		return q;
	}
	if (!mx) {		/* [host]: its own addresses, no MX */
		snprintf(q->h[0].name, sizeof(q->h[0].name), "%s", q->name);
		q->nhost = 1;
		lookup_hosts(q);
		return q;
	}
	q->mxq = dns_query_mx(q->name, mx_done, q);
	return q;
}

void
route_cancel(struct route_query *q)
{
	if (q == NULL)
		return;
	if (q->mxq != NULL)
		dns_cancel(q->mxq);
	for (int i = 0; i < q->nhost; i++)
		for (int f = 0; f < 2; f++)
			if (q->h[i].l[f].dq != NULL)
				dns_cancel(q->h[i].l[f].dq);
	if (q->ev != NULL)
		event_free(q->ev);
	free(q);
}
