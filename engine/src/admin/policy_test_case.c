/*
 * policy_test_case.c - one test of a policy test file: decides its request
 * against the policy and compares what the test names (expect, first,
 * contains, excludes, count, blocked, strict, site, tiers, after, reasons,
 * ttl, rule_error), writing "#   ..." diagnostics on failure.
 *
 * Used by: policy_test.c (ptest_case_p, run protected).  Needs:
 * policy_test.h, decide.h, policy.h.
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
 * One test
 * ---------------------------------------------------------------------- */

void ptest_diag(struct case_args *a, const char *fmt, ...)
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

int ptest_case_p(lua_State *L)
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
    ptest_rawfield(L, -1, "name");
    a->name = lua_tostring(L, -1);
    lua_pop(L, 1);
    ptest_rawfield(L, -1, "spec");
    int spec = lua_gettop(L);
    snprintf(what, sizeof what, "test \"%s\"", a->name ? a->name : "?");
    ptest_check_keys(L, spec, keys, what);

    memset(&req, 0, sizeof req);
    req.client = ptest_str_field(L, spec, "client", what);
    req.department = ptest_str_field(L, spec, "department", what);
    req.task = ptest_str_field(L, spec, "task", what);
    req.now = a->r->now;
    if (ptest_int_field(L, spec, "now", what, &v))
        req.now = v;
    const char *ip = ptest_str_field(L, spec, "ip", what);
    if (ip)
        req.ips[req.nips++] = ip;
    lua_Integer nips = ptest_list_len(L, spec, "ips", what);
    for (lua_Integer i = 1; i <= nips && req.nips < TSL_MAX_IPS; i++)
        req.ips[req.nips++] = ptest_list_str(L, spec, "ips", i, what);

    uint64_t errors = a->w->policy_errors;
    if (tsl_decide(a->res, a->w, a->plan, &req, NULL) < 0) {
        ptest_diag(a, "the request was refused: %s", tsl_error_last());
        return 0;
    }
    const tsl_result *res = a->res;
    size_t n = tsl_result_count(res);
    names_of(res, got, sizeof got);

    lua_Integer ne = ptest_list_len(L, spec, "expect", what);
    if (ne >= 0) {
        bool same = (size_t)ne == n;
        want[0] = '\0';
        for (lua_Integer i = 1; i <= ne; i++) {
            const char *s = ptest_list_str(L, spec, "expect", i, what);
            size_t k = strlen(want);
            snprintf(want + k, sizeof want - k, "%s%s", i > 1 ? " " : "", s);
            if (same && strcasecmp(s, tsl_result_entry(res, (size_t)i - 1)->name) != 0)
                same = false;
        }
        if (!want[0])
            snprintf(want, sizeof want, "(empty)");
        if (!same) {
            ptest_diag(a, "expected: %s", want);
            ptest_diag(a, "got:      %s", got);
        }
    }
    lua_Integer nf = ptest_list_len(L, spec, "first", what);
    for (lua_Integer i = 1; i <= nf; i++) {
        const char *s = ptest_list_str(L, spec, "first", i, what);
        if ((size_t)i > n || strcasecmp(s, tsl_result_entry(res, (size_t)i - 1)->name) != 0) {
            ptest_diag(a, "expected entry %d to be %s; got: %s", (int)i, s, got);
            break;
        }
    }
    for (int pass = 0; pass < 2; pass++) {
        const char *field = pass ? "excludes" : "contains";
        lua_Integer nc = ptest_list_len(L, spec, field, what);
        for (lua_Integer i = 1; i <= nc; i++) {
            const char *s = ptest_list_str(L, spec, field, i, what);
            bool found = false;
            for (size_t k = 0; k < n && !found; k++)
                found = policy_glob_match(s, tsl_result_entry(res, k)->name);
            if (found == (bool)pass)
                ptest_diag(a, "expected the list %s %s; got: %s", pass ? "not to contain" : "to contain",
                     s, got);
        }
    }
    if (ptest_int_field(L, spec, "count", what, &v) && (size_t)v != n)
        ptest_diag(a, "expected %lld entries; got %zu: %s", (long long)v, n, got);
    if (ptest_int_field(L, spec, "ttl", what, &v) && v != tsl_result_ttl(res))
        ptest_diag(a, "expected ttl %lld; got %d", (long long)v, tsl_result_ttl(res));
    int b = ptest_bool_field(L, spec, "blocked", what);
    if (b >= 0 && b != (int)tsl_result_blocked(res))
        ptest_diag(a, "expected blocked = %s; got %s (%s)", b ? "true" : "false",
             tsl_result_blocked(res) ? "true" : "false", got);
    b = ptest_bool_field(L, spec, "strict", what);
    if (b >= 0 && b != (int)tsl_result_strict(res))
        ptest_diag(a, "expected strict = %s; got %s", b ? "true" : "false",
             tsl_result_strict(res) ? "true" : "false");
    int t = ptest_rawfield(L, spec, "site");
    if (t == LUA_TSTRING) {
        const char *s = lua_tostring(L, -1);
        if (!tsl_result_site(res) || strcasecmp(s, tsl_result_site(res)) != 0)
            ptest_diag(a, "expected site %s; got %s", s, tsl_result_site(res) ? tsl_result_site(res) : "none");
    } else if (t == LUA_TBOOLEAN && !lua_toboolean(L, -1)) {
        if (tsl_result_site(res))
            ptest_diag(a, "expected no site; got %s", tsl_result_site(res));
    } else if (t != LUA_TNIL) {
        luaL_error(L, "%s: field \"site\" must be a site name or false", what);
    }
    lua_pop(L, 1);
    for (int pass = 0; pass < 2; pass++) {
        const char *field = pass ? "after" : "tiers";
        lua_Integer nt = ptest_list_len(L, spec, field, what);
        if (nt < 0)
            continue;
        bool same = (size_t)nt == n;
        ptest_rawfield(L, spec, field);
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
            ptest_diag(a, "%s differ: got %s (%s)", field, gt[0] ? gt : "(empty)", got);
        }
    }
    lua_Integer nr = ptest_list_len(L, spec, "reasons", what);
    for (lua_Integer i = 1; i <= nr; i++) {
        const char *s = ptest_list_str(L, spec, "reasons", i, what);
        const tsl_entry *e = tsl_result_entry(res, (size_t)i - 1);
        if (!e || !e->reason || !strstr(e->reason, s))
            ptest_diag(a, "expected the reason of entry %d to contain \"%s\"; got \"%s\"", (int)i, s,
                 e && e->reason ? e->reason : "(no entry)");
    }
    /* rule errors fail a test unless it expects one */
    bool failed_rule = a->w->policy_errors != errors;
    t = ptest_rawfield(L, spec, "rule_error");
    if (t == LUA_TNIL || (t == LUA_TBOOLEAN && !lua_toboolean(L, -1))) {
        if (failed_rule)
            ptest_diag(a, "a rule failed: %s", tsl_worker_last_policy_error(a->w));
    } else if (t == LUA_TBOOLEAN) {
        if (!failed_rule)
            ptest_diag(a, "expected a rule to fail; none did");
    } else if (t == LUA_TSTRING) {
        if (!failed_rule || !strstr(tsl_worker_last_policy_error(a->w), lua_tostring(L, -1)))
            ptest_diag(a, "expected a rule to fail with \"%s\"; got %s", lua_tostring(L, -1),
                 failed_rule ? tsl_worker_last_policy_error(a->w) : "no failure");
    } else {
        luaL_error(L, "%s: field \"rule_error\" must be true, false or a message", what);
    }
    lua_pop(L, 1);
    return 0;
}

