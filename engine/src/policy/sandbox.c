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
#define _GNU_SOURCE /* memmem */
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
