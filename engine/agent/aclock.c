/*
 * aclock.c - wall and virtual time for the agent (see aclock.h).
 *
 * A virtual clock keeps its timers in a binary heap ordered by due time,
 * then by the order they were armed, so timers due at the same second fire
 * in a fixed order and a run is repeatable.  The driver (aclock_run)
 * alternates two phases: the loop's I/O until no exchange that will be
 * answered is in flight, then the earliest timer.
 */
#include "aclock.h"

#include "common.h"

#include <event2/event.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

struct aclock {
    _Atomic double now;
    atimer **heap;
    size_t n, cap;
    uint64_t seq;
    long live;
    int silent_port;
    bool stopped;
    double pace;               /* clock seconds per wall second, 0: none */
    double quantum;            /* timers due within one window fire together, 0: one by one */
    double pace_wall, pace_at; /* where pacing counts from */
};

struct atimer {
    aclock *c;
    struct event *ev;   /* wall timers */
    atimer_cb cb;
    void *arg;
    double at;
    uint64_t seq;
    size_t slot;        /* index in the heap + 1, 0: not pending */
};

static double wall_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------------------
 * The clock
 * ---------------------------------------------------------------------- */

int aclock_new(aclock **out, double start)
{
    aclock *c = calloc(1, sizeof *c);
    *out = NULL;
    if (!c)
        return tsl_oom();
    atomic_init(&c->now, start);
    c->silent_port = -1;
    *out = c;
    return 0;
}

void aclock_free(aclock *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++)
        c->heap[i]->slot = 0; /* timers outliving the clock are the owner's bug */
    free(c->heap);
    free(c);
}

double aclock_now(const aclock *c)
{
    if (!c) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    }
    return atomic_load_explicit(&((aclock *)c)->now, memory_order_relaxed);
}

void aclock_set_silent_port(aclock *c, int port)
{
    c->silent_port = port;
}

void aclock_set_pace(aclock *c, double speed)
{
    c->pace = speed > 0 ? speed : 0;
    c->pace_wall = wall_mono();
    c->pace_at = aclock_now(c);
}

void aclock_set_quantum(aclock *c, double seconds)
{
    c->quantum = seconds > 0 ? seconds : 0;
}

long aclock_live(const aclock *c)
{
    return c ? c->live : 0;
}

bool aclock_counts(const aclock *c, int port)
{
    return c && port != c->silent_port;
}

void aclock_track(aclock *c, int delta)
{
    if (c)
        c->live += delta;
}

void aclock_stop(aclock *c)
{
    c->stopped = true;
}

/* ------------------------------------------------------------------------
 * The heap
 * ---------------------------------------------------------------------- */

static bool before(const atimer *a, const atimer *b)
{
    return a->at < b->at || (a->at == b->at && a->seq < b->seq);
}

static void place(aclock *c, size_t i, atimer *t)
{
    c->heap[i] = t;
    t->slot = i + 1;
}

static void sift_up(aclock *c, size_t i)
{
    atimer *t = c->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!before(t, c->heap[parent]))
            break;
        place(c, i, c->heap[parent]);
        i = parent;
    }
    place(c, i, t);
}

static void sift_down(aclock *c, size_t i)
{
    atimer *t = c->heap[i];
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, best = i;
        const atimer *bt = t;
        if (l < c->n && before(c->heap[l], bt))
            best = l, bt = c->heap[l];
        if (r < c->n && before(c->heap[r], bt))
            best = r;
        if (best == i)
            break;
        place(c, i, c->heap[best]);
        i = best;
    }
    place(c, i, t);
}

static void heap_remove(aclock *c, atimer *t)
{
    size_t i = t->slot - 1;
    t->slot = 0;
    c->n--;
    if (i == c->n)
        return;
    place(c, i, c->heap[c->n]);
    sift_down(c, i);
    sift_up(c, c->heap[i]->slot - 1);
}

static int heap_add(aclock *c, atimer *t)
{
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 256;
        atimer **p = realloc(c->heap, cap * sizeof *p);
        if (!p)
            return tsl_oom();
        c->heap = p;
        c->cap = cap;
    }
    place(c, c->n++, t);
    sift_up(c, c->n - 1);
    return 0;
}

/* ------------------------------------------------------------------------
 * Timers
 * ---------------------------------------------------------------------- */

static void wall_fire(evutil_socket_t fd, short what, void *arg)
{
    atimer *t = arg;
    (void)fd;
    (void)what;
    t->cb(t->arg);
}

int atimer_new(atimer **out, struct event_base *base, aclock *c, atimer_cb cb, void *arg)
{
    atimer *t = calloc(1, sizeof *t);
    *out = NULL;
    if (!t)
        return tsl_oom();
    t->c = c;
    t->cb = cb;
    t->arg = arg;
    if (!c && !(t->ev = evtimer_new(base, wall_fire, t))) {
        free(t);
        return tsl_oom();
    }
    *out = t;
    return 0;
}

void atimer_add(atimer *t, double seconds)
{
    if (!(seconds > 0))
        seconds = 0;
    if (!t->c) {
        struct timeval tv;
        tv.tv_sec = (time_t)seconds;
        tv.tv_usec = (suseconds_t)((seconds - (double)tv.tv_sec) * 1e6);
        t->at = aclock_now(NULL) + seconds;
        evtimer_add(t->ev, &tv);
        return;
    }
    if (t->slot)
        heap_remove(t->c, t);
    t->at = aclock_now(t->c) + seconds;
    t->seq = ++t->c->seq;
    if (heap_add(t->c, t) < 0) /* out of memory: fire at the next step rather than never */
        t->at = -1;
}

void atimer_del(atimer *t)
{
    if (!t)
        return;
    if (!t->c)
        evtimer_del(t->ev);
    else if (t->slot)
        heap_remove(t->c, t);
}

bool atimer_pending(const atimer *t)
{
    if (!t)
        return false;
    return t->c ? t->slot != 0 : evtimer_pending(t->ev, NULL) != 0;
}

double atimer_due(const atimer *t)
{
    return t->at;
}

void atimer_free(atimer *t)
{
    if (!t)
        return;
    atimer_del(t);
    if (t->ev)
        event_free(t->ev);
    free(t);
}

/* ------------------------------------------------------------------------
 * The driver
 * ---------------------------------------------------------------------- */

/* Waits in wall time until pacing allows clock time `at`, the loop's I/O
 * and wall timers running meanwhile. */
static void pace_until(aclock *c, struct event_base *base, double at)
{
    if (c->pace <= 0)
        return;
    for (;;) {
        double left = c->pace_wall + (at - c->pace_at) / c->pace - wall_mono();
        if (left <= 0 || c->stopped)
            return;
        if (left > 0.05)
            left = 0.05;
        struct timeval tv = {0, (suseconds_t)(left * 1e6)};
        event_base_loopexit(base, &tv);
        if (event_base_loop(base, 0) < 0)
            return;
    }
}

int aclock_run(aclock *c, struct event_base *base, double until, aclock_quiet_fn quiet,
               void *arg)
{
    c->stopped = false;
    if (c->pace > 0 && c->pace_wall == 0)
        aclock_set_pace(c, c->pace);
    while (!c->stopped) {
        /* the exchanges in flight end first: they take no clock time */
        while (c->live > 0 && !c->stopped)
            if (event_base_loop(base, EVLOOP_ONCE) < 0)
                return -1;
        if (event_base_loop(base, EVLOOP_NONBLOCK) < 0)
            return -1;
        if (c->stopped)
            break;
        if (c->live > 0)
            continue;
        double next = c->n ? c->heap[0]->at : INFINITY;
        if (next > until) {
            if (aclock_now(c) < until)
                atomic_store(&c->now, until);
            break;
        }
        if (quiet) {
            quiet(arg, next);
            if (c->live > 0 || c->stopped)
                continue;
        }
        pace_until(c, base, next);
        if (c->stopped)
            break;
        if (c->live > 0 || !c->n || c->heap[0]->at != next)
            continue; /* the wait let something else happen first */
        /* the timers of this window, in order; then their exchanges */
        double end = c->quantum > 0 ? (floor(next / c->quantum) + 1) * c->quantum : next;
        while (c->n && !c->stopped && (c->heap[0]->at < end || c->heap[0]->at <= next) &&
               c->heap[0]->at <= until) {
            atimer *t = c->heap[0];
            heap_remove(c, t);
            if (t->at > aclock_now(c))
                atomic_store(&c->now, t->at);
            t->cb(t->arg);
        }
    }
    return 0;
}
