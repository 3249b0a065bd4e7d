/*
 * heartbeat.c - POST /v1/task-servers/NAME/heartbeat: a Task Server reports
 * itself (the Task Servers' token, a rate per peer, identity fields checked
 * against the inventory, unknown names kept pending for approval).
 *
 * The request is validated completely here (nothing is queued for a
 * request that gets a 4xx), then queued for the writer; the reply waits
 * for the transaction that holds the record to commit (group commit,
 * writer.c) and is sent by the record's done callback on this worker's
 * thread, so an acknowledged write is in the store whatever happens next.
 *
 * Used by: http.c's route table (routes.h).  Needs: route_common.h,
 * control.h (the write queue), jansson.
 */
#include "routes.h"
#include "route_common.h"
#include "text.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void heartbeat_written(bworker *w, wrec *r);

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
    if (route_submit_write(w, req, c, rec, heartbeat_written))
        rec = NULL; /* the writer's now */

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

/* The record's done callback (writer.c): the writer's verdict, then the
 * reply. */
static void heartbeat_written(bworker *w, wrec *r)
{
    if (!route_write_refused(w, r))
        heartbeat_done(w, r);
}
