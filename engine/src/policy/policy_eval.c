/*
 * policy_eval.c - one decision under a policy (policy_decide), pure C over
 * the bound sets of policy_bind.c; Lua runs only for `rule` functions.
 *
 *   1. the blocks that apply: the client's site block, its department's
 *      group;
 *   2. tier 0, the approved set: the site block's static set (or the site's
 *      candidates), intersected with the group's allow, minus both denies,
 *      minus unavailable servers; group order, then site order, then the
 *      rest ranked by the selection mode; full servers (at their cap) spill
 *      behind the non-full ones, keeping their relative order;
 *   3. the fallback in force (the stricter of site and group): "block"
 *      lists nothing more (empty -> blocked), "default" lists every
 *      available server as tier 1 when tier 0 is empty, a list adds one
 *      tier per named site (and "*"), each ranked and spilled the same way;
 *   4. rules, in file order (policy_rules.c); on a rule error the list as
 *      it stood before that rule, or the default logic (on_error);
 *   5. at most `max` entries into the result, with tier, after and reason.
 *
 * A site no block names, for a department no group names, gets the default
 * logic (decide_default) with the policy's selection, max and ttl.
 * Nothing allocates once the worker is warm.
 *
 * Steps 2 and 3, building the list, are policy_build.c's; here: the
 * worker's state, the steps around them, and the result.
 *
 * Used by: decide.c (policy_decide).  Needs: policy.h, policy_build.h,
 * decide.h, policy_rules.c (policy_run_rules).
 */
#include "decide.h"
#include "policy.h"
#include "policy_build.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char REASON_ONERR_DEFAULT[] =
    "a policy rule failed: the default logic decided this request";
static const char REASON_OVERRUN_DEFAULT[] =
    "a policy rule overran its time or instruction bound: the default logic decided this "
    "request";
static const char REASON_OVERRUN_APPROVED[] =
    "a policy rule overran its time or instruction bound: the list as it stood before that rule";

/* An overrun shows in every entry's reason (the trace has the details). */
static int mark_overrun(tsl_result *res, int err, const char *reason)
{
    for (uint32_t i = 0; err == 0 && i < res->n; i++)
        res->entries[i].reason = reason;
    return err;
}

/* ------------------------------------------------------------------------
 * Worker state
 * ---------------------------------------------------------------------- */

static void wstate_free(policy_wstate *ws)
{
    if (!ws)
        return;
    sandbox_free(ws->sb);
    tsl_policy_free(ws->loaded);
    free(ws->list);
    free(ws->saved);
    free(ws->mark);
    free(ws->tmark);
    free(ws);
}

void policy_worker_release(tsl_worker *w)
{
    wstate_free(w->policy_state);
    w->policy_state = NULL;
    w->policy_state_for = NULL;
}

int policy_wstate_get(policy_wstate **out, tsl_worker *w, uint32_t nservers)
{
    policy_wstate *ws = w->policy_state;
    uint32_t need = nservers + 8;

    *out = NULL;
    if (!ws) {
        if (!(ws = calloc(1, sizeof *ws)))
            return tsl_oom();
        w->policy_state = ws;
    }
    if (need > ws->cap) {
        pl_entry *l = realloc(ws->list, sizeof *l * need);
        if (!l)
            return tsl_oom();
        ws->list = l;
        pl_entry *s = realloc(ws->saved, sizeof *s * need);
        if (!s)
            return tsl_oom();
        ws->saved = s;
        ws->cap = need;
    }
    if (nservers > ws->mark_cap) {
        uint32_t *m = calloc(nservers, sizeof *m);
        uint32_t *t = calloc(nservers, sizeof *t);
        if (!m || !t) {
            free(m);
            free(t);
            return tsl_oom();
        }
        free(ws->mark);
        free(ws->tmark);
        ws->mark = m;
        ws->tmark = t;
        ws->mark_cap = nservers;
        ws->mark_gen = 0;
        ws->tmark_gen = 0;
    }
    if (++ws->mark_gen == 0) {
        memset(ws->mark, 0, sizeof *ws->mark * ws->mark_cap);
        ws->mark_gen = 1;
    }
    *out = ws;
    return 0;
}

bool policy_in_approved(const policy_wstate *ws, uint32_t server)
{
    return server < ws->mark_cap && ws->mark[server] == ws->mark_gen;
}

/* ------------------------------------------------------------------------
 * Results
 * ---------------------------------------------------------------------- */

static int emit(tsl_result *res, pol_eval *ev)
{
    policy_wstate *ws = ev->ws;
    uint32_t n = ws->n < (uint32_t)ev->max ? ws->n : (uint32_t)ev->max;
    int err = 0;

    for (uint32_t i = 0; i < n && err == 0; i++) {
        const pl_entry *e = &ws->list[i];
        if ((err = result_push(res, ev->ctx, e->server, e->tier, e->reason, e->after)) == 0) {
            res->entries[res->n - 1].full = e->full;
            if (e->tier > 0 && e->after > 0)
                res->entries[res->n - 1].usable_at = ev->usable_at;
        }
    }
    res->strict = ev->strict && n > 0;
    if (n == 0 && ev->fb_blocked) {
        res->blocked = true;
        res->blocked_reason = ev->blocked_reason ? ev->blocked_reason : "fallback is blocked";
    } else if (n == 0 && ev->only_bits) {
        res->blocked = true; /* an exclusive group never uses anything else */
        res->blocked_reason = ev->group_blk->r_only_empty;
    }
    if (ws->n > n)
        PTRACE(ev->tr, "max %d: %u entr%s cut", ev->max, ws->n - n,
               ws->n - n == 1 ? "y" : "ies");
    return err;
}

/* Loads the entries decide_default put in res into the working list. */
static void import_result(tsl_result *res, policy_wstate *ws)
{
    ws->n = 0;
    for (uint32_t i = 0; i < res->n; i++) {
        pl_entry *e = &ws->list[ws->n++];
        e->server = res->servers[i];
        e->tier = res->entries[i].tier;
        e->after = res->entries[i].after;
        e->reason = res->entries[i].reason;
        e->full = res->entries[i].full;
    }
    res->n = 0;
}

/* on_error = "default": the default logic, kept inside the approved set
 * when fallback is blocked. */
static int decide_on_error_default(tsl_result *res, tsl_worker *w, pol_eval *ev)
{
    int err;
    res->n = 0;
    res->strict = false;
    if ((err = decide_default(res, w, ev->ctx, ev->tr)) < 0)
        return err;
    for (uint32_t i = 0; i < res->n; i++)
        res->entries[i].reason = REASON_ONERR_DEFAULT;
    if (!ev->fb_blocked)
        return 0;
    uint32_t k = 0;
    for (uint32_t i = 0; i < res->n; i++) {
        if (!policy_in_approved(ev->ws, res->servers[i]))
            continue;
        res->entries[k] = res->entries[i];
        res->entries[k].tier = 0;
        res->servers[k++] = res->servers[i];
    }
    PTRACE(ev->tr, "fallback is blocked: kept %u of %u default entries (the approved set)",
           k, res->n);
    res->n = k;
    if (k == 0) {
        res->blocked = true;
        res->blocked_reason = ev->blocked_reason ? ev->blocked_reason : "fallback is blocked";
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * policy_decide
 * ---------------------------------------------------------------------- */

int policy_decide(tsl_result *res, tsl_worker *w, const tsl_plan *plan, struct decide_ctx *ctx,
                  tsl_trace *tr)
{
    const policy_bound *pb = plan->bound;
    const tsl_policy *pol = pb->pol;
    const tsl_snapshot *snap = plan->snap;
    policy_wstate *ws;
    pol_eval ev;
    build b;
    int err;

    if ((err = policy_wstate_get(&ws, w, snap->nservers)) < 0)
        return err;
    memset(&ev, 0, sizeof ev);
    ev.w = w;
    ev.ws = ws;
    ev.pb = pb;
    ev.ctx = ctx;
    ev.tr = tr;
    ev.site_blk = ctx->site != TSL_NO_SITE ? pb->site_blk[ctx->site] : pb->unassigned;
    if (!ev.site_blk && pb->dflt_on)
        ev.site_blk = &pb->dflt; /* defaults reach sites no block names, and no site */
    ev.group_blk = policy_find_group(pb, ctx->department);
    if (ev.group_blk && ev.group_blk->pb->exclusive && ev.group_blk->pb->has_allow)
        ev.only_bits = ev.group_blk->allow_bits;
    ws->n = 0;

    const pol_block *sp = ev.site_blk ? ev.site_blk->pb : NULL;
    ctx->selection = sp && sp->selection >= 0 ? (tsl_selection)sp->selection : pb->selection;
    ctx->max = sp && sp->max > 0 ? sp->max : pb->max;
    ctx->ttl = sp && sp->ttl >= 0 ? sp->ttl : pb->ttl;
    ev.max = ctx->max;
    res->ttl = ctx->ttl;
    PTRACE(tr, "policy %s (%s): selection %s, max %d, ttl %d s", pol->version, pol->name,
           tsl_selection_name(ctx->selection), ctx->max, ctx->ttl);

    if (!ev.site_blk && !ev.group_blk) {
        PTRACE(tr, "no site block and no group block applies: the default logic decides");
        if ((err = decide_default(res, w, ctx, tr)) < 0 || pol->nrules == 0)
            return err;
        /* rules still run: the approved set is the site's available candidates */
        if (ctx->site != TSL_NO_SITE) {
            const snap_site *ss = &snap->sites[ctx->site];
            for (uint32_t i = 0; i < ss->ncand; i++)
                if (decide_available(ctx, ss->cand[i]))
                    ws->mark[ss->cand[i]] = ws->mark_gen;
        }
        import_result(res, ws);
        ev.fb = POL_FB_DEFAULT;
    } else {
        memset(&b, 0, sizeof b);
        b.ev = &ev;
        b.w = w;
        b.ws = ws;
        b.ctx = ctx;
        b.snap = snap;
        b.pb = pb;
        b.max = (uint32_t)ctx->max;
        b.cand = decide_scratch(w, 2, snap->nservers);
        b.ranked = decide_scratch(w, 3, 2 * snap->nservers + 1);
        if (!b.cand || !b.ranked)
            return tsl_oom();

        const bound_block *B = ev.site_blk, *G = ev.group_blk;
        /* the stricter fallback wins: block > list > default; the group's on a tie */
        const bound_block *winner = B;
        ev.fb = B ? B->fb : POL_FB_DEFAULT;
        if (G && G->fb != POL_FB_UNSET && G->fb >= ev.fb) {
            winner = G;
            ev.fb = G->fb;
        }
        ev.after = winner ? winner->after : pol->defaults.after > 0 ? pol->defaults.after : 0;
        if (!winner && G)
            winner = G; /* group without a fallback of its own: default, its reasons */

        if ((err = policy_build_tier0(&b)) < 0)
            return err;
        /* A delay holds whoever notices the outage: when the broker already
         * knows every approved server is down, the fallback is usable only
         * `after` seconds after the last of them went, not at once. */
        if (ws->n == 0 && ev.ndown > 0 && ev.outage_since > 0 && ev.after > 0) {
            ev.usable_at = ev.outage_since + ev.after;
            PTRACE(tr, "every approved server is down, the last since %lld: fallback usable "
                       "from %lld (%lld s from now)",
                   (long long)ev.outage_since, (long long)ev.usable_at,
                   (long long)(ev.usable_at > ctx->now ? ev.usable_at - ctx->now : 0));
        }
        if ((err = policy_build_fallback(&b, winner)) < 0)
            return err;
    }

    if (pol->nrules > 0) {
        char msg[512];
        int failed = policy_run_rules(&ev, msg, sizeof msg);
        if (failed > 0) {
            const pol_rule *r = &pol->rules[failed - 1];
            w->policy_errors++;
            snprintf(w->last_policy_error, sizeof w->last_policy_error,
                     "policy %s: rule \"%s\" (%s:%d) failed: %.300s", pol->version, r->name,
                     pol->name, r->line, msg);
            PTRACE(tr, "rule \"%s\" failed: %s", r->name, msg);
            if (pol->on_error == POL_ONERR_DEFAULT) {
                PTRACE(tr, "on_error \"default\": the default logic decides this request");
                err = decide_on_error_default(res, w, &ev);
                return ev.overrun ? mark_overrun(res, err, REASON_OVERRUN_DEFAULT) : err;
            }
            PTRACE(tr, "on_error \"approved\": the list as it stood before rule \"%s\"",
                   r->name);
            if (ev.overrun)
                return mark_overrun(res, emit(res, &ev), REASON_OVERRUN_APPROVED);
        }
    }
    return emit(res, &ev);
}

