/*
 * hermod config: print the effective settings from the key table.
 *   -n  only the keys that differ from their defaults (postconf -n)
 *   -x  show values with $name expanded
 *   -m  print the KEYS section of hermod.conf(5) (used to build the page)
 */
#include <stdio.h>
#include <unistd.h>

#include "conf.h"
#include "hermod.h"

int
cmd_config(int argc, char **argv)
{
	int changed = 0, expand = 0, man = 0, ch;

	while ((ch = getopt(argc, argv, "nxm")) != -1) {
		switch (ch) {
		case 'n': changed = 1; break;
		case 'x': expand = 1; break;
		case 'm': man = 1; break;
		default:
			fprintf(stderr, "usage: hermod config [-n] [-x] [-m]\n");
			return 2;
		}
	}
	if (man)
		conf_print_man(stdout);
	else
		conf_print(stdout, changed, expand);
	return 0;
}
