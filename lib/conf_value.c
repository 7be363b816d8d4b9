/*
 * hermod.conf value types (see conf.h): numbers, sizes with k m g,
 * times with s m h d w, booleans, and the few text keys with a fixed
 * vocabulary. conf.c calls conf_value_check() on each expanded value at
 * load time; the accessors then hand out the parsed number.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "conf.h"
#include "conf_impl.h"
#include "log.h"

/* A decimal integer (optionally negative) followed by a unit from
 * units/mults; NULL or the reason it is bad. */
static const char *
parse_num(const char *s, const char *units, const long long *mults,
    const char *bad_unit, long long *out)
{
	long long n = 0, m = 1;
	int neg = *s == '-';
	const char *p = s + neg, *u;

	if (*p < '0' || *p > '9')
		return "not a number";
	for (; *p >= '0' && *p <= '9'; p++) {
		if (n > (LLONG_MAX - (*p - '0')) / 10)
			return "number too large";
		n = n * 10 + (*p - '0');
	}
	if (*p != '\0') {
		if (units == NULL)
			return "not a number";
		if (p[1] != '\0' || (u = strchr(units, *p)) == NULL)
			return bad_unit;
		m = mults[(u - units) / 2];
	}
	if (n > LLONG_MAX / m)
		return "number too large";
	*out = neg ? -n * m : n * m;
	return NULL;
}

/* Sizes: powers of 1024. Times: s m h d w. Both units are given in
 * lower and upper case, hence the halved index in parse_num. */
static const long long size_mults[] = { 1024, 1024 * 1024, 1024LL * 1024 * 1024 };
static const long long time_mults[] = { 1, 60, 3600, 86400, 7 * 86400 };

static const char *
why_size(const char *s, long long *out)
{
	return parse_num(s, "kKmMgG", size_mults, "bad unit: use k, m or g", out);
}

static const char *
why_time(const char *s, long long *out)
{
	return parse_num(s, "sSmMhHdDwW", time_mults, "bad unit: use s, m, h, d or w", out);
}

static const char *
why_int(const char *s, long long *out)
{
	return parse_num(s, NULL, NULL, NULL, out);
}

static const char *
why_bool(const char *s, long long *out)
{
	static const char *const yes[] = { "yes", "true", "1" }, *const no[] = { "no", "false", "0" };

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcasecmp(s, yes[i]) == 0)
			return *out = 1, NULL;
		if (strcasecmp(s, no[i]) == 0)
			return *out = 0, NULL;
	}
	return "not yes or no";
}

int
conf_parse_size(const char *s, long long *out)
{
	return why_size(s, out) == NULL ? 0 : -1;
}

int
conf_parse_time(const char *s, long long *out)
{
	return why_time(s, out) == NULL ? 0 : -1;
}

int
conf_parse_bool(const char *s, int *out)
{
	long long v;

	if (why_bool(s, &v) != NULL)
		return -1;
	*out = (int)v;
	return 0;
}

static const struct conf_type_info {
	const char *name;	/* in the man page */
	const char *(*parse)(const char *, long long *);	/* NULL: text */
	const char *unit;	/* of the bounds; NULL: no bounds */
} type_info[] = {
	[CONF_STR] = { "string", NULL, NULL },
	[CONF_LIST] = { "list", NULL, NULL },
	[CONF_INT] = { "number", why_int, "" },
	[CONF_SIZE] = { "size", why_size, " bytes" },
	[CONF_TIME] = { "time", why_time, " seconds" },
	[CONF_BOOL] = { "boolean", why_bool, NULL },
};

/* Text keys that still have a fixed vocabulary. */
static const char *
why_log_level(const char *s)
{
	enum log_level l;

	return log_level_parse(s, &l) == 0 ? NULL : "not debug, info, warning or crit";
}

static const struct {
	enum conf_key k;
	const char *(*check)(const char *);
} text_checks[] = {
	{ C_log_level, why_log_level },
};

const char *
conf_type_name(enum conf_type t)
{
	return type_info[t].name;
}

const char *
conf_type_unit(enum conf_type t)
{
	return type_info[t].unit;
}

const char *
conf_value_check(enum conf_key k, const char *v, long long *num, char *buf, size_t size)
{
	const struct conf_def *d = &conf_defs[k];
	const struct conf_type_info *t = &type_info[d->type];
	const char *why = NULL;

	*num = 0;
	for (size_t i = 0; i < sizeof(text_checks) / sizeof(text_checks[0]); i++)
		if (text_checks[i].k == k)
			why = text_checks[i].check(v);
	if (why == NULL && t->parse != NULL)
		why = t->parse(v, num);
	if (why == NULL && t->unit != NULL && (*num < d->min || *num > d->max)) {
		snprintf(buf, size, "out of range %lld to %lld%s", d->min, d->max, t->unit);
		why = buf;
	}
	return why;
}
