/*
 * sim_internal.h - what the simulator's files share: the parsed scenario,
 * the running simulation (sites, Task Servers, clients, the timeline) and
 * the metrics.
 *
 * Used by: every engine/sim source.  Needs: sim.h, agent.h, common.h.
 */
#ifndef TSL_SIM_INTERNAL_H
#define TSL_SIM_INTERNAL_H

#include "agent.h"
#include "common.h"
#include "http_client.h"
#include "sim.h"

#include <jansson.h>
#include <stdatomic.h>

/* ------------------------------------------------------------------------
 * The scenario (scenario.c)
 * ---------------------------------------------------------------------- */

typedef enum scn_fault_kind {
    SCN_STOP = 0,    /* a server stops cleanly: "stopped" heartbeat, port closed */
    SCN_KILL,        /* a server crashes: no heartbeat, port closed */
    SCN_START,       /* a stopped, killed or dark server starts again */
    SCN_SITE_DARK,   /* every server of a site vanishes: no heartbeat, connections time out */
    SCN_SITE_UP,     /* ... and comes back */
    SCN_CUT,         /* the link from a site's clients to a server: connections time out */
    SCN_RESTORE,     /* ... restored */
    SCN_BROKER_DOWN, /* the broker stops (unreachable) */
    SCN_BROKER_UP,   /* ... and starts again on the same port */
    SCN_BROKER_RESTART,
    SCN_ACTIVATE     /* upload a policy file through the admin API and activate it */
} scn_fault_kind;

typedef struct scn_fault {
    double at;
    scn_fault_kind kind;
    char *a, *b;     /* server | site | site + server | policy path */
    int line;
} scn_fault;

typedef struct scn_group {
    char *name;
    long count;      /* -1: the inventory's own clients */
    char *site, *department, *task, *subnet;
    int line;
} scn_group;

/* A selector: which clients a promise or a figure is about. */
typedef struct scn_selector {
    char *site, *department, *task, *group;
} scn_selector;

typedef struct scn_promise {
    scn_selector sel;
    char **globs;
    size_t nglobs;
    double from;     /* simulated second it starts to hold */
    double until;    /* ... and stops (INFINITY: to the end) */
    char *text;      /* as written, for the report */
    int line;
} scn_promise;

typedef enum scn_op { OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE } scn_op;

typedef struct scn_expect {
    char *group;     /* NULL: over all clients */
    char *metric;
    scn_op op;
    double value;
    char *text;
    int line;
} scn_expect;

typedef struct scn_server {
    char *name;
    int64_t capacity;    /* -1: the inventory's */
    int64_t response_ms; /* -1: the inventory's */
} scn_server;

#define SCN_ARRAY(type, name) type *name; size_t n##name, cap##name

struct tsl_sim_scenario {
    char *path, *dir, *name, *description;
    char *inventory;     /* resolved path */
    char *policy;        /* resolved path or NULL */
    char *selections[3];
    size_t nselections;
    double speed;        /* the pace; 0: as fast as it goes */
    double duration, start_spread, heartbeat;
    uint64_t seed;
    tsl_settings broker;
    tsl_agent_timing agent;
    SCN_ARRAY(scn_group, groups);
    SCN_ARRAY(scn_fault, faults);
    SCN_ARRAY(scn_promise, promises);
    SCN_ARRAY(scn_expect, expects);
    SCN_ARRAY(scn_server, servers);
};

TSL_INTERNAL const char *scn_fault_name(scn_fault_kind k);
TSL_INTERNAL const char *scn_op_text(scn_op op);
TSL_INTERNAL bool scn_glob_match(const char *glob, const char *s);

/* ------------------------------------------------------------------------
 * The estate (sim_estate.c)
 * ---------------------------------------------------------------------- */

typedef struct sim_subnet {
    tsl_ip net;
    int bits;        /* in the 128-bit space */
} sim_subnet;

typedef struct sim_site {
    char *name, *country;
    sim_subnet *subnets;
    size_t nsubnets;
} sim_site;

typedef enum sim_ts_state { TS_UP = 0, TS_STOPPED, TS_KILLED, TS_DARK } sim_ts_state;

struct sim;

typedef struct sim_ts {
    struct sim *sim;
    size_t index;
    char *name;
    int site;            /* home site, -1 none */
    int64_t capacity, response_ms;
    sim_ts_state state;
    int port;
    struct evhttp *http;
    atimer *t_heartbeat;
    ahttp *h_heartbeat;
    /* registrations held: client index -> last contact (simulated second) */
    double *seen;        /* one per client; < 0: not registered here */
    long connections;
    sim_ts_state end_state;  /* at the end of the run, for the report */
    long end_connections;
    uint64_t accepted, refused_full, heartbeats, heartbeat_failures;
} sim_ts;

/* Where a client stands at an instant: every client is in exactly one. */
typedef enum sim_cstate {
    CS_IDLE = 0,        /* not started yet (start-spread) */
    CS_REGISTERED,      /* registered to a server (as far as it knows) */
    CS_ATTEMPTING,      /* a registration attempt (or a list request) in flight */
    CS_WAITING,         /* fallback entries held back by their `after`: the policy's wait */
    CS_STRANDED_DEMANDED,   /* no server, the list is blocked */
    CS_STRANDED_UNDEMANDED, /* no server, every allowed entry failed or no list */
    CS_COUNT_
} sim_cstate;

/* Columns of a timeline sample: registered by tier 0, 1, 2+, then the
 * other states. */
enum { COL_TIER0 = 0, COL_TIER1, COL_TIER2, COL_ATTEMPTING, COL_WAITING, COL_DEMANDED,
       COL_UNDEMANDED, COL_IDLE, COL_COUNT_ };

/* A lane of the picture: one client group at one site. */
typedef struct sim_lane {
    size_t group;
    int site;
    long clients;
} sim_lane;

typedef struct sim_client {
    char guid[40];
    char ip[48];
    const char *department, *task; /* borrowed from the group or the inventory */
    int site;
    size_t group;
    tsl_agent *agent;
    size_t lane;
    /* what the metrics follow */
    int server;          /* -1 none */
    int tier;
    sim_cstate cstate;   /* at the last observation */
    double attempt_since; /* the attempt in flight began */
    bool in_spell;       /* without a server since spell_since (waiting or stranded) */
    double spell_since;
    bool spell_stranded, spell_demanded;
    bool ever_waiting, ever_demanded, ever_undemanded;
    double stranded_total;
    unsigned episodes;
    long watch;          /* fault record it is counted in, -1 none */
    uint64_t list_failures_outage;
} sim_client;

/* ------------------------------------------------------------------------
 * Metrics (sim_metrics.c)
 * ---------------------------------------------------------------------- */

#define SIM_TIERS 8  /* tiers 0..6, and 7 for "7 or more" */

typedef struct sim_counts {
    uint64_t clients;
    uint64_t registrations, by_tier[SIM_TIERS];
    uint64_t cross_site, cross_site_tier[SIM_TIERS];
    uint64_t cross_country, cross_country_tier[SIM_TIERS];
    uint64_t outside_approved, outside_approved_at_end;
    uint64_t stranded, stranded_demanded, stranded_undemanded, stranded_at_end;
    double stranded_max, stranded_sum; /* seconds */
    uint64_t episodes;
    uint64_t waiting, waiting_spells; /* clients that waited out an `after`; spells */
    double waiting_max, waiting_sum;
    /* where every client stands at the end (they add up to `clients`) */
    uint64_t idle_at_end, attempting_at_end, waiting_at_end;
    uint64_t stranded_demanded_at_end, stranded_undemanded_at_end;
    uint64_t registered_tier_at_end[SIM_TIERS];
    uint64_t list_requests, list_failures, failed_requests, reports_failed, cache_dropped;
    uint64_t attempts, failed_attempts, lost, left;
    double attempt_max;  /* the longest registration attempt, seconds */
    uint64_t registered_at_end;
} sim_counts;

/* A server's death (or cut) and the clients it had. */
typedef struct sim_drain {
    int fault;           /* index into scenario faults */
    size_t server;
    int site;            /* a cut: only that site's clients; else -1 */
    double at;
    long had, remaining;
    double last_leave;
} sim_drain;

/* ------------------------------------------------------------------------
 * The simulation (sim.c)
 * ---------------------------------------------------------------------- */

struct sim {
    struct event_base *base;
    const tsl_sim_scenario *scn;
    const tsl_sim_options *opt;
    const tsl_sim_broker_ops *ops;
    const char *selection;   /* this pass, or NULL for the broker's default */
    tsl_settings settings;   /* the broker's, this pass */
    double speed;            /* pace: simulated seconds per wall second at most, 0: none */
    aclock *clock;           /* simulated time: discrete events (aclock.h) */
    int64_t settled;         /* the simulated second the broker last settled in */
    bool broker_dirty;       /* it took in something that changes lists since */
    int64_t epoch;           /* Unix seconds at simulated second 0 */
    char token[160];
    char ts_token[160];      /* the Task Servers' heartbeat token, "" when none */

    sim_site *sites;
    size_t nsites;
    sim_ts *ts;
    size_t nts;
    sim_client *clients;
    size_t nclients;
    json_t *inventory;       /* the document given to the broker */
    uint32_t *guid_index;    /* open addressing: client index + 1, 0 empty */
    size_t guid_mask;

    void *broker;
    int broker_port;
    bool broker_up;
    double broker_down_since;
    double broker_up_since;  /* simulated second the broker last came up */
    double outage_total;

    int refuse_fd;           /* bound, never listening: connections refused */
    int refuse_port;
    struct evconnlistener *blackhole;
    int blackhole_port;
    struct sim_hole *holes;  /* connections the blackhole holds */
    bool *cut;               /* [site * nts + server] */

    size_t next_fault;
    atimer *t_fault;
    const char *policy_in_force; /* path of the policy the broker runs, or NULL */
    bool admin_busy;         /* a policy upload/activation in flight */
    size_t admin_pending_fault;
    ahttp *h_admin;
    char *admin_body;
    int admin_step;
    unsigned admin_failures;
    bool started;            /* clients have been started */
    bool failed;             /* a fatal error stopped the run */
    int fail_code;
    bool finished;           /* the end-of-run figures are taken */
    char error[512];

    char violations[5][240]; /* the first registrations outside a promise */
    unsigned nviolations;
    sim_counts all;
    sim_counts *groups;      /* one per scenario group */
    sim_counts *site_counts; /* one per site, for its own clients */
    sim_lane *lanes;         /* group x site pairs with clients */
    size_t nlanes;
    double sample_step;      /* simulated seconds between timeline samples */
    double next_sample;
    uint32_t *samples;       /* [sample][lane][COL_COUNT_] */
    size_t nsamples, capsamples;
    char attempting_end[5][200]; /* the first clients attempting at the end */
    unsigned nattempting_end;
    double *inv_value;       /* per expect line: the measured value */
    signed char *inv_state;  /* 1 PASS, 0 FAIL, -1 no such metric */
    sim_drain *drains;
    size_t ndrains, capdrains;
};

typedef struct sim sim;

/* Simulated seconds since the start. */
TSL_INTERNAL double sim_now(const sim *s);
TSL_INTERNAL void sim_logf(sim *s, int level, const char *fmt, ...) TSL_PRINTF(3, 4);
/* Ends the pass with error `code` (a tsl_error) and the message. */
TSL_INTERNAL void sim_fail(sim *s, int code, const char *fmt, ...) TSL_PRINTF(3, 4);

/* sim_estate.c: reads the inventory, generates the scenario's clients. */
TSL_INTERNAL int sim_estate_load(sim *s);
TSL_INTERNAL void sim_estate_free(sim *s);
TSL_INTERNAL int sim_find_site(const sim *s, const char *name);
TSL_INTERNAL int sim_find_server(const sim *s, const char *name);
TSL_INTERNAL int sim_site_of_ip(const sim *s, const char *ip);
/* Client index by GUID, or -1 (sim->guid_index, built by sim_estate_load). */
TSL_INTERNAL long sim_find_client(const sim *s, const char *guid);

/* sim_ts.c: the simulated Task Servers and the blackhole. */
TSL_INTERNAL int sim_ts_start(sim_ts *t);
TSL_INTERNAL void sim_ts_halt(sim_ts *t, sim_ts_state why); /* stop, kill, dark */
TSL_INTERNAL void sim_ts_free(sim_ts *t);
TSL_INTERNAL int sim_net_open(sim *s);   /* refuse port, blackhole */
TSL_INTERNAL void sim_net_close(sim *s);

/* sim_metrics.c */
TSL_INTERNAL void sim_metrics_event(sim *s, sim_client *c, tsl_agent_event ev,
                                    const tsl_agent_entry *e, const char *detail);
TSL_INTERNAL int sim_metrics_drain_begin(sim *s, int fault, size_t server, int site);
TSL_INTERNAL int sim_metrics_init(sim *s);   /* lanes, samples */
/* At a quiet instant: every client's state, spells, and the timeline up to
 * (not including) `next`. */
TSL_INTERNAL int sim_metrics_observe(sim *s, double next);
TSL_INTERNAL void sim_metrics_finish(sim *s);
/* A tier's slot in the by-tier counts (0 .. SIM_TIERS-1). */
TSL_INTERNAL int sim_tier_slot(int tier);
/* sim_admin.c: uploads `path` to the broker and activates it; one while
 * another is in flight is an admin failure.  `fault` is the timeline's
 * entry (nfaults: the scenario's starting policy). */
TSL_INTERNAL void sim_admin_activate(sim *s, const char *path, size_t fault);
/* sim_report.c */
TSL_INTERNAL bool sim_metric_known(const char *name);
TSL_INTERNAL const char *sim_cstate_name(sim_cstate st);
/* sim_html.c: the pass as a picture (timelines per site and group, faults,
 * invariants), appended to `out`. */
TSL_INTERNAL int sim_html_pass(sim *s, tsl_buf *out, const tsl_sim_outcome *outcome);
/* sim_report.c */
TSL_INTERNAL int sim_metrics_report(sim *s, tsl_buf *out, tsl_sim_outcome *outcome);
TSL_INTERNAL bool sim_selector_match(const sim *s, const scn_selector *sel, const sim_client *c);

#endif
