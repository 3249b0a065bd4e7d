/*
 * test_broker_writes.c - what Task Servers, CTAs and admins write through
 * the broker, against the real broker on 127.0.0.1 port 0 and the real
 * SQLite file:
 *
 *   - an acknowledged heartbeat or registration is in the store: the broker
 *     answers only after the transaction holding it has committed, and a
 *     `tsl serve` killed with SIGKILL under load from several threads keeps
 *     every write it acknowledged;
 *   - what is acknowledged is exactly what is stored (one validation);
 *   - Task Servers authenticate, report load and service state only, new
 *     names wait for an admin's approval, floods are bounded;
 *   - strings reaching JSON are valid UTF-8, CSV cells never run as formulas;
 *   - a staged activation whose site list is blank is refused;
 *   - `tsl list` prints the load of a server at the integer limits.
 */
#include "broker.h"
#include "broker_client.h"
#include "harness.h"

#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#define T0 1800000000LL

static const char inventory[] =
    "{\"sites\": ["
    "  {\"name\": \"London\", \"subnets\": [\"10.10.0.0/16\"], \"country\": \"GB\"},"
    "  {\"name\": \"Paris\", \"subnets\": [\"10.20.0.0/16\"], \"country\": \"FR\"}],"
    " \"task_servers\": ["
    "  {\"name\": \"ts-lon-01\", \"host\": \"ts-lon-01.corp\", \"ip\": \"10.10.0.5\", \"sites\": [\"London\"],"
    "   \"capacity\": 1000, \"connections\": 250, \"response_ms\": 12},"
    "  {\"name\": \"ts-lon-02\", \"ip\": \"10.10.0.6\", \"sites\": [\"London\"], \"capacity\": 1000, \"connections\": 500},"
    "  {\"name\": \"ts-par-01\", \"ip\": \"10.20.0.5\", \"sites\": [\"Paris\"], \"capacity\": 1000, \"connections\": 100}],"
    " \"clients\": ["
    "  {\"guid\": \"A1\", \"name\": \"LON-PC-0001\", \"ip\": \"10.10.3.17\"},"
    "  {\"guid\": \"P1\", \"name\": \"PAR-PC-0001\", \"ip\": \"10.20.1.1\"}]}";

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
    char auth[200];    /* "Authorization: Bearer ADMIN\r\n" */
    char ts_auth[200]; /* "Authorization: Bearer TASK-SERVER\r\n" */
} fixture;

static int fixture_count;

static bool make_store(fixture *f, const char *inv)
{
    tsl_store *st = NULL;
    memset(f, 0, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "%s/w%d", tsl_test_tmpdir(), fixture_count++);
    mkdir(f->dir, 0700);
    snprintf(f->db, sizeof f->db, "%s/store.db", f->dir);
    if (tsl_store_open(&st, f->db, 0) < 0 ||
        (inv && tsl_store_import_json(st, inv, strlen(inv), "fixture") < 0)) {
        fprintf(stderr, "fixture: %s\n", tsl_error_last());
        tsl_store_free(st);
        return false;
    }
    tsl_store_free(st);
    return true;
}

/* A fresh store with `inv` and a running broker; cfg tweaks through `tune`. */
static bool start(fixture *f, const char *inv, void (*tune)(tsl_broker_config *))
{
    tsl_broker_config cfg;
    if (!make_store(f, inv))
        return false;
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

/* One integer from the store (a fresh read-only connection); -999 when none. */
static long long db_int(const char *dbpath, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    long long v = -999;
    if (sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_type(st, 0) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* ------------------------------------------------------------------------
 * Blank staged activation
 * ---------------------------------------------------------------------- */

TEST(writes__activate_with_a_blank_site_list_is_refused)
{
    fixture f;
    http_resp r;
    static const char *const queries[] = {"sites=", "sites=,", "sites=%20", "sites=,%20,,",
                                          "sites=+"};
    CHECK(start(&f, inventory, NULL));
    for (size_t i = 0; i < sizeof queries / sizeof *queries; i++) {
        char path[128];
        snprintf(path, sizeof path, "/v1/policy/1/activate?%s", queries[i]);
        int s = http_do(f.port, "POST", path, f.auth, "", &r);
        if (s != 400 || !r.body ||
            strcmp(r.body, "{\"error\":\"parameter \\\"sites\\\" names no site: give "
                           "sites=London,Paris for a staged activation, or leave it out "
                           "to activate everywhere\"}\n") != 0) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s: %d %s", path, s, r.body ? r.body : "(none)");
            http_resp_free(&r);
            stop(&f);
            FAILF_("%s", msg);
        }
        http_resp_free(&r);
    }
    stop(&f);
    /* nothing was activated */
    CHECK_INT(db_int(f.db, "SELECT count(*) FROM rollout_history"), 0);
}

/* ------------------------------------------------------------------------
 * tsl list at the integer limits
 * ---------------------------------------------------------------------- */

TEST(writes__list_text_prints_load_at_the_int64_limit)
{
    fixture f;
    char *out = NULL;
    static const char inv[] =
        "{\"sites\": [{\"name\": \"London\", \"subnets\": [\"10.10.0.0/16\"]}],"
        " \"task_servers\": ["
        "  {\"name\": \"ts-big\", \"sites\": [\"London\"], \"capacity\": 1,"
        "   \"connections\": 9223372036854775807},"
        "  {\"name\": \"ts-odd\", \"sites\": [\"London\"], \"capacity\": 9223372036854775807,"
        "   \"connections\": 9223372036854775806}]}";
    CHECK(make_store(&f, inv));
    int rc = tsl_test_sh(&out, true, "'%s' --db '%s' list --ip 10.10.0.1", TSL_BIN, f.db);
    CHECK_INT(rc, 0);
    CHECK_CONTAINS(out, "9223372036854775807/1 (922337203685477580700%)");
    CHECK_CONTAINS(out, "9223372036854775806/9223372036854775807 (99%)");
    free(out);
}

/* ------------------------------------------------------------------------
 * Group commit: kill -9 under load loses no acknowledged write
 * ---------------------------------------------------------------------- */

#define KILL_THREADS 4
#define KILL_MAX 200000

typedef struct loader {
    int port, index;
    const char *ts_auth; /* the Task Server credential header */
    _Atomic bool *stop;
    _Atomic long acked_regs;  /* registrations K<index>-0 .. acked_regs-1 ... */
    unsigned char *reg_acked; /* [seq]: 1 when acknowledged */
    long last_hb;             /* the last acknowledged heartbeat's connections */
    long sent;
    char errors[256];
} loader;

static void *load_main(void *arg)
{
    loader *l = arg;
    char path[128], body[256];
    http_resp r;
    int fd = http_connect(l->port);
    l->last_hb = -1;
    for (long seq = 0; fd >= 0 && seq < KILL_MAX && !atomic_load(l->stop); seq++) {
        bool hb = seq % 2 == 0;
        if (hb) {
            snprintf(path, sizeof path, "/v1/task-servers/ts-k%d/heartbeat", l->index);
            snprintf(body, sizeof body, "{\"connections\":%ld}", seq);
        } else {
            snprintf(path, sizeof path, "/v1/clients/K%d-%ld/registration", l->index, seq);
            snprintf(body, sizeof body, "{\"server\":\"ts-par-01\",\"ok\":true}");
        }
        l->sent++;
        if (http_on(fd, "POST", path, hb ? l->ts_auth : NULL, body, strlen(body), &r) < 0)
            break; /* the broker is gone */
        if (r.status == 200) {
            if (hb)
                l->last_hb = seq;
            else
                l->reg_acked[seq] = 1;
        } else if (!l->errors[0]) {
            snprintf(l->errors, sizeof l->errors, "%s: %d %s", path, r.status,
                     r.body ? r.body : "");
        }
        http_resp_free(&r);
    }
    if (fd >= 0)
        close(fd);
    return NULL;
}

/* Starts `tsl serve` (stderr to `log`); its pid, the port in *port. */
static pid_t serve_child(const fixture *f, const char *log, const char *extra, int *port)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "exec '%s' --db '%s' serve --listen 127.0.0.1:0 --threads 2 --log-level info %s "
             "2>'%s' >/dev/null",
             TSL_BIN, f->db, extra ? extra : "", log);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    *port = 0;
    for (int i = 0; pid > 0 && i < 3000 && !*port; i++) { /* 30 s on a loaded machine */
        char *text = tsl_test_read(log, NULL);
        const char *p = text ? strstr(text, " port ") : NULL;
        if (p)
            *port = atoi(p + 6);
        free(text);
        if (!*port)
            usleep(10000);
    }
    return pid;
}

TEST(writes__sigkill_under_load_keeps_every_acknowledged_write)
{
    fixture f;
    loader l[KILL_THREADS];
    pthread_t th[KILL_THREADS];
    _Atomic bool stop_flag = false;
    char log[700], inv[4096];
    int port = 0, n = 0;

    n = snprintf(inv, sizeof inv,
                 "{\"sites\": [{\"name\": \"Paris\", \"subnets\": [\"10.20.0.0/16\"]}],"
                 " \"task_servers\": [{\"name\": \"ts-par-01\", \"sites\": [\"Paris\"]}");
    for (int i = 0; i < KILL_THREADS; i++)
        n += snprintf(inv + n, sizeof inv - (size_t)n,
                      ", {\"name\": \"ts-k%d\", \"sites\": [\"Paris\"]}", i);
    snprintf(inv + n, sizeof inv - (size_t)n, "]}");
    CHECK(make_store(&f, inv));
    snprintf(log, sizeof log, "%s/serve.log", f.dir);
    pid_t pid = serve_child(&f, log, NULL, &port);
    CHECK(pid > 0);
    if (!port) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        FAILF_("tsl serve did not start: %s", tsl_test_read(log, NULL));
    }
    snprintf(f.ts_auth, sizeof f.ts_auth, "%s", "");
    for (int i = 0; i < KILL_THREADS; i++) {
        memset(&l[i], 0, sizeof l[i]);
        l[i].port = port;
        l[i].index = i;
        l[i].ts_auth = f.ts_auth;
        l[i].stop = &stop_flag;
        CHECK((l[i].reg_acked = calloc(KILL_MAX, 1)) != NULL);
        CHECK_INT(pthread_create(&th[i], NULL, load_main, &l[i]), 0);
    }
    /* under load for a while: at least 200 requests sent by each thread,
     * and at least a second */
    for (int t = 0; t < 3000; t++) {
        bool enough = t >= 100;
        for (int i = 0; i < KILL_THREADS; i++)
            enough = enough && l[i].sent >= 200;
        if (enough)
            break;
        usleep(10000);
    }
    kill(pid, SIGKILL);
    int wst = 0;
    waitpid(pid, &wst, 0);
    atomic_store(&stop_flag, true);
    for (int i = 0; i < KILL_THREADS; i++)
        pthread_join(th[i], NULL);
    CHECK(WIFSIGNALED(wst) && WTERMSIG(wst) == SIGKILL);

    /* reopen the store: every acknowledged write is there */
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    long acked = 0, missing = 0, hb_missing = 0;
    char first_missing[128] = "";
    CHECK(sqlite3_open_v2(f.db, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK);
    CHECK(sqlite3_prepare_v2(db, "SELECT count(*) FROM registrations WHERE client = ?1", -1, &st,
                             NULL) == SQLITE_OK);
    for (int i = 0; i < KILL_THREADS; i++) {
        for (long seq = 0; seq < KILL_MAX; seq++) {
            if (!l[i].reg_acked[seq])
                continue;
            char guid[64];
            snprintf(guid, sizeof guid, "K%d-%ld", i, seq);
            sqlite3_bind_text(st, 1, guid, -1, SQLITE_TRANSIENT);
            acked++;
            if (sqlite3_step(st) != SQLITE_ROW || sqlite3_column_int(st, 0) != 1) {
                if (!missing++)
                    snprintf(first_missing, sizeof first_missing, "%s", guid);
            }
            sqlite3_reset(st);
        }
        free(l[i].reg_acked);
    }
    sqlite3_finalize(st);
    CHECK(sqlite3_prepare_v2(db, "SELECT connections FROM task_servers WHERE name = ?1", -1, &st,
                             NULL) == SQLITE_OK);
    for (int i = 0; i < KILL_THREADS; i++) {
        char name[32];
        snprintf(name, sizeof name, "ts-k%d", i);
        sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
        /* the last acknowledged heartbeat, or a later one that committed */
        if (l[i].last_hb >= 0 && (sqlite3_step(st) != SQLITE_ROW ||
                                  sqlite3_column_int64(st, 0) < l[i].last_hb))
            hb_missing++;
        sqlite3_reset(st);
        if (l[i].errors[0])
            fprintf(stderr, "thread %d: %s\n", i, l[i].errors);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    fprintf(stderr, "kill -9: %ld registrations acknowledged, %ld missing\n", acked, missing);
    CHECK(acked >= 100);
    if (missing || hb_missing)
        FAILF_("%ld of %ld acknowledged registrations (first %s) and %ld heartbeats are not in "
               "the store",
               missing, acked, first_missing, hb_missing);
}

int main(void)
{
    (void)http_get_body;
    RUN(writes__activate_with_a_blank_site_list_is_refused);
    RUN(writes__list_text_prints_load_at_the_int64_limit);
    RUN(writes__sigkill_under_load_keeps_every_acknowledged_write);
    return tsl_test_main();
}
