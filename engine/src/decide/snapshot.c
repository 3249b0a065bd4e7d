/*
 * snapshot.c - building, sealing, looking up and sharing the immutable
 * in-memory inventory.
 *
 * A snapshot is filled through the snap_add_* builder (snapshot_load.c does
 * it from the store, tests do it by hand), then sealed: sealing derives
 * every server's home site, each site's default candidates and the
 * per-client error slices, so decisions only read.  After sealing nothing
 * changes, which is what lets many threads decide against one snapshot.
 * A changed picture of the servers is a new snapshot derived from the old
 * one (tsl_snapshot_derive), sharing everything that did not change.
 */
#include "snapshot.h"

#include "conflicts.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ------------------------------------------------------------------------
 * Arena: every string and small array of a snapshot, freed in one go.
 * ---------------------------------------------------------------------- */

typedef struct snap_arena {
    struct snap_arena *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
} snap_arena;

/* n bytes at a multiple of align (a power of two, at most 16): strings
 * take align 1, so a 37-byte GUID costs 37 bytes, not 48 (a million
 * clients' GUIDs, names and addresses are most of a snapshot). */
static void *arena_take(tsl_snapshot *s, size_t n, size_t align)
{
    snap_arena *a = s->arena;
    size_t at = a ? (a->used + align - 1) & ~(align - 1) : 0;
    if (!a || at > a->cap || a->cap - at < n) {
        size_t cap = n > 65536 ? n : 65536;
        a = malloc(sizeof *a + cap);
        if (!a)
            return NULL;
        a->next = s->arena;
        a->cap = cap;
        s->arena = a;
        at = 0;
    }
    a->used = at + n;
    return a->data + at;
}

static void *arena_alloc(tsl_snapshot *s, size_t n)
{
    return arena_take(s, n, 16);
}

const char *snap_strdup(tsl_snapshot *s, const char *str)
{
    if (!str)
        return NULL;
    if (!*str)
        return ""; /* clients without a name or address share it */
    size_t n = strlen(str) + 1;
    char *p = arena_take(s, n, 1);
    if (p)
        memcpy(p, str, n);
    return p;
}

/* ------------------------------------------------------------------------
 * Case-insensitive name indexes (names, GUIDs and hosts are not case
 * sensitive in ITMS).
 * ---------------------------------------------------------------------- */

static uint64_t hash_name(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        h ^= (uint64_t)tolower(*p);
        h *= 0x100000001b3ULL;
    }
    return h ^ (h >> 29);
}

typedef const char *(*name_of_fn)(const tsl_snapshot *s, uint32_t i);

static const char *site_name(const tsl_snapshot *s, uint32_t i) { return s->sites[i].name; }
static const char *server_name(const tsl_snapshot *s, uint32_t i) { return s->servers[i].name; }
static const char *client_guid(const tsl_snapshot *s, uint32_t i) { return s->clients[i].guid; }
static const char *client_name(const tsl_snapshot *s, uint32_t i) { return s->clients[i].name; }

static int32_t index_find(const tsl_snapshot *s, const snap_index *ix, name_of_fn name_of,
                          const char *name)
{
    if (!ix->slots || !name)
        return -1;
    for (uint32_t h = (uint32_t)hash_name(name) & ix->mask;; h = (h + 1) & ix->mask) {
        uint32_t v = ix->slots[h];
        if (!v)
            return -1;
        if (strcasecmp(name_of(s, v - 1), name) == 0)
            return (int32_t)(v - 1);
    }
}

static void index_place(const tsl_snapshot *s, snap_index *ix, name_of_fn name_of, uint32_t pos)
{
    uint32_t h = (uint32_t)hash_name(name_of(s, pos)) & ix->mask;
    while (ix->slots[h])
        h = (h + 1) & ix->mask;
    ix->slots[h] = pos + 1;
}

/* Adds entry `pos`, growing to keep the load under one half. */
static int index_add(const tsl_snapshot *s, snap_index *ix, name_of_fn name_of, uint32_t pos)
{
    if (!ix->slots || (ix->count + 1) * 2 > ix->mask + 1) {
        uint32_t size = ix->slots ? (ix->mask + 1) * 2 : 64;
        uint32_t *slots = calloc(size, sizeof *slots);
        if (!slots)
            return tsl_oom();
        uint32_t *old = ix->slots;
        uint32_t oldsize = old ? ix->mask + 1 : 0;
        ix->slots = slots;
        ix->mask = size - 1;
        for (uint32_t i = 0; i < oldsize; i++)
            if (old[i])
                index_place(s, ix, name_of, old[i] - 1);
        free(old);
    }
    index_place(s, ix, name_of, pos);
    ix->count++;
    return 0;
}

int32_t snap_find_site(const tsl_snapshot *s, const char *name)
{
    return index_find(s, &s->site_idx, site_name, name);
}

int32_t snap_find_server(const tsl_snapshot *s, const char *name)
{
    return index_find(s, &s->server_idx, server_name, name);
}

int32_t snap_find_client(const tsl_snapshot *s, const char *guid)
{
    return index_find(s, &s->client_idx, client_guid, guid);
}

uint32_t snap_find_clients_by_name(const tsl_snapshot *s, const char *name, uint32_t *out,
                                   uint32_t max)
{
    const snap_index *ix = &s->name_idx;
    uint32_t n = 0;

    if (!ix->slots || !name || !*name)
        return 0;
    /* Equal names share one probe sequence: walk it to the first gap. */
    for (uint32_t h = (uint32_t)hash_name(name) & ix->mask;; h = (h + 1) & ix->mask) {
        uint32_t v = ix->slots[h];
        if (!v)
            return n;
        if (strcasecmp(s->clients[v - 1].name, name) == 0) {
            if (n < max)
                out[n] = v - 1;
            n++;
        }
    }
}

int tsl_snapshot_find_client(const char **out, const tsl_snapshot *snap, const char *key)
{
    uint32_t found[8], n;
    int32_t ci;

    TSL_ARG(out);
    *out = NULL;
    TSL_ARG(snap && key);
    if ((ci = snap_find_client(snap, key)) >= 0) {
        *out = snap->clients[ci].guid;
        return 0;
    }
    n = snap_find_clients_by_name(snap, key, found, 8);
    if (n == 1) {
        *out = snap->clients[found[0]].guid;
        return 0;
    }
    for (uint32_t i = 1; i < n && i < 8; i++) /* inventory order, for a stable message */
        for (uint32_t k = i; k > 0 && found[k - 1] > found[k]; k--) {
            uint32_t t = found[k];
            found[k] = found[k - 1];
            found[k - 1] = t;
        }
    if (n == 0)
        return tsl_seterr(TSL_ENOTFOUND, "no client with GUID or name \"%s\"", key);
    {
        char list[8 * 80 + 32];
        size_t off = 0;
        for (uint32_t i = 0; i < n && i < 8; i++) {
            int w = snprintf(list + off, sizeof list - off, "%s%s (%s)", i ? ", " : "",
                             snap->clients[found[i]].guid, snap->clients[found[i]].ip[0]
                                                               ? snap->clients[found[i]].ip
                                                               : "no IP");
            if (w < 0 || (size_t)w >= sizeof list - off)
                break;
            off += (size_t)w;
        }
        return tsl_seterr(TSL_EINVALID,
                          "%u clients are named \"%s\": %s%s; name one by its GUID", n, key,
                          list, n > 8 ? ", ..." : "");
    }
}

int64_t snap_heartbeat_age(const tsl_snapshot *s, const snap_server *sv, int64_t now)
{
    if (sv->heartbeat == 0)
        return 0;
    int64_t from = sv->heartbeat < s->settings.heard_since ? s->settings.heard_since : sv->heartbeat;
    return now - from;
}

bool snap_server_available(const tsl_snapshot *s, const snap_server *sv, int64_t now)
{
    if (!sv->registered || !sv->running)
        return false;
    return snap_heartbeat_age(s, sv, now) <= s->settings.stale_after;
}

/* ------------------------------------------------------------------------
 * Building
 * ---------------------------------------------------------------------- */

typedef struct snap_pending_error {
    uint32_t client, server;
    int64_t at;
} snap_pending_error;

/* Grows *arr (of elem bytes, *cap entries) so that index `need` fits. */
static int grow(void **arr, uint32_t *cap, uint32_t need, size_t elem)
{
    if (need < *cap)
        return 0;
    uint32_t ncap = *cap ? *cap * 2 : 64;
    while (ncap <= need)
        ncap *= 2;
    void *p = realloc(*arr, (size_t)ncap * elem);
    if (!p)
        return tsl_oom();
    memset((char *)p + (size_t)*cap * elem, 0, (size_t)(ncap - *cap) * elem);
    *arr = p;
    *cap = ncap;
    return 0;
}

int tsl_snapshot_begin(tsl_snapshot **out, const tsl_settings *settings)
{
    tsl_snapshot *s = calloc(1, sizeof *s);
    *out = NULL;
    if (!s)
        return tsl_oom();
    atomic_init(&s->refs, 1);
    if (settings)
        s->settings = *settings;
    else
        tsl_settings_init(&s->settings);
    tsl_lpm_init(&s->lpm);
    s->built_at = (int64_t)time(NULL);
    *out = s;
    return 0;
}

int snap_add_site(tsl_snapshot *s, const char *name, const char *country, const double *lat,
                  const double *lon)
{
    if (s->sealed)
        return tsl_seterr(TSL_ERROR, "snapshot is sealed");
    if (!name || !*name)
        return tsl_seterr(TSL_EINVALID, "site without a name");
    if (snap_find_site(s, name) >= 0)
        return tsl_seterr(TSL_EEXISTS, "site \"%s\" is defined twice", name);
    int err = grow((void **)&s->sites, &s->cap_sites, s->nsites, sizeof *s->sites);
    if (err < 0)
        return err;
    snap_site *site = &s->sites[s->nsites];
    memset(site, 0, sizeof *site);
    site->name = snap_strdup(s, name);
    site->country = country && *country ? snap_strdup(s, country) : NULL;
    if (!site->name || (country && *country && !site->country))
        return tsl_oom();
    if (lat && lon) {
        site->lat = *lat;
        site->lon = *lon;
        site->has_coords = true;
    }
    if ((err = index_add(s, &s->site_idx, site_name, s->nsites)) < 0)
        return err;
    s->nsites++;
    return 0;
}

int snap_add_subnet(tsl_snapshot *s, const char *site, const char *cidr)
{
    tsl_ip prefix;
    int bits, err;
    int32_t existing = -1;
    int32_t si = snap_find_site(s, site);

    if (si < 0)
        return tsl_seterr(TSL_ENOTFOUND, "subnet %s names unknown site \"%s\"", cidr, site);
    if ((err = tsl_cidr_parse(&prefix, &bits, cidr)) < 0)
        return err;
    err = tsl_lpm_insert(&s->lpm, &prefix, bits, si, &existing);
    if (err == TSL_EEXISTS) {
        /* The same subnet in several sites (ITMS allows it): the site
         * first by name takes it, whatever the order of loading. */
        for (uint32_t k = 0; k < s->sites[si].nsubnets; k++)
            if (!strcmp(s->sites[si].subnets[k], cidr))
                return 0; /* this site holds it already */
        err = conflicts_site_wins(s->sites[si].name, s->sites[existing].name)
                  ? tsl_lpm_replace(&s->lpm, &prefix, bits, si)
                  : 0;
    }
    if (err < 0)
        return err;

    snap_site *st = &s->sites[si];
    const char **subnets = arena_alloc(s, (st->nsubnets + 1) * sizeof *subnets);
    const char *copy = snap_strdup(s, cidr);
    if (!subnets || !copy)
        return tsl_oom();
    if (st->nsubnets)
        memcpy(subnets, st->subnets, st->nsubnets * sizeof *subnets);
    subnets[st->nsubnets++] = copy;
    st->subnets = subnets;
    return 0;
}

int snap_add_server(tsl_snapshot *s, const char *name, const char *host, const char *ip,
                    const char *const *sites, size_t nsites, bool registered, bool running,
                    int64_t capacity, int64_t connections, int64_t response_ms, int64_t heartbeat)
{
    int err;
    if (s->sealed)
        return tsl_seterr(TSL_ERROR, "snapshot is sealed");
    if (!name || !*name)
        return tsl_seterr(TSL_EINVALID, "task server without a name");
    if (snap_find_server(s, name) >= 0)
        return tsl_seterr(TSL_EEXISTS, "task server \"%s\" is defined twice", name);
    if ((err = grow((void **)&s->servers, &s->cap_servers, s->nservers, sizeof *s->servers)) < 0)
        return err;

    snap_server *sv = &s->servers[s->nservers];
    memset(sv, 0, sizeof *sv);
    sv->name = snap_strdup(s, name);
    sv->host = snap_strdup(s, host ? host : name);
    sv->ip = snap_strdup(s, ip ? ip : "");
    if (!sv->name || !sv->host || !sv->ip)
        return tsl_oom();
    if (ip && *ip) {
        if ((err = tsl_ip_parse(&sv->addr, ip)) < 0)
            return tsl_seterr(err, "task server \"%s\": %s", name, tsl_error_last());
        sv->has_addr = true;
    }
    if (nsites) {
        sv->sites = arena_alloc(s, nsites * sizeof *sv->sites);
        if (!sv->sites)
            return tsl_oom();
        for (size_t i = 0; i < nsites; i++) {
            int32_t si = snap_find_site(s, sites[i]);
            if (si < 0)
                return tsl_seterr(TSL_ENOTFOUND, "task server \"%s\" is assigned to unknown site \"%s\"",
                                  name, sites[i]);
            sv->sites[sv->nsites++] = si;
        }
    }
    sv->home = TSL_NO_SITE;
    sv->registered = registered;
    sv->running = running;
    sv->capacity = capacity;
    sv->connections = connections;
    sv->response_ms = response_ms;
    sv->heartbeat = heartbeat;
    sv->hash = tsl_hash_str(name);
    if ((err = index_add(s, &s->server_idx, server_name, s->nservers)) < 0)
        return err;
    s->nservers++;
    return 0;
}

int snap_add_client(tsl_snapshot *s, const char *guid, const char *name, const char *ip,
                    const char *department, const char *site, const char *assigned)
{
    int err;
    if (s->sealed)
        return tsl_seterr(TSL_ERROR, "snapshot is sealed");
    if (!guid || !*guid)
        return tsl_seterr(TSL_EINVALID, "client without a GUID");
    if (snap_find_client(s, guid) >= 0)
        return tsl_seterr(TSL_EEXISTS, "client \"%s\" is defined twice", guid);
    if ((err = grow((void **)&s->clients, &s->cap_clients, s->nclients, sizeof *s->clients)) < 0)
        return err;

    snap_client *c = &s->clients[s->nclients];
    memset(c, 0, sizeof *c);
    c->guid = snap_strdup(s, guid);
    c->name = snap_strdup(s, name ? name : "");
    c->ip = snap_strdup(s, ip ? ip : "");
    c->department = department && *department ? snap_strdup(s, department) : NULL;
    c->assigned = assigned && *assigned ? snap_strdup(s, assigned) : NULL;
    if (!c->guid || !c->name || !c->ip || (department && *department && !c->department) ||
        (assigned && *assigned && !c->assigned))
        return tsl_oom();
    if (ip && *ip) {
        if ((err = tsl_ip_parse(&c->addr, ip)) < 0)
            return tsl_seterr(err, "client \"%s\": %s", guid, tsl_error_last());
        c->has_addr = true;
    }
    c->site = TSL_NO_SITE;
    if (site && *site) {
        c->site = snap_find_site(s, site);
        if (c->site < 0)
            return tsl_seterr(TSL_ENOTFOUND, "client \"%s\" names unknown site \"%s\"", guid, site);
    }
    if ((err = index_add(s, &s->client_idx, client_guid, s->nclients)) < 0 ||
        (c->name[0] && (err = index_add(s, &s->name_idx, client_name, s->nclients)) < 0))
        return err;
    s->nclients++;
    return 0;
}

int snap_add_error(tsl_snapshot *s, const char *guid, const char *server, int64_t at)
{
    int32_t ci = snap_find_client(s, guid), si = snap_find_server(s, server);
    if (ci < 0)
        return tsl_seterr(TSL_ENOTFOUND, "connection error names unknown client \"%s\"", guid);
    if (si < 0)
        return tsl_seterr(TSL_ENOTFOUND, "connection error names unknown task server \"%s\"",
                          server);
    int err = grow((void **)&s->pending, &s->cap_errors, s->nerrors, sizeof *s->pending);
    if (err < 0)
        return err;
    s->pending[s->nerrors++] = (snap_pending_error){(uint32_t)ci, (uint32_t)si, at};
    return 0;
}

/* ------------------------------------------------------------------------
 * Sealing
 * ---------------------------------------------------------------------- */

static int cmp_pending(const void *a, const void *b)
{
    const snap_pending_error *x = a, *y = b;
    if (x->client != y->client)
        return x->client < y->client ? -1 : 1;
    if (x->at != y->at)
        return x->at > y->at ? -1 : 1; /* newest first */
    return (x->server > y->server) - (x->server < y->server);
}

static int seal_errors(tsl_snapshot *s)
{
    if (!s->nerrors)
        return 0;
    qsort(s->pending, s->nerrors, sizeof *s->pending, cmp_pending);
    s->errors = malloc(s->nerrors * sizeof *s->errors);
    if (!s->errors)
        return tsl_oom();
    for (uint32_t i = 0; i < s->nerrors; i++) {
        snap_client *c = &s->clients[s->pending[i].client];
        if (c->nerr == 0)
            c->err_off = i;
        c->nerr++;
        s->errors[i] = (snap_error){s->pending[i].server, s->pending[i].at};
    }
    free(s->pending);
    s->pending = NULL;
    return 0;
}

/* Rule 2: manual assignments first; an unassigned server belongs to the
 * site its own IP resolves to by longest prefix. */
static int seal_candidates(tsl_snapshot *s)
{
    uint32_t *counts = calloc(s->nsites ? s->nsites : 1, sizeof *counts);
    if (!counts)
        return tsl_oom();
    for (uint32_t i = 0; i < s->nservers; i++) {
        snap_server *sv = &s->servers[i];
        tsl_lpm_match m;
        if (sv->nsites) {
            sv->home = sv->sites[0];
            for (uint32_t k = 0; k < sv->nsites; k++)
                counts[sv->sites[k]]++;
        } else if (sv->has_addr && tsl_lpm_lookup(&s->lpm, &sv->addr, &m)) {
            sv->home = m.value;
            counts[m.value]++;
        }
    }
    for (uint32_t i = 0; i < s->nsites; i++) {
        s->sites[i].cand = counts[i] ? arena_alloc(s, counts[i] * sizeof(uint32_t)) : NULL;
        if (counts[i] && !s->sites[i].cand) {
            free(counts);
            return tsl_oom();
        }
    }
    free(counts);
    for (uint32_t i = 0; i < s->nservers; i++) {
        snap_server *sv = &s->servers[i];
        if (sv->nsites) {
            for (uint32_t k = 0; k < sv->nsites; k++) {
                snap_site *st = &s->sites[sv->sites[k]];
                /* a server listed twice for one site counts once */
                if (st->ncand && st->cand[st->ncand - 1] == i)
                    continue;
                st->cand[st->ncand++] = i;
            }
        } else if (sv->home != TSL_NO_SITE) {
            snap_site *st = &s->sites[sv->home];
            st->cand[st->ncand++] = i;
        }
    }
    return 0;
}

typedef struct keyed {
    double key;
    uint32_t server;
} keyed;

static int keyed_cmp(const void *pa, const void *pb)
{
    const keyed *a = pa, *b = pb;
    if (a->key != b->key)
        return a->key < b->key ? -1 : 1;
    return (a->server > b->server) - (a->server < b->server);
}

/* s->by_key: every server in ranking-key order, per selection mode. */
static int seal_key_order(tsl_snapshot *s)
{
    keyed *tmp = malloc(((size_t)s->nservers + 1) * sizeof *tmp);
    if (!tmp)
        return tsl_oom();
    for (int sel = 0; sel < 3; sel++) {
        uint32_t *ord = arena_alloc(s, ((size_t)s->nservers + 1) * sizeof *ord);
        if (!ord) {
            free(tmp);
            return tsl_oom();
        }
        for (uint32_t i = 0; i < s->nservers; i++)
            tmp[i] = (keyed){snap_rank_key(&s->servers[i], (tsl_selection)sel), i};
        qsort(tmp, s->nservers, sizeof *tmp, keyed_cmp);
        for (uint32_t i = 0; i < s->nservers; i++)
            ord[i] = tmp[i].server;
        s->by_key[sel] = ord;
    }
    free(tmp);
    return 0;
}

int tsl_snapshot_seal(tsl_snapshot *s)
{
    int err;
    if (s->sealed)
        return 0;
    if ((err = seal_candidates(s)) < 0 || (err = seal_errors(s)) < 0 ||
        (err = seal_key_order(s)) < 0)
        return err;
    s->sealed = true;
    return 0;
}

/* ------------------------------------------------------------------------
 * Deriving: new server state and connection errors over a shared root
 * ---------------------------------------------------------------------- */

/* The capacity a server gets when a heartbeat registers it without one
 * (the schema's default, and ITMS's registration cap). */
#define SNAP_DEFAULT_CAPACITY 5000

/* Copies a server's strings and manual sites into this snapshot's arena
 * (they may live in the arena of the snapshot it was copied from). */
static int own_server_strings(tsl_snapshot *d, snap_server *sv)
{
    sv->name = snap_strdup(d, sv->name);
    sv->host = snap_strdup(d, sv->host);
    sv->ip = snap_strdup(d, sv->ip);
    if (!sv->name || !sv->host || !sv->ip)
        return tsl_oom();
    if (sv->nsites) {
        int32_t *sites = arena_alloc(d, sv->nsites * sizeof *sites);
        if (!sites)
            return tsl_oom();
        memcpy(sites, sv->sites, sv->nsites * sizeof *sites);
        sv->sites = sites;
    }
    sv->own_strings = true;
    return 0;
}

static int apply_server_update(tsl_snapshot *d, snap_server *sv, const snap_server_update *u,
                               int64_t now)
{
    bool was_up = sv->registered && sv->running;
    int64_t last_heard = sv->heartbeat;
    int err;
    if (u->set & SNAP_UP_HOST) {
        if (!(sv->host = snap_strdup(d, u->host && *u->host ? u->host : sv->name)))
            return tsl_oom();
        sv->own_strings = true;
    }
    if (u->set & SNAP_UP_IP) {
        tsl_ip addr;
        bool has = u->ip && *u->ip;
        if (has && (err = tsl_ip_parse(&addr, u->ip)) < 0)
            return tsl_seterr(err, "task server \"%s\": %s", sv->name, tsl_error_last());
        if (!(sv->ip = snap_strdup(d, has ? u->ip : "")))
            return tsl_oom();
        sv->has_addr = has;
        if (has)
            sv->addr = addr;
        sv->own_strings = true;
    }
    if (u->set & SNAP_UP_SITES) {
        int32_t *sites = u->nsites ? arena_alloc(d, u->nsites * sizeof *sites) : NULL;
        if (u->nsites && !sites)
            return tsl_oom();
        for (size_t i = 0; i < u->nsites; i++) {
            if ((sites[i] = snap_find_site(d, u->sites[i])) < 0)
                return tsl_seterr(TSL_ENOTFOUND, "task server \"%s\" is assigned to unknown site \"%s\"",
                                  sv->name, u->sites[i]);
        }
        sv->sites = sites;
        sv->nsites = (uint32_t)u->nsites;
        sv->own_strings = true;
    }
    if (u->set & SNAP_UP_REGISTERED)
        sv->registered = u->registered;
    if (u->set & SNAP_UP_RUNNING)
        sv->running = u->running;
    if (u->set & SNAP_UP_CAPACITY)
        sv->capacity = u->capacity;
    if (u->set & SNAP_UP_CONNECTIONS)
        sv->connections = u->connections;
    if (u->set & SNAP_UP_RESPONSE)
        sv->response_ms = u->response_ms;
    if (u->set & SNAP_UP_HEARTBEAT)
        sv->heartbeat = u->heartbeat;
    /* since when it is down, for delayed fallback (policy_eval.c) */
    if (sv->registered && sv->running)
        sv->down_since = 0;
    else if (was_up)
        sv->down_since = u->set & SNAP_UP_HEARTBEAT && u->heartbeat ? u->heartbeat : now;
    else if (!sv->down_since) /* down already when loaded: since its last report then */
        sv->down_since = last_heard ? last_heard : now;
    return 0;
}

static int cmp_extra(const void *a, const void *b)
{
    const snap_extra_error *x = a, *y = b;
    if (x->client != y->client)
        return x->client < y->client ? -1 : 1;
    if (x->at != y->at)
        return x->at > y->at ? -1 : 1; /* newest first */
    return (x->server > y->server) - (x->server < y->server);
}

/* The errors of `base` still inside the window, plus the new ones. */
static int derive_errors(tsl_snapshot *d, const tsl_snapshot *base, const snap_error_update *errs,
                         size_t nerrs, int64_t now)
{
    size_t cap = (size_t)base->nextra + nerrs;
    if (!cap)
        return 0;
    if (cap > UINT32_MAX)
        return tsl_seterr(TSL_ELIMIT, "too many connection errors (%zu)", cap);
    if (!(d->extra = malloc(cap * sizeof *d->extra)))
        return tsl_oom();
    for (uint32_t i = 0; i < base->nextra; i++) {
        if (now - base->extra[i].at <= d->settings.error_window)
            d->extra[d->nextra++] = base->extra[i];
    }
    for (size_t i = 0; i < nerrs; i++) {
        int32_t ci = snap_find_client(d, errs[i].client);
        int32_t si = snap_find_server(d, errs[i].server);
        if (ci >= 0 && si >= 0)
            d->extra[d->nextra++] = (snap_extra_error){(uint32_t)ci, (uint32_t)si, errs[i].at};
    }
    qsort(d->extra, d->nextra, sizeof *d->extra, cmp_extra);
    return 0;
}

int tsl_snapshot_derive(tsl_snapshot **out, tsl_snapshot *base, const snap_server_update *ups,
                        size_t nups, const snap_error_update *errs, size_t nerrs, int64_t now)
{
    tsl_snapshot *d = NULL;
    int err;

    TSL_ARG(out);
    *out = NULL;
    TSL_ARG(base && base->sealed);
    tsl_snapshot *root = base->root ? base->root : base;
    if ((err = tsl_snapshot_begin(&d, &base->settings)) < 0)
        goto done;
    d->root = tsl_snapshot_ref(root);
    d->built_at = now;
    /* borrowed from the root (see tsl_snapshot_free) */
    d->lpm = root->lpm;
    d->site_idx = root->site_idx;
    d->client_idx = root->client_idx;
    d->name_idx = root->name_idx;
    d->clients = root->clients;
    d->nclients = root->nclients;
    d->errors = root->errors;
    d->nerrors = root->nerrors;

    /* sites: a copy, since the candidate lists are recomputed below */
    if (base->nsites) {
        if (!(d->sites = malloc(base->nsites * sizeof *d->sites))) {
            err = tsl_oom();
            goto done;
        }
        memcpy(d->sites, base->sites, base->nsites * sizeof *d->sites);
        for (uint32_t i = 0; i < base->nsites; i++) {
            d->sites[i].cand = NULL;
            d->sites[i].ncand = 0;
        }
        d->nsites = d->cap_sites = base->nsites;
    }

    /* servers: a copy with the updates applied and new ones appended */
    if (base->nservers) {
        if ((err = grow((void **)&d->servers, &d->cap_servers, base->nservers - 1,
                        sizeof *d->servers)) < 0)
            goto done;
        memcpy(d->servers, base->servers, base->nservers * sizeof *d->servers);
    }
    for (uint32_t i = 0; i < base->nservers; i++) {
        if ((d->servers[i].own_strings && (err = own_server_strings(d, &d->servers[i])) < 0) ||
            (err = index_add(d, &d->server_idx, server_name, i)) < 0)
            goto done;
        d->servers[i].home = TSL_NO_SITE; /* recomputed when sealing */
        d->nservers = i + 1;
    }
    for (size_t i = 0; i < nups; i++) {
        const snap_server_update *u = &ups[i];
        int32_t si = snap_find_server(d, u->name);
        if (si < 0) {
            /* a new name registers the server: defaults, then the update */
            if ((err = snap_add_server(d, u->name, NULL, NULL, NULL, 0, true, true,
                                       SNAP_DEFAULT_CAPACITY, 0, 0, 0)) < 0)
                goto done;
            si = (int32_t)d->nservers - 1;
            d->servers[si].own_strings = true;
        }
        if ((err = apply_server_update(d, &d->servers[si], u, now)) < 0)
            goto done;
    }

    if ((err = derive_errors(d, base, errs, nerrs, now)) < 0 ||
        (err = seal_candidates(d)) < 0 || (err = seal_key_order(d)) < 0)
        goto done;
    d->sealed = true;
    *out = d;
    d = NULL;

done:
    tsl_snapshot_free(d);
    return err;
}

const snap_extra_error *snap_client_extra_errors(const tsl_snapshot *s, uint32_t ci, uint32_t *n)
{
    uint32_t lo = 0, hi = s->nextra;
    *n = 0;
    while (lo < hi) { /* first entry of client ci */
        uint32_t mid = lo + (hi - lo) / 2;
        if (s->extra[mid].client < ci)
            lo = mid + 1;
        else
            hi = mid;
    }
    uint32_t end = lo;
    while (end < s->nextra && s->extra[end].client == ci)
        end++;
    *n = end - lo;
    return *n ? &s->extra[lo] : NULL;
}

/* ------------------------------------------------------------------------
 * Sharing and the public getters
 * ---------------------------------------------------------------------- */

tsl_snapshot *tsl_snapshot_ref(tsl_snapshot *snap)
{
    if (snap)
        atomic_fetch_add_explicit(&snap->refs, 1, memory_order_relaxed);
    return snap;
}

void tsl_snapshot_free(tsl_snapshot *snap)
{
    if (!snap || atomic_fetch_sub_explicit(&snap->refs, 1, memory_order_acq_rel) != 1)
        return;
    tsl_snapshot *root = snap->root;
    if (!root) {
        /* a derived snapshot borrows these from its root */
        tsl_lpm_free(&snap->lpm);
        free(snap->site_idx.slots);
        free(snap->client_idx.slots);
        free(snap->name_idx.slots);
        free(snap->clients);
        free(snap->errors);
    }
    free(snap->server_idx.slots);
    free(snap->sites);
    free(snap->servers);
    free(snap->pending);
    free(snap->extra);
    for (snap_arena *a = snap->arena, *next; a; a = next) {
        next = a->next;
        free(a);
    }
    free(snap);
    tsl_snapshot_free(root);
}

const tsl_settings *tsl_snapshot_settings(const tsl_snapshot *snap) { return &snap->settings; }
size_t tsl_snapshot_site_count(const tsl_snapshot *snap) { return snap->nsites; }
size_t tsl_snapshot_server_count(const tsl_snapshot *snap) { return snap->nservers; }
size_t tsl_snapshot_client_count(const tsl_snapshot *snap) { return snap->nclients; }
int64_t tsl_snapshot_built_at(const tsl_snapshot *snap) { return snap->built_at; }

int tsl_snapshot_client_request(tsl_request *req, const tsl_snapshot *snap, size_t i)
{
    if (i >= snap->nclients)
        return tsl_seterr(TSL_ENOTFOUND, "no client #%zu (the inventory has %u)", i,
                          snap->nclients);
    const snap_client *c = &snap->clients[i];
    memset(req, 0, sizeof *req);
    req->client = c->guid;
    if (c->ip[0]) {
        req->ips[0] = c->ip;
        req->nips = 1;
    }
    return 0;
}
