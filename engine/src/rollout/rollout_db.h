/*
 * rollout_db.h - the small helpers every rollout store file shares: column
 * text, time formatting, stepping and running cached statements (with the
 * "store older than this tsl" hint), version-number recognition, and the
 * rollout state's reader and history writer (rollout.c).
 *
 * Used by: rollout.c, rollout_versions.c, rollout_load.c,
 * rollout_shadow_store.c.  Needs: store.h (the statement cache), sqlite3,
 * jansson.
 */
#ifndef TSL_ROLLOUT_DB_H
#define TSL_ROLLOUT_DB_H

#include "store.h"

#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define HASHLEN 64

/* ------------------------------------------------------------------------
 * Small helpers
 * ---------------------------------------------------------------------- */

static inline const char *col_text(sqlite3_stmt *q, int i)
{
    return (const char *)sqlite3_column_text(q, i);
}

static inline void fmt_time(char *dst, size_t len, int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!t || !gmtime_r(&tt, &tm)) {
        snprintf(dst, len, "-");
        return;
    }
    strftime(dst, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static inline int64_t now_or(int64_t now)
{
    return now ? now : (int64_t)time(NULL);
}

/* Steps a cached statement expecting SQLITE_DONE, then resets it. */
static inline int exec_done(tsl_store *st, sqlite3_stmt *q, const char *what)
{
    int rc = sqlite3_step(q);
    int err = rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : tsl_store_err(st, what);
    sqlite3_reset(q);
    return err;
}

static inline sqlite3_stmt *stmt(tsl_store *st, tsl_stmt_id id)
{
    sqlite3_stmt *q = tsl_store_stmt(st, id);
    if (!q && !strstr(tsl_error_last(), "no such table"))
        return NULL;
    if (!q)
        tsl_seterr(TSL_ESTORE, "%s (is this store older than this tsl? open it read-write once "
                               "to migrate it)",
                   tsl_error_last());
    return q;
}

/* Runs statement `id` whose one parameter, if any, is `text` (NULL: none). */
static inline int exec_text(tsl_store *st, tsl_stmt_id id, const char *text, const char *what)
{
    sqlite3_stmt *q = stmt(st, id);
    if (!q)
        return TSL_ESTORE;
    if (text)
        tsl_store_bind_text(q, 1, text);
    return exec_done(st, q, what);
}

/* ------------------------------------------------------------------------
 * Versions
 * ---------------------------------------------------------------------- */

static inline bool all_digits(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s))
            return false;
    return true;
}

/* The state as a JSON object {"*": id, "London": id} (caller frees)
 * (rollout.c). */
TSL_INTERNAL int rollout_state_read(json_t **out, tsl_store *st);

/* Appends a rollout_history row: `action` on `version` (sites NULL:
 * everywhere), holding the state it replaced (`prior`) for rollback
 * (rollout.c). */
TSL_INTERNAL int rollout_history_add(int64_t *out_id, tsl_store *st, int64_t at,
                                     const char *action, int64_t version, const char *sites,
                                     const char *author, const char *comment, json_t *prior);

#endif
