/*
 * cmd_report.c - `tsl report`: the reports ITMS admins rely on, as a text
 * table, JSON or CSV: the three that decide for every client (tsl_report)
 * and the fallback report of what CTAs reported (tsl_report_fallback), the
 * same as the broker's GET /v1/reports/NAME.
 *
 * Used by: main.c.  Needs: cli.h.
 */
#include "cli.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static const char usage[] =
    "usage: tsl --db FILE report KIND [--json | --csv] [--policy FILE] [--now TIME]\n"
    "       tsl --db FILE report fallback [--json | --csv] [--days N] [--now TIME]\n"
    "\n"
    "KIND is one of:\n"
    "  active-servers       every Task Server that is available now (registered,\n"
    "                       service running, heartbeat fresh)\n"
    "  server-clients       how many clients each server would be assigned (the first\n"
    "                       entry of each client's list)\n"
    "  client-assignments   every managed client with its site and assigned server\n"
    "  subnet-conflicts     every subnet claimed by more than one site (the same subnet\n"
    "                       in several sites, or inside another site's wider one), the\n"
    "                       site its clients get and the clients it decides\n"
    "  fallback             what happened: the successful registrations CTAs reported\n"
    "                       to the broker, by site and day, and how many landed\n"
    "                       outside the approved set, on a fallback tier, or on a\n"
    "                       server their list did not name\n"
    "\n"
    "  --json          JSON instead of a text table\n"
    "  --csv           CSV with a header line instead of a text table\n"
    "  --policy FILE   decide under this Lua policy; without it, the policy in force\n"
    "                  (the active version and its staged sites, `tsl policy\n"
    "                  activate`), or the default logic when none is active; not\n"
    "                  for fallback, which counts what happened\n"
    "  --now TIME      as of this time: Unix seconds or 2026-11-25T09:58:00Z\n"
    "                  (default: the current time)\n"
    "  --days N        fallback: the N days up to --now, 1 to 3650 (default 30)\n"
    "  -h, --help      this help\n"
    "\n"
    "exit status: 0 printed, 2 usage or input error.\n";

/* The fallback report reads the store only: no snapshot, no decision. */
static int fallback_report(const struct cli_global *g, tsl_format fmt, uint64_t days,
                           int64_t now)
{
    tsl_store *st = NULL;
    tsl_buf out = TSL_BUF_INIT;
    int rc;

    if ((rc = cli_require_db(g)) != CLI_OK || (rc = cli_require_store_file(g)) != CLI_OK)
        return rc;
    if ((rc = tsl_store_open(&st, g->db, TSL_STORE_READONLY)) < 0)
        return cli_store_open_error(g, rc);
    if (!now)
        now = (int64_t)time(NULL);
    if ((rc = tsl_report_fallback(&out, st, fmt, now - (int64_t)days * 86400)) < 0)
        rc = cli_engine_error(g, rc, "cannot build the fallback report");
    else
        rc = cli_write_buf(g, &out);
    tsl_buf_free(&out);
    tsl_store_free(st);
    return rc;
}

int cmd_report(const struct cli_global *g, int argc, char **argv)
{
    static const struct option opts[] = {
        {"json", no_argument, NULL, 'j'},
        {"csv", no_argument, NULL, 'c'},
        {"policy", required_argument, NULL, 'p'},
        {"now", required_argument, NULL, 'n'},
        {"days", required_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    tsl_format fmt = TSL_FORMAT_TEXT;
    tsl_report_kind kind;
    const char *policy = NULL;
    int64_t now = 0;
    uint64_t days = 0;
    struct cli_engine e;
    tsl_buf out = TSL_BUF_INIT;
    int c, rc;

    cli_getopt_reset();
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'j':
        case 'c':
            if ((rc = cli_set_format(g, &fmt, c == 'j' ? TSL_FORMAT_JSON : TSL_FORMAT_CSV)) !=
                CLI_OK)
                return rc;
            break;
        case 'p':
            policy = optarg;
            break;
        case 'n':
            if ((rc = cli_parse_time(g, "--now", optarg, &now)) != CLI_OK)
                return rc;
            break;
        case 'd':
            if ((rc = cli_parse_uint(g, "--days", optarg, 3650, &days)) != CLI_OK)
                return rc;
            if (days == 0)
                return cli_usage_error(g, "--days must be at least 1");
            break;
        case 'h':
            fputs(usage, stdout);
            return CLI_OK;
        default:
            return cli_getopt_error(g, c, argv);
        }
    }
    if (optind >= argc)
        return cli_usage_error(g, "name a report: active-servers, server-clients, "
                                  "client-assignments, subnet-conflicts or fallback");
    if (optind + 1 < argc)
        return cli_usage_error(g, "unexpected argument '%s'", argv[optind + 1]);
    if (strcmp(argv[optind], "fallback") == 0) {
        if (policy)
            return cli_usage_error(g, "--policy does not apply to the fallback report: it "
                                      "counts what CTAs reported, not what a policy decides");
        return fallback_report(g, fmt, days ? days : 30, now);
    }
    if (days)
        return cli_usage_error(g, "--days is for the fallback report only");
    if (tsl_report_kind_parse(&kind, argv[optind]) < 0)
        return cli_usage_error(g, "no report \"%s\": choose active-servers, server-clients, "
                                  "client-assignments, subnet-conflicts or fallback", argv[optind]);

    if ((rc = cli_engine_open(g, &e, policy)) != CLI_OK)
        return rc;
    if ((rc = tsl_report(&out, e.worker, e.plan, kind, fmt, now)) < 0) {
        rc = cli_engine_error(g, rc, "cannot build the %s report", argv[optind]);
        goto done;
    }
    rc = cli_write_buf(g, &out);
    if (rc == CLI_OK && out.len > 0 && out.ptr[out.len - 1] != '\n')
        putchar('\n');
done:
    tsl_buf_free(&out);
    cli_engine_close(&e);
    return rc;
}
