/*
 * report_fallback.c - the fallback report: the successful registrations
 * CTAs reported to the broker (schema 003, table registrations), counted
 * by site and day: how many, how many landed outside the client's approved
 * set (not tier 0), how many on a fallback tier, how many on a server the
 * client's list did not name at all.
 *
 * What happened, not what the policy would do: it reads the store only.
 * Used by: `tsl report fallback` (cmd_report.c) and the broker's
 * GET /v1/reports/fallback (admin_jobs.c).  Needs: store.h.
 */
#include "store.h"

int tsl_report_fallback(tsl_buf *out, tsl_store *st, tsl_format fmt, int64_t since)
{
    sqlite3_stmt *q = tsl_store_stmt(st, TSL_STMT_FALLBACK_REPORT);
    size_t rows = 0;
    int err = 0, rc = SQLITE_DONE;

    if (!q)
        return TSL_ESTORE;
    sqlite3_bind_int64(q, 1, since);
    if (fmt == TSL_FORMAT_JSON)
        err = tsl_buf_puts(out, "[");
    else if (fmt == TSL_FORMAT_CSV)
        err = tsl_buf_puts(out, "site,day,registrations,outside_approved,fallback_tier,not_listed\n");
    else
        err = tsl_buf_printf(out, "%-20s  %-10s  %13s  %16s  %13s  %10s\n", "site", "day",
                             "registrations", "outside_approved", "fallback_tier", "not_listed");
    while (err == 0 && (rc = sqlite3_step(q)) == SQLITE_ROW) {
        const char *site = (const char *)sqlite3_column_text(q, 0);
        const char *day = (const char *)sqlite3_column_text(q, 1);
        long long total = sqlite3_column_int64(q, 2), outside = sqlite3_column_int64(q, 3),
                  fallback = sqlite3_column_int64(q, 4), unlisted = sqlite3_column_int64(q, 5);
        if (fmt == TSL_FORMAT_JSON) {
            if ((err = tsl_buf_puts(out, rows ? ",\n {\"site\":" : "\n {\"site\":")) < 0 ||
                (err = tsl_buf_json_str(out, site)) < 0 ||
                (err = tsl_buf_puts(out, ",\"day\":")) < 0 || (err = tsl_buf_json_str(out, day)) < 0)
                break;
            err = tsl_buf_printf(out,
                                 ",\"registrations\":%lld,\"outside_approved\":%lld,"
                                 "\"fallback_tier\":%lld,\"not_listed\":%lld}",
                                 total, outside, fallback, unlisted);
        } else if (fmt == TSL_FORMAT_CSV) {
            if ((err = tsl_buf_csv_field(out, site ? site : "")) < 0)
                break;
            err = tsl_buf_printf(out, ",%s,%lld,%lld,%lld,%lld\n", day ? day : "", total,
                                 outside, fallback, unlisted);
        } else {
            err = tsl_buf_printf(out, "%-20s  %-10s  %13lld  %16lld  %13lld  %10lld\n",
                                 site ? site : "-", day ? day : "-", total, outside, fallback,
                                 unlisted);
        }
        rows++;
    }
    if (err == 0 && rc != SQLITE_DONE)
        err = tsl_store_err(st, "reading registrations");
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    if (err == 0 && fmt == TSL_FORMAT_JSON)
        err = tsl_buf_puts(out, rows ? "\n]\n" : "]\n");
    return err;
}
