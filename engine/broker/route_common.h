/*
 * route_common.h - what route_common.c offers the route handlers.
 *
 * Used by: routes.c, heartbeat.c, registration.c.  Needs: http.h,
 * control.h, jansson.
 */
#ifndef TSL_BROKER_ROUTE_COMMON_H
#define TSL_BROKER_ROUTE_COMMON_H

#include "control.h"
#include "http.h"

#include <jansson.h>

#define NAME_MAX_LEN 255

/* Records for the write queue: one allocation, strings after the struct.
 * The bytes `s` takes there (0 for NULL). */
size_t str_size(const char *s);
/* Copies `s` at *cur and advances it; NULL stays NULL. */
const char *put_str(char **cur, const char *s);
/* Why `s` is not a valid name (server, client, site), or NULL. */
const char *name_problem(const char *s);
bool valid_name(const char *s);
/* A note for a reason that is about UTF-8, "" otherwise. */
const char *utf8_note(const char *why);

/* The client's address: the peer, or, when the peer is a trusted proxy,
 * the nearest X-Forwarded-For hop (from the right) that is not one.  Writes
 * its text into `text`; false when it cannot be told. */
bool client_address(const tsl_broker *b, struct evhttp_request *req, tsl_ip *out,
                    char *text, size_t len);

/* Parses the body as a JSON object; replies 4xx and returns NULL otherwise. */
json_t *json_body(bworker *w, struct evhttp_request *req, route_ctx *c);
/* A non-negative integer field; replies 400 and returns false otherwise. */
bool get_count(bworker *w, struct evhttp_request *req, route_ctx *c, const char *key,
               json_t *v, int64_t *out);
/* 429 with Retry-After and a JSON body. */
void too_many(bworker *w, struct evhttp_request *req, broker_route route, int retry_s,
              const char *what);

/* Queues a heartbeat or registration for the writer, answered by `done`
 * on this worker once its transaction has committed: true when queued
 * (the record is the writer's), false after replying 503 (the caller
 * frees it). */
bool route_submit_write(bworker *w, struct evhttp_request *req, route_ctx *c, wrec *rec,
                        void (*done)(bworker *w, wrec *r));
/* A heartbeat or registration the writer did not save (r->status not
 * 200): replies its error (503 and 429 with Retry-After) and returns
 * true; false when it was saved and the caller replies. */
bool route_write_refused(bworker *w, wrec *r);

#endif
