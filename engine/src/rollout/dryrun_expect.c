/*
 * dryrun_expect.c - what a dry-run is expected to find (`tsl dry-run
 * --expect`), and whether it did.
 *
 * A policy that blocks or moves clients on purpose can never have a clean
 * dry-run; its author states what it should do instead, and the record of
 * the run says whether it did (`policy activate --require-dry-run` checks
 * it).  The grammar, comma-separated items:
 *
 *   METRIC OP N    blocked=3, moved<=10, cross-site<5   (OP: = <= >= < >)
 *   METRIC         cross-site: that condition is accepted, in any amount
 *
 * A run meets its expectations when every comparison holds and every
 * condition that occurred (blocked, cross-site, over-capacity) is covered
 * by an item on one of its metrics.
 *
 * Used by: dryrun.c (parse at new, judge at finish), rollout.c (records).
 */
#include "dryrun.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef enum { OP_ANY = 0, OP_EQ, OP_LE, OP_GE, OP_LT, OP_GT } ex_op;

struct dr_expect {
    unsigned metric;   /* index in metrics[] */
    ex_op op;
    uint64_t n;
};

#define EXPECT_MAX 16

/* The metrics an expectation can name: the summary's counters. */
static const struct {
    const char *name;
    size_t off;        /* of a uint64_t, or (flag u32) a uint32_t, in tsl_dryrun_summary */
    bool u32;
    unsigned cond;     /* the condition an item on it covers, 0 none */
    const char *what;
} metrics[] = {
    {"blocked", offsetof(tsl_dryrun_summary, blocked_after), false, TSL_DRYRUN_BLOCKED,
     "clients blocked after"},
    {"newly-blocked", offsetof(tsl_dryrun_summary, newly_blocked), false, TSL_DRYRUN_BLOCKED,
     "clients newly blocked"},
    {"unblocked", offsetof(tsl_dryrun_summary, unblocked), false, 0, "clients unblocked"},
    {"moved", offsetof(tsl_dryrun_summary, first_changed), false, 0,
     "clients whose first server changes"},
    {"changed", offsetof(tsl_dryrun_summary, list_changed), false, 0,
     "clients whose list changes"},
    {"cross-site", offsetof(tsl_dryrun_summary, newly_cross_site), false, TSL_DRYRUN_CROSS_SITE,
     "clients newly outside their site"},
    {"cross-country", offsetof(tsl_dryrun_summary, newly_cross_country), false,
     TSL_DRYRUN_CROSS_SITE, "clients newly outside their country"},
    {"over-capacity", offsetof(tsl_dryrun_summary, newly_over_capacity), true,
     TSL_DRYRUN_OVER_CAPACITY, "servers newly over capacity"},
    {"errors", offsetof(tsl_dryrun_summary, errors), false, 0, "requests not decidable"},
    {"rule-errors", offsetof(tsl_dryrun_summary, policy_errors_after), false, 0,
     "rule errors after"},
};
#define NMETRICS (sizeof metrics / sizeof *metrics)

static const char *const op_text[] = {"", "=", "<=", ">=", "<", ">"};

static uint64_t metric_value(const tsl_dryrun_summary *s, unsigned m)
{
    const char *p = (const char *)s + metrics[m].off;
    if (metrics[m].u32) {
        uint32_t v;
        memcpy(&v, p, sizeof v);
        return v;
    }
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static const char *metric_list(void)
{
    return "blocked, newly-blocked, unblocked, moved, changed, cross-site, cross-country, "
           "over-capacity, errors, rule-errors";
}

/* Parses one item p[0..n) into *e. */
static int parse_item(struct dr_expect *e, const char *p, size_t n)
{
    size_t k = 0;
    while (k < n && (p[k] == '-' || (p[k] >= 'a' && p[k] <= 'z') || (p[k] >= 'A' && p[k] <= 'Z')))
        k++;
    unsigned m;
    for (m = 0; m < NMETRICS; m++)
        if (strlen(metrics[m].name) == k && strncasecmp(p, metrics[m].name, k) == 0)
            break;
    if (k == 0 || m == NMETRICS)
        return tsl_seterr(TSL_EINVALID, "expectation \"%.*s\": unknown metric (expected %s)",
                          (int)n, p, metric_list());
    e->metric = m;
    e->op = OP_ANY;
    e->n = 0;
    if (k == n)
        return 0; /* the condition is accepted, in any amount */
    const char *o = p + k;
    size_t left = n - k;
    if (left >= 2 && o[0] == '<' && o[1] == '=')
        e->op = OP_LE, k += 2;
    else if (left >= 2 && o[0] == '>' && o[1] == '=')
        e->op = OP_GE, k += 2;
    else if (o[0] == '=')
        e->op = OP_EQ, k += 1 + (left >= 2 && o[1] == '=');
    else if (o[0] == '<')
        e->op = OP_LT, k += 1;
    else if (o[0] == '>')
        e->op = OP_GT, k += 1;
    else
        return tsl_seterr(TSL_EINVALID, "expectation \"%.*s\": expected =, <=, >=, < or > after "
                                        "\"%s\"",
                          (int)n, p, metrics[m].name);
    if (k == n)
        return tsl_seterr(TSL_EINVALID, "expectation \"%.*s\": a number must follow the "
                                        "comparison",
                          (int)n, p);
    uint64_t v = 0;
    for (; k < n; k++) {
        if (p[k] < '0' || p[k] > '9' || v > (UINT64_MAX - 9) / 10)
            return tsl_seterr(TSL_EINVALID, "expectation \"%.*s\": \"%.*s\" is not a whole "
                                            "number",
                              (int)n, p, (int)(n - (size_t)(o - p) - 1), o + 1);
        v = v * 10 + (uint64_t)(p[k] - '0');
    }
    e->n = v;
    return 0;
}

static int parse_all(struct dr_expect *out, unsigned *nout, const char *text)
{
    unsigned n = 0;
    const char *p = text;
    *nout = 0;
    if (!text || !*text)
        return tsl_seterr(TSL_EINVALID, "an empty expectation (e.g. blocked=3,moved<=10)");
    while (*p) {
        size_t len = strcspn(p, ",");
        while (len && p[len - 1] == ' ')
            len--;
        if (len == 0)
            return tsl_seterr(TSL_EINVALID, "an empty item in the expectation \"%s\"", text);
        if (n == EXPECT_MAX)
            return tsl_seterr(TSL_ELIMIT, "at most %d expectations", EXPECT_MAX);
        int err = parse_item(&out[n++], p, len);
        if (err < 0)
            return err;
        p += strcspn(p, ",");
        if (*p == ',')
            p++;
        while (*p == ' ')
            p++;
    }
    *nout = n;
    return 0;
}

int tsl_dryrun_expect_check(const char *expect)
{
    struct dr_expect tmp[EXPECT_MAX];
    unsigned n;
    return parse_all(tmp, &n, expect);
}

int dryrun_expect_parse(tsl_dryrun *dr, const char *text)
{
    struct dr_expect tmp[EXPECT_MAX];
    unsigned n;
    int err = parse_all(tmp, &n, text);
    if (err < 0)
        return err;
    if (!(dr->expect = malloc(sizeof tmp[0] * n)) || !(dr->expect_text = strdup(text)))
        return tsl_oom();
    memcpy(dr->expect, tmp, sizeof tmp[0] * n);
    dr->nexpect = n;
    return 0;
}

static bool holds(const struct dr_expect *e, uint64_t v)
{
    switch (e->op) {
    case OP_EQ: return v == e->n;
    case OP_LE: return v <= e->n;
    case OP_GE: return v >= e->n;
    case OP_LT: return v < e->n;
    case OP_GT: return v > e->n;
    case OP_ANY:
    default: return true;
    }
}

int dryrun_expect_judge(tsl_dryrun *dr)
{
    tsl_dryrun_summary *s = &dr->sum;
    tsl_buf why = TSL_BUF_INIT;
    unsigned covered = 0;
    int err = 0;

    s->expected = dr->nexpect > 0;
    s->expect_met = false;
    if (!dr->nexpect)
        return 0;
    for (unsigned i = 0; i < dr->nexpect && err == 0; i++) {
        const struct dr_expect *e = &dr->expect[i];
        uint64_t v = metric_value(s, e->metric);
        covered |= metrics[e->metric].cond;
        if (holds(e, v))
            continue;
        err = tsl_buf_printf(&why, "%s%s%s%llu (%s: %llu)", why.len ? "; " : "",
                             metrics[e->metric].name, op_text[e->op],
                             (unsigned long long)e->n, metrics[e->metric].what,
                             (unsigned long long)v);
    }
    static const struct {
        unsigned cond;
        const char *name;
        unsigned metric; /* what to quote */
    } conds[] = {{TSL_DRYRUN_BLOCKED, "blocked", 1},
                 {TSL_DRYRUN_CROSS_SITE, "cross-site", 5},
                 {TSL_DRYRUN_OVER_CAPACITY, "over-capacity", 7}};
    for (size_t i = 0; i < sizeof conds / sizeof *conds && err == 0; i++)
        if ((s->conditions & conds[i].cond) && !(covered & conds[i].cond))
            err = tsl_buf_printf(&why, "%s%s occurred (%llu %s) and is not expected",
                                 why.len ? "; " : "", conds[i].name,
                                 (unsigned long long)metric_value(s, conds[i].metric),
                                 metrics[conds[i].metric].what);
    if (err == 0) {
        s->expect_met = why.len == 0;
        free(dr->verdict);
        dr->verdict = NULL;
        size_t n = strlen(dr->expect_text) + why.len + 32;
        if (!(dr->verdict = malloc(n)))
            err = tsl_oom();
        else if (s->expect_met)
            snprintf(dr->verdict, n, "%s: met", dr->expect_text);
        else
            snprintf(dr->verdict, n, "%s: not met: %s", dr->expect_text, why.ptr);
    }
    tsl_buf_free(&why);
    return err;
}

const char *tsl_dryrun_expect_verdict(const tsl_dryrun *dr)
{
    return dr && dr->finished ? dr->verdict : NULL;
}
