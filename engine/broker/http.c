/*
 * http.c - each worker's evhttp: limits and timeouts, the route table and
 * its dispatcher (one callback per route, a catch-all 404, 405 with Allow),
 * and the helpers every route uses to read a request and send exactly one
 * reply: JSON errors that name the problem, query strings, bodies, the
 * admin bearer token.
 *
 * Limits: edge.c refuses, in JSON, before evhttp parses anything, heads
 * over four times max_headers_size, bodies over the larger of max_body and
 * max_import_body, bad framing and requests slower than timeout_s; evhttp
 * drops connections idle past timeout_s; below those hard limits this file
 * answers in JSON (431 for too many or too large headers, 413 for a body
 * over the route's limit).
 *
 * Used by: broker.c (setup), routes.c, admin_routes.c (http.h).
 * Needs: routes.h (the handlers), edge.h, control.h (the plan).
 */
#include "edge.h"
#include "routes.h"

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define URI_MAX 8192
#define PATH_SEGMENTS_MAX 8

enum {
    M_GET = EVHTTP_REQ_GET | EVHTTP_REQ_HEAD,
    M_POST = EVHTTP_REQ_POST,
};

static const struct route_def {
    const char *path;   /* segments after the leading '/'; "*" matches one */
    unsigned methods;
    broker_route route;
    bool admin;         /* needs the bearer token */
    route_fn fn;
} routes[] = {
    {"v1/task-servers", M_GET, ROUTE_TASK_SERVERS, false, route_task_servers},
    {"v1/task-servers/*/heartbeat", M_POST, ROUTE_HEARTBEAT, false, route_heartbeat},
    {"v1/task-servers/pending", M_GET, ROUTE_SERVERS_PENDING, true, route_servers_pending},
    {"v1/task-servers/*/approve", M_POST, ROUTE_SERVER_DECIDE, true, route_server_approve},
    {"v1/task-servers/*/reject", M_POST, ROUTE_SERVER_DECIDE, true, route_server_reject},
    {"v1/clients/*/registration", M_POST, ROUTE_REGISTRATION, false, route_registration},
    {"v1/policy", M_POST, ROUTE_POLICY_UPLOAD, true, route_policy_upload},
    {"v1/policy", M_GET, ROUTE_POLICY_LIST, true, route_policy_list},
    {"v1/policy/rollback", M_POST, ROUTE_POLICY_ROLLBACK, true, route_policy_rollback},
    {"v1/policy/*/activate", M_POST, ROUTE_POLICY_ACTIVATE, true, route_policy_activate},
    {"v1/explain", M_GET, ROUTE_EXPLAIN, true, route_explain},
    {"v1/reports/*", M_GET, ROUTE_REPORT, true, route_report},
    {"v1/inventory", M_POST, ROUTE_INVENTORY, true, route_inventory},
    {"healthz", M_GET, ROUTE_HEALTHZ, false, route_healthz},
    {"metrics", M_GET, ROUTE_METRICS, false, route_metrics},
};

#define NROUTES (sizeof routes / sizeof routes[0])

static const struct {
    unsigned bit;
    const char *name;
} methods[] = {
    {EVHTTP_REQ_GET, "GET"},         {EVHTTP_REQ_POST, "POST"},   {EVHTTP_REQ_HEAD, "HEAD"},
    {EVHTTP_REQ_PUT, "PUT"},         {EVHTTP_REQ_DELETE, "DELETE"}, {EVHTTP_REQ_OPTIONS, "OPTIONS"},
    {EVHTTP_REQ_TRACE, "TRACE"},     {EVHTTP_REQ_CONNECT, "CONNECT"}, {EVHTTP_REQ_PATCH, "PATCH"},
};

static const char *method_name(unsigned m)
{
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        if (methods[i].bit == m)
            return methods[i].name;
    return "?";
}

static const char *reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Internal Server Error";
    }
}

/* ------------------------------------------------------------------------
 * Replies
 * ---------------------------------------------------------------------- */

void http_reply(bworker *w, struct evhttp_request *req, broker_route route, int status,
                const char *content_type, const char *body, size_t len)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", content_type);
    if (w->draining)
        evhttp_add_header(h, "Connection", "close");
    if (len && evbuffer_add(evhttp_request_get_output_buffer(req), body, len) < 0) {
        evhttp_send_reply(req, 500, reason(500), NULL);
        METRIC_INC(w->m.requests[route][STATUS_500]);
        return;
    }
    evhttp_send_reply(req, status, reason(status), NULL);
    METRIC_INC(w->m.requests[route][broker_status_index(status)]);
}

void http_error(bworker *w, struct evhttp_request *req, broker_route route, int status,
                const char *fmt, ...)
{
    char msg[1024];
    tsl_buf out = TSL_BUF_INIT;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (tsl_buf_puts(&out, "{\"error\":") < 0 || tsl_buf_json_str(&out, msg) < 0 ||
        tsl_buf_puts(&out, "}\n") < 0) {
        static const char oom[] = "{\"error\":\"out of memory\"}\n";
        http_reply(w, req, route, 500, "application/json", oom, sizeof oom - 1);
    } else {
        http_reply(w, req, route, status, "application/json", out.ptr, out.len);
    }
    tsl_buf_free(&out);
    if (status >= 500)
        broker_log(w->b, TSL_LOG_ERROR, "%s: %s", broker_route_names[route], msg);
    else
        broker_log(w->b, TSL_LOG_DEBUG, "Refused a %s request (%d): %s",
                   broker_route_names[route], status, msg);
}

/* ------------------------------------------------------------------------
 * Reading requests
 * ---------------------------------------------------------------------- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

bool http_decode(char *s, bool plus)
{
    char *o = s;
    for (const char *p = s; *p; p++) {
        if (*p == '%') {
            int hi = hexval(p[1]), lo = hi < 0 ? -1 : hexval(p[2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return false;
            *o++ = (char)(hi * 16 + lo);
            p += 2;
        } else if (*p == '+' && plus) {
            *o++ = ' ';
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
    return true;
}

int http_query(bworker *w, struct evhttp_request *req, broker_route route, char *query,
               http_param *out, int max)
{
    int n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(query, "&", &save); tok; tok = strtok_r(NULL, "&", &save)) {
        if (n == max) {
            http_error(w, req, route, 400, "too many query parameters (at most %d)", max);
            return -1;
        }
        char *eq = strchr(tok, '=');
        if (eq)
            *eq = '\0';
        out[n].key = tok;
        out[n].value = eq ? eq + 1 : tok + strlen(tok);
        if (!http_decode(out[n].key, true) || !http_decode(out[n].value, true)) {
            http_error(w, req, route, 400,
                       "malformed query string: bad percent-encoding in parameter \"%s\"",
                       out[n].key);
            return -1;
        }
        if (!out[n].key[0]) {
            http_error(w, req, route, 400, "malformed query string: a parameter without a name");
            return -1;
        }
        n++;
    }
    return n;
}

bool http_no_params(bworker *w, struct evhttp_request *req, route_ctx *c)
{
    http_param p[HTTP_MAX_PARAMS];
    int n = http_query(w, req, c->route, c->query, p, HTTP_MAX_PARAMS);
    if (n < 0)
        return false;
    if (n > 0) {
        http_error(w, req, c->route, 400, "unknown parameter \"%s\" (this endpoint takes none)",
                   p[0].key);
        return false;
    }
    return true;
}

const char *http_body(bworker *w, struct evhttp_request *req, broker_route route, size_t limit,
                      size_t *len)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    *len = 0;
    if (n > limit) {
        http_error(w, req, route, 413, "request body of %zu bytes is over the %zu-byte limit", n,
                   limit);
        return NULL;
    }
    tsl_buf_clear(&w->body);
    if (tsl_buf_grow(&w->body, n) < 0 || (n && evbuffer_copyout(in, w->body.ptr, n) != (ev_ssize_t)n)) {
        http_error(w, req, route, 500, "out of memory reading the request body");
        return NULL;
    }
    w->body.len = n;
    w->body.ptr[n] = '\0';
    if (memchr(w->body.ptr, '\0', n)) {
        http_error(w, req, route, 400, "the request body contains a NUL byte");
        return NULL;
    }
    *len = n;
    return w->body.ptr;
}

bool http_authorized(bworker *w, struct evhttp_request *req, broker_route route)
{
    const char *auth = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    const char *token = NULL;
    if (auth && strncasecmp(auth, "Bearer ", 7) == 0) {
        token = auth + 7;
        while (*token == ' ')
            token++;
    }
    if (token && token_matches(w->b, token))
        return true;
    evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
                      "Bearer realm=\"tsl admin\"");
    http_error(w, req, route, 401,
               auth ? "wrong admin token (send Authorization: Bearer TOKEN, the token in the "
                      "broker's admin token file)"
                    : "this endpoint needs the admin token: send Authorization: Bearer TOKEN "
                      "(the token is in the broker's admin token file)");
    return false;
}

/* ------------------------------------------------------------------------
 * Dispatch
 * ---------------------------------------------------------------------- */

/* true when the path segments match a route pattern; *arg gets the "*". */
/* When `req` is a stand-in for a request the edge refused (edge.c sends
 * it to b->edge_prefix/STATUS?MESSAGE), replies its JSON error and
 * returns true. */
static bool edge_stand_in(bworker *w, struct evhttp_request *req)
{
    const char *uri = evhttp_request_get_uri(req);
    size_t plen = strlen(w->b->edge_prefix);
    if (!uri || uri[0] != '/' || strncmp(uri + 1, w->b->edge_prefix, plen) != 0 ||
        uri[1 + plen] != '/')
        return false;
    const char *p = uri + 2 + plen;
    int status = atoi(p);
    const char *q = strchr(p, '?');
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", q ? q + 1 : "");
    if (status < 400 || status > 599 || !http_decode(msg, false))
        return false;
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Connection", "close");
    if (status == 503)
        evhttp_add_header(h, "Retry-After", "1");
    /* logged by refuse() at debug level: a flood of refusals is no flood
     * of error lines */
    tsl_buf out = TSL_BUF_INIT;
    if (tsl_buf_puts(&out, "{\"error\":") < 0 || tsl_buf_json_str(&out, msg) < 0 ||
        tsl_buf_puts(&out, "}\n") < 0)
        http_error(w, req, ROUTE_OTHER, 500, "out of memory");
    else
        http_reply(w, req, ROUTE_OTHER, status, "application/json", out.ptr, out.len);
    tsl_buf_free(&out);
    return true;
}

static bool path_matches(const char *pattern, char **segs, int nsegs, const char **arg)
{
    int i = 0;
    const char *p = pattern;
    *arg = NULL;
    while (*p) {
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (i == nsegs)
            return false;
        if (len == 1 && *p == '*') {
            if (!segs[i][0])
                return false;
            *arg = segs[i];
        } else if (strlen(segs[i]) != len || memcmp(segs[i], p, len) != 0) {
            return false;
        }
        i++;
        p = end ? end + 1 : p + len;
    }
    return i == nsegs;
}

static bool headers_ok(bworker *w, struct evhttp_request *req)
{
    struct evkeyvalq *h = evhttp_request_get_input_headers(req);
    struct evkeyval *kv;
    int count = 0;
    size_t bytes = 0;
    for (kv = h->tqh_first; kv; kv = kv->next.tqe_next) {
        count++;
        bytes += strlen(kv->key) + strlen(kv->value) + 4;
    }
    if (count > w->b->cfg.max_headers) {
        http_error(w, req, ROUTE_OTHER, 431, "too many header lines (%d, at most %d)", count,
                   w->b->cfg.max_headers);
        return false;
    }
    if (bytes > w->b->cfg.max_headers_size) {
        http_error(w, req, ROUTE_OTHER, 431, "headers of %zu bytes are over the %zu-byte limit",
                   bytes, w->b->cfg.max_headers_size);
        return false;
    }
    return true;
}

static void on_request(struct evhttp_request *req, void *arg)
{
    bworker *w = arg;
    char uri[URI_MAX], *segs[PATH_SEGMENTS_MAX];
    int nsegs = 0;
    unsigned method = (unsigned)evhttp_request_get_command(req);
    const char *raw = evhttp_request_get_uri(req);

    worker_refresh_plan(w);
    edge_track(w, req);
    if (edge_stand_in(w, req))
        return;
    if (!headers_ok(w, req))
        return;
    if (!raw || raw[0] != '/') {
        http_error(w, req, ROUTE_OTHER, 400, "the request target must be a path starting with /");
        return;
    }
    size_t len = strlen(raw);
    if (len >= sizeof uri) {
        http_error(w, req, ROUTE_OTHER, 414, "request target of %zu bytes is over the %d-byte limit",
                   len, URI_MAX - 1);
        return;
    }
    memcpy(uri, raw, len + 1);
    char *query = strchr(uri, '?');
    if (query)
        *query++ = '\0';
    else
        query = uri + len; /* "" */
    char *frag = strchr(query, '#');
    if (frag)
        *frag = '\0';

    /* split and decode the path */
    for (char *p = uri + 1;;) {
        if (nsegs == PATH_SEGMENTS_MAX) {
            http_error(w, req, ROUTE_OTHER, 404, "no such endpoint: %s %s (see docs/http-api.md)",
                       method_name(method), raw);
            return;
        }
        segs[nsegs++] = p;
        char *slash = strchr(p, '/');
        if (!slash)
            break;
        *slash = '\0';
        p = slash + 1;
    }
    for (int i = 0; i < nsegs; i++) {
        if (!http_decode(segs[i], false)) {
            http_error(w, req, ROUTE_OTHER, 400, "malformed path: bad percent-encoding");
            return;
        }
    }

    unsigned allowed = 0;
    for (size_t i = 0; i < NROUTES; i++) {
        const char *arg_seg;
        if (!path_matches(routes[i].path, segs, nsegs, &arg_seg))
            continue;
        allowed |= routes[i].methods;
        if (!(routes[i].methods & method))
            continue;
        if (routes[i].admin && !http_authorized(w, req, routes[i].route))
            return;
        route_ctx c = {routes[i].route, query, arg_seg};
        routes[i].fn(w, req, &c);
        return;
    }
    if (allowed) {
        char list[128] = "";
        size_t off = 0;
        for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
            if (allowed & methods[i].bit)
                off += (size_t)snprintf(list + off, sizeof list - off, "%s%s", off ? ", " : "",
                                        methods[i].name);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", list);
        http_error(w, req, ROUTE_OTHER, 405, "method %s is not allowed on %s (allowed: %s)",
                   method_name(method), raw, list);
        return;
    }
    http_error(w, req, ROUTE_OTHER, 404, "no such endpoint: %s %s (see docs/http-api.md)",
               method_name(method), raw);
}

/* ------------------------------------------------------------------------
 * Worker events and setup
 * ---------------------------------------------------------------------- */

static void on_worker_stop(evutil_socket_t fd, short what, void *arg)
{
    bworker *w = arg;
    (void)fd;
    (void)what;
    if (w->bound) {
        evhttp_del_accept_socket(w->http, w->bound);
        w->bound = NULL;
    }
    w->draining = true;
}

static void on_worker_refresh(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    worker_refresh_plan(arg);
}

int http_worker_setup(bworker *w)
{
    const tsl_broker_config *cfg = &w->b->cfg;
    size_t body = cfg->max_body > cfg->max_import_body ? cfg->max_body : cfg->max_import_body;

    if (!(w->http = evhttp_new(w->base)) ||
        !(w->stop_ev = event_new(w->base, -1, 0, on_worker_stop, w)) ||
        !(w->refresh_ev = event_new(w->base, -1, 0, on_worker_refresh, w)))
        return tsl_seterr(TSL_ERROR, "cannot create the HTTP server");
    evhttp_set_gencb(w->http, on_request, w);
    /* every method reaches the dispatcher, which answers 405 in JSON */
    evhttp_set_allowed_methods(w->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                            EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
                                            EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
    /* edge.c checks every request before evhttp parses it, with these
     * same limits: evhttp's are a second line that never answers first */
    evhttp_set_max_body_size(w->http, (ev_ssize_t)body);
    evhttp_set_max_headers_size(w->http, (ev_ssize_t)(cfg->max_headers_size * 4 + 16384));
    /* the idle limit; the whole-request deadline is the edge's, which
     * answers 408 first (a second later evhttp would just close) */
    evhttp_set_timeout(w->http, cfg->timeout_s + 1);
    evhttp_set_default_content_type(w->http, "application/json");
    return 0;
}
