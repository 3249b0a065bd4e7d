/*
 * log.c - the broker's log: one line per event, in the words of the ITMS
 * troubleshooting guide ("Received Task Server list request", "Sent Task
 * Server list", "Registration failed"), to stderr or to the embedder's sink
 * (tsl serve --syslog passes one that calls syslog(3)).
 *
 * Each line goes out in a single write(2), so lines from several threads
 * never interleave.
 *
 * Used by: every broker file.  Needs: broker_internal.h.
 */
#include "broker_internal.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *const level_names[] = {"error", "warning", "info", "debug"};

bool broker_log_enabled(const tsl_broker *b, tsl_log_level level)
{
    return level <= b->cfg.log_level;
}

const char *log_str(const char *s)
{
    return s && *s ? s : "-";
}

void broker_log_line(const tsl_broker *b, tsl_log_level level, const char *line)
{
    if (!broker_log_enabled(b, level))
        return;
    if (b->cfg.log_fn) {
        b->cfg.log_fn(b->cfg.log_ud, level, line);
        return;
    }
    char buf[4096], stamp[32];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    int n = snprintf(buf, sizeof buf, "%s.%03ldZ tsl[%ld] %s: %s\n", stamp, ts.tv_nsec / 1000000,
                     (long)getpid(), level_names[level], line);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof buf) { /* cut long lines, keep the newline */
        n = sizeof buf - 1;
        buf[n - 1] = '\n';
    }
    ssize_t w = write(STDERR_FILENO, buf, (size_t)n);
    (void)w; /* nowhere to report a failing stderr */
}

void broker_log(const tsl_broker *b, tsl_log_level level, const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    if (!broker_log_enabled(b, level))
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    broker_log_line(b, level, line);
}
