/*
 * edge_conn.h - what the edge's files share: one connection's state, the
 * per-address table's entries, the edge's limits, and the connection
 * helpers edge_conn.c offers edge_read.c and edge.c.
 *
 * Used by: edge.c, edge_read.c, edge_conn.c (the edge only).
 * Needs: edge.h, libevent.
 */
#ifndef TSL_BROKER_EDGE_CONN_H
#define TSL_BROKER_EDGE_CONN_H

#include "edge.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <sys/types.h>

#define EDGE_PEER_BUCKETS 4096
#define EDGE_SWEEP_MS 250
#define EDGE_RESUME_MS 250      /* accept paused this long when descriptors ran out */
#define EDGE_LOG_EVERY_MS 10000 /* one descriptor-exhaustion line per interval */
#define EDGE_URI_MAX 8191       /* the dispatcher's limit (http.c URI_MAX - 1) */
#define EDGE_CHUNK_LINE_MAX 64

typedef struct edge_peer {
    struct edge_peer *next;
    unsigned char addr[16]; /* IPv4 as ::ffff:a.b.c.d */
    int count;
} edge_peer;


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

/* ---- edge_conn.c ---- */
/* Takes a place for `addr` in the per-address table; false when it is full. */
bool edge_peer_acquire(tsl_broker *b, const unsigned char *addr);
void edge_peer_release(tsl_broker *b, const unsigned char *addr);
/* true while c->fd is still the socket this connection accepted. */
bool edge_conn_alive(edge_conn *c);
void edge_conn_free(edge_conn *c);
/* Moves n bytes of `from` (or `bytes`) to evhttp's input. */
void edge_to_evhttp(edge_conn *c, struct evbuffer *from, size_t n, const char *bytes);
/* Hands evhttp a stand-in for a refused request: GET PREFIX/STATUS?MESSAGE
 * with Connection: close.  Everything after it on this connection is
 * dropped. */
void edge_refuse(edge_conn *c, int status, int kind, const char *fmt, ...) TSL_PRINTF(4, 5);
/* From a timer: evhttp reads the stand-in now or after the request in hand. */
void edge_kick(edge_conn *c);

/* ---- edge_read.c ---- */
/* Checks and hands on every whole request in c->hold. */
void edge_parse(edge_conn *c);
/* Starts the request deadline once its first byte is here. */
void edge_arm_deadline(edge_conn *c);
/* The input buffer's callback: moves new bytes into c->hold, then parses. */
void edge_on_input(struct evbuffer *in, const struct evbuffer_cb_info *info, void *arg);

#endif
