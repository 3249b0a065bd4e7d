/*
 * plan.c - publishing the plan the workers decide against, and reloading
 * the inventory it is built from.
 *
 * Publishing a plan: the control thread swaps `plan` under plan_mu and
 * bumps plan_gen; each worker compares plan_gen with its own before a
 * request and, when it moved, takes a reference to the new plan and drops
 * its old one.  A request in flight keeps deciding against the plan its
 * worker held when it started, so a swap never fails a request; idle
 * workers are poked (refresh_ev) so an old plan does not linger.
 *
 * Used by: the control thread (broker.c, writer.c, bpolicy.c, admin_jobs.c:
 * broker_publish, broker_bind, broker_reload), the workers (http.c,
 * workers.c: worker_refresh_plan through control.h).
 * Needs: control_internal.h (the writer's flush and overlay).
 */
#include "control_internal.h"

#include <stdio.h>
#include <string.h>

void broker_publish(tsl_broker *b, tsl_plan *plan, tsl_plan *shadow_plan)
{
    tsl_policy *pol = tsl_plan_policy(plan);
    const char *version = pol ? tsl_policy_version(pol) : NULL;

    pthread_mutex_lock(&b->plan_mu);
    tsl_plan *old = b->plan, *old_shadow = b->shadow_plan;
    b->plan = plan;
    b->shadow_plan = shadow_plan;
    snprintf(b->policy_version, sizeof b->policy_version, "%s", version ? version : "");
    atomic_store(&b->plan_built_at, tsl_snapshot_built_at(tsl_plan_snapshot(plan)));
    atomic_fetch_add_explicit(&b->plan_gen, 1, memory_order_release);
    pthread_mutex_unlock(&b->plan_mu);
    tsl_plan_free(old);
    tsl_plan_free(old_shadow);

    /* the control thread keeps the latest snapshot to derive from */
    tsl_snapshot *snap = tsl_snapshot_ref(tsl_plan_snapshot(plan));
    tsl_snapshot_free(b->snap);
    b->snap = snap;

    for (int i = 0; i < b->nworkers; i++)
        if (b->workers[i].refresh_ev)
            event_active(b->workers[i].refresh_ev, EV_TIMEOUT, 1);
}

void worker_refresh_plan(bworker *w)
{
    tsl_broker *b = w->b;
    if (w->plan && atomic_load_explicit(&b->plan_gen, memory_order_acquire) == w->plan_gen)
        return;
    pthread_mutex_lock(&b->plan_mu);
    tsl_plan *p = tsl_plan_ref(b->plan);
    tsl_plan *sp = b->shadow_plan ? tsl_plan_ref(b->shadow_plan) : NULL;
    /* the tally lives as long as the broker (retired, never freed early);
     * taken only with the plan of its own version */
    w->shadow = sp && b->shadow && strcmp(tsl_shadow_version(b->shadow),
                                          tsl_policy_version(tsl_plan_policy(sp))) == 0
                    ? b->shadow
                    : NULL;
    w->plan_gen = atomic_load_explicit(&b->plan_gen, memory_order_relaxed);
    pthread_mutex_unlock(&b->plan_mu);
    tsl_plan_free(w->plan);
    tsl_plan_free(w->shadow_plan);
    w->plan = p;
    w->shadow_plan = sp;
}

int broker_bind(tsl_broker *b, tsl_snapshot *snap, tsl_plan **plan, tsl_plan **shadow)
{
    int err;
    *plan = *shadow = NULL;
    if ((err = tsl_rollout_bind(plan, b->rollout, snap)) < 0 ||
        (err = tsl_rollout_bind_shadow(shadow, b->rollout, snap)) < 0) {
        tsl_plan_free(*plan);
        *plan = NULL;
    }
    return err;
}

const char *tsl_broker_policy_version(tsl_broker *b, char *dst, size_t len)
{
    pthread_mutex_lock(&b->plan_mu);
    snprintf(dst, len, "%s", b->policy_version);
    pthread_mutex_unlock(&b->plan_mu);
    return dst[0] ? dst : NULL;
}

/* Loads the inventory from the store again: the new root, with what the
 * overlay and the not yet committed records say on top. */
int broker_reload(tsl_broker *b)
{
    tsl_snapshot *root = NULL, *snap = NULL;
    tsl_plan *plan = NULL, *shadow = NULL;
    int err;
    uint64_t t0 = broker_mono_ns();

    writer_flush(b); /* what stays unwritten is re-applied below */
    if ((err = tsl_snapshot_load(&root, b->store, &b->cfg.settings)) < 0)
        goto done;
    root->built_at = broker_now(b); /* the broker's clock (not yet shared) */
    for (wrec *r = b->unwritten; r; r = r->next) {
        if (r->kind == WREC_HEARTBEAT || (r->kind == WREC_REGISTRATION && !r->u.reg.ok)) {
            if ((err = overlay_add(b, r)) < 0)
                goto done;
        }
    }
    if ((err = overlay_apply(b, root, &snap)) < 0 ||
        (err = broker_bind(b, snap, &plan, &shadow)) < 0)
        goto done;
    broker_publish(b, plan, shadow);
    plan = shadow = NULL;
    atomic_fetch_add(&b->reloads, 1);
    broker_log(b, TSL_LOG_INFO,
               "Inventory loaded: %zu sites, %zu task servers, %zu clients in %.0f ms",
               tsl_snapshot_site_count(snap), tsl_snapshot_server_count(snap),
               tsl_snapshot_client_count(snap), (double)(broker_mono_ns() - t0) / 1e6);

done:
    tsl_plan_free(plan);
    tsl_plan_free(shadow);
    tsl_snapshot_free(snap);
    tsl_snapshot_free(root);
    return err;
}

