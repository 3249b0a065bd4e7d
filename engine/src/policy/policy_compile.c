/*
 * policy_compile.c - from a policy script to a compiled tsl_policy.
 *
 * The script runs once, in a fresh sandbox, under the memory ceiling and
 * the load-time instruction budget.  Its only effect is the calls it makes
 * to the four policy functions:
 *
 *   defaults { field = value, ... }
 *   site "London" { order = {...}, allow = {...}, deny = {...}, fallback = ... }
 *   group "Finance" { allow = {...}, order = {...}, deny = {...}, fallback = ... }
 *   rule("name", function(req, list) ... end)
 *
 * which validate their arguments (messages carry file:line) and fill the C
 * structures of policy.h.  Configuration is Lua, execution is C: nothing of
 * the Lua state survives the compile except the rule names; each worker
 * re-runs the text in its own state to get its own rule functions
 * (policy_load_rules).
 *
 * The policy functions themselves are policy_dsl.c's; the arena and globs
 * policy_arena.c's.  Here: running the chunk, cross-block validation, the
 * public compile/ref/free/version, and collecting a worker's rule
 * functions.
 *
 * Used by: tsl_policy_compile's callers (policy_store.c, the CLI, tests),
 * policy_eval.c (policy_load_rules).  Needs: policy.h, policy_dsl.h,
 * sandbox.h.
 */
#include "policy.h"
#include "policy_dsl.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------------
 * Running the chunk
 * ---------------------------------------------------------------------- */

struct run_args {
    sandbox *sb;
    compile_ctx *ctx;
    const char *src;
    size_t len;
    const char *name;
    int64_t budget;
    int status;       /* of the chunk */
    char msg[1024];   /* its error */
};

/* Protected: builds the env, loads, runs; records the chunk's own status
 * and message in args (so memory errors outside the chunk are told apart). */
static int run_p(lua_State *L)
{
    struct run_args *a = lua_touserdata(L, 1);
    int st;

    policy_push_dsl(L, a->ctx, 0);
    sandbox_push_env(a->sb, -1);
    st = sandbox_load(a->sb, a->src, a->len, a->name, -1);
    if (st == LUA_OK)
        st = sandbox_call(a->sb, 0, 0, a->budget);
    a->status = st;
    if (st != LUA_OK)
        sandbox_errmsg(a->sb, st, a->msg, sizeof a->msg, false);
    return 0;
}

static int run_chunk(struct run_args *a)
{
    lua_State *L = a->sb->L;
    int st;
    lua_pushcfunction(L, run_p);
    lua_pushlightuserdata(L, a);
    st = lua_pcall(L, 1, 0, 0);
    if (st != LUA_OK) {
        a->status = st;
        sandbox_errmsg(a->sb, st, a->msg, sizeof a->msg, false);
        lua_pop(L, 1);
    }
    return a->status;
}

/* The error code of a failed run: TSL_ENOMEM when the machine (or the
 * test probe) ran out, TSL_EPOLICY when the script did something wrong,
 * including exceeding its own memory ceiling. */
static int run_error(struct run_args *a)
{
    if (a->ctx->c_oom || (a->status == LUA_ERRMEM && !a->sb->refused_limit))
        return tsl_seterr(TSL_ENOMEM, "%s: out of memory while loading the policy", a->name);
    if (a->status == LUA_ERRMEM)
        return tsl_seterr(TSL_EPOLICY, "%s: memory limit of %zu bytes exceeded while loading "
                                       "the policy",
                          a->name, a->sb->limit);
    /* Lua's own messages already start with "name:line:" */
    return tsl_seterr(TSL_EPOLICY, "%s", a->msg);
}

/* After the run: cross-block validation that needs the whole file. */
static int validate(tsl_policy *pol)
{
    for (uint32_t i = 0; i < pol->nsites; i++)
        if (!pol->sites[i].has_body)
            return tsl_seterr(TSL_EPOLICY, "%s:%d: site \"%s\" has no { ... } body", pol->name,
                              pol->sites[i].line, pol->sites[i].name);
    for (uint32_t i = 0; i < pol->ngroups; i++)
        if (!pol->groups[i].has_body)
            return tsl_seterr(TSL_EPOLICY, "%s:%d: group \"%s\" has no { ... } body", pol->name,
                              pol->groups[i].line, pol->groups[i].name);
    for (uint32_t i = 0; i < pol->nsites; i++) {
        const pol_block *b = &pol->sites[i];
        if (b->has_allow && b->allow.n == 0 && !b->has_order)
            return tsl_seterr(TSL_EPOLICY, "%s:%d: site \"%s\": field \"allow\" is empty (an "
                                           "empty approved set lists nothing)",
                              pol->name, b->line, b->name);
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Public
 * ---------------------------------------------------------------------- */

int policy_compile_ex(tsl_policy **out, const char *src, size_t len, const char *name,
                      const policy_limits *lim)
{
    tsl_alloc_probe *probe = lim ? lim->probe : NULL;
    tsl_policy *pol = NULL;
    sandbox *sb = NULL;
    compile_ctx ctx;
    struct run_args *args = NULL;
    uint8_t digest[32];
    int err = 0;

    TSL_ARG(out);
    *out = NULL;
    TSL_ARG(src || len == 0);
    if (!name)
        name = "policy";
    if (!src)
        src = "";
    if (len > POL_MAX_SOURCE) {
        err = tsl_seterr(TSL_EPOLICY, "%s: policy is larger than %zu bytes", name,
                         POL_MAX_SOURCE);
        goto done;
    }

    pol = probe_calloc(probe, 1, sizeof *pol);
    if (!pol) {
        err = tsl_oom();
        goto done;
    }
    atomic_init(&pol->refs, 1);
    pol->arena.probe = probe;
    pol->on_error = POL_ONERR_APPROVED;
    pol->rule_budget = POL_RULE_BUDGET_DEFAULT;
    pol->rule_time_ms = POL_RULE_TIME_MS_DEFAULT;
    policy_block_init(&pol->defaults, POL_DEFAULTS, "defaults", 0);
    policy_block_init(&pol->unassigned, POL_UNASSIGNED, "unassigned", 0);
    pol->name = arena_strdup(&pol->arena, name);
    pol->src = arena_strndup(&pol->arena, src, len);
    if (!pol->name || !pol->src) {
        err = tsl_oom();
        goto done;
    }
    pol->len = len;
    policy_sha256(digest, src, len);
    policy_sha256_hex(pol->sha256, src, len);
    snprintf(pol->version, sizeof pol->version, "sha256:%.12s", pol->sha256);
    (void)digest;

    if ((err = sandbox_new(&sb, lim ? lim->memory : 0, probe)) < 0)
        goto done;
    if (lim && lim->load_time_ms > 0)
        sb->time_ms = lim->load_time_ms;

    memset(&ctx, 0, sizeof ctx);
    ctx.mode = MODE_COMPILE;
    ctx.pol = pol;
    args = probe_calloc(probe, 1, sizeof *args);
    if (!args) {
        err = tsl_oom();
        goto done;
    }
    args->sb = sb;
    args->ctx = &ctx;
    args->src = src;
    args->len = len;
    args->name = name;
    args->budget = lim && lim->load_budget ? lim->load_budget : SANDBOX_LOAD_BUDGET_DEFAULT;
    if (run_chunk(args) != LUA_OK || ctx.c_oom) {
        err = run_error(args);
        goto done;
    }
    if ((err = validate(pol)) < 0)
        goto done;

    pol->arena.probe = NULL; /* the probe belongs to this call only */
    *out = pol;
    pol = NULL;
done:
    free(args);
    sandbox_free(sb);
    tsl_policy_free(pol);
    return err;
}

int tsl_policy_compile(tsl_policy **out, const char *src, size_t len, const char *name)
{
    return policy_compile_ex(out, src, len, name, NULL);
}

tsl_policy *tsl_policy_ref(tsl_policy *pol)
{
    if (pol)
        atomic_fetch_add_explicit(&pol->refs, 1, memory_order_relaxed);
    return pol;
}

void tsl_policy_free(tsl_policy *pol)
{
    if (!pol)
        return;
    if (atomic_fetch_sub_explicit(&pol->refs, 1, memory_order_acq_rel) != 1)
        return;
    free(pol->sites);
    free(pol->groups);
    free(pol->rules);
    arena_free(&pol->arena);
    free(pol);
}

const char *tsl_policy_version(const tsl_policy *pol)
{
    return pol ? pol->version : NULL;
}

/* ------------------------------------------------------------------------
 * Rule collection in a worker's state
 * ---------------------------------------------------------------------- */

struct rules_args {
    sandbox *sb;
    const tsl_policy *pol;
    int64_t budget;
    int status;
};

static int rules_p(lua_State *L)
{
    struct rules_args *a = lua_touserdata(L, 1);
    compile_ctx *ctx = lua_newuserdatauv(L, sizeof *ctx, 1); /* stays on the stack */
    int ud = lua_gettop(L);
    int st;

    memset(ctx, 0, sizeof *ctx);
    ctx->mode = MODE_RULES;
    ctx->rules_of = a->pol;
    lua_createtable(L, (int)a->pol->nrules, 0);
    lua_setiuservalue(L, ud, 1);
    policy_push_dsl(L, ctx, ud);
    sandbox_push_env(a->sb, -1);
    st = sandbox_load(a->sb, a->pol->src, a->pol->len, a->pol->name, -1);
    if (st == LUA_OK)
        st = sandbox_call(a->sb, 0, 0, a->budget);
    if (st == LUA_OK && ctx->rules_seen != a->pol->nrules) {
        lua_pushfstring(L, "%s: the policy declared %d rules when compiled and %d now (rules "
                           "must not depend on anything that changes)",
                        a->pol->name, (int)a->pol->nrules, (int)ctx->rules_seen);
        st = LUA_ERRRUN;
    }
    a->status = st;
    ctx->sealed = true;
    if (st != LUA_OK)
        return 1;            /* the message */
    lua_getiuservalue(L, ud, 1);
    return 1;
}

int policy_load_rules(sandbox *sb, const tsl_policy *pol, int64_t budget)
{
    struct rules_args a = {sb, pol, budget, LUA_OK};
    int st;
    lua_pushcfunction(sb->L, rules_p);
    lua_pushlightuserdata(sb->L, &a);
    st = lua_pcall(sb->L, 1, 1, 0);
    if (st != LUA_OK)
        return st;
    return a.status;
}
