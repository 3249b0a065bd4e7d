/*
 * test_cli.c - the `tsl` command end to end: runs the built binary (TSL_BIN)
 * against the bundled demo estate imported into a temporary store, and
 * checks exact outputs and exit codes: list and explain, the reports, doctor,
 * import errors, option errors, and --help on every command.
 */
#include "harness.h"

#include <jansson.h>
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

__attribute__((unused)) static const char *demo_db(void)
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
    CHECK_STR(err, "tsl list: no inventory store: give --db FILE before the command "
                   "(tsl --db FILE list ...)\n");
    CHECK_INT(tsl_err(&err, "--db /nonexistent/x.db list --ip 10.0.0.1"), 2);
    CHECK_STR(err, "tsl list: no store at /nonexistent/x.db: create it with "
                   "`tsl --db /nonexistent/x.db import FILE.json`\n");
    CHECK_INT(tsl_err(&err, "--db x.db list --bogus"), 2);
    CHECK_STR(err, "tsl list: unknown option '--bogus' (see 'tsl list --help')\n");
    CHECK_INT(tsl_err(&err, "--db x.db list --ip"), 2);
    CHECK_STR(err, "tsl list: option '--ip' needs a value (see 'tsl list --help')\n");
    CHECK_INT(tsl_err(&err, "--db x.db list --json=yes --ip 10.0.0.1"), 2);
    CHECK_STR(err, "tsl list: option '--json' takes no value (see 'tsl list --help')\n");
    CHECK_INT(tsl_err(&err, "list --db x.db --ip 10.0.0.1"), 2);
    CHECK_STR(err, "tsl list: --db goes before the command: tsl --db FILE list ...\n");
    CHECK_INT(tsl_err(&err, "--db x.db list"), 2);
    CHECK_STR(err, "tsl list: give the client's address with --ip IP, or --client GUID "
                   "(see 'tsl list --help')\n");
    CHECK_INT(tsl_err(&err, "--db x.db list --ip 10.0.0.1 --now yesterday"), 2);
    CHECK_STR(err, "tsl list: --now \"yesterday\" is not a time: give Unix seconds or "
                   "YYYY-MM-DDTHH:MM:SSZ (UTC) (see 'tsl list --help')\n");
    CHECK_INT(tsl_err(&err, "--db x.db report"), 2);
    CHECK_CONTAINS(err, "tsl report: name a report: active-servers, server-clients or "
                        "client-assignments");
    CHECK_INT(tsl_err(&err, "--db x.db report bogus"), 2);
    CHECK_CONTAINS(err, "tsl report: no report \"bogus\"");
    CHECK_INT(tsl_err(&err, "--db x.db report active-servers --json --csv"), 2);
    CHECK_INT(tsl_err(&err, "--db x.db doctor"), 2);
    CHECK_STR(err, "tsl doctor: name the client with --client GUID (see 'tsl doctor --help')\n");
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

int main(void)
{
    RUN(cli__help_lists_commands_and_every_command_answers_help);
    RUN(cli__version);
    RUN(cli__usage_errors_exit_2_with_a_message);
    RUN(list__bad_ip_exits_2_naming_the_address);
    RUN(import__bad_document_exits_2_and_writes_nothing);
    RUN(import__csv_files_go_in_together);
    return tsl_test_main();
}
