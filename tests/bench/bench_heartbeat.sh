#!/usr/bin/env bash
# bench_heartbeat.sh - what an acknowledged heartbeat costs: `tsl serve` on
# a generated estate, driven by wrk with POST /v1/task-servers/NAME/heartbeat
# (a different server each request, tests/bench/bench_heartbeat.lua) over
# keep-alive connections on loopback.  Prints requests/s and latency
# percentiles.  Give two binaries to compare builds side by side: they take
# turns, ROUNDS times, on the same estate (a fresh copy of the store each
# run).
#
# usage: tests/bench/bench_heartbeat.sh [SECONDS] TSL_BINARY [TSL_BINARY...]
#   SECONDS (10): each measured run, after a 2 s warm-up
#   env: SERVERS (2000) CONNECTIONS (1 4 32: one run each) ROUNDS (3)
#        THREADS (2) broker HTTP threads, PORT (18092)
#
# Used by: docs/performance.md ("Heartbeats: group commit").
set -euo pipefail

duration=${1:-10}
shift || true
[ $# -ge 1 ] || { echo "usage: bench_heartbeat.sh [SECONDS] TSL_BINARY..." >&2; exit 2; }
here=$(cd "$(dirname "$0")/../.." && pwd)
servers=${SERVERS:-2000}
conns=${CONNECTIONS:-"1 4 32"}
rounds=${ROUNDS:-3}
threads=${THREADS:-2}
port=${PORT:-18092}
command -v wrk >/dev/null || { echo "bench_heartbeat.sh: needs wrk" >&2; exit 2; }
command -v sqlite3 >/dev/null || { echo "bench_heartbeat.sh: needs the sqlite3 command" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/tsl-hb-XXXXXX")
pid=
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; wait "$pid" || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

"$1" --db "$work/base.db" gen-estate --sites 50 --servers "$servers" --clients 1000 >/dev/null
sqlite3 "$work/base.db" "SELECT name FROM task_servers" >"$work/names.txt"

echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), load $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq "$rounds"); do
    for tsl in "$@"; do
        for c in $conns; do
            rm -f "$work/run.db"*
            cp "$work/base.db" "$work/run.db"
            # a build without the Task Servers' token ignores the header;
            # one with it needs no per-peer limit here (one address)
            extra=()
            if "$tsl" serve --help | grep -q -- --heartbeat-rate; then extra=(--heartbeat-rate 0); fi
            "$tsl" --db "$work/run.db" serve --listen "127.0.0.1:$port" --threads "$threads" \
                --log-level warning "${extra[@]}" 2>"$work/serve.log" &
            pid=$!
            for _ in $(seq 100); do
                curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
                sleep 0.1
            done
            tok=$work/run.db.ts-token
            wrk -t1 -c "$c" -d 2 -s "$here/tests/bench/bench_heartbeat.lua" \
                "http://127.0.0.1:$port" -- "$work/names.txt" "$tok" >/dev/null
            line=$(wrk -t1 -c "$c" -d "$duration" -s "$here/tests/bench/bench_heartbeat.lua" \
                "http://127.0.0.1:$port" -- "$work/names.txt" "$tok" | grep '^requests')
            echo "round $round  $tsl  connections $c: $line  (load $(cut -d' ' -f1 /proc/loadavg))"
            kill -TERM "$pid"; wait "$pid" || true; pid=
        done
    done
done
