/*
 * estate_gen.h - the cities a synthetic estate is built from: what
 * estate_gen.c needs of estate_cities.c.
 *
 * Used by: estate_gen.c, estate_cities.c.  Needs: nothing but libc.
 */
#ifndef TSL_ESTATE_GEN_H
#define TSL_ESTATE_GEN_H

#include "common.h"

#include <stddef.h>

typedef struct city {
    char name[64];
    char country[3];
    double lat, lon;
    int tier;           /* 0 a well-known city, 1 Area/City, 2 Area/Region/Town */
} city;

typedef struct city_list {
    city *v;
    size_t n, cap;
} city_list;

/* Fills l with the cities of the time-zone table, or the built-in list
 * when it is missing (estate_cities.c).  The caller frees l->v. */
TSL_INTERNAL int estate_load_cities(city_list *l);

#endif
