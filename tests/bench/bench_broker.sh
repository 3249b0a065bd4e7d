#!/usr/bin/env bash
# bench_broker.sh - the broker's hot path under load: `tsl serve` on a
# generated estate with the example policy, driven by wrk (Debian package)
# over keep-alive connections on loopback with GET /v1/task-servers, each
# request a different client of the estate (tests/bench/bench_broker.lua).
# Prints requests/s and latency percentiles, and the broker's RSS before
# and after the run (flat memory over a long run).
#
# usage: tests/bench/bench_broker.sh [TSL_BINARY] [SECONDS]
#   SECONDS (30): the measured run; at the target rate, 30 s is over
#   1,000,000 requests (the script says so when it was fewer)
#   env: SITES (500) SERVERS (2000) CLIENTS (200000)  the generated estate
#        THREADS (2) broker HTTP threads, WRK_THREADS (1), CONNECTIONS (100)
#        POLICY (policies/examples/demo.lua; "none" for the default logic)
#        PORT (18091), WORKDIR (a fresh temporary directory, removed after)
#
# Used by: docs/performance.md (the figures there come from this script).
set -euo pipefail

here=$(cd "$(dirname "$0")/../.." && pwd)
tsl=${1:-$here/build/tsl}
duration=${2:-30}
sites=${SITES:-500}
servers=${SERVERS:-2000}
clients=${CLIENTS:-200000}
threads=${THREADS:-2}
wrk_threads=${WRK_THREADS:-1}
connections=${CONNECTIONS:-100}
policy=${POLICY:-$here/policies/examples/demo.lua}
port=${PORT:-18091}

command -v wrk >/dev/null || { echo "bench_broker.sh: wrk is not installed (apt-get install wrk)" >&2; exit 2; }
command -v sqlite3 >/dev/null || { echo "bench_broker.sh: needs the sqlite3 command" >&2; exit 2; }
[ -x "$tsl" ] || { echo "bench_broker.sh: no tsl binary at $tsl (build first)" >&2; exit 2; }

own_workdir=0
if [ -z "${WORKDIR:-}" ]; then
    WORKDIR=$(mktemp -d "${TMPDIR:-/tmp}/tsl-bench-XXXXXX")
    own_workdir=1
fi
db=$WORKDIR/estate.db
pid=
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        wait "$pid" || true
    fi
    if [ "$own_workdir" = 1 ]; then rm -rf "$WORKDIR"; fi
}
trap cleanup EXIT

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
# CPU time (user + system) of a process, in clock ticks
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

if [ ! -s "$db" ]; then
    "$tsl" --db "$db" gen-estate --sites "$sites" --servers "$servers" --clients "$clients" >&2
fi
# one query string per client: its GUID and its address, shuffled
sqlite3 -separator '' "$db" \
    "SELECT 'client=' || guid || '&ip=' || ip FROM clients WHERE ip IS NOT NULL" |
    shuf --random-source=<(yes) >"$WORKDIR/paths.txt"

policy_args=()
if [ "$policy" != none ]; then policy_args=(--policy "$policy"); fi
"$tsl" --db "$db" serve --listen "127.0.0.1:$port" --threads "$threads" \
    --log-level warning --decision-log-rate 1000 "${policy_args[@]}" \
    2>"$WORKDIR/serve.log" &
pid=$!
for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null || { cat "$WORKDIR/serve.log" >&2; exit 3; }

# warm-up: every client once, so the "before" RSS is the steady state
wrk -t "$wrk_threads" -c "$connections" -d 10s -s "$here/tests/bench/bench_broker.lua" \
    "http://127.0.0.1:$port" -- "$WORKDIR/paths.txt" >/dev/null
rss_before=$(rss_kb "$pid")
cpu_before=$(cpu_ticks "$pid")

echo "machine       $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p')"
echo "estate        $sites sites, $servers task servers, $clients clients; policy $(basename "$policy")"
echo "broker        $threads HTTP threads; wrk $wrk_threads thread(s), $connections keep-alive connections"
wrk -t "$wrk_threads" -c "$connections" -d "${duration}s" -s "$here/tests/bench/bench_broker.lua" \
    "http://127.0.0.1:$port" -- "$WORKDIR/paths.txt" >"$WORKDIR/wrk.out"
sed -n '/^requests /,$p' "$WORKDIR/wrk.out"
done_requests=$(awk '/^requests / {print $2}' "$WORKDIR/wrk.out")
if [ "$done_requests" -lt 1000000 ]; then
    echo "note          fewer than 1,000,000 requests: run longer for the memory check"
fi
rss_after=$(rss_kb "$pid")
cpu_after=$(cpu_ticks "$pid")
hz=$(getconf CLK_TCK)
awk -v t=$((cpu_after - cpu_before)) -v hz="$hz" -v n="$done_requests" 'BEGIN {
    printf "broker cpu    %.1f s, %.1f us a request (both cores: at most %.0f requests/s)\n",
        t / hz, t / hz / n * 1e6, 2 / (t / hz / n) }'
echo "load average  $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine during the run)"
echo "rss before    $((rss_before / 1024)) MiB"
echo "rss after     $((rss_after / 1024)) MiB"
curl -fsS "http://127.0.0.1:$port/metrics" | grep -E '^tsl_decision_duration_seconds_(sum|count)|^tsl_http_requests_total\{endpoint="task-servers"'
