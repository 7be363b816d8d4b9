/* Unit tests for lib/buf.c: growth, the cap, printf, release. */
#include <stdlib.h>

#include "../../lib/buf.h"
#include "unit.h"

TEST(append_and_cap)
{
	struct buf b;

	buf_init(&b, 10);
	CHECK_INT(buf_puts(&b, "hello"), 0);
	CHECK_INT(buf_puts(&b, "world"), 0);	/* exactly at the cap */
	CHECK_STR(b.data, "helloworld");
	CHECK_INT(buf_putc(&b, '!'), -1);	/* one past */
	CHECK_INT(b.len, 10);
	CHECK_STR(b.data, "helloworld");
	buf_free(&b);
}

TEST(printf_cap)
{
	struct buf b;

	buf_init(&b, 8);
	CHECK_INT(buf_printf(&b, "%d-%s", 42, "abc"), 0);
	CHECK_STR(b.data, "42-abc");
	CHECK_INT(buf_printf(&b, "%s", "xyz"), -1);
	CHECK_STR(b.data, "42-abc");
	buf_reset(&b);
	CHECK_INT(b.len, 0);
	CHECK_STR(b.data, "");
	buf_free(&b);
}

TEST(release_and_growth)
{
	struct buf b;
	char *s;

	buf_init(&b, 1 << 20);
	for (int i = 0; i < 10000; i++)
		CHECK_INT(buf_putc(&b, 'a' + i % 26), 0);
	CHECK_INT(b.len, 10000);
	s = buf_release(&b);
	CHECK_INT(strlen(s), 10000);
	CHECK(b.data == NULL && b.len == 0);
	free(s);
	s = buf_release(&b);	/* empty buffer gives an empty string */
	CHECK_STR(s, "");
	free(s);
}

int
main(void)
{
	RUN(append_and_cap);
	RUN(printf_cap);
	RUN(release_and_growth);
	return unit_done("buf");
}
