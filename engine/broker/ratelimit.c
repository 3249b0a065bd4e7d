/*
 * ratelimit.c - token buckets by key (a peer address, a client GUID),
 * shared by the HTTP workers, bounded in memory whatever the keys: a fixed
 * table of slots in stripes, each stripe behind its own mutex.  A key hashes
 * to one slot; a different key taking the slot starts with a full bucket,
 * so a flood of new keys can only make the limit looser for a key it
 * evicts, never refuse one that has not spent its own bucket, and memory
 * never grows (the flood of 444,183 names is what this bounds).
 *
 * Used by: routes.c (heartbeats per peer, registration reports per client).
 * Needs: broker_internal.h, pthreads.
 */
#include "broker_internal.h"

#include <stdlib.h>
#include <string.h>

#define STRIPES 64
#define SLOTS_PER_STRIPE 1024

typedef struct bucket {
    uint64_t key;      /* hash of the key; 0: empty */
    double tokens;
    uint64_t at_ns;    /* when tokens was last brought up to date */
} bucket;

typedef struct stripe {
    pthread_mutex_t mu;
    bucket slots[SLOTS_PER_STRIPE];
} stripe;

struct ratelimit {
    double rate, burst;
    stripe stripes[STRIPES];
};

int ratelimit_new(ratelimit **out, double rate, int burst)
{
    *out = NULL;
    if (rate <= 0)
        return 0; /* no limit: NULL takes everything */
    ratelimit *rl = calloc(1, sizeof *rl);
    if (!rl)
        return tsl_oom();
    rl->rate = rate;
    rl->burst = burst < 1 ? 1 : burst;
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_init(&rl->stripes[i].mu, NULL);
    *out = rl;
    return 0;
}

void ratelimit_free(ratelimit *rl)
{
    if (!rl)
        return;
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_destroy(&rl->stripes[i].mu);
    free(rl);
}

/* FNV-1a, case-sensitive: GUIDs and addresses as sent (never 0). */
static uint64_t key_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h ? h : 1;
}

bool ratelimit_take(ratelimit *rl, const char *key, uint64_t now_ns, int *retry_s)
{
    *retry_s = 0;
    if (!rl)
        return true;
    uint64_t h = key_hash(key);
    stripe *st = &rl->stripes[h % STRIPES];
    bool ok;
    pthread_mutex_lock(&st->mu);
    bucket *bk = &st->slots[(h / STRIPES) % SLOTS_PER_STRIPE];
    if (bk->key != h) {
        bk->key = h;
        bk->tokens = rl->burst;
    } else if (now_ns > bk->at_ns) {
        bk->tokens += (double)(now_ns - bk->at_ns) / 1e9 * rl->rate;
        if (bk->tokens > rl->burst)
            bk->tokens = rl->burst;
    }
    bk->at_ns = now_ns;
    if ((ok = bk->tokens >= 1))
        bk->tokens -= 1;
    else {
        double wait = (1 - bk->tokens) / rl->rate; /* a tiny rate: cap it, no overflow */
        *retry_s = wait >= 3600 ? 3600 : (int)wait + 1;
    }
    pthread_mutex_unlock(&st->mu);
    return ok;
}
