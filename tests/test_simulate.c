/*
 * test_simulate.c - the fleet simulator on its own: the scenario parser
 * (every directive, errors with FILE:LINE), and whole runs against a
 * stand-in broker that decides with the engine's default logic
 * (sim_fake_broker.h): a site whose servers stop sends its clients abroad
 * and breaks the promise made for it; a broker outage is ridden out on
 * cached lists; a cut link and a dark site are left by their clients; an
 * invariant that does not hold fails the run.
 *
 * The shipped scenarios (the .scn files of tests/scenarios) run against the real
 * broker through `tsl simulate` (the scenario_NAME ctests, test_simulate_cli.sh).
 */
#include "harness.h"

#include "sim.h"
#include "sim_fake_broker.h"
#include "sim_internal.h"

#include <math.h>

#define ESTATE TSL_SOURCE_DIR "/tests/scenarios/estates/europe.json"

static tsl_sim_scenario *scenario(const char *text)
{
    tsl_sim_scenario *s = NULL;
    const char *path = tsl_test_path("t.scn");
    if (tsl_test_write(path, text) != 0 || tsl_sim_scenario_load(&s, path) < 0)
        fprintf(stderr, "  scenario: %s\n", tsl_error_last());
    return s;
}

static char logtext[1 << 20];

static void on_log(void *arg, const char *line)
{
    (void)arg;
    size_t n = strlen(logtext);
    snprintf(logtext + n, sizeof logtext - n, "%s\n", line);
}

/* Runs with the fake broker; returns the report (static) or NULL. */
static const char *run(const tsl_sim_scenario *s, tsl_sim_outcome *out)
{
    static tsl_buf report = TSL_BUF_INIT;
    tsl_sim_options opt = {&fake_broker_ops, tsl_test_tmpdir(), 0, 1, on_log, NULL, NULL};
    tsl_buf_clear(&report);
    logtext[0] = '\0';
    if (tsl_sim_run(&report, out, s, &opt) < 0) {
        fprintf(stderr, "  run: %s\n", tsl_error_last());
        return NULL;
    }
    if (getenv("TSL_TEST_VERBOSE"))
        fprintf(stderr, "%s%s", logtext, report.ptr);
    else if (out->broken) /* which ones, for a run that was not meant to break */
        for (const char *p = strstr(report.ptr, "\n  FAIL  "); p; p = strstr(p + 1, "\n  FAIL  "))
            fprintf(stderr, "  %.*s\n", (int)strcspn(p + 1, "\n"), p + 1);
    return report.ptr;
}

/* The value of `name` in the report's metrics block. */
static double metric(const char *report, const char *name)
{
    char key[160];
    snprintf(key, sizeof key, "\n  %s ", name);
    const char *p = report ? strstr(report, key) : NULL;
    return p ? strtod(p + strlen(key), NULL) : -1;
}

/* ------------------------------------------------------------------------
 * The scenario format
 * ---------------------------------------------------------------------- */

TEST(simulate__scenario_reads_every_directive)
{
    tsl_sim_scenario *s = scenario(
        "# a comment\n"
        "name   every-directive\n"
        "description  all of them, once   # trailing comment\n"
        "inventory estates/x.json\n"
        "policy /abs/p.lua\n"
        "selection capacity responsiveness\n"
        "speed 250\nduration 2h\nseed 7\nstart-spread 90s\nheartbeat 15\n"
        "broker stale-after=60 error-window=10m ttl=300 max=5\n"
        "agent poll=60 retry=10 retry-max=5m stuck-retry=30 timeout=4 register-timeout=6 refresh=0.5\n"
        "server ts-a capacity=10 response-ms=3\n"
        "clients 10 name=lon site=London department=Finance task=imaging\n"
        "clients inventory name=inv\n"
        "at 10m stop ts-a\nat 5m cut London ts-b\nat 1h activate next.lua\nat 20 broker-restart\n"
        "promise site=London department=Finance only ts-fin-* ts-lon-01 from 30m\n"
        "promise site=London only ts-lon-* until 10m\n"
        "expect lon:outside_approved == 0\n"
        "expect stranded_max_s <= 120.5\n");
    CHECK(s);
    CHECK_STR(tsl_sim_scenario_name(s), "every-directive");
    CHECK_STR(s->description, "all of them, once");
    CHECK_CONTAINS(s->inventory, "/estates/x.json");
    CHECK_STR(s->policy, "/abs/p.lua");
    CHECK_INT(s->nselections, 2);
    CHECK(s->speed == 250 && s->duration == 7200 && s->seed == 7 && s->start_spread == 90);
    CHECK(s->heartbeat == 15);
    CHECK_INT(s->broker.stale_after, 60);
    CHECK_INT(s->broker.error_window, 600);
    CHECK_INT(s->broker.ttl, 300);
    CHECK_INT(s->broker.max, 5);
    CHECK(s->agent.poll_interval == 60 && s->agent.retry_max == 300 && s->agent.refresh == 0.5);
    CHECK_INT(s->nservers, 1);
    CHECK_INT(s->servers[0].capacity, 10);
    CHECK_INT(s->ngroups, 2);
    CHECK_INT(s->groups[1].count, -1);
    CHECK_STR(s->groups[0].task, "imaging");
    CHECK_INT(s->nfaults, 4);
    /* sorted by time */
    CHECK_INT(s->faults[0].kind, SCN_BROKER_RESTART);
    CHECK_INT(s->faults[1].kind, SCN_CUT);
    CHECK_STR(s->faults[1].b, "ts-b");
    CHECK_INT(s->faults[3].kind, SCN_ACTIVATE);
    CHECK_CONTAINS(s->faults[3].a, "/next.lua");
    CHECK_INT(s->npromises, 2);
    CHECK_INT(s->promises[0].nglobs, 2);
    CHECK(s->promises[0].from == 1800 && isinf(s->promises[0].until));
    CHECK(s->promises[1].from == 0 && s->promises[1].until == 600);
    CHECK_STR(s->promises[0].sel.department, "Finance");
    CHECK_INT(s->nexpects, 2);
    CHECK_STR(s->expects[0].group, "lon");
    CHECK_INT(s->expects[1].op, OP_LE);
    CHECK(s->expects[1].value == 120.5);
    tsl_sim_scenario_free(s);
}

TEST(simulate__scenario_errors_name_the_line)
{
    static const struct {
        const char *text, *error;
    } cases[] = {
        {"inventory e.json\nclients 1 site=A\nfrobnicate 3\n", "t.scn:3: unknown directive"},
        {"inventory e.json\nclients 1 site=A\nat 10 explode ts-a\n", "t.scn:3: at: unknown event"},
        {"inventory e.json\nclients 1 site=A\nat soon stop ts-a\n", "t.scn:3: at: \"soon\" is not a time"},
        {"inventory e.json\nclients 1 site=A\nat 10 cut London\n", "usage: at TIME cut SITE SERVER"},
        {"inventory e.json\nclients 1\n", "t.scn:2: clients: generated clients need site="},
        {"inventory e.json\nclients 1 site=A color=red\n", "unknown option \"color\""},
        {"inventory e.json\nclients 1 site=A\nexpect clients = 3\n", "is not one of == != < <= > >="},
        {"inventory e.json\nclients 1 site=A\nexpect nobody:clients == 3\n", "no client group named \"nobody\""},
        {"inventory e.json\nclients 1 site=A\nexpect stranded_undemaned == 0\n",
         "t.scn:3: expect: no metric \"stranded_undemaned\""},
        {"inventory e.json\nclients 1 site=A\nexpect registrations.tier == 0\n",
         "t.scn:3: expect: no metric \"registrations.tier\""},
        {"inventory e.json\nclients 1 site=A\npromise site=A ts-a\n", "\"ts-a\" is not key=value"},
        {"inventory e.json\nclients 1 site=A\npromise site=A\n", "usage: promise"},
        {"inventory e.json\nclients 1 site=A\npromise site=A only\n", "needs at least one server"},
        {"inventory e.json\nclients 1 site=A\npromise site=A only x from 10 until 5\n",
         "\"until\" must come after \"from\""},
        {"inventory e.json\nclients 1 site=A\npromise site=A only x until 5 y\n",
         "end the line"},
        {"inventory e.json\nclients 1 site=A\nselection fastest\n", "not capacity, responsiveness"},
        {"inventory e.json\nclients 1 site=A\nduration 10\nat 20 stop x\n", "after the end of the run"},
        {"inventory e.json\nclients 1 site=A\nagent poll=0\n", "must be more than 0"},
        {"inventory e.json\nclients 1 site=A\nbroker colour=1\n", "unknown setting \"colour\""},
        {"clients 1 site=A\n", "no \"inventory FILE\" line"},
        {"inventory e.json\n", "no \"clients\" line"},
        {"inventory e.json\nclients 1 site=A name=x\nclients 2 site=B name=x\n", "exists already"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tsl_sim_scenario *s = NULL;
        const char *path = tsl_test_path("t.scn");
        CHECK(tsl_test_write(path, cases[i].text) == 0);
        CHECK(tsl_sim_scenario_load(&s, path) == TSL_EINVALID);
        CHECK_NULL(s);
        CHECK_CONTAINS(tsl_error_last(), cases[i].error);
    }
    tsl_sim_scenario *s = NULL;
    CHECK(tsl_sim_scenario_load(&s, tsl_test_path("missing.scn")) == TSL_ENOTFOUND);
}

TEST(simulate__glob_matches_like_policies)
{
    CHECK(scn_glob_match("ts-mad-*", "ts-mad-01"));
    CHECK(scn_glob_match("TS-MAD-*", "ts-mad-01"));
    CHECK(scn_glob_match("ts-?ad-0*", "ts-mad-02"));
    CHECK(!scn_glob_match("ts-mad-*", "ts-par-01"));
    CHECK(scn_glob_match("*", "x"));
    CHECK(!scn_glob_match("ts-lon-0?", "ts-lon-fin-01"));
}

/* ------------------------------------------------------------------------
 * Runs against the stand-in broker
 * ---------------------------------------------------------------------- */

static const char *const BASE =
    "inventory " ESTATE "\n"
    "start-spread 30\n"
    "heartbeat 15\n"
    "broker stale-after=60 ttl=600\n"
    "agent poll=30 retry=15 retry-max=120 stuck-retry=60 timeout=5 register-timeout=10\n";

TEST(simulate__stopped_site_sends_its_clients_abroad_under_the_default_logic)
{
    char text[4096];
    snprintf(text, sizeof text,
             "%s"
             "duration 1200\n"
             "clients 150 name=madrid site=Madrid\n"
             "clients 150 name=london site=London\n"
             "at 300 stop ts-mad-01\n"
             "at 300 stop ts-mad-02\n"
             "promise site=Madrid only ts-mad-*\n"
             "expect madrid:cross_country > 0\n"
             "expect london:cross_country == 0\n"
             "expect outside_approved > 0\n"
             "expect drain_max_s <= 200\n"
             "expect undrained == 0\n"
             "expect failed_requests == 0\n",
             BASE);
    tsl_sim_scenario *s = scenario(text);
    tsl_sim_outcome out;
    CHECK(s);
    const char *r = run(s, &out);
    CHECK(r);
    CHECK_INT(out.broken, 0);
    CHECK_INT(out.checked, 6);
    CHECK_CONTAINS(r, "result: PASS (6 invariants)");
    CHECK_CONTAINS(r, "t=300    stop ts-mad-01: ");
    CHECK_CONTAINS(r, "BROKEN: t=");
    CHECK(metric(r, "madrid:registered_at_end") == 150);
    CHECK(metric(r, "madrid:cross_country.tier1") > 0);
    CHECK(metric(r, "london:registrations.tier0") >= 150);
    CHECK(metric(r, "registered_at_end") == 300);
    CHECK(metric(r, "stranded_at_end") == 0);
    tsl_sim_scenario_free(s);
}

TEST(simulate__broken_invariant_fails_the_run)
{
    char text[4096];
    snprintf(text, sizeof text,
             "%s"
             "duration 600\n"
             "clients 40 site=Madrid\n"
             "at 200 kill ts-mad-01\nat 200 kill ts-mad-02\n"
             "expect cross_country == 0\n"
             "expect registered_at_end == 40\n",
             BASE);
    tsl_sim_scenario *s = scenario(text);
    tsl_sim_outcome out;
    CHECK(s);
    const char *r = run(s, &out);
    CHECK(r);
    CHECK_INT(out.checked, 2);
    CHECK_INT(out.broken, 1);
    CHECK_CONTAINS(r, "FAIL  line 10: expect cross_country == 0");
    CHECK_CONTAINS(r, "PASS  line 11: expect registered_at_end == 40");
    CHECK_CONTAINS(r, "result: FAIL (1 of 2 invariants broken)");
    /* the verdict comes first, before any figure */
    CHECK(strstr(r, "result: FAIL") < strstr(r, "by site"));
    tsl_sim_scenario_free(s);
}

TEST(simulate__broker_outage_is_ridden_out_on_cached_lists)
{
    char text[4096];
    snprintf(text, sizeof text,
             "%s"
             "duration 1500\n"
             "broker ttl=1000\n"
             "clients 200 site=London\n"
             "at 200 broker-down\n"
             "at 400 kill ts-lon-01\n"
             "at 900 broker-up\n"
             "expect stranded_undemanded == 0\n"
             "expect cache_dropped == 0\n"
             "expect failed_requests == 0\n"
             "expect registered_at_end == 200\n"
             "expect cross_site == 0\n"
             "expect undrained == 0\n"
             "expect broker_outage_s >= 690\n",
             BASE);
    tsl_sim_scenario *s = scenario(text);
    tsl_sim_outcome out;
    CHECK(s);
    const char *r = run(s, &out);
    CHECK(r);
    CHECK_INT(out.broken, 0);
    CHECK(metric(r, "lost") > 0);  /* ts-lon-01 had clients, they moved */
    CHECK(metric(r, "list_failures") > 0); /* during the outage */
    CHECK_CONTAINS(logtext, "broker down");
    CHECK_CONTAINS(logtext, "broker up on port");
    tsl_sim_scenario_free(s);
}

TEST(simulate__cut_link_and_dark_site_are_left_by_their_clients)
{
    char text[4096];
    snprintf(text, sizeof text,
             "%s"
             "duration 1300\n"
             "clients 100 name=lon site=London\n"
             "clients 100 name=par site=Paris\n"
             "at 300 cut London ts-lon-01\n"
             "at 300 cut London ts-lon-02\n"
             "at 600 site-dark Paris\n"
             "at 1000 site-up Paris\n"
             "expect undrained == 0\n"
             /* a registered client notices at its next poll (30 s, +-10 %%), within
              * its timeout (10 s): virtual time adds nothing to that */
             "expect drain_max_s <= 44\n"
             "expect lon:cross_site == 0\n"
             "expect par:cross_country > 0\n"
             "expect par:registered_at_end == 100\n",
             BASE);
    tsl_sim_scenario *s = scenario(text);
    tsl_sim_outcome out;
    CHECK(s);
    const char *r = run(s, &out);
    CHECK(r);
    CHECK_INT(out.broken, 0);
    CHECK_CONTAINS(r, "cut ts-lon-01 from London: ");
    CHECK_CONTAINS(r, "site-dark ts-par-01: ");
    /* London's clients on the cut servers end on ts-lon-03 or the Finance ones */
    CHECK(metric(r, "lon:failed_attempts") > 0);
    tsl_sim_scenario_free(s);
}

/* The end-of-run line "at the end: N client(s) = A registered ... + B
 * attempting + C waiting ... + D stranded (...) + E not started": true when
 * the parts add up to N; the parts in `part`. */
static bool end_counts_add_up(const char *r, const char *prefix, long part[5], long *total)
{
    char key[64];
    snprintf(key, sizeof key, "%sat the end: ", prefix);
    const char *p = r ? strstr(r, key) : NULL;
    if (!p || sscanf(p + strlen(key), "%ld client(s) = %ld registered", total, &part[0]) != 2)
        return false;
    static const char *const words[] = {" attempting", " waiting for a delayed fallback",
                                        " stranded (", " not started"};
    const char *eol = strchr(p, '\n');
    for (int i = 0; i < 4; i++) {
        const char *w = strstr(p, words[i]);
        if (!w || w > eol)
            return false;
        const char *plus = w;
        while (plus > p && plus[-1] != '+')
            plus--;
        part[i + 1] = strtol(plus, NULL, 10);
    }
    return part[0] + part[1] + part[2] + part[3] + part[4] == *total;
}

TEST(simulate__every_client_is_accounted_for_at_the_end_even_mid_outage)
{
    char text[4096];
    /* London goes dark 15 s before the end: clients that polled since are
     * attempting (their exchange to the dark server has 10 s to time out),
     * the others have not noticed yet */
    snprintf(text, sizeof text,
             "%s"
             "duration 400\n"
             "clients 120 name=lon site=London\n"
             "clients 30 name=mad site=Madrid\n"
             "at 385 site-dark London\n"
             "expect clients == 150\n",
             BASE);
    tsl_sim_scenario *s = scenario(text);
    tsl_sim_outcome out;
    long part[5], total = 0;
    CHECK(s);
    const char *r = run(s, &out);
    CHECK(r);
    CHECK_INT(out.broken, 0);
    CHECK(end_counts_add_up(r, "", part, &total));
    CHECK_INT(total, 150);
    CHECK(part[1] > 0);  /* attempting, each named with its server and since when */
    CHECK(part[0] > 0);
    CHECK_CONTAINS(r, ": attempting ts-lon-");
    CHECK_CONTAINS(r, " since t=");
    CHECK(end_counts_add_up(r, "    ", part, &total)); /* per site too */
    CHECK(metric(r, "attempting_at_end") == part[1] || metric(r, "attempting_at_end") > 0);
    CHECK(metric(r, "registered_at_end") + metric(r, "attempting_at_end") +
              metric(r, "waiting_at_end") + metric(r, "stranded_at_end") +
              metric(r, "not_started_at_end") == 150);
    tsl_sim_scenario_free(s);
}

TEST(simulate__unknown_server_in_the_timeline_stops_the_run)
{
    char text[4096];
    snprintf(text, sizeof text, "%sduration 100\nclients 5 site=London\nat 10 stop ts-nope\n", BASE);
    tsl_sim_scenario *s = scenario(text);
    tsl_buf report = TSL_BUF_INIT;
    tsl_sim_outcome out;
    tsl_sim_options opt = {&fake_broker_ops, tsl_test_tmpdir(), 0, 0, NULL, NULL, NULL};
    CHECK(s);
    CHECK(tsl_sim_run(&report, &out, s, &opt) < 0);
    CHECK_CONTAINS(tsl_error_last(), "t.scn:");
    CHECK_CONTAINS(tsl_error_last(), "no task server \"ts-nope\"");
    tsl_buf_free(&report);
    tsl_sim_scenario_free(s);
}

TEST(simulate__selection_modes_run_one_pass_each)
{
    char text[4096];
    snprintf(text, sizeof text,
             "%sduration 400\nselection capacity connections\nclients 90 site=London\n"
             "expect registered_at_end == 90\n",
             BASE);
    tsl_sim_scenario *s = scenario(text);
    tsl_sim_outcome out;
    CHECK(s);
    const char *r = run(s, &out);
    CHECK(r);
    CHECK_INT(out.checked, 2);
    CHECK_INT(out.broken, 0);
    CHECK_CONTAINS(r, "selection capacity):");
    CHECK_CONTAINS(r, "selection connections):");
    tsl_sim_scenario_free(s);
}

int main(void)
{
    RUN(simulate__scenario_reads_every_directive);
    RUN(simulate__scenario_errors_name_the_line);
    RUN(simulate__glob_matches_like_policies);
    RUN(simulate__stopped_site_sends_its_clients_abroad_under_the_default_logic);
    RUN(simulate__broken_invariant_fails_the_run);
    RUN(simulate__broker_outage_is_ridden_out_on_cached_lists);
    RUN(simulate__cut_link_and_dark_site_are_left_by_their_clients);
    RUN(simulate__every_client_is_accounted_for_at_the_end_even_mid_outage);
    RUN(simulate__unknown_server_in_the_timeline_stops_the_run);
    RUN(simulate__selection_modes_run_one_pass_each);
    return tsl_test_main();
}
