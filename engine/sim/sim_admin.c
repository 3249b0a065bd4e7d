/*
 * sim_admin.c - the simulator's admin: a timeline's `activate` (and the
 * scenario's starting policy) uploads the policy file to the in-process
 * broker and activates it over HTTP, as an admin would, one at a time;
 * a refusal counts as an admin failure.
 *
 * Used by: sim.c (the timeline).  Needs: sim_internal.h, the agent's HTTP
 * client (ahttp).
 */
#include "sim_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void admin_next(sim *s);

static void admin_done(sim *s, bool ok, const char *why)
{
    size_t f = s->admin_pending_fault;
    const char *path = f < s->scn->nfaults ? s->scn->faults[f].a : s->scn->policy;
    s->admin_busy = false;
    free(s->admin_body);
    s->admin_body = NULL;
    if (!ok) {
        s->admin_failures++;
        sim_logf(s, 0, "policy %s: activation FAILED: %s", path, why);
    } else {
        s->policy_in_force = path; /* a restarted broker starts with it */
        sim_logf(s, 1, "policy %s: active", path);
    }
}

static void admin_reply(const ahttp_result *r, void *arg)
{
    sim *s = arg;
    char why[300];
    s->h_admin = NULL;
    if (r->status < 200 || r->status > 299) {
        json_t *o = json_loadb(r->body, r->len, 0, NULL);
        json_t *e = o ? json_object_get(o, "error") : NULL;
        snprintf(why, sizeof why, "%s%s%s", r->error ? r->error : "",
                 r->error ? "" : "HTTP ",
                 e && json_is_string(e) ? json_string_value(e) : "");
        if (!r->error && !(e && json_is_string(e)))
            snprintf(why, sizeof why, "HTTP %d", r->status);
        json_decref(o);
        admin_done(s, false, why);
        return;
    }
    if (s->admin_step == 1) { /* uploaded: the response names the version */
        json_t *o = json_loadb(r->body, r->len, 0, NULL);
        json_t *v = o ? json_object_get(o, "version") : NULL;
        if (!v || !json_is_string(v)) {
            json_decref(o);
            admin_done(s, false, "the upload's response names no \"version\"");
            return;
        }
        free(s->admin_body);
        s->admin_body = strdup(json_string_value(v));
        json_decref(o);
        if (!s->admin_body) {
            admin_done(s, false, "out of memory");
            return;
        }
        s->admin_step = 2;
        admin_next(s);
        return;
    }
    admin_done(s, true, NULL);
}

static void admin_next(sim *s)
{
    char headers[256], target[300], esc[200];
    snprintf(headers, sizeof headers, "Authorization: Bearer %s\r\nContent-Type: text/plain\r\n", s->token);
    double timeout = 60; /* simulated, but the clock waits for the broker's answer */
    int err;
    if (!s->broker_up) {
        admin_done(s, false, "the broker is down");
        return;
    }
    if (s->admin_step == 1) {
        err = ahttp_start(&s->h_admin, s->base, "127.0.0.1", s->broker_port, "POST", "/v1/policy",
                          headers, s->admin_body, strlen(s->admin_body), timeout, s->clock,
                          admin_reply, s);
    } else {
        if (!ahttp_query_escape(esc, sizeof esc, s->admin_body)) {
            admin_done(s, false, "policy version too long");
            return;
        }
        snprintf(target, sizeof target, "/v1/policy/%s/activate", esc);
        err = ahttp_start(&s->h_admin, s->base, "127.0.0.1", s->broker_port, "POST", target,
                          headers, "{}", 2, timeout, s->clock, admin_reply, s);
    }
    if (err < 0)
        admin_done(s, false, tsl_error_last());
}

/* Starts the upload of `path`; `fault` is its timeline index (or nfaults
 * for the scenario's own policy). */
void sim_admin_activate(sim *s, const char *path, size_t fault)
{
    if (s->admin_busy) {
        s->admin_failures++;
        sim_logf(s, 0, "policy %s: not activated: another activation is in flight", path);
        return;
    }
    s->admin_busy = true;
    s->admin_pending_fault = fault;
    s->admin_step = 1;
    size_t len;
    if (tsl_file_read(&s->admin_body, &len, path, (size_t)1 << 22) < 0) {
        admin_done(s, false, tsl_error_last());
        return;
    }
    admin_next(s);
}
