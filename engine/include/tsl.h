/*
 * tsl.h - the one public header of the tsl engine.
 *
 * tsl answers one question for every Client Task Agent (CTA) request:
 * which Task Servers may this client use, and in what order?
 *
 * The engine has four kinds of object, all opaque:
 *
 *   tsl_store     the durable SQLite inventory, policy versions and logs.
 *   tsl_snapshot  an immutable in-memory copy of the inventory, built from a
 *                 store (or derived from another snapshot).  Refcounted and
 *                 safe to share between threads.
 *   tsl_policy    a compiled Lua policy (immutable, refcounted, shareable).
 *   tsl_plan      a snapshot bound to a policy (or to none: the default
 *                 logic).  Immutable, refcounted, shareable: the unit a
 *                 broker swaps atomically.
 *
 * and two per-thread working objects:
 *
 *   tsl_worker    scratch space and the Lua state that runs policy rules.
 *                 One per thread; never shared.
 *   tsl_result    one decision.  Reused across decisions without allocating.
 *
 * Error convention (shared by every function that returns int):
 *   0 on success, a negative tsl_error code on failure.  The detailed message
 *   for the last failure on this thread is tsl_error_last().  Out-parameters
 *   come first, are named `out`, and are set to NULL on failure.  Every
 *   object obtained through an `out` parameter has a *_free() that accepts
 *   NULL.  Pointers returned by value are borrowed from their parent object
 *   and stay valid as long as the parent does (the comment says which).
 *
 * Threads: a snapshot, policy or plan may be used by many threads at once.
 * A worker, result, trace, store or buffer belongs to one thread at a time.
 */
#ifndef TSL_H
#define TSL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define TSL_API __attribute__((visibility("default")))
#else
#define TSL_API
#endif

/* ------------------------------------------------------------------------
 * Errors
 * ---------------------------------------------------------------------- */

/* X(name, value, text): the one table of error codes. */
#define TSL_ERROR_LIST(X)                                                  \
    X(TSL_OK, 0, "success")                                                \
    X(TSL_ERROR, -1, "error")                                              \
    X(TSL_ENOTFOUND, -2, "not found")                                      \
    X(TSL_EINVALID, -3, "invalid input")                                   \
    X(TSL_EPOLICY, -4, "policy error")                                     \
    X(TSL_ETIMEOUT, -5, "timeout")                                         \
    X(TSL_ENOMEM, -6, "out of memory")                                     \
    X(TSL_ESTORE, -7, "store error")                                       \
    X(TSL_EEXISTS, -8, "already exists")                                   \
    X(TSL_ELIMIT, -9, "limit exceeded")

typedef enum tsl_error {
#define TSL_ERROR_ENUM_(name, value, text) name = value,
    TSL_ERROR_LIST(TSL_ERROR_ENUM_)
#undef TSL_ERROR_ENUM_
} tsl_error;

/* Short text for a code ("not found"). Static storage. */
TSL_API const char *tsl_strerror(int code);
/* Symbolic name for a code ("TSL_ENOTFOUND"). Static storage. */
TSL_API const char *tsl_error_name(int code);
/* Detailed message of the last failure on this thread, or "" if none.
 * Valid until the next tsl call on this thread that fails. */
TSL_API const char *tsl_error_last(void);
TSL_API void tsl_error_clear(void);

/* ------------------------------------------------------------------------
 * Buffers: a growable byte string the engine writes JSON, CSV and text into.
 * Zero-initialise (TSL_BUF_INIT), reuse with tsl_buf_clear, free when done.
 * ---------------------------------------------------------------------- */

typedef struct tsl_buf {
    char *ptr;  /* NUL-terminated when len > 0 */
    size_t len;
    size_t cap;
} tsl_buf;

#define TSL_BUF_INIT {NULL, 0, 0}

/* How a report or listing is written. */
typedef enum tsl_format {
    TSL_FORMAT_TEXT = 0,
    TSL_FORMAT_JSON,
    TSL_FORMAT_CSV
} tsl_format;

TSL_API void tsl_buf_clear(tsl_buf *b);
TSL_API void tsl_buf_free(tsl_buf *b);

/* ------------------------------------------------------------------------
 * Addresses
 * ---------------------------------------------------------------------- */

/* IPv4 is held as IPv4-mapped IPv6 (::ffff:a.b.c.d), so one trie serves both. */
typedef struct tsl_ip {
    uint8_t b[16];
} tsl_ip;

/* Parses "10.1.2.3" or "fd00::1". TSL_EINVALID with a message naming the text. */
TSL_API int tsl_ip_parse(tsl_ip *out, const char *text);
/* Parses "10.0.0.0/8" or "fd00::/48" (host bits must be zero). The prefix
 * length is returned in the 128-bit space (IPv4 /8 becomes 104). */
TSL_API int tsl_cidr_parse(tsl_ip *out, int *out_bits, const char *text);
/* Formats into dst (at least 46 bytes); IPv4-mapped addresses print as IPv4. */
TSL_API void tsl_ip_format(char *dst, size_t dstlen, const tsl_ip *ip);

/* ------------------------------------------------------------------------
 * Settings of the default logic
 * ---------------------------------------------------------------------- */

typedef enum tsl_selection {
    TSL_SELECT_CAPACITY = 0,   /* (capacity - connections) / capacity, highest first */
    TSL_SELECT_RESPONSIVENESS, /* lowest response_ms first */
    TSL_SELECT_CONNECTIONS     /* fewest connections first */
} tsl_selection;

typedef struct tsl_settings {
    int64_t stale_after;     /* seconds; a heartbeat older than this is unavailable (180) */
    int64_t error_window;    /* seconds; connection errors younger than this rank last (3600) */
    int max;                 /* entries in a list (10) */
    int ttl;                 /* seconds a client may cache its list (3600) */
    tsl_selection selection; /* ranking mode (capacity) */
    int64_t heard_since;     /* Unix seconds since when heartbeats could be heard (a broker's
                              * start): an older heartbeat ages from here, so a broker back
                              * from an outage does not call every server stale before the
                              * first heartbeats reach it (0: no such floor) */
} tsl_settings;

/* Fills the defaults listed above. */
TSL_API void tsl_settings_init(tsl_settings *s);
/* "capacity" | "responsiveness" | "connections" <-> enum. */
TSL_API int tsl_selection_parse(tsl_selection *out, const char *text);
TSL_API const char *tsl_selection_name(tsl_selection sel);

/* ------------------------------------------------------------------------
 * Progress of long work (progress.c)
 *
 * Imports, estate generation, dry-runs, policy checks over every client and
 * simulations report how far they are to a listener set on the calling
 * thread: `what` names the units ("clients", "records", "simulated
 * seconds"), `done` of `total`, called at the start (done 0), at
 * most every 1024 units and at the end (done == total).  The engine never
 * prints; `tsl` draws it on a terminal.
 * ---------------------------------------------------------------------- */

typedef void (*tsl_progress_fn)(void *ud, const char *what, uint64_t done, uint64_t total);

/* Sets (fn NULL: clears) this thread's listener. */
TSL_API void tsl_progress_set(tsl_progress_fn fn, void *ud);

/* ------------------------------------------------------------------------
 * Store (SQLite).  Migrations in schema/ are applied on open.
 * ---------------------------------------------------------------------- */

typedef struct tsl_store tsl_store;

#define TSL_STORE_READONLY 0x1u

TSL_API int tsl_store_open(tsl_store **out, const char *path, unsigned flags);
TSL_API void tsl_store_free(tsl_store *st);
/* Schema version (PRAGMA user_version) after migrations. */
TSL_API int tsl_store_schema_version(tsl_store *st);

/* How an import reads its input (docs/inventory.md). */
typedef struct tsl_import_options {
    bool ignore_unknown;   /* accept unknown JSON keys and fields (each is noted)
                            * instead of refusing the document */
    const char *timezone;  /* zone of times written without one: NULL or "UTC",
                            * an offset ("+01:00"), or a tz name ("Europe/London") */
    tsl_buf *notes;        /* when set, receives one line per warning: what was
                            * ignored (fields, CSV columns), subnets claimed by
                            * several sites, clients with neither an IP nor a site */
} tsl_import_options;

/* Upserts an inventory document (the JSON shape in docs/inventory.md).
 * All or nothing: on any bad record nothing is written and the error names
 * the record and field.  `origin` names the input in messages (a file name).
 * Unknown keys and fields are refused (with a did-you-mean). */
TSL_API int tsl_store_import_json(tsl_store *st, const char *text, size_t len,
                                  const char *origin);
/* The same with options (`opt` NULL: the defaults above). */
TSL_API int tsl_store_import_json_opt(tsl_store *st, const char *text, size_t len,
                                      const char *origin, const tsl_import_options *opt);
/* Upserts CSV exports, one file per table.  `kinds[i]` is "sites",
 * "task_servers", "clients" or "connection_errors", or NULL to infer it from
 * the file name.  All files are imported in one transaction.  Columns are
 * matched by the spellings of docs/inventory.md, case-insensitively;
 * columns it does not know are ignored and noted. */
TSL_API int tsl_store_import_csv(tsl_store *st, const char *const *paths,
                                 const char *const *kinds, size_t n);
TSL_API int tsl_store_import_csv_opt(tsl_store *st, const char *const *paths,
                                     const char *const *kinds, size_t n,
                                     const tsl_import_options *opt);

/* ------------------------------------------------------------------------
 * Snapshots
 * ---------------------------------------------------------------------- */

typedef struct tsl_snapshot tsl_snapshot;

/* Reads the whole inventory into memory.  `settings` may be NULL (defaults). */
TSL_API int tsl_snapshot_load(tsl_snapshot **out, tsl_store *st,
                              const tsl_settings *settings);
TSL_API tsl_snapshot *tsl_snapshot_ref(tsl_snapshot *snap);
TSL_API void tsl_snapshot_free(tsl_snapshot *snap); /* drops one reference */
TSL_API const tsl_settings *tsl_snapshot_settings(const tsl_snapshot *snap);
TSL_API size_t tsl_snapshot_site_count(const tsl_snapshot *snap);
TSL_API size_t tsl_snapshot_server_count(const tsl_snapshot *snap);
TSL_API size_t tsl_snapshot_client_count(const tsl_snapshot *snap);
/* Unix time the snapshot was built. */
TSL_API int64_t tsl_snapshot_built_at(const tsl_snapshot *snap);
/* Resolves a client named by GUID or by computer name, both compared
 * without regard to case (a GUID wins over a name).  *out is the client's
 * GUID, borrowed from the snapshot.  TSL_ENOTFOUND when nothing matches;
 * TSL_EINVALID when the name is shared by several clients (the message
 * lists their GUIDs). */
TSL_API int tsl_snapshot_find_client(const char **out, const tsl_snapshot *snap,
                                     const char *guid_or_name);
/* Subnets claimed by more than one site: the same subnet in several sites,
 * or a subnet inside another site's wider one.  Each conflict names the
 * subnet, the site its clients get (the longest prefix wins; among sites
 * holding the same subnet, the first by name, ignoring case), the other
 * claims, and the clients it decides (those without an explicit site whose
 * inventory IP matches it).  Appends a text, JSON or CSV listing to `out`
 * (may be NULL) and sets *out_count (may be NULL) to the number of
 * conflicts.  `tsl report subnet-conflicts`, `tsl check`, `tsl doctor`. */
TSL_API int tsl_subnet_conflicts(tsl_buf *out, size_t *out_count, const tsl_snapshot *snap,
                                 tsl_format fmt);

/* ------------------------------------------------------------------------
 * Requests and results
 * ---------------------------------------------------------------------- */

#define TSL_MAX_IPS 16

typedef struct tsl_request {
    const char *client;     /* GUID, or NULL */
    const char *ips[TSL_MAX_IPS]; /* adapter IPs as text, in adapter order */
    size_t nips;
    const char *department; /* NULL: the client's department from the inventory */
    const char *task;       /* NULL: no task scope */
    int64_t now;            /* Unix seconds; 0 means the current time */
} tsl_request;

/* One entry of a list.  Every pointer is borrowed from the plan the
 * decision was made against (or static) and lives as long as it does. */
typedef struct tsl_entry {
    const char *name;
    const char *host;
    const char *ip;
    const char *site;      /* the server's site (first manual one, else by IP), or NULL */
    const char *reason;    /* why it is here, at this place */
    int tier;              /* 0 the approved/site set, 1.. fallback tiers */
    int after;             /* seconds all earlier tiers must fail first; 0 none */
    int64_t usable_at;     /* a delayed fallback entry whose approved servers the broker
                            * already knows are down: usable from this Unix time (their
                            * outage + after); 0: the client counts `after` itself */
    int64_t capacity;
    int64_t connections;
    int64_t response_ms;
    bool full;             /* at or over its registration cap */
    bool recent_error;     /* this client failed on it inside error_window */
} tsl_entry;

typedef struct tsl_result tsl_result;

TSL_API int tsl_result_new(tsl_result **out);
TSL_API void tsl_result_free(tsl_result *res);
/* Borrowed from the plan, or NULL when the client has no site. */
TSL_API const char *tsl_result_site(const tsl_result *res);
/* How the site was found: "explicit", "subnet 10.1.0.0/16 (adapter 1)", "none". */
TSL_API const char *tsl_result_site_source(const tsl_result *res);
TSL_API size_t tsl_result_count(const tsl_result *res);
TSL_API const tsl_entry *tsl_result_entry(const tsl_result *res, size_t i);
TSL_API bool tsl_result_blocked(const tsl_result *res);
/* Why the list is empty when blocked, else NULL. */
TSL_API const char *tsl_result_blocked_reason(const tsl_result *res);
TSL_API bool tsl_result_strict(const tsl_result *res);
TSL_API int tsl_result_ttl(const tsl_result *res);
/* The policy version (content hash) or NULL under the default logic. */
TSL_API const char *tsl_result_policy(const tsl_result *res);
/* The request's department when the decision did not obey it: the client
 * is in the inventory, whose department (or none) is the one in force.
 * NULL otherwise.  Borrowed from the request. */
TSL_API const char *tsl_result_department_ignored(const tsl_result *res);
/* Appends the JSON object `tsl list --json` prints. */
TSL_API int tsl_result_json(tsl_buf *out, const tsl_result *res);

/* An explain trace: numbered steps, each one line of text. */
typedef struct tsl_trace tsl_trace;

TSL_API int tsl_trace_new(tsl_trace **out);
TSL_API void tsl_trace_free(tsl_trace *tr);
TSL_API void tsl_trace_clear(tsl_trace *tr);
TSL_API size_t tsl_trace_count(const tsl_trace *tr);
/* Borrowed from the trace. */
TSL_API const char *tsl_trace_line(const tsl_trace *tr, size_t i);

/* ------------------------------------------------------------------------
 * Policies (Lua) and plans
 * ---------------------------------------------------------------------- */

typedef struct tsl_policy tsl_policy;

/* Compiles a policy script (text only, sandboxed, under the memory and
 * instruction limits).  `name` is used in messages ("london.lua:12: ...").
 * TSL_EPOLICY with the message on any error. */
TSL_API int tsl_policy_compile(tsl_policy **out, const char *src, size_t len,
                               const char *name);
TSL_API tsl_policy *tsl_policy_ref(tsl_policy *pol);
TSL_API void tsl_policy_free(tsl_policy *pol);
/* Content hash ("sha256:..." style short form), borrowed from the policy. */
TSL_API const char *tsl_policy_version(const tsl_policy *pol);

/* The policy's text and file name, borrowed from the policy. */
TSL_API const char *tsl_policy_source(const tsl_policy *pol, size_t *len);
TSL_API const char *tsl_policy_name(const tsl_policy *pol);
/* How many site blocks, group blocks and rules the policy declares. */
TSL_API void tsl_policy_counts(const tsl_policy *pol, size_t *sites, size_t *groups,
                               size_t *rules);

/* Checks a policy for an admin (`tsl check`): appends one line per finding
 * to `out` ("london.lua:4: warning: allow pattern \"ts-lnd-*\" matches no
 * server") and sets *out_worst to 0 (clean), 1 (warnings only) or 2
 * (errors).  Without a snapshot only the text is checked (syntax, fields,
 * fallback cycles); with one, also names and globs that match nothing,
 * unknown sites and groups, sites that block fallback with an empty or
 * unavailable approved set, and rules that fail on a sample of the
 * inventory's clients.  `now` 0 means the current time.  Returns 0 when the
 * check ran, whatever it found; a negative code only when it could not. */
TSL_API int tsl_policy_check(int *out_worst, tsl_buf *out, const char *src, size_t len,
                             const char *name, tsl_snapshot *snap, int64_t now);

/* Admin-written policy tests (`tsl test`): a test file is a small Lua file
 * declaring the policy under test, an inventory fragment, and cases with
 * a request and the expected list (docs/policy-language.md).  Runs one
 * file, appending TAP lines to `out` numbered after counts->run, and
 * updates the counts.  `policy_path` overrides the file's own `policy`
 * line (NULL: use it).  A file that cannot run is one failed test.
 * Returns 0 when the file ran, whatever the results. */
typedef struct tsl_test_counts {
    int run, passed, failed;
} tsl_test_counts;
TSL_API int tsl_policy_test_file(tsl_buf *out, tsl_test_counts *counts, const char *path,
                                 const char *policy_path);

typedef struct tsl_plan tsl_plan;

/* Binds a snapshot to a policy (NULL: the default logic).  Takes its own
 * references; the caller keeps theirs. */
TSL_API int tsl_plan_new(tsl_plan **out, tsl_snapshot *snap, tsl_policy *pol);
TSL_API tsl_plan *tsl_plan_ref(tsl_plan *plan);
TSL_API void tsl_plan_free(tsl_plan *plan);
/* Borrowed from the plan. */
TSL_API tsl_snapshot *tsl_plan_snapshot(const tsl_plan *plan);
TSL_API tsl_policy *tsl_plan_policy(const tsl_plan *plan);

/* ------------------------------------------------------------------------
 * Deciding
 * ---------------------------------------------------------------------- */

typedef struct tsl_worker tsl_worker;

TSL_API int tsl_worker_new(tsl_worker **out);
TSL_API void tsl_worker_free(tsl_worker *w);
/* Policy rule errors this worker has absorbed (each logged with its line). */
TSL_API uint64_t tsl_worker_policy_errors(const tsl_worker *w);
/* Of those, the rule calls stopped by their time limit (rule_time_ms) or
 * instruction budget (overruns). */
TSL_API uint64_t tsl_worker_policy_overruns(const tsl_worker *w);
/* Overruns in this process, every worker together; safe from any thread
 * (the broker's /metrics). */
TSL_API uint64_t tsl_policy_overruns_total(void);
/* The message of the last absorbed rule error, or NULL. Borrowed. */
TSL_API const char *tsl_worker_last_policy_error(const tsl_worker *w);

/* Decides one request.  Allocation-free once the worker and result are warm.
 * `trace` may be NULL; when given, every step is recorded (explain).
 * TSL_EINVALID for a bad request (an unparseable IP, too many IPs). */
TSL_API int tsl_decide(tsl_result *res, tsl_worker *w, const tsl_plan *plan,
                       const tsl_request *req, tsl_trace *trace);

/* Fills `req` for the i-th client of the inventory (its GUID, its IP, no
 * task).  Pointers are borrowed from the snapshot. */
TSL_API int tsl_snapshot_client_request(tsl_request *req, const tsl_snapshot *snap,
                                        size_t i);

/* ------------------------------------------------------------------------
 * Reports (each decides for every client where needed)
 * ---------------------------------------------------------------------- */

typedef enum tsl_report_kind {
    TSL_REPORT_ACTIVE_SERVERS = 0,
    TSL_REPORT_SERVER_CLIENTS,
    TSL_REPORT_CLIENT_ASSIGNMENTS,
    TSL_REPORT_SUBNET_CONFLICTS   /* tsl_subnet_conflicts as a report */
} tsl_report_kind;

TSL_API int tsl_report_kind_parse(tsl_report_kind *out, const char *text);
/* Appends the report to `out`.  `now` 0 means the current time. */
TSL_API int tsl_report(tsl_buf *out, tsl_worker *w, const tsl_plan *plan,
                       tsl_report_kind kind, tsl_format fmt, int64_t now);
/* The fallback report (report_fallback.c): the successful registrations
 * the broker recorded since `since` (Unix seconds), by site and day, with
 * how many landed outside the approved set, on a fallback tier, or on a
 * server the client's list did not name.  What happened, read from the
 * store: no decision is made. */
TSL_API int tsl_report_fallback(tsl_buf *out, tsl_store *st, tsl_format fmt, int64_t since);

/* ------------------------------------------------------------------------
 * Doctor: the ITMS validation checklist for one client
 * ---------------------------------------------------------------------- */

/* What a doctor run found. */
typedef struct tsl_doctor_summary {
    unsigned passed;
    unsigned warnings;
    unsigned failed;
} tsl_doctor_summary;

/* Appends the checklist for client `guid` to `out`, one check per line
 * (PASS/WARN/FAIL) as text, or as a JSON object or CSV rows: the client is
 * in the inventory; it has a site, and how (explicit or which subnet);
 * each candidate Task Server of that site is registered, running and has a
 * fresh heartbeat; the client receives a non-empty list (and whether it is
 * a cross-site fallback or blocked by the policy); its last connection
 * error.  `store` may be NULL; when given, the error's text is read from
 * it.  `summary` may be NULL.  An unknown client is a failed check, not an
 * error: the return value is 0 unless the checklist could not be made.
 * `now` 0 means the current time. */
TSL_API int tsl_doctor(tsl_buf *out, tsl_doctor_summary *summary, tsl_worker *w,
                       const tsl_plan *plan, tsl_store *store, const char *guid,
                       tsl_format fmt, int64_t now);
/* The same checklist for a client the inventory does not know, by its
 * adapter addresses (1 to TSL_MAX_IPS): its site, candidates and list;
 * TSL_EINVALID for a bad address. */
TSL_API int tsl_doctor_ips(tsl_buf *out, tsl_doctor_summary *summary, tsl_worker *w,
                           const tsl_plan *plan, const char *const *ips, size_t nips,
                           tsl_format fmt, int64_t now);

/* ------------------------------------------------------------------------
 * Staged plans: a policy for named sites first, the previous one elsewhere
 * (rollout_plan.c).  A staged plan is an ordinary tsl_plan: tsl_decide,
 * reports, dry-runs and the broker use it unchanged.  After rule 1 (the
 * client's site) the decision continues with the sub-plan of that site.
 * ---------------------------------------------------------------------- */

/* Distinct sub-plans one staged plan may hold. */
#define TSL_STAGE_MAX_PLANS 8

/* A plan deciding with `sites_plan` for clients whose site is one of
 * `sites` and with `base` for every other client (and clients with no
 * site).  `base` may itself be staged: its sites keep their sub-plans unless
 * named again.  `sites_plan` may not be staged.  All plans must share one
 * snapshot.  Takes its own references.  TSL_ENOTFOUND names an unknown site;
 * TSL_ELIMIT past TSL_STAGE_MAX_PLANS distinct sub-plans. */
TSL_API int tsl_plan_new_staged(tsl_plan **out, tsl_plan *base, tsl_plan *sites_plan,
                                const char *const *sites, size_t nsites);
TSL_API bool tsl_plan_staged(const tsl_plan *plan);
/* The sub-plan deciding for clients of `site` (NULL or an unknown name:
 * the base); the plan itself when it is not staged.  Borrowed. */
TSL_API const tsl_plan *tsl_plan_for_site(const tsl_plan *plan, const char *site);

/* ------------------------------------------------------------------------
 * Comparing two decisions (dry-run and shadow mode)
 * ---------------------------------------------------------------------- */

/* What differs from `before` to `after` for one request.  "Blocked" means
 * an empty list; "cross-site" means the first server's site is not the
 * client's own (only for clients that have a site); "cross-country" that
 * both sites have a country and they differ. */
typedef enum tsl_diff {
    TSL_DIFF_FIRST = 1u << 0,         /* the first server differs */
    TSL_DIFF_LIST = 1u << 1,          /* servers, order, tiers, delays or blocked differ */
    TSL_DIFF_BLOCKED = 1u << 2,       /* empty after, not before */
    TSL_DIFF_UNBLOCKED = 1u << 3,     /* empty before, not after */
    TSL_DIFF_CROSS_SITE = 1u << 4,    /* cross-site after, not before */
    TSL_DIFF_CROSS_COUNTRY = 1u << 5, /* cross-country after, not before */
    TSL_DIFF_BACK_IN_SITE = 1u << 6   /* cross-site before, not after */
} tsl_diff;

/* Compares two results decided against plans of `snap` (or of snapshots of
 * the same inventory).  Allocation-free: cheap enough for every request. */
TSL_API unsigned tsl_result_diff(const tsl_snapshot *snap, const tsl_result *before,
                                 const tsl_result *after);
/* "first", "list", "blocked", ... for one tsl_diff bit; NULL for others. */
TSL_API const char *tsl_diff_name(unsigned bit);

/* ------------------------------------------------------------------------
 * Dry-run: the impact of a policy change on every client (dryrun.c)
 *
 * Decides each request with both plans, compares, and keeps only counters
 * (per site, per server) and the few most serious changes: memory does not
 * grow with the number of clients.  The complete diff is streamed through
 * an optional callback as it is found.
 * ---------------------------------------------------------------------- */

/* Conditions a dry-run can gate on (tsl dry-run --fail-on). */
typedef enum tsl_dryrun_cond {
    TSL_DRYRUN_BLOCKED = 1u << 0,       /* a client becomes blocked (empty list) */
    TSL_DRYRUN_CROSS_SITE = 1u << 1,    /* a client is newly sent outside its site */
    TSL_DRYRUN_OVER_CAPACITY = 1u << 2  /* a server's projected clients newly exceed,
                                           or further exceed, its capacity */
} tsl_dryrun_cond;
#define TSL_DRYRUN_ALL (TSL_DRYRUN_BLOCKED | TSL_DRYRUN_CROSS_SITE | TSL_DRYRUN_OVER_CAPACITY)

/* "blocked,cross-site,over-capacity" (any subset, any order) -> bits. */
TSL_API int tsl_dryrun_cond_parse(unsigned *out, const char *list);
/* Writes "blocked,cross-site" (or "none") into dst. */
TSL_API void tsl_dryrun_cond_format(char *dst, size_t len, unsigned conds);

typedef struct tsl_dryrun tsl_dryrun;

/* Receives the complete JSON diff in pieces, in order; a negative return
 * stops the dry-run with that code. */
typedef int (*tsl_dryrun_emit)(void *ud, const char *data, size_t len);

typedef struct tsl_dryrun_options {
    int64_t now;              /* decision time; 0 the current time */
    unsigned top;             /* most serious changes kept for the report (20) */
    const char *before_label; /* "active (sha256:...)", shown in reports; may be NULL */
    const char *after_label;
    const char *population;   /* "inventory", "recorded requests"; may be NULL */
    tsl_dryrun_emit json;     /* when set: the whole JSON document, streamed */
    void *json_ud;
    const char *expect;       /* what the run should find, "blocked=3,moved<=10"
                               * (docs/rollout.md); NULL: nothing stated */
} tsl_dryrun_options;

typedef struct tsl_dryrun_summary {
    uint64_t requests;        /* compared */
    uint64_t errors;          /* requests that could not be decided (bad IP, ...) */
    uint64_t first_changed, list_changed;
    uint64_t blocked_before, blocked_after, newly_blocked, unblocked;
    uint64_t cross_site_before, cross_site_after, newly_cross_site, back_in_site;
    uint64_t cross_country_before, cross_country_after, newly_cross_country;
    uint32_t over_capacity_before, over_capacity_after, newly_over_capacity;
    uint64_t policy_errors_before, policy_errors_after; /* rule errors absorbed */
    unsigned conditions;      /* tsl_dryrun_cond bits that occurred */
    bool expected;            /* expectations were stated (options.expect) */
    bool expect_met;          /* ... and the findings met every one of them */
} tsl_dryrun_summary;

TSL_API void tsl_dryrun_options_init(tsl_dryrun_options *opt);
/* Both plans must share one snapshot, or snapshots of the same inventory
 * (the same servers in the same order).  Takes references.  `opt` may be
 * NULL (defaults); its strings are copied. */
TSL_API int tsl_dryrun_new(tsl_dryrun **out, tsl_plan *before, tsl_plan *after,
                           const tsl_dryrun_options *opt);
TSL_API void tsl_dryrun_free(tsl_dryrun *dr);
/* Compares one request.  A request neither side can decide is counted in
 * `errors` and returns 0; other failures (memory, the emit callback) stop. */
TSL_API int tsl_dryrun_add(tsl_dryrun *dr, const tsl_request *req);
/* Compares every client of the inventory (its GUID and inventory IP). */
TSL_API int tsl_dryrun_add_inventory(tsl_dryrun *dr);
/* Compares the list requests the broker recorded in its decision log
 * (client, adapter IPs, department, task), at most `limit` of the newest
 * (0: all the log holds). */
TSL_API int tsl_dryrun_add_recorded(tsl_dryrun *dr, tsl_store *st, uint64_t limit);
/* Ends the comparison: computes the capacity projections and conditions,
 * and emits the end of the JSON document.  Call once, after the adds. */
TSL_API int tsl_dryrun_finish(tsl_dryrun *dr);
TSL_API void tsl_dryrun_summary_get(const tsl_dryrun *dr, tsl_dryrun_summary *out);
/* After finish, with expectations: "blocked=3: met", or why not
 * ("blocked=3: not met (blocked is 4); cross-site occurred (12 clients
 * newly outside their site) and is not expected").  NULL without any.
 * Borrowed from the dry-run. */
TSL_API const char *tsl_dryrun_expect_verdict(const tsl_dryrun *dr);
/* Checks an expectation list without running anything (the CLI's usage
 * errors); TSL_EINVALID naming the bad item. */
TSL_API int tsl_dryrun_expect_check(const char *expect);
/* The summary JSON object alone (what a version keeps of its dry-run). */
TSL_API int tsl_dryrun_summary_json(tsl_buf *out, const tsl_dryrun *dr);
/* The human report after finish: the ten-second summary, per-site and
 * per-server counts, then the top changes with their reasons by site. */
TSL_API int tsl_dryrun_text(tsl_buf *out, const tsl_dryrun *dr);
/* One self-contained HTML page (inline CSS and SVG, no network resource):
 * the summary, a per-server before/after load chart, a per-site table. */
TSL_API int tsl_dryrun_html(tsl_buf *out, const tsl_dryrun *dr);

/* ------------------------------------------------------------------------
 * Policy versions in the store (policy_store.c, schema 002)
 * ---------------------------------------------------------------------- */

/* Stores the policy's text as a version named by its content hash; the
 * same text twice is the same version (*out_existed).  With
 * TSL_POLICY_ACTIVATE it also becomes the active policy everywhere, as
 * tsl_rollout_activate does (recorded in the rollout history, staged sites
 * cleared).  `now` 0 means the current time. */
#define TSL_POLICY_ACTIVATE 0x1u
TSL_API int tsl_store_policy_add(int64_t *out_id, bool *out_existed, tsl_store *st,
                                 const tsl_policy *pol, const char *author,
                                 const char *comment, unsigned flags, int64_t now);
/* Compiles the active policy: the base of the rollout in force, which
 * every site not staged on another version runs (tsl_rollout_bind builds
 * the whole plan).  *out is NULL (and 0 returned) under the default logic. */
TSL_API int tsl_store_policy_active(tsl_policy **out, tsl_store *st);
/* Appends the stored versions, oldest first, as a table, JSON or CSV: each
 * with whether it is the active one, the sites it is staged for, its last
 * dry-run verdict and whether it is the shadow. */
TSL_API int tsl_store_policy_list(tsl_buf *out, tsl_store *st, tsl_format fmt);

/* ------------------------------------------------------------------------
 * Task Servers waiting for approval (server_approval.c, schema 006)
 * ---------------------------------------------------------------------- */

/* Appends the pending Task Servers (names a heartbeat announced under the
 * broker's --heartbeat-registration, in no list until approved), oldest
 * first, as a table, JSON or CSV: name, the host, ip and sites it claimed,
 * when and from which address it first came, its last heartbeat. */
TSL_API int tsl_store_servers_pending(tsl_buf *out, tsl_store *st, tsl_format fmt);
/* Approves a pending server (it enters lists at the next inventory load; a
 * running broker reloads within a second) or rejects it (deleted), and
 * records who did which when.  TSL_ENOTFOUND when no pending server has
 * that name.  `now` 0 means the current time. */
TSL_API int tsl_store_server_decide(tsl_store *st, const char *name, bool approve,
                                    const char *author, int64_t now);

/* ------------------------------------------------------------------------
 * The rollout (rollout.c): activation, staged per site, rollback, dry-run
 * records and shadow mode, kept in the store.  The base of the rollout is
 * the policy layer's active policy (tsl_store_policy_active).
 *
 * A version is named by its number ("3") or a prefix of its content hash
 * ("sha256:1a2b", "1a2b").  The rollout state is a base version (or none:
 * the default logic) plus per-site versions; every activation records the
 * state it replaced, so rollback restores it exactly.
 * ---------------------------------------------------------------------- */

/* One version: its metadata, the dry-runs recorded for it, and its text. */
TSL_API int tsl_rollout_show(tsl_buf *out, tsl_store *st, const char *version, tsl_format fmt);
/* A unified line diff of two versions' texts. */
TSL_API int tsl_rollout_diff(tsl_buf *out, tsl_store *st, const char *v1, const char *v2);
/* The rollout state and the activation history (newest first). */
TSL_API int tsl_rollout_status(tsl_buf *out, tsl_store *st, tsl_format fmt);

/* Resolves a version reference to its number and short hash (dst >= 24
 * bytes, may be NULL).  TSL_ENOTFOUND / TSL_EINVALID (ambiguous prefix). */
TSL_API int tsl_rollout_resolve(int64_t *out_id, char *hash, size_t hashlen, tsl_store *st,
                                const char *version);
/* The text of a version (malloc'd, NUL-terminated; free() it) and its
 * file name as loaded. */
TSL_API int tsl_rollout_source(char **out, size_t *len, char **name, tsl_store *st,
                               int64_t id);

typedef struct tsl_activate_options {
    const char *const *sites; /* NULL/0: every site */
    size_t nsites;
    bool require_dry_run;     /* refuse without a clean dry-run against the active side */
    const char *author;       /* may be NULL */
    const char *comment;      /* may be NULL */
    int64_t now;              /* 0: the current time */
} tsl_activate_options;

/* Activates a version everywhere or for named sites (staged); "none" (or
 * "default") puts the default logic in force everywhere.  With
 * require_dry_run, TSL_EPOLICY unless a dry-run of this version against the
 * version active now (for those sites) recorded no condition.  Site names
 * are checked against the inventory (TSL_ENOTFOUND).  One transaction. */
TSL_API int tsl_rollout_activate(tsl_store *st, const char *version,
                                 const tsl_activate_options *opt);
/* Undoes the newest activation not yet undone: restores the state it
 * replaced.  TSL_ENOTFOUND when there is nothing to undo.  `what` (may be
 * NULL, >= 256 bytes) receives a one-line description. */
TSL_API int tsl_rollout_rollback(tsl_store *st, const char *author, char *what, size_t len);

/* The rollout state compiled once (base, staged and shadow versions): what a
 * broker keeps and binds to every new snapshot without touching the store
 * or compiling again.  Reload it after an activation, rollback or shadow
 * change.  TSL_EPOLICY when a stored version no longer compiles. */
typedef struct tsl_rollout tsl_rollout;

TSL_API int tsl_rollout_load(tsl_rollout **out, tsl_store *st);
TSL_API void tsl_rollout_free(tsl_rollout *ro);
/* The plan in force over `snap` (staged when some sites run another
 * version; the default logic when none is active). */
TSL_API int tsl_rollout_bind(tsl_plan **out, const tsl_rollout *ro, tsl_snapshot *snap);
/* The shadow version's plan over `snap`, or *out NULL when there is none. */
TSL_API int tsl_rollout_bind_shadow(tsl_plan **out, const tsl_rollout *ro, tsl_snapshot *snap);
/* The shadow's version (short hash) or NULL; borrowed from the rollout. */
TSL_API const char *tsl_rollout_shadow_version(const tsl_rollout *ro);
/* The state key it was loaded from (see tsl_rollout_state_key); borrowed. */
TSL_API const char *tsl_rollout_key(const tsl_rollout *ro);

/* *out true when the store's rollout (state or shadow version) is no longer
 * the one `ro` was loaded from: what a broker polls to adopt `tsl policy
 * activate|rollback|shadow` run beside it.  Two small reads, no compiling. */
TSL_API int tsl_rollout_changed(bool *out, const tsl_rollout *ro, tsl_store *st);

/* The plan in force: the stored rollout state compiled and bound to `snap`
 * (staged when some sites run another version); the default logic when no
 * version is active.  TSL_EPOLICY when a stored version no longer compiles. */
TSL_API int tsl_rollout_plan(tsl_plan **out, tsl_store *st, tsl_snapshot *snap);

/* Records a finished dry-run of version `version_id` against the side
 * described by `against` ("sha256:..." of the base, a staged state, or
 * "default"), so activation can require it and `show` can list it. */
TSL_API int tsl_rollout_record_dryrun(tsl_store *st, int64_t version_id, const char *against,
                                      const char *population, unsigned fail_on,
                                      const tsl_dryrun *dr, const char *author, int64_t now);
/* The "against" key of the rollout state now (what require_dry_run checks):
 * the base hash or "default", plus ";Site=hash" for each staged site. */
TSL_API int tsl_rollout_state_key(tsl_buf *out, tsl_store *st);

/* ---- shadow mode ---- */

/* Makes `version` the shadow (NULL: stop shadowing); counters restart. */
TSL_API int tsl_rollout_shadow_set(tsl_store *st, const char *version, const char *author,
                                   int64_t now);
/* Counters and the newest samples. */
TSL_API int tsl_rollout_shadow_report(tsl_buf *out, tsl_store *st, tsl_format fmt);

/* A broker's in-memory shadow tally: observe every request (thread-safe,
 * lock-free counters, a short locked sample buffer), flush from the writer
 * thread (one transaction), which adds the counts to the store and keeps
 * the newest samples. */
typedef struct tsl_shadow tsl_shadow;

#define TSL_SHADOW_SAMPLES 64

typedef struct tsl_shadow_counts {
    uint64_t requests, differ, first, list, blocked, unblocked, cross_site, errors;
} tsl_shadow_counts;

/* `version`: the shadow's short hash, copied. */
TSL_API int tsl_shadow_new(tsl_shadow **out, const char *version);
TSL_API void tsl_shadow_free(tsl_shadow *sh);
TSL_API const char *tsl_shadow_version(const tsl_shadow *sh);
/* Counts one request; `shadow` NULL means the shadow failed to decide. */
TSL_API unsigned tsl_shadow_observe(tsl_shadow *sh, const tsl_snapshot *snap,
                                    const tsl_request *req, const tsl_result *active,
                                    const tsl_result *shadow);
/* Counts since creation (not reset by flush). */
TSL_API void tsl_shadow_counts_get(const tsl_shadow *sh, tsl_shadow_counts *out);
/* Adds what was observed since the last flush to the store. */
TSL_API int tsl_shadow_flush(tsl_shadow *sh, tsl_store *st, int64_t now);

#ifdef __cplusplus
}
#endif

#endif /* TSL_H */
