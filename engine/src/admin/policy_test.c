/*
 * policy_test.c - admin-written policy tests (`tsl test DIR`).
 *
 * A test file is Lua, run in the same sandbox as policies, declaring:
 *
 *   policy "../examples/demo.lua"          -- relative to the test file
 *   inventory "../demo/estate.json"        -- a JSON inventory, or a table:
 *   inventory { sites = {...}, task_servers = {...}, clients = {...},
 *               connection_errors = {...} }
 *   now "2026-11-25T10:00:00Z"             -- time of the requests (optional)
 *   test "London gets its ordered list" {
 *     ip = "10.10.4.21", department = "Sales", task = "imaging",
 *     expect = { "ts-lon-01", "ts-lon-02" }, strict = true,
 *   }
 *
 * Each test decides one request against the policy and compares what it
 * names (expect, first, contains, excludes, count, blocked, strict, site,
 * tiers, after, reasons, ttl, rule_error); one TAP line per test.  The
 * file's own mistakes (unknown fields, a policy that does not compile) fail
 * the file with a message, never the process.
 *
 * Here: the file's functions (policy, inventory, now, test), loading the
 * file and running each test as one TAP line.  Reading the file's tables
 * is policy_test_lua.c's, one test's checks policy_test_case.c's.
 *
 * Used by: the CLI (tsl test).  Needs: policy_test.h, policy.h, decide.h,
 * store.h (JSON inventories go through an in-memory store, as imports do).
 */
#include "decide.h"
#include "policy.h"
#include "policy_test.h"
#include "store.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------------
 * Files
 * ---------------------------------------------------------------------- */

static void resolve(char *dst, size_t len, const char *dir, const char *name)
{
    if (name[0] == '/' || !dir[0])
        snprintf(dst, len, "%s", name);
    else
        snprintf(dst, len, "%s/%s", dir, name);
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* ------------------------------------------------------------------------
 * The test-file functions
 * ---------------------------------------------------------------------- */

static runner *runner_of(lua_State *L)
{
    return lua_touserdata(L, lua_upvalueindex(1));
}

static int f_policy(lua_State *L)
{
    runner *r = runner_of(L);
    const char *p = luaL_checkstring(L, 1);
    if (r->policy[0])
        return luaL_error(L, "policy declared twice");
    snprintf(r->policy, sizeof r->policy, "%s", p);
    return 0;
}

static int f_inventory(lua_State *L)
{
    runner *r = runner_of(L);
    if (r->inventory[0] || r->inventory_table)
        return luaL_error(L, "inventory declared twice");
    if (lua_type(L, 1) == LUA_TTABLE) {
        lua_settop(L, 1);
        r->inv_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        r->inventory_table = true;
        return 0;
    }
    snprintf(r->inventory, sizeof r->inventory, "%s", luaL_checkstring(L, 1));
    return 0;
}

static int f_now(lua_State *L)
{
    runner *r = runner_of(L);
    if (lua_type(L, 1) == LUA_TNUMBER) {
        r->now = (int64_t)luaL_checkinteger(L, 1);
        return 0;
    }
    const char *t = luaL_checkstring(L, 1);
    if (!tsl_parse_time(t, &r->now))
        return luaL_argerror(L, 1, "expected Unix seconds or an ISO 8601 UTC time");
    return 0;
}

static int f_test_body(lua_State *L)
{
    runner *r = runner_of(L);
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->tests_ref);
    lua_createtable(L, 0, 3);
    lua_pushvalue(L, lua_upvalueindex(2));
    lua_setfield(L, -2, "name");
    lua_pushvalue(L, lua_upvalueindex(3));
    lua_setfield(L, -2, "line");
    lua_pushvalue(L, 1);
    lua_setfield(L, -2, "spec");
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    r->ntests++;
    return 0;
}

static int f_test(lua_State *L)
{
    lua_Debug ar;
    luaL_checkstring(L, 1);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushvalue(L, 1);
    lua_pushinteger(L, lua_getstack(L, 1, &ar) && lua_getinfo(L, "l", &ar) ? ar.currentline : 0);
    lua_pushcclosure(L, f_test_body, 3);
    if (lua_type(L, 2) == LUA_TTABLE) { /* test("name", { ... }) */
        lua_pushvalue(L, 2);
        lua_call(L, 1, 0);
        return 0;
    }
    return 1;
}

struct load_args {
    sandbox *sb;
    runner *r;
    const char *src;
    size_t len;
    int status;
};

static int load_p(lua_State *L)
{
    struct load_args *a = lua_touserdata(L, 1);
    static const luaL_Reg fns[] = {
        {"policy", f_policy}, {"inventory", f_inventory}, {"now", f_now}, {"test", f_test},
        {NULL, NULL},
    };
    lua_newtable(L);
    a->r->tests_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_createtable(L, 0, 4);
    lua_pushlightuserdata(L, a->r);
    luaL_setfuncs(L, fns, 1);
    sandbox_push_env(a->sb, -1);
    a->status = sandbox_load(a->sb, a->src, a->len, base_name(a->r->path), -1);
    if (a->status == LUA_OK)
        a->status = sandbox_call(a->sb, 0, 0, SANDBOX_LOAD_BUDGET_DEFAULT);
    if (a->status != LUA_OK)
        sandbox_errmsg(a->sb, a->status, a->r->err, sizeof a->r->err, false);
    return 0;
}

/* ------------------------------------------------------------------------
 * Inventory from a table
 * ---------------------------------------------------------------------- */

struct inv_args {
    runner *r;
    tsl_snapshot *snap;
    int err;
};

static void each(lua_State *L, int inv, const char *k, void (*fn)(lua_State *, struct inv_args *, int, const char *),
                 struct inv_args *a)
{
    int t = ptest_rawfield(L, inv, k);
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return;
    }
    if (t != LUA_TTABLE)
        luaL_error(L, "inventory: %s must be a list of records", k);
    lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
    for (lua_Integer i = 1; i <= n; i++) {
        char what[64];
        snprintf(what, sizeof what, "inventory: %s[%d]", k, (int)i);
        if (lua_rawgeti(L, -1, i) != LUA_TTABLE)
            luaL_error(L, "%s must be a table", what);
        fn(L, a, lua_gettop(L), what);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

static void builder_failed(lua_State *L, const char *what)
{
    luaL_error(L, "%s: %s", what, tsl_error_last());
}

static void add_site(lua_State *L, struct inv_args *a, int idx, const char *what)
{
    static const char *const keys[] = {"name", "subnets", "country", NULL};
    ptest_check_keys(L, idx, keys, what);
    const char *name = ptest_str_field(L, idx, "name", what);
    if (!name)
        luaL_error(L, "%s: a site needs a name", what);
    if (snap_add_site(a->snap, name, ptest_str_field(L, idx, "country", what), NULL, NULL) < 0)
        builder_failed(L, what);
    lua_Integer n = ptest_list_len(L, idx, "subnets", what);
    for (lua_Integer i = 1; i <= n; i++)
        if (snap_add_subnet(a->snap, name, ptest_list_str(L, idx, "subnets", i, what)) < 0)
            builder_failed(L, what);
}

static void add_server(lua_State *L, struct inv_args *a, int idx, const char *what)
{
    static const char *const keys[] = {"name", "host", "ip", "sites", "registered", "service",
                                       "capacity", "connections", "response_ms", "heartbeat",
                                       "heartbeat_ago", NULL};
    const char *sites[16];
    int64_t cap = 1000, conns = 0, resp = 10, hb = 0, ago;
    ptest_check_keys(L, idx, keys, what);
    const char *name = ptest_str_field(L, idx, "name", what);
    if (!name)
        luaL_error(L, "%s: a task server needs a name", what);
    lua_Integer n = ptest_list_len(L, idx, "sites", what);
    if (n > 16)
        luaL_error(L, "%s: at most 16 sites", what);
    for (lua_Integer i = 1; i <= n; i++)
        sites[i - 1] = ptest_list_str(L, idx, "sites", i, what);
    int reg = ptest_bool_field(L, idx, "registered", what);
    const char *service = ptest_str_field(L, idx, "service", what);
    if (service && strcmp(service, "running") != 0 && strcmp(service, "stopped") != 0)
        luaL_error(L, "%s: service must be \"running\" or \"stopped\"", what);
    ptest_int_field(L, idx, "capacity", what, &cap);
    ptest_int_field(L, idx, "connections", what, &conns);
    ptest_int_field(L, idx, "response_ms", what, &resp);
    ptest_int_field(L, idx, "heartbeat", what, &hb);
    if (ptest_int_field(L, idx, "heartbeat_ago", what, &ago))
        hb = a->r->now - ago;
    if (snap_add_server(a->snap, name, ptest_str_field(L, idx, "host", what), ptest_str_field(L, idx, "ip", what),
                        n > 0 ? sites : NULL, n > 0 ? (size_t)n : 0, reg != 0,
                        !service || strcmp(service, "running") == 0, cap, conns, resp, hb) < 0)
        builder_failed(L, what);
}

static void add_client(lua_State *L, struct inv_args *a, int idx, const char *what)
{
    static const char *const keys[] = {"guid", "name", "ip", "department", "site", "assigned",
                                       NULL};
    ptest_check_keys(L, idx, keys, what);
    const char *guid = ptest_str_field(L, idx, "guid", what);
    if (!guid)
        luaL_error(L, "%s: a client needs a guid", what);
    if (snap_add_client(a->snap, guid, ptest_str_field(L, idx, "name", what), ptest_str_field(L, idx, "ip", what),
                        ptest_str_field(L, idx, "department", what), ptest_str_field(L, idx, "site", what),
                        ptest_str_field(L, idx, "assigned", what)) < 0)
        builder_failed(L, what);
}

static void add_error(lua_State *L, struct inv_args *a, int idx, const char *what)
{
    static const char *const keys[] = {"client", "server", "at", "ago", "error", NULL};
    int64_t at = a->r->now - 60, ago;
    ptest_check_keys(L, idx, keys, what);
    const char *client = ptest_str_field(L, idx, "client", what);
    const char *server = ptest_str_field(L, idx, "server", what);
    if (!client || !server)
        luaL_error(L, "%s: a connection error needs a client and a server", what);
    ptest_int_field(L, idx, "at", what, &at);
    if (ptest_int_field(L, idx, "ago", what, &ago))
        at = a->r->now - ago;
    if (snap_add_error(a->snap, client, server, at) < 0)
        builder_failed(L, what);
}

static int inventory_p(lua_State *L)
{
    struct inv_args *a = lua_touserdata(L, 1);
    static const char *const keys[] = {"sites", "task_servers", "clients", "connection_errors",
                                       NULL};
    lua_rawgeti(L, LUA_REGISTRYINDEX, a->r->inv_ref);
    int inv = lua_gettop(L);
    ptest_check_keys(L, inv, keys, "inventory");
    each(L, inv, "sites", add_site, a);
    each(L, inv, "task_servers", add_server, a);
    each(L, inv, "clients", add_client, a);
    each(L, inv, "connection_errors", add_error, a);
    if (tsl_snapshot_seal(a->snap) < 0)
        luaL_error(L, "inventory: %s", tsl_error_last());
    return 0;
}

static int load_inventory(tsl_snapshot **out, runner *r, sandbox *sb)
{
    tsl_store *st = NULL;
    char path[2048], *text = NULL;
    size_t len = 0;
    int err = 0;

    *out = NULL;
    if (r->inventory_table) {
        struct inv_args a = {r, NULL, 0};
        if ((err = tsl_snapshot_begin(&a.snap, NULL)) < 0)
            goto done;
        lua_pushcfunction(sb->L, inventory_p);
        lua_pushlightuserdata(sb->L, &a);
        int st_ = lua_pcall(sb->L, 1, 0, 0);
        if (st_ != LUA_OK) {
            char msg[1024];
            sandbox_errmsg(sb, st_, msg, sizeof msg, false);
            lua_pop(sb->L, 1);
            tsl_snapshot_free(a.snap);
            err = tsl_seterr(TSL_EINVALID, "%s", msg);
            goto done;
        }
        *out = a.snap;
        goto done;
    }
    if (!r->inventory[0]) {
        err = tsl_seterr(TSL_EINVALID, "the file declares no inventory (inventory \"FILE.json\" "
                                       "or inventory { ... })");
        goto done;
    }
    resolve(path, sizeof path, r->dir, r->inventory);
    if ((err = tsl_file_read(&text, &len, path, POL_MAX_SOURCE * 16)) < 0 ||
        (err = tsl_store_open(&st, ":memory:", 0)) < 0 ||
        (err = tsl_store_import_json(st, text, len, base_name(path))) < 0 ||
        (err = tsl_snapshot_load(out, st, NULL)) < 0)
        goto done;
done:
    free(text);
    tsl_store_free(st);
    return err;
}

/* ------------------------------------------------------------------------
 * tsl_policy_test_file
 * ---------------------------------------------------------------------- */

static int tap(tsl_buf *out, tsl_test_counts *c, bool ok, const char *file, const char *name)
{
    c->run++;
    if (ok)
        c->passed++;
    else
        c->failed++;
    return tsl_buf_printf(out, "%s %d - %s: %s\n", ok ? "ok" : "not ok", c->run, file, name);
}

int tsl_policy_test_file(tsl_buf *out, tsl_test_counts *counts, const char *path,
                         const char *policy_path)
{
    runner *r = NULL;
    sandbox *sb = NULL;
    char *src = NULL, *psrc = NULL, ppath[2048];
    size_t len = 0, plen = 0;
    tsl_policy *pol = NULL;
    tsl_snapshot *snap = NULL;
    tsl_plan *plan = NULL;
    tsl_worker *w = NULL;
    tsl_result *res = NULL;
    tsl_buf dbuf = TSL_BUF_INIT;
    const char *file = base_name(path);
    int err = 0;

    TSL_ARG(out && counts && path);
    if (!(r = calloc(1, sizeof *r))) {
        err = tsl_oom();
        goto done;
    }
    r->path = path;
    r->now = TEST_NOW_DEFAULT;
    r->inv_ref = r->tests_ref = LUA_NOREF;
    snprintf(r->dir, sizeof r->dir, "%s", path);
    char *slash = strrchr(r->dir, '/');
    if (slash)
        *slash = '\0';
    else
        r->dir[0] = '\0';

    if ((err = tsl_file_read(&src, &len, path, POL_MAX_SOURCE * 16)) < 0) {
        snprintf(r->err, sizeof r->err, "%s", tsl_error_last());
        goto file_failed;
    }
    if ((err = sandbox_new(&sb, 0, NULL)) < 0)
        goto done;
    struct load_args la = {sb, r, src, len, LUA_OK};
    lua_pushcfunction(sb->L, load_p);
    lua_pushlightuserdata(sb->L, &la);
    if (lua_pcall(sb->L, 1, 0, 0) != LUA_OK) {
        err = tsl_seterr(TSL_ENOMEM, "%s: out of memory", file);
        goto done;
    }
    if (la.status != LUA_OK)
        goto file_failed;

    if (policy_path)
        snprintf(ppath, sizeof ppath, "%s", policy_path);
    else if (r->policy[0])
        resolve(ppath, sizeof ppath, r->dir, r->policy);
    else {
        snprintf(r->err, sizeof r->err, "%s: the file declares no policy (policy \"FILE.lua\")",
                 file);
        goto file_failed;
    }
    if (tsl_file_read(&psrc, &plen, ppath, POL_MAX_SOURCE * 16) < 0 ||
        tsl_policy_compile(&pol, psrc, plen, base_name(ppath)) < 0 ||
        load_inventory(&snap, r, sb) < 0 || tsl_plan_new(&plan, snap, pol) < 0) {
        snprintf(r->err, sizeof r->err, "%s", tsl_error_last());
        goto file_failed;
    }
    if ((err = tsl_worker_new(&w)) < 0 || (err = tsl_result_new(&res)) < 0)
        goto done;
    if (r->ntests == 0) {
        snprintf(r->err, sizeof r->err, "%s: the file declares no test", file);
        goto file_failed;
    }
    for (int i = 1; i <= r->ntests; i++) {
        struct case_args ca = {r, w, res, plan, i, NULL, &dbuf, true};
        char name[256];
        tsl_buf_clear(&dbuf);
        lua_pushcfunction(sb->L, ptest_case_p);
        lua_pushlightuserdata(sb->L, &ca);
        int st = lua_pcall(sb->L, 1, 0, 0);
        snprintf(name, sizeof name, "%s", ca.name ? ca.name : "?");
        if (st != LUA_OK) {
            char msg[1024];
            sandbox_errmsg(sb, st, msg, sizeof msg, false);
            lua_pop(sb->L, 1);
            ptest_diag(&ca, "%s", msg);
        }
        if ((err = tap(out, counts, ca.pass, file, name)) < 0)
            goto done;
        if (dbuf.len && (err = tsl_buf_put(out, dbuf.ptr, dbuf.len)) < 0)
            goto done;
    }
    goto done;

file_failed:
    err = tap(out, counts, false, file, "(the file itself)");
    if (err == 0)
        err = tsl_buf_printf(out, "#   %s\n", r->err[0] ? r->err : tsl_error_last());
done:
    tsl_buf_free(&dbuf);
    tsl_result_free(res);
    tsl_worker_free(w);
    tsl_plan_free(plan);
    tsl_snapshot_free(snap);
    tsl_policy_free(pol);
    free(psrc);
    free(src);
    sandbox_free(sb);
    free(r);
    return err;
}

