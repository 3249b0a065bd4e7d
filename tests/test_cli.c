/*
 * test_cli.c - the `tsl` command end to end: runs the built binary (TSL_BIN)
 * against the bundled demo estate imported into a temporary store, and
 * checks exact outputs and exit codes: list and explain, the reports, doctor,
 * import errors, option errors, and --help on every command; the one
 * command-line convention (global options before or after the command,
 * lists with commas).
 */
#include "harness.h"

#include <jansson.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <sys/stat.h>

#define ESTATE TSL_SOURCE_DIR "/policies/demo/estate.json"

static char db[600];     /* the demo estate, imported once */
static int db_state;     /* 0 not tried, 1 ready, -1 failed */

/* Runs `TSL_BIN ARGS`; stdout (and stderr when merge) into a static buffer.
 * Returns the exit status. */
static int tsl(const char **out, bool merge, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int tsl(const char **out, bool merge, const char *fmt, ...)
{
    static char *last;
    char args[6000];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    free(last);
    last = NULL;
    int rc = tsl_test_sh(&last, merge, "'%s' %s%s", TSL_BIN, args, merge ? "" : " 2>/dev/null");
    if (out)
        *out = last ? last : "";
    return rc;
}

/* Runs `TSL_BIN ARGS`, stderr only. */
static int tsl_err(const char **err, const char *args)
{
    static char *last;
    free(last);
    last = NULL;
    int rc = tsl_test_sh(&last, false, "'%s' %s 2>&1 >/dev/null", TSL_BIN, args);
    *err = last ? last : "";
    return rc;
}

static const char *demo_db(void)
{
    if (db_state == 0) {
        const char *out;
        snprintf(db, sizeof db, "%s", tsl_test_path("demo.db"));
        db_state = tsl(&out, true, "--db '%s' import '%s'", db, ESTATE) == 0 ? 1 : -1;
        if (db_state < 0)
            fprintf(stderr, "  importing the demo estate failed: %s\n", out);
    }
    return db_state > 0 ? db : NULL;
}

/* Parses JSON output; NULL (and a message) when it is not JSON. */
static json_t *parse(const char *text)
{
    json_error_t jerr;
    json_t *j = json_loads(text, 0, &jerr);
    if (!j)
        fprintf(stderr, "  not JSON (%s): %s\n", jerr.text, text);
    return j;
}

/* The server names of a `list --json` result, space-separated. */
static const char *names_of(json_t *res)
{
    static char names[1024];
    names[0] = '\0';
    json_t *servers = json_object_get(res, "servers");
    for (size_t i = 0; i < json_array_size(servers); i++) {
        const char *n = json_string_value(json_object_get(json_array_get(servers, i), "name"));
        if (i)
            strncat(names, " ", sizeof names - strlen(names) - 1);
        strncat(names, n ? n : "?", sizeof names - strlen(names) - 1);
    }
    return names;
}

/* ------------------------------------------------------------------------
 * The command line itself
 * ---------------------------------------------------------------------- */

TEST(cli__help_lists_commands_and_every_command_answers_help)
{
    const char *out;
    char names[40][32];
    int n = 0;
    CHECK_INT(tsl(&out, false, "--help"), 0);
    CHECK(strncmp(out, "usage: tsl [--db FILE] COMMAND [ARGS]\n", 38) == 0);
    const char *p = strstr(out, "\ncommands:\n");
    CHECK(p != NULL);
    p += strlen("\ncommands:\n");
    /* "  name         help" lines until a blank line */
    while (p[0] == ' ' && p[1] == ' ' && n < 40) {
        int len = (int)strcspn(p + 2, " ");
        CHECK(len > 0 && len < 32);
        snprintf(names[n++], sizeof names[0], "%.*s", len, p + 2);
        p = strchr(p, '\n');
        CHECK(p != NULL);
        p++;
    }
    CHECK(n >= 7);
    for (int i = 0; i < n; i++) {
        char prefix[64];
        int rc = tsl(&out, false, "%s --help", names[i]);
        if (rc != 0)
            FAILF_("`tsl %s --help` exited %d", names[i], rc);
        snprintf(prefix, sizeof prefix, "usage: tsl");
        if (strncmp(out, prefix, strlen(prefix)) != 0 || !strstr(out, names[i]))
            FAILF_("`tsl %s --help` printed: %s", names[i], out);
        rc = tsl(&out, false, "help %s", names[i]);
        if (rc != 0 || strncmp(out, prefix, strlen(prefix)) != 0)
            FAILF_("`tsl help %s` exited %d: %s", names[i], rc, out);
    }
    for (const char *want = "demo import gen-estate list explain report doctor"; *want;) {
        int len = (int)strcspn(want, " ");
        bool found = false;
        for (int i = 0; i < n; i++)
            found |= (int)strlen(names[i]) == len && strncmp(names[i], want, (size_t)len) == 0;
        if (!found)
            FAILF_("`tsl --help` does not list %.*s", len, want);
        want += len + (want[len] == ' ');
    }
}

TEST(cli__version)
{
    const char *out;
    CHECK_INT(tsl(&out, false, "--version"), 0);
    CHECK(strncmp(out, "tsl ", 4) == 0);
}

TEST(cli__usage_errors_exit_2_with_a_message)
{
    const char *err;
    CHECK_INT(tsl_err(&err, ""), 2);
    CHECK_CONTAINS(err, "usage: tsl");
    CHECK_INT(tsl_err(&err, "frobnicate"), 2);
    CHECK_STR(err, "tsl: no command 'frobnicate' (see 'tsl --help')\n");
    CHECK_INT(tsl_err(&err, "list --ip 10.0.0.1"), 2);
    CHECK_STR(err, "tsl list: no inventory store: give --db FILE (tsl --db FILE list ...)\n");
    CHECK_INT(tsl_err(&err, "--db /nonexistent/x.db list --ip 10.0.0.1"), 2);
    CHECK_STR(err, "tsl list: no store at /nonexistent/x.db: create it with "
                   "`tsl --db /nonexistent/x.db import FILE.json`\n");
    CHECK_INT(tsl_err(&err, "--db x.db list --bogus"), 2);
    CHECK_STR(err, "tsl list: unknown option '--bogus' (see 'tsl list --help')\n");
    CHECK_INT(tsl_err(&err, "--db x.db list --ip"), 2);
    CHECK_STR(err, "tsl list: option '--ip' needs a value (see 'tsl list --help')\n");
    CHECK_INT(tsl_err(&err, "--db x.db list --json=yes --ip 10.0.0.1"), 2);
    CHECK_STR(err, "tsl list: option '--json' takes no value (see 'tsl list --help')\n");
    /* --db after the command is the same global option */
    CHECK_INT(tsl_err(&err, "list --db /nonexistent/y.db --ip 10.0.0.1"), 2);
    CHECK_STR(err, "tsl list: no store at /nonexistent/y.db: create it with "
                   "`tsl --db /nonexistent/y.db import FILE.json`\n");
    CHECK_INT(tsl_err(&err, "list --ip 10.0.0.1 --db"), 2);
    CHECK_STR(err, "tsl list: option '--db' needs a value (see 'tsl list --help')\n");
    CHECK_INT(tsl_err(&err, "list --ip 10.0.0.1 --db="), 2);
    CHECK_STR(err, "tsl list: --db needs a file name\n");
    CHECK_INT(tsl_err(&err, "--db x.db list"), 2);
    CHECK_STR(err, "tsl list: give the client's address with --ip IP, or --client GUID|NAME "
                   "(see 'tsl list --help')\n");
    CHECK_INT(tsl_err(&err, "--db x.db list --ip 10.0.0.1 --now yesterday"), 2);
    CHECK_STR(err, "tsl list: --now \"yesterday\" is not a time: give Unix seconds or "
                   "YYYY-MM-DDTHH:MM:SSZ (UTC) (see 'tsl list --help')\n");
    CHECK_INT(tsl_err(&err, "--db x.db report"), 2);
    CHECK_CONTAINS(err, "tsl report: name a report: active-servers, server-clients, "
                        "client-assignments, subnet-conflicts or fallback");
    CHECK_INT(tsl_err(&err, "--db x.db report bogus"), 2);
    CHECK_CONTAINS(err, "tsl report: no report \"bogus\"");
    CHECK_INT(tsl_err(&err, "--db x.db report active-servers --json --csv"), 2);
    CHECK_INT(tsl_err(&err, "--db x.db doctor"), 2);
    CHECK_STR(err, "tsl doctor: name the client with --client GUID|NAME, or give its addresses "
                   "with --ip IP (see 'tsl doctor --help')\n");
    CHECK_INT(tsl_err(&err, "--db x.db gen-estate --sites 2 --servers x --clients 1"), 2);
    CHECK_CONTAINS(err, "tsl gen-estate: --servers \"x\" is not a whole number");
}

TEST(list__bad_ip_exits_2_naming_the_address)
{
    const char *err;
    char args[700];
    /* the address is checked before the store is opened */
    const char *store = "/nonexistent/x.db";
    snprintf(args, sizeof args, "--db '%s' list --ip 10.1.2.300", store);
    CHECK_INT(tsl_err(&err, args), 2);
    CHECK_STR(err, "tsl list: --ip \"10.1.2.300\" is not a valid IPv4 or IPv6 address\n");
    snprintf(args, sizeof args, "--db '%s' explain --ip 10.0.0.1 --ip fd00::g1", store);
    CHECK_INT(tsl_err(&err, args), 2);
    CHECK_STR(err, "tsl explain: --ip \"fd00::g1\" is not a valid IPv4 or IPv6 address\n");
    /* at most 16 adapters */
    snprintf(args, sizeof args, "--db '%s' list", store);
    for (int i = 0; i < 17; i++)
        snprintf(args + strlen(args), sizeof args - strlen(args), " --ip 10.0.0.%d", i + 1);
    CHECK_INT(tsl_err(&err, args), 2);
    CHECK_STR(err, "tsl list: too many --ip: a request carries at most 16\n");
}

TEST(cli__db_before_or_after_the_command_is_the_same_store)
{
    const char *store = demo_db(), *out;
    CHECK(store != NULL);
    char *before = NULL;
    CHECK_INT(tsl(&out, false, "--db '%s' list --ip 10.10.3.17 --now 2026-11-25T10:00:00Z", store),
              0);
    before = strdup(out);
    CHECK_CONTAINS(before, "ts-lon-");
    CHECK_INT(tsl(&out, false, "list --db '%s' --ip 10.10.3.17 --now 2026-11-25T10:00:00Z", store),
              0);
    CHECK_STR(out, before);
    CHECK_INT(tsl(&out, false, "list --ip 10.10.3.17 --now 2026-11-25T10:00:00Z --db='%s'", store),
              0);
    CHECK_STR(out, before);
    /* after "--" nothing is a global option */
    CHECK_INT(tsl(&out, true, "list --ip 10.10.3.17 -- --db '%s'", store), 2);
    CHECK_STR(out, "tsl list: unexpected argument '--db' (see 'tsl list --help')\n");
    free(before);
}

TEST(list__ip_takes_commas_like_repeated_options)
{
    const char *store = demo_db(), *out, *err;
    CHECK(store != NULL);
    CHECK_INT(tsl(&out, false, "--db '%s' explain --ip 10.10.3.17 --ip fd00:20::7 "
                               "--now 2026-11-25T10:00:00Z", store), 0);
    char *repeated = strdup(out);
    CHECK_CONTAINS(repeated, "adapter 2");
    CHECK_INT(tsl(&out, false, "--db '%s' explain --ip 10.10.3.17,fd00:20::7 "
                               "--now 2026-11-25T10:00:00Z", store), 0);
    CHECK_STR(out, repeated);
    free(repeated);
    CHECK_INT(tsl_err(&err, "--db x.db list --ip 10.0.0.1,"), 2);
    CHECK_STR(err, "tsl list: --ip needs a value: an empty item in \"10.0.0.1\" "
                   "(see 'tsl list --help')\n");
    CHECK_INT(tsl_err(&err, "--db x.db list --ip 10.0.0.1,10.0.0.300"), 2);
    CHECK_STR(err, "tsl list: --ip \"10.0.0.300\" is not a valid IPv4 or IPv6 address\n");
    /* the limit counts addresses, however they are given */
    CHECK_INT(tsl_err(&err, "--db x.db list --ip 10.0.0.1,10.0.0.2,10.0.0.3,10.0.0.4,10.0.0.5,"
                            "10.0.0.6,10.0.0.7,10.0.0.8 --ip 10.0.0.9,10.0.0.10,10.0.0.11,"
                            "10.0.0.12,10.0.0.13,10.0.0.14,10.0.0.15,10.0.0.16,10.0.0.17"), 2);
    CHECK_STR(err, "tsl list: too many --ip: a request carries at most 16\n");
}

/* Registrations as the broker records them (schema 003), on two days. */
static bool add_registrations(const char *path)
{
    static const char sql[] =
        "INSERT INTO registrations(client, server, at, ok, error, site, tier, outside_approved)"
        " VALUES"
        /* 2026-11-24: one in the approved set, one on a fallback tier */
        " ('A', 'ts-lon-01', 1795521600, 1, NULL, 'London', 0, 0),"
        " ('B', 'ts-dub-01', 1795525200, 1, NULL, 'London', 1, 1),"
        /* 2026-11-25: one on a server the list did not name, one failure */
        " ('C', 'ts-mad-01', 1795600000, 1, NULL, 'London', NULL, 1),"
        " ('D', 'ts-lon-01', 1795600100, 0, 'timeout', 'London', 0, 0),"
        " ('E', 'ts-mad-01', 1795600200, 1, NULL, 'Madrid', 0, 0),"
        /* 2026-10-01: older than any window below */
        " ('F', 'ts-lon-01', 1790812800, 1, NULL, 'London', 0, 0)";
    sqlite3 *h = NULL;
    bool ok = sqlite3_open(path, &h) == SQLITE_OK &&
              sqlite3_exec(h, sql, NULL, NULL, NULL) == SQLITE_OK;
    if (!ok)
        fprintf(stderr, "  registrations: %s\n", sqlite3_errmsg(h));
    sqlite3_close(h);
    return ok;
}

TEST(report__fallback_counts_the_registrations_ctas_reported)
{
    const char *out, *err;
    char store[600];
    snprintf(store, sizeof store, "%s", tsl_test_path("fallback.db"));
    CHECK_INT(tsl(&out, true, "--db '%s' import '%s'", store, ESTATE), 0);
    CHECK(add_registrations(store));

    CHECK_INT(tsl(&out, false, "--db '%s' report fallback --csv --now 2026-11-25T12:00:00Z", store),
              0);
    CHECK_STR(out, "site,day,registrations,outside_approved,fallback_tier,not_listed\n"
                   "London,2026-11-24,2,1,1,0\n"
                   "London,2026-11-25,1,1,0,1\n"
                   "Madrid,2026-11-25,1,0,0,0\n");
    /* --days: the window up to --now */
    CHECK_INT(tsl(&out, false, "--db '%s' report fallback --csv --days 1 "
                               "--now 2026-11-25T14:00:00Z", store), 0);
    CHECK_STR(out, "site,day,registrations,outside_approved,fallback_tier,not_listed\n"
                   "London,2026-11-25,1,1,0,1\n"
                   "Madrid,2026-11-25,1,0,0,0\n");
    CHECK_INT(tsl(&out, false, "report fallback --json --days 1 --now 2026-11-25T14:00:00Z "
                               "--db '%s'", store), 0);
    CHECK_STR(out, "[\n"
                   " {\"site\":\"London\",\"day\":\"2026-11-25\",\"registrations\":1,"
                   "\"outside_approved\":1,\"fallback_tier\":0,\"not_listed\":1},\n"
                   " {\"site\":\"Madrid\",\"day\":\"2026-11-25\",\"registrations\":1,"
                   "\"outside_approved\":0,\"fallback_tier\":0,\"not_listed\":0}\n"
                   "]\n");
    CHECK_INT(tsl(&out, false, "--db '%s' report fallback --now 2026-11-25T12:00:00Z", store), 0);
    CHECK_CONTAINS(out, "site                  day         registrations  outside_approved");
    CHECK_CONTAINS(out, "\nLondon                2026-11-24              2                 1");

    CHECK_INT(tsl_err(&err, "--db x.db report fallback --policy p.lua"), 2);
    CHECK_CONTAINS(err, "tsl report: --policy does not apply to the fallback report");
    CHECK_INT(tsl_err(&err, "--db x.db report active-servers --days 3"), 2);
    CHECK_CONTAINS(err, "tsl report: --days is for the fallback report only");
    CHECK_INT(tsl_err(&err, "--db x.db report fallback --days 0"), 2);
    CHECK_CONTAINS(err, "tsl report: --days must be at least 1");
}

/* ------------------------------------------------------------------------
 * import
 * ---------------------------------------------------------------------- */

TEST(import__bad_document_exits_2_and_writes_nothing)
{
    const char *out, *err;
    const char *store = tsl_test_path("import.db");
    const char *good = tsl_test_path("good.json"), *bad = tsl_test_path("bad.json");
    char args[2000];
    CHECK_INT(tsl_test_write(good,
        "{\"sites\": [{\"name\": \"London\", \"subnets\": [\"10.10.0.0/16\"]}],"
        " \"task_servers\": [{\"name\": \"ts-lon-01\", \"ip\": \"10.10.0.5\", \"sites\": [\"London\"]}],"
        " \"clients\": [{\"guid\": \"G-1\", \"name\": \"PC-1\", \"ip\": \"10.10.1.1\"}]}"), 0);
    /* a valid new site, then a server on an unknown site: all refused */
    CHECK_INT(tsl_test_write(bad,
        "{\"sites\": [{\"name\": \"Paris\", \"subnets\": [\"10.20.0.0/16\"]}],"
        " \"task_servers\": [{\"name\": \"ts-x\", \"ip\": \"10.20.0.5\", \"sites\": [\"Atlantis\"]}]}"), 0);

    CHECK_INT(tsl(&out, false, "--db '%s' import '%s'", store, good), 0);
    snprintf(args, sizeof args, "imported %s: 1 site, 1 task server, 1 client, 0 connection "
                                "errors\n%s now holds 1 site, 1 task server, 1 client\n",
             good, store);
    CHECK_STR(out, args);

    snprintf(args, sizeof args, "--db '%s' import '%s'", store, bad);
    CHECK_INT(tsl_err(&err, args), 2);
    CHECK_CONTAINS(err, "tsl import: refused, nothing of ");
    CHECK_CONTAINS(err, "Atlantis");
    /* Paris was not written: the store still has one site */
    CHECK_INT(tsl(&out, false, "--db '%s' report active-servers --csv", store), 0);
    CHECK_STR(out, "name,host,ip,site,capacity,connections,response_ms,last_heartbeat\n"
                   "ts-lon-01,ts-lon-01,10.10.0.5,London,5000,0,0,\n");
    CHECK_INT(tsl(&out, false, "--db '%s' import '%s'", store, good), 0);
    CHECK_CONTAINS(out, "now holds 1 site, 1 task server, 1 client\n");

    /* malformed JSON, a missing file, an unknown kind */
    CHECK_INT(tsl_test_write(bad, "{\"sites\": ["), 0);
    snprintf(args, sizeof args, "--db '%s' import '%s'", store, bad);
    CHECK_INT(tsl_err(&err, args), 2);
    CHECK_CONTAINS(err, "tsl import: refused, nothing of ");
    snprintf(args, sizeof args, "--db '%s' import /nonexistent/estate.json", store);
    CHECK_INT(tsl_err(&err, args), 2);
    CHECK_STR(err, "tsl import: cannot open /nonexistent/estate.json: No such file or directory\n");
    snprintf(args, sizeof args, "--db '%s' import estate.txt", store);
    CHECK_INT(tsl_err(&err, args), 2);
    CHECK_STR(err, "tsl import: cannot tell what estate.txt holds: name it .json or .csv, or "
                   "give --kind KIND before it (see 'tsl import --help')\n");
    snprintf(args, sizeof args, "--db '%s' import --kind planets x.csv", store);
    CHECK_INT(tsl_err(&err, args), 2);
    CHECK_CONTAINS(err, "tsl import: --kind \"planets\" is not one of sites, task_servers, "
                        "clients, connection_errors");
}

TEST(import__csv_files_go_in_together)
{
    const char *out, *err;
    const char *store = tsl_test_path("csv.db");
    char sites[600], servers[600], clients[600], args[2400];
    snprintf(sites, sizeof sites, "%s", tsl_test_path("sites.csv"));
    snprintf(servers, sizeof servers, "%s", tsl_test_path("ts-export.csv"));
    snprintf(clients, sizeof clients, "%s", tsl_test_path("clients.csv"));
    CHECK_INT(tsl_test_write(sites, "name,subnets,country\nLondon,10.10.0.0/16,GB\n"), 0);
    CHECK_INT(tsl_test_write(servers, "name,host,ip,sites,registered,service,capacity,"
                                      "connections,response_ms\n"
                                      "ts-lon-01,ts-lon-01.corp,10.10.0.5,London,true,running,"
                                      "1000,10,5\n"), 0);
    CHECK_INT(tsl_test_write(clients, "guid,name,ip,department\nG-1,PC-1,10.10.1.1,Finance\n"
                                      "G-2,PC-2,10.10.1.300,Finance\n"), 0);
    /* one bad client refuses all three files */
    snprintf(args, sizeof args, "--db '%s' import '%s' --kind task_servers '%s' '%s'", store,
             sites, servers, clients);
    CHECK_INT(tsl_err(&err, args), 2);
    CHECK_CONTAINS(err, "tsl import: refused, none of the 3 CSV files imported: ");
    CHECK_CONTAINS(err, "clients.csv line 3");
    CHECK_CONTAINS(err, "10.10.1.300");
    CHECK_INT(tsl_test_write(clients, "guid,name,ip,department\nG-1,PC-1,10.10.1.1,Finance\n"), 0);
    CHECK_INT(tsl(&out, false, "--db '%s' import '%s' --kind task_servers '%s' --csv '%s'",
                  store, sites, servers, clients), 0);
    CHECK_CONTAINS(out, "ts-export.csv as task_servers\n");
    CHECK_CONTAINS(out, "now holds 1 site, 1 task server, 1 client\n");
    CHECK_INT(tsl(&out, false, "--db '%s' list --client G-1 --json", store), 0);
    json_t *res = parse(out);
    CHECK(res != NULL);
    CHECK_STR(names_of(res), "ts-lon-01");
    CHECK_STR(json_string_value(json_object_get(res, "site")), "London");
    json_decref(res);
}

/* ------------------------------------------------------------------------
 * list and explain against the demo estate (as of DEMO_NOW, so the
 * estate's connection errors of that morning are recent)
 * ---------------------------------------------------------------------- */

#define NOW "--now 2026-11-25T10:00:00Z"
#define LON_PC_0001 "E90E4254-DA23-5246-BB45-4A21F778B492" /* London, Finance */
#define LON_PC_0003 "6E3E645F-FED2-57CC-A296-53B85DDF87A1" /* London, error on ts-lon-01 */
#define LON_LT_0104 "6B05EB21-3346-5A09-BCDC-C6FCC8957A02" /* 192.168.1.50, no site */
#define TYO_LT_0101 "DEBA8E63-33A9-5D3F-A8BA-BAE7064EBBD0" /* explicit Tokyo */
#define FRA_PC_0001 "56CD68EF-77D0-5C2E-8A9F-ED1E40F08A05" /* Frankfurt, Finance */
#define MAD_PC_0001 "C8692E95-92A5-5D27-8BBD-FB2F4CD09E73" /* Madrid, server full */
#define PAR_PC_0001 "0A246510-C8C2-530F-B6B7-A534BCF4A45D" /* Paris, ts-par-02 stopped */
#define TYO_PC_0001 "B0114DC3-51F6-5ACE-A681-2257B481EDEC" /* Tokyo, healthy */
#define NYC_PC_0004 "9506147E-6264-5275-BE32-B22FAF59A170" /* error text with a comma */

/* `list --json ARGS` against the demo store, parsed; NULL on failure. */
static json_t *list_json(const char *args)
{
    const char *out;
    if (!demo_db())
        return NULL;
    int rc = tsl(&out, false, "--db '%s' list --json " NOW " %s", demo_db(), args);
    if (rc != 0) {
        fprintf(stderr, "  list %s exited %d\n", args, rc);
        return NULL;
    }
    return parse(out);
}

static const char *str_of(json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

TEST(list__london_client_ranks_by_free_capacity_and_demotes_its_recent_error)
{
    json_t *r = list_json("--client " LON_PC_0003);
    CHECK(r != NULL);
    CHECK_STR(names_of(r), "ts-dub-01 ts-fin-02 ts-fin-01 ts-lon-02 ts-lon-01");
    CHECK_STR(str_of(r, "site"), "London");
    CHECK_STR(str_of(r, "site_source"), "subnet 10.10.0.0/16 (adapter 1)");
    CHECK(json_is_false(json_object_get(r, "blocked")));
    CHECK(json_is_false(json_object_get(r, "strict")));
    json_t *servers = json_object_get(r, "servers");
    json_t *last = json_array_get(servers, 4), *first = json_array_get(servers, 0);
    CHECK(json_is_true(json_object_get(last, "recent_error")));
    CHECK(json_is_false(json_object_get(first, "recent_error")));
    CHECK_STR(str_of(first, "host"), "ts-dub-01.corp.example");
    CHECK_STR(str_of(first, "site"), "Dublin");
    CHECK_INT(json_integer_value(json_object_get(first, "tier")), 0);
    json_decref(r);

    /* the Finance desktop next to it failed on ts-fin-01 instead */
    r = list_json("--client " LON_PC_0001);
    CHECK(r != NULL);
    CHECK_STR(names_of(r), "ts-dub-01 ts-fin-02 ts-lon-02 ts-lon-01 ts-fin-01");
    json_decref(r);
}

TEST(list__multi_nic_longest_prefix_wins_across_adapters_and_families)
{
    json_t *r = list_json("--ip 10.10.3.40 --ip 10.10.200.77");
    CHECK(r != NULL);
    CHECK_STR(str_of(r, "site"), "London Lab");
    CHECK_STR(str_of(r, "site_source"), "subnet 10.10.200.0/24 (adapter 2)");
    CHECK_STR(names_of(r), "ts-lon-lab");
    CHECK(json_is_null(json_object_get(r, "client")));
    json_decref(r);
    /* an IPv6 adapter after one on no site */
    r = list_json("--ip 192.168.1.50 --ip fd00:30::1:99");
    CHECK(r != NULL);
    CHECK_STR(str_of(r, "site"), "Paris");
    CHECK_STR(str_of(r, "site_source"), "subnet fd00:30::/48 (adapter 2)");
    CHECK_STR(names_of(r), "ts-par-01");
    json_decref(r);
}

TEST(list__no_site_falls_back_to_every_available_server_across_countries)
{
    json_t *r = list_json("--client " LON_LT_0104);
    CHECK(r != NULL);
    CHECK(json_is_null(json_object_get(r, "site")));
    CHECK_STR(names_of(r), "ts-dub-02 ts-lon-lab ts-sin-01 ts-tyo-01 ts-dub-01 ts-nyc-02 "
                           "ts-fin-02 ts-fin-01 ts-lon-02 ts-fra-01");
    json_t *servers = json_object_get(r, "servers");
    for (size_t i = 0; i < json_array_size(servers); i++)
        CHECK_INT(json_integer_value(json_object_get(json_array_get(servers, i), "tier")), 1);
    json_decref(r);
}

TEST(list__explicit_site_full_server_and_finance_client)
{
    json_t *r = list_json("--client " TYO_LT_0101);
    CHECK(r != NULL);
    CHECK_STR(str_of(r, "site"), "Tokyo");
    CHECK_STR(str_of(r, "site_source"), "explicit");
    CHECK_STR(names_of(r), "ts-tyo-01");
    json_decref(r);
    r = list_json("--client " MAD_PC_0001);
    CHECK(r != NULL);
    CHECK_STR(names_of(r), "ts-mad-01");
    CHECK(json_is_true(json_object_get(json_array_get(json_object_get(r, "servers"), 0), "full")));
    json_decref(r);
    r = list_json("--client " FRA_PC_0001);
    CHECK(r != NULL);
    CHECK_STR(str_of(r, "site"), "Frankfurt");
    CHECK_STR(names_of(r), "ts-fin-02 ts-fra-01");
    json_decref(r);
}

TEST(list__table_shows_rank_server_site_tier_load_and_reason)
{
    const char *out;
    CHECK(demo_db() != NULL);
    CHECK_INT(tsl(&out, false, "--db '%s' list --client " LON_PC_0003 " " NOW, demo_db()), 0);
    CHECK_CONTAINS(out, "site     London (subnet 10.10.0.0/16 (adapter 1))\n");
    CHECK_CONTAINS(out, "policy   default logic   ttl 3600 s\n");
    CHECK_CONTAINS(out, "  #  SERVER     HOST                    SITE    TIER  LOAD                  RESP  REASON\n");
    CHECK_CONTAINS(out, "  1  ts-dub-01  ts-dub-01.corp.example  Dublin  0     640/5000 (12%)       18 ms  ");
    CHECK_CONTAINS(out, "  5  ts-lon-01  ts-lon-01.corp.example  London  0     1240/5000 (24%)      12 ms  ");
    CHECK_CONTAINS(out, "[recent error]\n");
    CHECK_INT(tsl(&out, false, "--db '%s' list --client " LON_LT_0104 " " NOW, demo_db()), 0);
    CHECK_CONTAINS(out, "site     none: no explicit site, no adapter address in a site subnet\n");
}

TEST(list__unknown_client_without_ip_is_an_input_error)
{
    const char *err;
    char args[800];
    CHECK(demo_db() != NULL);
    snprintf(args, sizeof args, "--db '%s' list --client NO-SUCH-GUID", demo_db());
    CHECK_INT(tsl_err(&err, args), 2);
    CHECK_CONTAINS(err, "tsl list: no client with GUID or name \"NO-SUCH-GUID\" in ");
    /* with an address it is decided like any unknown device */
    json_t *r = list_json("--client NO-SUCH-GUID --ip 10.80.1.99");
    CHECK(r != NULL);
    CHECK_STR(str_of(r, "site"), "Singapore");
    CHECK_STR(names_of(r), "ts-sin-01");
    json_decref(r);
}

TEST(list__empty_store_gives_an_empty_list_not_an_error)
{
    const char *out;
    const char *store = tsl_test_path("empty.db"), *doc = tsl_test_path("empty.json");
    CHECK_INT(tsl_test_write(doc, "{}"), 0);
    CHECK_INT(tsl(&out, false, "--db '%s' import '%s'", store, doc), 0);
    CHECK_CONTAINS(out, "now holds 0 sites, 0 task servers, 0 clients\n");
    CHECK_INT(tsl(&out, false, "--db '%s' list --ip 10.1.1.1 --json", store), 0);
    json_t *r = parse(out);
    CHECK(r != NULL);
    CHECK_INT(json_array_size(json_object_get(r, "servers")), 0);
    json_decref(r);
    CHECK_INT(tsl(&out, false, "--db '%s' list --ip 10.1.1.1", store), 0);
    CHECK_CONTAINS(out, "(empty list: this client has no Task Server to use)\n");
}

TEST(explain__names_the_matched_subnet_the_drops_and_the_demotion)
{
    const char *out;
    CHECK(demo_db() != NULL);
    CHECK_INT(tsl(&out, false, "--db '%s' explain --client " LON_PC_0003 " " NOW, demo_db()), 0);
    CHECK(strncmp(out, "  1. ", 5) == 0);
    CHECK_CONTAINS(out, "adapter 1 10.10.4.21: longest matching subnet 10.10.0.0/16 of site \"London\"");
    CHECK_CONTAINS(out, "connection error with ts-lon-01");
    CHECK_CONTAINS(out, "ranked 5 available site server(s) by capacity");
    CHECK_CONTAINS(out, "\n  1  ts-dub-01  ");
    CHECK_INT(tsl(&out, false, "--db '%s' explain --ip 10.30.9.9 " NOW, demo_db()), 0);
    CHECK_CONTAINS(out, "longest matching subnet 10.30.0.0/16 of site \"Paris\"");
    CHECK_CONTAINS(out, "ts-par-02 dropped: Task Server service stopped");
    CHECK_INT(tsl(&out, false, "--db '%s' explain --client " LON_LT_0104 " " NOW, demo_db()), 0);
    CHECK_CONTAINS(out, "fallback: the client has no site");
    /* --json: the steps and the result */
    CHECK_INT(tsl(&out, false, "--db '%s' explain --json --ip 10.10.200.9 " NOW, demo_db()), 0);
    json_t *j = parse(out);
    CHECK(j != NULL);
    CHECK(json_array_size(json_object_get(j, "steps")) >= 3);
    CHECK_STR(names_of(json_object_get(j, "result")), "ts-lon-lab");
    json_decref(j);
}

/* ------------------------------------------------------------------------
 * reports
 * ---------------------------------------------------------------------- */

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

TEST(report__active_servers_in_three_formats)
{
    const char *out;
    CHECK(demo_db() != NULL);
    CHECK_INT(tsl(&out, false, "--db '%s' report active-servers --json " NOW, demo_db()), 0);
    json_t *j = parse(out);
    CHECK(j != NULL);
    CHECK_INT(json_array_size(j), 14); /* 17 less stopped, unregistered, stale */
    char names[1024] = "";
    for (size_t i = 0; i < json_array_size(j); i++) {
        strcat(names, str_of(json_array_get(j, i), "name"));
        strcat(names, " ");
    }
    json_decref(j);
    CHECK(!strstr(names, "ts-par-02") && !strstr(names, "ts-fra-02") && !strstr(names, "ts-sin-02"));
    CHECK_INT(tsl(&out, false, "--db '%s' report active-servers --csv " NOW, demo_db()), 0);
    CHECK_INT(count_lines(out), 15);
    CHECK(strncmp(out, "name,host,ip,site,capacity,connections,response_ms,last_heartbeat\n", 66) == 0);
    CHECK_CONTAINS(out, "\nts-nyc-02,ts-nyc-02.corp.example,fd00:60::10,New York,5000,700,19,\n");
    CHECK_INT(tsl(&out, false, "--db '%s' report active-servers " NOW, demo_db()), 0);
    CHECK_INT(count_lines(out), 15);
}

TEST(report__server_clients_counts_first_entries)
{
    const char *out;
    CHECK(demo_db() != NULL);
    CHECK_INT(tsl(&out, false, "--db '%s' report server-clients --json " NOW, demo_db()), 0);
    json_t *j = parse(out);
    CHECK(j != NULL);
    CHECK_INT(json_array_size(j), 17);
    long long total = 0, dub = -1;
    for (size_t i = 0; i < json_array_size(j); i++) {
        json_t *row = json_array_get(j, i);
        long long n = json_integer_value(json_object_get(row, "clients"));
        total += n;
        if (strcmp(str_of(row, "server"), "ts-dub-01") == 0)
            dub = n;
    }
    json_decref(j);
    CHECK_INT(total, 40);
    CHECK_INT(dub, 8);
    CHECK_INT(tsl(&out, false, "--db '%s' report server-clients --csv " NOW, demo_db()), 0);
    CHECK_INT(count_lines(out), 18);
    CHECK_CONTAINS(out, "server,site,clients,capacity,available\n");
    CHECK_CONTAINS(out, "\nts-dub-01,Dublin,8,5000,yes\n");
    CHECK_CONTAINS(out, "\nts-par-02,Paris,0,5000,no\n");
}

TEST(report__client_assignments_lists_every_client)
{
    const char *out;
    CHECK(demo_db() != NULL);
    CHECK_INT(tsl(&out, false, "--db '%s' report client-assignments --json " NOW, demo_db()), 0);
    json_t *j = parse(out);
    CHECK(j != NULL);
    CHECK_INT(json_array_size(j), 40);
    json_decref(j);
    CHECK_INT(tsl(&out, false, "--db '%s' report client-assignments --csv " NOW, demo_db()), 0);
    CHECK_INT(count_lines(out), 41);
    CHECK_CONTAINS(out, "\n" LON_LT_0104 ",LON-LT-0104,192.168.1.50,Sales,,ts-dub-02,1,no\n");
    CHECK_CONTAINS(out, "\n" TYO_LT_0101 ",TYO-LT-0101,10.10.7.50,Sales,Tokyo,ts-tyo-01,0,no\n");
}

/* ------------------------------------------------------------------------
 * doctor
 * ---------------------------------------------------------------------- */

TEST(doctor__stopped_candidate_fails_and_shows_the_last_error)
{
    const char *out;
    CHECK(demo_db() != NULL);
    CHECK_INT(tsl(&out, false, "--db '%s' doctor --client " PAR_PC_0001 " " NOW, demo_db()), 1);
    CHECK_STR(out,
        "doctor for client " PAR_PC_0001 " as of 2026-11-25T10:00:00Z, under the default logic\n"
        "PASS  client: PAR-PC-0001, ip 10.30.1.20, department Sales\n"
        "PASS  site: Paris (subnet 10.30.0.0/16 (adapter 1))\n"
        "PASS  candidates: site Paris has 2 Task Servers, 1 available\n"
        "PASS  task server ts-par-01: registered, service running, heartbeat none recorded\n"
        "FAIL  task server ts-par-02: unavailable: Task Server service stopped\n"
        "PASS  list: 1 server: ts-par-01\n"
        "WARN  last connection error: 2026-11-24T17:05:00Z (16 h ago) on ts-par-01: TLS handshake failed\n"
        "checks: 5 pass, 1 warn, 1 fail\n");
}

TEST(doctor__healthy_client_passes_and_exits_0)
{
    const char *out;
    CHECK(demo_db() != NULL);
    CHECK_INT(tsl(&out, false, "--db '%s' doctor --client " TYO_PC_0001 " " NOW, demo_db()), 0);
    CHECK_CONTAINS(out, "PASS  site: Tokyo (subnet 10.70.0.0/16 (adapter 1))\n");
    CHECK_CONTAINS(out, "PASS  list: 1 server: ts-tyo-01\n");
    CHECK_CONTAINS(out, "PASS  last connection error: none recorded\n");
    CHECK_CONTAINS(out, "checks: 6 pass, 0 warn, 0 fail\n");
}

TEST(doctor__no_site_and_unknown_client_fail)
{
    const char *out;
    CHECK(demo_db() != NULL);
    CHECK_INT(tsl(&out, false, "--db '%s' doctor --client " LON_LT_0104 " " NOW, demo_db()), 1);
    CHECK_CONTAINS(out, "FAIL  site: none: no explicit site and 192.168.1.50 is in no site subnet");
    CHECK_CONTAINS(out, "WARN  list: 10 servers, all cross-site fallback (tier 1): ts-dub-02, ");
    CHECK_INT(tsl(&out, false, "--db '%s' doctor --client NO-SUCH-GUID", demo_db()), 1);
    CHECK_CONTAINS(out, "FAIL  client: no client with GUID NO-SUCH-GUID in the inventory (40 clients)");
}

TEST(doctor__json_and_csv_quote_the_error_text)
{
    const char *out;
    CHECK(demo_db() != NULL);
    CHECK_INT(tsl(&out, false, "--db '%s' doctor --csv --client " NYC_PC_0004 " " NOW, demo_db()), 0);
    CHECK(strncmp(out, "status,check,detail\n", 20) == 0);
    CHECK_CONTAINS(out, "\nwarn,last connection error,\"2026-11-25T08:15:30Z (104 min ago) on "
                        "ts-nyc-01: HTTP 503, \"\"Service Unavailable\"\"\"\n");
    CHECK_INT(tsl(&out, false, "--db '%s' doctor --json --client " NYC_PC_0004 " " NOW, demo_db()), 0);
    json_t *j = parse(out);
    CHECK(j != NULL);
    CHECK_STR(str_of(j, "client"), NYC_PC_0004);
    CHECK_INT(json_integer_value(json_object_get(j, "failed")), 0);
    json_t *checks = json_object_get(j, "checks");
    json_t *last = json_array_get(checks, json_array_size(checks) - 1);
    CHECK_STR(str_of(last, "status"), "warn");
    CHECK_CONTAINS(str_of(last, "detail"), "HTTP 503, \"Service Unavailable\"");
    json_decref(j);
}

/* ------------------------------------------------------------------------
 * demo
 * ---------------------------------------------------------------------- */

TEST(demo__tours_the_estate_and_cleans_up)
{
    const char *out;
    char tmp[600], cmd[1400];
    snprintf(tmp, sizeof tmp, "%s", tsl_test_path("demo-tmp"));
    CHECK(mkdir(tmp, 0700) == 0);
    snprintf(cmd, sizeof cmd, "TMPDIR='%s' '%s' demo", tmp, TSL_BIN);
    char *text = NULL;
    CHECK_INT(tsl_test_sh(&text, true, "%s", cmd), 0);
    CHECK(text != NULL);
    CHECK_CONTAINS(text, "== 1. Import the demo estate\n");
    CHECK_CONTAINS(text, "now holds 9 sites, 17 task servers, 40 clients\n");
    CHECK_CONTAINS(text, "site     London Lab (subnet 10.10.200.0/24 (adapter 2))\n");
    CHECK_CONTAINS(text, "fallback: the client has no site");
    CHECK_CONTAINS(text, "report server-clients");
    CHECK_CONTAINS(text, "checks: 5 pass, 1 warn, 1 fail\n");
    CHECK_CONTAINS(text, "\nDone.");
    free(text);
    /* the temporary store is gone */
    CHECK_INT(tsl_test_sh(NULL, false, "rmdir '%s'", tmp), 0);

    /* --keep DIR keeps a store the other commands can use */
    snprintf(tmp, sizeof tmp, "%s", tsl_test_path("kept"));
    CHECK_INT(tsl(&out, false, "demo --keep '%s'", tmp), 0);
    CHECK_INT(tsl(&out, false, "--db '%s/demo.db' list --json --client " TYO_LT_0101, tmp), 0);
    CHECK_CONTAINS(out, "\"name\":\"ts-tyo-01\"");
    /* and runs again over it */
    CHECK_INT(tsl(&out, false, "demo --keep '%s'", tmp), 0);
    const char *err;
    CHECK_INT(tsl_err(&err, "--db x.db demo"), 2);
    CHECK_STR(err, "tsl demo: the demo makes its own store: drop --db (use --keep DIR to keep it)\n");
}

TEST(demo__compares_the_tour_under_a_policy)
{
    const char *out;
    const char *pol = tsl_test_path("london.lua");
    CHECK_INT(tsl_test_write(pol,
        "site \"London\" { allow = {\"ts-lon-*\", \"ts-fin-*\"}, order = {\"ts-lon-02\", \"ts-lon-01\"} }\n"), 0);
    int rc = tsl(&out, true, "demo --policy '%s'", pol);
    if (rc != 0 && strstr(out, "policies are not available in this build")) {
        printf("  (skipped: this build has no policy layer)\n");
        return;
    }
    CHECK_INT(rc, 0);
    CHECK_CONTAINS(out, "The same clients under a policy\n");
    CHECK_CONTAINS(out, "\n  client                     #  default logic              policy\n");
    CHECK_CONTAINS(out, "\n  LON-PC-0003, London        1  ts-dub-01                  ts-lon-02\n");
    CHECK_CONTAINS(out, "\n                             2  ts-fin-02                  ts-lon-01\n");
    CHECK_CONTAINS(out, "\n  LON-LT-0104, no site       1  ts-dub-02 (fallback)       ts-dub-02 (fallback)\n");
    const char *err;
    CHECK_INT(tsl_err(&err, "demo --policy /nonexistent/p.lua"), 2);
    CHECK_STR(err, "tsl demo: --policy /nonexistent/p.lua: no such file\n");
}

int main(void)
{
    RUN(cli__help_lists_commands_and_every_command_answers_help);
    RUN(cli__version);
    RUN(cli__usage_errors_exit_2_with_a_message);
    RUN(list__bad_ip_exits_2_naming_the_address);
    RUN(cli__db_before_or_after_the_command_is_the_same_store);
    RUN(list__ip_takes_commas_like_repeated_options);
    RUN(report__fallback_counts_the_registrations_ctas_reported);
    RUN(import__bad_document_exits_2_and_writes_nothing);
    RUN(import__csv_files_go_in_together);
    RUN(list__london_client_ranks_by_free_capacity_and_demotes_its_recent_error);
    RUN(list__multi_nic_longest_prefix_wins_across_adapters_and_families);
    RUN(list__no_site_falls_back_to_every_available_server_across_countries);
    RUN(list__explicit_site_full_server_and_finance_client);
    RUN(list__table_shows_rank_server_site_tier_load_and_reason);
    RUN(list__unknown_client_without_ip_is_an_input_error);
    RUN(list__empty_store_gives_an_empty_list_not_an_error);
    RUN(explain__names_the_matched_subnet_the_drops_and_the_demotion);
    RUN(report__active_servers_in_three_formats);
    RUN(report__server_clients_counts_first_entries);
    RUN(report__client_assignments_lists_every_client);
    RUN(doctor__stopped_candidate_fails_and_shows_the_last_error);
    RUN(doctor__healthy_client_passes_and_exits_0);
    RUN(doctor__no_site_and_unknown_client_fail);
    RUN(doctor__json_and_csv_quote_the_error_text);
    RUN(demo__tours_the_estate_and_cleans_up);
    RUN(demo__compares_the_tour_under_a_policy);
    return tsl_test_main();
}
