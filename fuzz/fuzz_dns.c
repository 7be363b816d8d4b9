/*
 * Fuzz target for the DNS answer handling in lib/dns.c: c-ares's MX, A
 * and AAAA parsers as dns.c drives them, and dns.c's own walk over the
 * answer section for the TTL. Any packet must give a well-formed result:
 * a status, at most the bounded number of records, valid host names.
 * dns.c is compiled in to reach its static functions.
 */
#include <assert.h>
#include <stdint.h>

#include "../lib/dns.c"

static void
check(const struct answer *a, int type)
{
	int i;

	assert(a->why != NULL);
	assert(a->n >= 0 && a->n <= (type == ns_t_mx ? DNS_MAX_MX :
	    DNS_MAX_ADDRS));
	if (a->status != DNS_OK)
		return;
	assert(a->n > 0);
	for (i = 0; type == ns_t_mx && i < a->n; i++)
		assert(dns_valid_hostname(((struct dns_mx *)a->data)[i].host));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const int types[] = { ns_t_mx, ns_t_a, ns_t_aaaa };
	size_t i;

	if (size > 65535)
		return 0;
	(void)answer_min_ttl(data, (int)size);
	for (i = 0; i < 3; i++) {
		struct answer a = { .status = DNS_OK, .why = "ok" };

		if (types[i] == ns_t_mx)
			parse_mx(ARES_SUCCESS, data, (int)size, &a);
		else
			parse_addr(types[i], ARES_SUCCESS, data, (int)size, &a);
		check(&a, types[i]);
		free(a.data);
	}
	return 0;
}
