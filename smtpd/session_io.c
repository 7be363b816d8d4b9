/*
 * The session's life on lib/smtp_server (the protocol engine shared with
 * queued and lmtpd): a client connection becomes an srv_session with
 * smtpd's command table (smtp_session.c), its DATA/BDAT hooks
 * (smtp_data.c) and TLS hook (smtpd_tls.c). The engine reads command
 * lines (pipelining, RFC 2920), keeps the bounds (SMTPD_LINE_MAX,
 * SMTPD_INPUT_MAX read ahead, SMTPD_OUTPUT_MAX of replies the client has
 * not read), the command timeout (smtpd_timeout), the error counter (soft
 * limit: each further error waits smtpd_error_sleep_time; hard limit: 421)
 * and the lingering close. Here: the session struct, the client's name
 * looked up before the greeting, smtpd's replies (given as "DDD x.y.z
 * text" lines) and the log lines at connect and at the end.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "dns.h"
#include "log.h"
#include "policy.h"
#include "smtpd.h"
#include "smtpd_tls.h"
#include "xalloc.h"

#define LINGER_MS	2000	/* input drained after the last reply */

struct session_list sessions = TAILQ_HEAD_INITIALIZER(sessions);

/* The engine borrows these: one copy, refreshed for each new session
 * (after SIGHUP the old config strings are gone; this array stays). */
static char hostname[256];
static struct srv_limits limits;

const char *
session_client(const struct session *s)
{
	static char buf[2][300];
	static int which;

	which ^= 1;
	snprintf(buf[which], sizeof(buf[which]), "%s[%s]", s->name, s->addr);
	return buf[which];
}

const char *
session_helo(const struct session *s)
{
	return s->helo != NULL ? s->helo : "";
}

const char *
session_addr_lit(const struct session *s)
{
	static char buf[INET6_ADDRSTRLEN + 16];

	snprintf(buf, sizeof(buf), "%s%s", strchr(s->addr, ':') ? "IPv6:" : "",
	    s->addr);
	return buf;
}

unsigned
session_st(const struct session *s)
{
	return SRV_STATE(srv_state(s->srv));
}

void
session_set_state(struct session *s, enum smtp_state st)
{
	srv_set_state(s->srv, st);
}

/* One "DDD[ x.y.z] text" line into the engine's reply writer. */
static void
vreply(struct session *s, const char *fmt, va_list ap)
{
	char line[1024];

	vsnprintf(line, sizeof(line), fmt, ap);
	srv_reply_line(s->srv, line);
}

void
session_reply(struct session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vreply(s, fmt, ap);
	va_end(ap);
}

void
session_error(struct session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vreply(s, fmt, ap);
	va_end(ap);
	srv_error(s->srv);
}

void
session_close(struct session *s, const char *fmt, ...)
{
	va_list ap;

	if (s->closing)
		return;
	if (fmt != NULL) {
		va_start(ap, fmt);
		vreply(s, fmt, ap);
		va_end(ap);
	}
	s->closing = 1;
	if (s->ho != NULL)
		handoff_abort(s->ho);	/* an unfinished message is dropped */
	srv_close_after_flush(s->srv);
}

void
session_pause(struct session *s)
{
	srv_pause(s->srv);
}

void
session_resume(struct session *s)
{
	srv_resume(s->srv);
}

/* ---- the client's name (smtpd_peername_lookup) --------------------------- */

/*
 * As Postfix's smtpd does before its greeting: the name of the client's
 * address (PTR; /etc/hosts first), then the addresses of that name in the
 * same family; the name counts only when one of them is the client's
 * address (forward-confirmed), else the client is "unknown" (also after a
 * temporary failure: Postfix tells the two apart only for its
 * reject_unknown_client_hostname, which we do not have). The session is
 * paused meanwhile: nothing the client sends is read as a command before
 * the greeting. Each step is bounded by the resolver's timeout and tries.
 * A session that ends during the lookup cancels it in on_close, so no
 * answer ever reaches freed memory. Lookups run only after smtpd.c's
 * session_lookup_allow() (not in smtpd -s, not in the fuzzer); the
 * resolver is started at the first lookup, with dns_servers.
 */
struct lookup {
	struct dns_query *q;		/* the name's; NULL once answered */
	int family;			/* IPv4 for an IPv4-mapped address */
	unsigned char addr[16];
	char name[DNS_NAME_MAX + 1];	/* the PTR's name, to be confirmed */
	int name_done;
	char *found;			/* the confirmed name */
	struct dnsbl_query {		/* smtpd_dnsbl_sites; NULL: none */
		struct session *s;
		struct dns_query *q;	/* NULL once answered */
		char site[DNS_NAME_MAX + 1];	/* "zone" or "zone=127.0.0.2" */
	} *bl;
	int nbl;
};

static int lookup_allowed, resolver;	/* resolver: 0 not yet, 1, -1 */

void
session_lookup_allow(void)
{
	lookup_allowed = 1;
}

void
session_lookup_reload(void)
{
	char *const *servers = conf_list(C_dns_servers);

	if (resolver == 1)
		dns_reload(servers);
	else
		resolver = 0;	/* not started, or failed: the next lookup tries */
}

static int
resolver_up(struct event_base *base)
{
	char *const *servers = conf_list(C_dns_servers);

	if (resolver == 0) {
		resolver = dns_init(base, servers != NULL && servers[0] != NULL ?
		    servers : NULL) == 0 ? 1 : -1;
		if (resolver == -1)
			log_warn("the DNS resolver did not start: clients are "
			    "\"unknown\"");
	}
	return resolver == 1;
}

static void
lookup_cancel(struct session *s)
{
	struct lookup *l = s->lookup;

	if (l == NULL)
		return;
	if (l->q != NULL)
		dns_cancel(l->q);	/* its callback never runs */
	for (int i = 0; i < l->nbl; i++)
		if (l->bl[i].q != NULL)
			dns_cancel(l->bl[i].q);
	free(l->bl);
	free(l->found);
	free(l);
	s->lookup = NULL;
}

/* Every answer is in: the name (or unknown), the connect line, the
 * greeting, then commands are read. */
static void
lookup_check_done(struct session *s)
{
	struct lookup *l = s->lookup;

	if (!l->name_done)
		return;
	for (int i = 0; i < l->nbl; i++)
		if (l->bl[i].q != NULL)
			return;
	if (l->found != NULL) {
		s->name = l->found;
		s->name_owned = 1;
		l->found = NULL;
	}
	free(l->bl);
	free(l);
	s->lookup = NULL;
	session_connected(s);
	session_resume(s);
}

/* The name lookup is over (name NULL: unknown). */
static void
lookup_done(struct session *s, const char *name)
{
	struct lookup *l = s->lookup;

	l->q = NULL;
	l->name_done = 1;
	if (name != NULL)
		l->found = xstrdup(name);
	lookup_check_done(s);
}

static int
lookup_match(const struct lookup *l, const struct sockaddr_storage *ss)
{
	if (ss->ss_family != l->family)
		return 0;
	if (l->family == AF_INET)
		return memcmp(&((const struct sockaddr_in *)ss)->sin_addr,
		    l->addr, 4) == 0;
	return memcmp(&((const struct sockaddr_in6 *)ss)->sin6_addr, l->addr,
	    16) == 0;
}

static void
on_forward(const struct dns_addr_reply *r, void *arg)
{
	struct session *s = arg;
	struct lookup *l = s->lookup;

	for (int i = 0; r->status == DNS_OK && i < r->n; i++)
		if (lookup_match(l, &r->addrs[i])) {
			lookup_done(s, l->name);
			return;
		}
	if (r->status == DNS_TEMPFAIL)
		log_info("hostname %s: address lookup for %s: %s", l->name,
		    s->addr, r->why);
	else
		log_warn("hostname %s does not resolve to address %s", l->name,
		    s->addr);
	lookup_done(s, NULL);
}

static void
on_ptr(const struct dns_name_reply *r, void *arg)
{
	struct session *s = arg;
	struct lookup *l = s->lookup;

	if (r->status != DNS_OK) {
		if (r->status != DNS_NXDOMAIN && r->status != DNS_NODATA)
			log_info("hostname lookup for %s: %s (%s)", s->addr,
			    dns_status_str(r->status), r->why);
		lookup_done(s, NULL);
		return;
	}
	snprintf(l->name, sizeof(l->name), "%s", r->name);
	l->q = dns_query_host(l->name, l->family, on_forward, s);
}

/*
 * DNS blocklists (smtpd_dnsbl_sites, Postfix's reject_rbl_client): the
 * client's address, reversed, under each zone; an A record there (the
 * one given after '=', when one is) lists the client, and its mail is
 * refused at RCPT (smtp_session.c). Asked with the name before the
 * greeting, so the answer is there when the first RCPT comes; a zone that
 * fails or does not answer lists no one (logged). Port 25 only: the
 * submission ports take mail only after AUTH anyway.
 */
static void
on_dnsbl(const struct dns_addr_reply *r, void *arg)
{
	struct dnsbl_query *b = arg;
	struct session *s = b->s;
	char *want = strchr(b->site, '='), got[INET6_ADDRSTRLEN];
	int hit = 0;

	b->q = NULL;
	if (want != NULL)
		*want++ = '\0';
	for (int i = 0; r->status == DNS_OK && i < r->n && !hit; i++) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)&r->addrs[i];
		hit = r->addrs[i].ss_family == AF_INET && (want == NULL ||
		    (inet_ntop(AF_INET, &in->sin_addr, got, sizeof(got)) != NULL &&
		    strcmp(got, want) == 0));
	}
	if (r->status != DNS_OK && r->status != DNS_NXDOMAIN && r->status != DNS_NODATA)
		log_info("dnsbl %s: lookup for %s: %s (%s)", b->site, s->addr,
		    dns_status_str(r->status), r->why);
	if (hit && s->dnsbl == NULL)
		s->dnsbl = xstrdup(b->site);
	lookup_check_done(s);
}

/* The queries for the client's address; 0 when there are none. */
static int
dnsbl_start(struct session *s, struct lookup *l)
{
	char *const *sites = conf_list(C_smtpd_dnsbl_sites);
	char rev[DNS_REVERSE_MAX], *arpa;

	if (s->trusted || s->kind != LK_SMTP || sites == NULL || sites[0] == NULL ||
	    dns_reverse_name(&s->sa.sa, rev, sizeof(rev)) < 0 ||
	    (arpa = strstr(rev, l->family == AF_INET ? ".in-addr.arpa" : ".ip6.arpa")) == NULL)
		return 0;
	*arpa = '\0';
	l->bl = xcalloc(DNSBL_SITES_MAX, sizeof(*l->bl));
	for (int i = 0; sites[i] != NULL && l->nbl < DNSBL_SITES_MAX; i++) {
		struct dnsbl_query *b = &l->bl[l->nbl];
		char name[DNS_NAME_MAX + 2];
		size_t zlen = strcspn(sites[i], "=");

		if ((size_t)snprintf(name, sizeof(name), "%s.%.*s", rev, (int)zlen, sites[i]) >=
		    sizeof(name) - 1 || snprintf(b->site, sizeof(b->site), "%s", sites[i]) < 0)
			continue;
		b->s = s;
		l->nbl++;
		b->q = dns_query_addr(name, AF_INET, on_dnsbl, b);
	}
	return l->nbl;
}

/* Start the lookups, or go straight on when there are none. */
static void
lookup_start(struct session *s)
{
	struct lookup *l;
	const unsigned char *a6 = s->sa.in6.sin6_addr.s6_addr;
	char *const *sites = conf_list(C_smtpd_dnsbl_sites);
	int bl = !s->trusted && s->kind == LK_SMTP && sites != NULL && sites[0] != NULL;

	if (!lookup_allowed || (!conf_bool(C_smtpd_peername_lookup) && !bl) ||
	    (s->sa.sa.sa_family != AF_INET && s->sa.sa.sa_family != AF_INET6) ||
	    !resolver_up(s->base)) {
		session_connected(s);
		return;
	}
	l = s->lookup = xcalloc(1, sizeof(*l));
	if (s->sa.sa.sa_family == AF_INET) {
		l->family = AF_INET;
		memcpy(l->addr, &s->sa.in.sin_addr, 4);
	} else if (IN6_IS_ADDR_V4MAPPED(&s->sa.in6.sin6_addr)) {
		l->family = AF_INET;
		memcpy(l->addr, a6 + 12, 4);
	} else {
		l->family = AF_INET6;
		memcpy(l->addr, a6, 16);
	}
	session_pause(s);
	/* the answers come from the loop, never from inside these calls */
	dnsbl_start(s, l);
	if (conf_bool(C_smtpd_peername_lookup))
		l->q = dns_query_ptr(&s->sa.sa, on_ptr, s);
	else
		l->name_done = 1;
	if (l->name_done)
		lookup_check_done(s);
}

static const char *const cmd_names[CMD_NIDS] = {
	"helo", "ehlo", "mail", "rcpt", "data", "bdat", "rset", "noop", "quit",
	"vrfy", "expn", "help", "starttls", "auth", "unknown",
};

static void
log_end(struct session *s, enum srv_close_why why)
{
	char counts[400];
	size_t n = 0;
	unsigned total = 0;

	if (why == SRV_CLOSE_TIMEOUT)
		log_info("timeout after %s from %s", s->tx != NULL &&
		    s->tx->phase == P_DATA ? "DATA" : "command",
		    session_client(s));
	else if (why == SRV_CLOSE_ERRORS)
		log_info("too many errors from %s", session_client(s));
	else if (s->lookup != NULL)	/* gone before its greeting */
		log_info("lost connection after CONNECT from %s",
		    session_client(s));
	else if ((why == SRV_CLOSE_EOF || why == SRV_CLOSE_ERROR) &&
	    s->tx != NULL && s->tx->started)
		log_info("lost connection after DATA from %s", session_client(s));
	counts[0] = '\0';
	for (int i = 0; i < CMD_NIDS; i++) {
		total += s->counts[i];
		if (s->counts[i] && n < sizeof(counts))
			n += (size_t)snprintf(counts + n, sizeof(counts) - n,
			    " %s=%u", cmd_names[i], s->counts[i]);
	}
	log_info("disconnect from %s%s commands=%u", session_client(s), counts,
	    total);
}

/* The engine's on_close: exactly once, the srv_session goes right after. */
static void
on_close(struct srv_session *srv, enum srv_close_why why)
{
	struct session *s = srv_udata(srv);

	session_tls_closed(s);
	log_end(s, why);
	TAILQ_REMOVE(&sessions, s, entry);
	if (s->counted)
		policy_conn_close(&s->ckey);
	lookup_cancel(s);
	free(s->dnsbl);
	if (s->name_owned)
		free((char *)s->name);
	txn_free(s);
	handoff_free(s->ho);
	auth_free(s);
	free(s->helo);
	free(s->auth_user);
	free(s);
	if (smtpd_stopping && TAILQ_EMPTY(&sessions))
		smtpd_all_gone();
}

static const struct srv_ops ops = {
	.on_data = data_on_data,
	.on_data_end = data_on_end,
	.on_close = on_close,
	.on_unknown = session_on_unknown,
	.on_bad_state = session_on_bad_state,
	.on_tls = session_on_tls,
	.on_line = session_on_line,
	.on_bad_line = session_on_bad_line,
};

/* ---- a new client ---------------------------------------------------------- */

static const struct srv_limits *
session_limits(void)
{
	snprintf(hostname, sizeof(hostname), "%s", conf_str(C_myhostname));
	limits = (struct srv_limits){
		.line_max = SMTPD_LINE_MAX + 1,	/* 2047 + CRLF, as before */
		.pipeline_max = SMTPD_CMDS_PER_TURN,
		.hard_error_limit = (unsigned)conf_num(C_smtpd_hard_error_limit),
		.timeout_sec = (unsigned)conf_num(C_smtpd_timeout),
		.min_data_rate = (unsigned)conf_num(C_smtpd_min_data_rate),
		.input_max = SMTPD_INPUT_MAX,
		.output_max = SMTPD_OUTPUT_MAX,
		.soft_error_limit = (unsigned)conf_num(C_smtpd_soft_error_limit),
		.error_sleep_ms = (unsigned)conf_num(C_smtpd_error_sleep_time) * 1000,
		.linger_ms = LINGER_MS,
		.hostname = hostname,
	};
	return &limits;
}

static void
format_addr(struct session *s, const struct sockaddr *sa)
{
	const void *a = NULL;
	unsigned port = 0;

	if (sa->sa_family == AF_INET) {
		a = &((const struct sockaddr_in *)sa)->sin_addr;
		port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		port = ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
	}
	if (a == NULL || inet_ntop(sa->sa_family, a, s->addr, sizeof(s->addr)) == NULL)
		snprintf(s->addr, sizeof(s->addr), "unknown");
	if (sa->sa_family == AF_INET6 && strncmp(s->addr, "::ffff:", 7) == 0 &&
	    strchr(s->addr + 7, '.') != NULL)
		memmove(s->addr, s->addr + 7, strlen(s->addr + 7) + 1);
	snprintf(s->port, sizeof(s->port), "%u", port);
}

/* The socket's bufferevent: plain, or TLS accepting for smtps (RFC 8314:
 * TLS first, the 220 after the handshake). */
static struct bufferevent *
session_bev(struct session *s, evutil_socket_t fd, int tls)
{
	struct bufferevent *bev;

	if (tls) {
		bev = session_tls_bev(s, fd);	/* smtpd_tls.c */
		if (bev != NULL)
			return bev;
		log_warn("TLS: cannot set up a session for %s", session_client(s));
		return NULL;
	}
	if ((bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE)) == NULL)
		fatal("smtpd: cannot set up a session");
	return bev;
}

struct session *
session_new(struct event_base *base, evutil_socket_t fd,
    const struct sockaddr *sa, socklen_t salen, enum listen_kind kind)
{
	struct session *s = xcalloc(1, sizeof(*s));
	struct bufferevent *bev;
	char why[POLICY_REPLY_MAX];
	int refused;

	s->base = base;
	s->kind = kind;
	if ((size_t)salen > sizeof(s->sa))
		salen = sizeof(s->sa);
	memcpy(&s->sa, sa, (size_t)salen);
	format_addr(s, sa);
	s->name = "unknown";
	s->trusted = policy_trusted(sa);
	policy_client_key(sa, &s->ckey);
	refused = policy_conn_open(&s->ckey, s->trusted, why, sizeof(why)) != 0;
	if (refused)
		log_info("connect from %s", session_client(s));
	/* a refusal goes out in plaintext, even on smtps */
	if ((bev = session_bev(s, fd, kind == LK_SMTPS && !refused)) == NULL) {
		if (!refused)
			policy_conn_close(&s->ckey);
		free(s);
		return NULL;
	}
	s->counted = !refused;
	s->srv = srv_session_new(bev, smtpd_commands, session_limits(), &ops, s);
	TAILQ_INSERT_TAIL(&sessions, s, entry);
	if (refused) {
		log_warn("refused %s: %s", session_client(s), why);
		session_close(s, "%s", why);
		return NULL;
	}
	lookup_start(s);	/* then session_connected() */
	return s;
}

/*
 * The client's name is known (or "unknown"): the connect line, then the
 * greeting, except on smtps before its handshake is done (smtpd_tls.c
 * greets then) and after SIGTERM.
 */
void
session_connected(struct session *s)
{
	log_info("connect from %s", session_client(s));
	if (s->kind == LK_SMTPS && !s->tls)
		return;
	if (smtpd_stopping)
		session_close(s, "421 4.3.2 %s Service shutting down",
		    conf_str(C_myhostname));
	else if (session_st(s) == ST_GREET && !s->esmtp)
		session_greet(s);
}

/* SIGTERM: a session between transactions ends now; one inside a
 * transaction ends after it (smtp_session.c checks smtpd_stopping). */
void
session_shutdown(struct session *s)
{
	if (s->tx == NULL && !srv_paused(s->srv) && !s->tls_handshake)
		session_close(s, "421 4.3.2 %s Service shutting down",
		    conf_str(C_myhostname));
}
