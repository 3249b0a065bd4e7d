/*
 * suggest.h - "did you mean": the closest known word to a misspelt one, by
 * case-insensitive edit distance.  Used wherever an admin's name or field
 * is refused: policy names (policy_check.c), inventory fields and keys
 * (import_fields.c), CSV columns (import_csv.c).
 *
 * Needs: nothing.
 */
#ifndef TSL_SUGGEST_H
#define TSL_SUGGEST_H

#include "common.h"

/* Levenshtein distance ignoring ASCII case; 1000 past 64 bytes. */
TSL_INTERNAL int tsl_edit_distance(const char *a, const char *b);
/* The candidate closest to `word` when it is close enough to be a typo (at
 * most a third of the word's length, and at least 2, edits, and fewer
 * edits than the word has letters), else NULL.
 * `cands` is an array of `ncand` records `stride` bytes apart, each
 * starting with a `const char *` (a plain string array: stride
 * sizeof(char *)).  NULL entries are skipped.  Borrowed from `cands`. */
TSL_INTERNAL const char *tsl_suggest(const char *word, const void *cands, size_t ncand,
                                     size_t stride);
/* " (did you mean \"London\"?)" or "" into buf; returns buf. */
TSL_INTERNAL const char *tsl_suggest_hint(char *buf, size_t len, const char *word,
                                          const void *cands, size_t ncand, size_t stride);

#endif
