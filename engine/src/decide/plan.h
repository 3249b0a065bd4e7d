/*
 * plan.h - a snapshot bound to a policy, and the per-thread worker.
 *
 * A plan is what a broker swaps atomically: it pins one snapshot and one
 * compiled policy together with the policy's names resolved against that
 * snapshot (`bound`), so a decision never resolves a name or a glob.
 *
 * Used by: decide.c, the policy layer, reports.  Needs: snapshot.h.
 */
#ifndef TSL_PLAN_H
#define TSL_PLAN_H

#include "snapshot.h"

#include <stdatomic.h>

struct tsl_plan {
    atomic_int refs;
    tsl_snapshot *snap;
    tsl_policy *policy;    /* NULL: the default logic */
    void *bound;           /* the policy layer's per-snapshot binding */
    struct plan_stage *stage; /* staged rollout: per-site sub-plans (rollout_plan.c), or NULL */
};

struct tsl_worker {
    uint32_t *scratch[4];  /* server index arrays, see decide_scratch */
    uint32_t scratch_cap[4];
    struct rank_item *items; /* ranking keys */
    uint32_t items_cap;
    uint32_t *seen;        /* generation marks, one per server */
    uint32_t seen_cap, seen_gen;
    uint64_t policy_errors;
    uint64_t policy_overruns; /* of which: rules stopped by their time or instruction bound */
    char last_policy_error[512];
    void *policy_state;    /* the policy layer's per-worker state (its Lua state) */
    const tsl_policy *policy_state_for;
    /* Staged plans: one worker per sub-plan slot past the first, made on
     * first use, so each keeps the Lua state of one policy (rollout_plan.c). */
    struct tsl_worker *aux[TSL_STAGE_MAX_PLANS - 1];
};

/* ---- staged plans (rollout_plan.c) ---- */
/* The sub-plan deciding for clients of `site`, and the worker to decide it
 * with (w itself for the base plan, else w's aux worker of that slot, made
 * here on first use).  Records the choice in the trace. */
TSL_INTERNAL int plan_stage_pick(const tsl_plan **plan, tsl_worker **w, int32_t site,
                                 tsl_trace *tr);
TSL_INTERNAL void plan_stage_free(struct plan_stage *stage);

/* ---- provided by the policy layer ---- */
TSL_INTERNAL int policy_bind(void **out, const tsl_snapshot *snap, tsl_policy *pol);
TSL_INTERNAL void policy_unbind(void *bound);
/* Frees what the policy layer keeps in w->policy_state. */
TSL_INTERNAL void policy_worker_release(tsl_worker *w);
struct decide_ctx;
TSL_INTERNAL int policy_decide(tsl_result *res, tsl_worker *w, const tsl_plan *plan,
                               struct decide_ctx *ctx, tsl_trace *tr);

#endif
