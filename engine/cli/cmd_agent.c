/*
 * cmd_agent.c - `tsl agent`: one reference Client Task Agent (engine/agent),
 * for real: it asks the broker at --broker for its list, registers with a
 * Task Server that speaks the agent's protocol (the simulator's do; see
 * agent.h) on --ts-port, reports, watches its server, and logs every step
 * in the troubleshooting guide's words on stderr.  Runs until SIGINT or
 * SIGTERM, --duration, or with --once until it is registered (exit 0) or
 * stuck (exit 1).
 *
 * Used by: main.c, tests/test_agent.c.  Needs: cli.h, agent.h, libevent.
 */
#include "agent.h"
#include "cli.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

static const char agent_usage[] =
    "usage: tsl agent --broker URL --client GUID --ip IP [--ip IP]... [options]\n"
    "\n"
    "Runs one reference Client Task Agent: requests its Task Server list from the\n"
    "broker (GET /v1/task-servers), caches it for its ttl, registers with a Task\n"
    "Server from it (strict lists in order, otherwise by the conditions the list\n"
    "carries, tier by tier, honouring `after`), reports the result to the broker,\n"
    "polls its server, and fails over or keeps retrying when servers fail.  Every\n"
    "step is logged on stderr in the troubleshooting guide's words.\n"
    "\n"
    "  --broker URL         the broker: http://HOST:PORT (or HOST:PORT)\n"
    "  --client GUID        this client's GUID\n"
    "  --ip IP[,IP]...      an adapter address (repeat, or separate with commas, for\n"
    "                       each adapter, up to 16)\n"
    "  --department D       the client's department (default: none sent, so the\n"
    "                       broker uses the inventory's)\n"
    "  --task T             the task it asks for (imaging, ...; default: none)\n"
    "  --ts-port N          port Task Servers accept registrations on (80)\n"
    "  --poll S             seconds between checks of the registered server (300)\n"
    "  --retry S            first broker retry after a failure (15); doubles up to\n"
    "  --retry-max S        this ceiling (600)\n"
    "  --stuck-retry S      pause between rounds when every entry failed (120)\n"
    "  --timeout S          broker and Task Server exchange timeout (10)\n"
    "  --duration S         stop after S seconds (default: until SIGINT/SIGTERM)\n"
    "  --once               stop once registered (exit 0) or stuck retrying (exit 1)\n"
    "  -h, --help           this help\n"
    "\n"
    "exit status: 0 ran (or, with --once, registered), 1 with --once: stuck\n"
    "retrying, 2 usage error, 3 could not run.\n"
    "\n"
    "example: tsl agent --broker http://127.0.0.1:8080 --client 4C4C4544-0042 \\\n"
    "             --ip 10.10.3.17 --ts-port 8081 --once\n";

struct run {
    struct event_base *base;
    int ts_port;
    bool once;
    int outcome; /* CLI_OK, or CLI_FINDINGS when stuck with --once */
};

/* A numeric address for `name` (looked up once, blocking: one agent). */
static int numeric(const char *name, char *dst, size_t len)
{
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(name, NULL, &hints, &ai) != 0 || !ai)
        return -1;
    int rc = getnameinfo(ai->ai_addr, ai->ai_addrlen, dst, (socklen_t)len, NULL, 0,
                         NI_NUMERICHOST) == 0 ? 0 : -1;
    freeaddrinfo(ai);
    return rc;
}

static int resolve(void *arg, const tsl_agent *a, const tsl_agent_entry *e, char *host,
                   size_t hostlen, int *port)
{
    struct run *r = arg;
    (void)a;
    const char *h = e->ip && e->ip[0] ? e->ip : e->host;
    if (!h || !h[0] || numeric(h, host, hostlen) < 0)
        return -1;
    *port = r->ts_port;
    return 0;
}

static void on_log(void *arg, const tsl_agent *a, const char *line)
{
    char when[32];
    time_t t = time(NULL);
    struct tm tm;
    (void)arg;
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    fprintf(stderr, "%s %s: %s\n", when, tsl_agent_client(a), line);
}

static void on_event(void *arg, tsl_agent *a, tsl_agent_event ev, const tsl_agent_entry *e,
                     const char *detail)
{
    struct run *r = arg;
    (void)a;
    (void)e;
    (void)detail;
    if (!r->once)
        return;
    if (ev == TSL_AGENT_EV_REGISTERED) {
        r->outcome = CLI_OK;
        event_base_loopexit(r->base, NULL);
    } else if (ev == TSL_AGENT_EV_STUCK) {
        r->outcome = CLI_FINDINGS;
        event_base_loopexit(r->base, NULL);
    }
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    event_base_loopexit(arg, NULL);
}

/* "http://host:port/", "host:port", "[v6]:port" -> numeric host, port. */
static int parse_broker(const struct cli_global *g, const char *url, char *host, size_t hostlen,
                        int *port)
{
    char name[256];
    const char *p = strncmp(url, "http://", 7) == 0 ? url + 7 : url;
    const char *colon;
    if (strncmp(url, "https://", 8) == 0)
        return cli_usage_error(g, "--broker: https is not supported by the reference agent");
    if (*p == '[') {
        const char *end = strchr(p, ']');
        if (!end || end[1] != ':')
            return cli_usage_error(g, "--broker: \"%s\" is not http://HOST:PORT", url);
        snprintf(name, sizeof name, "%.*s", (int)(end - p - 1), p + 1);
        colon = end + 1;
    } else {
        colon = strrchr(p, ':');
        if (!colon)
            return cli_usage_error(g, "--broker: \"%s\" has no port (http://HOST:PORT)", url);
        snprintf(name, sizeof name, "%.*s", (int)(colon - p), p);
    }
    char *end;
    errno = 0;
    long v = strtol(colon + 1, &end, 10);
    if (errno || end == colon + 1 || (*end && strcmp(end, "/") != 0) || v < 1 || v > 65535)
        return cli_usage_error(g, "--broker: bad port in \"%s\"", url);
    *port = (int)v;
    if (numeric(name, host, hostlen) < 0)
        return cli_error(g, CLI_USAGE, "--broker: cannot resolve \"%s\"", name);
    return CLI_OK;
}

static int seconds(const struct cli_global *g, const char *opt, const char *text, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || *end || errno || !(v > 0 && v <= 365 * 86400.0))
        return cli_usage_error(g, "%s: \"%s\" is not a number of seconds", opt, text);
    *out = v;
    return CLI_OK;
}

int cmd_agent(const struct cli_global *g, int argc, char **argv)
{
    static const struct option opts[] = {
        {"broker", required_argument, NULL, 'b'},     {"client", required_argument, NULL, 'c'},
        {"ip", required_argument, NULL, 'i'},         {"department", required_argument, NULL, 'd'},
        {"task", required_argument, NULL, 't'},       {"ts-port", required_argument, NULL, 'p'},
        {"poll", required_argument, NULL, 'P'},       {"retry", required_argument, NULL, 'r'},
        {"retry-max", required_argument, NULL, 'R'},  {"stuck-retry", required_argument, NULL, 'S'},
        {"timeout", required_argument, NULL, 'T'},    {"duration", required_argument, NULL, 'D'},
        {"once", no_argument, NULL, 'o'},             {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    tsl_agent_config cfg;
    struct run run = {NULL, 80, false, CLI_OK};
    const char *broker = NULL;
    char host[64];
    double duration = 0;
    tsl_agent *a = NULL;
    struct event *sigint = NULL, *sigterm = NULL;
    int c, rc = CLI_OK, err;

    tsl_agent_config_init(&cfg);
    cli_getopt_reset();
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'b':
            broker = optarg;
            break;
        case 'c':
            cfg.client = optarg;
            break;
        case 'i':
            if ((rc = cli_list_add(g, "--ip", optarg, cfg.ips, &cfg.nips, TSL_MAX_IPS)) !=
                CLI_OK)
                return rc;
            break;
        case 'd':
            cfg.department = optarg;
            break;
        case 't':
            cfg.task = optarg;
            break;
        case 'p': {
            uint64_t v;
            if ((rc = cli_parse_uint(g, "--ts-port", optarg, 65535, &v)) != CLI_OK)
                return rc;
            if (v == 0)
                return cli_usage_error(g, "--ts-port: 0 is not a port");
            run.ts_port = (int)v;
            break;
        }
        case 'P':
            if ((rc = seconds(g, "--poll", optarg, &cfg.timing.poll_interval)) != CLI_OK)
                return rc;
            break;
        case 'r':
            if ((rc = seconds(g, "--retry", optarg, &cfg.timing.retry_min)) != CLI_OK)
                return rc;
            break;
        case 'R':
            if ((rc = seconds(g, "--retry-max", optarg, &cfg.timing.retry_max)) != CLI_OK)
                return rc;
            break;
        case 'S':
            if ((rc = seconds(g, "--stuck-retry", optarg, &cfg.timing.stuck_retry)) != CLI_OK)
                return rc;
            break;
        case 'T':
            if ((rc = seconds(g, "--timeout", optarg, &cfg.timing.request_timeout)) != CLI_OK)
                return rc;
            cfg.timing.register_timeout = cfg.timing.request_timeout;
            break;
        case 'D':
            if ((rc = seconds(g, "--duration", optarg, &duration)) != CLI_OK)
                return rc;
            break;
        case 'o':
            run.once = true;
            break;
        case 'h':
            fputs(agent_usage, stdout);
            return CLI_OK;
        default:
            return cli_getopt_error(g, c, argv);
        }
    }
    if (optind < argc)
        return cli_usage_error(g, "unexpected argument '%s'", argv[optind]);
    if (!broker || !cfg.client)
        return cli_usage_error(g, "give --broker and --client");
    if (cfg.nips == 0)
        return cli_usage_error(g, "give at least one --ip");
    for (size_t i = 0; i < cfg.nips; i++) {
        tsl_ip ip;
        if (tsl_ip_parse(&ip, cfg.ips[i]) < 0)
            return cli_usage_error(g, "--ip: %s", tsl_error_last());
    }
    if (cfg.timing.retry_max < cfg.timing.retry_min)
        return cli_usage_error(g, "--retry-max is below --retry");
    if ((rc = parse_broker(g, broker, host, sizeof host, &cfg.broker_port)) != CLI_OK)
        return rc;

    signal(SIGPIPE, SIG_IGN);
    if (!(run.base = event_base_new())) {
        rc = cli_error(g, CLI_FAIL, "cannot create an event loop");
        goto done;
    }
    cfg.broker_host = host;
    cfg.resolve = resolve;
    cfg.log = on_log;
    cfg.event = on_event;
    cfg.arg = &run;
    if ((err = tsl_agent_new(&a, run.base, &cfg)) < 0 || (err = tsl_agent_start(a, 0)) < 0) {
        rc = cli_engine_error(g, err, NULL);
        goto done;
    }
    sigint = evsignal_new(run.base, SIGINT, on_signal, run.base);
    sigterm = evsignal_new(run.base, SIGTERM, on_signal, run.base);
    if (!sigint || !sigterm || evsignal_add(sigint, NULL) < 0 || evsignal_add(sigterm, NULL) < 0) {
        rc = cli_error(g, CLI_FAIL, "cannot watch for signals");
        goto done;
    }
    if (duration > 0) {
        struct timeval tv = {(time_t)duration, (suseconds_t)((duration - (double)(time_t)duration) * 1e6)};
        event_base_loopexit(run.base, &tv);
    }
    if (event_base_dispatch(run.base) < 0) {
        rc = cli_error(g, CLI_FAIL, "the event loop failed");
        goto done;
    }
    rc = run.outcome;
    if (run.once && rc == CLI_OK) {
        tsl_agent_status st;
        tsl_agent_status_get(a, &st);
        if (st.state != TSL_AGENT_REGISTERED)
            rc = CLI_FINDINGS; /* --duration ran out first */
    }
done:
    tsl_agent_free(a);
    if (sigint)
        event_free(sigint);
    if (sigterm)
        event_free(sigterm);
    if (run.base)
        event_base_free(run.base);
    return rc;
}
