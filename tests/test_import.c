/*
 * test_import.c - importing inventories (JSON and CSV), loading them into
 * snapshots, and the synthetic estate generator, on real SQLite files.
 *
 * Every rejected document is checked twice: the message names the record
 * and field, and the store is byte-for-byte what it was before (a dump of
 * every table compared as text).
 */
#include "harness.h"
#include "snapshot.h"
#include "store.h"
#include "tsl.h"

#include <sqlite3.h>
#include <time.h>

/* ------------------------------------------------------------------------
 * Fixtures
 * ---------------------------------------------------------------------- */

static tsl_store *open_new(void)
{
    static int n;
    char name[32];
    tsl_store *st = NULL;

    snprintf(name, sizeof name, "store-%d.db", n++);
    if (tsl_store_open(&st, tsl_test_path(name), 0) < 0)
        fprintf(stderr, "  open: %s\n", tsl_error_last());
    return st;
}

static int imp(tsl_store *st, const char *json)
{
    return tsl_store_import_json(st, json, strlen(json), "inventory.json");
}

static long long q_int(tsl_store *st, const char *sql)
{
    sqlite3_stmt *stmt = NULL;
    long long v = -1;

    if (sqlite3_prepare_v2(tsl_store_db(st), sql, -1, &stmt, NULL) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW)
        v = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    return v;
}

/* The text of the first column of the first row ("(null)" for NULL),
 * copied into a rotating static buffer. */
static const char *q_text(tsl_store *st, const char *sql)
{
    static char bufs[4][512];
    static int next;
    char *b = bufs[next++ % 4];
    sqlite3_stmt *stmt = NULL;

    snprintf(b, 512, "(no row)");
    if (sqlite3_prepare_v2(tsl_store_db(st), sql, -1, &stmt, NULL) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(stmt, 0);
        snprintf(b, 512, "%s", t ? (const char *)t : "(null)");
    }
    sqlite3_finalize(stmt);
    return b;
}

static long long rows(tsl_store *st)
{
    return q_int(st, "SELECT (SELECT count(*) FROM sites) + (SELECT count(*) FROM site_subnets)"
                     " + (SELECT count(*) FROM task_servers)"
                     " + (SELECT count(*) FROM server_sites) + (SELECT count(*) FROM clients)"
                     " + (SELECT count(*) FROM connection_errors)");
}

typedef struct text {
    char *p;
    size_t len, cap;
} text;

static int text_add(text *t, const char *s)
{
    size_t n = strlen(s);
    if (t->len + n + 1 > t->cap) {
        size_t cap = (t->len + n + 1) * 2;
        char *np = realloc(t->p, cap);
        if (!np)
            return 1;
        t->p = np;
        t->cap = cap;
    }
    memcpy(t->p + t->len, s, n + 1);
    t->len += n;
    return 0;
}

static int dump_row(void *arg, int n, char **vals, char **names)
{
    text *t = arg;
    for (int i = 0; i < n; i++)
        if (text_add(t, i ? "|" : "") || text_add(t, vals[i] ? vals[i] : "NULL"))
            return 1;
    return text_add(t, "\n");
}

/* Every inventory row by name, independent of row ids: two stores holding
 * the same inventory dump the same text.  Caller frees. */
static char *dump(tsl_store *st)
{
    static const char *const sql[] = {
        "SELECT 'site', name, country, latitude, longitude FROM sites ORDER BY name",
        "SELECT 'subnet', s.name, n.cidr FROM site_subnets n JOIN sites s ON s.id = n.site_id"
        " ORDER BY s.name, n.cidr",
        "SELECT 'server', name, host, ip, registered, service, capacity, connections,"
        " response_ms, last_heartbeat FROM task_servers ORDER BY name",
        "SELECT 'server_site', t.name, ss.position, s.name FROM server_sites ss"
        " JOIN task_servers t ON t.id = ss.server_id JOIN sites s ON s.id = ss.site_id"
        " ORDER BY t.name, ss.position",
        "SELECT 'client', c.guid, c.name, c.ip, c.department, s.name, c.assigned_server,"
        " c.assigned_at FROM clients c LEFT JOIN sites s ON s.id = c.site_id ORDER BY c.guid",
        "SELECT 'error', c.guid, t.name, e.at, e.error FROM connection_errors e"
        " JOIN clients c ON c.id = e.client_id JOIN task_servers t ON t.id = e.server_id"
        " ORDER BY c.guid, t.name, e.at",
    };
    text t = {NULL, 0, 0};

    if (text_add(&t, ""))
        return NULL;
    for (size_t i = 0; i < sizeof sql / sizeof sql[0]; i++)
        if (sqlite3_exec(tsl_store_db(st), sql[i], dump_row, &t, NULL) != SQLITE_OK) {
            free(t.p);
            return NULL;
        }
    return t.p;
}

/* What every rejection test starts from: a store already holding data, so
 * "nothing written" also means "nothing changed". */
static const char *base_doc =
    "{\"sites\":["
    "  {\"name\":\"London\",\"subnets\":[\"10.10.0.0/16\",\"fd00:10::/48\"],\"country\":\"GB\","
    "   \"latitude\":51.5,\"longitude\":-0.1},"
    "  {\"name\":\"Dublin\",\"subnets\":[\"10.20.0.0/16\"],\"country\":\"IE\"}],"
    " \"task_servers\":["
    "  {\"name\":\"ts-lon-01\",\"host\":\"ts-lon-01.corp\",\"ip\":\"10.10.0.5\","
    "   \"sites\":[\"London\"],\"capacity\":1000,\"connections\":250,\"response_ms\":12},"
    "  {\"name\":\"ts-dub-01\",\"ip\":\"10.20.0.5\",\"sites\":[\"Dublin\",\"London\"]}],"
    " \"clients\":["
    "  {\"guid\":\"GUID-1\",\"name\":\"LON-PC-0001\",\"ip\":\"10.10.3.17\","
    "   \"department\":\"Finance\"}],"
    " \"connection_errors\":["
    "  {\"client\":\"GUID-1\",\"server\":\"ts-lon-01\",\"at\":1795600680,\"error\":\"timeout\"}]}";

static tsl_store *open_base(void)
{
    tsl_store *st = open_new();
    if (st && imp(st, base_doc) < 0) {
        fprintf(stderr, "  base import: %s\n", tsl_error_last());
        tsl_store_free(st);
        st = NULL;
    }
    return st;
}

/* Imports `doc` on top of the base store; it must fail with TSL_EINVALID,
 * a message holding `needle`, and leave the store exactly as it was. */
#define EXPECT_REJECTED(doc, needle)                                             \
    do {                                                                         \
        tsl_store *st_ = open_base();                                            \
        char msg_[1024], *before_, *after_;                                      \
        int rc_;                                                                 \
        bool same_;                                                              \
        CHECK(st_ != NULL);                                                      \
        before_ = dump(st_);                                                     \
        rc_ = imp(st_, (doc));                                                   \
        snprintf(msg_, sizeof msg_, "%s", tsl_error_last());                     \
        after_ = dump(st_);                                                      \
        same_ = before_ && after_ && strcmp(before_, after_) == 0;               \
        free(before_);                                                           \
        free(after_);                                                            \
        tsl_store_free(st_);                                                     \
        CHECK_INT(rc_, TSL_EINVALID);                                            \
        CHECK_CONTAINS(msg_, (needle));                                          \
        if (!same_)                                                              \
            FAILF_("the rejected document changed the store");                   \
    } while (0)

/* A valid site and server ahead of the bad record, so a partial write
 * would show in the dump. */
#define VALID_FIRST                                                              \
    "{\"name\":\"Paris\",\"subnets\":[\"10.30.0.0/16\"]},"                       \
    "{\"name\":\"London\",\"country\":\"XX\",\"subnets\":[\"10.11.0.0/16\"]}"

/* ------------------------------------------------------------------------
 * JSON: rejections
 * ---------------------------------------------------------------------- */

TEST(import__negative_capacity_names_record_and_writes_nothing)
{
    EXPECT_REJECTED("{\"sites\":[" VALID_FIRST "],\"task_servers\":["
                    "{\"name\":\"ts-par-01\",\"sites\":[\"Paris\"]},"
                    "{\"name\":\"ts-x\"},{\"name\":\"ts-y\"},"
                    "{\"name\":\"ts-lon-02\",\"capacity\":-5}]}",
                    "inventory.json: task_servers[3] \"ts-lon-02\": field \"capacity\" must be "
                    "a non-negative integer (got -5)");
}

TEST(import__bad_record_in_fresh_store_writes_no_rows)
{
    tsl_store *st = open_new();
    const char *doc = "{\"sites\":[{\"name\":\"A\",\"subnets\":[\"10.1.0.0/16\"]}],"
                      "\"task_servers\":[{\"name\":\"ts-a\",\"sites\":[\"A\"]}],"
                      "\"clients\":[{\"guid\":\"G\",\"ip\":\"10.1.1.1\"},"
                      "{\"guid\":\"H\",\"ip\":\"10.1.1.300\"}]}";

    CHECK(st != NULL);
    CHECK_INT(imp(st, doc), TSL_EINVALID);
    CHECK_CONTAINS(tsl_error_last(), "clients[1] \"H\": field \"ip\"");
    CHECK_INT(rows(st), 0);
    tsl_store_free(st);
}

TEST(import__invalid_cidr_names_site_and_subnet)
{
    EXPECT_REJECTED("{\"sites\":[{\"name\":\"London\",\"subnets\":[\"10.10.0.0/16\","
                    "\"10.10.0.0/33\"]}]}",
                    "inventory.json: sites[0] \"London\": subnets[1] \"10.10.0.0/33\" is not a "
                    "valid CIDR");
    EXPECT_REJECTED("{\"sites\":[" VALID_FIRST ",{\"name\":\"Rome\",\"subnets\":"
                    "[\"10.40.1.0/16\"]}]}",
                    "sites[2] \"Rome\": subnets[0] \"10.40.1.0/16\" is not a valid CIDR: host bits");
    EXPECT_REJECTED("{\"sites\":[{\"name\":\"Rome\",\"subnets\":\"10.40.0.0/16\"}]}",
                    "sites[0] \"Rome\": field \"subnets\" must be an array (got \"10.40.0.0/16\")");
    EXPECT_REJECTED("{\"sites\":[{\"name\":\"Rome\",\"subnets\":[42]}]}",
                    "sites[0] \"Rome\": subnets[0] must be a string (got 42)");
}

TEST(import__subnet_in_several_sites_imports_with_a_warning)
{
    tsl_store *st = open_base();
    tsl_buf notes = TSL_BUF_INIT;
    tsl_import_options opt = {false, NULL, &notes};
    /* Held by Dublin in the store already; another spelling of London's
     * IPv6 subnet; a subnet listed twice in one site is kept once. */
    const char *doc = "{\"sites\":[{\"name\":\"Rome\",\"subnets\":[\"10.20.0.0/16\","
                      "\"fd00:10:0:0::/48\",\"10.50.0.0/16\",\"10.50.0.0/16\"]}]}";

    CHECK(st != NULL);
    CHECK_OK(tsl_store_import_json_opt(st, doc, strlen(doc), "rome.json", &opt));
    CHECK_INT(q_int(st, "SELECT count(*) FROM site_subnets WHERE cidr = '10.20.0.0/16'"), 2);
    CHECK_INT(q_int(st, "SELECT count(*) FROM site_subnets n JOIN sites s ON s.id = n.site_id"
                        " WHERE s.name = 'Rome'"),
              3);
    CHECK_CONTAINS(notes.ptr, "rome.json: sites[0] \"Rome\": subnets[3] \"10.50.0.0/16\" is "
                              "listed twice (kept once)");
    CHECK_CONTAINS(notes.ptr, "warning: 2 subnets are claimed by more than one site");
    CHECK_CONTAINS(notes.ptr, "10.20.0.0/16 of site Dublin, also in Rome (10.20.0.0/16): its "
                              "clients get Dublin");
    CHECK_CONTAINS(notes.ptr, "fd00:10::/48 of site London, also in Rome (fd00:10::/48)");
    tsl_buf_free(&notes);
    tsl_store_free(st);
}

TEST(import__unknown_site_of_server_or_client_is_rejected)
{
    EXPECT_REJECTED("{\"sites\":[" VALID_FIRST "],\"task_servers\":["
                    "{\"name\":\"ts-x\",\"sites\":[\"Paris\",\"Atlantis\"]}]}",
                    "inventory.json: task_servers[0] \"ts-x\": sites[1] \"Atlantis\" is not a "
                    "known site");
    EXPECT_REJECTED("{\"sites\":[" VALID_FIRST "],\"clients\":["
                    "{\"guid\":\"GUID-2\",\"site\":\"Paris\"},"
                    "{\"guid\":\"GUID-3\",\"site\":\"Atlantis\"}]}",
                    "inventory.json: clients[1] \"GUID-3\": field \"site\": \"Atlantis\" is not "
                    "a known site");
    EXPECT_REJECTED("{\"task_servers\":[{\"name\":\"ts-x\",\"sites\":[\"London\",\"london\"]}]}",
                    "task_servers[0] \"ts-x\": sites[1] \"london\" is listed twice");
    EXPECT_REJECTED("{\"task_servers\":[{\"name\":\"ts-x\",\"sites\":[\"London\",7]}]}",
                    "task_servers[0] \"ts-x\": sites[1] must be a site name (got 7)");
}

TEST(import__invalid_ip_addresses_are_rejected)
{
    EXPECT_REJECTED("{\"sites\":[" VALID_FIRST "],\"task_servers\":["
                    "{\"name\":\"ts-x\",\"ip\":\"10.0.0.256\"}]}",
                    "inventory.json: task_servers[0] \"ts-x\": field \"ip\" must be an IPv4 or "
                    "IPv6 address (got \"10.0.0.256\")");
    EXPECT_REJECTED("{\"clients\":[{\"guid\":\"GUID-2\",\"ip\":\"fd00::1::2\"}]}",
                    "clients[0] \"GUID-2\": field \"ip\" must be an IPv4 or IPv6 address (got "
                    "\"fd00::1::2\")");
    EXPECT_REJECTED("{\"clients\":[{\"guid\":\"GUID-2\",\"ip\":17}]}",
                    "clients[0] \"GUID-2\": field \"ip\" must be a string (got 17)");
}

TEST(import__service_must_be_running_or_stopped)
{
    EXPECT_REJECTED("{\"sites\":[" VALID_FIRST "],\"task_servers\":["
                    "{\"name\":\"ts-x\",\"service\":\"paused\"}]}",
                    "task_servers[0] \"ts-x\": field \"service\" must be \"running\" or "
                    "\"stopped\" (in any case) (got \"paused\")");
    EXPECT_REJECTED("{\"task_servers\":[{\"name\":\"ts-x\",\"service\":null}]}",
                    "field \"service\" must be \"running\" or \"stopped\" (in any case) (got null)");
}

TEST(import__missing_name_or_guid_is_rejected)
{
    EXPECT_REJECTED("{\"sites\":[" VALID_FIRST ",{\"country\":\"FR\"}]}",
                    "inventory.json: sites[2]: missing required field \"name\"");
    EXPECT_REJECTED("{\"task_servers\":[{\"name\":\"ts-x\"},{\"name\":\"\"}]}",
                    "inventory.json: task_servers[1]: field \"name\" must be a non-empty string "
                    "(got \"\")");
    EXPECT_REJECTED("{\"clients\":[{\"name\":\"PC\"}]}",
                    "inventory.json: clients[0]: missing required field \"guid\"");
    EXPECT_REJECTED("{\"clients\":[{\"guid\":42}]}",
                    "clients[0]: field \"guid\" must be a string (got 42)");
    EXPECT_REJECTED("{\"connection_errors\":[{\"client\":\"GUID-1\",\"at\":1}]}",
                    "connection_errors[0]: missing required field \"server\"");
    EXPECT_REJECTED("{\"connection_errors\":[{\"client\":\"GUID-1\",\"server\":\"ts-lon-01\"}]}",
                    "connection_errors[0]: missing required field \"at\"");
}

TEST(import__malformed_json_reports_line_and_column)
{
    EXPECT_REJECTED("{\n  \"sites\": [\n    {\"name\": \"Paris\",}\n  ]\n}",
                    "inventory.json:3:");
    EXPECT_REJECTED("", "inventory.json:");
    EXPECT_REJECTED("{\"sites\":[], \"sites\":[]}", "duplicate object key");
}

TEST(import__connection_error_naming_unknown_client_or_server_is_rejected)
{
    EXPECT_REJECTED("{\"connection_errors\":["
                    "{\"client\":\"GUID-1\",\"server\":\"ts-dub-01\",\"at\":1},"
                    "{\"client\":\"GUID-9\",\"server\":\"ts-lon-01\",\"at\":2}]}",
                    "inventory.json: connection_errors[1]: field \"client\": \"GUID-9\" is not a "
                    "known client");
    EXPECT_REJECTED("{\"connection_errors\":["
                    "{\"client\":\"GUID-1\",\"server\":\"ts-nope\",\"at\":2}]}",
                    "connection_errors[0]: field \"server\": \"ts-nope\" is not a known task "
                    "server");
    EXPECT_REJECTED("{\"connection_errors\":["
                    "{\"client\":\"GUID-1\",\"server\":\"ts-lon-01\",\"at\":\"yesterday\"}]}",
                    "connection_errors[0]: field \"at\" must be Unix seconds or a time like "
                    "\"2026-11-25T09:58:00Z\" or \"2026-11-25 09:58:00\" (got \"yesterday\")");
}

TEST(import__wrong_types_and_ranges_are_rejected)
{
    EXPECT_REJECTED("{\"task_servers\":[{\"name\":\"ts-x\",\"registered\":\"maybe\"}]}",
                    "task_servers[0] \"ts-x\": field \"registered\" must be true or false (or "
                    "yes/no, 1/0) (got \"maybe\")");
    EXPECT_REJECTED("{\"task_servers\":[{\"name\":\"ts-x\",\"connections\":1.5}]}",
                    "field \"connections\" must be a non-negative integer (got 1.5)");
    EXPECT_REJECTED("{\"task_servers\":[{\"name\":\"ts-x\",\"response_ms\":\"12 ms\"}]}",
                    "field \"response_ms\" must be a non-negative integer (got \"12 ms\")");
    EXPECT_REJECTED("{\"task_servers\":[{\"name\":\"ts-x\",\"capacity\":\"50,00\"}]}",
                    "field \"capacity\" must be a non-negative integer (got \"50,00\")");
    EXPECT_REJECTED("{\"task_servers\":[{\"name\":\"ts-x\",\"last_heartbeat\":"
                    "\"2026-02-30T00:00:00Z\"}]}",
                    "field \"last_heartbeat\" must be Unix seconds or a time like");
    EXPECT_REJECTED("{\"task_servers\":[{\"name\":\"ts-x\",\"last_heartbeat\":-1}]}",
                    "field \"last_heartbeat\" must be Unix seconds");
    EXPECT_REJECTED("{\"sites\":[{\"name\":\"Rome\",\"latitude\":91}]}",
                    "sites[0] \"Rome\": field \"latitude\" must be a number from -90 to 90 (got "
                    "91)");
    EXPECT_REJECTED("{\"sites\":[{\"name\":\"Rome\",\"longitude\":\"east\"}]}",
                    "field \"longitude\" must be a number from -180 to 180");
    EXPECT_REJECTED("{\"sites\":[{\"name\":\"Ro\\u0001me\"}]}",
                    "field \"name\" must be text without control characters");
    EXPECT_REJECTED("{\"clients\":[{\"guid\":\"G\",\"department\":[\"Finance\"]}]}",
                    "clients[0] \"G\": field \"department\" must be a string (got [\"Finance\"])");
}

TEST(import__document_shape_errors_are_rejected)
{
    EXPECT_REJECTED("[]", "inventory.json: the document must be a JSON object (got [])");
    EXPECT_REJECTED("{\"sites\":{}}", "inventory.json: \"sites\" must be an array (got {})");
    EXPECT_REJECTED("{\"sites\":[" VALID_FIRST ",\"Rome\"]}",
                    "inventory.json: sites[2] must be an object (got \"Rome\")");
    EXPECT_REJECTED("{\"sites\":[" VALID_FIRST ",{\"name\":\"PARIS\"}]}",
                    "inventory.json: sites[2] \"PARIS\": site \"PARIS\" appears twice (first at "
                    "inventory.json: sites[0])");
    EXPECT_REJECTED("{\"clients\":[{\"guid\":\"G\"},{\"guid\":\"g\"}]}",
                    "clients[1] \"g\": client \"g\" appears twice");
}

TEST(import__long_names_are_rejected_at_the_limit)
{
    char doc[1024], name[300];

    memset(name, 'a', 255);
    name[255] = '\0';
    snprintf(doc, sizeof doc, "{\"sites\":[{\"name\":\"%s\"}]}", name);
    {
        tsl_store *st = open_new();
        CHECK(st != NULL);
        CHECK_OK(imp(st, doc));
        tsl_store_free(st);
    }
    name[255] = 'a';
    name[256] = '\0';
    snprintf(doc, sizeof doc, "{\"sites\":[{\"name\":\"%s\"}]}", name);
    EXPECT_REJECTED(doc, "field \"name\" must be at most 255 bytes long");
}

/* ------------------------------------------------------------------------
 * JSON: what gets written
 * ---------------------------------------------------------------------- */

TEST(import__new_server_gets_itms_defaults)
{
    tsl_store *st = open_new();

    CHECK(st != NULL);
    CHECK_OK(imp(st, "{\"task_servers\":[{\"name\":\"ts-bare\"}]}"));
    CHECK_STR(q_text(st, "SELECT registered || ' ' || service || ' ' || capacity || ' ' ||"
                         " connections || ' ' || response_ms || ' ' ||"
                         " ifnull(last_heartbeat, 'none') || ' ' || ifnull(host, 'nohost') ||"
                         " ' ' || ifnull(ip, 'noip') FROM task_servers"),
              "1 running 5000 0 0 none nohost noip");
    CHECK_INT(q_int(st, "SELECT count(*) FROM server_sites"), 0);
    tsl_store_free(st);
}

TEST(import__heartbeat_accepts_iso_8601_and_unix_seconds)
{
    tsl_store *st = open_new();

    CHECK(st != NULL);
    CHECK_OK(imp(st, "{\"task_servers\":["
                     "{\"name\":\"a\",\"last_heartbeat\":\"2026-11-25T09:58:00Z\"},"
                     "{\"name\":\"b\",\"last_heartbeat\":1795600680},"
                     "{\"name\":\"c\",\"last_heartbeat\":\"2026-11-25T10:58:00.250+01:00\"},"
                     "{\"name\":\"d\",\"last_heartbeat\":null}]}"));
    CHECK_INT(q_int(st, "SELECT last_heartbeat FROM task_servers WHERE name = 'a'"), 1795600680);
    CHECK_INT(q_int(st, "SELECT last_heartbeat FROM task_servers WHERE name = 'b'"), 1795600680);
    CHECK_INT(q_int(st, "SELECT last_heartbeat FROM task_servers WHERE name = 'c'"), 1795600680);
    CHECK_STR(q_text(st, "SELECT last_heartbeat FROM task_servers WHERE name = 'd'"), "(null)");
    tsl_store_free(st);
}

TEST(time__parses_utc_iso_8601_and_refuses_the_rest)
{
    int64_t t = 0;

    CHECK(tsl_parse_time("1970-01-01T00:00:00Z", &t));
    CHECK_INT(t, 0);
    CHECK(tsl_parse_time("2024-02-29T23:59:59Z", &t));
    CHECK_INT(t, 1709251199);
    CHECK(tsl_parse_time("2026-11-25 09:58Z", &t));
    CHECK_INT(t, 1795600680);
    CHECK(tsl_parse_time("2026-11-25T04:58:00-0500", &t));
    CHECK_INT(t, 1795600680);
    CHECK(!tsl_parse_time("2026-11-25T09:58:00", &t));   /* no zone: ambiguous */
    CHECK(!tsl_parse_time("2023-02-29T00:00:00Z", &t));  /* not a leap year */
    CHECK(!tsl_parse_time("2026-13-01T00:00:00Z", &t));
    CHECK(!tsl_parse_time("2026-11-25T24:00:00Z", &t));
    CHECK(!tsl_parse_time("2026-11-25T09:58:00Zjunk", &t));
    CHECK(!tsl_parse_time("", &t));
}

TEST(import__upsert_overwrites_given_fields_and_keeps_absent_ones)
{
    tsl_store *st = open_base();

    CHECK(st != NULL);
    CHECK_OK(imp(st, "{\"task_servers\":[{\"name\":\"ts-lon-01\",\"connections\":400,"
                     "\"service\":\"stopped\"}],"
                     "\"clients\":[{\"guid\":\"GUID-1\",\"department\":\"Sales\"}]}"));
    CHECK_INT(q_int(st, "SELECT count(*) FROM task_servers"), 2);
    CHECK_STR(q_text(st, "SELECT host || ' ' || ip || ' ' || capacity || ' ' || connections ||"
                         " ' ' || response_ms || ' ' || service FROM task_servers"
                         " WHERE name = 'ts-lon-01'"),
              "ts-lon-01.corp 10.10.0.5 1000 400 12 stopped");
    /* Its site list was not in the document: kept. */
    CHECK_INT(q_int(st, "SELECT count(*) FROM server_sites ss JOIN task_servers t"
                        " ON t.id = ss.server_id WHERE t.name = 'ts-lon-01'"),
              1);
    CHECK_STR(q_text(st, "SELECT name || ' ' || ip || ' ' || department FROM clients"),
              "LON-PC-0001 10.10.3.17 Sales");
    tsl_store_free(st);
}

TEST(import__null_clears_an_optional_field)
{
    tsl_store *st = open_base();

    CHECK(st != NULL);
    CHECK_OK(imp(st, "{\"sites\":[{\"name\":\"London\",\"country\":null}],"
                     "\"clients\":[{\"guid\":\"GUID-1\",\"ip\":\"\",\"site\":\"Dublin\"}]}"));
    CHECK_STR(q_text(st, "SELECT country FROM sites WHERE name = 'London'"), "(null)");
    CHECK_STR(q_text(st, "SELECT latitude FROM sites WHERE name = 'London'"), "51.5");
    CHECK_STR(q_text(st, "SELECT ip FROM clients"), "(null)");
    CHECK_STR(q_text(st, "SELECT s.name FROM clients c JOIN sites s ON s.id = c.site_id"),
              "Dublin");
    CHECK_OK(imp(st, "{\"clients\":[{\"guid\":\"GUID-1\",\"site\":null}]}"));
    CHECK_STR(q_text(st, "SELECT site_id FROM clients"), "(null)");
    tsl_store_free(st);
}

TEST(import__lists_are_replaced_only_when_the_key_is_present)
{
    tsl_store *st = open_base();

    CHECK(st != NULL);
    /* London without "subnets": its two subnets stay. */
    CHECK_OK(imp(st, "{\"sites\":[{\"name\":\"London\",\"country\":\"UK\"}]}"));
    CHECK_INT(q_int(st, "SELECT count(*) FROM site_subnets n JOIN sites s ON s.id = n.site_id"
                        " WHERE s.name = 'London'"),
              2);
    /* With "subnets": replaced by exactly the new list. */
    CHECK_OK(imp(st, "{\"sites\":[{\"name\":\"London\",\"subnets\":[\"10.12.0.0/16\"]}]}"));
    CHECK_STR(q_text(st, "SELECT group_concat(cidr) FROM site_subnets n JOIN sites s"
                         " ON s.id = n.site_id WHERE s.name = 'London'"),
              "10.12.0.0/16");
    /* A server's sites: replaced in the new order; an empty list clears. */
    CHECK_OK(imp(st, "{\"task_servers\":[{\"name\":\"ts-dub-01\",\"sites\":[\"London\","
                     "\"Dublin\"]},{\"name\":\"ts-lon-01\",\"sites\":[]}]}"));
    CHECK_STR(q_text(st, "SELECT group_concat(name, ',') FROM (SELECT s.name FROM server_sites ss"
                         " JOIN sites s ON s.id = ss.site_id JOIN task_servers t"
                         " ON t.id = ss.server_id WHERE t.name = 'ts-dub-01'"
                         " ORDER BY ss.position)"),
              "London,Dublin");
    CHECK_INT(q_int(st, "SELECT count(*) FROM server_sites ss JOIN task_servers t"
                        " ON t.id = ss.server_id WHERE t.name = 'ts-lon-01'"),
              0);
    tsl_store_free(st);
}

TEST(import__subnets_can_move_between_sites_in_one_document)
{
    tsl_store *st = open_base();

    CHECK(st != NULL);
    /* London takes Dublin's subnet while Dublin gives it up, in one
     * document, listed in the "wrong" order. */
    CHECK_OK(imp(st, "{\"sites\":[{\"name\":\"London\",\"subnets\":[\"10.20.0.0/16\"]},"
                     "{\"name\":\"Dublin\",\"subnets\":[\"10.10.0.0/16\"]}]}"));
    CHECK_STR(q_text(st, "SELECT s.name FROM site_subnets n JOIN sites s ON s.id = n.site_id"
                         " WHERE cidr = '10.20.0.0/16'"),
              "London");
    CHECK_STR(q_text(st, "SELECT s.name FROM site_subnets n JOIN sites s ON s.id = n.site_id"
                         " WHERE cidr = '10.10.0.0/16'"),
              "Dublin");
    tsl_store_free(st);
}

TEST(import__references_resolve_to_the_document_or_the_store)
{
    tsl_store *st = open_base();

    CHECK(st != NULL);
    /* Paris is new in this document, London is in the store. */
    CHECK_OK(imp(st, "{\"sites\":[{\"name\":\"Paris\",\"subnets\":[\"10.30.0.0/16\"]}],"
                     "\"task_servers\":[{\"name\":\"ts-par-01\",\"sites\":[\"Paris\","
                     "\"London\"]}],"
                     "\"clients\":[{\"guid\":\"GUID-2\",\"site\":\"Paris\"}],"
                     "\"connection_errors\":[{\"client\":\"GUID-2\",\"server\":\"ts-dub-01\","
                     "\"at\":\"2026-11-25T09:58:00Z\",\"error\":\"timeout\"}]}"));
    CHECK_INT(q_int(st, "SELECT count(*) FROM server_sites"), 5);
    CHECK_INT(q_int(st, "SELECT count(*) FROM connection_errors"), 2);
    tsl_store_free(st);
}

TEST(import__identical_connection_errors_are_kept_once)
{
    tsl_store *st = open_base();
    const char *doc = "{\"connection_errors\":["
                      "{\"client\":\"GUID-1\",\"server\":\"ts-lon-01\",\"at\":1795600680},"
                      "{\"client\":\"guid-1\",\"server\":\"TS-LON-01\","
                      "\"at\":\"2026-11-25T09:58:00Z\",\"error\":\"again\"},"
                      "{\"client\":\"GUID-1\",\"server\":\"ts-lon-01\",\"at\":1795600681}]}";

    CHECK(st != NULL);
    CHECK_OK(imp(st, doc));
    CHECK_OK(imp(st, doc));
    CHECK_INT(q_int(st, "SELECT count(*) FROM connection_errors"), 2);
    CHECK_STR(q_text(st, "SELECT error FROM connection_errors WHERE at = 1795600680"), "timeout");
    tsl_store_free(st);
}

TEST(import__names_and_guids_match_case_insensitively)
{
    tsl_store *st = open_base();

    CHECK(st != NULL);
    CHECK_OK(imp(st, "{\"sites\":[{\"name\":\"LONDON\",\"country\":\"UK\"}],"
                     "\"task_servers\":[{\"name\":\"TS-LON-01\",\"sites\":[\"dublin\"]}],"
                     "\"clients\":[{\"guid\":\"guid-1\",\"name\":\"renamed\"}]}"));
    CHECK_INT(q_int(st, "SELECT count(*) FROM sites"), 2);
    CHECK_INT(q_int(st, "SELECT count(*) FROM task_servers"), 2);
    CHECK_INT(q_int(st, "SELECT count(*) FROM clients"), 1);
    CHECK_STR(q_text(st, "SELECT name || ' ' || country FROM sites WHERE name = 'london'"),
              "London UK");
    CHECK_STR(q_text(st, "SELECT name FROM clients WHERE guid = 'GUID-1'"), "renamed");
    tsl_store_free(st);
}

TEST(import__addresses_are_stored_in_canonical_form)
{
    tsl_store *st = open_new();

    CHECK(st != NULL);
    CHECK_OK(imp(st, "{\"sites\":[{\"name\":\"A\",\"subnets\":[\"FD00:0010:0000::/48\","
                     "\"10.1.0.0/16\"]}],"
                     "\"task_servers\":[{\"name\":\"t\",\"ip\":\"FD00:0010::0001\"}]}"));
    CHECK_STR(q_text(st, "SELECT group_concat(cidr, ' ') FROM (SELECT cidr FROM site_subnets"
                         " ORDER BY cidr)"),
              "10.1.0.0/16 fd00:10::/48");
    CHECK_STR(q_text(st, "SELECT ip FROM task_servers"), "fd00:10::1");
    tsl_store_free(st);
}

TEST(import__sections_are_optional)
{
    tsl_store *st = open_new();

    CHECK(st != NULL);
    CHECK_OK(imp(st, "{}"));
    CHECK_OK(imp(st, "{\"$schema\":\"../schema/inventory.schema.json\",\"sites\":null,"
                     "\"clients\":[{\"guid\":\"G\"}]}"));
    CHECK_INT(rows(st), 1);
    tsl_store_free(st);
}

TEST(import__unknown_key_or_field_is_refused_with_a_did_you_mean)
{
    EXPECT_REJECTED("{\"site\":[{\"name\":\"Rome\"}]}",
                    "inventory.json: unknown key \"site\": did you mean \"sites\"? (expected "
                    "sites, task_servers, clients, connection_errors, $schema)");
    EXPECT_REJECTED("{\"clients\":[{\"guid\":\"G-9\",\"ips\":[\"10.10.0.9\"]}]}",
                    "inventory.json: clients[0] \"G-9\": unknown field \"ips\": did you mean "
                    "\"ip\"? (expected guid, name, ip, department, site)");
    EXPECT_REJECTED("{\"sites\":[" VALID_FIRST ",{\"name\":\"Rome\",\"subnet\":[]}]}",
                    "sites[2] \"Rome\": unknown field \"subnet\": did you mean \"subnets\"?");
    EXPECT_REJECTED("{\"task_servers\":[{\"name\":\"ts-x\",\"os\":\"Windows\"}]}",
                    "task_servers[0] \"ts-x\": unknown field \"os\" (expected name, host, ip, "
                    "sites, registered, service, capacity, connections, response_ms, "
                    "last_heartbeat)");
    EXPECT_REJECTED("{\"connection_errors\":[{\"client\":\"GUID-1\",\"server\":\"ts-lon-01\","
                    "\"at\":1,\"eror\":\"x\"}]}",
                    "connection_errors[0]: unknown field \"eror\": did you mean \"error\"?");
}

TEST(import__ignore_unknown_accepts_and_lists_what_it_ignored)
{
    tsl_store *st = open_new();
    tsl_buf notes = TSL_BUF_INIT;
    tsl_import_options opt = {true, NULL, &notes};
    const char *doc = "{\"version\":2,\"clients\":[{\"guid\":\"G1\",\"os\":\"Windows 11\","
                      "\"ip\":\"10.1.1.1\"},{\"guid\":\"G2\",\"os\":\"Windows 10\","
                      "\"tags\":[1]}]}";

    CHECK(st != NULL);
    CHECK_OK(tsl_store_import_json_opt(st, doc, strlen(doc), "estate.json", &opt));
    CHECK_INT(q_int(st, "SELECT count(*) FROM clients"), 2);
    CHECK_CONTAINS(notes.ptr, "estate.json: ignored unknown key \"version\"\n");
    CHECK_CONTAINS(notes.ptr, "estate.json: ignored unknown field \"os\" in 2 clients records "
                              "(first: estate.json: clients[0] \"G1\")\n");
    CHECK_CONTAINS(notes.ptr, "ignored unknown field \"tags\" in 1 clients record (first: "
                              "estate.json: clients[1] \"G2\")");
    /* G2 has neither an IP nor a site */
    CHECK_CONTAINS(notes.ptr, "warning: 1 client has neither an IP nor a site, so the default "
                              "logic offers it every Task Server: G2\n");
    tsl_buf_free(&notes);
    tsl_store_free(st);
}

TEST(import__clients_without_ip_or_site_are_reported_by_count_and_name)
{
    tsl_store *st = open_base();
    tsl_buf notes = TSL_BUF_INIT;
    tsl_import_options opt = {false, NULL, &notes};
    const char *doc = "{\"clients\":[{\"guid\":\"G-A\",\"name\":\"LON-PC-0100\"},"
                      "{\"guid\":\"G-B\",\"name\":\"LON-PC-0101\",\"site\":\"London\"},"
                      "{\"guid\":\"G-C\"}]}";

    CHECK(st != NULL);
    CHECK_OK(tsl_store_import_json_opt(st, doc, strlen(doc), "more.json", &opt));
    CHECK_CONTAINS(notes.ptr, "warning: 2 clients have neither an IP nor a site, so the default "
                              "logic offers them every Task Server: LON-PC-0100, G-C\n");
    tsl_buf_free(&notes);
    tsl_store_free(st);
}

TEST(import__json_with_a_byte_order_mark_imports)
{
    tsl_store *st = open_new();
    const char *doc = "\xef\xbb\xbf{\"sites\":[{\"name\":\"Rome\"}]}";

    CHECK(st != NULL);
    CHECK_OK(imp(st, doc));
    CHECK_STR(q_text(st, "SELECT name FROM sites"), "Rome");
    tsl_store_free(st);
}

TEST(import__invalid_utf8_and_nul_escapes_are_refused)
{
    EXPECT_REJECTED("{\"sites\":[{\"name\":\"Ro\xffme\"}]}", "inventory.json:1:");
    EXPECT_REJECTED("{\"sites\":[{\"name\":\"Ro\\u0000me\"}]}", "inventory.json:1:");
    EXPECT_REJECTED("{\"sites\":[{\"name\":\"Ro\\ud800me\"}]}", "inventory.json:1:");
}

TEST(import__export_spellings_of_values_are_accepted)
{
    tsl_store *st = open_new();
    const char *doc =
        "{\"task_servers\":[{\"name\":\"ts-a\",\"service\":\"Running\",\"registered\":\"Yes\","
        "\"capacity\":\"5,000\",\"connections\":\"1,234\",\"last_heartbeat\":"
        "\"2026-12-01 10:00:00.123\"},"
        "{\"name\":\"ts-b\",\"service\":\"STOPPED\",\"registered\":0}]}";

    CHECK(st != NULL);
    CHECK_OK(imp(st, doc));
    CHECK_STR(q_text(st, "SELECT service || registered || capacity || '/' || connections || '/' ||"
                         " last_heartbeat FROM task_servers WHERE name = 'ts-a'"),
              "running15000/1234/1796119200");
    CHECK_STR(q_text(st, "SELECT service || registered FROM task_servers WHERE name = 'ts-b'"),
              "stopped0");
    tsl_store_free(st);
}

TEST(import__times_without_a_zone_read_in_the_named_zone)
{
    tsl_store *st = open_new();
    tsl_import_options london = {false, "Europe/London", NULL};
    tsl_import_options offset = {false, "+05:30", NULL};
    tsl_import_options bad = {false, "Mars/Olympus", NULL};
    /* British summer time (+01:00) in July, GMT in December */
    const char *summer = "{\"task_servers\":[{\"name\":\"ts-a\",\"last_heartbeat\":"
                         "\"2026-07-01 10:00:00\"}]}";
    const char *winter = "{\"task_servers\":[{\"name\":\"ts-b\",\"last_heartbeat\":"
                         "\"2026-12-01T10:00:00\"}]}";
    const char *zoned = "{\"task_servers\":[{\"name\":\"ts-c\",\"last_heartbeat\":"
                        "\"2026-07-01T10:00:00Z\"}]}";

    CHECK(st != NULL);
    CHECK_OK(tsl_store_import_json_opt(st, summer, strlen(summer), "a.json", &london));
    CHECK_OK(tsl_store_import_json_opt(st, winter, strlen(winter), "b.json", &london));
    CHECK_OK(tsl_store_import_json_opt(st, zoned, strlen(zoned), "c.json", &london));
    /* 2026-07-01T09:00:00Z, 2026-12-01T10:00:00Z, the explicit Z kept */
    CHECK_INT(q_int(st, "SELECT last_heartbeat FROM task_servers WHERE name = 'ts-a'"),
              1782896400);
    CHECK_INT(q_int(st, "SELECT last_heartbeat FROM task_servers WHERE name = 'ts-b'"),
              1796119200);
    CHECK_INT(q_int(st, "SELECT last_heartbeat FROM task_servers WHERE name = 'ts-c'"),
              1782900000);
    CHECK_OK(tsl_store_import_json_opt(st, summer, strlen(summer), "a.json", &offset));
    CHECK_INT(q_int(st, "SELECT last_heartbeat FROM task_servers WHERE name = 'ts-a'"),
              1782900000 - 19800);
    CHECK_INT(tsl_store_import_json_opt(st, summer, strlen(summer), "a.json", &bad),
              TSL_EINVALID);
    CHECK_CONTAINS(tsl_error_last(), "unknown time zone \"Mars/Olympus\"");
    bad.timezone = "../../etc/passwd";
    CHECK_INT(tsl_store_import_json_opt(st, summer, strlen(summer), "a.json", &bad),
              TSL_EINVALID);
    CHECK_CONTAINS(tsl_error_last(), "is neither an offset like +01:00 nor a zone name");
    tsl_store_free(st);
}

TEST(import__local_times_around_clock_changes_are_deterministic)
{
    tsl_store *st = open_new();
    tsl_import_options london = {false, "Europe/London", NULL};
    /* 2026-10-25 01:30 happens twice in London: the first (BST) is read;
     * 2026-03-29 01:30 never happens: read with the offset before (GMT). */
    const char *twice = "{\"task_servers\":[{\"name\":\"ts-a\",\"last_heartbeat\":"
                        "\"2026-10-25 01:30:00\"},{\"name\":\"ts-b\",\"last_heartbeat\":"
                        "\"2026-03-29 01:30:00\"}]}";

    CHECK(st != NULL);
    CHECK_OK(tsl_store_import_json_opt(st, twice, strlen(twice), "a.json", &london));
    CHECK_INT(q_int(st, "SELECT last_heartbeat FROM task_servers WHERE name = 'ts-a'"),
              1792891800 - 3600);
    CHECK_INT(q_int(st, "SELECT last_heartbeat FROM task_servers WHERE name = 'ts-b'"),
              1774747800);
    tsl_store_free(st);
}

/* ------------------------------------------------------------------------
 * CSV
 * ---------------------------------------------------------------------- */

/* Writes tmpdir/name (creating its directory) and returns the path. */
static const char *write_fixture(const char *name, const char *content)
{
    const char *path = tsl_test_path(name);
    if (tsl_test_sh(NULL, false, "mkdir -p \"$(dirname '%s')\"", path) != 0 ||
        tsl_test_write(path, content) != 0)
        return NULL;
    return path;
}

static int import_csv1(tsl_store *st, const char *path, const char *kind)
{
    const char *paths[1] = {path}, *kinds[1] = {kind};
    return tsl_store_import_csv(st, paths, kinds, 1);
}

TEST(csv__quoting_bom_crlf_and_any_column_order)
{
    tsl_store *st = open_new();
    const char *sites = write_fixture(
        "q/sites.csv",
        "\xef\xbb\xbf" "country,notes,name,subnets,latitude\r\n"
        "GB,\"big, busy office\",London,\"10.10.0.0/16; fd00:10::/48\",51.5\r\n"
        "IE,,\"Dub\"\"lin\",10.20.0.0/16 10.21.0.0/16,\r\n");
    const char *servers = write_fixture(
        "q/task_servers.csv",
        "name,sites,registered,service,capacity,last_heartbeat\r\n"
        "ts-lon-01,\"London; Dub\"\"lin\",Yes,running,1000,2026-11-25T09:58:00Z\r\n"
        "ts-lon-02,,0,stopped,,1795600680\r\n");
    const char *clients = write_fixture(
        "q/clients.csv",
        "guid,ip,department\r\n"
        "G-1,10.10.3.17,\"Finance, EMEA\"\r\n");
    const char *errors = write_fixture(
        "q/connection_errors.csv",
        "client,server,at,error\r\n"
        "G-1,ts-lon-01,1795600680,\"HTTP 503, \"\"Service\r\nUnavailable\"\"\"\r\n");
    const char *paths[4] = {errors, clients, servers, sites}; /* any order */
    char *d;

    CHECK(st && sites && servers && clients && errors);
    CHECK_OK(tsl_store_import_csv(st, paths, NULL, 4));
    d = dump(st);
    CHECK(d != NULL);
    CHECK_CONTAINS(d, "site|Dub\"lin|IE|NULL|NULL\n");
    CHECK_CONTAINS(d, "site|London|GB|51.5|NULL\n");
    CHECK_CONTAINS(d, "subnet|Dub\"lin|10.20.0.0/16\nsubnet|Dub\"lin|10.21.0.0/16\n");
    CHECK_CONTAINS(d, "subnet|London|10.10.0.0/16\nsubnet|London|fd00:10::/48\n");
    CHECK_CONTAINS(d, "server|ts-lon-01|NULL|NULL|1|running|1000|0|0|1795600680\n");
    CHECK_CONTAINS(d, "server|ts-lon-02|NULL|NULL|0|stopped|5000|0|0|1795600680\n");
    CHECK_CONTAINS(d, "server_site|ts-lon-01|0|London\nserver_site|ts-lon-01|1|Dub\"lin\n");
    CHECK_CONTAINS(d, "client|G-1|NULL|10.10.3.17|Finance, EMEA|NULL|NULL|NULL\n");
    CHECK_CONTAINS(d, "error|G-1|ts-lon-01|1795600680|HTTP 503, \"Service\r\nUnavailable\"\n");
    free(d);
    tsl_store_free(st);
}

TEST(csv__bad_row_names_file_and_line_and_writes_nothing)
{
    tsl_store *st = open_new();
    const char *sites = write_fixture("b/sites.csv", "name,subnets\nLondon,10.10.0.0/16\n");
    const char *clients = write_fixture("b/clients.csv",
                                        "guid,name,ip,notes\n"
                                        "G-1,PC1,10.10.0.1,\n"
                                        "G-2,PC2,10.10.0.2,\n"
                                        "  \n" /* blank lines are skipped */
                                        "G-3,PC3,10.10.0.3,\"two\nlines\"\n" /* 5-6 */
                                        "G-4,PC4,10.10.0.300,\n");              /* 7 */
    const char *paths[2] = {sites, clients};
    char expect[600];

    CHECK(st && sites && clients);
    CHECK_INT(tsl_store_import_csv(st, paths, NULL, 2), TSL_EINVALID);
    snprintf(expect, sizeof expect,
             "%s line 7: field \"ip\" must be an IPv4 or IPv6 address (got \"10.10.0.300\")",
             clients);
    CHECK_STR(tsl_error_last(), expect);
    CHECK_INT(rows(st), 0);
    tsl_store_free(st);
}

TEST(csv__cells_that_do_not_parse_reach_validation_as_text)
{
    tsl_store *st = open_new();
    const char *a = write_fixture("c/task_servers.csv", "name,capacity\nts-a,12\nts-b,-5\n");
    const char *b = write_fixture("c2/task_servers.csv", "name,capacity\nts-a,lots\n");
    const char *c = write_fixture("c3/task_servers.csv", "name,registered\nts-a,maybe\n");
    const char *d = write_fixture("c4/sites.csv", "name,latitude\nRome,north\n");

    CHECK(st && a && b && c && d);
    CHECK_INT(import_csv1(st, a, NULL), TSL_EINVALID);
    CHECK_CONTAINS(tsl_error_last(),
                   "c/task_servers.csv line 3: field \"capacity\" must be a non-negative integer "
                   "(got -5)");
    CHECK_INT(import_csv1(st, b, NULL), TSL_EINVALID);
    CHECK_CONTAINS(tsl_error_last(), "line 2: field \"capacity\" must be a non-negative integer "
                                     "(got \"lots\")");
    CHECK_INT(import_csv1(st, c, NULL), TSL_EINVALID);
    CHECK_CONTAINS(tsl_error_last(), "line 2: field \"registered\" must be true or false (or "
                                     "yes/no, 1/0) (got \"maybe\")");
    CHECK_INT(import_csv1(st, d, NULL), TSL_EINVALID);
    CHECK_CONTAINS(tsl_error_last(), "line 2: field \"latitude\" must be a number");
    CHECK_INT(rows(st), 0);
    tsl_store_free(st);
}

TEST(csv__registered_accepts_true_false_yes_no_1_0)
{
    tsl_store *st = open_new();
    const char *p = write_fixture("r/task_servers.csv",
                                  "name,registered\na,true\nb,FALSE\nc,yes\nd,No\ne,1\nf,0\n");

    CHECK(st && p);
    CHECK_OK(import_csv1(st, p, NULL));
    CHECK_STR(q_text(st, "SELECT group_concat(registered, '') FROM (SELECT registered FROM"
                         " task_servers ORDER BY name)"),
              "101010");
    tsl_store_free(st);
}

TEST(csv__kind_comes_from_the_name_or_the_caller)
{
    tsl_store *st = open_new();
    const char *p = write_fixture("k/export-2026.csv", "guid\nG-1\n");
    const char *q = write_fixture("k/CLIENTS.CSV", "guid\nG-2\n");

    CHECK(st && p && q);
    CHECK_INT(import_csv1(st, p, NULL), TSL_EINVALID);
    CHECK_CONTAINS(tsl_error_last(), "export-2026.csv: cannot tell which table the file holds");
    CHECK_INT(import_csv1(st, p, "servers"), TSL_EINVALID);
    CHECK_CONTAINS(tsl_error_last(), "unknown kind \"servers\"");
    CHECK_OK(import_csv1(st, p, "clients"));
    CHECK_OK(import_csv1(st, q, NULL));
    CHECK_INT(q_int(st, "SELECT count(*) FROM clients"), 2);
    tsl_store_free(st);
}

TEST(csv__malformed_files_are_rejected_with_file_and_line)
{
    tsl_store *st = open_new();
    struct {
        const char *name, *content, *needle;
    } cases[] = {
        {"m1/clients.csv", "name,ip\nPC,10.0.0.1\n", "line 1: no column gives the client's \"guid\" (accepted, in any case: \"guid\", "
                   "\"Resource Guid\", \"_ResourceGuid\", \"Client Guid\")"},
        {"m2/clients.csv", "guid,ip,GUID\nG,1.2.3.4,H\n", "line 1: column \"GUID\" appears twice (columns 1 and 3)"},
        {"m3/clients.csv", "", "no header row"},
        {"m4/clients.csv", "guid,ip\nG,1.2.3.4,extra\n", "line 2: 3 fields, but the header has 2"},
        {"m5/clients.csv", "guid,ip\nG,\"1.2.3.4\n", "line 2: quoted field is never closed"},
        {"m6/clients.csv", "guid,name\nG,PC \"7\"\n", "line 2: a quote inside an unquoted field"},
        {"m7/clients.csv", "guid,name\nG,\"PC\"7\n", "line 2: unexpected text after a closing"},
        {"m8/clients.csv", "guid,name\nG,PC\xff\n", "line 2: field \"name\" is not valid UTF-8"},
        {"m9/connection_errors.csv", "client,server,error\n",
         "no column gives the connection error's \"at\" (accepted, in any case: \"at\", "
         "\"Time\", \"Timestamp\", \"Date\")"},
        {"m10/sites.csv", "Site,Subnet,Subnet Mask\nLondon,10.1.0.0,255.0.255.0\n",
         "line 2: field \"Subnet Mask\": \"255.0.255.0\" is not contiguous"},
        {"m11/sites.csv", "Site,Subnet\nLondon,10.1.0.0\n",
         "line 2: field \"Subnet\": \"10.1.0.0\" has no prefix length"},
        {"m12/sites.csv", "Site,Subnet,Subnet Mask\nLondon,10.1.0.0/24,255.255.0.0\n",
         "line 2: field \"Subnet Mask\": 255.255.0.0 says /16 but the subnet is written "
         "10.1.0.0/24"},
        {"m13/sites.csv", "Site,Country\nLondon,GB\nlondon,FR\n",
         "line 3: site \"london\": field \"country\" differs from"},
        {"m14/clients.csv", "gu\xffid,ip\nG,1.2.3.4\n", "line 1: header column 1 is not valid UTF-8"},
    };

    CHECK(st != NULL);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *p = write_fixture(cases[i].name, cases[i].content);
        CHECK(p != NULL);
        CHECK_INT(import_csv1(st, p, NULL), TSL_EINVALID);
        CHECK_CONTAINS(tsl_error_last(), cases[i].name);
        CHECK_CONTAINS(tsl_error_last(), cases[i].needle);
    }
    CHECK_INT(import_csv1(st, tsl_test_path("nope/clients.csv"), NULL), TSL_ENOTFOUND);
    CHECK_CONTAINS(tsl_error_last(), "cannot open");
    CHECK_INT(rows(st), 0);
    tsl_store_free(st);
}

/* ------------------------------------------------------------------------
 * The demo estate
 * ---------------------------------------------------------------------- */

static tsl_store *open_demo_json(void)
{
    tsl_store *st = open_new();
    size_t len = 0;
    char *json = tsl_test_read(TSL_SOURCE_DIR "/policies/demo/estate.json", &len);

    if (!st || !json || tsl_store_import_json(st, json, len, "estate.json") < 0) {
        fprintf(stderr, "  demo import: %s\n", tsl_error_last());
        tsl_store_free(st);
        st = NULL;
    }
    free(json);
    return st;
}

TEST(demo__json_and_csv_estates_import_to_the_same_inventory)
{
    tsl_store *a = open_demo_json(), *b = open_new();
    const char *paths[4] = {
        TSL_SOURCE_DIR "/policies/demo/csv/sites.csv",
        TSL_SOURCE_DIR "/policies/demo/csv/task_servers.csv",
        TSL_SOURCE_DIR "/policies/demo/csv/clients.csv",
        TSL_SOURCE_DIR "/policies/demo/csv/connection_errors.csv",
    };
    char *da = NULL, *db = NULL;

    CHECK(a && b);
    CHECK_OK(tsl_store_import_csv(b, paths, NULL, 4));
    CHECK_INT(q_int(a, "SELECT count(*) FROM sites"), 9);
    CHECK_INT(q_int(a, "SELECT count(*) FROM task_servers"), 17);
    CHECK_INT(q_int(a, "SELECT count(*) FROM clients"), 40);
    CHECK_INT(q_int(a, "SELECT count(*) FROM connection_errors"), 4);
    da = dump(a);
    db = dump(b);
    CHECK(da && db);
    if (strcmp(da, db) != 0) {
        fprintf(stderr, "JSON:\n%s\nCSV:\n%s\n", da, db);
        free(da);
        free(db);
        FAILF_("the JSON and CSV demo estates differ");
    }
    /* Importing the same estate again changes nothing. */
    CHECK_OK(tsl_store_import_csv(a, paths, NULL, 4));
    free(db);
    db = dump(a);
    CHECK(db && strcmp(da, db) == 0);
    free(da);
    free(db);
    tsl_store_free(a);
    tsl_store_free(b);
}

/* ------------------------------------------------------------------------
 * Snapshot loading
 * ---------------------------------------------------------------------- */

TEST(snapshot_load__demo_estate_counts_and_fields)
{
    tsl_store *st = open_demo_json();
    tsl_snapshot *snap = NULL;
    tsl_settings set;
    const snap_site *lon;
    const snap_server *sv;
    const snap_client *c;
    int32_t i;

    CHECK(st != NULL);
    tsl_settings_init(&set);
    set.max = 4;
    CHECK_OK(tsl_snapshot_load(&snap, st, &set));
    CHECK_INT(tsl_snapshot_site_count(snap), 9);
    CHECK_INT(tsl_snapshot_server_count(snap), 17);
    CHECK_INT(tsl_snapshot_client_count(snap), 40);
    CHECK_INT(snap->nerrors, 4);
    CHECK_INT(tsl_snapshot_settings(snap)->max, 4);

    CHECK((i = snap_find_site(snap, "London")) >= 0);
    lon = &snap->sites[i];
    CHECK_STR(lon->country, "GB");
    CHECK(lon->has_coords && lon->lat > 51.50 && lon->lat < 51.51);
    CHECK_INT(lon->nsubnets, 2);
    CHECK_STR(lon->subnets[0], "10.10.0.0/16");
    CHECK_STR(lon->subnets[1], "fd00:10::/48");

    CHECK((i = snap_find_server(snap, "ts-dub-01")) >= 0);
    sv = &snap->servers[i];
    CHECK_INT(sv->nsites, 2);
    CHECK_STR(snap->sites[sv->sites[0]].name, "Dublin");
    CHECK_STR(snap->sites[sv->sites[1]].name, "London");
    CHECK_STR(snap->sites[sv->home].name, "Dublin");
    CHECK_STR(sv->host, "ts-dub-01.corp.example");
    CHECK_STR(sv->ip, "10.20.0.5");
    CHECK(sv->registered && sv->running);
    CHECK_INT(sv->capacity, 5000);
    CHECK_INT(sv->connections, 640);
    CHECK_INT(sv->response_ms, 18);

    /* No manual site: its home is where its IP resolves. */
    sv = &snap->servers[snap_find_server(snap, "ts-dub-02")];
    CHECK_INT(sv->nsites, 0);
    CHECK_STR(snap->sites[sv->home].name, "Dublin");
    CHECK(!snap->servers[snap_find_server(snap, "ts-par-02")].running);
    CHECK(!snap->servers[snap_find_server(snap, "ts-fra-02")].registered);
    CHECK_INT(snap->servers[snap_find_server(snap, "ts-sin-02")].heartbeat, 1748736000);
    CHECK_INT(snap->servers[snap_find_server(snap, "ts-sin-01")].heartbeat, 0);
    CHECK_STR(snap->sites[snap->servers[snap_find_server(snap, "ts-lon-lab")].home].name,
              "London Lab");

    /* An explicit site; a department; errors attached to their client. */
    for (i = 0; i < (int32_t)snap->nclients; i++)
        if (!strcmp(snap->clients[i].name, "TYO-LT-0101"))
            break;
    CHECK(i < (int32_t)snap->nclients);
    c = &snap->clients[i];
    CHECK_STR(snap->sites[c->site].name, "Tokyo");
    CHECK_STR(c->department, "Sales");
    CHECK_STR(c->ip, "10.10.7.50");
    for (i = 0; i < (int32_t)snap->nclients; i++)
        if (!strcmp(snap->clients[i].name, "LON-PC-0001"))
            break;
    c = &snap->clients[i];
    CHECK_INT(c->site, TSL_NO_SITE);
    CHECK_INT(c->nerr, 1);
    CHECK_STR(snap->servers[snap->errors[c->err_off].server].name, "ts-fin-01");
    CHECK_INT(snap->errors[c->err_off].at, 1795600680);
    tsl_snapshot_free(snap);
    tsl_store_free(st);
}

TEST(snapshot_load__empty_store_gives_an_empty_snapshot)
{
    tsl_store *st = open_new();
    tsl_snapshot *snap = NULL;

    CHECK(st != NULL);
    CHECK_OK(tsl_snapshot_load(&snap, st, NULL));
    CHECK_INT(tsl_snapshot_site_count(snap), 0);
    CHECK_INT(tsl_snapshot_client_count(snap), 0);
    CHECK_INT(tsl_snapshot_settings(snap)->max, 10);
    tsl_snapshot_free(snap);
    tsl_store_free(st);
}

TEST(snapshot_load__failure_frees_and_sets_out_null)
{
    tsl_store *st = open_new();
    tsl_snapshot *snap = (tsl_snapshot *)&snap;

    CHECK(st != NULL);
    /* A row the importer would never write (the store was edited by
     * hand): the builder refuses it and the load fails cleanly. */
    CHECK_INT(sqlite3_exec(tsl_store_db(st),
                           "INSERT INTO sites(name) VALUES ('A');"
                           "INSERT INTO clients(guid, ip) VALUES ('G', 'not-an-ip')",
                           NULL, NULL, NULL),
              SQLITE_OK);
    CHECK_INT(tsl_snapshot_load(&snap, st, NULL), TSL_EINVALID);
    CHECK_NULL(snap);
    CHECK_CONTAINS(tsl_error_last(), "not-an-ip");
    /* The read transaction was closed: the store can still be written. */
    CHECK_OK(imp(st, "{\"sites\":[{\"name\":\"B\"}]}"));
    tsl_store_free(st);
}

/* ------------------------------------------------------------------------
 * The estate generator
 * ---------------------------------------------------------------------- */

TEST(estate__same_seed_same_estate_other_seed_differs)
{
    tsl_store *a = open_new(), *b = open_new(), *c = open_new();
    char *da, *db, *dc;
    bool same, differs;

    CHECK(a && b && c);
    CHECK_OK(tsl_estate_generate(a, 20, 40, 2000, 7));
    CHECK_OK(tsl_estate_generate(b, 20, 40, 2000, 7));
    CHECK_OK(tsl_estate_generate(c, 20, 40, 2000, 8));
    da = dump(a);
    db = dump(b);
    dc = dump(c);
    same = da && db && strcmp(da, db) == 0;
    differs = da && dc && strcmp(da, dc) != 0;
    free(da);
    free(db);
    free(dc);
    CHECK(same);
    CHECK(differs);
    tsl_store_free(a);
    tsl_store_free(b);
    tsl_store_free(c);
}

TEST(estate__counts_and_mix_match_the_request)
{
    tsl_store *st = open_new();
    tsl_snapshot *snap = NULL;
    uint32_t unmatched = 0, explicit_site = 0, i;
    long long n;

    CHECK(st != NULL);
    CHECK_OK(tsl_estate_generate(st, 30, 90, 10000, 42));
    CHECK_INT(q_int(st, "SELECT count(*) FROM sites"), 30);
    CHECK_INT(q_int(st, "SELECT count(*) FROM task_servers"), 90);
    CHECK_INT(q_int(st, "SELECT count(*) FROM clients"), 10000);
    /* Every site has an IPv4 subnet; some are dual-stack; some own a /24
     * inside another site's /16. */
    CHECK_INT(q_int(st, "SELECT count(*) FROM sites WHERE id NOT IN (SELECT site_id FROM"
                        " site_subnets WHERE cidr NOT LIKE '%:%')"),
              0);
    CHECK(q_int(st, "SELECT count(*) FROM site_subnets WHERE cidr LIKE '%/48'") > 0);
    CHECK(q_int(st, "SELECT count(*) FROM sites WHERE country IS NULL OR latitude IS NULL") == 0);
    /* Servers: named after their site, some unassigned, some down. */
    CHECK(q_int(st, "SELECT count(*) FROM task_servers WHERE name NOT LIKE 'ts-%-__'") == 0);
    CHECK(q_int(st, "SELECT count(*) FROM task_servers WHERE id NOT IN"
                    " (SELECT server_id FROM server_sites)") > 0);
    CHECK(q_int(st, "SELECT count(*) FROM task_servers WHERE service = 'stopped'") > 0);
    CHECK(q_int(st, "SELECT count(*) FROM task_servers WHERE connections >= capacity") > 0);
    n = q_int(st, "SELECT count(DISTINCT department) FROM clients");
    CHECK(n >= 4 && n <= 8);
    CHECK(q_int(st, "SELECT count(*) FROM connection_errors") > 0);

    /* It loads: every subnet and address is valid and unique. */
    CHECK_OK(tsl_snapshot_load(&snap, st, NULL));
    CHECK_INT(tsl_snapshot_client_count(snap), 10000);
    for (i = 0; i < snap->nclients; i++) {
        tsl_lpm_match m;
        if (snap->clients[i].site != TSL_NO_SITE)
            explicit_site++;
        if (!snap->clients[i].has_addr || !tsl_lpm_lookup(&snap->lpm, &snap->clients[i].addr, &m))
            unmatched++;
    }
    /* ~5% explicit and ~2% without a matching subnet. */
    CHECK(explicit_site > 300 && explicit_site < 800);
    CHECK(unmatched > 100 && unmatched < 400);
    tsl_snapshot_free(snap);
    tsl_store_free(st);
}

TEST(estate__more_sites_than_cities_get_numbered_names)
{
    tsl_store *st = open_new();

    CHECK(st != NULL);
    CHECK_OK(tsl_estate_generate(st, 700, 700, 100, 3));
    CHECK_INT(q_int(st, "SELECT count(DISTINCT name) FROM sites"), 700);
    CHECK(q_int(st, "SELECT count(*) FROM sites WHERE name LIKE '%-2'") > 0);
    CHECK_INT(q_int(st, "SELECT count(DISTINCT name) FROM task_servers"), 700);
    tsl_store_free(st);
}

TEST(estate__refuses_a_store_with_an_inventory_and_bad_sizes)
{
    tsl_store *st = open_base();

    CHECK(st != NULL);
    CHECK_INT(tsl_estate_generate(st, 5, 5, 5, 1), TSL_EEXISTS);
    CHECK_CONTAINS(tsl_error_last(), "already holds an inventory");
    tsl_store_free(st);
    st = open_new();
    CHECK(st != NULL);
    CHECK_INT(tsl_estate_generate(st, 0, 5, 5, 1), TSL_ELIMIT);
    CHECK_INT(tsl_estate_generate(st, TSL_ESTATE_MAX_SITES + 1, 5, 5, 1), TSL_ELIMIT);
    CHECK_INT(tsl_estate_generate(st, 1, TSL_ESTATE_MAX_SERVERS + 1, 5, 1), TSL_ELIMIT);
    CHECK_INT(tsl_estate_generate(st, 1, 0, 0, 1), 0);
    CHECK_INT(rows(st), 2);   /* one site and its subnet */
    tsl_store_free(st);
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

TEST(estate__large_estate_generates_and_loads_in_seconds)
{
    tsl_store *st = open_new();
    tsl_snapshot *snap = NULL;
    struct timespec t0;
    double gen_s, load_s;

    CHECK(st != NULL);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK_OK(tsl_estate_generate(st, 500, 2000, 200000, 1));
    gen_s = seconds_since(&t0);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK_OK(tsl_snapshot_load(&snap, st, NULL));
    load_s = seconds_since(&t0);
    printf("# 500 sites, 2000 servers, 200000 clients: generated in %.2f s, loaded in %.2f s\n",
           gen_s, load_s);
    CHECK_INT(tsl_snapshot_client_count(snap), 200000);
    CHECK_INT(tsl_snapshot_server_count(snap), 2000);
    CHECK_INT(tsl_snapshot_site_count(snap), 500);
    /* Generous bounds: sanitizer builds are several times slower. */
    CHECK(gen_s < 30);
    CHECK(load_s < 20);
    tsl_snapshot_free(snap);
    tsl_store_free(st);
}

int main(void)
{
    RUN(import__negative_capacity_names_record_and_writes_nothing);
    RUN(import__bad_record_in_fresh_store_writes_no_rows);
    RUN(import__invalid_cidr_names_site_and_subnet);
    RUN(import__subnet_in_several_sites_imports_with_a_warning);
    RUN(import__unknown_site_of_server_or_client_is_rejected);
    RUN(import__invalid_ip_addresses_are_rejected);
    RUN(import__service_must_be_running_or_stopped);
    RUN(import__missing_name_or_guid_is_rejected);
    RUN(import__malformed_json_reports_line_and_column);
    RUN(import__connection_error_naming_unknown_client_or_server_is_rejected);
    RUN(import__wrong_types_and_ranges_are_rejected);
    RUN(import__document_shape_errors_are_rejected);
    RUN(import__long_names_are_rejected_at_the_limit);
    RUN(import__new_server_gets_itms_defaults);
    RUN(import__heartbeat_accepts_iso_8601_and_unix_seconds);
    RUN(time__parses_utc_iso_8601_and_refuses_the_rest);
    RUN(import__upsert_overwrites_given_fields_and_keeps_absent_ones);
    RUN(import__null_clears_an_optional_field);
    RUN(import__lists_are_replaced_only_when_the_key_is_present);
    RUN(import__subnets_can_move_between_sites_in_one_document);
    RUN(import__references_resolve_to_the_document_or_the_store);
    RUN(import__identical_connection_errors_are_kept_once);
    RUN(import__names_and_guids_match_case_insensitively);
    RUN(import__addresses_are_stored_in_canonical_form);
    RUN(import__sections_are_optional);
    RUN(import__unknown_key_or_field_is_refused_with_a_did_you_mean);
    RUN(import__ignore_unknown_accepts_and_lists_what_it_ignored);
    RUN(import__clients_without_ip_or_site_are_reported_by_count_and_name);
    RUN(import__json_with_a_byte_order_mark_imports);
    RUN(import__invalid_utf8_and_nul_escapes_are_refused);
    RUN(import__export_spellings_of_values_are_accepted);
    RUN(import__times_without_a_zone_read_in_the_named_zone);
    RUN(import__local_times_around_clock_changes_are_deterministic);
    RUN(csv__quoting_bom_crlf_and_any_column_order);
    RUN(csv__bad_row_names_file_and_line_and_writes_nothing);
    RUN(csv__cells_that_do_not_parse_reach_validation_as_text);
    RUN(csv__registered_accepts_true_false_yes_no_1_0);
    RUN(csv__kind_comes_from_the_name_or_the_caller);
    RUN(csv__malformed_files_are_rejected_with_file_and_line);
    RUN(demo__json_and_csv_estates_import_to_the_same_inventory);
    RUN(snapshot_load__demo_estate_counts_and_fields);
    RUN(snapshot_load__empty_store_gives_an_empty_snapshot);
    RUN(snapshot_load__failure_frees_and_sets_out_null);
    RUN(estate__same_seed_same_estate_other_seed_differs);
    RUN(estate__counts_and_mix_match_the_request);
    RUN(estate__more_sites_than_cities_get_numbered_names);
    RUN(estate__refuses_a_store_with_an_inventory_and_bad_sizes);
    RUN(estate__large_estate_generates_and_loads_in_seconds);
    return tsl_test_main();
}
