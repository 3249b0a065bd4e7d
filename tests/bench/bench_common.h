/*
 * bench_common.h - what the decision benchmarks share: the clock, reading
 * a policy file, shuffling the requests, and measuring several plans side
 * by side.  Included by bench_decide.c and bench_policy.c (one executable
 * each, so everything here is static).  Uses the public API only.
 *
 * measure() runs the contenders in turns, round by round (A B C A B C ...),
 * each with its own warm worker, so that a noisy neighbour on a shared host
 * slows them alike and the ratios taken in one run hold.  Per contender: the
 * median and p99 of decisions timed one by one, then an untimed loop for
 * the mean cost and decisions per second.
 */
#ifndef TSL_BENCH_COMMON_H
#define TSL_BENCH_COMMON_H

#include "tsl.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

/* The whole file, NUL-terminated, or NULL; the caller frees it. */
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

/* A fixed shuffle (xorshift from the seed): no cache-friendly order. */
static void shuffle_requests(tsl_request *reqs, size_t n, unsigned long long seed)
{
    uint64_t x = seed * 0x9e3779b97f4a7c15ULL + 1;
    for (size_t i = n; i > 1; i--) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t j = (size_t)(x % i);
        tsl_request t = reqs[i - 1];
        reqs[i - 1] = reqs[j];
        reqs[j] = t;
    }
}

/* The options both benchmarks take; bench_opt() consumes one (with its
 * value) and returns 1, or returns 0 for the caller's own. */
typedef struct bench_opts {
    unsigned sites, servers, clients;
    unsigned long long seed;
    int rounds;
    const char *policies[8];
    int npolicies;
} bench_opts;

#define BENCH_OPTS_INIT {500, 2000, 200000, 1, 3, {NULL}, 0}

static int bench_opt(bench_opts *o, const char *a, const char *v)
{
    if (!strcmp(a, "--sites")) o->sites = (unsigned)atoi(v);
    else if (!strcmp(a, "--servers")) o->servers = (unsigned)atoi(v);
    else if (!strcmp(a, "--clients")) o->clients = (unsigned)atoi(v);
    else if (!strcmp(a, "--seed")) o->seed = strtoull(v, NULL, 10);
    else if (!strcmp(a, "--rounds")) o->rounds = atoi(v);
    else if (!strcmp(a, "--policy") && o->npolicies < 8) o->policies[o->npolicies++] = v;
    else return 0;
    return 1;
}

typedef struct figures {
    double median, p99, mean, per_sec, fallback_share, blocked_share;
} figures;

/* One plan under test.  Zero it, set label and plan; measure() fills the
 * rest; contender_free() releases what it holds (the plan included). */
typedef struct contender {
    const char *label;
    tsl_plan *plan;
    tsl_worker *w;
    double *lat;
    size_t k, fallback, blocked;
    double untimed_ns;
    double compile_ms, bind_ms;
    figures f;
} contender;

static void contender_free(contender *c)
{
    tsl_plan_free(c->plan);
    tsl_worker_free(c->w);
    free(c->lat);
    memset(c, 0, sizeof *c);
}

static int measure(contender *c, int nc, const tsl_request *reqs, size_t n, int rounds)
{
    tsl_result *res = NULL;
    int err = -1;

    if (tsl_result_new(&res) < 0)
        goto done;
    for (int i = 0; i < nc; i++) {
        if (!(c[i].lat = malloc(n * (size_t)rounds * sizeof *c[i].lat)) ||
            tsl_worker_new(&c[i].w) < 0)
            goto done;
        for (size_t r = 0; r < n && r < 20000; r++) /* warm caches, scratch, Lua state */
            tsl_decide(res, c[i].w, c[i].plan, &reqs[r], NULL);
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
                if (tsl_decide(res, x->w, x->plan, &reqs[i], NULL) < 0) {
                    fprintf(stderr, "decide: %s\n", tsl_error_last());
                    goto done;
                }
                x->lat[x->k++] = now_ns() - t0 - clock_cost;
                if (tsl_result_count(res) && tsl_result_entry(res, 0)->tier > 0)
                    x->fallback++;
                x->blocked += tsl_result_blocked(res);
            }
            double t0 = now_ns();
            for (size_t i = 0; i < n; i++)
                tsl_decide(res, x->w, x->plan, &reqs[i], NULL);
            x->untimed_ns += now_ns() - t0;
        }
    }
    for (int p = 0; p < nc; p++) {
        contender *x = &c[p];
        figures *f = &x->f;
        if (tsl_worker_policy_errors(x->w))
            fprintf(stderr, "warning: %s: %llu rule errors: %s\n", x->label,
                    (unsigned long long)tsl_worker_policy_errors(x->w),
                    tsl_worker_last_policy_error(x->w));
        qsort(x->lat, x->k, sizeof *x->lat, cmp_double);
        f->median = x->lat[x->k / 2];
        f->p99 = x->lat[(size_t)((double)x->k * 0.99)];
        f->fallback_share = (double)x->fallback / (double)x->k;
        f->blocked_share = (double)x->blocked / (double)x->k;
        f->mean = x->untimed_ns / (double)(n * (size_t)rounds);
        f->per_sec = 1e9 / f->mean;
    }
    err = 0;
done:
    tsl_result_free(res);
    return err;
}

#endif
