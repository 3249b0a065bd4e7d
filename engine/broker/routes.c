/*
 * routes.c - the routes a worker answers from the plan alone:
 *
 *   GET  /v1/task-servers                  the hot path: one decision
 *   GET  /v1/explain                       (admin) the trace of a decision
 *   GET  /healthz, GET /metrics
 *
 * The write routes are heartbeat.c's and registration.c's; what the
 * handlers share (record strings, names, the client's address, JSON
 * bodies) is route_common.c's.
 *
 * Used by: http.c's route table.  Needs: routes.h, route_common.h,
 * control.h (the decision log's records).
 */
#include "routes.h"
#include "route_common.h"
#include "text.h"

#include <stdarg.h>
#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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
        int err = tsl_buf_puts(out, i ? "," : "");
        if (err == 0)
            err = tsl_buf_puts(out, tsl_result_entry(res, i)->name);
        if (err < 0)
            return err;
    }
    return 0;
}

/* Appends strings until a NULL; the first error stops it.  The request
 * log is written for every list at info, so no printf here. */
static int put_all(tsl_buf *l, int err, ...)
{
    va_list ap;
    va_start(ap, err);
    for (const char *s; err == 0 && (s = va_arg(ap, const char *));)
        err = tsl_buf_puts(l, s);
    va_end(ap);
    return err;
}

static void log_list(bworker *w, const tsl_request *r, const tsl_result *res)
{
    tsl_buf *l = &w->line;
    tsl_buf_clear(l);
    int err = put_all(l, 0, "Received Task Server list request: client ", log_str(r->client),
                      ", ip ", (const char *)NULL);
    for (size_t i = 0; i < r->nips && err == 0; i++)
        err = put_all(l, err, i ? "," : "", r->ips[i], (const char *)NULL);
    err = put_all(l, err, r->nips ? "" : "-", ", department ", log_str(r->department),
                  ", task ", log_str(r->task), (const char *)NULL);
    if (err == 0)
        broker_log_request(w, l->ptr);
    tsl_buf_clear(l);
    err = put_all(l, 0, "Sent Task Server list: client ", log_str(r->client), ", site ",
                  log_str(tsl_result_site(res)), ", policy ",
                  tsl_result_policy(res) ? tsl_result_policy(res) : "none", ", servers ",
                  (const char *)NULL);
    if (err == 0)
        err = servers_text(l, res);
    if (err == 0 && tsl_result_blocked(res))
        err = put_all(l, err, " (blocked: ", log_str(tsl_result_blocked_reason(res)), ")",
                      (const char *)NULL);
    if (err == 0)
        broker_log_request(w, l->ptr);
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
