/*
 * test_broker_rollout.c - the rollout through the real broker over HTTP on
 * 127.0.0.1 (port 0, read back): a policy uploaded, activated for London
 * only (London's answers change, Paris's and Madrid's do not), shadow mode
 * started beside the broker the way `tsl policy shadow` does (answers stay
 * the same, the differences are counted and flushed to the store, and
 * `shadow-report` shows them), and rollback restoring the answers.
 */
#include "broker.h"
#include "broker_client.h"
#include "harness.h"

#include <sqlite3.h>
#include <sys/stat.h>
#include <time.h>

static const char inventory[] =
    "{\"sites\": ["
    "  {\"name\": \"London\", \"subnets\": [\"10.10.0.0/16\"], \"country\": \"GB\"},"
    "  {\"name\": \"Paris\", \"subnets\": [\"10.20.0.0/16\"], \"country\": \"FR\"},"
    "  {\"name\": \"Madrid\", \"subnets\": [\"10.30.0.0/16\"], \"country\": \"ES\"}],"
    " \"task_servers\": ["
    "  {\"name\": \"ts-lon-01\", \"ip\": \"10.10.0.5\", \"sites\": [\"London\"],"
    "   \"capacity\": 1000, \"connections\": 250},"
    "  {\"name\": \"ts-lon-02\", \"ip\": \"10.10.0.6\", \"sites\": [\"London\"],"
    "   \"capacity\": 1000, \"connections\": 500},"
    "  {\"name\": \"ts-par-01\", \"ip\": \"10.20.0.5\", \"sites\": [\"Paris\"],"
    "   \"capacity\": 1000, \"connections\": 100},"
    "  {\"name\": \"ts-mad-01\", \"ip\": \"10.30.0.5\", \"sites\": [\"Madrid\"],"
    "   \"capacity\": 1000, \"connections\": 100}],"
    " \"clients\": ["
    "  {\"guid\": \"A1\", \"name\": \"LON-PC-0001\", \"ip\": \"10.10.3.17\"},"
    "  {\"guid\": \"P1\", \"name\": \"PAR-PC-0001\", \"ip\": \"10.20.1.1\"},"
    "  {\"guid\": \"M1\", \"name\": \"MAD-PC-0001\", \"ip\": \"10.30.1.1\"}]}";

/* London to its second server only; Paris sent to London (cross-site). */
static const char policy_v1[] =
    "site \"London\" { allow = { \"ts-lon-02\" } }\n"
    "site \"Paris\" { allow = { \"ts-lon-01\" } }\n";

typedef struct fixture {
    char dir[512], db[600];
    tsl_broker *b;
    int port;
    char auth[200];
} fixture;

static bool start(fixture *f, const char *name)
{
    tsl_store *st = NULL;
    tsl_broker_config cfg;
    memset(f, 0, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "%s/%s", tsl_test_tmpdir(), name);
    mkdir(f->dir, 0700);
    snprintf(f->db, sizeof f->db, "%s/store.db", f->dir);
    if (tsl_store_open(&st, f->db, 0) < 0 ||
        tsl_store_import_json(st, inventory, strlen(inventory), "fixture") < 0) {
        fprintf(stderr, "fixture: %s\n", tsl_error_last());
        tsl_store_free(st);
        return false;
    }
    tsl_store_free(st);
    tsl_broker_config_init(&cfg);
    cfg.db_path = f->db;
    cfg.listen = "127.0.0.1:0";
    cfg.threads = 2;
    cfg.refresh_ms = 50;
    cfg.flush_ms = 20;
    cfg.drain_ms = 20;
    cfg.log_level = TSL_LOG_ERROR;
    if (tsl_broker_new(&f->b, &cfg) < 0 || tsl_broker_start(f->b) < 0) {
        fprintf(stderr, "broker: %s\n", tsl_error_last());
        tsl_broker_free(f->b);
        f->b = NULL;
        return false;
    }
    f->port = tsl_broker_bound_port(f->b);
    snprintf(f->auth, sizeof f->auth, "Authorization: Bearer %s\r\n",
             tsl_broker_admin_token(f->b));
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

/* One integer from the store (a fresh read-only connection). */
static long long db_int(const fixture *f, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    long long v = -999;
    if (sqlite3_open_v2(f->db, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_type(st, 0) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
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

TEST(broker_rollout__staged_london_shadow_counts_rollback_restores)
{
    fixture f;
    http_resp r;
    tsl_store *st = NULL;
    tsl_buf report = TSL_BUF_INIT;

    CHECK(start(&f, "rollout"));

    /* the default logic: each site on its least loaded server */
    CHECK_STR(first_for(&f, "10.10.3.17"), "ts-lon-01");
    CHECK_STR(first_for(&f, "10.20.1.1"), "ts-par-01");
    CHECK_STR(first_for(&f, "10.30.1.1"), "ts-mad-01");

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
    CHECK_STR(first_for(&f, "10.30.1.1"), "ts-mad-01");
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
    CHECK_STR(first_for(&f, "10.30.1.1"), "ts-mad-01");
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

TEST(broker_rollout__activation_everywhere_and_cli_rollback_beside_the_broker)
{
    fixture f;
    http_resp r;
    tsl_store *st = NULL;
    char what[256];

    CHECK(start(&f, "everywhere"));
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
    RUN(broker_rollout__staged_london_shadow_counts_rollback_restores);
    RUN(broker_rollout__activation_everywhere_and_cli_rollback_beside_the_broker);
    return tsl_test_main();
}
