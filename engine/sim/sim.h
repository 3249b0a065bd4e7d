/*
 * sim.h - the fleet simulator: a scenario file in, a report and a verdict
 * out.  One process, one libevent loop: the broker (in-process), simulated
 * Task Servers on loopback ports, thousands of reference CTAs (agent.h),
 * and a timeline of faults, all on simulated time (aclock.h): the figures
 * do not depend on how fast the run goes.  docs/simulation.md documents the scenario
 * format and every figure of the report.
 *
 * The library never prints and never exits: the report is appended to a
 * tsl_buf, progress lines go through a callback, and the caller (tsl
 * simulate, the tests) decides what to do with them.
 *
 * Used by: engine/cli/cmd_simulate.c, tests.  Needs: tsl.h, agent.h,
 * libevent, jansson; the broker (engine/broker/broker.h) when built with it.
 */
#ifndef TSL_SIM_H
#define TSL_SIM_H

#include "tsl.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;

typedef struct tsl_sim_scenario tsl_sim_scenario;

/* Parses a scenario file.  TSL_EINVALID with "FILE:LINE: message". */
int tsl_sim_scenario_load(tsl_sim_scenario **out, const char *path);
/* The same from text; `path` names it in messages and anchors relative
 * file names (its directory). */
int tsl_sim_scenario_parse(tsl_sim_scenario **out, const char *text, size_t len,
                           const char *path);
void tsl_sim_scenario_free(tsl_sim_scenario *s);
/* Borrowed from the scenario. */
const char *tsl_sim_scenario_name(const tsl_sim_scenario *s);

/* ------------------------------------------------------------------------
 * The broker the simulation runs.  The real one (tsl_sim_broker_real) when
 * the build has it; tests may plug in another that speaks the same HTTP API.
 * ---------------------------------------------------------------------- */

typedef struct tsl_sim_broker_config {
    const char *inventory_json; /* the scenario's estate plus its generated clients */
    size_t inventory_len;
    const char *workdir;        /* a directory the broker may keep its store in */
    const char *admin_token;    /* bearer token for the admin endpoints, if the broker takes one */
    double speed;               /* the pace: simulated seconds per wall second at most (0:
                                 * none); time itself is virtual (see settle) */
    int port;                   /* 0: any free port; else this one (a restart) */
    const tsl_settings *settings; /* stale_after, error_window, ttl, max, selection */
    int64_t (*now)(void *arg);  /* the simulated clock, Unix seconds; thread-safe */
    void *now_arg;
    bool first_start;           /* false on a restart: the store already holds the estate */
    const char *policy_path;    /* the policy to run from the start, or NULL: the default
                                 * logic (on a restart: the one last activated) */
    void (*log)(void *arg, const char *line); /* the broker's own log lines, or NULL;
                                               * called from its threads */
    void *log_arg;
} tsl_sim_broker_config;

typedef struct tsl_sim_broker_ops {
    const char *name; /* "tsl broker", for the report */
    /* Starts listening on 127.0.0.1 on `base`; writes the port. */
    int (*start)(void **out, struct event_base *base, const tsl_sim_broker_config *cfg,
                 int *port);
    /* Stops and frees (requests in flight are dropped or finished). */
    void (*stop)(void *broker);
    /* The admin bearer token the broker accepts (borrowed), or NULL: the
     * one given in the config. */
    const char *(*admin_token)(void *broker);
    /* Simulated time stands still while a request is in flight, and jumps
     * when none is.  A broker that works on its own threads (applying
     * heartbeats and reports to the lists it serves) is asked to finish
     * that work before the clock enters a new simulated second, so what it
     * acknowledged in one second shows in its answers from the next, at any
     * speed.  NULL: the broker has nothing pending between requests. */
    int (*settle)(void *broker);
    /* The bearer token its heartbeats must carry (borrowed), or NULL: none. */
    const char *(*ts_token)(void *broker);
} tsl_sim_broker_ops;

/* The in-process tsl broker, or NULL when this build has none. */
const tsl_sim_broker_ops *tsl_sim_broker_real(void);

/* ------------------------------------------------------------------------
 * Running
 * ---------------------------------------------------------------------- */

typedef struct tsl_sim_options {
    const tsl_sim_broker_ops *broker; /* NULL: tsl_sim_broker_real() */
    const char *workdir;   /* required: scratch space (the broker's store) */
    double speed;          /* the pace, simulated seconds per wall second at most;
                            * 0: the scenario's own; < 0: as fast as it goes */
    int verbose;           /* 0: report only; 1: + the metrics block and the timeline as it
                            * happens; 2: + every agent log line; 3: + the broker's */
    void (*log)(void *arg, const char *line);
    void *log_arg;
    tsl_buf *html;         /* non-NULL: each pass appends its picture (tsl_sim_html_begin) */
} tsl_sim_options;

typedef struct tsl_sim_outcome {
    unsigned checked;  /* invariants evaluated */
    unsigned broken;   /* ... of which broken */
    double wall_seconds;
} tsl_sim_outcome;

/* The HTML page of `tsl simulate --html`: the head (styles, legend), then
 * one section per pass (tsl_sim_run with options.html), then the end.  The
 * page is self-contained: inline CSS and SVG, no script, no network. */
int tsl_sim_html_begin(tsl_buf *out, const char *title);
int tsl_sim_html_end(tsl_buf *out);

/* Runs every pass of the scenario (one per selection mode it names) and
 * appends the report.  Returns 0 when the simulation ran (the verdict is in
 * `out`), < 0 when it could not (bad inventory, no broker, no sockets). */
int tsl_sim_run(tsl_buf *report, tsl_sim_outcome *out, const tsl_sim_scenario *scn,
                const tsl_sim_options *opt);

#endif
