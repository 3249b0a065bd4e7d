/*
 * broker.h - the tsl broker as a library: an HTTP service (libevent evhttp)
 * that answers Client Task Agents' Task Server list requests from an
 * immutable in-memory plan, takes heartbeats and registration reports, and
 * serves the admin API (policies, explain, reports, inventory import).
 *
 * `tsl serve` is a thin program over this API; tests and the fleet
 * simulator run the same broker in-process, listening on 127.0.0.1 port 0
 * and reading the port back:
 *
 *     tsl_broker_config cfg;
 *     tsl_broker_config_init(&cfg);
 *     cfg.db_path = "estate.db";
 *     cfg.listen = "127.0.0.1:0";
 *     tsl_broker *b;
 *     if (tsl_broker_new(&b, &cfg) < 0) ... tsl_error_last() ...
 *     tsl_broker_start(b);              // or tsl_broker_run(b) to block
 *     int port = tsl_broker_bound_port(b);
 *     ...
 *     tsl_broker_stop(b);               // any thread
 *     tsl_broker_join(b);
 *     tsl_broker_free(b);
 *
 * Threads: one control thread (the one calling tsl_broker_run, or the one
 * tsl_broker_start creates) owns the SQLite store, the write queue, plan
 * publishing, signals and admin jobs; `threads` HTTP workers each run their
 * own event_base and evhttp on the shared listening socket, with their own
 * tsl_worker and tsl_result, and never touch SQLite.  The threads the
 * broker creates block SIGPIPE, SIGTERM, SIGINT and SIGHUP; the process's
 * signal dispositions are left alone unless handle_signals is set.
 *
 * Errors follow tsl.h: 0 or a negative tsl_error, the detail in
 * tsl_error_last().
 *
 * Used by: engine/cli/cmd_serve.c, tests/test_broker*.c, the simulator.
 * Needs: tsl.h, libevent (evhttp, pthreads), jansson, SQLite via the store.
 */
#ifndef TSL_BROKER_H
#define TSL_BROKER_H

#include "tsl.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tsl_broker tsl_broker;

/* Log levels, most severe first (syslog's order). */
typedef enum tsl_log_level {
    TSL_LOG_ERROR = 0,
    TSL_LOG_WARNING,
    TSL_LOG_INFO,   /* one line per request, heartbeat change and registration */
    TSL_LOG_DEBUG
} tsl_log_level;

/* Receives each log line (no trailing newline).  Called from any broker
 * thread, possibly at once from several: it must be thread-safe. */
typedef void (*tsl_broker_log_fn)(void *ud, tsl_log_level level, const char *line);
/* The broker's clock in Unix seconds (the simulator runs time faster). */
typedef int64_t (*tsl_broker_clock_fn)(void *ud);

typedef struct tsl_broker_config {
    const char *db_path;          /* the SQLite store (created and migrated if needed); required */
    const char *listen;           /* "HOST:PORT", "[v6]:PORT"; port 0 picks a free one ("127.0.0.1:8080") */
    const char *policy_path;      /* a policy file to store and activate at start (and on SIGHUP); NULL: the store's active version */
    const char *admin_token_file; /* NULL: DB_PATH.token; created 0600 with a random token if absent */
    const char *ts_token_file;    /* the Task Servers' bearer token for heartbeats; NULL:
                                     DB_PATH.ts-token; created 0600 with a random token if absent */
    bool heartbeat_registration;  /* a heartbeat from a name the inventory lacks makes it a
                                     pending server (an admin approves it) instead of 403 */
    double heartbeat_rate;        /* heartbeats a second per peer address (token bucket); 0: no limit (20) */
    int heartbeat_burst;          /* that bucket's size (200) */
    int max_servers;              /* task servers, known and pending, at most (10000) */
    double registration_rate;     /* registration reports a second per client GUID; 0: no limit (1) */
    int registration_burst;       /* that bucket's size (20) */
    tsl_settings settings;        /* the default logic's tunables (stale_after, error_window, ...) */
    int threads;                  /* HTTP worker threads; 0: one per CPU */
    int refresh_ms;               /* at most this often a new plan from heartbeats/registrations (500) */
    int flush_ms;                 /* write queue to SQLite at least this often (100) */
    int drain_ms;                 /* on stop: keep answering open connections this long (200) */
    int timeout_s;                /* deadline for a whole request (headers and body) from its
                                     first byte, and the idle limit of a connection (10) */
    int max_conns_per_addr;       /* open connections from one peer address; 0: no cap (256) */
    const char *tls_cert;         /* PEM certificate chain: serve HTTPS (with tls_key) */
    const char *tls_key;          /* PEM private key of tls_cert */
    bool behind_tls_proxy;        /* plain HTTP beyond loopback is allowed: a TLS-terminating
                                     proxy stands in front (else refused without TLS) */
    size_t max_body;              /* largest request body, except POST /v1/inventory (64 KiB) */
    size_t max_import_body;       /* largest POST /v1/inventory body (64 MiB) */
    size_t max_headers_size;      /* largest request header block, bytes (8 KiB) */
    int max_headers;              /* most request header lines (64) */
    size_t max_queue;             /* writes queued for SQLite before heartbeats get 503 (100000) */
    int decision_log_max;         /* rows kept in the decision_log ring; 0 turns the log off (100000) */
    int decision_log_rate;        /* decisions logged per second at most; the rest counted (1000) */
    int registrations_keep_days;  /* registrations older than this are deleted (90) */
    tsl_log_level log_level;      /* lines above this level are dropped (TSL_LOG_INFO) */
    tsl_broker_log_fn log_fn;     /* NULL: one line per event on stderr */
    void *log_ud;
    bool handle_signals;          /* SIGTERM/SIGINT stop, SIGHUP reloads (libevent signal events) */
    bool require_peer_ip;         /* refuse (403) a list request whose TCP peer is not one of
                                   * its ip= adapters (off) */
    const char *trusted_proxies;  /* "ADDR[/BITS],...": peers whose X-Forwarded-For gives the
                                   * client's address when require_peer_ip is on (NULL: none) */
    tsl_broker_clock_fn clock;    /* NULL: time(NULL) */
    void *clock_ud;
} tsl_broker_config;

/* Fills the defaults listed above (db_path NULL). */
void tsl_broker_config_init(tsl_broker_config *cfg);

/* Opens the store, loads the inventory and the active policy, binds the
 * listening socket and prepares the workers; nothing runs yet.  The config
 * is copied (its strings too). */
int tsl_broker_new(tsl_broker **out, const tsl_broker_config *cfg);
/* Stops (if running), waits, flushes and frees.  Accepts NULL. */
void tsl_broker_free(tsl_broker *b);

/* The port the listening socket is bound to (the real one when 0 was asked). */
int tsl_broker_bound_port(const tsl_broker *b);
/* The admin bearer token (borrowed from the broker). */
const char *tsl_broker_admin_token(const tsl_broker *b);
/* Where the admin token file is (borrowed). */
const char *tsl_broker_admin_token_path(const tsl_broker *b);
/* The Task Servers' bearer token, and its file (borrowed). */
const char *tsl_broker_ts_token(const tsl_broker *b);
const char *tsl_broker_ts_token_path(const tsl_broker *b);

/* Runs the broker in the calling thread until tsl_broker_stop() or a
 * SIGTERM/SIGINT (with handle_signals): then stops accepting, answers the
 * requests in flight, flushes every acknowledged write to SQLite and
 * returns 0 (or the error that stopped it). */
int tsl_broker_run(tsl_broker *b);
/* Runs it in a new thread; returns once it is accepting connections. */
int tsl_broker_start(tsl_broker *b);
/* Asks the broker to stop; safe from any thread, returns at once. */
void tsl_broker_stop(tsl_broker *b);
/* Waits for a tsl_broker_start()ed broker to finish; returns run's result. */
int tsl_broker_join(tsl_broker *b);

/* Applies everything queued to SQLite and publishes a new plan if the
 * overlay changed, now, from any thread; returns once done (tests use it
 * instead of sleeping).  The broker must be running. */
int tsl_broker_sync(tsl_broker *b);

/* The version of the policy in force, or NULL under the default logic.
 * Copied into dst (at least 80 bytes); returns dst or NULL. */
const char *tsl_broker_policy_version(tsl_broker *b, char *dst, size_t len);

#ifdef __cplusplus
}
#endif

#endif
