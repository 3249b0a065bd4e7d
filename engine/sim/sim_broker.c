/*
 * sim_broker.c - the real broker, in-process, behind the simulator's
 * broker interface (sim.h).
 *
 * First start: a fresh store (WORKDIR/sim-broker.db) gets the scenario's
 * estate through tsl_store_import_json, as `tsl import` would.  Every start
 * runs tsl_broker_new + tsl_broker_start on 127.0.0.1 (port 0 the first
 * time, the same port again after an outage) with the simulated clock, one
 * HTTP worker, no plan refresh of its own (the simulator settles it once
 * per simulated second: heartbeats and reports reach the lists from the
 * next second) and quiet logs.  The broker keeps its own threads;
 * the simulator talks to it over HTTP only, like every client would.
 *
 * Built only with the broker (TSL_HAVE_BROKER); otherwise
 * tsl_sim_broker_real() says there is none.
 *
 * Used by: sim.c.  Needs: sim.h, engine/broker/broker.h, the store.
 */
#include "sim_internal.h"

#ifdef TSL_HAVE_BROKER

#include "broker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct real_broker {
    tsl_broker *b;
    void (*log)(void *arg, const char *line);
    void *log_arg;
} real_broker;

/* Broker threads call this; the simulator's log callback must be
 * thread-safe (stdio's is, line by line). */
static void forward_log(void *ud, tsl_log_level level, const char *line)
{
    real_broker *rb = ud;
    char buf[1024];
    (void)level;
    if (!rb->log)
        return;
    snprintf(buf, sizeof buf, "broker: %s", line);
    rb->log(rb->log_arg, buf);
}

static int fresh_store(const char *db, const tsl_sim_broker_config *cfg)
{
    static const char *const suffixes[] = {"", "-wal", "-shm", ".token", ".ts-token"};
    char path[4200];
    tsl_store *st = NULL;
    int err;

    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        snprintf(path, sizeof path, "%s%s", db, suffixes[i]);
        if (unlink(path) < 0 && errno != ENOENT)
            return tsl_seterr(TSL_ERROR, "cannot remove %s: %s", path, strerror(errno));
    }
    if ((err = tsl_store_open(&st, db, 0)) < 0)
        return err;
    err = tsl_store_import_json(st, cfg->inventory_json, cfg->inventory_len,
                                "the scenario's inventory");
    tsl_store_free(st);
    return err;
}

static void real_stop(void *p)
{
    real_broker *rb = p;
    if (!rb)
        return;
    if (rb->b) {
        tsl_broker_stop(rb->b);
        tsl_broker_join(rb->b);
        tsl_broker_free(rb->b);
    }
    free(rb);
}

static int real_start(void **out, struct event_base *base, const tsl_sim_broker_config *cfg,
                      int *port)
{
    char db[4096], listen[64];
    tsl_broker_config bc;
    real_broker *rb = NULL;
    int err;

    (void)base; /* the broker runs its own loops */
    *out = NULL;
    if ((size_t)snprintf(db, sizeof db, "%s/sim-broker.db", cfg->workdir) >= sizeof db)
        return tsl_seterr(TSL_EINVALID, "work directory name too long");
    if (cfg->first_start && (err = fresh_store(db, cfg)) < 0)
        return err;
    if (!(rb = calloc(1, sizeof *rb)))
        return tsl_oom();
    rb->log = cfg->log;
    rb->log_arg = cfg->log_arg;

    snprintf(listen, sizeof listen, "127.0.0.1:%d", cfg->port);
    tsl_broker_config_init(&bc);
    bc.db_path = db;
    bc.listen = listen;
    bc.policy_path = cfg->policy_path;
    bc.settings = *cfg->settings;
    bc.threads = 1;
    /* lists change only when the simulator settles the broker (at most once
     * per simulated second): never on a wall-clock timer, which would make
     * what a client gets depend on how fast the run goes */
    bc.refresh_ms = 86400 * 1000;
    bc.flush_ms = 20;
    bc.drain_ms = 20;
    bc.timeout_s = 30;
    bc.decision_log_max = 0;
    /* every simulated Task Server heartbeats from 127.0.0.1, many times
     * faster than real ones: no per-peer limit */
    bc.heartbeat_rate = 0;
    bc.log_level = cfg->log ? TSL_LOG_INFO : TSL_LOG_ERROR;
    bc.log_fn = forward_log;
    bc.log_ud = rb;
    bc.clock = cfg->now;
    bc.clock_ud = cfg->now_arg;
    if ((err = tsl_broker_new(&rb->b, &bc)) < 0 || (err = tsl_broker_start(rb->b)) < 0)
        goto done;
    *port = tsl_broker_bound_port(rb->b);
    *out = rb;
    rb = NULL;
done:
    real_stop(rb);
    return err;
}

static const char *real_token(void *p)
{
    real_broker *rb = p;
    return rb && rb->b ? tsl_broker_admin_token(rb->b) : NULL;
}

static const char *real_ts_token(void *p)
{
    real_broker *rb = p;
    return rb && rb->b ? tsl_broker_ts_token(rb->b) : NULL;
}

static int real_settle(void *p)
{
    real_broker *rb = p;
    return rb && rb->b ? tsl_broker_sync(rb->b) : 0;
}

static const tsl_sim_broker_ops real_ops = {"tsl broker (in-process)", real_start, real_stop,
                                            real_token, real_settle, real_ts_token};

const tsl_sim_broker_ops *tsl_sim_broker_real(void)
{
    return &real_ops;
}

#else

const tsl_sim_broker_ops *tsl_sim_broker_real(void)
{
    return NULL;
}

#endif
