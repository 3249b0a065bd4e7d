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
    "usage: tsl demo [--keep DIR] [--policy FILE]\n"
    "\n"
    "Imports the bundled demo estate (policies/demo/estate.json, installed under\n"
    "share/tsl, or in the source tree of a build) into a fresh SQLite store and\n"
    "tours it: the Task Server lists of a few representative clients, why one of\n"
    "them falls back to servers in other countries, the three reports, a doctor\n"
    "checklist, and the same clients under a policy side by side with the default\n"
    "logic.  Every step prints the command that reproduces it.\n"
    "\n"
    "  --keep DIR      create the store as DIR/demo.db and keep it (DIR is created;\n"
    "                  an existing DIR/demo.db is replaced); default: a temporary\n"
    "                  directory, removed afterwards\n"
    "  --policy FILE   the policy for the side-by-side view (default: the example\n"
    "                  policies/examples/demo.lua beside the demo estate)\n"
    "  -h, --help      this help\n";

/* The demo runs at a fixed time so its output is the same every day: the
 * estate's heartbeats and connection errors are stamped around it. */
#define DEMO_NOW "2026-11-25T10:00:00Z"

/* The example policy and the estate, relative to the data directory
 * (cli_data_dir: share/tsl when installed, the source tree in a build). */
#define DEMO_POLICY "policies/examples/demo.lua"
#define DEMO_ESTATE "policies/demo/estate.json"

/* ------------------------------------------------------------------------
 * Steps
 * ---------------------------------------------------------------------- */

struct demo {
    struct cli_global g; /* --db set to the demo store */
    const char *src;     /* the data directory (cli_data_dir) */
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

/* snprintf that reports truncation: false when `dst` was too small. */
static bool path_join(char *dst, size_t len, const char *a, const char *b)
{
    int n = snprintf(dst, len, "%s%s", a, b);
    return n >= 0 && (size_t)n < len;
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
    for (size_t i = 0; i < sizeof suffix / sizeof suffix[0]; i++)
        if (path_join(path, sizeof path, db, suffix[i]))
            unlink(path);
}

/* ------------------------------------------------------------------------
 * The tour
 * ---------------------------------------------------------------------- */

/* The representative requests, from policies/demo/estate.json. */
static const struct tour_client {
    const char *title;
    const char *note;
    const char *label; /* for the side-by-side table */
    const char *guid;  /* or NULL */
    const char *ips[2];
    bool explain;
} tour_clients[] = {
    {"A London desktop (LON-PC-0003)",
     "Its site is the longest subnet that holds its address.  London's candidates\n"
     "are the servers assigned to it (ts-dub-01 is assigned to Dublin and London),\n"
     "ranked by free capacity.  ts-lon-01 refused this client 20 minutes ago, so it\n"
     "goes last until the error window (1 h) has passed.",
     "LON-PC-0003, London", "6E3E645F-FED2-57CC-A296-53B85DDF87A1", {NULL, NULL}, false},
    {"A multi-homed laptop: wired in London, Wi-Fi in the London Lab",
     "The agent sends every adapter's address.  10.10.200.0/24 (London Lab) is a\n"
     "longer prefix than 10.10.0.0/16 (London), so the second adapter decides.",
     "laptop, 2 adapters", NULL, {"10.10.3.40", "10.10.200.77"}, false},
    {"A laptop on no site (home network, 192.168.1.50)",
     "No explicit site and no subnet: today's logic falls back to every available\n"
     "server in the estate, so this London laptop is sent to Dublin, Singapore,\n"
     "Tokyo and New York.  explain shows each step.",
     "LON-LT-0104, no site", "6B05EB21-3346-5A09-BCDC-C6FCC8957A02", {NULL, NULL}, true},
    {"A Finance desktop in Frankfurt (FRA-PC-0001)",
     "ts-fra-02 is not registered with the SMP, so Frankfurt keeps ts-fra-01 and\n"
     "ts-fin-02, a London Finance server also assigned to Frankfurt.",
     "FRA-PC-0001, Finance", "56CD68EF-77D0-5C2E-8A9F-ED1E40F08A05", {NULL, NULL}, false},
};

#define NTOUR (sizeof tour_clients / sizeof tour_clients[0])

/* The doctor step: a Paris client whose second server is stopped. */
#define DOCTOR_GUID "0A246510-C8C2-530F-B6B7-A534BCF4A45D"

static int tour_list(struct demo *d, const struct tour_client *tc)
{
    char *args[12];
    int n = 0;
    args[n++] = tc->explain ? "explain" : "list";
    if (tc->guid) {
        args[n++] = "--client";
        args[n++] = (char *)tc->guid;
    }
    for (int i = 0; i < 2; i++) {
        if (tc->ips[i]) {
            args[n++] = "--ip";
            args[n++] = (char *)tc->ips[i];
        }
    }
    args[n++] = "--now";
    args[n++] = DEMO_NOW;
    args[n] = NULL;
    return run_step(d, tc->title, tc->note, tc->explain ? cmd_explain : cmd_list, args);
}

/* Decides `tc` under `plan`; one cell per row into col[] ("ts-lon-01",
 * "ts-dub-02 (fallback)", "BLOCKED: ..."). */
static int decide_column(tsl_result *res, tsl_worker *w, const tsl_plan *plan,
                         const struct tour_client *tc, char col[][40], int rows, int *nrows)
{
    tsl_request req;
    int err;
    memset(&req, 0, sizeof req);
    req.client = tc->guid;
    for (int i = 0; i < 2; i++)
        if (tc->ips[i])
            req.ips[req.nips++] = tc->ips[i];
    if ((err = cli_parse_time(NULL, "--now", DEMO_NOW, &req.now)) != CLI_OK)
        return TSL_ERROR;
    if ((err = tsl_decide(res, w, plan, &req, NULL)) < 0)
        return err;
    int n = 0;
    if (tsl_result_blocked(res)) {
        const char *why = tsl_result_blocked_reason(res);
        snprintf(col[n++], 40, "BLOCKED: %.30s", why ? why : "");
    } else if (tsl_result_count(res) == 0) {
        snprintf(col[n++], 40, "(empty list)");
    }
    for (size_t i = 0; i < tsl_result_count(res) && n < rows; i++) {
        const tsl_entry *en = tsl_result_entry(res, i);
        snprintf(col[n++], 40, "%.24s%s", en->name, en->tier ? " (fallback)" : "");
    }
    *nrows = n;
    return 0;
}

/* Prints one row of the side-by-side table without trailing blanks. */
static void print_row(const char *label, const char *rank, const char *left, const char *right)
{
    char line[200];
    snprintf(line, sizeof line, "  %-24s %3s  %-26s %s", label, rank, left, right);
    size_t n = strlen(line);
    while (n > 0 && line[n - 1] == ' ')
        line[--n] = '\0';
    printf("%s\n", line);
}

/* The tour's clients under the default logic and the example policy. */
static int tour_policy(struct demo *d)
{
    struct cli_engine def, pol;
    tsl_result *res = NULL;
    int rc;

    printf("\n== %d. The same clients under a policy\n", ++d->step);
    printf("A policy orders and restricts each site's list and can block the\n"
           "cross-country fallback.  Any of these, step by step:\n"
           "\n$ tsl --db %s explain --client GUID --policy %s\n",
           d->db, d->policy);
    if ((rc = cli_engine_open(&d->g, &def, NULL)) != CLI_OK)
        return rc;
    if ((rc = cli_engine_open(&d->g, &pol, d->policy)) != CLI_OK) {
        cli_engine_close(&def);
        return rc;
    }
    if ((rc = tsl_result_new(&res)) < 0) {
        rc = cli_engine_error(&d->g, rc, "cannot allocate a result");
        goto done;
    }
    printf("\n");
    print_row("client", "#", "default logic", "policy");
    for (size_t t = 0; t < NTOUR; t++) {
        char left[10][40], right[10][40], rank[16];
        int nl = 0, nr = 0;
        if ((rc = decide_column(res, def.worker, def.plan, &tour_clients[t], left, 10, &nl)) < 0 ||
            (rc = decide_column(res, pol.worker, pol.plan, &tour_clients[t], right, 10, &nr)) < 0) {
            rc = cli_engine_error(&d->g, rc, "cannot decide for %s", tour_clients[t].label);
            goto done;
        }
        printf("\n");
        for (int i = 0; i < nl || i < nr; i++) {
            snprintf(rank, sizeof rank, "%d", i + 1);
            print_row(i == 0 ? tour_clients[t].label : "", rank, i < nl ? left[i] : "",
                      i < nr ? right[i] : "");
        }
    }
    rc = CLI_OK;
done:
    tsl_result_free(res);
    cli_engine_close(&pol);
    cli_engine_close(&def);
    return rc;
}

static int tour(struct demo *d)
{
    int rc;
    char now[] = "--now", when[] = DEMO_NOW;

    {
        char *args[] = {"import", d->estate, NULL};
        if ((rc = run_step(d, "Import the demo estate",
                           "9 sites (IPv4 and IPv6 subnets), 17 Task Servers, 40 clients and their\n"
                           "recent connection errors, upserted in one transaction.",
                           cmd_import, args)) != CLI_OK)
            return rc;
    }
    for (size_t i = 0; i < NTOUR; i++)
        if ((rc = tour_list(d, &tour_clients[i])) != CLI_OK)
            return rc;
    {
        char *args[] = {"report", "active-servers", now, when, NULL};
        if ((rc = run_step(d, "Report: the active Task Servers",
                           "Registered with the SMP, service running, heartbeat fresh: ts-par-02\n"
                           "(stopped), ts-fra-02 (unregistered) and ts-sin-02 (silent since June\n"
                           "2025) are missing.", cmd_report, args)) != CLI_OK)
            return rc;
    }
    {
        char *args[] = {"report", "server-clients", now, when, NULL};
        if ((rc = run_step(d, "Report: how many clients each server gets",
                           "The first entry of every client's list.  London's clients land on\n"
                           "ts-dub-01 in Dublin: it is assigned to London too and has the most\n"
                           "free capacity.", cmd_report, args)) != CLI_OK)
            return rc;
    }
    {
        char *args[] = {"report", "client-assignments", now, when, NULL};
        if ((rc = run_step(d, "Report: every client and its server",
                           "Tier 1 marks a cross-site fallback.", cmd_report, args)) != CLI_OK)
            return rc;
    }
    {
        char *args[] = {"doctor", "--client", DOCTOR_GUID, now, when, NULL};
        rc = run_step(d, "Doctor: the validation checklist for a Paris client",
                      "One line per check; the command exits 1 because a check failed\n"
                      "(ts-par-02's service is stopped).", cmd_doctor, args);
        if (rc != CLI_OK && rc != CLI_FINDINGS)
            return rc;
    }
    if (d->policy[0]) {
        if ((rc = tour_policy(d)) != CLI_OK)
            return rc;
    } else {
        printf("\n(The example policy %s is not installed here, so the\n"
               "side-by-side view of policies is skipped.)\n", DEMO_POLICY);
    }
    return CLI_OK;
}

int cmd_demo(const struct cli_global *g, int argc, char **argv)
{
    static const struct option opts[] = {
        {"keep", required_argument, NULL, 'k'},
        {"policy", required_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct demo d;
    const char *keep = NULL, *policy = NULL;
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
        case 'p':
            policy = optarg;
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

    d.src = cli_data_dir();
    if (!d.src)
        return cli_error(g, CLI_USAGE, "cannot find the demo estate policies/demo/estate.json: "
                                       "neither share/tsl beside this tsl nor the source tree "
                                       "it was built from has it");
    if (!path_join(d.estate, sizeof d.estate, d.src, "/" DEMO_ESTATE) ||
        !path_join(d.policy, sizeof d.policy, d.src, "/" DEMO_POLICY))
        return cli_error(g, CLI_USAGE, "the data directory name %s is too long", d.src);
    if (!file_exists(d.estate))
        return cli_error(g, CLI_USAGE, "the demo estate %s is missing", d.estate);
    if (policy) {
        if (!file_exists(policy))
            return cli_error(g, CLI_USAGE, "--policy %s: no such file", policy);
        if (!path_join(d.policy, sizeof d.policy, policy, ""))
            return cli_error(g, CLI_USAGE, "--policy %s: the name is too long", policy);
    } else if (!file_exists(d.policy)) {
        d.policy[0] = '\0';
    }

    if (keep) {
        if (mkdir(keep, 0777) != 0 && errno != EEXIST)
            return cli_error(g, CLI_USAGE, "cannot create %s: %s", keep, strerror(errno));
        if (!path_join(d.db, sizeof d.db, keep, "/demo.db"))
            return cli_error(g, CLI_USAGE, "--keep %s: the name is too long", keep);
        remove_store(d.db);
    } else {
        const char *base = getenv("TMPDIR");
        if (!path_join(tmpdir, sizeof tmpdir, base && base[0] ? base : "/tmp", "/tsl-demo-XXXXXX"))
            return cli_error(g, CLI_USAGE, "TMPDIR %s is too long", base);
        if (!mkdtemp(tmpdir))
            return cli_error(g, CLI_FAIL, "cannot create a temporary directory %s: %s", tmpdir,
                             strerror(errno));
        if (!path_join(d.db, sizeof d.db, tmpdir, "/demo.db")) {
            rmdir(tmpdir);
            return cli_error(g, CLI_USAGE, "TMPDIR %s is too long", base);
        }
    }
    d.g = *g;
    d.g.db = d.db;

    printf("tsl demo: which Task Servers may each Client Task Agent use, and in what order?\n"
           "The estate: %s\n"
           "%s: %s\n", d.estate, keep ? "The store (kept)" : "A throwaway store", d.db);
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
