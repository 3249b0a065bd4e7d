/*
 * lpm.h - longest-prefix match over 128-bit keys (a path-compressed binary
 * radix trie).  IPv4 prefixes live under ::ffff:0:0/96, so one trie serves
 * both address families.
 *
 * Used by: snapshot.c (site subnets).  Needs: nothing but tsl_ip.
 */
#ifndef TSL_LPM_H
#define TSL_LPM_H

#include "common.h"

typedef struct tsl_lpm {
    struct lpm_node *root;
    size_t count;
} tsl_lpm;

typedef struct tsl_lpm_match {
    int32_t value;   /* what was inserted with the prefix */
    int bits;        /* length of the matching prefix (128-bit space) */
    tsl_ip prefix;   /* the matching prefix */
} tsl_lpm_match;

TSL_INTERNAL void tsl_lpm_init(tsl_lpm *t);
TSL_INTERNAL void tsl_lpm_free(tsl_lpm *t);
/* TSL_EEXISTS when the same prefix is already present (*out_existing set). */
TSL_INTERNAL int tsl_lpm_insert(tsl_lpm *t, const tsl_ip *prefix, int bits, int32_t value,
                                int32_t *out_existing);
/* Changes the value of a prefix already present; TSL_ENOTFOUND otherwise. */
TSL_INTERNAL int tsl_lpm_replace(tsl_lpm *t, const tsl_ip *prefix, int bits, int32_t value);
/* true and *out filled when some prefix covers addr; the longest wins. */
TSL_INTERNAL bool tsl_lpm_lookup(const tsl_lpm *t, const tsl_ip *addr, tsl_lpm_match *out);

#endif
