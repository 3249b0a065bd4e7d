/*
 * import_json.c - validating and upserting an inventory document: the one
 * path every import takes (JSON directly, CSV after import_csv.c turns its
 * rows into the same document).
 *
 * Everything is checked at this edge, with messages that name the origin,
 * the record and the field, so an admin can fix the file without reading
 * code.  The document is written in one transaction: on the first bad
 * record the caller rolls back and nothing of the document is kept.
 *
 * Upsert rules: records are keyed by site name, server name and client
 * GUID.  A field present in the record overwrites the stored one (null
 * clears it); an absent field keeps the stored value, or takes the default
 * for a new record.  A site's "subnets" and a server's "sites" are
 * replaced as a whole when the key is present.
 *
 * This file runs a document: top-level keys, the transaction, the four
 * sections (import_sections.c) and the notes an admin must hear (ignored
 * fields, subnet conflicts, unplaced clients).
 *
 * Used by: tsl_store_import_json, import_csv.c.  Needs: jansson, import.h,
 * store.h, conflicts.h.
 */
#include "conflicts.h"
#include "import.h"
#include "progress.h"
#include "store.h"
#include "suggest.h"
#include "tz.h"

#include <jansson.h>

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The keys a document may hold. */
static const char *const top_keys[] = {"sites", "task_servers", "clients",
                                       "connection_errors", "$schema"};

/* ------------------------------------------------------------------------
 * Notes: what an admin must hear about a document that imported
 * ---------------------------------------------------------------------- */

/* What --ignore-unknown let through, once per section and field. */
static int note_ignored(import_ctx *c)
{
    const char *tag;
    json_t *v;
    int err = 0;

    json_object_foreach(c->ignored, tag, v) {
        const char *slash = strchr(tag, '/');
        long long n = (long long)json_integer_value(json_array_get(v, 0));
        const char *first = json_string_value(json_array_get(v, 1));
        if (!slash || slash == tag)
            err = tsl_buf_printf(&c->notes, "%s: ignored unknown key \"%s\"\n", c->origin,
                                 slash ? slash + 1 : tag);
        else
            err = tsl_buf_printf(&c->notes,
                                 "%s: ignored unknown field \"%s\" in %lld %.*s record%s "
                                 "(first: %s)\n",
                                 c->origin, slash + 1, n, (int)(slash - tag), tag,
                                 n == 1 ? "" : "s", first ? first : "?");
        if (err < 0)
            break;
    }
    return err;
}

/* Subnets claimed by several sites, in the whole store after the import. */
static int note_conflicts(import_ctx *c)
{
    sqlite3_stmt *stmt = tsl_store_stmt(c->st, TSL_STMT_LOAD_SUBNETS);
    json_t *strs = NULL;
    conflict_claim *claims = NULL;
    subnet_conflicts cs = {NULL, 0, NULL};
    size_t n = 0, cap = 0;
    int err = 0, rc;

    if (!stmt)
        return TSL_ESTORE;
    /* the row's text is copied: jansson keeps it alive until the end */
    if (!(strs = json_array())) {
        err = tsl_oom();
        goto done;
    }
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        const char *site = (const char *)sqlite3_column_text(stmt, 0);
        const char *cidr = (const char *)sqlite3_column_text(stmt, 1);
        if (json_array_append_new(strs, json_string(site ? site : "")) < 0 ||
            json_array_append_new(strs, json_string(cidr ? cidr : "")) < 0) {
            err = tsl_oom();
            goto done;
        }
        n++;
    }
    if (rc != SQLITE_DONE) {
        err = tsl_store_err(c->st, "reading subnets");
        goto done;
    }
    cap = n;
    if (cap && !(claims = malloc(cap * sizeof *claims))) {
        err = tsl_oom();
        goto done;
    }
    for (size_t i = 0; i < n; i++)
        claims[i] = (conflict_claim){json_string_value(json_array_get(strs, 2 * i)),
                                     json_string_value(json_array_get(strs, 2 * i + 1))};
    if ((err = conflicts_find(&cs, claims, n)) < 0 || cs.n == 0)
        goto done;
    err = tsl_buf_printf(&c->notes,
                         "warning: %zu subnet%s claimed by more than one site (ITMS allows "
                         "it; the longest prefix wins, then the first site by name; `tsl "
                         "report subnet-conflicts` lists the clients each decides):\n",
                         cs.n, cs.n == 1 ? " is" : "s are");
    for (size_t i = 0; i < cs.n && i < 10 && err == 0; i++) {
        const subnet_conflict *k = &cs.v[i];
        err = tsl_buf_printf(&c->notes, "warning:   %s of site %s, also in", k->cidr, k->site);
        for (size_t o = 0; o < k->nothers && o < 5 && err == 0; o++)
            err = tsl_buf_printf(&c->notes, "%s %s (%s)", o ? "," : "", k->others[o].site,
                                 k->others[o].cidr);
        if (err == 0)
            err = tsl_buf_printf(&c->notes, "%s: its clients get %s\n",
                                 k->nothers > 5 ? ", ..." : "", k->site);
    }
    if (err == 0 && cs.n > 10)
        err = tsl_buf_printf(&c->notes, "warning:   ... and %zu more\n", cs.n - 10);

done:
    sqlite3_reset(stmt);
    conflicts_free(&cs);
    free(claims);
    json_decref(strs);
    return err;
}

/* Clients with neither an IP nor a site: the default logic has no site to
 * choose for them, and offers them every Task Server of the estate. */
static int note_unplaced(import_ctx *c)
{
    sqlite3_stmt *stmt = tsl_store_stmt(c->st, TSL_STMT_CLIENTS_UNPLACED);
    tsl_buf names = TSL_BUF_INIT;
    size_t n = 0;
    int err = 0, rc;

    if (!stmt)
        return TSL_ESTORE;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        const char *guid = (const char *)sqlite3_column_text(stmt, 0);
        const char *name = (const char *)sqlite3_column_text(stmt, 1);
        if (n < 20 && (err = tsl_buf_printf(&names, "%s%s", n ? ", " : "",
                                            name && *name ? name : guid ? guid : "?")) < 0)
            goto done;
        n++;
    }
    if (rc != SQLITE_DONE) {
        err = tsl_store_err(c->st, "reading clients");
        goto done;
    }
    if (n)
        err = tsl_buf_printf(&c->notes,
                             "warning: %zu client%s neither an IP nor a site, so the default "
                             "logic offers %s every Task Server: %s%s\n",
                             n, n == 1 ? " has" : "s have", n == 1 ? "it" : "them", names.ptr,
                             n > 20 ? ", ..." : "");

done:
    sqlite3_reset(stmt);
    tsl_buf_free(&names);
    return err;
}

/* ------------------------------------------------------------------------
 * Entry points
 * ---------------------------------------------------------------------- */

int tsl_import_apply_opt(tsl_store *st, json_t *doc, const char *origin, json_t *where,
                         const tsl_import_options *opt)
{
    import_ctx c;
    tsl_tz *tz = NULL;
    char g[80];
    int err;

    memset(&c, 0, sizeof c);
    c.st = st;
    c.origin = origin ? origin : "inventory";
    c.where = where;
    c.ignore_unknown = opt && opt->ignore_unknown;
    if (!(c.ignored = json_object())) {
        err = tsl_oom();
        goto done;
    }
    if ((err = tsl_tz_open(&tz, opt ? opt->timezone : NULL)) < 0)
        goto done;
    c.tz = tz;
    if (!json_is_object(doc)) {
        err = tsl_seterr(TSL_EINVALID, "%s: the document must be a JSON object (got %s)",
                         c.origin, import_show(doc, g, sizeof g));
        goto done;
    }
    /* a misspelt section ("site") would otherwise import nothing, silently */
    if ((err = import_check_keys(&c, doc, top_keys, NFIELDS(top_keys), "key", c.origin)) < 0)
        goto done;
    c.total = json_array_size(json_object_get(doc, "sites")) +
              json_array_size(json_object_get(doc, "task_servers")) +
              json_array_size(json_object_get(doc, "clients")) +
              json_array_size(json_object_get(doc, "connection_errors"));
    /* Sites first, then servers and clients that name them, then errors
     * that name clients and servers: a reference may point at a record of
     * the same document or one already in the store. */
    if ((err = import_sites(&c, doc)) < 0 || (err = import_servers(&c, doc)) < 0 ||
        (err = import_clients(&c, doc)) < 0 || (err = import_errors(&c, doc)) < 0)
        goto done;
    if (opt && opt->notes) {
        if ((err = note_ignored(&c)) < 0 || (err = note_conflicts(&c)) < 0 ||
            (err = note_unplaced(&c)) < 0)
            goto done;
        if (c.notes.len && (err = tsl_buf_put(opt->notes, c.notes.ptr, c.notes.len)) < 0)
            goto done;
    }

done:
    tsl_progress_tick("records", c.total, c.total); /* the end, whatever happened */
    tsl_tz_free(tz);
    json_decref(c.ignored);
    tsl_buf_free(&c.notes);
    return err;
}

int tsl_import_apply(tsl_store *st, json_t *doc, const char *origin, json_t *where)
{
    return tsl_import_apply_opt(st, doc, origin, where, NULL);
}

int tsl_store_import_json_opt(tsl_store *st, const char *text, size_t len, const char *origin,
                              const tsl_import_options *opt)
{
    json_t *doc = NULL;
    json_error_t jerr;
    bool in_txn = false;
    int err;

    TSL_ARG(st);
    TSL_ARG(text || len == 0);
    if (!origin)
        origin = "inventory";
    /* A byte-order mark, as Windows tools write it: accepted, as in CSV. */
    if (text && len >= 3 && !memcmp(text, "\xef\xbb\xbf", 3)) {
        text += 3;
        len -= 3;
    }
    /* Duplicate keys would silently drop one of the values. */
    doc = json_loadb(text ? text : "", len, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc) {
        if (json_error_code(&jerr) == json_error_out_of_memory)
            err = tsl_oom();
        else
            err = tsl_seterr(TSL_EINVALID, "%s:%d:%d: %s", origin, jerr.line, jerr.column,
                             jerr.text);
        goto done;
    }
    if ((err = tsl_store_begin(st)) < 0)
        goto done;
    in_txn = true;
    if ((err = tsl_import_apply_opt(st, doc, origin, NULL, opt)) < 0)
        goto done;
    in_txn = false;
    err = tsl_store_commit(st);

done:
    if (in_txn)
        tsl_store_rollback(st);
    json_decref(doc);
    return err;
}

int tsl_store_import_json(tsl_store *st, const char *text, size_t len, const char *origin)
{
    return tsl_store_import_json_opt(st, text, len, origin, NULL);
}
