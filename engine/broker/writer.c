/*
 * writer.c - the broker's writes, off the hot path: the queue the workers
 * push acknowledged heartbeats, registration reports and decision-log rows
 * onto, the control thread's batches into SQLite (one transaction per
 * flush), the overlay those records feed, and the new snapshots derived
 * from it without reloading the clients.
 *
 * A record's life: a worker validates a request, builds one wrec (strings
 * in the same allocation), enqueues it and pokes the control thread,
 * without replying.  The control thread moves everything queued to
 * `unwritten` and writes it in one transaction (group commit: requests
 * that arrive while a commit syncs go in the next one).  Once it has
 * committed, heartbeats and failed registrations join the overlay (every
 * refresh interval a derived snapshot and a new plan) and each record goes
 * back to its worker's completion queue, where the worker replies on its
 * own event base.  So an acknowledged write is a committed one, and what
 * lists show is what the store holds.  A transaction the store fails gets
 * its requests answered 503 (decision-log rows, which nobody waits for,
 * are retried); a record the store refuses is answered 422.  A record is
 * freed once the overlay and the reply are done with it (refs).
 *
 * The statements and the writing of one record are writer_rows.c's.
 *
 * Used by: broker.c (timer, stop), plan.c (reload), admin_jobs.c (fallback
 * report), the workers (writer_enqueue, their completion queue: control.h).
 * Needs: control_internal.h, store.h.  The handler a committed record goes
 * back to is its own callback (wrec.done): the writer knows no route.
 */
#include "control_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------
 * Records
 * ---------------------------------------------------------------------- */

void wrec_release(wrec *r)
{
    if (r && atomic_fetch_sub(&r->refs, 1) <= 1)
        free(r);
}

int writer_enqueue(tsl_broker *b, wrec *r)
{
    /* decision-log rows never count against the limit (they are dropped
     * by rate, not by backlog) */
    if (r->kind != WREC_DECISION && atomic_load(&b->q_len) >= b->cfg.max_queue)
        return tsl_seterr(TSL_ELIMIT, "the write queue is full (%zu records)", b->cfg.max_queue);
    r->next = NULL;
    atomic_store(&r->refs, 1);
    atomic_fetch_add(&b->q_len, 1);
    if (r->w)
        atomic_fetch_add(&b->acks_waiting, 1);
    pthread_mutex_lock(&b->q_mu);
    *b->q_tail = r;
    b->q_tail = &r->next;
    pthread_mutex_unlock(&b->q_mu);
    /* group commit: wake the writer unless a wake-up is already pending
     * (it clears the flag before it takes the queue) */
    if (r->w && !atomic_exchange(&b->flush_poked, true))
        event_active(b->flush_ev, EV_TIMEOUT, 1);
    return 0;
}

/* ------------------------------------------------------------------------
 * Group commit: verdicts back to the workers
 * ---------------------------------------------------------------------- */

/* Hands a record that left the unwritten list to the worker that waits
 * for it (the list's reference goes with it), or releases it. */
static void complete(tsl_broker *b, wrec *r, int status, const char *why)
{
    (void)b;
    r->next = NULL;
    if (!r->w) {
        wrec_release(r);
        return;
    }
    r->status = status;
    if (why != r->why) /* a verdict's reason is already there */
        snprintf(r->why, sizeof r->why, "%s", why ? why : "");
    bworker *w = r->w;
    pthread_mutex_lock(&w->done_mu);
    *w->done_tail = r;
    w->done_tail = &r->next;
    pthread_mutex_unlock(&w->done_mu);
    event_active(w->done_ev, EV_TIMEOUT, 1);
}

/* Worker thread: replies to every record the writer handed back. */
static void on_done(evutil_socket_t fd, short what, void *arg)
{
    bworker *w = arg;
    (void)fd;
    (void)what;
    pthread_mutex_lock(&w->done_mu);
    wrec *list = w->done_head;
    w->done_head = NULL;
    w->done_tail = &w->done_head;
    pthread_mutex_unlock(&w->done_mu);
    for (wrec *r = list, *next; r; r = next) {
        next = r->next;
        r->done(w, r);
        atomic_fetch_sub(&w->b->acks_waiting, 1);
        wrec_release(r);
    }
}

int writer_worker_init(bworker *w)
{
    if (pthread_mutex_init(&w->done_mu, NULL) != 0)
        return tsl_seterr(TSL_ERROR, "cannot create a worker's completion lock");
    w->done_mu_init = true;
    w->done_tail = &w->done_head;
    if (!(w->done_ev = event_new(w->base, -1, 0, on_done, w)))
        return tsl_seterr(TSL_ERROR, "cannot create a worker's completion event");
    return 0;
}

void writer_worker_free(bworker *w)
{
    if (w->done_ev)
        event_free(w->done_ev);
    w->done_ev = NULL;
    for (wrec *r = w->done_head, *next; r; r = next) {
        next = r->next;
        wrec_release(r); /* evhttp_free has freed its request */
    }
    w->done_head = NULL;
    if (w->done_mu_init)
        pthread_mutex_destroy(&w->done_mu);
    w->done_mu_init = false;
}

int overlay_add(tsl_broker *b, wrec *r)
{
    if (b->noverlay == b->overlay_cap) {
        size_t cap = b->overlay_cap ? b->overlay_cap * 2 : 64;
        wrec **p = realloc(b->overlay, cap * sizeof *p);
        if (!p)
            return tsl_oom();
        b->overlay = p;
        b->overlay_cap = cap;
    }
    r->refs++;
    b->overlay[b->noverlay++] = r;
    return 0;
}

/* ------------------------------------------------------------------------
 * Flushing
 * ---------------------------------------------------------------------- */

/* Errors that say the record, not the store, is wrong: retrying the batch
 * would fail the same way for ever. */
static bool record_error(tsl_broker *b)
{
    int rc = sqlite3_errcode(tsl_store_db(b->store)) & 0xff;
    return rc == SQLITE_CONSTRAINT || rc == SQLITE_MISMATCH || rc == SQLITE_RANGE ||
           rc == SQLITE_TOOBIG;
}

/* A committed record: into the overlay where it changes a decision (what
 * lists show is only ever what the store holds), then its reply. */
static void committed(tsl_broker *b, wrec *r)
{
    if (r->verdict) { /* refused, nothing of it written */
        complete(b, r, r->verdict, r->why);
        return;
    }
    if (r->kind == WREC_HEARTBEAT && r->is_new) { /* pending: in no list */
        int64_t n = writer_query_int(b, W_PENDING_COUNT, NULL, -1);
        if (n >= 0)
            atomic_store(&b->pending_servers, (size_t)n);
        complete(b, r, 200, NULL);
        return;
    }
    if ((r->kind == WREC_HEARTBEAT) || (r->kind == WREC_REGISTRATION && !r->u.reg.ok)) {
        if (overlay_add(b, r) < 0)
            broker_log(b, TSL_LOG_ERROR, "out of memory: a heartbeat or registration "
                                         "shows in lists only after the next reload");
    }
    complete(b, r, 200, NULL);
}

static const char *kind_name(const wrec *r)
{
    return r->kind == WREC_HEARTBEAT      ? "heartbeat"
           : r->kind == WREC_REGISTRATION ? "registration"
                                          : "decision-log row";
}

/* After a batch failed on a bad record: one transaction per record; the
 * records the store refuses are answered 422 (nothing was acknowledged)
 * and logged. */
static void write_one_by_one(tsl_broker *b)
{
    size_t n = 0, ok = 0;
    wrec *list = b->unwritten;
    b->unwritten = NULL;
    b->unwritten_tail = &b->unwritten;
    for (wrec *r = list, *next; r; r = next, n++) {
        next = r->next;
        int64_t seq0 = b->dlog_seq;
        int err = tsl_store_begin(b->store);
        if (err == 0 && (err = writer_write_one(b, r)) == 0 && (err = tsl_store_commit(b->store)) == 0) {
            ok++;
            committed(b, r);
            continue;
        }
        tsl_store_rollback(b->store);
        b->dlog_seq = seq0;
        atomic_fetch_add(&b->write_errors, 1);
        broker_log(b, TSL_LOG_ERROR, "Refused a %s the store does not take: %s", kind_name(r),
                   tsl_error_last());
        complete(b, r, 422, tsl_error_last());
    }
    atomic_fetch_add(&b->writes_committed, ok);
    atomic_fetch_sub(&b->q_len, n);
}

/* The store failed (not a record): the waiting requests are answered 503
 * (nothing of theirs is stored, so nothing was acknowledged) and leave
 * the list; decision-log rows stay for the next flush. */
static void answer_unsaved(tsl_broker *b, const char *why)
{
    size_t n = 0;
    wrec *list = b->unwritten;
    b->unwritten = NULL;
    b->unwritten_tail = &b->unwritten;
    for (wrec *r = list, *next; r; r = next) {
        next = r->next;
        if (r->w) {
            complete(b, r, 503, why);
            n++;
        } else {
            r->next = NULL;
            *b->unwritten_tail = r;
            b->unwritten_tail = &r->next;
        }
    }
    atomic_fetch_sub(&b->q_len, n);
}

int writer_flush(tsl_broker *b)
{
    int err = 0;
    size_t n = 0;
    int64_t seq0 = b->dlog_seq;

    atomic_store(&b->flush_poked, false); /* before taking: see writer_enqueue */
    pthread_mutex_lock(&b->q_mu);
    wrec *list = b->q_head;
    b->q_head = NULL;
    b->q_tail = &b->q_head;
    pthread_mutex_unlock(&b->q_mu);

    /* new records: to `unwritten` (the overlay takes them once committed) */
    for (wrec *r = list, *next; r; r = next) {
        next = r->next;
        r->next = NULL;
        *b->unwritten_tail = r;
        b->unwritten_tail = &r->next;
    }
    bpolicy_shadow_flush(b); /* its own transaction: shadow mode's tally */
    if (!b->unwritten)
        return 0;

    if ((err = tsl_store_begin(b->store)) < 0)
        goto done;
    for (wrec *r = b->unwritten; r; r = r->next, n++) {
        if ((err = writer_write_one(b, r)) < 0)
            goto done;
    }
    if ((err = tsl_store_commit(b->store)) < 0)
        goto done;
    atomic_fetch_add(&b->writes_committed, n);
    atomic_fetch_sub(&b->q_len, n);
    /* committed: now, and only now, the requests are answered */
    list = b->unwritten;
    b->unwritten = NULL;
    b->unwritten_tail = &b->unwritten;
    for (wrec *r = list, *next; r; r = next) {
        next = r->next;
        committed(b, r);
    }

done:
    if (err < 0) {
        bool bad_record = record_error(b);
        tsl_store_rollback(b->store);
        b->dlog_seq = seq0;
        if (bad_record) {
            write_one_by_one(b);
            return 0;
        }
        if (atomic_fetch_add(&b->write_errors, 1) % 100 == 0)
            broker_log(b, TSL_LOG_ERROR, "Cannot save %zu queued writes (answered 503; "
                                         "decision-log rows will be retried): %s",
                       atomic_load(&b->q_len), tsl_error_last());
        answer_unsaved(b, tsl_error_last());
    }
    return err;
}

void writer_retention(tsl_broker *b, int64_t now)
{
    sqlite3_stmt *st;
    if (b->cfg.registrations_keep_days <= 0 || !(st = broker_stmt(b, W_REG_RETENTION)))
        return;
    sqlite3_bind_int64(st, 1, now - (int64_t)b->cfg.registrations_keep_days * 86400);
    if (broker_stmt_run(b, st, "deleting old registrations") < 0)
        broker_log(b, TSL_LOG_WARNING, "%s", tsl_error_last());
}

/* ------------------------------------------------------------------------
 * The overlay: derived snapshots
 * ---------------------------------------------------------------------- */

int overlay_apply(tsl_broker *b, tsl_snapshot *base, tsl_snapshot **out)
{
    snap_server_update *ups = NULL;
    snap_error_update *errs = NULL;
    size_t nups = 0, nerrs = 0;
    int err = 0;

    *out = NULL;
    if (!b->noverlay) {
        *out = tsl_snapshot_ref(base);
        return 0;
    }
    if (!(ups = malloc(b->noverlay * sizeof *ups)) || !(errs = malloc(b->noverlay * sizeof *errs))) {
        err = tsl_oom();
        goto done;
    }
    for (size_t i = 0; i < b->noverlay; i++) {
        const wrec *r = b->overlay[i];
        if (r->kind == WREC_HEARTBEAT)
            ups[nups++] = r->u.hb.up;
        else
            errs[nerrs++] = (snap_error_update){r->u.reg.client, r->u.reg.server, r->at};
    }
    if ((err = tsl_snapshot_derive(out, base, ups, nups, errs, nerrs, broker_now(b))) < 0)
        goto done;
    for (size_t i = 0; i < b->noverlay; i++)
        wrec_release(b->overlay[i]);
    b->noverlay = 0;

done:
    free(ups);
    free(errs);
    return err;
}

int writer_derive(tsl_broker *b)
{
    tsl_snapshot *snap = NULL;
    tsl_plan *plan = NULL, *shadow = NULL;
    int err;
    uint64_t t0 = broker_mono_ns();
    size_t n = b->noverlay;

    if (!n)
        return 0;
    if ((err = overlay_apply(b, b->snap, &snap)) < 0 ||
        (err = broker_bind(b, snap, &plan, &shadow)) < 0) {
        broker_log(b, TSL_LOG_ERROR, "Cannot apply %zu heartbeats and reports: %s", n,
                   tsl_error_last());
        goto done;
    }
    broker_publish(b, plan, shadow);
    plan = shadow = NULL;
    atomic_fetch_add(&b->derives, 1);
    broker_log(b, TSL_LOG_DEBUG, "New plan from %zu heartbeats and reports in %.2f ms", n,
               (double)(broker_mono_ns() - t0) / 1e6);

done:
    tsl_plan_free(plan);
    tsl_plan_free(shadow);
    tsl_snapshot_free(snap);
    return err;
}

/* ------------------------------------------------------------------------
 * The fallback report
 * ---------------------------------------------------------------------- */

int writer_fallback_report(tsl_broker *b, tsl_buf *out, tsl_format fmt, int64_t since)
{
    /* the engine's, shared with `tsl report fallback` */
    return tsl_report_fallback(out, b->store, fmt, since);
}

/* ------------------------------------------------------------------------
 * Approvals made beside the broker (`tsl servers approve`)
 * ---------------------------------------------------------------------- */

void writer_poll_approvals(tsl_broker *b)
{
    int64_t last = writer_query_int(b, W_APPROVALS_LAST, NULL, -1);
    if (last < 0 || last == b->approvals_seen)
        return;
    b->approvals_seen = last;
    int64_t pending = writer_query_int(b, W_PENDING_COUNT, NULL, -1);
    if (pending >= 0)
        atomic_store(&b->pending_servers, (size_t)pending);
    broker_log(b, TSL_LOG_INFO, "Task server approvals changed in the store: reloading");
    if (broker_reload(b) < 0)
        broker_log(b, TSL_LOG_ERROR, "Cannot reload after an approval: %s", tsl_error_last());
}
