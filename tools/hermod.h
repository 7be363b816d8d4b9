/*
 * The hermod command: one entry per subcommand (hermod.c holds the table).
 * Each subcommand gets argc/argv starting at its own name and the
 * configuration already loaded, and returns the exit status.
 */
#ifndef HERMOD_TOOL_H
#define HERMOD_TOOL_H

int cmd_config(int argc, char **argv);
int cmd_lookup(int argc, char **argv);	/* hermod_lookup.c */
int cmd_passwd(int argc, char **argv);	/* hermod_passwd.c */

#endif
