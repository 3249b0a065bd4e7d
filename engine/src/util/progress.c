/*
 * progress.c - the listener of long engine work on this thread
 * (tsl_progress_set) and the tick every long loop calls.
 *
 * Thread-local, like the error message: a command draws the progress of
 * the work it runs on its own thread, and a broker's threads, which never
 * set a listener, pay one load and a branch.  The engine never prints it.
 */
#include "progress.h"

static _Thread_local tsl_progress_fn listener;
static _Thread_local void *listener_ud;

void tsl_progress_set(tsl_progress_fn fn, void *ud)
{
    listener = fn;
    listener_ud = ud;
}

void tsl_progress_tick(const char *what, uint64_t done, uint64_t total)
{
    if (listener && (done == 0 || done >= total || (done & 1023) == 0))
        listener(listener_ud, what, done, total);
}

void tsl_progress_report(const char *what, uint64_t done, uint64_t total)
{
    if (listener)
        listener(listener_ud, what, done, total);
}
