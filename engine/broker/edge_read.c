/*
 * edge_read.c - reading each request whole at the edge (RFC 9112): the
 * request line, the method, the target's length, header syntax, one valid
 * Content-Length or exactly `Transfer-Encoding: chunked` (never both),
 * chunk syntax and the size limits, checked in the connection's own buffer
 * before evhttp sees a byte; only whole, valid requests are handed on.
 *
 * Used by: edge.c (the input callback, the deadline).
 * Needs: edge_conn.h (edge_refuse, edge_to_evhttp).
 */
#include "edge_conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>

/* ------------------------------------------------------------------------
 * Parsing a request head (RFC 9112 section 3 and 5)
 * ---------------------------------------------------------------------- */

static bool is_tchar(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static const char *const known_methods[] = {"GET",     "POST",    "HEAD",  "PUT",  "DELETE",
                                            "OPTIONS", "TRACE",   "CONNECT", "PATCH"};

/* Trims optional whitespace around a field value (in place). */
static char *trim(char *s, size_t *len)
{
    while (*len && (*s == ' ' || *s == '\t')) {
        s++;
        (*len)--;
    }
    while (*len && (s[*len - 1] == ' ' || s[*len - 1] == '\t'))
        (*len)--;
    return s;
}

/* Checks one header (or trailer) line.  Returns false after refusing. */
static bool check_field(edge_conn *c, const char *line, size_t len, const char **value,
                        size_t *vlen, size_t *namelen)
{
    size_t i = 0;
    if (len && (line[0] == ' ' || line[0] == '\t')) {
        edge_refuse(c, 400, EDGE_FRAMING, "a header line starts with whitespace (obsolete line folding)");
        return false;
    }
    while (i < len && is_tchar((unsigned char)line[i]))
        i++;
    if (i == 0 || i == len || line[i] != ':') {
        edge_refuse(c, 400, EDGE_FRAMING, "malformed header line (expected NAME: VALUE)");
        return false;
    }
    *namelen = i;
    for (size_t k = i + 1; k < len; k++) {
        unsigned char ch = (unsigned char)line[k];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
            edge_refuse(c, 400, EDGE_FRAMING, "a control character in the value of header %.*s",
                   (int)(i > 64 ? 64 : i), line);
            return false;
        }
    }
    *value = line + i + 1;
    *vlen = len - i - 1;
    return true;
}

/* The head is hold[0, head_end): checks it, sets up the body.  False after
 * refusing. */
static bool parse_head(edge_conn *c, size_t head_end)
{
    tsl_broker *b = c->w->b;
    char *head = (char *)evbuffer_pullup(c->hold, (ev_ssize_t)head_end);
    if (!head) {
        edge_refuse(c, 503, EDGE_FRAMING, "out of memory reading the request");
        return false;
    }
    char *end = head + head_end;
    char *eol = memchr(head, '\n', head_end);
    size_t llen = (size_t)(eol - head);
    if (llen && head[llen - 1] == '\r')
        llen--;

    /* METHOD SP TARGET SP HTTP/1.x */
    char *sp1 = memchr(head, ' ', llen);
    char *sp2 = sp1 ? memchr(sp1 + 1, ' ', llen - (size_t)(sp1 + 1 - head)) : NULL;
    if (!sp1 || !sp2 || sp1 == head || sp2 == sp1 + 1) {
        edge_refuse(c, 400, EDGE_FRAMING, "malformed request line (expected METHOD /path HTTP/1.1)");
        return false;
    }
    size_t mlen = (size_t)(sp1 - head), tlen = (size_t)(sp2 - sp1 - 1);
    const char *version = sp2 + 1;
    size_t vlen = llen - (size_t)(version - head);
    for (size_t i = 0; i < mlen; i++) {
        if (!is_tchar((unsigned char)head[i])) {
            edge_refuse(c, 400, EDGE_FRAMING, "malformed request line: the method is not a token");
            return false;
        }
    }
    bool known = false, bodyless = false;
    for (size_t i = 0; i < sizeof known_methods / sizeof known_methods[0]; i++) {
        if (strlen(known_methods[i]) == mlen && memcmp(known_methods[i], head, mlen) == 0) {
            known = true;
            bodyless = i == 2 || i == 6; /* evhttp reads no body for HEAD and TRACE */
        }
    }
    if (!known) {
        edge_refuse(c, 501, EDGE_FRAMING, "method %.*s is not implemented (see docs/http-api.md)",
               (int)(mlen > 32 ? 32 : mlen), head);
        return false;
    }
    if (vlen != 8 || memcmp(version, "HTTP/1.", 7) != 0 ||
        (version[7] != '0' && version[7] != '1')) {
        if (vlen == 8 && memcmp(version, "HTTP/", 5) == 0 && version[5] >= '0' &&
            version[5] <= '9' && version[6] == '.' && version[7] >= '0' && version[7] <= '9')
            edge_refuse(c, 505, EDGE_FRAMING, "HTTP version %.8s is not supported (HTTP/1.1 is)",
                   version);
        else
            edge_refuse(c, 400, EDGE_FRAMING, "malformed request line: no HTTP/1.x version");
        return false;
    }
    bool http10 = version[7] == '0';
    if (tlen > EDGE_URI_MAX) {
        edge_refuse(c, 414, EDGE_FRAMING, "request target of %zu bytes is over the %d-byte limit", tlen,
               EDGE_URI_MAX);
        return false;
    }
    for (size_t i = 0; i < tlen; i++) {
        unsigned char ch = (unsigned char)sp1[1 + i];
        if (ch <= 0x20 || ch >= 0x7f) {
            edge_refuse(c, 400, EDGE_FRAMING, "the request target has a byte that must be "
                                         "percent-encoded (0x%02x)", ch);
            return false;
        }
    }
    if (sp1[1] != '/') {
        edge_refuse(c, 400, EDGE_FRAMING, "the request target must be a path starting with /");
        return false;
    }
    if (tlen >= 2 && sp1[2] == '/') {
        /* evhttp would read "//host/..." as an authority and may refuse it
         * with its own page: no path of ours starts so */
        edge_refuse(c, 400, EDGE_FRAMING, "the request target must be a path (it starts with //)");
        return false;
    }

    /* the header lines */
    int ncl = 0, nte = 0;
    uint64_t cl = 0;
    bool chunked = false;
    c->expect_continue = false;
    for (char *p = eol + 1; p < end;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = (size_t)(nl - p);
        if (len && p[len - 1] == '\r')
            len--;
        if (len == 0)
            break; /* the empty line ends the head */
        const char *value;
        size_t vl, nlen;
        if (!check_field(c, p, len, &value, &vl, &nlen))
            return false;
        char *v = trim((char *)value, &vl);
        if (nlen == 14 && strncasecmp(p, "Content-Length", 14) == 0) {
            if (++ncl > 1) {
                edge_refuse(c, 400, EDGE_FRAMING, "more than one Content-Length header");
                return false;
            }
            if (vl == 0 || vl > 18) {
                edge_refuse(c, 400, EDGE_FRAMING, "invalid Content-Length");
                return false;
            }
            for (size_t i = 0; i < vl; i++) {
                if (v[i] < '0' || v[i] > '9') {
                    edge_refuse(c, 400, EDGE_FRAMING, "invalid Content-Length");
                    return false;
                }
                cl = cl * 10 + (uint64_t)(v[i] - '0');
            }
        } else if (nlen == 17 && strncasecmp(p, "Transfer-Encoding", 17) == 0) {
            if (++nte > 1) {
                edge_refuse(c, 400, EDGE_FRAMING, "more than one Transfer-Encoding header");
                return false;
            }
            if (vl != 7 || strncasecmp(v, "chunked", 7) != 0) {
                edge_refuse(c, 501, EDGE_FRAMING,
                       "Transfer-Encoding \"%.*s\" is not supported (only \"chunked\")",
                       (int)(vl > 64 ? 64 : vl), v);
                return false;
            }
            chunked = true;
        } else if (nlen == 6 && strncasecmp(p, "Expect", 6) == 0) {
            if (vl != 12 || strncasecmp(v, "100-continue", 12) != 0) {
                edge_refuse(c, 417, EDGE_FRAMING, "Expect \"%.*s\" is not supported (only "
                                             "100-continue)", (int)(vl > 64 ? 64 : vl), v);
                return false;
            }
            c->expect_continue = !http10;
        }
        p = nl + 1;
    }
    if (chunked && ncl) {
        edge_refuse(c, 400, EDGE_FRAMING, "both Content-Length and Transfer-Encoding");
        return false;
    }
    if (chunked && http10) {
        edge_refuse(c, 400, EDGE_FRAMING, "Transfer-Encoding in an HTTP/1.0 request");
        return false;
    }
    if (bodyless && (chunked || cl > 0)) {
        edge_refuse(c, 400, EDGE_FRAMING, "a %.*s request has no body", (int)mlen, head);
        return false;
    }
    size_t limit = b->cfg.max_body > b->cfg.max_import_body ? b->cfg.max_body
                                                            : b->cfg.max_import_body;
    if (cl > limit) {
        edge_refuse(c, 413, EDGE_FRAMING, "request body of %llu bytes is over the %zu-byte limit",
               (unsigned long long)cl, limit);
        return false;
    }
    c->pos = head_end;
    c->body_total = 0;
    if (chunked) {
        c->state = ST_CHUNK_SIZE;
    } else {
        c->state = ST_BODY;
        c->body_left = cl;
    }
    if (!c->expect_continue || (!chunked && cl == 0))
        c->expect_continue = false;
    return true;
}

/* ------------------------------------------------------------------------
 * Reading requests whole
 * ---------------------------------------------------------------------- */

/* Offset of the next '\n' at or after `from` in hold, or -1. */
static ev_ssize_t find_nl(struct evbuffer *buf, size_t from)
{
    struct evbuffer_ptr start;
    if (from >= evbuffer_get_length(buf) ||
        evbuffer_ptr_set(buf, &start, from, EVBUFFER_PTR_SET) < 0)
        return -1;
    struct evbuffer_ptr at = evbuffer_search(buf, "\n", 1, &start);
    return at.pos;
}

static void request_done(edge_conn *c)
{
    edge_to_evhttp(c, c->hold, c->pos, NULL);
    c->state = ST_HEAD;
    c->pos = c->head_len = 0;
    c->started = c->expect_continue = c->sent_continue = false;
    if (c->armed) {
        event_del(c->timer);
        c->armed = false;
    }
}

void edge_arm_deadline(edge_conn *c)
{
    struct timeval tv = {c->w->b->cfg.timeout_s, 0};
    event_add(c->timer, &tv);
    c->armed = true;
}

/* Parses what `hold` has; hands each whole request on.  Returns after a
 * refusal or when more bytes are needed. */
static void parse_some(edge_conn *c)
{
    tsl_broker *b = c->w->b;
    size_t head_limit = b->cfg.max_headers_size * 4 + EDGE_URI_MAX + 64;
    size_t body_limit = b->cfg.max_body > b->cfg.max_import_body ? b->cfg.max_body
                                                                 : b->cfg.max_import_body;
    while (!c->refused) {
        size_t have = evbuffer_get_length(c->hold);
        if (c->state == ST_HEAD) {
            /* empty lines before a request line are ignored (RFC 9112 2.2) */
            while (c->head_len == 0 && have) {
                unsigned char ch;
                evbuffer_copyout(c->hold, &ch, 1);
                if (ch != '\r' && ch != '\n')
                    break;
                evbuffer_drain(c->hold, 1);
                have--;
            }
            if (!have)
                return;
            c->started = true; /* the deadline is armed below if it must wait */
            /* head_len: where the next line starts; the head ends at an
             * empty line */
            for (;;) {
                ev_ssize_t nl = find_nl(c->hold, c->head_len);
                if (nl < 0) {
                    if (have > head_limit)
                        edge_refuse(c, 431, EDGE_FRAMING, "request head of more than %zu bytes",
                               head_limit);
                    return;
                }
                size_t start = c->head_len, line_len = (size_t)nl - start;
                bool empty = line_len == 0;
                if (line_len == 1) {
                    struct evbuffer_ptr p;
                    char cr = 0;
                    evbuffer_ptr_set(c->hold, &p, start, EVBUFFER_PTR_SET);
                    evbuffer_copyout_from(c->hold, &p, &cr, 1);
                    empty = cr == '\r';
                }
                c->head_len = (size_t)nl + 1;
                if (c->head_len > head_limit) {
                    edge_refuse(c, 431, EDGE_FRAMING, "request head of more than %zu bytes", head_limit);
                    return;
                }
                if (empty)
                    break; /* the empty line after the request line and headers */
            }
            if (!parse_head(c, c->head_len))
                return;
            continue;
        }
        if (c->state == ST_BODY) {
            if (have - c->pos < c->body_left)
                break;
            c->pos += (size_t)c->body_left;
            request_done(c);
            continue;
        }
        if (c->state == ST_CHUNK_SIZE || c->state == ST_TRAILER) {
            ev_ssize_t nl = find_nl(c->hold, c->pos);
            if (nl < 0) {
                if (c->state == ST_CHUNK_SIZE && have - c->pos > EDGE_CHUNK_LINE_MAX) {
                    edge_refuse(c, 400, EDGE_FRAMING, "malformed chunk size line");
                    return;
                }
                if (c->state == ST_TRAILER && have - c->pos > head_limit) {
                    edge_refuse(c, 431, EDGE_FRAMING, "trailer of more than %zu bytes", head_limit);
                    return;
                }
                break;
            }
            size_t len = (size_t)nl - c->pos;
            if (len > (c->state == ST_CHUNK_SIZE ? (size_t)EDGE_CHUNK_LINE_MAX : head_limit)) {
                edge_refuse(c, 400, EDGE_FRAMING, "malformed chunk");
                return;
            }
            char line[EDGE_CHUNK_LINE_MAX + 2];
            char *text = line;
            char *big = NULL;
            if (len + 1 > sizeof line) {
                if (!(big = malloc(len + 1))) {
                    edge_refuse(c, 503, EDGE_FRAMING, "out of memory reading the request");
                    return;
                }
                text = big;
            }
            struct evbuffer_ptr at;
            evbuffer_ptr_set(c->hold, &at, c->pos, EVBUFFER_PTR_SET);
            evbuffer_copyout_from(c->hold, &at, text, len);
            if (len && text[len - 1] == '\r')
                len--;
            text[len] = '\0';
            c->pos = (size_t)nl + 1;
            if (c->state == ST_TRAILER) {
                const char *v;
                size_t vl, nlen;
                bool ok = len == 0 || check_field(c, text, len, &v, &vl, &nlen);
                free(big);
                if (!ok)
                    return;
                if (len == 0)
                    request_done(c);
                continue;
            }
            uint64_t size = 0;
            size_t i = 0;
            for (; i < len && i < 15; i++) {
                int d = text[i] >= '0' && text[i] <= '9'   ? text[i] - '0'
                        : text[i] >= 'a' && text[i] <= 'f' ? text[i] - 'a' + 10
                        : text[i] >= 'A' && text[i] <= 'F' ? text[i] - 'A' + 10
                                                           : -1;
                if (d < 0)
                    break;
                size = size * 16 + (uint64_t)d;
            }
            free(big);
            if (i == 0 || i != len) {
                edge_refuse(c, 400, EDGE_FRAMING, "malformed chunk size line (hex digits only, no "
                                             "extensions)");
                return;
            }
            if (size > body_limit - c->body_total) {
                edge_refuse(c, 413, EDGE_FRAMING, "request body over the %zu-byte limit", body_limit);
                return;
            }
            c->body_total += size;
            if (size == 0) {
                c->state = ST_TRAILER;
            } else {
                c->state = ST_CHUNK_DATA;
                c->body_left = size;
            }
            continue;
        }
        /* ST_CHUNK_DATA: the data, then CRLF */
        if (have - c->pos < c->body_left + 2)
            break;
        char crlf[2];
        struct evbuffer_ptr at;
        evbuffer_ptr_set(c->hold, &at, c->pos + (size_t)c->body_left, EVBUFFER_PTR_SET);
        evbuffer_copyout_from(c->hold, &at, crlf, 2);
        if (crlf[0] != '\r' || crlf[1] != '\n') {
            edge_refuse(c, 400, EDGE_FRAMING, "chunk data not followed by CRLF");
            return;
        }
        c->pos += (size_t)c->body_left + 2;
        c->state = ST_CHUNK_SIZE;
    }
}

void edge_parse(edge_conn *c)
{
    parse_some(c);
    /* a request begun and not whole: its deadline runs from now (the same
     * turn its first byte came in); most requests arrive whole in one read
     * and never arm it */
    if (!c->refused && c->started && !c->armed)
        edge_arm_deadline(c);
    /* a body still to come after Expect: 100-continue: ask for it (plain
     * HTTP only, and only when nothing else is being written) */
    if (!c->refused && c->expect_continue && !c->sent_continue && !c->tls && c->settled &&
        c->pos == c->head_len && evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        c->sent_continue = true;
        (void)!send(c->fd, cont, sizeof cont - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
}

/* evhttp's input buffer changed: new bytes from the socket (or TLS) are
 * moved into `hold`; what evhttp has not read yet (whole requests) stays. */
void edge_on_input(struct evbuffer *in, const struct evbuffer_cb_info *info, void *arg)
{
    edge_conn *c = arg;
    if (!info->n_added)
        return;
    size_t total = evbuffer_get_length(in);
    size_t fresh = info->n_added < total ? info->n_added : total;
    evbuffer_cb_clear_flags(in, c->cbent, EVBUFFER_CB_ENABLED);
    if (c->refused) {
        /* after a refusal nothing more is read: drop the new bytes */
        struct evbuffer *keep = evbuffer_new();
        if (keep) {
            evbuffer_remove_buffer(in, keep, total - fresh);
            evbuffer_drain(in, fresh);
            evbuffer_add_buffer(in, keep);
            evbuffer_free(keep);
        }
    } else if (total == fresh) {
        evbuffer_add_buffer(c->hold, in);
    } else {
        struct evbuffer *keep = evbuffer_new();
        if (keep) {
            evbuffer_remove_buffer(in, keep, total - fresh);
            evbuffer_add_buffer(c->hold, in);
            evbuffer_add_buffer(in, keep);
            evbuffer_free(keep);
        }
    }
    evbuffer_cb_set_flags(in, c->cbent, EVBUFFER_CB_ENABLED);
    if (!c->refused)
        edge_parse(c);
}
