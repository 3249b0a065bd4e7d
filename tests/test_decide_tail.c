/*
 * test_decide_tail.c - the default logic's list over the whole estate
 * (clients with no site, sites with no available server) walks servers in
 * key order and stops early; these tests prove it lists exactly what ranking
 * every available server would, for every client of generated estates,
 * under every selection mode and several `max`, with recent connection
 * errors, stale and stopped servers, and ties on the key.
 */
#include "harness.h"

#include "decide.h"
#include "store.h"
#include "tsl.h"

#include <stdio.h>

/* The reference: every available server ranked (decide_rank over all),
 * the list the default logic gave before the key-ordered walk. */
static int reference_list(tsl_worker *w, tsl_result *scratch, const tsl_plan *plan,
                          const tsl_request *req, uint32_t *out, uint32_t *n, bool *whole_estate)
{
    decide_ctx ctx;
    int err = decide_context(&ctx, w, plan, req, NULL);
    if (err < 0)
        return err;
    decide_resolve(&ctx, scratch, NULL);
    const tsl_snapshot *s = ctx.snap;
    uint32_t *avail = malloc(((size_t)s->nservers + 1) * sizeof *avail);
    uint32_t navail = 0;
    if (!avail)
        return TSL_ENOMEM;
    *whole_estate = true;
    if (ctx.site != TSL_NO_SITE) {
        const snap_site *site = &s->sites[ctx.site];
        for (uint32_t i = 0; i < site->ncand; i++)
            if (decide_available(&ctx, site->cand[i]))
                avail[navail++] = site->cand[i];
        *whole_estate = navail == 0;
    }
    if (*whole_estate)
        for (uint32_t i = 0; i < s->nservers; i++)
            if (decide_available(&ctx, i))
                avail[navail++] = i;
    *n = decide_rank(w, &ctx, ctx.selection, avail, navail, out,
                     ctx.max > 0 ? (uint32_t)ctx.max : 0);
    free(avail);
    return 0;
}

/* Every client of a generated estate, decided both ways; returns how many
 * whole-estate lists were compared (so the test knows the path ran). */
static long compare_estate(unsigned sites, unsigned servers, unsigned clients, uint64_t seed,
                           tsl_selection sel, int max, long *mismatches)
{
    char db[512];
    tsl_store *st = NULL;
    tsl_snapshot *snap = NULL;
    tsl_plan *plan = NULL;
    tsl_worker *w = NULL, *wref = NULL;
    tsl_result *res = NULL, *scratch = NULL;
    uint32_t *ref = NULL;
    long whole = -1;
    tsl_settings set;

    *mismatches = 0;
    snprintf(db, sizeof db, "%s/tail-%u-%u-%llu-%d-%d.db", tsl_test_tmpdir(), sites, servers,
             (unsigned long long)seed, (int)sel, max);
    tsl_settings_init(&set);
    set.selection = sel;
    set.max = max;
    if (tsl_store_open(&st, db, 0) < 0 ||
        tsl_estate_generate(st, sites, servers, clients, seed) < 0 ||
        tsl_snapshot_load(&snap, st, &set) < 0 || tsl_plan_new(&plan, snap, NULL) < 0 ||
        tsl_worker_new(&w) < 0 || tsl_worker_new(&wref) < 0 || tsl_result_new(&res) < 0 ||
        tsl_result_new(&scratch) < 0 ||
        !(ref = malloc(((size_t)servers + 1) * sizeof *ref))) {
        fprintf(stderr, "  setup: %s\n", tsl_error_last());
        goto done;
    }
    whole = 0;
    size_t n = tsl_snapshot_client_count(snap);
    for (size_t i = 0; i < n; i++) {
        tsl_request req;
        uint32_t nref = 0;
        bool is_whole = false;
        if (tsl_snapshot_client_request(&req, snap, i) < 0)
            continue;
        req.now = TSL_ESTATE_EPOCH + 60; /* the generator's errors are recent */
        if (tsl_decide(res, w, plan, &req, NULL) < 0 ||
            reference_list(wref, scratch, plan, &req, ref, &nref, &is_whole) < 0) {
            (*mismatches)++;
            continue;
        }
        whole += is_whole;
        bool same = tsl_result_count(res) == nref;
        for (uint32_t k = 0; same && k < nref; k++)
            same = strcmp(tsl_result_entry(res, k)->name, snap->servers[ref[k]].name) == 0;
        if (!same && (*mismatches)++ < 3)
            fprintf(stderr, "  client %zu (%s, max %d): %zu entries, reference %u\n", i,
                    tsl_selection_name(sel), max, tsl_result_count(res), nref);
    }
done:
    free(ref);
    tsl_result_free(scratch);
    tsl_result_free(res);
    tsl_worker_free(wref);
    tsl_worker_free(w);
    tsl_plan_free(plan);
    tsl_snapshot_free(snap);
    tsl_store_free(st);
    return whole;
}

TEST(decide__whole_estate_lists_equal_the_full_ranking_under_every_selection)
{
    const tsl_selection sels[] = {TSL_SELECT_CAPACITY, TSL_SELECT_RESPONSIVENESS,
                                  TSL_SELECT_CONNECTIONS};
    const int maxes[] = {1, 3, 10, 500};
    for (size_t s = 0; s < sizeof sels / sizeof *sels; s++)
        for (size_t m = 0; m < sizeof maxes / sizeof *maxes; m++) {
            long bad = 0;
            long whole = compare_estate(20, 300, 3000, 11 + m, sels[s], maxes[m], &bad);
            if (whole <= 0)
                FAILF_("%s max %d: no whole-estate list was compared (%ld)",
                       tsl_selection_name(sels[s]), maxes[m], whole);
            if (bad)
                FAILF_("%s max %d: %ld of the lists differ from the full ranking",
                       tsl_selection_name(sels[s]), maxes[m], bad);
        }
}

/* Few servers, many clients: keys tie often (equal connection counts, equal
 * free capacity), so the boundary key's ties decide the list. */
TEST(decide__ties_on_the_boundary_key_rank_as_before)
{
    const tsl_selection sels[] = {TSL_SELECT_CAPACITY, TSL_SELECT_RESPONSIVENESS,
                                  TSL_SELECT_CONNECTIONS};
    for (size_t s = 0; s < sizeof sels / sizeof *sels; s++) {
        long bad = 0;
        long whole = compare_estate(3, 12, 2000, 5, sels[s], 2, &bad);
        if (whole <= 0)
            FAILF_("%s: no whole-estate list was compared", tsl_selection_name(sels[s]));
        CHECK_INT(bad, 0);
    }
}

int main(void)
{
    RUN(decide__whole_estate_lists_equal_the_full_ranking_under_every_selection);
    RUN(decide__ties_on_the_boundary_key_rank_as_before);
    return tsl_test_main();
}
