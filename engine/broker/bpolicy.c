/*
 * bpolicy.c - the broker's policies, all through the rollout (rollout.c):
 * what runs is the store's rollout in force, compiled once (tsl_rollout:
 * the base, staged sites, the shadow version) and bound to every new
 * snapshot (broker_bind).  Here: start and SIGHUP (--policy FILE is stored
 * and made active everywhere unless it already is), adopting a changed
 * rollout (the admin jobs, and a poll that picks up `tsl policy
 * activate|rollback|shadow` run beside the broker), shadow mode's tally,
 * and the policy admin jobs:
 *
 *   POST /v1/policy                   store a version (not active)
 *   GET  /v1/policy                   in force, versions, history
 *   POST /v1/policy/VERSION/activate  tsl_rollout_activate (sites=, staged)
 *   POST /v1/policy/rollback          tsl_rollout_rollback
 *
 * A rollout is adopted only once compiled and bound: one that does not
 * compile or bind never replaces the one in force.
 *
 * Runs on the control thread, but for the upload's check: policy code
 * never runs there (see "POST /v1/policy, checked off the control
 * thread").  Used by: broker.c, writer.c (control_internal.h).
 * Needs: control_internal.h, the engine's sandbox.h (the checker's bounds).
 */
#include "control_internal.h"
#include "sandbox.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POLICY_FILE_MAX ((size_t)16 << 20) /* a --policy file (the compiler has its own limit) */

/* ------------------------------------------------------------------------
 * Adopting a rollout
 * ---------------------------------------------------------------------- */

/* Makes `ro` the rollout in force: binds it to the latest snapshot and
 * publishes the plans.  Takes `ro` on success; on failure nothing changes.
 * The shadow tally is kept while the shadow version stays the same; a
 * former one is retired (workers may still report to it until they take
 * the new plan) and flushed with the others. */
static int adopt(tsl_broker *b, tsl_rollout *ro)
{
    tsl_rollout *old = b->rollout;
    tsl_plan *plan = NULL, *shadow = NULL;
    tsl_shadow *tally = NULL;
    const char *sv = tsl_rollout_shadow_version(ro);
    int err;

    b->rollout = ro;
    err = broker_bind(b, b->snap, &plan, &shadow);
    b->rollout = old;
    if (err < 0)
        return err;
    if (sv && (!b->shadow || strcmp(tsl_shadow_version(b->shadow), sv) != 0) &&
        (err = tsl_shadow_new(&tally, sv)) < 0)
        goto fail;
    if ((sv && tally) || (!sv && b->shadow)) {
        tsl_shadow **r = b->shadow ? realloc(b->retired, (b->nretired + 1) * sizeof *r) : NULL;
        if (b->shadow && !r) {
            err = tsl_oom();
            goto fail;
        }
        pthread_mutex_lock(&b->plan_mu);
        if (b->shadow) {
            b->retired = r;
            b->retired[b->nretired++] = b->shadow;
        }
        b->shadow = tally;
        pthread_mutex_unlock(&b->plan_mu);
        tally = NULL;
    }
    broker_publish(b, plan, shadow);
    b->rollout = ro;
    tsl_rollout_free(old);
    return 0;
fail:
    tsl_shadow_free(tally);
    tsl_plan_free(plan);
    tsl_plan_free(shadow);
    return err;
}

/* Compiles the store's rollout and adopts it. */
static int adopt_stored(tsl_broker *b)
{
    tsl_rollout *ro = NULL;
    int err;
    if ((err = tsl_rollout_load(&ro, b->store)) < 0 || (err = adopt(b, ro)) < 0)
        tsl_rollout_free(ro);
    else
        broker_log(b, TSL_LOG_INFO, "Policy in force: %s%s%s", tsl_rollout_key(ro),
                   tsl_rollout_shadow_version(ro) ? "; shadow " : "",
                   tsl_rollout_shadow_version(ro) ? tsl_rollout_shadow_version(ro) : "");
    return err;
}

/* --policy FILE: compiled, stored, and active everywhere unless it is the
 * active policy already (a restart keeps the staged sites). */
static int store_policy_file(tsl_broker *b)
{
    tsl_policy *pol = NULL, *active = NULL;
    char *src = NULL;
    size_t len;
    int64_t id;
    bool existed;
    int err;

    if (!b->policy_path)
        return 0;
    if ((err = tsl_file_read(&src, &len, b->policy_path, POLICY_FILE_MAX)) < 0 ||
        (err = tsl_policy_compile(&pol, src, len, b->policy_path)) < 0 ||
        (err = tsl_store_policy_active(&active, b->store)) < 0)
        goto done;
    bool same = active && strcmp(tsl_policy_version(active), tsl_policy_version(pol)) == 0;
    err = tsl_store_policy_add(&id, &existed, b->store, pol, "tsl serve --policy",
                               b->policy_path, same ? 0 : TSL_POLICY_ACTIVATE, broker_now(b));
done:
    tsl_policy_free(pol);
    tsl_policy_free(active);
    free(src);
    return err;
}

int bpolicy_start(tsl_broker *b)
{
    int err;
    if ((err = store_policy_file(b)) < 0 || (err = adopt_stored(b)) < 0)
        return err;
    return 0;
}

int bpolicy_sighup(tsl_broker *b)
{
    int err;
    if ((err = store_policy_file(b)) < 0 || (err = adopt_stored(b)) < 0) {
        atomic_fetch_add(&b->policy_load_failures, 1);
        broker_log(b, TSL_LOG_ERROR, "SIGHUP: the policy is refused, the one in force stays: %s",
                   tsl_error_last());
    }
    if ((err = broker_reload(b)) < 0) {
        atomic_fetch_add(&b->policy_load_failures, 1);
        broker_log(b, TSL_LOG_ERROR, "SIGHUP: reload failed, the plan in force stays: %s",
                   tsl_error_last());
        return err;
    }
    const char *key = tsl_rollout_key(b->rollout);
    broker_log(b, TSL_LOG_INFO, "SIGHUP: reloaded; policy %s",
               strcmp(key, "default") == 0 ? "none (default logic)" : key);
    return 0;
}

void bpolicy_poll(tsl_broker *b)
{
    bool changed = false;
    int64_t now = broker_now(b);

    if (!b->rollout || tsl_rollout_changed(&changed, b->rollout, b->store) < 0 || !changed)
        return;
    if (adopt_stored(b) < 0 && now - b->rollout_refused_at >= 60) {
        b->rollout_refused_at = now;
        atomic_fetch_add(&b->policy_load_failures, 1);
        broker_log(b, TSL_LOG_ERROR, "The stored rollout changed but is refused, the one in "
                                     "force stays: %s", tsl_error_last());
    }
}

void bpolicy_shadow_flush(tsl_broker *b)
{
    int64_t now = broker_now(b);
    if (b->shadow && tsl_shadow_flush(b->shadow, b->store, now) < 0)
        broker_log(b, TSL_LOG_WARNING, "Cannot save shadow counts (will retry): %s",
                   tsl_error_last());
    for (size_t i = 0; i < b->nretired; i++)
        tsl_shadow_flush(b->retired[i], b->store, now);
}

/* ------------------------------------------------------------------------
 * The admin jobs
 * ---------------------------------------------------------------------- */

static void reply_json(job *j, int status)
{
    j->status = status;
    j->content_type = "application/json";
}

/* Appends ,"findings":["line", ...]}\n: `tsl check`'s lines, one string each. */
static int put_findings(tsl_buf *o, tsl_buf *findings)
{
    int err = tsl_buf_puts(o, ",\"findings\":[");
    for (size_t i = 0, start = 0, n = 0; err == 0 && i < findings->len; i++) {
        if (findings->ptr[i] != '\n')
            continue;
        findings->ptr[i] = '\0';
        if ((err = tsl_buf_puts(o, n++ ? "," : "")) == 0)
            err = tsl_buf_json_str(o, findings->ptr + start);
        start = i + 1;
    }
    return err < 0 ? err : tsl_buf_puts(o, "]}\n");
}

/* ------------------------------------------------------------------------
 * POST /v1/policy, checked off the control thread.  Policy code (the
 * upload's load-time code and its rules over sample requests) runs on a
 * checker thread of its own, under the sandbox's bounds plus the check's
 * own deadline (BPOLICY_CHECK_SECONDS) and a cancel flag that stopping
 * the broker raises; the control thread only stores the result and
 * replies, so heartbeats are written and signals honoured meanwhile.
 * ---------------------------------------------------------------------- */

#define BPOLICY_CHECK_SECONDS 10

typedef struct upload_check {
    tsl_snapshot *snap;        /* the inventory in force when it was posted */
    int64_t now;
    int err;                   /* tsl_policy_check's result */
    int worst;
    tsl_buf findings;
    tsl_policy *pol;           /* compiled when the check found no error */
    int cerr;                  /* tsl_policy_compile's result */
    char msg[1024];            /* the message of the failing step */
} upload_check;

typedef struct policy_checker {
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;        /* guards todo, done, quit */
    pthread_cond_t cv;
    job *todo, **todo_tail;    /* posted, not yet checked */
    job *done, **done_tail;    /* checked, to be stored and replied to */
    bool quit;
    _Atomic bool cancel;       /* the broker is stopping */
    struct event *done_ev;     /* on the control base */
} policy_checker;

static void check_free(upload_check *u)
{
    if (!u)
        return;
    tsl_snapshot_free(u->snap);
    tsl_buf_free(&u->findings);
    tsl_policy_free(u->pol);
    free(u);
}

/* Checker thread: the check and the compile, nothing else. */
static void run_check(job *j)
{
    upload_check *u = j->check;
    const char *name = j->arg[0] ? j->arg : "upload.lua";

    u->err = tsl_policy_check(&u->worst, &u->findings, j->body, j->body_len, name, u->snap,
                              u->now);
    if (u->err < 0) {
        snprintf(u->msg, sizeof u->msg, "%s", tsl_error_last());
        return;
    }
    if (u->worst < 2 && (u->cerr = tsl_policy_compile(&u->pol, j->body, j->body_len, name)) < 0)
        snprintf(u->msg, sizeof u->msg, "%s", tsl_error_last());
}

static void *checker_main(void *arg)
{
    tsl_broker *b = arg;
    policy_checker *c = b->checker;
    char what[64];

    snprintf(what, sizeof what, "the policy check (%d s)", BPOLICY_CHECK_SECONDS);
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->todo && !c->quit)
            pthread_cond_wait(&c->cv, &c->mu);
        if (!c->todo)
            break;
        job *j = c->todo;
        if (!(c->todo = j->next))
            c->todo_tail = &c->todo;
        pthread_mutex_unlock(&c->mu);

        sandbox_ambient_set(&c->cancel, "the broker is stopping",
                            sandbox_now_ns() + (uint64_t)BPOLICY_CHECK_SECONDS * 1000000000u,
                            what);
        if (!atomic_load(&c->cancel))
            run_check(j);
        sandbox_ambient_set(NULL, NULL, 0, NULL);

        pthread_mutex_lock(&c->mu);
        j->next = NULL;
        *c->done_tail = j;
        c->done_tail = &j->next;
        event_active(c->done_ev, EV_TIMEOUT, 1);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* Control thread: stores a checked upload and replies.  A check cut short
 * by stopping is answered 503, nothing stored. */
static void finish_upload(tsl_broker *b, job *j)
{
    upload_check *u = j->check;
    tsl_buf *o = &j->out;
    int64_t id = 0;
    bool existed = false;
    int err;

    if (atomic_load(&b->checker->cancel)) {
        job_error(j, 503, "the broker is stopping: the policy was not checked, nothing is "
                          "stored");
        return;
    }
    if (u->err < 0) {
        job_error(j, status_for_error(u->err), "%s", u->msg);
        return;
    }
    tsl_buf_clear(o);
    j->content_type = "application/json";
    if (u->worst >= 2 || u->cerr < 0) {
        atomic_fetch_add(&b->policy_load_failures, 1);
        j->status = 422;
        if ((err = tsl_buf_puts(o, "{\"error\":")) == 0)
            err = tsl_buf_json_str(o, u->worst >= 2 ? "the policy has errors; nothing is stored"
                                                    : u->msg);
        if (err == 0)
            err = put_findings(o, &u->findings);
        if (err < 0)
            job_error(j, 500, "%s", tsl_error_last());
        return;
    }
    if ((err = tsl_store_policy_add(&id, &existed, b->store, u->pol, j->author,
                                    j->comment[0] ? j->comment : NULL, 0, broker_now(b))) < 0) {
        job_error(j, status_for_error(err), "%s", tsl_error_last());
        return;
    }
    j->status = existed ? 200 : 201;
    if ((err = tsl_buf_printf(o, "{\"id\":%lld,\"version\":", (long long)id)) < 0 ||
        (err = tsl_buf_json_str(o, tsl_policy_version(u->pol))) < 0 ||
        (err = tsl_buf_printf(o, ",\"existed\":%s,\"active\":false",
                              existed ? "true" : "false")) < 0 ||
        (err = put_findings(o, &u->findings)) < 0) {
        job_error(j, 500, "%s", tsl_error_last());
        return;
    }
    broker_log(b, TSL_LOG_INFO, "Policy %s uploaded by %s (%s, not active)",
               tsl_policy_version(u->pol), j->author, existed ? "already stored" : "new version");
}

static void on_checked(evutil_socket_t fd, short what, void *arg)
{
    tsl_broker *b = arg;
    policy_checker *c = b->checker;
    (void)fd;
    (void)what;
    pthread_mutex_lock(&c->mu);
    job *list = c->done;
    c->done = NULL;
    c->done_tail = &c->done;
    pthread_mutex_unlock(&c->mu);
    for (job *j = list, *next; j; j = next) {
        next = j->next;
        finish_upload(b, j);
        check_free(j->check);
        j->check = NULL;
        atomic_fetch_add(&b->jobs_done, 1);
        event_active(j->reply_ev, EV_TIMEOUT, 1);
    }
}

/* Creates the checker and its thread (signals blocked: they are the
 * control thread's). */
static int checker_start(tsl_broker *b)
{
    policy_checker *c = calloc(1, sizeof *c);
    sigset_t set, old;
    if (!c)
        return tsl_oom();
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    c->todo_tail = &c->todo;
    c->done_tail = &c->done;
    atomic_init(&c->cancel, false);
    b->checker = c;
    if (!(c->done_ev = event_new(b->base, -1, 0, on_checked, b)))
        return tsl_seterr(TSL_ERROR, "cannot create the policy checker's event");
    sigfillset(&set);
    pthread_sigmask(SIG_BLOCK, &set, &old);
    int rc = pthread_create(&c->thread, NULL, checker_main, b);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0)
        return tsl_seterr(TSL_ERROR, "cannot start the policy checker thread");
    c->started = true;
    return 0;
}

bool bpolicy_defer(tsl_broker *b, job *j)
{
    upload_check *u;
    if (b->stopping || (!b->checker && checker_start(b) < 0) || !b->checker->started)
        return false; /* policy_upload answers (503 when stopping) */
    if (!(u = calloc(1, sizeof *u)))
        return false;
    u->snap = tsl_snapshot_ref(b->snap);
    u->now = broker_now(b);
    j->check = u;
    pthread_mutex_lock(&b->checker->mu);
    j->next = NULL;
    *b->checker->todo_tail = j;
    b->checker->todo_tail = &j->next;
    pthread_cond_signal(&b->checker->cv);
    pthread_mutex_unlock(&b->checker->mu);
    return true;
}

void bpolicy_stop(tsl_broker *b)
{
    if (b->checker)
        atomic_store(&b->checker->cancel, true);
}

static void drop_jobs(tsl_broker *b, job *list)
{
    for (job *j = list, *next; j; j = next) {
        next = j->next;
        check_free(j->check);
        event_free(j->reply_ev);
        free(j->body);
        tsl_buf_free(&j->out);
        free(j);
        atomic_fetch_sub(&b->jobs_pending, 1);
    }
}

void bpolicy_free(tsl_broker *b)
{
    policy_checker *c = b->checker;
    if (!c)
        return;
    atomic_store(&c->cancel, true);
    if (c->started) {
        pthread_mutex_lock(&c->mu);
        c->quit = true;
        pthread_cond_signal(&c->cv);
        pthread_mutex_unlock(&c->mu);
        pthread_join(c->thread, NULL);
    }
    drop_jobs(b, c->todo);
    drop_jobs(b, c->done);
    if (c->done_ev)
        event_free(c->done_ev);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c);
    b->checker = NULL;
}

/* POST /v1/policy when it cannot be deferred: stopping, or no checker. */
static void policy_upload(tsl_broker *b, job *j)
{
    if (b->stopping)
        job_error(j, 503, "the broker is stopping: the policy was not checked, nothing is stored");
    else
        job_error(j, 503, "the policy checker is not available: %s", tsl_error_last());
}

/* Appends "active":V (the base version; null: the default logic) and
 * "in_force":"base;Site=version..." (the rollout state key). */
static int put_in_force(tsl_broker *b, tsl_buf *o)
{
    char v[96];
    int err;
    if ((err = tsl_buf_puts(o, "\"active\":")) < 0 ||
        (err = tsl_buf_json_str(o, tsl_broker_policy_version(b, v, sizeof v))) < 0 ||
        (err = tsl_buf_puts(o, ",\"in_force\":")) < 0)
        return err;
    return tsl_buf_json_str(o, tsl_rollout_key(b->rollout));
}

/* {"ACTION":true,"what":...,"active":V|null,"in_force":...} */
static void reply_in_force(tsl_broker *b, job *j, const char *action, const char *what)
{
    tsl_buf_clear(&j->out);
    if (tsl_buf_printf(&j->out, "{\"%s\":true,\"what\":", action) < 0 ||
        tsl_buf_json_str(&j->out, what) < 0 || tsl_buf_puts(&j->out, ",") < 0 ||
        put_in_force(b, &j->out) < 0 || tsl_buf_puts(&j->out, "}\n") < 0) {
        job_error(j, 500, "%s", tsl_error_last());
        return;
    }
    reply_json(j, 200);
}

/* After the store changed: adopt it now, so the reply tells the truth. */
static void adopt_after(tsl_broker *b, job *j, const char *action, const char *what)
{
    if (adopt_stored(b) < 0) {
        atomic_fetch_add(&b->policy_load_failures, 1);
        job_error(j, 500, "%s is recorded but the broker cannot run it: %s", action,
                  tsl_error_last());
        return;
    }
    reply_in_force(b, j, action, what);
}

/* POST /v1/policy/VERSION/activate[?sites=London,Paris][&require_dry_run=1] */
static void policy_activate(tsl_broker *b, job *j)
{
    const char *names[64];
    char list[sizeof j->sites], what[sizeof j->arg + sizeof j->sites + 32], *save = NULL;
    tsl_activate_options ao = {0};
    int err;

    snprintf(list, sizeof list, "%s", j->sites);
    for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (ao.nsites == sizeof names / sizeof *names) {
            job_error(j, 400, "at most %zu sites at once", sizeof names / sizeof *names);
            return;
        }
        if (*t)
            names[ao.nsites++] = t;
    }
    ao.sites = names;
    ao.require_dry_run = j->require_dry_run;
    ao.author = j->author;
    ao.comment = j->comment[0] ? j->comment : NULL;
    ao.now = broker_now(b);
    if ((err = tsl_rollout_activate(b->store, j->arg, &ao)) < 0) {
        job_error(j, status_for_error(err), "policy \"%s\" is not activated, the one in force "
                                            "stays: %s", j->arg, tsl_error_last());
        return;
    }
    snprintf(what, sizeof what, "activated %s %s%s", j->arg, ao.nsites ? "for " : "everywhere",
             ao.nsites ? j->sites : "");
    adopt_after(b, j, "activated", what);
}

/* POST /v1/policy/rollback: undoes the newest activation still in force. */
static void policy_rollback(tsl_broker *b, job *j)
{
    char what[512];
    int err = tsl_rollout_rollback(b->store, j->author, what, sizeof what);
    if (err < 0) {
        job_error(j, err == TSL_ENOTFOUND ? 409 : status_for_error(err), "%s", tsl_error_last());
        return;
    }
    adopt_after(b, j, "rolled_back", what);
}

/* GET /v1/policy: {"active":V|null, "in_force":..., "shadow":V|null,
 * "versions":[...] (tsl_store_policy_list), "history":[...] (the
 * rollout's, newest first, as `tsl policy status --json` has it)}. */
static void policy_list(tsl_broker *b, job *j)
{
    tsl_buf *o = &j->out, status = TSL_BUF_INIT;
    const char *sv = tsl_rollout_shadow_version(b->rollout), *hist;
    int err;

    tsl_buf_clear(o);
    if ((err = tsl_buf_puts(o, "{")) < 0 || (err = put_in_force(b, o)) < 0 ||
        (err = tsl_buf_puts(o, ",\"shadow\":")) < 0 || (err = tsl_buf_json_str(o, sv)) < 0 ||
        (err = tsl_buf_puts(o, ",\n\"versions\":")) < 0 ||
        (err = tsl_store_policy_list(o, b->store, TSL_FORMAT_JSON)) < 0 ||
        (err = tsl_rollout_status(&status, b->store, TSL_FORMAT_JSON)) < 0)
        goto done;
    if (o->len && o->ptr[o->len - 1] == '\n')
        o->len--;
    /* status is {"in_force":...,"history":[...]}\n: keep its history */
    if (!(hist = strstr(status.ptr, "\"history\":"))) {
        err = tsl_seterr(TSL_ERROR, "the rollout status has no history");
        goto done;
    }
    err = tsl_buf_printf(o, ",\n%s", hist);
done:
    tsl_buf_free(&status);
    if (err < 0)
        job_error(j, 500, "%s", tsl_error_last());
    else
        reply_json(j, 200);
}

void bpolicy_job(tsl_broker *b, job *j)
{
    switch (j->kind) {
    case JOB_POLICY_UPLOAD: policy_upload(b, j); break;
    case JOB_POLICY_ACTIVATE: policy_activate(b, j); break;
    case JOB_POLICY_ROLLBACK: policy_rollback(b, j); break;
    case JOB_POLICY_LIST: policy_list(b, j); break;
    default: job_error(j, 500, "not a policy job"); break;
    }
}
