/*
 * sim_fake_broker.h - a minimal stand-in broker for the simulator's tests:
 * the list, heartbeat and registration endpoints of the HTTP API (issue 4)
 * on the simulator's own loop, deciding with the engine's default logic
 * (tsl_decide) over a snapshot rebuilt from the inventory document plus
 * the heartbeats and connection errors it has received.  No policies, no
 * admin API, no store: it lets the simulator be tested on its own.  The
 * scenarios in tests/scenarios run against the real broker (tsl simulate).
 *
 * Header-only (static functions), included by the test that uses it.
 * Needs: snapshot.h (the builder), sim.h, libevent, jansson.
 */
#ifndef TSL_SIM_FAKE_BROKER_H
#define TSL_SIM_FAKE_BROKER_H

#include "decide.h"
#include "sim.h"
#include "snapshot.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

typedef struct fake_hb {
    char name[96];
    int64_t connections, capacity, response_ms, at;
    bool running;
} fake_hb;

typedef struct fake_err {
    char guid[128], server[128];
    int64_t at;
} fake_err;

typedef struct fake_broker {
    struct evhttp *http;
    json_t *doc;
    tsl_settings settings;
    int64_t (*now)(void *);
    void *now_arg;
    fake_hb *hb;
    size_t nhb;
    fake_err *err;
    size_t nerr;
    bool dirty;
    int64_t built;      /* simulated second of the last rebuild */
    tsl_plan *plan;
    tsl_worker *worker;
    tsl_result *result;
    unsigned long lists, heartbeats, reports;
} fake_broker;

static int fake_rebuild(fake_broker *fb)
{
    tsl_snapshot *s = NULL;
    tsl_plan *p = NULL;
    int err;
    json_t *arr, *o;
    size_t i;

    if ((err = tsl_snapshot_begin(&s, &fb->settings)) < 0)
        return err;
    arr = json_object_get(fb->doc, "sites");
    json_array_foreach(arr, i, o) {
        json_t *subs = json_object_get(o, "subnets"), *c;
        size_t k;
        const char *name = json_string_value(json_object_get(o, "name"));
        if ((err = snap_add_site(s, name, json_string_value(json_object_get(o, "country")), NULL,
                                 NULL)) < 0)
            goto done;
        json_array_foreach(subs, k, c) {
            if ((err = snap_add_subnet(s, name, json_string_value(c))) < 0)
                goto done;
        }
    }
    arr = json_object_get(fb->doc, "task_servers");
    json_array_foreach(arr, i, o) {
        const char *sites[8];
        size_t ns = 0, k;
        json_t *c;
        json_array_foreach(json_object_get(o, "sites"), k, c) {
            if (ns < 8)
                sites[ns++] = json_string_value(c);
        }
        const char *name = json_string_value(json_object_get(o, "name"));
        int64_t cap = json_integer_value(json_object_get(o, "capacity"));
        int64_t conn = json_integer_value(json_object_get(o, "connections"));
        int64_t resp = json_integer_value(json_object_get(o, "response_ms"));
        int64_t at = 0;
        const char *svc = json_string_value(json_object_get(o, "service"));
        bool running = !svc || strcmp(svc, "running") == 0;
        for (size_t h = 0; h < fb->nhb; h++) {
            if (strcmp(fb->hb[h].name, name) != 0)
                continue;
            cap = fb->hb[h].capacity;
            conn = fb->hb[h].connections;
            resp = fb->hb[h].response_ms;
            running = fb->hb[h].running;
            at = fb->hb[h].at;
        }
        if ((err = snap_add_server(s, name, json_string_value(json_object_get(o, "host")),
                                   json_string_value(json_object_get(o, "ip")), sites, ns,
                                   !json_is_false(json_object_get(o, "registered")), running, cap,
                                   conn, resp, at)) < 0)
            goto done;
    }
    arr = json_object_get(fb->doc, "clients");
    json_array_foreach(arr, i, o) {
        if ((err = snap_add_client(s, json_string_value(json_object_get(o, "guid")),
                                   json_string_value(json_object_get(o, "name")),
                                   json_string_value(json_object_get(o, "ip")),
                                   json_string_value(json_object_get(o, "department")),
                                   json_string_value(json_object_get(o, "site")), NULL)) < 0)
            goto done;
    }
    for (size_t e = 0; e < fb->nerr; e++)
        if ((err = snap_add_error(s, fb->err[e].guid, fb->err[e].server, fb->err[e].at)) < 0)
            goto done;
    if ((err = tsl_snapshot_seal(s)) < 0 || (err = tsl_plan_new(&p, s, NULL)) < 0)
        goto done;
    tsl_plan_free(fb->plan);
    fb->plan = p;
    fb->dirty = false;
    fb->built = fb->now(fb->now_arg);
done:
    tsl_snapshot_free(s);
    return err;
}

static void fake_reply(struct evhttp_request *req, int code, const char *body, size_t len)
{
    struct evbuffer *b = evbuffer_new();
    if (b)
        evbuffer_add(b, body, len);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "application/json");
    evhttp_send_reply(req, code, code == 200 ? "OK" : "Error", b);
    if (b)
        evbuffer_free(b);
}

static void fake_list(fake_broker *fb, struct evhttp_request *req, const char *qs)
{
    struct evkeyvalq q;
    tsl_request r;
    tsl_buf out = TSL_BUF_INIT;
    memset(&r, 0, sizeof r);
    if (evhttp_parse_query_str(qs, &q) < 0) {
        fake_reply(req, 400, "{\"error\":\"bad query\"}", 21);
        return;
    }
    for (struct evkeyval *kv = q.tqh_first; kv; kv = kv->next.tqe_next) {
        if (strcmp(kv->key, "client") == 0)
            r.client = kv->value;
        else if (strcmp(kv->key, "ip") == 0 && r.nips < TSL_MAX_IPS)
            r.ips[r.nips++] = kv->value;
        else if (strcmp(kv->key, "department") == 0)
            r.department = kv->value;
        else if (strcmp(kv->key, "task") == 0)
            r.task = kv->value;
    }
    r.now = fb->now(fb->now_arg);
    fb->lists++;
    /* news shows within a simulated second, like the real broker's refresh */
    bool stale = fb->dirty && r.now > fb->built;
    if ((stale && fake_rebuild(fb) < 0) ||
        tsl_decide(fb->result, fb->worker, fb->plan, &r, NULL) < 0 ||
        tsl_result_json(&out, fb->result) < 0)
        fake_reply(req, 400, "{\"error\":\"decide\"}", 18);
    else
        fake_reply(req, 200, out.ptr, out.len);
    tsl_buf_free(&out);
    evhttp_clear_headers(&q);
}

static json_t *fake_body(struct evhttp_request *req)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
    return p ? json_loadb(p, n, 0, NULL) : NULL;
}

static void fake_cb(struct evhttp_request *req, void *arg)
{
    fake_broker *fb = arg;
    const char *uri = evhttp_request_get_uri(req);
    char name[128];
    if (strncmp(uri, "/v1/task-servers?", 17) == 0) {
        fake_list(fb, req, uri + 17);
        return;
    }
    if (sscanf(uri, "/v1/task-servers/%127[^/]/heartbeat", name) == 1) {
        json_t *o = fake_body(req);
        fake_hb *h = NULL;
        char *dec = evhttp_uridecode(name, 0, NULL);
        for (size_t i = 0; dec && i < fb->nhb; i++)
            if (strcmp(fb->hb[i].name, dec) == 0)
                h = &fb->hb[i];
        if (!h && dec) {
            fake_hb *p = realloc(fb->hb, (fb->nhb + 1) * sizeof *p);
            if (p) {
                fb->hb = p;
                h = &fb->hb[fb->nhb++];
                memset(h, 0, sizeof *h);
                snprintf(h->name, sizeof h->name, "%s", dec);
            }
        }
        if (h && o) {
            h->connections = json_integer_value(json_object_get(o, "connections"));
            h->capacity = json_integer_value(json_object_get(o, "capacity"));
            h->response_ms = json_integer_value(json_object_get(o, "response_ms"));
            const char *svc = json_string_value(json_object_get(o, "service"));
            h->running = svc && strcmp(svc, "running") == 0;
            h->at = fb->now(fb->now_arg);
            fb->dirty = true;
            fb->heartbeats++;
        }
        free(dec);
        json_decref(o);
        fake_reply(req, h && o ? 200 : 400, "{}", 2);
        return;
    }
    if (sscanf(uri, "/v1/clients/%127[^/]/registration", name) == 1) {
        json_t *o = fake_body(req);
        fb->reports++;
        if (o && json_is_false(json_object_get(o, "ok"))) {
            fake_err *p = realloc(fb->err, (fb->nerr + 1) * sizeof *p);
            if (p) {
                fb->err = p;
                fake_err *e = &fb->err[fb->nerr++];
                snprintf(e->guid, sizeof e->guid, "%s", name);
                snprintf(e->server, sizeof e->server, "%s",
                         json_string_value(json_object_get(o, "server")));
                e->at = fb->now(fb->now_arg);
                fb->dirty = true;
            }
        }
        json_decref(o);
        fake_reply(req, o ? 200 : 400, "{}", 2);
        return;
    }
    fake_reply(req, 404, "{\"error\":\"not in the fake broker\"}", 34);
}

static void fake_stop(void *b)
{
    fake_broker *fb = b;
    if (!fb)
        return;
    if (fb->http)
        evhttp_free(fb->http);
    json_decref(fb->doc);
    tsl_plan_free(fb->plan);
    tsl_worker_free(fb->worker);
    tsl_result_free(fb->result);
    free(fb->hb);
    free(fb->err);
    free(fb);
}

/* Restarts lose heartbeats and errors, as a broker without a store would. */
static int fake_start(void **out, struct event_base *base, const tsl_sim_broker_config *cfg,
                      int *port)
{
    fake_broker *fb = calloc(1, sizeof *fb);
    json_error_t jerr;
    int err = -1;
    *out = NULL;
    if (!fb)
        return TSL_ENOMEM;
    if (cfg->policy_path) {
        free(fb);
        return tsl_seterr(TSL_EINVALID, "the fake broker runs no policies");
    }
    fb->settings = *cfg->settings;
    fb->now = cfg->now;
    fb->now_arg = cfg->now_arg;
    if (!(fb->doc = json_loadb(cfg->inventory_json, cfg->inventory_len, 0, &jerr)) ||
        tsl_worker_new(&fb->worker) < 0 || tsl_result_new(&fb->result) < 0 ||
        fake_rebuild(fb) < 0 || !(fb->http = evhttp_new(base)))
        goto done;
    evhttp_set_gencb(fb->http, fake_cb, fb);
    struct evhttp_bound_socket *bs =
        evhttp_bind_socket_with_handle(fb->http, "127.0.0.1", (ev_uint16_t)cfg->port);
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    if (!bs || getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&sa, &len) < 0)
        goto done;
    *port = ntohs(sa.sin_port);
    *out = fb;
    fb = NULL;
    err = 0;
done:
    fake_stop(fb);
    return err;
}

/* No settle: the fake broker answers from the simulator's own loop, so
 * nothing of it is pending between requests. */
static const tsl_sim_broker_ops fake_broker_ops = {"fake broker (tests)", fake_start, fake_stop,
                                                   NULL, NULL, NULL};

#endif
