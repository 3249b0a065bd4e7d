/*
 * agent.h - the reference Client Task Agent (CTA): the client side of the
 * ITMS registration flow, as a faithful model for embedders and testers.
 *
 * An agent asks the broker for its Task Server list, caches it for its ttl,
 * chooses a server, registers with it over HTTP, reports the result to the
 * broker, watches its server, and starts over when it is lost.  Everything
 * is asynchronous on one libevent loop, so thousands of agents run in one
 * thread (the simulator does exactly that).  The library never prints: it
 * logs through a callback, in the troubleshooting guide's own words:
 *
 *   Received Task Server list from SMP Server
 *   Attempting to register to Task Server: NAME
 *   Registration failed: Task Server NAME: ERROR
 *   Registered to Task Server: NAME
 *
 * The rules it follows (docs/simulation.md has them in full):
 *   - the list is cached for its ttl and refreshed at `refresh` x ttl; a
 *     broker that does not answer is retried with exponential backoff while
 *     the cached list keeps serving; once the cache expires it is dropped;
 *   - strict lists are tried strictly in order; otherwise, within a tier,
 *     the broker's ranking (it ranks by the same real-time conditions the
 *     list carries) with entries that are full, or that failed before for
 *     this client (recent_error, or a failure the agent saw), moved last;
 *   - tier k is exhausted before tier k+1 is tried, and an entry with
 *     `after` is tried only once every entry of the earlier tiers has been
 *     failing for at least that long;
 *   - when every allowed entry failed, or the list is empty (blocked), the
 *     agent is "stuck retrying": it asks again every `stuck_retry` seconds
 *     and never invents a server.
 *
 * Task Server protocol (what the simulator's servers speak):
 *   POST /register?client=GUID    200 registered | 503 full | other: failed
 *   GET  /poll?client=GUID        200 still registered | anything else: lost
 *   POST /unregister?client=GUID  best effort, when the agent moves away
 *
 * Used by: `tsl agent`, the simulator, tests.  Needs: libevent, jansson,
 * tsl.h (error codes), http_client.h (exchanges and the clock type).
 */
#ifndef TSL_AGENT_H
#define TSL_AGENT_H

#include "http_client.h"
#include "tsl.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;

typedef struct tsl_agent tsl_agent;

/* The agent's time line (aclock.h): NULL for the wall clock, or a virtual
 * clock the simulator drives.  Every timer and every exchange timeout of
 * the agent is on it. */
typedef aclock tsl_agent_clock;

/* Timing, in agent seconds.  tsl_agent_config_init sets the defaults. */
typedef struct tsl_agent_timing {
    double request_timeout;  /* broker exchange (10) */
    double register_timeout; /* registration and poll exchanges (15) */
    double poll_interval;    /* how often a registered agent checks its server (300) */
    double retry_min;        /* first broker retry after a failure (15) */
    double retry_max;        /* backoff ceiling (600) */
    double stuck_retry;      /* pause between rounds when every entry failed (120) */
    double refresh;          /* fraction of the ttl after which the list is refreshed (0.8) */
    int default_ttl;         /* when a response carries no ttl (3600) */
} tsl_agent_timing;

/* What happened, for observers (the simulator's metrics). */
typedef enum tsl_agent_event {
    TSL_AGENT_EV_LIST = 0,       /* a list arrived from the broker */
    TSL_AGENT_EV_LIST_FAILED,    /* the broker did not answer; detail: why */
    TSL_AGENT_EV_CACHE_DROPPED,  /* the cached list expired while the broker was unreachable */
    TSL_AGENT_EV_ATTEMPT,        /* attempting entry `server` */
    TSL_AGENT_EV_REGISTERED,     /* registered to `server` */
    TSL_AGENT_EV_REG_FAILED,     /* registration with `server` failed; detail: why */
    TSL_AGENT_EV_LOST,           /* its server stopped answering; detail: why */
    TSL_AGENT_EV_LEFT,           /* left `server` for a new list's better entry */
    TSL_AGENT_EV_STUCK,          /* every allowed entry failed or the list is empty */
    TSL_AGENT_EV_REPORT_FAILED,  /* a registration report did not reach the broker */
    TSL_AGENT_EV_COUNT_
} tsl_agent_event;

const char *tsl_agent_event_name(tsl_agent_event ev);

/* One entry of the agent's current list (borrowed; valid until the list
 * changes, that is until the callback returns). */
typedef struct tsl_agent_entry {
    const char *name, *host, *ip, *site, *reason;
    int tier;
    int after;
    int64_t usable_in;      /* the broker saw the approved servers down: usable this many
                             * seconds after the list arrived (-1: not given) */
    int64_t capacity, connections, response_ms;
    bool full, recent_error;
} tsl_agent_entry;

/* Where a Task Server accepts registrations: writes its numeric address to
 * host (hostlen bytes) and its port.  Return < 0 to fail the attempt as
 * "unresolvable". */
typedef int (*tsl_agent_resolve_fn)(void *arg, const tsl_agent *a, const tsl_agent_entry *e,
                                    char *host, size_t hostlen, int *port);
typedef void (*tsl_agent_log_fn)(void *arg, const tsl_agent *a, const char *line);
/* `e` is the entry concerned or NULL; `detail` a short text or NULL. */
typedef void (*tsl_agent_event_fn)(void *arg, tsl_agent *a, tsl_agent_event ev,
                                   const tsl_agent_entry *e, const char *detail);

typedef struct tsl_agent_config {
    const char *broker_host;   /* numeric address of the broker */
    int broker_port;
    const char *client;        /* GUID */
    const char *ips[TSL_MAX_IPS];
    size_t nips;
    const char *department;    /* may be NULL */
    const char *task;          /* may be NULL */
    tsl_agent_timing timing;
    int ts_port;               /* Task Server port when resolve is NULL (80) */
    tsl_agent_resolve_fn resolve;
    tsl_agent_log_fn log;      /* may be NULL */
    tsl_agent_event_fn event;  /* may be NULL */
    void *arg;                 /* for the three callbacks */
    tsl_agent_clock *clock;    /* NULL: the wall clock; must outlive the agent */
    uint64_t seed;             /* jitter of retries (0: from the GUID) */
} tsl_agent_config;

void tsl_agent_config_init(tsl_agent_config *cfg);

/* Creates an agent on `base`; it does nothing until started.  Strings are
 * copied.  TSL_EINVALID names a bad field. */
int tsl_agent_new(tsl_agent **out, struct event_base *base, const tsl_agent_config *cfg);
/* Asks for the first list after `delay` agent seconds. */
int tsl_agent_start(tsl_agent *a, double delay);
/* Stops everything in flight (no callback fires afterwards); NULL is fine.
 * Safe to call from the agent's own callbacks only through
 * tsl_agent_stop(), never free there. */
void tsl_agent_free(tsl_agent *a);
/* Stops the agent: cancels exchanges and timers; it can be freed later. */
void tsl_agent_stop(tsl_agent *a);

typedef enum tsl_agent_state {
    TSL_AGENT_IDLE = 0,     /* not started, or stopped */
    TSL_AGENT_LISTING,      /* waiting for a list to choose from */
    TSL_AGENT_REGISTERING,  /* an attempt is in flight */
    TSL_AGENT_REGISTERED,
    TSL_AGENT_STUCK         /* stuck retrying: no server */
} tsl_agent_state;

const char *tsl_agent_state_name(tsl_agent_state st);

typedef struct tsl_agent_status {
    tsl_agent_state state;
    const char *server;     /* registered server (borrowed), or NULL */
    int tier;               /* its tier, -1 when none */
    bool has_list;          /* a cached list is held */
    bool blocked;           /* the held list says blocked */
    bool strict;
    bool gated;             /* stuck while entries wait for their `after` */
    double gated_until;     /* agent time they become usable, when gated */
    const char *attempting; /* the server of the attempt in flight (borrowed), or NULL */
    double attempt_since;   /* agent time that attempt began */
    bool started;           /* it has asked for a list at least once */
    size_t entries;         /* entries in the held list */
    double list_expires;    /* agent time the cache expires, 0 when none */
    double list_asked;      /* agent time the latest list request began */
    uint64_t list_requests, list_failures, attempts, registrations, reports_failed;
} tsl_agent_status;

void tsl_agent_status_get(const tsl_agent *a, tsl_agent_status *out);
const char *tsl_agent_client(const tsl_agent *a);
/* The opaque pointer given in the config. */
void *tsl_agent_arg(const tsl_agent *a);
/* The i-th entry of the held list, or NULL. */
const tsl_agent_entry *tsl_agent_list_entry(const tsl_agent *a, size_t i);

/* ------------------------------------------------------------------------
 * The choice, exposed for tests (agent_list.c): pure functions of a list,
 * the agent's failure memory and the time.
 * ---------------------------------------------------------------------- */

typedef struct tsl_agent_list tsl_agent_list;

/* Parses a broker response body.  TSL_EINVALID names the field. */
int tsl_agent_list_parse(tsl_agent_list **out, const char *json, size_t len);
/* The agent time the list arrived: entries' usable_in count from it (0 until set). */
void tsl_agent_list_set_received(tsl_agent_list *l, double at);
void tsl_agent_list_free(tsl_agent_list *l);
size_t tsl_agent_list_count(const tsl_agent_list *l);
const tsl_agent_entry *tsl_agent_list_get(const tsl_agent_list *l, size_t i);
bool tsl_agent_list_blocked(const tsl_agent_list *l);
bool tsl_agent_list_strict(const tsl_agent_list *l);
int tsl_agent_list_ttl(const tsl_agent_list *l);
const char *tsl_agent_list_site(const tsl_agent_list *l);
const char *tsl_agent_list_policy(const tsl_agent_list *l);

/* Failure memory: per server name, since when it has been failing for this
 * agent (0: not failing) and when it last failed. */
#define TSL_AGENT_MEMORY 32
typedef struct tsl_agent_memory {
    struct {
        char name[96];
        double failing_since;
        double last_failure;
    } slot[TSL_AGENT_MEMORY];
    size_t n;
} tsl_agent_memory;

void tsl_agent_memory_fail(tsl_agent_memory *m, const char *name, double now);
void tsl_agent_memory_ok(tsl_agent_memory *m, const char *name);
/* 0 when not failing. */
double tsl_agent_memory_failing_since(const tsl_agent_memory *m, const char *name);
bool tsl_agent_memory_failed_ever(const tsl_agent_memory *m, const char *name);
/* Agent time of the last failure, 0 when none is remembered. */
double tsl_agent_memory_last_failure(const tsl_agent_memory *m, const char *name);

/* The next entry to try in this round: `tried[i]` marks entries already
 * tried (and failed) in it.  Returns the index, or -1 when none is allowed
 * now; then *wait_until is the agent time an `after`-gated entry becomes
 * allowed (0 when none will). */
int tsl_agent_pick(const tsl_agent_list *l, const tsl_agent_memory *m, const bool *tried,
                           double now, double *wait_until);

#endif
