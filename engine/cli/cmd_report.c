/*
 * cmd_report.c - `tsl report`: the reports ITMS admins rely on, as a
 * text table, JSON or CSV (tsl_report does the work).
 *
 * Used by: main.c.  Needs: cli.h.
 */
#include "cli.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

static const char usage[] =
    "usage: tsl --db FILE report KIND [--json | --csv] [--policy FILE] [--now TIME]\n"
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
    "\n"
    "  --json          JSON instead of a text table\n"
    "  --csv           CSV with a header line instead of a text table\n"
    "  --policy FILE   decide under this Lua policy instead of the default logic\n"
    "  --now TIME      as of this time: Unix seconds or 2026-11-25T09:58:00Z\n"
    "  -h, --help      this help\n"
    "\n"
    "exit status: 0 printed, 2 usage or input error.\n";

int cmd_report(const struct cli_global *g, int argc, char **argv)
{
    static const struct option opts[] = {
        {"json", no_argument, NULL, 'j'},
        {"csv", no_argument, NULL, 'c'},
        {"policy", required_argument, NULL, 'p'},
        {"now", required_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    tsl_format fmt = TSL_FORMAT_TEXT;
    tsl_report_kind kind;
    const char *policy = NULL;
    int64_t now = 0;
    struct cli_engine e;
    tsl_buf out = TSL_BUF_INIT;
    int c, rc;

    cli_getopt_reset();
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'j':
        case 'c':
            if (fmt != TSL_FORMAT_TEXT)
                return cli_usage_error(g, "give one of --json and --csv, not both");
            fmt = c == 'j' ? TSL_FORMAT_JSON : TSL_FORMAT_CSV;
            break;
        case 'p':
            policy = optarg;
            break;
        case 'n':
            if ((rc = cli_parse_time(g, "--now", optarg, &now)) != CLI_OK)
                return rc;
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
                                  "client-assignments or subnet-conflicts");
    if (optind + 1 < argc)
        return cli_usage_error(g, "unexpected argument '%s'", argv[optind + 1]);
    if (tsl_report_kind_parse(&kind, argv[optind]) < 0)
        return cli_usage_error(g, "no report \"%s\": choose active-servers, server-clients, "
                                  "client-assignments or subnet-conflicts", argv[optind]);

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
