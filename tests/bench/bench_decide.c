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

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct figures {
    double median, p99, per_sec, fallback_share;
} figures;

/* One plan under test, with its own warm worker and result. */
typedef struct contender {
    char label[64];
    tsl_plan *plan;
    tsl_worker *w;
    tsl_result *res;
    double *lat;
    size_t k, fallback;
    double untimed_ns;
    figures f;
} contender;

/* Every round runs each contender in turn (A B A B ...), timed then untimed,
 * so that a noisy neighbour on a shared host slows them alike and the
 * ratios taken in one run hold. */
static int measure(contender *c, int nc, const tsl_request *reqs, size_t n, int rounds)
{
    for (int p = 0; p < nc; p++) {
        if (!(c[p].lat = malloc(n * (size_t)rounds * sizeof *c[p].lat)) ||
            tsl_worker_new(&c[p].w) < 0 || tsl_result_new(&c[p].res) < 0)
            return -1;
        for (size_t i = 0; i < n && i < 20000; i++) /* warm caches, scratch, Lua state */
            tsl_decide(c[p].res, c[p].w, c[p].plan, &reqs[i], NULL);
    }

    double clock_cost = now_ns();
    for (int i = 0; i < 1000; i++)
        now_ns();
    clock_cost = (now_ns() - clock_cost) / 1001.0;

    for (int r = 0; r < rounds; r++) {
        for (int p = 0; p < nc; p++) {
            contender *x = &c[p];
            for (size_t i = 0; i < n; i++) {
                double t0 = now_ns();
                if (tsl_decide(x->res, x->w, x->plan, &reqs[i], NULL) < 0) {
                    fprintf(stderr, "decide: %s\n", tsl_error_last());
                    return -1;
                }
                x->lat[x->k++] = now_ns() - t0 - clock_cost;
                if (tsl_result_count(x->res) && tsl_result_entry(x->res, 0)->tier > 0)
                    x->fallback++;
            }
            double t0 = now_ns();
            for (size_t i = 0; i < n; i++)
                tsl_decide(x->res, x->w, x->plan, &reqs[i], NULL);
            x->untimed_ns += now_ns() - t0;
        }
    }
    for (int p = 0; p < nc; p++) {
        contender *x = &c[p];
        qsort(x->lat, x->k, sizeof *x->lat, cmp_double);
        x->f.median = x->lat[x->k / 2];
        x->f.p99 = x->lat[(size_t)((double)x->k * 0.99)];
        x->f.fallback_share = (double)x->fallback / (double)x->k;
        x->f.per_sec = (double)(n * (size_t)rounds) / (x->untimed_ns / 1e9);
    }
    return 0;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    char *buf = NULL;
    if (!fp)
        return NULL;
    if (fseek(fp, 0, SEEK_END) == 0) {
        long n = ftell(fp);
        if (n >= 0 && fseek(fp, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1))) {
            *len = fread(buf, 1, (size_t)n, fp);
            buf[*len] = '\0';
        }
    }
    fclose(fp);
    return buf;
}

int main(int argc, char **argv)
{
    unsigned sites = 500, servers = 2000, clients = 200000;
    unsigned long long seed = 1;
    int rounds = 3;
    const char *db = NULL, *policies[8];
    int npolicies = 0;
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
        if (!strcmp(a, "--sites")) sites = (unsigned)atoi(v);
        else if (!strcmp(a, "--servers")) servers = (unsigned)atoi(v);
        else if (!strcmp(a, "--clients")) clients = (unsigned)atoi(v);
        else if (!strcmp(a, "--seed")) seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--rounds")) rounds = atoi(v);
        else if (!strcmp(a, "--db")) db = v;
        else if (!strcmp(a, "--policy") && npolicies < 8) policies[npolicies++] = v;
        else {
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
    if (tmpdb[0] && tsl_estate_generate(st, sites, servers, clients, seed) < 0)
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
    uint64_t x = seed * 0x9e3779b97f4a7c15ULL + 1; /* shuffle: no cache-friendly order */
    for (size_t i = n; i > 1; i--) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t j = (size_t)(x % i);
        tsl_request t = reqs[i - 1];
        reqs[i - 1] = reqs[j];
        reqs[j] = t;
    }

    printf("estate: %zu sites, %zu servers, %zu clients (generate %.2f s, snapshot load %.2f s)\n",
           tsl_snapshot_site_count(snap), tsl_snapshot_server_count(snap), n, (t1 - t0) / 1e9,
           (t2 - t1) / 1e9);
    snprintf(c[0].label, sizeof c[0].label, "default logic");
    c[0].plan = plan;
    plan = NULL;
    nc = 1;
    for (int p = 0; p < npolicies; p++) {
        size_t len = 0;
        char *src = read_file(policies[p], &len);
        tsl_policy *pol = NULL;
        if (!src) {
            fprintf(stderr, "bench_decide: cannot read %s\n", policies[p]);
            goto fail;
        }
        int err = tsl_policy_compile(&pol, src, len, policies[p]);
        free(src);
        if (err == 0)
            err = tsl_plan_new(&c[nc].plan, snap, pol);
        tsl_policy_free(pol);
        if (err < 0)
            goto fail;
        const char *slash = strrchr(policies[p], '/');
        snprintf(c[nc].label, sizeof c[nc].label, "%s", slash ? slash + 1 : policies[p]);
        nc++;
    }
    if (measure(c, nc, reqs, n, rounds) < 0)
        goto fail;
    /* x median: median over the default's; x mean: the default's decisions/s
     * over this plan's, i.e. the ratio of the mean cost of a decision */
    snprintf(head, sizeof head, "plan (%d rounds, interleaved)", rounds);
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
    for (int p = 0; p < 9; p++) {
        tsl_plan_free(c[p].plan);
        tsl_worker_free(c[p].w);
        tsl_result_free(c[p].res);
        free(c[p].lat);
    }
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
