/*
 * snapshot.h - the immutable in-memory inventory every decision runs against.
 *
 * Built once from the store (snapshot_load.c) or by hand in tests through
 * the builder below; never changed after tsl_snapshot_seal().  All strings
 * live in the snapshot's own arena, so entries and results can borrow them.
 *
 * Used by: decide.c, policy binding, reports, the broker.  Needs: lpm.h.
 */
#ifndef TSL_SNAPSHOT_H
#define TSL_SNAPSHOT_H

#include "common.h"
#include "lpm.h"

#include <stdatomic.h>

#define TSL_NO_SITE (-1)

typedef struct snap_site {
    const char *name;
    const char *country;   /* ISO code or NULL */
    double lat, lon;
    bool has_coords;
    uint32_t *cand;        /* default candidates: server indices, ascending */
    uint32_t ncand;
    const char **subnets;  /* CIDR texts, for explain */
    uint32_t nsubnets;
} snap_site;

typedef struct snap_server {
    const char *name, *host, *ip;   /* ip text, "" when unknown */
    tsl_ip addr;
    bool has_addr;
    int32_t *sites;        /* manual site assignments */
    uint32_t nsites;
    int32_t home;          /* site: first manual one, else by own IP, else TSL_NO_SITE */
    bool registered;
    bool running;          /* service == "running" */
    int64_t capacity, connections, response_ms;
    int64_t heartbeat;     /* Unix seconds, 0 = none recorded */
    uint64_t hash;         /* of the name, for the tie-break */
} snap_server;

typedef struct snap_error {
    uint32_t server;
    int64_t at;
} snap_error;

typedef struct snap_client {
    const char *guid, *name, *ip, *department;
    tsl_ip addr;
    bool has_addr;
    int32_t site;          /* explicit site or TSL_NO_SITE */
    uint32_t err_off, nerr;/* slice of tsl_snapshot.errors */
    const char *assigned;  /* server of its last successful registration, or NULL */
} snap_client;

/* Open-addressing index: case-insensitive name -> position + 1 (0 = empty). */
typedef struct snap_index {
    uint32_t *slots;
    uint32_t mask;         /* slots - 1; slots is a power of two */
    uint32_t count;
} snap_index;

struct tsl_snapshot {
    atomic_int refs;
    tsl_settings settings;
    int64_t built_at;
    snap_site *sites;     uint32_t nsites;
    snap_server *servers; uint32_t nservers;
    snap_client *clients; uint32_t nclients;
    snap_error *errors;   uint32_t nerrors;
    tsl_lpm lpm;           /* site subnets -> site index */
    snap_index site_idx, server_idx, client_idx;
    struct snap_arena *arena;
    uint32_t cap_sites, cap_servers, cap_clients, cap_errors; /* while building */
    struct snap_pending_error *pending; /* errors added before seal */
    bool sealed;
};

/* ---- lookups (snapshot.c) ---- */
TSL_INTERNAL int32_t snap_find_site(const tsl_snapshot *s, const char *name);
TSL_INTERNAL int32_t snap_find_server(const tsl_snapshot *s, const char *name);
TSL_INTERNAL int32_t snap_find_client(const tsl_snapshot *s, const char *guid);
/* Availability rule 3: registered, running, heartbeat not stale. */
TSL_INTERNAL bool snap_server_available(const tsl_snapshot *s, const snap_server *sv,
                                        int64_t now);

/* ---- building (snapshot.c) ----
 * Create with tsl_snapshot_begin, add sites, then servers, then clients,
 * then errors (names resolve against what is already added), then seal:
 * sealing builds the trie, the candidate lists and the indexes. */
TSL_INTERNAL int tsl_snapshot_begin(tsl_snapshot **out, const tsl_settings *settings);
TSL_INTERNAL int snap_add_site(tsl_snapshot *s, const char *name, const char *country,
                               const double *lat, const double *lon);
TSL_INTERNAL int snap_add_subnet(tsl_snapshot *s, const char *site, const char *cidr);
/* `sites` may be NULL/0; heartbeat 0 = none. */
TSL_INTERNAL int snap_add_server(tsl_snapshot *s, const char *name, const char *host,
                                 const char *ip, const char *const *sites, size_t nsites,
                                 bool registered, bool running, int64_t capacity,
                                 int64_t connections, int64_t response_ms,
                                 int64_t heartbeat);
/* `site` may be NULL; `assigned` may be NULL. */
TSL_INTERNAL int snap_add_client(tsl_snapshot *s, const char *guid, const char *name,
                                 const char *ip, const char *department,
                                 const char *site, const char *assigned);
TSL_INTERNAL int snap_add_error(tsl_snapshot *s, const char *guid, const char *server,
                                int64_t at);
TSL_INTERNAL int tsl_snapshot_seal(tsl_snapshot *s);
/* Copies a string into the snapshot arena (NULL stays NULL). */
TSL_INTERNAL const char *snap_strdup(tsl_snapshot *s, const char *str);

#endif
