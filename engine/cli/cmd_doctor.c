/*
 * cmd_doctor.c - `tsl doctor`: the ITMS validation checklist for one client
 * (tsl_doctor does the checks; this prints them and sets the exit code).
 *
 * Used by: main.c, cmd_demo.c.  Needs: cli.h.
 */
#include "cli.h"

#include <getopt.h>
#include <stdio.h>

static const char usage[] =
    "usage: tsl --db FILE doctor --client GUID|NAME [--json | --csv] [--policy FILE]\n"
    "                            [--now TIME]\n"
    "       tsl --db FILE doctor --ip IP [--ip IP2 ...] [...]   (a client the\n"
    "                            inventory does not know, by its adapter addresses)\n"
    "\n"
    "Runs the checklist an ITMS administrator walks when a Client Task Agent gets no\n"
    "tasks, one PASS/WARN/FAIL line per check:\n"
    "  client                 the GUID is in the inventory (name, ip, department)\n"
    "  site                   it has a site, and how: explicit, or which subnet matched\n"
    "  subnet conflict        WARN when other sites claim that subnet too (the same\n"
    "                         subnet, or a wider one) and which site won\n"
    "  candidates             its site has Task Servers, and how many are available\n"
    "  task server NAME       each candidate is registered, its service running, its\n"
    "                         heartbeat fresh (and not full)\n"
    "  list                   the list it gets, tier by tier (strict, usable after);\n"
    "                         WARN when every entry is a fallback, FAIL when empty or\n"
    "                         blocked by the policy\n"
    "  last registration      its server is in its approved set (tier 0); FAIL when it\n"
    "                         is a fallback server or outside its list, with the tier\n"
    "  last connection error  time, server and text of the last error it reported, and\n"
    "                         where that server stands in its list\n"
    "\n"
    "  --client GUID|NAME  the client to check, by GUID or computer name (any case; a\n"
    "                  name several clients share is refused, listing their GUIDs)\n"
    "  --ip IP         an adapter address of a client the inventory does not know\n"
    "                  (repeat for each adapter, up to 16)\n"
    "  --json          one JSON object {\"checks\": [...], \"passed\", \"warnings\", \"failed\"}\n"
    "  --csv           CSV rows status,check,detail\n"
    "  --policy FILE   check under this Lua policy; without it, the policy in force\n"
    "                  (the active version and its staged sites, `tsl policy\n"
    "                  activate`), or the default logic when none is active\n"
    "  --now TIME      as of this time: Unix seconds or 2026-11-25T09:58:00Z\n"
    "                  (default: the current time)\n"
    "  -h, --help      this help\n"
    "\n"
    "exit status: 0 no check failed (warnings allowed), 1 a check failed,\n"
    "2 usage or input error.\n";

int cmd_doctor(const struct cli_global *g, int argc, char **argv)
{
    static const struct option opts[] = {
        {"client", required_argument, NULL, 'c'},
        {"ip", required_argument, NULL, 'i'},
        {"json", no_argument, NULL, 'j'},
        {"csv", no_argument, NULL, 'C'},
        {"policy", required_argument, NULL, 'p'},
        {"now", required_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *guid = NULL, *policy = NULL;
    const char *ips[TSL_MAX_IPS];
    size_t nips = 0;
    tsl_format fmt = TSL_FORMAT_TEXT;
    int64_t now = 0;
    struct cli_engine e;
    tsl_buf out = TSL_BUF_INIT;
    tsl_doctor_summary sum;
    int c, rc;

    cli_getopt_reset();
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            if (!optarg[0])
                return cli_usage_error(g, "--client needs a GUID or a computer name");
            guid = optarg;
            break;
        case 'i':
            if (nips == TSL_MAX_IPS)
                return cli_usage_error(g, "at most %d --ip (one per network adapter)",
                                       TSL_MAX_IPS);
            ips[nips++] = optarg;
            break;
        case 'j':
        case 'C':
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
    if (optind < argc)
        return cli_usage_error(g, "unexpected argument '%s'", argv[optind]);
    if (!guid && !nips)
        return cli_usage_error(g, "name the client with --client GUID|NAME, or give its "
                                  "addresses with --ip IP");
    if (guid && nips)
        return cli_usage_error(g, "give --client or --ip, not both (--ip is for a client the "
                                  "inventory does not know)");
    for (size_t i = 0; i < nips; i++) {
        tsl_ip ip;
        if (tsl_ip_parse(&ip, ips[i]) < 0)
            return cli_usage_error(g, "--ip: %s", tsl_error_last());
    }

    if ((rc = cli_engine_open(g, &e, policy)) != CLI_OK)
        return rc;
    /* a name several clients share is refused here, not guessed */
    const char *found;
    if (guid && tsl_snapshot_find_client(&found, e.snap, guid) == TSL_EINVALID) {
        rc = cli_engine_error(g, TSL_EINVALID, "--client \"%s\"", guid);
        goto done;
    }
    rc = guid ? tsl_doctor(&out, &sum, e.worker, e.plan, e.store, guid, fmt, now)
              : tsl_doctor_ips(&out, &sum, e.worker, e.plan, ips, nips, fmt, now);
    if (rc < 0) {
        rc = cli_engine_error(g, rc, "cannot run the checklist for %s", guid ? guid : ips[0]);
        goto done;
    }
    if ((rc = cli_write_buf(g, &out)) != CLI_OK)
        goto done;
    rc = sum.failed > 0 ? CLI_FINDINGS : CLI_OK;
done:
    tsl_buf_free(&out);
    cli_engine_close(&e);
    return rc;
}
