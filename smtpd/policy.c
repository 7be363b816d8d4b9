/*
 * smtpd's policy checks: relay permission (mynetworks now, AUTH later),
 * recipients in local domains looked up at RCPT time (aliases, users,
 * system accounts: the same answer queued and lmtpd give), and the
 * connection limits. The tricks that make a local address relay
 * (user%remote@local, remote!user@local, "user@remote"@local) are relay
 * for an untrusted client, as with Postfix's allow_untrusted_routing=no;
 * source routes are dropped by the path parser before we get here.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#ifndef __unused	/* libbsd's tree.h marks its static functions so */
#define __unused __attribute__((__unused__))
#endif
#include <bsd/sys/tree.h>

#include "alias_expand.h"
#include "conf.h"
#include "local_user.h"
#include "map.h"
#include "policy.h"
#include "xalloc.h"

/* ---- mynetworks ---------------------------------------------------------- */

/* An address as bytes: 4 for IPv4 (also v4-mapped IPv6), 16 for IPv6. */
struct ipkey {
	int len;
	unsigned char b[16];
};

static int
sa_key(const struct sockaddr *sa, struct ipkey *k)
{
	static const unsigned char mapped[12] = { 0,0,0,0,0,0,0,0,0,0,0xff,0xff };

	if (sa->sa_family == AF_INET) {
		k->len = 4;
		memcpy(k->b, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		return 0;
	}
	if (sa->sa_family == AF_INET6) {
		const unsigned char *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;

		if (memcmp(a, mapped, 12) == 0) {
			k->len = 4;
			memcpy(k->b, a + 12, 4);
		} else {
			k->len = 16;
			memcpy(k->b, a, 16);
		}
		return 0;
	}
	return -1;
}

/* "192.0.2.0/24", "[2001:db8::]/32", "2001:db8::/32", "::1", "10.1.2.3".
 * 0 with net and prefix length, or -1 for an entry we cannot read. */
static int
parse_net(const char *item, struct ipkey *net, int *bits)
{
	char tmp[80];
	const char *slash;
	size_t n;

	if (strlen(item) >= sizeof(tmp))
		return -1;
	snprintf(tmp, sizeof(tmp), "%s", item[0] == '[' ? item + 1 : item);
	if ((slash = strchr(tmp, '/')) != NULL)
		tmp[slash - tmp] = '\0';
	n = strlen(tmp);
	if (n > 0 && tmp[n - 1] == ']')
		tmp[n - 1] = '\0';
	if (inet_pton(AF_INET, tmp, net->b) == 1)
		net->len = 4;
	else if (inet_pton(AF_INET6, tmp, net->b) == 1)
		net->len = 16;
	else
		return -1;
	*bits = net->len * 8;
	if (slash != NULL) {
		char *end;
		long v = strtol(item + (slash - tmp) + (item[0] == '[') + 1, &end, 10);

		if (*end != '\0' || v < 0 || v > *bits)
			return -1;
		*bits = (int)v;
	}
	return 0;
}

static int
net_match(const struct ipkey *a, const struct ipkey *net, int bits)
{
	int full = bits / 8, rest = bits % 8;

	if (a->len != net->len || memcmp(a->b, net->b, (size_t)full) != 0)
		return 0;
	if (rest == 0)
		return 1;
	unsigned char mask = (unsigned char)(0xff << (8 - rest));

	return (a->b[full] & mask) == (net->b[full] & mask);
}

int
policy_trusted(const struct sockaddr *sa)
{
	char *const *list = conf_list(C_mynetworks);
	struct ipkey a, net;
	int bits;

	if (sa_key(sa, &a) != 0)
		return 0;
	for (; list != NULL && *list != NULL; list++)
		if (parse_net(*list, &net, &bits) == 0 && net_match(&a, &net, bits))
			return 1;
	return 0;
}

/* ---- recipients ---------------------------------------------------------- */

int
policy_routing_trick(const char *local, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (local[i] == '%' || local[i] == '!' || local[i] == '@')
			return 1;
	return 0;
}

static int
is_postmaster(const char *local, size_t len)
{
	return len == 10 && strncasecmp(local, "postmaster", 10) == 0;
}

static int
deny(char *reply, size_t sz, const char *addr, const char *fmt)
{
	snprintf(reply, sz, fmt, addr);
	return -1;
}

int
policy_rcpt(const char *addr, int may_relay, char *reply, size_t replysz)
{
	const char *at = strrchr(addr, '@');
	size_t llen = at ? (size_t)(at - addr) : strlen(addr);

	if (at == NULL)		/* RFC 5321 4.5.1: a bare postmaster */
		return is_postmaster(addr, llen) ? 0 :
		    deny(reply, replysz, addr, "501 5.1.3 <%.512s>: Recipient address "
		    "rejected: need fully-qualified address");
	if (!local_domain(at + 1) || policy_routing_trick(addr, llen))
		return may_relay ? 0 :
		    deny(reply, replysz, addr, "554 5.7.1 <%.512s>: Relay access denied");
	if (is_postmaster(addr, llen))
		return 0;
	switch (local_rcpt_exists(addr)) {
	case MAP_FOUND:
		return 0;
	case MAP_NOTFOUND:
		return deny(reply, replysz, addr, "550 5.1.1 <%.512s>: Recipient address "
		    "rejected: User unknown in local recipient table");
	default:
		return deny(reply, replysz, addr, "451 4.3.0 <%.512s>: Temporary lookup "
		    "failure");
	}
}

/* ---- connection limits ------------------------------------------------- */

/*
 * Clients are counted by address prefix, as Postfix's anvil does with
 * smtpd_client_ipv4_prefix_length / smtpd_client_ipv6_prefix_length: one
 * IPv6 host commonly holds a whole /64, so counting each address would
 * let it open its connections and try its passwords 2^64 times over.
 */
void
policy_client_key(const struct sockaddr *sa, struct policy_key *k)
{
	struct ipkey a;
	char ip[INET6_ADDRSTRLEN];

	memset(k, 0, sizeof(*k));
	if (sa_key(sa, &a) != 0) {
		snprintf(k->text, sizeof(k->text), "local");	/* unix sockets: one */
		return;
	}
	k->len = a.len;
	k->bits = (int)conf_num(a.len == 4 ? C_smtpd_client_ipv4_prefix_length :
	    C_smtpd_client_ipv6_prefix_length);
	for (int i = 0; i < a.len; i++) {
		int keep = k->bits - i * 8;

		k->b[i] = keep >= 8 ? a.b[i] : keep <= 0 ? 0 :
		    (unsigned char)(a.b[i] & (0xff << (8 - keep)));
	}
	inet_ntop(a.len == 4 ? AF_INET : AF_INET6, k->b, ip, sizeof(ip));
	if (k->bits == a.len * 8)
		snprintf(k->text, sizeof(k->text), "%s", ip);
	else
		snprintf(k->text, sizeof(k->text), "%s/%d", ip, k->bits);
}

struct conn_count {
	RB_ENTRY(conn_count) link;
	struct policy_key key;
	int n;
};

static int
conn_cmp(struct conn_count *a, struct conn_count *b)
{
	if (a->key.len != b->key.len)
		return a->key.len - b->key.len;
	if (a->key.bits != b->key.bits)
		return a->key.bits - b->key.bits;
	return memcmp(a->key.b, b->key.b, (size_t)a->key.len);
}

RB_HEAD(conn_tree, conn_count);
RB_GENERATE_STATIC(conn_tree, conn_count, link, conn_cmp)

static struct conn_tree conns = RB_INITIALIZER(&conns);
static int conn_total;

static struct conn_count *
conn_find(const struct policy_key *k)
{
	struct conn_count q;

	q.key = *k;
	return RB_FIND(conn_tree, &conns, &q);
}

int
policy_conn_open(const struct policy_key *k, int trusted, char *reply,
    size_t replysz)
{
	long long max = conf_num(C_smtpd_max_connections);
	long long per = conf_num(C_smtpd_client_connection_count_limit);
	struct conn_count *c = conn_find(k);

	if (max > 0 && conn_total >= max) {
		snprintf(reply, replysz, "421 4.7.0 %s Error: too many connections",
		    conf_str(C_myhostname));
		return -1;
	}
	if (!trusted && per > 0 && c != NULL && c->n >= per) {
		snprintf(reply, replysz, "421 4.7.0 %s Error: too many connections "
		    "from your address", conf_str(C_myhostname));
		return -1;
	}
	if (c == NULL) {
		c = xcalloc(1, sizeof(*c));
		c->key = *k;
		RB_INSERT(conn_tree, &conns, c);
	}
	c->n++;
	conn_total++;
	return 0;
}

void
policy_conn_close(const struct policy_key *k)
{
	struct conn_count *c = conn_find(k);

	if (c == NULL)
		return;
	conn_total--;
	if (--c->n == 0) {
		RB_REMOVE(conn_tree, &conns, c);
		free(c);
	}
}

int
policy_conn_total(void)
{
	return conn_total;
}

int
policy_conn_from(const struct policy_key *k)
{
	struct conn_count *c = conn_find(k);

	return c ? c->n : 0;
}
