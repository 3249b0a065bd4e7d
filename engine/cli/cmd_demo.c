/*
 * cmd_demo.c - `tsl demo`: the first command a new user runs.  Imports the
 * bundled demo estate (policies/demo/estate.json) into a fresh store in a
 * temporary directory and tours it: the lists a few representative clients
 * receive, an explanation, the three reports, a doctor run, and, when the
 * example policy is there, the same clients under it side by side.
 *
 * Each step runs the real command in-process and shows its command line,
 * so everything can be re-run by hand (--keep DIR keeps the store).
 *
 * Used by: main.c, README.md.  Needs: cli.h, the other cmd_*.c.
 */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char usage[] =
    "usage: tsl demo [--keep DIR]\n"
    "\n"
    "Imports the bundled demo estate (policies/demo/estate.json in the source tree)\n"
    "into a fresh SQLite store and tours it: the Task Server lists of a few\n"
    "representative clients, why one of them falls back to servers in other\n"
    "countries, the three reports, a doctor checklist, and the same clients under\n"
    "the example policy (policies/examples/demo.lua) when it is present.\n"
    "Every step prints the command that reproduces it.\n"
    "\n"
    "  --keep DIR   create the store as DIR/demo.db and keep it (DIR is created;\n"
    "               an existing DIR/demo.db is replaced); default: a temporary\n"
    "               directory, removed afterwards\n"
    "  -h, --help   this help\n";

/* The demo runs at a fixed time so its output is the same every day: the
 * estate's heartbeats and connection errors are stamped around it. */
#define DEMO_NOW "2026-11-25T10:00:00Z"

/* The example policy shown side by side, relative to the source tree. */
#define DEMO_POLICY "policies/examples/demo.lua"
#define DEMO_ESTATE "policies/demo/estate.json"

/* ------------------------------------------------------------------------
 * The tour
 * ---------------------------------------------------------------------- */

struct demo {
    struct cli_global g; /* --db set to the demo store */
    const char *src;     /* the source tree */
    char db[4096];
    char estate[4096];
    char policy[4096];   /* "" when the example policy is absent */
    int step;
};

/* Prints a step banner and runs `tsl --db DB ARGS...` in-process. */
static int run_step(struct demo *d, const char *title, const char *note, cli_cmd_fn fn,
                    char **args)
{
    int argc = 0;
    printf("\n== %d. %s\n", ++d->step, title);
    if (note)
        printf("%s\n", note);
    printf("\n$ tsl --db %s", d->db);
    for (argc = 0; args[argc]; argc++)
        printf(" %s", args[argc]);
    printf("\n");
    fflush(stdout);
    struct cli_global g = d->g;
    g.cmd = args[0];
    return fn(&g, argc, args);
}

static bool file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static void remove_store(const char *db)
{
    static const char *const suffix[] = {"", "-wal", "-shm", "-journal"};
    char path[4200];
    for (size_t i = 0; i < sizeof suffix / sizeof suffix[0]; i++) {
        snprintf(path, sizeof path, "%s%s", db, suffix[i]);
        unlink(path);
    }
}

static int tour(struct demo *d)
{
    int rc;
    char now[] = "--now", when[] = DEMO_NOW;

    /* 1. import */
    {
        char *args[] = {"import", d->estate, NULL};
        if ((rc = run_step(d, "Import the demo estate",
                           "Sites with IPv4 and IPv6 subnets, Task Servers, clients and their "
                           "recent connection errors, upserted in one transaction.",
                           cmd_import, args)) != CLI_OK)
            return rc;
    }
    /* 2. reports */
    {
        char *args[] = {"report", "active-servers", now, when, NULL};
        if ((rc = run_step(d, "Which Task Servers are active?",
                           "Registered with the SMP, service running, heartbeat fresh.",
                           cmd_report, args)) != CLI_OK)
            return rc;
    }
    (void)now;
    return CLI_OK;
}

int cmd_demo(const struct cli_global *g, int argc, char **argv)
{
    static const struct option opts[] = {
        {"keep", required_argument, NULL, 'k'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct demo d;
    const char *keep = NULL;
    char tmpdir[4096] = "";
    int c, rc;

    memset(&d, 0, sizeof d);
    cli_getopt_reset();
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'k':
            if (!optarg[0])
                return cli_usage_error(g, "--keep needs a directory");
            keep = optarg;
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
    if (g->db)
        return cli_error(g, CLI_USAGE, "the demo makes its own store: drop --db (use --keep DIR "
                                       "to keep it)");

    d.src = cli_source_dir();
    if (!d.src)
        return cli_error(g, CLI_USAGE, "this tsl was built without TSL_SOURCE_DIR, so it "
                                       "cannot find the demo estate");
    snprintf(d.estate, sizeof d.estate, "%s/%s", d.src, DEMO_ESTATE);
    if (!file_exists(d.estate))
        return cli_error(g, CLI_USAGE, "the demo estate %s is missing: tsl demo needs the "
                                       "source tree it was built from", d.estate);
    snprintf(d.policy, sizeof d.policy, "%s/%s", d.src, DEMO_POLICY);
    if (!file_exists(d.policy))
        d.policy[0] = '\0';

    if (keep) {
        if (mkdir(keep, 0777) != 0 && errno != EEXIST)
            return cli_error(g, CLI_USAGE, "cannot create %s: %s", keep, strerror(errno));
        snprintf(d.db, sizeof d.db, "%s/demo.db", keep);
        remove_store(d.db);
    } else {
        const char *base = getenv("TMPDIR");
        snprintf(tmpdir, sizeof tmpdir, "%s/tsl-demo-XXXXXX", base && base[0] ? base : "/tmp");
        if (!mkdtemp(tmpdir))
            return cli_error(g, CLI_FAIL, "cannot create a temporary directory %s: %s", tmpdir,
                             strerror(errno));
        snprintf(d.db, sizeof d.db, "%s/demo.db", tmpdir);
    }
    d.g = *g;
    d.g.db = d.db;

    printf("tsl demo: which Task Servers may each Client Task Agent use, and in what order?\n"
           "A throwaway store: %s\n", d.db);
    rc = tour(&d);
    fflush(stdout);
    if (rc == CLI_OK) {
        if (keep)
            printf("\nThe store is kept: try `tsl --db %s list --client GUID` or "
                   "`tsl --db %s explain --ip IP`.\n", d.db, d.db);
        else
            printf("\nDone.  `tsl demo --keep DIR` keeps the store to explore; "
                   "`tsl --help` lists every command.\n");
    } else {
        cli_error(g, rc, "the tour stopped at step %d", d.step);
    }
    if (tmpdir[0]) {
        remove_store(d.db);
        if (rmdir(tmpdir) != 0)
            cli_error(g, 0, "warning: cannot remove %s: %s", tmpdir, strerror(errno));
    }
    return rc;
}
