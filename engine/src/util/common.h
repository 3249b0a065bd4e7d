/*
 * common.h - what every engine source file includes: the public header,
 * the error setters, argument checks and the symbol-visibility mark.
 *
 * Used by: every file in engine/src.  Needs: tsl.h only.
 */
#ifndef TSL_COMMON_H
#define TSL_COMMON_H

#include "tsl.h"

#include <assert.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define TSL_INTERNAL __attribute__((visibility("hidden")))
#define TSL_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define TSL_INTERNAL
#define TSL_PRINTF(a, b)
#endif

/* Records the detailed message for tsl_error_last() and returns `code`,
 * so call sites read `return tsl_seterr(TSL_EINVALID, "...", ...);`. */
TSL_INTERNAL int tsl_seterr(int code, const char *fmt, ...) TSL_PRINTF(2, 3);
/* Same, for an allocation failure. */
TSL_INTERNAL int tsl_oom(void);

/* Reads the whole file at `path` into *out (malloc'd, NUL-terminated;
 * *len without the NUL).  TSL_ENOTFOUND when it does not exist,
 * TSL_ELIMIT when it is larger than `max` bytes (file.c). */
TSL_INTERNAL int tsl_file_read(char **out, size_t *len, const char *path, size_t max);

/* Argument checks: abort in debug builds, return TSL_EINVALID in release. */
#ifdef NDEBUG
#define TSL_ARG(cond)                                                          \
    do {                                                                       \
        if (!(cond))                                                           \
            return tsl_seterr(TSL_EINVALID, "invalid argument: %s", #cond);    \
    } while (0)
#else
#define TSL_ARG(cond) assert(cond)
#endif

/* ---- buffers (buf.c) ---- */
TSL_INTERNAL int tsl_buf_grow(tsl_buf *b, size_t extra);
TSL_INTERNAL int tsl_buf_put(tsl_buf *b, const char *s, size_t n);
TSL_INTERNAL int tsl_buf_puts(tsl_buf *b, const char *s);
TSL_INTERNAL int tsl_buf_printf(tsl_buf *b, const char *fmt, ...) TSL_PRINTF(2, 3);
/* Appends a decimal integer (no printf: the list response is hot). */
TSL_INTERNAL int tsl_buf_put_i64(tsl_buf *b, int64_t v);
/* Appends s as a JSON string literal, quotes included; NULL gives null. */
TSL_INTERNAL int tsl_buf_json_str(tsl_buf *b, const char *s);
/* Appends s as one CSV field (quoted when it holds , " or a line break);
 * a text that a spreadsheet would run as a formula (first character =, +,
 * -, @, tab or CR) is prefixed with a single quote.  Numbers: print them
 * as they are, not through this. */
TSL_INTERNAL int tsl_buf_csv_field(tsl_buf *b, const char *s);

/* ---- hashing (hash.c) ---- */
TSL_INTERNAL uint64_t tsl_hash_str(const char *s);
TSL_INTERNAL uint64_t tsl_hash_mix(uint64_t a, uint64_t b);

#endif
