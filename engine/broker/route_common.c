/*
 * route_common.c - what the route handlers share: a record's strings in
 * its own allocation, name and UTF-8 checks, the client's address (the
 * peer, or behind a trusted proxy the X-Forwarded-For hop), JSON bodies,
 * 429 replies, and the reply to a write the store did not take.
 *
 * Used by: routes.c, heartbeat.c, registration.c (route_common.h).
 * Needs: http.h, control.h, jansson.
 */
#include "route_common.h"
#include "text.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------------
 * Records for the write queue: one allocation, strings after the struct
 * ---------------------------------------------------------------------- */

size_t str_size(const char *s)
{
    return s ? strlen(s) + 1 : 0;
}

const char *put_str(char **cur, const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *p = *cur;
    memcpy(p, s, n);
    *cur += n;
    return p;
}

/* Why a name from the path, the query or a body is refused (NULL: it is
 * fine): 1..255 bytes of UTF-8 without control characters (text.h, the
 * rule import applies too). */
const char *name_problem(const char *s)
{
    return tsl_text_name_problem(s, NAME_MAX_LEN);
}

bool valid_name(const char *s)
{
    return name_problem(s) == NULL;
}

/* " (it is not valid UTF-8)" when that is the problem, else "". */
const char *utf8_note(const char *why)
{
    return why && strcmp(why, "is not valid UTF-8") == 0 ? " (it is not valid UTF-8)" : "";
}

/* ------------------------------------------------------------------------
 * require_peer_ip: the request must come from one of its own adapters
 * ---------------------------------------------------------------------- */

static bool in_prefix(const tsl_ip *ip, const tsl_ip *pfx, int bits)
{
    for (int i = 0; i < bits; i++) {
        int m = 0x80 >> (i % 8);
        if ((ip->b[i / 8] & m) != (pfx->b[i / 8] & m))
            return false;
    }
    return true;
}

static bool trusted_proxy(const tsl_broker *b, const tsl_ip *ip)
{
    for (int i = 0; i < b->nproxies; i++)
        if (in_prefix(ip, &b->proxies[i], b->proxy_bits[i]))
            return true;
    return false;
}

/* The TCP peer of the request as a tsl_ip; false when it has none (a unix
 * socket, a closed connection). */
static bool peer_address(struct evhttp_request *req, tsl_ip *out)
{
    struct evhttp_connection *conn = evhttp_request_get_connection(req);
    const struct sockaddr *sa = conn ? evhttp_connection_get_addr(conn) : NULL;
    char text[INET6_ADDRSTRLEN];
    if (!sa)
        return false;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, text,
                  sizeof text);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, text,
                  sizeof text);
    else
        return false;
    return tsl_ip_parse(out, text) == 0;
}

/* The client's address: the peer, or, when the peer is a trusted proxy,
 * the nearest X-Forwarded-For hop (from the right) that is not one.  Writes
 * its text into `text`; false when it cannot be told. */
bool client_address(const tsl_broker *b, struct evhttp_request *req, tsl_ip *out,
                           char *text, size_t len)
{
    if (!peer_address(req, out))
        return false;
    const char *xff = evhttp_find_header(evhttp_request_get_input_headers(req),
                                         "X-Forwarded-For");
    size_t end = xff ? strlen(xff) : 0; /* hops left: xff[0..end) */
    while (trusted_proxy(b, out)) {
        char hop[64];
        while (end > 0 && (xff[end - 1] == ' ' || xff[end - 1] == ','))
            end--;
        if (end == 0)
            return false; /* a trusted proxy that does not say for whom */
        size_t start = end;
        while (start > 0 && xff[start - 1] != ',')
            start--;
        size_t from = start;
        while (from < end && xff[from] == ' ')
            from++;
        if (end - from >= sizeof hop)
            return false;
        memcpy(hop, xff + from, end - from);
        hop[end - from] = '\0';
        if (tsl_ip_parse(out, hop) < 0) {
            tsl_error_clear();
            return false;
        }
        end = start;
    }
    tsl_ip_format(text, len, out);
    return true;
}
/* ------------------------------------------------------------------------
 * JSON bodies
 * ---------------------------------------------------------------------- */

/* Parses the body as a JSON object; replies 4xx and returns NULL otherwise. */
json_t *json_body(bworker *w, struct evhttp_request *req, route_ctx *c)
{
    size_t len;
    json_error_t jerr;
    const char *body = http_body(w, req, c->route, w->b->cfg.max_body, &len);
    if (!body)
        return NULL;
    if (!len) {
        http_error(w, req, c->route, 400, "invalid JSON: the body is empty (expected an object)");
        return NULL;
    }
    json_t *doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc) {
        http_error(w, req, c->route, 400, "invalid JSON: %s (line %d, column %d)", jerr.text,
                   jerr.line, jerr.column);
        return NULL;
    }
    if (!json_is_object(doc)) {
        json_decref(doc);
        http_error(w, req, c->route, 400, "invalid JSON: the body must be an object");
        return NULL;
    }
    return doc;
}

/* A non-negative integer field; replies 400 and returns false otherwise. */
bool get_count(bworker *w, struct evhttp_request *req, route_ctx *c, const char *key,
                      json_t *v, int64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        http_error(w, req, c->route, 400, "field \"%s\" must be a non-negative integer", key);
        return false;
    }
    *out = (int64_t)json_integer_value(v);
    return true;
}

/* 429 with Retry-After and a JSON body. */
void too_many(bworker *w, struct evhttp_request *req, broker_route route, int retry_s,
                     const char *what)
{
    char ra[24];
    snprintf(ra, sizeof ra, "%d", retry_s > 0 ? retry_s : 1);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", ra);
    http_error(w, req, route, 429, "%s; try again in %s s", what, ra);
}

/* ------------------------------------------------------------------------
 * A write's verdict
 * ---------------------------------------------------------------------- */

bool route_submit_write(bworker *w, struct evhttp_request *req, route_ctx *c, wrec *rec,
                        void (*done)(bworker *w, wrec *r))
{
    /* answered by `done` once it is committed */
    rec->w = w;
    rec->done = done;
    rec->req = req;
    if (writer_enqueue(w->b, rec) < 0) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
        http_error(w, req, c->route, 503, "%s: try again shortly", tsl_error_last());
        return false;
    }
    return true;
}

bool route_write_refused(bworker *w, wrec *r)
{
    broker_route route = r->kind == WREC_HEARTBEAT ? ROUTE_HEARTBEAT : ROUTE_REGISTRATION;
    if (r->status != 200) {
        if (r->status == 503 || r->status == 429)
            evhttp_add_header(evhttp_request_get_output_headers(r->req), "Retry-After",
                              r->status == 429 ? "60" : "1");
        http_error(w, r->req, route, r->status, "not saved, nothing changed: %s%s", r->why,
                   r->status == 503 ? " (try again shortly)" : "");
        return true;
    }
    return false;
}
