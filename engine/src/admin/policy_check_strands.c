/*
 * policy_check_strands.c - the part of `tsl check` that decides every
 * client under the policy and reports whom it strands: blocked (an empty
 * list), sent outside their country or site, or left on a fallback tier,
 * per site and group, worst first, with a few client names each.
 *
 * Used by: policy_check.c (policy_check_every_client).  Needs:
 * policy_check.h, decide.h, policy.h, progress.h.
 */
#include "decide.h"
#include "policy.h"
#include "policy_check.h"
#include "progress.h"
#include "suggest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ------------------------------------------------------------------------
 * Every client: who the policy strands
 * ---------------------------------------------------------------------- */

/* What happens to a client, worst first. */
enum { STRAND_BLOCKED, STRAND_COUNTRY, STRAND_SITE, STRAND_FALLBACK, STRAND__N };

static const char *const strand_words[STRAND__N] = {
    "would be blocked (an empty list)",
    "would be sent outside their country",
    "would be sent outside their site",
    "would be left on a fallback tier",
};

/* One stranded client: sorted by (site, group, kind) to report per bucket. */
typedef struct strand {
    int32_t site;        /* TSL_NO_SITE sorts first */
    int32_t group;       /* index in pb->groups, -1 none */
    int kind;
    uint32_t client;
    int32_t server;      /* the list's first server, -1 when empty */
} strand;

static int strand_cmp(const void *pa, const void *pb)
{
    const strand *a = pa, *b = pb;
    if (a->site != b->site)
        return a->site < b->site ? -1 : 1;
    if (a->group != b->group)
        return a->group < b->group ? -1 : 1;
    if (a->kind != b->kind)
        return a->kind < b->kind ? -1 : 1;
    return (a->client > b->client) - (a->client < b->client);
}

/* The country of a server: its home site's, else that of a site it is
 * assigned to; NULL when none is known. */
static const char *server_country(const tsl_snapshot *s, const snap_server *sv)
{
    if (sv->home != TSL_NO_SITE && s->sites[sv->home].country)
        return s->sites[sv->home].country;
    for (uint32_t i = 0; i < sv->nsites; i++)
        if (s->sites[sv->sites[i]].country)
            return s->sites[sv->sites[i]].country;
    return NULL;
}

/* How a decided list strands its client, or -1 when it does not: judged on
 * the first entry, the server the client registers with while all is well. */
static int strand_kind(const tsl_snapshot *s, const tsl_result *res)
{
    if (res->n == 0)
        return STRAND_BLOCKED;
    const snap_server *sv = &s->servers[res->servers[0]];
    if (res->site != TSL_NO_SITE && !policy_server_at_site(s, res->servers[0], res->site)) {
        const char *cc = s->sites[res->site].country, *sc = server_country(s, sv);
        if (cc && sc && strcasecmp(cc, sc) != 0)
            return STRAND_COUNTRY;
        return STRAND_SITE;
    }
    if (res->entries[0].tier > 0)
        return STRAND_FALLBACK;
    return -1;
}

#define STRAND_NAMES 3
#define STRAND_MAX_LINES 200

/* One finding per (site, group, kind): how many, and a few names. */
static void report_strands(chk *c, const tsl_snapshot *s, const policy_bound *pb,
                           const strand *v, size_t n)
{
    size_t lines = 0, i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && v[j].site == v[i].site && v[j].group == v[i].group &&
               v[j].kind == v[i].kind)
            j++;
        if (lines++ == STRAND_MAX_LINES) {
            check_finding(c, 1, 0, "... and more stranded clients in further sites and groups "
                             "(%zu listed)",
                    (size_t)STRAND_MAX_LINES);
            return;
        }
        char names[512] = "", where[160];
        size_t off = 0;
        for (size_t k = i; k < j && k < i + STRAND_NAMES; k++) {
            const snap_client *cl = &s->clients[v[k].client];
            const char *nm = cl->name && *cl->name ? cl->name : cl->guid;
            if (v[k].server >= 0)
                off += (size_t)snprintf(names + off, sizeof names - off, "%s%s -> %s",
                                        k > i ? ", " : "", nm, s->servers[v[k].server].name);
            else
                off += (size_t)snprintf(names + off, sizeof names - off, "%s%s",
                                        k > i ? ", " : "", nm);
            if (off >= sizeof names)
                off = sizeof names - 1;
        }
        if (j - i > STRAND_NAMES)
            snprintf(names + off, sizeof names - off, ", and %zu more", j - i - STRAND_NAMES);
        if (v[i].site == TSL_NO_SITE)
            snprintf(where, sizeof where, "clients with no site");
        else
            snprintf(where, sizeof where, "site \"%s\"", s->sites[v[i].site].name);
        const bound_block *g = v[i].group >= 0 ? &pb->groups[v[i].group] : NULL;
        const bound_block *sb = v[i].site != TSL_NO_SITE ? pb->site_blk[v[i].site]
                                                        : pb->unassigned;
        int line = g ? g->pb->line : sb ? sb->pb->line : 0;
        check_finding(c, 1, line, "%s%s%s%s: %zu client(s) %s: %s", where, g ? ", group \"" : "",
                g ? g->pb->name : "", g ? "\"" : "", j - i, strand_words[v[i].kind], names);
        i = j;
    }
}

/* Decides for every client of the inventory (no task) and reports, per
 * site and group, those the policy would block, send outside their
 * country or site, or leave on a fallback tier. */
int policy_check_every_client(chk *c, const tsl_plan *plan, int64_t now)
{
    const tsl_snapshot *s = plan->snap;
    const policy_bound *pb = plan->bound;
    tsl_worker *w = NULL;
    tsl_result *res = NULL;
    strand *v = NULL;
    size_t n = 0, count[STRAND__N] = {0};
    int err = 0;

    if ((err = tsl_worker_new(&w)) < 0 || (err = tsl_result_new(&res)) < 0)
        goto done;
    if (!(v = malloc(sizeof *v * (s->nclients ? s->nclients : 1)))) {
        err = tsl_oom();
        goto done;
    }
    for (uint32_t ci = 0; ci < s->nclients; ci++) {
        tsl_request req;
        tsl_progress_tick("clients", ci, s->nclients);
        if (tsl_snapshot_client_request(&req, s, ci) < 0)
            continue;
        req.now = now;
        if (tsl_decide(res, w, plan, &req, NULL) < 0) {
            tsl_error_clear();
            continue; /* a client the inventory cannot place: doctor's business */
        }
        int kind = strand_kind(s, res);
        if (kind < 0)
            continue;
        const bound_block *g = policy_find_group(pb, s->clients[ci].department);
        v[n++] = (strand){res->site, g ? (int32_t)(g - pb->groups) : -1, kind, ci,
                          res->n ? (int32_t)res->servers[0] : -1};
        count[kind]++;
    }
    tsl_progress_tick("clients", s->nclients, s->nclients);
    if (n == 0)
        goto done;
    qsort(v, n, sizeof *v, strand_cmp);
    report_strands(c, s, pb, v, n);
    check_finding(c, 1, 0, "%zu of %u client(s) stranded: %zu blocked, %zu outside their country, "
                     "%zu outside their site, %zu on a fallback tier",
            n, s->nclients, count[STRAND_BLOCKED], count[STRAND_COUNTRY], count[STRAND_SITE],
            count[STRAND_FALLBACK]);
done:
    free(v);
    tsl_result_free(res);
    tsl_worker_free(w);
    return err;
}
