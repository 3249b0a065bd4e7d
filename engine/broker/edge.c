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
 * This file admits connections and sets the edge up; one connection's
 * state is edge_conn.c's, reading requests whole edge_read.c's.
 *
 * Used by: http.c (tracking; it answers the stand-ins), broker.c (setup).  Needs: edge_conn.h,
 * libevent (bufferevent_openssl), OpenSSL.
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
        edge_peer_release(c->w->b, c->addr);
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
        edge_conn_free(c);
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
    } else if (edge_peer_acquire(b, c->addr)) {
        c->counted = true;
    } else {
        char text[INET6_ADDRSTRLEN] = "?";
        if (ss.ss_family == AF_INET)
            inet_ntop(AF_INET, c->addr + 12, text, sizeof text);
        else
            inet_ntop(AF_INET6, c->addr, text, sizeof text);
        edge_refuse(c, 503, EDGE_PER_ADDRESS,
               "too many connections from %s (at most %d per address): close idle ones", text,
               b->cfg.max_conns_per_addr);
        edge_kick(c);
    }
    bufferevent_decref(c->bev); /* evhttp's own reference keeps it */
    if (evbuffer_get_length(c->hold) && !c->refused)
        edge_parse(c);
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
    if (!edge_conn_alive(c)) {
        edge_conn_free(c);
        return;
    }
    c->armed = false; /* it fired */
    if (c->refused || !c->started)
        return;
    /* evhttp is busy with an earlier request and reads nothing meanwhile:
     * the client is not the slow one */
    if (!(bufferevent_get_enabled(c->bev) & EV_READ)) {
        edge_arm_deadline(c);
        return;
    }
    edge_refuse(c, 408, EDGE_DEADLINE, "the request did not arrive whole within %d s (--timeout)",
           c->w->b->cfg.timeout_s);
    edge_kick(c);
}

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    bworker *w = arg;
    (void)fd;
    (void)what;
    for (edge_conn *c = w->conns, *next; c; c = next) {
        next = c->next;
        if (c->settled && !edge_conn_alive(c))
            edge_conn_free(c);
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
        !(c->cbent = evbuffer_add_cb(bufferevent_get_input(bev), edge_on_input, c))) {
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
        edge_conn_free(c);
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
