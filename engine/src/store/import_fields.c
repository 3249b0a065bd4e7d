/*
 * import_fields.c - the importer's messages and field readers: where a
 * record is ("sites[2] (London)", "sites.csv line 2"), unknown keys with a
 * suggestion, and text, counts, booleans, reals and IP addresses checked
 * against their limits.
 *
 * Used by: import_sections.c, import_time.c, import_json.c (through
 * import.h).  Needs: import.h, suggest.h, ip.c.
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

/* ------------------------------------------------------------------------
 * Messages
 * ---------------------------------------------------------------------- */

/* The locator of record i of the current section, without the key. */
void import_locate(const import_ctx *c, size_t i, char *dst, size_t n)
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
void import_name_record(import_ctx *c, size_t i, const json_t *rec, const char *keyfield)
{
    const char *key = keyfield ? json_string_value(json_object_get(rec, keyfield)) : NULL;
    char loc[300];

    import_locate(c, i, loc, sizeof loc);
    if (!c->where && key && *key)
        snprintf(c->rec, sizeof c->rec, "%s \"%.80s\"", loc, key);
    else
        snprintf(c->rec, sizeof c->rec, "%s", loc);
}

/* A short rendering of a JSON value for "(got ...)". */
const char *import_show(const json_t *v, char *dst, size_t n)
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

int import_bad_field(import_ctx *c, const char *field, const char *must, const json_t *got)
{
    char g[80];
    return tsl_seterr(TSL_EINVALID, "%s: field \"%s\" must be %s (got %s)", c->rec, field,
                      must, import_show(got, g, sizeof g));
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
int import_check_keys(import_ctx *c, const json_t *obj, const char *const *fields,
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
int import_get_text(import_ctx *c, const json_t *rec, const char *field, bool required,
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
            return import_bad_field(c, field, "a non-empty string", v);
        return FIELD_NULL;
    }
    if (!json_is_string(v))
        return import_bad_field(c, field, "a string", v);
    s = json_string_value(v);
    if (json_string_length(v) > max) {
        char must[64];
        snprintf(must, sizeof must, "at most %zu bytes long", max);
        return import_bad_field(c, field, must, v);
    }
    if (strlen(s) != json_string_length(v) || (!free_text && has_control(s)))
        return import_bad_field(c, field, "text without control characters", v);
    *out = s;
    return FIELD_SET;
}

int import_get_uint(import_ctx *c, const json_t *rec, const char *field, int64_t *out)
{
    const json_t *v = json_object_get(rec, field);

    if (!v)
        return FIELD_ABSENT;
    /* exports write counts as text, with thousands separators: "5,000" */
    if (json_is_string(v) && tsl_parse_count(json_string_value(v), out))
        return FIELD_SET;
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return import_bad_field(c, field, "a non-negative integer", v);
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

int import_get_bool(import_ctx *c, const json_t *rec, const char *field, bool *out)
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
    return import_bad_field(c, field, "true or false (or yes/no, 1/0)", v);
}

int import_get_real(import_ctx *c, const json_t *rec, const char *field, double lo, double hi,
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
    return import_bad_field(c, field, must, v);
}

int import_get_ip(import_ctx *c, const json_t *rec, const char *field, char *canon,
                  size_t n)
{
    const char *s;
    tsl_ip ip;
    int state = import_get_text(c, rec, field, false, TEXT_MAX, false, &s);

    if (state != FIELD_SET)
        return state;
    if (tsl_ip_parse(&ip, s) < 0)
        return import_bad_field(c, field, "an IPv4 or IPv6 address", json_object_get(rec, field));
    tsl_ip_format(canon, n, &ip);
    return FIELD_SET;
}

