/*
 * test_import_itms.c - estates shaped like ITMS exports (tests/data/itms:
 * sites by subnet and mask with a duplicated subnet and an automatic /8
 * supernet, Task Servers with host name and DNS suffix, clients with
 * "IP Address"), the subnet conflicts they carry, clients found by computer
 * name, and what the CSV reader refuses (NUL bytes).
 */
#include "harness.h"
#include "snapshot.h"
#include "store.h"
#include "text.h"
#include "tsl.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ITMS TSL_SOURCE_DIR "/tests/data/itms/"

static tsl_store *open_new(void)
{
    static int n;
    char name[32];
    tsl_store *st = NULL;

    snprintf(name, sizeof name, "itms-%d.db", n++);
    if (tsl_store_open(&st, tsl_test_path(name), 0) < 0)
        fprintf(stderr, "  open: %s\n", tsl_error_last());
    return st;
}

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

/* The three sample exports, imported together; notes into *notes. */
static tsl_store *open_itms(tsl_buf *notes)
{
    static const char *const paths[] = {ITMS "sites.csv", ITMS "task_servers.csv",
                                        ITMS "clients.csv"};
    tsl_import_options opt = {false, NULL, notes};
    tsl_store *st = open_new();

    if (st && tsl_store_import_csv_opt(st, paths, NULL, 3, &opt) < 0) {
        fprintf(stderr, "  import: %s\n", tsl_error_last());
        tsl_store_free(st);
        st = NULL;
    }
    return st;
}

TEST(itms__exports_import_with_their_ips_hosts_and_values)
{
    tsl_buf notes = TSL_BUF_INIT;
    tsl_store *st = open_itms(&notes);

    CHECK(st != NULL);
    CHECK_STR(q_text(st, "SELECT group_concat(ip, ' ') FROM (SELECT ip FROM clients ORDER BY"
                         " guid)"),
              "10.10.3.17 10.11.8.4 10.20.1.9 10.30.15.200 10.40.0.20 10.20.9.9 10.10.9.9");
    CHECK_STR(q_text(st, "SELECT name || ' ' || department FROM clients WHERE guid ="
                         " '3F2A6C1E-0001-4C1B-9B1E-000000000001'"),
              "LON-PC-0001 Finance");
    /* Subnet plus Subnet Mask, rows of one site merged */
    CHECK_STR(q_text(st, "SELECT group_concat(cidr, ' ') FROM (SELECT n.cidr FROM site_subnets n"
                         " JOIN sites s ON s.id = n.site_id WHERE s.name = 'London'"
                         " ORDER BY n.cidr)"),
              "10.10.0.0/16 10.11.0.0/16");
    CHECK_STR(q_text(st, "SELECT cidr FROM site_subnets n JOIN sites s ON s.id = n.site_id"
                         " WHERE s.name = 'Leeds'"),
              "10.30.0.0/20");
    /* host = Host Name . Primary DNS Suffix; Running/Stopped, True/Yes/1, 5,000,
     * SQL Server times read as UTC */
    CHECK_STR(q_text(st, "SELECT host || ' ' || service || ' ' || registered || ' ' || capacity"
                         " || ' ' || connections || ' ' || last_heartbeat FROM task_servers"
                         " WHERE name = 'TS-LON-01'"),
              "ts-lon-01.corp.example.com running 1 5000 1250 1796119200");
    CHECK_STR(q_text(st, "SELECT service || ' ' || last_heartbeat FROM task_servers"
                         " WHERE name = 'TS-LON-02'"),
              "stopped 1796119110");
    CHECK_STR(q_text(st, "SELECT group_concat(registered || service, ' ') FROM task_servers"),
              "1running 1stopped 1running 1running");
    /* what was ignored, and the warnings */
    CHECK_CONTAINS(notes.ptr, "sites.csv: ignored columns: \"Description\"\n");
    CHECK_CONTAINS(notes.ptr, "clients.csv: ignored columns: \"OS Name\"\n");
    CHECK_CONTAINS(notes.ptr, "warning: 4 subnets are claimed by more than one site");
    CHECK_CONTAINS(notes.ptr, "warning:   10.10.0.0/16 of site London, also in Paris "
                              "(10.10.0.0/16), UK (10.0.0.0/8): its clients get London\n");
    CHECK_CONTAINS(notes.ptr, "warning:   10.30.0.0/20 of site Leeds, also in UK (10.0.0.0/8): "
                              "its clients get Leeds\n");
    CHECK_CONTAINS(notes.ptr, "warning: 1 client has neither an IP nor a site, so the default "
                              "logic offers it every Task Server: LAB-PC-0001\n");
    tsl_buf_free(&notes);
    tsl_store_free(st);
}

/* The site each sample client gets, decided by the default logic. */
TEST(itms__overlapping_subnets_give_the_longest_prefix_then_the_first_site_by_name)
{
    static const struct {
        const char *client, *site;
    } want[] = {
        {"LON-PC-0001", "London"}, /* 10.10/16 in London and Paris: London by name */
        {"3f2a6c1e-0007-4c1b-9b1e-000000000007", "London"}, /* "kiosk", 10.10.9.9 */
        {"LON-PC-0002", "London"}, /* 10.11/16 inside UK's 10/8: the longer prefix */
        {"PAR-PC-0001", "Paris"},
        {"LDS-PC-0001", "Leeds"},
        {"BHM-PC-0001", "UK"},     /* only the /8 */
    };
    tsl_store *st = open_itms(NULL);
    tsl_snapshot *snap = NULL;
    tsl_plan *plan = NULL;
    tsl_worker *w = NULL;
    tsl_result *res = NULL;

    CHECK(st != NULL);
    CHECK_OK(tsl_snapshot_load(&snap, st, NULL));
    CHECK_OK(tsl_plan_new(&plan, snap, NULL));
    CHECK_OK(tsl_worker_new(&w));
    CHECK_OK(tsl_result_new(&res));
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        tsl_request req;
        const char *guid;
        int32_t ci;
        memset(&req, 0, sizeof req);
        CHECK_OK(tsl_snapshot_find_client(&guid, snap, want[i].client));
        ci = snap_find_client(snap, guid);
        CHECK(ci >= 0);
        CHECK_OK(tsl_snapshot_client_request(&req, snap, (size_t)ci));
        CHECK_OK(tsl_decide(res, w, plan, &req, NULL));
        CHECK_STR(tsl_result_site(res), want[i].site);
    }
    tsl_result_free(res);
    tsl_worker_free(w);
    tsl_plan_free(plan);
    tsl_snapshot_free(snap);
    tsl_store_free(st);
}

TEST(itms__subnet_conflicts_list_every_conflict_with_its_clients)
{
    tsl_store *st = open_itms(NULL);
    tsl_snapshot *snap = NULL;
    tsl_buf out = TSL_BUF_INIT;
    size_t n = 0;

    CHECK(st != NULL);
    CHECK_OK(tsl_snapshot_load(&snap, st, NULL));
    CHECK_OK(tsl_subnet_conflicts(&out, &n, snap, TSL_FORMAT_TEXT));
    CHECK_INT((int)n, 4);
    CHECK_CONTAINS(out.ptr, "4 subnet conflicts (the longest prefix wins; among sites holding "
                            "the same subnet, the first by name)\n");
    CHECK_CONTAINS(out.ptr, "duplicate+nested 10.10.0.0/16 of site London, also claimed by "
                            "Paris (10.10.0.0/16), UK (10.0.0.0/8): its clients get London; 2 "
                            "clients: LON-PC-0001 (3f2a6c1e-0001-4c1b-9b1e-000000000001, "
                            "10.10.3.17), kiosk (3f2a6c1e-0007-4c1b-9b1e-000000000007, "
                            "10.10.9.9)\n");
    CHECK_CONTAINS(out.ptr, "nested 10.11.0.0/16 of site London, also claimed by UK "
                            "(10.0.0.0/8): its clients get London; 1 client: LON-PC-0002");
    CHECK_CONTAINS(out.ptr, "nested 10.20.0.0/16 of site Paris, also claimed by UK (10.0.0.0/8): "
                            "its clients get Paris; 2 clients: PAR-PC-0001");
    tsl_buf_clear(&out);
    CHECK_OK(tsl_subnet_conflicts(&out, NULL, snap, TSL_FORMAT_JSON));
    CHECK_CONTAINS(out.ptr, "{\"subnet\":\"10.30.0.0/20\",\"kind\":\"nested\",\"site\":\"Leeds\","
                            "\"others\":[{\"site\":\"UK\",\"subnet\":\"10.0.0.0/8\"}],"
                            "\"client_count\":1,\"clients\":[{\"guid\":"
                            "\"3f2a6c1e-0004-4c1b-9b1e-000000000004\",\"name\":\"LDS-PC-0001\","
                            "\"ip\":\"10.30.15.200\"}]}");
    tsl_buf_clear(&out);
    CHECK_OK(tsl_subnet_conflicts(&out, NULL, snap, TSL_FORMAT_CSV));
    CHECK_CONTAINS(out.ptr, "subnet,kind,site,other_claims,client_guid,client_name,client_ip\n"
                            "10.10.0.0/16,duplicate+nested,London,Paris 10.10.0.0/16; UK "
                            "10.0.0.0/8,3f2a6c1e-0001-4c1b-9b1e-000000000001,LON-PC-0001,"
                            "10.10.3.17\n");
    tsl_buf_free(&out);
    tsl_snapshot_free(snap);
    tsl_store_free(st);
}

TEST(itms__an_estate_without_overlaps_has_no_conflicts)
{
    tsl_store *st = open_new();
    tsl_snapshot *snap = NULL;
    tsl_buf out = TSL_BUF_INIT;
    size_t n = 9;
    const char *doc = "{\"sites\":[{\"name\":\"A\",\"subnets\":[\"10.0.0.0/8\",\"10.1.0.0/16\"]},"
                      "{\"name\":\"B\",\"subnets\":[\"11.0.0.0/8\"]}]}";

    CHECK(st != NULL);
    CHECK_OK(tsl_store_import_json(st, doc, strlen(doc), "a.json"));
    CHECK_OK(tsl_snapshot_load(&snap, st, NULL));
    CHECK_OK(tsl_subnet_conflicts(&out, &n, snap, TSL_FORMAT_JSON));
    CHECK_INT((int)n, 0);
    CHECK_STR(out.ptr, "[]\n");
    tsl_buf_free(&out);
    tsl_snapshot_free(snap);
    tsl_store_free(st);
}

TEST(names__a_computer_name_finds_its_client_and_an_ambiguous_one_is_refused)
{
    tsl_store *st = open_itms(NULL);
    tsl_snapshot *snap = NULL;
    const char *guid = "x";

    CHECK(st != NULL);
    CHECK_OK(tsl_snapshot_load(&snap, st, NULL));
    CHECK_OK(tsl_snapshot_find_client(&guid, snap, "lon-pc-0001"));
    CHECK_STR(guid, "3f2a6c1e-0001-4c1b-9b1e-000000000001");
    CHECK_OK(tsl_snapshot_find_client(&guid, snap, "3F2A6C1E-0003-4C1B-9B1E-000000000003"));
    CHECK_STR(guid, "3f2a6c1e-0003-4c1b-9b1e-000000000003");
    CHECK_INT(tsl_snapshot_find_client(&guid, snap, "Kiosk"), TSL_EINVALID);
    CHECK_NULL(guid);
    CHECK_CONTAINS(tsl_error_last(), "2 clients are named \"Kiosk\": "
                                     "3f2a6c1e-0006-4c1b-9b1e-000000000006 (10.20.9.9), "
                                     "3f2a6c1e-0007-4c1b-9b1e-000000000007 (10.10.9.9); name one "
                                     "by its GUID");
    CHECK_INT(tsl_snapshot_find_client(&guid, snap, "NOPE-PC"), TSL_ENOTFOUND);
    CHECK_CONTAINS(tsl_error_last(), "no client with GUID or name \"NOPE-PC\"");
    tsl_snapshot_free(snap);
    tsl_store_free(st);
}

/* Writes `len` bytes (NULs included) to tmpdir/name. */
static const char *write_bytes(const char *name, const char *data, size_t len)
{
    const char *path = tsl_test_path(name);
    FILE *f;

    if (tsl_test_sh(NULL, false, "mkdir -p \"$(dirname '%s')\"", path) != 0 ||
        !(f = fopen(path, "wb")))
        return NULL;
    if (fwrite(data, 1, len, f) != len) {
        fclose(f);
        return NULL;
    }
    return fclose(f) == 0 ? path : NULL;
}

TEST(csv__a_nul_byte_is_refused_naming_line_and_field)
{
    static const char plain[] = "guid,name,ip\nG1,PC-1,10.0.0.1\nG2,PC\0-2,10.0.0.2\n";
    static const char quoted[] = "guid,name,OS\nG1,PC-1,\"Win\0dows\"\n";
    tsl_store *st = open_new();
    const char *p;

    CHECK(st != NULL);
    CHECK((p = write_bytes("n1/clients.csv", plain, sizeof plain - 1)) != NULL);
    CHECK_INT(tsl_store_import_csv(st, &p, NULL, 1), TSL_EINVALID);
    CHECK_CONTAINS(tsl_error_last(), "n1/clients.csv line 3: field 2 (\"name\") holds a NUL byte");
    CHECK((p = write_bytes("n2/clients.csv", quoted, sizeof quoted - 1)) != NULL);
    CHECK_INT(tsl_store_import_csv(st, &p, NULL, 1), TSL_EINVALID);
    CHECK_CONTAINS(tsl_error_last(), "n2/clients.csv line 2: field 3 (an ignored column) holds a "
                                     "NUL byte");
    CHECK_STR(q_text(st, "SELECT count(*) FROM clients"), "0");
    tsl_store_free(st);
}

TEST(csv__a_misspelt_column_is_noted_with_a_did_you_mean)
{
    tsl_store *st = open_new();
    tsl_buf notes = TSL_BUF_INIT;
    tsl_import_options opt = {false, NULL, &notes};
    const char *p = tsl_test_path("t1/clients.csv");

    CHECK(st != NULL);
    CHECK(tsl_test_sh(NULL, false, "mkdir -p '%s' && printf 'Resource Guid,Computer Name,"
                                   "IP Adress,Name\\nG1,PC-A,10.0.0.1,pc-a\\n' > '%s'",
                      tsl_test_path("t1"), p) == 0);
    CHECK_OK(tsl_store_import_csv_opt(st, &p, NULL, 1, &opt));
    CHECK_CONTAINS(notes.ptr, "t1/clients.csv: ignored columns: \"IP Adress\" (did you mean "
                              "\"IP Address\"?), \"Computer Name\" (\"Name\" gives the same "
                              "field)\n");
    /* "name" is our spelling: it wins over "Computer Name" */
    CHECK_STR(q_text(st, "SELECT name FROM clients"), "pc-a");
    tsl_buf_free(&notes);
    tsl_store_free(st);
}

TEST(text__utf8_is_checked_as_rfc_3629_says)
{
    static const struct {
        const char *s;
        bool ok;
    } cases[] = {
        {"LON-PC-0001", true},    {"Z\xc3\xbcrich", true},      {"\xe2\x82\xac", true},
        {"\xf0\x9f\x98\x80", true}, {"\xc0\x80", false},          {"\xe0\x80\xaf", false},
        {"\xed\xa0\x80", false},  {"\xf4\x90\x80\x80", false}, {"\xe2\x82", false},
        {"\x80", false},          {"\xff", false},              {"a\xc3", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (tsl_utf8_valid(cases[i].s, strlen(cases[i].s)) != cases[i].ok)
            FAILF_("case %zu: expected %s", i, cases[i].ok ? "valid" : "invalid");
}

int main(void)
{
    RUN(text__utf8_is_checked_as_rfc_3629_says);
    RUN(itms__exports_import_with_their_ips_hosts_and_values);
    RUN(itms__overlapping_subnets_give_the_longest_prefix_then_the_first_site_by_name);
    RUN(itms__subnet_conflicts_list_every_conflict_with_its_clients);
    RUN(itms__an_estate_without_overlaps_has_no_conflicts);
    RUN(names__a_computer_name_finds_its_client_and_an_ambiguous_one_is_refused);
    RUN(csv__a_nul_byte_is_refused_naming_line_and_field);
    RUN(csv__a_misspelt_column_is_noted_with_a_did_you_mean);
    return tsl_test_main();
}
