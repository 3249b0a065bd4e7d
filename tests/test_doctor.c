/*
 * test_doctor.c - tsl_doctor against a hand-built snapshot (no store): each
 * check passes, warns and fails where it should, the three formats, and an
 * unknown client is a failed check rather than an error.
 */
#include "harness.h"
#include "decide.h"

#include <jansson.h>

#define NOW 1800000000LL

static tsl_snapshot *build(void)
{
    tsl_snapshot *s;
    const char *lon[] = {"London"}, *par[] = {"Paris"};
    if (tsl_snapshot_begin(&s, NULL) < 0)
        return NULL;
    int err = 0;
    err |= snap_add_site(s, "London", "GB", NULL, NULL);
    err |= snap_add_subnet(s, "London", "10.10.0.0/16");
    err |= snap_add_subnet(s, "London", "fd00:10::/48");
    err |= snap_add_site(s, "Paris", "FR", NULL, NULL);
    err |= snap_add_subnet(s, "Paris", "10.20.0.0/16");
    err |= snap_add_site(s, "Empty", "DE", NULL, NULL);
    err |= snap_add_subnet(s, "Empty", "10.40.0.0/16");
    /* name host ip sites n registered running capacity connections response heartbeat */
    err |= snap_add_server(s, "ts-lon-01", "ts-lon-01.corp", "10.10.0.5", lon, 1, true, true, 1000, 250, 12, NOW - 30);
    err |= snap_add_server(s, "ts-lon-02", NULL, "10.10.0.6", lon, 1, true, false, 1000, 0, 5, 0);
    err |= snap_add_server(s, "ts-lon-03", NULL, "10.10.0.7", NULL, 0, true, true, 100, 100, 5, 0);
    err |= snap_add_server(s, "ts-par-01", NULL, "10.20.0.5", par, 1, false, true, 1000, 0, 5, 0);
    err |= snap_add_server(s, "ts-par-02", NULL, "10.20.0.6", par, 1, true, true, 1000, 0, 5, NOW - 900);
    err |= snap_add_client(s, "C-LON", "LON-PC-1", "10.10.3.17", "Finance", NULL, "ts-lon-01");
    err |= snap_add_client(s, "C-PAR", "PAR-PC-1", "10.20.1.1", "Sales", NULL, NULL);
    err |= snap_add_client(s, "C-NONE", "VPN-7", "192.168.7.7", NULL, NULL, NULL);
    err |= snap_add_client(s, "C-EMPTY", "BER-PC-1", "10.40.0.9", NULL, NULL, NULL);
    err |= snap_add_client(s, "C-EXPL", "LAPTOP-9", "192.168.7.8", NULL, "Paris", NULL);
    err |= snap_add_error(s, "C-LON", "ts-lon-01", NOW - 120);
    err |= tsl_snapshot_seal(s);
    if (err) {
        fprintf(stderr, "fixture: %s\n", tsl_error_last());
        tsl_snapshot_free(s);
        return NULL;
    }
    return s;
}

/* Runs the doctor for `guid`; returns the text (static) and the summary. */
static const char *doctor(const char *guid, tsl_format fmt, tsl_doctor_summary *sum)
{
    static char text[8192];
    tsl_snapshot *s = build();
    tsl_plan *p = NULL;
    tsl_worker *w = NULL;
    tsl_buf out = TSL_BUF_INIT;
    text[0] = '\0';
    if (!s || tsl_plan_new(&p, s, NULL) < 0 || tsl_worker_new(&w) < 0 ||
        tsl_doctor(&out, sum, w, p, NULL, guid, fmt, NOW) < 0)
        snprintf(text, sizeof text, "ERROR %s", tsl_error_last());
    else
        snprintf(text, sizeof text, "%s", out.ptr ? out.ptr : "");
    tsl_buf_free(&out);
    tsl_worker_free(w);
    tsl_plan_free(p);
    tsl_snapshot_free(s);
    return text;
}

TEST(doctor__healthy_site_passes_with_a_down_candidate_failing)
{
    tsl_doctor_summary sum;
    const char *t = doctor("C-LON", TSL_FORMAT_TEXT, &sum);
    CHECK_CONTAINS(t, "PASS  client: LON-PC-1, ip 10.10.3.17, department Finance\n");
    CHECK_CONTAINS(t, "PASS  site: London (subnet 10.10.0.0/16 (adapter 1))\n");
    CHECK_CONTAINS(t, "PASS  candidates: site London has 3 Task Servers, 2 available\n");
    CHECK_CONTAINS(t, "PASS  task server ts-lon-01: registered, service running, heartbeat 30 s ago\n");
    CHECK_CONTAINS(t, "FAIL  task server ts-lon-02: unavailable: Task Server service stopped\n");
    CHECK_CONTAINS(t, "WARN  task server ts-lon-03: registered, service running, heartbeat none "
                      "recorded, but full (100/100 connections)\n");
    CHECK_CONTAINS(t, "PASS  list: 2 servers: ts-lon-03, ts-lon-01\n");
    CHECK_CONTAINS(t, "PASS  last registration: on ts-lon-01, in its approved set (tier 0, entry "
                      "#2 of its list)\n");
    CHECK_CONTAINS(t, "WARN  last connection error: 2027-01-15T07:58:00Z (2 min ago) on ts-lon-01: "
                      "(no text recorded); inside the error window: ranked behind the servers "
                      "without one in its tier (entry #2, tier 0)\n");
    CHECK_CONTAINS(t, "checks: 6 pass, 2 warn, 1 fail\n");
    CHECK_INT(sum.passed, 6);
    CHECK_INT(sum.warnings, 2);
    CHECK_INT(sum.failed, 1);
}

TEST(doctor__unregistered_and_stale_servers_fail_and_list_falls_back)
{
    tsl_doctor_summary sum;
    const char *t = doctor("C-PAR", TSL_FORMAT_TEXT, &sum);
    CHECK_CONTAINS(t, "FAIL  candidates: site Paris has 2 Task Servers, 0 available\n");
    CHECK_CONTAINS(t, "FAIL  task server ts-par-01: unavailable: not registered with the SMP\n");
    CHECK_CONTAINS(t, "FAIL  task server ts-par-02: unavailable: last heartbeat 900 s ago "
                      "(stale after 180 s)\n");
    CHECK_CONTAINS(t, "WARN  list: 2 servers, all cross-site fallback (tier 1): ");
    CHECK_CONTAINS(t, "PASS  last connection error: none recorded\n");
    CHECK_INT(sum.failed, 3);
}

TEST(doctor__client_without_site_fails_the_site_check)
{
    tsl_doctor_summary sum;
    const char *t = doctor("C-NONE", TSL_FORMAT_TEXT, &sum);
    CHECK_CONTAINS(t, "FAIL  site: none: no explicit site and 192.168.7.7 is in no site subnet");
    CHECK_CONTAINS(t, "WARN  candidates: none without a site");
    CHECK_CONTAINS(t, "WARN  list: 2 servers, all cross-site fallback (tier 1)");
    CHECK_INT(sum.failed, 1);
}

TEST(doctor__site_without_servers_fails_candidates)
{
    tsl_doctor_summary sum;
    const char *t = doctor("C-EMPTY", TSL_FORMAT_TEXT, &sum);
    CHECK_CONTAINS(t, "PASS  site: Empty (subnet 10.40.0.0/16 (adapter 1))\n");
    CHECK_CONTAINS(t, "FAIL  candidates: site Empty has no Task Server");
}

TEST(doctor__explicit_site_is_named_as_such)
{
    tsl_doctor_summary sum;
    const char *t = doctor("C-EXPL", TSL_FORMAT_TEXT, &sum);
    CHECK_CONTAINS(t, "PASS  site: Paris (explicit)\n");
}

TEST(doctor__unknown_client_is_a_failed_check_not_an_error)
{
    tsl_doctor_summary sum;
    const char *t = doctor("NOPE", TSL_FORMAT_TEXT, &sum);
    CHECK_CONTAINS(t, "FAIL  client: no client with GUID NOPE in the inventory (5 clients)");
    CHECK_INT(sum.passed, 0);
    CHECK_INT(sum.failed, 1);
}

TEST(doctor__json_and_csv)
{
    tsl_doctor_summary sum;
    const char *t = doctor("C-EXPL", TSL_FORMAT_JSON, &sum);
    const char *head = "{\"client\": \"C-EXPL\", \"now\": \"2027-01-15T08:00:00Z\", \"policy\": null,";
    CHECK(strncmp(t, head, strlen(head)) == 0);
    CHECK_CONTAINS(t, "{\"status\": \"pass\", \"check\": \"site\", \"detail\": \"Paris (explicit)\"}");
    json_error_t jerr;
    json_t *doc = json_loads(t, 0, &jerr);
    CHECK(doc != NULL);
    int failed = (int)json_integer_value(json_object_get(doc, "failed"));
    size_t nchecks = json_array_size(json_object_get(doc, "checks"));
    json_decref(doc);
    CHECK_INT(failed, (int)sum.failed);
    CHECK_INT(nchecks, sum.passed + sum.warnings + sum.failed);
    t = doctor("C-EXPL", TSL_FORMAT_CSV, &sum);
    CHECK(strncmp(t, "status,check,detail\n", 20) == 0);
    CHECK_CONTAINS(t, "\npass,site,Paris (explicit)\n");
    CHECK_CONTAINS(t, "\nfail,task server ts-par-01,unavailable: not registered with the SMP\n");
}

int main(void)
{
    RUN(doctor__healthy_site_passes_with_a_down_candidate_failing);
    RUN(doctor__unregistered_and_stale_servers_fail_and_list_falls_back);
    RUN(doctor__client_without_site_fails_the_site_check);
    RUN(doctor__site_without_servers_fails_candidates);
    RUN(doctor__explicit_site_is_named_as_such);
    RUN(doctor__unknown_client_is_a_failed_check_not_an_error);
    RUN(doctor__json_and_csv);
    return tsl_test_main();
}
