#!/usr/bin/env bash
# bench_log.sh - what the per-request log costs the broker: `tsl serve`
# with --log-level info (two lines a list request, to a file on stderr) and
# with --log-level warning (none), taking turns under the same wrk load,
# ROUNDS times; prints each rate and the ratio info / warning.  Give a
# second binary to measure it too (e.g. the build before a change), so
# both builds and both levels alternate in one run.
#
# The broker's CPU time a request is printed too: on a shared machine it
# moves far less than the rate, which falls with whatever CPU others take.
#
# usage: tests/bench/bench_log.sh [TSL_BINARY [OTHER_TSL_BINARY]]
#   env: SECONDS_EACH (10) ROUNDS (3) CONNECTIONS (64) THREADS (2)
#        SITES (500) SERVERS (2000) CLIENTS (200000)
#        POLICY (policies/examples/demo.lua) PORT (18093)
#
# Used by: docs/performance.md ("The per-request log").
set -euo pipefail

here=$(cd "$(dirname "$0")/../.." && pwd)
binaries=("${1:-$here/build/tsl}")
if [ -n "${2:-}" ]; then binaries+=("$2"); fi
secs=${SECONDS_EACH:-10}
rounds=${ROUNDS:-3}
conns=${CONNECTIONS:-64}
port=${PORT:-18093}
policy=${POLICY:-$here/policies/examples/demo.lua}
WORKDIR=$(mktemp -d "${TMPDIR:-/tmp}/tsl-bench-log-XXXXXX")
. "$here/tests/bench/bench_http_lib.sh"
trap 'bench_stop_all; rm -rf "$WORKDIR"' EXIT

bench_estate "${binaries[0]}" "${SITES:-500}" "${SERVERS:-2000}" "${CLIENTS:-200000}"
bench_machine
echo "load          wrk 1 thread, $conns keep-alive connections, ${secs}s each; broker ${THREADS:-2} threads, $(basename "$policy")"
printf '%-6s %-40s %-8s %12s %14s %16s %8s %8s\n' round binary level requests/s "log bytes/req" \
    "cpu us/request" "x rate" "x cpu"
hz=$(getconf CLK_TCK)
for r in $(seq "$rounds"); do
    for bin in "${binaries[@]}"; do
        warn_rate= warn_cpu=
        for level in warning info; do
            log=$WORKDIR/serve.log
            bench_serve "$bin" "$port" "$log" --threads "${THREADS:-2}" --log-level "$level" \
                --policy "$policy"
            bench_wrk "$port" 2 "$conns" "$WORKDIR/warm.out" warm >/dev/null
            size0=$(stat -c %s "$log")
            c0=$(awk '{print $14 + $15}' "/proc/$serve_pid/stat")
            rate=$(bench_wrk "$port" "$secs" "$conns" "$WORKDIR/wrk.out")
            c1=$(awk '{print $14 + $15}' "/proc/$serve_pid/stat")
            n=$(awk '/^requests / {print $2}' "$WORKDIR/wrk.out")
            cpu=$(awk -v t=$((c1 - c0)) -v hz="$hz" -v n="$n" 'BEGIN { printf "%.2f", t / hz / n * 1e6 }')
            bench_stop "$serve_pid"
            size1=$(stat -c %s "$log")
            [ -z "$warn_rate" ] && warn_rate=$rate warn_cpu=$cpu
            awk -v r="$r" -v b="$bin" -v l="$level" -v rate="$rate" -v w="$warn_rate" \
                -v bytes=$((size1 - size0)) -v n="$n" -v c="$cpu" -v wc="$warn_cpu" 'BEGIN {
                printf "%-6s %-40s %-8s %12.0f %14.0f %16.1f %8.2f %8.2f\n", r,
                    substr(b, length(b) - 39), l, rate, bytes / n, c, rate / w, c / wc }'
        done
    done
done
echo "load average  $(cut -d' ' -f1-3 /proc/loadavg) (at the end)"
