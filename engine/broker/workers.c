/*
 * workers.c - the HTTP workers' setup and teardown on the control thread:
 * the listening socket (every worker accepts on a dup of it), each
 * worker's event base, evhttp, edge and group-commit queue, and the
 * thread body that runs its loop.
 *
 * Used by: broker.c (workers.h).  Needs: control.h (the completion queue,
 * the plan), http.h, edge.h.
 */
#include "workers.h"
#include "control.h"
#include "edge.h"
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

void *broker_worker_main(void *arg)
{
    bworker *w = arg;
    edge_worker_enter(w);
    broker_log_worker_enter(w);
    event_base_loop(w->base, EVLOOP_NO_EXIT_ON_EMPTY);
    broker_log_worker_leave(w);
    return NULL;
}

void broker_worker_free(bworker *w)
{
    if (w->bound && w->http)
        evhttp_del_accept_socket(w->http, w->bound);
    if (w->http)
        evhttp_free(w->http);
    edge_worker_free(w);
    writer_worker_free(w);
    broker_log_worker_free(w);
    if (w->stop_ev)
        event_free(w->stop_ev);
    if (w->refresh_ev)
        event_free(w->refresh_ev);
    if (w->base)
        event_base_free(w->base);
    tsl_plan_free(w->plan);
    tsl_plan_free(w->shadow_plan);
    tsl_worker_free(w->tw);
    tsl_worker_free(w->shadow_tw);
    tsl_result_free(w->res);
    tsl_result_free(w->shadow_res);
    tsl_trace_free(w->trace);
    tsl_buf_free(&w->out);
    tsl_buf_free(&w->line);
    tsl_buf_free(&w->body);
    memset(w, 0, sizeof *w);
}

/* ------------------------------------------------------------------------
 * The listening socket
 * ---------------------------------------------------------------------- */

/* "10.0.0.1:8080", "[::1]:8080" or ":8080" (every IPv4 address); port 0
 * lets the kernel pick.  Numeric addresses only. */
static int parse_listen(const char *text, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[64];
    const char *colon = strrchr(text, ':');
    char *end;
    memset(ss, 0, sizeof *ss);
    if (!colon || !colon[1])
        return -1;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 0 || port > 65535)
        return -1;
    size_t hl = (size_t)(colon - text);
    if (hl >= 2 && text[0] == '[' && text[hl - 1] == ']') {
        text++;
        hl -= 2;
    } else if (memchr(text, ':', hl)) {
        return -1; /* an IPv6 address needs its brackets */
    }
    if (hl >= sizeof host)
        return -1;
    memcpy(host, text, hl);
    host[hl] = '\0';
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    if (hl == 0 || inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        if (hl == 0)
            v4->sin_addr.s_addr = htonl(INADDR_ANY);
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        *len = sizeof *v4;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        *len = sizeof *v6;
        return 0;
    }
    return -1;
}

int broker_open_listener(tsl_broker *b)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    int one = 1;
    evutil_socket_t fd = -1;
    int err = 0;

    if (parse_listen(b->listen, &ss, &sslen) < 0) {
        err = tsl_seterr(TSL_EINVALID,
                         "--listen \"%s\": expected ADDRESS:PORT (127.0.0.1:8080, [::1]:8080, "
                         ":8080 for every IPv4 address; port 0 picks a free one)",
                         b->listen);
        goto done;
    }
    if ((err = edge_check_plain(b, (struct sockaddr *)&ss)) < 0)
        goto done;
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        err = tsl_seterr(TSL_ERROR, "socket: %s", strerror(errno));
        goto done;
    }
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, (struct sockaddr *)&ss, sslen) < 0 || listen(fd, 1024) < 0) {
        err = tsl_seterr(TSL_ERROR, "cannot listen on %s: %s", b->listen, strerror(errno));
        goto done;
    }
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
        err = tsl_seterr(TSL_ERROR, "getsockname: %s", strerror(errno));
        goto done;
    }
    b->port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                       : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    b->listen_fd = fd;
    fd = -1;

done:
    if (fd >= 0)
        close(fd);
    return err;
}

int broker_worker_setup(tsl_broker *b, bworker *w, int index)
{
    int err;
    w->b = b;
    w->index = index;
    if ((err = tsl_worker_new(&w->tw)) < 0 || (err = tsl_result_new(&w->res)) < 0 ||
        (err = tsl_worker_new(&w->shadow_tw)) < 0 || (err = tsl_result_new(&w->shadow_res)) < 0 ||
        (err = tsl_trace_new(&w->trace)) < 0)
        return err;
    /* No EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST: with it, a connection closed
     * and a new one accepted on the same fd number in one loop iteration
     * folds into "no change", the new socket is never added to epoll and
     * its request hangs (broker__policy_activations_under_concurrent_
     * requests_fail_none caught it: one to four of its sixty activations timed
     * out). */
    w->base = event_base_new();
    if (!w->base)
        return tsl_seterr(TSL_ERROR, "cannot create an event base");
    if ((err = writer_worker_init(w)) < 0 || (err = http_worker_setup(w)) < 0 ||
        (err = broker_log_worker_setup(w)) < 0)
        return err;
    evutil_socket_t fd = dup(b->listen_fd);
    if (fd < 0)
        return tsl_seterr(TSL_ERROR, "dup: %s", strerror(errno));
    if (!(w->bound = evhttp_accept_socket_with_handle(w->http, fd))) {
        close(fd);
        return tsl_seterr(TSL_ERROR, "cannot accept on the listening socket");
    }
    if ((err = edge_worker_setup(w)) < 0)
        return err;
    worker_refresh_plan(w);
    return 0;
}
