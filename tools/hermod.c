/*
 * hermod: the operator's command. Loads hermod.conf (-c FILE, else
 * $HERMOD_CONF, else the default path) and dispatches to a subcommand.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "hermod.h"
#include "log.h"

static const struct command {
	const char *name;
	int (*fn)(int, char **);
	int needs_conf_file;	/* 0: a missing file is fine (defaults) */
	const char *usage;
} commands[] = {
	{ "config", cmd_config, 0, "config [-n] [-x] [-m] [-s] [NAME...]  print the effective settings" },
	{ "lookup", cmd_lookup, 0, "lookup ADDRESS  where mail for ADDRESS goes (aliases, mailbox, owner)" },
	{ "passwd", cmd_passwd, 0, "passwd [-m yescrypt|sha512]  print a password hash for the users file" },
};

static void
usage(void)
{
	fprintf(stderr, "usage: hermod [-c FILE] COMMAND [ARGS]\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(stderr, "  %s\n", commands[i].usage);
	exit(2);
}

int
main(int argc, char **argv)
{
	const char *cfile = NULL;
	int ch;

	log_init("hermod", 1, LOG_LVL_INFO);
	while ((ch = getopt(argc, argv, "+c:")) != -1) {
		if (ch == 'c')
			cfile = optarg;
		else
			usage();
	}
	argc -= optind;
	argv += optind;
	if (argc < 1)
		usage();
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		const struct command *c = &commands[i];

		if (strcmp(argv[0], c->name) != 0)
			continue;
		if (conf_load(conf_path(cfile), cfile == NULL && !c->needs_conf_file,
		    stderr) < 0)
			return 1;
		optind = 1;
		return c->fn(argc, argv);
	}
	fprintf(stderr, "hermod: unknown command '%s'\n", argv[0]);
	usage();
}
