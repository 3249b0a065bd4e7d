/*
 * fuzz_http.c - the broker's HTTP edge, request parsing and every route's
 * parameters and bodies, through a real in-process broker on 127.0.0.1.
 *
 * Each input is the byte stream a client sends on one connection
 * (pipelined requests, bodies, garbage); "@TOKEN@" in it becomes the admin
 * token, so the admin routes are reached too.  The harness sends it, half-
 * closes, and reads everything back until the broker closes.  It aborts
 * when the broker crashes (ASan), hangs (libFuzzer's -timeout), or answers
 * anything but well-formed HTTP/1.x responses whose errors are JSON.
 */
#define _GNU_SOURCE /* memmem */
#include <arpa/inet.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "broker.h"
#include "tsl.h"

static const char inventory[] =
    "{\"sites\": [{\"name\": \"London\", \"subnets\": [\"10.10.0.0/16\", \"fd00:10::/48\"]},"
    "            {\"name\": \"Paris\", \"subnets\": [\"10.20.0.0/16\"]}],"
    " \"task_servers\": [{\"name\": \"ts-lon-01\", \"ip\": \"10.10.0.5\", \"sites\": [\"London\"]},"
    "                    {\"name\": \"ts-par-01\", \"ip\": \"10.20.0.5\", \"sites\": [\"Paris\"]}],"
    " \"clients\": [{\"guid\": \"A1\", \"ip\": \"10.10.3.17\", \"department\": \"Finance\"}]}";

static tsl_broker *broker;
static int port;
static char dir[256];

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void cleanup(void)
{
    tsl_broker_free(broker);
    broker = NULL;
    if (dir[0])
        nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static void start(void)
{
    char db[300];
    tsl_store *st = NULL;
    tsl_broker_config cfg;
    signal(SIGPIPE, SIG_IGN);
    snprintf(dir, sizeof dir, "%s/tsl-fuzz-http-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(dir))
        abort();
    snprintf(db, sizeof db, "%s/store.db", dir);
    if (tsl_store_open(&st, db, 0) < 0 ||
        tsl_store_import_json(st, inventory, strlen(inventory), "fuzz") < 0)
        abort();
    tsl_store_free(st);
    tsl_broker_config_init(&cfg);
    cfg.db_path = db;
    cfg.listen = "127.0.0.1:0";
    cfg.threads = 1;
    cfg.drain_ms = 0;
    cfg.timeout_s = 2;
    cfg.flush_ms = 5; /* writes are answered once committed: commit often */
    cfg.max_body = 4096;
    cfg.max_import_body = 65536;
    cfg.log_level = TSL_LOG_ERROR;
    cfg.decision_log_max = 100;
    if (tsl_broker_new(&broker, &cfg) < 0 || tsl_broker_start(broker) < 0) {
        fprintf(stderr, "fuzz_http: %s\n", tsl_error_last());
        abort();
    }
    port = tsl_broker_bound_port(broker);
    atexit(cleanup);
}

/* The input with @TOKEN@ replaced (malloc'd). */
static char *with_token(const uint8_t *data, size_t size, size_t *out_len)
{
    const char *token = tsl_broker_admin_token(broker);
    size_t tl = strlen(token);
    char *out = malloc(size * (tl > 7 ? tl : 7) / 7 + 16);
    size_t n = 0;
    if (!out)
        abort();
    for (size_t i = 0; i < size;) {
        if (size - i >= 7 && memcmp(data + i, "@TOKEN@", 7) == 0) {
            memcpy(out + n, token, tl);
            n += tl;
            i += 7;
        } else {
            out[n++] = (char)data[i++];
        }
    }
    *out_len = n;
    return out;
}

/* Every response in `text` (len bytes): a status line, headers, a body of
 * Content-Length bytes; errors (>= 400) are JSON. */
static void fail(const char *why, const char *text, size_t len)
{
    fprintf(stderr, "fuzz_http: %s; the broker sent %zu bytes:\n%.*s\n", why, len, (int)len, text);
    abort();
}

static void check_responses(const char *text, size_t len)
{
    size_t at = 0;
    while (at < len) {
        const char *r = text + at;
        const char *eoh = memmem(r, len - at, "\r\n\r\n", 4);
        /* an HTTP/1.0 request is answered in HTTP/1.0 */
        if (!eoh || len - at < 13 || (memcmp(r, "HTTP/1.1 ", 9) != 0 && memcmp(r, "HTTP/1.0 ", 9) != 0))
            fail("not an HTTP response", text, len);
        int status = atoi(r + 9);
        if (status == 100) {
            at = (size_t)(eoh + 4 - text);
            continue;
        }
        size_t head = (size_t)(eoh + 4 - r);
        char *h = strndup(r, head);
        if (!h)
            abort();
        const char *cl = strstr(h, "\r\nContent-Length: ");
        /* no Content-Length (an HTTP/1.0 answer): the body runs to the close */
        size_t body = cl ? strtoul(cl + 18, NULL, 10) : len - at - head;
        bool json = strstr(h, "\r\nContent-Type: application/json\r\n") != NULL;
        free(h);
        /* libevent drops a connection whose client half-closed while an
         * answer is still being written: the last answer may be cut short */
        size_t have = len - at - head < body ? len - at - head : body;
        if (status >= 400 && (!json || body < 10 ||
                              memcmp(r + head, "{\"error\":", have < 9 ? have : 9) != 0))
            fail("an error that is not JSON", text, len);
        if (head + body > len - at)
            return;
        at += head + body;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!broker)
        start();
    size_t len;
    char *req = with_token(data, size, &len);
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        abort();
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        abort();
    /* send while reading, so a large pipelined input cannot deadlock */
    size_t sent = 0, got = 0, cap = 65536;
    char *in = malloc(cap);
    bool eof = false;
    time_t deadline = time(NULL) + 8;
    if (!in)
        abort();
    if (len == 0)
        shutdown(fd, SHUT_WR);
    while (!eof) {
        if (time(NULL) > deadline)
            abort(); /* the broker neither answered nor closed */
        struct pollfd p = {fd, (short)(POLLIN | (sent < len ? POLLOUT : 0)), 0};
        if (poll(&p, 1, 1000) <= 0)
            continue;
        if (p.revents & POLLOUT) {
            ssize_t w = send(fd, req + sent, len - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w > 0 && (sent += (size_t)w) == len)
                shutdown(fd, SHUT_WR);
            if (w < 0)
                sent = len; /* the broker closed: read what it said */
        }
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            if (got + 4096 > cap && !(in = realloc(in, cap *= 2)))
                abort();
            ssize_t n = recv(fd, in + got, cap - got, 0);
            if (n <= 0)
                eof = true;
            else
                got += (size_t)n;
        }
    }
    close(fd);
    /* a HEAD request's answer has a Content-Length and no body: only check
     * streams without one */
    if (!memmem(req, len, "HEAD ", 5))
        check_responses(in, got);
    free(in);
    free(req);
    return 0;
}
