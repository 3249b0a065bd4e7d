/*
 * report.c - the three reports ITMS admins rely on, as text, JSON or CSV:
 *
 *   active-servers      every Task Server available right now;
 *   server-clients      how many clients each server would get (the first
 *                       entry of each client's list);
 *   client-assignments  every managed client with its server;
 *   subnet-conflicts    subnets claimed by several sites, with the clients
 *                       each decides (subnet_conflicts.c).
 *
 * The last two decide for every client of the inventory with the plan in
 * force, so they show what the policy would do, not what happened.
 */
#include "decide.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static const char *const report_names[] = {"active-servers", "server-clients",
                                           "client-assignments", "subnet-conflicts"};

int tsl_report_kind_parse(tsl_report_kind *out, const char *text)
{
    for (size_t i = 0; i < sizeof report_names / sizeof *report_names; i++) {
        if (text && strcmp(text, report_names[i]) == 0) {
            *out = (tsl_report_kind)i;
            return 0;
        }
    }
    return tsl_seterr(TSL_EINVALID,
                      "unknown report \"%s\" (expected active-servers, server-clients, "
                      "client-assignments or subnet-conflicts)",
                      text ? text : "");
}

/* One row writer for the three formats: fields are name/value pairs, values
 * already text; `numeric` marks which are emitted unquoted in JSON. */
typedef struct row_writer {
    tsl_buf *out;
    tsl_format fmt;
    size_t rows;
} row_writer;

static int row_begin(row_writer *rw, const char *const *names, size_t n, const int *widths)
{
    int err = 0;
    if (rw->fmt == TSL_FORMAT_JSON)
        return tsl_buf_puts(rw->out, "[");
    for (size_t i = 0; i < n && err == 0; i++) {
        if (rw->fmt == TSL_FORMAT_CSV)
            err = tsl_buf_printf(rw->out, "%s%s", i ? "," : "", names[i]);
        else
            err = tsl_buf_printf(rw->out, "%-*s%s", widths[i], names[i], i + 1 < n ? "  " : "");
    }
    return err < 0 ? err : tsl_buf_puts(rw->out, "\n");
}

static int row_put(row_writer *rw, const char *const *names, const char *const *vals,
                   const bool *numeric, size_t n, const int *widths)
{
    int err = 0;
    if (rw->fmt == TSL_FORMAT_JSON) {
        err = tsl_buf_puts(rw->out, rw->rows ? ",\n {" : "\n {");
        for (size_t i = 0; i < n && err == 0; i++) {
            if ((err = tsl_buf_printf(rw->out, "%s\"%s\":", i ? "," : "", names[i])) < 0)
                break;
            err = numeric[i] && vals[i] ? tsl_buf_puts(rw->out, vals[i])
                                        : tsl_buf_json_str(rw->out, vals[i]);
        }
        if (err == 0)
            err = tsl_buf_puts(rw->out, "}");
    } else {
        for (size_t i = 0; i < n && err == 0; i++) {
            if (rw->fmt == TSL_FORMAT_CSV) {
                if (i)
                    err = tsl_buf_puts(rw->out, ",");
                if (err == 0) /* numbers as they are; text never as a formula */
                    err = numeric[i] && vals[i] ? tsl_buf_puts(rw->out, vals[i])
                                                : tsl_buf_csv_field(rw->out, vals[i]);
            } else {
                err = tsl_buf_printf(rw->out, "%-*s%s", widths[i], vals[i] ? vals[i] : "-",
                                     i + 1 < n ? "  " : "");
            }
        }
        if (err == 0)
            err = tsl_buf_puts(rw->out, "\n");
    }
    rw->rows++;
    return err;
}

static int row_end(row_writer *rw)
{
    if (rw->fmt == TSL_FORMAT_JSON)
        return tsl_buf_puts(rw->out, rw->rows ? "\n]\n" : "]\n");
    return 0;
}

static void format_time(char *buf, size_t len, int64_t t)
{
    if (!t) {
        buf[0] = '\0';
        return;
    }
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int report_active(row_writer *rw, const tsl_plan *plan, int64_t now)
{
    static const char *const names[] = {"name", "host", "ip", "site", "capacity",
                                        "connections", "response_ms", "last_heartbeat"};
    static const bool numeric[] = {false, false, false, false, true, true, true, false};
    static const int widths[] = {16, 24, 15, 14, 8, 11, 11, 20};
    const tsl_snapshot *s = plan->snap;
    decide_ctx ctx = {.snap = s, .now = now};
    int err = row_begin(rw, names, 8, widths);

    for (uint32_t i = 0; i < s->nservers && err == 0; i++) {
        const snap_server *sv = &s->servers[i];
        if (!decide_available(&ctx, i))
            continue;
        char cap[24], conn[24], resp[24], hb[32];
        snprintf(cap, sizeof cap, "%lld", (long long)sv->capacity);
        snprintf(conn, sizeof conn, "%lld", (long long)sv->connections);
        snprintf(resp, sizeof resp, "%lld", (long long)sv->response_ms);
        format_time(hb, sizeof hb, sv->heartbeat);
        const char *vals[] = {sv->name, sv->host, sv->ip,
                              sv->home == TSL_NO_SITE ? NULL : s->sites[sv->home].name,
                              cap, conn, resp, sv->heartbeat ? hb : NULL};
        err = row_put(rw, names, vals, numeric, 8, widths);
    }
    return err < 0 ? err : row_end(rw);
}

/* Decides for client i; the first entry is its server (or none). */
static int decide_client(tsl_result *res, tsl_worker *w, const tsl_plan *plan, uint32_t i,
                         int64_t now)
{
    tsl_request req;
    int err = tsl_snapshot_client_request(&req, plan->snap, i);
    if (err < 0)
        return err;
    req.now = now;
    return tsl_decide(res, w, plan, &req, NULL);
}

static int report_server_clients(row_writer *rw, tsl_worker *w, const tsl_plan *plan, int64_t now)
{
    static const char *const names[] = {"server", "site", "clients", "capacity", "available"};
    static const bool numeric[] = {false, false, true, true, false};
    static const int widths[] = {16, 14, 8, 8, 9};
    const tsl_snapshot *s = plan->snap;
    decide_ctx ctx = {.snap = s, .now = now};
    uint64_t *counts = calloc(s->nservers + 1, sizeof *counts); /* last: no server */
    tsl_result *res = NULL;
    int err = 0;

    if (!counts)
        return tsl_oom();
    if ((err = tsl_result_new(&res)) < 0)
        goto done;
    for (uint32_t i = 0; i < s->nclients; i++) {
        /* a client whose inventory record cannot be decided counts as "no server" */
        if (decide_client(res, w, plan, i, now) < 0 || res->n == 0)
            counts[s->nservers]++;
        else
            counts[res->servers[0]]++;
    }
    if ((err = row_begin(rw, names, 5, widths)) < 0)
        goto done;
    for (uint32_t i = 0; i <= s->nservers && err == 0; i++) {
        char n[24], cap[24];
        snprintf(n, sizeof n, "%llu", (unsigned long long)counts[i]);
        if (i == s->nservers) {
            if (!counts[i])
                break;
            const char *vals[] = {"(no server)", NULL, n, NULL, NULL};
            err = row_put(rw, names, vals, numeric, 5, widths);
            break;
        }
        const snap_server *sv = &s->servers[i];
        snprintf(cap, sizeof cap, "%lld", (long long)sv->capacity);
        const char *vals[] = {sv->name, sv->home == TSL_NO_SITE ? NULL : s->sites[sv->home].name,
                              n, cap, decide_available(&ctx, i) ? "yes" : "no"};
        err = row_put(rw, names, vals, numeric, 5, widths);
    }
    if (err == 0)
        err = row_end(rw);
done:
    tsl_result_free(res);
    free(counts);
    return err;
}

static int report_assignments(row_writer *rw, tsl_worker *w, const tsl_plan *plan, int64_t now)
{
    static const char *const names[] = {"guid", "name", "ip", "department", "site",
                                        "server", "tier", "blocked"};
    static const bool numeric[] = {false, false, false, false, false, false, true, false};
    static const int widths[] = {38, 16, 15, 12, 14, 16, 4, 7};
    const tsl_snapshot *s = plan->snap;
    tsl_result *res = NULL;
    int err;

    if ((err = tsl_result_new(&res)) < 0)
        return err;
    if ((err = row_begin(rw, names, 8, widths)) < 0)
        goto done;
    for (uint32_t i = 0; i < s->nclients && err == 0; i++) {
        const snap_client *c = &s->clients[i];
        char tier[16];
        bool ok = decide_client(res, w, plan, i, now) == 0;
        bool has = ok && res->n > 0;
        snprintf(tier, sizeof tier, "%d", has ? res->entries[0].tier : 0);
        const char *vals[] = {c->guid, c->name, c->ip, c->department,
                              ok ? res->site_name : NULL,
                              has ? res->entries[0].name : NULL,
                              has ? tier : NULL,
                              ok && res->blocked ? "yes" : "no"};
        err = row_put(rw, names, vals, numeric, 8, widths);
    }
    if (err == 0)
        err = row_end(rw);
done:
    tsl_result_free(res);
    return err;
}

int tsl_report(tsl_buf *out, tsl_worker *w, const tsl_plan *plan, tsl_report_kind kind,
               tsl_format fmt, int64_t now)
{
    row_writer rw = {out, fmt, 0};
    TSL_ARG(out && w && plan);
    if (!now)
        now = (int64_t)time(NULL);
    switch (kind) {
    case TSL_REPORT_ACTIVE_SERVERS:
        return report_active(&rw, plan, now);
    case TSL_REPORT_SERVER_CLIENTS:
        return report_server_clients(&rw, w, plan, now);
    case TSL_REPORT_CLIENT_ASSIGNMENTS:
        return report_assignments(&rw, w, plan, now);
    case TSL_REPORT_SUBNET_CONFLICTS:
        return tsl_subnet_conflicts(out, NULL, plan->snap, fmt);
    }
    return tsl_seterr(TSL_EINVALID, "unknown report kind %d", (int)kind);
}
