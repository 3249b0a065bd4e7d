/*
 * policy_bind.c - a compiled policy resolved against one snapshot.
 *
 * Done once per plan (tsl_plan_new), so that a decision never looks up a
 * name or matches a glob: every site block becomes its static approved set
 * (allow, else order, else the site's candidates; minus deny) as an index
 * array and a bitmap, its order as indices, its fallback as resolved
 * sites; every group its allow/deny bitmaps and order.  Every reason text
 * a decision can give is written here too, so results borrow them from the
 * plan.  Names that match nothing are skipped (tsl check reports them).
 *
 * Used by: plan.c (policy_bind/policy_unbind), policy_eval.c.
 */
#include "decide.h"
#include "policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int32_t policy_find_site(const tsl_snapshot *snap, const char *name)
{
    int32_t i = snap_find_site(snap, name);
    if (i >= 0)
        return i;
    for (uint32_t k = 0; k < snap->nsites; k++)
        if (strcasecmp(snap->sites[k].name, name) == 0)
            return (int32_t)k;
    return -1;
}

int32_t policy_find_server(const tsl_snapshot *snap, const char *name)
{
    int32_t i = snap_find_server(snap, name);
    if (i >= 0)
        return i;
    for (uint32_t k = 0; k < snap->nservers; k++)
        if (strcasecmp(snap->servers[k].name, name) == 0)
            return (int32_t)k;
    return -1;
}

bool policy_server_at_site(const tsl_snapshot *snap, uint32_t server, int32_t site)
{
    const snap_server *sv = &snap->servers[server];
    if (sv->home == site)
        return true;
    for (uint32_t i = 0; i < sv->nsites; i++)
        if (sv->sites[i] == site)
            return true;
    return false;
}

const bound_block *policy_find_group(const policy_bound *pb, const char *dept)
{
    if (!dept)
        return NULL;
    for (uint32_t i = 0; i < pb->ngroups; i++)
        if (strcasecmp(pb->groups[i].pb->name, dept) == 0)
            return &pb->groups[i];
    return NULL;
}

int64_t policy_cap(const policy_bound *pb, const bound_block *site_blk, const snap_server *sv)
{
    if (site_blk && site_blk->pb->cap > 0)
        return site_blk->pb->cap;
    if (pb->cap > 0)
        return pb->cap;
    return sv->capacity > 0 ? sv->capacity : POL_DEFAULT_CAP;
}

/* ------------------------------------------------------------------------
 * Sets
 * ---------------------------------------------------------------------- */

typedef struct bind_ctx {
    policy_bound *pb;
    const tsl_snapshot *snap;
    const tsl_policy *pol;
    uint32_t *tmp;          /* nservers scratch */
} bind_ctx;

static uint8_t *new_bits(bind_ctx *b)
{
    return arena_alloc(&b->pb->arena, (b->snap->nservers + 7) / 8 + 1);
}

static void set_bit(uint8_t *bits, uint32_t i)
{
    bits[i >> 3] |= (uint8_t)(1u << (i & 7));
}

static bool matches_any(const pol_strv *pats, const char *name)
{
    for (uint32_t i = 0; i < pats->n; i++)
        if (policy_glob_match(pats->v[i], name))
            return true;
    return false;
}

/* Bits of every server matching one of `pats`; *out NULL when none match. */
static int match_bits(bind_ctx *b, const pol_strv *pats, uint8_t **out)
{
    uint8_t *bits = NULL;
    *out = NULL;
    for (uint32_t s = 0; s < b->snap->nservers; s++) {
        if (!matches_any(pats, b->snap->servers[s].name))
            continue;
        if (!bits && !(bits = new_bits(b)))
            return tsl_oom();
        set_bit(bits, s);
    }
    *out = bits;
    return 0;
}

/* Copies tmp[0..n) into the block's approved array and bitmap. */
static int set_approved(bind_ctx *b, bound_block *blk, uint32_t n)
{
    blk->approved = arena_alloc(&b->pb->arena, sizeof *blk->approved * (n ? n : 1));
    blk->approved_bits = new_bits(b);
    if (!blk->approved || !blk->approved_bits)
        return tsl_oom();
    memcpy(blk->approved, b->tmp, sizeof *blk->approved * n);
    blk->napproved = n;
    for (uint32_t i = 0; i < n; i++)
        set_bit(blk->approved_bits, blk->approved[i]);
    return 0;
}

/* order names -> indices: existing, not denied, in allow when allow is given, once. */
static int resolve_order(bind_ctx *b, bound_block *blk, const uint8_t *allow_bits)
{
    const pol_block *p = blk->pb;
    blk->order = arena_alloc(&b->pb->arena, sizeof *blk->order * (p->order.n ? p->order.n : 1));
    if (!blk->order)
        return tsl_oom();
    for (uint32_t i = 0; i < p->order.n; i++) {
        int32_t s = policy_find_server(b->snap, p->order.v[i]);
        if (s < 0 || pol_bit(blk->deny_bits, (uint32_t)s))
            continue;
        if (p->has_allow && !pol_bit(allow_bits, (uint32_t)s))
            continue;
        bool dup = false;
        for (uint32_t k = 0; k < blk->norder; k++)
            dup |= blk->order[k] == (uint32_t)s;
        if (!dup)
            blk->order[blk->norder++] = (uint32_t)s;
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Reasons
 * ---------------------------------------------------------------------- */

#define FULL_NOTE "; at its registration cap, spilled behind the non-full entries of its tier"

static int block_reasons(bind_ctx *b, bound_block *blk, tsl_selection sel)
{
    pol_arena *a = &b->pb->arena;
    const char *lab = blk->label;
    const char *seln = tsl_selection_name(sel);

    blk->r_order = arena_alloc(a, sizeof *blk->r_order * (blk->norder ? blk->norder : 1));
    blk->r_order_full = arena_alloc(a, sizeof *blk->r_order * (blk->norder ? blk->norder : 1));
    if (!blk->r_order || !blk->r_order_full)
        return tsl_oom();
    for (uint32_t i = 0; i < blk->norder; i++) {
        blk->r_order[i] = arena_printf(a, "%s order #%u", lab, i + 1);
        blk->r_order_full[i] = arena_printf(a, "%s order #%u" FULL_NOTE, lab, i + 1);
        if (!blk->r_order[i] || !blk->r_order_full[i])
            return tsl_oom();
    }
    blk->r_approved = arena_printf(a, "%s approved set, ranked by %s", lab, seln);
    blk->r_approved_full = arena_printf(a, "%s approved set, ranked by %s" FULL_NOTE, lab, seln);
    blk->r_default = arena_printf(a, "%s: no approved server available; fallback \"default\": "
                                     "any available server, ranked by %s",
                                  lab, seln);
    blk->r_default_full = arena_printf(a, "%s: no approved server available; fallback "
                                          "\"default\": any available server" FULL_NOTE,
                                       lab);
    blk->r_blocked = arena_printf(a, "%s blocks fallback and no approved server is available",
                                  lab);
    if (!blk->r_approved || !blk->r_approved_full || !blk->r_default || !blk->r_default_full ||
        !blk->r_blocked)
        return tsl_oom();
    return 0;
}

/* ------------------------------------------------------------------------
 * Blocks
 * ---------------------------------------------------------------------- */

static tsl_selection block_selection(const policy_bound *pb, const pol_block *p)
{
    return p && p->selection >= 0 ? (tsl_selection)p->selection : pb->selection;
}

static int bind_site(bind_ctx *b, bound_block *blk, const pol_block *p, int32_t site)
{
    const tsl_snapshot *s = b->snap;
    uint8_t *allow_bits = NULL;
    uint32_t n = 0;
    int err;

    blk->pb = p;
    blk->site = site;
    blk->label = site == TSL_NO_SITE
                     ? "unassigned"
                     : arena_printf(&b->pb->arena, "site \"%s\"", s->sites[site].name);
    if (!blk->label)
        return tsl_oom();
    if (p->has_deny && (err = match_bits(b, &p->deny, &blk->deny_bits)) < 0)
        return err;
    if (p->has_allow && (err = match_bits(b, &p->allow, &allow_bits)) < 0)
        return err;
    if ((err = resolve_order(b, blk, allow_bits)) < 0)
        return err;

    if (p->has_allow) {
        for (uint32_t i = 0; i < s->nservers; i++)
            if (pol_bit(allow_bits, i) && !pol_bit(blk->deny_bits, i))
                b->tmp[n++] = i;
    } else if (p->has_order) {
        for (uint32_t i = 0; i < blk->norder; i++)
            b->tmp[n++] = blk->order[i];
        /* ascending, like the other sources */
        for (uint32_t i = 1; i < n; i++)
            for (uint32_t k = i; k > 0 && b->tmp[k - 1] > b->tmp[k]; k--) {
                uint32_t t = b->tmp[k];
                b->tmp[k] = b->tmp[k - 1];
                b->tmp[k - 1] = t;
            }
    } else if (site != TSL_NO_SITE) {
        const snap_site *ss = &s->sites[site];
        for (uint32_t i = 0; i < ss->ncand; i++)
            if (!pol_bit(blk->deny_bits, ss->cand[i]))
                b->tmp[n++] = ss->cand[i];
    }
    if ((err = set_approved(b, blk, n)) < 0)
        return err;
    return block_reasons(b, blk, block_selection(b->pb, p));
}

static int bind_group(bind_ctx *b, bound_block *blk, const pol_block *p)
{
    uint32_t n = 0;
    int err;

    blk->pb = p;
    blk->site = TSL_NO_SITE;
    if (!(blk->label = arena_printf(&b->pb->arena, "group \"%s\"", p->name)))
        return tsl_oom();
    if (p->has_deny && (err = match_bits(b, &p->deny, &blk->deny_bits)) < 0)
        return err;
    if (p->has_allow) {
        if ((err = match_bits(b, &p->allow, &blk->allow_bits)) < 0)
            return err;
        if (!blk->allow_bits && !(blk->allow_bits = new_bits(b))) /* matches nothing */
            return tsl_oom();
    }
    if ((err = resolve_order(b, blk, blk->allow_bits)) < 0)
        return err;
    if (p->exclusive && p->has_allow) {
        if (!b->pb->reserved_bits && !(b->pb->reserved_bits = new_bits(b)))
            return tsl_oom();
        for (uint32_t i = 0; i < b->snap->nservers; i++)
            if (pol_bit(blk->allow_bits, i))
                set_bit(b->pb->reserved_bits, i);
        blk->r_only_empty = arena_printf(&b->pb->arena,
                                         "%s uses only its own servers (exclusive) and none "
                                         "of them is available here or in the fallback",
                                         blk->label);
        if (!blk->r_only_empty)
            return tsl_oom();
    }
    /* a client with no site: the group's allow alone is its approved set */
    if (p->has_allow)
        for (uint32_t i = 0; i < b->snap->nservers; i++)
            if (pol_bit(blk->allow_bits, i) && !pol_bit(blk->deny_bits, i))
                b->tmp[n++] = i;
    if ((err = set_approved(b, blk, n)) < 0)
        return err;
    return block_reasons(b, blk, b->pb->selection);
}

static bound_block *site_block_of(policy_bound *pb, int32_t site)
{
    return site >= 0 ? pb->site_blk[site] : NULL;
}

/* Fallback of a block: its own, else (site blocks) the defaults', else
 * "default" (groups: unset, no opinion). */
static int bind_fallback(bind_ctx *b, bound_block *blk)
{
    const pol_block *p = blk->pb;
    const pol_block *d = &b->pol->defaults;
    const pol_fallback *fb = &p->fallback;
    pol_arena *a = &b->pb->arena;

    bool sitelike = p->kind != POL_GROUP; /* site, unassigned, defaults */
    if (fb->kind == POL_FB_UNSET && sitelike && d->fallback.kind != POL_FB_UNSET)
        fb = &d->fallback;
    blk->fb = fb->kind;
    if (blk->fb == POL_FB_UNSET && sitelike)
        blk->fb = POL_FB_DEFAULT;
    blk->after = fb->after >= 0 ? fb->after : p->after >= 0 ? p->after : d->after >= 0 ? d->after : 0;
    if (blk->fb != POL_FB_LIST)
        return 0;

    blk->fbv = arena_alloc(a, sizeof *blk->fbv * (fb->sites.n ? fb->sites.n : 1));
    if (!blk->fbv)
        return tsl_oom();
    for (uint32_t i = 0; i < fb->sites.n; i++) {
        const char *name = fb->sites.v[i];
        bound_fb *f = &blk->fbv[blk->nfb];
        char after[48] = "";
        if (blk->after > 0)
            snprintf(after, sizeof after, ", usable after %d s", blk->after);
        f->tier = (int)i + 1;
        if (strcmp(name, "*") == 0) {
            f->site = TSL_NO_SITE;
            f->reason = arena_printf(a, "%s fallback tier %u: any other available server "
                                        "(\"*\")%s",
                                     blk->label, i + 1, after);
            f->reason_full = arena_printf(a, "%s fallback tier %u: any other available server "
                                             "(\"*\")%s" FULL_NOTE,
                                          blk->label, i + 1, after);
        } else {
            int32_t si = policy_find_site(b->snap, name);
            if (si < 0 || si == blk->site)
                continue; /* unknown site: tsl check reports it */
            f->site = si;
            f->blk = site_block_of(b->pb, si);
            f->reason = arena_printf(a, "%s fallback tier %u: site \"%s\"%s", blk->label, i + 1,
                                     b->snap->sites[si].name, after);
            f->reason_full = arena_printf(a, "%s fallback tier %u: site \"%s\"%s" FULL_NOTE,
                                          blk->label, i + 1, b->snap->sites[si].name, after);
        }
        if (!f->reason || !f->reason_full)
            return tsl_oom();
        blk->nfb++;
    }
    return 0;
}

/* `defaults` as the block of every site no block names and of clients
 * with no site: tier 0 is the site's candidates, decided per request
 * (policy_eval.c); its fallback, after and cap are the defaults'. */
static int bind_defaults(bind_ctx *b)
{
    policy_bound *pb = b->pb;
    bound_block *blk = &pb->dflt;
    const pol_block *d = &b->pol->defaults;
    pol_arena *a = &pb->arena;
    const char *seln = tsl_selection_name(pb->selection);
    int err;

    blk->pb = d;
    blk->site = TSL_NO_SITE;
    blk->dynamic = true;
    blk->label = "defaults";
    if ((err = set_approved(b, blk, 0)) < 0 || (err = block_reasons(b, blk, pb->selection)) < 0)
        return err;
    blk->r_approved = arena_printf(a, "site candidate (no site block: defaults apply), ranked "
                                      "by %s",
                                   seln);
    blk->r_approved_full = arena_printf(a, "site candidate (no site block: defaults apply), "
                                           "ranked by %s" FULL_NOTE,
                                        seln);
    blk->r_blocked = "defaults block fallback and no candidate of the client's site is "
                     "available";
    if (!blk->r_approved || !blk->r_approved_full)
        return tsl_oom();
    if ((err = bind_fallback(b, blk)) < 0)
        return err;
    pb->dflt_on = (d->fallback.kind != POL_FB_UNSET && d->fallback.kind != POL_FB_DEFAULT) ||
                  blk->after > 0 || d->cap > 0 || pb->reserved_bits;
    return 0;
}

/* ------------------------------------------------------------------------
 * Public (to plan.c)
 * ---------------------------------------------------------------------- */

void policy_unbind(void *bound)
{
    policy_bound *pb = bound;
    if (!pb)
        return;
    arena_free(&pb->arena);
    free(pb);
}

static int bind_ex(void **out, const tsl_snapshot *snap, tsl_policy *pol, tsl_alloc_probe *probe)
{
    policy_bound *pb = NULL;
    bind_ctx b;
    int err = 0;

    *out = NULL;
    memset(&b, 0, sizeof b);
    if (!(pb = probe_calloc(probe, 1, sizeof *pb))) {
        err = tsl_oom();
        goto done;
    }
    pb->arena.probe = probe;
    pb->pol = pol;
    pb->snap = snap;
    b.pb = pb;
    b.snap = snap;
    b.pol = pol;

    const pol_block *d = &pol->defaults;
    pb->selection = d->selection >= 0 ? (tsl_selection)d->selection : snap->settings.selection;
    pb->max = d->max > 0 ? d->max : snap->settings.max;
    pb->ttl = d->ttl >= 0 ? d->ttl : snap->settings.ttl;
    pb->cap = d->cap;

    b.tmp = arena_alloc(&pb->arena, sizeof *b.tmp * (snap->nservers + 1));
    pb->site_blk = arena_alloc(&pb->arena, sizeof *pb->site_blk * (snap->nsites + 1));
    pb->sites = arena_alloc(&pb->arena, sizeof *pb->sites * (pol->nsites + 1));
    pb->groups = arena_alloc(&pb->arena, sizeof *pb->groups * (pol->ngroups + 1));
    if (!b.tmp || !pb->site_blk || !pb->sites || !pb->groups) {
        err = tsl_oom();
        goto done;
    }

    for (uint32_t i = 0; i < pol->nsites; i++) {
        int32_t si = policy_find_site(snap, pol->sites[i].name);
        if (si < 0)
            continue;
        bound_block *blk = &pb->sites[pb->nsites++];
        if ((err = bind_site(&b, blk, &pol->sites[i], si)) < 0)
            goto done;
        pb->site_blk[si] = blk;
    }
    for (uint32_t i = 0; i < pol->ngroups; i++)
        if ((err = bind_group(&b, &pb->groups[pb->ngroups++], &pol->groups[i])) < 0)
            goto done;
    if (pol->has_unassigned) {
        if (!(pb->unassigned = arena_alloc(&pb->arena, sizeof *pb->unassigned))) {
            err = tsl_oom();
            goto done;
        }
        if ((err = bind_site(&b, pb->unassigned, &pol->unassigned, TSL_NO_SITE)) < 0 ||
            (err = bind_fallback(&b, pb->unassigned)) < 0)
            goto done;
    }
    if ((err = bind_defaults(&b)) < 0)
        goto done;
    for (uint32_t i = 0; i < pb->nsites; i++)
        if ((err = bind_fallback(&b, &pb->sites[i])) < 0)
            goto done;
    for (uint32_t i = 0; i < pb->ngroups; i++)
        if ((err = bind_fallback(&b, &pb->groups[i])) < 0)
            goto done;

    for (int sel = 0; sel < 3; sel++)
        pb->by_key[sel] = snap->by_key[sel];

    uint32_t nr = pol->nrules ? pol->nrules : 1;
    pb->r_rule_moved = arena_alloc(&pb->arena, sizeof(char *) * nr);
    pb->r_rule_added = arena_alloc(&pb->arena, sizeof(char *) * nr);
    pb->r_rule_blocked = arena_alloc(&pb->arena, sizeof(char *) * nr);
    if (!pb->r_rule_moved || !pb->r_rule_added || !pb->r_rule_blocked) {
        err = tsl_oom();
        goto done;
    }
    for (uint32_t i = 0; i < pol->nrules; i++) {
        const char *n = pol->rules[i].name;
        pb->r_rule_moved[i] = arena_printf(&pb->arena, "placed by rule \"%s\"", n);
        pb->r_rule_added[i] = arena_printf(&pb->arena, "added by rule \"%s\"", n);
        pb->r_rule_blocked[i] = arena_printf(&pb->arena, "rule \"%s\" blocked fallback and no "
                                                         "approved server is available",
                                             n);
        if (!pb->r_rule_moved[i] || !pb->r_rule_added[i] || !pb->r_rule_blocked[i]) {
            err = tsl_oom();
            goto done;
        }
    }
    pb->arena.probe = NULL;
    *out = pb;
    pb = NULL;
done:
    policy_unbind(pb);
    return err;
}

int policy_bind_probe(void **out, const tsl_snapshot *snap, tsl_policy *pol,
                      tsl_alloc_probe *probe)
{
    return bind_ex(out, snap, pol, probe);
}

int policy_bind(void **out, const tsl_snapshot *snap, tsl_policy *pol)
{
    return bind_ex(out, snap, pol, NULL);
}
