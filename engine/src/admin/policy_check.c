/*
 * policy_check.c - tsl_policy_check: what `tsl check` reports to an admin
 * before a policy goes live.
 *
 * Findings, one line each, "file:line: error|warning: text":
 *   errors    the policy does not compile (syntax, fields, sandbox limits);
 *             a site that blocks fallback whose approved set is empty, or
 *             has no available server right now (its clients are stranded);
 *             a rule that fails on sample requests;
 *   warnings  names and globs that match no server; unknown sites (site
 *             blocks, fallback lists) and groups no client belongs to;
 *             fallback cycles; order members outside allow or denied;
 *             groups that change nothing; every client the policy
 *             strands (blocked, abroad, outside its site, on a fallback
 *             tier), per site and group (check_every_client).
 * Without a snapshot only the text is checked.  The rule sample: up to
 * CHECK_SAMPLE inventory clients, each with no task and with every string
 * literal of the policy as its task (so `req.task == "imaging"` branches
 * run too).
 *
 * Used by: the CLI (tsl check).  Needs: policy.h, decide.h.
 */
#include "decide.h"
#include "policy.h"
#include "progress.h"
#include "suggest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define CHECK_SAMPLE 500
#define CHECK_MAX_TASKS 16

typedef struct chk {
    tsl_buf *out;
    const char *name;
    int worst;
    int nerr, nwarn;
    int err;                /* first buffer failure */
} chk;

static void finding(chk *c, int level, int line, const char *fmt, ...) TSL_PRINTF(4, 5);

static void finding(chk *c, int level, int line, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (level > c->worst)
        c->worst = level;
    if (level == 2)
        c->nerr++;
    else
        c->nwarn++;
    int rc = line > 0 ? tsl_buf_printf(c->out, "%s:%d: %s: %s\n", c->name, line,
                                       level == 2 ? "error" : "warning", msg)
                      : tsl_buf_printf(c->out, "%s: %s: %s\n", c->name,
                                       level == 2 ? "error" : "warning", msg);
    if (rc < 0 && !c->err)
        c->err = rc;
}

/* ------------------------------------------------------------------------
 * Did you mean
 * ---------------------------------------------------------------------- */

/* " (did you mean \"London\"?)" or "" */
static const char *suggest(char *buf, size_t len, const char *name, const char *const *cands,
                           size_t ncand, size_t stride)
{
    return tsl_suggest_hint(buf, len, name, cands, ncand, stride);
}

static const char *suggest_site(char *buf, size_t len, const tsl_snapshot *s, const char *name)
{
    return suggest(buf, len, name, &s->sites[0].name, s->nsites, sizeof s->sites[0]);
}

static const char *suggest_server(char *buf, size_t len, const tsl_snapshot *s, const char *name)
{
    return suggest(buf, len, name, &s->servers[0].name, s->nservers, sizeof s->servers[0]);
}

/* ------------------------------------------------------------------------
 * Text-only checks
 * ---------------------------------------------------------------------- */

static const pol_fallback *effective_fb(const tsl_policy *pol, const pol_block *b)
{
    if (b->fallback.kind != POL_FB_UNSET || b->kind != POL_SITE)
        return &b->fallback;
    return &pol->defaults.fallback;
}

static const pol_block *site_block(const tsl_policy *pol, const char *name)
{
    for (uint32_t i = 0; i < pol->nsites; i++)
        if (strcasecmp(pol->sites[i].name, name) == 0)
            return &pol->sites[i];
    return NULL;
}

/* Fallback cycles among site blocks: A lists B, B lists ... A. */
static void check_cycles(chk *c, const tsl_policy *pol)
{
    uint32_t n = pol->nsites;
    for (uint32_t start = 0; start < n; start++) {
        /* depth-first along fallback lists, reporting cycles that return to
         * `start` through blocks of higher index only (each cycle once) */
        uint32_t path[64], idx[64];
        int depth = 0;
        path[0] = start;
        idx[0] = 0;
        while (depth >= 0) {
            const pol_block *b = &pol->sites[path[depth]];
            const pol_fallback *fb = effective_fb(pol, b);
            if (fb->kind != POL_FB_LIST || idx[depth] >= fb->sites.n) {
                depth--;
                if (depth >= 0)
                    idx[depth]++;
                continue;
            }
            const pol_block *next = site_block(pol, fb->sites.v[idx[depth]]);
            uint32_t ni = next ? (uint32_t)(next - pol->sites) : UINT32_MAX;
            if (ni == start && depth > 0) {
                char txt[512] = "";
                for (int k = 0; k <= depth; k++) {
                    strncat(txt, pol->sites[path[k]].name, sizeof txt - strlen(txt) - 1);
                    strncat(txt, " -> ", sizeof txt - strlen(txt) - 1);
                }
                strncat(txt, pol->sites[start].name, sizeof txt - strlen(txt) - 1);
                finding(c, 1, pol->sites[start].line,
                        "fallback cycle: %s (each site's clients fall back to the other's "
                        "servers; fallback is not followed further than one hop)",
                        txt);
                idx[depth]++;
                continue;
            }
            bool on_path = false;
            for (int k = 0; k <= depth; k++)
                on_path |= path[k] == ni;
            if (ni == UINT32_MAX || ni < start || on_path || depth == 63) {
                idx[depth]++;
                continue;
            }
            depth++;
            path[depth] = ni;
            idx[depth] = 0;
        }
    }
}

static bool matches_any(const pol_strv *pats, const char *name)
{
    for (uint32_t i = 0; i < pats->n; i++)
        if (policy_glob_match(pats->v[i], name))
            return true;
    return false;
}

static void check_block_text(chk *c, const pol_block *b)
{
    const char *kind = b->kind == POL_SITE ? "site" : "group";
    for (uint32_t i = 0; i < b->order.n; i++) {
        if (b->has_allow && !matches_any(&b->allow, b->order.v[i]))
            finding(c, 1, b->line, "%s \"%s\": order member \"%s\" is not in allow, so it is "
                                   "never listed",
                    kind, b->name, b->order.v[i]);
        if (b->has_deny && matches_any(&b->deny, b->order.v[i]))
            finding(c, 1, b->line, "%s \"%s\": order member \"%s\" is denied, so it is never "
                                   "listed",
                    kind, b->name, b->order.v[i]);
        for (uint32_t k = 0; k < i; k++)
            if (strcasecmp(b->order.v[i], b->order.v[k]) == 0)
                finding(c, 1, b->line, "%s \"%s\": \"%s\" appears twice in order", kind,
                        b->name, b->order.v[i]);
    }
    if (b->kind == POL_GROUP && !b->has_allow && !b->has_order && !b->has_deny &&
        b->fallback.kind == POL_FB_UNSET)
        finding(c, 1, b->line, "group \"%s\" sets nothing and changes nothing", b->name);
}

/* ------------------------------------------------------------------------
 * Inventory checks
 * ---------------------------------------------------------------------- */

static void check_patterns(chk *c, const tsl_snapshot *s, const pol_block *b, const pol_strv *v,
                           const char *field)
{
    char hint[128];
    const char *kind = b->kind == POL_SITE        ? "site"
                       : b->kind == POL_GROUP      ? "group"
                       : b->kind == POL_UNASSIGNED ? "unassigned"
                                                   : "defaults";
    char label[200];
    if (b->kind == POL_UNASSIGNED)
        snprintf(label, sizeof label, "unassigned");
    else
        snprintf(label, sizeof label, "%s \"%s\"", kind, b->name);
    for (uint32_t i = 0; i < v->n; i++) {
        bool hit = false;
        for (uint32_t k = 0; k < s->nservers && !hit; k++)
            hit = policy_glob_match(v->v[i], s->servers[k].name);
        if (hit)
            continue;
        if (policy_is_glob(v->v[i]))
            finding(c, 1, b->line, "%s: %s pattern \"%s\" matches no server", label, field,
                    v->v[i]);
        else
            finding(c, 1, b->line, "%s: %s names \"%s\", which is not a server in the "
                                   "inventory%s",
                    label, field, v->v[i], suggest_server(hint, sizeof hint, s, v->v[i]));
    }
}

static void check_fallback_names(chk *c, const tsl_snapshot *s, const pol_block *b)
{
    char hint[128];
    const char *kind = b->kind == POL_SITE ? "site" : b->kind == POL_GROUP ? "group" : "defaults";
    for (uint32_t i = 0; i < b->fallback.sites.n; i++) {
        const char *n = b->fallback.sites.v[i];
        if (strcmp(n, "*") == 0 || policy_find_site(s, n) >= 0)
            continue;
        finding(c, 1, b->line, "%s \"%s\": fallback names \"%s\", which is not a site in the "
                               "inventory%s",
                kind, b->name, n, suggest_site(hint, sizeof hint, s, n));
    }
}

static bool department_exists(const tsl_snapshot *s, const char *dept)
{
    for (uint32_t i = 0; i < s->nclients; i++)
        if (s->clients[i].department && strcasecmp(s->clients[i].department, dept) == 0)
            return true;
    return false;
}

static void check_blocking_sites(chk *c, const tsl_snapshot *s, const policy_bound *pb,
                                 int64_t now)
{
    for (uint32_t i = 0; i < pb->nsites; i++) {
        const bound_block *b = &pb->sites[i];
        if (b->fb != POL_FB_BLOCK)
            continue;
        if (b->napproved == 0) {
            finding(c, 2, b->pb->line, "site \"%s\" blocks fallback but its approved set is "
                                       "empty: its clients would get no Task Server at all",
                    b->pb->name);
            continue;
        }
        uint32_t avail = 0;
        for (uint32_t k = 0; k < b->napproved; k++)
            avail += snap_server_available(s, &s->servers[b->approved[k]], now);
        if (avail == 0)
            finding(c, 2, b->pb->line, "site \"%s\" blocks fallback and none of its %u approved "
                                       "server(s) is available right now: its clients are "
                                       "stranded",
                    b->pb->name, b->napproved);
    }
}

/* ------------------------------------------------------------------------
 * Sample decisions
 * ---------------------------------------------------------------------- */

typedef struct rule_stat {
    int failures;
    char first[400];
} rule_stat;


/* String literals of the source as candidate task names. */
static size_t collect_tasks(const tsl_policy *pol, const tsl_snapshot *s, char tasks[][48],
                            size_t max)
{
    size_t n = 0;
    const char *p = pol->src, *end = pol->src + pol->len;
    while (p < end && n < max) {
        if (*p == '-' && p + 1 < end && p[1] == '-') { /* comment to end of line */
            while (p < end && *p != '\n')
                p++;
            continue;
        }
        if (*p != '"' && *p != '\'') {
            p++;
            continue;
        }
        char q = *p++;
        const char *start = p;
        while (p < end && *p != q && *p != '\n') {
            if (*p == '\\')
                p++;
            p++;
        }
        size_t len = (size_t)(p - start);
        p++;
        if (len == 0 || len >= 48 || memchr(start, '\\', len) || memchr(start, '*', len) ||
            memchr(start, '%', len))
            continue;
        char t[48];
        memcpy(t, start, len);
        t[len] = '\0';
        if (policy_find_server(s, t) >= 0 || policy_find_site(s, t) >= 0 ||
            department_exists(s, t))
            continue;
        bool dup = false;
        for (size_t i = 0; i < n && !dup; i++)
            dup = strcmp(tasks[i], t) == 0;
        if (!dup)
            memcpy(tasks[n++], t, len + 1);
    }
    return n;
}

static int check_sample(chk *c, const tsl_plan *plan, const tsl_policy *pol, int64_t now)
{
    const tsl_snapshot *s = plan->snap;
    tsl_worker *w = NULL;
    tsl_result *res = NULL;
    rule_stat *rs = NULL;
    char tasks[CHECK_MAX_TASKS][48];
    size_t ntasks = collect_tasks(pol, s, tasks, CHECK_MAX_TASKS);
    uint32_t nsample = s->nclients < CHECK_SAMPLE ? s->nclients : CHECK_SAMPLE;
    int requests = 0, err = 0;

    if ((err = tsl_worker_new(&w)) < 0 || (err = tsl_result_new(&res)) < 0)
        goto done;
    if (!(rs = calloc(pol->nrules + 1, sizeof *rs))) {
        err = tsl_oom();
        goto done;
    }
    for (uint32_t k = 0; k < nsample; k++) {
        uint32_t ci = (uint32_t)((uint64_t)k * s->nclients / nsample);
        for (size_t t = 0; t <= ntasks; t++) {
            tsl_request req;
            if (tsl_snapshot_client_request(&req, s, ci) < 0)
                continue;
            req.task = t == 0 ? NULL : tasks[t - 1];
            req.now = now;
            uint64_t before = w->policy_errors;
            if (tsl_decide(res, w, plan, &req, NULL) < 0) {
                tsl_error_clear();
                continue; /* a client the inventory cannot place: doctor's business */
            }
            requests++;
            if (w->policy_errors != before) {
                /* "policy V: rule "NAME" (file:line) failed: ..." */
                for (uint32_t r = 0; r < pol->nrules; r++) {
                    char key[300];
                    snprintf(key, sizeof key, "rule \"%s\" (", pol->rules[r].name);
                    if (!strstr(w->last_policy_error, key))
                        continue;
                    if (rs[r].failures++ == 0) {
                        const char *m = strstr(w->last_policy_error, "failed: ");
                        snprintf(rs[r].first, sizeof rs[r].first, "%.300s%s%.48s",
                                 m ? m + 8 : w->last_policy_error, req.task ? " (task " : "",
                                 req.task ? req.task : "");
                        if (req.task)
                            strncat(rs[r].first, ")", sizeof rs[r].first - strlen(rs[r].first) - 1);
                    }
                    break;
                }
            }
        }
    }
    for (uint32_t r = 0; r < pol->nrules; r++)
        if (rs[r].failures)
            finding(c, 2, pol->rules[r].line, "rule \"%s\" failed on %d of %d sample request(s); "
                                              "first: %s",
                    pol->rules[r].name, rs[r].failures, requests, rs[r].first);
done:
    free(rs);
    tsl_result_free(res);
    tsl_worker_free(w);
    return err;
}

/* ------------------------------------------------------------------------
 * Every client: who the policy strands
 * ---------------------------------------------------------------------- */

/* What happens to a client, worst first. */
enum { STRAND_BLOCKED, STRAND_COUNTRY, STRAND_SITE, STRAND_FALLBACK, STRAND__N };

static const char *const strand_words[STRAND__N] = {
    "would be blocked (an empty list)",
    "would be sent outside their country",
    "would be sent outside their site",
    "would be left on a fallback tier",
};

/* One stranded client: sorted by (site, group, kind) to report per bucket. */
typedef struct strand {
    int32_t site;        /* TSL_NO_SITE sorts first */
    int32_t group;       /* index in pb->groups, -1 none */
    int kind;
    uint32_t client;
    int32_t server;      /* the list's first server, -1 when empty */
} strand;

static int strand_cmp(const void *pa, const void *pb)
{
    const strand *a = pa, *b = pb;
    if (a->site != b->site)
        return a->site < b->site ? -1 : 1;
    if (a->group != b->group)
        return a->group < b->group ? -1 : 1;
    if (a->kind != b->kind)
        return a->kind < b->kind ? -1 : 1;
    return (a->client > b->client) - (a->client < b->client);
}

/* The country of a server: its home site's, else that of a site it is
 * assigned to; NULL when none is known. */
static const char *server_country(const tsl_snapshot *s, const snap_server *sv)
{
    if (sv->home != TSL_NO_SITE && s->sites[sv->home].country)
        return s->sites[sv->home].country;
    for (uint32_t i = 0; i < sv->nsites; i++)
        if (s->sites[sv->sites[i]].country)
            return s->sites[sv->sites[i]].country;
    return NULL;
}

/* How a decided list strands its client, or -1 when it does not: judged on
 * the first entry, the server the client registers with while all is well. */
static int strand_kind(const tsl_snapshot *s, const tsl_result *res)
{
    if (res->n == 0)
        return STRAND_BLOCKED;
    const snap_server *sv = &s->servers[res->servers[0]];
    if (res->site != TSL_NO_SITE && !policy_server_at_site(s, res->servers[0], res->site)) {
        const char *cc = s->sites[res->site].country, *sc = server_country(s, sv);
        if (cc && sc && strcasecmp(cc, sc) != 0)
            return STRAND_COUNTRY;
        return STRAND_SITE;
    }
    if (res->entries[0].tier > 0)
        return STRAND_FALLBACK;
    return -1;
}

#define STRAND_NAMES 3
#define STRAND_MAX_LINES 200

/* One finding per (site, group, kind): how many, and a few names. */
static void report_strands(chk *c, const tsl_snapshot *s, const policy_bound *pb,
                           const strand *v, size_t n)
{
    size_t lines = 0, i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && v[j].site == v[i].site && v[j].group == v[i].group &&
               v[j].kind == v[i].kind)
            j++;
        if (lines++ == STRAND_MAX_LINES) {
            finding(c, 1, 0, "... and more stranded clients in further sites and groups "
                             "(%zu listed)",
                    (size_t)STRAND_MAX_LINES);
            return;
        }
        char names[512] = "", where[160];
        size_t off = 0;
        for (size_t k = i; k < j && k < i + STRAND_NAMES; k++) {
            const snap_client *cl = &s->clients[v[k].client];
            const char *nm = cl->name && *cl->name ? cl->name : cl->guid;
            if (v[k].server >= 0)
                off += (size_t)snprintf(names + off, sizeof names - off, "%s%s -> %s",
                                        k > i ? ", " : "", nm, s->servers[v[k].server].name);
            else
                off += (size_t)snprintf(names + off, sizeof names - off, "%s%s",
                                        k > i ? ", " : "", nm);
            if (off >= sizeof names)
                off = sizeof names - 1;
        }
        if (j - i > STRAND_NAMES)
            snprintf(names + off, sizeof names - off, ", and %zu more", j - i - STRAND_NAMES);
        if (v[i].site == TSL_NO_SITE)
            snprintf(where, sizeof where, "clients with no site");
        else
            snprintf(where, sizeof where, "site \"%s\"", s->sites[v[i].site].name);
        const bound_block *g = v[i].group >= 0 ? &pb->groups[v[i].group] : NULL;
        const bound_block *sb = v[i].site != TSL_NO_SITE ? pb->site_blk[v[i].site]
                                                        : pb->unassigned;
        int line = g ? g->pb->line : sb ? sb->pb->line : 0;
        finding(c, 1, line, "%s%s%s%s: %zu client(s) %s: %s", where, g ? ", group \"" : "",
                g ? g->pb->name : "", g ? "\"" : "", j - i, strand_words[v[i].kind], names);
        i = j;
    }
}

/* Decides for every client of the inventory (no task) and reports, per
 * site and group, those the policy would block, send outside their
 * country or site, or leave on a fallback tier. */
static int check_every_client(chk *c, const tsl_plan *plan, int64_t now)
{
    const tsl_snapshot *s = plan->snap;
    const policy_bound *pb = plan->bound;
    tsl_worker *w = NULL;
    tsl_result *res = NULL;
    strand *v = NULL;
    size_t n = 0, count[STRAND__N] = {0};
    int err = 0;

    if ((err = tsl_worker_new(&w)) < 0 || (err = tsl_result_new(&res)) < 0)
        goto done;
    if (!(v = malloc(sizeof *v * (s->nclients ? s->nclients : 1)))) {
        err = tsl_oom();
        goto done;
    }
    for (uint32_t ci = 0; ci < s->nclients; ci++) {
        tsl_request req;
        tsl_progress_tick("clients", ci, s->nclients);
        if (tsl_snapshot_client_request(&req, s, ci) < 0)
            continue;
        req.now = now;
        if (tsl_decide(res, w, plan, &req, NULL) < 0) {
            tsl_error_clear();
            continue; /* a client the inventory cannot place: doctor's business */
        }
        int kind = strand_kind(s, res);
        if (kind < 0)
            continue;
        const bound_block *g = policy_find_group(pb, s->clients[ci].department);
        v[n++] = (strand){res->site, g ? (int32_t)(g - pb->groups) : -1, kind, ci,
                          res->n ? (int32_t)res->servers[0] : -1};
        count[kind]++;
    }
    tsl_progress_tick("clients", s->nclients, s->nclients);
    if (n == 0)
        goto done;
    qsort(v, n, sizeof *v, strand_cmp);
    report_strands(c, s, pb, v, n);
    finding(c, 1, 0, "%zu of %u client(s) stranded: %zu blocked, %zu outside their country, "
                     "%zu outside their site, %zu on a fallback tier",
            n, s->nclients, count[STRAND_BLOCKED], count[STRAND_COUNTRY], count[STRAND_SITE],
            count[STRAND_FALLBACK]);
done:
    free(v);
    tsl_result_free(res);
    tsl_worker_free(w);
    return err;
}

/* ------------------------------------------------------------------------
 * tsl_policy_check
 * ---------------------------------------------------------------------- */

/* Compile messages read "name:LINE: text"; findings want "name:LINE: error: text". */
static void compile_finding(chk *c, const char *msg)
{
    size_t n = strlen(c->name);
    if (strncmp(msg, c->name, n) == 0 && msg[n] == ':') {
        const char *p = msg + n + 1;
        int line = atoi(p);
        while (*p >= '0' && *p <= '9')
            p++;
        if (line > 0 && *p == ':') {
            finding(c, 2, line, "%s", p + 1 + (p[1] == ' '));
            return;
        }
        msg += n + 1 + (msg[n + 1] == ' ');
    }
    finding(c, 2, 0, "%s", msg);
}

int tsl_policy_check(int *out_worst, tsl_buf *out, const char *src, size_t len,
                     const char *name, tsl_snapshot *snap, int64_t now)
{
    chk c;
    tsl_policy *pol = NULL;
    tsl_plan *plan = NULL;
    char hint[128];
    int err = 0;

    TSL_ARG(out_worst && out);
    *out_worst = 0;
    memset(&c, 0, sizeof c);
    c.out = out;
    c.name = name ? name : "policy";
    if (!now)
        now = (int64_t)time(NULL);

    err = tsl_policy_compile(&pol, src, len, c.name);
    if (err == TSL_EPOLICY) {
        compile_finding(&c, tsl_error_last());
        err = 0;
        goto summary;
    }
    if (err < 0)
        goto done;

    check_cycles(&c, pol);
    for (uint32_t i = 0; i < pol->nsites; i++)
        check_block_text(&c, &pol->sites[i]);
    for (uint32_t i = 0; i < pol->ngroups; i++)
        check_block_text(&c, &pol->groups[i]);

    if (snap) {
        for (uint32_t i = 0; i < pol->nsites; i++) {
            const pol_block *b = &pol->sites[i];
            if (policy_find_site(snap, b->name) < 0)
                finding(&c, 1, b->line, "site \"%s\" is not in the inventory, so this block "
                                        "applies to no client%s",
                        b->name, suggest_site(hint, sizeof hint, snap, b->name));
        }
        for (uint32_t i = 0; i < pol->ngroups; i++) {
            const pol_block *b = &pol->groups[i];
            if (!department_exists(snap, b->name))
                finding(&c, 1, b->line, "group \"%s\": no client in the inventory has this "
                                        "department",
                        b->name);
        }
        check_fallback_names(&c, snap, &pol->defaults);
        if (pol->has_unassigned) {
            const pol_block *u = &pol->unassigned;
            check_patterns(&c, snap, u, &u->allow, "allow");
            check_patterns(&c, snap, u, &u->order, "order");
            check_patterns(&c, snap, u, &u->deny, "deny");
            check_fallback_names(&c, snap, u);
        }
        for (int kind = 0; kind < 2; kind++) {
            uint32_t n = kind ? pol->ngroups : pol->nsites;
            for (uint32_t i = 0; i < n; i++) {
                const pol_block *b = kind ? &pol->groups[i] : &pol->sites[i];
                check_patterns(&c, snap, b, &b->allow, "allow");
                check_patterns(&c, snap, b, &b->order, "order");
                check_patterns(&c, snap, b, &b->deny, "deny");
                check_fallback_names(&c, snap, b);
            }
        }
        if ((err = tsl_plan_new(&plan, snap, pol)) < 0)
            goto done;
        check_blocking_sites(&c, snap, plan->bound, now);
        if ((err = check_sample(&c, plan, pol, now)) < 0 ||
            (err = check_every_client(&c, plan, now)) < 0)
            goto done;
    }

summary:
    if (c.err) {
        err = c.err;
        goto done;
    }
    if ((err = tsl_buf_printf(out, "%s: %d error(s), %d warning(s)%s\n", c.name, c.nerr, c.nwarn,
                              snap ? "" : " (text only: give an inventory to check names)")) < 0)
        goto done;
    *out_worst = c.worst;
done:
    tsl_plan_free(plan);
    tsl_policy_free(pol);
    return err;
}
