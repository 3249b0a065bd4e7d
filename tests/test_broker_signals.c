/*
 * test_broker_signals.c - `tsl serve` as a real process: started as a
 * child on 127.0.0.1 port 0 (read back from its log), driven over HTTP,
 * stopped and reloaded by signals.  Proves: SIGTERM and SIGINT exit 0 after
 * saving every acknowledged write; SIGHUP reloads the inventory; the log
 * speaks the troubleshooting guide's words, and its batched request lines
 * are written within a second and all at SIGTERM, whole; the admin token file is made
 * 0600 once and reused; with no --db the demo estate is served from a
 * temporary store that is removed on exit.
 */
#include "broker_client.h"
#include "harness.h"
#include "tsl.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

static const char inventory[] =
    "{\"sites\": [{\"name\": \"London\", \"subnets\": [\"10.10.0.0/16\"]},"
    "             {\"name\": \"Paris\", \"subnets\": [\"10.20.0.0/16\"]}],"
    " \"task_servers\": [{\"name\": \"ts-lon-01\", \"ip\": \"10.10.0.5\", \"sites\": [\"London\"]},"
    "                    {\"name\": \"ts-par-01\", \"ip\": \"10.20.0.5\", \"sites\": [\"Paris\"]}],"
    " \"clients\": [{\"guid\": \"A1\", \"ip\": \"10.10.3.17\"}]}";

typedef struct child {
    pid_t pid;
    int port;
    char log[600];
} child;

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return strdup("");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s) {
        size_t got = fread(s, 1, (size_t)n, f);
        s[got] = '\0';
    }
    fclose(f);
    return s;
}

/* Starts `tsl [--db DB] serve --listen 127.0.0.1:0 ARGS...`; waits for its port. */
static bool spawn(child *c, const char *db, const char *tmpdir, const char *const *args)
{
    static int n;
    const char *argv[32];
    int k = 0;
    snprintf(c->log, sizeof c->log, "%s/serve-%d.log", tsl_test_tmpdir(), n++);
    argv[k++] = "tsl";
    if (db) {
        argv[k++] = "--db";
        argv[k++] = db;
    }
    argv[k++] = "serve";
    argv[k++] = "--listen";
    argv[k++] = "127.0.0.1:0";
    argv[k++] = "--threads";
    argv[k++] = "2";
    argv[k++] = "--refresh-ms";
    argv[k++] = "50";
    for (int i = 0; args && args[i]; i++)
        argv[k++] = args[i];
    argv[k] = NULL;
    c->pid = fork();
    if (c->pid == 0) {
        int fd = open(c->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int nul = open("/dev/null", O_WRONLY);
        dup2(fd, 2);
        dup2(nul, 1);
        if (tmpdir)
            setenv("TMPDIR", tmpdir, 1);
        execv(TSL_BIN, (char *const *)argv);
        _exit(127);
    }
    for (int i = 0; i < 500; i++) { /* 5 s */
        char *text = slurp(c->log);
        const char *p = strstr(text, " port ");
        bool listening = strstr(text, "Listening on") != NULL;
        c->port = listening && p ? atoi(p + 6) : 0;
        free(text);
        if (c->port > 0)
            return true;
        int st;
        if (waitpid(c->pid, &st, WNOHANG) == c->pid) {
            c->pid = 0;
            return false;
        }
        usleep(10000);
    }
    return false;
}

/* Sends `sig` and waits for the exit status (-1 on a timeout or a crash). */
static int stop_with(child *c, int sig)
{
    int st;
    kill(c->pid, sig);
    for (int i = 0; i < 1000; i++) { /* 10 s */
        if (waitpid(c->pid, &st, WNOHANG) == c->pid) {
            c->pid = 0;
            return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        }
        usleep(10000);
    }
    kill(c->pid, SIGKILL);
    waitpid(c->pid, &st, 0);
    c->pid = 0;
    return -1;
}

static bool make_store(const char *db, const char *inv)
{
    tsl_store *st = NULL;
    bool ok = tsl_store_open(&st, db, 0) == 0 && tsl_store_import_json(st, inv, strlen(inv), "t") == 0;
    if (!ok)
        fprintf(stderr, "store: %s\n", tsl_error_last());
    tsl_store_free(st);
    return ok;
}

static long long db_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    long long v = -999;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

TEST(serve__sigterm_saves_every_acknowledged_write_and_exits_0)
{
    child c;
    http_resp r;
    const char *db = tsl_test_path("term.db");
    CHECK(make_store(db, inventory));
    CHECK(spawn(&c, db, NULL, NULL));
    int acked = 0, s;
    char ts_auth[256], token[128] = "", tpath[600];
    snprintf(tpath, sizeof tpath, "%s.ts-token", db); /* the Task Servers' token */
    char *tok = slurp(tpath);
    sscanf(tok, "%127s", token);
    free(tok);
    snprintf(ts_auth, sizeof ts_auth, "Authorization: Bearer %s\r\n", token);
    http_get_body(c.port, "/v1/task-servers?client=A1", NULL, &s);
    for (int i = 0; i < 150; i++) {
        char path[80], body[64];
        snprintf(body, sizeof body, "{\"connections\":%d}", i);
        if (http_do(c.port, "POST", "/v1/task-servers/ts-lon-01/heartbeat", ts_auth, body, &r) == 200)
            acked++;
        http_resp_free(&r);
        /* A1 first, then a client each: reports are rate-limited per client */
        snprintf(path, sizeof path, "/v1/clients/%s%03d/registration", i ? "X" : "A1", i);
        if (!i)
            snprintf(path, sizeof path, "/v1/clients/A1/registration");
        if (http_do(c.port, "POST", path, NULL,
                    "{\"server\":\"ts-lon-01\",\"ok\":false,\"error\":\"timeout\"}", &r) == 200)
            acked++;
        http_resp_free(&r);
    }
    int code = stop_with(&c, SIGTERM);
    char *log = slurp(c.log);
    CHECK_INT(s, 200);
    CHECK_INT(acked, 300);
    CHECK_INT(code, 0);
    CHECK_INT(db_int(db, "SELECT connections FROM task_servers WHERE name = 'ts-lon-01'"), 149);
    CHECK_INT(db_int(db, "SELECT count(*) FROM registrations WHERE ok = 0"), 150);
    CHECK_CONTAINS(log, "info: Received Task Server list request: client A1, ip -, department -, task -\n");
    CHECK_CONTAINS(log, "info: Sent Task Server list: client A1, site London, policy none, servers ts-lon-01\n");
    CHECK_CONTAINS(log, "warning: Registration failed: client A1, Task Server ts-lon-01, error \"timeout\", "
                        "site London, policy none");
    CHECK_CONTAINS(log, "info: Stopping (SIGTERM): no new connections, answering requests in flight\n");
    CHECK_CONTAINS(log, "info: Stopped: ");
    CHECK_CONTAINS(log, "queued writes flushed, store closed\n");
    free(log);
}

TEST(serve__sigint_stops_cleanly_too)
{
    child c;
    const char *db = tsl_test_path("int.db");
    CHECK(make_store(db, inventory));
    CHECK(spawn(&c, db, NULL, NULL));
    CHECK_INT(stop_with(&c, SIGINT), 0);
    char *log = slurp(c.log);
    CHECK_CONTAINS(log, "Stopping (SIGINT)");
    free(log);
}

/* Counts the lines of text holding needle; false if any line of the log
 * is not whole (every line starts with its time stamp and names tsl). */
static int count_lines(const char *text, const char *needle, bool *whole)
{
    int n = 0;
    *whole = true;
    for (const char *p = text; *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        char line[1024];
        snprintf(line, sizeof line, "%.*s", (int)(len < sizeof line ? len : sizeof line - 1), p);
        if (!nl || strncmp(line, "20", 2) != 0 || !strstr(line, "Z tsl["))
            *whole = false;
        if (strstr(line, needle))
            n++;
        p += len + (nl ? 1 : 0);
    }
    return n;
}

TEST(serve__request_lines_reach_the_log_within_a_second_while_serving)
{
    child c;
    int s;
    const char *db = tsl_test_path("logtimer.db");
    CHECK(make_store(db, inventory));
    CHECK(spawn(&c, db, NULL, NULL));
    http_get_body(c.port, "/v1/task-servers?client=A1", NULL, &s);
    bool seen = false;
    for (int i = 0; i < 500 && !seen; i++) { /* the batch is written every 200 ms */
        char *log = slurp(c.log);
        seen = strstr(log, "info: Sent Task Server list: client A1, site London") != NULL;
        free(log);
        if (!seen)
            usleep(10000);
    }
    CHECK_INT(s, 200);
    CHECK(seen);
    CHECK_INT(stop_with(&c, SIGTERM), 0);
}

TEST(serve__sigterm_writes_every_batched_request_line_whole)
{
    child c;
    int ok = 0, s;
    const char *db = tsl_test_path("logterm.db");
    CHECK(make_store(db, inventory));
    CHECK(spawn(&c, db, NULL, NULL));
    /* 1500 requests make about 300 KB of lines: batches fill and are
     * written whole, and the last ones are still in a batch at SIGTERM */
    for (int i = 0; i < 1500; i++) {
        http_get_body(c.port, "/v1/task-servers?client=A1", NULL, &s);
        ok += s == 200;
    }
    CHECK_INT(stop_with(&c, SIGTERM), 0);
    char *log = slurp(c.log);
    bool whole1, whole2;
    CHECK_INT(ok, 1500);
    CHECK_INT(count_lines(log, "info: Received Task Server list request: client A1, ip -, "
                               "department -, task -", &whole1), 1500);
    CHECK_INT(count_lines(log, "info: Sent Task Server list: client A1, site London, policy none, "
                               "servers ts-lon-01", &whole2), 1500);
    CHECK(whole1 && whole2);
    /* the stop's own lines come after the requests' */
    const char *last_sent = NULL;
    for (const char *p = log; (p = strstr(p, "Sent Task Server list")); p++)
        last_sent = p;
    CHECK(last_sent && strstr(log, "Stopped:") > last_sent);
    free(log);
}

TEST(serve__sighup_reloads_the_inventory)
{
    child c;
    int s;
    const char *db = tsl_test_path("hup.db");
    CHECK(make_store(db, inventory));
    CHECK(spawn(&c, db, NULL, NULL));
    const char *before = http_get_body(c.port, "/v1/task-servers?ip=10.20.1.1", NULL, &s);
    CHECK_CONTAINS(before, "ts-par-01");
    /* another process (tsl import) changes the store */
    CHECK(make_store(db, "{\"task_servers\":[{\"name\":\"ts-par-02\",\"ip\":\"10.20.0.6\","
                         "\"sites\":[\"Paris\"],\"connections\":0}]}"));
    const char *stale = http_get_body(c.port, "/v1/task-servers?ip=10.20.1.1", NULL, &s);
    bool had = strstr(stale, "ts-par-02") != NULL;
    kill(c.pid, SIGHUP);
    bool seen = false;
    for (int i = 0; i < 200 && !seen; i++) {
        seen = strstr(http_get_body(c.port, "/v1/task-servers?ip=10.20.1.1", NULL, &s), "ts-par-02") != NULL;
        if (!seen)
            usleep(10000);
    }
    int code = stop_with(&c, SIGTERM);
    char *log = slurp(c.log);
    CHECK(!had);
    CHECK(seen);
    CHECK_INT(code, 0);
    CHECK_CONTAINS(log, "Received SIGHUP: reloading the inventory and the policy");
    CHECK_CONTAINS(log, "SIGHUP: reloaded; policy none (default logic)");
    free(log);
}

TEST(serve__sighup_rereads_the_policy_file_and_keeps_the_old_one_if_it_fails)
{
    child c;
    int s;
    const char *db = tsl_test_path("hup-policy.db");
    const char *pol = tsl_test_path("hup.lua");
    const char *args[] = {"--policy", pol, NULL};
    CHECK(make_store(db, inventory));
    CHECK_INT(tsl_test_write(pol, "site \"London\" { }\n"), 0);
    CHECK(spawn(&c, db, NULL, args));
    const char *b1 = http_get_body(c.port, "/v1/task-servers?ip=10.10.3.17", NULL, &s);
    bool first_listed = strstr(b1, "ts-lon-01") != NULL;
    /* the admin edits the file: London blocked from ts-lon-01, no fallback */
    CHECK_INT(tsl_test_write(pol, "site \"London\" { deny = { \"ts-lon-01\" }, fallback = \"block\" }\n"), 0);
    kill(c.pid, SIGHUP);
    bool blocked = false;
    for (int i = 0; i < 200 && !blocked; i++) {
        blocked = strstr(http_get_body(c.port, "/v1/task-servers?ip=10.10.3.17", NULL, &s), "\"blocked\":true") != NULL;
        if (!blocked)
            usleep(10000);
    }
    /* a broken edit: refused, the policy in force stays */
    CHECK_INT(tsl_test_write(pol, "site \"London\" { order = \n"), 0);
    kill(c.pid, SIGHUP);
    usleep(300000);
    const char *b3 = http_get_body(c.port, "/v1/task-servers?ip=10.10.3.17", NULL, &s);
    bool still_blocked = s == 200 && strstr(b3, "\"blocked\":true") != NULL;
    int code = stop_with(&c, SIGTERM);
    char *log = slurp(c.log);
    CHECK(first_listed);
    CHECK(blocked);
    CHECK(still_blocked);
    CHECK_INT(code, 0);
    CHECK_CONTAINS(log, "SIGHUP: the policy is refused, the one in force stays");
    CHECK_INT(db_int(db, "SELECT count(*) FROM policies"), 2);
    CHECK_INT(db_int(db, "SELECT count(*) FROM rollout_history"), 2);
    free(log);
}

TEST(serve__admin_token_file_is_created_0600_once_and_a_bad_one_refused)
{
    child c;
    http_resp r;
    const char *db = tsl_test_path("tok.db");
    char tokpath[700], first[128] = "", second[128] = "", auth[256];
    snprintf(tokpath, sizeof tokpath, "%s.token", db);
    CHECK(make_store(db, inventory));
    CHECK(spawn(&c, db, NULL, NULL));
    CHECK_INT(stop_with(&c, SIGTERM), 0);
    struct stat st;
    CHECK(stat(tokpath, &st) == 0);
    CHECK_INT(st.st_mode & 0777, 0600);
    FILE *f = fopen(tokpath, "r");
    CHECK(f && fscanf(f, "%127s", first) == 1);
    fclose(f);
    CHECK(spawn(&c, db, NULL, NULL));
    snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", first);
    int s = http_do(c.port, "GET", "/v1/reports/active-servers", auth, NULL, &r);
    http_resp_free(&r);
    CHECK_INT(stop_with(&c, SIGTERM), 0);
    f = fopen(tokpath, "r");
    CHECK(f && fscanf(f, "%127s", second) == 1);
    fclose(f);
    CHECK_INT(s, 200);
    CHECK_STR(second, first);
    /* a token too short to be safe: tsl serve refuses to start */
    const char *other = tsl_test_path("short.token");
    CHECK_INT(tsl_test_write(other, "abc\n"), 0);
    char *out = NULL;
    int code = tsl_test_sh(&out, true, "%s --db %s serve --listen 127.0.0.1:0 --admin-token-file %s",
                           TSL_BIN, db, other);
    CHECK_INT(code, 2);
    CHECK_CONTAINS(out, "must be at least 16 characters");
    free(out);
}

TEST(serve__without_db_serves_the_demo_estate_and_cleans_up)
{
    child c;
    int s;
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s/demo-tmp", tsl_test_tmpdir());
    mkdir(tmp, 0700);
    CHECK(spawn(&c, NULL, tmp, NULL));
    const char *body = http_get_body(c.port, "/v1/task-servers?ip=10.10.3.17", NULL, &s);
    char copy[256];
    snprintf(copy, sizeof copy, "%.200s", body);
    int code = stop_with(&c, SIGTERM);
    char *log = slurp(c.log);
    int left = 0;
    DIR *d = opendir(tmp);
    for (struct dirent *e; d && (e = readdir(d));)
        if (e->d_name[0] != '.')
            left++;
    if (d)
        closedir(d);
    CHECK_INT(s, 200);
    CHECK_CONTAINS(copy, "\"site\":\"London\"");
    CHECK_INT(code, 0);
    CHECK_CONTAINS(log, "tsl serve: no --db: serving the demo estate");
    CHECK_CONTAINS(log, "with the example policy");
    CHECK_CONTAINS(log, "policies/examples/demo.lua");
    CHECK_CONTAINS(copy, "\"policy\":\"sha256:");
    CHECK_CONTAINS(log, "admin token: ");
    CHECK_INT(left, 0); /* the throwaway store is gone */
    free(log);
}

/* The "done when": a new user runs `tsl serve`, curls a list, posts
 * a heartbeat that changes the next list, uploads and activates a policy
 * that changes it again, and reads it all in /metrics. */
TEST(serve__new_user_story_on_the_demo)
{
    child c;
    http_resp r;
    int s;
    char tmp[600], token[128] = "", auth[256], version[64] = "", first[3][64];
    char ts_token[128] = "", ts_auth[256];
    snprintf(tmp, sizeof tmp, "%s/story-tmp", tsl_test_tmpdir());
    mkdir(tmp, 0700);
    CHECK(spawn(&c, NULL, tmp, NULL));
    char *log = slurp(c.log);
    const char *t = strstr(log, "admin token: ");
    if (t)
        sscanf(t + 13, "%127s", token);
    if ((t = strstr(log, "task server token: ")))
        sscanf(t + 19, "%127s", ts_token);
    free(log);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", token);
    snprintf(ts_auth, sizeof ts_auth, "Authorization: Bearer %s\r\n", ts_token);

    /* the first server of a London client's list, three times */
    const char *body = http_get_body(c.port, "/v1/task-servers?ip=10.10.4.22", NULL, &s);
    const char *p = strstr(body, "\"servers\":[{\"name\":\"");
    snprintf(first[0], sizeof first[0], "%.9s", p ? p + 20 : "");
    /* ts-lon-01 reports it is stopped: the next list starts elsewhere */
    int hs = http_do(c.port, "POST", "/v1/task-servers/ts-lon-01/heartbeat", ts_auth,
                     "{\"service\":\"stopped\"}", &r);
    http_resp_free(&r);
    first[1][0] = '\0';
    for (int i = 0; i < 100; i++) { /* 1 s at most */
        body = http_get_body(c.port, "/v1/task-servers?ip=10.10.4.22", NULL, &s);
        p = strstr(body, "\"servers\":[{\"name\":\"");
        snprintf(first[1], sizeof first[1], "%.9s", p ? p + 20 : "");
        if (strcmp(first[1], "ts-lon-01") != 0)
            break;
        usleep(10000);
    }
    /* a policy that puts Dublin first for London, uploaded then activated */
    int us = http_do(c.port, "POST", "/v1/policy?author=newuser", auth,
                     "site \"London\" { order = { \"ts-dub-01\" } }\n", &r);
    const char *v = r.body ? strstr(r.body, "\"version\":\"") : NULL;
    if (v)
        snprintf(version, sizeof version, "%.19s", v + 11);
    http_resp_free(&r);
    char path[128];
    snprintf(path, sizeof path, "/v1/policy/%s/activate", version);
    int as = http_do(c.port, "POST", path, auth, NULL, &r);
    http_resp_free(&r);
    body = http_get_body(c.port, "/v1/task-servers?ip=10.10.4.22", NULL, &s);
    p = strstr(body, "\"servers\":[{\"name\":\"");
    snprintf(first[2], sizeof first[2], "%.9s", p ? p + 20 : "");
    /* and /metrics says so */
    const char *m = http_get_body(c.port, "/metrics", NULL, &s);
    char want[128];
    snprintf(want, sizeof want, "tsl_policy_active_info{version=\"%s\"} 1", version);
    bool m_policy = strstr(m, want) != NULL;
    bool m_heartbeat = strstr(m, "\ntsl_heartbeats_total 1\n") != NULL;
    bool m_lists = strstr(m, "tsl_http_requests_total{endpoint=\"task-servers\",code=\"200\"}") != NULL;
    bool m_activate = strstr(m, "tsl_http_requests_total{endpoint=\"policy-activate\",code=\"200\"} 1") != NULL;
    int code = stop_with(&c, SIGTERM);

    CHECK_INT((int)strlen(token), 64);
    CHECK_STR(first[0], "ts-lon-01");
    CHECK_INT(hs, 200);
    CHECK(strcmp(first[1], "ts-lon-01") != 0 && first[1][0]);
    CHECK_INT(us, 201);
    CHECK_INT(as, 200);
    CHECK_STR(first[2], "ts-dub-01");
    CHECK(m_policy);
    CHECK(m_heartbeat);
    CHECK(m_lists);
    CHECK(m_activate);
    CHECK_INT(code, 0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    RUN(serve__sigterm_saves_every_acknowledged_write_and_exits_0);
    RUN(serve__sigint_stops_cleanly_too);
    RUN(serve__request_lines_reach_the_log_within_a_second_while_serving);
    RUN(serve__sigterm_writes_every_batched_request_line_whole);
    RUN(serve__sighup_reloads_the_inventory);
    RUN(serve__sighup_rereads_the_policy_file_and_keeps_the_old_one_if_it_fails);
    RUN(serve__admin_token_file_is_created_0600_once_and_a_bad_one_refused);
    RUN(serve__without_db_serves_the_demo_estate_and_cleans_up);
    RUN(serve__new_user_story_on_the_demo);
    return tsl_test_main();
}
