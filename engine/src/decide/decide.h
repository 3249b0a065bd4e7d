/*
 * decide.h - the pieces of a decision shared by the default logic
 * (decide.c) and the policy layer: the request context, ranking, and
 * building the result.
 *
 * Used by: decide.c, policy evaluation, reports.  Needs: snapshot.h,
 * plan.h (tsl_plan, tsl_worker), result.h.
 */
#ifndef TSL_DECIDE_H
#define TSL_DECIDE_H

#include "plan.h"
#include "result.h"
#include "snapshot.h"

#define DECIDE_MAX_DEMOTED 32

/* Everything tsl_decide() resolves before any list is built. */
typedef struct decide_ctx {
    const tsl_snapshot *snap;
    const tsl_request *req;
    int64_t now;
    int32_t client;              /* inventory index, or -1 for an unknown client */
    const char *department;      /* a known client's: the inventory's; else the request's */
    const char *department_ignored; /* the request's, when it conflicts with the inventory */
    const char *task;            /* NULL when the request has none */
    int32_t site;                /* resolved site, or TSL_NO_SITE (rule 1) */
    tsl_ip ips[TSL_MAX_IPS];     /* parsed adapter IPs (the inventory IP if none given) */
    size_t nips;
    uint64_t client_hash;        /* for the (client, server) tie-break */
    uint32_t demoted[DECIDE_MAX_DEMOTED]; /* servers with a recent error (rule 4) */
    uint32_t ndemoted;
    tsl_selection selection;     /* ranking mode in force */
    int max;                     /* entries in the list */
    int ttl;
} decide_ctx;

/* Rule 3. */
TSL_INTERNAL bool decide_available(const decide_ctx *ctx, uint32_t server);
/* Why a server is unavailable ("service stopped", "not registered",
 * "heartbeat 400 s old (stale after 180 s)"), or NULL when available. */
TSL_INTERNAL const char *decide_unavailable_why(const decide_ctx *ctx, uint32_t server,
                                                char *buf, size_t len);
TSL_INTERNAL bool decide_recent_error(const decide_ctx *ctx, uint32_t server);
/* Since when an unavailable server has been out, as far as the broker
 * knows: the earliest of its stopped/unregistered report and its last
 * sign of life before its heartbeat went stale; 0 when unknown (long
 * ago).  Used for delayed fallback (usable_at). */
TSL_INTERNAL int64_t decide_down_since(const decide_ctx *ctx, uint32_t server);

/* Rule 4: writes to out[] the best min(k, n) of in[] in rank order, and
 * returns how many.  `in` and `out` may not overlap.  Uses the worker's
 * scratch space; never allocates once the worker is warm. */
TSL_INTERNAL uint32_t decide_rank(tsl_worker *w, const decide_ctx *ctx, tsl_selection sel,
                                  const uint32_t *in, uint32_t n, uint32_t *out, uint32_t k);
/* The ranking key of a server (snap_rank_key; the snapshot also keeps
 * every server sorted by it, snap->by_key). */
TSL_INTERNAL double decide_rank_key(const tsl_snapshot *snap, tsl_selection sel, uint32_t server);
/* The ranking key in words, for explain ("free 75% (250/1000)"). */
TSL_INTERNAL void decide_rank_key_text(const decide_ctx *ctx, tsl_selection sel, uint32_t server,
                                       char *buf, size_t len);

/* The worker's scratch array of at least n server indices (grown if needed). */
TSL_INTERNAL uint32_t *decide_scratch(tsl_worker *w, int which, uint32_t n);

/* Marks for "no server twice": begin a new set, then test-and-set. */
TSL_INTERNAL int decide_seen_reset(tsl_worker *w, uint32_t nservers);
TSL_INTERNAL bool decide_seen_add(tsl_worker *w, uint32_t server);
TSL_INTERNAL bool decide_seen_has(const tsl_worker *w, uint32_t server);

/* The default dynamic logic, rules 2 to 6, after the context is resolved. */
TSL_INTERNAL int decide_default(tsl_result *res, tsl_worker *w, const decide_ctx *ctx,
                                tsl_trace *tr);

/* Resolves the context (rule 1 and the request's validation). */
TSL_INTERNAL int decide_context(decide_ctx *ctx, tsl_worker *w, const tsl_plan *plan,
                                const tsl_request *req, tsl_trace *tr);
/* Rule 1 and the client's recent errors, after decide_context: ctx->site
 * (how it was found goes into res and the trace) and ctx->demoted. */
TSL_INTERNAL void decide_resolve(decide_ctx *ctx, tsl_result *res, tsl_trace *tr);

/* ---- trace (trace.c) ---- */
TSL_INTERNAL void trace_addf(tsl_trace *tr, const char *fmt, ...) TSL_PRINTF(2, 3);

#endif
