/*
 * http_client.h - one HTTP/1.1 exchange over a libevent bufferevent.
 *
 * Connects to a numeric address (IPv4 or IPv6 text, no DNS: the event loop
 * never blocks), sends one request with "Connection: close", reads the
 * response and calls back exactly once, unless cancelled first.  One socket
 * per exchange, closed when it ends, so thousands of agents in one loop hold
 * descriptors only while they talk.
 *
 * Used by: agent.c (the reference CTA), the simulator's Task Servers
 * (heartbeats) and its admin calls.  Needs: libevent.
 */
#ifndef TSL_AGENT_HTTP_CLIENT_H
#define TSL_AGENT_HTTP_CLIENT_H

#include "aclock.h"

#include <stddef.h>

struct event_base;

/* The largest response body accepted; a longer one fails as "response too large". */
#define AHTTP_MAX_BODY (1u << 20)

typedef struct ahttp ahttp;

typedef struct ahttp_result {
    int status;        /* the HTTP status, or 0 when no response arrived */
    const char *error; /* NULL when a response arrived; else "timeout",
                        * "connection refused", "connection reset", ... */
    const char *body;  /* the response body, NUL-terminated ("" if none);
                        * borrowed for the duration of the callback */
    size_t len;
} ahttp_result;

/* Called once per exchange.  The handle is finished when this runs: the
 * owner must forget it (cancelling it from here is a harmless no-op). */
typedef void (*ahttp_cb)(const ahttp_result *r, void *arg);

/* Starts `METHOD target` to host:port.  `body` (may be NULL) is sent with
 * Content-Type application/json unless `extra_headers` names another;
 * `extra_headers` (may be NULL) is inserted verbatim, each line ending in
 * "\r\n".  `timeout` applies to connecting and to each wait for data, in
 * seconds of `clock` (NULL: the wall clock): the exchange fails as
 * "timeout" once that much time has passed on the clock without a byte of
 * the response.  On a virtual clock the exchange counts as in flight
 * (aclock_live) until it ends, unless its port is the clock's silent one.
 * Never calls back from inside this function: a connection refused is reported from the loop.
 * TSL_EINVALID for a host that is not a numeric address, TSL_ENOMEM. */
int ahttp_start(ahttp **out, struct event_base *base, const char *host, int port,
                const char *method, const char *target, const char *extra_headers,
                const char *body, size_t bodylen, double timeout, aclock *clock,
                ahttp_cb cb, void *arg);

/* Abandons an exchange: closes its socket, never calls back.  NULL is fine. */
void ahttp_cancel(ahttp *h);

/* Percent-encodes `s` for a query string into dst (size n); returns false
 * when it does not fit. */
int ahttp_query_escape(char *dst, size_t n, const char *s);

#endif
