/*
 * fuzz_policy.c - the policy API against a fixed small estate: each input
 * is compiled, checked (tsl_policy_check, as `tsl check` and POST
 * /v1/policy do) and evaluated for a few requests on one worker.
 *
 * Two kinds of input:
 *   - a byte 0x01 first: the rest drives a generator that writes a rule
 *     from list-method calls, reads of the request and the entries, pcalls
 *     and callbacks (reorder comparators, remove/restrict/prefer
 *     predicates) nested in each other, and C library calls with large
 *     arguments;
 *   - anything else: the input is the policy's Lua source itself.
 *
 * Whatever the policy does, a decision must come back and hold: no more
 * entries than the list's maximum, each one a server of the estate listed
 * once, an empty list whenever the answer says blocked, and only tier 0
 * once fallback is blocked for the request.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decide.h"
#include "policy.h"
#include "tsl.h"

static tsl_snapshot *estate;
static bool london_blocks; /* the generated policy blocks London's fallback */
static tsl_worker *worker;
static tsl_result *result;

static tsl_snapshot *build_estate(void)
{
    tsl_snapshot *s = NULL;
    const char *lon[] = {"London"}, *par[] = {"Paris"};
    int err = 0;
    if (tsl_snapshot_begin(&s, NULL) < 0)
        return NULL;
    err |= snap_add_site(s, "London", "GB", NULL, NULL);
    err |= snap_add_subnet(s, "London", "10.10.0.0/16");
    err |= snap_add_site(s, "Paris", "FR", NULL, NULL);
    err |= snap_add_subnet(s, "Paris", "10.30.0.0/16");
    err |= snap_add_server(s, "ts-lon-01", NULL, "10.10.0.1", lon, 1, true, true, 1000, 100, 10, 0);
    err |= snap_add_server(s, "ts-lon-02", NULL, "10.10.0.2", lon, 1, true, true, 1000, 999, 20, 0);
    err |= snap_add_server(s, "ts-lon-03", NULL, "10.10.0.3", lon, 1, true, false, 1000, 10, 30, 0);
    err |= snap_add_server(s, "ts-par-01", NULL, "10.30.0.1", par, 1, true, true, 1000, 1, 10, 0);
    err |= snap_add_server(s, "ts-par-02", NULL, "10.30.0.2", par, 1, true, true, 1000, 2, 10, 0);
    err |= snap_add_client(s, "C-LON", "LON-PC", "10.10.1.1", "Sales", NULL, NULL);
    err |= snap_add_client(s, "C-PAR", "PAR-PC", "10.30.1.1", "Finance", NULL, NULL);
    err |= snap_add_client(s, "C-NOSITE", "ROAMER", "192.168.1.1", "Sales", NULL, NULL);
    err |= snap_add_error(s, "C-LON", "ts-lon-01", 1800000000 - 60);
    if (err || tsl_snapshot_seal(s) < 0) {
        tsl_snapshot_free(s);
        return NULL;
    }
    return s;
}

/* ------------------------------------------------------------------------
 * The generator
 * ---------------------------------------------------------------------- */

static const char *const steps[] = {
    "list:add('ts-lon-03') ",
    "list:add('ts-par-01') ",
    "list:add('ts-lon-02') ",
    "list:remove('ts-lon-01') ",
    "list:remove('ts-*') ",
    "list:restrict({'ts-lon-*', 'ts-par-02'}) ",
    "list:truncate(1) ",
    "list:truncate(0) ",
    "list:block_fallback() ",
    "list:prefer('ts-par-*', 'ts-lon-02') ",
    "list:reorder({'ts-par-02', 'ts-lon-01'}) ",
    "list:set_strict(true) ",
    "local _ = list:find('ts-lon-01') ",
    "local _ = list:names() ",
    "for i, e in pairs(list) do local _ = e.name .. e.tier .. tostring(e.load) end ",
    "local _ = #list .. tostring(list.blocked) .. tostring(list[1]) ",
    "local _ = tostring(req.site) .. tostring(req.task) .. tostring(req.ip) ",
    "if list[1] then local _ = list[1].position end ",
    "pcall(error, 'x') ",
    "local _ = string.rep('ab', 3000):find('ba', 1, true) ",
    "local _ = string.rep('', math.maxinteger) ",
    "pcall(string.rep, 'x', 1 << 40) ",
    "pcall(function() local s = string.rep('(', 5000) return s:find('%b()') end) ",
    "pcall(table.sort, {3, 1, 2}) ",
    "pcall(table.concat, setmetatable({}, {__index = tostring}), '', 1, 1 << 30) ",
    "local _ = tostring(pairs) .. string.format('%s', {}) ",
    "pcall(string.format, '%p', {}) ",
};

/* Opens a callback; closed by the matching entry of `closers`. */
static const char *const openers[] = {
    "list:reorder(function(a, b) ",
    "list:remove(function(e) ",
    "list:restrict(function(e) ",
    "list:prefer(function(e) ",
    "pcall(function() ",
};
static const char *const closers[] = {
    "return a.name < b.name end) ",
    "return e.name == 'ts-par-01' end) ",
    "return true end) ",
    "return e.tier == 0 end) ",
    "end) ",
};

#define GEN_MAX 16384

static char *generate(const uint8_t *data, size_t size)
{
    char *out = malloc(GEN_MAX);
    int stack[8], depth = 0;
    size_t n = 0;
    if (!out)
        return NULL;
    london_blocks = size > 0 && data[0] & 2;
    n += (size_t)snprintf(out, GEN_MAX,
                          "defaults { rule_budget = 20000, rule_time_ms = 20%s }\n"
                          "site \"London\" { allow = { \"ts-lon-*\" }, fallback = %s }\n"
                          "rule(\"fuzz\", function(req, list)\n",
                          size > 0 && data[0] & 1 ? ", on_error = 'default'" : "",
                          london_blocks ? "\"block\"" : "{ \"Paris\" }");
    for (size_t i = 1; i < size && n < GEN_MAX - 512; i++) {
        uint8_t b = data[i];
        const char *piece;
        if (b < 0xc0) {
            piece = steps[b % (sizeof steps / sizeof *steps)];
        } else if (b < 0xe0 && depth < 8) {
            stack[depth] = b % (int)(sizeof openers / sizeof *openers);
            piece = openers[stack[depth++]];
        } else if (depth > 0) {
            piece = closers[stack[--depth]];
        } else {
            piece = "list:truncate(3) ";
        }
        n += (size_t)snprintf(out + n, GEN_MAX - n, "%s\n", piece);
    }
    while (depth > 0)
        n += (size_t)snprintf(out + n, GEN_MAX - n, "%s\n", closers[stack[--depth]]);
    snprintf(out + n, GEN_MAX - n, "end)\nrule(\"after\", function(req, list) "
                                    "list:add('ts-par-02') end)\n");
    return out;
}

/* ------------------------------------------------------------------------
 * One input
 * ---------------------------------------------------------------------- */

static void decide_and_verify(const tsl_plan *plan, const char *client, const char *task)
{
    tsl_request req = {0};
    req.client = client;
    req.task = task;
    req.now = 1800000000;
    if (tsl_decide(result, worker, plan, &req, NULL) < 0)
        return; /* refused (out of memory), not a crash */
    size_t n = tsl_result_count(result);
    if (n > 64)
        abort();
    if (tsl_result_blocked(result) && n != 0)
        abort();
    for (size_t i = 0; i < n; i++) {
        const tsl_entry *e = tsl_result_entry(result, i);
        if (!e || !e->name || strncmp(e->name, "ts-", 3) != 0 || !e->reason)
            abort();
        for (size_t k = 0; k < i; k++)
            if (strcmp(tsl_result_entry(result, k)->name, e->name) == 0)
                abort();
        if (strcmp(e->name, "ts-lon-03") == 0) /* not running: never listed */
            abort();
        if (london_blocks && strcmp(client, "C-LON") == 0 && e->tier != 0)
            abort(); /* a block is never undone */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tsl_policy *pol = NULL;
    tsl_plan *plan = NULL;
    tsl_buf findings = TSL_BUF_INIT;
    char *src;
    size_t len;
    int worst = 0;

    if (!estate) {
        if (!(estate = build_estate()) || tsl_worker_new(&worker) < 0 ||
            tsl_result_new(&result) < 0)
            abort();
    }
    london_blocks = false;
    if (size > 0 && data[0] == 0x01) {
        if (!(src = generate(data + 1, size - 1)))
            return 0;
        len = strlen(src);
    } else {
        if (size > 65536 || !(src = malloc(size + 1)))
            return 0;
        memcpy(src, data, size);
        src[size] = '\0';
        len = size;
    }

    policy_limits lim = {0};
    lim.load_budget = 1000000;
    if (policy_compile_ex(&pol, src, len, "fuzz.lua", &lim) == 0) {
        tsl_policy_check(&worst, &findings, src, len, "fuzz.lua", estate, 1800000000);
        if (tsl_plan_new(&plan, estate, pol) == 0) {
            decide_and_verify(plan, "C-LON", NULL);
            decide_and_verify(plan, "C-LON", "imaging");
            decide_and_verify(plan, "C-PAR", NULL);
            decide_and_verify(plan, "C-NOSITE", NULL);
            decide_and_verify(plan, "C-LON", NULL); /* the same worker again */
        }
    }
    tsl_plan_free(plan);
    tsl_policy_free(pol);
    tsl_buf_free(&findings);
    free(src);
    return 0;
}
