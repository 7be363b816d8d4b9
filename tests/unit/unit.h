/*
 * A tiny unit-test harness: CHECK(cond) and CHECK_STR/CHECK_INT record a
 * failure with file:line and go on; TEST(name) declares a test function;
 * RUN(name) runs one; unit_done() prints the closing line
 * "N passed, N failed" and returns the exit status.
 */
#ifndef HERMOD_UNIT_H
#define HERMOD_UNIT_H

#include <stdio.h>
#include <string.h>

static int unit_checks_failed_in_test;
static int unit_passed, unit_failed;

#define TEST(name) static void name(void)

#define CHECK(cond)                                                        \
	do {                                                               \
		if (!(cond)) {                                             \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n",       \
			    __FILE__, __LINE__, #cond);                    \
			unit_checks_failed_in_test++;                      \
		}                                                          \
	} while (0)

#define CHECK_INT(a, b)                                                    \
	do {                                                               \
		long long _a = (long long)(a), _b = (long long)(b);        \
		if (_a != _b) {                                            \
			fprintf(stderr, "%s:%d: %s == %lld, expected %lld\n",\
			    __FILE__, __LINE__, #a, _a, _b);               \
			unit_checks_failed_in_test++;                      \
		}                                                          \
	} while (0)

#define CHECK_STR(a, b)                                                    \
	do {                                                               \
		const char *_a = (a), *_b = (b);                           \
		if (_a == NULL || _b == NULL ? _a != _b : strcmp(_a, _b)) {\
			fprintf(stderr, "%s:%d: %s == \"%s\", expected \"%s\"\n",\
			    __FILE__, __LINE__, #a, _a ? _a : "(null)",    \
			    _b ? _b : "(null)");                           \
			unit_checks_failed_in_test++;                      \
		}                                                          \
	} while (0)

#define RUN(name)                                                          \
	do {                                                               \
		unit_checks_failed_in_test = 0;                            \
		name();                                                    \
		if (unit_checks_failed_in_test) {                          \
			unit_failed++;                                     \
			fprintf(stderr, "FAIL %s\n", #name);               \
		} else {                                                   \
			unit_passed++;                                     \
		}                                                          \
	} while (0)

static inline int
unit_done(const char *suite)
{
	printf("%s: %d passed, %d failed\n", suite, unit_passed, unit_failed);
	return unit_failed ? 1 : 0;
}

#endif
