/*
 * routes.h - the route handlers, one callback per route: what http.c's
 * route table dispatches to.  The handlers reach the control thread only
 * through control.h.
 *
 * Used by: http.c.  Implemented by: routes.c (the hot path, explain,
 * health, metrics), heartbeat.c, registration.c, admin_routes.c (the
 * routes run as admin jobs).  Needs: http.h, control.h.
 */
#ifndef TSL_BROKER_ROUTES_H
#define TSL_BROKER_ROUTES_H

#include "control.h"
#include "http.h"

void route_task_servers(bworker *w, struct evhttp_request *req, route_ctx *c);
void route_heartbeat(bworker *w, struct evhttp_request *req, route_ctx *c);
void route_registration(bworker *w, struct evhttp_request *req, route_ctx *c);
void route_explain(bworker *w, struct evhttp_request *req, route_ctx *c);
void route_healthz(bworker *w, struct evhttp_request *req, route_ctx *c);
void route_metrics(bworker *w, struct evhttp_request *req, route_ctx *c);
/* admin_routes.c: these hand the request to the control thread as a job */
void route_policy_upload(bworker *w, struct evhttp_request *req, route_ctx *c);
void route_policy_list(bworker *w, struct evhttp_request *req, route_ctx *c);
void route_policy_activate(bworker *w, struct evhttp_request *req, route_ctx *c);
void route_policy_rollback(bworker *w, struct evhttp_request *req, route_ctx *c);
void route_report(bworker *w, struct evhttp_request *req, route_ctx *c);
void route_inventory(bworker *w, struct evhttp_request *req, route_ctx *c);
void route_servers_pending(bworker *w, struct evhttp_request *req, route_ctx *c);
void route_server_approve(bworker *w, struct evhttp_request *req, route_ctx *c);
void route_server_reject(bworker *w, struct evhttp_request *req, route_ctx *c);

#endif
