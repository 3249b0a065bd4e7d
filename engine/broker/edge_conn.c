/*
 * edge_conn.c - one connection at the edge: its place in the per-address
 * table (every worker, peer_mu), whether its socket is still the one it
 * accepted, handing bytes on to evhttp, refusing a request with a stand-in,
 * and freeing it.
 *
 * Used by: edge.c (admission, sweeps), edge_read.c (hand on, refuse).
 * Needs: edge_conn.h.
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
 * Connections per peer address (every worker: peer_mu)
 * ---------------------------------------------------------------------- */


static size_t peer_hash(const unsigned char *a)
{
    size_t h = 14695981039346656037u;
    for (int i = 0; i < 16; i++)
        h = (h ^ a[i]) * 1099511628211u;
    return h % EDGE_PEER_BUCKETS;
}

/* Counts one more connection from `addr`; false (nothing counted) when
 * the cap is reached or memory is short. */
bool edge_peer_acquire(tsl_broker *b, const unsigned char *addr)
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

void edge_peer_release(tsl_broker *b, const unsigned char *addr)
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


bool edge_conn_alive(edge_conn *c)
{
    struct stat st;
    if (c->closed)
        return false;
    if (!c->settled)
        return true; /* admission runs in the same loop turn as accept */
    return fstat(c->fd, &st) == 0 && st.st_ino == c->ino && st.st_dev == c->dev;
}

void edge_conn_free(edge_conn *c)
{
    bworker *w = c->w;
    if (c->counted)
        edge_peer_release(w->b, c->addr);
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
void edge_to_evhttp(edge_conn *c, struct evbuffer *from, size_t n, const char *bytes)
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
void edge_refuse(edge_conn *c, int status, int kind, const char *fmt, ...)
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
    edge_to_evhttp(c, NULL, (size_t)n, req);
    broker_log(c->w->b, TSL_LOG_DEBUG, "Refused a connection's request (%d): %s", status, msg);
}

/* From a timer (not from a read, after which the bufferevent calls evhttp
 * anyway): evhttp reads the stand-in now if it is waiting for a request,
 * otherwise when it has answered the one in hand (it looks at its input
 * then). */
void edge_kick(edge_conn *c)
{
    if (bufferevent_get_enabled(c->bev) & EV_READ)
        bufferevent_trigger(c->bev, EV_READ, BEV_TRIG_IGNORE_WATERMARKS);
}
