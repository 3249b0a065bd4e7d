/*
 * test_policy_tools.c - the admin tooling of the policy layer through the
 * engine API: tsl_policy_check (each kind of finding and the exit level),
 * the policy test runner (passing, failing and broken test files, TAP
 * numbering), and policy versions in the store (add, dedupe, activate,
 * list, read-only stores).
 */
#include "harness.h"
#include "decide.h"
#include "policy.h"
#include "store.h"

#define NOW 1800000000LL

static tsl_snapshot *estate(void)
{
    tsl_snapshot *s;
    const char *lon[] = {"London"}, *mad[] = {"Madrid"}, *dub[] = {"Dublin"};
    int err = 0;
    if (tsl_snapshot_begin(&s, NULL) < 0)
        return NULL;
    err |= snap_add_site(s, "London", "GB", NULL, NULL);
    err |= snap_add_subnet(s, "London", "10.10.0.0/16");
    err |= snap_add_site(s, "Madrid", "ES", NULL, NULL);
    err |= snap_add_subnet(s, "Madrid", "10.40.0.0/16");
    err |= snap_add_site(s, "Dublin", "IE", NULL, NULL);
    err |= snap_add_subnet(s, "Dublin", "10.20.0.0/16");
    err |= snap_add_server(s, "ts-lon-01", NULL, "10.10.0.1", lon, 1, true, true, 1000, 10, 5, 0);
    err |= snap_add_server(s, "ts-lon-02", NULL, "10.10.0.2", lon, 1, true, true, 1000, 20, 5, 0);
    err |= snap_add_server(s, "ts-mad-01", NULL, "10.40.0.1", mad, 1, true, false, 1000, 0, 5, 0);
    err |= snap_add_server(s, "ts-dub-01", NULL, "10.20.0.1", dub, 1, true, true, 1000, 0, 5, 0);
    err |= snap_add_client(s, "C1", "PC1", "10.10.1.1", "Finance", NULL, NULL);
    err |= snap_add_client(s, "C2", "PC2", "10.40.1.1", "Sales", NULL, NULL);
    err |= snap_add_client(s, "C3", "PC3", "10.20.1.1", "Sales", NULL, NULL);
    err |= tsl_snapshot_seal(s);
    if (err) {
        tsl_snapshot_free(s);
        return NULL;
    }
    return s;
}

static tsl_snapshot *snap;

/* Checks src; returns the report, level in *worst. */
static const char *check(const char *src, bool with_snap, int *worst)
{
    static tsl_buf out;
    tsl_buf_free(&out);
    if (tsl_policy_check(worst, &out, src, strlen(src), "p.lua", with_snap ? snap : NULL, NOW) < 0)
        return "(check failed)";
    return out.ptr ? out.ptr : "";
}

/* ------------------------------------------------------------------------
 * tsl check
 * ---------------------------------------------------------------------- */

TEST(check__clean_policy_is_level_0)
{
    int worst = -1;
    /* Madrid's only server is stopped, so its client goes abroad whatever
     * the policy: with the inventory that is the one finding */
    const char *src = "site \"London\" { order = { \"ts-lon-01\" }, allow = { \"ts-lon-*\" } }\n"
                      "rule(\"r\", function(req, list) end)\n";
    const char *r = check(src, false, &worst);
    CHECK_INT(worst, 0);
    CHECK_STR(r, "p.lua: 0 error(s), 0 warning(s) (text only: give an inventory to check names)\n");
    r = check(src, true, &worst);
    CHECK_STR(r, "p.lua: warning: site \"Madrid\": 1 client(s) would be sent outside their "
                 "country: PC2 -> ts-dub-01\n"
                 "p.lua: warning: 1 of 3 client(s) stranded: 0 blocked, 1 outside their country, "
                 "0 outside their site, 0 on a fallback tier\n"
                 "p.lua: 0 error(s), 2 warning(s)\n");
}

TEST(check__syntax_error_is_an_error_with_file_and_line)
{
    int worst = -1;
    const char *r = check("site \"London\" {\n  order = { \"a\" \n", false, &worst);
    CHECK_INT(worst, 2);
    CHECK_CONTAINS(r, "p.lua:3: error: '}' expected (to close '{' at line 2) near <eof>");
    r = check("\n\nsite \"London\" { order = \"ts-lon-01\" }", false, &worst);
    CHECK_INT(worst, 2);
    CHECK_CONTAINS(r, "p.lua:3: error: site \"London\": field \"order\" must be a list of server names");
    r = check("while true do end", false, &worst);
    CHECK_CONTAINS(r, "p.lua:1: error: instruction budget");
}

TEST(check__names_and_globs_that_match_nothing_are_warnings)
{
    int worst = -1;
    const char *r = check("site \"London\" { allow = { \"ts-lnd-*\", \"ts-lon-01\" },\n"
                          "                  deny = { \"ts-lon-1\" } }",
                          true, &worst);
    CHECK_INT(worst, 1);
    CHECK_CONTAINS(r, "p.lua:1: warning: site \"London\": allow pattern \"ts-lnd-*\" matches no server");
    CHECK_CONTAINS(r, "warning: site \"London\": deny names \"ts-lon-1\", which is not a server in "
                      "the inventory (did you mean \"ts-lon-01\"?)");
}

TEST(check__unknown_sites_and_groups_are_warnings)
{
    int worst = -1;
    const char *r = check("site \"Lodnon\" { }\n"
                          "site \"London\" { fallback = { \"Dubiln\" } }\n"
                          "group \"Marketing\" { allow = { \"ts-lon-*\" } }\n",
                          true, &worst);
    CHECK_INT(worst, 1);
    CHECK_CONTAINS(r, "p.lua:1: warning: site \"Lodnon\" is not in the inventory, so this block "
                      "applies to no client (did you mean \"London\"?)");
    CHECK_CONTAINS(r, "p.lua:2: warning: site \"London\": fallback names \"Dubiln\", which is not a "
                      "site in the inventory (did you mean \"Dublin\"?)");
    CHECK_CONTAINS(r, "p.lua:3: warning: group \"Marketing\": no client in the inventory has this "
                      "department");
}

TEST(check__fallback_cycles_are_warnings)
{
    int worst = -1;
    const char *r = check("site \"London\" { fallback = { \"Dublin\" } }\n"
                          "site \"Dublin\" { fallback = { \"Madrid\" } }\n"
                          "site \"Madrid\" { fallback = { \"London\", \"*\" } }\n",
                          false, &worst);
    CHECK_INT(worst, 1);
    CHECK_CONTAINS(r, "p.lua:1: warning: fallback cycle: London -> Dublin -> Madrid -> London");
    /* reported once, not once per member */
    CHECK(strstr(strstr(r, "fallback cycle") + 1, "fallback cycle") == NULL);
}

TEST(check__blocking_sites_with_no_server_are_errors)
{
    int worst = -1;
    const char *r = check("site \"Madrid\" { fallback = \"block\" }\n"
                          "site \"London\" { allow = { \"nothing-*\" }, fallback = \"block\" }\n",
                          true, &worst);
    CHECK_INT(worst, 2);
    CHECK_CONTAINS(r, "p.lua:1: error: site \"Madrid\" blocks fallback and none of its 1 approved "
                      "server(s) is available right now: its clients are stranded");
    CHECK_CONTAINS(r, "p.lua:2: error: site \"London\" blocks fallback but its approved set is "
                      "empty");
    /* through the defaults too */
    r = check("defaults { fallback = \"block\" }\nsite \"Madrid\" { }\n", true, &worst);
    CHECK_INT(worst, 2);
    CHECK_CONTAINS(r, "site \"Madrid\" blocks fallback");
}

TEST(check__rules_failing_on_sample_clients_are_errors)
{
    int worst = -1;
    const char *r = check("rule(\"fine\", function(req, list) end)\n"
                          "rule(\"imaging\", function(req, list)\n"
                          "  if req.task == \"imaging\" then error(\"oops\") end\n"
                          "end)\n",
                          true, &worst);
    CHECK_INT(worst, 2);
    CHECK_CONTAINS(r, "p.lua:2: error: rule \"imaging\" failed on 3 of 12 sample request(s); first: "
                      "p.lua:3: oops (task imaging)");
    CHECK(strstr(r, "rule \"fine\"") == NULL);
}

TEST(check__order_outside_allow_and_groups_that_do_nothing)
{
    int worst = -1;
    const char *r = check("site \"London\" { order = { \"ts-lon-01\", \"ts-dub-01\" }, allow = { \"ts-lon-*\" } }\n"
                          "group \"Sales\" { }\n",
                          false, &worst);
    CHECK_INT(worst, 1);
    CHECK_CONTAINS(r, "site \"London\": order member \"ts-dub-01\" is not in allow, so it is never listed");
    CHECK_CONTAINS(r, "p.lua:2: warning: group \"Sales\" sets nothing and changes nothing");
}

TEST(check__group_that_strands_clients_is_a_warning)
{
    int worst = -1;
    const char *r = check("group \"Finance\" { allow = { \"ts-dub-*\" }, fallback = \"block\" }\n",
                          true, &worst);
    CHECK_INT(worst, 1);
    CHECK_CONTAINS(r, "p.lua:1: warning: site \"London\", group \"Finance\": 1 client(s) would be "
                      "blocked (an empty list): PC1\n");
}

/* ------------------------------------------------------------------------
 * tsl test
 * ---------------------------------------------------------------------- */

static const char POLICY[] =
    "site \"London\" { order = { \"ts-lon-02\" }, allow = { \"ts-lon-*\" }, fallback = \"block\" }\n"
    "rule(\"r\", function(req, list) if req.task == \"boom\" then error(\"kaboom\") end end)\n";

static const char INVENTORY[] =
    "inventory {\n"
    "  sites = { { name = \"London\", subnets = { \"10.10.0.0/16\" } },\n"
    "            { name = \"Paris\", subnets = { \"10.30.0.0/16\" } } },\n"
    "  task_servers = {\n"
    "    { name = \"ts-lon-01\", sites = { \"London\" }, connections = 5 },\n"
    "    { name = \"ts-lon-02\", sites = { \"London\" }, connections = 900 },\n"
    "    { name = \"ts-par-01\", sites = { \"Paris\" } },\n"
    "  },\n"
    "  clients = { { guid = \"G1\", ip = \"10.10.1.1\", department = \"Sales\" } },\n"
    "}\n";

static const char *run_tests(const char *body, tsl_test_counts *c, const char *override)
{
    static tsl_buf out;
    char text[8192];
    tsl_buf_free(&out);
    tsl_test_write(tsl_test_path("policy.lua"), POLICY);
    snprintf(text, sizeof text, "policy \"policy.lua\"\n%s%s", INVENTORY, body);
    tsl_test_write(tsl_test_path("case_test.lua"), text);
    memset(c, 0, sizeof *c);
    if (tsl_policy_test_file(&out, c, tsl_test_path("case_test.lua"), override) < 0)
        return "(runner failed)";
    return out.ptr ? out.ptr : "";
}

TEST(test__passing_cases_print_ok)
{
    tsl_test_counts c;
    const char *r = run_tests(
        "test \"ordered\" { ip = \"10.10.1.1\", expect = { \"ts-lon-02\", \"ts-lon-01\" },\n"
        "                  strict = true, tiers = { 0, 0 }, site = \"London\", blocked = false }\n"
        "test \"by guid\" { client = \"G1\", first = { \"ts-lon-02\" }, count = 2,\n"
        "                  contains = { \"ts-lon-*\" }, excludes = { \"ts-par-01\" },\n"
        "                  reasons = { \"order #1\" }, after = { 0, 0 }, ttl = 3600 }\n"
        "test(\"paris\", { ip = \"10.30.1.1\", expect = { \"ts-par-01\" }, strict = false })\n"
        "test \"no site\" { ip = \"192.168.1.1\", site = false, tiers = { 1, 1, 1 } }\n"
        "test \"rule error expected\" { ip = \"10.10.1.1\", task = \"boom\", rule_error = \"kaboom\" }\n",
        &c, NULL);
    CHECK_INT(c.run, 5);
    CHECK_INT(c.passed, 5);
    CHECK_INT(c.failed, 0);
    CHECK_CONTAINS(r, "ok 1 - case_test.lua: ordered\n");
    CHECK_CONTAINS(r, "ok 3 - case_test.lua: paris\n");
    CHECK_CONTAINS(r, "ok 5 - case_test.lua: rule error expected\n");
}

TEST(test__failing_cases_print_not_ok_with_the_difference)
{
    tsl_test_counts c;
    const char *r = run_tests(
        "test \"wrong order\" { ip = \"10.10.1.1\", expect = { \"ts-lon-01\", \"ts-lon-02\" } }\n"
        "test \"wrong flags\" { ip = \"10.10.1.1\", blocked = true, strict = false, site = \"Paris\" }\n"
        "test \"unexpected rule error\" { ip = \"10.10.1.1\", task = \"boom\" }\n"
        "test \"typo\" { ip = \"10.10.1.1\", expcet = { } }\n"
        "test \"good\" { ip = \"10.10.1.1\", count = 2 }\n",
        &c, NULL);
    CHECK_INT(c.run, 5);
    CHECK_INT(c.passed, 1);
    CHECK_INT(c.failed, 4);
    CHECK_CONTAINS(r, "not ok 1 - case_test.lua: wrong order\n"
                      "#   expected: ts-lon-01 ts-lon-02\n"
                      "#   got:      ts-lon-02 ts-lon-01\n");
    CHECK_CONTAINS(r, "#   expected blocked = true; got false");
    CHECK_CONTAINS(r, "#   expected strict = false; got true");
    CHECK_CONTAINS(r, "#   expected site Paris; got London");
    CHECK_CONTAINS(r, "not ok 3 - case_test.lua: unexpected rule error\n#   a rule failed: ");
    CHECK_CONTAINS(r, "not ok 4 - case_test.lua: typo\n#   test \"typo\": unknown field \"expcet\"");
    CHECK_CONTAINS(r, "ok 5 - case_test.lua: good\n");
}

TEST(test__policy_override_and_broken_files)
{
    tsl_test_counts c;
    tsl_test_write(tsl_test_path("other.lua"), "site \"London\" { allow = { \"ts-lon-01\" } }\n");
    const char *r = run_tests("test \"only 01\" { ip = \"10.10.1.1\", expect = { \"ts-lon-01\" } }\n",
                              &c, tsl_test_path("other.lua"));
    CHECK_INT(c.passed, 1);
    CHECK_CONTAINS(r, "ok 1 - case_test.lua: only 01");

    /* a file that does not run is one failed test, with the reason */
    tsl_buf out = TSL_BUF_INIT;
    memset(&c, 0, sizeof c);
    tsl_test_write(tsl_test_path("broken.lua"), "policy \"policy.lua\"\nx = 1\n");
    CHECK_OK(tsl_policy_test_file(&out, &c, tsl_test_path("broken.lua"), NULL));
    CHECK_INT(c.failed, 1);
    CHECK_CONTAINS(out.ptr, "not ok 1 - broken.lua: (the file itself)\n"
                            "#   broken.lua:2: assignment to undeclared global 'x'");
    tsl_buf_clear(&out);
    tsl_test_write(tsl_test_path("nopolicy.lua"), "policy \"missing.lua\"\ntest \"t\" { }\n");
    CHECK_OK(tsl_policy_test_file(&out, &c, tsl_test_path("nopolicy.lua"), NULL));
    CHECK_INT(c.failed, 2);
    CHECK_CONTAINS(out.ptr, "not ok 2 - nopolicy.lua: (the file itself)\n#   cannot open");
    tsl_buf_clear(&out);
    tsl_test_write(tsl_test_path("badinv.lua"),
                   "policy \"policy.lua\"\ninventory { task_servers = { { name = \"a\", sites = { \"Nowhere\" } } } }\n"
                   "test \"t\" { ip = \"10.0.0.1\" }\n");
    CHECK_OK(tsl_policy_test_file(&out, &c, tsl_test_path("badinv.lua"), NULL));
    CHECK_INT(c.failed, 3);
    CHECK_CONTAINS(out.ptr, "not ok 3 - badinv.lua: (the file itself)\n#   inventory: task_servers[1]");
    tsl_buf_clear(&out);
    tsl_test_write(tsl_test_path("loop.lua"), "while true do end\n");
    CHECK_OK(tsl_policy_test_file(&out, &c, tsl_test_path("loop.lua"), NULL));
    CHECK_INT(c.failed, 4);
    CHECK_CONTAINS(out.ptr, "instruction budget");
    tsl_buf_free(&out);
}

TEST(test__json_inventories_load_through_the_store)
{
    tsl_test_counts c = {0, 0, 0};
    tsl_buf out = TSL_BUF_INIT;
    char text[2048];
    snprintf(text, sizeof text,
             "policy \"%s/policies/examples/demo.lua\"\n"
             "inventory \"%s/policies/demo/estate.json\"\n"
             "now \"2026-11-25T10:00:00Z\"\n"
             "test \"madrid\" { ip = \"10.40.1.15\", expect = { \"ts-mad-01\" } }\n",
             TSL_SOURCE_DIR, TSL_SOURCE_DIR);
    tsl_test_write(tsl_test_path("json_test.lua"), text);
    CHECK_OK(tsl_policy_test_file(&out, &c, tsl_test_path("json_test.lua"), NULL));
    CHECK_INT(c.passed, 1);
    tsl_buf_free(&out);
}

/* ------------------------------------------------------------------------
 * Policy versions in the store
 * ---------------------------------------------------------------------- */

TEST(store__policy_versions_add_dedupe_activate_list)
{
    tsl_store *st = NULL;
    tsl_policy *a = NULL, *b = NULL, *act = NULL;
    int64_t id = 0;
    bool existed = true;
    tsl_buf out = TSL_BUF_INIT;
    const char *sa = "site \"London\" { }", *sb = "site \"Madrid\" { }\nrule(\"r\", function() end)";
    const char *path = tsl_test_path("versions.db");

    CHECK_OK(tsl_store_open(&st, path, 0));
    CHECK_INT(tsl_store_schema_version(st), tsl_store_schema_latest());
    CHECK_OK(tsl_store_policy_active(&act, st));
    CHECK_NULL(act);
    CHECK_OK(tsl_policy_compile(&a, sa, strlen(sa), "a.lua"));
    CHECK_OK(tsl_policy_compile(&b, sb, strlen(sb), "b.lua"));
    CHECK_OK(tsl_store_policy_add(&id, &existed, st, a, "alice", "first", TSL_POLICY_ACTIVATE, NOW));
    CHECK_INT(id, 1);
    CHECK(!existed);
    CHECK_OK(tsl_store_policy_add(&id, &existed, st, b, "bob", NULL, 0, NOW + 60));
    CHECK_INT(id, 2);
    CHECK_OK(tsl_store_policy_add(&id, &existed, st, a, "carol", "again", 0, NOW + 120));
    CHECK_INT(id, 1);
    CHECK(existed);
    CHECK_OK(tsl_store_policy_active(&act, st));
    CHECK(act != NULL);
    CHECK_STR(tsl_policy_version(act), tsl_policy_version(a));
    CHECK_STR(tsl_policy_name(act), "a.lua");
    tsl_policy_free(act);
    act = NULL;
    CHECK_OK(tsl_store_policy_add(&id, &existed, st, b, "bob", NULL, TSL_POLICY_ACTIVATE, NOW + 180));
    CHECK_OK(tsl_store_policy_active(&act, st));
    CHECK_STR(tsl_policy_version(act), tsl_policy_version(b));
    size_t len = 0;
    CHECK_STR(tsl_policy_source(act, &len), sb);
    CHECK_INT(len, strlen(sb));

    CHECK_OK(tsl_store_policy_list(&out, st, TSL_FORMAT_CSV));
    CHECK_CONTAINS(out.ptr, "id,version,name,author,comment,created_at,sites,groups,rules,active,"
                            "staged_sites,last_dry_run,shadow\n");
    char want[256];
    snprintf(want, sizeof want, "1,%s,a.lua,alice,first,2027-01-15T08:00:00Z,1,0,0,false,,,false\n",
             tsl_policy_version(a));
    CHECK_CONTAINS(out.ptr, want);
    snprintf(want, sizeof want, "2,%s,b.lua,bob,,2027-01-15T08:01:00Z,1,0,1,true,,,false\n",
             tsl_policy_version(b));
    CHECK_CONTAINS(out.ptr, want);
    tsl_buf_clear(&out);
    CHECK_OK(tsl_store_policy_list(&out, st, TSL_FORMAT_JSON));
    CHECK_CONTAINS(out.ptr, "\"author\":\"bob\",\"comment\":null");
    tsl_buf_free(&out);
    tsl_store_free(st);
    st = NULL;

    /* a read-only store lists but refuses to add */
    CHECK_OK(tsl_store_open(&st, path, TSL_STORE_READONLY));
    CHECK(tsl_store_policy_add(&id, &existed, st, a, NULL, NULL, 0, NOW) < 0);
    tsl_policy_free(act);
    tsl_policy_free(a);
    tsl_policy_free(b);
    tsl_store_free(st);
}

int main(void)
{
    if (!(snap = estate()))
        return 2;
    RUN(check__clean_policy_is_level_0);
    RUN(check__syntax_error_is_an_error_with_file_and_line);
    RUN(check__names_and_globs_that_match_nothing_are_warnings);
    RUN(check__unknown_sites_and_groups_are_warnings);
    RUN(check__fallback_cycles_are_warnings);
    RUN(check__blocking_sites_with_no_server_are_errors);
    RUN(check__rules_failing_on_sample_clients_are_errors);
    RUN(check__order_outside_allow_and_groups_that_do_nothing);
    RUN(check__group_that_strands_clients_is_a_warning);
    RUN(test__passing_cases_print_ok);
    RUN(test__failing_cases_print_not_ok_with_the_difference);
    RUN(test__policy_override_and_broken_files);
    RUN(test__json_inventories_load_through_the_store);
    RUN(store__policy_versions_add_dedupe_activate_list);
    tsl_snapshot_free(snap);
    return tsl_test_main();
}
