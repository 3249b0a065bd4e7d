#!/usr/bin/env bash
# test_policy_examples.sh - the shipped example policies through the `tsl`
# command, as an admin (and CI) runs them: their `tsl test` files pass,
# `tsl check` finds nothing against the demo estate, and the policy
# commands keep their exit codes: check 0/1/2, test 0/1, policy load
# refusing a broken file, list/explain --policy, the store's active policy.
# Usage: bash tests/test_policy_examples.sh TSL_BIN SOURCE_DIR
set -uo pipefail
tsl=${1:?usage: test_policy_examples.sh TSL_BIN SOURCE_DIR}
src=$(cd "${2:?usage: test_policy_examples.sh TSL_BIN SOURCE_DIR}" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tsl-policy-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0
check() { # name, command...
  local name=$1; shift
  if "$@" >"$tmp/out" 2>&1; then passed=$((passed + 1)); echo "ok - $name"
  else failed=$((failed + 1)); echo "not ok - $name"; sed 's/^/    /' "$tmp/out"; fi
}
status() { # expected-status, command... : succeeds when the command exits with it
  local want=$1; shift
  "$@"; local got=$?
  [[ $got -eq $want ]] || { echo "exit status $got, expected $want"; return 1; }
}
contains() { # needle, command...
  local needle=$1; shift
  local out; out=$("$@" 2>&1)
  [[ $out == *"$needle"* ]] || { echo "$out"; echo "--- does not contain: $needle"; return 1; }
}

db="$tmp/demo.db"
now=2026-11-25T10:00:00Z
"$tsl" --db "$db" import "$src/policies/demo/estate.json" >/dev/null

check examples__every_policy_test_passes status 0 "$tsl" test "$src/policies/tests"
check examples__tap_has_a_plan contains "# 28 passed, 0 failed" "$tsl" test "$src/policies/tests"
for p in "$src"/policies/examples/*.lua; do
  check "examples__$(basename "$p" .lua)_has_no_errors_against_the_demo_estate" \
    contains ": 0 error(s)," "$tsl" check "$p" --db "$db" --now "$now"
done
# the demo keeps Finance on the finance servers: Finance clients at sites
# without one go abroad, and tsl check names every one of them
check examples__demo_check_names_the_finance_clients_it_sends_abroad \
  contains 'demo.lua:37: warning: site "New York", group "Finance": 2 client(s) would be sent outside their country: NYC-PC-0002 -> ts-fin-02, NYC-LT-0102 -> ts-fin-02' \
  "$tsl" check "$src/policies/examples/demo.lua" --db "$db" --now "$now"
check examples__demo_check_counts_every_stranded_client \
  contains '6 of 40 client(s) stranded: 0 blocked, 5 outside their country, 0 outside their site, 1 on a fallback tier' \
  "$tsl" check "$src/policies/examples/demo.lua" --db "$db" --now "$now"
check examples__demo_check_exits_1_for_stranded_clients \
  status 1 "$tsl" check "$src/policies/examples/demo.lua" --db "$db" --now "$now" --no-luacheck

printf 'site "Madrid" { allow = { "ts-par-02" }, fallback = "block" }\n' >"$tmp/stranded.lua"
printf 'site "Lodnon" { }\n' >"$tmp/typo.lua"
printf 'site "London" {\n  order = "ts-lon-01" }\n' >"$tmp/syntax.lua"
check check__stranded_site_is_exit_2 status 2 "$tsl" check "$tmp/stranded.lua" --db "$db" --now "$now"
check check__unknown_site_is_exit_1 status 1 "$tsl" --db "$db" check "$tmp/typo.lua" --no-luacheck
check check__names_the_typo contains 'did you mean "London"?' "$tsl" check "$tmp/typo.lua" --db "$db"
check check__syntax_error_has_file_and_line \
  contains 'syntax.lua:1: error: site "London": field "order" must be a list of server names' \
  "$tsl" check "$tmp/syntax.lua"
check check__syntax_error_is_exit_2 status 2 "$tsl" check "$tmp/syntax.lua"
check check__missing_file_is_exit_2 status 2 "$tsl" check "$tmp/none.lua"

# each listed mistake through the command, with its exit status
printf 'site "London" { allow = { "ts-lnd-*", "ts-lon-01" } }\n' >"$tmp/glob.lua"
printf 'site "London" { fallback = { "Dublin" } }\nsite "Dublin" { fallback = { "London" } }\n' >"$tmp/cycle.lua"
printf 'group "Finanse" { allow = { "ts-lon-*" } }\n' >"$tmp/group.lua"
printf 'rule("img", function(req, list)\n  if req.task == "imaging" then error("oops") end\nend)\n' >"$tmp/rule.lua"
printf 'site "Madrid" { allow = { "ts-nothing-*" }, fallback = "block" }\n' >"$tmp/empty.lua"
for f in glob cycle group; do
  check "check__${f}_is_exit_1" status 1 "$tsl" check "$tmp/$f.lua" --db "$db" --now "$now" --no-luacheck
done
check check__glob_names_the_pattern \
  contains 'glob.lua:1: warning: site "London": allow pattern "ts-lnd-*" matches no server' \
  "$tsl" check "$tmp/glob.lua" --db "$db" --now "$now" --no-luacheck
check check__cycle_names_the_sites \
  contains 'cycle.lua:1: warning: fallback cycle: London -> Dublin -> London' \
  "$tsl" check "$tmp/cycle.lua" --db "$db" --now "$now" --no-luacheck
check check__unknown_group_is_named \
  contains 'group.lua:1: warning: group "Finanse": no client in the inventory has this department' \
  "$tsl" check "$tmp/group.lua" --db "$db" --now "$now" --no-luacheck
check check__failing_rule_is_exit_2 status 2 "$tsl" check "$tmp/rule.lua" --db "$db" --now "$now" --no-luacheck
check check__failing_rule_names_the_line \
  contains 'rule.lua:1: error: rule "img" failed on ' \
  "$tsl" check "$tmp/rule.lua" --db "$db" --now "$now" --no-luacheck
check check__empty_blocking_site_is_exit_2 status 2 "$tsl" check "$tmp/empty.lua" --db "$db" --now "$now" --no-luacheck
if command -v luacheck >/dev/null; then
  printf 'local unused = 1\nsite "London" { allow = { "ts-lon-*" } }\n' >"$tmp/lc.lua"
  check check__luacheck_findings_are_exit_1 status 1 "$tsl" check "$tmp/lc.lua" --db "$db" --now "$now"
  check check__luacheck_findings_are_shown contains "unused variable 'unused'" \
    "$tsl" check "$tmp/lc.lua" --db "$db" --now "$now"
  check check__no_luacheck_skips_it \
    bash -c '! "$@" 2>&1 | grep -q "unused variable"' _ "$tsl" check "$tmp/lc.lua" --db "$db" --now "$now" --no-luacheck
else
  echo "ok - check__luacheck # SKIP luacheck is not installed"
fi

mkdir "$tmp/tests"
printf 'policy "%s"\ninventory "%s"\ntest "wrong" { ip = "10.40.1.15", expect = { "ts-par-01" } }\n' \
  "$src/policies/examples/demo.lua" "$src/policies/demo/estate.json" >"$tmp/tests/wrong.lua"
check test__a_failing_test_is_exit_1 status 1 "$tsl" test "$tmp/tests"
check test__a_failing_test_says_why contains "#   got:      ts-mad-01" "$tsl" test "$tmp/tests"
check test__an_empty_dir_is_exit_2 status 2 "$tsl" test "$tmp/none"

check list__policy_file_applies \
  contains '"policy":"sha256:' "$tsl" --db "$db" list --ip 10.40.1.15 --json --policy "$src/policies/examples/demo.lua"
check policy__load_refuses_a_broken_file status 2 "$tsl" --db "$db" policy load "$tmp/syntax.lua"
check policy__no_active_policy_at_first contains "none (the default logic)" "$tsl" --db "$db" policy active
check policy__load_stores_without_activating \
  contains "not active" \
  "$tsl" --db "$db" policy load "$src/policies/examples/demo.lua" --author ci --comment "test run"
check policy__loaded_version_is_not_active_yet contains "none (the default logic)" "$tsl" --db "$db" policy active
check policy__load_activate_makes_it_active \
  contains "now active everywhere" \
  "$tsl" --db "$db" policy load "$src/policies/examples/demo.lua" --activate
check policy__load_is_idempotent \
  contains "already stored: demo.lua" "$tsl" --db "$db" policy load "$src/policies/examples/demo.lua"
check policy__list_shows_author_and_comment contains "ci" "$tsl" --db "$db" policy list
check policy__active_policy_decides_list \
  contains '"blocked":false' "$tsl" --db "$db" list --ip 10.40.1.15 --json
check policy__active_policy_shows_in_explain \
  contains 'site "Madrid" (line' "$tsl" --db "$db" explain --ip 10.40.1.15

echo "$passed passed, $failed failed"
((failed == 0))
