/*
 * hash.c - the non-cryptographic hashes behind the name indexes and the
 * (client, server) tie-break.  Stable across runs and machines on purpose:
 * a client's list must not reshuffle when the broker restarts.
 */
#include "common.h"

uint64_t tsl_hash_str(const char *s)
{
    /* FNV-1a, then a finalizer so short names still spread over all bits */
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ULL;
    }
    return tsl_hash_mix(h, 0);
}

uint64_t tsl_hash_mix(uint64_t a, uint64_t b)
{
    /* splitmix64 finalizer over the combination */
    uint64_t z = a ^ (b + 0x9e3779b97f4a7c15ULL + (a << 6) + (a >> 2));
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
