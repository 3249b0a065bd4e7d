/*
 * progress.h - how long engine work reports its progress (progress.c):
 * loops over every record or client call tsl_progress_tick, which costs a
 * thread-local load and a branch when no one listens (tsl_progress_set).
 *
 * Used by: import_json.c, estate_gen.c, dryrun.c, policy_check.c and the
 * simulator (sim.c).  Needs: tsl.h.
 */
#ifndef TSL_PROGRESS_H
#define TSL_PROGRESS_H

#include "tsl.h"

/* Reports `done` of `total` units of the work named `what` ("clients") to
 * this thread's listener: at 0, then at most every 1024 units, and at the
 * end (done == total), which tells the listener the work is over. */
#if defined(__GNUC__)
__attribute__((visibility("hidden")))
#endif
void tsl_progress_tick(const char *what, uint64_t done, uint64_t total);
/* The same without the every-1024 filter, for work that reports a few
 * times a second anyway (the simulator's clock). */
#if defined(__GNUC__)
__attribute__((visibility("hidden")))
#endif
void tsl_progress_report(const char *what, uint64_t done, uint64_t total);

#endif
