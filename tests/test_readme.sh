#!/usr/bin/env bash
# test_readme.sh - the README's two commands stay what CI and users run:
# .ci/run holds the second one verbatim, both start with .ci/deps, and the
# first ends by running the demo.
# Usage: bash tests/test_readme.sh TSL_BIN SOURCE_DIR
set -euo pipefail
src=${2:?usage: test_readme.sh TSL_BIN SOURCE_DIR}
passed=0 failed=0
check() { # name, command...
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); echo "ok - $name"
  else failed=$((failed + 1)); echo "not ok - $name"; fi
}

# The one-line commands in ```sh blocks that start with .ci/deps.
mapfile -t cmds < <(grep -A1 '^```sh$' "$src/README.md" | grep '^\.ci/deps ' || true)

check readme__has_exactly_two_setup_commands test "${#cmds[@]}" -eq 2
check readme__first_command_runs_the_demo \
  bash -c '[[ "$1" == *"cmake --build build"*"&& ./build/tsl demo" ]]' _ "${cmds[0]:-}"
check readme__second_command_runs_ctest \
  bash -c '[[ "$1" == *"-DTSL_WERROR=ON"*"&& ctest --test-dir build"* ]]' _ "${cmds[1]:-}"
check ci__runs_the_second_command_verbatim grep -qxF -- "${cmds[1]:-missing}" "$src/.ci/run"
check ci__deps_is_executable test -x "$src/.ci/deps"
check ci__deps_lists_every_library_cmake_needs \
  bash -c 'for p in liblua5.4-dev libsqlite3-dev libevent-dev libjansson-dev cmake pkg-config build-essential; do grep -qw -- "$p" "$1" || exit 1; done' _ "$src/.ci/deps"

echo "$passed passed, $failed failed"
((failed == 0))
