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
 * Statements: the broker's own, in a cache indexed by an enum (prepared
 * once, SQLITE_PREPARE_PERSISTENT, reset after each use), plus the store's
 * task-server upsert so a heartbeat writes exactly what an import would.
 *
 * Used by: broker.c (timer, stop, reload), admin.c (fallback report).
 * Needs: control_internal.h, store.h.  The handler a committed record goes
 * back to is its own callback (wrec.done): the writer knows no route.
 */
#include "control_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------
 * The statement cache (the broker's statements: broker_internal.h)
 * ---------------------------------------------------------------------- */

static const char *const broker_sql[B_STMT__COUNT] = {
#define BROKER_SQL_(id, sql) [id] = sql,
    BROKER_STATEMENTS(BROKER_SQL_)
#undef BROKER_SQL_
};

_Static_assert(B_STMT__COUNT <= sizeof ((tsl_broker *)0)->stmts / sizeof(sqlite3_stmt *),
               "tsl_broker.stmts is too small for the broker's statements");

sqlite3_stmt *broker_stmt(tsl_broker *b, broker_stmt_id id)
{
    if (!b->stmts[id]) {
        if (sqlite3_prepare_v3(tsl_store_db(b->store), broker_sql[id], -1,
                               SQLITE_PREPARE_PERSISTENT, &b->stmts[id], NULL) != SQLITE_OK) {
            tsl_store_err(b->store, "preparing a broker statement");
            b->stmts[id] = NULL;
            return NULL;
        }
    }
    return b->stmts[id];
}

int broker_stmt_run(tsl_broker *b, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    int err = 0;
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        err = tsl_store_err(b->store, what);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return err;
}

static int64_t query_int(tsl_broker *b, broker_stmt_id id, const char *name, int64_t n);

int writer_open(tsl_broker *b)
{
    sqlite3_stmt *st;
    int err = 0;

    if (!(st = broker_stmt(b, W_DLOG_NEXT)))
        return TSL_ESTORE;
    if (sqlite3_step(st) == SQLITE_ROW)
        b->dlog_seq = sqlite3_column_int64(st, 0);
    else
        err = tsl_store_err(b->store, "reading the decision log");
    sqlite3_reset(st);
    if (err < 0)
        return err;
    /* an acknowledged write survives a crash of the machine, not only of
     * the broker: every commit syncs the WAL (one sync per batch) */
    if (sqlite3_exec(tsl_store_db(b->store), "PRAGMA synchronous = FULL", NULL, NULL, NULL) !=
        SQLITE_OK)
        return tsl_store_err(b->store, "setting synchronous = FULL");
    /* pending servers (the cap counts them) and approvals already made */
    int64_t pending = query_int(b, W_PENDING_COUNT, NULL, -1);
    int64_t approvals = query_int(b, W_APPROVALS_LAST, NULL, -1);
    if (pending < 0 || approvals < 0)
        return TSL_ESTORE;
    atomic_store(&b->pending_servers, (size_t)pending);
    b->approvals_seen = approvals;
    /* a smaller ring than last time: drop the slots past its end */
    if (b->cfg.decision_log_max > 0) {
        if (!(st = broker_stmt(b, W_DLOG_TRIM)))
            return TSL_ESTORE;
        sqlite3_bind_int64(st, 1, b->cfg.decision_log_max);
        err = broker_stmt_run(b, st, "trimming the decision log");
    }
    return err;
}

void writer_close(tsl_broker *b)
{
    for (size_t i = 0; i < sizeof b->stmts / sizeof b->stmts[0]; i++) {
        sqlite3_finalize(b->stmts[i]);
        b->stmts[i] = NULL;
    }
}

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
 * Writing one record
 * ---------------------------------------------------------------------- */

static int bind_opt_int(sqlite3_stmt *st, int idx, bool has, int64_t v)
{
    return has ? sqlite3_bind_int64(st, idx, v) : sqlite3_bind_null(st, idx);
}

/* One integer from a cached statement with `name` bound to ?1 and `n` to
 * ?2 (when n >= 0); -1 with the error set on failure. */
static int64_t query_int(tsl_broker *b, broker_stmt_id id, const char *name, int64_t n)
{
    sqlite3_stmt *st = broker_stmt(b, id);
    int64_t v = -1;
    if (!st)
        return -1;
    if (name)
        tsl_store_bind_text(st, 1, name);
    if (n >= 0)
        sqlite3_bind_int64(st, 2, n);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    else
        tsl_store_err(b->store, "counting task servers");
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return v;
}

/* The fields a heartbeat gave, as TSL_STMT_SERVER_UPSERT's ?10 mask. */
static int heartbeat_mask(const snap_server_update *u)
{
    return 128 | (u->set & SNAP_UP_HOST ? 1 : 0) | (u->set & SNAP_UP_IP ? 2 : 0) |
           (u->set & SNAP_UP_REGISTERED ? 4 : 0) | (u->set & SNAP_UP_RUNNING ? 8 : 0) |
           (u->set & SNAP_UP_CAPACITY ? 16 : 0) | (u->set & SNAP_UP_CONNECTIONS ? 32 : 0) |
           (u->set & SNAP_UP_RESPONSE ? 64 : 0);
}

/* A heartbeat from a name the inventory lacks (--heartbeat-registration):
 * stored as pending with what it claims, within --max-servers.  *id 0 when
 * the name was approved meanwhile (the caller writes a plain heartbeat). */
static int write_pending(tsl_broker *b, wrec *r, int64_t *id)
{
    const snap_server_update *u = &r->u.hb.up;
    sqlite3_stmt *st;
    int err = 0;

    *id = 0;
    int64_t full = query_int(b, W_SERVERS_FULL, u->name, b->cfg.max_servers);
    if (full < 0)
        return TSL_ESTORE;
    if (full) {
        r->verdict = 429;
        snprintf(r->why, sizeof r->why,
                 "the broker has as many task servers as it takes (--max-servers %d, known "
                 "and pending)", b->cfg.max_servers);
        return 0;
    }
    if (!(st = broker_stmt(b, W_PENDING_UPSERT)))
        return TSL_ESTORE;
    tsl_store_bind_text(st, 1, u->name);
    tsl_store_bind_text(st, 2, u->set & SNAP_UP_HOST ? u->host : NULL);
    tsl_store_bind_text(st, 3, u->set & SNAP_UP_IP ? u->ip : NULL);
    sqlite3_bind_int(st, 4, u->set & SNAP_UP_REGISTERED ? u->registered : 1);
    tsl_store_bind_text(st, 5, u->set & SNAP_UP_RUNNING && !u->running ? "stopped" : "running");
    sqlite3_bind_int64(st, 6, u->set & SNAP_UP_CAPACITY ? u->capacity : 5000);
    sqlite3_bind_int64(st, 7, u->set & SNAP_UP_CONNECTIONS ? u->connections : 0);
    sqlite3_bind_int64(st, 8, u->set & SNAP_UP_RESPONSE ? u->response_ms : 0);
    sqlite3_bind_int64(st, 9, u->heartbeat);
    tsl_store_bind_text(st, 10, r->u.hb.peer);
    sqlite3_bind_int(st, 11, heartbeat_mask(u));
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *id = sqlite3_column_int64(st, 0);
    else if (rc != SQLITE_DONE)
        err = tsl_store_err(b->store, "saving a pending task server");
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return err;
}

static int write_server_sites(tsl_broker *b, int64_t id, const snap_server_update *u);

static int write_heartbeat(tsl_broker *b, wrec *r)
{
    snap_server_update *u = &r->u.hb.up;
    sqlite3_stmt *st;
    int64_t id = 0;
    int err = 0;

    if (r->is_new) {
        if ((err = write_pending(b, r, &id)) < 0 || r->verdict)
            return err;
        if (id)
            return u->set & SNAP_UP_SITES ? write_server_sites(b, id, u) : 0;
        /* approved since the worker looked: its identity is the inventory's */
        r->is_new = false;
        u->set &= ~(unsigned)(SNAP_UP_HOST | SNAP_UP_IP | SNAP_UP_SITES);
    }
    if (!(st = tsl_store_stmt(b->store, TSL_STMT_SERVER_UPSERT)))
        return TSL_ESTORE;
    /* a new server: defaults where the heartbeat says nothing (as the schema) */
    tsl_store_bind_text(st, 1, u->name);
    tsl_store_bind_text(st, 2, u->set & SNAP_UP_HOST && u->host && *u->host ? u->host : NULL);
    tsl_store_bind_text(st, 3, u->set & SNAP_UP_IP && u->ip && *u->ip ? u->ip : NULL);
    sqlite3_bind_int(st, 4, u->set & SNAP_UP_REGISTERED ? u->registered : 1);
    tsl_store_bind_text(st, 5, u->set & SNAP_UP_RUNNING && !u->running ? "stopped" : "running");
    sqlite3_bind_int64(st, 6, u->set & SNAP_UP_CAPACITY ? u->capacity : 5000);
    sqlite3_bind_int64(st, 7, u->set & SNAP_UP_CONNECTIONS ? u->connections : 0);
    sqlite3_bind_int64(st, 8, u->set & SNAP_UP_RESPONSE ? u->response_ms : 0);
    sqlite3_bind_int64(st, 9, u->heartbeat);
    sqlite3_bind_int(st, 10, heartbeat_mask(u));
    if (sqlite3_step(st) == SQLITE_ROW)
        id = sqlite3_column_int64(st, 0);
    else
        err = tsl_store_err(b->store, "saving a heartbeat");
    sqlite3_reset(st);
    if (err < 0 || !(u->set & SNAP_UP_SITES))
        return err;
    return write_server_sites(b, id, u);
}

/* Manual site assignments, in the order given (a pending server's claim). */
static int write_server_sites(tsl_broker *b, int64_t id, const snap_server_update *u)
{
    sqlite3_stmt *st;
    int err;

    if (!(st = tsl_store_stmt(b->store, TSL_STMT_SERVER_SITES_CLEAR)))
        return TSL_ESTORE;
    sqlite3_bind_int64(st, 1, id);
    if ((err = broker_stmt_run(b, st, "clearing a server's sites")) < 0)
        return err;
    for (size_t i = 0; i < u->nsites; i++) {
        int64_t site_id = -1;
        if (!(st = tsl_store_stmt(b->store, TSL_STMT_SITE_ID)))
            return TSL_ESTORE;
        tsl_store_bind_text(st, 1, u->sites[i]);
        if (sqlite3_step(st) == SQLITE_ROW)
            site_id = sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
        if (site_id < 0)
            continue; /* the site went away since the heartbeat was checked */
        if (!(st = tsl_store_stmt(b->store, TSL_STMT_SERVER_SITE_INSERT)))
            return TSL_ESTORE;
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_int64(st, 2, site_id);
        sqlite3_bind_int64(st, 3, (int64_t)i);
        if ((err = broker_stmt_run(b, st, "saving a server's sites")) < 0)
            return err;
    }
    return 0;
}

static int write_registration(tsl_broker *b, const wrec *r)
{
    sqlite3_stmt *st = broker_stmt(b, W_REG_INSERT);
    int err;

    if (!st)
        return TSL_ESTORE;
    tsl_store_bind_text(st, 1, r->u.reg.client);
    tsl_store_bind_text(st, 2, r->u.reg.server);
    sqlite3_bind_int64(st, 3, r->at);
    sqlite3_bind_int(st, 4, r->u.reg.ok);
    tsl_store_bind_text(st, 5, r->u.reg.ok ? NULL : r->u.reg.error);
    tsl_store_bind_text(st, 6, r->u.reg.site);
    bind_opt_int(st, 7, r->u.reg.listed, r->u.reg.tier);
    bind_opt_int(st, 8, r->u.reg.judged, r->u.reg.outside_approved);
    tsl_store_bind_text(st, 9, r->u.reg.policy);
    if ((err = broker_stmt_run(b, st, "saving a registration")) < 0)
        return err;

    if (r->u.reg.ok) {
        if (!(st = broker_stmt(b, W_CLIENT_ASSIGN)))
            return TSL_ESTORE;
        tsl_store_bind_text(st, 1, r->u.reg.client);
        tsl_store_bind_text(st, 2, r->u.reg.server);
        sqlite3_bind_int64(st, 3, r->at);
        return broker_stmt_run(b, st, "saving a client's assigned server");
    }
    if (!(st = broker_stmt(b, W_ERROR_INSERT)))
        return TSL_ESTORE;
    tsl_store_bind_text(st, 1, r->u.reg.client);
    tsl_store_bind_text(st, 2, r->u.reg.server);
    sqlite3_bind_int64(st, 3, r->at);
    tsl_store_bind_text(st, 4, r->u.reg.error);
    return broker_stmt_run(b, st, "saving a connection error");
}

static int write_decision(tsl_broker *b, const wrec *r)
{
    sqlite3_stmt *st;
    if (b->cfg.decision_log_max <= 0)
        return 0;
    if (!(st = broker_stmt(b, W_DLOG_PUT)))
        return TSL_ESTORE;
    int64_t seq = b->dlog_seq++;
    sqlite3_bind_int64(st, 1, seq % b->cfg.decision_log_max);
    sqlite3_bind_int64(st, 2, seq);
    sqlite3_bind_int64(st, 3, r->at);
    tsl_store_bind_text(st, 4, r->u.dec.client);
    tsl_store_bind_text(st, 5, r->u.dec.ips);
    tsl_store_bind_text(st, 6, r->u.dec.department);
    tsl_store_bind_text(st, 7, r->u.dec.task);
    tsl_store_bind_text(st, 8, r->u.dec.site);
    tsl_store_bind_text(st, 9, r->u.dec.policy);
    tsl_store_bind_text(st, 10, r->u.dec.servers);
    sqlite3_bind_int(st, 11, r->u.dec.blocked);
    return broker_stmt_run(b, st, "saving a decision-log row");
}

/* ------------------------------------------------------------------------
 * Flushing
 * ---------------------------------------------------------------------- */

static int write_one(tsl_broker *b, wrec *r)
{
    r->verdict = 0; /* a batch written again decides again */
    switch (r->kind) {
    case WREC_HEARTBEAT:
        return write_heartbeat(b, r);
    case WREC_REGISTRATION:
        return write_registration(b, r);
    case WREC_DECISION:
        return write_decision(b, r);
    }
    return TSL_ERROR;
}

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
        int64_t n = query_int(b, W_PENDING_COUNT, NULL, -1);
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
        if (err == 0 && (err = write_one(b, r)) == 0 && (err = tsl_store_commit(b->store)) == 0) {
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
        if ((err = write_one(b, r)) < 0)
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
    int64_t last = query_int(b, W_APPROVALS_LAST, NULL, -1);
    if (last < 0 || last == b->approvals_seen)
        return;
    b->approvals_seen = last;
    int64_t pending = query_int(b, W_PENDING_COUNT, NULL, -1);
    if (pending >= 0)
        atomic_store(&b->pending_servers, (size_t)pending);
    broker_log(b, TSL_LOG_INFO, "Task server approvals changed in the store: reloading");
    if (broker_reload(b) < 0)
        broker_log(b, TSL_LOG_ERROR, "Cannot reload after an approval: %s", tsl_error_last());
}
