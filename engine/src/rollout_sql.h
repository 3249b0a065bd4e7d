/*
 * rollout_sql.h - the statements of the policy lifecycle (rollout.c,
 * dryrun.c), as X(name, sql) lines that store.h adds to its statement
 * cache (TSL_STORE_STATEMENTS), so they are prepared once, persistent, and
 * finalized with the store.  Tables: schema/004_rollout.sql, versions in
 * policy_versions (002).  The replay of the broker's decision_log
 * (003) runs once per dry-run and is prepared there (dryrun.c).
 *
 * Used by: store.h only.  Needs: nothing.
 */
#ifndef TSL_ROLLOUT_SQL_H
#define TSL_ROLLOUT_SQL_H

#define TSL_ROLLOUT_STATEMENTS(X)                                              \
    /* ---- versions ---- */                                                  \
    X(TSL_STMT_RO_VERSION_BY_ID, "SELECT id, hash FROM policy_versions WHERE id = ?1")\
    X(TSL_STMT_RO_VERSION_BY_HASH,                                             \
      "SELECT id, hash FROM policy_versions"                                   \
      " WHERE substr(hash, 8, length(?1)) = ?1 COLLATE NOCASE ORDER BY id LIMIT 2")\
    X(TSL_STMT_RO_VERSION_META,                                                \
      "SELECT id, hash, name, author, comment, created_at, content"            \
      " FROM policy_versions WHERE id = ?1")                                   \
    X(TSL_STMT_RO_VERSION_INSERT,                                              \
      "INSERT INTO policy_versions(hash, name, content, author, comment, created_at)"\
      " VALUES (?1, ?2, ?3, ?4, ?5, ?6)")                                      \
    X(TSL_STMT_RO_VERSIONS,                                                    \
      "SELECT v.id, v.hash, v.name, v.author, v.comment, v.created_at,"       \
      " (SELECT group_concat(s.site, ',') FROM rollout_state s"               \
      "   WHERE s.version_id = v.id),"                                         \
      " (SELECT d.conditions FROM rollout_dryruns d WHERE d.version_id = v.id" \
      "   ORDER BY d.id DESC LIMIT 1),"                                        \
      " (SELECT count(*) FROM rollout_shadow w WHERE w.version_id = v.id)"     \
      " FROM policy_versions v ORDER BY v.id")                                 \
    /* ---- dry-run records ---- */                                           \
    X(TSL_STMT_RO_DRYRUNS_OF,                                                  \
      "SELECT against, population, fail_on, conditions, clean, summary, author, at"\
      " FROM rollout_dryruns WHERE version_id = ?1 ORDER BY id DESC LIMIT 10") \
    X(TSL_STMT_RO_DRYRUN_CLEAN,                                                \
      "SELECT 1 FROM rollout_dryruns WHERE version_id = ?1 AND against = ?2"   \
      " AND clean = 1 LIMIT 1")                                                \
    X(TSL_STMT_RO_DRYRUN_INSERT,                                               \
      "INSERT INTO rollout_dryruns(version_id, against, population, fail_on,"  \
      " conditions, clean, summary, author, at)"                               \
      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)")                          \
    /* ---- the rollout state and its history ---- */                         \
    X(TSL_STMT_RO_STATE,                                                       \
      "SELECT s.site, s.version_id, v.hash FROM rollout_state s"               \
      " JOIN policy_versions v ON v.id = s.version_id"                         \
      " ORDER BY s.site <> '*', s.site COLLATE NOCASE")                        \
    X(TSL_STMT_RO_STATE_CLEAR, "DELETE FROM rollout_state")                    \
    X(TSL_STMT_RO_STATE_DELETE, "DELETE FROM rollout_state WHERE site = ?1")   \
    X(TSL_STMT_RO_STATE_SET,                                                   \
      "INSERT INTO rollout_state(site, version_id) VALUES (?1, ?2)"            \
      " ON CONFLICT(site) DO UPDATE SET version_id = excluded.version_id")     \
    X(TSL_STMT_RO_HISTORY_INSERT,                                              \
      "INSERT INTO rollout_history(at, action, version_id, sites, author,"     \
      " comment, prior) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")                  \
    X(TSL_STMT_RO_HISTORY_LAST,                                                \
      "SELECT id, version_id, sites, prior FROM rollout_history"               \
      " WHERE action = 'activate' AND undone_by IS NULL ORDER BY id DESC LIMIT 1")\
    X(TSL_STMT_RO_HISTORY_UNDO,                                                \
      "UPDATE rollout_history SET undone_by = ?2 WHERE id = ?1")               \
    X(TSL_STMT_RO_HISTORY,                                                     \
      "SELECT h.id, h.at, h.action, v.id, v.hash, h.sites, h.author, h.comment,"\
      " h.undone_by FROM rollout_history h"                                    \
      " LEFT JOIN policy_versions v ON v.id = h.version_id"                    \
      " ORDER BY h.id DESC LIMIT ?1")                                          \
    /* ---- shadow mode ---- */                                               \
    X(TSL_STMT_RO_SHADOW_GET,                                                  \
      "SELECT s.version_id, v.hash, s.since, s.author FROM rollout_shadow s"   \
      " JOIN policy_versions v ON v.id = s.version_id")                        \
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
      " ON CONFLICT(hash) DO UPDATE SET requests = requests + excluded.requests,"\
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
