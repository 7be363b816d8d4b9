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

/* hermod_run.c: the supervisor */
int cmd_start(int argc, char **argv);
int cmd_stop(int argc, char **argv);
int cmd_reload(int argc, char **argv);
int cmd_status(int argc, char **argv);

/* hermod_queue.c: queued's control socket */
int cmd_queue(int argc, char **argv);
int cmd_show(int argc, char **argv);
int cmd_hold(int argc, char **argv);
int cmd_release(int argc, char **argv);
int cmd_delete(int argc, char **argv);
int cmd_flush(int argc, char **argv);
long queue_count(void);	/* -1: queued cannot be asked */

/* The -c argument given to hermod, or NULL. */
extern const char *hermod_conf_arg;

#endif
