/*
 * Logging: syslog facility mail, or stderr when running in the foreground.
 * Four severities. Every line about a message goes through log_q*(), which
 * puts the queue id first ("QID: text"), as Postfix does, so that
 * grep QUEUEID follows a message through smtpd, queued and lmtpd.
 */
#ifndef HERMOD_LOG_H
#define HERMOD_LOG_H

#include <stdarg.h>
#include <stdnoreturn.h>

enum log_level { LOG_LVL_DEBUG, LOG_LVL_INFO, LOG_LVL_WARN, LOG_LVL_CRIT };

/* ident: program name; to_stderr: foreground mode; min: lowest level shown. */
void log_init(const char *ident, int to_stderr, enum log_level min);
void log_set_level(enum log_level min);
int log_level_parse(const char *s, enum log_level *out);

void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_crit(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_msg(enum log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void log_vmsg(enum log_level lvl, const char *fmt, va_list ap);

/* A line about one message: "QID: text". qid may be NULL ("NOQUEUE"). */
void log_q(enum log_level lvl, const char *qid, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define log_qinfo(qid, ...) log_q(LOG_LVL_INFO, (qid), __VA_ARGS__)
#define log_qwarn(qid, ...) log_q(LOG_LVL_WARN, (qid), __VA_ARGS__)

/* Internal bug or broken environment only, never for peer input. */
noreturn void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* fatal() with ": strerror(errno)" appended. */
noreturn void fatal_sys(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
