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
    res->department_ignored = NULL;
    res->now = 0;
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
    e->usable_at = 0;
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
const char *tsl_result_department_ignored(const tsl_result *res)
{
    return res->department_ignored;
}

const tsl_entry *tsl_result_entry(const tsl_result *res, size_t i)
{
    return i < res->n ? &res->entries[i] : NULL;
}

int tsl_result_json(tsl_buf *out, const tsl_result *res)
{
    int err = 0;
    /* put, string, integer and boolean appenders: no printf on the hot path */
#define PUT(s) do { if ((err = tsl_buf_put(out, (s), sizeof(s) - 1)) < 0) goto done; } while (0)
#define STR(s) do { if ((err = tsl_buf_json_str(out, (s))) < 0) goto done; } while (0)
#define INT(v) do { if ((err = tsl_buf_put_i64(out, (int64_t)(v))) < 0) goto done; } while (0)
#define BOOL(v) do { if ((v)) PUT("true"); else PUT("false"); } while (0)
    PUT("{\"client\":");
    STR(res->has_client ? res->client : NULL);
    PUT(",\"site\":");
    STR(res->site_name);
    PUT(",\"site_source\":");
    STR(res->site_source);
    PUT(",\"policy\":");
    STR(res->policy);
    PUT(",\"blocked\":");
    BOOL(res->blocked);
    PUT(",\"blocked_reason\":");
    STR(res->blocked_reason);
    PUT(",\"strict\":");
    BOOL(res->strict);
    PUT(",\"ttl\":");
    INT(res->ttl);
    PUT(",\"servers\":[");
    for (uint32_t i = 0; i < res->n; i++) {
        const tsl_entry *e = &res->entries[i];
        if (i)
            PUT(",{\"name\":");
        else
            PUT("{\"name\":");
        STR(e->name);
        PUT(",\"host\":");
        STR(e->host);
        PUT(",\"ip\":");
        STR(e->ip);
        PUT(",\"site\":");
        STR(e->site);
        PUT(",\"tier\":");
        INT(e->tier);
        PUT(",\"after\":");
        INT(e->after);
        if (e->usable_at > 0) { /* the outage the broker saw: no sooner than this */
            PUT(",\"usable_at\":");
            INT(e->usable_at);
            PUT(",\"usable_in\":");
            INT(e->usable_at > res->now ? e->usable_at - res->now : 0);
        }
        PUT(",\"reason\":");
        STR(e->reason);
        PUT(",\"capacity\":");
        INT(e->capacity);
        PUT(",\"connections\":");
        INT(e->connections);
        PUT(",\"response_ms\":");
        INT(e->response_ms);
        PUT(",\"full\":");
        BOOL(e->full);
        PUT(",\"recent_error\":");
        BOOL(e->recent_error);
        PUT("}");
    }
    PUT("]}");
#undef PUT
#undef STR
#undef INT
#undef BOOL
done:
    return err;
}
