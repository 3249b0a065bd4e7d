/*
 * test_broker_edge.c - the broker's HTTP edge against hostile clients, over
 * raw sockets to the real broker on 127.0.0.1 port 0: request framing as
 * RFC 9112 says (no smuggling), JSON for every error, the whole-request
 * deadline, the cap per peer address, thousands of slow connections,
 * descriptor exhaustion (a `tsl serve` child with a low RLIMIT_NOFILE) and
 * HTTPS with a certificate the test makes.
 */
#include "broker.h"
#include "broker_client.h"
#include "harness.h"
#include "tsl.h"

#include <fcntl.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

static const char inventory[] =
    "{\"sites\": [{\"name\": \"London\", \"subnets\": [\"10.10.0.0/16\"]}],"
    " \"task_servers\": [{\"name\": \"ts-lon-01\", \"ip\": \"10.10.0.5\", \"sites\": [\"London\"]}],"
    " \"clients\": [{\"guid\": \"A1\", \"ip\": \"10.10.3.17\"}]}";

typedef struct fixture {
    char dir[512], db[600];
    tsl_broker *b;
    int port;
} fixture;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static bool make_store(fixture *f)
{
    static int n;
    tsl_store *st = NULL;
    snprintf(f->dir, sizeof f->dir, "%s/e%d", tsl_test_tmpdir(), n++);
    mkdir(f->dir, 0700);
    snprintf(f->db, sizeof f->db, "%s/store.db", f->dir);
    bool ok = tsl_store_open(&st, f->db, 0) == 0 &&
              tsl_store_import_json(st, inventory, strlen(inventory), "fixture") == 0;
    if (!ok)
        fprintf(stderr, "fixture: %s\n", tsl_error_last());
    tsl_store_free(st);
    return ok;
}

static bool start(fixture *f, void (*tune)(tsl_broker_config *))
{
    tsl_broker_config cfg;
    memset(f, 0, sizeof *f);
    if (!make_store(f))
        return false;
    tsl_broker_config_init(&cfg);
    cfg.db_path = f->db;
    cfg.listen = "127.0.0.1:0";
    cfg.threads = 2;
    cfg.drain_ms = 20;
    cfg.log_level = TSL_LOG_ERROR;
    if (tune)
        tune(&cfg);
    if (tsl_broker_new(&f->b, &cfg) < 0 || tsl_broker_start(f->b) < 0) {
        fprintf(stderr, "broker: %s\n", tsl_error_last());
        tsl_broker_free(f->b);
        f->b = NULL;
        return false;
    }
    f->port = tsl_broker_bound_port(f->b);
    return true;
}

static void stop(fixture *f)
{
    tsl_broker_free(f->b); /* stops and joins */
    f->b = NULL;
}

/* A connection from source address `src` (NULL: the kernel's choice). */
static int connect_from(int port, const char *src)
{
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (fd < 0)
        return -1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (src) {
        memset(&sa, 0, sizeof sa);
        sa.sin_family = AF_INET;
        inet_pton(AF_INET, src, &sa.sin_addr);
        if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
            close(fd);
            return -1;
        }
    }
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Everything the server sends until it closes or `ms` pass; malloc'd. */
static char *read_all(int fd, int ms, bool *closed)
{
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    uint64_t end = now_ms() + (uint64_t)ms;
    *closed = false;
    while (buf && now_ms() < end) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, (int)(end - now_ms())) <= 0)
            break;
        if (len + 4096 > cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb)
                break;
            buf = nb;
        }
        ssize_t n = recv(fd, buf + len, cap - len - 1, 0);
        if (n <= 0) {
            *closed = true;
            break;
        }
        len += (size_t)n;
    }
    if (buf)
        buf[len] = '\0';
    return buf;
}

/* Sends `req` on a new connection and returns what comes back until the
 * server closes (at most 5 s); *closed says whether it did. */
static char *exchange(int port, const char *req, size_t len, bool *closed)
{
    int fd = connect_from(port, NULL);
    if (fd < 0 || !http_send_all(fd, req, len)) {
        if (fd >= 0)
            close(fd);
        *closed = false;
        return strdup("");
    }
    char *out = read_all(fd, 5000, closed);
    close(fd);
    return out;
}

static int count_of(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* The response's status is `status`, its body JSON {"error":...}, and the
 * connection closed after it (nothing else was answered). */
#define CHECK_JSON_ERROR(text, closed, status)                                   \
    do {                                                                         \
        char want_[40];                                                          \
        snprintf(want_, sizeof want_, "HTTP/1.1 %d ", status);                   \
        CHECK_CONTAINS(text, want_);                                             \
        CHECK(strncmp(text, want_, strlen(want_)) == 0);                         \
        CHECK_CONTAINS(text, "Content-Type: application/json\r\n");              \
        CHECK_CONTAINS(text, "\r\n\r\n{\"error\":\"");                           \
        CHECK(strstr(text, "<HTML") == NULL && strstr(text, "<html") == NULL);   \
        CHECK_INT(count_of(text, "Content-Type: "), 1);                          \
        CHECK(closed);                                                           \
    } while (0)

/* ------------------------------------------------------------------------
 * Framing (RFC 9112)
 * ---------------------------------------------------------------------- */

TEST(edge__duplicate_content_length_is_400_and_the_rest_is_never_a_request)
{
    fixture f;
    bool closed;
    CHECK(start(&f, NULL));
    /* before: the first length won and "GET /healthz" was answered too */
    static const char dup[] = "POST /v1/task-servers/ts-lon-01/heartbeat HTTP/1.1\r\n"
                              "Host: x\r\nContent-Length: 2\r\nContent-Length: 30\r\n\r\n"
                              "{}GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    char *a = exchange(f.port, dup, sizeof dup - 1, &closed);
    bool closed_a = closed;
    static const char list[] = "POST /v1/task-servers/ts-lon-01/heartbeat HTTP/1.1\r\n"
                               "Content-Length: 2, 2\r\n\r\n{}GET /healthz HTTP/1.1\r\n\r\n";
    char *b = exchange(f.port, list, sizeof list - 1, &closed);
    bool closed_b = closed;
    static const char sign[] = "POST /v1/policy HTTP/1.1\r\nContent-Length: +2\r\n\r\n{}";
    char *c = exchange(f.port, sign, sizeof sign - 1, &closed);
    bool closed_c = closed;
    stop(&f);
    CHECK_JSON_ERROR(a, closed_a, 400);
    CHECK_CONTAINS(a, "more than one Content-Length header");
    CHECK(strstr(a, "\"status\"") == NULL); /* /healthz never answered */
    CHECK_JSON_ERROR(b, closed_b, 400);
    CHECK_CONTAINS(b, "invalid Content-Length");
    CHECK_JSON_ERROR(c, closed_c, 400);
    free(a);
    free(b);
    free(c);
}

TEST(edge__transfer_encoding_other_than_exactly_chunked_is_refused)
{
    fixture f;
    bool c1, c2, c3, c4, c5;
    CHECK(start(&f, NULL));
    static const char gz[] = "POST /v1/policy HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                             "2\r\n{}\r\n0\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n";
    char *a = exchange(f.port, gz, sizeof gz - 1, &c1);
    static const char both[] = "POST /v1/policy HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
                               "Content-Length: 3\r\n\r\n0\r\n\r\n";
    char *b = exchange(f.port, both, sizeof both - 1, &c2);
    static const char head[] = "HEAD /healthz HTTP/1.1\r\nContent-Length: 30\r\n\r\n"
                               "GET /healthz HTTP/1.1\r\n\r\n";
    char *c = exchange(f.port, head, sizeof head - 1, &c3);
    static const char ext[] = "POST /v1/policy HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                              "2;x=y\r\n{}\r\n0\r\n\r\n";
    char *d = exchange(f.port, ext, sizeof ext - 1, &c4);
    /* exactly chunked is read and routed: the admin token is what is missing */
    static const char ok[] = "POST /v1/policy HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
                             "Connection: close\r\n\r\n2\r\n{}\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n";
    char *e = exchange(f.port, ok, sizeof ok - 1, &c5);
    stop(&f);
    CHECK_JSON_ERROR(a, c1, 501);
    CHECK_CONTAINS(a, "Transfer-Encoding \\\"gzip, chunked\\\" is not supported");
    CHECK_JSON_ERROR(b, c2, 400);
    CHECK_CONTAINS(b, "both Content-Length and Transfer-Encoding");
    CHECK_JSON_ERROR(c, c3, 400);
    CHECK_CONTAINS(c, "a HEAD request has no body");
    CHECK_JSON_ERROR(d, c4, 400);
    CHECK_CONTAINS(d, "malformed chunk size line");
    CHECK(strncmp(e, "HTTP/1.1 401 ", 13) == 0);
    CHECK_CONTAINS(e, "needs the admin token");
    free(a);
    free(b);
    free(c);
    free(d);
    free(e);
}

/* ------------------------------------------------------------------------
 * Every error is JSON, also where evhttp used to answer itself
 * ---------------------------------------------------------------------- */

TEST(edge__errors_evhttp_answered_itself_are_json)
{
    fixture f;
    CHECK(start(&f, NULL));
    struct {
        const char *what;
        char *req;
        int status;
        const char *says;
    } cases[] = {
        {"unknown method", strdup("BREW /healthz HTTP/1.1\r\n\r\n"), 501,
         "method BREW is not implemented"},
        {"bad request line", strdup("GARBAGE\r\n\r\n"), 400, "malformed request line"},
        {"two spaces", strdup("GET  /healthz HTTP/1.1\r\n\r\n"), 400, "malformed request line"},
        {"HTTP/2.0", strdup("GET /healthz HTTP/2.0\r\n\r\n"), 505, "HTTP version HTTP/2.0"},
        {"no colon", strdup("GET /healthz HTTP/1.1\r\nNoColonHere\r\n\r\n"), 400,
         "malformed header line"},
        {"folded", strdup("GET /healthz HTTP/1.1\r\nX-A: 1\r\n  more\r\n\r\n"), 400,
         "obsolete line folding"},
        {"space in target", strdup("GET /heal thz HTTP/1.1\r\n\r\n"), 400, "malformed request line"},
        {"huge Content-Length", strdup("POST /v1/policy HTTP/1.1\r\nContent-Length: "
                                       "999999999999\r\n\r\n"),
         413, "over the"},
        {"Expect", strdup("POST /v1/policy HTTP/1.1\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\nx"),
         417, "Expect"},
        {"authority form", strdup("GET //[zz]/x HTTP/1.1\r\n\r\n"), 400, "starts with //"},
        {"long URL", NULL, 414, "request target of 20000 bytes"},
        {"huge header", NULL, 431, "request head of more than"},
    };
    size_t n = sizeof cases / sizeof cases[0];
    char *url = malloc(20100), *hdr = malloc(60100);
    CHECK(url && hdr);
    memset(url, 'a', 20100);
    memcpy(url, "GET /", 5);
    snprintf(url + 20004, 96, " HTTP/1.1\r\n\r\n");
    cases[n - 2].req = url;
    snprintf(hdr, 60100, "GET /healthz HTTP/1.1\r\nX-Big: ");
    size_t hl = strlen(hdr);
    memset(hdr + hl, 'b', 60000);
    snprintf(hdr + hl + 60000, 40, "\r\n\r\n");
    cases[n - 1].req = hdr;
    char *out[16];
    bool closed[16];
    for (size_t i = 0; i < n; i++)
        out[i] = exchange(f.port, cases[i].req, strlen(cases[i].req), &closed[i]);
    /* the broker is fine after all that */
    int st;
    const char *body = http_get_body(f.port, "/healthz", NULL, &st);
    CHECK_INT(st, 200);
    CHECK_CONTAINS(body, "\"status\"");
    stop(&f);
    for (size_t i = 0; i < n; i++) {
        fprintf(stderr, "  case %s\n", cases[i].what);
        CHECK_JSON_ERROR(out[i], closed[i], cases[i].status);
        CHECK_CONTAINS(out[i], cases[i].says);
    }
    for (size_t i = 0; i < n; i++) {
        free(out[i]);
        free(cases[i].req);
    }
}

TEST(edge__pipelined_and_expect_continue_requests_still_work)
{
    fixture f;
    bool closed;
    CHECK(start(&f, NULL));
    static const char three[] = "\r\nGET /healthz HTTP/1.1\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n"
                                "GET /v1/task-servers?ip=10.10.3.17 HTTP/1.1\r\nConnection: close\r\n\r\n";
    char *a = exchange(f.port, three, sizeof three - 1, &closed);
    /* Expect: 100-continue gets the go-ahead before the body is sent */
    int fd = connect_from(f.port, NULL);
    static const char head[] = "POST /v1/policy HTTP/1.1\r\nExpect: 100-continue\r\n"
                               "Content-Length: 2\r\nConnection: close\r\n\r\n";
    bool c2;
    CHECK(fd >= 0 && http_send_all(fd, head, sizeof head - 1));
    char *cont = read_all(fd, 2000, &c2);
    CHECK(http_send_all(fd, "{}", 2));
    char *rest = read_all(fd, 5000, &c2);
    close(fd);
    stop(&f);
    CHECK_INT(count_of(a, "HTTP/1.1 200 OK"), 3);
    CHECK_CONTAINS(a, "ts-lon-01");
    CHECK(closed);
    CHECK_STR(cont, "HTTP/1.1 100 Continue\r\n\r\n");
    CHECK(strncmp(rest, "HTTP/1.1 401 ", 13) == 0);
    free(a);
    free(cont);
    free(rest);
}

/* ------------------------------------------------------------------------
 * The deadline
 * ---------------------------------------------------------------------- */

static void timeout_2s(tsl_broker_config *c) { c->timeout_s = 2; }

TEST(edge__a_trickled_request_is_cut_at_the_deadline)
{
    fixture f;
    CHECK(start(&f, timeout_2s));
    int fd = connect_from(f.port, NULL);
    CHECK(fd >= 0);
    uint64_t t0 = now_ms();
    bool cut = false;
    char buf[4096] = "";
    ssize_t got = 0;
    CHECK(http_send_all(fd, "GET /healthz HTTP/1.1\r\n", 23));
    /* a header line every 400 ms: each gap is well under the timeout,
     * the whole far over it; before, this went on forever */
    for (int i = 0; i < 25 && !cut; i++) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 400) > 0) {
            ssize_t n;
            while ((n = recv(fd, buf + got, sizeof buf - 1 - (size_t)got, 0)) > 0)
                got += n;
            cut = true;
            break;
        }
        char line[32];
        int n = snprintf(line, sizeof line, "X-Slow-%d: 1\r\n", i);
        if (send(fd, line, (size_t)n, MSG_NOSIGNAL) < 0) {
            cut = true;
            break;
        }
    }
    uint64_t took = now_ms() - t0;
    buf[got] = '\0';
    close(fd);
    stop(&f);
    CHECK(cut);
    CHECK(took >= 1900 && took < 4500);
    CHECK(strncmp(buf, "HTTP/1.1 408 ", 13) == 0);
    CHECK_CONTAINS(buf, "Content-Type: application/json\r\n");
    CHECK_CONTAINS(buf, "did not arrive whole within 2 s (--timeout)");
}

/* ------------------------------------------------------------------------
 * Connections per peer address; many slow connections
 * ---------------------------------------------------------------------- */

static void cap_4(tsl_broker_config *c)
{
    c->max_conns_per_addr = 4;
    c->trusted_proxies = "127.0.0.9"; /* a proxy: not capped */
}

TEST(edge__connections_per_address_are_capped)
{
    fixture f;
    int fds[4];
    bool closed;
    CHECK(start(&f, cap_4));
    for (int i = 0; i < 4; i++) {
        fds[i] = connect_from(f.port, "127.0.0.1");
        CHECK(fds[i] >= 0);
    }
    usleep(200000); /* accepted and counted */
    int fifth = connect_from(f.port, "127.0.0.1");
    CHECK(fifth >= 0);
    char *refused = read_all(fifth, 5000, &closed);
    close(fifth);
    bool refused_closed = closed;
    /* another address is not affected */
    int other = connect_from(f.port, "127.0.0.2");
    http_resp r;
    int st = other >= 0 ? (http_on(other, "GET", "/v1/task-servers?ip=10.10.3.17", NULL, NULL, 0,
                                   &r) == 0 ? r.status : 0) : 0;
    http_resp_free(&r);
    if (other >= 0)
        close(other);
    /* a trusted proxy speaks for many clients: six connections, all served */
    int proxied[6], proxied_ok = 0;
    for (int i = 0; i < 6; i++)
        proxied[i] = connect_from(f.port, "127.0.0.9");
    for (int i = 0; i < 6; i++) {
        if (proxied[i] >= 0 && http_on(proxied[i], "GET", "/healthz", NULL, NULL, 0, &r) == 0 &&
            r.status == 200)
            proxied_ok++;
        http_resp_free(&r);
    }
    for (int i = 0; i < 6; i++)
        if (proxied[i] >= 0)
            close(proxied[i]);
    /* a place freed is a place taken again (within the sweep) */
    close(fds[0]);
    int again_status = 0;
    for (int i = 0; i < 40 && again_status != 200; i++) {
        usleep(50000);
        int fd = connect_from(f.port, "127.0.0.1");
        if (fd < 0)
            continue;
        again_status = http_on(fd, "GET", "/healthz", NULL, NULL, 0, &r) == 0 ? r.status : 0;
        http_resp_free(&r);
        close(fd);
    }
    for (int i = 1; i < 4; i++)
        close(fds[i]);
    /* counted in /metrics (the fifth, and any retry above that came before
     * the closed connection's place was freed) */
    long refusals = 0;
    int mfd = connect_from(f.port, "127.0.0.3");
    if (mfd >= 0 && http_on(mfd, "GET", "/metrics", NULL, NULL, 0, &r) == 0 && r.body) {
        const char *line = strstr(r.body, "tsl_http_refused_total{reason=\"per-address\"} ");
        refusals = line ? strtol(strchr(line, '}') + 2, NULL, 10) : -1;
    }
    http_resp_free(&r);
    if (mfd >= 0)
        close(mfd);
    stop(&f);
    CHECK(refusals >= 1);
    CHECK_JSON_ERROR(refused, refused_closed, 503);
    CHECK_CONTAINS(refused, "too many connections from 127.0.0.1 (at most 4 per address)");
    CHECK_INT(st, 200);
    CHECK_INT(again_status, 200);
    CHECK_INT(proxied_ok, 6);
    free(refused);
}

/* Raises this process's descriptor limit to `want` (or as far as allowed). */
static rlim_t raise_nofile(rlim_t want)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < want) {
        rl.rlim_cur = want < rl.rlim_max ? want : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur;
}

static void timeout_60s(tsl_broker_config *c) { c->timeout_s = 60; }

TEST(edge__3000_slow_connections_do_not_deny_service_to_others)
{
    enum { SLOW = 3000 };
    static int fds[SLOW];
    fixture f;
    /* each connection is two descriptors here (client and broker) */
    if (raise_nofile(2 * SLOW + 512) < 2 * SLOW + 256) {
        fprintf(stderr, "  skipped: RLIMIT_NOFILE cannot reach %d\n", 2 * SLOW + 256);
        return;
    }
    CHECK(start(&f, timeout_60s));
    /* 3000 slow clients from twelve addresses (250 each, under the default
     * cap of 256), each with half a request line */
    int opened = 0;
    for (int i = 0; i < SLOW; i++) {
        char src[32];
        snprintf(src, sizeof src, "127.0.0.%d", 2 + i % 12);
        fds[i] = connect_from(f.port, src);
        if (fds[i] >= 0) {
            opened++;
            (void)!send(fds[i], "GET /v1/task-ser", 16, MSG_NOSIGNAL);
        }
    }
    /* then from one more address, 300 more: 256 held, the rest refused */
    static int same[300];
    for (int i = 0; i < 300; i++)
        same[i] = connect_from(f.port, "127.0.0.200");
    usleep(500000);
    int refused = 0;
    for (int i = 0; i < 300; i++) {
        char c;
        struct pollfd p = {same[i], POLLIN, 0};
        if (same[i] >= 0 && poll(&p, 1, 0) > 0 && recv(same[i], &c, 1, MSG_PEEK) > 0)
            refused++;
    }
    /* another client's list still answers promptly */
    uint64_t worst = 0;
    int ok = 0;
    for (int i = 0; i < 20; i++) {
        uint64_t t0 = now_ms();
        int st;
        const char *body = http_get_body(f.port, "/v1/task-servers?ip=10.10.3.17", NULL, &st);
        uint64_t took = now_ms() - t0;
        if (took > worst)
            worst = took;
        if (st == 200 && strstr(body, "ts-lon-01"))
            ok++;
    }
    for (int i = 0; i < SLOW; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    for (int i = 0; i < 300; i++)
        if (same[i] >= 0)
            close(same[i]);
    stop(&f);
    fprintf(stderr, "  %d slow connections open; 20 lists, the slowest in %llu ms; %d of 300 "
                    "from one address refused\n",
            opened, (unsigned long long)worst, refused);
    CHECK_INT(opened, SLOW);
    CHECK_INT(ok, 20);
    CHECK(worst < 1000);
    CHECK_INT(refused, 300 - 256);
}

/* ------------------------------------------------------------------------
 * Descriptor exhaustion (a `tsl serve` child with few descriptors)
 * ---------------------------------------------------------------------- */

static long child_cpu_ticks(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    long utime = 0, stime = 0;
    /* fields after the command: state ppid ... utime(14) stime(15) */
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %ld %ld", &utime,
                     &stime) != 2)
        return -1;
    return utime + stime;
}

TEST(edge__descriptor_exhaustion_pauses_accepting_logs_rarely_and_recovers)
{
    fixture f;
    char log[700];
    enum { N = 120 };
    int fds[N];
    memset(&f, 0, sizeof f);
    CHECK(make_store(&f));
    snprintf(log, sizeof log, "%s/serve.log", f.dir);
    pid_t pid = fork();
    if (pid == 0) {
        struct rlimit rl = {48, 48};
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(fd, 2);
        close(fd);
        setrlimit(RLIMIT_NOFILE, &rl);
        execl(TSL_BIN, "tsl", "--db", f.db, "serve", "--listen", "127.0.0.1:0", "--threads", "1",
              "--timeout", "3", (char *)NULL);
        _exit(127);
    }
    int port = 0;
    for (int i = 0; i < 500 && !port; i++) {
        usleep(10000);
        char *text = tsl_test_read(log, NULL);
        const char *p = text ? strstr(text, " port ") : NULL;
        if (p && strstr(text, "Listening on"))
            port = atoi(p + 6);
        free(text);
    }
    CHECK(port > 0);
    /* far more connections than it has descriptors for */
    for (int i = 0; i < N; i++)
        fds[i] = connect_from(port, NULL);
    long t0 = child_cpu_ticks(pid);
    uint64_t w0 = now_ms();
    usleep(2000000);
    long used = child_cpu_ticks(pid) - t0;
    uint64_t wall = now_ms() - w0;
    char *text = tsl_test_read(log, NULL);
    int lines = text ? count_of(text, "Cannot accept connections") : -1;
    bool counted = text && strstr(text, "Too many open files; accepting paused ");
    free(text);
    /* the descriptors come back: it serves again by itself */
    for (int i = 0; i < N; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    int st = 0;
    for (int i = 0; i < 100 && st != 200; i++) {
        http_resp r;
        st = http_do(port, "GET", "/v1/task-servers?ip=10.10.3.17", NULL, NULL, &r);
        http_resp_free(&r);
        if (st != 200)
            usleep(100000);
    }
    kill(pid, SIGTERM);
    int status = -1;
    waitpid(pid, &status, 0);
    long hz = sysconf(_SC_CLK_TCK);
    fprintf(stderr, "  %ld ms of CPU in %llu ms with descriptors exhausted; %d log lines\n",
            used * 1000 / hz, (unsigned long long)wall, lines);
    CHECK(used * 1000 / hz < (long)wall / 4); /* before: about 60% of a core */
    CHECK(lines >= 1 && lines <= 2);          /* before: millions */
    CHECK(counted);
    CHECK_INT(st, 200);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* ------------------------------------------------------------------------
 * TLS
 * ---------------------------------------------------------------------- */

static char cert_path[600], key_path[600];

static void with_tls(tsl_broker_config *c)
{
    c->tls_cert = cert_path;
    c->tls_key = key_path;
    c->timeout_s = 2;
}

/* Over TLS: sends half a request and returns what comes back until the
 * broker closes (at most 6 s). */
static char *tls_half_request(int port)
{
    char *out = calloc(1, 8192);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = NULL;
    int fd = connect_from(port, NULL);
    if (!out || !ctx || fd < 0 || SSL_CTX_load_verify_locations(ctx, cert_path, NULL) != 1)
        goto done;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (!(ssl = SSL_new(ctx)) || SSL_set_fd(ssl, fd) != 1 || SSL_connect(ssl) != 1)
        goto done;
    static const char half[] = "GET /healthz HTTP/1.1\r\nX-Slow: 1\r\n";
    if (SSL_write(ssl, half, sizeof half - 1) != (int)sizeof half - 1)
        goto done;
    struct timeval tv = {6, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int got = 0, n;
    while (got < 8191 && (n = SSL_read(ssl, out + got, 8191 - got)) > 0)
        got += n;
done:
    if (ssl)
        SSL_free(ssl);
    SSL_CTX_free(ctx);
    if (fd >= 0)
        close(fd);
    return out;
}

TEST(tls__the_broker_serves_https_and_plain_http_on_its_port_fails_cleanly)
{
    fixture f;
    char *out = NULL;
    snprintf(cert_path, sizeof cert_path, "%s/cert.pem", tsl_test_tmpdir());
    snprintf(key_path, sizeof key_path, "%s/key.pem", tsl_test_tmpdir());
    int rc = tsl_test_sh(&out, true,
                         "openssl req -x509 -newkey rsa:2048 -nodes -keyout '%s' -out '%s' "
                         "-days 2 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1",
                         key_path, cert_path);
    free(out);
    CHECK_INT(rc, 0);
    CHECK(start(&f, with_tls));
    rc = tsl_test_sh(&out, false,
                     "curl -sS --max-time 10 --cacert '%s' -w ' %%{http_code}' "
                     "'https://127.0.0.1:%d/v1/task-servers?ip=10.10.3.17'",
                     cert_path, f.port);
    char *https = out;
    /* plain HTTP on the TLS port: no HTTP answer, the connection closes */
    bool closed;
    static const char plain[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    char *p = exchange(f.port, plain, sizeof plain - 1, &closed);
    /* the deadline holds over TLS too */
    char *slow = tls_half_request(f.port);
    /* and HTTPS still works after it */
    char *again = NULL;
    int rc2 = tsl_test_sh(&again, false,
                          "curl -sS --max-time 10 --cacert '%s' -w ' %%{http_code}' "
                          "'https://127.0.0.1:%d/v1/bogus'",
                          cert_path, f.port);
    stop(&f);
    CHECK_INT(rc, 0);
    CHECK_CONTAINS(https, "ts-lon-01");
    CHECK_CONTAINS(https, " 200");
    CHECK(closed);
    CHECK(strstr(p, "HTTP/1.1 200") == NULL);
    CHECK(slow && strncmp(slow, "HTTP/1.1 408 ", 13) == 0);
    CHECK_CONTAINS(slow, "{\"error\":\"the request did not arrive whole within 2 s");
    free(slow);
    CHECK_INT(rc2, 0);
    CHECK_CONTAINS(again, "no such endpoint");
    CHECK_CONTAINS(again, " 404");
    free(https);
    free(p);
    free(again);
}

static void everywhere(tsl_broker_config *c) { c->listen = ":0"; }
static void everywhere_behind_proxy(tsl_broker_config *c)
{
    c->listen = ":0";
    c->behind_tls_proxy = true;
}
static void half_tls(tsl_broker_config *c) { c->tls_cert = "/nonexistent.pem"; }

TEST(tls__plain_http_beyond_loopback_needs_tls_or_behind_tls_proxy)
{
    fixture f;
    bool plain = start(&f, everywhere);
    char why[600];
    snprintf(why, sizeof why, "%s", tsl_error_last());
    stop(&f);
    bool proxied = start(&f, everywhere_behind_proxy);
    int st = 0;
    if (proxied)
        (void)http_get_body(f.port, "/healthz", NULL, &st);
    stop(&f);
    bool half = start(&f, half_tls);
    char why2[600];
    snprintf(why2, sizeof why2, "%s", tsl_error_last());
    stop(&f);
    CHECK(!plain);
    CHECK_CONTAINS(why, "refusing to serve plain HTTP on :0, beyond loopback");
    CHECK_CONTAINS(why, "--behind-tls-proxy");
    CHECK(proxied);
    CHECK_INT(st, 200);
    CHECK(!half);
    CHECK_CONTAINS(why2, "--tls-cert and --tls-key go together");
    /* the same through `tsl serve` */
    char *out = NULL;
    make_store(&f);
    int rc = tsl_test_sh(&out, true, "'%s' --db '%s' serve --listen 0.0.0.0:0", TSL_BIN, f.db);
    CHECK(rc != 0);
    CHECK_CONTAINS(out, "refusing to serve plain HTTP on 0.0.0.0:0, beyond loopback");
    free(out);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    RUN(edge__duplicate_content_length_is_400_and_the_rest_is_never_a_request);
    RUN(edge__transfer_encoding_other_than_exactly_chunked_is_refused);
    RUN(edge__errors_evhttp_answered_itself_are_json);
    RUN(edge__pipelined_and_expect_continue_requests_still_work);
    RUN(edge__a_trickled_request_is_cut_at_the_deadline);
    RUN(edge__connections_per_address_are_capped);
    RUN(edge__3000_slow_connections_do_not_deny_service_to_others);
    RUN(edge__descriptor_exhaustion_pauses_accepting_logs_rarely_and_recovers);
    RUN(tls__the_broker_serves_https_and_plain_http_on_its_port_fails_cleanly);
    RUN(tls__plain_http_beyond_loopback_needs_tls_or_behind_tls_proxy);
    return tsl_test_main();
}
