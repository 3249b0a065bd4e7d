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
 * Used by: the CLI (tsl test).  Needs: policy.h, decide.h, store.h (JSON
 * inventories go through an in-memory store, as imports do).
 */
#include "decide.h"
#include "policy.h"
#include "store.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define TEST_NOW_DEFAULT TSL_ESTATE_EPOCH

typedef struct runner {
    const char *path;        /* the test file */
    char dir[1024];          /* its directory, for relative names */
    char policy[1024];       /* declared policy path ("" none) */
    char inventory[1024];    /* declared JSON inventory path ("" none or table) */
    bool inventory_table;    /* the inventory is a table (registry: inv_ref) */
    int inv_ref, tests_ref;
    int64_t now;
    int ntests;
    char err[1024];          /* a problem with the file itself */
} runner;

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
 * Raw table access (no metamethods: nothing of the file runs from here)
 * ---------------------------------------------------------------------- */

static int rawfield(lua_State *L, int idx, const char *k)
{
    idx = lua_absindex(L, idx);
    lua_pushstring(L, k);
    return lua_rawget(L, idx);
}

/* Field as a string (NULL if absent); errors on another type. */
static const char *str_field(lua_State *L, int idx, const char *k, const char *what)
{
    int t = rawfield(L, idx, k);
    const char *s = NULL;
    if (t == LUA_TSTRING)
        s = lua_tostring(L, -1);
    else if (t != LUA_TNIL)
        luaL_error(L, "%s: field \"%s\" must be a string", what, k);
    lua_pop(L, 1); /* the string stays alive: the table holds it */
    return s;
}

static bool int_field(lua_State *L, int idx, const char *k, const char *what, int64_t *out)
{
    int t = rawfield(L, idx, k), isint = 0;
    bool has = false;
    if (t == LUA_TNUMBER) {
        *out = (int64_t)lua_tointegerx(L, -1, &isint);
        if (!isint)
            luaL_error(L, "%s: field \"%s\" must be a whole number", what, k);
        has = true;
    } else if (t != LUA_TNIL) {
        luaL_error(L, "%s: field \"%s\" must be a whole number", what, k);
    }
    lua_pop(L, 1);
    return has;
}

static int bool_field(lua_State *L, int idx, const char *k, const char *what)
{
    int t = rawfield(L, idx, k), v = -1;
    if (t == LUA_TBOOLEAN)
        v = lua_toboolean(L, -1);
    else if (t != LUA_TNIL)
        luaL_error(L, "%s: field \"%s\" must be true or false", what, k);
    lua_pop(L, 1);
    return v;
}

static void check_keys(lua_State *L, int idx, const char *const *allowed, const char *what)
{
    idx = lua_absindex(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "%s: unexpected positional value", what);
        const char *k = lua_tostring(L, -1);
        bool ok = false;
        for (const char *const *a = allowed; *a && !ok; a++)
            ok = strcmp(*a, k) == 0;
        if (!ok)
            luaL_error(L, "%s: unknown field \"%s\"", what, k);
    }
}

/* A list of strings at the field; pushes nothing; n = -1 when absent. */
static lua_Integer list_len(lua_State *L, int idx, const char *k, const char *what)
{
    int t = rawfield(L, idx, k);
    lua_Integer n = -1;
    if (t == LUA_TTABLE)
        n = (lua_Integer)lua_rawlen(L, -1);
    else if (t != LUA_TNIL)
        luaL_error(L, "%s: field \"%s\" must be a list", what, k);
    lua_pop(L, 1);
    return n;
}

static const char *list_str(lua_State *L, int idx, const char *k, lua_Integer i, const char *what)
{
    rawfield(L, idx, k);
    lua_rawgeti(L, -1, i);
    if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "%s: %s[%d] must be a string", what, k, (int)i);
    const char *s = lua_tostring(L, -1);
    lua_pop(L, 2);
    return s;
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
    int t = rawfield(L, inv, k);
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
    check_keys(L, idx, keys, what);
    const char *name = str_field(L, idx, "name", what);
    if (!name)
        luaL_error(L, "%s: a site needs a name", what);
    if (snap_add_site(a->snap, name, str_field(L, idx, "country", what), NULL, NULL) < 0)
        builder_failed(L, what);
    lua_Integer n = list_len(L, idx, "subnets", what);
    for (lua_Integer i = 1; i <= n; i++)
        if (snap_add_subnet(a->snap, name, list_str(L, idx, "subnets", i, what)) < 0)
            builder_failed(L, what);
}

static void add_server(lua_State *L, struct inv_args *a, int idx, const char *what)
{
    static const char *const keys[] = {"name", "host", "ip", "sites", "registered", "service",
                                       "capacity", "connections", "response_ms", "heartbeat",
                                       "heartbeat_ago", NULL};
    const char *sites[16];
    int64_t cap = 1000, conns = 0, resp = 10, hb = 0, ago;
    check_keys(L, idx, keys, what);
    const char *name = str_field(L, idx, "name", what);
    if (!name)
        luaL_error(L, "%s: a task server needs a name", what);
    lua_Integer n = list_len(L, idx, "sites", what);
    if (n > 16)
        luaL_error(L, "%s: at most 16 sites", what);
    for (lua_Integer i = 1; i <= n; i++)
        sites[i - 1] = list_str(L, idx, "sites", i, what);
    int reg = bool_field(L, idx, "registered", what);
    const char *service = str_field(L, idx, "service", what);
    if (service && strcmp(service, "running") != 0 && strcmp(service, "stopped") != 0)
        luaL_error(L, "%s: service must be \"running\" or \"stopped\"", what);
    int_field(L, idx, "capacity", what, &cap);
    int_field(L, idx, "connections", what, &conns);
    int_field(L, idx, "response_ms", what, &resp);
    int_field(L, idx, "heartbeat", what, &hb);
    if (int_field(L, idx, "heartbeat_ago", what, &ago))
        hb = a->r->now - ago;
    if (snap_add_server(a->snap, name, str_field(L, idx, "host", what), str_field(L, idx, "ip", what),
                        n > 0 ? sites : NULL, n > 0 ? (size_t)n : 0, reg != 0,
                        !service || strcmp(service, "running") == 0, cap, conns, resp, hb) < 0)
        builder_failed(L, what);
}

static void add_client(lua_State *L, struct inv_args *a, int idx, const char *what)
{
    static const char *const keys[] = {"guid", "name", "ip", "department", "site", "assigned",
                                       NULL};
    check_keys(L, idx, keys, what);
    const char *guid = str_field(L, idx, "guid", what);
    if (!guid)
        luaL_error(L, "%s: a client needs a guid", what);
    if (snap_add_client(a->snap, guid, str_field(L, idx, "name", what), str_field(L, idx, "ip", what),
                        str_field(L, idx, "department", what), str_field(L, idx, "site", what),
                        str_field(L, idx, "assigned", what)) < 0)
        builder_failed(L, what);
}

static void add_error(lua_State *L, struct inv_args *a, int idx, const char *what)
{
    static const char *const keys[] = {"client", "server", "at", "ago", "error", NULL};
    int64_t at = a->r->now - 60, ago;
    check_keys(L, idx, keys, what);
    const char *client = str_field(L, idx, "client", what);
    const char *server = str_field(L, idx, "server", what);
    if (!client || !server)
        luaL_error(L, "%s: a connection error needs a client and a server", what);
    int_field(L, idx, "at", what, &at);
    if (int_field(L, idx, "ago", what, &ago))
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
    check_keys(L, inv, keys, "inventory");
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
 * One test
 * ---------------------------------------------------------------------- */

struct case_args {
    runner *r;
    tsl_worker *w;
    tsl_result *res;
    const tsl_plan *plan;
    int index;               /* 1-based in the tests table */
    const char *name;
    tsl_buf *diag;           /* "#   ..." lines on failure */
    bool pass;
};

static void diag(struct case_args *a, const char *fmt, ...) TSL_PRINTF(2, 3);

static void diag(struct case_args *a, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    a->pass = false;
    tsl_buf_printf(a->diag, "#   %s\n", line);
}

static void names_of(const tsl_result *res, char *dst, size_t len)
{
    dst[0] = '\0';
    for (size_t i = 0; i < tsl_result_count(res); i++) {
        size_t n = strlen(dst);
        snprintf(dst + n, len - n, "%s%s", i ? " " : "", tsl_result_entry(res, i)->name);
    }
    if (!dst[0])
        snprintf(dst, len, "(empty)");
}

static int case_p(lua_State *L)
{
    struct case_args *a = lua_touserdata(L, 1);
    static const char *const keys[] = {
        "client", "ip", "ips", "department", "task", "now", "expect", "first", "contains",
        "excludes", "count", "blocked", "strict", "site", "tiers", "after", "reasons", "ttl",
        "rule_error", NULL};
    tsl_request req;
    char what[300], got[4096], want[4096];
    int64_t v;

    lua_rawgeti(L, LUA_REGISTRYINDEX, a->r->tests_ref);
    lua_rawgeti(L, -1, a->index);
    rawfield(L, -1, "name");
    a->name = lua_tostring(L, -1);
    lua_pop(L, 1);
    rawfield(L, -1, "spec");
    int spec = lua_gettop(L);
    snprintf(what, sizeof what, "test \"%s\"", a->name ? a->name : "?");
    check_keys(L, spec, keys, what);

    memset(&req, 0, sizeof req);
    req.client = str_field(L, spec, "client", what);
    req.department = str_field(L, spec, "department", what);
    req.task = str_field(L, spec, "task", what);
    req.now = a->r->now;
    if (int_field(L, spec, "now", what, &v))
        req.now = v;
    const char *ip = str_field(L, spec, "ip", what);
    if (ip)
        req.ips[req.nips++] = ip;
    lua_Integer nips = list_len(L, spec, "ips", what);
    for (lua_Integer i = 1; i <= nips && req.nips < TSL_MAX_IPS; i++)
        req.ips[req.nips++] = list_str(L, spec, "ips", i, what);

    uint64_t errors = a->w->policy_errors;
    if (tsl_decide(a->res, a->w, a->plan, &req, NULL) < 0) {
        diag(a, "the request was refused: %s", tsl_error_last());
        return 0;
    }
    const tsl_result *res = a->res;
    size_t n = tsl_result_count(res);
    names_of(res, got, sizeof got);

    lua_Integer ne = list_len(L, spec, "expect", what);
    if (ne >= 0) {
        bool same = (size_t)ne == n;
        want[0] = '\0';
        for (lua_Integer i = 1; i <= ne; i++) {
            const char *s = list_str(L, spec, "expect", i, what);
            size_t k = strlen(want);
            snprintf(want + k, sizeof want - k, "%s%s", i > 1 ? " " : "", s);
            if (same && strcasecmp(s, tsl_result_entry(res, (size_t)i - 1)->name) != 0)
                same = false;
        }
        if (!want[0])
            snprintf(want, sizeof want, "(empty)");
        if (!same) {
            diag(a, "expected: %s", want);
            diag(a, "got:      %s", got);
        }
    }
    lua_Integer nf = list_len(L, spec, "first", what);
    for (lua_Integer i = 1; i <= nf; i++) {
        const char *s = list_str(L, spec, "first", i, what);
        if ((size_t)i > n || strcasecmp(s, tsl_result_entry(res, (size_t)i - 1)->name) != 0) {
            diag(a, "expected entry %d to be %s; got: %s", (int)i, s, got);
            break;
        }
    }
    for (int pass = 0; pass < 2; pass++) {
        const char *field = pass ? "excludes" : "contains";
        lua_Integer nc = list_len(L, spec, field, what);
        for (lua_Integer i = 1; i <= nc; i++) {
            const char *s = list_str(L, spec, field, i, what);
            bool found = false;
            for (size_t k = 0; k < n && !found; k++)
                found = policy_glob_match(s, tsl_result_entry(res, k)->name);
            if (found == (bool)pass)
                diag(a, "expected the list %s %s; got: %s", pass ? "not to contain" : "to contain",
                     s, got);
        }
    }
    if (int_field(L, spec, "count", what, &v) && (size_t)v != n)
        diag(a, "expected %lld entries; got %zu: %s", (long long)v, n, got);
    if (int_field(L, spec, "ttl", what, &v) && v != tsl_result_ttl(res))
        diag(a, "expected ttl %lld; got %d", (long long)v, tsl_result_ttl(res));
    int b = bool_field(L, spec, "blocked", what);
    if (b >= 0 && b != (int)tsl_result_blocked(res))
        diag(a, "expected blocked = %s; got %s (%s)", b ? "true" : "false",
             tsl_result_blocked(res) ? "true" : "false", got);
    b = bool_field(L, spec, "strict", what);
    if (b >= 0 && b != (int)tsl_result_strict(res))
        diag(a, "expected strict = %s; got %s", b ? "true" : "false",
             tsl_result_strict(res) ? "true" : "false");
    int t = rawfield(L, spec, "site");
    if (t == LUA_TSTRING) {
        const char *s = lua_tostring(L, -1);
        if (!tsl_result_site(res) || strcasecmp(s, tsl_result_site(res)) != 0)
            diag(a, "expected site %s; got %s", s, tsl_result_site(res) ? tsl_result_site(res) : "none");
    } else if (t == LUA_TBOOLEAN && !lua_toboolean(L, -1)) {
        if (tsl_result_site(res))
            diag(a, "expected no site; got %s", tsl_result_site(res));
    } else if (t != LUA_TNIL) {
        luaL_error(L, "%s: field \"site\" must be a site name or false", what);
    }
    lua_pop(L, 1);
    for (int pass = 0; pass < 2; pass++) {
        const char *field = pass ? "after" : "tiers";
        lua_Integer nt = list_len(L, spec, field, what);
        if (nt < 0)
            continue;
        bool same = (size_t)nt == n;
        rawfield(L, spec, field);
        for (lua_Integer i = 1; i <= nt && same; i++) {
            lua_rawgeti(L, -1, i);
            int isint = 0;
            lua_Integer x = lua_tointegerx(L, -1, &isint);
            lua_pop(L, 1);
            if (!isint)
                luaL_error(L, "%s: %s[%d] must be a whole number", what, field, (int)i);
            const tsl_entry *e = tsl_result_entry(res, (size_t)i - 1);
            same = (pass ? e->after : e->tier) == x;
        }
        lua_pop(L, 1);
        if (!same) {
            char gt[1024] = "";
            for (size_t k = 0; k < n; k++) {
                size_t l = strlen(gt);
                snprintf(gt + l, sizeof gt - l, "%s%d", k ? " " : "",
                         pass ? tsl_result_entry(res, k)->after : tsl_result_entry(res, k)->tier);
            }
            diag(a, "%s differ: got %s (%s)", field, gt[0] ? gt : "(empty)", got);
        }
    }
    lua_Integer nr = list_len(L, spec, "reasons", what);
    for (lua_Integer i = 1; i <= nr; i++) {
        const char *s = list_str(L, spec, "reasons", i, what);
        const tsl_entry *e = tsl_result_entry(res, (size_t)i - 1);
        if (!e || !e->reason || !strstr(e->reason, s))
            diag(a, "expected the reason of entry %d to contain \"%s\"; got \"%s\"", (int)i, s,
                 e && e->reason ? e->reason : "(no entry)");
    }
    /* rule errors fail a test unless it expects one */
    bool failed_rule = a->w->policy_errors != errors;
    t = rawfield(L, spec, "rule_error");
    if (t == LUA_TNIL || (t == LUA_TBOOLEAN && !lua_toboolean(L, -1))) {
        if (failed_rule)
            diag(a, "a rule failed: %s", tsl_worker_last_policy_error(a->w));
    } else if (t == LUA_TBOOLEAN) {
        if (!failed_rule)
            diag(a, "expected a rule to fail; none did");
    } else if (t == LUA_TSTRING) {
        if (!failed_rule || !strstr(tsl_worker_last_policy_error(a->w), lua_tostring(L, -1)))
            diag(a, "expected a rule to fail with \"%s\"; got %s", lua_tostring(L, -1),
                 failed_rule ? tsl_worker_last_policy_error(a->w) : "no failure");
    } else {
        luaL_error(L, "%s: field \"rule_error\" must be true, false or a message", what);
    }
    lua_pop(L, 1);
    return 0;
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
        lua_pushcfunction(sb->L, case_p);
        lua_pushlightuserdata(sb->L, &ca);
        int st = lua_pcall(sb->L, 1, 0, 0);
        snprintf(name, sizeof name, "%s", ca.name ? ca.name : "?");
        if (st != LUA_OK) {
            char msg[1024];
            sandbox_errmsg(sb, st, msg, sizeof msg, false);
            lua_pop(sb->L, 1);
            diag(&ca, "%s", msg);
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
