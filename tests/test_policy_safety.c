/*
 * test_policy_safety.c - policy code is safe whatever it calls: the
 * reproductions of issue 9 (items 1, 2, 3 and 10's last bullet) as tests.
 *
 *   - a list method called from inside another one's callback (a reorder
 *     comparator, a remove predicate) is refused with a clear message and
 *     never touches freed memory (run this file under ASan);
 *   - a block, once applied, is never undone within a request;
 *   - every evaluation of policy code has a wall-clock bound that also
 *     covers time spent inside C library functions (string.rep, patterns,
 *     plain finds, table.sort ...), and an overrun is counted and shown;
 *   - no memory address is visible to policy code;
 *   - the same patterns through `tsl check`, `tsl test`, `tsl list
 *     --policy`, and the broker's POST /v1/policy, which checks uploads off
 *     its control thread: heartbeats and SIGTERM are honoured while an
 *     uploaded policy spins.
 */
#include "broker_client.h"
#include "decide.h"
#include "harness.h"
#include "policy.h"
#include "tsl.h"

#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#define NOW 1800000000LL

static tsl_snapshot *snap;
static tsl_worker *W;
static tsl_result *R;
static tsl_plan *P;
static char ERR[1024];

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* London (3 servers, site block with fallback to Paris), Paris (2). */
static tsl_snapshot *build_estate(void)
{
    tsl_snapshot *s;
    const char *lon[] = {"London"}, *par[] = {"Paris"};
    int err = 0;
    if (tsl_snapshot_begin(&s, NULL) < 0)
        return NULL;
    err |= snap_add_site(s, "London", "GB", NULL, NULL);
    err |= snap_add_subnet(s, "London", "10.10.0.0/16");
    err |= snap_add_site(s, "Paris", "FR", NULL, NULL);
    err |= snap_add_subnet(s, "Paris", "10.30.0.0/16");
    err |= snap_add_server(s, "ts-lon-01", NULL, "10.10.0.1", lon, 1, true, true, 1000, 100, 10, 0);
    err |= snap_add_server(s, "ts-lon-02", NULL, "10.10.0.2", lon, 1, true, true, 1000, 50, 20, 0);
    err |= snap_add_server(s, "ts-lon-03", NULL, "10.10.0.3", lon, 1, true, true, 1000, 10, 30, 0);
    err |= snap_add_server(s, "ts-par-01", NULL, "10.30.0.1", par, 1, true, true, 1000, 1, 10, 0);
    err |= snap_add_server(s, "ts-par-02", NULL, "10.30.0.2", par, 1, true, true, 1000, 2, 10, 0);
    err |= snap_add_client(s, "C-LON", "LON-PC", "10.10.1.1", "Sales", NULL, NULL);
    err |= tsl_snapshot_seal(s);
    if (err) {
        fprintf(stderr, "fixture: %s\n", tsl_error_last());
        tsl_snapshot_free(s);
        return NULL;
    }
    return s;
}

static bool use(const char *src)
{
    tsl_policy *pol = NULL;
    tsl_plan_free(P);
    P = NULL;
    ERR[0] = '\0';
    if (tsl_policy_compile(&pol, src, strlen(src), "t.lua") < 0) {
        snprintf(ERR, sizeof ERR, "%s", tsl_error_last());
        return false;
    }
    int rc = tsl_plan_new(&P, snap, pol);
    tsl_policy_free(pol);
    if (rc < 0)
        snprintf(ERR, sizeof ERR, "%s", tsl_error_last());
    return rc == 0;
}

#define USE(src)                                                                 \
    do {                                                                         \
        if (!use(src))                                                           \
            FAILF_("policy did not load: %s", ERR);                              \
    } while (0)

/* Decides for C-LON; "name/tier name/tier ..." */
static const char *run(void)
{
    static char out[2048];
    tsl_request req = {0};
    req.client = "C-LON";
    req.now = NOW;
    out[0] = '\0';
    if (tsl_decide(R, W, P, &req, NULL) < 0) {
        snprintf(out, sizeof out, "ERROR %s", tsl_error_last());
        return out;
    }
    for (size_t i = 0; i < tsl_result_count(R); i++) {
        const tsl_entry *e = tsl_result_entry(R, i);
        size_t n = strlen(out);
        snprintf(out + n, sizeof out - n, "%s%s/%d", i ? " " : "", e->name, e->tier);
    }
    return out;
}

static const char *last_error(void)
{
    const char *m = tsl_worker_last_policy_error(W);
    return m ? m : "(none)";
}

/* London's approved set, then Paris as fallback tier 1. */
#define SITES                                                                    \
    "site \"London\" { allow = { \"ts-lon-*\" }, fallback = { \"Paris\" } }\n"

/* ------------------------------------------------------------------------
 * Item 1: nested list calls
 * ---------------------------------------------------------------------- */

/* The first pattern: a reorder comparator that calls list:add and
 * then list:reorder (ASan saw a heap-use-after-free). */
TEST(safety__add_from_inside_reorder_comparator_is_refused)
{
    uint64_t before = tsl_worker_policy_errors(W);
    USE(SITES "rule(\"r\", function(req, list)\n"
              "  list:remove(\"ts-lon-03\")\n"
              "  list:reorder(function(a, b)\n"
              "    list:add(\"ts-lon-03\")\n"
              "    list:reorder(function(x, y) return x.name < y.name end)\n"
              "    return a.name > b.name\n"
              "  end)\n"
              "end)\n");
    /* the list as it stood before the rule */
    CHECK_STR(run(), "ts-lon-03/0 ts-lon-02/0 ts-lon-01/0 ts-par-01/1 ts-par-02/1");
    CHECK_INT(tsl_worker_policy_errors(W), before + 1);
    CHECK_CONTAINS(last_error(), "t.lua:5: list:add called from inside list:reorder's comparator");
}

/* The second: a remove predicate that calls list:prefer. */
TEST(safety__prefer_from_inside_remove_predicate_is_refused)
{
    USE(SITES "rule(\"r\", function(req, list)\n"
              "  list:remove(function(e)\n"
              "    list:prefer(\"ts-par-*\")\n"
              "    return e.name == \"ts-lon-01\"\n"
              "  end)\n"
              "end)\n");
    CHECK_STR(run(), "ts-lon-03/0 ts-lon-02/0 ts-lon-01/0 ts-par-01/1 ts-par-02/1");
    CHECK_CONTAINS(last_error(), "list:prefer called from inside list:remove's predicate");
}

TEST(safety__every_changing_method_is_refused_inside_a_callback)
{
    static const char *const calls[] = {
        "list:add('ts-lon-03')", "list:remove('ts-lon-01')", "list:restrict('ts-lon-*')",
        "list:truncate(1)", "list:block_fallback()", "list:prefer('ts-par-01')",
        "list:reorder(function(x, y) return false end)", "list:set_strict(true)",
    };
    static const char *const outers[] = {
        "list:reorder(function(a, b) %s return false end)",
        "list:remove(function(e) %s return false end)",
        "list:restrict(function(e) %s return true end)",
        "list:prefer(function(e) %s return true end)",
    };
    char src[1024], body[256];
    for (size_t o = 0; o < sizeof outers / sizeof *outers; o++) {
        for (size_t c = 0; c < sizeof calls / sizeof *calls; c++) {
            snprintf(body, sizeof body, outers[o], calls[c]);
            snprintf(src, sizeof src, SITES "rule(\"r\", function(req, list)\n  %s\nend)\n", body);
            USE(src);
            CHECK_STR(run(), "ts-lon-03/0 ts-lon-02/0 ts-lon-01/0 ts-par-01/1 ts-par-02/1");
            if (!strstr(last_error(), "called from inside list:"))
                FAILF_("%s\n    got: %s", body, last_error());
        }
    }
}

/* Reading inside a callback is fine, and a refused call caught by pcall
 * leaves the rule free to change the list afterwards. */
TEST(safety__callbacks_may_read_and_the_refusal_does_not_stick)
{
    USE(SITES "rule(\"r\", function(req, list)\n"
              "  list:reorder(function(a, b)\n"
              "    assert(#list == 5 and list:find('ts-lon-01') and list[1].name)\n"
              "    for i, e in pairs(list) do local _ = e.load end\n"
              "    return a.name < b.name\n"
              "  end)\n"
              "  local ok, err = pcall(function()\n"
              "    list:remove(function(e) list:truncate(0) return true end)\n"
              "  end)\n"
              "  assert(not ok and err:find('list:truncate called from inside', 1, true))\n"
              "  list:truncate(4)\n"
              "end)\n");
    CHECK_STR(run(), "ts-lon-01/0 ts-lon-02/0 ts-lon-03/0 ts-par-01/1");
    CHECK_STR(tsl_worker_last_policy_error(W) ? "" : "", "");
}

/* ------------------------------------------------------------------------
 * Item 2: a block is never undone within a request
 * ---------------------------------------------------------------------- */

/* The pattern: a comparator that blocks fallback and re-adds.  The
 * block inside the comparator is refused (the list before the rule); a
 * block applied before the comparator stays, whatever it tries. */
TEST(safety__comparator_cannot_block_then_readd_fallback)
{
    USE(SITES "rule(\"r\", function(req, list)\n"
              "  list:remove('ts-lon-03')\n"
              "  list:reorder(function(a, b)\n"
              "    list:block_fallback()\n"
              "    list:add('ts-lon-03')\n"
              "    return false\n"
              "  end)\n"
              "end)\n");
    CHECK_STR(run(), "ts-lon-03/0 ts-lon-02/0 ts-lon-01/0 ts-par-01/1 ts-par-02/1");
    CHECK(!tsl_result_blocked(R));
    CHECK_CONTAINS(last_error(),
                   "list:block_fallback called from inside list:reorder's comparator");

    USE(SITES "rule(\"r\", function(req, list)\n"
              "  list:block_fallback()\n"
              "  list:remove('ts-lon-03')\n"
              "  list:reorder(function(a, b)\n"
              "    pcall(list.add, list, 'ts-par-01')\n"
              "    pcall(list.add, list, 'ts-lon-03')\n"
              "    return a.name < b.name\n"
              "  end)\n"
              "end)\n");
    CHECK_STR(run(), "ts-lon-01/0 ts-lon-02/0");
    CHECK(!tsl_result_blocked(R));
}

/* A block survives the failure of the rule that applied it, and a later
 * rule can neither add outside the approved set nor see fallback again. */
TEST(safety__block_is_a_latch_for_the_rest_of_the_request)
{
    USE(SITES "rule(\"blocks then fails\", function(req, list)\n"
              "  list:block_fallback()\n"
              "  error('late failure')\n"
              "end)\n"
              "rule(\"never runs\", function(req, list) list:add('ts-par-01') end)\n");
    CHECK_STR(run(), "ts-lon-03/0 ts-lon-02/0 ts-lon-01/0");
    CHECK(!tsl_result_blocked(R));

    USE(SITES "rule(\"blocks\", function(req, list)\n"
              "  list:truncate(0)\n"
              "  list:block_fallback()\n"
              "end)\n"
              "rule(\"tries to undo\", function(req, list)\n"
              "  assert(list.blocked)\n"
              "  local ok, why = list:add('ts-par-01')\n"
              "  assert(not ok and why:find('fallback is blocked'))\n"
              "  list:set_strict(false)\n"
              "end)\n");
    CHECK_STR(run(), "");
    CHECK(tsl_result_blocked(R));

    /* a declarative block, and a rule that fails after re-adding */
    USE("site \"London\" { allow = { \"ts-lon-0[12]\", \"ts-lon-01\" }, fallback = \"block\" }\n"
        "rule(\"r\", function(req, list)\n"
        "  list:truncate(0)\n"
        "  list:add('ts-par-01')\n"
        "  list:add('ts-lon-03')\n"
        "end)\n");
    CHECK_STR(run(), "");
    CHECK(tsl_result_blocked(R));
}

/* ------------------------------------------------------------------------
 * Item 3: time inside C functions
 * ---------------------------------------------------------------------- */

static const char *load_error(const char *src)
{
    static char msg[1024];
    tsl_policy *pol = NULL;
    if (tsl_policy_compile(&pol, src, strlen(src), "p.lua") == 0) {
        tsl_policy_free(pol);
        return "(compiled)";
    }
    snprintf(msg, sizeof msg, "%s", tsl_error_last());
    return msg;
}

TEST(safety__string_rep_of_nothing_returns_at_once)
{
    double t0 = now_s();
    CHECK_STR(load_error("assert(string.rep('', math.maxinteger) == '')\n"
                         "assert(('x'):rep(3, ', ') == 'x, x, x')\n"
                         "assert(('ab'):rep(5) == 'ababababab')\n"
                         "assert(('ab'):rep(4, '-') == 'ab-ab-ab-ab')\n"
                         "assert(string.rep('', 7, ';') == ';;;;;;')\n"
                         "assert(#string.rep('abc', 100000, 'de') == 499998)\n"
                         "assert(string.rep('x', 0) == '' and string.rep('x', -5) == '')\n"),
              "(compiled)");
    CHECK_CONTAINS(load_error("local s = string.rep('x', 1 << 40)"),
                   "p.lua:1: string.rep: a result over 8388608 bytes is too large");
    CHECK_CONTAINS(load_error("local s = string.rep('xy', math.maxinteger, 'z')"),
                   "too large for the policy sandbox");
    CHECK(now_s() - t0 < 5.0);
}

TEST(safety__patterns_and_finds_over_long_strings_are_bounded)
{
    double t0 = now_s();
    /* %b() over 150,000 characters took about 10 s */
    CHECK_CONTAINS(load_error("local s = string.rep('(', 150000)\nlocal x = s:find('%b()')"),
                   "p.lua:2: pattern too costly for the policy sandbox");
    /* a plain find of a 1 MB needle in 2 MB took 27 s: now linear */
    CHECK_STR(load_error("local hay = string.rep('a', 2 << 20)\n"
                         "local needle = string.rep('a', 1 << 20) .. 'b'\n"
                         "assert(hay:find(needle, 1, true) == nil)\n"
                         "assert(hay:find(needle:sub(1, -2), 1, true) == 1)\n"
                         "assert(('hello world'):find('o w', 1, true) == 5)\n"
                         "assert(('hello'):find('l', -2, true) == 4)\n"
                         "assert(('hello'):find('', 10, true) == nil)\n"
                         "assert(('hello'):find('', 6, true) == 6)\n"
                         "assert(('a.b'):find('.', 1, true) == 2)\n"
                         "assert(('a.b'):find('b') == 3)\n"
                         "assert(('a\\0b'):find('\\0') == 2)\n" /* a NUL is no pattern item */
                         "assert(('a\\0b%'):find('\\0b%', 1, true) == 2)\n"),
              "(compiled)");
    /* a literal pattern (no repetition) over a long subject: bounded by length times length */
    CHECK_CONTAINS(load_error("local s = string.rep('a', 1 << 20)\n"
                              "local p = string.rep('a', 4096) .. '%d'\nlocal x = s:match(p)"),
                   "pattern too costly");
    CHECK(now_s() - t0 < 10.0);
}

TEST(safety__table_functions_are_bounded)
{
    double t0 = now_s();
    CHECK_CONTAINS(load_error("local t = {}\nfor i = 1, 800000 do t[i] = 800000 - i end\n"
                              "table.sort(t)"),
                   "p.lua:3: table.sort of 800000 items without a Lua comparator is too costly");
    CHECK_STR(load_error("local t = {}\nfor i = 1, 1000 do t[i] = 1000 - i end\n"
                         "table.sort(t) assert(t[1] == 0)\n"
                         "table.sort(t, function(a, b) return a > b end) assert(t[1] == 999)\n"
                         "assert(table.concat({'a', 'b', 'c'}, ',') == 'a,b,c')\n"
                         "assert(select('#', table.unpack({1, 2, 3})) == 3)\n"),
              "(compiled)");
    CHECK_CONTAINS(load_error("table.move({}, 1, math.maxinteger - 1, 1)"),
                   "table.move over more than 262144 items is too costly");
    CHECK_CONTAINS(load_error("local t = setmetatable({}, { __index = tostring })\n"
                              "local s = table.concat(t, '', 1, math.maxinteger)"),
                   "table.concat over more than");
    CHECK_CONTAINS(load_error("local x = table.unpack({}, 1, 1e8)"), "table.unpack over more");
    CHECK(now_s() - t0 < 10.0);
}

/* Load-time code that spends its time inside C functions is stopped by
 * the clock (1 s) or the budget, not after minutes. */
TEST(safety__load_time_spent_inside_c_functions_is_bounded)
{
    double t0 = now_s();
    const char *msg = load_error("while true do\n"
                                 "  local s = string.rep('ab', 4 << 20):upper():reverse()\n"
                                 "end\n");
    CHECK(strstr(msg, "time limit of 1000 ms exceeded") || strstr(msg, "instruction budget"));
    CHECK_CONTAINS(msg, "p.lua:2:");
    double took = now_s() - t0;
    if (took > 4.0)
        FAILF_("took %.1f s", took);
}

/* A rule that overruns: the request gets the list as it stood before the
 * rule within the bound, the overrun is counted and shows in the reasons. */
TEST(safety__rule_overrunning_its_time_gets_last_good_step)
{
    uint64_t before = tsl_worker_policy_overruns(W), total = tsl_policy_overruns_total();
    USE("defaults { rule_budget = 100000000, rule_time_ms = 50 }\n" SITES
        "rule(\"fine\", function(req, list) list:truncate(3) end)\n"
        "rule(\"slow\", function(req, list)\n"
        "  list:truncate(1)\n"
        "  while true do local s = string.rep('ab', 1 << 20):upper() end\n"
        "end)\n");
    double t0 = now_s();
    CHECK_STR(run(), "ts-lon-03/0 ts-lon-02/0 ts-lon-01/0");
    double took = now_s() - t0;
    if (took > 1.0) /* 50 ms, generous on a loaded machine */
        FAILF_("the request took %.3f s", took);
    CHECK_CONTAINS(last_error(), "t.lua:6: time limit of 50 ms exceeded");
    CHECK_INT(tsl_worker_policy_overruns(W), before + 1);
    CHECK_INT(tsl_policy_overruns_total(), total + 1);
    CHECK_STR(tsl_result_entry(R, 0)->reason,
              "a policy rule overran its time or instruction bound: the list as it stood "
              "before that rule");

    /* pcall cannot swallow the clock either */
    USE("defaults { rule_budget = 100000000, rule_time_ms = 20 }\n" SITES
        "rule(\"sneaky\", function(req, list)\n"
        "  while true do pcall(function() while true do local s = ('x'):rep(1 << 16) end end) end\n"
        "end)\n");
    t0 = now_s();
    CHECK_STR(run(), "ts-lon-03/0 ts-lon-02/0 ts-lon-01/0 ts-par-01/1 ts-par-02/1");
    CHECK(now_s() - t0 < 1.0);
    CHECK_CONTAINS(last_error(), "time limit of 20 ms exceeded");

    /* single instructions that do a lot of work (`..` of 4 MiB strings):
     * the clock is read as they allocate, not 1,000 instructions later */
    USE("defaults { rule_budget = 100000000, rule_time_ms = 20 }\n" SITES
        "rule(\"concat\", function(req, list)\n"
        "  local a = string.rep('x', 4 << 20)\n"
        "  while true do local s = a .. a end\n"
        "end)\n");
    t0 = now_s();
    CHECK_STR(run(), "ts-lon-03/0 ts-lon-02/0 ts-lon-01/0 ts-par-01/1 ts-par-02/1");
    took = now_s() - t0;
    if (took > 0.3) /* 20 ms; reading the clock every 1,000 instructions took 0.5 s */
        FAILF_("the request took %.3f s", took);
    CHECK_CONTAINS(last_error(), "time limit of 20 ms exceeded");

    /* on_error = "default": the default logic, marked the same way */
    USE("defaults { rule_budget = 100000000, on_error = 'default' }\n" SITES
        "rule(\"slow\", function(req, list) while true do local s = ('x'):rep(1 << 20) end end)\n");
    run();
    CHECK(tsl_result_count(R) > 0);
    CHECK_CONTAINS(tsl_result_entry(R, 0)->reason, "overran its time or instruction bound: the "
                                                   "default logic");
    /* the next request runs afresh, within its own bound */
    USE("defaults { rule_time_ms = 50 }\n" SITES
        "rule(\"ok\", function(req, list) list:truncate(2) end)\n");
    CHECK_STR(run(), "ts-lon-03/0 ts-lon-02/0");
}

TEST(safety__rule_time_ms_is_checked_at_compile)
{
    CHECK_CONTAINS(load_error("defaults { rule_time_ms = 0 }"), "rule_time_ms");
    CHECK_CONTAINS(load_error("defaults { rule_time_ms = 10001 }"), "1 to 10000");
    CHECK_STR(load_error("defaults { rule_time_ms = 10000 }"), "(compiled)");
}

/* The broker's checker thread: the check's own deadline and the cancel
 * flag apply to every sandbox call the thread makes, whatever the
 * policy's own bounds. */
TEST(safety__a_threads_deadline_and_cancel_flag_bound_a_check)
{
    static const char spin[] =
        "defaults { rule_budget = 100000000, rule_time_ms = 10000 }\n"
        "rule(\"spin\", function(req, list)\n"
        "  while true do local x = string.rep('ab', 1 << 16):upper() end\n"
        "end)\n";
    tsl_buf out = TSL_BUF_INIT;
    int worst = 0;
    _Atomic bool cancel = false;
    double t0 = now_s();
    sandbox_ambient_set(&cancel, "the test said so", sandbox_now_ns() + 200000000u,
                        "the test's 200 ms");
    CHECK_OK(tsl_policy_check(&worst, &out, spin, strlen(spin), "spin.lua", snap, NOW));
    sandbox_ambient_set(NULL, NULL, 0, NULL);
    double took = now_s() - t0;
    CHECK_INT(worst, 2);
    CHECK_CONTAINS(out.ptr, "spin.lua:3: time limit of the test's 200 ms exceeded");
    if (took > 3.0)
        FAILF_("the check took %.2f s", took);
    tsl_buf_clear(&out);

    atomic_store(&cancel, true);
    sandbox_ambient_set(&cancel, "the test said so", 0, NULL);
    CHECK_OK(tsl_policy_check(&worst, &out, spin, strlen(spin), "spin.lua", snap, NOW));
    sandbox_ambient_set(NULL, NULL, 0, NULL);
    CHECK_INT(worst, 2);
    CHECK_CONTAINS(out.ptr, "stopped: the test said so");
    tsl_buf_free(&out);
}

/* ------------------------------------------------------------------------
 * Item 10: no addresses
 * ---------------------------------------------------------------------- */

TEST(safety__no_addresses_are_visible_to_policy_code)
{
    CHECK_STR(load_error("assert(tostring(pairs) == 'function', tostring(pairs))\n"
                         "assert(tostring({}) == 'table')\n"
                         "assert(tostring(true) == 'true')\n"
                         "assert(tostring(12) == '12' and tostring(nil) == 'nil')\n"
                         "assert(string.format('%s|%s', {}, string.rep) == 'table|function')\n"
                         "assert(('%5s'):format(1) == '    1')\n"
                         "local t = setmetatable({}, { __tostring = function() return 'T' end })\n"
                         "assert(tostring(t) == 'T' and string.format('%s', t) == 'T')\n"
                         "local n = setmetatable({}, { __name = 'thing' })\n"
                         "assert(tostring(n) == 'thing', tostring(n))\n"
                         "assert(not tostring(string):find('0x'))\n"),
              "(compiled)");
    CHECK_CONTAINS(load_error("local s = string.format('%p', {})"), "%p is not available");
    USE(SITES "rule(\"r\", function(req, list)\n"
              "  local s = tostring(req) .. tostring(list) .. tostring(list[1])\n"
              "  assert(not s:find('0x'), s)\n"
              "end)\n");
    uint64_t before = tsl_worker_policy_errors(W);
    run();
    CHECK_INT(tsl_worker_policy_errors(W), before);
}

/* ------------------------------------------------------------------------
 * The same patterns through the tools: tsl check, tsl test, tsl list
 * ---------------------------------------------------------------------- */

static const char nested_policy[] =
    "site \"London\" { allow = { \"ts-lon-*\" }, fallback = { \"Paris\" } }\n"
    "rule(\"nested\", function(req, list)\n"
    "  list:remove('ts-lon-02')\n"
    "  list:reorder(function(a, b)\n"
    "    list:add('ts-lon-02')\n"
    "    list:reorder(function(x, y) return x.name < y.name end)\n"
    "    return a.name < b.name\n"
    "  end)\n"
    "  list:remove(function(e) list:prefer('ts-par-*') return false end)\n"
    "end)\n";

static const char estate_json[] =
    "{\"sites\": [{\"name\": \"London\", \"subnets\": [\"10.10.0.0/16\"]},"
    "             {\"name\": \"Paris\", \"subnets\": [\"10.30.0.0/16\"]}],"
    " \"task_servers\": ["
    "   {\"name\": \"ts-lon-01\", \"ip\": \"10.10.0.1\", \"sites\": [\"London\"]},"
    "   {\"name\": \"ts-lon-02\", \"ip\": \"10.10.0.2\", \"sites\": [\"London\"]},"
    "   {\"name\": \"ts-lon-03\", \"ip\": \"10.10.0.3\", \"sites\": [\"London\"]},"
    "   {\"name\": \"ts-par-01\", \"ip\": \"10.30.0.1\", \"sites\": [\"Paris\"]}],"
    " \"clients\": [{\"guid\": \"A1\", \"ip\": \"10.10.3.17\"}]}";

static bool make_store(const char *db)
{
    tsl_store *st = NULL;
    bool ok = tsl_store_open(&st, db, 0) == 0 &&
              tsl_store_import_json(st, estate_json, strlen(estate_json), "t") == 0;
    if (!ok)
        fprintf(stderr, "store: %s\n", tsl_error_last());
    tsl_store_free(st);
    return ok;
}

TEST(safety__tools_run_nested_calls_without_crashing)
{
    char *out = NULL;
    const char *db = tsl_test_path("tools.db");
    const char *pol = tsl_test_path("nested.lua");
    const char *tst = tsl_test_path("nested_test.lua");
    CHECK(make_store(db));
    CHECK_INT(tsl_test_write(pol, nested_policy), 0);
    CHECK_INT(tsl_test_write(tsl_test_path("estate.json"), estate_json), 0);
    CHECK_INT(tsl_test_write(tst, "policy \"nested.lua\"\n"
                                  "inventory \"estate.json\"\n"
                                  "test \"London\" { ip = \"10.10.1.1\", count = 3 }\n"),
              0);

    int rc = tsl_test_sh(&out, true, "'%s' --db '%s' check '%s'", TSL_BIN, db, pol);
    CHECK(rc == 0 || rc == 1 || rc == 2); /* findings, never a crash */
    CHECK_CONTAINS(out, "called from inside list:reorder's comparator");
    free(out);
    out = NULL;

    rc = tsl_test_sh(&out, true, "'%s' test '%s'", TSL_BIN, tst);
    CHECK_INT(rc, 1); /* the case fails: the rule's error is reported, nothing crashes */
    CHECK_CONTAINS(out, "nested.lua:5: list:add called from inside list:reorder's comparator");
    CHECK(!strstr(out, "AddressSanitizer") && !strstr(out, "runtime error"));
    free(out);
    out = NULL;

    rc = tsl_test_sh(&out, true, "'%s' --db '%s' list --policy '%s' --ip 10.10.3.17 --json",
                     TSL_BIN, db, pol);
    CHECK_INT(rc, 0);
    CHECK_CONTAINS(out, "ts-lon-0");
    CHECK(!strstr(out, "AddressSanitizer") && !strstr(out, "runtime error"));
    free(out);
}

/* ------------------------------------------------------------------------
 * The broker: POST /v1/policy
 * ---------------------------------------------------------------------- */

typedef struct child {
    pid_t pid;
    int port;
    char log[600];
} child;

/* Starts `tsl --db DB serve --listen 127.0.0.1:0 [--policy FILE]`; waits
 * for its port. */
static bool spawn_with(child *c, const char *db, const char *policy)
{
    static int n;
    char *text = NULL;
    snprintf(c->log, sizeof c->log, "%s/serve-%d.log", tsl_test_tmpdir(), n++);
    c->pid = fork();
    if (c->pid == 0) {
        int fd = open(c->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int nul = open("/dev/null", O_WRONLY);
        dup2(fd, 2);
        dup2(nul, 1);
        execl(TSL_BIN, "tsl", "--db", db, "serve", "--listen", "127.0.0.1:0", "--threads", "2",
              "--refresh-ms", "50", policy ? "--policy" : (char *)NULL, policy, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 1000; i++) { /* 10 s */
        size_t len;
        text = tsl_test_read(c->log, &len);
        const char *p = text ? strstr(text, " port ") : NULL;
        c->port = p && strstr(text, "Listening on") ? atoi(p + 6) : 0;
        free(text);
        if (c->port > 0)
            return true;
        int st;
        if (waitpid(c->pid, &st, WNOHANG) == c->pid) {
            c->pid = 0;
            return false;
        }
        usleep(10000);
    }
    return false;
}

static bool spawn(child *c, const char *db)
{
    return spawn_with(c, db, NULL);
}

static long long db_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    long long v = -999;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* "Authorization: Bearer TOKEN\r\n" from DB.token */
static bool auth_header(char *dst, size_t len, const char *db)
{
    char path[700];
    snprintf(path, sizeof path, "%s.token", db);
    char *tok = tsl_test_read(path, NULL);
    if (!tok)
        return false;
    tok[strcspn(tok, "\r\n")] = '\0';
    snprintf(dst, len, "Authorization: Bearer %s\r\n", tok);
    free(tok);
    return true;
}

/* The crash: the Release broker died with SIGSEGV on a plain
 * upload of a policy with nested list calls.  Now: findings, no crash,
 * the broker keeps answering. */
TEST(safety__broker_upload_of_nested_calls_is_answered)
{
    child c;
    http_resp r;
    char auth[200];
    const char *db = tsl_test_path("upload.db");
    CHECK(make_store(db));
    CHECK(spawn(&c, db));
    CHECK(auth_header(auth, sizeof auth, db));
    int s = http_do(c.port, "POST", "/v1/policy?name=nested.lua", auth, nested_policy, &r);
    bool refused = s == 422 && r.body && strstr(r.body, "called from inside list:reorder");
    http_resp_free(&r);
    int s2 = 0;
    http_get_body(c.port, "/v1/task-servers?ip=10.10.3.17", NULL, &s2);
    kill(c.pid, SIGTERM);
    int st;
    waitpid(c.pid, &st, 0);
    CHECK_INT(s, 422);
    CHECK(refused);
    CHECK_INT(s2, 200);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* Upload a policy whose code spins inside C functions for many seconds:
 * the broker keeps acknowledging writes while it is checked (off the
 * control thread), and SIGTERM stops it within 2 s with every
 * acknowledged write in the store. */
TEST(safety__sigterm_is_honoured_within_2s_while_an_upload_spins)
{
    child c;
    http_resp r;
    char auth[200];
    const char *db = tsl_test_path("spin.db");
    static const char spin[] =
        "defaults { rule_budget = 100000000, rule_time_ms = 10000 }\n"
        "local s = string.rep('', math.maxinteger)\n" /* never returned before */
        "rule(\"spin\", function(req, list)\n"
        "  while true do local x = string.rep('ab', 1 << 20):upper() end\n"
        "end)\n";
    CHECK(make_store(db));
    CHECK(spawn(&c, db));
    CHECK(auth_header(auth, sizeof auth, db));

    /* the upload, sent and left waiting for its answer */
    int fd = http_connect(c.port);
    char req[2048];
    int n = snprintf(req, sizeof req,
                     "POST /v1/policy?name=spin.lua HTTP/1.1\r\nHost: 127.0.0.1\r\n%s"
                     "Content-Length: %zu\r\n\r\n%s",
                     auth, strlen(spin), spin);
    CHECK(fd >= 0 && http_send_all(fd, req, (size_t)n));
    usleep(300000);

    /* writes while it spins: each answered promptly */
    int acked = 0;
    double worst = 0;
    for (int i = 0; i < 10; i++) {
        char path[80];
        snprintf(path, sizeof path, "/v1/clients/G%03d/registration", i);
        double t0 = now_s();
        if (http_do(c.port, "POST", path, NULL,
                    "{\"server\":\"ts-lon-01\",\"ok\":false,\"error\":\"timeout\"}", &r) == 200)
            acked++;
        http_resp_free(&r);
        if (now_s() - t0 > worst)
            worst = now_s() - t0;
    }
    /* SIGTERM while the check is still running */
    double t0 = now_s();
    kill(c.pid, SIGTERM);
    int st = 0;
    bool exited = false;
    while (now_s() - t0 < 10 && !exited) {
        if (waitpid(c.pid, &st, WNOHANG) == c.pid)
            exited = true;
        else
            usleep(5000);
    }
    double took = now_s() - t0;
    if (!exited) {
        kill(c.pid, SIGKILL);
        waitpid(c.pid, &st, 0);
    }
    /* the upload got an answer (503: stopping), not a dropped connection */
    http_resp up;
    memset(&up, 0, sizeof up);
    http_exchange_raw(fd, "", 0, &up);
    close(fd);
    CHECK(exited);
    if (took > 2.0)
        FAILF_("SIGTERM took %.2f s", took);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK_INT(acked, 10);
    if (worst > 1.0)
        FAILF_("a write waited %.2f s", worst);
    CHECK_INT(db_int(db, "SELECT count(*) FROM registrations"), acked);
    CHECK_INT(db_int(db, "SELECT count(*) FROM policies"), 0);
    CHECK_INT(up.status, 503);
    http_resp_free(&up);
}

/* The "task=boom": an active rule that spins inside C functions
 * for one task.  Two such requests at once no longer hold both worker
 * threads: each is answered within its bound with the list as it stood
 * before the rule, another client is answered meanwhile, and /metrics
 * counts the overruns. */
TEST(safety__broker_answers_a_spinning_rule_within_its_bound_and_counts_it)
{
    child c;
    http_resp r1, r2;
    const char *db = tsl_test_path("boom.db");
    const char *pol = tsl_test_path("boom.lua");
    CHECK(make_store(db));
    CHECK_INT(tsl_test_write(pol,
                             "defaults { rule_budget = 100000000 }\n"
                             "rule(\"boom\", function(req, list)\n"
                             "  if req.task ~= 'boom' then return end\n"
                             "  list:truncate(0)\n"
                             "  while true do local s = string.rep('ab', 1 << 20):upper() end\n"
                             "end)\n"),
              0);
    CHECK(spawn_with(&c, db, pol));
    int fd1 = http_connect(c.port), fd2 = http_connect(c.port);
    static const char boom[] =
        "GET /v1/task-servers?ip=10.10.3.17&task=boom HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    double t0 = now_s();
    bool sent = fd1 >= 0 && fd2 >= 0 && http_send_all(fd1, boom, strlen(boom)) &&
                http_send_all(fd2, boom, strlen(boom));
    int s3 = 0;
    const char *other = http_get_body(c.port, "/v1/task-servers?ip=10.10.3.17", NULL, &s3);
    bool other_listed = other && strstr(other, "ts-lon-0");
    double other_took = now_s() - t0;
    int s1 = http_exchange_raw(fd1, "", 0, &r1) == 0 ? r1.status : 0;
    int s2 = http_exchange_raw(fd2, "", 0, &r2) == 0 ? r2.status : 0;
    double took = now_s() - t0;
    bool listed = r1.body && strstr(r1.body, "ts-lon-0") && r2.body && strstr(r2.body, "ts-lon-0");
    bool reason = r1.body && strstr(r1.body, "overran its time or instruction bound");
    http_resp_free(&r1);
    http_resp_free(&r2);
    close(fd1);
    close(fd2);
    int sm = 0;
    const char *m = http_get_body(c.port, "/metrics", NULL, &sm);
    bool counted = m && strstr(m, "\ntsl_policy_overruns_total 2\n");
    kill(c.pid, SIGTERM);
    int st;
    waitpid(c.pid, &st, 0);
    CHECK(sent);
    CHECK_INT(s1, 200);
    CHECK_INT(s2, 200);
    CHECK_INT(s3, 200);
    CHECK(listed);   /* the list before the rule, not the rule's empty one */
    CHECK(reason);
    CHECK(other_listed);
    if (took > 2.0 || other_took > 2.0) /* 50 ms each, generous on a loaded machine */
        FAILF_("the spinning requests took %.2f s, the other one %.2f s", took, other_took);
    CHECK_INT(sm, 200);
    CHECK(counted);
}

/* ------------------------------------------------------------------------
 * main
 * ---------------------------------------------------------------------- */

int main(void)
{
    if (!(snap = build_estate()) || tsl_worker_new(&W) < 0 || tsl_result_new(&R) < 0)
        return 1;
    RUN(safety__add_from_inside_reorder_comparator_is_refused);
    RUN(safety__prefer_from_inside_remove_predicate_is_refused);
    RUN(safety__every_changing_method_is_refused_inside_a_callback);
    RUN(safety__callbacks_may_read_and_the_refusal_does_not_stick);
    RUN(safety__comparator_cannot_block_then_readd_fallback);
    RUN(safety__block_is_a_latch_for_the_rest_of_the_request);
    RUN(safety__string_rep_of_nothing_returns_at_once);
    RUN(safety__patterns_and_finds_over_long_strings_are_bounded);
    RUN(safety__table_functions_are_bounded);
    RUN(safety__load_time_spent_inside_c_functions_is_bounded);
    RUN(safety__rule_overrunning_its_time_gets_last_good_step);
    RUN(safety__rule_time_ms_is_checked_at_compile);
    RUN(safety__a_threads_deadline_and_cancel_flag_bound_a_check);
    RUN(safety__no_addresses_are_visible_to_policy_code);
    RUN(safety__tools_run_nested_calls_without_crashing);
    RUN(safety__broker_upload_of_nested_calls_is_answered);
    RUN(safety__sigterm_is_honoured_within_2s_while_an_upload_spins);
    RUN(safety__broker_answers_a_spinning_rule_within_its_bound_and_counts_it);
    tsl_plan_free(P);
    tsl_result_free(R);
    tsl_worker_free(W);
    tsl_snapshot_free(snap);
    return tsl_test_main();
}
