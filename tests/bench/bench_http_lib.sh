# bench_http_lib.sh - sourced by the HTTP benchmarks (bench_log.sh,
# bench_static.sh): one generated estate, one shuffled file of query
# strings (a different client and address on every request), `tsl serve`
# started and stopped on a loopback port, and one wrk run that prints its
# rate.  Every server is driven by the same wrk command and Lua script
# (tests/bench/bench_broker.lua), so rates taken in one run compare.
#
# Needs: $here (the source tree), $WORKDIR; sets $db, $paths.

command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 2; }
command -v sqlite3 >/dev/null || { echo "needs the sqlite3 command" >&2; exit 2; }

bench_pids=()
bench_stop_all() {
    local p
    for p in "${bench_pids[@]}"; do
        if kill -0 "$p" 2>/dev/null; then
            kill -TERM "$p"
            wait "$p" 2>/dev/null || true
        fi
    done
    bench_pids=()
}

# bench_estate TSL SITES SERVERS CLIENTS: the estate and the paths file
bench_estate() {
    db=$WORKDIR/estate.db
    paths=$WORKDIR/paths.txt
    if [ ! -s "$db" ]; then
        "$1" --db "$db" gen-estate --sites "$2" --servers "$3" --clients "$4" >&2
    fi
    sqlite3 -separator '' "$db" \
        "SELECT 'client=' || guid || '&ip=' || ip FROM clients WHERE ip IS NOT NULL" |
        shuf --random-source=<(yes) >"$paths"
}

# bench_wait_port PORT PID: until /healthz (or any answer) comes back
bench_wait_port() {
    local i
    for i in $(seq 200); do
        curl -fsS -o /dev/null "http://127.0.0.1:$1/healthz" 2>/dev/null && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# bench_serve TSL PORT LOGFILE ARGS...: starts tsl serve, sets $serve_pid
bench_serve() {
    local tsl=$1 port=$2 log=$3
    shift 3
    "$tsl" --db "$db" serve --listen "127.0.0.1:$port" "$@" 2>"$log" &
    serve_pid=$!
    bench_pids+=("$serve_pid")
    bench_wait_port "$port" "$serve_pid" || { cat "$log" >&2; exit 3; }
}

# bench_stop PID: SIGTERM and wait (the broker flushes and exits)
bench_stop() {
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# bench_wrk PORT SECONDS CONNECTIONS OUTFILE [warm]: prints requests/s;
# a failed request stops the benchmark, except in a warm-up
bench_wrk() {
    wrk -t "${WRK_THREADS:-1}" -c "$3" -d "$2s" -s "$here/tests/bench/bench_broker.lua" \
        "http://127.0.0.1:$1" -- "$paths" >"$4"
    if [ "${5:-}" != warm ] && [ "$(awk '/^non-200/ {print $2}' "$4")" != 0 ] ||
        [ "$(awk '/^socket errors/ {print $3}' "$4")" != 0 ]; then
        echo "failed requests on port $1:" >&2
        cat "$4" >&2
        exit 4
    fi
    awk '/^requests\/s/ {print $2}' "$4"
}

bench_machine() {
    echo "machine       $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p')"
    echo "load average  $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine)"
}
