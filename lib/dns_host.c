/*
 * Host-style lookups for smtpd's client name (dns.h): the name of an
 * address and the addresses of a name, through c-ares's hostent functions,
 * which read /etc/hosts before asking DNS (the order of resolv.conf's
 * "lookup", default files then DNS), as the system resolver Postfix's
 * smtpd uses does. That keeps 127.0.0.1 -> localhost -> 127.0.0.1 an
 * answer without a query, and without a wait when no server answers.
 * Answers go back through dns.c's query records, so cancelling, deferral
 * out of the call and dns_free work as for every other lookup.
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/nameser.h>
#include <ctype.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dns.h"
#include "dns_int.h"
#include "log.h"
#include "xalloc.h"

static const unsigned char v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0xff, 0xff };

/* The address bytes of sa (4 or 16), IPv4-mapped IPv6 as IPv4; 0 for
 * another family. */
static int
addr_bytes(const struct sockaddr *sa, unsigned char *out, int *family)
{
	if (sa->sa_family == AF_INET) {
		memcpy(out, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		*family = AF_INET;
		return 4;
	}
	if (sa->sa_family != AF_INET6)
		return 0;
	memcpy(out, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
	if (memcmp(out, v4mapped, sizeof(v4mapped)) == 0) {
		memmove(out, out + 12, 4);
		*family = AF_INET;
		return 4;
	}
	*family = AF_INET6;
	return 16;
}

int
dns_reverse_name(const struct sockaddr *sa, char *out, size_t outsz)
{
	unsigned char b[16];
	int family, n = addr_bytes(sa, b, &family), r;
	size_t o = 0;

	if (n == 0 || outsz < DNS_REVERSE_MAX)
		return -1;
	if (n == 4) {
		r = snprintf(out, outsz, "%u.%u.%u.%u.in-addr.arpa", b[3], b[2],
		    b[1], b[0]);
		return r > 0 && (size_t)r < outsz ? 0 : -1;
	}
	for (int i = 15; i >= 0; i--) {
		out[o++] = "0123456789abcdef"[b[i] & 0xf];
		out[o++] = '.';
		out[o++] = "0123456789abcdef"[b[i] >> 4];
		out[o++] = '.';
	}
	memcpy(out + o, "ip6.arpa", sizeof("ip6.arpa"));
	return 0;
}

/* A name we may show as the client's: a valid host name whose last
 * label is not all digits (an address in a PTR record is no name). */
static int
usable_name(const char *name)
{
	const char *last;
	size_t len = strlen(name);

	if (!dns_valid_hostname(name))
		return 0;
	if (len > 0 && name[len - 1] == '.')
		len--;
	for (last = name + len; last > name && last[-1] != '.'; last--)
		;
	return strspn(last, "0123456789") < (size_t)(name + len - last);
}

static void
ptr_answer(int status, const struct hostent *h, struct answer *a)
{
	char *name;
	size_t len, i;

	if (status != ARES_SUCCESS) {
		a->status = dns_map_status(status, &a->why);
		return;
	}
	if (h == NULL || h->h_name == NULL || !usable_name(h->h_name)) {
		a->status = DNS_MALFORMED;
		a->why = "the PTR answer is not a valid host name";
		return;
	}
	name = xcalloc(1, DNS_NAME_MAX + 1);
	len = strlen(h->h_name);
	if (h->h_name[len - 1] == '.')
		len--;
	for (i = 0; i < len; i++)
		name[i] = (char)tolower((unsigned char)h->h_name[i]);
	a->status = DNS_OK;
	a->why = "ok";
	a->n = 1;
	a->data = name;
}

static void
addr_answer(int family, int status, const struct hostent *h, struct answer *a)
{
	struct sockaddr_storage *ss;
	int n = 0;

	if (status != ARES_SUCCESS) {
		a->status = dns_map_status(status, &a->why);
		return;
	}
	ss = xcalloc(DNS_MAX_ADDRS, sizeof(*ss));
	for (; h != NULL && h->h_addrtype == family && h->h_addr_list[n] &&
	    n < DNS_MAX_ADDRS; n++) {
		ss[n].ss_family = (sa_family_t)family;
		if (family == AF_INET && h->h_length == 4)
			memcpy(&((struct sockaddr_in *)&ss[n])->sin_addr,
			    h->h_addr_list[n], 4);
		else if (family == AF_INET6 && h->h_length == 16)
			memcpy(&((struct sockaddr_in6 *)&ss[n])->sin6_addr,
			    h->h_addr_list[n], 16);
		else
			break;
	}
	a->data = ss;
	a->n = n;
	a->status = n > 0 ? DNS_OK : DNS_NODATA;
	a->why = n > 0 ? "ok" : "no records of that type";
}

static void
host_done(void *arg, int status, int timeouts, struct hostent *h)
{
	struct dns_query *q = arg;
	struct answer *a;

	(void)timeouts;
	if (status == ARES_EDESTRUCTION || q->cancelled) {
		dns_query_drop(q);
		return;
	}
	a = xcalloc(1, sizeof(*a));
	if (q->type == ns_t_ptr)
		ptr_answer(status, h, a);
	else
		addr_answer(q->type == ns_t_a ? AF_INET : AF_INET6, status, h,
		    a);
	if (a->status != DNS_OK)
		a->n = 0;
	dns_query_finish(q, a);
}

/* A lookup refused before c-ares sees it: answered from the loop. */
static struct dns_query *
fail(struct dns_query *q, enum dns_status st, const char *why)
{
	struct answer *a = xcalloc(1, sizeof(*a));

	a->status = st;
	a->why = why;
	q->state = Q_SUBMITTING;
	dns_query_finish(q, a);
	return q;
}

static struct dns_query *
refuse(struct dns_query *q, const char *why)
{
	return fail(q, DNS_MALFORMED, why);
}

/* dns_init failed: no channel to ask. */
static struct dns_query *
unstarted(struct dns_query *q)
{
	return fail(q, DNS_TEMPFAIL, "the resolver did not start");
}

struct dns_query *
dns_query_ptr(const struct sockaddr *sa, dns_name_cb cb, void *arg)
{
	struct dns_query *q = dns_query_new(ns_t_ptr, arg);
	unsigned char b[16];
	int family, n;

	q->name_cb = cb;
	if ((n = addr_bytes(sa, b, &family)) == 0)
		return refuse(q, "not an IP address");
	if (dns_channel() == NULL)
		return unstarted(q);
	q->state = Q_SUBMITTING;
	ares_gethostbyaddr(dns_channel(), b, n, family, host_done, q);
	if (q->state == Q_SUBMITTING)
		q->state = Q_INFLIGHT;
	dns_rearm();
	return q;
}

struct dns_query *
dns_query_host(const char *name, int family, dns_addr_cb cb, void *arg)
{
	struct dns_query *q;
	char host[DNS_NAME_MAX + 1];
	size_t len = strlen(name);

	if (family != AF_INET && family != AF_INET6)
		fatal("dns_query_host: bad family %d", family);
	q = dns_query_new(family == AF_INET ? ns_t_a : ns_t_aaaa, arg);
	q->addr_cb = cb;
	if (!dns_valid_hostname(name))
		return refuse(q, "not a valid domain name");
	/* Without the trailing dot: /etc/hosts holds names without one. */
	if (name[len - 1] == '.')
		len--;
	memcpy(host, name, len);
	host[len] = '\0';
	if (dns_channel() == NULL)
		return unstarted(q);
	q->state = Q_SUBMITTING;
	ares_gethostbyname(dns_channel(), host, family, host_done, q);
	if (q->state == Q_SUBMITTING)
		q->state = Q_INFLIGHT;
	dns_rearm();
	return q;
}
