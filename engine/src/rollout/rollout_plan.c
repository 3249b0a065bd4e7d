/*
 * rollout_plan.c - staged plans: one policy for named sites, the previous
 * one everywhere else, inside one ordinary tsl_plan.
 *
 * A staged plan holds up to TSL_STAGE_MAX_PLANS bound sub-plans sharing one
 * snapshot and a site -> sub-plan map.  tsl_decide() resolves the client's
 * site (rule 1, which no policy changes) and then calls plan_stage_pick(),
 * which swaps in the sub-plan of that site and the worker slot that keeps
 * its policy's Lua state, so a worker alternating between sites never
 * reloads a policy.  Everything after rule 1 runs as if the sub-plan had
 * been passed: the CLI, reports, dry-runs and the broker need nothing new.
 *
 * Used by: decide.c (the hook), rollout.c (builds the plan in force),
 * embedders.  Needs: plan.h, decide.h.
 */
#include "decide.h"

#include <stdlib.h>
#include <string.h>

struct plan_stage {
    tsl_plan *plans[TSL_STAGE_MAX_PLANS]; /* [0] the base; each a referenced, unstaged plan */
    uint32_t nplans;
    uint8_t *site_slot;                   /* per snapshot site: index into plans */
    uint32_t nsites;
};

void plan_stage_free(struct plan_stage *stage)
{
    if (!stage)
        return;
    for (uint32_t i = 0; i < stage->nplans; i++)
        tsl_plan_free(stage->plans[i]);
    free(stage->site_slot);
    free(stage);
}

bool tsl_plan_staged(const tsl_plan *plan)
{
    return plan && plan->stage != NULL;
}

static const tsl_plan *stage_plan_of(const tsl_plan *plan, int32_t site)
{
    const struct plan_stage *st = plan->stage;
    if (!st)
        return plan;
    if (site < 0 || (uint32_t)site >= st->nsites)
        return st->plans[0];
    return st->plans[st->site_slot[site]];
}

const tsl_plan *tsl_plan_for_site(const tsl_plan *plan, const char *site)
{
    if (!plan || !plan->stage)
        return plan;
    return stage_plan_of(plan, site ? snap_find_site(plan->snap, site) : TSL_NO_SITE);
}

static const char *plan_label(const tsl_plan *p)
{
    return p->policy ? tsl_policy_version(p->policy) : "the default logic";
}

int plan_stage_pick(const tsl_plan **plan, tsl_worker **w, int32_t site, tsl_trace *tr)
{
    const struct plan_stage *st = (*plan)->stage;
    uint32_t slot = 0;

    if (site >= 0 && (uint32_t)site < st->nsites)
        slot = st->site_slot[site];
    const tsl_plan *sub = st->plans[slot];
    if (slot > 0) {
        tsl_worker **aux = &(*w)->aux[slot - 1];
        if (!*aux) {
            int err = tsl_worker_new(aux);
            if (err < 0)
                return err;
        }
        trace_addf(tr, "staged rollout: site \"%s\" runs %s; other sites keep %s",
                   (*plan)->snap->sites[site].name, plan_label(sub), plan_label(st->plans[0]));
        *w = *aux;
    } else if (tr) {
        trace_addf(tr, "staged rollout: %s keeps %s",
                   site >= 0 ? "this site" : "a client with no site", plan_label(sub));
    }
    *plan = sub;
    return 0;
}

/* ------------------------------------------------------------------------
 * Building
 * ---------------------------------------------------------------------- */

int tsl_plan_new_staged(tsl_plan **out, tsl_plan *base, tsl_plan *sites_plan,
                        const char *const *sites, size_t nsites)
{
    tsl_plan *p = NULL;
    struct plan_stage *st = NULL;
    const tsl_plan **want = NULL; /* per site: the sub-plan it should run */
    int err = 0;

    *out = NULL;
    TSL_ARG(base && sites_plan && (sites || nsites == 0));
    if (sites_plan->stage)
        return tsl_seterr(TSL_EINVALID, "the plan for the named sites must not itself be staged");
    if (sites_plan->snap != base->snap)
        return tsl_seterr(TSL_EINVALID, "a staged plan's sub-plans must share one snapshot");

    const tsl_snapshot *snap = base->snap;
    const tsl_plan *base0 = base->stage ? base->stage->plans[0] : base;
    if (!(want = calloc(snap->nsites ? snap->nsites : 1, sizeof *want)))
        return tsl_oom();
    for (uint32_t i = 0; i < snap->nsites; i++)
        want[i] = stage_plan_of(base, (int32_t)i);
    for (size_t i = 0; i < nsites; i++) {
        int32_t s = sites[i] ? snap_find_site(snap, sites[i]) : TSL_NO_SITE;
        if (s < 0) {
            err = tsl_seterr(TSL_ENOTFOUND, "no site \"%s\" in the inventory",
                             sites[i] ? sites[i] : "");
            goto done;
        }
        want[s] = sites_plan;
    }

    if (!(st = calloc(1, sizeof *st)) ||
        !(st->site_slot = calloc(snap->nsites ? snap->nsites : 1, 1))) {
        err = tsl_oom();
        goto done;
    }
    st->nsites = snap->nsites;
    st->plans[st->nplans++] = tsl_plan_ref((tsl_plan *)base0);
    /* slots in order of first use, so the layout is the same for the same map */
    for (uint32_t i = 0; i < snap->nsites; i++) {
        uint32_t k;
        for (k = 0; k < st->nplans; k++)
            if (st->plans[k] == want[i])
                break;
        if (k == st->nplans) {
            if (st->nplans == TSL_STAGE_MAX_PLANS) {
                err = tsl_seterr(TSL_ELIMIT, "a staged rollout runs at most %d versions at once",
                                 TSL_STAGE_MAX_PLANS);
                goto done;
            }
            st->plans[st->nplans++] = tsl_plan_ref((tsl_plan *)want[i]);
        }
        st->site_slot[i] = (uint8_t)k;
    }

    if (!(p = calloc(1, sizeof *p))) {
        err = tsl_oom();
        goto done;
    }
    atomic_init(&p->refs, 1);
    p->snap = tsl_snapshot_ref(base->snap);
    p->policy = base0->policy ? tsl_policy_ref(base0->policy) : NULL;
    p->stage = st;
    st = NULL;
    *out = p;
done:
    plan_stage_free(st);
    free(want);
    return err;
}
