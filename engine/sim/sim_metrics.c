/*
 * sim_metrics.c - what the simulation measures, and the report.
 *
 * Every figure comes from the agents' own events (agent.h) and from the
 * simulated servers, judged against the simulator's independent view of
 * the estate (sites and countries from the inventory, the scenario's
 * promises), never from what the broker says about itself:
 *
 *   registrations by tier, and those that crossed a site or a country;
 *   registrations outside a promise ("only these servers"), at the time
 *     they happen and at the end of the run;
 *   stranded clients: every spell with no server after every allowed entry
 *     failed, its length, and whether the policy demanded it (the list was
 *     blocked, or fallback entries were waiting for their `after`);
 *   for each server death or cut link: the clients it had and how long the
 *     last one took to leave;
 *   load spread: max over mean connections among a site's running servers;
 *   broker cost: list requests per client per hour, failures while the
 *     broker was up (none is acceptable), registration reports lost.
 *
 * Counts are kept for all clients and for each client group.
 *
 * The figures by name, `expect` and the report are sim_report.c's.
 *
 * Used by: sim.c, sim_report.c.  Needs: sim_internal.h.
 */
#include "sim_internal.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define COUNT(s, c, field, n)                                                   \
    do {                                                                        \
        (s)->all.field += (n);                                                  \
        (s)->groups[(c)->group].field += (n);                                   \
        if ((c)->site >= 0)                                                     \
            (s)->site_counts[(c)->site].field += (n);                           \
    } while (0)

#define MAX3(s, c, field, v)                                                    \
    do {                                                                        \
        if ((v) > (s)->all.field)                                               \
            (s)->all.field = (v);                                               \
        if ((v) > (s)->groups[(c)->group].field)                                \
            (s)->groups[(c)->group].field = (v);                                \
        if ((c)->site >= 0 && (v) > (s)->site_counts[(c)->site].field)          \
            (s)->site_counts[(c)->site].field = (v);                            \
    } while (0)

int sim_tier_slot(int tier)
{
    return tier < 0 ? 0 : tier >= SIM_TIERS - 1 ? SIM_TIERS - 1 : tier;
}

const char *sim_cstate_name(sim_cstate st)
{
    static const char *const names[] = {"not started", "registered", "attempting", "waiting",
                                        "stranded (as the policy demands)",
                                        "stranded (not demanded)"};
    return (unsigned)st < CS_COUNT_ ? names[st] : "?";
}

bool sim_selector_match(const sim *s, const scn_selector *sel, const sim_client *c)
{
    if (sel->site && (c->site < 0 || strcasecmp(s->sites[c->site].name, sel->site) != 0))
        return false;
    if (sel->department && (!c->department || strcasecmp(c->department, sel->department) != 0))
        return false;
    if (sel->task && (!c->task || strcasecmp(c->task, sel->task) != 0))
        return false;
    if (sel->group && strcmp(s->scn->groups[c->group].name, sel->group) != 0)
        return false;
    return true;
}

/* The first promise `c` breaks by being on server `t` at time `now`, or NULL. */
static const scn_promise *broken_promise(const sim *s, const sim_client *c, size_t t, double now)
{
    for (size_t i = 0; i < s->scn->npromises; i++) {
        const scn_promise *p = &s->scn->promises[i];
        if (now + 1e-9 < p->from || now >= p->until || !sim_selector_match(s, &p->sel, c))
            continue;
        bool ok = false;
        for (size_t k = 0; k < p->nglobs && !ok; k++)
            ok = scn_glob_match(p->globs[k], s->ts[t].name);
        if (!ok)
            return p;
    }
    return NULL;
}

/* ------------------------------------------------------------------------
 * Where each client stands
 * ---------------------------------------------------------------------- */

/* The agent's own state, read as one of the states every client is in. */
static sim_cstate classify(const sim_client *c, tsl_agent_status *st)
{
    tsl_agent_status_get(c->agent, st);
    if (!st->started)
        return CS_IDLE;
    switch (st->state) {
    case TSL_AGENT_REGISTERED:
        return CS_REGISTERED;
    case TSL_AGENT_STUCK:
        return st->gated     ? CS_WAITING
               : st->blocked ? CS_STRANDED_DEMANDED
                             : CS_STRANDED_UNDEMANDED;
    case TSL_AGENT_IDLE:
        return CS_IDLE;
    default: /* registering, or a list request in flight */
        return CS_ATTEMPTING;
    }
}

static int column_of(sim_cstate cs, int tier)
{
    switch (cs) {
    case CS_REGISTERED:
        return tier <= 0 ? COL_TIER0 : tier == 1 ? COL_TIER1 : COL_TIER2;
    case CS_ATTEMPTING:
        return COL_ATTEMPTING;
    case CS_WAITING:
        return COL_WAITING;
    case CS_STRANDED_DEMANDED:
        return COL_DEMANDED;
    case CS_STRANDED_UNDEMANDED:
        return COL_UNDEMANDED;
    default:
        return COL_IDLE;
    }
}

/* A spell without a server ends (registered again, or the run's end): a
 * stranded spell if the client was stranded in it at some instant (demanded
 * when the policy asked for the wait at some instant: a blocked list, or
 * entries held back by `after`), else the policy's own wait for a delayed
 * fallback. */
static void spell_end(sim *s, sim_client *c, double now)
{
    double d = now - c->spell_since;
    if (d < 0)
        d = 0;
    c->in_spell = false;
    if (c->spell_stranded) {
        c->episodes++;
        c->stranded_total += d;
        COUNT(s, c, episodes, 1);
        COUNT(s, c, stranded_sum, d);
        MAX3(s, c, stranded_max, d);
        if (c->spell_demanded)
            c->ever_demanded = true;
        else
            c->ever_undemanded = true;
    } else {
        c->ever_waiting = true;
        COUNT(s, c, waiting_spells, 1);
        COUNT(s, c, waiting_sum, d);
        MAX3(s, c, waiting_max, d);
    }
}

int sim_metrics_init(sim *s)
{
    const tsl_sim_scenario *scn = s->scn;
    if (!(s->site_counts = calloc(s->nsites ? s->nsites : 1, sizeof *s->site_counts)) ||
        !(s->lanes = calloc(s->nclients ? s->nclients : 1, sizeof *s->lanes)))
        return tsl_oom();
    for (size_t i = 0; i < s->nclients; i++) {
        sim_client *c = &s->clients[i];
        size_t l;
        for (l = 0; l < s->nlanes; l++)
            if (s->lanes[l].group == c->group && s->lanes[l].site == c->site)
                break;
        if (l == s->nlanes) {
            s->lanes[l].group = c->group;
            s->lanes[l].site = c->site;
            s->nlanes++;
        }
        s->lanes[l].clients++;
        c->lane = l;
        c->cstate = CS_IDLE;
    }
    /* a few hundred samples over the run, on whole seconds */
    s->sample_step = ceil(scn->duration / 400);
    if (s->sample_step < 1)
        s->sample_step = 1;
    s->next_sample = 0;
    return 0;
}

static int take_sample(sim *s)
{
    size_t row = s->nlanes * COL_COUNT_;
    if (s->nsamples == s->capsamples) {
        size_t cap = s->capsamples ? s->capsamples * 2 : 512;
        uint32_t *p = realloc(s->samples, cap * row * sizeof *p);
        if (!p)
            return tsl_oom();
        s->samples = p;
        s->capsamples = cap;
    }
    uint32_t *r = s->samples + s->nsamples * row;
    memset(r, 0, row * sizeof *r);
    for (size_t i = 0; i < s->nclients; i++) {
        const sim_client *c = &s->clients[i];
        r[c->lane * COL_COUNT_ + (size_t)column_of(c->cstate, c->tier)]++;
    }
    s->nsamples++;
    return 0;
}

int sim_metrics_observe(sim *s, double next)
{
    double now = sim_now(s);
    tsl_agent_status st;
    int err;
    for (size_t i = 0; i < s->nclients; i++) {
        sim_client *c = &s->clients[i];
        sim_cstate cs = classify(c, &st);
        switch (cs) {
        case CS_REGISTERED:
        case CS_IDLE:
            if (c->in_spell)
                spell_end(s, c, now);
            break;
        case CS_WAITING:
        case CS_STRANDED_DEMANDED:
        case CS_STRANDED_UNDEMANDED:
            if (!c->in_spell) {
                c->in_spell = true;
                c->spell_since = now;
                c->spell_stranded = c->spell_demanded = false;
            }
            if (cs != CS_STRANDED_UNDEMANDED)
                c->spell_demanded = true;
            if (cs != CS_WAITING)
                c->spell_stranded = true;
            break;
        default: /* attempting: a spell goes on through its retries */
            break;
        }
        c->cstate = cs;
    }
    /* the states hold from now until `next` */
    while (s->next_sample < next - 1e-9 && s->next_sample <= s->scn->duration + 1e-9) {
        if ((err = take_sample(s)) < 0)
            return err;
        s->next_sample += s->sample_step;
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Events
 * ---------------------------------------------------------------------- */

static void leave(sim *s, sim_client *c)
{
    if (c->watch >= 0 && (size_t)c->watch < s->ndrains) {
        sim_drain *d = &s->drains[c->watch];
        d->remaining--;
        d->last_leave = sim_now(s);
    }
    c->watch = -1;
    c->server = -1;
    c->tier = -1;
}

void sim_metrics_event(sim *s, sim_client *c, tsl_agent_event ev, const tsl_agent_entry *e,
                       const char *detail)
{
    double now = sim_now(s);
    int t;
    switch (ev) {
    case TSL_AGENT_EV_LIST_FAILED: {
        /* an outage's failure if the broker was down when the request
         * began or when it failed.  Strictly after the start: a connection
         * refused just before the broker came up carries the same time */
        tsl_agent_status st;
        tsl_agent_status_get(c->agent, &st);
        if (s->broker_up && st.list_asked - (double)s->epoch > s->broker_up_since) {
            COUNT(s, c, failed_requests, 1);
            if (s->all.failed_requests <= 5)
                sim_logf(s, 1, "client %s: list request failed while the broker was up: %s",
                         c->guid, detail ? detail : "?");
        } else {
            c->list_failures_outage++;
        }
        break;
    }
    case TSL_AGENT_EV_CACHE_DROPPED:
        COUNT(s, c, cache_dropped, 1);
        break;
    case TSL_AGENT_EV_ATTEMPT:
        COUNT(s, c, attempts, 1);
        c->attempt_since = now;
        break;
    case TSL_AGENT_EV_REG_FAILED:
        COUNT(s, c, failed_attempts, 1);
        MAX3(s, c, attempt_max, now - c->attempt_since);
        break;
    case TSL_AGENT_EV_REGISTERED:
        MAX3(s, c, attempt_max, now - c->attempt_since);
        if (!e || (t = sim_find_server(s, e->name)) < 0)
            break;
        if (c->server >= 0)
            leave(s, c);
        c->server = t;
        c->tier = e->tier;
        COUNT(s, c, registrations, 1);
        COUNT(s, c, by_tier[sim_tier_slot(e->tier)], 1);
        int ssite = s->ts[t].site;
        if (c->site >= 0 && ssite != c->site) {
            COUNT(s, c, cross_site, 1);
            COUNT(s, c, cross_site_tier[sim_tier_slot(e->tier)], 1);
            const char *a = s->sites[c->site].country;
            const char *b = ssite >= 0 ? s->sites[ssite].country : NULL;
            if (a && b && strcasecmp(a, b) != 0) {
                COUNT(s, c, cross_country, 1);
                COUNT(s, c, cross_country_tier[sim_tier_slot(e->tier)], 1);
            }
        }
        const scn_promise *p = broken_promise(s, c, (size_t)t, now);
        if (p) {
            COUNT(s, c, outside_approved, 1);
            if (s->nviolations < sizeof s->violations / sizeof s->violations[0])
                snprintf(s->violations[s->nviolations++], sizeof s->violations[0],
                         "t=%.0f client %s (site %s) registered to %s (tier %d), outside "
                         "\"%s\" (line %d)",
                         now, c->guid, c->site >= 0 ? s->sites[c->site].name : "none",
                         s->ts[t].name, e->tier, p->text, p->line);
            sim_logf(s, 2, "PROMISE BROKEN: client %s registered to %s outside \"%s\"", c->guid,
                     s->ts[t].name, p->text);
        }
        break;
    case TSL_AGENT_EV_LOST:
        COUNT(s, c, lost, 1);
        leave(s, c);
        break;
    case TSL_AGENT_EV_LEFT:
        COUNT(s, c, left, 1);
        leave(s, c);
        break;
    case TSL_AGENT_EV_REPORT_FAILED:
        if (s->broker_up)
            COUNT(s, c, reports_failed, 1);
        break;
    default:
        break;
    }
}

int sim_metrics_drain_begin(sim *s, int fault, size_t server, int site)
{
    if (s->ndrains == s->capdrains) {
        size_t cap = s->capdrains ? s->capdrains * 2 : 16;
        sim_drain *p = realloc(s->drains, cap * sizeof *p);
        if (!p)
            return tsl_oom();
        s->drains = p;
        s->capdrains = cap;
    }
    sim_drain *d = &s->drains[s->ndrains];
    memset(d, 0, sizeof *d);
    d->fault = fault;
    d->server = server;
    d->site = site;
    /* measured from the scheduled time: what the scenario's reader sees */
    d->at = fault >= 0 && (size_t)fault < s->scn->nfaults ? s->scn->faults[fault].at : sim_now(s);
    for (size_t i = 0; i < s->nclients; i++) {
        sim_client *c = &s->clients[i];
        if (c->server != (int)server || (site >= 0 && c->site != site))
            continue;
        c->watch = (long)s->ndrains;
        d->had++;
    }
    d->remaining = d->had;
    s->ndrains++;
    return 0;
}

void sim_metrics_finish(sim *s)
{
    double now = sim_now(s);
    for (size_t i = 0; i < s->nclients; i++) {
        sim_client *c = &s->clients[i];
        tsl_agent_status st;
        sim_cstate cs = classify(c, &st);
        COUNT(s, c, clients, 1);
        COUNT(s, c, list_requests, st.list_requests);
        COUNT(s, c, list_failures, st.list_failures);
        switch (cs) {
        case CS_REGISTERED:
            COUNT(s, c, registered_at_end, 1);
            COUNT(s, c, registered_tier_at_end[sim_tier_slot(st.tier)], 1);
            break;
        case CS_ATTEMPTING:
            COUNT(s, c, attempting_at_end, 1);
            if (s->nattempting_end < sizeof s->attempting_end / sizeof s->attempting_end[0])
                snprintf(s->attempting_end[s->nattempting_end++], sizeof s->attempting_end[0],
                         "client %s (site %s): %s%s since t=%.0f", c->guid,
                         c->site >= 0 ? s->sites[c->site].name : "none",
                         st.attempting ? "attempting " : "asking the broker for a list",
                         st.attempting ? st.attempting : "",
                         (st.attempting ? st.attempt_since : st.list_asked) - (double)s->epoch);
            break;
        case CS_WAITING:
            COUNT(s, c, waiting_at_end, 1);
            break;
        case CS_STRANDED_DEMANDED:
            COUNT(s, c, stranded_demanded_at_end, 1);
            COUNT(s, c, stranded_at_end, 1);
            break;
        case CS_STRANDED_UNDEMANDED:
            COUNT(s, c, stranded_undemanded_at_end, 1);
            COUNT(s, c, stranded_at_end, 1);
            break;
        default:
            COUNT(s, c, idle_at_end, 1);
            break;
        }
        if (c->in_spell)
            spell_end(s, c, now);
        if (c->episodes) {
            COUNT(s, c, stranded, 1);
            if (c->ever_demanded)
                COUNT(s, c, stranded_demanded, 1);
            if (c->ever_undemanded)
                COUNT(s, c, stranded_undemanded, 1);
        }
        if (c->ever_waiting)
            COUNT(s, c, waiting, 1);
        if (c->server >= 0 && broken_promise(s, c, (size_t)c->server, now))
            COUNT(s, c, outside_approved_at_end, 1);
    }
    /* what each server holds now, for the load spread (the servers are
     * torn down before the report is written) */
    for (size_t t = 0; t < s->nts; t++) {
        s->ts[t].end_state = s->ts[t].state;
        s->ts[t].end_connections = s->ts[t].connections;
    }
    s->finished = true;
}
