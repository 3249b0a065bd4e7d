/*
 * suggest.c - "did you mean": edit distance between short names, and the
 * closest of a list of candidates (see suggest.h).
 */
#include "suggest.h"

#include <stdio.h>
#include <string.h>

static int lower(int ch)
{
    return ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch;
}

int tsl_edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    int row[65];

    if (la > 64 || lb > 64)
        return 1000;
    for (size_t j = 0; j <= lb; j++)
        row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int prev = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int cur = row[j];
            int sub = prev + (lower((unsigned char)a[i - 1]) != lower((unsigned char)b[j - 1]));
            int best = row[j] + 1 < row[j - 1] + 1 ? row[j] + 1 : row[j - 1] + 1;
            row[j] = sub < best ? sub : best;
            prev = cur;
        }
    }
    return row[lb];
}

const char *tsl_suggest(const char *word, const void *cands, size_t ncand, size_t stride)
{
    const char *best = NULL;
    int bestd = 1000;
    int limit = (int)strlen(word) / 3 > 2 ? (int)strlen(word) / 3 : 2;

    for (size_t i = 0; i < ncand; i++) {
        const char *cand = *(const char *const *)((const char *)cands + i * stride);
        int d;
        if (!cand)
            continue;
        d = tsl_edit_distance(word, cand);
        if (d < bestd) {
            bestd = d;
            best = cand;
        }
    }
    /* never a word with nothing in common ("os" is not a typo of "host") */
    return best && bestd <= limit && bestd < (int)strlen(word) ? best : NULL;
}

const char *tsl_suggest_hint(char *buf, size_t len, const char *word, const void *cands,
                             size_t ncand, size_t stride)
{
    const char *best = tsl_suggest(word, cands, ncand, stride);

    if (best)
        snprintf(buf, len, " (did you mean \"%s\"?)", best);
    else if (len)
        buf[0] = '\0';
    return buf;
}
