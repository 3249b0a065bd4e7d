/*
 * edge.c - the connection edge: what stands between a client's socket and
 * evhttp, so that nothing a stranger sends reaches the HTTP parser unchecked.
 *
 *   - Admission: at most max_conns_per_addr open connections per peer
 *     address, across every worker (a peer over the cap gets 503).
 *   - Framing (RFC 9112): each request is read whole (head and body) into
 *     the connection's own buffer and checked before evhttp sees a byte of
 *     it: the request line, the method, the target's length, header syntax,
 *     one valid Content-Length or exactly `Transfer-Encoding: chunked`
 *     (never both), chunk syntax, the size limits.  Only whole, valid
 *     requests are handed on, so evhttp never answers with its own HTML
 *     page and the bytes after a bad request are never parsed as another
 *     one (no smuggling).
 *   - A deadline: a request must arrive whole within timeout_s of its first
 *     byte, however slowly it trickles in (evhttp's own timeout only sees
 *     idle gaps).
 *   - TLS: with a certificate the connections are OpenSSL bufferevents.
 *   - Descriptor exhaustion: when accept() fails for want of descriptors
 *     the listener pauses and resumes on a timer instead of spinning, and
 *     one log line per interval says how often.
 *
 * A refusal is handed to evhttp as a stand-in request for a path only the
 * broker knows (edge_prefix, random per start): the dispatcher answers it
 * in JSON with Connection: close, after any earlier pipelined answers.
 *
 * How it hooks evhttp 2.1 without private API: evhttp_set_bevcb creates
 * each connection's bufferevent; a callback on its input buffer moves every
 * new byte into the edge's buffer and puts back only whole requests.
 * evhttp owns and frees the bufferevent; the edge learns that a connection
 * is gone when its descriptor is closed or names another socket (fstat's
 * inode), checked before each use and by a sweep timer.
 *
 * Used by: http.c (tracking; it answers the stand-ins), broker.c (setup).  Needs: edge.h,
 * libevent (bufferevent_openssl), OpenSSL.
 */
#include "edge.h"

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

#define EDGE_PEER_BUCKETS 4096
#define EDGE_SWEEP_MS 250
#define EDGE_RESUME_MS 250      /* accept paused this long when descriptors ran out */
#define EDGE_LOG_EVERY_MS 10000 /* one descriptor-exhaustion line per interval */
#define EDGE_URI_MAX 8191       /* the dispatcher's limit (http.c URI_MAX - 1) */
#define EDGE_CHUNK_LINE_MAX 64

/* ------------------------------------------------------------------------
 * Connections per peer address (every worker: peer_mu)
 * ---------------------------------------------------------------------- */

typedef struct edge_peer {
    struct edge_peer *next;
    unsigned char addr[16]; /* IPv4 as ::ffff:a.b.c.d */
    int count;
} edge_peer;

static size_t peer_hash(const unsigned char *a)
{
    size_t h = 14695981039346656037u;
    for (int i = 0; i < 16; i++)
        h = (h ^ a[i]) * 1099511628211u;
    return h % EDGE_PEER_BUCKETS;
}

/* Counts one more connection from `addr`; false (nothing counted) when
 * the cap is reached or memory is short. */
static bool peer_acquire(tsl_broker *b, const unsigned char *addr)
{
    int cap = b->cfg.max_conns_per_addr;
    bool ok = false;
    pthread_mutex_lock(&b->peer_mu);
    edge_peer **slot = &b->peers[peer_hash(addr)], *p;
    for (p = *slot; p && memcmp(p->addr, addr, 16) != 0; p = p->next)
        ;
    if (!p && (p = calloc(1, sizeof *p))) {
        memcpy(p->addr, addr, 16);
        p->next = *slot;
        *slot = p;
    }
    if (p && (cap <= 0 || p->count < cap)) {
        p->count++;
        ok = true;
    }
    pthread_mutex_unlock(&b->peer_mu);
    return ok;
}

static void peer_release(tsl_broker *b, const unsigned char *addr)
{
    pthread_mutex_lock(&b->peer_mu);
    for (edge_peer **pp = &b->peers[peer_hash(addr)]; *pp; pp = &(*pp)->next) {
        edge_peer *p = *pp;
        if (memcmp(p->addr, addr, 16) != 0)
            continue;
        if (--p->count <= 0) {
            *pp = p->next;
            free(p);
        }
        break;
    }
    pthread_mutex_unlock(&b->peer_mu);
}

/* ------------------------------------------------------------------------
 * One connection
 * ---------------------------------------------------------------------- */

enum edge_state {
    ST_HEAD,        /* the request line and headers */
    ST_BODY,        /* body_left bytes of a Content-Length body */
    ST_CHUNK_SIZE,  /* a chunk-size line */
    ST_CHUNK_DATA,  /* body_left bytes of chunk data, then CRLF */
    ST_TRAILER      /* trailer lines up to the empty one */
};

struct edge_conn {
    edge_conn *next, *prev;
    bworker *w;
    struct bufferevent *bev;     /* evhttp's: valid while `fd` is still this socket */
    struct evbuffer_cb_entry *cbent;
    struct evbuffer *hold;       /* bytes received, not yet handed to evhttp */
    struct event *timer;         /* admission, then the request deadline */
    evutil_socket_t fd;
    dev_t dev;
    ino_t ino;
    unsigned char addr[16];
    bool settled;                /* admission done: fd/dev/ino are known */
    bool closed;                 /* evhttp closed it (its close callback) */
    bool closecb_set;
    bool counted;                /* holds a place in the peer table */
    bool refused;                /* a stand-in was handed on: the rest is dropped */
    bool tls;
    /* the request being received */
    enum edge_state state;
    bool started;                /* its first byte is here: the deadline runs */
    bool armed;                  /* the timer holds that deadline */
    bool expect_continue, sent_continue;
    size_t pos;                  /* bytes of `hold` parsed */
    size_t head_len;             /* ST_HEAD: bytes of head scanned so far (line starts) */
    uint64_t body_left, body_total;
};

static bool conn_alive(edge_conn *c)
{
    struct stat st;
    if (c->closed)
        return false;
    if (!c->settled)
        return true; /* admission runs in the same loop turn as accept */
    return fstat(c->fd, &st) == 0 && st.st_ino == c->ino && st.st_dev == c->dev;
}

static void conn_free(edge_conn *c)
{
    bworker *w = c->w;
    if (c->counted)
        peer_release(w->b, c->addr);
    if (c->settled && c->fd >= 0 && (size_t)c->fd < w->nbyfd && w->byfd[c->fd] == c)
        w->byfd[c->fd] = NULL;
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->timer)
        event_free(c->timer);
    if (c->hold)
        evbuffer_free(c->hold);
    free(c);
}

/* Appends `bytes` to evhttp's input without seeing them ourselves. */
static void to_evhttp(edge_conn *c, struct evbuffer *from, size_t n, const char *bytes)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    evbuffer_cb_clear_flags(in, c->cbent, EVBUFFER_CB_ENABLED);
    /* a socket bufferevent keeps its input's end frozen between reads (so
     * that only it adds there); an OpenSSL one does not */
    if (!c->tls)
        evbuffer_unfreeze(in, 0);
    int rc = from ? evbuffer_remove_buffer(from, in, n) : evbuffer_add(in, bytes, n);
    if (rc < 0 && c->tls) {
        evbuffer_unfreeze(in, 0);
        if (from)
            evbuffer_remove_buffer(from, in, n);
        else
            evbuffer_add(in, bytes, n);
        evbuffer_freeze(in, 0);
    }
    if (!c->tls)
        evbuffer_freeze(in, 0);
    evbuffer_cb_set_flags(in, c->cbent, EVBUFFER_CB_ENABLED);
}

/* Hands evhttp a stand-in for a refused request: GET PREFIX/STATUS?MESSAGE
 * with Connection: close.  Everything after it on this connection is
 * dropped. */
static void refuse(edge_conn *c, int status, int kind, const char *fmt, ...) TSL_PRINTF(4, 5);
static void refuse(edge_conn *c, int status, int kind, const char *fmt, ...)
{
    char msg[512], req[2048];
    static const char hex[] = "0123456789ABCDEF";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    int n = snprintf(req, sizeof req, "GET /%s/%d?", c->w->b->edge_prefix, status);
    for (const unsigned char *p = (const unsigned char *)msg; *p && n < (int)sizeof req - 64; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '.' || *p == '_') {
            req[n++] = (char)*p;
        } else {
            req[n++] = '%';
            req[n++] = hex[*p >> 4];
            req[n++] = hex[*p & 15];
        }
    }
    n += snprintf(req + n, sizeof req - (size_t)n, " HTTP/1.1\r\nConnection: close\r\n\r\n");
    c->refused = true;
    evbuffer_drain(c->hold, evbuffer_get_length(c->hold));
    event_del(c->timer);
    c->armed = false;
    atomic_fetch_add_explicit(&c->w->b->edge_refused[kind], 1, memory_order_relaxed);
    to_evhttp(c, NULL, (size_t)n, req);
    broker_log(c->w->b, TSL_LOG_DEBUG, "Refused a connection's request (%d): %s", status, msg);
}

/* From a timer (not from a read, after which the bufferevent calls evhttp
 * anyway): evhttp reads the stand-in now if it is waiting for a request,
 * otherwise when it has answered the one in hand (it looks at its input
 * then). */
static void kick(edge_conn *c)
{
    if (bufferevent_get_enabled(c->bev) & EV_READ)
        bufferevent_trigger(c->bev, EV_READ, BEV_TRIG_IGNORE_WATERMARKS);
}

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
        refuse(c, 400, EDGE_FRAMING, "a header line starts with whitespace (obsolete line folding)");
        return false;
    }
    while (i < len && is_tchar((unsigned char)line[i]))
        i++;
    if (i == 0 || i == len || line[i] != ':') {
        refuse(c, 400, EDGE_FRAMING, "malformed header line (expected NAME: VALUE)");
        return false;
    }
    *namelen = i;
    for (size_t k = i + 1; k < len; k++) {
        unsigned char ch = (unsigned char)line[k];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
            refuse(c, 400, EDGE_FRAMING, "a control character in the value of header %.*s",
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
        refuse(c, 503, EDGE_FRAMING, "out of memory reading the request");
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
        refuse(c, 400, EDGE_FRAMING, "malformed request line (expected METHOD /path HTTP/1.1)");
        return false;
    }
    size_t mlen = (size_t)(sp1 - head), tlen = (size_t)(sp2 - sp1 - 1);
    const char *version = sp2 + 1;
    size_t vlen = llen - (size_t)(version - head);
    for (size_t i = 0; i < mlen; i++) {
        if (!is_tchar((unsigned char)head[i])) {
            refuse(c, 400, EDGE_FRAMING, "malformed request line: the method is not a token");
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
        refuse(c, 501, EDGE_FRAMING, "method %.*s is not implemented (see docs/http-api.md)",
               (int)(mlen > 32 ? 32 : mlen), head);
        return false;
    }
    if (vlen != 8 || memcmp(version, "HTTP/1.", 7) != 0 ||
        (version[7] != '0' && version[7] != '1')) {
        if (vlen == 8 && memcmp(version, "HTTP/", 5) == 0 && version[5] >= '0' &&
            version[5] <= '9' && version[6] == '.' && version[7] >= '0' && version[7] <= '9')
            refuse(c, 505, EDGE_FRAMING, "HTTP version %.8s is not supported (HTTP/1.1 is)",
                   version);
        else
            refuse(c, 400, EDGE_FRAMING, "malformed request line: no HTTP/1.x version");
        return false;
    }
    bool http10 = version[7] == '0';
    if (tlen > EDGE_URI_MAX) {
        refuse(c, 414, EDGE_FRAMING, "request target of %zu bytes is over the %d-byte limit", tlen,
               EDGE_URI_MAX);
        return false;
    }
    for (size_t i = 0; i < tlen; i++) {
        unsigned char ch = (unsigned char)sp1[1 + i];
        if (ch <= 0x20 || ch >= 0x7f) {
            refuse(c, 400, EDGE_FRAMING, "the request target has a byte that must be "
                                         "percent-encoded (0x%02x)", ch);
            return false;
        }
    }
    if (sp1[1] != '/') {
        refuse(c, 400, EDGE_FRAMING, "the request target must be a path starting with /");
        return false;
    }
    if (tlen >= 2 && sp1[2] == '/') {
        /* evhttp would read "//host/..." as an authority and may refuse it
         * with its own page: no path of ours starts so */
        refuse(c, 400, EDGE_FRAMING, "the request target must be a path (it starts with //)");
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
                refuse(c, 400, EDGE_FRAMING, "more than one Content-Length header");
                return false;
            }
            if (vl == 0 || vl > 18) {
                refuse(c, 400, EDGE_FRAMING, "invalid Content-Length");
                return false;
            }
            for (size_t i = 0; i < vl; i++) {
                if (v[i] < '0' || v[i] > '9') {
                    refuse(c, 400, EDGE_FRAMING, "invalid Content-Length");
                    return false;
                }
                cl = cl * 10 + (uint64_t)(v[i] - '0');
            }
        } else if (nlen == 17 && strncasecmp(p, "Transfer-Encoding", 17) == 0) {
            if (++nte > 1) {
                refuse(c, 400, EDGE_FRAMING, "more than one Transfer-Encoding header");
                return false;
            }
            if (vl != 7 || strncasecmp(v, "chunked", 7) != 0) {
                refuse(c, 501, EDGE_FRAMING,
                       "Transfer-Encoding \"%.*s\" is not supported (only \"chunked\")",
                       (int)(vl > 64 ? 64 : vl), v);
                return false;
            }
            chunked = true;
        } else if (nlen == 6 && strncasecmp(p, "Expect", 6) == 0) {
            if (vl != 12 || strncasecmp(v, "100-continue", 12) != 0) {
                refuse(c, 417, EDGE_FRAMING, "Expect \"%.*s\" is not supported (only "
                                             "100-continue)", (int)(vl > 64 ? 64 : vl), v);
                return false;
            }
            c->expect_continue = !http10;
        }
        p = nl + 1;
    }
    if (chunked && ncl) {
        refuse(c, 400, EDGE_FRAMING, "both Content-Length and Transfer-Encoding");
        return false;
    }
    if (chunked && http10) {
        refuse(c, 400, EDGE_FRAMING, "Transfer-Encoding in an HTTP/1.0 request");
        return false;
    }
    if (bodyless && (chunked || cl > 0)) {
        refuse(c, 400, EDGE_FRAMING, "a %.*s request has no body", (int)mlen, head);
        return false;
    }
    size_t limit = b->cfg.max_body > b->cfg.max_import_body ? b->cfg.max_body
                                                            : b->cfg.max_import_body;
    if (cl > limit) {
        refuse(c, 413, EDGE_FRAMING, "request body of %llu bytes is over the %zu-byte limit",
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
    to_evhttp(c, c->hold, c->pos, NULL);
    c->state = ST_HEAD;
    c->pos = c->head_len = 0;
    c->started = c->expect_continue = c->sent_continue = false;
    if (c->armed) {
        event_del(c->timer);
        c->armed = false;
    }
}

static void arm_deadline(edge_conn *c)
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
                        refuse(c, 431, EDGE_FRAMING, "request head of more than %zu bytes",
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
                    refuse(c, 431, EDGE_FRAMING, "request head of more than %zu bytes", head_limit);
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
                    refuse(c, 400, EDGE_FRAMING, "malformed chunk size line");
                    return;
                }
                if (c->state == ST_TRAILER && have - c->pos > head_limit) {
                    refuse(c, 431, EDGE_FRAMING, "trailer of more than %zu bytes", head_limit);
                    return;
                }
                break;
            }
            size_t len = (size_t)nl - c->pos;
            if (len > (c->state == ST_CHUNK_SIZE ? (size_t)EDGE_CHUNK_LINE_MAX : head_limit)) {
                refuse(c, 400, EDGE_FRAMING, "malformed chunk");
                return;
            }
            char line[EDGE_CHUNK_LINE_MAX + 2];
            char *text = line;
            char *big = NULL;
            if (len + 1 > sizeof line) {
                if (!(big = malloc(len + 1))) {
                    refuse(c, 503, EDGE_FRAMING, "out of memory reading the request");
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
                refuse(c, 400, EDGE_FRAMING, "malformed chunk size line (hex digits only, no "
                                             "extensions)");
                return;
            }
            if (size > body_limit - c->body_total) {
                refuse(c, 413, EDGE_FRAMING, "request body over the %zu-byte limit", body_limit);
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
            refuse(c, 400, EDGE_FRAMING, "chunk data not followed by CRLF");
            return;
        }
        c->pos += (size_t)c->body_left + 2;
        c->state = ST_CHUNK_SIZE;
    }
}

static void parse(edge_conn *c)
{
    parse_some(c);
    /* a request begun and not whole: its deadline runs from now (the same
     * turn its first byte came in); most requests arrive whole in one read
     * and never arm it */
    if (!c->refused && c->started && !c->armed)
        arm_deadline(c);
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
static void on_input(struct evbuffer *in, const struct evbuffer_cb_info *info, void *arg)
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
        parse(c);
}

/* ------------------------------------------------------------------------
 * Admission and the deadline
 * ---------------------------------------------------------------------- */

/* Makes byfd hold index `fd`; returns its size (unchanged when short of
 * memory). */
static size_t w_nbyfd_grow(bworker *w, size_t fd)
{
    if (fd < w->nbyfd)
        return w->nbyfd;
    size_t n = w->nbyfd ? w->nbyfd : 1024;
    while (n <= fd)
        n *= 2;
    edge_conn **p = realloc(w->byfd, n * sizeof *p);
    if (!p)
        return w->nbyfd;
    memset(p + w->nbyfd, 0, (n - w->nbyfd) * sizeof *p);
    w->byfd = p;
    w->nbyfd = n;
    return n;
}

/* evhttp is closing the connection: its place is free at once (the rest
 * of the edge's state goes with the next sweep). */
static void on_conn_close(struct evhttp_connection *evcon, void *arg)
{
    edge_conn *c = arg;
    (void)evcon;
    c->closed = true;
    if (c->counted) {
        peer_release(c->w->b, c->addr);
        c->counted = false;
    }
}

void edge_track(bworker *w, struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
    if (fd < 0 || (size_t)fd >= w->nbyfd)
        return;
    edge_conn *c = w->byfd[fd];
    if (c && c->bev == bev && !c->closecb_set && !c->closed) {
        evhttp_connection_set_closecb(evcon, on_conn_close, c);
        c->closecb_set = true;
    }
}

static void admit(edge_conn *c)
{
    tsl_broker *b = c->w->b;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    struct stat st;
    bufferevent_data_cb readcb = NULL;

    bufferevent_getcb(c->bev, &readcb, NULL, NULL, NULL);
    c->fd = readcb ? bufferevent_getfd(c->bev) : -1;
    if (c->fd < 0 || fstat(c->fd, &st) < 0) {
        /* evhttp gave the connection up already */
        bufferevent_decref(c->bev);
        conn_free(c);
        return;
    }
    c->dev = st.st_dev;
    c->ino = st.st_ino;
    c->settled = true;
    if ((size_t)c->fd >= w_nbyfd_grow(c->w, (size_t)c->fd))
        ; /* no room: this connection's count is released by the sweep */
    else
        c->w->byfd[c->fd] = c;
    memset(c->addr, 0, sizeof c->addr);
    if (getpeername(c->fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET) {
            c->addr[10] = c->addr[11] = 0xff;
            memcpy(c->addr + 12, &((struct sockaddr_in *)&ss)->sin_addr, 4);
        } else if (ss.ss_family == AF_INET6) {
            memcpy(c->addr, &((struct sockaddr_in6 *)&ss)->sin6_addr, 16);
        }
    }
    /* a trusted proxy (--trusted-proxy) speaks for many clients: not capped */
    if (broker_trusted_proxy(b, c->addr)) {
        /* not counted */
    } else if (peer_acquire(b, c->addr)) {
        c->counted = true;
    } else {
        char text[INET6_ADDRSTRLEN] = "?";
        if (ss.ss_family == AF_INET)
            inet_ntop(AF_INET, c->addr + 12, text, sizeof text);
        else
            inet_ntop(AF_INET6, c->addr, text, sizeof text);
        refuse(c, 503, EDGE_PER_ADDRESS,
               "too many connections from %s (at most %d per address): close idle ones", text,
               b->cfg.max_conns_per_addr);
        kick(c);
    }
    bufferevent_decref(c->bev); /* evhttp's own reference keeps it */
    if (evbuffer_get_length(c->hold) && !c->refused)
        parse(c);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    edge_conn *c = arg;
    (void)fd;
    (void)what;
    if (!c->settled) {
        admit(c);
        return;
    }
    if (!conn_alive(c)) {
        conn_free(c);
        return;
    }
    c->armed = false; /* it fired */
    if (c->refused || !c->started)
        return;
    /* evhttp is busy with an earlier request and reads nothing meanwhile:
     * the client is not the slow one */
    if (!(bufferevent_get_enabled(c->bev) & EV_READ)) {
        arm_deadline(c);
        return;
    }
    refuse(c, 408, EDGE_DEADLINE, "the request did not arrive whole within %d s (--timeout)",
           c->w->b->cfg.timeout_s);
    kick(c);
}

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    bworker *w = arg;
    (void)fd;
    (void)what;
    for (edge_conn *c = w->conns, *next; c; c = next) {
        next = c->next;
        if (c->settled && !conn_alive(c))
            conn_free(c);
    }
}

/* ------------------------------------------------------------------------
 * New connections
 * ---------------------------------------------------------------------- */

static struct bufferevent *on_new_connection(struct event_base *base, void *arg)
{
    bworker *w = arg;
    tsl_broker *b = w->b;
    struct bufferevent *bev = NULL;
    edge_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL; /* evhttp closes the connection */
    if (b->tls) {
        SSL *ssl = SSL_new(b->tls);
        if (ssl && !(bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                          BEV_OPT_CLOSE_ON_FREE)))
            SSL_free(ssl);
        if (bev)
            bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
        c->tls = true;
    } else {
        bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    }
    if (!bev || !(c->hold = evbuffer_new()) ||
        !(c->timer = event_new(base, -1, 0, on_timer, c)) ||
        !(c->cbent = evbuffer_add_cb(bufferevent_get_input(bev), on_input, c))) {
        if (bev)
            bufferevent_free(bev);
        if (c->hold)
            evbuffer_free(c->hold);
        if (c->timer)
            event_free(c->timer);
        free(c);
        return NULL;
    }
    c->w = w;
    c->bev = bev;
    c->fd = -1;
    /* evhttp sets the descriptor after this returns; admission runs right
     * after, in this loop turn, holding a reference in case evhttp gives
     * the connection up in between */
    bufferevent_incref(bev);
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    event_active(c->timer, EV_TIMEOUT, 1);
    return bev;
}

/* ------------------------------------------------------------------------
 * Descriptor exhaustion: pause accepting, resume on a timer, log rarely
 * ---------------------------------------------------------------------- */

/* The worker this thread runs: libevent hands the error callback evhttp's
 * own argument, not ours. */
static _Thread_local bworker *this_worker;

void edge_worker_enter(bworker *w) { this_worker = w; }

static void on_accept_error(struct evconnlistener *lev, void *arg)
{
    bworker *w = this_worker;
    (void)arg;
    if (!w) {
        evconnlistener_disable(lev); /* cannot happen: workers enter first */
        return;
    }
    tsl_broker *b = w->b;
    int err = EVUTIL_SOCKET_ERROR();
    struct timeval tv = {0, EDGE_RESUME_MS * 1000};

    evconnlistener_disable(lev);
    event_add(w->resume_ev, &tv);
    uint64_t total = atomic_fetch_add(&b->accept_paused, 1) + 1;
    int64_t now_ms = (int64_t)(broker_mono_ns() / 1000000);
    int64_t last = atomic_load(&b->accept_log_at);
    if ((last == 0 || now_ms - last >= EDGE_LOG_EVERY_MS) &&
        atomic_compare_exchange_strong(&b->accept_log_at, &last, now_ms)) {
        uint64_t since = total - atomic_exchange(&b->accept_paused_logged, total);
        broker_log(b, TSL_LOG_ERROR,
                   "Cannot accept connections: %s; accepting paused %llu times since the last "
                   "line (each %d ms; raise the descriptor limit, e.g. LimitNOFILE=, or lower "
                   "--timeout)",
                   evutil_socket_error_to_string(err), (unsigned long long)since, EDGE_RESUME_MS);
    }
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
    bworker *w = arg;
    (void)fd;
    (void)what;
    if (w->bound && !w->draining)
        evconnlistener_enable(evhttp_bound_socket_get_listener(w->bound));
}

/* ------------------------------------------------------------------------
 * Setup
 * ---------------------------------------------------------------------- */

int edge_worker_setup(bworker *w)
{
    struct timeval tv = {0, EDGE_SWEEP_MS * 1000};
    evhttp_set_bevcb(w->http, on_new_connection, w);
    if (!(w->sweep_ev = event_new(w->base, -1, EV_PERSIST, on_sweep, w)) ||
        !(w->resume_ev = event_new(w->base, -1, 0, on_resume, w)) || event_add(w->sweep_ev, &tv) < 0)
        return tsl_seterr(TSL_ERROR, "cannot create the connection edge's events");
    if (w->bound)
        evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(w->bound), on_accept_error);
    return 0;
}

void edge_worker_free(bworker *w)
{
    /* evhttp_free has freed every connection: what is left is our state */
    while (w->conns) {
        edge_conn *c = w->conns;
        if (!c->settled)
            bufferevent_decref(c->bev);
        c->settled = true;
        conn_free(c);
    }
    if (w->sweep_ev)
        event_free(w->sweep_ev);
    if (w->resume_ev)
        event_free(w->resume_ev);
    w->sweep_ev = w->resume_ev = NULL;
    free(w->byfd);
    w->byfd = NULL;
    w->nbyfd = 0;
}

int edge_check_plain(const tsl_broker *b, const struct sockaddr *sa)
{
    bool loopback = false;
    if (sa->sa_family == AF_INET)
        loopback = (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    else if (sa->sa_family == AF_INET6)
        loopback = IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)sa)->sin6_addr);
    if (loopback || b->tls || b->cfg.behind_tls_proxy)
        return 0;
    return tsl_seterr(TSL_EINVALID,
                      "refusing to serve plain HTTP on %s, beyond loopback: the admin token and "
                      "Task Server credentials would cross the network in clear; give "
                      "--tls-cert FILE --tls-key FILE, or --behind-tls-proxy when a "
                      "TLS-terminating proxy stands in front of the broker",
                      b->cfg.listen);
}

int edge_init(tsl_broker *b)
{
    unsigned char raw[12];
    size_t got = 0;
    int err = 0;

    pthread_mutex_init(&b->peer_mu, NULL);
    if (!(b->peers = calloc(EDGE_PEER_BUCKETS, sizeof *b->peers)))
        return tsl_oom();
    while (got < sizeof raw) {
        ssize_t n = getrandom(raw + got, sizeof raw - got, 0);
        if (n < 0 && errno != EINTR)
            return tsl_seterr(TSL_ERROR, "getrandom: %s", strerror(errno));
        if (n > 0)
            got += (size_t)n;
    }
    int n = snprintf(b->edge_prefix, sizeof b->edge_prefix, ".tsl-edge-");
    for (size_t i = 0; i < sizeof raw; i++)
        n += snprintf(b->edge_prefix + n, sizeof b->edge_prefix - (size_t)n, "%02x", raw[i]);

    bool tls_asked = (b->cfg.tls_cert && *b->cfg.tls_cert) || (b->cfg.tls_key && *b->cfg.tls_key);
    if (tls_asked && !(b->cfg.tls_cert && *b->cfg.tls_cert && b->cfg.tls_key && *b->cfg.tls_key))
        return tsl_seterr(TSL_EINVALID, "--tls-cert and --tls-key go together: give both");
    if (!tls_asked)
        return 0;
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx)
        return tsl_seterr(TSL_ERROR, "cannot create a TLS context");
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_use_certificate_chain_file(ctx, b->cfg.tls_cert) != 1) {
        err = tsl_seterr(TSL_EINVALID, "--tls-cert %s: %s", b->cfg.tls_cert,
                         ERR_reason_error_string(ERR_get_error()));
    } else if (SSL_CTX_use_PrivateKey_file(ctx, b->cfg.tls_key, SSL_FILETYPE_PEM) != 1) {
        err = tsl_seterr(TSL_EINVALID, "--tls-key %s: %s", b->cfg.tls_key,
                         ERR_reason_error_string(ERR_get_error()));
    } else if (SSL_CTX_check_private_key(ctx) != 1) {
        err = tsl_seterr(TSL_EINVALID, "--tls-key %s does not match the certificate %s",
                         b->cfg.tls_key, b->cfg.tls_cert);
    }
    ERR_clear_error();
    if (err < 0) {
        SSL_CTX_free(ctx);
        return err;
    }
    b->tls = ctx;
    return 0;
}

void edge_free(tsl_broker *b)
{
    if (b->peers) {
        for (size_t i = 0; i < EDGE_PEER_BUCKETS; i++) {
            for (edge_peer *p = b->peers[i], *next; p; p = next) {
                next = p->next;
                free(p);
            }
        }
        free(b->peers);
        b->peers = NULL;
        pthread_mutex_destroy(&b->peer_mu);
    }
    if (b->tls)
        SSL_CTX_free(b->tls);
    b->tls = NULL;
}
