/*
 * broker_internal.h - the broker's shared state: the worker and broker
 * structures, the route and status tables, per-worker metrics, logging,
 * tokens and rate limits.  Every broker file includes it; it includes no
 * other broker header.
 *
 * Who runs where (and which header each side offers the other):
 *   control thread  broker.c (lifecycle, plan publishing, timers, signals),
 *                   writer.c (SQLite batches, decision log, registrations),
 *                   admin_jobs.c and bpolicy.c (everything that needs the
 *                   store or walks every client).  It offers the HTTP side
 *                   the narrow interface in control.h and keeps the rest
 *                   to itself in control_internal.h;
 *   policy checker  bpolicy.c's thread for POST /v1/policy: runs the
 *                   uploaded policy's code (check, compile) on a snapshot
 *                   reference, never the store; cancelled by stopping;
 *   HTTP workers    edge.c (connections, edge.h), http.c (routing, parsing,
 *                   replies, http.h), routes.c and admin_routes.c (one
 *                   handler per route, routes.h).  Workers never touch
 *                   SQLite: they read the plan they hold a reference to,
 *                   push records onto the write queue and post admin jobs,
 *                   all through control.h.  The control thread never
 *                   includes routes.h: a committed record comes back to
 *                   the handler through the callback it set (wrec.done).
 *
 * Shared mutable state, all inside struct tsl_broker and documented there:
 * the published plan (plan_mu + plan_gen), the write queue (q_mu), the job
 * queue (job_mu) and a few atomic counters.
 *
 * Used by: engine/broker/ (every .c, through the headers above).
 * Needs: broker.h, the engine's internal headers (decide.h, store.h),
 * libevent, jansson, pthreads.
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

typedef struct bworker bworker;
typedef struct edge_conn edge_conn;
typedef struct wrec wrec; /* control.h: a record for the write queue */
typedef struct job job;   /* control.h: an admin job */

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

/* ---- config.c: the clock and the proxies, for every file ---- */
/* cfg.trusted_proxies "ADDR[/BITS],..." into b->proxies (broker.c). */
int broker_parse_proxies(tsl_broker *b, const char *list);
/* true when addr (IPv4 as ::ffff:a.b.c.d) is in cfg.trusted_proxies. */
bool broker_trusted_proxy(const tsl_broker *b, const uint8_t addr[16]);
int64_t broker_now(const tsl_broker *b);
uint64_t broker_mono_ns(void);

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


#endif
