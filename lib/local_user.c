/*
 * Recipient -> mailbox: the users table first, then the system's accounts.
 * One answer for smtpd's RCPT check, lmtpd's delivery and hermod lookup.
 * See local_user.h for the order of the steps.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "local_user.h"
#include "log.h"
#include "xalloc.h"

static int closer_registered;
static struct map *users_map;		/* opened from the configuration */
static struct map *users_override;	/* tests */

void
local_user_set_map(struct map *m)
{
	users_override = m;
}

void
local_user_close(void)
{
	map_close(users_map);
	users_map = NULL;
}

/* The users map, (re)opened when the configured path changed. NULL when
 * it cannot be opened: the caller answers TEMPFAIL. */
static struct map *
users(void)
{
	char err[512], *path;

	if (users_override != NULL)
		return users_override;
	path = xasprintf("%s.db", conf_str(C_user_maps));
	if (users_map != NULL && strcmp(map_path(users_map), path) != 0)
		local_user_close();
	if (users_map == NULL && !closer_registered) {
		atexit(local_user_close);	/* leak checkers see a tidy exit */
		closer_registered = 1;
	}
	if (users_map == NULL && (users_map = map_open(path, err,
	    sizeof(err))) == NULL)
		log_warn("users table: %s", err);
	free(path);
	return users_map;
}

/*
 * "[192.0.2.1]" or "[IPv6:2001:db8::1]" naming an address of one of this
 * host's interfaces: local, as in Postfix (RFC 5321 4.1.3 lets a client
 * reach a host by its address, and 4.5.1 wants postmaster there). Asked
 * of the kernel each time: literals are rare, and addresses come and go.
 */
static int
own_literal(const char *d, size_t n)
{
	char ip[64];
	unsigned char want[16];
	int family = AF_INET, found = 0;
	size_t len = 4;
	struct ifaddrs *ifs, *i;

	if (n < 3 || d[0] != '[' || d[n - 1] != ']' || n - 2 >= sizeof(ip))
		return 0;
	memcpy(ip, d + 1, n - 2);
	ip[n - 2] = '\0';
	if (strncasecmp(ip, "IPv6:", 5) == 0) {
		family = AF_INET6;
		len = 16;
		memmove(ip, ip + 5, strlen(ip + 5) + 1);
	}
	if (inet_pton(family, ip, want) != 1 || getifaddrs(&ifs) < 0)
		return 0;
	for (i = ifs; i != NULL && !found; i = i->ifa_next) {
		const void *have;

		if (i->ifa_addr == NULL || i->ifa_addr->sa_family != family)
			continue;
		have = family == AF_INET ?
		    (const void *)&((struct sockaddr_in *)(void *)i->ifa_addr)->sin_addr :
		    (const void *)&((struct sockaddr_in6 *)(void *)i->ifa_addr)->sin6_addr;
		found = memcmp(have, want, len) == 0;
	}
	freeifaddrs(ifs);
	return found;
}

int
local_domain(const char *domain)
{
	char d[LU_NAME_MAX];
	size_t n;

	if (domain == NULL || *domain == '\0')
		return 1;
	n = strlen(domain);
	if (n >= sizeof(d))
		return 0;
	if (domain[0] == '[')
		return own_literal(domain, n);
	memcpy(d, domain, n + 1);
	if (n > 1 && d[n - 1] == '.')
		d[n - 1] = '\0';
	return conf_list_has(C_mydestination, d);
}

int
local_strip_extension(const char *local, char *out, size_t outsz)
{
	const char *delims = conf_str(C_recipient_delimiter);
	size_t n = strlen(local), cut;

	cut = *delims && n > 1 ? 1 + strcspn(local + 1, delims) : n;
	if (cut >= outsz)
		return -1;
	memcpy(out, local, cut);
	out[cut] = '\0';
	return 0;
}

static int
from_table(struct map *m, const char *key, struct local_user *out)
{
	struct users_record r;
	struct buf v;
	int rc;

	buf_init(&v, MAP_VALUE_MAX);
	rc = map_lookup(m, key, &v);
	if (rc == MAP_FOUND && users_record_parse(v.data, v.len, &r) < 0) {
		log_warn("users table %s: bad record for %s", map_path(m), key);
		rc = MAP_TEMPFAIL;
	}
	buf_free(&v);
	if (rc != MAP_FOUND)
		return rc;
	snprintf(out->mailbox, sizeof(out->mailbox), "%s", r.mailbox);
	out->is_maildir = r.is_maildir;
	out->uid = r.uid;
	out->gid = r.gid;
	out->quota = r.quota;
	memcpy(out->password, r.password, sizeof(out->password));
	out->source = LU_SRC_USERS;
	snprintf(out->key, sizeof(out->key), "%s", key);
	return LU_FOUND;
}

/* getpwnam as written, then lower-cased (mail addresses are mostly
 * written in any case; account names are mostly lower case). */
static struct passwd *
account(const char *local)
{
	char low[LU_NAME_MAX];
	struct passwd *pw;
	size_t i;

	if ((pw = getpwnam(local)) != NULL)
		return pw;
	for (i = 0; local[i] && i + 1 < sizeof(low); i++)
		low[i] = (char)tolower((unsigned char)local[i]);
	low[i] = '\0';
	return strcmp(low, local) != 0 ? getpwnam(low) : NULL;
}

static size_t
home_len(const char *home)
{
	size_t n = strlen(home);

	while (n > 0 && home[n - 1] == '/')
		n--;
	return n;
}

static int
from_system(const char *local, struct local_user *out)
{
	const char *hm = conf_str(C_home_mailbox);
	struct passwd *pw;
	int n;

	errno = 0;
	if ((pw = account(local)) == NULL)
		return errno && errno != ENOENT && errno != ESRCH &&
		    errno != EBADF && errno != EPERM ? LU_TEMPFAIL : LU_NOTFOUND;
	if (*hm == '\0')
		n = snprintf(out->mailbox, sizeof(out->mailbox), "%s/%s",
		    conf_str(C_mail_spool_directory), pw->pw_name);
	else	/* no "//" when the home is "/" or ends in "/" */
		n = snprintf(out->mailbox, sizeof(out->mailbox), "%.*s/%s",
		    (int)home_len(pw->pw_dir), pw->pw_dir, hm);
	if (n < 0 || (size_t)n >= sizeof(out->mailbox))
		return LU_NOTFOUND;
	out->is_maildir = out->mailbox[n - 1] == '/';
	out->uid = pw->pw_uid;
	out->gid = pw->pw_gid;
	out->quota = 0;
	out->password[0] = '\0';
	out->source = LU_SRC_SYSTEM;
	snprintf(out->account, sizeof(out->account), "%s", pw->pw_name);
	snprintf(out->key, sizeof(out->key), "%s", pw->pw_name);
	return LU_FOUND;
}

/* The three steps for one local part. */
static int
find_local(const char *local, const char *domain, struct local_user *out)
{
	struct map *m = users();
	char key[LU_NAME_MAX * 2];
	int rc;

	if (m == NULL)
		return LU_TEMPFAIL;
	if (domain != NULL && *domain) {
		snprintf(key, sizeof(key), "%s@%s", local, domain);
		if ((rc = from_table(m, key, out)) != LU_NOTFOUND)
			return rc;
	}
	if (!local_domain(domain))
		return LU_NOTFOUND;
	if ((rc = from_table(m, local, out)) != LU_NOTFOUND)
		return rc;
	if (!conf_bool(C_local_system_users))
		return LU_NOTFOUND;
	return from_system(local, out);
}

int
local_user_find(const char *addr_or_local, const char *domain,
    struct local_user *out)
{
	char local[LU_NAME_MAX], dom[LU_NAME_MAX];
	const char *at = strrchr(addr_or_local, '@');
	size_t n = at ? (size_t)(at - addr_or_local) : strlen(addr_or_local);
	int rc;

	if (at != NULL)
		domain = at + 1;
	if (n == 0 || n >= sizeof(local) || (domain && strlen(domain) >= sizeof(dom)))
		return LU_NOTFOUND;
	memcpy(local, addr_or_local, n);
	local[n] = '\0';
	snprintf(dom, sizeof(dom), "%s", domain ? domain : "");
	n = strlen(dom);
	if (n > 1 && dom[n - 1] == '.')
		dom[n - 1] = '\0';
	memset(out, 0, sizeof(*out));
	if (local_strip_extension(local, out->local, sizeof(out->local)) < 0)
		return LU_NOTFOUND;
	rc = find_local(out->local, dom, out);
	if (rc == LU_NOTFOUND && strcasecmp(out->local, "postmaster") == 0 &&
	    local_domain(dom))
		rc = find_local("root", dom, out);
	if (rc == LU_FOUND)
		local_strip_extension(local, out->local, sizeof(out->local));
	return rc;
}
