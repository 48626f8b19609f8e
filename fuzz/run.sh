#!/usr/bin/env bash
# run.sh [SECONDS] [HARNESS...] — long libFuzzer runs, one harness at a time (default: 300 s
# each, every harness). Builds build-fuzz with clang + ASan/UBSan if missing, makes the seed
# corpora (make_seeds.sh), keeps the grown corpus in build-fuzz/corpus/NAME and the log in
# build-fuzz/fuzz-logs/NAME.log, and prints one line per harness:
#   harness  executions  cov  ft  seconds  result
set -u
cd "$(dirname "$0")/.."
secs=300
if [ $# -gt 0 ] && [[ $1 =~ ^[0-9]+$ ]]; then secs=$1; shift; fi
b=build-fuzz
if [ ! -f $b/build.ninja ]; then
    CC=clang meson setup $b --buildtype=debugoptimized -Dfuzz=true \
        -Db_sanitize=address,undefined -Db_lundef=false >/dev/null || exit 1
fi
ninja -C $b >/dev/null || exit 1
bash fuzz/make_seeds.sh $b || exit 1
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
    for f in $b/fuzz/fuzz_*; do
        [ -x "$f" ] && [ -f "$f" ] && names+=("${f##*/fuzz_}")
    done
fi
mkdir -p $b/fuzz-logs $b/fuzz-artifacts
status=0
printf '%-16s %12s %7s %8s %7s  %s\n' harness executions cov ft seconds result
for n in "${names[@]}"; do
    exe=$b/fuzz/fuzz_$n
    [ -x "$exe" ] || { echo "no harness $n" >&2; status=1; continue; }
    mkdir -p $b/corpus/$n
    corpora=($b/corpus/$n)
    for d in $b/seeds/$n fuzz/seeds/$n; do [ -d $d ] && corpora+=($d); done
    opts=(-max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -detect_leaks=1 -print_final_stats=1
          -artifact_prefix=$b/fuzz-artifacts/$n-)
    [ -f fuzz/dict/$n.dict ] && opts+=(-dict=fuzz/dict/$n.dict)
    t0=$(date +%s)
    OMP_NUM_THREADS=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        "$exe" "${opts[@]}" "${corpora[@]}" >$b/fuzz-logs/$n.log 2>&1
    rc=$?
    t1=$(date +%s)
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' $b/fuzz-logs/$n.log | grep -o '[0-9]*$')
    last=$(grep -E '^#[0-9]+' $b/fuzz-logs/$n.log | tail -n 1)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    if [ $rc -eq 0 ]; then result=ok; else result="FAILED (rc $rc, see $b/fuzz-logs/$n.log)"; status=1; fi
    printf '%-16s %12s %7s %8s %7s  %s\n' "$n" "${execs:-?}" "${cov:-?}" "${ft:-?}" $((t1 - t0)) "$result"
done
exit $status
