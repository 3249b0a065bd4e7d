/*
 * policy_arena.c - the memory a compiled policy lives in (one arena, freed
 * at once with the policy) and the glob matching its name patterns use
 * ("London*", case-insensitive).
 *
 * Used by: policy_dsl.c (filling blocks), policy_compile.c (freeing),
 * policy_bind.c and policy_rules.c (globs).  Needs: policy.h.
 */
#include "policy.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------------
 * Arena
 * ---------------------------------------------------------------------- */

struct pol_chunk {
    struct pol_chunk *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
};

void *arena_alloc(pol_arena *a, size_t n)
{
    struct pol_chunk *c = a->head;
    size_t need = (n + 15) & ~(size_t)15;

    if (need < n)
        return NULL;
    if (!c || c->cap - c->used < need) {
        size_t cap = need > 4000 ? need : 4000;
        c = probe_malloc(a->probe, sizeof *c + cap);
        if (!c)
            return NULL;
        c->next = a->head;
        c->used = 0;
        c->cap = cap;
        a->head = c;
    }
    void *p = c->data + c->used;
    c->used += need;
    memset(p, 0, n);
    return p;
}

char *arena_strndup(pol_arena *a, const char *s, size_t n)
{
    char *d = arena_alloc(a, n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

char *arena_strdup(pol_arena *a, const char *s)
{
    return s ? arena_strndup(a, s, strlen(s)) : NULL;
}

char *arena_printf(pol_arena *a, const char *fmt, ...)
{
    va_list ap;
    char small[256];
    int n;

    va_start(ap, fmt);
    n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    if ((size_t)n < sizeof small)
        return arena_strndup(a, small, (size_t)n);
    char *d = arena_alloc(a, (size_t)n + 1);
    if (!d)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(d, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return d;
}

void arena_free(pol_arena *a)
{
    struct pol_chunk *c = a->head;
    while (c) {
        struct pol_chunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
}

/* ------------------------------------------------------------------------
 * Globs
 * ---------------------------------------------------------------------- */

bool policy_is_glob(const char *pat)
{
    return strpbrk(pat, "*?") != NULL;
}

static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

bool policy_glob_match(const char *p, const char *s)
{
    const char *star = NULL, *resume = NULL;

    while (*s) {
        if (*p == '*') {
            star = p++;
            resume = s;
        } else if (*p && (*p == '?' || lower((unsigned char)*p) == lower((unsigned char)*s))) {
            p++;
            s++;
        } else if (star) {
            p = star + 1;
            s = ++resume;
        } else {
            return false;
        }
    }
    while (*p == '*')
        p++;
    return *p == '\0';
}

