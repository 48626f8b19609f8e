#!/usr/bin/env bash
# Dependencies point down only: src/ includes no db/feedback/repl header, db/ no feedback/repl,
# feedback/ no repl; repl/ never talks to db/ directly; no SQL outside db/.
set -u
cd "$(dirname "$0")/.."
fail=0
bad() { echo "FAIL: $1"; echo "$2"; fail=1; }
out=$(grep -rnE '#include "(db|feedback|repl)/' src/ 2>/dev/null) && bad "src/ includes a higher layer" "$out"
out=$(grep -rnE '#include "(feedback|repl)/' db/ 2>/dev/null) && bad "db/ includes a higher layer" "$out"
out=$(grep -rnE '#include "repl/' feedback/ 2>/dev/null) && bad "feedback/ includes repl/" "$out"
out=$(grep -rnE '#include "db/' repl/ 2>/dev/null) && bad "repl/ includes db/ directly" "$out"
out=$(grep -rnE 'sqlite3\.h|readline/' src/ 2>/dev/null) && bad "src/ uses sqlite or readline" "$out"
out=$(grep -rnwE 'rand|srand' --include='*.c' src/ db/ feedback/ repl/ 2>/dev/null | grep -E '\b(s?rand)\s*\(') && bad "rand() used; use rng_t" "$out"
exit $fail
