/*
 * policy_none.c - TEMPORARY: the policy layer's entry points until the Lua
 * policy layer lands (it replaces this file).  Every call refuses.
 */
#include "decide.h"

int tsl_policy_compile(tsl_policy **out, const char *src, size_t len, const char *name)
{
    (void)src; (void)len; (void)name;
    *out = NULL;
    return tsl_seterr(TSL_EPOLICY, "policies are not available in this build");
}
tsl_policy *tsl_policy_ref(tsl_policy *pol) { return pol; }
void tsl_policy_free(tsl_policy *pol) { (void)pol; }
const char *tsl_policy_version(const tsl_policy *pol) { (void)pol; return NULL; }
int policy_bind(void **out, const tsl_snapshot *snap, tsl_policy *pol)
{
    (void)snap; (void)pol;
    *out = NULL;
    return tsl_seterr(TSL_EPOLICY, "policies are not available in this build");
}
void policy_unbind(void *bound) { (void)bound; }
void policy_worker_release(tsl_worker *w) { (void)w; }
int policy_decide(tsl_result *res, tsl_worker *w, const tsl_plan *plan, struct decide_ctx *ctx,
                  tsl_trace *tr)
{
    (void)res; (void)w; (void)plan; (void)ctx; (void)tr;
    return tsl_seterr(TSL_EPOLICY, "policies are not available in this build");
}
