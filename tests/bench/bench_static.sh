#!/usr/bin/env bash
# bench_static.sh - the broker against the machine's static reference:
# nginx (Debian nginx-light, one worker, access log off) returning a fixed
# JSON body from memory, and `tsl serve` answering real lists under
# policies/examples/demo.lua, taking turns ROUNDS times under the same wrk
# load (keep-alive, 64 connections, a different client and address of the
# estate on every request: tests/bench/bench_broker.lua).  nginx's body is
# a real answer of the broker to a client of the estate, picked so its
# size is the median of 200 answers, so both send the same bytes.
# Prints each rate, each server's CPU time a request, and tsl / nginx.
#
# usage: tests/bench/bench_static.sh [TSL_BINARY]
#   env: SECONDS_EACH (10) ROUNDS (3) CONNECTIONS (64) THREADS (2, tsl's)
#        SITES (500) SERVERS (2000) CLIENTS (200000)
#        POLICY (policies/examples/demo.lua) PORT (18094; nginx PORT+1)
#        LOG_LEVEL (warning: neither server logs a line a request)
#
# Used by: docs/performance.md ("The broker against a static server").
set -euo pipefail

here=$(cd "$(dirname "$0")/../.." && pwd)
tsl=${1:-$here/build/tsl}
secs=${SECONDS_EACH:-10}
rounds=${ROUNDS:-3}
conns=${CONNECTIONS:-64}
port=${PORT:-18094}
nport=$((port + 1))
policy=${POLICY:-$here/policies/examples/demo.lua}
nginx=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$nginx" ] || { echo "bench_static.sh: nginx is not installed (apt-get install nginx-light)" >&2; exit 2; }
WORKDIR=$(mktemp -d "${TMPDIR:-/tmp}/tsl-bench-static-XXXXXX")
. "$here/tests/bench/bench_http_lib.sh"
trap 'bench_stop_all; rm -rf "$WORKDIR"' EXIT

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

bench_estate "$tsl" "${SITES:-500}" "${SERVERS:-2000}" "${CLIENTS:-200000}"
serve_args=(--threads "${THREADS:-2}" --log-level "${LOG_LEVEL:-warning}" --policy "$policy")

# the body: a real answer of median size
bench_serve "$tsl" "$port" "$WORKDIR/serve.log" "${serve_args[@]}"
head -n 200 "$paths" | while read -r q; do
    curl -fsS "http://127.0.0.1:$port/v1/task-servers?$q" >"$WORKDIR/answer"
    printf '%d %s\n' "$(stat -c %s "$WORKDIR/answer")" "$q"
done | sort -n >"$WORKDIR/sizes"
median_q=$(sed -n '100p' "$WORKDIR/sizes" | cut -d' ' -f2)
curl -fsS "http://127.0.0.1:$port/v1/task-servers?$median_q" >"$WORKDIR/body.json"
bench_stop "$serve_pid"
body_bytes=$(stat -c %s "$WORKDIR/body.json")

# nginx: one worker, everything under the temporary directory
mkdir -p "$WORKDIR/nginx"
body_conf=$(sed -e 's/\\/\\\\/g' -e "s/'/\\\\'/g" "$WORKDIR/body.json" | tr -d '\n')
cat >"$WORKDIR/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORKDIR/nginx/nginx.pid;
error_log $WORKDIR/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $WORKDIR/nginx/body;
    proxy_temp_path $WORKDIR/nginx/proxy;
    fastcgi_temp_path $WORKDIR/nginx/fastcgi;
    uwsgi_temp_path $WORKDIR/nginx/uwsgi;
    scgi_temp_path $WORKDIR/nginx/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 120s;
    server {
        listen 127.0.0.1:$nport;
        location / {
            default_type application/json;
            add_header Cache-Control "private, max-age=3600";
            return 200 '$body_conf\n';
        }
    }
}
CONF
# nginx adds the newline itself from the escape; the body file has one too
start_nginx() {
    "$nginx" -c "$WORKDIR/nginx/nginx.conf" -p "$WORKDIR/nginx" 2>>"$WORKDIR/nginx/error.log" &
    nginx_pid=$!
    bench_pids+=("$nginx_pid")
    local i
    for i in $(seq 100); do
        curl -fsS -o /dev/null "http://127.0.0.1:$nport/" 2>/dev/null && return 0
        sleep 0.1
    done
    cat "$WORKDIR/nginx/error.log" >&2
    exit 3
}
start_nginx
nginx_bytes=$(curl -fsS "http://127.0.0.1:$nport/v1/task-servers?$median_q" | wc -c)
nginx_worker=$(pgrep -P "$nginx_pid" | head -1)
[ "$nginx_bytes" = "$body_bytes" ] || { echo "nginx sends $nginx_bytes bytes, tsl $body_bytes" >&2; exit 5; }

bench_machine
echo "body          $body_bytes bytes (median of 200 tsl answers), same from both"
echo "load          wrk ${WRK_THREADS:-1} thread, $conns keep-alive connections, ${secs}s each, $rounds rounds"
echo "servers       nginx $("$nginx" -v 2>&1 | sed 's/.*\///'), 1 worker; tsl serve ${serve_args[*]}"
printf '%-6s %-6s %12s %16s\n' round server requests/s "cpu us/request"
ratios=()
for r in $(seq "$rounds"); do
    # nginx (kept running, idle while tsl runs)
    bench_wrk "$nport" 2 "$conns" "$WORKDIR/warm.out" warm >/dev/null
    c0=$(cpu_ticks "$nginx_worker")
    nrate=$(bench_wrk "$nport" "$secs" "$conns" "$WORKDIR/wrk.out")
    nreq=$(awk '/^requests / {print $2}' "$WORKDIR/wrk.out")
    ncpu=$(( $(cpu_ticks "$nginx_worker") - c0 ))
    # tsl
    bench_serve "$tsl" "$port" "$WORKDIR/serve.log" "${serve_args[@]}"
    bench_wrk "$port" 2 "$conns" "$WORKDIR/warm.out" warm >/dev/null
    c0=$(cpu_ticks "$serve_pid")
    trate=$(bench_wrk "$port" "$secs" "$conns" "$WORKDIR/wrk.out")
    treq=$(awk '/^requests / {print $2}' "$WORKDIR/wrk.out")
    tcpu=$(( $(cpu_ticks "$serve_pid") - c0 ))
    bench_stop "$serve_pid"
    hz=$(getconf CLK_TCK)
    awk -v r="$r" -v rate="$nrate" -v c="$ncpu" -v n="$nreq" -v hz="$hz" \
        'BEGIN { printf "%-6s %-6s %12.0f %16.1f\n", r, "nginx", rate, c / hz / n * 1e6 }'
    awk -v r="$r" -v rate="$trate" -v c="$tcpu" -v n="$treq" -v hz="$hz" -v nr="$nrate" \
        'BEGIN { printf "%-6s %-6s %12.0f %16.1f   tsl / nginx %.2f\n", r, "tsl", rate,
                 c / hz / n * 1e6, rate / nr }'
    ratios+=("$(awk -v a="$trate" -v b="$nrate" 'BEGIN { printf "%.3f", a / b }')")
done
printf '%s\n' "${ratios[@]}" | sort -n | awk '{ v[NR] = $1 } END {
    printf "ratio         tsl / nginx: median %.2f (of %d rounds)\n", v[int((NR + 1) / 2)], NR }'
echo "load average  $(cut -d' ' -f1-3 /proc/loadavg) (at the end)"
