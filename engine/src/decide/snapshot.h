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
    int64_t down_since;    /* when a heartbeat or update made it unregistered or stopped
                            * (derived snapshots); 0 unknown (see decide_down_since) */
    uint64_t hash;         /* of the name, for the tie-break */
    bool own_strings;      /* derived snapshots: name, host, ip and sites live in this
                            * snapshot's arena, not the root's (see tsl_snapshot_derive) */
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

/* Open-addressing index: case-insensitive name -> position + 1 (0 = empty).
 * Equal names may repeat (clients' computer names): they share a probe
 * sequence. */
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
    snap_index name_idx;   /* clients by computer name (names may repeat) */
    struct snap_arena *arena;
    uint32_t cap_sites, cap_servers, cap_clients, cap_errors; /* while building */
    struct snap_pending_error *pending; /* errors added before seal */
    /* Every server, sorted by its ranking key (snap_rank_key) and then by
     * index, one order per selection mode: sealing and deriving build them,
     * so a list over the whole estate walks best-first and stops early
     * (the default logic's fallback, the policy layer's tiers). */
    uint32_t *by_key[3];
    bool sealed;
    /* Derived snapshots only (tsl_snapshot_derive): the root lends its
     * sites' names and subnets, trie, site and client indexes, clients and
     * their errors (a reference is held); `extra` are the connection errors
     * reported since, sorted by client, newest first. */
    tsl_snapshot *root;
    struct snap_extra_error *extra; uint32_t nextra;
};

/* A server's ranking key under a selection mode: lower ranks first (ties
 * and recent connection errors are the decision's to break). */
static inline double snap_rank_key(const snap_server *sv, tsl_selection sel)
{
    switch (sel) {
    case TSL_SELECT_RESPONSIVENESS:
        return (double)sv->response_ms;
    case TSL_SELECT_CONNECTIONS:
        return (double)sv->connections;
    case TSL_SELECT_CAPACITY:
    default:
        /* relative remaining capacity, highest first */
        return sv->capacity > 0
                   ? -((double)(sv->capacity - sv->connections) / (double)sv->capacity)
                   : 0.0;
    }
}

/* ---- lookups (snapshot.c) ---- */
TSL_INTERNAL int32_t snap_find_site(const tsl_snapshot *s, const char *name);
TSL_INTERNAL int32_t snap_find_server(const tsl_snapshot *s, const char *name);
TSL_INTERNAL int32_t snap_find_client(const tsl_snapshot *s, const char *guid);
/* Clients whose computer name is `name` (ignoring case): how many, the
 * first `max` of them into out[] (inventory order is not kept). */
TSL_INTERNAL uint32_t snap_find_clients_by_name(const tsl_snapshot *s, const char *name,
                                                uint32_t *out, uint32_t max);
/* Seconds since the server's last heartbeat, counted from
 * settings.heard_since at most; 0 when none was recorded. */
TSL_INTERNAL int64_t snap_heartbeat_age(const tsl_snapshot *s, const snap_server *sv,
                                        int64_t now);
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
/* ---- deriving (snapshot.c) ----
 * A new snapshot from `base` with changed server state and new connection
 * errors, without reloading anything: it shares the root's sites, trie,
 * clients and indexes (holding a reference to the root, never to `base`,
 * so chains of derivations do not pile up) and owns a copy of the server
 * table (2,000 servers: a few hundred kilobytes) with the updates applied,
 * new servers appended, and the site candidates recomputed.  The broker
 * derives one at most every refresh interval from heartbeats and
 * registration reports.  Connection errors naming an unknown client or
 * server are skipped; carried-over errors older than error_window at `now`
 * are dropped. */
enum {
    SNAP_UP_HOST = 1u << 0,
    SNAP_UP_IP = 1u << 1,
    SNAP_UP_SITES = 1u << 2,
    SNAP_UP_REGISTERED = 1u << 3,
    SNAP_UP_RUNNING = 1u << 4,
    SNAP_UP_CAPACITY = 1u << 5,
    SNAP_UP_CONNECTIONS = 1u << 6,
    SNAP_UP_RESPONSE = 1u << 7,
    SNAP_UP_HEARTBEAT = 1u << 8
};

typedef struct snap_server_update {
    const char *name;
    unsigned set;          /* SNAP_UP_* bits: the fields below that apply */
    const char *host, *ip;
    const char *const *sites;
    size_t nsites;
    bool registered, running;
    int64_t capacity, connections, response_ms, heartbeat;
} snap_server_update;

typedef struct snap_error_update {
    const char *client, *server;
    int64_t at;
} snap_error_update;

typedef struct snap_extra_error {
    uint32_t client, server;
    int64_t at;
} snap_extra_error;

TSL_INTERNAL int tsl_snapshot_derive(tsl_snapshot **out, tsl_snapshot *base,
                                     const snap_server_update *servers, size_t nservers,
                                     const snap_error_update *errors, size_t nerrors,
                                     int64_t now);
/* The connection errors of client `ci` reported since the root was built
 * (derived snapshots), newest first; NULL and 0 when none. */
TSL_INTERNAL const snap_extra_error *snap_client_extra_errors(const tsl_snapshot *s, uint32_t ci,
                                                              uint32_t *n);

/* Copies a string into the snapshot arena (NULL stays NULL). */
TSL_INTERNAL const char *snap_strdup(tsl_snapshot *s, const char *str);

#endif
