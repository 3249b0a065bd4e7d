/*
 * test_sandbox.c - every way out of the policy sandbox we know of, tried
 * at load time (tsl_policy_compile) and inside a rule (at decision time):
 * io, os, require, package, load/loadstring/dofile/loadfile, debug,
 * string.dump, collectgarbage, bytecode, global reads and writes,
 * metatable tricks on shared tables, __gc finalizers, message handlers;
 * and the bombs: memory, infinite loops, pcall/xpcall swallowing the
 * budget, pathological patterns, deep recursion.  Also the limits on
 * both sides, isolation between chunks of one state, and allocation
 * failure while creating a state.
 */
#include "harness.h"
#include "decide.h"
#include "policy.h"

#include <lauxlib.h>
#include <time.h>

/* Compiles src; returns the error message, or "(compiled)". */
/* The instruction budget and the memory ceiling are what these tests
 * prove, so the wall-clock bound (1 s, test_policy_safety.c proves it)
 * is set out of their way: under sanitizers on a loaded machine it could
 * fire first. */
static const char *load_error(const char *src)
{
    static char msg[1024];
    tsl_policy *pol = NULL;
    policy_limits lim = {0};
    lim.load_time_ms = 60000;
    int rc = policy_compile_ex(&pol, src, strlen(src), "p.lua", &lim);
    tsl_policy_free(pol);
    snprintf(msg, sizeof msg, "%s", rc == 0 ? "(compiled)" : tsl_error_last());
    return msg;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------------------
 * Escapes at load time
 * ---------------------------------------------------------------------- */

static const struct {
    const char *src, *want;
} escapes[] = {
    {"io.open('/etc/passwd')", "p.lua:1: undeclared global 'io'"},
    {"local f = io", "p.lua:1: undeclared global 'io'"},
    {"os.execute('id')", "p.lua:1: undeclared global 'os'"},
    {"require('os')", "p.lua:1: undeclared global 'require'"},
    {"package.loadlib('x', 'y')", "p.lua:1: undeclared global 'package'"},
    {"load('return 1')()", "p.lua:1: undeclared global 'load'"},
    {"loadstring('return 1')", "p.lua:1: undeclared global 'loadstring'"},
    {"dofile('/etc/passwd')", "p.lua:1: undeclared global 'dofile'"},
    {"loadfile('/etc/passwd')", "p.lua:1: undeclared global 'loadfile'"},
    {"debug.getregistry()", "p.lua:1: undeclared global 'debug'"},
    {"collectgarbage('stop')", "p.lua:1: undeclared global 'collectgarbage'"},
    {"print('x')", "p.lua:1: undeclared global 'print'"},
    {"rawset(string, 'x', 1)", "p.lua:1: undeclared global 'rawset'"},
    {"local x = _G", "p.lua:1: undeclared global '_G'"},
    {"coroutine.wrap(function() end)", "p.lua:1: undeclared global 'coroutine'"},
    {"string.dump(function() end)", "p.lua:1: attempt to call a nil value (field 'dump')"},
    {"local d = ('').dump", "(compiled)"}, /* reads nil: dump is gone */
    {"assert(('').dump == nil and string.dump == nil)", "(compiled)"},
    {"math.randomseed(1)", "p.lua:1: attempt to call a nil value (field 'randomseed')"},
    {"x = 1", "p.lua:1: assignment to undeclared global 'x' (use local)"},
    {"_ENV.x = 1", "p.lua:1: assignment to undeclared global 'x' (use local)"},
    {"string = nil", "p.lua:1: assignment to undeclared global 'string' (use local)"},
    {"function f() end", "p.lua:1: assignment to undeclared global 'f' (use local)"},
    {"string.upper = nil", "p.lua:1: attempt to modify read-only table 'string'"},
    {"table.insert = nil", "p.lua:1: attempt to modify read-only table 'table'"},
    {"math.pi = 3", "p.lua:1: attempt to modify read-only table 'math'"},
    {"utf8.x = 1", "p.lua:1: attempt to modify read-only table 'utf8'"},
    {"table.insert(string, 'x')", "p.lua:1: attempt to modify read-only table 'string'"},
    {"setmetatable(string, nil)", "p.lua:1: cannot change a protected metatable"},
    {"setmetatable(_ENV, nil)", "p.lua:1: cannot change a protected metatable"},
    {"assert(getmetatable(string) == 'read-only')", "(compiled)"},
    {"assert(getmetatable('') == 'read-only')", "(compiled)"},
    {"getmetatable('').__index.upper = nil", "p.lua:1: attempt to index a nil value (field '__index')"},
    {"assert(getmetatable(_ENV) == 'read-only')", "(compiled)"},
    {"assert(rawget(string, 'format') == nil and next(string) == nil)", "(compiled)"},
    {"local n = 0 for k in pairs(string) do n = n + 1 end assert(n > 10)", "(compiled)"},
    {"setmetatable({}, { __gc = function() while true do end end })",
     "p.lua:1: __gc metamethods are not allowed in policies"},
    {"\x1bLuaT\x00\x19\x93\r\n\x1a\n", "p.lua: attempt to load a binary chunk (mode is 't')"},
    {"local s = string.rep('a', 300) string.find(s, 'a*a*b')",
     "p.lua:1: pattern too costly for the policy sandbox (2 repetition items on a 300-byte subject"},
    {"string.match(string.rep('a', 64), '(a*)(a*)(a*)(a*)b')",
     "p.lua:1: pattern too costly for the policy sandbox (4 repetition items"},
    {"assert(('ts-lon-01'):match('^ts%-(%a+)%-(%d+)$') == 'lon')", "(compiled)"},
    {"assert(string.find(string.rep('a', 5000), 'b', 1, true) == nil)", "(compiled)"},
    {"local ok, e = xpcall(function(a) return a + 1 end, function(m) return 'H' end, 41)\n"
     "assert(ok and e == 42)\n"
     "local ok2, e2 = xpcall(function() error('boom') end, function(m) return 'H:' .. m end)\n"
     "assert(not ok2 and e2 == 'H:p.lua:3: boom', e2)",
     "(compiled)"},
};

TEST(sandbox__escapes_at_load_time_are_refused)
{
    for (size_t i = 0; i < sizeof escapes / sizeof escapes[0]; i++) {
        size_t len = strlen(escapes[i].src);
        if (escapes[i].src[0] == '\x1b')
            len = 12;
        tsl_policy *pol = NULL;
        int rc = tsl_policy_compile(&pol, escapes[i].src, len, "p.lua");
        tsl_policy_free(pol);
        const char *got = rc == 0 ? "(compiled)" : tsl_error_last();
        if (strncmp(got, escapes[i].want, strlen(escapes[i].want)) != 0)
            FAILF_("escape #%zu %s\n    got:  %s\n    want: %s", i, escapes[i].src, got,
                   escapes[i].want);
        if (rc != 0)
            CHECK_INT(rc, TSL_EPOLICY);
    }
}

/* ------------------------------------------------------------------------
 * Bombs at load time
 * ---------------------------------------------------------------------- */

TEST(sandbox__infinite_loop_at_load_is_refused)
{
    double t0 = now_s();
    CHECK_STR(load_error("local n = 0\nwhile true do n = n + 1 end"),
              "p.lua:2: instruction budget of 10000000 exceeded");
    CHECK(now_s() - t0 < 5.0);
    CHECK_CONTAINS(load_error("local function f() return f() end\nf()"),
                   "instruction budget of 10000000 exceeded");
}

TEST(sandbox__pcall_cannot_swallow_the_budget_at_load)
{
    CHECK_CONTAINS(load_error("while true do pcall(function() while true do end end) end"),
                   "instruction budget");
    CHECK_CONTAINS(load_error("while true do\n"
                              "  xpcall(function() while true do end end,\n"
                              "         function() while true do end end)\nend"),
                   "instruction budget");
    CHECK_CONTAINS(load_error("xpcall(function() error('x') end, function() while true do end end)"),
                   "instruction budget");
    CHECK_CONTAINS(load_error("local t = setmetatable({}, { __close = function() while true do end end })\n"
                              "pcall(function() local x <close> = t error('e') end)"),
                   "instruction budget");
    CHECK_CONTAINS(load_error("local t = setmetatable({}, { __index = function() while true do end end })\n"
                              "while true do pcall(function() return t.x end) end"),
                   "instruction budget");
    CHECK_CONTAINS(load_error("local s = setmetatable({}, { __tostring = function() while true do end end })\n"
                              "pcall(tostring, s) pcall(string.format, '%s', s) while true do end"),
                   "instruction budget");
}

TEST(sandbox__memory_bombs_at_load_are_refused)
{
    CHECK_STR(load_error("local s = 'x'\nwhile true do s = s .. s end"),
              "p.lua: memory limit of 33554432 bytes exceeded while loading the policy");
    CHECK_CONTAINS(load_error("local t = {}\nfor i = 1, 1e9 do t[i] = i end"), "memory limit");
    CHECK_CONTAINS(load_error("local s = string.rep('x', 1 << 40)"), "p.lua");
    CHECK_CONTAINS(load_error("local t = {} for i = 1, 1e6 do t[i] = {} end"), "memory limit");
    /* deep recursion ends in an error, not a crash */
    const char *msg = load_error("local function f(n) return 1 + f(n + 1) end\nf(1)");
    CHECK(strstr(msg, "stack overflow") || strstr(msg, "memory limit"));
}

TEST(sandbox__limits_on_both_sides)
{
    tsl_policy *pol = NULL;
    policy_limits lim = {0};
    /* 100k iterations of 2 instructions: fit 1M, not 100k */
    const char *src = "local n = 0 for i = 1, 100000 do n = n + i end";
    lim.load_budget = 1000000;
    CHECK_OK(policy_compile_ex(&pol, src, strlen(src), "p.lua", &lim));
    tsl_policy_free(pol);
    lim.load_budget = 100000;
    CHECK_INT(policy_compile_ex(&pol, src, strlen(src), "p.lua", &lim), TSL_EPOLICY);
    CHECK_CONTAINS(tsl_error_last(), "instruction budget of 100000 exceeded");
    /* memory: a 1 MB string fits 4 MB, not 512 kB */
    src = "local s = string.rep('x', 1 << 20)";
    lim.load_budget = 0;
    lim.memory = 4 << 20;
    CHECK_OK(policy_compile_ex(&pol, src, strlen(src), "p.lua", &lim));
    tsl_policy_free(pol);
    lim.memory = 512 << 10;
    CHECK_INT(policy_compile_ex(&pol, src, strlen(src), "p.lua", &lim), TSL_EPOLICY);
    CHECK_CONTAINS(tsl_error_last(), "memory limit of 524288 bytes exceeded");
    /* patterns: 2 repetitions on 256 bytes pass, on 257 they do not */
    CHECK_STR(load_error("assert(not string.find(string.rep('a', 256), 'a*a*b'))"), "(compiled)");
    CHECK_CONTAINS(load_error("string.find(string.rep('a', 257), 'a*a*b')"), "too costly");
    /* source size */
    size_t big = POL_MAX_SOURCE + 1;
    char *text = malloc(big);
    CHECK(text != NULL);
    memset(text, ' ', big);
    CHECK_INT(tsl_policy_compile(&pol, text, big, "big.lua"), TSL_EPOLICY);
    free(text);
    CHECK_CONTAINS(tsl_error_last(), "larger than");
}

/* ------------------------------------------------------------------------
 * Escapes and bombs inside a rule
 * ---------------------------------------------------------------------- */

static tsl_snapshot *small_estate(void)
{
    tsl_snapshot *s;
    const char *lon[] = {"London"};
    int err = 0;
    if (tsl_snapshot_begin(&s, NULL) < 0)
        return NULL;
    err |= snap_add_site(s, "London", "GB", NULL, NULL);
    err |= snap_add_subnet(s, "London", "10.10.0.0/16");
    err |= snap_add_server(s, "ts-lon-01", NULL, "10.10.0.1", lon, 1, true, true, 1000, 10, 5, 0);
    err |= snap_add_server(s, "ts-lon-02", NULL, "10.10.0.2", lon, 1, true, true, 1000, 20, 5, 0);
    err |= tsl_snapshot_seal(s);
    if (err) {
        tsl_snapshot_free(s);
        return NULL;
    }
    return s;
}

/* Runs a one-rule policy once; returns the worker's last policy error, or
 * "(no error)", and the entry count in *count. */
static const char *rule_error(const char *body, size_t *count)
{
    static char msg[1024];
    char src[2048];
    tsl_snapshot *s = small_estate();
    tsl_policy *pol = NULL;
    tsl_plan *plan = NULL;
    tsl_worker *w = NULL;
    tsl_result *res = NULL;
    tsl_request req = {0};
    /* a generous time limit: these cases prove the instruction budget, which
     * must not lose the race to the clock on a loaded machine */
    snprintf(src, sizeof src, "defaults { rule_budget = 200000, rule_time_ms = 10000 }\n"
                              "rule(\"r\", function(req, list)\n%s\nend)\n",
             body);
    snprintf(msg, sizeof msg, "(setup failed)");
    req.ips[0] = "10.10.1.1";
    req.nips = 1;
    if (s && tsl_policy_compile(&pol, src, strlen(src), "r.lua") == 0 &&
        tsl_plan_new(&plan, s, pol) == 0 && tsl_worker_new(&w) == 0 &&
        tsl_result_new(&res) == 0 && tsl_decide(res, w, plan, &req, NULL) == 0) {
        *count = tsl_result_count(res);
        snprintf(msg, sizeof msg, "%s",
                 tsl_worker_policy_errors(w) ? tsl_worker_last_policy_error(w) : "(no error)");
    } else {
        snprintf(msg, sizeof msg, "(setup failed: %s)", tsl_error_last());
    }
    tsl_result_free(res);
    tsl_worker_free(w);
    tsl_plan_free(plan);
    tsl_policy_free(pol);
    tsl_snapshot_free(s);
    return msg;
}

TEST(sandbox__escapes_inside_a_rule_are_refused)
{
    static const struct {
        const char *body, *want;
    } cases[] = {
        {"  io.write('x')", "r.lua:3: undeclared global 'io'"},
        {"  os.exit(1)", "r.lua:3: undeclared global 'os'"},
        {"  require('io')", "r.lua:3: undeclared global 'require'"},
        {"  load('x')", "r.lua:3: undeclared global 'load'"},
        {"  debug.sethook()", "r.lua:3: undeclared global 'debug'"},
        {"  string.dump(print)", "r.lua:3: undeclared global 'print'"},
        {"  leaked = list", "r.lua:3: assignment to undeclared global 'leaked'"},
        {"  string.lower = string.upper", "r.lua:3: attempt to modify read-only table 'string'"},
        {"  setmetatable({}, { __gc = function() end })", "r.lua:3: __gc metamethods are not allowed"},
        {"  package.loaded.os = 1", "r.lua:3: undeclared global 'package'"},
        {"  loadstring('return 1')", "r.lua:3: undeclared global 'loadstring'"},
        {"  dofile('/etc/passwd')", "r.lua:3: undeclared global 'dofile'"},
        {"  loadfile('/etc/passwd')", "r.lua:3: undeclared global 'loadfile'"},
        {"  collectgarbage('stop')", "r.lua:3: undeclared global 'collectgarbage'"},
        {"  local f = string.dump", "(no error)"},
        {"  assert(string.dump == nil and ('').dump == nil)", "(no error)"},
        {"  _ENV.x = 1", "r.lua:3: assignment to undeclared global 'x'"},
        {"  setmetatable(string, nil)", "r.lua:3: cannot change a protected metatable"},
        {"  setmetatable(_ENV, {})", "r.lua:3: cannot change a protected metatable"},
        {"  getmetatable('').__index.upper = nil", "r.lua:3: attempt to index a nil value"},
        {"  table.insert(math, 1)", "r.lua:3: attempt to modify read-only table 'math'"},
        {"  req.site = 'Madrid'", "r.lua:3: attempt to modify a read-only request"},
        {"  setmetatable(req, nil)",
         "r.lua:3: bad argument #1 to 'setmetatable' (table expected, got tsl.request)"},
        {"  getmetatable(req).__newindex = nil", "r.lua:3: attempt to index a string value"},
        {"  getmetatable(list).__index = nil", "r.lua:3: attempt to index a string value"},
    };
    size_t n = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *got = rule_error(cases[i].body, &n);
        if (!strstr(got, cases[i].want))
            FAILF_("rule body %s\n    got:  %s\n    want: %s", cases[i].body, got, cases[i].want);
        CHECK_INT(n, 2); /* the request still got its list */
    }
}

TEST(sandbox__bombs_inside_a_rule_are_stopped)
{
    size_t n = 0;
    CHECK_CONTAINS(rule_error("  list:truncate(0)\n  while true do end", &n),
                   "rule \"r\" (r.lua:2) failed: r.lua:4: instruction budget of 200000 exceeded");
    CHECK_INT(n, 2); /* the list before the rule */
    CHECK_CONTAINS(rule_error("  while true do pcall(function() while true do end end) end", &n),
                   "instruction budget");
    CHECK_CONTAINS(rule_error("  while true do xpcall(function() while true do end end, "
                              "function() while true do end end) end",
                              &n),
                   "instruction budget");
    CHECK_CONTAINS(rule_error("  local s = 'x' while true do s = s .. s end", &n), "memory limit");
    CHECK_CONTAINS(rule_error("  list:reorder(function(a, b) while true do end end)", &n),
                   "instruction budget");
    CHECK_CONTAINS(rule_error("  list:restrict(function(e) error('no') end)", &n), "r.lua:3: no");
    CHECK_INT(n, 2);
}

/* ------------------------------------------------------------------------
 * One state, many chunks: the frozen base is shared, environments are not
 * ---------------------------------------------------------------------- */

struct two_chunks {
    sandbox *sb;
    int st1, st2;
};

static int two_chunks_p(lua_State *L)
{
    struct two_chunks *a = lua_touserdata(L, 1);
    const char *c1 = "pcall(function() string.rep = nil end)\n"
                     "pcall(function() getmetatable('').__index = {} end)\n"
                     "local ok = pcall(function() _ENV.shared = 1 end)\n"
                     "assert(not ok)\n";
    const char *c2 = "assert(string.rep('a', 2) == 'aa')\n"
                     "assert(('x'):upper() == 'X')\n"
                     "assert(not pcall(function() return shared end))\n";
    sandbox_push_env(a->sb, 0);
    a->st1 = sandbox_load(a->sb, c1, strlen(c1), "one.lua", -1);
    if (a->st1 == LUA_OK)
        a->st1 = sandbox_call(a->sb, 0, 0, 100000);
    lua_settop(L, 1);
    sandbox_push_env(a->sb, 0);
    a->st2 = sandbox_load(a->sb, c2, strlen(c2), "two.lua", -1);
    if (a->st2 == LUA_OK)
        a->st2 = sandbox_call(a->sb, 0, 0, 100000);
    return 0;
}

TEST(sandbox__chunks_of_one_state_cannot_touch_each_other)
{
    sandbox *sb = NULL;
    struct two_chunks a = {0};
    CHECK_OK(sandbox_new(&sb, 0, NULL));
    a.sb = sb;
    lua_pushcfunction(sb->L, two_chunks_p);
    lua_pushlightuserdata(sb->L, &a);
    int st = lua_pcall(sb->L, 1, 0, 0);
    char msg[256] = "";
    if (st != LUA_OK)
        sandbox_errmsg(sb, st, msg, sizeof msg, false);
    sandbox_free(sb);
    CHECK_STR(msg, "");
    CHECK_INT(a.st1, LUA_OK);
    CHECK_INT(a.st2, LUA_OK);
}

TEST(sandbox__state_creation_survives_every_allocation_failure)
{
    int n;
    for (n = 1; n < 100000; n++) {
        tsl_alloc_probe probe = {0, (uint64_t)n, true, false};
        sandbox *sb = NULL;
        int rc = sandbox_new(&sb, 0, &probe);
        if (!probe.fired) {
            CHECK_OK(rc);
            sandbox_free(sb);
            break;
        }
        CHECK_INT(rc, TSL_ENOMEM);
        CHECK(sb == NULL);
    }
    CHECK(n > 50);
}

TEST(sandbox__memory_is_counted_and_returned)
{
    sandbox *sb = NULL;
    CHECK_OK(sandbox_new(&sb, 0, NULL));
    CHECK(sb->used > 0);
    CHECK(sb->used < 512 * 1024);
    CHECK(sb->peak >= sb->used);
    sandbox_free(sb);
}

int main(void)
{
    RUN(sandbox__escapes_at_load_time_are_refused);
    RUN(sandbox__infinite_loop_at_load_is_refused);
    RUN(sandbox__pcall_cannot_swallow_the_budget_at_load);
    RUN(sandbox__memory_bombs_at_load_are_refused);
    RUN(sandbox__limits_on_both_sides);
    RUN(sandbox__escapes_inside_a_rule_are_refused);
    RUN(sandbox__bombs_inside_a_rule_are_stopped);
    RUN(sandbox__chunks_of_one_state_cannot_touch_each_other);
    RUN(sandbox__state_creation_survives_every_allocation_failure);
    RUN(sandbox__memory_is_counted_and_returned);
    return tsl_test_main();
}
