/*
 * dryrun_report.c - what a finished dry-run says: the summary as JSON (also
 * what a policy version keeps of its dry-run), the per-site and per-server
 * tables of the --json document, the human text report an admin reads in
 * ten seconds, and the self-contained HTML page for a change request.
 *
 * Used by: dryrun.c (the JSON tail), rollout.c (records), `tsl dry-run`.
 * Needs: dryrun.h.
 */
#include "dryrun.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define TEXT_ROWS 25   /* per-site / per-server rows in the text report */
#define CHART_ROWS 40  /* servers in the HTML chart */

#define PUT(s) do { if ((err = tsl_buf_puts(out, (s))) < 0) goto done; } while (0)
#define STR(s) do { if ((err = tsl_buf_json_str(out, (s))) < 0) goto done; } while (0)
#define FMT(...) do { if ((err = tsl_buf_printf(out, __VA_ARGS__)) < 0) goto done; } while (0)
#define HTML(s) do { if ((err = html_esc(out, (s))) < 0) goto done; } while (0)

static const char *site_name(const tsl_dryrun *dr, uint32_t i)
{
    return i < dr->snap->nsites ? dr->snap->sites[i].name : NULL;
}

static const char *server_site(const tsl_dryrun *dr, uint32_t i)
{
    int32_t h = dr->snap->servers[i].home;
    return h == TSL_NO_SITE ? NULL : dr->snap->sites[h].name;
}

/* ------------------------------------------------------------------------
 * JSON
 * ---------------------------------------------------------------------- */

int tsl_dryrun_summary_json(tsl_buf *out, const tsl_dryrun *dr)
{
    const tsl_dryrun_summary *s = &dr->sum;
    char conds[64];
    int err = 0;
    bool first = true;

    TSL_ARG(out && dr);
    tsl_dryrun_cond_format(conds, sizeof conds, s->conditions);
    FMT("{\"requests\":%llu,\"errors\":%llu,\"first_changed\":%llu,\"list_changed\":%llu,"
        "\"blocked_before\":%llu,\"blocked_after\":%llu,\"newly_blocked\":%llu,\"unblocked\":%llu,"
        "\"cross_site_before\":%llu,\"cross_site_after\":%llu,\"newly_cross_site\":%llu,"
        "\"back_in_site\":%llu,\"cross_country_before\":%llu,\"cross_country_after\":%llu,"
        "\"newly_cross_country\":%llu,\"over_capacity_before\":%u,\"over_capacity_after\":%u,"
        "\"newly_over_capacity\":%u,\"policy_errors_before\":%llu,\"policy_errors_after\":%llu,"
        "\"conditions\":[",
        (unsigned long long)s->requests, (unsigned long long)s->errors,
        (unsigned long long)s->first_changed, (unsigned long long)s->list_changed,
        (unsigned long long)s->blocked_before, (unsigned long long)s->blocked_after,
        (unsigned long long)s->newly_blocked, (unsigned long long)s->unblocked,
        (unsigned long long)s->cross_site_before, (unsigned long long)s->cross_site_after,
        (unsigned long long)s->newly_cross_site, (unsigned long long)s->back_in_site,
        (unsigned long long)s->cross_country_before, (unsigned long long)s->cross_country_after,
        (unsigned long long)s->newly_cross_country, s->over_capacity_before,
        s->over_capacity_after, s->newly_over_capacity,
        (unsigned long long)s->policy_errors_before, (unsigned long long)s->policy_errors_after);
    if (s->conditions) {
        char *save = NULL;
        for (char *t = strtok_r(conds, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            FMT("%s\"%s\"", first ? "" : ",", t);
            first = false;
        }
    }
    PUT("],\"over_capacity_servers\":[");
    first = true;
    for (uint32_t i = 0; i < dr->snap->nservers; i++) {
        if (!dryrun_over(&dr->snap->servers[i], dr->servers[i].after))
            continue;
        if (!first)
            PUT(",");
        STR(dr->snap->servers[i].name);
        first = false;
    }
    PUT("]");
    if (s->expected && dr->verdict) {
        PUT(",\"expect\":");
        STR(dr->expect_text);
        FMT(",\"expect_met\":%s,\"expect_verdict\":", s->expect_met ? "true" : "false");
        STR(dr->verdict);
    }
    PUT("}");
done:
    return err;
}

int dryrun_json_tables(tsl_buf *out, const tsl_dryrun *dr)
{
    int err = 0;
    bool first = true;

    PUT(",\n\"sites\":[");
    for (uint32_t i = 0; i <= dr->snap->nsites; i++) {
        const dr_site_count *c = &dr->sites[i];
        if (i == dr->snap->nsites && !c->requests)
            break;
        PUT(first ? "\n{\"site\":" : ",\n{\"site\":");
        first = false;
        STR(site_name(dr, i));
        FMT(",\"requests\":%llu,\"first_changed\":%llu,\"list_changed\":%llu,"
            "\"blocked_before\":%llu,\"blocked_after\":%llu,\"cross_site_before\":%llu,"
            "\"cross_site_after\":%llu}",
            (unsigned long long)c->requests, (unsigned long long)c->first,
            (unsigned long long)c->list, (unsigned long long)c->blocked_before,
            (unsigned long long)c->blocked_after, (unsigned long long)c->cross_before,
            (unsigned long long)c->cross_after);
    }
    PUT("],\n\"servers\":[");
    for (uint32_t i = 0; i < dr->snap->nservers; i++) {
        const snap_server *sv = &dr->snap->servers[i];
        const dr_server_count *c = &dr->servers[i];
        PUT(i ? ",\n{\"server\":" : "\n{\"server\":");
        STR(sv->name);
        PUT(",\"site\":");
        STR(server_site(dr, i));
        FMT(",\"capacity\":%lld,\"before\":%llu,\"after\":%llu,\"over_before\":%s,"
            "\"over_after\":%s}",
            (long long)sv->capacity, (unsigned long long)c->before, (unsigned long long)c->after,
            dryrun_over(sv, c->before) ? "true" : "false",
            dryrun_over(sv, c->after) ? "true" : "false");
    }
    FMT("],\n\"no_server\":{\"before\":%llu,\"after\":%llu}",
        (unsigned long long)dr->servers[dr->snap->nservers].before,
        (unsigned long long)dr->servers[dr->snap->nservers].after);
done:
    return err;
}

/* ------------------------------------------------------------------------
 * Ordering the tables and the kept changes
 * ---------------------------------------------------------------------- */

static const tsl_dryrun *sort_dr; /* qsort has no user pointer; reports run on one thread */

static int site_cmp(const void *pa, const void *pb)
{
    uint32_t a = *(const uint32_t *)pa, b = *(const uint32_t *)pb;
    const dr_site_count *x = &sort_dr->sites[a], *y = &sort_dr->sites[b];
    if (x->list != y->list)
        return x->list > y->list ? -1 : 1;
    if (x->requests != y->requests)
        return x->requests > y->requests ? -1 : 1;
    return a < b ? -1 : a > b;
}

static uint64_t absdiff(uint64_t a, uint64_t b)
{
    return a > b ? a - b : b - a;
}

static int server_cmp(const void *pa, const void *pb)
{
    uint32_t a = *(const uint32_t *)pa, b = *(const uint32_t *)pb;
    const dr_server_count *x = &sort_dr->servers[a], *y = &sort_dr->servers[b];
    uint64_t dx = absdiff(x->before, x->after), dy = absdiff(y->before, y->after);
    if (dx != dy)
        return dx > dy ? -1 : 1;
    if (x->after != y->after)
        return x->after > y->after ? -1 : 1;
    return a < b ? -1 : a > b;
}

static int change_cmp(const void *pa, const void *pb)
{
    const dr_change *a = pa, *b = pb;
    const char *sa = a->site >= 0 ? sort_dr->snap->sites[a->site].name : "~";
    const char *sb = b->site >= 0 ? sort_dr->snap->sites[b->site].name : "~";
    int c = strcasecmp(sa, sb);
    if (c)
        return c;
    if (a->severity != b->severity)
        return a->severity > b->severity ? -1 : 1;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* Sorted site indices with requests (the "no site" row included); *n set. */
static uint32_t *sorted_sites(const tsl_dryrun *dr, uint32_t *n)
{
    uint32_t *v = malloc((dr->snap->nsites + 1) * sizeof *v);
    *n = 0;
    if (!v)
        return NULL;
    for (uint32_t i = 0; i <= dr->snap->nsites; i++)
        if (dr->sites[i].requests)
            v[(*n)++] = i;
    sort_dr = dr;
    qsort(v, *n, sizeof *v, site_cmp);
    return v;
}

/* Sorted server indices: changed ones first; `all` includes unchanged. */
static uint32_t *sorted_servers(const tsl_dryrun *dr, uint32_t *n, bool all)
{
    uint32_t *v = malloc((dr->snap->nservers + 1) * sizeof *v);
    *n = 0;
    if (!v)
        return NULL;
    for (uint32_t i = 0; i < dr->snap->nservers; i++)
        if (all || dr->servers[i].before != dr->servers[i].after)
            v[(*n)++] = i;
    sort_dr = dr;
    qsort(v, *n, sizeof *v, server_cmp);
    return v;
}

static dr_change *sorted_changes(const tsl_dryrun *dr)
{
    dr_change *v = malloc((dr->nchanges ? dr->nchanges : 1) * sizeof *v);
    if (!v)
        return NULL;
    memcpy(v, dr->changes, dr->nchanges * sizeof *v);
    sort_dr = dr;
    qsort(v, dr->nchanges, sizeof *v, change_cmp);
    return v;
}

static const char *change_client_name(const tsl_dryrun *dr, const dr_change *c)
{
    if (c->client >= 0 && dr->snap->clients[c->client].name)
        return dr->snap->clients[c->client].name;
    return c->guid[0] ? c->guid : "(unknown client)";
}

/* "ts-lon-01, ts-lon-02, +3" or "(blocked)". */
static int side_names(tsl_buf *out, const tsl_dryrun *dr, const dr_side *s)
{
    int err = 0;
    if (!s->n)
        return tsl_buf_puts(out, "(blocked: no server)");
    for (uint32_t i = 0; i < s->n && i < DRYRUN_KEEP_ENTRIES && err == 0; i++)
        err = tsl_buf_printf(out, "%s%s", i ? ", " : "", dr->snap->servers[s->servers[i]].name);
    if (err == 0 && s->n > DRYRUN_KEEP_ENTRIES)
        err = tsl_buf_printf(out, ", +%u more", s->n - DRYRUN_KEEP_ENTRIES);
    return err;
}

static const char *side_reason(const dr_side *s)
{
    if (!s->n)
        return s->blocked_reason ? s->blocked_reason : "no available Task Server";
    return s->reasons[0] ? s->reasons[0] : "";
}

/* ------------------------------------------------------------------------
 * Text
 * ---------------------------------------------------------------------- */

static double pct(uint64_t a, uint64_t b)
{
    return b ? 100.0 * (double)a / (double)b : 0.0;
}

int tsl_dryrun_text(tsl_buf *out, const tsl_dryrun *dr)
{
    const tsl_dryrun_summary *s = &dr->sum;
    uint32_t *sites = NULL, *servers = NULL, nsites = 0, nservers = 0;
    dr_change *ch = NULL;
    char when[32], conds[64];
    int err = 0;

    TSL_ARG(out && dr);
    time_t t = (time_t)dr->now;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    tsl_dryrun_cond_format(conds, sizeof conds, s->conditions);

    FMT("dry-run: %s\n against %s\n %llu requests (%s), decided at %s\n\n",
        dr->after_label ? dr->after_label : "the new side",
        dr->before_label ? dr->before_label : "the old side", (unsigned long long)s->requests,
        dr->population ? dr->population : "inventory", when);
    FMT("  first server changes  %8llu  (%.1f%%)\n", (unsigned long long)s->first_changed,
        pct(s->first_changed, s->requests));
    FMT("  any list change       %8llu  (%.1f%%)\n", (unsigned long long)s->list_changed,
        pct(s->list_changed, s->requests));
    FMT("  newly blocked         %8llu  (blocked %llu -> %llu)%s\n",
        (unsigned long long)s->newly_blocked, (unsigned long long)s->blocked_before,
        (unsigned long long)s->blocked_after, s->newly_blocked ? "   <- condition: blocked" : "");
    FMT("  unblocked             %8llu\n", (unsigned long long)s->unblocked);
    FMT("  newly cross-site      %8llu  (cross-site %llu -> %llu, cross-country %llu -> %llu)%s\n",
        (unsigned long long)s->newly_cross_site, (unsigned long long)s->cross_site_before,
        (unsigned long long)s->cross_site_after, (unsigned long long)s->cross_country_before,
        (unsigned long long)s->cross_country_after,
        s->newly_cross_site ? "   <- condition: cross-site" : "");
    FMT("  back in their site    %8llu\n", (unsigned long long)s->back_in_site);
    FMT("  servers over capacity %8u -> %u%s\n", s->over_capacity_before, s->over_capacity_after,
        s->newly_over_capacity ? "   <- condition: over-capacity" : "");
    FMT("  not decidable         %8llu  (policy rule errors: %llu before, %llu after)\n",
        (unsigned long long)s->errors, (unsigned long long)s->policy_errors_before,
        (unsigned long long)s->policy_errors_after);
    FMT("\nconditions: %s\n", conds);
    if (s->expected && dr->verdict)
        FMT("expected:   %s\n", dr->verdict);

    if (!(sites = sorted_sites(dr, &nsites)) || !(servers = sorted_servers(dr, &nservers, false)) ||
        !(ch = sorted_changes(dr))) {
        err = tsl_oom();
        goto done;
    }

    FMT("\nper site                      requests  first-changed  list-changed  blocked     "
        "cross-site\n");
    for (uint32_t k = 0; k < nsites && k < TEXT_ROWS; k++) {
        const dr_site_count *c = &dr->sites[sites[k]];
        const char *nm = site_name(dr, sites[k]);
        char b[48], x[48];
        snprintf(b, sizeof b, "%llu -> %llu", (unsigned long long)c->blocked_before,
                 (unsigned long long)c->blocked_after);
        snprintf(x, sizeof x, "%llu -> %llu", (unsigned long long)c->cross_before,
                 (unsigned long long)c->cross_after);
        FMT("  %-28.28s %8llu  %13llu  %12llu  %-10s  %s\n", nm ? nm : "(no site)",
            (unsigned long long)c->requests, (unsigned long long)c->first,
            (unsigned long long)c->list, b, x);
    }
    if (nsites > TEXT_ROWS)
        FMT("  ... %u more site(s) (--json or --html for all)\n", nsites - TEXT_ROWS);

    FMT("\nper server (requests whose first server it is)\n");
    if (!nservers)
        FMT("  (no server's load changes)\n");
    else
        FMT("  %-24s %-18s %9s %9s %9s\n", "server", "site", "capacity", "before", "after");
    for (uint32_t k = 0; k < nservers && k < TEXT_ROWS; k++) {
        uint32_t i = servers[k];
        const snap_server *sv = &dr->snap->servers[i];
        const char *ss = server_site(dr, i);
        bool oa = dryrun_over(sv, dr->servers[i].after);
        FMT("  %-24.24s %-18.18s %9lld %9llu %9llu%s\n", sv->name, ss ? ss : "-",
            (long long)sv->capacity, (unsigned long long)dr->servers[i].before,
            (unsigned long long)dr->servers[i].after, oa ? "  OVER CAPACITY" : "");
    }
    if (nservers > TEXT_ROWS)
        FMT("  ... %u more server(s) change (--json or --html for all)\n", nservers - TEXT_ROWS);
    {
        const dr_server_count *none = &dr->servers[dr->snap->nservers];
        if (none->before || none->after)
            FMT("  %-24s %-18s %9s %9llu %9llu\n", "(no server: blocked)", "-", "-",
                (unsigned long long)none->before, (unsigned long long)none->after);
    }

    if (dr->nchanges) {
        FMT("\ntop %u change(s), most serious first, by site\n", dr->nchanges);
        int32_t cur = -2;
        for (uint32_t k = 0; k < dr->nchanges; k++) {
            const dr_change *c = &ch[k];
            if (c->site != cur) {
                cur = c->site;
                FMT("  %s\n", c->site >= 0 ? dr->snap->sites[c->site].name : "(no site)");
            }
            FMT("    %s %s [", change_client_name(dr, c), c->ip);
            if ((err = diff_kinds_text(out, c->kinds, ", ")) < 0)
                goto done;
            PUT("]\n      before: ");
            if ((err = side_names(out, dr, &c->before)) < 0)
                goto done;
            FMT("\n              %s\n      after:  ", side_reason(&c->before));
            if ((err = side_names(out, dr, &c->after)) < 0)
                goto done;
            FMT("\n              %s\n", side_reason(&c->after));
        }
        if (s->list_changed > dr->nchanges)
            FMT("  ... %llu more change(s) (--json lists every one)\n",
                (unsigned long long)(s->list_changed - dr->nchanges));
    } else {
        FMT("\nno client's list changes\n");
    }
done:
    free(sites);
    free(servers);
    free(ch);
    return err;
}

/* ------------------------------------------------------------------------
 * HTML: one page, inline CSS and SVG, nothing fetched
 * ---------------------------------------------------------------------- */

static int html_esc(tsl_buf *out, const char *s)
{
    int err = 0;
    if (!s)
        return tsl_buf_puts(out, "&ndash;");
    for (const char *p = s; *p && err == 0; p++) {
        switch (*p) {
        case '<': err = tsl_buf_puts(out, "&lt;"); break;
        case '>': err = tsl_buf_puts(out, "&gt;"); break;
        case '&': err = tsl_buf_puts(out, "&amp;"); break;
        case '"': err = tsl_buf_puts(out, "&quot;"); break;
        case '\'': err = tsl_buf_puts(out, "&#39;"); break;
        default: err = tsl_buf_put(out, p, 1); break;
        }
    }
    return err;
}

static const char html_style[] =
    "<style>\n"
    "body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#1c2430;"
    "max-width:1100px}\n"
    "h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px;border-bottom:1px solid "
    "#d6dbe1;padding-bottom:4px}\n"
    ".meta{color:#5a6675;margin:0 0 16px}\n"
    ".cards{display:flex;flex-wrap:wrap;gap:10px}\n"
    ".card{border:1px solid #d6dbe1;border-radius:6px;padding:10px 14px;min-width:150px}\n"
    ".card .n{font-size:24px;font-weight:600}.card .l{color:#5a6675;font-size:12px}\n"
    ".card.bad{border-color:#c0392b;background:#fdf0ee}.card.bad .n{color:#c0392b}\n"
    ".verdict{margin:16px 0;padding:10px 14px;border-radius:6px;font-weight:600}\n"
    ".verdict.ok{background:#eaf6ec;color:#1e7b34}.verdict.fail{background:#fdf0ee;color:#c0392b}\n"
    "table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:4px 8px;"
    "border-bottom:1px solid #eef0f3}\n"
    "th{background:#f4f6f8;font-weight:600}td.num{text-align:right;font-variant-numeric:"
    "tabular-nums}\n"
    "tr.over td{color:#c0392b}.kinds{color:#8a5a00}.reason{color:#5a6675;font-size:12px}\n"
    ".legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;"
    "vertical-align:middle}\n"
    "</style>\n";

static int html_card(tsl_buf *out, const char *id, uint64_t n, const char *label, bool bad)
{
    return tsl_buf_printf(out,
                          "<div class=\"card%s\"><div class=\"n\" id=\"%s\">%llu</div>"
                          "<div class=\"l\">%s</div></div>\n",
                          bad ? " bad" : "", id, (unsigned long long)n, label);
}

static int html_chart(tsl_buf *out, const tsl_dryrun *dr)
{
    uint32_t n = 0, *v = sorted_servers(dr, &n, true);
    uint64_t max = 1;
    int err = 0;

    if (!v)
        return tsl_oom();
    if (n > CHART_ROWS)
        n = CHART_ROWS;
    for (uint32_t k = 0; k < n; k++) {
        const dr_server_count *c = &dr->servers[v[k]];
        const snap_server *sv = &dr->snap->servers[v[k]];
        if (c->before > max)
            max = c->before;
        if (c->after > max)
            max = c->after;
        /* show the capacity line only when it is near the bars */
        if (sv->capacity > 0 && (uint64_t)sv->capacity <= max * 2 &&
            (c->after > (uint64_t)sv->capacity / 2 || c->before > (uint64_t)sv->capacity / 2) &&
            (uint64_t)sv->capacity > max)
            max = (uint64_t)sv->capacity;
    }
    const int label_w = 190, bar_w = 560, row_h = 26, top = 10;
    int height = top + (int)n * row_h + 10;
    FMT("<p class=\"legend\">clients whose first server it is:<span style=\"background:#9aa5b1\">"
        "</span>before<span style=\"background:#2d6cdf\"></span>after"
        "<span style=\"background:#c0392b;width:2px\"></span>capacity</p>\n");
    FMT("<svg id=\"load-chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
        "role=\"img\" aria-label=\"per-server load before and after\">\n",
        label_w + bar_w + 90, height);
    for (uint32_t k = 0; k < n; k++) {
        uint32_t i = v[k];
        const dr_server_count *c = &dr->servers[i];
        const snap_server *sv = &dr->snap->servers[i];
        int y = top + (int)k * row_h;
        double wb = (double)bar_w * (double)c->before / (double)max;
        double wa = (double)bar_w * (double)c->after / (double)max;
        PUT("<text x=\"0\" y=\"");
        FMT("%d\" font-size=\"12\" dominant-baseline=\"middle\">", y + 10);
        HTML(sv->name);
        FMT("</text>\n<rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"9\" fill=\"#9aa5b1\"/>"
            "<rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"9\" fill=\"%s\"/>\n",
            label_w, y + 1, wb, label_w, y + 11, wa,
            dryrun_over(sv, c->after) ? "#c0392b" : "#2d6cdf");
        FMT("<text x=\"%d\" y=\"%d\" font-size=\"11\" dominant-baseline=\"middle\" "
            "fill=\"#5a6675\">%llu &#8594; %llu</text>\n",
            label_w + (int)(wa > wb ? wa : wb) + 6, y + 10, (unsigned long long)c->before,
            (unsigned long long)c->after);
        if (sv->capacity > 0 && (uint64_t)sv->capacity <= max) {
            double x = label_w + (double)bar_w * (double)sv->capacity / (double)max;
            FMT("<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\" stroke=\"#c0392b\" "
                "stroke-width=\"2\"/>\n",
                x, x, y, y + 21);
        }
    }
    PUT("</svg>\n");
    if (dr->snap->nservers > CHART_ROWS)
        FMT("<p class=\"meta\">The %d servers whose load changes most; every server is in the "
            "--json output.</p>\n",
            CHART_ROWS);
done:
    free(v);
    return err;
}

int tsl_dryrun_html(tsl_buf *out, const tsl_dryrun *dr)
{
    const tsl_dryrun_summary *s = &dr->sum;
    uint32_t *sites = NULL, nsites = 0;
    dr_change *ch = NULL;
    char when[32], conds[64];
    int err = 0;

    TSL_ARG(out && dr);
    time_t t = (time_t)dr->now;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", &tm);
    tsl_dryrun_cond_format(conds, sizeof conds, s->conditions);

    PUT("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        "<title>tsl dry-run: ");
    HTML(dr->after_label);
    PUT("</title>\n");
    PUT(html_style);
    PUT("</head>\n<body>\n<h1>Policy dry-run</h1>\n<p class=\"meta\"><b>");
    HTML(dr->after_label ? dr->after_label : "the new side");
    PUT("</b> against <b>");
    HTML(dr->before_label ? dr->before_label : "the old side");
    FMT("</b><br>%llu requests (", (unsigned long long)s->requests);
    HTML(dr->population ? dr->population : "inventory");
    FMT("), decided at %s</p>\n", when);

    FMT("<div id=\"verdict\" class=\"verdict %s\">%s%s</div>\n", s->conditions ? "fail" : "ok",
        s->conditions ? "Conditions found: " : "No blocked, cross-site or over-capacity "
                                               "condition",
        s->conditions ? conds : "");

    PUT("<section id=\"summary\">\n<h2>Summary</h2>\n<div class=\"cards\">\n");
    if ((err = html_card(out, "first-changed", s->first_changed, "first server changes", false)) <
            0 ||
        (err = html_card(out, "list-changed", s->list_changed, "any list change", false)) < 0 ||
        (err = html_card(out, "newly-blocked", s->newly_blocked, "newly blocked (empty list)",
                         s->newly_blocked > 0)) < 0 ||
        (err = html_card(out, "unblocked", s->unblocked, "unblocked", false)) < 0 ||
        (err = html_card(out, "newly-cross-site", s->newly_cross_site,
                         "newly sent outside their site", s->newly_cross_site > 0)) < 0 ||
        (err = html_card(out, "newly-cross-country", s->newly_cross_country,
                         "of them to another country", s->newly_cross_country > 0)) < 0 ||
        (err = html_card(out, "over-capacity", s->over_capacity_after,
                         "servers over capacity after", s->newly_over_capacity > 0)) < 0 ||
        (err = html_card(out, "errors", s->errors, "requests not decidable", s->errors > 0)) < 0)
        goto done;
    FMT("</div>\n<p class=\"meta\">blocked %llu &#8594; %llu; cross-site %llu &#8594; %llu; "
        "cross-country %llu &#8594; %llu; servers over capacity %u &#8594; %u; "
        "back in their own site: %llu</p>\n</section>\n",
        (unsigned long long)s->blocked_before, (unsigned long long)s->blocked_after,
        (unsigned long long)s->cross_site_before, (unsigned long long)s->cross_site_after,
        (unsigned long long)s->cross_country_before, (unsigned long long)s->cross_country_after,
        s->over_capacity_before, s->over_capacity_after, (unsigned long long)s->back_in_site);

    PUT("<section id=\"servers\">\n<h2>Per-server load, before and after</h2>\n");
    if ((err = html_chart(out, dr)) < 0)
        goto done;
    PUT("</section>\n");

    if (!(sites = sorted_sites(dr, &nsites)) || !(ch = sorted_changes(dr))) {
        err = tsl_oom();
        goto done;
    }
    PUT("<section id=\"sites\">\n<h2>Per site</h2>\n<table id=\"site-table\">\n<thead><tr>"
        "<th>site</th><th>requests</th><th>first server changes</th><th>list changes</th>"
        "<th>blocked before</th><th>blocked after</th><th>cross-site before</th>"
        "<th>cross-site after</th></tr></thead>\n<tbody>\n");
    for (uint32_t k = 0; k < nsites; k++) {
        const dr_site_count *c = &dr->sites[sites[k]];
        PUT(c->blocked_after > c->blocked_before || c->cross_after > c->cross_before
                ? "<tr class=\"over\"><td>"
                : "<tr><td>");
        HTML(site_name(dr, sites[k]) ? site_name(dr, sites[k]) : "(no site)");
        FMT("</td><td class=\"num\">%llu</td><td class=\"num\">%llu</td><td class=\"num\">%llu"
            "</td><td class=\"num\">%llu</td><td class=\"num\">%llu</td><td class=\"num\">%llu"
            "</td><td class=\"num\">%llu</td></tr>\n",
            (unsigned long long)c->requests, (unsigned long long)c->first,
            (unsigned long long)c->list, (unsigned long long)c->blocked_before,
            (unsigned long long)c->blocked_after, (unsigned long long)c->cross_before,
            (unsigned long long)c->cross_after);
    }
    PUT("</tbody>\n</table>\n</section>\n");

    PUT("<section id=\"changes\">\n<h2>Top changes, by site</h2>\n");
    if (!dr->nchanges) {
        PUT("<p>No client's list changes.</p>\n");
    } else {
        PUT("<table>\n<thead><tr><th>site</th><th>client</th><th>what changes</th><th>before</th>"
            "<th>after</th></tr></thead>\n<tbody>\n");
        for (uint32_t k = 0; k < dr->nchanges; k++) {
            const dr_change *c = &ch[k];
            PUT("<tr><td>");
            HTML(c->site >= 0 ? dr->snap->sites[c->site].name : "(no site)");
            PUT("</td><td>");
            HTML(change_client_name(dr, c));
            PUT("<br><span class=\"reason\">");
            HTML(c->ip);
            PUT("</span></td><td class=\"kinds\">");
            if ((err = diff_kinds_text(out, c->kinds, ", ")) < 0)
                goto done;
            for (int side = 0; side < 2; side++) {
                const dr_side *sd = side ? &c->after : &c->before;
                tsl_buf names = TSL_BUF_INIT;
                if ((err = side_names(&names, dr, sd)) < 0) {
                    tsl_buf_free(&names);
                    goto done;
                }
                PUT("</td><td>");
                err = html_esc(out, names.ptr);
                tsl_buf_free(&names);
                if (err < 0)
                    goto done;
                PUT("<br><span class=\"reason\">");
                HTML(side_reason(sd));
                PUT("</span>");
            }
            PUT("</td></tr>\n");
        }
        PUT("</tbody>\n</table>\n");
        if (s->list_changed > dr->nchanges)
            FMT("<p class=\"meta\">%llu more change(s): the --json output lists every one.</p>\n",
                (unsigned long long)(s->list_changed - dr->nchanges));
    }
    PUT("</section>\n<p class=\"meta\">Generated by tsl dry-run.</p>\n</body>\n</html>\n");
done:
    free(sites);
    free(ch);
    return err;
}
