/*
 * decide.c - tsl_decide() and the default dynamic logic, rule by rule, as
 * ITMS builds the Task Server list today:
 *
 *   1. the client's site: explicit, else the longest subnet prefix over all
 *      its adapter IPs (ties to the earlier adapter), else none;
 *   2. candidates: servers assigned to the site, or unassigned servers whose
 *      own IP lies in it (derived once when the snapshot is sealed);
 *   3. availability: registered, running, heartbeat not stale;
 *   4. ranking by the selection mode, recent connection errors last, ties by
 *      a (client, server) hash;
 *   5. fallback to every available server when the site has none;
 *   6. at most `max` entries.
 *
 * The hot path allocates nothing once the worker's scratch space has grown
 * to the estate's size.  A plan with a policy hands over to the policy
 * layer after rule 1 (policy_decide); a staged plan first picks the
 * sub-plan of the client's site (plan_stage_pick, rollout_plan.c).
 */
#include "decide.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ------------------------------------------------------------------------
 * Availability and errors (rules 3 and 4)
 * ---------------------------------------------------------------------- */

bool decide_available(const decide_ctx *ctx, uint32_t server)
{
    return snap_server_available(ctx->snap, &ctx->snap->servers[server], ctx->now);
}

const char *decide_unavailable_why(const decide_ctx *ctx, uint32_t server, char *buf, size_t len)
{
    const snap_server *sv = &ctx->snap->servers[server];
    if (!sv->registered)
        return "not registered with the SMP";
    if (!sv->running)
        return "Task Server service stopped";
    int64_t age = snap_heartbeat_age(ctx->snap, sv, ctx->now);
    if (age > ctx->snap->settings.stale_after) {
        snprintf(buf, len, "last heartbeat %lld s ago (stale after %lld s)", (long long)age,
                 (long long)ctx->snap->settings.stale_after);
        return buf;
    }
    return NULL;
}

int64_t decide_down_since(const decide_ctx *ctx, uint32_t server)
{
    const tsl_snapshot *s = ctx->snap;
    const snap_server *sv = &s->servers[server];
    int64_t since = INT64_MAX;
    if (!sv->registered || !sv->running)
        since = sv->down_since ? sv->down_since : sv->heartbeat;
    /* stale: silent since its last heartbeat (or since the broker could hear it) */
    if (sv->heartbeat && snap_heartbeat_age(s, sv, ctx->now) > s->settings.stale_after) {
        int64_t last = sv->heartbeat < s->settings.heard_since ? s->settings.heard_since
                                                               : sv->heartbeat;
        if (last < since)
            since = last;
    }
    return since == INT64_MAX ? 0 : since;
}

bool decide_recent_error(const decide_ctx *ctx, uint32_t server)
{
    for (uint32_t i = 0; i < ctx->ndemoted; i++)
        if (ctx->demoted[i] == server)
            return true;
    return false;
}

/* ------------------------------------------------------------------------
 * Scratch space and "seen" marks
 * ---------------------------------------------------------------------- */

uint32_t *decide_scratch(tsl_worker *w, int which, uint32_t n)
{
    /* An estate with no servers still gets a (non-NULL) array. */
    if (n > w->scratch_cap[which] || !w->scratch[which]) {
        uint32_t cap = n < 256 ? 256 : n;
        uint32_t *p = realloc(w->scratch[which], (size_t)cap * sizeof *p);
        if (!p)
            return NULL;
        w->scratch[which] = p;
        w->scratch_cap[which] = cap;
    }
    return w->scratch[which];
}

int decide_seen_reset(tsl_worker *w, uint32_t nservers)
{
    if (nservers > w->seen_cap) {
        uint32_t *p = calloc(nservers, sizeof *p);
        if (!p)
            return tsl_oom();
        free(w->seen);
        w->seen = p;
        w->seen_cap = nservers;
        w->seen_gen = 0;
    }
    if (++w->seen_gen == 0) { /* wrapped: clear so old marks cannot match */
        memset(w->seen, 0, (size_t)w->seen_cap * sizeof *w->seen);
        w->seen_gen = 1;
    }
    return 0;
}

bool decide_seen_add(tsl_worker *w, uint32_t server)
{
    if (w->seen[server] == w->seen_gen)
        return false;
    w->seen[server] = w->seen_gen;
    return true;
}

bool decide_seen_has(const tsl_worker *w, uint32_t server)
{
    return w->seen[server] == w->seen_gen;
}

/* ------------------------------------------------------------------------
 * Ranking (rule 4)
 * ---------------------------------------------------------------------- */

typedef struct rank_item {
    double key;       /* lower ranks first */
    uint64_t tie;     /* (client, server) hash */
    uint32_t server;
    uint8_t demoted;  /* recent connection error: after all others */
} rank_item;

static bool rank_before(const rank_item *a, const rank_item *b)
{
    if (a->demoted != b->demoted)
        return a->demoted < b->demoted;
    if (a->key != b->key)
        return a->key < b->key;
    if (a->tie != b->tie)
        return a->tie < b->tie;
    return a->server < b->server;
}

static int rank_cmp(const void *pa, const void *pb)
{
    const rank_item *a = pa, *b = pb;
    return rank_before(a, b) ? -1 : rank_before(b, a) ? 1 : 0;
}

uint32_t decide_rank(tsl_worker *w, const decide_ctx *ctx, tsl_selection sel,
                     const uint32_t *in, uint32_t n, uint32_t *out, uint32_t k)
{
    if (k > n)
        k = n;
    if (k == 0)
        return 0;
    if (n > w->items_cap) {
        uint32_t cap = n < 256 ? 256 : n;
        rank_item *p = realloc(w->items, (size_t)cap * sizeof *p);
        if (!p)
            return 0;
        w->items = p;
        w->items_cap = cap;
    }

    rank_item *items = w->items;
    uint32_t kept = 0;
    bool sort_all = n > 64 && k * 4 >= n;
    for (uint32_t i = 0; i < n; i++) {
        const snap_server *sv = &ctx->snap->servers[in[i]];
        rank_item it = {snap_rank_key(sv, sel), tsl_hash_mix(ctx->client_hash, sv->hash), in[i],
                        (uint8_t)decide_recent_error(ctx, in[i])};
        if (sort_all) {
            items[kept++] = it;
            continue;
        }
        /* keep the best k in order: insertion into a short sorted prefix */
        if (kept == k && !rank_before(&it, &items[k - 1]))
            continue;
        uint32_t pos = kept < k ? kept++ : k - 1;
        while (pos > 0 && rank_before(&it, &items[pos - 1])) {
            items[pos] = items[pos - 1];
            pos--;
        }
        items[pos] = it;
    }
    if (sort_all)
        qsort(items, kept, sizeof *items, rank_cmp);
    for (uint32_t i = 0; i < k; i++)
        out[i] = items[i].server;
    return k;
}

double decide_rank_key(const tsl_snapshot *snap, tsl_selection sel, uint32_t server)
{
    return snap_rank_key(&snap->servers[server], sel);
}

void decide_rank_key_text(const decide_ctx *ctx, tsl_selection sel, uint32_t server, char *buf,
                          size_t len)
{
    const snap_server *sv = &ctx->snap->servers[server];
    const char *err = decide_recent_error(ctx, server) ? ", recent connection error: ranked last" : "";
    switch (sel) {
    case TSL_SELECT_RESPONSIVENESS:
        snprintf(buf, len, "response %lld ms%s", (long long)sv->response_ms, err);
        break;
    case TSL_SELECT_CONNECTIONS:
        snprintf(buf, len, "%lld connections%s", (long long)sv->connections, err);
        break;
    case TSL_SELECT_CAPACITY:
    default:
        snprintf(buf, len, "free %.1f%% (%lld/%lld connections)%s",
                 sv->capacity > 0 ? 100.0 * (double)(sv->capacity - sv->connections) /
                                        (double)sv->capacity
                                  : 0.0,
                 (long long)sv->connections, (long long)sv->capacity, err);
        break;
    }
}

/* ------------------------------------------------------------------------
 * The request context (rule 1)
 * ---------------------------------------------------------------------- */

static void resolve_site(decide_ctx *ctx, tsl_result *res, tsl_trace *tr)
{
    const tsl_snapshot *s = ctx->snap;
    char ipbuf[64], pfx[64];

    if (ctx->client >= 0 && s->clients[ctx->client].site != TSL_NO_SITE) {
        ctx->site = s->clients[ctx->client].site;
        snprintf(res->site_source, sizeof res->site_source, "explicit");
        trace_addf(tr, "site: \"%s\", the client's explicit site assignment", s->sites[ctx->site].name);
        return;
    }

    tsl_lpm_match best = {TSL_NO_SITE, -1, {{0}}};
    size_t best_adapter = 0;
    for (size_t i = 0; i < ctx->nips; i++) {
        tsl_lpm_match m;
        bool hit = tsl_lpm_lookup(&s->lpm, &ctx->ips[i], &m);
        if (tr) {
            tsl_ip_format(ipbuf, sizeof ipbuf, &ctx->ips[i]);
            if (hit) {
                tsl_ip_format(pfx, sizeof pfx, &m.prefix);
                bool v4 = m.bits >= 96 && memcmp(m.prefix.b, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0;
                trace_addf(tr, "adapter %zu %s: longest matching subnet %s/%d of site \"%s\"", i + 1,
                           ipbuf, pfx, v4 ? m.bits - 96 : m.bits, s->sites[m.value].name);
            } else {
                trace_addf(tr, "adapter %zu %s: in no site subnet", i + 1, ipbuf);
            }
        }
        /* strictly longer wins, so ties go to the earlier adapter */
        if (hit && m.bits > best.bits) {
            best = m;
            best_adapter = i;
        }
    }
    if (best.bits < 0) {
        ctx->site = TSL_NO_SITE;
        snprintf(res->site_source, sizeof res->site_source, "none");
        trace_addf(tr, "site: none (no explicit site and no adapter IP in a site subnet)");
        return;
    }
    ctx->site = best.value;
    tsl_ip_format(pfx, sizeof pfx, &best.prefix);
    bool v4 = best.bits >= 96 && memcmp(best.prefix.b, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0;
    snprintf(res->site_source, sizeof res->site_source, "subnet %s/%d (adapter %zu)", pfx,
             v4 ? best.bits - 96 : best.bits, best_adapter + 1);
    trace_addf(tr, "site: \"%s\" by the longest prefix over all adapters: %s", s->sites[ctx->site].name,
               res->site_source);
}

static void consider_error(decide_ctx *ctx, uint32_t server, int64_t at, tsl_trace *tr)
{
    const tsl_snapshot *s = ctx->snap;
    if (ctx->now - at > s->settings.error_window || at > ctx->now)
        return;
    if (decide_recent_error(ctx, server) || ctx->ndemoted == DECIDE_MAX_DEMOTED)
        return;
    ctx->demoted[ctx->ndemoted++] = server;
    trace_addf(tr, "connection error with %s %lld s ago (inside the %lld s error window): "
                   "it ranks after all others",
               s->servers[server].name, (long long)(ctx->now - at),
               (long long)s->settings.error_window);
}

static void collect_errors(decide_ctx *ctx, tsl_trace *tr)
{
    const tsl_snapshot *s = ctx->snap;
    ctx->ndemoted = 0;
    if (ctx->client < 0)
        return;
    const snap_client *c = &s->clients[ctx->client];
    for (uint32_t i = 0; i < c->nerr; i++)
        consider_error(ctx, s->errors[c->err_off + i].server, s->errors[c->err_off + i].at, tr);
    /* errors reported since the snapshot's root was loaded (the broker) */
    uint32_t nx;
    const snap_extra_error *x = snap_client_extra_errors(s, (uint32_t)ctx->client, &nx);
    for (uint32_t i = 0; i < nx; i++)
        consider_error(ctx, x[i].server, x[i].at, tr);
}

int decide_context(decide_ctx *ctx, tsl_worker *w, const tsl_plan *plan, const tsl_request *req,
                   tsl_trace *tr)
{
    const tsl_snapshot *s = plan->snap;
    (void)w;

    memset(ctx, 0, sizeof *ctx);
    ctx->snap = s;
    ctx->req = req;
    ctx->now = req->now ? req->now : (int64_t)time(NULL);
    ctx->client = req->client ? snap_find_client(s, req->client) : -1;
    ctx->task = req->task && *req->task ? req->task : NULL;
    ctx->selection = s->settings.selection;
    ctx->max = s->settings.max;
    ctx->ttl = s->settings.ttl;

    if (req->nips > TSL_MAX_IPS)
        return tsl_seterr(TSL_EINVALID, "too many IP addresses (%zu, at most %d adapters)",
                          req->nips, TSL_MAX_IPS);
    for (size_t i = 0; i < req->nips; i++) {
        if (tsl_ip_parse(&ctx->ips[i], req->ips[i]) < 0)
            return tsl_seterr(TSL_EINVALID, "ip #%zu: %s", i + 1, tsl_error_last());
    }
    ctx->nips = req->nips;
    if (ctx->nips == 0 && ctx->client >= 0 && s->clients[ctx->client].has_addr) {
        ctx->ips[0] = s->clients[ctx->client].addr;
        ctx->nips = 1;
        trace_addf(tr, "no IP in the request: using the inventory IP %s", s->clients[ctx->client].ip);
    }
    if (ctx->nips == 0 && ctx->client < 0) {
        if (req->client)
            return tsl_seterr(TSL_EINVALID,
                              "client \"%s\" is not in the inventory and the request has no IP",
                              req->client);
        return tsl_seterr(TSL_EINVALID, "a request needs an IP address or a known client");
    }

    /* A request cannot loosen a policy: a client the inventory knows has the
     * inventory's department, whatever the request says (anyone can send
     * one); the request's counts only for a client the inventory lacks. */
    if (ctx->client >= 0) {
        const char *inv = s->clients[ctx->client].department;
        ctx->department = inv;
        if (req->department && *req->department &&
            (!inv || strcasecmp(inv, req->department) != 0))
            ctx->department_ignored = req->department;
    } else if (req->department && *req->department) {
        ctx->department = req->department;
    }

    if (req->client) {
        ctx->client_hash = tsl_hash_str(ctx->client >= 0 ? s->clients[ctx->client].guid : req->client);
    } else { /* an unknown client is identified by its first adapter */
        uint64_t hi, lo;
        memcpy(&hi, ctx->ips[0].b, 8);
        memcpy(&lo, ctx->ips[0].b + 8, 8);
        ctx->client_hash = tsl_hash_mix(hi, lo);
    }

    if (tr) {
        if (req->client)
            trace_addf(tr, "client %s: %s", req->client,
                       ctx->client >= 0 ? "found in the inventory" : "not in the inventory");
        if (ctx->department_ignored)
            trace_addf(tr, "the request's department \"%s\" is ignored: the inventory knows "
                           "this client (department %s)",
                       ctx->department_ignored,
                       ctx->department ? ctx->department : "none");
        if (ctx->department)
            trace_addf(tr, "department: %s", ctx->department);
        if (ctx->task)
            trace_addf(tr, "task: %s", ctx->task);
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Rules 2 to 6
 * ---------------------------------------------------------------------- */

static const char REASON_ASSIGNED[] = "site candidate: assigned to the client's site";
static const char REASON_BY_IP[] = "site candidate: its IP lies in the client's site";
static const char REASON_NO_SITE[] = "fallback: the client has no site, so every available server is listed";
static const char REASON_SITE_EMPTY[] = "fallback: the client's site has no available server, so every available server is listed";

static bool assigned_to(const snap_server *sv, int32_t site)
{
    for (uint32_t i = 0; i < sv->nsites; i++)
        if (sv->sites[i] == site)
            return true;
    return false;
}

static void trace_ranked(const decide_ctx *ctx, tsl_trace *tr, const uint32_t *ranked, uint32_t n,
                         int tier)
{
    char key[128];
    if (!tr)
        return;
    for (uint32_t i = 0; i < n; i++) {
        decide_rank_key_text(ctx, ctx->selection, ranked[i], key, sizeof key);
        trace_addf(tr, "  tier %d #%u %s: %s", tier, i + 1, ctx->snap->servers[ranked[i]].name, key);
    }
}

void decide_resolve(decide_ctx *ctx, tsl_result *res, tsl_trace *tr)
{
    resolve_site(ctx, res, tr);
    collect_errors(ctx, tr);
}

/* The available servers that can make the first `max` of a list over the
 * whole estate, into out[] (which holds nservers); returns how many.
 * decide_rank orders them exactly as it would order every available server:
 * the walk follows the snapshot's key order and stops once `max` servers
 * without a recent connection error are held and the key has moved past
 * the last of them.  Nothing later can rank ahead of those: its key is
 * greater, and servers with a recent error rank after every other.  Every
 * server sharing the boundary key is kept, since a hash breaks those ties.
 * A client with no site costs about `max` servers, not the estate. */
static uint32_t collect_best(const decide_ctx *ctx, uint32_t max, uint32_t *out)
{
    const tsl_snapshot *s = ctx->snap;
    const uint32_t *ord = s->by_key[(unsigned)ctx->selection < 3 ? ctx->selection : 0];
    uint32_t n = 0, good = 0;
    double last = 0;

    if (max == 0)
        return 0;
    for (uint32_t i = 0; i < s->nservers; i++) {
        uint32_t sv = ord[i];
        if (good >= max && snap_rank_key(&s->servers[sv], ctx->selection) != last)
            break;
        if (!decide_available(ctx, sv))
            continue;
        out[n++] = sv;
        if (good < max && !decide_recent_error(ctx, sv)) {
            good++;
            last = snap_rank_key(&s->servers[sv], ctx->selection);
        }
    }
    return n;
}

int decide_default(tsl_result *res, tsl_worker *w, const decide_ctx *ctx, tsl_trace *tr)
{
    const tsl_snapshot *s = ctx->snap;
    uint32_t max = ctx->max > 0 ? (uint32_t)ctx->max : 0;
    uint32_t *avail = decide_scratch(w, 0, s->nservers);
    uint32_t *ranked = decide_scratch(w, 1, s->nservers);
    uint32_t navail = 0, n;
    char why[128];
    int err = 0;

    if (!avail || !ranked)
        return tsl_oom();

    if (ctx->site != TSL_NO_SITE) {
        const snap_site *site = &s->sites[ctx->site];
        trace_addf(tr, "candidates of site \"%s\": %u Task Server(s)", site->name, site->ncand);
        for (uint32_t i = 0; i < site->ncand; i++) {
            uint32_t sv = site->cand[i];
            if (decide_available(ctx, sv)) {
                avail[navail++] = sv;
                continue;
            }
            if (tr)
                trace_addf(tr, "  %s dropped: %s", s->servers[sv].name,
                           decide_unavailable_why(ctx, sv, why, sizeof why));
        }
        if (navail) {
            n = decide_rank(w, ctx, ctx->selection, avail, navail, ranked, max);
            trace_addf(tr, "ranked %u available site server(s) by %s; listing %u", navail,
                       tsl_selection_name(ctx->selection), n);
            trace_ranked(ctx, tr, ranked, n, 0);
            for (uint32_t i = 0; i < n && err == 0; i++)
                err = result_push(res, ctx, ranked[i], 0,
                                  assigned_to(&s->servers[ranked[i]], ctx->site) ? REASON_ASSIGNED
                                                                                  : REASON_BY_IP,
                                  0);
            return err;
        }
        trace_addf(tr, "fallback: site \"%s\" has no available Task Server; listing every "
                       "available server (today's behaviour)", site->name);
    } else {
        trace_addf(tr, "fallback: the client has no site; listing every available server "
                       "(today's behaviour)");
    }

    navail = collect_best(ctx, max, avail);
    n = decide_rank(w, ctx, ctx->selection, avail, navail, ranked, max);
    if (tr) {
        uint32_t all = 0;
        for (uint32_t i = 0; i < s->nservers; i++)
            all += decide_available(ctx, i);
        trace_addf(tr, "ranked %u available server(s) by %s; listing %u", all,
                   tsl_selection_name(ctx->selection), n);
    }
    trace_ranked(ctx, tr, ranked, n, 1);
    const char *reason = ctx->site == TSL_NO_SITE ? REASON_NO_SITE : REASON_SITE_EMPTY;
    for (uint32_t i = 0; i < n && err == 0; i++)
        err = result_push(res, ctx, ranked[i], 1, reason, 0);
    if (err == 0 && n == 0)
        trace_addf(tr, "no available Task Server anywhere: the list is empty");
    return err;
}

/* ------------------------------------------------------------------------
 * tsl_decide
 * ---------------------------------------------------------------------- */

int tsl_decide(tsl_result *res, tsl_worker *w, const tsl_plan *plan, const tsl_request *req,
               tsl_trace *tr)
{
    decide_ctx ctx;
    int err;

    TSL_ARG(res && w && plan && req);
    result_reset(res);
    if (req->client) {
        size_t len = strlen(req->client);
        if (len == 0 || len > TSL_GUID_MAX)
            return tsl_seterr(TSL_EINVALID, "client GUID must be 1 to %d characters (got %zu)",
                              TSL_GUID_MAX, len);
        memcpy(res->client, req->client, len + 1);
        res->has_client = true;
    }
    if ((err = decide_context(&ctx, w, plan, req, tr)) < 0)
        return err;

    decide_resolve(&ctx, res, tr);
    /* A staged plan picks the sub-plan of the client's site (rollout_plan.c). */
    if (plan->stage && (err = plan_stage_pick(&plan, &w, ctx.site, tr)) < 0)
        return err;
    res->site = ctx.site;
    res->site_name = ctx.site == TSL_NO_SITE ? NULL : plan->snap->sites[ctx.site].name;
    res->ttl = ctx.ttl;
    res->department_ignored = ctx.department_ignored;
    res->now = ctx.now;
    if ((err = decide_seen_reset(w, plan->snap->nservers)) < 0)
        return err;

    if (plan->bound) {
        res->policy = tsl_policy_version(plan->policy);
        err = policy_decide(res, w, plan, &ctx, tr);
    } else {
        trace_addf(tr, "policy: none; the default dynamic logic decides");
        err = decide_default(res, w, &ctx, tr);
    }
    return err;
}
