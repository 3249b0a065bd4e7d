/*
 * bench_dryrun.c - a full dry-run over a synthetic estate: both sides
 * decided for every client, compared, aggregated, and the text report
 * rendered.  Target (issue 5): 1,000,000 clients in 500 sites in under
 * 10 s on the 2-core CI machine, memory bounded (the comparison streams).
 *
 *   bench_dryrun [--db FILE] [--sites N] [--servers N] [--clients N]
 *                [--before OLD.lua|default] [--after NEW.lua|default]
 *                [--lanes N]   (threads comparing the inventory; 0, the
 *                               default, is one a core)
 *
 * The store is generated with tsl_estate_generate when FILE does not exist
 * (kept for the next run).  With no policy files, the "after" side is the
 * default logic with another ranking (selection = responsiveness, max = 5)
 * over a second snapshot of the same inventory, so that most lists change
 * and every counter and the top-changes path are exercised.
 *
 * Prints the phases' times, requests per second and the peak resident set
 * before and after the comparison.
 */
#include "dryrun.h"
#include "store.h"
#include "tsl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long peak_rss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* CPU time of the whole process (every thread), user + system. */
static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static int die(const char *what, int rc)
{
    fprintf(stderr, "bench_dryrun: %s: %s (%s)\n", what, tsl_error_last(), tsl_strerror(rc));
    return 1;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;
    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (buf = malloc((size_t)n + 1)) && fread(buf, 1, (size_t)n, f) == (size_t)n) {
        buf[n] = '\0';
        *len = (size_t)n;
    } else {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    return buf;
}

static int make_plan(tsl_plan **out, tsl_snapshot *snap, const char *path)
{
    tsl_policy *pol = NULL;
    int rc;
    if (path && strcmp(path, "default") != 0) {
        size_t len;
        char *src = slurp(path, &len);
        if (!src) {
            fprintf(stderr, "bench_dryrun: cannot read %s\n", path);
            return TSL_ERROR;
        }
        rc = tsl_policy_compile(&pol, src, len, path);
        free(src);
        if (rc < 0)
            return rc;
    }
    rc = tsl_plan_new(out, snap, pol);
    tsl_policy_free(pol);
    return rc;
}

int main(int argc, char **argv)
{
    const char *db = "/tmp/tsl_bench_dryrun.db", *before = NULL, *after = NULL;
    unsigned sites = 500, servers = 2000, clients = 1000000;
    tsl_store *st = NULL;
    tsl_snapshot *sa = NULL, *sb = NULL;
    tsl_plan *pa = NULL, *pb = NULL;
    tsl_dryrun *dr = NULL;
    tsl_buf text = TSL_BUF_INIT;
    struct stat sbuf;
    int rc, lanes = 0;

    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--db") == 0)
            db = argv[i + 1];
        else if (strcmp(argv[i], "--sites") == 0)
            sites = (unsigned)strtoul(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--servers") == 0)
            servers = (unsigned)strtoul(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--clients") == 0)
            clients = (unsigned)strtoul(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--before") == 0)
            before = argv[i + 1];
        else if (strcmp(argv[i], "--after") == 0)
            after = argv[i + 1];
        else if (strcmp(argv[i], "--lanes") == 0)
            lanes = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "usage: bench_dryrun [--db FILE] [--sites N] [--servers N] "
                            "[--clients N] [--before OLD.lua] [--after NEW.lua] [--lanes N]\n");
            return 2;
        }
    }

    bool fresh = stat(db, &sbuf) != 0;
    double t0 = now_s();
    if ((rc = tsl_store_open(&st, db, 0)) < 0)
        return die("open", rc);
    if (fresh && (rc = tsl_estate_generate(st, sites, servers, clients, 1)) < 0)
        return die("generate", rc);
    double t1 = now_s();
    if ((rc = tsl_snapshot_load(&sa, st, NULL)) < 0)
        return die("snapshot", rc);
    tsl_settings alt;
    tsl_settings_init(&alt);
    if (!after) {
        alt.selection = TSL_SELECT_RESPONSIVENESS;
        alt.max = 5;
    }
    if ((rc = tsl_snapshot_load(&sb, st, after ? NULL : &alt)) < 0)
        return die("snapshot", rc);
    if ((rc = make_plan(&pa, sa, before)) < 0 || (rc = make_plan(&pb, sb, after)) < 0)
        return die("plan", rc);
    double t2 = now_s(), c2 = cpu_s();
    long rss_before = peak_rss_kb();

    tsl_dryrun_options opt;
    tsl_dryrun_options_init(&opt);
    opt.now = TSL_ESTATE_EPOCH;
    opt.before_label = before ? before : "default logic (capacity, max 10)";
    opt.after_label = after ? after : "default logic (responsiveness, max 5)";
    if ((rc = tsl_dryrun_new(&dr, pa, pb, &opt)) < 0)
        return die("dry-run", rc);
    dr->lanes = lanes; /* 0: one a core */
    if ((rc = tsl_dryrun_add_inventory(dr)) < 0 ||
        (rc = tsl_dryrun_finish(dr)) < 0)
        return die("dry-run", rc);
    double t3 = now_s(), c3 = cpu_s();
    if ((rc = tsl_dryrun_text(&text, dr)) < 0)
        return die("report", rc);
    double t4 = now_s();
    long rss_after = peak_rss_kb();

    tsl_dryrun_summary s;
    tsl_dryrun_summary_get(dr, &s);
    printf("estate: %zu sites, %zu servers, %zu clients (%s %.1f s)\n",
           tsl_snapshot_site_count(sa), tsl_snapshot_server_count(sa),
           tsl_snapshot_client_count(sa), fresh ? "generated in" : "store opened in", t1 - t0);
    printf("snapshots + plans:     %.2f s\n", t2 - t1);
    printf("dry-run (compare):     %.2f s  (%llu requests, %.0f requests/s, %.2f us/request "
           "for both sides)\n",
           t3 - t2, (unsigned long long)s.requests, (double)s.requests / (t3 - t2),
           1e6 * (t3 - t2) / (double)(s.requests ? s.requests : 1));
    printf("compare CPU time:      %.2f s on all threads (%.2f cores busy on average)\n",
           c3 - c2, (c3 - c2) / (t3 - t2));
    printf("text report:           %.3f s (%zu bytes)\n", t4 - t3, text.len);
    printf("changes: first %llu, list %llu, newly blocked %llu, newly cross-site %llu\n",
           (unsigned long long)s.first_changed, (unsigned long long)s.list_changed,
           (unsigned long long)s.newly_blocked, (unsigned long long)s.newly_cross_site);
    printf("peak RSS: %ld MiB with the snapshots loaded, %ld MiB after the dry-run "
           "(growth %ld MiB)\n",
           rss_before / 1024, rss_after / 1024, (rss_after - rss_before) / 1024);
    printf("TOTAL dry-run wall time (compare + report): %.2f s\n", t4 - t2);

    tsl_buf_free(&text);
    tsl_dryrun_free(dr);
    tsl_plan_free(pa);
    tsl_plan_free(pb);
    tsl_snapshot_free(sa);
    tsl_snapshot_free(sb);
    tsl_store_free(st);
    return 0;
}
