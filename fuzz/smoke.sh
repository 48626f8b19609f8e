#!/usr/bin/env bash
# smoke.sh EXE NAME SRC_DIR BUILD_DIR — one short libFuzzer run of harness NAME on its seeds
# (BUILD_DIR/seeds/NAME from make_seeds.sh, and the hand-made SRC_DIR/seeds/NAME), for
# FUZZ_SECONDS (default 20). New inputs go to a scratch directory, so the seeds stay as made.
# Fails on any crash, leak, timeout or out-of-memory; the input is kept in BUILD_DIR/fuzz-artifacts.
set -u
exe=$1 name=$2 src=$3 build=$4
secs=${FUZZ_SECONDS:-20}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
corpora=()
for d in "$build/seeds/$name" "$src/seeds/$name"; do
    [ -d "$d" ] && corpora+=("$d")
done
opts=(-max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -detect_leaks=1 -print_final_stats=1
      -artifact_prefix="$build/fuzz-artifacts/$name-")
[ -f "$src/dict/$name.dict" ] && opts+=(-dict="$src/dict/$name.dict")
mkdir -p "$build/fuzz-artifacts"
"$exe" "${opts[@]}" "$work" "${corpora[@]}" >"$work/log" 2>&1
rc=$?
grep -E '^#[0-9]+' "$work/log" | tail -n 1   # the last status line: executions, cov, ft
grep -E "^Done|stat::number_of_executed_units|ERROR|SUMMARY|Test unit written" "$work/log"
[ $rc -ne 0 ] && tail -n 60 "$work/log"
exit $rc
