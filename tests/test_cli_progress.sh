#!/usr/bin/env bash
# test_cli_progress.sh - long work draws its progress on a terminal and
# stays quiet on a pipe: gen-estate and import of a large estate, run once
# under a pseudo-terminal (script(1)) and once with stderr to a file.
# Usage: bash tests/test_cli_progress.sh TSL_BIN SOURCE_DIR
set -euo pipefail
tsl=$(realpath "${1:?usage: test_cli_progress.sh TSL_BIN SOURCE_DIR}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0 failed=0
check() { # name, command...
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); echo "ok - $name"
  else failed=$((failed + 1)); echo "not ok - $name"; fi
}
# Runs ARGS with stdin, stdout and stderr on a pseudo-terminal; the
# terminal's output goes to $work/tty.
on_tty() {
  script -qfec "$*" /dev/null >"$work/tty" </dev/null
}

# A large estate: long enough to pass the 0.3 s before progress shows,
# even on a quiet machine (40,000 clients took less).
clients=250000
check gen_estate__progress_on_a_terminal \
  on_tty "'$tsl' --db '$work/tty.db' gen-estate --sites 50 --servers 100 --clients $clients"
check gen_estate__draws_clients_done_of_total \
  grep -q "tsl gen-estate: clients [0-9]* of $clients ([0-9]*%)" "$work/tty"
# the line is rewritten in place and erased before the result is printed
check gen_estate__erases_its_line_before_the_result \
  grep -q $'\r\e\\[Kgenerated 50 sites' "$work/tty"

check gen_estate__quiet_on_a_pipe \
  bash -c "'$tsl' --db '$work/pipe.db' gen-estate --sites 50 --servers 100 --clients $clients \
           2>'$work/err' | cat >'$work/out'"
check gen_estate__stderr_empty_on_a_pipe test ! -s "$work/err"
check gen_estate__result_on_stdout grep -q '^generated 50 sites' "$work/out"

# An inventory document, imported: large enough to pass the 0.3 s too.
clients=150000
awk -v n=$clients 'BEGIN {
  printf "{\"sites\": [{\"name\": \"S\", \"subnets\": [\"10.0.0.0/8\"]}],\n \"clients\": [\n"
  for (i = 0; i < n; i++)
    printf "  {\"guid\": \"G-%d\", \"ip\": \"10.%d.%d.%d\"}%s\n", i, int(i / 65536) % 256,
      int(i / 256) % 256, i % 256, i + 1 < n ? "," : ""
  printf "]}\n" }' >"$work/estate.json"
check import__progress_on_a_terminal on_tty "'$tsl' --db '$work/imp-tty.db' import '$work/estate.json'"
check import__draws_records_done_of_total \
  grep -q "tsl import: records [0-9]* of $((clients + 1)) ([0-9]*%)" "$work/tty"
check import__quiet_on_a_pipe \
  bash -c "'$tsl' --db '$work/imp-pipe.db' import '$work/estate.json' 2>'$work/err' | cat >/dev/null"
check import__stderr_empty_on_a_pipe test ! -s "$work/err"

echo "$passed passed, $failed failed"
((failed == 0))
