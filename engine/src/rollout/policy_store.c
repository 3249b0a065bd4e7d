/*
 * policy_store.c - policy versions in the SQLite store (schema 002):
 * `tsl policy load` stores a policy's text under its content hash, with
 * author, time and comment, and can make it the active one (through the
 * rollout, rollout.c, which owns policy_active and the staged sites);
 * `tsl policy list` lists them with where each is active.
 *
 * Used by: the CLI (policy load/list/active), the broker.  Needs: store.h
 * (the statement cache and transactions), policy.h, rollout.h.
 */
#include "policy.h"
#include "rollout.h"
#include "store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *tsl_policy_source(const tsl_policy *pol, size_t *len)
{
    if (len)
        *len = pol ? pol->len : 0;
    return pol ? pol->src : NULL;
}

const char *tsl_policy_name(const tsl_policy *pol)
{
    return pol ? pol->name : NULL;
}

void tsl_policy_counts(const tsl_policy *pol, size_t *sites, size_t *groups, size_t *rules)
{
    if (sites)
        *sites = pol ? pol->nsites : 0;
    if (groups)
        *groups = pol ? pol->ngroups : 0;
    if (rules)
        *rules = pol ? pol->nrules : 0;
}

/* Steps a statement that returns one integer; *out 0 when no row. */
static int step_id(tsl_store *st, sqlite3_stmt *q, int64_t *out, const char *what)
{
    int rc = sqlite3_step(q);
    *out = 0;
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int64(q, 0);
    else if (rc != SQLITE_DONE)
        return tsl_store_err(st, what);
    return 0;
}

int tsl_store_policy_add(int64_t *out_id, bool *out_existed, tsl_store *st,
                         const tsl_policy *pol, const char *author, const char *comment,
                         unsigned flags, int64_t now)
{
    sqlite3_stmt *q = NULL;
    bool in_txn = false;
    int64_t id = 0;
    bool existed = false;
    int err = 0;

    TSL_ARG(out_id && out_existed && st && pol);
    *out_id = 0;
    *out_existed = false;
    if (!now)
        now = (int64_t)time(NULL);
    if ((err = tsl_store_begin(st)) < 0)
        goto done;
    in_txn = true;

    if (!(q = tsl_store_stmt(st, TSL_STMT_POLICY_ID))) {
        err = TSL_ESTORE;
        goto done;
    }
    if (tsl_store_bind_text(q, 1, pol->sha256) != SQLITE_OK) {
        err = tsl_store_err(st, "binding the policy hash");
        goto done;
    }
    if ((err = step_id(st, q, &id, "looking up the policy version")) < 0)
        goto done;
    sqlite3_reset(q);
    q = NULL;
    existed = id != 0;

    if (!existed) {
        if (!(q = tsl_store_stmt(st, TSL_STMT_POLICY_INSERT))) {
            err = TSL_ESTORE;
            goto done;
        }
        if (tsl_store_bind_text(q, 1, pol->version) != SQLITE_OK ||
            tsl_store_bind_text(q, 2, pol->sha256) != SQLITE_OK ||
            tsl_store_bind_text(q, 3, pol->name) != SQLITE_OK ||
            sqlite3_bind_text(q, 4, pol->src, (int)pol->len, SQLITE_STATIC) != SQLITE_OK ||
            tsl_store_bind_text(q, 5, author) != SQLITE_OK ||
            tsl_store_bind_text(q, 6, comment) != SQLITE_OK ||
            sqlite3_bind_int64(q, 7, now) != SQLITE_OK ||
            sqlite3_bind_int64(q, 8, pol->nsites) != SQLITE_OK ||
            sqlite3_bind_int64(q, 9, pol->ngroups) != SQLITE_OK ||
            sqlite3_bind_int64(q, 10, pol->nrules) != SQLITE_OK) {
            err = tsl_store_err(st, "binding the policy version");
            goto done;
        }
        if (sqlite3_step(q) != SQLITE_DONE) {
            err = tsl_store_err(st, "storing the policy version");
            goto done;
        }
        id = sqlite3_last_insert_rowid(tsl_store_db(st));
        sqlite3_reset(q);
        q = NULL;
    }

    /* through the rollout, so the activation is in its history and
     * `tsl policy rollback` undoes it */
    if (flags & TSL_POLICY_ACTIVATE) {
        tsl_activate_options ao = {.author = author, .comment = comment, .now = now};
        if ((err = rollout_activate_txn(st, id, &ao)) < 0)
            goto done;
    }
    in_txn = false;
    if ((err = tsl_store_commit(st)) < 0)
        goto done;
    *out_id = id;
    *out_existed = existed;
done:
    if (q)
        sqlite3_reset(q);
    if (in_txn)
        tsl_store_rollback(st);
    return err;
}

int policy_store_compile(tsl_policy **out, tsl_store *st, int64_t id)
{
    char *src = NULL, *name = NULL;
    size_t len = 0;
    int err;

    *out = NULL;
    if ((err = tsl_rollout_source(&src, &len, &name, st, id)) < 0)
        return err;
    if ((err = tsl_policy_compile(out, src, len, name)) < 0)
        err = tsl_seterr(err, "stored policy version %lld: %s", (long long)id, tsl_error_last());
    free(src);
    free(name);
    return err;
}

int policy_store_resolve_compilable(int64_t *id, char *hash, size_t hashlen, tsl_store *st,
                                    const char *version)
{
    tsl_policy *pol = NULL;
    int err;

    if ((err = tsl_rollout_resolve(id, hash, hashlen, st, version)) < 0 ||
        (err = policy_store_compile(&pol, st, *id)) < 0)
        return err;
    tsl_policy_free(pol);
    return 0;
}

int tsl_store_policy_active(tsl_policy **out, tsl_store *st)
{
    sqlite3_stmt *q = NULL;
    int64_t id = 0;
    int err;

    TSL_ARG(out && st);
    *out = NULL;
    if (!(q = tsl_store_stmt(st, TSL_STMT_POLICY_ACTIVE)))
        return TSL_ESTORE;
    err = step_id(st, q, &id, "reading the active policy");
    sqlite3_reset(q);
    if (err == 0 && id)
        err = policy_store_compile(out, st, id);
    return err;
}

int tsl_store_policy_list(tsl_buf *out, tsl_store *st, tsl_format fmt)
{
    sqlite3_stmt *q = NULL;
    int err = 0, rc, n = 0;
    char when[32], act[96];

    TSL_ARG(out && st);
    if (!(q = tsl_store_stmt(st, TSL_STMT_POLICY_LIST)))
        return TSL_ESTORE;
#define PUT(s) do { if ((err = tsl_buf_puts(out, (s))) < 0) goto done; } while (0)
#define FMT(...) do { if ((err = tsl_buf_printf(out, __VA_ARGS__)) < 0) goto done; } while (0)
#define STR(s) do { if ((err = tsl_buf_json_str(out, (s))) < 0) goto done; } while (0)
#define CSV(s) do { if ((err = tsl_buf_csv_field(out, (s))) < 0) goto done; } while (0)
    if (fmt == TSL_FORMAT_JSON)
        PUT("[");
    else if (fmt == TSL_FORMAT_CSV)
        PUT("id,version,name,author,comment,created_at,sites,groups,rules,active,"
            "staged_sites,last_dry_run,shadow\n");
    else
        FMT("%-4s %-20s %-16s %-20s %-16s %-12s %-9s %s\n", "id", "version", "active", "created",
            "name", "author", "dry-run", "comment");
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(q, 0), at = sqlite3_column_int64(q, 5);
        const char *ver = (const char *)sqlite3_column_text(q, 1);
        const char *name = (const char *)sqlite3_column_text(q, 2);
        const char *author = (const char *)sqlite3_column_text(q, 3);
        const char *comment = (const char *)sqlite3_column_text(q, 4);
        int sites = sqlite3_column_int(q, 6), groups = sqlite3_column_int(q, 7);
        int rules = sqlite3_column_int(q, 8);
        bool active = sqlite3_column_int(q, 9) != 0;
        const char *staged = (const char *)sqlite3_column_text(q, 10);
        const char *dry = (const char *)sqlite3_column_text(q, 11);
        bool shadow = sqlite3_column_int(q, 12) != 0;
        time_t t = (time_t)at;
        struct tm tm;
        if (gmtime_r(&t, &tm))
            strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
        else
            snprintf(when, sizeof when, "%lld", (long long)at);
        if (fmt == TSL_FORMAT_JSON) {
            FMT("%s{\"id\":%lld,\"version\":", n ? "," : "", (long long)id);
            STR(ver);
            PUT(",\"name\":");
            STR(name);
            PUT(",\"author\":");
            STR(author);
            PUT(",\"comment\":");
            STR(comment);
            FMT(",\"created_at\":\"%s\",\"sites\":%d,\"groups\":%d,\"rules\":%d,\"active\":%s,"
                "\"staged_sites\":",
                when, sites, groups, rules, active ? "true" : "false");
            STR(staged);
            PUT(",\"last_dry_run\":");
            STR(dry);
            FMT(",\"shadow\":%s}", shadow ? "true" : "false");
        } else if (fmt == TSL_FORMAT_CSV) {
            FMT("%lld,", (long long)id);
            CSV(ver);
            PUT(",");
            CSV(name);
            PUT(",");
            CSV(author ? author : "");
            PUT(",");
            CSV(comment ? comment : "");
            FMT(",%s,%d,%d,%d,%s,", when, sites, groups, rules, active ? "true" : "false");
            CSV(staged ? staged : "");
            PUT(",");
            CSV(dry ? dry : "");
            FMT(",%s\n", shadow ? "true" : "false");
        } else {
            /* "*": the base, every site not staged; else the staged sites */
            snprintf(act, sizeof act, "%s%s%s%s", active ? "*" : "", active && staged ? "," : "",
                     staged ? staged : "", shadow ? (active || staged ? ",shadow" : "shadow") : "");
            FMT("%-4lld %-20s %-16s %-20s %-16s %-12s %-9s %s\n", (long long)id, ver ? ver : "",
                act, when, name ? name : "", author ? author : "",
                !dry ? "never" : strcmp(dry, "none") == 0 ? "clean" : dry,
                comment ? comment : "");
        }
        n++;
    }
    if (rc != SQLITE_DONE) {
        err = tsl_store_err(st, "listing policy versions");
        goto done;
    }
    if (fmt == TSL_FORMAT_JSON)
        PUT("]\n");
    else if (fmt == TSL_FORMAT_TEXT && n == 0)
        PUT("(no policy version stored: `tsl policy load FILE`)\n");
#undef PUT
#undef FMT
#undef STR
#undef CSV
done:
    sqlite3_reset(q);
    return err;
}
