/*
 * snapshot.c - building, sealing, looking up and sharing the immutable
 * in-memory inventory.
 *
 * A snapshot is filled through the snap_add_* builder (snapshot_load.c does
 * it from the store, tests do it by hand), then sealed: sealing derives
 * every server's home site, each site's default candidates and the
 * per-client error slices, so decisions only read.  After sealing nothing
 * changes, which is what lets many threads decide against one snapshot.
 */
#include "snapshot.h"

#include <ctype.h>
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

static void *arena_alloc(tsl_snapshot *s, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    snap_arena *a = s->arena;
    if (!a || a->cap - a->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        a = malloc(sizeof *a + cap);
        if (!a)
            return NULL;
        a->next = s->arena;
        a->used = 0;
        a->cap = cap;
        s->arena = a;
    }
    void *p = a->data + a->used;
    a->used += n;
    return p;
}

const char *snap_strdup(tsl_snapshot *s, const char *str)
{
    if (!str)
        return NULL;
    size_t n = strlen(str) + 1;
    char *p = arena_alloc(s, n);
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

bool snap_server_available(const tsl_snapshot *s, const snap_server *sv, int64_t now)
{
    if (!sv->registered || !sv->running)
        return false;
    return sv->heartbeat == 0 || now - sv->heartbeat <= s->settings.stale_after;
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
    if (err == TSL_EEXISTS)
        return tsl_seterr(TSL_EEXISTS, "subnet %s of site \"%s\" already belongs to site \"%s\"",
                          cidr, site, s->sites[existing].name);
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
    if ((err = index_add(s, &s->client_idx, client_guid, s->nclients)) < 0)
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

int tsl_snapshot_seal(tsl_snapshot *s)
{
    int err;
    if (s->sealed)
        return 0;
    if ((err = seal_candidates(s)) < 0 || (err = seal_errors(s)) < 0)
        return err;
    s->sealed = true;
    return 0;
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
    tsl_lpm_free(&snap->lpm);
    free(snap->site_idx.slots);
    free(snap->server_idx.slots);
    free(snap->client_idx.slots);
    free(snap->sites);
    free(snap->servers);
    free(snap->clients);
    free(snap->errors);
    free(snap->pending);
    for (snap_arena *a = snap->arena, *next; a; a = next) {
        next = a->next;
        free(a);
    }
    free(snap);
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
