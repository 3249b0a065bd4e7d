/*
 * bench_decide.c - decision cost of the engine on a synthetic estate.
 *
 *   bench_decide [--sites N] [--servers N] [--clients N] [--seed S]
 *                [--db FILE] [--policy FILE]... [--rounds R]
 *
 * Generates the estate into a SQLite file (or uses --db as it is), loads a
 * snapshot, and decides for every client in a shuffled order, R rounds.
 * Prints, for the default logic and then for each --policy side by side in
 * the same run: median and p99 nanoseconds per decision (each decision timed
 * alone) and decisions per second (untimed loop), plus the ratios to the
 * default logic of the median and of the mean cost (decisions per second).
 * The plans take turns round by round, so a noisy host slows them alike.
 * One thread: the figures are per core.
 */
#include "store.h"
#include "tsl.h"
#include "bench_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    bench_opts o = BENCH_OPTS_INIT;
    const char *db = NULL;
    char tmpdb[256] = "";
    contender c[9];
    int nc = 0;
    char head[64];

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "bench_decide: %s needs a value\n", a);
            return 2;
        }
        if (!strcmp(a, "--db"))
            db = v;
        else if (!bench_opt(&o, a, v)) {
            fprintf(stderr, "bench_decide: unknown option %s\n", a);
            return 2;
        }
        i++;
    }

    tsl_store *st = NULL;
    tsl_snapshot *snap = NULL;
    tsl_plan *plan = NULL;
    tsl_request *reqs = NULL;
    int rc = 1;

    memset(c, 0, sizeof c);
    if (!db) {
        snprintf(tmpdb, sizeof tmpdb, "/tmp/tsl-bench-%d.db", (int)getpid());
        db = tmpdb;
    }
    double t0 = now_ns();
    if (tsl_store_open(&st, db, 0) < 0)
        goto fail;
    if (tmpdb[0] && tsl_estate_generate(st, o.sites, o.servers, o.clients, o.seed) < 0)
        goto fail;
    double t1 = now_ns();
    if (tsl_snapshot_load(&snap, st, NULL) < 0 || tsl_plan_new(&plan, snap, NULL) < 0)
        goto fail;
    double t2 = now_ns();

    size_t n = tsl_snapshot_client_count(snap);
    if (!(reqs = calloc(n ? n : 1, sizeof *reqs)))
        goto fail;
    for (size_t i = 0; i < n; i++)
        tsl_snapshot_client_request(&reqs[i], snap, i);
    shuffle_requests(reqs, n, o.seed);

    printf("estate: %zu sites, %zu servers, %zu clients (generate %.2f s, snapshot load %.2f s)\n",
           tsl_snapshot_site_count(snap), tsl_snapshot_server_count(snap), n, (t1 - t0) / 1e9,
           (t2 - t1) / 1e9);
    c[0].label = "default logic";
    c[0].plan = plan;
    plan = NULL;
    nc = 1;
    for (int p = 0; p < o.npolicies; p++) {
        size_t len = 0;
        char *src = read_file(o.policies[p], &len);
        tsl_policy *pol = NULL;
        if (!src) {
            fprintf(stderr, "bench_decide: cannot read %s\n", o.policies[p]);
            goto fail;
        }
        int err = tsl_policy_compile(&pol, src, len, o.policies[p]);
        free(src);
        if (err == 0)
            err = tsl_plan_new(&c[nc].plan, snap, pol);
        tsl_policy_free(pol);
        if (err < 0)
            goto fail;
        const char *slash = strrchr(o.policies[p], '/');
        c[nc].label = slash ? slash + 1 : o.policies[p];
        nc++;
    }
    if (measure(c, nc, reqs, n, o.rounds) < 0)
        goto fail;
    /* x median: median over the default's; x mean: the default's decisions/s
     * over this plan's, i.e. the ratio of the mean cost of a decision */
    snprintf(head, sizeof head, "plan (%d rounds, interleaved)", o.rounds);
    printf("%-28s %10s %10s %14s %9s %8s %7s\n", head, "median ns",
           "p99 ns", "decisions/s", "fallback", "x median", "x mean");
    for (int p = 0; p < nc; p++)
        printf("%-28s %10.0f %10.0f %14.0f %8.1f%% %8.2f %7.2f\n", c[p].label, c[p].f.median,
               c[p].f.p99, c[p].f.per_sec, 100 * c[p].f.fallback_share,
               c[p].f.median / c[0].f.median, c[0].f.per_sec / c[p].f.per_sec);
    rc = 0;
fail:
    if (rc)
        fprintf(stderr, "bench_decide: %s\n", tsl_error_last());
    for (int p = 0; p < 9; p++)
        contender_free(&c[p]);
    free(reqs);
    tsl_plan_free(plan);
    tsl_snapshot_free(snap);
    tsl_store_free(st);
    if (tmpdb[0]) {
        char side[300];
        unlink(tmpdb);
        snprintf(side, sizeof side, "%s-wal", tmpdb);
        unlink(side);
        snprintf(side, sizeof side, "%s-shm", tmpdb);
        unlink(side);
    }
    return rc;
}
