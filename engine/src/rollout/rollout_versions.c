/*
 * rollout_versions.c - reading stored policy versions: resolving a name,
 * number or hash prefix to a version, its source, `tsl policy show` and
 * `tsl policy diff` (a unified line diff with 3 lines of context).
 *
 * Used by: `tsl policy show|diff`, rollout.c and the dry-run (resolving
 * the version named on the command line).  Needs: store.h, rollout_db.h.
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
