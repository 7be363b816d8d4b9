/*
 * Remote delivery internals shared by queued/remote.c (destinations,
 * jobs, SMTP sessions) and queued/remote_route.c (where a destination's
 * mail goes: MX, implicit MX, address literals, relayhost, loop checks).
 */
#ifndef HERMOD_REMOTE_INT_H
#define HERMOD_REMOTE_INT_H

#include <sys/socket.h>

#include "dns.h"

#define ROUTE_MAX_HOSTS	10	/* exchangers looked up per destination */
#define ROUTE_MAX_ADDRS	20	/* addresses tried per session, in order */
#define ROUTE_TEXT_MAX	512

/* One address to try: the exchanger's name and its address (port set). */
struct rhop {
	char host[DNS_NAME_MAX + 1];
	struct sockaddr_storage ss;
};

/*
 * The outcome of routing: n > 0 addresses to try in order, or n == 0 and
 * a reply to give every recipient (code 4xx: defer, 5xx: bounce), with
 * its enhanced status and a text for the log line and the DSN.
 */
struct route {
	int n;
	struct rhop v[ROUTE_MAX_ADDRS];
	int code;
	char dsn[8];
	char text[ROUTE_TEXT_MAX];
};

struct route_query;

/*
 * Route `dest` (a domain, "[192.0.2.1]", "[IPv6:2001:db8::1]" or the
 * relayhost value when `relay` is set). The callback runs once, from the
 * event loop, with a borrowed route; route_cancel() before that drops it.
 */
struct route_query *route_resolve(const char *dest, int relay,
    void (*cb)(const struct route *r, void *arg), void *arg);
void route_cancel(struct route_query *q);

/* "host[addr]:port" for log lines and the Remote-MTA field. */
void rhop_name(const struct rhop *h, char *out, size_t outsz);

/* The destination key of a remote recipient: the relayhost, or the
 * lower-cased domain (an address literal as written). NULL if the
 * address has no usable domain. Caller frees. */
char *remote_dest_of(const char *addr);

/* remote_tls.c */
enum { TLS_NONE, TLS_MAY, TLS_ENCRYPT, TLS_VERIFY };
struct bufferevent;
void remote_tls_init(void);
int remote_tls_level(const char *dest);
const char *tls_level_name(int level);
/* 1 and the credentials if the password map has an entry for dest. */
int remote_sasl_lookup(const char *dest, char *user, size_t usersz,
    char *pass, size_t passsz);
struct bufferevent *remote_tls_wrap(struct bufferevent *plain,
    const char *host, int level);
void remote_tls_describe(struct bufferevent *bev, char *out, size_t outsz);

#endif
