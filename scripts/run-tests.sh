#!/usr/bin/env bash
# run-tests.sh — the whole suite: every test in the release build, then the unit and reference
# tests again under AddressSanitizer + UndefinedBehaviorSanitizer, then (when build-fuzz exists) a
# ~20 s libFuzzer smoke run of every harness of fuzz/. Ends with "N passed, N failed".
set -u
cd "$(dirname "$0")/.."
status=0
meson test -C build --print-errorlogs --num-processes 2 || status=1
if [ -d build-san ]; then
    meson test -C build-san --print-errorlogs --num-processes 2 --timeout-multiplier 3 --no-suite slow --no-suite torch || status=1
fi
if [ -d build-fuzz ]; then
    meson test -C build-fuzz --print-errorlogs --num-processes 2 --suite fuzz || status=1
fi
/usr/bin/python3 - "$status" <<'PY'
import json, os, sys
passed = failed = 0
names = []
for build in ("build", "build-san", "build-fuzz"):
    log = os.path.join(build, "meson-logs", "testlog.json")
    if not os.path.exists(log):
        continue
    for line in open(log):
        t = json.loads(line)
        if t["result"] in ("OK", "EXPECTEDFAIL"):
            passed += 1
        else:
            failed += 1
            names.append(f"{build}: {t['name']} ({t['result']})")
for n in names:
    print("failed:", n)
if passed + failed == 0 and sys.argv[1] != "0":
    failed = 1  # meson itself failed before running anything
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PY
