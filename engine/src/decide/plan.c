/*
 * plan.c - binding a snapshot to a policy, and the per-thread worker.
 */
#include "decide.h"

#include <stdlib.h>

int tsl_plan_new(tsl_plan **out, tsl_snapshot *snap, tsl_policy *pol)
{
    tsl_plan *p;
    int err = 0;

    *out = NULL;
    TSL_ARG(snap);
    if (!(p = calloc(1, sizeof *p)))
        return tsl_oom();
    atomic_init(&p->refs, 1);
    p->snap = tsl_snapshot_ref(snap);
    if (pol) {
        p->policy = tsl_policy_ref(pol);
        if ((err = policy_bind(&p->bound, snap, pol)) < 0) {
            tsl_plan_free(p);
            return err;
        }
    }
    *out = p;
    return 0;
}

tsl_plan *tsl_plan_ref(tsl_plan *plan)
{
    if (plan)
        atomic_fetch_add_explicit(&plan->refs, 1, memory_order_relaxed);
    return plan;
}

void tsl_plan_free(tsl_plan *plan)
{
    if (!plan || atomic_fetch_sub_explicit(&plan->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (plan->bound)
        policy_unbind(plan->bound);
    plan_stage_free(plan->stage);
    tsl_policy_free(plan->policy);
    tsl_snapshot_free(plan->snap);
    free(plan);
}

tsl_snapshot *tsl_plan_snapshot(const tsl_plan *plan) { return plan->snap; }
tsl_policy *tsl_plan_policy(const tsl_plan *plan) { return plan->policy; }

int tsl_worker_new(tsl_worker **out)
{
    *out = calloc(1, sizeof **out);
    return *out ? 0 : tsl_oom();
}

void tsl_worker_free(tsl_worker *w)
{
    if (!w)
        return;
    if (w->policy_state)
        policy_worker_release(w);
    for (int i = 0; i < TSL_STAGE_MAX_PLANS - 1; i++)
        tsl_worker_free(w->aux[i]);
    for (int i = 0; i < 4; i++)
        free(w->scratch[i]);
    free(w->items);
    free(w->seen);
    free(w);
}

uint64_t tsl_worker_policy_errors(const tsl_worker *w)
{
    uint64_t n = w->policy_errors;
    for (int i = 0; i < TSL_STAGE_MAX_PLANS - 1; i++)
        if (w->aux[i])
            n += tsl_worker_policy_errors(w->aux[i]);
    return n;
}

uint64_t tsl_worker_policy_overruns(const tsl_worker *w)
{
    uint64_t n = w->policy_overruns;
    for (int i = 0; i < TSL_STAGE_MAX_PLANS - 1; i++)
        if (w->aux[i])
            n += tsl_worker_policy_overruns(w->aux[i]);
    return n;
}

const char *tsl_worker_last_policy_error(const tsl_worker *w)
{
    if (w->policy_errors)
        return w->last_policy_error;
    for (int i = 0; i < TSL_STAGE_MAX_PLANS - 1; i++) {
        const char *m = w->aux[i] ? tsl_worker_last_policy_error(w->aux[i]) : NULL;
        if (m)
            return m;
    }
    return NULL;
}
