/*
 * policy_dsl.h - the compile context the policy functions fill, and how a
 * run gets those functions: what policy_compile.c needs of policy_dsl.c.
 *
 * Used by: policy_compile.c, policy_dsl.c.  Needs: policy.h.
 */
#ifndef TSL_POLICY_DSL_H
#define TSL_POLICY_DSL_H

#include "policy.h"

typedef enum { MODE_COMPILE, MODE_RULES } ctx_mode;

typedef struct compile_ctx {
    ctx_mode mode;
    tsl_policy *pol;          /* MODE_COMPILE: being filled */
    const tsl_policy *rules_of; /* MODE_RULES: names to match */
    uint32_t rules_seen;
    bool c_oom;               /* a C allocation failed (-> TSL_ENOMEM) */
    bool sealed;              /* the load is over: the functions refuse */
} compile_ctx;

/* An empty block of `kind` named `name`, declared at `line`. */
TSL_INTERNAL void policy_block_init(pol_block *b, pol_block_kind kind, const char *name,
                                    int line);

/* Pushes the table of policy functions, bound to the context: a light
 * userdata (compile) or the full userdata at ud_idx (rules mode). */
TSL_INTERNAL void policy_push_dsl(lua_State *L, compile_ctx *c, int ud_idx);

#endif
