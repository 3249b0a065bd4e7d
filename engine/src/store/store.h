/*
 * store.h - the engine's internal view of the SQLite store: the statement
 * cache, transactions and error conversion that every file touching the
 * database uses, plus the synthetic estate generator.
 *
 * Used by: store.c, import_json.c, import_csv.c, snapshot_load.c,
 * estate_gen.c, and later the policy-version, decision-log and heartbeat
 * code.  Needs: common.h and sqlite3.
 *
 * Adding a statement: add one X(...) line to TSL_STORE_STATEMENTS below.
 * The cache prepares it on first use (SQLITE_PREPARE_PERSISTENT) and
 * finalizes it when the store is freed.  Always bind values; never build
 * SQL text from them.
 */
#ifndef TSL_STORE_H
#define TSL_STORE_H

#include "common.h"

#include <sqlite3.h>

#include "rollout_sql.h"

/* X(name, sql): every statement the engine runs more than once. */
#define TSL_STORE_STATEMENTS(X)                                                \
    /* ---- sites ---- */                                                      \
    /* ?5 is a bit mask of the fields the document gave (1 country, 2 lat,    \
     * 4 lon): an upsert only overwrites what the document says. */           \
    X(TSL_STMT_SITE_UPSERT,                                                    \
      "INSERT INTO sites(name, country, latitude, longitude)"                  \
      " VALUES (?1, ?2, ?3, ?4)"                                               \
      " ON CONFLICT(name) DO UPDATE SET"                                       \
      "  country = CASE WHEN ?5 & 1 THEN excluded.country ELSE country END,"   \
      "  latitude = CASE WHEN ?5 & 2 THEN excluded.latitude ELSE latitude END,"\
      "  longitude = CASE WHEN ?5 & 4 THEN excluded.longitude ELSE longitude END"\
      " RETURNING id")                                                         \
    X(TSL_STMT_SITE_ID, "SELECT id FROM sites WHERE name = ?1")                \
    X(TSL_STMT_INVENTORY_COUNT,                                                \
      "SELECT (SELECT count(*) FROM sites) + (SELECT count(*) FROM task_servers)"\
      " + (SELECT count(*) FROM clients)")                                     \
    X(TSL_STMT_SUBNETS_CLEAR, "DELETE FROM site_subnets WHERE site_id = ?1")   \
    /* a subnet a site already holds is kept once (changes() tells) */         \
    X(TSL_STMT_SUBNET_INSERT,                                                  \
      "INSERT INTO site_subnets(site_id, cidr) VALUES (?1, ?2)"               \
      " ON CONFLICT DO NOTHING")                                               \
    /* ---- task servers ---- */                                              \
    /* ?10 mask: 1 host, 2 ip, 4 registered, 8 service, 16 capacity,          \
     * 32 connections, 64 response_ms, 128 last_heartbeat. */                 \
    X(TSL_STMT_SERVER_UPSERT,                                                  \
      "INSERT INTO task_servers(name, host, ip, registered, service, capacity,"\
      " connections, response_ms, last_heartbeat)"                             \
      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"                           \
      " ON CONFLICT(name) DO UPDATE SET"                                       \
      "  host = CASE WHEN ?10 & 1 THEN excluded.host ELSE host END,"           \
      "  ip = CASE WHEN ?10 & 2 THEN excluded.ip ELSE ip END,"                 \
      "  registered = CASE WHEN ?10 & 4 THEN excluded.registered"              \
      "   ELSE registered END,"                                                \
      "  service = CASE WHEN ?10 & 8 THEN excluded.service ELSE service END,"  \
      "  capacity = CASE WHEN ?10 & 16 THEN excluded.capacity ELSE capacity END,"\
      "  connections = CASE WHEN ?10 & 32 THEN excluded.connections"           \
      "   ELSE connections END,"                                               \
      "  response_ms = CASE WHEN ?10 & 64 THEN excluded.response_ms"           \
      "   ELSE response_ms END,"                                               \
      "  last_heartbeat = CASE WHEN ?10 & 128 THEN excluded.last_heartbeat"    \
      "   ELSE last_heartbeat END,"                                            \
      "  approved = 1" /* an import names it: the admin's own inventory */    \
      " RETURNING id")                                                         \
    X(TSL_STMT_SERVER_ID, "SELECT id FROM task_servers WHERE name = ?1")       \
    X(TSL_STMT_SERVER_SITES_CLEAR, "DELETE FROM server_sites WHERE server_id = ?1")\
    X(TSL_STMT_SERVER_SITE_INSERT,                                             \
      "INSERT INTO server_sites(server_id, site_id, position) VALUES (?1, ?2, ?3)")\
    /* ---- pending task servers (server_approval.c, schema 006) ---- */     \
    X(TSL_STMT_PENDING_LIST,                                                   \
      "SELECT t.name, t.host, t.ip, t.requested_at, t.requested_by,"           \
      " t.last_heartbeat, (SELECT group_concat(s.name, ',') FROM"              \
      " (SELECT s.name FROM server_sites ss JOIN sites s ON s.id = ss.site_id" \
      "  WHERE ss.server_id = t.id ORDER BY ss.position) s)"                   \
      " FROM task_servers t WHERE t.approved = 0 ORDER BY t.requested_at, t.id")\
    X(TSL_STMT_PENDING_APPROVE,                                                \
      "UPDATE task_servers SET approved = 1 WHERE name = ?1 AND approved = 0") \
    X(TSL_STMT_PENDING_REJECT,                                                 \
      "DELETE FROM task_servers WHERE name = ?1 AND approved = 0")             \
    X(TSL_STMT_APPROVAL_INSERT,                                                \
      "INSERT INTO server_approvals(server, at, author, action)"               \
      " VALUES (?1, ?2, ?3, ?4)")                                              \
    /* ---- clients ---- */                                                   \
    /* ?6 mask: 1 name, 2 ip, 4 department, 8 site. */                        \
    X(TSL_STMT_CLIENT_UPSERT,                                                  \
      "INSERT INTO clients(guid, name, ip, department, site_id)"               \
      " VALUES (?1, ?2, ?3, ?4, ?5)"                                           \
      " ON CONFLICT(guid) DO UPDATE SET"                                       \
      "  name = CASE WHEN ?6 & 1 THEN excluded.name ELSE name END,"            \
      "  ip = CASE WHEN ?6 & 2 THEN excluded.ip ELSE ip END,"                  \
      "  department = CASE WHEN ?6 & 4 THEN excluded.department"               \
      "   ELSE department END,"                                                \
      "  site_id = CASE WHEN ?6 & 8 THEN excluded.site_id ELSE site_id END"    \
      " RETURNING id")                                                         \
    X(TSL_STMT_CLIENT_INSERT,                                                  \
      "INSERT INTO clients(guid, name, ip, department, site_id)"               \
      " VALUES (?1, ?2, ?3, ?4, ?5)")                                          \
    X(TSL_STMT_CLIENT_ID, "SELECT id FROM clients WHERE guid = ?1")            \
    /* clients the default logic would offer every server (import notes) */  \
    X(TSL_STMT_CLIENTS_UNPLACED,                                               \
      "SELECT guid, name FROM clients WHERE (ip IS NULL OR ip = '')"          \
      " AND site_id IS NULL ORDER BY id")                                      \
    /* ---- connection errors (identical client, server, at: kept once) ---- */\
    X(TSL_STMT_ERROR_INSERT,                                                   \
      "INSERT INTO connection_errors(client_id, server_id, at, error)"         \
      " VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING")                       \
    /* ---- doctor (doctor.c): a client's last connection error ---- */      \
    X(TSL_STMT_DOCTOR_LAST_ERROR,                                              \
      "SELECT e.at, t.name, e.error FROM connection_errors e"                  \
      " JOIN clients c ON c.id = e.client_id"                                  \
      " JOIN task_servers t ON t.id = e.server_id"                             \
      " WHERE c.guid = ?1 ORDER BY e.at DESC, e.id DESC LIMIT 1")              \
    /* ---- snapshot loading (snapshot_load.c) ---- */                        \
    X(TSL_STMT_LOAD_SITES,                                                     \
      "SELECT name, country, latitude, longitude FROM sites ORDER BY id")      \
    X(TSL_STMT_LOAD_SUBNETS,                                                   \
      "SELECT s.name, n.cidr FROM site_subnets n JOIN sites s ON s.id = n.site_id"\
      " ORDER BY n.site_id, n.rowid")                                          \
    X(TSL_STMT_LOAD_SERVERS,                                                   \
      "SELECT id, name, host, ip, registered, service, capacity, connections,"\
      " response_ms, last_heartbeat FROM task_servers WHERE approved = 1"     \
      " ORDER BY id") /* pending servers (schema 006) enter no snapshot */     \
    X(TSL_STMT_LOAD_SERVER_SITES,                                              \
      "SELECT ss.server_id, s.name FROM server_sites ss"                       \
      " JOIN sites s ON s.id = ss.site_id ORDER BY ss.server_id, ss.position") \
    X(TSL_STMT_LOAD_CLIENTS,                                                   \
      "SELECT c.guid, c.name, c.ip, c.department, s.name, c.assigned_server"   \
      " FROM clients c LEFT JOIN sites s ON s.id = c.site_id ORDER BY c.id")   \
    X(TSL_STMT_LOAD_ERRORS,                                                    \
      "SELECT c.guid, t.name, e.at FROM connection_errors e"                   \
      " JOIN clients c ON c.id = e.client_id"                                  \
      " JOIN task_servers t ON t.id = e.server_id AND t.approved = 1"          \
      " ORDER BY e.client_id, e.at, e.id")                                  \
    /* ---- policy versions (policy_store.c) ---- */                         \
    X(TSL_STMT_POLICY_INSERT,                                                  \
      "INSERT INTO policies(version, sha256, name, content, author, comment,"  \
      " created_at, sites, groups, rules)"                                     \
      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)")                     \
    X(TSL_STMT_POLICY_ID, "SELECT id FROM policies WHERE sha256 = ?1")         \
    X(TSL_STMT_POLICY_ACTIVATE,                                                \
      "INSERT INTO policy_active(id, policy_id, activated_at, activated_by)"   \
      " VALUES (1, ?1, ?2, ?3) ON CONFLICT(id) DO UPDATE SET"                  \
      "  policy_id = excluded.policy_id, activated_at = excluded.activated_at,"\
      "  activated_by = excluded.activated_by")                                \
    X(TSL_STMT_POLICY_ACTIVE,                                                  \
      "SELECT policy_id FROM policy_active WHERE id = 1 AND policy_id IS NOT NULL")\
    /* one listing of the versions: the base (policy_active), the sites a    \
     * version is staged for, its newest dry-run verdict, shadow or not */   \
    X(TSL_STMT_POLICY_LIST,                                                    \
      "SELECT p.id, p.version, p.name, p.author, p.comment, p.created_at,"     \
      " p.sites, p.groups, p.rules, a.policy_id IS NOT NULL,"                  \
      " (SELECT group_concat(s.site, ',') FROM rollout_sites s"               \
      "   WHERE s.version_id = p.id),"                                         \
      " (SELECT d.conditions FROM rollout_dryruns d WHERE d.version_id = p.id" \
      "   ORDER BY d.id DESC LIMIT 1),"                                        \
      " EXISTS (SELECT 1 FROM rollout_shadow w WHERE w.version_id = p.id)"     \
      " FROM policies p LEFT JOIN policy_active a ON a.policy_id = p.id"       \
      " ORDER BY p.id")                                                        \
    /* ---- the fallback report (report_fallback.c): registrations the      \
     * broker recorded, by site and day ---- */                               \
    X(TSL_STMT_FALLBACK_REPORT,                                                \
      "SELECT site, date(at, 'unixepoch'), count(*),"                          \
      " sum(outside_approved), sum(coalesce(tier, 0) > 0), sum(tier IS NULL)"  \
      " FROM registrations WHERE ok = 1 AND at >= ?1"                          \
      " GROUP BY site, date(at, 'unixepoch')"                                  \
      " ORDER BY date(at, 'unixepoch'), site")                                 \
    /* ---- policy lifecycle (rollout_sql.h) ---- */                          \
    TSL_ROLLOUT_STATEMENTS(X)

typedef enum tsl_stmt_id {
#define TSL_STMT_ENUM_(name, sql) name,
    TSL_STORE_STATEMENTS(TSL_STMT_ENUM_)
#undef TSL_STMT_ENUM_
    TSL_STMT__COUNT
} tsl_stmt_id;

/* The connection, borrowed from the store. */
TSL_INTERNAL sqlite3 *tsl_store_db(tsl_store *st);

/* A cached statement, prepared on first use and borrowed from the store.
 * It comes back reset with no bindings; call sqlite3_reset() when done with
 * it so it does not hold a read transaction open.  NULL with the error set
 * if it cannot be prepared. */
TSL_INTERNAL sqlite3_stmt *tsl_store_stmt(tsl_store *st, tsl_stmt_id id);

/* true when the store was opened with TSL_STORE_READONLY. */
TSL_INTERNAL bool tsl_store_readonly(const tsl_store *st);

/* Transactions (not nestable: begin refuses when one is already open, so
 * a caller's transaction is never swallowed).  begin takes the write lock
 * up front (BEGIN IMMEDIATE), so a writer never fails half way on a lock
 * upgrade; it refuses a read-only store with a message.  begin_read starts
 * a read transaction for a consistent view across several SELECTs.
 * commit rolls back when it fails.  rollback does nothing when no
 * transaction is open and keeps the error message already set; roll back
 * only a transaction you began. */
TSL_INTERNAL int tsl_store_begin(tsl_store *st);
TSL_INTERNAL int tsl_store_begin_read(tsl_store *st);
TSL_INTERNAL int tsl_store_commit(tsl_store *st);
TSL_INTERNAL void tsl_store_rollback(tsl_store *st);

/* Sets the error for a failed sqlite call: "<what>: <sqlite message>".
 * Returns TSL_ENOMEM when SQLite ran out of memory, else TSL_ESTORE. */
TSL_INTERNAL int tsl_store_err(tsl_store *st, const char *what);

/* Binds text or NULL (SQLITE_TRANSIENT: the caller's buffer may go away). */
TSL_INTERNAL int tsl_store_bind_text(sqlite3_stmt *stmt, int idx, const char *s);

/* The highest schema version this binary knows (its last migration). */
TSL_INTERNAL int tsl_store_schema_latest(void);

/* ------------------------------------------------------------------------
 * Imports (import_json.c), shared with import_csv.c so CSV rows go through
 * the same validation as JSON documents.
 * ---------------------------------------------------------------------- */

typedef struct json_t json_t;

/* Validates and upserts an inventory document inside the caller's write
 * transaction (the caller rolls back on failure).  `origin` names the
 * document in messages.  `where`, when not NULL, has the document's shape
 * with a string per record ("clients.csv line 7") used instead of
 * "origin: clients[6]" to name records. */
TSL_INTERNAL int tsl_import_apply(tsl_store *st, json_t *doc, const char *origin,
                                  json_t *where);
/* The same with options (NULL: the defaults); the notes of a successful
 * apply are appended to opt->notes. */
TSL_INTERNAL int tsl_import_apply_opt(tsl_store *st, json_t *doc, const char *origin,
                                      json_t *where, const tsl_import_options *opt);

/* Parses an ISO-8601 UTC time ("2026-11-25T09:58:00Z", fractions and
 * +hh:mm offsets allowed) into Unix seconds. */
TSL_INTERNAL bool tsl_parse_time(const char *text, int64_t *out);
/* The same, and a time without a zone ("2026-12-01 10:00:00[.fff]", SQL
 * Server's default output) is read in `tz` (NULL: UTC). */
struct tsl_tz;
TSL_INTERNAL bool tsl_parse_time_in(const char *text, const struct tsl_tz *tz, int64_t *out);
/* A count as exports write it: "5000" or "5,000" (thousands separated by
 * commas).  false for anything else. */
TSL_INTERNAL bool tsl_parse_count(const char *text, int64_t *out);

/* ------------------------------------------------------------------------
 * Synthetic estates (estate_gen.c), for `tsl gen-estate` and benchmarks.
 * ---------------------------------------------------------------------- */

/* Time stamps the generator writes (connection errors, stale heartbeats)
 * are relative to this instant, 2026-01-01T00:00:00Z, so an estate is the
 * same for a seed whenever it is generated.  Decide with now set to it to
 * see the errors as recent. */
#define TSL_ESTATE_EPOCH INT64_C(1767225600)

#define TSL_ESTATE_MAX_SITES 10000u
#define TSL_ESTATE_MAX_SERVERS 100000u
#define TSL_ESTATE_MAX_CLIENTS 10000000u

/* Writes a synthetic estate into an empty store in one transaction.
 * TSL_EEXISTS when the store already holds an inventory; TSL_ELIMIT past the
 * maxima above; sites must be at least 1. */
TSL_INTERNAL int tsl_estate_generate(tsl_store *st, unsigned sites, unsigned servers,
                                     unsigned clients, uint64_t seed);

#endif
