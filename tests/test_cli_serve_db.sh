#!/usr/bin/env bash
# test_cli_serve_db.sh - `tsl --db FILE serve` and `tsl serve --db FILE`
# (and `--db=FILE`) are the same: each form starts the broker on that store
# (its admin token appears beside it), answers a list from its inventory,
# and stops cleanly on SIGTERM.
# Usage: bash tests/test_cli_serve_db.sh TSL_BIN SOURCE_DIR
set -euo pipefail
tsl=$(realpath "${1:?usage: test_cli_serve_db.sh TSL_BIN SOURCE_DIR}")
src=$(realpath "${2:?usage: test_cli_serve_db.sh TSL_BIN SOURCE_DIR}")
work=$(mktemp -d)
pid=""
trap '[[ -z $pid ]] || kill -KILL "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
passed=0 failed=0
ok() { passed=$((passed + 1)); echo "ok - $1"; }
not_ok() { failed=$((failed + 1)); echo "not ok - $1"; sed 's/^/  /' "$work/log" | tail -5; }

n=0
for form in "--db DB serve" "serve --db DB" "serve --db=DB" "serve --listen 127.0.0.1:0 --db DB"; do
  n=$((n + 1))
  db=$work/estate-$n.db
  "$tsl" --db "$db" import "$src/policies/demo/estate.json" >/dev/null 2>&1
  args=${form//DB/$db}
  [[ $args == *--listen* ]] || args="$args --listen 127.0.0.1:0"
  name="serve__db_form_${n}: tsl $form"
  # shellcheck disable=SC2086 # the form is split into its words on purpose
  "$tsl" $args >/dev/null 2>"$work/log" &
  pid=$!
  port=""
  for _ in $(seq 1 500); do
    port=$(sed -n 's/.*Listening on .* port \([0-9]*\).*/\1/p' "$work/log" | head -1)
    [[ -n $port ]] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.02
  done
  body=""
  [[ -z $port ]] || body=$(curl -sf "http://127.0.0.1:$port/v1/task-servers?ip=10.10.3.17" || true)
  kill -TERM "$pid" 2>/dev/null || true
  rc=0
  wait "$pid" || rc=$?
  pid=""
  if [[ -n $port && $body == *'"ts-lon-'* && -s $db.token && $rc == 0 ]]; then
    ok "$name"
  else
    echo "  port '$port', exit $rc, token $([[ -s $db.token ]] && echo yes || echo no), body: ${body:0:80}" >>"$work/log"
    not_ok "$name"
  fi
done
echo "$passed passed, $failed failed"
((failed == 0))
