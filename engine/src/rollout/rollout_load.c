/*
 * rollout_load.c - the plan in force: the rollout state (base, staged
 * sites, shadow) compiled once into a tsl_rollout, bound to each new
 * snapshot, and checked for changes in the store.
 *
 * Used by: the broker (tsl_rollout_load, tsl_rollout_bind,
 * tsl_rollout_bind_shadow, tsl_rollout_changed), the CLI and the dry-run
 * (tsl_rollout_plan).  Needs: store.h, rollout.h (rollout_shadow_get),
 * rollout_plan.c (staged plans).
 */
#include "dryrun.h"
#include "rollout_db.h"
#include "store.h"

#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ------------------------------------------------------------------------
 * The plan in force
 * ---------------------------------------------------------------------- */

/* The rollout state compiled once: the broker keeps one and binds it to
 * every new snapshot (a heartbeat derives a new snapshot every second, so
 * nothing is compiled or read from the store there). */
struct tsl_rollout {
    tsl_policy *base;                            /* NULL: the default logic */
    tsl_policy *staged[TSL_STAGE_MAX_PLANS];     /* distinct staged versions */
    char **sites[TSL_STAGE_MAX_PLANS];           /* each one's sites */
    size_t nsites[TSL_STAGE_MAX_PLANS];
    size_t nstaged;
    tsl_policy *shadow;                          /* NULL: no shadow version */
    char state_key[1024];
};

void tsl_rollout_free(tsl_rollout *ro)
{
    if (!ro)
        return;
    tsl_policy_free(ro->base);
    tsl_policy_free(ro->shadow);
    for (size_t i = 0; i < ro->nstaged; i++) {
        tsl_policy_free(ro->staged[i]);
        for (size_t k = 0; k < ro->nsites[i]; k++)
            free(ro->sites[i][k]);
        free(ro->sites[i]);
    }
    free(ro);
}

int tsl_rollout_load(tsl_rollout **out, tsl_store *st)
{
    tsl_rollout *ro = NULL;
    json_t *state = NULL;
    tsl_buf key = TSL_BUF_INIT;
    int64_t ids[TSL_STAGE_MAX_PLANS], shadow_id;
    char hash[HASHLEN];
    int err;

    *out = NULL;
    TSL_ARG(st);
    if (!(ro = calloc(1, sizeof *ro)))
        return tsl_oom();
    if ((err = rollout_state_read(&state, st)) < 0 || (err = tsl_rollout_state_key(&key, st)) < 0)
        goto done;
    snprintf(ro->state_key, sizeof ro->state_key, "%s", key.ptr);
    json_t *base = json_object_get(state, "*");
    if (base && (err = policy_store_compile(&ro->base, st, json_integer_value(base))) < 0)
        goto done;
    const char *site;
    json_t *v;
    json_object_foreach(state, site, v) {
        int64_t id = json_integer_value(v);
        size_t k;
        if (strcmp(site, "*") == 0)
            continue;
        for (k = 0; k < ro->nstaged; k++)
            if (ids[k] == id)
                break;
        if (k == ro->nstaged) {
            if (ro->nstaged == TSL_STAGE_MAX_PLANS - 1) {
                err = tsl_seterr(TSL_ELIMIT, "a staged rollout runs at most %d versions at once",
                                 TSL_STAGE_MAX_PLANS);
                goto done;
            }
            ids[k] = id;
            ro->nstaged++;
            if ((err = policy_store_compile(&ro->staged[k], st, id)) < 0)
                goto done;
            if (!(ro->sites[k] = calloc(json_object_size(state), sizeof *ro->sites[k]))) {
                err = tsl_oom();
                goto done;
            }
        }
        if (!(ro->sites[k][ro->nsites[k]] = strdup(site))) {
            err = tsl_oom();
            goto done;
        }
        ro->nsites[k]++;
    }
    if ((err = rollout_shadow_get(&shadow_id, hash, sizeof hash, NULL, st)) < 0)
        goto done;
    if (shadow_id && (err = policy_store_compile(&ro->shadow, st, shadow_id)) < 0)
        goto done;
    *out = ro;
    ro = NULL;
done:
    tsl_rollout_free(ro);
    json_decref(state);
    tsl_buf_free(&key);
    return err;
}

int tsl_rollout_bind(tsl_plan **out, const tsl_rollout *ro, tsl_snapshot *snap)
{
    tsl_plan *plan = NULL, *sub = NULL;
    const char **names = NULL;
    int err;

    *out = NULL;
    TSL_ARG(ro && snap);
    if ((err = tsl_plan_new(&plan, snap, ro->base)) < 0)
        return err;
    for (size_t k = 0; k < ro->nstaged; k++) {
        size_t n = 0;
        free(names);
        if (!(names = calloc(ro->nsites[k] + 1, sizeof *names))) {
            err = tsl_oom();
            goto done;
        }
        /* sites no longer in the inventory keep nothing staged */
        for (size_t i = 0; i < ro->nsites[k]; i++)
            if (snap_find_site(snap, ro->sites[k][i]) >= 0)
                names[n++] = ro->sites[k][i];
        if (!n)
            continue;
        tsl_plan *staged = NULL;
        if ((err = tsl_plan_new(&sub, snap, ro->staged[k])) < 0 ||
            (err = tsl_plan_new_staged(&staged, plan, sub, names, n)) < 0)
            goto done;
        tsl_plan_free(sub);
        sub = NULL;
        tsl_plan_free(plan);
        plan = staged;
    }
    *out = plan;
    plan = NULL;
done:
    free(names);
    tsl_plan_free(sub);
    tsl_plan_free(plan);
    return err;
}

int tsl_rollout_bind_shadow(tsl_plan **out, const tsl_rollout *ro, tsl_snapshot *snap)
{
    *out = NULL;
    TSL_ARG(ro && snap);
    return ro->shadow ? tsl_plan_new(out, snap, ro->shadow) : 0;
}

const char *tsl_rollout_shadow_version(const tsl_rollout *ro)
{
    return ro && ro->shadow ? tsl_policy_version(ro->shadow) : NULL;
}

const char *tsl_rollout_key(const tsl_rollout *ro)
{
    return ro->state_key;
}

int tsl_rollout_changed(bool *out, const tsl_rollout *ro, tsl_store *st)
{
    tsl_buf key = TSL_BUF_INIT;
    char hash[HASHLEN];
    int64_t id;
    int err;

    TSL_ARG(out && ro && st);
    *out = false;
    if ((err = tsl_rollout_state_key(&key, st)) < 0 ||
        (err = rollout_shadow_get(&id, hash, sizeof hash, NULL, st)) < 0)
        goto done;
    *out = strcmp(key.ptr, ro->state_key) != 0 ||
           strcmp(hash, ro->shadow ? tsl_policy_version(ro->shadow) : "") != 0;
done:
    tsl_buf_free(&key);
    return err;
}

int tsl_rollout_plan(tsl_plan **out, tsl_store *st, tsl_snapshot *snap)
{
    tsl_rollout *ro = NULL;
    int err;
    *out = NULL;
    if ((err = tsl_rollout_load(&ro, st)) == 0)
        err = tsl_rollout_bind(out, ro, snap);
    tsl_rollout_free(ro);
    return err;
}
