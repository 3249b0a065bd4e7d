/*
 * trace.c - the explain trace: numbered one-line steps.  Only explain and
 * dry-run pass a trace, so allocating here is fine; the hot path passes
 * NULL and trace_addf returns at once.
 */
#include "decide.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tsl_trace {
    char **lines;
    size_t n, cap;
    bool oom;  /* a line could not be stored; the trace says so at the end */
};

int tsl_trace_new(tsl_trace **out)
{
    *out = calloc(1, sizeof **out);
    return *out ? 0 : tsl_oom();
}

void tsl_trace_clear(tsl_trace *tr)
{
    if (!tr)
        return;
    for (size_t i = 0; i < tr->n; i++)
        free(tr->lines[i]);
    tr->n = 0;
    tr->oom = false;
}

void tsl_trace_free(tsl_trace *tr)
{
    if (!tr)
        return;
    tsl_trace_clear(tr);
    free(tr->lines);
    free(tr);
}

size_t tsl_trace_count(const tsl_trace *tr)
{
    return tr->n;
}

const char *tsl_trace_line(const tsl_trace *tr, size_t i)
{
    return i < tr->n ? tr->lines[i] : NULL;
}

void trace_addf(tsl_trace *tr, const char *fmt, ...)
{
    if (!tr)
        return;
    if (tr->n == tr->cap) {
        size_t cap = tr->cap ? tr->cap * 2 : 32;
        char **lines = realloc(tr->lines, cap * sizeof *lines);
        if (!lines) {
            tr->oom = true;
            return;
        }
        tr->lines = lines;
        tr->cap = cap;
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *line = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (!line) {
        tr->oom = true;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(line, (size_t)n + 1, fmt, ap);
    va_end(ap);
    tr->lines[tr->n++] = line;
}
