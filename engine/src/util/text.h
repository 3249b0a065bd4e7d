/*
 * text.h - the one validation of the names and strings that reach the
 * store, JSON and CSV: well-formed UTF-8, no control characters, bounded,
 * and site lists without a name twice (the store compares names without
 * regard to ASCII case).  Import, the broker's heartbeats, registration
 * reports, query parameters and admin bodies all check with these, so what
 * one path accepts another never refuses.
 *
 * Used by: engine/broker (routes, admin), buf.c (JSON strings), import
 * (import_csv.c).  Needs: common.h.
 */
#ifndef TSL_TEXT_H
#define TSL_TEXT_H

#include "common.h"

/* The length (1 to 4) of the well-formed UTF-8 sequence at s, of at most
 * `avail` bytes, or 0 when it is not one. */
TSL_INTERNAL size_t tsl_text_utf8_seq(const char *s, size_t avail);
/* true when s[0..len) is well-formed UTF-8 (RFC 3629: no overlong form, no
 * surrogate, nothing past U+10FFFF, no truncated sequence).  NUL bytes are
 * valid UTF-8; callers that keep C strings refuse them first. */
TSL_INTERNAL bool tsl_utf8_valid(const char *s, size_t len);

/* Why `s` is not a valid name of at most `max` bytes, or NULL when it is:
 * "is empty", "is longer than N bytes", "is not valid UTF-8", "contains a
 * control character" (C0, DEL, C1).  The reason is a static string. */
TSL_INTERNAL const char *tsl_text_name_problem(const char *s, size_t max);

/* Checks a list of site names (`field`: "sites" in messages): each a valid
 * name of at most `max` bytes, none twice regardless of ASCII case.
 * 0, or TSL_EINVALID with "sites[1] \"paris\" is listed twice" and the
 * like in tsl_error_last(). */
TSL_INTERNAL int tsl_text_site_list(const char *field, const char *const *names, size_t n,
                                    size_t max);

#endif
