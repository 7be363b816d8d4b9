/*
 * hermod.conf: one declarative table of keys (conf_keys.h) from which the
 * parser, `hermod config` and the hermod.conf(5) man page all come.
 *
 * Syntax (Postfix's main.cf habits): `key = value`; `#` starts a comment
 * line; a line that starts with white space continues the one before;
 * `$name` and `${name}` expand to another key's value at lookup time;
 * times take s m h d w suffixes (a bare number is seconds); sizes take
 * k m g suffixes (a bare number is bytes); booleans are yes/no.
 * An unknown key is a warning naming file:line; a bad value is an error
 * naming file:line and the key, and the load fails.
 *
 * `${name?text}` gives text when name is not empty, `${name:text}` when
 * it is; `$$` is a literal '$'. An unknown $name expands to nothing with
 * a warning; a reference loop is an error (the load fails).
 *
 * The configuration is process-global. Strings and lists returned by the
 * accessors belong to the configuration and stay valid until the next
 * successful conf_load() or conf_set(): do not keep them across a reload.
 */
#ifndef HERMOD_CONF_H
#define HERMOD_CONF_H

#include <stdio.h>

enum conf_type { CONF_STR, CONF_LIST, CONF_INT, CONF_SIZE, CONF_TIME, CONF_BOOL };

struct conf_def {
	const char *name;
	enum conf_type type;
	const char *def;	/* default, in config-file syntax */
	long long min, max;	/* bounds for numbers (after units) */
	const char *help;	/* one line, for hermod config and the man page */
};

enum conf_key {
#define CONF_KEY(id, type, def, min, max, help) C_##id,
#include "conf_keys.h"
#undef CONF_KEY
	CONF_NKEYS
};

extern const struct conf_def conf_defs[CONF_NKEYS];

/* Bounds: a line (also with its continuations joined, also a value after
 * $ expansion), and the whole file. Past them the load fails. */
#define CONF_LINE_MAX	(64 * 1024)
#define CONF_FILE_MAX	(4 * 1024 * 1024)

/* The file to read: the -c argument if not NULL, else $HERMOD_CONF, else
 * SYSCONFDIR "/hermod.conf". */
const char *conf_path(const char *arg);

/*
 * Read the file (NULL: defaults only). Diagnostics go to `err` (one line
 * each, "file:line: ...") when not NULL, else to the log. On error the
 * previous configuration stays in force and -1 is returned. A missing file
 * is an error unless missing_ok.
 */
int conf_load(const char *path, int missing_ok, FILE *err);
/* The same from memory; name is used in diagnostics (tests, fuzzing). */
int conf_load_mem(const char *name, const char *data, size_t len, FILE *err);

/* Override one key (e.g. a -o name=value option); -1 with a message in
 * err on a bad key or value. */
int conf_set(const char *name, const char *value, FILE *err);

/* Look a key up by name; -1 if unknown. */
int conf_lookup_key(const char *name);

/* Accessors. Values are fully $-expanded. */
const char *conf_str(enum conf_key k);
long long conf_num(enum conf_key k);	/* INT, SIZE (bytes), TIME (seconds) */
int conf_bool(enum conf_key k);
/* Was the key given in the file or by conf_set() (not its default)? */
int conf_is_set(enum conf_key k);
/* LIST: items split on commas and white space; NULL-terminated array. */
char *const *conf_list(enum conf_key k);
/* Is `item` (case-insensitively) one of the LIST's items? */
int conf_list_has(enum conf_key k, const char *item);

/* `hermod config`: print every key (or only those differing from their
 * defaults) as `name = value`, expanded when `expand`. */
void conf_print(FILE *out, int only_changed, int expand);
void conf_print_key(FILE *out, enum conf_key k, int expand);
/* A commented hermod.conf listing every key at its default. */
void conf_print_sample(FILE *out);
/* The KEYS section of hermod.conf(5), in man(7) format. */
void conf_print_man(FILE *out);

/* Parsers shared with the tables (exposed for tests and other files). */
int conf_parse_time(const char *s, long long *out);
int conf_parse_size(const char *s, long long *out);
int conf_parse_bool(const char *s, int *out);

#endif
