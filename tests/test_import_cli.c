/*
 * test_import_cli.c - `tsl import` as an admin meets it with ITMS exports
 * (tests/data/itms), and computer names wherever a client is named: the
 * built binary (TSL_BIN) end to end on a store in a temporary directory.
 */
#include "harness.h"
#include "tsl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ITMS TSL_SOURCE_DIR "/tests/data/itms/"

/* Runs `TSL_BIN ARGS` with stdout and stderr merged into a static buffer;
 * returns the exit status. */
static int tsl(const char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int tsl(const char **out, const char *fmt, ...)
{
    static char *last;
    char args[4000];
    va_list ap;
    int rc;

    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    free(last);
    last = NULL;
    rc = tsl_test_sh(&last, true, "'%s' %s", TSL_BIN, args);
    *out = last ? last : "";
    return rc;
}

/* A store holding the sample exports (imported once). */
static const char *itms_db(void)
{
    static char path[600];
    const char *out;

    if (!path[0]) {
        snprintf(path, sizeof path, "%s", tsl_test_path("itms.db"));
        if (tsl(&out, "--db '%s' import %ssites.csv %stask_servers.csv %sclients.csv", path, ITMS,
                ITMS, ITMS) != 0)
            fprintf(stderr, "  import: %s\n", out);
    }
    return path;
}

TEST(cli_import__itms_exports_import_with_warnings_on_stderr)
{
    const char *out, *db = tsl_test_path("fresh.db");

    /* stderr alone, then the exit status */
    CHECK_INT(tsl(&out, "--db '%s' import %ssites.csv %stask_servers.csv %sclients.csv "
                        "2>&1 >/dev/null; echo \"exit $?\"",
                  db, ITMS, ITMS, ITMS),
              0);
    CHECK_CONTAINS(out, "exit 0\n");
    CHECK(strstr(out, "now holds") == NULL);
    CHECK_CONTAINS(out, "tsl import: " ITMS "sites.csv: ignored columns: \"Description\"\n");
    CHECK_CONTAINS(out, "tsl import: warning: 4 subnets are claimed by more than one site");
    CHECK_CONTAINS(out, "tsl import: warning:   10.10.0.0/16 of site London, also in Paris "
                        "(10.10.0.0/16), UK (10.0.0.0/8): its clients get London\n");
    CHECK_CONTAINS(out, "tsl import: warning: 1 client has neither an IP nor a site");
    CHECK_INT(tsl(&out, "--db '%s' import %sclients.csv 2>/dev/null", db, ITMS), 0);
    CHECK_CONTAINS(out, "now holds 4 sites, 4 task servers, 8 clients");
}

TEST(cli_import__a_typo_is_refused_and_ignore_unknown_lists_it)
{
    const char *out, *db = tsl_test_path("typo.db"), *f = tsl_test_path("typo.json");

    CHECK_OK(tsl_test_write(f, "{\"site\":[{\"name\":\"Rome\"}],\"clients\":[{\"guid\":\"G1\","
                               "\"ips\":[\"10.1.1.1\"]}]}"));
    CHECK_INT(tsl(&out, "--db '%s' import '%s'", db, f), 2);
    CHECK_CONTAINS(out, "typo.json: unknown key \"site\": did you mean \"sites\"?");
    CHECK_CONTAINS(out, "import with --ignore-unknown");
    CHECK_INT(tsl(&out, "--db '%s' import --ignore-unknown '%s'", db, f), 0);
    CHECK_CONTAINS(out, "typo.json: ignored unknown key \"site\"\n");
    CHECK_CONTAINS(out, "typo.json: ignored unknown field \"ips\" in 1 clients record");
    CHECK_CONTAINS(out, "warning: 1 client has neither an IP nor a site, so the default logic "
                        "offers it every Task Server: G1");
}

TEST(cli_import__timezone_option_and_help)
{
    const char *out, *db = tsl_test_path("tz.db"), *f = tsl_test_path("tz.json");

    CHECK_OK(tsl_test_write(f, "{\"task_servers\":[{\"name\":\"ts-a\",\"last_heartbeat\":"
                               "\"2026-07-01 10:00:00\"}]}"));
    CHECK_INT(tsl(&out, "--db '%s' import --timezone Europe/London '%s'", db, f), 0);
    CHECK_INT(tsl(&out, "--db '%s' report active-servers --now 2026-07-01T09:01:00Z --csv",
                  db),
              0);
    CHECK_CONTAINS(out, "ts-a,ts-a,,,5000,0,0,2026-07-01T09:00:00Z");
    CHECK_INT(tsl(&out, "--db '%s' import --timezone Nowhere/Land '%s'", db, f), 2);
    CHECK_CONTAINS(out, "unknown time zone \"Nowhere/Land\"");
    CHECK_INT(tsl(&out, "import --help"), 0);
    CHECK_CONTAINS(out, "docs/inventory.md");
    CHECK_CONTAINS(out, "--ignore-unknown");
}

TEST(cli_names__list_explain_and_doctor_take_a_computer_name)
{
    const char *out, *db = itms_db();

    CHECK_INT(tsl(&out, "--db '%s' list --client LON-PC-0001", db), 0);
    CHECK_CONTAINS(out, "client   3f2a6c1e-0001-4c1b-9b1e-000000000001\n");
    CHECK_CONTAINS(out, "site     London (subnet 10.10.0.0/16 (adapter 1))");
    CHECK_INT(tsl(&out, "--db '%s' explain --client lds-pc-0001 --json", db), 0);
    CHECK_CONTAINS(out, "10.30.0.0/20");
    CHECK_INT(tsl(&out, "--db '%s' list --client Kiosk", db), 2);
    CHECK_CONTAINS(out, "tsl list: --client \"Kiosk\": 2 clients are named \"Kiosk\": "
                        "3f2a6c1e-0006-4c1b-9b1e-000000000006 (10.20.9.9), "
                        "3f2a6c1e-0007-4c1b-9b1e-000000000007 (10.10.9.9); name one by its "
                        "GUID");
    CHECK_INT(tsl(&out, "--db '%s' doctor --client KIOSK", db), 2);
    CHECK_CONTAINS(out, "2 clients are named \"KIOSK\"");
    CHECK_INT(tsl(&out, "--db '%s' list --client NOPE-PC", db), 2);
    CHECK_CONTAINS(out, "no client with GUID or name \"NOPE-PC\"");
    CHECK_INT(tsl(&out, "--db '%s' doctor --client par-pc-0001 --now 2026-12-01T10:01:00Z", db),
              0);
    CHECK_CONTAINS(out, "WARN  subnet conflict: 10.20.0.0/16 of site Paris is also claimed by "
                        "UK (10.0.0.0/8); the client gets Paris (the longest prefix)");
}

TEST(cli_report__subnet_conflicts_and_check_list_them)
{
    const char *out, *db = itms_db(), *pol = tsl_test_path("empty.lua");

    CHECK_INT(tsl(&out, "--db '%s' report subnet-conflicts --csv", db), 0);
    CHECK_CONTAINS(out, "subnet,kind,site,other_claims,client_guid,client_name,client_ip\n");
    CHECK_CONTAINS(out, "10.20.0.0/16,nested,Paris,UK 10.0.0.0/8,"
                        "3f2a6c1e-0006-4c1b-9b1e-000000000006,KIOSK,10.20.9.9\n");
    CHECK_INT(tsl(&out, "--db '%s' report subnet-conflicts --json", db), 0);
    CHECK_CONTAINS(out, "\"kind\":\"duplicate+nested\"");
    CHECK_OK(tsl_test_write(pol, "-- no rules: the default logic\n"));
    CHECK_INT(tsl(&out, "--db '%s' check '%s' --no-luacheck", db, pol), 1);
    CHECK_CONTAINS(out, "inventory: warning: 4 subnet conflicts (the longest prefix wins");
    CHECK_CONTAINS(out, "inventory: warning: nested 10.30.0.0/20 of site Leeds, also claimed by "
                        "UK (10.0.0.0/8): its clients get Leeds; 1 client: LDS-PC-0001");
}

int main(void)
{
    RUN(cli_import__itms_exports_import_with_warnings_on_stderr);
    RUN(cli_import__a_typo_is_refused_and_ignore_unknown_lists_it);
    RUN(cli_import__timezone_option_and_help);
    RUN(cli_names__list_explain_and_doctor_take_a_computer_name);
    RUN(cli_report__subnet_conflicts_and_check_list_them);
    return tsl_test_main();
}
