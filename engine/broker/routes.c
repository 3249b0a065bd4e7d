/*
 * routes.c - the routes a worker answers itself, without SQLite:
 *
 *   GET  /v1/task-servers                  the hot path: one decision
 *   POST /v1/task-servers/NAME/heartbeat   a Task Server reports itself
 *   POST /v1/clients/GUID/registration     a CTA reports a registration
 *   GET  /v1/explain                       (admin) the trace of a decision
 *   GET  /healthz, GET /metrics
 *
 * Heartbeats and registrations are validated completely here (nothing is
 * queued for a request that gets a 4xx), then queued for the writer; the
 * reply waits for the transaction that holds the record to commit (group
 * commit, writer.c) and is sent by route_write_done on this worker's
 * thread, so an acknowledged write is in the store whatever happens next.
 *
 * Used by: http.c's route table.  Needs: routes.h, control.h (the
 * write queue), jansson.
 */
#include "routes.h"
#include "text.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define NAME_MAX_LEN 255

/* ------------------------------------------------------------------------
 * Records for the write queue: one allocation, strings after the struct
 * ---------------------------------------------------------------------- */

static size_t str_size(const char *s)
{
    return s ? strlen(s) + 1 : 0;
}

static const char *put_str(char **cur, const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *p = *cur;
    memcpy(p, s, n);
    *cur += n;
    return p;
}

/* Why a name from the path, the query or a body is refused (NULL: it is
 * fine): 1..255 bytes of UTF-8 without control characters (text.h, the
 * rule import applies too). */
static const char *name_problem(const char *s)
{
    return tsl_text_name_problem(s, NAME_MAX_LEN);
}

static bool valid_name(const char *s)
{
    return name_problem(s) == NULL;
}

/* " (it is not valid UTF-8)" when that is the problem, else "". */
static const char *utf8_note(const char *why)
{
    return why && strcmp(why, "is not valid UTF-8") == 0 ? " (it is not valid UTF-8)" : "";
}

/* ------------------------------------------------------------------------
 * GET /v1/task-servers (and the request part of explain)
 * ---------------------------------------------------------------------- */

/* Fills `r` from the query; replies 400 and returns -1 on bad input. */
static int parse_list_request(bworker *w, struct evhttp_request *req, route_ctx *c,
                              tsl_request *r)
{
    http_param p[HTTP_MAX_PARAMS];
    int n = http_query(w, req, c->route, c->query, p, HTTP_MAX_PARAMS);
    if (n < 0)
        return -1;
    memset(r, 0, sizeof *r);
    for (int i = 0; i < n; i++) {
        const char *k = p[i].key, *v = p[i].value;
        const char **slot = NULL;
        if (strcmp(k, "ip") == 0) {
            if (r->nips == TSL_MAX_IPS) {
                http_error(w, req, c->route, 400,
                           "too many ip parameters (at most %d, one per network adapter)",
                           TSL_MAX_IPS);
                return -1;
            }
            r->ips[r->nips++] = v;
            continue;
        }
        if (strcmp(k, "client") == 0)
            slot = &r->client;
        else if (strcmp(k, "department") == 0)
            slot = &r->department;
        else if (strcmp(k, "task") == 0)
            slot = &r->task;
        if (!slot) {
            http_error(w, req, c->route, 400,
                       "unknown parameter \"%s\" (expected client, ip, department, task)", k);
            return -1;
        }
        if (*slot) {
            http_error(w, req, c->route, 400, "parameter \"%s\" is given twice", k);
            return -1;
        }
        const char *why = name_problem(v);
        if (why) {
            http_error(w, req, c->route, 400,
                       "parameter \"%s\" must be 1 to %d printable characters%s", k,
                       NAME_MAX_LEN, utf8_note(why));
            return -1;
        }
        *slot = v;
    }
    if (!r->nips && !r->client) {
        http_error(w, req, c->route, 400,
                   "a list request needs ip=ADDRESS (one per network adapter) or client=GUID");
        return -1;
    }
    r->now = broker_now(w->b);
    return 0;
}

/* ------------------------------------------------------------------------
 * require_peer_ip: the request must come from one of its own adapters
 * ---------------------------------------------------------------------- */

static bool in_prefix(const tsl_ip *ip, const tsl_ip *pfx, int bits)
{
    for (int i = 0; i < bits; i++) {
        int m = 0x80 >> (i % 8);
        if ((ip->b[i / 8] & m) != (pfx->b[i / 8] & m))
            return false;
    }
    return true;
}

static bool trusted_proxy(const tsl_broker *b, const tsl_ip *ip)
{
    for (int i = 0; i < b->nproxies; i++)
        if (in_prefix(ip, &b->proxies[i], b->proxy_bits[i]))
            return true;
    return false;
}

/* The TCP peer of the request as a tsl_ip; false when it has none (a unix
 * socket, a closed connection). */
static bool peer_address(struct evhttp_request *req, tsl_ip *out)
{
    struct evhttp_connection *conn = evhttp_request_get_connection(req);
    const struct sockaddr *sa = conn ? evhttp_connection_get_addr(conn) : NULL;
    char text[INET6_ADDRSTRLEN];
    if (!sa)
        return false;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, text,
                  sizeof text);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, text,
                  sizeof text);
    else
        return false;
    return tsl_ip_parse(out, text) == 0;
}

/* The client's address: the peer, or, when the peer is a trusted proxy,
 * the nearest X-Forwarded-For hop (from the right) that is not one.  Writes
 * its text into `text`; false when it cannot be told. */
static bool client_address(const tsl_broker *b, struct evhttp_request *req, tsl_ip *out,
                           char *text, size_t len)
{
    if (!peer_address(req, out))
        return false;
    const char *xff = evhttp_find_header(evhttp_request_get_input_headers(req),
                                         "X-Forwarded-For");
    size_t end = xff ? strlen(xff) : 0; /* hops left: xff[0..end) */
    while (trusted_proxy(b, out)) {
        char hop[64];
        while (end > 0 && (xff[end - 1] == ' ' || xff[end - 1] == ','))
            end--;
        if (end == 0)
            return false; /* a trusted proxy that does not say for whom */
        size_t start = end;
        while (start > 0 && xff[start - 1] != ',')
            start--;
        size_t from = start;
        while (from < end && xff[from] == ' ')
            from++;
        if (end - from >= sizeof hop)
            return false;
        memcpy(hop, xff + from, end - from);
        hop[end - from] = '\0';
        if (tsl_ip_parse(out, hop) < 0) {
            tsl_error_clear();
            return false;
        }
        end = start;
    }
    tsl_ip_format(text, len, out);
    return true;
}

/* Replies 403 and returns -1 when require_peer_ip is on and the request
 * does not come from one of the adapters it names. */
static int check_peer(bworker *w, struct evhttp_request *req, route_ctx *c, const tsl_request *r)
{
    tsl_ip from, ip;
    char text[64];

    if (!w->b->cfg.require_peer_ip)
        return 0;
    if (!client_address(w->b, req, &from, text, sizeof text)) {
        METRIC_INC(w->m.peer_refused);
        http_error(w, req, c->route, 403,
                   "require_peer_ip: the client's address cannot be told (a trusted proxy "
                   "without a usable X-Forwarded-For)");
        return -1;
    }
    for (size_t i = 0; i < r->nips; i++)
        if (tsl_ip_parse(&ip, r->ips[i]) == 0 && memcmp(ip.b, from.b, sizeof ip.b) == 0)
            return 0;
    tsl_error_clear();
    METRIC_INC(w->m.peer_refused);
    http_error(w, req, c->route, 403,
               "require_peer_ip: the request comes from %s, which is not one of its ip= "
               "adapter addresses",
               text);
    return -1;
}

/* Appends "a,b,c" (or "none") of the list's server names. */
static int servers_text(tsl_buf *out, const tsl_result *res)
{
    size_t n = tsl_result_count(res);
    if (!n)
        return tsl_buf_puts(out, "none");
    for (size_t i = 0; i < n; i++) {
        int err = tsl_buf_printf(out, "%s%s", i ? "," : "", tsl_result_entry(res, i)->name);
        if (err < 0)
            return err;
    }
    return 0;
}

static void log_list(bworker *w, const tsl_request *r, const tsl_result *res)
{
    tsl_buf *l = &w->line;
    tsl_buf_clear(l);
    int err = tsl_buf_printf(l, "Received Task Server list request: client %s, ip ",
                             log_str(r->client));
    for (size_t i = 0; i < r->nips && err == 0; i++)
        err = tsl_buf_printf(l, "%s%s", i ? "," : "", r->ips[i]);
    if (err == 0 && !r->nips)
        err = tsl_buf_puts(l, "-");
    if (err == 0)
        err = tsl_buf_printf(l, ", department %s, task %s", log_str(r->department),
                             log_str(r->task));
    if (err == 0)
        broker_log_line(w->b, TSL_LOG_INFO, l->ptr);
    tsl_buf_clear(l);
    err = tsl_buf_printf(l, "Sent Task Server list: client %s, site %s, policy %s, servers ",
                         log_str(r->client), log_str(tsl_result_site(res)),
                         tsl_result_policy(res) ? tsl_result_policy(res) : "none");
    if (err == 0)
        err = servers_text(l, res);
    if (err == 0 && tsl_result_blocked(res))
        err = tsl_buf_printf(l, " (blocked: %s)", log_str(tsl_result_blocked_reason(res)));
    if (err == 0)
        broker_log_line(w->b, TSL_LOG_INFO, l->ptr);
}

/* Queues one decision_log row, within the per-second budget. */
static void log_decision(bworker *w, const tsl_request *r, const tsl_result *res)
{
    tsl_broker *b = w->b;
    tsl_buf *l = &w->line;
    int err = 0;

    if (b->cfg.decision_log_max <= 0)
        return;
    if (atomic_load_explicit(&b->dlog_budget, memory_order_relaxed) <= 0 ||
        atomic_fetch_sub(&b->dlog_budget, 1) <= 0) {
        METRIC_INC(w->m.dlog_dropped);
        return;
    }
    tsl_buf_clear(l);
    err = tsl_buf_puts(l, "[");
    for (size_t i = 0; i < r->nips && err == 0; i++)
        if ((err = tsl_buf_puts(l, i ? "," : "")) == 0)
            err = tsl_buf_json_str(l, r->ips[i]);
    if (err == 0)
        err = tsl_buf_put(l, "]", 2); /* with its NUL: the two strings sit back to back */
    size_t split = l->len;
    if (err == 0)
        err = tsl_buf_puts(l, "[");
    for (size_t i = 0; i < tsl_result_count(res) && err == 0; i++)
        if ((err = tsl_buf_puts(l, i ? "," : "")) == 0)
            err = tsl_buf_json_str(l, tsl_result_entry(res, i)->name);
    if (err == 0)
        err = tsl_buf_puts(l, "]");
    if (err < 0) {
        METRIC_INC(w->m.dlog_dropped);
        return;
    }
    const char *site = tsl_result_site(res), *policy = tsl_result_policy(res);
    size_t extra = l->len + 1 + str_size(r->client) + str_size(r->department) +
                   str_size(r->task) + str_size(site) + str_size(policy);
    wrec *rec = calloc(1, sizeof *rec + extra);
    if (!rec) {
        METRIC_INC(w->m.dlog_dropped);
        return;
    }
    char *cur = (char *)(rec + 1);
    rec->kind = WREC_DECISION;
    rec->at = r->now;
    rec->u.dec.ips = put_str(&cur, l->ptr);
    rec->u.dec.servers = put_str(&cur, l->ptr + split);
    rec->u.dec.client = put_str(&cur, r->client);
    rec->u.dec.department = put_str(&cur, r->department);
    rec->u.dec.task = put_str(&cur, r->task);
    rec->u.dec.site = put_str(&cur, site);
    rec->u.dec.policy = put_str(&cur, policy);
    rec->u.dec.blocked = tsl_result_blocked(res);
    rec->u.dec.count = (int)tsl_result_count(res);
    if (writer_enqueue(b, rec) < 0) {
        free(rec);
        METRIC_INC(w->m.dlog_dropped);
    }
}

/* Counts what the decision says into the metrics; logs new rule errors. */
static void count_decision(bworker *w, const tsl_result *res, uint64_t ns)
{
    metrics_observe_latency(&w->m, ns);
    size_t n = tsl_result_count(res);
    if (tsl_result_blocked(res))
        METRIC_INC(w->m.blocked);
    if (!n)
        METRIC_INC(w->m.empty);
    else if (tsl_result_entry(res, 0)->tier > 0) {
        int t = tsl_result_entry(res, 0)->tier;
        METRIC_INC(w->m.fallback[t > BROKER_MAX_TIER ? BROKER_MAX_TIER : t]);
    }
    uint64_t errors = tsl_worker_policy_errors(w->tw);
    if (errors != w->seen_policy_errors) {
        METRIC_ADD(w->m.policy_errors, errors - w->seen_policy_errors);
        w->seen_policy_errors = errors;
        broker_log(w->b, TSL_LOG_WARNING, "Policy rule error (policy %s): %s",
                   tsl_result_policy(res) ? tsl_result_policy(res) : "none",
                   log_str(tsl_worker_last_policy_error(w->tw)));
    }
}

/* Shadow mode: the same request decided with the shadow version, after
 * the answer is sent (it never changes it, nor delays it), compared with
 * the answer and counted in the tally the writer flushes. */
static void shadow_observe(bworker *w, const tsl_request *r)
{
    if (!w->shadow_plan || !w->shadow)
        return;
    bool ok = tsl_decide(w->shadow_res, w->shadow_tw, w->shadow_plan, r, NULL) == 0;
    tsl_shadow_observe(w->shadow, tsl_plan_snapshot(w->plan), r, w->res,
                       ok ? w->shadow_res : NULL);
}

void route_task_servers(bworker *w, struct evhttp_request *req, route_ctx *c)
{
    tsl_request r;
    int rc;

    if (parse_list_request(w, req, c, &r) < 0 || check_peer(w, req, c, &r) < 0)
        return;
    uint64_t t0 = broker_mono_ns();
    rc = tsl_decide(w->res, w->tw, w->plan, &r, NULL);
    uint64_t ns = broker_mono_ns() - t0;
    if (rc < 0) {
        http_error(w, req, c->route, rc == TSL_EINVALID ? 400 : 500, "%s", tsl_error_last());
        return;
    }
    count_decision(w, w->res, ns);
    if (tsl_result_department_ignored(w->res)) {
        METRIC_INC(w->m.department_ignored);
        broker_log(w->b, TSL_LOG_WARNING,
                   "Ignored the department \"%s\" of a list request for client %s: the "
                   "inventory knows this client, and its department is the one in force",
                   tsl_result_department_ignored(w->res), log_str(r.client));
    }
    tsl_buf_clear(&w->out);
    if (tsl_result_json(&w->out, w->res) < 0 || tsl_buf_puts(&w->out, "\n") < 0) {
        http_error(w, req, c->route, 500, "%s", tsl_error_last());
        return;
    }
    char cache[48];
    snprintf(cache, sizeof cache, "private, max-age=%d", tsl_result_ttl(w->res));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Cache-Control", cache);
    http_reply(w, req, c->route, 200, "application/json", w->out.ptr, w->out.len);
    if (broker_log_enabled(w->b, TSL_LOG_INFO))
        log_list(w, &r, w->res);
    log_decision(w, &r, w->res);
    shadow_observe(w, &r);
}

/* ------------------------------------------------------------------------
 * GET /v1/explain (admin): the same request, every step
 * ---------------------------------------------------------------------- */

void route_explain(bworker *w, struct evhttp_request *req, route_ctx *c)
{
    tsl_request r;
    int err;

    if (parse_list_request(w, req, c, &r) < 0)
        return;
    /* admins name clients by computer name too; an ambiguous name is refused */
    if (r.client) {
        const char *guid;
        err = tsl_snapshot_find_client(&guid, tsl_plan_snapshot(w->plan), r.client);
        if (err == TSL_EINVALID) {
            http_error(w, req, c->route, 400, "%s", tsl_error_last());
            return;
        }
        if (err == 0)
            r.client = guid;
    }
    tsl_trace_clear(w->trace);
    if ((err = tsl_decide(w->res, w->tw, w->plan, &r, w->trace)) < 0) {
        http_error(w, req, c->route, err == TSL_EINVALID ? 400 : 500, "%s", tsl_error_last());
        return;
    }
    tsl_buf *o = &w->out;
    tsl_buf_clear(o);
    err = tsl_buf_puts(o, "{\"steps\":[");
    for (size_t i = 0; i < tsl_trace_count(w->trace) && err == 0; i++) {
        if ((err = tsl_buf_puts(o, i ? ",\n  " : "\n  ")) == 0)
            err = tsl_buf_json_str(o, tsl_trace_line(w->trace, i));
    }
    if (err == 0)
        err = tsl_buf_puts(o, "],\n\"result\":");
    if (err == 0)
        err = tsl_result_json(o, w->res);
    if (err == 0)
        err = tsl_buf_puts(o, "}\n");
    if (err < 0) {
        http_error(w, req, c->route, 500, "%s", tsl_error_last());
        return;
    }
    http_reply(w, req, c->route, 200, "application/json", o->ptr, o->len);
}

/* ------------------------------------------------------------------------
 * JSON bodies
 * ---------------------------------------------------------------------- */

/* Parses the body as a JSON object; replies 4xx and returns NULL otherwise. */
static json_t *json_body(bworker *w, struct evhttp_request *req, route_ctx *c)
{
    size_t len;
    json_error_t jerr;
    const char *body = http_body(w, req, c->route, w->b->cfg.max_body, &len);
    if (!body)
        return NULL;
    if (!len) {
        http_error(w, req, c->route, 400, "invalid JSON: the body is empty (expected an object)");
        return NULL;
    }
    json_t *doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc) {
        http_error(w, req, c->route, 400, "invalid JSON: %s (line %d, column %d)", jerr.text,
                   jerr.line, jerr.column);
        return NULL;
    }
    if (!json_is_object(doc)) {
        json_decref(doc);
        http_error(w, req, c->route, 400, "invalid JSON: the body must be an object");
        return NULL;
    }
    return doc;
}

/* A non-negative integer field; replies 400 and returns false otherwise. */
static bool get_count(bworker *w, struct evhttp_request *req, route_ctx *c, const char *key,
                      json_t *v, int64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        http_error(w, req, c->route, 400, "field \"%s\" must be a non-negative integer", key);
        return false;
    }
    *out = (int64_t)json_integer_value(v);
    return true;
}

/* ------------------------------------------------------------------------
 * POST /v1/task-servers/NAME/heartbeat
 * ---------------------------------------------------------------------- */

/* The sender's address, for per-peer limits and the pending list: the
 * peer, or behind a trusted proxy the address it forwards for. */
static const char *peer_of(const tsl_broker *b, struct evhttp_request *req, char *buf,
                           size_t len)
{
    tsl_ip ip;
    if (client_address(b, req, &ip, buf, len))
        return buf;
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    char *addr = NULL;
    ev_uint16_t port = 0;
    if (evcon)
        evhttp_connection_get_peer(evcon, &addr, &port);
    snprintf(buf, len, "%s", addr && *addr ? addr : "-");
    return buf;
}

/* 429 with Retry-After and a JSON body. */
static void too_many(bworker *w, struct evhttp_request *req, broker_route route, int retry_s,
                     const char *what)
{
    char ra[24];
    snprintf(ra, sizeof ra, "%d", retry_s > 0 ? retry_s : 1);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", ra);
    http_error(w, req, route, 429, "%s; try again in %s s", what, ra);
}

/* A heartbeat's identity field that differs from the inventory: 409. */
static void identity_refused(bworker *w, struct evhttp_request *req, route_ctx *c,
                             const char *field, const char *given, const char *stored)
{
    http_error(w, req, c->route, 409,
               "field \"%s\": \"%s\" is not what the inventory has (\"%s\"): a heartbeat reports "
               "load and service state only; a Task Server's host, ip and sites change through "
               "import or the admin API",
               field, given, stored);
}

/* The identity fields a known server's heartbeat carries must be the
 * inventory's (they may be sent, as Task Servers always did, but change
 * nothing); replies 409 naming the first that differs. */
static bool identity_matches(bworker *w, struct evhttp_request *req, route_ctx *c,
                             const tsl_snapshot *snap, const snap_server *sv,
                             const snap_server_update *up, const int32_t *site_idx)
{
    char have[512];
    if (up->set & SNAP_UP_HOST) {
        const char *h = sv->host && *sv->host ? sv->host : "";
        if (strcasecmp(h, up->host) != 0) {
            identity_refused(w, req, c, "host", up->host, h);
            return false;
        }
    }
    if (up->set & SNAP_UP_IP) {
        tsl_ip ip;
        tsl_ip_parse(&ip, up->ip); /* checked already */
        if (!sv->has_addr || memcmp(ip.b, sv->addr.b, sizeof ip.b) != 0) {
            identity_refused(w, req, c, "ip", up->ip, sv->ip ? sv->ip : "");
            return false;
        }
    }
    if (up->set & SNAP_UP_SITES) {
        bool same = up->nsites == sv->nsites;
        for (size_t i = 0; same && i < up->nsites; i++)
            same = site_idx[i] == sv->sites[i];
        if (!same) {
            size_t off = 0;
            have[0] = '\0';
            for (uint32_t i = 0; i < sv->nsites && off < sizeof have; i++)
                off += (size_t)snprintf(have + off, sizeof have - off, "%s%s", i ? "," : "",
                                        snap->sites[sv->sites[i]].name);
            char given[512];
            off = 0;
            given[0] = '\0';
            for (size_t i = 0; i < up->nsites && off < sizeof given; i++)
                off += (size_t)snprintf(given + off, sizeof given - off, "%s%s", i ? "," : "",
                                        up->sites[i]);
            identity_refused(w, req, c, "sites", given, have);
            return false;
        }
    }
    return true;
}

void route_heartbeat(bworker *w, struct evhttp_request *req, route_ctx *c)
{
    tsl_broker *b = w->b;
    const tsl_snapshot *snap = tsl_plan_snapshot(w->plan);
    snap_server_update up;
    const char *service = NULL, *why;
    const char *sites[64];
    int32_t site_idx[64];
    json_t *doc = NULL, *v;
    const char *key;
    wrec *rec = NULL;
    int retry;

    memset(&up, 0, sizeof up);
    if (!http_no_params(w, req, c))
        goto done;
    /* who: the Task Servers' token, then the per-peer rate */
    if (!token_equal(b->ts_token, token_bearer(req))) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
                          "Bearer realm=\"tsl task servers\"");
        http_error(w, req, c->route, 401,
                   token_bearer(req)
                       ? "wrong task server token (send Authorization: Bearer TOKEN, the token "
                         "in the broker's task server token file)"
                       : "a heartbeat needs the task server token: send Authorization: Bearer "
                         "TOKEN (the token is in the broker's task server token file)");
        goto done;
    }
    char peer_text[64];
    const char *peer = peer_of(b, req, peer_text, sizeof peer_text);
    if (!ratelimit_take(b->hb_limit, peer, broker_mono_ns(), &retry)) {
        too_many(w, req, c->route, retry, "too many heartbeats from this address");
        goto done;
    }
    if ((why = name_problem(c->arg))) {
        http_error(w, req, c->route, 400, "a task server name is 1 to %d printable characters%s",
                   NAME_MAX_LEN, utf8_note(why));
        goto done;
    }
    if (!(doc = json_body(w, req, c)))
        goto done;
    json_object_foreach(doc, key, v) {
        if (strcmp(key, "connections") == 0) {
            if (!get_count(w, req, c, key, v, &up.connections))
                goto done;
            up.set |= SNAP_UP_CONNECTIONS;
        } else if (strcmp(key, "capacity") == 0) {
            if (!get_count(w, req, c, key, v, &up.capacity))
                goto done;
            up.set |= SNAP_UP_CAPACITY;
        } else if (strcmp(key, "response_ms") == 0) {
            if (!get_count(w, req, c, key, v, &up.response_ms))
                goto done;
            up.set |= SNAP_UP_RESPONSE;
        } else if (strcmp(key, "service") == 0) {
            const char *s = json_string_value(v);
            if (!s || (strcmp(s, "running") != 0 && strcmp(s, "stopped") != 0)) {
                http_error(w, req, c->route, 400,
                           "field \"service\" must be \"running\" or \"stopped\"");
                goto done;
            }
            service = s;
            up.running = strcmp(s, "running") == 0;
            up.set |= SNAP_UP_RUNNING;
        } else if (strcmp(key, "registered") == 0) {
            if (!json_is_boolean(v)) {
                http_error(w, req, c->route, 400, "field \"registered\" must be true or false");
                goto done;
            }
            up.registered = json_is_true(v);
            up.set |= SNAP_UP_REGISTERED;
        } else if (strcmp(key, "host") == 0) {
            if (!json_is_string(v) || name_problem(json_string_value(v))) {
                http_error(w, req, c->route, 400,
                           "field \"host\" must be a host name of 1 to %d characters",
                           NAME_MAX_LEN);
                goto done;
            }
            up.host = json_string_value(v);
            up.set |= SNAP_UP_HOST;
        } else if (strcmp(key, "ip") == 0) {
            tsl_ip ip;
            if (!json_is_string(v) || tsl_ip_parse(&ip, json_string_value(v)) < 0) {
                http_error(w, req, c->route, 400, "field \"ip\": %s",
                           json_is_string(v) ? tsl_error_last() : "expected an IP address");
                goto done;
            }
            up.ip = json_string_value(v);
            up.set |= SNAP_UP_IP;
        } else if (strcmp(key, "sites") == 0) {
            size_t i;
            json_t *s;
            if (!json_is_array(v) || json_array_size(v) > sizeof sites / sizeof sites[0]) {
                http_error(w, req, c->route, 400,
                           "field \"sites\" must be an array of at most %zu site names",
                           sizeof sites / sizeof sites[0]);
                goto done;
            }
            json_array_foreach(v, i, s) {
                if (!json_is_string(s)) {
                    http_error(w, req, c->route, 400, "sites[%zu] must be a site name", i);
                    goto done;
                }
                sites[i] = json_string_value(s);
            }
            /* the rule import applies: no site twice, whatever its case */
            if (tsl_text_site_list("sites", sites, json_array_size(v), NAME_MAX_LEN) < 0) {
                http_error(w, req, c->route, 400, "%s", tsl_error_last());
                goto done;
            }
            json_array_foreach(v, i, s) {
                int32_t si = snap_find_site(snap, sites[i]);
                if (si < 0) {
                    http_error(w, req, c->route, 422, "sites[%zu]: unknown site \"%s\"", i,
                               sites[i]);
                    goto done;
                }
                site_idx[i] = si;
                sites[i] = snap->sites[si].name; /* the inventory's spelling */
            }
            up.sites = sites;
            up.nsites = json_array_size(v);
            up.set |= SNAP_UP_SITES;
        } else {
            http_error(w, req, c->route, 400,
                       "unknown field \"%s\" (expected connections, capacity, response_ms, "
                       "service, registered, host, ip, sites)",
                       key);
            goto done;
        }
    }

    /* the inventory's spelling of a known name; its identity stays the
     * inventory's.  A new name is refused, or waits for approval. */
    int32_t known = snap_find_server(snap, c->arg);
    const snap_server *sv = known >= 0 ? &snap->servers[known] : NULL;
    if (sv) {
        if (!identity_matches(w, req, c, snap, sv, &up, site_idx))
            goto done;
        up.set &= ~(unsigned)(SNAP_UP_HOST | SNAP_UP_IP | SNAP_UP_SITES);
        up.host = up.ip = NULL;
        up.sites = NULL;
        up.nsites = 0;
    } else if (!b->cfg.heartbeat_registration) {
        http_error(w, req, c->route, 403,
                   "unknown task server \"%s\": a heartbeat registers no server (an admin adds "
                   "it by import, or runs the broker with --heartbeat-registration and "
                   "approves it)",
                   c->arg);
        goto done;
    }
    /* --max-servers is the writer's to judge (it knows whether this name is
     * pending already): a 429 from there writes nothing and costs no sync */
    up.name = sv ? sv->name : c->arg;
    up.heartbeat = broker_now(b);
    up.set |= SNAP_UP_HEARTBEAT;

    size_t extra = up.nsites * sizeof(char *) + str_size(up.name) + str_size(up.host) +
                   str_size(up.ip) + str_size(service) + str_size(peer);
    for (size_t i = 0; i < up.nsites; i++)
        extra += str_size(up.sites[i]);
    if (!(rec = calloc(1, sizeof *rec + extra))) {
        http_error(w, req, c->route, 503, "out of memory");
        goto done;
    }
    const char **rsites = (const char **)(void *)(rec + 1);
    char *cur = (char *)(rsites + up.nsites);
    rec->kind = WREC_HEARTBEAT;
    rec->at = up.heartbeat;
    rec->u.hb.up = up;
    rec->u.hb.up.name = put_str(&cur, up.name);
    rec->u.hb.up.host = put_str(&cur, up.host);
    rec->u.hb.up.ip = put_str(&cur, up.ip);
    for (size_t i = 0; i < up.nsites; i++)
        rsites[i] = put_str(&cur, up.sites[i]);
    rec->u.hb.up.sites = up.nsites ? rsites : NULL;
    rec->u.hb.service = put_str(&cur, service);
    rec->u.hb.peer = put_str(&cur, peer);
    rec->is_new = !sv;
    rec->changes_service = sv && service && up.running != sv->running;
    /* answered by route_write_done once it is committed */
    rec->w = w;
    rec->done = route_write_done;
    rec->req = req;
    if (writer_enqueue(w->b, rec) < 0) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
        http_error(w, req, c->route, 503, "%s: try again shortly", tsl_error_last());
        goto done;
    }
    rec = NULL;

done:
    free(rec);
    json_decref(doc);
}

static void heartbeat_done(bworker *w, wrec *r)
{
    const snap_server_update *up = &r->u.hb.up;
    const char *service = r->u.hb.service;

    METRIC_INC(w->m.heartbeats);
    tsl_buf_clear(&w->out);
    if (tsl_buf_puts(&w->out, "{\"server\":") < 0 || tsl_buf_json_str(&w->out, up->name) < 0 ||
        tsl_buf_printf(&w->out, ",\"new\":%s,%s\"at\":%lld}\n", r->is_new ? "true" : "false",
                       r->is_new ? "\"pending\":true," : "", (long long)up->heartbeat) < 0) {
        http_error(w, r->req, ROUTE_HEARTBEAT, 500, "%s", tsl_error_last());
        return;
    }
    /* 202: stored, but in no list until an admin approves it */
    http_reply(w, r->req, ROUTE_HEARTBEAT, r->is_new ? 202 : 200, "application/json", w->out.ptr,
               w->out.len);

    if (r->is_new)
        broker_log(w->b, TSL_LOG_WARNING,
                   "Task Server %s (unknown to the inventory) announced itself from %s: pending "
                   "until an admin approves it (tsl servers approve %s)",
                   up->name, r->u.hb.peer ? r->u.hb.peer : "-", up->name);
    else if (r->changes_service)
        broker_log(w->b, TSL_LOG_INFO, "Task Server %s reports service %s: it %s the lists",
                   up->name, service, up->running ? "rejoins" : "leaves");
    else
        broker_log(w->b, TSL_LOG_DEBUG, "Heartbeat from Task Server %s", up->name);
}

/* ------------------------------------------------------------------------
 * POST /v1/clients/GUID/registration
 * ---------------------------------------------------------------------- */

void route_registration(bworker *w, struct evhttp_request *req, route_ctx *c)
{
    const tsl_snapshot *snap = tsl_plan_snapshot(w->plan);
    json_t *doc = NULL, *v;
    const char *key, *server = NULL, *error = NULL;
    int ok = -1;
    tsl_request r;
    wrec *rec = NULL;

    memset(&r, 0, sizeof r);
    if (!http_no_params(w, req, c))
        goto done;
    const char *why = name_problem(c->arg);
    if (why || strlen(c->arg) > TSL_GUID_MAX) {
        http_error(w, req, c->route, 400, "a client GUID is 1 to %d printable characters%s",
                   TSL_GUID_MAX, utf8_note(why));
        goto done;
    }
    /* reports stay open (no credential, as in ITMS), but each client has
     * its own budget; the GUID's case does not make a new client */
    char folded[TSL_GUID_MAX + 1];
    size_t fl = 0;
    for (; c->arg[fl]; fl++)
        folded[fl] = (char)((c->arg[fl] >= 'A' && c->arg[fl] <= 'Z') ? c->arg[fl] + 32 : c->arg[fl]);
    folded[fl] = '\0';
    int retry;
    if (!ratelimit_take(w->b->reg_limit, folded, broker_mono_ns(), &retry)) {
        too_many(w, req, c->route, retry, "too many registration reports for this client");
        goto done;
    }
    if (!(doc = json_body(w, req, c)))
        goto done;
    json_object_foreach(doc, key, v) {
        if (strcmp(key, "server") == 0) {
            if (!json_is_string(v) || !valid_name(json_string_value(v))) {
                http_error(w, req, c->route, 400, "field \"server\" must be a task server name");
                goto done;
            }
            server = json_string_value(v);
        } else if (strcmp(key, "ok") == 0) {
            if (!json_is_boolean(v)) {
                http_error(w, req, c->route, 400, "field \"ok\" must be true or false");
                goto done;
            }
            ok = json_is_true(v);
        } else if (strcmp(key, "error") == 0) {
            if (!json_is_string(v) && !json_is_null(v)) {
                http_error(w, req, c->route, 400, "field \"error\" must be a string");
                goto done;
            }
            error = json_string_value(v);
            if (error && strlen(error) > 1024) {
                http_error(w, req, c->route, 400, "field \"error\" is longer than 1024 characters");
                goto done;
            }
        } else if (strcmp(key, "ip") == 0) {
            /* the adapter IPs, to judge the site of a client the inventory lacks */
            json_t *ips = json_is_string(v) ? NULL : v, *s;
            size_t i;
            if (json_is_string(v)) {
                r.ips[r.nips++] = json_string_value(v);
            } else if (json_is_array(v) && json_array_size(v) <= TSL_MAX_IPS) {
                json_array_foreach(ips, i, s) {
                    if (!json_is_string(s)) {
                        http_error(w, req, c->route, 400, "ip[%zu] must be an IP address", i);
                        goto done;
                    }
                    r.ips[r.nips++] = json_string_value(s);
                }
            } else {
                http_error(w, req, c->route, 400,
                           "field \"ip\" must be an IP address or an array of at most %d",
                           TSL_MAX_IPS);
                goto done;
            }
            for (size_t k = 0; k < r.nips; k++) {
                tsl_ip ip;
                if (tsl_ip_parse(&ip, r.ips[k]) < 0) {
                    http_error(w, req, c->route, 400, "field \"ip\": %s", tsl_error_last());
                    goto done;
                }
            }
        } else {
            http_error(w, req, c->route, 400,
                       "unknown field \"%s\" (expected server, ok, error, ip)", key);
            goto done;
        }
    }
    if (!server || ok < 0) {
        http_error(w, req, c->route, 400, "missing field \"%s\"", !server ? "server" : "ok");
        goto done;
    }
    int32_t si = snap_find_server(snap, server);
    if (si < 0) {
        http_error(w, req, c->route, 422, "unknown task server \"%s\"", server);
        goto done;
    }
    server = snap->servers[si].name;
    int32_t ci = snap_find_client(snap, c->arg);
    const char *guid = ci >= 0 ? snap->clients[ci].guid : c->arg;
    if (!ok && (!error || !*error))
        error = "unknown error";

    /* judge it against the list the client would get now */
    r.client = guid;
    r.now = broker_now(w->b);
    bool judged = tsl_decide(w->res, w->tw, w->plan, &r, NULL) == 0;
    bool listed = false, outside = false;
    int tier = 0;
    const char *site = judged ? tsl_result_site(w->res) : NULL;
    const char *policy = judged ? tsl_result_policy(w->res) : NULL;
    if (judged) {
        for (size_t i = 0; i < tsl_result_count(w->res); i++) {
            const tsl_entry *e = tsl_result_entry(w->res, i);
            if (e->name == server) {
                listed = true;
                tier = e->tier;
                break;
            }
        }
        outside = !listed || tier > 0;
    }

    size_t extra = str_size(guid) + str_size(server) + str_size(ok ? NULL : error) +
                   str_size(site) + str_size(policy);
    if (!(rec = calloc(1, sizeof *rec + extra))) {
        http_error(w, req, c->route, 503, "out of memory");
        goto done;
    }
    char *cur = (char *)(rec + 1);
    rec->kind = WREC_REGISTRATION;
    rec->at = r.now;
    rec->u.reg.client = put_str(&cur, guid);
    rec->u.reg.server = put_str(&cur, server);
    rec->u.reg.error = put_str(&cur, ok ? NULL : error);
    rec->u.reg.site = put_str(&cur, site);
    rec->u.reg.policy = put_str(&cur, policy);
    rec->u.reg.ok = ok;
    rec->u.reg.listed = listed;
    rec->u.reg.tier = tier;
    rec->u.reg.judged = judged;
    rec->u.reg.outside_approved = outside;
    rec->u.reg.error_window = tsl_snapshot_settings(snap)->error_window;
    /* answered by route_write_done once it is committed */
    rec->w = w;
    rec->done = route_write_done;
    rec->req = req;
    if (writer_enqueue(w->b, rec) < 0) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
        http_error(w, req, c->route, 503, "%s: try again shortly", tsl_error_last());
        goto done;
    }
    rec = NULL;

done:
    free(rec);
    json_decref(doc);
}

static void registration_done(bworker *w, wrec *r)
{
    const char *guid = r->u.reg.client, *server = r->u.reg.server, *site = r->u.reg.site;
    const char *policy = r->u.reg.policy, *error = r->u.reg.error;
    bool ok = r->u.reg.ok, listed = r->u.reg.listed, judged = r->u.reg.judged;
    bool outside = r->u.reg.outside_approved;
    int tier = r->u.reg.tier;
    struct evhttp_request *req = r->req;

    if (ok)
        METRIC_INC(w->m.registrations_ok);
    else
        METRIC_INC(w->m.registrations_failed);
    if (ok && outside)
        METRIC_INC(w->m.registrations_outside);

    tsl_buf *o = &w->out;
    tsl_buf_clear(o);
    int err = tsl_buf_puts(o, "{\"client\":");
    if (err == 0) err = tsl_buf_json_str(o, guid);
    if (err == 0) err = tsl_buf_puts(o, ",\"server\":");
    if (err == 0) err = tsl_buf_json_str(o, server);
    if (err == 0) err = tsl_buf_printf(o, ",\"ok\":%s,\"site\":", ok ? "true" : "false");
    if (err == 0) err = tsl_buf_json_str(o, site);
    if (err == 0) {
        if (listed)
            err = tsl_buf_printf(o, ",\"tier\":%d", tier);
        else
            err = tsl_buf_puts(o, ",\"tier\":null");
    }
    if (err == 0)
        err = tsl_buf_printf(o, ",\"outside_approved\":%s}\n",
                             !judged ? "null" : outside ? "true" : "false");
    if (err < 0) {
        http_error(w, req, ROUTE_REGISTRATION, 500, "%s", tsl_error_last());
        return;
    }
    http_reply(w, req, ROUTE_REGISTRATION, 200, "application/json", o->ptr, o->len);

    if (!ok)
        broker_log(w->b, TSL_LOG_WARNING,
                   "Registration failed: client %s, Task Server %s, error \"%s\", site %s, "
                   "policy %s: %s ranks last for this client for the next %lld s",
                   guid, server, error, log_str(site), policy ? policy : "none", server,
                   (long long)r->u.reg.error_window);
    else
        broker_log(w->b, TSL_LOG_INFO,
                   "Registered to Task Server: %s: client %s, site %s, %s, policy %s", server,
                   guid, log_str(site),
                   !judged   ? "not judged (unknown client, no IP)"
                   : !listed ? "not in its list"
                   : tier    ? "fallback tier"
                             : "tier 0",
                   policy ? policy : "none");
}

void route_write_done(bworker *w, wrec *r)
{
    broker_route route = r->kind == WREC_HEARTBEAT ? ROUTE_HEARTBEAT : ROUTE_REGISTRATION;
    if (r->status != 200) {
        if (r->status == 503 || r->status == 429)
            evhttp_add_header(evhttp_request_get_output_headers(r->req), "Retry-After",
                              r->status == 429 ? "60" : "1");
        http_error(w, r->req, route, r->status, "not saved, nothing changed: %s%s", r->why,
                   r->status == 503 ? " (try again shortly)" : "");
        return;
    }
    if (r->kind == WREC_HEARTBEAT)
        heartbeat_done(w, r);
    else
        registration_done(w, r);
}

/* ------------------------------------------------------------------------
 * GET /healthz, GET /metrics
 * ---------------------------------------------------------------------- */

void route_healthz(bworker *w, struct evhttp_request *req, route_ctx *c)
{
    if (!http_no_params(w, req, c))
        return;
    const tsl_snapshot *snap = tsl_plan_snapshot(w->plan);
    const tsl_policy *pol = tsl_plan_policy(w->plan);
    tsl_buf *o = &w->out;
    tsl_buf_clear(o);
    int err = tsl_buf_printf(o, "{\"status\":\"%s\",\"policy\":", w->draining ? "stopping" : "ok");
    if (err == 0)
        err = tsl_buf_json_str(o, pol ? tsl_policy_version(pol) : NULL);
    if (err == 0)
        err = tsl_buf_printf(o,
                             ",\"sites\":%zu,\"task_servers\":%zu,\"clients\":%zu,"
                             "\"snapshot_age_s\":%lld,\"write_queue\":%zu}\n",
                             tsl_snapshot_site_count(snap), tsl_snapshot_server_count(snap),
                             tsl_snapshot_client_count(snap),
                             (long long)(broker_now(w->b) - tsl_snapshot_built_at(snap)),
                             atomic_load(&w->b->q_len));
    if (err < 0) {
        http_error(w, req, c->route, 500, "%s", tsl_error_last());
        return;
    }
    http_reply(w, req, c->route, w->draining ? 503 : 200, "application/json", o->ptr, o->len);
}

void route_metrics(bworker *w, struct evhttp_request *req, route_ctx *c)
{
    if (!http_no_params(w, req, c))
        return;
    tsl_buf_clear(&w->out);
    if (metrics_render(w->b, &w->out) < 0) {
        http_error(w, req, c->route, 500, "%s", tsl_error_last());
        return;
    }
    http_reply(w, req, c->route, 200, "text/plain; version=0.0.4; charset=utf-8", w->out.ptr,
               w->out.len);
}
