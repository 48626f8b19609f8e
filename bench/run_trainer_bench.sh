#!/usr/bin/env bash
# Trainer-step benchmark (issues 14 and 15): SFT, reward-model, DPO (cached reference) and LoRA
# SFT steps, ours vs PyTorch on the d288 L6 Llama and GPT-2 small, and our LoRA step vs our full
# step. Waits (up to 10 minutes) for the 1-minute load average to drop below MAX_LOAD, runs
# bench_trainers REPEAT times (each figure already the best of STEPS steps), prints every table,
# then the best of the runs per row with the ratios and targets.
# Usage: bench/run_trainer_bench.sh [BUILD_DIR]
#   env: THREADS=2 REPEAT=3 STEPS=3 MAX_LOAD=0.5 SHAPES=llama,gpt2 BENCHES=all
#   (a smoke run: SHAPES=tiny,tiny2 REPEAT=1 STEPS=2 MAX_LOAD=100)
set -eu
build=${1:-build}
threads=${THREADS:-2}
repeat=${REPEAT:-3}
steps=${STEPS:-3}
max_load=${MAX_LOAD:-0.5}
shapes=${SHAPES:-llama,gpt2}
benches=${BENCHES:-all}
exe="$build/bench/bench_trainers"
[ -x "$exe" ] || { echo "no $exe: build first (meson setup $build --buildtype=release && ninja -C $build bench/bench_trainers)"; exit 1; }

. "$(dirname "$0")/wait_quiet.sh"

out=$(mktemp)
trap 'rm -f "$out"' EXIT
for r in $(seq "$repeat"); do
  echo "== run $r of $repeat (OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads)"
  OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads "$exe" --steps "$steps" --shape "$shapes" --bench "$benches" | tee -a "$out"
done
echo "== best of $repeat runs (tokens/s)"
grep '^kernel:' "$out" | sort -u
awk '$1 ~ /^(sft|rm|dpo|lora)$/ {
       k = $1 " " $2
       if (!(k in ours)) order[n++] = k
       if ($4 > ours[k]) ours[k] = $4
       if ($5 > torch[k]) torch[k] = $5
       target[k] = ($1 == "lora") ? "-" : $7 " " $8
     }
     END {
       printf "%-12s %10s %11s %7s %s\n", "bench", "ours tok/s", "torch tok/s", "ratio", "target"
       for (i = 0; i < n; i++) {
         k = order[i]
         printf "%-12s %10.0f %11.0f %7.2f %s\n", k, ours[k], torch[k], (torch[k] > 0 ? ours[k] / torch[k] : 0), target[k]
       }
       for (i = 0; i < n; i++) {
         k = order[i]; split(k, p, " "); f = "sft " p[2]
         if (p[1] == "lora" && f in ours)
           printf "lora-vs-full %-6s ours %.0f vs %.0f tok/s: %.2fx (target >= 1.3x); torch %.0f vs %.0f: %.2fx\n", p[2],
                  ours[k], ours[f], ours[k] / ours[f], torch[k], torch[f], (torch[f] > 0 ? torch[k] / torch[f] : 0)
       }
     }' "$out"
