/*
 * broker_internal.h - what the broker's files share: the broker and worker
 * structures, routes, the write queue, admin jobs, metrics and logging.
 *
 * Who runs where:
 *   control thread  broker.c (lifecycle, plan publishing, timers, signals),
 *                   writer.c (SQLite batches, decision log, registrations),
 *                   jobs in admin.c and bpolicy.c (everything that needs the
 *                   store or walks every client);
 *   policy checker  bpolicy.c's thread for POST /v1/policy: runs the
 *                   uploaded policy's code (check, compile) on a snapshot
 *                   reference, never the store; cancelled by stopping;
 *   HTTP workers    http.c (routing, parsing, replies), routes.c (the hot
 *                   path, heartbeats, registrations, health, metrics,
 *                   explain).  Workers never touch SQLite: they read the
 *                   plan they hold a reference to and push records onto the
 *                   write queue.
 *
 * Shared mutable state, all inside struct tsl_broker and documented there:
 * the published plan (plan_mu + plan_gen), the write queue (q_mu), the job
 * queue (job_mu) and a few atomic counters.
 *
 * Used by: engine/broker/ (every .c).  Needs: broker.h, the engine's internal
 * headers (decide.h, store.h), libevent, jansson, pthreads.
 */
#ifndef TSL_BROKER_INTERNAL_H
#define TSL_BROKER_INTERNAL_H

#include "broker.h"
#include "decide.h"
#include "store.h"

#include <event2/event.h>
#include <event2/http.h>
#include <pthread.h>
#include <stdatomic.h>

/* ------------------------------------------------------------------------
 * Routes: one callback each (http.c dispatches), named for metrics.
 * ---------------------------------------------------------------------- */

#define BROKER_ROUTES(X)                                                       \
    X(ROUTE_TASK_SERVERS, "task-servers")                                      \
    X(ROUTE_HEARTBEAT, "heartbeat")                                            \
    X(ROUTE_REGISTRATION, "registration")                                      \
    X(ROUTE_POLICY_UPLOAD, "policy-upload")                                    \
    X(ROUTE_POLICY_ACTIVATE, "policy-activate")                                \
    X(ROUTE_POLICY_ROLLBACK, "policy-rollback")                                \
    X(ROUTE_POLICY_LIST, "policy-list")                                        \
    X(ROUTE_EXPLAIN, "explain")                                                \
    X(ROUTE_REPORT, "reports")                                                 \
    X(ROUTE_INVENTORY, "inventory")                                            \
    X(ROUTE_SERVERS_PENDING, "servers-pending")                                \
    X(ROUTE_SERVER_DECIDE, "server-decide")                                    \
    X(ROUTE_HEALTHZ, "healthz")                                                \
    X(ROUTE_METRICS, "metrics")                                                \
    X(ROUTE_OTHER, "other")

typedef enum broker_route {
#define BROKER_ROUTE_ENUM_(id, name) id,
    BROKER_ROUTES(BROKER_ROUTE_ENUM_)
#undef BROKER_ROUTE_ENUM_
    ROUTE__COUNT
} broker_route;

extern const char *const broker_route_names[ROUTE__COUNT];

/* The status codes the broker sends, for the requests-by-status counters. */
#define BROKER_STATUSES(X)                                                     \
    X(200) X(201) X(202) X(400) X(401) X(403) X(404) X(405) X(408) X(409)      \
    X(413) X(414) X(415) X(417) X(422) X(429) X(431) X(500) X(501) X(503)      \
    X(505)

enum {
#define BROKER_STATUS_ENUM_(code) STATUS_##code,
    BROKER_STATUSES(BROKER_STATUS_ENUM_)
#undef BROKER_STATUS_ENUM_
    STATUS__COUNT
};

/* Index of `code` in BROKER_STATUSES (500's for an unlisted code). */
int broker_status_index(int code);
extern const int broker_status_codes[STATUS__COUNT];

/* ------------------------------------------------------------------------
 * Metrics: per worker (one writer each, read by /metrics through relaxed
 * atomics) and per broker (control-thread events).
 * ---------------------------------------------------------------------- */

/* Decision latency buckets (seconds' upper bounds, Prometheus `le`). */
#define BROKER_LATENCY_BUCKETS 12
extern const double broker_latency_bounds[BROKER_LATENCY_BUCKETS];

#define BROKER_MAX_TIER 4 /* fallback tiers counted 1..4, deeper ones as 4 */

typedef struct worker_metrics {
    _Atomic uint64_t requests[ROUTE__COUNT][STATUS__COUNT];
    _Atomic uint64_t latency[BROKER_LATENCY_BUCKETS + 1]; /* last: +Inf */
    _Atomic uint64_t latency_sum_ns, latency_count;
    _Atomic uint64_t blocked;
    _Atomic uint64_t fallback[BROKER_MAX_TIER + 1]; /* [k]: first entry in tier k (k>=1) */
    _Atomic uint64_t empty;                          /* empty lists, blocked or not */
    _Atomic uint64_t policy_errors;                  /* rule errors absorbed by decisions */
    _Atomic uint64_t heartbeats, registrations_ok, registrations_failed;
    _Atomic uint64_t registrations_outside; /* landed outside the approved set */
    _Atomic uint64_t dlog_dropped;          /* decisions over the decision-log rate */
    _Atomic uint64_t department_ignored;    /* a known client's request named another department */
    _Atomic uint64_t peer_refused;          /* list requests refused by require_peer_ip */
} worker_metrics;

/* One writer per counter: a plain load and store, no lock prefix. */
#define METRIC_ADD(field, n)                                                   \
    atomic_store_explicit(&(field),                                            \
                          atomic_load_explicit(&(field), memory_order_relaxed) + (n), \
                          memory_order_relaxed)
#define METRIC_INC(field) METRIC_ADD(field, 1)
#define METRIC_GET(field) atomic_load_explicit(&(field), memory_order_relaxed)

/* ------------------------------------------------------------------------
 * The write queue: records the workers acknowledge and the control thread
 * writes to SQLite in one transaction per batch.  Heartbeats and failed
 * registrations also feed the next derived snapshot (the overlay).
 * ---------------------------------------------------------------------- */

typedef enum wrec_kind { WREC_HEARTBEAT, WREC_REGISTRATION, WREC_DECISION } wrec_kind;

typedef struct bworker bworker;

typedef struct wrec {
    struct wrec *next;
    wrec_kind kind;
    _Atomic int refs; /* the unwritten list, the overlay, the waiting reply */
    int64_t at;    /* Unix seconds, the broker's clock when received */
    /* Group commit: the request that waits for this record's transaction
     * (NULL for decision-log rows, which nobody waits for).  The writer
     * sets status (200 saved; 4xx refused by the store; 503 not saved)
     * after the commit and hands the record back to worker `w`, which
     * replies on its own thread; req is touched there only. */
    bworker *w;
    struct evhttp_request *req;
    int status;
    char why[240]; /* the store's reason when not saved */
    bool is_new;   /* heartbeat: a name the inventory did not have (pending) */
    int verdict;   /* the writer refused it without failing the batch: the status */
    bool changes_service; /* heartbeat: running <-> stopped (logged) */
    union {
        struct {   /* POST /v1/task-servers/NAME/heartbeat */
            snap_server_update up;   /* name and the fields the body gave */
            const char *service;     /* "running" | "stopped" when given */
            const char *peer;        /* the address it came from (pending servers) */
        } hb;
        struct {   /* POST /v1/clients/GUID/registration */
            const char *client, *server, *error, *site, *policy;
            bool ok, listed, judged, outside_approved; /* judged: against a list */
            int tier;                /* when listed */
            int64_t error_window;    /* for the log line */
        } reg;
        struct {   /* one GET /v1/task-servers answer, for decision_log */
            const char *client, *ips, *department, *task, *site, *policy, *servers;
            bool blocked;
            int count;
        } dec;
    } u;
    /* strings and arrays follow, in the same allocation */
} wrec;

/* ------------------------------------------------------------------------
 * The broker's SQL (control thread only): one cache indexed by this enum,
 * prepared on first use (SQLITE_PREPARE_PERSISTENT), finalized on close.
 * ---------------------------------------------------------------------- */

#define BROKER_STATEMENTS(X)                                                   \
    X(W_REG_INSERT,                                                            \
      "INSERT INTO registrations(client, server, at, ok, error, site, tier,"   \
      " outside_approved, policy) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)") \
    /* only for clients and servers the inventory knows (foreign keys) */     \
    X(W_ERROR_INSERT,                                                          \
      "INSERT INTO connection_errors(client_id, server_id, at, error)"         \
      " SELECT c.id, t.id, ?3, ?4 FROM clients c, task_servers t"              \
      " WHERE c.guid = ?1 AND t.name = ?2 ON CONFLICT DO NOTHING")            \
    X(W_CLIENT_ASSIGN,                                                         \
      "UPDATE clients SET assigned_server = ?2, assigned_at = ?3 WHERE guid = ?1") \
    X(W_DLOG_PUT,                                                              \
      "INSERT OR REPLACE INTO decision_log(slot, seq, at, client, ips,"        \
      " department, task, site, policy, servers, blocked)"                     \
      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)")                \
    X(W_DLOG_NEXT, "SELECT coalesce(max(seq) + 1, 0) FROM decision_log")       \
    /* a pending server (schema 006): its latest claim, while not approved */ \
    X(W_PENDING_UPSERT,                                                        \
      "INSERT INTO task_servers(name, host, ip, registered, service, capacity,"\
      " connections, response_ms, last_heartbeat, approved, requested_at,"     \
      " requested_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 0, ?9, ?10)"  \
      " ON CONFLICT(name) DO UPDATE SET"                                       \
      "  host = CASE WHEN ?11 & 1 THEN excluded.host ELSE host END,"           \
      "  ip = CASE WHEN ?11 & 2 THEN excluded.ip ELSE ip END,"                 \
      "  registered = CASE WHEN ?11 & 4 THEN excluded.registered"              \
      "   ELSE registered END,"                                                \
      "  service = CASE WHEN ?11 & 8 THEN excluded.service ELSE service END,"  \
      "  capacity = CASE WHEN ?11 & 16 THEN excluded.capacity ELSE capacity END,"\
      "  connections = CASE WHEN ?11 & 32 THEN excluded.connections"           \
      "   ELSE connections END,"                                               \
      "  response_ms = CASE WHEN ?11 & 64 THEN excluded.response_ms"           \
      "   ELSE response_ms END,"                                               \
      "  last_heartbeat = excluded.last_heartbeat,"                            \
      "  requested_by = excluded.requested_by WHERE approved = 0"              \
      " RETURNING id") /* ?11: the SERVER_UPSERT mask's bits */                \
    /* 1 when a new name would take the server count past ?2 */               \
    X(W_SERVERS_FULL,                                                          \
      "SELECT count(*) >= ?2 AND NOT EXISTS"                                   \
      " (SELECT 1 FROM task_servers WHERE name = ?1) FROM task_servers")       \
    X(W_PENDING_COUNT, "SELECT count(*) FROM task_servers WHERE approved = 0")  \
    X(W_APPROVALS_LAST, "SELECT coalesce(max(id), 0) FROM server_approvals")    \
    X(W_DLOG_TRIM, "DELETE FROM decision_log WHERE slot >= ?1")                \
    X(W_REG_RETENTION, "DELETE FROM registrations WHERE at < ?1")
/* The fallback report is the engine's (tsl_report_fallback).
 * Policy versions and the rollout are the engine's (rollout.c,
 * policy_store.c): bpolicy.c calls them, it has no SQL of its own. */

typedef enum broker_stmt_id {
#define BROKER_STMT_ENUM_(id, sql) id,
    BROKER_STATEMENTS(BROKER_STMT_ENUM_)
#undef BROKER_STMT_ENUM_
    B_STMT__COUNT
} broker_stmt_id;

/* ------------------------------------------------------------------------
 * Admin jobs: a worker hands a request that needs the store (or walks
 * every client) to the control thread and replies when it comes back.
 * ---------------------------------------------------------------------- */

typedef struct edge_conn edge_conn;

typedef enum job_kind {
    JOB_POLICY_UPLOAD,
    JOB_POLICY_ACTIVATE,
    JOB_POLICY_ROLLBACK,
    JOB_POLICY_LIST,
    JOB_REPORT,
    JOB_INVENTORY,
    JOB_SERVERS_PENDING,
    JOB_SERVER_APPROVE,
    JOB_SERVER_REJECT,
    JOB_SYNC /* tsl_broker_sync: no request */
} job_kind;

typedef struct job {
    struct job *next;
    job_kind kind;
    broker_route route;
    bworker *w;                  /* replies on this worker's thread */
    struct evhttp_request *req;  /* touched by the worker thread only */
    struct event *reply_ev;      /* on the worker's base, activated by control */
    char *body;                  /* a copy of the request body (NUL-terminated) */
    size_t body_len;
    char arg[256];               /* path argument: a policy version, a report name */
    char author[128], comment[512], format[8];
    char sites[512];             /* activate: "London,Paris" (staged), "" everywhere */
    bool require_dry_run;        /* activate: refuse without a clean dry-run */
    int days;                    /* the fallback report's window */
    /* the answer */
    int status;
    tsl_buf out;
    const char *content_type;
    uint64_t started_ns;
    void *check;                 /* bpolicy.c: an upload's check, run off the control thread */
    /* JOB_SYNC */
    pthread_mutex_t *done_mu;
    pthread_cond_t *done_cv;
    bool *done;
    int *result;
} job;

/* ------------------------------------------------------------------------
 * Workers and the broker
 * ---------------------------------------------------------------------- */

struct bworker {
    tsl_broker *b;
    int index;
    pthread_t thread;
    bool thread_started;
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *bound;
    struct event *stop_ev;     /* control -> worker: stop accepting, drain */
    struct event *refresh_ev;  /* control -> worker: a new plan is published */
    bool draining;             /* worker thread only */
    /* the connection edge (edge.c), worker thread only */
    edge_conn *conns;          /* every connection this worker accepted, until swept */
    edge_conn **byfd;          /* admitted connections by descriptor (nbyfd slots) */
    size_t nbyfd;
    struct event *sweep_ev;    /* frees the edge state of closed connections */
    struct event *resume_ev;   /* re-enables accepting after descriptors ran out */
    /* group commit: records the writer committed (or refused), waiting
     * for this worker to reply; done_mu guards the list */
    pthread_mutex_t done_mu;
    bool done_mu_init;
    wrec *done_head, **done_tail;
    struct event *done_ev;     /* control -> worker: replies to send */
    /* the plan this worker decides against, and its generation */
    tsl_plan *plan;
    uint64_t plan_gen;
    tsl_worker *tw;
    tsl_result *res;
    /* shadow mode, taken with the plan (same generation): the shadow
     * version's plan and the tally it reports to; NULL when none */
    tsl_plan *shadow_plan;
    tsl_shadow *shadow;
    tsl_worker *shadow_tw;     /* the shadow's rule errors stay out of w->tw's */
    tsl_result *shadow_res;
    tsl_trace *trace;
    tsl_buf out, line;         /* response body, log lines */
    tsl_buf logq;              /* request log lines not yet written (log.c) */
    struct event *logflush_ev; /* writes logq out every LOG_FLUSH_MS */
    tsl_buf body;              /* the request body, NUL-terminated */
    uint64_t seen_policy_errors; /* tsl_worker_policy_errors already counted */
    worker_metrics m;
};

#define BROKER_MAX_PROXIES 32

struct tsl_broker {
    tsl_broker_config cfg;     /* strings below are the broker's own copies */
    char *db_path, *listen, *policy_path, *token_path, *ts_token_path, *tls_cert, *tls_key;
    tsl_ip proxies[BROKER_MAX_PROXIES]; /* cfg.trusted_proxies, parsed (128-bit prefixes) */
    int proxy_bits[BROKER_MAX_PROXIES];
    int nproxies;
    char token[80];
    char ts_token[80];         /* the Task Servers' (heartbeats) */
    struct ratelimit *hb_limit, *reg_limit; /* per peer, per client GUID (ratelimit.c) */
    _Atomic size_t pending_servers; /* task servers waiting for approval (control writes) */
    int64_t approvals_seen;    /* control: the last server_approvals row adopted */
    evutil_socket_t listen_fd;
    int port;
    int64_t started_at;

    /* ---- control thread only ---- */
    tsl_store *store;
    struct event_base *base;
    struct event *tick_ev, *job_ev, *stop_ev, *flush_ev;
    struct event *sig_term, *sig_int, *sig_hup;
    tsl_snapshot *snap;        /* the latest snapshot (a root or derived) */
    tsl_rollout *rollout;      /* the rollout in force, compiled (base, staged
                                  sites, shadow): bound to every new snapshot */
    tsl_shadow **retired;      /* tallies of former shadow versions: workers
                                  may still report to them; flushed, freed
                                  with the broker */
    size_t nretired;
    int64_t last_rollout_poll; /* the monotonic second the store's rollout was compared */
    int64_t rollout_refused_at; /* the last time a changed rollout was refused (logged) */
    tsl_worker *ctl_worker;    /* reports */
    wrec *unwritten, **unwritten_tail; /* taken off the queue, not yet committed */
    wrec **overlay;            /* heartbeats and failed registrations not yet derived */
    size_t noverlay, overlay_cap;
    uint64_t last_derive_ms;
    int64_t last_refill;       /* the second the decision-log budget was refilled */
    bool stopping;
    int64_t dlog_seq;          /* next decision_log sequence number */
    int64_t last_retention;    /* last registrations clean-up */
    sqlite3_stmt *stmts[24];   /* the statement cache (broker_stmt) */

    /* ---- the published plan: plan_mu guards plan; plan_gen bumps on swap ---- */
    pthread_mutex_t plan_mu;
    tsl_plan *plan;
    tsl_plan *shadow_plan;     /* NULL: no shadow version */
    tsl_shadow *shadow;        /* its tally (owned here; see retired) */
    _Atomic uint64_t plan_gen;
    char policy_version[96];   /* under plan_mu: the version in force, "" none */
    _Atomic int64_t plan_built_at;

    /* ---- the write queue: q_mu guards head/tail ---- */
    pthread_mutex_t q_mu;
    wrec *q_head, **q_tail;
    _Atomic size_t q_len;      /* records queued and not yet committed */
    _Atomic bool flush_poked;  /* a worker asked for a flush not yet begun */
    _Atomic size_t acks_waiting; /* requests waiting for their commit */
    _Atomic int dlog_budget;   /* decisions the log may still take this second */

    /* ---- admin jobs: job_mu guards the list ---- */
    pthread_mutex_t job_mu;
    job *jobs, **jobs_tail;
    _Atomic int jobs_pending;  /* queued or running, not yet replied to */

    /* ---- lifecycle ---- */
    pthread_t thread;          /* tsl_broker_start's control thread */
    bool thread_started;
    _Atomic bool running, stop_requested;
    pthread_mutex_t start_mu;
    pthread_cond_t start_cv;
    bool start_done;
    int start_result, run_result;

    /* ---- counters for /metrics (atomic: written by control, read by workers) ---- */
    _Atomic uint64_t writes_committed, write_errors, policy_load_failures, derives,
        reloads, jobs_done;

    struct policy_checker *checker; /* bpolicy.c: the thread that checks uploads (lazy) */

    bworker *workers;
    int nworkers;

    /* ---- the connection edge (edge.c) ---- */
    char edge_prefix[40];      /* path of the requests the edge stands in for a refused one */
    struct ssl_ctx_st *tls;    /* NULL: plain HTTP */
    pthread_mutex_t peer_mu;   /* guards peers: connections per address, every worker */
    struct edge_peer **peers;  /* EDGE_PEER_BUCKETS chains */
    _Atomic uint64_t edge_refused[3]; /* EDGE_FRAMING, EDGE_DEADLINE, EDGE_PER_ADDRESS */
    _Atomic uint64_t accept_paused;    /* accept failures (descriptors) since start */
    _Atomic uint64_t accept_paused_logged; /* ... as of the last log line */
    _Atomic int64_t accept_log_at;     /* monotonic ms of that line */
};

/* ---- broker.c ---- */
/* true when addr (IPv4 as ::ffff:a.b.c.d) is in cfg.trusted_proxies. */
bool broker_trusted_proxy(const tsl_broker *b, const uint8_t addr[16]);
int64_t broker_now(const tsl_broker *b);
uint64_t broker_mono_ns(void);
/* Publishes a new plan and the shadow plan beside it (NULL: none), taking
 * both references, and pokes the workers. */
void broker_publish(tsl_broker *b, tsl_plan *plan, tsl_plan *shadow_plan);
/* Binds b->rollout to `snap`: the plan in force (staged sites included)
 * and the shadow version's plan (*shadow NULL when none). */
int broker_bind(tsl_broker *b, tsl_snapshot *snap, tsl_plan **plan, tsl_plan **shadow);
/* Takes the worker's reference on the current plan if it changed. */
void worker_refresh_plan(bworker *w);
/* Loads the whole inventory again (after flushing) and rebinds the rollout. */
int broker_reload(tsl_broker *b);
/* Hands a job to the control thread (worker side). */
void broker_post_job(tsl_broker *b, job *j);
/* Runs a job (control side). */
void broker_run_job(tsl_broker *b, job *j);

/* ---- writer.c (control thread) ---- */
/* A cached statement (borrowed; NULL with the error set); reset it after use. */
sqlite3_stmt *broker_stmt(tsl_broker *b, broker_stmt_id id);
/* Steps a write statement to its end, resets it and clears its bindings. */
int broker_stmt_run(tsl_broker *b, sqlite3_stmt *st, const char *what);
/* Enqueues a record (worker side); TSL_ELIMIT when the queue is full.
 * A record with a request (r->w, r->req) is answered by route_write_done
 * on that worker once its transaction has committed; the control thread
 * is asked to flush at once (group commit: whatever queued meanwhile goes
 * in the same transaction). */
int writer_enqueue(tsl_broker *b, wrec *r);
/* The worker side of group commit: its completion queue and event. */
int writer_worker_init(bworker *w);
/* Frees the worker's completions without replying (the worker has stopped). */
void writer_worker_free(bworker *w);
/* Writes everything queued in one transaction, feeding the overlay. */
int writer_flush(tsl_broker *b);
/* Derives and publishes a new plan from the overlay if it is not empty. */
int writer_derive(tsl_broker *b);
/* Adds a record to the overlay (a reference). */
int overlay_add(tsl_broker *b, wrec *r);
/* *out: `base` with the overlay applied (a new reference; `base` itself,
 * referenced again, when the overlay is empty).  The overlay is emptied on
 * success. */
int overlay_apply(tsl_broker *b, tsl_snapshot *base, tsl_snapshot **out);
/* Reloads when `tsl servers approve|reject` changed the store (once a second). */
void writer_poll_approvals(tsl_broker *b);
/* Deletes registrations older than registrations_keep_days. */
void writer_retention(tsl_broker *b, int64_t now);
void writer_close(tsl_broker *b);
int writer_open(tsl_broker *b);
/* The fallback report from the registrations table (after a flush). */
int writer_fallback_report(tsl_broker *b, tsl_buf *out, tsl_format fmt, int64_t since);
void wrec_release(wrec *r);

/* ---- http.c (worker threads) ---- */
int http_worker_setup(bworker *w);
/* Replies with a JSON body from w->out (or `body`), counting the metric. */
void http_reply(bworker *w, struct evhttp_request *req, broker_route route, int status,
                const char *content_type, const char *body, size_t len);
/* Replies {"error": "..."} with `status`. */
void http_error(bworker *w, struct evhttp_request *req, broker_route route, int status,
                const char *fmt, ...) TSL_PRINTF(5, 6);
/* The request body as a NUL-terminated copy in w->out's sibling buffer;
 * NULL after replying 413 when it is over `limit`. */
const char *http_body(bworker *w, struct evhttp_request *req, broker_route route,
                      size_t limit, size_t *len);
/* Splits and percent-decodes a query string in place.  Returns the count
 * or -1 (reply done) on a malformed one. */
#define HTTP_MAX_PARAMS 32
typedef struct http_param {
    char *key, *value;
} http_param;
int http_query(bworker *w, struct evhttp_request *req, broker_route route, char *query,
               http_param *out, int max);
/* Percent-decodes s in place ('+' is a space when `plus`); false on a bad
 * escape or an encoded NUL. */
bool http_decode(char *s, bool plus);
/* true when the request carries the admin bearer token; else replies 401. */
bool http_authorized(bworker *w, struct evhttp_request *req, broker_route route);

/* ---- routes.c and admin.c (worker threads): one callback per route ---- */
typedef struct route_ctx {
    broker_route route;
    char *query;      /* the raw query string (mutable), "" when none */
    const char *arg;  /* the path's variable segment, percent-decoded, or NULL */
} route_ctx;

typedef void (*route_fn)(bworker *w, struct evhttp_request *req, route_ctx *c);

void route_task_servers(bworker *w, struct evhttp_request *req, route_ctx *c);
void route_heartbeat(bworker *w, struct evhttp_request *req, route_ctx *c);
void route_registration(bworker *w, struct evhttp_request *req, route_ctx *c);
void route_explain(bworker *w, struct evhttp_request *req, route_ctx *c);
void route_healthz(bworker *w, struct evhttp_request *req, route_ctx *c);
void route_metrics(bworker *w, struct evhttp_request *req, route_ctx *c);
/* Replies to a heartbeat or registration once the writer has its verdict
 * (worker thread). */
void route_write_done(bworker *w, wrec *r);
/* admin.c: these hand the request to the control thread as a job */
void route_policy_upload(bworker *w, struct evhttp_request *req, route_ctx *c);
void route_policy_list(bworker *w, struct evhttp_request *req, route_ctx *c);
void route_policy_activate(bworker *w, struct evhttp_request *req, route_ctx *c);
void route_policy_rollback(bworker *w, struct evhttp_request *req, route_ctx *c);
void route_report(bworker *w, struct evhttp_request *req, route_ctx *c);
void route_inventory(bworker *w, struct evhttp_request *req, route_ctx *c);
void route_servers_pending(bworker *w, struct evhttp_request *req, route_ctx *c);
void route_server_approve(bworker *w, struct evhttp_request *req, route_ctx *c);
void route_server_reject(bworker *w, struct evhttp_request *req, route_ctx *c);

/* Replies 400 when the request has any query parameter (routes that take none). */
bool http_no_params(bworker *w, struct evhttp_request *req, route_ctx *c);

/* ---- edge.c (worker threads; setup on the control thread) ---- */
/* Refusals the edge counts, for /metrics. */
enum { EDGE_FRAMING, EDGE_DEADLINE, EDGE_PER_ADDRESS };
/* The prefix of the stand-in requests, the peer table and the TLS context
 * (control thread, before the workers start); broker free undoes it. */
int edge_init(tsl_broker *b);
void edge_free(tsl_broker *b);
/* Hooks a worker's evhttp: bufferevents with the edge in front, accept
 * pausing when descriptors run out, the sweep timer. */
int edge_worker_setup(bworker *w);
void edge_worker_free(bworker *w);
/* Called first on each worker's thread. */
void edge_worker_enter(bworker *w);
/* When `req` is a stand-in for a request the edge refused, replies its
 * JSON error and returns true. */
bool edge_stand_in(bworker *w, struct evhttp_request *req);
/* Learns when req's connection closes (its place per address is freed
 * at once); cheap, called for every request. */
void edge_track(bworker *w, struct evhttp_request *req);
/* Refuses plain HTTP on a listening address beyond loopback unless TLS
 * or behind_tls_proxy. */
struct sockaddr;
int edge_check_plain(const tsl_broker *b, const struct sockaddr *sa);

/* ---- metrics.c ---- */
int metrics_render(tsl_broker *b, tsl_buf *out);
void metrics_observe_latency(worker_metrics *m, uint64_t ns);

/* ---- log.c ---- */
void broker_log(const tsl_broker *b, tsl_log_level level, const char *fmt, ...) TSL_PRINTF(3, 4);
/* Appends a JSON-safe-ish rendering for log fields: NULL as "-". */
const char *log_str(const char *s);
bool broker_log_enabled(const tsl_broker *b, tsl_log_level level);
/* Writes a prepared line (no newline) through the configured sink. */
void broker_log_line(const tsl_broker *b, tsl_log_level level, const char *line);
/* A per-request line (info) from worker w: batched on stderr, see log.c. */
void broker_log_request(bworker *w, const char *line);
/* The batch's life: sized and its flush timer armed at setup; enter and
 * leave bracket the worker thread's loop (leave writes what is left). */
int broker_log_worker_setup(bworker *w);
void broker_log_worker_enter(bworker *w);
void broker_log_worker_leave(bworker *w);
void broker_log_worker_free(bworker *w);

/* ---- token.c ---- */
/* Loads (or creates, 0600) the admin token and the Task Servers' token. */
int token_load_or_create(tsl_broker *b);
bool token_matches(const tsl_broker *b, const char *given);
/* Constant-time comparison of a token with what a request gave (NULL: none). */
bool token_equal(const char *want, const char *given);
/* The token of an "Authorization: Bearer TOKEN" header, or NULL. */
const char *token_bearer(struct evhttp_request *req);

/* ---- ratelimit.c: token buckets by key, shared by the workers ---- */
typedef struct ratelimit ratelimit;
/* rate per second, burst the bucket's size; rate <= 0: never limits. */
int ratelimit_new(ratelimit **out, double rate, int burst);
void ratelimit_free(ratelimit *rl);
/* true when `key` may have one more now (monotonic ns); else false and
 * *retry_s the whole seconds until it may. */
bool ratelimit_take(ratelimit *rl, const char *key, uint64_t now_ns, int *retry_s);

/* ---- bpolicy.c (control thread) ---- */
int bpolicy_start(tsl_broker *b);   /* --policy stored and active, then the rollout */
int bpolicy_sighup(tsl_broker *b);  /* the same again, then the inventory */
void bpolicy_job(tsl_broker *b, job *j);
/* Compares the store's rollout (state and shadow) with the one in force
 * and adopts it when `tsl policy activate|rollback|shadow` changed it. */
void bpolicy_poll(tsl_broker *b);
/* Adds what shadow mode observed to the store (writer's flush). */
void bpolicy_shadow_flush(tsl_broker *b);
/* POST /v1/policy: hands the job to the checker thread (policy code never
 * runs on the control thread); true when it did (the reply comes later). */
bool bpolicy_defer(tsl_broker *b, job *j);
/* Stopping: cancels the check in progress and the queued ones (their
 * replies say so). */
void bpolicy_stop(tsl_broker *b);
/* Joins the checker thread and drops the jobs it still holds. */
void bpolicy_free(tsl_broker *b);

/* ---- admin.c (control thread) ---- */
void admin_report_job(tsl_broker *b, job *j);
void admin_inventory_job(tsl_broker *b, job *j);
void admin_servers_job(tsl_broker *b, job *j);
/* Sets j->status and a {"error": ...} body. */
void job_error(job *j, int status, const char *fmt, ...) TSL_PRINTF(3, 4);
/* Maps an engine error code to an HTTP status. */
int status_for_error(int rc);

#endif
