/*
 * rollout.c - the policy lifecycle in the store, after `tsl policy load`
 * (policy_store.c) stored a version: show, diff, dry-run records,
 * activation (everywhere or staged per site), rollback, the plan in force,
 * and shadow mode's version and tallies.
 *
 * The rollout state is a base version (002's policy_active, the policy
 * layer's active pointer; none: the default logic) plus per-site versions
 * (004's rollout_sites).  This file is their one writer (policy load's
 * activation goes through rollout_activate_txn).  Every change is a row of
 * rollout_history holding the state it replaced, so rollback restores it
 * exactly, and repeated rollbacks walk further back.  Every write is one
 * transaction with bound values.
 *
 * Used by: `tsl policy ...`, `tsl dry-run`, the broker (tsl_rollout_load,
 * tsl_rollout_bind, tsl_rollout_bind_shadow, tsl_shadow_flush).  Needs: store.h, dryrun.h,
 * jansson (the prior-state documents).
 */
#include "dryrun.h"
#include "store.h"

#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define HASHLEN 64

/* ------------------------------------------------------------------------
 * Small helpers
 * ---------------------------------------------------------------------- */

static const char *col_text(sqlite3_stmt *q, int i)
{
    return (const char *)sqlite3_column_text(q, i);
}

static void fmt_time(char *dst, size_t len, int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!t || !gmtime_r(&tt, &tm)) {
        snprintf(dst, len, "-");
        return;
    }
    strftime(dst, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int64_t now_or(int64_t now)
{
    return now ? now : (int64_t)time(NULL);
}

/* Steps a cached statement expecting SQLITE_DONE, then resets it. */
static int exec_done(tsl_store *st, sqlite3_stmt *q, const char *what)
{
    int rc = sqlite3_step(q);
    int err = rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : tsl_store_err(st, what);
    sqlite3_reset(q);
    return err;
}

static sqlite3_stmt *stmt(tsl_store *st, tsl_stmt_id id)
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
static int exec_text(tsl_store *st, tsl_stmt_id id, const char *text, const char *what)
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

static bool all_digits(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s))
            return false;
    return true;
}

int tsl_rollout_resolve(int64_t *out_id, char *hash, size_t hashlen, tsl_store *st,
                        const char *version)
{
    sqlite3_stmt *q;
    int err = 0, rc;
    const char *ref = version;

    *out_id = 0;
    TSL_ARG(st && version);
    if ((ref[0] == 'v' || ref[0] == 'V') && all_digits(ref + 1))
        ref++;
    if (all_digits(ref)) {
        if (!(q = stmt(st, TSL_STMT_RO_VERSION_BY_ID)))
            return TSL_ESTORE;
        sqlite3_bind_int64(q, 1, strtoll(ref, NULL, 10));
    } else {
        if (strncasecmp(ref, "sha256:", 7) == 0)
            ref += 7;
        size_t n = strlen(ref);
        if (n < 4 || strspn(ref, "0123456789abcdefABCDEF") != n)
            return tsl_seterr(TSL_EINVALID, "\"%s\" is not a policy version (a number, or at least "
                                            "4 hex digits of its hash)", version);
        if (!(q = stmt(st, TSL_STMT_RO_VERSION_BY_HASH)))
            return TSL_ESTORE;
        tsl_store_bind_text(q, 1, ref);
    }
    rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        *out_id = sqlite3_column_int64(q, 0);
        if (hash)
            snprintf(hash, hashlen, "%s", col_text(q, 1) ? col_text(q, 1) : "");
        if ((rc = sqlite3_step(q)) == SQLITE_ROW)
            err = tsl_seterr(TSL_EINVALID, "\"%s\" names more than one policy version; give more "
                                           "digits", version);
        else if (rc != SQLITE_DONE)
            err = tsl_store_err(st, "reading policy versions");
    } else if (rc == SQLITE_DONE) {
        err = tsl_seterr(TSL_ENOTFOUND, "no policy version \"%s\" (see `tsl policy list`)",
                         version);
    } else {
        err = tsl_store_err(st, "reading policy versions");
    }
    sqlite3_reset(q);
    if (err < 0)
        *out_id = 0;
    return err;
}

int tsl_rollout_source(char **out, size_t *len, char **name, tsl_store *st, int64_t id)
{
    sqlite3_stmt *q;
    int err = 0, rc;

    *out = NULL;
    if (name)
        *name = NULL;
    TSL_ARG(st);
    if (!(q = stmt(st, TSL_STMT_RO_VERSION_META)))
        return TSL_ESTORE;
    sqlite3_bind_int64(q, 1, id);
    if ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        const char *text = col_text(q, 6);
        size_t n = (size_t)sqlite3_column_bytes(q, 6);
        const char *nm = col_text(q, 2);
        if (!(*out = malloc(n + 1)) || (name && !(*name = strdup(nm ? nm : "policy.lua")))) {
            err = tsl_oom();
        } else {
            memcpy(*out, text ? text : "", n);
            (*out)[n] = '\0';
            if (len)
                *len = n;
        }
    } else {
        err = rc == SQLITE_DONE ? tsl_seterr(TSL_ENOTFOUND, "no policy version %lld", (long long)id)
                                : tsl_store_err(st, "reading a policy version");
    }
    sqlite3_reset(q);
    if (err < 0) {
        free(*out);
        *out = NULL;
        if (name) {
            free(*name);
            *name = NULL;
        }
    }
    return err;
}

int tsl_rollout_show(tsl_buf *out, tsl_store *st, const char *version, tsl_format fmt)
{
    sqlite3_stmt *q;
    int64_t id;
    int err, rc;
    char at[32];

    TSL_ARG(out && st && version);
    if ((err = tsl_rollout_resolve(&id, NULL, 0, st, version)) < 0)
        return err;
    if (!(q = stmt(st, TSL_STMT_RO_VERSION_META)))
        return TSL_ESTORE;
    sqlite3_bind_int64(q, 1, id);
    if ((rc = sqlite3_step(q)) != SQLITE_ROW) {
        err = tsl_store_err(st, "reading a policy version");
        sqlite3_reset(q);
        return err;
    }
    fmt_time(at, sizeof at, sqlite3_column_int64(q, 5));
    if (fmt == TSL_FORMAT_JSON) {
        if ((err = tsl_buf_printf(out, "{\"version\":%lld,\"hash\":", (long long)id)) < 0 ||
            (err = tsl_buf_json_str(out, col_text(q, 1))) < 0 ||
            (err = tsl_buf_puts(out, ",\"name\":")) < 0 ||
            (err = tsl_buf_json_str(out, col_text(q, 2))) < 0 ||
            (err = tsl_buf_puts(out, ",\"author\":")) < 0 ||
            (err = tsl_buf_json_str(out, col_text(q, 3))) < 0 ||
            (err = tsl_buf_puts(out, ",\"comment\":")) < 0 ||
            (err = tsl_buf_json_str(out, col_text(q, 4))) < 0 ||
            (err = tsl_buf_printf(out, ",\"stored\":\"%s\",\"content\":", at)) < 0 ||
            (err = tsl_buf_json_str(out, col_text(q, 6))) < 0 ||
            (err = tsl_buf_puts(out, ",\"dry_runs\":[")) < 0)
            goto done_meta;
    } else {
        if ((err = tsl_buf_printf(out,
                                  "version  %lld\nhash     %s\nfile     %s\nauthor   %s\n"
                                  "stored   %s\ncomment  %s\n",
                                  (long long)id, col_text(q, 1),
                                  col_text(q, 2) ? col_text(q, 2) : "-",
                                  col_text(q, 3) ? col_text(q, 3) : "-", at,
                                  col_text(q, 4) ? col_text(q, 4) : "-")) < 0)
            goto done_meta;
    }
    /* keep the content for after the dry-runs (text) */
    char *content = strdup(col_text(q, 6) ? col_text(q, 6) : "");
    sqlite3_reset(q);
    if (!content)
        return tsl_oom();

    if (!(q = stmt(st, TSL_STMT_RO_DRYRUNS_OF))) {
        free(content);
        return TSL_ESTORE;
    }
    sqlite3_bind_int64(q, 1, id);
    size_t n = 0;
    if (fmt != TSL_FORMAT_JSON)
        err = tsl_buf_puts(out, "dry-runs (newest first):\n");
    while (err == 0 && (rc = sqlite3_step(q)) == SQLITE_ROW) {
        fmt_time(at, sizeof at, sqlite3_column_int64(q, 7));
        if (fmt == TSL_FORMAT_JSON) {
            if ((err = tsl_buf_puts(out, n ? ",{\"against\":" : "{\"against\":")) < 0 ||
                (err = tsl_buf_json_str(out, col_text(q, 0))) < 0 ||
                (err = tsl_buf_puts(out, ",\"population\":")) < 0 ||
                (err = tsl_buf_json_str(out, col_text(q, 1))) < 0 ||
                (err = tsl_buf_puts(out, ",\"fail_on\":")) < 0 ||
                (err = tsl_buf_json_str(out, col_text(q, 2))) < 0 ||
                (err = tsl_buf_puts(out, ",\"conditions\":")) < 0 ||
                (err = tsl_buf_json_str(out, col_text(q, 3))) < 0 ||
                (err = tsl_buf_printf(out, ",\"clean\":%s,\"at\":\"%s\",\"author\":",
                                      sqlite3_column_int(q, 4) ? "true" : "false", at)) < 0 ||
                (err = tsl_buf_json_str(out, col_text(q, 6))) < 0 ||
                (err = tsl_buf_printf(out, ",\"summary\":%s}",
                                      col_text(q, 5) ? col_text(q, 5) : "null")) < 0)
                break;
        } else {
            err = tsl_buf_printf(out, "  %s  %s against %s (%s): %s; conditions: %s\n    %s\n", at,
                                 sqlite3_column_int(q, 4) ? "clean " : "FAILED",
                                 col_text(q, 0), col_text(q, 1),
                                 col_text(q, 6) ? col_text(q, 6) : "-", col_text(q, 3),
                                 col_text(q, 5));
        }
        n++;
    }
    if (err == 0 && rc != SQLITE_DONE)
        err = tsl_store_err(st, "reading dry-run records");
    sqlite3_reset(q);
    if (err == 0) {
        if (fmt == TSL_FORMAT_JSON)
            err = tsl_buf_puts(out, "]}\n");
        else
            err = tsl_buf_printf(out, "%s--- content ---\n%s%s", n ? "" : "  (none)\n", content,
                                 *content && content[strlen(content) - 1] != '\n' ? "\n" : "");
    }
    free(content);
    return err;
done_meta:
    sqlite3_reset(q);
    return err;
}

/* ------------------------------------------------------------------------
 * Diff: a unified line diff of two versions (LCS, with 3 lines of context)
 * ---------------------------------------------------------------------- */

typedef struct lines {
    const char **v;
    size_t *len;
    size_t n;
} lines;

static int split_lines(lines *l, const char *text)
{
    size_t cap = 1;
    for (const char *p = text; *p; p++)
        cap += *p == '\n';
    l->n = 0;
    if (!(l->v = malloc(cap * sizeof *l->v)) || !(l->len = malloc(cap * sizeof *l->len)))
        return tsl_oom();
    for (const char *p = text; *p;) {
        const char *e = strchr(p, '\n');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        l->v[l->n] = p;
        l->len[l->n++] = n;
        p += n + (e ? 1 : 0);
    }
    return 0;
}

static bool line_eq(const lines *a, size_t i, const lines *b, size_t j)
{
    return a->len[i] == b->len[j] && memcmp(a->v[i], b->v[j], a->len[i]) == 0;
}

#define DIFF_MAX_CELLS ((size_t)16 << 20)

int tsl_rollout_diff(tsl_buf *out, tsl_store *st, const char *v1, const char *v2)
{
    int64_t id1, id2;
    char h1[HASHLEN], h2[HASHLEN];
    char *s1 = NULL, *s2 = NULL;
    lines a = {0}, b = {0};
    uint32_t *lcs = NULL;
    char (*ops)[1] = NULL; /* per output line: ' ', '-', '+' */
    size_t *oi = NULL, *oj = NULL, nops = 0;
    int err;

    TSL_ARG(out && st && v1 && v2);
    if ((err = tsl_rollout_resolve(&id1, h1, sizeof h1, st, v1)) < 0 ||
        (err = tsl_rollout_resolve(&id2, h2, sizeof h2, st, v2)) < 0 ||
        (err = tsl_rollout_source(&s1, NULL, NULL, st, id1)) < 0 ||
        (err = tsl_rollout_source(&s2, NULL, NULL, st, id2)) < 0 ||
        (err = split_lines(&a, s1)) < 0 || (err = split_lines(&b, s2)) < 0)
        goto done;
    if ((err = tsl_buf_printf(out, "--- version %lld (%s)\n+++ version %lld (%s)\n",
                              (long long)id1, h1, (long long)id2, h2)) < 0)
        goto done;
    if ((a.n + 1) * (b.n + 1) > DIFF_MAX_CELLS) {
        err = tsl_seterr(TSL_ELIMIT, "the policies are too long to diff (%zu and %zu lines)", a.n,
                         b.n);
        goto done;
    }
    /* lcs[i][j]: length of the LCS of a[i..] and b[j..] */
    size_t w = b.n + 1;
    if (!(lcs = calloc((a.n + 1) * w, sizeof *lcs)) ||
        !(ops = malloc((a.n + b.n + 1) * sizeof *ops)) ||
        !(oi = malloc((a.n + b.n + 1) * sizeof *oi)) ||
        !(oj = malloc((a.n + b.n + 1) * sizeof *oj))) {
        err = tsl_oom();
        goto done;
    }
    for (size_t i = a.n; i-- > 0;)
        for (size_t j = b.n; j-- > 0;)
            lcs[i * w + j] = line_eq(&a, i, &b, j)
                                 ? lcs[(i + 1) * w + j + 1] + 1
                                 : (lcs[(i + 1) * w + j] >= lcs[i * w + j + 1] ? lcs[(i + 1) * w + j]
                                                                               : lcs[i * w + j + 1]);
    for (size_t i = 0, j = 0; i < a.n || j < b.n;) {
        if (i < a.n && j < b.n && line_eq(&a, i, &b, j)) {
            ops[nops][0] = ' ';
            oi[nops] = i++;
            oj[nops++] = j++;
        } else if (j < b.n && (i == a.n || lcs[i * w + j + 1] >= lcs[(i + 1) * w + j])) {
            ops[nops][0] = '+';
            oi[nops] = i;
            oj[nops++] = j++;
        } else {
            ops[nops][0] = '-';
            oi[nops] = i++;
            oj[nops++] = j;
        }
    }
    /* hunks: changed lines with 3 lines of context around them */
    bool any = false;
    for (size_t k = 0; k < nops && err == 0;) {
        if (ops[k][0] == ' ') {
            k++;
            continue;
        }
        any = true;
        size_t start = k >= 3 ? k - 3 : 0, end = k;
        /* extend while another change comes within 6 lines */
        for (size_t m = k; m < nops; m++) {
            if (ops[m][0] != ' ') {
                end = m;
                continue;
            }
            if (m - end > 6)
                break;
        }
        end = end + 3 < nops ? end + 3 : nops - 1;
        size_t na = 0, nb = 0;
        for (size_t m = start; m <= end; m++) {
            na += ops[m][0] != '+';
            nb += ops[m][0] != '-';
        }
        err = tsl_buf_printf(out, "@@ -%zu,%zu +%zu,%zu @@\n", oi[start] + (na ? 1 : 0), na,
                             oj[start] + (nb ? 1 : 0), nb);
        for (size_t m = start; m <= end && err == 0; m++) {
            const lines *l = ops[m][0] == '+' ? &b : &a;
            size_t idx = ops[m][0] == '+' ? oj[m] : oi[m];
            err = tsl_buf_printf(out, "%c%.*s\n", ops[m][0], (int)l->len[idx], l->v[idx]);
        }
        k = end + 1;
    }
    if (err == 0 && !any)
        err = tsl_buf_puts(out, "(the two versions are identical)\n");
done:
    free(lcs);
    free(ops);
    free(oi);
    free(oj);
    free(a.v);
    free(a.len);
    free(b.v);
    free(b.len);
    free(s1);
    free(s2);
    return err;
}

/* ------------------------------------------------------------------------
 * The rollout state
 * ---------------------------------------------------------------------- */

/* The state as a JSON object {"*": id, "London": id} (caller frees). */
static int state_read(json_t **out, tsl_store *st)
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

static int history_add(int64_t *out_id, tsl_store *st, int64_t at, const char *action,
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

    if ((err = state_read(&state, st)) < 0)
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
        (err = history_add(NULL, st, now, "activate", id, opt->nsites ? sites.ptr : NULL,
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
    tsl_policy *pol = NULL;
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
        if ((err = tsl_rollout_resolve(&id, hash, sizeof hash, st, version)) < 0)
            return err;
        /* a stored version that no longer compiles is never activated */
        if ((err = policy_store_compile(&pol, st, id)) < 0)
            return err;
        tsl_policy_free(pol);
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
    if ((err = state_read(&now_state, st)) < 0 ||
        (err = state_write(st, prior, (int64_t)time(NULL), author)) < 0 ||
        (err = history_add(&newid, st, (int64_t)time(NULL), "rollback", vid, sites, author,
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
 * The plan in force
 * ---------------------------------------------------------------------- */

/* The rollout state compiled once: the broker keeps one and binds it to
 * every new snapshot (a heartbeat derives a new snapshot every second, so
 * nothing is compiled or read from the store there). */
struct tsl_rollout {
    tsl_policy *base;                            /* NULL: the default logic */
    tsl_policy *staged[TSL_STAGE_MAX_PLANS];     /* distinct staged versions */
    char **sites[TSL_STAGE_MAX_PLANS];           /* each one's sites */
    size_t nsites[TSL_STAGE_MAX_PLANS];
    size_t nstaged;
    tsl_policy *shadow;                          /* NULL: no shadow version */
    char state_key[1024];
};

void tsl_rollout_free(tsl_rollout *ro)
{
    if (!ro)
        return;
    tsl_policy_free(ro->base);
    tsl_policy_free(ro->shadow);
    for (size_t i = 0; i < ro->nstaged; i++) {
        tsl_policy_free(ro->staged[i]);
        for (size_t k = 0; k < ro->nsites[i]; k++)
            free(ro->sites[i][k]);
        free(ro->sites[i]);
    }
    free(ro);
}

static int shadow_get(int64_t *id, char *hash, size_t len, int64_t *since, tsl_store *st);

int tsl_rollout_load(tsl_rollout **out, tsl_store *st)
{
    tsl_rollout *ro = NULL;
    json_t *state = NULL;
    tsl_buf key = TSL_BUF_INIT;
    int64_t ids[TSL_STAGE_MAX_PLANS], shadow_id;
    char hash[HASHLEN];
    int err;

    *out = NULL;
    TSL_ARG(st);
    if (!(ro = calloc(1, sizeof *ro)))
        return tsl_oom();
    if ((err = state_read(&state, st)) < 0 || (err = tsl_rollout_state_key(&key, st)) < 0)
        goto done;
    snprintf(ro->state_key, sizeof ro->state_key, "%s", key.ptr);
    json_t *base = json_object_get(state, "*");
    if (base && (err = policy_store_compile(&ro->base, st, json_integer_value(base))) < 0)
        goto done;
    const char *site;
    json_t *v;
    json_object_foreach(state, site, v) {
        int64_t id = json_integer_value(v);
        size_t k;
        if (strcmp(site, "*") == 0)
            continue;
        for (k = 0; k < ro->nstaged; k++)
            if (ids[k] == id)
                break;
        if (k == ro->nstaged) {
            if (ro->nstaged == TSL_STAGE_MAX_PLANS - 1) {
                err = tsl_seterr(TSL_ELIMIT, "a staged rollout runs at most %d versions at once",
                                 TSL_STAGE_MAX_PLANS);
                goto done;
            }
            ids[k] = id;
            ro->nstaged++;
            if ((err = policy_store_compile(&ro->staged[k], st, id)) < 0)
                goto done;
            if (!(ro->sites[k] = calloc(json_object_size(state), sizeof *ro->sites[k]))) {
                err = tsl_oom();
                goto done;
            }
        }
        if (!(ro->sites[k][ro->nsites[k]] = strdup(site))) {
            err = tsl_oom();
            goto done;
        }
        ro->nsites[k]++;
    }
    if ((err = shadow_get(&shadow_id, hash, sizeof hash, NULL, st)) < 0)
        goto done;
    if (shadow_id && (err = policy_store_compile(&ro->shadow, st, shadow_id)) < 0)
        goto done;
    *out = ro;
    ro = NULL;
done:
    tsl_rollout_free(ro);
    json_decref(state);
    tsl_buf_free(&key);
    return err;
}

int tsl_rollout_bind(tsl_plan **out, const tsl_rollout *ro, tsl_snapshot *snap)
{
    tsl_plan *plan = NULL, *sub = NULL;
    const char **names = NULL;
    int err;

    *out = NULL;
    TSL_ARG(ro && snap);
    if ((err = tsl_plan_new(&plan, snap, ro->base)) < 0)
        return err;
    for (size_t k = 0; k < ro->nstaged; k++) {
        size_t n = 0;
        free(names);
        if (!(names = calloc(ro->nsites[k] + 1, sizeof *names))) {
            err = tsl_oom();
            goto done;
        }
        /* sites no longer in the inventory keep nothing staged */
        for (size_t i = 0; i < ro->nsites[k]; i++)
            if (snap_find_site(snap, ro->sites[k][i]) >= 0)
                names[n++] = ro->sites[k][i];
        if (!n)
            continue;
        tsl_plan *staged = NULL;
        if ((err = tsl_plan_new(&sub, snap, ro->staged[k])) < 0 ||
            (err = tsl_plan_new_staged(&staged, plan, sub, names, n)) < 0)
            goto done;
        tsl_plan_free(sub);
        sub = NULL;
        tsl_plan_free(plan);
        plan = staged;
    }
    *out = plan;
    plan = NULL;
done:
    free(names);
    tsl_plan_free(sub);
    tsl_plan_free(plan);
    return err;
}

int tsl_rollout_bind_shadow(tsl_plan **out, const tsl_rollout *ro, tsl_snapshot *snap)
{
    *out = NULL;
    TSL_ARG(ro && snap);
    return ro->shadow ? tsl_plan_new(out, snap, ro->shadow) : 0;
}

const char *tsl_rollout_shadow_version(const tsl_rollout *ro)
{
    return ro && ro->shadow ? tsl_policy_version(ro->shadow) : NULL;
}

const char *tsl_rollout_key(const tsl_rollout *ro)
{
    return ro->state_key;
}

int tsl_rollout_changed(bool *out, const tsl_rollout *ro, tsl_store *st)
{
    tsl_buf key = TSL_BUF_INIT;
    char hash[HASHLEN];
    int64_t id;
    int err;

    TSL_ARG(out && ro && st);
    *out = false;
    if ((err = tsl_rollout_state_key(&key, st)) < 0 ||
        (err = shadow_get(&id, hash, sizeof hash, NULL, st)) < 0)
        goto done;
    *out = strcmp(key.ptr, ro->state_key) != 0 ||
           strcmp(hash, ro->shadow ? tsl_policy_version(ro->shadow) : "") != 0;
done:
    tsl_buf_free(&key);
    return err;
}

int tsl_rollout_plan(tsl_plan **out, tsl_store *st, tsl_snapshot *snap)
{
    tsl_rollout *ro = NULL;
    int err;
    *out = NULL;
    if ((err = tsl_rollout_load(&ro, st)) == 0)
        err = tsl_rollout_bind(out, ro, snap);
    tsl_rollout_free(ro);
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

/* ------------------------------------------------------------------------
 * Shadow mode
 * ---------------------------------------------------------------------- */

/* The shadow's version id and hash; *id 0 when none. */
static int shadow_get(int64_t *id, char *hash, size_t len, int64_t *since, tsl_store *st)
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
    tsl_policy *pol = NULL;
    json_t *prior = NULL;
    sqlite3_stmt *q;
    char hash[HASHLEN] = "";
    int64_t id = 0;
    int err;

    TSL_ARG(st);
    now = now_or(now);
    if (version) {
        if ((err = tsl_rollout_resolve(&id, hash, sizeof hash, st, version)) < 0)
            return err;
        if ((err = policy_store_compile(&pol, st, id)) < 0)
            return err;
        tsl_policy_free(pol);
    }
    if ((err = tsl_store_begin(st)) < 0)
        return err;
    if ((err = state_read(&prior, st)) < 0)
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
    if ((err = history_add(NULL, st, now, version ? "shadow" : "unshadow", id, NULL, author, NULL,
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
    if ((err = shadow_get(&id, hash, sizeof hash, &since_t, st)) < 0)
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
