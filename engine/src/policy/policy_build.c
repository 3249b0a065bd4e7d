/*
 * policy_build.c - building a request's list under a policy (steps 2 and 3
 * of policy_eval.c): tier 0, the approved set, from the site and group
 * blocks, then the fallback in force, each tier ranked by the selection
 * mode with full servers spilled behind the others.  Pure C over the
 * bound sets; nothing allocates.
 *
 * Used by: policy_eval.c (policy_build_tier0, policy_build_fallback).
 * Needs: policy_build.h, policy.h, decide.h.
 */
#include "decide.h"
#include "policy.h"
#include "policy_build.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char REASON_GENERIC_DEFAULT[] =
    "no approved server available; fallback \"default\": any available server";
static const char REASON_NO_SITE_BLOCKED[] =
    "the client has no site and defaults block fallback: nothing is approved for it "
    "(an unassigned block can give it servers)";

/* ------------------------------------------------------------------------
 * Building the list
 * ---------------------------------------------------------------------- */

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
int policy_build_tier0(build *b)
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

int policy_build_fallback(build *b, const bound_block *winner)
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

