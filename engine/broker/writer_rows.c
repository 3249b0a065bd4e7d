/*
 * writer_rows.c - the writer's SQL: the broker's statement cache (prepared
 * once, SQLITE_PREPARE_PERSISTENT, reset after each use), opening and
 * closing it, and writing one record (a heartbeat through the store's
 * task-server upsert so it writes exactly what an import would, a pending
 * server, a registration, a decision-log row) inside the caller's
 * transaction.
 *
 * Used by: writer.c (flushes, approvals), control_internal.h's callers
 * (broker_stmt).  Needs: control_internal.h, store.h.
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
    int64_t pending = writer_query_int(b, W_PENDING_COUNT, NULL, -1);
    int64_t approvals = writer_query_int(b, W_APPROVALS_LAST, NULL, -1);
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
 * Writing one record
 * ---------------------------------------------------------------------- */

static int bind_opt_int(sqlite3_stmt *st, int idx, bool has, int64_t v)
{
    return has ? sqlite3_bind_int64(st, idx, v) : sqlite3_bind_null(st, idx);
}

/* One integer from a cached statement with `name` bound to ?1 and `n` to
 * ?2 (when n >= 0); -1 with the error set on failure. */
int64_t writer_query_int(tsl_broker *b, broker_stmt_id id, const char *name, int64_t n)
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
    int64_t full = writer_query_int(b, W_SERVERS_FULL, u->name, b->cfg.max_servers);
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

int writer_write_one(tsl_broker *b, wrec *r)
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
