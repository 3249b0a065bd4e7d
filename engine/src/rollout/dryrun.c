/*
 * dryrun.c - the impact of a policy change on every client, before it
 * reaches one: decide each request with the plan in force and with the
 * candidate, compare (tsl_result_diff), and aggregate.
 *
 * Streaming by design: per request, two decisions into two reused results,
 * one comparison, a few counter increments; the complete diff goes out
 * through the caller's callback as it is found and is never held.  What
 * stays in memory is per site, per server, and the `top` most serious
 * changes, whatever the number of clients.
 *
 * Used by: `tsl dry-run`, rollout.c (records), embedders.
 * Needs: dryrun.h; the reports are in dryrun_report.c.
 */
#include "dryrun.h"
#include "progress.h"
#include "store.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------
 * Conditions
 * ---------------------------------------------------------------------- */

static const char *const cond_names[] = {"blocked", "cross-site", "over-capacity"};

int tsl_dryrun_cond_parse(unsigned *out, const char *list)
{
    unsigned bits = 0;
    const char *p = list;

    *out = 0;
    if (!list || !*list)
        return tsl_seterr(TSL_EINVALID, "an empty condition list (expected blocked, cross-site, "
                                        "over-capacity)");
    while (*p) {
        size_t n = strcspn(p, ",");
        size_t i;
        for (i = 0; i < sizeof cond_names / sizeof *cond_names; i++)
            if (n == strlen(cond_names[i]) && strncasecmp(p, cond_names[i], n) == 0)
                break;
        if (i == sizeof cond_names / sizeof *cond_names) {
            if (n == 3 && strncasecmp(p, "all", 3) == 0) {
                bits |= TSL_DRYRUN_ALL;
            } else {
                return tsl_seterr(TSL_EINVALID,
                                  "unknown condition \"%.*s\" (expected blocked, cross-site, "
                                  "over-capacity or all)",
                                  (int)n, p);
            }
        } else {
            bits |= 1u << i;
        }
        p += n;
        if (*p == ',')
            p++;
    }
    *out = bits;
    return 0;
}

void tsl_dryrun_cond_format(char *dst, size_t len, unsigned conds)
{
    size_t o = 0;
    if (!len)
        return;
    dst[0] = '\0';
    for (size_t i = 0; i < sizeof cond_names / sizeof *cond_names; i++) {
        if (!(conds & (1u << i)))
            continue;
        int n = snprintf(dst + o, len - o, "%s%s", o ? "," : "", cond_names[i]);
        if (n < 0 || (size_t)n >= len - o)
            return;
        o += (size_t)n;
    }
    if (!o)
        snprintf(dst, len, "none");
}

/* ------------------------------------------------------------------------
 * Life cycle
 * ---------------------------------------------------------------------- */

void tsl_dryrun_options_init(tsl_dryrun_options *opt)
{
    memset(opt, 0, sizeof *opt);
    opt->top = 20;
}

static char *dup_or_null(const char *s, int *err)
{
    char *d;
    if (!s)
        return NULL;
    if (!(d = strdup(s)))
        *err = tsl_oom();
    return d;
}

/* The two snapshots hold the same servers in the same order (server
 * indices are compared), and the same sites (per-site counts). */
static int check_same_layout(const tsl_snapshot *a, const tsl_snapshot *b)
{
    if (a == b)
        return 0;
    if (a->nservers != b->nservers || a->nsites != b->nsites)
        return tsl_seterr(TSL_EINVALID, "the two sides of a dry-run must decide over the same "
                                        "inventory (%u/%u servers, %u/%u sites)",
                          a->nservers, b->nservers, a->nsites, b->nsites);
    for (uint32_t i = 0; i < a->nservers; i++)
        if (strcasecmp(a->servers[i].name, b->servers[i].name) != 0)
            return tsl_seterr(TSL_EINVALID, "the two sides of a dry-run must decide over the "
                                            "same inventory (server %u: %s / %s)",
                              i, a->servers[i].name, b->servers[i].name);
    for (uint32_t i = 0; i < a->nsites; i++)
        if (strcasecmp(a->sites[i].name, b->sites[i].name) != 0)
            return tsl_seterr(TSL_EINVALID, "the two sides of a dry-run must decide over the "
                                            "same inventory (site %u: %s / %s)",
                              i, a->sites[i].name, b->sites[i].name);
    return 0;
}

static int emit(tsl_dryrun *dr, const tsl_buf *b)
{
    if (!dr->json || !b->len)
        return 0;
    return dr->json(dr->json_ud, b->ptr, b->len);
}

/* The head of the JSON document, up to the opening of "changes". */
static int emit_head(tsl_dryrun *dr)
{
    int err = 0;
    tsl_buf *b = &dr->chunk;
    tsl_buf_clear(b);
#define P(s) do { if ((err = tsl_buf_puts(b, (s))) < 0) goto done; } while (0)
#define S(s) do { if ((err = tsl_buf_json_str(b, (s))) < 0) goto done; } while (0)
    P("{\"before\":{\"label\":");
    S(dr->before_label);
    P(",\"policy\":");
    S(dr->before->policy ? tsl_policy_version(dr->before->policy) : NULL);
    if ((err = tsl_buf_printf(b, ",\"staged\":%s},\"after\":{\"label\":",
                              dr->before->stage ? "true" : "false")) < 0)
        goto done;
    S(dr->after_label);
    P(",\"policy\":");
    S(dr->after->policy ? tsl_policy_version(dr->after->policy) : NULL);
    if ((err = tsl_buf_printf(b, ",\"staged\":%s},\"population\":",
                              dr->after->stage ? "true" : "false")) < 0)
        goto done;
    S(dr->population);
    if ((err = tsl_buf_printf(b, ",\"now\":%lld,\n\"changes\":[", (long long)dr->now)) < 0)
        goto done;
#undef P
#undef S
    err = emit(dr, b);
done:
    return err;
}

int tsl_dryrun_new(tsl_dryrun **out, tsl_plan *before, tsl_plan *after,
                   const tsl_dryrun_options *opt)
{
    tsl_dryrun_options defaults;
    tsl_dryrun *dr = NULL;
    int err = 0;

    *out = NULL;
    TSL_ARG(before && after);
    if (!opt) {
        tsl_dryrun_options_init(&defaults);
        opt = &defaults;
    }
    if ((err = check_same_layout(before->snap, after->snap)) < 0)
        return err;
    if (!(dr = calloc(1, sizeof *dr)))
        return tsl_oom();
    dr->before = tsl_plan_ref(before);
    dr->after = tsl_plan_ref(after);
    dr->snap = before->snap;
    dr->now = opt->now ? opt->now : (int64_t)time(NULL);
    dr->top = opt->top;
    dr->json = opt->json;
    dr->json_ud = opt->json_ud;
    dr->before_label = dup_or_null(opt->before_label, &err);
    dr->after_label = dup_or_null(opt->after_label, &err);
    dr->population = dup_or_null(opt->population, &err);
    if (err < 0 || (opt->expect && (err = dryrun_expect_parse(dr, opt->expect)) < 0))
        goto done;
    if ((err = tsl_worker_new(&dr->wb)) < 0 || (err = tsl_worker_new(&dr->wa)) < 0 ||
        (err = tsl_result_new(&dr->rb)) < 0 || (err = tsl_result_new(&dr->ra)) < 0)
        goto done;
    if (!(dr->sites = calloc(dr->snap->nsites + 1, sizeof *dr->sites)) ||
        !(dr->servers = calloc(dr->snap->nservers + 1, sizeof *dr->servers)) ||
        (dr->top && !(dr->changes = calloc(dr->top, sizeof *dr->changes)))) {
        err = tsl_oom();
        goto done;
    }
    if ((err = emit_head(dr)) < 0)
        goto done;
    *out = dr;
    dr = NULL;
done:
    tsl_dryrun_free(dr);
    return err;
}

void tsl_dryrun_free(tsl_dryrun *dr)
{
    if (!dr)
        return;
    tsl_plan_free(dr->before);
    tsl_plan_free(dr->after);
    tsl_worker_free(dr->wb);
    tsl_worker_free(dr->wa);
    tsl_result_free(dr->rb);
    tsl_result_free(dr->ra);
    free(dr->before_label);
    free(dr->after_label);
    free(dr->population);
    free(dr->expect);
    free(dr->expect_text);
    free(dr->verdict);
    tsl_buf_free(&dr->chunk);
    free(dr->sites);
    free(dr->servers);
    free(dr->changes);
    free(dr);
}

/* ------------------------------------------------------------------------
 * One request
 * ---------------------------------------------------------------------- */

static int severity_of(unsigned d)
{
    if (d & TSL_DIFF_BLOCKED)
        return 5;
    if (d & TSL_DIFF_CROSS_COUNTRY)
        return 4;
    if (d & TSL_DIFF_CROSS_SITE)
        return 3;
    if (d & (TSL_DIFF_FIRST | TSL_DIFF_UNBLOCKED))
        return 2;
    return 1;
}

static void side_keep(dr_side *s, const tsl_result *r)
{
    memset(s, 0, sizeof *s);
    s->n = r->n;
    for (uint32_t i = 0; i < r->n && i < DRYRUN_KEEP_ENTRIES; i++) {
        s->servers[i] = r->servers[i];
        s->tiers[i] = r->entries[i].tier;
        s->reasons[i] = r->entries[i].reason;
    }
    s->blocked_reason = r->blocked_reason;
    s->policy = r->policy;
}

/* Where a change of severity sev found at seq goes among the `top` kept
 * (the most serious, earlier first), or NULL if it is not kept: a free
 * slot, or the least serious, latest kept one if this one ranks before it. */
static dr_change *change_slot(tsl_dryrun *dr, int sev, uint64_t seq)
{
    if (dr->nchanges < dr->top)
        return &dr->changes[dr->nchanges++];
    dr_change *worst = NULL;
    for (uint32_t i = 0; i < dr->nchanges; i++) {
        dr_change *c = &dr->changes[i];
        if (!worst || c->severity < worst->severity ||
            (c->severity == worst->severity && c->seq > worst->seq))
            worst = c;
    }
    if (!worst || worst->severity > sev || (worst->severity == sev && worst->seq < seq))
        return NULL;
    return worst;
}

/* Keeps the change if it is among the `top` most serious (earlier wins ties). */
static void keep_change(tsl_dryrun *dr, const tsl_request *req, int32_t client, unsigned d)
{
    int sev = severity_of(d);
    dr_change *slot = change_slot(dr, sev, dr->seq);
    if (!slot)
        return;
    memset(slot, 0, sizeof *slot);
    slot->seq = dr->seq;
    slot->client = client;
    snprintf(slot->guid, sizeof slot->guid, "%s", req->client ? req->client : "");
    snprintf(slot->ip, sizeof slot->ip, "%s",
             req->nips ? req->ips[0] : client >= 0 && dr->snap->clients[client].ip
                                           ? dr->snap->clients[client].ip
                                           : "");
    slot->site = dr->ra->site;
    slot->kinds = d;
    slot->severity = sev;
    side_keep(&slot->before, dr->rb);
    side_keep(&slot->after, dr->ra);
}

static int json_list(tsl_buf *b, const tsl_result *r)
{
    int err;
    if ((err = tsl_buf_printf(b, "{\"blocked\":%s,\"blocked_reason\":",
                              r->n == 0 ? "true" : "false")) < 0 ||
        (err = tsl_buf_json_str(b, r->n == 0 ? (r->blocked_reason ? r->blocked_reason
                                                                  : "no available Task Server")
                                             : NULL)) < 0 ||
        (err = tsl_buf_puts(b, ",\"policy\":")) < 0 ||
        (err = tsl_buf_json_str(b, r->policy)) < 0 ||
        (err = tsl_buf_printf(b, ",\"strict\":%s,\"servers\":[", r->strict ? "true" : "false")) < 0)
        return err;
    for (uint32_t i = 0; i < r->n; i++) {
        const tsl_entry *e = &r->entries[i];
        if ((err = tsl_buf_puts(b, i ? ",{\"name\":" : "{\"name\":")) < 0 ||
            (err = tsl_buf_json_str(b, e->name)) < 0 ||
            (err = tsl_buf_puts(b, ",\"site\":")) < 0 ||
            (err = tsl_buf_json_str(b, e->site)) < 0 ||
            (err = tsl_buf_printf(b, ",\"tier\":%d,\"after\":%d,\"reason\":", e->tier,
                                  e->after)) < 0 ||
            (err = tsl_buf_json_str(b, e->reason)) < 0 || (err = tsl_buf_puts(b, "}")) < 0)
            return err;
    }
    return tsl_buf_puts(b, "]}");
}

static int emit_change(tsl_dryrun *dr, const tsl_request *req, int32_t client, unsigned d)
{
    tsl_buf *b = &dr->chunk;
    const snap_client *c = client >= 0 ? &dr->snap->clients[client] : NULL;
    int err;

    tsl_buf_clear(b);
    if ((err = tsl_buf_puts(b, dr->emitted ? ",\n{\"client\":" : "\n{\"client\":")) < 0 ||
        (err = tsl_buf_json_str(b, req->client)) < 0 ||
        (err = tsl_buf_puts(b, ",\"name\":")) < 0 ||
        (err = tsl_buf_json_str(b, c ? c->name : NULL)) < 0 ||
        (err = tsl_buf_puts(b, ",\"ip\":")) < 0 ||
        (err = tsl_buf_json_str(b, req->nips ? req->ips[0] : c ? c->ip : NULL)) < 0 ||
        (err = tsl_buf_puts(b, ",\"department\":")) < 0 ||
        (err = tsl_buf_json_str(b, req->department ? req->department
                                                   : c ? c->department : NULL)) < 0 ||
        (err = tsl_buf_puts(b, ",\"task\":")) < 0 ||
        (err = tsl_buf_json_str(b, req->task)) < 0 ||
        (err = tsl_buf_puts(b, ",\"site\":")) < 0 ||
        (err = tsl_buf_json_str(b, dr->ra->site_name)) < 0 ||
        (err = tsl_buf_puts(b, ",\"kinds\":[\"")) < 0 ||
        (err = diff_kinds_text(b, d, "\",\"")) < 0 ||
        (err = tsl_buf_puts(b, "\"],\"before\":")) < 0 || (err = json_list(b, dr->rb)) < 0 ||
        (err = tsl_buf_puts(b, ",\"after\":")) < 0 || (err = json_list(b, dr->ra)) < 0 ||
        (err = tsl_buf_puts(b, "}")) < 0)
        return err;
    dr->emitted++;
    return emit(dr, b);
}

/* Decides one side; 1 when the request cannot be decided (counted, not fatal). */
static int decide_side(tsl_result *res, tsl_worker *w, const tsl_plan *plan,
                       const tsl_request *req)
{
    int err = tsl_decide(res, w, plan, req, NULL);
    if (err == TSL_EINVALID || err == TSL_EPOLICY || err == TSL_ETIMEOUT || err == TSL_ELIMIT)
        return 1;
    return err;
}

static int add_one(tsl_dryrun *dr, const tsl_request *req, int32_t client)
{
    tsl_dryrun_summary *s = &dr->sum;
    int eb, ea;

    if (dr->finished)
        return tsl_seterr(TSL_EINVALID, "the dry-run is finished");
    if ((eb = decide_side(dr->rb, dr->wb, dr->before, req)) < 0)
        return eb;
    if ((ea = decide_side(dr->ra, dr->wa, dr->after, req)) < 0)
        return ea;
    if (eb || ea) {
        s->errors++;
        return 0;
    }
    dr->seq++;
    s->requests++;
    if (client < 0 && req->client)
        client = snap_find_client(dr->snap, req->client);

    const tsl_result *rb = dr->rb, *ra = dr->ra;
    uint32_t ns = dr->snap->nservers;
    dr_site_count *sc = &dr->sites[ra->site == TSL_NO_SITE ? dr->snap->nsites : (uint32_t)ra->site];
    unsigned cb = diff_cross(dr->snap, rb), ca = diff_cross(dr->snap, ra);

    sc->requests++;
    dr->servers[rb->n ? rb->servers[0] : ns].before++;
    dr->servers[ra->n ? ra->servers[0] : ns].after++;
    if (!rb->n) {
        s->blocked_before++;
        sc->blocked_before++;
    }
    if (!ra->n) {
        s->blocked_after++;
        sc->blocked_after++;
    }
    if (cb) {
        s->cross_site_before++;
        sc->cross_before++;
    }
    if (ca) {
        s->cross_site_after++;
        sc->cross_after++;
    }
    if (cb & 2)
        s->cross_country_before++;
    if (ca & 2)
        s->cross_country_after++;

    unsigned d = tsl_result_diff(dr->snap, rb, ra);
    if (!d)
        return 0;
    s->list_changed++;
    sc->list++;
    if (d & TSL_DIFF_FIRST) {
        s->first_changed++;
        sc->first++;
    }
    if (d & TSL_DIFF_BLOCKED)
        s->newly_blocked++;
    if (d & TSL_DIFF_UNBLOCKED)
        s->unblocked++;
    if (d & TSL_DIFF_CROSS_SITE)
        s->newly_cross_site++;
    if (d & TSL_DIFF_CROSS_COUNTRY)
        s->newly_cross_country++;
    if (d & TSL_DIFF_BACK_IN_SITE)
        s->back_in_site++;
    keep_change(dr, req, client, d);
    return dr->json ? emit_change(dr, req, client, d) : 0;
}

int tsl_dryrun_add(tsl_dryrun *dr, const tsl_request *req)
{
    TSL_ARG(dr && req);
    return add_one(dr, req, -1);
}

/* ------------------------------------------------------------------------
 * The inventory on every core.  Without a JSON stream (whose changes must
 * come out in inventory order), the clients are cut into contiguous lanes,
 * one a core: lane 0 on the calling thread, each other on its own thread
 * with its own dry-run (a worker and so a Lua state per side, results,
 * counts, top changes) over the same plans, which are read-only.  Lanes
 * are then merged in inventory order: counts add up, and each lane's
 * change order numbers are shifted by the requests of the lanes before
 * it, so the kept changes (the most serious, earliest first) are those a
 * single pass keeps.
 * ---------------------------------------------------------------------- */

#define DRYRUN_MAX_LANES 8
#define DRYRUN_LANE_MIN 20000 /* fewer clients a lane cost more in threads */

typedef struct dr_lane {
    tsl_dryrun *dr;    /* lane 0: the caller's; others their own */
    uint32_t lo, hi;   /* clients [lo, hi) */
    int err;
    char msg[512];     /* tsl_error_last() of the lane's thread */
    pthread_t thread;
    bool started;
} dr_lane;

static int add_range(dr_lane *l, bool ticks)
{
    tsl_dryrun *dr = l->dr;
    uint32_t n = dr->snap->nclients, span = l->hi - l->lo;
    int err = 0;
    for (uint32_t i = l->lo; i < l->hi && err == 0; i++) {
        tsl_request req;
        if (ticks) /* lane 0 speaks for all: they move at the same pace */
            tsl_progress_tick("clients", (uint64_t)(i - l->lo) * n / (span ? span : 1), n);
        if ((err = tsl_snapshot_client_request(&req, dr->snap, i)) < 0)
            break;
        req.now = dr->now;
        err = add_one(dr, &req, (int32_t)i);
    }
    if (err < 0)
        snprintf(l->msg, sizeof l->msg, "%s", tsl_error_last());
    return l->err = err;
}

static void *lane_main(void *arg)
{
    add_range(arg, false);
    return NULL;
}

/* A dry-run for one lane: same plans, options and snapshot, its own state. */
static int lane_new(tsl_dryrun **out, const tsl_dryrun *dr)
{
    tsl_dryrun *l = calloc(1, sizeof *l);
    int err;
    *out = NULL;
    if (!l)
        return tsl_oom();
    l->before = tsl_plan_ref(dr->before);
    l->after = tsl_plan_ref(dr->after);
    l->snap = dr->snap;
    l->now = dr->now;
    l->top = dr->top;
    if ((err = tsl_worker_new(&l->wb)) < 0 || (err = tsl_worker_new(&l->wa)) < 0 ||
        (err = tsl_result_new(&l->rb)) < 0 || (err = tsl_result_new(&l->ra)) < 0)
        goto done;
    if (!(l->sites = calloc(l->snap->nsites + 1, sizeof *l->sites)) ||
        !(l->servers = calloc(l->snap->nservers + 1, sizeof *l->servers)) ||
        (l->top && !(l->changes = calloc(l->top, sizeof *l->changes)))) {
        err = tsl_oom();
        goto done;
    }
    *out = l;
    l = NULL;
done:
    tsl_dryrun_free(l);
    return err;
}

/* Adds lane l (all of whose requests came after dr's) into dr. */
static void lane_merge(tsl_dryrun *dr, const tsl_dryrun *l)
{
    tsl_dryrun_summary *s = &dr->sum;
    const tsl_dryrun_summary *t = &l->sum;
#define ADD(f) s->f += t->f
    ADD(requests);
    ADD(errors);
    ADD(first_changed);
    ADD(list_changed);
    ADD(blocked_before);
    ADD(blocked_after);
    ADD(newly_blocked);
    ADD(unblocked);
    ADD(cross_site_before);
    ADD(cross_site_after);
    ADD(newly_cross_site);
    ADD(back_in_site);
    ADD(cross_country_before);
    ADD(cross_country_after);
    ADD(newly_cross_country);
#undef ADD
    for (uint32_t i = 0; i <= dr->snap->nsites; i++) {
        dr_site_count *a = &dr->sites[i];
        const dr_site_count *b = &l->sites[i];
        a->requests += b->requests;
        a->first += b->first;
        a->list += b->list;
        a->blocked_before += b->blocked_before;
        a->blocked_after += b->blocked_after;
        a->cross_before += b->cross_before;
        a->cross_after += b->cross_after;
    }
    for (uint32_t i = 0; i <= dr->snap->nservers; i++) {
        dr->servers[i].before += l->servers[i].before;
        dr->servers[i].after += l->servers[i].after;
    }
    dr->lane_policy_errors_before += tsl_worker_policy_errors(l->wb);
    dr->lane_policy_errors_after += tsl_worker_policy_errors(l->wa);
    /* keep_change's rule, offered in the order a single pass meets them */
    for (uint32_t i = 0; i < l->nchanges; i++) {
        dr_change c = l->changes[i];
        c.seq += dr->seq;
        dr_change *slot = change_slot(dr, c.severity, c.seq);
        if (slot)
            *slot = c;
    }
    dr->seq += l->seq;
}

static int lanes_for(const tsl_dryrun *dr)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    uint32_t by_size = dr->snap->nclients / DRYRUN_LANE_MIN;
    int n = cpus < 1 ? 1 : cpus > DRYRUN_MAX_LANES ? DRYRUN_MAX_LANES : (int)cpus;
    if (dr->json || dr->finished)
        return 1;
    if (dr->lanes > 0)
        return dr->lanes < DRYRUN_MAX_LANES ? dr->lanes : DRYRUN_MAX_LANES;
    return by_size < (uint32_t)n ? (by_size ? (int)by_size : 1) : n;
}

int tsl_dryrun_add_inventory(tsl_dryrun *dr)
{
    dr_lane lanes[DRYRUN_MAX_LANES];
    int err = 0, nlanes;
    TSL_ARG(dr);
    uint32_t n = dr->snap->nclients;
    nlanes = lanes_for(dr);
    memset(lanes, 0, sizeof lanes);
    for (int i = 0; i < nlanes; i++) {
        lanes[i].lo = (uint32_t)((uint64_t)n * (uint64_t)i / (uint64_t)nlanes);
        lanes[i].hi = (uint32_t)((uint64_t)n * (uint64_t)(i + 1) / (uint64_t)nlanes);
    }
    lanes[0].dr = dr;
    for (int i = 1; i < nlanes && err == 0; i++) {
        if ((err = lane_new(&lanes[i].dr, dr)) < 0)
            break;
        if (pthread_create(&lanes[i].thread, NULL, lane_main, &lanes[i]) != 0)
            err = tsl_seterr(TSL_ERROR, "cannot start a dry-run thread");
        else
            lanes[i].started = true;
    }
    if (err == 0)
        err = add_range(&lanes[0], true);
    for (int i = 1; i < nlanes; i++) {
        if (lanes[i].started)
            pthread_join(lanes[i].thread, NULL);
        if (err == 0 && lanes[i].err < 0)
            err = tsl_seterr(lanes[i].err, "%s", lanes[i].msg);
        if (err == 0)
            lane_merge(dr, lanes[i].dr);
        tsl_dryrun_free(lanes[i].dr);
    }
    tsl_progress_tick("clients", n, n);
    return err;
}

/* Splits "10.1.2.3, fd00::1" (the log's adapters) into req->ips, in place. */
static void split_ips(tsl_request *req, char *text)
{
    char *save = NULL;
    req->nips = 0;
    for (char *t = strtok_r(text, ", ;", &save); t && req->nips < TSL_MAX_IPS;
         t = strtok_r(NULL, ", ;", &save))
        req->ips[req->nips++] = t;
}

/* The list requests the broker logged (schema/003_broker.sql: a ring of
 * rows, newest = highest seq), newest first; `ips` is a JSON array of the
 * adapters, flattened here to "ip1,ip2". */
#define RECORDED_SQL                                                           \
    "SELECT d.client, (SELECT group_concat(j.value, ',') FROM json_each(d.ips) j),"\
    " d.department, d.task FROM decision_log d ORDER BY d.seq DESC LIMIT ?1"

int tsl_dryrun_add_recorded(tsl_dryrun *dr, tsl_store *st, uint64_t limit)
{
    sqlite3_stmt *q;
    char *ips = NULL, *client = NULL, *dept = NULL, *task = NULL;
    int err = 0, rc;

    TSL_ARG(dr && st);
    /* run once per dry-run: prepared here, not cached (the broker's table) */
    if (sqlite3_prepare_v2(tsl_store_db(st), RECORDED_SQL, -1, &q, NULL) != SQLITE_OK) {
        err = tsl_seterr(TSL_ESTORE, "the store has no broker decision log to replay (%s)",
                         sqlite3_errmsg(tsl_store_db(st)));
        sqlite3_finalize(q);
        return err;
    }
    sqlite3_bind_int64(q, 1, limit ? (int64_t)(limit > INT64_MAX ? INT64_MAX : limit) : -1);
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        tsl_request req;
        memset(&req, 0, sizeof req);
        free(ips);
        free(client);
        free(dept);
        free(task);
        ips = client = dept = task = NULL;
        /* copies: the row's text goes away at the next step */
        const unsigned char *c0 = sqlite3_column_text(q, 0), *c1 = sqlite3_column_text(q, 1),
                            *c2 = sqlite3_column_text(q, 2), *c3 = sqlite3_column_text(q, 3);
        if ((c0 && !(client = strdup((const char *)c0))) ||
            (c1 && !(ips = strdup((const char *)c1))) || (c2 && !(dept = strdup((const char *)c2))) ||
            (c3 && !(task = strdup((const char *)c3)))) {
            err = tsl_oom();
            break;
        }
        req.client = client && *client ? client : NULL;
        req.department = dept && *dept ? dept : NULL;
        req.task = task && *task ? task : NULL;
        if (ips)
            split_ips(&req, ips);
        req.now = dr->now;
        if ((err = add_one(dr, &req, -1)) < 0)
            break;
    }
    if (err == 0 && rc != SQLITE_DONE)
        err = tsl_store_err(st, "reading the decision log");
    sqlite3_finalize(q);
    free(ips);
    free(client);
    free(dept);
    free(task);
    return err;
}

/* ------------------------------------------------------------------------
 * The end
 * ---------------------------------------------------------------------- */

int tsl_dryrun_finish(tsl_dryrun *dr)
{
    tsl_dryrun_summary *s = &dr->sum;
    int err = 0;

    TSL_ARG(dr);
    if (dr->finished)
        return 0;
    dr->finished = true;
    for (uint32_t i = 0; i < dr->snap->nservers; i++) {
        const snap_server *sv = &dr->snap->servers[i];
        const dr_server_count *c = &dr->servers[i];
        bool ob = dryrun_over(sv, c->before), oa = dryrun_over(sv, c->after);
        s->over_capacity_before += ob;
        s->over_capacity_after += oa;
        if (oa && c->after > c->before)
            s->newly_over_capacity++;
    }
    s->policy_errors_before = tsl_worker_policy_errors(dr->wb) + dr->lane_policy_errors_before;
    s->policy_errors_after = tsl_worker_policy_errors(dr->wa) + dr->lane_policy_errors_after;
    s->conditions = 0;
    if (s->newly_blocked)
        s->conditions |= TSL_DRYRUN_BLOCKED;
    if (s->newly_cross_site)
        s->conditions |= TSL_DRYRUN_CROSS_SITE;
    if (s->newly_over_capacity)
        s->conditions |= TSL_DRYRUN_OVER_CAPACITY;
    if ((err = dryrun_expect_judge(dr)) < 0)
        return err;

    if (dr->json) {
        tsl_buf *b = &dr->chunk;
        tsl_buf_clear(b);
        if ((err = tsl_buf_puts(b, dr->emitted ? "\n],\n\"summary\":" : "],\n\"summary\":")) < 0 ||
            (err = tsl_dryrun_summary_json(b, dr)) < 0 ||
            (err = dryrun_json_tables(b, dr)) < 0 || (err = tsl_buf_puts(b, "}\n")) < 0)
            return err;
        err = emit(dr, b);
    }
    return err;
}

void tsl_dryrun_summary_get(const tsl_dryrun *dr, tsl_dryrun_summary *out)
{
    *out = dr->sum;
}
