/*
 * metrics.c - GET /metrics in the Prometheus text format (version 0.0.4):
 * requests by endpoint and status, the decision latency histogram, blocked
 * and fallback responses, policy errors, the active policy version, the
 * snapshot's age and size, heartbeats, registrations and the write queue.
 *
 * Each worker counts into its own worker_metrics (one writer, no locked
 * instructions); rendering sums the workers with relaxed loads.
 *
 * Used by: routes.c (route_metrics), http.c (status index).
 * Needs: broker_internal.h, edge.h (the edge's refusal counters).
 */
#include "edge.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

const char *const broker_route_names[ROUTE__COUNT] = {
#define BROKER_ROUTE_NAME_(id, name) [id] = name,
    BROKER_ROUTES(BROKER_ROUTE_NAME_)
#undef BROKER_ROUTE_NAME_
};

const int broker_status_codes[STATUS__COUNT] = {
#define BROKER_STATUS_CODE_(code) [STATUS_##code] = code,
    BROKER_STATUSES(BROKER_STATUS_CODE_)
#undef BROKER_STATUS_CODE_
};

int broker_status_index(int code)
{
    for (int i = 0; i < STATUS__COUNT; i++)
        if (broker_status_codes[i] == code)
            return i;
    return STATUS_500;
}

/* 1 µs to 100 ms: a decision normally takes a few microseconds. */
const double broker_latency_bounds[BROKER_LATENCY_BUCKETS] = {
    1e-6, 2e-6, 5e-6, 10e-6, 20e-6, 50e-6, 100e-6, 250e-6, 1e-3, 5e-3, 25e-3, 100e-3};

void metrics_observe_latency(worker_metrics *m, uint64_t ns)
{
    double s = (double)ns / 1e9;
    int i = 0;
    while (i < BROKER_LATENCY_BUCKETS && s > broker_latency_bounds[i])
        i++;
    METRIC_INC(m->latency[i]);
    METRIC_ADD(m->latency_sum_ns, ns);
    METRIC_INC(m->latency_count);
}

static uint64_t sum_workers(tsl_broker *b, size_t offset)
{
    uint64_t s = 0;
    for (int i = 0; i < b->nworkers; i++)
        s += atomic_load_explicit(
            (_Atomic uint64_t *)((char *)&b->workers[i].m + offset), memory_order_relaxed);
    return s;
}

#define W(field) sum_workers(b, offsetof(worker_metrics, field))

static int header(tsl_buf *out, const char *name, const char *type, const char *help)
{
    return tsl_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static int counter(tsl_buf *out, const char *name, const char *help, uint64_t v)
{
    int err = header(out, name, "counter", help);
    return err < 0 ? err : tsl_buf_printf(out, "%s %llu\n", name, (unsigned long long)v);
}

static int gauge(tsl_buf *out, const char *name, const char *help, double v)
{
    int err = header(out, name, "gauge", help);
    return err < 0 ? err : tsl_buf_printf(out, "%s %.17g\n", name, v);
}

/* A label value: backslash, quote and newline escaped. */
static int label(tsl_buf *out, const char *s)
{
    int err = 0;
    for (; *s && err == 0; s++) {
        if (*s == '\\' || *s == '"')
            err = tsl_buf_printf(out, "\\%c", *s);
        else if (*s == '\n')
            err = tsl_buf_puts(out, "\\n");
        else
            err = tsl_buf_put(out, s, 1);
    }
    return err;
}

int metrics_render(tsl_broker *b, tsl_buf *out)
{
    int err = 0;
    char version[96];
    const tsl_plan *plan = NULL;
#define TRY(x) do { if ((err = (x)) < 0) goto done; } while (0)

    /* requests by endpoint and status: every pair seen, and the hot path always */
    TRY(header(out, "tsl_http_requests_total", "counter",
               "HTTP requests answered, by endpoint and status code."));
    for (int r = 0; r < ROUTE__COUNT; r++) {
        for (int s = 0; s < STATUS__COUNT; s++) {
            uint64_t v = W(requests[r][s]);
            if (!v && !(r == ROUTE_TASK_SERVERS && s == STATUS_200))
                continue;
            TRY(tsl_buf_printf(out, "tsl_http_requests_total{endpoint=\"%s\",code=\"%d\"} %llu\n",
                               broker_route_names[r], broker_status_codes[s],
                               (unsigned long long)v));
        }
    }

    TRY(header(out, "tsl_decision_duration_seconds", "histogram",
               "Time to decide one Task Server list (GET /v1/task-servers)."));
    uint64_t cum = 0;
    for (int i = 0; i <= BROKER_LATENCY_BUCKETS; i++) {
        cum += W(latency[i]);
        if (i < BROKER_LATENCY_BUCKETS)
            TRY(tsl_buf_printf(out, "tsl_decision_duration_seconds_bucket{le=\"%g\"} %llu\n",
                               broker_latency_bounds[i], (unsigned long long)cum));
        else
            TRY(tsl_buf_printf(out, "tsl_decision_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
                               (unsigned long long)cum));
    }
    TRY(tsl_buf_printf(out, "tsl_decision_duration_seconds_sum %.9f\n",
                       (double)W(latency_sum_ns) / 1e9));
    TRY(tsl_buf_printf(out, "tsl_decision_duration_seconds_count %llu\n",
                       (unsigned long long)W(latency_count)));

    TRY(counter(out, "tsl_blocked_responses_total",
                "Lists sent empty because the policy blocks fallback.", W(blocked)));
    TRY(counter(out, "tsl_empty_responses_total", "Lists sent with no server at all.", W(empty)));
    TRY(counter(out, "tsl_department_ignored_total",
                "List requests for a client the inventory knows whose department parameter "
                "differed from the inventory's (the inventory's was used).",
                W(department_ignored)));
    TRY(counter(out, "tsl_peer_refused_total",
                "List requests refused (403) because the peer address was not one of their "
                "adapter IPs (require_peer_ip).",
                W(peer_refused)));
    TRY(header(out, "tsl_fallback_responses_total", "counter",
               "Lists whose first entry is in a fallback tier (tier 1 and up), by tier."));
    for (int t = 1; t <= BROKER_MAX_TIER; t++)
        TRY(tsl_buf_printf(out, "tsl_fallback_responses_total{tier=\"%d%s\"} %llu\n", t,
                           t == BROKER_MAX_TIER ? "+" : "",
                           (unsigned long long)W(fallback[t])));
    TRY(counter(out, "tsl_policy_errors_total",
                "Policy rule errors absorbed while deciding (each logged with its line).",
                W(policy_errors)));
    TRY(counter(out, "tsl_policy_overruns_total",
                "Policy rules stopped by their time limit (rule_time_ms) or instruction budget; "
                "each request got its last good step.",
                tsl_policy_overruns_total()));
    TRY(counter(out, "tsl_policy_load_failures_total",
                "Policies refused at upload, activation or SIGHUP.",
                atomic_load(&b->policy_load_failures)));

    pthread_mutex_lock(&b->plan_mu);
    snprintf(version, sizeof version, "%s", b->policy_version);
    plan = tsl_plan_ref(b->plan);
    uint64_t gen = atomic_load(&b->plan_gen);
    pthread_mutex_unlock(&b->plan_mu);
    TRY(header(out, "tsl_policy_active_info", "gauge",
               "The policy in force: its version (content hash), \"none\" for the default logic."));
    TRY(tsl_buf_puts(out, "tsl_policy_active_info{version=\""));
    TRY(label(out, version[0] ? version : "none"));
    TRY(tsl_buf_puts(out, "\"} 1\n"));

    const tsl_snapshot *snap = tsl_plan_snapshot(plan);
    TRY(gauge(out, "tsl_snapshot_age_seconds",
              "Seconds since the plan in force was built (inventory load or heartbeats).",
              (double)(broker_now(b) - tsl_snapshot_built_at(snap))));
    TRY(gauge(out, "tsl_snapshot_sites", "Sites in the plan in force.",
              (double)tsl_snapshot_site_count(snap)));
    TRY(gauge(out, "tsl_snapshot_task_servers", "Task Servers in the plan in force.",
              (double)tsl_snapshot_server_count(snap)));
    TRY(gauge(out, "tsl_snapshot_clients", "Clients in the plan in force.",
              (double)tsl_snapshot_client_count(snap)));
    TRY(counter(out, "tsl_plan_swaps_total",
                "Plans published (heartbeats, imports, policy activations).", gen));
    TRY(counter(out, "tsl_inventory_reloads_total", "Full inventory loads from the store.",
                atomic_load(&b->reloads)));

    TRY(counter(out, "tsl_heartbeats_total", "Task Server heartbeats accepted.", W(heartbeats)));
    TRY(header(out, "tsl_registrations_total", "counter",
               "Registration results reported by clients."));
    TRY(tsl_buf_printf(out, "tsl_registrations_total{result=\"ok\"} %llu\n",
                       (unsigned long long)W(registrations_ok)));
    TRY(tsl_buf_printf(out, "tsl_registrations_total{result=\"failed\"} %llu\n",
                       (unsigned long long)W(registrations_failed)));
    TRY(counter(out, "tsl_registrations_outside_approved_total",
                "Successful registrations on a server outside tier 0 of the client's list.",
                W(registrations_outside)));

    TRY(gauge(out, "tsl_write_queue_length",
              "Writes queued and not yet committed (heartbeats and reports wait for it).",
              (double)atomic_load(&b->q_len)));
    TRY(gauge(out, "tsl_pending_task_servers",
              "Task servers that announced themselves, waiting for an admin's approval.",
              (double)atomic_load(&b->pending_servers)));
    TRY(counter(out, "tsl_writes_total", "Records committed to the store.",
                atomic_load(&b->writes_committed)));
    TRY(counter(out, "tsl_write_errors_total", "Failed store transactions (retried).",
                atomic_load(&b->write_errors)));
    TRY(counter(out, "tsl_decision_log_dropped_total",
                "Decisions not written to decision_log (over the per-second rate).",
                W(dlog_dropped)));
    TRY(header(out, "tsl_http_refused_total", "counter",
               "Requests the connection edge refused before parsing, by reason."));
    static const char *const why[] = {"framing", "deadline", "per-address"};
    for (int i = 0; i < 3; i++)
        TRY(tsl_buf_printf(out, "tsl_http_refused_total{reason=\"%s\"} %llu\n", why[i],
                           (unsigned long long)atomic_load(&b->edge_refused[i])));
    TRY(counter(out, "tsl_accept_paused_total",
                "Times accepting paused because descriptors ran out (EMFILE, ENFILE).",
                atomic_load(&b->accept_paused)));
    TRY(gauge(out, "tsl_uptime_seconds", "Seconds since the broker started.",
              (double)(broker_now(b) - b->started_at)));
#undef TRY
done:
    tsl_plan_free((tsl_plan *)plan);
    return err;
}
