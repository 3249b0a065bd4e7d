/*
 * import_csv.c - importing ITMS report exports: one CSV file per table
 * (sites, task_servers, clients, connection_errors).
 *
 * The rows are turned into the same document an inventory JSON file holds
 * and handed to tsl_import_apply (import_json.c), so there is exactly one
 * validation path; a parallel "where" document names each record by file
 * and line ("clients.csv line 7") for the messages.
 *
 * The reader follows RFC 4180: a header row naming the columns (any order,
 * unknown ones ignored), fields quoted with double quotes where they hold
 * commas, quotes ("" inside) or line breaks; CRLF or LF line ends; a UTF-8
 * byte-order mark is skipped.  Cells are parsed in place in the file
 * buffer (unquoting never makes a field longer).
 *
 * Used by: tsl_store_import_csv.  Needs: jansson, store.h.
 */
#include "store.h"

#include <jansson.h>

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Refuse files past this size rather than read them all into memory. */
#define CSV_MAX_BYTES (512u * 1024u * 1024u)

/* How a cell becomes a JSON value.  A cell that does not parse as its type
 * stays a string, so the shared validation reports it with the text. */
typedef enum col_type {
    COL_TEXT,
    COL_INT,
    COL_REAL,
    COL_BOOL,
    COL_TIME,     /* digits: Unix seconds; otherwise ISO-8601 text */
    COL_CIDRS,    /* split on ';', ',' and white space */
    COL_NAMES     /* split on ';' (site names may hold spaces) */
} col_type;

typedef struct col_spec {
    const char *name;
    col_type type;
    bool required;  /* the header must have it */
} col_spec;

typedef struct kind_spec {
    const char *name;       /* the section, and the file name stem */
    const col_spec *cols;
} kind_spec;

static const col_spec site_cols[] = {
    {"name", COL_TEXT, true},      {"subnets", COL_CIDRS, false},
    {"country", COL_TEXT, false},  {"latitude", COL_REAL, false},
    {"longitude", COL_REAL, false}, {NULL, COL_TEXT, false}};

static const col_spec server_cols[] = {
    {"name", COL_TEXT, true},          {"host", COL_TEXT, false},
    {"ip", COL_TEXT, false},           {"sites", COL_NAMES, false},
    {"registered", COL_BOOL, false},   {"service", COL_TEXT, false},
    {"capacity", COL_INT, false},      {"connections", COL_INT, false},
    {"response_ms", COL_INT, false},   {"last_heartbeat", COL_TIME, false},
    {NULL, COL_TEXT, false}};

static const col_spec client_cols[] = {
    {"guid", COL_TEXT, true},        {"name", COL_TEXT, false},
    {"ip", COL_TEXT, false},         {"department", COL_TEXT, false},
    {"site", COL_TEXT, false},       {NULL, COL_TEXT, false}};

static const col_spec error_cols[] = {
    {"client", COL_TEXT, true}, {"server", COL_TEXT, true},
    {"at", COL_TIME, true},     {"error", COL_TEXT, false},
    {NULL, COL_TEXT, false}};

static const kind_spec kinds_table[] = {
    {"sites", site_cols},
    {"task_servers", server_cols},
    {"clients", client_cols},
    {"connection_errors", error_cols},
};
#define NKINDS (sizeof kinds_table / sizeof kinds_table[0])

/* ------------------------------------------------------------------------
 * Reading
 * ---------------------------------------------------------------------- */

typedef struct csv_reader {
    const char *path;
    char *buf;          /* the file, NUL-terminated, unquoted in place */
    size_t pos, len;
    unsigned line;      /* physical line at pos */
    char **fields;      /* the current record's cells, pointing into buf */
    size_t nfields, cap;
} csv_reader;

static int push_field(csv_reader *r, char *field)
{
    if (r->nfields == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        char **nf = realloc(r->fields, cap * sizeof *nf);
        if (!nf)
            return tsl_oom();
        r->fields = nf;
        r->cap = cap;
    }
    r->fields[r->nfields++] = field;
    return 0;
}

/* Reads one record.  1 when a record was read (its first line in
 * *out_line), 0 at the end of the file, negative on a malformed file. */
static int next_record(csv_reader *r, unsigned *out_line)
{
    char *b = r->buf;
    int err;

    r->nfields = 0;
    *out_line = r->line;
    if (r->pos >= r->len)
        return 0;
    for (;;) {
        size_t w = r->pos;
        char *start = b + w;
        char delim;

        if (b[r->pos] == '"') {
            unsigned qline = r->line;
            r->pos++;
            for (;;) {
                if (r->pos >= r->len)
                    return tsl_seterr(TSL_EINVALID,
                                      "%s line %u: quoted field is never closed", r->path,
                                      qline);
                if (b[r->pos] == '"') {
                    if (b[r->pos + 1] != '"') {
                        r->pos++;
                        break;
                    }
                    r->pos++;
                }
                if (b[r->pos] == '\n')
                    r->line++;
                b[w++] = b[r->pos++];
            }
            delim = b[r->pos];
            if (r->pos < r->len && delim != ',' && delim != '\n' && delim != '\r')
                return tsl_seterr(TSL_EINVALID,
                                  "%s line %u: unexpected text after a closing quote",
                                  r->path, r->line);
        } else {
            while (r->pos < r->len && b[r->pos] != ',' && b[r->pos] != '\n' &&
                   b[r->pos] != '\r') {
                if (b[r->pos] == '"')
                    return tsl_seterr(TSL_EINVALID,
                                      "%s line %u: a quote inside an unquoted field (quote "
                                      "the whole field and double the inner quotes)",
                                      r->path, r->line);
                b[w++] = b[r->pos++];
            }
            delim = r->pos < r->len ? b[r->pos] : '\0';
        }
        /* w <= pos: the terminator only overwrites bytes already read. */
        b[w] = '\0';
        if ((err = push_field(r, start)) < 0)
            return err;
        if (r->pos >= r->len)
            return 1;
        r->pos++;
        if (delim == ',')
            continue;
        if (delim == '\r' && r->pos < r->len && b[r->pos] == '\n')
            r->pos++;
        r->line++;
        return 1;
    }
}

/* A line holding nothing but white space. */
static bool blank_record(const csv_reader *r)
{
    return r->nfields == 1 && r->fields[0][strspn(r->fields[0], " \t")] == '\0';
}

/* ------------------------------------------------------------------------
 * Cells to JSON
 * ---------------------------------------------------------------------- */

static char *trim(char *s)
{
    char *e;

    while (*s == ' ' || *s == '\t')
        s++;
    e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
        *--e = '\0';
    return s;
}

static bool valid_utf8(const unsigned char *s)
{
    while (*s) {
        unsigned c = *s, n, i, cp;

        if (c < 0x80) {
            s++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        for (i = 1; i <= n; i++) {
            if ((s[i] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i] & 0x3f);
        }
        if ((n == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
            (n == 3 && (cp < 0x10000 || cp > 0x10ffff)))
            return false;
        s += n + 1;
    }
    return true;
}

static json_t *int_or_text(const char *s)
{
    const char *p = s;
    long long v;
    char *end;

    if (*p == '-' || *p == '+')
        p++;
    if (!isdigit((unsigned char)*p))
        return json_string(s);
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || *end)
        return json_string(s);
    return json_integer((json_int_t)v);
}

static json_t *real_or_text(const char *s)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno || *end || end == s || !isfinite(v))
        return json_string(s);
    return json_real(v);
}

static json_t *bool_or_text(const char *s)
{
    if (!strcasecmp(s, "true") || !strcasecmp(s, "yes") || !strcmp(s, "1"))
        return json_true();
    if (!strcasecmp(s, "false") || !strcasecmp(s, "no") || !strcmp(s, "0"))
        return json_false();
    return json_string(s);
}

static json_t *split(char *s, const char *seps)
{
    json_t *arr = json_array();
    char *tok, *save = NULL;

    if (!arr)
        return NULL;
    for (tok = strtok_r(s, seps, &save); tok; tok = strtok_r(NULL, seps, &save)) {
        tok = trim(tok);
        if (*tok && json_array_append_new(arr, json_string(tok)) < 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

static json_t *cell_value(char *s, col_type type)
{
    switch (type) {
    case COL_INT:
        return int_or_text(s);
    case COL_REAL:
        return real_or_text(s);
    case COL_BOOL:
        return bool_or_text(s);
    case COL_TIME: {
        const char *p = s;
        while (isdigit((unsigned char)*p))
            p++;
        return *p ? json_string(s) : int_or_text(s);
    }
    case COL_CIDRS:
        return split(s, "; ,\t");
    case COL_NAMES:
        return split(s, ";");
    case COL_TEXT:
    default:
        return json_string(s);
    }
}

/* ------------------------------------------------------------------------
 * One file
 * ---------------------------------------------------------------------- */

static const kind_spec *find_kind(const char *name)
{
    size_t i;

    for (i = 0; i < NKINDS; i++)
        if (!strcasecmp(kinds_table[i].name, name))
            return &kinds_table[i];
    return NULL;
}

/* "…/clients.csv" -> the clients kind. */
static const kind_spec *kind_from_path(const char *path)
{
    const char *base = strrchr(path, '/');
    char stem[64];
    size_t n;

    base = base ? base + 1 : path;
    n = strlen(base);
    if (n > 4 && !strcasecmp(base + n - 4, ".csv"))
        n -= 4;
    if (n >= sizeof stem)
        return NULL;
    memcpy(stem, base, n);
    stem[n] = '\0';
    return find_kind(stem);
}

/* Adds the rows of one file to the doc and their locators to `where`. */
static int import_file(json_t *doc, json_t *where, const char *path, const kind_spec *kind)
{
    csv_reader r;
    json_t *rows, *locs;
    int *colmap = NULL;    /* header column -> index in kind->cols, or -1 */
    size_t ncols = 0, i, k;
    unsigned line;
    int err, rc;

    memset(&r, 0, sizeof r);
    r.path = path;
    r.line = 1;
    if ((err = tsl_file_read(&r.buf, &r.len, path, CSV_MAX_BYTES)) < 0)
        goto done;
    if (r.len >= 3 && !memcmp(r.buf, "\xef\xbb\xbf", 3))
        r.pos = 3;
    rows = json_object_get(doc, kind->name);
    locs = json_object_get(where, kind->name);

    /* The header: the first non-blank record. */
    do {
        if ((rc = next_record(&r, &line)) < 0) {
            err = rc;
            goto done;
        }
    } while (rc == 1 && blank_record(&r));
    if (rc == 0) {
        err = tsl_seterr(TSL_EINVALID, "%s: no header row (expected columns like \"%s\")", path,
                         kind->cols[0].name);
        goto done;
    }
    ncols = r.nfields;
    if (!(colmap = malloc(ncols * sizeof *colmap))) {
        err = tsl_oom();
        goto done;
    }
    for (i = 0; i < ncols; i++) {
        char *h = trim(r.fields[i]);
        colmap[i] = -1;
        for (k = 0; kind->cols[k].name; k++) {
            if (strcasecmp(h, kind->cols[k].name))
                continue;
            for (size_t j = 0; j < i; j++)
                if (colmap[j] == (int)k) {
                    err = tsl_seterr(TSL_EINVALID, "%s line %u: column \"%s\" appears twice",
                                     path, line, kind->cols[k].name);
                    goto done;
                }
            colmap[i] = (int)k;
        }
    }
    for (k = 0; kind->cols[k].name; k++) {
        bool found = false;
        if (!kind->cols[k].required)
            continue;
        for (i = 0; i < ncols; i++)
            found = found || colmap[i] == (int)k;
        if (!found) {
            err = tsl_seterr(TSL_EINVALID, "%s line %u: missing column \"%s\" in the header",
                             path, line, kind->cols[k].name);
            goto done;
        }
    }

    /* The rows. */
    while ((rc = next_record(&r, &line)) == 1) {
        json_t *row;
        char loc[512];

        if (blank_record(&r))
            continue;
        if (r.nfields != ncols) {
            err = tsl_seterr(TSL_EINVALID, "%s line %u: %zu fields, but the header has %zu",
                             path, line, r.nfields, ncols);
            goto done;
        }
        snprintf(loc, sizeof loc, "%s line %u", path, line);
        if (!(row = json_object()) || json_array_append_new(rows, row) < 0 ||
            json_array_append_new(locs, json_string(loc)) < 0) {
            err = tsl_oom();
            goto done;
        }
        for (i = 0; i < ncols; i++) {
            const col_spec *col;
            char *cell;
            json_t *v;

            if (colmap[i] < 0)
                continue;
            col = &kind->cols[colmap[i]];
            cell = trim(r.fields[i]);
            /* An empty cell is an unknown value: the field is left out. */
            if (!*cell)
                continue;
            if (!valid_utf8((const unsigned char *)cell)) {
                err = tsl_seterr(TSL_EINVALID, "%s: field \"%s\" is not valid UTF-8", loc,
                                 col->name);
                goto done;
            }
            if (!(v = cell_value(cell, col->type)) || json_object_set_new(row, col->name, v) < 0) {
                err = tsl_oom();
                goto done;
            }
        }
    }
    err = rc < 0 ? rc : 0;

done:
    free(colmap);
    free(r.fields);
    free(r.buf);
    return err;
}

/* ------------------------------------------------------------------------
 * Entry point
 * ---------------------------------------------------------------------- */

int tsl_store_import_csv(tsl_store *st, const char *const *paths, const char *const *kinds,
                         size_t n)
{
    json_t *doc = NULL, *where = NULL;
    bool in_txn = false;
    size_t i;
    int err = 0;

    TSL_ARG(st);
    TSL_ARG(paths || n == 0);
    if (!(doc = json_object()) || !(where = json_object())) {
        err = tsl_oom();
        goto done;
    }
    for (i = 0; i < NKINDS; i++) {
        if (json_object_set_new(doc, kinds_table[i].name, json_array()) < 0 ||
            json_object_set_new(where, kinds_table[i].name, json_array()) < 0 ||
            !json_object_get(doc, kinds_table[i].name) ||
            !json_object_get(where, kinds_table[i].name)) {
            err = tsl_oom();
            goto done;
        }
    }
    for (i = 0; i < n; i++) {
        const char *kname = kinds ? kinds[i] : NULL;
        const kind_spec *kind = kname ? find_kind(kname) : kind_from_path(paths[i]);

        if (!kind) {
            if (kname)
                err = tsl_seterr(TSL_EINVALID,
                                 "%s: unknown kind \"%s\" (expected sites, task_servers, "
                                 "clients or connection_errors)",
                                 paths[i], kname);
            else
                err = tsl_seterr(TSL_EINVALID,
                                 "%s: cannot tell which table the file holds from its name: "
                                 "name it sites.csv, task_servers.csv, clients.csv or "
                                 "connection_errors.csv, or give its kind",
                                 paths[i]);
            goto done;
        }
        if ((err = import_file(doc, where, paths[i], kind)) < 0)
            goto done;
    }
    /* Every file in one transaction: a bad row in the last file keeps the
     * first ones out too. */
    if ((err = tsl_store_begin(st)) < 0)
        goto done;
    in_txn = true;
    if ((err = tsl_import_apply(st, doc, "CSV import", where)) < 0)
        goto done;
    in_txn = false;
    err = tsl_store_commit(st);

done:
    if (in_txn)
        tsl_store_rollback(st);
    json_decref(where);
    json_decref(doc);
    return err;
}
