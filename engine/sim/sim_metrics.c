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
 * Used by: sim.c.  Needs: sim_internal.h.
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

static int tier_slot(int tier)
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
        COUNT(s, c, by_tier[tier_slot(e->tier)], 1);
        int ssite = s->ts[t].site;
        if (c->site >= 0 && ssite != c->site) {
            COUNT(s, c, cross_site, 1);
            COUNT(s, c, cross_site_tier[tier_slot(e->tier)], 1);
            const char *a = s->sites[c->site].country;
            const char *b = ssite >= 0 ? s->sites[ssite].country : NULL;
            if (a && b && strcasecmp(a, b) != 0) {
                COUNT(s, c, cross_country, 1);
                COUNT(s, c, cross_country_tier[tier_slot(e->tier)], 1);
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
            COUNT(s, c, registered_tier_at_end[tier_slot(st.tier)], 1);
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

/* ------------------------------------------------------------------------
 * Figures by name (for `expect` and the metrics block)
 * ---------------------------------------------------------------------- */

typedef struct metric_def {
    const char *name;
    size_t off;
    bool real;
} metric_def;

#define U(f) {#f, offsetof(sim_counts, f), false}
static const metric_def count_metrics[] = {
    U(clients),          U(registrations),    U(cross_site),       U(cross_country),
    U(outside_approved), U(outside_approved_at_end),                U(stranded),
    U(stranded_demanded), U(stranded_undemanded), U(stranded_at_end), U(episodes),
    U(waiting),          U(list_requests),    U(list_failures),    U(failed_requests),
    U(reports_failed),   U(cache_dropped),    U(attempts),         U(failed_attempts),
    U(lost),             U(left),             U(registered_at_end), U(attempting_at_end),
    U(waiting_at_end),   U(stranded_demanded_at_end), U(stranded_undemanded_at_end),
    {"not_started_at_end", offsetof(sim_counts, idle_at_end), false},
};
#undef U

/* Figures computed from the counts (per group too), and figures of the
 * whole run only. */
static const char *const real_metrics[] = {"fallback_registrations", "stranded_max_s",
                                           "stranded_mean_s", "waiting_max_s",
                                           "waiting_mean_s", "attempt_max_s",
                                           "requests_per_client_hour"};
static const char *const run_metrics[] = {"drain_max_s", "undrained", "spread_max",
                                          "admin_failures", "broker_outage_s"};
static const char *const tier_metrics[] = {"registrations", "cross_site", "cross_country",
                                           "registered_at_end"};

/* "NAME.tierN": the index into tier_metrics and N, or -1. */
static int tier_metric(const char *name, int *tier)
{
    for (size_t i = 0; i < sizeof tier_metrics / sizeof tier_metrics[0]; i++) {
        size_t n = strlen(tier_metrics[i]);
        char tail;
        if (strncmp(name, tier_metrics[i], n) == 0 &&
            sscanf(name + n, ".tier%d%c", tier, &tail) == 1 && *tier >= 0 &&
            name[n + 5] >= '0' && name[n + 5] <= '9')
            return (int)i;
    }
    return -1;
}

bool sim_metric_known(const char *name)
{
    int tier;
    for (size_t i = 0; i < sizeof count_metrics / sizeof count_metrics[0]; i++)
        if (strcmp(count_metrics[i].name, name) == 0)
            return true;
    for (size_t i = 0; i < sizeof real_metrics / sizeof real_metrics[0]; i++)
        if (strcmp(real_metrics[i], name) == 0)
            return true;
    for (size_t i = 0; i < sizeof run_metrics / sizeof run_metrics[0]; i++)
        if (strcmp(run_metrics[i], name) == 0)
            return true;
    return tier_metric(name, &tier) >= 0;
}

/* Load spread of one site: max / mean connections over its running
 * servers; 0 when it has none or they hold nobody. */
static double site_spread(const sim *s, int site, long *total, int *servers)
{
    long sum = 0, max = 0;
    int n = 0;
    for (size_t t = 0; t < s->nts; t++) {
        const sim_ts *ts = &s->ts[t];
        if (ts->site != site || ts->end_state != TS_UP)
            continue;
        n++;
        sum += ts->end_connections;
        if (ts->end_connections > max)
            max = ts->end_connections;
    }
    if (total)
        *total = sum;
    if (servers)
        *servers = n;
    return n && sum ? (double)max / ((double)sum / n) : 0;
}

static double drain_max(const sim *s, double end, long *undrained)
{
    double worst = 0;
    *undrained = 0;
    for (size_t i = 0; i < s->ndrains; i++) {
        const sim_drain *d = &s->drains[i];
        if (d->had == 0)
            continue;
        double took = (d->remaining > 0 ? end : d->last_leave) - d->at;
        if (d->remaining > 0)
            (*undrained)++;
        if (took > worst)
            worst = took;
    }
    return worst;
}

static double per_client_hour(double n, const sim_counts *c, double duration)
{
    return c->clients && duration > 0 ? n / (double)c->clients / (duration / 3600.0) : 0;
}

/* Looks a figure up; false when the name is unknown. */
static bool metric_value(const sim *s, const sim_counts *c, const char *name, double *out)
{
    for (size_t i = 0; i < sizeof count_metrics / sizeof count_metrics[0]; i++) {
        if (strcmp(count_metrics[i].name, name) == 0) {
            *out = (double)*(const uint64_t *)((const char *)c + count_metrics[i].off);
            return true;
        }
    }
    int tier;
    switch (tier_metric(name, &tier)) {
    case 0:
        *out = (double)c->by_tier[tier_slot(tier)];
        return true;
    case 1:
        *out = (double)c->cross_site_tier[tier_slot(tier)];
        return true;
    case 2:
        *out = (double)c->cross_country_tier[tier_slot(tier)];
        return true;
    case 3:
        *out = (double)c->registered_tier_at_end[tier_slot(tier)];
        return true;
    default:
        break;
    }
    if (strcmp(name, "fallback_registrations") == 0) {
        *out = (double)(c->registrations - c->by_tier[0]);
        return true;
    }
    if (strcmp(name, "stranded_max_s") == 0) {
        *out = c->stranded_max;
        return true;
    }
    if (strcmp(name, "stranded_mean_s") == 0) {
        *out = c->episodes ? c->stranded_sum / (double)c->episodes : 0;
        return true;
    }
    if (strcmp(name, "attempt_max_s") == 0) {
        *out = c->attempt_max;
        return true;
    }
    if (strcmp(name, "waiting_max_s") == 0) {
        *out = c->waiting_max;
        return true;
    }
    if (strcmp(name, "waiting_mean_s") == 0) {
        *out = c->waiting_spells ? c->waiting_sum / (double)c->waiting_spells : 0;
        return true;
    }
    if (strcmp(name, "requests_per_client_hour") == 0) {
        *out = per_client_hour((double)c->list_requests, c, s->scn->duration);
        return true;
    }
    /* over the whole run only */
    long undrained;
    if (strcmp(name, "drain_max_s") == 0) {
        *out = drain_max(s, s->scn->duration, &undrained);
        return true;
    }
    if (strcmp(name, "undrained") == 0) {
        drain_max(s, s->scn->duration, &undrained);
        *out = (double)undrained;
        return true;
    }
    if (strcmp(name, "spread_max") == 0) {
        double worst = 0;
        for (size_t i = 0; i < s->nsites; i++) {
            double v = site_spread(s, (int)i, NULL, NULL);
            if (v > worst)
                worst = v;
        }
        *out = worst;
        return true;
    }
    if (strcmp(name, "admin_failures") == 0) {
        *out = s->admin_failures;
        return true;
    }
    if (strcmp(name, "broker_outage_s") == 0) {
        *out = s->outage_total;
        return true;
    }
    return false;
}

static bool compare(double a, scn_op op, double b)
{
    switch (op) {
    case OP_EQ: return fabs(a - b) < 1e-9;
    case OP_NE: return fabs(a - b) >= 1e-9;
    case OP_LT: return a < b;
    case OP_LE: return a <= b + 1e-9;
    case OP_GT: return a > b;
    case OP_GE: return a >= b - 1e-9;
    }
    return false;
}

/* ------------------------------------------------------------------------
 * The report
 * ---------------------------------------------------------------------- */

#define OUT(...)                                                                \
    do {                                                                        \
        if ((err = tsl_buf_printf(out, __VA_ARGS__)) < 0)                       \
            goto done;                                                          \
    } while (0)

static int tiers_text(tsl_buf *out, const uint64_t *by_tier)
{
    int err = 0;
    bool any = false;
    for (int t = 0; t < SIM_TIERS; t++) {
        if (!by_tier[t])
            continue;
        OUT("%stier %d%s: %llu", any ? ", " : " (", t, t == SIM_TIERS - 1 ? "+" : "",
            (unsigned long long)by_tier[t]);
        any = true;
    }
    if (any)
        OUT(")");
done:
    return err;
}

/* Where every client stands at the end: the parts add up to the whole. */
static int whereabouts_text(tsl_buf *out, const sim_counts *c, const char *indent)
{
    int err = 0;
    OUT("%sat the end: %llu client(s) = %llu registered", indent, (unsigned long long)c->clients,
        (unsigned long long)c->registered_at_end);
    if ((err = tiers_text(out, c->registered_tier_at_end)) < 0)
        goto done;
    OUT(" + %llu attempting + %llu waiting for a delayed fallback (as the policy demands)"
        " + %llu stranded (%llu as the policy demands, %llu not) + %llu not started\n",
        (unsigned long long)c->attempting_at_end, (unsigned long long)c->waiting_at_end,
        (unsigned long long)c->stranded_at_end, (unsigned long long)c->stranded_demanded_at_end,
        (unsigned long long)c->stranded_undemanded_at_end, (unsigned long long)c->idle_at_end);
done:
    return err;
}

static int counts_text(tsl_buf *out, const sim *s, const sim_counts *c, const char *indent)
{
    int err = 0;
    double dur = s->scn->duration;
    if ((err = whereabouts_text(out, c, indent)) < 0)
        goto done;
    OUT("%sregistrations: %llu", indent, (unsigned long long)c->registrations);
    if ((err = tiers_text(out, c->by_tier)) < 0)
        goto done;
    OUT("\n%s  across sites: %llu", indent, (unsigned long long)c->cross_site);
    if ((err = tiers_text(out, c->cross_site_tier)) < 0)
        goto done;
    OUT("; across countries: %llu", (unsigned long long)c->cross_country);
    if ((err = tiers_text(out, c->cross_country_tier)) < 0)
        goto done;
    OUT("\n%s  outside an approved set: %llu (still outside at the end: %llu)\n", indent,
        (unsigned long long)c->outside_approved, (unsigned long long)c->outside_approved_at_end);
    OUT("%swaited for a delayed fallback (as the policy demands): %llu client(s); %llu spell(s), "
        "longest %.0f s, mean %.0f s\n",
        indent, (unsigned long long)c->waiting, (unsigned long long)c->waiting_spells,
        c->waiting_max, c->waiting_spells ? c->waiting_sum / (double)c->waiting_spells : 0.0);
    OUT("%sstranded: %llu client(s) (%llu as the policy demanded, %llu not); %llu spell(s), "
        "longest %.0f s, mean %.0f s\n",
        indent, (unsigned long long)c->stranded, (unsigned long long)c->stranded_demanded,
        (unsigned long long)c->stranded_undemanded, (unsigned long long)c->episodes,
        c->stranded_max, c->episodes ? c->stranded_sum / (double)c->episodes : 0.0);
    OUT("%sattempts %llu (%llu failed, the longest %.0f s), servers lost %llu, left for a better "
        "entry %llu\n",
        indent, (unsigned long long)c->attempts, (unsigned long long)c->failed_attempts,
        c->attempt_max, (unsigned long long)c->lost, (unsigned long long)c->left);
    OUT("%sbroker cost: %.2f list requests per client per hour (%llu requests, %llu failed "
        "while the broker was up, %llu caches dropped, %llu reports lost)\n",
        indent, per_client_hour((double)c->list_requests, c, dur),
        (unsigned long long)c->list_requests, (unsigned long long)c->failed_requests,
        (unsigned long long)c->cache_dropped, (unsigned long long)c->reports_failed);
done:
    return err;
}

static int metrics_block(tsl_buf *out, const sim *s, const sim_counts *c, const char *prefix)
{
    int err = 0;
    for (size_t i = 0; i < sizeof count_metrics / sizeof count_metrics[0]; i++)
        OUT("  %s%s %llu\n", prefix, count_metrics[i].name,
            (unsigned long long)*(const uint64_t *)((const char *)c + count_metrics[i].off));
    for (int t = 0; t < SIM_TIERS; t++)
        if (c->by_tier[t] || c->registered_tier_at_end[t] || t == 0)
            OUT("  %sregistrations.tier%d %llu\n  %scross_site.tier%d %llu\n"
                "  %scross_country.tier%d %llu\n  %sregistered_at_end.tier%d %llu\n",
                prefix, t, (unsigned long long)c->by_tier[t], prefix, t,
                (unsigned long long)c->cross_site_tier[t], prefix, t,
                (unsigned long long)c->cross_country_tier[t], prefix, t,
                (unsigned long long)c->registered_tier_at_end[t]);
    double v;
    for (size_t i = 0; i < sizeof real_metrics / sizeof real_metrics[0]; i++) {
        metric_value(s, c, real_metrics[i], &v);
        OUT("  %s%s %.6g\n", prefix, real_metrics[i], v);
    }
done:
    return err;
}

/* Evaluates every `expect` line into s->inv_value / s->inv_state. */
static int invariants_eval(sim *s, tsl_sim_outcome *outcome)
{
    const tsl_sim_scenario *scn = s->scn;
    size_t n = scn->nexpects ? scn->nexpects : 1;
    if (!(s->inv_value = calloc(n, sizeof *s->inv_value)) ||
        !(s->inv_state = calloc(n, sizeof *s->inv_state)))
        return tsl_oom();
    for (size_t i = 0; i < scn->nexpects; i++) {
        const scn_expect *x = &scn->expects[i];
        const sim_counts *c = &s->all;
        for (size_t g = 0; x->group && g < scn->ngroups; g++)
            if (strcmp(scn->groups[g].name, x->group) == 0)
                c = &s->groups[g];
        outcome->checked++;
        if (!metric_value(s, c, x->metric, &s->inv_value[i])) {
            s->inv_state[i] = -1;
            outcome->broken++;
            continue;
        }
        s->inv_state[i] = compare(s->inv_value[i], x->op, x->value) ? 1 : 0;
        if (!s->inv_state[i])
            outcome->broken++;
    }
    if (s->admin_failures) {
        outcome->checked++;
        outcome->broken++;
    }
    return 0;
}

int sim_metrics_report(sim *s, tsl_buf *out, tsl_sim_outcome *outcome)
{
    const tsl_sim_scenario *scn = s->scn;
    double end = scn->duration, v;
    int err = 0;

    if ((err = invariants_eval(s, outcome)) < 0)
        goto done;
    OUT("== scenario %s (%s)%s%s\n", scn->name, scn->path, scn->description ? ": " : "",
        scn->description ? scn->description : "");
    OUT("   inventory %s; policy %s; broker: %s%s%s\n", scn->inventory,
        scn->policy ? scn->policy : "none (the default logic)", s->ops->name,
        s->selection ? "; selection " : "", s->selection ? s->selection : "");
    OUT("   %zu clients, %zu Task Servers, %zu sites; %.0f s simulated", s->nclients, s->nts,
        s->nsites, end);
    if (s->speed > 0)
        OUT(" (paced at %gx)", s->speed);
    OUT(" in %.2f s of wall time\n", outcome->wall_seconds);

    /* what matters first: the verdict */
    OUT("invariants:\n");
    for (size_t i = 0; i < scn->nexpects; i++) {
        const scn_expect *x = &scn->expects[i];
        if (s->inv_state[i] < 0)
            OUT("  FAIL  line %d: %s   (no metric \"%s\")\n", x->line, x->text, x->metric);
        else
            OUT("  %s  line %d: %s   (%.6g)\n", s->inv_state[i] ? "PASS" : "FAIL", x->line,
                x->text, s->inv_value[i]);
    }
    if (s->admin_failures)
        OUT("  FAIL  every policy activation of the timeline succeeds   (%u failed)\n",
            s->admin_failures);
    if (outcome->broken)
        OUT("result: FAIL (%u of %u invariants broken)\n", outcome->broken, outcome->checked);
    else
        OUT("result: PASS (%u invariants)\n", outcome->checked);

    /* then the promise, site by site */
    if ((err = whereabouts_text(out, &s->all, "")) < 0)
        goto done;
    for (unsigned i = 0; i < s->nattempting_end; i++)
        OUT("  %s\n", s->attempting_end[i]);
    if (s->all.attempting_at_end > s->nattempting_end)
        OUT("  ... and %llu more attempting\n",
            (unsigned long long)(s->all.attempting_at_end - s->nattempting_end));
    OUT("by site (its own clients):\n");
    for (size_t i = 0; i < s->nsites; i++) {
        const sim_counts *c = &s->site_counts[i];
        if (!c->clients)
            continue;
        OUT("  %s (%llu clients%s%s):\n", s->sites[i].name, (unsigned long long)c->clients,
            s->sites[i].country ? ", country " : "",
            s->sites[i].country ? s->sites[i].country : "");
        if ((err = counts_text(out, s, c, "    ")) < 0)
            goto done;
    }

    if (scn->npromises) {
        OUT("promises (approved sets):\n");
        for (size_t i = 0; i < scn->npromises; i++)
            OUT("  line %d: %s\n", scn->promises[i].line, scn->promises[i].text);
        for (unsigned i = 0; i < s->nviolations; i++)
            OUT("  BROKEN: %s\n", s->violations[i]);
    }

    if (scn->nfaults) {
        OUT("timeline:\n");
        for (size_t i = 0; i < scn->nfaults; i++) {
            const scn_fault *f = &scn->faults[i];
            OUT("  t=%-6.0f %s%s%s%s%s\n", f->at, scn_fault_name(f->kind), f->a ? " " : "",
                f->a ? f->a : "", f->b ? " " : "", f->b ? f->b : "");
        }
    }

    if (s->ndrains) {
        OUT("server deaths and cut links (time for the last client to leave):\n");
        for (size_t i = 0; i < s->ndrains; i++) {
            const sim_drain *d = &s->drains[i];
            const scn_fault *f = &scn->faults[d->fault];
            OUT("  t=%-6.0f %s %s%s%s: %ld client(s)", d->at, scn_fault_name(f->kind),
                s->ts[d->server].name, d->site >= 0 ? " from " : "",
                d->site >= 0 ? s->sites[d->site].name : "", d->had);
            if (d->had == 0)
                OUT(", nobody to move\n");
            else if (d->remaining == 0)
                OUT(", the last left after %.0f s\n", d->last_leave - d->at);
            else
                OUT(", %ld still there at the end (%.0f s later)\n", d->remaining, end - d->at);
        }
    }

    OUT("load spread (max/mean connections over a site's running servers, selection %s):\n",
        s->selection ? s->selection : tsl_selection_name(s->settings.selection));
    for (size_t i = 0; i < s->nsites; i++) {
        long total;
        int n;
        v = site_spread(s, (int)i, &total, &n);
        if (n == 0 || total == 0)
            continue;
        OUT("  %-16s %.2f  (%ld connections on %d server(s):", s->sites[i].name, v, total, n);
        for (size_t t = 0; t < s->nts; t++)
            if (s->ts[t].site == (int)i && s->ts[t].end_state == TS_UP)
                OUT(" %s=%ld", s->ts[t].name, s->ts[t].end_connections);
        OUT(")\n");
    }

    if (scn->ngroups > 1) {
        OUT("by client group:\n");
        for (size_t g = 0; g < scn->ngroups; g++) {
            const scn_group *grp = &scn->groups[g];
            OUT("  %s (%llu clients%s%s%s%s%s%s):\n", grp->name,
                (unsigned long long)s->groups[g].clients, grp->site ? ", site " : "",
                grp->site ? grp->site : "", grp->department ? ", department " : "",
                grp->department ? grp->department : "", grp->task ? ", task " : "",
                grp->task ? grp->task : "");
            if ((err = counts_text(out, s, &s->groups[g], "    ")) < 0)
                goto done;
        }
    }

    if (s->opt->verbose < 1)
        goto done;
    OUT("metrics:\n");
    if ((err = metrics_block(out, s, &s->all, "")) < 0)
        goto done;
    long undrained;
    double dm = drain_max(s, end, &undrained);
    metric_value(s, &s->all, "spread_max", &v);
    OUT("  drain_max_s %.6g\n  undrained %ld\n  spread_max %.6g\n  admin_failures %u\n"
        "  broker_outage_s %.6g\n",
        dm, undrained, v, s->admin_failures, s->outage_total);
    if (scn->ngroups > 1) {
        for (size_t g = 0; g < scn->ngroups; g++) {
            char prefix[128];
            snprintf(prefix, sizeof prefix, "%s:", scn->groups[g].name);
            if ((err = metrics_block(out, s, &s->groups[g], prefix)) < 0)
                goto done;
        }
    }
done:
    return err;
}
