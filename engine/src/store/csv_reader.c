/*
 * csv_reader.c - the RFC 4180 reader of the CSV import: records of cells,
 * quoted fields with commas, "" and line breaks, CRLF or LF, parsed in
 * place in the file buffer; the physical line of each record for messages.
 *
 * Used by: import_csv.c.  Needs: import_csv.h.
 */
#include "import_csv.h"
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

/* ------------------------------------------------------------------------
 * Reading
 * ---------------------------------------------------------------------- */

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
int csv_next_record(csv_reader *r, unsigned *out_line)
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
bool csv_blank_record(const csv_reader *r)
{
    return r->nfields == 1 && r->fields[0][strspn(r->fields[0], " \t")] == '\0';
}

