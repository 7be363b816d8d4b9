/*
 * DNS lookups on c-ares, driven by the daemon's libevent loop: c-ares's
 * sockets are watched by libevent events and its timeouts run as a
 * libevent timer, so no daemon ever blocks on DNS. Used by queued's remote
 * delivery (MX, then A/AAAA of each exchanger) and by smtpd's client
 * name (dns_query_ptr, then dns_query_host to confirm it).
 *
 * One resolver per process (dns_init once, after the event base exists).
 * Answers come through callbacks, always from the event loop and never
 * from inside the dns_query_*() call. The reply a callback gets is
 * borrowed: it and everything it points to lives only until the callback
 * returns; copy what you keep.
 *
 * Results are whole lookups (CNAME chains are followed by the recursive
 * server and c-ares); each reply carries the smallest TTL of the answer
 * records. Good answers (records, null MX) are cached for that TTL (at
 * most a day; a cached reply says "ok (cached)" and the TTL left);
 * failures are not cached.
 */
#ifndef HERMOD_DNS_H
#define HERMOD_DNS_H

#include <sys/socket.h>
#include <event2/event.h>

#define DNS_NAME_MAX	253	/* RFC 1035 §2.3.4, text form without dot */
#define DNS_MAX_MX	32	/* exchangers kept per domain, best first */
#define DNS_MAX_ADDRS	32	/* addresses kept per name and family */
#define DNS_CACHE_MAX	10000	/* cached answers (default) */

enum dns_status {
	DNS_OK,
	DNS_NXDOMAIN,	/* the name does not exist: bounce 5.1.2 */
	DNS_NODATA,	/* the name exists without records of this type:
			 * for MX, use the domain's own address (implicit MX) */
	DNS_NULLMX,	/* MX "0 ." (RFC 7505): the domain takes no mail,
			 * bounce 5.1.10 */
	DNS_TEMPFAIL,	/* SERVFAIL, REFUSED, timeout, no server: retry (4.4.3) */
	DNS_MALFORMED,	/* an answer we cannot use (garbage, bad names, a
			 * query name that is not a valid domain) */
};

/* "ok", "NXDOMAIN", ... for log lines. */
const char *dns_status_str(enum dns_status s);

struct dns_mx {
	unsigned short pref;
	char host[DNS_NAME_MAX + 1];	/* lower case, no trailing dot */
};

struct dns_mx_reply {
	enum dns_status status;
	const char *why;	/* human detail for logs, never NULL */
	unsigned int ttl;	/* seconds; 0 unless DNS_OK or DNS_NULLMX */
	int n;			/* DNS_OK: 1..DNS_MAX_MX */
	const struct dns_mx *mx;/* sorted by preference (stable); equal
				 * preferences are for the caller to shuffle */
};

struct dns_addr_reply {
	enum dns_status status;
	const char *why;
	unsigned int ttl;
	int n;			/* DNS_OK: 1..DNS_MAX_ADDRS */
	const struct sockaddr_storage *addrs;	/* port 0: caller sets it */
};

/* A host name found for an address (dns_query_ptr). */
struct dns_name_reply {
	enum dns_status status;
	const char *why;
	const char *name;	/* DNS_OK: a valid host name, lower case, no
				 * trailing dot; NULL otherwise */
};

typedef void (*dns_mx_cb)(const struct dns_mx_reply *r, void *arg);
typedef void (*dns_addr_cb)(const struct dns_addr_reply *r, void *arg);
typedef void (*dns_name_cb)(const struct dns_name_reply *r, void *arg);

struct dns_query;

/*
 * Start the resolver on base. servers: conf dns_servers, a NULL-terminated
 * list of IP[:PORT] ([IPV6]:PORT for an IPv6 server with a port); NULL or
 * empty: /etc/resolv.conf. 0, or -1 with a log line; after a failed
 * start every lookup answers DNS_TEMPFAIL ("the resolver did not start")
 * until dns_reload() starts it.
 */
int dns_init(struct event_base *base, char *const *servers);

/*
 * SIGHUP: a new resolver channel with these servers (as dns_init's), or
 * with /etc/resolv.conf read again; the cache is emptied. c-ares 1.18
 * takes no new servers while lookups run and never re-reads
 * resolv.conf, so the channel is replaced at once: lookups started from
 * now on use the new one, and the old one is destroyed (from the loop)
 * when the lookups it holds have ended. A reload while an old channel
 * still drains applies when it is gone. A bad list keeps the old
 * settings (logged). A resolver whose dns_init failed is started (or
 * not, logged) now.
 */
void dns_reload(char *const *servers);

/* Per-try timeout and tries (before dns_init; defaults 5000 ms, 2 tries,
 * like resolv.conf's). Tests use short ones. */
void dns_set_timeouts(int timeout_ms, int tries);

/* Cache size in answers (0: no cache); empties the cache. */
void dns_set_cache_size(int entries);
/* Forget every cached answer (SIGHUP, tests). */
void dns_cache_flush(void);

/*
 * Stop the resolver. Lookups still running are dropped without their
 * callbacks being called.
 */
void dns_free(void);

/*
 * Look up MX records / addresses of one family (AF_INET: A, AF_INET6:
 * AAAA) of `name` (absolute, with or without a trailing dot). The handle
 * is valid until the callback has run; dns_cancel() before that drops the
 * lookup and its callback never runs.
 */
struct dns_query *dns_query_mx(const char *name, dns_mx_cb cb, void *arg);
struct dns_query *dns_query_addr(const char *name, int family,
    dns_addr_cb cb, void *arg);
void dns_cancel(struct dns_query *q);

/*
 * Host-style lookups (lib/dns_host.c), for smtpd's client name: like the
 * system's resolver (getnameinfo, getaddrinfo), /etc/hosts is read first,
 * then DNS is asked (c-ares's ares_gethostbyaddr/ares_gethostbyname with
 * resolv.conf's "lookup" order, default files then DNS), so that
 * 127.0.0.1 is "localhost" without a query. Not cached (the hosts file
 * and the server's cache do that); same handle rules as above.
 *
 * dns_query_ptr: the name of sa (AF_INET, AF_INET6; an IPv4-mapped IPv6
 * address is looked up as IPv4). Only the first name of the answer is
 * used (as getnameinfo does); a name that is not a valid host name is
 * DNS_MALFORMED. c-ares (1.18) reports a server failure or timeout in
 * these lookups as "not found" (it moves on to its next source), so
 * DNS_TEMPFAIL is rare here. dns_query_host: the addresses of `name` of one family,
 * TTL 0; for forward-confirming the name dns_query_ptr gave.
 */
struct dns_query *dns_query_ptr(const struct sockaddr *sa, dns_name_cb cb,
    void *arg);
struct dns_query *dns_query_host(const char *name, int family,
    dns_addr_cb cb, void *arg);

/* "4.3.2.1.in-addr.arpa" or the 32 nibbles of ip6.arpa (RFC 3596 §2.5)
 * for sa (IPv4-mapped: in-addr.arpa). 0, or -1 (other family, out too
 * small: DNS_REVERSE_MAX bytes are enough). */
#define DNS_REVERSE_MAX	73
int dns_reverse_name(const struct sockaddr *sa, char *out, size_t outsz);

/* Is `name` a syntactically valid host name (letters, digits, hyphen,
 * underscore, dots; labels 1..63; total <= DNS_NAME_MAX)? */
int dns_valid_hostname(const char *name);

#endif
