/*
 * config.c - the broker's configuration defaults (tsl_broker_config_init),
 * the trusted proxies (parsed once, matched for each request) and the
 * clocks every broker file reads.
 *
 * Used by: broker.h's callers (defaults), broker.c (proxies), http.c and
 * routes.c (trusted proxies), every file (broker_now, broker_mono_ns).
 * Needs: broker_internal.h.
 */
#include "broker_internal.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void tsl_broker_config_init(tsl_broker_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->listen = "127.0.0.1:8080";
    tsl_settings_init(&cfg->settings);
    cfg->refresh_ms = 500;
    cfg->flush_ms = 100;
    cfg->drain_ms = 200;
    cfg->timeout_s = 10;
    cfg->max_conns_per_addr = 256;
    cfg->max_body = 64 * 1024;
    cfg->max_import_body = 64 * 1024 * 1024;
    cfg->max_headers_size = 8 * 1024;
    cfg->max_headers = 64;
    cfg->max_queue = 100000;
    cfg->decision_log_max = 100000;
    cfg->decision_log_rate = 1000;
    cfg->registrations_keep_days = 90;
    cfg->log_level = TSL_LOG_INFO;
    cfg->heartbeat_rate = 20;
    cfg->heartbeat_burst = 200;
    cfg->max_servers = 10000;
    cfg->registration_rate = 1;
    cfg->registration_burst = 20;
}

bool broker_trusted_proxy(const tsl_broker *b, const uint8_t addr[16])
{
    for (int i = 0; i < b->nproxies; i++) {
        int bits = b->proxy_bits[i], full = bits / 8, rest = bits % 8;
        if (memcmp(addr, b->proxies[i].b, (size_t)full) != 0)
            continue;
        if (rest && ((addr[full] ^ b->proxies[i].b[full]) & (0xff00 >> rest) & 0xff))
            continue;
        return true;
    }
    return false;
}

/* cfg.trusted_proxies "ADDR[/BITS],..." into b->proxies. */
int broker_parse_proxies(tsl_broker *b, const char *list)
{
    char item[128];
    const char *p = list;

    while (p && *p) {
        size_t n = strcspn(p, ",");
        if (n == 0 || n >= sizeof item)
            return tsl_seterr(TSL_EINVALID, "trusted proxies: \"%.64s\" is not an address or "
                                            "CIDR",
                              p);
        if (b->nproxies == BROKER_MAX_PROXIES)
            return tsl_seterr(TSL_ELIMIT, "trusted proxies: at most %d", BROKER_MAX_PROXIES);
        memcpy(item, p, n);
        item[n] = '\0';
        tsl_ip *ip = &b->proxies[b->nproxies];
        int *bits = &b->proxy_bits[b->nproxies];
        int err = strchr(item, '/') ? tsl_cidr_parse(ip, bits, item) : tsl_ip_parse(ip, item);
        if (err < 0) {
            char why[256];
            snprintf(why, sizeof why, "%s", tsl_error_last());
            return tsl_seterr(TSL_EINVALID, "trusted proxies: %s", why);
        }
        if (!strchr(item, '/'))
            *bits = 128;
        b->nproxies++;
        p += n + (p[n] == ',');
    }
    return 0;
}

int64_t broker_now(const tsl_broker *b)
{
    if (b->cfg.clock)
        return b->cfg.clock(b->cfg.clock_ud);
    return (int64_t)time(NULL);
}

uint64_t broker_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
