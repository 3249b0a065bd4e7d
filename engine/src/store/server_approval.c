/*
 * server_approval.c - Task Servers that announced themselves by heartbeat
 * (the broker's --heartbeat-registration) wait in the store as pending
 * (task_servers.approved = 0, schema 006) until an admin approves or
 * rejects them: listing them, deciding, and the record of who decided.
 * A pending server is in no snapshot, so in no list and no report.
 *
 * Used by: `tsl servers` (cmd_servers.c), the broker's admin API.
 * Needs: store.h, text.h.
 */
#include "store.h"
#include "text.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static void format_time(char *dst, size_t len, int64_t at)
{
    time_t t = (time_t)at;
    struct tm tm;
    if (at <= 0 || !gmtime_r(&t, &tm) || !strftime(dst, len, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(dst, len, "-");
}

int tsl_store_servers_pending(tsl_buf *out, tsl_store *st, tsl_format fmt)
{
    sqlite3_stmt *q;
    int err = 0, rc, n = 0;

    TSL_ARG(out && st);
    if (!(q = tsl_store_stmt(st, TSL_STMT_PENDING_LIST)))
        return TSL_ESTORE;
#define PUT(s) do { if ((err = tsl_buf_puts(out, (s))) < 0) goto done; } while (0)
#define FMT(...) do { if ((err = tsl_buf_printf(out, __VA_ARGS__)) < 0) goto done; } while (0)
#define STR(s) do { if ((err = tsl_buf_json_str(out, (s))) < 0) goto done; } while (0)
#define CSV(s) do { if ((err = tsl_buf_csv_field(out, (s))) < 0) goto done; } while (0)
    if (fmt == TSL_FORMAT_JSON)
        PUT("[");
    else if (fmt == TSL_FORMAT_CSV)
        PUT("name,host,ip,sites,requested_at,requested_by,last_heartbeat\n");
    else
        FMT("%-24s %-24s %-16s %-20s %-20s %s\n", "name", "host", "ip", "sites", "requested",
            "from");
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(q, 0);
        const char *host = (const char *)sqlite3_column_text(q, 1);
        const char *ip = (const char *)sqlite3_column_text(q, 2);
        int64_t req_at = sqlite3_column_int64(q, 3), hb = sqlite3_column_int64(q, 5);
        const char *from = (const char *)sqlite3_column_text(q, 4);
        const char *sites = (const char *)sqlite3_column_text(q, 6);
        char when[32];
        format_time(when, sizeof when, req_at);
        if (fmt == TSL_FORMAT_JSON) {
            PUT(n ? ",\n {\"name\":" : "\n {\"name\":");
            STR(name);
            PUT(",\"host\":");
            STR(host);
            PUT(",\"ip\":");
            STR(ip);
            PUT(",\"sites\":[");
            /* "a,b" -> ["a","b"]: site names hold no comma (import refuses none,
             * but the claim was checked against the inventory's names) */
            for (const char *p = sites; p && *p;) {
                const char *comma = strchr(p, ',');
                size_t len = comma ? (size_t)(comma - p) : strlen(p);
                char one[300];
                snprintf(one, sizeof one, "%.*s", (int)(len < 299 ? len : 299), p);
                PUT(p == sites ? "" : ",");
                STR(one);
                p = comma ? comma + 1 : p + len;
            }
            FMT("],\"requested_at\":%lld,\"requested_by\":", (long long)req_at);
            STR(from);
            FMT(",\"last_heartbeat\":%lld}", (long long)hb);
        } else if (fmt == TSL_FORMAT_CSV) {
            CSV(name);
            PUT(",");
            CSV(host);
            PUT(",");
            CSV(ip);
            PUT(",");
            CSV(sites);
            FMT(",%s,", when);
            CSV(from);
            FMT(",%lld\n", (long long)hb);
        } else {
            FMT("%-24s %-24s %-16s %-20s %-20s %s\n", name, host ? host : "-", ip ? ip : "-",
                sites ? sites : "-", when, from ? from : "-");
        }
        n++;
    }
    if (rc != SQLITE_DONE) {
        err = tsl_store_err(st, "listing pending task servers");
        goto done;
    }
    if (fmt == TSL_FORMAT_JSON)
        PUT(n ? "\n]\n" : "]\n");
    else if (fmt == TSL_FORMAT_TEXT && !n)
        PUT("(no task server is waiting for approval)\n");
#undef PUT
#undef FMT
#undef STR
#undef CSV
done:
    sqlite3_reset(q);
    return err;
}

int tsl_store_server_decide(tsl_store *st, const char *name, bool approve, const char *author,
                            int64_t now)
{
    sqlite3_stmt *q;
    const char *why;
    int err;

    TSL_ARG(st && name);
    if ((why = tsl_text_name_problem(name, 255)))
        return tsl_seterr(TSL_EINVALID, "task server name %s", why);
    if (!author || !*author)
        author = "admin";
    if ((why = tsl_text_name_problem(author, 127)))
        return tsl_seterr(TSL_EINVALID, "author %s", why);
    if (!now)
        now = (int64_t)time(NULL);
    if ((err = tsl_store_begin(st)) < 0)
        return err;
    if (!(q = tsl_store_stmt(st, approve ? TSL_STMT_PENDING_APPROVE : TSL_STMT_PENDING_REJECT))) {
        err = TSL_ESTORE;
        goto done;
    }
    tsl_store_bind_text(q, 1, name);
    if (sqlite3_step(q) != SQLITE_DONE) {
        err = tsl_store_err(st, approve ? "approving a task server" : "rejecting a task server");
        sqlite3_reset(q);
        goto done;
    }
    int changed = sqlite3_changes(tsl_store_db(st));
    sqlite3_reset(q);
    if (!changed) {
        err = tsl_seterr(TSL_ENOTFOUND, "no task server \"%s\" is waiting for approval "
                                        "(see tsl servers pending)", name);
        goto done;
    }
    if (!(q = tsl_store_stmt(st, TSL_STMT_APPROVAL_INSERT))) {
        err = TSL_ESTORE;
        goto done;
    }
    tsl_store_bind_text(q, 1, name);
    sqlite3_bind_int64(q, 2, now);
    tsl_store_bind_text(q, 3, author);
    tsl_store_bind_text(q, 4, approve ? "approved" : "rejected");
    if (sqlite3_step(q) != SQLITE_DONE)
        err = tsl_store_err(st, "recording an approval");
    sqlite3_reset(q);
    if (err == 0)
        err = tsl_store_commit(st);
done:
    if (err < 0)
        tsl_store_rollback(st);
    return err;
}
