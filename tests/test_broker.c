/*
 * test_broker.c - the broker over real HTTP: it runs in-process on
 * 127.0.0.1 port 0 (read back), fed by a small store made per test, and
 * every assertion is on what a client receives or what the store holds.
 *
 * Covers: the list (identical to the engine's JSON), bad input with the
 * problem named and nothing written, 404/405, auth, heartbeats (change,
 * stopped, new names refused, staleness by the clock), registrations (demotion,
 * assignment, the fallback report), reports, explain, inventory import,
 * metrics, health, header and body limits, slow clients, keep-alive, the
 * decision log, plan swaps under concurrent requests, policy versions
 * (upload, activate, rollback, list, --policy at start, activations under
 * concurrent requests), the flush on stop, and the rollout: staged
 * activation changes London's answers only, shadow mode counts differences
 * while answers stay the same, rollback restores.
 */
#include "broker.h"
#include "broker_client.h"
#include "harness.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <time.h>

#define T0 1800000000LL

static const char inventory[] =
    "{\"sites\": ["
    "  {\"name\": \"London\", \"subnets\": [\"10.10.0.0/16\", \"fd00:10::/48\"], \"country\": \"GB\"},"
    "  {\"name\": \"Paris\", \"subnets\": [\"10.20.0.0/16\"], \"country\": \"FR\"},"
    "  {\"name\": \"Madrid\", \"subnets\": [\"10.30.0.0/16\"], \"country\": \"ES\"}],"
    " \"task_servers\": ["
    "  {\"name\": \"ts-lon-01\", \"host\": \"ts-lon-01.corp\", \"ip\": \"10.10.0.5\", \"sites\": [\"London\"],"
    "   \"capacity\": 1000, \"connections\": 250, \"response_ms\": 12},"
    "  {\"name\": \"ts-lon-02\", \"ip\": \"10.10.0.6\", \"sites\": [\"London\"], \"capacity\": 1000, \"connections\": 500},"
    "  {\"name\": \"ts-par-01\", \"ip\": \"10.20.0.5\", \"sites\": [\"Paris\"], \"capacity\": 1000, \"connections\": 100},"
    "  {\"name\": \"ts-mad-01\", \"ip\": \"10.30.0.5\", \"sites\": [\"Madrid\"], \"service\": \"stopped\"}],"
    " \"clients\": ["
    "  {\"guid\": \"A1\", \"name\": \"LON-PC-0001\", \"ip\": \"10.10.3.17\", \"department\": \"Finance\"},"
    "  {\"guid\": \"P1\", \"name\": \"PAR-PC-0001\", \"ip\": \"10.20.1.1\"},"
    "  {\"guid\": \"M1\", \"name\": \"MAD-PC-0001\", \"ip\": \"10.30.1.1\"}]}";

/* The tests' clock (cfg.clock), so staleness needs no sleeping. */
static _Atomic int64_t test_now = T0;
static int64_t test_clock(void *ud)
{
    (void)ud;
    return atomic_load(&test_now);
}

typedef struct fixture {
    char dir[512], db[600];
    tsl_broker *b;
    int port;
    char auth[200]; /* "Authorization: Bearer ...\r\n" */
    char ts_auth[200]; /* the Task Servers' token, for heartbeats */
} fixture;

static int fixture_count;

/* A fresh store with `inv` and a running broker; cfg tweaks through `tune`. */
static bool start(fixture *f, const char *inv, void (*tune)(tsl_broker_config *))
{
    tsl_store *st = NULL;
    tsl_broker_config cfg;
    memset(f, 0, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "%s/t%d", tsl_test_tmpdir(), fixture_count++);
    mkdir(f->dir, 0700);
    snprintf(f->db, sizeof f->db, "%s/store.db", f->dir);
    if (tsl_store_open(&st, f->db, 0) < 0 ||
        (inv && tsl_store_import_json(st, inv, strlen(inv), "fixture") < 0)) {
        fprintf(stderr, "fixture: %s\n", tsl_error_last());
        tsl_store_free(st);
        return false;
    }
    tsl_store_free(st);
    atomic_store(&test_now, T0);
    tsl_broker_config_init(&cfg);
    cfg.db_path = f->db;
    cfg.listen = "127.0.0.1:0";
    cfg.threads = 2;
    cfg.refresh_ms = 50;
    cfg.flush_ms = 20;
    cfg.drain_ms = 20;
    cfg.log_level = TSL_LOG_ERROR;
    cfg.clock = test_clock;
    if (tune)
        tune(&cfg);
    if (tsl_broker_new(&f->b, &cfg) < 0 || tsl_broker_start(f->b) < 0) {
        fprintf(stderr, "broker: %s\n", tsl_error_last());
        tsl_broker_free(f->b);
        f->b = NULL;
        return false;
    }
    f->port = tsl_broker_bound_port(f->b);
    snprintf(f->auth, sizeof f->auth, "Authorization: Bearer %s\r\n", tsl_broker_admin_token(f->b));
    snprintf(f->ts_auth, sizeof f->ts_auth, "Authorization: Bearer %s\r\n",
             tsl_broker_ts_token(f->b));
    return true;
}

static void stop(fixture *f)
{
    if (f->b) {
        tsl_broker_stop(f->b);
        tsl_broker_join(f->b);
        tsl_broker_free(f->b);
        f->b = NULL;
    }
}

/* One integer from the store (a fresh read-only connection). */
static long long db_int(const fixture *f, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    long long v = -999;
    if (sqlite3_open_v2(f->db, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_type(st, 0) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 0);
    else
        fprintf(stderr, "db_int(%s): %s\n", sql, db ? sqlite3_errmsg(db) : "no db");
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* One text value from the store, in a static buffer ("" for NULL). */
static const char *db_text(const fixture *f, const char *sql)
{
    static char buf[4096];
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    snprintf(buf, sizeof buf, "<no row>");
    if (sqlite3_open_v2(f->db, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(st, 0);
        snprintf(buf, sizeof buf, "%s", t ? (const char *)t : "");
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return buf;
}

static int post(const fixture *f, const char *path, const char *body, http_resp *r)
{
    /* heartbeats carry the Task Servers' token */
    return http_do(f->port, "POST", path, strstr(path, "/heartbeat") ? f->ts_auth : NULL, body, r);
}

/* The names of the list's servers, "a,b,c", in a static rotating buffer. */
static const char *names_of(const char *json)
{
    static char bufs[8][1024];
    static int next;
    char *out = bufs[next];
    size_t n = 0;
    next = (next + 1) % 8;
    out[0] = '\0';
    const char *p = strstr(json, "\"servers\":[");
    for (p = p ? strstr(p, "{\"name\":\"") : NULL; p; p = strstr(p + 1, "{\"name\":\"")) {
        const char *s = p + 9, *e = strchr(s, '"');
        if (!e)
            break;
        n += (size_t)snprintf(out + n, sizeof bufs[0] - n, "%s%.*s", n ? "," : "", (int)(e - s), s);
    }
    return out;
}

/* ------------------------------------------------------------------------
 * The list
 * ---------------------------------------------------------------------- */

TEST(broker__list_is_the_engines_json_plus_cache_header)
{
    fixture f;
    CHECK(start(&f, inventory, NULL));
    http_resp r;
    int status = http_do(f.port, "GET", "/v1/task-servers?client=A1&ip=10.10.3.17", NULL, NULL, &r);

    /* the same decision straight from the engine */
    tsl_store *st = NULL;
    tsl_snapshot *snap = NULL;
    tsl_plan *plan = NULL;
    tsl_worker *w = NULL;
    tsl_result *res = NULL;
    tsl_buf want = TSL_BUF_INIT;
    tsl_request req = {.client = "A1", .ips = {"10.10.3.17"}, .nips = 1, .now = T0};
    int ok = tsl_store_open(&st, f.db, TSL_STORE_READONLY) == 0 &&
             tsl_snapshot_load(&snap, st, NULL) == 0 && tsl_plan_new(&plan, snap, NULL) == 0 &&
             tsl_worker_new(&w) == 0 && tsl_result_new(&res) == 0 &&
             tsl_decide(res, w, plan, &req, NULL) == 0 && tsl_result_json(&want, res) == 0;
    char cache[64], type[64];
    bool has_cache = http_header(&r, "Cache-Control", cache, sizeof cache) != NULL;
    bool has_type = http_header(&r, "Content-Type", type, sizeof type) != NULL;
    tsl_result_free(res);
    tsl_worker_free(w);
    tsl_plan_free(plan);
    tsl_snapshot_free(snap);
    tsl_store_free(st);
    stop(&f);

    CHECK(ok);
    CHECK_INT(status, 200);
    CHECK_INT(r.len, want.len + 1);
    CHECK(memcmp(r.body, want.ptr, want.len) == 0);
    CHECK(has_cache && has_type);
    CHECK_STR(cache, "private, max-age=3600");
    CHECK_STR(type, "application/json");
    CHECK_CONTAINS(r.body, "\"ttl\":3600");
    CHECK_STR(names_of(r.body), "ts-lon-01,ts-lon-02");
    http_resp_free(&r);
    tsl_buf_free(&want);
}

TEST(broker__list_by_ipv6_multi_adapter_and_fallback_tier)
{
    fixture f;
    int s1, s2, s3;
    CHECK(start(&f, inventory, NULL));
    /* adapter 1 in no site, adapter 2 in London over IPv6 */
    const char *b1 = http_get_body(f.port, "/v1/task-servers?ip=192.168.1.1&ip=fd00%3A10%3A%3A7", NULL, &s1);
    /* Madrid's only server is stopped: every available server, tier 1 */
    const char *b2 = http_get_body(f.port, "/v1/task-servers?client=M1", NULL, &s2);
    /* a client the inventory lacks, with its IP */
    const char *b3 = http_get_body(f.port, "/v1/task-servers?client=NEW-1&ip=10.20.9.9&task=imaging", NULL, &s3);
    stop(&f);
    CHECK_INT(s1, 200);
    CHECK_CONTAINS(b1, "\"site\":\"London\",\"site_source\":\"subnet fd00:10::/48 (adapter 2)\"");
    CHECK_INT(s2, 200);
    CHECK_CONTAINS(b2, "\"site\":\"Madrid\"");
    CHECK_STR(names_of(b2), "ts-par-01,ts-lon-01,ts-lon-02");
    CHECK_CONTAINS(b2, "\"tier\":1");
    CHECK_INT(s3, 200);
    CHECK_CONTAINS(b3, "\"client\":\"NEW-1\",\"site\":\"Paris\"");
}

TEST(broker__list_bad_input_names_the_problem)
{
    fixture f;
    int s;
    const char *b;
    CHECK(start(&f, inventory, NULL));
    static const struct {
        const char *path;
        int status;
        const char *error;
    } cases[] = {
        {"/v1/task-servers?ip=10.10.3.300", 400,
         "{\"error\":\"ip #1: \\\"10.10.3.300\\\" is not a valid IPv4 or IPv6 address\"}"},
        {"/v1/task-servers?ip=10.10.3.1&color=red", 400,
         "{\"error\":\"unknown parameter \\\"color\\\" (expected client, ip, department, task)\"}"},
        {"/v1/task-servers", 400,
         "{\"error\":\"a list request needs ip=ADDRESS (one per network adapter) or client=GUID\"}"},
        {"/v1/task-servers?client=A1&client=B2", 400,
         "{\"error\":\"parameter \\\"client\\\" is given twice\"}"},
        {"/v1/task-servers?ip=10.1.1.1%zz", 400,
         "{\"error\":\"malformed query string: bad percent-encoding in parameter \\\"ip\\\"\"}"},
        {"/v1/task-servers?client=UNKNOWN", 400,
         "{\"error\":\"client \\\"UNKNOWN\\\" is not in the inventory and the request has no IP\"}"},
        {"/v1/task-servers/", 404,
         "{\"error\":\"no such endpoint: GET /v1/task-servers/ (see docs/http-api.md)\"}"},
        {"/v2/anything", 404, "{\"error\":\"no such endpoint: GET /v2/anything (see docs/http-api.md)\"}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        b = http_get_body(f.port, cases[i].path, NULL, &s);
        if (s != cases[i].status || strncmp(b, cases[i].error, strlen(cases[i].error)) != 0) {
            stop(&f);
            FAILF_("%s: %d %s, expected %d %s", cases[i].path, s, b, cases[i].status, cases[i].error);
        }
    }
    /* seventeen adapters */
    char path[1024] = "/v1/task-servers?client=A1";
    for (int i = 0; i < 17; i++)
        strcat(path, "&ip=10.10.0.1");
    b = http_get_body(f.port, path, NULL, &s);
    CHECK_INT(s, 400);
    CHECK_CONTAINS(b, "too many ip parameters (at most 16");
    /* a method the path does not take */
    http_resp r;
    s = http_do(f.port, "DELETE", "/v1/task-servers?ip=10.10.0.1", NULL, NULL, &r);
    char allow[64];
    bool has_allow = http_header(&r, "Allow", allow, sizeof allow) != NULL;
    stop(&f);
    CHECK_INT(s, 405);
    CHECK(has_allow);
    CHECK_STR(allow, "GET, HEAD");
    CHECK_STR(r.body, "{\"error\":\"method DELETE is not allowed on /v1/task-servers?ip=10.10.0.1 "
                      "(allowed: GET, HEAD)\"}\n");
    http_resp_free(&r);
}

TEST(broker__keep_alive_serves_many_requests_on_one_connection)
{
    fixture f;
    CHECK(start(&f, inventory, NULL));
    int fd = http_connect(f.port), ok = 0;
    for (int i = 0; i < 50 && fd >= 0; i++) {
        http_resp r;
        if (http_on(fd, "GET", "/v1/task-servers?ip=10.20.1.1", NULL, NULL, 0, &r) == 0 &&
            r.status == 200 && strstr(r.body, "ts-par-01"))
            ok++;
        http_resp_free(&r);
    }
    if (fd >= 0)
        close(fd);
    stop(&f);
    CHECK_INT(ok, 50);
}

/* ------------------------------------------------------------------------
 * Heartbeats
 * ---------------------------------------------------------------------- */

static void real_time(tsl_broker_config *c)
{
    c->clock = NULL;
    c->refresh_ms = 500; /* the defaults: a heartbeat shows within a second */
    c->flush_ms = 100;
}

TEST(broker__heartbeat_changes_the_next_list_within_a_second)
{
    fixture f;
    int s;
    http_resp r;
    CHECK(start(&f, inventory, real_time));
    const char *before = names_of(http_get_body(f.port, "/v1/task-servers?ip=10.10.3.17", NULL, &s));
    CHECK_STR(before, "ts-lon-01,ts-lon-02");
    /* ts-lon-02 empties: it has the most room now */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int hs = post(&f, "/v1/task-servers/ts-lon-02/heartbeat",
                  "{\"connections\":0,\"capacity\":1000,\"response_ms\":3,\"service\":\"running\"}", &r);
    bool changed = false;
    double waited = 0;
    while (!changed && waited < 2.0) {
        const char *now = names_of(http_get_body(f.port, "/v1/task-servers?ip=10.10.3.17", NULL, &s));
        changed = strcmp(now, "ts-lon-02,ts-lon-01") == 0;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        waited = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        if (!changed)
            usleep(20000);
    }
    stop(&f);
    CHECK_INT(hs, 200);
    CHECK_CONTAINS(r.body, "{\"server\":\"ts-lon-02\",\"new\":false,\"at\":");
    http_resp_free(&r);
    CHECK(changed);
    if (waited >= 1.0)
        FAILF_("the heartbeat took %.2f s to show", waited);
    /* and the store has it */
    CHECK_INT(db_int(&f, "SELECT connections FROM task_servers WHERE name = 'ts-lon-02'"), 0);
    CHECK_INT(db_int(&f, "SELECT response_ms FROM task_servers WHERE name = 'ts-lon-02'"), 3);
}

TEST(broker__stopped_server_leaves_and_running_rejoins)
{
    fixture f;
    int s;
    http_resp r;
    CHECK(start(&f, inventory, NULL));
    CHECK_INT(post(&f, "/v1/task-servers/TS-LON-01/heartbeat", "{\"service\":\"stopped\"}", &r), 200);
    CHECK_CONTAINS(r.body, "\"server\":\"ts-lon-01\""); /* the inventory's spelling */
    http_resp_free(&r);
    CHECK_OK(tsl_broker_sync(f.b));
    const char *l1 = names_of(http_get_body(f.port, "/v1/task-servers?ip=10.10.3.17", NULL, &s));
    CHECK_STR(l1, "ts-lon-02");
    CHECK_INT(post(&f, "/v1/task-servers/ts-lon-01/heartbeat", "{\"service\":\"running\"}", &r), 200);
    http_resp_free(&r);
    CHECK_OK(tsl_broker_sync(f.b));
    const char *l2 = names_of(http_get_body(f.port, "/v1/task-servers?ip=10.10.3.17", NULL, &s));
    stop(&f);
    CHECK_STR(l2, "ts-lon-01,ts-lon-02");
    CHECK_STR(db_text(&f, "SELECT service FROM task_servers WHERE name = 'ts-lon-01'"), "running");
}

/* Registration by heartbeat, pending servers and approval: see
 * test_broker_writes.c.  By default a new name is refused. */
TEST(broker__heartbeat_from_a_new_name_is_refused)
{
    fixture f;
    http_resp r;
    CHECK(start(&f, inventory, NULL));
    CHECK_INT(post(&f, "/v1/task-servers/ts-par-02/heartbeat",
                   "{\"host\":\"ts-par-02.corp\",\"ip\":\"10.20.0.6\",\"sites\":[\"paris\"],"
                   "\"capacity\":2000,\"connections\":0}", &r), 403);
    CHECK_CONTAINS(r.body, "{\"error\":\"unknown task server \\\"ts-par-02\\\": a heartbeat "
                           "registers no server");
    http_resp_free(&r);
    CHECK_OK(tsl_broker_sync(f.b));
    stop(&f);
    CHECK_INT(db_int(&f, "SELECT count(*) FROM task_servers WHERE name = 'ts-par-02'"), 0);
}

TEST(broker__heartbeat_bad_input_is_refused_and_nothing_written)
{
    fixture f;
    http_resp r;
    static const struct {
        const char *path, *body;
        int status;
        const char *error;
    } cases[] = {
        {"/v1/task-servers/ts-lon-01/heartbeat", "{\"connections\": 1,", 400,
         "{\"error\":\"invalid JSON: "},
        {"/v1/task-servers/ts-lon-01/heartbeat", "[1,2]", 400,
         "{\"error\":\"invalid JSON: the body must be an object\"}"},
        {"/v1/task-servers/ts-lon-01/heartbeat", "", 400,
         "{\"error\":\"invalid JSON: the body is empty (expected an object)\"}"},
        {"/v1/task-servers/ts-lon-01/heartbeat", "{\"conections\": 5}", 400,
         "{\"error\":\"unknown field \\\"conections\\\" (expected connections, capacity, "
         "response_ms, service, registered, host, ip, sites)\"}"},
        {"/v1/task-servers/ts-lon-01/heartbeat", "{\"capacity\": -1}", 400,
         "{\"error\":\"field \\\"capacity\\\" must be a non-negative integer\"}"},
        {"/v1/task-servers/ts-lon-01/heartbeat", "{\"connections\": 1.5}", 400,
         "{\"error\":\"field \\\"connections\\\" must be a non-negative integer\"}"},
        {"/v1/task-servers/ts-lon-01/heartbeat", "{\"service\": \"paused\"}", 400,
         "{\"error\":\"field \\\"service\\\" must be \\\"running\\\" or \\\"stopped\\\"\"}"},
        {"/v1/task-servers/ts-new/heartbeat", "{\"ip\": \"10.20.0.256\"}", 400,
         "{\"error\":\"field \\\"ip\\\": \\\"10.20.0.256\\\" is not a valid IPv4 or IPv6 address\"}"},
        {"/v1/task-servers/ts-new/heartbeat", "{\"sites\": [\"Paris\", \"Atlantis\"]}", 422,
         "{\"error\":\"sites[1]: unknown site \\\"Atlantis\\\"\"}"},
        {"/v1/task-servers/ts-new/heartbeat", "{\"connections\": 1, \"connections\": 2}", 400,
         "{\"error\":\"invalid JSON: duplicate object key"},
        {"/v1/task-servers/ts-new/heartbeat?x=1", "{}", 400,
         "{\"error\":\"unknown parameter \\\"x\\\" (this endpoint takes none)\"}"},
        {"/v1/task-servers/%01bad/heartbeat", "{}", 400,
         "{\"error\":\"a task server name is 1 to 255 printable characters\"}"},
    };
    CHECK(start(&f, inventory, NULL));
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int s = post(&f, cases[i].path, cases[i].body, &r);
        bool ok = s == cases[i].status && r.body &&
                  strncmp(r.body, cases[i].error, strlen(cases[i].error)) == 0;
        if (!ok) {
            char msg[1024];
            snprintf(msg, sizeof msg, "%s %s: %d %s", cases[i].path, cases[i].body, s,
                     r.body ? r.body : "(none)");
            http_resp_free(&r);
            stop(&f);
            FAILF_("%s, expected %d %s", msg, cases[i].status, cases[i].error);
        }
        http_resp_free(&r);
    }
    /* a body over the limit */
    char *big = malloc(70000);
    CHECK(big);
    memset(big, ' ', 69999);
    big[0] = '{';
    big[69998] = '}';
    big[69999] = '\0';
    int s = post(&f, "/v1/task-servers/ts-lon-01/heartbeat", big, &r);
    free(big);
    CHECK_OK(tsl_broker_sync(f.b));
    stop(&f);
    CHECK_INT(s, 413);
    CHECK_STR(r.body, "{\"error\":\"request body of 69999 bytes is over the 65536-byte limit\"}\n");
    http_resp_free(&r);
    /* nothing reached the store */
    CHECK_INT(db_int(&f, "SELECT count(*) FROM task_servers"), 4);
    CHECK_INT(db_int(&f, "SELECT count(*) FROM task_servers WHERE last_heartbeat IS NOT NULL"), 0);
}

static void stale_10s(tsl_broker_config *c)
{
    c->settings.stale_after = 10;
}

TEST(broker__stale_servers_drop_out_by_the_clock)
{
    fixture f;
    int s;
    http_resp r;
    CHECK(start(&f, inventory, stale_10s));
    CHECK_INT(post(&f, "/v1/task-servers/ts-lon-01/heartbeat", "{}", &r), 200);
    http_resp_free(&r);
    CHECK_INT(post(&f, "/v1/task-servers/ts-lon-02/heartbeat", "{}", &r), 200);
    http_resp_free(&r);
    CHECK_OK(tsl_broker_sync(f.b));
    atomic_store(&test_now, T0 + 5);
    CHECK_INT(post(&f, "/v1/task-servers/ts-lon-02/heartbeat", "{}", &r), 200);
    http_resp_free(&r);
    CHECK_OK(tsl_broker_sync(f.b));
    atomic_store(&test_now, T0 + 10);
    const char *l1 = names_of(http_get_body(f.port, "/v1/task-servers?ip=10.10.3.17", NULL, &s));
    CHECK_STR(l1, "ts-lon-01,ts-lon-02");
    /* no new plan, no failed request: the clock alone moves ts-lon-01 out */
    atomic_store(&test_now, T0 + 11);
    const char *l2 = names_of(http_get_body(f.port, "/v1/task-servers?ip=10.10.3.17", NULL, &s));
    atomic_store(&test_now, T0 + 16);
    const char *l3 = http_get_body(f.port, "/v1/task-servers?ip=10.10.3.17", NULL, &s);
    stop(&f);
    CHECK_STR(l2, "ts-lon-02");
    /* London empty: fallback to every available server */
    CHECK_STR(names_of(l3), "ts-par-01");
    CHECK_CONTAINS(l3, "\"tier\":1");
}

/* ------------------------------------------------------------------------
 * Registrations
 * ---------------------------------------------------------------------- */

TEST(broker__registration_failure_demotes_the_server_for_that_client)
{
    fixture f;
    int s;
    http_resp r;
    CHECK(start(&f, inventory, NULL));
    CHECK_INT(post(&f, "/v1/clients/a1/registration",
                   "{\"server\":\"ts-lon-01\",\"ok\":false,\"error\":\"timeout\"}", &r), 200);
    CHECK_STR(r.body, "{\"client\":\"A1\",\"server\":\"ts-lon-01\",\"ok\":false,\"site\":\"London\","
                      "\"tier\":0,\"outside_approved\":false}\n");
    http_resp_free(&r);
    CHECK_OK(tsl_broker_sync(f.b));
    const char *mine = http_get_body(f.port, "/v1/task-servers?client=A1", NULL, &s);
    const char *other = names_of(http_get_body(f.port, "/v1/task-servers?ip=10.10.3.18", NULL, &s));
    CHECK_STR(names_of(mine), "ts-lon-02,ts-lon-01");
    CHECK_CONTAINS(mine, "\"name\":\"ts-lon-01\"");
    CHECK_CONTAINS(strstr(mine, "\"name\":\"ts-lon-01\""), "\"recent_error\":true");
    CHECK_STR(other, "ts-lon-01,ts-lon-02");
    /* an hour later the error is out of the window */
    atomic_store(&test_now, T0 + 3601);
    const char *later = names_of(http_get_body(f.port, "/v1/task-servers?client=A1", NULL, &s));
    stop(&f);
    CHECK_STR(later, "ts-lon-01,ts-lon-02");
    CHECK_INT(db_int(&f, "SELECT count(*) FROM registrations WHERE client = 'A1' AND ok = 0"
                         " AND error = 'timeout' AND site = 'London' AND tier = 0"
                         " AND outside_approved = 0 AND at = 1800000000"), 1);
    CHECK_INT(db_int(&f, "SELECT count(*) FROM connection_errors e JOIN clients c ON c.id = e.client_id"
                         " WHERE c.guid = 'A1' AND e.error = 'timeout'"), 1);
}

TEST(broker__registration_success_records_assignment_and_fallback_report)
{
    fixture f;
    http_resp r;
    CHECK(start(&f, inventory, NULL));
    CHECK_INT(post(&f, "/v1/clients/A1/registration", "{\"server\":\"ts-lon-02\",\"ok\":true}", &r), 200);
    CHECK_STR(r.body, "{\"client\":\"A1\",\"server\":\"ts-lon-02\",\"ok\":true,\"site\":\"London\","
                      "\"tier\":0,\"outside_approved\":false}\n");
    http_resp_free(&r);
    /* a London client on a Paris server: not in its list at all */
    CHECK_INT(post(&f, "/v1/clients/A1/registration", "{\"server\":\"ts-par-01\",\"ok\":true}", &r), 200);
    CHECK_STR(r.body, "{\"client\":\"A1\",\"server\":\"ts-par-01\",\"ok\":true,\"site\":\"London\","
                      "\"tier\":null,\"outside_approved\":true}\n");
    http_resp_free(&r);
    /* Madrid falls back: ts-par-01 is tier 1 for M1 */
    CHECK_INT(post(&f, "/v1/clients/M1/registration", "{\"server\":\"ts-par-01\",\"ok\":true}", &r), 200);
    CHECK_STR(r.body, "{\"client\":\"M1\",\"server\":\"ts-par-01\",\"ok\":true,\"site\":\"Madrid\","
                      "\"tier\":1,\"outside_approved\":true}\n");
    http_resp_free(&r);
    /* an unknown client without an IP cannot be judged */
    CHECK_INT(post(&f, "/v1/clients/Z9/registration", "{\"server\":\"ts-par-01\",\"ok\":true}", &r), 200);
    CHECK_STR(r.body, "{\"client\":\"Z9\",\"server\":\"ts-par-01\",\"ok\":true,\"site\":null,"
                      "\"tier\":null,\"outside_approved\":null}\n");
    http_resp_free(&r);
    int s = http_do(f.port, "GET", "/v1/reports/fallback", f.auth, NULL, &r);
    char csv[1024];
    http_resp rc;
    int s2 = http_do(f.port, "GET", "/v1/reports/fallback?format=csv&days=7", f.auth, NULL, &rc);
    snprintf(csv, sizeof csv, "%s", rc.body ? rc.body : "");
    http_resp_free(&rc);
    stop(&f);
    CHECK_INT(s, 200);
    CHECK_STR(r.body, "[\n {\"site\":null,\"day\":\"2027-01-15\",\"registrations\":1,"
                      "\"outside_approved\":0,\"fallback_tier\":0,\"not_listed\":1},\n"
                      " {\"site\":\"London\",\"day\":\"2027-01-15\",\"registrations\":2,"
                      "\"outside_approved\":1,\"fallback_tier\":0,\"not_listed\":1},\n"
                      " {\"site\":\"Madrid\",\"day\":\"2027-01-15\",\"registrations\":1,"
                      "\"outside_approved\":1,\"fallback_tier\":1,\"not_listed\":0}\n]\n");
    http_resp_free(&r);
    CHECK_INT(s2, 200);
    CHECK_STR(csv, "site,day,registrations,outside_approved,fallback_tier,not_listed\n"
                   ",2027-01-15,1,0,0,1\nLondon,2027-01-15,2,1,0,1\nMadrid,2027-01-15,1,1,1,0\n");
    CHECK_STR(db_text(&f, "SELECT assigned_server FROM clients WHERE guid = 'A1'"), "ts-par-01");
    CHECK_INT(db_int(&f, "SELECT assigned_at FROM clients WHERE guid = 'A1'"), T0);
    CHECK_INT(db_int(&f, "SELECT count(*) FROM registrations WHERE ok = 1"), 4);
    CHECK_INT(db_int(&f, "SELECT count(*) FROM registrations WHERE outside_approved IS NULL"), 1);
}

TEST(broker__registration_bad_input_is_refused_and_nothing_written)
{
    fixture f;
    http_resp r;
    static const struct {
        const char *body;
        int status;
        const char *error;
    } cases[] = {
        {"{\"server\":\"ts-nowhere\",\"ok\":false}", 422,
         "{\"error\":\"unknown task server \\\"ts-nowhere\\\"\"}"},
        {"{\"server\":\"ts-lon-01\"}", 400, "{\"error\":\"missing field \\\"ok\\\"\"}"},
        {"{\"ok\":true}", 400, "{\"error\":\"missing field \\\"server\\\"\"}"},
        {"{\"server\":\"ts-lon-01\",\"ok\":\"yes\"}", 400,
         "{\"error\":\"field \\\"ok\\\" must be true or false\"}"},
        {"{\"server\":\"ts-lon-01\",\"ok\":true,\"ip\":\"10.1\"}", 400,
         "{\"error\":\"field \\\"ip\\\": \\\"10.1\\\" is not a valid IPv4 or IPv6 address\"}"},
        {"{\"server\":\"ts-lon-01\",\"ok\":true,\"why\":1}", 400,
         "{\"error\":\"unknown field \\\"why\\\" (expected server, ok, error, ip)\"}"},
        {"not json", 400, "{\"error\":\"invalid JSON: "},
    };
    CHECK(start(&f, inventory, NULL));
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int s = post(&f, "/v1/clients/A1/registration", cases[i].body, &r);
        bool ok = s == cases[i].status && r.body &&
                  strncmp(r.body, cases[i].error, strlen(cases[i].error)) == 0;
        if (!ok) {
            char msg[1024];
            snprintf(msg, sizeof msg, "%s: %d %s", cases[i].body, s, r.body ? r.body : "");
            http_resp_free(&r);
            stop(&f);
            FAILF_("%s, expected %d %s", msg, cases[i].status, cases[i].error);
        }
        http_resp_free(&r);
    }
    int s = http_do(f.port, "GET", "/v1/clients/A1/registration", NULL, NULL, &r);
    CHECK_OK(tsl_broker_sync(f.b));
    stop(&f);
    CHECK_INT(s, 405);
    http_resp_free(&r);
    CHECK_INT(db_int(&f, "SELECT count(*) FROM registrations"), 0);
    CHECK_INT(db_int(&f, "SELECT count(*) FROM connection_errors"), 0);
}

/* ------------------------------------------------------------------------
 * Admin
 * ---------------------------------------------------------------------- */

TEST(broker__admin_endpoints_need_the_token_from_a_0600_file)
{
    fixture f;
    http_resp r;
    static const struct {
        const char *method, *path;
    } admin[] = {
        {"POST", "/v1/policy"}, {"GET", "/v1/policy"}, {"POST", "/v1/policy/abc/activate"},
        {"POST", "/v1/policy/rollback"}, {"GET", "/v1/explain?ip=10.10.0.1"},
        {"GET", "/v1/reports/active-servers"}, {"GET", "/v1/reports/fallback"},
        {"POST", "/v1/inventory"},
    };
    CHECK(start(&f, inventory, NULL));
    struct stat st;
    char path[700], token[100] = "";
    snprintf(path, sizeof path, "%s.token", f.db);
    CHECK_STR(tsl_broker_admin_token_path(f.b), path);
    CHECK(stat(path, &st) == 0);
    CHECK_INT(st.st_mode & 0777, 0600);
    FILE *tf = fopen(path, "r");
    CHECK(tf && fscanf(tf, "%99s", token) == 1);
    fclose(tf);
    CHECK_STR(token, tsl_broker_admin_token(f.b));
    CHECK_INT(strlen(token), 64);
    for (size_t i = 0; i < sizeof admin / sizeof admin[0]; i++) {
        int s1 = http_do(f.port, admin[i].method, admin[i].path, NULL, "{}", &r);
        char www[64] = "";
        http_header(&r, "WWW-Authenticate", www, sizeof www);
        bool ok1 = s1 == 401 && strstr(r.body, "needs the admin token") && strcmp(www, "Bearer realm=\"tsl admin\"") == 0;
        http_resp_free(&r);
        int s2 = http_do(f.port, admin[i].method, admin[i].path,
                         "Authorization: Bearer 0123456789abcdef0123\r\n", "{}", &r);
        bool ok2 = s2 == 401 && strstr(r.body, "wrong admin token");
        http_resp_free(&r);
        if (!ok1 || !ok2) {
            stop(&f);
            FAILF_("%s %s: %d, %d without and with a wrong token", admin[i].method, admin[i].path, s1, s2);
        }
    }
    int s = http_do(f.port, "GET", "/v1/reports/active-servers", f.auth, NULL, &r);
    stop(&f);
    CHECK_INT(s, 200);
    http_resp_free(&r);
}

TEST(broker__reports_in_three_formats)
{
    fixture f;
    http_resp r1, r2, r3, r4, r5, r6;
    CHECK(start(&f, inventory, NULL));
    int s1 = http_do(f.port, "GET", "/v1/reports/active-servers", f.auth, NULL, &r1);
    int s2 = http_do(f.port, "GET", "/v1/reports/server-clients?format=csv", f.auth, NULL, &r2);
    int s3 = http_do(f.port, "GET", "/v1/reports/client-assignments?format=text", f.auth, NULL, &r3);
    int s4 = http_do(f.port, "GET", "/v1/reports/nonsense", f.auth, NULL, &r4);
    int s5 = http_do(f.port, "GET", "/v1/reports/active-servers?format=xml", f.auth, NULL, &r5);
    int s6 = http_do(f.port, "GET", "/v1/reports/active-servers?days=3", f.auth, NULL, &r6);
    char type[64] = "";
    http_header(&r2, "Content-Type", type, sizeof type);
    stop(&f);
    CHECK_INT(s1, 200);
    CHECK_CONTAINS(r1.body, "\"name\":\"ts-lon-01\"");
    CHECK(!strstr(r1.body, "ts-mad-01")); /* stopped: not active */
    CHECK_INT(s2, 200);
    CHECK_STR(type, "text/csv; charset=utf-8");
    CHECK(strncmp(r2.body, "server,", 7) == 0 || strstr(r2.body, "ts-lon-01,") != NULL);
    CHECK_INT(s3, 200);
    CHECK_CONTAINS(r3.body, "A1");
    CHECK_INT(s4, 404);
    CHECK_STR(r4.body, "{\"error\":\"no report \\\"nonsense\\\" (expected active-servers, "
                       "server-clients, client-assignments, subnet-conflicts or fallback)\"}\n");
    CHECK_INT(s5, 400);
    CHECK_STR(r5.body, "{\"error\":\"parameter \\\"format\\\" must be json, csv or text\"}\n");
    CHECK_INT(s6, 400);
    CHECK_STR(r6.body, "{\"error\":\"unknown parameter \\\"days\\\" (expected format)\"}\n");
    http_resp_free(&r1);
    http_resp_free(&r2);
    http_resp_free(&r3);
    http_resp_free(&r4);
    http_resp_free(&r5);
    http_resp_free(&r6);
}

TEST(broker__explain_gives_every_step_and_the_result)
{
    fixture f;
    http_resp r;
    CHECK(start(&f, inventory, NULL));
    int s = http_do(f.port, "GET", "/v1/explain?client=M1", f.auth, NULL, &r);
    stop(&f);
    CHECK_INT(s, 200);
    CHECK(strncmp(r.body, "{\"steps\":[", 10) == 0);
    CHECK_CONTAINS(r.body, "longest matching subnet 10.30.0.0/16 of site \\\"Madrid\\\"");
    CHECK_CONTAINS(r.body, "ts-mad-01");
    CHECK_CONTAINS(r.body, "\"result\":{\"client\":\"M1\",\"site\":\"Madrid\"");
    http_resp_free(&r);
}

TEST(broker__inventory_import_reloads_and_bad_input_changes_nothing)
{
    fixture f;
    int s;
    http_resp r;
    CHECK(start(&f, inventory, NULL));
    /* a heartbeat not yet saved survives the reload */
    CHECK_INT(post(&f, "/v1/task-servers/ts-lon-02/heartbeat", "{\"connections\":0}", &r), 200);
    http_resp_free(&r);
    int s1 = http_do(f.port, "POST", "/v1/inventory", f.auth,
                     "{\"sites\":[{\"name\":\"Oslo\",\"subnets\":[\"10.40.0.0/16\"]}],"
                     "\"task_servers\":[{\"name\":\"ts-osl-01\",\"ip\":\"10.40.0.5\"}]}", &r);
    CHECK_INT(s1, 200);
    CHECK_STR(r.body, "{\"imported\":true,\"sites\":4,\"task_servers\":5,\"clients\":3,"
                      "\"warnings\":[]}\n");
    http_resp_free(&r);
    const char *oslo = names_of(http_get_body(f.port, "/v1/task-servers?ip=10.40.1.1", NULL, &s));
    const char *lon = names_of(http_get_body(f.port, "/v1/task-servers?ip=10.10.1.1", NULL, &s));
    int s2 = http_do(f.port, "POST", "/v1/inventory", f.auth,
                     "{\"task_servers\":[{\"name\":\"ts-x\",\"sites\":[\"Nowhere\"]}]}", &r);
    http_resp_free(&r);
    int s3 = http_do(f.port, "POST", "/v1/inventory", f.auth, "{\"sites\": [", &r);
    http_resp r4;
    int s4 = http_do(f.port, "POST", "/v1/inventory", f.auth, "{\"sites\":[{\"name\":\"Bad\",\"subnets\":[\"10.0.0.0/33\"]}]}", &r4);
    const char *still = names_of(http_get_body(f.port, "/v1/task-servers?ip=10.40.1.1", NULL, &s));
    stop(&f);
    CHECK_STR(oslo, "ts-osl-01");
    CHECK_STR(lon, "ts-lon-02,ts-lon-01");
    CHECK_INT(s2, 400);
    CHECK_INT(s3, 400);
    CHECK_INT(s4, 400);
    CHECK_CONTAINS(r4.body, "10.0.0.0/33");
    http_resp_free(&r);
    http_resp_free(&r4);
    CHECK_STR(still, "ts-osl-01");
    CHECK_INT(db_int(&f, "SELECT count(*) FROM task_servers"), 5);
    CHECK_INT(db_int(&f, "SELECT count(*) FROM sites"), 4);
}

/* ------------------------------------------------------------------------
 * Health, metrics, limits
 * ---------------------------------------------------------------------- */

TEST(broker__metrics_count_requests_and_decisions)
{
    fixture f;
    int s;
    http_resp r;
    CHECK(start(&f, inventory, NULL));
    for (int i = 0; i < 7; i++)
        http_get_body(f.port, "/v1/task-servers?ip=10.10.3.17", NULL, &s);
    http_get_body(f.port, "/v1/task-servers?ip=bad", NULL, &s);
    http_get_body(f.port, "/v1/task-servers?client=M1", NULL, &s); /* fallback tier 1 */
    CHECK_INT(post(&f, "/v1/task-servers/ts-lon-01/heartbeat", "{}", &r), 200);
    http_resp_free(&r);
    CHECK_INT(post(&f, "/v1/clients/A1/registration", "{\"server\":\"ts-lon-01\",\"ok\":false}", &r), 200);
    http_resp_free(&r);
    http_get_body(f.port, "/nowhere", NULL, &s);
    const char *m = http_get_body(f.port, "/metrics", NULL, &s);
    char type[80] = "";
    http_do(f.port, "GET", "/metrics", NULL, NULL, &r);
    http_header(&r, "Content-Type", type, sizeof type);
    http_resp_free(&r);
    const char *h = http_get_body(f.port, "/healthz", NULL, &s);
    int hs = s;
    stop(&f);
    CHECK_STR(type, "text/plain; version=0.0.4; charset=utf-8");
    CHECK_CONTAINS(m, "\ntsl_http_requests_total{endpoint=\"task-servers\",code=\"200\"} 8\n");
    CHECK_CONTAINS(m, "\ntsl_http_requests_total{endpoint=\"task-servers\",code=\"400\"} 1\n");
    CHECK_CONTAINS(m, "\ntsl_http_requests_total{endpoint=\"heartbeat\",code=\"200\"} 1\n");
    CHECK_CONTAINS(m, "\ntsl_http_requests_total{endpoint=\"other\",code=\"404\"} 1\n");
    CHECK_CONTAINS(m, "\ntsl_decision_duration_seconds_count 8\n");
    CHECK_CONTAINS(m, "\ntsl_decision_duration_seconds_bucket{le=\"+Inf\"} 8\n");
    CHECK_CONTAINS(m, "\ntsl_fallback_responses_total{tier=\"1\"} 1\n");
    CHECK_CONTAINS(m, "\ntsl_blocked_responses_total 0\n");
    CHECK_CONTAINS(m, "\ntsl_policy_active_info{version=\"none\"} 1\n");
    CHECK_CONTAINS(m, "\ntsl_heartbeats_total 1\n");
    CHECK_CONTAINS(m, "\ntsl_registrations_total{result=\"failed\"} 1\n");
    CHECK_CONTAINS(m, "\ntsl_snapshot_clients 3\n");
    CHECK_CONTAINS(m, "\n# TYPE tsl_snapshot_age_seconds gauge\ntsl_snapshot_age_seconds ");
    CHECK_INT(hs, 200);
    CHECK_CONTAINS(h, "{\"status\":\"ok\",\"policy\":null,\"sites\":3,\"task_servers\":4,\"clients\":3,"
                      "\"snapshot_age_s\":0,\"write_queue\":");
}

static void tight_limits(tsl_broker_config *c)
{
    c->max_headers = 8;
    c->max_headers_size = 1024;
    c->timeout_s = 1;
}

TEST(broker__header_limits_and_slow_clients)
{
    fixture f;
    http_resp r;
    char extra[16384];
    CHECK(start(&f, inventory, tight_limits));
    /* nine header lines (Host + 8) */
    extra[0] = '\0';
    for (int i = 0; i < 8; i++)
        snprintf(extra + strlen(extra), sizeof extra - strlen(extra), "X-H%d: v\r\n", i);
    int s1 = http_do(f.port, "GET", "/v1/task-servers?ip=10.10.0.1", extra, NULL, &r);
    char b1[256];
    snprintf(b1, sizeof b1, "%s", r.body ? r.body : "");
    http_resp_free(&r);
    /* 2000 bytes of header: over the JSON limit, under evhttp's */
    snprintf(extra, sizeof extra, "X-Big: %02000d\r\n", 0);
    int s2 = http_do(f.port, "GET", "/v1/task-servers?ip=10.10.0.1", extra, NULL, &r);
    char b2[256];
    snprintf(b2, sizeof b2, "%s", r.body ? r.body : "");
    http_resp_free(&r);
    /* 10 KB: evhttp itself refuses */
    snprintf(extra, sizeof extra, "X-Huge: %010000d\r\n", 0);
    int s3 = http_do(f.port, "GET", "/v1/task-servers?ip=10.10.0.1", extra, NULL, &r);
    http_resp_free(&r);
    /* a client that never finishes its request is answered 408 and dropped
     * (tests/test_broker_edge.c has the details) */
    int fd = http_connect(f.port);
    bool closed = false;
    if (fd >= 0 && http_send_all(fd, "GET /v1/task-servers?ip=10.1", 28)) {
        char buf[4096];
        ssize_t n, got = 0;
        while ((n = recv(fd, buf + got, sizeof buf - 1 - (size_t)got, 0)) > 0)
            got += n;
        buf[got] = '\0';
        closed = n == 0 && (got == 0 || strncmp(buf, "HTTP/1.1 408 ", 13) == 0);
    }
    if (fd >= 0)
        close(fd);
    stop(&f);
    CHECK_INT(s1, 431);
    CHECK_STR(b1, "{\"error\":\"too many header lines (9, at most 8)\"}\n");
    CHECK_INT(s2, 431);
    CHECK_CONTAINS(b2, "bytes are over the 1024-byte limit\"}");
    CHECK(s3 >= 400 && s3 < 500);
    CHECK(closed);
}

/* ------------------------------------------------------------------------
 * The decision log
 * ---------------------------------------------------------------------- */

static void dlog_rate_3(tsl_broker_config *c)
{
    c->decision_log_rate = 3;
    c->decision_log_max = 2;
}

TEST(broker__decision_log_is_bounded_and_queryable)
{
    fixture f;
    int s;
    CHECK(start(&f, inventory, dlog_rate_3));
    http_get_body(f.port, "/v1/task-servers?ip=10.10.3.17&ip=fd00:10::1&department=Sales&task=patch", NULL, &s);
    http_get_body(f.port, "/v1/task-servers?client=M1", NULL, &s);
    http_get_body(f.port, "/v1/task-servers?client=P1", NULL, &s);
    http_get_body(f.port, "/v1/task-servers?client=A1", NULL, &s); /* over the rate */
    CHECK_OK(tsl_broker_sync(f.b));
    const char *m = http_get_body(f.port, "/metrics", NULL, &s);
    char metric[128];
    const char *mp = strstr(m, "\ntsl_decision_log_dropped_total ");
    snprintf(metric, sizeof metric, "%s", mp ? mp + 1 : "");
    stop(&f);
    /* a ring of two: the first row was overwritten by the third */
    CHECK_INT(db_int(&f, "SELECT count(*) FROM decision_log"), 2);
    CHECK_INT(db_int(&f, "SELECT min(seq) FROM decision_log"), 1);
    CHECK_STR(db_text(&f, "SELECT servers FROM decision_log WHERE client = 'M1'"),
              "[\"ts-par-01\",\"ts-lon-01\",\"ts-lon-02\"]");
    CHECK_STR(db_text(&f, "SELECT site || '|' || ips || '|' || blocked FROM decision_log WHERE seq = 2"),
              "Paris|[]|0");
    CHECK_INT(db_int(&f, "SELECT count(*) FROM decision_log d, json_each(d.servers) WHERE d.client = 'M1'"), 3);
    CHECK(strncmp(metric, "tsl_decision_log_dropped_total 1\n", 33) == 0);
}

/* ------------------------------------------------------------------------
 * Plan swaps under load, and stopping
 * ---------------------------------------------------------------------- */

typedef struct hammer {
    int port;
    _Atomic bool *stop;
    long ok, failed;
} hammer;

static void *hammer_main(void *arg)
{
    hammer *h = arg;
    int fd = http_connect(h->port);
    while (!atomic_load(h->stop)) {
        http_resp r;
        if (fd < 0 || http_on(fd, "GET", "/v1/task-servers?ip=10.10.3.17", NULL, NULL, 0, &r) < 0) {
            if (!h->failed)
                fprintf(stderr, "hammer: %s\n", fd < 0 ? "cannot connect" : "no answer");
            h->failed++;
            if (fd >= 0)
                close(fd);
            fd = http_connect(h->port);
            continue;
        }
        if (r.status == 200 && strstr(r.body, "\"site\":\"London\"") &&
            (strstr(r.body, "ts-lon-01") || strstr(r.body, "ts-lon-02")))
            h->ok++;
        else {
            if (!h->failed)
                fprintf(stderr, "hammer: status %d: %.200s\n", r.status, r.body ? r.body : "");
            h->failed++;
        }
        http_resp_free(&r);
    }
    if (fd >= 0)
        close(fd);
    return NULL;
}

TEST(broker__plan_swaps_under_concurrent_requests_fail_none)
{
    fixture f;
    http_resp r;
    _Atomic bool halt = false;
    hammer h[4];
    pthread_t th[4];
    CHECK(start(&f, inventory, NULL));
    for (int i = 0; i < 4; i++) {
        h[i] = (hammer){f.port, &halt, 0, 0};
        pthread_create(&th[i], NULL, hammer_main, &h[i]);
    }
    int bad = 0;
    for (int i = 0; i < 40; i++) {
        char body[96];
        snprintf(body, sizeof body, "{\"connections\":%d}", (i * 37) % 1000);
        if (post(&f, i % 2 ? "/v1/task-servers/ts-lon-01/heartbeat" : "/v1/task-servers/ts-lon-02/heartbeat", body, &r) != 200)
            bad++;
        http_resp_free(&r);
        if (tsl_broker_sync(f.b) < 0)
            bad++;
        if (i % 10 == 0) { /* a full reload too */
            if (http_do(f.port, "POST", "/v1/inventory", f.auth, "{\"clients\":[{\"guid\":\"X\",\"ip\":\"10.10.9.9\"}]}", &r) != 200)
                bad++;
            http_resp_free(&r);
        }
    }
    atomic_store(&halt, true);
    long ok = 0, failed = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        ok += h[i].ok;
        failed += h[i].failed;
    }
    int bad_swaps = bad, ms;
    const char *m = http_get_body(f.port, "/metrics", NULL, &ms);
    long swaps = 0;
    const char *p = strstr(m, "\ntsl_plan_swaps_total ");
    if (p)
        swaps = strtol(p + 22, NULL, 10);
    stop(&f);
    CHECK_INT(bad_swaps, 0);
    CHECK_INT(failed, 0);
    CHECK(ok > 100);
    CHECK(swaps >= 40);
}

/* ------------------------------------------------------------------------
 * Policy versions: upload, activate, rollback, list; swaps under load
 * ---------------------------------------------------------------------- */

static const char policy_lon02_first[] = "site \"London\" { order = { \"ts-lon-02\", \"ts-lon-01\" } }\n";
static const char policy_lon01_only[] = "site \"London\" { order = { \"ts-lon-01\" }, deny = { \"ts-lon-02\" } }\n";

/* The "version" field of a JSON body, in `dst`. */
static const char *version_of(const char *json, const char *field, char *dst, size_t len)
{
    char key[64];
    snprintf(key, sizeof key, "\"%s\":\"", field);
    const char *p = strstr(json, key);
    dst[0] = '\0';
    if (p) {
        p += strlen(key);
        const char *e = strchr(p, '"');
        if (e && (size_t)(e - p) < len)
            snprintf(dst, len, "%.*s", (int)(e - p), p);
    }
    return dst;
}

static const char *list_a1(const fixture *f)
{
    int s;
    const char *body = http_get_body(f->port, "/v1/task-servers?client=A1", NULL, &s);
    return s == 200 ? names_of(body) : "<error>";
}

TEST(broker__policy_upload_activate_rollback_and_list)
{
    fixture f;
    http_resp r;
    char v1[96], v2[96], path[200];
    CHECK(start(&f, inventory, NULL));

    /* an upload is checked and stored, not activated */
    int s_up = http_do(f.port, "POST", "/v1/policy?author=alice&comment=lon02+first&name=lon.lua", f.auth, policy_lon02_first, &r);
    version_of(r.body, "version", v1, sizeof v1);
    bool up_ok = strstr(r.body, "\"active\":false") && strstr(r.body, "\"findings\":[");
    http_resp_free(&r);
    const char *after_upload = list_a1(&f);
    int s_again = http_do(f.port, "POST", "/v1/policy", f.auth, policy_lon02_first, &r);
    bool again_existed = strstr(r.body, "\"existed\":true") != NULL;
    http_resp_free(&r);

    /* a policy with errors: 422 naming them, nothing stored */
    int s_bad = http_do(f.port, "POST", "/v1/policy?name=bad.lua", f.auth, "site \"London\" { order = ", &r);
    bool bad_named = strstr(r.body, "bad.lua") && strstr(r.body, "\"findings\":[\"");
    http_resp_free(&r);
    int s_unknown_param = http_do(f.port, "POST", "/v1/policy?owner=x", f.auth, policy_lon02_first, &r);
    bool unknown_named = strstr(r.body, "unknown parameter \\\"owner\\\"") != NULL;
    http_resp_free(&r);

    /* activate: the next list follows it */
    snprintf(path, sizeof path, "/v1/policy/%s/activate?author=bob", v1);
    int s_act = http_do(f.port, "POST", path, f.auth, NULL, &r);
    bool act_body = strstr(r.body, v1) != NULL;
    http_resp_free(&r);
    const char *after_act = list_a1(&f);
    int s_missing = http_do(f.port, "POST", "/v1/policy/sha256:000000000000/activate", f.auth, NULL, &r);
    http_resp_free(&r);

    /* a second version, activated by id */
    int s_up2 = http_do(f.port, "POST", "/v1/policy", f.auth, policy_lon01_only, &r);
    version_of(r.body, "version", v2, sizeof v2);
    http_resp_free(&r);
    int s_act2 = http_do(f.port, "POST", "/v1/policy/2/activate", f.auth, NULL, &r);
    http_resp_free(&r);
    const char *after_act2 = list_a1(&f);
    int ms;
    const char *m = http_get_body(f.port, "/metrics", NULL, &ms);
    char want_info[160];
    snprintf(want_info, sizeof want_info, "tsl_policy_active_info{version=\"%s\"} 1", v2);
    bool metric_ok = strstr(m, want_info) != NULL;

    /* the list of versions and the history */
    int ls;
    const char *list = http_get_body(f.port, "/v1/policy", f.auth, &ls);
    char active[96];
    version_of(list, "active", active, sizeof active);
    bool hist_ok = strstr(list, "\"history\":[{") && strstr(list, "\"author\":\"bob\"") &&
                   strstr(list, "\"comment\":\"lon02 first\"");

    /* rollbacks walk back: v1, then the default logic, then nothing left */
    int s_rb1 = http_do(f.port, "POST", "/v1/policy/rollback", f.auth, NULL, &r);
    http_resp_free(&r);
    const char *after_rb1 = list_a1(&f);
    int s_rb2 = http_do(f.port, "POST", "/v1/policy/rollback", f.auth, NULL, &r);
    bool rb2_none = strstr(r.body, "\"active\":null") != NULL;
    http_resp_free(&r);
    const char *after_rb2 = list_a1(&f);
    int s_rb3 = http_do(f.port, "POST", "/v1/policy/rollback", f.auth, NULL, &r);
    bool rb3_named = strstr(r.body, "nothing to roll back") != NULL;
    http_resp_free(&r);
    stop(&f);

    CHECK_INT(s_up, 201);
    CHECK(up_ok);
    CHECK(strncmp(v1, "sha256:", 7) == 0);
    CHECK_STR(after_upload, "ts-lon-01,ts-lon-02");
    CHECK_INT(s_again, 200);
    CHECK(again_existed);
    CHECK_INT(s_bad, 422);
    CHECK(bad_named);
    CHECK_INT(s_unknown_param, 400);
    CHECK(unknown_named);
    CHECK_INT(db_int(&f, "SELECT count(*) FROM policies"), 2);
    CHECK_INT(s_act, 200);
    CHECK(act_body);
    CHECK_STR(after_act, "ts-lon-02,ts-lon-01");
    CHECK_INT(s_missing, 404);
    CHECK_INT(s_up2, 201);
    CHECK_INT(s_act2, 200);
    CHECK_STR(after_act2, "ts-lon-01");
    CHECK(metric_ok);
    CHECK_INT(ls, 200);
    CHECK_STR(active, v2);
    CHECK(hist_ok);
    CHECK_INT(s_rb1, 200);
    CHECK_STR(after_rb1, "ts-lon-02,ts-lon-01");
    CHECK_INT(s_rb2, 200);
    CHECK(rb2_none);
    CHECK_STR(after_rb2, "ts-lon-01,ts-lon-02");
    CHECK_INT(s_rb3, 409);
    CHECK(rb3_named);
    CHECK_INT(db_int(&f, "SELECT count(*) FROM policy_active WHERE policy_id IS NULL"), 1);
    CHECK_INT(db_int(&f, "SELECT count(*) FROM rollout_history"), 4);
}

static void tune_policy_file(tsl_broker_config *cfg)
{
    static char path[700];
    snprintf(path, sizeof path, "%s/lon02.lua", tsl_test_tmpdir());
    FILE *fp = fopen(path, "w");
    if (fp) {
        fputs(policy_lon02_first, fp);
        fclose(fp);
    }
    cfg->policy_path = path;
}

TEST(broker__policy_file_at_start_is_stored_and_active_and_survives_a_restart)
{
    fixture f;
    CHECK(start(&f, inventory, tune_policy_file));
    const char *first = list_a1(&f);
    char saved[64];
    snprintf(saved, sizeof saved, "%s", first);
    tsl_broker_stop(f.b);
    tsl_broker_join(f.b);
    tsl_broker_free(f.b);
    f.b = NULL;
    CHECK_STR(saved, "ts-lon-02,ts-lon-01");
    CHECK_INT(db_int(&f, "SELECT count(*) FROM policy_active WHERE policy_id IS NOT NULL"), 1);
    CHECK_INT(db_int(&f, "SELECT count(*) FROM rollout_history"), 1);

    /* no --policy now: the store's active version runs */
    tsl_broker_config cfg;
    tsl_broker_config_init(&cfg);
    cfg.db_path = f.db;
    cfg.listen = "127.0.0.1:0";
    cfg.threads = 1;
    cfg.log_level = TSL_LOG_ERROR;
    cfg.clock = test_clock;
    CHECK_OK(tsl_broker_new(&f.b, &cfg));
    CHECK_OK(tsl_broker_start(f.b));
    f.port = tsl_broker_bound_port(f.b);
    const char *again = list_a1(&f);
    snprintf(saved, sizeof saved, "%s", again);
    stop(&f);
    CHECK_STR(saved, "ts-lon-02,ts-lon-01");
}

TEST(broker__policy_activations_under_concurrent_requests_fail_none)
{
    fixture f;
    http_resp r;
    _Atomic bool halt = false;
    hammer h[4];
    pthread_t th[4];
    char v[2][96];
    CHECK(start(&f, inventory, NULL));
    http_do(f.port, "POST", "/v1/policy", f.auth, policy_lon02_first, &r);
    version_of(r.body, "version", v[0], sizeof v[0]);
    http_resp_free(&r);
    http_do(f.port, "POST", "/v1/policy", f.auth, policy_lon01_only, &r);
    version_of(r.body, "version", v[1], sizeof v[1]);
    http_resp_free(&r);
    for (int i = 0; i < 4; i++) {
        h[i] = (hammer){f.port, &halt, 0, 0};
        pthread_create(&th[i], NULL, hammer_main, &h[i]);
    }
    int bad = 0, seen[3] = {0, 0, 0};
    for (int i = 0; i < 60; i++) {
        char path[200];
        /* v1, v2, the default logic, in turn */
        snprintf(path, sizeof path, "/v1/policy/%s/activate", i % 3 == 2 ? "none" : v[i % 3]);
        int st = http_do(f.port, "POST", path, f.auth, NULL, &r);
        if (st != 200) {
            fprintf(stderr, "  activate %s: %d %s\n", path, st, r.body ? r.body : "");
            bad++;
        }
        http_resp_free(&r);
        const char *names = list_a1(&f);
        int want = i % 3;
        const char *expect = want == 0 ? "ts-lon-02,ts-lon-01" : want == 1 ? "ts-lon-01" : "ts-lon-01,ts-lon-02";
        if (strcmp(names, expect) == 0)
            seen[want]++;
    }
    atomic_store(&halt, true);
    long ok = 0, failed = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        ok += h[i].ok;
        failed += h[i].failed;
    }
    stop(&f);
    CHECK_INT(bad, 0);
    CHECK_INT(failed, 0);
    CHECK(ok > 100);
    /* every activation is in force for the very next request */
    CHECK_INT(seen[0], 20);
    CHECK_INT(seen[1], 20);
    CHECK_INT(seen[2], 20);
    CHECK_INT(db_int(&f, "SELECT count(*) FROM rollout_history"), 60);
}

TEST(broker__stop_flushes_every_acknowledged_write)
{
    fixture f;
    http_resp r;
    CHECK(start(&f, inventory, NULL));
    int acked = 0;
    for (int i = 0; i < 200; i++) {
        char path[96], body[64];
        snprintf(body, sizeof body, "{\"connections\":%d}", i);
        if (post(&f, "/v1/task-servers/ts-lon-01/heartbeat", body, &r) == 200)
            acked++;
        http_resp_free(&r);
        /* a client each: reports are rate-limited per client */
        snprintf(path, sizeof path, "/v1/clients/B%03d/registration", i);
        if (post(&f, path, "{\"server\":\"ts-lon-01\",\"ok\":true}", &r) == 200)
            acked++;
        http_resp_free(&r);
    }
    stop(&f); /* no sync: the stop itself must flush */
    CHECK_INT(acked, 400);
    CHECK_INT(db_int(&f, "SELECT connections FROM task_servers WHERE name = 'ts-lon-01'"), 199);
    CHECK_INT(db_int(&f, "SELECT count(*) FROM registrations"), 200);
}

TEST(broker__starts_on_an_empty_store_and_refuses_a_bad_listen_address)
{
    fixture f;
    int s;
    CHECK(start(&f, NULL, NULL));
    const char *b = http_get_body(f.port, "/v1/task-servers?ip=10.1.1.1", NULL, &s);
    stop(&f);
    CHECK_INT(s, 200);
    CHECK_CONTAINS(b, "\"site\":null");
    CHECK_STR(names_of(b), "");

    tsl_broker_config cfg;
    tsl_broker *bk = NULL;
    tsl_broker_config_init(&cfg);
    cfg.db_path = f.db;
    cfg.listen = "localhost-ish";
    cfg.log_level = TSL_LOG_ERROR;
    CHECK_INT(tsl_broker_new(&bk, &cfg), TSL_EINVALID);
    CHECK_NULL(bk);
    CHECK_CONTAINS(tsl_error_last(), "--listen \"localhost-ish\": expected ADDRESS:PORT");
    cfg.db_path = NULL;
    CHECK_INT(tsl_broker_new(&bk, &cfg), TSL_EINVALID);
}

/* ------------------------------------------------------------------------
 * The rollout through the broker: staged activation, shadow mode, rollback
 * (the store's rollout, tsl_rollout_*, changed over HTTP or beside it)
 * ---------------------------------------------------------------------- */

/* London to its second server only; Paris sent to London (cross-site). */
static const char policy_v1[] =
    "site \"London\" { allow = { \"ts-lon-02\" } }\n"
    "site \"Paris\" { allow = { \"ts-lon-01\" } }\n";

/* The first server the broker sends for `ip` ("" when blocked or failed). */
static const char *first_for(const fixture *f, const char *ip)
{
    static char bufs[4][128];
    static int next;
    char path[128], *out = bufs[next];
    int status;
    next = (next + 1) % 4;
    snprintf(path, sizeof path, "/v1/task-servers?ip=%s", ip);
    const char *body = http_get_body(f->port, path, NULL, &status);
    const char *p = status == 200 ? strstr(body, "\"servers\":[{\"name\":\"") : NULL;
    out[0] = '\0';
    if (p) {
        p += strlen("\"servers\":[{\"name\":\"");
        const char *e = strchr(p, '"');
        snprintf(out, sizeof bufs[0], "%.*s", e ? (int)(e - p) : 0, p);
    }
    return out;
}

/* Waits (at most 3 s) until GET /v1/policy contains `want`. */
static bool wait_policy(const fixture *f, const char *want)
{
    for (int i = 0; i < 300; i++) {
        int status;
        const char *body = http_get_body(f->port, "/v1/policy", f->auth, &status);
        if (status == 200 && strstr(body, want))
            return true;
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    }
    return false;
}

TEST(broker__rollout_staged_london_shadow_counts_rollback_restores)
{
    fixture f;
    http_resp r;
    tsl_store *st = NULL;
    tsl_buf report = TSL_BUF_INIT;

    CHECK(start(&f, inventory, NULL));

    /* the default logic: each site on its least loaded server */
    CHECK_STR(first_for(&f, "10.10.3.17"), "ts-lon-01");
    CHECK_STR(first_for(&f, "10.20.1.1"), "ts-par-01");
    char madrid[128];
    snprintf(madrid, sizeof madrid, "%s", first_for(&f, "10.30.1.1"));

    /* upload: stored, not active */
    int s = http_do(f.port, "POST", "/v1/policy?author=alice&comment=canary", f.auth, policy_v1, &r);
    CHECK_INT(s, 201);
    CHECK_CONTAINS(r.body, "\"id\":1,");
    CHECK_CONTAINS(r.body, "\"active\":false");
    http_resp_free(&r);
    CHECK_STR(first_for(&f, "10.10.3.17"), "ts-lon-01");

    /* staged for London: London's answers change, nobody else's */
    s = http_do(f.port, "POST", "/v1/policy/1/activate?sites=London&author=alice", f.auth, "", &r);
    CHECK_INT(s, 200);
    CHECK_CONTAINS(r.body, "\"in_force\":\"default;London=sha256:");
    http_resp_free(&r);
    CHECK_STR(first_for(&f, "10.10.3.17"), "ts-lon-02");
    CHECK_STR(first_for(&f, "10.20.1.1"), "ts-par-01");
    CHECK_STR(first_for(&f, "10.30.1.1"), madrid);
    CHECK_INT(db_int(&f, "SELECT count(*) FROM rollout_sites WHERE site = 'London'"), 1);
    CHECK_INT(db_int(&f, "SELECT count(*) FROM policy_active WHERE policy_id IS NOT NULL"), 0);

    /* an unknown site is refused and changes nothing */
    s = http_do(f.port, "POST", "/v1/policy/1/activate?sites=Atlantis", f.auth, "", &r);
    CHECK_INT(s, 404);
    http_resp_free(&r);
    /* --require-dry-run without a recorded dry-run: refused */
    s = http_do(f.port, "POST", "/v1/policy/1/activate?require_dry_run=1", f.auth, "", &r);
    CHECK_INT(s, 422);
    http_resp_free(&r);
    CHECK_STR(first_for(&f, "10.20.1.1"), "ts-par-01");

    /* shadow version 1 everywhere, set beside the broker as `tsl policy
     * shadow 1` does: adopted by the broker's poll */
    CHECK_OK(tsl_store_open(&st, f.db, 0));
    CHECK_OK(tsl_rollout_shadow_set(st, "1", "alice", 0));
    tsl_store_free(st);
    st = NULL;
    CHECK(wait_policy(&f, "\"shadow\":\"sha256:"));

    /* answers unchanged; Paris's differ in the shadow, London's do not */
    for (int i = 0; i < 5; i++)
        CHECK_STR(first_for(&f, "10.20.1.1"), "ts-par-01");
    for (int i = 0; i < 3; i++)
        CHECK_STR(first_for(&f, "10.10.3.17"), "ts-lon-02");
    CHECK_STR(first_for(&f, "10.30.1.1"), madrid);
    CHECK_OK(tsl_broker_sync(f.b)); /* the writer flushes the tally */
    CHECK_INT(db_int(&f, "SELECT requests FROM rollout_shadow_counts"), 9);
    CHECK_INT(db_int(&f, "SELECT differ FROM rollout_shadow_counts"), 5);
    CHECK_INT(db_int(&f, "SELECT first FROM rollout_shadow_counts"), 5);
    CHECK_INT(db_int(&f, "SELECT cross_site FROM rollout_shadow_counts"), 5);
    CHECK_INT(db_int(&f, "SELECT count(*) FROM rollout_shadow_samples WHERE site = 'Paris'"), 5);
    CHECK_OK(tsl_store_open(&st, f.db, TSL_STORE_READONLY));
    CHECK_OK(tsl_rollout_shadow_report(&report, st, TSL_FORMAT_TEXT));
    tsl_store_free(st);
    st = NULL;
    CHECK_CONTAINS(report.ptr, "requests evaluated   9");
    CHECK_CONTAINS(report.ptr, "answered differently 5");
    CHECK_CONTAINS(report.ptr, "active: ts-par-01");
    CHECK_CONTAINS(report.ptr, "shadow: ts-lon-01");

    /* rollback: London back on its first server */
    s = http_do(f.port, "POST", "/v1/policy/rollback?author=bob", f.auth, "", &r);
    CHECK_INT(s, 200);
    CHECK_CONTAINS(r.body, "undid the activation of version 1 for London");
    CHECK_CONTAINS(r.body, "\"in_force\":\"default\"");
    http_resp_free(&r);
    CHECK_STR(first_for(&f, "10.10.3.17"), "ts-lon-01");
    CHECK_STR(first_for(&f, "10.20.1.1"), "ts-par-01");
    s = http_do(f.port, "POST", "/v1/policy/rollback", f.auth, "", &r);
    CHECK_INT(s, 409);
    http_resp_free(&r);

    tsl_buf_free(&report);
    stop(&f);
}

TEST(broker__rollout_everywhere_and_cli_rollback_beside_the_broker)
{
    fixture f;
    http_resp r;
    tsl_store *st = NULL;
    char what[256];

    CHECK(start(&f, inventory, NULL));
    int s = http_do(f.port, "POST", "/v1/policy", f.auth, policy_v1, &r);
    CHECK_INT(s, 201);
    http_resp_free(&r);
    s = http_do(f.port, "POST", "/v1/policy/1/activate", f.auth, "", &r);
    CHECK_INT(s, 200);
    http_resp_free(&r);
    CHECK_STR(first_for(&f, "10.10.3.17"), "ts-lon-02");
    CHECK_STR(first_for(&f, "10.20.1.1"), "ts-lon-01");
    /* the policy layer's active policy is the one the broker runs */
    CHECK_INT(db_int(&f, "SELECT policy_id FROM policy_active"), 1);

    /* `tsl policy rollback` beside the broker: picked up by the poll */
    CHECK_OK(tsl_store_open(&st, f.db, 0));
    CHECK_OK(tsl_rollout_rollback(st, "carol", what, sizeof what));
    tsl_store_free(st);
    CHECK(wait_policy(&f, "{\"active\":null,\"in_force\":\"default\",\"shadow\":null"));
    CHECK_STR(first_for(&f, "10.10.3.17"), "ts-lon-01");
    CHECK_STR(first_for(&f, "10.20.1.1"), "ts-par-01");
    stop(&f);
}

int main(void)
{
    RUN(broker__list_is_the_engines_json_plus_cache_header);
    RUN(broker__list_by_ipv6_multi_adapter_and_fallback_tier);
    RUN(broker__list_bad_input_names_the_problem);
    RUN(broker__keep_alive_serves_many_requests_on_one_connection);
    RUN(broker__heartbeat_changes_the_next_list_within_a_second);
    RUN(broker__stopped_server_leaves_and_running_rejoins);
    RUN(broker__heartbeat_from_a_new_name_is_refused);
    RUN(broker__heartbeat_bad_input_is_refused_and_nothing_written);
    RUN(broker__stale_servers_drop_out_by_the_clock);
    RUN(broker__registration_failure_demotes_the_server_for_that_client);
    RUN(broker__registration_success_records_assignment_and_fallback_report);
    RUN(broker__registration_bad_input_is_refused_and_nothing_written);
    RUN(broker__admin_endpoints_need_the_token_from_a_0600_file);
    RUN(broker__reports_in_three_formats);
    RUN(broker__explain_gives_every_step_and_the_result);
    RUN(broker__inventory_import_reloads_and_bad_input_changes_nothing);
    RUN(broker__metrics_count_requests_and_decisions);
    RUN(broker__header_limits_and_slow_clients);
    RUN(broker__decision_log_is_bounded_and_queryable);
    RUN(broker__plan_swaps_under_concurrent_requests_fail_none);
    RUN(broker__policy_upload_activate_rollback_and_list);
    RUN(broker__policy_file_at_start_is_stored_and_active_and_survives_a_restart);
    RUN(broker__policy_activations_under_concurrent_requests_fail_none);
    RUN(broker__stop_flushes_every_acknowledged_write);
    RUN(broker__starts_on_an_empty_store_and_refuses_a_bad_listen_address);
    RUN(broker__rollout_staged_london_shadow_counts_rollback_restores);
    RUN(broker__rollout_everywhere_and_cli_rollback_beside_the_broker);
    return tsl_test_main();
}
