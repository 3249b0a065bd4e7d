/*
 * test_agent.c - the reference CTA (engine/agent): the choice of the next
 * entry as a pure function (tiers, strict order, demotions, `after`), list
 * parsing, and the state machine against a fake broker and fake Task
 * Servers on 127.0.0.1 port 0, all in one libevent loop: registration and
 * its report, failing over to the next entry, timeouts, stuck retrying that
 * never invents a server, blocked lists, a lost server, a broker
 * outage served from the cached list until it expires, the list cached for
 * its ttl, broker retries backing off to their ceiling, strict lists in
 * order, and tiers exhausted in order with `after` respected.
 *
 * The fake broker here answers canned lists: it tests the agent, not the
 * engine (the simulator's tests run the real decisions).
 */
#include "harness.h"

#include "agent.h"
#include "http_client.h"

#include <arpa/inet.h>
#include <math.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <event2/bufferevent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------
 * Pure choice
 * ---------------------------------------------------------------------- */

static tsl_agent_list *parse(const char *json)
{
    tsl_agent_list *l = NULL;
    if (tsl_agent_list_parse(&l, json, strlen(json)) < 0)
        fprintf(stderr, "  parse: %s\n", tsl_error_last());
    return l;
}

#define E(name, tier, after, full, err)                                                   \
    "{\"name\":\"" name "\",\"host\":\"h\",\"ip\":\"10.0.0.1\",\"site\":\"S\",\"tier\":" #tier \
    ",\"after\":" #after ",\"capacity\":100,\"connections\":1,\"response_ms\":5,\"full\":"   \
    #full ",\"recent_error\":" #err "}"

/* Picks through a whole round, failing each pick: the order tried. */
static const char *round_order(tsl_agent_list *l, tsl_agent_memory *m, double now)
{
    static char out[256];
    bool tried[32] = {false};
    double wait;
    out[0] = '\0';
    for (int k = 0; k < 32; k++) {
        int i = tsl_agent_pick(l, m, tried, now, &wait);
        if (i < 0)
            break;
        tried[i] = true;
        if (out[0])
            strcat(out, " ");
        strcat(out, tsl_agent_list_get(l, (size_t)i)->name);
        tsl_agent_memory_fail(m, tsl_agent_list_get(l, (size_t)i)->name, now);
    }
    return out;
}

TEST(agent__pick_exhausts_tier_k_before_k_plus_1)
{
    tsl_agent_list *l = parse("{\"ttl\":60,\"servers\":[" E("b1", 1, 0, false, false) ","
                              E("a1", 0, 0, false, false) "," E("c2", 2, 0, false, false) ","
                              E("a2", 0, 0, false, false) "]}");
    tsl_agent_memory m = {0};
    CHECK(l);
    CHECK_STR(round_order(l, &m, 100), "a1 a2 b1 c2");
    tsl_agent_list_free(l);
}

TEST(agent__pick_demotes_full_and_failed_entries_unless_strict)
{
    const char *entries = E("full", 0, 0, true, false) "," E("erred", 0, 0, false, true) ","
        E("failed", 0, 0, false, false) "," E("fresh", 0, 0, false, false);
    char json[2048];
    tsl_agent_memory m = {0};
    snprintf(json, sizeof json, "{\"strict\":false,\"servers\":[%s]}", entries);
    tsl_agent_list *l = parse(json);
    CHECK(l);
    tsl_agent_memory_fail(&m, "failed", 50);
    /* fresh first; full next; errors (broker's or our own) last, in list order */
    CHECK_STR(round_order(l, &m, 100), "fresh full erred failed");
    tsl_agent_list_free(l);

    memset(&m, 0, sizeof m);
    tsl_agent_memory_fail(&m, "failed", 50);
    snprintf(json, sizeof json, "{\"strict\":true,\"servers\":[%s]}", entries);
    l = parse(json);
    CHECK(l);
    CHECK_STR(round_order(l, &m, 100), "full erred failed fresh"); /* strictly in order */
    tsl_agent_list_free(l);
}

TEST(agent__pick_after_waits_until_earlier_tiers_failed_long_enough)
{
    tsl_agent_list *l = parse("{\"servers\":[" E("local", 0, 0, false, false) ","
                              E("abroad", 1, 600, false, false) "]}");
    tsl_agent_memory m = {0};
    bool tried[2] = {false, false};
    double wait = -1;
    CHECK(l);
    CHECK_INT(tsl_agent_pick(l, &m, tried, 1000, &wait), 0);
    tried[0] = true;
    tsl_agent_memory_fail(&m, "local", 1000);
    /* local has failed for 0 s: abroad waits until 1600 */
    CHECK_INT(tsl_agent_pick(l, &m, tried, 1000, &wait), -1);
    CHECK(wait > 1599.9 && wait < 1600.1);
    /* still failing at 1599 (a retry round failed again: failing_since stays) */
    tsl_agent_memory_fail(&m, "local", 1599);
    CHECK_INT(tsl_agent_pick(l, &m, tried, 1599, &wait), -1);
    CHECK_INT(tsl_agent_pick(l, &m, tried, 1600, &wait), 1);
    /* a success resets the clock */
    tsl_agent_memory_ok(&m, "local");
    tsl_agent_memory_fail(&m, "local", 2000);
    CHECK_INT(tsl_agent_pick(l, &m, tried, 2100, &wait), -1);
    CHECK(wait > 2599.9 && wait < 2600.1);
    tsl_agent_list_free(l);
}

TEST(agent__pick_empty_or_blocked_list_gives_nothing)
{
    tsl_agent_list *l = parse("{\"blocked\":true,\"ttl\":30,\"servers\":[]}");
    tsl_agent_memory m = {0};
    bool tried[1] = {false};
    double wait = -1;
    CHECK(l);
    CHECK(tsl_agent_list_blocked(l));
    CHECK_INT(tsl_agent_list_ttl(l), 30);
    CHECK_INT(tsl_agent_pick(l, &m, tried, 0, &wait), -1);
    CHECK(wait == 0);
    tsl_agent_list_free(l);
}

TEST(agent__list_parse_refuses_bad_documents)
{
    tsl_agent_list *l = NULL;
    CHECK(tsl_agent_list_parse(&l, "{", 1) == TSL_EINVALID);
    CHECK_NULL(l);
    CHECK(tsl_agent_list_parse(&l, "{\"servers\":3}", 13) == TSL_EINVALID);
    CHECK_CONTAINS(tsl_error_last(), "servers");
    const char *noname = "{\"servers\":[{\"tier\":0}]}";
    CHECK(tsl_agent_list_parse(&l, noname, strlen(noname)) == TSL_EINVALID);
    CHECK_CONTAINS(tsl_error_last(), "servers[0].name");
    const char *badtier = "{\"servers\":[{\"name\":\"x\",\"tier\":\"zero\"}]}";
    CHECK(tsl_agent_list_parse(&l, badtier, strlen(badtier)) == TSL_EINVALID);
    CHECK_CONTAINS(tsl_error_last(), "tier");
}

TEST(agent__memory_forgets_the_oldest_when_full)
{
    tsl_agent_memory m = {0};
    char name[16];
    for (int i = 0; i < TSL_AGENT_MEMORY + 5; i++) {
        snprintf(name, sizeof name, "s%d", i);
        tsl_agent_memory_fail(&m, name, 10 + i);
    }
    CHECK_INT(m.n, TSL_AGENT_MEMORY);
    CHECK(tsl_agent_memory_failing_since(&m, "s0") == 0);
    CHECK(tsl_agent_memory_failing_since(&m, "s36") == 46);
}

/* ------------------------------------------------------------------------
 * A fake broker and fake Task Servers, one loop
 * ---------------------------------------------------------------------- */

/* The agents run on virtual time (aclock.h): exchanges take none, timers
 * and timeouts fire at exactly their second, and a test of a 200 s wait
 * takes milliseconds. */
static struct event_base *base;
static aclock *clk;

static double agent_now(void *arg)
{
    (void)arg;
    return aclock_now(clk);
}

typedef enum { TS_OK = 0, TS_FULL, TS_DOWN, TS_SILENT } ts_mode;

typedef struct fake_ts {
    const char *name;
    ts_mode mode;
    struct evhttp *http;
    int port;
    int registrations, polls;
} fake_ts;

static fake_ts servers[4];
static size_t nservers;
static int refuse_port; /* a bound, never listening socket */
static int refuse_fd = -1;
static struct evconnlistener *silent;
static int silent_port;
static evutil_socket_t held[64];
static size_t nheld;

struct fake_broker {
    struct evhttp *http;
    int port;
    int status;        /* of list answers */
    char list[4096];
    int list_requests;
    double asked[64]; /* agent time of each list request */
    char reports[16][256];
    int nreports;
} fb;

static void reply(struct evhttp_request *req, int code, const char *body)
{
    struct evbuffer *b = evbuffer_new();
    if (b)
        evbuffer_add(b, body, strlen(body));
    evhttp_send_reply(req, code, code == 200 ? "OK" : "Error", b);
    if (b)
        evbuffer_free(b);
}

static void broker_cb(struct evhttp_request *req, void *arg)
{
    (void)arg;
    const char *uri = evhttp_request_get_uri(req);
    if (strncmp(uri, "/v1/task-servers?", 17) == 0) {
        if (fb.list_requests < 64)
            fb.asked[fb.list_requests] = agent_now(NULL);
        fb.list_requests++;
        reply(req, fb.status, fb.status == 200 ? fb.list : "{\"error\":\"busy\"}");
        return;
    }
    if (strncmp(uri, "/v1/clients/", 12) == 0 && strstr(uri, "/registration")) {
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        size_t n = evbuffer_get_length(in);
        if (fb.nreports < 16 && n < sizeof fb.reports[0]) {
            evbuffer_copyout(in, fb.reports[fb.nreports], n);
            fb.reports[fb.nreports++][n] = '\0';
        }
        reply(req, 200, "{}");
        return;
    }
    reply(req, 404, "{\"error\":\"no route\"}");
}

static void ts_cb(struct evhttp_request *req, void *arg)
{
    fake_ts *t = arg;
    const char *uri = evhttp_request_get_uri(req);
    if (strncmp(uri, "/register?client=", 17) == 0) {
        if (t->mode == TS_FULL) {
            reply(req, 503, "{\"error\":\"full\"}");
            return;
        }
        t->registrations++;
        reply(req, 200, "{\"ok\":true}");
    } else if (strncmp(uri, "/poll?client=", 13) == 0) {
        t->polls++;
        reply(req, t->mode == TS_OK ? 200 : 404, "{}");
    } else {
        reply(req, 200, "{}");
    }
}

static int bound_port(struct evhttp_bound_socket *bs)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    if (!bs || getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&sa, &len) < 0)
        return -1;
    return ntohs(sa.sin_port);
}

static void silent_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                          int salen, void *arg)
{
    (void)l;
    (void)sa;
    (void)salen;
    (void)arg;
    /* held open, never read: the client times out; closed at teardown */
    if (nheld < sizeof held / sizeof held[0])
        held[nheld++] = fd;
    else
        close(fd);
}

static int resolve(void *arg, const tsl_agent *a, const tsl_agent_entry *e, char *host,
                   size_t hostlen, int *port)
{
    (void)arg;
    (void)a;
    snprintf(host, hostlen, "127.0.0.1");
    for (size_t i = 0; i < nservers; i++) {
        if (strcmp(servers[i].name, e->name) != 0)
            continue;
        *port = servers[i].mode == TS_DOWN     ? refuse_port
                : servers[i].mode == TS_SILENT ? silent_port
                                               : servers[i].port;
        return 0;
    }
    return -1;
}

static char logbuf[16384];
static int events[TSL_AGENT_EV_COUNT_];
static char attempted[1024];

static void on_log(void *arg, const tsl_agent *a, const char *line)
{
    (void)arg;
    (void)a;
    size_t n = strlen(logbuf);
    snprintf(logbuf + n, sizeof logbuf - n, "%s\n", line);
}

static void on_event(void *arg, tsl_agent *a, tsl_agent_event ev, const tsl_agent_entry *e,
                     const char *detail)
{
    (void)arg;
    (void)a;
    (void)detail;
    events[ev]++;
    if (ev == TSL_AGENT_EV_ATTEMPT && e) {
        size_t n = strlen(attempted);
        snprintf(attempted + n, sizeof attempted - n, "%s%s", n ? " " : "", e->name);
    }
}

/* A fresh world: broker, `n` Task Servers named ts-a, ts-b, ... */
static int world(size_t n, const ts_mode *modes)
{
    static const char *const names[] = {"ts-a", "ts-b", "ts-c", "ts-d"};
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    memset(&fb, 0, sizeof fb);
    memset(servers, 0, sizeof servers);
    memset(events, 0, sizeof events);
    logbuf[0] = attempted[0] = '\0';
    fb.status = 200;
    if (!(base = event_base_new()) || !(fb.http = evhttp_new(base)))
        return -1;
    evhttp_set_gencb(fb.http, broker_cb, NULL);
    if ((fb.port = bound_port(evhttp_bind_socket_with_handle(fb.http, "127.0.0.1", 0))) < 0)
        return -1;
    nservers = n;
    for (size_t i = 0; i < n; i++) {
        servers[i].name = names[i];
        servers[i].mode = modes[i];
        if (!(servers[i].http = evhttp_new(base)))
            return -1;
        evhttp_set_gencb(servers[i].http, ts_cb, &servers[i]);
        servers[i].port = bound_port(evhttp_bind_socket_with_handle(servers[i].http, "127.0.0.1", 0));
        if (servers[i].port < 0)
            return -1;
    }
    socklen_t len = sizeof sa;
    refuse_fd = socket(AF_INET, SOCK_STREAM, 0);
    if (refuse_fd < 0 || bind(refuse_fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        getsockname(refuse_fd, (struct sockaddr *)&sa, &len) < 0)
        return -1;
    refuse_port = ntohs(sa.sin_port);
    sa.sin_port = 0;
    silent = evconnlistener_new_bind(base, silent_accept, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                                     16, (struct sockaddr *)&sa, sizeof sa);
    len = sizeof sa;
    if (!silent || getsockname(evconnlistener_get_fd(silent), (struct sockaddr *)&sa, &len) < 0)
        return -1;
    silent_port = ntohs(sa.sin_port);
    if (aclock_new(&clk, 0) < 0)
        return -1;
    aclock_set_silent_port(clk, silent_port);
    return 0;
}

static void world_free(void)
{
    for (size_t i = 0; i < nservers; i++)
        if (servers[i].http)
            evhttp_free(servers[i].http);
    if (fb.http)
        evhttp_free(fb.http);
    if (silent)
        evconnlistener_free(silent);
    while (nheld)
        close(held[--nheld]);
    if (refuse_fd >= 0)
        close(refuse_fd);
    refuse_fd = -1;
    silent = NULL;
    fb.http = NULL;
    if (base)
        event_base_free(base);
    base = NULL;
    aclock_free(clk);
    clk = NULL;
}

static tsl_agent *agent(void)
{
    tsl_agent_config cfg;
    tsl_agent *a = NULL;
    tsl_agent_config_init(&cfg);
    cfg.broker_host = "127.0.0.1";
    cfg.broker_port = fb.port;
    cfg.client = "GUID-1";
    cfg.ips[0] = "10.1.2.3";
    cfg.nips = 1;
    cfg.department = "Sales & Marketing";
    cfg.timing.poll_interval = 20;
    cfg.timing.retry_min = 5;
    cfg.timing.retry_max = 20;
    cfg.timing.stuck_retry = 10;
    cfg.timing.register_timeout = 5;
    cfg.timing.request_timeout = 5;
    cfg.resolve = resolve;
    cfg.log = on_log;
    cfg.event = on_event;
    cfg.clock = clk;
    if (tsl_agent_new(&a, base, &cfg) < 0 || tsl_agent_start(a, 0) < 0) {
        fprintf(stderr, "  agent: %s\n", tsl_error_last());
        tsl_agent_free(a);
        return NULL;
    }
    return a;
}

static bool (*want_pred)(tsl_agent *);
static tsl_agent *want_agent;

static void check_want(void *arg, double next)
{
    (void)arg;
    (void)next;
    if (want_pred && want_pred(want_agent))
        aclock_stop(clk);
}

/* Runs the loop until pred() holds (checked whenever the clock is about to
 * move) or `agent_seconds` pass. */
static bool run_until(bool (*pred)(tsl_agent *), tsl_agent *a, double agent_seconds)
{
    if (pred && pred(a))
        return true;
    want_pred = pred;
    want_agent = a;
    aclock_run(clk, base, aclock_now(clk) + agent_seconds, check_want, NULL);
    want_pred = NULL;
    return pred ? pred(a) : true;
}

static bool is_registered(tsl_agent *a)
{
    tsl_agent_status st;
    tsl_agent_status_get(a, &st);
    return st.state == TSL_AGENT_REGISTERED;
}

static bool is_stuck(tsl_agent *a)
{
    tsl_agent_status st;
    tsl_agent_status_get(a, &st);
    return st.state == TSL_AGENT_STUCK;
}

static bool is_gated(tsl_agent *a)
{
    tsl_agent_status st;
    tsl_agent_status_get(a, &st);
    return st.gated;
}

static const char *registered_to(tsl_agent *a)
{
    tsl_agent_status st;
    tsl_agent_status_get(a, &st);
    return st.server ? st.server : "(none)";
}

#define LIST2(strict, t1, t2)                                                              \
    "{\"site\":\"S\",\"policy\":null,\"blocked\":false,\"strict\":" #strict ",\"ttl\":600," \
    "\"servers\":[" E("ts-a", t1, 0, false, false) "," E("ts-b", t2, 0, false, false) "]}"

TEST(agent__registers_to_the_first_entry_and_reports_it)
{
    ts_mode modes[] = {TS_OK, TS_OK};
    tsl_agent *a = NULL;
    CHECK(world(2, modes) == 0);
    snprintf(fb.list, sizeof fb.list, LIST2(false, 0, 0));
    a = agent();
    CHECK(a);
    bool ok = run_until(is_registered, a, 30);
    CHECK(ok);
    CHECK_STR(registered_to(a), "ts-a");
    run_until(NULL, a, 2); /* the report lands */
    CHECK_INT(fb.list_requests, 1);
    CHECK_INT(fb.nreports, 1);
    CHECK_CONTAINS(fb.reports[0], "\"server\":\"ts-a\"");
    CHECK_CONTAINS(fb.reports[0], "\"ok\":true");
    CHECK_CONTAINS(logbuf, "Received Task Server list from SMP Server");
    CHECK_CONTAINS(logbuf, "Attempting to register to Task Server: ts-a");
    CHECK_CONTAINS(logbuf, "Registered to Task Server: ts-a");
    CHECK_INT(servers[0].registrations, 1);
    /* it keeps polling its server */
    run_until(NULL, a, 50);
    CHECK(servers[0].polls >= 1);
    CHECK(is_registered(a));
    tsl_agent_free(a);
    world_free();
}

TEST(agent__a_refused_entry_fails_over_to_the_next_and_reports_both)
{
    ts_mode modes[] = {TS_DOWN, TS_OK};
    tsl_agent *a = NULL;
    CHECK(world(2, modes) == 0);
    snprintf(fb.list, sizeof fb.list, LIST2(false, 0, 0));
    a = agent();
    CHECK(a);
    CHECK(run_until(is_registered, a, 30));
    CHECK_STR(registered_to(a), "ts-b");
    CHECK_CONTAINS(logbuf, "Registration failed: Task Server ts-a: connection refused");
    run_until(NULL, a, 2);
    CHECK_INT(fb.nreports, 2);
    CHECK_CONTAINS(fb.reports[0], "\"ok\":false");
    CHECK_CONTAINS(fb.reports[0], "connection refused");
    CHECK_CONTAINS(fb.reports[1], "\"server\":\"ts-b\"");
    tsl_agent_free(a);
    world_free();
}

TEST(agent__a_silent_or_full_server_fails_and_the_next_is_tried)
{
    static const struct {
        ts_mode mode;
        bool strict; /* a full entry of a non-strict list would be tried last anyway */
        double within;
        const char *log;
    } cases[] = {
        {TS_SILENT, false, 60, "Registration failed: Task Server ts-a: timeout"},
        {TS_FULL, true, 30, "Registration failed: Task Server ts-a: full (HTTP 503)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ts_mode modes[] = {cases[i].mode, TS_OK};
        tsl_agent *a = NULL;
        CHECK(world(2, modes) == 0);
        if (cases[i].strict)
            snprintf(fb.list, sizeof fb.list, LIST2(true, 0, 0));
        else
            snprintf(fb.list, sizeof fb.list, LIST2(false, 0, 0));
        a = agent();
        CHECK(a);
        CHECK(run_until(is_registered, a, cases[i].within));
        CHECK_STR(registered_to(a), "ts-b");
        CHECK_CONTAINS(logbuf, cases[i].log);
        tsl_agent_free(a);
        world_free();
    }
}

TEST(agent__on_virtual_time_a_silent_server_times_out_after_exactly_its_timeout)
{
    /* the exchange to the silent server ends at its register timeout (5 s)
     * of simulated time, not a wall-clock moment later; the next entry
     * answers at once (an exchange that is answered takes no time) */
    ts_mode modes[] = {TS_SILENT, TS_OK};
    tsl_agent *a = NULL;
    CHECK(world(2, modes) == 0);
    snprintf(fb.list, sizeof fb.list, LIST2(true, 0, 0));
    a = agent();
    CHECK(a);
    CHECK(run_until(is_registered, a, 60));
    CHECK_STR(registered_to(a), "ts-b");
    CHECK(fabs(agent_now(NULL) - 5.0) < 1e-9);
    CHECK_CONTAINS(logbuf, "Registration failed: Task Server ts-a: timeout");
    tsl_agent_status st;
    tsl_agent_status_get(a, &st);
    CHECK(st.started);
    CHECK_NULL(st.attempting);
    tsl_agent_free(a);
    world_free();
}

TEST(agent__every_entry_failing_means_stuck_retrying_never_another_server)
{
    ts_mode modes[] = {TS_DOWN, TS_DOWN, TS_OK}; /* ts-c works but is not listed */
    tsl_agent *a = NULL;
    CHECK(world(3, modes) == 0);
    snprintf(fb.list, sizeof fb.list, LIST2(false, 0, 1));
    a = agent();
    CHECK(a);
    CHECK(run_until(is_stuck, a, 30));
    CHECK_INT(events[TSL_AGENT_EV_STUCK], 1);
    CHECK_CONTAINS(logbuf, "Unable to register to any Task Server (every entry failed); retrying");
    run_until(NULL, a, 45); /* several retry rounds */
    CHECK(!is_registered(a));
    CHECK(fb.list_requests >= 3); /* each round asks the broker again */
    CHECK_INT(servers[2].registrations, 0);
    CHECK(strstr(attempted, "ts-c") == NULL);
    CHECK_CONTAINS(attempted, "ts-a ts-b ts-a ts-b");
    /* the server comes back: the next round registers */
    servers[1].mode = TS_OK;
    CHECK(run_until(is_registered, a, 40));
    CHECK_STR(registered_to(a), "ts-b");
    tsl_agent_free(a);
    world_free();
}

TEST(agent__a_blocked_empty_list_waits_without_attempts)
{
    ts_mode modes[] = {TS_OK};
    tsl_agent *a = NULL;
    CHECK(world(1, modes) == 0);
    snprintf(fb.list, sizeof fb.list,
             "{\"site\":\"S\",\"blocked\":true,\"blocked_reason\":\"policy\",\"strict\":false,"
             "\"ttl\":600,\"servers\":[]}");
    a = agent();
    CHECK(a);
    CHECK(run_until(is_stuck, a, 30));
    tsl_agent_status st;
    tsl_agent_status_get(a, &st);
    CHECK(st.blocked);
    CHECK_INT(st.attempts, 0);
    CHECK_CONTAINS(logbuf, "(the list is blocked)");
    tsl_agent_free(a);
    world_free();
}

TEST(agent__a_lost_server_sends_it_to_the_next_entry)
{
    ts_mode modes[] = {TS_OK, TS_OK};
    tsl_agent *a = NULL;
    CHECK(world(2, modes) == 0);
    snprintf(fb.list, sizeof fb.list, LIST2(false, 0, 0));
    a = agent();
    CHECK(a);
    CHECK(run_until(is_registered, a, 30));
    CHECK_STR(registered_to(a), "ts-a");
    servers[0].mode = TS_DOWN;
    bool moved = false;
    for (int i = 0; i < 200 && !moved; i++) {
        run_until(NULL, a, 1);
        moved = strcmp(registered_to(a), "ts-b") == 0;
    }
    CHECK(moved);
    CHECK_INT(events[TSL_AGENT_EV_LOST], 1);
    CHECK_CONTAINS(logbuf, "Lost connection to Task Server: ts-a");
    tsl_agent_free(a);
    world_free();
}

TEST(agent__broker_outage_uses_the_cached_list_then_drops_it_at_expiry)
{
    ts_mode modes[] = {TS_OK, TS_OK};
    tsl_agent *a = NULL;
    CHECK(world(2, modes) == 0);
    /* ttl 60: refreshed at 48, then the broker is gone */
    snprintf(fb.list, sizeof fb.list,
             "{\"site\":\"S\",\"blocked\":false,\"strict\":false,\"ttl\":60,\"servers\":["
             E("ts-a", 0, 0, false, false) "," E("ts-b", 0, 0, false, false) "]}");
    a = agent();
    CHECK(a);
    CHECK(run_until(is_registered, a, 30));
    fb.status = 503;                 /* the broker answers nothing useful any more */
    servers[0].mode = TS_DOWN;       /* and the client's server dies */
    bool moved = false;
    for (int i = 0; i < 200 && !moved; i++) {
        run_until(NULL, a, 1);
        moved = strcmp(registered_to(a), "ts-b") == 0;
    }
    CHECK(moved); /* from the cached list, the broker being down */
    CHECK(events[TSL_AGENT_EV_LIST_FAILED] >= 1 || fb.list_requests == 1);
    CHECK_INT(events[TSL_AGENT_EV_CACHE_DROPPED], 0);
    /* past the ttl: the cache is dropped, the registration is kept */
    bool dropped = false;
    for (int i = 0; i < 400 && !dropped; i++) {
        run_until(NULL, a, 1);
        dropped = events[TSL_AGENT_EV_CACHE_DROPPED] == 1;
    }
    CHECK(dropped);
    CHECK_CONTAINS(logbuf, "Failed to get Task Server list from SMP Server: busy (HTTP 503)");
    CHECK_CONTAINS(logbuf, "Cached Task Server list expired: dropped");
    CHECK(is_registered(a));
    tsl_agent_status st;
    tsl_agent_status_get(a, &st);
    CHECK(!st.has_list);
    /* the broker is back: a list again */
    fb.status = 200;
    bool relisted = false;
    for (int i = 0; i < 400 && !relisted; i++) {
        run_until(NULL, a, 1);
        tsl_agent_status_get(a, &st);
        relisted = st.has_list;
    }
    CHECK(relisted);
    tsl_agent_free(a);
    world_free();
}

#define LIST3(strict, a, b, c)                                                              \
    "{\"site\":\"S\",\"policy\":null,\"blocked\":false,\"strict\":" #strict ",\"ttl\":600," \
    "\"servers\":[" a "," b "," c "]}"

TEST(agent__the_list_is_cached_for_its_ttl)
{
    ts_mode modes[] = {TS_OK, TS_OK};
    tsl_agent *a = NULL;
    CHECK(world(2, modes) == 0);
    snprintf(fb.list, sizeof fb.list,
             "{\"site\":\"S\",\"blocked\":false,\"strict\":false,\"ttl\":100,\"servers\":["
             E("ts-a", 0, 0, false, false) "," E("ts-b", 0, 0, false, false) "]}");
    a = agent();
    CHECK(a);
    CHECK(run_until(is_registered, a, 30));
    /* refresh at ttl x 0.8 (jittered +-10 %): nothing asked before 72 s */
    run_until(NULL, a, 65);
    CHECK_INT(fb.list_requests, 1);
    run_until(NULL, a, 35);
    CHECK_INT(fb.list_requests, 2);
    CHECK(fb.asked[1] - fb.asked[0] > 71 && fb.asked[1] - fb.asked[0] < 90);
    tsl_agent_free(a);
    world_free();
}

/* One run of the backoff test: true when the gaps between list requests
 * follow 5, 10, 20, 20 s (+-10 % jitter).  Timers fire late on a loaded
 * machine, never early: lower bounds are firm, upper ones leave room. */
/* *firm turns false on what load cannot explain: an early retry, or an
 * attempt to register anywhere without a list. */
static bool backoff_run(bool *firm)
{
    ts_mode modes[] = {TS_OK, TS_OK};
    tsl_agent *a = NULL;
    bool ok = true;
    if (world(2, modes) != 0)
        return false;
    fb.status = 503; /* no list at all, ever */
    a = agent();     /* retry 5 s, doubling, at most 20 s */
    if (!a) {
        world_free();
        return false;
    }
    run_until(NULL, a, 80);
    const double want[] = {5, 10, 20, 20};
    ok = fb.list_requests >= 4 && fb.list_requests <= 6;
    for (int i = 1; i < fb.list_requests && i <= 4; i++) {
        double gap = fb.asked[i] - fb.asked[i - 1];
        if (gap < want[i - 1] * 0.89) {
            fprintf(stderr, "  gap %d: %.2f s, below %.0f s - 10 %%\n", i, gap, want[i - 1]);
            *firm = false;
            ok = false;
        } else if (gap > want[i - 1] * 1.11 + 2) {
            ok = false;
        }
    }
    if (events[TSL_AGENT_EV_ATTEMPT] || servers[0].registrations || servers[1].registrations)
        *firm = false;
    if (!strstr(logbuf, "Failed to get Task Server list from SMP Server"))
        ok = false;
    tsl_agent_free(a);
    world_free();
    return ok;
}

TEST(agent__an_unreachable_broker_is_retried_with_backoff_up_to_the_ceiling)
{
    bool firm = true, followed = false;
    for (int run = 0; run < 3 && !followed && firm; run++)
        followed = backoff_run(&firm); /* a stalled machine gets another go */
    CHECK(followed);
    /* never early, and with no list it never registers anywhere: it does
     * not invent a server */
    CHECK(firm);
}

TEST(agent__a_strict_list_is_tried_strictly_in_order)
{
    /* ts-a down, ts-b full by the list's account, ts-c fresh: a strict list
     * still tries a, then b (which accepts), never jumping to c */
    ts_mode modes[] = {TS_DOWN, TS_OK, TS_OK};
    tsl_agent *a = NULL;
    CHECK(world(3, modes) == 0);
    snprintf(fb.list, sizeof fb.list,
             LIST3(true, E("ts-a", 0, 0, false, false), E("ts-b", 0, 0, true, true),
                   E("ts-c", 0, 0, false, false)));
    a = agent();
    CHECK(a);
    CHECK(run_until(is_registered, a, 30));
    CHECK_STR(attempted, "ts-a ts-b");
    CHECK_STR(registered_to(a), "ts-b");
    /* the same list, not strict: the fresh entry first */
    tsl_agent_free(a);
    world_free();
    CHECK(world(3, modes) == 0);
    snprintf(fb.list, sizeof fb.list,
             LIST3(false, E("ts-b", 0, 0, true, true), E("ts-a", 0, 0, false, false),
                   E("ts-c", 0, 0, false, false)));
    a = agent();
    CHECK(a);
    CHECK(run_until(is_registered, a, 30));
    CHECK(strncmp(attempted, "ts-b", 4) != 0); /* the full, erring entry is not first */
    CHECK(strcmp(registered_to(a), "ts-b") != 0);
    tsl_agent_free(a);
    world_free();
}

TEST(agent__tiers_are_exhausted_in_order_and_after_is_respected)
{
    /* tier 0: a and b, both down; tier 1: c, after 120 s; tier 2: d */
    ts_mode modes[] = {TS_DOWN, TS_DOWN, TS_OK, TS_OK};
    tsl_agent *a = NULL;
    CHECK(world(4, modes) == 0);
    snprintf(fb.list, sizeof fb.list,
             "{\"site\":\"S\",\"blocked\":false,\"strict\":false,\"ttl\":600,\"servers\":["
             E("ts-d", 2, 0, false, false) "," E("ts-c", 1, 120, false, false) ","
             E("ts-a", 0, 0, false, false) "," E("ts-b", 0, 0, false, false) "]}");
    a = agent();
    CHECK(a);
    double t_start = agent_now(NULL);
    /* tier 0 fails; tier 1 waits for its `after`: stuck, as the list demands */
    CHECK(run_until(is_gated, a, 60));
    CHECK(agent_now(NULL) - t_start < 120);
    CHECK(!is_registered(a));
    CHECK(strstr(attempted, "ts-c") == NULL && strstr(attempted, "ts-d") == NULL);
    CHECK(strncmp(attempted, "ts-a ts-b", 9) == 0 || strncmp(attempted, "ts-b ts-a", 9) == 0);
    CHECK(events[TSL_AGENT_EV_STUCK] >= 1);
    CHECK(run_until(is_registered, a, 200));
    CHECK_STR(registered_to(a), "ts-c"); /* tier 1 before tier 2 */
    CHECK_INT(servers[3].registrations, 0);
    tsl_agent_free(a);
    world_free();
}

TEST(agent__config_is_checked)
{
    tsl_agent_config cfg;
    tsl_agent *a = NULL;
    struct event_base *b = event_base_new();
    CHECK(b);
    tsl_agent_config_init(&cfg);
    cfg.broker_host = "127.0.0.1";
    cfg.broker_port = 8080;
    CHECK(tsl_agent_new(&a, b, &cfg) == TSL_EINVALID); /* no client */
    CHECK_CONTAINS(tsl_error_last(), "GUID");
    cfg.client = "G";
    cfg.timing.retry_max = 1;
    CHECK(tsl_agent_new(&a, b, &cfg) == TSL_EINVALID);
    CHECK_NULL(a);
    tsl_agent_config_init(&cfg);
    cfg.broker_host = "127.0.0.1";
    cfg.broker_port = 0;
    cfg.client = "G";
    CHECK(tsl_agent_new(&a, b, &cfg) == TSL_EINVALID);
    cfg.broker_port = 1;
    CHECK_OK(tsl_agent_new(&a, b, &cfg));
    CHECK_OK(tsl_agent_start(a, 1000));
    CHECK(tsl_agent_start(a, 0) == TSL_EINVALID);
    tsl_agent_free(a);
    tsl_agent_free(NULL);
    event_base_free(b);
}

static void ignore_result(const ahttp_result *r, void *arg)
{
    (void)r;
    (void)arg;
}

TEST(agent__http_client_refuses_names_and_escapes_queries)
{
    ahttp *h = NULL;
    char esc[64];
    struct event_base *b = event_base_new();
    CHECK(b);
    CHECK(ahttp_start(&h, b, "localhost", 80, "GET", "/", NULL, NULL, 0, 1, NULL, ignore_result,
                      NULL) == TSL_EINVALID);
    CHECK_NULL(h);
    CHECK(ahttp_query_escape(esc, sizeof esc, "Sales & Marketing/é"));
    CHECK_STR(esc, "Sales%20%26%20Marketing%2F%C3%A9");
    CHECK(!ahttp_query_escape(esc, 4, "abcd"));
    event_base_free(b);
}

int main(void)
{
    RUN(agent__pick_exhausts_tier_k_before_k_plus_1);
    RUN(agent__pick_demotes_full_and_failed_entries_unless_strict);
    RUN(agent__pick_after_waits_until_earlier_tiers_failed_long_enough);
    RUN(agent__pick_empty_or_blocked_list_gives_nothing);
    RUN(agent__list_parse_refuses_bad_documents);
    RUN(agent__memory_forgets_the_oldest_when_full);
    RUN(agent__registers_to_the_first_entry_and_reports_it);
    RUN(agent__a_refused_entry_fails_over_to_the_next_and_reports_both);
    RUN(agent__a_silent_or_full_server_fails_and_the_next_is_tried);
    RUN(agent__on_virtual_time_a_silent_server_times_out_after_exactly_its_timeout);
    RUN(agent__every_entry_failing_means_stuck_retrying_never_another_server);
    RUN(agent__the_list_is_cached_for_its_ttl);
    RUN(agent__an_unreachable_broker_is_retried_with_backoff_up_to_the_ceiling);
    RUN(agent__a_strict_list_is_tried_strictly_in_order);
    RUN(agent__tiers_are_exhausted_in_order_and_after_is_respected);
    RUN(agent__a_blocked_empty_list_waits_without_attempts);
    RUN(agent__a_lost_server_sends_it_to_the_next_entry);
    RUN(agent__broker_outage_uses_the_cached_list_then_drops_it_at_expiry);
    RUN(agent__config_is_checked);
    RUN(agent__http_client_refuses_names_and_escapes_queries);
    return tsl_test_main();
}
