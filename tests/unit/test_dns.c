/*
 * Unit tests for lib/dns.c against a tiny UDP DNS responder that lives in
 * the same event loop (127.0.0.1, random port) and answers canned packets
 * built by hand: MX (sorted, TTL, the MX cap), null MX, NXDOMAIN, NODATA,
 * SERVFAIL, silence (timeout), a packet too short to be DNS, a truncated
 * record, bad exchanger names, A, AAAA and a CNAME chain. Also: bad query
 * names, cancelling, dns_free with lookups running. Host-style lookups:
 * reverse names, PTR answers (good, bad names, failures), /etc/hosts for
 * 127.0.0.1 and localhost without a query. Every wait is bounded.
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "dns.h"
#include "log.h"
#include "unit.h"

#define T_A 1
#define T_CNAME 5
#define T_PTR 12
#define T_MX 15
#define T_AAAA 28

struct rr {
	int type;
	unsigned ttl;
	int pref;
	const char *data;	/* name, or address text */
	const char *owner;	/* NULL: the query name */
};

enum mode { M_ANSWER, M_DROP, M_SHORT, M_TRUNC_RDATA, M_MANY_MX };

static const struct canned {
	const char *name;
	int qtype;
	int rcode;
	enum mode mode;
	struct rr rrs[3];
} canned[] = {
	{ "mx.test", T_MX, 0, M_ANSWER, { { T_MX, 300, 20, "mx2.test", 0 },
	    { T_MX, 100, 10, "MX1.Test.", 0 }, { T_MX, 200, 20, "mx3.test",
	    0 } } },
	{ "nx.test", T_MX, 3, M_ANSWER, { { 0 } } },
	{ "servfail.test", T_MX, 2, M_ANSWER, { { 0 } } },
	{ "refused.test", T_MX, 5, M_ANSWER, { { 0 } } },
	{ "nomx.test", T_MX, 0, M_ANSWER, { { 0 } } },
	{ "null.test", T_MX, 0, M_ANSWER, { { T_MX, 3600, 0, "", 0 } } },
	{ "badmx.test", T_MX, 0, M_ANSWER, { { T_MX, 60, 10, "bad host",
	    0 } } },
	{ "mixed.test", T_MX, 0, M_ANSWER, { { T_MX, 60, 10, "bad host", 0 },
	    { T_MX, 60, 20, "good.test", 0 } } },
	{ "garbage.test", T_MX, 0, M_TRUNC_RDATA, { { 0 } } },
	{ "drop.test", T_MX, 0, M_DROP, { { 0 } } },
	{ "short.test", T_MX, 0, M_SHORT, { { 0 } } },
	{ "many.test", T_MX, 0, M_MANY_MX, { { 0 } } },
	{ "a.test", T_A, 0, M_ANSWER, { { T_A, 60, 0, "192.0.2.1", 0 },
	    { T_A, 30, 0, "192.0.2.2", 0 } } },
	{ "a.test", T_AAAA, 0, M_ANSWER, { { T_AAAA, 45, 0, "2001:db8::1",
	    0 } } },
	{ "cname.test", T_A, 0, M_ANSWER, { { T_CNAME, 10, 0, "a.test", 0 },
	    { T_A, 60, 0, "192.0.2.1", "a.test" } } },
	{ "nomx.test", T_A, 0, M_ANSWER, { { 0 } } },
	/* PTR (dns_query_ptr) */
	{ "1.2.0.192.in-addr.arpa", T_PTR, 0, M_ANSWER, { { T_PTR, 60, 0,
	    "Host.Example.", 0 } } },
	{ "2.2.0.192.in-addr.arpa", T_PTR, 0, M_ANSWER, { { T_PTR, 60, 0,
	    "bad host.example", 0 } } },
	{ "3.2.0.192.in-addr.arpa", T_PTR, 0, M_ANSWER, { { T_PTR, 60, 0,
	    "192.0.2.3", 0 } } },
	{ "5.2.0.192.in-addr.arpa", T_PTR, 0, M_DROP, { { 0 } } },
	{ "6.2.0.192.in-addr.arpa", T_PTR, 2, M_ANSWER, { { 0 } } },
	{ "7.2.0.192.in-addr.arpa", T_PTR, 0, M_TRUNC_RDATA, { { 0 } } },
	{ "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2."
	    "ip6.arpa", T_PTR, 0, M_ANSWER, { { T_PTR, 60, 0, "v6.example",
	    0 } } },
};

static struct event_base *base;
static int srv_fd, srv_queries;

/* ---- the responder ---- */

struct pkt {
	unsigned char b[2048];
	size_t n;
};

static void
put(struct pkt *p, const void *d, size_t n)
{
	if (p->n + n <= sizeof(p->b)) {
		memcpy(p->b + p->n, d, n);
		p->n += n;
	} else {
		p->n = sizeof(p->b) + 1;	/* overflow: send nothing */
	}
}

static void
put16(struct pkt *p, unsigned v)
{
	unsigned char b[2] = { (unsigned char)(v >> 8), (unsigned char)v };
	put(p, b, 2);
}

static void
put32(struct pkt *p, unsigned v)
{
	put16(p, v >> 16);
	put16(p, v & 0xffff);
}

/* Text name to labels; a label may hold any byte but a dot. */
static void
put_name(struct pkt *p, const char *name)
{
	while (*name != '\0') {
		size_t n = strcspn(name, ".");
		unsigned char len = (unsigned char)n;
		put(p, &len, 1);
		put(p, name, n);
		name += n;
		if (*name == '.')
			name++;
	}
	put(p, "", 1);
}

static void
put_rr(struct pkt *p, const struct rr *rr)
{
	unsigned char addr[16];
	size_t at;

	if (rr->owner == NULL)
		put16(p, 0xc00c);	/* pointer to the question name */
	else
		put_name(p, rr->owner);
	put16(p, (unsigned)rr->type);
	put16(p, 1);
	put32(p, rr->ttl);
	at = p->n;
	put16(p, 0);			/* rdlength, filled in below */
	if (rr->type == T_A) {
		inet_pton(AF_INET, rr->data, addr);
		put(p, addr, 4);
	} else if (rr->type == T_AAAA) {
		inet_pton(AF_INET6, rr->data, addr);
		put(p, addr, 16);
	} else {
		if (rr->type == T_MX)
			put16(p, (unsigned)rr->pref);
		put_name(p, rr->data);
	}
	if (p->n <= sizeof(p->b)) {
		p->b[at] = (unsigned char)((p->n - at - 2) >> 8);
		p->b[at + 1] = (unsigned char)(p->n - at - 2);
	}
}

static const struct canned *
find_canned(const char *name, int qtype)
{
	size_t i;

	for (i = 0; i < sizeof(canned) / sizeof(canned[0]); i++)
		if (strcasecmp(canned[i].name, name) == 0 &&
		    canned[i].qtype == qtype)
			return &canned[i];
	return NULL;
}

/* The question's name as text, and where the question ends. */
static size_t
read_question(const unsigned char *q, size_t n, char *name, size_t nlen)
{
	size_t i = 12, o = 0;

	while (i < n && q[i] != 0) {
		size_t l = q[i++];
		if (i + l > n || o + l + 1 >= nlen)
			return 0;
		if (o > 0)
			name[o++] = '.';
		memcpy(name + o, q + i, l);
		o += l;
		i += l;
	}
	name[o] = '\0';
	return i + 5 <= n ? i + 5 : 0;	/* the 0, qtype, qclass */
}

static void
build_answer(struct pkt *p, const unsigned char *q, size_t qend,
    const struct canned *c)
{
	int i, an = 0;
	char host[32];

	put(p, q, 2);					/* id */
	put16(p, 0x8180 | (c ? (unsigned)c->rcode : 3));/* QR RD RA */
	put16(p, 1);
	put16(p, 0);	/* ancount: fixed below */
	put32(p, 0);
	put(p, q + 12, qend - 12);			/* question */
	if (c != NULL && c->mode == M_MANY_MX) {
		for (an = 0; an < 40; an++) {
			struct rr rr = { T_MX, 600, 40 - an, host, 0 };
			snprintf(host, sizeof(host), "m%d.test", 40 - an);
			put_rr(p, &rr);
		}
	}
	for (i = 0; c != NULL && c->mode != M_MANY_MX && i < 3 &&
	    c->rrs[i].type != 0; i++, an++)
		put_rr(p, &c->rrs[i]);
	if (c != NULL && c->mode == M_TRUNC_RDATA) {
		struct rr rr = { T_MX, 60, 10, "cut.test", 0 };
		put_rr(p, &rr);
		an = 1;
		p->n -= 5;	/* rdata runs past the end */
	}
	p->b[6] = (unsigned char)(an >> 8);
	p->b[7] = (unsigned char)an;
}

static void
on_query(evutil_socket_t fd, short what, void *arg)
{
	unsigned char q[1024];
	struct sockaddr_storage from;
	socklen_t flen = sizeof(from);
	const struct canned *c;
	struct pkt p = { .n = 0 };
	char name[256];
	ssize_t n;
	size_t qend;

	(void)what;
	(void)arg;
	if ((n = recvfrom(fd, q, sizeof(q), 0, (struct sockaddr *)&from,
	    &flen)) < 12)
		return;
	srv_queries++;
	if ((qend = read_question(q, (size_t)n, name, sizeof(name))) == 0)
		return;
	c = find_canned(name, q[qend - 4] << 8 | q[qend - 3]);
	if (c != NULL && c->mode == M_DROP)
		return;
	if (c != NULL && c->mode == M_SHORT) {
		sendto(fd, q, 5, 0, (struct sockaddr *)&from, flen);
		return;
	}
	/* A known name without records of this type: its rcode, no
	 * records (NODATA for names that exist). Unknown: NXDOMAIN. */
	if (c == NULL) {
		static struct canned empty;
		size_t i;
		for (i = 0; i < sizeof(canned) / sizeof(canned[0]); i++)
			if (strcasecmp(canned[i].name, name) == 0) {
				empty.rcode = canned[i].rcode;
				c = &empty;
			}
	}
	build_answer(&p, q, qend, c);
	if (p.n <= sizeof(p.b))
		sendto(fd, p.b, p.n, 0, (struct sockaddr *)&from, flen);
}

/* ---- the client side ---- */

static struct {
	int calls;
	enum dns_status status;
	unsigned ttl;
	int n;
	char why[64];
	struct dns_mx mx[DNS_MAX_MX];
	char addrs[DNS_MAX_ADDRS][64];
	char name[DNS_NAME_MAX + 1];
} got;

static void
on_mx(const struct dns_mx_reply *r, void *arg)
{
	int i;

	(void)arg;
	got.calls++;
	got.status = r->status;
	got.ttl = r->ttl;
	got.n = r->n;
	CHECK(r->why != NULL);
	snprintf(got.why, sizeof(got.why), "%s", r->why);
	for (i = 0; i < r->n && i < DNS_MAX_MX; i++)
		got.mx[i] = r->mx[i];
	event_base_loopbreak(base);
}

static void
on_addr(const struct dns_addr_reply *r, void *arg)
{
	int i;

	(void)arg;
	got.calls++;
	got.status = r->status;
	got.ttl = r->ttl;
	got.n = r->n;
	snprintf(got.why, sizeof(got.why), "%s", r->why);
	for (i = 0; i < r->n; i++) {
		const struct sockaddr_storage *ss = &r->addrs[i];
		const void *a = ss->ss_family == AF_INET ?
		    (const void *)&((const struct sockaddr_in *)ss)->sin_addr :
		    (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr;
		inet_ntop(ss->ss_family, a, got.addrs[i], sizeof(got.addrs[i]));
	}
	event_base_loopbreak(base);
}

static void
on_name(const struct dns_name_reply *r, void *arg)
{
	(void)arg;
	got.calls++;
	got.status = r->status;
	CHECK(r->why != NULL);
	CHECK((r->status == DNS_OK) == (r->name != NULL));
	snprintf(got.name, sizeof(got.name), "%s", r->name ? r->name : "");
	event_base_loopbreak(base);
}

/* Run until a callback or 5 s. */
static void
wait_reply(void)
{
	struct timeval tv = { 5, 0 };

	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
}

/* 192.0.2.5: its PTR query is never answered; an AF_UNIX address. */
static struct sockaddr_in drop_ptr = { .sin_family = AF_INET,
    .sin_addr = { .s_addr = 0 } };
static struct sockaddr_storage unix_sa = { .ss_family = AF_UNIX };

static void
query_mx(const char *name)
{
	memset(&got, 0, sizeof(got));
	CHECK(dns_query_mx(name, on_mx, NULL) != NULL);
	CHECK_INT(got.calls, 0);	/* never from inside the call */
	wait_reply();
	CHECK_INT(got.calls, 1);
}

static void
query_addr(const char *name, int family)
{
	memset(&got, 0, sizeof(got));
	CHECK(dns_query_addr(name, family, on_addr, NULL) != NULL);
	CHECK_INT(got.calls, 0);
	wait_reply();
	CHECK_INT(got.calls, 1);
}

static void
query_ptr(const char *addr)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, addr, &((struct sockaddr_in *)&ss)->sin_addr))
		ss.ss_family = AF_INET;
	else if (inet_pton(AF_INET6, addr,
	    &((struct sockaddr_in6 *)&ss)->sin6_addr))
		ss.ss_family = AF_INET6;
	else
		ss.ss_family = AF_UNIX;
	memset(&got, 0, sizeof(got));
	CHECK(dns_query_ptr((struct sockaddr *)&ss, on_name, NULL) != NULL);
	CHECK_INT(got.calls, 0);
	wait_reply();
	CHECK_INT(got.calls, 1);
}

static void
query_host(const char *name, int family)
{
	memset(&got, 0, sizeof(got));
	CHECK(dns_query_host(name, family, on_addr, NULL) != NULL);
	CHECK_INT(got.calls, 0);
	wait_reply();
	CHECK_INT(got.calls, 1);
}

TEST(test_valid_hostname)
{
	static const struct { const char *name; int ok; } t[] = {
		{ "example.org", 1 }, { "example.org.", 1 }, { "a", 1 },
		{ "_dmarc.x-y.example", 1 }, { "", 0 }, { ".", 0 },
		{ "a..b", 0 }, { ".a", 0 }, { "a b", 0 }, { "a\\.b", 0 },
		{ "exa\xc3\xa9mple.org", 0 }, { "a..", 0 },
	};
	char name[300];
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		CHECK_INT(dns_valid_hostname(t[i].name), t[i].ok);
	/* Labels: 63 at the bound, 64 past it. */
	memset(name, 'a', 63);
	strcpy(name + 63, ".org");
	CHECK_INT(dns_valid_hostname(name), 1);
	memset(name, 'a', 64);
	strcpy(name + 64, ".org");
	CHECK_INT(dns_valid_hostname(name), 0);
	/* Names: 253 at the bound (plus a dot), 254 past it. */
	for (i = 0; i < 253; i++)
		name[i] = (i % 2) ? '.' : 'a';
	name[253] = '\0';
	CHECK_INT(dns_valid_hostname(name), 1);
	strcpy(name + 253, ".");
	CHECK_INT(dns_valid_hostname(name), 1);
	strcpy(name + 253, "a");
	CHECK_INT(dns_valid_hostname(name), 0);
}

TEST(test_mx)
{
	query_mx("mx.test");
	CHECK_INT(got.status, DNS_OK);
	CHECK_INT(got.n, 3);
	CHECK_INT(got.ttl, 100);
	CHECK_INT(got.mx[0].pref, 10);
	CHECK_STR(got.mx[0].host, "mx1.test");
	CHECK_STR(got.mx[1].host, "mx2.test");	/* stable among equals */
	CHECK_STR(got.mx[2].host, "mx3.test");
	query_mx("MX.TEST.");
	CHECK_INT(got.status, DNS_OK);
	query_mx("many.test");
	CHECK_INT(got.status, DNS_OK);
	CHECK_INT(got.n, DNS_MAX_MX);
	CHECK_INT(got.mx[0].pref, 1);
	CHECK_STR(got.mx[0].host, "m1.test");
	CHECK_INT(got.mx[DNS_MAX_MX - 1].pref, DNS_MAX_MX);
	query_mx("mixed.test");		/* the bad name is dropped */
	CHECK_INT(got.status, DNS_OK);
	CHECK_INT(got.n, 1);
	CHECK_STR(got.mx[0].host, "good.test");
}

TEST(test_mx_failures)
{
	static const struct { const char *name; enum dns_status st; } t[] = {
		{ "nx.test", DNS_NXDOMAIN },
		{ "nomx.test", DNS_NODATA },
		{ "null.test", DNS_NULLMX },
		{ "servfail.test", DNS_TEMPFAIL },
		{ "refused.test", DNS_TEMPFAIL },
		{ "badmx.test", DNS_MALFORMED },
		{ "garbage.test", DNS_MALFORMED },
		{ "drop.test", DNS_TEMPFAIL },
		{ "short.test", DNS_TEMPFAIL },
		{ "bad name.test", DNS_MALFORMED },
		{ "a..test", DNS_MALFORMED },
		{ "", DNS_MALFORMED },
	};
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		query_mx(t[i].name);
		if (got.status != t[i].st)
			fprintf(stderr, "%s: %s\n", t[i].name,
			    dns_status_str(got.status));
		CHECK_INT(got.status, t[i].st);
		CHECK_INT(got.n, 0);
		CHECK_INT(got.ttl, t[i].st == DNS_NULLMX ? 3600 : 0);
	}
}

TEST(test_addr)
{
	query_addr("a.test", AF_INET);
	CHECK_INT(got.status, DNS_OK);
	CHECK_INT(got.n, 2);
	CHECK_STR(got.addrs[0], "192.0.2.1");
	CHECK_STR(got.addrs[1], "192.0.2.2");
	CHECK_INT(got.ttl, 30);
	query_addr("a.test", AF_INET6);
	CHECK_INT(got.status, DNS_OK);
	CHECK_INT(got.n, 1);
	CHECK_STR(got.addrs[0], "2001:db8::1");
	CHECK_INT(got.ttl, 45);
	query_addr("cname.test", AF_INET);
	CHECK_INT(got.status, DNS_OK);
	CHECK_INT(got.n, 1);
	CHECK_STR(got.addrs[0], "192.0.2.1");
	CHECK_INT(got.ttl, 10);		/* the CNAME's TTL bounds it */
	query_addr("nomx.test", AF_INET);
	CHECK_INT(got.status, DNS_NODATA);
	query_addr("nx.test", AF_INET6);
	CHECK_INT(got.status, DNS_NXDOMAIN);
	query_addr("drop.test", AF_INET);	/* no A canned: NODATA */
	CHECK_INT(got.status, DNS_NODATA);
}

/* Good answers come from the cache within their TTL; failures do not;
 * a full cache takes nothing more; size 0 turns it off. */
TEST(test_cache)
{
	int before;

	dns_cache_flush();
	before = srv_queries;
	query_mx("mx.test");
	CHECK_INT(srv_queries, before + 1);
	query_mx("Mx.Test.");		/* same key */
	CHECK_INT(srv_queries, before + 1);
	CHECK_STR(got.why, "ok (cached)");
	CHECK_INT(got.n, 3);
	CHECK_STR(got.mx[0].host, "mx1.test");
	CHECK(got.ttl <= 100 && got.ttl >= 99);
	query_addr("a.test", AF_INET);
	query_addr("a.test", AF_INET6);	/* another type: asked */
	CHECK_INT(srv_queries, before + 3);
	query_addr("a.test", AF_INET6);
	CHECK_INT(srv_queries, before + 3);
	CHECK_STR(got.addrs[0], "2001:db8::1");
	query_mx("null.test");
	query_mx("null.test");
	CHECK_INT(got.status, DNS_NULLMX);
	CHECK_INT(srv_queries, before + 4);
	query_mx("nx.test");
	query_mx("nx.test");		/* failures are asked again */
	CHECK_INT(srv_queries, before + 6);
	dns_set_cache_size(1);
	query_mx("mx.test");
	query_addr("a.test", AF_INET);	/* cache full: not kept */
	query_mx("mx.test");
	query_addr("a.test", AF_INET);
	CHECK_INT(srv_queries, before + 9);
	dns_set_cache_size(0);
	query_mx("mx.test");
	query_mx("mx.test");
	CHECK_INT(srv_queries, before + 11);
	dns_set_cache_size(DNS_CACHE_MAX);
}

TEST(test_reverse_name)
{
	static const struct { int family; const char *addr, *rev; } t[] = {
		{ AF_INET, "192.0.2.1", "1.2.0.192.in-addr.arpa" },
		{ AF_INET, "255.255.255.255", "255.255.255.255.in-addr.arpa" },
		{ AF_INET, "0.0.0.0", "0.0.0.0.in-addr.arpa" },
		{ AF_INET6, "::ffff:192.0.2.1", "1.2.0.192.in-addr.arpa" },
		{ AF_INET6, "2001:db8::1", "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0."
		    "0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa" },
		{ AF_INET6, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", "e.f.f.f."
		    "f.f.f.f.f.f.f.f.f.f.f.f.f.f.f.f.f.f.f.f.f.f.f.f.f.f.f.f."
		    "ip6.arpa" },
	};
	struct sockaddr_storage ss;
	char out[DNS_REVERSE_MAX + 8];
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		memset(&ss, 0, sizeof(ss));
		ss.ss_family = (sa_family_t)t[i].family;
		inet_pton(t[i].family, t[i].addr, t[i].family == AF_INET ?
		    (void *)&((struct sockaddr_in *)&ss)->sin_addr :
		    (void *)&((struct sockaddr_in6 *)&ss)->sin6_addr);
		CHECK_INT(dns_reverse_name((struct sockaddr *)&ss, out,
		    sizeof(out)), 0);
		CHECK_STR(out, t[i].rev);
	}
	/* The IPv6 name fills DNS_REVERSE_MAX exactly; one byte less fails. */
	CHECK_INT((int)strlen(out), DNS_REVERSE_MAX - 1);
	CHECK_INT(dns_reverse_name((struct sockaddr *)&ss, out,
	    DNS_REVERSE_MAX), 0);
	CHECK_INT(dns_reverse_name((struct sockaddr *)&ss, out,
	    DNS_REVERSE_MAX - 1), -1);
	ss.ss_family = AF_UNIX;
	CHECK_INT(dns_reverse_name((struct sockaddr *)&ss, out, sizeof(out)),
	    -1);
}

/* Names of addresses: good, lower-cased, bad names and failures. */
TEST(test_ptr)
{
	static const struct { const char *addr, *name; enum dns_status st; }
	    t[] = {
		{ "192.0.2.1", "host.example", DNS_OK },
		{ "::ffff:192.0.2.1", "host.example", DNS_OK },
		{ "2001:db8::1", "v6.example", DNS_OK },
		{ "192.0.2.2", "", DNS_MALFORMED },	/* "bad host" */
		{ "192.0.2.3", "", DNS_MALFORMED },	/* an address */
		{ "192.0.2.4", "", DNS_NXDOMAIN },
		/* c-ares 1.18's gethostbyaddr moves on to its next source
		 * after a server failure and ends with "not found": a
		 * timeout or SERVFAIL reads as NXDOMAIN (dns.h). */
		{ "192.0.2.5", "", DNS_NXDOMAIN },	/* no answer */
		{ "192.0.2.6", "", DNS_NXDOMAIN },	/* SERVFAIL */
		{ "192.0.2.7", "", DNS_MALFORMED },	/* cut short */
		{ "unix", "", DNS_MALFORMED },
	};
	size_t i;
	int before;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		query_ptr(t[i].addr);
		if (got.status != t[i].st)
			fprintf(stderr, "%s: %s\n", t[i].addr,
			    dns_status_str(got.status));
		CHECK_INT(got.status, t[i].st);
		CHECK_STR(got.name, t[i].name);
	}
	/* /etc/hosts first: no query for 127.0.0.1. */
	before = srv_queries;
	query_ptr("127.0.0.1");
	CHECK_INT(got.status, DNS_OK);
	CHECK_STR(got.name, "localhost");
	CHECK_INT(srv_queries, before);
}

TEST(test_host)
{
	int before;

	query_host("A.test.", AF_INET);
	CHECK_INT(got.status, DNS_OK);
	CHECK_INT(got.n, 2);
	CHECK_STR(got.addrs[0], "192.0.2.1");
	CHECK_STR(got.addrs[1], "192.0.2.2");
	query_host("a.test", AF_INET6);
	CHECK_INT(got.status, DNS_OK);
	CHECK_INT(got.n, 1);
	CHECK_STR(got.addrs[0], "2001:db8::1");
	query_host("nx.test", AF_INET);
	CHECK_INT(got.status, DNS_NXDOMAIN);
	query_host("bad name", AF_INET);
	CHECK_INT(got.status, DNS_MALFORMED);
	before = srv_queries;
	query_host("localhost", AF_INET);
	CHECK_INT(got.status, DNS_OK);
	CHECK_STR(got.addrs[0], "127.0.0.1");
	CHECK_INT(srv_queries, before);
}

TEST(test_cancel)
{
	struct dns_query *q;
	struct timeval tv = { 0, 800000 };

	memset(&got, 0, sizeof(got));
	q = dns_query_mx("drop.test", on_mx, NULL);
	dns_cancel(q);
	q = dns_query_mx("bad name", on_mx, NULL);	/* deferred */
	dns_cancel(q);
	q = dns_query_mx("mx.test", on_mx, NULL);
	dns_cancel(q);
	q = dns_query_ptr((struct sockaddr *)&drop_ptr, on_name, NULL);
	dns_cancel(q);
	q = dns_query_ptr((struct sockaddr *)&unix_sa, on_name, NULL);
	dns_cancel(q);				/* deferred */
	q = dns_query_host("localhost", AF_INET, on_addr, NULL);
	dns_cancel(q);				/* /etc/hosts: deferred */
	q = dns_query_host("drop.test", AF_INET, on_addr, NULL);
	dns_cancel(q);
	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
	CHECK_INT(got.calls, 0);
}

static char good_server[64], dead_server[64];

/* SIGHUP's servers: new lookups go to them at once; the running ones end
 * at the old server (its channel is destroyed after them); a bad list
 * keeps the old settings; the cache is emptied either way. */
TEST(test_reload)
{
	char *good[] = { good_server, NULL }, *dead[] = { dead_server, NULL };
	char *bad[] = { "not-an-address", NULL };
	int before;

	query_mx("mx.test");
	before = srv_queries;
	dns_reload(bad);
	query_mx("mx.test");		/* the old server, asked again */
	CHECK_INT(got.status, DNS_OK);
	CHECK_INT(srv_queries, before + 1);
	memset(&got, 0, sizeof(got));
	CHECK(dns_query_mx("drop.test", on_mx, NULL) != NULL);
	dns_reload(dead);		/* waits for drop.test */
	wait_reply();
	CHECK_INT(got.calls, 1);
	CHECK_INT(got.status, DNS_TEMPFAIL);
	before = srv_queries;
	query_mx("mx.test");		/* nothing listens there: refused */
	CHECK_INT(got.status, DNS_TEMPFAIL);
	CHECK_INT(srv_queries, before);
	dns_reload(good);
	query_mx("mx.test");
	CHECK_INT(got.status, DNS_OK);
	CHECK_INT(srv_queries, before + 1);

	/* A lookup hanging at the old server does not hold the new one up:
	 * the query after the reload is refused by the dead server (it
	 * would have been answered by the old, good one) before drop.test
	 * times out; and a second reload meanwhile waits for the first's
	 * old channel, then applies. */
	CHECK(dns_query_mx("drop.test", on_mx, NULL) != NULL);
	event_base_loop(base, EVLOOP_NONBLOCK);	/* sent */
	dns_reload(dead);
	before = srv_queries;
	CHECK_INT(before > 0, 1);
	query_mx("mx.test");
	CHECK_INT(got.status, DNS_TEMPFAIL);
	CHECK_INT(srv_queries, before);
	dns_reload(good);		/* the old channel still drains */
	wait_reply();			/* drop.test's timeout */
	CHECK_INT(got.calls, 2);
	CHECK_INT(got.status, DNS_TEMPFAIL);
	event_base_loop(base, EVLOOP_NONBLOCK);	/* the old channel goes */
	query_mx("mx.test");
	CHECK_INT(got.status, DNS_OK);
	CHECK_INT(srv_queries, before + 1);
}

int
main(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	struct event *ev;
	char server[64], *servers[] = { server, NULL };
	char *bad[] = { "not-an-address", NULL };

	log_init("test_dns", 1, LOG_LVL_WARN);
	base = event_base_new();
	srv_fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
	if (bind(srv_fd, (struct sockaddr *)&sin, len) == -1 ||
	    getsockname(srv_fd, (struct sockaddr *)&sin, &len) == -1)
		return 1;
	ev = event_new(base, srv_fd, EV_READ | EV_PERSIST, on_query, NULL);
	event_add(ev, NULL);
	snprintf(server, sizeof(server), "127.0.0.1:%d", ntohs(sin.sin_port));
	snprintf(good_server, sizeof(good_server), "%s", server);
	{	/* a port nothing listens on */
		int fd = socket(AF_INET, SOCK_DGRAM, 0);
		struct sockaddr_in d = { .sin_family = AF_INET };
		socklen_t dl = sizeof(d);

		inet_pton(AF_INET, "127.0.0.1", &d.sin_addr);
		if (fd < 0 || bind(fd, (struct sockaddr *)&d, dl) == -1 ||
		    getsockname(fd, (struct sockaddr *)&d, &dl) == -1)
			return 1;
		snprintf(dead_server, sizeof(dead_server), "127.0.0.1:%d", ntohs(d.sin_port));
		close(fd);
	}

	inet_pton(AF_INET, "192.0.2.5", &drop_ptr.sin_addr);
	dns_set_timeouts(300, 1);
	CHECK(dns_init(base, bad) == -1);
	/* Not started: every kind of lookup fails for now, from the loop. */
	query_mx("mx.test");
	CHECK_INT(got.status, DNS_TEMPFAIL);
	CHECK_STR(got.why, "the resolver did not start");
	query_addr("a.test", AF_INET);
	CHECK_INT(got.status, DNS_TEMPFAIL);
	query_ptr("192.0.2.1");
	CHECK_INT(got.status, DNS_TEMPFAIL);
	query_host("a.test", AF_INET);
	CHECK_INT(got.status, DNS_TEMPFAIL);
	CHECK_INT(srv_queries, 0);
	dns_reload(servers);	/* now it starts */
	RUN(test_valid_hostname);
	RUN(test_mx);
	RUN(test_mx_failures);
	RUN(test_addr);
	RUN(test_cache);
	RUN(test_reverse_name);
	RUN(test_ptr);
	RUN(test_host);
	RUN(test_cancel);
	RUN(test_reload);
	/* Lookups still running at dns_free: dropped, no callback. */
	memset(&got, 0, sizeof(got));
	dns_query_mx("drop.test", on_mx, NULL);
	dns_query_mx("bad name", on_mx, NULL);
	dns_query_ptr((struct sockaddr *)&drop_ptr, on_name, NULL);
	dns_query_host("localhost", AF_INET, on_addr, NULL);
	dns_free();
	CHECK_INT(got.calls, 0);
	CHECK(srv_queries > 0);
	event_free(ev);
	close(srv_fd);
	event_base_free(base);
	return unit_done("test_dns");
}
