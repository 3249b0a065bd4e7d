#!/usr/bin/env bash
# test_simulate_cli.sh - `tsl simulate` as CI runs it: a scenario whose
# invariant breaks exits 1 and says which; a bad scenario (an unknown event,
# a misspelled metric) exits 2 naming FILE:LINE before anything runs; help and usage; and `tsl agent`, the reference CTA on its
# own: with no broker it logs in the guide's words and, with --once, exits
# 1 (stuck retrying) without registering anywhere.  (The shipped scenarios each run as their own
# ctest, scenario_NAME, and must pass.)
# Usage: bash tests/test_simulate_cli.sh TSL_BIN SOURCE_DIR
set -uo pipefail
tsl=${1:?usage: test_simulate_cli.sh TSL_BIN SOURCE_DIR}
src=$(cd "${2:?usage: test_simulate_cli.sh TSL_BIN SOURCE_DIR}" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0
check() { # name, command...
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); echo "ok - $name"
  else failed=$((failed + 1)); echo "not ok - $name"; fi
}

# The blocking scenario with its policy removed: the default logic sends
# Madrid abroad, so "cross_country == 0" breaks and the run must fail.
sed -e '/^policy /d' \
    -e "s#^inventory .*#inventory $src/tests/scenarios/estates/europe.json#" \
    "$src/tests/scenarios/cross_country_blocked.scn" > "$tmp/broken.scn"
"$tsl" simulate "$tmp/broken.scn" > "$tmp/broken.out" 2> "$tmp/broken.err"
rc=$?
check simulate__broken_invariant_exits_1 test "$rc" -eq 1
check simulate__broken_invariant_is_named grep -q "FAIL  line [0-9]*: expect cross_country == 0" "$tmp/broken.out"
check simulate__broken_promise_is_shown grep -q "BROKEN: t=.*outside \"promise site=Madrid only ts-mad-\*\"" "$tmp/broken.out"
check simulate__fail_verdict grep -q "^result: FAIL (" "$tmp/broken.out"

# A broken scenario among good ones: the worst status wins.
printf 'inventory %s\nclients 1 site=London\nat 10 explode ts-lon-01\n' \
    "$src/tests/scenarios/estates/europe.json" > "$tmp/bad.scn"
"$tsl" simulate "$tmp/bad.scn" > /dev/null 2> "$tmp/bad.err"
rc=$?
check simulate__bad_scenario_exits_2 test "$rc" -eq 2
check simulate__bad_scenario_names_file_and_line grep -q "bad.scn:3: at: unknown event" "$tmp/bad.err"

# A misspelled metric is a scenario mistake: exit 2 before anything runs.
printf 'inventory %s\nduration 2h\nclients 50 site=London\nexpect stranded_undemaned == 0\n' \
    "$src/tests/scenarios/estates/europe.json" > "$tmp/typo.scn"
start=$(date +%s)
"$tsl" simulate "$tmp/typo.scn" > "$tmp/typo.out" 2> "$tmp/typo.err"
rc=$?
check simulate__misspelled_metric_exits_2 test "$rc" -eq 2
check simulate__misspelled_metric_names_file_and_line grep -q 'typo.scn:4: expect: no metric "stranded_undemaned"' "$tmp/typo.err"
check simulate__misspelled_metric_stops_before_the_run bash -c '! grep -q "scenario" "$1" && [ $(( $(date +%s) - $2 )) -lt 5 ]' _ "$tmp/typo.out" "$start"

"$tsl" simulate > /dev/null 2>&1
check simulate__no_scenario_is_a_usage_error test $? -eq 2
check simulate__help_documents_the_exit_status bash -c '"$1" simulate --help | grep -q "1 an invariant broke"' _ "$tsl"

# tsl agent against a port nobody listens on
timeout 30 "$tsl" agent --broker http://127.0.0.1:1 --client G-1 --ip 10.10.0.5 --once \
    --duration 10 --retry 1 --retry-max 2 > /dev/null 2> "$tmp/agent.err"
rc=$?
check agent__no_broker_once_exits_1_stuck test "$rc" -eq 1
check agent__logs_in_the_guides_words grep -q "G-1: Failed to get Task Server list from SMP Server: connection refused" "$tmp/agent.err"
check agent__stuck_retrying_is_said grep -q "Unable to register to any Task Server (no Task Server list); retrying" "$tmp/agent.err"
check agent__never_attempts_without_a_list bash -c '! grep -q "Attempting to register" "$1"' _ "$tmp/agent.err"
"$tsl" agent --client x > /dev/null 2>&1
check agent__missing_broker_is_a_usage_error test $? -eq 2

echo "$passed passed, $failed failed"
((failed == 0))
