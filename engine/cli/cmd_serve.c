/*
 * cmd_serve.c - `tsl serve`: the broker (engine/broker) as a program.
 *
 * Parses the options into a tsl_broker_config, sets up logging (stderr or
 * syslog), ignores SIGPIPE, and runs the broker in this thread until
 * SIGTERM/SIGINT; SIGHUP reloads.  With no --db it serves the bundled demo
 * estate (policies/demo/estate.json) and, when the policy layer is built
 * in, the example policy, from a fresh store in a temporary directory that
 * is removed on exit.
 *
 * Used by: main.c.  Needs: cli.h, broker.h.
 */
#define _XOPEN_SOURCE 700 /* nftw */
#include "broker.h"
#include "cli.h"

#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

static const char serve_usage[] =
    "usage: tsl [--db FILE] serve [--listen ADDR:PORT] [--policy FILE]\n"
    "                             [--admin-token-file FILE] [--ts-token-file FILE]\n"
    "                             [options]\n"
    "\n"
    "Runs the broker: an HTTP service that answers every Client Task Agent's\n"
    "Task Server list request (GET /v1/task-servers) from an in-memory snapshot,\n"
    "takes Task Server heartbeats and registration reports, and serves the admin\n"
    "API (policies, explain, reports, inventory import).  See docs/http-api.md and\n"
    "docs/operations.md.  Without --db it serves the bundled demo estate from a\n"
    "throwaway store.\n"
    "\n"
    "  --listen ADDR:PORT      where to listen (127.0.0.1:8080; port 0 picks one)\n"
    "  --policy FILE           store this Lua policy and make it active everywhere\n"
    "                          unless it already is (re-read on SIGHUP); without\n"
    "                          it the rollout in force (`tsl policy activate`,\n"
    "                          staged sites and shadow included), else the\n"
    "                          default logic\n"
    "  --admin-token-file F    the admin bearer token (default DB.token; created\n"
    "                          with mode 0600 and a random token when absent)\n"
    "  --ts-token-file F       the Task Servers' bearer token for heartbeats\n"
    "                          (default DB.ts-token; created like the admin's)\n"
    "  --heartbeat-registration  a heartbeat from a name the inventory lacks makes\n"
    "                          it a pending server for an admin to approve\n"
    "                          (`tsl servers approve`); without it: 403\n"
    "  --heartbeat-rate N      heartbeats a second per peer address, 0 no limit (20)\n"
    "  --heartbeat-burst N     ... in a burst (200)\n"
    "  --max-servers N         task servers, known and pending, at most (10000)\n"
    "  --registration-rate N   registration reports a second per client, 0 no\n"
    "                          limit (1)\n"
    "  --registration-burst N  ... in a burst (20)\n"
    "  --threads N             HTTP worker threads (default: one per CPU)\n"
    "  --log-level LEVEL       error, warning, info (default: a line per request\n"
    "                          and event) or debug\n"
    "  --syslog                log to syslog (daemon facility) instead of stderr\n"
    "  --stale-after S         a heartbeat older than S seconds is unavailable (180)\n"
    "  --error-window S        a registration failure ranks that server last for the\n"
    "                          client for S seconds (3600)\n"
    "  --max N                 entries in a list (10)\n"
    "  --ttl S                 seconds a client may cache its list (3600)\n"
    "  --selection MODE        capacity, responsiveness or connections (capacity)\n"
    "  --refresh-ms MS         heartbeats reach the lists within this (500)\n"
    "  --decision-log N        rows kept in the decision_log table, 0 off (100000)\n"
    "  --decision-log-rate N   decisions logged per second at most (1000)\n"
    "  --keep-registrations D  days of registration reports kept (90)\n"
    "  --max-body BYTES        largest request body but imports (65536)\n"
    "  --timeout S             a request must arrive whole (headers and body)\n"
    "                          within S seconds of its first byte, else 408; idle\n"
    "                          connections close after S seconds too (10)\n"
    "  --max-connections-per-address N\n"
    "                          open connections from one client address; more get\n"
    "                          503 (256; 0: no cap)\n"
    "  --tls-cert FILE         serve HTTPS: the PEM certificate (chain)...\n"
    "  --tls-key FILE          ... and its PEM private key\n"
    "  --behind-tls-proxy      allow plain HTTP on an address beyond loopback: a\n"
    "                          TLS-terminating proxy stands in front (else refused)\n"
    "  --require-peer-ip       refuse (403) a list request that does not come from\n"
    "                          one of its ip= adapter addresses\n"
    "  --trusted-proxy LIST    ADDR[/BITS],... whose X-Forwarded-For names the client\n"
    "                          (with --require-peer-ip)\n"
    "  -h, --help              this help\n"
    "\n"
    "Signals: SIGTERM and SIGINT stop it cleanly (requests in flight are answered,\n"
    "every acknowledged write is saved); SIGHUP reloads the inventory and the\n"
    "policy, keeping the ones in force if the new ones fail.  `tsl policy\n"
    "activate|rollback|shadow` run beside it take effect within a second.\n"
    "\n"
    "exit status: 0 stopped cleanly, 2 usage or input error, 3 the broker failed.\n";

#define DEMO_ESTATE "policies/demo/estate.json"
#define DEMO_POLICY "policies/examples/demo.lua"

static void syslog_sink(void *ud, tsl_log_level level, const char *line)
{
    static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
    (void)ud;
    syslog(prio[level], "%s", line);
}

static int parse_level(const char *s, tsl_log_level *out)
{
    static const char *const names[] = {"error", "warning", "info", "debug"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, names[i]) == 0) {
            *out = (tsl_log_level)i;
            return 0;
        }
    }
    return -1;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* The demo: a fresh store in a temporary directory, the bundled estate
 * imported into it, the example policy when it exists and compiles. */
static int prepare_demo(const struct cli_global *g, char *dir, size_t dirlen, char *db,
                        size_t dblen, char *policy, size_t policylen)
{
    const char *src = cli_data_dir();
    char estate[4096];
    char *text = NULL;
    size_t len;
    tsl_store *st = NULL;
    int rc = CLI_OK, err;

    policy[0] = '\0';
    if (!src)
        return cli_error(g, CLI_USAGE, "no --db given and no demo estate: neither share/tsl "
                                       "beside this tsl nor its source tree has one");
    snprintf(estate, sizeof estate, "%s/%s", src, DEMO_ESTATE);
    if (access(estate, R_OK) != 0)
        return cli_error(g, CLI_USAGE,
                         "no --db given and the demo estate %s is missing",
                         estate);
    snprintf(dir, dirlen, "%s/tsl-serve-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(dir))
        return cli_error(g, CLI_FAIL, "cannot create a temporary directory: %s", strerror(errno));
    snprintf(db, dblen, "%s/demo.db", dir);
    if ((rc = cli_read_file(g, estate, &text, &len)) != CLI_OK)
        goto done;
    if ((err = tsl_store_open(&st, db, 0)) < 0 ||
        (err = tsl_store_import_json(st, text, len, estate)) < 0) {
        rc = cli_engine_error(g, err, "cannot load the demo estate");
        goto done;
    }
    /* the example policy, if this build has the policy layer */
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", src, DEMO_POLICY);
    char *ptext = NULL;
    size_t plen;
    FILE *f = fopen(path, "rb");
    if (f) {
        fclose(f);
        tsl_policy *pol = NULL;
        if (cli_read_file(g, path, &ptext, &plen) == CLI_OK &&
            tsl_policy_compile(&pol, ptext, plen, path) == 0)
            snprintf(policy, policylen, "%s", path);
        tsl_policy_free(pol);
        free(ptext);
    }
    fprintf(stderr, "tsl serve: no --db: serving the demo estate %s from %s%s%s\n", estate, db,
            policy[0] ? " with the example policy " : "", policy);

done:
    tsl_store_free(st);
    free(text);
    if (rc != CLI_OK)
        nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    return rc;
}

int cmd_serve(const struct cli_global *g, int argc, char **argv)
{
    enum {
        O_LISTEN = 256, O_POLICY, O_TOKEN, O_THREADS, O_LEVEL, O_SYSLOG, O_STALE, O_WINDOW,
        O_MAX, O_TTL, O_SELECTION, O_REFRESH, O_DLOG, O_DLOG_RATE, O_KEEP, O_BODY, O_TIMEOUT,
        O_TS_TOKEN, O_HB_REG, O_HB_RATE, O_HB_BURST, O_MAX_SERVERS, O_REG_RATE, O_REG_BURST,
        O_PER_ADDR, O_TLS_CERT, O_TLS_KEY, O_BEHIND_PROXY,
        O_PEER, O_PROXY
    };
    static const struct option opts[] = {
        {"listen", required_argument, NULL, O_LISTEN},
        {"policy", required_argument, NULL, O_POLICY},
        {"admin-token-file", required_argument, NULL, O_TOKEN},
        {"threads", required_argument, NULL, O_THREADS},
        {"log-level", required_argument, NULL, O_LEVEL},
        {"syslog", no_argument, NULL, O_SYSLOG},
        {"stale-after", required_argument, NULL, O_STALE},
        {"error-window", required_argument, NULL, O_WINDOW},
        {"max", required_argument, NULL, O_MAX},
        {"ttl", required_argument, NULL, O_TTL},
        {"selection", required_argument, NULL, O_SELECTION},
        {"refresh-ms", required_argument, NULL, O_REFRESH},
        {"decision-log", required_argument, NULL, O_DLOG},
        {"decision-log-rate", required_argument, NULL, O_DLOG_RATE},
        {"keep-registrations", required_argument, NULL, O_KEEP},
        {"max-body", required_argument, NULL, O_BODY},
        {"timeout", required_argument, NULL, O_TIMEOUT},
        {"ts-token-file", required_argument, NULL, O_TS_TOKEN},
        {"heartbeat-registration", no_argument, NULL, O_HB_REG},
        {"heartbeat-rate", required_argument, NULL, O_HB_RATE},
        {"heartbeat-burst", required_argument, NULL, O_HB_BURST},
        {"max-servers", required_argument, NULL, O_MAX_SERVERS},
        {"registration-rate", required_argument, NULL, O_REG_RATE},
        {"registration-burst", required_argument, NULL, O_REG_BURST},
        {"max-connections-per-address", required_argument, NULL, O_PER_ADDR},
        {"tls-cert", required_argument, NULL, O_TLS_CERT},
        {"tls-key", required_argument, NULL, O_TLS_KEY},
        {"behind-tls-proxy", no_argument, NULL, O_BEHIND_PROXY},
        {"require-peer-ip", no_argument, NULL, O_PEER},
        {"trusted-proxy", required_argument, NULL, O_PROXY},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    tsl_broker_config cfg;
    tsl_broker *b = NULL;
    bool use_syslog = false;
    char demo_dir[4096] = "", demo_db[4200], demo_policy[4200];
    uint64_t v;
    int c, rc = CLI_OK, err;

    tsl_broker_config_init(&cfg);
    cfg.handle_signals = true;
    cli_getopt_reset();
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case O_LISTEN: cfg.listen = optarg; break;
        case O_POLICY: cfg.policy_path = optarg; break;
        case O_TOKEN: cfg.admin_token_file = optarg; break;
        case O_TS_TOKEN: cfg.ts_token_file = optarg; break;
        case O_HB_REG: cfg.heartbeat_registration = true; break;
        case O_SYSLOG: use_syslog = true; break;
        case O_TLS_CERT: cfg.tls_cert = optarg; break;
        case O_TLS_KEY: cfg.tls_key = optarg; break;
        case O_BEHIND_PROXY: cfg.behind_tls_proxy = true; break;
        case O_PEER: cfg.require_peer_ip = true; break;
        case O_PROXY: cfg.trusted_proxies = optarg; break;
        case O_LEVEL:
            if (parse_level(optarg, &cfg.log_level) < 0)
                return cli_usage_error(g, "--log-level must be error, warning, info or debug");
            break;
        case O_SELECTION:
            if (tsl_selection_parse(&cfg.settings.selection, optarg) < 0)
                return cli_usage_error(g, "--selection: %s", tsl_error_last());
            break;
#define UINT_OPT(code, name, max, field, type)                                   \
        case code:                                                               \
            if ((rc = cli_parse_uint(g, name, optarg, max, &v)) != CLI_OK)       \
                return rc;                                                       \
            field = (type)v;                                                     \
            break;
        UINT_OPT(O_THREADS, "--threads", 64, cfg.threads, int)
        UINT_OPT(O_STALE, "--stale-after", 100u * 365 * 86400, cfg.settings.stale_after, int64_t)
        UINT_OPT(O_WINDOW, "--error-window", 100u * 365 * 86400, cfg.settings.error_window, int64_t)
        UINT_OPT(O_MAX, "--max", 1000, cfg.settings.max, int)
        UINT_OPT(O_TTL, "--ttl", 30 * 86400, cfg.settings.ttl, int)
        UINT_OPT(O_REFRESH, "--refresh-ms", 60000, cfg.refresh_ms, int)
        UINT_OPT(O_DLOG, "--decision-log", 100000000, cfg.decision_log_max, int)
        UINT_OPT(O_DLOG_RATE, "--decision-log-rate", 1000000, cfg.decision_log_rate, int)
        UINT_OPT(O_KEEP, "--keep-registrations", 36500, cfg.registrations_keep_days, int)
        UINT_OPT(O_BODY, "--max-body", 64u << 20, cfg.max_body, size_t)
        UINT_OPT(O_TIMEOUT, "--timeout", 3600, cfg.timeout_s, int)
        UINT_OPT(O_HB_RATE, "--heartbeat-rate", 1000000, cfg.heartbeat_rate, double)
        UINT_OPT(O_HB_BURST, "--heartbeat-burst", 1000000, cfg.heartbeat_burst, int)
        UINT_OPT(O_MAX_SERVERS, "--max-servers", 10000000, cfg.max_servers, int)
        UINT_OPT(O_REG_RATE, "--registration-rate", 1000000, cfg.registration_rate, double)
        UINT_OPT(O_REG_BURST, "--registration-burst", 1000000, cfg.registration_burst, int)
        UINT_OPT(O_PER_ADDR, "--max-connections-per-address", 1000000, cfg.max_conns_per_addr, int)
#undef UINT_OPT
        case 'h':
            fputs(serve_usage, stdout);
            return CLI_OK;
        default:
            return cli_getopt_error(g, c, argv);
        }
    }
    if (optind < argc)
        return cli_usage_error(g, "unexpected argument \"%s\"", argv[optind]);
    if (cfg.settings.max < 1)
        return cli_usage_error(g, "--max must be at least 1");

    if (g->db) {
        cfg.db_path = g->db;
    } else {
        if ((rc = prepare_demo(g, demo_dir, sizeof demo_dir, demo_db, sizeof demo_db,
                               demo_policy, sizeof demo_policy)) != CLI_OK)
            return rc;
        cfg.db_path = demo_db;
        if (!cfg.policy_path && demo_policy[0])
            cfg.policy_path = demo_policy;
    }
    if (use_syslog) {
        openlog("tsl", LOG_PID, LOG_DAEMON);
        cfg.log_fn = syslog_sink;
    }
    /* a client that goes away mid-reply must not kill the broker */
    signal(SIGPIPE, SIG_IGN);

    /* each connection is a descriptor: take as many as the hard limit allows
     * (systemd's LimitNOFILE= sets it), as nginx and Redis do */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    if ((err = tsl_broker_new(&b, &cfg)) < 0) {
        rc = cli_engine_error(g, err, "cannot start the broker");
        goto done;
    }
    if (demo_dir[0])
        fprintf(stderr,
                "tsl serve: listening on port %d; try:\n"
                "  curl 'http://127.0.0.1:%d/v1/task-servers?ip=10.10.3.17'\n"
                "  admin token: %s (in %s)\n"
                "  task server token: %s (in %s)\n",
                tsl_broker_bound_port(b), tsl_broker_bound_port(b), tsl_broker_admin_token(b),
                tsl_broker_admin_token_path(b), tsl_broker_ts_token(b),
                tsl_broker_ts_token_path(b));
    if ((err = tsl_broker_run(b)) < 0)
        rc = cli_engine_error(g, err, "the broker stopped on an error");

done:
    tsl_broker_free(b);
    if (use_syslog)
        closelog();
    if (demo_dir[0])
        nftw(demo_dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    return rc;
}
