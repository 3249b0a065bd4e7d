/*
 * http_client.c - one HTTP/1.1 exchange over a bufferevent (see
 * http_client.h).  The request always says "Connection: close"; the
 * response ends at its Content-Length, or at end of stream (chunked bodies
 * are decoded then).  Every way an exchange ends goes through finish(),
 * which calls back once and frees.
 */
#include "http_client.h"

#include "common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

struct ahttp {
    struct bufferevent *bev;
    struct event *defer;   /* reports a failure to start from the loop */
    ahttp_cb cb;
    void *arg;
    const char *defer_error;
    bool in_callback;      /* finish() is running: cancel is a no-op */
    bool headers_done;
    bool chunked;
    aclock *clock;
    atimer *t_timeout;     /* since the start or the last data */
    double timeout;        /* on the clock */
    bool counted;          /* in the clock's exchanges in flight */
    int status;
    long long content_length; /* -1: until end of stream */
    size_t body_off;       /* where the body starts in the input buffer */
};

/* ------------------------------------------------------------------------
 * Finishing
 * ---------------------------------------------------------------------- */

static void destroy(ahttp *h)
{
    if (h->bev)
        bufferevent_free(h->bev);
    if (h->defer)
        event_free(h->defer);
    atimer_free(h->t_timeout);
    if (h->counted)
        aclock_track(h->clock, -1);
    free(h);
}

static void finish(ahttp *h, int status, const char *error, const char *body, size_t len)
{
    ahttp_result r = {status, error, body ? body : "", body ? len : 0};
    h->in_callback = true;
    /* the socket goes first, so a callback that starts the next exchange
     * does not hold two descriptors */
    if (h->bev) {
        bufferevent_free(h->bev);
        h->bev = NULL;
    }
    if (h->cb)
        h->cb(&r, h->arg);
    destroy(h);
}

static void finish_error(ahttp *h, const char *error)
{
    finish(h, 0, error, NULL, 0);
}

/* Decodes a chunked body in place; returns its length or -1 when malformed. */
static long long dechunk(char *p, size_t len)
{
    size_t in = 0, out = 0;
    for (;;) {
        char *end;
        if (in >= len)
            return -1;
        unsigned long long n = strtoull(p + in, &end, 16);
        char *eol = memchr(p + in, '\n', len - in);
        if (end == p + in || !eol)
            return -1;
        in = (size_t)(eol - p) + 1;
        if (n == 0)
            return (long long)out;
        if (n > len - in)
            return -1;
        memmove(p + out, p + in, (size_t)n);
        out += (size_t)n;
        in += (size_t)n;
        if (in < len && p[in] == '\r')
            in++;
        if (in < len && p[in] == '\n')
            in++;
    }
}

/* Hands the body (the input from body_off on) to the callback. */
static void finish_body(ahttp *h, size_t bodylen)
{
    struct evbuffer *in = bufferevent_get_input(h->bev);
    char *body = malloc(bodylen + 1);
    if (!body) {
        finish_error(h, "out of memory");
        return;
    }
    evbuffer_drain(in, h->body_off);
    if (evbuffer_remove(in, body, bodylen) != (int)bodylen) {
        free(body);
        finish_error(h, "short read");
        return;
    }
    body[bodylen] = '\0';
    if (h->chunked) {
        long long n = dechunk(body, bodylen);
        if (n < 0) {
            free(body);
            finish_error(h, "malformed chunked response");
            return;
        }
        bodylen = (size_t)n;
        body[bodylen] = '\0';
    }
    finish(h, h->status, NULL, body, bodylen);
    free(body);
}

/* ------------------------------------------------------------------------
 * Reading the response
 * ---------------------------------------------------------------------- */

/* Parses the status line and the headers we need; false when malformed. */
static bool parse_headers(ahttp *h, const char *p, size_t len)
{
    int major, minor, status;
    if (sscanf(p, "HTTP/%d.%d %d", &major, &minor, &status) != 3 || status < 100 || status > 999)
        return false;
    h->status = status;
    h->content_length = -1;
    const char *line = memchr(p, '\n', len);
    while (line && (size_t)(line - p) + 1 < len) {
        line++;
        size_t rest = len - (size_t)(line - p);
        const char *eol = memchr(line, '\n', rest);
        size_t llen = eol ? (size_t)(eol - line) : rest;
        if (llen >= 15 && strncasecmp(line, "Content-Length:", 15) == 0) {
            char *end;
            long long n = strtoll(line + 15, &end, 10);
            if (n < 0 || end == line + 15)
                return false;
            h->content_length = n;
        } else if (llen >= 18 && strncasecmp(line, "Transfer-Encoding:", 18) == 0) {
            for (size_t i = 18; i + 7 <= llen; i++)
                if (strncasecmp(line + i, "chunked", 7) == 0)
                    h->chunked = true;
        }
        line = eol;
    }
    if (h->chunked)
        h->content_length = -1;
    return true;
}

/* Advances the parse with what has arrived; at end of stream (eof) the
 * response must be complete.  Returns true when the exchange finished
 * (and h is freed). */
static bool progress(ahttp *h, bool eof)
{
    struct evbuffer *in = bufferevent_get_input(h->bev);
    size_t have = evbuffer_get_length(in);

    if (!h->headers_done) {
        struct evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
        if (end.pos < 0) {
            if (have > 64 * 1024) {
                finish_error(h, "response headers too large");
                return true;
            }
            if (eof) {
                finish_error(h, have ? "truncated response" : "connection closed");
                return true;
            }
            return false;
        }
        size_t hlen = (size_t)end.pos + 4;
        const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)hlen);
        char *copy = p ? malloc(hlen + 1) : NULL;
        if (!copy) {
            finish_error(h, "out of memory");
            return true;
        }
        memcpy(copy, p, hlen);
        copy[hlen] = '\0';
        bool ok = parse_headers(h, copy, hlen);
        free(copy);
        if (!ok) {
            finish_error(h, "malformed response");
            return true;
        }
        h->headers_done = true;
        h->body_off = hlen;
        if (h->content_length > (long long)AHTTP_MAX_BODY) {
            finish_error(h, "response too large");
            return true;
        }
    }
    size_t body = have - h->body_off;
    if (body > AHTTP_MAX_BODY) {
        finish_error(h, "response too large");
        return true;
    }
    if (h->content_length >= 0 && body >= (size_t)h->content_length) {
        finish_body(h, (size_t)h->content_length);
        return true;
    }
    if (eof) {
        if (h->content_length >= 0)
            finish_error(h, "truncated response");
        else
            finish_body(h, body);
        return true;
    }
    return false;
}

static void on_read(struct bufferevent *bev, void *arg)
{
    ahttp *h = arg;
    (void)bev;
    if (h->t_timeout)
        atimer_add(h->t_timeout, h->timeout);
    progress(h, false);
}

static const char *socket_error_text(int err)
{
    switch (err) {
    case ECONNREFUSED:
        return "connection refused";
    case ECONNRESET:
        return "connection reset";
    case ETIMEDOUT:
        return "timeout";
    case EHOSTUNREACH:
    case ENETUNREACH:
        return "unreachable";
    default:
        return "connection error";
    }
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    ahttp *h = arg;
    (void)bev;
    if (what & BEV_EVENT_CONNECTED)
        return;
    if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR))
        progress(h, true);
    else
        finish_error(h, socket_error_text(EVUTIL_SOCKET_ERROR()));
}

/* No byte of the response for `timeout` seconds of the clock. */
static void on_timeout(void *arg)
{
    finish_error(arg, "timeout");
}

/* The loop's report of a connect that failed synchronously. */
static void on_defer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    ahttp *h = arg;
    finish_error(h, h->defer_error);
}

/* ------------------------------------------------------------------------
 * Starting
 * ---------------------------------------------------------------------- */

int ahttp_query_escape(char *dst, size_t n, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                     c == '-' || c == '_' || c == '.' || c == '~' || c == ':';
        if (plain) {
            if (o + 1 >= n)
                return 0;
            dst[o++] = (char)c;
        } else {
            if (o + 3 >= n)
                return 0;
            dst[o++] = '%';
            dst[o++] = hex[c >> 4];
            dst[o++] = hex[c & 15];
        }
    }
    if (o >= n)
        return 0;
    dst[o] = '\0';
    return 1;
}

static int parse_addr(struct sockaddr_storage *ss, socklen_t *sslen, const char *host, int port)
{
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    memset(ss, 0, sizeof *ss);
    if (port <= 0 || port > 65535)
        return tsl_seterr(TSL_EINVALID, "port %d out of range", port);
    if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        *sslen = sizeof *s4;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        *sslen = sizeof *s6;
        return 0;
    }
    return tsl_seterr(TSL_EINVALID, "\"%s\" is not a numeric IPv4 or IPv6 address", host);
}

int ahttp_start(ahttp **out, struct event_base *base, const char *host, int port,
                const char *method, const char *target, const char *extra_headers,
                const char *body, size_t bodylen, double timeout, aclock *clock,
                ahttp_cb cb, void *arg)
{
    struct sockaddr_storage ss;
    socklen_t sslen = 0;
    ahttp *h = NULL;
    int err;

    *out = NULL;
    TSL_ARG(base && host && method && target && cb);
    if ((err = parse_addr(&ss, &sslen, host, port)) < 0)
        return err;
    if (!(h = calloc(1, sizeof *h)))
        return tsl_oom();
    h->cb = cb;
    h->arg = arg;
    h->content_length = -1;
    h->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!h->bev) {
        err = tsl_oom();
        goto done;
    }
    bufferevent_setcb(h->bev, on_read, NULL, on_event, h);
    h->clock = clock;
    h->timeout = timeout;
    if (timeout > 0) {
        if ((err = atimer_new(&h->t_timeout, base, clock, on_timeout, h)) < 0)
            goto done;
        atimer_add(h->t_timeout, timeout);
    }
    if (aclock_counts(clock, port)) {
        h->counted = true;
        aclock_track(clock, 1);
    }

    struct evbuffer *o = bufferevent_get_output(h->bev);
    char hostport[80];
    snprintf(hostport, sizeof hostport, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
    if (evbuffer_add_printf(o, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n"
                               "User-Agent: tsl-agent\r\n", method, target, hostport) < 0 ||
        (extra_headers && evbuffer_add(o, extra_headers, strlen(extra_headers)) < 0) ||
        (body && !(extra_headers && strstr(extra_headers, "Content-Type:")) &&
         evbuffer_add_printf(o, "Content-Type: application/json\r\n") < 0) ||
        evbuffer_add_printf(o, "Content-Length: %zu\r\n\r\n", body ? bodylen : 0) < 0 ||
        (body && bodylen && evbuffer_add(o, body, bodylen) < 0)) {
        err = tsl_oom();
        goto done;
    }
    if (bufferevent_enable(h->bev, EV_READ | EV_WRITE) < 0) {
        err = tsl_seterr(TSL_ERROR, "cannot enable the connection to %s", hostport);
        goto done;
    }
    if (bufferevent_socket_connect(h->bev, (struct sockaddr *)&ss, (int)sslen) < 0) {
        /* bufferevent_socket_connect has closed the socket; report from the loop */
        h->defer_error = socket_error_text(EVUTIL_SOCKET_ERROR());
        bufferevent_free(h->bev);
        h->bev = NULL;
        struct timeval zero = {0, 0};
        h->defer = evtimer_new(base, on_defer, h);
        if (!h->defer || evtimer_add(h->defer, &zero) < 0) {
            err = tsl_oom();
            goto done;
        }
    }
    *out = h;
    h = NULL;
    err = 0;
done:
    if (h)
        destroy(h);
    return err;
}

void ahttp_cancel(ahttp *h)
{
    if (!h || h->in_callback)
        return;
    destroy(h);
}
