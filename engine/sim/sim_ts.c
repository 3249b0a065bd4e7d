/*
 * sim_ts.c - simulated Task Servers, and the two fake network conditions.
 *
 * A Task Server is an evhttp server on 127.0.0.1 speaking the agent's
 * protocol (agent.h): /register (200, or 503 when at capacity), /poll (200
 * while the client is registered here) and /unregister.  It holds one
 * registration per client, forgets clients that stop polling, and sends a
 * heartbeat to the broker every `heartbeat` simulated seconds with its
 * connections, capacity, a response time that grows with load, and its
 * service state.  Halting it closes its port: "stop" sends a last
 * `stopped` heartbeat first, "kill" and "dark" do not.
 *
 * The network: a port that refuses every connection (a bound socket that
 * never listens) stands for a server that is down; a blackhole that accepts
 * and never answers stands for a cut link or a dark site, so the client's
 * exchange times out the way it would on a real WAN.
 *
 * Used by: sim.c.  Needs: sim_internal.h, libevent.
 */
#include "sim_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ------------------------------------------------------------------------
 * Requests
 * ---------------------------------------------------------------------- */

static void reply(struct evhttp_request *req, int code, const char *reason, const char *json)
{
    struct evbuffer *b = evbuffer_new();
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "application/json");
    if (b)
        evbuffer_add(b, json, strlen(json));
    evhttp_send_reply(req, code, reason, b);
    if (b)
        evbuffer_free(b);
}

/* The client index named by ?client=GUID, or -1. */
static long client_of(sim *s, struct evhttp_request *req)
{
    struct evkeyvalq q;
    long found = -1;
    const char *uri = evhttp_request_get_uri(req);
    const char *qs = strchr(uri, '?');
    if (!qs || evhttp_parse_query_str(qs + 1, &q) < 0)
        return -1;
    const char *guid = evhttp_find_header(&q, "client");
    if (guid)
        found = sim_find_client(s, guid);
    evhttp_clear_headers(&q);
    return found;
}

/* Registrations not refreshed by a poll for three poll intervals lapse. */
static void expire(sim_ts *t)
{
    sim *s = t->sim;
    double limit = sim_now(s) - 3 * s->scn->agent.poll_interval - 60;
    for (size_t i = 0; i < s->nclients; i++)
        if (t->seen[i] >= 0 && t->seen[i] < limit) {
            t->seen[i] = -1;
            t->connections--;
        }
}

static void on_request(struct evhttp_request *req, void *arg)
{
    sim_ts *t = arg;
    sim *s = t->sim;
    const char *uri = evhttp_request_get_uri(req);
    long c = client_of(s, req);

    if (c < 0) {
        reply(req, 400, "Bad Request", "{\"error\":\"unknown or missing client\"}");
        return;
    }
    if (strncmp(uri, "/register?", 10) == 0) {
        if (t->seen[c] >= 0) { /* registering again: fine */
            t->seen[c] = sim_now(s);
            reply(req, 200, "OK", "{\"ok\":true}");
            return;
        }
        if (t->connections >= t->capacity) {
            t->refused_full++;
            reply(req, 503, "Service Unavailable", "{\"error\":\"full\"}");
            return;
        }
        t->seen[c] = sim_now(s);
        t->connections++;
        t->accepted++;
        reply(req, 200, "OK", "{\"ok\":true}");
    } else if (strncmp(uri, "/poll?", 6) == 0) {
        if (t->seen[c] < 0) {
            reply(req, 404, "Not Found", "{\"error\":\"not registered\"}");
            return;
        }
        t->seen[c] = sim_now(s);
        reply(req, 200, "OK", "{\"ok\":true}");
    } else if (strncmp(uri, "/unregister?", 12) == 0) {
        if (t->seen[c] >= 0) {
            t->seen[c] = -1;
            t->connections--;
        }
        reply(req, 200, "OK", "{\"ok\":true}");
    } else {
        reply(req, 404, "Not Found", "{\"error\":\"no such endpoint\"}");
    }
}

/* ------------------------------------------------------------------------
 * Heartbeats
 * ---------------------------------------------------------------------- */

static void on_heartbeat_done(const ahttp_result *r, void *arg)
{
    sim_ts *t = arg;
    t->h_heartbeat = NULL;
    if (r->status >= 200 && r->status <= 299)
        t->heartbeats++;
    else
        t->heartbeat_failures++;
}

static void send_heartbeat(sim_ts *t, const char *service)
{
    sim *s = t->sim;
    char target[256], esc[200], body[256], auth[200] = "";
    if (!s->broker_up || t->h_heartbeat)
        return;
    if (!ahttp_query_escape(esc, sizeof esc, t->name))
        return;
    /* response time grows with load: base x (1 + 2 x load) */
    double load = t->capacity > 0 ? (double)t->connections / (double)t->capacity : 1;
    long long resp = (long long)((double)t->response_ms * (1 + 2 * load));
    snprintf(target, sizeof target, "/v1/task-servers/%s/heartbeat", esc);
    snprintf(body, sizeof body,
             "{\"connections\":%ld,\"capacity\":%lld,\"response_ms\":%lld,\"service\":\"%s\"}",
             t->connections, (long long)t->capacity, resp, service);
    if (s->ts_token[0]) /* the broker's Task Server credential */
        snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", s->ts_token);
    if (ahttp_start(&t->h_heartbeat, s->base, "127.0.0.1", s->broker_port, "POST", target,
                    auth[0] ? auth : NULL, body, strlen(body), s->scn->agent.request_timeout,
                    s->clock,
                    on_heartbeat_done, t) < 0)
        t->heartbeat_failures++;
    else
        s->broker_dirty = true;
}

static void heartbeat_timer(void *arg)
{
    sim_ts *t = arg;
    if (t->state != TS_UP)
        return;
    expire(t);
    send_heartbeat(t, "running");
    atimer_add(t->t_heartbeat, t->sim->scn->heartbeat);
}

/* ------------------------------------------------------------------------
 * Starting and halting
 * ---------------------------------------------------------------------- */

static int bind_port(sim_ts *t, int port)
{
    struct evhttp_bound_socket *bs = evhttp_bind_socket_with_handle(t->http, "127.0.0.1",
                                                                    (ev_uint16_t)port);
    if (!bs)
        return -1;
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    if (getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&sa, &len) < 0)
        return -1;
    t->port = ntohs(sa.sin_port);
    return 0;
}

int sim_ts_start(sim_ts *t)
{
    sim *s = t->sim;
    if (!t->seen) {
        if (!(t->seen = malloc((s->nclients ? s->nclients : 1) * sizeof *t->seen)))
            return tsl_oom();
    }
    for (size_t i = 0; i < s->nclients; i++)
        t->seen[i] = -1;
    t->connections = 0;
    int err;
    if (!t->t_heartbeat &&
        (err = atimer_new(&t->t_heartbeat, s->base, s->clock, heartbeat_timer, t)) < 0)
        return err;
    if (!(t->http = evhttp_new(s->base)))
        return tsl_oom();
    evhttp_set_gencb(t->http, on_request, t);
    evhttp_set_allowed_methods(t->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
    evhttp_set_timeout(t->http, 60);
    /* the same port again when it is free, so a restarted server keeps its address */
    if ((t->port == 0 || bind_port(t, t->port) < 0) && bind_port(t, 0) < 0) {
        evhttp_free(t->http);
        t->http = NULL;
        return tsl_seterr(TSL_ERROR, "task server %s: cannot listen on 127.0.0.1: %s", t->name,
                          strerror(errno));
    }
    t->state = TS_UP;
    /* the first heartbeat at once: the broker learns the server's state */
    atimer_add(t->t_heartbeat, 0);
    return 0;
}

void sim_ts_halt(sim_ts *t, sim_ts_state why)
{
    if (t->state != TS_UP) { /* already down: only the kind of outage changes */
        t->state = why;
        return;
    }
    if (why == TS_STOPPED) {
        ahttp_cancel(t->h_heartbeat);
        t->h_heartbeat = NULL;
        send_heartbeat(t, "stopped");
    }
    atimer_del(t->t_heartbeat);
    if (t->http) {
        evhttp_free(t->http);
        t->http = NULL;
    }
    for (size_t i = 0; i < t->sim->nclients; i++)
        t->seen[i] = -1;
    t->connections = 0;
    t->state = why;
}

void sim_ts_free(sim_ts *t)
{
    if (t->http)
        evhttp_free(t->http);
    ahttp_cancel(t->h_heartbeat);
    atimer_free(t->t_heartbeat);
    free(t->seen);
    free(t->name);
    t->http = NULL;
    t->h_heartbeat = NULL;
    t->t_heartbeat = NULL;
    t->seen = NULL;
    t->name = NULL;
}

/* ------------------------------------------------------------------------
 * The network: refuse port and blackhole
 * ---------------------------------------------------------------------- */

struct sim_hole {
    struct sim_hole *next, *prev;
    struct bufferevent *bev;
    sim *s;
};

static void hole_close(struct sim_hole *h)
{
    sim *s = h->s;
    if (h->prev)
        h->prev->next = h->next;
    else
        s->holes = h->next;
    if (h->next)
        h->next->prev = h->prev;
    bufferevent_free(h->bev);
    free(h);
}

static void hole_read(struct bufferevent *bev, void *arg)
{
    (void)arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    evbuffer_drain(in, evbuffer_get_length(in)); /* swallowed, never answered */
}

static void hole_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        hole_close(arg);
}

static void hole_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                        int salen, void *arg)
{
    sim *s = arg;
    (void)l;
    (void)sa;
    (void)salen;
    struct sim_hole *h = calloc(1, sizeof *h);
    if (!h || !(h->bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE))) {
        free(h);
        evutil_closesocket(fd);
        return;
    }
    h->s = s;
    bufferevent_setcb(h->bev, hole_read, NULL, hole_event, h);
    bufferevent_enable(h->bev, EV_READ);
    h->next = s->holes;
    if (s->holes)
        s->holes->prev = h;
    s->holes = h;
}

static int local_port(int fd)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
        return -1;
    return ntohs(sa.sin_port);
}

int sim_net_open(sim *s)
{
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s->refuse_fd = socket(AF_INET, SOCK_STREAM, 0);
    if (s->refuse_fd < 0 || bind(s->refuse_fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        (s->refuse_port = local_port(s->refuse_fd)) <= 0)
        return tsl_seterr(TSL_ERROR, "cannot reserve a loopback port: %s", strerror(errno));
    s->blackhole = evconnlistener_new_bind(s->base, hole_accept, s,
                                           LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 1024,
                                           (struct sockaddr *)&sa, sizeof sa);
    if (!s->blackhole ||
        (s->blackhole_port = local_port(evconnlistener_get_fd(s->blackhole))) <= 0)
        return tsl_seterr(TSL_ERROR, "cannot listen on a loopback port: %s", strerror(errno));
    return 0;
}

void sim_net_close(sim *s)
{
    while (s->holes)
        hole_close(s->holes);
    if (s->blackhole)
        evconnlistener_free(s->blackhole);
    s->blackhole = NULL;
    if (s->refuse_fd >= 0)
        close(s->refuse_fd);
    s->refuse_fd = -1;
}
