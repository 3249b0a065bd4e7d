/*
 * test_rollout.c - the policy lifecycle: staged plans, comparing results,
 * the shadow tally, and in the store: versions, dry-run records,
 * activation (everywhere and per site), --require-dry-run, rollback,
 * shadow mode.
 *
 * Policies used (on the demo estate, policies/demo/estate.json):
 *   P1 "madrid-block": Madrid may only use ts-fra-02 (unregistered) and
 *       never falls back: its 3 clients are blocked.
 *   P2 "tokyo-to-singapore": Tokyo's approved set is ts-sin-01: its 4
 *       clients are sent to Singapore (cross-site, cross-country).
 * The parts that compile Lua skip with a message when this build has no
 * policy layer (policy_none.c); everything else runs on the default logic.
 */
#include "harness.h"
#include "dryrun.h"
#include "store.h"

#define NOW INT64_C(1795600800) /* 2026-11-25T10:00:00Z */

static const char P1[] = "site \"Madrid\" { allow = { \"ts-fra-02\" }, fallback = \"block\" }\n";
static const char P2[] = "site \"Tokyo\" { allow = { \"ts-sin-01\" } }\n";

static int store_demo(tsl_store **st, const char *name)
{
    char *doc = tsl_test_read(TSL_SOURCE_DIR "/policies/demo/estate.json", NULL);
    int err;
    if (!doc)
        return -1;
    if ((err = tsl_store_open(st, tsl_test_path(name), 0)) == 0)
        err = tsl_store_import_json(*st, doc, strlen(doc), "estate.json");
    free(doc);
    return err;
}

static bool have_policies(void)
{
    tsl_policy *pol = NULL;
    int rc = tsl_policy_compile(&pol, P1, strlen(P1), "probe.lua");
    tsl_policy_free(pol);
    return rc == 0;
}

#define NEED_POLICIES()                                                          \
    do {                                                                         \
        if (!have_policies()) {                                                  \
            fprintf(stderr, "  SKIP %s: this build has no policy layer\n",       \
                    tsl_test_name_);                                             \
            return;                                                              \
        }                                                                        \
    } while (0)

static int decide_guid(tsl_result *res, tsl_worker *w, const tsl_plan *plan, const char *guid,
                       tsl_trace *tr)
{
    tsl_request req = {0};
    req.client = guid;
    req.now = NOW;
    return tsl_decide(res, w, plan, &req, tr);
}

#define MAD1 "C8692E95-92A5-5D27-8BBD-FB2F4CD09E73" /* MAD-PC-0001 */
#define TYO1 "B0114DC3-51F6-5ACE-A681-2257B481EDEC" /* TYO-PC-0001 */
#define LON1 "E90E4254-DA23-5246-BB45-4A21F778B492" /* LON-PC-0001 */

/* ------------------------------------------------------------------------
 * Staged plans (no policy needed for the mechanics)
 * ---------------------------------------------------------------------- */

TEST(rollout__staged_plan_maps_sites_to_sub_plans)
{
    tsl_store *st = NULL;
    tsl_snapshot *snap = NULL;
    tsl_plan *base = NULL, *v = NULL, *w2 = NULL, *staged = NULL, *staged2 = NULL;
    const char *sites[] = {"London", "paris"};
    const char *sites2[] = {"London"};

    CHECK_OK(store_demo(&st, "staged.db"));
    CHECK_OK(tsl_snapshot_load(&snap, st, NULL));
    CHECK_OK(tsl_plan_new(&base, snap, NULL));
    CHECK_OK(tsl_plan_new(&v, snap, NULL));
    CHECK_OK(tsl_plan_new(&w2, snap, NULL));
    CHECK_OK(tsl_plan_new_staged(&staged, base, v, sites, 2));
    CHECK(tsl_plan_staged(staged));
    CHECK(!tsl_plan_staged(base));
    CHECK(tsl_plan_for_site(staged, "London") == v);
    CHECK(tsl_plan_for_site(staged, "Paris") == v);
    CHECK(tsl_plan_for_site(staged, "Tokyo") == base);
    CHECK(tsl_plan_for_site(staged, NULL) == base);
    CHECK(tsl_plan_for_site(base, "London") == base);
    /* layering: London moves on to w2, Paris keeps v */
    CHECK_OK(tsl_plan_new_staged(&staged2, staged, w2, sites2, 1));
    CHECK(tsl_plan_for_site(staged2, "London") == w2);
    CHECK(tsl_plan_for_site(staged2, "Paris") == v);
    CHECK(tsl_plan_for_site(staged2, "Madrid") == base);
    /* the staged plan outlives the caller's references to its parts */
    tsl_plan_free(v);
    v = NULL;
    tsl_plan_free(staged);
    staged = NULL;
    CHECK(tsl_plan_for_site(staged2, "Paris") != NULL);

    /* decisions go through the hook: the trace says which side decided */
    tsl_worker *w = NULL;
    tsl_result *res = NULL;
    tsl_trace *tr = NULL;
    CHECK_OK(tsl_worker_new(&w));
    CHECK_OK(tsl_result_new(&res));
    CHECK_OK(tsl_trace_new(&tr));
    CHECK_OK(decide_guid(res, w, staged2, LON1, tr));
    bool seen = false;
    for (size_t i = 0; i < tsl_trace_count(tr); i++)
        seen |= strstr(tsl_trace_line(tr, i), "staged rollout: site \"London\" runs") != NULL;
    CHECK(seen);
    CHECK(w->aux[0] != NULL || w->aux[1] != NULL); /* London's slot has its own worker */
    CHECK(tsl_result_count(res) > 0);
    tsl_trace_free(tr);
    tsl_result_free(res);
    tsl_worker_free(w);
    tsl_plan_free(staged2);
    tsl_plan_free(w2);
    tsl_plan_free(base);
    tsl_snapshot_free(snap);
    tsl_store_free(st);
}

TEST(rollout__staged_plan_refusals)
{
    tsl_store *st = NULL;
    tsl_snapshot *snap = NULL, *other = NULL;
    tsl_plan *base = NULL, *v = NULL, *staged = NULL, *bad = NULL, *po = NULL;
    tsl_plan *many[TSL_STAGE_MAX_PLANS + 1] = {0};
    const char *sites[] = {"Atlantis"};
    const char *london[] = {"London"};
    static const char *all[] = {"London", "London Lab", "Dublin", "Paris", "Madrid",
                                "Frankfurt", "New York", "Tokyo", "Singapore"};

    CHECK_OK(store_demo(&st, "refuse.db"));
    CHECK_OK(tsl_snapshot_load(&snap, st, NULL));
    CHECK_OK(tsl_snapshot_load(&other, st, NULL));
    CHECK_OK(tsl_plan_new(&base, snap, NULL));
    CHECK_OK(tsl_plan_new(&v, snap, NULL));
    CHECK_OK(tsl_plan_new(&po, other, NULL));
    CHECK_INT(tsl_plan_new_staged(&bad, base, v, sites, 1), TSL_ENOTFOUND);
    CHECK_CONTAINS(tsl_error_last(), "Atlantis");
    CHECK_NULL(bad);
    CHECK_INT(tsl_plan_new_staged(&bad, base, po, london, 1), TSL_EINVALID);
    CHECK_OK(tsl_plan_new_staged(&staged, base, v, london, 1));
    CHECK_INT(tsl_plan_new_staged(&bad, base, staged, london, 1), TSL_EINVALID);
    /* nine sites each on their own plan: base + 9 > TSL_STAGE_MAX_PLANS */
    tsl_plan *cur = tsl_plan_ref(base);
    int rc = 0;
    for (int i = 0; i <= TSL_STAGE_MAX_PLANS && rc == 0; i++) {
        tsl_plan *next = NULL;
        CHECK_OK(tsl_plan_new(&many[i], snap, NULL));
        rc = tsl_plan_new_staged(&next, cur, many[i], &all[i], 1);
        if (rc == 0) {
            tsl_plan_free(cur);
            cur = next;
        }
    }
    CHECK_INT(rc, TSL_ELIMIT);
    tsl_plan_free(cur);
    for (int i = 0; i <= TSL_STAGE_MAX_PLANS; i++)
        tsl_plan_free(many[i]);
    tsl_plan_free(staged);
    tsl_plan_free(base);
    tsl_plan_free(v);
    tsl_plan_free(po);
    tsl_snapshot_free(snap);
    tsl_snapshot_free(other);
    tsl_store_free(st);
}

/* ------------------------------------------------------------------------
 * Comparing results and the shadow tally
 * ---------------------------------------------------------------------- */

TEST(rollout__result_diff_flags)
{
    tsl_store *st = NULL;
    tsl_snapshot *a = NULL, *b = NULL;
    tsl_plan *pa = NULL, *pb = NULL;
    tsl_worker *w = NULL;
    tsl_result *ra = NULL, *rb = NULL;
    static const char stop[] = "{\"task_servers\":[{\"name\":\"ts-mad-01\",\"service\":\"stopped\"}]}";

    CHECK_OK(store_demo(&st, "diff.db"));
    CHECK_OK(tsl_snapshot_load(&a, st, NULL));
    CHECK_OK(tsl_store_import_json(st, stop, strlen(stop), "stop.json"));
    CHECK_OK(tsl_snapshot_load(&b, st, NULL));
    CHECK_OK(tsl_plan_new(&pa, a, NULL));
    CHECK_OK(tsl_plan_new(&pb, b, NULL));
    CHECK_OK(tsl_worker_new(&w));
    CHECK_OK(tsl_result_new(&ra));
    CHECK_OK(tsl_result_new(&rb));
    CHECK_OK(decide_guid(ra, w, pa, MAD1, NULL));
    CHECK_OK(decide_guid(rb, w, pb, MAD1, NULL));
    CHECK_INT(tsl_result_diff(a, ra, rb), TSL_DIFF_FIRST | TSL_DIFF_LIST | TSL_DIFF_CROSS_SITE |
                                              TSL_DIFF_CROSS_COUNTRY);
    CHECK_INT(tsl_result_diff(a, rb, ra), TSL_DIFF_FIRST | TSL_DIFF_LIST | TSL_DIFF_BACK_IN_SITE);
    CHECK_INT(tsl_result_diff(a, ra, ra), 0);
    CHECK_OK(decide_guid(rb, w, pb, LON1, NULL));
    CHECK_OK(decide_guid(ra, w, pa, LON1, NULL));
    CHECK_INT(tsl_result_diff(a, ra, rb), 0);
    CHECK_STR(tsl_diff_name(TSL_DIFF_CROSS_SITE), "cross-site");
    CHECK_NULL(tsl_diff_name(3));
    tsl_result_free(ra);
    tsl_result_free(rb);
    tsl_worker_free(w);
    tsl_plan_free(pa);
    tsl_plan_free(pb);
    tsl_snapshot_free(a);
    tsl_snapshot_free(b);
    tsl_store_free(st);
}

static int64_t count_of(tsl_store *st, const char *sql)
{
    sqlite3_stmt *q = NULL;
    int64_t v = -1;
    if (sqlite3_prepare_v2(tsl_store_db(st), sql, -1, &q, NULL) == SQLITE_OK &&
        sqlite3_step(q) == SQLITE_ROW)
        v = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return v;
}

TEST(rollout__shadow_tally_counts_samples_and_flushes)
{
    tsl_store *st = NULL;
    tsl_snapshot *a = NULL, *b = NULL;
    tsl_plan *pa = NULL, *pb = NULL;
    tsl_worker *w = NULL, *w2 = NULL;
    tsl_result *ra = NULL, *rb = NULL;
    tsl_shadow *sh = NULL;
    tsl_shadow_counts c;
    static const char stop[] = "{\"task_servers\":[{\"name\":\"ts-mad-01\",\"service\":\"stopped\"}]}";

    CHECK_OK(store_demo(&st, "shadow.db"));
    CHECK_OK(tsl_snapshot_load(&a, st, NULL));
    CHECK_OK(tsl_store_import_json(st, stop, strlen(stop), "stop.json"));
    CHECK_OK(tsl_snapshot_load(&b, st, NULL));
    CHECK_OK(tsl_plan_new(&pa, a, NULL));
    CHECK_OK(tsl_plan_new(&pb, b, NULL));
    CHECK_OK(tsl_worker_new(&w));
    CHECK_OK(tsl_worker_new(&w2));
    CHECK_OK(tsl_result_new(&ra));
    CHECK_OK(tsl_result_new(&rb));
    CHECK_OK(tsl_shadow_new(&sh, "sha256:0123456789ab"));
    CHECK_STR(tsl_shadow_version(sh), "sha256:0123456789ab");

    /* every client, as a broker would: active answer, shadow beside it */
    for (size_t i = 0; i < tsl_snapshot_client_count(a); i++) {
        tsl_request req;
        CHECK_OK(tsl_snapshot_client_request(&req, a, i));
        req.now = NOW;
        CHECK_OK(tsl_decide(ra, w, pa, &req, NULL));
        CHECK_OK(tsl_decide(rb, w2, pb, &req, NULL));
        tsl_shadow_observe(sh, a, &req, ra, rb);
    }
    tsl_request bad = {0};
    bad.client = "00000000-0000-0000-0000-000000000000";
    tsl_shadow_observe(sh, a, &bad, ra, NULL); /* the shadow failed */
    tsl_shadow_counts_get(sh, &c);
    CHECK_INT(c.requests, 41);
    CHECK_INT(c.errors, 1);
    CHECK_INT(c.first, 3);           /* the three Madrid clients */
    CHECK_INT(c.cross_site, 3);
    CHECK_INT(c.blocked, 0);
    CHECK(c.differ >= 4 && c.list >= 4); /* Madrid's 3, the failed one, maybe the no-site client */

    CHECK_OK(tsl_shadow_flush(sh, st, NOW));
    CHECK_INT(count_of(st, "SELECT requests FROM rollout_shadow_counts "
                           "WHERE hash = 'sha256:0123456789ab'"), 41);
    CHECK_INT(count_of(st, "SELECT first FROM rollout_shadow_counts"), 3);
    CHECK_INT(count_of(st, "SELECT count(*) FROM rollout_shadow_samples"), (int64_t)c.differ);
    CHECK_INT(count_of(st, "SELECT count(*) FROM rollout_shadow_samples WHERE client = '" MAD1
                           "' AND kinds = 'first,list,cross-site,cross-country'"
                           " AND active = 'ts-mad-01'"),
              1);
    /* a second flush adds only what came since */
    tsl_shadow_observe(sh, a, &bad, ra, NULL);
    CHECK_OK(tsl_shadow_flush(sh, st, NOW + 1));
    CHECK_INT(count_of(st, "SELECT requests FROM rollout_shadow_counts"), 42);
    CHECK_INT(count_of(st, "SELECT errors FROM rollout_shadow_counts"), 2);
    CHECK_OK(tsl_shadow_flush(sh, st, NOW + 2)); /* nothing new: no write */
    CHECK_INT(count_of(st, "SELECT updated FROM rollout_shadow_counts"), NOW + 1);

    tsl_shadow_free(sh);
    tsl_result_free(ra);
    tsl_result_free(rb);
    tsl_worker_free(w);
    tsl_worker_free(w2);
    tsl_plan_free(pa);
    tsl_plan_free(pb);
    tsl_snapshot_free(a);
    tsl_snapshot_free(b);
    tsl_store_free(st);
}

/* ------------------------------------------------------------------------
 * Versions, activation, rollback, shadow mode (need the policy layer)
 * ---------------------------------------------------------------------- */

/* The shadow version's plan over `snap` (NULL: none), as a broker binds it. */
static int shadow_plan(tsl_plan **out, tsl_store *st, tsl_snapshot *snap)
{
    tsl_rollout *ro = NULL;
    int err = tsl_rollout_load(&ro, st);
    *out = NULL;
    if (err == 0)
        err = tsl_rollout_bind_shadow(out, ro, snap);
    tsl_rollout_free(ro);
    return err;
}

/* Stores a version as `tsl policy load --no-activate` does; -1 on error,
 * -2 when that text was already stored. */
static int64_t load(tsl_store *st, const char *src, const char *name, const char *comment)
{
    tsl_policy *pol = NULL;
    int64_t id = 0;
    bool existed = false;
    int err = tsl_policy_compile(&pol, src, strlen(src), name);
    if (err == 0)
        err = tsl_store_policy_add(&id, &existed, st, pol, "alice", comment, 0, NOW);
    tsl_policy_free(pol);
    return err < 0 ? -1 : existed ? -2 : id;
}

/* Dry-runs version `id` against the rollout in force and records it. */
static int dry_run_and_record(tsl_store *st, tsl_snapshot *snap, int64_t id, unsigned *conds)
{
    tsl_plan *active = NULL, *cand = NULL;
    tsl_policy *pol = NULL;
    tsl_dryrun *dr = NULL;
    tsl_buf key = TSL_BUF_INIT;
    char *src = NULL;
    size_t len;
    int err;
    tsl_dryrun_options opt;
    tsl_dryrun_options_init(&opt);
    opt.now = NOW;
    if ((err = tsl_rollout_plan(&active, st, snap)) < 0 ||
        (err = tsl_rollout_source(&src, &len, NULL, st, id)) < 0 ||
        (err = tsl_policy_compile(&pol, src, len, "v.lua")) < 0 ||
        (err = tsl_plan_new(&cand, snap, pol)) < 0 ||
        (err = tsl_dryrun_new(&dr, active, cand, &opt)) < 0 ||
        (err = tsl_dryrun_add_inventory(dr)) < 0 || (err = tsl_dryrun_finish(dr)) < 0 ||
        (err = tsl_rollout_state_key(&key, st)) < 0 ||
        (err = tsl_rollout_record_dryrun(st, id, key.ptr, "inventory", TSL_DRYRUN_ALL, dr, "alice",
                                         NOW)) < 0)
        goto done;
    *conds = dr->sum.conditions;
done:
    tsl_buf_free(&key);
    free(src);
    tsl_dryrun_free(dr);
    tsl_plan_free(active);
    tsl_plan_free(cand);
    tsl_policy_free(pol);
    return err;
}

TEST(rollout__versions_list_show_diff)
{
    NEED_POLICIES();
    tsl_store *st = NULL;
    tsl_buf out = TSL_BUF_INIT;
    int64_t id;
    char hash[64];

    CHECK_OK(store_demo(&st, "versions.db"));
    CHECK_INT(load(st, P1, "madrid.lua", "block Madrid"), 1);
    CHECK_INT(load(st, P2, "tokyo.lua", "Tokyo to Singapore"), 2);
    CHECK_INT(load(st, P1, "again.lua", NULL), -2); /* the same text: the same version */
    CHECK_OK(tsl_rollout_resolve(&id, hash, sizeof hash, st, "v2"));
    CHECK_INT(id, 2);
    CHECK_OK(tsl_rollout_resolve(&id, NULL, 0, st, hash)); /* by its hash */
    CHECK_INT(id, 2);
    CHECK_OK(tsl_rollout_resolve(&id, NULL, 0, st, hash + 7)); /* without "sha256:" */
    CHECK_INT(tsl_rollout_resolve(&id, NULL, 0, st, "9"), TSL_ENOTFOUND);
    CHECK_INT(tsl_rollout_resolve(&id, NULL, 0, st, "xyz"), TSL_EINVALID);

    CHECK_OK(tsl_store_policy_list(&out, st, TSL_FORMAT_TEXT));
    CHECK_CONTAINS(out.ptr, "alice");
    CHECK_CONTAINS(out.ptr, "block Madrid");
    CHECK_CONTAINS(out.ptr, "never");
    tsl_buf_clear(&out);
    CHECK_OK(tsl_store_policy_list(&out, st, TSL_FORMAT_JSON));
    CHECK_CONTAINS(out.ptr, "{\"id\":2,\"version\":\"sha256:");
    CHECK_CONTAINS(out.ptr, "\"comment\":\"Tokyo to Singapore\"");
    CHECK_CONTAINS(out.ptr, "\"staged_sites\":null,\"last_dry_run\":null,\"shadow\":false");
    tsl_buf_clear(&out);
    CHECK_OK(tsl_rollout_show(&out, st, "1", TSL_FORMAT_TEXT));
    CHECK_CONTAINS(out.ptr, "file     madrid.lua");
    CHECK_CONTAINS(out.ptr, "--- content ---\nsite \"Madrid\"");
    tsl_buf_clear(&out);
    CHECK_OK(tsl_rollout_diff(&out, st, "1", "2"));
    CHECK_CONTAINS(out.ptr, "-site \"Madrid\"");
    CHECK_CONTAINS(out.ptr, "+site \"Tokyo\"");
    CHECK_CONTAINS(out.ptr, "@@ -1,1 +1,1 @@");
    tsl_buf_clear(&out);
    CHECK_OK(tsl_rollout_diff(&out, st, "1", "1"));
    CHECK_CONTAINS(out.ptr, "identical");
    tsl_buf_free(&out);
    tsl_store_free(st);
}

TEST(rollout__activate_staged_and_rollback)
{
    NEED_POLICIES();
    tsl_store *st = NULL;
    tsl_snapshot *snap = NULL;
    tsl_plan *plan = NULL;
    tsl_worker *w = NULL;
    tsl_result *res = NULL;
    tsl_buf key = TSL_BUF_INIT;
    char hash[64], what[256];
    int64_t id1 = 0;
    const char *tokyo[] = {"Tokyo"};

    CHECK_OK(store_demo(&st, "activate.db"));
    CHECK_OK(tsl_snapshot_load(&snap, st, NULL));
    CHECK_OK(tsl_worker_new(&w));
    CHECK_OK(tsl_result_new(&res));
    CHECK_INT(load(st, P1, "madrid.lua", NULL), 1);
    CHECK_INT(load(st, P2, "tokyo.lua", NULL), 2);

    /* nothing active: the default logic */
    CHECK_OK(tsl_rollout_state_key(&key, st));
    CHECK_STR(key.ptr, "default");
    CHECK_OK(tsl_rollout_plan(&plan, st, snap));
    CHECK_NULL(tsl_plan_policy(plan));
    tsl_plan_free(plan);
    CHECK_INT(tsl_rollout_rollback(st, "bob", what, sizeof what), TSL_ENOTFOUND);

    /* v1 everywhere: Madrid is blocked */
    tsl_activate_options ao = {0};
    ao.author = "bob";
    CHECK_OK(tsl_rollout_activate(st, "1", &ao));
    {   /* the policy layer's active policy is the rollout's base */
        tsl_policy *act = NULL;
        CHECK_OK(tsl_store_policy_active(&act, st));
        CHECK(act != NULL);
        CHECK_OK(tsl_rollout_resolve(&id1, hash, sizeof hash, st, "1"));
        CHECK_STR(tsl_policy_version(act), hash);
        tsl_policy_free(act);
    }
    CHECK_OK(tsl_rollout_plan(&plan, st, snap));
    CHECK(!tsl_plan_staged(plan));
    CHECK_OK(decide_guid(res, w, plan, MAD1, NULL));
    CHECK_INT(tsl_result_count(res), 0);
    CHECK_OK(decide_guid(res, w, plan, TYO1, NULL));
    CHECK_STR(tsl_result_entry(res, 0)->name, "ts-tyo-01");
    tsl_plan_free(plan);

    /* v2 staged for Tokyo only: Tokyo goes to Singapore, Madrid stays on v1 */
    ao.sites = tokyo;
    ao.nsites = 1;
    CHECK_OK(tsl_rollout_activate(st, "2", &ao));
    tsl_buf_clear(&key);
    CHECK_OK(tsl_rollout_state_key(&key, st));
    CHECK_CONTAINS(key.ptr, ";Tokyo=sha256:");
    {   /* the compiled rollout binds the same staged plan to a new snapshot */
        tsl_rollout *ro = NULL;
        tsl_snapshot *snap2 = NULL;
        tsl_plan *p2 = NULL;
        CHECK_OK(tsl_rollout_load(&ro, st));
        CHECK_OK(tsl_snapshot_load(&snap2, st, NULL));
        CHECK_OK(tsl_rollout_bind(&p2, ro, snap2));
        CHECK(tsl_plan_staged(p2));
        CHECK(tsl_plan_for_site(p2, "Tokyo") != tsl_plan_for_site(p2, "Madrid"));
        CHECK_NULL(tsl_rollout_shadow_version(ro));
        tsl_plan_free(p2);
        tsl_snapshot_free(snap2);
        tsl_rollout_free(ro);
    }
    CHECK_OK(tsl_rollout_plan(&plan, st, snap));
    CHECK(tsl_plan_staged(plan));
    CHECK_OK(decide_guid(res, w, plan, TYO1, NULL));
    CHECK_STR(tsl_result_entry(res, 0)->name, "ts-sin-01");
    CHECK_OK(decide_guid(res, w, plan, MAD1, NULL));
    CHECK_INT(tsl_result_count(res), 0);
    CHECK_OK(decide_guid(res, w, plan, LON1, NULL));
    CHECK(tsl_result_count(res) > 0);
    tsl_plan_free(plan);

    /* an unknown site is refused, nothing changes */
    const char *nowhere[] = {"Atlantis"};
    ao.sites = nowhere;
    CHECK_INT(tsl_rollout_activate(st, "2", &ao), TSL_ENOTFOUND);

    /* rollback undoes the staged step, then the first activation */
    CHECK_OK(tsl_rollout_rollback(st, "bob", what, sizeof what));
    CHECK_CONTAINS(what, "undid the activation of version 2 for Tokyo");
    CHECK_OK(tsl_rollout_plan(&plan, st, snap));
    CHECK(!tsl_plan_staged(plan));
    CHECK_OK(decide_guid(res, w, plan, TYO1, NULL));
    CHECK_STR(tsl_result_entry(res, 0)->name, "ts-tyo-01");
    tsl_plan_free(plan);
    CHECK_OK(tsl_rollout_rollback(st, "bob", what, sizeof what));
    CHECK_CONTAINS(what, "in force now: the default logic");
    CHECK_OK(tsl_rollout_plan(&plan, st, snap));
    CHECK_NULL(tsl_plan_policy(plan));
    tsl_plan_free(plan);
    CHECK_INT(tsl_rollout_rollback(st, "bob", what, sizeof what), TSL_ENOTFOUND);

    tsl_buf_clear(&key);
    CHECK_OK(tsl_rollout_status(&key, st, TSL_FORMAT_TEXT));
    CHECK_CONTAINS(key.ptr, "in force: default");
    CHECK_CONTAINS(key.ptr, "rollback");
    CHECK_CONTAINS(key.ptr, "[rolled back]");

    tsl_buf_free(&key);
    tsl_result_free(res);
    tsl_worker_free(w);
    tsl_snapshot_free(snap);
    tsl_store_free(st);
}

TEST(rollout__require_dry_run_refuses_without_a_clean_one)
{
    NEED_POLICIES();
    tsl_store *st = NULL;
    tsl_snapshot *snap = NULL;
    tsl_buf out = TSL_BUF_INIT;
    unsigned conds = 0;
    tsl_activate_options ao = {0};

    CHECK_OK(store_demo(&st, "require.db"));
    CHECK_OK(tsl_snapshot_load(&snap, st, NULL));
    CHECK_INT(load(st, P1, "madrid.lua", NULL), 1);
    CHECK_INT(load(st, P2, "tokyo.lua", NULL), 2);
    ao.require_dry_run = true;

    /* no dry-run at all */
    CHECK_INT(tsl_rollout_activate(st, "1", &ao), TSL_EPOLICY);
    CHECK_CONTAINS(tsl_error_last(), "no dry-run of it is recorded");
    /* a dry-run that finds clients blocked does not count */
    CHECK_OK(dry_run_and_record(st, snap, 1, &conds));
    CHECK_INT(conds, TSL_DRYRUN_BLOCKED);
    CHECK_INT(tsl_rollout_activate(st, "1", &ao), TSL_EPOLICY);
    /* the refusal names what it found, not "no dry-run" */
    CHECK_CONTAINS(tsl_error_last(), "its latest dry-run against the rollout in force (default");
    CHECK_CONTAINS(tsl_error_last(), "found 3 newly blocked");
    /* v2 sends Tokyo abroad: cross-site, refused too */
    CHECK_OK(dry_run_and_record(st, snap, 2, &conds));
    CHECK_INT(conds, TSL_DRYRUN_CROSS_SITE);
    CHECK_INT(tsl_rollout_activate(st, "2", &ao), TSL_EPOLICY);
    /* v3 changes nothing for anyone: clean, and then accepted */
    CHECK_INT(load(st, "defaults { max = 10 }\n", "noop.lua", NULL), 3);
    CHECK_OK(dry_run_and_record(st, snap, 3, &conds));
    CHECK_INT(conds, 0);
    CHECK_OK(tsl_rollout_activate(st, "3", &ao));
    /* the clean run was against the default logic; now v3 is in force, so
     * v2 needs a new dry-run against it */
    CHECK_INT(tsl_rollout_activate(st, "2", &ao), TSL_EPOLICY);
    CHECK_OK(tsl_rollout_show(&out, st, "1", TSL_FORMAT_TEXT));
    CHECK_CONTAINS(out.ptr, "FAILED against default (inventory)");
    CHECK_CONTAINS(out.ptr, "\"newly_blocked\":3");
    tsl_buf_free(&out);
    tsl_snapshot_free(snap);
    tsl_store_free(st);
}

TEST(rollout__shadow_mode_set_report_off)
{
    NEED_POLICIES();
    tsl_store *st = NULL;
    tsl_snapshot *snap = NULL;
    tsl_plan *active = NULL, *shadow = NULL;
    tsl_worker *w = NULL, *w2 = NULL;
    tsl_result *ra = NULL, *rb = NULL;
    tsl_shadow *sh = NULL;
    tsl_buf out = TSL_BUF_INIT;
    char hash[64];
    int64_t id;

    CHECK_OK(store_demo(&st, "shadowmode.db"));
    CHECK_OK(tsl_snapshot_load(&snap, st, NULL));
    CHECK_INT(load(st, P1, "madrid.lua", NULL), 1);
    CHECK_OK(shadow_plan(&shadow, st, snap));
    CHECK_NULL(shadow);
    CHECK_OK(tsl_rollout_shadow_set(st, "1", "carol", NOW));
    CHECK_OK(shadow_plan(&shadow, st, snap));
    CHECK(shadow != NULL);
    CHECK_OK(tsl_rollout_plan(&active, st, snap));
    CHECK_OK(tsl_rollout_resolve(&id, hash, sizeof hash, st, "1"));
    {   /* what a broker keeps: compiled once, bound to each snapshot */
        tsl_rollout *ro = NULL;
        tsl_plan *sp = NULL;
        CHECK_OK(tsl_rollout_load(&ro, st));
        CHECK_STR(tsl_rollout_shadow_version(ro), hash);
        CHECK_STR(tsl_rollout_key(ro), "default");
        CHECK_OK(tsl_rollout_bind_shadow(&sp, ro, snap));
        CHECK(sp != NULL && tsl_plan_policy(sp) != NULL);
        tsl_plan_free(sp);
        tsl_rollout_free(ro);
    }
    CHECK_OK(tsl_shadow_new(&sh, hash));
    CHECK_OK(tsl_worker_new(&w));
    CHECK_OK(tsl_worker_new(&w2));
    CHECK_OK(tsl_result_new(&ra));
    CHECK_OK(tsl_result_new(&rb));
    for (size_t i = 0; i < tsl_snapshot_client_count(snap); i++) {
        tsl_request req;
        CHECK_OK(tsl_snapshot_client_request(&req, snap, i));
        req.now = NOW;
        CHECK_OK(tsl_decide(ra, w, active, &req, NULL));
        CHECK_OK(tsl_decide(rb, w2, shadow, &req, NULL));
        tsl_shadow_observe(sh, snap, &req, ra, rb);
    }
    CHECK_OK(tsl_shadow_flush(sh, st, NOW));
    CHECK_OK(tsl_rollout_shadow_report(&out, st, TSL_FORMAT_TEXT));
    CHECK_CONTAINS(out.ptr, "requests evaluated   40");
    CHECK_CONTAINS(out.ptr, "newly blocked      3");
    CHECK_CONTAINS(out.ptr, MAD1);
    tsl_buf_clear(&out);
    CHECK_OK(tsl_rollout_shadow_report(&out, st, TSL_FORMAT_JSON));
    CHECK_CONTAINS(out.ptr, "\"newly_blocked\":3");
    /* the active answer never changed: nothing is active */
    CHECK_NULL(tsl_plan_policy(active));
    /* setting it again restarts the counters; --off ends it */
    CHECK_OK(tsl_rollout_shadow_set(st, "1", "carol", NOW + 5));
    tsl_buf_clear(&out);
    CHECK_OK(tsl_rollout_shadow_report(&out, st, TSL_FORMAT_TEXT));
    CHECK_CONTAINS(out.ptr, "requests evaluated   0");
    CHECK_OK(tsl_rollout_shadow_set(st, NULL, "carol", NOW + 6));
    tsl_buf_clear(&out);
    CHECK_OK(tsl_rollout_shadow_report(&out, st, TSL_FORMAT_TEXT));
    CHECK_CONTAINS(out.ptr, "no shadow version");
    tsl_buf_free(&out);
    tsl_shadow_free(sh);
    tsl_result_free(ra);
    tsl_result_free(rb);
    tsl_worker_free(w);
    tsl_worker_free(w2);
    tsl_plan_free(active);
    tsl_plan_free(shadow);
    tsl_snapshot_free(snap);
    tsl_store_free(st);
}

int main(void)
{
    RUN(rollout__staged_plan_maps_sites_to_sub_plans);
    RUN(rollout__staged_plan_refusals);
    RUN(rollout__result_diff_flags);
    RUN(rollout__shadow_tally_counts_samples_and_flushes);
    RUN(rollout__versions_list_show_diff);
    RUN(rollout__activate_staged_and_rollback);
    RUN(rollout__require_dry_run_refuses_without_a_clean_one);
    RUN(rollout__shadow_mode_set_report_off);
    return tsl_test_main();
}
