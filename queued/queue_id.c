/*
 * Queue ids: 16 upper-case hex digits, time-ordered, safe as file names.
 * 8 digits of seconds, 5 of microseconds, 3 of a per-process sequence, so
 * ids sort by the time they were drawn and two ids of one process never
 * collide unless 4096 are drawn in one microsecond (the writer also opens
 * with O_EXCL). The last digit names the hashed subdirectory (queue/0 ..
 * queue/F): the sequence spreads consecutive ids over all sixteen. Most
 * ids name an emptied file ahead of its message (remove.c), drawn by
 * remove.c's thread, hence the atomic sequence.
 */
#include <ctype.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>

#include "queued.h"

static atomic_uint qid_seq;

void
qid_new(char out[QID_LEN + 1])
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	snprintf(out, QID_LEN + 1, "%08llX%05lX%03X",
	    (unsigned long long)tv.tv_sec & 0xffffffffULL,
	    (unsigned long)tv.tv_usec & 0xfffffUL, atomic_fetch_add(&qid_seq, 1) & 0xfffU);
}

int
qid_valid(const char *s)
{
	size_t i;

	for (i = 0; s[i] != '\0'; i++)
		if (!isxdigit((unsigned char)s[i]) || islower((unsigned char)s[i]))
			return 0;
	return i == QID_LEN;
}

char
qid_hash(const char *qid)
{
	return qid[QID_LEN - 1];
}
