/*
 * cmd_gen_estate.c - `tsl gen-estate`: fills the --db store with a synthetic
 * estate (tsl_estate_generate), for benchmarks and load tests.
 *
 * Used by: main.c, tests/bench.  Needs: cli.h, store.h (the generator).
 */
#include "cli.h"
#include "store.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <time.h>

static const char usage[] =
    "usage: tsl --db FILE gen-estate --sites N --servers N --clients N [--seed S]\n"
    "\n"
    "Writes a synthetic but plausible estate into a new store: sites named after real\n"
    "cities (from /usr/share/zoneinfo/zone1970.tab when present) with IPv4 and IPv6\n"
    "subnets, Task Servers spread over them (a few stopped, unregistered, full or\n"
    "silent), clients spread unevenly (some on an explicit site, some on no site,\n"
    "some with recent connection errors).  The same seed gives the same estate; its\n"
    "time stamps are relative to 2026-01-01T00:00:00Z (decide with --now 1767225600\n"
    "to see the errors as recent).\n"
    "\n"
    "  --sites N      number of sites (1 to 10000)\n"
    "  --servers N    number of Task Servers (0 to 100000)\n"
    "  --clients N    number of clients (0 to 10000000)\n"
    "  --seed S       random seed (default 1)\n"
    "  -h, --help     this help\n"
    "\n"
    "exit status: 0 generated, 2 usage error or the store already holds an inventory.\n"
    "example: tsl --db big.db gen-estate --sites 500 --servers 2000 --clients 200000\n";

int cmd_gen_estate(const struct cli_global *g, int argc, char **argv)
{
    static const struct option opts[] = {
        {"sites", required_argument, NULL, 's'},
        {"servers", required_argument, NULL, 'S'},
        {"clients", required_argument, NULL, 'c'},
        {"seed", required_argument, NULL, 'r'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    uint64_t sites = 0, servers = 0, clients = 0, seed = 1;
    bool have_sites = false, have_servers = false, have_clients = false;
    tsl_store *st = NULL;
    int c, rc;

    cli_getopt_reset();
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            if ((rc = cli_parse_uint(g, "--sites", optarg, TSL_ESTATE_MAX_SITES, &sites)) != CLI_OK)
                return rc;
            have_sites = true;
            break;
        case 'S':
            if ((rc = cli_parse_uint(g, "--servers", optarg, TSL_ESTATE_MAX_SERVERS, &servers)) != CLI_OK)
                return rc;
            have_servers = true;
            break;
        case 'c':
            if ((rc = cli_parse_uint(g, "--clients", optarg, TSL_ESTATE_MAX_CLIENTS, &clients)) != CLI_OK)
                return rc;
            have_clients = true;
            break;
        case 'r':
            if ((rc = cli_parse_uint(g, "--seed", optarg, UINT64_MAX, &seed)) != CLI_OK)
                return rc;
            break;
        case 'h':
            fputs(usage, stdout);
            return CLI_OK;
        default:
            return cli_getopt_error(g, c, argv);
        }
    }
    if (optind < argc)
        return cli_usage_error(g, "unexpected argument '%s'", argv[optind]);
    if (!have_sites || !have_servers || !have_clients)
        return cli_usage_error(g, "give --sites, --servers and --clients");
    if (sites == 0)
        return cli_usage_error(g, "--sites must be at least 1");
    if ((rc = cli_require_db(g)) != CLI_OK)
        return rc;

    if ((rc = tsl_store_open(&st, g->db, 0)) < 0)
        return cli_store_open_error(g, rc);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    rc = tsl_estate_generate(st, (unsigned)sites, (unsigned)servers, (unsigned)clients, seed);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (rc < 0) {
        rc = cli_engine_error(g, rc, "cannot generate the estate");
        goto done;
    }
    printf("generated %" PRIu64 " sites, %" PRIu64 " task servers, %" PRIu64
           " clients (seed %" PRIu64 ") into %s in %.1f s\n",
           sites, servers, clients, seed, g->db,
           (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    rc = fflush(stdout) == 0 ? CLI_OK : cli_error(g, CLI_FAIL, "cannot write output");
done:
    tsl_store_free(st);
    return rc;
}
