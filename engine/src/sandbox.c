/*
 * sandbox.c - Lua states for admin-written policy code (see sandbox.h for
 * the guarantees).
 *
 * Shape: the counting allocator; the budget hook; the library allow-list
 * and the frozen base, built inside one protected call; chunk environments;
 * loading and calling with a traceback handler.
 *
 * Uses only the public Lua 5.4 API (lua.h, lauxlib.h, lualib.h).
 */
#include "sandbox.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
 * Budget: a count hook.  While the budget lasts it runs every
 * SANDBOX_STEP instructions; once exhausted it re-arms itself for every
 * instruction and raises an error each time, so a script that catches the
 * first error with pcall is stopped at its very next instruction.
 * ---------------------------------------------------------------------- */

static void budget_hook(lua_State *L, lua_Debug *ar)
{
    sandbox *sb = sandbox_of(L);

    if (!sb->killing) {
        if (sb->budget <= 0)
            return;
        sb->left -= SANDBOX_STEP;
        if (sb->left > 0)
            return;
        sb->killing = true;
    }
    /* Re-arm on this thread for every instruction. */
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
    if (lua_getinfo(L, "Sl", ar) && ar->currentline > 0)
        lua_pushfstring(L, "%s:%d: instruction budget of %I exceeded", ar->short_src,
                        ar->currentline, (lua_Integer)sb->budget);
    else
        lua_pushfstring(L, "instruction budget of %I exceeded", (lua_Integer)sb->budget);
    lua_error(L);
}

void sandbox_budget_begin(sandbox *sb, int64_t budget)
{
    sb->budget = budget;
    sb->left = budget;
    sb->killing = false;
    if (budget > 0)
        lua_sethook(sb->L, budget_hook, LUA_MASKCOUNT, SANDBOX_STEP);
    else
        lua_sethook(sb->L, NULL, 0, 0);
}

void sandbox_budget_end(sandbox *sb)
{
    lua_sethook(sb->L, NULL, 0, 0);
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

/* ------------------------------------------------------------------------
 * Frozen tables: an empty proxy whose metatable reads through to the real
 * table, refuses writes, hides itself and iterates the real table.
 * ---------------------------------------------------------------------- */

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

static int frozen_newindex(lua_State *L)
{
    return sandbox_error(L, "attempt to modify read-only table '%s'",
                         lua_tostring(L, lua_upvalueindex(1)));
}

static int frozen_next(lua_State *L)
{
    /* (proxy, key) -> next (key, value) of the real table (upvalue 1) */
    lua_settop(L, 2);
    if (lua_next(L, lua_upvalueindex(1)))
        return 2;
    lua_pushnil(L);
    return 1;
}

static int frozen_pairs(lua_State *L)
{
    lua_pushvalue(L, lua_upvalueindex(1)); /* the iterator closure */
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    return 3;
}

static int frozen_len(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)lua_rawlen(L, lua_upvalueindex(1)));
    return 1;
}

/* Replaces the table at idx by a frozen proxy of it named `name`. */
static void push_frozen(lua_State *L, int idx, const char *name)
{
    idx = lua_absindex(L, idx);
    lua_newtable(L);                 /* proxy */
    lua_createtable(L, 0, 5);        /* its metatable */
    lua_pushvalue(L, idx);
    lua_setfield(L, -2, "__index");
    lua_pushstring(L, name);
    lua_pushcclosure(L, frozen_newindex, 1);
    lua_setfield(L, -2, "__newindex");
    lua_pushvalue(L, idx);
    lua_pushcclosure(L, frozen_next, 1);
    lua_pushcclosure(L, frozen_pairs, 1);
    lua_setfield(L, -2, "__pairs");
    lua_pushvalue(L, idx);
    lua_pushcclosure(L, frozen_len, 1);
    lua_setfield(L, -2, "__len");
    lua_pushliteral(L, "read-only");
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
}

/* ------------------------------------------------------------------------
 * Library wrappers
 * ---------------------------------------------------------------------- */

/* setmetatable without finalizers: __gc would run with hooks disabled. */
static int safe_setmetatable(lua_State *L)
{
    int t = lua_type(L, 2);
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_argexpected(L, t == LUA_TNIL || t == LUA_TTABLE, 2, "nil or table");
    if (t == LUA_TTABLE) {
        lua_pushliteral(L, "__gc");
        if (lua_rawget(L, 2) != LUA_TNIL)
            return sandbox_error(L, "__gc metamethods are not allowed in policies");
        lua_pop(L, 1);
    }
    if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL)
        return sandbox_error(L, "cannot change a protected metatable");
    lua_settop(L, 2);
    lua_setmetatable(L, 1);
    return 1;
}

/* xpcall whose handler runs after the stack unwinds, as an ordinary call.
 * Lua runs a real message handler with hooks disabled when the error came
 * from a hook, so a handler that loops would escape the budget. */
static int safe_xpcall(lua_State *L)
{
    int n = lua_gettop(L);
    int st;
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushboolean(L, 1);        /* first result if all goes well */
    lua_pushvalue(L, 1);
    for (int i = 3; i <= n; i++)
        lua_pushvalue(L, i);
    st = lua_pcall(L, n - 2, LUA_MULTRET, 0);
    if (st == LUA_OK)
        return lua_gettop(L) - n;
    lua_pushvalue(L, 2);
    lua_insert(L, -2);
    lua_call(L, 1, 1);            /* handler(err), under the hook like any call */
    lua_pushboolean(L, 0);
    lua_insert(L, -2);
    return 2;
}

/* Repetition items (* + - ?) outside sets and escapes. */
static int pattern_repeats(const char *p, size_t len)
{
    int n = 0;
    for (size_t i = 0; i < len; i++) {
        char c = p[i];
        if (c == '%') {
            i++;
        } else if (c == '[') {
            i++;
            if (i < len && p[i] == '^')
                i++;
            if (i < len && p[i] == ']')
                i++; /* a leading ] is literal */
            while (i < len && p[i] != ']') {
                if (p[i] == '%')
                    i++;
                i++;
            }
        } else if (c == '*' || c == '+' || c == '-' || c == '?') {
            n++;
        }
    }
    return n;
}

/* Lua's matcher backtracks in C, where the count hook cannot reach; bound
 * the work so that subject_len^(repeats+1) stays under 2^26. */
static int bounded_pattern(lua_State *L)
{
    size_t slen, plen;
    luaL_checklstring(L, 1, &slen);
    const char *pat = luaL_checklstring(L, 2, &plen);
    bool plain = lua_toboolean(L, 4) && lua_tointeger(L, lua_upvalueindex(2)) == 1;

    if (!plain) {
        int reps = pattern_repeats(pat, plen);
        if (reps > 0) {
            double cost = 1;
            for (int i = 0; i <= reps; i++)
                cost *= (double)(slen ? slen : 1);
            if (reps > SANDBOX_PATTERN_REPEAT_MAX || slen > SANDBOX_PATTERN_SUBJECT_MAX ||
                cost > (double)(1 << 26))
                return sandbox_error(L,
                                  "pattern too costly for the policy sandbox (%d repetition "
                                  "items on a %d-byte subject; see docs/policy-language.md)",
                                  reps, (int)slen);
        }
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
}

static void wrap_pattern_fn(lua_State *L, int strtab, const char *name, int is_find)
{
    lua_getfield(L, strtab, name);
    lua_pushinteger(L, is_find);
    lua_pushcclosure(L, bounded_pattern, 2);
    lua_setfield(L, strtab, name);
}

/* ------------------------------------------------------------------------
 * Setup, inside one protected call.
 * ---------------------------------------------------------------------- */

static const char *const base_allowed[] = {
    "assert", "error", "getmetatable", "ipairs", "next", "pairs", "pcall", "rawequal",
    "rawlen", "rawget", "select", "tonumber", "tostring", "type", "_VERSION",
    NULL,
};

/* Names removed from the real global table too (defence in depth). */
static const char *const base_removed[] = {
    "load", "loadfile", "dofile", "collectgarbage", "print", "warn", "rawset", "require",
    NULL,
};

static int setup_p(lua_State *L)
{
    sandbox *sb = lua_touserdata(L, 1);
    int g, base;

    luaL_requiref(L, LUA_GNAME, luaopen_base, 1);
    lua_pop(L, 1);
    luaL_requiref(L, LUA_STRLIBNAME, luaopen_string, 1);
    lua_pop(L, 1);
    luaL_requiref(L, LUA_TABLIBNAME, luaopen_table, 1);
    lua_pop(L, 1);
    luaL_requiref(L, LUA_MATHLIBNAME, luaopen_math, 1);
    lua_pop(L, 1);
    luaL_requiref(L, LUA_UTF8LIBNAME, luaopen_utf8, 1);
    lua_pop(L, 1);

    lua_pushglobaltable(L);
    g = lua_gettop(L);
    for (const char *const *n = base_removed; *n; n++) {
        lua_pushnil(L);
        lua_setfield(L, g, *n);
    }

    lua_newtable(L);
    base = lua_gettop(L);
    for (const char *const *n = base_allowed; *n; n++) {
        lua_getfield(L, g, *n);
        lua_setfield(L, base, *n);
    }
    lua_getfield(L, g, "setmetatable");
    lua_pushcclosure(L, safe_setmetatable, 1);
    lua_setfield(L, base, "setmetatable");
    lua_pushcfunction(L, safe_xpcall);
    lua_setfield(L, base, "xpcall");

    /* string: no dump, bounded patterns; the string metatable hides itself
     * (its __index is the real string table). */
    lua_getfield(L, g, LUA_STRLIBNAME);
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    wrap_pattern_fn(L, lua_gettop(L), "find", 1);
    wrap_pattern_fn(L, lua_gettop(L), "match", 0);
    wrap_pattern_fn(L, lua_gettop(L), "gmatch", 0);
    wrap_pattern_fn(L, lua_gettop(L), "gsub", 0);
    push_frozen(L, -1, LUA_STRLIBNAME);
    lua_setfield(L, base, LUA_STRLIBNAME);
    lua_pop(L, 1);
    lua_pushliteral(L, "");
    if (lua_getmetatable(L, -1)) {
        lua_pushliteral(L, "read-only");
        lua_setfield(L, -2, "__metatable");
        lua_pop(L, 1);
    }
    lua_pop(L, 1);

    /* math: no random numbers (lists must be stable per client). */
    lua_getfield(L, g, LUA_MATHLIBNAME);
    lua_pushnil(L);
    lua_setfield(L, -2, "random");
    lua_pushnil(L);
    lua_setfield(L, -2, "randomseed");
    push_frozen(L, -1, LUA_MATHLIBNAME);
    lua_setfield(L, base, LUA_MATHLIBNAME);
    lua_pop(L, 1);

    lua_getfield(L, g, LUA_TABLIBNAME);
    push_frozen(L, -1, LUA_TABLIBNAME);
    lua_setfield(L, base, LUA_TABLIBNAME);
    lua_pop(L, 1);

    lua_getfield(L, g, LUA_UTF8LIBNAME);
    push_frozen(L, -1, LUA_UTF8LIBNAME);
    lua_setfield(L, base, LUA_UTF8LIBNAME);
    lua_pop(L, 1);

    lua_pushvalue(L, base);
    sb->base_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

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
    sb->probe = probe;
    sb->base_ref = LUA_NOREF;
    sb->L = lua_newstate(sb_alloc, sb);
    if (!sb->L) {
        err = tsl_oom();
        goto done;
    }
    memcpy(lua_getextraspace(sb->L), &sb, sizeof sb);
    lua_pushcfunction(sb->L, setup_p);
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
