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
 * Used by: tsl_store_import_json, import_csv.c.  Needs: jansson, store.h,
 * tsl_ip_parse / tsl_cidr_parse (ip.c).
 */
#include "conflicts.h"
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

/* Longest name, GUID, host or other short text we accept. */
#define TEXT_MAX 255
/* Longest connection error text. */
#define ERROR_TEXT_MAX 1024
/* ITMS caps registrations per Task Server at 5,000. */
#define DEFAULT_CAPACITY 5000

/* What a field lookup found; negative values are errors. */
enum { FIELD_ABSENT = 0, FIELD_NULL = 1, FIELD_SET = 2 };

typedef struct import_ctx {
    tsl_store *st;
    const char *origin;
    json_t *where;      /* per-record locators (CSV) or NULL */
    const char *section;
    char rec[400];      /* the current record, for messages */
    bool ignore_unknown;
    const tsl_tz *tz;   /* times without a zone; NULL: UTC */
    json_t *ignored;    /* "section/field" -> [count, first record] */
    tsl_buf notes;      /* warnings, handed to the caller on success */
    uint64_t done, total; /* records, for the progress listener */
} import_ctx;

/* The fields each record may carry, the keys a document may hold. */
static const char *const top_keys[] = {"sites", "task_servers", "clients",
                                       "connection_errors", "$schema"};
static const char *const site_fields[] = {"name", "subnets", "country", "latitude",
                                          "longitude"};
static const char *const server_fields[] = {"name",        "host",       "ip",
                                            "sites",       "registered", "service",
                                            "capacity",    "connections", "response_ms",
                                            "last_heartbeat"};
static const char *const client_fields[] = {"guid", "name", "ip", "department", "site"};
static const char *const error_fields[] = {"client", "server", "at", "error"};
#define NFIELDS(a) (sizeof a / sizeof a[0])

/* ------------------------------------------------------------------------
 * Messages
 * ---------------------------------------------------------------------- */

/* The locator of record i of the current section, without the key. */
static void locate(const import_ctx *c, size_t i, char *dst, size_t n)
{
    const char *w = NULL;

    if (c->where)
        w = json_string_value(json_array_get(json_object_get(c->where, c->section), i));
    if (w)
        snprintf(dst, n, "%s", w);
    else
        snprintf(dst, n, "%s: %s[%zu]", c->origin, c->section, i);
}

/* Names the current record: "inventory.json: sites[0] \"London\"", or the
 * CSV locator "sites.csv line 2". */
static void name_record(import_ctx *c, size_t i, const json_t *rec, const char *keyfield)
{
    const char *key = keyfield ? json_string_value(json_object_get(rec, keyfield)) : NULL;
    char loc[300];

    locate(c, i, loc, sizeof loc);
    if (!c->where && key && *key)
        snprintf(c->rec, sizeof c->rec, "%s \"%.80s\"", loc, key);
    else
        snprintf(c->rec, sizeof c->rec, "%s", loc);
}

/* A short rendering of a JSON value for "(got ...)". */
static const char *show(const json_t *v, char *dst, size_t n)
{
    char *s;

    if (!v) {
        snprintf(dst, n, "nothing");
        return dst;
    }
    s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!s) {
        snprintf(dst, n, "a %s", json_is_object(v) ? "object" : "value");
        return dst;
    }
    if (strlen(s) > 60)
        snprintf(dst, n, "%.57s...", s);
    else
        snprintf(dst, n, "%s", s);
    free(s);
    return dst;
}

static int bad_field(import_ctx *c, const char *field, const char *must, const json_t *got)
{
    char g[80];
    return tsl_seterr(TSL_EINVALID, "%s: field \"%s\" must be %s (got %s)", c->rec, field,
                      must, show(got, g, sizeof g));
}

/* "a, b, c" of a field list. */
static void list_fields(char *dst, size_t n, const char *const *fields, size_t nfields)
{
    size_t off = 0;

    dst[0] = '\0';
    for (size_t i = 0; i < nfields && off < n; i++) {
        int w = snprintf(dst + off, n - off, "%s%s", i ? ", " : "", fields[i]);
        if (w < 0)
            break;
        off += (size_t)w;
    }
}

/* Refuses (or, with ignore_unknown, counts) the keys of `obj` that are
 * not in `fields`.  `what` is "field" or "key"; `where` names the record. */
static int check_keys(import_ctx *c, const json_t *obj, const char *const *fields,
                      size_t nfields, const char *what, const char *where)
{
    const char *key;
    json_t *v;

    json_object_foreach((json_t *)obj, key, v) {
        size_t i;
        char expected[300], tag[300];
        const char *hint;
        json_t *seen;

        for (i = 0; i < nfields && strcmp(key, fields[i]); i++)
            ;
        if (i < nfields)
            continue;
        if (!c->ignore_unknown) {
            hint = tsl_suggest(key, fields, nfields, sizeof *fields);
            list_fields(expected, sizeof expected, fields, nfields);
            if (hint)
                return tsl_seterr(TSL_EINVALID,
                                  "%s: unknown %s \"%.80s\": did you mean \"%s\"? (expected %s)",
                                  where, what, key, hint, expected);
            return tsl_seterr(TSL_EINVALID, "%s: unknown %s \"%.80s\" (expected %s)", where, what,
                              key, expected);
        }
        snprintf(tag, sizeof tag, "%s/%.200s", c->section ? c->section : "", key);
        if ((seen = json_object_get(c->ignored, tag)) != NULL) {
            json_int_t n = json_integer_value(json_array_get(seen, 0)) + 1;
            if (json_array_set_new(seen, 0, json_integer(n)) < 0)
                return tsl_oom();
            continue;
        }
        if (!(seen = json_pack("[i,s]", 1, where)) ||
            json_object_set_new(c->ignored, tag, seen) < 0)
            return tsl_oom();
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Field readers: each returns FIELD_ABSENT, FIELD_NULL or FIELD_SET, or a
 * negative error with the message set.
 * ---------------------------------------------------------------------- */

static bool has_control(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return true;
    return false;
}

/* A string field.  An empty string counts as null (exports write empty
 * cells for unknown values).  `required`: absent, null or empty is an
 * error.  `free_text`: control characters allowed (error messages). */
static int get_text(import_ctx *c, const json_t *rec, const char *field, bool required,
                    size_t max, bool free_text, const char **out)
{
    const json_t *v = json_object_get(rec, field);
    const char *s;

    *out = NULL;
    if (!v) {
        if (required)
            return tsl_seterr(TSL_EINVALID, "%s: missing required field \"%s\"", c->rec,
                              field);
        return FIELD_ABSENT;
    }
    if (json_is_null(v) || (json_is_string(v) && json_string_length(v) == 0)) {
        if (required)
            return bad_field(c, field, "a non-empty string", v);
        return FIELD_NULL;
    }
    if (!json_is_string(v))
        return bad_field(c, field, "a string", v);
    s = json_string_value(v);
    if (json_string_length(v) > max) {
        char must[64];
        snprintf(must, sizeof must, "at most %zu bytes long", max);
        return bad_field(c, field, must, v);
    }
    if (strlen(s) != json_string_length(v) || (!free_text && has_control(s)))
        return bad_field(c, field, "text without control characters", v);
    *out = s;
    return FIELD_SET;
}

static int get_uint(import_ctx *c, const json_t *rec, const char *field, int64_t *out)
{
    const json_t *v = json_object_get(rec, field);

    if (!v)
        return FIELD_ABSENT;
    /* exports write counts as text, with thousands separators: "5,000" */
    if (json_is_string(v) && tsl_parse_count(json_string_value(v), out))
        return FIELD_SET;
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return bad_field(c, field, "a non-negative integer", v);
    *out = (int64_t)json_integer_value(v);
    return FIELD_SET;
}

bool tsl_parse_count(const char *s, int64_t *out)
{
    int64_t v = 0;
    size_t group = 0;
    bool commas = false;
    const char *p = s;

    if (!s || !*s)
        return false;
    for (; *p; p++) {
        if (*p == ',') {
            /* 1 to 3 digits before the first comma, exactly 3 between */
            if (group == 0 || group > 3 || (commas && group != 3))
                return false;
            commas = true;
            group = 0;
            continue;
        }
        if (*p < '0' || *p > '9')
            return false;
        if (v > (INT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (*p - '0');
        group++;
    }
    if (group == 0 || (commas && group != 3))
        return false;
    *out = v;
    return true;
}

static int get_bool(import_ctx *c, const json_t *rec, const char *field, bool *out)
{
    const json_t *v = json_object_get(rec, field);

    const char *t = json_string_value(v);

    if (!v)
        return FIELD_ABSENT;
    if (json_is_boolean(v)) {
        *out = json_is_true(v);
        return FIELD_SET;
    }
    /* as exports spell them, in any case */
    if (json_is_integer(v) && (json_integer_value(v) == 0 || json_integer_value(v) == 1)) {
        *out = json_integer_value(v) == 1;
        return FIELD_SET;
    }
    if (t && (!strcasecmp(t, "true") || !strcasecmp(t, "yes") || !strcmp(t, "1"))) {
        *out = true;
        return FIELD_SET;
    }
    if (t && (!strcasecmp(t, "false") || !strcasecmp(t, "no") || !strcmp(t, "0"))) {
        *out = false;
        return FIELD_SET;
    }
    return bad_field(c, field, "true or false (or yes/no, 1/0)", v);
}

static int get_real(import_ctx *c, const json_t *rec, const char *field, double lo, double hi,
                    double *out)
{
    const json_t *v = json_object_get(rec, field);
    char must[80];

    if (!v)
        return FIELD_ABSENT;
    if (json_is_null(v))
        return FIELD_NULL;
    if (json_is_number(v)) {
        *out = json_number_value(v);
        if (isfinite(*out) && *out >= lo && *out <= hi)
            return FIELD_SET;
    }
    snprintf(must, sizeof must, "a number from %g to %g", lo, hi);
    return bad_field(c, field, must, v);
}

static int get_ip(import_ctx *c, const json_t *rec, const char *field, char *canon,
                  size_t n)
{
    const char *s;
    tsl_ip ip;
    int state = get_text(c, rec, field, false, TEXT_MAX, false, &s);

    if (state != FIELD_SET)
        return state;
    if (tsl_ip_parse(&ip, s) < 0)
        return bad_field(c, field, "an IPv4 or IPv6 address", json_object_get(rec, field));
    tsl_ip_format(canon, n, &ip);
    return FIELD_SET;
}

/* ---- time ---- */

static int64_t days_from_civil(int64_t y, int m, int d)
{
    /* Howard Hinnant's algorithm: exact for the proleptic Gregorian calendar
     * and independent of the process time zone (unlike mktime). */
    int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static bool digits(const char **p, int n, int *out)
{
    int v = 0, i;

    for (i = 0; i < n; i++) {
        if ((*p)[i] < '0' || (*p)[i] > '9')
            return false;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return true;
}

static bool parse_time(const char *text, bool local_ok, const tsl_tz *tz, int64_t *out);

bool tsl_parse_time(const char *text, int64_t *out)
{
    return parse_time(text, false, NULL, out);
}

bool tsl_parse_time_in(const char *text, const tsl_tz *tz, int64_t *out)
{
    return parse_time(text, true, tz, out);
}

static bool parse_time(const char *text, bool local_ok, const tsl_tz *tz, int64_t *out)
{
    static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    const char *p = text;
    int y, mo, d, h, mi, s = 0, oh = 0, om = 0, sign = 0;
    bool leap, local = false;

    if (!digits(&p, 4, &y) || *p++ != '-' || !digits(&p, 2, &mo) || *p++ != '-' ||
        !digits(&p, 2, &d) || (*p != 'T' && *p != 't' && *p != ' '))
        return false;
    p++;
    if (!digits(&p, 2, &h) || *p++ != ':' || !digits(&p, 2, &mi))
        return false;
    if (*p == ':') {
        p++;
        if (!digits(&p, 2, &s))
            return false;
        if (*p == '.' || *p == ',') {
            p++;
            if (*p < '0' || *p > '9')
                return false;
            while (*p >= '0' && *p <= '9')
                p++;
        }
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        sign = *p++ == '+' ? 1 : -1;
        if (!digits(&p, 2, &oh))
            return false;
        if (*p == ':')
            p++;
        if (!digits(&p, 2, &om) || oh > 23 || om > 59)
            return false;
    } else if (local_ok) {
        /* No zone: the import's zone (never the zone the engine runs in). */
        local = true;
    } else {
        return false;
    }
    if (*p != '\0' || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || s > 60)
        return false;
    leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (d > mdays[mo - 1] || (mo == 2 && d == 29 && !leap))
        return false;
    *out = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s -
           sign * (oh * 3600 + om * 60);
    if (local)
        *out = tsl_tz_to_utc(tz, *out);
    return true;
}

/* Unix seconds (a non-negative integer) or an ISO-8601 UTC string. */
static int get_time(import_ctx *c, const json_t *rec, const char *field, bool required,
                    bool nullable, int64_t *out)
{
    const json_t *v = json_object_get(rec, field);
    const char *must = "Unix seconds or a time like \"2026-11-25T09:58:00Z\" or "
                       "\"2026-11-25 09:58:00\"";

    if (!v) {
        if (required)
            return tsl_seterr(TSL_EINVALID, "%s: missing required field \"%s\"", c->rec,
                              field);
        return FIELD_ABSENT;
    }
    if (json_is_null(v) && nullable)
        return FIELD_NULL;
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *out = (int64_t)json_integer_value(v);
        return FIELD_SET;
    }
    if (json_is_string(v) && tsl_parse_time_in(json_string_value(v), c->tz, out) && *out >= 0)
        return FIELD_SET;
    return bad_field(c, field, must, v);
}

/* ------------------------------------------------------------------------
 * Store lookups
 * ---------------------------------------------------------------------- */

/* Looks up an id by key with a one-column SELECT; 0 when there is none. */
static int lookup_id(import_ctx *c, tsl_stmt_id id, const char *key, int64_t *out)
{
    sqlite3_stmt *stmt = tsl_store_stmt(c->st, id);
    int err = 0, rc;

    *out = 0;
    if (!stmt)
        return TSL_ESTORE;
    if (tsl_store_bind_text(stmt, 1, key) != SQLITE_OK) {
        err = tsl_store_err(c->st, "binding a lookup");
        goto done;
    }
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int64(stmt, 0);
    else if (rc != SQLITE_DONE)
        err = tsl_store_err(c->st, "looking up a record");

done:
    sqlite3_reset(stmt);
    return err;
}

/* Steps an upsert ... RETURNING id.  `bind_rc` is the OR of the bind
 * results (SQLITE_OK is 0), so one check covers them all. */
static int step_returning_id(import_ctx *c, sqlite3_stmt *stmt, int bind_rc, int64_t *out)
{
    int err = 0;

    if (bind_rc != SQLITE_OK || sqlite3_step(stmt) != SQLITE_ROW) {
        char what[480];
        snprintf(what, sizeof what, "%s: writing", c->rec);
        err = tsl_store_err(c->st, what);
        goto done;
    }
    *out = sqlite3_column_int64(stmt, 0);

done:
    sqlite3_reset(stmt);
    return err;
}

static int step_done(import_ctx *c, sqlite3_stmt *stmt, int bind_rc)
{
    int err = 0;

    if (bind_rc != SQLITE_OK || sqlite3_step(stmt) != SQLITE_DONE) {
        char what[480];
        snprintf(what, sizeof what, "%s: writing", c->rec);
        err = tsl_store_err(c->st, what);
    }
    sqlite3_reset(stmt);
    return err;
}

/* ------------------------------------------------------------------------
 * Sections
 * ---------------------------------------------------------------------- */

/* The array of a section, NULL when the document has none. */
static int section(import_ctx *c, json_t *doc, const char *name, json_t **out)
{
    json_t *arr = json_object_get(doc, name);
    char g[80];

    *out = NULL;
    c->section = name;
    if (!arr || json_is_null(arr))
        return 0;
    if (!json_is_array(arr))
        return tsl_seterr(TSL_EINVALID, "%s: \"%s\" must be an array (got %s)", c->origin,
                          name, show(arr, g, sizeof g));
    *out = arr;
    return 0;
}

/* Checks record i is an object, names it, and refuses a second record with
 * the same key (`seen` maps key -> first index). */
static int begin_record(import_ctx *c, json_t *rec, size_t i, const char *keyfield,
                        const char *what, json_t *seen, const char **key,
                        const char *const *fields, size_t nfields)
{
    const json_t *first;
    char g[80], loc[300], folded[TEXT_MAX + 1];
    size_t n;
    int state;

    tsl_progress_tick("records", c->done++, c->total);
    if (!json_is_object(rec)) {
        locate(c, i, loc, sizeof loc);
        return tsl_seterr(TSL_EINVALID, "%s must be an object (got %s)", loc,
                          show(rec, g, sizeof g));
    }
    name_record(c, i, rec, keyfield);
    if ((state = check_keys(c, rec, fields, nfields, "field", c->rec)) < 0)
        return state;
    if (!keyfield)
        return 0;
    if ((state = get_text(c, rec, keyfield, true, TEXT_MAX, false, key)) < 0)
        return state;
    /* Keys are case-insensitive (the store collates NOCASE). */
    for (n = 0; (*key)[n]; n++)
        folded[n] = (char)tolower((unsigned char)(*key)[n]);
    folded[n] = '\0';
    if ((first = json_object_get(seen, folded)) != NULL) {
        locate(c, (size_t)json_integer_value(first), loc, sizeof loc);
        return tsl_seterr(TSL_EINVALID, "%s: %s \"%s\" appears twice (first at %s)", c->rec,
                          what, *key, loc);
    }
    if (json_object_set_new(seen, folded, json_integer((json_int_t)i)) < 0)
        return tsl_oom();
    return 0;
}

/* Canonical text of a CIDR, so one network cannot be stored twice under
 * two spellings. */
static bool canon_cidr(const char *text, char *dst, size_t n)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    char addr[64];
    tsl_ip ip;
    int bits;

    if (tsl_cidr_parse(&ip, &bits, text) < 0)
        return false;
    tsl_ip_format(addr, sizeof addr, &ip);
    /* tsl_ip_format prints IPv4-mapped addresses as IPv4; give the prefix
     * length in IPv4 terms to match. */
    if (memcmp(ip.b, mapped, sizeof mapped) == 0 && bits >= 96)
        bits -= 96;
    snprintf(dst, n, "%s/%d", addr, bits);
    return true;
}

/* The subnets of one site record: validated and written (the site's old
 * subnets were cleared in the first pass). */
static int site_subnets(import_ctx *c, const json_t *subnets, int64_t site_id)
{
    sqlite3_stmt *stmt;
    size_t j;
    int err = 0, rc;

    for (j = 0; j < json_array_size(subnets); j++) {
        const json_t *v = json_array_get(subnets, j);
        const char *text = json_string_value(v);
        char canon[80], g[80];

        if (!text) {
            err = tsl_seterr(TSL_EINVALID, "%s: subnets[%zu] must be a string (got %s)", c->rec,
                             j, show(v, g, sizeof g));
            goto done;
        }
        if (!canon_cidr(text, canon, sizeof canon)) {
            /* ip.c says why ("...: host bits are set past /16"). */
            const char *why = strstr(tsl_error_last(), "CIDR");
            char reason[160];
            snprintf(reason, sizeof reason, "%s", why ? why + 4 : "");
            err = tsl_seterr(TSL_EINVALID, "%s: subnets[%zu] \"%.80s\" is not a valid CIDR%s",
                             c->rec, j, text, reason);
            goto done;
        }
        /* Another site may hold it too (ITMS allows it: the import notes
         * every overlap at the end); this site holds it once. */
        if (!(stmt = tsl_store_stmt(c->st, TSL_STMT_SUBNET_INSERT))) {
            err = TSL_ESTORE;
            goto done;
        }
        rc = sqlite3_bind_int64(stmt, 1, site_id);
        rc |= tsl_store_bind_text(stmt, 2, canon);
        if ((err = step_done(c, stmt, rc)) < 0)
            goto done;
        if (sqlite3_changes(tsl_store_db(c->st)) == 0 &&
            (err = tsl_buf_printf(&c->notes, "%s: subnets[%zu] \"%s\" is listed twice (kept "
                                             "once)\n",
                                  c->rec, j, text)) < 0)
            goto done;
    }

done:
    return err;
}

/* A list field ("subnets", "sites"): absent, or an array (null: empty). */
static int get_list(import_ctx *c, const json_t *rec, const char *field, const json_t **out)
{
    const json_t *v = json_object_get(rec, field);

    *out = NULL;
    if (!v)
        return FIELD_ABSENT;
    if (json_is_null(v))
        return FIELD_NULL;
    if (!json_is_array(v))
        return bad_field(c, field, "an array", v);
    *out = v;
    return FIELD_SET;
}

static int import_sites(import_ctx *c, json_t *doc)
{
    json_t *arr, *seen = NULL;
    int64_t *ids = NULL;
    size_t i, n;
    int err, rc;

    if ((err = section(c, doc, "sites", &arr)) < 0 || !arr)
        goto done;
    n = json_array_size(arr);
    if (!(seen = json_object()) || !(ids = calloc(n ? n : 1, sizeof *ids))) {
        err = tsl_oom();
        goto done;
    }
    /* Pass 1: every site row, and clear the subnets of sites whose list is
     * given, so subnets can move between sites within one document. */
    for (i = 0; i < n; i++) {
        json_t *rec = json_array_get(arr, i);
        const char *name = NULL, *country = NULL;
        const json_t *subnets;
        double lat = 0, lon = 0;
        int mask = 0, s_country, s_lat, s_lon, s_subnets;
        sqlite3_stmt *stmt;

        if ((err = begin_record(c, rec, i, "name", "site", seen, &name, site_fields,
                                NFIELDS(site_fields))) < 0)
            goto done;
        if ((err = s_country = get_text(c, rec, "country", false, TEXT_MAX, false,
                                        &country)) < 0 ||
            (err = s_lat = get_real(c, rec, "latitude", -90, 90, &lat)) < 0 ||
            (err = s_lon = get_real(c, rec, "longitude", -180, 180, &lon)) < 0 ||
            (err = s_subnets = get_list(c, rec, "subnets", &subnets)) < 0)
            goto done;
        mask = (s_country ? 1 : 0) | (s_lat ? 2 : 0) | (s_lon ? 4 : 0);
        if (!(stmt = tsl_store_stmt(c->st, TSL_STMT_SITE_UPSERT))) {
            err = TSL_ESTORE;
            goto done;
        }
        rc = tsl_store_bind_text(stmt, 1, name);
        rc |= tsl_store_bind_text(stmt, 2, country);
        if (s_lat == FIELD_SET)
            rc |= sqlite3_bind_double(stmt, 3, lat);
        if (s_lon == FIELD_SET)
            rc |= sqlite3_bind_double(stmt, 4, lon);
        rc |= sqlite3_bind_int(stmt, 5, mask);
        if ((err = step_returning_id(c, stmt, rc, &ids[i])) < 0)
            goto done;
        if (s_subnets != FIELD_ABSENT) {
            if (!(stmt = tsl_store_stmt(c->st, TSL_STMT_SUBNETS_CLEAR))) {
                err = TSL_ESTORE;
                goto done;
            }
            rc = sqlite3_bind_int64(stmt, 1, ids[i]);
            if ((err = step_done(c, stmt, rc)) < 0)
                goto done;
        }
    }
    /* Pass 2: the subnets, now that every site of the document exists and
     * no longer holds its old ones. */
    for (i = 0; i < n; i++) {
        json_t *rec = json_array_get(arr, i);
        const json_t *subnets = json_object_get(rec, "subnets");

        if (!json_is_array(subnets))
            continue;
        name_record(c, i, rec, "name");
        if ((err = site_subnets(c, subnets, ids[i])) < 0)
            goto done;
    }
    err = 0;

done:
    free(ids);
    json_decref(seen);
    return err;
}

static int server_sites(import_ctx *c, const json_t *sites, int64_t server_id)
{
    sqlite3_stmt *stmt;
    size_t j, k;
    int err, rc;

    if (!(stmt = tsl_store_stmt(c->st, TSL_STMT_SERVER_SITES_CLEAR))) {
        err = TSL_ESTORE;
        goto done;
    }
    rc = sqlite3_bind_int64(stmt, 1, server_id);
    if ((err = step_done(c, stmt, rc)) < 0)
        goto done;
    for (j = 0; j < json_array_size(sites); j++) {
        const json_t *v = json_array_get(sites, j);
        const char *name = json_string_value(v);
        int64_t site_id;
        char g[80];

        if (!name || !*name) {
            err = tsl_seterr(TSL_EINVALID, "%s: sites[%zu] must be a site name (got %s)", c->rec,
                             j, show(v, g, sizeof g));
            goto done;
        }
        for (k = 0; k < j; k++) {
            const char *prev = json_string_value(json_array_get(sites, k));
            if (prev && !strcasecmp(prev, name)) {
                err = tsl_seterr(TSL_EINVALID, "%s: sites[%zu] \"%.80s\" is listed twice",
                                 c->rec, j, name);
                goto done;
            }
        }
        if ((err = lookup_id(c, TSL_STMT_SITE_ID, name, &site_id)) < 0)
            goto done;
        if (!site_id) {
            err = tsl_seterr(TSL_EINVALID, "%s: sites[%zu] \"%.80s\" is not a known site", c->rec,
                             j, name);
            goto done;
        }
        if (!(stmt = tsl_store_stmt(c->st, TSL_STMT_SERVER_SITE_INSERT))) {
            err = TSL_ESTORE;
            goto done;
        }
        rc = sqlite3_bind_int64(stmt, 1, server_id);
        rc |= sqlite3_bind_int64(stmt, 2, site_id);
        rc |= sqlite3_bind_int64(stmt, 3, (sqlite3_int64)j);
        if ((err = step_done(c, stmt, rc)) < 0)
            goto done;
    }

done:
    return err;
}

static int import_servers(import_ctx *c, json_t *doc)
{
    json_t *arr, *seen = NULL;
    size_t i;
    int err, rc;

    if ((err = section(c, doc, "task_servers", &arr)) < 0 || !arr)
        goto done;
    if (!(seen = json_object())) {
        err = tsl_oom();
        goto done;
    }
    for (i = 0; i < json_array_size(arr); i++) {
        json_t *rec = json_array_get(arr, i);
        const char *name = NULL, *host = NULL, *service = "running";
        const json_t *sites;
        char ip[64];
        bool registered = true;
        int64_t capacity = DEFAULT_CAPACITY, connections = 0, response_ms = 0, hb = 0;
        int s_host, s_ip, s_reg, s_svc, s_cap, s_conn, s_resp, s_hb, s_sites, mask;
        int64_t id;
        sqlite3_stmt *stmt;

        if ((err = begin_record(c, rec, i, "name", "task server", seen, &name,
                                server_fields, NFIELDS(server_fields))) < 0)
            goto done;
        if ((err = s_host = get_text(c, rec, "host", false, TEXT_MAX, false, &host)) < 0 ||
            (err = s_ip = get_ip(c, rec, "ip", ip, sizeof ip)) < 0 ||
            (err = s_reg = get_bool(c, rec, "registered", &registered)) < 0 ||
            (err = s_svc = get_text(c, rec, "service", false, TEXT_MAX, false, &service)) < 0 ||
            (err = s_cap = get_uint(c, rec, "capacity", &capacity)) < 0 ||
            (err = s_conn = get_uint(c, rec, "connections", &connections)) < 0 ||
            (err = s_resp = get_uint(c, rec, "response_ms", &response_ms)) < 0 ||
            (err = s_hb = get_time(c, rec, "last_heartbeat", false, true, &hb)) < 0 ||
            (err = s_sites = get_list(c, rec, "sites", &sites)) < 0)
            goto done;
        /* any case: consoles show "Running" and "Stopped" */
        if (s_svc == FIELD_NULL ||
            (s_svc == FIELD_SET && strcasecmp(service, "running") &&
             strcasecmp(service, "stopped"))) {
            err = bad_field(c, "service", "\"running\" or \"stopped\" (in any case)",
                            json_object_get(rec, "service"));
            goto done;
        }
        service = s_svc == FIELD_ABSENT || !strcasecmp(service, "running") ? "running"
                                                                           : "stopped";
        mask = (s_host ? 1 : 0) | (s_ip ? 2 : 0) | (s_reg ? 4 : 0) | (s_svc ? 8 : 0) |
               (s_cap ? 16 : 0) | (s_conn ? 32 : 0) | (s_resp ? 64 : 0) | (s_hb ? 128 : 0);
        if (!(stmt = tsl_store_stmt(c->st, TSL_STMT_SERVER_UPSERT))) {
            err = TSL_ESTORE;
            goto done;
        }
        rc = tsl_store_bind_text(stmt, 1, name);
        rc |= tsl_store_bind_text(stmt, 2, host);
        rc |= tsl_store_bind_text(stmt, 3, s_ip == FIELD_SET ? ip : NULL);
        rc |= sqlite3_bind_int(stmt, 4, registered ? 1 : 0);
        rc |= tsl_store_bind_text(stmt, 5, service);
        rc |= sqlite3_bind_int64(stmt, 6, capacity);
        rc |= sqlite3_bind_int64(stmt, 7, connections);
        rc |= sqlite3_bind_int64(stmt, 8, response_ms);
        if (s_hb == FIELD_SET)
            rc |= sqlite3_bind_int64(stmt, 9, hb);
        rc |= sqlite3_bind_int(stmt, 10, mask);
        if ((err = step_returning_id(c, stmt, rc, &id)) < 0)
            goto done;
        if (s_sites != FIELD_ABSENT && (err = server_sites(c, sites, id)) < 0)
            goto done;
    }
    err = 0;

done:
    json_decref(seen);
    return err;
}

static int import_clients(import_ctx *c, json_t *doc)
{
    json_t *arr, *seen = NULL;
    size_t i;
    int err, rc;

    if ((err = section(c, doc, "clients", &arr)) < 0 || !arr)
        goto done;
    if (!(seen = json_object())) {
        err = tsl_oom();
        goto done;
    }
    for (i = 0; i < json_array_size(arr); i++) {
        json_t *rec = json_array_get(arr, i);
        const char *guid = NULL, *name = NULL, *dept = NULL, *site = NULL;
        char ip[64];
        int s_name, s_ip, s_dept, s_site, mask;
        int64_t site_id = 0, id;
        sqlite3_stmt *stmt;

        if ((err = begin_record(c, rec, i, "guid", "client", seen, &guid, client_fields,
                                NFIELDS(client_fields))) < 0)
            goto done;
        if ((err = s_name = get_text(c, rec, "name", false, TEXT_MAX, false, &name)) < 0 ||
            (err = s_ip = get_ip(c, rec, "ip", ip, sizeof ip)) < 0 ||
            (err = s_dept = get_text(c, rec, "department", false, TEXT_MAX, false, &dept)) < 0 ||
            (err = s_site = get_text(c, rec, "site", false, TEXT_MAX, false, &site)) < 0)
            goto done;
        if (s_site == FIELD_SET) {
            if ((err = lookup_id(c, TSL_STMT_SITE_ID, site, &site_id)) < 0)
                goto done;
            if (!site_id) {
                err = tsl_seterr(TSL_EINVALID, "%s: field \"site\": \"%s\" is not a known site",
                                 c->rec, site);
                goto done;
            }
        }
        mask = (s_name ? 1 : 0) | (s_ip ? 2 : 0) | (s_dept ? 4 : 0) | (s_site ? 8 : 0);
        if (!(stmt = tsl_store_stmt(c->st, TSL_STMT_CLIENT_UPSERT))) {
            err = TSL_ESTORE;
            goto done;
        }
        rc = tsl_store_bind_text(stmt, 1, guid);
        rc |= tsl_store_bind_text(stmt, 2, name);
        rc |= tsl_store_bind_text(stmt, 3, s_ip == FIELD_SET ? ip : NULL);
        rc |= tsl_store_bind_text(stmt, 4, dept);
        if (site_id)
            rc |= sqlite3_bind_int64(stmt, 5, site_id);
        rc |= sqlite3_bind_int(stmt, 6, mask);
        if ((err = step_returning_id(c, stmt, rc, &id)) < 0)
            goto done;
    }
    err = 0;

done:
    json_decref(seen);
    return err;
}

static int import_errors(import_ctx *c, json_t *doc)
{
    json_t *arr;
    size_t i;
    int err, rc;

    if ((err = section(c, doc, "connection_errors", &arr)) < 0 || !arr)
        goto done;
    for (i = 0; i < json_array_size(arr); i++) {
        json_t *rec = json_array_get(arr, i);
        const char *client, *server, *text;
        int64_t client_id, server_id, at = 0;
        sqlite3_stmt *stmt;

        if ((err = begin_record(c, rec, i, NULL, NULL, NULL, NULL, error_fields,
                                 NFIELDS(error_fields))) < 0 ||
            (err = get_text(c, rec, "client", true, TEXT_MAX, false, &client)) < 0 ||
            (err = get_text(c, rec, "server", true, TEXT_MAX, false, &server)) < 0 ||
            (err = get_time(c, rec, "at", true, false, &at)) < 0 ||
            (err = get_text(c, rec, "error", false, ERROR_TEXT_MAX, true, &text)) < 0)
            goto done;
        if ((err = lookup_id(c, TSL_STMT_CLIENT_ID, client, &client_id)) < 0)
            goto done;
        if (!client_id) {
            err = tsl_seterr(TSL_EINVALID, "%s: field \"client\": \"%s\" is not a known client",
                             c->rec, client);
            goto done;
        }
        if ((err = lookup_id(c, TSL_STMT_SERVER_ID, server, &server_id)) < 0)
            goto done;
        if (!server_id) {
            err = tsl_seterr(TSL_EINVALID,
                             "%s: field \"server\": \"%s\" is not a known task server", c->rec,
                             server);
            goto done;
        }
        if (!(stmt = tsl_store_stmt(c->st, TSL_STMT_ERROR_INSERT))) {
            err = TSL_ESTORE;
            goto done;
        }
        rc = sqlite3_bind_int64(stmt, 1, client_id);
        rc |= sqlite3_bind_int64(stmt, 2, server_id);
        rc |= sqlite3_bind_int64(stmt, 3, at);
        rc |= tsl_store_bind_text(stmt, 4, text);
        if ((err = step_done(c, stmt, rc)) < 0)
            goto done;
    }
    err = 0;

done:
    return err;
}

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
                         c.origin, show(doc, g, sizeof g));
        goto done;
    }
    /* a misspelt section ("site") would otherwise import nothing, silently */
    if ((err = check_keys(&c, doc, top_keys, NFIELDS(top_keys), "key", c.origin)) < 0)
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
