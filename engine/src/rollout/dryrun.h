/*
 * dryrun.h - the state of a dry-run, shared by the comparison (dryrun.c)
 * and its reports (dryrun_report.c: text, JSON, HTML).
 *
 * Memory is bounded by the estate's shape, not its client count: counters
 * per site and per server, and at most `top` kept changes.
 *
 * Used by: dryrun.c, dryrun_report.c, rollout.c.  Needs: rollout.h.
 */
#ifndef TSL_DRYRUN_H
#define TSL_DRYRUN_H

#include "rollout.h"

/* Entries of each side a kept change remembers for the report. */
#define DRYRUN_KEEP_ENTRIES 3

typedef struct dr_side {
    uint32_t n;                  /* entries in the whole list */
    uint32_t servers[DRYRUN_KEEP_ENTRIES];
    int tiers[DRYRUN_KEEP_ENTRIES];
    const char *reasons[DRYRUN_KEEP_ENTRIES]; /* borrowed from the plans */
    const char *blocked_reason;  /* borrowed from the plans */
    const char *policy;          /* the version that decided, or NULL */
} dr_side;

/* One change kept for the report: the most serious, earliest first. */
typedef struct dr_change {
    uint64_t seq;                /* order found */
    int32_t client;              /* inventory index or -1 */
    char guid[TSL_GUID_MAX + 1];
    char ip[48];
    int32_t site;
    unsigned kinds;              /* tsl_diff bits */
    int severity;
    dr_side before, after;
} dr_change;

typedef struct dr_site_count {
    uint64_t requests, first, list, blocked_before, blocked_after, cross_before, cross_after;
} dr_site_count;

typedef struct dr_server_count {
    uint64_t before, after;      /* requests whose first server it is */
} dr_server_count;

struct tsl_dryrun {
    tsl_plan *before, *after;
    const tsl_snapshot *snap;    /* the before plan's */
    tsl_worker *wb, *wa;         /* one per side: each keeps its policy's Lua state */
    tsl_result *rb, *ra;
    int64_t now;
    unsigned top;
    char *before_label, *after_label, *population;
    tsl_dryrun_emit json;
    void *json_ud;
    tsl_buf chunk;               /* one change's JSON, reused */
    uint64_t emitted;            /* changes streamed so far */
    tsl_dryrun_summary sum;
    dr_site_count *sites;        /* nsites + 1: the last is "no site" */
    dr_server_count *servers;    /* nservers + 1: the last is "no server" (blocked) */
    dr_change *changes;          /* at most top */
    uint32_t nchanges;
    uint64_t seq;
    uint64_t lane_policy_errors_before, lane_policy_errors_after; /* merged lanes' */
    int lanes;                   /* add_inventory's threads: 0 one a core (tests set it) */
    bool finished;
    /* expectations (dryrun_expect.c) */
    struct dr_expect *expect;    /* parsed options.expect, nexpect items */
    unsigned nexpect;
    char *expect_text;
    char *verdict;               /* after finish */
};

/* Parses text into dr->expect (TSL_EINVALID naming the bad item). */
TSL_INTERNAL int dryrun_expect_parse(tsl_dryrun *dr, const char *text);
/* After the counts are final: sets sum.expected/expect_met and the verdict. */
TSL_INTERNAL int dryrun_expect_judge(tsl_dryrun *dr);

/* A server is judged over capacity when its projected clients exceed a
 * positive capacity. */
static inline bool dryrun_over(const snap_server *sv, uint64_t clients)
{
    return sv->capacity > 0 && clients > (uint64_t)sv->capacity;
}

/* Appends ",\"sites\":[...],\"servers\":[...]" (dryrun_report.c). */
TSL_INTERNAL int dryrun_json_tables(tsl_buf *out, const tsl_dryrun *dr);

#endif
