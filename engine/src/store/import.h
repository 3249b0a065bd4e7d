/*
 * import.h - what the inventory importer's files share: the import context
 * (origin, current record, notes, progress), the field readers that check
 * each value at the edge with messages naming origin, record and field
 * (import_fields.c, import_time.c), and the four section importers
 * (import_sections.c) that import_json.c runs in one transaction.
 *
 * Used by: import_json.c, import_fields.c, import_time.c,
 * import_sections.c.  Needs: store.h, jansson, tz.h.
 */
#ifndef TSL_IMPORT_H
#define TSL_IMPORT_H

#include "store.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

struct tsl_tz;

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
    const struct tsl_tz *tz;   /* times without a zone; NULL: UTC */
    json_t *ignored;    /* "section/field" -> [count, first record] */
    tsl_buf notes;      /* warnings, handed to the caller on success */
    uint64_t done, total; /* records, for the progress listener */
} import_ctx;

#define NFIELDS(a) (sizeof a / sizeof a[0])

/* The locator of record i of the current section, without the key. */
TSL_INTERNAL void import_locate(const import_ctx *c, size_t i, char *dst, size_t n);

/* Names the current record: "inventory.json: sites[0] \"London\"", or the
 * CSV locator "sites.csv line 2". */
TSL_INTERNAL void import_name_record(import_ctx *c, size_t i, const json_t *rec, const char *keyfield);

/* A short rendering of a JSON value for "(got ...)". */
TSL_INTERNAL const char *import_show(const json_t *v, char *dst, size_t n);

/* "field must be ... (got ...)" for the current record. */
TSL_INTERNAL int import_bad_field(import_ctx *c, const char *field, const char *must, const json_t *got);

/* Refuses (or, with ignore_unknown, counts) the keys of `obj` that are
 * not in `fields`.  `what` is "field" or "key"; `where` names the record. */
TSL_INTERNAL int import_check_keys(import_ctx *c, const json_t *obj, const char *const *fields,
                      size_t nfields, const char *what, const char *where);

/* A string field.  An empty string counts as null (exports write empty
 * cells for unknown values).  `required`: absent, null or empty is an
 * error.  `free_text`: control characters allowed (error messages). */
TSL_INTERNAL int import_get_text(import_ctx *c, const json_t *rec, const char *field, bool required,
                    size_t max, bool free_text, const char **out);

TSL_INTERNAL int import_get_uint(import_ctx *c, const json_t *rec, const char *field, int64_t *out);

TSL_INTERNAL int import_get_bool(import_ctx *c, const json_t *rec, const char *field, bool *out);

TSL_INTERNAL int import_get_real(import_ctx *c, const json_t *rec, const char *field, double lo, double hi,
                    double *out);

TSL_INTERNAL int import_get_ip(import_ctx *c, const json_t *rec, const char *field, char *canon,
                  size_t n);

/* Unix seconds (a non-negative integer) or an ISO-8601 UTC string. */
TSL_INTERNAL int import_get_time(import_ctx *c, const json_t *rec, const char *field, bool required,
                    bool nullable, int64_t *out);

/* The four sections of a document, each upserted record by record inside
 * the caller's transaction (import_sections.c). */
TSL_INTERNAL int import_sites(import_ctx *c, json_t *doc);
TSL_INTERNAL int import_servers(import_ctx *c, json_t *doc);
TSL_INTERNAL int import_clients(import_ctx *c, json_t *doc);
TSL_INTERNAL int import_errors(import_ctx *c, json_t *doc);

#endif
