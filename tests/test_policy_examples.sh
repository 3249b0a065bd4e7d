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
check examples__tap_has_a_plan contains "# 26 passed, 0 failed" "$tsl" test "$src/policies/tests"
for p in "$src"/policies/examples/*.lua; do
  check "examples__$(basename "$p" .lua)_checks_clean_against_the_demo_estate" \
    status 0 "$tsl" check "$p" --db "$db" --now "$now"
done

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
check policy__load_stores_and_activates \
  contains "stored demo.lua as version sha256:" \
  "$tsl" --db "$db" policy load "$src/policies/examples/demo.lua" --author ci --comment "test run"
check policy__load_is_idempotent \
  contains "already stored: demo.lua" "$tsl" --db "$db" policy load "$src/policies/examples/demo.lua"
check policy__list_shows_author_and_comment contains "ci" "$tsl" --db "$db" policy list
check policy__active_policy_decides_list \
  contains '"blocked":false' "$tsl" --db "$db" list --ip 10.40.1.15 --json
check policy__active_policy_shows_in_explain \
  contains 'site "Madrid" (line' "$tsl" --db "$db" explain --ip 10.40.1.15

echo "$passed passed, $failed failed"
((failed == 0))
