/*
 * log.c - the broker's log: one line per event, in the words of the ITMS
 * troubleshooting guide ("Received Task Server list request", "Sent Task
 * Server list", "Registration failed"), to stderr or to the embedder's sink
 * (tsl serve --syslog passes one that calls syslog(3)).
 *
 * Events and errors go out at once, each line in a single write(2), so
 * lines from several threads never interleave.  The per-request lines of
 * the list route (two a request at info) would cost a worker two write(2)
 * calls a request, about a fifth of the broker's rate: on stderr they are
 * batched per worker instead, in a buffer written out whole when it fills
 * (LOG_BATCH bytes), every LOG_FLUSH_MS by a timer on the worker's loop,
 * before any event line the same worker writes (so one thread's lines keep
 * their order), and when the worker stops (SIGTERM loses none).  A batch
 * ends on a line boundary, so lines never interleave either.
 *
 * Used by: every broker file.  Needs: broker_internal.h.
 */
#include "broker_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 4096   /* longer lines are cut, keeping the newline */
#define LOG_BATCH (64 * 1024)
#define LOG_FLUSH_MS 200

static const char *const level_names[] = {"error", "warning", "info", "debug"};

/* The calling worker's batch (NULL on the control thread and in embedders'
 * threads), and the formatted second of its last line: gmtime_r and
 * strftime once a second, not once a line. */
static _Thread_local tsl_buf *tl_batch;
static _Thread_local struct {
    time_t sec;
    char text[24];
    char pid[32];
} tl_stamp;

bool broker_log_enabled(const tsl_broker *b, tsl_log_level level)
{
    return level <= b->cfg.log_level;
}

const char *log_str(const char *s)
{
    return s && *s ? s : "-";
}

static void write_all(const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return; /* nowhere to report a failing stderr */
        p += w;
        n -= (size_t)w;
    }
}

/* Formats "STAMP tsl[PID] LEVEL: LINE\n" into dst (cap bytes, at least
 * 64); returns its length, cut to cap - 1 with the newline kept.  No
 * printf and no syscall: the prefix up to the seconds and the pid are
 * formatted once a second per thread (getpid(2) is a system call). */
static size_t format_line(char *dst, size_t cap, tsl_log_level level, const char *line)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (ts.tv_sec != tl_stamp.sec || !tl_stamp.text[0]) {
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        strftime(tl_stamp.text, sizeof tl_stamp.text, "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(tl_stamp.pid, sizeof tl_stamp.pid, "Z tsl[%ld] ", (long)getpid());
        tl_stamp.sec = ts.tv_sec;
    }
    long ms = ts.tv_nsec / 1000000;
    char head[96];
    size_t h = strlen(tl_stamp.text);
    memcpy(head, tl_stamp.text, h);
    head[h++] = '.';
    head[h++] = (char)('0' + ms / 100);
    head[h++] = (char)('0' + ms / 10 % 10);
    head[h++] = (char)('0' + ms % 10);
    size_t p = strlen(tl_stamp.pid), l = strlen(level_names[level]);
    memcpy(head + h, tl_stamp.pid, p);
    h += p;
    memcpy(head + h, level_names[level], l);
    h += l;
    head[h++] = ':';
    head[h++] = ' ';
    memcpy(dst, head, h); /* cap >= 64 > h */
    size_t n = strlen(line);
    if (n > cap - h - 1)
        n = cap - h - 1;
    memcpy(dst + h, line, n);
    n += h;
    if (n == cap - 1)
        n--; /* cut: keep the newline */
    dst[n++] = '\n';
    dst[n] = '\0';
    return n;
}

static void flush_batch(tsl_buf *q)
{
    if (q && q->len) {
        write_all(q->ptr, q->len);
        tsl_buf_clear(q);
    }
}

void broker_log_line(const tsl_broker *b, tsl_log_level level, const char *line)
{
    if (!broker_log_enabled(b, level))
        return;
    if (b->cfg.log_fn) {
        b->cfg.log_fn(b->cfg.log_ud, level, line);
        return;
    }
    char buf[LOG_LINE_MAX];
    size_t n = format_line(buf, sizeof buf, level, line);
    flush_batch(tl_batch); /* this thread's request lines came first */
    write_all(buf, n);
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

void broker_log_request(bworker *w, const char *line)
{
    const tsl_broker *b = w->b;
    if (!broker_log_enabled(b, TSL_LOG_INFO))
        return;
    tsl_buf *q = &w->logq;
    if (b->cfg.log_fn || tl_batch != q || q->cap < LOG_BATCH + LOG_LINE_MAX + 1) {
        broker_log_line(b, TSL_LOG_INFO, line); /* a sink, or no batch */
        return;
    }
    /* the buffer was sized at setup: appending never allocates */
    q->len += format_line(q->ptr + q->len, LOG_LINE_MAX, TSL_LOG_INFO, line);
    q->ptr[q->len] = '\0';
    if (q->len >= LOG_BATCH)
        flush_batch(q);
}

static void on_log_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    flush_batch(&((bworker *)arg)->logq);
}

int broker_log_worker_setup(bworker *w)
{
    int err = tsl_buf_grow(&w->logq, LOG_BATCH + LOG_LINE_MAX);
    if (err < 0)
        return err;
    struct timeval every = {0, LOG_FLUSH_MS * 1000};
    if (!(w->logflush_ev = event_new(w->base, -1, EV_PERSIST, on_log_flush, w)) ||
        event_add(w->logflush_ev, &every) < 0)
        return tsl_seterr(TSL_ERROR, "cannot create the log flush timer");
    return 0;
}

void broker_log_worker_enter(bworker *w)
{
    tl_batch = &w->logq;
}

void broker_log_worker_leave(bworker *w)
{
    flush_batch(&w->logq);
    tl_batch = NULL;
}

void broker_log_worker_free(bworker *w)
{
    flush_batch(&w->logq); /* a worker that never ran its loop */
    if (w->logflush_ev)
        event_free(w->logflush_ev);
    w->logflush_ev = NULL;
    tsl_buf_free(&w->logq);
}
