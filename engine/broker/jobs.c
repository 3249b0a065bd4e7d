/*
 * jobs.c - the admin job queue: a worker posts a job (broker_post_job),
 * the control thread takes the queue on its loop and runs each job
 * (broker_run_job: bpolicy.c's policy jobs, admin_jobs.c's reports,
 * inventory and server decisions), and tsl_broker_sync waits for one.
 *
 * Used by: admin_routes.c (through control.h), broker.c (the job event,
 * the queue left at stop).  Needs: control_internal.h.
 */
#include "control_internal.h"

#include <string.h>

void broker_post_job(tsl_broker *b, job *j)
{
    atomic_fetch_add(&b->jobs_pending, 1);
    pthread_mutex_lock(&b->job_mu);
    j->next = NULL;
    *b->jobs_tail = j;
    b->jobs_tail = &j->next;
    pthread_mutex_unlock(&b->job_mu);
    event_active(b->job_ev, EV_TIMEOUT, 1);
}

static void finish_sync(job *j, int result)
{
    pthread_mutex_lock(j->done_mu);
    *j->result = result;
    *j->done = true;
    pthread_cond_signal(j->done_cv);
    pthread_mutex_unlock(j->done_mu);
}

void broker_run_job(tsl_broker *b, job *j)
{
    if (j->kind == JOB_POLICY_UPLOAD && bpolicy_defer(b, j))
        return; /* checked on the checker thread, replied from bpolicy.c */
    switch (j->kind) {
    case JOB_SYNC: {
        int err = writer_flush(b);
        int err2 = writer_derive(b);
        b->last_derive_ms = broker_mono_ns() / 1000000;
        atomic_fetch_sub(&b->jobs_pending, 1);
        finish_sync(j, err < 0 ? err : err2);
        return; /* the waiter owns the job */
    }
    case JOB_POLICY_UPLOAD:
    case JOB_POLICY_ACTIVATE:
    case JOB_POLICY_ROLLBACK:
    case JOB_POLICY_LIST:
        bpolicy_job(b, j);
        break;
    case JOB_REPORT:
        admin_report_job(b, j);
        break;
    case JOB_INVENTORY:
        admin_inventory_job(b, j);
        break;
    case JOB_SERVERS_PENDING:
    case JOB_SERVER_APPROVE:
    case JOB_SERVER_REJECT:
        admin_servers_job(b, j);
        break;
    }
    atomic_fetch_add(&b->jobs_done, 1);
    event_active(j->reply_ev, EV_TIMEOUT, 1);
}

job *jobs_take(tsl_broker *b)
{
    pthread_mutex_lock(&b->job_mu);
    job *list = b->jobs;
    b->jobs = NULL;
    b->jobs_tail = &b->jobs;
    pthread_mutex_unlock(&b->job_mu);
    return list;
}

void jobs_on_event(evutil_socket_t fd, short what, void *arg)
{
    tsl_broker *b = arg;
    (void)fd;
    (void)what;
    for (job *j = jobs_take(b), *next; j; j = next) {
        next = j->next;
        broker_run_job(b, j);
    }
}

int tsl_broker_sync(tsl_broker *b)
{
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
    bool done = false;
    int result = 0;
    job j;

    if (!atomic_load(&b->running))
        return tsl_seterr(TSL_ERROR, "the broker is not running");
    memset(&j, 0, sizeof j);
    j.kind = JOB_SYNC;
    j.done_mu = &mu;
    j.done_cv = &cv;
    j.done = &done;
    j.result = &result;
    broker_post_job(b, &j);
    pthread_mutex_lock(&mu);
    while (!done)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    pthread_cond_destroy(&cv);
    pthread_mutex_destroy(&mu);
    return result;
}

