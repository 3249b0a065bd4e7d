/*
 * subnet_conflicts.c - tsl_subnet_conflicts: the subnets of a snapshot
 * claimed by more than one site, each with the site its clients get and
 * the clients it decides, as text, JSON or CSV.
 *
 * The report `subnet-conflicts` (report.c, the broker's
 * GET /v1/reports/subnet-conflicts), `tsl check --db` and `tsl doctor`
 * call it.  The conflicts themselves come from conflicts.c; a client is
 * decided by a conflict when it has no explicit site and the longest
 * prefix matching its inventory IP is the conflict's subnet.
 *
 * Needs: snapshot.h, conflicts.h.
 */
#include "conflicts.h"
#include "snapshot.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct affected {
    uint32_t *off;   /* conflict i's clients: idx[off[i] .. off[i + 1]) */
    uint32_t *idx;
} affected;

static int cmp_key(const tsl_ip *p, int bits, const subnet_conflict *c)
{
    int r = memcmp(p->b, c->prefix.b, sizeof p->b);
    if (r)
        return r;
    return (bits > c->bits) - (bits < c->bits);
}

/* The conflict deciding client ci, or -1. */
static long conflict_of(const tsl_snapshot *s, const subnet_conflicts *cs, uint32_t ci)
{
    const snap_client *c = &s->clients[ci];
    tsl_lpm_match m;
    size_t lo = 0, hi = cs->n;

    if (c->site != TSL_NO_SITE || !c->has_addr || !tsl_lpm_lookup(&s->lpm, &c->addr, &m))
        return -1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = cmp_key(&m.prefix, m.bits, &cs->v[mid]);
        if (!r)
            return (long)mid;
        if (r < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return -1;
}

static int find_affected(affected *a, const tsl_snapshot *s, const subnet_conflicts *cs)
{
    uint32_t *fill = NULL;
    int err = 0;

    a->off = calloc(cs->n + 1, sizeof *a->off);
    a->idx = malloc((s->nclients ? s->nclients : 1) * sizeof *a->idx);
    fill = calloc(cs->n + 1, sizeof *fill);
    if (!a->off || !a->idx || !fill) {
        err = tsl_oom();
        goto done;
    }
    if (!cs->n)
        goto done;
    for (uint32_t i = 0; i < s->nclients; i++) {
        long k = conflict_of(s, cs, i);
        if (k >= 0)
            a->off[k + 1]++;
    }
    for (size_t k = 0; k < cs->n; k++)
        a->off[k + 1] += a->off[k];
    for (uint32_t i = 0; i < s->nclients; i++) {
        long k = conflict_of(s, cs, i);
        if (k >= 0)
            a->idx[a->off[k] + fill[k]++] = i;
    }
done:
    free(fill);
    return err;
}

static const char *kind_name(const subnet_conflict *c)
{
    bool nested = false;
    for (size_t k = 0; k < c->nothers; k++)
        nested = nested || strcmp(c->others[k].cidr, c->cidr) != 0;
    return c->duplicate ? (nested ? "duplicate+nested" : "duplicate") : "nested";
}

static int put_text(tsl_buf *out, const tsl_snapshot *s, const subnet_conflicts *cs,
                    const affected *a)
{
    int err = tsl_buf_printf(out, "%zu subnet conflict%s (the longest prefix wins; among sites "
                                  "holding the same subnet, the first by name)\n",
                             cs->n, cs->n == 1 ? "" : "s");

    for (size_t i = 0; i < cs->n && err == 0; i++) {
        const subnet_conflict *c = &cs->v[i];
        uint32_t n = a->off[i + 1] - a->off[i];
        err = tsl_buf_printf(out, "%s %s of site %s, also claimed by", kind_name(c), c->cidr,
                             c->site);
        for (size_t k = 0; k < c->nothers && err == 0; k++)
            err = tsl_buf_printf(out, "%s %s (%s)", k ? "," : "", c->others[k].site,
                                 c->others[k].cidr);
        if (err == 0)
            err = tsl_buf_printf(out, ": its clients get %s; %u client%s%s", c->site, n,
                                 n == 1 ? "" : "s", n ? ":" : "");
        for (uint32_t k = a->off[i]; k < a->off[i + 1] && err == 0; k++) {
            const snap_client *cl = &s->clients[a->idx[k]];
            err = tsl_buf_printf(out, "%s %s (%s, %s)", k > a->off[i] ? "," : "",
                                 cl->name[0] ? cl->name : cl->guid, cl->guid, cl->ip);
        }
        if (err == 0)
            err = tsl_buf_puts(out, "\n");
    }
    return err;
}

static int put_json(tsl_buf *out, const tsl_snapshot *s, const subnet_conflicts *cs,
                    const affected *a)
{
    int err = tsl_buf_puts(out, "[");

    for (size_t i = 0; i < cs->n && err == 0; i++) {
        const subnet_conflict *c = &cs->v[i];
        err = tsl_buf_puts(out, i ? ",\n {\"subnet\":" : "\n {\"subnet\":");
        if (!err)
            err = tsl_buf_json_str(out, c->cidr);
        if (!err)
            err = tsl_buf_printf(out, ",\"kind\":\"%s\",\"site\":", kind_name(c));
        if (!err)
            err = tsl_buf_json_str(out, c->site);
        if (!err)
            err = tsl_buf_puts(out, ",\"others\":[");
        for (size_t k = 0; k < c->nothers && err == 0; k++) {
            err = tsl_buf_puts(out, k ? ",{\"site\":" : "{\"site\":");
            if (!err)
                err = tsl_buf_json_str(out, c->others[k].site);
            if (!err)
                err = tsl_buf_puts(out, ",\"subnet\":");
            if (!err)
                err = tsl_buf_json_str(out, c->others[k].cidr);
            if (!err)
                err = tsl_buf_puts(out, "}");
        }
        if (!err)
            err = tsl_buf_printf(out, "],\"client_count\":%u,\"clients\":[",
                                 a->off[i + 1] - a->off[i]);
        for (uint32_t k = a->off[i]; k < a->off[i + 1] && err == 0; k++) {
            const snap_client *cl = &s->clients[a->idx[k]];
            err = tsl_buf_puts(out, k > a->off[i] ? ",{\"guid\":" : "{\"guid\":");
            if (!err)
                err = tsl_buf_json_str(out, cl->guid);
            if (!err)
                err = tsl_buf_puts(out, ",\"name\":");
            if (!err)
                err = tsl_buf_json_str(out, cl->name);
            if (!err)
                err = tsl_buf_puts(out, ",\"ip\":");
            if (!err)
                err = tsl_buf_json_str(out, cl->ip);
            if (!err)
                err = tsl_buf_puts(out, "}");
        }
        if (!err)
            err = tsl_buf_puts(out, "]}");
    }
    return err ? err : tsl_buf_puts(out, cs->n ? "\n]\n" : "]\n");
}

static int csv_row(tsl_buf *out, const subnet_conflict *c, const char *others,
                   const snap_client *cl)
{
    const char *vals[] = {c->cidr,  kind_name(c), c->site, others, cl ? cl->guid : "",
                          cl ? cl->name : "", cl ? cl->ip : ""};
    int err = 0;

    for (size_t i = 0; i < 7 && err == 0; i++) {
        if (i)
            err = tsl_buf_puts(out, ",");
        if (!err)
            err = tsl_buf_csv_field(out, vals[i]);
    }
    return err ? err : tsl_buf_puts(out, "\n");
}

static int put_csv(tsl_buf *out, const tsl_snapshot *s, const subnet_conflicts *cs,
                   const affected *a)
{
    tsl_buf others = TSL_BUF_INIT;
    int err = tsl_buf_puts(out, "subnet,kind,site,other_claims,client_guid,client_name,"
                                "client_ip\n");

    for (size_t i = 0; i < cs->n && err == 0; i++) {
        const subnet_conflict *c = &cs->v[i];
        tsl_buf_clear(&others);
        for (size_t k = 0; k < c->nothers && err == 0; k++)
            err = tsl_buf_printf(&others, "%s%s %s", k ? "; " : "", c->others[k].site,
                                 c->others[k].cidr);
        if (err)
            break;
        if (a->off[i] == a->off[i + 1])
            err = csv_row(out, c, others.ptr, NULL);
        for (uint32_t k = a->off[i]; k < a->off[i + 1] && err == 0; k++)
            err = csv_row(out, c, others.ptr, &s->clients[a->idx[k]]);
    }
    tsl_buf_free(&others);
    return err;
}

/* The claims of a snapshot: every site's subnets (borrowed strings). */
static int snapshot_claims(conflict_claim **out, size_t *n, const tsl_snapshot *snap)
{
    size_t k = 0;

    *out = NULL;
    *n = 0;
    for (uint32_t i = 0; i < snap->nsites; i++)
        *n += snap->sites[i].nsubnets;
    if (*n && !(*out = malloc(*n * sizeof **out)))
        return tsl_oom();
    for (uint32_t i = 0; i < snap->nsites; i++)
        for (uint32_t j = 0; j < snap->sites[i].nsubnets; j++)
            (*out)[k++] = (conflict_claim){snap->sites[i].name, snap->sites[i].subnets[j]};
    return 0;
}

int snap_client_conflict(bool *out, tsl_buf *line, const tsl_snapshot *snap, uint32_t ci)
{
    conflict_claim *claims = NULL;
    subnet_conflicts cs = {NULL, 0, NULL};
    size_t n;
    long k;
    int err;

    *out = false;
    if ((err = snapshot_claims(&claims, &n, snap)) < 0 ||
        (err = conflicts_find(&cs, claims, n)) < 0)
        goto done;
    if ((k = conflict_of(snap, &cs, ci)) >= 0) {
        const subnet_conflict *c = &cs.v[k];
        *out = true;
        err = tsl_buf_printf(line, "%s of site %s is also claimed by", c->cidr, c->site);
        for (size_t o = 0; o < c->nothers && err == 0; o++)
            err = tsl_buf_printf(line, "%s %s (%s)", o ? "," : "", c->others[o].site,
                                 c->others[o].cidr);
        if (err == 0)
            err = tsl_buf_printf(line, "; the client gets %s (%s); `tsl report "
                                       "subnet-conflicts` lists every conflict",
                                 c->site,
                                 c->duplicate ? "the first site by name" : "the longest prefix");
    }
done:
    conflicts_free(&cs);
    free(claims);
    return err;
}

int tsl_subnet_conflicts(tsl_buf *out, size_t *out_count, const tsl_snapshot *snap,
                         tsl_format fmt)
{
    conflict_claim *claims = NULL;
    subnet_conflicts cs = {NULL, 0, NULL};
    affected a = {NULL, NULL};
    size_t n = 0;
    int err;

    if (out_count)
        *out_count = 0;
    TSL_ARG(snap);
    if ((err = snapshot_claims(&claims, &n, snap)) < 0)
        goto done;
    if ((err = conflicts_find(&cs, claims, n)) < 0)
        goto done;
    if (out_count)
        *out_count = cs.n;
    if (!out)
        goto done;
    if ((err = find_affected(&a, snap, &cs)) < 0)
        goto done;
    err = fmt == TSL_FORMAT_JSON  ? put_json(out, snap, &cs, &a)
          : fmt == TSL_FORMAT_CSV ? put_csv(out, snap, &cs, &a)
                                  : put_text(out, snap, &cs, &a);

done:
    free(a.off);
    free(a.idx);
    conflicts_free(&cs);
    free(claims);
    return err;
}
