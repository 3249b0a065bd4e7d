/*
 * registration.c - POST /v1/clients/GUID/registration: a Client Task Agent
 * reports the Task Server it registered with (or failed to), judged
 * against the list it was given and logged with its fallback tier.
 *
 * Validated completely here, then queued for the writer; the reply waits
 * for the commit (group commit, writer.c) and is sent by the record's
 * done callback on this worker's thread.
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

static void registration_written(bworker *w, wrec *r);

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
    if (route_submit_write(w, req, c, rec, registration_written))
        rec = NULL; /* the writer's now */

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

/* The record's done callback (writer.c): the writer's verdict, then the
 * reply. */
static void registration_written(bworker *w, wrec *r)
{
    if (!route_write_refused(w, r))
        registration_done(w, r);
}
