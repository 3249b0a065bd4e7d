/*
 * sandbox_libs.c - the libraries a policy sees, built once per state inside
 * sandbox_new's protected call: the allow-list, read-only (frozen) library
 * tables, safe setmetatable and xpcall, bounded C functions charged to the
 * budget, and tostring / string.format without addresses.
 *
 * Used by: sandbox.c (sandbox_setup_p).  Needs: sandbox.h (sandbox_charge,
 * sandbox_error, sandbox_msgh).  Uses only the public Lua 5.4 API.
 */
#define _GNU_SOURCE /* memmem */
#include "sandbox.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------
 * Frozen tables: an empty proxy whose metatable reads through to the real
 * table, refuses writes, hides itself and iterates the real table.
 * ---------------------------------------------------------------------- */

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

/* ------------------------------------------------------------------------
 * Bounded C library functions.  The count hook cannot reach inside a C
 * function, so each one whose work grows with its input either caps that
 * input (patterns, sort, ranges) or does its work in time linear in bytes
 * that the memory ceiling already bounds, and charges that work to the
 * budget and clock (sandbox_charge) before doing it.  A wrapper calls the
 * original C function directly (same frame, same arguments), so argument
 * errors still name the function the policy called.
 * ---------------------------------------------------------------------- */

static lua_CFunction original(lua_State *L)
{
    return lua_tocfunction(L, lua_upvalueindex(1));
}

/* Bytes of every string argument, as instructions. */
static int64_t string_args_cost(lua_State *L)
{
    int64_t bytes = 0;
    for (int i = 1, n = lua_gettop(L); i <= n; i++)
        if (lua_type(L, i) == LUA_TSTRING)
            bytes += (int64_t)lua_rawlen(L, i);
    return 1 + bytes / SANDBOX_BYTES_PER_STEP;
}

/* The rest of string and utf8: linear in the bytes they read. */
static int charged_by_bytes(lua_State *L)
{
    sandbox_charge(L, string_args_cost(L));
    return original(L)(L);
}

/* table.insert, table.remove: they shift up to #t items. */
static int charged_by_length(lua_State *L)
{
    int64_t n = lua_type(L, 1) == LUA_TTABLE ? (int64_t)lua_rawlen(L, 1) : 0;
    sandbox_charge(L, 1 + n / 4);
    return original(L)(L);
}

/* Items i..j of a range argument pair, refused past SANDBOX_ITEMS_MAX. */
static void check_range(lua_State *L, lua_Integer i, lua_Integer j, const char *fname)
{
    if (i > j)
        return;
    /* j - i may overflow: compare without subtracting large values */
    if ((i < 0 && j > LUA_MAXINTEGER + i) || j - i >= SANDBOX_ITEMS_MAX)
        sandbox_error(L, "%s over more than %d items is too costly for the policy sandbox "
                         "(see docs/policy-language.md)",
                      fname, (int)SANDBOX_ITEMS_MAX);
    sandbox_charge(L, 1 + (int64_t)(j - i));
}

/* table.concat(t, sep, i, j) */
static int bounded_concat(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_Integer i = luaL_optinteger(L, 3, 1);
    lua_Integer j = lua_isnoneornil(L, 4) ? (lua_Integer)luaL_len(L, 1) : luaL_checkinteger(L, 4);
    check_range(L, i, j, "table.concat");
    return original(L)(L);
}

/* table.unpack(t, i, j) */
static int bounded_unpack(lua_State *L)
{
    lua_Integer i = luaL_optinteger(L, 2, 1);
    lua_Integer j = lua_isnoneornil(L, 3) ? (lua_Integer)luaL_len(L, 1) : luaL_checkinteger(L, 3);
    check_range(L, i, j, "table.unpack");
    return original(L)(L);
}

/* table.move(a1, f, e, t, a2) */
static int bounded_move(lua_State *L)
{
    lua_Integer f = luaL_checkinteger(L, 2);
    lua_Integer e = luaL_checkinteger(L, 3);
    check_range(L, f, e, "table.move");
    return original(L)(L);
}

/* table.sort: a Lua comparator runs under the hook; the built-in order
 * (or a C function as the comparator) does not, so its size is capped. */
static int bounded_sort(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_Integer n = luaL_len(L, 1);
    bool lua_cmp = lua_type(L, 2) == LUA_TFUNCTION && !lua_iscfunction(L, 2);
    if (!lua_cmp && n > SANDBOX_SORT_MAX)
        return sandbox_error(L, "table.sort of %I items without a Lua comparator is too costly "
                                "for the policy sandbox (at most %d; see docs/policy-language.md)",
                             n, SANDBOX_SORT_MAX);
    if (n > 1) {
        int64_t lg = 1;
        while (((lua_Integer)1 << lg) < n && lg < 62)
            lg++;
        sandbox_charge(L, (int64_t)n * lg / 4);
    }
    return original(L)(L);
}

/* string.rep, built by doubling copies in time linear in its result,
 * capped at SANDBOX_STRING_MAX (Lua's own loops once per repetition, even
 * for an empty string: string.rep("", math.maxinteger) never returns). */
static int bounded_rep(lua_State *L)
{
    size_t ls, lsep;
    const char *str = luaL_checklstring(L, 1, &ls);
    lua_Integer n = luaL_checkinteger(L, 2);
    const char *sep = luaL_optlstring(L, 3, "", &lsep);
    luaL_Buffer b;

    if (n <= 0 || (ls == 0 && lsep == 0)) {
        lua_pushliteral(L, "");
        return 1;
    }
    size_t unit = ls + lsep; /* no overflow: both are strings in memory */
    if ((lua_Unsigned)n > SANDBOX_STRING_MAX / unit + 1 ||
        (size_t)n * unit - lsep > SANDBOX_STRING_MAX)
        return sandbox_error(L, "string.rep: a result over %d bytes is too large for the policy "
                                "sandbox",
                             (int)SANDBOX_STRING_MAX);
    size_t total = (size_t)n * unit - lsep;
    sandbox_charge(L, 1 + (int64_t)(total / SANDBOX_BYTES_PER_STEP));
    char *out = luaL_buffinitsize(L, &b, total);
    /* str, then (sep str) once, then copies of that unit, doubling */
    memcpy(out, str, ls);
    size_t have = ls;
    if (n > 1) {
        memcpy(out + have, sep, lsep);
        memcpy(out + have + lsep, str, ls);
        have += unit;
    }
    while (have < total) {
        size_t more = have - ls < total - have ? have - ls : total - have;
        memcpy(out + have, out + ls, more);
        have += more;
    }
    luaL_pushresultsize(&b, total);
    return 1;
}

/* Pattern items whose matching can backtrack: repetitions (* + - ?)
 * outside sets and escapes, balances (%b) and back-references (%1-%9). */
static int pattern_repeats(const char *p, size_t len)
{
    int n = 0;
    for (size_t i = 0; i < len; i++) {
        char c = p[i];
        if (c == '%') {
            i++;
            if (i < len && (p[i] == 'b' || (p[i] >= '1' && p[i] <= '9')))
                n++;
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

static bool has_specials(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] && strchr("^$*+?.([%-", p[i])) /* a NUL is literal, as in Lua */
            return true;
    return false;
}

/* string.find(s, p, init, plain) without pattern items: memmem, linear
 * (Lua's own search is quadratic: a 1 MB needle in 2 MB took 27 s). */
static int plain_find(lua_State *L, const char *s, size_t ls, const char *p, size_t lp)
{
    lua_Integer init = luaL_optinteger(L, 3, 1);
    size_t start;
    if (init > 0)
        start = (size_t)init - 1;
    else if (init == 0 || (size_t)-init > ls)
        start = 0;
    else
        start = ls - (size_t)-init;
    if (start > ls) {
        luaL_pushfail(L);
        return 1;
    }
    const char *hit = memmem(s + start, ls - start, p, lp);
    if (!hit) {
        luaL_pushfail(L);
        return 1;
    }
    lua_pushinteger(L, (lua_Integer)(hit - s) + 1);
    lua_pushinteger(L, (lua_Integer)(hit - s) + (lua_Integer)lp);
    return 2;
}

/* find, match, gmatch, gsub: Lua's matcher backtracks in C, so a pattern
 * that can backtrack is only run on short subjects (subject_len^(items+1)
 * under 2^26), and any other on subject_len * pattern_len under 2^26. */
static int bounded_pattern(lua_State *L)
{
    size_t slen, plen;
    const char *subj = luaL_checklstring(L, 1, &slen);
    const char *pat = luaL_checklstring(L, 2, &plen);
    bool is_find = lua_tointeger(L, lua_upvalueindex(2)) == 1;
    bool plain = is_find && (lua_toboolean(L, 4) || !has_specials(pat, plen));

    sandbox_charge(L, 1 + (int64_t)((slen + plen) / SANDBOX_BYTES_PER_STEP));
    if (plain)
        return plain_find(L, subj, slen, pat, plen);
    int reps = pattern_repeats(pat, plen);
    double cost = (double)(slen ? slen : 1);
    if (reps > 0) {
        for (int i = 0; i < reps; i++)
            cost *= (double)(slen ? slen : 1);
        if (reps > SANDBOX_PATTERN_REPEAT_MAX || slen > SANDBOX_PATTERN_SUBJECT_MAX ||
            cost > SANDBOX_PATTERN_COST_MAX)
            return sandbox_error(L,
                                 "pattern too costly for the policy sandbox (%d repetition "
                                 "items on a %d-byte subject; see docs/policy-language.md)",
                                 reps, (int)slen);
    } else if (cost * (double)(plen ? plen : 1) > SANDBOX_PATTERN_COST_MAX) {
        return sandbox_error(L,
                             "pattern too costly for the policy sandbox (a %d-byte pattern on "
                             "a %d-byte subject; see docs/policy-language.md)",
                             (int)plen, (int)slen);
    }
    return original(L)(L);
}

/* ------------------------------------------------------------------------
 * No addresses: tostring and string.format("%s") print a table, function
 * or userdata without a __tostring as its __name or type; "%p" is refused.
 * ---------------------------------------------------------------------- */

/* Pushes the text of the value at idx. */
static void push_safe_text(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    switch (lua_type(L, idx)) {
    case LUA_TNIL: case LUA_TBOOLEAN: case LUA_TNUMBER: case LUA_TSTRING:
        luaL_tolstring(L, idx, NULL);
        return;
    default:
        break;
    }
    if (luaL_getmetafield(L, idx, "__tostring") != LUA_TNIL) {
        lua_pop(L, 1);
        luaL_tolstring(L, idx, NULL); /* calls it, checks it returned a string */
        return;
    }
    int t = luaL_getmetafield(L, idx, "__name");
    if (t == LUA_TSTRING)
        return;
    if (t != LUA_TNIL)
        lua_pop(L, 1);
    lua_pushstring(L, luaL_typename(L, idx));
}

static int safe_tostring(lua_State *L)
{
    luaL_checkany(L, 1);
    push_safe_text(L, 1);
    return 1;
}

static int safe_format(lua_State *L)
{
    size_t len;
    const char *f = luaL_checklstring(L, 1, &len);
    int arg = 1;

    sandbox_charge(L, string_args_cost(L));
    for (size_t i = 0; i < len; i++) {
        if (f[i] != '%')
            continue;
        if (++i < len && f[i] == '%')
            continue;
        while (i < len && strchr("-+ #0123456789.", f[i]))
            i++;
        if (i >= len)
            break;
        arg++;
        if (f[i] == 'p')
            return sandbox_error(L, "bad argument #%d to 'format' (%%p is not available to "
                                    "policies)",
                                 arg);
        if (f[i] == 's' && arg <= lua_gettop(L)) {
            int t = lua_type(L, arg);
            if (t != LUA_TSTRING && t != LUA_TNUMBER) {
                push_safe_text(L, arg);
                lua_replace(L, arg);
            }
        }
    }
    return original(L)(L);
}

/* Replaces field `name` of the table at idx by `fn` with the old value as
 * its upvalue 1. */
static void wrap_fn(lua_State *L, int idx, const char *name, lua_CFunction fn)
{
    idx = lua_absindex(L, idx);
    lua_getfield(L, idx, name);
    lua_pushcclosure(L, fn, 1);
    lua_setfield(L, idx, name);
}

static void wrap_pattern_fn(lua_State *L, int strtab, const char *name, int is_find)
{
    lua_getfield(L, strtab, name);
    lua_pushinteger(L, is_find);
    lua_pushcclosure(L, bounded_pattern, 2);
    lua_setfield(L, strtab, name);
}

/* Wraps every C function of the table at idx with charged_by_bytes, but
 * the ones named in `skip` (wrapped already). */
static void wrap_rest_by_bytes(lua_State *L, int idx, const char *const *skip)
{
    idx = lua_absindex(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        bool skipped = false;
        if (lua_type(L, -2) == LUA_TSTRING)
            for (const char *const *k = skip; *k; k++)
                if (strcmp(*k, lua_tostring(L, -2)) == 0)
                    skipped = true;
        if (!skipped && lua_iscfunction(L, -1)) {
            lua_pushcclosure(L, charged_by_bytes, 1);
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_rawset(L, idx); /* assigning an existing field: next stays valid */
        } else {
            lua_pop(L, 1);
        }
    }
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

int sandbox_setup_p(lua_State *L)
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
    lua_pushcfunction(L, safe_tostring);
    lua_setfield(L, base, "tostring");

    /* string: no dump, bounded patterns; the string metatable hides itself
     * (its __index is the real string table). */
    lua_getfield(L, g, LUA_STRLIBNAME);
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    wrap_pattern_fn(L, lua_gettop(L), "find", 1);
    wrap_pattern_fn(L, lua_gettop(L), "match", 0);
    wrap_pattern_fn(L, lua_gettop(L), "gmatch", 0);
    wrap_pattern_fn(L, lua_gettop(L), "gsub", 0);
    lua_pushcfunction(L, bounded_rep);
    lua_setfield(L, -2, "rep");
    wrap_fn(L, -1, "format", safe_format);
    {
        static const char *const done[] = {"find", "match", "gmatch", "gsub", "rep", "format",
                                           NULL};
        wrap_rest_by_bytes(L, -1, done);
    }
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
    wrap_fn(L, -1, "sort", bounded_sort);
    wrap_fn(L, -1, "concat", bounded_concat);
    wrap_fn(L, -1, "unpack", bounded_unpack);
    wrap_fn(L, -1, "move", bounded_move);
    wrap_fn(L, -1, "insert", charged_by_length);
    wrap_fn(L, -1, "remove", charged_by_length);
    push_frozen(L, -1, LUA_TABLIBNAME);
    lua_setfield(L, base, LUA_TABLIBNAME);
    lua_pop(L, 1);

    lua_getfield(L, g, LUA_UTF8LIBNAME);
    {
        static const char *const none[] = {NULL};
        wrap_rest_by_bytes(L, -1, none);
    }
    push_frozen(L, -1, LUA_UTF8LIBNAME);
    lua_setfield(L, base, LUA_UTF8LIBNAME);
    lua_pop(L, 1);

    lua_pushvalue(L, base);
    sb->base_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

