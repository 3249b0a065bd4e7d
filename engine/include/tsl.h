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
 * Store (SQLite).  Migrations in schema/ are applied on open.
 * ---------------------------------------------------------------------- */

typedef struct tsl_store tsl_store;

#define TSL_STORE_READONLY 0x1u

TSL_API int tsl_store_open(tsl_store **out, const char *path, unsigned flags);
TSL_API void tsl_store_free(tsl_store *st);
/* Schema version (PRAGMA user_version) after migrations. */
TSL_API int tsl_store_schema_version(tsl_store *st);

/* Upserts an inventory document (the JSON shape in docs/architecture.md).
 * All or nothing: on any bad record nothing is written and the error names
 * the record and field.  `origin` names the input in messages (a file name). */
TSL_API int tsl_store_import_json(tsl_store *st, const char *text, size_t len,
                                  const char *origin);
/* Upserts CSV exports, one file per table.  `kinds[i]` is "sites",
 * "task_servers", "clients" or "connection_errors", or NULL to infer it from
 * the file name.  All files are imported in one transaction. */
TSL_API int tsl_store_import_csv(tsl_store *st, const char *const *paths,
                                 const char *const *kinds, size_t n);

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
    TSL_REPORT_CLIENT_ASSIGNMENTS
} tsl_report_kind;

typedef enum tsl_format {
    TSL_FORMAT_TEXT = 0,
    TSL_FORMAT_JSON,
    TSL_FORMAT_CSV
} tsl_format;

TSL_API int tsl_report_kind_parse(tsl_report_kind *out, const char *text);
/* Appends the report to `out`.  `now` 0 means the current time. */
TSL_API int tsl_report(tsl_buf *out, tsl_worker *w, const tsl_plan *plan,
                       tsl_report_kind kind, tsl_format fmt, int64_t now);

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

/* ------------------------------------------------------------------------
 * Policy versions in the store
 * ---------------------------------------------------------------------- */

/* Policy versions in the store (schema 002).  Stores the policy's text as
 * a version named by its content hash; the same text twice is the same
 * version (*out_existed).  With TSL_POLICY_ACTIVATE it also becomes the
 * active policy.  `now` 0 means the current time. */
#define TSL_POLICY_ACTIVATE 0x1u
TSL_API int tsl_store_policy_add(int64_t *out_id, bool *out_existed, tsl_store *st,
                                 const tsl_policy *pol, const char *author,
                                 const char *comment, unsigned flags, int64_t now);
/* Compiles the active policy; *out is NULL (and 0 returned) when none is. */
TSL_API int tsl_store_policy_active(tsl_policy **out, tsl_store *st);
/* Appends the stored versions, oldest first, as a table, JSON or CSV. */
TSL_API int tsl_store_policy_list(tsl_buf *out, tsl_store *st, tsl_format fmt);

#ifdef __cplusplus
}
#endif

#endif /* TSL_H */
