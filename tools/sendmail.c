/*
 * sendmail(1) and mailq(1): the sendmail interface that cron, PHP, git
 * send-email, mutt and logwatch use. The message goes to queued's
 * submission socket over LMTP; queued acknowledges only once it is on
 * disk. When queued is not running, the same LMTP commands go into a file
 * in $queue_directory/maildrop (made durable, then renamed into place),
 * which queued plays into a submission session as the file's owner when
 * it runs again (queued/pickup.c). Only when that fails too does the
 * program exit 75 (EX_TEMPFAIL).
 *
 * The envelope sender is the invoking user (user@myhostname); -f/-r is
 * honoured only for trusted callers (root and the mail system's own
 * account). queued enforces the same rule by the socket peer's uid.
 */
#include <ctype.h>
#include <errno.h>
#include <libgen.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sysexits.h>
#include <unistd.h>

#include "conf.h"
#include "log.h"
#include "sendmail.h"
#include "xalloc.h"

#define REPLY_LINE_MAX 1024
#define REPLY_LINES_MAX 100

static const char *conf_file;

/* What goes into a command line: no control character, so that no value
 * can end the line and add a command of its own. */
static const char *
clean(const char *what, const char *v)
{
	for (const char *p = v; p != NULL && *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f) {
			fprintf(stderr, "sendmail: %s: control character in \"%s\"\n", what, v);
			exit(EX_DATAERR);
		}
	return v;
}

/* A DSN keyword or an ENVID: one word, so that no value can add
 * parameters of its own to MAIL or RCPT ("-N NEVER ORCPT=..."). */
static const char *
token(const char *what, const char *v)
{
	clean(what, v);
	if (strchr(v, ' ') != NULL) {
		fprintf(stderr, "sendmail: %s: space in \"%s\"\n", what, v);
		exit(EX_DATAERR);
	}
	return v;
}

/* One address as it goes between the angle brackets of MAIL or RCPT:
 * outside a quoted local part no space, bracket or comma, which would
 * end the path and add parameters ("a@b> NOTIFY=NEVER") or hide a
 * second address. */
static const char *
one_address(const char *what, const char *v)
{
	int quoted = 0;

	clean(what, v);
	for (const char *p = v; *p; p++) {
		if (*p == '\\' && quoted && p[1])
			p++;
		else if (*p == '"')
			quoted = !quoted;
		else if (!quoted && strchr(" <>,", *p) != NULL) {
			fprintf(stderr, "sendmail: %s: not one address: \"%s\"\n", what, v);
			exit(EX_DATAERR);
		}
	}
	return v;
}

void
submission_add_rcpt(struct submission *sub, const char *addr)
{
	one_address("recipient", addr);
	if (sub->nrcpts >= SENDMAIL_RCPT_MAX) {
		fprintf(stderr, "sendmail: too many recipients (limit %d)\n",
		    SENDMAIL_RCPT_MAX);
		exit(EX_DATAERR);
	}
	sub->rcpts = xrealloc(sub->rcpts, (sub->nrcpts + 1) * sizeof(char *));
	/* A bare local name gets @myhostname, as Postfix's myorigin does. */
	if (*addr && strchr(addr, '@') == NULL)
		sub->rcpts[sub->nrcpts++] = xasprintf("%s@%s", addr, sub->myhostname);
	else
		sub->rcpts[sub->nrcpts++] = xstrdup(addr);
}

/* Run a sibling program (hermod, newaliases) from our own directory. */
static void
exec_sibling(const char *prog, char **args, int nargs)
{
	char self[4096], path[4200];
	char **argv = xcalloc(nargs + 4, sizeof(char *));
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	int i = 0;

	if (n < 0)
		fatal_sys("readlink /proc/self/exe");
	self[n] = '\0';
	snprintf(path, sizeof(path), "%s/%s", dirname(self), prog);
	argv[i++] = (char *)prog;
	if (conf_file) {
		argv[i++] = "-c";
		argv[i++] = (char *)conf_file;
	}
	for (int j = 0; j < nargs; j++)
		argv[i++] = args[j];
	argv[i] = NULL;
	execv(path, argv);
	fprintf(stderr, "sendmail: cannot run %s: %s\n", path, strerror(errno));
	exit(EX_OSERR);
}

/* Read a (multi-line) reply; returns its code, text in `text`. */
static int
read_reply(FILE *in, char *text, size_t len)
{
	char line[REPLY_LINE_MAX];

	for (int i = 0; i < REPLY_LINES_MAX; i++) {
		if (fgets(line, sizeof(line), in) == NULL)
			return -1;
		line[strcspn(line, "\r\n")] = '\0';
		if (strlen(line) < 3 || !isdigit((unsigned char)line[0]) ||
		    !isdigit((unsigned char)line[1]) || !isdigit((unsigned char)line[2]))
			return -1;
		if (line[3] != '-') {
			snprintf(text, len, "%s", line);
			return atoi(line);
		}
	}
	return -1;
}

static int
command(FILE *out, FILE *in, char *text, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int
command(FILE *out, FILE *in, char *text, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfprintf(out, fmt, ap);
	va_end(ap);
	fputs("\r\n", out);
	if (fflush(out) == EOF)
		return -1;
	return read_reply(in, text, len);
}

/* The submission socket, or -1 (queued not running; errno set). */
static int
connect_queued(void)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd;

	if ((size_t)snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/submit",
	    conf_str(C_run_directory)) >= sizeof(sun.sun_path)) {
		fprintf(stderr, "sendmail: run_directory path too long\n");
		exit(EX_CONFIG);
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/* MAIL FROM with the DSN and body options given on the command line,
 * without its CRLF. */
static void
mail_cmd(const struct submission *sub, FILE *out)
{
	fprintf(out, "MAIL FROM:<%s>%s%s%s%s%s%s", sub->sender,
	    sub->ret ? " RET=" : "", sub->ret ? sub->ret : "",
	    sub->envid ? " ENVID=" : "", sub->envid ? sub->envid : "",
	    sub->body ? " BODY=" : "", sub->body ? sub->body : "");
}

/* The RCPT command of recipient i, without its CRLF. */
static void
rcpt_cmd(const struct submission *sub, int i, FILE *out)
{
	fprintf(out, "RCPT TO:<%s>%s%s", sub->rcpts[i], sub->notify ? " NOTIFY=" : "",
	    sub->notify ? sub->notify : "");
}

/*
 * queued is not running: the commands it would have read go into
 * maildrop/tNAME (mode 0644 in a directory nobody else can list), made
 * durable, renamed to mNAME for queued's pickup. Returns a sysexits code;
 * EX_TEMPFAIL when the maildrop cannot take it (why printed).
 */
static int
maildrop(struct submission *sub, FILE *msg, const char *why)
{
	char *dir = xasprintf("%s/maildrop", conf_str(C_queue_directory));
	char tname[64], mname[64];
	unsigned char rnd[12];
	int dfd = -1, fd = -1, rc = EX_TEMPFAIL;
	FILE *out = NULL;

	if (sub->nrcpts > conf_num(C_smtpd_recipient_limit)) {
		/* the pickup would refuse the file whole (452 4.5.3) */
		fprintf(stderr, "sendmail: too many recipients while queued is not "
		    "running (smtpd_recipient_limit %lld); the message was not sent\n",
		    conf_num(C_smtpd_recipient_limit));
		free(dir);
		return EX_DATAERR;
	}
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		goto fail;
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(tname + 1 + 2 * i, 3, "%02x", rnd[i]);
	tname[0] = 't';
	snprintf(mname, sizeof(mname), "m%s", tname + 1);
	if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
	    (fd = openat(dfd, tname, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
	    0644)) < 0 || fchmod(fd, 0644) < 0 || (out = fdopen(fd, "w")) == NULL)
		goto fail;
	fd = -1;
	mail_cmd(sub, out);
	fputs("\r\n", out);
	for (int i = 0; i < sub->nrcpts; i++) {
		rcpt_cmd(sub, i, out);
		fputs("\r\n", out);
	}
	fputs("DATA\r\n", out);
	off_t body = ftello(out);
	if (message_send_body(sub, msg, out) < 0 || fflush(out) == EOF)
		goto fail;
	/* queued would refuse it (552 5.3.4): say so now, as on the socket */
	if (ftello(out) - body > conf_num(C_message_size_limit)) {
		fprintf(stderr, "sendmail: message too big (message_size_limit %lld)\n",
		    conf_num(C_message_size_limit));
		rc = EX_DATAERR;
		errno = 0;
		goto fail;
	}
	if (fsync(fileno(out)) < 0 || renameat(dfd, tname, dfd, mname) < 0 ||
	    fsync(dfd) < 0)
		goto fail;
	fclose(out);
	close(dfd);
	if (sub->verbose)
		fprintf(stderr, "sendmail: queued is not running (%s); the message waits "
		    "in %s for it\n", why, dir);
	free(dir);
	return EX_OK;
fail:
	if (errno != 0)
		fprintf(stderr, "sendmail: queued is not running (%s) and %s cannot take "
		    "the message: %s; the message was not sent, try again later\n",
		    why, dir, strerror(errno));
	if (out != NULL) {
		fclose(out);
		unlinkat(dfd, tname, 0);
	} else if (fd >= 0) {
		close(fd);
		unlinkat(dfd, tname, 0);
	}
	if (dfd >= 0)
		close(dfd);
	free(dir);
	return rc;
}

/* The LMTP conversation; returns a sysexits code. */
static int
submit(struct submission *sub, FILE *msg)
{
	char text[REPLY_LINE_MAX];
	int fd = connect_queued(), code, accepted = 0, failed = 0;
	int *ok;
	FILE *out, *in;

	if (fd < 0) {
		if (errno != ENOENT && errno != ECONNREFUSED) {
			fprintf(stderr, "sendmail: cannot reach queued: %s; the message "
			    "was not sent, try again later\n", strerror(errno));
			return EX_TEMPFAIL;
		}
		return maildrop(sub, msg, strerror(errno));
	}
	ok = xcalloc(sub->nrcpts, sizeof(int));
	out = fdopen(dup(fd), "w");
	in = fdopen(fd, "r");
	if (out == NULL || in == NULL)
		fatal_sys("fdopen");
	if ((code = read_reply(in, text, sizeof(text))) != 220 ||
	    (code = command(out, in, text, sizeof(text), "LHLO %s", sub->myhostname)) != 250 ||
	    (mail_cmd(sub, out), code = command(out, in, text, sizeof(text), "%s", "")) != 250)
		goto refused;
	for (int i = 0; i < sub->nrcpts; i++) {
		rcpt_cmd(sub, i, out);
		code = command(out, in, text, sizeof(text), "%s", "");
		if (code == 250 || code == 251) {
			ok[i] = 1;
			accepted++;
		} else {
			fprintf(stderr, "sendmail: <%s>: %s\n", sub->rcpts[i], text);
			failed++;
		}
	}
	if (accepted == 0) {
		free(ok);
		return EX_NOUSER;
	}
	if ((code = command(out, in, text, sizeof(text), "DATA")) != 354)
		goto refused;
	if (message_send_body(sub, msg, out) < 0 || fflush(out) == EOF)
		goto lost;
	for (int i = 0; i < sub->nrcpts; i++) {
		if (!ok[i])
			continue;
		if ((code = read_reply(in, text, sizeof(text))) < 0)
			goto lost;
		if (code != 250) {
			fprintf(stderr, "sendmail: <%s>: %s\n", sub->rcpts[i], text);
			failed++;
		} else if (sub->verbose)
			fprintf(stderr, "sendmail: <%s>: %s\n", sub->rcpts[i], text);
	}
	command(out, in, text, sizeof(text), "QUIT");
	fclose(out);
	fclose(in);
	free(ok);
	return failed && failed >= sub->nrcpts ? EX_UNAVAILABLE : EX_OK;
refused:
	fprintf(stderr, "sendmail: queued refused the message: %s\n",
	    code < 0 ? "connection lost" : text);
	free(ok);
	return code >= 500 ? EX_UNAVAILABLE : EX_TEMPFAIL;
lost:
	fprintf(stderr, "sendmail: connection to queued lost; the message was not sent\n");
	free(ok);
	return EX_TEMPFAIL;
}

/* Trusted: root, or the mail system's own account. */
static int
trusted(void)
{
	struct passwd *pw;

	if (getuid() == 0)
		return 1;
	pw = getpwnam(conf_str(C_user));
	return pw != NULL && pw->pw_uid == getuid();
}

static char *
default_sender(const char *myhostname)
{
	struct passwd *pw = getpwuid(getuid());

	if (pw == NULL) {
		fprintf(stderr, "sendmail: who are you? (uid %d has no account)\n",
		    (int)getuid());
		exit(EX_NOUSER);
	}
	return xasprintf("%s@%s", pw->pw_name, myhostname);
}

static void
usage(void)
{
	fprintf(stderr, "usage: sendmail [-t] [-i] [-f sender] [-F name] "
	    "[-N dsn] [-R ret] [-V envid] [-v] [-bm|-bp|-bi|-bs|-q] [recipient ...]\n");
	exit(EX_USAGE);
}

/* The value of an option: the rest of this argument or the next one. */
static const char *
optval(char **argv, int *i, size_t skip)
{
	if (argv[*i][skip])
		return argv[*i] + skip;
	if (argv[*i + 1] == NULL)
		usage();
	return argv[++*i];
}

/*
 * Flags without a value, alone or clustered as getopt allows ("-ti" is
 * "-t -i", as cron jobs and scripts write them). -m, -n, -U and -G are
 * obsolete or no-ops for us. -1 for a letter that is not such a flag.
 */
static int
flags(const char *f, struct submission *sub)
{
	for (; *f != '\0'; f++) {
		switch (*f) {
		case 't': sub->extract = 1; break;
		case 'i': sub->ignore_dots = 1; break;
		case 'v': sub->verbose = 1; break;
		case 'm': case 'n': case 'U': case 'G': break;
		default: return -1;
		}
	}
	return 0;
}

int
main(int argc, char **argv)
{
	struct submission sub = { 0 };
	const char *from = NULL, *mode = "m";
	char *base = basename(argv[0]);
	int i;

	log_init("sendmail", 1, LOG_LVL_WARN);
	if (strcmp(base, "mailq") == 0)
		mode = "p";
	for (i = 1; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
		char *a = argv[i];

		if (strcmp(a, "--") == 0) {
			i++;
			break;
		}
		switch (a[1]) {
		case 't': case 'i': case 'v': case 'm': case 'n': case 'U': case 'G':
			if (flags(a + 1, &sub) < 0)
				usage();
			break;
		case 'f': case 'r': from = optval(argv, &i, 2); break;
		case 'F': sub.fullname = xstrdup(clean("-F", optval(argv, &i, 2))); break;
		case 'N': sub.notify = token("-N", optval(argv, &i, 2)); break;
		case 'R': sub.ret = token("-R", optval(argv, &i, 2)); break;
		case 'V': sub.envid = token("-V", optval(argv, &i, 2)); break;
		case 'B': sub.body = token("-B", optval(argv, &i, 2)); break;
		case 'C': conf_file = optval(argv, &i, 2); break;
		case 'b': mode = a + 2; break;
		case 'q': mode = "q"; break;
		case 'o':
			/* -oi is -i; every other -oX is accepted and ignored,
			 * as sendmail does. -o X takes no separate value. */
			if (a[2] == 'i')
				sub.ignore_dots = 1;
			break;
		case 'A': case 'h': case 'L': case 'O': case 'X':
			(void)optval(argv, &i, 2);	/* accepted, ignored */
			break;
		default:
			usage();
		}
	}
	if (conf_load(conf_path(conf_file), conf_file == NULL, stderr) < 0)
		return EX_CONFIG;
	sub.myhostname = conf_str(C_myhostname);
	switch (mode[0]) {
	case 'p': exec_sibling("hermod", (char *[]){ "queue" }, 1); break;
	case 'i': exec_sibling("newaliases", NULL, 0); break;
	case 'q': exec_sibling("hermod", (char *[]){ "flush" }, 1); break;
	case 's': exec_sibling("smtpd", (char *[]){ "-s" }, 1); break;
	case 'm': case 'd': case '\0': break;
	default:
		fprintf(stderr, "sendmail: unsupported mode -b%s\n", mode);
		return EX_USAGE;
	}
	if (from && trusted())
		sub.sender = strcmp(from, "<>") == 0 ? xstrdup("") : xstrdup(one_address("-f", from));
	else {
		if (from && sub.verbose)
			fprintf(stderr, "sendmail: -f %s ignored: not a trusted user\n", from);
		sub.sender = default_sender(sub.myhostname);
	}
	for (; i < argc; i++)	/* an address list, as sendmail takes it */
		submission_add_list(&sub, clean("recipient", argv[i]));
	if (message_read_headers(&sub, stdin) < 0)
		return EX_DATAERR;
	if (sub.nrcpts == 0) {
		fprintf(stderr, "sendmail: no recipients given%s\n",
		    sub.extract ? " (none in To, Cc or Bcc either)" : "");
		return EX_USAGE;
	}
	return submit(&sub, stdin);
}
