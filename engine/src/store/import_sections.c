/*
 * import_sections.c - the four sections of an inventory document (sites,
 * task_servers, clients, connection_errors), each record validated and
 * upserted by its key with bound values, inside the transaction
 * import_json.c opened.
 *
 * Used by: import_json.c.  Needs: import.h, store.h (the statement
 * cache), conflicts.h, progress.h.
 */
#include "conflicts.h"
#include "import.h"
#include "progress.h"
#include "store.h"
#include "suggest.h"
#include "tz.h"

#include <jansson.h>

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The fields each record may carry. */
static const char *const site_fields[] = {"name", "subnets", "country", "latitude",
                                          "longitude"};
static const char *const server_fields[] = {"name",        "host",       "ip",
                                            "sites",       "registered", "service",
                                            "capacity",    "connections", "response_ms",
                                            "last_heartbeat"};
static const char *const client_fields[] = {"guid", "name", "ip", "department", "site"};
static const char *const error_fields[] = {"client", "server", "at", "error"};

/* ------------------------------------------------------------------------
 * Store lookups
 * ---------------------------------------------------------------------- */

/* Looks up an id by key with a one-column SELECT; 0 when there is none. */
static int lookup_id(import_ctx *c, tsl_stmt_id id, const char *key, int64_t *out)
{
    sqlite3_stmt *stmt = tsl_store_stmt(c->st, id);
    int err = 0, rc;

    *out = 0;
    if (!stmt)
        return TSL_ESTORE;
    if (tsl_store_bind_text(stmt, 1, key) != SQLITE_OK) {
        err = tsl_store_err(c->st, "binding a lookup");
        goto done;
    }
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int64(stmt, 0);
    else if (rc != SQLITE_DONE)
        err = tsl_store_err(c->st, "looking up a record");

done:
    sqlite3_reset(stmt);
    return err;
}

/* Steps an upsert ... RETURNING id.  `bind_rc` is the OR of the bind
 * results (SQLITE_OK is 0), so one check covers them all. */
static int step_returning_id(import_ctx *c, sqlite3_stmt *stmt, int bind_rc, int64_t *out)
{
    int err = 0;

    if (bind_rc != SQLITE_OK || sqlite3_step(stmt) != SQLITE_ROW) {
        char what[480];
        snprintf(what, sizeof what, "%s: writing", c->rec);
        err = tsl_store_err(c->st, what);
        goto done;
    }
    *out = sqlite3_column_int64(stmt, 0);

done:
    sqlite3_reset(stmt);
    return err;
}

static int step_done(import_ctx *c, sqlite3_stmt *stmt, int bind_rc)
{
    int err = 0;

    if (bind_rc != SQLITE_OK || sqlite3_step(stmt) != SQLITE_DONE) {
        char what[480];
        snprintf(what, sizeof what, "%s: writing", c->rec);
        err = tsl_store_err(c->st, what);
    }
    sqlite3_reset(stmt);
    return err;
}

/* ------------------------------------------------------------------------
 * Sections
 * ---------------------------------------------------------------------- */

/* The array of a section, NULL when the document has none. */
static int section(import_ctx *c, json_t *doc, const char *name, json_t **out)
{
    json_t *arr = json_object_get(doc, name);
    char g[80];

    *out = NULL;
    c->section = name;
    if (!arr || json_is_null(arr))
        return 0;
    if (!json_is_array(arr))
        return tsl_seterr(TSL_EINVALID, "%s: \"%s\" must be an array (got %s)", c->origin,
                          name, import_show(arr, g, sizeof g));
    *out = arr;
    return 0;
}

/* Checks record i is an object, names it, and refuses a second record with
 * the same key (`seen` maps key -> first index). */
static int begin_record(import_ctx *c, json_t *rec, size_t i, const char *keyfield,
                        const char *what, json_t *seen, const char **key,
                        const char *const *fields, size_t nfields)
{
    const json_t *first;
    char g[80], loc[300], folded[TEXT_MAX + 1];
    size_t n;
    int state;

    tsl_progress_tick("records", c->done++, c->total);
    if (!json_is_object(rec)) {
        import_locate(c, i, loc, sizeof loc);
        return tsl_seterr(TSL_EINVALID, "%s must be an object (got %s)", loc,
                          import_show(rec, g, sizeof g));
    }
    import_name_record(c, i, rec, keyfield);
    if ((state = import_check_keys(c, rec, fields, nfields, "field", c->rec)) < 0)
        return state;
    if (!keyfield)
        return 0;
    if ((state = import_get_text(c, rec, keyfield, true, TEXT_MAX, false, key)) < 0)
        return state;
    /* Keys are case-insensitive (the store collates NOCASE). */
    for (n = 0; (*key)[n]; n++)
        folded[n] = (char)tolower((unsigned char)(*key)[n]);
    folded[n] = '\0';
    if ((first = json_object_get(seen, folded)) != NULL) {
        import_locate(c, (size_t)json_integer_value(first), loc, sizeof loc);
        return tsl_seterr(TSL_EINVALID, "%s: %s \"%s\" appears twice (first at %s)", c->rec,
                          what, *key, loc);
    }
    if (json_object_set_new(seen, folded, json_integer((json_int_t)i)) < 0)
        return tsl_oom();
    return 0;
}

/* Canonical text of a CIDR, so one network cannot be stored twice under
 * two spellings. */
static bool canon_cidr(const char *text, char *dst, size_t n)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    char addr[64];
    tsl_ip ip;
    int bits;

    if (tsl_cidr_parse(&ip, &bits, text) < 0)
        return false;
    tsl_ip_format(addr, sizeof addr, &ip);
    /* tsl_ip_format prints IPv4-mapped addresses as IPv4; give the prefix
     * length in IPv4 terms to match. */
    if (memcmp(ip.b, mapped, sizeof mapped) == 0 && bits >= 96)
        bits -= 96;
    snprintf(dst, n, "%s/%d", addr, bits);
    return true;
}

/* The subnets of one site record: validated and written (the site's old
 * subnets were cleared in the first pass). */
static int site_subnets(import_ctx *c, const json_t *subnets, int64_t site_id)
{
    sqlite3_stmt *stmt;
    size_t j;
    int err = 0, rc;

    for (j = 0; j < json_array_size(subnets); j++) {
        const json_t *v = json_array_get(subnets, j);
        const char *text = json_string_value(v);
        char canon[80], g[80];

        if (!text) {
            err = tsl_seterr(TSL_EINVALID, "%s: subnets[%zu] must be a string (got %s)", c->rec,
                             j, import_show(v, g, sizeof g));
            goto done;
        }
        if (!canon_cidr(text, canon, sizeof canon)) {
            /* ip.c says why ("...: host bits are set past /16"). */
            const char *why = strstr(tsl_error_last(), "CIDR");
            char reason[160];
            snprintf(reason, sizeof reason, "%s", why ? why + 4 : "");
            err = tsl_seterr(TSL_EINVALID, "%s: subnets[%zu] \"%.80s\" is not a valid CIDR%s",
                             c->rec, j, text, reason);
            goto done;
        }
        /* Another site may hold it too (ITMS allows it: the import notes
         * every overlap at the end); this site holds it once. */
        if (!(stmt = tsl_store_stmt(c->st, TSL_STMT_SUBNET_INSERT))) {
            err = TSL_ESTORE;
            goto done;
        }
        rc = sqlite3_bind_int64(stmt, 1, site_id);
        rc |= tsl_store_bind_text(stmt, 2, canon);
        if ((err = step_done(c, stmt, rc)) < 0)
            goto done;
        if (sqlite3_changes(tsl_store_db(c->st)) == 0 &&
            (err = tsl_buf_printf(&c->notes, "%s: subnets[%zu] \"%s\" is listed twice (kept "
                                             "once)\n",
                                  c->rec, j, text)) < 0)
            goto done;
    }

done:
    return err;
}

/* A list field ("subnets", "sites"): absent, or an array (null: empty). */
static int get_list(import_ctx *c, const json_t *rec, const char *field, const json_t **out)
{
    const json_t *v = json_object_get(rec, field);

    *out = NULL;
    if (!v)
        return FIELD_ABSENT;
    if (json_is_null(v))
        return FIELD_NULL;
    if (!json_is_array(v))
        return import_bad_field(c, field, "an array", v);
    *out = v;
    return FIELD_SET;
}

int import_sites(import_ctx *c, json_t *doc)
{
    json_t *arr, *seen = NULL;
    int64_t *ids = NULL;
    size_t i, n;
    int err, rc;

    if ((err = section(c, doc, "sites", &arr)) < 0 || !arr)
        goto done;
    n = json_array_size(arr);
    if (!(seen = json_object()) || !(ids = calloc(n ? n : 1, sizeof *ids))) {
        err = tsl_oom();
        goto done;
    }
    /* Pass 1: every site row, and clear the subnets of sites whose list is
     * given, so subnets can move between sites within one document. */
    for (i = 0; i < n; i++) {
        json_t *rec = json_array_get(arr, i);
        const char *name = NULL, *country = NULL;
        const json_t *subnets;
        double lat = 0, lon = 0;
        int mask = 0, s_country, s_lat, s_lon, s_subnets;
        sqlite3_stmt *stmt;

        if ((err = begin_record(c, rec, i, "name", "site", seen, &name, site_fields,
                                NFIELDS(site_fields))) < 0)
            goto done;
        if ((err = s_country = import_get_text(c, rec, "country", false, TEXT_MAX, false,
                                        &country)) < 0 ||
            (err = s_lat = import_get_real(c, rec, "latitude", -90, 90, &lat)) < 0 ||
            (err = s_lon = import_get_real(c, rec, "longitude", -180, 180, &lon)) < 0 ||
            (err = s_subnets = get_list(c, rec, "subnets", &subnets)) < 0)
            goto done;
        mask = (s_country ? 1 : 0) | (s_lat ? 2 : 0) | (s_lon ? 4 : 0);
        if (!(stmt = tsl_store_stmt(c->st, TSL_STMT_SITE_UPSERT))) {
            err = TSL_ESTORE;
            goto done;
        }
        rc = tsl_store_bind_text(stmt, 1, name);
        rc |= tsl_store_bind_text(stmt, 2, country);
        if (s_lat == FIELD_SET)
            rc |= sqlite3_bind_double(stmt, 3, lat);
        if (s_lon == FIELD_SET)
            rc |= sqlite3_bind_double(stmt, 4, lon);
        rc |= sqlite3_bind_int(stmt, 5, mask);
        if ((err = step_returning_id(c, stmt, rc, &ids[i])) < 0)
            goto done;
        if (s_subnets != FIELD_ABSENT) {
            if (!(stmt = tsl_store_stmt(c->st, TSL_STMT_SUBNETS_CLEAR))) {
                err = TSL_ESTORE;
                goto done;
            }
            rc = sqlite3_bind_int64(stmt, 1, ids[i]);
            if ((err = step_done(c, stmt, rc)) < 0)
                goto done;
        }
    }
    /* Pass 2: the subnets, now that every site of the document exists and
     * no longer holds its old ones. */
    for (i = 0; i < n; i++) {
        json_t *rec = json_array_get(arr, i);
        const json_t *subnets = json_object_get(rec, "subnets");

        if (!json_is_array(subnets))
            continue;
        import_name_record(c, i, rec, "name");
        if ((err = site_subnets(c, subnets, ids[i])) < 0)
            goto done;
    }
    err = 0;

done:
    free(ids);
    json_decref(seen);
    return err;
}

static int server_sites(import_ctx *c, const json_t *sites, int64_t server_id)
{
    sqlite3_stmt *stmt;
    size_t j, k;
    int err, rc;

    if (!(stmt = tsl_store_stmt(c->st, TSL_STMT_SERVER_SITES_CLEAR))) {
        err = TSL_ESTORE;
        goto done;
    }
    rc = sqlite3_bind_int64(stmt, 1, server_id);
    if ((err = step_done(c, stmt, rc)) < 0)
        goto done;
    for (j = 0; j < json_array_size(sites); j++) {
        const json_t *v = json_array_get(sites, j);
        const char *name = json_string_value(v);
        int64_t site_id;
        char g[80];

        if (!name || !*name) {
            err = tsl_seterr(TSL_EINVALID, "%s: sites[%zu] must be a site name (got %s)", c->rec,
                             j, import_show(v, g, sizeof g));
            goto done;
        }
        for (k = 0; k < j; k++) {
            const char *prev = json_string_value(json_array_get(sites, k));
            if (prev && !strcasecmp(prev, name)) {
                err = tsl_seterr(TSL_EINVALID, "%s: sites[%zu] \"%.80s\" is listed twice",
                                 c->rec, j, name);
                goto done;
            }
        }
        if ((err = lookup_id(c, TSL_STMT_SITE_ID, name, &site_id)) < 0)
            goto done;
        if (!site_id) {
            err = tsl_seterr(TSL_EINVALID, "%s: sites[%zu] \"%.80s\" is not a known site", c->rec,
                             j, name);
            goto done;
        }
        if (!(stmt = tsl_store_stmt(c->st, TSL_STMT_SERVER_SITE_INSERT))) {
            err = TSL_ESTORE;
            goto done;
        }
        rc = sqlite3_bind_int64(stmt, 1, server_id);
        rc |= sqlite3_bind_int64(stmt, 2, site_id);
        rc |= sqlite3_bind_int64(stmt, 3, (sqlite3_int64)j);
        if ((err = step_done(c, stmt, rc)) < 0)
            goto done;
    }

done:
    return err;
}

int import_servers(import_ctx *c, json_t *doc)
{
    json_t *arr, *seen = NULL;
    size_t i;
    int err, rc;

    if ((err = section(c, doc, "task_servers", &arr)) < 0 || !arr)
        goto done;
    if (!(seen = json_object())) {
        err = tsl_oom();
        goto done;
    }
    for (i = 0; i < json_array_size(arr); i++) {
        json_t *rec = json_array_get(arr, i);
        const char *name = NULL, *host = NULL, *service = "running";
        const json_t *sites;
        char ip[64];
        bool registered = true;
        int64_t capacity = DEFAULT_CAPACITY, connections = 0, response_ms = 0, hb = 0;
        int s_host, s_ip, s_reg, s_svc, s_cap, s_conn, s_resp, s_hb, s_sites, mask;
        int64_t id;
        sqlite3_stmt *stmt;

        if ((err = begin_record(c, rec, i, "name", "task server", seen, &name,
                                server_fields, NFIELDS(server_fields))) < 0)
            goto done;
        if ((err = s_host = import_get_text(c, rec, "host", false, TEXT_MAX, false, &host)) < 0 ||
            (err = s_ip = import_get_ip(c, rec, "ip", ip, sizeof ip)) < 0 ||
            (err = s_reg = import_get_bool(c, rec, "registered", &registered)) < 0 ||
            (err = s_svc = import_get_text(c, rec, "service", false, TEXT_MAX, false, &service)) < 0 ||
            (err = s_cap = import_get_uint(c, rec, "capacity", &capacity)) < 0 ||
            (err = s_conn = import_get_uint(c, rec, "connections", &connections)) < 0 ||
            (err = s_resp = import_get_uint(c, rec, "response_ms", &response_ms)) < 0 ||
            (err = s_hb = import_get_time(c, rec, "last_heartbeat", false, true, &hb)) < 0 ||
            (err = s_sites = get_list(c, rec, "sites", &sites)) < 0)
            goto done;
        /* any case: consoles show "Running" and "Stopped" */
        if (s_svc == FIELD_NULL ||
            (s_svc == FIELD_SET && strcasecmp(service, "running") &&
             strcasecmp(service, "stopped"))) {
            err = import_bad_field(c, "service", "\"running\" or \"stopped\" (in any case)",
                            json_object_get(rec, "service"));
            goto done;
        }
        service = s_svc == FIELD_ABSENT || !strcasecmp(service, "running") ? "running"
                                                                           : "stopped";
        mask = (s_host ? 1 : 0) | (s_ip ? 2 : 0) | (s_reg ? 4 : 0) | (s_svc ? 8 : 0) |
               (s_cap ? 16 : 0) | (s_conn ? 32 : 0) | (s_resp ? 64 : 0) | (s_hb ? 128 : 0);
        if (!(stmt = tsl_store_stmt(c->st, TSL_STMT_SERVER_UPSERT))) {
            err = TSL_ESTORE;
            goto done;
        }
        rc = tsl_store_bind_text(stmt, 1, name);
        rc |= tsl_store_bind_text(stmt, 2, host);
        rc |= tsl_store_bind_text(stmt, 3, s_ip == FIELD_SET ? ip : NULL);
        rc |= sqlite3_bind_int(stmt, 4, registered ? 1 : 0);
        rc |= tsl_store_bind_text(stmt, 5, service);
        rc |= sqlite3_bind_int64(stmt, 6, capacity);
        rc |= sqlite3_bind_int64(stmt, 7, connections);
        rc |= sqlite3_bind_int64(stmt, 8, response_ms);
        if (s_hb == FIELD_SET)
            rc |= sqlite3_bind_int64(stmt, 9, hb);
        rc |= sqlite3_bind_int(stmt, 10, mask);
        if ((err = step_returning_id(c, stmt, rc, &id)) < 0)
            goto done;
        if (s_sites != FIELD_ABSENT && (err = server_sites(c, sites, id)) < 0)
            goto done;
    }
    err = 0;

done:
    json_decref(seen);
    return err;
}

int import_clients(import_ctx *c, json_t *doc)
{
    json_t *arr, *seen = NULL;
    size_t i;
    int err, rc;

    if ((err = section(c, doc, "clients", &arr)) < 0 || !arr)
        goto done;
    if (!(seen = json_object())) {
        err = tsl_oom();
        goto done;
    }
    for (i = 0; i < json_array_size(arr); i++) {
        json_t *rec = json_array_get(arr, i);
        const char *guid = NULL, *name = NULL, *dept = NULL, *site = NULL;
        char ip[64];
        int s_name, s_ip, s_dept, s_site, mask;
        int64_t site_id = 0, id;
        sqlite3_stmt *stmt;

        if ((err = begin_record(c, rec, i, "guid", "client", seen, &guid, client_fields,
                                NFIELDS(client_fields))) < 0)
            goto done;
        if ((err = s_name = import_get_text(c, rec, "name", false, TEXT_MAX, false, &name)) < 0 ||
            (err = s_ip = import_get_ip(c, rec, "ip", ip, sizeof ip)) < 0 ||
            (err = s_dept = import_get_text(c, rec, "department", false, TEXT_MAX, false, &dept)) < 0 ||
            (err = s_site = import_get_text(c, rec, "site", false, TEXT_MAX, false, &site)) < 0)
            goto done;
        if (s_site == FIELD_SET) {
            if ((err = lookup_id(c, TSL_STMT_SITE_ID, site, &site_id)) < 0)
                goto done;
            if (!site_id) {
                err = tsl_seterr(TSL_EINVALID, "%s: field \"site\": \"%s\" is not a known site",
                                 c->rec, site);
                goto done;
            }
        }
        mask = (s_name ? 1 : 0) | (s_ip ? 2 : 0) | (s_dept ? 4 : 0) | (s_site ? 8 : 0);
        if (!(stmt = tsl_store_stmt(c->st, TSL_STMT_CLIENT_UPSERT))) {
            err = TSL_ESTORE;
            goto done;
        }
        rc = tsl_store_bind_text(stmt, 1, guid);
        rc |= tsl_store_bind_text(stmt, 2, name);
        rc |= tsl_store_bind_text(stmt, 3, s_ip == FIELD_SET ? ip : NULL);
        rc |= tsl_store_bind_text(stmt, 4, dept);
        if (site_id)
            rc |= sqlite3_bind_int64(stmt, 5, site_id);
        rc |= sqlite3_bind_int(stmt, 6, mask);
        if ((err = step_returning_id(c, stmt, rc, &id)) < 0)
            goto done;
    }
    err = 0;

done:
    json_decref(seen);
    return err;
}

int import_errors(import_ctx *c, json_t *doc)
{
    json_t *arr;
    size_t i;
    int err, rc;

    if ((err = section(c, doc, "connection_errors", &arr)) < 0 || !arr)
        goto done;
    for (i = 0; i < json_array_size(arr); i++) {
        json_t *rec = json_array_get(arr, i);
        const char *client, *server, *text;
        int64_t client_id, server_id, at = 0;
        sqlite3_stmt *stmt;

        if ((err = begin_record(c, rec, i, NULL, NULL, NULL, NULL, error_fields,
                                 NFIELDS(error_fields))) < 0 ||
            (err = import_get_text(c, rec, "client", true, TEXT_MAX, false, &client)) < 0 ||
            (err = import_get_text(c, rec, "server", true, TEXT_MAX, false, &server)) < 0 ||
            (err = import_get_time(c, rec, "at", true, false, &at)) < 0 ||
            (err = import_get_text(c, rec, "error", false, ERROR_TEXT_MAX, true, &text)) < 0)
            goto done;
        if ((err = lookup_id(c, TSL_STMT_CLIENT_ID, client, &client_id)) < 0)
            goto done;
        if (!client_id) {
            err = tsl_seterr(TSL_EINVALID, "%s: field \"client\": \"%s\" is not a known client",
                             c->rec, client);
            goto done;
        }
        if ((err = lookup_id(c, TSL_STMT_SERVER_ID, server, &server_id)) < 0)
            goto done;
        if (!server_id) {
            err = tsl_seterr(TSL_EINVALID,
                             "%s: field \"server\": \"%s\" is not a known task server", c->rec,
                             server);
            goto done;
        }
        if (!(stmt = tsl_store_stmt(c->st, TSL_STMT_ERROR_INSERT))) {
            err = TSL_ESTORE;
            goto done;
        }
        rc = sqlite3_bind_int64(stmt, 1, client_id);
        rc |= sqlite3_bind_int64(stmt, 2, server_id);
        rc |= sqlite3_bind_int64(stmt, 3, at);
        rc |= tsl_store_bind_text(stmt, 4, text);
        if ((err = step_done(c, stmt, rc)) < 0)
            goto done;
    }
    err = 0;

done:
    return err;
}

