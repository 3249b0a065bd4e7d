/*
 * control_internal.h - the control thread's own interface, shared by its
 * files only: the broker's SQL and statement cache, the writer's batches
 * and overlay, plan publishing and reloads, the policy jobs and the admin
 * jobs.  No HTTP worker file includes it, and it includes no handler
 * header (routes.h): the control thread reaches a handler only through the
 * callbacks in control.h.
 *
 * Used by: broker.c, writer.c, bpolicy.c, admin_jobs.c.
 * Needs: control.h.
 */
#ifndef TSL_BROKER_CONTROL_INTERNAL_H
#define TSL_BROKER_CONTROL_INTERNAL_H

#include "control.h"

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

/* ---- plan.c ---- */
/* Publishes a new plan and the shadow plan beside it (NULL: none), taking
 * both references, and pokes the workers. */
void broker_publish(tsl_broker *b, tsl_plan *plan, tsl_plan *shadow_plan);
/* Binds b->rollout to `snap`: the plan in force (staged sites included)
 * and the shadow version's plan (*shadow NULL when none). */
int broker_bind(tsl_broker *b, tsl_snapshot *snap, tsl_plan **plan, tsl_plan **shadow);
/* Loads the whole inventory again (after flushing) and rebinds the rollout. */
int broker_reload(tsl_broker *b);

/* ---- jobs.c ---- */
/* Runs a job (control side). */
void broker_run_job(tsl_broker *b, job *j);
/* The control loop's job event: runs every job queued. */
void jobs_on_event(evutil_socket_t fd, short what, void *arg);
/* Takes the whole queue (the caller owns the list). */
job *jobs_take(tsl_broker *b);

/* ---- writer.c ---- */
/* A cached statement (borrowed; NULL with the error set); reset it after use. */
sqlite3_stmt *broker_stmt(tsl_broker *b, broker_stmt_id id);
/* Steps a write statement to its end, resets it and clears its bindings. */
int broker_stmt_run(tsl_broker *b, sqlite3_stmt *st, const char *what);
/* writer_rows.c: one integer from a cached query (?1 `name` when not
 * NULL, ?2 `n` when >= 0); -1 with the error set. */
int64_t writer_query_int(tsl_broker *b, broker_stmt_id id, const char *name, int64_t n);
/* writer_rows.c: writes one record in the open transaction (r->verdict set
 * when the store refuses it without failing the batch). */
int writer_write_one(tsl_broker *b, wrec *r);
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


/* ---- admin_jobs.c ---- */
void admin_report_job(tsl_broker *b, job *j);
void admin_inventory_job(tsl_broker *b, job *j);
void admin_servers_job(tsl_broker *b, job *j);

#endif
