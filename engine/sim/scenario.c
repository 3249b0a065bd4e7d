/*
 * scenario.c - reads a scenario file (format: docs/simulation.md).
 *
 * One directive per line, words separated by blanks, `#` starts a comment.
 * Options are `key=value` words.  Times are seconds, or take a unit:
 * 90, 90s, 10m, 2h.  File names are relative to the scenario's directory.
 * Every error names FILE:LINE.  Names of servers and sites are checked
 * against the inventory when the simulation starts (sim_estate.c).
 *
 * Used by: sim.c, `tsl simulate`.  Needs: sim_internal.h.
 */
#include "sim_internal.h"

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

static int grow(void **arr, size_t *cap, size_t need, size_t elem)
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

/* Appends a zeroed element to a SCN_ARRAY; *out points at it. */
#define PUSH(s, field, out)                                                      \
    push_((void **)&(s)->field, &(s)->n##field, &(s)->cap##field, sizeof *(s)->field, \
          (void **)&(out))

static int push_(void **arr, size_t *n, size_t *cap, size_t elem, void **out)
{
    int err;
    *out = NULL;
    if ((err = grow(arr, cap, *n + 1, elem)) < 0)
        return err;
    *out = (char *)*arr + (*n)++ * elem;
    return 0;
}

struct parser {
    tsl_sim_scenario *s;
    const char *path;
    int line;
};

static int perr(const struct parser *p, const char *fmt, ...) TSL_PRINTF(2, 3);
static int perr(const struct parser *p, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return tsl_seterr(TSL_EINVALID, "%s:%d: %s", p->path, p->line, msg);
}

static int sdup(char **out, const char *s)
{
    if (!(*out = strdup(s)))
        return tsl_oom();
    return 0;
}

/* A path relative to the scenario's directory. */
static int resolve_path(const struct parser *p, char **out, const char *name)
{
    if (name[0] == '/' || !p->s->dir[0])
        return sdup(out, name);
    size_t n = strlen(p->s->dir) + strlen(name) + 2;
    if (!(*out = malloc(n)))
        return tsl_oom();
    snprintf(*out, n, "%s/%s", p->s->dir, name);
    return 0;
}

/* "90", "90s", "10m", "2h", "1.5h": simulated seconds. */
static int parse_time(const struct parser *p, const char *what, const char *text, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    double unit = 1;
    if (end == text || errno || !isfinite(v) || v < 0)
        return perr(p, "%s: \"%s\" is not a time (seconds, or 90s, 10m, 2h)", what, text);
    if (*end == 's')
        end++;
    else if (*end == 'm')
        unit = 60, end++;
    else if (*end == 'h')
        unit = 3600, end++;
    if (*end)
        return perr(p, "%s: \"%s\" is not a time (seconds, or 90s, 10m, 2h)", what, text);
    *out = v * unit;
    if (*out > 10 * 365 * 86400.0)
        return perr(p, "%s: %s is too long", what, text);
    return 0;
}

static int parse_num(const struct parser *p, const char *what, const char *text, double lo,
                     double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || *end || errno || !isfinite(v))
        return perr(p, "%s: \"%s\" is not a number", what, text);
    if (v < lo || v > hi)
        return perr(p, "%s: %s is out of range (%g to %g)", what, text, lo, hi);
    *out = v;
    return 0;
}

/* Splits `key=value`; returns the value or NULL when the word has no '='. */
static const char *kv(char *word, const char **key)
{
    char *eq = strchr(word, '=');
    if (!eq)
        return NULL;
    *eq = '\0';
    *key = word;
    return eq + 1;
}

static int parse_selector(const struct parser *p, scn_selector *sel, const char *key,
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
        return perr(p, "%s= given twice", key);
    if (!val[0])
        return perr(p, "%s= needs a value", key);
    return sdup(slot, val);
}

/* ------------------------------------------------------------------------
 * Directives
 * ---------------------------------------------------------------------- */

static int d_clients(struct parser *p, char **w, int n)
{
    scn_group *g = NULL;
    int err;
    if (n < 2)
        return perr(p, "clients: give a count (or \"inventory\") and options");
    if ((err = PUSH(p->s, groups, g)) < 0)
        return err;
    g->line = p->line;
    if (strcmp(w[1], "inventory") == 0) {
        g->count = -1;
    } else {
        double v;
        if ((err = parse_num(p, "clients", w[1], 0, 100000, &v)) < 0)
            return err;
        g->count = (long)v;
    }
    for (int i = 2; i < n; i++) {
        const char *key, *val = kv(w[i], &key);
        char **slot = NULL;
        if (!val)
            return perr(p, "clients: \"%s\" is not key=value", w[i]);
        if (strcmp(key, "name") == 0)
            slot = &g->name;
        else if (strcmp(key, "site") == 0)
            slot = &g->site;
        else if (strcmp(key, "department") == 0)
            slot = &g->department;
        else if (strcmp(key, "task") == 0)
            slot = &g->task;
        else if (strcmp(key, "subnet") == 0)
            slot = &g->subnet;
        else
            return perr(p, "clients: unknown option \"%s\" (name, site, department, task, subnet)",
                        key);
        if (*slot)
            return perr(p, "clients: %s= given twice", key);
        if (!val[0])
            return perr(p, "clients: %s= needs a value", key);
        if ((err = sdup(slot, val)) < 0)
            return err;
    }
    if (g->count >= 0 && !g->site && !g->subnet)
        return perr(p, "clients: generated clients need site= or subnet=");
    if (g->count < 0 && (g->site || g->subnet))
        return perr(p, "clients inventory: site= and subnet= come from the inventory");
    if (!g->name) {
        char name[32];
        snprintf(name, sizeof name, "group%zu", p->s->ngroups);
        if ((err = sdup(&g->name, name)) < 0)
            return err;
    }
    for (size_t i = 0; i + 1 < p->s->ngroups; i++)
        if (strcmp(p->s->groups[i].name, g->name) == 0)
            return perr(p, "clients: a group named \"%s\" exists already", g->name);
    return 0;
}

static int d_at(struct parser *p, char **w, int n)
{
    static const struct {
        const char *word;
        scn_fault_kind kind;
        int args;
        const char *usage;
    } kinds[] = {
        {"stop", SCN_STOP, 1, "SERVER"},        {"kill", SCN_KILL, 1, "SERVER"},
        {"start", SCN_START, 1, "SERVER"},      {"site-dark", SCN_SITE_DARK, 1, "SITE"},
        {"site-up", SCN_SITE_UP, 1, "SITE"},    {"cut", SCN_CUT, 2, "SITE SERVER"},
        {"restore", SCN_RESTORE, 2, "SITE SERVER"}, {"broker-down", SCN_BROKER_DOWN, 0, ""},
        {"broker-up", SCN_BROKER_UP, 0, ""},    {"broker-restart", SCN_BROKER_RESTART, 0, ""},
        {"activate", SCN_ACTIVATE, 1, "POLICY.lua"},
    };
    scn_fault *f = NULL;
    double at;
    int err;
    if (n < 3)
        return perr(p, "at: give a time and an event (stop, kill, start, site-dark, site-up, "
                       "cut, restore, broker-down, broker-up, broker-restart, activate)");
    if ((err = parse_time(p, "at", w[1], &at)) < 0)
        return err;
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        if (strcmp(w[2], kinds[k].word) != 0)
            continue;
        if (n - 3 != kinds[k].args)
            return perr(p, "at: usage: at TIME %s %s", kinds[k].word, kinds[k].usage);
        if ((err = PUSH(p->s, faults, f)) < 0)
            return err;
        f->at = at;
        f->kind = kinds[k].kind;
        f->line = p->line;
        if (kinds[k].kind == SCN_ACTIVATE)
            err = resolve_path(p, &f->a, w[3]);
        else if (n > 3)
            err = sdup(&f->a, w[3]);
        if (err == 0 && n > 4)
            err = sdup(&f->b, w[4]);
        return err;
    }
    return perr(p, "at: unknown event \"%s\"", w[2]);
}

static int d_promise(struct parser *p, char **w, int n, char *text)
{
    scn_promise *pr = NULL;
    int err, i = 1;
    if ((err = PUSH(p->s, promises, pr)) < 0)
        return err;
    pr->line = p->line;
    if ((err = sdup(&pr->text, text)) < 0)
        return err;
    for (; i < n && strcmp(w[i], "only") != 0; i++) {
        const char *key, *val = kv(w[i], &key);
        bool taken;
        if (!val)
            return perr(p, "promise: \"%s\" is not key=value (site, department, task, group) "
                           "or \"only\"", w[i]);
        if ((err = parse_selector(p, &pr->sel, key, val, &taken)) < 0)
            return err;
        if (!taken)
            return perr(p, "promise: unknown selector \"%s\" (site, department, task, group)",
                        key);
    }
    if (i >= n)
        return perr(p, "promise: usage: promise [site=S] [department=D] [task=T] [group=G] "
                       "only GLOB... [from TIME] [until TIME]");
    pr->until = INFINITY;
    for (i++; i < n; i++) {
        if (strcmp(w[i], "from") == 0 || strcmp(w[i], "until") == 0) {
            bool from = w[i][0] == 'f';
            if (i + 1 >= n || (from && pr->from > 0) || (!from && isfinite(pr->until)))
                return perr(p, "promise: \"%s TIME\", once", w[i]);
            if ((err = parse_time(p, from ? "promise from" : "promise until", w[i + 1],
                                  from ? &pr->from : &pr->until)) < 0)
                return err;
            i++;
            if (i + 1 < n && strcmp(w[i + 1], "from") != 0 && strcmp(w[i + 1], "until") != 0)
                return perr(p, "promise: \"from TIME\" and \"until TIME\" end the line");
            continue;
        }
        char **g = realloc(pr->globs, (pr->nglobs + 1) * sizeof *g);
        if (!g)
            return tsl_oom();
        pr->globs = g;
        if ((err = sdup(&pr->globs[pr->nglobs], w[i])) < 0)
            return err;
        pr->nglobs++;
    }
    if (pr->nglobs == 0)
        return perr(p, "promise: \"only\" needs at least one server name or glob");
    if (pr->until <= pr->from)
        return perr(p, "promise: \"until\" must come after \"from\"");
    return 0;
}

static int d_expect(struct parser *p, char **w, int n, char *text)
{
    static const char *const ops[] = {"==", "!=", "<", "<=", ">", ">="};
    scn_expect *x = NULL;
    int err;
    if (n != 4)
        return perr(p, "expect: usage: expect [GROUP:]METRIC OP NUMBER");
    if ((err = PUSH(p->s, expects, x)) < 0)
        return err;
    x->line = p->line;
    if ((err = sdup(&x->text, text)) < 0)
        return err;
    char *colon = strchr(w[1], ':');
    if (colon) {
        *colon = '\0';
        if ((err = sdup(&x->group, w[1])) < 0)
            return err;
        if ((err = sdup(&x->metric, colon + 1)) < 0)
            return err;
    } else if ((err = sdup(&x->metric, w[1])) < 0) {
        return err;
    }
    size_t k;
    for (k = 0; k < 6 && strcmp(ops[k], w[2]) != 0; k++)
        ;
    if (k == 6)
        return perr(p, "expect: \"%s\" is not one of == != < <= > >=", w[2]);
    x->op = (scn_op)k;
    return parse_num(p, "expect", w[3], -1e18, 1e18, &x->value);
}

static int d_timing(struct parser *p, char **w, int n)
{
    tsl_sim_scenario *s = p->s;
    int err;
    for (int i = 1; i < n; i++) {
        const char *key, *val = kv(w[i], &key);
        double v;
        if (!val)
            return perr(p, "agent: \"%s\" is not key=value", w[i]);
        if (strcmp(key, "refresh") == 0) {
            if ((err = parse_num(p, "agent refresh", val, 0.01, 1, &v)) < 0)
                return err;
            s->agent.refresh = v;
            continue;
        }
        double *slot = strcmp(key, "poll") == 0               ? &s->agent.poll_interval
                       : strcmp(key, "retry") == 0            ? &s->agent.retry_min
                       : strcmp(key, "retry-max") == 0        ? &s->agent.retry_max
                       : strcmp(key, "stuck-retry") == 0      ? &s->agent.stuck_retry
                       : strcmp(key, "timeout") == 0          ? &s->agent.request_timeout
                       : strcmp(key, "register-timeout") == 0 ? &s->agent.register_timeout
                                                              : NULL;
        if (!slot)
            return perr(p, "agent: unknown setting \"%s\" (poll, retry, retry-max, stuck-retry, "
                           "timeout, register-timeout, refresh)", key);
        if ((err = parse_time(p, key, val, &v)) < 0)
            return err;
        if (v <= 0)
            return perr(p, "agent %s: must be more than 0", key);
        *slot = v;
    }
    if (s->agent.retry_max < s->agent.retry_min)
        return perr(p, "agent: retry-max is below retry");
    return 0;
}

static int d_broker(struct parser *p, char **w, int n)
{
    tsl_settings *b = &p->s->broker;
    int err;
    for (int i = 1; i < n; i++) {
        const char *key, *val = kv(w[i], &key);
        double v;
        if (!val)
            return perr(p, "broker: \"%s\" is not key=value", w[i]);
        if (strcmp(key, "stale-after") == 0) {
            if ((err = parse_time(p, key, val, &v)) < 0)
                return err;
            b->stale_after = (int64_t)v;
        } else if (strcmp(key, "error-window") == 0) {
            if ((err = parse_time(p, key, val, &v)) < 0)
                return err;
            b->error_window = (int64_t)v;
        } else if (strcmp(key, "ttl") == 0) {
            if ((err = parse_time(p, key, val, &v)) < 0)
                return err;
            if (v < 1)
                return perr(p, "broker ttl: at least 1 second");
            b->ttl = (int)v;
        } else if (strcmp(key, "max") == 0) {
            if ((err = parse_num(p, key, val, 1, 1000, &v)) < 0)
                return err;
            b->max = (int)v;
        } else {
            return perr(p, "broker: unknown setting \"%s\" (stale-after, error-window, ttl, max)",
                        key);
        }
    }
    return 0;
}

static int d_server(struct parser *p, char **w, int n)
{
    scn_server *sv = NULL;
    int err;
    if (n < 3)
        return perr(p, "server: usage: server NAME [capacity=N] [response-ms=N]");
    if ((err = PUSH(p->s, servers, sv)) < 0)
        return err;
    sv->capacity = sv->response_ms = -1;
    if ((err = sdup(&sv->name, w[1])) < 0)
        return err;
    for (int i = 2; i < n; i++) {
        const char *key, *val = kv(w[i], &key);
        double v;
        if (!val)
            return perr(p, "server: \"%s\" is not key=value", w[i]);
        if (strcmp(key, "capacity") == 0) {
            if ((err = parse_num(p, key, val, 0, 1e9, &v)) < 0)
                return err;
            sv->capacity = (int64_t)v;
        } else if (strcmp(key, "response-ms") == 0) {
            if ((err = parse_num(p, key, val, 0, 1e6, &v)) < 0)
                return err;
            sv->response_ms = (int64_t)v;
        } else {
            return perr(p, "server: unknown setting \"%s\" (capacity, response-ms)", key);
        }
    }
    return 0;
}

static int directive(struct parser *p, char **w, int n, char *text)
{
    tsl_sim_scenario *s = p->s;
    const char *d = w[0];
    double v;
    int err;

    if (strcmp(d, "name") == 0 || strcmp(d, "description") == 0) {
        char **slot = d[0] == 'n' ? &s->name : &s->description;
        const char *rest = text + strlen(d);
        while (*rest == ' ' || *rest == '\t')
            rest++;
        if (!*rest)
            return perr(p, "%s: needs text", d);
        if (*slot)
            return perr(p, "%s given twice", d);
        return sdup(slot, rest);
    }
    if (strcmp(d, "inventory") == 0 || strcmp(d, "policy") == 0) {
        char **slot = d[0] == 'i' ? &s->inventory : &s->policy;
        if (n != 2)
            return perr(p, "%s: give one file", d);
        if (*slot)
            return perr(p, "%s given twice", d);
        return resolve_path(p, slot, w[1]);
    }
    if (strcmp(d, "selection") == 0) {
        if (n < 2 || n > 4)
            return perr(p, "selection: one to three of capacity, responsiveness, connections");
        if (s->nselections)
            return perr(p, "selection given twice");
        for (int i = 1; i < n; i++) {
            tsl_selection sel;
            if (tsl_selection_parse(&sel, w[i]) < 0)
                return perr(p, "selection: \"%s\" is not capacity, responsiveness or "
                               "connections", w[i]);
            if ((err = sdup(&s->selections[s->nselections++], w[i])) < 0)
                return err;
        }
        return 0;
    }
    if (n != 2 && (strcmp(d, "speed") == 0 || strcmp(d, "duration") == 0 ||
                   strcmp(d, "seed") == 0 || strcmp(d, "start-spread") == 0 ||
                   strcmp(d, "heartbeat") == 0))
        return perr(p, "%s: give one value", d);
    if (strcmp(d, "speed") == 0) {
        if (strcmp(w[1], "max") == 0) { /* as fast as it goes */
            s->speed = 0;
            return 0;
        }
        return parse_num(p, d, w[1], 0.1, 100000, &s->speed);
    }
    if (strcmp(d, "duration") == 0) {
        if ((err = parse_time(p, d, w[1], &s->duration)) < 0)
            return err;
        return s->duration >= 1 ? 0 : perr(p, "duration: at least 1 second");
    }
    if (strcmp(d, "start-spread") == 0)
        return parse_time(p, d, w[1], &s->start_spread);
    if (strcmp(d, "heartbeat") == 0) {
        if ((err = parse_time(p, d, w[1], &s->heartbeat)) < 0)
            return err;
        return s->heartbeat >= 1 ? 0 : perr(p, "heartbeat: at least 1 second");
    }
    if (strcmp(d, "seed") == 0) {
        if ((err = parse_num(p, d, w[1], 0, 9007199254740992.0, &v)) < 0)
            return err;
        s->seed = (uint64_t)v;
        return 0;
    }
    if (strcmp(d, "clients") == 0)
        return d_clients(p, w, n);
    if (strcmp(d, "at") == 0)
        return d_at(p, w, n);
    if (strcmp(d, "promise") == 0)
        return d_promise(p, w, n, text);
    if (strcmp(d, "expect") == 0)
        return d_expect(p, w, n, text);
    if (strcmp(d, "agent") == 0)
        return d_timing(p, w, n);
    if (strcmp(d, "broker") == 0)
        return d_broker(p, w, n);
    if (strcmp(d, "server") == 0)
        return d_server(p, w, n);
    return perr(p, "unknown directive \"%s\"", d);
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
    if ((err = sdup(&s->path, p.path)) < 0 || (err = sdup(&s->dir, p.path)) < 0)
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
                err = perr(&p, "more than %d words", MAX_WORDS);
                goto done;
            }
            w[n++] = tok;
        }
        err = directive(&p, w, n, copy);
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
        if ((err = sdup(&s->name, base ? base + 1 : p.path)) < 0)
            goto done;
        char *dot = strrchr(s->name, '.');
        if (dot)
            *dot = '\0';
    }
    for (size_t i = 0; i < s->nfaults; i++) {
        if (s->faults[i].at > s->duration) {
            p.line = s->faults[i].line;
            err = perr(&p, "at %g: after the end of the run (duration %g s)", s->faults[i].at,
                       s->duration);
            goto done;
        }
    }
    for (size_t i = 0; i < s->nexpects; i++) {
        const char *g = s->expects[i].group;
        if (!sim_metric_known(s->expects[i].metric)) { /* caught now, not after the run */
            p.line = s->expects[i].line;
            err = perr(&p, "expect: no metric \"%s\" (the names are in docs/simulation.md: "
                           "clients, registrations, cross_site, stranded_undemanded, ...)",
                       s->expects[i].metric);
            goto done;
        }
        bool found = !g;
        for (size_t k = 0; g && k < s->ngroups; k++)
            found = found || strcmp(s->groups[k].name, g) == 0;
        if (!found) {
            p.line = s->expects[i].line;
            err = perr(&p, "expect: no client group named \"%s\"", g);
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
