/*
 * Bench helper for bench/tables_bench.sh: times map_lookup() on a built
 * table, the way a daemon uses it (one open map, many lookups).
 *
 *     tables_lookup DB PREFIX COUNT N [SUFFIX]
 *
 * Keys PREFIX0SUFFIX .. PREFIX(COUNT-1)SUFFIX.
 *
 * Prints hits, misses and the mean latency of N lookups of random keys
 * (and of N lookups of keys that are not there).
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "map.h"

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
	char err[256], key[128];
	struct buf v;
	struct map *m;
	long count, n, hits = 0, misses = 0;
	double t0, t1, t2;

	const char *suffix = argc > 5 ? argv[5] : "";

	if (argc != 5 && argc != 6)
		return 2;
	count = atol(argv[3]);
	n = atol(argv[4]);
	if ((m = map_open(argv[1], err, sizeof(err))) == NULL) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	buf_init(&v, MAP_VALUE_MAX);
	srandom(42);
	t0 = now();
	for (long i = 0; i < n; i++) {
		snprintf(key, sizeof(key), "%s%ld%s", argv[2], random() % count,
		    suffix);
		hits += map_lookup(m, key, &v) == MAP_FOUND;
	}
	t1 = now();
	for (long i = 0; i < n; i++) {
		snprintf(key, sizeof(key), "absent%ld", random() % count);
		misses += map_lookup(m, key, &v) == MAP_NOTFOUND;
	}
	t2 = now();
	printf("lookups=%ld hits=%ld mean_hit_us=%.2f misses=%ld mean_miss_us=%.2f\n",
	    n, hits, (t1 - t0) / n * 1e6, misses, (t2 - t1) / n * 1e6);
	buf_free(&v);
	map_close(m);
	return hits == n && misses == n ? 0 : 1;
}
