/*
 * import_csv.h - what the CSV importer's files share: the cell types, the
 * RFC 4180 reader (csv_reader.c), and turning cells into JSON values with
 * ITMS's quirks folded in (import_csv_cells.c).
 *
 * Used by: import_csv.c, csv_reader.c, import_csv_cells.c.  Needs: jansson.
 */
#ifndef TSL_IMPORT_CSV_H
#define TSL_IMPORT_CSV_H

#include "common.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

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

/* Reads one record.  1 when a record was read (its first line in
 * *out_line), 0 at the end of the file, negative on a malformed file
 * (csv_reader.c). */
TSL_INTERNAL int csv_next_record(csv_reader *r, unsigned *out_line);
/* A record of one empty (or blank) cell: an empty line. */
TSL_INTERNAL bool csv_blank_record(const csv_reader *r);

/* The cell without surrounding spaces and tabs, trimmed in place. */
TSL_INTERNAL char *csv_trim(char *s);
TSL_INTERNAL bool csv_valid_utf8(const unsigned char *s);
/* A cell as its column's JSON value; a cell that does not parse as its
 * type stays a string (import_csv_cells.c).  NULL: out of memory. */
TSL_INTERNAL json_t *csv_cell_value(char *s, col_type type);
/* Sites: a "Subnet" address plus a "Subnet Mask" becomes "a.b.c.d/n". */
TSL_INTERNAL int csv_apply_mask(json_t *row, const char *loc);
/* Task servers: a bare host name plus the primary DNS suffix becomes the
 * host's FQDN. */
TSL_INTERNAL int csv_apply_suffix(json_t *row);

#endif
