/*
 * bpolicy.c - the broker's policies: the one in force at start (--policy
 * FILE, stored and activated, else the store's active version), SIGHUP
 * reloads, and the four policy admin jobs, one function each:
 *
 *   POST /v1/policy                  policy_upload    check, store a version
 *   POST /v1/policy/VERSION/activate policy_activate  bind, record, swap
 *   POST /v1/policy/rollback         policy_rollback  undo the last activation
 *   GET  /v1/policy                  policy_list      active, versions, history
 *
 * Every swap binds the new policy to the latest snapshot first, then
 * records it in the store (policy_active and policy_activations, one
 * transaction), and only then publishes the plan: a policy that does not
 * compile or bind, or a store that cannot record it, never replaces the
 * one in force.  Publishing is one pointer swap (broker_adopt_policy), so
 * requests in flight finish on the old plan and new ones see the new one.
 *
 * Versions are the policy layer's (002: policies, policy_active); the
 * activation history is 003's policy_activations.  The staged rollouts of
 * the dryrun branch (tsl_rollout_*) replace these four functions.
 *
 * Runs on the control thread.  Used by: broker.c, admin.c.
 * Needs: broker_internal.h.
 */
#include "broker_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HISTORY_MAX 50                   /* activations GET /v1/policy shows, newest first */
#define POLICY_FILE_MAX ((size_t)16 << 20) /* a --policy file (the compiler has its own limit) */

/* ------------------------------------------------------------------------
 * Helpers
 * ---------------------------------------------------------------------- */


/* Steps a statement expected to return one row; *found false when none. */
static int step_row(tsl_broker *b, sqlite3_stmt *st, bool *found, const char *what)
{
    int rc = sqlite3_step(st);
    *found = rc == SQLITE_ROW;
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return tsl_store_err(b->store, what);
    return 0;
}

/* The id of the active version, 0 for the default logic. */
static int active_id(tsl_broker *b, int64_t *out)
{
    sqlite3_stmt *st = broker_stmt(b, P_ACTIVE_ID);
    bool found;
    int err;
    *out = 0;
    if (!st)
        return TSL_ESTORE;
    if ((err = step_row(b, st, &found, "reading the active policy")) == 0 && found)
        *out = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return err;
}

/* Compiles stored version `id` (0: *out NULL, the default logic). */
static int compile_version(tsl_broker *b, int64_t id, tsl_policy **out)
{
    sqlite3_stmt *st;
    bool found;
    int err;

    *out = NULL;
    if (!id)
        return 0;
    if (!(st = broker_stmt(b, P_SOURCE)))
        return TSL_ESTORE;
    sqlite3_bind_int64(st, 1, id);
    if ((err = step_row(b, st, &found, "reading a policy version")) == 0) {
        if (!found)
            err = tsl_seterr(TSL_ENOTFOUND, "policy version %lld is not in the store", (long long)id);
        else
            err = tsl_policy_compile(out, (const char *)sqlite3_column_blob(st, 1),
                                     (size_t)sqlite3_column_bytes(st, 1),
                                     (const char *)sqlite3_column_text(st, 0));
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return err;
}

/* Records `id` (0: the default logic) as active, with a history row; when
 * `undo` is set, that row is marked undone by this one.  One transaction. */
static int record_activation(tsl_broker *b, int64_t id, int64_t prior, const char *action,
                             const char *author, int64_t undo)
{
    sqlite3_stmt *st;
    int err;

    if ((err = tsl_store_begin(b->store)) < 0)
        return err;
    if (!(st = tsl_store_stmt(b->store, TSL_STMT_POLICY_ACTIVATE))) {
        err = TSL_ESTORE;
        goto done;
    }
    if (id)
        sqlite3_bind_int64(st, 1, id);
    else
        sqlite3_bind_null(st, 1);
    sqlite3_bind_int64(st, 2, broker_now(b));
    tsl_store_bind_text(st, 3, author);
    if ((err = broker_stmt_run(b, st, "activating a policy version")) < 0)
        goto done;
    if (!(st = broker_stmt(b, P_HISTORY_ADD))) {
        err = TSL_ESTORE;
        goto done;
    }
    sqlite3_bind_int64(st, 1, broker_now(b));
    tsl_store_bind_text(st, 2, action);
    sqlite3_bind_int64(st, 3, id);
    sqlite3_bind_int64(st, 4, prior);
    tsl_store_bind_text(st, 5, author);
    if ((err = broker_stmt_run(b, st, "recording a policy activation")) < 0)
        goto done;
    if (undo) {
        int64_t row = sqlite3_last_insert_rowid(tsl_store_db(b->store));
        if (!(st = broker_stmt(b, P_HISTORY_UNDO))) {
            err = TSL_ESTORE;
            goto done;
        }
        sqlite3_bind_int64(st, 1, undo);
        sqlite3_bind_int64(st, 2, row);
        if ((err = broker_stmt_run(b, st, "recording a rollback")) < 0)
            goto done;
    }
    err = tsl_store_commit(b->store);

done:
    if (err < 0)
        tsl_store_rollback(b->store);
    return err;
}

/* The whole swap: bind `pol` (NULL: the default logic) to the latest
 * snapshot, record it, publish it.  Nothing changes unless all succeed. */
static int switch_policy(tsl_broker *b, tsl_policy *pol, int64_t id, const char *action,
                         const char *author, int64_t undo)
{
    tsl_plan *plan = NULL;
    int64_t prior = 0;
    int err;

    if ((err = tsl_plan_new(&plan, b->snap, pol)) < 0 || (err = active_id(b, &prior)) < 0 ||
        (err = record_activation(b, id, prior, action, author, undo)) < 0)
        goto done;
    broker_adopt_policy(b, pol, plan);
    plan = NULL;
    broker_log(b, TSL_LOG_INFO, "Policy %s: %s is in force (by %s)",
               strcmp(action, "rollback") == 0 ? "rolled back" : "activated",
               pol ? tsl_policy_version(pol) : "none (default logic)", author ? author : "-");

done:
    if (err < 0)
        atomic_fetch_add(&b->policy_load_failures, 1);
    tsl_plan_free(plan);
    return err;
}

/* The --policy file, compiled and stored as a version; *out_id its id. */
static int load_policy_file(tsl_broker *b, tsl_policy **out, int64_t *out_id)
{
    char *src = NULL;
    size_t len;
    bool existed;
    int err;

    *out = NULL;
    *out_id = 0;
    if ((err = tsl_file_read(&src, &len, b->policy_path, POLICY_FILE_MAX)) < 0 ||
        (err = tsl_policy_compile(out, src, len, b->policy_path)) < 0 ||
        (err = tsl_store_policy_add(out_id, &existed, b->store, *out, "tsl serve --policy",
                                    b->policy_path, 0, broker_now(b))) < 0) {
        tsl_policy_free(*out);
        *out = NULL;
    }
    free(src);
    return err;
}

/* ------------------------------------------------------------------------
 * Start and SIGHUP
 * ---------------------------------------------------------------------- */

/* The policy to run: --policy FILE (stored, activated), else the store's
 * active version, else none (the default logic). */
static int policy_to_run(tsl_broker *b, tsl_policy **out, int64_t *out_id)
{
    if (b->policy_path)
        return load_policy_file(b, out, out_id);
    *out_id = -1; /* already recorded as active */
    return tsl_store_policy_active(out, b->store);
}

int bpolicy_start(tsl_broker *b)
{
    tsl_policy *pol = NULL;
    tsl_plan *plan = NULL;
    int64_t id, prior = 0;
    int err;

    if ((err = policy_to_run(b, &pol, &id)) < 0)
        goto done;
    if (id >= 0) { /* --policy: bind it before recording it */
        if ((err = tsl_plan_new(&plan, b->snap, pol)) < 0 || (err = active_id(b, &prior)) < 0)
            goto done;
        if (prior != id &&
            (err = record_activation(b, id, prior, "activate", "tsl serve --policy", 0)) < 0)
            goto done;
    }
    tsl_policy_free(b->policy);
    b->policy = pol;
    pol = NULL;

done:
    tsl_plan_free(plan);
    tsl_policy_free(pol);
    return err;
}

int bpolicy_sighup(tsl_broker *b)
{
    tsl_policy *pol = NULL, *old = b->policy;
    int64_t id = -1, prior = 0;
    int err = policy_to_run(b, &pol, &id);
    if (err < 0) {
        atomic_fetch_add(&b->policy_load_failures, 1);
        broker_log(b, TSL_LOG_ERROR, "SIGHUP: the policy is refused, the one in force stays: %s",
                   tsl_error_last());
        pol = tsl_policy_ref(old);
        id = -1;
    }
    b->policy = pol;
    if ((err = broker_reload(b)) < 0) {
        b->policy = old;
        tsl_policy_free(pol);
        atomic_fetch_add(&b->policy_load_failures, 1);
        broker_log(b, TSL_LOG_ERROR, "SIGHUP: reload failed, the plan in force stays: %s",
                   tsl_error_last());
        return err;
    }
    tsl_policy_free(old);
    if (id >= 0 && active_id(b, &prior) == 0 && prior != id &&
        record_activation(b, id, prior, "activate", "tsl serve --policy", 0) < 0)
        broker_log(b, TSL_LOG_WARNING, "SIGHUP: the policy runs but is not recorded as active: %s",
                   tsl_error_last());
    broker_log(b, TSL_LOG_INFO, "SIGHUP: reloaded; policy %s",
               pol ? tsl_policy_version(pol) : "none (default logic)");
    return 0;
}

/* ------------------------------------------------------------------------
 * The admin jobs
 * ---------------------------------------------------------------------- */

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

/* POST /v1/policy: the body is the policy's Lua source.  Checked with `tsl
 * check`'s rules against the inventory in force: errors refuse it (422,
 * the findings listed, nothing stored); otherwise it is stored as a
 * version, not active (201, or 200 when the same text was stored before). */
static void policy_upload(tsl_broker *b, job *j)
{
    tsl_buf findings = TSL_BUF_INIT, *o = &j->out;
    tsl_policy *pol = NULL;
    int64_t id = 0;
    bool existed = false;
    int worst = 0, err;
    const char *name = j->arg[0] ? j->arg : "upload.lua";

    if ((err = tsl_policy_check(&worst, &findings, j->body, j->body_len, name, b->snap,
                                broker_now(b))) < 0) {
        job_error(j, status_for_error(err), "%s", tsl_error_last());
        goto done;
    }
    tsl_buf_clear(o);
    j->content_type = "application/json";
    if (worst >= 2 || (err = tsl_policy_compile(&pol, j->body, j->body_len, name)) < 0) {
        atomic_fetch_add(&b->policy_load_failures, 1);
        j->status = 422;
        if ((err = tsl_buf_puts(o, "{\"error\":")) == 0)
            err = tsl_buf_json_str(o, worst >= 2 ? "the policy has errors; nothing is stored"
                                                 : tsl_error_last());
        if (err == 0)
            err = put_findings(o, &findings);
        if (err < 0)
            job_error(j, 500, "%s", tsl_error_last());
        goto done;
    }
    if ((err = tsl_store_policy_add(&id, &existed, b->store, pol, j->author,
                                    j->comment[0] ? j->comment : NULL, 0, broker_now(b))) < 0) {
        job_error(j, status_for_error(err), "%s", tsl_error_last());
        goto done;
    }
    j->status = existed ? 200 : 201;
    if ((err = tsl_buf_printf(o, "{\"id\":%lld,\"version\":", (long long)id)) < 0 ||
        (err = tsl_buf_json_str(o, tsl_policy_version(pol))) < 0 ||
        (err = tsl_buf_printf(o, ",\"existed\":%s,\"active\":false",
                              existed ? "true" : "false")) < 0 ||
        (err = put_findings(o, &findings)) < 0) {
        job_error(j, 500, "%s", tsl_error_last());
        goto done;
    }
    broker_log(b, TSL_LOG_INFO, "Policy %s uploaded by %s (%s, not active)",
               tsl_policy_version(pol), j->author, existed ? "already stored" : "new version");

done:
    tsl_policy_free(pol);
    tsl_buf_free(&findings);
}

/* The success body: {"ACTION": true, "active": V} (null: the default logic). */
static void reply_in_force(tsl_broker *b, job *j, const char *action)
{
    tsl_buf_clear(&j->out);
    j->status = 200;
    j->content_type = "application/json";
    if (tsl_buf_printf(&j->out, "{\"%s\":true,\"active\":", action) < 0 ||
        tsl_buf_json_str(&j->out, b->policy ? tsl_policy_version(b->policy) : NULL) < 0 ||
        tsl_buf_puts(&j->out, "}\n") < 0)
        job_error(j, 500, "%s", tsl_error_last());
}

/* POST /v1/policy/VERSION/activate: VERSION is a version ("sha256:..."),
 * the full hash, the id, or "none" for the default logic. */
static void policy_activate(tsl_broker *b, job *j)
{
    tsl_policy *pol = NULL;
    int64_t id = 0;
    int err;

    if (strcmp(j->arg, "none") != 0) {
        sqlite3_stmt *st = broker_stmt(b, P_FIND);
        bool found = false;
        if (!st) {
            job_error(j, 500, "%s", tsl_error_last());
            return;
        }
        tsl_store_bind_text(st, 1, j->arg);
        err = step_row(b, st, &found, "looking up a policy version");
        if (found)
            id = sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        if (err < 0) {
            job_error(j, 500, "%s", tsl_error_last());
            return;
        }
        if (!found) {
            job_error(j, 404, "no policy version \"%s\" (GET /v1/policy lists them)", j->arg);
            return;
        }
    }
    if ((err = compile_version(b, id, &pol)) < 0 ||
        (err = switch_policy(b, pol, id, "activate", j->author, 0)) < 0)
        job_error(j, err == TSL_EPOLICY ? 422 : status_for_error(err),
                  "policy \"%s\" is not activated, the one in force stays: %s", j->arg,
                  tsl_error_last());
    else
        reply_in_force(b, j, "activated");
    tsl_policy_free(pol);
}

/* POST /v1/policy/rollback: undoes the newest activation not yet undone. */
static void policy_rollback(tsl_broker *b, job *j)
{
    sqlite3_stmt *st = broker_stmt(b, P_LAST_UNDOABLE);
    tsl_policy *pol = NULL;
    int64_t undo = 0, prior = 0;
    bool found = false;
    int err;

    if (!st) {
        job_error(j, 500, "%s", tsl_error_last());
        return;
    }
    if ((err = step_row(b, st, &found, "reading the activation history")) == 0 && found) {
        undo = sqlite3_column_int64(st, 0);
        prior = sqlite3_column_int64(st, 1);
    }
    sqlite3_reset(st);
    if (err < 0) {
        job_error(j, 500, "%s", tsl_error_last());
        return;
    }
    if (!found) {
        job_error(j, 409, "nothing to roll back: no activation through the broker is left to undo");
        return;
    }
    if ((err = compile_version(b, prior, &pol)) < 0 ||
        (err = switch_policy(b, pol, prior, "rollback", j->author, undo)) < 0)
        job_error(j, err == TSL_EPOLICY ? 422 : status_for_error(err),
                  "rollback refused, the policy in force stays: %s", tsl_error_last());
    else
        reply_in_force(b, j, "rolled_back");
    tsl_policy_free(pol);
}

/* GET /v1/policy: {"active": V|null, "versions": [...], "history": [...]}. */
static void policy_list(tsl_broker *b, job *j)
{
    tsl_buf *o = &j->out;
    sqlite3_stmt *st = broker_stmt(b, P_HISTORY_LIST);
    int err, rc = SQLITE_DONE, n = 0;

    tsl_buf_clear(o);
    if (!st) {
        job_error(j, 500, "%s", tsl_error_last());
        return;
    }
    err = tsl_buf_puts(o, "{\"active\":");
    if (err == 0)
        err = tsl_buf_json_str(o, b->policy ? tsl_policy_version(b->policy) : NULL);
    if (err == 0)
        err = tsl_buf_puts(o, ",\n\"versions\":");
    if (err == 0)
        err = tsl_store_policy_list(o, b->store, TSL_FORMAT_JSON);
    if (err == 0 && o->len && o->ptr[o->len - 1] == '\n')
        o->len--;
    if (err == 0)
        err = tsl_buf_puts(o, ",\n\"history\":[");
    sqlite3_bind_int(st, 1, HISTORY_MAX);
    while (err == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        err = tsl_buf_printf(o, "%s{\"id\":%lld,\"at\":%lld,\"action\":", n++ ? "," : "",
                             (long long)sqlite3_column_int64(st, 0),
                             (long long)sqlite3_column_int64(st, 1));
        if (err == 0)
            err = tsl_buf_json_str(o, (const char *)sqlite3_column_text(st, 2));
        if (err == 0)
            err = tsl_buf_puts(o, ",\"version\":");
        if (err == 0)
            err = tsl_buf_json_str(o, (const char *)sqlite3_column_text(st, 3));
        if (err == 0)
            err = tsl_buf_puts(o, ",\"prior\":");
        if (err == 0)
            err = tsl_buf_json_str(o, (const char *)sqlite3_column_text(st, 4));
        if (err == 0)
            err = tsl_buf_puts(o, ",\"author\":");
        if (err == 0)
            err = tsl_buf_json_str(o, (const char *)sqlite3_column_text(st, 5));
        if (err == 0)
            err = tsl_buf_printf(o, ",\"undone\":%s}",
                                 sqlite3_column_type(st, 6) == SQLITE_NULL ? "false" : "true");
    }
    if (err == 0 && rc != SQLITE_DONE && rc != SQLITE_ROW)
        err = tsl_store_err(b->store, "reading the activation history");
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (err == 0)
        err = tsl_buf_puts(o, "]}\n");
    if (err < 0) {
        job_error(j, 500, "%s", tsl_error_last());
        return;
    }
    j->status = 200;
    j->content_type = "application/json";
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
