/*
 * scenario_values.c - the scenario parser's small pieces: growing arrays,
 * FILE:LINE errors, copies, paths relative to the scenario's directory,
 * times (90, 90s, 10m, 2h), bounded numbers, key=value words, selectors.
 *
 * Used by: scenario.c, scenario_directives.c.  Needs: scenario_parse.h.
 */
#include "scenario_parse.h"

#include "sim_internal.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int scn_grow(void **arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap * 2 : 8;
    while (n < need)
        n *= 2;
    void *p = realloc(*arr, n * elem);
    if (!p)
        return tsl_oom();
    memset((char *)p + *cap * elem, 0, (n - *cap) * elem);
    *arr = p;
    *cap = n;
    return 0;
}


int scn_push(void **arr, size_t *n, size_t *cap, size_t elem, void **out)
{
    int err;
    *out = NULL;
    if ((err = scn_grow(arr, cap, *n + 1, elem)) < 0)
        return err;
    *out = (char *)*arr + (*n)++ * elem;
    return 0;
}


int scn_perr(const struct parser *p, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return tsl_seterr(TSL_EINVALID, "%s:%d: %s", p->path, p->line, msg);
}

int scn_sdup(char **out, const char *s)
{
    if (!(*out = strdup(s)))
        return tsl_oom();
    return 0;
}

/* A path relative to the scenario's directory. */
int scn_resolve_path(const struct parser *p, char **out, const char *name)
{
    if (name[0] == '/' || !p->s->dir[0])
        return scn_sdup(out, name);
    size_t n = strlen(p->s->dir) + strlen(name) + 2;
    if (!(*out = malloc(n)))
        return tsl_oom();
    snprintf(*out, n, "%s/%s", p->s->dir, name);
    return 0;
}

/* "90", "90s", "10m", "2h", "1.5h": simulated seconds. */
int scn_parse_time(const struct parser *p, const char *what, const char *text, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    double unit = 1;
    if (end == text || errno || !isfinite(v) || v < 0)
        return scn_perr(p, "%s: \"%s\" is not a time (seconds, or 90s, 10m, 2h)", what, text);
    if (*end == 's')
        end++;
    else if (*end == 'm')
        unit = 60, end++;
    else if (*end == 'h')
        unit = 3600, end++;
    if (*end)
        return scn_perr(p, "%s: \"%s\" is not a time (seconds, or 90s, 10m, 2h)", what, text);
    *out = v * unit;
    if (*out > 10 * 365 * 86400.0)
        return scn_perr(p, "%s: %s is too long", what, text);
    return 0;
}

int scn_parse_num(const struct parser *p, const char *what, const char *text, double lo,
                     double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || *end || errno || !isfinite(v))
        return scn_perr(p, "%s: \"%s\" is not a number", what, text);
    if (v < lo || v > hi)
        return scn_perr(p, "%s: %s is out of range (%g to %g)", what, text, lo, hi);
    *out = v;
    return 0;
}

/* Splits `key=value`; returns the value or NULL when the word has no '='. */
const char *scn_kv(char *word, const char **key)
{
    char *eq = strchr(word, '=');
    if (!eq)
        return NULL;
    *eq = '\0';
    *key = word;
    return eq + 1;
}

int scn_parse_selector(const struct parser *p, scn_selector *sel, const char *key,
                          const char *val, bool *taken)
{
    char **slot = strcmp(key, "site") == 0         ? &sel->site
                  : strcmp(key, "department") == 0 ? &sel->department
                  : strcmp(key, "task") == 0       ? &sel->task
                  : strcmp(key, "group") == 0      ? &sel->group
                                                   : NULL;
    *taken = slot != NULL;
    if (!slot)
        return 0;
    if (*slot)
        return scn_perr(p, "%s= given twice", key);
    if (!val[0])
        return scn_perr(p, "%s= needs a value", key);
    return scn_sdup(slot, val);
}
