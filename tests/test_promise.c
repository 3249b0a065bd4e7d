/*
 * test_promise.c - the admin's promise holds everywhere (issue 10): the
 * `defaults` block reaches sites no block names and clients with no site,
 * `unassigned` gives those clients servers of their own, a department's
 * servers stay its own in two lines, and a request cannot loosen a policy.
 * Against a hand-built estate whose servers can be taken down per test.
 */
#include "agent.h"
#include "broker.h"
#include "broker_client.h"
#include "harness.h"
#include "decide.h"
#include "policy.h"
#include "store.h"

#include <sys/stat.h>

#define NOW 1800000000LL

/* servers that can be taken down */
enum { DOWN_TOK = 1, DOWN_FIN1 = 2, DOWN_LON = 4, DOWN_FIN2 = 8 };

static tsl_snapshot *snap;
static tsl_worker *W;
static tsl_result *R;
static tsl_plan *P;
static char ERR[1024];

static bool doctor_clients; /* add the clients of the doctor tests */

static tsl_snapshot *build_estate(unsigned down)
{
    tsl_snapshot *s;
    const char *lon[] = {"London"}, *man[] = {"Manchester"}, *tok[] = {"Tokyo"};
    int err = 0;
    if (tsl_snapshot_begin(&s, NULL) < 0)
        return NULL;
    err |= snap_add_site(s, "London", "GB", NULL, NULL);
    err |= snap_add_subnet(s, "London", "10.10.0.0/16");
    err |= snap_add_site(s, "Manchester", "GB", NULL, NULL);
    err |= snap_add_subnet(s, "Manchester", "10.11.0.0/16");
    err |= snap_add_site(s, "Tokyo", "JP", NULL, NULL);
    err |= snap_add_subnet(s, "Tokyo", "10.70.0.0/16");
    /* name host ip sites n registered running capacity connections response heartbeat */
    err |= snap_add_server(s, "ts-lon-01", NULL, "10.10.0.1", lon, 1, true, !(down & DOWN_LON),
                           1000, 100, 10, 0);
    err |= snap_add_server(s, "ts-lon-02", NULL, "10.10.0.2", lon, 1, true, !(down & DOWN_LON),
                           1000, 50, 20, 0);
    err |= snap_add_server(s, "ts-fin-01", NULL, "10.10.0.5", lon, 1, true, !(down & DOWN_FIN1),
                           1000, 300, 5, 0);
    err |= snap_add_server(s, "ts-man-01", NULL, "10.11.0.1", man, 1, true, true, 1000, 10, 10, 0);
    err |= snap_add_server(s, "ts-fin-02", NULL, "10.11.0.5", man, 1, true, !(down & DOWN_FIN2),
                           1000, 20, 10, 0);
    err |= snap_add_server(s, "ts-tok-01", NULL, "10.70.0.1", tok, 1, true, !(down & DOWN_TOK),
                           1000, 2, 10, 0);
    err |= snap_add_server(s, "ts-vpn-01", NULL, "172.16.0.1", NULL, 0, true, true, 1000, 5, 10, 0);
    err |= snap_add_client(s, "C-LON-FIN", "LON-FIN", "10.10.1.2", "Finance", NULL, NULL);
    err |= snap_add_client(s, "C-LON-SALES", "LON-SALES", "10.10.1.1", "Sales", NULL, NULL);
    err |= snap_add_client(s, "C-MAN-FIN", "MAN-FIN", "10.11.1.1", "Finance", NULL, NULL);
    err |= snap_add_client(s, "C-MAN-SALES", "MAN-SALES", "10.11.1.2", "Sales", NULL, NULL);
    err |= snap_add_client(s, "C-TOK", "TOK-PC", "10.70.1.1", "Sales", NULL, NULL);
    err |= snap_add_client(s, "C-TOK-FIN", "TOK-FIN", "10.70.1.2", "Finance", NULL, NULL);
    err |= snap_add_client(s, "C-NOSITE", "ROAMER", "192.168.1.1", "Sales", NULL, NULL);
    if (doctor_clients) {
        err |= snap_add_client(s, "D-TOK", "LON-ON-TOKYO", "10.10.2.1", "Sales", NULL, "ts-tok-01");
        err |= snap_add_client(s, "D-MAN", "LON-ON-MAN", "10.10.2.2", "Sales", NULL, "ts-man-01");
        err |= snap_add_client(s, "D-LON", "LON-ON-LON", "10.10.2.3", "Sales", NULL, "ts-lon-01");
        err |= snap_add_error(s, "D-LON", "ts-lon-01", NOW - 60);
    }
    err |= tsl_snapshot_seal(s);
    if (err) {
        fprintf(stderr, "fixture: %s\n", tsl_error_last());
        tsl_snapshot_free(s);
        return NULL;
    }
    return s;
}

/* Compiles src against an estate with `down` servers stopped. */
static bool use(const char *src, unsigned down)
{
    tsl_policy *pol = NULL;
    tsl_plan_free(P);
    P = NULL;
    tsl_snapshot_free(snap);
    ERR[0] = '\0';
    if (!(snap = build_estate(down))) {
        snprintf(ERR, sizeof ERR, "fixture failed");
        return false;
    }
    if (src && tsl_policy_compile(&pol, src, strlen(src), "t.lua") < 0) {
        snprintf(ERR, sizeof ERR, "%s", tsl_error_last());
        return false;
    }
    int rc = tsl_plan_new(&P, snap, pol);
    tsl_policy_free(pol);
    if (rc < 0)
        snprintf(ERR, sizeof ERR, "%s", tsl_error_last());
    return rc == 0;
}

#define USE(src, down)                                                           \
    do {                                                                         \
        if (!use(src, down))                                                     \
            FAILF_("policy did not load: %s", ERR);                              \
    } while (0)

/* "name/tier name/tier ..." for a client, with an optional department. */
static const char *run(const char *client, const char *dept)
{
    static char out[2048];
    tsl_request req = {0};
    req.client = client;
    req.department = dept;
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

/* ------------------------------------------------------------------------
 * defaults reaches every request
 * ---------------------------------------------------------------------- */

TEST(promise__defaults_block_fails_closed_at_sites_no_block_names)
{
    USE("defaults { fallback = \"block\" }", DOWN_TOK);
    CHECK_STR(run("C-TOK", NULL), "");
    CHECK(tsl_result_blocked(R));
    CHECK_CONTAINS(tsl_result_blocked_reason(R), "defaults block fallback");
    /* a site with available candidates keeps them, and nothing else */
    CHECK_STR(run("C-MAN-SALES", NULL), "ts-man-01/0 ts-fin-02/0");
    CHECK(!tsl_result_blocked(R));
}

TEST(promise__defaults_block_blocks_clients_with_no_site_saying_why)
{
    USE("defaults { fallback = \"block\" }", 0);
    CHECK_STR(run("C-NOSITE", NULL), "");
    CHECK(tsl_result_blocked(R));
    CHECK_CONTAINS(tsl_result_blocked_reason(R), "the client has no site");
}

TEST(promise__defaults_after_and_cap_reach_sites_no_block_names)
{
    USE("defaults { after = 300 }", DOWN_TOK);
    run("C-TOK", NULL);
    CHECK(tsl_result_count(R) > 0);
    for (size_t i = 0; i < tsl_result_count(R); i++) {
        CHECK_INT(tsl_result_entry(R, i)->tier, 1);
        CHECK_INT(tsl_result_entry(R, i)->after, 300);
    }
    /* cap 5: both full (spill keeps their order); cap 15: only ts-fin-02 (20) */
    USE("defaults { cap = 5, selection = \"connections\" }", 0);
    CHECK_STR(run("C-MAN-SALES", NULL), "ts-man-01/0 ts-fin-02/0");
    CHECK(tsl_result_entry(R, 0)->full);
    USE("defaults { cap = 15, selection = \"connections\" }", 0);
    CHECK_STR(run("C-MAN-SALES", NULL), "ts-man-01/0 ts-fin-02/0");
    CHECK(!tsl_result_entry(R, 0)->full);
    CHECK(tsl_result_entry(R, 1)->full);
    USE("defaults { cap = 5, selection = \"responsiveness\" }", 0);
    run("C-MAN-SALES", NULL);
    CHECK(tsl_result_entry(R, 1)->full);
}

TEST(promise__defaults_fallback_list_reaches_sites_no_block_names)
{
    USE("defaults { fallback = { \"London\" } }", DOWN_TOK);
    CHECK_STR(run("C-TOK", NULL), "ts-lon-02/1 ts-lon-01/1 ts-fin-01/1");
}

TEST(promise__no_defaults_block_keeps_todays_behaviour_for_unnamed_sites)
{
    const char *clients[] = {"C-TOK", "C-NOSITE", "C-MAN-SALES"};
    char want[3][1024];
    for (unsigned down = 0; down <= DOWN_TOK; down += DOWN_TOK) {
        USE(NULL, down);
        for (int c = 0; c < 3; c++)
            snprintf(want[c], sizeof want[c], "%s", run(clients[c], NULL));
        USE("site \"London\" { order = { \"ts-lon-01\" }, fallback = \"block\" }\n"
            "defaults { selection = \"capacity\", fallback = \"default\" }",
            down);
        for (int c = 0; c < 3; c++) {
            CHECK_STR(run(clients[c], NULL), want[c]);
            CHECK(!tsl_result_blocked(R));
        }
    }
}

TEST(promise__unassigned_block_gives_clients_with_no_site_their_own_servers)
{
    USE("defaults { fallback = \"block\" }\n"
        "unassigned { allow = { \"ts-vpn-*\" } }",
        0);
    CHECK_STR(run("C-NOSITE", NULL), "ts-vpn-01/0");
    CHECK_CONTAINS(tsl_result_entry(R, 0)->reason, "unassigned approved set");
    /* it inherits the defaults' fallback: nothing else, ever */
    USE("defaults { fallback = \"block\" }\n"
        "unassigned { order = { \"ts-vpn-01\" }, fallback = { \"London\" } }",
        0);
    CHECK_STR(run("C-NOSITE", NULL), "ts-vpn-01/0 ts-lon-02/1 ts-lon-01/1 ts-fin-01/1");
    CHECK(tsl_result_strict(R));
    /* sites are not affected by it */
    CHECK_STR(run("C-TOK", NULL), "ts-tok-01/0");
}

TEST(promise__site_star_is_refused_with_the_blocks_that_do_that)
{
    CHECK(!use("site \"*\" { fallback = \"block\" }", 0));
    CHECK_CONTAINS(ERR, "site names are not globs");
    CHECK_CONTAINS(ERR, "defaults { ... } reaches every site");
    CHECK(!use("unassigned { allow = { \"ts-vpn-*\" } }\nunassigned { }", 0));
    CHECK_CONTAINS(ERR, "unassigned: declared twice");
    CHECK(!use("unassigned { bogus = 1 }", 0));
    CHECK_CONTAINS(ERR, "unassigned: unknown field \"bogus\"");
}

/* ------------------------------------------------------------------------
 * Departments apart
 * ---------------------------------------------------------------------- */

static const char APART[] =
    "site \"London\" { order = { \"ts-lon-01\", \"ts-lon-02\" }, fallback = { \"Manchester\" } }\n"
    "group \"Finance\" { allow = { \"ts-fin-*\" }, exclusive = true }\n";

TEST(promise__group_allow_finds_its_servers_at_a_site_with_an_order)
{
    USE(APART, 0);
    /* the site's own finance server, then the site's fallback, inside ts-fin-* */
    CHECK_STR(run("C-LON-FIN", NULL), "ts-fin-01/0 ts-fin-02/1");
    CHECK(!tsl_result_blocked(R));
    CHECK_CONTAINS(tsl_result_entry(R, 0)->reason, "group \"Finance\" approved set");
    /* a site without a block: its own finance server */
    CHECK_STR(run("C-MAN-FIN", NULL), "ts-fin-02/0");
}

TEST(promise__exclusive_servers_are_never_listed_for_anyone_else)
{
    USE(APART, 0);
    CHECK_STR(run("C-LON-SALES", NULL), "ts-lon-01/0 ts-lon-02/0 ts-man-01/1");
    CHECK_STR(run("C-MAN-SALES", NULL), "ts-man-01/0");
    /* the whole-estate fallback of an unnamed site and of a client with no site */
    USE(APART, DOWN_TOK);
    CHECK(!strstr(run("C-TOK", NULL), "ts-fin"));
    CHECK(tsl_result_count(R) > 0);
    CHECK(!strstr(run("C-NOSITE", NULL), "ts-fin"));
    CHECK(tsl_result_count(R) > 0);
}

TEST(promise__exclusive_group_falls_back_by_the_site_rules_inside_its_servers)
{
    USE(APART, DOWN_FIN1);
    CHECK_STR(run("C-LON-FIN", NULL), "ts-fin-02/1");
    USE(APART, DOWN_FIN1 | DOWN_FIN2);
    CHECK_STR(run("C-LON-FIN", NULL), "");
    CHECK(tsl_result_blocked(R));
    CHECK_CONTAINS(tsl_result_blocked_reason(R), "group \"Finance\" uses only its own servers");
    /* a site that blocks fallback keeps Finance there */
    USE("site \"London\" { order = { \"ts-lon-01\" }, fallback = \"block\" }\n"
        "group \"Finance\" { allow = { \"ts-fin-*\" }, exclusive = true }",
        DOWN_FIN1);
    CHECK_STR(run("C-LON-FIN", NULL), "");
    CHECK(tsl_result_blocked(R));
    CHECK_CONTAINS(tsl_result_blocked_reason(R), "site \"London\" blocks fallback");
    /* fallback "default" at a site without finance servers: any finance server */
    USE(APART, 0);
    CHECK_STR(run("C-TOK-FIN", NULL), "ts-fin-02/1 ts-fin-01/1");
}

TEST(promise__a_rule_cannot_add_an_exclusive_groups_server_for_anyone_else)
{
    char src[1024];
    snprintf(src, sizeof src, "%s"
             "rule(\"add\", function(req, list)\n"
             "  local ok, why = list:add(\"ts-fin-01\")\n"
             "  if not ok and why == \"denied by the policy\" then list:add(\"ts-tok-01\") end\n"
             "end)\n",
             APART);
    USE(src, 0);
    CHECK_STR(run("C-LON-SALES", NULL), "ts-lon-01/0 ts-lon-02/0 ts-man-01/1 ts-tok-01/1");
    /* Finance may have it (it is already listed there) */
    CHECK_STR(run("C-LON-FIN", NULL), "ts-fin-01/0 ts-fin-02/1");
}

TEST(promise__group_order_precedes_the_site_order_and_the_site_own_servers_come_first)
{
    USE("site \"London\" { order = { \"ts-lon-01\" }, allow = { \"ts-lon-*\", \"ts-fin-02\" } }\n"
        "group \"Finance\" { allow = { \"ts-fin-*\", \"ts-lon-01\" } }",
        0);
    /* own site first: ts-fin-01 (London) before ts-fin-02 (Manchester), though
     * ts-fin-02 ranks better by capacity; the site order member first of all */
    CHECK_STR(run("C-LON-FIN", NULL), "ts-lon-01/0 ts-fin-01/0 ts-fin-02/0");
    USE("site \"London\" { order = { \"ts-lon-01\" }, allow = { \"ts-lon-*\", \"ts-fin-02\" } }\n"
        "group \"Finance\" { allow = { \"ts-fin-*\", \"ts-lon-01\" }, order = { \"ts-fin-02\" } }",
        0);
    CHECK_STR(run("C-LON-FIN", NULL), "ts-fin-02/0 ts-lon-01/0 ts-fin-01/0");
}

/* ------------------------------------------------------------------------
 * A request cannot loosen a policy
 * ---------------------------------------------------------------------- */

TEST(promise__request_department_never_changes_a_known_client_list)
{
    USE(APART, 0);
    char want[512];
    snprintf(want, sizeof want, "%s", run("C-LON-FIN", NULL));
    CHECK_STR(run("C-LON-FIN", "Sales"), want);
    CHECK_STR(tsl_result_department_ignored(R), "Sales");
    CHECK_STR(run("C-LON-SALES", "Finance"), "ts-lon-01/0 ts-lon-02/0 ts-man-01/1");
    CHECK_STR(tsl_result_department_ignored(R), "Finance");
    /* the same department in another case is no conflict */
    run("C-LON-FIN", "FINANCE");
    CHECK_NULL(tsl_result_department_ignored(R));
    run("C-LON-FIN", NULL);
    CHECK_NULL(tsl_result_department_ignored(R));
}

TEST(promise__request_department_scopes_an_unknown_client)
{
    USE(APART, 0);
    tsl_request req = {0};
    req.client = "C-NOT-IN-THE-INVENTORY";
    req.ips[0] = "10.10.9.9";
    req.nips = 1;
    req.department = "Finance";
    req.now = NOW;
    CHECK_OK(tsl_decide(R, W, P, &req, NULL));
    CHECK_INT(tsl_result_count(R), 2);
    CHECK_STR(tsl_result_entry(R, 0)->name, "ts-fin-01");
    CHECK_NULL(tsl_result_department_ignored(R));
    /* explain says why a known client's request department is not obeyed */
    tsl_trace *tr = NULL;
    CHECK_OK(tsl_trace_new(&tr));
    req.client = "C-LON-SALES";
    req.nips = 0;
    int rc = tsl_decide(R, W, P, &req, tr);
    bool said = false;
    for (size_t i = 0; i < tsl_trace_count(tr); i++)
        said |= strstr(tsl_trace_line(tr, i), "department \"Finance\" is ignored") != NULL;
    tsl_trace_free(tr);
    CHECK_INT(rc, 0);
    CHECK(said);
}

/* ------------------------------------------------------------------------
 * The broker: conflicting departments counted, require_peer_ip
 * ---------------------------------------------------------------------- */

static const char BROKER_ESTATE[] =
    "{\"sites\": [{\"name\": \"London\", \"subnets\": [\"10.10.0.0/16\"]}],"
    " \"task_servers\": ["
    "  {\"name\": \"ts-lon-01\", \"ip\": \"10.10.0.1\", \"sites\": [\"London\"]},"
    "  {\"name\": \"ts-fin-01\", \"ip\": \"10.10.0.5\", \"sites\": [\"London\"]}],"
    " \"clients\": ["
    "  {\"guid\": \"FIN1\", \"ip\": \"10.10.1.2\", \"department\": \"Finance\"},"
    "  {\"guid\": \"SALES1\", \"ip\": \"10.10.1.1\", \"department\": \"Sales\"}]}";

static const char BROKER_POLICY[] =
    "group \"Finance\" { allow = { \"ts-fin-*\" }, exclusive = true }\n";

static int broker_seq;

/* A store with BROKER_ESTATE and BROKER_POLICY, and a running broker. */
static tsl_broker *broker_up(bool require_peer, const char *proxies, int *port)
{
    char dir[600], db[700], pol[700];
    tsl_store *st = NULL;
    tsl_broker *b = NULL;
    tsl_broker_config cfg;

    snprintf(dir, sizeof dir, "%s/b%d", tsl_test_tmpdir(), broker_seq++);
    mkdir(dir, 0700);
    snprintf(db, sizeof db, "%s/store.db", dir);
    snprintf(pol, sizeof pol, "%s/apart.lua", dir);
    if (tsl_test_write(pol, BROKER_POLICY) != 0 || tsl_store_open(&st, db, 0) < 0 ||
        tsl_store_import_json(st, BROKER_ESTATE, strlen(BROKER_ESTATE), "fixture") < 0) {
        fprintf(stderr, "fixture: %s\n", tsl_error_last());
        tsl_store_free(st);
        return NULL;
    }
    tsl_store_free(st);
    tsl_broker_config_init(&cfg);
    cfg.db_path = db;
    cfg.policy_path = pol;
    cfg.listen = "127.0.0.1:0";
    cfg.threads = 1;
    cfg.drain_ms = 20;
    cfg.log_level = TSL_LOG_ERROR;
    cfg.require_peer_ip = require_peer;
    cfg.trusted_proxies = proxies;
    if (tsl_broker_new(&b, &cfg) < 0 || tsl_broker_start(b) < 0) {
        fprintf(stderr, "broker: %s\n", tsl_error_last());
        tsl_broker_free(b);
        return NULL;
    }
    *port = tsl_broker_bound_port(b);
    return b;
}

static void broker_down(tsl_broker *b)
{
    if (!b)
        return;
    tsl_broker_stop(b);
    tsl_broker_join(b);
    tsl_broker_free(b);
}

TEST(promise__broker_ignores_and_counts_a_conflicting_department)
{
    int port = 0, status;
    tsl_broker *b = broker_up(false, NULL, &port);
    CHECK(b);
    const char *plain = http_get_body(port, "/v1/task-servers?client=FIN1", NULL, &status);
    const char *sales =
        http_get_body(port, "/v1/task-servers?client=FIN1&department=Sales", NULL, &status);
    bool same = strcmp(plain, sales) == 0 && strstr(plain, "ts-fin-01") &&
                !strstr(plain, "ts-lon-01");
    const char *m = http_get_body(port, "/metrics", NULL, &status);
    bool counted = strstr(m, "\ntsl_department_ignored_total 1\n") != NULL;
    /* an unknown client's department is obeyed, and not counted */
    const char *unknown = http_get_body(
        port, "/v1/task-servers?client=NEW1&ip=10.10.7.7&department=Finance", NULL, &status);
    bool scoped = strstr(unknown, "ts-fin-01") && !strstr(unknown, "ts-lon-01");
    m = http_get_body(port, "/metrics", NULL, &status);
    bool still_one = strstr(m, "\ntsl_department_ignored_total 1\n") != NULL;
    broker_down(b);
    CHECK(same);
    CHECK(counted);
    CHECK(scoped);
    CHECK(still_one);
}

TEST(promise__broker_require_peer_ip_refuses_other_addresses)
{
    int port = 0, status;
    tsl_broker *b = broker_up(true, NULL, &port);
    CHECK(b);
    const char *ok = http_get_body(port, "/v1/task-servers?ip=10.10.1.1&ip=127.0.0.1", NULL,
                                   &status);
    int ok_status = status;
    bool ok_list = strstr(ok, "ts-lon-01") != NULL;
    const char *no = http_get_body(port, "/v1/task-servers?ip=10.10.1.1", NULL, &status);
    int no_status = status;
    bool says = strstr(no, "\"error\"") && strstr(no, "comes from 127.0.0.1");
    /* X-Forwarded-For is not believed from an untrusted peer */
    http_get_body(port, "/v1/task-servers?ip=10.10.1.1", "X-Forwarded-For: 10.10.1.1\r\n",
                  &status);
    int xff_status = status;
    const char *m = http_get_body(port, "/metrics", NULL, &status);
    bool counted = strstr(m, "\ntsl_peer_refused_total 2\n") != NULL;
    broker_down(b);
    CHECK_INT(ok_status, 200);
    CHECK(ok_list);
    CHECK_INT(no_status, 403);
    CHECK(says);
    CHECK_INT(xff_status, 403);
    CHECK(counted);
}

TEST(promise__broker_require_peer_ip_believes_a_trusted_proxy)
{
    int port = 0, status;
    tsl_broker *b = broker_up(true, "127.0.0.0/8", &port);
    CHECK(b);
    http_get_body(port, "/v1/task-servers?ip=10.10.1.1",
                  "X-Forwarded-For: 192.0.2.9, 10.10.1.1\r\n", &status);
    int via = status;
    http_get_body(port, "/v1/task-servers?ip=10.10.1.1",
                  "X-Forwarded-For: 10.10.1.1, 192.0.2.9\r\n", &status);
    int spoofed = status; /* the proxy appended 192.0.2.9: that is the client */
    http_get_body(port, "/v1/task-servers?ip=10.10.1.1", NULL, &status);
    int none = status;
    broker_down(b);
    CHECK_INT(via, 200);
    CHECK_INT(spoofed, 403);
    CHECK_INT(none, 403);
    tsl_broker *bad = NULL;
    tsl_broker_config cfg;
    tsl_broker_config_init(&cfg);
    cfg.db_path = tsl_test_path("never.db");
    cfg.trusted_proxies = "10.0.0.1,nonsense";
    CHECK(tsl_broker_new(&bad, &cfg) < 0);
    CHECK_CONTAINS(tsl_error_last(), "trusted proxies");
    tsl_broker_free(bad);
}

/* ------------------------------------------------------------------------
 * tsl check counts every stranded client
 * ---------------------------------------------------------------------- */

/* Runs tsl_policy_check against the current estate; the findings in OUT. */
static char OUT[16384];
static int check_policy(const char *src)
{
    tsl_buf b = TSL_BUF_INIT;
    int worst = -1;
    OUT[0] = '\0';
    if (tsl_policy_check(&worst, &b, src, strlen(src), "t.lua", snap, NOW) < 0)
        worst = -2;
    snprintf(OUT, sizeof OUT, "%s", b.ptr ? b.ptr : "");
    tsl_buf_free(&b);
    return worst;
}

TEST(promise__check_names_clients_a_site_block_strands_per_site_and_group)
{
    USE(NULL, DOWN_FIN2);
    int worst = check_policy("site \"Manchester\" { order = { \"ts-man-01\" }, fallback = \"block\" }\n"
                             "group \"Finance\" { allow = { \"ts-fin-*\" } }\n");
    CHECK_INT(worst, 1);
    CHECK_CONTAINS(OUT, "t.lua:2: warning: site \"Manchester\", group \"Finance\": 1 client(s) "
                        "would be blocked (an empty list): MAN-FIN\n");
    /* Tokyo Finance: the group's allow leaves tier 0 empty, so tier 1 */
    CHECK_CONTAINS(OUT, "t.lua:2: warning: site \"Tokyo\", group \"Finance\": 1 client(s) would "
                        "be left on a fallback tier: TOK-FIN -> ts-tok-01\n");
    CHECK_CONTAINS(OUT, "3 of 7 client(s) stranded: 1 blocked, 0 outside their country, 0 "
                        "outside their site, 2 on a fallback tier");
}

TEST(promise__check_names_clients_sent_abroad_outside_their_site_or_on_fallback)
{
    USE(NULL, 0);
    int worst = check_policy("site \"London\" { allow = { \"ts-man-01\" } }\n"
                             "site \"Manchester\" { allow = { \"ts-tok-01\" } }\n");
    CHECK_INT(worst, 1);
    CHECK_CONTAINS(OUT, "t.lua:2: warning: site \"Manchester\": 2 client(s) would be sent "
                        "outside their country: MAN-FIN -> ts-tok-01, MAN-SALES -> ts-tok-01\n");
    CHECK_CONTAINS(OUT, "t.lua:1: warning: site \"London\": 2 client(s) would be sent outside "
                        "their site: LON-FIN -> ts-man-01, LON-SALES -> ts-man-01\n");
    CHECK_CONTAINS(OUT, "clients with no site: 1 client(s) would be left on a fallback tier: "
                        "ROAMER -> ");
    CHECK_CONTAINS(OUT, "5 of 7 client(s) stranded: 0 blocked, 2 outside their country, 2 "
                        "outside their site, 1 on a fallback tier");
    /* a policy that strands no one is clean */
    USE(NULL, 0);
    worst = check_policy("defaults { fallback = \"block\" }\nunassigned { allow = { \"ts-vpn-*\" } }\n");
    CHECK_INT(worst, 0);
    CHECK(!strstr(OUT, "stranded"));
}

TEST(promise__check_decides_every_client_not_a_sample)
{
    tsl_snapshot *big = NULL;
    const char *tok[] = {"Tokyo"};
    char guid[32];
    int err = tsl_snapshot_begin(&big, NULL);
    err |= snap_add_site(big, "Tokyo", "JP", NULL, NULL);
    err |= snap_add_subnet(big, "Tokyo", "10.70.0.0/16");
    err |= snap_add_server(big, "ts-tok-01", NULL, "10.70.0.1", tok, 1, true, true, 1000, 2, 10, 0);
    err |= snap_add_server(big, "ts-fin-01", NULL, "10.70.0.5", tok, 1, true, true, 1000, 2, 10, 0);
    for (int i = 0; i < 1001 && err == 0; i++) {
        snprintf(guid, sizeof guid, "G%04d", i);
        err |= snap_add_client(big, guid, i == 777 ? "THE-ONE" : NULL, "10.70.1.1",
                               i == 777 ? "Finance" : "Sales", NULL, NULL);
    }
    err |= tsl_snapshot_seal(big);
    CHECK_INT(err, 0);
    /* only the Finance client (the 778th of 1001, between two sampled ones) is blocked */
    const char src[] = "site \"Tokyo\" { fallback = \"block\" }\n"
                       "group \"Finance\" { allow = { \"ts-none-*\" } }\n";
    tsl_buf b = TSL_BUF_INIT;
    int worst = -1;
    int rc = tsl_policy_check(&worst, &b, src, sizeof src - 1, "t.lua", big, NOW);
    snprintf(OUT, sizeof OUT, "%s", b.ptr ? b.ptr : "");
    tsl_buf_free(&b);
    tsl_snapshot_free(big);
    CHECK_INT(rc, 0);
    CHECK_INT(worst, 1);
    CHECK_CONTAINS(OUT, "group \"Finance\": 1 client(s) would be blocked (an empty list): THE-ONE");
    CHECK_CONTAINS(OUT, "1 of 1001 client(s) stranded");
}

/* ------------------------------------------------------------------------
 * Gating that fits deliberate blocks: dry-run --expect
 * ---------------------------------------------------------------------- */

/* A demo store with version 1 stored: Paris blocks on purpose (its only
 * running server is not approved: its 4 clients are blocked). */
static const char *expect_store(const char *name)
{
    static char db[600];
    char *out = NULL;
    const char *pol = tsl_test_path("paris-blocks.lua");
    snprintf(db, sizeof db, "%s", tsl_test_path(name));
    if (tsl_test_write(pol, "site \"Paris\" { allow = { \"ts-par-02\" }, fallback = \"block\" }\n"))
        return NULL;
    int rc = tsl_test_sh(&out, true, "%s --db %s import %s/policies/demo/estate.json && "
                                     "%s --db %s policy load %s",
                         TSL_BIN, db, TSL_SOURCE_DIR, TSL_BIN, db, pol);
    free(out);
    return rc == 0 ? db : NULL;
}

/* Runs `tsl --db DB ARGS`; returns the exit status, output (both streams) in OUT. */
static int tsl_run(const char *db, const char *args)
{
    char *out = NULL;
    int rc = tsl_test_sh(&out, true, "%s --db %s %s", TSL_BIN, db, args);
    snprintf(OUT, sizeof OUT, "%s", out ? out : "");
    free(out);
    return rc;
}

#define DRY "dry-run --policy 1 --now 2026-11-25T10:00:00Z "

TEST(promise__dry_run_expectation_met_unlocks_require_dry_run)
{
    const char *db = expect_store("expect-met.db");
    CHECK(db);
    CHECK_INT(tsl_run(db, DRY "--expect 'blocked=4,moved<=10' --fail-on all"), 0);
    CHECK_CONTAINS(OUT, "expected:   blocked=4,moved<=10: met\n");
    CHECK_CONTAINS(OUT, "recorded with policy version 1 (expectations met)");
    CHECK_INT(tsl_run(db, "policy activate 1 --require-dry-run"), 0);
}

TEST(promise__dry_run_expectation_not_met_is_refused_naming_what_it_found)
{
    const char *db = expect_store("expect-unmet.db");
    CHECK(db);
    CHECK_INT(tsl_run(db, DRY "--expect blocked=3"), 3);
    CHECK_CONTAINS(OUT, "blocked=3: not met: blocked=3 (clients blocked after: 4)");
    CHECK_INT(tsl_run(db, "policy activate 1 --require-dry-run"), 2);
    CHECK(!strstr(OUT, "no dry-run"));
    CHECK_CONTAINS(OUT, "its latest dry-run against the rollout in force (default");
    CHECK_CONTAINS(OUT, "found 4 newly blocked");
    CHECK_CONTAINS(OUT, "expected blocked=3: not met");
    /* a met run, then a later unmet one: the latest decides */
    CHECK_INT(tsl_run(db, DRY "--expect blocked"), 0);
    CHECK_INT(tsl_run(db, DRY "--expect blocked=0"), 3);
    CHECK_INT(tsl_run(db, "policy activate 1 --require-dry-run"), 2);
    CHECK_INT(tsl_run(db, DRY "--expect 'newly-blocked>=1'"), 0);
    CHECK_INT(tsl_run(db, "policy activate 1 --require-dry-run"), 0);
}

TEST(promise__dry_run_expectation_must_cover_every_condition_found)
{
    const char *db = expect_store("expect-cover.db");
    CHECK(db);
    CHECK_INT(tsl_run(db, DRY "--expect 'moved<=10'"), 3);
    CHECK_CONTAINS(OUT, "moved<=10: not met: blocked occurred (4 clients newly blocked) and is "
                        "not expected");
    /* without --expect, a run that finds a condition is refused, and says so */
    CHECK_INT(tsl_run(db, DRY), 0);
    CHECK_INT(tsl_run(db, "policy activate 1 --require-dry-run"), 2);
    CHECK_CONTAINS(OUT, "it stated no expectation (tsl dry-run --expect)");
    /* the grammar's mistakes are usage errors naming the item */
    CHECK_INT(tsl_run(db, DRY "--expect blocked=three"), 2);
    CHECK_CONTAINS(OUT, "expectation \"blocked=three\": \"three\" is not a whole number");
    CHECK_INT(tsl_run(db, DRY "--expect abroad"), 2);
    CHECK_CONTAINS(OUT, "expectation \"abroad\": unknown metric");
    CHECK_INT(tsl_run(db, DRY "--expect 'moved~3'"), 2);
    CHECK_CONTAINS(OUT, "expected =, <=, >=, < or > after \"moved\"");
}

/* ------------------------------------------------------------------------
 * doctor agrees with list
 * ---------------------------------------------------------------------- */

static const char *doctor_of(const char *guid, const char *const *ips, size_t nips,
                             tsl_doctor_summary *sum)
{
    tsl_buf b = TSL_BUF_INIT;
    int rc = guid ? tsl_doctor(&b, sum, W, P, NULL, guid, TSL_FORMAT_TEXT, NOW)
                  : tsl_doctor_ips(&b, sum, W, P, ips, nips, TSL_FORMAT_TEXT, NOW);
    snprintf(OUT, sizeof OUT, "%s", rc == 0 && b.ptr ? b.ptr : tsl_error_last());
    tsl_buf_free(&b);
    return OUT;
}

static const char DOCTOR_POLICY[] =
    "site \"London\" { order = { \"ts-lon-01\", \"ts-lon-02\" }, fallback = { \"Manchester\" } }\n";

TEST(promise__doctor_judges_the_last_registration_against_the_approved_set)
{
    tsl_doctor_summary sum;
    doctor_clients = true;
    bool ok = use(DOCTOR_POLICY, 0);
    doctor_clients = false;
    CHECK(ok);
    CHECK_CONTAINS(doctor_of("D-TOK", NULL, 0, &sum),
                   "FAIL  last registration: on ts-tok-01, outside its approved set: not in the "
                   "list it gets now (neither tier 0 nor a fallback tier)\n");
    CHECK_CONTAINS(doctor_of("D-MAN", NULL, 0, &sum),
                   "FAIL  last registration: on ts-man-01, outside its approved set: a fallback "
                   "server (tier 1, entry #3; site \"London\" fallback tier 1: site "
                   "\"Manchester\")\n");
    CHECK_CONTAINS(doctor_of("D-LON", NULL, 0, &sum),
                   "PASS  last registration: on ts-lon-01, in its approved set (tier 0, entry "
                   "#1 of its list)\n");
}

TEST(promise__doctor_lines_agree_with_the_list_order_tiers_and_reasons)
{
    tsl_doctor_summary sum;
    doctor_clients = true;
    bool ok = use(DOCTOR_POLICY, 0);
    doctor_clients = false;
    CHECK(ok);
    /* the list line is the list: order, tiers, strict */
    CHECK_STR(run("D-LON", NULL), "ts-lon-01/0 ts-lon-02/0 ts-man-01/1 ts-fin-02/1");
    doctor_of("D-LON", NULL, 0, &sum);
    CHECK_CONTAINS(OUT, "PASS  list: 4 servers, strict order (try them in this order): tier 0: "
                        "ts-lon-01, ts-lon-02; tier 1: ts-man-01, ts-fin-02\n");
    /* the order keeps a server with a recent error first: doctor says so */
    CHECK_CONTAINS(OUT, "on ts-lon-01: (no text recorded); inside the error window, but the "
                        "policy's order keeps it at entry #1\n");
    CHECK(!strstr(OUT, "ranks last"));
    CHECK_INT(sum.failed, 0);
    /* a client the policy blocks: one story, no "every available server" */
    USE("defaults { fallback = \"block\" }", 0);
    doctor_of("C-NOSITE", NULL, 0, &sum);
    CHECK_CONTAINS(OUT, "FAIL  site: none: no explicit site and 192.168.1.1 is in no site "
                        "subnet; the policy gives clients with no site nothing (see list)");
    CHECK_CONTAINS(OUT, "FAIL  list: empty, blocked by the policy: the client has no site and "
                        "defaults block fallback");
    CHECK_CONTAINS(OUT, "WARN  candidates: none without a site: the policy decides");
    CHECK(!strstr(OUT, "every available server"));
    CHECK_INT(sum.failed, 2);
    /* a server the policy keeps out is not reported as part of the list */
    USE(APART, 0);
    doctor_of("C-LON-SALES", NULL, 0, &sum);
    CHECK_CONTAINS(OUT, "PASS  task server ts-fin-01: registered, service running, heartbeat "
                        "none recorded; not in this client's list (the policy keeps it out");
    CHECK_CONTAINS(OUT, "PASS  task server ts-lon-01: registered, service running, heartbeat "
                        "none recorded; entry #1 of its list (tier 0)\n");
}

TEST(promise__doctor_checks_a_client_the_inventory_does_not_know_by_its_ips)
{
    tsl_doctor_summary sum;
    const char *ips[] = {"192.168.50.5", "10.11.7.7"};
    USE(DOCTOR_POLICY, 0);
    doctor_of(NULL, ips, 2, &sum);
    CHECK_CONTAINS(OUT, "doctor for addresses 192.168.50.5, 10.11.7.7 as of ");
    CHECK_CONTAINS(OUT, "WARN  client: not in the inventory: judged by its adapter addresses "
                        "192.168.50.5, 10.11.7.7, with no department\n");
    CHECK_CONTAINS(OUT, "PASS  site: Manchester (subnet 10.11.0.0/16 (adapter 2))\n");
    CHECK_CONTAINS(OUT, "PASS  list: 2 servers: ts-man-01, ts-fin-02\n");
    CHECK(!strstr(OUT, "last registration"));
    CHECK_INT(sum.failed, 0);
    const char *bad[] = {"10.11.7.700"};
    tsl_buf b = TSL_BUF_INIT;
    CHECK_INT(tsl_doctor_ips(&b, &sum, W, P, bad, 1, TSL_FORMAT_TEXT, NOW), TSL_EINVALID);
    tsl_buf_free(&b);
    /* the command: --ip, and --ip with --client is a usage error */
    char *out = NULL;
    const char *db = tsl_test_path("doctor-ip.db");
    int rc = tsl_test_sh(&out, true, "%s --db %s import %s/policies/demo/estate.json >/dev/null 2>&1"
                                     " && %s --db %s doctor --ip 10.10.99.1 --ip 192.168.7.7 "
                                     "--policy %s/policies/examples/demo.lua --now "
                                     "2026-11-25T10:00:00Z",
                         TSL_BIN, db, TSL_SOURCE_DIR, TSL_BIN, db, TSL_SOURCE_DIR);
    bool site = out && strstr(out, "PASS  site: London (subnet 10.10.0.0/16 (adapter 1))");
    free(out);
    CHECK_INT(rc, 0);
    CHECK(site);
    rc = tsl_test_sh(&out, true, "%s --db %s doctor --ip 10.10.99.1 --client X", TSL_BIN, db);
    bool says = out && strstr(out, "give --client or --ip, not both");
    free(out);
    CHECK_INT(rc, 2);
    CHECK(says);
}

/* ------------------------------------------------------------------------
 * A delay holds whoever notices the outage
 * ---------------------------------------------------------------------- */

/* London's two servers last heard from `ago` seconds before NOW (stale
 * after 180 s); Manchester up. */
static tsl_snapshot *outage_estate(int64_t ago)
{
    tsl_snapshot *s = NULL;
    const char *lon[] = {"London"}, *man[] = {"Manchester"};
    int err = tsl_snapshot_begin(&s, NULL);
    err |= snap_add_site(s, "London", "GB", NULL, NULL);
    err |= snap_add_subnet(s, "London", "10.10.0.0/16");
    err |= snap_add_site(s, "Manchester", "GB", NULL, NULL);
    err |= snap_add_subnet(s, "Manchester", "10.11.0.0/16");
    err |= snap_add_server(s, "ts-lon-01", NULL, "10.10.0.1", lon, 1, true, true, 1000, 10, 5,
                           NOW - ago);
    err |= snap_add_server(s, "ts-lon-02", NULL, "10.10.0.2", lon, 1, true, true, 1000, 10, 5,
                           NOW - ago - 30);
    err |= snap_add_server(s, "ts-man-01", NULL, "10.11.0.1", man, 1, true, true, 1000, 10, 5,
                           NOW - 10);
    err |= snap_add_client(s, "C-LON", "LON-PC", "10.10.1.1", "Sales", NULL, NULL);
    err |= tsl_snapshot_seal(s);
    if (err) {
        tsl_snapshot_free(s);
        return NULL;
    }
    return s;
}

static const char OUTAGE_POLICY[] =
    "site \"London\" { order = { \"ts-lon-01\", \"ts-lon-02\" }, "
    "fallback = { \"Manchester\", after = 300 } }\n";

/* Decides C-LON under OUTAGE_POLICY against `s` (taken); JSON into OUT. */
static int outage_decide(tsl_snapshot *s)
{
    tsl_policy *pol = NULL;
    tsl_buf b = TSL_BUF_INIT;
    tsl_plan_free(P);
    P = NULL;
    tsl_snapshot_free(snap);
    snap = s;
    int rc = tsl_policy_compile(&pol, OUTAGE_POLICY, strlen(OUTAGE_POLICY), "t.lua");
    if (rc == 0)
        rc = tsl_plan_new(&P, snap, pol);
    tsl_policy_free(pol);
    if (rc == 0) {
        run("C-LON", NULL);
        rc = tsl_result_json(&b, R);
    }
    snprintf(OUT, sizeof OUT, "%s", b.ptr ? b.ptr : "");
    tsl_buf_free(&b);
    return rc;
}

TEST(promise__delay_holds_when_the_broker_sees_the_heartbeats_go_stale)
{
    /* silent for 250 s (stale after 180): the fallback waits until 300 s */
    CHECK_OK(outage_decide(outage_estate(250)));
    CHECK_STR(run("C-LON", NULL), "ts-man-01/1");
    CHECK_INT(tsl_result_entry(R, 0)->after, 300);
    CHECK_INT(tsl_result_entry(R, 0)->usable_at, NOW - 250 + 300);
    CHECK_CONTAINS(OUT, "\"after\":300,\"usable_at\":1800000050,\"usable_in\":50,");
    /* silent for 1000 s: the outage has outlasted the delay, usable now */
    CHECK_OK(outage_decide(outage_estate(1000)));
    CHECK_INT(tsl_result_entry(R, 0)->usable_at, NOW - 1000 + 300);
    CHECK_CONTAINS(OUT, "\"usable_in\":0,");
    /* London up: the clients count `after` themselves, no usable_at */
    CHECK_OK(outage_decide(outage_estate(20)));
    CHECK_STR(run("C-LON", NULL), "ts-lon-01/0 ts-lon-02/0 ts-man-01/1");
    CHECK_INT(tsl_result_entry(R, 2)->usable_at, 0);
    CHECK(!strstr(OUT, "usable_at"));
}

TEST(promise__delay_holds_when_the_broker_hears_the_service_stop)
{
    tsl_snapshot *base = outage_estate(20), *d = NULL;
    CHECK(base);
    snap_server_update up[2];
    memset(up, 0, sizeof up);
    up[0].name = "ts-lon-01";
    up[0].set = SNAP_UP_RUNNING | SNAP_UP_HEARTBEAT;
    up[0].running = false;
    up[0].heartbeat = NOW - 40;
    up[1] = up[0];
    up[1].name = "ts-lon-02";
    up[1].heartbeat = NOW - 15;
    int rc = tsl_snapshot_derive(&d, base, up, 2, NULL, 0, NOW - 15);
    tsl_snapshot_free(base);
    CHECK_OK(rc);
    /* a later heartbeat still saying stopped does not move the outage's start */
    tsl_snapshot *d2 = NULL;
    up[1].heartbeat = NOW - 5;
    rc = tsl_snapshot_derive(&d2, d, &up[1], 1, NULL, 0, NOW - 5);
    tsl_snapshot_free(d);
    CHECK_OK(rc);
    CHECK_OK(outage_decide(d2));
    CHECK_STR(run("C-LON", NULL), "ts-man-01/1");
    /* the last of them stopped 15 s ago: usable 285 s from now */
    CHECK_INT(tsl_result_entry(R, 0)->usable_at, NOW - 15 + 300);
    CHECK_CONTAINS(OUT, "\"usable_in\":285,");
}

TEST(promise__reference_cta_waits_for_usable_in)
{
    static const char json[] =
        "{\"site\":\"London\",\"strict\":true,\"ttl\":3600,\"servers\":["
        "{\"name\":\"ts-man-01\",\"host\":\"h\",\"ip\":\"10.11.0.1\",\"site\":\"Manchester\","
        "\"tier\":1,\"after\":300,\"usable_at\":1800000050,\"usable_in\":50,"
        "\"capacity\":1000,\"connections\":1,\"response_ms\":5,\"full\":false,"
        "\"recent_error\":false}]}";
    tsl_agent_list *l = NULL;
    tsl_agent_memory m;
    bool tried[1] = {false};
    double wait = -1;
    memset(&m, 0, sizeof m);
    CHECK_OK(tsl_agent_list_parse(&l, json, sizeof json - 1));
    tsl_agent_list_set_received(l, 1000.0);
    CHECK_INT(tsl_agent_list_get(l, 0)->usable_in, 50);
    int early = tsl_agent_pick(l, &m, tried, 1010.0, &wait);
    double wait_early = wait;
    int later = tsl_agent_pick(l, &m, tried, 1050.0, &wait);
    tsl_agent_list_free(l);
    CHECK_INT(early, -1);
    CHECK(wait_early == 1050.0);
    CHECK_INT(later, 0);
    /* without usable_in, an entry with no earlier tier is usable at once (as before) */
    static const char plain[] =
        "{\"servers\":[{\"name\":\"a\",\"host\":\"h\",\"ip\":\"1.1.1.1\",\"site\":\"S\","
        "\"tier\":1,\"after\":300,\"capacity\":1,\"connections\":0,\"response_ms\":1,"
        "\"full\":false,\"recent_error\":false}]}";
    CHECK_OK(tsl_agent_list_parse(&l, plain, sizeof plain - 1));
    CHECK_INT(tsl_agent_list_get(l, 0)->usable_in, -1);
    int now_ok = tsl_agent_pick(l, &m, tried, 0.0, &wait);
    tsl_agent_list_free(l);
    CHECK_INT(now_ok, 0);
    static const char bad[] =
        "{\"servers\":[{\"name\":\"a\",\"host\":\"h\",\"ip\":\"1.1.1.1\",\"site\":\"S\","
        "\"tier\":1,\"after\":300,\"usable_in\":-4,\"capacity\":1,\"connections\":0,"
        "\"response_ms\":1,\"full\":false,\"recent_error\":false}]}";
    CHECK(tsl_agent_list_parse(&l, bad, sizeof bad - 1) == TSL_EINVALID);
}

/* ------------------------------------------------------------------------
 * Text tables
 * ---------------------------------------------------------------------- */

/* In every row after the header of a `list` table, LOAD starts in the
 * header's LOAD column; returns the number of rows checked, -1 when one is
 * off. */
static int load_column_rows(const char *out)
{
    const char *h = strstr(out, "  #  SERVER");
    if (!h)
        return -1;
    const char *eol = strchr(h, '\n'), *load = strstr(h, "LOAD");
    if (!eol || !load || load > eol)
        return -1;
    size_t col = (size_t)(load - h);
    int rows = 0;
    for (const char *l = eol + 1; *l && *l != '\n'; rows++) {
        const char *e = strchr(l, '\n');
        size_t len = e ? (size_t)(e - l) : strlen(l);
        if (len <= col || l[col - 1] != ' ' || l[col - 2] != ' ' || l[col] < '0' || l[col] > '9')
            return -1;
        if (!e)
            break;
        l = e + 1;
    }
    return rows;
}

TEST(promise__list_and_explain_tables_stay_aligned_with_delayed_entries)
{
    char *out = NULL;
    const char *db = tsl_test_path("tables.db");
    int rc = tsl_test_sh(&out, true, "%s --db %s import %s/policies/demo/estate.json", TSL_BIN, db,
                         TSL_SOURCE_DIR);
    free(out);
    CHECK_INT(rc, 0);
    for (int explain = 0; explain < 2; explain++) {
        rc = tsl_test_sh(&out, false, "%s --db %s %s --ip 10.10.4.22 --policy "
                                      "%s/policies/examples/demo.lua --now 2026-11-25T10:00:00Z",
                         TSL_BIN, db, explain ? "explain" : "list", TSL_SOURCE_DIR);
        bool delayed = out && strstr(out, "1+600s");
        int rows = load_column_rows(out);
        if (rows < 0)
            fprintf(stderr, "%s\n", out ? out : "(no output)");
        free(out);
        CHECK_INT(rc, 0);
        CHECK(delayed);
        CHECK_INT(rows, 5);
    }
}

int main(void)
{
    if (tsl_worker_new(&W) < 0 || tsl_result_new(&R) < 0)
        return 2;
    RUN(promise__defaults_block_fails_closed_at_sites_no_block_names);
    RUN(promise__defaults_block_blocks_clients_with_no_site_saying_why);
    RUN(promise__defaults_after_and_cap_reach_sites_no_block_names);
    RUN(promise__defaults_fallback_list_reaches_sites_no_block_names);
    RUN(promise__no_defaults_block_keeps_todays_behaviour_for_unnamed_sites);
    RUN(promise__unassigned_block_gives_clients_with_no_site_their_own_servers);
    RUN(promise__site_star_is_refused_with_the_blocks_that_do_that);
    RUN(promise__group_allow_finds_its_servers_at_a_site_with_an_order);
    RUN(promise__exclusive_servers_are_never_listed_for_anyone_else);
    RUN(promise__exclusive_group_falls_back_by_the_site_rules_inside_its_servers);
    RUN(promise__group_order_precedes_the_site_order_and_the_site_own_servers_come_first);
    RUN(promise__a_rule_cannot_add_an_exclusive_groups_server_for_anyone_else);
    RUN(promise__request_department_never_changes_a_known_client_list);
    RUN(promise__request_department_scopes_an_unknown_client);
    RUN(promise__broker_ignores_and_counts_a_conflicting_department);
    RUN(promise__broker_require_peer_ip_refuses_other_addresses);
    RUN(promise__broker_require_peer_ip_believes_a_trusted_proxy);
    RUN(promise__check_names_clients_a_site_block_strands_per_site_and_group);
    RUN(promise__check_names_clients_sent_abroad_outside_their_site_or_on_fallback);
    RUN(promise__check_decides_every_client_not_a_sample);
    RUN(promise__dry_run_expectation_met_unlocks_require_dry_run);
    RUN(promise__dry_run_expectation_not_met_is_refused_naming_what_it_found);
    RUN(promise__dry_run_expectation_must_cover_every_condition_found);
    RUN(promise__doctor_judges_the_last_registration_against_the_approved_set);
    RUN(promise__doctor_lines_agree_with_the_list_order_tiers_and_reasons);
    RUN(promise__doctor_checks_a_client_the_inventory_does_not_know_by_its_ips);
    RUN(promise__delay_holds_when_the_broker_sees_the_heartbeats_go_stale);
    RUN(promise__delay_holds_when_the_broker_hears_the_service_stop);
    RUN(promise__reference_cta_waits_for_usable_in);
    RUN(promise__list_and_explain_tables_stay_aligned_with_delayed_entries);
    tsl_plan_free(P);
    tsl_snapshot_free(snap);
    tsl_result_free(R);
    tsl_worker_free(W);
    return tsl_test_main();
}
