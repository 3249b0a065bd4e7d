/*
 * rollout_shadow.c - comparing two decisions, and the shadow tally.
 *
 * tsl_result_diff() is what both the dry-run and shadow mode build on: it
 * compares two results by server index, without allocating, so a broker can
 * afford it on every request.  A tsl_shadow counts differences with atomic
 * counters (any number of broker threads observe at once) and keeps a short
 * buffer of sample requests under a mutex taken only when a request
 * differs; the broker's writer thread flushes it into the store
 * (rollout_shadow table, via rollout.c).
 *
 * Used by: dryrun.c, the broker.  Needs: decide.h, rollout.h.
 */
#include "rollout.h"

#include <pthread.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------
 * Comparing two results
 * ---------------------------------------------------------------------- */

/* 1 cross-site, 2 cross-country (with cross-site), 0 neither. */
unsigned diff_cross(const tsl_snapshot *snap, const tsl_result *r)
{
    if (r->site == TSL_NO_SITE || r->n == 0)
        return 0;
    const snap_server *sv = &snap->servers[r->servers[0]];
    if (sv->home == r->site)
        return 0;
    /* a server assigned to several sites serves each of them */
    for (uint32_t i = 0; i < sv->nsites; i++)
        if (sv->sites[i] == r->site)
            return 0;
    const char *cc = snap->sites[r->site].country;
    const char *sc = sv->home == TSL_NO_SITE ? NULL : snap->sites[sv->home].country;
    return cc && sc && strcmp(cc, sc) != 0 ? 3 : 1;
}

unsigned tsl_result_diff(const tsl_snapshot *snap, const tsl_result *a, const tsl_result *b)
{
    unsigned d = 0;

    if (a->n != b->n || a->blocked != b->blocked || a->strict != b->strict) {
        d |= TSL_DIFF_LIST;
    } else {
        for (uint32_t i = 0; i < a->n; i++) {
            if (a->servers[i] != b->servers[i] || a->entries[i].tier != b->entries[i].tier ||
                a->entries[i].after != b->entries[i].after) {
                d |= TSL_DIFF_LIST;
                break;
            }
        }
    }
    if (!d)
        return 0;
    if ((a->n == 0) != (b->n == 0) || (a->n && a->servers[0] != b->servers[0]))
        d |= TSL_DIFF_FIRST;
    if (a->n && !b->n)
        d |= TSL_DIFF_BLOCKED;
    if (!a->n && b->n)
        d |= TSL_DIFF_UNBLOCKED;
    if (d & TSL_DIFF_FIRST) {
        unsigned ca = diff_cross(snap, a), cb = diff_cross(snap, b);
        if (cb && !ca)
            d |= TSL_DIFF_CROSS_SITE;
        if ((cb & 2) && !(ca & 2))
            d |= TSL_DIFF_CROSS_COUNTRY;
        if (ca && !cb && b->n)
            d |= TSL_DIFF_BACK_IN_SITE;
    }
    return d;
}

static const char *const diff_names[] = {"first",         "list",    "blocked",
                                         "unblocked",     "cross-site", "cross-country",
                                         "back-in-site"};

const char *tsl_diff_name(unsigned bit)
{
    for (unsigned i = 0; i < sizeof diff_names / sizeof *diff_names; i++)
        if (bit == 1u << i)
            return diff_names[i];
    return NULL;
}

int diff_kinds_text(tsl_buf *out, unsigned d, const char *sep)
{
    int err = 0;
    bool first = true;
    for (unsigned i = 0; i < sizeof diff_names / sizeof *diff_names && err == 0; i++) {
        if (!(d & (1u << i)))
            continue;
        err = tsl_buf_printf(out, "%s%s", first ? "" : sep, diff_names[i]);
        first = false;
    }
    return err;
}

/* ------------------------------------------------------------------------
 * The shadow tally
 * ---------------------------------------------------------------------- */

struct tsl_shadow {
    char version[64];
    atomic_uint_fast64_t total[8];   /* since creation: see tsl_shadow_counts */
    atomic_uint_fast64_t pending[8]; /* since the last flush */
    pthread_mutex_t lock;            /* guards the samples */
    shadow_sample samples[TSL_SHADOW_SAMPLES];
    uint32_t nsamples;
};

enum { C_REQ, C_DIFFER, C_FIRST, C_LIST, C_BLOCKED, C_UNBLOCKED, C_CROSS, C_ERR };

int tsl_shadow_new(tsl_shadow **out, const char *version)
{
    tsl_shadow *sh;
    *out = NULL;
    TSL_ARG(version);
    if (!(sh = calloc(1, sizeof *sh)))
        return tsl_oom();
    if (pthread_mutex_init(&sh->lock, NULL) != 0) {
        free(sh);
        return tsl_seterr(TSL_ERROR, "cannot create the shadow tally's lock");
    }
    snprintf(sh->version, sizeof sh->version, "%s", version);
    for (int i = 0; i < 8; i++) {
        atomic_init(&sh->total[i], 0);
        atomic_init(&sh->pending[i], 0);
    }
    *out = sh;
    return 0;
}

void tsl_shadow_free(tsl_shadow *sh)
{
    if (!sh)
        return;
    pthread_mutex_destroy(&sh->lock);
    free(sh);
}

const char *tsl_shadow_version(const tsl_shadow *sh)
{
    return sh->version;
}

static void count(tsl_shadow *sh, int which)
{
    atomic_fetch_add_explicit(&sh->total[which], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&sh->pending[which], 1, memory_order_relaxed);
}

static void list_names(char *dst, size_t len, const tsl_result *r)
{
    size_t o = 0;
    dst[0] = '\0';
    if (!r) {
        snprintf(dst, len, "(error)");
        return;
    }
    if (r->n == 0) {
        snprintf(dst, len, "(blocked)");
        return;
    }
    for (uint32_t i = 0; i < r->n && o + 1 < len; i++) {
        int n = snprintf(dst + o, len - o, "%s%s", i ? "," : "", r->entries[i].name);
        if (n < 0 || (size_t)n >= len - o) {
            /* cut on a whole name */
            if (o + 4 < len)
                memcpy(dst + o, ",...", 5);
            break;
        }
        o += (size_t)n;
    }
}

unsigned tsl_shadow_observe(tsl_shadow *sh, const tsl_snapshot *snap, const tsl_request *req,
                            const tsl_result *active, const tsl_result *shadow)
{
    unsigned d;

    count(sh, C_REQ);
    if (!shadow) {
        count(sh, C_ERR);
        d = TSL_DIFF_LIST;
    } else {
        d = tsl_result_diff(snap, active, shadow);
        if (!d)
            return 0;
    }
    count(sh, C_DIFFER);
    if (d & TSL_DIFF_FIRST)
        count(sh, C_FIRST);
    if (d & TSL_DIFF_LIST)
        count(sh, C_LIST);
    if (d & TSL_DIFF_BLOCKED)
        count(sh, C_BLOCKED);
    if (d & TSL_DIFF_UNBLOCKED)
        count(sh, C_UNBLOCKED);
    if (d & TSL_DIFF_CROSS_SITE)
        count(sh, C_CROSS);

    /* samples: the first ones since the last flush (cheap, and a flush a
     * second keeps them fresh) */
    pthread_mutex_lock(&sh->lock);
    if (sh->nsamples < TSL_SHADOW_SAMPLES) {
        shadow_sample *s = &sh->samples[sh->nsamples++];
        memset(s, 0, sizeof *s);
        s->at = req->now;
        s->kinds = d;
        snprintf(s->client, sizeof s->client, "%s", req->client ? req->client : "");
        snprintf(s->ip, sizeof s->ip, "%s", req->nips ? req->ips[0] : "");
        snprintf(s->site, sizeof s->site, "%s", active->site_name ? active->site_name : "");
        list_names(s->active, sizeof s->active, active);
        list_names(s->shadow, sizeof s->shadow, shadow);
    }
    pthread_mutex_unlock(&sh->lock);
    return d;
}

void tsl_shadow_counts_get(const tsl_shadow *sh, tsl_shadow_counts *out)
{
    tsl_shadow *m = (tsl_shadow *)sh; /* atomics are read, not changed */
    out->requests = atomic_load(&m->total[C_REQ]);
    out->differ = atomic_load(&m->total[C_DIFFER]);
    out->first = atomic_load(&m->total[C_FIRST]);
    out->list = atomic_load(&m->total[C_LIST]);
    out->blocked = atomic_load(&m->total[C_BLOCKED]);
    out->unblocked = atomic_load(&m->total[C_UNBLOCKED]);
    out->cross_site = atomic_load(&m->total[C_CROSS]);
    out->errors = atomic_load(&m->total[C_ERR]);
}

int tsl_shadow_flush(tsl_shadow *sh, tsl_store *st, int64_t now)
{
    shadow_sample *samples = NULL;
    uint32_t nsamples;
    uint64_t delta[8];
    int err;

    TSL_ARG(sh && st);
    if (!(samples = malloc(sizeof sh->samples)))
        return tsl_oom();
    pthread_mutex_lock(&sh->lock);
    nsamples = sh->nsamples;
    memcpy(samples, sh->samples, nsamples * sizeof *samples);
    sh->nsamples = 0;
    pthread_mutex_unlock(&sh->lock);
    for (int i = 0; i < 8; i++)
        delta[i] = atomic_exchange(&sh->pending[i], 0);

    err = rollout_shadow_store(st, sh->version, delta, samples, nsamples, now);
    if (err < 0) {
        /* give the counts back so the next flush retries them */
        for (int i = 0; i < 8; i++)
            atomic_fetch_add(&sh->pending[i], delta[i]);
    }
    free(samples);
    return err;
}
