#!/usr/bin/env bash
# test_simulate_speed.sh - a simulation tells the same story at any speed:
# the shipped london_outage scenario (a cut link, a dark site, a delayed
# fallback, the site back) run paced at 10x and at 400x gives the same
# figures, up to the jitter of exchanges that share a simulated second, and
# accounts for every client at the end at both speeds.  The two runs go side
# by side (the 10x one takes its 90 s of wall time, mostly asleep); on a
# loaded machine each only takes longer, never different.
# Usage: bash tests/test_simulate_speed.sh TSL_BIN SOURCE_DIR
set -uo pipefail
tsl=${1:?usage: test_simulate_speed.sh TSL_BIN SOURCE_DIR}
src=$(cd "${2:?usage: test_simulate_speed.sh TSL_BIN SOURCE_DIR}" && pwd)
scn=$src/tests/scenarios/london_outage.scn
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0
check() { # name, command...
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); echo "ok - $name"
  else failed=$((failed + 1)); echo "not ok - $name"; fi
}

start=$(date +%s)
"$tsl" simulate -v --speed 10 "$scn" > "$tmp/slow.out" 2> /dev/null &
slow=$!
"$tsl" simulate -v --speed 400 "$scn" > "$tmp/fast.out" 2> /dev/null
rc_fast=$?
wait "$slow"
rc_slow=$?
took=$(( $(date +%s) - start ))

check speed__both_runs_pass test "$rc_fast" -eq 0 -a "$rc_slow" -eq 0
check speed__the_slow_run_was_paced_at_10x test "$took" -ge 85
check speed__the_reports_say_their_pace bash -c 'grep -q "(paced at 10x)" "$1" && grep -q "(paced at 400x)" "$2"' _ "$tmp/slow.out" "$tmp/fast.out"

# every figure of the metrics block, side by side
metrics() { sed -n '/^metrics:/,$p' "$1" | awk 'NF == 2 && $1 != "metrics:" { print $1, $2 }'; }
metrics "$tmp/slow.out" > "$tmp/slow.m"
metrics "$tmp/fast.out" > "$tmp/fast.m"
check speed__the_metrics_block_is_there test "$(wc -l < "$tmp/slow.m")" -gt 40
if ! diff <(cut -d' ' -f1 "$tmp/slow.m") <(cut -d' ' -f1 "$tmp/fast.m") > /dev/null; then
  check speed__the_same_metrics_are_reported false
fi
# the same up to jitter: 2 units or 2 %, whichever is more
paste -d' ' "$tmp/slow.m" "$tmp/fast.m" | awk '
  { d = $2 - $4; if (d < 0) d = -d; m = ($2 > $4 ? $2 : $4); m = m < 0 ? -m : m
    tol = 0.02 * m; if (tol < 2) tol = 2
    if ($1 != $3 || d > tol) { printf "  %s: %s at 10x, %s at 400x\n", $1, $2, $4; bad = 1 } }
  END { exit bad }' > "$tmp/diff.txt"
rc=$?
cat "$tmp/diff.txt"
check speed__10x_and_400x_give_the_same_figures test "$rc" -eq 0
# the figures that tell the story are equal, not just close
for m in clients registered_at_end outside_approved cross_country registrations.tier1 waiting \
         stranded_undemanded undrained failed_requests; do
  a=$(awk -v k="$m" '$1 == k { print $2 }' "$tmp/slow.m")
  b=$(awk -v k="$m" '$1 == k { print $2 }' "$tmp/fast.m")
  check "speed__${m}_is_equal_($a)" test -n "$a" -a "$a" = "$b"
done
# a cut link is noticed at the next poll (30 s +-10 %), within its 10 s timeout
for f in slow fast; do
  d=$(awk '$1 == "drain_max_s" { print $2 }' "$tmp/$f.m")
  check "speed__${f}_drain_within_poll_plus_timeout_($d)" awk -v d="$d" 'BEGIN { exit !(d > 0 && d <= 44) }'
done

# every client is somewhere at the end, at both speeds
for f in slow fast; do
  line=$(grep -m1 '^at the end: ' "$tmp/$f.out")
  sum=$(echo "$line" | sed -E 's/^at the end: ([0-9]+) client\(s\) = ([0-9]+) registered.* \+ ([0-9]+) attempting \+ ([0-9]+) waiting.* \+ ([0-9]+) stranded \(.* \+ ([0-9]+) not started$/\1 \2 \3 \4 \5 \6/')
  check "speed__${f}_every_client_is_accounted_for_($sum)" \
    awk -v s="$sum" 'BEGIN { n = split(s, v, " "); exit !(n == 6 && v[1] == 120 && v[2] + v[3] + v[4] + v[5] + v[6] == v[1]) }'
done

echo "$passed passed, $failed failed"
((failed == 0))
