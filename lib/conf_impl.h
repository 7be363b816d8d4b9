/*
 * Inside the configuration module only: what conf.c (loading, printing)
 * needs from conf_value.c (the value types).
 */
#ifndef HERMOD_CONF_IMPL_H
#define HERMOD_CONF_IMPL_H

#include <stddef.h>

#include "conf.h"

/* Check an expanded value of key k: NULL when good (*num holds the
 * number for INT, SIZE, TIME, BOOL), else why not, possibly written in
 * buf. */
const char *conf_value_check(enum conf_key k, const char *v, long long *num,
    char *buf, size_t size);
/* The type's name in the man page; the unit of its bounds (NULL: the
 * type has no bounds). */
const char *conf_type_name(enum conf_type t);
const char *conf_type_unit(enum conf_type t);

#endif
