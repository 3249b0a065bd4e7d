/*
 * policy_rules.c - running `rule` functions: the per-worker Lua state, the
 * read-only request and the list object rules act on.
 *
 * Each worker has its own sandboxed state (never shared, never locked).
 * The first time a worker meets a policy with rules it re-runs the policy
 * text there to get its own copies of the rule functions
 * (policy_load_rules) and creates three kinds of objects, once:
 *   req     a userdata whose fields read the current request (read-only);
 *   list    a userdata over the worker's working list (policy_wstate.list)
 *           with the methods below;
 *   entries one userdata per server, cached, valid during one evaluation.
 * So a request that runs rules costs a few calls, not a table per entry.
 *
 * All rules of one request share one instruction budget and one
 * wall-clock bound (rule_time_ms, 50 ms by default).  A rule that errors,
 * runs out of memory, budget or time leaves the list as it was before it
 * started, and no later rule runs (policy_eval.c decides what the request
 * gets).  Methods never let a rule add an unavailable or denied server,
 * nor one outside the approved set once fallback is blocked.
 *
 * Callbacks (a `remove`/`restrict`/`prefer` predicate, a `reorder`
 * comparator) run while the method that called them holds pointers into
 * the list and the worker's scratch space, so a callback may read the list
 * and its entries but never change it: every changing method refuses to run
 * inside a callback ("list:add called from inside list:reorder's
 * comparator").  A block is a latch: once fallback is blocked in a request
 * (by the policy or by list:block_fallback()) it stays blocked, even if the
 * rule that blocked it fails afterwards, and no fallback entry comes back.
 */
#include "decide.h"
#include "policy.h"

#include <lauxlib.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ENTRY_MT "tsl.entry"

/* Rule calls stopped by their time or instruction bound, in this process. */
static _Atomic uint64_t overruns_total;

uint64_t tsl_policy_overruns_total(void)
{
    return atomic_load_explicit(&overruns_total, memory_order_relaxed);
}
#define LIST_MT "tsl.list"
#define REQ_MT "tsl.request"

typedef struct entry_ud {
    uint32_t server;
    uint64_t serial;
} entry_ud;

/* ------------------------------------------------------------------------
 * Access to the evaluation
 * ---------------------------------------------------------------------- */

static pol_eval *eval_of(lua_State *L)
{
    policy_wstate *ws = sandbox_of(L)->user;
    if (!ws || !ws->cur)
        luaL_error(L, "the request and the list exist only while a rule runs");
    return ws->cur;
}

/* The evaluation for a method that changes the list: refused while a
 * callback of another method runs (that method holds pointers into the
 * list and the scratch space). */
static pol_eval *changing_eval(lua_State *L, const char *method)
{
    pol_eval *ev = eval_of(L);
    if (ev->in_callback)
        sandbox_error(L, "list:%s called from inside list:%s (a callback may read the list, "
                         "not change it)",
                      method, ev->in_callback);
    return ev;
}

/* Calls the function below nargs arguments (one result) as a callback of
 * `what`: changing methods are refused until it returns.  Protected, so an
 * error in the callback clears the mark before it propagates. */
static void call_callback(lua_State *L, pol_eval *ev, int nargs, const char *what)
{
    const char *outer = ev->in_callback;
    ev->in_callback = what;
    int st = lua_pcall(L, nargs, 1, 0);
    ev->in_callback = outer;
    if (st == LUA_OK)
        return;
    if (st == LUA_ERRMEM) {
        char m[128];
        sandbox_errmsg(sandbox_of(L), st, m, sizeof m, false);
        lua_pushstring(L, m);
    }
    lua_error(L);
}

/* The latch: while fallback is blocked, only tier 0 stays. */
static void enforce_block(pol_eval *ev)
{
    policy_wstate *ws = ev->ws;
    uint32_t k = 0;
    if (!ev->fb_blocked)
        return;
    for (uint32_t i = 0; i < ws->n; i++)
        if (ws->list[i].tier == 0)
            ws->list[k++] = ws->list[i];
    ws->n = k;
}

static int read_only(lua_State *L)
{
    return luaL_error(L, "attempt to modify a read-only %s", lua_tostring(L, lua_upvalueindex(1)));
}

static int find_pos(const policy_wstate *ws, uint32_t server)
{
    for (uint32_t i = 0; i < ws->n; i++)
        if (ws->list[i].server == server)
            return (int)i;
    return -1;
}

static void push_entry(lua_State *L, pol_eval *ev, uint32_t server)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, ev->ws->entries_ref);
    if (lua_rawgeti(L, -1, (lua_Integer)server + 1) != LUA_TUSERDATA) {
        lua_pop(L, 1);
        entry_ud *e = lua_newuserdatauv(L, sizeof *e, 0);
        e->server = server;
        luaL_setmetatable(L, ENTRY_MT);
        lua_pushvalue(L, -1);
        lua_rawseti(L, -3, (lua_Integer)server + 1);
    }
    ((entry_ud *)lua_touserdata(L, -1))->serial = ev->ws->serial;
    lua_remove(L, -2);
}

static uint32_t check_entry(lua_State *L, int idx, pol_eval *ev)
{
    entry_ud *e = luaL_checkudata(L, idx, ENTRY_MT);
    if (e->serial != ev->ws->serial)
        luaL_error(L, "this entry belongs to an earlier request (entries are valid only "
                      "during the rule call that got them)");
    if (e->server >= ev->ctx->snap->nservers)
        luaL_error(L, "entry of another inventory");
    return e->server;
}

/* ------------------------------------------------------------------------
 * The request
 * ---------------------------------------------------------------------- */

static void push_opt(lua_State *L, const char *s)
{
    if (s)
        lua_pushstring(L, s);
    else
        lua_pushnil(L);
}

static int req_index(lua_State *L)
{
    pol_eval *ev = eval_of(L);
    const decide_ctx *ctx = ev->ctx;
    const tsl_snapshot *s = ctx->snap;
    const char *k = luaL_checkstring(L, 2);
    const snap_client *c = ctx->client >= 0 ? &s->clients[ctx->client] : NULL;
    char ip[64];

    if (strcmp(k, "task") == 0) /* the most common first */
        push_opt(L, ctx->task);
    else if (strcmp(k, "site") == 0)
        push_opt(L, ctx->site != TSL_NO_SITE ? s->sites[ctx->site].name : NULL);
    else if (strcmp(k, "client") == 0)
        push_opt(L, c ? c->guid : ctx->req->client);
    else if (strcmp(k, "department") == 0)
        push_opt(L, ctx->department);
    else if (strcmp(k, "ip") == 0) {
        if (ctx->nips) {
            tsl_ip_format(ip, sizeof ip, &ctx->ips[0]);
            lua_pushstring(L, ip);
        } else {
            lua_pushnil(L);
        }
    } else if (strcmp(k, "ips") == 0) {
        lua_createtable(L, (int)ctx->nips, 0);
        for (size_t i = 0; i < ctx->nips; i++) {
            tsl_ip_format(ip, sizeof ip, &ctx->ips[i]);
            lua_pushstring(L, ip);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
    } else if (strcmp(k, "name") == 0)
        push_opt(L, c ? c->name : NULL);
    else if (strcmp(k, "known") == 0)
        lua_pushboolean(L, c != NULL);
    else if (strcmp(k, "country") == 0)
        push_opt(L, ctx->site != TSL_NO_SITE ? s->sites[ctx->site].country : NULL);
    else if (strcmp(k, "explicit_site") == 0)
        push_opt(L, c && c->site != TSL_NO_SITE ? s->sites[c->site].name : NULL);
    else if (strcmp(k, "assigned") == 0)
        push_opt(L, c ? c->assigned : NULL);
    else if (strcmp(k, "now") == 0)
        lua_pushinteger(L, (lua_Integer)ctx->now);
    else
        return luaL_error(L, "the request has no field '%s' (fields: site, client, name, ip, "
                             "ips, department, task, country, explicit_site, assigned, known, "
                             "now)",
                          k);
    return 1;
}

/* ------------------------------------------------------------------------
 * Entries
 * ---------------------------------------------------------------------- */

static int entry_index(lua_State *L)
{
    pol_eval *ev = eval_of(L);
    uint32_t server = check_entry(L, 1, ev);
    const char *k = luaL_checkstring(L, 2);
    const tsl_snapshot *s = ev->ctx->snap;
    const snap_server *sv = &s->servers[server];
    int pos = find_pos(ev->ws, server);
    const pl_entry *pe = pos >= 0 ? &ev->ws->list[pos] : NULL;

    if (strcmp(k, "name") == 0)
        lua_pushstring(L, sv->name);
    else if (strcmp(k, "host") == 0)
        push_opt(L, sv->host);
    else if (strcmp(k, "ip") == 0)
        push_opt(L, sv->ip && *sv->ip ? sv->ip : NULL);
    else if (strcmp(k, "site") == 0)
        push_opt(L, sv->home != TSL_NO_SITE ? s->sites[sv->home].name : NULL);
    else if (strcmp(k, "capacity") == 0)
        lua_pushinteger(L, (lua_Integer)sv->capacity);
    else if (strcmp(k, "connections") == 0)
        lua_pushinteger(L, (lua_Integer)sv->connections);
    else if (strcmp(k, "response_ms") == 0)
        lua_pushinteger(L, (lua_Integer)sv->response_ms);
    else if (strcmp(k, "free") == 0)
        lua_pushinteger(L, (lua_Integer)(sv->capacity - sv->connections));
    else if (strcmp(k, "load") == 0)
        lua_pushnumber(L, sv->capacity > 0 ? (lua_Number)sv->connections / (lua_Number)sv->capacity
                                           : 1.0);
    else if (strcmp(k, "cap") == 0)
        lua_pushinteger(L, (lua_Integer)policy_cap(ev->pb, ev->site_blk, sv));
    else if (strcmp(k, "full") == 0)
        lua_pushboolean(L, sv->connections >= policy_cap(ev->pb, ev->site_blk, sv));
    else if (strcmp(k, "recent_error") == 0)
        lua_pushboolean(L, decide_recent_error(ev->ctx, server));
    else if (strcmp(k, "heartbeat") == 0)
        lua_pushinteger(L, (lua_Integer)sv->heartbeat);
    else if (strcmp(k, "approved") == 0)
        lua_pushboolean(L, policy_in_approved(ev->ws, server));
    else if (strcmp(k, "tier") == 0)
        pe ? lua_pushinteger(L, pe->tier) : lua_pushnil(L);
    else if (strcmp(k, "after") == 0)
        pe ? lua_pushinteger(L, pe->after) : lua_pushnil(L);
    else if (strcmp(k, "reason") == 0)
        push_opt(L, pe ? pe->reason : NULL);
    else if (strcmp(k, "position") == 0)
        pos >= 0 ? lua_pushinteger(L, pos + 1) : lua_pushnil(L);
    else
        return luaL_error(L, "a list entry has no field '%s' (fields: name, host, ip, site, "
                             "capacity, connections, response_ms, free, load, cap, full, "
                             "recent_error, heartbeat, approved, tier, after, reason, position)",
                          k);
    return 1;
}

static int entry_tostring(lua_State *L)
{
    entry_ud *e = luaL_checkudata(L, 1, ENTRY_MT);
    policy_wstate *ws = sandbox_of(L)->user;
    if (ws && ws->cur && e->server < ws->cur->ctx->snap->nservers)
        lua_pushfstring(L, "entry %s", ws->cur->ctx->snap->servers[e->server].name);
    else
        lua_pushliteral(L, "entry");
    return 1;
}

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
        return check_entry(L, idx, ev) == server;
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
        push_entry(L, ev, server);
        call_callback(L, ev, 1, what);
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
    pol_eval *ev = changing_eval(L, fname);
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
    pol_eval *ev = changing_eval(L, "truncate");
    lua_Integer n = luaL_checkinteger(L, 2);
    luaL_argcheck(L, n >= 0, 1, "must be 0 or more");
    if ((uint64_t)n < ev->ws->n)
        ev->ws->n = (uint32_t)n;
    return 0;
}

static int l_block_fallback(lua_State *L)
{
    pol_eval *ev = changing_eval(L, "block_fallback");
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
    pol_eval *ev = changing_eval(L, "set_strict");
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
    pol_eval *ev = changing_eval(L, "prefer");
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
    push_entry(L, ev, a->server);
    push_entry(L, ev, b->server);
    call_callback(L, ev, 2, "reorder's comparator");
    bool r = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return r;
}

static int l_reorder(lua_State *L)
{
    pol_eval *ev = changing_eval(L, "reorder");
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
    enforce_block(ev);
    return 0;
}

static int l_add(lua_State *L)
{
    pol_eval *ev = changing_eval(L, "add");
    policy_wstate *ws = ev->ws;
    const char *name = luaL_checkstring(L, 2);
    int32_t s = policy_find_server(ev->ctx->snap, name);
    char why[128];
    const char *no = NULL;

    if (s < 0)
        no = "no such server";
    else if (find_pos(ws, (uint32_t)s) >= 0)
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
    pol_eval *ev = eval_of(L);
    const char *name = luaL_checkstring(L, 2);
    for (uint32_t i = 0; i < ev->ws->n; i++)
        if (strcasecmp(ev->ctx->snap->servers[ev->ws->list[i].server].name, name) == 0) {
            push_entry(L, ev, ev->ws->list[i].server);
            return 1;
        }
    lua_pushnil(L);
    return 1;
}

static int l_names(lua_State *L)
{
    pol_eval *ev = eval_of(L);
    lua_createtable(L, (int)ev->ws->n, 0);
    for (uint32_t i = 0; i < ev->ws->n; i++) {
        lua_pushstring(L, ev->ctx->snap->servers[ev->ws->list[i].server].name);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

static int list_index(lua_State *L)
{
    pol_eval *ev = eval_of(L);
    if (lua_type(L, 2) == LUA_TNUMBER) {
        lua_Integer i = lua_tointeger(L, 2);
        if (i >= 1 && (uint64_t)i <= ev->ws->n)
            push_entry(L, ev, ev->ws->list[i - 1].server);
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
    lua_pushinteger(L, (lua_Integer)eval_of(L)->ws->n);
    return 1;
}

static int list_next(lua_State *L)
{
    pol_eval *ev = eval_of(L);
    lua_Integer i = luaL_optinteger(L, 2, 0) + 1;
    if (i < 1 || (uint64_t)i > ev->ws->n)
        return 0;
    lua_pushinteger(L, i);
    push_entry(L, ev, ev->ws->list[i - 1].server);
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
 * The worker's state
 * ---------------------------------------------------------------------- */

static void new_meta(lua_State *L, const char *name, lua_CFunction index, const char *what)
{
    luaL_newmetatable(L, name);
    lua_pushcfunction(L, index);
    lua_setfield(L, -2, "__index");
    lua_pushstring(L, what);
    lua_pushcclosure(L, read_only, 1);
    lua_setfield(L, -2, "__newindex");
    lua_pushliteral(L, "read-only");
    lua_setfield(L, -2, "__metatable");
}

struct setup_args {
    policy_wstate *ws;
    tsl_policy *pol;
};

static int setup_p(lua_State *L)
{
    struct setup_args *a = lua_touserdata(L, 1);
    policy_wstate *ws = a->ws;
    static const luaL_Reg methods[] = {
        {"remove", l_remove},     {"restrict", l_restrict}, {"truncate", l_truncate},
        {"block_fallback", l_block_fallback}, {"prefer", l_prefer}, {"reorder", l_reorder},
        {"add", l_add},           {"find", l_find},         {"names", l_names},
        {"set_strict", l_set_strict}, {NULL, NULL},
    };

    if (policy_load_rules(ws->sb, a->pol, SANDBOX_LOAD_BUDGET_DEFAULT) != LUA_OK)
        return lua_error(L);
    ws->rules_ref = luaL_ref(L, LUA_REGISTRYINDEX);

    new_meta(L, ENTRY_MT, entry_index, "list entry");
    lua_pushcfunction(L, entry_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);

    new_meta(L, REQ_MT, req_index, "request");
    lua_pop(L, 1);
    lua_newuserdatauv(L, 1, 0);
    luaL_setmetatable(L, REQ_MT);
    ws->req_ref = luaL_ref(L, LUA_REGISTRYINDEX);

    luaL_newmetatable(L, LIST_MT);
    luaL_newlib(L, methods);
    lua_pushcclosure(L, list_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pushliteral(L, "list");
    lua_pushcclosure(L, read_only, 1);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, list_len);
    lua_setfield(L, -2, "__len");
    lua_pushcfunction(L, list_pairs);
    lua_setfield(L, -2, "__pairs");
    lua_pushliteral(L, "read-only");
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);
    lua_newuserdatauv(L, 1, 0);
    luaL_setmetatable(L, LIST_MT);
    ws->list_ref = luaL_ref(L, LUA_REGISTRYINDEX);

    lua_newtable(L);
    ws->entries_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

/* Makes ws->sb hold pol's rules (a fresh state per policy). */
static int ensure_rules(policy_wstate *ws, tsl_worker *w, tsl_policy *pol, char *msg,
                        size_t msglen)
{
    struct setup_args a = {ws, pol};
    int err;

    if (ws->loaded == pol && ws->sb)
        return 0;
    sandbox_free(ws->sb);
    ws->sb = NULL;
    tsl_policy_free(ws->loaded);
    ws->loaded = NULL;
    w->policy_state_for = NULL;

    if ((err = sandbox_new(&ws->sb, 0, NULL)) < 0) {
        snprintf(msg, msglen, "could not create the rule state: %s", tsl_error_last());
        return err;
    }
    ws->sb->user = ws;
    lua_pushcfunction(ws->sb->L, setup_p);
    lua_pushlightuserdata(ws->sb->L, &a);
    int st = lua_pcall(ws->sb->L, 1, 0, 0);
    if (st != LUA_OK) {
        sandbox_errmsg(ws->sb, st, msg, msglen, false);
        sandbox_free(ws->sb);
        ws->sb = NULL;
        return TSL_EPOLICY;
    }
    ws->loaded = tsl_policy_ref(pol);
    w->policy_state_for = pol;
    return 0;
}

/* ------------------------------------------------------------------------
 * Running the rules
 * ---------------------------------------------------------------------- */

static void save_list(pol_eval *ev)
{
    policy_wstate *ws = ev->ws;
    memcpy(ws->saved, ws->list, sizeof *ws->list * ws->n);
    ws->nsaved = ws->n;
    ev->saved_fb_blocked = ev->fb_blocked;
    ev->saved_strict = ev->strict;
    ev->saved_blocked_reason = ev->blocked_reason;
}

/* The list as it stood before the failing rule; a block it applied
 * stays (the latch), with its reason. */
static void restore_list(pol_eval *ev)
{
    policy_wstate *ws = ev->ws;
    memcpy(ws->list, ws->saved, sizeof *ws->list * ws->nsaved);
    ws->n = ws->nsaved;
    if (!ev->fb_blocked) {
        ev->blocked_reason = ev->saved_blocked_reason;
    }
    ev->strict = ev->saved_strict;
    ev->in_callback = NULL;
    enforce_block(ev);
}

/* Each rule runs in its own lua_pcall.  Everything else here (pushing a
 * light C function, raw reads of existing values) cannot allocate, so no
 * protected trampoline is needed around the loop. */
int policy_run_rules(pol_eval *ev, char *msg, size_t msglen)
{
    policy_wstate *ws = ev->ws;
    tsl_policy *pol = ev->pb->pol;
    lua_State *L;
    int base, failed = 0;

    msg[0] = '\0';
    if (ensure_rules(ws, ev->w, pol, msg, msglen) < 0)
        return 1;
    L = ws->sb->L;
    if (!lua_checkstack(L, 8)) {
        snprintf(msg, msglen, "no Lua stack space left");
        return 1;
    }
    base = lua_gettop(L);
    ws->serial++;
    ws->cur = ev;
    sandbox_reset_flags(ws->sb);
    ev->in_callback = NULL;
    ev->overrun = false;
    ws->sb->time_ms = pol->rule_time_ms;
    sandbox_budget_begin(ws->sb, pol->rule_budget);
    for (uint32_t i = 0; i < pol->nrules; i++) {
        uint32_t before = ws->n;
        ev->rule = i;
        save_list(ev);
        lua_pushcfunction(L, sandbox_msgh);
        lua_rawgeti(L, LUA_REGISTRYINDEX, ws->rules_ref);
        lua_rawgeti(L, -1, (lua_Integer)i + 1);
        lua_remove(L, -2);
        lua_rawgeti(L, LUA_REGISTRYINDEX, ws->req_ref);
        lua_rawgeti(L, LUA_REGISTRYINDEX, ws->list_ref);
        int st = lua_pcall(L, 2, 0, base + 1);
        if (st != LUA_OK) {
            sandbox_errmsg(ws->sb, st, msg, msglen, false);
            ev->overrun = ws->sb->stop == SANDBOX_OUT_OF_TIME ||
                          ws->sb->stop == SANDBOX_OUT_OF_BUDGET;
            if (ev->overrun) {
                ev->w->policy_overruns++;
                atomic_fetch_add_explicit(&overruns_total, 1, memory_order_relaxed);
            }
            restore_list(ev);
            failed = (int)i + 1;
            lua_settop(L, base);
            break;
        }
        lua_settop(L, base);
        enforce_block(ev);
        PTRACE(ev->tr, "rule \"%s\" (line %d): %u -> %u entr%s%s", pol->rules[i].name,
               pol->rules[i].line, before, ws->n, ws->n == 1 ? "y" : "ies",
               ev->fb_blocked && !ev->saved_fb_blocked ? ", fallback blocked" : "");
    }
    sandbox_budget_end(ws->sb);
    ws->cur = NULL;
    return failed;
}
