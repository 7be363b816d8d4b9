/*
 * Fuzz target for the aliases(5) parser: the input is a whole aliases
 * file, read through the table line reader (continuations, comments,
 * bounds) and each logical line parsed as an entry; the stored value is
 * then walked target by target. Also parses the input as an :include:
 * target list. Nothing may crash, leak or read out of bounds.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "aliases.h"
#include "map.h"

static void
walk(const struct buf *v)
{
	const char *t, *arg;
	size_t off = 0;

	while ((t = aliases_value_next(v->data, v->len, &off)) != NULL)
		(void)aliases_target_kind(t, &arg);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct map_src s;
	struct buf name, value;
	char err[256];

	if (size == 0)
		return 0;
	memset(&s, 0, sizeof(s));
	s.path = "fuzz";
	s.next_lineno = 1;
	buf_init(&s.line, MAP_VALUE_MAX);
	buf_init(&s.pending, MAP_LINE_MAX);
	buf_init(&name, MAP_KEY_MAX + 16);
	buf_init(&value, MAP_VALUE_MAX);
	if ((s.fp = fmemopen((void *)data, size, "r")) == NULL)
		goto out;
	while (map_src_next(&s) == 1)
		if (aliases_parse_entry(s.line.data, s.line.len, &name, &value,
		    err, sizeof(err)) == 0)
			walk(&value);
	buf_reset(&value);
	if (aliases_parse_targets((const char *)data, size, &value, err,
	    sizeof(err)) == 0)
		walk(&value);
out:
	map_src_close(&s);
	buf_free(&name);
	buf_free(&value);
	return 0;
}
