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
 *
 * The list object's methods are policy_list.c's; here: access to the
 * evaluation, the request and entry objects, the worker's state and
 * running the rules.
 *
 * Used by: policy_eval.c (policy_run_rules).  Needs: policy.h,
 * policy_rules.h, decide.h, sandbox.h.
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

/* Rule calls stopped by their time or instruction bound, in this process. */
static _Atomic uint64_t overruns_total;

uint64_t tsl_policy_overruns_total(void)
{
    return atomic_load_explicit(&overruns_total, memory_order_relaxed);
}

#define REQ_MT "tsl.request"

/* ------------------------------------------------------------------------
 * Access to the evaluation
 * ---------------------------------------------------------------------- */

pol_eval *rules_eval_of(lua_State *L)
{
    policy_wstate *ws = sandbox_of(L)->user;
    if (!ws || !ws->cur)
        luaL_error(L, "the request and the list exist only while a rule runs");
    return ws->cur;
}

/* The evaluation for a method that changes the list: refused while a
 * callback of another method runs (that method holds pointers into the
 * list and the scratch space). */
pol_eval *rules_changing_eval(lua_State *L, const char *method)
{
    pol_eval *ev = rules_eval_of(L);
    if (ev->in_callback)
        sandbox_error(L, "list:%s called from inside list:%s (a callback may read the list, "
                         "not change it)",
                      method, ev->in_callback);
    return ev;
}

/* Calls the function below nargs arguments (one result) as a callback of
 * `what`: changing methods are refused until it returns.  Protected, so an
 * error in the callback clears the mark before it propagates. */
void rules_call_callback(lua_State *L, pol_eval *ev, int nargs, const char *what)
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
void rules_enforce_block(pol_eval *ev)
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

int rules_read_only(lua_State *L)
{
    return luaL_error(L, "attempt to modify a read-only %s", lua_tostring(L, lua_upvalueindex(1)));
}

int rules_find_pos(const policy_wstate *ws, uint32_t server)
{
    for (uint32_t i = 0; i < ws->n; i++)
        if (ws->list[i].server == server)
            return (int)i;
    return -1;
}

void rules_push_entry(lua_State *L, pol_eval *ev, uint32_t server)
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

uint32_t rules_check_entry(lua_State *L, int idx, pol_eval *ev)
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
    pol_eval *ev = rules_eval_of(L);
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
    pol_eval *ev = rules_eval_of(L);
    uint32_t server = rules_check_entry(L, 1, ev);
    const char *k = luaL_checkstring(L, 2);
    const tsl_snapshot *s = ev->ctx->snap;
    const snap_server *sv = &s->servers[server];
    int pos = rules_find_pos(ev->ws, server);
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
 * The worker's state
 * ---------------------------------------------------------------------- */

static void new_meta(lua_State *L, const char *name, lua_CFunction index, const char *what)
{
    luaL_newmetatable(L, name);
    lua_pushcfunction(L, index);
    lua_setfield(L, -2, "__index");
    lua_pushstring(L, what);
    lua_pushcclosure(L, rules_read_only, 1);
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

    policy_list_push_meta(L);
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
    rules_enforce_block(ev);
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
        rules_enforce_block(ev);
        PTRACE(ev->tr, "rule \"%s\" (line %d): %u -> %u entr%s%s", pol->rules[i].name,
               pol->rules[i].line, before, ws->n, ws->n == 1 ? "y" : "ies",
               ev->fb_blocked && !ev->saved_fb_blocked ? ", fallback blocked" : "");
    }
    sandbox_budget_end(ws->sb);
    ws->cur = NULL;
    return failed;
}

