/*
 * sim.c - runs a scenario: one pass per selection mode it names, each pass
 * a fresh event loop holding the broker, the Task Servers, the clients and
 * the fault timeline.
 *
 * A pass goes:
 *   1. read the estate, open the fake network (refuse port, blackhole),
 *      start the broker on 127.0.0.1 port 0;
 *      with the scenario's policy, if any, in force from the start;
 *   2. simulated second 0: start the Task Servers (first heartbeats), start
 *      the clients spread over `start-spread`, arm the timeline;
 *   3. policies activated on the timeline go through the admin API
 *      (upload, then activate), as an admin would;
 *   4. at `duration`, once every exchange has ended: take the end-of-run
 *      figures, stop everything.  Nothing outlives the pass; a wall-clock
 *      watchdog ends a pass that overruns by far.
 *
 * Time is virtual (aclock.h): it stands still while an exchange that will
 * be answered is in flight and jumps to the next timer when none is; the
 * broker gets it as Unix seconds (epoch + simulated) and is settled once
 * per simulated second.  Whenever the clock is about to move, every
 * client's state is read (sim_metrics_observe): the spells, and the
 * timeline the picture draws.  `speed` only paces the run.
 *
 * Admin activations (policy upload, then activate) are sim_admin.c's.
 *
 * Used by: tsl simulate, tests.  Needs: sim_internal.h, libevent.
 */
#include "progress.h"
#include "sim_internal.h"

#include <event2/event.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------------
 * Clock and logging
 * ---------------------------------------------------------------------- */

static double wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The clock reads Unix seconds (the agents' time and the broker's alike);
 * the scenario counts from the start of the run. */
double sim_now(const sim *s)
{
    return s->started ? aclock_now(s->clock) - (double)s->epoch : 0;
}

/* Called from the broker's threads: the clock is an atomic. */
static int64_t broker_clock_now(void *arg)
{
    sim *s = arg;
    return (int64_t)floor(aclock_now(s->clock));
}

/* Exchanges begun within one simulated second run together and end within
 * it (aclock_set_quantum): the broker's clock counts whole seconds anyway,
 * and the loop can keep many exchanges in flight at once. */
#define SIM_QUANTUM 1.0

/* The clock is about to move to `next`: when that is a new simulated
 * second, the broker finishes applying what it took in that changes its
 * lists (heartbeats, failed registrations) first. */
static void settle(sim *s, double next)
{
    int64_t sec = (int64_t)floor(next);
    if (sec <= s->settled || !s->broker_up || !s->ops->settle)
        return;
    s->settled = sec;
    if (!s->broker_dirty)
        return;
    s->broker_dirty = false;
    if (s->ops->settle(s->broker) < 0)
        sim_fail(s, TSL_ERROR, "the broker could not apply its writes: %s", tsl_error_last());
}

/* Nothing is in flight and the clock is about to move to `next`: what
 * every client does now holds until then.  The broker settles first. */
static void quiet(void *arg, double next)
{
    sim *s = arg;
    next -= (double)s->epoch; /* simulated seconds from the start */
    settle(s, next);
    if (sim_metrics_observe(s, next) < 0)
        sim_fail(s, TSL_ENOMEM, "out of memory");
    /* progress, on this (the caller's) thread; not while -v logs every
     * event on the same terminal */
    if (!s->opt->verbose && next <= s->scn->duration)
        tsl_progress_report("simulated seconds", (uint64_t)next, (uint64_t)s->scn->duration);
}

void sim_logf(sim *s, int level, const char *fmt, ...)
{
    char line[768];
    va_list ap;
    if (!s->opt->log || s->opt->verbose < level)
        return;
    int n = snprintf(line, sizeof line, "t=%-7.1f ", sim_now(s));
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    s->opt->log(s->opt->log_arg, line);
}

void sim_fail(sim *s, int code, const char *fmt, ...)
{
    va_list ap;
    if (s->failed)
        return; /* the first cause is the one worth reporting */
    s->fail_code = code;
    va_start(ap, fmt);
    vsnprintf(s->error, sizeof s->error, fmt, ap);
    va_end(ap);
    s->failed = true;
    aclock_stop(s->clock);
}

/* Arms `t` for simulated second `at`. */
static void arm_until(sim *s, atimer *t, double at)
{
    atimer_add(t, at - sim_now(s));
}

/* ------------------------------------------------------------------------
 * Agents' view of the network
 * ---------------------------------------------------------------------- */

static int resolve(void *arg, const tsl_agent *a, const tsl_agent_entry *e, char *host,
                   size_t hostlen, int *port)
{
    sim *s = arg;
    long ci = sim_find_client(s, tsl_agent_client(a));
    int t = sim_find_server(s, e->name);
    if (t < 0 || hostlen < 10)
        return -1; /* not a server of this estate: nothing to connect to */
    snprintf(host, hostlen, "127.0.0.1");
    const sim_ts *ts = &s->ts[t];
    int site = ci >= 0 ? s->clients[ci].site : -1;
    bool cut = site >= 0 && s->cut[(size_t)site * s->nts + (size_t)t];
    if (ts->state == TS_DARK || (cut && ts->state == TS_UP))
        *port = s->blackhole_port;
    else if (ts->state == TS_UP)
        *port = ts->port;
    else
        *port = s->refuse_port;
    return 0;
}

static void agent_log(void *arg, const tsl_agent *a, const char *line)
{
    sim_logf(arg, 2, "%s: %s", tsl_agent_client(a), line);
}

static void agent_event(void *arg, tsl_agent *a, tsl_agent_event ev, const tsl_agent_entry *e,
                        const char *detail)
{
    sim *s = arg;
    long ci = sim_find_client(s, tsl_agent_client(a));
    if (ev == TSL_AGENT_EV_REG_FAILED)
        s->broker_dirty = true; /* its report feeds the broker's recent errors */
    if (ci >= 0)
        sim_metrics_event(s, &s->clients[ci], ev, e, detail);
}

/* ------------------------------------------------------------------------
 * The broker
 * ---------------------------------------------------------------------- */

static int broker_start(sim *s, bool first)
{
    char *doc = NULL;
    int err;
    if (!(doc = json_dumps(s->inventory, JSON_COMPACT)))
        return tsl_oom();
    tsl_sim_broker_config cfg = {
        .inventory_json = doc,
        .inventory_len = strlen(doc),
        .workdir = s->opt->workdir,
        .admin_token = s->token,
        .port = first ? 0 : s->broker_port,
        .settings = &s->settings,
        .now = broker_clock_now,
        .now_arg = s,
        .first_start = first,
        .speed = s->speed,
        .policy_path = s->policy_in_force,
        .log = s->opt->verbose >= 3 ? s->opt->log : NULL,
        .log_arg = s->opt->log_arg,
    };
    int port = 0;
    err = s->ops->start(&s->broker, s->base, &cfg, &port);
    free(doc);
    if (err < 0)
        return err;
    s->broker_port = port;
    s->broker_up = true;
    s->broker_up_since = sim_now(s);
    const char *tok = s->ops->admin_token ? s->ops->admin_token(s->broker) : NULL;
    if (tok)
        snprintf(s->token, sizeof s->token, "%s", tok);
    const char *ts_tok = s->ops->ts_token ? s->ops->ts_token(s->broker) : NULL;
    snprintf(s->ts_token, sizeof s->ts_token, "%s", ts_tok ? ts_tok : "");
    return 0;
}

static void broker_stop(sim *s)
{
    if (!s->broker_up)
        return;
    s->ops->stop(s->broker);
    s->broker = NULL;
    s->broker_up = false;
}

/* ------------------------------------------------------------------------
 * The timeline
 * ---------------------------------------------------------------------- */

static int need_server(sim *s, const scn_fault *f, const char *name)
{
    int t = sim_find_server(s, name);
    if (t < 0)
        sim_fail(s, TSL_EINVALID, "%s:%d: no task server \"%s\" in the inventory", s->scn->path, f->line, name);
    return t;
}

static int need_site(sim *s, const scn_fault *f, const char *name)
{
    int t = sim_find_site(s, name);
    if (t < 0)
        sim_fail(s, TSL_EINVALID, "%s:%d: no site \"%s\" in the inventory", s->scn->path, f->line, name);
    return t;
}

static void server_down(sim *s, size_t fault, size_t t, sim_ts_state how)
{
    long had = 0;
    if (s->ts[t].state == TS_UP && sim_metrics_drain_begin(s, (int)fault, t, -1) < 0) {
        sim_fail(s, TSL_ENOMEM, "out of memory");
        return;
    }
    if (s->ndrains && s->drains[s->ndrains - 1].fault == (int)fault &&
        s->drains[s->ndrains - 1].server == t)
        had = s->drains[s->ndrains - 1].had;
    sim_ts_halt(&s->ts[t], how);
    sim_logf(s, 1, "%s %s: %ld client(s) were registered to it", scn_fault_name(s->scn->faults[fault].kind),
             s->ts[t].name, had);
}

static void server_up(sim *s, size_t t)
{
    if (s->ts[t].state == TS_UP)
        return;
    if (sim_ts_start(&s->ts[t]) < 0)
        sim_fail(s, TSL_ERROR, "%s", tsl_error_last());
}

static void run_fault(sim *s, size_t i)
{
    const scn_fault *f = &s->scn->faults[i];
    int t, site;
    switch (f->kind) {
    case SCN_STOP:
    case SCN_KILL:
        if ((t = need_server(s, f, f->a)) >= 0)
            server_down(s, i, (size_t)t, f->kind == SCN_STOP ? TS_STOPPED : TS_KILLED);
        break;
    case SCN_START:
        if ((t = need_server(s, f, f->a)) >= 0) {
            server_up(s, (size_t)t);
            sim_logf(s, 1, "start %s", f->a);
        }
        break;
    case SCN_SITE_DARK:
    case SCN_SITE_UP:
        if ((site = need_site(s, f, f->a)) < 0)
            break;
        for (size_t k = 0; k < s->nts; k++) {
            if (s->ts[k].site != site)
                continue;
            if (f->kind == SCN_SITE_DARK)
                server_down(s, i, k, TS_DARK);
            else if (s->ts[k].state == TS_DARK)
                server_up(s, k);
        }
        if (f->kind == SCN_SITE_UP)
            sim_logf(s, 1, "site-up %s", f->a);
        break;
    case SCN_CUT:
    case SCN_RESTORE:
        if ((site = need_site(s, f, f->a)) < 0 || (t = need_server(s, f, f->b)) < 0)
            break;
        s->cut[(size_t)site * s->nts + (size_t)t] = f->kind == SCN_CUT;
        if (f->kind == SCN_CUT) {
            if (sim_metrics_drain_begin(s, (int)i, (size_t)t, site) < 0)
                sim_fail(s, TSL_ENOMEM, "out of memory");
            else
                sim_logf(s, 1, "cut %s -> %s: %ld client(s) of the site were registered to it",
                         f->a, f->b, s->drains[s->ndrains - 1].had);
        } else {
            sim_logf(s, 1, "restore %s -> %s", f->a, f->b);
        }
        break;
    case SCN_BROKER_DOWN:
    case SCN_BROKER_RESTART:
    case SCN_BROKER_UP:
        if (f->kind != SCN_BROKER_UP && s->broker_up) {
            broker_stop(s);
            s->broker_down_since = sim_now(s);
            sim_logf(s, 1, "broker down");
        }
        if (f->kind != SCN_BROKER_DOWN && !s->broker_up) { /* a restart comes straight back */
            if (broker_start(s, false) < 0) {
                sim_fail(s, TSL_ERROR, "cannot restart the broker on port %d: %s", s->broker_port,
                         tsl_error_last());
                break;
            }
            s->outage_total += sim_now(s) - s->broker_down_since;
            sim_logf(s, 1, "broker up on port %d", s->broker_port);
        }
        break;
    case SCN_ACTIVATE:
        sim_logf(s, 1, "activate %s", f->a);
        sim_admin_activate(s, f->a, i);
        break;
    }
}

static void fault_timer(void *arg)
{
    sim *s = arg;
    double t = sim_now(s);
    while (s->next_fault < s->scn->nfaults && s->scn->faults[s->next_fault].at <= t + 1e-9 &&
           !s->failed)
        run_fault(s, s->next_fault++);
    if (s->next_fault < s->scn->nfaults)
        arm_until(s, s->t_fault, s->scn->faults[s->next_fault].at);
}


/* ------------------------------------------------------------------------
 * A pass
 * ---------------------------------------------------------------------- */

static int start_clients(sim *s)
{
    const tsl_sim_scenario *scn = s->scn;
    tsl_agent_config cfg;
    tsl_agent_config_init(&cfg);
    cfg.broker_host = "127.0.0.1";
    cfg.broker_port = s->broker_port;
    cfg.timing = scn->agent;
    cfg.resolve = resolve;
    cfg.log = s->opt->verbose >= 2 ? agent_log : NULL;
    cfg.event = agent_event;
    cfg.arg = s;
    cfg.clock = s->clock;
    for (size_t i = 0; i < s->nclients; i++) {
        sim_client *c = &s->clients[i];
        int err;
        cfg.client = c->guid;
        cfg.ips[0] = c->ip;
        cfg.nips = 1;
        cfg.department = c->department;
        cfg.task = c->task;
        cfg.seed = tsl_hash_mix(scn->seed + 1, i + 1) | 1;
        if ((err = tsl_agent_new(&c->agent, s->base, &cfg)) < 0)
            return err;
        /* spread evenly, in a shuffled order so groups interleave */
        double at = s->nclients > 1
                        ? scn->start_spread * (double)(tsl_hash_mix(scn->seed, i) % 100000) / 1e5
                        : 0;
        if ((err = tsl_agent_start(c->agent, at)) < 0)
            return err;
    }
    return 0;
}

static void watchdog(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sim_fail(arg, TSL_ETIMEOUT, "the pass overran its wall-clock budget: the loop is overloaded "
                  "(lower the speed or the number of clients)");
}

static int run_pass(sim *s, const char *selection)
{
    const tsl_sim_scenario *scn = s->scn;
    struct event *t_watch = NULL;
    int err = 0;

    s->selection = selection;
    s->settings = scn->broker;
    if (selection && (err = tsl_selection_parse(&s->settings.selection, selection)) < 0)
        return err;
    s->refuse_fd = -1;
    snprintf(s->token, sizeof s->token, "sim-%016llx",
             (unsigned long long)tsl_hash_mix(scn->seed, (uint64_t)time(NULL)));
    s->epoch = (int64_t)time(NULL);
    s->settled = -1;

    if (!(s->base = event_base_new())) {
        err = tsl_seterr(TSL_ERROR, "cannot create an event loop");
        goto done;
    }
    if ((err = aclock_new(&s->clock, (double)s->epoch)) < 0 || (err = sim_estate_load(s)) < 0 ||
        (err = sim_net_open(s)) < 0)
        goto done;
    aclock_set_silent_port(s->clock, s->blackhole_port);
    aclock_set_quantum(s->clock, SIM_QUANTUM);
    if (!(s->cut = calloc(s->nsites * s->nts + 1, sizeof *s->cut)) ||
        !(s->groups = calloc(scn->ngroups, sizeof *s->groups))) {
        err = tsl_oom();
        goto done;
    }
    if ((err = sim_metrics_init(s)) < 0 ||
        (err = atimer_new(&s->t_fault, s->base, s->clock, fault_timer, s)) < 0)
        goto done;
    if (!(t_watch = evtimer_new(s->base, watchdog, s))) {
        err = tsl_oom();
        goto done;
    }
    s->policy_in_force = scn->policy; /* the broker runs it from the start */
    if ((err = broker_start(s, true)) < 0)
        goto done;
    sim_logf(s, 1, "broker (%s) on 127.0.0.1:%d; %zu Task Servers, %zu clients", s->ops->name,
             s->broker_port, s->nts, s->nclients);

    /* the pace, plus a generous allowance for the work (wall seconds) */
    double budget = (s->speed > 0 ? scn->duration / s->speed : 0) * 2 + 120 +
                    (double)s->nclients * scn->duration / 3600.0 * 0.05;
    struct timeval wtv = {(time_t)budget, 0};
    evtimer_add(t_watch, &wtv);

    /* simulated second 0 */
    s->started = true;
    aclock_set_pace(s->clock, s->speed);
    for (size_t i = 0; i < s->nts; i++)
        if (s->ts[i].state == TS_UP && (err = sim_ts_start(&s->ts[i])) < 0)
            goto done;
    if ((err = start_clients(s)) < 0)
        goto done;
    if (scn->nfaults)
        arm_until(s, s->t_fault, scn->faults[0].at);
    /* the run, to its last simulated second; the figures are taken once
     * every exchange of that second has ended */
    if (aclock_run(s->clock, s->base, (double)s->epoch + scn->duration, quiet, s) < 0)
        sim_fail(s, TSL_ERROR, "the event loop failed");
    if (!s->failed) {
        settle(s, scn->duration + 1);
        if (sim_metrics_observe(s, scn->duration + 1) < 0)
            sim_fail(s, TSL_ENOMEM, "out of memory");
        else
            sim_metrics_finish(s);
    }
    if (!s->failed && !s->opt->verbose)
        tsl_progress_report("simulated seconds", (uint64_t)scn->duration, (uint64_t)scn->duration);
    if (s->failed)
        err = tsl_seterr(s->fail_code, "%s", s->error);
done:
    /* tear down in dependency order: clients, servers, admin, broker, network */
    for (size_t i = 0; i < s->nclients; i++)
        tsl_agent_stop(s->clients[i].agent);
    for (size_t i = 0; i < s->nts; i++)
        sim_ts_halt(&s->ts[i], TS_KILLED);
    ahttp_cancel(s->h_admin);
    s->h_admin = NULL;
    free(s->admin_body);
    s->admin_body = NULL;
    broker_stop(s);
    sim_net_close(s);
    if (t_watch)
        event_free(t_watch);
    atimer_free(s->t_fault);
    s->t_fault = NULL;
    return err;
}

/* Frees what a pass built, keeping nothing but the scenario. */
static void pass_free(sim *s)
{
    sim_estate_free(s);
    aclock_free(s->clock);
    free(s->cut);
    free(s->groups);
    free(s->site_counts);
    free(s->lanes);
    free(s->samples);
    free(s->inv_value);
    free(s->inv_state);
    free(s->drains);
    if (s->base)
        event_base_free(s->base);
    const tsl_sim_scenario *scn = s->scn;
    const tsl_sim_options *opt = s->opt;
    const tsl_sim_broker_ops *ops = s->ops;
    double speed = s->speed;
    memset(s, 0, sizeof *s);
    s->scn = scn;
    s->opt = opt;
    s->ops = ops;
    s->speed = speed;
    s->refuse_fd = -1;
}

int tsl_sim_run(tsl_buf *report, tsl_sim_outcome *out, const tsl_sim_scenario *scn,
                const tsl_sim_options *opt)
{
    sim *s = NULL;
    double t0 = wall();
    int err = 0;

    TSL_ARG(report && out && scn && opt);
    memset(out, 0, sizeof *out);
    if (!opt->workdir)
        return tsl_seterr(TSL_EINVALID, "simulate: no work directory");
    const tsl_sim_broker_ops *ops = opt->broker ? opt->broker : tsl_sim_broker_real();
    if (!ops)
        return tsl_seterr(TSL_EINVALID, "simulate: this build has no broker to simulate against");
    if (!(s = calloc(1, sizeof *s)))
        return tsl_oom();
    s->scn = scn;
    s->opt = opt;
    s->ops = ops;
    s->speed = opt->speed > 0 ? opt->speed : opt->speed < 0 ? 0 : scn->speed;
    s->refuse_fd = -1;

    size_t passes = scn->nselections ? scn->nselections : 1;
    for (size_t p = 0; p < passes && err == 0; p++) {
        const char *sel = scn->nselections ? scn->selections[p] : NULL;
        if (opt->log && opt->verbose >= 1) {
            char line[256];
            snprintf(line, sizeof line, "== %s: pass %zu of %zu%s%s", scn->name, p + 1, passes,
                     sel ? ", selection " : "", sel ? sel : "");
            opt->log(opt->log_arg, line);
        }
        double p0 = wall();
        err = run_pass(s, sel);
        if (err == 0) {
            tsl_sim_outcome po = {0, 0, wall() - p0};
            err = sim_metrics_report(s, report, &po);
            if (err == 0 && opt->html)
                err = sim_html_pass(s, opt->html, &po);
            out->checked += po.checked;
            out->broken += po.broken;
        }
        pass_free(s);
    }
    out->wall_seconds = wall() - t0;
    free(s);
    return err;
}
