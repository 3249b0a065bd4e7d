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
 */
#include "decide.h"
#include "policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char REASON_GENERIC_DEFAULT[] =
    "no approved server available; fallback \"default\": any available server";
static const char REASON_NO_SITE_BLOCKED[] =
    "the client has no site and defaults block fallback: nothing is approved for it "
    "(an unassigned block can give it servers)";
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
 * Building the list
 * ---------------------------------------------------------------------- */

typedef struct build {
    pol_eval *ev;
    tsl_worker *w;
    policy_wstate *ws;
    decide_ctx *ctx;
    const tsl_snapshot *snap;
    const policy_bound *pb;
    uint32_t *cand;     /* scratch 2 */
    uint32_t *ranked;   /* scratch 3: ranking input, then output after it */
    uint32_t max;
} build;

/* Never listed for this request: denied by its site or group, reserved by
 * an exclusive group it is not in, or outside its own exclusive group. */
bool policy_denied(const pol_eval *ev, uint32_t s)
{
    if ((ev->site_blk && pol_bit(ev->site_blk->deny_bits, s)) ||
        (ev->group_blk && pol_bit(ev->group_blk->deny_bits, s)))
        return true;
    if (ev->only_bits)
        return !pol_bit(ev->only_bits, s);
    return pol_bit(ev->pb->reserved_bits, s);
}

/* Moves the servers of `site` to the front of v[0..n); returns how many. */
static uint32_t own_first(const tsl_snapshot *snap, uint32_t *v, uint32_t n, int32_t site)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < n; i++)
        if (policy_server_at_site(snap, v[i], site)) {
            uint32_t t = v[k];
            v[k++] = v[i];
            v[i] = t;
        }
    return k;
}

static bool is_full(const build *b, uint32_t s)
{
    const snap_server *sv = &b->snap->servers[s];
    return sv->connections >= policy_cap(b->pb, b->ev->site_blk, sv);
}

static void push(build *b, uint32_t s, int tier, int after, const char *reason, bool full)
{
    pl_entry *e = &b->ws->list[b->ws->n++];
    e->server = s;
    e->tier = tier;
    e->after = after;
    e->reason = reason;
    e->full = full;
}

static void trace_dropped(build *b, uint32_t s, const char *why)
{
    PTRACE(b->ev->tr, "  %s dropped: %s", b->snap->servers[s].name, why);
}

/* One tier from candidates cand[0..nc) (available, allowed, not yet
 * listed): order members first (those among the candidates; order1, then
 * order2), then the rest ranked; full entries behind the non-full ones,
 * in the same order.  Stops when the list holds `max` entries.  Marks
 * everything it lists as seen.  Clobbers cand. */
static int add_tier(build *b, uint32_t nc, const uint32_t *order1, uint32_t norder1,
                    const char *const *r1, const char *const *r1full, const uint32_t *order2,
                    uint32_t norder2, const char *const *r2, const char *const *r2full, int tier,
                    int after, const char *reason, const char *reason_full, int32_t own)
{
    policy_wstate *ws = b->ws;
    tsl_worker *w = b->w;
    tsl_trace *tr = b->ev->tr;
    uint32_t *tm = ws->tmark;
    char key[128];

    /* candidates of this tier get `gen`, order members among them gen + 1 */
    if (ws->tmark_gen >= UINT32_MAX - 2) {
        memset(tm, 0, sizeof *tm * ws->mark_cap);
        ws->tmark_gen = 0;
    }
    uint32_t gen = ws->tmark_gen += 2;
    for (uint32_t k = 0; k < nc; k++)
        tm[b->cand[k]] = gen;
    for (uint32_t i = 0; i < norder1; i++)
        if (tm[order1[i]] == gen)
            tm[order1[i]] = gen + 1;
    for (uint32_t i = 0; i < norder2; i++)
        if (tm[order2[i]] == gen)
            tm[order2[i]] = gen + 1;

    /* the rest, split once: non-full compacted in cand, full into ranked */
    uint32_t nn = 0, nf = 0;
    for (uint32_t k = 0; k < nc; k++) {
        uint32_t s = b->cand[k];
        if (tm[s] != gen || decide_seen_has(w, s))
            continue; /* an order member, or listed already */
        if (is_full(b, s))
            b->ranked[nf++] = s;
        else
            b->cand[nn++] = s;
    }

    for (int full = 0; full < 2; full++) {
        /* order members (non-full on the first round, full on the second) */
        for (int pass = 0; pass < 2; pass++) {
            const uint32_t *ord = pass ? order2 : order1;
            uint32_t nord = pass ? norder2 : norder1;
            const char *const *rr = full ? (pass ? r2full : r1full) : (pass ? r2 : r1);
            for (uint32_t i = 0; i < nord && ws->n < b->max; i++) {
                uint32_t s = ord[i];
                if (tm[s] != gen + 1) {
                    if (tr && !full && !decide_seen_has(w, s))
                        PTRACE(tr, "  order #%u %s: not an available approved server, "
                                   "skipped",
                               i + 1, b->snap->servers[s].name);
                    continue;
                }
                if (decide_seen_has(w, s) || is_full(b, s) != (bool)full)
                    continue;
                decide_seen_add(w, s);
                push(b, s, tier, after, rr[i], full);
                b->ev->strict = true; /* an order is in the list: try it in order */
                PTRACE(tr, "  tier %d #%u %s: order #%u%s", tier, ws->n,
                       b->snap->servers[s].name, i + 1,
                       full ? " (at its registration cap, spilled)" : "");
            }
        }
        /* the rest of this round, ranked */
        if (ws->n >= b->max)
            break;
        uint32_t *in = full ? b->ranked : b->cand;
        uint32_t nin = full ? nf : nn;
        uint32_t *out = b->ranked + nf;
        /* a group's tier 0: the servers of the client's own site rank first */
        uint32_t nown = own != TSL_NO_SITE ? own_first(b->snap, in, nin, own) : nin;
        uint32_t got = decide_rank(w, b->ctx, b->ctx->selection, in, nown, out, b->max - ws->n);
        if (got == 0 && nown > 0)
            return tsl_oom();
        if (nown < nin && ws->n + got < b->max) {
            uint32_t more = decide_rank(w, b->ctx, b->ctx->selection, in + nown, nin - nown,
                                        out + got, b->max - ws->n - got);
            if (more == 0)
                return tsl_oom();
            got += more;
        }
        for (uint32_t i = 0; i < got; i++) {
            uint32_t s = out[i];
            decide_seen_add(w, s);
            push(b, s, tier, after, full ? reason_full : reason, full);
            if (tr) {
                decide_rank_key_text(b->ctx, b->ctx->selection, s, key, sizeof key);
                PTRACE(tr, "  tier %d #%u %s: %s%s", tier, ws->n, b->snap->servers[s].name,
                       key, full ? " (at its registration cap, spilled)" : "");
            }
        }
    }
    return 0;
}

/* Keeps sv in tier 0's candidates when the group allows it, nothing denies
 * it and it is available. */
static void tier0_consider(build *b, uint32_t sv, uint32_t *nc)
{
    pol_eval *ev = b->ev;
    const bound_block *G = ev->group_blk;
    char why[128];

    if (G && G->allow_bits && !pol_bit(G->allow_bits, sv)) {
        if (ev->tr)
            trace_dropped(b, sv, "outside the group's allow");
        return;
    }
    if (policy_denied(ev, sv)) {
        if (ev->tr)
            trace_dropped(b, sv, pol_bit(ev->pb->reserved_bits, sv) && !ev->only_bits
                                     ? "reserved for an exclusive group"
                                     : "denied");
        return;
    }
    if (!decide_available(b->ctx, sv)) {
        if (ev->tr)
            trace_dropped(b, sv, decide_unavailable_why(b->ctx, sv, why, sizeof why));
        int64_t since = decide_down_since(b->ctx, sv);
        if (since > ev->outage_since)
            ev->outage_since = since;
        ev->ndown++;
        return;
    }
    b->ws->mark[sv] = b->ws->mark_gen;
    b->cand[(*nc)++] = sv;
}

/* Tier 0: the approved set of this request.  A site's block gives its
 * static set, the defaults block the site's candidates; a group with
 * `allow` takes the servers it allows from the site's set and the site's
 * own candidates (so a site `order` never hides a department's servers),
 * the site's own first. */
static int build_tier0(build *b)
{
    pol_eval *ev = b->ev;
    const bound_block *B = ev->site_blk, *G = ev->group_blk;
    const tsl_snapshot *s = b->snap;
    int32_t site = b->ctx->site;
    const uint32_t *src = NULL, *cand = NULL;
    uint32_t nsrc = 0, ncand = 0, nc = 0;
    bool group_allow = G && G->pb->has_allow;

    if (B && !B->dynamic) {
        src = B->approved;
        nsrc = B->napproved;
        PTRACE(ev->tr, "%s (line %d): static approved set of %u server(s)%s", B->label,
               B->pb->line, nsrc,
               B->pb->has_allow ? " from allow" : B->pb->has_order ? " from order"
                                                                   : " from its candidates");
    } else if (site != TSL_NO_SITE) {
        src = s->sites[site].cand;
        nsrc = s->sites[site].ncand;
        PTRACE(ev->tr, "site \"%s\": no site block%s; approved set = its %u candidate(s)",
               s->sites[site].name, B ? " (defaults apply)" : "", nsrc);
    } else if (group_allow) {
        src = G->approved;
        nsrc = G->napproved;
        PTRACE(ev->tr, "no site: approved set = %s allow, %u server(s)", G->label, nsrc);
    } else {
        PTRACE(ev->tr, "no site%s: the approved set is empty",
               B ? ", no unassigned block and no group allow" : " and no group allow");
    }
    /* the group also takes the site's own candidates it allows */
    if (group_allow && site != TSL_NO_SITE && src != s->sites[site].cand) {
        cand = s->sites[site].cand;
        ncand = s->sites[site].ncand;
    }
    if (G)
        PTRACE(ev->tr, "%s (line %d) applies to department \"%s\"%s", G->label, G->pb->line,
               b->ctx->department,
               group_allow ? ": the servers it allows, from the site's set and its own "
                             "candidates"
                           : "");

    for (uint32_t i = 0; i < nsrc; i++)
        tier0_consider(b, src[i], &nc);
    for (uint32_t i = 0; i < ncand; i++)
        if (!pol_bit(B->approved_bits, cand[i]))
            tier0_consider(b, cand[i], &nc);
    PTRACE(ev->tr, "tier 0: %u available approved server(s)", nc);

    static const char *const no_reasons[1] = {NULL};
    const char *r = G ? G->r_approved : B ? B->r_approved : REASON_GENERIC_DEFAULT;
    const char *rf = G ? G->r_approved_full : B ? B->r_approved_full : REASON_GENERIC_DEFAULT;
    return add_tier(b, nc, G ? G->order : NULL, G ? G->norder : 0,
                    G ? G->r_order : no_reasons, G ? G->r_order_full : no_reasons,
                    B ? B->order : NULL, B ? B->norder : 0, B ? B->r_order : no_reasons,
                    B ? B->r_order_full : no_reasons, 0, 0, r, rf,
                    group_allow ? site : TSL_NO_SITE);
}

/* Every available server not yet listed and not denied into cand. */
static uint32_t collect_all(build *b)
{
    uint32_t nc = 0;
    for (uint32_t s = 0; s < b->snap->nservers; s++)
        if (!decide_seen_has(b->w, s) && !policy_denied(b->ev, s) && decide_available(b->ctx, s))
            b->cand[nc++] = s;
    return nc;
}

/* The part of collect_all() that can reach a list with `room` entries
 * left, into cand: walks every server in ranking-key order (bound once per
 * plan) and stops, at a change of key, once it has met `room` available,
 * unlisted, undenied servers that are neither full nor recently failed;
 * everything met before (full and failed ones included) is kept.  Any
 * server left unmet ranks behind all of those, so add_tier() over this
 * subset lists exactly what it would over collect_all(): a tier over the
 * whole estate costs about `room` servers, not every server ranked. */
static uint32_t collect_best(build *b)
{
    const tsl_snapshot *snap = b->snap;
    tsl_selection sel = b->ctx->selection;
    const uint32_t *ord = b->pb->by_key[(unsigned)sel < 3 ? sel : 0];
    uint32_t room = b->max > b->ws->n ? b->max - b->ws->n : 0;
    uint32_t nc = 0, good = 0;
    double last = 0;

    if (room == 0)
        return 0;
    for (uint32_t i = 0; i < snap->nservers; i++) {
        uint32_t s = ord[i];
        if (good >= room && decide_rank_key(snap, sel, s) != last)
            break;
        if (decide_seen_has(b->w, s) || policy_denied(b->ev, s) || !decide_available(b->ctx, s))
            continue;
        b->cand[nc++] = s;
        if (!is_full(b, s) && !decide_recent_error(b->ctx, s) && good < room) {
            good++;
            last = decide_rank_key(snap, sel, s);
        }
    }
    return nc;
}

static int build_fallback(build *b, const bound_block *winner)
{
    pol_eval *ev = b->ev;
    policy_wstate *ws = b->ws;
    static const char *const no_reasons[1] = {NULL};
    int err = 0;

    switch (ev->fb) {
    case POL_FB_BLOCK:
        ev->fb_blocked = true;
        PTRACE(ev->tr, "fallback \"block\" (%s): nothing outside the approved set",
               winner ? winner->label : "policy");
        if (ws->n == 0) {
            ev->blocked_reason = !winner ? "fallback is blocked"
                                 : winner->dynamic && b->ctx->site == TSL_NO_SITE
                                     ? REASON_NO_SITE_BLOCKED
                                     : winner->r_blocked;
            PTRACE(ev->tr, "no approved server is available: the list is empty (blocked)");
        }
        return 0;
    case POL_FB_DEFAULT:
    case POL_FB_UNSET:
        if (ws->n > 0) {
            PTRACE(ev->tr, "fallback \"default\": the approved set has available servers, "
                           "so no tier 1");
            return 0;
        }
        PTRACE(ev->tr, "fallback \"default\": no approved server is available; tier 1 is "
                       "every available server%s",
               ev->after ? " (delayed)" : "");
        return add_tier(b, ev->tr ? collect_all(b) : collect_best(b), NULL, 0, no_reasons,
                        no_reasons, NULL, 0,
                        no_reasons, no_reasons, 1, ev->after,
                        winner ? winner->r_default : REASON_GENERIC_DEFAULT,
                        winner ? winner->r_default_full : REASON_GENERIC_DEFAULT, TSL_NO_SITE);
    case POL_FB_LIST:
        break;
    }

    PTRACE(ev->tr, "fallback list of %s: %u tier(s)%s", winner->label, winner->nfb,
           ev->after ? ", delayed" : "");
    for (uint32_t i = 0; i < winner->nfb && ws->n < b->max && err == 0; i++) {
        const bound_fb *f = &winner->fbv[i];
        uint32_t nc = 0;
        if (f->site == TSL_NO_SITE) {
            nc = ev->tr ? collect_all(b) : collect_best(b); /* explain counts them all */
            PTRACE(ev->tr, "fallback tier %d: \"*\", %u other available server(s)", f->tier,
                   nc);
            err = add_tier(b, nc, NULL, 0, no_reasons, no_reasons, NULL, 0, no_reasons,
                           no_reasons, f->tier, ev->after, f->reason, f->reason_full,
                           TSL_NO_SITE);
            continue;
        }
        const uint32_t *src = f->blk ? f->blk->approved : b->snap->sites[f->site].cand;
        uint32_t nsrc = f->blk ? f->blk->napproved : b->snap->sites[f->site].ncand;
        for (uint32_t k = 0; k < nsrc; k++) {
            uint32_t s = src[k];
            if (!decide_seen_has(b->w, s) && !policy_denied(ev, s) && decide_available(b->ctx, s))
                b->cand[nc++] = s;
        }
        PTRACE(ev->tr, "fallback tier %d: site \"%s\" (%s), %u available server(s)",
               f->tier, b->snap->sites[f->site].name,
               f->blk ? "its approved set" : "its candidates", nc);
        err = add_tier(b, nc, f->blk ? f->blk->order : NULL, f->blk ? f->blk->norder : 0,
                       f->blk ? f->blk->r_order : no_reasons,
                       f->blk ? f->blk->r_order_full : no_reasons, NULL, 0, no_reasons,
                       no_reasons, f->tier, ev->after, f->reason, f->reason_full, TSL_NO_SITE);
    }
    return err;
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

        if ((err = build_tier0(&b)) < 0)
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
        if ((err = build_fallback(&b, winner)) < 0)
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
