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
#include "common.h"
#include "harness.h"

#include <jansson.h>
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

/* One row's columns joined with '|' (a fresh connection), in a static buffer. */
static const char *db_row(const char *dbpath, const char *sql)
{
    static char buf[1024];
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    snprintf(buf, sizeof buf, "<no row>");
    if (sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
        size_t n = 0;
        buf[0] = '\0';
        for (int i = 0; i < sqlite3_column_count(st) && n < sizeof buf; i++) {
            const unsigned char *t = sqlite3_column_text(st, i);
            n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s", i ? "|" : "",
                                  t ? (const char *)t : "");
        }
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return buf;
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
    /* every thread heartbeats from 127.0.0.1: no per-peer limit here */
    pid_t pid = serve_child(&f, log, "--heartbeat-rate 0", &port);
    CHECK(pid > 0);
    if (!port) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        FAILF_("tsl serve did not start: %s", tsl_test_read(log, NULL));
    }
    char tpath[700], token[128] = "";
    snprintf(tpath, sizeof tpath, "%s.ts-token", f.db);
    char *tok = tsl_test_read(tpath, NULL);
    CHECK(tok && sscanf(tok, "%127s", token) == 1);
    free(tok);
    snprintf(f.ts_auth, sizeof f.ts_auth, "Authorization: Bearer %s\r\n", token);
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
            FAILF_("thread %d: %s", i, l[i].errors);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    fprintf(stderr, "kill -9: %ld registrations acknowledged, %ld missing\n", acked, missing);
    CHECK(acked >= 100);
    for (int i = 0; i < KILL_THREADS; i++)
        CHECK(l[i].last_hb >= 0);
    if (missing || hb_missing)
        FAILF_("%ld of %ld acknowledged registrations (first %s) and %ld heartbeats are not in "
               "the store",
               missing, acked, first_missing, hb_missing);
}

/* A heartbeat with the Task Servers' token. */
static int beat(const fixture *f, const char *name, const char *body, http_resp *r)
{
    char path[300];
    snprintf(path, sizeof path, "/v1/task-servers/%s/heartbeat", name);
    return http_do(f->port, "POST", path, f->ts_auth, body, r);
}

/* The names of a list's servers, "a,b,c", in a static rotating buffer. */
static const char *names_of(const char *json)
{
    static char bufs[8][1024];
    static int next;
    char *out = bufs[next];
    size_t n = 0;
    next = (next + 1) % 8;
    out[0] = '\0';
    for (const char *p = json ? strstr(json, "\"servers\":[") : NULL; p;) {
        p = strstr(p, "{\"name\":\"");
        if (!p)
            break;
        p += 9;
        const char *e = strchr(p, '"');
        if (!e)
            break;
        n += (size_t)snprintf(out + n, 1024 - n, "%s%.*s", n ? "," : "", (int)(e - p), p);
        p = e;
    }
    return out;
}

/* ------------------------------------------------------------------------
 * Task Servers authenticate; a heartbeat reports load and state only
 * ---------------------------------------------------------------------- */

TEST(writes__heartbeat_needs_the_task_server_token)
{
    fixture f;
    http_resp r;
    char admin_as_ts[256];
    CHECK(start(&f, inventory, NULL));
    snprintf(admin_as_ts, sizeof admin_as_ts, "%s", f.auth);
    static const char body[] = "{\"service\":\"stopped\"}";
    const char *path = "/v1/task-servers/ts-lon-01/heartbeat";
    int none = http_do(f.port, "POST", path, NULL, body, &r);
    char www[128] = "";
    http_header(&r, "WWW-Authenticate", www, sizeof www);
    bool none_json = r.body && strcmp(r.body, "{\"error\":\"a heartbeat needs the task server "
                                              "token: send Authorization: Bearer TOKEN (the "
                                              "token is in the broker's task server token "
                                              "file)\"}\n") == 0;
    http_resp_free(&r);
    int wrong = http_do(f.port, "POST", path, "Authorization: Bearer 0123456789abcdef0123\r\n",
                        body, &r);
    http_resp_free(&r);
    int admin = http_do(f.port, "POST", path, admin_as_ts, body, &r); /* not the admin's */
    http_resp_free(&r);
    CHECK_OK(tsl_broker_sync(f.b));
    long long before = db_int(f.db, "SELECT count(*) FROM task_servers WHERE service = 'stopped'"
                                    " OR last_heartbeat IS NOT NULL");
    int right = beat(&f, "ts-lon-01", body, &r);
    http_resp_free(&r);
    stop(&f);
    CHECK_INT(none, 401);
    CHECK_STR(www, "Bearer realm=\"tsl task servers\"");
    CHECK(none_json);
    CHECK_INT(wrong, 401);
    CHECK_INT(admin, 401);
    CHECK_INT(before, 0); /* nothing written for a refused heartbeat */
    CHECK_INT(right, 200);
    CHECK_INT(db_int(f.db, "SELECT service = 'stopped' FROM task_servers WHERE name = 'ts-lon-01'"), 1);
    /* the token file is 0600, and not the admin's */
    struct stat st;
    char tpath[700];
    snprintf(tpath, sizeof tpath, "%s.ts-token", f.db);
    CHECK_INT(stat(tpath, &st), 0);
    CHECK_INT(st.st_mode & 0777, 0600);
}

TEST(writes__heartbeat_cannot_change_host_ip_or_sites)
{
    fixture f;
    http_resp r;
    static const struct {
        const char *body;
        int status;
        const char *error;
    } cases[] = {
        {"{\"ip\":\"10.10.0.99\",\"connections\":1}", 409,
         "{\"error\":\"field \\\"ip\\\": \\\"10.10.0.99\\\" is not what the inventory has "
         "(\\\"10.10.0.5\\\"): a heartbeat reports load and service state only; a Task "
         "Server's host, ip and sites change through import or the admin API\"}\n"},
        {"{\"host\":\"evil.example\"}", 409, "{\"error\":\"field \\\"host\\\": \\\"evil.example\\\""},
        {"{\"sites\":[\"Paris\"]}", 409,
         "{\"error\":\"field \\\"sites\\\": \\\"Paris\\\" is not what the inventory has (\\\"London\\\")"},
        {"{\"sites\":[\"London\",\"Paris\"]}", 409, "{\"error\":\"field \\\"sites\\\""},
        /* the rule import applies, before anything is acknowledged */
        {"{\"sites\":[\"Paris\",\"paris\"]}", 400,
         "{\"error\":\"sites[1] \\\"paris\\\" is listed twice (as sites[0])\"}\n"},
    };
    CHECK(start(&f, inventory, NULL));
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int s = beat(&f, "ts-lon-01", cases[i].body, &r);
        bool ok = s == cases[i].status && r.body &&
                  strncmp(r.body, cases[i].error, strlen(cases[i].error)) == 0;
        if (!ok) {
            char msg[1024];
            snprintf(msg, sizeof msg, "%s: %d %s", cases[i].body, s, r.body ? r.body : "(none)");
            http_resp_free(&r);
            stop(&f);
            FAILF_("%s, expected %d %s", msg, cases[i].status, cases[i].error);
        }
        http_resp_free(&r);
    }
    CHECK_OK(tsl_broker_sync(f.b));
    long long written = db_int(f.db, "SELECT count(*) FROM task_servers WHERE last_heartbeat IS NOT NULL");
    /* the inventory's own identity may be sent: it changes nothing */
    int same = beat(&f, "TS-LON-01", "{\"host\":\"TS-LON-01.corp\",\"ip\":\"10.10.0.5\","
                                     "\"sites\":[\"london\"],\"connections\":7}", &r);
    http_resp_free(&r);
    CHECK_OK(tsl_broker_sync(f.b));
    int s;
    const char *list = http_get_body(f.port, "/v1/task-servers?ip=10.10.3.17", NULL, &s);
    stop(&f);
    CHECK_INT(written, 0);
    CHECK_INT(same, 200);
    CHECK_CONTAINS(list, "{\"name\":\"ts-lon-01\",\"host\":\"ts-lon-01.corp\",\"ip\":\"10.10.0.5\","
                         "\"site\":\"London\"");
    CHECK_STR(db_row(f.db, "SELECT ip, host, connections FROM task_servers WHERE name = 'ts-lon-01'"),
              "10.10.0.5|ts-lon-01.corp|7");
}

/* ------------------------------------------------------------------------
 * New names: refused, or pending until an admin approves
 * ---------------------------------------------------------------------- */

static void registration_on(tsl_broker_config *c)
{
    c->heartbeat_registration = true;
    c->max_servers = 6; /* 3 in the inventory */
}

TEST(writes__new_name_waits_for_approval_and_enters_no_list_before)
{
    fixture f;
    http_resp r;
    int s;
    CHECK(start(&f, inventory, registration_on));
    /* the hijack: a new name claiming London's tier 0 */
    int hs = beat(&f, "ts-lon-evil", "{\"host\":\"evil.example\",\"ip\":\"10.10.0.66\","
                                     "\"sites\":[\"London\"],\"connections\":0}", &r);
    char body[256];
    snprintf(body, sizeof body, "%s", r.body ? r.body : "");
    http_resp_free(&r);
    CHECK_OK(tsl_broker_sync(f.b));
    const char *l1 = names_of(http_get_body(f.port, "/v1/task-servers?ip=10.10.3.17", NULL, &s));
    char list1[256];
    snprintf(list1, sizeof list1, "%s", l1);
    /* a second heartbeat from it: still pending, still 202 */
    int hs2 = beat(&f, "ts-lon-evil", "{\"connections\":0}", &r);
    http_resp_free(&r);
    const char *pending = http_get_body(f.port, "/v1/task-servers/pending", f.auth, &s);
    char pend[1024];
    snprintf(pend, sizeof pend, "%s", pending);
    int ps = s;
    /* the admin approves it: now it is in London's list */
    int as = http_do(f.port, "POST", "/v1/task-servers/ts-lon-evil/approve?author=alice", f.auth,
                     "", &r);
    char abody[256];
    snprintf(abody, sizeof abody, "%s", r.body ? r.body : "");
    http_resp_free(&r);
    const char *l2 = names_of(http_get_body(f.port, "/v1/task-servers?ip=10.10.3.17", NULL, &s));
    char list2[256];
    snprintf(list2, sizeof list2, "%s", l2);
    int again = http_do(f.port, "POST", "/v1/task-servers/ts-lon-evil/approve", f.auth, "", &r);
    http_resp_free(&r);
    stop(&f);
    CHECK_INT(hs, 202);
    CHECK_STR(body, "{\"server\":\"ts-lon-evil\",\"new\":true,\"pending\":true,\"at\":1800000000}\n");
    CHECK_STR(list1, "ts-lon-01,ts-lon-02");
    CHECK_INT(hs2, 202);
    CHECK_INT(ps, 200);
    CHECK_CONTAINS(pend, "{\"name\":\"ts-lon-evil\",\"host\":\"evil.example\",\"ip\":\"10.10.0.66\","
                         "\"sites\":[\"London\"],\"requested_at\":1800000000,\"requested_by\":"
                         "\"127.0.0.1\",\"last_heartbeat\":1800000000}");
    CHECK_INT(as, 200);
    CHECK_STR(abody, "{\"server\":\"ts-lon-evil\",\"approved\":true}\n");
    CHECK_STR(list2, "ts-lon-evil,ts-lon-01,ts-lon-02");
    CHECK_INT(again, 404);
    CHECK_INT(db_int(f.db, "SELECT count(*) FROM server_approvals WHERE server = 'ts-lon-evil'"
                           " AND author = 'alice' AND action = 'approved'"), 1);
}

TEST(writes__cli_lists_and_approves_pending_servers_beside_the_broker)
{
    fixture f;
    http_resp r;
    char *out = NULL;
    int s;
    CHECK(start(&f, inventory, registration_on));
    CHECK_INT(beat(&f, "ts-par-09", "{\"sites\":[\"Paris\"],\"connections\":0}", &r), 202);
    http_resp_free(&r);
    CHECK_INT(beat(&f, "ts-par-10", "{\"sites\":[\"Paris\"]}", &r), 202);
    http_resp_free(&r);
    CHECK_OK(tsl_broker_sync(f.b));
    int rc = tsl_test_sh(&out, true, "'%s' --db '%s' servers pending --csv", TSL_BIN, f.db);
    CHECK_INT(rc, 0);
    CHECK_STR(out, "name,host,ip,sites,requested_at,requested_by,last_heartbeat\n"
                   "ts-par-09,,,Paris,2027-01-15T08:00:00Z,127.0.0.1,1800000000\n"
                   "ts-par-10,,,Paris,2027-01-15T08:00:00Z,127.0.0.1,1800000000\n");
    free(out);
    rc = tsl_test_sh(&out, true, "'%s' --db '%s' servers approve ts-par-09 --author bob", TSL_BIN, f.db);
    CHECK_INT(rc, 0);
    free(out);
    rc = tsl_test_sh(&out, true, "'%s' --db '%s' servers reject ts-par-10", TSL_BIN, f.db);
    CHECK_INT(rc, 0);
    free(out);
    rc = tsl_test_sh(&out, true, "'%s' --db '%s' servers approve ts-nobody", TSL_BIN, f.db);
    CHECK_INT(rc, 2);
    CHECK_CONTAINS(out, "no task server \"ts-nobody\" is waiting for approval");
    free(out);
    /* the broker adopts the approval within a second or two (it polls) */
    bool seen = false;
    for (int i = 0; i < 500 && !seen; i++) { /* 10 s on a loaded machine */
        const char *l = names_of(http_get_body(f.port, "/v1/task-servers?ip=10.20.1.1", NULL, &s));
        seen = strstr(l, "ts-par-09") != NULL;
        if (!seen)
            usleep(20000);
    }
    const char *l = names_of(http_get_body(f.port, "/v1/task-servers?ip=10.20.1.1", NULL, &s));
    char list[256];
    snprintf(list, sizeof list, "%s", l);
    stop(&f);
    CHECK(seen);
    CHECK(strstr(list, "ts-par-10") == NULL);
    CHECK_INT(db_int(f.db, "SELECT count(*) FROM task_servers WHERE name = 'ts-par-10'"), 0);
}

/* ------------------------------------------------------------------------
 * Floods are bounded
 * ---------------------------------------------------------------------- */

static void tight_limits(tsl_broker_config *c)
{
    c->heartbeat_registration = true;
    c->heartbeat_rate = 0.001; /* no refill within the test */
    c->heartbeat_burst = 6;
    c->max_servers = 5; /* 3 in the inventory: room for 2 pending */
    c->registration_rate = 0.001;
    c->registration_burst = 3;
}

TEST(writes__floods_get_429_per_peer_per_client_and_past_the_server_cap)
{
    fixture f;
    http_resp r;
    int st[8];
    memset(st, 0, sizeof st);
    char retry[32] = "", err429[512] = "";
    CHECK(start(&f, inventory, tight_limits));
    /* the server cap: two pending fit, the third new name does not */
    st[0] = beat(&f, "ts-new-1", "{}", &r);
    http_resp_free(&r);
    st[1] = beat(&f, "ts-new-2", "{}", &r);
    http_resp_free(&r);
    CHECK_OK(tsl_broker_sync(f.b));
    st[2] = beat(&f, "ts-new-3", "{}", &r);
    snprintf(err429, sizeof err429, "%s", r.body ? r.body : "");
    http_resp_free(&r);
    /* at the cap, a pending server still reports (it is counted already) */
    st[6] = beat(&f, "ts-new-1", "{\"connections\":3}", &r);
    http_resp_free(&r);
    /* the per-peer bucket (6) is spent: the next heartbeat of a known
     * server gets 429 too */
    st[3] = beat(&f, "ts-lon-01", "{}", &r);
    http_resp_free(&r);
    st[4] = beat(&f, "ts-lon-01", "{}", &r);
    http_resp_free(&r);
    st[5] = beat(&f, "ts-lon-01", "{}", &r);
    http_header(&r, "Retry-After", retry, sizeof retry);
    char hb429[512];
    snprintf(hb429, sizeof hb429, "%s", r.body ? r.body : "");
    http_resp_free(&r);
    /* registration reports: 3 per client, then 429; another client is not affected,
     * nor is the same one spelled in other letters a new client */
    int regs[5];
    for (int i = 0; i < 4; i++) {
        regs[i] = http_do(f.port, "POST", i == 3 ? "/v1/clients/a1/registration"
                                                 : "/v1/clients/A1/registration",
                          NULL, "{\"server\":\"ts-lon-01\",\"ok\":true}", &r);
        http_resp_free(&r);
    }
    regs[4] = http_do(f.port, "POST", "/v1/clients/P1/registration", NULL,
                      "{\"server\":\"ts-par-01\",\"ok\":true}", &r);
    http_resp_free(&r);
    CHECK_OK(tsl_broker_sync(f.b));
    stop(&f);
    CHECK_INT(st[0], 202);
    CHECK_INT(st[1], 202);
    CHECK_INT(st[2], 429);
    CHECK_INT(st[6], 202);
    CHECK_CONTAINS(err429, "the broker has as many task servers as it takes (--max-servers 5, "
                           "known and pending)");
    CHECK_INT(st[3], 200);
    CHECK_INT(st[4], 200);
    CHECK_INT(st[5], 429);
    CHECK(atoi(retry) >= 1);
    CHECK_CONTAINS(hb429, "{\"error\":\"too many heartbeats from this address; try again in ");
    CHECK_INT(regs[0], 200);
    CHECK_INT(regs[1], 200);
    CHECK_INT(regs[2], 200);
    CHECK_INT(regs[3], 429);
    CHECK_INT(regs[4], 200);
    CHECK_INT(db_int(f.db, "SELECT count(*) FROM task_servers"), 5);
    CHECK_INT(db_int(f.db, "SELECT count(*) FROM registrations"), 4);
}

/* ------------------------------------------------------------------------
 * Strings are safe where they end up
 * ---------------------------------------------------------------------- */

/* true when `body` is one JSON object (so valid UTF-8: jansson checks). */
static bool is_json(const char *body)
{
    json_error_t e;
    json_t *doc = body ? json_loads(body, 0, &e) : NULL;
    bool ok = doc && json_is_object(doc);
    json_decref(doc);
    return ok;
}

TEST(writes__invalid_utf8_is_refused_at_the_edge_and_never_reaches_json)
{
    fixture f;
    http_resp r;
    static const struct {
        const char *method, *path;
        bool ts, admin;
        int status;
        const char *error;
    } cases[] = {
        {"GET", "/v1/task-servers?ip=10.10.3.17&client=%FF%FE", false, false, 400,
         "{\"error\":\"parameter \\\"client\\\" must be 1 to 255 printable characters (it is "
         "not valid UTF-8)\"}\n"},
        {"GET", "/v1/task-servers?ip=10.10.3.17&department=%C0%AF", false, false, 400,
         "{\"error\":\"parameter \\\"department\\\" must be 1 to 255 printable characters (it "
         "is not valid UTF-8)\"}\n"},
        {"GET", "/v1/task-servers?ip=10.10.3.17&task=%ED%A0%80", false, false, 400, NULL},
        {"POST", "/v1/task-servers/%FF%FE/heartbeat", true, false, 400,
         "{\"error\":\"a task server name is 1 to 255 printable characters (it is not valid "
         "UTF-8)\"}\n"},
        {"POST", "/v1/clients/%F5%80%80%80/registration", false, false, 400,
         "{\"error\":\"a client GUID is 1 to 128 printable characters (it is not valid UTF-8)\"}\n"},
        {"POST", "/v1/policy/1/activate?comment=%FF", false, true, 400,
         "{\"error\":\"parameter \\\"comment\\\" is not valid UTF-8\"}\n"},
        {"POST", "/v1/policy?name=%FFx.lua", false, true, 400,
         "{\"error\":\"parameter \\\"name\\\" is not valid UTF-8\"}\n"},
        {"GET", "/v1/explain?ip=10.10.3.17&client=%80", false, true, 400, NULL},
        /* echoed in a message: replaced, never raw */
        {"GET", "/v1/reports/%FF%FE", false, true, 404, NULL},
        {"GET", "/v1/task-servers?ip=%FF", false, false, 400, NULL},
        {"GET", "/v1/no-such/%FF", false, false, 404, NULL},
    };
    CHECK(start(&f, inventory, NULL));
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int s = http_do(f.port, cases[i].method, cases[i].path,
                        cases[i].ts ? f.ts_auth : cases[i].admin ? f.auth : NULL,
                        strcmp(cases[i].method, "POST") ? NULL : "{}", &r);
        bool ok = s == cases[i].status && is_json(r.body) &&
                  (!cases[i].error || strcmp(r.body, cases[i].error) == 0);
        if (!ok) {
            char msg[1024];
            snprintf(msg, sizeof msg, "%s %s: %d %s", cases[i].method, cases[i].path, s,
                     r.body ? r.body : "(none)");
            http_resp_free(&r);
            stop(&f);
            FAILF_("%s", msg);
        }
        http_resp_free(&r);
    }
    /* well-formed UTF-8 is fine */
    int s;
    const char *ok = http_get_body(f.port, "/v1/task-servers?ip=10.10.3.17&department=Caf%C3%A9",
                                   NULL, &s);
    bool ok_json = is_json(ok);
    CHECK_OK(tsl_broker_sync(f.b));
    stop(&f);
    CHECK_INT(s, 200);
    CHECK(ok_json);
    CHECK_INT(db_int(f.db, "SELECT count(*) FROM task_servers WHERE last_heartbeat IS NOT NULL"), 0);
    CHECK_INT(db_int(f.db, "SELECT count(*) FROM registrations"), 0);
}

static const char formula_estate[] =
    "{\"sites\":[{\"name\":\"@SUM(A1)\",\"subnets\":[\"10.1.0.0/16\"]}],"
    " \"task_servers\":[{\"name\":\"=HYPERLINK(\\\"http://evil\\\",\\\"x\\\")\",\"sites\":[\"@SUM(A1)\"]},"
    "  {\"name\":\"-2+3\",\"sites\":[\"@SUM(A1)\"]}],"
    " \"clients\":[{\"guid\":\"+cmd\",\"ip\":\"10.1.0.5\"}]}";

TEST(writes__csv_reports_neutralise_formulas)
{
    fixture f;
    char *out = NULL;
    int s;
    CHECK(start(&f, formula_estate, NULL));
    const char *api = http_get_body(f.port, "/v1/reports/server-clients?format=csv", f.auth, &s);
    char body[1024];
    snprintf(body, sizeof body, "%s", api);
    stop(&f);
    CHECK_INT(s, 200);
    CHECK_STR(body, "server,site,clients,capacity,available\n"
                    "\"'=HYPERLINK(\"\"http://evil\"\",\"\"x\"\")\",\"'@SUM(A1)\",0,5000,yes\n"
                    "\"'-2+3\",\"'@SUM(A1)\",1,5000,yes\n");
    int rc = tsl_test_sh(&out, false, "'%s' --db '%s' report client-assignments --csv", TSL_BIN,
                         f.db);
    CHECK_INT(rc, 0);
    CHECK_STR(out, "guid,name,ip,department,site,server,tier,blocked\n"
                   "\"'+cmd\",,10.1.0.5,,\"'@SUM(A1)\",\"'-2+3\",0,no\n");
    free(out);
    /* the one CSV cell writer, on every leading character OWASP names
     * (tab and CR never pass import's names, but may reach other cells) */
    tsl_buf b = TSL_BUF_INIT;
    static const char *const cells[] = {"=1+2", "+1", "-1", "@A1", "\tx", "\rx", "plain", "a=b", ""};
    for (size_t i = 0; i < sizeof cells / sizeof *cells; i++) {
        CHECK_OK(tsl_buf_csv_field(&b, cells[i]));
        CHECK_OK(tsl_buf_puts(&b, "|"));
    }
    CHECK_STR(b.ptr, "\"'=1+2\"|\"'+1\"|\"'-1\"|\"'@A1\"|\"'\tx\"|\"'\rx\"|plain|a=b||");
    tsl_buf_free(&b);
}

int main(void)
{
    RUN(writes__activate_with_a_blank_site_list_is_refused);
    RUN(writes__list_text_prints_load_at_the_int64_limit);
    RUN(writes__sigkill_under_load_keeps_every_acknowledged_write);
    RUN(writes__heartbeat_needs_the_task_server_token);
    RUN(writes__heartbeat_cannot_change_host_ip_or_sites);
    RUN(writes__new_name_waits_for_approval_and_enters_no_list_before);
    RUN(writes__cli_lists_and_approves_pending_servers_beside_the_broker);
    RUN(writes__floods_get_429_per_peer_per_client_and_past_the_server_cap);
    RUN(writes__invalid_utf8_is_refused_at_the_edge_and_never_reaches_json);
    RUN(writes__csv_reports_neutralise_formulas);
    return tsl_test_main();
}
