/*
 * estate_gen.c - a synthetic but plausible ITMS estate, for
 * `tsl gen-estate` and the benchmarks (tsl_estate_generate in store.h).
 *
 * Sites are named after real cities, taken from the time-zone table
 * (/usr/share/zoneinfo/zone1970.tab: country codes, ISO 6709 coordinates,
 * Area/City names), or a built-in list when that file is missing.  Each
 * site gets an IPv4 /16 or /20 from private pools, some an IPv6 /48, and
 * a few also own a more-specific /24 inside another site's /16.  Servers
 * ("ts-lon-01") are spread round-robin over the sites, most assigned to
 * their site by hand, some left to resolve by IP; a few are stopped,
 * unregistered, full or silent.  Clients are spread unevenly over sites,
 * with ~5% on an explicit site, ~2% on an address no site owns and ~1%
 * with recent connection errors.
 *
 * The same seed gives the same estate (on the same zone table): all
 * randomness comes from our own splitmix64, and all times are relative to
 * TSL_ESTATE_EPOCH.  Rows go straight in through prepared statements, in
 * one transaction.
 *
 * Used by: the CLI, benchmarks, tests.  Needs: store.h, tsl_ip_format.
 */
#include "progress.h"
#include "store.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ZONE_TAB "/usr/share/zoneinfo/zone1970.tab"

/* ------------------------------------------------------------------------
 * Randomness: splitmix64 (Steele, Lea, Flood), small and good enough, and
 * unlike rand() it is ours, so the output does not depend on the libc.
 * ---------------------------------------------------------------------- */

typedef struct rng {
    uint64_t s;
} rng;

static uint64_t rng_next(rng *r)
{
    uint64_t z = (r->s += UINT64_C(0x9e3779b97f4a7c15));

    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* Uniform in [0, n) (multiply-shift; the bias is far below what matters
 * for test data). */
static uint32_t rng_below(rng *r, uint32_t n)
{
    return n ? (uint32_t)(((rng_next(r) >> 32) * (uint64_t)n) >> 32) : 0;
}

/* true with probability per_mille / 1000. */
static bool rng_chance(rng *r, uint32_t per_mille)
{
    return rng_below(r, 1000) < per_mille;
}

/* ------------------------------------------------------------------------
 * Cities
 * ---------------------------------------------------------------------- */

typedef struct city {
    char name[64];
    char country[3];
    double lat, lon;
    int tier;           /* 0 a well-known city, 1 Area/City, 2 Area/Region/Town */
} city;

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

typedef struct city_list {
    city *v;
    size_t n, cap;
} city_list;

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

static int load_cities(city_list *l)
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

/* ------------------------------------------------------------------------
 * Sites and their address plan
 * ---------------------------------------------------------------------- */

/* Address pools, carved in units of a /20 (4096 addresses): /16s from the
 * bottom of a pool, /20s from the top, so neither wastes space aligning. */
typedef struct pool {
    uint32_t base;      /* first address */
    uint32_t lo, hi;    /* free units are [lo, hi) */
} pool;

typedef struct site {
    char name[80];
    char code[16];      /* "lon", unique, for server and client names */
    const city *c;
    uint32_t v4;        /* network address */
    int v4len;          /* 16 or 20 */
    bool v6;
    uint32_t carved;    /* /24s given away from the top of our /16 */
    uint32_t first_server, nservers; /* round-robin: servers first, first+n, ... */
    int64_t id;
} site;

typedef struct gen {
    tsl_store *st;
    rng r;
    site *sites;
    uint32_t nsites;
    pool pools[5];
    uint32_t v6_global;  /* 24 random bits of the fdXX:XXXX::/24 ULA prefix */
    char **codes;        /* open-addressing set of site codes */
    uint32_t code_mask;
    int64_t *server_ids;
    uint32_t nservers;
} gen;

static bool alloc_v4(gen *g, int len, uint32_t *out)
{
    size_t i;

    for (i = 0; i < sizeof g->pools / sizeof g->pools[0]; i++) {
        pool *p = &g->pools[i];
        if (len == 16 && p->lo + 16 <= p->hi) {
            *out = p->base + (p->lo << 12);
            p->lo += 16;
            return true;
        }
        if (len == 20 && p->lo < p->hi) {
            p->hi--;
            *out = p->base + (p->hi << 12);
            return true;
        }
    }
    return false;
}

static void v4_text(char *dst, size_t n, uint32_t a)
{
    tsl_ip ip;

    memset(&ip, 0, sizeof ip);
    ip.b[10] = ip.b[11] = 0xff;
    ip.b[12] = (uint8_t)(a >> 24);
    ip.b[13] = (uint8_t)(a >> 16);
    ip.b[14] = (uint8_t)(a >> 8);
    ip.b[15] = (uint8_t)a;
    tsl_ip_format(dst, n, &ip);
}

/* fdGG:GGGG:SSSS::/48 for site s, plus an interface id for hosts. */
static void v6_addr(const gen *g, uint32_t s, uint64_t iid, tsl_ip *ip)
{
    int i;

    memset(ip, 0, sizeof *ip);
    ip->b[0] = 0xfd;
    ip->b[1] = (uint8_t)(g->v6_global >> 16);
    ip->b[2] = (uint8_t)(g->v6_global >> 8);
    ip->b[3] = (uint8_t)g->v6_global;
    ip->b[4] = (uint8_t)(s >> 8);
    ip->b[5] = (uint8_t)s;
    for (i = 0; i < 8; i++)
        ip->b[8 + i] = (uint8_t)(iid >> (56 - 8 * i));
}

/* Inserts a code into the set; false when it is already there. */
static bool code_add(gen *g, char *code)
{
    uint32_t i = (uint32_t)tsl_hash_str(code) & g->code_mask;

    while (g->codes[i]) {
        if (!strcmp(g->codes[i], code))
            return false;
        i = (i + 1) & g->code_mask;
    }
    g->codes[i] = code;
    return true;
}

/* "London" -> "lon", "London" round 2 -> "lon2", a clash -> "lon3"... */
static void make_code(gen *g, site *s, unsigned round)
{
    char base[8];
    size_t n = 0;
    const char *p, *name, *last;
    unsigned k, words = 0;

    /* One word: its first letters ("London" -> "lon"); several: their
     * initials, then letters of the last word ("New York" -> "nyo"). */
    name = s->c->name;
    last = name;
    for (p = name; *p; p++)
        if ((p == name || p[-1] == ' ' || p[-1] == '-') && *p != ' ' && *p != '-') {
            if (isalpha((unsigned char)*p) && (unsigned char)*p < 0x80 && n < 3)
                base[n++] = (char)tolower((unsigned char)*p);
            last = p;
            words++;
        }
    if (words < 2) {
        n = 0;
        last = name;
    } else {
        last++;
    }
    for (p = last; *p && n < 3; p++)
        if (isalpha((unsigned char)*p) && (unsigned char)*p < 0x80)
            base[n++] = (char)tolower((unsigned char)*p);
    while (n < 3)
        base[n++] = 'x';
    base[n] = '\0';
    if (round) {
        snprintf(s->code, sizeof s->code, "%.3s%u", base, round + 1);
        if (code_add(g, s->code))
            return;
    } else {
        /* A clash ("Dubai" after "Dublin"): try the later letters of the
         * name as the third one ("dua") before falling back to numbers. */
        for (; ; p++) {
            snprintf(s->code, sizeof s->code, "%s", base);
            if (code_add(g, s->code))
                return;
            while (*p && !(isalpha((unsigned char)*p) && (unsigned char)*p < 0x80))
                p++;
            if (!*p)
                break;
            base[2] = (char)tolower((unsigned char)*p);
        }
    }
    for (k = round + 2; !code_add(g, s->code); k++)
        snprintf(s->code, sizeof s->code, "%.3s%u", base, k);
}

static int step_done(gen *g, sqlite3_stmt *stmt, int bind_rc, const char *what)
{
    int err = 0;

    if (bind_rc != SQLITE_OK || sqlite3_step(stmt) != SQLITE_DONE)
        err = tsl_store_err(g->st, what);
    sqlite3_reset(stmt);
    return err;
}

static int step_id(gen *g, sqlite3_stmt *stmt, int bind_rc, const char *what, int64_t *id)
{
    int err = 0;

    if (bind_rc != SQLITE_OK || sqlite3_step(stmt) != SQLITE_ROW)
        err = tsl_store_err(g->st, what);
    else
        *id = sqlite3_column_int64(stmt, 0);
    sqlite3_reset(stmt);
    return err;
}

static int add_subnet(gen *g, int64_t site_id, const char *cidr)
{
    sqlite3_stmt *stmt = tsl_store_stmt(g->st, TSL_STMT_SUBNET_INSERT);
    int rc;

    if (!stmt)
        return TSL_ESTORE;
    rc = sqlite3_bind_int64(stmt, 1, site_id);
    rc |= tsl_store_bind_text(stmt, 2, cidr);
    return step_done(g, stmt, rc, "writing a subnet");
}

static int gen_sites(gen *g, const city_list *cities)
{
    uint32_t *order = NULL, i, nbig = 0;
    int tier;
    uint32_t *big = NULL;       /* sites with a /16, for carving */
    int err = 0;

    if (!(order = malloc(cities->n * sizeof *order)) ||
        !(big = malloc(g->nsites * sizeof *big))) {
        err = tsl_oom();
        goto done;
    }
    /* Tier by tier, a seeded shuffle of the cities, so estates differ by
     * seed but a small one still has London or Tokyo rather than Vevay. */
    for (tier = 0, i = 0; tier <= 2; tier++) {
        uint32_t first = i, k;
        for (k = 0; k < cities->n; k++)
            if (cities->v[k].tier == tier)
                order[i++] = k;
        for (k = i - first; k > 1; k--) {
            uint32_t j = first + rng_below(&g->r, k), t = order[first + k - 1];
            order[first + k - 1] = order[j];
            order[j] = t;
        }
    }
    for (i = 0; i < g->nsites; i++) {
        site *s = &g->sites[i];
        unsigned round = (unsigned)(i / cities->n);
        sqlite3_stmt *stmt;
        char cidr[80];
        int rc;

        s->c = &cities->v[order[i % cities->n]];
        if (round)
            snprintf(s->name, sizeof s->name, "%s-%u", s->c->name, round + 1);
        else
            snprintf(s->name, sizeof s->name, "%s", s->c->name);
        make_code(g, s, round);
        if (!(stmt = tsl_store_stmt(g->st, TSL_STMT_SITE_UPSERT))) {
            err = TSL_ESTORE;
            goto done;
        }
        rc = tsl_store_bind_text(stmt, 1, s->name);
        rc |= tsl_store_bind_text(stmt, 2, s->c->country);
        rc |= sqlite3_bind_double(stmt, 3, s->c->lat);
        rc |= sqlite3_bind_double(stmt, 4, s->c->lon);
        rc |= sqlite3_bind_int(stmt, 5, 7);
        if ((err = step_id(g, stmt, rc, "writing a site", &s->id)) < 0)
            goto done;

        /* Three in four sites are big offices with a /16. */
        s->v4len = rng_below(&g->r, 4) ? 16 : 20;
        if (!alloc_v4(g, s->v4len, &s->v4)) {
            s->v4len = 20;
            if (!alloc_v4(g, 20, &s->v4)) {
                err = tsl_seterr(TSL_ELIMIT, "out of IPv4 address space for %u sites",
                                 g->nsites);
                goto done;
            }
        }
        v4_text(cidr, sizeof cidr, s->v4);
        snprintf(cidr + strlen(cidr), sizeof cidr - strlen(cidr), "/%d", s->v4len);
        if ((err = add_subnet(g, s->id, cidr)) < 0)
            goto done;
        if (s->v4len == 16)
            big[nbig++] = i;

        /* Some sites are dual-stack. */
        s->v6 = rng_chance(&g->r, 300);
        if (s->v6) {
            tsl_ip ip;
            v6_addr(g, i, 0, &ip);
            tsl_ip_format(cidr, sizeof cidr, &ip);
            snprintf(cidr + strlen(cidr), sizeof cidr - strlen(cidr), "/48");
            if ((err = add_subnet(g, s->id, cidr)) < 0)
                goto done;
        }

        /* A few sites (a lab, a warehouse) also own a /24 inside an earlier
         * site's /16: the longest prefix must win for those clients. */
        if (nbig > 1 && rng_chance(&g->r, 50)) {
            site *parent = &g->sites[big[rng_below(&g->r, nbig - 1)]];
            if (parent != s && parent->carved < 40) {
                uint32_t net = parent->v4 + ((255u - parent->carved++) << 8);
                v4_text(cidr, sizeof cidr, net);
                snprintf(cidr + strlen(cidr), sizeof cidr - strlen(cidr), "/24");
                if ((err = add_subnet(g, s->id, cidr)) < 0)
                    goto done;
            }
        }
    }

done:
    free(order);
    free(big);
    return err;
}

/* ------------------------------------------------------------------------
 * Servers, clients, errors
 * ---------------------------------------------------------------------- */

static int gen_servers(gen *g)
{
    uint32_t j;
    int err = 0;

    for (j = 0; j < g->nservers; j++) {
        uint32_t si = j % g->nsites, k = j / g->nsites;
        site *s = &g->sites[si];
        char name[48], host[96], ip[64];
        int64_t capacity, connections;
        bool registered = !rng_chance(&g->r, 20), running = !rng_chance(&g->r, 30);
        bool manual = !rng_chance(&g->r, 100), second = rng_chance(&g->r, 50);
        bool silent = rng_chance(&g->r, 10);
        uint32_t pick = rng_below(&g->r, 10);
        sqlite3_stmt *stmt;
        int rc;

        if (k == 0)
            s->first_server = j;
        s->nservers++;
        snprintf(name, sizeof name, "ts-%s-%02u", s->code, k + 1);
        snprintf(host, sizeof host, "%s.corp.example", name);
        /* Servers sit at .10 upwards of their site's first /24 (wrapping in
         * the absurd case of more servers than the subnet holds). */
        v4_text(ip, sizeof ip,
                s->v4 + 10 + k % ((1u << (32 - s->v4len)) - 12));
        capacity = pick < 7 ? 5000 : pick < 9 ? 2000 : 1000;
        connections = rng_chance(&g->r, 30) ? capacity
                                              : (int64_t)rng_below(&g->r, (uint32_t)capacity * 9 / 10);
        if (!(stmt = tsl_store_stmt(g->st, TSL_STMT_SERVER_UPSERT)))
            return TSL_ESTORE;
        rc = tsl_store_bind_text(stmt, 1, name);
        rc |= tsl_store_bind_text(stmt, 2, host);
        rc |= tsl_store_bind_text(stmt, 3, ip);
        rc |= sqlite3_bind_int(stmt, 4, registered);
        rc |= tsl_store_bind_text(stmt, 5, running ? "running" : "stopped");
        rc |= sqlite3_bind_int64(stmt, 6, capacity);
        rc |= sqlite3_bind_int64(stmt, 7, connections);
        rc |= sqlite3_bind_int64(stmt, 8, 5 + rng_below(&g->r, 150));
        /* Most servers have no heartbeat recorded; a silent one's last
         * heartbeat is a month old. */
        if (silent)
            rc |= sqlite3_bind_int64(stmt, 9, TSL_ESTATE_EPOCH - 30 * 86400);
        rc |= sqlite3_bind_int(stmt, 10, 0xff);
        if ((err = step_id(g, stmt, rc, "writing a task server", &g->server_ids[j])) < 0)
            return err;
        if (!manual)
            continue;   /* resolves to a site by its IP */
        for (int pos = 0; pos < (second && g->nsites > 1 ? 2 : 1); pos++) {
            site *to = pos ? &g->sites[(si + 1) % g->nsites] : s;
            if (!(stmt = tsl_store_stmt(g->st, TSL_STMT_SERVER_SITE_INSERT)))
                return TSL_ESTORE;
            rc = sqlite3_bind_int64(stmt, 1, g->server_ids[j]);
            rc |= sqlite3_bind_int64(stmt, 2, to->id);
            rc |= sqlite3_bind_int(stmt, 3, pos);
            if ((err = step_done(g, stmt, rc, "writing a server site")) < 0)
                return err;
        }
    }
    return 0;
}

static const char *const departments[] = {"Finance", "Sales",      "Engineering", "IT",
                                          "HR",      "Operations", "Marketing",   "Support"};
static const char *const error_texts[] = {"timeout", "connection refused",
                                          "TLS handshake failed", "HTTP 503"};

static void guid_text(rng *r, char *dst, size_t n)
{
    uint64_t a = rng_next(r), b = rng_next(r);

    /* A version-4 UUID layout, upper case as ITMS shows them. */
    snprintf(dst, n, "%08X-%04X-4%03X-%04X-%012llX", (unsigned)(a >> 32),
             (unsigned)((a >> 16) & 0xffff), (unsigned)(a & 0xfff),
             (unsigned)(0x8000 | ((b >> 48) & 0x3fff)),
             (unsigned long long)(b & UINT64_C(0xffffffffffff)));
}

static int gen_errors(gen *g, int64_t client_id, const site *s)
{
    uint32_t n = 1 + rng_below(&g->r, 2), e;
    int err;

    if (!s->nservers)
        return 0;
    for (e = 0; e < n; e++) {
        uint32_t j = s->first_server + g->nsites * rng_below(&g->r, s->nservers);
        sqlite3_stmt *stmt = tsl_store_stmt(g->st, TSL_STMT_ERROR_INSERT);
        int rc;

        if (!stmt)
            return TSL_ESTORE;
        rc = sqlite3_bind_int64(stmt, 1, client_id);
        rc |= sqlite3_bind_int64(stmt, 2, g->server_ids[j]);
        rc |= sqlite3_bind_int64(stmt, 3, TSL_ESTATE_EPOCH - rng_below(&g->r, 7200));
        rc |= tsl_store_bind_text(stmt, 4, error_texts[rng_below(&g->r, 4)]);
        if ((err = step_done(g, stmt, rc, "writing a connection error")) < 0)
            return err;
    }
    return 0;
}

static int gen_clients(gen *g, uint32_t nclients)
{
    uint32_t i, nbig = g->nsites / 4 ? g->nsites / 4 : 1;
    int err;

    for (i = 0; i < nclients; i++) {
        tsl_progress_tick("clients", i, nclients);
        /* Half the clients live in the first quarter of the sites: a few
         * head offices, many small branches. */
        uint32_t si = rng_chance(&g->r, 500) ? rng_below(&g->r, nbig)
                                              : rng_below(&g->r, g->nsites);
        site *s = &g->sites[si];
        char guid[40], name[48], ip[64], code[16];
        const char *dept = departments[rng_below(&g->r, 8)];
        int64_t explicit_site = 0;
        sqlite3_stmt *stmt;
        size_t c;
        int rc;

        guid_text(&g->r, guid, sizeof guid);
        for (c = 0; c < sizeof code - 1 && s->code[c]; c++)
            code[c] = (char)toupper((unsigned char)s->code[c]);
        code[c] = '\0';
        snprintf(name, sizeof name, "%s-PC-%06u", code, i + 1);
        if (rng_chance(&g->r, 20)) {
            /* Home workers and guests: an address no site owns. */
            snprintf(ip, sizeof ip, "192.168.%u.%u", rng_below(&g->r, 256),
                     1 + rng_below(&g->r, 254));
        } else if (s->v6 && rng_chance(&g->r, 100)) {
            tsl_ip a;
            v6_addr(g, si, rng_next(&g->r) | 1, &a);
            tsl_ip_format(ip, sizeof ip, &a);
        } else {
            /* Above the servers' /24 and below the /24s carved off the top. */
            uint32_t room = (s->v4len == 16 ? 199u : 15u) * 256u - 1u;
            v4_text(ip, sizeof ip, s->v4 + 256 + rng_below(&g->r, room));
        }
        if (rng_chance(&g->r, 50))
            explicit_site = g->sites[rng_below(&g->r, g->nsites)].id;
        if (!(stmt = tsl_store_stmt(g->st, TSL_STMT_CLIENT_INSERT)))
            return TSL_ESTORE;
        rc = tsl_store_bind_text(stmt, 1, guid);
        rc |= tsl_store_bind_text(stmt, 2, name);
        rc |= tsl_store_bind_text(stmt, 3, ip);
        rc |= tsl_store_bind_text(stmt, 4, dept);
        if (explicit_site)
            rc |= sqlite3_bind_int64(stmt, 5, explicit_site);
        if ((err = step_done(g, stmt, rc, "writing a client")) < 0)
            return err;
        if (rng_chance(&g->r, 10) &&
            (err = gen_errors(g, sqlite3_last_insert_rowid(tsl_store_db(g->st)), s)) < 0)
            return err;
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Entry point
 * ---------------------------------------------------------------------- */

static int check_empty(tsl_store *st)
{
    sqlite3_stmt *stmt = tsl_store_stmt(st, TSL_STMT_INVENTORY_COUNT);
    int err = 0;

    if (!stmt)
        return TSL_ESTORE;
    if (sqlite3_step(stmt) != SQLITE_ROW)
        err = tsl_store_err(st, "counting the inventory");
    else if (sqlite3_column_int64(stmt, 0) > 0)
        err = tsl_seterr(TSL_EEXISTS,
                         "the store already holds an inventory; generate into a new store");
    sqlite3_reset(stmt);
    return err;
}

int tsl_estate_generate(tsl_store *st, unsigned sites, unsigned servers, unsigned clients,
                        uint64_t seed)
{
    city_list cities = {NULL, 0, 0};
    gen g;
    uint32_t ncodes;
    bool in_txn = false;
    int err;

    TSL_ARG(st);
    memset(&g, 0, sizeof g);
    if (sites < 1 || sites > TSL_ESTATE_MAX_SITES || servers > TSL_ESTATE_MAX_SERVERS ||
        clients > TSL_ESTATE_MAX_CLIENTS) {
        err = tsl_seterr(TSL_ELIMIT,
                         "an estate needs 1 to %u sites, at most %u servers and %u clients "
                         "(asked for %u, %u, %u)",
                         TSL_ESTATE_MAX_SITES, TSL_ESTATE_MAX_SERVERS, TSL_ESTATE_MAX_CLIENTS,
                         sites, servers, clients);
        goto done;
    }
    g.st = st;
    g.r.s = seed;
    g.nsites = sites;
    g.nservers = servers;
    for (ncodes = 16; ncodes < 2 * sites; ncodes *= 2)
        ;
    g.code_mask = ncodes - 1;
    if (!(g.sites = calloc(sites, sizeof *g.sites)) ||
        !(g.codes = calloc(ncodes, sizeof *g.codes)) ||
        !(g.server_ids = calloc(servers ? servers : 1, sizeof *g.server_ids))) {
        err = tsl_oom();
        goto done;
    }
    /* 10/8, 172.16/12, 100.64/10, then two more /8s for very large estates
     * (192.168/16 stays free for the clients that match no site). */
    g.pools[0] = (pool){0x0a000000u, 0, 4096};
    g.pools[1] = (pool){0xac100000u, 0, 256};
    g.pools[2] = (pool){0x64400000u, 0, 1024};
    g.pools[3] = (pool){0x0b000000u, 0, 4096};
    g.pools[4] = (pool){0x0c000000u, 0, 4096};
    g.v6_global = (uint32_t)(rng_next(&g.r) & 0xffffff);
    if ((err = load_cities(&cities)) < 0)
        goto done;
    if ((err = tsl_store_begin(st)) < 0)
        goto done;
    in_txn = true;
    if ((err = check_empty(st)) < 0 || (err = gen_sites(&g, &cities)) < 0 ||
        (err = gen_servers(&g)) < 0 || (err = gen_clients(&g, clients)) < 0)
        goto done;
    in_txn = false;
    err = tsl_store_commit(st);

done:
    tsl_progress_tick("clients", clients, clients); /* the end, whatever happened */
    if (in_txn)
        tsl_store_rollback(st);
    free(cities.v);
    free(g.sites);
    free(g.codes);
    free(g.server_ids);
    return err;
}
