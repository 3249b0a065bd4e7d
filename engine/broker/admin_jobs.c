/*
 * admin_jobs.c - the control thread's side of the admin routes: the
 * reports, the inventory import and the pending Task Servers' decisions,
 * run as jobs so no HTTP worker ever blocks on SQLite (the policy jobs are
 * bpolicy.c's).  A job comes in through broker_run_job with what the
 * worker copied from its request; its answer goes back in j->status,
 * j->out and j->content_type, which the worker sends (admin_routes.c).
 *
 * Used by: broker.c (broker_run_job), bpolicy.c and admin_routes.c
 * (job_error, status_for_error through control.h).
 * Needs: control_internal.h, the engine's reports and import.
 */
#include "control_internal.h"
#include "text.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


void job_error(job *j, int status, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    tsl_buf_clear(&j->out);
    j->status = status;
    j->content_type = "application/json";
    if (tsl_buf_puts(&j->out, "{\"error\":") < 0 || tsl_buf_json_str(&j->out, msg) < 0 ||
        tsl_buf_puts(&j->out, "}\n") < 0) {
        tsl_buf_clear(&j->out);
        j->status = 500;
    }
}

int status_for_error(int rc)
{
    switch (rc) {
    case TSL_EINVALID:
    case TSL_EEXISTS:
        return 400;
    case TSL_ENOTFOUND:
        return 404;
    case TSL_EPOLICY:
        return 422;
    case TSL_ELIMIT:
        return 413;
    default:
        return 500;
    }
}

static const char *content_type(tsl_format fmt)
{
    return fmt == TSL_FORMAT_JSON  ? "application/json"
           : fmt == TSL_FORMAT_CSV ? "text/csv; charset=utf-8"
                                   : "text/plain; charset=utf-8";
}

void admin_report_job(tsl_broker *b, job *j)
{
    tsl_format fmt = strcmp(j->format, "csv") == 0    ? TSL_FORMAT_CSV
                     : strcmp(j->format, "text") == 0 ? TSL_FORMAT_TEXT
                                                      : TSL_FORMAT_JSON;
    int64_t now = broker_now(b);
    int err;

    if (strcmp(j->arg, "fallback") == 0) {
        writer_flush(b); /* the latest reports count too */
        err = writer_fallback_report(b, &j->out, fmt, now - (int64_t)j->days * 86400);
    } else {
        tsl_report_kind kind;
        if (tsl_report_kind_parse(&kind, j->arg) < 0) {
            job_error(j, 404,
                      "no report \"%s\" (expected active-servers, server-clients, "
                      "client-assignments, subnet-conflicts or fallback)",
                      j->arg);
            return;
        }
        err = tsl_report(&j->out, b->ctl_worker, b->plan, kind, fmt, now);
    }
    if (err < 0) {
        job_error(j, status_for_error(err), "report %s: %s", j->arg, tsl_error_last());
        return;
    }
    j->status = 200;
    j->content_type = content_type(fmt);
    broker_log(b, TSL_LOG_INFO, "Report %s sent (%zu bytes, %.0f ms)", j->arg, j->out.len,
               (double)(broker_mono_ns() - j->started_ns) / 1e6);
}

void admin_inventory_job(tsl_broker *b, job *j)
{
    tsl_buf notes = TSL_BUF_INIT;
    tsl_import_options opt = {false, NULL, &notes};
    int err;

    writer_flush(b);
    if ((err = tsl_store_import_json_opt(b->store, j->body, j->body_len, "POST /v1/inventory",
                                         &opt)) < 0) {
        job_error(j, err == TSL_ENOTFOUND ? 400 : status_for_error(err), "%s", tsl_error_last());
        tsl_buf_free(&notes);
        return;
    }
    if ((err = broker_reload(b)) < 0) {
        job_error(j, 500, "imported, but the inventory cannot be loaded: %s", tsl_error_last());
        tsl_buf_free(&notes);
        return;
    }
    /* the import's warnings (overlapping subnets, clients with neither IP
     * nor site), one string each, as `tsl import` prints them */
    err = tsl_buf_printf(&j->out, "{\"imported\":true,\"sites\":%zu,\"task_servers\":%zu,"
                                  "\"clients\":%zu,\"warnings\":[",
                         tsl_snapshot_site_count(b->snap), tsl_snapshot_server_count(b->snap),
                         tsl_snapshot_client_count(b->snap));
    for (size_t at = 0, n = 0; err == 0 && at < notes.len; n++) {
        char *nl = memchr(notes.ptr + at, '\n', notes.len - at);
        size_t len = nl ? (size_t)(nl - (notes.ptr + at)) : notes.len - at;
        notes.ptr[at + len] = '\0';
        broker_log(b, TSL_LOG_WARNING, "Inventory import: %s", notes.ptr + at);
        if ((err = tsl_buf_puts(&j->out, n ? "," : "")) == 0)
            err = tsl_buf_json_str(&j->out, notes.ptr + at);
        at += len + 1;
    }
    if (err == 0)
        err = tsl_buf_puts(&j->out, "]}\n");
    tsl_buf_free(&notes);
    if (err < 0) {
        job_error(j, 500, "%s", tsl_error_last());
        return;
    }
    j->status = 200;
    broker_log(b, TSL_LOG_INFO, "Inventory imported through the API (%zu bytes)", j->body_len);
}

void admin_servers_job(tsl_broker *b, job *j)
{
    int err;
    if (j->kind == JOB_SERVERS_PENDING) {
        tsl_format fmt = strcmp(j->format, "csv") == 0    ? TSL_FORMAT_CSV
                         : strcmp(j->format, "text") == 0 ? TSL_FORMAT_TEXT
                                                          : TSL_FORMAT_JSON;
        writer_flush(b); /* the latest heartbeats count too */
        if ((err = tsl_store_servers_pending(&j->out, b->store, fmt)) < 0) {
            job_error(j, status_for_error(err), "%s", tsl_error_last());
            return;
        }
        j->status = 200;
        j->content_type = content_type(fmt);
        return;
    }
    bool approve = j->kind == JOB_SERVER_APPROVE;
    writer_flush(b);
    if ((err = tsl_store_server_decide(b->store, j->arg, approve, j->author, broker_now(b))) < 0) {
        job_error(j, status_for_error(err), "%s", tsl_error_last());
        return;
    }
    writer_poll_approvals(b); /* adopts it now: reloads the inventory */
    if (tsl_buf_puts(&j->out, "{\"server\":") < 0 || tsl_buf_json_str(&j->out, j->arg) < 0 ||
        tsl_buf_printf(&j->out, ",\"%s\":true}\n", approve ? "approved" : "rejected") < 0) {
        job_error(j, 500, "%s", tsl_error_last());
        return;
    }
    j->status = 200;
    broker_log(b, TSL_LOG_INFO, "Task Server %s %s by %s through the API", j->arg,
               approve ? "approved" : "rejected", j->author);
}
