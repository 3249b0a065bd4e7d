/*
 * agent_life.c - a reference CTA's life: the configuration's defaults,
 * creating an agent (its list target, timers and clock), starting,
 * stopping (every exchange in flight cancelled) and freeing it, and the
 * status the simulator and `tsl agent` read.
 *
 * Used by: `tsl agent`, the simulator (agent.h).
 * Needs: agent_internal.h (the state machine's timers).
 */
#include "agent_internal.h"

#include "common.h"
#include "http_client.h"

#include <event2/event.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------------
 * Life cycle
 * ---------------------------------------------------------------------- */

void tsl_agent_config_init(tsl_agent_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->timing.request_timeout = 10;
    cfg->timing.register_timeout = 15;
    cfg->timing.poll_interval = 300;
    cfg->timing.retry_min = 15;
    cfg->timing.retry_max = 600;
    cfg->timing.stuck_retry = 120;
    cfg->timing.refresh = 0.8;
    cfg->timing.default_ttl = 3600;
    cfg->ts_port = 80;
}

static char *dup_escaped(const char *s)
{
    size_t n = strlen(s) * 3 + 1;
    char *d = malloc(n);
    if (d && !ahttp_query_escape(d, n, s)) {
        free(d);
        d = NULL;
    }
    return d;
}

/* "/v1/task-servers?client=..&ip=..&department=..&task=.." */
static int build_target(tsl_agent *a, const tsl_agent_config *cfg)
{
    tsl_buf b = TSL_BUF_INIT;
    int err = 0;
    char *esc = NULL;

    err = tsl_buf_printf(&b, "/v1/task-servers?client=%s", a->client_esc);
    for (size_t i = 0; err == 0 && i < cfg->nips; i++) {
        free(esc);
        if (!(esc = dup_escaped(cfg->ips[i])))
            err = tsl_oom();
        else
            err = tsl_buf_printf(&b, "&ip=%s", esc);
    }
    if (err == 0 && cfg->department && cfg->department[0]) {
        free(esc);
        if (!(esc = dup_escaped(cfg->department)))
            err = tsl_oom();
        else
            err = tsl_buf_printf(&b, "&department=%s", esc);
    }
    if (err == 0 && cfg->task && cfg->task[0]) {
        free(esc);
        if (!(esc = dup_escaped(cfg->task)))
            err = tsl_oom();
        else
            err = tsl_buf_printf(&b, "&task=%s", esc);
    }
    free(esc);
    if (err < 0) {
        tsl_buf_free(&b);
        return err;
    }
    a->list_target = b.ptr; /* ownership moves to the agent */
    return 0;
}

static bool timing_ok(const tsl_agent_timing *t)
{
    return t->request_timeout > 0 && t->register_timeout > 0 && t->poll_interval > 0 &&
           t->retry_min > 0 && t->retry_max >= t->retry_min && t->stuck_retry > 0 &&
           t->refresh > 0 && t->refresh <= 1 && t->default_ttl > 0;
}

int tsl_agent_new(tsl_agent **out, struct event_base *base, const tsl_agent_config *cfg)
{
    tsl_agent *a = NULL;
    int err;

    *out = NULL;
    TSL_ARG(base && cfg);
    if (!cfg->broker_host || !cfg->broker_host[0])
        return tsl_seterr(TSL_EINVALID, "agent: no broker address");
    if (cfg->broker_port <= 0 || cfg->broker_port > 65535)
        return tsl_seterr(TSL_EINVALID, "agent: broker port %d out of range", cfg->broker_port);
    if (!cfg->client || !cfg->client[0] || strlen(cfg->client) > 128)
        return tsl_seterr(TSL_EINVALID, "agent: the client GUID must be 1 to 128 characters");
    if (cfg->nips > TSL_MAX_IPS)
        return tsl_seterr(TSL_EINVALID, "agent: %zu IP addresses (at most %d)", cfg->nips,
                          TSL_MAX_IPS);
    if (!timing_ok(&cfg->timing))
        return tsl_seterr(TSL_EINVALID, "agent: timing values must be positive "
                                        "(retry_max >= retry_min, 0 < refresh <= 1)");

    if (!(a = calloc(1, sizeof *a)))
        return tsl_oom();
    a->base = base;
    a->broker_port = cfg->broker_port;
    a->t = cfg->timing;
    a->ts_port = cfg->ts_port;
    a->resolve = cfg->resolve;
    a->log = cfg->log;
    a->event = cfg->event;
    a->arg = cfg->arg;
    a->clock = cfg->clock;
    a->rng = cfg->seed ? cfg->seed : tsl_hash_str(cfg->client) | 1;
    a->attempt = -1;
    a->server_tier = -1;
    if (!(a->broker_host = strdup(cfg->broker_host)) || !(a->client = strdup(cfg->client)) ||
        !(a->client_esc = dup_escaped(cfg->client))) {
        err = tsl_oom();
        goto done;
    }
    if ((err = build_target(a, cfg)) < 0)
        goto done;
    if ((err = atimer_new(&a->t_fetch, base, a->clock, agent_fetch_timer, a)) < 0 ||
        (err = atimer_new(&a->t_main, base, a->clock, agent_poll_timer, a)) < 0)
        goto done;
    *out = a;
    a = NULL;
    err = 0;
done:
    tsl_agent_free(a);
    return err;
}

int tsl_agent_start(tsl_agent *a, double delay)
{
    TSL_ARG(a);
    if (a->state != TSL_AGENT_IDLE)
        return tsl_seterr(TSL_EINVALID, "agent %s: already started", a->client);
    a->state = TSL_AGENT_LISTING;
    agent_arm(a, a->t_fetch, delay);
    return 0;
}

void tsl_agent_stop(tsl_agent *a)
{
    if (!a)
        return;
    ahttp_cancel(a->h_list);
    ahttp_cancel(a->h_ts);
    a->h_list = a->h_ts = NULL;
    while (a->sides) {
        struct side *s = a->sides;
        a->sides = s->next;
        ahttp_cancel(s->h);
        free(s);
    }
    atimer_del(a->t_fetch);
    atimer_del(a->t_main);
    a->state = TSL_AGENT_IDLE;
}

void tsl_agent_free(tsl_agent *a)
{
    if (!a)
        return;
    tsl_agent_stop(a);
    atimer_free(a->t_fetch);
    atimer_free(a->t_main);
    tsl_agent_list_free(a->list);
    free(a->tried);
    free(a->broker_host);
    free(a->client);
    free(a->client_esc);
    free(a->list_target);
    free(a);
}

/* ------------------------------------------------------------------------
 * Introspection
 * ---------------------------------------------------------------------- */

void tsl_agent_status_get(const tsl_agent *a, tsl_agent_status *out)
{
    memset(out, 0, sizeof *out);
    out->state = a->state;
    out->server = a->server[0] ? a->server : NULL;
    out->tier = a->server[0] ? a->server_tier : -1;
    out->has_list = a->list != NULL;
    out->blocked = tsl_agent_list_blocked(a->list);
    out->strict = tsl_agent_list_strict(a->list);
    out->gated = a->state == TSL_AGENT_STUCK && a->gated;
    out->gated_until = out->gated ? a->gated_until : 0;
    out->attempting = a->state == TSL_AGENT_REGISTERING ? a->attempt_name : NULL;
    out->attempt_since = a->state == TSL_AGENT_REGISTERING ? a->attempt_since : 0;
    out->started = a->n_list_requests > 0;
    out->entries = tsl_agent_list_count(a->list);
    out->list_expires = a->list ? a->list_expires : 0;
    out->list_asked = a->list_asked;
    out->list_requests = a->n_list_requests;
    out->list_failures = a->n_list_failures;
    out->attempts = a->n_attempts;
    out->registrations = a->n_registrations;
    out->reports_failed = a->n_reports_failed;
}

const char *tsl_agent_client(const tsl_agent *a)
{
    return a->client;
}

void *tsl_agent_arg(const tsl_agent *a)
{
    return a->arg;
}

const tsl_agent_entry *tsl_agent_list_entry(const tsl_agent *a, size_t i)
{
    return tsl_agent_list_get(a->list, i);
}
