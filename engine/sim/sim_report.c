/*
 * sim_report.c - the simulation's figures by name (what a scenario's
 * `expect` lines and the metrics block name), the invariants judged
 * against them, and the text report of a pass.
 *
 * Used by: sim.c (sim_metrics_report), scenario.c (sim_metric_known).
 * Needs: sim_internal.h, the counts sim_metrics.c kept.
 */
#include "sim_internal.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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
        *out = (double)c->by_tier[sim_tier_slot(tier)];
        return true;
    case 1:
        *out = (double)c->cross_site_tier[sim_tier_slot(tier)];
        return true;
    case 2:
        *out = (double)c->cross_country_tier[sim_tier_slot(tier)];
        return true;
    case 3:
        *out = (double)c->registered_tier_at_end[sim_tier_slot(tier)];
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
