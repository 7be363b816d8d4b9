/*
 * Fuzz target for lib/addr, the RFC 5321 path parser. The first input
 * byte picks the ADDR_F_* flags, the rest is the path (cut at a NUL, as a
 * command line would be). An accepted path must keep the invariants the
 * daemons rely on: every piece within its 4.5.3.1 bound, no control
 * character (CR, LF, TAB...) anywhere, 8-bit bytes only with ADDR_F_UTF8
 * and then well-formed UTF-8, mailbox == local "@" domain, and
 * "<" mailbox ">" parses again to the same pieces.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"

#define MUST(c) do { if (!(c)) __builtin_trap(); } while (0)

static void
check_clean(const char *s)
{
	for (; *s != '\0'; s++)
		MUST((unsigned char)*s >= 0x20 && *s != 0x7f);
}

static void
check(const struct addr *a, unsigned flags, const char *in, const char *rest)
{
	size_t ll = strlen(a->local), dl = strlen(a->domain);
	char again[ADDR_PATH_MAX + 3];
	struct addr b;

	MUST(strlen(a->mailbox) <= ADDR_PATH_MAX);
	MUST(ll <= ADDR_LOCAL_MAX + 2 && dl <= ADDR_DOMAIN_MAX);
	MUST(rest >= in && rest <= in + strlen(in) && *rest != ' ');
	check_clean(a->mailbox);
	MUST(!addr_has_8bit(a->mailbox) || ((flags & ADDR_F_UTF8) &&
	    addr_utf8_ok(a->mailbox)));
	if (a->kind & ADDR_K_NULL) {
		MUST((flags & ADDR_F_NULL_OK) && a->mailbox[0] == '\0');
		return;
	}
	MUST(ll > 0 && strncmp(a->mailbox, a->local, ll) == 0);
	MUST(dl == 0 ? a->mailbox[ll] == '\0' :
	    a->mailbox[ll] == '@' && strcmp(a->mailbox + ll + 1, a->domain) == 0);
	MUST(dl > 0 || (flags & (ADDR_F_BARE_OK | ADDR_F_LENIENT)));
	strcpy(again, "<");
	strcat(again, a->mailbox);
	strcat(again, ">");
	MUST(addr_parse(again, flags, &b, NULL) == ADDR_OK);
	MUST(strcmp(a->mailbox, b.mailbox) == 0);
	MUST(strcmp(a->local, b.local) == 0 && strcmp(a->domain, b.domain) == 0);
	MUST(b.kind == (a->kind & ~(unsigned)ADDR_K_ROUTE));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned flags;
	struct addr a;
	const char *rest = NULL;
	enum addr_err e;
	char *s;

	if (size == 0 || size > 4096)
		return 0;
	flags = data[0] & 0x0f;
	s = malloc(size);
	memcpy(s, data + 1, size - 1);
	s[size - 1] = '\0';
	e = addr_parse(s, flags, &a, &rest);
	MUST(addr_reply(e, 0) != NULL || e == ADDR_OK);
	MUST(addr_reply(e, 1) != NULL || e == ADDR_OK);
	if (e == ADDR_OK)
		check(&a, flags, s, rest);
	{
		char small[64];
		enum addr_err e2 = addr_parse_mailbox(s, flags, small,
		    sizeof(small), &rest);

		MUST(e2 == (e != ADDR_OK ? e : strlen(a.mailbox) < sizeof(small) ?
		    ADDR_OK : ADDR_E_TOO_LONG));
		MUST(e2 != ADDR_OK || strcmp(small, a.mailbox) == 0);
	}
	free(s);
	return 0;
}
