/*
 * test_broker_derive.c - tsl_snapshot_derive, the broker's cheap new
 * snapshot from heartbeats and registration failures: it shares the root's
 * clients, changes only what the updates say, registers new servers,
 * recomputes site candidates, carries errors forward inside the window, and
 * never chains references (each derived snapshot holds the root only).
 * Also the cost on a 2,000-server / 200,000-client estate.
 */
#include "decide.h"
#include "harness.h"

#include <time.h>

#define NOW 1800000000LL

static tsl_snapshot *build(void)
{
    tsl_snapshot *s;
    const char *lon[] = {"London"};
    if (tsl_snapshot_begin(&s, NULL) < 0)
        return NULL;
    int err = 0;
    err |= snap_add_site(s, "London", "GB", NULL, NULL);
    err |= snap_add_subnet(s, "London", "10.10.0.0/16");
    err |= snap_add_site(s, "Paris", "FR", NULL, NULL);
    err |= snap_add_subnet(s, "Paris", "10.20.0.0/16");
    err |= snap_add_server(s, "ts-lon-01", "ts-lon-01.corp", "10.10.0.5", lon, 1, true, true, 1000, 250, 12, 0);
    err |= snap_add_server(s, "ts-lon-02", NULL, "10.10.0.6", lon, 1, true, true, 1000, 500, 5, 0);
    err |= snap_add_server(s, "ts-any", NULL, "10.20.0.9", NULL, 0, true, true, 1000, 900, 5, 0);
    err |= snap_add_client(s, "A1", "LON-PC-1", "10.10.3.17", "Finance", NULL, NULL);
    err |= snap_add_client(s, "P1", "PAR-PC-1", "10.20.1.1", NULL, NULL, NULL);
    err |= snap_add_error(s, "A1", "ts-lon-02", NOW - 60);
    err |= tsl_snapshot_seal(s);
    if (err) {
        fprintf(stderr, "fixture: %s\n", tsl_error_last());
        tsl_snapshot_free(s);
        return NULL;
    }
    return s;
}

/* "a,b" of the list for `ip` (and client) against snapshot s, static. */
static const char *list(tsl_snapshot *s, const char *client, const char *ip)
{
    static char out[4][256];
    static int next;
    char *o = out[next];
    next = (next + 1) % 4;
    tsl_plan *p = NULL;
    tsl_worker *w = NULL;
    tsl_result *r = NULL;
    tsl_request req = {.client = client, .ips = {ip}, .nips = ip ? 1 : 0, .now = NOW};
    snprintf(o, 256, "ERROR");
    if (tsl_plan_new(&p, s, NULL) == 0 && tsl_worker_new(&w) == 0 && tsl_result_new(&r) == 0 &&
        tsl_decide(r, w, p, &req, NULL) == 0) {
        size_t n = 0;
        o[0] = '\0';
        for (size_t i = 0; i < tsl_result_count(r); i++)
            n += (size_t)snprintf(o + n, 256 - n, "%s%s", i ? "," : "", tsl_result_entry(r, i)->name);
    }
    tsl_result_free(r);
    tsl_worker_free(w);
    tsl_plan_free(p);
    return o;
}

TEST(derive__updates_metrics_and_shares_the_clients)
{
    tsl_snapshot *root = build(), *d = NULL;
    CHECK(root);
    snap_server_update up = {.name = "TS-LON-02", .set = SNAP_UP_CONNECTIONS | SNAP_UP_HEARTBEAT,
                             .connections = 0, .heartbeat = NOW};
    CHECK_OK(tsl_snapshot_derive(&d, root, &up, 1, NULL, 0, NOW));
    CHECK(d->clients == root->clients);         /* shared, not copied */
    CHECK(d->servers != root->servers);         /* the server table is its own */
    CHECK_INT(d->servers[1].connections, 0);
    CHECK_INT(d->servers[1].heartbeat, NOW);
    CHECK_INT(root->servers[1].connections, 500); /* the root never changes */
    CHECK_INT(tsl_snapshot_built_at(d), NOW);
    CHECK_STR(list(root, NULL, "10.10.1.1"), "ts-lon-01,ts-lon-02");
    CHECK_STR(list(d, NULL, "10.10.1.1"), "ts-lon-02,ts-lon-01");
    /* the root's error still demotes ts-lon-02 for A1 */
    CHECK_STR(list(d, "A1", NULL), "ts-lon-01,ts-lon-02");
    /* the root can go first: the derived snapshot holds it */
    tsl_snapshot_free(root);
    CHECK_STR(list(d, NULL, "10.10.1.1"), "ts-lon-02,ts-lon-01");
    tsl_snapshot_free(d);
}

TEST(derive__stopped_server_and_new_server_and_moved_ip)
{
    tsl_snapshot *root = build(), *d1 = NULL, *d2 = NULL;
    CHECK(root);
    const char *par[] = {"paris"};
    snap_server_update ups[] = {
        {.name = "ts-lon-01", .set = SNAP_UP_RUNNING, .running = false},
        {.name = "ts-par-09", .set = SNAP_UP_SITES | SNAP_UP_HOST | SNAP_UP_CAPACITY,
         .sites = par, .nsites = 1, .host = "ts-par-09.corp", .capacity = 10},
        /* an unassigned server whose IP moves from Paris to London */
        {.name = "ts-any", .set = SNAP_UP_IP, .ip = "10.10.0.99"},
    };
    CHECK_OK(tsl_snapshot_derive(&d1, root, ups, 3, NULL, 0, NOW));
    CHECK_INT(tsl_snapshot_server_count(d1), 4);
    CHECK_STR(list(d1, NULL, "10.10.1.1"), "ts-lon-02,ts-any");
    CHECK_STR(list(d1, NULL, "10.20.1.1"), "ts-par-09");
    CHECK_STR(d1->servers[3].host, "ts-par-09.corp");
    CHECK_STR(d1->sites[d1->servers[3].home].name, "Paris");
    CHECK_INT(d1->servers[3].capacity, 10);
    CHECK(d1->servers[3].registered && d1->servers[3].running);
    /* derive again from the derived one: strings survive, the root is the only parent */
    snap_server_update up2 = {.name = "ts-lon-01", .set = SNAP_UP_RUNNING, .running = true};
    CHECK_OK(tsl_snapshot_derive(&d2, d1, &up2, 1, NULL, 0, NOW));
    CHECK(d2->root == root && d1->root == root);
    tsl_snapshot_free(d1); /* the new server's strings were copied into d2 */
    CHECK_STR(d2->servers[3].name, "ts-par-09");
    CHECK_STR(d2->servers[3].host, "ts-par-09.corp");
    CHECK_STR(d2->servers[2].ip, "10.10.0.99");
    CHECK_STR(list(d2, NULL, "10.10.1.1"), "ts-lon-01,ts-lon-02,ts-any");
    CHECK_INT(snap_find_server(d2, "TS-PAR-09"), 3);
    tsl_snapshot_free(root);
    tsl_snapshot_free(d2);
}

TEST(derive__errors_demote_inside_the_window_and_expire)
{
    tsl_snapshot *root = build(), *d1 = NULL, *d2 = NULL, *d3 = NULL;
    CHECK(root);
    snap_error_update errs[] = {
        {"p1", "ts-any", NOW - 10},        /* GUIDs and names match case-insensitively */
        {"nobody", "ts-any", NOW},         /* unknown client: skipped */
        {"P1", "ts-nowhere", NOW},         /* unknown server: skipped */
    };
    CHECK_OK(tsl_snapshot_derive(&d1, root, NULL, 0, errs, 3, NOW));
    CHECK_INT(d1->nextra, 1);
    uint32_t n;
    const snap_extra_error *x = snap_client_extra_errors(d1, 1, &n);
    CHECK_INT(n, 1);
    CHECK_INT(x[0].server, 2);
    CHECK(snap_client_extra_errors(d1, 0, &n) == NULL && n == 0);
    /* P1's list: ts-any is its only Paris candidate, so the error only marks it */
    tsl_plan *p = NULL;
    tsl_worker *w = NULL;
    tsl_result *r = NULL;
    tsl_request req = {.client = "P1", .now = NOW};
    CHECK_OK(tsl_plan_new(&p, d1, NULL));
    CHECK_OK(tsl_worker_new(&w));
    CHECK_OK(tsl_result_new(&r));
    CHECK_OK(tsl_decide(r, w, p, &req, NULL));
    bool recent = tsl_result_count(r) == 1 && tsl_result_entry(r, 0)->recent_error;
    tsl_result_free(r);
    tsl_worker_free(w);
    tsl_plan_free(p);
    CHECK(recent);
    /* carried forward while inside the window, dropped after it */
    CHECK_OK(tsl_snapshot_derive(&d2, d1, NULL, 0, NULL, 0, NOW + 3000));
    CHECK_INT(d2->nextra, 1);
    CHECK_OK(tsl_snapshot_derive(&d3, d2, NULL, 0, NULL, 0, NOW + 3600));
    CHECK_INT(d3->nextra, 0);
    tsl_snapshot_free(d1);
    tsl_snapshot_free(d2);
    tsl_snapshot_free(d3);
    tsl_snapshot_free(root);
}

TEST(derive__refuses_an_unknown_site_and_a_bad_ip)
{
    tsl_snapshot *root = build(), *d = NULL;
    CHECK(root);
    const char *nowhere[] = {"Atlantis"};
    snap_server_update bad1 = {.name = "ts-x", .set = SNAP_UP_SITES, .sites = nowhere, .nsites = 1};
    CHECK_INT(tsl_snapshot_derive(&d, root, &bad1, 1, NULL, 0, NOW), TSL_ENOTFOUND);
    CHECK_NULL(d);
    CHECK_CONTAINS(tsl_error_last(), "unknown site \"Atlantis\"");
    snap_server_update bad2 = {.name = "ts-lon-01", .set = SNAP_UP_IP, .ip = "10.10.0.300"};
    CHECK_INT(tsl_snapshot_derive(&d, root, &bad2, 1, NULL, 0, NOW), TSL_EINVALID);
    CHECK_NULL(d);
    tsl_snapshot_free(root);
}

/* The broker derives at most every refresh interval: on 2,000 servers and
 * 200,000 clients it must cost far less than a reload. */
TEST(derive__is_cheap_on_a_large_estate)
{
    tsl_snapshot *root = NULL, *d = NULL;
    char name[64], ip[64], site[32];
    CHECK_OK(tsl_snapshot_begin(&root, NULL));
    for (int i = 0; i < 500; i++) {
        snprintf(site, sizeof site, "site-%03d", i);
        snprintf(ip, sizeof ip, "10.%d.%d.0/24", i / 256, i % 256);
        CHECK_OK(snap_add_site(root, site, NULL, NULL, NULL));
        CHECK_OK(snap_add_subnet(root, site, ip));
    }
    for (int i = 0; i < 2000; i++) {
        snprintf(name, sizeof name, "ts-%04d", i);
        snprintf(ip, sizeof ip, "10.%d.%d.%d", (i % 500) / 256, (i % 500) % 256, 10 + i / 500);
        CHECK_OK(snap_add_server(root, name, NULL, ip, NULL, 0, true, true, 5000, i, 5, NOW));
    }
    for (int i = 0; i < 200000; i++) {
        snprintf(name, sizeof name, "client-%06d", i);
        snprintf(ip, sizeof ip, "10.%d.%d.%d", (i % 500) / 256, (i % 500) % 256, 100 + i % 100);
        CHECK_OK(snap_add_client(root, name, NULL, ip, NULL, NULL, NULL));
    }
    CHECK_OK(tsl_snapshot_seal(root));
    snap_server_update ups[100];
    for (int i = 0; i < 100; i++) {
        static char names[100][16];
        snprintf(names[i], sizeof names[i], "ts-%04d", i * 20);
        ups[i] = (snap_server_update){.name = names[i], .set = SNAP_UP_CONNECTIONS | SNAP_UP_HEARTBEAT,
                                      .connections = 1, .heartbeat = NOW};
    }
    struct timespec t0, t1;
    double best = 1e9;
    for (int round = 0; round < 5; round++) {
        clock_gettime(CLOCK_MONOTONIC, &t0);
        CHECK_OK(tsl_snapshot_derive(&d, root, ups, 100, NULL, 0, NOW));
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
        if (ms < best)
            best = ms;
        CHECK(d->clients == root->clients);
        tsl_snapshot_free(d);
        d = NULL;
    }
    printf("# derive: 500 sites, 2000 servers, 200000 clients, 100 updates: best %.3f ms\n", best);
    tsl_snapshot_free(root);
    /* generous for sanitizer builds; it is well under a millisecond optimised */
    if (best > 50.0)
        FAILF_("deriving took %.2f ms", best);
}

int main(void)
{
    RUN(derive__updates_metrics_and_shares_the_clients);
    RUN(derive__stopped_server_and_new_server_and_moved_ip);
    RUN(derive__errors_demote_inside_the_window_and_expire);
    RUN(derive__refuses_an_unknown_site_and_a_bad_ip);
    RUN(derive__is_cheap_on_a_large_estate);
    return tsl_test_main();
}
