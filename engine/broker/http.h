/*
 * http.h - the HTTP workers' transport: a worker's evhttp set up, the
 * request's body and query parsed, the admin token checked, one reply sent
 * and counted.  Offers the route handlers their tools and broker.c the
 * worker's setup.
 *
 * Used by: routes.c, admin_routes.c, edge.c, broker.c (http_worker_setup).
 * Needs: broker_internal.h.
 */
#ifndef TSL_BROKER_HTTP_H
#define TSL_BROKER_HTTP_H

#include "broker_internal.h"

/* ---- http.c (worker threads) ---- */
int http_worker_setup(bworker *w);
/* Replies with a JSON body from w->out (or `body`), counting the metric. */
void http_reply(bworker *w, struct evhttp_request *req, broker_route route, int status,
                const char *content_type, const char *body, size_t len);
/* Replies {"error": "..."} with `status`. */
void http_error(bworker *w, struct evhttp_request *req, broker_route route, int status,
                const char *fmt, ...) TSL_PRINTF(5, 6);
/* The request body as a NUL-terminated copy in w->out's sibling buffer;
 * NULL after replying 413 when it is over `limit`. */
const char *http_body(bworker *w, struct evhttp_request *req, broker_route route,
                      size_t limit, size_t *len);
/* Splits and percent-decodes a query string in place.  Returns the count
 * or -1 (reply done) on a malformed one. */
#define HTTP_MAX_PARAMS 32
typedef struct http_param {
    char *key, *value;
} http_param;
int http_query(bworker *w, struct evhttp_request *req, broker_route route, char *query,
               http_param *out, int max);
/* Percent-decodes s in place ('+' is a space when `plus`); false on a bad
 * escape or an encoded NUL. */
bool http_decode(char *s, bool plus);
/* true when the request carries the admin bearer token; else replies 401. */
bool http_authorized(bworker *w, struct evhttp_request *req, broker_route route);

typedef struct route_ctx {
    broker_route route;
    char *query;      /* the raw query string (mutable), "" when none */
    const char *arg;  /* the path's variable segment, percent-decoded, or NULL */
} route_ctx;

typedef void (*route_fn)(bworker *w, struct evhttp_request *req, route_ctx *c);

/* Replies 400 when the request has any query parameter (routes that take none). */
bool http_no_params(bworker *w, struct evhttp_request *req, route_ctx *c);

#endif
