/*
 * broker.c - the broker's lifecycle and its control thread: the
 * creating and freeing the broker, starting the HTTP
 * workers' threads, the timer that flushes writes and derives new plans,
 * signals as loop events, and the orderly stop (stop accepting, answer
 * what is in flight, flush every acknowledged write, close the store).
 *
 * The configuration's defaults, proxies and clocks are in config.c;
 * plans are published in plan.c, admin jobs queued in jobs.c, the
 * workers and the listening socket set up in workers.c.
 *
 * Used by: broker.h's callers.  Needs: control_internal.h, workers.h,
 * edge.h (the edge's shared state; never routes.h).
 */
#include "control_internal.h"
#include "edge.h"
#include "workers.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------
 * The control timer: flush, derive, budgets, retention
 * ---------------------------------------------------------------------- */

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    tsl_broker *b = arg;
    uint64_t now_ms = broker_mono_ns() / 1000000;
    static const int64_t hour = 3600;
    (void)fd;
    (void)what;

    writer_flush(b);
    if (now_ms - b->last_derive_ms >= (uint64_t)b->cfg.refresh_ms) {
        writer_derive(b);
        b->last_derive_ms = now_ms;
    }
    /* the decision log's budget refills each second of the broker's clock */
    int64_t now = broker_now(b);
    if (now != b->last_refill) {
        atomic_store(&b->dlog_budget, b->cfg.decision_log_rate);
        b->last_refill = now;
    }
    /* `tsl policy activate|rollback|shadow` beside the broker: adopted
     * within a second */
    if (now_ms / 1000 != (uint64_t)b->last_rollout_poll) { /* real seconds, not the clock */
        b->last_rollout_poll = (int64_t)(now_ms / 1000);
        bpolicy_poll(b);
        writer_poll_approvals(b);
    }
    if (now - b->last_retention >= hour) {
        b->last_retention = now;
        writer_retention(b, now);
    }
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    writer_flush(arg);
}

/* ------------------------------------------------------------------------
 * Stopping
 * ---------------------------------------------------------------------- */

static void on_drain_check(evutil_socket_t fd, short what, void *arg);

static void begin_stop(tsl_broker *b, const char *why)
{
    if (b->stopping)
        return;
    b->stopping = true;
    broker_log(b, TSL_LOG_INFO, "Stopping (%s): no new connections, answering requests in flight",
               why);
    bpolicy_stop(b); /* a policy check in progress ends now */
    for (int i = 0; i < b->nworkers; i++)
        event_active(b->workers[i].stop_ev, EV_TIMEOUT, 1);
    struct timeval tv = {b->cfg.drain_ms / 1000, (b->cfg.drain_ms % 1000) * 1000};
    if (event_base_once(b->base, -1, EV_TIMEOUT, on_drain_check, b, &tv) < 0)
        event_base_loopbreak(b->base);
}

static void on_drain_check(evutil_socket_t fd, short what, void *arg)
{
    tsl_broker *b = arg;
    (void)fd;
    (void)what;
    /* admin jobs or writes still out: run them and give the workers time
     * to reply (a write waits for its commit) */
    if (atomic_load(&b->jobs_pending) > 0 || atomic_load(&b->acks_waiting) > 0) {
        writer_flush(b);
        struct timeval tv = {0, 10000};
        if (event_base_once(b->base, -1, EV_TIMEOUT, on_drain_check, b, &tv) == 0)
            return;
    }
    event_base_loopbreak(b->base);
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    begin_stop(arg, "stop requested");
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    tsl_broker *b = arg;
    (void)what;
    if (sig == SIGHUP) {
        broker_log(b, TSL_LOG_INFO, "Received SIGHUP: reloading the inventory and the policy");
        bpolicy_sighup(b);
        return;
    }
    begin_stop(b, sig == SIGTERM ? "SIGTERM" : "SIGINT");
}

void tsl_broker_stop(tsl_broker *b)
{
    if (!b)
        return;
    atomic_store(&b->stop_requested, true);
    if (b->stop_ev)
        event_active(b->stop_ev, EV_TIMEOUT, 1);
}

/* ------------------------------------------------------------------------
 * Workers: their threads block the signals the control loop takes
 * ---------------------------------------------------------------------- */

static void block_signals(sigset_t *old)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, old);
}

/* ------------------------------------------------------------------------
 * Creating and freeing
 * ---------------------------------------------------------------------- */

static pthread_once_t evthread_once = PTHREAD_ONCE_INIT;
static int evthread_result;

/* libevent's lock callbacks are process-wide and must be set before any
 * event_base exists; pthread_once makes it happen exactly once. */
static void evthread_init(void)
{
    evthread_result = evthread_use_pthreads();
}

static char *dup_or_null(const char *s, int *err)
{
    if (!s)
        return NULL;
    char *p = strdup(s);
    if (!p)
        *err = tsl_oom();
    return p;
}

static int ncpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 64 ? 64 : (int)n;
}

int tsl_broker_new(tsl_broker **out, const tsl_broker_config *cfg)
{
    tsl_broker *b = NULL;
    tsl_plan *plan = NULL;
    int err = 0;

    TSL_ARG(out);
    *out = NULL;
    TSL_ARG(cfg);
    if (!cfg->db_path || !*cfg->db_path)
        return tsl_seterr(TSL_EINVALID, "the broker needs a store (db_path)");
    pthread_once(&evthread_once, evthread_init);
    if (evthread_result < 0)
        return tsl_seterr(TSL_ERROR, "libevent has no pthreads support");

    if (!(b = calloc(1, sizeof *b)))
        return tsl_oom();
    b->listen_fd = -1;
    b->cfg = *cfg;
    pthread_mutex_init(&b->plan_mu, NULL);
    pthread_mutex_init(&b->q_mu, NULL);
    pthread_mutex_init(&b->job_mu, NULL);
    pthread_mutex_init(&b->start_mu, NULL);
    pthread_cond_init(&b->start_cv, NULL);
    b->q_tail = &b->q_head;
    b->jobs_tail = &b->jobs;
    b->unwritten_tail = &b->unwritten;
    b->db_path = dup_or_null(cfg->db_path, &err);
    b->listen = dup_or_null(cfg->listen ? cfg->listen : "127.0.0.1:8080", &err);
    b->policy_path = dup_or_null(cfg->policy_path, &err);
    b->tls_cert = dup_or_null(cfg->tls_cert, &err);
    b->tls_key = dup_or_null(cfg->tls_key, &err);
    if (err < 0)
        goto done;
    if (cfg->admin_token_file) {
        b->token_path = dup_or_null(cfg->admin_token_file, &err);
    } else {
        size_t n = strlen(cfg->db_path) + sizeof ".token";
        if ((b->token_path = malloc(n)))
            snprintf(b->token_path, n, "%s.token", cfg->db_path);
        else
            err = tsl_oom();
    }
    if (err < 0)
        goto done;
    if (cfg->ts_token_file) {
        b->ts_token_path = dup_or_null(cfg->ts_token_file, &err);
    } else {
        size_t n = strlen(cfg->db_path) + sizeof ".ts-token";
        if ((b->ts_token_path = malloc(n)))
            snprintf(b->ts_token_path, n, "%s.ts-token", cfg->db_path);
        else
            err = tsl_oom();
    }
    if (err < 0)
        goto done;
    if (strcmp(b->ts_token_path, b->token_path) == 0) {
        err = tsl_seterr(TSL_EINVALID, "the task server token file and the admin token file "
                                       "must differ (both are %s)", b->token_path);
        goto done;
    }
    if ((err = ratelimit_new(&b->hb_limit, cfg->heartbeat_rate, cfg->heartbeat_burst)) < 0 ||
        (err = ratelimit_new(&b->reg_limit, cfg->registration_rate, cfg->registration_burst)) < 0)
        goto done;
    if ((err = broker_parse_proxies(b, cfg->trusted_proxies)) < 0)
        goto done;
    b->cfg.trusted_proxies = NULL; /* parsed into b->proxies */
    b->cfg.db_path = b->db_path;
    b->cfg.listen = b->listen;
    b->cfg.policy_path = b->policy_path;
    b->cfg.admin_token_file = b->token_path;
    b->cfg.ts_token_file = b->ts_token_path;
    if (b->cfg.max_servers < 1)
        b->cfg.max_servers = 1;
    b->cfg.tls_cert = b->tls_cert;
    b->cfg.tls_key = b->tls_key;
    if (b->cfg.threads <= 0)
        b->cfg.threads = ncpus();
    if (b->cfg.refresh_ms < 10)
        b->cfg.refresh_ms = 10;
    if (b->cfg.flush_ms < 5)
        b->cfg.flush_ms = 5;
    if (b->cfg.drain_ms < 0)
        b->cfg.drain_ms = 0;
    if (b->cfg.timeout_s < 1)
        b->cfg.timeout_s = 1;
    if (b->cfg.max_headers < 1)
        b->cfg.max_headers = 1;
    atomic_store(&b->dlog_budget, b->cfg.decision_log_rate);
    b->started_at = b->last_refill = broker_now(b);
    /* heartbeats sent while this broker was not running went unheard: they
     * age from its start, not from the last one stored */
    b->cfg.settings.heard_since = b->started_at;

    /* TLS and the plain-HTTP refusal first: nothing opened for nothing */
    if ((err = edge_init(b)) < 0)
        goto done;
    if ((err = token_load_or_create(b)) < 0)
        goto done;
    if ((err = tsl_store_open(&b->store, b->db_path, 0)) < 0 || (err = writer_open(b)) < 0)
        goto done;
    if ((err = tsl_snapshot_load(&b->snap, b->store, &b->cfg.settings)) < 0)
        goto done;
    b->snap->built_at = b->started_at; /* the broker's clock (not yet shared) */
    if ((err = tsl_worker_new(&b->ctl_worker)) < 0)
        goto done;
    if ((err = bpolicy_start(b)) < 0) /* binds and publishes the rollout */
        goto done;

    if ((err = broker_open_listener(b)) < 0)
        goto done;
    if (!(b->base = event_base_new())) {
        err = tsl_seterr(TSL_ERROR, "cannot create an event base");
        goto done;
    }
    struct timeval tick = {b->cfg.flush_ms / 1000, (b->cfg.flush_ms % 1000) * 1000};
    if (!(b->tick_ev = event_new(b->base, -1, EV_PERSIST, on_tick, b)) ||
        !(b->job_ev = event_new(b->base, -1, 0, jobs_on_event, b)) ||
        !(b->stop_ev = event_new(b->base, -1, 0, on_stop, b)) ||
        !(b->flush_ev = event_new(b->base, -1, 0, on_flush, b)) || event_add(b->tick_ev, &tick) < 0) {
        err = tsl_seterr(TSL_ERROR, "cannot create the control events");
        goto done;
    }
    if (b->cfg.handle_signals) {
        if (!(b->sig_term = evsignal_new(b->base, SIGTERM, on_signal, b)) ||
            !(b->sig_int = evsignal_new(b->base, SIGINT, on_signal, b)) ||
            !(b->sig_hup = evsignal_new(b->base, SIGHUP, on_signal, b)) ||
            evsignal_add(b->sig_term, NULL) < 0 || evsignal_add(b->sig_int, NULL) < 0 ||
            evsignal_add(b->sig_hup, NULL) < 0) {
            err = tsl_seterr(TSL_ERROR, "cannot handle signals");
            goto done;
        }
    }
    if (!(b->workers = calloc((size_t)b->cfg.threads, sizeof *b->workers))) {
        err = tsl_oom();
        goto done;
    }
    for (int i = 0; i < b->cfg.threads; i++) {
        b->nworkers = i + 1;
        if ((err = broker_worker_setup(b, &b->workers[i], i)) < 0)
            goto done;
    }
    *out = b;
    b = NULL;

done:
    tsl_plan_free(plan);
    tsl_broker_free(b);
    return err;
}

static void free_queue(wrec *r)
{
    for (wrec *next; r; r = next) {
        next = r->next;
        free(r);
    }
}

void tsl_broker_free(tsl_broker *b)
{
    if (!b)
        return;
    if (b->thread_started) {
        tsl_broker_stop(b);
        tsl_broker_join(b);
    }
    bpolicy_free(b);
    for (int i = 0; i < b->nworkers; i++)
        broker_worker_free(&b->workers[i]);
    free(b->workers);
    if (b->sig_term)
        event_free(b->sig_term);
    if (b->sig_int)
        event_free(b->sig_int);
    if (b->sig_hup)
        event_free(b->sig_hup);
    if (b->tick_ev)
        event_free(b->tick_ev);
    if (b->job_ev)
        event_free(b->job_ev);
    if (b->stop_ev)
        event_free(b->stop_ev);
    if (b->flush_ev)
        event_free(b->flush_ev);
    if (b->base)
        event_base_free(b->base);
    if (b->listen_fd >= 0)
        close(b->listen_fd);
    for (size_t i = 0; i < b->noverlay; i++)
        wrec_release(b->overlay[i]);
    free(b->overlay);
    for (wrec *r = b->unwritten, *next; r; r = next) {
        next = r->next;
        wrec_release(r);
    }
    free_queue(b->q_head);
    writer_close(b);
    tsl_store_free(b->store);
    tsl_plan_free(b->plan);
    tsl_plan_free(b->shadow_plan);
    tsl_shadow_free(b->shadow);
    for (size_t i = 0; i < b->nretired; i++)
        tsl_shadow_free(b->retired[i]);
    free(b->retired);
    tsl_snapshot_free(b->snap);
    tsl_rollout_free(b->rollout);
    tsl_worker_free(b->ctl_worker);
    pthread_mutex_destroy(&b->plan_mu);
    pthread_mutex_destroy(&b->q_mu);
    pthread_mutex_destroy(&b->job_mu);
    pthread_mutex_destroy(&b->start_mu);
    pthread_cond_destroy(&b->start_cv);
    free(b->db_path);
    free(b->listen);
    free(b->policy_path);
    free(b->token_path);
    free(b->ts_token_path);
    ratelimit_free(b->hb_limit);
    ratelimit_free(b->reg_limit);
    free(b->tls_cert);
    free(b->tls_key);
    edge_free(b);
    free(b);
}

int tsl_broker_bound_port(const tsl_broker *b) { return b->port; }
const char *tsl_broker_admin_token(const tsl_broker *b) { return b->token; }
const char *tsl_broker_admin_token_path(const tsl_broker *b) { return b->token_path; }
const char *tsl_broker_ts_token(const tsl_broker *b) { return b->ts_token; }
const char *tsl_broker_ts_token_path(const tsl_broker *b) { return b->ts_token_path; }

/* ------------------------------------------------------------------------
 * Running
 * ---------------------------------------------------------------------- */

static void signal_started(tsl_broker *b, int result)
{
    pthread_mutex_lock(&b->start_mu);
    b->start_done = true;
    b->start_result = result;
    pthread_cond_broadcast(&b->start_cv);
    pthread_mutex_unlock(&b->start_mu);
}

int tsl_broker_run(tsl_broker *b)
{
    int err = 0, started = 0;
    sigset_t old;

    if (atomic_exchange(&b->running, true)) {
        signal_started(b, TSL_ERROR);
        return tsl_seterr(TSL_ERROR, "the broker is already running");
    }
    block_signals(&old);
    for (int i = 0; i < b->nworkers; i++) {
        if (pthread_create(&b->workers[i].thread, NULL, broker_worker_main, &b->workers[i]) != 0) {
            err = tsl_seterr(TSL_ERROR, "cannot start worker thread %d", i);
            break;
        }
        b->workers[i].thread_started = true;
        started++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (b->cfg.handle_signals) {
        /* this thread takes the signals: libevent's handler wakes the loop */
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGHUP);
        pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    }
    b->last_derive_ms = broker_mono_ns() / 1000000;
    if (err == 0) {
        char version[96];
        const char *v = tsl_broker_policy_version(b, version, sizeof version);
        const char *colon = strrchr(b->listen, ':');
        int hostlen = colon ? (int)(colon - b->listen) : (int)strlen(b->listen);
        broker_log(b, TSL_LOG_INFO,
                   "Listening on %.*s port %d (%d HTTP threads), policy %s, store %s", hostlen,
                   b->listen, b->port, b->nworkers, v ? v : "none (default logic)", b->db_path);
    }
    signal_started(b, err);
    if (err == 0) {
        if (atomic_load(&b->stop_requested))
            begin_stop(b, "stop requested");
        event_base_loop(b->base, EVLOOP_NO_EXIT_ON_EMPTY);
    }

    /* the workers leave their loops; then nothing can post a job or a write */
    for (int i = 0; i < b->nworkers; i++)
        if (b->workers[i].thread_started)
            event_base_loopexit(b->workers[i].base, NULL);
    for (int i = 0; i < b->nworkers; i++) {
        if (b->workers[i].thread_started) {
            pthread_join(b->workers[i].thread, NULL);
            b->workers[i].thread_started = false;
        }
    }
    /* jobs nobody can reply to any more (their connections are closing) */
    bpolicy_free(b);
    for (job *j = jobs_take(b), *next; j; j = next) {
        next = j->next;
        if (j->kind == JOB_SYNC) {
            broker_run_job(b, j);
            continue;
        }
        event_free(j->reply_ev);
        free(j->body);
        tsl_buf_free(&j->out);
        free(j);
        atomic_fetch_sub(&b->jobs_pending, 1);
    }
    /* every acknowledged write reaches the store */
    size_t before = atomic_load(&b->q_len);
    int ferr = 0;
    for (int attempt = 0; attempt < 3; attempt++) {
        if ((ferr = writer_flush(b)) == 0 && atomic_load(&b->q_len) == 0)
            break;
    }
    if (ferr < 0 || atomic_load(&b->q_len) != 0) {
        broker_log(b, TSL_LOG_ERROR, "Stopped with %zu writes not saved: %s",
                   atomic_load(&b->q_len), tsl_error_last());
        if (err == 0)
            err = ferr < 0 ? ferr : TSL_ESTORE;
    } else {
        broker_log(b, TSL_LOG_INFO, "Stopped: %zu queued writes flushed, store closed", before);
    }
    atomic_store(&b->running, false);
    b->run_result = err;
    return err;
}

static void *control_main(void *arg)
{
    tsl_broker *b = arg;
    tsl_broker_run(b);
    return NULL;
}

int tsl_broker_start(tsl_broker *b)
{
    sigset_t old;
    if (b->thread_started)
        return tsl_seterr(TSL_ERROR, "the broker is already started");
    block_signals(&old);
    int rc = pthread_create(&b->thread, NULL, control_main, b);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0)
        return tsl_seterr(TSL_ERROR, "cannot start the broker thread");
    b->thread_started = true;
    pthread_mutex_lock(&b->start_mu);
    while (!b->start_done)
        pthread_cond_wait(&b->start_cv, &b->start_mu);
    int result = b->start_result;
    pthread_mutex_unlock(&b->start_mu);
    return result;
}

int tsl_broker_join(tsl_broker *b)
{
    if (!b->thread_started)
        return b->run_result;
    pthread_join(b->thread, NULL);
    b->thread_started = false;
    return b->run_result;
}
