/*
 * broker.c - the broker's lifecycle and its control thread: opening the
 * store and the listening socket, starting the HTTP workers, publishing
 * plans, the timer that flushes writes and derives new plans, signals as
 * loop events, admin jobs, and the orderly stop (stop accepting, answer
 * what is in flight, flush every acknowledged write, close the store).
 *
 * Publishing a plan: the control thread swaps `plan` under plan_mu and
 * bumps plan_gen; each worker compares plan_gen with its own before a
 * request and, when it moved, takes a reference to the new plan and drops
 * its old one.  A request in flight keeps deciding against the plan its
 * worker held when it started, so a swap never fails a request; idle
 * workers are poked (refresh_ev) so an old plan does not linger.
 *
 * Used by: broker.h's callers.  Needs: control_internal.h, http.h and
 * edge.h (a worker's setup; never routes.h).
 */
#include "control_internal.h"
#include "edge.h"
#include "http.h"

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
 * Configuration and clocks
 * ---------------------------------------------------------------------- */

void tsl_broker_config_init(tsl_broker_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->listen = "127.0.0.1:8080";
    tsl_settings_init(&cfg->settings);
    cfg->refresh_ms = 500;
    cfg->flush_ms = 100;
    cfg->drain_ms = 200;
    cfg->timeout_s = 10;
    cfg->max_conns_per_addr = 256;
    cfg->max_body = 64 * 1024;
    cfg->max_import_body = 64 * 1024 * 1024;
    cfg->max_headers_size = 8 * 1024;
    cfg->max_headers = 64;
    cfg->max_queue = 100000;
    cfg->decision_log_max = 100000;
    cfg->decision_log_rate = 1000;
    cfg->registrations_keep_days = 90;
    cfg->log_level = TSL_LOG_INFO;
    cfg->heartbeat_rate = 20;
    cfg->heartbeat_burst = 200;
    cfg->max_servers = 10000;
    cfg->registration_rate = 1;
    cfg->registration_burst = 20;
}

bool broker_trusted_proxy(const tsl_broker *b, const uint8_t addr[16])
{
    for (int i = 0; i < b->nproxies; i++) {
        int bits = b->proxy_bits[i], full = bits / 8, rest = bits % 8;
        if (memcmp(addr, b->proxies[i].b, (size_t)full) != 0)
            continue;
        if (rest && ((addr[full] ^ b->proxies[i].b[full]) & (0xff00 >> rest) & 0xff))
            continue;
        return true;
    }
    return false;
}

/* cfg.trusted_proxies "ADDR[/BITS],..." into b->proxies. */
static int parse_proxies(tsl_broker *b, const char *list)
{
    char item[128];
    const char *p = list;

    while (p && *p) {
        size_t n = strcspn(p, ",");
        if (n == 0 || n >= sizeof item)
            return tsl_seterr(TSL_EINVALID, "trusted proxies: \"%.64s\" is not an address or "
                                            "CIDR",
                              p);
        if (b->nproxies == BROKER_MAX_PROXIES)
            return tsl_seterr(TSL_ELIMIT, "trusted proxies: at most %d", BROKER_MAX_PROXIES);
        memcpy(item, p, n);
        item[n] = '\0';
        tsl_ip *ip = &b->proxies[b->nproxies];
        int *bits = &b->proxy_bits[b->nproxies];
        int err = strchr(item, '/') ? tsl_cidr_parse(ip, bits, item) : tsl_ip_parse(ip, item);
        if (err < 0) {
            char why[256];
            snprintf(why, sizeof why, "%s", tsl_error_last());
            return tsl_seterr(TSL_EINVALID, "trusted proxies: %s", why);
        }
        if (!strchr(item, '/'))
            *bits = 128;
        b->nproxies++;
        p += n + (p[n] == ',');
    }
    return 0;
}

int64_t broker_now(const tsl_broker *b)
{
    if (b->cfg.clock)
        return b->cfg.clock(b->cfg.clock_ud);
    return (int64_t)time(NULL);
}

uint64_t broker_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------------------
 * Plans
 * ---------------------------------------------------------------------- */

void broker_publish(tsl_broker *b, tsl_plan *plan, tsl_plan *shadow_plan)
{
    tsl_policy *pol = tsl_plan_policy(plan);
    const char *version = pol ? tsl_policy_version(pol) : NULL;

    pthread_mutex_lock(&b->plan_mu);
    tsl_plan *old = b->plan, *old_shadow = b->shadow_plan;
    b->plan = plan;
    b->shadow_plan = shadow_plan;
    snprintf(b->policy_version, sizeof b->policy_version, "%s", version ? version : "");
    atomic_store(&b->plan_built_at, tsl_snapshot_built_at(tsl_plan_snapshot(plan)));
    atomic_fetch_add_explicit(&b->plan_gen, 1, memory_order_release);
    pthread_mutex_unlock(&b->plan_mu);
    tsl_plan_free(old);
    tsl_plan_free(old_shadow);

    /* the control thread keeps the latest snapshot to derive from */
    tsl_snapshot *snap = tsl_snapshot_ref(tsl_plan_snapshot(plan));
    tsl_snapshot_free(b->snap);
    b->snap = snap;

    for (int i = 0; i < b->nworkers; i++)
        if (b->workers[i].refresh_ev)
            event_active(b->workers[i].refresh_ev, EV_TIMEOUT, 1);
}

void worker_refresh_plan(bworker *w)
{
    tsl_broker *b = w->b;
    if (w->plan && atomic_load_explicit(&b->plan_gen, memory_order_acquire) == w->plan_gen)
        return;
    pthread_mutex_lock(&b->plan_mu);
    tsl_plan *p = tsl_plan_ref(b->plan);
    tsl_plan *sp = b->shadow_plan ? tsl_plan_ref(b->shadow_plan) : NULL;
    /* the tally lives as long as the broker (retired, never freed early);
     * taken only with the plan of its own version */
    w->shadow = sp && b->shadow && strcmp(tsl_shadow_version(b->shadow),
                                          tsl_policy_version(tsl_plan_policy(sp))) == 0
                    ? b->shadow
                    : NULL;
    w->plan_gen = atomic_load_explicit(&b->plan_gen, memory_order_relaxed);
    pthread_mutex_unlock(&b->plan_mu);
    tsl_plan_free(w->plan);
    tsl_plan_free(w->shadow_plan);
    w->plan = p;
    w->shadow_plan = sp;
}

int broker_bind(tsl_broker *b, tsl_snapshot *snap, tsl_plan **plan, tsl_plan **shadow)
{
    int err;
    *plan = *shadow = NULL;
    if ((err = tsl_rollout_bind(plan, b->rollout, snap)) < 0 ||
        (err = tsl_rollout_bind_shadow(shadow, b->rollout, snap)) < 0) {
        tsl_plan_free(*plan);
        *plan = NULL;
    }
    return err;
}

const char *tsl_broker_policy_version(tsl_broker *b, char *dst, size_t len)
{
    pthread_mutex_lock(&b->plan_mu);
    snprintf(dst, len, "%s", b->policy_version);
    pthread_mutex_unlock(&b->plan_mu);
    return dst[0] ? dst : NULL;
}

/* Loads the inventory from the store again: the new root, with what the
 * overlay and the not yet committed records say on top. */
int broker_reload(tsl_broker *b)
{
    tsl_snapshot *root = NULL, *snap = NULL;
    tsl_plan *plan = NULL, *shadow = NULL;
    int err;
    uint64_t t0 = broker_mono_ns();

    writer_flush(b); /* what stays unwritten is re-applied below */
    if ((err = tsl_snapshot_load(&root, b->store, &b->cfg.settings)) < 0)
        goto done;
    root->built_at = broker_now(b); /* the broker's clock (not yet shared) */
    for (wrec *r = b->unwritten; r; r = r->next) {
        if (r->kind == WREC_HEARTBEAT || (r->kind == WREC_REGISTRATION && !r->u.reg.ok)) {
            if ((err = overlay_add(b, r)) < 0)
                goto done;
        }
    }
    if ((err = overlay_apply(b, root, &snap)) < 0 ||
        (err = broker_bind(b, snap, &plan, &shadow)) < 0)
        goto done;
    broker_publish(b, plan, shadow);
    plan = shadow = NULL;
    atomic_fetch_add(&b->reloads, 1);
    broker_log(b, TSL_LOG_INFO,
               "Inventory loaded: %zu sites, %zu task servers, %zu clients in %.0f ms",
               tsl_snapshot_site_count(snap), tsl_snapshot_server_count(snap),
               tsl_snapshot_client_count(snap), (double)(broker_mono_ns() - t0) / 1e6);

done:
    tsl_plan_free(plan);
    tsl_plan_free(shadow);
    tsl_snapshot_free(snap);
    tsl_snapshot_free(root);
    return err;
}

/* ------------------------------------------------------------------------
 * Admin jobs
 * ---------------------------------------------------------------------- */

void broker_post_job(tsl_broker *b, job *j)
{
    atomic_fetch_add(&b->jobs_pending, 1);
    pthread_mutex_lock(&b->job_mu);
    j->next = NULL;
    *b->jobs_tail = j;
    b->jobs_tail = &j->next;
    pthread_mutex_unlock(&b->job_mu);
    event_active(b->job_ev, EV_TIMEOUT, 1);
}

static void finish_sync(job *j, int result)
{
    pthread_mutex_lock(j->done_mu);
    *j->result = result;
    *j->done = true;
    pthread_cond_signal(j->done_cv);
    pthread_mutex_unlock(j->done_mu);
}

void broker_run_job(tsl_broker *b, job *j)
{
    if (j->kind == JOB_POLICY_UPLOAD && bpolicy_defer(b, j))
        return; /* checked on the checker thread, replied from bpolicy.c */
    switch (j->kind) {
    case JOB_SYNC: {
        int err = writer_flush(b);
        int err2 = writer_derive(b);
        b->last_derive_ms = broker_mono_ns() / 1000000;
        atomic_fetch_sub(&b->jobs_pending, 1);
        finish_sync(j, err < 0 ? err : err2);
        return; /* the waiter owns the job */
    }
    case JOB_POLICY_UPLOAD:
    case JOB_POLICY_ACTIVATE:
    case JOB_POLICY_ROLLBACK:
    case JOB_POLICY_LIST:
        bpolicy_job(b, j);
        break;
    case JOB_REPORT:
        admin_report_job(b, j);
        break;
    case JOB_INVENTORY:
        admin_inventory_job(b, j);
        break;
    case JOB_SERVERS_PENDING:
    case JOB_SERVER_APPROVE:
    case JOB_SERVER_REJECT:
        admin_servers_job(b, j);
        break;
    }
    atomic_fetch_add(&b->jobs_done, 1);
    event_active(j->reply_ev, EV_TIMEOUT, 1);
}

static job *take_jobs(tsl_broker *b)
{
    pthread_mutex_lock(&b->job_mu);
    job *list = b->jobs;
    b->jobs = NULL;
    b->jobs_tail = &b->jobs;
    pthread_mutex_unlock(&b->job_mu);
    return list;
}

static void on_jobs(evutil_socket_t fd, short what, void *arg)
{
    tsl_broker *b = arg;
    (void)fd;
    (void)what;
    for (job *j = take_jobs(b), *next; j; j = next) {
        next = j->next;
        broker_run_job(b, j);
    }
}

int tsl_broker_sync(tsl_broker *b)
{
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
    bool done = false;
    int result = 0;
    job j;

    if (!atomic_load(&b->running))
        return tsl_seterr(TSL_ERROR, "the broker is not running");
    memset(&j, 0, sizeof j);
    j.kind = JOB_SYNC;
    j.done_mu = &mu;
    j.done_cv = &cv;
    j.done = &done;
    j.result = &result;
    broker_post_job(b, &j);
    pthread_mutex_lock(&mu);
    while (!done)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    pthread_cond_destroy(&cv);
    pthread_mutex_destroy(&mu);
    return result;
}

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
 * Workers
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

static void *worker_main(void *arg)
{
    bworker *w = arg;
    edge_worker_enter(w);
    event_base_loop(w->base, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
}

static void worker_free(bworker *w)
{
    if (w->bound && w->http)
        evhttp_del_accept_socket(w->http, w->bound);
    if (w->http)
        evhttp_free(w->http);
    edge_worker_free(w);
    writer_worker_free(w);
    if (w->stop_ev)
        event_free(w->stop_ev);
    if (w->refresh_ev)
        event_free(w->refresh_ev);
    if (w->base)
        event_base_free(w->base);
    tsl_plan_free(w->plan);
    tsl_plan_free(w->shadow_plan);
    tsl_worker_free(w->tw);
    tsl_worker_free(w->shadow_tw);
    tsl_result_free(w->res);
    tsl_result_free(w->shadow_res);
    tsl_trace_free(w->trace);
    tsl_buf_free(&w->out);
    tsl_buf_free(&w->line);
    tsl_buf_free(&w->body);
    memset(w, 0, sizeof *w);
}

/* ------------------------------------------------------------------------
 * The listening socket
 * ---------------------------------------------------------------------- */

/* "10.0.0.1:8080", "[::1]:8080" or ":8080" (every IPv4 address); port 0
 * lets the kernel pick.  Numeric addresses only. */
static int parse_listen(const char *text, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[64];
    const char *colon = strrchr(text, ':');
    char *end;
    memset(ss, 0, sizeof *ss);
    if (!colon || !colon[1])
        return -1;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 0 || port > 65535)
        return -1;
    size_t hl = (size_t)(colon - text);
    if (hl >= 2 && text[0] == '[' && text[hl - 1] == ']') {
        text++;
        hl -= 2;
    } else if (memchr(text, ':', hl)) {
        return -1; /* an IPv6 address needs its brackets */
    }
    if (hl >= sizeof host)
        return -1;
    memcpy(host, text, hl);
    host[hl] = '\0';
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    if (hl == 0 || inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        if (hl == 0)
            v4->sin_addr.s_addr = htonl(INADDR_ANY);
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        *len = sizeof *v4;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        *len = sizeof *v6;
        return 0;
    }
    return -1;
}

static int open_listener(tsl_broker *b)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    int one = 1;
    evutil_socket_t fd = -1;
    int err = 0;

    if (parse_listen(b->listen, &ss, &sslen) < 0) {
        err = tsl_seterr(TSL_EINVALID,
                         "--listen \"%s\": expected ADDRESS:PORT (127.0.0.1:8080, [::1]:8080, "
                         ":8080 for every IPv4 address; port 0 picks a free one)",
                         b->listen);
        goto done;
    }
    if ((err = edge_check_plain(b, (struct sockaddr *)&ss)) < 0)
        goto done;
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        err = tsl_seterr(TSL_ERROR, "socket: %s", strerror(errno));
        goto done;
    }
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, (struct sockaddr *)&ss, sslen) < 0 || listen(fd, 1024) < 0) {
        err = tsl_seterr(TSL_ERROR, "cannot listen on %s: %s", b->listen, strerror(errno));
        goto done;
    }
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
        err = tsl_seterr(TSL_ERROR, "getsockname: %s", strerror(errno));
        goto done;
    }
    b->port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                       : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    b->listen_fd = fd;
    fd = -1;

done:
    if (fd >= 0)
        close(fd);
    return err;
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

static int setup_worker(tsl_broker *b, bworker *w, int index)
{
    int err;
    w->b = b;
    w->index = index;
    if ((err = tsl_worker_new(&w->tw)) < 0 || (err = tsl_result_new(&w->res)) < 0 ||
        (err = tsl_worker_new(&w->shadow_tw)) < 0 || (err = tsl_result_new(&w->shadow_res)) < 0 ||
        (err = tsl_trace_new(&w->trace)) < 0)
        return err;
    /* No EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST: with it, a connection closed
     * and a new one accepted on the same fd number in one loop iteration
     * folds into "no change", the new socket is never added to epoll and
     * its request hangs (broker__policy_activations_under_concurrent_
     * requests_fail_none caught it: one to four of its sixty activations timed
     * out). */
    w->base = event_base_new();
    if (!w->base)
        return tsl_seterr(TSL_ERROR, "cannot create an event base");
    if ((err = writer_worker_init(w)) < 0 || (err = http_worker_setup(w)) < 0)
        return err;
    evutil_socket_t fd = dup(b->listen_fd);
    if (fd < 0)
        return tsl_seterr(TSL_ERROR, "dup: %s", strerror(errno));
    if (!(w->bound = evhttp_accept_socket_with_handle(w->http, fd))) {
        close(fd);
        return tsl_seterr(TSL_ERROR, "cannot accept on the listening socket");
    }
    if ((err = edge_worker_setup(w)) < 0)
        return err;
    worker_refresh_plan(w);
    return 0;
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
    if ((err = parse_proxies(b, cfg->trusted_proxies)) < 0)
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

    if ((err = open_listener(b)) < 0)
        goto done;
    if (!(b->base = event_base_new())) {
        err = tsl_seterr(TSL_ERROR, "cannot create an event base");
        goto done;
    }
    struct timeval tick = {b->cfg.flush_ms / 1000, (b->cfg.flush_ms % 1000) * 1000};
    if (!(b->tick_ev = event_new(b->base, -1, EV_PERSIST, on_tick, b)) ||
        !(b->job_ev = event_new(b->base, -1, 0, on_jobs, b)) ||
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
        if ((err = setup_worker(b, &b->workers[i], i)) < 0)
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
        worker_free(&b->workers[i]);
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
        if (pthread_create(&b->workers[i].thread, NULL, worker_main, &b->workers[i]) != 0) {
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
    for (job *j = take_jobs(b), *next; j; j = next) {
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
