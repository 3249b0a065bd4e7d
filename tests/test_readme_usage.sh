#!/usr/bin/env bash
# test_readme_usage.sh - every line of the README's "Using it" block runs as
# written, with `tsl` found on PATH, in an empty directory holding only
# what the lines name: estate.json (the demo estate), policies/tests (the
# example policy's tests), tsl.pem and tsl.key (a self-signed certificate
# for tsl.corp), and my-sites.lua, a small policy of our own whose dry-run
# is clean, so `policy activate --require-dry-run` may go on:
# commands exit 0, or 1 where the README says a command reports findings
# (check, doctor); the broker lines start it, the curl line gets a list.
#
# Usage: bash tests/test_readme_usage.sh TSL_BIN SOURCE_DIR [DATA_DIR]
#   DATA_DIR holds policies/ (default SOURCE_DIR); .ci/package runs it with
#   /usr/bin/tsl and /usr/share/tsl against the installed package.
set -euo pipefail
tsl_bin=$(realpath "${1:?usage: test_readme_usage.sh TSL_BIN SOURCE_DIR [DATA_DIR]}")
src=$(realpath "${2:?usage: test_readme_usage.sh TSL_BIN SOURCE_DIR [DATA_DIR]}")
data=$(realpath "${3:-$src}")
guid=E90E4254-DA23-5246-BB45-4A21F778B492 # LON-PC-0001 of the demo estate

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/bin" "$work/policies"
ln -s "$tsl_bin" "$work/bin/tsl"
cp "$data/policies/demo/estate.json" "$work/estate.json"
cat >"$work/my-sites.lua" <<'LUA'
-- my-sites.lua: London clients try ts-lon-02 first.
site "London" { order = { "ts-lon-02", "ts-lon-01" } }
LUA
# the policy tests name their policy and estate relative to policies/
for d in tests examples demo; do ln -s "$data/policies/$d" "$work/policies/$d"; done
# the broker's certificate, as docs/operations.md ("TLS") makes it
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=tsl.corp \
  -addext subjectAltName=DNS:tsl.corp -keyout "$work/tsl.key" -out "$work/tsl.pem" 2>/dev/null
chmod 600 "$work/tsl.key"
cd "$work"
export PATH="$work/bin:$PATH" TMPDIR="$work"

mapfile -t lines < <(sed -n '/^## Using it/,/^```$/p' "$src/README.md" | sed -n '/^```sh$/,/^```$/p' |
  grep -v '^```')
((${#lines[@]} >= 10)) || { echo "not ok - readme__using_it_block_found (${#lines[@]} lines)"; exit 1; }

passed=0 failed=0 port=""
ok() { passed=$((passed + 1)); echo "ok - $1"; }
not_ok() { failed=$((failed + 1)); echo "not ok - $1"; sed 's/^/  /' "$work/out" | tail -15; }

# Starts a broker line in the background on a free port instead of the
# README's fixed one (the machine may run others), on the address the line
# gives; waits for its port.
start_broker() {
  local cmd
  cmd=$(echo "$1" | sed -E 's/(--listen [^ ]*:)[0-9]+/\10/')
  [[ $cmd == *--listen* ]] || cmd="$cmd --listen 127.0.0.1:0"
  bash -c "exec $cmd" >"$work/serve.out" 2>"$work/serve.log" &
  pids+=($!)
  for _ in $(seq 1 500); do
    port=$(sed -n 's/.*Listening on .* port \([0-9]*\).*/\1/p' "$work/serve.log" | head -1)
    [[ -n $port ]] && return 0
    kill -0 "${pids[-1]}" 2>/dev/null || break
    sleep 0.02
  done
  cp "$work/serve.log" "$work/out"
  return 1
}

for line in "${lines[@]}"; do
  cmd=${line%%#*}                      # the comment is not part of the command
  cmd=${cmd//GUID/$guid}
  cmd=$(echo "$cmd" | sed 's/[[:space:]]*$//')
  [[ -n $cmd ]] || continue
  name="readme: $cmd"
  case $cmd in
  *" serve "* | *" serve")
    # one broker at a time: the next one replaces the last
    if ((${#pids[@]})); then kill -TERM "${pids[-1]}"; wait "${pids[-1]}" || true; fi
    scheme=http curl_tls=()
    if [[ $cmd == *--tls-cert* ]]; then scheme=https curl_tls=(--cacert tsl.pem); fi
    if start_broker "$cmd" &&
      # with --db (before or after serve) it runs on that store: its token is beside it
      { [[ $cmd != *"--db estate.db"* ]] || [[ -s estate.db.token ]]; } &&
      curl -sf "${curl_tls[@]}" --resolve "tsl.corp:$port:127.0.0.1" \
        "$scheme://tsl.corp:$port/v1/task-servers?ip=10.10.3.17" >"$work/out"; then
      ok "$name (port $port)"
    else
      not_ok "$name"
    fi
    ;;
  curl*)
    cmd=${cmd/127.0.0.1:8080/127.0.0.1:$port}
    if bash -c "$cmd" >"$work/out" 2>&1 && grep -q '"ts-' "$work/out"; then ok "$name"; else not_ok "$name"; fi
    ;;
  *"COMMAND --help"*)
    rc=0
    tsl --help >"$work/out" || rc=1
    for c in $(tsl --help | sed -n '/^commands:/,/^$/p' | awk 'NF > 1 {print $1}'); do
      tsl "$c" --help >>"$work/out" || rc=1
    done
    if ((rc == 0)); then ok "$name"; else not_ok "$name"; fi
    ;;
  *)
    rc=0
    bash -c "$cmd" >"$work/out" 2>&1 || rc=$?
    # check and doctor report findings with exit 1, as the README says
    if ((rc == 0)) || { ((rc == 1)) && [[ $cmd == *" check "* || $cmd == *" doctor "* ]]; }; then
      ok "$name"
    else
      echo "  exit $rc" >>"$work/out"
      not_ok "$name"
    fi
    ;;
  esac
done
echo "$passed passed, $failed failed"
((failed == 0))
