/*
 * Logging to syslog (facility mail) or to stderr in the foreground.
 * One line per event; lines are cut at LOG_LINE_MAX and control bytes are
 * escaped, so a peer cannot forge log lines with CR/LF in what it sends.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define LOG_LINE_MAX 2048

static const char *log_ident = "hermod";
static int log_stderr = 1;
static enum log_level log_min = LOG_LVL_INFO;

static const struct {
	const char *name;
	int prio;
} levels[] = {
	[LOG_LVL_DEBUG] = { "debug", LOG_DEBUG },
	[LOG_LVL_INFO] = { "info", LOG_INFO },
	[LOG_LVL_WARN] = { "warning", LOG_WARNING },
	[LOG_LVL_CRIT] = { "crit", LOG_CRIT },
};

void
log_init(const char *ident, int to_stderr, enum log_level min)
{
	log_ident = ident;
	/* A supervisor that detached runs its daemons in the foreground (so
	 * they stay its children) but wants their lines in syslog. */
	if (to_stderr && getenv("HERMOD_LOG_SYSLOG") != NULL)
		to_stderr = 0;
	log_stderr = to_stderr;
	log_min = min;
	if (!to_stderr)
		openlog(ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void
log_set_level(enum log_level min)
{
	log_min = min;
}

int
log_level_parse(const char *s, enum log_level *out)
{
	for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
		if (strcasecmp(s, levels[i].name) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

/* Replace bytes that would break a log line with '?'. */
static void
sanitize(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = '?';
}

void
log_vmsg(enum log_level lvl, const char *fmt, va_list ap)
{
	char line[LOG_LINE_MAX];
	int saved = errno;

	if (lvl < log_min)
		return;
	vsnprintf(line, sizeof(line), fmt, ap);
	sanitize(line);
	if (log_stderr) {
		struct timespec ts;
		struct tm tm;
		char stamp[32];

		clock_gettime(CLOCK_REALTIME, &ts);
		localtime_r(&ts.tv_sec, &tm);
		strftime(stamp, sizeof(stamp), "%H:%M:%S", &tm);
		fprintf(stderr, "%s.%03ld %s[%d]: %s%s%s\n", stamp,
		    ts.tv_nsec / 1000000, log_ident, (int)getpid(),
		    lvl >= LOG_LVL_WARN ? levels[lvl].name : "",
		    lvl >= LOG_LVL_WARN ? ": " : "", line);
	} else {
		syslog(levels[lvl].prio, "%s%s%s",
		    lvl >= LOG_LVL_WARN ? levels[lvl].name : "",
		    lvl >= LOG_LVL_WARN ? ": " : "", line);
	}
	errno = saved;
}

void
log_msg(enum log_level lvl, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(lvl, fmt, ap);
	va_end(ap);
}

#define LOG_FN(name, lvl)                   \
	void name(const char *fmt, ...)     \
	{                                   \
		va_list ap;                 \
		va_start(ap, fmt);          \
		log_vmsg(lvl, fmt, ap);     \
		va_end(ap);                 \
	}
LOG_FN(log_debug, LOG_LVL_DEBUG)
LOG_FN(log_info, LOG_LVL_INFO)
LOG_FN(log_warn, LOG_LVL_WARN)
LOG_FN(log_crit, LOG_LVL_CRIT)

void
log_q(enum log_level lvl, const char *qid, const char *fmt, ...)
{
	char text[LOG_LINE_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	log_msg(lvl, "%s: %s", qid ? qid : "NOQUEUE", text);
}

void
fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(LOG_LVL_CRIT, fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatal_sys(const char *fmt, ...)
{
	char text[LOG_LINE_MAX];
	int e = errno;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	log_crit("%s: %s", text, strerror(e));
	exit(1);
}
