/*
 * test_policy.c - the policy language, semantic by semantic, against a
 * hand-built snapshot: approved sets (allow / order / candidates, deny,
 * availability), order and strict, fallback default / block / lists with
 * "*" and after, capacity spill, groups, rules and their list methods,
 * rule failures (last good step, on_error, budget, memory), reasons,
 * traces, versions, and the compile-time messages.
 */
#include "harness.h"
#include "decide.h"
#include "policy.h"
#include "store.h"

#define NOW 1800000000LL

static tsl_snapshot *snap;
static tsl_worker *W;
static tsl_result *R;
static tsl_plan *P;
static char ERR[1024];

static tsl_snapshot *build_estate(void)
{
    tsl_snapshot *s;
    const char *lon[] = {"London"}, *dub[] = {"Dublin"}, *par[] = {"Paris"}, *mad[] = {"Madrid"},
               *tok[] = {"Tokyo"};
    int err = 0;
    if (tsl_snapshot_begin(&s, NULL) < 0)
        return NULL;
    err |= snap_add_site(s, "London", "GB", NULL, NULL);
    err |= snap_add_subnet(s, "London", "10.10.0.0/16");
    err |= snap_add_site(s, "Dublin", "IE", NULL, NULL);
    err |= snap_add_subnet(s, "Dublin", "10.20.0.0/16");
    err |= snap_add_site(s, "Paris", "FR", NULL, NULL);
    err |= snap_add_subnet(s, "Paris", "10.30.0.0/16");
    err |= snap_add_site(s, "Madrid", "ES", NULL, NULL);
    err |= snap_add_subnet(s, "Madrid", "10.40.0.0/16");
    err |= snap_add_site(s, "Tokyo", "JP", NULL, NULL);
    err |= snap_add_subnet(s, "Tokyo", "10.50.0.0/16");
    /* name host ip sites n registered running capacity connections response heartbeat */
    err |= snap_add_server(s, "ts-lon-01", "ts-lon-01.corp", "10.10.0.1", lon, 1, true, true, 1000, 100, 10, 0);
    err |= snap_add_server(s, "ts-lon-02", NULL, "10.10.0.2", lon, 1, true, true, 1000, 50, 20, 0);
    err |= snap_add_server(s, "ts-lon-03", NULL, "10.10.0.3", lon, 1, true, true, 1000, 10, 30, 0);
    err |= snap_add_server(s, "ts-lon-lab", NULL, "10.10.0.4", lon, 1, true, true, 1000, 0, 5, 0);
    err |= snap_add_server(s, "ts-fin-01", NULL, "10.10.0.5", lon, 1, true, true, 1000, 300, 5, 0);
    err |= snap_add_server(s, "ts-dub-01", NULL, "10.20.0.1", dub, 1, true, true, 1000, 500, 10, 0);
    err |= snap_add_server(s, "ts-dub-02", NULL, "10.20.0.2", dub, 1, true, true, 1000, 200, 10, 0);
    err |= snap_add_server(s, "ts-par-01", NULL, "10.30.0.1", par, 1, true, true, 1000, 1, 10, 0);
    err |= snap_add_server(s, "ts-full", NULL, "10.30.0.2", par, 1, true, true, 1000, 1000, 1, 0);
    err |= snap_add_server(s, "ts-mad-01", NULL, "10.40.0.1", mad, 1, true, false, 1000, 0, 10, 0);
    err |= snap_add_server(s, "ts-mad-02", NULL, "10.40.0.2", mad, 1, false, true, 1000, 0, 10, 0);
    err |= snap_add_server(s, "ts-tok-01", NULL, "10.50.0.1", tok, 1, true, true, 1000, 2, 10, 0);
    err |= snap_add_client(s, "C-SALES", "SALES-PC", "10.10.1.1", "Sales", NULL, NULL);
    err |= snap_add_client(s, "C-FIN", "FIN-PC", "10.10.1.2", "Finance", NULL, NULL);
    err |= snap_add_client(s, "C-MAD", "MAD-PC", "10.40.1.1", "Sales", NULL, NULL);
    err |= snap_add_client(s, "C-TOK", "TOK-PC", "10.50.1.1", "Sales", NULL, NULL);
    err |= snap_add_client(s, "C-NOSITE", "ROAMER", "192.168.1.1", "Finance", NULL, NULL);
    err |= snap_add_client(s, "C-ERR", "ERR-PC", "10.10.1.3", "Sales", NULL, NULL);
    err |= snap_add_error(s, "C-ERR", "ts-lon-03", NOW - 100);
    err |= tsl_snapshot_seal(s);
    if (err) {
        fprintf(stderr, "fixture: %s\n", tsl_error_last());
        tsl_snapshot_free(s);
        return NULL;
    }
    return s;
}

/* Compiles src as "t.lua" and makes it the current plan. */
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

/* Decides for a client of the fixture; "name/tier name/tier ...". */
static const char *run_t(const char *client, const char *dept, const char *task, tsl_trace *tr)
{
    static char out[2048];
    tsl_request req = {0};
    req.client = client;
    req.department = dept;
    req.task = task;
    req.now = NOW;
    out[0] = '\0';
    if (tsl_decide(R, W, P, &req, tr) < 0) {
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

static const char *run(const char *client, const char *dept, const char *task)
{
    return run_t(client, dept, task, NULL);
}

static const char *reason(size_t i)
{
    const tsl_entry *e = tsl_result_entry(R, i);
    return e ? e->reason : NULL;
}

#define USE(src)                                                                 \
    do {                                                                         \
        if (!use(src))                                                           \
            FAILF_("policy did not load: %s", ERR);                              \
    } while (0)

/* ------------------------------------------------------------------------
 * Approved sets, order, strict
 * ---------------------------------------------------------------------- */

TEST(policy__site_no_block_names_keeps_the_default_logic)
{
    char want[2048];
    tsl_plan *plain = NULL;
    tsl_request req = {0};
    const char *clients[] = {"C-TOK", "C-MAD", "C-NOSITE", "C-ERR"};
    CHECK_OK(tsl_plan_new(&plain, snap, NULL));
    USE("site \"Paris\" { order = { \"ts-par-01\" }, fallback = \"block\" }");
    for (int c = 0; c < 4; c++) {
        req.client = clients[c];
        req.now = NOW;
        CHECK_OK(tsl_decide(R, W, plain, &req, NULL));
        want[0] = '\0';
        for (size_t i = 0; i < tsl_result_count(R); i++) {
            size_t n = strlen(want);
            snprintf(want + n, sizeof want - n, "%s%s/%d", i ? " " : "",
                     tsl_result_entry(R, i)->name, tsl_result_entry(R, i)->tier);
        }
        CHECK_STR(run(clients[c], NULL, NULL), want);
        CHECK(!tsl_result_strict(R));
        CHECK(!tsl_result_blocked(R));
        CHECK_STR(tsl_result_policy(R), tsl_policy_version(tsl_plan_policy(P)));
    }
    tsl_plan_free(plain);
}

TEST(policy__order_first_then_the_approved_rest_ranked_and_strict)
{
    USE("site \"London\" {\n"
        "  order = { \"ts-lon-01\", \"ts-lon-02\" },\n"
        "  allow = { \"ts-lon-*\", \"ts-dub-01\" },\n"
        "  deny  = { \"ts-lon-lab\" },\n"
        "}\n");
    CHECK_STR(run("C-SALES", NULL, NULL), "ts-lon-01/0 ts-lon-02/0 ts-lon-03/0 ts-dub-01/0");
    CHECK(tsl_result_strict(R));
    CHECK(!tsl_result_blocked(R));
    CHECK_STR(reason(0), "site \"London\" order #1");
    CHECK_STR(reason(1), "site \"London\" order #2");
    CHECK_STR(reason(2), "site \"London\" approved set, ranked by capacity");
}

TEST(policy__approved_set_is_the_order_when_no_allow)
{
    USE("site \"London\" { order = { \"ts-lon-02\", \"ts-lon-01\" } }");
    CHECK_STR(run("C-SALES", NULL, NULL), "ts-lon-02/0 ts-lon-01/0");
    CHECK(tsl_result_strict(R));
}

TEST(policy__approved_set_is_the_site_candidates_without_allow_or_order)
{
    USE("site \"London\" { deny = { \"ts-lon-lab\", \"TS-FIN-*\" } }");
    CHECK_STR(run("C-SALES", NULL, NULL), "ts-lon-03/0 ts-lon-02/0 ts-lon-01/0");
    CHECK(!tsl_result_strict(R));
}

TEST(policy__unavailable_servers_never_listed)
{
    USE("site \"Madrid\" { allow = { \"ts-mad-*\", \"ts-par-01\" }, fallback = \"block\" }");
    CHECK_STR(run("C-MAD", NULL, NULL), "ts-par-01/0");
}

TEST(policy__deny_applies_to_every_tier)
{
    USE("defaults { max = 20 }\n"
        "site \"London\" { allow = { \"ts-lon-01\" }, deny = { \"ts-dub-*\", \"ts-tok-01\" },\n"
        "                  fallback = { \"Dublin\", \"*\" } }");
    const char *got = run("C-SALES", NULL, NULL);
    CHECK(strstr(got, "ts-dub") == NULL);
    CHECK(strstr(got, "ts-tok") == NULL);
    CHECK(strncmp(got, "ts-lon-01/0 ", 12) == 0);
}

/* ------------------------------------------------------------------------
 * Fallback
 * ---------------------------------------------------------------------- */

TEST(policy__fallback_default_lists_every_available_server_when_approved_is_empty)
{
    USE("site \"Madrid\" { }");
    run("C-MAD", NULL, NULL);
    CHECK_INT(tsl_result_count(R), 10);
    for (size_t i = 0; i < tsl_result_count(R); i++) {
        CHECK_INT(tsl_result_entry(R, i)->tier, 1);
        CHECK_CONTAINS(reason(i), "fallback \"default\"");
    }
    CHECK(!tsl_result_blocked(R));
    /* approved servers available: no tier 1 */
    USE("site \"London\" { allow = { \"ts-lon-01\" } }");
    CHECK_STR(run("C-SALES", NULL, NULL), "ts-lon-01/0");
}

TEST(policy__block_fallback_empties_list)
{
    USE("site \"Madrid\" { fallback = \"block\" }");
    CHECK_STR(run("C-MAD", NULL, NULL), "");
    CHECK(tsl_result_blocked(R));
    CHECK_STR(tsl_result_blocked_reason(R),
              "site \"Madrid\" blocks fallback and no approved server is available");
}

TEST(policy__block_with_available_servers_lists_only_the_approved_set)
{
    USE("site \"London\" { allow = { \"ts-lon-0*\" }, fallback = \"block\" }");
    CHECK_STR(run("C-SALES", NULL, NULL), "ts-lon-03/0 ts-lon-02/0 ts-lon-01/0");
    CHECK(!tsl_result_blocked(R));
}

TEST(policy__fallback_list_adds_ordered_tiers_and_star)
{
    USE("defaults { max = 20 }\n"
        "site \"London\" { allow = { \"ts-lon-01\" }, fallback = { \"Dublin\", \"Paris\", \"*\" } }");
    const char *got = run("C-SALES", NULL, NULL);
    CHECK(strncmp(got, "ts-lon-01/0 ts-dub-02/1 ts-dub-01/1 ts-par-01/2 ts-full/2 ", 58) == 0);
    /* "*": the 5 other available servers, each once */
    int tier3 = 0;
    for (size_t i = 0; i < tsl_result_count(R); i++) {
        for (size_t k = 0; k < i; k++)
            CHECK(strcmp(tsl_result_entry(R, i)->name, tsl_result_entry(R, k)->name) != 0);
        tier3 += tsl_result_entry(R, i)->tier == 3;
    }
    CHECK_INT(tier3, 5);
    CHECK_INT(tsl_result_count(R), 10);
    CHECK_STR(reason(1), "site \"London\" fallback tier 1: site \"Dublin\"");
    CHECK_CONTAINS(reason(9), "fallback tier 3: any other available server");
}

TEST(policy__fallback_tiers_are_listed_even_when_tier0_is_available)
{
    USE("site \"London\" { allow = { \"ts-lon-0*\" }, fallback = { \"Paris\" } }");
    CHECK_STR(run("C-SALES", NULL, NULL),
              "ts-lon-03/0 ts-lon-02/0 ts-lon-01/0 ts-par-01/1 ts-full/1");
}

TEST(policy__fallback_site_uses_its_own_block)
{
    USE("site \"Dublin\" { order = { \"ts-dub-01\" } }\n"
        "site \"London\" { allow = { \"ts-lon-01\" }, fallback = { \"Dublin\" } }");
    CHECK_STR(run("C-SALES", NULL, NULL), "ts-lon-01/0 ts-dub-01/1");
}

TEST(policy__fallback_after_delays_fallback_entries)
{
    USE("site \"London\" { allow = { \"ts-lon-01\" }, fallback = { \"Dublin\", after = 600 } }");
    CHECK_STR(run("C-SALES", NULL, NULL), "ts-lon-01/0 ts-dub-02/1 ts-dub-01/1");
    CHECK_INT(tsl_result_entry(R, 0)->after, 0);
    CHECK_INT(tsl_result_entry(R, 1)->after, 600);
    CHECK_INT(tsl_result_entry(R, 2)->after, 600);
    CHECK_CONTAINS(reason(1), "usable after 600 s");
    /* with "default", after delays tier 1 */
    USE("site \"Madrid\" { after = 300 }");
    run("C-MAD", NULL, NULL);
    CHECK_INT(tsl_result_count(R), 10);
    CHECK_INT(tsl_result_entry(R, 0)->tier, 1);
    CHECK_INT(tsl_result_entry(R, 0)->after, 300);
}

TEST(policy__fallback_after_marks_star_tiers_and_shows_in_json)
{
    USE("defaults { max = 20 }\n"
        "site \"London\" { allow = { \"ts-lon-01\" }, fallback = { \"Dublin\", \"*\", after = 600 } }");
    const char *got = run("C-SALES", NULL, NULL);
    CHECK(strncmp(got, "ts-lon-01/0 ts-dub-02/1 ts-dub-01/1 ", 36) == 0);
    size_t n = tsl_result_count(R), star = 0;
    CHECK(n > 3);
    CHECK_INT(tsl_result_entry(R, 0)->after, 0);
    for (size_t i = 1; i < n; i++) {
        CHECK_INT(tsl_result_entry(R, i)->after, 600);
        star += tsl_result_entry(R, i)->tier == 2;
    }
    CHECK_INT(star, n - 3); /* everything after Dublin is the "*" tier */
    CHECK_CONTAINS(reason(n - 1), "fallback tier 2: any other available server (\"*\"), usable after 600 s");
    tsl_buf b = TSL_BUF_INIT;
    CHECK_OK(tsl_result_json(&b, R));
    CHECK_CONTAINS(b.ptr, "\"name\":\"ts-lon-01\"");
    CHECK_CONTAINS(b.ptr, "\"tier\":0,\"after\":0,");
    CHECK_CONTAINS(b.ptr, "\"tier\":1,\"after\":600,");
    CHECK_CONTAINS(b.ptr, "\"tier\":2,\"after\":600,");
    char key[64];
    snprintf(key, sizeof key, "\"policy\":\"%s\"", tsl_policy_version(tsl_plan_policy(P)));
    CHECK_CONTAINS(b.ptr, key);
    tsl_buf_free(&b);
}

TEST(policy__defaults_fallback_applies_to_site_blocks_only)
{
    USE("defaults { fallback = \"block\" }\nsite \"Madrid\" { }");
    CHECK_STR(run("C-MAD", NULL, NULL), "");
    CHECK(tsl_result_blocked(R));
    /* Tokyo has no block: today's behaviour */
    CHECK_STR(run("C-TOK", NULL, NULL), "ts-tok-01/0");
}

/* ------------------------------------------------------------------------
 * Capacity spill
 * ---------------------------------------------------------------------- */

TEST(policy__full_servers_spill_behind_the_non_full_of_their_tier)
{
    USE("site \"London\" { order = { \"ts-lon-01\", \"ts-lon-02\", \"ts-lon-03\" },\n"
        "                  allow = { \"ts-lon-*\", \"ts-fin-*\" }, cap = 60 }");
    CHECK_STR(run("C-SALES", NULL, NULL),
              "ts-lon-02/0 ts-lon-03/0 ts-lon-lab/0 ts-lon-01/0 ts-fin-01/0");
    CHECK(!tsl_result_entry(R, 0)->full);
    CHECK(tsl_result_entry(R, 3)->full);
    CHECK_CONTAINS(reason(3), "order #1; at its registration cap");
    CHECK_CONTAINS(reason(4), "spilled behind the non-full entries");
}

TEST(policy__cap_defaults_to_the_server_capacity)
{
    USE("site \"Paris\" { order = { \"ts-full\", \"ts-par-01\" } }");
    tsl_request req = {0};
    req.ips[0] = "10.30.9.9";
    req.nips = 1;
    req.now = NOW;
    CHECK_OK(tsl_decide(R, W, P, &req, NULL));
    CHECK_INT(tsl_result_count(R), 2);
    CHECK_STR(tsl_result_entry(R, 0)->name, "ts-par-01");
    CHECK_STR(tsl_result_entry(R, 1)->name, "ts-full");
    CHECK(tsl_result_entry(R, 1)->full);
}

/* ------------------------------------------------------------------------
 * Groups
 * ---------------------------------------------------------------------- */

TEST(policy__group_allow_intersects_the_site_approved_set)
{
    USE("site \"London\" { allow = { \"ts-lon-*\", \"ts-fin-*\" } }\n"
        "group \"Finance\" { allow = { \"ts-fin-*\", \"ts-dub-*\" }, fallback = \"block\" }");
    CHECK_STR(run("C-FIN", NULL, NULL), "ts-fin-01/0");
    CHECK_CONTAINS(reason(0), "group \"Finance\" approved set");
    CHECK_STR(run("C-SALES", NULL, NULL),
              "ts-lon-lab/0 ts-lon-03/0 ts-lon-02/0 ts-lon-01/0 ts-fin-01/0");
}

TEST(policy__group_order_takes_precedence)
{
    USE("site \"London\" { order = { \"ts-lon-01\" }, allow = { \"ts-lon-0*\" } }\n"
        "group \"Finance\" { order = { \"ts-lon-03\" } }");
    CHECK_STR(run("C-FIN", NULL, NULL), "ts-lon-03/0 ts-lon-01/0 ts-lon-02/0");
    CHECK_STR(run("C-SALES", NULL, NULL), "ts-lon-01/0 ts-lon-03/0 ts-lon-02/0");
}

TEST(policy__stricter_fallback_wins)
{
    /* group block beats site list */
    USE("site \"London\" { allow = { \"ts-none\" }, fallback = { \"Dublin\" } }\n"
        "group \"Finance\" { fallback = \"block\" }");
    CHECK_STR(run("C-FIN", NULL, NULL), "");
    CHECK(tsl_result_blocked(R));
    CHECK_CONTAINS(tsl_result_blocked_reason(R), "group \"Finance\" blocks fallback");
    CHECK_STR(run("C-SALES", NULL, NULL), "ts-dub-02/1 ts-dub-01/1");
    /* group list beats site default */
    USE("site \"London\" { allow = { \"ts-none\" } }\n"
        "group \"Finance\" { fallback = { \"Paris\" } }");
    CHECK_STR(run("C-FIN", NULL, NULL), "ts-par-01/1 ts-full/1");
    run("C-SALES", NULL, NULL);
    CHECK_INT(tsl_result_count(R), 10);
    /* site block beats group list */
    USE("site \"London\" { allow = { \"ts-none\" }, fallback = \"block\" }\n"
        "group \"Finance\" { fallback = { \"Paris\" } }");
    CHECK_STR(run("C-FIN", NULL, NULL), "");
    CHECK(tsl_result_blocked(R));
}

TEST(policy__group_applies_to_clients_without_a_site)
{
    USE("group \"Finance\" { allow = { \"ts-fin-*\" }, fallback = \"block\" }");
    CHECK_STR(run("C-NOSITE", NULL, NULL), "ts-fin-01/0");
    USE("group \"Sales\" { fallback = \"block\" }");
    run("C-NOSITE", NULL, NULL);
    CHECK_INT(tsl_result_count(R), 10); /* Finance: no group, today's behaviour */
}

TEST(policy__request_department_counts_only_for_unknown_clients)
{
    USE("site \"London\" { }\ngroup \"finance\" { allow = { \"ts-fin-*\" }, fallback = \"block\" }");
    /* known clients: the inventory's department (test_promise.c pins the rest) */
    CHECK_STR(run("C-SALES", "Finance", NULL),
              "ts-lon-lab/0 ts-lon-03/0 ts-lon-02/0 ts-lon-01/0 ts-fin-01/0");
    CHECK_STR(run("C-FIN", "Sales", NULL), "ts-fin-01/0");
}

/* ------------------------------------------------------------------------
 * Settings, version, JSON, trace
 * ---------------------------------------------------------------------- */

TEST(policy__defaults_and_site_settings)
{
    USE("defaults { max = 2, ttl = 600, selection = \"responsiveness\" }\n"
        "site \"Paris\" { max = 1, ttl = 60 }\nsite \"London\" { }");
    run("C-SALES", NULL, NULL);
    CHECK_INT(tsl_result_count(R), 2);
    CHECK_INT(tsl_result_ttl(R), 600);
    /* responsiveness: the two 5 ms servers */
    CHECK(strstr("ts-lon-lab ts-fin-01", tsl_result_entry(R, 0)->name) != NULL);
    CHECK(strstr("ts-lon-lab ts-fin-01", tsl_result_entry(R, 1)->name) != NULL);
    run("C-TOK", NULL, NULL);
    CHECK_INT(tsl_result_ttl(R), 600);
    tsl_request req = {0};
    req.ips[0] = "10.30.1.1";
    req.nips = 1;
    req.now = NOW;
    CHECK_OK(tsl_decide(R, W, P, &req, NULL));
    CHECK_INT(tsl_result_count(R), 1);
    /* ts-full answers fastest (1 ms) but is at its cap: it spills behind */
    CHECK_STR(tsl_result_entry(R, 0)->name, "ts-par-01");
    CHECK_INT(tsl_result_ttl(R), 60);
}

TEST(policy__version_is_the_content_hash_and_json_carries_it)
{
    char hex[65];
    const char *src = "site \"London\" { order = { \"ts-lon-01\" } }";
    USE(src);
    policy_sha256_hex(hex, src, strlen(src));
    const char *v = tsl_policy_version(tsl_plan_policy(P));
    CHECK(strncmp(v, "sha256:", 7) == 0);
    CHECK_INT(strlen(v), 19);
    CHECK(strncmp(v + 7, hex, 12) == 0);
    run("C-SALES", NULL, NULL);
    tsl_buf b = TSL_BUF_INIT;
    CHECK_OK(tsl_result_json(&b, R));
    CHECK_CONTAINS(b.ptr, v);
    CHECK_CONTAINS(b.ptr, "\"tier\":0");
    CHECK_CONTAINS(b.ptr, "\"reason\":\"site \\\"London\\\" order #1\"");
    CHECK_CONTAINS(b.ptr, "\"strict\":true");
    tsl_buf_free(&b);
}

TEST(policy__sha256_known_answers)
{
    char hex[65];
    policy_sha256_hex(hex, "abc", 3);
    CHECK_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    policy_sha256_hex(hex, "", 0);
    CHECK_STR(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    policy_sha256_hex(hex, m, strlen(m));
    CHECK_STR(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    char *a = malloc(1000000);
    CHECK(a != NULL);
    memset(a, 'a', 1000000);
    policy_sha256_hex(hex, a, 1000000);
    free(a);
    CHECK_STR(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(policy__explain_shows_every_policy_step)
{
    tsl_trace *tr = NULL;
    CHECK_OK(tsl_trace_new(&tr));
    USE("site \"London\" {\n  order = { \"ts-lon-01\" },\n  allow = { \"ts-lon-0*\" },\n"
        "  fallback = { \"Dublin\" } }\n"
        "rule(\"noop\", function(req, list) end)\n");
    run_t("C-SALES", NULL, NULL, tr);
    char all[8192] = "";
    for (size_t i = 0; i < tsl_trace_count(tr); i++) {
        strncat(all, tsl_trace_line(tr, i), sizeof all - strlen(all) - 2);
        strcat(all, "\n");
    }
    tsl_trace_free(tr);
    CHECK_CONTAINS(all, "policy sha256:");
    CHECK_CONTAINS(all, "site \"London\" (line 1): static approved set of 3 server(s) from allow");
    CHECK_CONTAINS(all, "tier 0: 3 available approved server(s)");
    CHECK_CONTAINS(all, "tier 0 #1 ts-lon-01: order #1");
    CHECK_CONTAINS(all, "fallback tier 1: site \"Dublin\"");
    CHECK_CONTAINS(all, "rule \"noop\" (line 5)");
}

/* ------------------------------------------------------------------------
 * Rules
 * ---------------------------------------------------------------------- */

TEST(policy__rule_blocks_fallback_for_a_task)
{
    USE("site \"Madrid\" { }\n"
        "rule(\"imaging stays local\", function(req, list)\n"
        "  if req.task == \"imaging\" then list:block_fallback() end\n"
        "end)\n");
    CHECK_STR(run("C-MAD", NULL, "imaging"), "");
    CHECK(tsl_result_blocked(R));
    CHECK_CONTAINS(tsl_result_blocked_reason(R), "rule \"imaging stays local\" blocked fallback");
    run("C-MAD", NULL, "inventory");
    CHECK_INT(tsl_result_count(R), 10);
    CHECK(!tsl_result_blocked(R));
    /* rules run for sites no block names too */
    CHECK_STR(run("C-TOK", NULL, "imaging"), "ts-tok-01/0");
    USE("rule(\"imaging stays local\", function(req, list)\n"
        "  if req.task == \"imaging\" then list:block_fallback() end\n"
        "end)\n");
    CHECK_STR(run("C-MAD", NULL, "imaging"), "");
    CHECK(tsl_result_blocked(R));
    CHECK_INT(tsl_worker_policy_errors(W), 0);
}

TEST(policy__rule_restricts_by_metrics)
{
    USE("site \"London\" { }\n"
        "rule(\"fast\", function(req, list)\n"
        "  list:restrict(function(e) return e.response_ms <= 10 end)\n"
        "end)\n");
    CHECK_STR(run("C-SALES", NULL, NULL), "ts-lon-lab/0 ts-lon-01/0 ts-fin-01/0");
    USE("site \"London\" { }\n"
        "rule(\"names\", function(req, list) list:restrict({ \"ts-lon-0*\", \"ts-fin-01\" }) end)\n");
    CHECK_STR(run("C-SALES", NULL, NULL), "ts-lon-03/0 ts-lon-02/0 ts-lon-01/0 ts-fin-01/0");
}

TEST(policy__rule_removes_and_truncates)
{
    USE("rule(\"rm\", function(req, list)\n"
        "  assert(list:remove(\"ts-lon-0*\") == 3)\n"
        "  list:remove(list[1])\n"
        "end)\n");
    CHECK_STR(run("C-SALES", NULL, NULL), "ts-fin-01/0");
    USE("rule(\"short\", function(req, list) list:truncate(2) end)");
    CHECK_STR(run("C-SALES", NULL, NULL), "ts-lon-lab/0 ts-lon-03/0");
    CHECK_INT(tsl_worker_policy_errors(W), 0);
}

TEST(policy__rule_reorders_within_tiers)
{
    USE("site \"London\" { }\n"
        "rule(\"by response\", function(req, list)\n"
        "  list:reorder(function(a, b)\n"
        "    if a.response_ms ~= b.response_ms then return a.response_ms < b.response_ms end\n"
        "    return a.name < b.name\n"
        "  end)\n"
        "end)\n");
    CHECK_STR(run("C-SALES", NULL, NULL),
              "ts-fin-01/0 ts-lon-lab/0 ts-lon-01/0 ts-lon-02/0 ts-lon-03/0");
    CHECK_STR(reason(0), "placed by rule \"by response\"");
    USE("site \"London\" { allow = { \"ts-lon-01\" }, fallback = { \"Dublin\" } }\n"
        "rule(\"dub first\", function(req, list) list:prefer(\"ts-dub-01\", \"ts-lon-*\") end)\n");
    /* tiers are never interleaved: ts-dub-01 moves to the front of tier 1 */
    CHECK_STR(run("C-SALES", NULL, NULL), "ts-lon-01/0 ts-dub-01/1 ts-dub-02/1");
    CHECK_INT(tsl_worker_policy_errors(W), 0);
}

TEST(policy__rule_cannot_add_unavailable_denied_or_blocked_out_servers)
{
    USE("site \"London\" { allow = { \"ts-lon-0*\" }, deny = { \"ts-lon-lab\" } }\n"
        "rule(\"adds\", function(req, list)\n"
        "  local ok, why = list:add(\"ts-mad-01\")\n"
        "  assert(not ok and why:find(\"stopped\"), why)\n"
        "  ok, why = list:add(\"ts-lon-lab\")\n"
        "  assert(not ok and why == \"denied by the policy\", why)\n"
        "  ok, why = list:add(\"ts-lon-01\")\n"
        "  assert(not ok and why == \"already listed\", why)\n"
        "  ok, why = list:add(\"nope\")\n"
        "  assert(not ok and why == \"no such server\", why)\n"
        "  assert(list:add(\"ts-par-01\"))\n"
        "  assert(#list == 4 and list[4].name == \"ts-par-01\" and list[4].tier == 1)\n"
        "  list:block_fallback()\n"
        "  assert(#list == 3 and list.blocked)\n"
        "  ok, why = list:add(\"ts-dub-01\")\n"
        "  assert(not ok and why:find(\"outside the approved set\"), why)\n"
        "end)\n");
    CHECK_STR(run("C-SALES", NULL, NULL), "ts-lon-03/0 ts-lon-02/0 ts-lon-01/0");
    CHECK_INT(tsl_worker_policy_errors(W), 0);
    /* adding back an approved server after removing it */
    USE("site \"London\" { allow = { \"ts-lon-0*\" }, fallback = \"block\" }\n"
        "rule(\"back\", function(req, list)\n"
        "  list:remove(\"ts-lon-02\")\n"
        "  assert(list:add(\"ts-lon-02\"))\n"
        "  assert(not list:add(\"ts-dub-01\"))\n"
        "end)\n");
    CHECK_STR(run("C-SALES", NULL, NULL), "ts-lon-03/0 ts-lon-01/0 ts-lon-02/0");
    CHECK_STR(reason(2), "added by rule \"back\"");
    CHECK_INT(tsl_worker_policy_errors(W), 0);
}

TEST(policy__rule_sees_a_read_only_request_and_entry_metrics)
{
    uint64_t before = tsl_worker_policy_errors(W);
    USE("site \"London\" { order = { \"ts-fin-01\" }, allow = { \"ts-*\" }, cap = 250 }\n"
        "rule(\"look\", function(req, list)\n"
        "  assert(req.site == \"London\" and req.client == \"C-FIN\", req.site)\n"
        "  assert(req.department == \"Finance\" and req.name == \"FIN-PC\")\n"
        "  assert(req.ip == \"10.10.1.2\" and req.ips[1] == \"10.10.1.2\" and req.known)\n"
        "  assert(req.task == \"inventory\" and req.country == \"GB\" and req.now == 1800000000)\n"
        "  local e = list:find(\"ts-fin-01\")\n"
        "  assert(e.capacity == 1000 and e.connections == 300 and e.response_ms == 5)\n"
        "  assert(e.full and e.cap == 250 and e.free == 700 and e.load == 0.3)\n"
        "  assert(e.tier == 0 and e.approved and e.site == \"London\")\n"
        "  assert(e.reason:find(\"order #1\"), e.reason)\n"
        "  assert(list[1] == list:find(\"ts-lon-lab\") and list[1].position == 1)\n"
        "  local n = 0\n"
        "  for i, x in ipairs(list) do n = n + 1 end\n"
        "  for i, x in pairs(list) do n = n + 1 end\n"
        "  assert(n == 2 * #list and #list:names() == #list)\n"
        "  assert(list.strict and not list.blocked and list.max == 10)\n"
        "end)\n");
    run("C-FIN", NULL, "inventory");
    if (tsl_worker_policy_errors(W) != before)
        FAILF_("%s", tsl_worker_last_policy_error(W));
    /* writes are refused */
    const char *writes[] = {
        "rule(\"w\", function(req, list) req.site = \"Paris\" end)",
        "rule(\"w\", function(req, list) list.x = 1 end)",
        "rule(\"w\", function(req, list) list[1].name = \"x\" end)",
        "rule(\"w\", function(req, list) setmetatable(list, {}) end)",
        "rule(\"w\", function(req, list) local t = req.nosuchfield end)",
    };
    const char *want[] = {"read-only request", "read-only list", "read-only list entry",
                          "table expected", "no field 'nosuchfield'"};
    for (int i = 0; i < 5; i++) {
        USE(writes[i]);
        run("C-SALES", NULL, NULL);
        CHECK_INT(tsl_worker_policy_errors(W), before + (uint64_t)i + 1);
        CHECK_CONTAINS(tsl_worker_last_policy_error(W), want[i]);
        CHECK_CONTAINS(tsl_worker_last_policy_error(W), "t.lua:1:");
    }
}

TEST(policy__rules_run_in_file_order)
{
    USE("rule(\"first\", function(req, list) list:truncate(3) end)\n"
        "rule(\"second\", function(req, list) assert(#list == 3) list:truncate(1) end)\n");
    CHECK_STR(run("C-SALES", NULL, NULL), "ts-lon-lab/0");
}

/* ------------------------------------------------------------------------
 * Rule failures
 * ---------------------------------------------------------------------- */

TEST(policy__rule_error_gives_the_last_good_step)
{
    uint64_t before = tsl_worker_policy_errors(W);
    USE("site \"London\" { }\n"
        "rule(\"ok\", function(req, list) list:truncate(2) end)\n"
        "rule(\"broken\", function(req, list)\n"
        "  list:truncate(1)\n"
        "  local x = nil\n"
        "  return x.field\n"
        "end)\n"
        "rule(\"never\", function(req, list) list:truncate(0) end)\n");
    CHECK_STR(run("C-SALES", NULL, NULL), "ts-lon-lab/0 ts-lon-03/0");
    CHECK_INT(tsl_worker_policy_errors(W), before + 1);
    CHECK_CONTAINS(tsl_worker_last_policy_error(W), "rule \"broken\" (t.lua:3) failed: t.lua:6:");
    CHECK_CONTAINS(tsl_worker_last_policy_error(W), "attempt to index a nil value");
    /* the worker keeps working */
    CHECK_STR(run("C-SALES", NULL, NULL), "ts-lon-lab/0 ts-lon-03/0");
    CHECK_INT(tsl_worker_policy_errors(W), before + 2);
}

TEST(policy__rule_error_on_error_default_uses_the_default_logic)
{
    USE("defaults { on_error = \"default\" }\nsite \"London\" { order = { \"ts-lon-01\" } }\n"
        "rule(\"broken\", function(req, list) error(\"boom\") end)\n");
    CHECK_STR(run("C-SALES", NULL, NULL),
              "ts-lon-lab/0 ts-lon-03/0 ts-lon-02/0 ts-lon-01/0 ts-fin-01/0");
    CHECK(!tsl_result_strict(R));
    CHECK_CONTAINS(reason(0), "a policy rule failed");
    /* never outside the approved set when the site blocks fallback */
    USE("defaults { on_error = \"default\" }\n"
        "site \"London\" { allow = { \"ts-lon-01\", \"ts-lon-02\" }, fallback = \"block\" }\n"
        "rule(\"broken\", function(req, list) error(\"boom\") end)\n");
    CHECK_STR(run("C-SALES", NULL, NULL), "ts-lon-02/0 ts-lon-01/0");
    USE("defaults { on_error = \"default\" }\n"
        "site \"Madrid\" { fallback = \"block\" }\n"
        "rule(\"broken\", function(req, list) error(\"boom\") end)\n");
    CHECK_STR(run("C-MAD", NULL, NULL), "");
    CHECK(tsl_result_blocked(R));
}

TEST(policy__rule_that_loops_is_stopped_by_its_budget)
{
    uint64_t before = tsl_worker_policy_errors(W);
    USE("defaults { rule_budget = 100000 }\nsite \"London\" { }\n"
        "rule(\"loop\", function(req, list)\n  list:truncate(1)\n  while true do end\nend)\n");
    CHECK_STR(run("C-SALES", NULL, NULL),
              "ts-lon-lab/0 ts-lon-03/0 ts-lon-02/0 ts-lon-01/0 ts-fin-01/0");
    CHECK_INT(tsl_worker_policy_errors(W), before + 1);
    CHECK_CONTAINS(tsl_worker_last_policy_error(W), "t.lua:5: instruction budget of 100000 exceeded");
}

TEST(policy__rule_cannot_swallow_its_budget_with_pcall)
{
    uint64_t before = tsl_worker_policy_errors(W);
    USE("defaults { rule_budget = 100000 }\n"
        "rule(\"sneaky\", function(req, list)\n"
        "  while true do\n"
        "    pcall(function() while true do end end)\n"
        "    xpcall(function() while true do end end, function() while true do end end)\n"
        "  end\n"
        "end)\n");
    run("C-SALES", NULL, NULL);
    CHECK_INT(tsl_result_count(R), 5);
    CHECK_INT(tsl_worker_policy_errors(W), before + 1);
    CHECK_CONTAINS(tsl_worker_last_policy_error(W), "instruction budget");
    /* the budget is per request: the next one runs afresh */
    run("C-SALES", NULL, NULL);
    CHECK_INT(tsl_worker_policy_errors(W), before + 2);
}

TEST(policy__rule_memory_bomb_is_refused)
{
    uint64_t before = tsl_worker_policy_errors(W);
    USE("defaults { rule_time_ms = 10000 }\n" /* the memory ceiling, not the clock */
        "rule(\"bomb\", function(req, list)\n"
        "  local t = {}\n"
        "  local s = string.rep(\"x\", 1024)\n"
        "  for i = 1, 1e8 do t[i] = s .. i end\n"
        "end)\n");
    run("C-SALES", NULL, NULL);
    CHECK_INT(tsl_result_count(R), 5);
    CHECK_INT(tsl_worker_policy_errors(W), before + 1);
    CHECK_CONTAINS(tsl_worker_last_policy_error(W), "memory limit");
    /* the same worker then runs a good policy */
    USE("rule(\"short\", function(req, list) list:truncate(1) end)");
    CHECK_STR(run("C-SALES", NULL, NULL), "ts-lon-lab/0");
    CHECK_INT(tsl_worker_policy_errors(W), before + 1);
}

TEST(policy__entries_are_valid_only_during_their_rule_call)
{
    uint64_t before = tsl_worker_policy_errors(W);
    USE("local kept\n"
        "rule(\"keeps\", function(req, list)\n"
        "  if kept then local n = kept.name end\n"
        "  kept = list[1]\n"
        "end)\n");
    run("C-SALES", NULL, NULL);
    CHECK_INT(tsl_worker_policy_errors(W), before);
    run("C-SALES", NULL, NULL);
    CHECK_INT(tsl_worker_policy_errors(W), before + 1);
    CHECK_CONTAINS(tsl_worker_last_policy_error(W), "earlier request");
}

TEST(policy__rules_cannot_redeclare_the_policy_at_run_time)
{
    uint64_t before = tsl_worker_policy_errors(W);
    USE("rule(\"r\", function(req, list) rule(\"x\", function() end) end)");
    run("C-SALES", NULL, NULL);
    CHECK_INT(tsl_worker_policy_errors(W), before + 1);
    CHECK_CONTAINS(tsl_worker_last_policy_error(W), "only be called while the policy loads");
}

TEST(policy__one_worker_switches_between_plans)
{
    tsl_policy *a = NULL, *b = NULL;
    tsl_plan *pa = NULL, *pb = NULL;
    const char *sa = "rule(\"a\", function(req, list) list:truncate(1) end)";
    const char *sb = "rule(\"b\", function(req, list) list:truncate(2) end)";
    tsl_request req = {0};
    req.client = "C-SALES";
    req.now = NOW;
    CHECK_OK(tsl_policy_compile(&a, sa, strlen(sa), "a.lua"));
    CHECK_OK(tsl_policy_compile(&b, sb, strlen(sb), "b.lua"));
    CHECK_OK(tsl_plan_new(&pa, snap, a));
    CHECK_OK(tsl_plan_new(&pb, snap, b));
    for (int i = 0; i < 3; i++) {
        CHECK_OK(tsl_decide(R, W, pa, &req, NULL));
        CHECK_INT(tsl_result_count(R), 1);
        CHECK_OK(tsl_decide(R, W, pb, &req, NULL));
        CHECK_INT(tsl_result_count(R), 2);
    }
    /* the plan keeps the policy alive after the caller lets go */
    tsl_policy_free(a);
    tsl_policy_free(b);
    CHECK_OK(tsl_decide(R, W, pa, &req, NULL));
    CHECK_INT(tsl_result_count(R), 1);
    tsl_plan_free(pa);
    tsl_plan_free(pb);
}

/* ------------------------------------------------------------------------
 * Compile-time messages
 * ---------------------------------------------------------------------- */

static const char *compile_error(const char *src)
{
    static char msg[1024];
    tsl_policy *pol = NULL;
    int rc = tsl_policy_compile(&pol, src, strlen(src), "london.lua");
    tsl_policy_free(pol);
    snprintf(msg, sizeof msg, "%s", rc == TSL_EPOLICY ? tsl_error_last() : "(compiled)");
    return msg;
}

TEST(policy__compile_errors_name_file_line_block_and_field)
{
    CHECK_STR(compile_error("\n\n\nsite \"London\" {\n  order = \"ts-lon-01\" }"),
              "london.lua:4: site \"London\": field \"order\" must be a list of server names");
    CHECK_STR(compile_error("site \"London\" { odrer = {} }"),
              "london.lua:1: site \"London\": unknown field \"odrer\"");
    CHECK_STR(compile_error("site \"London\" { order = { \"ts-*\" } }"),
              "london.lua:1: site \"London\": field \"order\" must be a list of server names "
              "(\"ts-*\" is a glob; globs belong in allow)");
    CHECK_STR(compile_error("site \"London\" { }\nsite \"london\" { }"),
              "london.lua:2: site \"london\": declared twice (first at line 1)");
    CHECK_STR(compile_error("site \"London\" { fallback = \"nowhere\" }"),
              "london.lua:1: site \"London\": field \"fallback\" must be \"default\", \"block\" "
              "or a list of site names (or \"*\")");
    CHECK_STR(compile_error("site \"London\" { fallback = { \"London\" } }"),
              "london.lua:1: site \"London\": fallback names the site itself");
    CHECK_STR(compile_error("site \"London\" { fallback = { \"Paris\", aftr = 5 } }"),
              "london.lua:1: site \"London\": unknown key \"aftr\" in fallback (only site names, "
              "\"*\" and after = SECONDS)");
    CHECK_STR(compile_error("site \"London\" { fallback = { \"Paris\", after = -5 } }"),
              "london.lua:1: site \"London\": field \"fallback.after\" must be a whole number of "
              "seconds (0 to 2592000)");
    CHECK_STR(compile_error("group \"Finance\" { cap = 5 }"),
              "london.lua:1: group \"Finance\": unknown field \"cap\"");
    CHECK_STR(compile_error("defaults { max = 0 }"),
              "london.lua:1: defaults: field \"max\" must be a whole number from 1 to 1000");
    CHECK_STR(compile_error("defaults { on_error = \"ignore\" }"),
              "london.lua:1: defaults: field \"on_error\" must be \"approved\" or \"default\"");
    CHECK_STR(compile_error("defaults { }\ndefaults { }"),
              "london.lua:2: defaults: declared twice (first at line 1)");
    CHECK_STR(compile_error("site \"London\"\n"), "london.lua:1: site \"London\" has no { ... } body");
    CHECK_STR(compile_error("site(nil)"),
              "london.lua:1: bad argument #1 to 'site' (string expected, got nil)");
    CHECK_STR(compile_error("rule(\"x\")"),
              "london.lua:1: bad argument #2 to 'rule' (function expected, got no value)");
    CHECK_STR(compile_error("rule(\"x\", function() end)\nrule(\"x\", function() end)"),
              "london.lua:2: rule \"x\": declared twice (first at line 1)");
    CHECK_STR(compile_error("site \"London\" { allow = { } }"),
              "london.lua:1: site \"London\": field \"allow\" is empty (an empty approved set "
              "lists nothing)");
    CHECK_STR(compile_error("site \"London\" {\n  order = { \"a\", \n}"),
              "london.lua:3: '}' expected (to close '{' at line 1) near <eof>");
    CHECK_STR(compile_error("site \"London\" { order = { \"a\", 5 } }"),
              "london.lua:1: site \"London\": field \"order\" must be a list of server names");
    CHECK_STR(compile_error("site \"London\" { order = { [3] = \"a\" } }"),
              "london.lua:1: site \"London\": field \"order\" must be a list of server names");
    CHECK_STR(compile_error("site \"London\" { \"ts-lon-01\" }"),
              "london.lua:1: site \"London\": unexpected positional value (fields are written "
              "name = value)");
}

TEST(policy__compile_accepts_the_full_language)
{
    const char *src =
        "-- the example of the issue\n"
        "defaults { selection = \"capacity\", fallback = \"default\", max = 10, ttl = 3600,\n"
        "           cap = 5000, after = 0, on_error = \"approved\", rule_budget = 500000 }\n"
        "site \"London\" {\n"
        "  order    = { \"ts-lon-01\", \"ts-lon-02\" },\n"
        "  allow    = { \"ts-lon-*\", \"ts-dub-01\" },\n"
        "  deny     = { \"ts-lon-lab\" },\n"
        "  fallback = { \"Dublin\", \"Paris\" },\n"
        "}\n"
        "site \"Madrid\" { order = { \"ts-mad-01\" }, fallback = \"block\" }\n"
        "site(\"Paris\", { selection = \"connections\", max = 3, ttl = 60, cap = 100 })\n"
        "group \"Finance\" { allow = { \"ts-fin-*\" }, fallback = \"block\" }\n"
        "local function is_imaging(req) return req.task == \"imaging\" end\n"
        "rule(\"imaging stays local\", function(req, list)\n"
        "  if is_imaging(req) then list:block_fallback() end\n"
        "end)\n";
    tsl_policy *pol = NULL;
    CHECK_OK(tsl_policy_compile(&pol, src, strlen(src), "example.lua"));
    CHECK_INT(pol->nsites, 3);
    CHECK_INT(pol->ngroups, 1);
    CHECK_INT(pol->nrules, 1);
    CHECK_STR(pol->rules[0].name, "imaging stays local");
    CHECK_INT(pol->rules[0].line, 14);
    CHECK_INT(pol->sites[0].order.n, 2);
    CHECK_INT(pol->sites[0].fallback.kind, POL_FB_LIST);
    CHECK_INT(pol->sites[1].fallback.kind, POL_FB_BLOCK);
    CHECK_INT(pol->sites[2].cap, 100);
    CHECK_INT(pol->rule_budget, 500000);
    CHECK(tsl_policy_ref(pol) == pol);
    tsl_policy_free(pol);
    tsl_policy_free(pol);
}

/* ------------------------------------------------------------------------
 * Out of memory: fail the Nth allocation, for every N until success
 * ---------------------------------------------------------------------- */

static const char OOM_POLICY[] =
    "defaults { max = 5, on_error = \"default\" }\n"
    "site \"London\" { order = { \"ts-lon-01\" }, allow = { \"ts-lon-*\" }, fallback = { \"Dublin\", \"*\", after = 60 } }\n"
    "site \"Madrid\" { fallback = \"block\" }\n"
    "group \"Finance\" { allow = { \"ts-fin-*\" } }\n"
    "local names = {}\n"
    "for i = 1, 50 do names[i] = \"ts-\" .. i end\n"
    "site \"Paris\" { deny = names }\n"
    "rule(\"r\", function(req, list) if req.task == \"x\" then list:block_fallback() end end)\n";

static void oom_loop(bool persist)
{
    tsl_alloc_probe probe;
    policy_limits lim;
    int n;
    for (n = 1; n < 100000; n++) {
        tsl_policy *pol = NULL;
        memset(&probe, 0, sizeof probe);
        probe.fail_at = (uint64_t)n;
        probe.persist = persist;
        memset(&lim, 0, sizeof lim);
        lim.probe = &probe;
        int rc = policy_compile_ex(&pol, OOM_POLICY, strlen(OOM_POLICY), "oom.lua", &lim);
        if (!probe.fired) {
            CHECK_OK(rc);
            CHECK(pol != NULL);
            tsl_policy_free(pol);
            break;
        }
        if (rc != 0) {
            CHECK_INT(rc, TSL_ENOMEM);
            CHECK(pol == NULL);
            CHECK(tsl_error_last()[0] != '\0');
        }
        tsl_policy_free(pol);
    }
    CHECK(n > 50);
    CHECK(n < 100000);
}

TEST(policy__compile_survives_every_allocation_failure)
{
    oom_loop(false);
    oom_loop(true);
}

TEST(policy__bind_survives_every_allocation_failure)
{
    tsl_policy *pol = NULL;
    CHECK_OK(tsl_policy_compile(&pol, OOM_POLICY, strlen(OOM_POLICY), "oom.lua"));
    int n;
    for (n = 1; n < 100000; n++) {
        tsl_alloc_probe probe = {0, (uint64_t)n, true, false};
        void *bound = NULL;
        int rc = policy_bind_probe(&bound, snap, pol, &probe);
        if (!probe.fired) {
            CHECK_OK(rc);
            policy_unbind(bound);
            break;
        }
        CHECK_INT(rc, TSL_ENOMEM);
        CHECK(bound == NULL);
    }
    CHECK(n > 2);
    tsl_policy_free(pol);
}

/* ------------------------------------------------------------------------
 * Whole-estate tiers: the fast path equals the full ranking
 * ---------------------------------------------------------------------- */

/* "*" tiers and tier 1 of fallback "default" walk the servers in key order
 * and stop early; explain (a trace) ranks every server instead.  On a
 * generated estate, under every selection mode, with caps that fill
 * servers, recent errors and denies, both must give the same JSON. */
TEST(policy__whole_estate_tiers_walk_best_first_and_match_the_full_ranking)
{
    static const char *const modes[] = {"capacity", "responsiveness", "connections"};
    tsl_store *st = NULL;
    tsl_snapshot *gs = NULL;
    tsl_worker *w = NULL;
    tsl_result *r = NULL;
    tsl_trace *tr = NULL;
    tsl_buf fast = TSL_BUF_INIT, full = TSL_BUF_INIT;
    char src[4096];
    size_t compared = 0, mismatched = 0, starred = 0;

    CHECK_OK(tsl_store_open(&st, tsl_test_path("estate-walk.db"), 0));
    CHECK_OK(tsl_estate_generate(st, 40, 160, 3000, 11));
    CHECK_OK(tsl_snapshot_load(&gs, st, NULL));
    CHECK_OK(tsl_worker_new(&w));
    CHECK_OK(tsl_result_new(&r));
    CHECK_OK(tsl_trace_new(&tr));
    if (!gs || !w || !r || !tr)
        goto done;
    for (int m = 0; m < 3; m++) {
        /* sites 0..9: "*" tiers (a low cap on half of them fills servers);
         * Finance: an approved set of nothing, so tier 1 is every server */
        int n = snprintf(src, sizeof src,
                         "defaults { selection = \"%s\", max = 12 }\n"
                         "group \"Finance\" { allow = { \"ts-none-*\" } }\n"
                         "group \"Sales\" { allow = { \"ts-*\" }, deny = { \"ts-*-02\" } }\n",
                         modes[m]);
        for (uint32_t i = 0; i < 10 && i < gs->nsites; i++)
            n += snprintf(src + n, sizeof src - (size_t)n,
                          "site \"%s\" { order = { \"ts-none-01\" }, fallback = { \"*\" }%s }\n",
                          gs->sites[i].name, i % 2 ? ", cap = 3" : "");
        tsl_policy *pol = NULL;
        tsl_plan *plan = NULL;
        CHECK_OK(tsl_policy_compile(&pol, src, (size_t)n, "walk.lua"));
        CHECK_OK(tsl_plan_new(&plan, gs, pol));
        tsl_policy_free(pol);
        if (!plan)
            break;
        for (size_t c = 0; c < tsl_snapshot_client_count(gs); c++) {
            tsl_request req;
            CHECK_OK(tsl_snapshot_client_request(&req, gs, c));
            tsl_buf_clear(&fast);
            tsl_buf_clear(&full);
            tsl_trace_clear(tr);
            if (tsl_decide(r, w, plan, &req, NULL) < 0 || tsl_result_json(&fast, r) < 0 ||
                tsl_decide(r, w, plan, &req, tr) < 0 || tsl_result_json(&full, r) < 0) {
                mismatched++;
                continue;
            }
            for (size_t i = 0; i < tsl_result_count(r); i++)
                if (tsl_result_entry(r, i)->tier > 0) {
                    starred++;
                    break;
                }
            compared++;
            if (fast.len != full.len || memcmp(fast.ptr, full.ptr, fast.len) != 0) {
                if (mismatched++ == 0)
                    fprintf(stderr, "  %s\n  fast: %s\n  full: %s\n", modes[m], fast.ptr,
                            full.ptr);
            }
        }
        tsl_plan_free(plan);
    }
    CHECK(compared == 3 * tsl_snapshot_client_count(gs));
    CHECK(starred > compared / 10); /* the whole-estate tiers were exercised */
    CHECK(mismatched == 0);
done:
    tsl_buf_free(&fast);
    tsl_buf_free(&full);
    tsl_trace_free(tr);
    tsl_result_free(r);
    tsl_worker_free(w);
    tsl_snapshot_free(gs);
    tsl_store_free(st);
}

int main(void)
{
    snap = build_estate();
    if (!snap || tsl_worker_new(&W) < 0 || tsl_result_new(&R) < 0)
        return 2;
    RUN(policy__site_no_block_names_keeps_the_default_logic);
    RUN(policy__order_first_then_the_approved_rest_ranked_and_strict);
    RUN(policy__approved_set_is_the_order_when_no_allow);
    RUN(policy__approved_set_is_the_site_candidates_without_allow_or_order);
    RUN(policy__unavailable_servers_never_listed);
    RUN(policy__deny_applies_to_every_tier);
    RUN(policy__fallback_default_lists_every_available_server_when_approved_is_empty);
    RUN(policy__block_fallback_empties_list);
    RUN(policy__block_with_available_servers_lists_only_the_approved_set);
    RUN(policy__fallback_list_adds_ordered_tiers_and_star);
    RUN(policy__fallback_tiers_are_listed_even_when_tier0_is_available);
    RUN(policy__fallback_site_uses_its_own_block);
    RUN(policy__fallback_after_delays_fallback_entries);
    RUN(policy__fallback_after_marks_star_tiers_and_shows_in_json);
    RUN(policy__defaults_fallback_applies_to_site_blocks_only);
    RUN(policy__full_servers_spill_behind_the_non_full_of_their_tier);
    RUN(policy__cap_defaults_to_the_server_capacity);
    RUN(policy__group_allow_intersects_the_site_approved_set);
    RUN(policy__group_order_takes_precedence);
    RUN(policy__stricter_fallback_wins);
    RUN(policy__group_applies_to_clients_without_a_site);
    RUN(policy__request_department_counts_only_for_unknown_clients);
    RUN(policy__defaults_and_site_settings);
    RUN(policy__version_is_the_content_hash_and_json_carries_it);
    RUN(policy__sha256_known_answers);
    RUN(policy__explain_shows_every_policy_step);
    RUN(policy__rule_blocks_fallback_for_a_task);
    RUN(policy__rule_restricts_by_metrics);
    RUN(policy__rule_removes_and_truncates);
    RUN(policy__rule_reorders_within_tiers);
    RUN(policy__rule_cannot_add_unavailable_denied_or_blocked_out_servers);
    RUN(policy__rule_sees_a_read_only_request_and_entry_metrics);
    RUN(policy__rules_run_in_file_order);
    RUN(policy__rule_error_gives_the_last_good_step);
    RUN(policy__rule_error_on_error_default_uses_the_default_logic);
    RUN(policy__rule_that_loops_is_stopped_by_its_budget);
    RUN(policy__rule_cannot_swallow_its_budget_with_pcall);
    RUN(policy__rule_memory_bomb_is_refused);
    RUN(policy__entries_are_valid_only_during_their_rule_call);
    RUN(policy__rules_cannot_redeclare_the_policy_at_run_time);
    RUN(policy__one_worker_switches_between_plans);
    RUN(policy__whole_estate_tiers_walk_best_first_and_match_the_full_ranking);
    RUN(policy__compile_errors_name_file_line_block_and_field);
    RUN(policy__compile_accepts_the_full_language);
    RUN(policy__compile_survives_every_allocation_failure);
    RUN(policy__bind_survives_every_allocation_failure);
    tsl_plan_free(P);
    tsl_result_free(R);
    tsl_worker_free(W);
    tsl_snapshot_free(snap);
    return tsl_test_main();
}
