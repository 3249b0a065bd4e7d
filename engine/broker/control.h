/*
 * control.h - what the control thread offers the HTTP workers, and nothing
 * more: submit a write and be called back once it is committed (the write
 * queue), submit an admin job and be called back with its answer, and take
 * the published plan.  The settings are b->cfg (read-only after start).
 *
 * Used by: the route handlers (routes.c, admin_routes.c), http.c (the plan
 * a request decides against), and the control thread's own files through
 * control_internal.h.  Implemented by: plan.c, jobs.c, writer.c, admin_jobs.c.
 * Needs: broker_internal.h.
 */
#ifndef TSL_BROKER_CONTROL_H
#define TSL_BROKER_CONTROL_H

#include "broker_internal.h"

/* ------------------------------------------------------------------------
 * The write queue: records the workers acknowledge and the control thread
 * writes to SQLite in one transaction per batch.  Heartbeats and failed
 * registrations also feed the next derived snapshot (the overlay).
 * ---------------------------------------------------------------------- */

typedef enum wrec_kind { WREC_HEARTBEAT, WREC_REGISTRATION, WREC_DECISION } wrec_kind;

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
    /* the handler that replies, on worker w's thread, once the writer has
     * its verdict (set with w and req) */
    void (*done)(bworker *w, struct wrec *r);
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
 * Admin jobs: a worker hands a request that needs the store (or walks
 * every client) to the control thread and replies when it comes back.
 * ---------------------------------------------------------------------- */

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

/* ---- the write queue (writer.c) ---- */
/* Enqueues a record (worker side); TSL_ELIMIT when the queue is full.
 * A record with a request (r->w, r->req) is answered by r->done on that
 * worker once its transaction has committed; the control thread is asked
 * to flush at once (group commit: whatever queued meanwhile goes in the
 * same transaction). */
int writer_enqueue(tsl_broker *b, wrec *r);
void wrec_release(wrec *r);
/* The worker side of group commit: its completion queue and event. */
int writer_worker_init(bworker *w);
/* Frees the worker's completions without replying (the worker has stopped). */
void writer_worker_free(bworker *w);

/* ---- admin jobs (jobs.c queues, admin_jobs.c answers) ---- */
/* Hands a job to the control thread (worker side). */
void broker_post_job(tsl_broker *b, job *j);
/* Sets j->status and a {"error": ...} body. */
void job_error(job *j, int status, const char *fmt, ...) TSL_PRINTF(3, 4);
/* Maps an engine error code to an HTTP status. */
int status_for_error(int rc);

/* ---- the published plan (plan.c) ---- */
/* Takes the worker's reference on the current plan if it changed. */
void worker_refresh_plan(bworker *w);

#endif
