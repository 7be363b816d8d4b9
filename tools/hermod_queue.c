/*
 * hermod queue (mailq), show, hold, release, delete, flush: clients of
 * queued's control socket (run_directory/control). The protocol is a line
 * per command; answers start with "+OK" or "-ERR", and listings end with
 * a line holding a single "." (queued(8)). The queue listing uses
 * Postfix's mailq layout, which admins' eyes and scripts know.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "hermod.h"
#include "xalloc.h"

#define CONTROL_REPLY_MAX 65536

struct control {
	FILE *in;
	FILE *out;
};

/* Connect to queued; -1 (with a message unless quiet) when it is down. */
static int
control_open(struct control *c, int quiet)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd;

	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/control",
	    conf_str(C_run_directory));
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		if (!quiet)
			fprintf(stderr, "hermod: cannot reach queued at %s: %s\n",
			    sun.sun_path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	c->out = fdopen(dup(fd), "w");
	c->in = fdopen(fd, "r");
	if (c->in == NULL || c->out == NULL) {
		perror("hermod: fdopen");
		return -1;
	}
	return 0;
}

static void
control_close(struct control *c)
{
	fclose(c->in);
	fclose(c->out);
}

/* Read one line without its LF into line (cap bytes); -1 at EOF. */
static int
control_line(struct control *c, char *line, size_t cap)
{
	if (fgets(line, (int)cap, c->in) == NULL)
		return -1;
	line[strcspn(line, "\n")] = '\0';
	return 0;
}

/* One whole line however long (a message line can be longer than any
 * buffer: cut, its rest would be read as a line of its own, and a lone
 * "." there ended the listing). *line is the caller's, reused; -1 at EOF. */
static int
control_line_any(struct control *c, char **line, size_t *cap)
{
	ssize_t n = getline(line, cap, c->in);

	if (n < 0)
		return -1;
	if (n > 0 && (*line)[n - 1] == '\n')
		(*line)[n - 1] = '\0';
	return 0;
}

/*
 * Text for a terminal: control characters (C0 but tab when keep_tab, DEL,
 * and the C1 range, U+0080..U+009F, which terminals take as ESC
 * sequences too) and bytes that are not UTF-8 become '?'. Addresses and
 * message text are the senders' words; printed raw they could move the
 * cursor, rewrite what the admin sees or retitle the window.
 */
static void
put_safe(const char *s, int keep_tab)
{
	const unsigned char *p = (const unsigned char *)s;

	while (*p != '\0') {
		size_t n = *p < 0x80 ? 1 : (*p & 0xE0) == 0xC0 ? 2 :
		    (*p & 0xF0) == 0xE0 ? 3 : (*p & 0xF8) == 0xF0 ? 4 : 0;
		size_t k = 1;

		while (k < n && (p[k] & 0xC0) == 0x80)
			k++;
		if (n == 0 || k < n || (n == 2 && *p < 0xC2) ||
		    (n == 1 && (*p < 32 || *p == 127) && !(keep_tab && *p == '\t')) ||
		    (n == 2 && *p == 0xC2 && p[1] < 0xA0)) {
			putchar('?');
			p += k;
			continue;
		}
		fwrite(p, 1, n, stdout);
		p += n;
	}
}

/* Send a command and read the status line; 0 for +OK, -1 for -ERR or a
 * lost connection (the message printed). The +OK text goes to status. */
static int
control_cmd(struct control *c, const char *cmd, const char *arg, char *status,
    size_t cap)
{
	fprintf(c->out, "%s%s%s\n", cmd, arg ? " " : "", arg ? arg : "");
	if (fflush(c->out) == EOF || control_line(c, status, cap) < 0) {
		fprintf(stderr, "hermod: queued closed the connection\n");
		return -1;
	}
	if (strncmp(status, "+OK", 3) != 0) {
		fprintf(stderr, "hermod: %s\n", strncmp(status, "-ERR ", 5) == 0 ?
		    status + 5 : status);
		return -1;
	}
	return 0;
}

/* Split a tab-separated record in place; returns the field count. */
static int
fields(char *line, char **f, int max)
{
	int n = 0;

	while (n < max) {
		f[n++] = line;
		if ((line = strchr(line, '\t')) == NULL)
			break;
		*line++ = '\0';
	}
	return n;
}

struct mailq_totals {
	long long bytes;
	long count;
};

/* One M or R record of the listing, in Postfix's mailq layout. */
static void
mailq_record(char *line, struct mailq_totals *t)
{
	char *f[8];
	int n = fields(line, f, 8);

	if (f[0][0] == 'M' && n >= 6) {
		char when[32], mark;
		time_t arrival = (time_t)strtoll(f[3], NULL, 10);
		struct tm tm;

		if (t->count)
			printf("\n");
		localtime_r(&arrival, &tm);
		strftime(when, sizeof(when), "%a %b %e %H:%M:%S", &tm);
		mark = strcmp(f[4], "active") == 0 ? '*' : strcmp(f[4], "hold") == 0 ? '!' : ' ';
		printf("%-10s%c %8s %-20s  ", f[1], mark, f[2], when);
		put_safe(f[5][0] ? f[5] : "MAILER-DAEMON", 0);
		printf("\n");
		t->bytes += strtoll(f[2], NULL, 10);
		t->count++;
	} else if (f[0][0] == 'R' && n >= 5 && strcmp(f[2], "pending") == 0) {
		if (f[4][0] && strcmp(f[4], "-") != 0) {
			printf("%43s(", "");
			put_safe(f[4], 0);
			printf(")\n");
		}
		printf("%43s", "");
		put_safe(f[1], 0);
		printf("\n");
	}
}

int
cmd_queue(int argc, char **argv)
{
	char status[CONTROL_REPLY_MAX], *line = NULL;
	size_t cap = 0;
	struct mailq_totals t = { 0, 0 };
	struct control c;
	int header = 0;

	(void)argc;
	(void)argv;
	if (control_open(&c, 0) < 0 || control_cmd(&c, "list", NULL, status, sizeof(status)) < 0)
		return 1;
	while (control_line_any(&c, &line, &cap) == 0 && strcmp(line, ".") != 0) {
		if (!header++)
			printf("-Queue ID-- --Size-- ----Arrival Time---- -Sender/Recipient-------\n");
		mailq_record(line, &t);
	}
	free(line);
	control_close(&c);
	if (t.count == 0)
		printf("Mail queue is empty\n");
	else
		printf("\n-- %lld Kbytes in %ld Request%s.\n", (t.bytes + 1023) / 1024,
		    t.count, t.count == 1 ? "" : "s");
	return 0;
}

/* An M or R record of `show`, as header lines. */
static void
show_record(char *line)
{
	char *f[8];
	int n = fields(line, f, 8);

	if (line[0] == 'M' && n >= 6) {
		printf("Queue-ID: %s\nSize: %s\nStatus: %s\nSender: <", f[1], f[2], f[4]);
		put_safe(f[5], 0);
		printf(">\n");
	} else if (line[0] == 'R' && n >= 5) {
		printf("Recipient: <");
		put_safe(f[1], 0);
		printf("> %s%s%s\n", f[2], strcmp(f[3], "-") ? " dsn=" : "",
		    strcmp(f[3], "-") ? f[3] : "");
		if (f[4][0]) {
			printf("  Reason: ");
			put_safe(f[4], 0);
			printf("\n");
		}
	}
}

/* hermod show ID: the envelope summary, then the message. The records
 * come before the first blank line only: after it, a line that looks
 * like one is the sender's text. On a terminal the text is made
 * harmless as the addresses are; into a pipe it goes as it is. */
int
cmd_show(int argc, char **argv)
{
	char status[CONTROL_REPLY_MAX], *line = NULL;
	size_t cap = 0;
	struct control c;
	int in_text = 0, tty = isatty(STDOUT_FILENO);

	if (argc != 2) {
		fprintf(stderr, "usage: hermod show ID\n");
		return 2;
	}
	if (control_open(&c, 0) < 0 || control_cmd(&c, "show", argv[1], status, sizeof(status)) < 0)
		return 1;
	while (control_line_any(&c, &line, &cap) == 0 && strcmp(line, ".") != 0) {
		char *text = line[0] == '.' ? line + 1 : line;	/* dot-stuffed */

		if (!in_text && line[0] == '\0')
			in_text = 1;
		if (!in_text)
			show_record(line);
		else if (tty)
			put_safe(text, 1);
		else
			fputs(text, stdout);
		if (in_text)
			putchar('\n');
	}
	free(line);
	control_close(&c);
	return 0;
}

/* hold / release / delete / flush ID|ALL */
static int
simple_command(const char *cmd, const char *verb, int argc, char **argv, int arg_optional)
{
	char line[CONTROL_REPLY_MAX];
	struct control c;

	if (argc > 2 || (argc < 2 && !arg_optional)) {
		fprintf(stderr, "usage: hermod %s %s\n", cmd, arg_optional ? "[ID]" : "ID|ALL");
		return 2;
	}
	if (control_open(&c, 0) < 0 ||
	    control_cmd(&c, cmd, argc == 2 ? argv[1] : NULL, line, sizeof(line)) < 0)
		return 1;
	control_close(&c);
	printf("%s: %s\n", verb, line[3] ? line + 4 : "done");
	return 0;
}

int cmd_hold(int argc, char **argv) { return simple_command("hold", "held", argc, argv, 0); }
int cmd_release(int argc, char **argv) { return simple_command("release", "released", argc, argv, 0); }
int cmd_delete(int argc, char **argv) { return simple_command("delete", "deleted", argc, argv, 0); }
int cmd_flush(int argc, char **argv) { return simple_command("flush", "flushed", argc, argv, 1); }

/* Messages in the queue, or -1 when queued cannot be asked. */
long
queue_count(void)
{
	char line[CONTROL_REPLY_MAX];
	struct control c;
	long n = -1;

	if (control_open(&c, 1) < 0)
		return -1;
	if (control_cmd(&c, "stats", NULL, line, sizeof(line)) == 0)
		while (control_line(&c, line, sizeof(line)) == 0 && strcmp(line, ".") != 0)
			if (strncmp(line, "messages ", 9) == 0)
				n = strtol(line + 9, NULL, 10);
	control_close(&c);
	return n;
}
