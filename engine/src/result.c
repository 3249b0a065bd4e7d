/*
 * result.c - a decision: its entries, its flags, and the JSON object that
 * `tsl list --json` and the broker's GET /v1/task-servers return.
 */
#include "decide.h"

#include <stdlib.h>
#include <string.h>

int tsl_result_new(tsl_result **out)
{
    tsl_result *r = calloc(1, sizeof *r);
    *out = NULL;
    if (!r)
        return tsl_oom();
    r->cap = 16;
    r->entries = calloc(r->cap, sizeof *r->entries);
    r->servers = calloc(r->cap, sizeof *r->servers);
    if (!r->entries || !r->servers) {
        tsl_result_free(r);
        return tsl_oom();
    }
    result_reset(r);
    *out = r;
    return 0;
}

void tsl_result_free(tsl_result *res)
{
    if (!res)
        return;
    free(res->entries);
    free(res->servers);
    free(res);
}

void result_reset(tsl_result *res)
{
    res->n = 0;
    res->site = TSL_NO_SITE;
    res->site_name = NULL;
    res->site_source[0] = '\0';
    res->client[0] = '\0';
    res->has_client = false;
    res->blocked = false;
    res->blocked_reason = NULL;
    res->strict = false;
    res->ttl = 0;
    res->policy = NULL;
}

int result_push(tsl_result *res, const struct decide_ctx *ctx, uint32_t server, int tier,
                const char *reason, int after)
{
    if (res->n == res->cap) {
        if (res->cap >= TSL_RESULT_MAX_ENTRIES)
            return tsl_seterr(TSL_ELIMIT, "a list holds at most %d entries", TSL_RESULT_MAX_ENTRIES);
        uint32_t cap = res->cap * 2;
        tsl_entry *e = realloc(res->entries, cap * sizeof *e);
        if (!e)
            return tsl_oom();
        res->entries = e;
        uint32_t *s = realloc(res->servers, cap * sizeof *s);
        if (!s)
            return tsl_oom();
        res->servers = s;
        res->cap = cap;
    }
    const snap_server *sv = &ctx->snap->servers[server];
    tsl_entry *e = &res->entries[res->n];
    e->name = sv->name;
    e->host = sv->host;
    e->ip = sv->ip;
    e->site = sv->home == TSL_NO_SITE ? NULL : ctx->snap->sites[sv->home].name;
    e->reason = reason;
    e->tier = tier;
    e->after = after;
    e->capacity = sv->capacity;
    e->connections = sv->connections;
    e->response_ms = sv->response_ms;
    e->full = sv->connections >= sv->capacity;
    e->recent_error = decide_recent_error(ctx, server);
    res->servers[res->n++] = server;
    return 0;
}

bool result_contains(const tsl_result *res, uint32_t server)
{
    for (uint32_t i = 0; i < res->n; i++)
        if (res->servers[i] == server)
            return true;
    return false;
}

const char *tsl_result_site(const tsl_result *res) { return res->site_name; }
const char *tsl_result_site_source(const tsl_result *res) { return res->site_source; }
size_t tsl_result_count(const tsl_result *res) { return res->n; }
bool tsl_result_blocked(const tsl_result *res) { return res->blocked; }
const char *tsl_result_blocked_reason(const tsl_result *res) { return res->blocked_reason; }
bool tsl_result_strict(const tsl_result *res) { return res->strict; }
int tsl_result_ttl(const tsl_result *res) { return res->ttl; }
const char *tsl_result_policy(const tsl_result *res) { return res->policy; }

const tsl_entry *tsl_result_entry(const tsl_result *res, size_t i)
{
    return i < res->n ? &res->entries[i] : NULL;
}

int tsl_result_json(tsl_buf *out, const tsl_result *res)
{
    int err = 0;
#define PUT(s) do { if ((err = tsl_buf_puts(out, (s))) < 0) goto done; } while (0)
#define STR(s) do { if ((err = tsl_buf_json_str(out, (s))) < 0) goto done; } while (0)
#define FMT(...) do { if ((err = tsl_buf_printf(out, __VA_ARGS__)) < 0) goto done; } while (0)
    PUT("{\"client\":");
    STR(res->has_client ? res->client : NULL);
    PUT(",\"site\":");
    STR(res->site_name);
    PUT(",\"site_source\":");
    STR(res->site_source);
    PUT(",\"policy\":");
    STR(res->policy);
    FMT(",\"blocked\":%s,\"blocked_reason\":", res->blocked ? "true" : "false");
    STR(res->blocked_reason);
    FMT(",\"strict\":%s,\"ttl\":%d,\"servers\":[", res->strict ? "true" : "false", res->ttl);
    for (uint32_t i = 0; i < res->n; i++) {
        const tsl_entry *e = &res->entries[i];
        PUT(i ? ",{\"name\":" : "{\"name\":");
        STR(e->name);
        PUT(",\"host\":");
        STR(e->host);
        PUT(",\"ip\":");
        STR(e->ip);
        PUT(",\"site\":");
        STR(e->site);
        FMT(",\"tier\":%d,\"after\":%d,\"reason\":", e->tier, e->after);
        STR(e->reason);
        FMT(",\"capacity\":%lld,\"connections\":%lld,\"response_ms\":%lld,\"full\":%s,"
            "\"recent_error\":%s}",
            (long long)e->capacity, (long long)e->connections, (long long)e->response_ms,
            e->full ? "true" : "false", e->recent_error ? "true" : "false");
    }
    PUT("]}");
#undef PUT
#undef STR
#undef FMT
done:
    return err;
}
