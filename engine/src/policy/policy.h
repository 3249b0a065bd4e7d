/*
 * policy.h - the Lua policy layer, inside the engine.
 *
 * A policy goes through three stages:
 *   compile (policy_compile.c)  run the script once in a sandbox; the
 *                               declarative calls (defaults, site, group,
 *                               rule) fill the C structures below.
 *   bind    (policy_bind.c)     resolve names and globs against one
 *                               snapshot into server index sets, once per
 *                               plan (tsl_plan_new).
 *   decide  (policy_eval.c)     per request: pure C over the bound sets;
 *                               Lua only for `rule` functions
 *                               (policy_rules.c), in the worker's own state.
 * plus the admin tooling: tsl_policy_check (policy_check.c) and the policy
 * test runner (policy_test.c).
 *
 * Used by: plan.c, worker.c, decide.c and the files above.
 * Needs: sandbox.h, snapshot.h.
 */
#ifndef TSL_POLICY_H
#define TSL_POLICY_H

#include "common.h"
#include "sandbox.h"
#include "snapshot.h"

#include <stdatomic.h>

/* ------------------------------------------------------------------------
 * Arena: one owner for every string and array of a compiled or bound policy.
 * ---------------------------------------------------------------------- */

typedef struct pol_arena {
    struct pol_chunk *head;
    tsl_alloc_probe *probe;
} pol_arena;

TSL_INTERNAL void *arena_alloc(pol_arena *a, size_t n);      /* zeroed, 16-aligned */
TSL_INTERNAL char *arena_strndup(pol_arena *a, const char *s, size_t n);
TSL_INTERNAL char *arena_strdup(pol_arena *a, const char *s);
TSL_INTERNAL char *arena_printf(pol_arena *a, const char *fmt, ...) TSL_PRINTF(2, 3);
TSL_INTERNAL void arena_free(pol_arena *a);

/* ------------------------------------------------------------------------
 * Compiled policy
 * ---------------------------------------------------------------------- */

/* Fallback kinds, ordered by strictness (the stricter one wins). */
typedef enum pol_fb_kind {
    POL_FB_UNSET = 0,
    POL_FB_DEFAULT,
    POL_FB_LIST,
    POL_FB_BLOCK
} pol_fb_kind;

typedef enum pol_on_error {
    POL_ONERR_APPROVED = 0, /* keep the list as it stood before the failing rule */
    POL_ONERR_DEFAULT       /* the default logic (inside the approved set if blocked) */
} pol_on_error;

/* POL_UNASSIGNED: the `unassigned { ... }` block, for clients with no site. */
typedef enum pol_block_kind { POL_DEFAULTS = 0, POL_SITE, POL_GROUP, POL_UNASSIGNED } pol_block_kind;

typedef struct pol_strv {
    const char **v;
    uint32_t n;
} pol_strv;

typedef struct pol_fallback {
    pol_fb_kind kind;
    pol_strv sites; /* POL_FB_LIST: site names and "*" */
    int after;      /* seconds; -1 unset */
} pol_fallback;

typedef struct pol_block {
    pol_block_kind kind;
    const char *name;   /* site or department name; "defaults" */
    int line;           /* where it was declared */
    bool has_body;
    bool has_allow, has_order, has_deny;
    pol_strv allow;     /* names and globs */
    pol_strv order;     /* names */
    pol_strv deny;      /* names and globs */
    pol_fallback fallback;
    int64_t cap;        /* registration cap; 0 unset */
    int selection;      /* tsl_selection; -1 unset */
    int max, ttl, after;/* -1 unset */
    bool exclusive;     /* groups: its allow is theirs alone, and all they use */
} pol_block;

typedef struct pol_rule {
    const char *name;
    int line;           /* where its function is defined */
} pol_rule;

#define POL_RULE_BUDGET_DEFAULT 1000000
#define POL_RULE_TIME_MS_DEFAULT 50 /* wall-clock bound of all rules of one request */
#define POL_MAX_SOURCE ((size_t)4 << 20)

struct tsl_policy {
    atomic_int refs;
    pol_arena arena;
    const char *name;     /* file name, for messages */
    const char *src;      /* the text (NUL-terminated), reloaded into workers */
    size_t len;
    char version[24];     /* "sha256:" + 12 hex digits */
    char sha256[65];      /* the full hash, hex */
    pol_block defaults;   /* kind POL_DEFAULTS; unset fields stay unset */
    bool has_defaults;
    pol_block unassigned; /* kind POL_UNASSIGNED: clients with no site */
    bool has_unassigned;
    pol_block *sites;     /* malloc'd arrays (grow while compiling) */
    uint32_t nsites, capsites;
    pol_block *groups;
    uint32_t ngroups, capgroups;
    pol_rule *rules;
    uint32_t nrules, caprules;
    pol_on_error on_error;
    int64_t rule_budget;  /* instructions per request, all rules together */
    int64_t rule_time_ms; /* wall-clock milliseconds per request, all rules together */
};

typedef struct policy_limits {
    size_t memory;           /* Lua heap ceiling while loading; 0 default */
    int64_t load_budget;     /* instructions while loading; 0 default */
    int64_t load_time_ms;    /* wall-clock bound while loading; 0 default (1 s) */
    tsl_alloc_probe *probe;  /* allocation failure injection (tests) */
} policy_limits;

/* tsl_policy_compile with explicit limits (tests, tsl check). */
TSL_INTERNAL int policy_compile_ex(tsl_policy **out, const char *src, size_t len,
                                   const char *name, const policy_limits *lim);

/* Runs a policy chunk in `sb` in rule-collecting mode: the declarative
 * calls are accepted and ignored, rule(...) functions are stored, in the
 * compiled order, in a new table left on the stack (sequence 1..nrules).
 * Returns a Lua status; on error the message is on the stack.
 * Used by each worker to get its own copies of the rule functions. */
TSL_INTERNAL int policy_load_rules(sandbox *sb, const tsl_policy *pol, int64_t budget);

/* ------------------------------------------------------------------------
 * Bound policy: names and globs resolved against one snapshot (plan->bound)
 * ---------------------------------------------------------------------- */

#define POL_DEFAULT_CAP 5000 /* ITMS caps a Task Server at 5,000 registrations */

struct bound_block;

typedef struct bound_fb {
    int32_t site;                    /* fallback site, or TSL_NO_SITE for "*" */
    const struct bound_block *blk;   /* that site's block, or NULL: its candidates */
    int tier;                        /* 1-based position in the list */
    const char *reason, *reason_full;
} bound_fb;

typedef struct bound_block {
    const pol_block *pb;             /* compiled block */
    int32_t site;                    /* site blocks: the site; groups: TSL_NO_SITE */
    uint32_t *approved;              /* static approved set, ascending (before availability) */
    uint32_t napproved;
    uint8_t *approved_bits;          /* membership of `approved` */
    uint8_t *allow_bits;             /* groups with allow: who the allow matches */
    uint8_t *deny_bits;              /* NULL when nothing is denied */
    uint32_t *order;                 /* resolved order members, in order */
    uint32_t norder;
    const char **r_order, **r_order_full;   /* reason per order position */
    const char *r_approved, *r_approved_full;
    const char *r_default, *r_default_full; /* fallback "default" */
    const char *r_blocked;           /* why the list is empty when blocking */
    const char *label;               /* "site \"London\"" */
    pol_fb_kind fb;                  /* own fallback (defaults applied for sites) */
    bound_fb *fbv;
    uint32_t nfb;
    int after;                       /* seconds for fallback entries */
    bool dynamic;                    /* the defaults block: tier 0 is the request
                                      * site's candidates (none without a site) */
    const char *r_only_empty;        /* exclusive groups: nothing of theirs available */
} bound_block;

typedef struct policy_bound {
    tsl_policy *pol;                 /* borrowed: the plan holds the reference */
    const tsl_snapshot *snap;
    pol_arena arena;
    bound_block **site_blk;          /* per snapshot site: its block, or NULL */
    bound_block *sites;              /* blocks whose site exists */
    uint32_t nsites;
    bound_block *groups;
    uint32_t ngroups;
    bound_block *unassigned;         /* clients with no site, or NULL */
    /* `defaults` as a block of its own, for sites no block names and clients
     * with no site; used (dflt_on) only when it changes something there:
     * a fallback other than "default", an after, a cap, or exclusive groups */
    bound_block dflt;
    bool dflt_on;
    uint8_t *reserved_bits;          /* servers of exclusive groups, NULL when none */
    /* settings in force (defaults over the snapshot's) */
    tsl_selection selection;
    int max, ttl;
    int64_t cap;                     /* defaults.cap, 0: the server's own capacity */
    /* every server in ranking-key order, per selection mode (the snapshot's
     * by_key, borrowed): "*" tiers and tier 1 of fallback "default" walk it
     * best-first.  Valid because a snapshot never changes: new metrics mean
     * a new snapshot (tsl_snapshot_derive) and so a new plan and a new bind. */
    const uint32_t *by_key[3];
    /* reasons of rule actions, per rule */
    const char **r_rule_moved, **r_rule_added, **r_rule_blocked;
} policy_bound;

/* policy_bind with allocation failure injection (tests). */
TSL_INTERNAL int policy_bind_probe(void **out, const tsl_snapshot *snap, tsl_policy *pol,
                                   tsl_alloc_probe *probe);

/* The effective registration cap of a server under a block. */
TSL_INTERNAL int64_t policy_cap(const policy_bound *pb, const bound_block *site_blk,
                                const snap_server *sv);
TSL_INTERNAL const bound_block *policy_find_group(const policy_bound *pb, const char *dept);
TSL_INTERNAL int32_t policy_find_site(const tsl_snapshot *snap, const char *name);
TSL_INTERNAL int32_t policy_find_server(const tsl_snapshot *snap, const char *name);
/* A server of `site`: assigned to it, or at home there (its own site's). */
TSL_INTERNAL bool policy_server_at_site(const tsl_snapshot *snap, uint32_t server, int32_t site);

static inline bool pol_bit(const uint8_t *bits, uint32_t i)
{
    return bits && (bits[i >> 3] >> (i & 7)) & 1;
}

/* ------------------------------------------------------------------------
 * Evaluation (policy_eval.c) and rules (policy_rules.c)
 * ---------------------------------------------------------------------- */

/* trace_addf, without even evaluating the arguments on the hot path. */
#define PTRACE(tr, ...)                                                        \
    do {                                                                       \
        if (tr)                                                                \
            trace_addf((tr), __VA_ARGS__);                                     \
    } while (0)

/* One entry of the list being built. */
typedef struct pl_entry {
    uint32_t server;
    int tier;
    int after;
    const char *reason;
    bool full;
} pl_entry;

/* Per-worker state of the policy layer (tsl_worker.policy_state). */
typedef struct policy_wstate {
    sandbox *sb;                 /* the worker's Lua state, for rules */
    tsl_policy *loaded;          /* whose rules it holds (a reference) */
    int rules_ref, req_ref, list_ref, entries_ref;
    pl_entry *list, *saved;
    uint32_t n, nsaved, cap;
    uint32_t *mark;              /* approved-set marks (generation stamps) */
    uint32_t mark_cap, mark_gen;
    uint32_t *tmark;             /* candidates of the tier being built (gen, gen+1: order) */
    uint32_t tmark_gen;
    uint64_t serial;             /* evaluation counter (stale entries) */
    struct pol_eval *cur;        /* the evaluation rules act on, NULL outside */
} policy_wstate;

/* The evaluation a rule call acts on. */
typedef struct pol_eval {
    tsl_worker *w;
    policy_wstate *ws;
    const policy_bound *pb;
    struct decide_ctx *ctx;
    const bound_block *site_blk, *group_blk;
    const uint8_t *only_bits;    /* an exclusive group's allow: every tier inside it */
    pol_fb_kind fb;              /* fallback in force */
    int after;
    bool fb_blocked;             /* a block (policy or rule) forbids fallback */
    int64_t outage_since;        /* latest decide_down_since of the unavailable approved */
    uint32_t ndown;              /* approved servers unavailable */
    int64_t usable_at;           /* delayed fallback entries: not before (0: the client counts) */
    const char *blocked_reason;
    bool strict;
    uint32_t rule;               /* index of the running rule */
    /* state before the running rule (restored when it fails) */
    bool saved_fb_blocked, saved_strict;
    const char *saved_blocked_reason;
    const char *in_callback;     /* "reorder's comparator" while a callback runs, else NULL */
    bool overrun;                /* the failing rule ran out of time or budget */
    int max;
    tsl_trace *tr;
} pol_eval;

TSL_INTERNAL int policy_wstate_get(policy_wstate **out, tsl_worker *w, uint32_t nservers);
/* Never listed for this request: denied by its site or group block,
 * reserved by an exclusive group it is not in, or (in an exclusive group)
 * outside its allow.  Rules cannot add such a server either. */
TSL_INTERNAL bool policy_denied(const pol_eval *ev, uint32_t server);
/* Is the server in the request's tier-0 approved set (marked while building)? */
TSL_INTERNAL bool policy_in_approved(const policy_wstate *ws, uint32_t server);
/* Runs the policy's rules over ws->list.  Returns 0, or the index+1 of
 * the rule that failed (its message in msg); never a Lua error. */
TSL_INTERNAL int policy_run_rules(pol_eval *ev, char *msg, size_t msglen);

TSL_INTERNAL void policy_sha256(uint8_t out[32], const void *data, size_t len);
TSL_INTERNAL void policy_sha256_hex(char out[65], const void *data, size_t len);

/* Glob match, ASCII case-insensitive: '*' any run, '?' one character. */
TSL_INTERNAL bool policy_glob_match(const char *pat, const char *s);
TSL_INTERNAL bool policy_is_glob(const char *pat);

#endif
