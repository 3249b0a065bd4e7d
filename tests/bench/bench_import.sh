#!/usr/bin/env bash
# bench_import.sh - importing a 200,000-client estate, as JSON and as the
# CSV set, with this tree's `tsl` and with a build of an earlier commit
# side by side in one run: each round imports both forms with both
# binaries into fresh stores, interleaved, and the medians are compared.
#
# The estate is written by this script (deterministic): SITES sites with
# two subnets each, SERVERS Task Servers, CLIENTS clients, in our column
# spellings (which the earlier build reads too), plus the same estate in
# ITMS's spellings (Site Name/Subnet/Subnet Mask rows, Computer Name, Host
# Name + Primary DNS Suffix, IP Address, "5,000", SQL Server times),
# imported by this build only.
#
# usage: tests/bench/bench_import.sh [BASE_REV] [ROUNDS]
#   BASE_REV (d89c96e, the commit before issue 11's import changes): built
#   from `git archive` into WORKDIR with the same compiler and build type
#   ROUNDS (5)
#   env: SITES (500) SERVERS (2000) CLIENTS (200000) TSL (build/tsl)
#        WORKDIR (a fresh temporary directory, removed after)
#
# Used by: docs/performance.md (the figures there come from this script).
set -euo pipefail

here=$(cd "$(dirname "$0")/../.." && pwd)
base_rev=${1:-d89c96e}
rounds=${2:-5}
sites=${SITES:-500}
servers=${SERVERS:-2000}
clients=${CLIENTS:-200000}
new=${TSL:-$here/build/tsl}
work=${WORKDIR:-$(mktemp -d)}
[[ -n ${WORKDIR:-} ]] || trap 'rm -rf "$work"' EXIT
[[ -x $new ]] || { echo "bench_import: build $new first" >&2; exit 1; }

echo "== building $base_rev into $work/base"
mkdir -p "$work/base-src"
git -C "$here" archive "$base_rev" | tar -x -C "$work/base-src"
cmake -S "$work/base-src" -B "$work/base" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
nice cmake --build "$work/base" -j2 --target tsl_cli >/dev/null
old=$work/base/tsl

echo "== writing the estate: $sites sites, $servers servers, $clients clients"
python3 - "$work" "$sites" "$servers" "$clients" <<'PY'
import json, sys, os
work, nsites, nservers, nclients = sys.argv[1], *map(int, sys.argv[2:])
sites = [{"name": f"Site-{i:04d}", "subnets": [f"10.{i // 250}.{i % 250}.0/24",
          f"fd00:{i:x}::/48"], "country": "GB"} for i in range(nsites)]
servers = [{"name": f"ts-{i:05d}", "host": f"ts-{i:05d}.corp.example",
            "ip": f"10.{(i % nsites) // 250}.{(i % nsites) % 250}.{200 + i // nsites}",
            "sites": [f"Site-{i % nsites:04d}"], "registered": True, "service": "running",
            "capacity": 5000, "connections": (i * 37) % 5000, "response_ms": 10 + i % 90,
            "last_heartbeat": "2026-12-01T10:00:00Z"} for i in range(nservers)]
clients = [{"guid": f"{i:08X}-0000-4000-8000-{i * 7919 % 10**12:012d}", "name": f"PC-{i:06d}",
            "ip": f"10.{(i % nsites) // 250}.{(i % nsites) % 250}.{1 + i % 190}",
            "department": ["Finance", "Sales", "IT", "HR"][i % 4]} for i in range(nclients)]
doc = {"sites": sites, "task_servers": servers, "clients": clients}
json.dump(doc, open(os.path.join(work, "estate.json"), "w"))
os.makedirs(os.path.join(work, "csv"), exist_ok=True)
os.makedirs(os.path.join(work, "itms"), exist_ok=True)
with open(os.path.join(work, "csv", "sites.csv"), "w") as f:
    f.write("name,subnets,country\n")
    for s in sites:
        f.write(f"{s['name']},{';'.join(s['subnets'])},{s['country']}\n")
with open(os.path.join(work, "csv", "task_servers.csv"), "w") as f:
    f.write("name,host,ip,sites,registered,service,capacity,connections,response_ms,last_heartbeat\n")
    for s in servers:
        f.write(f"{s['name']},{s['host']},{s['ip']},{s['sites'][0]},yes,running,5000,"
                f"{s['connections']},{s['response_ms']},2026-12-01T10:00:00Z\n")
with open(os.path.join(work, "csv", "clients.csv"), "w") as f:
    f.write("guid,name,ip,department\n")
    for c in clients:
        f.write(f"{c['guid']},{c['name']},{c['ip']},{c['department']}\n")
with open(os.path.join(work, "itms", "sites.csv"), "w") as f:
    f.write("Site Name,Subnet,Subnet Mask,Description\n")
    for s in sites:
        net = s["subnets"][0].split("/")[0]
        f.write(f"{s['name']},{net},255.255.255.0,\n{s['name']},{s['subnets'][1]},,\n")
with open(os.path.join(work, "itms", "task_servers.csv"), "w") as f:
    f.write("Computer Name,Host Name,Primary DNS Suffix,IP Address,Site Name,Service State,"
            "Is Registered,Capacity,Client Count,Last Heartbeat\n")
    for s in servers:
        f.write(f"{s['name']},{s['name']},corp.example,{s['ip']},{s['sites'][0]},Running,True,"
                f"\"5,000\",{s['connections']},2026-12-01 10:00:00.000\n")
with open(os.path.join(work, "itms", "clients.csv"), "w") as f:
    f.write("Guid,Name,IP Address,Department,OS Name\n")
    for c in clients:
        f.write(f"{c['guid']},{c['name']},{c['ip']},{c['department']},Windows 11\n")
PY

# run LABEL BINARY ARGS...: seconds for one import into a fresh store
run() {
    local label=$1 bin=$2
    shift 2
    rm -f "$work/$label.db" "$work/$label.db-wal" "$work/$label.db-shm"
    local t0 t1
    t0=$(date +%s.%N)
    "$bin" --db "$work/$label.db" import "$@" >/dev/null 2>"$work/$label.err" ||
        { cat "$work/$label.err" >&2; exit 1; }
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc
}

declare -A times
for ((r = 1; r <= rounds; r++)); do
    times[old_json]+="$(run old_json "$old" "$work/estate.json") "
    times[new_json]+="$(run new_json "$new" "$work/estate.json") "
    times[old_csv]+="$(run old_csv "$old" "$work"/csv/*.csv) "
    times[new_csv]+="$(run new_csv "$new" "$work"/csv/*.csv) "
    times[new_itms]+="$(run new_itms "$new" "$work"/itms/*.csv) "
done

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf '\n%-34s %10s %10s %7s\n' "import of $clients clients" "$base_rev" "this tree" "ratio"
for form in json csv; do
    o=$(echo "${times[old_$form]}" | median)
    n=$(echo "${times[new_$form]}" | median)
    printf '%-34s %9.2fs %9.2fs %6.2fx\n' "$form" "$o" "$n" "$(echo "$n / $o" | bc -l)"
done
n=$(echo "${times[new_itms]}" | median)
printf '%-34s %10s %9.2fs\n' "CSV in ITMS spellings" "-" "$n"
echo "(median of $rounds rounds; each round runs every import once, interleaved)"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
