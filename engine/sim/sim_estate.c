/*
 * sim_estate.c - the simulated estate: reads the scenario's inventory (the
 * JSON document `tsl import` takes), creates one simulated Task Server per
 * server it lists, and one simulated client per inventory client (`clients
 * inventory`) or per generated client (`clients N site=...`).  Generated
 * clients get deterministic GUIDs and IPs inside their site's subnet, and
 * are added to the document the broker imports, so it knows them too.
 *
 * The simulator's own idea of sites (longest prefix over the sites' subnets,
 * explicit site first) is what its figures use: it is computed here,
 * independently of the engine under test.
 *
 * Used by: sim.c.  Needs: sim_internal.h, jansson.
 */
#include "sim_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------------
 * Lookups
 * ---------------------------------------------------------------------- */

int sim_find_site(const sim *s, const char *name)
{
    for (size_t i = 0; i < s->nsites; i++)
        if (strcasecmp(s->sites[i].name, name) == 0)
            return (int)i;
    return -1;
}

int sim_find_server(const sim *s, const char *name)
{
    for (size_t i = 0; i < s->nts; i++)
        if (strcasecmp(s->ts[i].name, name) == 0)
            return (int)i;
    return -1;
}

static bool in_subnet(const tsl_ip *ip, const sim_subnet *n)
{
    int full = n->bits / 8, rest = n->bits % 8;
    if (memcmp(ip->b, n->net.b, (size_t)full) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (ip->b[full] & mask) == (n->net.b[full] & mask);
}

int sim_site_of_ip(const sim *s, const char *text)
{
    tsl_ip ip;
    int best = -1, best_bits = -1;
    if (!text || tsl_ip_parse(&ip, text) < 0)
        return -1;
    for (size_t i = 0; i < s->nsites; i++)
        for (size_t k = 0; k < s->sites[i].nsubnets; k++)
            if (s->sites[i].subnets[k].bits > best_bits && in_subnet(&ip, &s->sites[i].subnets[k])) {
                best = (int)i;
                best_bits = s->sites[i].subnets[k].bits;
            }
    return best;
}

/* ------------------------------------------------------------------------
 * Reading
 * ---------------------------------------------------------------------- */

static const char *str_member(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return v && json_is_string(v) ? json_string_value(v) : NULL;
}

static int64_t int_member(json_t *o, const char *key, int64_t dflt)
{
    json_t *v = json_object_get(o, key);
    if (v && json_is_integer(v))
        return json_integer_value(v);
    if (v && json_is_real(v))
        return (int64_t)json_real_value(v);
    return dflt;
}

static int load_sites(sim *s, json_t *arr, const char *path)
{
    size_t n = json_is_array(arr) ? json_array_size(arr) : 0;
    if (n == 0)
        return tsl_seterr(TSL_EINVALID, "%s: no sites", path);
    if (!(s->sites = calloc(n, sizeof *s->sites)))
        return tsl_oom();
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(arr, i), *subs;
        const char *name = str_member(o, "name"), *country = str_member(o, "country");
        sim_site *site = &s->sites[s->nsites];
        if (!name)
            return tsl_seterr(TSL_EINVALID, "%s: sites[%zu]: no name", path, i);
        if (!(site->name = strdup(name)) || (country && !(site->country = strdup(country))))
            return tsl_oom();
        s->nsites++;
        subs = json_object_get(o, "subnets");
        size_t ns = json_is_array(subs) ? json_array_size(subs) : 0;
        if (ns && !(site->subnets = calloc(ns, sizeof *site->subnets)))
            return tsl_oom();
        for (size_t k = 0; k < ns; k++) {
            json_t *c = json_array_get(subs, k);
            if (!json_is_string(c) ||
                tsl_cidr_parse(&site->subnets[k].net, &site->subnets[k].bits,
                               json_string_value(c)) < 0)
                return tsl_seterr(TSL_EINVALID, "%s: sites[%zu] (%s): subnets[%zu] is not a CIDR",
                                  path, i, name, k);
            site->nsubnets++;
        }
    }
    return 0;
}

static int load_servers(sim *s, json_t *arr, const char *path)
{
    const tsl_sim_scenario *scn = s->scn;
    size_t n = json_is_array(arr) ? json_array_size(arr) : 0;
    if (n == 0)
        return tsl_seterr(TSL_EINVALID, "%s: no task_servers", path);
    if (!(s->ts = calloc(n, sizeof *s->ts)))
        return tsl_oom();
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(arr, i), *sites = json_object_get(o, "sites");
        const char *name = str_member(o, "name"), *ip = str_member(o, "ip");
        const char *service = str_member(o, "service");
        sim_ts *t = &s->ts[s->nts];
        if (!name)
            return tsl_seterr(TSL_EINVALID, "%s: task_servers[%zu]: no name", path, i);
        if (sim_find_server(s, name) >= 0)
            return tsl_seterr(TSL_EINVALID, "%s: task server %s is listed twice", path, name);
        if (!(t->name = strdup(name)))
            return tsl_oom();
        t->sim = s;
        t->index = s->nts++;
        t->site = -1;
        if (json_is_array(sites) && json_array_size(sites) > 0 &&
            json_is_string(json_array_get(sites, 0)))
            t->site = sim_find_site(s, json_string_value(json_array_get(sites, 0)));
        if (t->site < 0)
            t->site = sim_site_of_ip(s, ip);
        t->capacity = int_member(o, "capacity", 5000);
        t->response_ms = int_member(o, "response_ms", 20);
        bool registered = !json_is_false(json_object_get(o, "registered"));
        t->state = registered && (!service || strcmp(service, "running") == 0) ? TS_UP
                                                                                 : TS_STOPPED;
        for (size_t k = 0; k < scn->nservers; k++) {
            if (strcasecmp(scn->servers[k].name, name) != 0)
                continue;
            if (scn->servers[k].capacity >= 0)
                t->capacity = scn->servers[k].capacity;
            if (scn->servers[k].response_ms >= 0)
                t->response_ms = scn->servers[k].response_ms;
        }
        /* what the broker starts from: the simulated server's own figures */
        json_object_set_new(o, "capacity", json_integer(t->capacity));
        json_object_set_new(o, "response_ms", json_integer(t->response_ms));
        json_object_set_new(o, "connections", json_integer(0));
    }
    for (size_t k = 0; k < scn->nservers; k++)
        if (sim_find_server(s, scn->servers[k].name) < 0)
            return tsl_seterr(TSL_EINVALID, "%s: \"server %s\": no such server in %s", scn->path,
                              scn->servers[k].name, path);
    return 0;
}

/* A deterministic GUID for the k-th client of group g. */
static void make_guid(char *dst, size_t n, uint64_t seed, size_t g, size_t k)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + ((uint64_t)g << 32) + k + 1;
    uint64_t a = tsl_hash_mix(x, 0x1234567), b = tsl_hash_mix(a, x);
    snprintf(dst, n, "%08X-%04X-4%03X-8%03X-%012llX", (unsigned)(a >> 32),
             (unsigned)(a >> 16) & 0xffff, (unsigned)a & 0xfff, (unsigned)(b >> 52) & 0xfff,
             (unsigned long long)(b & 0xffffffffffffull));
}

/* The k-th address of a subnet, past the first few (servers live there). */
static void nth_address(char *dst, size_t n, const sim_subnet *sn, uint64_t k)
{
    tsl_ip ip = sn->net;
    int hostbits = 128 - sn->bits;
    uint64_t size = hostbits >= 32 ? (1ull << 32) : (1ull << hostbits);
    uint64_t skip = size > 4096 ? 1024 : size / 4;
    uint64_t usable = size > skip + 2 ? size - skip - 1 : 1;
    uint64_t off = skip + k % usable;
    for (int i = 15; i >= 0 && off; i--) {
        uint64_t v = ip.b[i] + (off & 0xff);
        ip.b[i] = (uint8_t)v;
        off = (off >> 8) + (v >> 8);
    }
    tsl_ip_format(dst, n, &ip);
}

static int add_client(sim *s, size_t group, const char *guid, const char *ip, const char *dept,
                      const char *task, int site)
{
    sim_client *c = &s->clients[s->nclients++];
    snprintf(c->guid, sizeof c->guid, "%s", guid);
    snprintf(c->ip, sizeof c->ip, "%s", ip);
    c->department = dept;
    c->task = task;
    c->site = site;
    c->group = group;
    c->server = -1;
    c->tier = -1;
    c->watch = -1;
    return 0;
}

static int load_clients(sim *s, json_t *doc, const char *path)
{
    const tsl_sim_scenario *scn = s->scn;
    json_t *arr = json_object_get(doc, "clients");
    size_t ninv = json_is_array(arr) ? json_array_size(arr) : 0, total = 0;
    int err;

    if (!arr) {
        if (!(arr = json_array()) || json_object_set_new(doc, "clients", arr) < 0)
            return tsl_oom();
    } else if (!json_is_array(arr)) {
        return tsl_seterr(TSL_EINVALID, "%s: \"clients\" must be an array", path);
    }
    for (size_t g = 0; g < scn->ngroups; g++)
        total += scn->groups[g].count < 0 ? ninv : (size_t)scn->groups[g].count;
    if (total == 0)
        return tsl_seterr(TSL_EINVALID, "%s: no clients to simulate", scn->path);
    if (total > 100000)
        return tsl_seterr(TSL_ELIMIT, "%s: %zu clients (at most 100000)", scn->path, total);
    if (!(s->clients = calloc(total, sizeof *s->clients)))
        return tsl_oom();

    for (size_t g = 0; g < scn->ngroups; g++) {
        const scn_group *grp = &scn->groups[g];
        if (grp->count < 0) { /* the inventory's own clients */
            for (size_t i = 0; i < ninv; i++) {
                json_t *o = json_array_get(arr, i);
                const char *guid = str_member(o, "guid"), *ip = str_member(o, "ip");
                const char *site = str_member(o, "site");
                if (!guid || !ip)
                    return tsl_seterr(TSL_EINVALID, "%s: clients[%zu]: the simulator needs "
                                                    "guid and ip", path, i);
                if (strlen(guid) >= sizeof s->clients[0].guid)
                    return tsl_seterr(TSL_EINVALID, "%s: clients[%zu]: GUID too long", path, i);
                int st = site ? sim_find_site(s, site) : sim_site_of_ip(s, ip);
                const char *dept = grp->department ? grp->department
                                                   : str_member(o, "department");
                if ((err = add_client(s, g, guid, ip, dept, grp->task, st)) < 0)
                    return err;
            }
            continue;
        }
        sim_subnet sn;
        int site = -1;
        if (grp->subnet) {
            if (tsl_cidr_parse(&sn.net, &sn.bits, grp->subnet) < 0)
                return tsl_seterr(TSL_EINVALID, "%s:%d: subnet=%s: %s", scn->path, grp->line,
                                  grp->subnet, tsl_error_last());
        }
        if (grp->site) {
            if ((site = sim_find_site(s, grp->site)) < 0)
                return tsl_seterr(TSL_EINVALID, "%s:%d: site=%s: no such site in %s", scn->path,
                                  grp->line, grp->site, path);
            if (!grp->subnet) {
                const sim_site *st = &s->sites[site];
                if (st->nsubnets == 0)
                    return tsl_seterr(TSL_EINVALID, "%s:%d: site %s has no subnet to place "
                                                    "clients in", scn->path, grp->line, st->name);
                sn = st->subnets[0];
                for (size_t k = 0; k < st->nsubnets; k++) /* IPv4 first, as most estates */
                    if (st->subnets[k].bits >= 96 && st->subnets[k].net.b[10] == 0xff) {
                        sn = st->subnets[k];
                        break;
                    }
            }
        }
        for (long k = 0; k < grp->count; k++) {
            char guid[40], ip[48], name[64];
            make_guid(guid, sizeof guid, scn->seed, g, (size_t)k);
            nth_address(ip, sizeof ip, &sn, (uint64_t)k);
            int st = sim_site_of_ip(s, ip);
            if (grp->site && st != site)
                return tsl_seterr(TSL_EINVALID, "%s:%d: generated address %s is not in site %s",
                                  scn->path, grp->line, ip, grp->site);
            snprintf(name, sizeof name, "SIM-%s-%05ld", grp->name, k + 1);
            json_t *o = json_pack("{s:s, s:s, s:s}", "guid", guid, "name", name, "ip", ip);
            if (!o || (grp->department &&
                       json_object_set_new(o, "department", json_string(grp->department)) < 0) ||
                json_array_append_new(arr, o) < 0)
                return tsl_oom();
            if ((err = add_client(s, g, guid, ip, grp->department, grp->task, st)) < 0)
                return err;
        }
    }
    return 0;
}

static int index_clients(sim *s)
{
    size_t slots = 16;
    while (slots < s->nclients * 2)
        slots *= 2;
    if (!(s->guid_index = calloc(slots, sizeof *s->guid_index)))
        return tsl_oom();
    s->guid_mask = slots - 1;
    for (size_t i = 0; i < s->nclients; i++) {
        if (sim_find_client(s, s->clients[i].guid) >= 0)
            return tsl_seterr(TSL_EINVALID, "%s: client GUID %s appears twice", s->scn->path,
                              s->clients[i].guid);
        size_t h = (size_t)tsl_hash_str(s->clients[i].guid) & s->guid_mask;
        while (s->guid_index[h])
            h = (h + 1) & s->guid_mask;
        s->guid_index[h] = (uint32_t)i + 1;
    }
    return 0;
}

long sim_find_client(const sim *s, const char *guid)
{
    if (!s->guid_index)
        return -1;
    size_t h = (size_t)tsl_hash_str(guid) & s->guid_mask;
    while (s->guid_index[h]) {
        uint32_t i = s->guid_index[h] - 1;
        if (strcmp(s->clients[i].guid, guid) == 0)
            return (long)i;
        h = (h + 1) & s->guid_mask;
    }
    return -1;
}

int sim_estate_load(sim *s)
{
    const char *path = s->scn->inventory;
    json_error_t jerr;
    json_t *doc = json_load_file(path, 0, &jerr);
    int err;

    if (!doc)
        return tsl_seterr(TSL_EINVALID, "%s:%d: %s", path, jerr.line, jerr.text);
    s->inventory = doc;
    if (!json_is_object(doc))
        return tsl_seterr(TSL_EINVALID, "%s: not a JSON object", path);
    if ((err = load_sites(s, json_object_get(doc, "sites"), path)) < 0 ||
        (err = load_servers(s, json_object_get(doc, "task_servers"), path)) < 0 ||
        (err = load_clients(s, doc, path)) < 0 || (err = index_clients(s)) < 0)
        return err;
    return 0;
}

void sim_estate_free(sim *s)
{
    for (size_t i = 0; i < s->nsites; i++) {
        free(s->sites[i].name);
        free(s->sites[i].country);
        free(s->sites[i].subnets);
    }
    free(s->sites);
    for (size_t i = 0; i < s->nts; i++)
        sim_ts_free(&s->ts[i]);
    free(s->ts);
    for (size_t i = 0; i < s->nclients; i++)
        tsl_agent_free(s->clients[i].agent);
    free(s->clients);
    free(s->guid_index);
    s->guid_index = NULL;
    json_decref(s->inventory);
    s->sites = NULL;
    s->ts = NULL;
    s->clients = NULL;
    s->inventory = NULL;
    s->nsites = s->nts = s->nclients = 0;
}
