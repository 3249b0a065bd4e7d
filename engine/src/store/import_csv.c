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
#include "suggest.h"
#include "text.h"

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
    COL_INT,      /* "5000" or "5,000" */
    COL_REAL,
    COL_BOOL,
    COL_TIME,     /* digits: Unix seconds; otherwise a time as text */
    COL_CIDRS,    /* split on ';', ',' and white space */
    COL_NAMES,    /* split on ';' (site names may hold spaces) */
    COL_MASK,     /* sites: the subnet mask of the "Subnet" cell (dotted, or bits) */
    COL_SUFFIX    /* task servers: primary DNS suffix, appended to a bare host name */
} col_type;

/* One field and the column spellings that give it: ours first, then those
 * of ITMS reports and console exports.  Spellings compare ignoring case,
 * spaces, '_', '-' and '.', so "_ResourceGuid" and "Resource Guid" are one;
 * when two columns of a file give the same field, the earlier spelling in
 * this list wins and the other is ignored (and noted). */
typedef struct col_spec {
    const char *field;           /* the document field; helper columns: their own key */
    col_type type;
    bool required;               /* the header must have it */
    const char *const *names;    /* NULL-terminated */
} col_spec;

typedef struct kind_spec {
    const char *name;       /* the section, and the file name stem */
    const char *what;       /* "site", for messages */
    const col_spec *cols;
} kind_spec;

#define NAMES(...) ((const char *const[]){__VA_ARGS__, NULL})

static const col_spec site_cols[] = {
    {"name", COL_TEXT, true, NAMES("name", "Site", "Site Name")},
    {"subnets", COL_CIDRS, false, NAMES("subnets", "Subnet", "Subnets", "Subnet Address")},
    {"subnet_mask", COL_MASK, false, NAMES("subnet_mask", "Subnet Mask", "Mask", "Netmask")},
    {"country", COL_TEXT, false, NAMES("country", "Country Code")},
    {"latitude", COL_REAL, false, NAMES("latitude", "Lat")},
    {"longitude", COL_REAL, false, NAMES("longitude", "Lon", "Long")},
    {NULL, COL_TEXT, false, NULL}};

static const col_spec server_cols[] = {
    {"name", COL_TEXT, true, NAMES("name", "Computer Name", "Task Server", "Server Name",
                                   "Site Server")},
    {"host", COL_TEXT, false, NAMES("host", "Host Name", "FQDN")},
    {"dns_suffix", COL_SUFFIX, false, NAMES("dns_suffix", "Primary DNS Suffix", "DNS Suffix")},
    {"ip", COL_TEXT, false, NAMES("ip", "IP Address", "IP")},
    {"sites", COL_NAMES, false, NAMES("sites", "Site", "Site Name", "Sites")},
    {"registered", COL_BOOL, false, NAMES("registered", "Is Registered")},
    {"service", COL_TEXT, false, NAMES("service", "Service State", "Service Status")},
    {"capacity", COL_INT, false, NAMES("capacity", "Max Clients", "Maximum Clients")},
    {"connections", COL_INT, false, NAMES("connections", "Client Count", "Registered Clients")},
    {"response_ms", COL_INT, false, NAMES("response_ms", "Response Time", "Response")},
    {"last_heartbeat", COL_TIME, false, NAMES("last_heartbeat", "Heartbeat", "Last Contact")},
    {NULL, COL_TEXT, false, NULL}};

static const col_spec client_cols[] = {
    {"guid", COL_TEXT, true, NAMES("guid", "Resource Guid", "_ResourceGuid", "Client Guid")},
    {"name", COL_TEXT, false, NAMES("name", "Computer Name", "Computer", "Host Name")},
    {"ip", COL_TEXT, false, NAMES("ip", "IP Address", "IP")},
    {"department", COL_TEXT, false, NAMES("department", "Dept")},
    {"site", COL_TEXT, false, NAMES("site", "Site Name")},
    {NULL, COL_TEXT, false, NULL}};

static const col_spec error_cols[] = {
    {"client", COL_TEXT, true, NAMES("client", "Client Guid", "Resource Guid", "_ResourceGuid")},
    {"server", COL_TEXT, true, NAMES("server", "Task Server", "Server Name")},
    {"at", COL_TIME, true, NAMES("at", "Time", "Timestamp", "Date")},
    {"error", COL_TEXT, false, NAMES("error", "Message", "Error Message")},
    {NULL, COL_TEXT, false, NULL}};

static const kind_spec kinds_table[] = {
    {"sites", "site", site_cols},
    {"task_servers", "task server", server_cols},
    {"clients", "client", client_cols},
    {"connection_errors", "connection error", error_cols},
};
#define NKINDS (sizeof kinds_table / sizeof kinds_table[0])

/* A header cell as compared: lower case, without spaces, '_', '-', '.'. */
static void fold_column(const char *s, char *dst, size_t n)
{
    size_t k = 0;

    for (; *s && k + 1 < n; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == ' ' || ch == '_' || ch == '-' || ch == '.' || ch == '\t')
            continue;
        dst[k++] = (char)tolower(ch);
    }
    dst[k] = '\0';
}

/* The column of `kind` a header cell names: its index, and the rank of the
 * spelling (0 ours); -1 when none. */
static int match_column(const kind_spec *kind, const char *header, int *rank)
{
    char h[128], f[128];

    fold_column(header, h, sizeof h);
    if (!*h)
        return -1;
    for (int k = 0; kind->cols[k].field; k++)
        for (int r = 0; kind->cols[k].names[r]; r++) {
            fold_column(kind->cols[k].names[r], f, sizeof f);
            if (!strcmp(h, f)) {
                *rank = r;
                return k;
            }
        }
    return -1;
}

/* "guid, Resource Guid, _ResourceGuid" */
static void spellings(const col_spec *col, char *dst, size_t n)
{
    size_t off = 0;

    dst[0] = '\0';
    for (int r = 0; col->names[r] && off < n; r++) {
        int w = snprintf(dst + off, n - off, "%s\"%s\"", r ? ", " : "", col->names[r]);
        if (w < 0)
            break;
        off += (size_t)w;
    }
}

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
    size_t nul_field;   /* 1 + the field of the current record holding a NUL byte, or 0 */
    unsigned nul_line;
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
    r->nul_field = 0;
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
                if (!b[r->pos] && !r->nul_field) {
                    r->nul_field = r->nfields + 1;
                    r->nul_line = r->line;
                }
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
                /* a NUL would cut the cell short where C strings end */
                if (!b[r->pos] && !r->nul_field) {
                    r->nul_field = r->nfields + 1;
                    r->nul_line = r->line;
                }
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
    return tsl_utf8_valid((const char *)s, strlen((const char *)s));
}

static json_t *int_or_text(const char *s)
{
    const char *p = s;
    long long v;
    int64_t count;
    char *end;

    if (strchr(s, ',') && tsl_parse_count(s, &count))
        return json_integer((json_int_t)count);
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
    case COL_MASK:
    case COL_SUFFIX:
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

/* What the files of one import build: the document, its locators, the
 * sites seen so far (rows of one site merge), and the notes. */
typedef struct csv_ctx {
    json_t *doc, *where;
    json_t *site_rows;  /* folded site name -> index in doc.sites */
    tsl_buf notes;
} csv_ctx;

/* "255.255.240.0", "20" or "/20" -> 20 (IPv4 bits); -1 when not a mask,
 * -2 when dotted but not contiguous. */
static int mask_bits(const char *m)
{
    unsigned a, b, c, d;
    char tail;
    uint32_t v;
    int bits = 0;

    if (*m == '/')
        m++;
    if (strchr(m, '.') == NULL) {
        int64_t n;
        if (!tsl_parse_count(m, &n) || strchr(m, ',') || n > 32)
            return -1;
        return (int)n;
    }
    if (sscanf(m, "%3u.%3u.%3u.%3u%c", &a, &b, &c, &d, &tail) != 4 || a > 255 || b > 255 ||
        c > 255 || d > 255)
        return -1;
    v = a << 24 | b << 16 | c << 8 | d;
    while (bits < 32 && (v & (UINT32_C(1) << (31 - bits))))
        bits++;
    if (bits < 32 && (v << bits) != 0)
        return -2;
    return bits;
}

/* Sites: a "Subnet" address plus a "Subnet Mask" becomes "a.b.c.d/n". */
static int apply_mask(json_t *row, const char *loc)
{
    json_t *mask = json_object_get(row, "subnet_mask"), *subnets = json_object_get(row, "subnets");
    const char *m = json_string_value(mask), *net;
    char cidr[96];
    const char *slash;
    int bits;

    if (!mask) {
        for (size_t i = 0; i < json_array_size(subnets); i++) {
            net = json_string_value(json_array_get(subnets, i));
            if (net && !strchr(net, '/'))
                return tsl_seterr(TSL_EINVALID,
                                  "%s: field \"Subnet\": \"%.60s\" has no prefix length: write "
                                  "it as %.60s/16, or add a \"Subnet Mask\" column",
                                  loc, net, net);
        }
        return 0;
    }
    if (json_array_size(subnets) != 1)
        return tsl_seterr(TSL_EINVALID,
                          "%s: field \"Subnet Mask\": give exactly one subnet in the row's "
                          "\"Subnet\" cell (got %zu)",
                          loc, json_array_size(subnets));
    bits = mask_bits(m);
    if (bits == -2)
        return tsl_seterr(TSL_EINVALID,
                          "%s: field \"Subnet Mask\": \"%.60s\" is not contiguous (its one bits "
                          "must all come first, as in 255.255.240.0)",
                          loc, m);
    if (bits < 0)
        return tsl_seterr(TSL_EINVALID,
                          "%s: field \"Subnet Mask\": \"%.60s\" is not a mask like "
                          "255.255.0.0 or a prefix length like 16",
                          loc, m);
    net = json_string_value(json_array_get(subnets, 0));
    if ((slash = strchr(net, '/')) != NULL) {
        if (atoi(slash + 1) != bits || !slash[1])
            return tsl_seterr(TSL_EINVALID,
                              "%s: field \"Subnet Mask\": %s says /%d but the subnet is "
                              "written %.60s",
                              loc, m, bits, net);
        snprintf(cidr, sizeof cidr, "%.60s", net);
    } else {
        snprintf(cidr, sizeof cidr, "%.60s/%d", net, bits);
    }
    if (json_array_set_new(subnets, 0, json_string(cidr)) < 0 ||
        json_object_del(row, "subnet_mask") < 0)
        return tsl_oom();
    return 0;
}

/* Task servers: a bare host name (or, without one, the server's name)
 * plus the primary DNS suffix becomes the host's FQDN. */
static int apply_suffix(json_t *row)
{
    const char *suffix = json_string_value(json_object_get(row, "dns_suffix"));
    const char *host = json_string_value(json_object_get(row, "host"));
    char fqdn[600];

    if (!suffix)
        return 0;
    if (!host)
        host = json_string_value(json_object_get(row, "name"));
    while (*suffix == '.')
        suffix++;
    if (host && *suffix && !strchr(host, '.')) {
        snprintf(fqdn, sizeof fqdn, "%.255s.%.255s", host, suffix);
        if (json_object_set_new(row, "host", json_string(fqdn)) < 0)
            return tsl_oom();
    }
    return json_object_del(row, "dns_suffix") < 0 ? tsl_oom() : 0;
}

/* Sites: rows naming a site already seen add their subnets to it; its
 * other fields must agree.  *merged true when the row was taken in. */
static int merge_site(csv_ctx *x, json_t *row, const char *loc, bool *merged)
{
    json_t *rows = json_object_get(x->doc, "sites"), *first, *locs;
    const char *name = json_string_value(json_object_get(row, "name")), *key;
    char folded[300];
    size_t n, i;
    json_t *v;

    *merged = false;
    if (!name)
        return 0;
    for (n = 0; name[n] && n + 1 < sizeof folded; n++)
        folded[n] = (char)tolower((unsigned char)name[n]);
    folded[n] = '\0';
    if (!(v = json_object_get(x->site_rows, folded))) {
        if (json_object_set_new(x->site_rows, folded,
                                json_integer((json_int_t)json_array_size(rows))) < 0)
            return tsl_oom();
        return 0;
    }
    i = (size_t)json_integer_value(v);
    first = json_array_get(rows, i);
    locs = json_object_get(x->where, "sites");
    json_object_foreach(row, key, v) {
        json_t *had = json_object_get(first, key);
        if (!strcmp(key, "name"))
            continue;
        if (!strcmp(key, "subnets")) {
            if (!had) {
                if (json_object_set(first, key, v) < 0)
                    return tsl_oom();
            } else if (json_array_extend(had, v) < 0) {
                return tsl_oom();
            }
            continue;
        }
        if (!had) {
            if (json_object_set(first, key, v) < 0)
                return tsl_oom();
        } else if (!json_equal(had, v)) {
            return tsl_seterr(TSL_EINVALID,
                              "%s: site \"%.80s\": field \"%s\" differs from %s, which names "
                              "the same site",
                              loc, name, key, json_string_value(json_array_get(locs, i)));
        }
    }
    *merged = true;
    return 0;
}

/* "ignored columns: "OS", "IP Adress" (did you mean "IP Address"?)" */
static int note_column(tsl_buf *list, const kind_spec *kind, const char *header)
{
    const char *all[64];
    size_t n = 0;
    const char *hint;
    int err;

    for (int k = 0; kind->cols[k].field; k++)
        for (int r = 0; kind->cols[k].names[r] && n < 64; r++)
            all[n++] = kind->cols[k].names[r];
    hint = tsl_suggest(header, all, n, sizeof *all);
    /* exports carry many columns of their own ("OS Name" is not a typo of
     * "Host Name"): only a near miss is worth a hint */
    if (hint && tsl_edit_distance(header, hint) > (strlen(header) >= 10 ? 2 : 1))
        hint = NULL;
    err = tsl_buf_printf(list, "%s\"%.80s\"", list->len ? ", " : "", header);
    if (err == 0 && hint)
        err = tsl_buf_printf(list, " (did you mean \"%s\"?)", hint);
    return err;
}

/* Adds the rows of one file to the doc and their locators to `where`. */
static int import_file(csv_ctx *x, const char *path, const kind_spec *kind)
{
    csv_reader r;
    json_t *rows, *locs;
    int *colmap = NULL;    /* header column -> index in kind->cols, or -1 */
    int *ranks = NULL;
    int best[16];          /* kind->cols index -> the header column giving it, or -1 */
    tsl_buf ignored = TSL_BUF_INIT;
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
    rows = json_object_get(x->doc, kind->name);
    locs = json_object_get(x->where, kind->name);

    /* The header: the first non-blank record. */
    do {
        if ((rc = next_record(&r, &line)) < 0) {
            err = rc;
            goto done;
        }
    } while (rc == 1 && blank_record(&r));
    if (rc == 0) {
        err = tsl_seterr(TSL_EINVALID, "%s: no header row (expected columns like \"%s\")", path,
                         kind->cols[0].field);
        goto done;
    }
    if (r.nul_field) {
        err = tsl_seterr(TSL_EINVALID, "%s line %u: header column %zu holds a NUL byte", path,
                         r.nul_line, r.nul_field);
        goto done;
    }
    ncols = r.nfields;
    if (!(colmap = malloc(ncols * sizeof *colmap)) || !(ranks = malloc(ncols * sizeof *ranks))) {
        err = tsl_oom();
        goto done;
    }
    for (k = 0; k < sizeof best / sizeof *best; k++)
        best[k] = -1;
    for (i = 0; i < ncols; i++) {
        char *h = trim(r.fields[i]);
        int col, rank = 0;

        if (!valid_utf8((const unsigned char *)h)) {
            err = tsl_seterr(TSL_EINVALID, "%s line %u: header column %zu is not valid UTF-8",
                             path, line, i + 1);
            goto done;
        }
        colmap[i] = col = match_column(kind, h, &rank);
        ranks[i] = rank;
        if (col < 0) {
            if (*h && (err = note_column(&ignored, kind, h)) < 0)
                goto done;
            continue;
        }
        if (best[col] >= 0 && ranks[best[col]] == rank) {
            err = tsl_seterr(TSL_EINVALID, "%s line %u: column \"%s\" appears twice (columns %d "
                                           "and %zu)",
                             path, line, h, best[col] + 1, i + 1);
            goto done;
        }
        if (best[col] < 0 || rank < ranks[best[col]]) {
            if (best[col] >= 0 &&
                (err = tsl_buf_printf(&ignored, "%s\"%s\" (\"%s\" gives the same field)",
                                      ignored.len ? ", " : "", r.fields[best[col]], h)) < 0)
                goto done;
            best[col] = (int)i;
        } else if ((err = tsl_buf_printf(&ignored, "%s\"%s\" (\"%s\" gives the same field)",
                                         ignored.len ? ", " : "", h,
                                         r.fields[best[col]])) < 0) {
            goto done;
        }
    }
    for (k = 0; kind->cols[k].field; k++) {
        char accepted[300];
        if (!kind->cols[k].required || best[k] >= 0)
            continue;
        spellings(&kind->cols[k], accepted, sizeof accepted);
        err = tsl_seterr(TSL_EINVALID,
                         "%s line %u: no column gives the %s's \"%s\" (accepted, in any case: "
                         "%s)",
                         path, line, kind->what, kind->cols[k].field, accepted);
        goto done;
    }
    if (ignored.len &&
        (err = tsl_buf_printf(&x->notes, "%s: ignored columns: %s\n", path, ignored.ptr)) < 0)
        goto done;

    /* The rows. */
    while ((rc = next_record(&r, &line)) == 1) {
        json_t *row;
        char loc[512];
        bool merged = false;

        if (blank_record(&r) && !r.nul_field)
            continue;
        snprintf(loc, sizeof loc, "%s line %u", path, line);
        if (r.nul_field) {
            int col = r.nul_field <= ncols ? colmap[r.nul_field - 1] : -1;
            err = tsl_seterr(TSL_EINVALID, "%s line %u: field %zu (%s%s%s) holds a NUL byte",
                             path, r.nul_line, r.nul_field, col >= 0 ? "\"" : "",
                             col >= 0 ? kind->cols[col].field : "an ignored column",
                             col >= 0 ? "\"" : "");
            goto done;
        }
        if (r.nfields != ncols) {
            err = tsl_seterr(TSL_EINVALID, "%s line %u: %zu fields, but the header has %zu",
                             path, line, r.nfields, ncols);
            goto done;
        }
        if (!(row = json_object())) {
            err = tsl_oom();
            goto done;
        }
        for (i = 0; i < ncols; i++) {
            const col_spec *col;
            char *cell;
            json_t *v;

            if (colmap[i] < 0 || best[colmap[i]] != (int)i)
                continue;
            col = &kind->cols[colmap[i]];
            cell = trim(r.fields[i]);
            /* An empty cell is an unknown value: the field is left out. */
            if (!*cell)
                continue;
            if (!valid_utf8((const unsigned char *)cell)) {
                err = tsl_seterr(TSL_EINVALID, "%s: field \"%s\" is not valid UTF-8", loc,
                                 col->field);
                json_decref(row);
                goto done;
            }
            if (!(v = cell_value(cell, col->type)) || json_object_set_new(row, col->field, v) < 0) {
                err = tsl_oom();
                json_decref(row);
                goto done;
            }
        }
        if ((kind->cols == site_cols && ((err = apply_mask(row, loc)) < 0 ||
                                         (err = merge_site(x, row, loc, &merged)) < 0)) ||
            (kind->cols == server_cols && (err = apply_suffix(row)) < 0)) {
            json_decref(row);
            goto done;
        }
        if (merged) {
            json_decref(row);
            continue;
        }
        if (json_array_append_new(rows, row) < 0 ||
            json_array_append_new(locs, json_string(loc)) < 0) {
            err = tsl_oom();
            goto done;
        }
    }
    err = rc < 0 ? rc : 0;

done:
    tsl_buf_free(&ignored);
    free(colmap);
    free(ranks);
    free(r.fields);
    free(r.buf);
    return err;
}

/* ------------------------------------------------------------------------
 * Entry point
 * ---------------------------------------------------------------------- */

int tsl_store_import_csv_opt(tsl_store *st, const char *const *paths, const char *const *kinds,
                             size_t n, const tsl_import_options *opt)
{
    csv_ctx x;
    tsl_import_options o;
    tsl_buf later = TSL_BUF_INIT;
    bool in_txn = false;
    size_t i;
    int err = 0;

    TSL_ARG(st);
    TSL_ARG(paths || n == 0);
    memset(&x, 0, sizeof x);
    if (!(x.doc = json_object()) || !(x.where = json_object()) ||
        !(x.site_rows = json_object())) {
        err = tsl_oom();
        goto done;
    }
    for (i = 0; i < NKINDS; i++) {
        if (json_object_set_new(x.doc, kinds_table[i].name, json_array()) < 0 ||
            json_object_set_new(x.where, kinds_table[i].name, json_array()) < 0 ||
            !json_object_get(x.doc, kinds_table[i].name) ||
            !json_object_get(x.where, kinds_table[i].name)) {
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
        if ((err = import_file(&x, paths[i], kind)) < 0)
            goto done;
    }
    /* Every file in one transaction: a bad row in the last file keeps the
     * first ones out too.  The column notes come first, then the apply's. */
    if (opt)
        o = *opt;
    else
        memset(&o, 0, sizeof o);
    o.notes = opt && opt->notes ? &later : NULL;
    if ((err = tsl_store_begin(st)) < 0)
        goto done;
    in_txn = true;
    if ((err = tsl_import_apply_opt(st, x.doc, "CSV import", x.where, &o)) < 0)
        goto done;
    in_txn = false;
    if ((err = tsl_store_commit(st)) < 0)
        goto done;
    if (opt && opt->notes &&
        ((x.notes.len && (err = tsl_buf_put(opt->notes, x.notes.ptr, x.notes.len)) < 0) ||
         (later.len && (err = tsl_buf_put(opt->notes, later.ptr, later.len)) < 0)))
        goto done;

done:
    if (in_txn)
        tsl_store_rollback(st);
    tsl_buf_free(&later);
    tsl_buf_free(&x.notes);
    json_decref(x.site_rows);
    json_decref(x.where);
    json_decref(x.doc);
    return err;
}

int tsl_store_import_csv(tsl_store *st, const char *const *paths, const char *const *kinds,
                         size_t n)
{
    return tsl_store_import_csv_opt(st, paths, kinds, n, NULL);
}
