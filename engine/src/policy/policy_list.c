/*
 * policy_list.c - the list object a `rule` acts on: matching entries by
 * entry, name, glob, list or predicate, and the methods (remove, restrict,
 * truncate, block_fallback, set_strict, prefer, reorder, add, find, names,
 * length and iteration).  Methods never add an unavailable or denied
 * server, nor one outside the approved set once fallback is blocked, and
 * every changing method refuses to run inside a callback.
 *
 * Used by: policy_rules.c (policy_list_push_meta, while setting up a
 * worker's state).  Needs: policy_rules.h, policy.h, decide.h.
 */
#include "decide.h"
#include "policy.h"
#include "policy_rules.h"

#include <lauxlib.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>


/* ------------------------------------------------------------------------
 * Matching: an entry, a name or glob, a list of those, or a predicate.
 * ---------------------------------------------------------------------- */

static void check_matcher(lua_State *L, int idx, const char *fname)
{
    int t = lua_type(L, idx);
    if (t == LUA_TSTRING || t == LUA_TFUNCTION)
        return;
    if (t == LUA_TUSERDATA && luaL_testudata(L, idx, ENTRY_MT))
        return;
    if (t == LUA_TTABLE) {
        lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
        for (lua_Integer i = 1; i <= n; i++) {
            if (lua_rawgeti(L, idx, i) != LUA_TSTRING)
                luaL_error(L, "bad argument #1 to '%s' (list of server names expected, item "
                              "%d is %s)",
                           fname, (int)i, luaL_typename(L, -1));
            lua_pop(L, 1);
        }
        return;
    }
    luaL_error(L, "bad argument #1 to '%s' (entry, server name, list of names or function "
                  "expected, got %s)",
               fname, luaL_typename(L, idx));
}

static bool matches(lua_State *L, int idx, pol_eval *ev, uint32_t server, const char *what)
{
    const char *name = ev->ctx->snap->servers[server].name;
    switch (lua_type(L, idx)) {
    case LUA_TSTRING:
        return policy_glob_match(lua_tostring(L, idx), name);
    case LUA_TUSERDATA:
        return rules_check_entry(L, idx, ev) == server;
    case LUA_TTABLE: {
        lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, idx, i);
            bool m = lua_type(L, -1) == LUA_TSTRING && policy_glob_match(lua_tostring(L, -1), name);
            lua_pop(L, 1);
            if (m)
                return true;
        }
        return false;
    }
    case LUA_TFUNCTION: {
        lua_pushvalue(L, idx);
        rules_push_entry(L, ev, server);
        rules_call_callback(L, ev, 1, what);
        bool m = lua_toboolean(L, -1);
        lua_pop(L, 1);
        return m;
    }
    default:
        return false;
    }
}

/* Keeps the entries whose flag equals `keep`; flags computed first, so a
 * predicate that errors leaves the list untouched. */
static int filter(lua_State *L, bool keep_matching, const char *fname, const char *what)
{
    pol_eval *ev = rules_changing_eval(L, fname);
    policy_wstate *ws = ev->ws;
    uint32_t *flags;
    uint32_t n = ws->n, k = 0;

    check_matcher(L, 2, fname);
    if (!(flags = decide_scratch(ev->w, 2, n + 1)))
        return luaL_error(L, "out of memory");
    for (uint32_t i = 0; i < n; i++)
        flags[i] = matches(L, 2, ev, ws->list[i].server, what) == keep_matching;
    if (ws->n != n)
        return luaL_error(L, "the list changed during '%s'", fname);
    for (uint32_t i = 0; i < n; i++)
        if (flags[i])
            ws->list[k++] = ws->list[i];
    ws->n = k;
    lua_pushinteger(L, (lua_Integer)(n - k));
    return 1;
}

/* ------------------------------------------------------------------------
 * List methods
 * ---------------------------------------------------------------------- */

static int l_remove(lua_State *L)
{
    return filter(L, false, "remove", "remove's predicate");
}

static int l_restrict(lua_State *L)
{
    return filter(L, true, "restrict", "restrict's predicate");
}

static int l_truncate(lua_State *L)
{
    pol_eval *ev = rules_changing_eval(L, "truncate");
    lua_Integer n = luaL_checkinteger(L, 2);
    luaL_argcheck(L, n >= 0, 1, "must be 0 or more");
    if ((uint64_t)n < ev->ws->n)
        ev->ws->n = (uint32_t)n;
    return 0;
}

static int l_block_fallback(lua_State *L)
{
    pol_eval *ev = rules_changing_eval(L, "block_fallback");
    policy_wstate *ws = ev->ws;
    uint32_t k = 0;
    for (uint32_t i = 0; i < ws->n; i++)
        if (ws->list[i].tier == 0)
            ws->list[k++] = ws->list[i];
    ws->n = k;
    if (!ev->fb_blocked || !ev->blocked_reason)
        ev->blocked_reason = ev->pb->r_rule_blocked[ev->rule];
    ev->fb_blocked = true;
    return 0;
}

static int l_set_strict(lua_State *L)
{
    pol_eval *ev = rules_changing_eval(L, "set_strict");
    luaL_checkany(L, 2);
    ev->strict = lua_toboolean(L, 2);
    return 0;
}

/* Marks entries whose place changed with the rule's reason. */
static void mark_moved(pol_eval *ev, const uint32_t *before)
{
    policy_wstate *ws = ev->ws;
    for (uint32_t i = 0; i < ws->n; i++)
        if (ws->list[i].server != before[i])
            ws->list[i].reason = ev->pb->r_rule_moved[ev->rule];
}

/* Stable: within each tier, entries matching argument 2 first, then 3, ... */
static int l_prefer(lua_State *L)
{
    pol_eval *ev = rules_changing_eval(L, "prefer");
    policy_wstate *ws = ev->ws;
    int nargs = lua_gettop(L);
    uint32_t n = ws->n;
    uint32_t *rank, *before;

    luaL_argcheck(L, nargs >= 2, 1, "server name or glob expected");
    for (int a = 2; a <= nargs; a++)
        check_matcher(L, a, "prefer");
    if (!(rank = decide_scratch(ev->w, 2, 2 * n + 1)))
        return luaL_error(L, "out of memory");
    before = rank + n;
    for (uint32_t i = 0; i < n; i++) {
        rank[i] = (uint32_t)nargs; /* unmatched: after every pattern */
        before[i] = ws->list[i].server;
        for (int a = 2; a <= nargs; a++)
            if (matches(L, a, ev, ws->list[i].server, "prefer's predicate")) {
                rank[i] = (uint32_t)a;
                break;
            }
    }
    if (ws->n != n)
        return luaL_error(L, "the list changed during 'prefer'");
    /* stable insertion sort by (tier, rank): lists are short */
    for (uint32_t i = 1; i < n; i++) {
        pl_entry e = ws->list[i];
        uint32_t r = rank[i], j = i;
        while (j > 0 && (ws->list[j - 1].tier > e.tier ||
                         (ws->list[j - 1].tier == e.tier && rank[j - 1] > r))) {
            ws->list[j] = ws->list[j - 1];
            rank[j] = rank[j - 1];
            j--;
        }
        ws->list[j] = e;
        rank[j] = r;
    }
    mark_moved(ev, before);
    return 0;
}

/* Stable merge sort within tiers with a Lua "a before b" comparator. */
static bool lua_before(lua_State *L, pol_eval *ev, const pl_entry *a, const pl_entry *b)
{
    if (a->tier != b->tier)
        return a->tier < b->tier;
    lua_pushvalue(L, 2);
    rules_push_entry(L, ev, a->server);
    rules_push_entry(L, ev, b->server);
    rules_call_callback(L, ev, 2, "reorder's comparator");
    bool r = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return r;
}

static int l_reorder(lua_State *L)
{
    pol_eval *ev = rules_changing_eval(L, "reorder");
    policy_wstate *ws = ev->ws;
    uint32_t n = ws->n;

    if (lua_type(L, 2) == LUA_TTABLE || lua_type(L, 2) == LUA_TSTRING)
        return l_prefer(L);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    if (n < 2)
        return 0;
    /* work on copies: a comparator that errors leaves the list untouched */
    uint32_t *scratch = decide_scratch(ev->w, 3, (uint32_t)(3 * n * (sizeof(pl_entry) / 4 + 1)));
    if (!scratch)
        return luaL_error(L, "out of memory");
    pl_entry *a = (pl_entry *)(void *)scratch, *tmp = a + n;
    uint32_t *before = (uint32_t *)(void *)(tmp + n);
    memcpy(a, ws->list, sizeof *a * n);
    for (uint32_t i = 0; i < n; i++)
        before[i] = ws->list[i].server;
    for (uint32_t width = 1; width < n; width *= 2) {
        for (uint32_t lo = 0; lo < n; lo += 2 * width) {
            uint32_t mid = lo + width < n ? lo + width : n;
            uint32_t hi = lo + 2 * width < n ? lo + 2 * width : n;
            uint32_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi)
                tmp[k++] = lua_before(L, ev, &a[j], &a[i]) ? a[j++] : a[i++];
            while (i < mid)
                tmp[k++] = a[i++];
            while (j < hi)
                tmp[k++] = a[j++];
        }
        memcpy(a, tmp, sizeof *a * n);
    }
    if (ws->n != n)
        return luaL_error(L, "the list changed during 'reorder'");
    memcpy(ws->list, a, sizeof *a * n);
    mark_moved(ev, before);
    rules_enforce_block(ev);
    return 0;
}

static int l_add(lua_State *L)
{
    pol_eval *ev = rules_changing_eval(L, "add");
    policy_wstate *ws = ev->ws;
    const char *name = luaL_checkstring(L, 2);
    int32_t s = policy_find_server(ev->ctx->snap, name);
    char why[128];
    const char *no = NULL;

    if (s < 0)
        no = "no such server";
    else if (rules_find_pos(ws, (uint32_t)s) >= 0)
        no = "already listed";
    else if (policy_denied(ev, (uint32_t)s)) /* deny, or an exclusive group's server */
        no = "denied by the policy";
    else if (!decide_available(ev->ctx, (uint32_t)s))
        no = decide_unavailable_why(ev->ctx, (uint32_t)s, why, sizeof why);
    else if (ev->fb_blocked && !policy_in_approved(ws, (uint32_t)s))
        no = "outside the approved set, and fallback is blocked";
    if (no) {
        lua_pushboolean(L, 0);
        lua_pushstring(L, no);
        return 2;
    }
    const snap_server *sv = &ev->ctx->snap->servers[s];
    pl_entry e = {(uint32_t)s, 0, 0, ev->pb->r_rule_added[ev->rule],
                  sv->connections >= policy_cap(ev->pb, ev->site_blk, sv)};
    uint32_t at = ws->n;
    if (policy_in_approved(ws, (uint32_t)s)) {
        at = 0;
        while (at < ws->n && ws->list[at].tier == 0)
            at++;
    } else {
        e.tier = ws->n && ws->list[ws->n - 1].tier > 0 ? ws->list[ws->n - 1].tier : 1;
        e.after = ev->after;
    }
    if (ws->n + 1 >= ws->cap)
        return luaL_error(L, "the list is full");
    memmove(&ws->list[at + 1], &ws->list[at], sizeof e * (ws->n - at));
    ws->list[at] = e;
    ws->n++;
    lua_pushboolean(L, 1);
    return 1;
}

static int l_find(lua_State *L)
{
    pol_eval *ev = rules_eval_of(L);
    const char *name = luaL_checkstring(L, 2);
    for (uint32_t i = 0; i < ev->ws->n; i++)
        if (strcasecmp(ev->ctx->snap->servers[ev->ws->list[i].server].name, name) == 0) {
            rules_push_entry(L, ev, ev->ws->list[i].server);
            return 1;
        }
    lua_pushnil(L);
    return 1;
}

static int l_names(lua_State *L)
{
    pol_eval *ev = rules_eval_of(L);
    lua_createtable(L, (int)ev->ws->n, 0);
    for (uint32_t i = 0; i < ev->ws->n; i++) {
        lua_pushstring(L, ev->ctx->snap->servers[ev->ws->list[i].server].name);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

static int list_index(lua_State *L)
{
    pol_eval *ev = rules_eval_of(L);
    if (lua_type(L, 2) == LUA_TNUMBER) {
        lua_Integer i = lua_tointeger(L, 2);
        if (i >= 1 && (uint64_t)i <= ev->ws->n)
            rules_push_entry(L, ev, ev->ws->list[i - 1].server);
        else
            lua_pushnil(L);
        return 1;
    }
    const char *k = luaL_checkstring(L, 2);
    if (strcmp(k, "blocked") == 0) {
        lua_pushboolean(L, ev->fb_blocked);
        return 1;
    }
    if (strcmp(k, "strict") == 0) {
        lua_pushboolean(L, ev->strict);
        return 1;
    }
    if (strcmp(k, "max") == 0) {
        lua_pushinteger(L, ev->max);
        return 1;
    }
    if (lua_getfield(L, lua_upvalueindex(1), k) == LUA_TNIL)
        return luaL_error(L, "the list has no method or field '%s'", k);
    return 1;
}

static int list_len(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)rules_eval_of(L)->ws->n);
    return 1;
}

static int list_next(lua_State *L)
{
    pol_eval *ev = rules_eval_of(L);
    lua_Integer i = luaL_optinteger(L, 2, 0) + 1;
    if (i < 1 || (uint64_t)i > ev->ws->n)
        return 0;
    lua_pushinteger(L, i);
    rules_push_entry(L, ev, ev->ws->list[i - 1].server);
    return 2;
}

static int list_pairs(lua_State *L)
{
    lua_pushcfunction(L, list_next);
    lua_pushvalue(L, 1);
    lua_pushinteger(L, 0);
    return 3;
}

/* ------------------------------------------------------------------------
 * The list's metatable
 * ---------------------------------------------------------------------- */

void policy_list_push_meta(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"remove", l_remove},     {"restrict", l_restrict}, {"truncate", l_truncate},
        {"block_fallback", l_block_fallback}, {"prefer", l_prefer}, {"reorder", l_reorder},
        {"add", l_add},           {"find", l_find},         {"names", l_names},
        {"set_strict", l_set_strict}, {NULL, NULL},
    };

    luaL_newmetatable(L, LIST_MT);
    luaL_newlib(L, methods);
    lua_pushcclosure(L, list_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pushliteral(L, "list");
    lua_pushcclosure(L, rules_read_only, 1);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, list_len);
    lua_setfield(L, -2, "__len");
    lua_pushcfunction(L, list_pairs);
    lua_setfield(L, -2, "__pairs");
    lua_pushliteral(L, "read-only");
    lua_setfield(L, -2, "__metatable");
}
