/*
 * hermod config: print the effective settings from the key table.
 *   -n  only the keys set in the file (postconf -n)
 *   -x  show values with $name expanded
 *   -m  print the KEYS section of hermod.conf(5) (used to build the page)
 *   -s  print a commented sample hermod.conf with every default
 *   NAME...  print only these keys (exit 1 if one is unknown)
 */
#include <stdio.h>
#include <unistd.h>

#include "conf.h"
#include "hermod.h"

static int
print_named(char **names, int expand)
{
	int rc = 0, k;

	for (; *names != NULL; names++) {
		if ((k = conf_lookup_key(*names)) < 0) {
			fprintf(stderr, "hermod config: unknown parameter %s\n", *names);
			rc = 1;
			continue;
		}
		conf_print_key(stdout, (enum conf_key)k, expand);
	}
	return rc;
}

int
cmd_config(int argc, char **argv)
{
	int changed = 0, expand = 0, man = 0, sample = 0, ch;

	while ((ch = getopt(argc, argv, "nxms")) != -1) {
		switch (ch) {
		case 'n': changed = 1; break;
		case 'x': expand = 1; break;
		case 'm': man = 1; break;
		case 's': sample = 1; break;
		default:
			fprintf(stderr, "usage: hermod config [-n] [-x] [-m] [-s] [NAME...]\n");
			return 2;
		}
	}
	if (man)
		conf_print_man(stdout);
	else if (sample)
		conf_print_sample(stdout);
	else if (optind < argc)
		return print_named(argv + optind, expand);
	else
		conf_print(stdout, changed, expand);
	return 0;
}
