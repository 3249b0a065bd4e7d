/*
 * rollout.c - the policy lifecycle in the store, after `tsl policy load`
 * (policy_store.c) stored a version: activation (everywhere or staged per
 * site), rollback, the rollout status and dry-run records.  Reading
 * versions is rollout_versions.c, the plan in force rollout_load.c, shadow
 * mode's version and tallies rollout_shadow_store.c.
 *
 * The rollout state is a base version (002's policy_active, the policy
 * layer's active pointer; none: the default logic) plus per-site versions
 * (004's rollout_sites).  This file is their one writer (policy load's
 * activation goes through rollout_activate_txn).  Every change is a row of
 * rollout_history holding the state it replaced, so rollback restores it
 * exactly, and repeated rollbacks walk further back.  Every write is one
 * transaction with bound values.
 *
 * Used by: `tsl policy activate|rollback|status`, `tsl dry-run` (its
 * record), policy_store.c (rollout_activate_txn).  Needs: store.h,
 * dryrun.h, rollout_db.h, jansson (the prior-state documents).
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
 * The rollout state
 * ---------------------------------------------------------------------- */

/* The state as a JSON object {"*": id, "London": id} (caller frees). */
int rollout_state_read(json_t **out, tsl_store *st)
{
    sqlite3_stmt *q;
    json_t *o = json_object();
    int err = 0, rc;

    *out = NULL;
    if (!o)
        return tsl_oom();
    if (!(q = stmt(st, TSL_STMT_RO_STATE))) {
        json_decref(o);
        return TSL_ESTORE;
    }
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        if (json_object_set_new(o, col_text(q, 0), json_integer(sqlite3_column_int64(q, 1))) < 0) {
            err = tsl_oom();
            break;
        }
    }
    if (err == 0 && rc != SQLITE_DONE)
        err = tsl_store_err(st, "reading the rollout state");
    sqlite3_reset(q);
    if (err < 0)
        json_decref(o);
    else
        *out = o;
    return err;
}

/* Writes the state: the base into 002's policy_active (a NULL policy: the
 * default logic), the staged sites into rollout_sites. */
static int state_write(tsl_store *st, json_t *state, int64_t now, const char *author)
{
    sqlite3_stmt *q;
    const char *site;
    json_t *v, *base = json_object_get(state, "*");
    int err;

    if (!(q = stmt(st, TSL_STMT_POLICY_ACTIVATE)))
        return TSL_ESTORE;
    if (base)
        sqlite3_bind_int64(q, 1, json_integer_value(base));
    else
        sqlite3_bind_null(q, 1);
    sqlite3_bind_int64(q, 2, now);
    tsl_store_bind_text(q, 3, author);
    if ((err = exec_done(st, q, "writing the active policy")) < 0)
        return err;
    if ((err = exec_text(st, TSL_STMT_RO_STATE_CLEAR, NULL, "clearing the staged sites")) < 0)
        return err;
    json_object_foreach(state, site, v) {
        if (strcmp(site, "*") == 0)
            continue;
        if (!(q = stmt(st, TSL_STMT_RO_STATE_SET)))
            return TSL_ESTORE;
        tsl_store_bind_text(q, 1, site);
        sqlite3_bind_int64(q, 2, json_integer_value(v));
        if ((err = exec_done(st, q, "writing the staged sites")) < 0)
            return err;
    }
    return 0;
}

int tsl_rollout_state_key(tsl_buf *out, tsl_store *st)
{
    sqlite3_stmt *q;
    int err = 0, rc;
    bool base = false, any = false;

    TSL_ARG(out && st);
    if (!(q = stmt(st, TSL_STMT_RO_STATE)))
        return TSL_ESTORE;
    while (err == 0 && (rc = sqlite3_step(q)) == SQLITE_ROW) {
        const char *site = col_text(q, 0), *hash = col_text(q, 2);
        if (strcmp(site, "*") == 0) {
            base = true;
            err = tsl_buf_puts(out, hash);
        } else {
            if (!base && !any)
                err = tsl_buf_puts(out, "default");
            if (err == 0)
                err = tsl_buf_printf(out, ";%s=%s", site, hash);
        }
        any = true;
    }
    if (err == 0 && rc != SQLITE_DONE)
        err = tsl_store_err(st, "reading the rollout state");
    sqlite3_reset(q);
    if (err == 0 && !any)
        err = tsl_buf_puts(out, "default");
    return err;
}

int rollout_history_add(int64_t *out_id, tsl_store *st, int64_t at, const char *action,
                       int64_t version, const char *sites, const char *author,
                       const char *comment, json_t *prior)
{
    sqlite3_stmt *q;
    char *prior_text = NULL;
    int err;

    if (!(prior_text = json_dumps(prior, JSON_COMPACT | JSON_SORT_KEYS)))
        return tsl_oom();
    if (!(q = stmt(st, TSL_STMT_RO_HISTORY_INSERT))) {
        free(prior_text);
        return TSL_ESTORE;
    }
    sqlite3_bind_int64(q, 1, at);
    tsl_store_bind_text(q, 2, action);
    if (version)
        sqlite3_bind_int64(q, 3, version);
    else
        sqlite3_bind_null(q, 3);
    tsl_store_bind_text(q, 4, sites);
    tsl_store_bind_text(q, 5, author);
    tsl_store_bind_text(q, 6, comment);
    tsl_store_bind_text(q, 7, prior_text);
    err = exec_done(st, q, "recording the rollout history");
    if (out_id)
        *out_id = err < 0 ? 0 : sqlite3_last_insert_rowid(tsl_store_db(st));
    free(prior_text);
    return err;
}

static int site_exists(tsl_store *st, const char *site)
{
    sqlite3_stmt *q = stmt(st, TSL_STMT_SITE_ID);
    int rc, err = 0;
    if (!q)
        return TSL_ESTORE;
    tsl_store_bind_text(q, 1, site);
    rc = sqlite3_step(q);
    if (rc == SQLITE_DONE)
        err = tsl_seterr(TSL_ENOTFOUND, "no site \"%s\" in the inventory", site);
    else if (rc != SQLITE_ROW)
        err = tsl_store_err(st, "looking up a site");
    sqlite3_reset(q);
    return err;
}

/* The state change of an activation, inside the caller's transaction:
 * version `id` everywhere (nsites 0) or for the named sites, recorded in
 * the history with the state it replaces. */
int rollout_activate_txn(tsl_store *st, int64_t id, const tsl_activate_options *opt)
{
    json_t *state = NULL, *prior = NULL;
    tsl_buf sites = TSL_BUF_INIT;
    int64_t now = now_or(opt->now);
    int err;

    if ((err = rollout_state_read(&state, st)) < 0)
        goto done;
    if (!(prior = json_deep_copy(state))) {
        err = tsl_oom();
        goto done;
    }
    if (opt->nsites == 0) {
        json_object_clear(state); /* id 0: the default logic everywhere */
        if (id && json_object_set_new(state, "*", json_integer(id)) < 0) {
            err = tsl_oom();
            goto done;
        }
    } else {
        json_t *base = json_object_get(state, "*");
        bool is_base = base && json_integer_value(base) == id;
        for (size_t i = 0; i < opt->nsites; i++) {
            const char *site = opt->sites[i], *k;
            json_t *v;
            void *tmp;
            if (!site || !*site || strcmp(site, "*") == 0) {
                err = tsl_seterr(TSL_EINVALID, "an empty or \"*\" site name in --sites");
                goto done;
            }
            if ((err = site_exists(st, site)) < 0)
                goto done;
            /* any spelling of the site is the same row; the base version
             * needs no per-site row */
            json_object_foreach_safe(state, tmp, k, v) {
                (void)v;
                if (strcmp(k, "*") != 0 && strcasecmp(k, site) == 0)
                    json_object_del(state, k);
            }
            if (!is_base && json_object_set_new(state, site, json_integer(id)) < 0) {
                err = tsl_oom();
                goto done;
            }
            if ((err = tsl_buf_printf(&sites, "%s%s", i ? "," : "", site)) < 0)
                goto done;
        }
    }
    if ((err = state_write(st, state, now, opt->author)) < 0 ||
        (err = rollout_history_add(NULL, st, now, "activate", id, opt->nsites ? sites.ptr : NULL,
                           opt->author, opt->comment, prior)) < 0)
        goto done;
done:
    json_decref(state);
    json_decref(prior);
    tsl_buf_free(&sites);
    return err;
}

/* What a recorded dry-run found, in words, from its summary JSON:
 * "3 newly blocked, 12 newly outside their site; expected blocked=2: not
 * met (...)". */
static void dryrun_findings(char *buf, size_t len, const char *conditions, const char *summary)
{
    json_error_t jerr;
    json_t *j = summary ? json_loads(summary, 0, &jerr) : NULL;
    size_t o = 0;
#define ADD(...)                                                                 \
    do {                                                                         \
        int n_ = snprintf(buf + o, len - o, __VA_ARGS__);                        \
        if (n_ > 0)                                                              \
            o = (size_t)n_ >= len - o ? len - 1 : o + (size_t)n_;                \
    } while (0)
    buf[0] = '\0';
    static const struct {
        const char *key, *words;
    } counts[] = {{"newly_blocked", "newly blocked"},
                  {"newly_cross_site", "newly outside their site"},
                  {"newly_cross_country", "newly outside their country"},
                  {"newly_over_capacity", "servers newly over capacity"},
                  {"first_changed", "first servers changed"}};
    for (size_t i = 0; j && i < sizeof counts / sizeof *counts; i++) {
        json_int_t v = json_integer_value(json_object_get(j, counts[i].key));
        if (v > 0)
            ADD("%s%lld %s", o ? ", " : "", (long long)v, counts[i].words);
    }
    if (!o)
        ADD("no change that gates");
    ADD(" (conditions: %s)", conditions ? conditions : "none");
    const char *verdict = j ? json_string_value(json_object_get(j, "expect_verdict")) : NULL;
    if (verdict)
        ADD("; expected %s", verdict);
    else
        ADD("; it stated no expectation (tsl dry-run --expect)");
#undef ADD
    json_decref(j);
}

/* `activate --require-dry-run`: the latest dry-run of version `id`
 * against the rollout in force must be clean (no condition, or every
 * expectation met).  The refusal says what it found. */
static int require_dry_run(tsl_store *st, int64_t id, const char *hash, const char *key)
{
    char found[768], when[32];
    int err = 0;

    for (int any = 0; any < 2; any++) {
        sqlite3_stmt *q = stmt(st, TSL_STMT_RO_DRYRUN_LATEST);
        if (!q)
            return TSL_ESTORE;
        sqlite3_bind_int64(q, 1, id);
        if (any)
            sqlite3_bind_null(q, 2);
        else
            tsl_store_bind_text(q, 2, key);
        int rc = sqlite3_step(q);
        if (rc == SQLITE_ROW) {
            bool clean = sqlite3_column_int(q, 0) != 0;
            dryrun_findings(found, sizeof found, (const char *)sqlite3_column_text(q, 1),
                            (const char *)sqlite3_column_text(q, 2));
            time_t t = (time_t)sqlite3_column_int64(q, 4);
            struct tm tm;
            gmtime_r(&t, &tm);
            strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
            if (!any && clean) {
                sqlite3_reset(q);
                return 0;
            }
            if (!any)
                err = tsl_seterr(TSL_EPOLICY,
                                 "refusing to activate version %lld (%s): its latest dry-run "
                                 "against the rollout in force (%s, %s) found %s; fix the "
                                 "policy, or state what you expect with `tsl dry-run --policy "
                                 "%lld --expect ...`",
                                 (long long)id, hash, key, when, found, (long long)id);
            else
                err = tsl_seterr(TSL_EPOLICY,
                                 "refusing to activate version %lld (%s): no dry-run of it "
                                 "against the rollout in force (%s) is recorded (its latest "
                                 "was against %s, %s, and found %s); run `tsl dry-run "
                                 "--policy %lld`",
                                 (long long)id, hash, key, (const char *)sqlite3_column_text(q, 3),
                                 when, found, (long long)id);
            sqlite3_reset(q);
            return err;
        }
        sqlite3_reset(q);
        if (rc != SQLITE_DONE)
            return tsl_store_err(st, "reading dry-run records");
    }
    return tsl_seterr(TSL_EPOLICY,
                      "refusing to activate version %lld (%s): no dry-run of it is recorded; "
                      "run `tsl dry-run --policy %lld` against the rollout in force (%s)",
                      (long long)id, hash, (long long)id, key);
}

int tsl_rollout_activate(tsl_store *st, const char *version, const tsl_activate_options *opt)
{
    tsl_activate_options none = {0};
    tsl_buf key = TSL_BUF_INIT;
    char hash[HASHLEN];
    int64_t id;
    int err;

    TSL_ARG(st && version);
    if (!opt)
        opt = &none;
    if (strcmp(version, "none") == 0 || strcmp(version, "default") == 0) {
        /* the default logic everywhere: no version to compile or dry-run */
        if (opt->nsites || opt->require_dry_run)
            return tsl_seterr(TSL_EINVALID, "\"%s\" (the default logic) is activated "
                                            "everywhere, without --sites or --require-dry-run",
                              version);
        id = 0;
        snprintf(hash, sizeof hash, "default");
    } else {
        if ((err = policy_store_resolve_compilable(&id, hash, sizeof hash, st, version)) < 0)
            return err;
    }

    if ((err = tsl_store_begin(st)) < 0)
        return err;
    if (opt->require_dry_run) {
        if ((err = tsl_rollout_state_key(&key, st)) < 0 ||
            (err = require_dry_run(st, id, hash, key.ptr)) < 0)
            goto done;
    }
    if ((err = rollout_activate_txn(st, id, opt)) < 0)
        goto done;
    err = tsl_store_commit(st);
done:
    if (err < 0)
        tsl_store_rollback(st);
    tsl_buf_free(&key);
    return err;
}

int tsl_rollout_rollback(tsl_store *st, const char *author, char *what, size_t len)
{
    sqlite3_stmt *q;
    json_t *prior = NULL, *now_state = NULL;
    json_error_t jerr;
    int64_t hid = 0, vid = 0, newid = 0;
    char *sites = NULL;
    int err, rc;

    TSL_ARG(st);
    if (what && len)
        what[0] = '\0';
    if ((err = tsl_store_begin(st)) < 0)
        return err;
    if (!(q = stmt(st, TSL_STMT_RO_HISTORY_LAST))) {
        err = TSL_ESTORE;
        goto done;
    }
    rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        hid = sqlite3_column_int64(q, 0);
        vid = sqlite3_column_int64(q, 1);
        if (col_text(q, 2) && !(sites = strdup(col_text(q, 2))))
            err = tsl_oom();
        if (err == 0 && !(prior = json_loads(col_text(q, 3), 0, &jerr)))
            err = tsl_seterr(TSL_ESTORE, "rollout history %lld: unreadable prior state: %s",
                             (long long)hid, jerr.text);
    } else if (rc == SQLITE_DONE) {
        err = tsl_seterr(TSL_ENOTFOUND, "nothing to roll back: no activation is in force");
    } else {
        err = tsl_store_err(st, "reading the rollout history");
    }
    sqlite3_reset(q);
    if (err < 0)
        goto done;
    if ((err = rollout_state_read(&now_state, st)) < 0 ||
        (err = state_write(st, prior, (int64_t)time(NULL), author)) < 0 ||
        (err = rollout_history_add(&newid, st, (int64_t)time(NULL), "rollback", vid, sites, author,
                           NULL, now_state)) < 0)
        goto done;
    if (!(q = stmt(st, TSL_STMT_RO_HISTORY_UNDO))) {
        err = TSL_ESTORE;
        goto done;
    }
    sqlite3_bind_int64(q, 1, hid);
    sqlite3_bind_int64(q, 2, newid);
    if ((err = exec_done(st, q, "recording the rollback")) < 0)
        goto done;
    if (what && len) {
        json_t *b = json_object_get(prior, "*");
        size_t nstaged = json_object_size(prior) - (b ? 1 : 0);
        char base[48];
        if (b)
            snprintf(base, sizeof base, "version %lld", (long long)json_integer_value(b));
        else
            snprintf(base, sizeof base, "the default logic");
        char undone[48];
        if (vid)
            snprintf(undone, sizeof undone, "version %lld", (long long)vid);
        else
            snprintf(undone, sizeof undone, "the default logic");
        snprintf(what, len, "undid the activation of %s%s%s; in force now: %s%s", undone,
                 sites ? " for " : "", sites ? sites : "", base,
                 nstaged ? " (with staged sites)" : "");
    }
    err = tsl_store_commit(st);
done:
    if (err < 0)
        tsl_store_rollback(st);
    json_decref(prior);
    json_decref(now_state);
    free(sites);
    return err;
}

int tsl_rollout_status(tsl_buf *out, tsl_store *st, tsl_format fmt)
{
    sqlite3_stmt *q;
    tsl_buf key = TSL_BUF_INIT;
    int err, rc;
    size_t n = 0;

    TSL_ARG(out && st);
    if ((err = tsl_rollout_state_key(&key, st)) < 0)
        goto done;
    if (fmt == TSL_FORMAT_JSON) {
        if ((err = tsl_buf_puts(out, "{\"in_force\":")) < 0 ||
            (err = tsl_buf_json_str(out, key.ptr)) < 0 ||
            (err = tsl_buf_puts(out, ",\"history\":[")) < 0)
            goto done;
    } else if ((err = tsl_buf_printf(out, "in force: %s\nhistory (newest first):\n", key.ptr)) < 0) {
        goto done;
    }
    if (!(q = stmt(st, TSL_STMT_RO_HISTORY))) {
        err = TSL_ESTORE;
        goto done;
    }
    sqlite3_bind_int64(q, 1, 20);
    while (err == 0 && (rc = sqlite3_step(q)) == SQLITE_ROW) {
        char at[32];
        fmt_time(at, sizeof at, sqlite3_column_int64(q, 1));
        if (fmt == TSL_FORMAT_JSON) {
            /* version null: the default logic was activated */
            char ver[24] = "null";
            if (sqlite3_column_type(q, 3) != SQLITE_NULL)
                snprintf(ver, sizeof ver, "%lld", (long long)sqlite3_column_int64(q, 3));
            err = tsl_buf_printf(out,
                                 "%s{\"id\":%lld,\"at\":\"%s\",\"action\":\"%s\","
                                 "\"version\":%s,\"sites\":",
                                 n ? "," : "", (long long)sqlite3_column_int64(q, 0), at,
                                 col_text(q, 2), ver);
            if (err == 0 && (err = tsl_buf_json_str(out, col_text(q, 5))) == 0 &&
                (err = tsl_buf_puts(out, ",\"author\":")) == 0 &&
                (err = tsl_buf_json_str(out, col_text(q, 6))) == 0 &&
                (err = tsl_buf_puts(out, ",\"comment\":")) == 0 &&
                (err = tsl_buf_json_str(out, col_text(q, 7))) == 0)
                err = tsl_buf_printf(out, ",\"undone\":%s}",
                                     sqlite3_column_type(q, 8) == SQLITE_NULL ? "false" : "true");
        } else {
            char ver[64];
            if (sqlite3_column_type(q, 3) == SQLITE_NULL)
                snprintf(ver, sizeof ver, "the default logic");
            else
                snprintf(ver, sizeof ver, "v%lld (%s)", (long long)sqlite3_column_int64(q, 3),
                         col_text(q, 4) ? col_text(q, 4) : "-");
            err = tsl_buf_printf(out, "  #%-3lld %s  %-8s %s%s%s%s%s%s%s%s%s\n",
                                 (long long)sqlite3_column_int64(q, 0), at, col_text(q, 2), ver,
                                 col_text(q, 5) ? " sites " : "",
                                 col_text(q, 5) ? col_text(q, 5) : "",
                                 col_text(q, 6) ? " by " : "", col_text(q, 6) ? col_text(q, 6) : "",
                                 sqlite3_column_type(q, 8) == SQLITE_NULL ? "" : " [rolled back]",
                                 col_text(q, 7) ? ": \"" : "", col_text(q, 7) ? col_text(q, 7) : "",
                                 col_text(q, 7) ? "\"" : "");
        }
        n++;
    }
    if (err == 0 && rc != SQLITE_DONE)
        err = tsl_store_err(st, "reading the rollout history");
    sqlite3_reset(q);
    if (err == 0)
        err = fmt == TSL_FORMAT_JSON ? tsl_buf_puts(out, "]}\n")
                                     : (n ? 0 : tsl_buf_puts(out, "  (no activation yet)\n"));
done:
    tsl_buf_free(&key);
    return err;
}

/* ------------------------------------------------------------------------
 * Dry-run records
 * ---------------------------------------------------------------------- */

int tsl_rollout_record_dryrun(tsl_store *st, int64_t version_id, const char *against,
                              const char *population, unsigned fail_on, const tsl_dryrun *dr,
                              const char *author, int64_t now)
{
    tsl_buf summary = TSL_BUF_INIT;
    char failon[64], conds[64];
    sqlite3_stmt *q;
    int err;

    TSL_ARG(st && against && dr);
    if (!dr->finished)
        return tsl_seterr(TSL_EINVALID, "record a dry-run after tsl_dryrun_finish");
    if ((err = tsl_dryrun_summary_json(&summary, dr)) < 0)
        goto done;
    tsl_dryrun_cond_format(failon, sizeof failon, fail_on);
    tsl_dryrun_cond_format(conds, sizeof conds, dr->sum.conditions);
    if ((err = tsl_store_begin(st)) < 0)
        goto done;
    if (!(q = stmt(st, TSL_STMT_RO_DRYRUN_INSERT))) {
        err = TSL_ESTORE;
        goto done;
    }
    sqlite3_bind_int64(q, 1, version_id);
    tsl_store_bind_text(q, 2, against);
    tsl_store_bind_text(q, 3, population ? population : "inventory");
    tsl_store_bind_text(q, 4, failon);
    tsl_store_bind_text(q, 5, conds);
    /* clean: what `activate --require-dry-run` needs; a run that stated
     * expectations is clean when it met them (dryrun_expect.c) */
    sqlite3_bind_int(q, 6, dr->sum.expected ? dr->sum.expect_met : dr->sum.conditions == 0);
    tsl_store_bind_text(q, 7, summary.ptr);
    tsl_store_bind_text(q, 8, author);
    sqlite3_bind_int64(q, 9, now_or(now));
    if ((err = exec_done(st, q, "recording the dry-run")) < 0)
        goto done;
    err = tsl_store_commit(st);
done:
    if (err < 0)
        tsl_store_rollback(st);
    tsl_buf_free(&summary);
    return err;
}
