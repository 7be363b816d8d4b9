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

const char *hermod_conf_arg;

static const struct command {
	const char *name;
	int (*fn)(int, char **);
	int needs_conf_file;	/* 0: a missing file is fine (defaults) */
	const char *usage;
} commands[] = {
	{ "config", cmd_config, 0, "config [-n] [-x] [-m] [-s] [NAME...]  print the effective settings" },
	{ "lookup", cmd_lookup, 0, "lookup ADDRESS  where mail for ADDRESS goes (aliases, mailbox, owner)" },
	{ "start", cmd_start, 0, "start [-f]  start and supervise lmtpd, queued and smtpd" },
	{ "stop", cmd_stop, 0, "stop  stop the daemons gracefully" },
	{ "reload", cmd_reload, 0, "reload  re-read configuration, tables and certificates" },
	{ "status", cmd_status, 0, "status  daemons, listeners and queue size" },
	{ "queue", cmd_queue, 0, "queue  list the queue (as mailq)" },
	{ "show", cmd_show, 0, "show ID  print a queued message" },
	{ "hold", cmd_hold, 0, "hold ID|ALL  keep messages from delivery" },
	{ "release", cmd_release, 0, "release ID|ALL  release held messages" },
	{ "delete", cmd_delete, 0, "delete ID|ALL  remove messages from the queue" },
	{ "flush", cmd_flush, 0, "flush [ID]  retry deferred mail now" },
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
		hermod_conf_arg = cfile;
		optind = 1;
		return c->fn(argc, argv);
	}
	fprintf(stderr, "hermod: unknown command '%s'\n", argv[0]);
	usage();
}
