/*
 * sandbox.c - Lua states for admin-written policy code (see sandbox.h for
 * the guarantees).
 *
 * Shape: the counting allocator; the budget hook; messages; creating a
 * state (its libraries and frozen base are sandbox_libs.c's); chunk
 * environments; loading and calling with a traceback handler.
 *
 * Used by: policy_compile.c, policy_eval.c, policy_rules.c (through
 * sandbox.h).  Needs: sandbox_libs.c (sandbox_setup_p).
 *
 * Uses only the public Lua 5.4 API (lua.h, lauxlib.h, lualib.h).
 */
#include "sandbox.h"

#include <stdatomic.h>

#include <lauxlib.h>
#include <lualib.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------------
 * Allocation probe (failure injection for tests)
 * ---------------------------------------------------------------------- */

bool alloc_probe_fail(tsl_alloc_probe *p)
{
    if (!p || p->fail_at == 0)
        return false;
    p->count++;
    if (p->count == p->fail_at || (p->persist && p->count > p->fail_at)) {
        p->fired = true;
        return true;
    }
    return false;
}

void *probe_malloc(tsl_alloc_probe *p, size_t n)
{
    if (alloc_probe_fail(p))
        return NULL;
    return malloc(n ? n : 1);
}

void *probe_realloc(tsl_alloc_probe *p, void *ptr, size_t n)
{
    if (alloc_probe_fail(p))
        return NULL;
    return realloc(ptr, n ? n : 1);
}

void *probe_calloc(tsl_alloc_probe *p, size_t n, size_t size)
{
    if (alloc_probe_fail(p))
        return NULL;
    return calloc(n ? n : 1, size ? size : 1);
}

static bool must_stop(sandbox *sb);
static void budget_hook(lua_State *L, lua_Debug *ar);

/* Growth this large means an instruction or a library call doing a lot of
 * work at once (a `..` of long strings): read the clock now, and when the
 * call must stop, fire the hook at the very next instruction instead of up
 * to SANDBOX_STEP of them later.  lua_sethook may be called at any point
 * (Lua calls it from signal handlers). */
#define SANDBOX_BIG_ALLOC ((size_t)64 << 10)

static void big_alloc_check(sandbox *sb)
{
    if (sb->killing || (!sb->deadline_ns && !sb->cancel) || !sb->L)
        return;
    if (must_stop(sb))
        lua_sethook(sb->L, budget_hook, LUA_MASKCOUNT, 1);
}

/* ------------------------------------------------------------------------
 * The allocator: counts bytes, refuses growth past the ceiling.  Lua
 * assumes shrinking never fails, so only growth is ever refused.
 * ---------------------------------------------------------------------- */

static void *sb_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    sandbox *sb = ud;
    size_t old = ptr ? osize : 0; /* with ptr NULL, osize is a type tag */

    if (nsize == 0) {
        free(ptr);
        sb->used -= old;
        return NULL;
    }
    if (nsize > old) {
        if (sb->used - old + nsize > sb->limit) {
            sb->refused_limit = true;
            return NULL;
        }
        if (alloc_probe_fail(sb->probe)) {
            sb->refused_other = true;
            return NULL;
        }
    }
    void *np = realloc(ptr, nsize);
    if (!np) {
        if (nsize <= old)
            return ptr; /* a failed shrink leaves a block that is big enough */
        sb->refused_other = true;
        return NULL;
    }
    sb->used = sb->used - old + nsize;
    if (sb->used > sb->peak)
        sb->peak = sb->used;
    if (nsize - (nsize > old ? old : nsize) >= SANDBOX_BIG_ALLOC)
        big_alloc_check(sb);
    return np;
}

sandbox *sandbox_of(lua_State *L)
{
    sandbox *sb;
    memcpy(&sb, lua_getextraspace(L), sizeof sb);
    return sb;
}

void sandbox_reset_flags(sandbox *sb)
{
    sb->refused_limit = false;
    sb->refused_other = false;
}

/* ------------------------------------------------------------------------
 * Budget and time: a count hook.  While the call may go on it runs every
 * SANDBOX_STEP instructions, charges them and reads the clock; once the
 * budget, the deadline or the cancel flag says stop, it re-arms itself for
 * every instruction and raises an error each time, so a script that
 * catches the first error with pcall is stopped at its very next
 * instruction.  C library functions charge their work through
 * sandbox_charge, which reaches the same verdict between two hooks.
 * ---------------------------------------------------------------------- */

static _Thread_local const _Atomic bool *ambient_cancel;
static _Thread_local uint64_t ambient_deadline;
static _Thread_local const char *ambient_what, *ambient_why;

void sandbox_ambient_set(const _Atomic bool *cancel, const char *why, uint64_t deadline_ns,
                         const char *what)
{
    ambient_cancel = cancel;
    ambient_why = why;
    ambient_deadline = deadline_ns;
    ambient_what = what;
}

uint64_t sandbox_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Decides whether the current call must stop (sets sb->stop). */
static bool must_stop(sandbox *sb)
{
    if (sb->stop != SANDBOX_RUNNING)
        return true;
    if (sb->budget > 0 && sb->left <= 0)
        sb->stop = SANDBOX_OUT_OF_BUDGET;
    else if (sb->cancel && atomic_load_explicit(sb->cancel, memory_order_relaxed))
        sb->stop = SANDBOX_CANCELLED;
    else if (sb->deadline_ns && sandbox_now_ns() >= sb->deadline_ns)
        sb->stop = SANDBOX_OUT_OF_TIME;
    return sb->stop != SANDBOX_RUNNING;
}

/* Marks the call as being killed and raises the error, positioned at the
 * nearest Lua function from `level` up. */
static int raise_stop(lua_State *L, sandbox *sb, int level)
{
    lua_Debug ar;
    bool found = false;

    sb->killing = true;
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
    for (; lua_getstack(L, level, &ar); level++) {
        if (lua_getinfo(L, "Sl", &ar) && ar.currentline > 0) {
            lua_pushfstring(L, "%s:%d: ", ar.short_src, ar.currentline);
            found = true;
            break;
        }
    }
    if (!found)
        lua_pushliteral(L, "");
    switch (sb->stop) {
    case SANDBOX_OUT_OF_BUDGET:
        lua_pushfstring(L, "instruction budget of %I exceeded", (lua_Integer)sb->budget);
        break;
    case SANDBOX_CANCELLED:
        lua_pushfstring(L, "stopped: %s", ambient_why ? ambient_why : "cancelled");
        break;
    default:
        if (sb->time_ms > 0 && sb->deadline_ns != ambient_deadline)
            lua_pushfstring(L, "time limit of %I ms exceeded", (lua_Integer)sb->time_ms);
        else
            lua_pushfstring(L, "time limit of %s exceeded",
                            ambient_what ? ambient_what : "the call");
        break;
    }
    lua_concat(L, 2);
    return lua_error(L);
}

static void budget_hook(lua_State *L, lua_Debug *ar)
{
    sandbox *sb = sandbox_of(L);
    (void)ar;

    if (!sb->killing) {
        sb->left -= SANDBOX_STEP;
        sb->charged = 0;
        if (!must_stop(sb))
            return;
    }
    raise_stop(L, sb, 0);
}

void sandbox_charge(lua_State *L, int64_t cost)
{
    sandbox *sb = sandbox_of(L);
    if (sb->killing) {
        raise_stop(L, sb, 1);
        return;
    }
    sb->left -= cost;
    sb->charged += cost;
    if (sb->charged < SANDBOX_STEP && !(sb->budget > 0 && sb->left <= 0))
        return;
    sb->charged = 0;
    if (must_stop(sb))
        raise_stop(L, sb, 1);
}

void sandbox_budget_begin(sandbox *sb, int64_t budget)
{
    uint64_t now = 0;
    sb->budget = budget;
    sb->left = budget;
    sb->killing = false;
    sb->stop = SANDBOX_RUNNING;
    sb->charged = 0;
    sb->cancel = ambient_cancel;
    sb->deadline_ns = 0;
    if (sb->time_ms > 0) {
        now = sandbox_now_ns();
        sb->deadline_ns = now + (uint64_t)sb->time_ms * 1000000u;
    }
    if (ambient_deadline && (!sb->deadline_ns || ambient_deadline < sb->deadline_ns))
        sb->deadline_ns = ambient_deadline;
    if (budget > 0 || sb->deadline_ns || sb->cancel)
        lua_sethook(sb->L, budget_hook, LUA_MASKCOUNT, SANDBOX_STEP);
    else
        lua_sethook(sb->L, NULL, 0, 0);
}

void sandbox_budget_end(sandbox *sb)
{
    lua_sethook(sb->L, NULL, 0, 0);
    sb->killing = false;
    sb->deadline_ns = 0;
    sb->cancel = NULL;
}

/* ------------------------------------------------------------------------
 * Messages
 * ---------------------------------------------------------------------- */

int sandbox_msgh(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (!msg)
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    luaL_traceback(L, L, msg, 1);
    return 1;
}

void sandbox_errmsg(sandbox *sb, int status, char *dst, size_t dstlen, bool full)
{
    const char *msg = NULL;
    size_t n;

    if (dstlen == 0)
        return;
    if (status == LUA_ERRMEM) {
        if (sb->refused_limit)
            snprintf(dst, dstlen, "memory limit of %zu bytes exceeded", sb->limit);
        else
            snprintf(dst, dstlen, "out of memory");
        return;
    }
    if (lua_gettop(sb->L) > 0)
        msg = lua_tostring(sb->L, -1);
    if (!msg)
        msg = status == LUA_ERRERR ? "error in error handling" : "unknown error";
    n = full ? strlen(msg) : strcspn(msg, "\n");
    if (n >= dstlen)
        n = dstlen - 1;
    memcpy(dst, msg, n);
    dst[n] = '\0';
}

/* luaL_error, but positioned at the nearest Lua function: when a C
 * library function (table.insert, ipairs) triggers a metamethod, level 1
 * is that C function and luaL_error would give no file:line. */
int sandbox_error(lua_State *L, const char *fmt, ...)
{
    lua_Debug ar;
    va_list ap;
    bool found = false;

    for (int level = 1; lua_getstack(L, level, &ar); level++) {
        if (lua_getinfo(L, "Sl", &ar) && ar.currentline > 0) {
            lua_pushfstring(L, "%s:%d: ", ar.short_src, ar.currentline);
            found = true;
            break;
        }
    }
    if (!found)
        lua_pushliteral(L, "");
    va_start(ap, fmt);
    lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    lua_concat(L, 2);
    return lua_error(L);
}

/* ------------------------------------------------------------------------
 * Creating and freeing a state
 * ---------------------------------------------------------------------- */

int sandbox_new(sandbox **out, size_t limit, tsl_alloc_probe *probe)
{
    sandbox *sb = NULL;
    int err = 0;

    *out = NULL;
    sb = probe_calloc(probe, 1, sizeof *sb);
    if (!sb) {
        err = tsl_oom();
        goto done;
    }
    sb->limit = limit ? limit : SANDBOX_MEMORY_DEFAULT;
    sb->time_ms = SANDBOX_LOAD_TIME_MS_DEFAULT;
    sb->probe = probe;
    sb->base_ref = LUA_NOREF;
    sb->L = lua_newstate(sb_alloc, sb);
    if (!sb->L) {
        err = tsl_oom();
        goto done;
    }
    memcpy(lua_getextraspace(sb->L), &sb, sizeof sb);
    lua_pushcfunction(sb->L, sandbox_setup_p);
    lua_pushlightuserdata(sb->L, sb);
    if (lua_pcall(sb->L, 1, 0, 0) != LUA_OK) {
        err = tsl_seterr(TSL_ENOMEM, "policy sandbox: out of memory while creating the state");
        goto done;
    }
    *out = sb;
    sb = NULL;
done:
    sandbox_free(sb);
    return err;
}

void sandbox_free(sandbox *sb)
{
    if (!sb)
        return;
    if (sb->L)
        lua_close(sb->L);
    free(sb);
}

/* ------------------------------------------------------------------------
 * Environments
 * ---------------------------------------------------------------------- */

static int env_undeclared(lua_State *L)
{
    const char *k = lua_tostring(L, 2);
    return sandbox_error(L, "undeclared global '%s' (policies can only read their own locals, "
                         "the policy functions and the standard library)",
                      k ? k : "?");
}

static int env_assign(lua_State *L)
{
    const char *k = lua_tostring(L, 2);
    return sandbox_error(L, "assignment to undeclared global '%s' (use local)", k ? k : "?");
}

void sandbox_push_env(sandbox *sb, int extras_idx)
{
    lua_State *L = sb->L;
    if (extras_idx)
        extras_idx = lua_absindex(L, extras_idx);

    lua_newtable(L);                     /* env (stays empty) */
    lua_createtable(L, 0, 3);            /* env's metatable */
    lua_createtable(L, 0, 32);           /* lookups: base + extras */
    lua_rawgeti(L, LUA_REGISTRYINDEX, sb->base_ref);
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, -5);
    }
    lua_pop(L, 1);
    if (extras_idx) {
        lua_pushnil(L);
        while (lua_next(L, extras_idx)) {
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_rawset(L, -4);
        }
    }
    lua_createtable(L, 0, 1);            /* lookups' metatable: miss -> error */
    lua_pushcfunction(L, env_undeclared);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, -2);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, env_assign);
    lua_setfield(L, -2, "__newindex");
    lua_pushliteral(L, "read-only");
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
}

/* ------------------------------------------------------------------------
 * Loading and calling
 * ---------------------------------------------------------------------- */

struct load_args {
    const char *src;
    size_t len;
    const char *name;
};

/* (args, env) -> the chunk with _ENV = env */
static int load_p(lua_State *L)
{
    struct load_args *a = lua_touserdata(L, 1);
    const char *chunkname = lua_pushfstring(L, "@%s", a->name);
    if (luaL_loadbufferx(L, a->src, a->len, chunkname, "t") != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        size_t n = strlen(a->name);
        if (msg && (strncmp(msg, a->name, n) != 0 || msg[n] != ':'))
            lua_pushfstring(L, "%s: %s", a->name, msg); /* "attempt to load a binary chunk" */
        return lua_error(L);
    }
    lua_pushvalue(L, 2);
    if (!lua_setupvalue(L, -2, 1))
        lua_pop(L, 1);
    return 1;
}

int sandbox_load(sandbox *sb, const char *src, size_t len, const char *name, int env_idx)
{
    struct load_args a = {src, len, name};
    env_idx = lua_absindex(sb->L, env_idx);
    lua_pushcfunction(sb->L, load_p);
    lua_pushlightuserdata(sb->L, &a);
    lua_pushvalue(sb->L, env_idx);
    return lua_pcall(sb->L, 2, 1, 0);
}

int sandbox_call(sandbox *sb, int nargs, int nresults, int64_t budget)
{
    lua_State *L = sb->L;
    int base = lua_gettop(L) - nargs; /* the function's slot */
    int status;

    lua_pushcfunction(L, sandbox_msgh);
    lua_insert(L, base);
    sandbox_budget_begin(sb, budget);
    status = lua_pcall(L, nargs, nresults, base);
    sandbox_budget_end(sb);
    lua_remove(L, base);
    return status;
}
