/*
 * admin_routes.c - the worker side of the admin routes that need the
 * store or walk every client: each is checked here and run as a job on the control thread so no HTTP worker ever blocks on
 * SQLite:
 *
 *   POST /v1/policy, GET /v1/policy, POST /v1/policy/VERSION/activate,
 *   POST /v1/policy/rollback       (the jobs themselves are in bpolicy.c)
 *   GET  /v1/reports/NAME          active-servers, server-clients,
 *                                  client-assignments, subnet-conflicts,
 *                                  fallback
 *   POST /v1/inventory             import, then reload the inventory
 *   GET  /v1/task-servers/pending  Task Servers waiting for approval
 *   POST /v1/task-servers/NAME/approve|reject   decide one (then reload)
 *
 * A job's life: the worker checks the request, copies what the job needs
 * (the request object itself stays on the worker's thread), creates the
 * reply event on its own base and posts the job; the control thread runs
 * it and activates the event; the worker sends exactly one reply and frees
 * the job.  If the client has gone meanwhile, evhttp frees the request
 * when we reply.
 *
 * The jobs themselves run in admin_jobs.c and bpolicy.c.
 *
 * Used by: http.c's route table (routes.h).
 * Needs: routes.h, control.h (broker_post_job, job_error).
 */
#include "routes.h"
#include "text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------
 * Worker side
 * ---------------------------------------------------------------------- */

static void on_job_reply(evutil_socket_t fd, short what, void *arg)
{
    job *j = arg;
    bworker *w = j->w;
    tsl_broker *b = w->b;
    (void)fd;
    (void)what;
    if (!j->status)
        job_error(j, 500, "the job produced no answer");
    http_reply(w, j->req, j->route, j->status,
               j->content_type ? j->content_type : "application/json", j->out.ptr, j->out.len);
    event_free(j->reply_ev);
    free(j->body);
    tsl_buf_free(&j->out);
    free(j);
    atomic_fetch_sub(&b->jobs_pending, 1);
}

static job *job_new(bworker *w, struct evhttp_request *req, route_ctx *c, job_kind kind)
{
    job *j = calloc(1, sizeof *j);
    if (!j || !(j->reply_ev = event_new(w->base, -1, 0, on_job_reply, j))) {
        free(j);
        http_error(w, req, c->route, 503, "out of memory");
        return NULL;
    }
    j->kind = kind;
    j->route = c->route;
    j->w = w;
    j->req = req;
    j->started_ns = broker_mono_ns();
    if (c->arg) {
        if (strlen(c->arg) >= sizeof j->arg) {
            http_error(w, req, c->route, 404, "no such %s: the name is too long",
                       kind == JOB_REPORT ? "report" : "policy version");
            event_free(j->reply_ev);
            free(j);
            return NULL;
        }
        snprintf(j->arg, sizeof j->arg, "%s", c->arg);
    }
    return j;
}

static void job_discard(job *j)
{
    if (!j)
        return;
    event_free(j->reply_ev);
    free(j->body);
    free(j);
}

/* Copies the request body into the job (up to `limit`). */
static bool job_body(bworker *w, struct evhttp_request *req, route_ctx *c, job *j, size_t limit)
{
    size_t len;
    const char *body = http_body(w, req, c->route, limit, &len);
    if (!body)
        return false;
    if (!(j->body = malloc(len + 1))) {
        http_error(w, req, c->route, 503, "out of memory");
        return false;
    }
    memcpy(j->body, body, len + 1);
    j->body_len = len;
    return true;
}

static bool copy_param(bworker *w, struct evhttp_request *req, route_ctx *c, char *dst,
                       size_t size, const http_param *p)
{
    if (strlen(p->value) >= size) {
        http_error(w, req, c->route, 400, "parameter \"%s\" is longer than %zu characters",
                   p->key, size - 1);
        return false;
    }
    /* it is stored and shown in JSON (history, versions): UTF-8 text only */
    if (!tsl_utf8_valid(p->value, strlen(p->value))) {
        http_error(w, req, c->route, 400, "parameter \"%s\" is not valid UTF-8", p->key);
        return false;
    }
    snprintf(dst, size, "%s", p->value);
    return true;
}

/* true when a comma-separated list has a name that is not blank. */
static bool names_a_site(const char *list)
{
    for (const char *p = list; *p; p++)
        if (*p != ',' && *p != ' ' && *p != '\t')
            return true;
    return false;
}

/* The policy routes: author= on every one but the list (who, for the
 * history; "api" when not given); the upload also takes comment=, name=
 * (the file name its messages use) and the body, the policy's Lua source;
 * activate takes comment=, sites=London,Paris (staged) and
 * require_dry_run=1. */
static void policy_route(bworker *w, struct evhttp_request *req, route_ctx *c, job_kind kind)
{
    http_param p[HTTP_MAX_PARAMS];
    job *j = NULL;
    bool upload = kind == JOB_POLICY_UPLOAD, activate = kind == JOB_POLICY_ACTIVATE;
    int n = http_query(w, req, c->route, c->query, p, HTTP_MAX_PARAMS);
    if (n < 0 || !(j = job_new(w, req, c, kind)))
        goto fail;
    snprintf(j->author, sizeof j->author, "api");
    for (int i = 0; i < n; i++) {
        bool ok;
        if (kind != JOB_POLICY_LIST && strcmp(p[i].key, "author") == 0)
            ok = copy_param(w, req, c, j->author, sizeof j->author, &p[i]);
        else if ((upload || activate) && strcmp(p[i].key, "comment") == 0)
            ok = copy_param(w, req, c, j->comment, sizeof j->comment, &p[i]);
        else if (upload && strcmp(p[i].key, "name") == 0)
            ok = copy_param(w, req, c, j->arg, sizeof j->arg, &p[i]);
        else if (activate && strcmp(p[i].key, "sites") == 0) {
            /* narrowing input never widens: a list that names no site is
             * not "everywhere" */
            ok = copy_param(w, req, c, j->sites, sizeof j->sites, &p[i]);
            if (ok && !names_a_site(j->sites)) {
                http_error(w, req, c->route, 400,
                           "parameter \"sites\" names no site: give sites=London,Paris for a "
                           "staged activation, or leave it out to activate everywhere");
                ok = false;
            }
        }
        else if (activate && strcmp(p[i].key, "require_dry_run") == 0) {
            j->require_dry_run = strcmp(p[i].value, "0") != 0;
            ok = true;
        } else {
            http_error(w, req, c->route, 400, "unknown parameter \"%s\" (expected %s)", p[i].key,
                       upload                    ? "author, comment, name"
                       : activate                ? "author, comment, sites, require_dry_run"
                       : kind == JOB_POLICY_LIST ? "none"
                                                 : "author");
            ok = false;
        }
        if (!ok)
            goto fail;
    }
    if (upload) {
        if (!job_body(w, req, c, j, w->b->cfg.max_body))
            goto fail;
        if (!j->body_len) {
            http_error(w, req, c->route, 400,
                       "the body must be the policy's Lua source; it is empty");
            goto fail;
        }
    }
    broker_post_job(w->b, j);
    return;
fail:
    job_discard(j);
}

void route_policy_upload(bworker *w, struct evhttp_request *req, route_ctx *c)
{
    policy_route(w, req, c, JOB_POLICY_UPLOAD);
}

void route_policy_list(bworker *w, struct evhttp_request *req, route_ctx *c)
{
    policy_route(w, req, c, JOB_POLICY_LIST);
}

void route_policy_activate(bworker *w, struct evhttp_request *req, route_ctx *c)
{
    policy_route(w, req, c, JOB_POLICY_ACTIVATE);
}

void route_policy_rollback(bworker *w, struct evhttp_request *req, route_ctx *c)
{
    policy_route(w, req, c, JOB_POLICY_ROLLBACK);
}

void route_report(bworker *w, struct evhttp_request *req, route_ctx *c)
{
    http_param p[HTTP_MAX_PARAMS];
    job *j = NULL;
    int n = http_query(w, req, c->route, c->query, p, HTTP_MAX_PARAMS);
    if (n < 0 || !(j = job_new(w, req, c, JOB_REPORT)))
        goto fail;
    snprintf(j->format, sizeof j->format, "json");
    j->days = 30;
    for (int i = 0; i < n; i++) {
        if (strcmp(p[i].key, "format") == 0) {
            if (strcmp(p[i].value, "json") != 0 && strcmp(p[i].value, "csv") != 0 &&
                strcmp(p[i].value, "text") != 0) {
                http_error(w, req, c->route, 400,
                           "parameter \"format\" must be json, csv or text");
                goto fail;
            }
            snprintf(j->format, sizeof j->format, "%s", p[i].value);
        } else if (strcmp(p[i].key, "days") == 0 && strcmp(j->arg, "fallback") == 0) {
            char *end;
            long days = strtol(p[i].value, &end, 10);
            if (!p[i].value[0] || *end || days < 1 || days > 3650) {
                http_error(w, req, c->route, 400,
                           "parameter \"days\" must be a whole number of days from 1 to 3650");
                goto fail;
            }
            j->days = (int)days;
        } else {
            http_error(w, req, c->route, 400, "unknown parameter \"%s\" (expected format%s)",
                       p[i].key, strcmp(j->arg, "fallback") == 0 ? ", days" : "");
            goto fail;
        }
    }
    broker_post_job(w->b, j);
    return;
fail:
    job_discard(j);
}

void route_inventory(bworker *w, struct evhttp_request *req, route_ctx *c)
{
    job *j = NULL;
    if (!http_no_params(w, req, c) || !(j = job_new(w, req, c, JOB_INVENTORY)))
        goto fail;
    if (!job_body(w, req, c, j, w->b->cfg.max_import_body))
        goto fail;
    broker_post_job(w->b, j);
    return;
fail:
    job_discard(j);
}

/* GET /v1/task-servers/pending[?format=json|csv|text] */
void route_servers_pending(bworker *w, struct evhttp_request *req, route_ctx *c)
{
    http_param p[HTTP_MAX_PARAMS];
    job *j = NULL;
    int n = http_query(w, req, c->route, c->query, p, HTTP_MAX_PARAMS);
    if (n < 0 || !(j = job_new(w, req, c, JOB_SERVERS_PENDING)))
        goto fail;
    snprintf(j->format, sizeof j->format, "json");
    for (int i = 0; i < n; i++) {
        if (strcmp(p[i].key, "format") != 0 ||
            (strcmp(p[i].value, "json") != 0 && strcmp(p[i].value, "csv") != 0 &&
             strcmp(p[i].value, "text") != 0)) {
            http_error(w, req, c->route, 400,
                       strcmp(p[i].key, "format") ? "unknown parameter \"%s\" (expected format)"
                                                  : "parameter \"%s\" must be json, csv or text",
                       p[i].key);
            goto fail;
        }
        snprintf(j->format, sizeof j->format, "%s", p[i].value);
    }
    broker_post_job(w->b, j);
    return;
fail:
    job_discard(j);
}

/* POST /v1/task-servers/NAME/approve|reject[?author=A] */
static void server_decide_route(bworker *w, struct evhttp_request *req, route_ctx *c,
                                job_kind kind)
{
    http_param p[HTTP_MAX_PARAMS];
    job *j = NULL;
    const char *why;
    int n = http_query(w, req, c->route, c->query, p, HTTP_MAX_PARAMS);
    if (n < 0)
        goto fail;
    if ((why = tsl_text_name_problem(c->arg, 255))) {
        http_error(w, req, c->route, 400, "the task server name %s", why);
        goto fail;
    }
    if (!(j = job_new(w, req, c, kind)))
        goto fail;
    snprintf(j->author, sizeof j->author, "api");
    for (int i = 0; i < n; i++) {
        if (strcmp(p[i].key, "author") != 0) {
            http_error(w, req, c->route, 400, "unknown parameter \"%s\" (expected author)",
                       p[i].key);
            goto fail;
        }
        if (!copy_param(w, req, c, j->author, sizeof j->author, &p[i]))
            goto fail;
    }
    broker_post_job(w->b, j);
    return;
fail:
    job_discard(j);
}

void route_server_approve(bworker *w, struct evhttp_request *req, route_ctx *c)
{
    server_decide_route(w, req, c, JOB_SERVER_APPROVE);
}

void route_server_reject(bworker *w, struct evhttp_request *req, route_ctx *c)
{
    server_decide_route(w, req, c, JOB_SERVER_REJECT);
}
