/*
 * workers.h - what workers.c offers broker.c: the listening socket and
 * each HTTP worker's setup, thread body and teardown.
 *
 * Used by: broker.c.  Needs: broker_internal.h.
 */
#ifndef TSL_BROKER_WORKERS_H
#define TSL_BROKER_WORKERS_H

#include "broker_internal.h"

/* Parses b->listen, refuses plain HTTP beyond loopback without TLS, binds
 * and listens (b->listen_fd, b->port). */
int broker_open_listener(tsl_broker *b);
/* Worker `index`: its base, evhttp on a dup of the listening socket, the
 * edge, the completion queue and its first plan. */
int broker_worker_setup(tsl_broker *b, bworker *w, int index);
/* The worker thread's body: its event loop until stopped. */
void *broker_worker_main(void *arg);
void broker_worker_free(bworker *w);

#endif
