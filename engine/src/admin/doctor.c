/*
 * doctor.c - the ITMS validation checklist for one client (`tsl doctor`).
 *
 * Walks what an administrator checks by hand when a Client Task Agent gets
 * no tasks: is the client known, does it have a site (explicit or through
 * which subnet), is every candidate Task Server of that site registered,
 * running and heart-beating, does the client receive a non-empty list, and
 * what was its last connection error.  Each check is one PASS/WARN/FAIL
 * record, formatted as text, JSON or CSV.
 *
 * Used by: the `tsl doctor` command.  Needs: snapshot.h (candidates,
 * servers, errors), decide.h (tsl_decide, the unavailability wording),
 * store.h (the error text).
 */
#include "conflicts.h"
#include "decide.h"
#include "store.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

typedef enum { CHECK_PASS, CHECK_WARN, CHECK_FAIL } check_status;

static const char *const status_text[] = {"PASS", "WARN", "FAIL"};
static const char *const status_json[] = {"pass", "warn", "fail"};

struct doctor {
    tsl_buf *out;
    tsl_format fmt;
    tsl_doctor_summary sum;
    unsigned nchecks;
    tsl_buf detail; /* scratch for one check's detail text */
};

static void format_time(char *dst, size_t len, int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm) || strftime(dst, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(dst, len, "%" PRId64, t);
}

/* "3 min ago", "2 h ago" */
static void format_age(char *dst, size_t len, int64_t secs)
{
    if (secs < 0)
        snprintf(dst, len, "%" PRId64 " s in the future", -secs);
    else if (secs < 120)
        snprintf(dst, len, "%" PRId64 " s ago", secs);
    else if (secs < 7200)
        snprintf(dst, len, "%" PRId64 " min ago", secs / 60);
    else if (secs < 172800)
        snprintf(dst, len, "%" PRId64 " h ago", secs / 3600);
    else
        snprintf(dst, len, "%" PRId64 " days ago", secs / 86400);
}

/* Records one check: `check` names it, the detail is printf-formatted. */
static int emit(struct doctor *d, check_status st, const char *check, const char *fmt, ...)
    TSL_PRINTF(4, 5);

static int emit(struct doctor *d, check_status st, const char *check, const char *fmt, ...)
{
    char small[512];
    va_list ap;
    int err = 0;

    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return tsl_seterr(TSL_ERROR, "doctor: cannot format a check");
    const char *detail = small;
    if ((size_t)n >= sizeof small) {
        tsl_buf_clear(&d->detail);
        if ((err = tsl_buf_grow(&d->detail, (size_t)n + 1)) < 0)
            return err;
        va_start(ap, fmt);
        vsnprintf(d->detail.ptr, (size_t)n + 1, fmt, ap);
        va_end(ap);
        d->detail.len = (size_t)n;
        detail = d->detail.ptr;
    }

    if (st == CHECK_PASS)
        d->sum.passed++;
    else if (st == CHECK_WARN)
        d->sum.warnings++;
    else
        d->sum.failed++;

    switch (d->fmt) {
    case TSL_FORMAT_JSON:
        if ((err = tsl_buf_puts(d->out, d->nchecks ? ",\n    {\"status\": " : "\n    {\"status\": ")) < 0 ||
            (err = tsl_buf_json_str(d->out, status_json[st])) < 0 ||
            (err = tsl_buf_puts(d->out, ", \"check\": ")) < 0 ||
            (err = tsl_buf_json_str(d->out, check)) < 0 ||
            (err = tsl_buf_puts(d->out, ", \"detail\": ")) < 0 ||
            (err = tsl_buf_json_str(d->out, detail)) < 0 ||
            (err = tsl_buf_puts(d->out, "}")) < 0)
            return err;
        break;
    case TSL_FORMAT_CSV:
        if ((err = tsl_buf_csv_field(d->out, status_json[st])) < 0 ||
            (err = tsl_buf_puts(d->out, ",")) < 0 ||
            (err = tsl_buf_csv_field(d->out, check)) < 0 ||
            (err = tsl_buf_puts(d->out, ",")) < 0 ||
            (err = tsl_buf_csv_field(d->out, detail)) < 0 ||
            (err = tsl_buf_puts(d->out, "\n")) < 0)
            return err;
        break;
    default:
        if ((err = tsl_buf_printf(d->out, "%s  %s: %s\n", status_text[st], check, detail)) < 0)
            return err;
        break;
    }
    d->nchecks++;
    return 0;
}

/* ------------------------------------------------------------------------
 * The checks
 * ---------------------------------------------------------------------- */

/* Registered, running, heartbeat: one check per candidate server, in the
 * words explain uses (decide_unavailable_why). */
static const tsl_entry *list_find(const tsl_result *res, const char *name, size_t *pos);

static int check_server(struct doctor *d, const tsl_snapshot *s, uint32_t server, int64_t now,
                        const tsl_result *res)
{
    const snap_server *sv = &s->servers[server];
    decide_ctx ctx;
    char age[48], why[160], check[160];

    memset(&ctx, 0, sizeof ctx);
    ctx.snap = s;
    ctx.now = now;
    snprintf(check, sizeof check, "task server %s", sv->name);
    const char *bad = decide_unavailable_why(&ctx, server, why, sizeof why);
    if (bad)
        return emit(d, CHECK_FAIL, check, "unavailable: %s", bad);
    if (sv->heartbeat == 0)
        snprintf(age, sizeof age, "none recorded");
    else
        format_age(age, sizeof age, now - sv->heartbeat);
    /* where it stands in this client's list (a policy may keep it out) */
    char place[160] = "";
    size_t pos = 0;
    const tsl_entry *en = list_find(res, sv->name, &pos);
    if (!tsl_result_policy(res))
        ; /* the default logic lists every available candidate (up to max) */
    else if (en)
        snprintf(place, sizeof place, "; entry #%zu of its list (tier %d)", pos + 1, en->tier);
    else
        snprintf(place, sizeof place, "; not in this client's list (the policy keeps it out: "
                                      "tsl explain says why)");
    if (sv->capacity > 0 && sv->connections >= sv->capacity)
        return emit(d, CHECK_WARN, check,
                    "registered, service running, heartbeat %s, but full (%" PRId64 "/%" PRId64
                    " connections)%s", age, sv->connections, sv->capacity, place);
    return emit(d, CHECK_PASS, check, "registered, service running, heartbeat %s%s", age, place);
}

static int check_candidates(struct doctor *d, const tsl_snapshot *s, int32_t site, int64_t now,
                            bool policy, const tsl_result *res)
{
    int err;
    if (site == TSL_NO_SITE)
        return emit(d, CHECK_WARN, "candidates",
                    policy ? "none without a site: the policy decides what such a client may "
                             "use (see list)"
                           : "none without a site: every available server is a fallback "
                             "candidate");
    const snap_site *si = &s->sites[site];
    if (si->ncand == 0)
        return emit(d, CHECK_FAIL, "candidates",
                    "site %s has no Task Server: none assigned to it and none with an "
                    "address in its subnets", si->name);
    uint32_t avail = 0;
    for (uint32_t i = 0; i < si->ncand; i++)
        avail += snap_server_available(s, &s->servers[si->cand[i]], now);
    if ((err = emit(d, avail ? CHECK_PASS : CHECK_FAIL, "candidates",
                    "site %s has %" PRIu32 " Task Server%s, %" PRIu32 " available", si->name,
                    si->ncand, si->ncand == 1 ? "" : "s", avail)) < 0)
        return err;
    for (uint32_t i = 0; i < si->ncand; i++)
        if ((err = check_server(d, s, si->cand[i], now, res)) < 0)
            return err;
    return 0;
}

/* The list as the client gets it, tier by tier: "ts-lon-01, ts-lon-02;
 * tier 1 (usable after 600 s): ts-dub-02; tier 2 ...". */
static void list_text(char *buf, size_t len, const tsl_result *res)
{
    size_t n = tsl_result_count(res), off = 0;
    int tier = -1;
    bool tiers = false; /* one plain tier 0 reads as a plain list */
    for (size_t i = 0; i < n; i++)
        tiers |= tsl_result_entry(res, i)->tier != 0 || tsl_result_entry(res, i)->after != 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && off < len; i++) {
        const tsl_entry *en = tsl_result_entry(res, i);
        int w;
        if (!tiers) {
            w = snprintf(buf + off, len - off, "%s%s", i ? ", " : "", en->name);
        } else if (en->tier != tier) {
            char after[48] = "";
            if (en->after > 0)
                snprintf(after, sizeof after, " (usable after %d s)", en->after);
            w = snprintf(buf + off, len - off, "%stier %d%s: %s", i ? "; " : "", en->tier, after,
                         en->name);
            tier = en->tier;
        } else {
            w = snprintf(buf + off, len - off, ", %s", en->name);
        }
        off = w < 0 ? len : off + (size_t)w;
    }
    if (off >= len && len > 8)
        memcpy(buf + len - 8, ", ...", 6);
}

static int check_list(struct doctor *d, const tsl_result *res)
{
    size_t n = tsl_result_count(res);
    char names[600];

    list_text(names, sizeof names, res);
    if (tsl_result_blocked(res)) {
        const char *why = tsl_result_blocked_reason(res);
        return emit(d, CHECK_FAIL, "list", "empty, blocked by the policy: %s",
                    why ? why : "(no reason given)");
    }
    if (n == 0)
        return emit(d, CHECK_FAIL, "list",
                    "empty: no available Task Server anywhere, the agent cannot get tasks");
    const char *strict = tsl_result_strict(res) ? ", strict order (try them in this order)" : "";
    if (tsl_result_entry(res, 0)->tier > 0 && !tsl_result_policy(res))
        return emit(d, CHECK_WARN, "list", "%zu server%s, all cross-site fallback (tier 1): %s",
                    n, n == 1 ? "" : "s", names + strlen("tier 1: "));
    if (tsl_result_entry(res, 0)->tier > 0)
        return emit(d, CHECK_WARN, "list",
                    "%zu server%s, none approved is available: every entry is a fallback%s: %s",
                    n, n == 1 ? "" : "s", strict, names);
    return emit(d, CHECK_PASS, "list", "%zu server%s%s: %s", n, n == 1 ? "" : "s", strict, names);
}

/* The entry of the list for a server name, or NULL; its position in *pos. */
static const tsl_entry *list_find(const tsl_result *res, const char *name, size_t *pos)
{
    for (size_t i = 0; i < tsl_result_count(res); i++) {
        const tsl_entry *en = tsl_result_entry(res, i);
        if (strcasecmp(en->name, name) == 0) {
            *pos = i;
            return en;
        }
    }
    return NULL;
}

/* The last registration, judged against the list the client gets now:
 * tier 0 (its approved set) passes; a fallback tier or a server the list
 * does not hold is outside the approved set. */
static int check_last_registration(struct doctor *d, const tsl_result *res, const char *server)
{
    size_t pos = 0;
    const tsl_entry *en = list_find(res, server, &pos);
    if (en && en->tier == 0)
        return emit(d, CHECK_PASS, "last registration", "on %s, in its approved set (tier 0, "
                                                       "entry #%zu of its list)",
                    server, pos + 1);
    if (en)
        return emit(d, CHECK_FAIL, "last registration",
                    "on %s, outside its approved set: a fallback server (tier %d, entry #%zu; %s)",
                    server, en->tier, pos + 1, en->reason ? en->reason : "");
    return emit(d, CHECK_FAIL, "last registration",
                "on %s, outside its approved set: not in the list it gets now (%s)", server,
                tsl_result_count(res) ? "neither tier 0 nor a fallback tier"
                                      : "the list is empty");
}

/* The last connection error, with its text from the store when given. */
static int check_last_error(struct doctor *d, const tsl_snapshot *s, const snap_client *c,
                            tsl_store *store, const tsl_result *res, int64_t now)
{
    const char *server = NULL, *text = NULL;
    int64_t at = 0;
    sqlite3_stmt *q = NULL;
    char when[32], age[48];
    int err = 0;

    if (c->nerr > 0) {
        const snap_error *e = &s->errors[c->err_off + c->nerr - 1];
        server = s->servers[e->server].name;
        at = e->at;
    }
    if (store && server) {
        q = tsl_store_stmt(store, TSL_STMT_DOCTOR_LAST_ERROR);
        if (!q)
            return tsl_seterr(TSL_ESTORE, "doctor: %s", tsl_error_last());
        if (tsl_store_bind_text(q, 1, c->guid) != SQLITE_OK) {
            err = tsl_store_err(store, "doctor: reading the last connection error");
            goto done;
        }
        int rc = sqlite3_step(q);
        if (rc == SQLITE_ROW) {
            at = sqlite3_column_int64(q, 0);
            server = (const char *)sqlite3_column_text(q, 1);
            text = (const char *)sqlite3_column_text(q, 2);
        } else if (rc != SQLITE_DONE) {
            err = tsl_store_err(store, "doctor: reading the last connection error");
            goto done;
        }
    }
    if (!server) {
        err = emit(d, CHECK_PASS, "last connection error", "none recorded");
        goto done;
    }
    format_time(when, sizeof when, at);
    format_age(age, sizeof age, now - at);
    bool recent = now - at <= s->settings.error_window;
    /* what the error does to the list, as the list shows it */
    char effect[200] = "";
    size_t pos = 0;
    const tsl_entry *en = recent ? list_find(res, server, &pos) : NULL;
    if (recent && !en)
        snprintf(effect, sizeof effect, "; inside the error window (not in its list)");
    else if (en && en->recent_error && tsl_result_strict(res) && strstr(en->reason, "order #"))
        snprintf(effect, sizeof effect, "; inside the error window, but the policy's order "
                                        "keeps it at entry #%zu",
                 pos + 1);
    else if (en)
        snprintf(effect, sizeof effect, "; inside the error window: ranked behind the servers "
                                        "without one in its tier (entry #%zu, tier %d)",
                 pos + 1, en->tier);
    err = emit(d, CHECK_WARN, "last connection error", "%s (%s) on %s: %s%s", when, age,
               server, text && text[0] ? text : "(no text recorded)", effect);
done:
    if (q)
        sqlite3_reset(q);
    return err;
}

/* ------------------------------------------------------------------------
 * Entry point
 * ---------------------------------------------------------------------- */

/* 2b. its subnet is claimed by other sites too (subnet_conflicts.c) */
static int check_conflict(struct doctor *d, const tsl_snapshot *s, uint32_t ci)
{
    tsl_buf line = TSL_BUF_INIT;
    bool found;
    int err = snap_client_conflict(&found, &line, s, ci);

    if (err == 0 && found)
        err = emit(d, CHECK_WARN, "subnet conflict", "%s", line.ptr);
    tsl_buf_free(&line);
    return err;
}

/* The site check, in words that agree with the list the client gets. */
static int check_site(struct doctor *d, const tsl_result *res, const char *ip, bool has_addr,
                      bool policy)
{
    const char *site = tsl_result_site(res);
    const char *source = tsl_result_site_source(res);
    char then[200];

    if (site)
        return emit(d, CHECK_PASS, "site", "%s (%s)", site, source ? source : "?");
    size_t n = tsl_result_count(res);
    if (tsl_result_blocked(res))
        snprintf(then, sizeof then, "the policy gives clients with no site nothing (see list)");
    else if (n == 0)
        snprintf(then, sizeof then, "its list is empty (see list)");
    else if (tsl_result_entry(res, 0)->tier == 0)
        snprintf(then, sizeof then, "the policy gives it %zu server%s of its own (see list)", n,
                 n == 1 ? "" : "s");
    else
        snprintf(then, sizeof then, "it falls back to %s%zu server%s (see list)",
                 policy ? "" : "every available server: ", n, n == 1 ? "" : "s");
    if (!has_addr)
        return emit(d, CHECK_FAIL, "site",
                    "none: no explicit site and no IP address recorded for the client; %s",
                    then);
    return emit(d, CHECK_FAIL, "site",
                "none: no explicit site and %s is in no site subnet; %s (add the subnet to a "
                "site)",
                ip, then);
}

/* The checklist for an inventory client (guid) or for the adapter IPs of
 * a client the inventory does not know. */
static int doctor_run(tsl_buf *out, tsl_doctor_summary *summary, tsl_worker *w,
                      const tsl_plan *plan, tsl_store *store, const char *guid,
                      const char *const *ips, size_t nips, tsl_format fmt, int64_t now)
{
    struct doctor d = {out, fmt, {0, 0, 0}, 0, TSL_BUF_INIT};
    tsl_result *res = NULL;
    tsl_request req;
    char who[400];
    int err;

    if (summary)
        memset(summary, 0, sizeof *summary);
    if (now == 0)
        now = (int64_t)time(NULL);

    const tsl_snapshot *s = tsl_plan_snapshot(plan);
    const tsl_policy *pol = tsl_plan_policy(plan);
    char when[32];
    format_time(when, sizeof when, now);
    if (guid) {
        snprintf(who, sizeof who, "%s", guid);
    } else {
        size_t o = 0;
        who[0] = '\0';
        for (size_t i = 0; i < nips && o < sizeof who; i++) {
            int n = snprintf(who + o, sizeof who - o, "%s%s", i ? ", " : "", ips[i]);
            o = n < 0 ? sizeof who : o + (size_t)n;
        }
    }

    if (fmt == TSL_FORMAT_JSON) {
        if ((err = tsl_buf_puts(out, guid ? "{\"client\": " : "{\"ips\": ")) < 0 ||
            (err = tsl_buf_json_str(out, who)) < 0 ||
            (err = tsl_buf_printf(out, ", \"now\": \"%s\", \"policy\": ", when)) < 0 ||
            (err = tsl_buf_json_str(out, pol ? tsl_policy_version(pol) : NULL)) < 0 ||
            (err = tsl_buf_puts(out, ",\n  \"checks\": [")) < 0)
            goto done;
    } else if (fmt == TSL_FORMAT_CSV) {
        if ((err = tsl_buf_puts(out, "status,check,detail\n")) < 0)
            goto done;
    } else {
        if ((err = tsl_buf_printf(out, "doctor for %s %s", guid ? "client" : "addresses",
                                  who)) < 0 ||
            (err = tsl_buf_printf(out, " as of %s, under %s%s\n", when,
                                  pol ? "policy " : "the default logic",
                                  pol ? tsl_policy_version(pol) : "")) < 0)
            goto done;
    }

    if ((err = tsl_result_new(&res)) < 0)
        goto done;
    const snap_client *c = NULL;
    int32_t ci = -1;
    if (guid) {
        /* 1. the client is in the inventory (by GUID, or by computer name) */
        const char *found = NULL;
        int lookup = tsl_snapshot_find_client(&found, s, guid);
        ci = found ? snap_find_client(s, found) : -1;
        if (ci < 0 && lookup == TSL_EINVALID) {
            err = emit(&d, CHECK_FAIL, "client", "%s", tsl_error_last());
            goto footer;
        }
        if (ci < 0) {
            err = emit(&d, CHECK_FAIL, "client",
                       "no client with GUID %s in the inventory (%zu clients): import it, "
                       "check the GUID in the ITMS console, or check its addresses with "
                       "--ip",
                       guid, (size_t)s->nclients);
            goto footer;
        }
        c = &s->clients[ci];
        if ((err = emit(&d, CHECK_PASS, "client", "%s, ip %s, department %s",
                        c->name && c->name[0] ? c->name : "(no name)",
                        c->ip && c->ip[0] ? c->ip : "(none)",
                        c->department && c->department[0] ? c->department : "(none)")) < 0)
            goto done;
        if ((err = tsl_snapshot_client_request(&req, s, (size_t)ci)) < 0)
            goto done;
    } else {
        memset(&req, 0, sizeof req);
        if (nips > TSL_MAX_IPS) {
            err = tsl_seterr(TSL_EINVALID, "at most %d adapter addresses", TSL_MAX_IPS);
            goto done;
        }
        for (size_t i = 0; i < nips; i++)
            req.ips[i] = ips[i];
        req.nips = nips;
        if ((err = emit(&d, CHECK_WARN, "client",
                        "not in the inventory: judged by its adapter address%s %s, with no "
                        "department",
                        nips == 1 ? "" : "es", who)) < 0)
            goto done;
    }

    /* 2. decide its list once: the site and its source come from the decision */
    req.now = now;
    if ((err = tsl_decide(res, w, plan, &req, NULL)) < 0)
        goto done;
    const char *site = tsl_result_site(res);
    int32_t si = site ? snap_find_site(s, site) : TSL_NO_SITE;
    if ((err = check_site(&d, res, c ? c->ip : who, c ? c->has_addr : true, pol != NULL)) < 0)
        goto done;
    if (site && ci >= 0 && (err = check_conflict(&d, s, (uint32_t)ci)) < 0)
        goto done;

    /* 3. the candidates of its site, 4. its list, 5. its last registration
     * and error, judged against that list */
    if ((err = check_candidates(&d, s, si, now, pol != NULL, res)) < 0 ||
        (err = check_list(&d, res)) < 0)
        goto done;
    if (c && c->assigned && (err = check_last_registration(&d, res, c->assigned)) < 0)
        goto done;
    if (c && (err = check_last_error(&d, s, c, store, res, now)) < 0)
        goto done;

footer:
    if (err < 0)
        goto done;
    if (fmt == TSL_FORMAT_JSON)
        err = tsl_buf_printf(out, "\n  ],\n  \"passed\": %u, \"warnings\": %u, \"failed\": %u}\n",
                             d.sum.passed, d.sum.warnings, d.sum.failed);
    else if (fmt == TSL_FORMAT_TEXT)
        err = tsl_buf_printf(out, "checks: %u pass, %u warn, %u fail\n", d.sum.passed,
                             d.sum.warnings, d.sum.failed);
    if (err >= 0 && summary)
        *summary = d.sum;
done:
    tsl_buf_free(&d.detail);
    tsl_result_free(res);
    return err < 0 ? err : 0;
}

int tsl_doctor(tsl_buf *out, tsl_doctor_summary *summary, tsl_worker *w,
               const tsl_plan *plan, tsl_store *store, const char *guid, tsl_format fmt,
               int64_t now)
{
    TSL_ARG(out && w && plan && guid);
    return doctor_run(out, summary, w, plan, store, guid, NULL, 0, fmt, now);
}

int tsl_doctor_ips(tsl_buf *out, tsl_doctor_summary *summary, tsl_worker *w,
                   const tsl_plan *plan, const char *const *ips, size_t nips, tsl_format fmt,
                   int64_t now)
{
    TSL_ARG(out && w && plan && ips && nips > 0);
    return doctor_run(out, summary, w, plan, NULL, NULL, ips, nips, fmt, now);
}
