#!/usr/bin/env bash
# GRPO iteration benchmark (issue 15): one iteration split into generation, scoring and update for
# G = 1, 2, 4, 8 completions per prompt on the same prompts, with the G = 8 / G = 1 ratio against
# the 2.5x target (bench/bench_grpo.c says what each phase holds). Waits (up to 10 minutes) for the
# 1-minute load average to drop below MAX_LOAD, then runs bench_grpo once (each figure is already
# the best of REPEATS rounds after a warm-up round).
# Usage: bench/run_grpo_bench.sh [BUILD_DIR] [bench_grpo flags...]
#   env: THREADS=2 REPEATS=5 MAX_LOAD=0.5 MODEL=models/default PROMPTS=4 TOKENS=64 REWARD=RM_DIR
#        SEEDS="42 1 2 3 4" (one run each: sampled lengths depend on the seed)
#   e.g. MODEL=../shared/data/stories260K/stories260K.bin (a llama2.c file without a tokenizer:
#   made-up prompt ids), REWARD=DIR adds a reward model's scoring (rlhf reward train writes one);
#   a smoke run: REPEATS=1 MAX_LOAD=100 TOKENS=8
set -eu
build=${1:-build}
[ $# -gt 0 ] && shift
threads=${THREADS:-2}
repeats=${REPEATS:-5}
max_load=${MAX_LOAD:-0.5}
exe="$build/bench/bench_grpo"
[ -x "$exe" ] || { echo "no $exe: build first (meson setup $build --buildtype=release && ninja -C $build bench/bench_grpo)"; exit 1; }
args=(--repeats "$repeats" --prompts "${PROMPTS:-4}" --max-new-tokens "${TOKENS:-64}")
[ -n "${MODEL:-}" ] && args+=(--model "$MODEL")
[ -n "${REWARD:-}" ] && args+=(--reward "$REWARD")

. "$(dirname "$0")/wait_quiet.sh"
# one run per seed (the sampled lengths, hence the decoding steps, depend on it), then the
# G=8 / G=1 generation ratio of every seed
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for seed in ${SEEDS:-42 1 2 3 4}; do
  echo "== seed $seed"
  OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads "$exe" "${args[@]}" --seed "$seed" "$@" | tee -a "$out"
done
# per seed, and pooled (the generation time of all seeds' G=8 iterations over that of their G=1
# ones: the expected iteration, since a seed whose 4 single samples all end early is as likely as
# one whose G=1 batch runs to the length limit)
awk '/^G=8 \/ G=1, the iteration: generation/ { r = $7; sub("x", "", r); n++; if (r > m) m = r; all = all " " r "x" }
     NF == 11 && $1 == 1 && $2 ~ /^[0-9]+$/ { g1 += $5 }
     NF == 11 && $1 == 8 && $2 ~ /^[0-9]+$/ { g8 += $5 }
     END { if (n && g1 > 0) printf "G=8 / G=1 generation over %d seeds:%s; pooled %.2fx (target <= 2.5x: %s), worst seed %.2fx\n",
                                   n, all, g8 / g1, g8 / g1 <= 2.5 ? "PASS" : "FAIL", m }' "$out"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
