/*
 * agent_internal.h - the reference CTA's state, shared by its two files:
 * agent.c (the state machine) and agent_life.c (creating, starting,
 * stopping and freeing an agent, its status).
 *
 * Used by: agent.c, agent_life.c.  Needs: agent.h, http_client.h.
 */
#ifndef TSL_AGENT_INTERNAL_H
#define TSL_AGENT_INTERNAL_H

#include "agent.h"
#include "http_client.h"

#define NAME_MAX_ 96

/* A fire-and-forget exchange (report, unregistration) still in flight. */
struct side {
    struct side *next, *prev;
    tsl_agent *agent;
    ahttp *h;
    bool report;
};

struct tsl_agent {
    struct event_base *base;
    char *broker_host;
    int broker_port;
    char *client;
    char *list_target;    /* "/v1/task-servers?client=..&ip=.." */
    char *client_esc;     /* the GUID, escaped for a query */
    tsl_agent_timing t;
    int ts_port;
    tsl_agent_resolve_fn resolve;
    tsl_agent_log_fn log;
    tsl_agent_event_fn event;
    void *arg;
    aclock *clock;         /* NULL: the wall clock */
    uint64_t rng;

    tsl_agent_state state;
    tsl_agent_list *list;
    double list_fetched;
    double list_expires;
    double list_asked;     /* when the latest list request began */
    bool *tried;          /* per entry of `list`, this round */
    size_t tried_cap;
    tsl_agent_memory mem;
    char server[NAME_MAX_]; /* registered server, "" when none */
    int server_tier;
    int attempt;           /* entry index in flight, -1 none */
    char attempt_name[NAME_MAX_];
    double attempt_since;
    bool stuck_reported;
    bool gated;
    double gated_until;    /* when the entries held back by `after` become usable */
    bool fetch_due;        /* a list request waits for the attempt in flight */
    unsigned fetch_failures;

    atimer *t_fetch, *t_main;
    ahttp *h_list, *h_ts;
    struct side *sides;

    uint64_t n_list_requests, n_list_failures, n_attempts, n_registrations, n_reports_failed;
};

/* agent.c: arms `t` for `agent_seconds` (divided by the clock's speed). */
void agent_arm(tsl_agent *a, atimer *t, double agent_seconds);
/* agent.c: the two timers' callbacks (the next list request; the next
 * poll or round). */
void agent_fetch_timer(void *arg);
void agent_poll_timer(void *arg);

#endif
