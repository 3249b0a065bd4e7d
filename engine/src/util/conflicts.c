/*
 * conflicts.c - finding the subnets claimed by more than one site (see
 * conflicts.h).
 *
 * The claims are sorted by address, then prefix length, so every subnet
 * comes after the subnets that contain it; a stack of the enclosing
 * subnets then gives, for each subnet, the wider claims of other sites in
 * one pass: O(n log n) for n subnets.
 */
#include "conflicts.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct parsed {
    tsl_ip prefix;
    int bits;
    const conflict_claim *claim;
} parsed;

bool conflicts_site_wins(const char *a, const char *b)
{
    int c = strcasecmp(a, b);
    return c < 0 || (c == 0 && strcmp(a, b) < 0);
}

static int cmp_parsed(const void *x, const void *y)
{
    const parsed *a = x, *b = y;
    int c = memcmp(a->prefix.b, b->prefix.b, sizeof a->prefix.b);

    if (c)
        return c;
    if (a->bits != b->bits)
        return a->bits < b->bits ? -1 : 1;
    if (conflicts_site_wins(a->claim->site, b->claim->site))
        return -1;
    return conflicts_site_wins(b->claim->site, a->claim->site) ? 1 : 0;
}

/* Does prefix a/abits contain b/bbits? */
static bool contains(const parsed *a, const parsed *b)
{
    int bytes, rest;

    if (a->bits > b->bits)
        return false;
    bytes = a->bits >> 3;
    rest = a->bits & 7;
    if (memcmp(a->prefix.b, b->prefix.b, (size_t)bytes))
        return false;
    return !rest || !((a->prefix.b[bytes] ^ b->prefix.b[bytes]) & (uint8_t)(0xff << (8 - rest)));
}

int conflicts_find(subnet_conflicts *out, const conflict_claim *claims, size_t n)
{
    parsed *p = NULL;
    size_t np = 0, *stack = NULL, depth = 0, npool = 0, cap_pool = 0, i, g;
    size_t *pool_off = NULL;
    int err = 0;

    memset(out, 0, sizeof *out);
    if (!n)
        return 0;
    if (!(p = malloc(n * sizeof *p)) || !(stack = malloc(n * sizeof *stack)) ||
        !(out->v = malloc(n * sizeof *out->v)) || !(pool_off = malloc(n * sizeof *pool_off))) {
        err = tsl_oom();
        goto done;
    }
    for (i = 0; i < n; i++) {
        if (!claims[i].site || !claims[i].cidr ||
            tsl_cidr_parse(&p[np].prefix, &p[np].bits, claims[i].cidr) < 0)
            continue;
        p[np++].claim = &claims[i];
    }
    tsl_error_clear();
    qsort(p, np, sizeof *p, cmp_parsed);

    /* Groups of equal subnets; `stack` holds the first index of each
     * enclosing group. */
    for (g = 0; g < np;) {
        size_t end = g + 1, k, others = 0;
        while (end < np && p[end].bits == p[g].bits &&
               !memcmp(p[end].prefix.b, p[g].prefix.b, sizeof p[g].prefix.b))
            end++;
        while (depth && !contains(&p[stack[depth - 1]], &p[g]))
            depth--;
        /* count the other claims: other sites with this subnet, then the
         * enclosing subnets of sites other than the winner */
        for (k = g + 1; k < end; k++)
            if (strcasecmp(p[k].claim->site, p[g].claim->site))
                others++;
        for (size_t d = 0; d < depth; d++) {
            size_t a = stack[d];
            for (k = a; k < np && p[k].bits == p[a].bits &&
                        !memcmp(p[k].prefix.b, p[a].prefix.b, sizeof p[a].prefix.b);
                 k++)
                if (strcasecmp(p[k].claim->site, p[g].claim->site))
                    others++;
        }
        if (others) {
            subnet_conflict *c = &out->v[out->n];
            bool dup = false;
            if (npool + others > cap_pool) {
                size_t cap = (npool + others) * 2;
                conflict_claim *np2 = realloc(out->pool, cap * sizeof *np2);
                if (!np2) {
                    err = tsl_oom();
                    goto done;
                }
                out->pool = np2;
                cap_pool = cap;
            }
            pool_off[out->n] = npool;
            for (k = g + 1; k < end; k++)
                if (strcasecmp(p[k].claim->site, p[g].claim->site)) {
                    out->pool[npool++] = *p[k].claim;
                    dup = true;
                }
            for (size_t d = depth; d-- > 0;) { /* the nearest enclosing first */
                size_t a = stack[d];
                for (k = a; k < np && p[k].bits == p[a].bits &&
                            !memcmp(p[k].prefix.b, p[a].prefix.b, sizeof p[a].prefix.b);
                     k++)
                    if (strcasecmp(p[k].claim->site, p[g].claim->site))
                        out->pool[npool++] = *p[k].claim;
            }
            c->cidr = p[g].claim->cidr;
            c->prefix = p[g].prefix;
            c->bits = p[g].bits;
            c->site = p[g].claim->site;
            c->duplicate = dup;
            c->nothers = others;
            out->n++;
        }
        stack[depth++] = g;
        g = end;
    }
    /* the pool may have moved while growing: point into it at the end */
    for (i = 0; i < out->n; i++)
        out->v[i].others = out->pool + pool_off[i];

done:
    free(p);
    free(stack);
    free(pool_off);
    if (err < 0)
        conflicts_free(out);
    return err;
}

void conflicts_free(subnet_conflicts *c)
{
    free(c->v);
    free(c->pool);
    memset(c, 0, sizeof *c);
}
