/*
 * cmd_servers.c - `tsl --db FILE servers ACTION`: Task Servers that
 * announced themselves by heartbeat (the broker's --heartbeat-registration)
 * and wait for an admin's approval before they enter any list:
 *
 *   pending [--json|--csv]   the names waiting, with what each claimed
 *   approve NAME             it enters the lists (a running broker reloads
 *                            within a second)
 *   reject NAME              it is deleted (it may ask again)
 *
 * Used by: main.c.  Needs: cli.h, tsl.h (server_approval.c).
 */
#include "cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: tsl --db FILE servers pending [--json|--csv]\n"
    "       tsl --db FILE servers approve NAME [--author A]\n"
    "       tsl --db FILE servers reject NAME [--author A]\n"
    "\n"
    "Task Servers the inventory does not have can announce themselves by heartbeat\n"
    "when the broker runs with --heartbeat-registration. They wait, in no list,\n"
    "until an admin approves them (docs/operations.md, \"Task Servers\").\n"
    "\n"
    "  pending        the servers waiting: name, the host, ip and sites they claim,\n"
    "                 when and from which address they first came\n"
    "  approve NAME   NAME enters the lists with what it claimed (change its host,\n"
    "                 ip or sites by import); a running broker adopts it within a\n"
    "                 second\n"
    "  reject NAME    NAME is deleted from the pending servers\n"
    "  --author A     who decided, for the record (default: $USER)\n"
    "  --json, --csv  pending's output format (default: a table)\n"
    "\n"
    "exit status: 0 done, 2 usage error or no such pending server, 3 failure.\n";

int cmd_servers(const struct cli_global *g, int argc, char **argv)
{
    static const struct option opts[] = {
        {"json", no_argument, NULL, 'j'},
        {"csv", no_argument, NULL, 'v'},
        {"author", required_argument, NULL, 'a'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    tsl_format fmt = TSL_FORMAT_TEXT;
    const char *author = getenv("USER");
    tsl_store *st = NULL;
    tsl_buf out = TSL_BUF_INIT;
    int c, rc = CLI_OK, err;

    cli_getopt_reset();
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'j':
        case 'v':
            if (fmt != TSL_FORMAT_TEXT)
                return cli_usage_error(g, "give one of --json and --csv, not both");
            fmt = c == 'j' ? TSL_FORMAT_JSON : TSL_FORMAT_CSV;
            break;
        case 'a': author = optarg; break;
        case 'h': fputs(usage, stdout); return CLI_OK;
        default: return cli_getopt_error(g, c, argv);
        }
    }
    int nargs = argc - optind;
    const char *action = nargs > 0 ? argv[optind] : NULL;
    if (!action)
        return cli_usage_error(g, "give an action: pending, approve NAME or reject NAME");
    bool list = strcmp(action, "pending") == 0;
    bool approve = strcmp(action, "approve") == 0, reject = strcmp(action, "reject") == 0;
    if (!list && !approve && !reject)
        return cli_usage_error(g, "unknown action \"%s\" (expected pending, approve, reject)",
                               action);
    if (nargs != (list ? 1 : 2))
        return cli_usage_error(g, list ? "pending takes no argument" : "%s takes one NAME",
                               action);
    if ((rc = cli_require_store_file(g)) != CLI_OK)
        return rc;
    if ((err = tsl_store_open(&st, g->db, 0)) < 0)
        return cli_store_open_error(g, err);
    if (list) {
        if ((err = tsl_store_servers_pending(&out, st, fmt)) < 0)
            rc = cli_engine_error(g, err, NULL);
        else
            fputs(out.ptr ? out.ptr : "", stdout);
    } else {
        const char *name = argv[optind + 1];
        if ((err = tsl_store_server_decide(st, name, approve, author, 0)) < 0)
            rc = cli_engine_error(g, err, NULL);
        else
            printf("%s %s%s\n", name, approve ? "approved" : "rejected",
                   approve ? ": it enters the lists (a running broker within a second)" : "");
    }
    tsl_buf_free(&out);
    tsl_store_free(st);
    return rc;
}
