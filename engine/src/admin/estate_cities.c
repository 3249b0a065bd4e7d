/*
 * estate_cities.c - the cities a synthetic estate names its sites after:
 * the time-zone table (/usr/share/zoneinfo/zone1970.tab: country codes,
 * ISO 6709 coordinates, Area/City names), or a built-in list of 36 when
 * that file is missing or too short.
 *
 * Used by: estate_gen.c (estate_load_cities).  Needs: estate_gen.h.
 */
#include "estate_gen.h"
#include "store.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ZONE_TAB "/usr/share/zoneinfo/zone1970.tab"

/* ------------------------------------------------------------------------
 * Cities
 * ---------------------------------------------------------------------- */

static const struct {
    const char *name, *country;
    double lat, lon;
} fallback_cities[] = {
    {"London", "GB", 51.51, -0.13},       {"Dublin", "IE", 53.33, -6.25},
    {"Paris", "FR", 48.87, 2.33},         {"Madrid", "ES", 40.40, -3.68},
    {"Frankfurt", "DE", 50.11, 8.68},     {"Amsterdam", "NL", 52.37, 4.90},
    {"Brussels", "BE", 50.83, 4.33},      {"Zurich", "CH", 47.38, 8.53},
    {"Milan", "IT", 45.46, 9.19},         {"Stockholm", "SE", 59.33, 18.05},
    {"Warsaw", "PL", 52.25, 21.00},       {"Vienna", "AT", 48.22, 16.33},
    {"Lisbon", "PT", 38.72, -9.13},       {"Athens", "GR", 37.97, 23.72},
    {"Istanbul", "TR", 41.02, 28.97},     {"Dubai", "AE", 25.30, 55.30},
    {"Johannesburg", "ZA", -26.25, 28.00}, {"Nairobi", "KE", -1.28, 36.82},
    {"Mumbai", "IN", 19.07, 72.88},       {"Singapore", "SG", 1.28, 103.85},
    {"Hong Kong", "HK", 22.28, 114.15},   {"Shanghai", "CN", 31.23, 121.47},
    {"Tokyo", "JP", 35.65, 139.73},       {"Seoul", "KR", 37.55, 126.97},
    {"Sydney", "AU", -33.87, 151.22},     {"Auckland", "NZ", -36.87, 174.77},
    {"Toronto", "CA", 43.65, -79.38},     {"New York", "US", 40.71, -74.01},
    {"Chicago", "US", 41.85, -87.65},     {"Denver", "US", 39.74, -104.98},
    {"Los Angeles", "US", 34.05, -118.24}, {"Mexico City", "MX", 19.40, -99.15},
    {"Sao Paulo", "BR", -23.53, -46.62},  {"Buenos Aires", "AR", -34.60, -58.45},
    {"Santiago", "CL", -33.45, -70.67},   {"Bogota", "CO", 4.60, -74.08},
};

static int cities_push(city_list *l, const char *name, size_t namelen, const char *country,
                       double lat, double lon, int tier)
{
    city *c;

    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        city *nv = realloc(l->v, cap * sizeof *nv);
        if (!nv)
            return tsl_oom();
        l->v = nv;
        l->cap = cap;
    }
    c = &l->v[l->n++];
    if (namelen >= sizeof c->name)
        namelen = sizeof c->name - 1;
    memcpy(c->name, name, namelen);
    c->name[namelen] = '\0';
    snprintf(c->country, sizeof c->country, "%.2s", country);
    c->lat = lat;
    c->lon = lon;
    c->tier = tier;
    return 0;
}

/* One ISO 6709 angle: sign, then DD[D]MM[SS]; `degdigits` is 2 or 3. */
static bool iso6709_angle(const char **p, int degdigits, double *out)
{
    const char *s = *p;
    int sign, n = 0, v[3] = {0, 0, 0}, parts, i, j;

    if (*s != '+' && *s != '-')
        return false;
    sign = *s++ == '-' ? -1 : 1;
    while (isdigit((unsigned char)s[n]))
        n++;
    if (n != degdigits + 2 && n != degdigits + 4)
        return false;
    parts = n == degdigits + 2 ? 2 : 3;
    for (i = 0, j = 0; i < parts; i++) {
        int len = i == 0 ? degdigits : 2;
        for (int k = 0; k < len; k++)
            v[i] = v[i] * 10 + (s[j++] - '0');
    }
    *out = sign * (v[0] + v[1] / 60.0 + v[2] / 3600.0);
    *p = s + n;
    return true;
}

/* Parses one zone1970.tab line: "GB\t+513030-0000731\tEurope/London". */
static int zone_line(city_list *l, char *line)
{
    char *codes = line, *coords, *tz, *end, *slash, *p;
    const char *cp;
    double lat, lon;
    size_t i;
    int tier;

    if (*line == '#' || !(coords = strchr(line, '\t')))
        return 0;
    *coords++ = '\0';
    if (!(tz = strchr(coords, '\t')))
        return 0;
    *tz++ = '\0';
    end = tz + strcspn(tz, "\t\r\n");
    *end = '\0';
    cp = coords;
    if (!iso6709_angle(&cp, 2, &lat) || !iso6709_angle(&cp, 3, &lon))
        return 0;
    if (!(slash = strrchr(tz, '/')) || !slash[1])
        return 0;
    for (p = slash + 1; *p; p++)
        if (*p == '_')
            *p = ' ';
    /* The first of several country codes is the one the zone is named for. */
    codes[strcspn(codes, ",")] = '\0';
    /* Estates should read like a real company's: the well-known cities
     * first, and county seats like America/Indiana/Marengo last. */
    tier = strchr(tz, '/') == slash ? 1 : 2;
    for (i = 0; i < sizeof fallback_cities / sizeof fallback_cities[0]; i++)
        if (!strcmp(fallback_cities[i].name, slash + 1))
            tier = 0;
    return cities_push(l, slash + 1, strlen(slash + 1), codes, lat, lon, tier);
}

int estate_load_cities(city_list *l)
{
    FILE *f = fopen(ZONE_TAB, "r");
    char line[512];
    size_t i;
    int err = 0;

    if (f) {
        while (fgets(line, sizeof line, f))
            if ((err = zone_line(l, line)) < 0)
                goto done;
    }
    /* A missing or unreadable table is not an error: the built-in list
     * serves. */
    if (l->n < 8) {
        l->n = 0;
        for (i = 0; i < sizeof fallback_cities / sizeof fallback_cities[0]; i++)
            if ((err = cities_push(l, fallback_cities[i].name, strlen(fallback_cities[i].name),
                                   fallback_cities[i].country, fallback_cities[i].lat,
                                   fallback_cities[i].lon, 0)) < 0)
                goto done;
    }

done:
    if (f)
        fclose(f);
    return err;
}

