/*
 * cmd_simulate.c - `tsl simulate SCENARIO...`: runs fleet simulations
 * (engine/sim) and prints their reports.
 *
 * Each scenario runs in its own scratch directory (the broker's store),
 * removed afterwards unless --keep names one.  The exit status is 0 when
 * every invariant of every scenario held, 1 when one broke, 2 for a bad
 * scenario or option, 3 when a simulation could not run.  The process's
 * descriptor limit is raised to its hard limit first: thousands of clients
 * talk at once.
 *
 * Used by: main.c, the scenario_NAME ctests, tests/test_simulate_cli.sh.  Needs: cli.h, sim.h.
 */
#define _XOPEN_SOURCE 700 /* nftw */
#include "cli.h"
#include "sim.h"

#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static const char simulate_usage[] =
    "usage: tsl simulate [--speed X] [-v]... [--keep DIR] [--html FILE] SCENARIO.scn...\n"
    "\n"
    "Runs each scenario: the broker in-process, simulated Task Servers on loopback\n"
    "ports, thousands of reference Client Task Agents, and the scenario's timeline\n"
    "of faults (servers stopping, sites going dark, links cut, broker outages,\n"
    "policies activated mid-run).  Prints what happened (registrations across sites\n"
    "and countries by tier, registrations outside the approved sets, stranded\n"
    "clients, time to leave a dead server, load spread, broker cost) and checks the\n"
    "scenario's invariants.  The format and the report: docs/simulation.md.\n"
    "\n"
    "  --speed X     pace: at most X simulated seconds per wall second, or max\n"
    "                (default: the scenario's; results do not depend on it)\n"
    "  -v            also every figure (the metrics block) in the report, and the\n"
    "                timeline as it happens; -vv every agent's log lines; -vvv\n"
    "                the broker's too (logs on stderr)\n"
    "  --html FILE   also write the run as a picture: one self-contained HTML page\n"
    "                with a timeline of every site and client group\n"
    "  --keep DIR    keep the broker's store in DIR (created) instead of a\n"
    "                temporary directory\n"
    "  -h, --help    this help\n"
    "\n"
    "exit status: 0 every invariant held, 1 an invariant broke, 2 a bad scenario or\n"
    "option, 3 a simulation could not run.\n"
    "\n"
    "example: tsl simulate tests/scenarios/*.scn\n";

static void log_line(void *arg, const char *line)
{
    (void)arg;
    fprintf(stderr, "%s\n", line);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) < 0 && errno != ENOENT ? -1 : 0;
}

/* More descriptors: each client holds up to three sockets at once. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int run_one(const struct cli_global *g, const char *path, const tsl_sim_options *base,
                   const char *keep, bool *broken)
{
    tsl_sim_scenario *scn = NULL;
    tsl_buf report = TSL_BUF_INIT;
    tsl_sim_outcome out;
    tsl_sim_options opt = *base;
    char dir[4096];
    bool made = false;
    int rc = CLI_OK, err;

    if ((err = tsl_sim_scenario_load(&scn, path)) < 0) {
        rc = cli_engine_error(g, err, NULL);
        goto done;
    }
    if (keep) {
        if (mkdir(keep, 0700) < 0 && errno != EEXIST) {
            rc = cli_error(g, CLI_USAGE, "--keep %s: %s", keep, strerror(errno));
            goto done;
        }
        snprintf(dir, sizeof dir, "%s", keep);
    } else {
        const char *tmp = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/tsl-simulate-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(dir)) {
            rc = cli_error(g, CLI_FAIL, "cannot create a scratch directory in %s: %s",
                           tmp && *tmp ? tmp : "/tmp", strerror(errno));
            goto done;
        }
        made = true;
    }
    opt.workdir = dir;
    if ((err = tsl_sim_run(&report, &out, scn, &opt)) < 0) {
        /* what the report holds so far (earlier passes) is still worth showing */
        if (report.len)
            fwrite(report.ptr, 1, report.len, stdout);
        rc = cli_engine_error(g, err, "%s", path);
        goto done;
    }
    if ((rc = cli_write_buf(g, &report)) != CLI_OK)
        goto done;
    if (out.broken)
        *broken = true;
done:
    fflush(stdout);
    if (made)
        nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    tsl_buf_free(&report);
    tsl_sim_scenario_free(scn);
    return rc;
}

static int write_html(const struct cli_global *g, const char *path, tsl_buf *html)
{
    FILE *f;
    if (tsl_sim_html_end(html) < 0)
        return cli_error(g, CLI_FAIL, "out of memory");
    if (!(f = fopen(path, "w")))
        return cli_error(g, CLI_FAIL, "--html %s: %s", path, strerror(errno));
    bool ok = fwrite(html->ptr, 1, html->len, f) == html->len;
    if (fclose(f) != 0 || !ok)
        return cli_error(g, CLI_FAIL, "--html %s: %s", path, strerror(errno));
    return CLI_OK;
}

int cmd_simulate(const struct cli_global *g, int argc, char **argv)
{
    static const struct option opts[] = {
        {"speed", required_argument, NULL, 's'},
        {"verbose", no_argument, NULL, 'v'},
        {"keep", required_argument, NULL, 'k'},
        {"html", required_argument, NULL, 'H'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    tsl_sim_options opt = {NULL, NULL, 0, 0, log_line, NULL, NULL};
    const char *keep = NULL, *html_path = NULL;
    tsl_buf html = TSL_BUF_INIT;
    bool broken = false;
    int c, rc = CLI_OK;

    cli_getopt_reset();
    while ((c = getopt_long(argc, argv, ":vh", opts, NULL)) != -1) {
        switch (c) {
        case 's': {
            char *end;
            errno = 0;
            if (strcmp(optarg, "max") == 0) {
                opt.speed = -1; /* unpaced */
                break;
            }
            opt.speed = strtod(optarg, &end);
            if (end == optarg || *end || errno || !(opt.speed >= 0.1 && opt.speed <= 100000))
                return cli_usage_error(g, "--speed: \"%s\" is not \"max\" or a number from 0.1 "
                                          "to 100000", optarg);
            break;
        }
        case 'v':
            opt.verbose++;
            break;
        case 'k':
            keep = optarg;
            break;
        case 'H':
            html_path = optarg;
            break;
        case 'h':
            fputs(simulate_usage, stdout);
            return CLI_OK;
        default:
            return cli_getopt_error(g, c, argv);
        }
    }
    if (optind >= argc)
        return cli_usage_error(g, "give at least one scenario file");
    if (!tsl_sim_broker_real())
        return cli_error(g, CLI_FAIL, "this build has no broker to simulate against");
    if (keep && argc - optind > 1)
        return cli_usage_error(g, "--keep takes one scenario at a time");
    raise_fd_limit();
    if (html_path) {
        if (tsl_sim_html_begin(&html, "tsl simulate") < 0)
            return cli_error(g, CLI_FAIL, "out of memory");
        opt.html = &html;
    }

    for (int i = optind; i < argc; i++) {
        int one = run_one(g, argv[i], &opt, keep, &broken);
        if (one > rc)
            rc = one; /* the worst: fail (3) over usage (2) over findings (1) */
    }
    if (html_path) { /* what ran, also when a scenario could not */
        int one = write_html(g, html_path, &html);
        if (one > rc)
            rc = one;
    }
    tsl_buf_free(&html);
    if (rc == CLI_OK && broken)
        rc = CLI_FINDINGS;
    return rc;
}
