/*
 * Unit tests for lib/strset: case-blind membership, growth past many
 * entries (the set alias expansion uses against hostile lists), reuse
 * after free.
 */
#include <stdio.h>

#include "strset.h"
#include "unit.h"

TEST(adds_once_whatever_the_case)
{
	struct strset s = { 0 };

	CHECK_INT(strset_add(&s, "Alice@Example.ORG"), 1);
	CHECK_INT(strset_add(&s, "alice@example.org"), 0);
	CHECK_INT(strset_add(&s, "ALICE@EXAMPLE.ORG"), 0);
	CHECK_INT(strset_add(&s, "alice@example.org "), 1);
	CHECK_INT(strset_add(&s, ""), 1);
	CHECK_INT(strset_add(&s, ""), 0);
	CHECK_INT((long long)s.n, 3);
	strset_free(&s);
	CHECK(s.slot == NULL && s.n == 0 && s.cap == 0);
	CHECK_INT(strset_add(&s, "alice@example.org"), 1);	/* usable again */
	strset_free(&s);
}

TEST(grows_and_keeps_every_entry)
{
	struct strset s = { 0 };
	char k[32];
	int fresh = 0, again = 0;

	for (int i = 0; i < 20000; i++) {
		snprintf(k, sizeof(k), "m%d@far.example", i);
		fresh += strset_add(&s, k);
	}
	for (int i = 0; i < 20000; i++) {
		snprintf(k, sizeof(k), "M%d@FAR.example", i);
		again += strset_add(&s, k);
	}
	CHECK_INT(fresh, 20000);
	CHECK_INT(again, 0);
	CHECK_INT((long long)s.n, 20000);
	CHECK(s.cap >= 2 * s.n && (s.cap & (s.cap - 1)) == 0);
	strset_free(&s);
}

TEST(hash_ignores_case_only)
{
	CHECK(hash_lower("Postmaster") == hash_lower("postmaster"));
	CHECK(hash_lower("postmaster") != hash_lower("postmastr"));
	CHECK(hash_lower("") != hash_lower("a"));
}

int
main(void)
{
	RUN(adds_once_whatever_the_case);
	RUN(grows_and_keeps_every_entry);
	RUN(hash_ignores_case_only);
	return unit_done("strset");
}
