#!/usr/bin/env bash
# Decoding benchmark: rlhf.c vs llama2.c's run.c on the same d 288 / 6-layer / vocab 32000 weights.
# Builds run.c from the llama2.c mirror (never copied into this repository) into a scratch
# directory with the flags the comparison uses (gcc -O3 -march=native -fopenmp, and llama2.c's own
# `make runomp` flags -Ofast as a second reference), waits for a quiet machine, then runs
# bench_decode, which prints the table (best of REPS runs).
# Usage: bench/run_decode_bench.sh [BUILD_DIR]
#   env: LLAMA2C=path of a llama2.c checkout or bare git dir (default /work/.mirror/karpathy+llama2.c/repo)
#        THREADS=2 REPS=5 TOKENS=255 MAX_LOAD=0.5
set -eu
build=${1:-build}
threads=${THREADS:-2}
reps=${REPS:-5}
tokens=${TOKENS:-255}
max_load=${MAX_LOAD:-0.5}
src=${LLAMA2C:-/work/.mirror/karpathy+llama2.c/repo}
exe="$build/bench/bench_decode"
[ -x "$exe" ] || { echo "no $exe: build first (meson setup $build --buildtype=release && ninja -C $build bench/bench_decode)"; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/rlhf-decode-bench-XXXXXX")
trap 'rm -rf "$work"' EXIT
runc_args=()
# run.c and tokenizer.bin from a work tree, or from a bare git directory (the mirror)
if [ -f "$src/run.c" ] && [ -f "$src/tokenizer.bin" ]; then
  cp "$src/run.c" "$src/tokenizer.bin" "$work/"
elif git --git-dir="$src" rev-parse HEAD >/dev/null 2>&1; then
  git --git-dir="$src" show HEAD:run.c > "$work/run.c"
  git --git-dir="$src" show HEAD:tokenizer.bin > "$work/tokenizer.bin"
elif git -C "$src" rev-parse HEAD >/dev/null 2>&1; then
  git -C "$src" show HEAD:run.c > "$work/run.c"
  git -C "$src" show HEAD:tokenizer.bin > "$work/tokenizer.bin"
fi
if [ -s "$work/run.c" ] && [ -s "$work/tokenizer.bin" ]; then
  if gcc -O3 -march=native -fopenmp "$work/run.c" -lm -o "$work/run-O3-omp" 2>"$work/cc.log" &&
     gcc -Ofast -march=native -fopenmp "$work/run.c" -lm -o "$work/run-Ofast-omp" 2>>"$work/cc.log"; then
    runc_args=(--runc "$work/run-O3-omp" --runc "$work/run-Ofast-omp" --tokenizer "$work/tokenizer.bin")
  else
    echo "note: could not compile llama2.c's run.c (see below); measuring rlhf.c alone"; cat "$work/cc.log"
  fi
else
  echo "note: llama2.c not found at $src (set LLAMA2C); the run.c comparison is skipped"
fi

. "$(dirname "$0")/wait_quiet.sh"
OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads "$exe" --tokens "$tokens" --reps "$reps" --dir "$work" "${runc_args[@]}"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
