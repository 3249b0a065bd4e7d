/*
 * rollout_sql.h - the statements of the policy lifecycle (rollout.c,
 * dryrun.c), as X(name, sql) lines that store.h adds to its statement
 * cache (TSL_STORE_STATEMENTS), so they are prepared once, persistent, and
 * finalized with the store.  Tables: schema/004_rollout.sql; versions and
 * the base of the rollout in the policy layer's policies and policy_active
 * (002, whose own statements are in store.h).  The replay of the broker's decision_log
 * (003) runs once per dry-run and is prepared there (dryrun.c).
 *
 * Used by: store.h only.  Needs: nothing.
 */
#ifndef TSL_ROLLOUT_SQL_H
#define TSL_ROLLOUT_SQL_H

#define TSL_ROLLOUT_STATEMENTS(X)                                              \
    /* ---- versions (the policy layer's `policies`, 002) ---- */              \
    X(TSL_STMT_RO_VERSION_BY_ID, "SELECT id, version FROM policies WHERE id = ?1") \
    X(TSL_STMT_RO_VERSION_BY_HASH,                                             \
      "SELECT id, version FROM policies"                                       \
      " WHERE substr(sha256, 1, length(?1)) = lower(?1) ORDER BY id LIMIT 2")  \
    X(TSL_STMT_RO_VERSION_META,                                                \
      "SELECT id, version, name, author, comment, created_at, content"         \
      " FROM policies WHERE id = ?1")                                          \
    /* ---- dry-run records ---- */                                            \
    X(TSL_STMT_RO_DRYRUNS_OF,                                                  \
      "SELECT against, population, fail_on, conditions, clean, summary, author, at" \
      " FROM rollout_dryruns WHERE version_id = ?1 ORDER BY id DESC LIMIT 10") \
    /* the latest dry-run of a version: against ?2, or (?2 NULL) anything */  \
    X(TSL_STMT_RO_DRYRUN_LATEST,                                               \
      "SELECT clean, conditions, summary, against, at FROM rollout_dryruns"    \
      " WHERE version_id = ?1 AND (?2 IS NULL OR against = ?2)"                \
      " ORDER BY id DESC LIMIT 1")                                             \
    X(TSL_STMT_RO_DRYRUN_INSERT,                                               \
      "INSERT INTO rollout_dryruns(version_id, against, population, fail_on,"  \
      " conditions, clean, summary, author, at)"                               \
      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)")                          \
    /* ---- the rollout state and its history ---- */                          \
    /* the base ("*", 002's policy_active) first, then the staged sites */     \
    X(TSL_STMT_RO_STATE,                                                       \
      "SELECT '*', a.policy_id, p.version, 0 FROM policy_active a"             \
      " JOIN policies p ON p.id = a.policy_id WHERE a.id = 1"                  \
      " UNION ALL SELECT s.site, s.version_id, p.version, 1"                   \
      " FROM rollout_sites s JOIN policies p ON p.id = s.version_id"           \
      " ORDER BY 4, 1 COLLATE NOCASE")                                         \
    X(TSL_STMT_RO_STATE_CLEAR, "DELETE FROM rollout_sites")                    \
    X(TSL_STMT_RO_STATE_SET,                                                   \
      "INSERT INTO rollout_sites(site, version_id) VALUES (?1, ?2)"            \
      " ON CONFLICT(site) DO UPDATE SET version_id = excluded.version_id")     \
    X(TSL_STMT_RO_HISTORY_INSERT,                                              \
      "INSERT INTO rollout_history(at, action, version_id, sites, author,"     \
      " comment, prior) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")                  \
    X(TSL_STMT_RO_HISTORY_LAST,                                                \
      "SELECT id, version_id, sites, prior FROM rollout_history"               \
      " WHERE action = 'activate' AND undone_by IS NULL ORDER BY id DESC LIMIT 1") \
    X(TSL_STMT_RO_HISTORY_UNDO,                                                \
      "UPDATE rollout_history SET undone_by = ?2 WHERE id = ?1")               \
    X(TSL_STMT_RO_HISTORY,                                                     \
      "SELECT h.id, h.at, h.action, v.id, v.version, h.sites, h.author, h.comment," \
      " h.undone_by FROM rollout_history h"                                    \
      " LEFT JOIN policies v ON v.id = h.version_id"                           \
      " ORDER BY h.id DESC LIMIT ?1")                                          \
    /* ---- shadow mode ---- */                                                \
    X(TSL_STMT_RO_SHADOW_GET,                                                  \
      "SELECT s.version_id, v.version, s.since, s.author FROM rollout_shadow s" \
      " JOIN policies v ON v.id = s.version_id")                               \
    X(TSL_STMT_RO_SHADOW_SET,                                                  \
      "INSERT INTO rollout_shadow(id, version_id, since, author)"              \
      " VALUES (1, ?1, ?2, ?3) ON CONFLICT(id) DO UPDATE SET"                  \
      " version_id = excluded.version_id, since = excluded.since,"             \
      " author = excluded.author")                                             \
    X(TSL_STMT_RO_SHADOW_CLEAR, "DELETE FROM rollout_shadow")                  \
    X(TSL_STMT_RO_SHADOW_COUNTS_RESET,                                         \
      "DELETE FROM rollout_shadow_counts WHERE hash = ?1")                     \
    X(TSL_STMT_RO_SHADOW_SAMPLES_RESET,                                        \
      "DELETE FROM rollout_shadow_samples WHERE hash = ?1")                    \
    X(TSL_STMT_RO_SHADOW_ADD,                                                  \
      "INSERT INTO rollout_shadow_counts(hash, requests, differ, first, list," \
      " blocked, unblocked, cross_site, errors, since, updated)"               \
      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)"                 \
      " ON CONFLICT(hash) DO UPDATE SET requests = requests + excluded.requests," \
      " differ = differ + excluded.differ, first = first + excluded.first,"    \
      " list = list + excluded.list, blocked = blocked + excluded.blocked,"    \
      " unblocked = unblocked + excluded.unblocked,"                           \
      " cross_site = cross_site + excluded.cross_site,"                        \
      " errors = errors + excluded.errors, updated = excluded.updated")        \
    X(TSL_STMT_RO_SHADOW_SAMPLE_INSERT,                                        \
      "INSERT INTO rollout_shadow_samples(hash, at, client, ip, site, kinds,"  \
      " active, shadow) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")              \
    X(TSL_STMT_RO_SHADOW_SAMPLE_TRIM,                                          \
      "DELETE FROM rollout_shadow_samples WHERE hash = ?1 AND id <="           \
      " (SELECT id FROM rollout_shadow_samples WHERE hash = ?1"                \
      "  ORDER BY id DESC LIMIT 1 OFFSET ?2)")                                 \
    X(TSL_STMT_RO_SHADOW_COUNTS,                                               \
      "SELECT requests, differ, first, list, blocked, unblocked, cross_site,"  \
      " errors, since, updated FROM rollout_shadow_counts WHERE hash = ?1")    \
    X(TSL_STMT_RO_SHADOW_SAMPLES,                                              \
      "SELECT at, client, ip, site, kinds, active, shadow"                     \
      " FROM rollout_shadow_samples WHERE hash = ?1 ORDER BY id DESC LIMIT ?2")

#endif
