/*
 * test_decide.c - the default dynamic logic, rule by rule, against a
 * hand-built snapshot (no store involved): site by explicit assignment or
 * longest prefix over several adapters in both families, candidates by
 * manual assignment or by the server's own IP, availability, the three
 * ranking modes, error-window demotion, the hash tie-break, fallback and max.
 */
#include "harness.h"
#include "decide.h"

#define NOW 1800000000LL

static tsl_snapshot *build(const tsl_settings *set)
{
    tsl_snapshot *s;
    const char *lon[] = {"London"}, *dub[] = {"Dublin"}, *tok[] = {"Tokyo"}, *lab[] = {"LondonLab"};
    if (tsl_snapshot_begin(&s, set) < 0)
        return NULL;
    int err = 0;
    err |= snap_add_site(s, "London", "GB", NULL, NULL);
    err |= snap_add_subnet(s, "London", "10.10.0.0/16");
    err |= snap_add_subnet(s, "London", "fd00:10::/48");
    err |= snap_add_site(s, "LondonLab", "GB", NULL, NULL);
    err |= snap_add_subnet(s, "LondonLab", "10.10.9.0/24");
    err |= snap_add_site(s, "Dublin", "IE", NULL, NULL);
    err |= snap_add_subnet(s, "Dublin", "10.20.0.0/16");
    err |= snap_add_site(s, "Tokyo", "JP", NULL, NULL);
    err |= snap_add_subnet(s, "Tokyo", "10.30.0.0/16");
    err |= snap_add_subnet(s, "Tokyo", "fd00:30::/48");
    /* name host ip sites n registered running capacity connections response heartbeat */
    err |= snap_add_server(s, "ts-lon-01", "ts-lon-01.corp", "10.10.0.5", lon, 1, true, true, 1000, 250, 12, 0);
    err |= snap_add_server(s, "ts-lon-02", NULL, "10.10.0.6", lon, 1, true, true, 1000, 100, 30, NOW - 10);
    err |= snap_add_server(s, "ts-lon-03", NULL, "10.10.0.7", lon, 1, true, false, 1000, 0, 1, 0);
    err |= snap_add_server(s, "ts-lon-04", NULL, "10.10.0.9", NULL, 0, true, true, 1000, 500, 5, 0);
    err |= snap_add_server(s, "ts-dub-01", NULL, "10.20.0.5", dub, 1, true, true, 1000, 50, 8, 0);
    err |= snap_add_server(s, "ts-tok-01", NULL, "10.30.0.5", tok, 1, false, true, 1000, 0, 1, 0);
    err |= snap_add_server(s, "ts-tok-02", NULL, "fd00:30::5", NULL, 0, true, true, 100, 0, 1, NOW - 400);
    err |= snap_add_server(s, "ts-lab-01", NULL, "10.10.9.2", lab, 1, true, true, 10, 9, 40, 0);
    err |= snap_add_server(s, "ts-orphan", NULL, "172.16.0.1", NULL, 0, true, true, 1000, 990, 50, 0);
    err |= snap_add_client(s, "C-LON", "LON-PC-1", "10.10.3.17", "Finance", NULL, NULL);
    err |= snap_add_client(s, "C-TOKYO", "LAPTOP-7", "10.10.3.18", "Sales", "Tokyo", NULL);
    err |= snap_add_error(s, "C-LON", "ts-lon-02", NOW - 100);
    err |= tsl_snapshot_seal(s);
    if (err) {
        fprintf(stderr, "fixture: %s\n", tsl_error_last());
        tsl_snapshot_free(s);
        return NULL;
    }
    return s;
}

/* The plan of the last decide_names() call: its result borrows from it, so
 * it lives until the next call. */
static tsl_plan *last_plan;

/* Decides and returns the server names joined by spaces. */
static const char *decide_names(tsl_result *res, const tsl_settings *set, const char *client,
                                const char *ip1, const char *ip2, const char *ip3, int64_t now)
{
    static char names[512];
    tsl_snapshot *s = build(set);
    tsl_plan *p = NULL;
    tsl_worker *w = NULL;
    tsl_request req = {0};
    names[0] = '\0';
    req.client = client;
    const char *ips[] = {ip1, ip2, ip3};
    for (int i = 0; i < 3; i++)
        if (ips[i])
            req.ips[req.nips++] = ips[i];
    req.now = now ? now : NOW;
    if (!s || tsl_plan_new(&p, s, NULL) < 0 || tsl_worker_new(&w) < 0 ||
        tsl_decide(res, w, p, &req, NULL) < 0) {
        snprintf(names, sizeof names, "ERROR %s", tsl_error_last());
    } else {
        for (size_t i = 0; i < tsl_result_count(res); i++) {
            if (i)
                strcat(names, " ");
            strcat(names, tsl_result_entry(res, i)->name);
        }
    }
    tsl_worker_free(w);
    tsl_plan_free(last_plan);
    last_plan = p;
    tsl_snapshot_free(s);
    return names;
}

static tsl_result *res;

TEST(rule1__site_by_longest_subnet_prefix)
{
    CHECK_STR(decide_names(res, NULL, NULL, "10.10.3.17", NULL, NULL, 0), "ts-lon-02 ts-lon-01 ts-lon-04");
    CHECK_STR(tsl_result_site(res), "London");
    CHECK_STR(tsl_result_site_source(res), "subnet 10.10.0.0/16 (adapter 1)");
    CHECK_STR(decide_names(res, NULL, NULL, "10.10.9.5", NULL, NULL, 0), "ts-lab-01");
    CHECK_STR(tsl_result_site(res), "LondonLab");
    CHECK_STR(tsl_result_site_source(res), "subnet 10.10.9.0/24 (adapter 1)");
}

TEST(rule1__ipv6_adapter_resolves_its_site)
{
    CHECK_STR(decide_names(res, NULL, NULL, "fd00:10::1234", NULL, NULL, 0), "ts-lon-02 ts-lon-01 ts-lon-04");
    CHECK_STR(tsl_result_site(res), "London");
    CHECK_STR(tsl_result_site_source(res), "subnet fd00:10::/48 (adapter 1)");
}

TEST(rule1__longest_prefix_over_all_adapters_wins)
{
    decide_names(res, NULL, NULL, "192.168.1.5", "10.20.1.1", "10.10.9.5", 0);
    CHECK_STR(tsl_result_site(res), "LondonLab");
    CHECK_STR(tsl_result_site_source(res), "subnet 10.10.9.0/24 (adapter 3)");
}

TEST(rule1__equal_prefixes_go_to_the_earlier_adapter)
{
    decide_names(res, NULL, NULL, "10.20.1.1", "10.10.3.3", NULL, 0);
    CHECK_STR(tsl_result_site(res), "Dublin");
    decide_names(res, NULL, NULL, "10.10.3.3", "10.20.1.1", NULL, 0);
    CHECK_STR(tsl_result_site(res), "London");
    /* across families prefixes compare in the one 128-bit space: an IPv4 /16
     * (/112 there, 2^16 addresses) is more specific than an IPv6 /48 */
    decide_names(res, NULL, NULL, "fd00:30::9", "10.10.3.3", NULL, 0);
    CHECK_STR(tsl_result_site(res), "London");
    CHECK_STR(tsl_result_site_source(res), "subnet 10.10.0.0/16 (adapter 2)");
}

TEST(rule1__explicit_site_beats_subnets)
{
    /* C-TOKYO sits in a London subnet but is assigned to Tokyo, whose servers are
     * unregistered or stale: every available server is listed as fallback */
    const char *names = decide_names(res, NULL, "C-TOKYO", NULL, NULL, NULL, 0);
    CHECK_STR(tsl_result_site(res), "Tokyo");
    CHECK_STR(tsl_result_site_source(res), "explicit");
    CHECK_STR(names, "ts-dub-01 ts-lon-02 ts-lon-01 ts-lon-04 ts-lab-01 ts-orphan");
    CHECK_INT(tsl_result_entry(res, 0)->tier, 1);
}

TEST(rule1__no_site_falls_back_to_every_available_server)
{
    const char *names = decide_names(res, NULL, NULL, "192.168.1.5", NULL, NULL, 0);
    CHECK_NULL(tsl_result_site(res));
    CHECK_STR(tsl_result_site_source(res), "none");
    CHECK_STR(names, "ts-dub-01 ts-lon-02 ts-lon-01 ts-lon-04 ts-lab-01 ts-orphan");
    for (size_t i = 0; i < tsl_result_count(res); i++) {
        CHECK_INT(tsl_result_entry(res, i)->tier, 1);
        CHECK_CONTAINS(tsl_result_entry(res, i)->reason, "fallback: the client has no site");
    }
}

TEST(rule2__unassigned_server_joins_the_site_of_its_ip)
{
    decide_names(res, NULL, NULL, "10.10.3.17", NULL, NULL, 0);
    const tsl_entry *e = tsl_result_entry(res, 2);
    CHECK_STR(e->name, "ts-lon-04");
    CHECK_STR(e->site, "London");
    CHECK_CONTAINS(e->reason, "its IP lies in the client's site");
    CHECK_CONTAINS(tsl_result_entry(res, 0)->reason, "assigned to the client's site");
    /* the IPv6-only unassigned server belongs to Tokyo by its IP */
    tsl_settings set;
    tsl_settings_init(&set);
    set.stale_after = 1000;
    CHECK_STR(decide_names(res, &set, NULL, "10.30.1.1", NULL, NULL, 0), "ts-tok-02");
    CHECK_STR(tsl_result_entry(res, 0)->site, "Tokyo");
}

TEST(rule3__stale_heartbeat_stopped_and_unregistered_servers_drop_out)
{
    /* Tokyo: tok-01 unregistered, tok-02 heartbeat 400 s old > 180 */
    decide_names(res, NULL, NULL, "10.30.1.1", NULL, NULL, 0);
    CHECK_INT(tsl_result_entry(res, 0)->tier, 1);
    CHECK_CONTAINS(tsl_result_entry(res, 0)->reason, "site has no available server");
    /* a heartbeat 170 s old is fresh */
    CHECK_STR(decide_names(res, NULL, NULL, "10.30.1.1", NULL, NULL, NOW - 230), "ts-tok-02");
    /* a server with no heartbeat recorded is judged on registration and service alone;
     * ts-lon-03 (stopped) never appears */
    const char *names = decide_names(res, NULL, NULL, "10.10.3.17", NULL, NULL, NOW + 100000);
    CHECK(strstr(names, "ts-lon-03") == NULL);
    CHECK(strstr(names, "ts-lon-01") != NULL);
    CHECK(strstr(names, "ts-lon-02") == NULL); /* its heartbeat is stale by then */
}

TEST(rule3__heartbeats_age_from_heard_since_after_a_broker_outage)
{
    /* ts-tok-02's heartbeat is 400 s old: stale, unless the broker only
     * started listening 100 s ago (it could not hear the ones in between) */
    tsl_settings set;
    tsl_settings_init(&set);
    set.heard_since = NOW - 100;
    CHECK_STR(decide_names(res, &set, NULL, "10.30.1.1", NULL, NULL, 0), "ts-tok-02");
    /* ... and 181 s after that start, with still no heartbeat, it is stale again */
    decide_names(res, &set, NULL, "10.30.1.1", NULL, NULL, NOW + 81);
    CHECK_INT(tsl_result_entry(res, 0)->tier, 1);
    set.heard_since = 0;
    decide_names(res, &set, NULL, "10.30.1.1", NULL, NULL, 0);
    CHECK_INT(tsl_result_entry(res, 0)->tier, 1);
}

TEST(rule4__ranking_modes)
{
    tsl_settings set;
    tsl_settings_init(&set);
    set.selection = TSL_SELECT_RESPONSIVENESS;
    CHECK_STR(decide_names(res, &set, NULL, "10.10.3.17", NULL, NULL, 0), "ts-lon-04 ts-lon-01 ts-lon-02");
    set.selection = TSL_SELECT_CONNECTIONS;
    CHECK_STR(decide_names(res, &set, NULL, "10.10.3.17", NULL, NULL, 0), "ts-lon-02 ts-lon-01 ts-lon-04");
    set.selection = TSL_SELECT_CAPACITY;
    CHECK_STR(decide_names(res, &set, NULL, "10.10.3.17", NULL, NULL, 0), "ts-lon-02 ts-lon-01 ts-lon-04");
}

TEST(rule4__recent_connection_error_ranks_last_inside_the_window)
{
    CHECK_STR(decide_names(res, NULL, "C-LON", NULL, NULL, NULL, 0), "ts-lon-01 ts-lon-04 ts-lon-02");
    CHECK(tsl_result_entry(res, 2)->recent_error);
    CHECK(!tsl_result_entry(res, 0)->recent_error);
    /* 3,701 s after the error it no longer counts (window 3,600 s); heartbeat of
     * ts-lon-02 would be stale by then, so widen stale_after */
    tsl_settings set;
    tsl_settings_init(&set);
    set.stale_after = 100000;
    CHECK_STR(decide_names(res, &set, "C-LON", NULL, NULL, NULL, NOW + 3601), "ts-lon-02 ts-lon-01 ts-lon-04");
}

TEST(rule4__ties_spread_clients_evenly_and_stay_stable)
{
    tsl_snapshot *s;
    const char *site[] = {"S"};
    tsl_plan *p = NULL;
    tsl_worker *w = NULL;
    int first[4] = {0};
    CHECK_OK(tsl_snapshot_begin(&s, NULL));
    CHECK_OK(snap_add_site(s, "S", NULL, NULL, NULL));
    CHECK_OK(snap_add_subnet(s, "S", "10.0.0.0/8"));
    const char *names[] = {"a", "b", "c", "d"};
    for (int i = 0; i < 4; i++)
        CHECK_OK(snap_add_server(s, names[i], NULL, NULL, site, 1, true, true, 100, 10, 5, 0));
    CHECK_OK(tsl_snapshot_seal(s));
    CHECK_OK(tsl_plan_new(&p, s, NULL));
    CHECK_OK(tsl_worker_new(&w));
    for (int c = 0; c < 4000; c++) {
        char guid[32];
        snprintf(guid, sizeof guid, "GUID-%d", c);
        tsl_request req = {.client = guid, .ips = {"10.1.2.3"}, .nips = 1, .now = NOW};
        CHECK_OK(tsl_decide(res, w, p, &req, NULL));
        const char *f = tsl_result_entry(res, 0)->name;
        first[f[0] - 'a']++;
        CHECK_OK(tsl_decide(res, w, p, &req, NULL)); /* same client, same list */
        CHECK_STR(tsl_result_entry(res, 0)->name, f);
    }
    for (int i = 0; i < 4; i++) /* 1,000 expected each */
        CHECK(first[i] > 850 && first[i] < 1150);
    tsl_worker_free(w);
    tsl_plan_free(p);
    tsl_snapshot_free(s);
}

TEST(rule6__at_most_max_entries)
{
    tsl_settings set;
    tsl_settings_init(&set);
    set.max = 2;
    CHECK_STR(decide_names(res, &set, NULL, "10.10.3.17", NULL, NULL, 0), "ts-lon-02 ts-lon-01");
    CHECK_STR(decide_names(res, &set, NULL, "192.168.1.1", NULL, NULL, 0), "ts-dub-01 ts-lon-02");
    CHECK_INT(tsl_result_ttl(res), 3600);
}

TEST(request__bad_input_is_refused_with_a_message)
{
    CHECK_STR(decide_names(res, NULL, NULL, "10.10.3.17", "10.1.2.300", NULL, 0),
              "ERROR ip #2: \"10.1.2.300\" is not a valid IPv4 or IPv6 address");
    CHECK_STR(decide_names(res, NULL, "NOBODY", NULL, NULL, NULL, 0),
              "ERROR client \"NOBODY\" is not in the inventory and the request has no IP");
    CHECK_STR(decide_names(res, NULL, NULL, NULL, NULL, NULL, 0),
              "ERROR a request needs an IP address or a known client");
}

TEST(result__json_has_every_field)
{
    tsl_buf b = TSL_BUF_INIT;
    decide_names(res, NULL, "C-LON", NULL, NULL, NULL, 0);
    CHECK_OK(tsl_result_json(&b, res));
    CHECK_CONTAINS(b.ptr, "{\"client\":\"C-LON\",\"site\":\"London\",\"site_source\":\"subnet 10.10.0.0/16 (adapter 1)\","
                          "\"policy\":null,\"blocked\":false,\"blocked_reason\":null,\"strict\":false,\"ttl\":3600,"
                          "\"servers\":[{\"name\":\"ts-lon-01\",\"host\":\"ts-lon-01.corp\",\"ip\":\"10.10.0.5\","
                          "\"site\":\"London\",\"tier\":0,\"after\":0,\"reason\":\"site candidate: assigned to the client's site\","
                          "\"capacity\":1000,\"connections\":250,\"response_ms\":12,\"full\":false,\"recent_error\":false}");
    CHECK_CONTAINS(b.ptr, "\"recent_error\":true}]}");
    tsl_buf_free(&b);
}

TEST(explain__trace_names_every_step)
{
    tsl_snapshot *s = build(NULL);
    tsl_plan *p = NULL;
    tsl_worker *w = NULL;
    tsl_trace *tr = NULL;
    tsl_buf all = TSL_BUF_INIT;
    CHECK(s);
    CHECK_OK(tsl_plan_new(&p, s, NULL));
    CHECK_OK(tsl_worker_new(&w));
    CHECK_OK(tsl_trace_new(&tr));
    tsl_request req = {.client = "C-LON", .ips = {"192.168.7.7", "10.10.9.40"}, .nips = 2, .now = NOW};
    CHECK_OK(tsl_decide(res, w, p, &req, tr));
    for (size_t i = 0; i < tsl_trace_count(tr); i++) {
        tsl_buf_puts(&all, tsl_trace_line(tr, i));
        tsl_buf_puts(&all, "\n");
    }
    CHECK_CONTAINS(all.ptr, "adapter 1 192.168.7.7: in no site subnet");
    CHECK_CONTAINS(all.ptr, "adapter 2 10.10.9.40: longest matching subnet 10.10.9.0/24 of site \"LondonLab\"");
    CHECK_CONTAINS(all.ptr, "connection error with ts-lon-02 100 s ago");
    CHECK_CONTAINS(all.ptr, "tier 0 #1 ts-lab-01: free 10.0% (9/10 connections)");
    req.nips = 1;
    req.ips[0] = "10.10.1.1";
    tsl_trace_clear(tr);
    tsl_buf_clear(&all);
    CHECK_OK(tsl_decide(res, w, p, &req, tr));
    for (size_t i = 0; i < tsl_trace_count(tr); i++) {
        tsl_buf_puts(&all, tsl_trace_line(tr, i));
        tsl_buf_puts(&all, "\n");
    }
    CHECK_CONTAINS(all.ptr, "ts-lon-03 dropped: Task Server service stopped");
    tsl_buf_free(&all);
    tsl_trace_free(tr);
    tsl_worker_free(w);
    tsl_plan_free(p);
    tsl_snapshot_free(s);
}

TEST(snapshot__refuses_unknown_sites_and_gives_a_shared_subnet_to_the_first_site_by_name)
{
    tsl_snapshot *s;
    const char *nowhere[] = {"Nowhere"};
    tsl_ip ip;
    tsl_lpm_match m;
    CHECK_OK(tsl_snapshot_begin(&s, NULL));
    CHECK_OK(snap_add_site(s, "Zurich", NULL, NULL, NULL));
    CHECK_OK(snap_add_site(s, "amsterdam", NULL, NULL, NULL));
    CHECK_OK(snap_add_site(s, "Berlin", NULL, NULL, NULL));
    /* whatever the order of loading, the first by name (ignoring case) */
    CHECK_OK(snap_add_subnet(s, "Zurich", "10.0.0.0/8"));
    CHECK_OK(snap_add_subnet(s, "amsterdam", "10.0.0.0/8"));
    CHECK_OK(snap_add_subnet(s, "Berlin", "10.0.0.0/8"));
    CHECK_OK(snap_add_subnet(s, "Berlin", "10.0.0.0/8")); /* the same site twice: once */
    CHECK_OK(snap_add_subnet(s, "Zurich", "10.9.0.0/16"));
    CHECK_OK(tsl_ip_parse(&ip, "10.1.2.3"));
    CHECK(tsl_lpm_lookup(&s->lpm, &ip, &m));
    CHECK_STR(s->sites[m.value].name, "amsterdam");
    CHECK_OK(tsl_ip_parse(&ip, "10.9.2.3"));
    CHECK(tsl_lpm_lookup(&s->lpm, &ip, &m)); /* the longest prefix first */
    CHECK_STR(s->sites[m.value].name, "Zurich");
    CHECK_INT((int)s->sites[2].nsubnets, 1);
    CHECK_INT(snap_add_server(s, "x", NULL, NULL, nowhere, 1, true, true, 1, 0, 0, 0), TSL_ENOTFOUND);
    CHECK_CONTAINS(tsl_error_last(), "unknown site \"Nowhere\"");
    CHECK_INT(snap_add_site(s, "a", NULL, NULL, NULL), 0);
    CHECK_INT(snap_add_site(s, "ZURICH", NULL, NULL, NULL), TSL_EEXISTS); /* names are case-insensitive */
    tsl_snapshot_free(s);
}

int main(void)
{
    if (tsl_result_new(&res) < 0)
        return 2;
    RUN(rule1__site_by_longest_subnet_prefix);
    RUN(rule1__ipv6_adapter_resolves_its_site);
    RUN(rule1__longest_prefix_over_all_adapters_wins);
    RUN(rule1__equal_prefixes_go_to_the_earlier_adapter);
    RUN(rule1__explicit_site_beats_subnets);
    RUN(rule1__no_site_falls_back_to_every_available_server);
    RUN(rule2__unassigned_server_joins_the_site_of_its_ip);
    RUN(rule3__stale_heartbeat_stopped_and_unregistered_servers_drop_out);
    RUN(rule3__heartbeats_age_from_heard_since_after_a_broker_outage);
    RUN(rule4__ranking_modes);
    RUN(rule4__recent_connection_error_ranks_last_inside_the_window);
    RUN(rule4__ties_spread_clients_evenly_and_stay_stable);
    RUN(rule6__at_most_max_entries);
    RUN(request__bad_input_is_refused_with_a_message);
    RUN(result__json_has_every_field);
    RUN(explain__trace_names_every_step);
    RUN(snapshot__refuses_unknown_sites_and_gives_a_shared_subnet_to_the_first_site_by_name);
    int rc = tsl_test_main();
    tsl_plan_free(last_plan);
    tsl_result_free(res);
    return rc;
}
