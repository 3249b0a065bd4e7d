/*
 * bench_policy.c - what a Lua policy costs per decision, side by side with
 * the default logic in one run.
 *
 *   bench_policy [--sites N] [--servers N] [--clients N] [--seed S]
 *                [--rounds R] [--policy FILE]... [--write-policy FILE]
 *
 * Generates the synthetic estate (tsl_estate_generate), then writes a
 * policy for it in the shape of the example policy
 * (policies/examples/demo.lua), but covering every site, so that every
 * request goes through the policy path rather than the default logic:
 *   - each site: its first two servers as `order`, its own servers
 *     ("ts-abc-*") as `allow`, its last server denied, and the next two sites
 *     as a delayed fallback list; every tenth site blocks fallback instead;
 *   - group "Finance": the fourth server of any site denied;
 *   - the rule "imaging stays local".
 * Then decides for every client (shuffled), R rounds, under: the default
 * logic, that estate-wide policy, policies/examples/demo.lua, and each
 * --policy FILE, interleaved round by round so that a noisy host slows
 * them alike.  Prints median and p99 ns per decision (each timed alone),
 * mean ns and decisions per second (untimed loop), and the ratios of
 * median and mean to the default logic.  One thread: figures are per core.
 */
#include "store.h"
#include "snapshot.h"
#include "tsl.h"

#include <stdarg.h>
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
    double median, p99, mean, per_sec, fallback_share, blocked_share;
} figures;

/* One plan under test, with its own warm worker. */
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

/* Rounds interleave the contenders (A B C A B C ...), so that a noisy
 * neighbour on a shared host slows them alike and the ratios hold. */
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

/* ------------------------------------------------------------------------
 * The estate-wide policy
 * ---------------------------------------------------------------------- */

typedef struct text {
    char *p;
    size_t len, cap;
} text;

static int put(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int put(text *t, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int n = vsnprintf(t->p ? t->p + t->len : NULL, t->p ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0)
            return -1;
        if (t->p && t->len + (size_t)n < t->cap) {
            t->len += (size_t)n;
            return 0;
        }
        size_t cap = (t->cap + (size_t)n + 1) * 2;
        char *np = realloc(t->p, cap);
        if (!np)
            return -1;
        t->p = np;
        t->cap = cap;
    }
}

/* "ts-abc-01" -> "ts-abc-*" */
static void prefix_glob(char *dst, size_t len, const char *name)
{
    const char *dash = strrchr(name, '-');
    size_t n = dash ? (size_t)(dash - name) : strlen(name);
    snprintf(dst, len, "%.*s-*", (int)n, name);
}

static char *estate_policy(const tsl_snapshot *s, size_t *len)
{
    text t = {NULL, 0, 0};
    char glob[128];
    uint32_t nblocks = 0;

    put(&t, "-- estate.lua - generated by bench_policy: the shape of the example policy,\n"
            "-- on every site of the synthetic estate.\n"
            "defaults { selection = \"capacity\", fallback = \"default\", max = 10, ttl = 3600 }\n\n");
    for (uint32_t i = 0; i < s->nsites; i++) {
        const snap_site *site = &s->sites[i];
        if (site->ncand < 2)
            continue;
        const char *first = s->servers[site->cand[0]].name;
        const char *second = s->servers[site->cand[1]].name;
        const char *last = s->servers[site->cand[site->ncand - 1]].name;
        prefix_glob(glob, sizeof glob, first);
        put(&t, "site \"%s\" {\n  order = { \"%s\", \"%s\" },\n  allow = { \"%s\" },\n", site->name,
            first, second, glob);
        if (site->ncand > 3)
            put(&t, "  deny = { \"%s\" },\n", last);
        if (nblocks % 10 == 9)
            put(&t, "  fallback = \"block\",\n");
        else
            put(&t, "  fallback = { \"%s\", \"%s\", after = 600 },\n",
                s->sites[(i + 1) % s->nsites].name, s->sites[(i + 2) % s->nsites].name);
        put(&t, "}\n");
        nblocks++;
    }
    put(&t, "\ngroup \"Finance\" { deny = { \"ts-*-04\" } }\n\n"
            "rule(\"imaging stays local\", function(req, list)\n"
            "  if req.task == \"imaging\" then\n"
            "    list:block_fallback()\n"
            "  end\n"
            "end)\n");
    *len = t.len;
    return t.p;
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

/* Compiles and binds a policy into a contender. */
static int contend(contender *c, const char *label, const char *src, size_t len,
                   tsl_snapshot *snap)
{
    tsl_policy *pol = NULL;
    int err = -1;
    memset(c, 0, sizeof *c);
    c->label = label;
    double t0 = now_ns();
    if (tsl_policy_compile(&pol, src, len, label) < 0)
        goto done;
    double t1 = now_ns();
    if (tsl_plan_new(&c->plan, snap, pol) < 0)
        goto done;
    c->compile_ms = (t1 - t0) / 1e6;
    c->bind_ms = (now_ns() - t1) / 1e6;
    err = 0;
done:
    if (err)
        fprintf(stderr, "bench_policy: %s: %s\n", label, tsl_error_last());
    tsl_policy_free(pol);
    return err;
}

int main(int argc, char **argv)
{
    unsigned sites = 500, servers = 2000, clients = 200000;
    unsigned long long seed = 1;
    int rounds = 3;
    const char *policies[8], *write_policy = NULL;
    int npolicies = 0;
    char tmpdb[256];
    tsl_store *st = NULL;
    tsl_snapshot *snap = NULL;
    tsl_request *reqs = NULL;
    char *gen = NULL;
    int rc = 1;
    contender c[10];
    char *texts[10] = {NULL};
    int nc = 0;

    memset(c, 0, sizeof c);

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "bench_policy: %s needs a value\n", a);
            return 2;
        }
        if (!strcmp(a, "--sites")) sites = (unsigned)atoi(v);
        else if (!strcmp(a, "--servers")) servers = (unsigned)atoi(v);
        else if (!strcmp(a, "--clients")) clients = (unsigned)atoi(v);
        else if (!strcmp(a, "--seed")) seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--rounds")) rounds = atoi(v);
        else if (!strcmp(a, "--policy") && npolicies < 8) policies[npolicies++] = v;
        else if (!strcmp(a, "--write-policy")) write_policy = v;
        else {
            fprintf(stderr, "bench_policy: unknown option %s\n", a);
            return 2;
        }
        i++;
    }

    snprintf(tmpdb, sizeof tmpdb, "/tmp/tsl-bench-policy-%d.db", (int)getpid());
    if (tsl_store_open(&st, tmpdb, 0) < 0 ||
        tsl_estate_generate(st, sites, servers, clients, seed) < 0 ||
        tsl_snapshot_load(&snap, st, NULL) < 0)
        goto fail;

    size_t n = tsl_snapshot_client_count(snap);
    if (!(reqs = calloc(n ? n : 1, sizeof *reqs)))
        goto fail;
    for (size_t i = 0; i < n; i++) {
        tsl_snapshot_client_request(&reqs[i], snap, i);
        reqs[i].now = TSL_ESTATE_EPOCH;
        if (i % 20 == 0)
            reqs[i].task = "imaging"; /* 5% of requests exercise the rule's branch */
    }
    uint64_t x = seed * 0x9e3779b97f4a7c15ULL + 1;
    for (size_t i = n; i > 1; i--) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t j = (size_t)(x % i);
        tsl_request t = reqs[i - 1];
        reqs[i - 1] = reqs[j];
        reqs[j] = t;
    }

    size_t glen = 0;
    if (!(gen = estate_policy(snap, &glen)))
        goto fail;
    if (write_policy) {
        FILE *fp = fopen(write_policy, "w");
        if (!fp || fwrite(gen, 1, glen, fp) != glen || fclose(fp) != 0) {
            fprintf(stderr, "bench_policy: cannot write %s\n", write_policy);
            goto fail;
        }
    }

    c[nc].label = "default logic";
    if (tsl_plan_new(&c[nc].plan, snap, NULL) < 0)
        goto fail;
    nc++;
    if (contend(&c[nc], "estate.lua (generated)", gen, glen, snap) < 0)
        goto fail;
    nc++;
    const char *demo = TSL_SOURCE_DIR "/policies/examples/demo.lua";
    for (int p = -1; p < npolicies && nc < 9; p++) {
        const char *path = p < 0 ? demo : policies[p];
        size_t len = 0;
        char *src = read_file(path, &len);
        if (!src) {
            if (p < 0)
                continue;
            fprintf(stderr, "bench_policy: cannot read %s\n", path);
            goto fail;
        }
        texts[nc] = src;
        const char *slash = strrchr(path, '/');
        if (contend(&c[nc], slash ? slash + 1 : path, src, len, snap) < 0)
            goto fail;
        nc++;
    }

    printf("estate: %zu sites, %zu servers, %zu clients; %d round(s), interleaved; 5%% of "
           "requests are imaging\n",
           tsl_snapshot_site_count(snap), tsl_snapshot_server_count(snap), n, rounds);
    if (measure(c, nc, reqs, n, rounds) < 0)
        goto fail;
    printf("%-22s %9s %9s %9s %12s %9s %8s %7s %7s\n", "plan (ns per decision)", "median",
           "p99", "mean", "decisions/s", "fallback", "blocked", "x med", "x mean");
    for (int p = 0; p < nc; p++) {
        const figures *f = &c[p].f, *b = &c[0].f;
        printf("%-22s %9.0f %9.0f %9.0f %12.0f %8.1f%% %7.1f%% %7.2f %7.2f", c[p].label,
               f->median, f->p99, f->mean, f->per_sec, 100 * f->fallback_share,
               100 * f->blocked_share, f->median / b->median, f->mean / b->mean);
        if (p > 0)
            printf("   (compile %.1f ms, bind %.1f ms)", c[p].compile_ms, c[p].bind_ms);
        printf("\n");
    }
    rc = 0;
fail:
    if (rc)
        fprintf(stderr, "bench_policy: %s\n", tsl_error_last());
    for (int p = 0; p < 10; p++) {
        tsl_plan_free(c[p].plan);
        tsl_worker_free(c[p].w);
        free(c[p].lat);
        free(texts[p]);
    }
    free(gen);
    free(reqs);
    tsl_snapshot_free(snap);
    tsl_store_free(st);
    unlink(tmpdb);
    char side[300];
    snprintf(side, sizeof side, "%s-wal", tmpdb);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", tmpdb);
    unlink(side);
    return rc;
}
