#!/usr/bin/env bash
# Training-step benchmark: ours vs PyTorch on GPT-2 small and a stories15M-sized Llama.
# Waits (up to 10 minutes) for the 1-minute load average to drop below MAX_LOAD, measures sgemm
# under every OpenBLAS kernel the CPU supports (run_sgemm_bench.sh; MFU is against the fastest),
# runs bench_train REPEAT times and prints every table, then the best-of summary per shape.
# Usage: bench/run_train_bench.sh [BUILD_DIR]   (env: THREADS=2 REPEAT=3 STEPS=5 MAX_LOAD=0.5)
set -eu
build=${1:-build}
threads=${THREADS:-2}
repeat=${REPEAT:-3}
steps=${STEPS:-5}
max_load=${MAX_LOAD:-0.5}
exe="$build/bench/bench_train"
[ -x "$exe" ] || { echo "no $exe: build first (meson setup $build --buildtype=release && ninja -C $build)"; exit 1; }

. "$(dirname "$0")/wait_quiet.sh"

out=$(mktemp)
trap 'rm -f "$out"' EXIT
# MFU is measured against the fastest sgemm this machine reaches under any OpenBLAS kernel
echo "== sgemm under every kernel this CPU supports"
MAX_LOAD=100 bash "$(dirname "$0")/run_sgemm_bench.sh" "$build" | tee "$out.sgemm"
read -r _ best_kernel best_peak < <(grep '^best ' "$out.sgemm")
rm -f "$out.sgemm"
for r in $(seq "$repeat"); do
  echo "== run $r of $repeat (OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads)"
  OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads "$exe" --steps "$steps" --peak "$best_peak" "$best_kernel" | tee -a "$out"
done
echo "== best of $repeat runs (tokens/s)"
# Best-of: the highest tokens/s per shape and side, and MFU recomputed against the highest sgemm
# peak of all runs (a peak measured under someone else's load would inflate MFU).
awk '$1 == "gpt2" || $1 == "llama" {
       if ($3 > ours[$1]) ours[$1] = $3
       if ($4 > torch[$1]) torch[$1] = $4
       tokens[$1] = $2
       for (i = 1; i <= NF; i++) if ($i == "GFLOP)") flops[$1] = $(i - 1)
     }
     /sgemm peak|MFU below is against/ { for (i = 1; i <= NF; i++) if ($i == "GFLOP/s" || $i == "GFLOP/s,") { p = $(i - 1); if (p > peak) peak = p } }
     END {
       printf "%-6s %12s %12s %7s %9s %10s   (sgemm peak %.1f GFLOP/s)\n", "shape", "ours tok/s", "torch tok/s", "ratio", "MFU ours", "MFU torch", peak
       for (s in ours) {
         ratio = (torch[s] > 0) ? ours[s] / torch[s] : 0
         m = flops[s] * ours[s] / tokens[s] / peak * 100
         mt = flops[s] * torch[s] / tokens[s] / peak * 100
         printf "%-6s %12.0f %12.0f %7.2f %8.1f%% %9.1f%%\n", s, ours[s], torch[s], ratio, m, mt
       }
     }' "$out"
