/*
 * test_dryrun.c - the dry-run comparison engine on the demo estate, with
 * exact counts.  The two sides here are the default logic over two
 * snapshots of the same inventory (servers stopped or re-capped between
 * them), so the engine is proven without the policy layer; policy-versus-
 * policy runs are in test_rollout.c and the CLI test.
 *
 * The demo estate (policies/demo/estate.json): 9 sites, 17 servers, 40
 * clients; Madrid's only server is ts-mad-01 (3 clients), Tokyo's only
 * server is ts-tyo-01 (TYO-PC-0001..3 plus TYO-LT-0101 explicitly in Tokyo).
 */
#include "harness.h"
#include "dryrun.h"

#define NOW INT64_C(1795600800) /* 2026-11-25T10:00:00Z, the demo's "now" */

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

static int import(tsl_store *st, const char *doc)
{
    return tsl_store_import_json(st, doc, strlen(doc), "change.json");
}

/* The "before" and "after" plans: default logic over the store as it is,
 * then over the store after `change` is imported. */
struct sides {
    tsl_store *st;
    tsl_snapshot *a, *b;
    tsl_plan *pa, *pb;
};

static int sides_open(struct sides *s, const char *name, const char *setup, const char *change)
{
    int err;
    memset(s, 0, sizeof *s);
    if ((err = store_demo(&s->st, name)) < 0)
        return err;
    if (setup && (err = import(s->st, setup)) < 0)
        return err;
    if ((err = tsl_snapshot_load(&s->a, s->st, NULL)) < 0 ||
        (err = import(s->st, change)) < 0 || (err = tsl_snapshot_load(&s->b, s->st, NULL)) < 0 ||
        (err = tsl_plan_new(&s->pa, s->a, NULL)) < 0 || (err = tsl_plan_new(&s->pb, s->b, NULL)) < 0)
        return err;
    return 0;
}

static void sides_close(struct sides *s)
{
    tsl_plan_free(s->pa);
    tsl_plan_free(s->pb);
    tsl_snapshot_free(s->a);
    tsl_snapshot_free(s->b);
    tsl_store_free(s->st);
}

static int run(tsl_dryrun **out, struct sides *s, tsl_dryrun_emit json, void *ud)
{
    tsl_dryrun_options opt;
    int err;
    tsl_dryrun_options_init(&opt);
    opt.now = NOW;
    opt.before_label = "before";
    opt.after_label = "after";
    opt.json = json;
    opt.json_ud = ud;
    if ((err = tsl_dryrun_new(out, s->pa, s->pb, &opt)) < 0)
        return err;
    if ((err = tsl_dryrun_add_inventory(*out)) < 0)
        return err;
    return tsl_dryrun_finish(*out);
}

static int to_buf(void *ud, const char *data, size_t len)
{
    return tsl_buf_put(ud, data, len);
}

/* ------------------------------------------------------------------------ */

TEST(dryrun__identical_sides_change_nothing)
{
    tsl_store *st = NULL;
    tsl_snapshot *snap = NULL;
    tsl_plan *plan = NULL;
    tsl_dryrun *dr = NULL;
    tsl_dryrun_options opt;
    tsl_dryrun_summary s;

    CHECK_OK(store_demo(&st, "same.db"));
    CHECK_OK(tsl_snapshot_load(&snap, st, NULL));
    CHECK_OK(tsl_plan_new(&plan, snap, NULL));
    tsl_dryrun_options_init(&opt);
    opt.now = NOW;
    CHECK_OK(tsl_dryrun_new(&dr, plan, plan, &opt));
    CHECK_OK(tsl_dryrun_add_inventory(dr));
    CHECK_OK(tsl_dryrun_finish(dr));
    tsl_dryrun_summary_get(dr, &s);
    CHECK_INT(s.requests, 40);
    CHECK_INT(s.errors, 0);
    CHECK_INT(s.list_changed, 0);
    CHECK_INT(s.first_changed, 0);
    CHECK_INT(s.conditions, 0);
    /* the demo's cross-site clients today: LON-LT-0104 has no site (not
     * counted); SIN-LT-0103 / TYO-LT-0101 / NYC-LT-0102 sit in their own
     * sites' servers; none is sent abroad by the default logic */
    CHECK_INT(s.cross_site_before, s.cross_site_after);
    tsl_dryrun_free(dr);
    tsl_plan_free(plan);
    tsl_snapshot_free(snap);
    tsl_store_free(st);
}

TEST(dryrun__stopped_site_servers_send_clients_abroad)
{
    struct sides s;
    tsl_dryrun *dr = NULL;
    tsl_dryrun_summary sum;
    tsl_buf text = TSL_BUF_INIT;

    CHECK_OK(sides_open(&s, "abroad.db", NULL,
                        "{\"task_servers\":[{\"name\":\"ts-mad-01\",\"service\":\"stopped\"},"
                        "{\"name\":\"ts-tyo-01\",\"service\":\"stopped\"}]}"));
    CHECK_OK(run(&dr, &s, NULL, NULL));
    tsl_dryrun_summary_get(dr, &sum);
    CHECK_INT(sum.requests, 40);
    /* 3 Madrid + 4 Tokyo clients lose their site's only server: their first
     * server changes, to a server in another site and another country */
    CHECK_INT(sum.first_changed, 7);
    CHECK_INT(sum.newly_cross_site, 7);
    CHECK_INT(sum.newly_cross_country, 7);
    CHECK_INT(sum.newly_blocked, 0);
    CHECK_INT(sum.blocked_after, 0);
    CHECK_INT(sum.conditions, TSL_DRYRUN_CROSS_SITE);
    /* per site */
    int32_t mad = snap_find_site(s.a, "Madrid"), tyo = snap_find_site(s.a, "Tokyo");
    int32_t lon = snap_find_site(s.a, "London");
    CHECK_INT(dr->sites[mad].requests, 3);
    CHECK_INT(dr->sites[mad].first, 3);
    CHECK_INT(dr->sites[mad].cross_before, 0);
    CHECK_INT(dr->sites[mad].cross_after, 3);
    CHECK_INT(dr->sites[tyo].requests, 4);
    CHECK_INT(dr->sites[tyo].cross_after, 4);
    CHECK_INT(dr->sites[lon].first, 0);
    /* per server: ts-mad-01 and ts-tyo-01 lose all their clients */
    int32_t m1 = snap_find_server(s.a, "ts-mad-01"), t1 = snap_find_server(s.a, "ts-tyo-01");
    CHECK_INT(dr->servers[m1].before, 3);
    CHECK_INT(dr->servers[m1].after, 0);
    CHECK_INT(dr->servers[t1].before, 4);
    CHECK_INT(dr->servers[t1].after, 0);
    /* every kept change is one of the seven, most serious (cross-country) */
    CHECK_INT(dr->nchanges, sum.list_changed < 20 ? sum.list_changed : 20);
    CHECK_OK(tsl_dryrun_text(&text, dr));
    CHECK_CONTAINS(text.ptr, "first server changes         7");
    CHECK_CONTAINS(text.ptr, "newly cross-site             7");
    CHECK_CONTAINS(text.ptr, "conditions: cross-site");
    CHECK_CONTAINS(text.ptr, "  Madrid\n    MAD-PC-0001 10.40.1.15 [first, list, cross-site, "
                             "cross-country]\n      before: ts-mad-01");
    CHECK_CONTAINS(text.ptr, "site candidate: assigned to the client's site");
    CHECK_CONTAINS(text.ptr, "fallback: the client's site has no available server");
    tsl_buf_free(&text);
    tsl_dryrun_free(dr);
    sides_close(&s);
}

TEST(dryrun__every_server_down_blocks_every_client)
{
    struct sides s;
    tsl_dryrun *dr = NULL;
    tsl_dryrun_summary sum;
    CHECK_OK(sides_open(&s, "down.db", NULL,
                        "{\"task_servers\":["
                        "{\"name\":\"ts-lon-01\",\"service\":\"stopped\"},"
                        "{\"name\":\"ts-lon-02\",\"service\":\"stopped\"},"
                        "{\"name\":\"ts-lon-lab\",\"service\":\"stopped\"},"
                        "{\"name\":\"ts-fin-01\",\"service\":\"stopped\"},"
                        "{\"name\":\"ts-fin-02\",\"service\":\"stopped\"},"
                        "{\"name\":\"ts-dub-01\",\"service\":\"stopped\"},"
                        "{\"name\":\"ts-dub-02\",\"service\":\"stopped\"},"
                        "{\"name\":\"ts-par-01\",\"service\":\"stopped\"},"
                        "{\"name\":\"ts-mad-01\",\"service\":\"stopped\"},"
                        "{\"name\":\"ts-fra-01\",\"service\":\"stopped\"},"
                        "{\"name\":\"ts-nyc-01\",\"service\":\"stopped\"},"
                        "{\"name\":\"ts-nyc-02\",\"service\":\"stopped\"},"
                        "{\"name\":\"ts-tyo-01\",\"service\":\"stopped\"},"
                        "{\"name\":\"ts-sin-01\",\"service\":\"stopped\"}]}"));
    CHECK_OK(run(&dr, &s, NULL, NULL));
    tsl_dryrun_summary_get(dr, &sum);
    CHECK_INT(sum.newly_blocked, 40);
    CHECK_INT(sum.blocked_before, 0);
    CHECK_INT(sum.blocked_after, 40);
    CHECK_INT(sum.first_changed, 40);
    CHECK_INT(sum.newly_cross_site, 0); /* blocked is not cross-site */
    CHECK_INT(sum.conditions, TSL_DRYRUN_BLOCKED);
    CHECK_INT(dr->servers[s.a->nservers].after, 40); /* the "no server" row */
    tsl_dryrun_free(dr);
    sides_close(&s);
}

TEST(dryrun__over_capacity_is_projected_from_first_servers)
{
    struct sides s;
    tsl_dryrun *dr = NULL;
    tsl_dryrun_summary sum;
    tsl_buf json = TSL_BUF_INIT;
    /* Frankfurt's 5 clients go to ts-fra-01 (ts-fra-02 is unregistered);
     * with a cap of 4 it is over capacity before; stopping ts-fin-02 (which
     * also serves Frankfurt) changes nothing there.  Paris: ts-par-01 cap 2
     * serves Paris's 4 clients before, and the change leaves it so. */
    CHECK_OK(sides_open(&s, "cap.db",
                        "{\"task_servers\":[{\"name\":\"ts-dub-02\",\"capacity\":6,"
                        "\"connections\":0}]}",
                        "{\"task_servers\":[{\"name\":\"ts-mad-01\",\"service\":\"stopped\"},"
                        "{\"name\":\"ts-tyo-01\",\"service\":\"stopped\"}]}"));
    CHECK_OK(run(&dr, &s, to_buf, &json));
    tsl_dryrun_summary_get(dr, &sum);
    int32_t d2 = snap_find_server(s.a, "ts-dub-02");
    /* ts-dub-02, 100% free, is first for Dublin's 3 clients and the one
     * client with no site; the 7 stranded Madrid/Tokyo clients join it */
    CHECK_INT(dr->servers[d2].before, 4);
    CHECK_INT(dr->servers[d2].after, 11);
    CHECK_INT(sum.over_capacity_before, 0);
    CHECK_INT(sum.over_capacity_after, 1);
    CHECK_INT(sum.newly_over_capacity, 1);
    CHECK_INT(sum.conditions, TSL_DRYRUN_CROSS_SITE | TSL_DRYRUN_OVER_CAPACITY);
    /* the streamed JSON is one complete document with every change */
    CHECK(json.ptr != NULL);
    CHECK_CONTAINS(json.ptr, "\"over_capacity_servers\":[\"ts-dub-02\"]");
    CHECK_CONTAINS(json.ptr, "\"conditions\":[\"cross-site\",\"over-capacity\"]");
    CHECK_CONTAINS(json.ptr, "{\"server\":\"ts-dub-02\",\"site\":\"Dublin\",\"capacity\":6,"
                             "\"before\":4,\"after\":11,\"over_before\":false,\"over_after\":true}");
    size_t changes = 0;
    for (const char *p = json.ptr; (p = strstr(p, "{\"client\":")); p++)
        changes++;
    CHECK_INT(changes, sum.list_changed);
    tsl_buf_free(&json);
    tsl_dryrun_free(dr);
    sides_close(&s);
}

TEST(dryrun__top_keeps_the_most_serious_changes)
{
    struct sides s;
    tsl_dryrun *dr = NULL;
    tsl_dryrun_options opt;
    CHECK_OK(sides_open(&s, "top.db", NULL,
                        "{\"task_servers\":[{\"name\":\"ts-mad-01\",\"service\":\"stopped\"},"
                        "{\"name\":\"ts-dub-01\",\"connections\":4900}]}"));
    tsl_dryrun_options_init(&opt);
    opt.now = NOW;
    opt.top = 3;
    CHECK_OK(tsl_dryrun_new(&dr, s.pa, s.pb, &opt));
    CHECK_OK(tsl_dryrun_add_inventory(dr));
    CHECK_OK(tsl_dryrun_finish(dr));
    CHECK_INT(dr->nchanges, 3);
    /* London first-server changes come first in the inventory, but the
     * three Madrid clients sent abroad are more serious */
    for (uint32_t i = 0; i < dr->nchanges; i++) {
        CHECK_STR(s.a->sites[dr->changes[i].site].name, "Madrid");
        CHECK(dr->changes[i].kinds & TSL_DIFF_CROSS_COUNTRY);
    }
    CHECK(dr->sum.first_changed > 3);
    tsl_dryrun_free(dr);
    sides_close(&s);
}

TEST(dryrun__bad_requests_are_counted_not_fatal)
{
    tsl_store *st = NULL;
    tsl_snapshot *snap = NULL;
    tsl_plan *plan = NULL;
    tsl_dryrun *dr = NULL;
    tsl_request req = {0};
    CHECK_OK(store_demo(&st, "bad.db"));
    CHECK_OK(tsl_snapshot_load(&snap, st, NULL));
    CHECK_OK(tsl_plan_new(&plan, snap, NULL));
    CHECK_OK(tsl_dryrun_new(&dr, plan, plan, NULL));
    req.ips[0] = "not-an-ip";
    req.nips = 1;
    CHECK_OK(tsl_dryrun_add(dr, &req));
    req.ips[0] = "10.10.9.9";
    CHECK_OK(tsl_dryrun_add(dr, &req));
    CHECK_OK(tsl_dryrun_finish(dr));
    CHECK_INT(dr->sum.errors, 1);
    CHECK_INT(dr->sum.requests, 1);
    CHECK_INT(tsl_dryrun_add(dr, &req), TSL_EINVALID); /* finished */
    tsl_dryrun_free(dr);
    tsl_plan_free(plan);
    tsl_snapshot_free(snap);
    tsl_store_free(st);
}

TEST(dryrun__different_inventories_are_refused)
{
    tsl_store *st = NULL;
    tsl_snapshot *a = NULL, *b = NULL;
    tsl_plan *pa = NULL, *pb = NULL;
    tsl_dryrun *dr = NULL;
    CHECK_OK(store_demo(&st, "diff.db"));
    CHECK_OK(tsl_snapshot_load(&a, st, NULL));
    CHECK_OK(import(st, "{\"task_servers\":[{\"name\":\"ts-new-01\",\"ip\":\"10.10.0.99\"}]}"));
    CHECK_OK(tsl_snapshot_load(&b, st, NULL));
    CHECK_OK(tsl_plan_new(&pa, a, NULL));
    CHECK_OK(tsl_plan_new(&pb, b, NULL));
    CHECK_INT(tsl_dryrun_new(&dr, pa, pb, NULL), TSL_EINVALID);
    CHECK_NULL(dr);
    CHECK_CONTAINS(tsl_error_last(), "same inventory");
    tsl_plan_free(pa);
    tsl_plan_free(pb);
    tsl_snapshot_free(a);
    tsl_snapshot_free(b);
    tsl_store_free(st);
}

TEST(dryrun__conditions_parse_and_format)
{
    unsigned c;
    char buf[64];
    CHECK_OK(tsl_dryrun_cond_parse(&c, "blocked,cross-site,over-capacity"));
    CHECK_INT(c, TSL_DRYRUN_ALL);
    CHECK_OK(tsl_dryrun_cond_parse(&c, "over-capacity"));
    CHECK_INT(c, TSL_DRYRUN_OVER_CAPACITY);
    CHECK_OK(tsl_dryrun_cond_parse(&c, "all"));
    CHECK_INT(c, TSL_DRYRUN_ALL);
    CHECK_INT(tsl_dryrun_cond_parse(&c, "blocked,abroad"), TSL_EINVALID);
    CHECK_CONTAINS(tsl_error_last(), "unknown condition \"abroad\"");
    tsl_dryrun_cond_format(buf, sizeof buf, TSL_DRYRUN_BLOCKED | TSL_DRYRUN_OVER_CAPACITY);
    CHECK_STR(buf, "blocked,over-capacity");
    tsl_dryrun_cond_format(buf, sizeof buf, 0);
    CHECK_STR(buf, "none");
}

TEST(dryrun__html_is_one_self_contained_page)
{
    struct sides s;
    tsl_dryrun *dr = NULL;
    tsl_buf html = TSL_BUF_INIT;
    CHECK_OK(sides_open(&s, "html.db", NULL,
                        "{\"task_servers\":[{\"name\":\"ts-mad-01\",\"service\":\"stopped\"}]}"));
    CHECK_OK(run(&dr, &s, NULL, NULL));
    CHECK_OK(tsl_dryrun_html(&html, dr));
    CHECK_CONTAINS(html.ptr, "<!DOCTYPE html>");
    CHECK_CONTAINS(html.ptr, "<div class=\"n\" id=\"first-changed\">3</div>");
    CHECK_CONTAINS(html.ptr, "<svg id=\"load-chart\"");
    CHECK_CONTAINS(html.ptr, "<table id=\"site-table\">");
    CHECK(!strstr(html.ptr, "http://") || strstr(html.ptr, "http://www.w3.org/2000/svg"));
    CHECK(!strstr(html.ptr, "https://"));
    CHECK(!strstr(html.ptr, "<script"));
    CHECK(!strstr(html.ptr, "<link"));
    tsl_buf_free(&html);
    tsl_dryrun_free(dr);
    sides_close(&s);
}

int main(void)
{
    RUN(dryrun__identical_sides_change_nothing);
    RUN(dryrun__stopped_site_servers_send_clients_abroad);
    RUN(dryrun__every_server_down_blocks_every_client);
    RUN(dryrun__over_capacity_is_projected_from_first_servers);
    RUN(dryrun__top_keeps_the_most_serious_changes);
    RUN(dryrun__bad_requests_are_counted_not_fatal);
    RUN(dryrun__different_inventories_are_refused);
    RUN(dryrun__conditions_parse_and_format);
    RUN(dryrun__html_is_one_self_contained_page);
    return tsl_test_main();
}
