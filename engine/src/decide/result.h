/*
 * result.h - the decision a tsl_result holds, and how the deciders fill it.
 * Entries point into the plan's snapshot; nothing is copied per request.
 *
 * Used by: decide.c, the policy layer, reports.  Needs: snapshot.h.
 */
#ifndef TSL_RESULT_H
#define TSL_RESULT_H

#include "snapshot.h"

#define TSL_RESULT_MAX_ENTRIES 1024
#define TSL_GUID_MAX 128

struct tsl_result {
    tsl_entry *entries;
    uint32_t *servers;     /* snapshot index of each entry */
    uint32_t n, cap;
    int32_t site;          /* index, or TSL_NO_SITE */
    const char *site_name;
    char site_source[128];
    char client[TSL_GUID_MAX + 1];
    bool has_client;
    bool blocked;
    const char *blocked_reason;
    bool strict;
    int ttl;
    const char *policy;
    /* a known client's request named another department: not obeyed */
    const char *department_ignored;
    int64_t now;           /* the decision's time (usable_in in the JSON) */
};

/* Empties the result for a new decision. */
TSL_INTERNAL void result_reset(tsl_result *res);
/* Appends one entry for snapshot server `server`; `reason` must outlive
 * the plan (static text or policy-owned).  TSL_ELIMIT past the cap. */
struct decide_ctx;
TSL_INTERNAL int result_push(tsl_result *res, const struct decide_ctx *ctx, uint32_t server,
                             int tier, const char *reason, int after);
TSL_INTERNAL bool result_contains(const tsl_result *res, uint32_t server);

#endif
