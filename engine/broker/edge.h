/*
 * edge.h - the connection edge in front of each worker's evhttp: framing
 * and deadline refusals, connections per address, TLS, accept pausing.
 *
 * Used by: broker.c (setup and teardown), http.c (stand-ins, tracking),
 * metrics.c (the refusal counters).  Implemented by: edge.c.
 * Needs: broker_internal.h.
 */
#ifndef TSL_BROKER_EDGE_H
#define TSL_BROKER_EDGE_H

#include "broker_internal.h"

/* ---- edge.c (worker threads; setup on the control thread) ---- */
/* Refusals the edge counts, for /metrics. */
enum { EDGE_FRAMING, EDGE_DEADLINE, EDGE_PER_ADDRESS };
/* The prefix of the stand-in requests, the peer table and the TLS context
 * (control thread, before the workers start); broker free undoes it. */
int edge_init(tsl_broker *b);
void edge_free(tsl_broker *b);
/* Hooks a worker's evhttp: bufferevents with the edge in front, accept
 * pausing when descriptors run out, the sweep timer. */
int edge_worker_setup(bworker *w);
void edge_worker_free(bworker *w);
/* Called first on each worker's thread. */
void edge_worker_enter(bworker *w);
/* (http.c answers the stand-in requests, b->edge_prefix.) */
/* Learns when req's connection closes (its place per address is freed
 * at once); cheap, called for every request. */
void edge_track(bworker *w, struct evhttp_request *req);
/* Refuses plain HTTP on a listening address beyond loopback unless TLS
 * or behind_tls_proxy. */
struct sockaddr;
int edge_check_plain(const tsl_broker *b, const struct sockaddr *sa);


#endif
