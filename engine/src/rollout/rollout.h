/*
 * rollout.h - internals shared by the rollout files: comparing results
 * (rollout_shadow.c), the dry-run (dryrun.c) and the store side of policy
 * versions, activation and shadow mode (rollout.c, rollout_versions.c,
 * rollout_load.c, rollout_shadow_store.c).
 *
 * Used by: rollout*.c, dryrun*.c.
 * Needs: decide.h, store.h.
 */
#ifndef TSL_ROLLOUT_H
#define TSL_ROLLOUT_H

#include "decide.h"

/* One differing request, as shadow mode samples it. */
typedef struct shadow_sample {
    int64_t at;
    unsigned kinds;          /* tsl_diff bits */
    char client[TSL_GUID_MAX + 1];
    char ip[48];
    char site[64];
    char active[160];        /* server names, comma-separated, or "(blocked)" */
    char shadow[160];
} shadow_sample;

/* Newest shadow samples the store keeps per shadow version. */
#define ROLLOUT_SHADOW_KEEP 200

/* 0 not cross-site; 1 cross-site; 3 cross-site and cross-country. */
TSL_INTERNAL unsigned diff_cross(const tsl_snapshot *snap, const tsl_result *r);
/* Appends the names of the tsl_diff bits in d, joined by sep. */
TSL_INTERNAL int diff_kinds_text(tsl_buf *out, unsigned d, const char *sep);

/* Adds counters (indexed as tsl_shadow's) and samples for a shadow version
 * in one transaction, trimming old samples (rollout.c). */
TSL_INTERNAL int rollout_shadow_store(tsl_store *st, const char *version, const uint64_t *delta,
                                      const shadow_sample *samples, uint32_t nsamples,
                                      int64_t now);

/* The state change of an activation (version `id`, everywhere or for
 * opt->sites), recorded in the history, inside a transaction the caller
 * opened: tsl_rollout_activate, and tsl_store_policy_add for `policy load`
 * (policy_store.c), so every change of the active policy can be rolled
 * back.  Site names are checked against the inventory. */
TSL_INTERNAL int rollout_activate_txn(tsl_store *st, int64_t id, const tsl_activate_options *opt);

/* The shadow's version id and hash (*id 0 when none) and since when it
 * runs (since may be NULL) (rollout_shadow_store.c; rollout_load.c). */
TSL_INTERNAL int rollout_shadow_get(int64_t *id, char *hash, size_t len, int64_t *since,
                                    tsl_store *st);

/* Compiles stored version `id` (policy_store.c): what the rollout, the
 * active policy and the broker run.  TSL_ENOTFOUND when there is none. */
TSL_INTERNAL int policy_store_compile(tsl_policy **out, tsl_store *st, int64_t id);
/* Resolves `version` (tsl_rollout_resolve) and checks that the stored
 * version still compiles: a version that no longer does is never put in
 * force, as the base, on staged sites or as the shadow (policy_store.c). */
TSL_INTERNAL int policy_store_resolve_compilable(int64_t *id, char *hash, size_t hashlen,
                                                 tsl_store *st, const char *version);

#endif
