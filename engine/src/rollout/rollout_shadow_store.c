/*
 * rollout_shadow_store.c - shadow mode in the store: which version runs in
 * shadow, its tallies and newest differing samples, and `tsl policy shadow`
 * report.
 *
 * Used by: `tsl policy shadow`, the broker (tsl_shadow_flush through
 * rollout_shadow_store), rollout_load.c (rollout_shadow_get).
 * Needs: store.h, rollout_db.h, jansson.
 */
#include "dryrun.h"
#include "rollout_db.h"
#include "store.h"

#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ------------------------------------------------------------------------
 * Shadow mode
 * ---------------------------------------------------------------------- */

/* The shadow's version id and hash; *id 0 when none. */
int rollout_shadow_get(int64_t *id, char *hash, size_t len, int64_t *since, tsl_store *st)
{
    sqlite3_stmt *q = stmt(st, TSL_STMT_RO_SHADOW_GET);
    int rc, err = 0;

    *id = 0;
    hash[0] = '\0';
    if (since)
        *since = 0;
    if (!q)
        return TSL_ESTORE;
    if ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        *id = sqlite3_column_int64(q, 0);
        snprintf(hash, len, "%s", col_text(q, 1));
        if (since)
            *since = sqlite3_column_int64(q, 2);
    } else if (rc != SQLITE_DONE) {
        err = tsl_store_err(st, "reading the shadow version");
    }
    sqlite3_reset(q);
    return err;
}

int tsl_rollout_shadow_set(tsl_store *st, const char *version, const char *author, int64_t now)
{
    json_t *prior = NULL;
    sqlite3_stmt *q;
    char hash[HASHLEN] = "";
    int64_t id = 0;
    int err;

    TSL_ARG(st);
    now = now_or(now);
    if (version) {
        if ((err = policy_store_resolve_compilable(&id, hash, sizeof hash, st, version)) < 0)
            return err;
    }
    if ((err = tsl_store_begin(st)) < 0)
        return err;
    if ((err = rollout_state_read(&prior, st)) < 0)
        goto done;
    if (version) {
        if (!(q = stmt(st, TSL_STMT_RO_SHADOW_SET))) {
            err = TSL_ESTORE;
            goto done;
        }
        sqlite3_bind_int64(q, 1, id);
        sqlite3_bind_int64(q, 2, now);
        tsl_store_bind_text(q, 3, author);
        if ((err = exec_done(st, q, "setting the shadow version")) < 0)
            goto done;
        /* counters restart */
        if ((err = exec_text(st, TSL_STMT_RO_SHADOW_COUNTS_RESET, hash,
                             "resetting shadow counters")) < 0 ||
            (err = exec_text(st, TSL_STMT_RO_SHADOW_SAMPLES_RESET, hash,
                             "resetting shadow samples")) < 0)
            goto done;
    } else if ((err = exec_text(st, TSL_STMT_RO_SHADOW_CLEAR, NULL,
                                "clearing the shadow version")) < 0) {
        goto done;
    }
    if ((err = rollout_history_add(NULL, st, now, version ? "shadow" : "unshadow", id, NULL, author, NULL,
                           prior)) < 0)
        goto done;
    err = tsl_store_commit(st);
done:
    if (err < 0)
        tsl_store_rollback(st);
    json_decref(prior);
    return err;
}

int rollout_shadow_store(tsl_store *st, const char *version, const uint64_t *delta,
                         const shadow_sample *samples, uint32_t nsamples, int64_t now)
{
    sqlite3_stmt *q;
    tsl_buf kinds = TSL_BUF_INIT;
    int err;

    now = now_or(now);
    if (!delta[0] && !nsamples)
        return 0;
    if ((err = tsl_store_begin(st)) < 0)
        return err;
    if (!(q = stmt(st, TSL_STMT_RO_SHADOW_ADD))) {
        err = TSL_ESTORE;
        goto done;
    }
    tsl_store_bind_text(q, 1, version);
    for (int i = 0; i < 8; i++)
        sqlite3_bind_int64(q, 2 + i, (int64_t)delta[i]);
    sqlite3_bind_int64(q, 10, now);
    if ((err = exec_done(st, q, "adding shadow counters")) < 0)
        goto done;
    for (uint32_t i = 0; i < nsamples; i++) {
        const shadow_sample *s = &samples[i];
        tsl_buf_clear(&kinds);
        if ((err = diff_kinds_text(&kinds, s->kinds, ",")) < 0)
            goto done;
        if (!(q = stmt(st, TSL_STMT_RO_SHADOW_SAMPLE_INSERT))) {
            err = TSL_ESTORE;
            goto done;
        }
        tsl_store_bind_text(q, 1, version);
        sqlite3_bind_int64(q, 2, s->at ? s->at : now);
        tsl_store_bind_text(q, 3, s->client[0] ? s->client : NULL);
        tsl_store_bind_text(q, 4, s->ip[0] ? s->ip : NULL);
        tsl_store_bind_text(q, 5, s->site[0] ? s->site : NULL);
        tsl_store_bind_text(q, 6, kinds.len ? kinds.ptr : "");
        tsl_store_bind_text(q, 7, s->active);
        tsl_store_bind_text(q, 8, s->shadow);
        if ((err = exec_done(st, q, "storing a shadow sample")) < 0)
            goto done;
    }
    if (!(q = stmt(st, TSL_STMT_RO_SHADOW_SAMPLE_TRIM))) {
        err = TSL_ESTORE;
        goto done;
    }
    tsl_store_bind_text(q, 1, version);
    sqlite3_bind_int(q, 2, ROLLOUT_SHADOW_KEEP);
    if ((err = exec_done(st, q, "trimming shadow samples")) < 0)
        goto done;
    err = tsl_store_commit(st);
done:
    if (err < 0)
        tsl_store_rollback(st);
    tsl_buf_free(&kinds);
    return err;
}

int tsl_rollout_shadow_report(tsl_buf *out, tsl_store *st, tsl_format fmt)
{
    sqlite3_stmt *q;
    char hash[HASHLEN], since[32], upd[32] = "-";
    int64_t id, since_t;
    int64_t c[8] = {0};
    int err, rc;
    size_t n = 0;

    TSL_ARG(out && st);
    if ((err = rollout_shadow_get(&id, hash, sizeof hash, &since_t, st)) < 0)
        return err;
    if (!id) {
        return fmt == TSL_FORMAT_JSON
                   ? tsl_buf_puts(out, "{\"shadow\":null}\n")
                   : tsl_buf_puts(out, "no shadow version (`tsl policy shadow V` starts one)\n");
    }
    fmt_time(since, sizeof since, since_t);
    if (!(q = stmt(st, TSL_STMT_RO_SHADOW_COUNTS)))
        return TSL_ESTORE;
    tsl_store_bind_text(q, 1, hash);
    if ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        for (int i = 0; i < 8; i++)
            c[i] = sqlite3_column_int64(q, i);
        fmt_time(upd, sizeof upd, sqlite3_column_int64(q, 9));
    } else if (rc != SQLITE_DONE) {
        err = tsl_store_err(st, "reading shadow counters");
    }
    sqlite3_reset(q);
    if (err < 0)
        return err;

    static const char *const names[] = {"requests",  "differ",    "first_changed", "list_changed",
                                        "newly_blocked", "unblocked", "cross_site",  "errors"};
    if (fmt == TSL_FORMAT_JSON) {
        err = tsl_buf_printf(out, "{\"shadow\":{\"version\":%lld,\"hash\":\"%s\",\"since\":\"%s\","
                                  "\"updated\":\"%s\"},\"counts\":{",
                             (long long)id, hash, since, upd);
        for (int i = 0; i < 8 && err == 0; i++)
            err = tsl_buf_printf(out, "%s\"%s\":%lld", i ? "," : "", names[i], (long long)c[i]);
        if (err == 0)
            err = tsl_buf_puts(out, "},\"samples\":[");
    } else {
        double pct = c[0] ? 100.0 * (double)c[1] / (double)c[0] : 0.0;
        err = tsl_buf_printf(out,
                             "shadow: version %lld (%s), since %s, last flush %s\n"
                             "  requests evaluated   %lld\n"
                             "  answered differently %lld (%.2f%%)\n"
                             "    first server       %lld\n"
                             "    any list change    %lld\n"
                             "    newly blocked      %lld\n"
                             "    unblocked          %lld\n"
                             "    newly cross-site   %lld\n"
                             "  shadow errors        %lld\n",
                             (long long)id, hash, since, upd, (long long)c[0], (long long)c[1], pct,
                             (long long)c[2], (long long)c[3], (long long)c[4], (long long)c[5],
                             (long long)c[6], (long long)c[7]);
        if (err == 0)
            err = tsl_buf_puts(out, "newest differences:\n");
    }
    if (err < 0)
        return err;
    if (!(q = stmt(st, TSL_STMT_RO_SHADOW_SAMPLES)))
        return TSL_ESTORE;
    tsl_store_bind_text(q, 1, hash);
    sqlite3_bind_int(q, 2, 20);
    while (err == 0 && (rc = sqlite3_step(q)) == SQLITE_ROW) {
        char at[32];
        fmt_time(at, sizeof at, sqlite3_column_int64(q, 0));
        if (fmt == TSL_FORMAT_JSON) {
            err = tsl_buf_printf(out, "%s{\"at\":\"%s\",\"client\":", n ? "," : "", at);
            const char *keys[] = {",\"ip\":", ",\"site\":", ",\"kinds\":", ",\"active\":",
                                  ",\"shadow\":"};
            if (err == 0)
                err = tsl_buf_json_str(out, col_text(q, 1));
            for (int i = 0; i < 5 && err == 0; i++) {
                if ((err = tsl_buf_puts(out, keys[i])) == 0)
                    err = tsl_buf_json_str(out, col_text(q, 2 + i));
            }
            if (err == 0)
                err = tsl_buf_puts(out, "}");
        } else {
            err = tsl_buf_printf(out, "  %s %s %s [%s] (%s)\n    active: %s\n    shadow: %s\n", at,
                                 col_text(q, 1) ? col_text(q, 1) : "-",
                                 col_text(q, 2) ? col_text(q, 2) : "-",
                                 col_text(q, 3) ? col_text(q, 3) : "no site", col_text(q, 4),
                                 col_text(q, 5), col_text(q, 6));
        }
        n++;
    }
    if (err == 0 && rc != SQLITE_DONE)
        err = tsl_store_err(st, "reading shadow samples");
    sqlite3_reset(q);
    if (err == 0)
        err = fmt == TSL_FORMAT_JSON ? tsl_buf_puts(out, "]}\n")
                                     : (n ? 0 : tsl_buf_puts(out, "  (none yet)\n"));
    return err;
}
