/*
 * scenario.c - reads a scenario file (format: docs/simulation.md).
 *
 * One directive per line, words separated by blanks, `#` starts a comment.
 * Options are `key=value` words.  Times are seconds, or take a unit:
 * 90, 90s, 10m, 2h.  File names are relative to the scenario's directory.
 * Every error names FILE:LINE.  Names of servers and sites are checked
 * against the inventory when the simulation starts (sim_estate.c).
 *
 * The directives are scenario_directives.c's, the value parsers
 * scenario_values.c's.
 *
 * Used by: sim.c, `tsl simulate`.  Needs: scenario_parse.h.
 */
#include "scenario_parse.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_WORDS 64

/* ------------------------------------------------------------------------
 * Small helpers
 * ---------------------------------------------------------------------- */

const char *scn_fault_name(scn_fault_kind k)
{
    static const char *const names[] = {"stop",      "kill",      "start",       "site-dark",
                                        "site-up",   "cut",       "restore",     "broker-down",
                                        "broker-up", "broker-restart", "activate"};
    return (unsigned)k <= SCN_ACTIVATE ? names[k] : "?";
}

const char *scn_op_text(scn_op op)
{
    static const char *const ops[] = {"==", "!=", "<", "<=", ">", ">="};
    return (unsigned)op <= OP_GE ? ops[op] : "?";
}

/* `*` any run, `?` one character; case-insensitive like server names. */
bool scn_glob_match(const char *g, const char *s)
{
    const char *star = NULL, *resume = NULL;
    while (*s) {
        if (*g == '*') {
            star = g++;
            resume = s;
        } else if (*g == '?' || (*g && tolower((unsigned char)*g) == tolower((unsigned char)*s))) {
            g++;
            s++;
        } else if (star) {
            g = star + 1;
            s = ++resume;
        } else {
            return false;
        }
    }
    while (*g == '*')
        g++;
    return *g == '\0';
}

/* ------------------------------------------------------------------------
 * The file
 * ---------------------------------------------------------------------- */

static int cmp_fault(const void *a, const void *b)
{
    const scn_fault *x = a, *y = b;
    if (x->at != y->at)
        return x->at < y->at ? -1 : 1;
    return x->line - y->line; /* same time: file order */
}

int tsl_sim_scenario_parse(tsl_sim_scenario **out, const char *text, size_t len, const char *path)
{
    struct parser p = {NULL, path ? path : "scenario", 0};
    tsl_sim_scenario *s = NULL;
    char *buf = NULL;
    int err = 0;

    *out = NULL;
    if (!(s = calloc(1, sizeof *s)) || !(buf = malloc(len + 1))) {
        err = tsl_oom();
        goto done;
    }
    p.s = s;
    memcpy(buf, text, len);
    buf[len] = '\0';
    if ((err = scn_sdup(&s->path, p.path)) < 0 || (err = scn_sdup(&s->dir, p.path)) < 0)
        goto done;
    char *slash = strrchr(s->dir, '/');
    if (slash)
        *slash = '\0';
    else
        s->dir[0] = '\0';

    s->speed = 0;
    s->duration = 3600;
    s->start_spread = 60;
    s->heartbeat = 30;
    s->seed = 1;
    tsl_settings_init(&s->broker);
    tsl_agent_config cfg;
    tsl_agent_config_init(&cfg);
    s->agent = cfg.timing;

    for (char *line = buf, *next; line; line = next) {
        char *w[MAX_WORDS], *copy = NULL;
        int n = 0;
        p.line++;
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        size_t l = strlen(line);
        while (l && isspace((unsigned char)line[l - 1]))
            line[--l] = '\0';
        while (isspace((unsigned char)*line))
            line++;
        if (!*line)
            continue;
        if (!(copy = strdup(line))) {
            err = tsl_oom();
            goto done;
        }
        char *save = NULL;
        for (char *tok = strtok_r(line, " \t\r", &save); tok;
             tok = strtok_r(NULL, " \t\r", &save)) {
            if (n == MAX_WORDS) {
                free(copy);
                err = scn_perr(&p, "more than %d words", MAX_WORDS);
                goto done;
            }
            w[n++] = tok;
        }
        err = scn_directive(&p, w, n, copy);
        free(copy);
        if (err < 0)
            goto done;
    }
    p.line = 0;
    if (!s->inventory) {
        err = tsl_seterr(TSL_EINVALID, "%s: no \"inventory FILE\" line", p.path);
        goto done;
    }
    if (s->ngroups == 0) {
        err = tsl_seterr(TSL_EINVALID, "%s: no \"clients\" line: nobody to simulate", p.path);
        goto done;
    }
    if (!s->name) {
        const char *base = strrchr(p.path, '/');
        if ((err = scn_sdup(&s->name, base ? base + 1 : p.path)) < 0)
            goto done;
        char *dot = strrchr(s->name, '.');
        if (dot)
            *dot = '\0';
    }
    for (size_t i = 0; i < s->nfaults; i++) {
        if (s->faults[i].at > s->duration) {
            p.line = s->faults[i].line;
            err = scn_perr(&p, "at %g: after the end of the run (duration %g s)", s->faults[i].at,
                       s->duration);
            goto done;
        }
    }
    for (size_t i = 0; i < s->nexpects; i++) {
        const char *g = s->expects[i].group;
        if (!sim_metric_known(s->expects[i].metric)) { /* caught now, not after the run */
            p.line = s->expects[i].line;
            err = scn_perr(&p, "expect: no metric \"%s\" (the names are in docs/simulation.md: "
                           "clients, registrations, cross_site, stranded_undemanded, ...)",
                       s->expects[i].metric);
            goto done;
        }
        bool found = !g;
        for (size_t k = 0; g && k < s->ngroups; k++)
            found = found || strcmp(s->groups[k].name, g) == 0;
        if (!found) {
            p.line = s->expects[i].line;
            err = scn_perr(&p, "expect: no client group named \"%s\"", g);
            goto done;
        }
    }
    if (s->nfaults)
        qsort(s->faults, s->nfaults, sizeof *s->faults, cmp_fault);
    *out = s;
    s = NULL;
done:
    free(buf);
    tsl_sim_scenario_free(s);
    return err;
}

int tsl_sim_scenario_load(tsl_sim_scenario **out, const char *path)
{
    char *text = NULL;
    size_t len = 0;
    int err;

    *out = NULL;
    if ((err = tsl_file_read(&text, &len, path, (size_t)1 << 24)) < 0)
        return err;
    err = tsl_sim_scenario_parse(out, text, len, path);
    free(text);
    return err;
}

static void selector_free(scn_selector *sel)
{
    free(sel->site);
    free(sel->department);
    free(sel->task);
    free(sel->group);
}

void tsl_sim_scenario_free(tsl_sim_scenario *s)
{
    if (!s)
        return;
    free(s->path);
    free(s->dir);
    free(s->name);
    free(s->description);
    free(s->inventory);
    free(s->policy);
    for (size_t i = 0; i < s->nselections; i++)
        free(s->selections[i]);
    for (size_t i = 0; i < s->ngroups; i++) {
        free(s->groups[i].name);
        free(s->groups[i].site);
        free(s->groups[i].department);
        free(s->groups[i].task);
        free(s->groups[i].subnet);
    }
    free(s->groups);
    for (size_t i = 0; i < s->nfaults; i++) {
        free(s->faults[i].a);
        free(s->faults[i].b);
    }
    free(s->faults);
    for (size_t i = 0; i < s->npromises; i++) {
        selector_free(&s->promises[i].sel);
        for (size_t k = 0; k < s->promises[i].nglobs; k++)
            free(s->promises[i].globs[k]);
        free(s->promises[i].globs);
        free(s->promises[i].text);
    }
    free(s->promises);
    for (size_t i = 0; i < s->nexpects; i++) {
        free(s->expects[i].group);
        free(s->expects[i].metric);
        free(s->expects[i].text);
    }
    free(s->expects);
    for (size_t i = 0; i < s->nservers; i++)
        free(s->servers[i].name);
    free(s->servers);
    free(s);
}

const char *tsl_sim_scenario_name(const tsl_sim_scenario *s)
{
    return s->name;
}
