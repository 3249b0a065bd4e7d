/*
 * sim_html.c - the picture of a run (`tsl simulate --html FILE`): one
 * self-contained page, inline CSS and SVG, no script, nothing fetched.
 *
 * Each pass is a section: the verdict, where every client stands at the
 * end, then per site and client group a timeline of the clients' states
 * (registered by tier, attempting, waiting for a delayed fallback,
 * stranded as the policy demands or not, not started yet), stacked so the
 * bands always add up to the group's clients, with the faults of the
 * timeline marked on the time axis; then the invariants, PASS or FAIL, and
 * the promise figures per site.  docs/simulation.md explains how to read
 * it.
 *
 * Used by: sim.c (per pass), cmd_simulate.c (begin/end).  Needs: sim_internal.h.
 */
#include "sim_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define PUT(s)                                                                  \
    do {                                                                        \
        if ((err = tsl_buf_puts(out, (s))) < 0)                                 \
            goto done;                                                          \
    } while (0)
#define FMT(...)                                                                \
    do {                                                                        \
        if ((err = tsl_buf_printf(out, __VA_ARGS__)) < 0)                       \
            goto done;                                                          \
    } while (0)
#define ESC(s)                                                                  \
    do {                                                                        \
        if ((err = escape(out, (s))) < 0)                                       \
            goto done;                                                          \
    } while (0)

/* The bands, bottom to top, as COL_* orders them. */
static const struct {
    const char *cls, *label, *color;
} bands[COL_COUNT_] = {
    {"tier0", "registered, tier 0", "#2e8b57"},
    {"tier1", "registered, tier 1 (fallback)", "#3f7fd6"},
    {"tier2", "registered, tier 2 or more", "#8e5cc4"},
    {"attempting", "attempting a registration", "#f2c94c"},
    {"waiting", "waiting for a delayed fallback (as the policy demands)", "#f2994a"},
    {"demanded", "stranded, as the policy demands", "#8c96a3"},
    {"undemanded", "stranded, not demanded", "#d64541"},
    {"idle", "not started yet", "#e6e9ed"},
};

static int escape(tsl_buf *out, const char *s)
{
    int err = 0;
    for (const char *p = s ? s : ""; *p && err == 0; p++) {
        switch (*p) {
        case '<': err = tsl_buf_puts(out, "&lt;"); break;
        case '>': err = tsl_buf_puts(out, "&gt;"); break;
        case '&': err = tsl_buf_puts(out, "&amp;"); break;
        case '"': err = tsl_buf_puts(out, "&quot;"); break;
        default: err = tsl_buf_put(out, p, 1); break;
        }
    }
    return err;
}

int tsl_sim_html_begin(tsl_buf *out, const char *title)
{
    int err = 0;
    PUT("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>");
    ESC(title);
    PUT("</title>\n<style>\n"
        "body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;"
        "color:#1c2430;max-width:1100px}\n"
        "h1{font-size:20px;margin:0 0 4px}h2{font-size:18px;margin:32px 0 6px;border-bottom:2px "
        "solid #d6dbe1;padding-bottom:4px}h3{font-size:15px;margin:20px 0 6px}\n"
        ".meta{color:#5a6675;margin:0 0 12px}\n"
        ".verdict{margin:12px 0;padding:10px 14px;border-radius:6px;font-weight:600}\n"
        ".verdict.ok{background:#eaf6ec;color:#1e7b34}.verdict.fail{background:#fdf0ee;"
        "color:#c0392b}\n"
        ".cards{display:flex;flex-wrap:wrap;gap:10px}\n"
        ".card{border:1px solid #d6dbe1;border-radius:6px;padding:8px 12px;min-width:120px}\n"
        ".card .n{font-size:22px;font-weight:600}.card .l{color:#5a6675;font-size:12px}\n"
        ".card.bad{border-color:#c0392b;background:#fdf0ee}.card.bad .n{color:#c0392b}\n"
        "figure.lane{margin:14px 0}figcaption{font-weight:600;margin-bottom:2px}\n"
        "table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:4px 8px;"
        "border-bottom:1px solid #eef0f3}th{background:#f4f6f8;font-weight:600}\n"
        "td.num{text-align:right;font-variant-numeric:tabular-nums}\n"
        "td.pass{color:#1e7b34;font-weight:600}td.fail{color:#c0392b;font-weight:600}\n"
        ".legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;"
        "vertical-align:middle;border:1px solid #c5ccd4}\n"
        "</style>\n</head>\n<body>\n<h1>");
    ESC(title);
    PUT("</h1>\n<p class=\"meta\">Each timeline stacks where a group's clients stand at every "
        "moment of simulated time; the bands add up to the group. Dashed lines are the "
        "scenario's faults.</p>\n<p class=\"legend\">");
    for (int k = 0; k < COL_COUNT_; k++) {
        FMT("<span style=\"background:%s\"></span>", bands[k].color);
        ESC(bands[k].label);
    }
    PUT("</p>\n");
done:
    return err;
}

int tsl_sim_html_end(tsl_buf *out)
{
    return tsl_buf_puts(out, "</body>\n</html>\n");
}

/* ------------------------------------------------------------------------
 * One lane: a stacked timeline
 * ---------------------------------------------------------------------- */

#define W 880   /* plot width */
#define H 170   /* plot height */
#define LEFT 44
#define TOP 34  /* room for the fault labels */

static double xof(const sim *s, double t)
{
    return LEFT + W * (t / s->scn->duration);
}

/* A tick step that gives 6 to 12 ticks. */
static double tick_step(double duration)
{
    static const double steps[] = {10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400};
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++)
        if (duration / steps[i] <= 12)
            return steps[i];
    return 86400;
}

static int fault_text(char *dst, size_t n, const scn_fault *f)
{
    return snprintf(dst, n, "%s%s%s%s%s", scn_fault_name(f->kind), f->a ? " " : "",
                    f->a ? f->a : "", f->b ? " " : "", f->b ? f->b : "");
}

static int lane_svg(tsl_buf *out, const sim *s, size_t lane, size_t index)
{
    const tsl_sim_scenario *scn = s->scn;
    const sim_lane *ln = &s->lanes[lane];
    size_t row = s->nlanes * COL_COUNT_;
    double total = ln->clients > 0 ? (double)ln->clients : 1;
    int err = 0;

    FMT("<svg class=\"timeline\" id=\"timeline-%zu-%zu\" xmlns=\"http://www.w3.org/2000/svg\" "
        "width=\"%d\" height=\"%d\" role=\"img\">\n",
        index, lane, LEFT + W + 20, TOP + H + 28);
    /* the bands: each a polygon between its lower and upper cumulative line */
    for (int k = 0; k < COL_COUNT_; k++) {
        bool any = false;
        for (size_t i = 0; i < s->nsamples && !any; i++)
            any = s->samples[i * row + lane * COL_COUNT_ + (size_t)k] > 0;
        if (!any)
            continue;
        FMT("<polygon class=\"band %s\" fill=\"%s\" points=\"", bands[k].cls, bands[k].color);
        for (size_t i = 0; i < s->nsamples; i++) {
            const uint32_t *r = s->samples + i * row + lane * COL_COUNT_;
            double upper = 0;
            for (int j = 0; j <= k; j++)
                upper += r[j];
            FMT("%.1f,%.1f ", xof(s, (double)i * s->sample_step), TOP + H - H * upper / total);
        }
        for (size_t i = s->nsamples; i-- > 0;) {
            const uint32_t *r = s->samples + i * row + lane * COL_COUNT_;
            double lower = 0;
            for (int j = 0; j < k; j++)
                lower += r[j];
            FMT("%.1f,%.1f ", xof(s, (double)i * s->sample_step), TOP + H - H * lower / total);
        }
        FMT("\"><title>%s</title></polygon>\n", bands[k].label);
    }
    /* axes */
    FMT("<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#5a6675\"/>\n", LEFT, TOP + H,
        LEFT + W, TOP + H);
    FMT("<text x=\"%d\" y=\"%d\" font-size=\"11\" text-anchor=\"end\" fill=\"#5a6675\">%ld</text>"
        "<text x=\"%d\" y=\"%d\" font-size=\"11\" text-anchor=\"end\" fill=\"#5a6675\">0</text>\n",
        LEFT - 4, TOP + 10, ln->clients, LEFT - 4, TOP + H);
    double step = tick_step(scn->duration);
    for (double t = 0; t <= scn->duration + 1e-9; t += step)
        FMT("<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#5a6675\"/>"
            "<text x=\"%.1f\" y=\"%d\" font-size=\"11\" text-anchor=\"middle\" "
            "fill=\"#5a6675\">%.0f s</text>\n",
            xof(s, t), TOP + H, xof(s, t), TOP + H + 4, xof(s, t), TOP + H + 16, t);
    /* the faults, on two rows of labels so neighbours do not overlap */
    for (size_t i = 0; i < scn->nfaults; i++) {
        const scn_fault *f = &scn->faults[i];
        char label[200];
        fault_text(label, sizeof label, f);
        double x = xof(s, f->at);
        int label_y = 12 + (int)(i % 2) * 14;
        FMT("<g class=\"fault\" data-at=\"%.0f\"><line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" "
            "y2=\"%d\" stroke=\"#1c2430\" stroke-dasharray=\"4 3\"/>"
            "<text x=\"%.1f\" y=\"%d\" font-size=\"11\" fill=\"#1c2430\">",
            f->at, x, label_y + 3, x, TOP + H, x + 3, label_y);
        FMT("t=%.0f ", f->at);
        ESC(label);
        PUT("</text></g>\n");
    }
    PUT("</svg>\n");
done:
    return err;
}

/* ------------------------------------------------------------------------
 * The section of a pass
 * ---------------------------------------------------------------------- */

static int card(tsl_buf *out, const char *cls, uint64_t n, const char *label, bool bad)
{
    return tsl_buf_printf(out,
                          "<div class=\"card%s\" data-state=\"%s\"><div class=\"n\">%llu</div>"
                          "<div class=\"l\">%s</div></div>\n",
                          bad ? " bad" : "", cls, (unsigned long long)n, label);
}

int sim_html_pass(sim *s, tsl_buf *out, const tsl_sim_outcome *outcome)
{
    static size_t passes; /* ids unique over the page */
    const tsl_sim_scenario *scn = s->scn;
    const sim_counts *a = &s->all;
    size_t index = ++passes;
    int err = 0;

    PUT("<section class=\"pass\" data-scenario=\"");
    ESC(scn->name);
    FMT("\" data-result=\"%s\">\n<h2>", outcome->broken ? "FAIL" : "PASS");
    ESC(scn->name);
    if (s->selection)
        FMT(" (selection %s)", s->selection);
    PUT("</h2>\n<p class=\"meta\">");
    ESC(scn->description ? scn->description : "");
    FMT("<br>%zu clients, %zu Task Servers, %zu sites; %.0f s simulated; policy ", s->nclients,
        s->nts, s->nsites, scn->duration);
    ESC(scn->policy ? scn->policy : "none (the default logic)");
    PUT("</p>\n");
    if (outcome->broken)
        FMT("<div class=\"verdict fail\">FAIL: %u of %u invariants broken</div>\n",
            outcome->broken, outcome->checked);
    else
        FMT("<div class=\"verdict ok\">PASS: %u invariants held</div>\n", outcome->checked);

    FMT("<h3>Every client at the end (%llu)</h3>\n<div class=\"cards end\">\n",
        (unsigned long long)a->clients);
    if ((err = card(out, "registered", a->registered_at_end, "registered", false)) < 0 ||
        (err = card(out, "attempting", a->attempting_at_end, "attempting", false)) < 0 ||
        (err = card(out, "waiting", a->waiting_at_end,
                    "waiting for a delayed fallback (as the policy demands)", false)) < 0 ||
        (err = card(out, "demanded", a->stranded_demanded_at_end,
                    "stranded as the policy demands", false)) < 0 ||
        (err = card(out, "undemanded", a->stranded_undemanded_at_end, "stranded, not demanded",
                    a->stranded_undemanded_at_end > 0)) < 0 ||
        (err = card(out, "idle", a->idle_at_end, "not started", false)) < 0 ||
        (err = card(out, "outside", a->outside_approved, "registrations outside an approved set",
                    a->outside_approved > 0)) < 0)
        goto done;
    PUT("</div>\n<h3>Timelines, per site and client group</h3>\n");
    for (size_t l = 0; l < s->nlanes; l++) {
        const sim_lane *ln = &s->lanes[l];
        const char *site = ln->site >= 0 ? s->sites[ln->site].name : "(no site)";
        PUT("<figure class=\"lane\" data-site=\"");
        ESC(site);
        PUT("\" data-group=\"");
        ESC(scn->groups[ln->group].name);
        FMT("\" data-clients=\"%ld\">\n<figcaption>site ", ln->clients);
        ESC(site);
        PUT(", group ");
        ESC(scn->groups[ln->group].name);
        FMT(" (%ld clients)</figcaption>\n", ln->clients);
        if ((err = lane_svg(out, s, l, index)) < 0)
            goto done;
        PUT("</figure>\n");
    }

    PUT("<h3>Invariants</h3>\n<table class=\"invariants\">\n<tr><th>verdict</th><th>line</th>"
        "<th>expect</th><th class=\"num\">measured</th></tr>\n");
    for (size_t i = 0; i < scn->nexpects; i++) {
        const scn_expect *x = &scn->expects[i];
        bool ok = s->inv_state[i] > 0;
        FMT("<tr><td class=\"%s\">%s</td><td>%d</td><td>", ok ? "pass" : "fail",
            ok ? "PASS" : "FAIL", x->line);
        ESC(x->text);
        if (s->inv_state[i] < 0)
            PUT("</td><td class=\"num\">no such metric</td></tr>\n");
        else
            FMT("</td><td class=\"num\">%.6g</td></tr>\n", s->inv_value[i]);
    }
    if (s->admin_failures)
        FMT("<tr><td class=\"fail\">FAIL</td><td></td><td>every policy activation of the "
            "timeline succeeds</td><td class=\"num\">%u failed</td></tr>\n",
            s->admin_failures);
    PUT("</table>\n");

    PUT("<h3>The promise, per site (its own clients)</h3>\n<table class=\"sites\">\n<tr>"
        "<th>site</th><th class=\"num\">clients</th><th class=\"num\">registrations "
        "tier 0</th><th class=\"num\">fallback</th><th class=\"num\">across sites</th>"
        "<th class=\"num\">across countries</th><th class=\"num\">outside approved</th>"
        "<th class=\"num\">waited (longest s)</th><th class=\"num\">stranded: demanded / "
        "not</th><th class=\"num\">registered at the end</th></tr>\n");
    for (size_t i = 0; i < s->nsites; i++) {
        const sim_counts *c = &s->site_counts[i];
        if (!c->clients)
            continue;
        PUT("<tr><td>");
        ESC(s->sites[i].name);
        FMT("</td><td class=\"num\">%llu</td><td class=\"num\">%llu</td><td class=\"num\">%llu"
            "</td><td class=\"num\">%llu</td><td class=\"num\">%llu</td><td class=\"num\">%llu"
            "</td><td class=\"num\">%llu (%.0f)</td><td class=\"num\">%llu / %llu</td>"
            "<td class=\"num\">%llu</td></tr>\n",
            (unsigned long long)c->clients, (unsigned long long)c->by_tier[0],
            (unsigned long long)(c->registrations - c->by_tier[0]),
            (unsigned long long)c->cross_site, (unsigned long long)c->cross_country,
            (unsigned long long)c->outside_approved, (unsigned long long)c->waiting,
            c->waiting_max, (unsigned long long)c->stranded_demanded,
            (unsigned long long)c->stranded_undemanded, (unsigned long long)c->registered_at_end);
    }
    PUT("</table>\n");

    if (s->ndrains) {
        PUT("<h3>Server deaths and cut links</h3>\n<table class=\"drains\">\n<tr><th>at</th>"
            "<th>fault</th><th class=\"num\">clients on it</th><th class=\"num\">the last left "
            "after (s)</th></tr>\n");
        for (size_t i = 0; i < s->ndrains; i++) {
            const sim_drain *d = &s->drains[i];
            char label[200];
            fault_text(label, sizeof label, &scn->faults[d->fault]);
            FMT("<tr><td>t=%.0f</td><td>", d->at);
            ESC(label);
            if (d->site < 0 && scn->faults[d->fault].kind == SCN_SITE_DARK) {
                PUT(": ");
                ESC(s->ts[d->server].name);
            }
            FMT("</td><td class=\"num\">%ld</td><td class=\"num\">", d->had);
            if (d->had == 0)
                PUT("&ndash;");
            else if (d->remaining == 0)
                FMT("%.0f", d->last_leave - d->at);
            else
                FMT("%ld still there", d->remaining);
            PUT("</td></tr>\n");
        }
        PUT("</table>\n");
    }
    PUT("</section>\n");
done:
    return err;
}
