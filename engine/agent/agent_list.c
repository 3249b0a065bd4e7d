/*
 * agent_list.c - the agent's view of a Task Server list: parsing the
 * broker's JSON, the per-server failure memory, and the choice of the next
 * entry to try (tsl_agent_pick).  Pure functions, no I/O: the state machine
 * in agent.c calls them, and tests call them directly.
 *
 * Used by: agent.c, tests/test_agent.c.  Needs: jansson, agent.h.
 */
#include "agent.h"

#include "common.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tsl_agent_list {
    tsl_agent_entry *e;
    size_t n;
    char *site, *policy;
    bool blocked, strict;
    int ttl;
    double received;  /* agent time it arrived (usable_in counts from here) */
};

/* ------------------------------------------------------------------------
 * Parsing
 * ---------------------------------------------------------------------- */

void tsl_agent_list_free(tsl_agent_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++) {
        free((char *)l->e[i].name);
        free((char *)l->e[i].host);
        free((char *)l->e[i].ip);
        free((char *)l->e[i].site);
        free((char *)l->e[i].reason);
    }
    free(l->e);
    free(l->site);
    free(l->policy);
    free(l);
}

/* A copy of an optional string member ("" when absent or null). */
static int dup_member(char **out, json_t *obj, const char *key, size_t i)
{
    json_t *v = json_object_get(obj, key);
    const char *s = "";
    *out = NULL;
    if (v && json_is_string(v))
        s = json_string_value(v);
    else if (v && !json_is_null(v))
        return tsl_seterr(TSL_EINVALID, "servers[%zu].%s: expected a string", i, key);
    if (!(*out = strdup(s)))
        return tsl_oom();
    return 0;
}

static int int_member(int64_t *out, json_t *obj, const char *key, size_t i)
{
    json_t *v = json_object_get(obj, key);
    *out = 0;
    if (!v || json_is_null(v))
        return 0;
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return 0;
    }
    if (json_is_real(v)) {
        *out = (int64_t)json_real_value(v);
        return 0;
    }
    return tsl_seterr(TSL_EINVALID, "servers[%zu].%s: expected a number", i, key);
}

int tsl_agent_list_parse(tsl_agent_list **out, const char *text, size_t len)
{
    json_error_t jerr;
    json_t *doc = NULL;
    tsl_agent_list *l = NULL;
    int err = 0;

    *out = NULL;
    if (!(doc = json_loadb(text, len, 0, &jerr))) {
        err = tsl_seterr(TSL_EINVALID, "list: invalid JSON at line %d: %s", jerr.line, jerr.text);
        goto done;
    }
    if (!json_is_object(doc)) {
        err = tsl_seterr(TSL_EINVALID, "list: expected a JSON object");
        goto done;
    }
    if (!(l = calloc(1, sizeof *l))) {
        err = tsl_oom();
        goto done;
    }
    json_t *v;
    if ((v = json_object_get(doc, "site")) && json_is_string(v) &&
        !(l->site = strdup(json_string_value(v)))) {
        err = tsl_oom();
        goto done;
    }
    if ((v = json_object_get(doc, "policy")) && json_is_string(v) &&
        !(l->policy = strdup(json_string_value(v)))) {
        err = tsl_oom();
        goto done;
    }
    l->blocked = json_is_true(json_object_get(doc, "blocked"));
    l->strict = json_is_true(json_object_get(doc, "strict"));
    v = json_object_get(doc, "ttl");
    l->ttl = v && json_is_integer(v) && json_integer_value(v) > 0 &&
                     json_integer_value(v) < 10 * 365 * 86400
                 ? (int)json_integer_value(v)
                 : 0;

    json_t *arr = json_object_get(doc, "servers");
    if (!arr || !json_is_array(arr)) {
        err = tsl_seterr(TSL_EINVALID, "list: \"servers\" must be an array");
        goto done;
    }
    size_t n = json_array_size(arr);
    if (n > 4096) {
        err = tsl_seterr(TSL_ELIMIT, "list: %zu servers (at most 4096)", n);
        goto done;
    }
    if (n && !(l->e = calloc(n, sizeof *l->e))) {
        err = tsl_oom();
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(arr, i);
        tsl_agent_entry *e = &l->e[i];
        int64_t tier, after;
        if (!json_is_object(o)) {
            err = tsl_seterr(TSL_EINVALID, "servers[%zu]: expected an object", i);
            goto done;
        }
        l->n = i + 1; /* so that free() sees the strings of this entry */
        if ((err = dup_member((char **)&e->name, o, "name", i)) < 0 ||
            (err = dup_member((char **)&e->host, o, "host", i)) < 0 ||
            (err = dup_member((char **)&e->ip, o, "ip", i)) < 0 ||
            (err = dup_member((char **)&e->site, o, "site", i)) < 0 ||
            (err = dup_member((char **)&e->reason, o, "reason", i)) < 0 ||
            (err = int_member(&tier, o, "tier", i)) < 0 ||
            (err = int_member(&after, o, "after", i)) < 0 ||
            (err = int_member(&e->capacity, o, "capacity", i)) < 0 ||
            (err = int_member(&e->connections, o, "connections", i)) < 0 ||
            (err = int_member(&e->response_ms, o, "response_ms", i)) < 0)
            goto done;
        if (!e->name[0]) {
            err = tsl_seterr(TSL_EINVALID, "servers[%zu].name: missing", i);
            goto done;
        }
        if (tier < 0 || tier > 1000 || after < 0 || after > 365 * 86400) {
            err = tsl_seterr(TSL_EINVALID, "servers[%zu]: tier or after out of range", i);
            goto done;
        }
        e->tier = (int)tier;
        e->after = (int)after;
        json_t *ui = json_object_get(o, "usable_in");
        e->usable_in = -1;
        if (ui && (!json_is_integer(ui) || json_integer_value(ui) < 0 ||
                   json_integer_value(ui) > 365 * 86400)) {
            err = tsl_seterr(TSL_EINVALID, "servers[%zu].usable_in: expected seconds", i);
            goto done;
        }
        if (ui)
            e->usable_in = json_integer_value(ui);
        e->full = json_is_true(json_object_get(o, "full"));
        e->recent_error = json_is_true(json_object_get(o, "recent_error"));
    }
    *out = l;
    l = NULL;
done:
    tsl_agent_list_free(l);
    json_decref(doc);
    return err;
}

void tsl_agent_list_set_received(tsl_agent_list *l, double at)
{
    if (l)
        l->received = at;
}

size_t tsl_agent_list_count(const tsl_agent_list *l)
{
    return l ? l->n : 0;
}

const tsl_agent_entry *tsl_agent_list_get(const tsl_agent_list *l, size_t i)
{
    return l && i < l->n ? &l->e[i] : NULL;
}

bool tsl_agent_list_blocked(const tsl_agent_list *l)
{
    return l && l->blocked;
}

bool tsl_agent_list_strict(const tsl_agent_list *l)
{
    return l && l->strict;
}

int tsl_agent_list_ttl(const tsl_agent_list *l)
{
    return l ? l->ttl : 0;
}

const char *tsl_agent_list_site(const tsl_agent_list *l)
{
    return l ? l->site : NULL;
}

const char *tsl_agent_list_policy(const tsl_agent_list *l)
{
    return l ? l->policy : NULL;
}

/* ------------------------------------------------------------------------
 * Failure memory
 * ---------------------------------------------------------------------- */

static int memory_find(const tsl_agent_memory *m, const char *name)
{
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->slot[i].name, name) == 0)
            return (int)i;
    return -1;
}

void tsl_agent_memory_fail(tsl_agent_memory *m, const char *name, double now)
{
    int i = memory_find(m, name);
    if (i < 0) {
        if (m->n < TSL_AGENT_MEMORY) {
            i = (int)m->n++;
        } else { /* forget the slot whose last failure is oldest */
            i = 0;
            for (size_t k = 1; k < m->n; k++)
                if (m->slot[k].last_failure < m->slot[i].last_failure)
                    i = (int)k;
        }
        snprintf(m->slot[i].name, sizeof m->slot[i].name, "%s", name);
        m->slot[i].failing_since = 0;
    }
    if (m->slot[i].failing_since == 0)
        m->slot[i].failing_since = now > 0 ? now : 1e-9;
    m->slot[i].last_failure = now;
}

void tsl_agent_memory_ok(tsl_agent_memory *m, const char *name)
{
    int i = memory_find(m, name);
    if (i >= 0)
        m->slot[i].failing_since = 0;
}

double tsl_agent_memory_failing_since(const tsl_agent_memory *m, const char *name)
{
    int i = memory_find(m, name);
    return i < 0 ? 0 : m->slot[i].failing_since;
}

double tsl_agent_memory_last_failure(const tsl_agent_memory *m, const char *name)
{
    int i = memory_find(m, name);
    return i < 0 ? 0 : m->slot[i].last_failure;
}

bool tsl_agent_memory_failed_ever(const tsl_agent_memory *m, const char *name)
{
    return memory_find(m, name) >= 0;
}

/* ------------------------------------------------------------------------
 * The choice
 * ---------------------------------------------------------------------- */

/* Demotion class within a tier when the list is not strict: 0 best. */
static int demotion(const tsl_agent_entry *e, const tsl_agent_memory *m)
{
    int d = 0;
    if (e->recent_error || tsl_agent_memory_failing_since(m, e->name) > 0)
        d += 2;
    if (e->full)
        d += 1;
    return d;
}

int tsl_agent_pick(const tsl_agent_list *l, const tsl_agent_memory *m, const bool *tried,
                   double now, double *wait_until)
{
    *wait_until = 0;
    if (!l || l->n == 0)
        return -1;

    /* Walk the tiers in ascending order; every entry of a tier must have
     * been tried before the next tier is considered. */
    int tier = -1;
    for (;;) {
        int next = -1; /* the smallest tier above `tier` */
        for (size_t i = 0; i < l->n; i++)
            if (l->e[i].tier > tier && (next < 0 || l->e[i].tier < next))
                next = l->e[i].tier;
        if (next < 0)
            return -1; /* every tier exhausted */
        tier = next;

        /* When all earlier tiers have been failing long enough: the latest
         * failing_since among them (they were all tried, so all fail). */
        double earlier_since = 0;
        bool earlier_all_failing = true, any_earlier = false;
        for (size_t i = 0; i < l->n; i++) {
            if (l->e[i].tier >= tier)
                continue;
            any_earlier = true;
            double s = tsl_agent_memory_failing_since(m, l->e[i].name);
            if (s == 0)
                earlier_all_failing = false;
            else if (s > earlier_since)
                earlier_since = s;
        }

        int best = -1, best_d = 0;
        bool pending = false;  /* untried entries remain in this tier */
        double soonest = 0;
        for (size_t i = 0; i < l->n; i++) {
            const tsl_agent_entry *e = &l->e[i];
            if (e->tier != tier || tried[i])
                continue;
            pending = true;
            /* the broker already saw the approved servers down: not before
             * their outage has lasted `after` (usable_in from the answer) */
            if (e->usable_in > 0 && now < l->received + (double)e->usable_in) {
                double at = l->received + (double)e->usable_in;
                if (soonest == 0 || at < soonest)
                    soonest = at;
                continue;
            }
            if (e->after > 0 && any_earlier) {
                double at = earlier_all_failing ? earlier_since + e->after : 0;
                if (!earlier_all_failing || now < at) {
                    if (at > 0 && (soonest == 0 || at < soonest))
                        soonest = at;
                    continue;
                }
            }
            int d = l->strict ? 0 : demotion(e, m);
            if (best < 0 || d < best_d) {
                best = (int)i;
                best_d = d;
            }
        }
        if (best >= 0)
            return best;
        if (pending) { /* gated by `after`: this tier must wait, and so do later ones */
            *wait_until = soonest;
            return -1;
        }
    }
}
