#!/usr/bin/env bash
# test_dryrun_html.sh - the dry-run's HTML report opened in a real headless
# Chromium: the page must render the summary (the DOM after layout holds the
# counts), with no network resource.
#
#   bash tests/test_dryrun_html.sh TSL_BINARY SOURCE_DIR
#
# Chromium is installed by .ci/deps (Debian package `chromium`); only when it
# is truly absent does this test skip, saying so.
set -euo pipefail
tsl=$1
src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

browser=""
for b in chromium chromium-browser; do
  if command -v "$b" >/dev/null 2>&1; then browser=$b; break; fi
done
if [[ -z $browser ]]; then
  echo "SKIP: test_dryrun_html: chromium is not installed (.ci/deps installs the Debian package 'chromium')"
  echo "0 passed, 0 failed, 1 skipped"
  exit 0
fi

pass=0
fail=0
check() { # name, then a command that must succeed
  local name=$1; shift
  if "$@"; then echo "ok - $name"; pass=$((pass + 1)); else echo "not ok - $name"; fail=$((fail + 1)); fi
}

render() { # html file -> DOM on stdout
  timeout 90 "$browser" --headless --no-sandbox --disable-gpu --disable-background-networking \
    --user-data-dir="$tmp/profile" --dump-dom "file://$1" 2>"$tmp/chromium.log"
}

db=$tmp/demo.db
"$tsl" --db "$db" import "$src/policies/demo/estate.json" >/dev/null

# 1. No change at all (the default logic against the default logic): the
#    page renders zeros and the "no condition" verdict.
rc=0
"$tsl" --db "$db" dry-run --policy default --against default --now 2026-11-25T10:00:00Z \
  --html "$tmp/same.html" >"$tmp/same.txt" || rc=$?
check "dry-run without a change exits 0" test "$rc" = 0
render "$tmp/same.html" >"$tmp/same.dom"
check "chromium renders the summary" grep -q 'id="first-changed">0</div>' "$tmp/same.dom"
check "the verdict says no condition" grep -q 'No blocked, cross-site or over-capacity condition' "$tmp/same.dom"
check "the per-server chart is drawn" grep -q '<svg id="load-chart"' "$tmp/same.dom"
check "the per-site table lists London" grep -q '<td>London</td><td class="num">8</td>' "$tmp/same.dom"
check "the page fetches nothing" bash -c "! grep -Eq '<(script|link|img)|src=|url\\(' '$tmp/same.html'"

# 2. A real policy change, when this build has the policy layer: Madrid may
#    only use an unregistered server and never falls back (3 clients
#    blocked); Tokyo is sent to Singapore (4 clients cross-site).
cat >"$tmp/new.lua" <<'LUA'
site "Madrid" { allow = { "ts-fra-02" }, fallback = "block" }
site "Tokyo"  { allow = { "ts-sin-01" } }
LUA
rc=0
"$tsl" --db "$db" dry-run --policy "$tmp/new.lua" --now 2026-11-25T10:00:00Z \
  --html "$tmp/new.html" --fail-on blocked >"$tmp/new.txt" 2>"$tmp/new.err" || rc=$?
if grep -q "not available in this build" "$tmp/new.err"; then
  echo "SKIP: policy change report: this build has no policy layer"
else
  check "the blocked condition exits 3" test "$rc" = 3
  render "$tmp/new.html" >"$tmp/new.dom"
  check "chromium renders 7 first-server changes" grep -q 'id="first-changed">7</div>' "$tmp/new.dom"
  check "chromium renders 3 newly blocked" grep -q 'id="newly-blocked">3</div>' "$tmp/new.dom"
  check "chromium renders 4 newly cross-site" grep -q 'id="newly-cross-site">4</div>' "$tmp/new.dom"
  check "the verdict names the conditions" grep -q 'Conditions found: blocked,cross-site' "$tmp/new.dom"
fi

echo "$pass passed, $fail failed"
test "$fail" = 0
