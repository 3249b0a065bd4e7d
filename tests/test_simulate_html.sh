#!/usr/bin/env bash
# test_simulate_html.sh - `tsl simulate --html FILE` opened in a real
# headless Chromium: one self-contained page (nothing fetched) with, per
# site and client group, a timeline of registrations by tier, clients
# attempting, waiting and stranded, the faults marked on the time axis, and
# the invariants PASS or FAIL.  Two scenarios in one page: the shipped
# london_outage (passes) and the blocking scenario with its policy removed
# (an invariant breaks).
#
#   bash tests/test_simulate_html.sh TSL_BINARY SOURCE_DIR
#
# Chromium is installed by .ci/deps (Debian package `chromium`); only when it
# is truly absent does this test skip, saying so.
set -uo pipefail
tsl=${1:?usage: test_simulate_html.sh TSL_BIN SOURCE_DIR}
src=$(cd "${2:?usage: test_simulate_html.sh TSL_BIN SOURCE_DIR}" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

browser=""
for b in chromium chromium-browser; do
  if command -v "$b" >/dev/null 2>&1; then browser=$b; break; fi
done
if [[ -z $browser ]]; then
  echo "SKIP: test_simulate_html: chromium is not installed (.ci/deps installs the Debian package 'chromium')"
  echo "0 passed, 0 failed, 1 skipped"
  exit 0
fi

passed=0 failed=0
check() { # name, command...
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); echo "ok - $name"
  else failed=$((failed + 1)); echo "not ok - $name"; fi
}
has() { grep -q -- "$1" "$tmp/page.dom"; }
count() { grep -o -- "$1" "$tmp/page.dom" | wc -l; }

sed -e '/^policy /d' -e "s#^inventory .*#inventory $src/tests/scenarios/estates/europe.json#" \
    "$src/tests/scenarios/cross_country_blocked.scn" > "$tmp/broken.scn"
"$tsl" simulate --html "$tmp/page.html" "$src/tests/scenarios/london_outage.scn" "$tmp/broken.scn" \
    > "$tmp/out.txt" 2> "$tmp/err.txt"
rc=$?
check html__a_broken_invariant_still_exits_1 test "$rc" -eq 1
check html__the_page_is_written test -s "$tmp/page.html"
check html__the_page_fetches_nothing bash -c "! grep -Eq '<(script|link|img|iframe)|src=|href=|url\\(' '$1'" _ "$tmp/page.html"

timeout 90 "$browser" --headless --no-sandbox --disable-gpu --disable-background-networking \
  --user-data-dir="$tmp/profile" --dump-dom "file://$tmp/page.html" > "$tmp/page.dom" 2> "$tmp/chromium.log"
check html__chromium_renders_the_page has '<section class="pass" data-scenario="london-outage" data-result="PASS">'
check html__the_failed_scenario_says_so has '<section class="pass" data-scenario="cross-country-blocked" data-result="FAIL">'
check html__the_verdicts_are_shown bash -c 'grep -q "PASS: 11 invariants held" "$1" && grep -q "FAIL: [0-9]* of 8 invariants broken" "$1"' _ "$tmp/page.dom"
check html__a_lane_for_london has '<figure class="lane" data-site="London" data-group="london" data-clients="120">'
check html__lanes_for_each_site_and_group bash -c 'grep -q "data-site=\"Madrid\" data-group=\"madrid\"" "$1" && grep -q "data-site=\"London\" data-group=\"london\" data-clients=\"150\"" "$1"' _ "$tmp/page.dom"
# london_outage: registered at home, waiting out the `after`, in Manchester
# (tier 1), attempting (the dark site, the cut link after the return)
for band in tier0 tier1 waiting attempting; do
  check "html__london_outage_draws_the_${band}_band" has "<polygon class=\"band $band\""
done
check html__the_faults_are_on_the_time_axis bash -c 'grep -q "t=120 cut London ts-lon-01" "$1" && grep -q "t=300 site-dark London" "$1" && grep -q "t=600 site-up London" "$1"' _ "$tmp/page.dom"
check html__each_fault_marked_on_each_lane test "$(count '<g class="fault"')" -ge 7
check html__invariants_pass_and_fail test "$(count '<td class="pass">PASS</td>')" -ge 11 -a "$(count '<td class="fail">FAIL</td>')" -ge 1
check html__the_broken_invariant_is_named has 'expect cross_country == 0'
check html__every_client_at_the_end has '<div class="card" data-state="registered"><div class="n">120</div>'
check html__the_promise_per_site has '<table class="sites">'
check html__cut_links_and_dark_servers_listed has 'cut London ts-lon-01'

echo "$passed passed, $failed failed"
((failed == 0))
