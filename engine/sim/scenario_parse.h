/*
 * scenario_parse.h - what the scenario parser's files share: the parser's
 * position (for FILE:LINE errors), growing arrays, the value parsers
 * (times, numbers, key=value words, selectors) and one directive.
 *
 * Used by: scenario.c, scenario_values.c, scenario_directives.c.
 * Needs: sim_internal.h.
 */
#ifndef TSL_SIM_SCENARIO_PARSE_H
#define TSL_SIM_SCENARIO_PARSE_H

#include "sim_internal.h"

struct parser {
    tsl_sim_scenario *s;
    const char *path;
    int line;
};

/* Appends a zeroed element to a SCN_ARRAY; *out points at it. */
#define PUSH(s, field, out)                                                      \
    scn_push((void **)&(s)->field, &(s)->n##field, &(s)->cap##field, sizeof *(s)->field, \
          (void **)&(out))

TSL_INTERNAL int scn_grow(void **arr, size_t *cap, size_t need, size_t elem);
TSL_INTERNAL int scn_push(void **arr, size_t *n, size_t *cap, size_t elem, void **out);
TSL_INTERNAL int scn_perr(const struct parser *p, const char *fmt, ...) TSL_PRINTF(2, 3);
TSL_INTERNAL int scn_sdup(char **out, const char *s);
/* A path relative to the scenario's directory. */
TSL_INTERNAL int scn_resolve_path(const struct parser *p, char **out, const char *name);
/* "90", "90s", "10m", "2h", "1.5h": simulated seconds. */
TSL_INTERNAL int scn_parse_time(const struct parser *p, const char *what, const char *text, double *out);
TSL_INTERNAL int scn_parse_num(const struct parser *p, const char *what, const char *text, double lo,
                     double hi, double *out);
/* Splits `key=value`; returns the value or NULL when the word has no '='. */
TSL_INTERNAL const char *scn_kv(char *word, const char **key);
TSL_INTERNAL int scn_parse_selector(const struct parser *p, scn_selector *sel, const char *key,
                          const char *val, bool *taken);
TSL_INTERNAL int scn_directive(struct parser *p, char **w, int n, char *text);

#endif
