/*
 * aclock.h - the time the agent and its exchanges live on: the wall clock
 * (libevent timers), or a virtual clock that a driver advances from one
 * timer to the next (the simulator's discrete-event time).
 *
 * On a virtual clock, time stands still while an exchange that will be
 * answered is in flight (aclock_run waits for it on the loop), and jumps to
 * the earliest timer once none is.  So an exchange costs no simulated time,
 * a timeout lasts exactly its simulated seconds, and a run gives the same
 * results however fast the machine is or however fast it is paced.
 * Exchanges to a port that never answers (the simulator's blackhole: a cut
 * link, a dark site) are not waited for: their timeout ends them.
 *
 * A NULL clock is the wall clock: Unix seconds, timers in wall seconds.
 *
 * Used by: http_client.c, agent.c, the simulator, tests.  Needs: libevent.
 */
#ifndef TSL_AGENT_ACLOCK_H
#define TSL_AGENT_ACLOCK_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;

typedef struct aclock aclock;
typedef struct atimer atimer;
typedef void (*atimer_cb)(void *arg);

/* A virtual clock that starts at `start` seconds (the simulator starts it
 * at the Unix time of the run, so the agents' times and the broker's are
 * on one scale, as on a real network). */
int aclock_new(aclock **out, double start);
void aclock_free(aclock *c);
/* Seconds on the clock; NULL: the wall clock (Unix seconds).  Safe to call
 * from any thread (the broker's threads read the simulated time). */
double aclock_now(const aclock *c);
/* Exchanges to this port are never answered: not waited for. */
void aclock_set_silent_port(aclock *c, int port);
/* At most `speed` clock seconds per wall second (0: as fast as it goes). */
void aclock_set_pace(aclock *c, double speed);

/* Timers due within one window of `seconds` (aligned on multiples of it)
 * fire one after the other, and the exchanges they start run together
 * afterwards: each then lasts at most the window, which lets the loop work
 * on many at once.  0 (the default): one timer at a time. */
void aclock_set_quantum(aclock *c, double seconds);

/* Exchanges in flight that will be answered (http_client.c keeps count). */
long aclock_live(const aclock *c);
bool aclock_counts(const aclock *c, int port);
void aclock_track(aclock *c, int delta);

/* Called when nothing is in flight, before the clock moves on to `next`
 * (the earliest timer): the place to let other threads settle. */
typedef void (*aclock_quiet_fn)(void *arg, double next);

/* Drives a virtual clock on `base`: runs the loop until no exchange that
 * will be answered is in flight, then moves to the earliest timer and fires
 * every timer due then, and again; returns when the next timer is past
 * `until` (the clock then reads `until`), or after aclock_stop().  Wall
 * timers and I/O of `base` keep running meanwhile.  Returns 0, or -1 when
 * the loop fails. */
int aclock_run(aclock *c, struct event_base *base, double until, aclock_quiet_fn quiet,
               void *arg);
/* Makes aclock_run return as soon as it can; safe from any callback. */
void aclock_stop(aclock *c);

/* A one-shot timer on `c` (NULL: a wall timer on `base`). */
int atimer_new(atimer **out, struct event_base *base, aclock *c, atimer_cb cb, void *arg);
/* Arms (or re-arms) it `seconds` from now on its clock. */
void atimer_add(atimer *t, double seconds);
void atimer_del(atimer *t);
bool atimer_pending(const atimer *t);
/* Clock time it is due, when pending. */
double atimer_due(const atimer *t);
/* Disarms and frees; NULL is fine. */
void atimer_free(atimer *t);

#endif
