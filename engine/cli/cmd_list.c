/*
 * cmd_list.c - `tsl list` (the Task Server list one request receives) and
 * `tsl explain` (every step of that decision, then the list).
 *
 * Both take the same request flags; both decide against a fresh snapshot
 * of the --db store, under --policy FILE when given, else the policy in
 * force (the rollout: active version, staged sites), else the default logic.
 *
 * Used by: main.c.  Needs: cli.h, jansson (explain --json).
 */
#include "cli.h"

#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct decide_opts {
    tsl_request req;
    const char *policy;
    bool json;
    bool help;
};

static const char list_usage[] =
    "usage: tsl --db FILE list [--ip IP]... [--client GUID|NAME] [--department D] [--task T]\n"
    "                          [--policy FILE] [--now TIME] [--json]\n"
    "\n"
    "Prints the Task Server list one Client Task Agent request receives: rank, server,\n"
    "host, site, tier (0 the client's site or approved set, 1.. fallback), load\n"
    "(connections/capacity), response time and the reason for each place.\n"
    "\n"
    "  --ip IP[,IP]...  an adapter address of the client, IPv4 or IPv6; repeat (or\n"
    "                   separate with commas) for multi-NIC clients, in adapter\n"
    "                   order (at most 16); without it, the inventory IP of --client\n"
    "  --client GUID|NAME  the client, by GUID or computer name (any case; a name\n"
    "                   several clients share is refused, listing their GUIDs): its\n"
    "                   explicit site, department and recent connection errors apply;\n"
    "                   without --ip its inventory IP is used\n"
    "  --department D   the department the request carries (default: the inventory's)\n"
    "  --task T         the task the request is for (policies may scope by task)\n"
    "  --policy FILE    decide under this Lua policy; without it, the policy in force\n"
    "                   (the active version and its staged sites, `tsl policy\n"
    "                   activate`), or the default logic when none is active\n"
    "  --now TIME       decide as of this time: Unix seconds or 2026-11-25T09:58:00Z\n"
    "                   (default: the current time)\n"
    "  --json           print the result as one JSON object\n"
    "  -h, --help       this help\n"
    "\n"
    "exit status: 0 a list was decided (even an empty one), 2 usage or input error\n"
    "(a bad IP, an unknown client without --ip, a policy that does not compile).\n";

static const char explain_usage[] =
    "usage: tsl --db FILE explain [--ip IP]... [--client GUID|NAME] [--department D]\n"
    "                             [--task T]\n"
    "                             [--policy FILE] [--now TIME] [--json]\n"
    "\n"
    "Decides like `tsl list` and prints every step with its reason, numbered: which\n"
    "subnet matched and on which adapter, the candidates, which servers were dropped\n"
    "as unavailable and why, the ranking keys, why a fallback happened; then the list.\n"
    "Takes the same options as `tsl list`; --json prints {\"steps\": [...], \"result\": {...}}.\n";

static int parse_decide_opts(const struct cli_global *g, int argc, char **argv,
                             struct decide_opts *o)
{
    static const struct option opts[] = {
        {"ip", required_argument, NULL, 'i'},
        {"client", required_argument, NULL, 'c'},
        {"department", required_argument, NULL, 'D'},
        {"task", required_argument, NULL, 't'},
        {"policy", required_argument, NULL, 'p'},
        {"now", required_argument, NULL, 'n'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c, rc;

    memset(o, 0, sizeof *o);
    cli_getopt_reset();
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'i': {
            size_t first = o->req.nips;
            if ((rc = cli_list_add(g, "--ip", optarg, o->req.ips, &o->req.nips,
                                   TSL_MAX_IPS)) != CLI_OK)
                return rc;
            for (size_t k = first; k < o->req.nips; k++) {
                tsl_ip ip;
                if (tsl_ip_parse(&ip, o->req.ips[k]) < 0)
                    return cli_error(g, CLI_USAGE,
                                     "--ip \"%s\" is not a valid IPv4 or IPv6 address",
                                     o->req.ips[k]);
            }
            break;
        }
        case 'c':
            if (!optarg[0])
                return cli_usage_error(g, "--client needs a GUID or a computer name");
            o->req.client = optarg;
            break;
        case 'D':
            o->req.department = optarg;
            break;
        case 't':
            o->req.task = optarg;
            break;
        case 'p':
            o->policy = optarg;
            break;
        case 'n':
            if ((rc = cli_parse_time(g, "--now", optarg, &o->req.now)) != CLI_OK)
                return rc;
            break;
        case 'j':
            o->json = true;
            break;
        case 'h':
            o->help = true;
            return CLI_OK;
        default:
            return cli_getopt_error(g, c, argv);
        }
    }
    if (optind < argc)
        return cli_usage_error(g, "unexpected argument '%s'", argv[optind]);
    if (o->req.nips == 0 && !o->req.client)
        return cli_usage_error(g, "give the client's address with --ip IP, or --client GUID|NAME");
    return CLI_OK;
}

/* --client names the client by GUID or computer name: the request carries
 * its GUID, and without --ip its inventory IP. */
static int resolve_client(const struct cli_global *g, const struct cli_engine *e,
                          tsl_request *req)
{
    const char *guid;
    int rc;

    if (!req->client)
        return CLI_OK;
    rc = tsl_snapshot_find_client(&guid, e->snap, req->client);
    if (rc == TSL_EINVALID)
        return cli_engine_error(g, rc, "--client \"%s\"", req->client);
    if (rc < 0) {
        if (req->nips > 0)
            return CLI_OK; /* a client the inventory lacks, judged by its addresses */
        return cli_error(g, CLI_USAGE,
                         "no client with GUID or name \"%s\" in %s; give its address with --ip",
                         req->client, g->db);
    }
    req->client = guid;
    if (req->nips > 0)
        return CLI_OK;
    size_t n = tsl_snapshot_client_count(e->snap);
    for (size_t i = 0; i < n; i++) {
        tsl_request r;
        if (tsl_snapshot_client_request(&r, e->snap, i) < 0)
            return cli_engine_error(g, TSL_ERROR, "cannot read client %zu", i);
        if (r.client == guid) {
            for (size_t k = 0; k < r.nips && k < TSL_MAX_IPS; k++)
                req->ips[k] = r.ips[k];
            req->nips = r.nips;
            return CLI_OK;
        }
    }
    return CLI_OK;
}

/* ------------------------------------------------------------------------
 * Human output
 * ---------------------------------------------------------------------- */

static int width(const char *s, int w)
{
    int n = s ? (int)strlen(s) : 1;
    return n > w ? n : w;
}

/* The TIER cell: "1", or "1+600s" for a delayed entry. */
static const char *tier_text(char *buf, size_t len, const tsl_entry *en)
{
    if (en->after > 0)
        snprintf(buf, len, "%d+%ds", en->tier, en->after);
    else
        snprintf(buf, len, "%d", en->tier);
    return buf;
}

/* connections x 100 / capacity, truncated, as text: exact at any int64
 * (the product overflows 64 bits past 92 quadrillion connections, so the
 * whole hundreds and the last two digits are computed apart). */
static const char *load_percent(char *dst, size_t len, const tsl_entry *en)
{
    if (en->connections < 0 || en->capacity <= 0) {
        snprintf(dst, len, "-");
        return dst;
    }
    uint64_t c = (uint64_t)en->connections, cap = (uint64_t)en->capacity;
    uint64_t q = c / cap, r = c % cap;
    unsigned d = (unsigned)(__extension__(unsigned __int128) r * 100 / cap);
    if (q)
        snprintf(dst, len, "%" PRIu64 "%02u", q, d);
    else
        snprintf(dst, len, "%u", d);
    return dst;
}

/* Prints the list as a table, with a short header naming the request. */
static void print_result(const char *policy_path, const tsl_request *req,
                         const tsl_result *res)
{
    const char *site = tsl_result_site(res);
    const char *policy = tsl_result_policy(res);
    size_t n = tsl_result_count(res);

    if (req->client)
        printf("client   %s\n", req->client);
    printf("ips     ");
    for (size_t i = 0; i < req->nips; i++)
        printf(" %s", req->ips[i]);
    printf("\n");
    const char *source = tsl_result_site_source(res);
    if (site)
        printf("site     %s (%s)\n", site, source ? source : "?");
    else
        printf("site     none: no explicit site, no adapter address in a site subnet\n");
    if (policy_path)
        printf("policy   %s (%s)", policy_path, policy ? policy : "?");
    else
        printf("policy   %s", policy ? policy : "default logic");
    printf("   ttl %d s%s\n", tsl_result_ttl(res), tsl_result_strict(res) ? "   strict" : "");
    if (tsl_result_blocked(res)) {
        const char *why = tsl_result_blocked_reason(res);
        printf("BLOCKED  %s\n", why ? why : "(no reason given)");
    }
    if (n == 0) {
        printf("\n(empty list: this client has no Task Server to use)\n");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const tsl_entry *en = tsl_result_entry(res, i);
        if (en->usable_at <= 0)
            continue;
        char when[32];
        time_t t = (time_t)en->usable_at;
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
        printf("DELAYED  every approved server is down: the fallback tiers are usable from %s "
               "(their outage + %d s)\n",
               when, en->after);
        break;
    }

    int wn = 6, wh = 4, ws = 4, wt = 4;
    char tier[24];
    for (size_t i = 0; i < n; i++) {
        const tsl_entry *en = tsl_result_entry(res, i);
        wn = width(en->name, wn);
        wh = width(en->host, wh);
        ws = width(en->site, ws);
        wt = width(tier_text(tier, sizeof tier, en), wt); /* "1+600s" is wider than TIER */
    }
    printf("\n %2s  %-*s  %-*s  %-*s  %-*s  %-17s  %7s  %s\n", "#", wn, "SERVER", wh, "HOST",
           ws, "SITE", wt, "TIER", "LOAD", "RESP", "REASON");
    for (size_t i = 0; i < n; i++) {
        const tsl_entry *en = tsl_result_entry(res, i);
        char load[80], resp[24], pct[32];
        if (en->capacity > 0)
            snprintf(load, sizeof load, "%" PRId64 "/%" PRId64 " (%s%%)", en->connections,
                     en->capacity, load_percent(pct, sizeof pct, en));
        else
            snprintf(load, sizeof load, "%" PRId64 "/-", en->connections);
        tier_text(tier, sizeof tier, en);
        snprintf(resp, sizeof resp, "%" PRId64 " ms", en->response_ms);
        printf(" %2zu  %-*s  %-*s  %-*s  %-*s  %-17s  %7s  %s%s%s\n", i + 1, wn, en->name, wh,
               en->host ? en->host : "-", ws, en->site ? en->site : "-", wt, tier, load, resp,
               en->reason ? en->reason : "", en->full ? " [full]" : "",
               en->recent_error ? " [recent error]" : "");
    }
}

/* ------------------------------------------------------------------------
 * The commands
 * ---------------------------------------------------------------------- */

static int run(const struct cli_global *g, int argc, char **argv, bool explain)
{
    struct decide_opts o;
    struct cli_engine e;
    tsl_result *res = NULL;
    tsl_trace *trace = NULL;
    tsl_buf out = TSL_BUF_INIT;
    int rc;

    if ((rc = parse_decide_opts(g, argc, argv, &o)) != CLI_OK)
        return rc;
    if (o.help) {
        fputs(explain ? explain_usage : list_usage, stdout);
        return CLI_OK;
    }
    if ((rc = cli_engine_open(g, &e, o.policy)) != CLI_OK)
        return rc;
    if ((rc = resolve_client(g, &e, &o.req)) != CLI_OK)
        goto done;
    if ((rc = tsl_result_new(&res)) < 0 || (explain && (rc = tsl_trace_new(&trace)) < 0)) {
        rc = cli_engine_error(g, rc, "cannot allocate a result");
        goto done;
    }
    if ((rc = tsl_decide(res, e.worker, e.plan, &o.req, trace)) < 0) {
        rc = cli_engine_error(g, rc, "cannot decide");
        goto done;
    }
    if (tsl_worker_policy_errors(e.worker) > 0)
        cli_error(g, 0, "warning: the policy raised an error (the decision absorbed it): %s",
                  tsl_worker_last_policy_error(e.worker));

    if (o.json) {
        if ((rc = tsl_result_json(&out, res)) < 0) {
            rc = cli_engine_error(g, rc, "cannot format the result");
            goto done;
        }
        if (explain) {
            json_t *steps = json_array(), *doc = json_object();
            json_error_t jerr;
            json_t *result = json_loadb(out.ptr, out.len, 0, &jerr);
            char *text = NULL;
            bool ok = steps && doc && result;
            for (size_t i = 0; ok && i < tsl_trace_count(trace); i++)
                ok = json_array_append_new(steps, json_string(tsl_trace_line(trace, i))) == 0;
            ok = ok && json_object_set(doc, "steps", steps) == 0 &&
                 json_object_set(doc, "result", result) == 0;
            if (ok)
                text = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
            if (text)
                printf("%s\n", text);
            free(text);
            json_decref(steps);
            json_decref(result);
            json_decref(doc);
            if (!text) {
                rc = cli_error(g, CLI_FAIL, "cannot format the explanation as JSON");
                goto done;
            }
        } else {
            if ((rc = cli_write_buf(g, &out)) != CLI_OK)
                goto done;
            if (out.len == 0 || out.ptr[out.len - 1] != '\n')
                putchar('\n');
        }
    } else {
        if (explain) {
            size_t n = tsl_trace_count(trace);
            for (size_t i = 0; i < n; i++)
                printf("%3zu. %s\n", i + 1, tsl_trace_line(trace, i));
            printf("\n");
        }
        print_result(o.policy, &o.req, res);
    }
    rc = fflush(stdout) == 0 ? CLI_OK : cli_error(g, CLI_FAIL, "cannot write output");
done:
    tsl_buf_free(&out);
    tsl_trace_free(trace);
    tsl_result_free(res);
    cli_engine_close(&e);
    return rc;
}

int cmd_list(const struct cli_global *g, int argc, char **argv)
{
    return run(g, argc, argv, false);
}

int cmd_explain(const struct cli_global *g, int argc, char **argv)
{
    return run(g, argc, argv, true);
}
