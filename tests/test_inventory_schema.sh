#!/usr/bin/env bash
# test_inventory_schema.sh - schema/inventory.schema.json describes the
# inventory tsl imports: every shipped example validates against it and
# imports; documents tsl refuses (a misspelt key or field, a wrong type)
# fail it too.  Needs python3-jsonschema (.ci/deps).
#
# usage: test_inventory_schema.sh TSL_BIN SOURCE_DIR
set -euo pipefail
tsl=$1
src=$2
schema=$src/schema/inventory.schema.json
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if ! python3 -c 'import jsonschema' 2>/dev/null; then
  echo "python3-jsonschema is missing: install it (.ci/deps lists it)" >&2
  exit 1
fi

# validate FILE...: 0 when every file is valid, else the errors on stderr
validate() {
  python3 - "$schema" "$@" <<'PY'
import json, sys
import jsonschema
schema = json.load(open(sys.argv[1], encoding="utf-8"))
jsonschema.Draft202012Validator.check_schema(schema)
v = jsonschema.Draft202012Validator(schema)
bad = 0
for path in sys.argv[2:]:
    with open(path, encoding="utf-8-sig") as f:
        doc = json.load(f)
    for e in sorted(v.iter_errors(doc), key=lambda e: list(e.path)):
        print(f"{path}: {'/'.join(map(str, e.path))}: {e.message}", file=sys.stderr)
        bad = 1
sys.exit(bad)
PY
}

fail=0
examples=("$src/policies/demo/estate.json" "$src"/tests/scenarios/estates/*.json)
while IFS= read -r -d '' f; do examples+=("$f"); done < <(find "$src/tests/data" -name '*.json' -print0)
echo "examples: ${#examples[@]}"

# 1. every shipped example is valid, and imports
for f in "${examples[@]}"; do
  if validate "$f"; then echo "ok - valid: ${f#$src/}"; else echo "not ok - valid: ${f#$src/}"; fail=1; fi
  if "$tsl" --db "$tmp/$(basename "$f").db" import "$f" >/dev/null 2>"$tmp/err"; then
    echo "ok - imports: ${f#$src/}"
  else
    echo "not ok - imports: ${f#$src/}: $(cat "$tmp/err")"; fail=1
  fi
done

# 2. what the import refuses, the schema refuses
bad=(
  '{"site": []}'
  '{"clients": [{"guid": "G", "ips": ["10.0.0.1"]}]}'
  '{"clients": [{"name": "PC"}]}'
  '{"task_servers": [{"name": "ts", "service": "paused"}]}'
  '{"task_servers": [{"name": "ts", "capacity": "50,00"}]}'
  '{"task_servers": [{"name": "ts", "registered": "maybe"}]}'
  '{"sites": [{"name": "S", "latitude": 91}]}'
  '{"sites": [{"name": "S", "subnets": ["10.0.0.0"]}]}'
  '{"connection_errors": [{"client": "G", "server": "ts"}]}'
)
i=0
for doc in "${bad[@]}"; do
  i=$((i + 1))
  printf '%s\n' "$doc" > "$tmp/bad$i.json"
  if validate "$tmp/bad$i.json" 2>/dev/null; then
    echo "not ok - the schema accepts $doc"; fail=1
  else
    echo "ok - the schema refuses $doc"
  fi
  if "$tsl" --db "$tmp/bad.db" import "$tmp/bad$i.json" >/dev/null 2>&1; then
    echo "not ok - tsl import accepts $doc"; fail=1
  else
    echo "ok - tsl import refuses $doc"
  fi
done
exit $fail
