/*
 * agent.c - the reference CTA's state machine (see agent.h for the rules).
 *
 *   LISTING ──list──> REGISTERING ──ok──> REGISTERED ──poll fails──> (next entry)
 *      ^                  │ fails: next entry                 │ new list: stay, or leave
 *      │                  v                                   v
 *      └── retry ───── STUCK (every allowed entry failed, or no list)
 *
 * Two timers drive it: `t_fetch` (the next list request: refresh or
 * backoff) and `t_main` (the next poll while registered, the next round
 * while stuck).  At most one broker list exchange and one Task Server
 * exchange are in flight; reports and unregistrations are fire-and-forget
 * but tracked, so freeing an agent cancels everything.  All intervals are
 * agent seconds, divided by the clock's speed when armed.
 *
 * Creating, starting, stopping and freeing an agent are agent_life.c's.
 *
 * Used by: `tsl agent`, the simulator.  Needs: agent_internal.h.
 */
#include "agent_internal.h"

#include "common.h"
#include "http_client.h"

#include <event2/event.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


/* ------------------------------------------------------------------------
 * Names, time, logging
 * ---------------------------------------------------------------------- */

const char *tsl_agent_event_name(tsl_agent_event ev)
{
    static const char *const names[] = {"list", "list-failed", "cache-dropped", "attempt",
                                        "registered", "registration-failed", "lost", "left",
                                        "stuck", "report-failed"};
    return (unsigned)ev < TSL_AGENT_EV_COUNT_ ? names[ev] : "unknown";
}

const char *tsl_agent_state_name(tsl_agent_state st)
{
    static const char *const names[] = {"idle", "listing", "registering", "registered", "stuck"};
    return (unsigned)st <= TSL_AGENT_STUCK ? names[st] : "unknown";
}

static double now(const tsl_agent *a)
{
    return aclock_now(a->clock);
}

/* A factor in [0.9, 1.1): spreads agents that would otherwise move in step. */
static double jitter(tsl_agent *a)
{
    a->rng ^= a->rng << 13;
    a->rng ^= a->rng >> 7;
    a->rng ^= a->rng << 17;
    return 0.9 + 0.2 * (double)(a->rng >> 11) / 9007199254740992.0;
}

/* Arms one of the two timers `agent_seconds` from now on the agent's clock. */
void agent_arm(tsl_agent *a, atimer *t, double agent_seconds)
{
    atimer_add(t, agent_seconds);
}

static void logf_(const tsl_agent *a, const char *fmt, ...) TSL_PRINTF(2, 3);
static void logf_(const tsl_agent *a, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    if (!a->log)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    a->log(a->arg, a, line);
}

static void emit(tsl_agent *a, tsl_agent_event ev, const tsl_agent_entry *e, const char *detail)
{
    if (a->event)
        a->event(a->arg, a, ev, e, detail);
}

static const tsl_agent_entry *find_entry(const tsl_agent *a, const char *name, int *idx)
{
    for (size_t i = 0; i < tsl_agent_list_count(a->list); i++) {
        const tsl_agent_entry *e = tsl_agent_list_get(a->list, i);
        if (strcmp(e->name, name) == 0) {
            if (idx)
                *idx = (int)i;
            return e;
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------------
 * Side exchanges: reports and unregistrations
 * ---------------------------------------------------------------------- */

static void side_done(const ahttp_result *r, void *arg)
{
    struct side *s = arg;
    tsl_agent *a = s->agent;
    if (s->prev)
        s->prev->next = s->next;
    else
        a->sides = s->next;
    if (s->next)
        s->next->prev = s->prev;
    bool failed = s->report && (r->status < 200 || r->status > 299);
    free(s);
    if (failed) {
        a->n_reports_failed++;
        emit(a, TSL_AGENT_EV_REPORT_FAILED, NULL, r->error ? r->error : "refused by the broker");
    }
}

static void side_start(tsl_agent *a, bool report, const char *host, int port, const char *method,
                       const char *target, const char *body)
{
    struct side *s = calloc(1, sizeof *s);
    if (!s) {
        if (report)
            a->n_reports_failed++;
        return;
    }
    s->agent = a;
    s->report = report;
    double timeout = report ? a->t.request_timeout : a->t.register_timeout;
    if (ahttp_start(&s->h, a->base, host, port, method, target, NULL, body,
                    body ? strlen(body) : 0, timeout, a->clock, side_done, s) < 0) {
        free(s);
        if (report)
            a->n_reports_failed++;
        return;
    }
    s->next = a->sides;
    if (a->sides)
        a->sides->prev = s;
    a->sides = s;
}

/* POST /v1/clients/GUID/registration {"server","ok","error"} */
static void report(tsl_agent *a, const char *server, bool ok, const char *error)
{
    char target[512];
    json_t *o = json_pack("{s:s, s:b, s:s?}", "server", server, "ok", ok, "error",
                          ok ? NULL : error);
    char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;
    snprintf(target, sizeof target, "/v1/clients/%s/registration", a->client_esc);
    if (body)
        side_start(a, true, a->broker_host, a->broker_port, "POST", target, body);
    else
        a->n_reports_failed++;
    free(body);
    json_decref(o);
}

static int resolve_entry(tsl_agent *a, const tsl_agent_entry *e, char *host, size_t hostlen,
                         int *port)
{
    if (a->resolve)
        return a->resolve(a->arg, a, e, host, hostlen, port);
    const char *h = e->ip[0] ? e->ip : e->host;
    if (!h[0] || strlen(h) >= hostlen)
        return -1;
    memcpy(host, h, strlen(h) + 1);
    *port = a->ts_port;
    return 0;
}

static void unregister(tsl_agent *a, const char *server)
{
    char host[64], target[256];
    int port = 0;
    const tsl_agent_entry *e = find_entry(a, server, NULL);
    tsl_agent_entry fake = {0};
    if (!e) { /* resolvable by name only (the simulator's resolver) */
        fake.name = server;
        fake.host = fake.ip = fake.site = fake.reason = "";
        e = &fake;
    }
    if (resolve_entry(a, e, host, sizeof host, &port) < 0)
        return;
    snprintf(target, sizeof target, "/unregister?client=%s", a->client_esc);
    side_start(a, false, host, port, "POST", target, NULL);
}

/* ------------------------------------------------------------------------
 * Choosing and registering
 * ---------------------------------------------------------------------- */

static void fetch(tsl_agent *a);
static void pick_next(tsl_agent *a);

static void enter_stuck(tsl_agent *a, double wait_until)
{
    double t = now(a);
    a->state = TSL_AGENT_STUCK;
    a->gated = wait_until > 0;
    a->gated_until = a->gated ? wait_until : 0;
    if (!a->stuck_reported) {
        a->stuck_reported = true;
        const char *why = !a->list                         ? "no Task Server list"
                          : tsl_agent_list_blocked(a->list) ? "the list is blocked"
                          : tsl_agent_list_count(a->list) == 0 ? "the list is empty"
                          : a->gated ? "fallback entries are not allowed yet"
                                     : "every entry failed";
        logf_(a, "Unable to register to any Task Server (%s); retrying", why);
        emit(a, TSL_AGENT_EV_STUCK, NULL, why);
    }
    double delay = a->t.stuck_retry * jitter(a);
    if (wait_until > t && wait_until - t < delay)
        delay = wait_until - t + 0.001;
    agent_arm(a, a->t_main, delay);
}

/* Nothing tried yet in this round, over the held list. */
static int reset_tried(tsl_agent *a)
{
    size_t n = tsl_agent_list_count(a->list);
    if (n > a->tried_cap) {
        bool *p = realloc(a->tried, n * sizeof *p);
        if (!p)
            return tsl_oom();
        a->tried = p;
        a->tried_cap = n;
    }
    if (n)
        memset(a->tried, 0, n * sizeof *a->tried);
    return 0;
}

/* A new round over the held list. */
static void start_round(tsl_agent *a)
{
    if (reset_tried(a) < 0) {
        enter_stuck(a, 0);
        return;
    }
    pick_next(a);
}

static void on_registered(const ahttp_result *r, void *arg);

static void attempt(tsl_agent *a, int idx)
{
    const tsl_agent_entry *e = tsl_agent_list_get(a->list, (size_t)idx);
    char host[64], target[256];
    int port = 0;

    a->state = TSL_AGENT_REGISTERING;
    a->attempt = idx;
    a->attempt_since = now(a);
    snprintf(a->attempt_name, sizeof a->attempt_name, "%s", e->name);
    a->n_attempts++;
    logf_(a, "Attempting to register to Task Server: %s", e->name);
    emit(a, TSL_AGENT_EV_ATTEMPT, e, NULL);

    snprintf(target, sizeof target, "/register?client=%s", a->client_esc);
    if (resolve_entry(a, e, host, sizeof host, &port) < 0) {
        ahttp_result r = {0, "unresolvable", "", 0};
        on_registered(&r, a);
        return;
    }
    if (ahttp_start(&a->h_ts, a->base, host, port, "POST", target, NULL, NULL, 0,
                    a->t.register_timeout, a->clock, on_registered, a) < 0) {
        ahttp_result r = {0, "cannot connect", "", 0};
        on_registered(&r, a);
    }
}

static void pick_next(tsl_agent *a)
{
    double wait = 0, t = now(a);
    if (!a->list) {
        enter_stuck(a, 0);
        return;
    }
    int idx = tsl_agent_pick(a->list, &a->mem, a->tried, t, &wait);
    if (idx >= 0) {
        attempt(a, idx);
        return;
    }
    /* Every allowed entry failed.  A list older than a retry pause may be
     * out of date (the broker may know of other servers by now): ask for a
     * fresh one once before settling down to stuck retrying. */
    if (wait == 0 && !a->stuck_reported && a->fetch_failures == 0 && !a->h_list &&
        t - a->list_fetched >= a->t.stuck_retry) {
        a->state = TSL_AGENT_LISTING;
        fetch(a);
        return;
    }
    enter_stuck(a, wait);
}

/* Text of a failed exchange: the transport error, or the status and the
 * JSON "error" member of the body when there is one. */
static void failure_text(char *dst, size_t n, const ahttp_result *r)
{
    if (r->error) {
        snprintf(dst, n, "%s", r->error);
        return;
    }
    json_t *o = json_loadb(r->body, r->len, 0, NULL);
    json_t *e = o ? json_object_get(o, "error") : NULL;
    if (e && json_is_string(e))
        snprintf(dst, n, "%s (HTTP %d)", json_string_value(e), r->status);
    else
        snprintf(dst, n, "HTTP %d", r->status);
    json_decref(o);
}


static void on_registered(const ahttp_result *r, void *arg)
{
    tsl_agent *a = arg;
    int idx = -1;
    /* by name: a new list may have arrived while the attempt was in flight */
    const tsl_agent_entry *e = find_entry(a, a->attempt_name, &idx);
    char why[160];

    a->h_ts = NULL;
    a->attempt = -1;
    if (r->status == 200) {
        snprintf(a->server, sizeof a->server, "%s", a->attempt_name);
        a->server_tier = e ? e->tier : -1;
        a->state = TSL_AGENT_REGISTERED;
        a->stuck_reported = false;
        a->gated = false;
        a->n_registrations++;
        tsl_agent_memory_ok(&a->mem, a->server);
        logf_(a, "Registered to Task Server: %s", a->server);
        emit(a, TSL_AGENT_EV_REGISTERED, e, NULL);
        report(a, a->server, true, NULL);
        agent_arm(a, a->t_main, a->t.poll_interval * jitter(a));
    } else {
        failure_text(why, sizeof why, r);
        logf_(a, "Registration failed: Task Server %s: %s", a->attempt_name, why);
        tsl_agent_memory_fail(&a->mem, a->attempt_name, now(a));
        if (idx >= 0)
            a->tried[idx] = true;
        a->state = TSL_AGENT_LISTING;
        emit(a, TSL_AGENT_EV_REG_FAILED, e, why);
        report(a, a->attempt_name, false, why);
        if (!a->fetch_due)
            pick_next(a);
    }
    if (a->fetch_due) {
        a->fetch_due = false;
        fetch(a);
    }
}

/* ------------------------------------------------------------------------
 * Watching the server
 * ---------------------------------------------------------------------- */

static void on_poll(const ahttp_result *r, void *arg)
{
    tsl_agent *a = arg;
    char why[160];
    int idx = -1;

    a->h_ts = NULL;
    if (r->status == 200) {
        agent_arm(a, a->t_main, a->t.poll_interval * jitter(a));
        return;
    }
    failure_text(why, sizeof why, r);
    const tsl_agent_entry *e = find_entry(a, a->server, &idx);
    logf_(a, "Lost connection to Task Server: %s: %s", a->server, why);
    tsl_agent_memory_fail(&a->mem, a->server, now(a));
    emit(a, TSL_AGENT_EV_LOST, e, why);
    a->server[0] = '\0';
    a->server_tier = -1;
    a->state = TSL_AGENT_LISTING;
    if (!a->list) {
        fetch(a);
        return;
    }
    /* the cached list again, the lost server last in this round */
    if (reset_tried(a) < 0) {
        enter_stuck(a, 0);
        return;
    }
    if (idx >= 0)
        a->tried[idx] = true;
    double wait = 0;
    if (idx >= 0 && tsl_agent_pick(a->list, &a->mem, a->tried, now(a), &wait) < 0)
        a->tried[idx] = false; /* nothing else allowed: the same server again */
    pick_next(a);
}

static void poll_server(tsl_agent *a)
{
    char host[64], target[256];
    int port = 0;
    const tsl_agent_entry *e = find_entry(a, a->server, NULL);
    tsl_agent_entry fake = {0};
    if (!e) {
        fake.name = a->server;
        fake.host = fake.ip = fake.site = fake.reason = "";
        e = &fake;
    }
    snprintf(target, sizeof target, "/poll?client=%s", a->client_esc);
    if (resolve_entry(a, e, host, sizeof host, &port) < 0 ||
        ahttp_start(&a->h_ts, a->base, host, port, "GET", target, NULL, NULL, 0,
                    a->t.register_timeout, a->clock, on_poll, a) < 0) {
        ahttp_result r = {0, "cannot connect", "", 0};
        on_poll(&r, a);
    }
}

void agent_poll_timer(void *arg)
{
    tsl_agent *a = arg;
    switch (a->state) {
    case TSL_AGENT_REGISTERED:
        if (!a->h_ts)
            poll_server(a);
        break;
    case TSL_AGENT_STUCK:
        /* a new round: on a fresh list when the broker answers (its answer,
         * or its failure, starts the round) */
        a->state = TSL_AGENT_LISTING;
        if (a->h_list)
            break;
        if (a->fetch_failures == 0)
            fetch(a);
        else if (a->list)
            start_round(a); /* the broker is down: the cached list, while it lasts */
        else
            enter_stuck(a, 0); /* no list: the backoff timer keeps asking */
        break;
    default:
        break;
    }
}

/* ------------------------------------------------------------------------
 * The list
 * ---------------------------------------------------------------------- */

/* Whether a registered agent should leave its tier-`tier` server for the
 * new list's better tier: yes unless every better entry failed for this
 * agent within the last stuck_retry seconds (then it stays put instead of
 * bouncing between a dead local server and its working fallback). */
static bool better_tier_worth_trying(const tsl_agent *a, int tier)
{
    double t = now(a);
    for (size_t i = 0; i < tsl_agent_list_count(a->list); i++) {
        const tsl_agent_entry *e = tsl_agent_list_get(a->list, i);
        if (e->tier >= tier)
            continue;
        if (tsl_agent_memory_failing_since(&a->mem, e->name) == 0 ||
            t - tsl_agent_memory_last_failure(&a->mem, e->name) >= a->t.stuck_retry)
            return true;
    }
    return false;
}

/* A new list arrived: stay with the current server, or move. */
static void apply_list(tsl_agent *a)
{
    switch (a->state) {
    case TSL_AGENT_REGISTERED: {
        const tsl_agent_entry *e = find_entry(a, a->server, NULL);
        const char *why = NULL;
        if (!e)
            why = "it is not in the new list";
        else if (better_tier_worth_trying(a, e->tier))
            why = "the new list has entries of a better tier";
        if (!why) {
            a->server_tier = e->tier;
            return;
        }
        char left[NAME_MAX_];
        snprintf(left, sizeof left, "%s", a->server);
        logf_(a, "Leaving Task Server: %s: %s", left, why);
        unregister(a, left);
        a->server[0] = '\0';
        a->server_tier = -1;
        a->state = TSL_AGENT_LISTING;
        if (a->h_ts) { /* a poll in flight belongs to the server we left */
            ahttp_cancel(a->h_ts);
            a->h_ts = NULL;
        }
        atimer_del(a->t_main);
        tsl_agent_entry gone = {0};
        gone.name = left;
        gone.host = gone.ip = gone.site = gone.reason = "";
        emit(a, TSL_AGENT_EV_LEFT, e ? e : &gone, why);
        start_round(a);
        return;
    }
    case TSL_AGENT_LISTING:
    case TSL_AGENT_STUCK:
        atimer_del(a->t_main);
        start_round(a);
        return;
    default:
        return;
    }
}


static void on_list(const ahttp_result *r, void *arg)
{
    tsl_agent *a = arg;
    tsl_agent_list *l = NULL;
    char why[200];
    double t = now(a);

    a->h_list = NULL;
    int err = r->status == 200 ? tsl_agent_list_parse(&l, r->body, r->len) : 0;
    tsl_agent_list_set_received(l, t); /* usable_in counts from here */
    if (l) {
        tsl_agent_list *old = a->list;
        a->list = l;
        if ((err = reset_tried(a)) < 0) {
            a->list = old;
            tsl_agent_list_free(l);
            l = NULL;
        } else {
            tsl_agent_list_free(old);
        }
    }
    if (l) {
        int ttl = tsl_agent_list_ttl(l) > 0 ? tsl_agent_list_ttl(l) : a->t.default_ttl;
        a->list_fetched = t;
        a->list_expires = t + ttl;
        a->fetch_failures = 0;
        logf_(a, "Received Task Server list from SMP Server: %zu entr%s%s%s", tsl_agent_list_count(l),
              tsl_agent_list_count(l) == 1 ? "y" : "ies", tsl_agent_list_blocked(l) ? ", blocked" : "",
              tsl_agent_list_strict(l) ? ", strict" : "");
        emit(a, TSL_AGENT_EV_LIST, NULL, NULL);
        double refresh = ttl * a->t.refresh;
        agent_arm(a, a->t_fetch, (refresh < 1 ? 1 : refresh) * jitter(a));
        apply_list(a);
        return;
    }

    if (err < 0)
        snprintf(why, sizeof why, "unreadable list: %s", tsl_error_last());
    else
        failure_text(why, sizeof why, r);
    a->n_list_failures++;
    logf_(a, "Failed to get Task Server list from SMP Server: %s", why);
    emit(a, TSL_AGENT_EV_LIST_FAILED, NULL, why);
    if (a->list && t >= a->list_expires) {
        tsl_agent_list_free(a->list);
        a->list = NULL;
        a->list_expires = 0;
        logf_(a, "Cached Task Server list expired: dropped");
        emit(a, TSL_AGENT_EV_CACHE_DROPPED, NULL, NULL);
    }
    double backoff = a->t.retry_min * pow(2.0, a->fetch_failures < 20 ? a->fetch_failures : 20);
    if (backoff > a->t.retry_max)
        backoff = a->t.retry_max;
    a->fetch_failures++;
    backoff *= jitter(a);
    /* the cache's expiry is itself a moment to try again: drop it then */
    if (a->list && a->list_expires - t > 0 && a->list_expires - t < backoff)
        backoff = a->list_expires - t + 0.001;
    agent_arm(a, a->t_fetch, backoff);
    if (a->state == TSL_AGENT_LISTING) {
        if (a->list)
            start_round(a);
        else
            enter_stuck(a, 0);
    }
}

static void fetch(tsl_agent *a)
{
    if (a->h_list)
        return;
    if (a->state == TSL_AGENT_REGISTERING) {
        a->fetch_due = true;
        return;
    }
    atimer_del(a->t_fetch);
    a->n_list_requests++;
    a->list_asked = now(a);
    if (ahttp_start(&a->h_list, a->base, a->broker_host, a->broker_port, "GET", a->list_target,
                    NULL, NULL, 0, a->t.request_timeout, a->clock, on_list, a) < 0) {
        ahttp_result r = {0, "cannot connect", "", 0};
        on_list(&r, a);
    }
}

void agent_fetch_timer(void *arg)
{
    fetch(arg);
}
