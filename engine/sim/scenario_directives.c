/*
 * scenario_directives.c - one scenario directive each: clients, at (the
 * timeline's faults), promise, expect, timing, broker, server, and the
 * dispatch by the line's first word.
 *
 * Used by: scenario.c.  Needs: scenario_parse.h.
 */
#include "scenario_parse.h"

#include "sim_internal.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------------
 * Directives
 * ---------------------------------------------------------------------- */

static int d_clients(struct parser *p, char **w, int n)
{
    scn_group *g = NULL;
    int err;
    if (n < 2)
        return scn_perr(p, "clients: give a count (or \"inventory\") and options");
    if ((err = PUSH(p->s, groups, g)) < 0)
        return err;
    g->line = p->line;
    if (strcmp(w[1], "inventory") == 0) {
        g->count = -1;
    } else {
        double v;
        if ((err = scn_parse_num(p, "clients", w[1], 0, 100000, &v)) < 0)
            return err;
        g->count = (long)v;
    }
    for (int i = 2; i < n; i++) {
        const char *key, *val = scn_kv(w[i], &key);
        char **slot = NULL;
        if (!val)
            return scn_perr(p, "clients: \"%s\" is not key=value", w[i]);
        if (strcmp(key, "name") == 0)
            slot = &g->name;
        else if (strcmp(key, "site") == 0)
            slot = &g->site;
        else if (strcmp(key, "department") == 0)
            slot = &g->department;
        else if (strcmp(key, "task") == 0)
            slot = &g->task;
        else if (strcmp(key, "subnet") == 0)
            slot = &g->subnet;
        else
            return scn_perr(p, "clients: unknown option \"%s\" (name, site, department, task, subnet)",
                        key);
        if (*slot)
            return scn_perr(p, "clients: %s= given twice", key);
        if (!val[0])
            return scn_perr(p, "clients: %s= needs a value", key);
        if ((err = scn_sdup(slot, val)) < 0)
            return err;
    }
    if (g->count >= 0 && !g->site && !g->subnet)
        return scn_perr(p, "clients: generated clients need site= or subnet=");
    if (g->count < 0 && (g->site || g->subnet))
        return scn_perr(p, "clients inventory: site= and subnet= come from the inventory");
    if (!g->name) {
        char name[32];
        snprintf(name, sizeof name, "group%zu", p->s->ngroups);
        if ((err = scn_sdup(&g->name, name)) < 0)
            return err;
    }
    for (size_t i = 0; i + 1 < p->s->ngroups; i++)
        if (strcmp(p->s->groups[i].name, g->name) == 0)
            return scn_perr(p, "clients: a group named \"%s\" exists already", g->name);
    return 0;
}

static int d_at(struct parser *p, char **w, int n)
{
    static const struct {
        const char *word;
        scn_fault_kind kind;
        int args;
        const char *usage;
    } kinds[] = {
        {"stop", SCN_STOP, 1, "SERVER"},        {"kill", SCN_KILL, 1, "SERVER"},
        {"start", SCN_START, 1, "SERVER"},      {"site-dark", SCN_SITE_DARK, 1, "SITE"},
        {"site-up", SCN_SITE_UP, 1, "SITE"},    {"cut", SCN_CUT, 2, "SITE SERVER"},
        {"restore", SCN_RESTORE, 2, "SITE SERVER"}, {"broker-down", SCN_BROKER_DOWN, 0, ""},
        {"broker-up", SCN_BROKER_UP, 0, ""},    {"broker-restart", SCN_BROKER_RESTART, 0, ""},
        {"activate", SCN_ACTIVATE, 1, "POLICY.lua"},
    };
    scn_fault *f = NULL;
    double at;
    int err;
    if (n < 3)
        return scn_perr(p, "at: give a time and an event (stop, kill, start, site-dark, site-up, "
                       "cut, restore, broker-down, broker-up, broker-restart, activate)");
    if ((err = scn_parse_time(p, "at", w[1], &at)) < 0)
        return err;
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        if (strcmp(w[2], kinds[k].word) != 0)
            continue;
        if (n - 3 != kinds[k].args)
            return scn_perr(p, "at: usage: at TIME %s %s", kinds[k].word, kinds[k].usage);
        if ((err = PUSH(p->s, faults, f)) < 0)
            return err;
        f->at = at;
        f->kind = kinds[k].kind;
        f->line = p->line;
        if (kinds[k].kind == SCN_ACTIVATE)
            err = scn_resolve_path(p, &f->a, w[3]);
        else if (n > 3)
            err = scn_sdup(&f->a, w[3]);
        if (err == 0 && n > 4)
            err = scn_sdup(&f->b, w[4]);
        return err;
    }
    return scn_perr(p, "at: unknown event \"%s\"", w[2]);
}

static int d_promise(struct parser *p, char **w, int n, char *text)
{
    scn_promise *pr = NULL;
    int err, i = 1;
    if ((err = PUSH(p->s, promises, pr)) < 0)
        return err;
    pr->line = p->line;
    if ((err = scn_sdup(&pr->text, text)) < 0)
        return err;
    for (; i < n && strcmp(w[i], "only") != 0; i++) {
        const char *key, *val = scn_kv(w[i], &key);
        bool taken;
        if (!val)
            return scn_perr(p, "promise: \"%s\" is not key=value (site, department, task, group) "
                           "or \"only\"", w[i]);
        if ((err = scn_parse_selector(p, &pr->sel, key, val, &taken)) < 0)
            return err;
        if (!taken)
            return scn_perr(p, "promise: unknown selector \"%s\" (site, department, task, group)",
                        key);
    }
    if (i >= n)
        return scn_perr(p, "promise: usage: promise [site=S] [department=D] [task=T] [group=G] "
                       "only GLOB... [from TIME] [until TIME]");
    pr->until = INFINITY;
    for (i++; i < n; i++) {
        if (strcmp(w[i], "from") == 0 || strcmp(w[i], "until") == 0) {
            bool from = w[i][0] == 'f';
            if (i + 1 >= n || (from && pr->from > 0) || (!from && isfinite(pr->until)))
                return scn_perr(p, "promise: \"%s TIME\", once", w[i]);
            if ((err = scn_parse_time(p, from ? "promise from" : "promise until", w[i + 1],
                                  from ? &pr->from : &pr->until)) < 0)
                return err;
            i++;
            if (i + 1 < n && strcmp(w[i + 1], "from") != 0 && strcmp(w[i + 1], "until") != 0)
                return scn_perr(p, "promise: \"from TIME\" and \"until TIME\" end the line");
            continue;
        }
        char **g = realloc(pr->globs, (pr->nglobs + 1) * sizeof *g);
        if (!g)
            return tsl_oom();
        pr->globs = g;
        if ((err = scn_sdup(&pr->globs[pr->nglobs], w[i])) < 0)
            return err;
        pr->nglobs++;
    }
    if (pr->nglobs == 0)
        return scn_perr(p, "promise: \"only\" needs at least one server name or glob");
    if (pr->until <= pr->from)
        return scn_perr(p, "promise: \"until\" must come after \"from\"");
    return 0;
}

static int d_expect(struct parser *p, char **w, int n, char *text)
{
    static const char *const ops[] = {"==", "!=", "<", "<=", ">", ">="};
    scn_expect *x = NULL;
    int err;
    if (n != 4)
        return scn_perr(p, "expect: usage: expect [GROUP:]METRIC OP NUMBER");
    if ((err = PUSH(p->s, expects, x)) < 0)
        return err;
    x->line = p->line;
    if ((err = scn_sdup(&x->text, text)) < 0)
        return err;
    char *colon = strchr(w[1], ':');
    if (colon) {
        *colon = '\0';
        if ((err = scn_sdup(&x->group, w[1])) < 0)
            return err;
        if ((err = scn_sdup(&x->metric, colon + 1)) < 0)
            return err;
    } else if ((err = scn_sdup(&x->metric, w[1])) < 0) {
        return err;
    }
    size_t k;
    for (k = 0; k < 6 && strcmp(ops[k], w[2]) != 0; k++)
        ;
    if (k == 6)
        return scn_perr(p, "expect: \"%s\" is not one of == != < <= > >=", w[2]);
    x->op = (scn_op)k;
    return scn_parse_num(p, "expect", w[3], -1e18, 1e18, &x->value);
}

static int d_timing(struct parser *p, char **w, int n)
{
    tsl_sim_scenario *s = p->s;
    int err;
    for (int i = 1; i < n; i++) {
        const char *key, *val = scn_kv(w[i], &key);
        double v;
        if (!val)
            return scn_perr(p, "agent: \"%s\" is not key=value", w[i]);
        if (strcmp(key, "refresh") == 0) {
            if ((err = scn_parse_num(p, "agent refresh", val, 0.01, 1, &v)) < 0)
                return err;
            s->agent.refresh = v;
            continue;
        }
        double *slot = strcmp(key, "poll") == 0               ? &s->agent.poll_interval
                       : strcmp(key, "retry") == 0            ? &s->agent.retry_min
                       : strcmp(key, "retry-max") == 0        ? &s->agent.retry_max
                       : strcmp(key, "stuck-retry") == 0      ? &s->agent.stuck_retry
                       : strcmp(key, "timeout") == 0          ? &s->agent.request_timeout
                       : strcmp(key, "register-timeout") == 0 ? &s->agent.register_timeout
                                                              : NULL;
        if (!slot)
            return scn_perr(p, "agent: unknown setting \"%s\" (poll, retry, retry-max, stuck-retry, "
                           "timeout, register-timeout, refresh)", key);
        if ((err = scn_parse_time(p, key, val, &v)) < 0)
            return err;
        if (v <= 0)
            return scn_perr(p, "agent %s: must be more than 0", key);
        *slot = v;
    }
    if (s->agent.retry_max < s->agent.retry_min)
        return scn_perr(p, "agent: retry-max is below retry");
    return 0;
}

static int d_broker(struct parser *p, char **w, int n)
{
    tsl_settings *b = &p->s->broker;
    int err;
    for (int i = 1; i < n; i++) {
        const char *key, *val = scn_kv(w[i], &key);
        double v;
        if (!val)
            return scn_perr(p, "broker: \"%s\" is not key=value", w[i]);
        if (strcmp(key, "stale-after") == 0) {
            if ((err = scn_parse_time(p, key, val, &v)) < 0)
                return err;
            b->stale_after = (int64_t)v;
        } else if (strcmp(key, "error-window") == 0) {
            if ((err = scn_parse_time(p, key, val, &v)) < 0)
                return err;
            b->error_window = (int64_t)v;
        } else if (strcmp(key, "ttl") == 0) {
            if ((err = scn_parse_time(p, key, val, &v)) < 0)
                return err;
            if (v < 1)
                return scn_perr(p, "broker ttl: at least 1 second");
            b->ttl = (int)v;
        } else if (strcmp(key, "max") == 0) {
            if ((err = scn_parse_num(p, key, val, 1, 1000, &v)) < 0)
                return err;
            b->max = (int)v;
        } else {
            return scn_perr(p, "broker: unknown setting \"%s\" (stale-after, error-window, ttl, max)",
                        key);
        }
    }
    return 0;
}

static int d_server(struct parser *p, char **w, int n)
{
    scn_server *sv = NULL;
    int err;
    if (n < 3)
        return scn_perr(p, "server: usage: server NAME [capacity=N] [response-ms=N]");
    if ((err = PUSH(p->s, servers, sv)) < 0)
        return err;
    sv->capacity = sv->response_ms = -1;
    if ((err = scn_sdup(&sv->name, w[1])) < 0)
        return err;
    for (int i = 2; i < n; i++) {
        const char *key, *val = scn_kv(w[i], &key);
        double v;
        if (!val)
            return scn_perr(p, "server: \"%s\" is not key=value", w[i]);
        if (strcmp(key, "capacity") == 0) {
            if ((err = scn_parse_num(p, key, val, 0, 1e9, &v)) < 0)
                return err;
            sv->capacity = (int64_t)v;
        } else if (strcmp(key, "response-ms") == 0) {
            if ((err = scn_parse_num(p, key, val, 0, 1e6, &v)) < 0)
                return err;
            sv->response_ms = (int64_t)v;
        } else {
            return scn_perr(p, "server: unknown setting \"%s\" (capacity, response-ms)", key);
        }
    }
    return 0;
}

int scn_directive(struct parser *p, char **w, int n, char *text)
{
    tsl_sim_scenario *s = p->s;
    const char *d = w[0];
    double v;
    int err;

    if (strcmp(d, "name") == 0 || strcmp(d, "description") == 0) {
        char **slot = d[0] == 'n' ? &s->name : &s->description;
        const char *rest = text + strlen(d);
        while (*rest == ' ' || *rest == '\t')
            rest++;
        if (!*rest)
            return scn_perr(p, "%s: needs text", d);
        if (*slot)
            return scn_perr(p, "%s given twice", d);
        return scn_sdup(slot, rest);
    }
    if (strcmp(d, "inventory") == 0 || strcmp(d, "policy") == 0) {
        char **slot = d[0] == 'i' ? &s->inventory : &s->policy;
        if (n != 2)
            return scn_perr(p, "%s: give one file", d);
        if (*slot)
            return scn_perr(p, "%s given twice", d);
        return scn_resolve_path(p, slot, w[1]);
    }
    if (strcmp(d, "selection") == 0) {
        if (n < 2 || n > 4)
            return scn_perr(p, "selection: one to three of capacity, responsiveness, connections");
        if (s->nselections)
            return scn_perr(p, "selection given twice");
        for (int i = 1; i < n; i++) {
            tsl_selection sel;
            if (tsl_selection_parse(&sel, w[i]) < 0)
                return scn_perr(p, "selection: \"%s\" is not capacity, responsiveness or "
                               "connections", w[i]);
            if ((err = scn_sdup(&s->selections[s->nselections++], w[i])) < 0)
                return err;
        }
        return 0;
    }
    if (n != 2 && (strcmp(d, "speed") == 0 || strcmp(d, "duration") == 0 ||
                   strcmp(d, "seed") == 0 || strcmp(d, "start-spread") == 0 ||
                   strcmp(d, "heartbeat") == 0))
        return scn_perr(p, "%s: give one value", d);
    if (strcmp(d, "speed") == 0) {
        if (strcmp(w[1], "max") == 0) { /* as fast as it goes */
            s->speed = 0;
            return 0;
        }
        return scn_parse_num(p, d, w[1], 0.1, 100000, &s->speed);
    }
    if (strcmp(d, "duration") == 0) {
        if ((err = scn_parse_time(p, d, w[1], &s->duration)) < 0)
            return err;
        return s->duration >= 1 ? 0 : scn_perr(p, "duration: at least 1 second");
    }
    if (strcmp(d, "start-spread") == 0)
        return scn_parse_time(p, d, w[1], &s->start_spread);
    if (strcmp(d, "heartbeat") == 0) {
        if ((err = scn_parse_time(p, d, w[1], &s->heartbeat)) < 0)
            return err;
        return s->heartbeat >= 1 ? 0 : scn_perr(p, "heartbeat: at least 1 second");
    }
    if (strcmp(d, "seed") == 0) {
        if ((err = scn_parse_num(p, d, w[1], 0, 9007199254740992.0, &v)) < 0)
            return err;
        s->seed = (uint64_t)v;
        return 0;
    }
    if (strcmp(d, "clients") == 0)
        return d_clients(p, w, n);
    if (strcmp(d, "at") == 0)
        return d_at(p, w, n);
    if (strcmp(d, "promise") == 0)
        return d_promise(p, w, n, text);
    if (strcmp(d, "expect") == 0)
        return d_expect(p, w, n, text);
    if (strcmp(d, "agent") == 0)
        return d_timing(p, w, n);
    if (strcmp(d, "broker") == 0)
        return d_broker(p, w, n);
    if (strcmp(d, "server") == 0)
        return d_server(p, w, n);
    return scn_perr(p, "unknown directive \"%s\"", d);
}
