/*
 * test_promise.c - the admin's promise holds everywhere (issue 10): the
 * `defaults` block reaches sites no block names and clients with no site,
 * `unassigned` gives those clients servers of their own, a department's
 * servers stay its own in two lines, and a request cannot loosen a policy.
 * Against a hand-built estate whose servers can be taken down per test.
 */
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
    RUN(promise__list_and_explain_tables_stay_aligned_with_delayed_entries);
    tsl_plan_free(P);
    tsl_snapshot_free(snap);
    tsl_result_free(R);
    tsl_worker_free(W);
    return tsl_test_main();
}
