/*
 * broker_client.h - a small blocking HTTP/1.1 client for the broker tests:
 * real sockets to 127.0.0.1, keep-alive or one connection per request,
 * Content-Length bodies (all the broker sends).  Header-only (static
 * functions) so each tests/test_broker*.c stays one executable.
 *
 * Used by: tests/test_broker*.c.  Needs: POSIX sockets.
 */
#ifndef TSL_TEST_BROKER_CLIENT_H
#define TSL_TEST_BROKER_CLIENT_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct http_resp {
    int status;     /* 0 when the exchange failed */
    char head[8192];/* status line and headers */
    char *body;     /* NUL-terminated, malloc'd */
    size_t len;
} http_resp;

static void http_resp_free(http_resp *r)
{
    free(r->body);
    r->body = NULL;
}

static int http_connect(int port)
{
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (fd < 0)
        return -1;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        close(fd);
        return -1;
    }
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

static bool http_send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) {
            if (w < 0 && errno == EINTR)
                continue;
            return false;
        }
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* The value of header `name` in r->head (copied into dst), or NULL. */
static const char *http_header(const http_resp *r, const char *name, char *dst, size_t len)
{
    size_t nl = strlen(name);
    for (const char *p = strstr(r->head, "\r\n"); p; p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2;
        if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (*v == ' ')
                v++;
            const char *end = strstr(v, "\r\n");
            size_t n = end ? (size_t)(end - v) : strlen(v);
            if (n >= len)
                n = len - 1;
            memcpy(dst, v, n);
            dst[n] = '\0';
            return dst;
        }
    }
    return NULL;
}

/* Sends raw bytes and reads one response on fd. */
static int http_exchange_raw(int fd, const char *req, size_t reqlen, http_resp *out)
{
    char buf[65536];
    size_t have = 0;
    memset(out, 0, sizeof *out);
    if (!http_send_all(fd, req, reqlen))
        return -1;
    char *eoh = NULL;
    while (!eoh) {
        if (have == sizeof buf - 1)
            return -1;
        ssize_t n = recv(fd, buf + have, sizeof buf - 1 - have, 0);
        if (n <= 0)
            return -1;
        have += (size_t)n;
        buf[have] = '\0';
        eoh = strstr(buf, "\r\n\r\n");
    }
    size_t headlen = (size_t)(eoh - buf) + 2;
    if (headlen >= sizeof out->head)
        return -1;
    memcpy(out->head, buf, headlen);
    out->head[headlen] = '\0';
    if (sscanf(buf, "HTTP/1.%*d %d", &out->status) != 1)
        return -1;
    char cl[32];
    size_t want = http_header(out, "Content-Length", cl, sizeof cl) ? strtoul(cl, NULL, 10) : 0;
    bool head_request = strncmp(req, "HEAD ", 5) == 0;
    if (head_request)
        want = 0;
    if (!(out->body = malloc(want + 1)))
        return -1;
    size_t got = have - (headlen + 2);
    if (got > want)
        got = want;
    memcpy(out->body, eoh + 4, got);
    while (got < want) {
        ssize_t n = recv(fd, out->body + got, want - got, 0);
        if (n <= 0) {
            http_resp_free(out);
            out->status = 0;
            return -1;
        }
        got += (size_t)n;
    }
    out->body[want] = '\0';
    out->len = want;
    return 0;
}

/* One request on a keep-alive connection `fd` (extra: more header lines,
 * each ending in \r\n; body may be NULL). */
static int http_on(int fd, const char *method, const char *path, const char *extra,
                   const char *body, size_t bodylen, http_resp *out)
{
    size_t cap = strlen(path) + (extra ? strlen(extra) : 0) + bodylen + 256;
    char *req = malloc(cap);
    if (!req)
        return -1;
    int n = snprintf(req, cap, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s", method, path,
                     extra ? extra : "");
    if (body)
        n += snprintf(req + n, cap - (size_t)n, "Content-Length: %zu\r\n", bodylen);
    n += snprintf(req + n, cap - (size_t)n, "\r\n");
    if (body) {
        memcpy(req + n, body, bodylen);
        n += (int)bodylen;
    }
    int rc = http_exchange_raw(fd, req, (size_t)n, out);
    free(req);
    return rc;
}

/* One request on its own connection; returns the status (0 on failure). */
static int http_do(int port, const char *method, const char *path, const char *extra,
                   const char *body, http_resp *out)
{
    memset(out, 0, sizeof *out);
    int fd = http_connect(port);
    if (fd < 0)
        return 0;
    if (http_on(fd, method, path, extra, body, body ? strlen(body) : 0, out) < 0)
        out->status = 0;
    close(fd);
    return out->status;
}

/* GET, body kept in a static rotating buffer for terse assertions. */
static const char *http_get_body(int port, const char *path, const char *extra, int *status)
{
    static char *bufs[8];
    static int next;
    http_resp r;
    *status = http_do(port, "GET", path, extra, NULL, &r);
    free(bufs[next]);
    bufs[next] = r.body ? r.body : strdup("");
    const char *s = bufs[next];
    next = (next + 1) % 8;
    return s;
}

#endif
