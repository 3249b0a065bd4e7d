/*
 * lpm.c - longest-prefix match: a path-compressed binary radix (Patricia)
 * trie over 128-bit keys.  A lookup walks at most one node per stored
 * prefix on the path, comparing whole bytes where it can, so the cost
 * depends on how prefixes nest, not on how many there are.
 */
#include "lpm.h"

#include <stdlib.h>
#include <string.h>

typedef struct lpm_node {
    tsl_ip key;               /* masked to `bits` */
    int bits;
    bool has_value;
    int32_t value;
    struct lpm_node *child[2];
} lpm_node;

static int bit_at(const tsl_ip *ip, int i)
{
    return (ip->b[i >> 3] >> (7 - (i & 7))) & 1;
}

/* Do the first `bits` bits of a and b agree? */
static bool prefix_equal(const tsl_ip *a, const tsl_ip *b, int bits)
{
    int bytes = bits >> 3, rest = bits & 7;
    if (memcmp(a->b, b->b, (size_t)bytes) != 0)
        return false;
    if (!rest)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return ((a->b[bytes] ^ b->b[bytes]) & mask) == 0;
}

/* Length of the common prefix of a and b, at most `limit` bits. */
static int common_bits(const tsl_ip *a, const tsl_ip *b, int limit)
{
    int i = 0;
    while (i < limit && (i & 7) == 0 && i + 8 <= limit && a->b[i >> 3] == b->b[i >> 3])
        i += 8;
    while (i < limit && bit_at(a, i) == bit_at(b, i))
        i++;
    return i;
}

static void mask_to(tsl_ip *ip, int bits)
{
    for (int i = bits; i < 128; i++)
        ip->b[i >> 3] &= (uint8_t) ~(0x80 >> (i & 7));
}

static lpm_node *node_new(const tsl_ip *key, int bits)
{
    lpm_node *n = calloc(1, sizeof *n);
    if (!n)
        return NULL;
    n->key = *key;
    mask_to(&n->key, bits);
    n->bits = bits;
    return n;
}

void tsl_lpm_init(tsl_lpm *t)
{
    t->root = NULL;
    t->count = 0;
}

static void free_nodes(lpm_node *n)
{
    /* depth is bounded by 129 levels, so recursion is safe */
    if (!n)
        return;
    free_nodes(n->child[0]);
    free_nodes(n->child[1]);
    free(n);
}

void tsl_lpm_free(tsl_lpm *t)
{
    free_nodes(t->root);
    t->root = NULL;
    t->count = 0;
}

int tsl_lpm_insert(tsl_lpm *t, const tsl_ip *prefix, int bits, int32_t value,
                   int32_t *out_existing)
{
    lpm_node **slot = &t->root;

    if (bits < 0 || bits > 128)
        return tsl_seterr(TSL_EINVALID, "prefix length %d out of range", bits);
    while (*slot) {
        lpm_node *n = *slot;
        int limit = bits < n->bits ? bits : n->bits;
        int common = common_bits(prefix, &n->key, limit);

        if (common == n->bits) {
            if (bits == n->bits) {
                if (n->has_value) {
                    if (out_existing)
                        *out_existing = n->value;
                    return TSL_EEXISTS;
                }
                n->has_value = true;
                n->value = value;
                t->count++;
                return 0;
            }
            slot = &n->child[bit_at(prefix, n->bits)];
            continue;
        }

        /* The new prefix and n part ways at `common`: split there. */
        lpm_node *fork = node_new(prefix, common);
        if (!fork)
            return tsl_oom();
        if (common == bits) {
            fork->has_value = true;
            fork->value = value;
            fork->child[bit_at(&n->key, common)] = n;
        } else {
            lpm_node *leaf = node_new(prefix, bits);
            if (!leaf) {
                free(fork);
                return tsl_oom();
            }
            leaf->has_value = true;
            leaf->value = value;
            fork->child[bit_at(&n->key, common)] = n;
            fork->child[bit_at(prefix, common)] = leaf;
        }
        *slot = fork;
        t->count++;
        return 0;
    }

    lpm_node *leaf = node_new(prefix, bits);
    if (!leaf)
        return tsl_oom();
    leaf->has_value = true;
    leaf->value = value;
    *slot = leaf;
    t->count++;
    return 0;
}

int tsl_lpm_replace(tsl_lpm *t, const tsl_ip *prefix, int bits, int32_t value)
{
    lpm_node *n = t->root;

    while (n && n->bits <= bits && prefix_equal(prefix, &n->key, n->bits)) {
        if (n->bits == bits) {
            if (!n->has_value)
                break;
            n->value = value;
            return 0;
        }
        n = n->child[bit_at(prefix, n->bits)];
    }
    return tsl_seterr(TSL_ENOTFOUND, "prefix not in the trie");
}

bool tsl_lpm_lookup(const tsl_lpm *t, const tsl_ip *addr, tsl_lpm_match *out)
{
    const lpm_node *best = NULL;
    const lpm_node *n = t->root;

    while (n && prefix_equal(addr, &n->key, n->bits)) {
        if (n->has_value)
            best = n;
        if (n->bits == 128)
            break;
        n = n->child[bit_at(addr, n->bits)];
    }
    if (!best)
        return false;
    out->value = best->value;
    out->bits = best->bits;
    out->prefix = best->key;
    return true;
}
