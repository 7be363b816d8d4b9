/*
 * Fuzz target for the users table parser (hermod-users(5)): each line of
 * the input is parsed; a good record is stored and decoded again and must
 * come back the same. The input is also decoded as a stored record (what
 * a damaged users.db could hold). Nothing may crash or misread.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "map.h"
#include "users.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size, *nl;
	struct users_record r, back;
	struct buf key, val;
	char err[256];

	buf_init(&key, MAP_KEY_MAX + 16);
	buf_init(&val, MAP_VALUE_MAX);
	for (; p < end; p = nl + 1) {
		if ((nl = memchr(p, '\n', (size_t)(end - p))) == NULL)
			nl = end;
		if (users_parse_line(p, (size_t)(nl - p), &key, &r, err,
		    sizeof(err)) < 0)
			continue;
		buf_reset(&val);
		if (users_record_format(&r, &val) == 0 &&
		    (users_record_parse(val.data, val.len, &back) != 0 ||
		    memcmp(&r, &back, sizeof(r)) != 0))
			abort();	/* the stored form must round-trip */
	}
	(void)users_record_parse((const char *)data, size, &r);
	buf_free(&key);
	buf_free(&val);
	return 0;
}
