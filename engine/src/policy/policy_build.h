/*
 * policy_build.h - what policy_eval.c needs of policy_build.c: the state of
 * one list being built, and the two steps that build it.
 *
 * Used by: policy_eval.c, policy_build.c.  Needs: policy.h, decide.h.
 */
#ifndef TSL_POLICY_BUILD_H
#define TSL_POLICY_BUILD_H

#include "decide.h"
#include "policy.h"

typedef struct build {
    pol_eval *ev;
    tsl_worker *w;
    policy_wstate *ws;
    decide_ctx *ctx;
    const tsl_snapshot *snap;
    const policy_bound *pb;
    uint32_t *cand;     /* scratch 2 */
    uint32_t *ranked;   /* scratch 3: ranking input, then output after it */
    uint32_t max;
} build;

/* Tier 0: the approved set of this request (policy_build.c). */
TSL_INTERNAL int policy_build_tier0(build *b);
/* The fallback in force after tier 0, `winner` the block whose fallback
 * applies (policy_build.c). */
TSL_INTERNAL int policy_build_fallback(build *b, const bound_block *winner);

#endif
